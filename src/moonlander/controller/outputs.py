"""What consumers read: ``spec.output``, Argo CD cluster Secrets and Crossplane ProviderConfigs.

Pure: no I/O. The reconcile's ``render`` and ``companions`` steps pick the format from
``api.OutputSpec``, render objects here, and the store writes them with server-side apply.
Every object carries Moonlander's ownership marks from ``api.ownership`` exactly like
``plan.desired_secret`` (managed-by label; owner, owner-uid and content hash annotations),
so ``own.ownership`` and :func:`is_current` work on all of them.

The formats were checked against the consumers' published schemas (tests/e2e/
test_integrations.py fetches them at test time): Argo CD's ``ClusterConfig`` /
``TLSClientConfig`` Go types and its documented cluster Secret keys, provider-kubernetes'
ProviderConfig CRDs (legacy and ``.m.`` groups). docs/integrations.md has the details.

Secret material (tokens, keys) only ever appears in a Secret's ``data``: never in labels,
annotations, exception messages or reprs.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import yaml

from moonlander import api
from moonlander.api import (
    ARGOCD_SECRET_TYPE_LABEL,
    ArgoCDSpec,
    CrossplaneSpec,
    Provider,
    Scope,
)
from moonlander.api import ownership as own
from moonlander.controller import plan
from moonlander.credentials import Credentials, KubeconfigError, Policy, parse_kubeconfig

__all__ = [
    "ARGOCD_KEYS",
    "PROVIDER_CONFIG_KINDS",
    "ProviderConfigKind",
    "argocd_cluster_secret",
    "argocd_config",
    "argocd_credentials",
    "cluster_scoped_objects",
    "crossplane_objects",
    "crossplane_provider_configs",
    "is_current",
    "provider_config_kinds",
]

ARGOCD_CLUSTER: Final = "cluster"
# The cluster Secret keys Argo CD documents (operator-manual/declarative-setup.md).
ARGOCD_KEYS: Final = ("name", "server", "config", "project", "namespaces", "clusterResources")
_FIELD_NAME = re.compile(r"[A-Za-z0-9_.-]{1,40}")


@dataclass(frozen=True)
class ProviderConfigKind:
    """One Crossplane ProviderConfig kind, as its CRD names it."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    @property
    def crd_name(self) -> str:
        """The CRD that must exist in the target cluster before such an object is written."""
        return f"{self.plural}.{self.group}"


def _pc(group: str, version: str, kind: str, namespaced: bool) -> ProviderConfigKind:
    return ProviderConfigKind(group, version, kind, kind.lower() + "s", namespaced)


# provider-kubernetes v1.x serves both API groups at v1alpha1 (checked against its CRDs);
# provider-helm serves v1beta1 in both (its legacy group also still serves v1alpha1).
PROVIDER_CONFIG_KINDS: Final[Mapping[tuple[Provider, Scope], ProviderConfigKind]] = {
    (Provider.KUBERNETES, Scope.LEGACY): _pc(
        "kubernetes.crossplane.io", "v1alpha1", "ProviderConfig", False
    ),
    (Provider.KUBERNETES, Scope.NAMESPACED): _pc(
        "kubernetes.m.crossplane.io", "v1alpha1", "ProviderConfig", True
    ),
    (Provider.KUBERNETES, Scope.CLUSTER): _pc(
        "kubernetes.m.crossplane.io", "v1alpha1", "ClusterProviderConfig", False
    ),
    (Provider.HELM, Scope.LEGACY): _pc("helm.crossplane.io", "v1beta1", "ProviderConfig", False),
    (Provider.HELM, Scope.NAMESPACED): _pc(
        "helm.m.crossplane.io", "v1beta1", "ProviderConfig", True
    ),
    (Provider.HELM, Scope.CLUSTER): _pc(
        "helm.m.crossplane.io", "v1beta1", "ClusterProviderConfig", False
    ),
}


def provider_config_kinds(spec: CrossplaneSpec) -> tuple[ProviderConfigKind, ...]:
    """The kinds ``spec`` asks for, in ``providers`` order (each is written only while the
    target cluster has its CRD: ``crd_name``)."""
    return tuple(PROVIDER_CONFIG_KINDS[(p, spec.scope)] for p in spec.providers)


