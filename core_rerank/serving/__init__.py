"""``core-rerank serve``: CoRe behind the rerank APIs clients already speak (needs ``[serve]``).

``create_app`` builds the one FastAPI app; ``core_rerank.serving.server`` runs it with uvicorn,
``core_rerank.serving.ray_serve`` on Ray Serve (needs ``[ray]``).
"""

from .app import create_app
from .service import RerankService, relevance_scores

__all__ = ["RerankService", "create_app", "relevance_scores"]
