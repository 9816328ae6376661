"""The Landing API (moons.kingdon.ci/v1alpha1): names, defaults and the resolved spec.

Pure: turns a Landing object into a ``LandingSpec`` with every default applied. The CRD
schema (config/crd/bases) validates shapes at admission; this module does not trust that
and checks types again, because objects stored before a schema change may differ.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

GROUP = "moons.kingdon.ci"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "Landing"
PLURAL = "landings"

FIELD_MANAGER = "moonlander"
FINALIZER = f"{GROUP}/finalizer"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "moonlander"
OWNER_ANNOTATION = f"{GROUP}/landing"  # "<namespace>/<name>" of the owning Landing
OWNER_UID_ANNOTATION = f"{GROUP}/landing-uid"
HASH_ANNOTATION = f"{GROUP}/content-hash"
# On a source Secret in another namespace: the Landing namespaces allowed to use it ("*": all).
ALLOWED_NAMESPACES_ANNOTATION = f"{GROUP}/allowed-namespaces"

DEFAULT_WRITE_NAME = "remote-kubeconfig"
# Searched in this order when kubeconfigSecretKey is not set: Cluster API and Flux use
# "value", many tools "kubeconfig", vcluster "config", Kamaji/CozyStack "admin.conf" and
# "super-admin.conf" (the original implementation read these).
DEFAULT_SOURCE_KEYS = ("value", "kubeconfig", "config", "admin.conf", "super-admin.conf")
# Keys of the Secret Moonlander writes: both hold the same raw kubeconfig YAML.
WRITTEN_KEYS = ("kubeconfig", "value")

# Kubernetes name syntax (use with fullmatch); the other modules use these too.
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
DNS_SUBDOMAIN = re.compile(
    r"(?=.{1,253}\Z)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
)
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


class Direction(enum.StrEnum):
    PARENT_TO_CHILD = "ParentToChild"
    CHILD_TO_PARENT = "ChildToParent"


class DeletionPolicy(enum.StrEnum):
    DELETE = "Delete"
    ORPHAN = "Orphan"


class SpecError(ValueError):
    """The Landing's spec cannot be used as written."""


@dataclass(frozen=True)
class LandingSpec:
    """A Landing's spec with every default applied."""

    source_name: str
    source_namespace: str
    source_key: str | None  # None: search DEFAULT_SOURCE_KEYS
    write_name: str
    target_namespace: str
    direction: Direction
    server: str | None
    deletion_policy: DeletionPolicy
    suspend: bool
    adopt_existing: bool

    @property
    def source_ref(self) -> tuple[str, str]:
        return (self.source_namespace, self.source_name)

    @property
    def target(self) -> str:
        return f"{self.target_namespace}/{self.write_name}"


def default_source_name(landing_name: str) -> str:
    """CozyStack names a tenant cluster's admin kubeconfig Secret like this."""
    return f"kubernetes-{landing_name}-admin-kubeconfig"


def _optional(spec: Mapping[str, Any], key: str) -> str | None:
    value = spec.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise SpecError(f"spec.{key} must be a string")
    return value


def _string(spec: Mapping[str, Any], key: str, default: str) -> str:
    value = _optional(spec, key)
    return default if value is None else value


def _check(value: str, pattern: re.Pattern[str], limit: int, field: str) -> str:
    if len(value) > limit or not pattern.fullmatch(value):
        raise SpecError(f"spec.{field} {value[:80]!r} is not a valid name")
    return value


def _bool(spec: Mapping[str, Any], key: str) -> bool:
    value = spec.get(key, False)
    if not isinstance(value, bool):
        raise SpecError(f"spec.{key} must be true or false")
    return value


def resolve_spec(name: str, namespace: str, spec: Mapping[str, Any] | None) -> LandingSpec:
    """Apply the seed's defaults to a Landing's spec."""
    spec = spec or {}
    source_name = _string(spec, "kubeconfigSecretName", default_source_name(name))
    source_namespace = _string(spec, "kubeconfigSecretNamespace", namespace)
    source_key = _optional(spec, "kubeconfigSecretKey")
    write_name = _string(spec, "writeKubeconfigSecretName", DEFAULT_WRITE_NAME)
    target_namespace = _string(spec, "targetNamespace", namespace)
    try:
        direction = Direction(spec.get("direction") or Direction.PARENT_TO_CHILD)
    except ValueError:
        raise SpecError("spec.direction must be ParentToChild or ChildToParent") from None
    try:
        deletion_policy = DeletionPolicy(spec.get("deletionPolicy") or DeletionPolicy.DELETE)
    except ValueError:
        raise SpecError("spec.deletionPolicy must be Delete or Orphan") from None
    if source_key is not None:
        _check(source_key, _SECRET_KEY, 253, "kubeconfigSecretKey")
    return LandingSpec(
        source_name=_check(source_name, DNS_SUBDOMAIN, 253, "kubeconfigSecretName"),
        source_namespace=_check(source_namespace, DNS_LABEL, 63, "kubeconfigSecretNamespace"),
        source_key=source_key,
        write_name=_check(write_name, DNS_SUBDOMAIN, 253, "writeKubeconfigSecretName"),
        target_namespace=_check(target_namespace, DNS_LABEL, 63, "targetNamespace"),
        direction=direction,
        server=_optional(spec, "server"),
        deletion_policy=deletion_policy,
        suspend=_bool(spec, "suspend"),
        adopt_existing=_bool(spec, "adoptExisting"),
    )


def _landing_resource() -> Any:
    # Imported here so the pure parts of this module load without lightkube's models.
    from lightkube.generic_resource import create_namespaced_resource

    return create_namespaced_resource(GROUP, VERSION, KIND, PLURAL)


Landing = _landing_resource()
