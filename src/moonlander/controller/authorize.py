"""What a Landing may cause, decided from the operator's LandingPolicies (pure).

Kubernetes RBAC decides who may create a Landing in namespace N. This module decides what
that Landing may then do, before anything is read from or sent to another cluster:

- Its own namespace is always its own: a ChildToParent Landing may land its source's
  credential there.
- Everything the operator owns needs a LandingPolicy that selects N: landing the mounted
  parent credential (``parentCredential``); minting a ServiceAccount (``mint``); writing
  into another namespace of the controller's cluster (``targetNamespaces``); creating a
  cluster-scoped object there, such as a Crossplane ProviderConfig (``outputs.clusterScoped``).
- Some things no policy can grant (the :class:`Fence`): a write into the controller's own
  namespace, which holds the parent credential and the controller's identity, or a binding
  there; a ServiceAccount minted with the parent's rights outside the operator's mint
  namespaces (a tenant who can write Secrets where it lives could give it a token that never
  expires).

A mint is granted as a whole by one policy: the ServiceAccount's namespace, its token
lifetime and every binding must all be allowed by the same policy, so two narrow grants
never add up to a wide one. A cluster-scoped name is never first-come: it is usable only by
the one namespace the policies granting it select, and by nobody while they select several.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from moonlander.api import (
    DEFAULT_MINT_NAMESPACE,
    Direction,
    Landing,
    LandingPolicy,
    MintGrant,
    RoleKind,
    ServiceAccountSpec,
)
from moonlander.api.reasons import LandingProblem, Reason, Retry
from moonlander.controller import outputs
from moonlander.credentials.model import IPNetwork

__all__ = ["Binding", "Fence", "PolicyStore", "authorize", "bindings", "mint_gaps"]

# A binding a mint asks for: (kind, role name), both None for inline rules, and the namespace
# (None: cluster-wide).
Binding = tuple[RoleKind | None, str | None, str | None]
_LISTED = 3  # gaps named per policy in a refusal; the rest are counted


@dataclass(frozen=True)
class Fence:
    """What no LandingPolicy can open: the controller's own namespace, and ParentToChild
    mints (made in the controller's cluster with the parent's rights) anywhere but the
    operator's mint namespaces."""

    controller_namespace: str | None = None
    mint_namespaces: tuple[str, ...] = (DEFAULT_MINT_NAMESPACE,)


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

    def holders(self, name: str) -> tuple[str, ...]:
        """The namespaces granted the cluster-scoped name ``name`` (outputs.clusterScoped)."""
        found: set[str] = set()
        for policy in self.policies.values():
            grant = policy.spec.outputs.cluster_scoped if policy.spec.outputs else None
            if grant is not None and grant.grants(name):
                found.update(self.matched_namespaces(policy))
        return tuple(sorted(found))


def _refuse(message: str) -> LandingProblem:
    return LandingProblem(Reason.NOT_PERMITTED, message, Retry.ON_CHANGE)


def _never_here(fence: Fence, namespace: str, what: str) -> None:
    if fence.controller_namespace is not None and namespace == fence.controller_namespace:
        raise _refuse(
            f"Moonlander never {what} its own namespace {namespace}, whatever a LandingPolicy "
            "says; choose another namespace"
        )


def _check_target(landing: Landing, policies: list[LandingPolicy], fence: Fence) -> None:
    if landing.spec.direction is not Direction.CHILD_TO_PARENT:
        return  # written with the source's own credential, into the source's own cluster
    namespace = landing.metadata.namespace
    target = landing.target_namespace
    # The landed Secret, and every namespaced output next to it, go into the target.
    _never_here(fence, target, "writes into")
    if target == namespace:
        return
    if not any(target in p.spec.target_namespaces for p in policies):
        raise _refuse(
            f"writing into namespace {target} needs a LandingPolicy that selects namespace "
            f"{namespace} and lists {target} in targetNamespaces"
        )


def _check_outputs(landing: Landing, store: PolicyStore) -> None:
    """Cluster-scoped outputs written into the controller's cluster need their name granted
    to this namespace alone."""
    crossplane = landing.output.crossplane
    if landing.spec.direction is not Direction.CHILD_TO_PARENT or crossplane is None:
        return  # ParentToChild: written into the child with the tenant's own credential
    namespace = landing.metadata.namespace
    for kind, name in outputs.cluster_scoped_objects(crossplane, landing.write_name):
        what = f"output.crossplane creates the cluster-scoped {kind.kind}.{kind.group} {name}"
        holders = store.holders(name)
        if namespace not in holders:
            raise _refuse(
                f"{what} in the controller's cluster: it needs a LandingPolicy that selects "
                f"namespace {namespace} and grants the name in outputs.clusterScoped "
                "(names or namePrefixes)"
            )
        if len(holders) > 1:
            raise _refuse(
                f"{what}, but LandingPolicies grant the name {name} to {len(holders)} "
                "namespaces: the grant is ambiguous, so no namespace may use it until the "
                "operator grants it to one (the policies' status.ambiguous says which)"
            )


