"""The server address policy: which server URLs and addresses the controller may contact.

:func:`check_server` validates a server URL and checks a literal address; :func:`check_address`
is also used at connect time, on every address a host name resolves to.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final
from urllib.parse import unquote

from moonlander.credentials.model import IPAddress, IPNetwork, KubeconfigError, Policy
from moonlander.credentials.syntax import _HOSTNAME_RE, _NUMERIC_LABEL_RE, _PRINTABLE_ASCII_RE

__all__ = ["check_address", "check_server"]

_MAX_SERVER_LEN: Final = 2048
_URL_RE = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<authority>[^/?#]*)(?P<path>[^?#]*)(?P<rest>.*)",
    re.DOTALL,
)
_SHOWN_AUTHORITY_RE = re.compile(r"(\[[0-9A-Fa-f:.]{1,60}\]|[A-Za-z0-9.\-]{1,253})(:[0-9]{1,5})?")
_PATH_SEGMENT_RE = re.compile(r"([A-Za-z0-9\-._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})+")


def _nets(*cidrs: str) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(c) for c in cidrs)


# Checked in order; the first match names the problem. allowed_networks beats all of them.
_ALWAYS_DENIED: Final[tuple[tuple[str, tuple[IPNetwork, ...]], ...]] = (
    (
        "a cloud metadata endpoint",
        _nets(
            "169.254.169.254/32",  # AWS, GCP, Azure, OpenStack, ...
            "100.100.100.200/32",  # Alibaba
            "168.63.129.16/32",  # Azure wireserver
            "fd00:ec2::254/128",  # AWS IPv6
            "fd20:ce::254/128",  # GCP IPv6
        ),
    ),
    ("an unspecified ('this host') address", _nets("0.0.0.0/8", "::/128")),
)
_LOOPBACK_NETS: Final = _nets("127.0.0.0/8", "::1/128")
_DENIED_AFTER_LOOPBACK: Final[tuple[tuple[str, tuple[IPNetwork, ...]], ...]] = (
    ("link-local", _nets("169.254.0.0/16", "fe80::/10")),
    ("multicast", _nets("224.0.0.0/4", "ff00::/8")),
    ("broadcast/reserved", _nets("240.0.0.0/4")),
    ("deprecated IPv6 site-local", _nets("fec0::/10")),
    ("a deprecated IPv4-compatible IPv6 address", _nets("::/96")),
)
_PRIVATE_NETS: Final = _nets(
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7"
)
# IPv6 forms that carry an IPv4 address to an IPv4 host (besides IPv4-mapped, 6to4 and Teredo,
# which the ipaddress module decodes). The deprecated IPv4-compatible form (::/96) is denied as a
# whole above.
_NAT64_NET: Final = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052 well-known prefix
_NAT64_LOCAL_NET: Final = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215 local use
_IPV4_TRANSLATED_NET: Final = ipaddress.IPv6Network("::ffff:0:0:0/96")  # SIIT, RFC 2765
_THIS_NETWORK: Final = ipaddress.IPv4Network("0.0.0.0/8")
_METADATA_HOSTNAMES: Final = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
    }
)


def _safe_server(server: str) -> str:
    """A form of ``server`` fit for messages: scheme and host[:port] only. User info, path,
    query and fragment can carry secrets, so they are dropped; unparsable input is not echoed."""
    match = _URL_RE.fullmatch(server) if len(server) <= _MAX_SERVER_LEN else None
    if match is None:
        return "(unparsable URL)"
    authority = match["authority"].rpartition("@")[2]
    if not _SHOWN_AUTHORITY_RE.fullmatch(authority) or len(match["scheme"]) > 10:
        return "(unparsable URL)"
    return f"{match['scheme'].lower()}://{authority}"


def _rfc6052_ipv4(value: int, prefix_len: int) -> ipaddress.IPv4Address:
    """The IPv4 address RFC 6052 places after a ``prefix_len``-bit prefix (32 to 64 bits):
    from bit ``prefix_len`` on, skipping bits 64-71."""
    high_bits = 64 - prefix_len  # IPv4 bits before bit 64
    high = (value >> 64) & ((1 << high_bits) - 1)
    low_bits = 32 - high_bits  # the rest, from bit 72
    low = (value >> (56 - low_bits)) & ((1 << low_bits) - 1)
    return ipaddress.IPv4Address((high << low_bits) | low)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, ...]:
    """The IPv4 addresses that connecting to ``ip`` may reach, for the IPv6 forms that carry
    one; several when the form does not say which."""
    if ip.ipv4_mapped is not None:
        return (ip.ipv4_mapped,)
    if ip.sixtofour is not None:
        return (ip.sixtofour,)
    if ip.teredo is not None:
        return ip.teredo  # (server, client); the client address comes de-obfuscated
    last32 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _NAT64_NET or ip in _IPV4_TRANSLATED_NET:
        return (last32,)
    if ip in _NAT64_LOCAL_NET:
        # The operator's translator may use any RFC 6052 prefix inside this /48: a /96 puts
        # the IPv4 address in the last 32 bits, a /48, /56 or /64 elsewhere. Every layout is
        # judged, except where it yields 0.0.0.0/8: nothing is ever translated to "this
        # network", so those are the zero bits of an address that uses another layout.
        layouts = [_rfc6052_ipv4(int(ip), n) for n in (48, 56, 64)] + [last32]
        return tuple(v4 for v4 in layouts if v4 not in _THIS_NETWORK)
    return ()


def _address_problem(ip: IPAddress, policy: Policy) -> str | None:
    """Why ``ip`` must not be contacted, or None when it may be."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id is not None:
        ip = ipaddress.IPv6Address(int(ip))  # the zone does not change what is reached
    if policy.within_networks is not None and not any(ip in net for net in policy.within_networks):
        return (
            "it is outside the networks Landings of this namespace may name "
            "(LandingPolicy sourceNetworks)"
        )
    return _base_problem(ip, policy)


