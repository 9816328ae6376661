"""Memoised credential work gives what the pure functions give, and keeps no errors."""

from __future__ import annotations

import hashlib

import pytest

from moonlander.controller import memo
from moonlander.credentials import KubeconfigError, Policy, parse_kubeconfig, render_kubeconfig

from ...support.kubeconfigs import DEFAULT, PKI, _pki, doc_with


@pytest.fixture(scope="module")
def pki() -> PKI:
    return _pki()


def test_parsed_is_parse_kubeconfig_and_kept_per_policy_and_server(pki: PKI) -> None:
    raw = doc_with(pki).encode()
    first = memo.parsed(raw, DEFAULT)
    assert first == parse_kubeconfig(raw, DEFAULT)
    assert memo.parsed(raw, DEFAULT) is first  # kept
    # Another policy or server is another question, judged afresh.
    narrowed = Policy(within_networks=())
    with pytest.raises(KubeconfigError):
        memo.parsed(raw, narrowed)
    moved = memo.parsed(raw, DEFAULT, "https://10.0.0.9:6443")
    assert moved.server == "https://10.0.0.9:6443" and moved is not first


def test_errors_are_not_kept(pki: PKI) -> None:
    raw = b"apiVersion: v1\nkind: Config\n"
    for _ in range(2):
        with pytest.raises(KubeconfigError):
            memo.parsed(raw, DEFAULT)
    assert all(k[0] != hashlib.sha256(raw).digest() for k in memo._parsed)


def test_bounded(pki: PKI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memo, "SIZE", 2)
    servers = [f"https://10.0.0.{i}:6443" for i in range(1, 5)]
    raw = doc_with(pki).encode()
    memo._parsed.clear()
    for server in servers:
        memo.parsed(raw, DEFAULT, server)
    assert [k[2] for k in memo._parsed] == servers[-2:]


def test_rendered_and_with_server(pki: PKI) -> None:
    creds = memo.parsed(doc_with(pki).encode(), DEFAULT)
    assert memo.rendered(creds, "landed") == render_kubeconfig(creds, name="landed")
    moved = memo.with_server(creds, "https://10.1.0.1:6443", DEFAULT)
    assert moved == creds.with_server("https://10.1.0.1:6443", DEFAULT)