def _check_profile(landing: Landing, policies: list[LandingPolicy]) -> None:
    """A ClusterProfile outside the Landing's namespace enrols the cluster with whoever reads
    profiles there: one policy must grant the namespace as a target and for profiles."""
    if landing.spec.direction is not Direction.CHILD_TO_PARENT:
        return  # ParentToChild: written into the child with the tenant's own credential
    if landing.cluster_profile_name is None:
        return
    namespace, target = landing.metadata.namespace, landing.target_namespace
    if target == namespace:
        return
    for policy in policies:
        grant = policy.spec.outputs.cluster_profiles if policy.spec.outputs else None
        if (
            grant is not None
            and target in grant.namespaces
            and target in policy.spec.target_namespaces
        ):
            return
    raise _refuse(
        f"output.clusterProfile writes a ClusterProfile into namespace {target}: it needs one "
        f"LandingPolicy that selects namespace {namespace} and lists {target} both in "
        "targetNamespaces and in outputs.clusterProfiles.namespaces"
    )


def _binding_allowed(grant: MintGrant, binding: Binding) -> bool:
    """One binding allowed by one policy's grant as a whole."""
    kind, name, namespace = binding
    if kind is None:
        allowed_role = grant.inline_rules
    elif kind is RoleKind.CLUSTER_ROLE:
        allowed_role = name in grant.cluster_roles
    else:
        allowed_role = name in grant.roles
    if namespace is None:
        return allowed_role and grant.cluster_wide and kind is not RoleKind.ROLE
    return allowed_role and namespace in grant.role_namespaces


def bindings(sa: ServiceAccountSpec) -> Iterable[Binding]:
    """Every binding ``sa`` asks for."""
    if sa.cluster_role is not None:
        yield RoleKind.CLUSTER_ROLE, sa.cluster_role, None
    for grant in sa.roles:
        for granted_in in grant.namespaces:
            yield grant.kind, grant.name, granted_in
    if sa.rules:
        scopes: tuple[str | None, ...] = sa.rules_namespaces or (None,)
        for scope in scopes:
            yield None, None, scope


def _describe(binding: Binding) -> str:
    kind, name, namespace = binding
    what = "inline rules" if kind is None else f"{kind.value} {name}"
    return f"{what} {'cluster-wide' if namespace is None else 'in namespace ' + namespace}"


def mint_gaps(grant: MintGrant, sa: ServiceAccountSpec) -> list[str]:
    """What of the mint ``sa`` the one grant ``grant`` does not allow (empty: all of it)."""
    gaps = []
    if sa.namespace not in grant.service_account_namespaces:
        gaps.append(f"ServiceAccounts in namespace {sa.namespace} (mint.serviceAccountNamespaces)")
    if sa.expiration_seconds > grant.max_expiration_seconds:
        gaps.append(
            f"expirationSeconds {sa.expiration_seconds}, longer than mint.maxExpirationSeconds "
            f"{grant.max_expiration_seconds}"
        )
    gaps.extend(_describe(b) for b in bindings(sa) if not _binding_allowed(grant, b))
    return gaps


def _fence_mint(landing: Landing, sa: ServiceAccountSpec, fence: Fence) -> None:
    """ParentToChild mints are made in the controller's cluster with the parent's rights."""
    namespace = landing.metadata.namespace
    _never_here(fence, sa.namespace, "mints ServiceAccounts in")
    for binding in bindings(sa):
        if binding[2] is not None:
            _never_here(fence, binding[2], "binds roles in")
    mint_namespaces = ", ".join(fence.mint_namespaces) or "none"
    if sa.namespace == namespace:
        raise _refuse(
            f"spec.serviceAccount.namespace {namespace} is the Landing's own namespace: whoever "
            "can write Secrets there could give the ServiceAccount a token that never "
            f"expires; mint into one of the controller's mint namespaces ({mint_namespaces})"
        )
    if sa.namespace not in fence.mint_namespaces:
        raise _refuse(
            f"spec.serviceAccount.namespace: ParentToChild mints only into the controller's "
            f"mint namespaces (--mint-namespace: {mint_namespaces}), whatever a LandingPolicy "
            f"says; not into namespace {sa.namespace}"
        )


def _check_mint(
    landing: Landing, sa: ServiceAccountSpec, policies: list[LandingPolicy], fence: Fence
) -> None:
    namespace = landing.metadata.namespace
    if landing.spec.direction is Direction.PARENT_TO_CHILD:
        _fence_mint(landing, sa, fence)
    grants = [(p.name, p.spec.mint) for p in policies if p.spec.mint is not None]
    if not grants:
        raise _refuse(
            f"spec.serviceAccount mints with the granting cluster's rights: it needs a "
            f"LandingPolicy that selects namespace {namespace} and grants mint"
        )
    lacking: list[str] = []
    for name, grant in grants:
        gaps = mint_gaps(grant, sa)
        if not gaps:
            return
        more = f" and {len(gaps) - _LISTED} more" if len(gaps) > _LISTED else ""
        lacking.append(f"{name} does not grant {'; '.join(gaps[:_LISTED])}{more}")
    raise _refuse(
        f"no single LandingPolicy that selects namespace {namespace} grants this mint as a "
        "whole (its ServiceAccount namespace, token lifetime and every binding, all by one "
        f"policy): {' | '.join(lacking)}"
    )


def authorize(landing: Landing, store: PolicyStore, fence: Fence) -> None:
    """Raises ``LandingProblem`` (``NotPermitted``) saying what the operator would have to
    grant, when the Landing asks for anything its namespace was not granted."""
    policies = store.applying_to(landing.metadata.namespace)
    _check_target(landing, policies, fence)
    _check_outputs(landing, store)
    _check_profile(landing, policies)
    sa = landing.spec.service_account
    if sa is not None:
        _check_mint(landing, sa, policies, fence)
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
