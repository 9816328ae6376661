"""One tenant's cluster cannot slow, starve or crash the others (issue 12).

Hostile API servers on loopback (the controller runs with ``--allow-loopback``) answer the
controller's calls as no real API server would: an endless body, one byte at a time,
garbage, an error without Content-Type, a TLS handshake that never completes, 503 to
everything. Everything else is the real control plane and the real controller process.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import pytest
from lightkube import AsyncClient
from lightkube.resources.core_v1 import Namespace
from lightkube.types import PatchType

from moonlander.kube.resources import LandingResource

from ..support import hostile
from ..support.hostile import MARK, RssWatch
from .conftest import Env
from .harness import (
    PLANTED,
    FaultProxy,
    eventually,
    kubeconfig_with_server,
    landing,
    landing_gone,
    measure,
    ready_condition,
    secret_with,
    trusted_policy,
    wait_reason,
)

pytestmark = pytest.mark.e2e

RSS_LIMIT_MB = 300.0


class HostileServer(hostile.HostileServer):
    """The shared hostile server (tests/support/hostile.py), its token planted."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        PLANTED.append(self.token)  # never in a status, Event, log or metric (final scan)


def controller_pid(env: Env) -> int:
    assert env.controller.proc is not None
    return env.controller.proc.pid


async def hostile_landing(
    client: AsyncClient, namespace: str, name: str, server: HostileServer, **spec: Any
) -> None:
    await client.create(
        secret_with(
            namespace, f"kubernetes-{name}-admin-kubeconfig", {"value": server.kubeconfig()}
        )
    )
    await client.create(landing(namespace, name, **spec))


async def trusted_namespace(env: Env) -> str:
    """Another fresh namespace the operator trusts (the ``namespace`` fixture gives one)."""
    name = f"t-{secrets.token_hex(4)}"
    for client in env.admin.values():
        await client.create(Namespace(metadata={"name": name}))  # type: ignore[arg-type]
    await env.local.create(trusted_policy(name))
    return name


async def delete_all(client: AsyncClient, namespace: str, names: list[str]) -> float:
    """Deletes the Landings; seconds until every one is gone."""
    started = time.monotonic()
    for name in names:
        await client.delete(LandingResource, name, namespace=namespace)

    async def all_gone() -> bool:
        for name in names:
            if not await landing_gone(client, namespace, name):
                return False
        return True

    await eventually(all_gone, timeout=30, interval=0.2, what="hostile Landings deleted")
    return time.monotonic() - started


# What each hostile server's Landings must say, and what the message must name.
EXPECTED = {
    "endless": ("InvalidResponse", "ResponseTooLarge"),
    "slow": ("ClusterUnreachable", "in time"),
    "garbage": ("InvalidResponse", "RemoteProtocolError"),
    "no-content-type": ("InvalidResponse", "KeyError"),
    "tls-stall": ("ClusterUnreachable", "ConnectTimeout"),
    "503": ("TransientError", "503"),
}


async def test_each_hostile_server_gets_its_landings_a_status_and_memory_stays_bounded(
    env: Env, namespace: str
) -> None:
    local = env.local
    servers = {kind: HostileServer(kind) for kind in HostileServer.KINDS}
    for server in servers.values():
        await server.start()
    # ParentToChild: the hostile server is the cluster written to. ChildToParent: it is the
    # cluster the landed credential grants access to, asked who the credential is.
    cases = [(kind, "ParentToChild") for kind in servers] + [
        (kind, "ChildToParent") for kind in ("endless", "slow", "garbage", "no-content-type")
    ]
    names = [
        f"{kind.replace('-', '')}-{'p2c' if direction == 'ParentToChild' else 'c2p'}"
        for kind, direction in cases
    ]
    try:
        with RssWatch(controller_pid(env), RSS_LIMIT_MB, [servers["endless"]]) as rss:
            started = time.monotonic()
            for (kind, direction), name in zip(cases, names, strict=True):
                await hostile_landing(local, namespace, name, servers[kind], direction=direction)

            async def one(kind: str, name: str) -> None:
                reason, detail = EXPECTED[kind]
                cond = await wait_reason(local, namespace, name, reason, timeout=30)
                measure(f"hostile {kind} -> status", time.monotonic() - started)
                assert detail in cond["message"], cond
                assert MARK not in cond["message"], cond
                assert "tok-" not in cond["message"], cond

            await asyncio.gather(
                *(one(kind, name) for (kind, _), name in zip(cases, names, strict=True))
            )
            # The endless server goes on being asked (retries, probes); memory stays put.
            await asyncio.sleep(5)
        measure("controller RSS peak under hostile servers (MB)", rss.peak)
        assert rss.peak < RSS_LIMIT_MB, f"RSS grew from {rss.start:.0f} to {rss.peak:.0f} MB"
        assert servers["endless"].requests >= 1
        assert env.controller.proc is not None and env.controller.proc.poll() is None
        # A 503 flood is answered with backoff, not in a loop.
        assert servers["503"].requests < 40, servers["503"].requests
        await delete_all(local, namespace, names)
    finally:
        for server in servers.values():
            await server.close()


