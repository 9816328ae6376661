"""``-o json|yaml``: machine-readable output of the commands."""

from __future__ import annotations

import json
from typing import Any

import yaml

FORMATS = ("json", "yaml")


def render(data: Any, fmt: str) -> str:
    """``data`` (plain dicts, lists, strings, numbers) as JSON or YAML, newline-terminated."""
    if fmt == "json":
        return json.dumps(data, indent=2, sort_keys=False) + "\n"
    if fmt == "yaml":
        return str(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))
    raise ValueError(f"unknown output format {fmt!r}")
