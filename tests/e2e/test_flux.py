"""Real Flux applies manifests through a kubeconfig Moonlander landed.

Flux's source-controller and kustomize-controller, built from ``hack/consumers/flux`` (the
versions its go.mod pins), run as local processes against child-a (Harvey's role), with
their own CRDs from the same modules. A ParentToChild Landing lands the parent's kubeconfig
into child-a; a GitRepository there follows a git repository the test serves over smart HTTP
on loopback (``git http-backend``); a Kustomization with ``spec.kubeConfig.secretRef`` naming
the landed Secret (key ``value``, Flux's default) applies its ConfigMap into the **parent**.
After the Landing changes to a minted ServiceAccount token, Flux keeps applying new commits
with what is landed now.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube import ApiError, AsyncClient
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.core_v1 import ConfigMap, Namespace, Secret
from lightkube.types import PatchType

from moonlander import api
from moonlander.kube.resources import LandingResource
from moonlander_dev import clusters as devclusters
from moonlander_dev.clusters import repo_root
from moonlander_dev.consumers import consumer_dir

from .conftest import Env
from .harness import PLANTED, decoded, eventually, landing, measure, secret_with, wait_reason
from .test_landing import landed

# The first test may build the controllers (``make setup`` builds them ahead of time).
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

KUSTOMIZE_CONTROLLER = "github.com/fluxcd/kustomize-controller"
SOURCE_CONTROLLER = "github.com/fluxcd/source-controller"
FLUX_NAMESPACE = "flux-system"
GitRepository = create_namespaced_resource(
    "source.toolkit.fluxcd.io", "v1", "GitRepository", "gitrepositories"
)
Kustomization = create_namespaced_resource(
    "kustomize.toolkit.fluxcd.io", "v1", "Kustomization", "kustomizations"
)


# --------------------------------------------------------------------------------------------
# The controllers, their CRDs and a git server
# --------------------------------------------------------------------------------------------


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(extra)
    return env


def pinned_module_dir(module: str) -> tuple[Path, str]:
    """Directory (in the Go module cache) and version of ``module`` as hack/consumers/flux
    pins it: the CRDs installed are those of the controllers that run."""
    root = repo_root()
    assert root is not None, "the Flux consumers are built from a source checkout"
    proc = subprocess.run(
        ["go", "mod", "download", "-json", module],
        cwd=root / "hack" / "consumers" / "flux",
        capture_output=True,
        text=True,
        timeout=600,
        env=_clean_env(GOTOOLCHAIN="local", GOFLAGS="-mod=mod"),
        check=False,
    )
    try:
        info: dict[str, Any] = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"go mod download {module} failed: {proc.stderr[-2000:]}") from None
    assert info.get("Dir") and not info.get("Error"), f"go mod download {module}: {info}"
    return Path(info["Dir"]), str(info["Version"])


def flux_crds() -> tuple[list[dict[str, Any]], dict[str, str]]:
    crds: list[dict[str, Any]] = []
    versions = {}
    for module in (SOURCE_CONTROLLER, KUSTOMIZE_CONTROLLER):
        directory, version = pinned_module_dir(module)
        versions[module] = version
        for path in sorted((directory / "config" / "crd" / "bases").glob("*.yaml")):
            for doc in yaml.safe_load_all(path.read_text()):
                if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                    doc.pop("status", None)
                    crds.append(doc)
    return crds, versions


class FluxController:
    """One Flux controller as a local process (dies with the test process), logging to a
    file; health and metrics on free loopback ports, no leader election."""

    def __init__(self, binary: Path, workdir: Path, kubeconfig: Path, *args: str) -> None:
        self.name = binary.name
        self.health_port = devclusters.free_port()
        self.log_path = workdir / f"{self.name}.log"
        self.log_file = self.log_path.open("ab")
        self.proc = devclusters.spawn(
            [
                str(binary),
                f"--health-addr=127.0.0.1:{self.health_port}",
                f"--metrics-addr=127.0.0.1:{devclusters.free_port()}",
                "--log-encoding=console",
                *args,
            ],
            self.log_file,
            env=_clean_env(KUBECONFIG=str(kubeconfig), RUNTIME_NAMESPACE=FLUX_NAMESPACE),
        )

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return f"--- {self.name} ---\n" + "\n".join(text.splitlines()[-lines:])

    def assert_running(self) -> None:
        assert self.proc.poll() is None, (
            f"{self.name} exited with {self.proc.returncode}\n{self.log_tail()}"
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.assert_running()
            with contextlib.suppress(OSError, urllib.error.URLError):
                url = f"http://127.0.0.1:{self.health_port}/readyz"
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return
            time.sleep(0.2)
        raise AssertionError(f"{self.name} not ready after {timeout}s\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()


def git(repo: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=_clean_env(
            GIT_CONFIG_GLOBAL="/dev/null",
            GIT_CONFIG_NOSYSTEM="1",
            GIT_AUTHOR_NAME="tests",
            GIT_AUTHOR_EMAIL="tests@example.invalid",
            GIT_COMMITTER_NAME="tests",
            GIT_COMMITTER_EMAIL="tests@example.invalid",
        ),
        check=False,
    )
    assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stderr}"
    return proc.stdout.strip()


def _http_backend() -> str:
    exec_path = subprocess.run(
        ["git", "--exec-path"], capture_output=True, text=True, check=True
    ).stdout.strip()
    backend = Path(exec_path) / "git-http-backend"
    assert backend.is_file(), f"git http-backend not found in {exec_path}"
    return str(backend)


class GitServer:
    """Repositories under ``root`` over git's smart HTTP protocol on loopback: each request
    runs ``git http-backend`` as a CGI program (read-only: receive-pack is off by default)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        backend = _http_backend()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._cgi()

            def do_POST(self) -> None:
                self._cgi()

            def _cgi(self) -> None:
                path, _, query = self.path.partition("?")
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                env = {
                    "GIT_PROJECT_ROOT": str(root),
                    "GIT_HTTP_EXPORT_ALL": "1",
                    "GIT_CONFIG_NOSYSTEM": "1",
                    "GIT_CONFIG_GLOBAL": "/dev/null",
                    "PATH": os.environ.get("PATH", ""),
                    "REQUEST_METHOD": self.command,
                    "PATH_INFO": path,
                    "QUERY_STRING": query,
                    "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                    "CONTENT_LENGTH": str(len(body)),
                    "REMOTE_ADDR": self.client_address[0],
                    "SERVER_PROTOCOL": "HTTP/1.1",
                    "GATEWAY_INTERFACE": "CGI/1.1",
                }
                for header in ("Content-Encoding", "Git-Protocol"):
                    if header in self.headers:
                        env["HTTP_" + header.upper().replace("-", "_")] = self.headers[header]
                out = subprocess.run(
                    [backend], input=body, capture_output=True, env=env, timeout=60, check=False
                ).stdout
                head, _, payload = out.partition(b"\r\n\r\n")
                status, headers = 200, []
                for line in head.decode("latin-1").split("\r\n"):
                    key, _, value = line.partition(":")
                    if key.lower() == "status":
                        status = int(value.split()[0])
                    elif key:
                        headers.append((key, value.strip()))
                self.send_response(status)
                for key, value in headers:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Flux:
    """What the tests share: the two controllers in child-a and the git server."""

    def __init__(
        self,
        source: FluxController,
        kustomize: FluxController,
        git_server: GitServer,
        workdir: Path,
        versions: dict[str, str],
    ) -> None:
        self.source = source
        self.kustomize = kustomize
        self.git_server = git_server
        self.workdir = workdir
        self.versions = versions

    def logs(self) -> str:
        return self.source.log_tail() + "\n" + self.kustomize.log_tail()

    def assert_running(self) -> None:
        self.source.assert_running()
        self.kustomize.assert_running()

    def repository(self, name: str) -> tuple[Path, str]:
        """A new bare repository served at the returned URL, and a work tree that pushes
        to it (``commit``)."""
        bare = self.git_server.root / f"{name}.git"
        git(self.git_server.root, "init", "--quiet", "--bare", "-b", "main", str(bare))
        work = self.workdir / f"{name}-work"
        git(self.workdir, "init", "--quiet", "-b", "main", str(work))
        git(work, "remote", "add", "origin", str(bare))
        return work, self.git_server.url(f"{name}.git")


