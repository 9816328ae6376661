"""The private attributes of lightkube, httpx and httpcore that Moonlander relies on, checked
against the pinned versions, and kept in one module."""

from __future__ import annotations

import ast
import inspect
import json
import socket
from pathlib import Path

import httpx2
from lightkube import AsyncClient
from lightkube.config.kubeconfig import SingleConfig
from lightkube.config.models import Cluster, Context, User
from lightkube.resources.core_v1 import Secret

from moonlander.kube import internals
from moonlander.kube.streams import AsyncioBackend

PACKAGE = Path(__file__).resolve().parents[3] / "src" / "moonlander"
# Attribute names that only exist inside the libraries.
PRIVATE = {"_client", "_transport", "_pool", "_network_backend", "_utils"}


def _client() -> AsyncClient:
    config = SingleConfig(
        context_name="c",
        context=Context(cluster="c", user="u"),
        cluster=Cluster(server="https://127.0.0.1:1"),
        user=User(token="t"),
    )
    return AsyncClient(config, trust_env=False)


def test_the_http_client_and_its_transport_are_where_internals_looks() -> None:
    client = _client()
    http = internals.http_client(client)
    assert isinstance(http, httpx2.AsyncClient)
    assert str(http.base_url).startswith("https://127.0.0.1:1")
    assert isinstance(http.event_hooks["request"], list)
    transport = internals.default_transport(client)
    backend = AsyncioBackend()
    internals.set_network_backend(transport, backend)
    assert transport._pool._network_backend is backend


def test_lightkube_builds_requests_as_send_with_body_expects() -> None:
    inner = internals.lightkube_generic(_client())
    request = inner.prepare_request("delete", res=Secret, name="s", namespace="ns")
    assert request.method == "DELETE"
    assert request.url.endswith("/namespaces/ns/secrets/s")
    request.data = {"kind": "DeleteOptions"}
    adapted = inner.build_adapter_request(request)
    assert json.loads(adapted.content) == {"kind": "DeleteOptions"}
    for name in ("send", "handle_response", "close"):
        assert inspect.iscoroutinefunction(getattr(inner, name)) or callable(getattr(inner, name))
    assert list(inspect.signature(inner.handle_response).parameters)[:3] == [
        "method",
        "resp",
        "br",
    ]


def test_socket_readability_helper() -> None:
    a, b = socket.socketpair()
    try:
        assert internals.is_socket_readable(a) is False
        b.close()
        assert internals.is_socket_readable(a) is True  # closed by the peer
    finally:
        a.close()
    assert internals.is_socket_readable(None) is True  # no socket: treat as gone


def test_no_other_module_touches_private_attributes() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "internals.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in PRIVATE
                and not (isinstance(node.value, ast.Name) and node.value.id == "self")
            ):
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno} .{node.attr}")
            if isinstance(node, ast.ImportFrom) and node.module and "._" in node.module:
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.module}")
    assert not offenders, offenders
