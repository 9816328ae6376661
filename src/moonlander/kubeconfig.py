"""Parse, validate and render tenant-supplied kubeconfigs.

Every kubeconfig is treated as hostile: tenants write them and the controller then connects
with them. A kubeconfig can make a client library run programs (``exec``, ``auth-provider``),
read controller files (``tokenFile``, ``certificate-authority``...), proxy traffic, impersonate
other identities or reach cloud metadata endpoints. So this module never hands the document to
a client loader; it reads the YAML itself, accepts only an allowlist of fields, and produces a
small :class:`Credentials` value that is rendered back into a minimal kubeconfig.

The module is pure: no network, no subprocesses and no file access. Error messages never contain
secret material (tokens, keys, certificate data, passwords): at most field names, (truncated)
context/cluster/user names and the server URL without user info, path or query.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import ipaddress
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

__all__ = [
    "Credentials",
    "KubeconfigError",
    "Policy",
    "check_address",
    "check_server",
    "credentials_from_token",
    "find_problems",
    "parse_kubeconfig",
    "render_kubeconfig",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class KubeconfigError(ValueError):
    """Raised for an unusable kubeconfig.

    ``str(err)`` is a specific, plain-English reason that never contains secret material: at
    most field names, context/cluster/user names (truncated to 64 characters) and the server URL.
    ``reason`` is a short machine code such as ``"ExecNotAllowed"``.
    """

    reason: str

    def __init__(self, message: str, *, reason: str = "InvalidKubeconfig") -> None:
        super().__init__(message)
        self.reason = reason

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"KubeconfigError(reason={self.reason!r}, message={self.message!r})"

    def _within(self, where: str) -> KubeconfigError:
        return KubeconfigError(f"{where}: {self.message}", reason=self.reason)


@dataclass(frozen=True)
class Policy:
    """What a kubeconfig may point at. Built by the operator, never by tenants."""

    max_bytes: int = 256 * 1024
    # insecure-skip-tls-verify is otherwise rejected.
    allow_insecure_tls: bool = False
    # 127.0.0.0/8, ::1, "localhost": the controller's own host (vcluster setups need it).
    allow_loopback: bool = False
    # RFC 1918, 100.64.0.0/10 and IPv6 ULA: allowed by default because clusters live there.
    allow_private: bool = True
    # Explicitly allowed ranges; they override every deny, including metadata and link-local.
    allowed_networks: tuple[IPNetwork, ...] = ()

    def __post_init__(self) -> None:
        # Catch config mistakes early: a string here would make `ip in net` blow up at connect
        # time, far away from the cause.
        if isinstance(self.max_bytes, bool) or not isinstance(self.max_bytes, int):
            raise TypeError("Policy.max_bytes must be an int")
        if self.max_bytes <= 0:
            raise ValueError("Policy.max_bytes must be positive")
        for net in self.allowed_networks:
            if not isinstance(net, ipaddress.IPv4Network | ipaddress.IPv6Network):
                raise TypeError("Policy.allowed_networks must hold ipaddress networks")


@dataclass(frozen=True, repr=False)
class Credentials:
    """Everything needed to connect to one cluster. Only built from validated input."""

    server: str  # https URL, normalised (no trailing slash)
    ca_data: bytes | None  # PEM
    token: str | None
    client_cert: bytes | None  # PEM
    client_key: bytes | None  # PEM
    tls_server_name: str | None
    insecure_skip_tls_verify: bool  # only True when the policy allowed it
    context_name: str
    cluster_name: str
    user_name: str
    namespace: str | None

    def fingerprint(self) -> str:
        """SHA-256 hex over every field that affects the connection.

        Names and namespace are excluded: they do not change where or as whom we connect.
        The value depends only on the fields, never on how the source YAML was laid out.
        """
        material = {
            "server": self.server,
            "ca_data": _b64(self.ca_data),
            "token": self.token,
            "client_cert": _b64(self.client_cert),
            "client_key": _b64(self.client_key),
            "tls_server_name": self.tls_server_name,
            "insecure_skip_tls_verify": self.insecure_skip_tls_verify,
        }
        blob = json.dumps(material, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(b"moonlander.credentials.v1\0" + blob.encode()).hexdigest()

    def with_server(self, server: str, policy: Policy) -> Credentials:
        """Return a copy pointing at ``server``, validated exactly like a parsed server."""
        return dataclasses.replace(self, server=check_server(server, policy))

    def __repr__(self) -> str:
        # Redacted on purpose: these objects end up in logs and tracebacks.
        auth = [
            kind
            for kind, present in (
                ("token", self.token is not None),
                ("client-certificate", self.client_cert is not None),
            )
            if present
        ]
        return (
            f"Credentials(server={self.server!r}, context={self.context_name!r}, "
            f"cluster={self.cluster_name!r}, user={self.user_name!r}, "
            f"namespace={self.namespace!r}, auth={'+'.join(auth) or 'none'}, "
            f"insecure_skip_tls_verify={self.insecure_skip_tls_verify})"
        )

    __str__ = __repr__


_DEFAULT_POLICY: Final = Policy()

# --------------------------------------------------------------------------------------------
# Limits and field tables
# --------------------------------------------------------------------------------------------

_MAX_NODES: Final = 10_000  # scalars + collections; real kubeconfigs have a few hundred
_MAX_DEPTH: Final = 64  # keeps later recursive walks (==, json.dumps) far from the limit
_MAX_SERVER_LEN: Final = 2048
_NAME_LIMIT: Final = 64
_MAX_RSA_BITS: Final = 8192

# Prefer libyaml for speed; both parsers produce the same events for what we accept.
# libyaml's emitter when present: the pure-Python one was a hot spot of the benchmark.
_DUMPER: type[yaml.SafeDumper] | type[yaml.CSafeDumper] = getattr(
    yaml, "CSafeDumper", yaml.SafeDumper
)
_LOADER: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = getattr(
    yaml, "CSafeLoader", yaml.SafeLoader
)

# Same set PyYAML's reader rejects; checked up front so libyaml (more lenient) agrees.
_NON_PRINTABLE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)
_PRINTABLE_ASCII_RE = re.compile(r"[\x21-\x7e]+")
_DNS_LABEL_RE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_HOSTNAME_RE = re.compile(
    r"(?=.{1,253}\Z)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*",
    re.IGNORECASE,
)
_URL_RE = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<authority>[^/?#]*)(?P<path>[^?#]*)(?P<rest>.*)",
    re.DOTALL,
)
_SHOWN_AUTHORITY_RE = re.compile(r"(\[[0-9A-Fa-f:.]{1,60}\]|[A-Za-z0-9.\-]{1,253})(:[0-9]{1,5})?")
_FIELD_NAME_RE = re.compile(r"[A-Za-z0-9_.<>-]{1,40}")
_PATH_SEGMENT_RE = re.compile(r"([A-Za-z0-9\-._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})+")
_NUMERIC_LABEL_RE = re.compile(r"[0-9]+|0x[0-9a-f]*", re.IGNORECASE)
_B64_RE = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_B64_WHITESPACE_RE = re.compile(r"[ \t\r\n]+")

# YAML 1.1 plain-scalar nulls/booleans, as both PyYAML and Go's yaml.v2 resolve them.
_YAML_NULLS: Final = frozenset({"", "~", "null", "Null", "NULL"})
_YAML_TRUE: Final = frozenset({"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"})
_YAML_FALSE: Final = frozenset({"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"})

_TOP_LEVEL_FIELDS: Final = frozenset(
    {"apiVersion", "kind", "clusters", "users", "contexts", "current-context"}
)
_IGNORED_FIELDS: Final = frozenset({"extensions", "preferences"})
_CLUSTER_FIELDS: Final = frozenset(
    {"server", "certificate-authority-data", "tls-server-name", "insecure-skip-tls-verify"}
)
_CLUSTER_HARMLESS: Final = frozenset({"disable-compression", "extensions"})
_USER_FIELDS: Final = frozenset({"token", "client-certificate-data", "client-key-data"})
_CONTEXT_FIELDS: Final = frozenset({"cluster", "user", "namespace"})

_READS_FILES = "it would make the controller read a file from its own filesystem"
_FORBIDDEN_CLUSTER: Final[dict[str, tuple[str, str]]] = {
    "certificate-authority": (
        "FilePathNotAllowed",
        f"certificate-authority (a file path) is not allowed: {_READS_FILES}; "
        "inline the CA as certificate-authority-data",
    ),
    "proxy-url": (
        "ProxyNotAllowed",
        "proxy-url is not allowed: it would route the controller's traffic and credentials "
        "through a proxy chosen by the kubeconfig",
    ),
}
_IMPERSONATION = (
    "ImpersonationNotAllowed",
    "{field} (impersonation) is not allowed: the credentials must act as themselves",
)
_BASIC_AUTH = (
    "BasicAuthNotAllowed",
    "{field} (basic authentication) is not supported; use a token or a client certificate",
)
_FORBIDDEN_USER: Final[dict[str, tuple[str, str]]] = {
    "exec": (
        "ExecNotAllowed",
        "exec plugins are not allowed: they would run a program inside the controller",
    ),
    "auth-provider": (
        "AuthProviderNotAllowed",
        "auth-provider plugins are not allowed: they would run provider code and refresh "
        "tokens inside the controller; use a static token or a client certificate",
    ),
    "tokenFile": (
        "FilePathNotAllowed",
        f"tokenFile (a file path) is not allowed: {_READS_FILES}; inline the token as token",
    ),
    "client-certificate": (
        "FilePathNotAllowed",
        f"client-certificate (a file path) is not allowed: {_READS_FILES}; "
        "inline it as client-certificate-data",
    ),
    "client-key": (
        "FilePathNotAllowed",
        f"client-key (a file path) is not allowed: {_READS_FILES}; inline it as client-key-data",
    ),
    "username": _BASIC_AUTH,
    "password": _BASIC_AUTH,
    "as": _IMPERSONATION,
    "as-uid": _IMPERSONATION,
    "as-groups": _IMPERSONATION,
    "as-user-extra": _IMPERSONATION,
}


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
_NAT64_NET: Final = ipaddress.IPv6Network("64:ff9b::/96")
_METADATA_HOSTNAMES: Final = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
    }
)


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _q(text: str) -> str:
    """Quote a tenant-chosen name for a message: truncated, and escaped so control or bidi
    characters cannot forge log lines."""
    if len(text) > _NAME_LIMIT:
        text = text[:_NAME_LIMIT] + "..."
    return json.dumps(text)


def _field(key: str) -> str:
    """Quote a field name for a message. Anything that does not look like a field name (for
    instance a token pasted where a key belongs) is not echoed."""
    if _FIELD_NAME_RE.fullmatch(key):
        return json.dumps(key)
    return "(name not shown)"


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _unset(value: object) -> bool:
    # Go's client treats null/empty as "not set"; so do we, for both allowed and denied fields.
    return value is None or value == "" or value == [] or value == {}


def _type_name(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    return "a string"


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


# --------------------------------------------------------------------------------------------
# Addresses and servers
# --------------------------------------------------------------------------------------------


def _address_problem(ip: IPAddress, policy: Policy) -> str | None:
    """Why ``ip`` must not be contacted, or None when it may be."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id is not None:
        ip = ipaddress.IPv6Address(int(ip))  # the zone does not change what is reached
    if any(ip in net for net in policy.allowed_networks):
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        # IPv4 addresses smuggled inside IPv6 forms reach the IPv4 host: judge that one too.
        inner = ip.ipv4_mapped or ip.sixtofour
        if inner is None and ip in _NAT64_NET:
            inner = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if inner is not None:
            why = _address_problem(inner, policy)
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