async def test_slow_clusters_do_not_starve_other_tenants_and_deletion_is_prompt(
    env: Env, namespace: str
) -> None:
    """20 servers answering one byte at a time (more than the 16 workers), each the target
    of a Landing in one namespace: a Landing of another namespace still lands at once."""
    local = env.local
    servers = [HostileServer("slow") for _ in range(20)]
    for server in servers:
        await server.start()
    names = [f"slow-{i}" for i in range(len(servers))]
    try:
        for name, server in zip(names, servers, strict=True):
            await hostile_landing(local, namespace, name, server)

        async def workers_busy() -> bool:  # the slow servers have been asked: workers are on them
            return sum(s.requests for s in servers) >= 16

        await eventually(workers_busy, timeout=10, what="the slow servers asked")
        other = await trusted_namespace(env)
        await local.create(
            secret_with(
                other, "kubernetes-fine-admin-kubeconfig", {"value": env.kubeconfig_text("child-a")}
            )
        )
        started = time.monotonic()
        await local.create(landing(other, "fine"))
        await wait_reason(local, other, "fine", "Synced", timeout=10)
        elapsed = time.monotonic() - started
        measure("create->Ready while 20 slow clusters attack", elapsed)
        assert elapsed < 5.0, elapsed

        # Slow clusters are marked and their Landings say so.
        for name in names:
            cond = await wait_reason(local, namespace, name, "ClusterUnreachable", timeout=30)
            assert "does not answer in time" in cond["message"], cond

        seconds = await delete_all(local, namespace, names)
        measure("delete 20 Landings of slow clusters", seconds)
        assert seconds < 30
    finally:
        for server in servers:
            await server.close()


async def test_deletion_never_waits_on_a_target_that_hangs(env: Env, namespace: str) -> None:
    """A target that accepts connections and never answers: an Orphan Landing is released at
    once even while a reconcile of it hangs on the target; a Delete Landing says why within
    a bounded time, and switching it to Orphan releases it at once."""
    local = env.local
    proxy = FaultProxy(env.plane["child-a"].port)
    await proxy.start()
    try:
        via_proxy = kubeconfig_with_server(
            env.kubeconfig_text("child-a"), f"https://127.0.0.1:{proxy.port}"
        )
        for name, policy in (("orph", "Orphan"), ("keep", "Delete")):
            await local.create(
                secret_with(namespace, f"kubernetes-{name}-admin-kubeconfig", {"value": via_proxy})
            )
            await local.create(
                landing(namespace, name, deletionPolicy=policy, writeKubeconfigSecretName=name)
            )
        for name in ("orph", "keep"):
            await wait_reason(local, namespace, name, "Synced")
        proxy.cut()

        # A reconcile of orph now hangs on the target (a spec change needs a write there) ...
        await local.patch(
            LandingResource,
            "orph",
            {"spec": {"writeKubeconfigSecretName": "elsewhere"}},
            namespace=namespace,
            patch_type=PatchType.MERGE,
        )
        await asyncio.sleep(1.0)
        # ... and deleting it does not wait for that reconcile.
        started = time.monotonic()
        await local.delete(LandingResource, "orph", namespace=namespace)
        await eventually(
            lambda: landing_gone(local, namespace, "orph"), timeout=10, what="orph released"
        )
        elapsed = time.monotonic() - started
        measure("Orphan Landing released while its target hangs", elapsed)
        assert elapsed < 3.0, elapsed

        started = time.monotonic()
        await local.delete(LandingResource, "keep", namespace=namespace)

        async def says_why() -> dict[str, Any] | None:
            cond = await ready_condition(local, namespace, "keep")
            assert cond is not None and "Orphan" in cond["message"], cond
            return cond

        cond = await eventually(says_why, timeout=30, what="keep says why")
        elapsed = time.monotonic() - started
        measure("Delete Landing on a hanging target says why", elapsed)
        assert cond["reason"] == "ClusterUnreachable", cond
        assert not await landing_gone(local, namespace, "keep")

        started = time.monotonic()
        await local.patch(
            LandingResource,
            "keep",
            {"spec": {"deletionPolicy": "Orphan"}},
            namespace=namespace,
            patch_type=PatchType.MERGE,
        )
        await eventually(
            lambda: landing_gone(local, namespace, "keep"), timeout=10, what="keep released"
        )
        elapsed = time.monotonic() - started
        measure("switch to Orphan -> released while the target hangs", elapsed)
        assert elapsed < 3.0, elapsed
    finally:
        await proxy.close()
