"""Which kubeconfig fields are accepted, ignored or refused (with a specific reason), and how a
field is named in a message.

Keys are tenant text like any other: a token pasted where a key belongs must not reach status,
Events or logs. So a key is named only when it is one of the fixed field names below; any
other key is reported by its position in the mapping.
"""

from __future__ import annotations

import json
from typing import Final

# Every field name of the kubeconfig types in client-go's clientcmd/api/v1 (Config,
# Preferences, NamedCluster, Cluster, NamedAuthInfo, AuthInfo, NamedContext, Context,
# NamedExtension, AuthProviderConfig, ExecConfig, ExecEnvVar), plus YAML's merge key. Most are
# refused or unknown in some place, but none of them can be a secret.
_KNOWN_FIELD_NAMES: Final = frozenset(
    {
        # Config, Preferences
        "apiVersion", "kind", "preferences", "clusters", "users", "contexts",
        "current-context", "extensions", "colors",
        # NamedCluster, NamedAuthInfo, NamedContext, NamedExtension
        "name", "cluster", "user", "context", "extension",
        # Cluster
        "server", "tls-server-name", "insecure-skip-tls-verify", "certificate-authority",
        "certificate-authority-data", "proxy-url", "disable-compression",
        # AuthInfo
        "client-certificate", "client-certificate-data", "client-key", "client-key-data",
        "token", "tokenFile", "as", "as-uid", "as-groups", "as-user-extra", "username",
        "password", "auth-provider", "exec",
        # Context
        "namespace",
        # AuthProviderConfig, ExecConfig, ExecEnvVar
        "config", "command", "args", "env", "installHint", "provideClusterInfo",
        "interactiveMode", "value",
        # YAML merge key (refused: the reader builds no merges)
        "<<",
    }
)  # fmt: skip

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


def _field(key: str) -> str:
    """Quote a field name for a message. Only the fixed kubeconfig field names are echoed: any
    other key (for instance a token pasted where a key belongs) is not."""
    if key in _KNOWN_FIELD_NAMES:
        return json.dumps(key)
    return "(name not shown)"


def _unknown_field(key: str, position: int, count: int) -> str:
    """Name an unknown key of a mapping: by name when it is a known field name, otherwise by
    its position (1-based, in document order) among the mapping's ``count`` keys."""
    if key in _KNOWN_FIELD_NAMES:
        return f"unknown field {json.dumps(key)}"
    return f"unknown field (name not shown) at key {position} of {count}"
