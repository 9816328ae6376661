"""Admission checks for Landings that the CRD's CEL rules cannot express.

CEL sees one object; it cannot know the operator's server address policy or whether a
Secret in another namespace grants access. The validating webhook (kopf's admission
support, wired in operator.py) rejects such Landings at ``kubectl apply`` time with the
same checks the controller makes later.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from moonlander import api
from moonlander.api.reasons import LandingProblem
from moonlander.controller import plan
from moonlander.credentials import KubeconfigError, Policy, check_server

MetadataLookup = Callable[[str, str], Awaitable[Mapping[str, Any] | None]]


async def problems(
    name: str,
    namespace: str,
    spec: Mapping[str, Any] | None,
    *,
    policy: Policy,
    allow_cross_namespace: bool,
    secret_metadata: MetadataLookup,
) -> list[str]:
    """Why this Landing would not work; empty when it may be admitted."""
    try:
        parsed = api.Landing(
            metadata=api.ObjectMeta(name=name, namespace=namespace),
            spec=api.parse_spec(spec, name=name),
        )
    except api.SpecError as err:
        return [str(err)]
    found: list[str] = []
    if parsed.spec.server:
        try:
            check_server(parsed.spec.server, policy)
        except KubeconfigError as err:
            found.append(f"spec.server: {err}")
    source_namespace, source_name = parsed.source_ref
    if source_namespace != namespace and not allow_cross_namespace:
        meta = await secret_metadata(source_namespace, source_name)
        # A missing Secret may appear later (Planet B); the controller re-checks then.
        if meta is not None:
            try:
                plan.check_cross_namespace(
                    namespace,
                    source_namespace,
                    source_name,
                    meta.get("annotations"),
                    allow_all=False,
                )
            except LandingProblem as err:
                found.append(str(err))
    return found
