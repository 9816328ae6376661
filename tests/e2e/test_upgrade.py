"""Upgrading from the previous release (issue 25 item 3), on the dev node.

The previous release (the last entry of ``releases.yaml`` older than this tree) is built
from the commit it was released from by ``hack/upgrade/build-release.sh``: its image with
today's ``hack/image/build.sh`` from that commit's Dockerfile and sources, its chart as it
was, cached per commit under ``~/.cache/moonlander/releases``. A clone without that commit
(a shallow one) fails here with what to fetch.

On the node: ``helm install`` of that chart and image, one Landing of every kind it supports
(ParentToChild, with a minted ServiceAccount, with a Crossplane ProviderConfig output;
ChildToParent, minting with an Argo CD cluster Secret output), all Ready; then the upgrade
as docs/upgrading.md gives it (the new CRDs, a LandingPolicy granting what the Landings do,
``helm upgrade --take-ownership`` to this tree's chart and image) while every Landing's Ready
condition and every write to a landed object is watched; then ``helm rollback``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from moonlander_dev import node as devnode
from moonlander_dev.clusters import ControlPlaneError

from . import consumers
from .test_node import CHART, NS, ROOT, NodeEnv, _version, wait

pytestmark = pytest.mark.timeout(1500)

RELEASE = "moonlander"
SCRIPT = ROOT / "hack" / "upgrade" / "build-release.sh"
CHILD = "harvey"
TENANT = "harvey-system"  # the Landings' namespace in the parent
SOURCE = "kubernetes-harvey-admin-kubeconfig"
SOURCE_KEY = "super-admin.conf"
MINT_NS = "moonlander-minted"  # the chart's default minting.namespaces
ROLE_NAMESPACES = ("apps", "web")

# Every kind of Landing the previous release supports, with where it lands: (cluster,
# namespace, Secret name).
LANDINGS: dict[str, tuple[dict[str, Any], tuple[str, str, str]]] = {
    "to-child": (
        {
            "kubeconfigSecretName": SOURCE,
            "kubeconfigSecretKey": SOURCE_KEY,
            "writeKubeconfigSecretName": "parent-kubeconfig",
            "targetNamespace": "crossplane-system",
        },
        (CHILD, "crossplane-system", "parent-kubeconfig"),
    ),
    "to-child-minted": (
        {
            "kubeconfigSecretName": SOURCE,
            "kubeconfigSecretKey": SOURCE_KEY,
            "writeKubeconfigSecretName": "parent-minted-kubeconfig",
            "targetNamespace": "crossplane-system",
            "serviceAccount": {
                "name": "harvey-view",
                "namespace": MINT_NS,
                "roles": [{"kind": "ClusterRole", "name": "view", "namespaces": ["apps"]}],
                "expirationSeconds": 3600,
            },
        },
        (CHILD, "crossplane-system", "parent-minted-kubeconfig"),
    ),
    "to-child-crossplane": (
        {
            "kubeconfigSecretName": SOURCE,
            "kubeconfigSecretKey": SOURCE_KEY,
            "writeKubeconfigSecretName": "parent-crossplane-kubeconfig",
            "targetNamespace": "crossplane-system",
            "output": {
                "crossplane": {"providers": ["Kubernetes"], "scope": "Cluster", "name": "parent"}
            },
        },
        (CHILD, "crossplane-system", "parent-crossplane-kubeconfig"),
    ),
    "to-parent": (
        {
            "direction": "ChildToParent",
            "kubeconfigSecretName": SOURCE,
            "kubeconfigSecretKey": SOURCE_KEY,
            "writeKubeconfigSecretName": "harvey-kubeconfig",
            "targetNamespace": "crossplane-system",
        },
        ("parent", "crossplane-system", "harvey-kubeconfig"),
    ),
    "to-parent-argocd": (
        {
            "direction": "ChildToParent",
            "kubeconfigSecretName": SOURCE,
            "kubeconfigSecretKey": SOURCE_KEY,
            "writeKubeconfigSecretName": "cluster-harvey",
            "targetNamespace": "argocd",
            "serviceAccount": {
                "name": "argocd-manager",
                "namespace": MINT_NS,
                "roles": [
                    {"kind": "ClusterRole", "name": "admin", "namespaces": list(ROLE_NAMESPACES)}
                ],
                "expirationSeconds": 3600,
            },
            "output": {
                "format": "ArgoCD",
                "argocd": {"name": "harvey", "namespaces": list(ROLE_NAMESPACES)},
            },
        },
        ("parent", "argocd", "cluster-harvey"),
    ),
}
# Releases whose image needs $USER set to start (docs/upgrading.md, "0.1.0").
USER_ERRATUM = ("0.1.0",)
# The ProviderConfig the Crossplane output writes next to its Secret, in the child.
POLICY_CRD = "landingpolicies.moons.kingdon.ci"
PROVIDER_CONFIG = ("clusterproviderconfigs.kubernetes.m.crossplane.io", "parent")

# What the Landings above need from a LandingPolicy since LandingPolicy exists (0.2.0):
# docs/upgrading.md gives the same.
POLICY = {
    "apiVersion": "moons.kingdon.ci/v1alpha1",
    "kind": "LandingPolicy",
    "metadata": {"name": "harvey-system"},
    "spec": {
        "namespaces": {"names": [TENANT]},
        "parentCredential": True,
        "mint": {
            "clusterRoles": ["view", "admin"],
            "roleNamespaces": list(ROLE_NAMESPACES),
            "serviceAccountNamespaces": [MINT_NS],
            "maxExpirationSeconds": 3600,
        },
        "targetNamespaces": ["crossplane-system", "argocd"],
    },
}


def previous_release() -> tuple[str, str]:
    """(version, commit) of the newest release in releases.yaml other than this tree's."""
    releases = yaml.safe_load((ROOT / "releases.yaml").read_text())["releases"]
    older = [r for r in releases if str(r["version"]) != _version()]
    assert older, "releases.yaml names no release before this one"
    last = older[-1]
    return str(last["version"]), str(last["commit"])


