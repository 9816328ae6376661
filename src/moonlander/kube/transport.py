"""The connection to a tenant-chosen API server: TLS built in memory, the address policy at
connect time, and bounds on everything the server can cost.

Security: the TLS context is built in memory from the validated CA (client keys go through
an anonymous memfd, never the disk), or from the operating system's CA store at fixed
locations when a kubeconfig has no CA data; no environment proxy or CA bundle
(``SSL_CERT_FILE``, ``SSL_CERT_DIR``) is consulted, and every address a hostname resolves to
is checked against the server address policy at connect time (:class:`GuardedBackend`),
which also closes the DNS-rebinding gap between validation and connection.

Isolation: a tenant chooses the server, so every response from it is bounded
(:class:`_TenantTransport`): a body of at most ``MAX_RESPONSE_BYTES``, a watch event line of at
most ``MAX_EVENT_BYTES``, no compression (a small compressed body can inflate to gigabytes),
and a whole request, body included, within ``REQUEST_DEADLINE`` on top of the per-read
timeout; a watch instead delivers each event within ``WATCH_EVENT_GAP``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import ssl
from collections.abc import AsyncIterator, Iterable
from typing import Any

import httpcore2
import httpx2
from lightkube import AsyncClient
from lightkube.config.kubeconfig import SingleConfig
from lightkube.config.models import Cluster as LkCluster
from lightkube.config.models import Context as LkContext
from lightkube.config.models import User as LkUser

from moonlander import api
from moonlander.credentials import Credentials, KubeconfigError, Policy, check_address
from moonlander.kube import internals
from moonlander.kube.streams import AsyncioBackend

DEFAULT_TIMEOUT = httpx2.Timeout(15.0, connect=5.0)
MAX_CONNECTIONS = 8  # per cluster credential, whatever the number of Landings
# What the controller legitimately reads from a tenant's cluster: a Secret (at most 1 MiB of
# data, ~1.4 MiB as base64 in JSON, with its metadata), a Status, a ServiceAccount, a list
# page (lists are paged). Four times a full Secret is room enough; nothing bigger is read.
MAX_RESPONSE_BYTES = 4 * 1024 * 1024
MAX_EVENT_BYTES = 4 * 1024 * 1024  # one watch event carries one object
# A whole request (pool wait, connect, TLS, send, headers and body), whatever the per-read
# timeout: an API server answers a Secret read or write in milliseconds.
REQUEST_DEADLINE = 10.0
# A watch (asked to end after 300 s) must deliver each event line within this.
WATCH_EVENT_GAP = 360.0


class AddressPolicyError(httpcore2.ConnectError):
    """The server resolved to an address the policy denies; no connection was made."""


class InvalidResponse(httpx2.RequestError):
    """The server answered what no API server sends (compressed though asked not to be)."""


class ResponseTooLarge(InvalidResponse):
    """A response body, or one watch event, is larger than anything the controller reads."""


class DeadlineExceeded(httpx2.TimeoutException):
    """The server did not finish answering a request within its deadline."""


class GuardedBackend(AsyncioBackend):
    """Resolves the host itself, checks every address, then connects to a checked one (unix
    sockets are refused, as by :class:`AsyncioBackend`)."""

    def __init__(self, policy: Policy) -> None:
        self._policy = policy

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout
            )
        except (OSError, TimeoutError) as err:
            raise httpcore2.ConnectError(f"cannot resolve {host}: {err}") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        for address in addresses:
            try:
                check_address(ipaddress.ip_address(address), self._policy)
            except KubeconfigError as err:
                raise AddressPolicyError(f"{host}: {err}") from None
        return await super().connect_tcp(addresses[0], port, timeout, local_address, socket_options)


def _system_ca_locations() -> tuple[str | None, str | None]:
    """The operating system's CA store, where this OpenSSL build looks by default (for
    Debian-based images /usr/lib/ssl/cert.pem and /usr/lib/ssl/certs, both kept by the
    ca-certificates package): ``(cafile, capath)``, None for what does not exist.

    ``SSL_CERT_FILE`` and ``SSL_CERT_DIR`` are ignored on purpose: nothing in the controller's
    environment may change what a tenant's kubeconfig trusts.
    """
    paths = ssl.get_default_verify_paths()
    cafile = paths.openssl_cafile if os.path.isfile(paths.openssl_cafile) else None
    capath = paths.openssl_capath if os.path.isdir(paths.openssl_capath) else None
    return cafile, capath


def ssl_context(creds: Credentials) -> ssl.SSLContext:
    """TLS settings from the validated credentials only, built in memory.

    With CA data, exactly that CA data is trusted. Without, the operating system's CA store
    (:func:`_system_ca_locations`); never the default verify paths, which follow the
    environment.
    """
    if creds.ca_data:
        ctx = ssl.create_default_context(cadata=creds.ca_data.decode())
    else:
        cafile, capath = _system_ca_locations()
        if cafile or capath:
            ctx = ssl.create_default_context(cafile=cafile, capath=capath)
        else:  # no system store: trust nothing, rather than what the environment names
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # create_default_context follows $SSLKEYLOGFILE: TLS session keys must never be written.
    ctx.keylog_filename = None  # type: ignore[assignment]
    if creds.insecure_skip_tls_verify:  # only when the operator's policy allowed it
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if creds.client_cert and creds.client_key:
        # The ssl module loads a key only from a path; an anonymous memfd keeps it off disk.
        fd = os.memfd_create("moonlander-client", os.MFD_CLOEXEC)
        try:
            os.write(fd, creds.client_cert + b"\n" + creds.client_key)
            ctx.load_cert_chain(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
    return ctx


# Errors whose text comes from the network stack or from us, never from what a server sent:
# "[Errno 111] Connection refused", "[SSL: CERTIFICATE_VERIFY_FAILED] ...", "timed out".
# A protocol error's text may quote the bytes a server sent, a status error its reason phrase.
_TEXT_SAFE = (
    httpx2.TimeoutException,
    httpx2.NetworkError,
    httpcore2.ConnectError,
    InvalidResponse,
    OSError,
)


def describe_error(err: BaseException) -> str:
    """The error's type, and its text only when no server chose that text."""
    name = type(err).__name__
    if isinstance(err, _TEXT_SAFE) and str(err):
        return f"{name}: {err}"[:300]
    return name


