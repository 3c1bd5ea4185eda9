"""ASGI middleware: replica header, request metrics, request body limit.

Plain ASGI classes rather than BaseHTTPMiddleware: they add no task or stream
wrapping per request, which matters when a whole request takes ~1 ms.
"""

from __future__ import annotations

import time

from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.metrics import Metrics

STANDARD_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"})


def status_label(status: int | None, disconnected: bool) -> str:
    """The `status` label: the class of the answer (2xx ... 5xx), or 499 for a client that left.

    499 (nginx's "client closed request"): the client disconnected before any answer
    started, e.g. in the middle of sending its body. That is no server error, and not
    the client's mistake either, so it is counted apart from 4xx and 5xx. Without an
    answer and without a disconnect, the app failed: the server answers 500.
    """
    if status is None:
        return "499" if disconnected else "5xx"
    return f"{status // 100}xx"


class ReplicaHeaderMiddleware:
    """Names the answering container, so a client can tell replicas apart."""

    def __init__(self, app: ASGIApp, replica: str) -> None:
        self.app = app
        self.header = (b"x-iris-replica", replica.encode("latin-1", "replace"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), self.header]
            await send(message)

        await self.app(scope, receive, send_with_header)


class MetricsMiddleware:
    """Counts and times every request except scrapes of /metrics itself.

    The `handler` label is the matched route's template (never the raw path,
    which a client could make unbounded); unmatched paths count as "other";
    `status` is one of 2xx, 3xx, 4xx, 5xx and 499 (see status_label).
    So every label has a bounded set of values.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: list[BaseRoute]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    @staticmethod
    def route_methods(routes: list[BaseRoute]) -> list[tuple[str, str]]:
        """The (handler, method) label pairs the app's routes can produce, /metrics aside."""
        pairs = []
        for route in routes:
            path = getattr(route, "path", None)
            if path is None or path == "/metrics":
                continue
            # A mount (the docs' static files) answers GET and HEAD.
            methods = getattr(route, "methods", None) or ("GET", "HEAD")
            pairs += [(path, method) for method in sorted(methods)]
        return pairs

    def handler(self, scope: Scope) -> str:
        for route in self.routes:
            match, _ = route.matches(scope)
            if match is not Match.NONE:
                return getattr(route, "path", "other")
        return "other"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        handler = self.handler(scope)
        if handler == "/metrics":
            await self.app(scope, receive, send)
            return
        status: int | None = None
        disconnected = False

        async def receive_and_watch() -> Message:
            nonlocal disconnected
            message = await receive()
            if message["type"] == "http.disconnect":
                disconnected = True
            return message

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        # Clients choose the method too: any other than the standard ones counts as "other".
        method = scope["method"] if scope["method"] in STANDARD_METHODS else "other"
        start = time.perf_counter()
        try:
            await self.app(scope, receive_and_watch, send_and_record)
        finally:
            label = status_label(status, disconnected)
            # A 499 lasted as long as the client took to give up: no latency of ours, and one
            # slow client would otherwise raise /predict's p99.
            if label != "499":
                self.metrics.latency.labels(handler=handler, method=method).observe(time.perf_counter() - start)
            self.metrics.requests.labels(handler=handler, method=method, status=label).inc()


class BodyLimitMiddleware:
    """Answers 413 to a body over `max_bytes`, by Content-Length or as it arrives.

    The body is read here in full (at most `max_bytes`, so bounded) and replayed
    to the app, so no handler ever sees an oversized body.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def too_large(self) -> JSONResponse:
        limit = f"{self.max_bytes} bytes"
        for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
            if self.max_bytes >= size:
                limit = f"{self.max_bytes / size:g} {unit} ({limit})"
                break
        return JSONResponse({"detail": f"request body is larger than {limit}"}, 413)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = HTTPConnection(scope).headers.get("content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                length = -1
            if length < 0:
                await JSONResponse({"detail": "Content-Length header is not a number"}, 400)(scope, receive, send)
                return
            if length > self.max_bytes:
                await self.too_large()(scope, receive, send)
                return

        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client went away; nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self.too_large()(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
