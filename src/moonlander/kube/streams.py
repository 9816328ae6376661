"""The controller's connections: asyncio's own streams under httpcore, and corked.

httpcore's default backend runs every read and write through anyio: a cancel scope per call
for its timeout, and TLS done by anyio in Python over a socket stream of its own. asyncio's
transports already do both (its TLS protocol reads and decrypts whole chunks as they arrive,
and a timeout is one timer), and the HTTP client is where most of the controller's CPU goes.

Corked: httpcore writes a request's head and its body separately, which would be two TLS
records and two ``send()`` calls. Writes are held until the client reads, which it always does
next (the answer), and leave as one.

Errors keep httpcore's meaning: a timeout is ``ConnectTimeout``/``ReadTimeout``/``WriteTimeout``,
a failing socket or handshake ``ConnectError``/``ReadError``/``WriteError``, and a peer that
closed reads as ``b""`` (httpcore's "Server disconnected").
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore2
from lightkube import AsyncClient

from moonlander.kube import internals

# Held bytes are sent at once past this size: a large body is not held in full.
FLUSH_AT = 64 * 1024
# What one read may buffer ahead of the client (asyncio's default is 64 KiB).
READ_LIMIT = 256 * 1024


class AsyncioStream(httpcore2.AsyncNetworkStream):
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
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
        if not self._held:
            return
        data = self._held[0] if len(self._held) == 1 else b"".join(self._held)
        self._held.clear()
        self._size = 0
        try:
            self._writer.write(data)
            if self._writer.transport.get_write_buffer_size():
                async with asyncio.timeout(timeout):
                    await self._writer.drain()
        except TimeoutError:
            raise httpcore2.WriteTimeout("timed out writing to the server") from None
        except (OSError, RuntimeError) as err:
            raise httpcore2.WriteError(str(err) or type(err).__name__) from None

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        await self._flush(timeout)
        try:
            async with asyncio.timeout(timeout):
                return await self._reader.read(max_bytes)
        except TimeoutError:
            raise httpcore2.ReadTimeout("timed out reading from the server") from None
        except (OSError, RuntimeError) as err:
            raise httpcore2.ReadError(str(err) or type(err).__name__) from None

    async def aclose(self) -> None:
        self._held.clear()
        self._size = 0
        # No TLS close_notify exchange: a server that never answers it cannot hold the socket.
        self._writer.transport.abort()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        await self._flush(timeout)
        try:
            async with asyncio.timeout(timeout):
                await self._writer.start_tls(ssl_context, server_hostname=server_hostname)
        except TimeoutError:
            self._writer.transport.abort()
            raise httpcore2.ConnectTimeout("timed out in the TLS handshake") from None
        except (OSError, ssl.SSLError, RuntimeError) as err:
            self._writer.transport.abort()
            raise httpcore2.ConnectError(str(err) or type(err).__name__) from None
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object":
            return self._writer.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._writer.get_extra_info("sockname")
        if info == "server_addr":
            return self._writer.get_extra_info("peername")
        if info == "socket":
            return self._writer.get_extra_info("socket")
        if info == "is_readable":
            # Whether an idle pooled connection has something to read, i.e. the server closed
            # it. The event loop reads every socket it watches as soon as anything arrives, so
            # a close (or stray bytes) is already in the stream: no system call per request.
            if self._writer.transport.is_closing() or self._reader.at_eof():
                return True
            buffered = getattr(self._reader, "_buffer", None)  # CPython's StreamReader
            if buffered is None:
                return internals.is_socket_readable(self._writer.get_extra_info("socket"))
            return bool(buffered)
        return None


class AsyncioBackend(httpcore2.AsyncNetworkBackend):
    """TCP connections as :class:`AsyncioStream`; no unix sockets."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        local_addr = None if local_address is None else (local_address, 0)
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, local_addr=local_addr, limit=READ_LIMIT
                )
        except TimeoutError:
            raise httpcore2.ConnectTimeout(f"timed out connecting to {host}:{port}") from None
        except OSError as err:
            raise httpcore2.ConnectError(str(err) or type(err).__name__) from None
        sock = writer.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
        return AsyncioStream(reader, writer)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore2.AsyncNetworkStream:
        raise httpcore2.ConnectError("unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def use_asyncio_streams(client: AsyncClient) -> AsyncClient:
    """Puts a lightkube client built with its default transport on :class:`AsyncioBackend`."""
    internals.set_network_backend(internals.default_transport(client), AsyncioBackend())
    return client
