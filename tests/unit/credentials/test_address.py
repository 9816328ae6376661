"""Tests for moonlander.credentials.address: server URLs and the server address policy."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import pytest

from moonlander.credentials import (
    KubeconfigError,
    Policy,
    check_address,
    check_server,
    parse_kubeconfig,
)

from ...support.kubeconfigs import (
    DEFAULT,
    DELETE,
    LOOPBACK,
    NO_PRIVATE,
    PERMISSIVE,
    PKI,
    Builder,
    check_rejected,
    doc_with,
    with_cluster,
    with_server,
)

P = pytest.param
REJECTIONS = [
    # --- servers --------------------------------------------------------------------------------
    P(
        with_server("http://10.0.0.1:6443"),
        DEFAULT,
        "PlainHTTP",
        "server http://10.0.0.1:6443: uses plain HTTP",
        id="plain-http",
    ),
    P(with_server("HTTP://10.0.0.1"), DEFAULT, "PlainHTTP", "plain HTTP", id="plain-http-upper"),
    P(
        with_cluster({"server": DELETE}),
        DEFAULT,
        "InvalidServer",
        'cluster "prod": has no server URL',
        id="no-server",
    ),
    P(
        with_server("https://user:pass@10.0.0.1"),
        DEFAULT,
        "InvalidServer",
        "must not contain a user name or password",
        id="server-userinfo",
    ),
    P(
        with_server("https://10.0.0.1/?watch=1"),
        DEFAULT,
        "InvalidServer",
        "query string or fragment",
        id="server-query",
    ),
    P(
        with_server("https://10.0.0.1/#frag"),
        DEFAULT,
        "InvalidServer",
        "query string or fragment",
        id="server-fragment",
    ),
    P(with_server("https://10.0.0.1:0"), DEFAULT, "InvalidServer", "port", id="port-0"),
    P(with_server("https://10.0.0.1:65536"), DEFAULT, "InvalidServer", "port", id="port-65536"),
    P(with_server("https://10.0.0.1:https"), DEFAULT, "InvalidServer", "port", id="port-name"),
    P(with_server("10.0.0.1:6443"), DEFAULT, "InvalidServer", "absolute URL", id="no-scheme"),
    P(with_server("ftp://10.0.0.1"), DEFAULT, "InvalidServer", "only https://", id="ftp"),
    P(
        with_server("https://127.1"),
        LOOPBACK,
        "InvalidServer",
        "not a dotted-decimal IPv4 address",
        id="short-ipv4",
    ),
    P(
        with_server("https://0x7f000001"),
        LOOPBACK,
        "InvalidServer",
        "dotted-decimal",
        id="hex-ipv4",
    ),
    P(
        with_server("https://2852039166"),
        DEFAULT,
        "InvalidServer",
        "dotted-decimal",
        id="decimal-ipv4",
    ),
    P(
        with_server("https://010.000.000.001"),
        DEFAULT,
        "InvalidServer",
        "dotted-decimal",
        id="octal-ipv4",
    ),
    P(with_server("https://bad_host"), DEFAULT, "InvalidServer", "DNS name", id="underscore-host"),
    P(with_server("https://k\u00fcbe.example"), DEFAULT, "InvalidServer", "non-ASCII", id="idn"),
    P(with_server("https://[fe80::1%25eth0]"), DEFAULT, "InvalidServer", "IPv6", id="zone-id"),
    P(with_server("https://[::1"), LOOPBACK, "InvalidServer", "malformed", id="unclosed-bracket"),
    P(with_server("https://::1"), LOOPBACK, "InvalidServer", "port", id="unbracketed-ipv6"),
    P(with_server("https://h/a/../b"), DEFAULT, "InvalidServer", "path", id="dot-dot-path"),
    P(with_server("https://h/a/%2e%2e/b"), DEFAULT, "InvalidServer", "path", id="encoded-dot-dot"),
    P(with_server("https:// h"), DEFAULT, "InvalidServer", "whitespace", id="space-in-url"),
    P(
        with_cluster({"server": ["https://h"]}),
        DEFAULT,
        "InvalidServer",
        "must be a string",
        id="server-list",
    ),
    # --- addresses ------------------------------------------------------------------------------
    P(
        with_server("https://169.254.169.254"),
        DEFAULT,
        "AddressNotAllowed",
        "169.254.169.254 is not allowed: it is a cloud metadata endpoint",
        id="metadata-v4",
    ),
    P(
        with_server("https://[fd00:ec2::254]"),
        DEFAULT,
        "AddressNotAllowed",
        "cloud metadata endpoint",
        id="metadata-v6-aws",
    ),
    P(
        with_server("https://100.100.100.200"),
        DEFAULT,
        "AddressNotAllowed",
        "cloud metadata endpoint",
        id="metadata-alibaba",
    ),
    P(
        with_server("https://[::ffff:169.254.169.254]"),
        DEFAULT,
        "AddressNotAllowed",
        "embeds the IPv4 address 169.254.169.254",
        id="metadata-v4-mapped",
    ),
    P(
        with_server("https://[64:ff9b::a9fe:a9fe]"),
        DEFAULT,
        "AddressNotAllowed",
        "embeds the IPv4 address 169.254.169.254",
        id="metadata-nat64",
    ),
    P(
        with_server("https://169.254.10.1:6443"),
        DEFAULT,
        "AddressNotAllowed",
        "link-local",
        id="link-local-v4",
    ),
    P(
        with_server("https://[fe80::1]:6443"),
        DEFAULT,
        "AddressNotAllowed",
        "link-local",
        id="link-local-v6",
    ),
    P(with_server("https://0.0.0.0"), DEFAULT, "AddressNotAllowed", "unspecified", id="zero-v4"),
    P(with_server("https://[::]"), DEFAULT, "AddressNotAllowed", "unspecified", id="zero-v6"),
    P(with_server("https://224.0.0.1"), DEFAULT, "AddressNotAllowed", "multicast", id="mcast-v4"),
    P(with_server("https://[ff02::1]"), DEFAULT, "AddressNotAllowed", "multicast", id="mcast-v6"),
    P(
        with_server("https://255.255.255.255"),
        DEFAULT,
        "AddressNotAllowed",
        "broadcast",
        id="broadcast",
    ),
    P(
        with_server("https://127.0.0.1:6443"),
        DEFAULT,
        "AddressNotAllowed",
        "loopback",
        id="loopback-v4-default-denied",
    ),
    P(
        with_server("https://[::1]:6443"),
        DEFAULT,
        "AddressNotAllowed",
        "loopback",
        id="loopback-v6-default-denied",
    ),
    P(
        with_server("https://[::ffff:127.0.0.1]"),
        DEFAULT,
        "AddressNotAllowed",
        "loopback",
        id="loopback-v4-mapped",
    ),
    P(
        with_server("https://localhost:8443"),
        DEFAULT,
        "AddressNotAllowed",
        "localhost always means the controller's own host",
        id="localhost-default-denied",
    ),
    P(
        with_server("https://api.localhost"),
        DEFAULT,
        "AddressNotAllowed",
        "allow_loopback",
        id="dot-localhost",
    ),
    P(
        with_server("https://metadata.google.internal"),
        PERMISSIVE,
        "AddressNotAllowed",
        "metadata.google.internal is a cloud metadata endpoint",
        id="metadata-hostname-gcp",
    ),
    P(
        with_server("https://METADATA.Google.Internal./computeMetadata"),
        DEFAULT,
        "AddressNotAllowed",
        "cloud metadata endpoint",
        id="metadata-hostname-case-and-dot",
    ),
    P(
        with_server("https://metadata"),
        DEFAULT,
        "AddressNotAllowed",
        "cloud metadata endpoint",
        id="metadata-short-hostname",
    ),
    P(
        with_server("https://10.1.2.3"),
        NO_PRIVATE,
        "AddressNotAllowed",
        "private addresses are disabled",
        id="private-denied-by-policy",
    ),
    P(
        with_server("https://[fd12::1]"),
        NO_PRIVATE,
        "AddressNotAllowed",
        "private",
        id="ula-denied-by-policy",
    ),
]


@pytest.mark.parametrize(("build", "policy", "reason", "fragment"), REJECTIONS)
@pytest.mark.usefixtures("yaml_loader")
def test_rejected(pki: PKI, build: Builder, policy: Policy, reason: str, fragment: str) -> None:
    check_rejected(pki, build, policy, reason, fragment)


def test_vcluster_localhost_with_allow_loopback(pki: PKI) -> None:
    doc = doc_with(pki, cluster={"server": "https://localhost:8443"})
    assert parse_kubeconfig(doc, LOOPBACK).server == "https://localhost:8443"
    assert parse_kubeconfig(doc_with(pki, cluster={"server": "https://127.0.0.1:8443"}), LOOPBACK)


def test_server_normalisation() -> None:
    cases = {
        "https://API.Example.COM:443/": "https://api.example.com",
        "https://api.example.com:6443/k8s/clusters/c-abc12/": (
            "https://api.example.com:6443/k8s/clusters/c-abc12"
        ),
        "https://[2001:DB8:0::1]:6443": "https://[2001:db8::1]:6443",
        "https://10.0.0.1:06443": "https://10.0.0.1:6443",
        "HTTPS://8.8.8.8": "https://8.8.8.8",
    }
    for raw_server, expected in cases.items():
        assert check_server(raw_server, DEFAULT) == expected


@pytest.mark.parametrize(
    ("server", "policy"),
    [
        (
            "https://169.254.169.254",
            Policy(allowed_networks=(ipaddress.ip_network("169.254.0.0/16"),)),
        ),
        ("https://[fe80::1]", Policy(allowed_networks=(ipaddress.ip_network("fe80::/64"),))),
        ("https://127.0.0.1", Policy(allowed_networks=(ipaddress.ip_network("127.0.0.1/32"),))),
        ("https://localhost", Policy(allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),))),
        (
            "https://10.0.0.1",
            Policy(allow_private=False, allowed_networks=(ipaddress.ip_network("10.0.0.0/24"),)),
        ),
        (
            "https://[::ffff:169.254.169.254]",
            Policy(allowed_networks=(ipaddress.ip_network("169.254.169.254/32"),)),
        ),
    ],
    ids=["metadata", "link-local-v6", "loopback", "localhost", "private", "mapped"],
)
def test_allowed_networks_override_denies(pki: PKI, server: str, policy: Policy) -> None:
    parsed = parse_kubeconfig(doc_with(pki, cluster={"server": server}), policy)
    assert parsed.server == server.replace("::ffff:169.254.169.254", "::ffff:a9fe:a9fe")


def test_public_and_private_addresses_allowed_by_default() -> None:
    for ip in (
        "8.8.8.8",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "100.64.0.1",
        "fd12::1",
        "2600::1",
    ):
        check_address(ipaddress.ip_address(ip), DEFAULT)


def test_check_address_denies() -> None:
    denied = {
        "169.254.169.254": "metadata",
        "fd20:ce::254": "metadata",
        "168.63.129.16": "metadata",
        "169.254.0.1": "link-local",
        "127.0.0.53": "loopback",
        "::1": "loopback",
        str(ipaddress.IPv4Address(0)): "unspecified",
        "0.1.2.3": "unspecified",
        "239.255.255.250": "multicast",
        "2002:a9fe:a9fe::": "embeds",
        "::7f00:1": "IPv4-compatible",
    }
    for ip, fragment in denied.items():
        with pytest.raises(KubeconfigError, match=fragment) as caught:
            check_address(ipaddress.ip_address(ip), DEFAULT)
        assert caught.value.reason == "AddressNotAllowed"
    check_address(ipaddress.ip_address("127.0.0.1"), LOOPBACK)
    check_address(ipaddress.ip_address("::1"), LOOPBACK)
    with pytest.raises(KubeconfigError, match="private"):
        check_address(ipaddress.ip_address("192.168.0.1"), NO_PRIVATE)


# ---------------------------------------------------------------------------------------------
# IPv4 addresses inside IPv6 forms are judged as the IPv4 address they carry
# ---------------------------------------------------------------------------------------------


def _v6(prefix: bytes, v4: str, suffix: bytes = b"") -> str:
    return str(ipaddress.IPv6Address(prefix + ipaddress.IPv4Address(v4).packed + suffix))


def _nat64_local_48(v4: str) -> str:
    """RFC 6052 layout for a /48 prefix (64:ff9b:1::/48 itself): bits 64-71 stay zero."""
    a, b, c, d = ipaddress.IPv4Address(v4).packed
    return str(
        ipaddress.IPv6Address(
            bytes.fromhex("0064ff9b0001") + bytes([a, b, 0, c, d, 0, 0]) + bytes(3)
        )
    )


def _teredo(server: str, client: str) -> str:
    """A Teredo address (2001::/32): server in bits 32-63, client inverted in the last 32."""
    value = (
        (0x2001_0000 << 96)
        | (int(ipaddress.IPv4Address(server)) << 64)
        | (0x8000 << 48)  # flags
        | (0x63BF << 32)  # obfuscated port
        | (~int(ipaddress.IPv4Address(client)) & 0xFFFF_FFFF)
    )
    return str(ipaddress.IPv6Address(value))


PUBLIC_V4 = "8.8.8.8"
TEREDO_SERVER = "65.54.227.120"
EMBEDDINGS: dict[str, Callable[[str], str]] = {
    "mapped": lambda v4: _v6(bytes(10) + b"\xff\xff", v4),
    "translated-siit": lambda v4: _v6(bytes(8) + b"\xff\xff\0\0", v4),
    "nat64-well-known": lambda v4: _v6(bytes.fromhex("0064ff9b") + bytes(8), v4),
    "nat64-local-96": lambda v4: _v6(bytes.fromhex("0064ff9b0001") + bytes(6), v4),
    "nat64-local-subnet-96": lambda v4: _v6(bytes.fromhex("0064ff9b00010001") + bytes(4), v4),
    "nat64-local-48": _nat64_local_48,
    "6to4": lambda v4: _v6(b"\x20\x02", v4, bytes(10)),
    "teredo-server": lambda v4: _teredo(v4, PUBLIC_V4),
    "teredo-client": lambda v4: _teredo(TEREDO_SERVER, v4),
}


def test_embedding_builders() -> None:
    """The test's own encodings, checked against the standard library and RFC text."""
    ip = ipaddress.IPv6Address
    assert EMBEDDINGS["mapped"]("169.254.169.254") == "::ffff:a9fe:a9fe"
    assert EMBEDDINGS["translated-siit"]("169.254.169.254") == "::ffff:0:a9fe:a9fe"
    assert EMBEDDINGS["nat64-local-96"]("169.254.169.254") == "64:ff9b:1::a9fe:a9fe"
    assert EMBEDDINGS["nat64-local-48"]("192.0.2.33") == "64:ff9b:1:c000:2:2100::"
    assert ip(EMBEDDINGS["6to4"]("10.0.0.1")).sixtofour == ipaddress.IPv4Address("10.0.0.1")
    assert ip(_teredo("10.0.0.1", "127.0.0.1")).teredo == (
        ipaddress.IPv4Address("10.0.0.1"),
        ipaddress.IPv4Address("127.0.0.1"),
    )