def build_release(version: str) -> tuple[Path, Path, float]:
    """hack/upgrade/build-release.sh: the release's OCI archive and chart directory."""
    arch = {"x86_64": "amd64", "aarch64": "arm64"}[os.uname().machine]
    started = time.monotonic()
    proc = subprocess.run(
        ["nice", "-n", "10", "bash", str(SCRIPT), version, arch],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"hack/upgrade/build-release.sh {version} failed:\n{proc.stderr[-3000:]}",
            pytrace=False,
        )
    archive, chart = proc.stdout.split()
    return Path(archive), Path(chart), time.monotonic() - started


def build_current(out: Path) -> Path:
    """hack/image/build.sh for this machine's architecture, as test_node builds it, but
    written to a directory of this test's own: another session's build of the same version
    rewrites the shared archive, possibly while containerd imports it."""
    arch = {"x86_64": "amd64", "aarch64": "arm64"}[os.uname().machine]
    env = {**os.environ, "IMAGE_ARCHES": arch, "IMAGE_OUT": str(out)}
    started = time.monotonic()
    proc = subprocess.run(
        ["nice", "-n", "10", "bash", str(ROOT / "hack" / "image" / "build.sh")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"hack/image/build.sh failed:\n{proc.stderr[-3000:]}", pytrace=False)
    print(f"image {_version()}: {time.monotonic() - started:.0f}s")
    return out / f"moonlander-{_version()}.oci.tar"


class Upgrade(NodeEnv):
    """The node, with the previous release's archive and chart."""

    previous: str
    previous_chart: Path

    def landings(self) -> dict[str, dict[str, Any]]:
        items = self.get("landings", "-n", TENANT)["items"]
        return {i["metadata"]["name"]: i for i in items}

    def landed(self, name: str) -> dict[str, Any]:
        cluster, namespace, secret = LANDINGS[name][1]
        obj: dict[str, Any] = self.get("secret", "-n", namespace, secret, cluster=cluster)
        return obj

    def apply(self, *docs: dict[str, Any], cluster: str = "parent") -> None:
        self.run(
            "kubectl",
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=upgrade-test",
            "-f",
            "-",
            cluster=cluster,
            input="\n---\n".join(json.dumps(d) for d in docs),
        )


def ready(landing: dict[str, Any]) -> bool:
    conds = landing.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


def content(secret: dict[str, Any]) -> str:
    """What a landed Secret says: its data, type, labels and annotations."""
    meta = secret["metadata"]
    what = [secret.get("type"), secret.get("data"), meta.get("labels"), meta.get("annotations")]
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:12]


