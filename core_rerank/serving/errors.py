"""The one error the routes raise: an HTTP status and a message that says what is wrong."""

from __future__ import annotations


class APIError(Exception):
    """Answered as ``{"message": ..., "type": ..., "code": status}`` (Cohere's ``message``,
    vLLM's ``type``/``code``)."""

    def __init__(
        self, status: int, message: str, kind: str = "invalid_request_error", headers: "dict[str, str] | None" = None
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.headers = headers or {}

    def body(self) -> dict:
        return {"message": self.message, "type": self.kind, "code": self.status}
