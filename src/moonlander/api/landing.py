"""The Landing kind (moons.kingdon.ci/v1alpha1) as typed, frozen models (pure).

This is the single description of the API: ``api.crd`` generates the CRD's
``openAPIV3Schema`` from these classes (descriptions, limits, patterns, defaults and the CEL
rules in ``Meta.extra``), ``api.parse`` turns a watched object or an admission request into
them, and the rest of the controller reads nothing else. Cross-field rules live twice by
necessity: as CEL text for the API server (``x-kubernetes-validations`` in ``extra`` or
``CEL``) and as ``__post_init__`` checks here, for objects stored before a schema change and
for installs without the CRD's rules; tests/e2e/test_api_schema.py holds them to agreement.

Field names are snake_case here and camelCase on the wire (``rename="camel"``). Optional
fields whose default depends on the Landing's name (the seed's defaults) are ``None`` in
the spec and resolved by :class:`moonlander.api.parse.Landing`.
"""

from __future__ import annotations

import enum
import re
from typing import Annotated, Any, ClassVar

import msgspec
from msgspec import Meta

from moonlander.api.names import (
    DNS_LABEL_PATTERN,
    DNS_SUBDOMAIN_PATTERN,
    MANAGED_BY_LABEL,
    SECRET_KEY_PATTERN,
)

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
# spec.serviceAccount
# --------------------------------------------------------------------------------------------

DEFAULT_MINT_NAMESPACE = "moonlander-system"
# kube-apiserver accepts a token only if its audience is one of --api-audiences, which
# defaults to --service-account-issuer; this is the issuer of kubeadm, kind, k3s, Talos and
# our dev clusters. Clusters with another issuer (EKS, GKE, AKS) need spec.audience.
DEFAULT_AUDIENCE = "https://kubernetes.default.svc"
MIN_EXPIRATION = 600  # the TokenRequest API refuses less
MAX_EXPIRATION = 365 * 24 * 3600