class _BoundedStream(httpx2.AsyncByteStream):
    """A response body that may not exceed ``max_bytes`` nor arrive after ``deadline`` (event
    loop time); with ``lines`` (a watch), the bounds hold for each line: at most ``max_bytes``
    and within ``gap`` seconds of the previous one."""

    def __init__(
        self,
        inner: httpx2.AsyncByteStream,
        request: httpx2.Request,
        *,
        max_bytes: int,
        deadline: float | None = None,
        lines: bool = False,
        gap: float | None = None,
    ) -> None:
        self._inner = inner
        self._request = request
        self._max_bytes = max_bytes
        self._deadline = deadline
        self._lines = lines
        self._gap = gap

    async def __aiter__(self) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        chunks = self._inner.__aiter__()
        size = 0  # of the body, or of the line being received
        line_started = loop.time()
        try:
            while True:
                due = self._deadline
                if self._lines and self._gap is not None:
                    due = line_started + self._gap
                try:
                    async with asyncio.timeout_at(due):
                        chunk = await anext(chunks)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    what = "a watch event" if self._lines else "the response"
                    raise DeadlineExceeded(
                        f"{what} did not arrive in time", request=self._request
                    ) from None
                if self._lines and b"\n" in chunk:
                    parts = chunk.split(b"\n")
                    longest = max(size + len(parts[0]), *(len(p) for p in parts[1:]))
                    size = len(parts[-1])
                    line_started = loop.time()
                else:
                    size += len(chunk)
                    longest = size
                if longest > self._max_bytes:
                    what = "a watch event" if self._lines else "the response"
                    raise ResponseTooLarge(
                        f"{what} is larger than {self._max_bytes} bytes", request=self._request
                    )
                yield chunk
        finally:
            close = getattr(chunks, "aclose", None)
            if close is not None:
                await close()

    async def aclose(self) -> None:
        await self._inner.aclose()