def check_address(ip: IPAddress, policy: Policy) -> None:
    """Raise ``KubeconfigError(reason="AddressNotAllowed")`` unless ``policy`` lets the controller
    connect to ``ip``. Used for literal server IPs and, at connect time, after DNS resolution."""
    why = _address_problem(ip, policy)
    if why is not None:
        raise KubeconfigError(
            f"address {ip} is not allowed: {why} (an operator can permit it with allowed_networks)",
            reason="AddressNotAllowed",
        )


def _check_host(host: str, shown: str, policy: Policy) -> str:
    """Validate the host part of a server URL; return its normalised form."""

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
        _check_server_ip(ip4, shown, policy)
        return str(ip4)
    if not _HOSTNAME_RE.fullmatch(bare):
        raise invalid("the host is not a valid DNS name")
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
            f"server {shown}: address {ip} is not allowed: {why} "
            "(an operator can permit it with allowed_networks)",
            reason="AddressNotAllowed",
        )


def check_server(server: str, policy: Policy) -> str:
    """Validate and normalise a server URL (from a kubeconfig or a user-supplied override).

    Must be ``https://host[:port][/path]`` without user info, query or fragment. Literal IPs are
    checked against ``policy``; "localhost"/"*.localhost" count as loopback and metadata host
    names are denied. Other host names are accepted here: DNS answers are checked with
    :func:`check_address` at connect time.
    """
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


