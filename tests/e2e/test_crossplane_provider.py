"""The real Crossplane provider-kubernetes reads what Moonlander lands.

provider-kubernetes (built from ``hack/consumers/provider-kubernetes``, the version its go.mod
pins) runs as a local process against child-a: the "harvey" role, a Crossplane in a child
cluster managing the parent. For each ProviderConfig kind Moonlander writes (``Legacy``,
``Namespaced``, ``Cluster``) a ParentToChild Landing lands the parent's kubeconfig and the
ProviderConfig in child-a, and a provider ``Object`` that uses it creates a ConfigMap in
the parent. Then the credentials change under the provider, and finally go away.

The provider is built and started once for the module; if the build or the process fails,
every test here fails.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube import ApiError, AsyncClient
from lightkube.generic_resource import create_global_resource, create_namespaced_resource
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap, Namespace, Secret
from lightkube.resources.rbac_authorization_v1 import ClusterRoleBinding
from lightkube.types import PatchType

from moonlander import api
from moonlander.api import Provider, Scope
from moonlander.controller.companions import resource_for
from moonlander.controller.outputs import PROVIDER_CONFIG_KINDS
from moonlander.kube.resources import LandingResource
from moonlander_dev import clusters as devclusters
from moonlander_dev.consumers import consumer_dir
from moonlander_dev.crossplane import ProviderProcess

from . import consumers
from .conftest import Env
from .harness import (
    PLANTED,
    ROOT,
    decoded,
    eventually,
    landing,
    landing_gone,
    measure,
    mint_token_kubeconfig,
    secret_with,
    trusted_policy,
    wait_reason,
)
from .test_integrations import install_crds

# The first test may build provider-kubernetes (a few minutes on two cores, once per
# machine; `make setup` does it ahead of time).
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

MODULE_DIR = ROOT / "hack" / "consumers" / "provider-kubernetes"
POLL = 2.0  # the provider's --poll: how often it checks every Object against the parent
# Within this a poll has certainly run (jitter is 10% of POLL, a reconcile takes well
# under a second here; generous for a loaded two-core machine).
WITHIN_POLL = 5 * POLL + 10

LEGACY_OBJECT = create_global_resource("kubernetes.crossplane.io", "v1alpha2", "Object", "objects")
V2_OBJECT = create_namespaced_resource(
    "kubernetes.m.crossplane.io", "v1alpha1", "Object", "objects"
)


def runtime_module() -> consumers.Module:
    """provider-kubernetes as hack/consumers pins it: its CRDs match the binary we run."""
    path = "github.com/crossplane-contrib/provider-kubernetes"
    gomod = (MODULE_DIR / "go.mod").read_text()
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(path)}\s+(v\S+)", gomod, re.M)
    assert match, f"{MODULE_DIR / 'go.mod'} does not require {path}"
    return consumers.Module(path, match.group(1))


@dataclass(frozen=True)
class Managed:
    """One ProviderConfig kind: its Landing, what the Landing writes in child-a, and the
    provider Object using it to manage a ConfigMap in the parent."""

    scope: Scope
    namespace: str

    @property
    def landing(self) -> str:
        return f"xp-{self.scope.value.lower()}"

    @property
    def secret(self) -> str:
        return f"parent-kubeconfig-{self.scope.value.lower()}"

    @property
    def provider_config(self) -> str:
        return f"{self.namespace}-{self.scope.value.lower()}"

    @property
    def pc_resource(self) -> Any:
        return resource_for(PROVIDER_CONFIG_KINDS[(Provider.KUBERNETES, self.scope)])

    @property
    def pc_namespace(self) -> str | None:
        return self.namespace if self.scope is Scope.NAMESPACED else None

    @property
    def object_resource(self) -> Any:
        return LEGACY_OBJECT if self.scope is Scope.LEGACY else V2_OBJECT

    @property
    def object_name(self) -> str:
        return f"{self.namespace}-{self.scope.value.lower()}"

    @property
    def object_namespace(self) -> str | None:
        return None if self.scope is Scope.LEGACY else self.namespace

    @property
    def configmap(self) -> str:
        return f"made-by-provider-{self.scope.value.lower()}"

    def object(self, data: dict[str, str]) -> dict[str, Any]:
        manifest = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": self.configmap, "namespace": self.namespace},
            "data": data,
        }
        if self.scope is Scope.LEGACY:
            ref: dict[str, str] = {"name": self.provider_config}
            meta: dict[str, str] = {"name": self.object_name}
            api_version = "kubernetes.crossplane.io/v1alpha2"
        else:
            kind = "ProviderConfig" if self.scope is Scope.NAMESPACED else "ClusterProviderConfig"
            ref = {"kind": kind, "name": self.provider_config}
            meta = {"name": self.object_name, "namespace": self.namespace}
            api_version = "kubernetes.m.crossplane.io/v1alpha1"
        return {
            "apiVersion": api_version,
            "kind": "Object",
            "metadata": meta,
            "spec": {"forProvider": {"manifest": manifest}, "providerConfigRef": ref},
        }


@dataclass
class World:
    env: Env
    provider: ProviderProcess
    namespace: str
    source: str  # the source Secret in the parent: child-a's kubeconfig
    managed: dict[Scope, Managed]

    @property
    def child(self) -> AsyncClient:
        return self.env.admin["child-a"]

    @property
    def parent(self) -> AsyncClient:
        return self.env.local

    async def conditions(self, m: Managed) -> dict[str, dict[str, Any]]:
        self.provider.check_alive()
        obj = await self.child.get(m.object_resource, m.object_name, namespace=m.object_namespace)
        return {c["type"]: c for c in (obj.status or {}).get("conditions", [])}

    async def wait_condition(
        self, m: Managed, type_: str, status: str, *, contains: str = "", timeout: float = 60
    ) -> dict[str, Any]:
        async def probe() -> dict[str, Any]:
            cond = (await self.conditions(m)).get(type_)
            assert cond is not None and cond["status"] == status, cond
            assert contains in cond.get("message", ""), cond
            return cond

        return await eventually(
            probe, timeout=timeout, interval=0.2, what=f"{m.object_name} {type_}={status}"
        )

    async def configmap_in_parent(self, m: Managed) -> ConfigMap | None:
        self.provider.check_alive()
        try:
            return await self.parent.get(ConfigMap, m.configmap, namespace=self.namespace)
        except ApiError as err:
            if err.status.code == 404:
                return None
            raise

    async def desired_data(self, m: Managed) -> dict[str, str]:
        obj = await self.child.get(m.object_resource, m.object_name, namespace=m.object_namespace)
        data: dict[str, str] = obj.spec["forProvider"]["manifest"]["data"]
        return data

    async def tamper(self, m: Managed) -> None:
        """Changes the ConfigMap in the parent behind the provider's back (the field moves
        to another manager, so the provider sees its desired state no longer applied)."""
        await self.parent.patch(
            ConfigMap,
            m.configmap,
            {"data": {"round": "tampered"}},
            namespace=self.namespace,
            patch_type=PatchType.MERGE,
            field_manager="tamperer",
        )

    async def repairs_drift(self, m: Managed, what: str) -> None:
        """The provider still manages the parent on its own poll: the ConfigMap changed in
        the parent is put back within the poll interval, and the Object says Synced.

        (A deleted ConfigMap would not do: Crossplane waits 30 s after a create before it
        believes a missing external resource is really gone.)"""
        desired = await self.desired_data(m)
        await self.tamper(m)
        started = time.monotonic()

        async def repaired() -> bool:
            cm = await self.configmap_in_parent(m)
            return cm is not None and cm.data == desired

        await eventually(
            repaired, timeout=WITHIN_POLL, interval=0.1, what=f"{m.configmap} repaired"
        )
        measure(f"provider repairs drift ({what})", time.monotonic() - started)
        await self.wait_condition(m, "Synced", "True")

    async def landed_kubeconfig(self, m: Managed) -> dict[str, Any]:
        secret = await self.child.get(Secret, m.secret, namespace=self.namespace)
        doc: dict[str, Any] = yaml.safe_load(decoded(secret, "kubeconfig"))
        return doc


@contextlib.contextmanager
def parent_kubeconfig(env: Env, text: str) -> Iterator[None]:
    """The controller's mounted parent kubeconfig replaced (atomically), restored after."""
    original = env.parent_file.read_text()

    def put(content: str) -> None:
        tmp = env.parent_file.with_name(env.parent_file.name + ".xp")
        tmp.write_text(content)
        tmp.chmod(0o600)
        os.replace(tmp, env.parent_file)

    put(text)
    try:
        yield
    finally:
        put(original)


