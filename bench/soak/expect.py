"""What the checker expects, from the runner's append-only operations log alone (pure).

The log says what was done and when (wall-clock seconds): Landings written and deleted,
grants given and withdrawn, tenant Secrets added and removed, faults started and ended.
From it: which Landings should exist and where each should have landed, whether its
grant allows it, and by when a credential must be gone once nothing allows it any more
(the revocation bound, stretched over faults that keep the controller from acting).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

GROUP = "moons.kingdon.ci"
OWNER = f"{GROUP}/landing"


@dataclass
class Expected:
    """One Landing the log says should exist."""

    ns: str
    name: str
    spec: dict[str, Any]
    child: str  # the cluster its source names
    since: float  # its last write
    generated: bool = False  # stamped by a LandingSet from a tenant Secret

    @property
    def child_to_parent(self) -> bool:
        return self.spec.get("direction") == "ChildToParent"

    @property
    def needs_grant(self) -> bool:
        """ParentToChild hands out the parent's credential or mints one: the namespace's
        LandingPolicy must allow it. ChildToParent into its own namespace needs none."""
        return not self.child_to_parent

    def target(self) -> tuple[str, str, str]:
        """(cluster, namespace, name) of the Secret it lands."""
        cluster = "parent" if self.child_to_parent else self.child
        where = self.spec.get("targetNamespace") or self.ns
        return cluster, where, self.spec.get("writeKubeconfigSecretName", "remote-kubeconfig")

    def minted(self) -> tuple[str, str] | None:
        account = self.spec.get("serviceAccount")
        if not account:
            return None
        return account.get("namespace", "moonlander-minted"), account["name"]


@dataclass
class State:
    """The log folded up to some instant."""

    plane: dict[str, Any] = field(default_factory=dict)
    landings: dict[tuple[str, str], Expected] = field(default_factory=dict)
    gone: dict[tuple[str, str], float] = field(default_factory=dict)  # deleted at
    # A Landing's previous targets: (ns, name) -> [(cluster, ns, name, replaced at)].
    moved: dict[tuple[str, str], list[tuple[str, str, str, float]]] = field(default_factory=dict)
    grants: dict[str, tuple[bool, float]] = field(default_factory=dict)
    sets: dict[str, dict[str, Any]] = field(default_factory=dict)  # ns -> the set's log entry
    tenants: dict[tuple[str, str], tuple[str, bool, float]] = field(default_factory=dict)
    sentinels: list[dict[str, Any]] = field(default_factory=list)
    faults: dict[int, tuple[str, float, float | None]] = field(default_factory=dict)
    controllers: dict[int, dict[str, Any]] = field(default_factory=dict)  # pid -> entry
    killed: dict[int, float] = field(default_factory=dict)
    quiet_at: float | None = None
    counts: dict[str, int] = field(default_factory=dict)

    def granted(self, ns: str) -> bool:
        return self.grants.get(ns, (False, 0.0))[0]

    def allowed(self, found: Expected) -> bool:
        return self.granted(found.ns) or not found.needs_grant

    def windows(self) -> list[tuple[float, float]]:
        """Fault windows (an unfinished one reaches far into the future)."""
        return [(s, e if e is not None else float("inf")) for _k, s, e in self.faults.values()]

    def live_pids(self) -> set[int]:
        return {pid for pid in self.controllers if pid not in self.killed}


def read_log(path: Path) -> list[dict[str, Any]]:
    """The entries written so far (a line being written is left for the next read)."""
    entries = []
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    for line in text.splitlines(keepends=True):
        if line.endswith("\n") and line.strip():
            entries.append(json.loads(line))
    return entries


def fold(entries: Iterable[dict[str, Any]]) -> State:
    state = State()
    for entry in entries:
        op, t = entry["op"], float(entry["t"])
        state.counts[op] = state.counts.get(op, 0) + 1
        if op == "plane":
            state.plane = entry
        elif op == "landing":
            _landing(state, entry, t)
        elif op == "landing-delete":
            key = (entry["ns"], entry["name"])
            found = state.landings.pop(key, None)
            if found is not None:
                state.gone[key] = t
        elif op == "policy":
            state.grants[entry["ns"]] = (bool(entry["granted"]), t)
        elif op == "set":
            state.sets[entry["ns"]] = entry
        elif op == "tenant":
            _tenant(state, entry, t)
        elif op == "sentinel":
            state.sentinels.append(entry)
        elif op == "fault":
            state.faults[int(entry["id"])] = (entry["kind"], t, None)
        elif op == "fault-end":
            kind, start, _ = state.faults[int(entry["id"])]
            state.faults[int(entry["id"])] = (kind, start, t)
        elif op == "controller-start":
            state.controllers[int(entry["pid"])] = entry
        elif op == "controller-kill":
            state.killed[int(entry["pid"])] = t
        elif op == "quiet":
            state.quiet_at = t
    return state


def _landing(state: State, entry: dict[str, Any], t: float) -> None:
    key = (entry["ns"], entry["name"])
    sources = state.plane.get("sources", {})
    child = sources.get(entry["spec"]["kubeconfigSecretName"], "")
    new = Expected(entry["ns"], entry["name"], entry["spec"], child, t)
    old = state.landings.get(key)
    if old is not None and old.target() != new.target():
        state.moved.setdefault(key, []).append((*old.target(), t))
    state.landings[key] = new
    state.gone.pop(key, None)


def _tenant(state: State, entry: dict[str, Any], t: float) -> None:
    ns, tenant = entry["ns"], entry["tenant"]
    # A removal names no child: the tenant's is the one it was added with.
    child = entry["child"] or state.tenants.get((ns, tenant), ("", False, 0.0))[0]
    entry = {**entry, "child": child}
    state.tenants[(ns, tenant)] = (child, bool(entry["present"]), t)
    template = state.sets.get(ns)
    if template is None:
        return
    key = (ns, template["landing"].replace("{{tenant}}", tenant))
    if entry["present"]:
        spec = {
            "kubeconfigSecretName": template["pattern"].replace("{{tenant}}", tenant),
            "writeKubeconfigSecretName": template["write"].replace("{{tenant}}", tenant),
        }
        state.landings[key] = Expected(ns, key[1], spec, entry["child"], t, generated=True)
        state.gone.pop(key, None)
    elif state.landings.pop(key, None) is not None:
        state.gone[key] = t


def revocation_deadline(revoked: float, windows: list[tuple[float, float]], bound: float) -> float:
    """By when something revoked at ``revoked`` must be gone: ``bound`` seconds after it,
    or after the end of a fault that overlaps the time the controller had to act (a
    partitioned child cannot be cleaned until it is reachable again), whichever is later."""
    start = revoked
    changed = True
    while changed:
        changed = False
        for begin, end in windows:
            if begin < start + bound and end > start:
                start, changed = end, True
    return start + bound


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- content -------------------------------------------------------------------------------


def kubeconfig_identity(text: str) -> tuple[str, str]:
    """(server, credential) of a kubeconfig's current context: what must be carried over
    for a landed copy to be the right one."""
    doc = yaml.safe_load(text) or {}
    context_name = doc.get("current-context")
    contexts = {c["name"]: c["context"] for c in doc.get("contexts") or []}
    context = contexts.get(context_name) or next(iter(contexts.values()), {})
    clusters = {c["name"]: c["cluster"] for c in doc.get("clusters") or []}
    users = {u["name"]: u.get("user") or {} for u in doc.get("users") or []}
    cluster = clusters.get(context.get("cluster"), next(iter(clusters.values()), {}))
    user = users.get(context.get("user"), next(iter(users.values()), {}))
    credential = user.get("token") or user.get("client-key-data") or ""
    return str(cluster.get("server", "")), str(credential)


def argocd_identity(values: dict[str, str]) -> tuple[str, str]:
    config = json.loads(values.get("config", "{}"))
    credential = config.get("bearerToken") or config.get("tlsClientConfig", {}).get("keyData", "")
    return values.get("server", ""), str(credential)


def decode(data: dict[str, str] | None) -> dict[str, str]:
    return {k: base64.b64decode(v).decode(errors="replace") for k, v in (data or {}).items()}


def secret_material(text: str) -> set[str]:
    """The strings of a kubeconfig that must never be seen outside a Secret: bearer tokens,
    private keys (base64 as written, and a line of the PEM body they decode to)."""
    found: set[str] = set()
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError:
        return found
    if not isinstance(doc, dict):
        return found
    for user in doc.get("users") or []:
        fields = (user or {}).get("user") or {}
        if fields.get("token"):
            token = str(fields["token"])
            found.add(token)
            # A JWT's payload and signature are its own; its header is every token's.
            found.update(token.split(".")[1:])
        if fields.get("client-key-data"):
            key = str(fields["client-key-data"])
            found.add(key[:64])
            pem = base64.b64decode(key).decode(errors="replace").splitlines()
            body = [line for line in pem if line and not line.startswith("-----")]
            if body:
                found.add(body[len(body) // 2])
    return {s for s in found if len(s) >= 20}