def _base_problem(ip: IPAddress, policy: Policy) -> str | None:
    if any(ip in net for net in policy.allowed_networks):
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        # IPv4 addresses smuggled inside IPv6 forms reach the IPv4 host: judge those too.
        for inner in _embedded_ipv4(ip):
            why = _base_problem(inner, policy)
            if why is not None:
                return f"it embeds the IPv4 address {inner}: {why}"
    for category, nets in _ALWAYS_DENIED:
        if any(ip in net for net in nets):
            return f"it is {category}"
    if any(ip in net for net in _LOOPBACK_NETS):
        if policy.allow_loopback:
            return None
        return (
            "it is a loopback address (the controller's own host); loopback is disabled by policy"
        )
    for category, nets in _DENIED_AFTER_LOOPBACK:
        if any(ip in net for net in nets):
            return f"it is {category}"
    if not policy.allow_private and any(ip in net for net in _PRIVATE_NETS):
        return "it is a private address and private addresses are disabled by policy"
    return None


def _hint(why: str) -> str:
    if "sourceNetworks" in why:
        return ""  # a namespace's narrowing: allowed_networks does not widen it
    return " (an operator can permit it with allowed_networks)"


def check_address(ip: IPAddress, policy: Policy) -> None:
    """Raise ``KubeconfigError(reason="AddressNotAllowed")`` unless ``policy`` lets the controller
    connect to ``ip``. Used for literal server IPs and, at connect time, after DNS resolution."""
    why = _address_problem(ip, policy)
    if why is not None:
        raise KubeconfigError(
            f"address {ip} is not allowed: {why}{_hint(why)}",
            reason="AddressNotAllowed",
        )


def _check_host(host: str, shown: str, policy: Policy | None) -> str:
    """Validate the host part of a server URL; return its normalised form. Without a
    ``policy`` only the syntax is checked, not whether the host may be contacted."""

    def invalid(why: str) -> KubeconfigError:
        return KubeconfigError(f"server {shown}: {why}", reason="InvalidServer")

    if host.startswith("["):
        if not host.endswith("]") or "%" in host:
            raise invalid("the IPv6 address is malformed (zone IDs are not allowed)")
        try:
            ip6 = ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            ip6 = None
        if ip6 is None:
            raise invalid("the IPv6 address is malformed")
        if policy is not None:
            _check_server_ip(ip6, shown, policy)
        return f"[{ip6.compressed}]"

    name = host.lower()
    bare = name[:-1] if name.endswith(".") else name
    if not bare:
        raise invalid("the host is empty")
    if _NUMERIC_LABEL_RE.fullmatch(bare.rpartition(".")[2]):
        # Anything ending in a number is an IPv4 address to resolvers (inet_aton accepts
        # "127.1", "0x7f.1", "2130706433"); only plain dotted-decimal is unambiguous.
        try:
            ip4 = ipaddress.IPv4Address(bare) if bare == name else None
        except ValueError:
            ip4 = None
        if ip4 is None:
            raise invalid("the host looks numeric but is not a dotted-decimal IPv4 address")
        if policy is not None:
            _check_server_ip(ip4, shown, policy)
        return str(ip4)
    if not _HOSTNAME_RE.fullmatch(bare):
        raise invalid("the host is not a valid DNS name")
    if policy is None:
        return name
    if bare == "localhost" or bare.endswith(".localhost"):
        why = _address_problem(ipaddress.IPv4Address("127.0.0.1"), policy)
        if why is not None:
            raise KubeconfigError(
                f"server {shown}: {bare} always means the controller's own host; loopback "
                "servers are disabled by policy (allow_loopback enables them, e.g. for vcluster)",
                reason="AddressNotAllowed",
            )
    elif bare in _METADATA_HOSTNAMES:
        raise KubeconfigError(
            f"server {shown}: {bare} is a cloud metadata endpoint and is never allowed",
            reason="AddressNotAllowed",
        )
    return name


