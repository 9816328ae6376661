"""The soak's invariant checker: its own process and API clients, reading the clusters.

    python -m bench.soak.checker --oplog FILE --out REPORT.json [bounds]

It trusts nothing of the system under test: not the controllers' state, not the runner's
memory. It reads the runner's append-only operations log (what should exist, and since
when) and the clusters (what does), and records violations of:

- convergence: once the log says ``quiet`` (the last fault is over), every Landing the log
  says exists and its grant allows is Ready with the right content in its target within
  ``--converge-bound`` (p50/p99/max reported);
- no credential without a grant: no landed Secret, minted ServiceAccount or binding exists
  past the revocation bound after its Landing, its grant or its old target is gone;
- nothing stuck: no Landing left (in deletion or not) past the bound after it should be
  gone; no shard or leader Lease held by a replica that is gone;
- nothing lost: the sentinels (foreign Secrets), sources and tenant Secrets untouched;
- no leak: no token or private key (from the sources, the parent credential and what was
  landed) in the controllers' logs, Events, statuses or /metrics;
- bounded resources: each controller's RSS and established TCP connections, sampled from
  /proc, under the stated limits.

Exit status 1 when anything was violated (the report lists each).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import re
import socket
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
from bench.soak.expect import (
    OWNER,
    Expected,
    State,
    argocd_identity,
    decode,
    fold,
    kubeconfig_identity,
    percentile,
    read_log,
    revocation_deadline,
    secret_material,
)
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Event, Secret, ServiceAccount
from lightkube.resources.rbac_authorization_v1 import ClusterRoleBinding, RoleBinding

from moonlander.kube import internals
from moonlander.kube.resources import LandingPolicyResource, LandingResource, LandingSetResource

MANAGED = {"app.kubernetes.io/managed-by": "moonlander"}
SHARD_GROUP_LABEL = "moons.kingdon.ci/shard-group"
LEASE_GRACE = 45.0  # a shard Lease of a dead replica is reaped 30 s after it went silent
FAULTS = (ApiError, httpx2.HTTPError, OSError, TimeoutError)
_TOKENISH = re.compile(r"[A-Za-z0-9+/_\-]{20,}")


@dataclass
class Report:
    violations: list[dict[str, Any]] = field(default_factory=list)
    convergence: dict[str, float] = field(default_factory=dict)
    unconverged: list[str] = field(default_factory=list)
    resources: dict[str, Any] = field(default_factory=dict)
    leak_scan: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    polls: int = 0
    failed_polls: int = 0
    bounds: dict[str, float] = field(default_factory=dict)


class Checker:
    def __init__(self, opts: argparse.Namespace) -> None:
        self.opts = opts
        self.report = Report(
            bounds={
                "converge_s": opts.converge_bound,
                "revoke_s": opts.revoke_bound,
                "rss_mb": opts.rss_limit_mb,
                "connections": opts.conn_limit,
            }
        )
        self.clients: dict[str, AsyncClient] = {}
        self.first_seen: dict[tuple[str, ...], float] = {}
        self.reported: set[tuple[str, ...]] = set()
        # Landing -> (its last write, when first seen Ready and right since the last fault)
        self.converged: dict[tuple[str, str], tuple[float, float]] = {}
        # Objects nothing allows any more, by the deadline they must be gone by (this poll).
        self.awaiting: dict[tuple[str, ...], float] = {}
        # Before this the checker saw nothing: a Landing written earlier is timed from here.
        self.started = time.time()
        self.learned: set[tuple[str, str, str]] = set()
        self.identities: dict[tuple[str, str, str, bool], tuple[str, str]] = {}
        self.poll_seconds: list[float] = []
        self.material: set[str] = set()
        self.peak_rss: dict[int, float] = {}
        self.peak_conns: dict[int, int] = {}

    def violate(self, kind: str, key: tuple[str, ...], detail: str) -> None:
        if (kind, *key) in self.reported:
            return
        self.reported.add((kind, *key))
        entry = {"kind": kind, "what": "/".join(key), "detail": detail, "at": time.time()}
        self.report.violations.append(entry)
        print(f"checker: VIOLATION {kind} {'/'.join(key)}: {detail}", flush=True)

    # -- the loop ------------------------------------------------------------------------------

    async def run(self) -> int:
        path = Path(self.opts.oplog)
        state = fold(read_log(path))
        while not state.plane:
            await asyncio.sleep(0.5)
            state = fold(read_log(path))
        self.clients = {
            name: AsyncClient(KubeConfig.from_file(kc), field_manager="soak-checker", timeout=20)
            for name, kc in state.plane["clusters"].items()
        }
        sampler = asyncio.create_task(self.sample_forever(path))
        try:
            while True:
                state = fold(read_log(path))
                now = time.time()
                try:
                    await self.poll(state, now)
                    self.report.polls += 1
                    self.poll_seconds.append(time.time() - now)
                except FAULTS as err:
                    self.report.failed_polls += 1
                    print(f"checker: poll failed ({type(err).__name__}); again", flush=True)
                if state.quiet_at is not None and self.finished(state, time.time()):
                    break
                await asyncio.sleep(self.opts.interval)
            await self.final(state)
        finally:
            sampler.cancel()
            for client in self.clients.values():
                with contextlib.suppress(Exception):
                    await internals.close(client)
        self.summarize(state)
        out = Path(self.opts.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(self.report.__dict__, indent=2, default=str))
        print(f"checker: {len(self.report.violations)} violations; report {self.opts.out}")
        return 1 if self.report.violations else 0

    def finished(self, state: State, now: float) -> bool:
        assert state.quiet_at is not None
        waited = now - state.quiet_at
        # Past every revocation deadline, and past the reaping of a killed replica's Lease.
        last_kill = max(state.killed.values(), default=0.0)
        settle = max(state.quiet_at + self.opts.revoke_bound, last_kill + LEASE_GRACE)
        # ... and past the deadline of whatever is still there that nothing allows.
        settle = max(settle, *self.awaiting.values()) if self.awaiting else settle
        if now < settle + 2 * self.opts.interval and waited < self.opts.converge_bound:
            return False
        return not self.pending(state) or waited > self.opts.converge_bound

    def pending(self, state: State) -> list[tuple[str, str]]:
        """Landings that should be Ready and were not yet seen so since their last write."""
        return [
            k
            for k, e in state.landings.items()
            if self.expected_ready(state, e) and self.converged.get(k, (None,))[0] != e.since
        ]

    @staticmethod
    def expected_ready(state: State, found: Expected) -> bool:
        return state.allowed(found) and not found.spec.get("suspend")

    # -- one poll ------------------------------------------------------------------------------

    async def poll(self, state: State, now: float) -> None:
        namespaces = state.plane["namespaces"]
        self.awaiting = {}
        landed: dict[tuple[str, str, str], Secret] = {}
        for cluster, client in self.clients.items():
            async for secret in client.list(Secret, namespace="*", labels=MANAGED):
                meta = secret.metadata
                landed[(cluster, meta.namespace, meta.name)] = secret
                self._learn(secret)
        landings: dict[tuple[str, str], Any] = {}
        sources: dict[tuple[str, str], Secret] = {}
        for ns in namespaces:
            async for obj in self.clients["parent"].list(LandingResource, namespace=ns):
                landings[(ns, obj.metadata.name)] = obj
            async for secret in self.clients["parent"].list(Secret, namespace=ns):
                sources[(ns, secret.metadata.name)] = secret
                if not (secret.metadata.labels or {}).get("app.kubernetes.io/managed-by"):
                    self._learn(secret)
        parent_text = Path(state.plane["parent_file"]).read_text()
        self.material |= secret_material(parent_text)
        self.check_credentials(state, now, landed, landings)
        await self.check_minted(state, now, landings)
        self.check_landings_exist(state, now, landings)
        # A tenant Secret counts as lost only if the log says it exists both before the
        # lists (so it was made before them) and after (so it was not removed meanwhile).
        self.check_foreign(state, fold(read_log(Path(self.opts.oplog))), sources)
        if all(end is not None for _k, _s, end in state.faults.values()):
            self.check_convergence(state, now, landed, landings, sources, parent_text)
        else:
            self.converged.clear()  # a fault is on: only what converges after it counts

    def _learn(self, secret: Secret) -> None:
        """Adds a Secret's secret strings to what the leak scan looks for (once a version)."""
        version = (secret.metadata.namespace, secret.metadata.name, secret.metadata.resourceVersion)
        if version not in self.learned:
            self.learned.add(version)
            self.material |= _material_of(secret)

    def _identity(self, secret: Secret, argocd: bool = False) -> tuple[str, str]:
        """(server, credential) a Secret holds, parsed once per version."""
        meta = secret.metadata
        version = (meta.namespace, meta.name, meta.resourceVersion, argocd)
        if version not in self.identities:
            values = decode(secret.data)
            self.identities[version] = (
                argocd_identity(values) if argocd else kubeconfig_identity(values.get("value", ""))
            )
        return self.identities[version]

    def _deadline(self, state: State, revoked: float) -> float:
        return revocation_deadline(revoked, state.windows(), self.opts.revoke_bound)

    def _revoked_at(
        self, state: State, owner: str, uid: str, landings: dict[tuple[str, str], Any]
    ) -> tuple[float | None, Expected | None, str]:
        """When whatever allowed an object owned by ``owner`` stopped allowing it (None:
        it is allowed), the owner as expected, and why."""
        ns, _, name = owner.partition("/")
        key = (ns, name)
        found = state.landings.get(key)
        if found is None:
            return (
                state.gone.get(key, self.first_seen.setdefault(("owner", owner), time.time())),
                None,
                "no such Landing in the log",
            )
        if not state.allowed(found):
            return state.grants[found.ns][1], found, "grant withdrawn"
        live = landings.get(key)
        if live is not None and uid and live.metadata.uid != uid:
            return found.since, found, "of an earlier Landing of that name"
        return None, found, ""

    def check_credentials(
        self,
        state: State,
        now: float,
        landed: dict[tuple[str, str, str], Secret],
        landings: dict[tuple[str, str], Any],
    ) -> None:
        for where, secret in landed.items():
            notes = secret.metadata.annotations or {}
            owner = notes.get(OWNER, "")
            revoked, found, why = self._revoked_at(
                state, owner, notes.get(f"{OWNER}-uid", ""), landings
            )
            if (
                revoked is None
                and found is not None
                and found.target() != where
                and not found.spec.get("suspend")  # suspended: nothing is touched, by design
            ):
                old = [m[:3] for m in state.moved.get((found.ns, found.name), [])]
                if where in old:
                    # An old target: due from the Landing's last write (a move made while
                    # suspended is done on resume).
                    revoked, why = found.since, "not the Landing's target (moved)"
                else:
                    # A target the log does not name (yet: the edit is applied before the
                    # runner hears back and logs it): due from first sight.
                    revoked = self.first_seen.setdefault(("target", *where), now)
                    why = "not a target the log names"
            if revoked is not None:
                self.awaiting[("Secret", *where)] = self._deadline(state, revoked)
            if revoked is not None and now > self._deadline(state, revoked):
                self.violate(
                    "credential-without-grant",
                    ("Secret", *where),
                    f"owner {owner or '(none)'}: {why}; revoked {now - revoked:.1f}s ago",
                )

    async def check_minted(
        self, state: State, now: float, landings: dict[tuple[str, str], Any]
    ) -> None:
        kinds: list[tuple[str, Any, str | None]] = [
            ("ServiceAccount", ServiceAccount, "*"),
            ("RoleBinding", RoleBinding, "*"),
            ("ClusterRoleBinding", ClusterRoleBinding, None),
        ]
        for cluster, client in self.clients.items():
            for label, kind, namespace in kinds:
                async for obj in client.list(kind, namespace=namespace, labels=MANAGED):
                    notes = obj.metadata.annotations or {}
                    owner = notes.get(OWNER, "")
                    revoked, found, why = self._revoked_at(
                        state, owner, notes.get(f"{OWNER}-uid", ""), landings
                    )
                    if revoked is None and found is not None and found.minted() is None:
                        revoked, why = found.since, "the Landing mints nothing"
                    key = (cluster, label, obj.metadata.namespace or "", obj.metadata.name)
                    if revoked is not None:
                        self.awaiting[key] = self._deadline(state, revoked)
                    if revoked is not None and now > self._deadline(state, revoked):
                        self.violate(
                            "credential-without-grant",
                            key,
                            f"owner {owner or '(none)'}: {why}; revoked {now - revoked:.1f}s ago",
                        )

    def check_landings_exist(
        self, state: State, now: float, landings: dict[tuple[str, str], Any]
    ) -> None:
        for key, obj in landings.items():
            if key in state.landings:
                continue
            gone = state.gone.get(key) or self.first_seen.setdefault(("landing", *key), now)
            self.awaiting[("Landing", *key)] = self._deadline(state, gone)
            if now > self._deadline(state, gone):
                stuck = "in deletion" if obj.metadata.deletionTimestamp else "never deleted"
                self.violate(
                    "stuck",
                    ("Landing", *key),
                    f"{stuck} {now - gone:.1f}s after it should be gone "
                    f"(finalizers {obj.metadata.finalizers})",
                )

    def check_foreign(
        self, state: State, after: State, sources: dict[tuple[str, str], Secret]
    ) -> None:
        for (ns, tenant), (_child, present, _t) in state.tenants.items():
            present = present and after.tenants.get((ns, tenant), ("", False, 0.0))[1]
            name = (
                state.sets[ns]["pattern"].replace("{{tenant}}", tenant) if ns in state.sets else ""
            )
            if present and name and (ns, name) not in sources:
                self.violate("lost", ("parent", ns, name), "a tenant Secret the log says exists")
        if not state.counts.get("seeded"):
            return  # the sources are being written
        for ns in state.plane["namespaces"]:
            for src in state.plane["sources"]:
                if (ns, src) not in sources:
                    self.violate("lost", ("parent", ns, src), "a source Secret is gone")

    async def check_sentinels(self, state: State) -> None:
        for entry in state.sentinels:
            key = (entry["cluster"], entry["ns"], entry["name"])
            try:
                obj = await self.clients[entry["cluster"]].get(
                    Secret, entry["name"], namespace=entry["ns"]
                )
            except ApiError as err:
                if err.status.code == 404:
                    self.violate("lost", key, "sentinel deleted")
                    continue
                raise
            if _digest(obj) != entry["digest"] or obj.metadata.resourceVersion != entry["rv"]:
                self.violate("lost", key, "sentinel overwritten")

    def check_convergence(
        self,
        state: State,
        now: float,
        landed: dict[tuple[str, str, str], Secret],
        landings: dict[tuple[str, str], Any],
        sources: dict[tuple[str, str], Secret],
        parent_text: str,
    ) -> None:
        sentinels = {(e["cluster"], e["ns"], e["name"]) for e in state.sentinels}
        parent_identity = kubeconfig_identity(parent_text)
        for key, found in state.landings.items():
            seen = self.converged.get(key)
            if (seen is not None and seen[0] == found.since) or not self.expected_ready(
                state, found
            ):
                continue
            obj = landings.get(key)
            if obj is None or not _current(obj):
                continue
            reason = _reason(obj)
            if found.target() in sentinels:
                ok = reason == "Conflict"
            else:
                ok = reason == "Synced" and self._content_right(
                    found, landed, sources, parent_identity
                )
            if ok:
                self.converged[key] = (found.since, now)
            else:
                self.converged.pop(key, None)

    def _content_right(
        self,
        found: Expected,
        landed: dict[tuple[str, str, str], Secret],
        sources: dict[tuple[str, str], Secret],
        parent_identity: tuple[str, str],
    ) -> bool:
        secret = landed.get(found.target())
        if secret is None:
            return False
        if (secret.metadata.annotations or {}).get(OWNER) != f"{found.ns}/{found.name}":
            return False
        if found.child_to_parent:
            source = sources.get((found.ns, found.spec["kubeconfigSecretName"]))
            if source is None:
                return False
            want = self._identity(source)
            argocd = (found.spec.get("output") or {}).get("format") == "ArgoCD"
            return self._identity(secret, argocd) == want
        have = self._identity(secret)
        if found.minted() is not None:
            return have[0] == parent_identity[0] and bool(have[1]) and have[1] != parent_identity[1]
        return have == parent_identity

    # -- resources -----------------------------------------------------------------------------

    async def sample_forever(self, path: Path) -> None:
        """Every second: each live controller's peak RSS (VmHWM: the kernel's own peak, so
        nothing between samples is missed) and its established connections."""
        while True:
            self.sample_resources(fold(read_log(path)))
            await asyncio.sleep(1.0)

    def sample_resources(self, state: State) -> None:
        established = _established_inodes()
        for pid in state.live_pids():
            rss = _rss_mb(pid)
            if rss is None:
                continue
            conns = _established(pid, established)
            self.peak_rss[pid] = max(self.peak_rss.get(pid, 0.0), rss)
            self.peak_conns[pid] = max(self.peak_conns.get(pid, 0), conns)
            name = state.controllers[pid]["name"]
            if rss > self.opts.rss_limit_mb:
                self.violate("resources", (name, str(pid), "rss"), f"{rss:.0f} MB")
            if conns > self.opts.conn_limit:
                self.violate("resources", (name, str(pid), "connections"), f"{conns} established")

    # -- the end -------------------------------------------------------------------------------

    async def final(self, state: State) -> None:
        for attempt in range(10):
            try:
                await self.poll(state, time.time())
                await self.check_sentinels(state)
                await self.check_leases(state)
                await self.scan_leaks(state)
                break
            except FAULTS as err:
                print(f"checker: final checks failed ({err!r}); again", flush=True)
                if attempt == 9:
                    self.violate("checker", ("final",), f"could not read the clusters: {err!r}")
                await asyncio.sleep(3)
        for key in self.pending(state):
            self.report.unconverged.append("/".join(key))
            self.violate(
                "convergence",
                ("Landing", *key),
                f"not Ready with the right content {self.opts.converge_bound:.0f}s after "
                "the last fault",
            )

    async def check_leases(self, state: State) -> None:
        host = socket.gethostname()
        live = {f"{host}_{pid}" for pid in state.live_pids()}
        namespace = state.plane["lease_namespace"]
        async for lease in self.clients["parent"].list(Lease, namespace=namespace):
            holder = (lease.spec.holderIdentity or "") if lease.spec else ""
            labels = lease.metadata.labels or {}
            ours = SHARD_GROUP_LABEL in labels or lease.metadata.name.startswith("soak-")
            if ours and holder and holder not in live:
                self.violate(
                    "stuck",
                    ("Lease", namespace, lease.metadata.name),
                    f"held by {holder}, a replica that is gone",
                )

    async def scan_leaks(self, state: State) -> None:
        scanned = 0
        for pid, entry in state.controllers.items():
            text = (
                Path(entry["log"]).read_text(errors="replace")
                if Path(entry["log"]).exists()
                else ""
            )
            scanned += len(text)
            self._leaks(text, ("log", entry["name"]))
            if pid in state.live_pids():
                with contextlib.suppress(OSError):
                    url = f"http://127.0.0.1:{entry['metrics_port']}/metrics"
                    with urllib.request.urlopen(url, timeout=10) as resp:
                        body = resp.read().decode(errors="replace")
                    scanned += len(body)
                    self._leaks(body, ("metrics", entry["name"]))
        for cluster, client in self.clients.items():
            async for event in client.list(Event, namespace="*"):
                text = json.dumps(event.to_dict(), default=str)
                scanned += len(text)
                self._leaks(
                    text, ("event", cluster, event.metadata.namespace or "", event.metadata.name)
                )
        for kind in (LandingResource, LandingSetResource):
            for ns in state.plane["namespaces"]:
                async for obj in self.clients["parent"].list(kind, namespace=ns):
                    text = json.dumps(obj.to_dict().get("status") or {}, default=str)
                    scanned += len(text)
                    self._leaks(text, ("status", ns, obj.metadata.name))
        async for obj in self.clients["parent"].list(LandingPolicyResource):
            text = json.dumps(obj.to_dict().get("status") or {}, default=str)
            self._leaks(text, ("status", obj.metadata.name))
        self.report.leak_scan = {"bytes": scanned, "secret_strings": len(self.material)}

    def _leaks(self, text: str, where: tuple[str, ...]) -> None:
        for run in _TOKENISH.findall(text):
            # An escaped newline ("\\n") before a PEM line leaves an "n" in front of it.
            hit = next((c for c in (run, run[:64], run[1:], run[1:65]) if c in self.material), None)
            if hit is not None:
                self.violate("leak", where, f"secret material ({len(hit)} chars) found")
                return

    def summarize(self, state: State) -> None:
        # From the end of the last fault (or the Landing's last write, if later) until the
        # first poll that saw it Ready with the right content: resolution one poll.
        last_end = max((e for _k, _s, e in state.faults.values() if e is not None), default=0.0)
        times = [
            max(0.0, seen - max(last_end, since, self.started))
            for key, (since, seen) in self.converged.items()
            if key in state.landings and state.landings[key].since == since
        ]
        slow = [t for t in times if t > self.opts.converge_bound]
        if slow:
            self.violate(
                "convergence",
                ("slow",),
                f"{len(slow)} Landings Ready only {max(slow):.0f}s after the last fault",
            )
        self.report.convergence = {
            "landings": len(times),
            # A Landing is seen converged at a poll: the figures are that coarse.
            "resolution_s": round(percentile(self.poll_seconds, 0.5) + self.opts.interval, 1),
            "p50_s": round(percentile(times, 0.5), 2),
            "p99_s": round(percentile(times, 0.99), 2),
            "max_s": round(max(times, default=0.0), 2),
        }
        self.report.resources = {
            "peak_rss_mb": round(max(self.peak_rss.values(), default=0.0), 1),
            "peak_connections": max(self.peak_conns.values(), default=0),
            "per_process": {
                state.controllers[pid]["name"] + f"[{pid}]": {
                    "rss_mb": round(rss, 1),
                    "connections": self.peak_conns.get(pid, 0),
                }
                for pid, rss in self.peak_rss.items()
            },
        }
        self.report.counts = state.counts
        faults: dict[str, int] = {}
        for kind, _start, _end in state.faults.values():
            faults[kind] = faults.get(kind, 0) + 1
        self.report.faults = faults


