"""``moonlander-dev demo``: the seed's Pattern A end to end on local clusters.

Starts two real clusters ("talos-root", where Moonlander runs, and the tenant "harvey"),
installs the CRDs (Landing, LandingPolicy), runs the controller, creates CozyStack's admin
kubeconfig Secret for harvey, then shows the secure default: examples/pattern-a/landing.yaml
alone is refused (``NotPermitted``: it would hand out the parent credential, which no
LandingPolicy has granted its namespace), and lands once examples/pattern-a/policy.yaml is
applied (the time from the policy to Ready is printed). Finally it proves the landed
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

from moonlander_dev.clusters import ClusterSpec, ControlPlane, ControlPlaneError, repo_root

PARENT, CHILD = "talos-root", "harvey"
# Where the controller would run in the parent: no LandingPolicy can make it a target.
CONTROLLER_NAMESPACE = "moonlander-system"
READY_REASON = '{.status.conditions[?(@.type=="Ready")].reason}'


class DemoError(RuntimeError):
    pass


def _say(text: str) -> None:
    print(f"moonlander-dev demo: {text}", flush=True)


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

        # Every CRD of config/crd/bases: Landing and LandingPolicy.
        bases = root / "config" / "crd" / "bases"
        crds = k(parent_kc, "apply", "--server-side", "-f", str(bases), "-o", "name").split()
        if len(crds) != len(list(bases.glob("*.yaml"))):
            raise DemoError(f"expected a CRD per file of {bases}, applied {crds}")
        k(parent_kc, "wait", "--for=condition=Established", *crds)
        names = ", ".join(sorted(c.rsplit("/", 1)[1] for c in crds))
        _say(f"installed the CRDs in {PARENT}: {names}")

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
                    f"--controller-namespace={CONTROLLER_NAMESPACE}",
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
        # The secure default: with no LandingPolicy, a ParentToChild Landing (which would hand
        # out the parent's credential) is refused, and says what the operator must grant.
        landing = root / "examples" / "pattern-a" / "landing.yaml"
        applied_at = time.monotonic()
        k(parent_kc, "apply", "-f", str(landing))
        _say(f"applied {landing.relative_to(root)} (no LandingPolicy yet)")
        k(
            parent_kc,
            "-n",
            "harvey-system",
            "wait",
            f"--for=jsonpath={READY_REASON}=NotPermitted",
            "--timeout=60s",
            "landing/talos-root-access",
        )
        refused_in = time.monotonic() - applied_at
        message = k(
            parent_kc,
            "-n",
            "harvey-system",
            "get",
            "landing/talos-root-access",
            "-o",
            'jsonpath={.status.conditions[?(@.type=="Ready")].message}',
        )
        row = k(parent_kc, "-n", "harvey-system", "get", "landings", "--no-headers")
        _say(
            f"refused in {refused_in:.2f}s (controller start-up included): {' '.join(row.split())}"
        )
        _say(f"  {message.strip()}")
        if k(
            child_kc,
            "get",
            "secrets",
            "-A",
            "-l",
            "app.kubernetes.io/managed-by=moonlander",
            "-o",
            "name",
        ).strip():
            raise DemoError(f"a refused Landing landed something in {CHILD}")
        _say(f"nothing landed in {CHILD}")

        # The operator grants harvey-system the parent credential: it lands. The wait is
        # already watching when the policy is created, so the time measured is the
        # controller's (from `kubectl apply` returning to Ready), not kubectl's start-up.
        policy = root / "examples" / "pattern-a" / "policy.yaml"
        waiter = subprocess.Popen(
            [
                kubectl,
                "--kubeconfig",
                parent_kc,
                "-n",
                "harvey-system",
                "wait",
                "--for=condition=Ready",
                "--timeout=60s",
                "landing/talos-root-access",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            time.sleep(1.0)  # time for the waiter to start watching the Landing
            k(parent_kc, "apply", "-f", str(policy))
            granted_at = time.monotonic()
            _say(f"applied {policy.relative_to(root)} (parentCredential for harvey-system)")
            _, err = waiter.communicate(timeout=90)
        finally:
            if waiter.poll() is None:
                waiter.kill()
                waiter.wait()
        if waiter.returncode != 0:
            raise DemoError(f"the Landing did not become Ready: {err.strip()}")
        ready_in = time.monotonic() - granted_at
        row = k(parent_kc, "-n", "harvey-system", "get", "landings", "--no-headers")
        reason = row.split()[2] if len(row.split()) > 2 else ""
        if reason != "Synced":
            raise DemoError(f"expected Synced, got: {row.strip()}")
        _say(f"Ready in {ready_in:.2f}s after the policy appeared: {' '.join(row.split())}")
        policies = k(parent_kc, "get", "landingpolicies", "--no-headers")
        _say(f"  landingpolicies: {' '.join(policies.split())}")

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
