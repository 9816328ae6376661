"""ClusterProfiles (SIG Multicluster's Cluster Inventory API, KEP-4322): written and read (pure).

``output.clusterProfile`` writes, next to the landed Secret, a ClusterProfile
(``multicluster.x-k8s.io/v1alpha1``) describing the cluster the landed credential reaches, and
the Secret that the ``secretreader`` credential plugin of sigs.k8s.io/cluster-inventory-api
(``cmd/secretreader-plugin``) reads. That plugin, exec'd by a consumer (Kueue MultiKueue,
multicluster-runtime, ...), takes ``clusterName`` from the exec extension
(``client.authentication.k8s.io/exec``) that the consumer's library copies out of the
profile's access provider into ``ExecCredential.spec.cluster.config``, and returns the
``token`` key of the Secret ``<its own namespace>/<clusterName>``. So the Secret is named
after the profile, lives in the profile's namespace (the consumer's) and holds only the
minted token.

The status goes through the status subresource (the CRD has one): :func:`profile_object`
is the object without it, :func:`profile_status` the status alone.

The reading side (:func:`access_of`) takes a profile's server and CA from its access
providers for the clusterProfile generator of a LandingSet; no plugin is ever run.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from moonlander.api import ownership as own
from moonlander.controller import plan

GROUP: Final = "multicluster.x-k8s.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "ClusterProfile"
PLURAL: Final = "clusterprofiles"
CRD_NAME: Final = f"{PLURAL}.{GROUP}"
CLUSTER_MANAGER: Final = "moonlander"
CLUSTER_MANAGER_LABEL: Final = "x-k8s.io/cluster-manager"
# The access provider's name, which a consumer's provider file maps to the plugin to exec.
PROVIDER_NAME: Final = "secretreader"
EXEC_EXTENSION: Final = "client.authentication.k8s.io/exec"
TOKEN_KEY: Final = "token"  # noqa: S105 - the plugin's Secret key (SecretTokenKey)
CONTROL_PLANE_HEALTHY: Final = "ControlPlaneHealthy"
# A version a server reports is the tenant's server's text: only a plain version is kept.
_VERSION_TEXT = re.compile(r"v?[0-9][0-9A-Za-z.+-]{0,62}")


@dataclass(frozen=True)
class Health:
    """What Moonlander last saw of the control plane the profile describes."""

    healthy: bool
    reason: str  # CamelCase
    message: str
    version: str | None = None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _metadata(
    name: str, namespace: str, owner: str, owner_uid: str, content: object, labels: dict[str, str]
) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": namespace,
        "labels": own.managed_labels(labels),
        "annotations": own.owner_annotations(
            owner, owner_uid, plan.content_hash(_canonical(content))
        ),
    }


def access_provider(
    name: str, server: str, ca_data: bytes | None, tls_server_name: str | None = None
) -> dict[str, Any]:
    """The ``secretreader`` access provider: where the cluster is (a clientcmd v1 Cluster)
    and the exec extension naming the Secret the plugin reads (``clusterName``)."""
    cluster: dict[str, Any] = {"server": server}
    if ca_data is not None:
        cluster["certificate-authority-data"] = _b64(ca_data)
    if tls_server_name:
        cluster["tls-server-name"] = tls_server_name
    cluster["extensions"] = [{"name": EXEC_EXTENSION, "extension": {"clusterName": name}}]
    return {"name": PROVIDER_NAME, "cluster": cluster}


def profile_object(
    *,
    name: str,
    namespace: str,
    owner: str,
    owner_uid: str,
    display_name: str | None = None,
) -> dict[str, Any]:
    """The ClusterProfile without its status, as sent with server-side apply."""
    spec: dict[str, Any] = {"clusterManager": {"name": CLUSTER_MANAGER}}
    if display_name:
        spec["displayName"] = display_name
    labels = {CLUSTER_MANAGER_LABEL: CLUSTER_MANAGER}
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": _metadata(name, namespace, owner, owner_uid, {"spec": spec}, labels),
        "spec": spec,
    }


def kubernetes_version(text: object) -> str | None:
    """``gitVersion`` of a ``/version`` answer, when it is a plain version string."""
    if not isinstance(text, Mapping):
        return None
    version = text.get("gitVersion")
    if isinstance(version, str) and _VERSION_TEXT.fullmatch(version):
        return version
    return None


def profile_status(
    *,
    name: str,
    server: str,
    ca_data: bytes | None,
    tls_server_name: str | None,
    health: Health,
    generation: int | None,
    transition_time: str,
    previous: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The status: the access provider (also as the deprecated ``credentialProviders``, for
    readers older than accessProviders), ControlPlaneHealthy and the Kubernetes version.
    ``previous`` is the status as it is: the condition keeps its transition time while its
    status does not change."""
    provider = access_provider(name, server, ca_data, tls_server_name)
    condition = _condition(health, generation, transition_time, previous)
    status: dict[str, Any] = {
        "conditions": [condition],
        "accessProviders": [provider],
        "credentialProviders": [provider],
    }
    if health.version:
        status["version"] = {"kubernetes": health.version}
    return status