class _TenantTransport(httpx2.AsyncBaseTransport):
    """Bounds what a tenant-chosen server can cost: the size of every response and watch
    event, the time of every request (``deadline``, body included; for a watch, the time to
    its headers and then between events); asks for uncompressed answers and refuses others.
    Sends a fixed TLS server name (kubeconfig ``tls-server-name``) when given one."""

    def __init__(
        self,
        inner: httpx2.AsyncBaseTransport,
        server_name: str | None = None,
        *,
        deadline: float = REQUEST_DEADLINE,
        max_bytes: int = MAX_RESPONSE_BYTES,
        max_event_bytes: int = MAX_EVENT_BYTES,
        event_gap: float = WATCH_EVENT_GAP,
    ) -> None:
        self._inner = inner
        self._server_name = server_name
        self._deadline = deadline
        self._max_bytes = max_bytes
        self._max_event_bytes = max_event_bytes
        self._event_gap = event_gap

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if self._server_name:
            request.extensions = {**request.extensions, "sni_hostname": self._server_name}
        # The size cap counts bytes as they arrive: a compressed body could inflate past it.
        request.headers["Accept-Encoding"] = "identity"
        watch = request.url.params.get("watch") in ("true", "1")
        due = asyncio.get_running_loop().time() + self._deadline
        try:
            async with asyncio.timeout_at(due):
                response = await self._inner.handle_async_request(request)
        except TimeoutError:
            raise DeadlineExceeded(
                f"no answer within {self._deadline:g}s", request=request
            ) from None
        if response.headers.get("Content-Encoding", "identity").lower() not in ("", "identity"):
            await response.aclose()
            raise InvalidResponse(
                "the response is compressed; it was not asked to be", request=request
            )
        length = response.headers.get("Content-Length", "")
        if not watch and length.isdigit() and int(length) > self._max_bytes:
            await response.aclose()
            raise ResponseTooLarge(
                f"the response is larger than {self._max_bytes} bytes", request=request
            )
        assert isinstance(response.stream, httpx2.AsyncByteStream)
        response.stream = _BoundedStream(
            response.stream,
            request,
            max_bytes=self._max_event_bytes if watch else self._max_bytes,
            deadline=None if watch else due,
            lines=watch,
            gap=self._event_gap if watch else None,
        )
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def build_client(
    creds: Credentials, policy: Policy, *, timeout: httpx2.Timeout = DEFAULT_TIMEOUT
) -> AsyncClient:
    """A lightkube client for a tenant-supplied credential.

    lightkube sees only the server URL and, for token users, the token; TLS (CA, client
    certificate) lives in our own transport. ``trust_env=False``: no proxies, no netrc.
    """
    limits = httpx2.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=4)
    transport = httpx2.AsyncHTTPTransport(verify=ssl_context(creds), trust_env=False, limits=limits)
    internals.set_network_backend(transport, GuardedBackend(policy))
    outer = _TenantTransport(transport, creds.tls_server_name or None)
    config = SingleConfig(
        context_name="moonlander",
        context=LkContext(cluster="moonlander", namespace="default"),
        # lightkube builds a TLS context from this for an httpx transport it never uses
        # (``transport=outer`` below carries ours, built from the validated CA): "insecure"
        # spares loading the system CA bundle for nothing on every new client (tens of ms).
        cluster=LkCluster(server=creds.server, insecure=True),
        user=LkUser(token=creds.token) if creds.token else LkUser(),
    )
    return AsyncClient(
        config,
        field_manager=api.FIELD_MANAGER,
        trust_env=False,
        timeout=timeout,
        transport=outer,
    )
