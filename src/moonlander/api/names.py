"""Names of the Landing API: group, version, kinds, labels, annotations, name syntax (pure)."""

from __future__ import annotations

import re

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
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
SECRET_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"  # noqa: S105 - a pattern for key names
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
DNS_SUBDOMAIN = re.compile(
    r"(?=.{1,253}\Z)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
)


def default_source_name(landing_name: str) -> str:
    """CozyStack names a tenant cluster's admin kubeconfig Secret like this."""
    return f"kubernetes-{landing_name}-admin-kubeconfig"


def owner_value(namespace: str, name: str) -> str:
    """How objects Moonlander writes name their owning Landing (OWNER_ANNOTATION)."""
    return f"{namespace}/{name}"
