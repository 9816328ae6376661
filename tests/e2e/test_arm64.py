"""The linux/arm64 image reconciles (issue 25 item 5): run under qemu, it lands Pattern A.

``hack/image/build.sh`` builds the arm64 image (under qemu-user-static, registered with
binfmt_misc with the F flag by ``hack/image/deps.sh``) into its private buildah storage. The
dev node's containerd (Debian's 1.6) does not run it: its CRI resolves every image for the
host's platform only (``toContainerdImage`` uses the client's default platform matcher; a
foreign platform is still an open proposal upstream, containerd/containerd#13927), so an
arm64-only image has no config it can read. So the container is run by runc, from the image's root filesystem as buildah mounts it,
with the host's network, against a control plane of its own (parent and harvey): the
controller the image's ENTRYPOINT starts, as the image's user, with a read-only root.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from moonlander_dev.clusters import ClusterSpec, ControlPlane, ControlPlaneError, free_port

from .test_node import ROOT, _version, wait

pytestmark = pytest.mark.timeout(2400)

ARCH = "arm64"
MACHINE = "aarch64"
PATTERN_A = ROOT / "examples" / "pattern-a"
CHILD = "harvey"
CONTROLLER_NS = "moonlander-system"


def image_cache() -> Path:
    base = os.environ.get("MOONLANDER_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "moonlander"
    )
    return Path(base) / "image"


def buildah_env() -> dict[str, str]:
    """hack/image/build.sh's private containers configuration (it writes these files)."""
    conf = image_cache() / "conf"
    return {
        **os.environ,
        "CONTAINERS_CONF": str(conf / "containers.conf"),
        "CONTAINERS_STORAGE_CONF": str(conf / "storage.conf"),
        "CONTAINERS_REGISTRIES_CONF": str(conf / "registries.conf"),
    }


def buildah(*args: str) -> str:
    proc = subprocess.run(
        ["buildah", *args], env=buildah_env(), capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, f"buildah {' '.join(args)}: {proc.stderr}"
    return proc.stdout.strip()


def build_arm64_image() -> str:
    """hack/image/build.sh for linux/arm64 only (it runs ``moonlander version`` in it under
    qemu); the image's name in buildah's storage."""
    out = image_cache().parent / "node" / "image-arm64"
    env = {**os.environ, "IMAGE_ARCHES": ARCH, "IMAGE_OUT": str(out)}
    started = time.monotonic()
    proc = subprocess.run(
        ["nice", "-n", "10", "bash", str(ROOT / "hack" / "image" / "build.sh")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"hack/image/build.sh (arm64) failed:\n{proc.stderr[-3000:]}", pytrace=False)
    line = next(x for x in proc.stdout.splitlines() if x.startswith(f"{ARCH}:"))
    print(f"\narm64 image: {time.monotonic() - started:.0f}s ({line})")
    return f"localhost/moonlander:{_version()}-{ARCH}"


def binfmt_flags() -> str:
    entry = Path(f"/proc/sys/fs/binfmt_misc/qemu-{MACHINE}")
    assert entry.exists(), f"{entry} missing: hack/image/deps.sh registers it"
    lines = entry.read_text().splitlines()
    assert lines[0] == "enabled", lines
    return next(x.split()[1] for x in lines if x.startswith("flags:"))


@dataclass
class Container:
    """One runc container of the arm64 image's controller."""

    id: str
    root: Path  # runc's state directory (private)
    bundle: Path
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def runc(self, *args: str, timeout: float = 60) -> str:
        proc = subprocess.run(
            ["runc", "--root", str(self.root), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert proc.returncode == 0, f"runc {' '.join(args)}: {proc.stderr}"
        return proc.stdout

    def state(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.runc("state", self.id))
        return result

    def exec(self, *args: str) -> str:
        return self.runc("exec", self.id, *args, timeout=120).strip()

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def oci_spec(
    rootfs: Path, image_config: dict[str, Any], args: list[str], mounts: dict[str, Path]
) -> dict[str, Any]:
    """The container as a Pod of the chart would have it: the image's user and environment,
    read-only root, /tmp a tmpfs, no capabilities, no new privileges; the host's network."""
    user = image_config.get("User", "65532:65532")
    uid, gid = (int(x) for x in user.split(":"))
    env = [*image_config.get("Env", []), "POD_NAMESPACE=" + CONTROLLER_NS]
    binds = [
        {"destination": dest, "type": "bind", "source": str(src), "options": ["rbind", "ro"]}
        for dest, src in mounts.items()
    ]
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": uid, "gid": gid},
            "args": [*image_config.get("Entrypoint", []), *args],
            "env": env,
            "cwd": image_config.get("WorkingDir") or "/",
            "capabilities": {k: [] for k in ("bounding", "effective", "permitted")},
            "noNewPrivileges": True,
        },
        "root": {"path": str(rootfs), "readonly": True},
        "hostname": "moonlander-arm64",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
            {
                "destination": "/dev/pts",
                "type": "devpts",
                "source": "devpts",
                "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
            },
            {
                "destination": "/dev/shm",
                "type": "tmpfs",
                "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
            },
            {
                "destination": "/sys",
                "type": "sysfs",
                "source": "sysfs",
                "options": ["nosuid", "noexec", "nodev", "ro"],
            },
            {
                "destination": "/tmp",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "nodev", "mode=1777", "size=65536k"],
            },
            *binds,
        ],
        "linux": {
            # No network namespace: the host's, where the API servers listen on loopback.
            "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount")],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys"],
        },
    }


