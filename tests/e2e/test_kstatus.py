"""kstatus, the real library (sigs.k8s.io/cli-utils, as Flux, kpt and Config Sync use it),
reads real Landings, LandingSets and LandingPolicies as their conditions mean them: Current
when converged, InProgress while waiting or retrying, Failed when only a human can help.

``hack/consumers/kstatus`` is a small Go program around ``status.Compute``; it reads the
objects as the API server returned them (JSON on stdin) and prints one result per object.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from moonlander.kube.resources import LandingPolicyResource, LandingResource, LandingSetResource
from moonlander_dev.consumers import consumer_dir

from .conftest import Env
from .harness import eventually, landing, secret_with, wait_reason

pytestmark = pytest.mark.e2e

# The kstatus results of the last run, printed as the table the issue asks for.
RESULTS: list[tuple[str, str, str, str]] = []


def kstatus(objects: list[dict[str, Any]]) -> list[dict[str, str]]:
    binary = consumer_dir("kstatus") / "kstatus"  # built by make setup; fails, never skips
    proc = subprocess.run(
        [str(binary)],
        input="\n".join(json.dumps(o) for o in objects),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def _ready(body: dict[str, Any]) -> str:
    for cond in (body.get("status") or {}).get("conditions") or ():
        if cond.get("type") == "Ready":
            return f"{cond.get('status')}/{cond.get('reason')}"
    return "-"


def _landing_set(namespace: str, name: str, **template_spec: Any) -> Any:
    return LandingSetResource.from_dict(
        {
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "generators": [{"secrets": {"namePattern": f"{name}-{{{{tenant}}}}-kc"}}],
                "template": {
                    "metadata": {"name": f"{name}-{{{{tenant}}}}"},
                    "spec": {
                        "direction": "ChildToParent",
                        "kubeconfigSecretName": f"{name}-{{{{tenant}}}}-kc",
                        "writeKubeconfigSecretName": f"{name}-{{{{tenant}}}}-landed",
                        **template_spec,
                    },
                },
            },
        }
    )


async def test_kstatus_reads_landings_sets_and_policies(env: Env, namespace: str) -> None:
    local = env.local
    child = env.kubeconfig_text("child-b")
    await local.create(secret_with(namespace, "src", {"value": child}))
    # Synced: the child's kubeconfig landed in the parent.
    await local.create(
        landing(
            namespace,
            "synced",
            direction="ChildToParent",
            kubeconfigSecretName="src",
            writeKubeconfigSecretName="synced-landed",
        )
    )
    # Waiting for its source ("Planet B"): backing off, a retry will come.
    created = await local.create(
        landing(namespace, "waiting", direction="ChildToParent", kubeconfigSecretName="later")
    )
    # Before the controller has looked at it, the schema's default says so: not observed, so
    # InProgress, not Current for want of conditions (what Flux would take for done).
    assert created.status == {"observedGeneration": 0}, created.status
    assert kstatus([created.to_dict()])[0]["status"] == "InProgress"
    # A write into a namespace no LandingPolicy grants this one: NotPermitted for good.
    await local.create(
        landing(
            namespace,
            "refused",
            direction="ChildToParent",
            kubeconfigSecretName="src",
            targetNamespace="default",
        )
    )
    await local.create(
        landing(
            namespace, "paused", direction="ChildToParent", kubeconfigSecretName="src", suspend=True
        )
    )
    await local.create(secret_with(namespace, "good-a-kc", {"value": child}))
    await local.create(_landing_set(namespace, "good"))
    await local.create(secret_with(namespace, "bad-a-kc", {"value": child}))
    await local.create(_landing_set(namespace, "bad", targetNamespace="default"))

    await wait_reason(local, namespace, "synced", "Synced")
    await wait_reason(local, namespace, "waiting", "SourceSecretNotFound")
    await wait_reason(local, namespace, "refused", "NotPermitted")
    await wait_reason(local, namespace, "paused", "Suspended")

    expected = {
        ("Landing", "synced"): "Current",
        ("Landing", "waiting"): "InProgress",
        ("Landing", "refused"): "Failed",
        # Ready Unknown (Suspended), neither Reconciling nor Stalled: kstatus reads a Ready
        # that is not True as InProgress; a suspended Landing converges on nothing.
        ("Landing", "paused"): "InProgress",
        ("LandingSet", "good"): "Current",
        ("LandingSet", "bad"): "Failed",
        ("LandingPolicy", f"trusted-{namespace}"): "Current",
    }

    async def computed() -> list[tuple[dict[str, Any], dict[str, str]]]:
        objects = [
            (await local.get(LandingResource, n, namespace=namespace)).to_dict()
            for n in ("synced", "waiting", "refused", "paused")
        ]
        objects += [
            (await local.get(LandingSetResource, n, namespace=namespace)).to_dict()
            for n in ("good", "bad")
        ]
        objects.append((await local.get(LandingPolicyResource, f"trusted-{namespace}")).to_dict())
        results = kstatus(objects)
        got = {(r["kind"], r["name"]): r["status"] for r in results}
        assert got == expected, [(r, _ready(o)) for o, r in zip(objects, results, strict=True)]
        return list(zip(objects, results, strict=True))

    pairs = await eventually(computed, timeout=30, what="kstatus as expected")
    RESULTS.clear()
    for obj, result in pairs:
        RESULTS.append((result["kind"], result["name"], _ready(obj), result["status"]))
    print("\nkind | name | Ready | kstatus")
    for row in RESULTS:
        print(" | ".join(row))

    # A Landing that is fixed leaves Failed by itself: its source appears, it lands.
    await local.create(secret_with(namespace, "later", {"value": child}))
    await wait_reason(local, namespace, "waiting", "Synced")
    body = (await local.get(LandingResource, "waiting", namespace=namespace)).to_dict()
    assert kstatus([body])[0]["status"] == "Current"
    assert [c["type"] for c in body["status"]["conditions"]] == ["Ready"]