class ReadyWatch:
    """Every Landing's Ready condition, polled in the background: each fall from True is a
    flap, with the reason it fell for."""

    def __init__(self, env: Upgrade) -> None:
        self.env = env
        self.flaps: list[str] = []
        self.errors: list[str] = []
        self.polls = 0
        self._last: dict[str, bool] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                landings = self.env.landings()
            except AssertionError as err:
                self.errors.append(str(err)[:300])
            else:
                self.polls += 1
                for name in LANDINGS:
                    now = name in landings and ready(landings[name])
                    if self._last.get(name, True) and not now:
                        conds = landings.get(name, {}).get("status", {}).get("conditions", [])
                        why = [c.get("reason") for c in conds if c["type"] == "Ready"]
                        self.flaps.append(f"{time.strftime('%H:%M:%S')} {name} {why}")
                    self._last[name] = now
            self._stop.wait(0.2)

    def __enter__(self) -> ReadyWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class WriteWatch:
    """``kubectl get --watch`` on the landed Secrets' namespaces (and the child's
    ProviderConfigs): every MODIFIED or DELETED event of a landed object is a write."""

    def __init__(self, env: Upgrade) -> None:
        self.env = env
        self.writes: dict[str, list[str]] = {}  # object -> resourceVersions it was written at
        self._procs: list[subprocess.Popen[str]] = []
        self._threads: list[threading.Thread] = []
        targets = {(c, ns) for _, (c, ns, _) in LANDINGS.values()}
        self._watches = [("secrets", c, ns) for c, ns in sorted(targets)]
        self._watches.append((PROVIDER_CONFIG[0], CHILD, ""))
        self._names = {s for _, (_, _, s) in LANDINGS.values()} | {PROVIDER_CONFIG[1]}

    def __enter__(self) -> WriteWatch:
        for resource, cluster, namespace in self._watches:
            kubeconfig = self.env.plane.clusters[cluster].kubeconfig
            args = [self.env.tool("kubectl"), f"--kubeconfig={kubeconfig}", "get", resource]
            args += ["-n", namespace] if namespace else []
            args += ["--watch-only", "--output-watch-events", "-o", "json"]
            proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
            self._procs.append(proc)
            thread = threading.Thread(target=self._read, args=(proc, cluster), daemon=True)
            thread.start()
            self._threads.append(thread)
        time.sleep(1)  # the watches are open before anything is done
        return self

    def _read(self, proc: subprocess.Popen[str], cluster: str) -> None:
        assert proc.stdout is not None
        decoder, buffer = json.JSONDecoder(), ""
        for line in proc.stdout:
            buffer += line
            while buffer.strip():
                try:
                    event, end = decoder.raw_decode(buffer.lstrip())
                except json.JSONDecodeError:
                    break
                buffer = buffer.lstrip()[end:]
                meta = event["object"]["metadata"]
                if meta["name"] in self._names and event["type"] in ("MODIFIED", "DELETED"):
                    key = f"{cluster}/{meta.get('namespace', '')}/{meta['name']}"
                    self.writes.setdefault(key, []).append(
                        f"{event['type']} {meta['resourceVersion']}"
                    )

    def __exit__(self, *exc: object) -> None:
        time.sleep(1)  # events of the last writes are read
        for proc in self._procs:
            proc.terminate()
            proc.wait(timeout=10)
        for thread in self._threads:
            thread.join(timeout=10)

    @property
    def count(self) -> int:
        return sum(len(w) for w in self.writes.values())


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upgrade]:
    previous, commit = previous_release()
    old_archive, old_chart, took = build_release(previous)
    print(f"\nrelease {previous} ({commit[:12]}): image and chart in {took:.0f}s ({old_archive})")
    work = tmp_path_factory.mktemp("upgrade")
    archive = build_current(work / "image")
    images = [(old_archive, "localhost/moonlander"), (archive, "localhost/moonlander")]
    started = time.monotonic()
    try:
        with devnode.running(work, ["parent", CHILD], images) as (plane, node):
            print(f"node: plane and node up in {time.monotonic() - started:.1f}s")
            e = Upgrade(plane, node, work, _version())
            e.previous, e.previous_chart = previous, old_chart
            yield e
    except ControlPlaneError as err:
        pytest.fail(f"the node did not start: {err}", pytrace=False)


