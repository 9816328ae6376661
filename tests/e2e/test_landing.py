"""The Landing controller on real clusters: the seed's patterns and every behaviour around them.

The controller runs as ``moonlander run`` in the "parent" cluster (see conftest.py); source
Secrets there hold kubeconfigs of child-a and child-b; Landings write into the children
(ParentToChild) or into the parent (ChildToParent).
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Event, Namespace, Secret

from moonlander import api
from moonlander.kube.resources import LandingResource
from moonlander_dev import clusters as devclusters

from .conftest import Env
from .harness import (
    PLANTED,
    FaultProxy,
    audit_events,
    decoded,
    eventually,
    kubeconfig_with_server,
    landing,
    landing_gone,
    measure,
    mint_token_kubeconfig,
    ready_condition,
    secret_with,
    wait_reason,
)

pytestmark = pytest.mark.e2e


async def get_secret(client: AsyncClient, namespace: str, name: str) -> Secret | None:
    try:
        return await client.get(Secret, name, namespace=namespace)
    except ApiError as err:
        if err.status.code == 404:
            return None
        raise


async def landed(client: AsyncClient, namespace: str, name: str) -> Secret:
    async def probe() -> Secret | None:
        return await get_secret(client, namespace, name)

    return await eventually(probe, what=f"Secret {namespace}/{name}")


def kubectl(kubeconfig_text: str, tmp: Path, *args: str) -> str:
    path = tmp / f"kc-{time.monotonic_ns()}"
    path.write_text(kubeconfig_text)
    out = subprocess.run(
        [str(devclusters.find_assets() / "kubectl"), "--kubeconfig", str(path), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout


async def namespaces_via(kubeconfig_text: str) -> set[str]:
    """Uses a landed kubeconfig from Python (lightkube) and lists namespaces."""
    client = AsyncClient(KubeConfig.from_dict(yaml.safe_load(kubeconfig_text)))
    try:
        return {ns.metadata.name async for ns in client.list(Namespace)}
    finally:
        await client._client.close()


async def test_pattern_a_verbatim_lands_parent_kubeconfig_in_child(
    env: Env, namespace: str, tmp_path: Path
) -> None:
    """Seed Pattern A: the parent's kubeconfig, written into child-a, reaches the parent."""
    local, child = env.local, env.admin["child-a"]
    # The CozyStack-shaped source Secret: kubernetes-<name>-admin-kubeconfig, key admin.conf.
    await local.create(
        secret_with(
            namespace,
            "kubernetes-harvey-admin-kubeconfig",
            {"admin.conf": env.kubeconfig_text("child-a")},
        )
    )
    target_ns = f"{namespace}-xp"  # does not exist in child-a yet: the controller creates it
    started = time.monotonic()
    await local.create(
        landing(
            namespace,
            "talos-root-access",
            kubeconfigSecretName="kubernetes-harvey-admin-kubeconfig",
            writeKubeconfigSecretName="talos-root-kubeconfig",
            targetNamespace=target_ns,
        )
    )
    cond = await wait_reason(local, namespace, "talos-root-access", "Synced")
    measure("create->Ready (Pattern A)", time.monotonic() - started)
    assert cond["status"] == "True"

    secret = await landed(child, target_ns, "talos-root-kubeconfig")
    assert secret.type == "Opaque"
    assert set(secret.data or {}) == {"kubeconfig", "value"}
    text = decoded(secret, "kubeconfig")
    assert decoded(secret, "value") == text
    doc = yaml.safe_load(text)  # raw YAML, not base64 twice
    assert doc["kind"] == "Config" and doc["current-context"]
    assert doc["clusters"][0]["cluster"]["server"] == env.plane["parent"].url
    assert secret.metadata.labels[api.MANAGED_BY_LABEL] == "moonlander"
    assert secret.metadata.annotations[api.OWNER_ANNOTATION] == f"{namespace}/talos-root-access"

    # The landed kubeconfig works: kubectl and a Python client reach the parent.
    assert namespace in kubectl(text, tmp_path, "get", "ns", "-o", "name")
    assert namespace in await namespaces_via(text)
    # ... and it is the parent, not the child: the child has no such Landing CRD.
    assert "landings.moons.kingdon.ci" in kubectl(text, tmp_path, "get", "crd", "-o", "name")

    obj = await local.get(LandingResource, "talos-root-access", namespace=namespace)
    status = obj.status
    assert status["target"] == f"{target_ns}/talos-root-kubeconfig"
    assert status["landed"]["sourceKey"] == "admin.conf"
    assert status["landed"]["cluster"] == env.plane["child-a"].url
    assert status["landed"]["contentHash"].startswith("sha256:")
    assert status["observedGeneration"] == 1
    assert api.FINALIZER in obj.metadata.finalizers
    assert "lastSyncTime" in status


