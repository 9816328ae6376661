"""The LandingPolicy kind: what the operator grants the Landings of some namespaces (pure).

Kubernetes RBAC decides who may create a Landing in namespace N; LandingPolicies decide
what such a Landing may then cause. With no policy a Landing may only land its own source
credential into its own namespace (ChildToParent). What only the operator can give is given
here: the mounted parent credential, minting (with the granting cluster's rights, bounded
by role allow-lists; one policy must grant a mint as a whole), the namespaces of the
controller's cluster a ChildToParent Landing may write into, and the names of the
cluster-scoped objects its outputs may create there (each name held by one namespace only).
No policy can open the controller's own namespace, nor mint outside the controller's mint
namespaces: ``controller.authorize`` refuses those whatever is granted.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Annotated

import msgspec
from msgspec import Meta

from moonlander.api.landing import OBSERVED_GENERATION, Condition
from moonlander.api.serviceaccount import DEFAULT_MINT_NAMESPACE
from moonlander.api.types import (
    DNSLabel,
    DNSSubdomain,
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
    roles may be bound to the minted ServiceAccount, where, and for how long its tokens live.
    A mint is granted as a whole by one policy: its ServiceAccount namespace, its token
    lifetime and every binding it asks for; grants of several policies never add up."""

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
        doc(
            """Namespaces of the granting cluster where the ServiceAccount may be created.
            ParentToChild mints (in the controller's cluster) are further limited to the
            controller's mint namespaces (--mint-namespace), never the Landing's own
            namespace nor the controller's."""
        ),
    ] = (DEFAULT_MINT_NAMESPACE,)
    max_expiration_seconds: Annotated[
        int,
        Meta(ge=600, le=31536000),
        doc("The longest token lifetime a Landing may ask for."),
    ] = 3600


NamePrefix = Annotated[str, Meta(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*)?$")]


class ClusterScopedGrant(_Spec, frozen=True, kw_only=True):
    """Names of cluster-scoped objects of the controller's cluster that the selected
    namespaces' ChildToParent Landings may create as outputs (today: output.crossplane with
    scope Legacy, a <provider>.crossplane.io ProviderConfig, or Cluster, a
    <provider>.m.crossplane.io ClusterProviderConfig). A name is usable only while the
    policies granting it select exactly one namespace: granted to two namespaces, it is
    refused for both (and reported in the policies' status)."""

    cel_rules = (
        {
            "rule": "(has(self.names) && size(self.names) > 0)"
            " || (has(self.namePrefixes) && size(self.namePrefixes) > 0)",
            "message": "clusterScoped grants nothing; set names or namePrefixes",
        },
    )

    names: Annotated[
        tuple[DNSSubdomain, ...],
        Meta(max_length=256),
        doc("Exact names.", **{"x-kubernetes-list-type": "set"}),
    ] = ()
    name_prefixes: Annotated[
        tuple[NamePrefix, ...],
        Meta(max_length=64),
        doc("Names starting with one of these.", **{"x-kubernetes-list-type": "set"}),
    ] = ()

    def __post_init__(self) -> None:
        if not self.names and not self.name_prefixes:
            raise ValueError("grants nothing; set names or namePrefixes")

    def grants(self, name: str) -> bool:
        return name in self.names or any(name.startswith(p) for p in self.name_prefixes)


class ClusterProfilesGrant(_Spec, frozen=True, kw_only=True):
    """Namespaces of the controller's cluster where the selected namespaces' ChildToParent
    Landings may write a ClusterProfile and its token Secret (output.clusterProfile) besides
    their own. A ClusterProfile enrols a cluster with every consumer reading that namespace
    (Kueue MultiKueue, multicluster-runtime, ...), so writing the Secret there
    (targetNamespaces) is not enough: the same policy must list the namespace in both."""

    namespaces: Annotated[
        NamespaceSet,
        Meta(min_length=1, max_length=256),
        doc("Namespaces ClusterProfiles may be written to (never the controller's own)."),
    ]


class OutputsGrant(_Spec, frozen=True, kw_only=True):
    """What the selected namespaces' Landings' outputs may create outside their namespace
    in the controller's cluster (ChildToParent). ParentToChild outputs are written into the
    child with the tenant's own child credential and need no grant."""

    cluster_scoped: ClusterScopedGrant | None = None
    cluster_profiles: ClusterProfilesGrant | None = None


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
    outputs: OutputsGrant | None = None
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
    """What the policy grants now, and what of it grants nothing; written by Moonlander."""

    observed_generation: (
        Annotated[
            int,
            Meta(extra={"format": "int64"}),
            doc(OBSERVED_GENERATION),
        ]
        | None
    ) = 0
    matched_namespaces: Annotated[
        tuple[DNSLabel, ...], doc("Namespaces the policy applies to now.")
    ] = ()
    fenced: Annotated[
        tuple[Annotated[str, Meta(max_length=1024)], ...],
        Meta(max_length=64),
        doc(
            """Entries of the spec that grant nothing because no policy can open what they
            name (the controller's own namespace; ServiceAccount namespaces outside the
            controller's mint namespaces)."""
        ),
    ] = ()
    ambiguous: Annotated[
        tuple[Annotated[str, Meta(max_length=1024)], ...],
        Meta(max_length=64),
        doc(
            """Cluster-scoped names (outputs.clusterScoped) this policy grants that are
            granted to more than one namespace: refused for every one of them."""
        ),
    ] = ()
    conditions: Annotated[
        tuple[Condition, ...],
        Meta(extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}),
        doc(
            """Ready, True once the controller has read the policy: Applied, or
            PartiallyApplied when entries are listed in fenced or ambiguous."""
        ),
    ] = ()


class LandingPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """A parsed LandingPolicy: its name, generation and spec."""

    name: str
    spec: LandingPolicySpec
    generation: int | None = None
