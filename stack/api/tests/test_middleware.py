"""The body limit at the ASGI level, where chunked bodies without Content-Length arrive."""

from __future__ import annotations

import asyncio
import json

from starlette.types import Message, Receive, Scope, Send

from app.middleware import BodyLimitMiddleware

LIMIT = 1000


async def echo_length(scope: Scope, receive: Receive, send: Send) -> None:
    """An app that answers with the size of the body it received."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(len(body)).encode()})


def call(chunks: list[bytes], headers: list[tuple[bytes, bytes]] | None = None) -> tuple[int, bytes, int]:
    """Send `chunks` as one request; return status, response body and how many chunks were read."""
    scope = {"type": "http", "method": "POST", "path": "/predict", "headers": headers or []}
    incoming = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1} for i, chunk in enumerate(chunks)
    ]
    read = 0
    sent: list[Message] = []

    async def receive() -> Message:
        nonlocal read
        read += 1
        return incoming[read - 1] if read <= len(incoming) else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(BodyLimitMiddleware(echo_length, max_bytes=LIMIT)(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:]), read


def test_a_chunked_body_within_the_limit_reaches_the_app_whole():
    assert call([b"x" * 400, b"x" * 400, b"x" * 200]) == (200, b"1000", 3)


def test_a_chunked_body_over_the_limit_is_cut_off_at_the_chunk_that_crosses_it():
    status, body, read = call([b"x" * 600, b"x" * 600, b"x" * 600])
    assert (status, read) == (413, 2)
    assert json.loads(body)["detail"] == "request body is larger than 1000 bytes"


def test_a_declared_length_over_the_limit_is_refused_before_reading():
    assert call([b"x"], headers=[(b"content-length", b"1001")])[::2] == (413, 0)


def test_a_malformed_content_length_is_a_bad_request():
    for value in (b"-1", b"ten", "²".encode("latin-1")):
        status, body, _ = call([b"x"], headers=[(b"content-length", value)])
        assert (status, json.loads(body)["detail"]) == (400, "Content-Length header is not a number")
