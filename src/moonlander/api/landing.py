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

from collections.abc import Iterable
from typing import Annotated

import msgspec
from msgspec import Meta

from moonlander.api.names import SECRET_KEY_PATTERN
from moonlander.api.output import OutputSpec
from moonlander.api.reasons import STALLED_REASONS, PolicyReason, Reason, SetReason
from moonlander.api.serviceaccount import ServiceAccountSpec
from moonlander.api.types import (
    CEL,
    DeletionPolicy,
    Direction,
    DNSLabel,
    DNSSubdomain,
    InvalidField,
    _Spec,
    _Status,
    doc,
)


class LandingSpec(_Spec, frozen=True, kw_only=True):
    """What to land where. Every field is optional."""

    cel_rules = (
        {
            "rule": "!has(self.clusterProfileName) || (!has(self.kubeconfigSecretName)"
            " && !has(self.kubeconfigSecretKey))",
            "message": "clusterProfileName is a source of its own; drop kubeconfigSecretName "
            "and kubeconfigSecretKey",
        },
        {
            "rule": "!has(self.output) || !has(self.output.clusterProfile)"
            " || has(self.serviceAccount)",
            "message": "output.clusterProfile needs serviceAccount: its consumers get a minted "
            "token, never the credential Moonlander was given",
        },
    )

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
    cluster_profile_name: (
        Annotated[
            DNSSubdomain,
            doc(
                """Instead of a kubeconfig Secret: a ClusterProfile (multicluster.x-k8s.io) of
            the Landing's own namespace. Its secretreader access provider gives the server
            and CA, and the token is read from the Secret of this namespace its clusterName
            extension names (key token), as the secretreader plugin reads it; no plugin is
            run."""
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
        doc(
            """Delete removes what Moonlander wrote when the Landing is deleted; Orphan leaves
            the landed Secret while the Landing is still granted it (a ServiceAccount minted
            with the parent's rights is deleted all the same)."""
        ),
    ] = DeletionPolicy.DELETE
    suspend: Annotated[
        bool,
        doc(
            """Stop reconciling; what was landed stays as it is while it is still granted (a
            withdrawn grant revokes it all the same)."""
        ),
    ] = False
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
        if self.cluster_profile_name is not None and (
            self.kubeconfig_secret_name is not None or self.kubeconfig_secret_key is not None
        ):
            raise InvalidField(
                "clusterProfileName: is a source of its own; drop kubeconfigSecretName and "
                "kubeconfigSecretKey"
            )
        if self.output.cluster_profile is not None and self.service_account is None:
            # The profile's consumers read a token: a minted, least-privilege, renewed one.
            raise InvalidField(
                "output.clusterProfile: needs serviceAccount: its consumers get a minted "
                "token, never the credential Moonlander was given"
            )


# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# status
# --------------------------------------------------------------------------------------------


DateTime = Annotated[str, Meta(extra={"format": "date-time"})]
Int64 = Annotated[int, Meta(extra={"format": "int64"})]


def _listed(values: Iterable[object]) -> str:
    return ", ".join(str(v) for v in values)


class Condition(_Status, frozen=True, kw_only=True):
    """A metav1.Condition: one aspect of the object's state, as kstatus, Flux and kubectl
    wait read it. Ready says whether it is converged; Reconciling (True while the controller
    is still at work or retrying) or Stalled (True when only a human can help) stands beside
    a Ready that is False, with the same reason and message."""

    type: Annotated[
        str,
        Meta(max_length=316),
        doc('Ready, Reconciling or Stalled (docs/api.md, "Conditions").'),
    ]
    status: Annotated[
        str,
        Meta(extra={"enum": ["True", "False", "Unknown"]}),
        doc("True, False or Unknown (a suspended Landing's Ready)."),
    ]
    reason: (
        Annotated[
            str,
            Meta(max_length=1024),
            doc(
                f"""Why, in one CamelCase word. A Landing: {_listed(Reason)} (Stalled for
                {_listed(sorted(STALLED_REASONS))}; Reconciling for the other False ones). A
                LandingSet: {_listed(SetReason)}. A LandingPolicy: {_listed(PolicyReason)}."""
            ),
        ]
        | None
    ) = None
    message: (
        Annotated[
            str,
            Meta(max_length=32768),
            doc("What happened and what to do, for humans; never secret material."),
        ]
        | None
    ) = None
    observed_generation: (
        Annotated[Int64, doc("The metadata.generation this condition was set for.")] | None
    ) = None
    last_transition_time: (
        Annotated[
            DateTime,
            doc("When status last changed (a new reason or message alone does not move it)."),
        ]
        | None
    ) = None


class LandedStatus(_Status, frozen=True, kw_only=True):
    """What was landed where; never the secret material itself."""

    cluster: Annotated[str, doc("API server of the cluster written to.")] = ""
    server: Annotated[str, doc("API server the landed kubeconfig points at.")] = ""
    namespace: Annotated[str, doc("Namespace of the landed Secret.")] = ""
    name: Annotated[str, doc("Name of the landed Secret.")] = ""
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
    cluster_profile: (
        Annotated[
            str,
            doc(
                """The ClusterProfile written next to the Secret (namespace/name); its token
            Secret has the same name."""
            ),
        ]
        | None
    ) = None


# 0 (the schema's default, shown before the controller first writes the status) is older
# than any generation: kstatus, Flux and Argo CD read a new object as InProgress until the
# controller has looked at it, not as Current because it has no conditions yet.
OBSERVED_GENERATION = """The metadata.generation the status was written for; 0 until the
controller has first seen the object."""


class LandingStatus(_Status, frozen=True, kw_only=True):
    """What the controller last did with the Landing; written by Moonlander only."""

    observed_generation: Annotated[Int64, doc(OBSERVED_GENERATION)] | None = 0
    target: Annotated[str, doc("Where the Secret was landed, as namespace/name.")] | None = None
    last_sync_time: (
        Annotated[DateTime, doc("When the Landing was last found landed and current.")] | None
    ) = None
    landed: LandedStatus | None = None
    conditions: Annotated[
        tuple[Condition, ...],
        Meta(extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}),
        doc(
            """Ready (Synced when landed), and beside a False one Reconciling (retrying) or
            Stalled (only a human can help)."""
        ),
    ] = ()
