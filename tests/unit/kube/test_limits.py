"""What one response from a tenant-chosen server may cost: its size, its time (pure, with
fake streams under the real transport wrapper and httpx2 client)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx2
import pytest

from moonlander.kube.transport import (
    DeadlineExceeded,
    InvalidResponse,
    ResponseTooLarge,
    _TenantTransport,
)

URL = "https://evil.example/api/v1/namespaces/n/secrets/s"
WATCH_URL = "https://evil.example/api/v1/secrets?watch=true"


class FakeStream(httpx2.AsyncByteStream):
    """Yields ``chunks`` (sleeping ``delay`` before each), then endlessly ``forever``."""

    def __init__(self, chunks: list[bytes], *, delay: float = 0.0, forever: bytes = b"") -> None:
        self.chunks = chunks
        self.delay = delay
        self.forever = forever
        self.sent = 0
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            await asyncio.sleep(self.delay)
            self.sent += len(chunk)
            yield chunk
        while self.forever:
            await asyncio.sleep(0)
            self.sent += len(self.forever)
            yield self.forever

    async def aclose(self) -> None:
        self.closed = True


class FakeServer(httpx2.AsyncBaseTransport):
    def __init__(
        self,
        stream: FakeStream,
        headers: dict[str, str] | None = None,
        *,
        header_delay: float = 0.0,
    ) -> None:
        self.stream = stream
        self.headers = headers or {"Content-Type": "application/json"}
        self.header_delay = header_delay
        self.requests: list[httpx2.Request] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        await asyncio.sleep(self.header_delay)
        return httpx2.Response(200, headers=self.headers, stream=self.stream)


def client(server: FakeServer, **limits: float) -> httpx2.AsyncClient:
    transport = _TenantTransport(server, **limits)  # type: ignore[arg-type]
    return httpx2.AsyncClient(transport=transport)


async def test_an_endless_body_stops_at_the_cap() -> None:
    stream = FakeStream([], forever=b"x" * 65536)
    async with client(FakeServer(stream), max_bytes=1024 * 1024) as http:
        with pytest.raises(ResponseTooLarge):
            await http.get(URL)
    assert stream.sent <= 1024 * 1024 + 65536
    assert stream.closed


async def test_a_body_within_the_cap_is_read_whole() -> None:
    body = [b'{"kind":', b'"Secret"}']
    async with client(FakeServer(FakeStream(body)), max_bytes=64) as http:
        response = await http.get(URL)
    assert response.content == b"".join(body)


async def test_a_declared_length_over_the_cap_is_refused_before_reading() -> None:
    stream = FakeStream([b"x" * 10])
    headers = {"Content-Type": "application/json", "Content-Length": str(10**9)}
    async with client(FakeServer(stream, headers), max_bytes=1024) as http:
        with pytest.raises(ResponseTooLarge):
            await http.get(URL)
    assert stream.sent == 0


async def test_compression_is_not_asked_for_and_refused() -> None:
    stream = FakeStream([b"\x1f\x8b"])
    server = FakeServer(stream, {"Content-Type": "application/json", "Content-Encoding": "gzip"})
    async with client(server) as http:
        with pytest.raises(InvalidResponse):
            await http.get(URL)
    assert server.requests[0].headers["Accept-Encoding"] == "identity"


async def test_a_trickling_body_ends_at_the_deadline() -> None:
    stream = FakeStream([b"x"] * 1000, delay=0.05)
    async with client(FakeServer(stream), deadline=0.5) as http:
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            await http.get(URL)
    assert time.monotonic() - started < 1.0


async def test_headers_that_never_come_end_at_the_deadline() -> None:
    server = FakeServer(FakeStream([b"{}"]), header_delay=3600)
    async with client(server, deadline=0.3) as http:
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            await http.get(URL)
    assert time.monotonic() - started < 1.0


async def watch_lines(server: FakeServer, **limits: float) -> list[str]:
    """The lines of a watch, as lightkube reads them (a streamed GET, line by line)."""
    async with client(server, **limits) as http, http.stream("GET", WATCH_URL) as response:
        return [line async for line in response.aiter_lines()]


async def test_a_watch_has_no_total_deadline_but_a_cap_per_event() -> None:
    events = [b'{"type":"ADDED"}\n'] * 20
    stream = FakeStream(events, delay=0.05)  # 1 s in all, beyond the request deadline
    assert len(await watch_lines(FakeServer(stream), deadline=0.3, max_event_bytes=64)) == 20

    endless_line = FakeStream([b'{"type":"ADDED"}\n'], forever=b"y" * 1000)
    with pytest.raises(ResponseTooLarge):
        await watch_lines(FakeServer(endless_line), max_event_bytes=4096)
    assert endless_line.sent < 4096 + 2000


async def test_a_long_event_inside_one_chunk_is_caught() -> None:
    stream = FakeStream([b"a\n" + b"b" * 5000 + b"\nc\n"])
    with pytest.raises(ResponseTooLarge):
        await watch_lines(FakeServer(stream), max_event_bytes=4096)


async def test_a_watch_must_deliver_each_event_within_the_gap() -> None:
    stream = FakeStream([b"{}\n", b"{", b"}", b"\n"], delay=0.1)
    assert len(await watch_lines(FakeServer(stream), event_gap=0.5)) == 2
    trickle = FakeStream([b"{}\n", *[b" "] * 100], delay=0.1)
    with pytest.raises(DeadlineExceeded):
        await watch_lines(FakeServer(trickle), event_gap=0.5)