def crds_of(chart: Path, env: Upgrade) -> dict[str, dict[str, Any]]:
    """The CustomResourceDefinitions a chart installs, from crds/ or its templates."""
    out = env.run(
        "helm", "template", RELEASE, str(chart), "-n", NS, *kube_version(env), "--include-crds"
    )
    docs = [d for d in yaml.safe_load_all(out) if d]
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == "CustomResourceDefinition"}


def kube_version(env: Upgrade) -> list[str]:
    """The API server's version, for charts with kubeVersion (helm template assumes 1.20)."""
    version = json.loads(env.run("kubectl", "version", "-o", "json"))["serverVersion"]
    return ["--kube-version", version["gitVersion"]]


def templated_crds(chart: Path, env: Upgrade) -> bool:
    """Whether the chart renders its CRDs as templates (Helm upgrades those) rather than
    shipping them in crds/ (installed once, never upgraded by Helm)."""
    out = env.run("helm", "template", RELEASE, str(chart), "-n", NS, *kube_version(env))
    return any(d and d["kind"] == "CustomResourceDefinition" for d in yaml.safe_load_all(out))


def properties(schema: dict[str, Any], path: str = "") -> dict[str, str]:
    """Every property path of an OpenAPI schema, with its description."""
    found: dict[str, str] = {}
    for name, sub in (schema.get("properties") or {}).items():
        here = f"{path}.{name}" if path else name
        found[here] = sub.get("description", "")
        found.update(properties(sub, here))
        if isinstance(sub.get("items"), dict):
            found.update(properties(sub["items"], here + "[]"))
    return found


def landing_schema(crd: dict[str, Any]) -> dict[str, str]:
    [version] = [v for v in crd["spec"]["versions"] if v.get("storage")]
    return properties(version["schema"]["openAPIV3Schema"])


def running_only(env: Upgrade, tag: str) -> list[dict[str, Any]]:
    """The controller's pods, when every one runs ``tag`` and is Ready (else empty)."""
    pods = env.pods()
    images = {p["spec"]["containers"][0]["image"] for p in pods}
    if images != {f"localhost/moonlander:{tag}"}:
        return []
    statuses = [p["status"].get("containerStatuses") or [{}] for p in pods]
    return pods if all(s[0].get("ready") for s in statuses) else []


STATE: dict[str, Any] = {}


def test_install_previous_release(env: Upgrade) -> None:
    env.run("kubectl", "create", "namespace", NS)
    env.run(
        "kubectl",
        *("-n", NS, "create", "secret", "generic", "moonlander-parent-kubeconfig"),
        "--from-file=kubeconfig=/dev/stdin",
        input=env.pod_kubeconfig("parent"),
    )
    started = time.monotonic()
    env.run(
        "helm",
        *("install", RELEASE, str(env.previous_chart), "-n", NS),
        *("--set", "image.repository=localhost/moonlander"),
        *("--set", f"image.tag={env.previous}", "--set", "image.pullPolicy=Never"),
    )
    if env.previous in USER_ERRATUM:
        # 0.1.0's image dies at start: kopf names its peer after getpass.getuser(), and UID
        # 65532 has no passwd entry (fixed in 6a77aea, the Dockerfile sets $USER). The
        # workaround docs/upgrading.md gives for 0.1.0 installs.
        env.run("kubectl", "-n", NS, "set", "env", f"deployment/{RELEASE}", "USER=moonlander")
    env.run("kubectl", "-n", NS, "rollout", "status", f"deployment/{RELEASE}", "--timeout=180s")
    wait(lambda: running_only(env, env.previous), 120, f"a pod of {env.previous}")
    [pod] = env.pods()
    assert pod["spec"]["containers"][0]["image"] == f"localhost/moonlander:{env.previous}"
    print(f"\nhelm install {env.previous}: pod Ready in {time.monotonic() - started:.1f}s")

    for ns in (TENANT, "crossplane-system", "argocd", "apps", MINT_NS):
        env.run("kubectl", "create", "namespace", ns)
    for ns in ("crossplane-system", *ROLE_NAMESPACES):
        env.run("kubectl", "create", "namespace", ns, cluster=CHILD)
    crds = consumers.crds(consumers.PROVIDER_KUBERNETES, "package/crds")
    env.apply(crds[PROVIDER_CONFIG[0]], cluster=CHILD)
    env.run(
        "kubectl", "wait", "--for=condition=Established", f"crd/{PROVIDER_CONFIG[0]}", cluster=CHILD
    )
    env.run(
        "kubectl",
        *("-n", TENANT, "create", "secret", "generic", SOURCE),
        f"--from-file={SOURCE_KEY}=/dev/stdin",
        input=env.pod_kubeconfig(CHILD),
    )
    started = time.monotonic()
    env.apply(
        *(
            {
                "apiVersion": "moons.kingdon.ci/v1alpha1",
                "kind": "Landing",
                "metadata": {"name": name, "namespace": TENANT},
                "spec": spec,
            }
            for name, (spec, _) in LANDINGS.items()
        )
    )
    wait(
        lambda: (
            all(ready(landing) for landing in env.landings().values())
            and len(env.landings()) == len(LANDINGS)
        ),
        120,
        "every Landing Ready under the previous release",
    )
    took = time.monotonic() - started
    before = {name: env.landed(name) for name in LANDINGS}
    provider_config = env.get(PROVIDER_CONFIG[0], PROVIDER_CONFIG[1], cluster=CHILD)
    argocd = before["to-parent-argocd"]["metadata"]["labels"]
    assert argocd.get("argocd.argoproj.io/secret-type") == "cluster", argocd
    # (A boolean: an assertion would print the token.)
    minted = "bearerToken" in json.loads(
        base64.b64decode(before["to-parent-argocd"]["data"]["config"])
    )
    assert minted, "the Argo CD cluster Secret holds no minted token"
    STATE["landed"] = {
        name: (s["metadata"]["resourceVersion"], content(s)) for name, s in before.items()
    }
    STATE["provider_config"] = provider_config["metadata"]["resourceVersion"]
    STATE["crd_before"] = env.get("crd", "landings.moons.kingdon.ci")
    print(
        f"{len(LANDINGS)} Landings Ready under {env.previous} in {took:.1f}s; landed "
        + ", ".join(f"{n} rv {rv}" for n, (rv, _) in STATE["landed"].items())
    )