async def test_pattern_b_verbatim_and_child_to_parent(
    env: Env, namespace: str, tmp_path: Path
) -> None:
    """Seed Pattern B as written (default direction), and as ChildToParent: the vcluster's
    kubeconfig landed where Moonlander runs, with the consumer's server rewritten."""
    local, child = env.local, env.admin["child-b"]
    await local.create(
        secret_with(namespace, "vcluster-moo-admin", {"config": env.kubeconfig_text("child-b")})
    )
    await local.create(
        landing(
            namespace,
            "vcluster-moo-access",
            kubeconfigSecretName="vcluster-moo-admin",
            writeKubeconfigSecretName="vcluster-moo-kubeconfig",
            targetNamespace=namespace,
        )
    )
    await wait_reason(local, namespace, "vcluster-moo-access", "Synced")
    pattern_b = await landed(child, namespace, "vcluster-moo-kubeconfig")
    assert (
        yaml.safe_load(decoded(pattern_b, "value"))["clusters"][0]["cluster"]["server"]
        == env.plane["parent"].url
    )

    # ChildToParent: moo's access lands in the local cluster's target namespace.
    server = env.plane["child-b"].url.replace("127.0.0.1", "localhost")
    await local.create(
        landing(
            namespace,
            "moo-to-harvey",
            kubeconfigSecretName="vcluster-moo-admin",
            writeKubeconfigSecretName="moo-kubeconfig",
            direction="ChildToParent",
            server=server,
        )
    )
    await wait_reason(local, namespace, "moo-to-harvey", "Synced")
    secret = await landed(local, namespace, "moo-kubeconfig")
    text = decoded(secret, "kubeconfig")
    assert yaml.safe_load(text)["clusters"][0]["cluster"]["server"] == server
    out = kubectl(text, tmp_path, "get", "ns", namespace, "-o", "name")
    assert out.strip() == f"namespace/{namespace}"
    # It is child-b's API server: the Landing CRD exists only in the parent.
    crds = kubectl(text, tmp_path, "get", "crd", "-o", "name")
    assert "landings.moons.kingdon.ci" not in crds
    obj = await local.get(LandingResource, "moo-to-harvey", namespace=namespace)
    assert obj.status["landed"]["sourceKey"] == "config"
    assert obj.status["landed"]["server"] == server


async def test_planet_b_waits_for_source_then_lands(env: Env, namespace: str) -> None:
    local = env.local
    await local.create(landing(namespace, "planet-b"))  # all defaults
    cond = await wait_reason(local, namespace, "planet-b", "SourceSecretNotFound")
    assert cond["status"] == "False"
    assert f"{namespace}/kubernetes-planet-b-admin-kubeconfig" in cond["message"]
    await asyncio.sleep(3)  # Planet B appears a few seconds later
    started = time.monotonic()
    await local.create(
        secret_with(
            namespace,
            "kubernetes-planet-b-admin-kubeconfig",
            {"super-admin.conf": env.kubeconfig_text("child-a")},
        )
    )
    await wait_reason(local, namespace, "planet-b", "Synced", timeout=15)
    measure("source appears->Ready (Planet B)", time.monotonic() - started)
    secret = await landed(env.admin["child-a"], namespace, api.DEFAULT_WRITE_NAME)
    assert "kubeconfig" in (secret.data or {})
    events = [e async for e in local.list(Event, namespace=namespace)]
    reasons = {e.reason for e in events if e.involvedObject.name == "planet-b"}
    assert {"SourceSecretNotFound", "Synced"} <= reasons


