"""Argo CD v3.6.1's application-controller and repo-server as local processes, for
tests/e2e/test_argocd_deploy.py.

The binary is ``argocd`` from ``hack/consumers/argocd`` (Argo CD's own cobra commands for the
two servers, dispatched on ``ARGOCD_BINARY_NAME`` as upstream's multi-call binary does). Around
it: Debian's redis-server and ``git daemon`` (both installed by ``hack/consumers/argocd/deps.sh``),
each on a free loopback port, and in the management cluster Argo CD's CRDs (from the pinned
module's ``manifests/crds``), a namespace with argocd-cm, argocd-rbac-cm, argocd-secret and the
``default`` AppProject (which Argo CD's API server would create; it does not run here).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from lightkube import ApiError, AsyncClient
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.core_v1 import ConfigMap, Namespace, Secret

from moonlander_dev.clusters import free_port, repo_root, spawn

from .consumers import ARGO_CD, crds, read_text

Application = create_namespaced_resource("argoproj.io", "v1alpha1", "Application", "applications")
AppProject = create_namespaced_resource("argoproj.io", "v1alpha1", "AppProject", "appprojects")
PART_OF = {"app.kubernetes.io/part-of": "argocd"}  # Argo CD reads only settings labelled so


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without proxies (every address here is loopback)."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(extra)
    return env


def install_deps() -> None:
    """redis-server and git from Debian, when missing (hack/consumers/argocd/deps.sh)."""
    root = repo_root()
    assert root is not None, "Argo CD's servers are built from a source checkout"
    proc = subprocess.run(
        ["bash", str(root / "hack" / "consumers" / "argocd" / "deps.sh")],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, f"hack/consumers/argocd/deps.sh failed: {proc.stderr[-3000:]}"


class Server:
    """One long-running process (dies with the test process), logging to a file."""

    def __init__(self, name: str, args: list[str], workdir: Path, env: dict[str, str]) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        self._log = self.log_path.open("ab")
        self.proc = spawn(args, self._log, env=env)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 30) -> str:
        return f"--- {self.name} ---\n" + "\n".join(self.log().splitlines()[-lines:])

    def assert_running(self) -> None:
        assert self.proc.poll() is None, f"{self.name} exited {self.proc.returncode}\n{self.tail()}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def wait_port(server: Server, port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        server.assert_running()
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.1)
    raise AssertionError(f"{server.name} not listening on {port} after {timeout}s\n{server.tail()}")


def wait_http(server: Server, url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        server.assert_running()
        with (
            contextlib.suppress(OSError, urllib.error.URLError),
            urllib.request.urlopen(url, timeout=2) as resp,  # noqa: S310 - http://127.0.0.1 only
        ):
            if resp.status == 200:
                return
        time.sleep(0.2)
    raise AssertionError(f"{server.name}: {url} not 200 after {timeout}s\n{server.tail()}")


def git(repo: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(
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


class ArgoCD:
    """redis-server, git daemon, repo-server and application-controller for one Argo CD
    namespace of the management cluster."""

    def __init__(self, binary: Path, workdir: Path, kubeconfig: Path, namespace: str) -> None:
        self.binary = binary
        self.workdir = workdir
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.servers: list[Server] = []
        self.git_root = workdir / "git"
        self.git_root.mkdir()
        self.git_port = 0

    def _start(self, name: str, args: list[str], env: dict[str, str]) -> Server:
        server = Server(name, args, self.workdir, env)
        self.servers.append(server)
        return server

    def start(self) -> None:
        redis_port = free_port()
        (self.workdir / "redis").mkdir()
        redis = self._start(
            "redis-server",
            # In memory only, loopback only, no password: as Argo CD's own manifests run it
            # inside the pod network (argocd-redis), here on 127.0.0.1.
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(redis_port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir / "redis"),
            ],
            clean_env(),
        )
        self.git_port = free_port()
        daemon = self._start(
            "git-daemon",
            [
                "git",
                "daemon",
                "--reuseaddr",
                "--listen=127.0.0.1",
                f"--port={self.git_port}",
                f"--base-path={self.git_root}",
                "--export-all",
                "--informative-errors",
                str(self.git_root),
            ],
            clean_env(GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1"),
        )
        wait_port(redis, redis_port)
        wait_port(daemon, self.git_port)

        redis_addr = f"127.0.0.1:{redis_port}"
        repo_port, repo_metrics = free_port(), free_port()
        tmp = self.workdir / "tmp"
        tmp.mkdir()
        # Argo CD's image puts this script of its repository on PATH: the repo-server runs
        # it on every revision it generates manifests for (its deprecated signature check).
        tools = self.workdir / "bin"
        tools.mkdir()
        wrapper = tools / "git-verify-wrapper.sh"
        wrapper.write_text(read_text(ARGO_CD, "hack/git-verify-wrapper.sh"))
        wrapper.chmod(0o755)
        common = clean_env(
            # The repo-server's git runs GIT_ASKPASS=argocd: this binary, by its own name.
            PATH=f"{self.binary.parent}:{tools}:{os.environ.get('PATH', '')}",
            HOME=str(self.workdir),
            TMPDIR=str(tmp),  # the repo-server clones into $TMPDIR/_argocd-repo
            ARGOCD_GPG_ENABLED="false",  # no GnuPG keyring; no signature verification asked
            # The askpass socket of the repo-server's git (default /tmp/reposerver-ask-pass.sock).
            ARGOCD_ASK_PASS_SOCK=str(self.workdir / "askpass.sock"),
        )
        repo_server = self._start(
            "argocd-repo-server",
            [
                str(self.binary),
                "--address=127.0.0.1",
                f"--port={repo_port}",
                "--metrics-address=127.0.0.1",
                f"--metrics-port={repo_metrics}",
                "--disable-tls",
                "--client-ca-path=",  # no mTLS without TLS (its default is a pod's mount)
                f"--redis={redis_addr}",
                "--logformat=text",
            ],
            {**common, "ARGOCD_BINARY_NAME": "argocd-repo-server"},
        )
        wait_http(repo_server, f"http://127.0.0.1:{repo_metrics}/healthz")
        self.controller_metrics = free_port()
        controller = self._start(
            "argocd-application-controller",
            [
                str(self.binary),
                f"--kubeconfig={self.kubeconfig}",
                f"--namespace={self.namespace}",
                f"--repo-server=127.0.0.1:{repo_port}",
                "--repo-server-plaintext",
                f"--redis={redis_addr}",
                f"--metrics-port={self.controller_metrics}",
                # Every Application is compared again at least every 10 s (default 120 s
                # plus up to 60 s of jitter): what a revoked cluster looks like shows sooner.
                "--app-resync=10",
                "--app-resync-jitter=0",
                "--status-processors=2",
                "--operation-processors=2",
                "--logformat=text",
            ],
            {**common, "ARGOCD_BINARY_NAME": "argocd-application-controller"},
        )
        wait_http(controller, f"http://127.0.0.1:{self.controller_metrics}/metrics")

    def assert_running(self) -> None:
        for server in self.servers:
            server.assert_running()

    def logs(self) -> str:
        return "\n".join(server.tail() for server in self.servers)

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()

    def repository(self, name: str, files: dict[str, str]) -> str:
        """A bare repository served by git daemon with ``files`` committed on ``main``; its
        git:// URL."""
        bare = self.git_root / f"{name}.git"
        git(self.git_root, "init", "--quiet", "--bare", "-b", "main", str(bare))
        work = self.workdir / f"{name}-work"
        git(self.workdir, "init", "--quiet", "-b", "main", str(work))
        for path, text in files.items():
            (work / path).parent.mkdir(parents=True, exist_ok=True)
            (work / path).write_text(text)
        git(work, "add", "--all")
        git(work, "commit", "--quiet", "-m", "manifests")
        git(work, "push", "--quiet", str(bare), "main")
        return f"git://127.0.0.1:{self.git_port}/{name}.git"


