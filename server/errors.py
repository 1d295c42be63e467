"""Errors raised by services; HTTP and the socket gateway turn them into {"error": {"code", "message"}}."""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    """An error a client caused or may see, with a stable machine code."""

    status = 400
    code = "request.invalid"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.details = details
        self.headers = headers

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return {"error": body}


class BadRequest(AppError):
    status = 400
    code = "request.invalid"


class Unauthorized(AppError):
    status = 401
    code = "auth.unauthenticated"


class Forbidden(AppError):
    status = 403
    code = "auth.forbidden"


class NotFound(AppError):
    status = 404
    code = "not_found"


class Conflict(AppError):
    status = 409
    code = "conflict"


class TooManyRequests(AppError):
    status = 429
    code = "rate_limited"


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}
