"""Whose an object is: the marks Moonlander puts on everything it writes, and reading them
back (pure). The one place marks are made (:func:`managed_labels`,
:func:`owner_annotations`), judged (:func:`ownership`, :func:`check_adoptable`) and
compared (:func:`is_current`): the landed
Secret (``controller.plan``), Argo CD Secrets and ProviderConfigs (``controller.outputs``)
and minted identities (``minting``) all go through here.

Every object Moonlander writes carries the managed-by label and the owning Landing's
``namespace/name`` annotation; nothing without both, for this owner, is ever modified or
deleted.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from typing import Any

from moonlander.api.names import (
    HASH_ANNOTATION,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    OWNER_ANNOTATION,
    OWNER_UID_ANNOTATION,
)
from moonlander.api.reasons import LandingProblem, Reason, Retry


def managed_labels(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The labels of an object Moonlander writes: ``extra`` (the user's) and managed-by."""
    return {**(extra or {}), MANAGED_BY_LABEL: MANAGED_BY}


def owner_annotations(
    owner: str, owner_uid: str | None = None, content_hash: str | None = None
) -> dict[str, str]:
    """The annotations that say which Landing (``namespace/name``, and its uid when given)
    an object belongs to, and the hash of its content when it has one."""
    marks = {OWNER_ANNOTATION: owner}
    if owner_uid is not None:
        marks[OWNER_UID_ANNOTATION] = owner_uid
    if content_hash is not None:
        marks[HASH_ANNOTATION] = content_hash
    return marks


class Ownership(enum.Enum):
    ABSENT = "absent"
    OURS = "ours"
    FOREIGN = "foreign"  # not written by Moonlander
    OTHER_LANDING = "other-landing"  # written by Moonlander for another Landing


def ownership(existing: Mapping[str, Any] | None, owner: str) -> Ownership:
    if existing is None:
        return Ownership.ABSENT
    meta = existing.get("metadata") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    if labels.get(MANAGED_BY_LABEL) == MANAGED_BY and (annotations.get(OWNER_ANNOTATION) == owner):
        return Ownership.OURS
    if labels.get(MANAGED_BY_LABEL) == MANAGED_BY and annotations.get(OWNER_ANNOTATION):
        return Ownership.OTHER_LANDING
    return Ownership.FOREIGN


def secret_digest(secret: Mapping[str, Any]) -> str:
    """A digest of what makes a landed Secret ours and current: data and ownership marks."""
    meta = secret.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    marks = [
        (meta.get("labels") or {}).get(MANAGED_BY_LABEL, ""),
        annotations.get(OWNER_ANNOTATION, ""),
        annotations.get(HASH_ANNOTATION, ""),
    ]
    data = sorted((secret.get("data") or {}).items())
    return hashlib.sha256(repr((marks, data)).encode()).hexdigest()


def check_adoptable(existing: Mapping[str, Any], owner: str, adopt: bool, what: str) -> None:
    """Raises ``Conflict`` unless ``existing`` is this Landing's, or a Secret nobody manages
    that the Landing asked to adopt and that is Opaque (adopting a typed Secret would turn a
    TLS or token Secret into a kubeconfig). Another Landing's Secret is never taken: the
    first claimant keeps it."""
    found = ownership(existing, owner)
    if found is Ownership.OURS:
        return
    if found is Ownership.OTHER_LANDING:
        problem = "is landed by another Landing; it stays that Landing's"
    elif not adopt:
        problem = (
            "exists and is not managed by this Landing; it is left untouched "
            "(set spec.adoptExisting to take it over)"
        )
    elif existing.get("type", "Opaque") != "Opaque":
        problem = "is not Opaque; only an Opaque Secret can be adopted"
    else:
        return
    raise LandingProblem(Reason.CONFLICT, f"{what} {problem}", Retry.ON_CHANGE)


def _contains(have: object, want: object) -> bool:
    if isinstance(want, Mapping):
        return isinstance(have, Mapping) and all(
            k in have and _contains(have[k], v) for k, v in want.items()
        )
    return have == want


def normal(value: Any) -> Any:
    """Drops empty and null fields, which the API server omits, before comparing."""
    if isinstance(value, Mapping):
        return {k: normal(v) for k, v in value.items() if v not in (None, "", [], {})}
    if isinstance(value, list | tuple):
        return [normal(v) for v in value]
    return value


def is_current(existing: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    """True when ``existing`` already holds everything ``desired`` says; then nothing is
    written. Our labels and annotations (with the content hash) must be there; others' may
    be added. Secrets: ``type`` (Opaque when absent) and ``data`` are equal. ``spec``: every
    field of ``desired``'s is there (fields the API server defaults are not ours). Any other
    field (a ServiceAccount's automount, a Role's rules, a binding's subjects) is equal once
    the empty fields the API server omits are dropped."""
    meta = existing.get("metadata") or {}
    want = desired.get("metadata") or {}
    for part in ("labels", "annotations"):
        have = meta.get(part) or {}
        if any(have.get(k) != v for k, v in (want.get(part) or {}).items()):
            return False
    for key, value in desired.items():
        if key in ("apiVersion", "kind", "metadata"):
            continue
        if key == "type":
            same = existing.get("type", "Opaque") == value
        elif key == "data":
            same = (existing.get("data") or {}) == value
        elif key == "spec":
            same = _contains(existing.get("spec"), value)
        else:
            same = normal(existing.get(key)) == normal(value)
        if not same:
            return False
    return True