def _denial(address: str, policy: Policy) -> str:
    with pytest.raises(KubeconfigError) as caught:
        check_address(ipaddress.ip_address(address), policy)
    assert caught.value.reason == "AddressNotAllowed"
    return str(caught.value)


@pytest.mark.parametrize("form", sorted(EMBEDDINGS))
def test_embedded_ipv4_metadata_is_denied(form: str) -> None:
    address = EMBEDDINGS[form]("169.254.169.254")
    metadata = "embeds the IPv4 address 169.254.169.254: it is a cloud metadata endpoint"
    assert metadata in _denial(address, DEFAULT)
    assert metadata in _denial(address, PERMISSIVE)
    with pytest.raises(KubeconfigError) as caught:
        check_server(f"https://[{address}]:6443", DEFAULT)
    assert caught.value.reason == "AddressNotAllowed"


@pytest.mark.parametrize("form", sorted(EMBEDDINGS))
def test_embedded_ipv4_loopback_needs_allow_loopback(form: str) -> None:
    address = EMBEDDINGS[form]("127.0.0.1")
    assert "embeds the IPv4 address 127.0.0.1: it is a loopback" in _denial(address, DEFAULT)
    check_address(ipaddress.ip_address(address), LOOPBACK)


@pytest.mark.parametrize("form", sorted(EMBEDDINGS))
def test_embedded_ipv4_private_follows_deny_private(form: str) -> None:
    address = EMBEDDINGS[form]("10.0.0.1")
    check_address(ipaddress.ip_address(address), DEFAULT)
    assert "embeds the IPv4 address 10.0.0.1: it is a private" in _denial(address, NO_PRIVATE)


