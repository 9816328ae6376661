"""Crossplane v2 on a local cluster: core, provider-kubernetes, a composition function and
the garbage collector, each a local process where a Helm install would run Pods.

The binaries come from ``hack/consumers`` (:func:`moonlander_dev.consumers.consumer_dir`);
the CRDs from the same Go modules, at the versions those pin (:func:`module_dir`). Every
process logs to a file in its work directory, dies with the Python process that started it
(:func:`moonlander_dev.clusters.spawn`) and binds its own free ports on 127.0.0.1 where the
program allows it. Used by ``moonlander-dev demo --crossplane`` and the end-to-end tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from moonlander_dev import clusters as devclusters
from moonlander_dev import pki
from moonlander_dev.clusters import ControlPlaneError, repo_root

CROSSPLANE_MODULE = "github.com/crossplane/crossplane/v2"
PROVIDER_KUBERNETES_MODULE = "github.com/crossplane-contrib/provider-kubernetes"
# The legacy (v1) Object declares a conversion webhook that Crossplane's package manager
# would point at the provider's Service; out of cluster there is none.
LEGACY_OBJECT_CRD = "objects.kubernetes.crossplane.io"


class ProcessDied(RuntimeError):
    """Not an AssertionError: a test's ``eventually`` must not wait for a process that is
    gone."""


class ProviderDied(ProcessDied):
    pass


def _go_env() -> dict[str, str]:
    return {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"}


def module_dir(consumer: str, module: str) -> tuple[Path, str]:
    """The directory and version of Go module ``module`` as ``hack/consumers/<consumer>``
    pins it, from the module cache (downloaded and verified if needed)."""
    root = repo_root()
    if root is None:
        raise ControlPlaneError("the consumers' modules are read from a source checkout")
    proc = subprocess.run(
        ["go", "mod", "download", "-json", module],
        cwd=root / "hack" / "consumers" / consumer,
        capture_output=True,
        text=True,
        timeout=600,
        env=_go_env(),
        check=False,
    )
    try:
        info: dict[str, Any] = json.loads(proc.stdout)
    except ValueError:
        raise ControlPlaneError(
            f"go mod download {module} (hack/consumers/{consumer}) failed: {proc.stderr[-2000:]}"
        ) from None
    if not info.get("Dir") or info.get("Error"):
        raise ControlPlaneError(f"go mod download {module}: {info.get('Error') or 'no Dir'}")
    return Path(info["Dir"]), str(info["Version"])


def crossplane_crds() -> tuple[Path, str]:
    """Crossplane core's CRDs (``cluster/crds``; apply them server-side: they are large)."""
    directory, version = module_dir("crossplane", CROSSPLANE_MODULE)
    return directory / "cluster" / "crds", version


def provider_kubernetes_crds() -> tuple[list[dict[str, Any]], str]:
    """provider-kubernetes' CRDs (``package/crds``), ready to install out of cluster: the
    legacy Object's conversion webhook is replaced by ``strategy: None`` (only the served
    storage version is used)."""
    directory, version = module_dir("provider-kubernetes", PROVIDER_KUBERNETES_MODULE)
    found: list[dict[str, Any]] = []
    for path in sorted((directory / "package" / "crds").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                doc.pop("status", None)
                if doc["metadata"]["name"] == LEGACY_OBJECT_CRD:
                    doc["spec"]["conversion"] = {"strategy": "None"}
                found.append(doc)
    if not found:
        raise ControlPlaneError(f"{directory}: no CRDs under package/crds")
    return found, version


def _http_ok(url: str) -> bool:
    with (
        contextlib.suppress(OSError),
        urllib.request.urlopen(url, timeout=2) as resp,  # noqa: S310 - http on 127.0.0.1
    ):
        return int(resp.status) == 200
    return False


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


class LocalProcess:
    """One long-running program: its log in ``workdir``, its environment given explicitly
    (PATH, HOME in ``workdir``, and what the program needs), nothing else inherited."""

    name = "process"
    died: type[ProcessDied] = ProcessDied

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.log_path = workdir / f"{self.name}.log"
        self.process: devclusters.Process | None = None

    def start(self) -> None:
        raise NotImplementedError

    def wait_ready(self, timeout: float = 60.0) -> None:
        raise NotImplementedError

    def _spawn(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.workdir)}
        full.update(env or {})
        with self.log_path.open("ab") as log:
            try:
                popen = devclusters.spawn(args, log, full)
            except OSError as err:
                raise ControlPlaneError(f"{self.name}: cannot start {args[0]}: {err}") from err
        self.process = devclusters.Process(self.name, popen, self.log_path)

    def check_alive(self) -> None:
        assert self.process is not None, f"{self.name} was not started"
        code = self.process.popen.poll()
        if code is not None:
            raise self.died(f"{self.name} exited with {code}:\n{self.process.log_tail(40)}")

    def _wait(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            if ready():
                return
            time.sleep(0.2)
        assert self.process is not None
        raise self.died(f"{self.name}: {what} after {timeout:.0f}s:\n{self.process.log_tail(40)}")

    def stop(self) -> int | None:
        if self.process is None:
            return None
        self.process.stop()
        return self.process.popen.returncode


class ProviderProcess(LocalProcess):
    """provider-kubernetes out of cluster: a webhook certificate directory, its own ports,
    no leader election, a short poll, logging (debug) to a file."""

    name = "provider-kubernetes"
    died = ProviderDied

    def __init__(self, binary: Path, workdir: Path, kubeconfig: Path, *, poll: float) -> None:
        super().__init__(workdir)
        self.binary = binary
        self.kubeconfig = kubeconfig
        self.poll = poll
        self.health_port = devclusters.free_port()

    def start(self) -> None:
        certs = self.workdir / "webhook-tls"
        certs.mkdir(parents=True)
        pair = pki.CertificateAuthority("provider-kubernetes-webhook-ca").issue(
            "localhost", server=True
        )
        (certs / "tls.crt").write_bytes(pair.cert_pem)
        (certs / "tls.key").write_bytes(pair.key_pem)
        (certs / "tls.key").chmod(0o600)
        args = [
            str(self.binary),
            "--debug",
            "--no-leader-election",
            f"--webhook-port={devclusters.free_port()}",
            "--metrics-bind-address=0",
            f"--health-probe-bind-addr=127.0.0.1:{self.health_port}",
            f"--poll={self.poll:g}s",
            "--max-reconcile-rate=10",
        ]
        env = {"KUBECONFIG": str(self.kubeconfig), "WEBHOOK_TLS_CERT_DIR": str(certs)}
        self._spawn(args, env)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until /readyz answers 200 (its webhook server is serving, the manager started)."""
        url = f"http://127.0.0.1:{self.health_port}/readyz"
        self._wait(lambda: _http_ok(url), timeout, "not ready")


class FunctionProcess(LocalProcess):
    """A composition function serving RunFunctionRequests with mTLS on 127.0.0.1 (the
    function-sdk-go flags of hack/consumers/crossplane/function)."""

    name = "function"

    def __init__(self, binary: Path, workdir: Path, tls_dir: Path) -> None:
        super().__init__(workdir)
        self.binary = binary
        self.tls_dir = tls_dir
        self.port = devclusters.free_port()

    @property
    def endpoint(self) -> str:
        """The gRPC target for the FunctionRevision's status.endpoint."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self._spawn(
            [str(self.binary), f"--address={self.endpoint}", f"--tls-certs-dir={self.tls_dir}"]
        )

    def wait_ready(self, timeout: float = 30.0) -> None:
        self._wait(lambda: _listening(self.port), timeout, "not listening")


