"""``parse_kubeconfig(raw, policy, server=...)``: a server that replaces the current context's
server before anything judges it (a ChildToParent Landing's ``spec.server``; vcluster's
Secret names ``https://localhost:8443``, issue 11 item 7)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from moonlander.credentials import KubeconfigError, find_problems, parse_kubeconfig

from ...support.kubeconfigs import (
    CLUSTER,
    DEFAULT,
    DELETE,
    PKI,
    TOKEN,
    base_doc,
    doc_with,
)

VCLUSTER = "https://localhost:8443"
REACHABLE = "https://10.96.0.12:443"


def vcluster_doc(pki: PKI, **cluster: Any) -> str:
    return doc_with(pki, cluster={"server": VCLUSTER, **cluster})


def test_override_replaces_loopback_server_before_the_address_policy(pki: PKI) -> None:
    assert not DEFAULT.allow_loopback
    creds = parse_kubeconfig(vcluster_doc(pki), DEFAULT, server=REACHABLE)
    assert creds.server == "https://10.96.0.12"  # normalised like any server
    assert creds.token == TOKEN
    assert creds.ca_data == pki.ca_pem
    assert find_problems(vcluster_doc(pki), DEFAULT, server=REACHABLE) == []
    # Exactly what a document naming the override would give.
    direct = parse_kubeconfig(doc_with(pki, cluster={"server": REACHABLE}), DEFAULT)
    assert creds.fingerprint() == direct.fingerprint()


def test_without_override_loopback_is_refused(pki: PKI) -> None:
    with pytest.raises(KubeconfigError) as err:
        parse_kubeconfig(vcluster_doc(pki), DEFAULT)
    assert err.value.reason == "AddressNotAllowed"
    assert [p.reason for p in find_problems(vcluster_doc(pki), DEFAULT)] == ["AddressNotAllowed"]


@pytest.mark.parametrize(
    "server",
    [
        "https://[::1]:8443",
        "https://127.0.0.1:8443",
        "https://169.254.169.254",
        "https://metadata.google.internal",
        "https://vcluster.localhost:8443",
    ],
)
def test_any_replaced_address_is_not_judged(pki: PKI, server: str) -> None:
    """The document's own server is never contacted once replaced."""
    creds = parse_kubeconfig(doc_with(pki, cluster={"server": server}), DEFAULT, server=REACHABLE)
    assert creds.server == "https://10.96.0.12"


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ("https://169.254.169.254", "AddressNotAllowed"),
        ("https://localhost:8443", "AddressNotAllowed"),
        ("https://127.0.0.1:6443", "AddressNotAllowed"),
        ("https://[fe80::1]", "AddressNotAllowed"),
        ("https://metadata.google.internal", "AddressNotAllowed"),
        ("http://10.0.0.1:6443", "PlainHTTP"),
        ("https://user:pw@10.0.0.1", "InvalidServer"),
        ("10.0.0.1:6443", "InvalidServer"),
        ("", "InvalidServer"),
    ],
)
def test_override_is_judged_by_the_policy(pki: PKI, override: str, reason: str) -> None:
    with pytest.raises(KubeconfigError) as err:
        parse_kubeconfig(vcluster_doc(pki), DEFAULT, server=override)
    assert err.value.reason == reason
    assert err.value.message.startswith("server override: ")
    problems = find_problems(vcluster_doc(pki), DEFAULT, server=override)
    assert [p.reason for p in problems] == [reason]  # and nothing about the replaced server
    assert "pw" not in str(err.value)


@pytest.mark.parametrize(
    ("server", "reason"),
    [
        (DELETE, "InvalidServer"),
        ("", "InvalidServer"),
        (8443, "InvalidServer"),
        ("http://localhost:8443", "PlainHTTP"),
        ("localhost:8443", "InvalidServer"),
        ("https://user:secret@localhost:8443", "InvalidServer"),
        ("https://localhost:8443?x=1", "InvalidServer"),
        ("https://localhost:99999", "InvalidServer"),
        ("https://local host:8443", "InvalidServer"),
        ("https://127.1:8443", "InvalidServer"),
        ("https://[::1%eth0]:8443", "InvalidServer"),
        ("https://localhost:8443/../x", "InvalidServer"),
    ],
)
def test_replaced_server_must_still_be_a_valid_https_url(
    pki: PKI, server: object, reason: str
) -> None:
    raw = doc_with(pki, cluster={"server": server})
    with pytest.raises(KubeconfigError) as err:
        parse_kubeconfig(raw, DEFAULT, server=REACHABLE)
    assert err.value.reason == reason
    assert err.value.message.startswith(f'cluster "{CLUSTER}": ')
    assert "secret" not in str(err.value)


def test_other_checks_still_apply_to_the_replaced_cluster(pki: PKI) -> None:
    with pytest.raises(KubeconfigError) as err:
        parse_kubeconfig(
            vcluster_doc(pki, **{"insecure-skip-tls-verify": True}), DEFAULT, server=REACHABLE
        )
    assert err.value.reason == "InsecureTLS"
    with pytest.raises(KubeconfigError) as err:
        parse_kubeconfig(vcluster_doc(pki, exec={"command": "x"}), DEFAULT, server=REACHABLE)
    assert err.value.reason == "UnknownField"


def test_other_clusters_are_still_judged(pki: PKI) -> None:
    """Only the current context's server is replaced; the rest of the document must be clean
    as always."""
    doc = base_doc(pki)
    doc["clusters"][0]["cluster"]["server"] = VCLUSTER
    doc["clusters"].append({"name": "other", "cluster": {"server": "https://169.254.169.254"}})
    raw = yaml.safe_dump(doc)
    problems = find_problems(raw, DEFAULT, server=REACHABLE)
    assert [p.reason for p in problems] == ["AddressNotAllowed"]
    assert problems[0].message.startswith('cluster "other": ')
    with pytest.raises(KubeconfigError):
        parse_kubeconfig(raw, DEFAULT, server=REACHABLE)


def test_current_context_picks_the_replaced_cluster(pki: PKI) -> None:
    doc = base_doc(pki)
    doc["clusters"].append({"name": "vc", "cluster": {"server": VCLUSTER}})
    doc["contexts"].append({"name": "vc", "context": {"cluster": "vc", "user": "admin"}})
    doc["current-context"] = "vc"
    creds = parse_kubeconfig(yaml.safe_dump(doc), DEFAULT, server=REACHABLE)
    assert (creds.cluster_name, creds.server) == ("vc", "https://10.96.0.12")
    # The prod cluster (10.0.0.1) is not current: its server is kept and judged.
    doc["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:6443"
    with pytest.raises(KubeconfigError) as err:
        parse_kubeconfig(yaml.safe_dump(doc), DEFAULT, server=REACHABLE)
    assert err.value.reason == "AddressNotAllowed"
    assert err.value.message.startswith(f'cluster "{CLUSTER}": ')


def test_documents_that_are_not_kubeconfigs_are_still_refused() -> None:
    for raw in ("", "[]", "kind: Config\nclusters: 3\n"):
        with pytest.raises(KubeconfigError):
            parse_kubeconfig(raw, DEFAULT, server=REACHABLE)
