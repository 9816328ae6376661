"""Admission checks for Landings that the CRD's CEL rules cannot express.

CEL sees one object; it cannot know the operator's server address policy or whether a
Secret in another namespace grants access. The validating webhook (kopf's admission
support, wired in operator.py) rejects such Landings at ``kubectl apply`` time with the
same checks the controller makes later.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from moonlander import api, plan
from moonlander.kubeconfig import KubeconfigError, Policy, check_server

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
        resolved = api.resolve_spec(name, namespace, spec)
    except api.SpecError as err:
        return [str(err)]
    found: list[str] = []
    if resolved.server:
        try:
            check_server(resolved.server, policy)
        except KubeconfigError as err:
            found.append(f"spec.server: {err}")
    if resolved.source_namespace != namespace and not allow_cross_namespace:
        meta = await secret_metadata(resolved.source_namespace, resolved.source_name)
        # A missing Secret may appear later (Planet B); the controller re-checks then.
        if meta is not None:
            try:
                plan.check_cross_namespace(
                    namespace,
                    resolved.source_namespace,
                    resolved.source_name,
                    meta.get("annotations"),
                    allow_all=False,
                )
            except plan.LandingProblem as err:
                found.append(str(err))
    return found