class CrossplaneProcess(LocalProcess):
    """Crossplane core (``crossplane core start``) against one cluster, as its admin:
    webhooks off, the package runtime External (nothing deploys packages), functions called
    with the client certificate in ``client_tls_dir``, package cache in ``workdir``."""

    name = "crossplane"

    def __init__(self, binary: Path, workdir: Path, kubeconfig: Path, client_tls_dir: Path) -> None:
        super().__init__(workdir)
        self.binary = binary
        self.kubeconfig = kubeconfig
        self.client_tls_dir = client_tls_dir
        self.health_port = devclusters.free_port()

    def start(self) -> None:
        args = [
            str(self.binary),
            "core",
            "start",
            "--enable-webhooks=false",
            "--package-runtime=External",
            f"--tls-client-certs-dir={self.client_tls_dir}",
            f"--xpkg-cache-dir={self.workdir / 'xpkg'}",
            # Crossplane binds these on every interface; free ports at least.
            f"--metrics-port={devclusters.free_port()}",
            f"--health-probe-port={self.health_port}",
            f"--webhook-port={devclusters.free_port()}",
        ]
        env = {"KUBECONFIG": str(self.kubeconfig), "POD_NAMESPACE": "crossplane-system"}
        self._spawn(args, env)

    def wait_ready(self, timeout: float = 60.0) -> None:
        url = f"http://127.0.0.1:{self.health_port}/readyz"
        self._wait(lambda: _http_ok(url), timeout, "not ready")


class GarbageCollectorProcess(LocalProcess):
    """kube-controller-manager running only the garbage collector: composed resources are
    deleted through their owner references when their XR goes (Crossplane relies on it).
    It discovers resource types every 30 s: started once the XRD's CRD exists, it knows
    the XRs from the start. No serving port (nothing to probe but its own word)."""

    name = "kube-controller-manager"
    SYNCED = b"all resource monitors have synced"

    def __init__(self, binary: Path, workdir: Path, kubeconfig: Path) -> None:
        super().__init__(workdir)
        self.binary = binary
        self.kubeconfig = kubeconfig

    def start(self) -> None:
        self._spawn(
            [
                str(self.binary),
                f"--kubeconfig={self.kubeconfig}",
                "--controllers=garbagecollector",
                "--leader-elect=false",
                "--secure-port=0",
            ]
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until it says every resource monitor has synced and it collects garbage."""
        self._wait(lambda: self.SYNCED in self.log_path.read_bytes(), timeout, "not synced")


def function_tls(directory: Path) -> tuple[Path, Path]:
    """mTLS between Crossplane and its functions, one CA: the function's server directory
    (tls.crt, tls.key, ca.crt to verify clients) and Crossplane's client directory (the
    same names, ca.crt to verify the function)."""
    ca = pki.CertificateAuthority("crossplane-functions-ca")
    dirs = (directory / "function-tls", directory / "crossplane-client-tls")
    pairs = (ca.issue("function", server=True), ca.issue("crossplane", client=True))
    for where, pair in zip(dirs, pairs, strict=True):
        where.mkdir(parents=True, exist_ok=True)
        (where / "ca.crt").write_bytes(ca.cert_pem)
        (where / "tls.crt").write_bytes(pair.cert_pem)
        (where / "tls.key").write_bytes(pair.key_pem)
        (where / "tls.key").chmod(0o600)
    return dirs
