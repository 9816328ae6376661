"""Faults survived, end to end: each converges with nothing lost and no foreign object touched.

These tests never touch the session's control plane or controller: a private plane (one
etcd, a parent "home" and two children) and a private ``moonlander run`` serve the module,
so processes can be killed and restarted at will. Figures go to harness.measure and
docs/operations.md ("Faults survived").
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import shutil
import signal
import ssl
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass

import aiohttp
import httpx2 as httpx
import pytest
import yaml
from aiohttp import web
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace, Secret

from moonlander import api
from moonlander.kube.resources import LandingResource
from moonlander_dev import pki
from moonlander_dev.clusters import (
    Cluster,
    ClusterSpec,
    ControlPlane,
    Process,
    admin_kubeconfig,
)

from .harness import (
    ControllerProcess,
    FaultProxy,
    decoded,
    eventually,
    install_crd,
    kubeconfig_with_server,
    landing,
    landing_policy,
    measure,
    secret_with,
    server_tls_context,
    wait_reason,
)

pytestmark = pytest.mark.e2e

CLUSTERS = ("home", "kid-a", "kid-b")


@dataclass
class Faults:
    plane: ControlPlane
    clients: dict[str, AsyncClient]
    controller: ControllerProcess

    @property
    def home(self) -> AsyncClient:
        return self.clients["home"]

    def kubeconfig_text(self, cluster: str) -> str:
        return self.plane.clusters[cluster].kubeconfig.read_text()


@pytest.fixture(scope="module")
async def faults(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Faults]:
    directory = tmp_path_factory.mktemp("fault-plane")
    plane = ControlPlane(directory, [ClusterSpec(n) for n in CLUSTERS])
    await asyncio.to_thread(plane.start)
    clients = {
        name: AsyncClient(KubeConfig.from_file(c.kubeconfig), field_manager="tests")
        for name, c in plane.clusters.items()
    }
    controller = None
    try:
        home = clients["home"]
        await install_crd(home)
        await home.create(Namespace(metadata=ObjectMeta(name="moonlander-system")))
        workdir = directory / "controller"
        workdir.mkdir()
        parent_file = workdir / "parent-kubeconfig"
        shutil.copy(plane.clusters["home"].kubeconfig, parent_file)
        controller = ControllerProcess(workdir, plane.clusters["home"].kubeconfig, parent_file)
        controller.start()
        await asyncio.to_thread(controller.wait_started)
        yield Faults(plane, clients, controller)
    finally:
        if controller is not None:
            controller.stop()
        for client in clients.values():
            await client._client.close()
        await asyncio.to_thread(plane.stop)


@pytest.fixture
async def ns(faults: Faults) -> str:
    """A fresh namespace in every cluster, granted the parent credential in home."""
    proc = faults.controller.proc
    # A controller an earlier test left dead fails each test at once, saying why.
    assert proc is not None and proc.poll() is None, faults.controller.summary()
    name = f"f-{secrets.token_hex(4)}"
    for client in faults.clients.values():
        await client.create(Namespace(metadata=ObjectMeta(name=name)))
    await faults.home.create(
        # sourceNetworks: the operator vouches for these loopback clusters, so statuses
        # say why a call failed (a 429 is a TransientError, not only "unreachable").
        landing_policy(
            f"trusted-{name}",
            namespaces={"names": [name]},
            parentCredential=True,
            sourceNetworks=["127.0.0.0/8", "::1/128"],
        )
    )
    return name


# -- helpers ----------------------------------------------------------------------------------


async def foreign(client: AsyncClient, namespace: str, names: list[str]) -> dict[str, str]:
    """Plants Secrets without Moonlander's marks (some with names a Landing could want);
    returns their resourceVersions."""
    out = {}
    for name in names:
        obj = await client.create(secret_with(namespace, name, {"value": f"foreign {name}"}))
        out[name] = obj.metadata.resourceVersion
    return out


async def versions(client: AsyncClient, namespace: str, names: list[str]) -> dict[str, str]:
    return {
        n: (await client.get(Secret, n, namespace=namespace)).metadata.resourceVersion
        for n in names
    }


async def reasons(client: AsyncClient, namespace: str) -> dict[str, str]:
    out = {}
    async for obj in client.list(LandingResource, namespace=namespace):
        reason = ""
        for cond in (obj.status or {}).get("conditions", []) if obj.status else []:
            if cond["type"] == "Ready":
                reason = cond["reason"]
        out[obj.metadata.name] = reason
    return out


async def all_synced(client: AsyncClient, namespace: str, names: set[str]) -> bool:
    have = await reasons(client, namespace)
    assert {n for n in names if have.get(n) == "Synced"} == names, {
        n: have.get(n) for n in names if have.get(n) != "Synced"
    }
    return True


async def tolerant(probe: Awaitable[bool]) -> bool:
    """``probe``, with a dropped connection (a server restarting) counted as "not yet"."""
    try:
        return await probe
    except (OSError, httpx.TransportError) as err:
        raise AssertionError(repr(err)) from err


async def count_synced(client: AsyncClient, namespace: str) -> int:
    return sum(1 for r in (await reasons(client, namespace)).values() if r == "Synced")


async def create_landings(
    client: AsyncClient, namespace: str, source: str, names: list[str]
) -> None:
    async def create(name: str) -> None:
        obj = landing(
            namespace,
            name,
            kubeconfigSecretName=source,
            writeKubeconfigSecretName=name,
            targetNamespace=namespace,
        )
        # A restarted API server answers 503 for the CRD's resources for a moment after it
        # is ready; that is the server starting, not what these tests measure.
        deadline = time.monotonic() + 30
        while True:
            try:
                await client.create(obj)
                return
            except ApiError as err:
                if err.status.code != 503 or time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.2)

    await asyncio.gather(*(create(name) for name in names))


async def check_landed(
    faults: Faults, cluster: str, namespace: str, names: set[str], foreign_before: dict[str, str]
) -> None:
    """Exactly ``names`` are landed in ``cluster`` (no duplicates, no strays), each holding
    the parent's kubeconfig, and the foreign Secrets are untouched."""
    client = faults.clients[cluster]
    ours = {}
    async for s in client.list(Secret, namespace=namespace):
        if (s.metadata.labels or {}).get(api.MANAGED_BY_LABEL) == api.MANAGED_BY:
            ours[s.metadata.name] = s
    assert set(ours) == names, sorted(set(ours) ^ names)
    home_url = faults.plane.clusters["home"].url
    for name, secret in ours.items():
        assert secret.metadata.annotations[api.OWNER_ANNOTATION] == f"{namespace}/{name}"
        text = decoded(secret, "kubeconfig")
        assert decoded(secret, "value") == text
        assert yaml.safe_load(text)["clusters"][0]["cluster"]["server"] == home_url
    assert await versions(client, namespace, list(foreign_before)) == foreign_before


