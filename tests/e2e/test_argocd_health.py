"""Argo CD's own health code judges Landings, LandingSets and LandingPolicies with the Lua
checks Moonlander ships (config/argocd/health/*.lua, embedded in config/argocd/argocd-cm.yaml).

``health`` (``hack/consumers/argocd/health``, built on Argo CD v3.6.1) reads argocd-cm from the
API server with Argo CD's settings code (``SettingsManager.GetResourceOverrides``) and gives
each object to gitops-engine's ``health.GetResourceHealth`` with those overrides, as Argo CD's
application controller does. The shipped argocd-cm snippet is applied as it is (in the test's
namespace); the objects are real ones the controller reconciled, read from the API server.
The statuses written by hand at the end are what the controller writes per kstatus
(Reconciling, Stalled, observedGeneration), so the checks are held to that contract too.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap

from moonlander import api
from moonlander_dev.consumers import consumer_dir

from .conftest import Env
from .harness import ROOT, eventually, landing, landing_policy, secret_with, wait_reason
from .test_landingsets import landing_set, set_status, tenant_secret

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

ARGOCD_CM = ROOT / "config" / "argocd" / "argocd-cm.yaml"


@pytest.fixture(scope="module")
def health_binary() -> Path:
    return consumer_dir("argocd") / "health"  # fails (never skips) when the build fails


@pytest.fixture
async def argocd_cm(env: Env, namespace: str) -> str:
    """The shipped argocd-cm snippet, applied as it is into ``namespace``; its namespace."""
    doc = yaml.safe_load(ARGOCD_CM.read_text())
    meta = doc["metadata"]
    await env.local.create(
        ConfigMap(
            metadata=ObjectMeta(name=meta["name"], namespace=namespace, labels=meta["labels"]),
            data=doc["data"],
        )
    )
    return namespace


async def health(
    binary: Path, env: Env, argocd_ns: str, *args: str, namespace: str = ""
) -> dict[str, tuple[str, str]]:
    """{name: (Argo CD health status, message)} of the objects ``args`` name."""
    environ = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                str(binary),
                f"-kubeconfig={env.plane['parent'].kubeconfig}",
                f"-argocd-namespace={argocd_ns}",
                f"-namespace={namespace}",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env=environ,
            check=False,
        )

    proc = await asyncio.to_thread(run)
    assert proc.returncode == 0, f"health {' '.join(args)} failed: {proc.stderr[-3000:]}"
    out: dict[str, tuple[str, str]] = {}
    for line in proc.stdout.splitlines():
        got = json.loads(line)
        out[got["name"]] = (got["status"], got["message"])
    return out


def table(results: dict[str, tuple[str, str]]) -> str:
    return "\n".join(
        f"  {name:<22} {status:<12} {message}" for name, (status, message) in results.items()
    )


async def test_argo_cd_judges_real_landings_sets_and_policies(
    env: Env, namespace: str, argocd_cm: str, health_binary: Path
) -> None:
    """Synced -> Healthy; waiting for its source Secret -> Progressing; NotPermitted ->
    Degraded; suspended -> Suspended; an AllReady LandingSet -> Healthy; the namespace's
    a policy -> Healthy, and one with a fenced entry -> Degraded."""
    local = env.local
    await local.create(secret_with(namespace, "vc-b", {"config": env.kubeconfig_text("child-b")}))
    child_to_parent = {"kubeconfigSecretName": "vc-b", "direction": "ChildToParent"}
    await local.create(
        landing(namespace, "synced", writeKubeconfigSecretName="s1", **child_to_parent)
    )
    await local.create(
        landing(
            namespace,
            "waiting",
            kubeconfigSecretName="not-there-yet",
            direction="ChildToParent",
            writeKubeconfigSecretName="s2",
        )
    )
    # The namespace's policy grants no writes into other namespaces.
    await local.create(
        landing(
            namespace,
            "refused",
            writeKubeconfigSecretName="s3",
            targetNamespace="default",
            **child_to_parent,
        )
    )
    await local.create(
        landing(
            namespace, "suspended", writeKubeconfigSecretName="s4", suspend=True, **child_to_parent
        )
    )
    await local.create(tenant_secret(env, namespace, "acme"))
    await local.create(landing_set(namespace, "tenants"))
    # The namespace's trusted policy (conftest) names moonlander-system among its mint
    # namespaces, which is fenced: a clean policy is Healthy, one with a fenced entry not.
    clean, fenced = f"clean-{namespace}", f"fenced-{namespace}"
    await local.create(
        landing_policy(clean, namespaces={"names": [namespace]}, parentCredential=True)
    )
    await local.create(
        landing_policy(
            fenced, namespaces={"names": [namespace]}, targetNamespaces=["moonlander-system"]
        )
    )

    await wait_reason(local, namespace, "synced", "Synced")
    await wait_reason(local, namespace, "waiting", "SourceSecretNotFound")
    await wait_reason(local, namespace, "refused", "NotPermitted")
    await wait_reason(local, namespace, "suspended", "Suspended")

    async def all_ready() -> dict[str, Any]:
        status = await set_status(local, namespace, "tenants")
        ready = [c for c in status.get("conditions", []) if c["type"] == "Ready"]
        assert ready and ready[0]["reason"] == "AllReady", status
        return status

    await eventually(all_ready, timeout=30, what="LandingSet AllReady")

    async def judged() -> dict[str, tuple[str, str]]:
        got = await health(
            health_binary,
            env,
            argocd_cm,
            "landings/synced",
            "landings/waiting",
            "landings/refused",
            "landings/suspended",
            "landingsets/tenants",
            f"landingpolicies/{clean}",
            f"landingpolicies/{fenced}",
            namespace=namespace,
        )
        # The policies' status is written once the controller has read them.
        assert got[fenced][0] == "Degraded", got
        return got

    got = await eventually(judged, timeout=30, what="the fenced policy's status")
    print("\nArgo CD health (v3.6.1 code, shipped Lua checks):\n" + table(got))
    statuses = {name: status for name, (status, _) in got.items()}
    assert statuses == {
        "synced": "Healthy",
        "waiting": "Progressing",
        "refused": "Degraded",
        "suspended": "Suspended",
        "tenants": "Healthy",
        clean: "Healthy",
        fenced: "Degraded",
    }, table(got)
    assert "SourceSecretNotFound" in got["waiting"][1]
    assert "NotPermitted" in got["refused"][1] and "targetNamespace" in got["refused"][1]
    assert "moonlander-system" in got[fenced][1]


def _landing(
    name: str, generation: int, status: dict[str, Any] | None, **spec: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "metadata": {"name": name, "namespace": "tenant", "generation": generation},
        "spec": {"kubeconfigSecretName": "vc", **spec},
    }
    if status is not None:
        body["status"] = status
    return body


def _cond(type_: str, status: str, reason: str, generation: int = 1) -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": f"{type_} {reason}",
        "observedGeneration": generation,
    }


def _status(*conditions: dict[str, Any], generation: int = 1, **fields: Any) -> dict[str, Any]:
    return {"observedGeneration": generation, "conditions": list(conditions), **fields}


# name -> (object, the Argo CD health it must get). kstatus: Ready True when converged,
# Reconciling True while working or backing off, Stalled True when a human must act.
CONTRACT: dict[str, tuple[dict[str, Any], str]] = {
    "no-status": (_landing("no-status", 1, None), "Progressing"),
    "generation-behind": (
        _landing("generation-behind", 2, _status(_cond("Ready", "True", "Synced"))),
        "Progressing",
    ),
    "ready-current": (
        _landing("ready-current", 2, _status(_cond("Ready", "True", "Synced", 2), generation=2)),
        "Healthy",
    ),
    # As Moonlander wrote before Reconciling and Stalled: Ready's reason decides.
    "ready-only-refused": (
        _landing("ready-only-refused", 1, _status(_cond("Ready", "False", "NotPermitted"))),
        "Degraded",
    ),
    "ready-only-waiting": (
        _landing("ready-only-waiting", 1, _status(_cond("Ready", "False", "TransientError"))),
        "Progressing",
    ),
    "backing-off": (
        _landing(
            "backing-off",
            1,
            _status(
                _cond("Ready", "False", "ClusterUnreachable"),
                _cond("Reconciling", "True", "ClusterUnreachable"),
            ),
        ),
        "Progressing",
    ),
    "stalled": (
        _landing(
            "stalled",
            1,
            _status(
                _cond("Ready", "False", "ParentKubeconfigUnavailable"),
                _cond("Stalled", "True", "ParentKubeconfigUnavailable"),
            ),
        ),
        "Degraded",
    ),
    "stalled-conflict": (
        _landing(
            "stalled-conflict",
            1,
            _status(_cond("Ready", "False", "Conflict"), _cond("Stalled", "True", "Conflict")),
        ),
        "Degraded",
    ),
    "suspended-unknown": (
        _landing("suspended-unknown", 1, _status(_cond("Ready", "Unknown", "Suspended"))),
        "Suspended",
    ),
    "set-failing-stalled": (
        {
            "apiVersion": api.API_VERSION,
            "kind": "LandingSet",
            "metadata": {"name": "set-failing-stalled", "namespace": "tenant", "generation": 1},
            "status": _status(
                _cond("Ready", "False", "LandingsFailing"),
                _cond("Stalled", "True", "LandingsFailing"),
            ),
        },
        "Degraded",
    ),
    "set-progressing": (
        {
            "apiVersion": api.API_VERSION,
            "kind": "LandingSet",
            "metadata": {"name": "set-progressing", "namespace": "tenant", "generation": 1},
            "status": _status(
                _cond("Ready", "False", "Progressing"), _cond("Reconciling", "True", "Progressing")
            ),
        },
        "Progressing",
    ),
    "policy-unread": (
        {
            "apiVersion": api.API_VERSION,
            "kind": "LandingPolicy",
            "metadata": {"name": "policy-unread", "generation": 1},
        },
        "Progressing",
    ),
    "policy-applied": (
        {
            "apiVersion": api.API_VERSION,
            "kind": "LandingPolicy",
            "metadata": {"name": "policy-applied", "generation": 3},
            "status": _status(_cond("Ready", "True", "Applied", 3), generation=3),
        },
        "Healthy",
    ),
    "policy-no-conditions": (
        {
            "apiVersion": api.API_VERSION,
            "kind": "LandingPolicy",
            "metadata": {"name": "policy-no-conditions", "generation": 1},
            "status": {"observedGeneration": 1, "matchedNamespaces": ["a"]},
        },
        "Healthy",
    ),
    "policy-ambiguous": (
        {
            "apiVersion": api.API_VERSION,
            "kind": "LandingPolicy",
            "metadata": {"name": "policy-ambiguous", "generation": 1},
            "status": _status(
                _cond("Ready", "True", "PartiallyApplied"),
                ambiguous=["outputs.clusterScoped: granted to 2 namespaces at once (a, b)"],
            ),
        },
        "Degraded",
    ),
}


async def test_argo_cd_follows_the_kstatus_conditions(
    env: Env, argocd_cm: str, health_binary: Path, tmp_path: Path
) -> None:
    """Statuses as the controller writes them per kstatus (Reconciling, Stalled,
    observedGeneration) get the Argo CD health the contract gives them."""
    path = tmp_path / "objects.json"
    path.write_text(
        json.dumps({"apiVersion": "v1", "kind": "List", "items": [o for o, _ in CONTRACT.values()]})
    )
    got = await health(health_binary, env, argocd_cm, f"-file={path}")
    print("\nArgo CD health of kstatus statuses:\n" + table(got))
    assert {name: status for name, (status, _) in got.items()} == {
        name: want for name, (_, want) in CONTRACT.items()
    }, table(got)
