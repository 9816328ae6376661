"""The LandingPolicy kind: what the operator grants the Landings of some namespaces (pure).

Kubernetes RBAC decides who may create a Landing in namespace N; LandingPolicies decide
what such a Landing may then cause. With no policy a Landing may only land its own source
credential into its own namespace (ChildToParent). Policies add up: a namespace gets the
union of what every policy selecting it grants. What only the operator can give is given
here: the mounted parent credential, minting (with the granting cluster's rights, bounded
by role allow-lists), and the namespaces of the controller's cluster a ChildToParent Landing
may write into. No policy can open the controller's own namespace or the parent
credential's Secret: ``controller.authorize`` refuses those whatever is granted.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Annotated

import msgspec
from msgspec import Meta

from moonlander.api.types import (
    DNSLabel,
    NamespaceSet,
    RoleName,
    _Spec,
    _Status,
    doc,
)

KIND = "LandingPolicy"
PLURAL = "landingpolicies"

LabelValue = Annotated[str, Meta(max_length=63)]
CIDR = Annotated[
    str,
    Meta(
        max_length=64,
        pattern=r"^[0-9A-Fa-f:.]+/[0-9]{1,3}$",
        extra={"x-kubernetes-validations": [{"rule": "isCIDR(self)", "message": "not a CIDR"}]},
    ),
]


class NamespaceSelector(_Spec, frozen=True, kw_only=True):
    """The namespaces whose Landings the policy applies to: those named, and those whose
    labels include every entry of matchLabels."""

    cel_rules = (
        {
            "rule": "(has(self.names) && size(self.names) > 0)"
            " || (has(self.matchLabels) && size(self.matchLabels) > 0)",
            "message": "namespaces selects nothing; set names or matchLabels",
        },
    )

    names: Annotated[NamespaceSet, Meta(max_length=256), doc("Namespaces by name.")] = ()
    match_labels: Annotated[
        dict[str, LabelValue],
        doc("Namespaces whose labels include all of these.", maxProperties=32),
    ] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.names and not self.match_labels:
            raise ValueError("selects nothing; set names or matchLabels")

    def matches(self, namespace: str, labels: Mapping[str, str] | None) -> bool:
        if namespace in self.names:
            return True
        if not self.match_labels or labels is None:
            return False
        return all(labels.get(k) == v for k, v in self.match_labels.items())


class MintGrant(_Spec, frozen=True, kw_only=True):
    """Minting allowed to the selected namespaces' Landings (spec.serviceAccount): which
    roles may be bound to the minted ServiceAccount, where, and for how long its tokens live."""

    cluster_roles: Annotated[
        tuple[RoleName, ...],
        Meta(max_length=64),
        doc(
            """ClusterRoles that may be bound, cluster-wide (clusterRole) or in namespaces
            (roles of kind ClusterRole, only in roleNamespaces)."""
        ),
    ] = ()
    roles: Annotated[
        tuple[RoleName, ...],
        Meta(max_length=64),
        doc("Roles (roles of kind Role) that may be bound, only in roleNamespaces."),
    ] = ()
    role_namespaces: Annotated[
        NamespaceSet,
        Meta(max_length=256),
        doc(
            """Namespaces of the granting cluster where roles, ClusterRoles and inline rules
            may be bound by RoleBindings."""
        ),
    ] = ()
    cluster_wide: Annotated[
        bool,
        doc(
            """Whether the granted ClusterRoles (and inline rules) may be bound cluster-wide
            (ClusterRoleBinding), not only in roleNamespaces."""
        ),
    ] = False
    inline_rules: Annotated[
        bool, doc("Whether a Landing may have a role of its own made from PolicyRules.")
    ] = False
    service_account_namespaces: Annotated[
        NamespaceSet,
        Meta(max_length=64),
        doc("Namespaces of the granting cluster where the ServiceAccount may be created."),
    ] = ("moonlander-system",)
    max_expiration_seconds: Annotated[
        int,
        Meta(ge=600, le=31536000),
        doc("The longest token lifetime a Landing may ask for."),
    ] = 3600


class LandingPolicySpec(_Spec, frozen=True, kw_only=True):
    """What the Landings of the selected namespaces may cause beyond their own namespace."""

    namespaces: NamespaceSelector
    parent_credential: Annotated[
        bool,
        doc(
            """Whether a ParentToChild Landing without serviceAccount may land the mounted
            parent credential itself (the controller cluster's kubeconfig, as is). Prefer
            mint."""
        ),
    ] = False
    mint: MintGrant | None = None
    target_namespaces: Annotated[
        NamespaceSet,
        Meta(max_length=256),
        doc(
            """Namespaces of the controller's cluster a ChildToParent Landing may write
            into besides its own (never the controller's own namespace)."""
        ),
    ] = ()
    source_networks: Annotated[
        tuple[CIDR, ...],
        Meta(max_length=64),
        doc(
            """When set, the servers that the selected namespaces' source kubeconfigs and
            spec.server name must resolve to addresses in these ranges (CIDR), on top of the
            controller's address policy, which this only narrows. Policies add up: the
            union of the ranges of every policy that sets them."""
        ),
    ] = ()

    def __post_init__(self) -> None:
        for cidr in self.source_networks:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"sourceNetworks: {cidr[:64]!r} is not a CIDR range") from None


class LandingPolicyStatus(_Status, frozen=True, kw_only=True):
    observed_generation: Annotated[int, Meta(extra={"format": "int64"})] | None = None
    matched_namespaces: Annotated[
        tuple[DNSLabel, ...], doc("Namespaces the policy applies to now.")
    ] = ()


class LandingPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """A parsed LandingPolicy: its name, generation and spec."""

    name: str
    spec: LandingPolicySpec
    generation: int | None = None
