"""Credentials back into a kubeconfig, and credentials from a bare bearer token."""

from __future__ import annotations

import yaml

from moonlander.credentials.address import check_server
from moonlander.credentials.model import Credentials, KubeconfigError, Policy, _b64
from moonlander.credentials.pem import _check_certificates
from moonlander.credentials.syntax import _DNS_LABEL_RE, _PRINTABLE_ASCII_RE

__all__ = ["credentials_from_token", "render_kubeconfig"]

# libyaml's emitter when present: the pure-Python one was a hot spot of the benchmark.
_DUMPER: type[yaml.SafeDumper] | type[yaml.CSafeDumper] = getattr(
    yaml, "CSafeDumper", yaml.SafeDumper
)


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