# -- helpers ---------------------------------------------------------------------------------


def _current(obj: Any) -> bool:
    status = obj.status or {}
    return bool(status) and status.get("observedGeneration") == obj.metadata.generation


def _reason(obj: Any) -> str:
    for cond in (obj.status or {}).get("conditions", []):
        if cond.get("type") == "Ready":
            return str(cond.get("reason", ""))
    return ""


def _digest(secret: Secret) -> str:
    return hashlib.sha256(json.dumps(secret.data or {}, sort_keys=True).encode()).hexdigest()


def _material_of(secret: Secret) -> set[str]:
    found: set[str] = set()
    for key, value in decode(secret.data).items():
        if key == "config":  # Argo CD's cluster Secret: JSON, not a kubeconfig
            with contextlib.suppress(ValueError):
                config = json.loads(value)
                for item in (
                    config.get("bearerToken"),
                    config.get("tlsClientConfig", {}).get("keyData"),
                ):
                    if item and len(item) >= 20:
                        found.add(str(item)[:64] if len(str(item)) > 64 else str(item))
                        found.add(str(item))
            continue
        found |= secret_material(value)
    return found


def _rss_mb(pid: int) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(found.group(1)) / 1024 if found else None


def _established_inodes() -> set[str]:
    """Socket inodes of every ESTABLISHED TCP connection on the machine."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "01":
                    found.add(fields[9])
    return found


def _established(pid: int, established: set[str]) -> int:
    """TCP connections of ``pid`` in state ESTABLISHED."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = fd.readlink().name
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    return len(inodes & established)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--oplog", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--converge-bound", type=float, default=300.0)
    p.add_argument("--revoke-bound", type=float, default=60.0)
    p.add_argument("--rss-limit-mb", type=float, default=600.0)
    p.add_argument("--conn-limit", type=int, default=400)
    p.add_argument("--interval", type=float, default=3.0, help="seconds between polls")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(Checker(parse(argv)).run())


if __name__ == "__main__":
    sys.exit(main())
