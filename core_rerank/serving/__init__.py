"""``core-rerank serve``: CoRe behind the rerank APIs clients already speak (needs ``[serve]``).

``create_app`` builds the one FastAPI app; ``core_rerank.serving.server`` runs it with uvicorn,
``core_rerank.serving.ray_serve`` on Ray Serve (needs ``[ray]``).
"""

from ..scoring import relevance_scores
from .app import create_app
from .service import LocalScorer, RerankService

__all__ = ["LocalScorer", "RerankService", "create_app", "relevance_scores"]
