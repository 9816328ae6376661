"""Which source Secret a Landing holds with its own finalizer, so that it can still revoke.

A ParentToChild Landing reaches the cluster it wrote to through its source Secret, and a
ChildToParent one that minted in the child reaches that child the same way: once the
Secret is gone, what they landed can no longer be revoked. So while such a Landing may
have landed something, its source Secret carries ``landing.moons.kingdon.ci/<uid>``, one
finalizer per Landing: a deleted Secret stays readable (with a deletionTimestamp) until
the Landing has revoked and released it. Pure decisions only; the store writes.

Only a Secret of the Landing's own namespace is held: a tenant must not keep another
namespace's Secret from being deleted. A ClusterProfile source is not held either.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from moonlander import api
from moonlander.api import Landing

PREFIX = f"landing.{api.GROUP}/"
# The store's own-writes key of a hold taken or let go (never a cluster's key): the Secret
# watch's echo of that write wakes no Landing.
ECHO = "hold"


def finalizer(uid: str) -> str:
    """The finalizer a Landing (by uid) puts on its source Secret: a qualified name whose
    name part (a uid, 36 characters) fits the 63 allowed."""
    return f"{PREFIX}{uid}"


def holder(name: str) -> str | None:
    """The Landing uid a finalizer is the hold of, or None for any other finalizer."""
    if not name.startswith(PREFIX):
        return None
    uid = name[len(PREFIX) :]
    return uid or None


def holders(finalizers: Iterable[str]) -> set[str]:
    """The uids of the Landings that hold a Secret with these finalizers."""
    return {uid for uid in map(holder, finalizers) if uid is not None}


def wanted(landing: Landing) -> tuple[str, str] | None:
    """The source Secret ``landing`` must hold for its revocation to stay possible, or
    None. ParentToChild always (the child is reached through it); ChildToParent only when
    it mints in the child (spec.serviceAccount, or a minted identity its status records)."""
    if not landing.metadata.uid or landing.spec.cluster_profile_name is not None:
        return None
    if landing.source_namespace != landing.metadata.namespace:
        return None  # never another namespace's Secret
    if landing.spec.direction is api.Direction.PARENT_TO_CHILD:
        return landing.source_ref
    landed = landing.landed
    if landing.spec.service_account is not None or (landed is not None and landed.service_account):
        return landing.source_ref
    return None


def is_held(secret: Mapping[str, Any], uid: str) -> bool:
    """Whether the Secret (or its metadata) carries the hold of Landing ``uid``."""
    meta = secret.get("metadata", secret) or {}
    return finalizer(uid) in (meta.get("finalizers") or ())


def is_deleting(secret: Mapping[str, Any]) -> bool:
    """Whether the Secret (or its metadata) is being deleted (held by some finalizer)."""
    meta = secret.get("metadata", secret) or {}
    return bool(meta.get("deletionTimestamp"))