def _check_server_ip(ip: IPAddress, shown: str, policy: Policy) -> None:
    why = _address_problem(ip, policy)
    if why is not None:
        raise KubeconfigError(
            f"server {shown}: address {ip} is not allowed: {why}{_hint(why)}",
            reason="AddressNotAllowed",
        )


def check_server(server: str, policy: Policy) -> str:
    """Validate and normalise a server URL (from a kubeconfig or a user-supplied override).

    Must be ``https://host[:port][/path]`` without user info, query or fragment. Literal IPs are
    checked against ``policy``; "localhost"/"*.localhost" count as loopback and metadata host
    names are denied. Other host names are accepted here: DNS answers are checked with
    :func:`check_address` at connect time.
    """
    return _check_server(server, policy)


def _check_server_syntax(server: str) -> str:
    """:func:`check_server` without the address policy: for a kubeconfig's server that is
    replaced before anything connects (``parse_kubeconfig(..., server=...)``), so it must be
    a well-formed https URL but is never contacted."""
    return _check_server(server, None)


def _check_server(server: str, policy: Policy | None) -> str:
    if not isinstance(server, str):
        raise KubeconfigError("server must be a string", reason="InvalidServer")
    if not server:
        raise KubeconfigError("server is empty", reason="InvalidServer")
    if len(server) > _MAX_SERVER_LEN:
        raise KubeconfigError(
            f"server is longer than {_MAX_SERVER_LEN} characters", reason="InvalidServer"
        )
    shown = _safe_server(server)
    if not _PRINTABLE_ASCII_RE.fullmatch(server):
        # Also rules out Unicode hosts, whose normalisation differs between libraries.
        raise KubeconfigError(
            f"server {shown}: contains whitespace, control or non-ASCII characters",
            reason="InvalidServer",
        )
    match = _URL_RE.fullmatch(server)
    if match is None:
        raise KubeconfigError(
            f"server {shown}: is not an absolute URL like https://host:6443",
            reason="InvalidServer",
        )
    scheme = match["scheme"].lower()
    if scheme == "http":
        raise KubeconfigError(
            f"server {shown}: uses plain HTTP; only https:// is allowed because credentials "
            "would travel unencrypted and unauthenticated",
            reason="PlainHTTP",
        )
    if scheme != "https":
        raise KubeconfigError(
            f"server {shown}: only https:// URLs are allowed", reason="InvalidServer"
        )
    if match["rest"]:
        raise KubeconfigError(
            f"server {shown}: must not have a query string or fragment", reason="InvalidServer"
        )
    authority = match["authority"]
    if "@" in authority:
        raise KubeconfigError(
            f"server {shown}: must not contain a user name or password", reason="InvalidServer"
        )

    if authority.startswith("["):
        host, bracket, port_text = authority.partition("]")
        host += bracket
        if not bracket or (port_text and not port_text.startswith(":")):
            raise KubeconfigError(f"server {shown}: malformed host", reason="InvalidServer")
        port_text = port_text[1:] if port_text else None
    else:
        host, colon, port_text = authority.partition(":")
        port_text = port_text if colon else None
    port: int | None = None
    if port_text is not None:
        if not (port_text.isascii() and port_text.isdigit() and len(port_text) <= 5):
            raise KubeconfigError(f"server {shown}: invalid port", reason="InvalidServer")
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise KubeconfigError(
                f"server {shown}: port must be between 1 and 65535", reason="InvalidServer"
            )
    normal_host = _check_host(host, shown, policy)

    path = match["path"].rstrip("/")
    if path:
        for segment in path[1:].split("/"):
            if not _PATH_SEGMENT_RE.fullmatch(segment) or unquote(segment) in (".", ".."):
                raise KubeconfigError(
                    f"server {shown}: the URL path is malformed (empty, '.' or '..' segments or "
                    "invalid characters)",
                    reason="InvalidServer",
                )
    port_part = "" if port in (None, 443) else f":{port}"
    return f"https://{normal_host}{port_part}{path}"
