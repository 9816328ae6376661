"""Running it for months: metrics, probes, leader election, graceful shutdown, admission.

Controllers other than the session's run against child-a as their "own" cluster (with the
Landing CRD installed there), so they never compete with the session controller.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import signal
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube import ApiError, AsyncClient
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.models.rbac_v1 import PolicyRule, RoleRef
from lightkube.models.rbac_v1 import Subject as RbacSubject
from lightkube.resources.admissionregistration_v1 import ValidatingWebhookConfiguration
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Event, Namespace
from lightkube.resources.rbac_authorization_v1 import Role, RoleBinding
from lightkube.types import PatchType

from moonlander import api
from moonlander.kube.resources import LandingResource
from moonlander_dev import clusters as devclusters
from moonlander_dev import pki

from .conftest import Env
from .harness import (
    ControllerProcess,
    eventually,
    install_crd,
    landing,
    measure,
    secret_with,
    wait_reason,
)

pytestmark = pytest.mark.e2e


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of the sample ``name{labels}`` in Prometheus text format (label order free)."""
    for line in text.splitlines():
        found = re.fullmatch(
            r"(?P<name>[a-zA-Z_:][\w:]*)(\{(?P<labels>.*)\})? (?P<value>\S+)", line
        )
        if not found or found.group("name") != name:
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', found.group("labels") or ""))
        if have == labels:
            return float(found.group("value"))
    return None


async def test_metrics_and_probes_of_the_running_controller(env: Env, namespace: str) -> None:
    local = env.local
    await local.create(
        secret_with(
            namespace, "kubernetes-m-admin-kubeconfig", {"value": env.kubeconfig_text("child-b")}
        )
    )
    await local.create(landing(namespace, "m"))
    await wait_reason(local, namespace, "m", "Synced")
    assert env.controller.http_get("/healthz") == (200, "ok\n")
    assert env.controller.http_get("/readyz") == (200, "ok\n")
    status, text = env.controller.http_get("/metrics")
    assert status == 200
    synced = metric(text, "moonlander_reconciles_total", result="Synced")
    assert synced is not None and synced >= 1
    assert (metric(text, "moonlander_landings", reason="Synced") or 0) >= 1
    assert (metric(text, "moonlander_reconcile_duration_seconds_count") or 0) >= synced
    assert (metric(text, "moonlander_clusters", state="reachable") or 0) >= 1
    assert env.plane["child-b"].url not in text  # no label lists a server a tenant named
    assert (metric(text, "moonlander_writes_total", kind="Secret", action="created") or 0) >= 1
    assert metric(text, "moonlander_leader") == 1.0
    rss = metric(text, "process_resident_memory_bytes")
    assert rss is not None and rss > 10_000_000


async def _crd_in(client: AsyncClient) -> None:
    await install_crd(client)


def writes(text: str) -> dict[tuple[str, str], float]:
    """moonlander_writes_total by (kind, action)."""
    found = re.findall(
        r'^moonlander_writes_total\{action="(\w+)",kind="(\w+)"\} (\S+)$', text, re.MULTILINE
    )
    return {(kind, action): float(value) for action, kind, value in found}


async def quiet_writes(env: Env) -> dict[tuple[str, str], float]:
    """The controller's write counters once they have not moved for a second."""
    last = writes(env.controller.http_get("/metrics")[1])
    while True:
        await asyncio.sleep(1.0)
        now = writes(env.controller.http_get("/metrics")[1])
        if now == last:
            return now
        last = now


