"""A LlamaIndex ``CustomLLM`` over a local Hugging Face chat model (used by llamaindex_qa.py).

It takes an already-loaded model and tokenizer, so the reranker and the answer generator share
one copy of the weights::

    reranker = CoReReranker.from_pretrained("smollm2-135m-instruct", num_layers_to_keep="all")
    llm = LocalLLM(model=reranker.model, tokenizer=reranker.tokenizer)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.llms import (
    ChatMessage,
    ChatResponse,
    CompletionResponse,
    CompletionResponseGen,
    CustomLLM,
    LLMMetadata,
)
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from qa_common import generate


class LocalLLM(CustomLLM):
    """Greedy generation with a local ``transformers`` causal LM and its chat template."""

    model_name: str = Field(default="local-hf-model", description="Name shown in metadata.")
    max_new_tokens: int = Field(default=48, description="Tokens to generate per answer.")
    context_window: int = Field(default=8192, description="The model's context length.")

    _model: Any = PrivateAttr()
    _tokenizer: Any = PrivateAttr()

    def __init__(self, model: Any, tokenizer: Any, **kwargs: Any) -> None:
        kwargs.setdefault("model_name", getattr(model.config, "_name_or_path", "local-hf-model"))
        kwargs.setdefault("context_window", getattr(model.config, "max_position_embeddings", 8192))
        super().__init__(**kwargs)
        self._model = model
        self._tokenizer = tokenizer

    @classmethod
    def class_name(cls) -> str:
        return "LocalLLM"

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(
            context_window=self.context_window,
            num_output=self.max_new_tokens,
            model_name=self.model_name,
            is_chat_model=True,
        )

    def _generate(self, messages: Sequence[dict]) -> str:
        return generate(self._model, self._tokenizer, messages, self.max_new_tokens)

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        text = self._generate([{"role": m.role.value, "content": m.content or ""} for m in messages])
        return ChatResponse(message=ChatMessage(role="assistant", content=text))

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=self._generate([{"role": "user", "content": prompt}]))

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        yield self.complete(prompt, formatted=formatted, **kwargs)