async def test_source_rotation_is_propagated(env: Env, namespace: str) -> None:
    """ChildToParent: a rotated child credential reaches the landed Secret within seconds."""
    local, child = env.local, env.admin["child-a"]
    await local.create(secret_with(namespace, "src", {"value": env.kubeconfig_text("child-a")}))
    await local.create(
        landing(namespace, "rot", kubeconfigSecretName="src", direction="ChildToParent")
    )
    await wait_reason(local, namespace, "rot", "Synced")
    first = decoded(await landed(local, namespace, api.DEFAULT_WRITE_NAME), "value")

    rotated = await mint_token_kubeconfig(
        child, env.plane["child-a"].url, env.plane["child-a"].ca_pem, namespace, "rotated"
    )
    PLANTED.append(yaml.safe_load(rotated)["users"][0]["user"]["token"])
    started = time.monotonic()
    await local.patch(
        Secret,
        "src",
        {"data": {"value": base64.b64encode(rotated.encode()).decode()}},
        namespace=namespace,
    )

    async def propagated() -> bool:
        secret = await get_secret(local, namespace, api.DEFAULT_WRITE_NAME)
        return secret is not None and decoded(secret, "value") != first

    await eventually(propagated, timeout=15, interval=0.05, what="rotated kubeconfig")
    measure("source rotation->propagated", time.monotonic() - started)
    text = decoded(await landed(local, namespace, api.DEFAULT_WRITE_NAME), "value")
    assert yaml.safe_load(text)["users"][0]["user"]["token"]
    assert namespace in await namespaces_via(text)
    # Landed at once, then its own input changed: the status says both (contentHash), and
    # no Event is written for either (a fleet's rotation would be one per Landing).
    await asyncio.sleep(0.5)
    assert await event_reasons(local, namespace, "rot") == set()


async def event_reasons(client: AsyncClient, namespace: str, name: str) -> set[str]:
    return {
        e.reason
        async for e in client.list(Event, namespace=namespace)
        if e.involvedObject.name == name
    }


async def test_parent_kubeconfig_swap_is_propagated(env: Env, namespace: str) -> None:
    """The mounted parent kubeconfig changes by symlink swap, as kubelet does it."""
    local = env.local
    await local.create(
        secret_with(
            namespace, "kubernetes-swap-admin-kubeconfig", {"value": env.kubeconfig_text("child-b")}
        )
    )
    await local.create(landing(namespace, "swap"))
    await wait_reason(local, namespace, "swap", "Synced")
    child = env.admin["child-b"]
    before = decoded(await landed(child, namespace, api.DEFAULT_WRITE_NAME), "value")

    minted = await mint_token_kubeconfig(
        local, env.plane["parent"].url, env.plane["parent"].ca_pem, namespace, "parent-robot"
    )
    PLANTED.append(yaml.safe_load(minted)["users"][0]["user"]["token"])
    original = env.parent_file.read_text()
    mount = env.parent_file.parent / f"mount-{namespace}"
    (mount / "..v1").mkdir(parents=True)
    (mount / "..v1" / "parent-kubeconfig").write_text(original)
    (mount / "..data").symlink_to("..v1")
    (mount / "parent-kubeconfig").symlink_to("..data/parent-kubeconfig")
    try:
        # Point the controller's file at the symlinked mount, then swap ..data atomically.
        os.replace(_symlink_temp(env.parent_file, mount / "parent-kubeconfig"), env.parent_file)
        await asyncio.sleep(1.5)
        (mount / "..v2").mkdir()
        (mount / "..v2" / "parent-kubeconfig").write_text(minted)
        started = time.monotonic()
        os.replace(_symlink_temp(mount / "..data", Path("..v2")), mount / "..data")

        async def propagated() -> bool:
            secret = await get_secret(child, namespace, api.DEFAULT_WRITE_NAME)
            return secret is not None and decoded(secret, "value") != before

        await eventually(propagated, timeout=15, interval=0.05, what="swapped parent kubeconfig")
        measure("parent kubeconfig swap->propagated", time.monotonic() - started)
        text = decoded(await landed(child, namespace, api.DEFAULT_WRITE_NAME), "value")
        assert yaml.safe_load(text)["users"][0]["user"]["token"]
    finally:
        env.parent_file.unlink()
        env.parent_file.write_text(original)

    async def restored() -> bool:
        secret = await get_secret(child, namespace, api.DEFAULT_WRITE_NAME)
        return secret is not None and decoded(secret, "value") == before

    # Later tests expect the original parent kubeconfig to be landed again.
    await eventually(restored, timeout=15, what="original parent kubeconfig landed again")