def test_helm_upgrade_keeps_every_landing_ready(env: Upgrade) -> None:
    assert STATE, "the previous release was not installed"
    new_crds = crds_of(CHART, env)
    templated = templated_crds(CHART, env)
    # A property (or a description) the new Landing CRD has and the previous one lacks.
    old_schema = landing_schema(STATE["crd_before"])
    new_schema = landing_schema(new_crds["landings.moons.kingdon.ci"])
    new_only = sorted(set(new_schema) - set(old_schema))
    described = sorted(p for p in new_schema if new_schema[p] and not old_schema.get(p))
    assert new_only or described, "the new Landing CRD is no different from the previous one"

    started = time.monotonic()
    with ReadyWatch(env) as watch, WriteWatch(env) as writes:
        # 1. The new CRDs, so that the policy can exist before the new controller judges the
        #    Landings by it: a chart that renders its CRDs updates them itself (only the new
        #    LandingPolicy CRD is needed first); one with crds/ never does (all of them).
        first = [c for n, c in new_crds.items() if not templated or n == POLICY_CRD]
        env.apply(*first)
        for crd in first:
            env.run(
                "kubectl", "wait", "--for=condition=Established", f"crd/{crd['metadata']['name']}"
            )
        crds_at = time.monotonic() - started
        # 2. What the Landings already do, granted.
        env.apply(POLICY)
        # 3. The chart and image of this tree; --take-ownership adopts the objects the new
        #    chart renders that exist without Helm's marks (the CRDs, the mint namespace).
        helm_started = time.monotonic()
        env.run(
            "helm",
            *("upgrade", RELEASE, str(CHART), "-n", NS, "--reset-then-reuse-values"),
            *("--set", f"image.tag={env.image_tag}", "--take-ownership"),
            *("--wait", "--timeout=300s"),
        )
        helm_took = time.monotonic() - helm_started
        wait(lambda: running_only(env, env.image_tag), 180, f"only pods of {env.image_tag}")
        # Every Landing's Ready condition written by the new controller: it carries
        # observedGeneration, which the previous release did not write.
        wait(
            lambda: all(
                any(
                    c["type"] == "Ready" and c["status"] == "True" and "observedGeneration" in c
                    for c in landing["status"]["conditions"]
                )
                for landing in env.landings().values()
            ),
            120,
            f"every Landing Ready as {env.image_tag} sees it",
        )
        reconciled = time.monotonic() - started
        time.sleep(10)  # and a while after, for writes a resync would make
        took = time.monotonic() - started
        after = {name: env.landed(name) for name in LANDINGS}
        upgrade_writes = {k: list(v) for k, v in writes.writes.items()}
        # The watch sees writes (a control), and the new pod is the one at work: a deleted
        # landed Secret comes back.
        env.run(
            "kubectl",
            *("-n", "crossplane-system", "delete", "secret", "parent-kubeconfig"),
            cluster=CHILD,
        )
        wait(lambda: env.landed("to-child"), 60, "the deleted landed Secret back")
    control = f"{CHILD}/crossplane-system/parent-kubeconfig"
    assert [w.split()[0] for w in writes.writes.get(control, [])][-1:] == ["DELETED"], writes.writes

    crd = env.get("crd", "landings.moons.kingdon.ci")
    schema = landing_schema(crd)
    for path in new_only[:3]:
        assert path in schema, path
    for path in described[:3]:
        assert schema.get(path) == new_schema[path], path
    if templated:
        # The chart owns and updated them (the Landing CRD was not applied by hand).
        annotations = crd["metadata"].get("annotations", {})
        assert annotations.get("meta.helm.sh/release-name") == RELEASE, annotations
        assert annotations.get("helm.sh/resource-policy") == "keep", annotations
        release = env.run("helm", "get", "manifest", RELEASE, "-n", NS)
        assert release.count("kind: CustomResourceDefinition") == len(new_crds)

    rewritten = {
        n: (STATE["landed"][n][1], content(after[n]))
        for n in LANDINGS
        if after[n]["metadata"]["resourceVersion"] != STATE["landed"][n][0]
    }
    unchanged = {n: c for n, c in rewritten.items() if c[0] == c[1]}
    print(
        f"\nupgrade {env.previous} -> {env.image_tag}: CRDs applied in {crds_at:.1f}s, "
        f"helm upgrade {helm_took:.1f}s, every Landing Ready as {env.image_tag} sees it "
        f"{reconciled:.1f}s after the start, watched {took:.1f}s in {watch.polls} polls: "
        f"{len(watch.flaps)} Ready flaps {watch.flaps}; {sum(map(len, upgrade_writes.values()))} "
        f"writes to landed objects {upgrade_writes}; Secrets with a new resourceVersion: {sorted(rewritten)}, "
        f"of which with unchanged content: {sorted(unchanged)}; CRDs templated: {templated}; "
        f"new in the Landing CRD: {new_only[:5]}"
    )
    assert watch.polls > 20, watch.errors
    assert watch.flaps == [], watch.flaps
    assert unchanged == {}, f"landed Secrets rewritten with the same content: {unchanged}"
    STATE["upgraded"] = {n: s["metadata"]["resourceVersion"] for n, s in after.items()}


