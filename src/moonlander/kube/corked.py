"""One send per request: an HTTP/1.1 request's head and body leave together.

httpcore writes a request's head and its body separately, so each request with a body (a
Secret's create, a status patch) cost two TLS records and two ``send()`` calls; on loopback
each send is a good part of a request's CPU. A corked stream holds writes until the client
reads, which it always does next (the answer), and sends them as one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpcore2
import httpx2
from httpcore2._backends.auto import AutoBackend
from lightkube import AsyncClient

# Held bytes are sent at once past this size: a large body is not held in full.
FLUSH_AT = 64 * 1024


class CorkedStream(httpcore2.AsyncNetworkStream):
    def __init__(self, inner: httpcore2.AsyncNetworkStream) -> None:
        self._inner = inner
        self._held: list[bytes] = []
        self._size = 0

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        self._held.append(buffer)
        self._size += len(buffer)
        if self._size >= FLUSH_AT:
            await self._flush(timeout)

    async def _flush(self, timeout: float | None) -> None:
        if self._held:
            data = b"".join(self._held)
            self._held.clear()
            self._size = 0
            await self._inner.write(data, timeout)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        await self._flush(timeout)
        return await self._inner.read(max_bytes, timeout)

    async def aclose(self) -> None:
        self._held.clear()
        self._size = 0
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        await self._flush(timeout)
        return CorkedStream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class CorkedBackend(httpcore2.AsyncNetworkBackend):
    """``inner``'s connections, corked."""

    def __init__(self, inner: httpcore2.AsyncNetworkBackend | None = None) -> None:
        self._inner = inner or AutoBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return CorkedStream(stream)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore2.AsyncNetworkStream:
        return CorkedStream(await self._inner.connect_unix_socket(path, timeout, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def cork(client: AsyncClient) -> AsyncClient:
    """Corks the connections of a lightkube client built with its default transport."""
    transport = client._client._client._transport  # lightkube -> httpx -> its transport
    assert isinstance(transport, httpx2.AsyncHTTPTransport), type(transport)
    pool = transport._pool
    assert isinstance(pool, httpcore2.AsyncConnectionPool), type(pool)
    pool._network_backend = CorkedBackend(pool._network_backend)
    return client