def _symlink_temp(path: Path, target: Path) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    return tmp


async def test_drift_deleted_and_edited_secret_is_repaired(env: Env, namespace: str) -> None:
    local, child = env.local, env.admin["child-a"]
    await local.create(
        secret_with(
            namespace,
            "kubernetes-drift-admin-kubeconfig",
            {"kubeconfig": env.kubeconfig_text("child-a")},
        )
    )
    await local.create(landing(namespace, "drift"))
    await wait_reason(local, namespace, "drift", "Synced")
    good = await landed(child, namespace, api.DEFAULT_WRITE_NAME)
    good_value = good.data["kubeconfig"]

    started = time.monotonic()
    await child.delete(Secret, api.DEFAULT_WRITE_NAME, namespace=namespace)
    restored = await landed(child, namespace, api.DEFAULT_WRITE_NAME)
    measure("landed Secret deleted->restored", time.monotonic() - started)
    assert restored.data["kubeconfig"] == good_value

    started = time.monotonic()
    await child.patch(
        Secret,
        api.DEFAULT_WRITE_NAME,
        {"data": {"kubeconfig": base64.b64encode(b"tampered").decode()}},
        namespace=namespace,
    )

    async def repaired() -> bool:
        secret = await get_secret(child, namespace, api.DEFAULT_WRITE_NAME)
        return secret is not None and secret.data["kubeconfig"] == good_value

    await eventually(repaired, timeout=15, interval=0.05, what="drift repair")
    measure("landed Secret edited->repaired", time.monotonic() - started)

    # The edit is reported (someone else changed what was landed); the deletion was
    # restored by a create, told by the status.
    async def reported() -> bool:
        return "Repaired" in await event_reasons(local, namespace, "drift")

    await eventually(reported, timeout=10, what="a Repaired Event")


async def test_nothing_written_when_nothing_changed(env: Env, namespace: str) -> None:
    local, child = env.local, env.admin["child-b"]
    await local.create(
        secret_with(
            namespace, "kubernetes-idle-admin-kubeconfig", {"value": env.kubeconfig_text("child-b")}
        )
    )
    await local.create(landing(namespace, "idle"))
    await wait_reason(local, namespace, "idle", "Synced")
    await asyncio.sleep(1)
    secret_rv = (await landed(child, namespace, api.DEFAULT_WRITE_NAME)).metadata.resourceVersion
    landing_rv = (
        await local.get(LandingResource, "idle", namespace=namespace)
    ).metadata.resourceVersion
    reconciles = env.controller.log().count(f"{namespace}/idle: Synced in")
    # Touch the source without changing the kubeconfig: the controller reconciles (watch)...
    await local.patch(
        Secret,
        "kubernetes-idle-admin-kubeconfig",
        {"metadata": {"labels": {"touched": "1"}}},
        namespace=namespace,
    )

    async def reconciled() -> bool:
        return env.controller.log().count(f"{namespace}/idle: Synced in") > reconciles

    await eventually(reconciled, timeout=10, what="a reconcile after the touch")
    await asyncio.sleep(1)
    # ... and writes nothing: neither the landed Secret nor the Landing's status.
    assert (
        await landed(child, namespace, api.DEFAULT_WRITE_NAME)
    ).metadata.resourceVersion == secret_rv
    assert (
        await local.get(LandingResource, "idle", namespace=namespace)
    ).metadata.resourceVersion == landing_rv