def restart_process(plane: ControlPlane, name: str) -> Process:
    """SIGKILLs the plane's process ``name`` and starts it again with the same command line
    (same port, certificates and data directory)."""
    proc = next(p for p in plane.processes if p.name == name)
    proc.popen.send_signal(signal.SIGKILL)
    proc.popen.wait()
    return plane.respawn(proc)


# -- faults -----------------------------------------------------------------------------------


async def test_controller_sigkilled_mid_burst(faults: Faults, ns: str) -> None:
    """A burst of 40 Landings: SIGKILL once 10 are Synced (the rest created while the
    controller is dead); restarted, all 40 land, exactly once."""
    home, kid = faults.home, faults.clients["kid-a"]
    names = [f"burst-{i}" for i in range(40)]
    before = await foreign(kid, ns, ["burst-foreign", "unmarked"])
    await home.create(secret_with(ns, "src-a", {"value": faults.kubeconfig_text("kid-a")}))
    await create_landings(home, ns, "src-a", names[:20])

    async def ten() -> bool:
        return await count_synced(home, ns) >= 10

    await eventually(ten, timeout=60, interval=0.05, what="10 Synced")
    proc = faults.controller.proc
    assert proc is not None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    await create_landings(home, ns, "src-a", names[20:])
    assert await count_synced(home, ns) < len(names)
    started = time.monotonic()
    faults.controller.start()
    await eventually(lambda: all_synced(home, ns, set(names)), timeout=90, what="all Synced")
    measure("fault: controller SIGKILL, restart->all 40 Synced", time.monotonic() - started)
    await check_landed(faults, "kid-a", ns, set(names), before)
    await asyncio.to_thread(faults.controller.wait_started)


