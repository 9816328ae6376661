"""``moonlander status``: a namespace's Landings and LandingSets, what each landed where and
why not (as ``flux get`` and ``cmctl status``), read with the user's own credentials."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lightkube import ApiError, AsyncClient

from moonlander.cli.errors import TRANSPORT_ERRORS, CliError, Exit, api_error, transport_error
from moonlander.cli.kubeconfig import Target
from moonlander.kube import internals
from moonlander.kube.resources import LandingResource, LandingSetResource

Obj = Mapping[str, Any]


@dataclass(frozen=True)
class Query:
    namespace: str | None  # None: all namespaces (-A)
    name: str | None = None


def _condition(obj: Obj, kind: str) -> Obj:
    for cond in (obj.get("status") or {}).get("conditions") or ():
        if isinstance(cond, Mapping) and cond.get("type") == kind:
            return cond
    return {}


def _meta(obj: Obj) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _ready(obj: Obj) -> dict[str, Any]:
    cond = _condition(obj, "Ready")
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    others = {
        str(c.get("type")): str(c.get("reason") or "True")
        for c in status.get("conditions") or ()
        if isinstance(c, Mapping) and c.get("type") != "Ready" and c.get("status") == "True"
    }
    return {
        "ready": cond.get("status", "Unknown"),
        "reason": cond.get("reason") or ("Pending" if not cond else ""),
        "message": cond.get("message") or "",
        "generation": meta.get("generation"),
        "observedGeneration": status.get("observedGeneration"),
        "conditions": others,  # the other conditions that hold, by type: their reasons
    }


def landing_summary(obj: Obj) -> dict[str, Any]:
    """The facts ``status`` shows for a Landing (also its ``-o json|yaml`` record)."""
    namespace, name = _meta(obj)
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    landed = status.get("landed") or {}
    source_ns = spec.get("kubeconfigSecretNamespace") or namespace
    source = spec.get("kubeconfigSecretName") or f"kubernetes-{name}-admin-kubeconfig"
    return {
        "kind": "Landing",
        "namespace": namespace,
        "name": name,
        **_ready(obj),
        "landingSet": next(
            (
                str(ref.get("name"))
                for ref in (obj.get("metadata") or {}).get("ownerReferences") or ()
                if isinstance(ref, Mapping) and ref.get("kind") == "LandingSet"
            ),
            None,
        ),
        "direction": spec.get("direction") or "ParentToChild",
        "suspended": bool(spec.get("suspend")),
        "source": f"{source_ns}/{source}",
        "sourceKey": landed.get("sourceKey") or None,
        "cluster": landed.get("cluster") or None,
        "target": status.get("target") or None,
        "server": landed.get("server") or None,
        "serviceAccount": landed.get("serviceAccount") or None,
        "tokenExpiresAt": landed.get("tokenExpiresAt") or None,
        "tokenRenewAt": landed.get("tokenRenewAt") or None,
        "lastSyncTime": status.get("lastSyncTime") or None,
    }


def landingset_summary(obj: Obj) -> dict[str, Any]:
    namespace, name = _meta(obj)
    status = obj.get("status") or {}
    return {
        "kind": "LandingSet",
        "namespace": namespace,
        "name": name,
        **_ready(obj),
        "desired": status.get("desired", 0),
        "readyLandings": status.get("ready", 0),
        "failing": status.get("failing", 0),
        "failingLandings": list(status.get("failingLandings") or ()),
    }


def _generation(s: Mapping[str, Any]) -> str:
    gen, seen = s.get("generation"), s.get("observedGeneration")
    if gen is None or seen == gen:
        return ""
    if not seen:  # None, or 0: the CRD's default until the controller first writes a status
        return f" (generation {gen} not yet seen by the controller)"
    return f" (generation {gen} not yet seen; status is of {seen})"


def _block(s: Mapping[str, Any], all_namespaces: bool) -> list[str]:
    title = f"{s['namespace']}/{s['name']}" if all_namespaces else s["name"]
    reason = f" {s['reason']}" if s["reason"] else ""
    made_by = f" (of LandingSet {s['landingSet']})" if s.get("landingSet") else ""
    lines = [
        f"{s['kind']} {title}{made_by}",
        f"  Ready:     {s['ready']}{reason}{_generation(s)}",
    ]
    if s["kind"] == "Landing":
        if s["suspended"]:
            lines.append("  Suspended: true")
        key = f" key {s['sourceKey']}" if s["sourceKey"] else ""
        lines.append(f"  Source:    {s['source']}{key} ({s['direction']})")
        if s["target"] and s["cluster"]:
            lines.append(f"  Landed:    {s['target']} in {s['cluster']}")
        elif s["target"]:
            lines.append(f"  Target:    {s['target']} (nothing landed)")
        if s["server"] and s["server"] != s["cluster"]:
            lines.append(f"  Points at: {s['server']}")
        if s["serviceAccount"]:
            expiry = f", token expires {s['tokenExpiresAt']}" if s["tokenExpiresAt"] else ""
            renew = f" (renewed at {s['tokenRenewAt']})" if s["tokenRenewAt"] else ""
            lines.append(f"  Identity:  {s['serviceAccount']}{expiry}{renew}")
        if s["lastSyncTime"]:
            lines.append(f"  Synced at: {s['lastSyncTime']}")
    else:
        lines.append(
            f"  Landings:  {s['readyLandings']}/{s['desired']} ready, {s['failing']} failing"
        )
        lines.extend(f"    - {item}" for item in s["failingLandings"])
    for kind in ("Reconciling", "Stalled"):  # kstatus: in progress, or waits for a human
        if kind in s["conditions"]:
            lines.append(f"  {kind + ':':<10} {s['conditions'][kind]}")
    if s["message"] and s["ready"] != "True":
        lines.append(f"  Message:   {s['message']}")
    return lines


def render_text(summaries: Sequence[Mapping[str, Any]], query: Query) -> str:
    """Blocks, one per object, LandingSets first (they explain the Landings they made)."""
    if not summaries:
        where = "any namespace" if query.namespace is None else f"namespace {query.namespace}"
        what = f"Landing or LandingSet {query.name!r}" if query.name else "Landings"
        return f"No {what} found in {where}.\n"
    blocks = ["\n".join(_block(s, query.namespace is None)) for s in summaries]
    return "\n\n".join(blocks) + "\n"


def order(summaries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    rank = {"LandingSet": 0, "Landing": 1}
    return sorted(summaries, key=lambda s: (s["namespace"], rank[s["kind"]], s["name"]))


async def _list(client: AsyncClient, resource: Any, query: Query, what: str) -> list[Obj]:
    namespace = "*" if query.namespace is None else query.namespace
    where = "all namespaces" if query.namespace is None else f"namespace {query.namespace}"
    try:
        if query.name is not None:
            try:
                obj = await client.get(resource, query.name, namespace=namespace)
            except ApiError as err:
                if err.status.code == 404:
                    return []
                raise
            return [obj.to_dict()]
        return [obj.to_dict() async for obj in client.list(resource, namespace=namespace)]
    except ApiError as err:
        if err.status.code == 404 and "the server could not find" in (err.status.message or ""):
            raise CliError(
                Exit.UNREACHABLE, f"{what} are not installed in this cluster (no CRD)"
            ) from None
        raise api_error(err, f"listing {what} in {where}") from None


async def collect(client: AsyncClient, target: Target, query: Query) -> list[dict[str, Any]]:
    try:
        landings = await _list(client, LandingResource, query, "Landings")
        sets = await _list(client, LandingSetResource, query, "LandingSets")
    except TRANSPORT_ERRORS as err:
        raise transport_error(err, target.server) from None
    finally:
        await internals.close(client)
    return order([*map(landingset_summary, sets), *map(landing_summary, landings)])