async def test_a_new_landing_costs_four_writes(env: Env, namespace: str) -> None:
    """Its create, the hold on its source Secret (a ParentToChild Landing revokes through
    it), the landed Secret and its status: the finalizer comes with the create
    (config/admission), the hold's echo wakes nothing, and a first landing is told by the
    status, not an Event. Should the finalizer go missing, the controller puts it back
    itself."""
    local = env.local
    await local.create(
        secret_with(
            namespace, "kubernetes-w-admin-kubeconfig", {"value": env.kubeconfig_text("child-b")}
        )
    )
    before = await quiet_writes(env)
    created = await local.create(landing(namespace, "w"))
    assert created.metadata.finalizers == [api.FINALIZER]  # from the API server, at create
    await wait_reason(local, namespace, "w", "Synced")
    after = await quiet_writes(env)
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after.keys() | before.keys()}
    assert {k: v for k, v in delta.items() if v} == {
        ("Secret", "held"): 1,
        ("Secret", "created"): 1,
        ("Landing", "status"): 1,
    }
    events = [
        e async for e in local.list(Event, namespace=namespace) if e.involvedObject.name == "w"
    ]
    assert events == []

    # Someone strips the finalizer: the controller adds it back (the path it takes where
    # config/admission is not installed), with one write of its own.
    await local.patch(
        LandingResource,
        "w",
        {"metadata": {"finalizers": None}},
        namespace=namespace,
        patch_type=PatchType.MERGE,
    )

    async def finalizer_back() -> bool:
        obj = await local.get(LandingResource, "w", namespace=namespace)
        return api.FINALIZER in (obj.metadata.finalizers or [])

    await eventually(finalizer_back, timeout=15, what="the finalizer put back")
    again = await quiet_writes(env)
    assert again.get(("Landing", "finalizer"), 0) - after.get(("Landing", "finalizer"), 0) == 1


async def test_readiness_waits_for_the_landing_watch(env: Env, tmp_path: Path) -> None:
    """/readyz says not ready while Landings cannot be watched (no CRD yet), then ready."""
    child = env.admin["child-a"]
    controller = ControllerProcess(
        tmp_path, env.plane["child-a"].kubeconfig, env.parent_file, "--namespace=readiness"
    )
    controller.start()
    try:
        controller.wait_started(ready=False)

        async def answered() -> tuple[int, str] | None:
            try:
                return controller.http_get("/readyz")
            except OSError:
                return None

        status, text = await eventually(answered, what="readyz answers")
        try:
            await child.get(CustomResourceDefinition, "landings.moons.kingdon.ci")
            crd_exists = True
        except ApiError:
            crd_exists = False
        if not crd_exists:
            assert status == 503 and "landing watch" in text, (status, text)
            assert controller.http_get("/healthz")[0] == 200  # alive, just not ready
        await _crd_in(child)

        async def ready() -> bool:
            return controller.http_get("/readyz")[0] == 200

        await eventually(ready, timeout=30, what="ready after the CRD appears")
    finally:
        assert controller.stop() == 0, controller.log_tail()