def commit(work: Path, files: dict[str, str], message: str) -> str:
    """Writes ``files``, commits and pushes to the bare repository; the commit's SHA."""
    for name, text in files.items():
        (work / name).write_text(text)
    git(work, "add", "--all")
    git(work, "commit", "--quiet", "-m", message)
    git(work, "push", "--quiet", "origin", "main")
    return git(work, "rev-parse", "HEAD")


@pytest.fixture(scope="module")
async def flux(env: Env, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Flux]:
    binaries = consumer_dir("flux")  # fails (never skips) when the build fails
    crds, versions = flux_crds()
    child = env.admin["child-a"]
    for crd in crds:
        await child.apply(
            CustomResourceDefinition.from_dict(crd),  # type: ignore[call-overload]
            field_manager="tests",
            force=True,
        )
    for crd in crds:
        await child.wait(
            CustomResourceDefinition, crd["metadata"]["name"], for_conditions=["Established"]
        )
    with contextlib.suppress(ApiError):
        await child.create(Namespace(metadata=ObjectMeta(name=FLUX_NAMESPACE)))

    workdir = tmp_path_factory.mktemp("flux")
    (workdir / "git").mkdir()
    (workdir / "artifacts").mkdir()
    git_server = GitServer(workdir / "git")
    kubeconfig = env.plane["child-a"].kubeconfig
    storage = devclusters.free_port()
    source = FluxController(
        binaries / "source-controller",
        workdir,
        kubeconfig,
        f"--storage-path={workdir / 'artifacts'}",
        f"--storage-addr=127.0.0.1:{storage}",
        f"--storage-adv-addr=127.0.0.1:{storage}",
    )
    kustomize = FluxController(binaries / "kustomize-controller", workdir, kubeconfig)
    try:
        source.wait_ready()
        kustomize.wait_ready()
        yield Flux(source, kustomize, git_server, workdir, versions)
    finally:
        source.stop()
        kustomize.stop()
        git_server.close()
        print(f"\nflux {versions}; logs in {workdir}")


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def configmap_manifest(namespace: str, greeting: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "from-flux", "namespace": namespace},
            "data": {"greeting": greeting},
        }
    )


