"""The soak's world: one etcd, a parent and children, the controllers as processes (three
sharded replicas and a leader-elected pair), and the loopback proxies faults are made
with. Everything here does I/O; what to do and when is bench/soak/schedule.py's."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.resources.coordination_v1 import Lease
from tests.e2e.harness import FaultProxy, kubeconfig_with_server, mint_token_kubeconfig
from tests.e2e.test_faults import ThrottlingProxy, compact_under_every_watch, wait_ready

from moonlander.kube import internals
from moonlander_dev import pki
from moonlander_dev.clusters import (
    WEBHOOK_CLIENT_NAME,
    ClusterSpec,
    ControlPlane,
    free_port,
    spawn,
)

SHARDS_ID, PAIR_ID = "soak-shards", "soak-pair"
LEASE_NS = "moonlander-system"


class DroppingProxy(FaultProxy):
    """FaultProxy that can also drop: every connection closed at once, new ones refused
    (closed as soon as accepted) until restored."""

    dropping = False

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.dropping:
            with contextlib.suppress(OSError):
                writer.close()
            return
        await super()._handle(reader, writer)

    def drop(self) -> None:
        self.dropping = True
        for task in list(self._conns):
            task.cancel()

    def restore(self) -> None:
        self.dropping = False
        super().restore()


class Oplog:
    """The append-only operations log the checker reads (one JSON object a line, flushed
    at once). It holds what was done and when, never a secret's value."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = path.open("a", buffering=1)

    def write(self, op: str, **fields: Any) -> None:
        self.append({"t": time.time(), "op": op, **fields})

    def append(self, entry: dict[str, Any]) -> None:
        self._file.write(json.dumps(entry) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


@dataclass
class Controller:
    name: str  # shard-0..2, pair-0..1
    group: str
    args: list[str]
    log_path: Path
    metrics_port: int
    health_port: int
    webhook_port: int | None = None
    proc: subprocess.Popen[bytes] | None = None

    def start(self, oplog: Oplog) -> None:
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        with self.log_path.open("ab") as log:
            self.proc = spawn(self.args, log, env=env)
        oplog.write(
            "controller-start",
            pid=self.proc.pid,
            name=self.name,
            group=self.group,
            log=str(self.log_path),
            metrics_port=self.metrics_port,
        )

    def kill(self, oplog: Oplog) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            oplog.write("controller-kill", pid=self.proc.pid, name=self.name)

    def stop(self, oplog: Oplog) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            oplog.write("controller-kill", pid=self.proc.pid, name=self.name)

    def ready(self) -> bool:
        with contextlib.suppress(OSError):
            url = f"http://127.0.0.1:{self.health_port}/readyz"
            with urllib.request.urlopen(url, timeout=2) as resp:
                return int(resp.status) == 200
        return False


@dataclass
class World:
    directory: Path
    children: list[str]
    plane: ControlPlane = field(init=False)
    admin: dict[str, AsyncClient] = field(default_factory=dict)
    controllers: list[Controller] = field(default_factory=list)
    partition: DroppingProxy | None = None
    throttle: ThrottlingProxy | None = None
    webhook: DroppingProxy | None = None
    webhook_ca: pki.CertificateAuthority | None = None
    parent_file: Path = field(init=False)

    def __post_init__(self) -> None:
        specs = [ClusterSpec("parent"), *(ClusterSpec(c) for c in self.children)]
        self.plane = ControlPlane(self.directory / "plane", specs)
        self.parent_file = self.directory / "parent-kubeconfig"

    async def start(self) -> None:
        await asyncio.to_thread(self.plane.start)
        self.admin = {
            name: AsyncClient(KubeConfig.from_file(c.kubeconfig), field_manager="soak")
            for name, c in self.plane.clusters.items()
        }
        self.parent_file.write_text(self.plane.clusters["parent"].kubeconfig.read_text())
        # child-1 sits behind a TCP proxy (partitions), child-2 behind a 429 proxy.
        self.partition = DroppingProxy(self.plane.clusters[self.children[0]].port)
        await self.partition.start()
        if len(self.children) > 1:
            self.throttle = ThrottlingProxy(self.plane.clusters[self.children[1]], 5)
            await self.throttle.start()

    @property
    def local(self) -> AsyncClient:
        return self.admin["parent"]

    def server_of(self, child: str) -> str:
        """The address sources name for ``child`` (through its fault proxy, if it has one)."""
        if self.partition is not None and child == self.children[0]:
            return f"https://127.0.0.1:{self.partition.port}"
        return self.plane.clusters[child].url

    def admin_source(self, child: str) -> str:
        """A kubeconfig for ``child`` with its admin certificate, as sources first hold it."""
        if self.throttle is not None and child == self.children[1]:
            return self.throttle.kubeconfig()
        text = self.plane.clusters[child].kubeconfig.read_text()
        return kubeconfig_with_server(text, self.server_of(child))

    async def token_source(self, child: str) -> str:
        """A fresh token of ServiceAccount soak-admin (cluster-admin) in ``child``: a source
        rotated to a new credential."""
        cluster = self.plane.clusters[child]
        if self.throttle is not None and child == self.children[1]:
            server, ca = f"https://127.0.0.1:{self.throttle.port}", self.throttle.ca.cert_pem
        else:
            server, ca = self.server_of(child), cluster.ca_pem
        return await mint_token_kubeconfig(
            self.admin[child], server, ca, "default", "soak-admin", "cluster-admin", 7200
        )

    async def rotate_parent(self) -> None:
        """A new parent credential (a fresh token), written as a mounted Secret changes."""
        cluster = self.plane.clusters["parent"]
        text = await mint_token_kubeconfig(
            self.local, cluster.url, cluster.ca_pem, "default", "soak-parent", "cluster-admin", 7200
        )
        tmp = self.parent_file.with_suffix(".new")
        tmp.write_text(text)
        tmp.replace(self.parent_file)

    # -- controllers ----------------------------------------------------------------------

    def make_controllers(self, shard_ns: list[str], pair_ns: list[str], log_level: str) -> None:
        parent = self.plane.clusters["parent"]
        certs = self.directory / "webhook-certs"
        certs.mkdir(exist_ok=True)
        self.webhook_ca = pki.CertificateAuthority("soak-webhook-ca")
        serving = self.webhook_ca.issue("127.0.0.1", server=True)
        (certs / "tls.crt").write_bytes(serving.cert_pem)
        (certs / "tls.key").write_bytes(serving.key_pem)
        for group, names, count in (("shards", shard_ns, 3), ("pair", pair_ns, 2)):
            for i in range(count):
                metrics, health = free_port(), free_port()
                args = [
                    sys.executable,
                    "-m",
                    "moonlander",
                    f"--log-level={log_level}",
                    "run",
                    f"--kubeconfig={parent.kubeconfig}",
                    f"--parent-kubeconfig={self.parent_file}",
                    *(f"--namespace={ns}" for ns in names),
                    "--allow-loopback",
                    "--controller-namespace=moonlander-system",
                    "--max-backoff=8",
                    "--resync-interval=120",
                    f"--metrics-port={metrics}",
                    f"--health-port={health}",
                    "--bind-address=127.0.0.1",
                    f"--leader-election-namespace={LEASE_NS}",
                ]
                webhook = None
                if group == "shards":
                    args += ["--shards", f"--leader-election-id={SHARDS_ID}"]
                else:
                    webhook = free_port()
                    args += [
                        "--leader-elect",
                        f"--leader-election-id={PAIR_ID}",
                        f"--webhook-port={webhook}",
                        f"--webhook-cert-dir={certs}",
                        f"--webhook-client-ca={parent.webhook_client_ca}",
                        f"--webhook-client-name={WEBHOOK_CLIENT_NAME}",
                    ]
                name = f"{group}-{i}"
                log = self.directory / f"controller-{name}.log"
                self.controllers.append(
                    Controller(name, group, args, log, metrics, health, webhook)
                )

    def controller(self, name: str) -> Controller:
        return next(c for c in self.controllers if c.name == name)

    async def leader(self) -> Controller | None:
        """The pair's replica holding the Lease (holderIdentity is host_pid)."""
        try:
            lease = await self.local.get(Lease, PAIR_ID, namespace=LEASE_NS)
        except ApiError:
            return None
        holder = (lease.spec.holderIdentity or "") if lease.spec else ""
        for c in self.controllers:
            if c.group == "pair" and c.proc is not None and holder.endswith(f"_{c.proc.pid}"):
                return c
        return None

    def point_webhook(self) -> None:
        """The webhook proxy forwards to a pair replica that is alive."""
        if self.webhook is None:
            return
        for c in self.controllers:
            if c.webhook_port and c.proc is not None and c.proc.poll() is None:
                self.webhook.upstream_port = c.webhook_port
                return

    async def start_webhook_proxy(self) -> str:
        """The proxy the API server calls the webhook through; returns its URL base."""
        self.webhook = DroppingProxy(0)
        await self.webhook.start()
        self.point_webhook()
        return f"https://127.0.0.1:{self.webhook.port}"

    def webhook_ca_bundle(self) -> str:
        assert self.webhook_ca is not None
        return base64.b64encode(self.webhook_ca.cert_pem).decode()

    # -- faults on the plane -----------------------------------------------------------------

    def kill_process(self, name: str) -> None:
        proc = next(p for p in self.plane.processes if p.name == name)
        proc.popen.send_signal(signal.SIGKILL)
        proc.popen.wait()

    def respawn(self, name: str) -> None:
        proc = next(p for p in self.plane.processes if p.name == name)
        if proc.popen.poll() is not None:
            self.plane.respawn(proc)

    def wait_ready(self, cluster: str) -> None:
        wait_ready(self.plane, cluster, timeout=120)

    def expire_watches(self) -> None:
        compact_under_every_watch(self.plane)

    async def close(self, oplog: Oplog) -> None:
        for c in self.controllers:
            await asyncio.to_thread(c.stop, oplog)
        for proxy in (self.partition, self.webhook):
            if proxy is not None:
                await proxy.close()
        if self.throttle is not None:
            await self.throttle.close()
        for client in self.admin.values():
            with contextlib.suppress(Exception):
                await internals.close(client)
        await asyncio.to_thread(self.plane.stop)