async def test_foreign_secret_is_left_untouched_unless_adopted(env: Env, namespace: str) -> None:
    local, child = env.local, env.admin["child-a"]
    await child.create(secret_with(namespace, "theirs", {"kubeconfig": "not ours"}))
    await local.create(
        secret_with(
            namespace,
            "kubernetes-foreign-admin-kubeconfig",
            {"value": env.kubeconfig_text("child-a")},
        )
    )
    await local.create(landing(namespace, "foreign", writeKubeconfigSecretName="theirs"))
    cond = await wait_reason(local, namespace, "foreign", "Conflict")
    assert "adoptExisting" in cond["message"]
    theirs = await landed(child, namespace, "theirs")
    assert decoded(theirs, "kubeconfig") == "not ours"
    assert not (theirs.metadata.labels or {})

    # Deleting the Landing never deletes the foreign Secret.
    await local.delete(LandingResource, "foreign", namespace=namespace)
    await eventually(lambda: landing_gone(local, namespace, "foreign"), what="Landing deleted")
    assert decoded(await landed(child, namespace, "theirs"), "kubeconfig") == "not ours"

    # With the explicit opt-in, the Secret is taken over.
    await local.create(
        landing(
            namespace,
            "adopter",
            writeKubeconfigSecretName="theirs",
            kubeconfigSecretName="kubernetes-foreign-admin-kubeconfig",
            adoptExisting=True,
        )
    )
    await wait_reason(local, namespace, "adopter", "Synced")
    adopted = await landed(child, namespace, "theirs")
    assert yaml.safe_load(decoded(adopted, "kubeconfig"))["kind"] == "Config"
    assert adopted.metadata.annotations[api.OWNER_ANNOTATION] == f"{namespace}/adopter"


async def test_deletion_with_delete_and_orphan(env: Env, namespace: str) -> None:
    local, child = env.local, env.admin["child-b"]
    await local.create(secret_with(namespace, "src", {"value": env.kubeconfig_text("child-b")}))
    await local.create(
        landing(namespace, "del", kubeconfigSecretName="src", writeKubeconfigSecretName="del")
    )
    await local.create(
        landing(
            namespace,
            "orph",
            kubeconfigSecretName="src",
            writeKubeconfigSecretName="orph",
            deletionPolicy="Orphan",
        )
    )
    await wait_reason(local, namespace, "del", "Synced")
    await wait_reason(local, namespace, "orph", "Synced")
    await landed(child, namespace, "del")
    await landed(child, namespace, "orph")

    await local.delete(LandingResource, "del", namespace=namespace)
    await local.delete(LandingResource, "orph", namespace=namespace)
    await eventually(lambda: landing_gone(local, namespace, "del"), what="del gone")
    await eventually(lambda: landing_gone(local, namespace, "orph"), what="orph gone")
    assert await get_secret(child, namespace, "del") is None
    assert await get_secret(child, namespace, "orph") is not None