async def test_leader_election_hands_over(env: Env, tmp_path: Path) -> None:
    """Two replicas: only the Lease holder reconciles; when it dies the other takes over
    and converges; a replica stopped with SIGTERM releases the Lease."""
    child, local_name = env.admin["child-a"], "child-a"
    await _crd_in(child)
    ns = f"le-{int(time.time() * 1000) % 10**9}"
    await child.create(Namespace(metadata=ObjectMeta(name=ns)))
    await child.create(secret_with(ns, "src", {"value": env.kubeconfig_text("child-b")}))
    ca = pki.CertificateAuthority("webhook-ca")
    certs = tmp_path / "certs"
    certs.mkdir()
    serving = ca.issue("127.0.0.1", server=True)
    (certs / "tls.crt").write_bytes(serving.cert_pem)
    (certs / "tls.key").write_bytes(serving.key_pem)
    replicas = []
    webhook_ports = {}
    for i in range(2):
        workdir = tmp_path / f"r{i}"
        workdir.mkdir()
        port = devclusters.free_port()
        replica = ControllerProcess(
            workdir,
            env.plane[local_name].kubeconfig,
            env.parent_file,
            f"--namespace={ns}",
            "--leader-elect",
            f"--leader-election-namespace={ns}",
            f"--webhook-port={port}",
            f"--webhook-cert-dir={certs}",
            f"--webhook-client-ca={env.plane[local_name].webhook_client_ca}",
        )
        webhook_ports[id(replica)] = port
        replica.start()
        replicas.append(replica)
    try:

        async def one_leader() -> ControllerProcess | None:
            # Both replicas up and answering; exactly one of them holds the Lease.
            values = [metric(_scrape(r), "moonlander_leader") for r in replicas]
            if sorted(v for v in values if v is not None) != [0.0, 1.0]:
                return None
            return replicas[values.index(1.0)]

        leader = await eventually(one_leader, timeout=60, what="a single leader")
        standby = next(r for r in replicas if r is not leader)
        assert standby.http_get("/readyz")[0] == 200  # standby is healthy and ready
        # The standby serves the admission webhook too: the webhook Service routes to it.
        review = await asyncio.to_thread(
            _admission_review,
            webhook_ports[id(standby)],
            ca.cert_pem,
            ns,
            env.plane[local_name].webhook_client,
        )
        assert review["response"]["allowed"] is False
        assert "169.254.169.254" in review["response"]["status"]["message"]
        await child.create(
            landing(
                ns,
                "first",
                kubeconfigSecretName="src",
                direction="ChildToParent",
                writeKubeconfigSecretName="first",
            )
        )
        await wait_reason(child, ns, "first", "Synced")
        assert "first" not in standby.log()

        assert leader.proc is not None
        leader.proc.send_signal(signal.SIGKILL)
        leader.proc.wait()
        killed = time.monotonic()
        await child.create(
            landing(
                ns,
                "second",
                kubeconfigSecretName="src",
                direction="ChildToParent",
                writeKubeconfigSecretName="second",
            )
        )
        await wait_reason(child, ns, "second", "Synced", timeout=60)
        takeover = time.monotonic() - killed
        assert "acquired leader Lease" in standby.log()
        lease = await child.get(Lease, "moonlander-leader", namespace=ns)
        assert lease.spec.leaseTransitions >= 1
        measure("leader SIGKILLed -> standby converged a new Landing", takeover)

        # Graceful: SIGTERM releases the Lease and exits 0.
        assert standby.stop() == 0
        assert "released leader Lease" in standby.log()
        lease = await child.get(Lease, "moonlander-leader", namespace=ns)
        assert not lease.spec.holderIdentity
    finally:
        for replica in replicas:
            replica.stop()


