"""Building blocks of the API models: constrained types, enums, base classes (pure).

See ``api.landing`` for how the models map to the CRD.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any, ClassVar

import msgspec
from msgspec import Meta

from moonlander.api.names import DNS_LABEL_PATTERN, DNS_SUBDOMAIN_PATTERN

# CEL rules of a struct, as the CRD carries them: {"rule": ..., "message": ...}.
CEL = "x-kubernetes-validations"


def doc(text: str, **extra: Any) -> Meta:
    """A field's description (one line in the CRD) and any extra schema keywords."""
    return Meta(description=" ".join(text.split()), extra=extra or None)


DNSLabel = Annotated[str, Meta(max_length=63, pattern=DNS_LABEL_PATTERN)]
DNSSubdomain = Annotated[str, Meta(max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)]
NamespaceSet = Annotated[tuple[DNSLabel, ...], Meta(extra={"x-kubernetes-list-type": "set"})]
# RBAC object names are path segments: anything printable but '/', '%'; never '.' or '..'.
RoleName = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=253,
        pattern=r"^[!-$&-.0-~]+$",
        extra={CEL: [{"rule": "self != '.' && self != '..'", "message": "not a role name"}]},
    ),
]
RuleWord = Annotated[str, Meta(max_length=253, pattern=r"^[!-~]*$")]


class _Spec(msgspec.Struct, frozen=True, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """Base of the spec models: immutable, camelCase on the wire, unknown fields refused."""

    # CEL rules of the whole object, for the CRD (x-kubernetes-validations).
    cel_rules: ClassVar[tuple[dict[str, str], ...]] = ()


class Direction(enum.StrEnum):
    PARENT_TO_CHILD = "ParentToChild"
    CHILD_TO_PARENT = "ChildToParent"


class DeletionPolicy(enum.StrEnum):
    DELETE = "Delete"
    ORPHAN = "Orphan"


class RoleKind(enum.StrEnum):
    ROLE = "Role"
    CLUSTER_ROLE = "ClusterRole"


class OutputFormat(enum.StrEnum):
    KUBECONFIG = "Kubeconfig"  # keys kubeconfig and value: Crossplane, Flux, Cluster API
    ARGOCD = "ArgoCD"  # an Argo CD declarative cluster Secret


class Provider(enum.StrEnum):
    KUBERNETES = "Kubernetes"
    HELM = "Helm"


class Scope(enum.StrEnum):
    LEGACY = "Legacy"  # <provider>.crossplane.io ProviderConfig, cluster-scoped (v1 and v2)
    NAMESPACED = "Namespaced"  # <provider>.m.crossplane.io ProviderConfig in the Secret's ns
    CLUSTER = "Cluster"  # <provider>.m.crossplane.io ClusterProviderConfig


class InvalidField(ValueError):
    """Raised by ``__post_init__`` checks; ``api.parse`` adds the field path."""


def _dedupe(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


# --------------------------------------------------------------------------------------------


class _Status(msgspec.Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    """Base of the status models: written by Moonlander, read leniently."""
