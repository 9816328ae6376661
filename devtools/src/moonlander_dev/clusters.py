"""A local multi-cluster control plane: one etcd, one kube-apiserver per named cluster.

Each cluster has its own etcd prefix, port, CA, admin identity (``system:masters``) and
ServiceAccount issuer key, so the clusters are as separate as real ones while sharing one
etcd. Used by ``moonlander-dev dev-clusters up``, the demo, the test fixtures and benchmarks.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import functools
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from moonlander.credentials import Credentials, render_kubeconfig
from moonlander_dev import pki

ETCD_START_TIMEOUT = 60.0
APISERVER_START_TIMEOUT = 180.0  # generous: three apiservers starting at once on two cores
STOP_GRACE = 5.0  # SIGTERM, then SIGKILL: nothing here holds state worth a longer wait
ETCD = "etcd"

# The signals that stop a control plane. While one is spawning or stopping processes they
# are held (see ``_stop_signals_held``) and delivered right after, so a Ctrl-C can never
# land between fork and bookkeeping or halfway through a stop.
_STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})
_PR_SET_PDEATHSIG = 1


class ControlPlaneError(RuntimeError):
    """The control plane could not start; the message says which binary or port and why."""


def repo_root() -> Path | None:
    """The source checkout this module runs from, if any (holds ``hack/envtest``)."""
    for parent in Path(__file__).resolve().parents:
        if (parent / "hack" / "envtest" / "build.sh").is_file():
            return parent
    return None


def find_assets() -> Path:
    """Directory with kube-apiserver, etcd and kubectl (envtest's KUBEBUILDER_ASSETS).

    Uses KUBEBUILDER_ASSETS when set; otherwise builds (or finds cached) binaries with
    ``hack/envtest/build.sh`` from the source checkout.
    """
    env = os.environ.get("KUBEBUILDER_ASSETS")
    if env:
        assets = Path(env)
    else:
        root = repo_root()
        if root is None:
            raise ControlPlaneError(
                "no control-plane binaries: set KUBEBUILDER_ASSETS to a directory holding "
                "kube-apiserver, etcd and kubectl, or run from a source checkout"
            )
        proc = subprocess.run(
            ["bash", str(root / "hack" / "envtest" / "build.sh")],
            stdout=subprocess.PIPE,
            check=False,
            text=True,
        )
        if proc.returncode != 0:
            raise ControlPlaneError(
                f"hack/envtest/build.sh failed with exit code {proc.returncode}"
            )
        assets = Path(proc.stdout.strip().splitlines()[-1])
    for binary in ("kube-apiserver", "etcd", "kubectl"):
        if not os.access(assets / binary, os.X_OK):
            raise ControlPlaneError(f"{assets / binary} is missing or not executable")
    return assets


# Ports handed out by this process: never twice, even once their first user is gone. Above
# the well-known ports of a node's kubelet and controller manager (10248-10259).
_handed_out: set[int] = set()
_LOWEST = 20000


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A free loopback port below the kernel's ephemeral range. A server restarted on the
    same port (a SIGKILLed API server or controller) must find it free again; a port from
    the ephemeral range may meanwhile have become the local end of some outgoing connection."""
    top = _ephemeral_start()
    for _ in range(200):
        port = secrets.randbelow(top - _LOWEST) + _LOWEST
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise ControlPlaneError(f"no free port between {_LOWEST} and {top}")


def _child_setup(parent: int) -> None:
    """Runs in the child between fork and exec."""
    # The parent holds the stop signals while spawning; the mask is inherited, so undo it.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    # SIGKILL, not SIGTERM, when the parent dies (even by SIGKILL): nobody is left to wait
    # for a graceful stop, and a kube-apiserver whose etcd is gone never finishes one.
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl: the signal will never come
        os._exit(1)


@contextlib.contextmanager
def _stop_signals_held() -> Iterator[None]:
    # Only the calling thread's mask changes; Python runs signal handlers in the main thread,
    # which is where the CLI, the demo and the fixtures start and stop planes.
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def spawn(
    args: Sequence[str], log: IO[bytes], env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Starts a child that dies with this process and ignores a terminal's Ctrl-C.

    It gets its own process group, so a Ctrl-C reaches only the parent, which then stops
    the children in order (API servers before etcd, so none of them waits on a dead etcd).
    """
    with _stop_signals_held():
        return subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=functools.partial(_child_setup, os.getpid()),
            process_group=0,
            env=env,
        )


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace: float = STOP_GRACE) -> None:
        stop_together([self], grace)


def stop_together(processes: Sequence[Process], grace: float = STOP_GRACE) -> None:
    """SIGTERM to all at once, SIGKILL to whoever is still running after ``grace``."""
    with _stop_signals_held():
        running = [p for p in processes if p.popen.poll() is None]
        for p in running:
            p.popen.terminate()
        deadline = time.monotonic() + grace
        for p in running:
            try:
                p.popen.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.popen.kill()
                p.popen.wait()


@dataclass
class ClusterSpec:
    name: str
    extra_args: tuple[str, ...] = ()
    # For a cluster with a real node (moonlander_dev.node): more names (IP addresses, DNS
    # names) in the serving certificate, and the ServiceAccount admission plugin on (pods
    # get their token volume).
    serving_names: tuple[str, ...] = ()
    service_account_admission: bool = False


@dataclass
class Cluster:
    name: str
    url: str
    port: int
    kubeconfig: Path
    ca_pem: bytes
    admin: pki.KeyPair
    version: str = ""

    @property
    def certs(self) -> Path:
        return self.kubeconfig.parent / self.name

    @property
    def webhook_client_ca(self) -> Path:
        """The CA of the client certificate this API server presents to every admission
        webhook (``moonlander run --webhook-client-ca``)."""
        return self.certs / "webhook-client-ca.crt"

    @property
    def webhook_client(self) -> tuple[Path, Path]:
        """That client certificate and its key."""
        return self.certs / "webhook-client.crt", self.certs / "webhook-client.key"

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cadata=self.ca_pem.decode())
        cert = self.kubeconfig.parent / self.name / "admin.crt"
        key = self.kubeconfig.parent / self.name / "admin.key"
        ctx.load_cert_chain(cert, key)
        return ctx

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(  # noqa: S310 - https only, our own server
                self.url + path, context=self.ssl_context(), timeout=timeout
            ) as resp:
                return int(resp.status), resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()


def admin_kubeconfig(name: str, url: str, ca_pem: bytes, admin: pki.KeyPair) -> str:
    """A self-contained admin kubeconfig, rendered as Moonlander renders every kubeconfig."""
    creds = Credentials(
        server=url,
        ca_data=ca_pem,
        token=None,
        client_cert=admin.cert_pem,
        client_key=admin.key_pem,
        tls_server_name=None,
        insecure_skip_tls_verify=False,
        context_name=name,
        cluster_name=name,
        user_name=name,
        namespace=None,
    )
    return render_kubeconfig(creds, name=name)


# What the controller's ServiceAccount (namespace moonlander-system) does with Secrets is
# audited with full responses, so tests can prove which Secrets it read, and how.
AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: RequestResponse
    userGroups: ["system:serviceaccounts:moonlander-system"]
    resources: [{group: "", resources: ["secrets"]}]
  - level: Metadata
    resources: [{group: "authentication.k8s.io", resources: ["selfsubjectreviews"]}]
  - level: None
"""


# The API server presents a client certificate to admission webhooks (any host: the
# kubeconfig's user '*'), so a webhook can tell it from anyone else who reaches its port.
# https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#authenticate-apiservers
WEBHOOK_CLIENT_NAME = "kube-apiserver-webhook-client"
ADMISSION_CONFIG = """\
apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
  - name: ValidatingAdmissionWebhook
    configuration:
      apiVersion: apiserver.config.k8s.io/v1
      kind: WebhookAdmissionConfiguration
      kubeConfigFile: {kubeconfig}
  - name: MutatingAdmissionWebhook
    configuration:
      apiVersion: apiserver.config.k8s.io/v1
      kind: WebhookAdmissionConfiguration
      kubeConfigFile: {kubeconfig}
"""


def webhook_client_kubeconfig(client: pki.KeyPair) -> str:
    user = {
        "client-certificate-data": base64.b64encode(client.cert_pem).decode(),
        "client-key-data": base64.b64encode(client.key_pem).decode(),
    }
    return json.dumps(
        {"apiVersion": "v1", "kind": "Config", "users": [{"name": "*", "user": user}]}
    )


def _write(path: Path, data: bytes, mode: int = 0o600) -> None:
    path.write_bytes(data)
    path.chmod(mode)


@dataclass
class ControlPlane:
    """Starts and stops etcd plus one kube-apiserver per cluster under ``directory``."""

    directory: Path
    specs: Sequence[ClusterSpec]
    assets: Path | None = None
    clusters: dict[str, Cluster] = field(default_factory=dict)
    processes: list[Process] = field(default_factory=list)
    etcd_url: str = ""

    def start(self) -> None:
        started = time.monotonic()
        self.assets = self.assets or find_assets()
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "ready").unlink(missing_ok=True)
        try:
            self._start_etcd()
            pending = [self._start_apiserver(spec) for spec in self.specs]
            for cluster, proc in pending:
                self._wait_apiserver(cluster, proc, started + APISERVER_START_TIMEOUT)
        except BaseException:
            self.stop()
            raise
        info = [
            {"name": c.name, "url": c.url, "version": c.version, "kubeconfig": str(c.kubeconfig)}
            for c in self.clusters.values()
        ]
        (self.directory / "clusters.json").write_text(json.dumps(info, indent=2))
        (self.directory / "ready").write_text(f"{time.monotonic() - started:.1f}\n")

    def stop(self) -> None:
        """Stops the API servers together, then etcd. Stop signals wait until it is done."""
        with _stop_signals_held():
            stop_together([p for p in self.processes if p.name != ETCD])
            stop_together([p for p in self.processes if p.name == ETCD])
            self.processes.clear()
            (self.directory / "ready").unlink(missing_ok=True)

    def respawn(self, proc: Process) -> Process:
        """Starts a stopped process again with the same command line (fault tests)."""
        return self._spawn(proc.name, list(proc.popen.args), replacing=proc)  # type: ignore[arg-type]

    def _spawn(self, name: str, args: list[str], replacing: Process | None = None) -> Process:
        log_path = self.directory / f"{name}.log"
        # Held from fork to bookkeeping: a Ctrl-C then finds every child in self.processes.
        with _stop_signals_held(), log_path.open("ab" if replacing else "wb") as log:
            try:
                popen = spawn(args, log, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
            except OSError as err:
                raise ControlPlaneError(f"{name}: cannot start {args[0]}: {err}") from err
            proc = Process(name, popen, log_path)
            if replacing is None:
                self.processes.append(proc)
            else:
                self.processes[self.processes.index(replacing)] = proc
        return proc

    def _start_etcd(self) -> None:
        assert self.assets is not None
        client, peer = free_port(), free_port()
        data = self.directory / "etcd-data"
        shutil.rmtree(data, ignore_errors=True)
        self.etcd_url = f"http://127.0.0.1:{client}"
        proc = self._spawn(
            ETCD,
            [
                str(self.assets / "etcd"),
                "--name=moonlander",
                f"--data-dir={data}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=moonlander=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        deadline = time.monotonic() + ETCD_START_TIMEOUT
        while time.monotonic() < deadline:
            if proc.popen.poll() is not None:
                raise ControlPlaneError(
                    f"etcd exited with code {proc.popen.returncode} (client port {client}, "
                    f"peer port {peer}):\n{proc.log_tail()}"
                )
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.etcd_url}/health", timeout=2) as resp,  # noqa: S310
            ):
                if json.loads(resp.read()).get("health") == "true":
                    return
            time.sleep(0.2)
        raise ControlPlaneError(f"etcd on port {client} not healthy after {ETCD_START_TIMEOUT}s")

    def _start_apiserver(self, spec: ClusterSpec) -> tuple[Cluster, Process]:
        assert self.assets is not None
        name = spec.name
        port = free_port()
        certs = self.directory / name
        shutil.rmtree(certs, ignore_errors=True)
        certs.mkdir(parents=True)
        ca = pki.CertificateAuthority(f"{name}-ca")
        serving = ca.issue("kube-apiserver", server=True, names=spec.serving_names)
        admin = ca.issue(f"{name}-admin", organization="system:masters", client=True)
        sa = pki.signing_key()
        _write(certs / "ca.crt", ca.cert_pem, 0o644)
        _write(certs / "serving.crt", serving.cert_pem, 0o644)
        _write(certs / "serving.key", serving.key_pem)
        _write(certs / "admin.crt", admin.cert_pem, 0o644)
        _write(certs / "admin.key", admin.key_pem)
        _write(certs / "sa.pub", sa.cert_pem, 0o644)
        _write(certs / "sa.key", sa.key_pem)
        _write(certs / "audit-policy.yaml", AUDIT_POLICY.encode(), 0o644)
        webhook_ca = pki.CertificateAuthority(f"{name}-webhook-client-ca")
        webhook_client = webhook_ca.issue(WEBHOOK_CLIENT_NAME, client=True)
        _write(certs / "webhook-client-ca.crt", webhook_ca.cert_pem, 0o644)
        _write(certs / "webhook-client.crt", webhook_client.cert_pem, 0o644)
        _write(certs / "webhook-client.key", webhook_client.key_pem)
        _write(
            certs / "webhook-client.kubeconfig", webhook_client_kubeconfig(webhook_client).encode()
        )
        admission = ADMISSION_CONFIG.format(
            kubeconfig=json.dumps(str(certs / "webhook-client.kubeconfig"))
        )
        _write(certs / "admission-config.yaml", admission.encode(), 0o644)
        url = f"https://127.0.0.1:{port}"
        kubeconfig = self.directory / f"{name}.kubeconfig"
        _write(kubeconfig, admin_kubeconfig(name, url, ca.cert_pem, admin).encode())
        args = [
            str(self.assets / "kube-apiserver"),
            f"--etcd-servers={self.etcd_url}",
            f"--etcd-prefix=/{name}/registry",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={certs}",
            f"--tls-cert-file={certs / 'serving.crt'}",
            f"--tls-private-key-file={certs / 'serving.key'}",
            f"--client-ca-file={certs / 'ca.crt'}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={certs / 'sa.pub'}",
            f"--service-account-signing-key-file={certs / 'sa.key'}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--endpoint-reconciler-type=none",
            *(
                ()
                if spec.service_account_admission
                else ("--disable-admission-plugins=ServiceAccount",)
            ),
            "--allow-privileged=true",
            "--profiling=false",
            f"--audit-policy-file={certs / 'audit-policy.yaml'}",
            f"--audit-log-path={self.directory / f'{name}-audit.log'}",
            f"--admission-control-config-file={certs / 'admission-config.yaml'}",
            *spec.extra_args,
        ]
        proc = self._spawn(f"{name}-apiserver", args)
        cluster = Cluster(name, url, port, kubeconfig, ca.cert_pem, admin)
        return cluster, proc

    def _wait_apiserver(self, cluster: Cluster, proc: Process, deadline: float) -> None:
        last = "no answer"
        while time.monotonic() < deadline:
            if proc.popen.poll() is not None:
                raise ControlPlaneError(
                    f"kube-apiserver for {cluster.name} (port {cluster.port}) exited with code "
                    f"{proc.popen.returncode}:\n{proc.log_tail()}"
                )
            try:
                status, _ = cluster.get("/readyz", timeout=3)
                if status == 200:
                    _, version = cluster.get("/version")
                    cluster.version = str(json.loads(version)["gitVersion"])
                    self.clusters[cluster.name] = cluster
                    return
                last = f"/readyz answered {status}"
            except (OSError, ssl.SSLError) as err:
                last = str(err)
            time.sleep(0.5)
        raise ControlPlaneError(
            f"kube-apiserver for {cluster.name} (port {cluster.port}) not ready after "
            f"{APISERVER_START_TIMEOUT:.0f}s ({last}):\n{proc.log_tail()}"
        )

    def summary(self) -> Iterator[str]:
        width = max((len(n) for n in self.clusters), default=0)
        for c in self.clusters.values():
            yield f"{c.name:<{width}}  {c.url}  {c.version}  kubeconfig={c.kubeconfig}"

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def parse_cluster_names(text: str) -> list[ClusterSpec]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ValueError("no cluster names given")
    for n in names:
        if not n.replace("-", "").isalnum() or not n[0].isalpha() or len(n) > 40:
            raise ValueError(f"invalid cluster name {n!r}: use letters, digits and '-'")
    if len(set(names)) != len(names):
        raise ValueError("cluster names must be unique")
    return [ClusterSpec(n) for n in names]


def stop_on_signals() -> None:
    """The first SIGINT/SIGTERM raises KeyboardInterrupt in the main thread, to stop what
    runs in the foreground; later ones must not cut that stop short (it is bounded:
    STOP_GRACE for the API servers, then for etcd)."""
    stopping = False

    def _stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            raise KeyboardInterrupt

    for signum in _STOP_SIGNALS:
        signal.signal(signum, _stop)


def run_foreground(directory: Path, specs: Sequence[ClusterSpec]) -> int:
    """``moonlander-dev dev-clusters up``: start, print a summary, wait for SIGINT/SIGTERM."""
    plane = ControlPlane(directory, specs)
    stop_on_signals()
    try:
        plane.start()
        for line in plane.summary():
            print(line, flush=True)
        print(f"ready: {directory / 'ready'}  (Ctrl-C stops every process)", flush=True)
        while all(p.popen.poll() is None for p in plane.processes):
            time.sleep(0.5)
        dead = [p for p in plane.processes if p.popen.poll() is not None]
        for p in dead:
            print(f"{p.name} exited with code {p.popen.returncode}:\n{p.log_tail()}", flush=True)
        return 1
    except KeyboardInterrupt:
        return 0
    except ControlPlaneError as err:
        print(f"error: {err}", flush=True)
        return 1
    finally:
        plane.stop()
