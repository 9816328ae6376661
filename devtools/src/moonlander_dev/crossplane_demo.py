"""``moonlander-dev demo --crossplane``: the seed's Phase 3 for real, with Crossplane core v2.

Three local clusters: "talos-root" (the parent), "harvey" (its tenant, where Crossplane
runs) and "vcluster" (vcluster moo in harvey). Crossplane core, provider-kubernetes, a
composition function (hack/consumers/crossplane/function) and the garbage collector run
against harvey. Two Moonlanders land what Crossplane needs:

- Pattern A, Moonlander in talos-root: examples/crossplane/landing-with-providerconfig.yaml
  lands the parent's kubeconfig in harvey's crossplane-system with a ClusterProviderConfig
  "talos-root" (examples/crossplane/policy.yaml grants it);
- Pattern B, Moonlander in harvey: examples/pattern-b/child-to-parent.yaml lands moo's
  kubeconfig, read from the Secret vcluster writes, next to Crossplane, with a
  ClusterProviderConfig "vcluster-moo" (examples/pattern-b/policy.yaml grants it).

Then the XRD and Composition of examples/crossplane/composition/ and one XR per target: each
must create its ConfigMap in its own cluster (read back with that cluster's admin
kubeconfig, and absent from harvey), and deleting the XRs must delete them there. Prints the
timings; exits 0 only when all of that held; stops every process it started.
"""

from __future__ import annotations

import base64
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from moonlander_dev import crossplane as xp
from moonlander_dev.clusters import (
    ClusterSpec,
    ControlPlane,
    ControlPlaneError,
    Process,
    repo_root,
    spawn,
    stop_together,
)
from moonlander_dev.consumers import consumer_dir
from moonlander_dev.demo import CHILD, CONTROLLER_NAMESPACE, PARENT, DemoError

VCLUSTER = "vcluster"
VCLUSTER_PC, PARENT_PC = "vcluster-moo", "talos-root"  # the ClusterProviderConfigs
XR_NAMESPACE = "demo"  # in harvey, where the XRs (and their composed Objects) live
READY = "--for=condition=Ready"
PROVIDER_POLL = 10.0  # provider-kubernetes --poll


def _say(text: str) -> None:
    print(f"moonlander-dev demo --crossplane: {text}", flush=True)


