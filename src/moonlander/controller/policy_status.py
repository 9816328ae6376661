"""What a LandingPolicy's status says besides the namespaces it selects (pure): the entries
that grant nothing because the fence closes what they name, and the cluster-scoped names it
grants that another namespace is granted too (refused for all of them).

Its Ready condition is True as soon as the controller has read the policy (a policy takes
effect at once; there is nothing to wait for): reason Applied, or PartiallyApplied when
entries are fenced or ambiguous. Those are listed, not failed: the rest of the policy grants
what it says, so it is neither Stalled nor Reconciling (kstatus: Current; docs/api.md)."""

from __future__ import annotations

from typing import Any

import msgspec

from moonlander.api import ClusterScopedGrant, LandingPolicy
from moonlander.api.reasons import PolicyReason
from moonlander.controller.authorize import Fence, PolicyStore
from moonlander.controller.conditions import kstatus_conditions

__all__ = ["ambiguous", "fenced", "policy_status"]

_LISTED = 5  # namespaces named in one entry; the rest are counted
_MAX_ENTRIES = 64  # as the CRD allows


def _names(namespaces: tuple[str, ...] | list[str]) -> str:
    shown = ", ".join(namespaces[:_LISTED])
    more = len(namespaces) - _LISTED
    return f"{shown} and {more} more" if more > 0 else shown


def _entries(count: int) -> str:
    return "1 entry grants" if count == 1 else f"{count} entries grant"


def fenced(policy: LandingPolicy, fence: Fence) -> list[str]:
    """Entries of ``policy`` that no policy can open."""
    spec = policy.spec
    found: list[str] = []
    own = fence.controller_namespace
    why_own = "the controller's own namespace: never opened, whatever a policy says"
    if own is not None and own in spec.target_namespaces:
        found.append(f"targetNamespaces: {own} is {why_own}")
    if spec.mint is None:
        return found
    if own is not None and own in spec.mint.role_namespaces:
        found.append(f"mint.roleNamespaces: {own} is {why_own}")
    for namespace in spec.mint.service_account_namespaces:
        if namespace == own:
            found.append(f"mint.serviceAccountNamespaces: {own} is {why_own}")
        elif namespace not in fence.mint_namespaces:
            found.append(
                f"mint.serviceAccountNamespaces: {namespace} is not one of the controller's "
                f"mint namespaces ({', '.join(fence.mint_namespaces) or 'none'}): "
                "ParentToChild mints there are refused"
            )
    return found


def _overlap(a: ClusterScopedGrant, b: ClusterScopedGrant) -> list[str]:
    """The names both grants cover, described (exact names, or shared prefixes)."""
    both = [n for n in a.names if b.grants(n)] + [n for n in b.names if a.grants(n)]
    found = [f"name {n}" for n in dict.fromkeys(both)]
    for p in a.name_prefixes:
        for q in b.name_prefixes:
            if p.startswith(q) or q.startswith(p):
                found.append(f"names starting with {max(p, q, key=len)}")
    return list(dict.fromkeys(found))


def ambiguous(store: PolicyStore, policy: LandingPolicy) -> list[str]:
    """The cluster-scoped names ``policy`` grants that more than one namespace holds."""
    grant = policy.spec.outputs.cluster_scoped if policy.spec.outputs else None
    if grant is None:
        return []
    mine = store.matched_namespaces(policy)
    found: list[str] = []
    if len(mine) > 1:
        found.append(
            f"outputs.clusterScoped: granted to {len(mine)} namespaces at once "
            f"({_names(mine)}): every name it grants is refused to all of them"
        )
    for other_name, other in sorted(store.policies.items()):
        theirs = other.spec.outputs.cluster_scoped if other.spec.outputs else None
        if other_name == policy.name or theirs is None:
            continue
        holders = sorted(set(mine) | set(store.matched_namespaces(other)))
        if len(holders) < 2:
            continue
        for shared in _overlap(grant, theirs):
            found.append(
                f"outputs.clusterScoped: {shared} is also granted by LandingPolicy "
                f"{other_name}; held by {_names(holders)}: refused to all of them"
            )
    return found


def policy_status(store: PolicyStore, policy: LandingPolicy, fence: Fence) -> dict[str, Any]:
    """The status to write for ``policy``."""
    matched = list(store.matched_namespaces(policy))
    closed = fenced(policy, fence)[:_MAX_ENTRIES]
    shared = ambiguous(store, policy)[:_MAX_ENTRIES]
    grants = f"applies to {len(matched)} namespace{'' if len(matched) == 1 else 's'}"
    if closed or shared:
        reason = PolicyReason.PARTIALLY_APPLIED
        message = (
            f"{grants}; {_entries(len(closed) + len(shared))} nothing "
            "(see status.fenced and status.ambiguous)"
        )
    else:
        reason, message = PolicyReason.APPLIED, grants
    conditions = kstatus_conditions(
        (),
        ready="True",
        reason=reason.value,
        message=message,
        stalled=False,
        observed_generation=policy.generation,
        now=None,
    )
    return {
        "observedGeneration": policy.generation,
        "matchedNamespaces": matched,
        "fenced": closed,
        "ambiguous": shared,
        "conditions": [msgspec.to_builtins(c) for c in conditions],
    }
