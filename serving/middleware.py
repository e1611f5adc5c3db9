"""ASGI middleware on every response: request id, algorithm filing number (Art. 26 (draft 22)), body limit,
and the last line of defence: an unexpected error becomes a JSON 500 that still carries both
headers, logged with its request id.

Pure ASGI rather than BaseHTTPMiddleware: it adds no task switch to the request path, and it can
refuse an oversized body while reading it, before any handler sees it. It sits inside Starlette's
ServerErrorMiddleware, whose bare-text 500 would otherwise carry neither header.
"""

from __future__ import annotations

import json
import logging

from compliance.logstore import new_request_id
from serving import metrics

log = logging.getLogger("recsys.serving")

FILING_HEADER = b"x-algorithm-filing-number"
REQUEST_ID_HEADER = b"x-request-id"


class ServiceHeadersMiddleware:
    def __init__(self, app, filing_number: str, max_body_bytes: int):
        self.app = app
        self.filing_number = filing_number.encode()
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        extra = [(REQUEST_ID_HEADER, request_id.encode()), (FILING_HEADER, self.filing_number)]

        started = False

        async def send_with_headers(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        try:
            await self._guarded(scope, receive, send_with_headers)
        except Exception:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            log.exception("request %s %s %s failed", request_id, scope.get("method"), scope.get("path"))
            metrics.ERRORS.labels(path).inc()
            if started:
                raise  # the response is under way: nothing more can be said on it
            await _reject(send_with_headers, 500, f"internal error; quote request id {request_id} when reporting it")

    async def _guarded(self, scope, receive, send_with_headers):
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body_bytes):
            await _reject(send_with_headers, 413, f"request body over {self.max_body_bytes} bytes")
            return

        if declared is not None:
            await self.app(scope, receive, send_with_headers)
            return
        # No Content-Length (chunked): buffer up to the limit, then replay to the application.
        buffered, size = [], 0
        while True:
            message = await receive()
            buffered.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_body_bytes:
                await _reject(send_with_headers, 413, f"request body over {self.max_body_bytes} bytes")
                return
            if not message.get("more_body", False):
                break

        async def replay():
            return buffered.pop(0) if buffered else await receive()

        await self.app(scope, replay, send_with_headers)


async def _reject(send, status: int, message: str) -> None:
    body = json.dumps({"detail": message, "code": "internal_error" if status == 500 else "request_too_large"}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