class Kubectl:
    def __init__(self, binary: Path) -> None:
        self.binary = str(binary)

    def __call__(self, kubeconfig: Path, *args: str, stdin: str | None = None) -> str:
        proc = subprocess.run(
            [self.binary, "--kubeconfig", str(kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if proc.returncode != 0:
            raise DemoError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    def get(self, kubeconfig: Path, *args: str) -> dict[str, Any] | None:
        """The object as JSON, or None when it does not exist."""
        proc = subprocess.run(
            [self.binary, "--kubeconfig", str(kubeconfig), "get", *args, "-o", "json"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if proc.returncode != 0:
            if "NotFound" in proc.stderr:
                return None
            raise DemoError(f"kubectl get {' '.join(args)}: {proc.stderr.strip()}")
        found: dict[str, Any] = json.loads(proc.stdout)
        return found


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _vcluster_secret(kubeconfig: str) -> str:
    """The Secret vcluster writes for moo in its host namespace (here harvey-system): key
    ``config``, server ``https://localhost:<port>`` (only right inside the vcluster pod)."""
    doc = yaml.safe_load(kubeconfig)
    server = doc["clusters"][0]["cluster"]["server"]
    doc["clusters"][0]["cluster"]["server"] = server.replace("127.0.0.1", "localhost")
    config = yaml.safe_dump(doc)
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "vc-moo", "namespace": "harvey-system"},
        "type": "Opaque",
        "data": {"config": base64.b64encode(config.encode()).decode()},
    }
    return json.dumps(secret)


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def run_crossplane_demo(directory: Path, *, keep: bool = False) -> int:
    root = repo_root()
    if root is None:
        print("the demo runs from a source checkout (it applies examples/)", file=sys.stderr)
        return 2
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    examples = root / "examples"
    composition = examples / "crossplane" / "composition"
    plane = ControlPlane(
        directory / "clusters", [ClusterSpec(PARENT), ClusterSpec(CHILD), ClusterSpec(VCLUSTER)]
    )
    started = time.monotonic()
    previous = signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM stops it as Ctrl-C does
    timings: list[tuple[str, float]] = []
    services: list[xp.LocalProcess] = []
    controllers: list[Process] = []

    def took(what: str, since: float) -> float:
        seconds = time.monotonic() - since
        timings.append((what, seconds))
        return seconds

    try:
        t = time.monotonic()
        _say(
            "building (first time only: about 9 minutes on two cores) or finding Crossplane, "
            "provider-kubernetes and the function"
        )
        xp_bin = consumer_dir("crossplane")
        pk_bin = consumer_dir("provider-kubernetes")
        crds_dir, xp_version = xp.crossplane_crds()
        pk_crds, pk_version = xp.provider_kubernetes_crds()
        _say(
            f"Crossplane {xp_version}, provider-kubernetes {pk_version} in "
            f"{took('consumers built or found', t):.1f}s"
        )

        t = time.monotonic()
        plane.start()
        assert plane.assets is not None
        k = Kubectl(plane.assets / "kubectl")
        kc = {name: c.kubeconfig for name, c in plane.clusters.items()}
        _say(
            f"clusters up in {took('clusters up', t):.1f}s: "
            + ", ".join(f"{n} {c.url}" for n, c in plane.clusters.items())
            + f" ({plane.clusters[PARENT].version})"
        )

        # CRDs: Moonlander's where each Moonlander runs, Crossplane's and the provider's in
        # harvey.
        t = time.monotonic()
        bases = root / "config" / "crd" / "bases"
        for cluster in (PARENT, CHILD):
            names = k(kc[cluster], "apply", "--server-side", "-f", str(bases), "-o", "name")
            k(kc[cluster], "wait", "--for=condition=Established", *names.split())
        pk_file = directory / "provider-kubernetes-crds.yaml"
        pk_file.write_text(yaml.safe_dump_all(pk_crds))
        names = k(kc[CHILD], "apply", "--server-side", "-f", str(crds_dir), "-o", "name")
        names += k(kc[CHILD], "apply", "--server-side", "-f", str(pk_file), "-o", "name")
        k(kc[CHILD], "wait", "--for=condition=Established", *names.split())
        for ns in ("crossplane-system", "harvey-system", XR_NAMESPACE):
            k(kc[CHILD], "create", "namespace", ns)
        _say(
            f"CRDs installed in {took('CRDs installed', t):.1f}s: Moonlander's in {PARENT} and "
            f"{CHILD}; Crossplane's and provider-kubernetes' ({len(names.split())}) in {CHILD}"
        )

        # Crossplane and friends, against harvey.
        t = time.monotonic()
        work = directory / "crossplane"
        shutil.rmtree(work, ignore_errors=True)  # a previous run's certificates and logs
        fn_tls, client_tls = xp.function_tls(work)
        gc = xp.GarbageCollectorProcess(
            plane.assets / "kube-controller-manager", work / "kcm", kc[CHILD]
        )
        provider = xp.ProviderProcess(
            pk_bin / "provider", work / "provider-kubernetes", kc[CHILD], poll=PROVIDER_POLL
        )
        function = xp.FunctionProcess(
            xp_bin / "function-remote-configmap", work / "function", fn_tls
        )
        core = xp.CrossplaneProcess(xp_bin / "crossplane", work / "core", kc[CHILD], client_tls)
        started_here: tuple[xp.LocalProcess, ...] = (provider, function, core)
        for proc in started_here:
            services.append(proc)
            proc.start()
        for proc in services:
            proc.wait_ready()
        # The package manager cannot pull here: the function is registered by hand.
        k(kc[CHILD], "apply", "-f", str(composition / "function.yaml"))
        status = {"endpoint": function.endpoint, "capabilities": ["composition"]}
        k(
            kc[CHILD],
            "patch",
            "functionrevision",
            "function-remote-configmap-local",
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps({"status": status}),
        )
        _say(
            f"running against {CHILD} in {took('Crossplane running', t):.1f}s: crossplane core "
            f"(pid {core.process.popen.pid if core.process else '?'}), provider-kubernetes, "
            f"function-remote-configmap at {function.endpoint} (mTLS)"
        )

        # The two Moonlanders.
        def moonlander(cluster: str, parent_file: Path) -> None:
            log = directory / f"moonlander-{cluster}.log"
            with log.open("wb") as out:
                popen = spawn(
                    [
                        sys.executable,
                        "-m",
                        "moonlander",
                        "run",
                        f"--kubeconfig={kc[cluster]}",
                        f"--parent-kubeconfig={parent_file}",
                        f"--controller-namespace={CONTROLLER_NAMESPACE}",
                        "--allow-loopback",  # the local clusters listen on 127.0.0.1
                    ],
                    out,
                )
            controllers.append(Process(f"moonlander-{cluster}", popen, log))

        parent_file = directory / "parent-kubeconfig"  # what the Deployment in talos-root mounts
        parent_file.write_bytes(kc[PARENT].read_bytes())
        parent_file.chmod(0o600)
        moonlander(PARENT, parent_file)
        # Moonlander in harvey lands moo's access ChildToParent: it holds no parent credential.
        moonlander(CHILD, directory / "no-parent-kubeconfig")

        # Pattern A: CozyStack's Secret for harvey in talos-root, the Landing and its policy.
        t = time.monotonic()
        k(kc[PARENT], "create", "namespace", "harvey-system")
        k(
            kc[PARENT],
            "-n",
            "harvey-system",
            "create",
            "secret",
            "generic",
            "kubernetes-harvey-admin-kubeconfig",
            f"--from-file=admin.conf={kc[CHILD]}",
        )
        for name in ("policy.yaml", "landing-with-providerconfig.yaml"):
            k(kc[PARENT], "apply", "-f", str(examples / "crossplane" / name))
        k(
            kc[PARENT],
            "-n",
            "harvey-system",
            "wait",
            READY,
            "--timeout=90s",
            "landing/talos-root-access",
        )
        _say(
            f"Pattern A landed in {took('Pattern A landed', t):.1f}s (controller start-up "
            f"included): examples/crossplane/landing-with-providerconfig.yaml -> {CHILD} "
            f"crossplane-system/talos-root-kubeconfig + ClusterProviderConfig {PARENT_PC}"
        )

        # Pattern B: vcluster's Secret in harvey, the Landing and its policy.
        t = time.monotonic()
        k(kc[CHILD], "apply", "-f", "-", stdin=_vcluster_secret(kc[VCLUSTER].read_text()))
        k(kc[CHILD], "apply", "-f", str(examples / "pattern-b" / "policy.yaml"))
        (landing,) = _docs(examples / "pattern-b" / "child-to-parent.yaml")
        landing["spec"]["server"] = plane.clusters[VCLUSTER].url  # moo's Service, here
        landing["spec"]["output"] = {"crossplane": {"scope": "Cluster", "name": VCLUSTER_PC}}
        k(kc[CHILD], "apply", "-f", "-", stdin=json.dumps(landing))
        name = landing["metadata"]["name"]
        k(kc[CHILD], "-n", "harvey-system", "wait", READY, "--timeout=90s", f"landing/{name}")
        _say(
            f"Pattern B landed in {took('Pattern B landed', t):.1f}s: "
            f"examples/pattern-b/child-to-parent.yaml (spec.server {landing['spec']['server']}, "
            f"+ spec.output.crossplane) -> crossplane-system/vcluster-moo-kubeconfig + "
            f"ClusterProviderConfig {VCLUSTER_PC}"
        )
        # What Crossplane will use: each ClusterProviderConfig written by its Landing, pointing
        # at the Secret that Landing wrote.
        landed = {PARENT_PC: "talos-root-kubeconfig", VCLUSTER_PC: "vcluster-moo-kubeconfig"}
        for pc_name, secret in landed.items():
            pc = k.get(kc[CHILD], "clusterproviderconfigs.kubernetes.m.crossplane.io", pc_name)
            ref = ((pc or {}).get("spec", {}).get("credentials") or {}).get("secretRef")
            owner = ((pc or {}).get("metadata", {}).get("annotations") or {}).get(
                "moons.kingdon.ci/landing"
            )
            if ref != {"namespace": "crossplane-system", "name": secret, "key": "kubeconfig"}:
                raise DemoError(f"ClusterProviderConfig {pc_name}: secretRef {ref}")
            _say(
                f"  ClusterProviderConfig {pc_name} -> crossplane-system/{secret} (Landing {owner})"
            )
        secrets = k(kc[CHILD], "-n", "crossplane-system", "get", "secrets", "--no-headers")
        for row in secrets.splitlines():
            _say(f"  {CHILD} crossplane-system: {' '.join(row.split())}")

        # The XRD, the Composition, one XR per target.
        t = time.monotonic()
        k(kc[CHILD], "apply", "-f", str(composition / "xrd.yaml"))
        k(
            kc[CHILD],
            "wait",
            "--for=condition=Established",
            "--timeout=90s",
            "xrd/remoteconfigmaps.demo.moons.kingdon.ci",
        )
        k(kc[CHILD], "apply", "-f", str(composition / "composition.yaml"))
        services.append(gc)
        gc.start()  # now: its first discovery of resource types includes the XRs
        _say(
            f"XRD RemoteConfigMap established, Composition remote-configmap applied in "
            f"{took('XRD established', t):.1f}s; garbage collector started"
        )
        t = time.monotonic()
        xrs = {PARENT: "xr-talos-root.yaml", VCLUSTER: "xr-vcluster.yaml"}
        wanted = {}
        for target, file in xrs.items():
            (doc,) = _docs(composition / file)
            wanted[target] = doc
            k(kc[CHILD], "apply", "-f", str(composition / file))
        k(
            kc[CHILD],
            "-n",
            XR_NAMESPACE,
            "wait",
            READY,
            "--timeout=180s",
            *(f"remoteconfigmap/{d['metadata']['name']}" for d in wanted.values()),
        )
        _say(f"both XRs Ready {took('XRs Ready', t):.1f}s after they were applied:")
        for kind in ("remoteconfigmaps", "objects.kubernetes.m.crossplane.io"):
            for row in k(kc[CHILD], "-n", XR_NAMESPACE, "get", kind).splitlines():
                _say(f"  {' '.join(row.split())}")

        # The proof: each ConfigMap is in its target cluster, read as that cluster's admin,
        # with the XR's data; and not in harvey, where Crossplane runs.
        for target, doc in wanted.items():
            name, ns = doc["metadata"]["name"], doc["spec"]["namespace"]
            cm = k.get(kc[target], "configmap", name, "-n", ns)
            if cm is None or cm.get("data") != doc["spec"]["data"]:
                raise DemoError(f"{target}: ConfigMap {ns}/{name} is {cm and cm.get('data')}")
            if k.get(kc[CHILD], "configmap", name, "-n", ns) is not None:
                raise DemoError(f"ConfigMap {ns}/{name} was created in {CHILD}, not {target}")
            _say(
                f"{target}: ConfigMap {ns}/{name} exists (read with {target}'s admin "
                f"kubeconfig), data {json.dumps(cm['data'], sort_keys=True)}; not in {CHILD}"
            )

        # Deleting the XRs deletes what they composed, in the target clusters.
        gc.wait_ready()
        t = time.monotonic()
        xr_refs = [f"remoteconfigmap/{d['metadata']['name']}" for d in wanted.values()]
        k(kc[CHILD], "-n", XR_NAMESPACE, "delete", "--wait=false", *xr_refs)
        deadline = time.monotonic() + 120
        left = dict(wanted)
        while left:
            for proc in services:
                proc.check_alive()
            for target, doc in list(left.items()):
                name, ns = doc["metadata"]["name"], doc["spec"]["namespace"]
                if k.get(kc[target], "configmap", name, "-n", ns) is None:
                    del left[target]
            if time.monotonic() > deadline:
                raise DemoError(f"still there 120s after the XRs were deleted: {sorted(left)}")
            time.sleep(0.2)
        _say(
            f"XRs deleted: both ConfigMaps gone from {PARENT} and {VCLUSTER} in "
            f"{took('XRs deleted, ConfigMaps gone', t):.1f}s (garbage collector, then the provider)"
        )
        objects = json.loads(
            k(
                kc[CHILD],
                "-n",
                XR_NAMESPACE,
                "get",
                "objects.kubernetes.m.crossplane.io",
                "-o",
                "json",
            )
        )["items"]
        kept = [
            o["metadata"]["name"] for o in objects if not o["metadata"].get("deletionTimestamp")
        ]
        if kept:
            raise DemoError(f"composed Objects not deleted with their XRs: {kept}")
        _say(
            f"  their {len(objects)} Objects in {CHILD} are being deleted; provider-kubernetes "
            "releases each 30 s after creating its ConfigMap (its creation grace period)"
        )
        total = time.monotonic() - started
        _say(
            "timings: "
            + ", ".join(f"{what} {seconds:.1f}s" for what, seconds in timings)
            + f"; total {total:.1f}s"
        )
        _say(f"success in {total:.1f}s")
        if keep:
            _say(f"kept running; kubeconfigs in {plane.directory}; Ctrl-C stops everything")
            try:
                while all(p.popen.poll() is None for p in controllers):
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
        return 0
    except KeyboardInterrupt:
        _say("interrupted")
        return 130
    except (DemoError, ControlPlaneError, xp.ProcessDied, subprocess.TimeoutExpired) as err:
        _say(f"FAILED: {err}")
        for proc in services:
            _say(f"{proc.name} log: {proc.log_path}")
        for c in controllers:
            _say(f"{c.name} log: {c.log_path}")
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
        t = time.monotonic()
        running = controllers + [s.process for s in services if s.process is not None]
        stop_together(running)
        plane.stop()
        _say(f"stopped {len(running)} processes and the clusters in {time.monotonic() - t:.1f}s")