def _admission_review(
    port: int, ca_pem: bytes, namespace: str, client: tuple[Path, Path]
) -> dict[str, Any]:
    """POSTs an AdmissionReview for a Landing with a metadata-address server, as the API
    server would (with its client certificate)."""
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "00000000-0000-0000-0000-000000000001",
            "kind": {"group": "moons.kingdon.ci", "version": "v1alpha1", "kind": "Landing"},
            "resource": {
                "group": "moons.kingdon.ci",
                "version": "v1alpha1",
                "resource": "landings",
            },
            "requestKind": {"group": "moons.kingdon.ci", "version": "v1alpha1", "kind": "Landing"},
            "requestResource": {
                "group": "moons.kingdon.ci",
                "version": "v1alpha1",
                "resource": "landings",
            },
            "name": "probe",
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "tests"},
            "object": {
                "apiVersion": "moons.kingdon.ci/v1alpha1",
                "kind": "Landing",
                "metadata": {"name": "probe", "namespace": namespace},
                "spec": {"server": "https://169.254.169.254"},
            },
            "oldObject": None,
            "dryRun": False,
            "options": None,
        },
    }
    ctx = ssl.create_default_context(cadata=ca_pem.decode())
    ctx.load_cert_chain(*client)
    request = urllib.request.Request(
        f"https://127.0.0.1:{port}/validate",
        data=json.dumps(review).encode(),
        headers={"Content-Type": "application/json"},
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(request, context=ctx, timeout=5) as resp:  # noqa: S310
                return dict(json.loads(resp.read()))
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def _scrape(replica: ControllerProcess) -> str:
    try:
        return replica.http_get("/metrics")[1]
    except OSError:
        return ""


async def test_cel_rules_reject_bad_landings(env: Env, namespace: str) -> None:
    from lightkube import ApiError
    from lightkube.types import PatchType

    from moonlander.kube.resources import LandingResource

    local = env.local
    with pytest.raises(ApiError) as err:
        await local.create(landing(namespace, "plain", server="http://example.com"))
    assert err.value.status.code == 422 and "https" in (err.value.status.message or "")
    with pytest.raises(ApiError) as err:
        await local.create(landing(namespace, "bad-name", targetNamespace="Not_Valid"))
    assert err.value.status.code == 422
    await local.create(landing(namespace, "fixed", direction="ChildToParent"))
    with pytest.raises(ApiError) as err:
        await local.patch(
            LandingResource,
            "fixed",
            {"spec": {"direction": "ParentToChild"}},
            namespace=namespace,
            patch_type=PatchType.MERGE,
        )
    assert "immutable" in (err.value.status.message or "")


async def test_webhook_rejects_what_cel_cannot_check(env: Env, tmp_path: Path) -> None:
    """The validating webhook, registered with the real API server over TLS, rejects a
    Landing whose server the address policy denies, through `kubectl apply`, and admits
    cross-namespace references whether or not their Secret exists (no oracle)."""
    child = env.admin["child-a"]
    await _crd_in(child)
    ns = f"wh-{int(time.time() * 1000) % 10**9}"
    other = f"{ns}-other"
    for name in (ns, other):
        await child.create(
            Namespace(metadata=ObjectMeta(name=name, labels={"moonlander-webhook-test": ns}))
        )
    await child.create(secret_with(other, "theirs", {"value": "x"}))
    ca = pki.CertificateAuthority("webhook-ca")
    serving = ca.issue("127.0.0.1", server=True)
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "tls.crt").write_bytes(serving.cert_pem)
    (certs / "tls.key").write_bytes(serving.key_pem)
    port = devclusters.free_port()
    controller = ControllerProcess(
        tmp_path,
        env.plane["child-a"].kubeconfig,
        env.parent_file,
        f"--namespace={ns}",
        f"--webhook-port={port}",
        f"--webhook-cert-dir={certs}",
        f"--webhook-client-ca={env.plane['child-a'].webhook_client_ca}",
        f"--webhook-client-name={devclusters.WEBHOOK_CLIENT_NAME}",
    )
    controller.start()
    config_name = f"moonlander-{ns}"
    try:
        controller.wait_started()
        await child.create(
            ValidatingWebhookConfiguration.from_dict(
                {
                    "metadata": {"name": config_name},
                    "webhooks": [
                        {
                            "name": "landings.moons.kingdon.ci",
                            "clientConfig": {
                                "url": f"https://127.0.0.1:{port}/validate",
                                "caBundle": base64.b64encode(ca.cert_pem).decode(),
                            },
                            "rules": [
                                {
                                    "apiGroups": ["moons.kingdon.ci"],
                                    "apiVersions": ["v1alpha1"],
                                    "operations": ["CREATE", "UPDATE"],
                                    "resources": ["landings"],
                                }
                            ],
                            "namespaceSelector": {"matchLabels": {"moonlander-webhook-test": ns}},
                            "admissionReviewVersions": ["v1"],
                            "sideEffects": "None",
                            "failurePolicy": "Fail",
                            "timeoutSeconds": 10,
                        },
                        {
                            "name": "landingsets.moons.kingdon.ci",
                            "clientConfig": {
                                "url": f"https://127.0.0.1:{port}/validate-landingset",
                                "caBundle": base64.b64encode(ca.cert_pem).decode(),
                            },
                            "rules": [
                                {
                                    "apiGroups": ["moons.kingdon.ci"],
                                    "apiVersions": ["v1alpha1"],
                                    "operations": ["CREATE", "UPDATE"],
                                    "resources": ["landingsets"],
                                }
                            ],
                            "namespaceSelector": {"matchLabels": {"moonlander-webhook-test": ns}},
                            "admissionReviewVersions": ["v1"],
                            "sideEffects": "None",
                            "failurePolicy": "Fail",
                            "timeoutSeconds": 10,
                        },
                    ],
                }
            )
        )
        kubectl = [
            str(devclusters.find_assets() / "kubectl"),
            "--kubeconfig",
            str(env.plane["child-a"].kubeconfig),
        ]

        def apply(
            spec: dict[str, object], name: str, *flags: str, kind: str = "Landing"
        ) -> subprocess.CompletedProcess[str]:
            doc = {
                "apiVersion": "moons.kingdon.ci/v1alpha1",
                "kind": kind,
                "metadata": {"name": name, "namespace": ns},
                "spec": spec,
            }
            return subprocess.run(
                [*kubectl, *flags, "apply", "-f", "-"],
                input=yaml.safe_dump(doc),
                capture_output=True,
                text=True,
                check=False,
            )

        async def serving_webhook() -> bool:
            out = apply({"server": "https://kubernetes.example.com:6443"}, "good")
            return out.returncode == 0

        await eventually(
            serving_webhook, timeout=30, interval=0.5, what="webhook admits a good Landing"
        )
        metadata = apply({"server": "https://169.254.169.254"}, "imds")
        assert metadata.returncode != 0
        assert "admission webhook" in metadata.stderr and "169.254.169.254" in metadata.stderr
        userinfo = apply({"server": "https://user:pw@kubernetes.example.com"}, "userinfo")
        assert userinfo.returncode != 0 and "user name or password" in userinfo.stderr
        # Another namespace's Secret is not judged at admission: rejecting the one that
        # exists and admitting the one that does not would tell a tenant which exist. The
        # controller reports both alike (test_tenancy.py).
        xns = apply({"kubeconfigSecretNamespace": other, "kubeconfigSecretName": "theirs"}, "xns")
        assert xns.returncode == 0, xns.stderr
        missing = apply(
            {"kubeconfigSecretNamespace": other, "kubeconfigSecretName": "later"}, "later"
        )
        assert missing.returncode == 0, missing.stderr  # Planet B: may appear later

        # Minting: a user who may create Landings but not bind cluster-admin cannot have
        # one mint it (SubjectAccessReview for the requesting user); an admin can.
        await child.create(
            Role(
                metadata=ObjectMeta(name="landing-writer", namespace=ns),
                rules=[
                    PolicyRule(
                        apiGroups=["moons.kingdon.ci"],
                        resources=["landings", "landingsets"],
                        verbs=["get", "create", "patch"],
                    )
                ],
            )
        )
        await child.create(
            RoleBinding(
                metadata=ObjectMeta(name="landing-writer", namespace=ns),
                roleRef=RoleRef(
                    apiGroup="rbac.authorization.k8s.io", kind="Role", name="landing-writer"
                ),
                subjects=[RbacSubject(kind="User", name="tenant-alice")],
            )
        )
        minting = {"serviceAccount": {"name": "robot", "clusterRole": "cluster-admin"}}
        as_tenant = apply(minting, "mint-admin", "--as=tenant-alice")
        assert as_tenant.returncode != 0, as_tenant.stdout
        assert "may not bind clusterroles cluster-admin cluster-wide" in as_tenant.stderr
        as_admin = apply(minting, "mint-admin")
        assert as_admin.returncode == 0, as_admin.stderr

        # A LandingSet's template is checked as the Landing it generates, and its minting
        # against the set's author: a set cannot mint what a Landing could not.
        def landing_set(template_spec: dict[str, object]) -> dict[str, object]:
            return {
                "generators": [
                    {"secrets": {"namePattern": "kubernetes-{{tenant}}-admin-kubeconfig"}}
                ],
                "template": {"metadata": {"name": "{{tenant}}"}, "spec": template_spec},
            }

        set_as_tenant = apply(landing_set(minting), "fleet", "--as=tenant-alice", kind="LandingSet")
        assert set_as_tenant.returncode != 0, set_as_tenant.stdout
        assert "may not bind clusterroles cluster-admin cluster-wide" in set_as_tenant.stderr
        typo = apply(
            landing_set({"writeKubeconfigSecretName": "{{tenat}}"}), "typo", kind="LandingSet"
        )
        assert typo.returncode != 0
        assert "template.spec.writeKubeconfigSecretName: unknown variable {{tenat}}" in typo.stderr
        imds_set = apply(
            landing_set({"server": "https://169.254.169.254"}), "imds", kind="LandingSet"
        )
        assert imds_set.returncode != 0 and "spec.template (as a Landing)" in imds_set.stderr
        set_as_admin = apply(landing_set(minting), "fleet", kind="LandingSet")
        assert set_as_admin.returncode == 0, set_as_admin.stderr
        # The Landing the controller then generates passes the same webhook.
        await child.create(secret_with(ns, "kubernetes-acme-admin-kubeconfig", {"value": "x"}))

        async def generated() -> bool:
            from moonlander.kube.resources import LandingResource

            got = await child.get(LandingResource, "acme", namespace=ns)
            assert got.spec["serviceAccount"]["clusterRole"] == "cluster-admin"
            return True

        await eventually(generated, timeout=30, what="the set's Landing admitted")
    finally:
        await child.delete(ValidatingWebhookConfiguration, config_name)
        assert controller.stop() == 0, controller.log_tail()