@dataclass
class Arm64Env:
    plane: ControlPlane
    container: Container
    health_port: int
    started: float  # when runc started the container

    def run(self, *args: str, cluster: str = "parent", input: str | None = None) -> str:
        assert self.plane.assets is not None
        kubeconfig = self.plane.clusters[cluster].kubeconfig
        proc = subprocess.run(
            [str(self.plane.assets / args[0]), f"--kubeconfig={kubeconfig}", *args[1:]],
            capture_output=True,
            text=True,
            input=input,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, f"{' '.join(args)}: {proc.stderr}{proc.stdout}"
        return proc.stdout

    def get(self, *args: str, cluster: str = "parent") -> Any:
        return json.loads(self.run("kubectl", "get", "-o", "json", *args, cluster=cluster))


@pytest.fixture(scope="module")
def arm64(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Arm64Env]:
    if "F" not in binfmt_flags():
        pytest.fail("binfmt_misc's qemu-aarch64 lacks the F flag", pytrace=False)
    image = build_arm64_image()
    assert (
        buildah("inspect", "--type", "image", "--format", "{{.OCIv1.Architecture}}", image) == ARCH
    )
    config = json.loads(buildah("inspect", "--type", "image", image))["OCIv1"]["config"]
    work = tmp_path_factory.mktemp("arm64")
    plane = ControlPlane(work / "clusters", [ClusterSpec("parent"), ClusterSpec(CHILD)])
    try:
        plane.start()
    except ControlPlaneError as err:
        pytest.fail(f"the control plane did not start: {err}", pytrace=False)
    ctr = buildah("from", "--arch", ARCH, "--pull=never", "--quiet", image)
    container: Container | None = None
    try:
        rootfs = Path(buildah("mount", ctr))
        # The controller's files, readable by the image's user (mode 0644 copies; the
        # kubeconfigs are these throwaway clusters' admin ones).
        files = work / "files"
        files.mkdir()
        mounts = {}
        for dest, src in {
            "/etc/moonlander/kubeconfig": plane.clusters["parent"].kubeconfig,
            "/etc/moonlander/parent-kubeconfig": plane.clusters["parent"].kubeconfig,
        }.items():
            copy = files / Path(dest).name
            shutil.copy(src, copy)
            copy.chmod(0o644)
            mounts[dest] = copy
        health = free_port()
        args = [
            "--log-format=text",
            "run",
            "--kubeconfig=/etc/moonlander/kubeconfig",
            "--parent-kubeconfig=/etc/moonlander/parent-kubeconfig",
            "--allow-loopback",  # the clusters listen on loopback
            f"--controller-namespace={CONTROLLER_NS}",
            f"--health-port={health}",
            f"--metrics-port={free_port()}",
            "--bind-address=127.0.0.1",
        ]
        bundle = work / "bundle"
        bundle.mkdir()
        (bundle / "config.json").write_text(json.dumps(oci_spec(rootfs, config, args, mounts)))
        container = Container(
            f"moonlander-arm64-{os.getpid()}", work / "runc", bundle, work / "controller.log"
        )
        env = Arm64Env(plane, container, health, 0.0)
        for crd in sorted((ROOT / "config" / "crd" / "bases").glob("*.yaml")):
            env.run("kubectl", "apply", "--server-side", "-f", str(crd))
        for crd in sorted((ROOT / "config" / "crd" / "bases").glob("*.yaml")):
            name = yaml.safe_load(crd.read_text())["metadata"]["name"]
            env.run("kubectl", "wait", "--for=condition=Established", f"crd/{name}")
        env.run("kubectl", "create", "namespace", CONTROLLER_NS)
        with container.log.open("wb") as log:
            env.started = time.monotonic()
            container.popen = subprocess.Popen(
                [
                    "runc",
                    "--root",
                    str(container.root),
                    "run",
                    "--bundle",
                    str(bundle),
                    container.id,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        yield env
    finally:
        if container is not None and container.popen is not None:
            subprocess.run(
                ["runc", "--root", str(container.root), "kill", container.id, "TERM"],
                capture_output=True,
                check=False,
            )
            try:
                container.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                subprocess.run(
                    ["runc", "--root", str(container.root), "kill", container.id, "KILL"],
                    capture_output=True,
                    check=False,
                )
                container.popen.wait(timeout=30)
            subprocess.run(
                ["runc", "--root", str(container.root), "delete", "--force", container.id],
                capture_output=True,
                check=False,
            )
        subprocess.run(
            ["buildah", "umount", ctr], env=buildah_env(), capture_output=True, check=False
        )
        subprocess.run(["buildah", "rm", ctr], env=buildah_env(), capture_output=True, check=False)
        plane.stop()


def landing_ready(env: Arm64Env) -> dict[str, Any] | None:
    landing = env.get("landing", "-n", "harvey-system", "talos-root-access")
    conds = landing.get("status", {}).get("conditions", [])
    if any(c["type"] == "Ready" and c["status"] == "True" for c in conds):
        result: dict[str, Any] = landing
        return result
    return None


def test_arm64_image_lands_pattern_a(arm64: Arm64Env) -> None:
    env, container = arm64, arm64.container

    def running() -> bool:
        assert container.popen is not None
        if container.popen.poll() is not None:
            raise AssertionError(f"the container exited:\n{container.log_tail()}")
        if "moonlander running" not in container.log.read_text(errors="replace"):
            return False
        url = f"http://127.0.0.1:{env.health_port}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return int(resp.status) == 200
        except OSError:
            return False

    try:
        wait(running, 300, "the arm64 controller running", interval=1)
    except AssertionError as err:
        raise AssertionError(f"{err}\n{container.log_tail()}") from None
    up = time.monotonic() - env.started

    # What really runs: aarch64 code, under qemu. Inside, the container's own tools say so;
    # outside, the kernel started the controller's process through binfmt_misc's qemu.
    state = container.state()
    assert state["status"] == "running", state
    pid = int(state["pid"])
    assert container.exec("uname", "-m") == MACHINE
    assert container.exec("python", "-c", "import platform; print(platform.machine())") == MACHINE
    exe = os.readlink(f"/proc/{pid}/exe")
    assert "qemu" in exe and MACHINE in exe, exe
    status = Path(f"/proc/{pid}/status").read_text()
    uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()
    assert uids[1:] == ["65532"] * 4, uids
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert b"run" in cmdline, cmdline

    # Pattern A verbatim: harvey's admin kubeconfig in harvey-system, the policy, the Landing.
    env.run("kubectl", "create", "namespace", "harvey-system")
    env.run("kubectl", "create", "namespace", "crossplane-system", cluster=CHILD)
    env.run(
        "kubectl",
        *("-n", "harvey-system", "create", "secret", "generic"),
        "kubernetes-harvey-admin-kubeconfig",
        "--from-file=super-admin.conf=/dev/stdin",
        input=env.plane.clusters[CHILD].kubeconfig.read_text(),
    )
    applied = time.monotonic()
    env.run(
        "kubectl",
        *("apply", "-f", str(PATTERN_A / "policy.yaml"), "-f", str(PATTERN_A / "landing.yaml")),
    )
    try:
        landing = wait(lambda: landing_ready(env), 300, "Landing talos-root-access Ready")
    except AssertionError as err:
        raise AssertionError(f"{err}\n{container.log_tail()}") from None
    ready_in = time.monotonic() - applied
    [cond] = [c for c in landing["status"]["conditions"] if c["type"] == "Ready"]
    assert cond["status"] == "True" and cond["observedGeneration"] == 1, cond

    secret = env.get("secret", "-n", "crossplane-system", "talos-root-kubeconfig", cluster=CHILD)
    kubeconfig = yaml.safe_load(base64.b64decode(secret["data"]["kubeconfig"]))
    [cluster] = kubeconfig["clusters"]
    assert cluster["cluster"]["server"] == env.plane.clusters["parent"].url
    assert secret["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "moonlander"
    # The landed kubeconfig works: it lists the parent's namespaces.
    landed = container.bundle.parent / "landed.kubeconfig"
    landed.write_text(base64.b64decode(secret["data"]["kubeconfig"]).decode())
    assert env.plane.assets is not None
    proc = subprocess.run(
        [str(env.plane.assets / "kubectl"), f"--kubeconfig={landed}", "get", "ns", "-o", "name"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "namespace/harvey-system" in proc.stdout.split()
    print(
        f"\narm64 controller (pid {pid}, {exe}, uname -m {MACHINE}) running {up:.1f}s after "
        f"runc run; Pattern A Ready {ready_in:.1f}s after kubectl apply "
        f"({time.monotonic() - env.started:.1f}s after the container started)"
    )