def cluster_scoped_objects(
    spec: CrossplaneSpec, secret_name: str
) -> tuple[tuple[ProviderConfigKind, str], ...]:
    """The cluster-scoped objects (kind, name) ``spec`` creates next to a Secret named
    ``secret_name``: what a LandingPolicy's ``outputs.clusterScoped`` must grant when they
    are written into the controller's cluster (``controller.authorize``)."""
    name = spec.config_name(secret_name)
    return tuple((kind, name) for kind in provider_config_kinds(spec) if not kind.namespaced)


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _metadata(
    name: str,
    namespace: str | None,
    owner: str,
    owner_uid: str,
    content: object,
    labels: Iterable[tuple[str, str]] = (),
) -> dict[str, Any]:
    # The hash covers everything rendered except the marks, so any change of spec (a label
    # removed, a field dropped) changes it and is_current() forces a re-apply.
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    meta["labels"] = own.managed_labels(dict(labels))
    meta["annotations"] = own.owner_annotations(
        owner, owner_uid, plan.content_hash(_canonical(content))
    )
    return meta


def argocd_config(creds: Credentials) -> dict[str, Any]:
    """The ``config`` JSON of an Argo CD cluster Secret, as Argo CD's ``ClusterConfig``.

    ``caData``, ``certData`` and ``keyData`` are Go ``[]byte`` fields, so in JSON they are
    base64 of the PEM. ``insecure`` has no ``omitempty`` in Argo CD's type and is always
    written; ``tlsClientConfig`` is always present (also for tokens: it carries the CA).
    """
    tls: dict[str, Any] = {"insecure": creds.insecure_skip_tls_verify}
    if creds.tls_server_name:
        tls["serverName"] = creds.tls_server_name
    if creds.ca_data is not None:
        tls["caData"] = _b64(creds.ca_data)
    if creds.client_cert is not None and creds.client_key is not None:
        tls["certData"] = _b64(creds.client_cert)
        tls["keyData"] = _b64(creds.client_key)
    config: dict[str, Any] = {}
    if creds.token:
        config["bearerToken"] = creds.token
    config["tlsClientConfig"] = tls
    return config


def argocd_cluster_secret(
    creds: Credentials,
    *,
    name: str,
    namespace: str,
    owner: str,
    owner_uid: str,
    spec: ArgoCDSpec,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """An Argo CD declarative cluster Secret (label ``argocd.argoproj.io/secret-type:
    cluster``) in Argo CD's namespace, as sent with server-side apply.

    ``data`` only (no ``stringData``): server-side apply then owns exactly these keys, and
    no ``last-applied-configuration`` annotation can copy the token (CVE-2023-40029).
    ``annotations`` are added as ``plan.desired_secret`` adds them (a minted token's times).
    """
    values: dict[str, str] = {
        "name": spec.name or name,  # api.parse sets it (default: the Landing's name)
        "server": creds.server,
        "config": _canonical(argocd_config(creds)),
    }
    if spec.project is not None:
        values["project"] = spec.project
    if spec.namespaces is not None:
        values["namespaces"] = ",".join(spec.namespaces)
    if spec.cluster_resources is not None:
        values["clusterResources"] = "true" if spec.cluster_resources else "false"
    data = {k: _b64(v.encode()) for k, v in values.items()}
    labels = [*spec.labels.items(), (ARGOCD_SECRET_TYPE_LABEL, ARGOCD_CLUSTER)]
    meta = _metadata(name, namespace, owner, owner_uid, {"data": data, "labels": labels}, labels)
    meta["annotations"].update(annotations or {})
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta,
        "type": "Opaque",
        "data": data,
    }


def crossplane_provider_configs(
    *,
    provider: Provider | Iterable[Provider],
    scope: Scope,
    name: str,
    secret_name: str,
    secret_namespace: str,
    secret_key: str = api.WRITTEN_KEYS[0],
    owner: str,
    owner_uid: str,
) -> list[dict[str, Any]]:
    """One ProviderConfig (or ClusterProviderConfig) per provider pointing at the landed
    Secret's kubeconfig key.

    ``secretRef.namespace`` is always set: every one of these CRDs requires it, and the
    namespaced ``.m.`` providers read the Secret from the namespace it names (not from the
    ProviderConfig's). A namespaced ProviderConfig is put in the Secret's own namespace so
    that the two never disagree.
    """
    providers = (provider,) if isinstance(provider, Provider) else tuple(provider)
    objects = []
    for each in providers:
        kind = PROVIDER_CONFIG_KINDS[(each, scope)]
        spec = {
            "credentials": {
                "source": "Secret",
                "secretRef": {
                    "namespace": secret_namespace,
                    "name": secret_name,
                    "key": secret_key,
                },
            }
        }
        objects.append(
            {
                "apiVersion": kind.api_version,
                "kind": kind.kind,
                "metadata": _metadata(
                    name,
                    secret_namespace if kind.namespaced else None,
                    owner,
                    owner_uid,
                    {"spec": spec},
                ),
                "spec": spec,
            }
        )
    return objects


