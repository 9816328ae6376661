"""The public value types: :class:`KubeconfigError`, :class:`Policy` and :class:`Credentials`.

Nothing here parses anything; a :class:`Credentials` is only ever built from validated input
(by :mod:`.validate` or :mod:`.render`).
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import ipaddress
import json
from dataclasses import dataclass
from typing import Final

__all__ = ["Credentials", "IPAddress", "IPNetwork", "KubeconfigError", "Policy"]

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
    # When set, nothing outside these ranges (a LandingPolicy's sourceNetworks for the
    # Landing's namespace), on top of everything above: it only ever narrows.
    within_networks: tuple[IPNetwork, ...] | None = None

    def __post_init__(self) -> None:
        # Catch config mistakes early: a string here would make `ip in net` blow up at connect
        # time, far away from the cause.
        if isinstance(self.max_bytes, bool) or not isinstance(self.max_bytes, int):
            raise TypeError("Policy.max_bytes must be an int")
        if self.max_bytes <= 0:
            raise ValueError("Policy.max_bytes must be positive")
        for net in (*self.allowed_networks, *(self.within_networks or ())):
            if not isinstance(net, ipaddress.IPv4Network | ipaddress.IPv6Network):
                raise TypeError("Policy networks must hold ipaddress networks")


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
        return self._fingerprint

    @functools.cached_property
    def _fingerprint(self) -> str:
        # Computed once per object: a memoised credential is asked on every reconcile.
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
        # Imported here: the address policy module needs this module's types.
        from moonlander.credentials.address import check_server

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


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")