async def test_unreachable_child_waits_and_does_not_slow_healthy_ones(
    env: Env, namespace: str
) -> None:
    local = env.local
    proxy = FaultProxy(env.plane["child-a"].port)
    await proxy.start()
    try:
        via_proxy = kubeconfig_with_server(
            env.kubeconfig_text("child-a"), f"https://127.0.0.1:{proxy.port}"
        )
        await local.create(
            secret_with(namespace, "kubernetes-dead-admin-kubeconfig", {"value": via_proxy})
        )
        await local.create(landing(namespace, "dead"))
        await wait_reason(local, namespace, "dead", "Synced")
        proxy.cut()  # blackhole: connections hang, nothing answers
        await local.patch(
            LandingResource,
            "dead",
            {"spec": {"writeKubeconfigSecretName": "moved"}},
            namespace=namespace,
            patch_type=_merge(),
        )
        cond = await wait_reason(local, namespace, "dead", "ClusterUnreachable", timeout=40)
        assert f"127.0.0.1:{proxy.port}" in cond["message"]

        # Meanwhile Landings on a healthy child converge as fast as ever.
        await local.create(
            secret_with(
                namespace,
                "kubernetes-alive-admin-kubeconfig",
                {"value": env.kubeconfig_text("child-b")},
            )
        )
        for i in range(5):
            started = time.monotonic()
            await local.create(
                landing(
                    namespace,
                    f"alive-{i}",
                    kubeconfigSecretName="kubernetes-alive-admin-kubeconfig",
                    writeKubeconfigSecretName=f"alive-{i}",
                )
            )
            await wait_reason(local, namespace, f"alive-{i}", "Synced", timeout=10)
            measure("create->Ready while another child is dead", time.monotonic() - started)

        # Deleting while unreachable: the Landing says so and keeps its finalizer ...
        await local.delete(LandingResource, "dead", namespace=namespace)
        cond = await wait_reason(local, namespace, "dead", "ClusterUnreachable", timeout=40)
        await eventually(
            lambda: _message_has(local, namespace, "dead", "Orphan"),
            timeout=40,
            what="deletion message",
        )
        assert not await landing_gone(local, namespace, "dead")
        # ... until switching to Orphan releases it.
        await local.patch(
            LandingResource,
            "dead",
            {"spec": {"deletionPolicy": "Orphan"}},
            namespace=namespace,
            patch_type=_merge(),
        )
        await eventually(
            lambda: landing_gone(local, namespace, "dead"),
            timeout=30,
            what="orphaned Landing released",
        )
    finally:
        await proxy.close()


async def test_cluster_coming_back_is_noticed_quickly(env: Env, namespace: str) -> None:
    """A Landing waiting on an unreachable cluster lands within seconds of it answering."""
    local = env.local
    proxy = FaultProxy(env.plane["child-b"].port)
    await proxy.start()
    proxy.cut()
    try:
        via_proxy = kubeconfig_with_server(
            env.kubeconfig_text("child-b"), f"https://127.0.0.1:{proxy.port}"
        )
        await local.create(
            secret_with(namespace, "kubernetes-late-admin-kubeconfig", {"value": via_proxy})
        )
        await local.create(landing(namespace, "late"))
        await wait_reason(local, namespace, "late", "ClusterUnreachable", timeout=40)
        await asyncio.sleep(8)
        started = time.monotonic()
        proxy.restore()
        await wait_reason(local, namespace, "late", "Synced", timeout=30)
        measure("cluster back->Ready", time.monotonic() - started)
    finally:
        await proxy.close()


async def _message_has(client: AsyncClient, namespace: str, name: str, text: str) -> bool:
    cond = await ready_condition(client, namespace, name)
    return cond is not None and text in cond["message"]


def _merge():  # type: ignore[no-untyped-def]
    from lightkube.types import PatchType

    return PatchType.MERGE


async def test_permanent_problems_wait_for_a_change(env: Env, namespace: str) -> None:
    local = env.local
    hostile = yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c", "cluster": {"server": env.plane["child-a"].url}}],
            "users": [
                {
                    "name": "u",
                    "user": {
                        "exec": {
                            "apiVersion": "client.authentication.k8s.io/v1",
                            "command": "/bin/sh",
                        }
                    },
                }
            ],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "c",
        }
    )
    await local.create(
        secret_with(namespace, "kubernetes-bad-admin-kubeconfig", {"value": hostile})
    )
    await local.create(landing(namespace, "bad"))
    cond = await wait_reason(local, namespace, "bad", "InvalidKubeconfig")
    assert "exec" in cond["message"]
    await local.create(
        secret_with(namespace, "kubernetes-nokey-admin-kubeconfig", {"something": "x"})
    )
    await local.create(landing(namespace, "nokey"))
    cond = await wait_reason(local, namespace, "nokey", "SourceKeyNotFound")
    assert "kubeconfigSecretKey" in cond["message"]
    rv = (await local.get(LandingResource, "bad", namespace=namespace)).metadata.resourceVersion
    log_lines = env.controller.log().count(f"{namespace}/bad: InvalidKubeconfig")
    await asyncio.sleep(4)
    # No hot loop: neither status writes nor repeated reconciles while nothing changes.
    assert (
        await local.get(LandingResource, "bad", namespace=namespace)
    ).metadata.resourceVersion == rv
    assert env.controller.log().count(f"{namespace}/bad: InvalidKubeconfig") <= log_lines + 1
    # Fixing the Secret is a change the watch delivers: it lands right away.
    await local.patch(
        Secret,
        "kubernetes-nokey-admin-kubeconfig",
        {"data": {"value": base64.b64encode(env.kubeconfig_text("child-a").encode()).decode()}},
        namespace=namespace,
    )
    await wait_reason(local, namespace, "nokey", "Synced", timeout=10)