async def install_provider_crds(client: AsyncClient, module: consumers.Module) -> None:
    """Every CRD of the provider's package. The legacy Object declares a conversion webhook
    that Crossplane's package manager would point at the provider's Service; out of cluster
    there is none, and only v1alpha2 Objects are used: no conversion."""
    crds = consumers.crds(module, "package/crds")
    webhooks = {
        name for name, crd in crds.items() if crd["spec"].get("conversion", {}).get("strategy")
    }
    assert webhooks == {"objects.kubernetes.crossplane.io"}, webhooks
    crds["objects.kubernetes.crossplane.io"]["spec"]["conversion"] = {"strategy": "None"}
    wanted = {PROVIDER_CONFIG_KINDS[(Provider.KUBERNETES, s)].crd_name for s in Scope}
    assert wanted <= set(crds), f"{module}: no CRD {wanted - set(crds)}"
    await install_crds(client, list(crds.values()))


@pytest.fixture(scope="module")
async def world(env: Env, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    try:
        binary = (await asyncio.to_thread(consumer_dir, "provider-kubernetes")) / "provider"
    except devclusters.ControlPlaneError as err:
        pytest.fail(f"provider-kubernetes did not build: {err}", pytrace=False)
    child = env.admin["child-a"]
    await install_provider_crds(child, runtime_module())

    workdir = tmp_path_factory.mktemp("provider-kubernetes")
    kubeconfig = workdir / "child-a.kubeconfig"  # the provider runs in child-a, as its admin
    kubeconfig.write_text(env.kubeconfig_text("child-a"))
    kubeconfig.chmod(0o600)
    provider = ProviderProcess(binary, workdir, kubeconfig, poll=POLL)
    provider.start()
    try:
        await asyncio.to_thread(provider.wait_ready)

        namespace = f"t-{secrets.token_hex(4)}"
        for client in env.admin.values():
            await client.create(Namespace(metadata=ObjectMeta(name=namespace)))
        await env.local.create(trusted_policy(namespace))  # parentCredential: true
        source = "kubernetes-harvey-admin-kubeconfig"
        await env.local.create(
            secret_with(namespace, source, {"admin.conf": env.kubeconfig_text("child-a")})
        )
        managed = {scope: Managed(scope, namespace) for scope in Scope}
        for m in managed.values():
            await env.local.create(
                landing(
                    namespace,
                    m.landing,
                    kubeconfigSecretName=source,
                    writeKubeconfigSecretName=m.secret,
                    targetNamespace=namespace,
                    output={"crossplane": {"scope": m.scope.value, "name": m.provider_config}},
                )
            )
        world = World(env, provider, namespace, source, managed)
        await asyncio.gather(
            *(wait_reason(env.local, namespace, m.landing, "Synced") for m in managed.values())
        )
        for m in managed.values():
            await child.create(m.object_resource.from_dict(m.object({"round": "1"})))
        await asyncio.gather(*(world.wait_condition(m, "Ready", "True") for m in managed.values()))
        yield world
    finally:
        code = provider.stop()
        print(f"\nprovider-kubernetes exited with {code}; log: {provider.log_path}")


SCOPES = [pytest.param(s, id=s.value) for s in Scope]


@pytest.mark.parametrize("scope", SCOPES)
async def test_object_through_landed_provider_config_manages_the_parent(
    world: World, scope: Scope
) -> None:
    """The ProviderConfig Moonlander wrote is what the provider uses: the Object's ConfigMap
    is created in the parent (not in child-a, where the provider runs), it follows the
    Object's manifest, and the Object reports Ready and Synced."""
    m = world.managed[scope]
    pc = await world.child.get(m.pc_resource, m.provider_config, namespace=m.pc_namespace)
    assert pc.metadata.annotations[api.OWNER_ANNOTATION] == f"{world.namespace}/{m.landing}"
    assert pc.spec["credentials"] == {
        "source": "Secret",
        "secretRef": {"namespace": world.namespace, "name": m.secret, "key": "kubeconfig"},
    }
    landed = (await world.parent.get(LandingResource, m.landing, namespace=world.namespace)).status
    (written,) = landed["landed"]["providerConfigs"]
    assert written.endswith(f"/{m.provider_config}" if m.pc_namespace else f" {m.provider_config}")
    assert (await world.landed_kubeconfig(m))["clusters"][0]["cluster"][
        "server"
    ] == world.env.plane["parent"].url

    cm = await world.configmap_in_parent(m)
    assert cm is not None and cm.data == {"round": "1"}
    with pytest.raises(ApiError) as not_in_child:
        await world.child.get(ConfigMap, m.configmap, namespace=world.namespace)
    assert not_in_child.value.status.code == 404
    conditions = await world.conditions(m)
    assert conditions["Ready"]["status"] == "True", conditions
    assert conditions["Synced"]["status"] == "True", conditions

    obj = m.object({"round": "2", "scope": scope.value})
    await world.child.patch(
        m.object_resource,
        m.object_name,
        {"spec": {"forProvider": obj["spec"]["forProvider"]}},
        namespace=m.object_namespace,
        patch_type=PatchType.MERGE,
    )

    async def updated() -> bool:
        cm = await world.configmap_in_parent(m)
        return cm is not None and cm.data == {"round": "2", "scope": scope.value}

    await eventually(updated, timeout=WITHIN_POLL, what=f"{m.configmap} updated in the parent")
    await world.repairs_drift(m, "landed")


def audited_secret_users(plane_dir: Path, cluster: str, namespace: str) -> set[str]:
    """Who touched Secrets in ``namespace``, as the cluster's audit log recorded it (the
    policy audits ServiceAccounts of namespace moonlander-system, see dev.clusters)."""
    users = set()
    for line in (plane_dir / f"{cluster}-audit.log").read_text().splitlines():
        event = json.loads(line)
        ref = event.get("objectRef") or {}
        if ref.get("resource") == "secrets" and ref.get("namespace") == namespace:
            users.add(event.get("user", {}).get("username", ""))
    return users


async def test_source_rotation_does_not_disturb_the_provider(world: World) -> None:
    """The source Secret (Moonlander's access to child-a) rotates to another identity, a
    ServiceAccount token: Moonlander reaches child-a's Secrets as that identity now (child-a's
    audit log says so), what the provider reads is left exactly as it was, and the provider
    keeps managing the parent on its poll."""
    env, ns = world.env, world.namespace
    child_a = env.plane["child-a"]
    with contextlib.suppress(ApiError):  # audited namespace (dev.clusters.AUDIT_POLICY)
        await world.child.create(Namespace(metadata=ObjectMeta(name="moonlander-system")))
    identity = f"xp-source-{ns}"
    rotated = await mint_token_kubeconfig(
        world.child, child_a.url, child_a.ca_pem, "moonlander-system", identity
    )
    PLANTED.append(yaml.safe_load(rotated)["users"][0]["user"]["token"])
    before = {
        s: await world.child.get(Secret, m.secret, namespace=ns) for s, m in world.managed.items()
    }
    await world.parent.patch(
        Secret,
        world.source,
        {"data": {"admin.conf": base64.b64encode(rotated.encode()).decode()}},
        namespace=ns,
    )
    user = f"system:serviceaccount:moonlander-system:{identity}"

    async def rotated_identity_in_use() -> bool:
        return user in audited_secret_users(env.plane.directory, "child-a", ns)

    await eventually(rotated_identity_in_use, timeout=30, what=f"{user} writing to child-a")
    for scope, m in world.managed.items():
        await wait_reason(world.parent, ns, m.landing, "Synced")
        # Nothing the provider reads was rewritten: the landed content does not depend
        # on how Moonlander reaches child-a.
        after = (await world.child.get(Secret, m.secret, namespace=ns)).metadata
        was = before[scope].metadata
        assert after is not None and was is not None
        assert (after.uid, after.resourceVersion) == (was.uid, was.resourceVersion)
        await world.repairs_drift(m, "source rotated")


async def test_parent_kubeconfig_change_reaches_the_provider(world: World) -> None:
    """The parent kubeconfig mounted into Moonlander changes to another identity (a token
    of ServiceAccount xp-robot in the parent): Moonlander lands it, and the provider uses it
    on its next poll. That it really does is shown by taking the robot's rights away: the
    provider then reports the parent refusing the robot by name. Back to the original
    kubeconfig, the provider recovers."""
    env, ns = world.env, world.namespace
    parent = env.plane["parent"]
    robot = await mint_token_kubeconfig(world.parent, parent.url, parent.ca_pem, ns, "xp-robot")
    token = yaml.safe_load(robot)["users"][0]["user"]["token"]
    PLANTED.append(token)
    managed = list(world.managed.values())

    async def landed_user(m: Managed) -> dict[str, Any]:
        user: dict[str, Any] = (await world.landed_kubeconfig(m))["users"][0]["user"]
        return user

    with parent_kubeconfig(env, robot):

        async def robot_landed() -> bool:
            return all([(await landed_user(m)).get("token") == token for m in managed])

        await eventually(robot_landed, timeout=30, what="the robot's token landed in child-a")
        for m in managed:
            await world.repairs_drift(m, "parent swapped")

        await world.parent.delete(ClusterRoleBinding, f"{ns}-xp-robot-cluster-admin")
        started = time.monotonic()
        refused = f'User "system:serviceaccount:{ns}:xp-robot"'
        for m in managed:
            cond = await world.wait_condition(
                m, "Synced", "False", contains=refused, timeout=WITHIN_POLL
            )
            assert "forbidden" in cond["message"], cond
        measure("provider reports revoked rights", time.monotonic() - started)

    async def admin_landed() -> bool:
        return all(["client-certificate-data" in await landed_user(m) for m in managed])

    await eventually(admin_landed, timeout=30, what="the original parent kubeconfig landed")
    # The provider retries a failed Object with backoff (up to a minute), not on the poll.
    for m in managed:
        await world.wait_condition(m, "Synced", "True", timeout=90)
        await world.repairs_drift(m, "parent restored")


@pytest.mark.parametrize("scope", SCOPES)
async def test_deleted_landing_leaves_the_provider_without_credentials(
    world: World, scope: Scope
) -> None:
    """The Landing is deleted (deletionPolicy Delete): its Secret and ProviderConfig go, and
    the provider says it has no credentials instead of using what it read before; the
    ConfigMap it managed in the parent is no longer repaired."""
    m, ns = world.managed[scope], world.namespace
    await world.parent.delete(LandingResource, m.landing, namespace=ns)
    await eventually(lambda: landing_gone(world.parent, ns, m.landing), what="Landing gone")
    with pytest.raises(ApiError) as gone:
        await world.child.get(Secret, m.secret, namespace=ns)
    assert gone.value.status.code == 404
    try:
        pc = await world.child.get(m.pc_resource, m.provider_config, namespace=m.pc_namespace)
        # Crossplane holds a ProviderConfig in use (finalizer in-use.crossplane.io) until
        # its Objects are gone; it is being deleted all the same.
        deleted = pc.metadata.deletionTimestamp is not None
    except ApiError as err:
        if err.status.code != 404:
            raise
        deleted = True
    assert deleted, f"{m.provider_config} not deleted with the Landing"

    cond = await world.wait_condition(m, "Synced", "False", timeout=WITHIN_POLL)
    message = cond["message"]
    assert "cannot get credentials" in message and m.secret in message, cond

    await world.tamper(m)
    await asyncio.sleep(2 * POLL + 1)
    cm = await world.configmap_in_parent(m)
    assert cm is not None and (cm.data or {}).get("round") == "tampered", cm
    cond = (await world.conditions(m))["Synced"]
    assert cond["status"] == "False" and m.secret in cond["message"], cond