async def test_child_partitioned_60s(faults: Faults, ns: str) -> None:
    """kid-a blackholed for 60 s: its Landings say ClusterUnreachable, kid-b's keep landing;
    after the restore everything converges."""
    home, kid_a = faults.home, faults.clients["kid-a"]
    proxy = FaultProxy(faults.plane.clusters["kid-a"].port)
    await proxy.start()
    try:
        before_a = await foreign(kid_a, ns, ["part-foreign", "cut-9"])
        before_b = await foreign(faults.clients["kid-b"], ns, ["part-foreign"])
        via_proxy = kubeconfig_with_server(
            faults.kubeconfig_text("kid-a"), f"https://127.0.0.1:{proxy.port}"
        )
        await home.create(secret_with(ns, "src-a", {"value": via_proxy}))
        await home.create(secret_with(ns, "src-b", {"value": faults.kubeconfig_text("kid-b")}))
        a_names = [f"cut-{i}" for i in range(5)]
        b_names = [f"ok-{i}" for i in range(5)]
        await create_landings(home, ns, "src-a", a_names)
        await create_landings(home, ns, "src-b", b_names)
        await eventually(
            lambda: all_synced(home, ns, {*a_names, *b_names}), timeout=60, what="all Synced"
        )

        proxy.cut()
        cut_at = time.monotonic()
        late_a = [f"cut-{i}" for i in range(5, 8)]
        await create_landings(home, ns, "src-a", late_a)
        for name in late_a:
            await wait_reason(home, ns, name, "ClusterUnreachable", timeout=40)
        measure("fault: partition, cut->ClusterUnreachable", time.monotonic() - cut_at)
        # Meanwhile kid-b's Landings stay Synced and new ones land.
        late_b = [f"ok-{i}" for i in range(5, 10)]
        for name in late_b:
            started = time.monotonic()
            await create_landings(home, ns, "src-b", [name])
            await wait_reason(home, ns, name, "Synced", timeout=15)
            measure(
                "fault: partition, create->Synced on the healthy child", time.monotonic() - started
            )
        have = await reasons(home, ns)
        assert all(have[n] == "Synced" for n in b_names), have

        await asyncio.sleep(max(0.0, 60 - (time.monotonic() - cut_at)))
        proxy.restore()
        restored = time.monotonic()
        every = {*a_names, *late_a, *b_names, *late_b}
        await eventually(lambda: all_synced(home, ns, every), timeout=60, what="all Synced")
        measure("fault: partition 60s, restore->all Synced", time.monotonic() - restored)
        await check_landed(faults, "kid-a", ns, {*a_names, *late_a}, before_a)
        await check_landed(faults, "kid-b", ns, {*b_names, *late_b}, before_b)
    finally:
        await proxy.close()


async def test_child_apiserver_restarted(faults: Faults, ns: str) -> None:
    """kid-b's kube-apiserver SIGKILLed mid-burst and started again on the same port: every
    Landing lands, and the drift watch on kid-b still repairs a deleted Secret."""
    home, kid = faults.home, faults.clients["kid-b"]
    before = await foreign(kid, ns, ["restart-foreign", "rb-3-copy"])
    await home.create(secret_with(ns, "src-b", {"value": faults.kubeconfig_text("kid-b")}))
    names = [f"rb-{i}" for i in range(20)]
    await create_landings(home, ns, "src-b", names[:10])

    async def some() -> bool:
        return await count_synced(home, ns) >= 3

    await eventually(some, timeout=60, interval=0.05, what="3 Synced")
    started = time.monotonic()
    await asyncio.to_thread(restart_process, faults.plane, "kid-b-apiserver")
    await create_landings(home, ns, "src-b", names[10:])

    await eventually(
        lambda: tolerant(all_synced(home, ns, set(names))), timeout=90, what="all Synced"
    )
    measure("fault: child apiserver restart->all 20 Synced", time.monotonic() - started)
    await check_landed(faults, "kid-b", ns, set(names), before)

    # The drift watch survived the restart: a deleted landed Secret comes back.
    await kid.delete(Secret, "rb-0", namespace=ns)
    repaired = time.monotonic()

    async def back() -> bool:
        return bool(await kid.get(Secret, "rb-0", namespace=ns))

    await eventually(back, timeout=30, what="rb-0 repaired")
    measure("fault: child apiserver restart, drift repair after", time.monotonic() - repaired)
    await check_landed(faults, "kid-b", ns, set(names), before)


async def test_etcd_restarted(faults: Faults, ns: str) -> None:
    """The one etcd under every cluster SIGKILLed and restarted mid-burst."""
    home = faults.home
    before = await foreign(faults.clients["kid-a"], ns, ["etcd-foreign"])
    await home.create(secret_with(ns, "src-a", {"value": faults.kubeconfig_text("kid-a")}))
    names = [f"e-{i}" for i in range(10)]
    await create_landings(home, ns, "src-a", names)
    started = time.monotonic()
    await asyncio.to_thread(restart_process, faults.plane, "etcd")

    await eventually(
        lambda: tolerant(all_synced(home, ns, set(names))),
        timeout=90,
        interval=0.5,
        what="all Synced",
    )
    measure("fault: etcd restart->all 10 Synced", time.monotonic() - started)
    await check_landed(faults, "kid-a", ns, set(names), before)


