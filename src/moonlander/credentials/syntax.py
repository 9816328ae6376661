"""Name syntax shared by the checks, and the rules for putting tenant text into messages."""

from __future__ import annotations

import json
import re
from typing import Final

_NAME_LIMIT: Final = 64

_PRINTABLE_ASCII_RE = re.compile(r"[\x21-\x7e]+")
_DNS_LABEL_RE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_HOSTNAME_RE = re.compile(
    r"(?=.{1,253}\Z)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*",
    re.IGNORECASE,
)
_NUMERIC_LABEL_RE = re.compile(r"[0-9]+|0x[0-9a-f]*", re.IGNORECASE)


def _q(text: str) -> str:
    """Quote a tenant-chosen name for a message: truncated, and escaped so control or bidi
    characters cannot forge log lines."""
    if len(text) > _NAME_LIMIT:
        text = text[:_NAME_LIMIT] + "..."
    return json.dumps(text)


def _unset(value: object) -> bool:
    # Go's client treats null/empty as "not set"; so do we, for both allowed and denied fields.
    return value is None or value == "" or value == [] or value == {}


def _type_name(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    return "a string"
