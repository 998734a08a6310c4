"""The frame around every request, as plain ASGI middleware (Starlette's ``BaseHTTPMiddleware``
costs about a millisecond per request, a third of a small model's forward pass): a request id
(``X-Request-ID``, echoed, in every log line and error), the API key check, metrics and a log line.
"""

from __future__ import annotations

import logging
import secrets
import time
import uuid
from collections.abc import Callable
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from omnifuse.serving.metrics import Metrics

log = logging.getLogger("omnifuse.serving")


class RequestFrame:
    """Request id, authentication of ``/v1/*`` (when ``api_key`` is set), metrics, logging."""

    def __init__(self, app: ASGIApp, metrics: Metrics, api_key: str | None) -> None:
        self.app = app
        self.metrics = metrics
        self.api_key = api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        request_id = headers.get("x-request-id") or uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = request_id
        start, status = time.perf_counter(), [500]
        send_framed = _framed(send, request_id, status)
        try:
            if self._refused(scope, headers):
                await unauthorized(request_id)(scope, receive, send_framed)
            else:
                await self.app(scope, receive, send_framed)
        finally:
            elapsed = time.perf_counter() - start
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.observe(route, status[0], elapsed)
            log.info(
                "request_id=%s %s %s -> %d in %.1f ms",
                request_id, scope["method"], scope["path"], status[0], elapsed * 1000,
            )  # fmt: skip

    def _refused(self, scope: Scope, headers: Headers) -> bool:
        if self.api_key is None or not str(scope["path"]).startswith("/v1/"):
            return False
        bearer = headers.get("authorization", "")
        given = bearer[7:].strip() if bearer.startswith("Bearer ") else ""
        given = given or headers.get("x-api-key", "")
        return not secrets.compare_digest(given.encode(), self.api_key.encode())


def _framed(send: Send, request_id: str, status: list[int]) -> Callable[[Message], Any]:
    async def framed(message: Message) -> None:
        if message["type"] == "http.response.start":
            status[0] = message["status"]
            message["headers"] = [
                *message.get("headers", []),
                (b"x-request-id", request_id.encode()),
            ]
        await send(message)

    return framed


def unauthorized(request_id: str) -> JSONResponse:
    body = {
        "type": "unauthorized",
        "message": "missing or wrong API key (send Authorization: Bearer KEY)",
        "limit": None,
        "request_id": request_id,
    }
    return JSONResponse({"error": body}, 401, headers={"www-authenticate": "Bearer"})
