"""Moonlander as pods on a real node (issue 13): the image built from this repository's
Dockerfile, imported into containerd, run by a kubelet from the Helm chart and from
``config/default``, landing the seed's Pattern A into a child cluster.

The node (moonlander_dev.node) joins its own parent cluster, with a child cluster ``harvey``
next to it; nothing here touches the session's clusters. The tests run in order and share
the node: install, land, scrape, upgrade, fail over, then the kustomize install.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from moonlander_dev import node as devnode
from moonlander_dev.clusters import ControlPlane, ControlPlaneError

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "moonlander"
PATTERN_A = ROOT / "examples" / "pattern-a"
NS = "moonlander-system"
RELEASE = "moonlander"
SCRAPER = "scraper"  # a ServiceAccount the chart lets read /metrics
CHILD = "harvey"

pytestmark = pytest.mark.timeout(900)


def _version() -> str:
    for line in (ROOT / "pyproject.toml").read_text().splitlines():
        if line.startswith("version = "):
            return line.split('"')[1]
    raise AssertionError("no version in pyproject.toml")


def build_image() -> Path:
    """``hack/image/build.sh`` for this machine's architecture only, into the cache (the
    Dockerfile as ``make image`` builds it; rebuilt only when what it reads changed)."""
    arch = {"x86_64": "amd64", "aarch64": "arm64"}[os.uname().machine]
    out = devnode.cache_dir() / "image"
    env = {**os.environ, "IMAGE_ARCHES": arch, "IMAGE_OUT": str(out)}
    started = time.monotonic()
    proc = subprocess.run(
        ["bash", str(ROOT / "hack" / "image" / "build.sh")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"hack/image/build.sh failed:\n{proc.stderr[-3000:]}", pytrace=False)
    print(f"\nimage: {time.monotonic() - started:.0f}s ({proc.stdout.strip().splitlines()[-1]})")
    return out / f"moonlander-{_version()}.oci.tar"


def host_state() -> dict[str, Any]:
    """What the node may change on the host, to compare before and after."""
    sysctls = {}
    for key in devnode.SYSCTLS:
        path = Path("/proc/sys") / key
        sysctls[key] = path.read_text().strip() if path.exists() else None
    links = sorted(p.name for p in Path("/sys/class/net").iterdir())
    # Only the mounts the node could leave (other work on the machine mounts things too).
    mounts = sorted(
        point
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if (point := line.split()[4]).startswith(
            ("/run/netns", "/var/run/netns", "/var/lib/kubelet")
        )
        or "/node" in point
    )
    cgroups = sorted(
        str(h) for h in devnode._cgroup_hierarchies() if (h / "moonlander-node").exists()
    )
    # (Before hack/node/deps.sh has run on a fresh machine there may be no iptables at all.)
    iptables = (
        subprocess.run(
            ["iptables-save"], capture_output=True, text=True, check=False
        ).stdout.splitlines()
        if shutil.which("iptables-save")
        else []
    )
    rules = sorted(
        line for line in iptables if line.startswith("-")
    )  # (a chain comes with a jump to it)
    return {
        "sysctls": sysctls,
        "links": links,
        "mounts": mounts,
        "cgroups": cgroups,
        "iptables": rules,
        "/var/lib/cni": Path("/var/lib/cni").exists(),
        "/run/netns": Path("/run/netns").exists(),
        "/var/lib/kubelet": Path("/var/lib/kubelet").exists(),
        "/run/containerd": Path("/run/containerd").exists(),
        "/run/moonlander-node": Path("/run/moonlander-node").exists(),
        "/var/log/pods": Path("/var/log/pods").exists(),
        "/var/log/containers": sorted(p.name for p in Path("/var/log/containers").glob("*"))
        if Path("/var/log/containers").exists()
        else None,
    }


@dataclass
class NodeEnv:
    plane: ControlPlane
    node: devnode.Node
    work: Path
    image_tag: str

    def tool(self, name: str) -> str:
        assert self.plane.assets is not None
        return str(self.plane.assets / name)

    def run(self, *args: str, cluster: str = "parent", input: str | None = None) -> str:
        """kubectl or helm (args[0]) against ``cluster`` as its admin."""
        kubeconfig = self.plane.clusters[cluster].kubeconfig
        proc = subprocess.run(
            [self.tool(args[0]), f"--kubeconfig={kubeconfig}", *args[1:]],
            capture_output=True,
            text=True,
            input=input,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 0, f"{' '.join(args)}: {proc.stderr}{proc.stdout}"
        return proc.stdout

    def get(self, *args: str, cluster: str = "parent") -> Any:
        return json.loads(self.run("kubectl", "get", "-o", "json", *args, cluster=cluster))

    def pods(self, selector: str = "app.kubernetes.io/name=moonlander") -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.get("pods", "-n", NS, "-l", selector)["items"]
        return [p for p in items if not p["metadata"].get("deletionTimestamp")]

    def pod_kubeconfig(self, cluster: str) -> str:
        """``cluster``'s admin kubeconfig, with the address pods reach it at."""
        c = self.plane.clusters[cluster]
        return c.kubeconfig.read_text().replace(c.url, self.node.pod_url(cluster))


