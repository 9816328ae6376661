"""``spec.output``: what the landed Secret holds and what is written next to it (pure)."""

from __future__ import annotations

import re
from typing import Annotated

import msgspec
from msgspec import Meta

from moonlander.api.names import MANAGED_BY_LABEL
from moonlander.api.types import (
    CEL,
    DNSLabel,
    DNSSubdomain,
    InvalidField,
    NamespaceSet,
    OutputFormat,
    Provider,
    Scope,
    _Spec,
    doc,
)

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


class ClusterProfileSpec(_Spec, frozen=True, kw_only=True):
    """A ClusterProfile (multicluster.x-k8s.io/v1alpha1, SIG Multicluster's Cluster
    Inventory API) next to the Secret, describing the cluster the landed credential reaches,
    and the Secret its secretreader credential plugin reads: the minted token (key token).
    Needs spec.serviceAccount; written only where the ClusterProfile CRD exists."""

    name: (
        Annotated[
            DNSLabel,
            doc(
                """Name of the ClusterProfile and of its token Secret (the secretreader
            plugin reads the Secret named after the profile, in its consumer's namespace: the
            target namespace). Default the Landing's name."""
            ),
        ]
        | None
    ) = None
    display_name: (
        Annotated[str, Meta(max_length=253, pattern=r"^[ -~]*$"), doc("spec.displayName.")] | None
    ) = None


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
    cluster_profile: ClusterProfileSpec | None = None

    def __post_init__(self) -> None:
        if self.argocd is not None and self.format is not OutputFormat.ARGOCD:
            raise InvalidField("argocd: is set but format is not ArgoCD")
        if self.crossplane is not None and self.format is not OutputFormat.KUBECONFIG:
            # ProviderConfigs point at a key holding a kubeconfig; an Argo CD Secret has none.
            raise InvalidField(
                "crossplane: needs format Kubeconfig: ProviderConfigs read the kubeconfig key"
            )


# --------------------------------------------------------------------------------------------
