"""A corked stream sends a request's head and body as one write, before the first read."""

from __future__ import annotations

from typing import Any

import httpcore2

from moonlander.kube.corked import FLUSH_AT, CorkedStream


class Recording(httpcore2.AsyncNetworkStream):
    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closed = False

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.sent.append(buffer)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return b"HTTP/1.1 200 OK\r\n"

    async def aclose(self) -> None:
        self.closed = True

    async def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore2.AsyncNetworkStream:
        return Recording()

    def get_extra_info(self, info: str) -> Any:
        return f"info:{info}"


async def test_head_and_body_leave_in_one_write_when_the_answer_is_read() -> None:
    inner = Recording()
    stream = CorkedStream(inner)
    await stream.write(b"PATCH /x HTTP/1.1\r\n\r\n")
    await stream.write(b"")
    await stream.write(b'{"status": {}}')
    assert inner.sent == []
    assert await stream.read(100) == b"HTTP/1.1 200 OK\r\n"
    assert inner.sent == [b'PATCH /x HTTP/1.1\r\n\r\n{"status": {}}']
    await stream.read(100)  # nothing held: nothing more sent
    assert len(inner.sent) == 1


async def test_a_large_body_is_not_held_whole() -> None:
    inner = Recording()
    stream = CorkedStream(inner)
    await stream.write(b"x" * (FLUSH_AT - 1))
    assert inner.sent == []
    await stream.write(b"yy")
    assert [len(b) for b in inner.sent] == [FLUSH_AT + 1]


async def test_tls_is_started_on_a_flushed_stream_and_corked_too() -> None:
    inner = Recording()
    stream = CorkedStream(inner)
    await stream.write(b"held")
    tls = await stream.start_tls(None, "example")
    assert inner.sent == [b"held"]
    assert isinstance(tls, CorkedStream)
    assert stream.get_extra_info("is_readable") == "info:is_readable"


async def test_closing_drops_what_is_held() -> None:
    inner = Recording()
    stream = CorkedStream(inner)
    await stream.write(b"never sent")
    await stream.aclose()
    assert inner.closed and inner.sent == []