def wait(probe: Any, timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            result = probe()
            if result:
                return result
            last = result
        except (AssertionError, KeyError, IndexError, ValueError) as err:
            last = err
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}: {last!r}")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeEnv]:
    archive = build_image()
    before = host_state()
    work = tmp_path_factory.mktemp("node")
    images = [(archive, "localhost/moonlander")]
    started = time.monotonic()
    try:
        with devnode.running(work, ["parent", CHILD], images) as (plane, node):
            print(
                f"node: plane and node up in {time.monotonic() - started:.1f}s "
                f"(node {node.timings['start']:.1f}s; "
                + ", ".join(f"{k} {v:.1f}s" for k, v in node.timings.items() if k != "start")
                + ")"
            )
            yield NodeEnv(plane, node, work, _version())
    except ControlPlaneError as err:
        pytest.fail(f"the node did not start: {err}", pytrace=False)
    after = host_state()
    assert after == before, "the node left the host changed"


def test_a_killed_node_is_cleaned_up(tmp_path: Path) -> None:
    """``dev-clusters up --node`` killed outright (no teardown runs) with a pod running: its
    containers outlive it, and the next node (here clean_up_killed_node) puts the host
    back from the state the node saved. Runs before the module's node starts."""
    before = host_state()
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        up = subprocess.Popen(
            [
                *(sys.executable, "-m", "moonlander_dev", "dev-clusters", "up", "--node"),
                *("--dir", str(tmp_path / "up"), "--clusters", "parent"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait(lambda: b"ready:" in log.read_bytes() or up.poll() is not None, 300, "node up")
        assert up.poll() is None, log.read_text()
        kubeconfig = tmp_path / "up" / "clusters" / "parent.kubeconfig"
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "sleeper", "namespace": "default"},
            "spec": {
                "containers": [
                    {
                        "name": "pause",
                        "image": devnode.SANDBOX_IMAGE,
                        "imagePullPolicy": "Never",
                        "resources": {"limits": {"memory": "16Mi"}},
                    }
                ]
            },
        }

        def running() -> bool:
            subprocess.run(
                [_kubectl(), f"--kubeconfig={kubeconfig}", "apply", "-f", "-"],
                input=json.dumps(pod),
                capture_output=True,
                text=True,
                check=False,
            )
            out = subprocess.run(
                [_kubectl(), f"--kubeconfig={kubeconfig}", "get", "pod", "sleeper", "-o", "json"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout
            return bool(out) and json.loads(out)["status"].get("phase") == "Running"

        wait(running, 120, "pod sleeper Running")
    finally:
        up.kill()  # SIGKILL: no teardown
        up.wait()
    socket_path = tmp_path / "up" / "node" / "containerd" / "containerd.sock"
    assert devnode._shims_of(socket_path), "the pod's shim should outlive the node"
    assert Path(f"/sys/class/net/{devnode.BRIDGE}").exists()
    assert devnode.clean_up_killed_node() is True
    assert not devnode._shims_of(socket_path)
    assert host_state() == before


def _kubectl() -> str:
    from moonlander_dev.clusters import find_assets

    return str(find_assets() / "kubectl")


def test_helm_install_runs_the_image_and_lands_pattern_a(env: NodeEnv) -> None:
    env.run("kubectl", "create", "namespace", NS)
    env.run(
        "kubectl",
        "-n",
        NS,
        "create",
        "secret",
        "generic",
        "moonlander-parent-kubeconfig",
        "--from-file=kubeconfig=/dev/stdin",
        input=env.pod_kubeconfig("parent"),
    )
    started = time.monotonic()
    env.run(
        "helm",
        "install",
        RELEASE,
        str(CHART),
        "-n",
        NS,
        "--set",
        "image.repository=localhost/moonlander",
        "--set",
        f"image.tag={env.image_tag}",
        "--set",
        "image.pullPolicy=Never",
        # /metrics answers tokens RBAC allows (metrics.auth, on by default): this one's.
        "--set",
        f"metrics.readerServiceAccounts[0].name={SCRAPER}",
        "--set",
        f"metrics.readerServiceAccounts[0].namespace={NS}",
        "--wait",
        "--timeout=180s",
    )
    ready_in = time.monotonic() - started
    # The chart's default: two replicas (one leads, one stands by), both Ready.
    pods = env.pods()
    assert len(pods) == 2, [p["metadata"]["name"] for p in pods]
    for pod in pods:
        status = pod["status"]
        assert [c["ready"] for c in status["containerStatuses"]] == [True], status
        assert ready(pod)
    # The PodDisruptionBudget and the NetworkPolicy, as the API server stored them. (The
    # node's kube-controller-manager runs no disruption controller, and its CNI, the bridge
    # plugin, enforces no NetworkPolicy: what they do is not exercised here.)
    pdb = env.get("poddisruptionbudget", "-n", NS, RELEASE)
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pods[0]["metadata"]["labels"].items()
    policy = env.get("networkpolicy", "-n", NS, RELEASE)
    assert [r["ports"][0]["port"] for r in policy["spec"]["ingress"]] == ["metrics", "health"]
    pod = pods[0]
    status = pod["status"]
    print(f"\nhelm install: pods {[p['metadata']['name'] for p in pods]} Ready in {ready_in:.1f}s")

    # What really runs: the container's process, as the kubelet and runc made it.
    container = status["containerStatuses"][0]["containerID"].split("://", 1)[1]
    pid = process_of(env, container)
    proc_status = Path(f"/proc/{pid}/status").read_text()
    uids = next(line for line in proc_status.splitlines() if line.startswith("Uid:")).split()
    assert uids[1:] == ["65532"] * 4, uids
    assert "NoNewPrivs:\t1" in proc_status
    assert "CapEff:\t0000000000000000" in proc_status
    root = next(
        line.split()
        for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
        if line.split()[4] == "/"
    )
    assert "ro" in root[5].split(","), root
    cgroup = Path(f"/proc/{pid}/cgroup").read_text()
    assert "memory:/moonlander-node/kubepods/" in cgroup, cgroup
    limit = memory_limit(cgroup)
    assert limit == 256 << 20, limit

    land_pattern_a(env)
    # The shipped RBAC is enough: nothing the controller asked for was forbidden.
    time.sleep(3)
    denied = [line for p in pods for line in pod_log(env, p) if "forbidden" in line.lower()]
    assert not denied, denied[:3]


def pod_log(env: NodeEnv, pod: dict[str, Any]) -> list[str]:
    meta = pod["metadata"]
    logs = env.node.directory / "pod-logs" / f"{meta['namespace']}_{meta['name']}_{meta['uid']}"
    return [line for f in sorted(logs.glob("*/*.log")) for line in f.read_text().splitlines()]


def process_of(env: NodeEnv, container: str) -> int:
    out = subprocess.run(
        ["ctr", "--address", str(env.node.socket), "-n", "k8s.io", "tasks", "ls"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for line in out.splitlines()[1:]:
        task, pid, state = line.split()
        if task == container:
            assert state == "RUNNING", line
            return int(pid)
    raise AssertionError(f"no task {container}:\n{out}")


def memory_limit(cgroup: str) -> int:
    path = next(
        line.split(":", 2)[2] for line in cgroup.splitlines() if line.split(":")[1] == "memory"
    )
    return int(Path(f"/sys/fs/cgroup/memory{path}/memory.limit_in_bytes").read_text())


def landing_ready(env: NodeEnv) -> bool:
    obj = env.get("landing", "-n", "harvey-system", "talos-root-access")
    conds = obj.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


def landed_kubeconfig(env: NodeEnv) -> str:
    secret = env.get("secret", "-n", "crossplane-system", "talos-root-kubeconfig", cluster=CHILD)
    return base64.b64decode(secret["data"]["kubeconfig"]).decode()


def landed_secret_restored(env: NodeEnv, interval: float = 0.5) -> None:
    """Deletes the landed Secret in harvey and waits for the controller's pod to land it again:
    the pod at work is the one that repairs it."""
    env.run(
        "kubectl",
        "-n",
        "crossplane-system",
        "delete",
        "secret",
        "talos-root-kubeconfig",
        cluster=CHILD,
    )
    wait(lambda: landed_kubeconfig(env), 60, "the landed Secret back", interval=interval)


# What the API server answers (503) for a custom resource whose CRD helm has just established
# but whose storage it is still setting up.
CRD_NOT_SERVED_YET = "There can be a delay between when CustomResourceDefinitions are created"


def apply_when_served(env: NodeEnv, *files: Path, timeout: float = 30.0) -> None:
    """``kubectl apply``, tried again only while the API server says the CRD is not served
    yet; any other error fails at once."""
    args = ["kubectl", "apply", *(arg for f in files for arg in ("-f", str(f)))]
    deadline = time.monotonic() + timeout
    while True:
        try:
            env.run(*args)
            return
        except AssertionError as err:
            if CRD_NOT_SERVED_YET not in str(err) or time.monotonic() > deadline:
                raise
        time.sleep(0.5)


def land_pattern_a(env: NodeEnv) -> None:
    """Pattern A verbatim: harvey's admin kubeconfig in harvey-system (as CozyStack keeps
    it), the policy, the Landing; then the landed kubeconfig lists the parent's namespaces."""
    env.run("kubectl", "create", "namespace", "harvey-system")
    env.run(
        "kubectl",
        "-n",
        "harvey-system",
        "create",
        "secret",
        "generic",
        "kubernetes-harvey-admin-kubeconfig",
        "--from-file=super-admin.conf=/dev/stdin",
        input=env.pod_kubeconfig(CHILD),
    )
    started = time.monotonic()
    apply_when_served(env, PATTERN_A / "policy.yaml", PATTERN_A / "landing.yaml")
    wait(lambda: landing_ready(env), 60, "Landing harvey-system/talos-root-access Ready")
    print(f"Pattern A: Landing Ready {time.monotonic() - started:.1f}s after kubectl apply")
    landed = env.work / "landed.kubeconfig"
    landed.write_text(landed_kubeconfig(env))
    proc = subprocess.run(
        [env.tool("kubectl"), f"--kubeconfig={landed}", "get", "namespaces", "-o", "name"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "namespace/harvey-system" in proc.stdout.split()


def test_metrics_from_the_pod_ip(env: NodeEnv) -> None:
    """/metrics answers a token the chart's metrics-reader ClusterRole is bound to, and no
    caller without a token (metrics.auth, the API server's TokenReview and
    SubjectAccessReview)."""
    pod = env.pods()[0]  # every replica serves /metrics
    url = f"http://{pod['status']['podIP']}:8080/metrics"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=10)
    assert refused.value.code == 401
    env.run("kubectl", "-n", NS, "create", "serviceaccount", SCRAPER)
    token = env.run("kubectl", "-n", NS, "create", "token", SCRAPER).strip()
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310 - http only
        text = resp.read().decode()
    assert resp.status == 200
    samples = [line for line in text.splitlines() if line.startswith("moonlander_")]
    assert samples, text[:2000]
    print(f"\n/metrics from {url}: {len(samples)} moonlander_ samples")


class ReadyWatch:
    """Polls the Landing's Ready condition in the background and remembers any lapse."""

    def __init__(self, env: NodeEnv) -> None:
        self.env = env
        self.lapses: list[str] = []
        self.checks = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if not landing_ready(self.env):
                    self.lapses.append(time.strftime("%H:%M:%S"))
            except AssertionError as err:
                self.lapses.append(str(err))
            self.checks += 1
            self._stop.wait(0.2)

    def __enter__(self) -> ReadyWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_helm_upgrade_changing_an_arg_keeps_landings_ready(env: NodeEnv) -> None:
    old = {p["metadata"]["name"] for p in env.pods()}
    started = time.monotonic()
    with ReadyWatch(env) as watch:
        env.run(
            "helm",
            "upgrade",
            RELEASE,
            str(CHART),
            "-n",
            NS,
            "--reuse-values",
            "--set",
            "extraArgs={--workers=8}",
            "--wait",
            "--timeout=180s",
        )
        wait(
            lambda: not old & {p["metadata"]["name"] for p in env.pods()} and len(env.pods()) == 2,
            120,
            "the old pods gone",
        )
        # The landed Secret is repaired by a new pod: they are the ones at work.
        landed_secret_restored(env)
    new = env.pods()
    for pod in new:
        assert "--workers=8" in pod["spec"]["containers"][0]["args"]
    assert watch.checks > 10
    assert watch.lapses == [], watch.lapses
    print(
        f"\nhelm upgrade: rolled to {[p['metadata']['name'] for p in new]} in "
        f"{time.monotonic() - started:.1f}s, Landing Ready in all {watch.checks} checks"
    )


def diagnose(env: NodeEnv) -> str:
    """The Lease, the pods and the end of each container's log."""
    lines = [json.dumps(env.get("lease", "-n", NS, RELEASE).get("spec"))]
    for pod in env.get("pods", "-n", NS)["items"]:
        lines.append(f"{pod['metadata']['name']}: {json.dumps(pod['status'].get('conditions'))}")
    for log in sorted((env.node.directory / "pod-logs").glob(f"{NS}_*/*/*.log")):
        lines.append(f"--- {log}")
        text = log.read_text(errors="replace").splitlines()
        lines.extend([line[:300] for line in text if "customresourcedefinitions" not in line][-15:])
    return "\n".join(lines)


def lease_holder(env: NodeEnv) -> str:
    return str(env.get("lease", "-n", NS, RELEASE)["spec"].get("holderIdentity") or "")


def change_landing(env: NodeEnv) -> int:
    """A spec change the controller must reconcile (spec.server set to what the parent
    kubeconfig already names: the landed content stays the same); returns the generation."""
    server = env.node.pod_url("parent")
    landing = env.get("landing", "-n", "harvey-system", "talos-root-access")
    if landing["spec"].get("server") == server:
        server += "/"  # a different spelling of the same URL: the generation still moves
    patch = json.dumps({"spec": {"server": server}})
    out = env.run(
        "kubectl",
        "-n",
        "harvey-system",
        "patch",
        "landing",
        "talos-root-access",
        "--type=merge",
        "-p",
        patch,
        "-o",
        "json",
    )
    return int(json.loads(out)["metadata"]["generation"])


def reconciled(env: NodeEnv, generation: int) -> bool:
    """Ready=True for ``generation`` (the Ready condition's observedGeneration)."""
    obj = env.get("landing", "-n", "harvey-system", "talos-root-access")
    conds = obj.get("status", {}).get("conditions", [])
    return any(
        c["type"] == "Ready" and c["status"] == "True" and c.get("observedGeneration") == generation
        for c in conds
    )


def leading_pods(env: NodeEnv) -> tuple[str, str]:
    """(leader, standby) among the two pods, once the Lease names one of them."""
    pods = wait(lambda: len(env.pods()) == 2 and env.pods(), 120, "two pods")
    names = {p["metadata"]["name"] for p in pods}
    # The Lease may still name a pod an upgrade replaced until one of these two takes it.
    holder = wait(
        lambda: (h := lease_holder(env)) and any(n in h for n in names) and h, 60, "a leader"
    )
    [leader] = [n for n in names if n in holder]
    [standby] = names - {leader}
    return leader, standby


def test_two_replicas_the_standby_takes_over(env: NodeEnv) -> None:
    """The chart's default two replicas: the leader's pod deleted (SIGTERM: it releases the
    Lease, the standby takes it) and then the new leader's process killed outright
    (SIGKILL: nothing is released), then the leader's process stopped (SIGSTOP: the Lease
    must expire). Each time, a Landing change made right after is reconciled by whoever
    leads next. The times are from the signal."""
    figures: list[tuple[str, str, str, float | None, float]] = []
    leader, standby = leading_pods(env)
    # Cordoned, the node takes no replacement pod: the standby is the only one who can lead.
    env.run("kubectl", "cordon", devnode.NODE_NAME)
    try:
        started = time.monotonic()
        env.run("kubectl", "-n", NS, "delete", "pod", leader, "--wait=false")
        generation = change_landing(env)
        try:
            wait(lambda: standby in lease_holder(env), 60, f"{standby} leading", interval=0.1)
            takeover = time.monotonic() - started
            wait(lambda: reconciled(env, generation), 60, "the change reconciled", interval=0.1)
        except AssertionError as err:
            raise AssertionError(f"{err}\n{diagnose(env)}") from None
        figures.append(("pod deleted", leader, standby, takeover, time.monotonic() - started))
    finally:
        env.run("kubectl", "uncordon", devnode.NODE_NAME)

    leader, standby = leading_pods(env)
    wait(lambda: all(ready(p) for p in env.pods()), 120, "both pods Ready")
    [pod] = [p for p in env.pods() if p["metadata"]["name"] == leader]
    container = pod["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
    started = time.monotonic()
    os.kill(process_of(env, container), signal.SIGKILL)
    generation = change_landing(env)
    try:
        # The kubelet restarts the killed container, whose identity (pod name and pid 1) is
        # the Lease holder's: it may lead again at once, or the standby after the Lease
        # expires (15 s). Either way the change must be reconciled.
        wait(lambda: reconciled(env, generation), 90, "the change reconciled", interval=0.1)
    except AssertionError as err:
        raise AssertionError(f"{err}\n{diagnose(env)}") from None
    change = time.monotonic() - started
    holder = lease_holder(env)
    assert any(p["metadata"]["name"] in holder for p in env.pods()), holder
    figures.append(("process killed", leader, holder, None, change))
    assert landing_ready(env)
    wait(lambda: len(env.pods()) == 2 and all(ready(p) for p in env.pods()), 120, "two pods")

    # A leader that hangs (SIGSTOP: no renewal, no release, no exit, as on a partitioned
    # node): the standby takes the Lease once it expires (15 s); the old leader, resumed,
    # finds the Lease gone and exits.
    leader, standby = leading_pods(env)
    [pod] = [p for p in env.pods() if p["metadata"]["name"] == leader]
    container = pod["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
    pid = process_of(env, container)
    started = time.monotonic()
    os.kill(pid, signal.SIGSTOP)
    try:
        generation = change_landing(env)
        wait(lambda: standby in lease_holder(env), 90, f"{standby} leading", interval=0.1)
        takeover = time.monotonic() - started
        wait(lambda: reconciled(env, generation), 60, "the change reconciled", interval=0.1)
        figures.append(("process hung", leader, standby, takeover, time.monotonic() - started))
    except AssertionError as err:
        raise AssertionError(f"{err}\n{diagnose(env)}") from None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    assert landing_ready(env)
    wait(lambda: len(env.pods()) == 2 and all(ready(p) for p in env.pods()), 180, "two pods")
    assert standby in lease_holder(env)
    for how, old, new, lease, change in figures:
        held = f" {lease:.1f}s after the signal" if lease is not None else ""
        print(
            f"\nfailover ({how}, was {old}): {new} holds the Lease{held}; a Landing change "
            f"made then was reconciled {change:.1f}s after the signal"
        )


def as_user(
    env: NodeEnv, user: str, *args: str, input_: str | None = None
) -> subprocess.CompletedProcess[str]:
    """kubectl impersonating ``user`` (the admin may impersonate)."""
    kubeconfig = env.plane.clusters["parent"].kubeconfig
    return subprocess.run(
        [env.tool("kubectl"), f"--kubeconfig={kubeconfig}", f"--as={user}", *args],
        capture_output=True,
        text=True,
        input=input_,
        timeout=90,
        check=False,
    )


def test_namespace_editors_manage_landings_through_the_aggregated_roles(env: NodeEnv) -> None:
    """The chart's ClusterRoles labelled aggregate-to-edit/view, merged into the built-in
    edit and view roles by kube-controller-manager's clusterrole-aggregation controller: a
    ServiceAccount bound to edit in one namespace creates and deletes a Landing there and
    may create LandingSets, not LandingPolicies, nor Landings elsewhere; view reads."""
    ns = "team-edit"
    editor, viewer = (f"system:serviceaccount:{ns}:{n}" for n in ("editor", "viewer"))
    env.run("kubectl", "create", "namespace", ns)
    for name, role in (("editor", "edit"), ("viewer", "view")):
        env.run("kubectl", "-n", ns, "create", "serviceaccount", name)
        env.run(
            "kubectl", "-n", ns, "create", "rolebinding", name,
            f"--clusterrole={role}", f"--serviceaccount={ns}:{name}",
        )  # fmt: skip
    # The aggregation is asynchronous: wait for the built-in roles to carry the rules.
    for role, verb in (("edit", "create"), ("view", "list")):
        wait(
            lambda role=role, verb=verb: any(
                "landings" in r.get("resources", []) and verb in r["verbs"]
                for r in env.get("clusterrole", role)["rules"]
            ),
            60,
            f"the built-in {role} role aggregating Landings",
        )
    landing = {
        "apiVersion": "moons.kingdon.ci/v1alpha1",
        "kind": "Landing",
        "metadata": {"name": "edited", "namespace": ns},
        "spec": {"direction": "ChildToParent", "writeKubeconfigSecretName": "edited"},
    }
    created = as_user(env, editor, "create", "-f", "-", input_=json.dumps(landing))
    assert created.returncode == 0, created.stderr

    def can(user: str, verb: str, resource: str, namespace: str = ns, *extra: str) -> str:
        out = as_user(env, user, "auth", "can-i", verb, resource, "-n", namespace, *extra)
        return out.stdout.strip()

    assert can(editor, "create", "landingsets.moons.kingdon.ci") == "yes"
    assert can(editor, "update", "landings.moons.kingdon.ci") == "yes"
    # Status is the controller's; policies are cluster-admin's; other namespaces are not his.
    assert can(editor, "update", "landings.moons.kingdon.ci", ns, "--subresource=status") == "no"
    assert can(editor, "create", "landingpolicies.moons.kingdon.ci") == "no"
    assert can(editor, "create", "landings.moons.kingdon.ci", "harvey-system") == "no"
    policy = {
        "apiVersion": "moons.kingdon.ci/v1alpha1",
        "kind": "LandingPolicy",
        "metadata": {"name": "team-edit-grants-itself"},
        "spec": {"namespaces": {"names": [ns]}, "parentCredential": True},
    }
    refused = as_user(env, editor, "create", "-f", "-", input_=json.dumps(policy))
    assert refused.returncode != 0 and "forbidden" in refused.stderr, refused.stderr

    listed = as_user(env, viewer, "-n", ns, "get", "landings", "-o", "name")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == ["landing.moons.kingdon.ci/edited"]
    assert as_user(env, viewer, "-n", ns, "get", "landingsets").returncode == 0
    assert can(viewer, "create", "landings.moons.kingdon.ci") == "no"
    assert can(viewer, "list", "landingpolicies.moons.kingdon.ci") == "no"

    deleted = as_user(env, editor, "-n", ns, "delete", "landing", "edited", "--timeout=60s")
    assert deleted.returncode == 0, deleted.stderr
    env.run("kubectl", "delete", "namespace", ns, "--wait=false")


def ready(pod: dict[str, Any]) -> bool:
    conds = pod["status"].get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


def test_kustomize_config_default(env: NodeEnv) -> None:
    out = env.run("helm", "uninstall", RELEASE, "-n", NS, "--wait", "--timeout=120s")
    wait(lambda: not env.pods(), 120, "the Helm release's pods gone")
    # crds.keep: the CRDs, and so the Landings, outlive the release.
    assert "kept due to the resource policy" in out
    crd = env.get("crd", "landings.moons.kingdon.ci")
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert env.get("landing", "-n", "harvey-system", "talos-root-access")
    overlay = env.work / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(ROOT / "config" / "default", overlay)],
                "images": [
                    {
                        "name": "ghcr.io/kingdonb/moonlander",
                        "newName": "localhost/moonlander",
                        "newTag": env.image_tag,
                    }
                ],
            }
        )
    )
    # kustomize refuses files outside the overlay's root unless told otherwise.
    rendered = subprocess.run(
        [env.tool("kubectl"), "kustomize", str(overlay), "--load-restrictor=LoadRestrictionsNone"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert rendered.returncode == 0, rendered.stderr
    started = time.monotonic()
    env.run(
        "kubectl", "apply", "--server-side", "--force-conflicts", "-f", "-", input=rendered.stdout
    )
    env.run(
        "kubectl",
        "-n",
        NS,
        "rollout",
        "status",
        "deployment/moonlander-controller",
        "--timeout=180s",
    )
    [pod] = wait(lambda: len(env.pods()) == 1 and env.pods(), 60, "one pod")
    assert pod["spec"]["containers"][0]["image"] == f"localhost/moonlander:{env.image_tag}"
    print(f"\nkubectl apply -k config/default: pod Ready in {time.monotonic() - started:.1f}s")
    landed_secret_restored(env)
    wait(lambda: landing_ready(env), 60, "Landing Ready")
