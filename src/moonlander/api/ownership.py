"""Whose an object is: the marks Moonlander puts on everything it writes, read back (pure).

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
)


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