def status_of(obj: Any) -> dict[str, Any]:
    return dict(obj.status or {})


def ready(obj: Any) -> dict[str, Any] | None:
    for cond in status_of(obj).get("conditions", []):
        if cond["type"] == "Ready":
            return dict(cond)
    return None


async def wait_flux(flux: Flux, probe: Any, what: str, timeout: float = 90.0) -> Any:
    """``eventually``, failing at once when a controller died, with their logs on timeout."""

    async def checked() -> Any:
        flux.assert_running()
        return await probe()

    try:
        return await eventually(checked, timeout=timeout, interval=0.25, what=what)
    except AssertionError as err:
        raise AssertionError(f"{err}\n{flux.logs()}") from None


async def reconcile_now(client: AsyncClient, namespace: str, name: str) -> None:
    """What ``flux reconcile source git`` does: the requestedAt annotation."""
    await client.patch(
        GitRepository,
        name,
        {
            "metadata": {
                "annotations": {"reconcile.fluxcd.io/requestedAt": datetime.now(UTC).isoformat()}
            }
        },
        namespace=namespace,
        patch_type=PatchType.MERGE,
    )


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------


async def test_flux_applies_into_the_parent_with_the_landed_kubeconfig(
    env: Env, flux: Flux, namespace: str
) -> None:
    """Pattern A with Flux in Harvey: the Kustomization reaches the parent through the
    landed Secret, and keeps doing so after the Landing changes what is landed."""
    local, child = env.local, env.admin["child-a"]
    # The CozyStack-shaped source (child-a's admin kubeconfig) in the parent.
    await local.create(
        secret_with(
            namespace,
            "kubernetes-harvey-admin-kubeconfig",
            {"admin.conf": env.kubeconfig_text("child-a")},
        )
    )
    await local.create(
        landing(
            namespace,
            "parent-for-flux",
            kubeconfigSecretName="kubernetes-harvey-admin-kubeconfig",
            writeKubeconfigSecretName="parent-kubeconfig",
        )
    )
    await wait_reason(local, namespace, "parent-for-flux", "Synced")
    secret = await landed(child, namespace, "parent-kubeconfig")
    first = decoded(secret, "value")
    assert yaml.safe_load(first)["clusters"][0]["cluster"]["server"] == env.plane["parent"].url

    work, url = flux.repository(f"fleet-{namespace}")
    rev1 = commit(work, {"configmap.yaml": configmap_manifest(namespace, "hello")}, "hello")
    started = time.monotonic()
    await child.create(
        GitRepository.from_dict(
            {
                "apiVersion": "source.toolkit.fluxcd.io/v1",
                "kind": "GitRepository",
                "metadata": {"name": "fleet", "namespace": namespace},
                "spec": {"interval": "1m", "url": url, "ref": {"branch": "main"}},
            }
        )
    )
    await child.create(
        Kustomization.from_dict(
            {
                "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
                "kind": "Kustomization",
                "metadata": {"name": "parent-apps", "namespace": namespace},
                "spec": {
                    "interval": "1m",
                    "retryInterval": "2s",
                    "timeout": "30s",
                    "prune": True,
                    "path": "./",
                    "sourceRef": {"kind": "GitRepository", "name": "fleet"},
                    # No key: Flux reads "value", which Moonlander always writes.
                    "kubeConfig": {"secretRef": {"name": "parent-kubeconfig"}},
                },
            }
        )
    )

    async def applied(revision: str, greeting: str) -> bool:
        ks = await child.get(Kustomization, "parent-apps", namespace=namespace)
        cond = ready(ks)
        assert cond is not None and cond["status"] == "True", cond
        assert status_of(ks).get("lastAppliedRevision", "").endswith(revision), ks.status
        cm = await local.get(ConfigMap, "from-flux", namespace=namespace)
        assert (cm.data or {}).get("greeting") == greeting, cm.data
        return True

    await wait_flux(flux, lambda: applied(rev1, "hello"), "Kustomization applied into the parent")
    measure("flux: objects created->applied in parent", time.monotonic() - started)
    # The parent got it, not child-a (where the same namespace exists too).
    with pytest.raises(ApiError) as missing:
        await child.get(ConfigMap, "from-flux", namespace=namespace)
    assert missing.value.status.code == 404
    src = await child.get(GitRepository, "fleet", namespace=namespace)
    assert ready(src) is not None and ready(src)["status"] == "True"  # type: ignore[index]

    # The Landing changes: a ServiceAccount minted in the parent, allowed to manage
    # ConfigMaps in this namespace only, replaces the admin credential. Flux reads the
    # Secret on every reconcile, so the next commit is applied with the new token.
    await local.patch(
        LandingResource,
        "parent-for-flux",
        {
            "spec": {
                "serviceAccount": {
                    "name": f"{namespace}-flux",
                    # Minted in the parent: only into a mint namespace, never the Landing's.
                    "namespace": api.DEFAULT_MINT_NAMESPACE,
                    # Inline rules: the aggregated ClusterRole "edit" is empty without
                    # kube-controller-manager, which the test clusters do not run.
                    "rules": [
                        {
                            "apiGroups": [""],
                            "resources": ["configmaps"],
                            "verbs": ["get", "list", "watch", "create", "patch", "delete"],
                        }
                    ],
                    "rulesNamespaces": [namespace],
                }
            }
        },
        namespace=namespace,
        patch_type=PatchType.MERGE,
    )

    async def minted() -> str | None:
        text = decoded(await child.get(Secret, "parent-kubeconfig", namespace=namespace), "value")
        user = yaml.safe_load(text)["users"][0]["user"]
        return text if text != first and "token" in user else None

    second = await wait_flux(flux, minted, "minted token landed")
    PLANTED.append(yaml.safe_load(second)["users"][0]["user"]["token"])
    rev2 = commit(work, {"configmap.yaml": configmap_manifest(namespace, "rotated")}, "rotated")
    started = time.monotonic()
    await reconcile_now(child, namespace, "fleet")
    await wait_flux(flux, lambda: applied(rev2, "rotated"), "new commit applied after the update")
    measure("flux: commit->applied with minted token", time.monotonic() - started)

    # It is the landed token that Flux used: a ConfigMap outside what the ServiceAccount
    # may edit is refused, naming the ServiceAccount.
    outside = configmap_manifest("default", "nope").replace("from-flux", f"{namespace}-x")
    rev3 = commit(work, {"outside.yaml": outside}, "outside")
    await reconcile_now(child, namespace, "fleet")

    async def refused() -> str:
        ks = await child.get(Kustomization, "parent-apps", namespace=namespace)
        cond = ready(ks)
        assert cond is not None and cond["status"] == "False", cond
        assert rev3 in status_of(ks).get("lastAttemptedRevision", ""), ks.status
        return str(cond["message"])

    message = await wait_flux(flux, refused, "apply outside the minted rights refused")
    minted = f"system:serviceaccount:{api.DEFAULT_MINT_NAMESPACE}:{namespace}-flux"
    assert minted in message, message
    assert "forbidden" in message, message