async def test_sigterm_mid_burst_exits_cleanly_and_a_restart_converges(
    env: Env, tmp_path: Path
) -> None:
    """SIGTERM while reconciles are in flight: the process exits 0 within its grace period,
    nothing landed is half-written, and a new process converges what was left."""
    child = env.admin["child-a"]
    await _crd_in(child)
    ns = f"gs-{int(time.time() * 1000) % 10**9}"
    await child.create(Namespace(metadata=ObjectMeta(name=ns)))
    await child.create(secret_with(ns, "src", {"value": env.kubeconfig_text("child-b")}))
    first = ControllerProcess(
        tmp_path / "a", env.plane["child-a"].kubeconfig, env.parent_file, f"--namespace={ns}"
    )
    (tmp_path / "a").mkdir()
    first.start()
    first.wait_started()
    for i in range(40):
        await child.create(
            landing(
                ns,
                f"l{i}",
                kubeconfigSecretName="src",
                direction="ChildToParent",
                writeKubeconfigSecretName=f"out-{i}",
            )
        )
    started = time.monotonic()
    assert first.stop() == 0, first.log_tail()
    assert time.monotonic() - started < 25
    assert "stopped in" in first.log()
    # Whatever was written is whole: every landed Secret holds a complete kubeconfig.
    from lightkube.resources.core_v1 import Secret

    async for secret in child.list(
        Secret, namespace=ns, labels={"app.kubernetes.io/managed-by": "moonlander"}
    ):
        text = base64.b64decode(secret.data["kubeconfig"]).decode()
        assert yaml.safe_load(text)["current-context"]
    second = ControllerProcess(
        tmp_path / "b", env.plane["child-a"].kubeconfig, env.parent_file, f"--namespace={ns}"
    )
    (tmp_path / "b").mkdir()
    second.start()
    try:
        second.wait_started()
        for i in range(40):
            await wait_reason(child, ns, f"l{i}", "Synced", timeout=60)
    finally:
        assert second.stop() == 0


async def test_run_finds_its_cluster_through_kubeconfig_env(env: Env, tmp_path: Path) -> None:
    """`KUBECONFIG=... moonlander run` (no --kubeconfig, no ServiceAccount) uses that file, as
    kubectl would; it used to die looking for an in-cluster token."""
    child = env.admin["child-a"]
    await _crd_in(child)
    ns = f"kc-{int(time.time() * 1000) % 10**9}"
    await child.create(Namespace(metadata=ObjectMeta(name=ns)))
    await child.create(secret_with(ns, "src", {"value": env.kubeconfig_text("child-b")}))
    controller = ControllerProcess(tmp_path, None, env.parent_file, f"--namespace={ns}")
    controller.extra_env["KUBECONFIG"] = str(env.plane["child-a"].kubeconfig)
    controller.start()
    try:
        controller.wait_started()
        await child.create(
            landing(ns, "via-env", kubeconfigSecretName="src", direction="ChildToParent")
        )
        await wait_reason(child, ns, "via-env", "Synced", timeout=30)
    finally:
        assert controller.stop() == 0, controller.log_tail()