def wait_ready(plane: ControlPlane, cluster: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ssl.SSLError):
            if plane.clusters[cluster].get("/readyz", timeout=2)[0] == 200:
                return
        time.sleep(0.2)
    raise AssertionError(f"{cluster} not ready after {timeout}s")


def etcd_call(plane: ControlPlane, path: str, body: dict[str, object]) -> dict[str, object]:
    request = urllib.request.Request(  # noqa: S310 - our own etcd on loopback
        plane.etcd_url + path, data=json.dumps(body).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310
        return dict(json.loads(resp.read()))


def compact_under_every_watch(plane: ControlPlane) -> int:
    """Every API server SIGKILLed; etcd written once and compacted at its newest revision;
    the API servers started again. Every resourceVersion a client holds is now compacted,
    so every watch resumed from one is answered 410 Gone."""
    procs = [p for p in plane.processes if p.name.endswith("-apiserver")]
    for proc in procs:
        proc.popen.send_signal(signal.SIGKILL)
        proc.popen.wait()
    key = base64.b64encode(b"/fault/bump").decode()
    put = etcd_call(plane, "/v3/kv/put", {"key": key, "value": key})
    revision = int(put["header"]["revision"])  # type: ignore[index]
    etcd_call(plane, "/v3/kv/compaction", {"revision": revision, "physical": True})
    for proc in procs:
        plane.respawn(proc)
    for name in plane.clusters:
        wait_ready(plane, name)
    return revision


async def test_parent_apiserver_restarted_mid_burst(faults: Faults, ns: str) -> None:
    """home's kube-apiserver (where the Landings and the controller's watches live)
    SIGKILLed mid-burst and started again: nothing is lost."""
    home = faults.home
    before = await foreign(faults.clients["kid-a"], ns, ["parent-foreign"])
    await home.create(secret_with(ns, "src-a", {"value": faults.kubeconfig_text("kid-a")}))
    names = [f"p-{i}" for i in range(20)]
    await create_landings(home, ns, "src-a", names[:10])

    async def some() -> bool:
        return await count_synced(home, ns) >= 3

    await eventually(some, timeout=60, interval=0.05, what="3 Synced")
    started = time.monotonic()
    await asyncio.to_thread(restart_process, faults.plane, "home-apiserver")
    await asyncio.to_thread(wait_ready, faults.plane, "home")
    await create_landings(home, ns, "src-a", names[10:])
    await eventually(
        lambda: tolerant(all_synced(home, ns, set(names))), timeout=90, what="all Synced"
    )
    measure("fault: parent apiserver restart->all 20 Synced", time.monotonic() - started)
    await check_landed(faults, "kid-a", ns, set(names), before)


async def test_every_watch_expired_410(faults: Faults, ns: str) -> None:
    """etcd compacted past every resourceVersion the controller holds (Landings, Secrets,
    policies in home; drift watches in the children): each watch is answered 410 Gone, is
    listed again, and the controller keeps landing and repairing."""
    home, kid = faults.home, faults.clients["kid-a"]
    before = await foreign(kid, ns, ["gone-foreign"])
    await home.create(secret_with(ns, "src-a", {"value": faults.kubeconfig_text("kid-a")}))
    first = [f"g-{i}" for i in range(5)]
    await create_landings(home, ns, "src-a", first)
    await eventually(lambda: all_synced(home, ns, set(first)), timeout=60, what="first Synced")
    log_before = len(faults.controller.log())
    held = {}
    for cluster, client in faults.clients.items():
        secret = await client.create(secret_with(ns, "held-rv", {"value": "foreign"}))
        held[cluster] = secret.metadata.resourceVersion

    started = time.monotonic()
    await asyncio.to_thread(compact_under_every_watch, faults.plane)
    later = [f"g-{i}" for i in range(5, 10)]
    await create_landings(home, ns, "src-a", later)
    await kid.delete(Secret, "g-0", namespace=ns)  # the drift watch must see this
    every = {*first, *later}
    await eventually(lambda: tolerant(all_synced(home, ns, every)), timeout=90, what="all Synced")

    async def repaired() -> bool:
        return bool(await kid.get(Secret, "g-0", namespace=ns))

    await eventually(repaired, timeout=60, what="g-0 repaired")
    measure("fault: every watch 410 Gone->all Synced and repaired", time.monotonic() - started)
    await check_landed(faults, "kid-a", ns, every, before)
    # The fault was real: a watch from a resourceVersion held before it is 410 Gone in
    # every cluster, and the controller listed its Landings again on a 410.
    for cluster in CLUSTERS:
        status, body = await asyncio.to_thread(
            faults.plane.clusters[cluster].get,
            f"/api/v1/namespaces/{ns}/secrets?watch=1&resourceVersion={held[cluster]}"
            "&timeoutSeconds=1",
        )
        assert status == 410 or b'"code":410' in body, (cluster, status, body[:300])
    after = faults.controller.log()[log_before:]
    assert "Landing watch: resourceVersion expired (410); listing again" in after, after[-3000:]


class ThrottlingProxy:
    """An HTTPS reverse proxy in front of one child's API server that answers every request
    429 Too Many Requests with a long Retry-After while armed, and forwards (as that child's
    admin) otherwise: a real API server cannot be made to answer 429 on demand."""

    def __init__(self, cluster: Cluster, retry_after: int) -> None:
        self.cluster = cluster
        self.retry_after = retry_after
        self.ca = pki.CertificateAuthority("throttle-ca")
        # Armed with a window: every request is refused from then until ``window`` seconds
        # after the first refusal (the window starts when the controller first calls, however
        # long a loaded machine takes to get there).
        self.window: float | None = None
        self.refused: list[float] = []
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, "127.0.0.1", 0, ssl_context=server_tls_context(self.ca, "127.0.0.1")
        )
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server)
        self.port = server.sockets[0].getsockname()[1]
        self._session = aiohttp.ClientSession(auto_decompress=True)

    def kubeconfig(self) -> str:
        url = f"https://127.0.0.1:{self.port}"
        return admin_kubeconfig("throttled", url, self.ca.cert_pem, self.cluster.admin)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        now = time.monotonic()
        if self.window is not None and (not self.refused or now < self.refused[0] + self.window):
            self.refused.append(now)
            status = {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "message": "throttled by the fault test",
                "reason": "TooManyRequests",
                "details": {"retryAfterSeconds": self.retry_after},
                "code": 429,
            }
            return web.json_response(
                status, status=429, headers={"Retry-After": str(self.retry_after)}
            )
        assert self._session is not None
        skip = {"host", "content-length", "transfer-encoding", "connection", "accept-encoding"}
        headers = {k: v for k, v in request.headers.items() if k.lower() not in skip}
        body = await request.read()
        async with self._session.request(
            request.method,
            self.cluster.url + str(request.rel_url),
            headers=headers,
            data=body or None,
            ssl=self.cluster.ssl_context(),
        ) as upstream:
            response = web.StreamResponse(status=upstream.status)
            if "Content-Type" in upstream.headers:
                response.content_type = upstream.headers["Content-Type"].split(";")[0]
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()