class RoleGrant(_Spec, frozen=True, kw_only=True):
    """A Role or ClusterRole bound by a RoleBinding in each of ``namespaces``."""

    kind: RoleKind = RoleKind.CLUSTER_ROLE
    name: RoleName
    namespaces: Annotated[NamespaceSet, Meta(min_length=1, max_length=256)]

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

    api_groups: Annotated[tuple[RuleWord, ...], Meta(max_length=64)] = ()
    resources: Annotated[tuple[RuleWord, ...], Meta(max_length=64)] = ()
    resource_names: Annotated[tuple[RuleWord, ...], Meta(max_length=256)] = ()
    non_resource_urls: Annotated[tuple[RuleWord, ...], Meta(max_length=64)] = msgspec.field(
        default=(), name="nonResourceURLs"
    )
    verbs: Annotated[
        tuple[Annotated[str, Meta(min_length=1, max_length=63, pattern=r"^[!-~]+$")], ...],
        Meta(min_length=1, max_length=16),
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
            """Its namespace, created if missing. Anyone who can create pods or tokens there
            can act as the ServiceAccount, so keep it free of workloads."""
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
# spec.output
# --------------------------------------------------------------------------------------------

_LABEL_KEY_RULE = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
ARGOCD_SECRET_TYPE_LABEL = "argocd.argoproj.io/secret-type"  # noqa: S105 - a label key
RESERVED_LABELS = frozenset({MANAGED_BY_LABEL, ARGOCD_SECRET_TYPE_LABEL})
LabelValue = Annotated[
    str, Meta(max_length=63, pattern=r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
]


class ArgoCDSpec(_Spec, frozen=True, kw_only=True):
    """The Argo CD cluster entry (format ArgoCD only)."""

    name: (
        Annotated[
            str,
            Meta(min_length=1, max_length=253, pattern=r"^[ -~]+$"),
            doc("Cluster name shown in Argo CD. Default the Landing's name."),
        ]
        | None
    ) = None
    project: (
        Annotated[
            DNSSubdomain, doc("AppProject the cluster is scoped to (a project-scoped cluster).")
        ]
        | None
    ) = None
    namespaces: (
        Annotated[
            NamespaceSet,
            Meta(max_length=256),
            doc(
                """Namespaces Argo CD may manage in the cluster. Default all; when set,
            cluster-scoped resources are ignored unless clusterResources is true."""
            ),
        ]
        | None
    ) = None
    cluster_resources: (
        Annotated[
            bool, doc("Whether Argo CD may manage cluster-scoped resources when namespaces is set.")
        ]
        | None
    ) = None
    labels: Annotated[
        dict[str, LabelValue],
        doc(
            """Extra labels on the Secret; Argo CD shows them as cluster labels (e.g. for the
            ApplicationSet cluster generator).""",
            maxProperties=64,
            **{
                CEL: [
                    {
                        "rule": f"self.all(k, size(k) <= 317 && k.matches('{_LABEL_KEY_RULE}'))",
                        "message": "label keys must be valid Kubernetes label keys ([prefix/]name)",
                    },
                    {
                        "rule": "!('argocd.argoproj.io/secret-type' in self)"
                        " && !('app.kubernetes.io/managed-by' in self)",
                        "message": "labels may not set argocd.argoproj.io/secret-type or "
                        "app.kubernetes.io/managed-by",
                    },
                ]
            },
        ),
    ] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.namespaces is not None:
            if len(set(self.namespaces)) != len(self.namespaces):
                raise InvalidField("namespaces: a namespace is listed twice")
            # An empty list would mean "no namespaces" to a reader but "all" to Argo CD.
            if not self.namespaces:
                msgspec.structs.force_setattr(self, "namespaces", None)
        if len(self.labels) > 64:
            raise InvalidField("labels: more than 64 labels")
        for key in self.labels:
            if len(key) > 317 or not re.fullmatch(_LABEL_KEY_RULE[1:-1], key):
                raise InvalidField("labels: a key is not a valid label key ([prefix/]name)")
            if key in RESERVED_LABELS:
                raise InvalidField(f"labels: {key} is set by Moonlander and cannot be overridden")
        # Sorted, so equal label sets compare and render equal.
        msgspec.structs.force_setattr(self, "labels", dict(sorted(self.labels.items())))


class CrossplaneSpec(_Spec, frozen=True, kw_only=True):
    """Crossplane ProviderConfigs next to the Secret, reading its kubeconfig key. Each is
    created only when the target cluster has its CRD."""

    providers: Annotated[
        tuple[Provider, ...],
        Meta(min_length=1, max_length=2),
        doc("provider-kubernetes, provider-helm, or both.", **{"x-kubernetes-list-type": "set"}),
    ] = (Provider.KUBERNETES,)
    scope: Annotated[
        Scope,
        doc(
            """Legacy: <provider>.crossplane.io ProviderConfig (cluster-scoped; Crossplane v1
            and v2). Namespaced: <provider>.m.crossplane.io ProviderConfig in the Secret's
            namespace (Crossplane v2). Cluster: <provider>.m.crossplane.io
            ClusterProviderConfig (Crossplane v2)."""
        ),
    ] = Scope.LEGACY
    name: (
        Annotated[DNSSubdomain, doc("ProviderConfig name. Default the written Secret's name.")]
        | None
    ) = None

    def __post_init__(self) -> None:
        if len(set(self.providers)) != len(self.providers):
            raise InvalidField("providers: a provider is listed twice")

    def config_name(self, secret_name: str) -> str:
        return self.name or secret_name


class OutputSpec(_Spec, frozen=True, kw_only=True):
    """What the landed Secret holds and what Moonlander creates next to it. Default: a
    kubeconfig Secret (keys kubeconfig and value)."""

    cel_rules = (
        {
            "rule": "!has(self.argocd) || (has(self.format) && self.format == 'ArgoCD')",
            "message": "output.argocd is set but output.format is not ArgoCD",
        },
        {
            "rule": "!has(self.crossplane) || !has(self.format) || self.format == 'Kubeconfig'",
            "message": "output.crossplane needs format Kubeconfig: ProviderConfigs read the "
            "kubeconfig key",
        },
    )

    format: Annotated[
        OutputFormat,
        doc(
            """Kubeconfig: keys kubeconfig and value hold the raw kubeconfig YAML (Crossplane,
            Flux, Cluster API). ArgoCD: an Argo CD declarative cluster Secret (keys name,
            server, config, and project, namespaces, clusterResources when set), labelled
            argocd.argoproj.io/secret-type=cluster; land it in Argo CD's namespace."""
        ),
    ] = OutputFormat.KUBECONFIG
    argocd: ArgoCDSpec | None = None
    crossplane: CrossplaneSpec | None = None

    def __post_init__(self) -> None:
        if self.argocd is not None and self.format is not OutputFormat.ARGOCD:
            raise InvalidField("argocd: is set but format is not ArgoCD")
        if self.crossplane is not None and self.format is not OutputFormat.KUBECONFIG:
            # ProviderConfigs point at a key holding a kubeconfig; an Argo CD Secret has none.
            raise InvalidField(
                "crossplane: needs format Kubeconfig: ProviderConfigs read the kubeconfig key"
            )


# --------------------------------------------------------------------------------------------
# spec
# --------------------------------------------------------------------------------------------


class LandingSpec(_Spec, frozen=True, kw_only=True):
    """What to land where. Every field is optional."""

    kubeconfig_secret_name: (
        Annotated[
            DNSSubdomain,
            doc(
                """Secret, in the cluster where Moonlander runs, holding a kubeconfig for the child
            cluster. Default kubernetes-<landing name>-admin-kubeconfig (CozyStack naming)."""
            ),
        ]
        | None
    ) = None
    kubeconfig_secret_namespace: (
        Annotated[
            DNSLabel,
            doc(
                """Namespace of the source Secret. Default the Landing's namespace. Another
            namespace must grant it (see docs/security.md)."""
            ),
        ]
        | None
    ) = None
    kubeconfig_secret_key: (
        Annotated[
            str,
            Meta(max_length=253, pattern=SECRET_KEY_PATTERN),
            doc(
                """Key of the source Secret holding the kubeconfig. Default: the first present of
            value, kubeconfig, config, admin.conf, super-admin.conf."""
            ),
        ]
        | None
    ) = None
    write_kubeconfig_secret_name: (
        Annotated[
            DNSSubdomain, doc("Name of the Secret Moonlander writes. Default remote-kubeconfig.")
        ]
        | None
    ) = None
    target_namespace: (
        Annotated[
            DNSLabel,
            doc(
                """Namespace the Secret is written to (created if missing). Default the Landing's
            namespace."""
            ),
        ]
        | None
    ) = None
    direction: Annotated[
        Direction,
        doc(
            """ParentToChild writes the parent kubeconfig (mounted into the controller) into
            the child cluster. ChildToParent writes the child's kubeconfig into the cluster
            where Moonlander runs.""",
            **{
                CEL: [
                    {
                        "rule": "self == oldSelf",
                        "message": "direction is immutable; create a new Landing instead",
                    }
                ]
            },
        ),
    ] = Direction.PARENT_TO_CHILD
    server: (
        Annotated[
            str,
            Meta(max_length=2048),
            doc(
                """API server URL written into the landed kubeconfig and used for every connection
            to that cluster, for consumers that reach the cluster at another address
            (vcluster's localhost, Kamaji .svc).""",
                **{
                    CEL: [
                        {
                            "rule": "isURL(self) && url(self).getScheme() == 'https'"
                            " && url(self).getHostname() != ''",
                            "message": "server must be an https:// URL with a host",
                        }
                    ]
                },
            ),
        ]
        | None
    ) = None
    deletion_policy: Annotated[
        DeletionPolicy,
        doc("Delete removes what Moonlander wrote when the Landing is deleted; Orphan leaves it."),
    ] = DeletionPolicy.DELETE
    suspend: Annotated[bool, doc("Stop reconciling; what was landed stays as it is.")] = False
    adopt_existing: Annotated[
        bool,
        doc(
            """Take over a pre-existing Secret of the same name that Moonlander did not create.
            Without it such a Secret is left alone (reason Conflict)."""
        ),
    ] = False
    service_account: ServiceAccountSpec | None = None
    output: OutputSpec = msgspec.field(default_factory=OutputSpec)

    def __post_init__(self) -> None:
        if self.server is not None and not self.server.startswith("https://"):
            raise InvalidField("server: must be an https:// URL with a host")


# --------------------------------------------------------------------------------------------
# status
# --------------------------------------------------------------------------------------------


class _Status(msgspec.Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    """Base of the status models: written by Moonlander, read leniently."""


DateTime = Annotated[str, Meta(extra={"format": "date-time"})]
Int64 = Annotated[int, Meta(extra={"format": "int64"})]


class Condition(_Status, frozen=True, kw_only=True):
    """A metav1.Condition."""

    type: Annotated[str, Meta(max_length=316)]
    status: Annotated[str, Meta(extra={"enum": ["True", "False", "Unknown"]})]
    reason: Annotated[str, Meta(max_length=1024)] | None = None
    message: Annotated[str, Meta(max_length=32768)] | None = None
    observed_generation: Int64 | None = None
    last_transition_time: DateTime | None = None


class LandedStatus(_Status, frozen=True, kw_only=True):
    """What was landed where; never the secret material itself."""

    cluster: Annotated[str, doc("API server of the cluster written to.")] = ""
    server: Annotated[str, doc("API server the landed kubeconfig points at.")] = ""
    namespace: str = ""
    name: str = ""
    source_key: Annotated[str, doc("Key of the source Secret that was read.")] = ""
    content_hash: Annotated[str, doc("sha256 of the landed kubeconfig.")] = ""
    service_account: (
        Annotated[
            str,
            doc("The minted ServiceAccount (namespace/name), when spec.serviceAccount is set."),
        ]
        | None
    ) = None
    token_expires_at: Annotated[DateTime, doc("When the landed minted token expires.")] | None = (
        None
    )
    token_renew_at: Annotated[DateTime, doc("When Moonlander renews it.")] | None = None
    provider_configs: Annotated[
        tuple[str, ...], doc("Crossplane ProviderConfigs written next to the Secret.")
    ] = ()


class LandingStatus(_Status, frozen=True, kw_only=True):
    observed_generation: Int64 | None = None
    target: Annotated[str, doc("Where the Secret was landed, as namespace/name.")] | None = None
    last_sync_time: DateTime | None = None
    landed: LandedStatus | None = None
    conditions: Annotated[
        tuple[Condition, ...],
        Meta(extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}),
    ] = ()