def test_helm_rollback_to_the_previous_release(env: Upgrade) -> None:
    assert "upgraded" in STATE, "the upgrade did not complete"
    started = time.monotonic()
    with ReadyWatch(env) as watch, WriteWatch(env) as writes:
        env.run("helm", "rollback", RELEASE, "1", "-n", NS, "--wait", "--timeout=300s")
        [pod] = wait(lambda: running_only(env, env.previous), 180, f"a pod of {env.previous}")
        rolled = time.monotonic() - started
        time.sleep(15)
    took = time.monotonic() - started
    history = json.loads(env.run("helm", "history", RELEASE, "-n", NS, "-o", "json"))
    assert history[-1]["status"] == "deployed" and history[-1]["app_version"] == env.previous
    # The CRDs stay: Landings (and what they landed) survive the rollback.
    for name in crds_of(CHART, env):
        env.get("crd", name)
    landings = env.landings()
    assert sorted(landings) == sorted(LANDINGS)
    assert all(ready(landing) for landing in landings.values()), landings
    for name in LANDINGS:
        assert env.landed(name)
    print(
        f"\nhelm rollback to {env.previous}: pod {pod['metadata']['name']} in {rolled:.1f}s, "
        f"watched {took:.1f}s in {watch.polls} polls: {len(watch.flaps)} Ready flaps "
        f"{watch.flaps}; {writes.count} writes to landed objects {writes.writes}"
    )
    assert watch.polls > 20, watch.errors
    assert watch.flaps == [], watch.flaps
