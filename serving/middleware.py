"""ASGI middleware on every response: request id, algorithm filing number (Art. 22), body limit.

Pure ASGI rather than BaseHTTPMiddleware: it adds no task switch to the request path, and it can
refuse an oversized body while reading it, before any handler sees it.
"""

from __future__ import annotations

import json

from compliance.logstore import new_request_id

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

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

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
    body = json.dumps({"detail": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