def crossplane_objects(
    spec: CrossplaneSpec, *, secret_name: str, secret_namespace: str, owner: str, owner_uid: str
) -> list[dict[str, Any]]:
    """:func:`crossplane_provider_configs` for a parsed ``spec.output.crossplane``."""
    return crossplane_provider_configs(
        provider=spec.providers,
        scope=spec.scope,
        name=spec.config_name(secret_name),
        secret_name=secret_name,
        secret_namespace=secret_namespace,
        owner=owner,
        owner_uid=owner_uid,
    )


# One comparison for everything Moonlander writes (api.ownership).
is_current = own.is_current


# --------------------------------------------------------------------------------------------
# Reading an Argo CD cluster Secret back
# --------------------------------------------------------------------------------------------

_CONFIG_FORBIDDEN: Final[Mapping[str, tuple[str, str]]] = {
    "execProviderConfig": ("ExecNotAllowed", "exec providers would run a program"),
    "awsAuthConfig": ("AuthProviderNotAllowed", "AWS IAM authentication runs provider code"),
    "username": ("BasicAuthNotAllowed", "basic authentication is not supported"),
    "password": ("BasicAuthNotAllowed", "basic authentication is not supported"),
    "proxyUrl": ("ProxyNotAllowed", "a proxy would route the credentials elsewhere"),
}
_TLS_FIELDS: Final = {
    "caData": "certificate-authority-data",
    "certData": "client-certificate-data",
    "keyData": "client-key-data",
}


def _field(key: object) -> str:
    return json.dumps(key) if isinstance(key, str) and _FIELD_NAME.fullmatch(key) else "(a field)"


def _decoded(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise KubeconfigError(f"key {key!r} must be a base64 string", reason="InvalidData")
    try:
        return base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise KubeconfigError(
            f"key {key!r} is not valid base64 of UTF-8 text", reason="InvalidData"
        ) from None


def argocd_credentials(data: Mapping[str, Any], policy: Policy) -> Credentials:
    """The credentials in an Argo CD cluster Secret's ``data`` (base64 values, as read from
    the API), validated exactly like a kubeconfig: the entry is rebuilt as one and handed to
    ``parse_kubeconfig``, so the same allowlist and server policy apply.

    Raises :class:`KubeconfigError` without secret material in the message.
    """
    server = _decoded(data, "server")
    if server is None:
        raise KubeconfigError("the Argo CD cluster Secret has no server", reason="InvalidServer")
    text = _decoded(data, "config") or "{}"
    if len(text) > policy.max_bytes:
        raise KubeconfigError("config is too large", reason="TooLarge")
    try:
        config = json.loads(text)
    except ValueError:
        raise KubeconfigError("config is not valid JSON", reason="InvalidData") from None
    if not isinstance(config, dict):
        raise KubeconfigError("config must be a JSON object", reason="InvalidData")

    user: dict[str, Any] = {}
    cluster: dict[str, Any] = {"server": server}
    for key, value in config.items():
        if value in (None, "", {}, [], False):
            continue
        if key in _CONFIG_FORBIDDEN:
            reason, why = _CONFIG_FORBIDDEN[key]
            raise KubeconfigError(f"config.{key} is not allowed: {why}", reason=reason)
        if key == "bearerToken":
            user["token"] = value
        elif key == "disableCompression":
            cluster["disable-compression"] = value
        elif key != "tlsClientConfig":
            raise KubeconfigError(f"config has unknown field {_field(key)}", reason="InvalidData")
    tls = config.get("tlsClientConfig") or {}
    if not isinstance(tls, dict):
        raise KubeconfigError("config.tlsClientConfig must be an object", reason="InvalidData")
    for key, value in tls.items():
        if value is None or value == "":
            continue
        if key in _TLS_FIELDS:
            (user if key != "caData" else cluster)[_TLS_FIELDS[key]] = value
        elif key == "insecure":
            cluster["insecure-skip-tls-verify"] = value
        elif key == "serverName":
            cluster["tls-server-name"] = value
        else:
            raise KubeconfigError(
                f"config.tlsClientConfig has unknown field {_field(key)}", reason="InvalidData"
            )
    name = _decoded(data, "name") or "argocd"
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    }
    return parse_kubeconfig(yaml.safe_dump(document, width=1 << 30), policy)
