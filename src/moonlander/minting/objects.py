"""The objects of a minted identity: ServiceAccount, roles and bindings, with Moonlander's
ownership marks (pure)."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any, Final

from moonlander.api import ServiceAccountSpec, ownership

log = logging.getLogger(__name__)

RBAC_GROUP: Final = "rbac.authorization.k8s.io"
RBAC_API_VERSION: Final = f"{RBAC_GROUP}/v1"
_NAME_LIMIT: Final = 253


# --------------------------------------------------------------------------------------------
# The objects of an identity (pure)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class ObjectRef:
    """An object of an identity; ``namespace`` is None for cluster-scoped kinds."""

    kind: str
    name: str
    namespace: str | None = None

    def __str__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {where}"


def identity_base_name(owner: str) -> str:
    """``moonlander:<landing namespace>:<landing name>`` for owner ``ns/name`` (CLI owners
    ``mint/ns/sa`` give ``moonlander:mint:ns:sa``).

    Collision-free between owners: every segment is a DNS name (no ':') and object names add
    a capitalised kind segment (``:ClusterRole:<role>``), which no DNS name can be.
    """
    if not owner:
        raise ValueError("owner must not be empty")
    return "moonlander:" + owner.replace("/", ":")


def _fit(name: str) -> str:
    # Landing names may be 253 characters long; keep names unique when they must be cut.
    if len(name) <= _NAME_LIMIT:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    return f"{name[: _NAME_LIMIT - 17]}:{digest}"


def desired_objects(
    spec: ServiceAccountSpec, *, owner: str, owner_uid: str = ""
) -> list[tuple[ObjectRef, dict[str, Any]]]:
    """Every object of the identity, in write order: ServiceAccount, roles, bindings.

    Binding names include the role they bind: ``roleRef`` is immutable, so a changed role
    is a new binding (and the old one is pruned) rather than an update the API refuses.
    """
    base = identity_base_name(owner)
    labels = ownership.managed_labels()
    annotations = ownership.owner_annotations(owner, owner_uid or None)
    subject = {"kind": "ServiceAccount", "name": spec.name, "namespace": spec.namespace}

    def meta(name: str, namespace: str | None = None) -> dict[str, Any]:
        m: dict[str, Any] = {"name": name, "labels": dict(labels), "annotations": dict(annotations)}
        if namespace is not None:
            m["namespace"] = namespace
        return m

    def binding(
        kind: str, name: str, namespace: str | None, role_kind: str, role: str
    ) -> tuple[ObjectRef, dict[str, Any]]:
        body = {
            "apiVersion": RBAC_API_VERSION,
            "kind": kind,
            "metadata": meta(name, namespace),
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": role_kind, "name": role},
            "subjects": [dict(subject)],
        }
        return ObjectRef(kind, name, namespace), body

    def role(kind: str, name: str, namespace: str | None) -> tuple[ObjectRef, dict[str, Any]]:
        body = {
            "apiVersion": RBAC_API_VERSION,
            "kind": kind,
            "metadata": meta(name, namespace),
            "rules": [r.to_kubernetes() for r in spec.rules],
        }
        return ObjectRef(kind, name, namespace), body

    objects = [
        (
            ObjectRef("ServiceAccount", spec.name, spec.namespace),
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": meta(spec.name, spec.namespace),
                # Pods in its namespace must not pick up this identity by accident.
                "automountServiceAccountToken": False,
            },
        )
    ]
    bindings = []
    own = _fit(base)
    if spec.rules and not spec.rules_namespaces:
        objects.append(role("ClusterRole", own, None))
        bindings.append(binding("ClusterRoleBinding", own, None, "ClusterRole", own))
    for ns in spec.rules_namespaces:
        objects.append(role("Role", own, ns))
        bindings.append(binding("RoleBinding", own, ns, "Role", own))
    if spec.cluster_role is not None:
        name = _fit(f"{base}:ClusterRole:{spec.cluster_role}")
        bindings.append(binding("ClusterRoleBinding", name, None, "ClusterRole", spec.cluster_role))
    for grant in spec.roles:
        name = _fit(f"{base}:{grant.kind}:{grant.name}")
        bindings.extend(
            binding("RoleBinding", name, ns, grant.kind, grant.name) for ns in grant.namespaces
        )
    return objects + bindings


# One comparison for everything Moonlander writes (api.ownership).
is_current = ownership.is_current
