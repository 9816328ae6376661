"""The controller's asyncio streams, on real loopback sockets: corked writes, httpcore's error
meanings, TLS, and a whole HTTPS request through httpx with them."""

from __future__ import annotations

import asyncio
import datetime
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpcore2
import httpx2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from moonlander.kube.streams import FLUSH_AT, AsyncioBackend


@dataclass
class Server:
    """A loopback server that records what it receives and answers what it is told to."""

    port: int = 0
    received: bytearray = field(default_factory=bytearray)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    answer: bytes = b""
    close_after_answer: bool = False
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        while data := await reader.read(65536):
            self.received += data
            self.arrived.set()
            if self.answer and b"\r\n\r\n" in self.received:
                writer.write(self.answer)
                await writer.drain()
                if self.close_after_answer:
                    writer.close()
                    return
        writer.close()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    state = Server()
    listener = await asyncio.start_server(state.handle, "127.0.0.1", 0)
    state.port = listener.sockets[0].getsockname()[1]
    yield state
    listener.close()
    for writer in state.writers:
        writer.close()


async def nothing_arrives(state: Server) -> bool:
    try:
        await asyncio.wait_for(state.arrived.wait(), 0.2)
    except TimeoutError:
        return True
    return False


async def test_head_and_body_are_held_until_the_answer_is_read(server: Server) -> None:
    server.answer = b"HTTP/1.1 200 OK\r\n\r\n"
    stream = await AsyncioBackend().connect_tcp("127.0.0.1", server.port, timeout=5)
    await stream.write(b"PATCH /x HTTP/1.1\r\n\r\n")
    await stream.write(b"")
    await stream.write(b'{"status": {}}')
    assert await nothing_arrives(server)
    assert await stream.read(100, timeout=5) == b"HTTP/1.1 200 OK\r\n\r\n"
    assert bytes(server.received) == b'PATCH /x HTTP/1.1\r\n\r\n{"status": {}}'
    await stream.aclose()


async def test_a_large_body_is_not_held_whole(server: Server) -> None:
    stream = await AsyncioBackend().connect_tcp("127.0.0.1", server.port, timeout=5)
    await stream.write(b"x" * (FLUSH_AT - 1))
    assert await nothing_arrives(server)
    await stream.write(b"yy")
    await asyncio.wait_for(server.arrived.wait(), 5)
    await stream.aclose()


async def test_a_silent_server_is_a_read_timeout(server: Server) -> None:
    stream = await AsyncioBackend().connect_tcp("127.0.0.1", server.port, timeout=5)
    await stream.write(b"GET / HTTP/1.1\r\n\r\n")
    with pytest.raises(httpcore2.ReadTimeout):
        await stream.read(100, timeout=0.2)
    await stream.aclose()


async def test_a_closed_peer_reads_as_the_end_and_makes_the_connection_readable(
    server: Server,
) -> None:
    server.answer = b"HTTP/1.1 200 OK\r\n\r\n"
    server.close_after_answer = True
    stream = await AsyncioBackend().connect_tcp("127.0.0.1", server.port, timeout=5)
    assert stream.get_extra_info("is_readable") is False
    await stream.write(b"GET / HTTP/1.1\r\n\r\n")
    assert await stream.read(100, timeout=5) == server.answer
    assert await stream.read(100, timeout=5) == b""
    assert stream.get_extra_info("is_readable") is True
    await stream.aclose()


@pytest.mark.parametrize("stray", [b"", b"HTTP/1.1 408 Request Timeout\r\n\r\n"])
async def test_an_idle_connection_the_server_wrote_to_or_closed_is_readable(
    server: Server, stray: bytes
) -> None:
    """A pooled connection is reused only when nothing waits on it: the loop reads what
    arrives on an idle socket into the stream, which is where the check looks."""
    server.answer = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
    stream = await AsyncioBackend().connect_tcp("127.0.0.1", server.port, timeout=5)
    await stream.write(b"GET / HTTP/1.1\r\n\r\n")
    assert await stream.read(100, timeout=5) == server.answer
    await asyncio.sleep(0.05)
    assert stream.get_extra_info("is_readable") is False  # idle, nothing arrived
    peer = server.writers[0]
    if stray:
        peer.write(stray)
        await peer.drain()
    else:
        peer.close()
    await asyncio.sleep(0.1)  # the loop reads it; nobody awaits the stream
    assert stream.get_extra_info("is_readable") is True
    await stream.aclose()


async def test_a_refused_connection_is_a_connect_error() -> None:
    listener = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    listener.close()
    await listener.wait_closed()
    with pytest.raises(httpcore2.ConnectError):
        await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)


async def test_unix_sockets_are_refused(tmp_path: Path) -> None:
    with pytest.raises(httpcore2.ConnectError):
        await AsyncioBackend().connect_unix_socket(str(tmp_path / "sock"))


def tls_pair(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context for ``localhost`` and a client context trusting only it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    client_ctx = ssl.create_default_context(cadata=cert_pem.decode())
    return server_ctx, client_ctx


async def test_https_requests_through_httpx_reuse_one_tls_connection(tmp_path: Path) -> None:
    server_ctx, client_ctx = tls_pair(tmp_path)
    peers: set[int] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.add(writer.get_extra_info("peername")[1])
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                0,
            )
            body = await reader.readexactly(length)
            answer = b'{"got": %d}' % len(body)
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(answer), answer)
            )
            await writer.drain()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    port = listener.sockets[0].getsockname()[1]
    transport = httpx2.AsyncHTTPTransport(verify=client_ctx, trust_env=False)
    transport._pool._network_backend = AsyncioBackend()
    async with httpx2.AsyncClient(transport=transport, trust_env=False) as http:
        for size in (0, 10, 3 * FLUSH_AT):
            response = await http.post(f"https://localhost:{port}/x", content=b"y" * size)
            assert response.json() == {"got": size}
    assert len(peers) == 1
    listener.close()


async def test_an_untrusted_server_certificate_is_a_connect_error(tmp_path: Path) -> None:
    server_ctx, _ = tls_pair(tmp_path)
    _, other_client_ctx = tls_pair(tmp_path)  # another key and certificate
    listener = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0, ssl=server_ctx)
    port = listener.sockets[0].getsockname()[1]
    stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
    with pytest.raises(httpcore2.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        await stream.start_tls(other_client_ctx, "localhost", timeout=5)
    listener.close()
