"""Purity of moonlander.credentials: hostile documents must not make the parser run programs,
open files or use the network."""

from __future__ import annotations

import ast
import builtins
import io
import os
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from moonlander import credentials
from moonlander.credentials import (
    KubeconfigError,
    check_server,
    credentials_from_token,
    find_problems,
    parse_kubeconfig,
    render_kubeconfig,
)

from ...support.kubeconfigs import (
    BILLION_LAUGHS,
    DEFAULT,
    PKI,
    TOKEN,
    doc_with,
)


class Forbidden(BaseException):
    """BaseException so that no `except Exception` inside the code under test can swallow it."""


def test_parsing_hostile_documents_has_no_side_effects(
    pki: PKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    hostile = [
        doc_with(pki, user={"exec": {"command": "touch", "args": ["/tmp/pwned"]}}),
        doc_with(pki, user={"auth-provider": {"name": "gcp", "config": {"cmd-path": "/bin/sh"}}}),
        doc_with(pki, user={"tokenFile": "/etc/passwd"}),
        doc_with(pki, user={"client-certificate": "/etc/a.crt", "client-key": "/etc/a.key"}),
        doc_with(pki, cluster={"certificate-authority": "/etc/ssl/certs/ca.pem"}),
        doc_with(pki, cluster={"proxy-url": "http://proxy.evil.example:3128"}),
        doc_with(pki, cluster={"server": "https://metadata.google.internal"}),
        "users: !!python/object/apply:os.system ['touch /tmp/pwned']\n",
        "a: !!python/object/apply:subprocess.Popen [['id']]\n",
        BILLION_LAUGHS,
    ]
    valid = doc_with(pki, cluster={"server": "https://kube.example.com:6443"})
    # Warm up lazy imports/initialisation so only the parsing itself is observed.
    parse_kubeconfig(valid)
    render_kubeconfig(parse_kubeconfig(valid))

    calls: list[str] = []

    def spy(name: str) -> Callable[..., Any]:
        def forbidden(*_args: Any, **_kwargs: Any) -> Any:
            calls.append(name)
            raise Forbidden(name)

        return forbidden

    targets: list[tuple[Any, str]] = [
        (subprocess, "Popen"),
        (subprocess, "run"),
        (os, "system"),
        (os, "popen"),
        (os, "fork"),
        (os, "open"),
        (builtins, "open"),
        (io, "open"),
        (socket, "create_connection"),
        (socket, "getaddrinfo"),
        (socket, "gethostbyname"),
        (socket.socket, "connect"),
        (socket.socket, "connect_ex"),
    ]
    for name in dir(os):
        if name.startswith(("exec", "spawn", "posix_spawn")):
            targets.append((os, name))
    for owner, attribute in targets:
        monkeypatch.setattr(
            owner, attribute, spy(f"{getattr(owner, '__name__', owner)}.{attribute}")
        )

    for document in hostile:
        with pytest.raises(KubeconfigError):
            parse_kubeconfig(document)
        assert find_problems(document)
    creds = parse_kubeconfig(valid)
    assert creds.server == "https://kube.example.com:6443"
    render_kubeconfig(creds)
    credentials_from_token("https://kube.example.com", pki.ca_pem, TOKEN, DEFAULT)
    check_server("https://api.internal.example", DEFAULT)
    monkeypatch.undo()
    assert calls == []


def test_module_imports_only_pure_modules() -> None:
    modules = sorted(Path(credentials.__file__).parent.glob("*.py"))
    assert len(modules) > 1
    for module in modules:
        source = module.read_text(encoding="utf-8")
        imported: set[str] = set()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                # The package's own modules are checked in their turn.
                if node.module.startswith("moonlander.credentials"):
                    continue
                imported.add(node.module.split(".")[0])
        allowed = {
            "__future__",
            "base64",
            "binascii",
            "collections",
            "cryptography",
            "dataclasses",
            "functools",
            "hashlib",
            "ipaddress",
            "json",
            "re",
            "typing",
            "urllib",
            "yaml",
        }
        assert imported <= allowed, (module.name, imported - allowed)
        for banned in (
            "open(",
            "yaml.load(",
            "yaml.unsafe_load",
            "yaml.full_load",
            "Loader=yaml.Loader",
        ):
            assert banned not in source, (module.name, banned)
