"""The local clusters are real and separate API servers."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.authentication_v1 import TokenRequestSpec, TokenReviewSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.authentication_v1 import TokenReview
from lightkube.resources.core_v1 import ConfigMap, Secret, ServiceAccount

from moonlander_dev import clusters as devclusters

from ..conftest import Plane
from .harness import scratch_crd

pytestmark = pytest.mark.e2e


async def test_version_is_pinned_release(plane: Plane) -> None:
    for name in ("parent", "child-a", "child-b"):
        assert plane[name].version == "v1.37.2", name
    print({n: c.version for n, c in plane.clusters.items()})


async def test_object_in_one_cluster_is_absent_in_others(
    admin: dict[str, AsyncClient], namespace: str
) -> None:
    cm = ConfigMap(
        metadata=ObjectMeta(name="only-in-child-a", namespace=namespace), data={"a": "1"}
    )
    await admin["child-a"].create(cm)
    got = await admin["child-a"].get(ConfigMap, "only-in-child-a", namespace=namespace)
    assert got.data == {"a": "1"}
    for other in ("parent", "child-b"):
        with pytest.raises(ApiError) as err:
            await admin[other].get(ConfigMap, "only-in-child-a", namespace=namespace)
        assert err.value.status.code == 404


async def test_token_request_returns_token_that_authenticates(
    plane: Plane, admin: dict[str, AsyncClient], namespace: str
) -> None:
    client = admin["child-b"]
    await client.create(ServiceAccount(metadata=ObjectMeta(name="robot", namespace=namespace)))
    tr = await client.create(
        ServiceAccount.Token(
            metadata=ObjectMeta(),
            spec=TokenRequestSpec(
                audiences=["https://kubernetes.default.svc"], expirationSeconds=600
            ),
        ),
        name="robot",
        namespace=namespace,
    )
    token = tr.status.token
    assert token.count(".") == 2  # a JWT
    review = await client.create(
        TokenReview(metadata=ObjectMeta(), spec=TokenReviewSpec(token=token))
    )
    assert review.status.authenticated is True
    assert review.status.user.username == f"system:serviceaccount:{namespace}:robot"
    # The token is bound to child-b's issuer key: another cluster does not accept it.
    other = await admin["child-a"].create(
        TokenReview(metadata=ObjectMeta(), spec=TokenReviewSpec(token=token))
    )
    assert not other.status.authenticated


async def test_unprivileged_service_account_is_forbidden(
    plane: Plane, admin: dict[str, AsyncClient], namespace: str
) -> None:
    client = admin["parent"]
    await client.create(ServiceAccount(metadata=ObjectMeta(name="nobody", namespace=namespace)))
    tr = await client.create(
        ServiceAccount.Token(
            metadata=ObjectMeta(),
            spec=TokenRequestSpec(audiences=["https://kubernetes.default.svc"]),
        ),
        name="nobody",
        namespace=namespace,
    )
    ca = base64.b64encode(plane["parent"].ca_pem).decode()
    cfg = KubeConfig.from_dict(
        {
            "clusters": [
                {
                    "name": "c",
                    "cluster": {"server": plane["parent"].url, "certificate-authority-data": ca},
                }
            ],
            "users": [{"name": "u", "user": {"token": tr.status.token}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "c",
        }
    )
    sa_client = AsyncClient(cfg)
    try:
        with pytest.raises(ApiError) as err:
            await sa_client.get(Secret, "anything", namespace=namespace)
        assert err.value.status.code == 403
        assert "forbidden" in (err.value.status.message or "").lower()
    finally:
        await sa_client._client.close()


async def test_crd_with_cel_rule_rejects_bad_object(
    admin: dict[str, AsyncClient], namespace: str
) -> None:
    client = admin["child-a"]
    group = f"{namespace}.smoke.test"
    crd = CustomResourceDefinition.from_dict(
        scratch_crd(
            group,
            "Widget",
            "widgets",
            {
                "x-kubernetes-validations": [
                    {"rule": "self.min <= self.max", "message": "min must not exceed max"}
                ],
                "properties": {"min": {"type": "integer"}, "max": {"type": "integer"}},
            },
        )
    )
    await client.create(crd)
    await client.wait(CustomResourceDefinition, f"widgets.{group}", for_conditions=["Established"])
    widget = create_namespaced_resource(group, "v1", "Widget", "widgets")
    ok = widget.from_dict(
        {"metadata": {"name": "ok", "namespace": namespace}, "spec": {"min": 1, "max": 2}}
    )
    await client.create(ok)
    bad = widget.from_dict(
        {"metadata": {"name": "bad", "namespace": namespace}, "spec": {"min": 3, "max": 2}}
    )
    with pytest.raises(ApiError) as err:
        await client.create(bad)
    assert err.value.status.code == 422
    assert "min must not exceed max" in (err.value.status.message or "")
    await client.delete(CustomResourceDefinition, f"widgets.{group}")


def test_kubectl_reaches_each_cluster(plane: Plane) -> None:
    assets = devclusters.find_assets()
    for name in ("parent", "child-a", "child-b"):
        out = subprocess.run(
            [
                str(assets / "kubectl"),
                "--kubeconfig",
                str(plane[name].kubeconfig),
                "get",
                "ns",
                "-o",
                "json",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        names = {item["metadata"]["name"] for item in json.loads(out.stdout)["items"]}
        assert {"default", "kube-system"} <= names


def test_dev_clusters_up_writes_ready_and_leaves_no_process(tmp_path: Path) -> None:
    """The CLI starts clusters, writes DIR/ready, and SIGINT stops every process it started."""
    import signal
    import sys
    import time

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "moonlander_dev",
            "dev-clusters",
            "up",
            "--dir",
            str(tmp_path),
            "--clusters",
            "solo",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        while not (tmp_path / "ready").exists():
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "dev-clusters up did not become ready"
            time.sleep(0.3)
        children = _children(proc.pid)
        assert len(children) == 2, children  # etcd and one kube-apiserver
        assert (tmp_path / "solo.kubeconfig").is_file()
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    assert "solo  https://127.0.0.1:" in output and "v1.37.2" in output
    for pid in children:
        assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid), f"process {pid} survived"
    assert not (tmp_path / "ready").exists()


def _start_dev_clusters(directory: Path, clusters: str) -> subprocess.Popen[str]:
    import sys

    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "moonlander_dev",
            "dev-clusters",
            "up",
            "--dir",
            str(directory),
            "--clusters",
            clusters,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _processes_of(directory: Path) -> dict[int, str]:
    """Live processes whose command line names ``directory`` (etcd and the API servers)."""
    found = {}
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        pid = int(cmdline.parent.name)
        if any(str(directory).encode() in a for a in args[1:]) and not _is_zombie(pid):
            found[pid] = Path(args[0].decode()).name
    return found


def _gone_within(directory: Path, seconds: float) -> dict[int, str]:
    import time

    deadline = time.monotonic() + seconds
    while (left := _processes_of(directory)) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in left:  # do not leak them into the rest of the run
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left


@pytest.mark.parametrize(
    ("when", "how"),
    [
        ("ready", "sigint-twice"),  # the second Ctrl-C once interrupted the stop itself
        ("ready", "sigkill"),  # nobody stops anything: PR_SET_PDEATHSIG must
        ("starting", "sigint-twice"),  # while children are being forked and registered
        ("starting", "sigterm"),
    ],
)
def test_dev_clusters_up_never_leaves_a_process(tmp_path: Path, when: str, how: str) -> None:
    """However and whenever `dev-clusters up` is stopped, every process it started is gone
    within seconds (a leftover kube-apiserver whose etcd has stopped used to run on)."""
    import time

    proc = _start_dev_clusters(tmp_path, "one,two")
    try:
        if when == "ready":
            deadline = time.monotonic() + 180
            while not (tmp_path / "ready").exists():
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                assert time.monotonic() < deadline, "dev-clusters up did not become ready"
                time.sleep(0.1)
        else:  # as soon as etcd runs and the first API server is being started
            deadline = time.monotonic() + 60
            while "kube-apiserver" not in _processes_of(tmp_path).values():
                assert time.monotonic() < deadline, "no kube-apiserver was started"
                time.sleep(0.02)
        assert len(_processes_of(tmp_path)) >= 2
        if how == "sigkill":
            proc.kill()
        elif how == "sigterm":
            proc.terminate()
        else:
            proc.send_signal(signal.SIGINT)
            time.sleep(0.05)
            proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _gone_within(tmp_path, 10) == {}
    if how != "sigkill":
        # A second SIGINT that arrives after the stop has finished, as Python exits, may
        # end the process (-2): harmless, everything is already stopped.
        assert proc.returncode in ((0, -signal.SIGINT) if how == "sigint-twice" else (0,))
        assert not (tmp_path / "ready").exists()


def _children(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def test_demo_runs_pattern_a_end_to_end(tmp_path: Path) -> None:
    """The README's main job: `moonlander-dev demo` exits 0 only when the landed kubeconfig worked."""
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "moonlander_dev", "demo", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Ready in" in proc.stdout
    assert "reaches talos-root" in proc.stdout and "harvey-system" in proc.stdout
    assert not (tmp_path / "clusters" / "ready").exists()  # cleaned up