# --------------------------------------------------------------------------------------------
# Input decoding and YAML
# --------------------------------------------------------------------------------------------


def _decode_input(raw: bytes | str, policy: Policy) -> str:
    if isinstance(raw, str):
        # A str has at least as many UTF-8 bytes as characters: refuse huge input before encoding.
        if len(raw) > policy.max_bytes:
            raise KubeconfigError(
                f"the kubeconfig is larger than the {policy.max_bytes}-byte limit",
                reason="TooLarge",
            )
        try:
            data = raw.encode("utf-8")
        except UnicodeEncodeError:
            data = None
        if data is None:
            raise KubeconfigError(
                "the kubeconfig is not valid UTF-8 (it contains lone surrogates)",
                reason="NotUTF8",
            )
    elif isinstance(raw, bytes | bytearray):
        data = bytes(raw)
    else:
        raise KubeconfigError("the kubeconfig must be bytes or str", reason="InvalidData")
    if len(data) > policy.max_bytes:
        raise KubeconfigError(
            f"the kubeconfig is {len(data)} bytes, more than the {policy.max_bytes}-byte limit",
            reason="TooLarge",
        )
    try:
        text = data.decode("utf-8")
        bad_offset = -1
    except UnicodeDecodeError as exc:
        text, bad_offset = "", exc.start
    if bad_offset >= 0:
        raise KubeconfigError(
            f"the kubeconfig is not valid UTF-8 (first bad byte at offset {bad_offset})",
            reason="NotUTF8",
        )
    if "\x00" in text:
        raise KubeconfigError(
            f"the kubeconfig contains a NUL byte at offset {data.index(0)}", reason="NULByte"
        )
    text = text.removeprefix("\ufeff")  # a UTF-8 byte-order mark is harmless
    bad = _NON_PRINTABLE.search(text)
    if bad is not None:
        line = text.count("\n", 0, bad.start()) + 1
        raise KubeconfigError(
            f"invalid YAML: control character U+{ord(bad.group()):04X} on line {line} "
            "is not allowed",
            reason="InvalidYAML",
        )
    return text


