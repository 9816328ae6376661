"""What a Landing may cause, decided from the operator's LandingPolicies (pure).

Kubernetes RBAC decides who may create a Landing in namespace N. This module decides what
that Landing may then do, before anything is read from or sent to another cluster:

- Its own namespace is always its own: a ChildToParent Landing may land its source's
  credential there.
- Everything the operator owns needs a LandingPolicy that selects N: landing the mounted
  parent credential (``parentCredential``); minting a ServiceAccount, where each binding it
  asks for must be allowed, as a whole, by one policy (``mint``); writing into another
  namespace of the controller's cluster (``targetNamespaces``).
- Some things no policy can grant (the :class:`Fence`): a write into the controller's own
  namespace, which holds the parent credential and the controller's identity.

Policies add up per item: a request is allowed when every binding, namespace and write it
makes is allowed by some policy. A single binding is never pieced together from two
policies (one granting the role, another the namespace), so two narrow grants cannot add up
to a wide one.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from moonlander.api import Direction, Landing, LandingPolicy, MintGrant, RoleKind
from moonlander.api.reasons import LandingProblem, Reason, Retry
from moonlander.credentials.model import IPNetwork

__all__ = ["Fence", "PolicyStore", "authorize"]


@dataclass(frozen=True)
class Fence:
    """What no LandingPolicy can open."""

    controller_namespace: str | None = None


@dataclass
class PolicyStore:
    """The LandingPolicies and namespace labels the controller has seen (kept by watches)."""

    policies: dict[str, LandingPolicy] = field(default_factory=dict)
    namespace_labels: dict[str, dict[str, str]] = field(default_factory=dict)

    def applying_to(self, namespace: str) -> list[LandingPolicy]:
        labels = self.namespace_labels.get(namespace)
        return [
            p
            for _, p in sorted(self.policies.items())
            if p.spec.namespaces.matches(namespace, labels)
        ]

    def matched_namespaces(self, policy: LandingPolicy) -> tuple[str, ...]:
        """The namespaces ``policy`` applies to now: named ones, and existing ones whose
        labels match (a named namespace counts before it exists: it may be created)."""
        selector = policy.spec.namespaces
        found = set(selector.names)
        if selector.match_labels:
            found.update(
                ns for ns, labels in self.namespace_labels.items() if selector.matches(ns, labels)
            )
        return tuple(sorted(found))


def _refuse(message: str) -> LandingProblem:
    return LandingProblem(Reason.NOT_PERMITTED, message, Retry.ON_CHANGE)


def _check_target(landing: Landing, policies: list[LandingPolicy], fence: Fence) -> None:
    if landing.spec.direction is not Direction.CHILD_TO_PARENT:
        return  # written with the source's own credential, into the source's own cluster
    namespace = landing.metadata.namespace
    target = landing.target_namespace
    if fence.controller_namespace is not None and target == fence.controller_namespace:
        raise _refuse(
            f"Moonlander never writes into its own namespace {target}; "
            "choose another targetNamespace"
        )
    if target == namespace:
        return
    if not any(target in p.spec.target_namespaces for p in policies):
        raise _refuse(
            f"writing into namespace {target} needs a LandingPolicy that selects namespace "
            f"{namespace} and lists {target} in targetNamespaces"
        )


def _binding_allowed(
    grant: MintGrant, kind: RoleKind | None, name: str | None, namespace: str | None
) -> bool:
    """One binding (``kind``/``name`` None: inline rules) in ``namespace`` (None:
    cluster-wide), allowed by one policy's grant as a whole."""
    if kind is None:
        allowed_role = grant.inline_rules
    elif kind is RoleKind.CLUSTER_ROLE:
        allowed_role = name in grant.cluster_roles
    else:
        allowed_role = name in grant.roles
    if namespace is None:
        return allowed_role and grant.cluster_wide and kind is not RoleKind.ROLE
    return allowed_role and namespace in grant.role_namespaces


def _bindings(landing: Landing) -> Iterable[tuple[RoleKind | None, str | None, str | None]]:
    sa = landing.spec.service_account
    assert sa is not None
    if sa.cluster_role is not None:
        yield RoleKind.CLUSTER_ROLE, sa.cluster_role, None
    for grant in sa.roles:
        for granted_in in grant.namespaces:
            yield grant.kind, grant.name, granted_in
    if sa.rules:
        scopes: tuple[str | None, ...] = sa.rules_namespaces or (None,)
        for scope in scopes:
            yield None, None, scope


def _describe(kind: RoleKind | None, name: str | None, namespace: str | None) -> str:
    what = "inline rules" if kind is None else f"{kind.value} {name}"
    return f"{what} {'cluster-wide' if namespace is None else 'in namespace ' + namespace}"


def _check_mint(landing: Landing, policies: list[LandingPolicy]) -> None:
    sa = landing.spec.service_account
    if sa is None:
        return
    namespace = landing.metadata.namespace
    grants = [p.spec.mint for p in policies if p.spec.mint is not None]
    if not grants:
        raise _refuse(
            f"spec.serviceAccount mints with the granting cluster's rights: it needs a "
            f"LandingPolicy that selects namespace {namespace} and grants mint"
        )
    if not any(sa.namespace in g.service_account_namespaces for g in grants):
        raise _refuse(
            f"no LandingPolicy lets namespace {namespace} mint ServiceAccounts in namespace "
            f"{sa.namespace} (mint.serviceAccountNamespaces)"
        )
    longest = max(g.max_expiration_seconds for g in grants)
    if sa.expiration_seconds > longest:
        raise _refuse(
            f"spec.serviceAccount.expirationSeconds {sa.expiration_seconds} is longer than "
            f"the LandingPolicies of namespace {namespace} allow ({longest})"
        )
    for kind, name, ns in _bindings(landing):
        if not any(_binding_allowed(g, kind, name, ns) for g in grants):
            raise _refuse(
                f"no LandingPolicy lets namespace {namespace} bind {_describe(kind, name, ns)} "
                "(mint.clusterRoles, mint.roles, mint.inlineRules, mint.roleNamespaces, "
                "mint.clusterWide)"
            )


def authorize(
    landing: Landing,
    policies: list[LandingPolicy],
    fence: Fence,
) -> None:
    """Raises ``LandingProblem`` (``NotPermitted``) saying what the operator would have to
    grant, when the Landing asks for anything its namespace was not granted."""
    _check_target(landing, policies, fence)
    if landing.spec.service_account is not None:
        _check_mint(landing, policies)
    elif landing.spec.direction is Direction.PARENT_TO_CHILD and not any(
        p.spec.parent_credential for p in policies
    ):
        raise _refuse(
            "ParentToChild hands out the parent cluster's credential: it needs a LandingPolicy "
            f"that selects namespace {landing.metadata.namespace} with parentCredential: true "
            "(or spec.serviceAccount with a mint grant)"
        )


def source_networks(policies: list[LandingPolicy]) -> tuple[IPNetwork, ...] | None:
    """The ranges sources of the namespace may name (the union of every policy's
    ``sourceNetworks``), or None when no policy narrows the controller's address policy."""
    ranges = [cidr for p in policies for cidr in p.spec.source_networks]
    if not ranges:
        return None
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in ranges)


def labels_of(meta: Mapping[str, object]) -> dict[str, str]:
    labels = meta.get("labels")
    if not isinstance(labels, Mapping):
        return {}
    return {str(k): str(v) for k, v in labels.items()}
