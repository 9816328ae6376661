"""``moonlander demo``: the seed's Pattern A end to end on local clusters.

Starts two real clusters ("talos-root", where Moonlander runs, and the tenant "harvey"),
installs the CRD, runs the controller, creates CozyStack's admin kubeconfig Secret for
harvey, applies examples/pattern-a/landing.yaml, waits for Ready, then proves the landed
kubeconfig works: read from harvey's Secret, kubectl uses it to list the parent's
namespaces. Exits 0 only when all of that held.
"""

from __future__ import annotations

import base64
import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path

from moonlander.dev.clusters import ClusterSpec, ControlPlane, ControlPlaneError, repo_root

PARENT, CHILD = "talos-root", "harvey"


class DemoError(RuntimeError):
    pass


def _say(text: str) -> None:
    print(f"moonlander demo: {text}", flush=True)


def run_demo(directory: Path, *, keep: bool = False) -> int:
    root = repo_root()
    if root is None:
        print("the demo runs from a source checkout (it applies examples/)", file=sys.stderr)
        return 2
    directory = directory.resolve()
    plane = ControlPlane(directory / "clusters", [ClusterSpec(PARENT), ClusterSpec(CHILD)])
    controller: subprocess.Popen[bytes] | None = None
    started = time.monotonic()
    try:
        plane.start()
        assert plane.assets is not None
        kubectl = str(plane.assets / "kubectl")
        parent_kc = str(plane.clusters[PARENT].kubeconfig)
        child_kc = str(plane.clusters[CHILD].kubeconfig)
        _say(
            f"clusters up in {time.monotonic() - started:.1f}s: {PARENT} "
            f"{plane.clusters[PARENT].url}, {CHILD} {plane.clusters[CHILD].url} "
            f"({plane.clusters[PARENT].version})"
        )

        def k(kubeconfig: str, *args: str, stdin: str | None = None) -> str:
            proc = subprocess.run(
                [kubectl, "--kubeconfig", kubeconfig, *args],
                input=stdin,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            if proc.returncode != 0:
                raise DemoError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
            return proc.stdout

        crd = root / "config" / "crd" / "bases" / "moons.kingdon.ci_landings.yaml"
        k(parent_kc, "apply", "--server-side", "-f", str(crd))
        k(parent_kc, "wait", "--for=condition=Established", "crd/landings.moons.kingdon.ci")
        _say(f"installed the Landing CRD in {PARENT}")

        # What a Deployment mounts at /etc/moonlander/parent-kubeconfig.
        parent_file = directory / "parent-kubeconfig"
        parent_file.write_bytes(Path(parent_kc).read_bytes())
        parent_file.chmod(0o600)
        log_path = directory / "controller.log"
        with log_path.open("wb") as log:
            controller = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "moonlander",
                    "run",
                    f"--kubeconfig={parent_kc}",
                    f"--parent-kubeconfig={parent_file}",
                    "--allow-loopback",  # the local clusters listen on 127.0.0.1
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        _say(f"controller running (pid {controller.pid}, log {log_path})")

        # CozyStack's admin kubeconfig Secret for tenant "harvey", key admin.conf.
        k(parent_kc, "create", "namespace", "harvey-system")
        k(
            parent_kc,
            "-n",
            "harvey-system",
            "create",
            "secret",
            "generic",
            "kubernetes-harvey-admin-kubeconfig",
            f"--from-file=admin.conf={child_kc}",
        )
        landing = root / "examples" / "pattern-a" / "landing.yaml"
        applied_at = time.monotonic()
        k(parent_kc, "apply", "-f", str(landing))
        _say(f"applied {landing.relative_to(root)}")
        k(
            parent_kc,
            "-n",
            "harvey-system",
            "wait",
            "--for=condition=Ready",
            "--timeout=60s",
            "landing/talos-root-access",
        )
        ready_in = time.monotonic() - applied_at
        row = k(parent_kc, "-n", "harvey-system", "get", "landings", "--no-headers")
        _say(f"Ready in {ready_in:.2f}s: {' '.join(row.split())}")

        # The proof: take the kubeconfig from harvey's Secret and use it.
        data = json.loads(
            k(
                child_kc,
                "-n",
                "crossplane-system",
                "get",
                "secret",
                "talos-root-kubeconfig",
                "-o",
                "json",
            )
        )["data"]
        landed = directory / "landed-kubeconfig"
        landed.write_bytes(base64.b64decode(data["kubeconfig"]))
        landed.chmod(0o600)
        namespaces = k(str(landed), "get", "namespaces", "-o", "name").split()
        if "namespace/harvey-system" not in namespaces:
            raise DemoError(f"the landed kubeconfig did not reach {PARENT}: {namespaces}")
        _say(
            f"{CHILD}:crossplane-system/talos-root-kubeconfig reaches {PARENT}: "
            f"kubectl lists its namespaces ({', '.join(n.split('/')[1] for n in namespaces)})"
        )
        _say(f"success in {time.monotonic() - started:.1f}s")
        if keep:
            _say(f"kept running; kubeconfigs in {plane.directory}; Ctrl-C stops everything")
            with contextlib.suppress(KeyboardInterrupt):
                controller.wait()
        return 0
    except (DemoError, ControlPlaneError, subprocess.TimeoutExpired) as err:
        _say(f"FAILED: {err}")
        if controller is not None:
            _say(f"controller log: {directory / 'controller.log'}")
        return 1
    finally:
        if controller is not None and controller.poll() is None:
            controller.terminate()
            try:
                controller.wait(20)
            except subprocess.TimeoutExpired:
                controller.kill()
        plane.stop()