async def test_429_with_long_retry_after_from_one_child(faults: Faults, ns: str) -> None:
    """kid-b answers 429 with Retry-After: 20 for 5 s: its Landings wait (at least the
    Retry-After) and then land; kid-a's Landings are not slowed meanwhile."""
    home = faults.home
    retry_after = 20
    proxy = ThrottlingProxy(faults.plane.clusters["kid-b"], retry_after)
    await proxy.start()
    try:
        before_a = await foreign(faults.clients["kid-a"], ns, ["throttle-foreign"])
        before_b = await foreign(faults.clients["kid-b"], ns, ["throttle-foreign"])
        await home.create(secret_with(ns, "src-a", {"value": faults.kubeconfig_text("kid-a")}))
        await home.create(secret_with(ns, "src-b", {"value": proxy.kubeconfig()}))
        armed = time.monotonic()
        proxy.window = 5.0
        b_names = [f"slow-{i}" for i in range(5)]
        a_names = [f"fast-{i}" for i in range(5)]
        await create_landings(home, ns, "src-b", b_names)
        await create_landings(home, ns, "src-a", a_names)
        await eventually(lambda: all_synced(home, ns, set(a_names)), timeout=15, what="kid-a")
        measure("fault: 429 from one child, other child create->Synced", time.monotonic() - armed)
        await wait_reason(home, ns, "slow-0", "TransientError", timeout=10)
        assert proxy.refused
        await eventually(
            lambda: all_synced(home, ns, set(b_names)), timeout=90, interval=0.5, what="kid-b"
        )
        elapsed = time.monotonic() - armed
        measure("fault: 429 Retry-After 20s (5s window), ->all Synced", elapsed)
        # Retry-After is honoured as a lower bound: nothing retried early into the window.
        assert elapsed >= retry_after - 1, elapsed
        await check_landed(faults, "kid-a", ns, set(a_names), before_a)
        await check_landed(faults, "kid-b", ns, set(b_names), before_b)
    finally:
        await proxy.close()