async def test_suspend_stops_repair_until_resumed(env: Env, namespace: str) -> None:
    local, child = env.local, env.admin["child-a"]
    await local.create(
        secret_with(
            namespace, "kubernetes-sus-admin-kubeconfig", {"value": env.kubeconfig_text("child-a")}
        )
    )
    await local.create(landing(namespace, "sus"))
    await wait_reason(local, namespace, "sus", "Synced")
    await local.patch(
        LandingResource,
        "sus",
        {"spec": {"suspend": True}},
        namespace=namespace,
        patch_type=_merge(),
    )
    cond = await wait_reason(local, namespace, "sus", "Suspended")
    assert cond["status"] == "Unknown"
    await child.delete(Secret, api.DEFAULT_WRITE_NAME, namespace=namespace)
    await asyncio.sleep(2)
    assert await get_secret(child, namespace, api.DEFAULT_WRITE_NAME) is None
    await local.patch(
        LandingResource,
        "sus",
        {"spec": {"suspend": False}},
        namespace=namespace,
        patch_type=_merge(),
    )
    await wait_reason(local, namespace, "sus", "Synced")
    await landed(child, namespace, api.DEFAULT_WRITE_NAME)


async def test_renamed_target_moves_the_secret(env: Env, namespace: str) -> None:
    local, child = env.local, env.admin["child-b"]
    await local.create(
        secret_with(
            namespace, "kubernetes-mv-admin-kubeconfig", {"value": env.kubeconfig_text("child-b")}
        )
    )
    await local.create(landing(namespace, "mv", writeKubeconfigSecretName="first"))
    await wait_reason(local, namespace, "mv", "Synced")
    await landed(child, namespace, "first")
    await local.patch(
        LandingResource,
        "mv",
        {"spec": {"writeKubeconfigSecretName": "second"}},
        namespace=namespace,
        patch_type=_merge(),
    )
    await landed(child, namespace, "second")

    async def first_gone() -> bool:
        return await get_secret(child, namespace, "first") is None

    await eventually(first_gone, what="old Secret removed")
    obj = await local.get(LandingResource, "mv", namespace=namespace)
    assert obj.status["observedGeneration"] == 2


async def test_status_and_events_hold_no_secret_material(env: Env, namespace: str) -> None:
    local = env.local
    await local.create(
        secret_with(
            namespace,
            "kubernetes-quiet-admin-kubeconfig",
            {"value": env.kubeconfig_text("child-a")},
        )
    )
    await local.create(landing(namespace, "quiet"))
    await wait_reason(local, namespace, "quiet", "Synced")
    obj = await local.get(LandingResource, "quiet", namespace=namespace)
    events = [e async for e in local.list(Event, namespace=namespace)]
    text = yaml.safe_dump(obj.to_dict()) + "".join(f"{e.reason} {e.message}" for e in events)
    secrets = _secret_fragments(env)
    assert secrets and not [s for s in secrets if s in text]


def _secret_fragments(env: Env) -> list[str]:
    """Distinctive pieces of every credential the e2e clusters use."""
    out = []
    for name in ("parent", "child-a", "child-b"):
        doc = yaml.safe_load(env.kubeconfig_text(name))
        user = doc["users"][0]["user"]
        for field in ("client-key-data", "client-certificate-data"):
            data = user[field]
            out.append(data[40:80])
            out.append(base64.b64decode(data).decode().splitlines()[1][:40])
    return out