async def install_crds(client: AsyncClient) -> None:
    """Argo CD's CRDs from the pinned module (manifests/crds): the ones the binary serves."""
    found = crds(ARGO_CD, "manifests/crds")
    for crd in found.values():
        await client.apply(
            CustomResourceDefinition.from_dict(crd),  # type: ignore[call-overload]
            field_manager="tests",
            force=True,
        )
    for name in found:
        await client.wait(CustomResourceDefinition, name, for_conditions=["Established"])


async def install_settings(client: AsyncClient, namespace: str) -> None:
    """The Argo CD namespace: argocd-cm (no in-cluster destination: every cluster is a cluster
    Secret), argocd-rbac-cm, argocd-secret (a server key, as the API server would generate) and
    the ``default`` AppProject open to every repository and destination, Namespaces included."""
    with contextlib.suppress(ApiError):
        await client.create(Namespace(metadata=ObjectMeta(name=namespace)))

    def meta(name: str) -> ObjectMeta:
        return ObjectMeta(name=name, namespace=namespace, labels=dict(PART_OF))

    await client.create(
        ConfigMap(
            metadata=meta("argocd-cm"),
            data={"cluster.inClusterEnabled": "false"},
        )
    )
    await client.create(ConfigMap(metadata=meta("argocd-rbac-cm")))
    await client.create(
        Secret(
            metadata=meta("argocd-secret"),
            stringData={"server.secretkey": secrets.token_urlsafe(32)},
        )
    )
    project: dict[str, Any] = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AppProject",
        "metadata": {"name": "default", "namespace": namespace},
        "spec": {
            "sourceRepos": ["*"],
            "destinations": [{"server": "*", "namespace": "*", "name": "*"}],
            "clusterResourceWhitelist": [{"group": "*", "kind": "*"}],
        },
    }
    await client.create(AppProject.from_dict(project))


def application(
    namespace: str, name: str, repo_url: str, cluster: str, target_namespace: str
) -> Any:
    """An Application syncing ``repo_url``'s ``apps`` directory on ``main`` into the Argo CD
    cluster named ``cluster``, automatically."""
    return Application.from_dict(
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "project": "default",
                "source": {"repoURL": repo_url, "targetRevision": "main", "path": "apps"},
                "destination": {"name": cluster, "namespace": target_namespace},
                "syncPolicy": {"automated": {"prune": True}},
            },
        }
    )