def _event_position(event: yaml.Event) -> str:
    mark = getattr(event, "start_mark", None)
    if mark is None:
        return ""
    return f" (line {mark.line + 1}, column {mark.column + 1})"


def _plain_scalar(event: yaml.ScalarEvent) -> object:
    if event.implicit[0]:  # plain (unquoted) scalar: resolve YAML 1.1 null/bool like Go does
        if event.value in _YAML_NULLS:
            return None
        if event.value in _YAML_TRUE:
            return True
        if event.value in _YAML_FALSE:
            return False
    # Numbers, timestamps etc. stay text: every non-boolean kubeconfig field is a string.
    return event.value


class _MappingFrame:
    __slots__ = ("items", "key")

    def __init__(self) -> None:
        self.items: dict[str, object] = {}
        self.key: str | None = None


def _build(text: str) -> object:
    """Turn the YAML event stream into plain dicts/lists/str/bool/None.

    No PyYAML constructor ever runs: tags, anchors and aliases are refused as events arrive,
    before anything is built, and size/depth are bounded, so neither object construction tricks
    nor alias bombs nor deep nesting (recursion) can happen. Duplicate keys, which other
    parsers resolve differently, are refused too.
    """
    documents: list[object] = []
    stack: list[_MappingFrame | list[object]] = []
    nodes = 0

    def attach(value: object, event: yaml.NodeEvent) -> None:
        if not stack:
            documents.append(value)
            return
        parent = stack[-1]
        if isinstance(parent, list):
            parent.append(value)
        elif parent.key is None:
            if not isinstance(event, yaml.ScalarEvent):
                raise KubeconfigError(
                    f"invalid YAML: mapping keys must be strings{_event_position(event)}",
                    reason="InvalidYAML",
                )
            if event.value in parent.items:
                raise KubeconfigError(
                    f"duplicate key {_field(event.value)}{_event_position(event)}: different "
                    "parsers would disagree about which value wins",
                    reason="DuplicateKey",
                )
            parent.key = event.value
        else:
            parent.items[parent.key] = value
            parent.key = None

    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, yaml.DocumentStartEvent):
            if documents or stack:
                raise KubeconfigError(
                    "invalid YAML: only one YAML document is allowed", reason="InvalidYAML"
                )
            if getattr(event, "tags", None):
                raise KubeconfigError(
                    "YAML %TAG directives are not allowed", reason="YAMLTagsNotAllowed"
                )
            continue
        if not isinstance(event, yaml.NodeEvent):
            if isinstance(event, yaml.CollectionEndEvent):
                stack.pop()
            continue
        if isinstance(event, yaml.AliasEvent) or event.anchor is not None:
            raise KubeconfigError(
                f"YAML anchors and aliases (&, *) are not allowed{_event_position(event)}: "
                "they enable alias bombs and hide content",
                reason="YAMLAliasesNotAllowed",
            )
        if not isinstance(event, yaml.ScalarEvent | yaml.CollectionStartEvent):
            continue  # no other node events exist
        if event.tag is not None:
            raise KubeconfigError(
                f"YAML tags (like !!str or !foo) are not allowed{_event_position(event)}",
                reason="YAMLTagsNotAllowed",
            )
        nodes += 1
        if nodes > _MAX_NODES:
            raise KubeconfigError(
                f"the kubeconfig has more than {_MAX_NODES} YAML nodes", reason="TooComplex"
            )
        if isinstance(event, yaml.ScalarEvent):
            attach(_plain_scalar(event), event)
            continue
        if len(stack) >= _MAX_DEPTH:
            raise KubeconfigError(
                f"the kubeconfig is nested more than {_MAX_DEPTH} levels deep",
                reason="TooComplex",
            )
        if isinstance(event, yaml.MappingStartEvent):
            frame = _MappingFrame()
            attach(frame.items, event)
            stack.append(frame)
        else:
            items: list[object] = []
            attach(items, event)
            stack.append(items)
    return documents[0] if documents else None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    # str(exc) quotes the offending source line (which may hold a token), so build our own
    # message from the problem text with anything quoted removed, plus the position.
    problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or "syntax error"
    problem = re.sub(r"'[^']{4,}'|\"[^\"]{4,}\"", "'...'", str(problem))[:120]
    mark = getattr(exc, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return f"invalid YAML: {problem}{where}"


def _load(raw: bytes | str, policy: Policy) -> object:
    text = _decode_input(raw, policy)
    try:
        return _build(text)
    except yaml.YAMLError as exc:
        message = _yaml_problem(exc)
    # Raised outside the except block so the YAMLError (whose text quotes the document) is not
    # attached as __context__ and cannot leak through a logged traceback.
    raise KubeconfigError(message, reason="InvalidYAML")


# --------------------------------------------------------------------------------------------
# PEM and base64 fields
# --------------------------------------------------------------------------------------------


def _decode_base64(value: object, field: str) -> bytes:
    if not isinstance(value, str):
        raise KubeconfigError(
            f"{field} must be a base64 string, not {_type_name(value)}", reason="InvalidData"
        )
    compact = _B64_WHITESPACE_RE.sub("", value)
    if not compact or len(compact) % 4 or not _B64_RE.fullmatch(compact):
        raise KubeconfigError(f"{field} is not valid base64", reason="InvalidData")
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        pass
    raise KubeconfigError(f"{field} is not valid base64", reason="InvalidData")


def _check_certificates(data: bytes, field: str) -> None:
    if b"-----BEGIN" not in data:
        raise KubeconfigError(
            f"{field} does not contain PEM data (expected -----BEGIN CERTIFICATE-----)",
            reason="InvalidData",
        )
    if b"PRIVATE KEY-----" in data:
        raise KubeconfigError(
            f"{field} contains a private key; it must only hold certificates",
            reason="InvalidData",
        )
    try:
        valid = bool(x509.load_pem_x509_certificates(data))
    except Exception:  # hostile input: any parser failure just means "not a certificate"
        valid = False
    if not valid:
        raise KubeconfigError(
            f"{field} does not contain a valid PEM certificate", reason="InvalidData"
        )


def _load_private_key(data: bytes, field: str) -> PrivateKeyTypes:
    if b"-----BEGIN" not in data or b"PRIVATE KEY-----" not in data:
        raise KubeconfigError(f"{field} does not contain a PEM private key", reason="InvalidData")
    try:
        # RSA consistency checks cost ~0.3 s for a 4096-bit key and grow steeply with size: a
        # tenant could burn controller CPU with huge keys. We only need the key to parse and to
        # match the certificate; a broken key merely fails the TLS handshake later.
        key = serialization.load_pem_private_key(
            data, password=None, unsafe_skip_rsa_key_validation=True
        )
        message = None
    except TypeError:
        message = f"{field} is encrypted; only unencrypted keys can be used"
    except Exception:  # hostile input; any parser failure means "not a usable key"
        message = f"{field} does not contain a valid PEM private key"
    if message is not None:
        raise KubeconfigError(message, reason="InvalidData")
    # The key types Go's TLS client (and so kubectl) can use.
    if not isinstance(
        key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    ):
        raise KubeconfigError(f"{field} is not an RSA, ECDSA or Ed25519 key", reason="InvalidData")
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size > _MAX_RSA_BITS:
        raise KubeconfigError(
            f"{field} is an RSA key larger than {_MAX_RSA_BITS} bits", reason="InvalidData"
        )
    return key


def _check_key_pair(cert_pem: bytes, key: PrivateKeyTypes) -> None:
    """Fail when the key does not belong to the (first) client certificate."""
    der = serialization.Encoding.DER
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    try:
        cert_public = (
            x509.load_pem_x509_certificates(cert_pem)[0].public_key().public_bytes(der, spki)
        )
        key_public = key.public_key().public_bytes(der, spki)
        matches = cert_public == key_public
    except Exception:  # unusual key types without public_bytes: treat as a mismatch
        matches = False
    if not matches:
        raise KubeconfigError(
            "client-key-data does not match client-certificate-data", reason="InvalidData"
        )


# --------------------------------------------------------------------------------------------
# Document validation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Cluster:
    server: str
    ca_data: bytes | None
    tls_server_name: str | None
    insecure: bool


@dataclass(frozen=True)
class _User:
    token: str | None
    client_cert: bytes | None
    client_key: bytes | None


@dataclass(frozen=True)
class _Context:
    cluster: str
    user: str
    namespace: str | None


class _Checker:
    """Validates a whole document, collecting every problem (for ``moonlander check``)."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.problems: list[KubeconfigError] = []

    def add(self, reason: str, where: str, message: str) -> None:
        self.problems.append(KubeconfigError(f"{where}: {message}", reason=reason))

    def fields(
        self,
        body: dict[str, object],
        where: str,
        allowed: Iterable[str],
        ignored: Iterable[str],
        forbidden: dict[str, tuple[str, str]],
    ) -> None:
        """Check keys against the allowlist: forbidden keys get their specific reason."""
        accepted = frozenset(allowed) | frozenset(ignored)
        for key, value in body.items():
            if key in accepted:
                continue
            if key in forbidden:
                if not _unset(value):
                    reason, template = forbidden[key]
                    self.add(reason, where, template.replace("{field}", key))
                continue
            listed = ", ".join(sorted(accepted))
            self.add("UnknownField", where, f"unknown field {_field(key)} (allowed: {listed})")

    def optional_str(self, body: dict[str, object], key: str, where: str) -> str | None:
        value = body.get(key)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            self.add("InvalidData", where, f"{key} must be a string, not {_type_name(value)}")
            return None
        return value

    def named_entries(
        self, doc: dict[str, object], list_key: str, body_key: str
    ) -> tuple[dict[str, dict[str, object]], set[str]]:
        """Entries of clusters/users/contexts by name (first wins), plus every name seen."""
        value = doc.get(list_key)
        entries: dict[str, dict[str, object]] = {}
        names: set[str] = set()
        if value is None:
            return entries, names
        if not isinstance(value, list):
            self.add("InvalidData", "top level", f"{list_key} must be a list")
            return entries, names
        for index, item in enumerate(value):
            where = f"{list_key}[{index}]"
            if not isinstance(item, dict):
                self.add("InvalidData", where, "must be a mapping with name and " + body_key)
                continue
            name = item.get("name")
            if not isinstance(name, str) or not name:
                self.add("InvalidData", where, "has no name")
                continue
            where = f"{body_key} {_q(name)}"
            for key in item:
                if key not in ("name", body_key):
                    self.add("UnknownField", where, f"unknown field {_field(key)} next to name")
            if name in names:
                self.add(
                    "DuplicateName",
                    where,
                    f"the name is used more than once in {list_key}, so it is ambiguous",
                )
                continue
            names.add(name)
            body = item.get(body_key)
            if not isinstance(body, dict):
                self.add("InvalidData", where, f"has no {body_key} mapping")
                continue
            entries[name] = body
        return entries, names

    def cluster(self, name: str, body: dict[str, object]) -> _Cluster | None:
        where = f"cluster {_q(name)}"
        before = len(self.problems)
        self.fields(body, where, _CLUSTER_FIELDS, _CLUSTER_HARMLESS, _FORBIDDEN_CLUSTER)

        server: str | None = None
        raw_server = body.get("server")
        if raw_server is None or raw_server == "":
            self.add("InvalidServer", where, "has no server URL")
        elif not isinstance(raw_server, str):
            self.add(
                "InvalidServer", where, f"server must be a string, not {_type_name(raw_server)}"
            )
        else:
            try:
                server = check_server(raw_server, self.policy)
            except KubeconfigError as err:
                self.problems.append(err._within(where))

        ca_data: bytes | None = None
        if not _unset(body.get("certificate-authority-data")):
            try:
                ca_data = _decode_base64(
                    body["certificate-authority-data"], "certificate-authority-data"
                )
                _check_certificates(ca_data, "certificate-authority-data")
            except KubeconfigError as err:
                self.problems.append(err._within(where))

        tls_server_name = self.optional_str(body, "tls-server-name", where)
        if tls_server_name is not None and not _valid_server_name(tls_server_name):
            self.add("InvalidData", where, "tls-server-name must be a DNS name or an IP address")

        insecure = body.get("insecure-skip-tls-verify")
        if insecure is None:
            insecure = False
        if not isinstance(insecure, bool):
            self.add("InvalidData", where, "insecure-skip-tls-verify must be true or false")
        elif insecure and not self.policy.allow_insecure_tls:
            self.add(
                "InsecureTLS",
                where,
                "insecure-skip-tls-verify is not allowed: without TLS verification anyone on "
                "the network path can impersonate the API server and steal the credentials",
            )
        compression = body.get("disable-compression")
        if compression is not None and not isinstance(compression, bool):
            self.add("InvalidData", where, "disable-compression must be true or false")

        if len(self.problems) != before or server is None:
            return None
        return _Cluster(server, ca_data, tls_server_name, bool(insecure))

    def user(self, name: str, body: dict[str, object]) -> _User | None:
        where = f"user {_q(name)}"
        before = len(self.problems)
        self.fields(body, where, _USER_FIELDS, ("extensions",), _FORBIDDEN_USER)
        auth_fields_rejected = len(self.problems) != before

        token = self.optional_str(body, "token", where)
        if token is not None and not _PRINTABLE_ASCII_RE.fullmatch(token):
            self.add(
                "InvalidToken",
                where,
                "token must be printable ASCII without whitespace or line breaks",
            )
            token = None

        cert = key = None
        key_object: PrivateKeyTypes | None = None
        for field in ("client-certificate-data", "client-key-data"):
            if _unset(body.get(field)):
                continue
            try:
                data = _decode_base64(body[field], field)
                if field == "client-certificate-data":
                    _check_certificates(data, field)
                    cert = data
                else:
                    key_object = _load_private_key(data, field)
                    key = data
            except KubeconfigError as err:
                self.problems.append(err._within(where))
        has_cert = not _unset(body.get("client-certificate-data"))
        has_key = not _unset(body.get("client-key-data"))
        if has_cert != has_key:
            present, missing = (
                ("client-certificate-data", "client-key-data")
                if has_cert
                else ("client-key-data", "client-certificate-data")
            )
            self.add("InvalidData", where, f"{present} is set but {missing} is not")
        elif cert is not None and key_object is not None:
            try:
                _check_key_pair(cert, key_object)
            except KubeconfigError as err:
                self.problems.append(err._within(where))

        if not auth_fields_rejected and _unset(body.get("token")) and not has_cert and not has_key:
            self.add(
                "MissingCredentials",
                where,
                "has no credentials: set token, or client-certificate-data and client-key-data",
            )
        if len(self.problems) != before:
            return None
        return _User(token, cert, key)

    def context(
        self, name: str, body: dict[str, object], clusters: set[str], users: set[str]
    ) -> _Context | None:
        where = f"context {_q(name)}"
        before = len(self.problems)
        self.fields(body, where, _CONTEXT_FIELDS, ("extensions",), {})
        cluster = self.optional_str(body, "cluster", where)
        user = self.optional_str(body, "user", where)
        namespace = self.optional_str(body, "namespace", where)
        if _unset(body.get("cluster")):
            self.add("MissingCluster", where, "does not name a cluster")
        elif cluster is not None and cluster not in clusters:
            self.add(
                "MissingCluster", where, f"refers to cluster {_q(cluster)}, which does not exist"
            )
        if _unset(body.get("user")):
            self.add("MissingUser", where, "does not name a user")
        elif user is not None and user not in users:
            self.add("MissingUser", where, f"refers to user {_q(user)}, which does not exist")
        if namespace is not None and not _DNS_LABEL_RE.fullmatch(namespace):
            self.add("InvalidData", where, "namespace must be a valid DNS label")
        if len(self.problems) != before or cluster is None or user is None:
            return None
        return _Context(cluster, user, namespace)


def _valid_server_name(name: str) -> bool:
    bare = name.removesuffix(".")
    if _HOSTNAME_RE.fullmatch(bare) and not _NUMERIC_LABEL_RE.fullmatch(bare.rpartition(".")[2]):
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return "%" not in name  # no IPv6 zone IDs


def _analyse(doc: object, policy: Policy) -> tuple[list[KubeconfigError], Credentials | None]:
    if doc is None:
        return [KubeconfigError("the kubeconfig is empty", reason="NotAKubeconfig")], None
    if not isinstance(doc, dict):
        return [
            KubeconfigError(
                f"the kubeconfig must be a YAML mapping, not {_type_name(doc)}",
                reason="NotAKubeconfig",
            )
        ], None
    check = _Checker(policy)
    check.fields(doc, "top level", _TOP_LEVEL_FIELDS, _IGNORED_FIELDS, {})
    if not _unset(doc.get("kind")) and doc.get("kind") != "Config":
        check.add("NotAKubeconfig", "top level", 'kind must be "Config"')
    if not _unset(doc.get("apiVersion")) and doc.get("apiVersion") != "v1":
        check.add("NotAKubeconfig", "top level", 'apiVersion must be "v1"')

    cluster_bodies, cluster_names = check.named_entries(doc, "clusters", "cluster")
    user_bodies, user_names = check.named_entries(doc, "users", "user")
    context_bodies, context_names = check.named_entries(doc, "contexts", "context")
    # Every entry is validated, not just the selected one: the document as a whole must be on
    # the allowlist, and `moonlander check` reports everything at once.
    clusters = {n: check.cluster(n, b) for n, b in cluster_bodies.items()}
    users = {n: check.user(n, b) for n, b in user_bodies.items()}
    contexts = {
        n: check.context(n, b, cluster_names, user_names) for n, b in context_bodies.items()
    }

    current = doc.get("current-context")
    selected: str | None = None
    if current is None or current == "":
        if len(context_names) == 1:
            selected = next(iter(context_names))
        elif not context_names:
            check.add("NoCurrentContext", "top level", "the kubeconfig has no contexts")
        else:
            check.add(
                "AmbiguousContext",
                "top level",
                f"current-context is not set and there are {len(context_names)} contexts; "
                "set current-context to pick one",
            )
    elif not isinstance(current, str):
        check.add("InvalidData", "top level", "current-context must be a string")
    elif current not in context_names:
        check.add(
            "NoCurrentContext",
            "top level",
            f"current-context names {_q(current)}, but no context has that name",
        )
    else:
        selected = current

    if check.problems or selected is None:
        return check.problems, None
    context = contexts.get(selected)
    cluster = clusters.get(context.cluster) if context else None
    user = users.get(context.user) if context else None
    if context is None or cluster is None or user is None:  # unreachable without a problem
        return [KubeconfigError("the kubeconfig is inconsistent", reason="InvalidData")], None
    return [], Credentials(
        server=cluster.server,
        ca_data=cluster.ca_data,
        token=user.token,
        client_cert=user.client_cert,
        client_key=user.client_key,
        tls_server_name=cluster.tls_server_name,
        insecure_skip_tls_verify=cluster.insecure,
        context_name=selected,
        cluster_name=context.cluster,
        user_name=context.user,
        namespace=context.namespace,
    )


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


def find_problems(raw: bytes | str, policy: Policy = _DEFAULT_POLICY) -> list[KubeconfigError]:
    """Every problem in ``raw`` (empty when it is usable). Input and YAML problems stop early
    because nothing after them can be trusted; everything else is collected."""
    try:
        doc = _load(raw, policy)
    except KubeconfigError as err:
        return [err]
    return _analyse(doc, policy)[0]


def parse_kubeconfig(raw: bytes | str, policy: Policy = _DEFAULT_POLICY) -> Credentials:
    """Validate ``raw`` and return the credentials of its current context.

    Raises the first :class:`KubeconfigError` that :func:`find_problems` would report.
    """
    doc = _load(raw, policy)
    problems, credentials = _analyse(doc, policy)
    if problems:
        raise problems[0]
    if credentials is None:
        raise KubeconfigError("the kubeconfig is inconsistent", reason="InvalidData")
    return credentials


def render_kubeconfig(
    creds: Credentials, *, name: str = "moonlander", namespace: str | None = None
) -> str:
    """A self-contained kubeconfig with one cluster, user and context, all called ``name``.

    ``namespace`` overrides the credentials' namespace. Everything is inline (base64 data,
    token), so the result needs no files and contains nothing the parser would reject.
    """
    if not isinstance(name, str) or not name:
        raise KubeconfigError(
            "the kubeconfig name must be a non-empty string", reason="InvalidData"
        )
    ns = namespace if namespace is not None else creds.namespace
    if ns is not None and not _DNS_LABEL_RE.fullmatch(ns):
        raise KubeconfigError("namespace must be a valid DNS label", reason="InvalidData")

    cluster: dict[str, object] = {"server": creds.server}
    if creds.ca_data is not None:
        cluster["certificate-authority-data"] = _b64(creds.ca_data)
    if creds.tls_server_name:
        cluster["tls-server-name"] = creds.tls_server_name
    if creds.insecure_skip_tls_verify:
        cluster["insecure-skip-tls-verify"] = True
    user: dict[str, object] = {}
    if creds.token:
        user["token"] = creds.token
    if creds.client_cert is not None:
        user["client-certificate-data"] = _b64(creds.client_cert)
    if creds.client_key is not None:
        user["client-key-data"] = _b64(creds.client_key)
    context: dict[str, object] = {"cluster": name, "user": name}
    if ns is not None:
        context["namespace"] = ns
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": context}],
        "current-context": name,
        "preferences": {},
    }
    # Fresh objects everywhere, so the dumper never emits anchors; a huge width stops it from
    # folding long values.
    return str(
        yaml.dump(
            document,
            Dumper=_DUMPER,
            sort_keys=False,
            default_flow_style=False,
            width=1 << 30,
        )
    )


def credentials_from_token(
    server: str,
    ca_data: bytes | None,
    token: str,
    policy: Policy,
    *,
    name: str = "moonlander",
) -> Credentials:
    """Credentials for a bearer token, e.g. a minted ServiceAccount token or a Secret holding
    only ``token`` and ``ca.crt``. ``ca_data`` is PEM (not base64)."""
    normal_server = check_server(server, policy)
    if ca_data is not None and not isinstance(ca_data, bytes):
        raise KubeconfigError("ca.crt must be bytes", reason="InvalidData")
    if ca_data:
        _check_certificates(ca_data, "ca.crt")
    if not isinstance(token, str):
        raise KubeconfigError("token must be a string", reason="InvalidToken")
    # Token files and `kubectl create secret --from-file` often end with a newline.
    token = token.strip(" \t\r\n")
    if not token:
        raise KubeconfigError("token is empty", reason="MissingCredentials")
    if not _PRINTABLE_ASCII_RE.fullmatch(token):
        raise KubeconfigError(
            "token must be printable ASCII without whitespace or line breaks",
            reason="InvalidToken",
        )
    return Credentials(
        server=normal_server,
        ca_data=ca_data or None,
        token=token,
        client_cert=None,
        client_key=None,
        tls_server_name=None,
        insecure_skip_tls_verify=False,
        context_name=name,
        cluster_name=name,
        user_name=name,
        namespace=None,
    )
