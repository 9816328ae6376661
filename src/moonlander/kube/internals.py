"""The one module that reaches into private attributes of lightkube, httpx and httpcore.

lightkube builds its httpx client and offers no public handle on it; httpx builds its
httpcore pool and offers no public way to choose the pool's network backend; lightkube's
``delete`` sends no body, so DeleteOptions preconditions need its request builder. The
controller needs each of these (its own streams, the tenant address guard at connect time,
request counting, raw list-watch requests, preconditioned deletes, closing a client). Every
such reach is a function here, and ``tests/unit/kube/test_internals.py`` checks each against
the pinned versions, so an upgrade that moves one fails there rather than in a cluster.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpcore2
import httpx2
from httpcore2._utils import is_socket_readable
from lightkube import AsyncClient

__all__ = [
    "close",
    "http_client",
    "is_socket_readable",
    "lightkube_generic",
    "send_with_body",
    "set_network_backend",
    "wrap_transport",
]


def lightkube_generic(client: AsyncClient) -> Any:
    """lightkube's generic client under the typed one (request building, response handling)."""
    return client._client


def http_client(client: AsyncClient) -> httpx2.AsyncClient:
    """lightkube's httpx client: base URL, TLS and auth, with the transport it was given."""
    http = client._client._client
    assert isinstance(http, httpx2.AsyncClient), type(http)
    return http


def set_network_backend(transport: httpx2.AsyncHTTPTransport, backend: Any) -> None:
    """Puts an httpx transport's connection pool on ``backend`` (an httpcore
    ``AsyncNetworkBackend``): httpx has no parameter for it."""
    pool = transport._pool
    assert isinstance(pool, httpcore2.AsyncConnectionPool), type(pool)
    pool._network_backend = backend


def default_transport(client: AsyncClient) -> httpx2.AsyncHTTPTransport:
    """The transport of a lightkube client built without one of ours."""
    transport = http_client(client)._transport
    assert isinstance(transport, httpx2.AsyncHTTPTransport), type(transport)
    return transport


def wrap_transport(
    client: AsyncClient,
    wrap: Callable[[httpx2.AsyncBaseTransport], httpx2.AsyncBaseTransport],
) -> None:
    """Puts ``wrap(transport)`` in place of a lightkube client's transport (e.g. to count
    responses by status code, and requests that got none: httpx's event hooks see only
    answered requests)."""
    http = http_client(client)
    http._transport = wrap(http._transport)


async def send_with_body(
    client: AsyncClient, method: str, body: dict[str, Any], **target: Any
) -> None:
    """Sends lightkube's request for ``method`` on ``target`` (``res``, ``name``,
    ``namespace``) with ``body`` (e.g. DeleteOptions), handling the response as lightkube
    does (an ``ApiError`` for an error status)."""
    inner = lightkube_generic(client)
    request = inner.prepare_request(method, **target)
    request.data = body
    response = await inner.send(inner.build_adapter_request(request))
    inner.handle_response(method, response, request)


async def close(client: AsyncClient) -> None:
    """Closes a lightkube client's connections (it has no public close)."""
    await lightkube_generic(client).close()
