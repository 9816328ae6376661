"""``spec.serviceAccount``: the identity Moonlander mints instead of handing out the source
credential (pure)."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from moonlander.api.types import (
    DNSLabel,
    DNSSubdomain,
    InvalidField,
    NamespaceSet,
    RoleKind,
    RoleName,
    RuleWord,
    _dedupe,
    _Spec,
    doc,
)

# Where ServiceAccounts are minted by default: the namespace the shipped manifests create for
# them (the controller's --mint-namespace default). Not the controller's own namespace, which
# holds the parent credential, and never a namespace tenants can write Secrets in.
DEFAULT_MINT_NAMESPACE = "moonlander-minted"
# kube-apiserver accepts a token only if its audience is one of --api-audiences, which
# defaults to --service-account-issuer; this is the issuer of kubeadm, kind, k3s, Talos and
# our dev clusters. Clusters with another issuer (EKS, GKE, AKS) need spec.audience.
DEFAULT_AUDIENCE = "https://kubernetes.default.svc"
MIN_EXPIRATION = 600  # the TokenRequest API refuses less
MAX_EXPIRATION = 365 * 24 * 3600


class RoleGrant(_Spec, frozen=True, kw_only=True):
    """A Role or ClusterRole bound by a RoleBinding in each of ``namespaces``."""

    kind: Annotated[
        RoleKind, doc("ClusterRole (bound per namespace) or Role (one of that namespace's).")
    ] = RoleKind.CLUSTER_ROLE
    name: Annotated[RoleName, doc("Name of the Role or ClusterRole to bind.")]
    namespaces: Annotated[
        NamespaceSet,
        Meta(min_length=1, max_length=256),
        doc("Namespaces of the child cluster where a RoleBinding grants it."),
    ]

    def __post_init__(self) -> None:
        msgspec.structs.force_setattr(self, "namespaces", _dedupe(self.namespaces))


class PolicyRule(_Spec, frozen=True, kw_only=True):
    """An RBAC PolicyRule, checked as the API server checks one."""

    cel_rules = (
        {
            "rule": "has(self.nonResourceURLs) && size(self.nonResourceURLs) > 0"
            " ? !has(self.apiGroups) && !has(self.resources) && !has(self.resourceNames)"
            " : has(self.apiGroups) && size(self.apiGroups) > 0"
            " && has(self.resources) && size(self.resources) > 0",
            "message": "a rule names apiGroups and resources, or nonResourceURLs, not both",
        },
    )

    api_groups: Annotated[
        tuple[RuleWord, ...],
        Meta(max_length=64),
        doc('API groups of the resources ("" is the core group, "*" all).'),
    ] = ()
    resources: Annotated[
        tuple[RuleWord, ...],
        Meta(max_length=64),
        doc('Resources (and subresources, as "pods/log") the rule applies to; "*" all.'),
    ] = ()
    resource_names: Annotated[
        tuple[RuleWord, ...],
        Meta(max_length=256),
        doc("Names of the objects the rule is limited to; empty means all."),
    ] = ()
    non_resource_urls: Annotated[
        tuple[RuleWord, ...],
        Meta(max_length=64),
        doc("Non-resource URLs (as /healthz); not together with apiGroups or resources."),
    ] = msgspec.field(default=(), name="nonResourceURLs")
    verbs: Annotated[
        tuple[Annotated[str, Meta(min_length=1, max_length=63, pattern=r"^[!-~]+$")], ...],
        Meta(min_length=1, max_length=16),
        doc('Verbs allowed (get, list, watch, create, update, patch, delete, ...; "*" all).'),
    ]

    def __post_init__(self) -> None:
        if self.non_resource_urls:
            if self.api_groups or self.resources or self.resource_names:
                raise InvalidField("a rule is either for resources or for nonResourceURLs")
        else:
            if not self.api_groups:
                raise InvalidField('apiGroups: is required (use [""] for the core group)')
            if not self.resources:
                raise InvalidField("resources: must name at least one resource")

    def to_kubernetes(self) -> dict[str, list[str]]:
        """The rule as RBAC writes it: empty lists left out."""
        out = {
            "apiGroups": self.api_groups,
            "resources": self.resources,
            "resourceNames": self.resource_names,
            "nonResourceURLs": self.non_resource_urls,
            "verbs": self.verbs,
        }
        return {k: list(v) for k, v in out.items() if v}


class ServiceAccountSpec(_Spec, frozen=True, kw_only=True):
    """Land a kubeconfig for a ServiceAccount that Moonlander creates in the cluster whose
    access is landed, bound to exactly these roles, holding a short-lived token that is
    renewed before it expires; instead of the source kubeconfig's own credentials."""

    cel_rules = (
        {
            "rule": "has(self.clusterRole) || (has(self.roles) && size(self.roles) > 0)"
            " || (has(self.rules) && size(self.rules) > 0)",
            "message": "serviceAccount grants nothing; set clusterRole, roles or rules",
        },
        {
            "rule": "!has(self.rulesNamespaces) || size(self.rulesNamespaces) == 0"
            " || (has(self.rules) && size(self.rules) > 0)",
            "message": "rulesNamespaces is set but there are no rules",
        },
        {
            "rule": "!has(self.rulesNamespaces) || size(self.rulesNamespaces) == 0"
            " || !has(self.rules)"
            " || self.rules.all(r, !has(r.nonResourceURLs) || size(r.nonResourceURLs) == 0)",
            "message": "nonResourceURLs need a ClusterRole; remove rulesNamespaces",
        },
    )

    name: Annotated[DNSSubdomain, doc("The ServiceAccount to create.")]
    namespace: Annotated[
        DNSLabel,
        doc(
            """Its namespace, created if missing. Anyone who can create pods, tokens or
            Secrets there can act as the ServiceAccount. ParentToChild: only one of the
            controller's mint namespaces (--mint-namespace, default moonlander-minted),
            never the Landing's own namespace nor the controller's."""
        ),
    ] = DEFAULT_MINT_NAMESPACE
    cluster_role: (
        Annotated[RoleName, doc("A ClusterRole bound cluster-wide (ClusterRoleBinding).")] | None
    ) = None
    roles: Annotated[
        tuple[RoleGrant, ...],
        Meta(max_length=64),
        doc("Roles or ClusterRoles bound in some namespaces (a RoleBinding in each)."),
    ] = ()
    rules: Annotated[
        tuple[PolicyRule, ...],
        Meta(max_length=64),
        doc(
            """PolicyRules of a role Moonlander creates: a ClusterRole bound cluster-wide, or
            a Role and RoleBinding in each of rulesNamespaces."""
        ),
    ] = ()
    rules_namespaces: Annotated[
        NamespaceSet, Meta(max_length=256), doc("Namespaces for the rules (default cluster-wide).")
    ] = ()
    audience: Annotated[
        str,
        Meta(min_length=1, max_length=1024, pattern=r"^[!-~]+$"),
        doc(
            """Token audience. The API server accepts only its --api-audiences (by default its
            --service-account-issuer); set this on clusters whose issuer is not
            https://kubernetes.default.svc (EKS, GKE, AKS)."""
        ),
    ] = DEFAULT_AUDIENCE
    expiration_seconds: Annotated[
        int,
        Meta(ge=MIN_EXPIRATION, le=MAX_EXPIRATION),
        doc(
            """Requested token lifetime. The API server may grant less (its
            --service-account-max-token-expiration); renewal follows what it granted."""
        ),
    ] = 3600
    renew_before_fraction: Annotated[
        float,
        Meta(ge=0.05, le=0.99),
        doc("Renew when less than this fraction of the token's lifetime is left."),
    ] = 0.2

    def __post_init__(self) -> None:
        if self.rules_namespaces and not self.rules:
            raise InvalidField("rulesNamespaces: is set but there are no rules")
        if self.rules_namespaces and any(r.non_resource_urls for r in self.rules):
            raise InvalidField(
                "rules: nonResourceURLs need a ClusterRole; remove rulesNamespaces "
                "or the nonResourceURLs rule"
            )
        names = [self.cluster_role, *(grant.name for grant in self.roles)]
        if any(name in (".", "..") for name in names):
            raise InvalidField("a role name cannot be '.' or '..'")
        if self.cluster_role is None and not self.roles and not self.rules:
            raise InvalidField("grants nothing: set clusterRole, roles or rules")
        # Same role listed twice: one RoleBinding per namespace, the union of namespaces.
        merged: dict[tuple[RoleKind, str], dict[str, None]] = {}
        for grant in self.roles:
            merged.setdefault((grant.kind, grant.name), {}).update(dict.fromkeys(grant.namespaces))
        roles = tuple(
            RoleGrant(kind=k, name=n, namespaces=tuple(ns)) for (k, n), ns in merged.items()
        )
        msgspec.structs.force_setattr(self, "roles", roles)
        msgspec.structs.force_setattr(self, "rules_namespaces", _dedupe(self.rules_namespaces))

    @property
    def username(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.name}"


# --------------------------------------------------------------------------------------------