def _condition(
    health: Health,
    generation: int | None,
    transition_time: str,
    previous: Mapping[str, Any] | None,
) -> dict[str, Any]:
    status_value = "True" if health.healthy else "False"
    since = transition_time
    for old in (previous or {}).get("conditions") or ():
        if (
            isinstance(old, Mapping)
            and old.get("type") == CONTROL_PLANE_HEALTHY
            and old.get("status") == status_value
            and isinstance(old.get("lastTransitionTime"), str)
        ):
            since = old["lastTransitionTime"]
    condition: dict[str, Any] = {
        "type": CONTROL_PLANE_HEALTHY,
        "status": status_value,
        "reason": health.reason,
        "message": health.message,
        "lastTransitionTime": since,
    }
    if generation is not None:
        condition["observedGeneration"] = generation
    return condition


def with_health(
    previous: Mapping[str, Any] | None, health: Health, transition_time: str
) -> dict[str, Any]:
    """The status as it is with ControlPlaneHealthy set to ``health`` (the access providers
    and the last known version kept): for a cluster Moonlander can no longer reach."""
    status = dict(previous or {})
    status["conditions"] = [_condition(health, None, transition_time, previous)]
    return status


def status_is_current(existing: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> bool:
    """True when the status holds ``desired`` already (nothing to write)."""
    have = (existing or {}).get("status")
    if not isinstance(have, Mapping):
        return False
    return all(own.normal(have.get(k)) == own.normal(v) for k, v in desired.items())


def token_secret(
    *, name: str, namespace: str, owner: str, owner_uid: str, token: str
) -> dict[str, Any]:
    """The Secret the secretreader plugin reads: key ``token`` only, the minted token."""
    data = {TOKEN_KEY: _b64(token.encode())}
    meta = _metadata(name, namespace, owner, owner_uid, {"data": data}, {})
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque", "data": data}


# --------------------------------------------------------------------------------------------
# Reading a ClusterProfile (the LandingSet generator)
# --------------------------------------------------------------------------------------------


class ProfileError(ValueError):
    """A ClusterProfile Moonlander cannot use; the message holds no secret material."""


@dataclass(frozen=True)
class Access:
    """How to reach the cluster a ClusterProfile describes, through the secretreader plugin:
    the server, its CA, and the Secret (in the consumer's namespace) with the token."""

    server: str
    ca_data: bytes | None
    tls_server_name: str | None
    secret_name: str


def _providers(status: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    # As the library reads them: credentialProviders first, accessProviders win on a name.
    found: dict[str, Mapping[str, Any]] = {}
    for field in ("credentialProviders", "accessProviders"):
        for entry in status.get(field) or ():
            if isinstance(entry, Mapping) and isinstance(entry.get("name"), str):
                found[entry["name"]] = entry
    return found


def access_of(profile: Mapping[str, Any], provider: str = PROVIDER_NAME) -> Access:
    """The ``provider`` access of a ClusterProfile: its server and CA, and the Secret the
    secretreader plugin would read (``clusterName`` of the exec extension, else the
    profile's name, as the plugin's README describes)."""
    name = (profile.get("metadata") or {}).get("name")
    status = profile.get("status")
    if not isinstance(status, Mapping):
        raise ProfileError("has no status yet")
    entry = _providers(status).get(provider)
    if entry is None:
        raise ProfileError(f"has no {provider} access provider")
    cluster = entry.get("cluster")
    if not isinstance(cluster, Mapping):
        raise ProfileError(f"access provider {provider} has no cluster")
    server = cluster.get("server")
    if not isinstance(server, str) or not server.startswith("https://"):
        raise ProfileError(f"access provider {provider} has no https server")
    for field in ("proxy-url", "insecure-skip-tls-verify", "certificate-authority"):
        if cluster.get(field):
            raise ProfileError(f"access provider {provider} sets {field}, which is not allowed")
    ca_data: bytes | None = None
    encoded = cluster.get("certificate-authority-data")
    if encoded:
        if not isinstance(encoded, str):
            raise ProfileError("certificate-authority-data is not base64")
        try:
            ca_data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ProfileError("certificate-authority-data is not base64") from None
    secret_name = name
    for extension in cluster.get("extensions") or ():
        if isinstance(extension, Mapping) and extension.get("name") == EXEC_EXTENSION:
            config = extension.get("extension")
            if isinstance(config, Mapping) and isinstance(config.get("clusterName"), str):
                secret_name = config["clusterName"]
    if not isinstance(secret_name, str) or not re.fullmatch(
        r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", secret_name
    ):
        raise ProfileError("names no valid Secret (clusterName)")
    tls_server_name = cluster.get("tls-server-name")
    return Access(
        server=server,
        ca_data=ca_data,
        tls_server_name=tls_server_name if isinstance(tls_server_name, str) else None,
        secret_name=secret_name,
    )


def kubeconfig_of(access: Access, token: str, name: str) -> dict[str, Any]:
    """A kubeconfig document for ``access`` and the token its Secret holds (to be validated
    by ``credentials.parse_kubeconfig`` like any other)."""
    cluster: dict[str, Any] = {"server": access.server}
    if access.ca_data is not None:
        cluster["certificate-authority-data"] = _b64(access.ca_data)
    if access.tls_server_name:
        cluster["tls-server-name"] = access.tls_server_name
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    }
