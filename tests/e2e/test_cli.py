"""``moonlander`` as a user runs it, against the real control plane: every exit code with its
one-line message (never a traceback), ``-o json``, and ``moonlander status`` showing a Synced
Landing and a refused one with its reason."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace

from moonlander.kube.resources import LandingSetResource
from moonlander_dev.clusters import free_port

from .conftest import Env
from .harness import eventually, landing, mint_token_kubeconfig, secret_with, wait_reason

pytestmark = pytest.mark.e2e


def moonlander(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "moonlander", *args],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        env={**os.environ, "KUBECONFIG": "", **(env or {})},
    )


async def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(moonlander, *args, env=env)


def failed(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The one line a failing command printed, after checking its exit code."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    return result.stderr


async def nobody_kubeconfig(env: Env, namespace: str, tmp_path: Path) -> Path:
    """A real identity of the parent cluster that may read nothing of ours (RBAC says no)."""
    parent = env.plane["parent"]
    text = await mint_token_kubeconfig(
        env.local, parent.url, parent.ca_pem, namespace, "nobody", "system:public-info-viewer"
    )
    path = tmp_path / "nobody"
    path.write_text(text)
    return path


async def test_status_shows_synced_and_refused_landings(
    env: Env, namespace: str, tmp_path: Path
) -> None:
    local = env.local
    admin = str(env.plane["parent"].kubeconfig)
    child_a = env.plane["child-a"].url
    await local.create(
        secret_with(namespace, "harvey-admin", {"admin.conf": env.kubeconfig_text("child-a")})
    )
    await local.create(
        landing(
            namespace,
            "talos",
            kubeconfigSecretName="harvey-admin",
            writeKubeconfigSecretName="talos-kubeconfig",
        )
    )
    # A namespace no LandingPolicy names: its Landing of the parent credential is refused.
    untrusted = f"{namespace}-u"
    await local.create(Namespace(metadata=ObjectMeta(name=untrusted)))
    await local.create(
        secret_with(untrusted, "harvey-admin", {"admin.conf": env.kubeconfig_text("child-a")})
    )
    await local.create(landing(untrusted, "evil", kubeconfigSecretName="harvey-admin"))
    # ... and so is what its LandingSet generates.
    await local.create(
        secret_with(untrusted, "kubernetes-acme-admin-kubeconfig", {"value": "unread"})
    )
    await local.create(
        LandingSetResource.from_dict(
            {
                "metadata": {"name": "fleet", "namespace": untrusted},
                "spec": {
                    "generators": [
                        {"secrets": {"namePattern": "kubernetes-{{tenant}}-admin-kubeconfig"}}
                    ],
                    "template": {"metadata": {"name": "parent-{{tenant}}"}, "spec": {}},
                },
            }
        )
    )
    await wait_reason(local, namespace, "talos", "Synced")
    await wait_reason(local, untrusted, "evil", "NotPermitted")
    await wait_reason(local, untrusted, "parent-acme", "NotPermitted")

    async def set_counted() -> bool:
        obj = await local.get(LandingSetResource, "fleet", namespace=untrusted)
        return bool((obj.status or {}).get("failing") == 1)

    await eventually(set_counted, what="LandingSet fleet counts its failing Landing")

    # $KUBECONFIG, as kubectl; the namespace from -n.
    shown = await cli("status", "-n", namespace, env={"KUBECONFIG": admin})
    assert shown.returncode == 0, shown.stderr
    print(f"\n$ moonlander status -n {namespace}\n{shown.stdout}")
    block = shown.stdout
    assert block.startswith("Landing talos\n  Ready:     True Synced\n"), block
    assert f"Source:    {namespace}/harvey-admin key admin.conf (ParentToChild)" in block
    assert f"Landed:    {namespace}/talos-kubeconfig in {child_a}" in block

    refused = await cli("status", "evil", "-n", untrusted, "--kubeconfig", admin)
    assert refused.returncode == 0, refused.stderr
    print(f"$ moonlander status evil -n {untrusted}\n{refused.stdout}")
    assert "Ready:     False NotPermitted" in refused.stdout
    assert "(nothing landed)" in refused.stdout and "parentCredential" in refused.stdout
    listed = await cli("status", "-n", untrusted, "--kubeconfig", admin)
    assert listed.returncode == 0, listed.stderr
    print(f"$ moonlander status -n {untrusted}\n{listed.stdout}")
    assert listed.stdout.startswith("LandingSet fleet\n"), listed.stdout
    assert "Landings:  0/1 ready, 1 failing\n    - parent-acme: NotPermitted" in listed.stdout
    assert (
        "Landing parent-acme (of LandingSet fleet)\n  Ready:     False NotPermitted"
        in listed.stdout
    )

    both = await cli("status", "-A", "-o", "json", "--kubeconfig", admin)
    assert both.returncode == 0, both.stderr
    items = {(i["namespace"], i["name"]): i for i in json.loads(both.stdout)["items"]}
    assert items[(namespace, "talos")]["reason"] == "Synced"
    assert items[(namespace, "talos")]["cluster"] == child_a
    assert items[(untrusted, "evil")]["reason"] == "NotPermitted"
    as_yaml = await cli("status", "talos", "-n", namespace, "-o", "yaml", "--kubeconfig", admin)
    assert yaml.safe_load(as_yaml.stdout)["items"][0]["target"] == f"{namespace}/talos-kubeconfig"

    # 3: a NAME that is not there; RBAC refusal; a cluster that does not answer.
    assert (
        "No Landing or LandingSet 'ghost'"
        in (await cli("status", "ghost", "-n", namespace, "--kubeconfig", admin)).stdout
    )
    nobody = await nobody_kubeconfig(env, namespace, tmp_path)
    said = failed(await cli("status", "-n", namespace, "--kubeconfig", str(nobody)), 3)
    assert "403 Forbidden" in said and "landings" in said and "RBAC" in said
    closed = tmp_path / "closed"
    doc = yaml.safe_load(nobody.read_text())
    doc["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{free_port()}"
    closed.write_text(yaml.safe_dump(doc))
    said = failed(await cli("status", "--kubeconfig", str(closed)), 3)
    assert "cannot reach the cluster at https://127.0.0.1:" in said
    # 2: usage, and an unknown context
    failed(await cli("status", "-A", "-n", namespace, "--kubeconfig", admin), 2)
    said = failed(await cli("status", "--kubeconfig", admin, "--context", "prod"), 2)
    assert "--context prod: no such context" in said


async def test_check_secret_exit_codes(env: Env, namespace: str, tmp_path: Path) -> None:
    admin = str(env.plane["parent"].kubeconfig)
    await env.local.create(
        secret_with(namespace, "cozy", {"admin.conf": env.kubeconfig_text("child-b")})
    )
    common = ("--kubeconfig", admin, "-n", namespace)

    ok = await cli("check", "--secret", "cozy", *common, "--allow-loopback", "-o", "json")
    assert ok.returncode == 0, ok.stderr
    verdict = json.loads(ok.stdout)
    assert verdict["usable"] is True and verdict["server"] == env.plane["child-b"].url
    assert verdict["source"] == f"Secret {namespace}/cozy key 'admin.conf'"

    denied = await cli("check", "--secret", "cozy", *common)
    assert denied.returncode == 1 and "Traceback" not in denied.stderr
    assert "[AddressNotAllowed]" in denied.stdout
    assert "--allow-loopback" in denied.stdout or "--allow-network" in denied.stdout
    assert "allowed_networks" not in denied.stdout and "allow_loopback" not in denied.stdout

    said = failed(await cli("check", "--secret", "absent", *common), 3)
    assert f"Secret {namespace}/absent: 404 NotFound" in said
    nobody = await nobody_kubeconfig(env, namespace, tmp_path)
    said = failed(
        await cli("check", "--secret", f"{namespace}/cozy", "--kubeconfig", str(nobody)), 3
    )
    assert "403 Forbidden" in said
    said = failed(await cli("check", "--secret", "cozy", *common, "--key", "nope"), 1)
    assert "nope" in said
    failed(await cli("check", "--secret", "other/cozy", *common), 2)
    said = failed(await cli("check", str(tmp_path / "missing")), 3)
    assert "missing: no such file" in said


async def test_mint_prints_json_and_names_its_flags(env: Env, namespace: str) -> None:
    admin = str(env.plane["child-a"].kubeconfig)
    common = ("--kubeconfig", admin, "-n", namespace, "--allow-loopback")
    minted = await cli("mint", *common, "--name", "jsonbot", "--cluster-role", "view", "-o", "json")
    assert minted.returncode == 0, minted.stderr
    doc = json.loads(minted.stdout)
    assert doc["kind"] == "Config" and doc["users"][0]["user"]["token"]
    assert doc["clusters"][0]["cluster"]["server"] == env.plane["child-a"].url
    assert doc["users"][0]["user"]["token"] not in minted.stderr
    said = failed(
        await cli("mint", *common, "--name", "x", "--cluster-role", "view", "--expiration", "5"), 2
    )
    assert "--expiration" in said and "expirationSeconds" not in said
    said = failed(await cli("mint", *common, "--name", "idle"), 2)
    assert "grants nothing: pass --cluster-role or --role" in said
    revoked = await cli("mint", *common, "--name", "jsonbot", "--revoke")
    assert revoked.returncode == 0, revoked.stderr
