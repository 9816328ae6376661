"""Hostile API servers on loopback, and a watch on a process's RSS: shared by
tests/e2e/test_isolation.py and the "Isolation" case of bench/run.py.

Each ``HostileServer`` answers every request in one way no real API server would: an endless
body, one byte at a time, garbage, an error without Content-Type, a TLS handshake that never
completes, 503 to everything. The controller must run with ``--allow-loopback`` to be let
near them.

``python -m tests.support.hostile KIND ...`` (from the repository root) serves one server per
KIND in its own process, so their work (an endless body is written as fast as it is read)
does not run on the event loop of whoever measures: it prints one JSON line
``[{"kind", "port", "kubeconfig"}, ...]``; then each ``stats`` line on stdin is answered with
one JSON line ``[{"kind", "connections", "requests", "sent"}, ...]``; end of input stops it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import ssl
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import yaml

from moonlander_dev import pki

MARK = "tenant-chosen"  # in what hostile servers send: never to appear in a status
KINDS = ("endless", "slow", "garbage", "no-content-type", "tls-stall", "503")


def server_tls_context(ca: Any, name: str) -> ssl.SSLContext:
    """A TLS server context with a certificate for ``name`` issued by ``ca`` (dev.pki), for
    the fake servers that stand in for hostile API servers."""
    pair = ca.issue(name, server=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.NamedTemporaryFile("wb", delete=False) as f:
        f.write(pair.cert_pem + pair.key_pem)
    ctx.load_cert_chain(f.name)
    os.unlink(f.name)
    return ctx


class HostileServer:
    """An HTTPS server with its own CA that answers every request in one hostile way."""

    KINDS = KINDS

    def __init__(self, kind: str) -> None:
        assert kind in self.KINDS
        self.kind = kind
        self.ca = pki.CertificateAuthority(f"hostile-{kind}")
        self.port = 0
        self.connections = 0
        self.requests = 0
        self.sent = 0
        self.token = f"tok-{secrets.token_hex(16)}"
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        ctx: ssl.SSLContext | None = None
        if self.kind != "tls-stall":  # that one never even starts TLS
            ctx = server_tls_context(self.ca, "hostile")
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=ctx)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            if self.kind == "tls-stall":
                await asyncio.sleep(3600)  # the ClientHello is never answered
                return
            await reader.readuntil(b"\r\n\r\n")
            self.requests += 1
            await getattr(self, "_" + self.kind.replace("-", "_"))(writer)
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    async def _endless(self, writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + b'4\r\n{"a"\r\n'
        )
        chunk = b":" + MARK.encode() * 4096
        frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        sock = writer.get_extra_info("socket")
        while True:
            writer.write(frame)
            await writer.drain()
            self.sent += len(chunk)
            # A client that resets the connection with data unread (as one that stops at
            # its size cap does) may never be reported to the stream (Python 3.11 TLS
            # transports): without this check the loop would go on encrypting frames into
            # a dead socket, a core's worth of CPU taken from everything else.
            try:
                sock.getpeername()
            except OSError:
                return

    async def _slow(self, writer: asyncio.StreamWriter) -> None:
        body = b'{"kind":"Status","apiVersion":"v1","status":"Success","code":200}'
        answer = (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        for i in range(len(answer)):  # one byte at a time: each read succeeds, none finishes
            writer.write(answer[i : i + 1])
            await writer.drain()
            await asyncio.sleep(0.25)

    async def _garbage(self, writer: asyncio.StreamWriter) -> None:
        writer.write(f"\x00{MARK} \xff garbage\r\n\r\n".encode("latin-1") * 10)
        await writer.drain()

    async def _no_content_type(self, writer: asyncio.StreamWriter) -> None:
        body = MARK.encode()
        writer.write(
            b"HTTP/1.1 500 Internal Server Error\r\n"
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()

    async def _503(self, writer: asyncio.StreamWriter) -> None:
        body = (
            b'{"kind":"Status","apiVersion":"v1","status":"Failure","code":503,'
            b'"reason":"ServiceUnavailable","message":"overloaded"}'
        )
        writer.write(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()

    def kubeconfig(self) -> str:
        return yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "hostile",
                        "cluster": {
                            "server": f"https://127.0.0.1:{self.port}",
                            "certificate-authority-data": base64.b64encode(
                                self.ca.cert_pem
                            ).decode(),
                        },
                    }
                ],
                "users": [{"name": "u", "user": {"token": self.token}}],
                "contexts": [{"name": "hostile", "context": {"cluster": "hostile", "user": "u"}}],
                "current-context": "hostile",
            }
        )

    def stats(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "connections": self.connections,
            "requests": self.requests,
            "sent": self.sent,
        }

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


class Closable(Protocol):
    async def close(self) -> None: ...


class RssWatch:
    """Samples a process's RSS every 0.1 s; past ``limit_mb`` it stops the given servers at
    once (so a controller without the cap does not take the machine down) and remembers it."""

    def __init__(self, pid: int, limit_mb: float, servers: Sequence[Closable] = ()) -> None:
        self.pid = pid
        self.limit_mb = limit_mb
        self.servers = servers
        self.start = rss_mb(self.pid)
        self.peak = self.start
        self.tripped = False
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, rss_mb(self.pid))
            if self.peak > self.limit_mb:
                self.tripped = True
                for server in self.servers:
                    await server.close()
                return
            await asyncio.sleep(0.1)

    def __enter__(self) -> RssWatch:
        self._task = asyncio.create_task(self._run())
        return self

    def __exit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()


async def serve(kinds: list[str]) -> None:
    """One server per kind; see the module's docstring for the protocol on stdin/stdout."""
    servers = [HostileServer(kind) for kind in kinds]
    for server in servers:
        await server.start()
    info = [{"kind": s.kind, "port": s.port, "kubeconfig": s.kubeconfig()} for s in servers]
    print(json.dumps(info), flush=True)
    try:
        while line := await asyncio.to_thread(sys.stdin.readline):
            if line.strip() == "stats":
                print(json.dumps([s.stats() for s in servers]), flush=True)
    finally:
        for server in servers:
            await server.close()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1:]))