async def test_cross_namespace_requires_a_grant(env: Env, namespace: str) -> None:
    """A tenant Landing naming another tenant's Secret without a grant is refused, and the
    Secret is never read: the API server's audit log shows only metadata-only reads of it."""
    local = env.local
    other = f"{namespace}-other"
    await local.create(Namespace(metadata=ObjectMeta(name=other)))
    await local.create(secret_with(other, "shared", {"value": env.kubeconfig_text("child-a")}))
    await local.create(
        landing(namespace, "xns", kubeconfigSecretName="shared", kubeconfigSecretNamespace=other)
    )
    cond = await wait_reason(local, namespace, "xns", "CrossNamespaceNotAllowed")
    assert f"{other}/shared" in cond["message"]
    assert await get_secret(env.admin["child-a"], namespace, api.DEFAULT_WRITE_NAME) is None

    def reads_of_shared() -> list[str]:
        return [
            e["responseObject"]["kind"]
            for e in audit_events(env.plane.directory, "parent")
            if e.get("objectRef", {}).get("namespace") == other
            and e.get("objectRef", {}).get("name") == "shared"
            and "responseObject" in e
        ]

    await asyncio.sleep(1)  # the audit log is written asynchronously
    refused_reads = reads_of_shared()
    assert refused_reads, "the controller did not look at the Secret's metadata"
    assert set(refused_reads) == {"PartialObjectMetadata"}, refused_reads

    await local.patch(
        Secret,
        "shared",
        {"metadata": {"annotations": {api.ALLOWED_NAMESPACES_ANNOTATION: f"x, {namespace}"}}},
        namespace=other,
    )
    await wait_reason(local, namespace, "xns", "Synced", timeout=10)
    await asyncio.sleep(1)
    assert "Secret" in reads_of_shared()  # granted: now it is read in full
    # Removing the grant stops the landing and says why.
    await local.patch(
        Secret,
        "shared",
        {"metadata": {"annotations": {api.ALLOWED_NAMESPACES_ANNOTATION: "x"}}},
        namespace=other,
    )
    await wait_reason(local, namespace, "xns", "CrossNamespaceNotAllowed", timeout=10)


async def test_secret_watch_carries_metadata_only(env: Env) -> None:
    """The controller lists and watches Secrets as metadata: no Secret list response with data."""
    events = audit_events(env.plane.directory, "parent")
    lists = [e for e in events if e["verb"] in ("list", "watch")]
    assert lists, "no Secret list/watch by the controller was audited"
    kinds = {e["responseObject"]["kind"] for e in lists if "responseObject" in e}
    assert kinds <= {"PartialObjectMetadataList"}, kinds


async def test_landings_of_one_credential_ask_who_it_is_once(env: Env, namespace: str) -> None:
    """20 Landings of one credential created together: one SelfSubjectReview in the cluster
    the credential grants access to, not one per Landing (child-b's audit log counts them)."""
    import json

    child_b = env.plane["child-b"]
    sa_namespace = f"{namespace}-sa"
    await env.admin["child-b"].create(Namespace(metadata=ObjectMeta(name=sa_namespace)))
    text = await mint_token_kubeconfig(
        env.admin["child-b"], child_b.url, child_b.ca_pem, sa_namespace, "once", "view"
    )
    await env.local.create(secret_with(namespace, "one-credential", {"value": text}))
    await asyncio.gather(
        *(
            env.local.create(
                landing(
                    namespace,
                    f"c{i}",
                    kubeconfigSecretName="one-credential",
                    direction="ChildToParent",
                    writeKubeconfigSecretName=f"c{i}-out",
                )
            )
            for i in range(20)
        )
    )
    for i in range(20):
        await wait_reason(env.local, namespace, f"c{i}", "Synced", timeout=30)
    user = f"system:serviceaccount:{sa_namespace}:once"
    log = env.plane.directory / "child-b-audit.log"
    reviews = [
        e
        for e in map(json.loads, log.read_text().splitlines())
        if e.get("user", {}).get("username") == user
        and e.get("objectRef", {}).get("resource") == "selfsubjectreviews"
    ]
    assert len(reviews) == 1, len(reviews)