@pytest.mark.parametrize("form", sorted(EMBEDDINGS))
def test_embedded_public_ipv4_is_allowed(form: str) -> None:
    address = EMBEDDINGS[form](PUBLIC_V4)
    for policy in (DEFAULT, NO_PRIVATE):
        check_address(ipaddress.ip_address(address), policy)
    assert check_server(f"https://[{address}]", NO_PRIVATE) == f"https://[{address}]"


def test_teredo_is_denied_when_either_end_is() -> None:
    check_address(ipaddress.ip_address(_teredo(TEREDO_SERVER, PUBLIC_V4)), NO_PRIVATE)
    for server, client in (("169.254.169.254", PUBLIC_V4), (TEREDO_SERVER, "169.254.169.254")):
        assert "169.254.169.254: it is a cloud metadata" in _denial(
            _teredo(server, client), DEFAULT
        )
    assert "127.0.0.1: it is a loopback" in _denial(_teredo("127.0.0.1", "10.0.0.1"), DEFAULT)
    assert "10.0.0.1: it is a private" in _denial(_teredo(PUBLIC_V4, "10.0.0.1"), NO_PRIVATE)


def test_local_nat64_judges_every_prefix_layout() -> None:
    """Inside 64:ff9b:1::/48 the translator's prefix length is not known: the IPv4 address of
    each RFC 6052 layout is judged, whatever the other bits hold."""
    denied = [
        "64:ff9b:1:a9fe:a9:fe00::",  # /48 layout
        "64:ff9b:1:a9fe:a9:fe00:808:808",  # /48 layout, a public address in the last 32 bits
        "64:ff9b:1:a9:fe:a9fe::",  # /56 layout
        "64:ff9b:1:0:a9:fea9:fe00:0",  # /64 layout
    ]
    for address in denied:
        assert "169.254.169.254: it is a cloud metadata" in _denial(address, PERMISSIVE)
    # Outside the local-use /48 nothing is assumed about the layout.
    check_address(ipaddress.ip_address("64:ff9b:2:a9fe:a9:fe00::"), DEFAULT)


@pytest.mark.parametrize("v4", ["169.254.169.254", "127.0.0.1", "10.0.0.1", PUBLIC_V4])
def test_ipv4_compatible_addresses_are_denied_whatever_they_carry(v4: str) -> None:
    address = _v6(bytes(12), v4)  # ::a.b.c.d, deprecated by RFC 4291
    assert "IPv4-compatible" in _denial(address, DEFAULT)
    assert "IPv4-compatible" in _denial(address, PERMISSIVE)


def test_allowed_networks_cover_embedded_ipv4() -> None:
    allow = Policy(allowed_networks=(ipaddress.ip_network("169.254.169.254/32"),))
    for form in sorted(EMBEDDINGS):
        address = EMBEDDINGS[form]("169.254.169.254")
        if form == "nat64-local-48":
            # Read with the /56 layout, the same bits are 254.169.254.0: judged on its own.
            assert "254.169.254.0: it is broadcast/reserved" in _denial(address, allow)
        else:
            check_address(ipaddress.ip_address(address), allow)
