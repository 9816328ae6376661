"""Admission checks for Landings that the CRD's CEL rules cannot express.

CEL sees one object; it cannot know the operator's server address policy. The validating
webhook (kopf's admission support, wired in operator.py) parses the spec as the controller
does (``api.parse_spec``) and rejects, at ``kubectl apply`` time, what the controller would
refuse later.

Whether a source Secret in another namespace grants access is deliberately not judged
here: the answer would tell a tenant whether a Secret exists in a namespace it cannot
read. The controller reports both cases the same way (``CrossNamespaceNotAllowed``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from moonlander import api
from moonlander.credentials import KubeconfigError, Policy, check_server


def problems(name: str, spec: Mapping[str, Any] | None, *, policy: Policy) -> list[str]:
    """Why this Landing would not work; empty when it may be admitted."""
    try:
        parsed = api.parse_spec(spec, name=name)
    except api.SpecError as err:
        return [str(err)]
    found: list[str] = []
    if parsed.server:
        try:
            check_server(parsed.server, policy)
        except KubeconfigError as err:
            found.append(f"spec.server: {err}")
    return found
