"""A real node for the local control plane: containerd and a kubelet on this host.

``moonlander-dev dev-clusters up --node`` (and tests/e2e/test_node.py) add one node to a cluster
of a :class:`~moonlander_dev.clusters.ControlPlane`, so that Deployments really run as pods:
images from ``make image`` imported into containerd (no registry), probes, ServiceAccount
tokens, read-only root filesystems, leader election between replicas.

What runs, all started and stopped here:

- containerd (Debian's, ``hack/node/deps.sh``) with its own root, state, socket and
  configuration under the node's directory: runc, cgroupfs, ``restrict_oom_score_adj``
  and network namespaces under its state directory (not ``/run/netns``);
- a pause image made of a tiny static binary (``hack/node/pause``), imported under the
  sandbox image name containerd asks for;
- the CNI ``bridge`` plugin (``/usr/lib/cni``) on a bridge made here, without IP masquerade:
  pods reach only this host, where each API server of the plane is forwarded from the bridge
  address (and the cluster's ``kubernetes`` Service address, as kube-proxy would) to its
  loopback port;
- kube-controller-manager (Deployments, ReplicaSets, ServiceAccounts, ``kube-root-ca.crt``,
  garbage collection, namespaces) and, instead of kube-scheduler, a binder that assigns every
  unscheduled pod to the one node;
- the kubelet (``hack/envtest/build.sh``), as the cluster's admin, with cgroupfs under its
  own cgroup root, no iptables chains, its root directory, certificates and pod logs under
  the node's directory, and all pods together limited in memory.

The host is left as it was found: the bridge and addresses are deleted, the kernel
parameters the kubelet sets are put back, the cgroups, mounts and CNI state made are
removed, and every process (containers and shims included) is stopped.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import io
import ipaddress
import json
import os
import selectors
import shutil
import signal
import socket
import ssl
import subprocess
import tarfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moonlander_dev.clusters import (
    Cluster,
    ClusterSpec,
    ControlPlane,
    ControlPlaneError,
    Process,
    repo_root,
    spawn,
    stop_on_signals,
    stop_together,
)

NODE_NAME = "moonlander-node"
BRIDGE = "mlnode0"
POD_SUBNET = "10.213.0.0/24"
GATEWAY = "10.213.0.1"  # the bridge's address: the node's IP, where pods reach this host
SERVICE_IP = "10.0.0.1"  # the `kubernetes` Service of clusters.py's 10.0.0.0/24 range
SERVICE_NAMES = (
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
CLUSTER_DOMAIN = "cluster.local"
SANDBOX_IMAGE = "registry.k8s.io/pause:3.10"
CGROUP_ROOT = "/moonlander-node"
RUN_LINK = Path("/run/moonlander-node")
# Fixed paths the kubelet writes to whatever its --root-dir; a node that made them removes them.
KUBELET_FIXED_DIR = Path("/var/lib/kubelet")
CONTAINER_LOG_LINKS = Path("/var/log/containers")
POD_MEMORY = 2 << 30  # what all pods together may use
NODE_START_TIMEOUT = 180.0
NODE_LOCK_TIMEOUT = 900.0  # another test session's node: its whole module runs in about 90 s
# Kernel parameters the kubelet sets (cm.setupKernelTunables) and the bridge plugin may set.
SYSCTLS = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
    "net/ipv4/ip_forward",
)
CONTROLLERS = (
    "deployment-controller",
    "replicaset-controller",
    "serviceaccount-controller",
    "root-ca-certificate-publisher-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "clusterrole-aggregation-controller",
)


def state_file() -> Path:
    """What the running node changed on the host, for whoever has to put it back."""
    return cache_dir() / "node-state.json"


class NodeError(ControlPlaneError):
    """The node could not start; the message says which part and why."""


def node_cluster_specs(names: Sequence[str]) -> list[ClusterSpec]:
    """Cluster specs for a plane with a node: every API server also serves the addresses
    pods use (the ``kubernetes`` Service address and the bridge's), and admits pods with
    their ServiceAccount token volume."""
    return [
        ClusterSpec(
            n, serving_names=(SERVICE_IP, GATEWAY, *SERVICE_NAMES), service_account_admission=True
        )
        for n in names
    ]


def _run(args: Sequence[str], what: str, timeout: float = 120.0) -> str:
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise NodeError(f"{what} failed ({' '.join(args)}): {proc.stderr.strip()[-2000:]}")
    return proc.stdout


def cache_dir() -> Path:
    base = os.environ.get("MOONLANDER_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "moonlander"
    )
    return Path(base) / "node"


def _repo() -> Path:
    root = repo_root()
    if root is None:
        raise NodeError("the dev node needs the source checkout (hack/node)")
    return root


def install_host_packages() -> None:
    """containerd, runc, the CNI plugins and friends, from Debian, when missing."""
    proc = subprocess.run(["bash", str(_repo() / "hack" / "node" / "deps.sh")], check=False)
    if proc.returncode != 0:
        raise NodeError(f"hack/node/deps.sh failed with exit code {proc.returncode}")


def pause_image() -> Path:
    """An OCI archive of the pause image (a static Go binary), built once into the cache."""
    src = _repo() / "hack" / "node" / "pause"
    digest = hashlib.sha256()
    for f in sorted(src.iterdir()):
        digest.update(f.name.encode() + f.read_bytes())
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
    out = cache_dir() / f"pause-{digest.hexdigest()[:12]}-{arch}.oci.tar"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    binary = out.with_suffix(".bin")
    env = {**os.environ, "CGO_ENABLED": "0"}
    proc = subprocess.run(
        ["go", "build", "-trimpath", "-ldflags=-s -w", "-o", str(binary), "."],
        cwd=src,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise NodeError(f"building hack/node/pause failed: {proc.stderr.strip()}")
    tmp = out.with_suffix(".tmp")
    write_oci_archive(tmp, SANDBOX_IMAGE, arch, {"pause": binary.read_bytes()}, ["/pause"])
    tmp.rename(out)
    binary.unlink()
    return out


def write_oci_archive(
    path: Path, name: str, arch: str, files: dict[str, bytes], entrypoint: list[str]
) -> None:
    """A one-layer OCI image archive named ``name`` (as containerd's importer reads it)."""
    layer_raw = io.BytesIO()
    with tarfile.open(fileobj=layer_raw, mode="w") as t:
        for fname, data in files.items():
            info = tarfile.TarInfo(fname)
            info.size, info.mode, info.mtime = len(data), 0o755, 0
            t.addfile(info, io.BytesIO(data))
    raw = layer_raw.getvalue()
    layer = gzip.compress(raw, mtime=0)
    config = {
        "architecture": arch,
        "os": "linux",
        "config": {"Entrypoint": entrypoint, "User": "65535:65535"},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(raw).hexdigest()]},
    }
    blobs: dict[str, bytes] = {}

    def blob(data: bytes, media_type: str) -> dict[str, Any]:
        d = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[d] = data
        return {"mediaType": media_type, "digest": d, "size": len(data)}

    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": blob(json.dumps(config).encode(), "application/vnd.oci.image.config.v1+json"),
        "layers": [blob(layer, "application/vnd.oci.image.layer.v1.tar+gzip")],
    }
    mdesc = blob(json.dumps(manifest).encode(), "application/vnd.oci.image.manifest.v1+json")
    mdesc["annotations"] = {
        "io.containerd.image.name": name,
        "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1],
    }
    mdesc["platform"] = {"architecture": arch, "os": "linux"}
    index = {"schemaVersion": 2, "manifests": [mdesc]}
    with tarfile.open(path, "w") as t:
        entries = {"oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode()}
        entries["index.json"] = json.dumps(index).encode()
        for d, data in blobs.items():
            entries["blobs/" + d.replace(":", "/")] = data
        for fname, data in entries.items():
            info = tarfile.TarInfo(fname)
            info.size, info.mtime = len(data), 0
            t.addfile(info, io.BytesIO(data))


class Forwarder:
    """TCP forwarding from addresses pods reach to API servers listening on loopback:
    the part of kube-proxy this node needs (TLS passes through untouched)."""

    def __init__(self) -> None:
        self._listeners: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    def add(self, listen: tuple[str, int], target: tuple[str, int]) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(listen)
        except OSError as err:
            sock.close()
            raise NodeError(f"cannot listen on {listen[0]}:{listen[1]}: {err}") from err
        sock.listen(64)
        self._listeners.append(sock)
        t = threading.Thread(target=self._accept, args=(sock, target), daemon=True)
        t.start()
        self._threads.append(t)

    def _accept(self, sock: socket.socket, target: tuple[str, int]) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            threading.Thread(target=self._pump, args=(conn, target), daemon=True).start()

    def _pump(self, conn: socket.socket, target: tuple[str, int]) -> None:
        try:
            upstream = socket.create_connection(target, timeout=10)
        except OSError:
            conn.close()
            return
        upstream.settimeout(None)
        sel = selectors.DefaultSelector()
        sel.register(conn, selectors.EVENT_READ, upstream)
        sel.register(upstream, selectors.EVENT_READ, conn)
        try:
            while not self._stopping.is_set():
                for key, _ in sel.select(timeout=1.0):
                    src: socket.socket = key.fileobj  # type: ignore[assignment]
                    data = src.recv(65536)
                    if not data:
                        return
                    key.data.sendall(data)
        except OSError:
            return
        finally:
            sel.close()
            conn.close()
            upstream.close()

    def stop(self) -> None:
        self._stopping.set()
        for sock in self._listeners:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for t in self._threads:
            t.join(timeout=2)


class Resolver:
    """The cluster DNS of this node, for the one name pods need: the ``kubernetes``
    Service (in-cluster clients connect to https://kubernetes.default.svc). Every other name is
    NXDOMAIN; pods have no other network to look names up for."""

    def __init__(self, address: str, records: dict[str, str]) -> None:
        self.records = {k.lower().rstrip("."): v for k, v in records.items()}
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self._sock.bind((address, 53))
        except OSError as err:
            self._sock.close()
            raise NodeError(f"cannot serve DNS on {address}:53: {err}") from err
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def answer(self, query: bytes) -> bytes | None:
        if len(query) < 12:
            return None
        labels, i = [], 12
        while i < len(query) and query[i]:
            n = query[i]
            labels.append(query[i + 1 : i + 1 + n].decode("ascii", "replace"))
            i += 1 + n
        if i + 5 > len(query):
            return None
        qtype = int.from_bytes(query[i + 1 : i + 3], "big")
        question = query[12 : i + 5]
        address = self.records.get(".".join(labels).lower())
        flags = 0x8180 if address else 0x8183  # response, RD, RA; NOERROR or NXDOMAIN
        answers = b""
        if address and qtype == 1:  # A
            answers = (
                b"\xc0\x0c\x00\x01\x00\x01"  # the question's name, A, IN
                + (5).to_bytes(4, "big")  # TTL
                + b"\x00\x04"
                + socket.inet_aton(address)
            )
        count = 1 if answers else 0
        header = query[:2] + flags.to_bytes(2, "big") + b"\x00\x01"
        return header + count.to_bytes(2, "big") + b"\x00\x00\x00\x00" + question + answers

    def _loop(self) -> None:
        while True:
            try:
                query, peer = self._sock.recvfrom(512)
            except OSError:
                return
            reply = self.answer(query)
            if reply is not None:
                with contextlib.suppress(OSError):
                    self._sock.sendto(reply, peer)

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(timeout=2)


class Binder:
    """Binds every pod without a node to the one node unless it is cordoned (kube-scheduler's
    job, for one node)."""

    def __init__(self, cluster: Cluster, node: str) -> None:
        self.cluster = cluster
        self.node = node
        self.bound = 0
        self.error = ""
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        req = urllib.request.Request(  # noqa: S310 - https only, our own server
            self.cluster.url + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(  # noqa: S310
            req, context=self._ctx, timeout=10
        ) as resp:
            return json.loads(resp.read())

    def _loop(self) -> None:
        self._ctx: ssl.SSLContext = self.cluster.ssl_context()
        while not self._stopping.is_set():
            try:
                node = self._request("GET", f"/api/v1/nodes/{self.node}")
                if node.get("spec", {}).get("unschedulable"):  # cordoned: pods stay Pending
                    self._stopping.wait(0.3)
                    continue
                pods = self._request("GET", "/api/v1/pods?fieldSelector=spec.nodeName%3D")
                for pod in pods.get("items", []):
                    meta = pod["metadata"]
                    if meta.get("deletionTimestamp"):
                        continue
                    binding = {
                        "apiVersion": "v1",
                        "kind": "Binding",
                        "metadata": {"name": meta["name"], "uid": meta["uid"]},
                        "target": {"apiVersion": "v1", "kind": "Node", "name": self.node},
                    }
                    ns, name = meta["namespace"], meta["name"]
                    with contextlib.suppress(urllib.error.HTTPError):  # gone, or bound
                        self._request(
                            "POST", f"/api/v1/namespaces/{ns}/pods/{name}/binding", binding
                        )
                        self.bound += 1
                self.error = ""
            except (OSError, ValueError, KeyError) as err:
                self.error = str(err)
            self._stopping.wait(0.3)


def _mounts_under(directory: Path) -> list[str]:
    found = []
    prefix = str(directory.resolve()) + "/"
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point.startswith(prefix):
            found.append(point)
    return found


def _cgroup_hierarchies() -> list[Path]:
    """The mounted cgroup hierarchies (v1 controllers, name=systemd, the v2 unified one)."""
    found = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        parts = line.split()
        if parts[2] in ("cgroup", "cgroup2"):
            found.append(Path(parts[1]))
    return found


def _remove_cgroup_tree(top: Path) -> bool:
    if not top.exists():
        return True
    for dirpath, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
        with contextlib.suppress(OSError):
            os.rmdir(dirpath)
    return not top.exists()


def _pids_by_parent() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def _shims_of(socket_path: Path) -> list[int]:
    """containerd shims serving this containerd (by the socket in their command line)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            argv
            and argv[0].endswith(b"containerd-shim-runc-v2")
            and str(socket_path).encode() in argv
        ):
            found.append(int(entry.name))
    return found


@dataclass
class Node:
    """One kubelet + containerd node in ``plane``'s cluster ``cluster`` (see the module)."""

    directory: Path
    plane: ControlPlane
    cluster: str = "parent"
    images: Sequence[tuple[Path, str]] = ()  # (OCI archive, image name without its tag)
    name: str = NODE_NAME
    pod_memory: int = POD_MEMORY
    # containerd's registry hosts directory (``<dir>/<host:port>/hosts.toml``, e.g. a local
    # registry's address and the CA it trusts), for images the kubelet pulls; None: none.
    registry_hosts: Path | None = None
    processes: list[Process] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    _state: dict[str, Any] | None = None
    _lock_fd: int | None = None
    _forwarder: Forwarder | None = None
    _binder: Binder | None = None
    _resolver: Resolver | None = None

    @property
    def socket(self) -> Path:
        return self.directory / "containerd" / "containerd.sock"

    def pod_url(self, cluster: str) -> str:
        """The URL at which pods on this node reach ``cluster``'s API server."""
        return f"https://{GATEWAY}:{self.plane.clusters[cluster].port}"

    # --- start ------------------------------------------------------------------------------
    def start(self) -> None:
        if os.geteuid() != 0:
            raise NodeError("the dev node needs root (containerd, kubelet, a bridge, cgroups)")
        assets = self.plane.assets
        assert assets is not None, "start the control plane first"
        for binary in ("kubelet", "kube-controller-manager"):
            if not os.access(assets / binary, os.X_OK):
                raise NodeError(f"{assets / binary} is missing: rebuild with hack/envtest/build.sh")
        started = time.monotonic()
        self.directory = self.directory.resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            install_host_packages()
            pause = pause_image()
            waited = time.monotonic()
            self._lock(waited + NODE_LOCK_TIMEOUT)
            if time.monotonic() - waited > 1:
                self.timings["waiting for another node"] = time.monotonic() - waited
            deadline = time.monotonic() + NODE_START_TIMEOUT
            self._save_host_state()
            self._bridge()
            self._cgroups()
            self._forward()
            self._resolver = Resolver(
                GATEWAY, {f"kubernetes.default.svc.{CLUSTER_DOMAIN}": SERVICE_IP}
            )
            self._start_containerd()
            self._import(pause, None)
            for archive, name in self.images:
                self._import(archive, name)
            self._cni_config()
            self._start_controller_manager()
            self._start_kubelet()
            self._binder = Binder(self.plane.clusters[self.cluster], self.name)
            self._binder.start()
            self._wait_ready(deadline)
        except BaseException:
            self.stop()
            raise
        self.timings["start"] = time.monotonic() - started

    def _spawn(self, name: str, args: list[str]) -> Process:
        log_path = self.directory / f"{name}.log"
        with log_path.open("wb") as log:
            env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
            try:
                popen = spawn(args, log, env=env)
            except OSError as err:
                raise NodeError(f"{name}: cannot start {args[0]}: {err}") from err
        proc = Process(name, popen, log_path)
        self.processes.append(proc)
        return proc

    def _lock(self, deadline: float) -> None:
        """One dev node per host (they share the bridge, addresses and cgroup root): waits
        for another one to stop. A node that died without stopping is cleaned up here."""
        self._lock_fd = _acquire_lock(deadline)
        _recover_stale()

    def _save_host_state(self) -> None:
        """What stop() (or the next node, if this one is killed) puts back."""
        sysctls = {}
        for key in SYSCTLS:
            with contextlib.suppress(OSError):
                sysctls[key] = (Path("/proc/sys") / key).read_text().strip()
        if Path(f"/sys/class/net/{BRIDGE}").exists():
            raise NodeError(f"network interface {BRIDGE} exists, and no dev node made it")
        state = {
            "directory": str(self.directory),
            "socket": str(self.socket),
            "sysctls": sysctls,
            "cni_cache_existed": Path("/var/lib/cni").exists(),
            # containerd 1.6 puts its shims' sockets in /run/containerd/s, whatever its state.
            "run_containerd_existed": Path("/run/containerd").exists(),
            # The kubelet makes these whatever its root directory: its device plugin socket's
            # directory, and a link per container log.
            "kubelet_dir_existed": KUBELET_FIXED_DIR.exists(),
            "container_logs_existed": CONTAINER_LOG_LINKS.exists(),
        }
        state_file().write_text(json.dumps(state))
        self._state = state
        # Unix socket paths have at most 107 bytes: the kubelet's (under its root directory)
        # are made through this short link to the node's directory.
        RUN_LINK.unlink(missing_ok=True)
        RUN_LINK.symlink_to(self.directory)

    def _bridge(self) -> None:
        _check_addresses_free()
        _run(["ip", "link", "add", BRIDGE, "type", "bridge"], "creating the bridge")
        _run(["ip", "addr", "add", f"{GATEWAY}/24", "dev", BRIDGE], "bridge address")
        # The `kubernetes` Service address, local to this host: pods' packets to it (routed
        # through the bridge) are delivered here, where the forwarder listens.
        _run(["ip", "addr", "add", f"{SERVICE_IP}/32", "dev", BRIDGE], "service address")
        _run(["ip", "link", "set", BRIDGE, "up"], "bridge up")

    def _cgroups(self) -> None:
        for hierarchy in _cgroup_hierarchies():
            top = hierarchy / CGROUP_ROOT.lstrip("/")
            top.mkdir(exist_ok=True)
            if (hierarchy / "cpuset.cpus").exists():  # v1 cpuset: a new group starts empty
                for f in ("cpuset.cpus", "cpuset.mems"):
                    (top / f).write_text((hierarchy / f).read_text())

    def _forward(self) -> None:
        self._forwarder = Forwarder()
        target = self.plane.clusters[self.cluster]
        self._forwarder.add((SERVICE_IP, 443), ("127.0.0.1", target.port))
        for c in self.plane.clusters.values():
            self._forwarder.add((GATEWAY, c.port), ("127.0.0.1", c.port))

    def _start_containerd(self) -> None:
        d = self.directory / "containerd"
        (d / "net.d").mkdir(parents=True, exist_ok=True)
        disabled = [
            f"io.containerd.snapshotter.v1.{s}" for s in ("btrfs", "zfs", "aufs", "devmapper")
        ]
        config = f"""\
version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = {json.dumps(disabled)}
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.socket}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{SANDBOX_IMAGE}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        Root = "{d}/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d}/net.d"
    max_conf_num = 1
"""
        if self.registry_hosts is not None:
            config += (
                '  [plugins."io.containerd.grpc.v1.cri".registry]\n'
                f'    config_path = "{self.registry_hosts.resolve()}"\n'
            )
        (d / "config.toml").write_text(config)
        proc = self._spawn("containerd", ["containerd", "--config", str(d / "config.toml")])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.popen.poll() is not None:
                raise NodeError(
                    f"containerd exited with {proc.popen.returncode}:\n{proc.log_tail()}"
                )
            if self.socket.exists():
                with contextlib.suppress(NodeError):
                    self._ctr("version")
                    return
            time.sleep(0.2)
        raise NodeError(f"containerd did not answer on {self.socket}:\n{proc.log_tail()}")

    def _ctr(self, *args: str, timeout: float = 300.0) -> str:
        return _run(
            ["ctr", "--address", str(self.socket), "--namespace", "k8s.io", *args],
            f"ctr {args[0]}",
            timeout,
        )

    def _import(self, archive: Path, name: str | None) -> None:
        started = time.monotonic()
        arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, "amd64")
        args = ["images", "import", "--platform", f"linux/{arch}"]
        if name:
            args += ["--base-name", name]
        self._ctr(*args, str(archive))
        self.timings[f"import {archive.name}"] = time.monotonic() - started

    def _cni_config(self) -> None:
        conf = {
            "cniVersion": "1.0.0",
            "name": NODE_NAME,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": False,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": str(self.directory / "cni-ipam"),
                        "ranges": [[{"subnet": POD_SUBNET, "gateway": GATEWAY}]],
                        "routes": [{"dst": "0.0.0.0/0", "gw": GATEWAY}],
                    },
                },
            ],
        }
        path = self.directory / "containerd" / "net.d" / "10-moonlander.conflist"
        path.write_text(json.dumps(conf, indent=2))

    def _start_controller_manager(self) -> None:
        cluster = self.plane.clusters[self.cluster]
        certs = self.plane.directory / cluster.name
        self._spawn(
            "kube-controller-manager",
            [
                str(self.plane.assets / "kube-controller-manager"),  # type: ignore[operator]
                f"--kubeconfig={cluster.kubeconfig}",
                f"--controllers={','.join(CONTROLLERS)}",
                f"--root-ca-file={certs / 'ca.crt'}",
                f"--service-account-private-key-file={certs / 'sa.key'}",
                "--use-service-account-credentials=false",
                "--leader-elect=false",
                "--secure-port=0",
                "--concurrent-deployment-syncs=2",
                "--concurrent-replicaset-syncs=2",
            ],
        )

    def _start_kubelet(self) -> None:
        cluster = self.plane.clusters[self.cluster]
        d = self.directory / "kubelet"
        d.mkdir(parents=True, exist_ok=True)
        total = 0
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                total = int(line.split()[1]) * 1024
        reserved = max(0, total - self.pod_memory - (100 << 20))
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": CGROUP_ROOT,
            "cgroupsPerQOS": True,
            "enforceNodeAllocatable": ["pods"],
            "systemReserved": {"memory": str(reserved)},
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "address": GATEWAY,
            "port": _free_port(GATEWAY),
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": _free_port("127.0.0.1"),
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False}},
            "authorization": {"mode": "AlwaysAllow"},
            "makeIPTablesUtilChains": False,
            "protectKernelDefaults": False,
            "failSwapOn": False,
            "staticPodPath": "",
            "podLogsDir": str(self.directory / "pod-logs"),
            "volumePluginDir": str(d / "volume-plugins"),
            "resolvConf": "",
            "clusterDNS": [GATEWAY],
            "clusterDomain": CLUSTER_DOMAIN,
            "serializeImagePulls": False,
            "maxPods": 30,
            "kernelMemcgNotification": False,
            "localStorageCapacityIsolation": False,
        }
        (d / "config.json").write_text(json.dumps(config, indent=2))
        self._spawn(
            "kubelet",
            [
                str(self.plane.assets / "kubelet"),  # type: ignore[operator]
                f"--config={d / 'config.json'}",
                f"--kubeconfig={cluster.kubeconfig}",
                f"--root-dir={RUN_LINK / 'kubelet' / 'root'}",
                f"--cert-dir={d / 'pki'}",
                f"--hostname-override={self.name}",
                f"--node-ip={GATEWAY}",
                "--v=1",
            ],
        )

    def _wait_ready(self, deadline: float) -> None:
        cluster = self.plane.clusters[self.cluster]
        last = "not registered"
        while time.monotonic() < deadline:
            for p in self.processes:
                if p.popen.poll() is not None:
                    raise NodeError(f"{p.name} exited with {p.popen.returncode}:\n{p.log_tail(25)}")
            with contextlib.suppress(OSError, ValueError):
                status, body = cluster.get(f"/api/v1/nodes/{self.name}")
                if status == 200:
                    conds = json.loads(body).get("status", {}).get("conditions", [])
                    ready = [c for c in conds if c["type"] == "Ready"]
                    if ready and ready[0]["status"] == "True":
                        return
                    last = json.dumps(ready)
            time.sleep(0.5)
        kubelet = next(p for p in self.processes if p.name == "kubelet")
        raise NodeError(f"node {self.name} not Ready ({last}):\n{kubelet.log_tail(25)}")

    # --- stop -------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stops everything and puts the host back; safe to call more than once."""
        if self._binder is not None:
            self._binder.stop()
            self._binder = None
        by_name = {p.name: p for p in self.processes}
        first = [by_name[n] for n in ("kubelet", "kube-controller-manager") if n in by_name]
        stop_together(first)
        self._kill_containers()
        stop_together([p for p in self.processes if p not in first])
        self.processes.clear()
        _kill_shims(self.socket)
        _unmount_under(self.directory)
        if self._forwarder is not None:
            self._forwarder.stop()
            self._forwarder = None
        if self._resolver is not None:
            self._resolver.stop()
            self._resolver = None
        if self._state is not None:
            _restore_host(self._state)
            state_file().unlink(missing_ok=True)
            self._state = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock
            self._lock_fd = None

    def _kill_containers(self) -> None:
        if not self.socket.exists():
            return
        with contextlib.suppress(NodeError, subprocess.TimeoutExpired):
            for line in self._ctr("tasks", "ls", "-q", timeout=20).split():
                with contextlib.suppress(NodeError):
                    self._ctr("tasks", "kill", "--all", "--signal", "SIGKILL", line, timeout=10)

    def summary(self) -> Iterator[str]:
        yield (
            f"node {self.name} in {self.cluster}: containerd {self.socket}, "
            f"pods {POD_SUBNET} (API servers at {GATEWAY}:<port>, "
            f"{self.cluster} also at https://{SERVICE_IP}), logs {self.directory}"
        )

    def __enter__(self) -> Node:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _check_addresses_free() -> None:
    """The node's subnet and the `kubernetes` Service address must not be a network this
    host already reaches (a LAN on 10.0.0.0/24 would lose its 10.0.0.1)."""
    ours = [ipaddress.ip_network(POD_SUBNET), ipaddress.ip_network(f"{SERVICE_IP}/32")]
    routes = json.loads(_run(["ip", "-j", "-4", "route", "show", "table", "all"], "ip route"))
    for route in routes:
        dst = route.get("dst", "default")
        if dst == "default" or route.get("type") in ("broadcast", "multicast"):
            continue
        with contextlib.suppress(ValueError):
            net = ipaddress.ip_network(dst, strict=False)
            if net.prefixlen > 0 and any(net.overlaps(o) for o in ours):
                raise NodeError(
                    f"this host already routes {dst} (dev {route.get('dev')}), which the dev "
                    f"node needs ({POD_SUBNET}, {SERVICE_IP}): not starting"
                )


def _acquire_lock(deadline: float) -> int:
    cache_dir().mkdir(parents=True, exist_ok=True)
    fd = os.open(cache_dir() / "node.lock", os.O_RDWR | os.O_CREAT, 0o600)
    told = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if not told:
                print("node: waiting for another dev node on this host to stop", flush=True)
                told = True
            if time.monotonic() > deadline:
                os.close(fd)
                raise NodeError("another dev node has been running too long") from None
            time.sleep(1)


def _recover_stale() -> bool:
    """With the lock held: puts back what a node that was killed left (its containers,
    mounts, bridge, cgroups, kernel parameters), from the state it saved."""
    if not state_file().exists():
        return False
    stale = json.loads(state_file().read_text())
    print(f"node: cleaning up after a node that did not stop ({stale['directory']})", flush=True)
    _kill_shims(Path(stale["socket"]))
    _unmount_under(Path(stale["directory"]))
    _restore_host(stale)
    state_file().unlink()
    return True


def clean_up_killed_node(timeout: float = NODE_LOCK_TIMEOUT) -> bool:
    """Cleans up after a dev node whose process was killed (a running one is waited for);
    True when there was something to clean up. Starting a node does it too."""
    fd = _acquire_lock(time.monotonic() + timeout)
    try:
        return _recover_stale()
    finally:
        os.close(fd)


def _kill_shims(socket_path: Path) -> None:
    """SIGKILL to the containerd shims of this containerd and everything below them (the
    containers): they outlive containerd by design."""
    shims = _shims_of(socket_path)
    if not shims:
        return
    children = _pids_by_parent()

    def tree(pid: int) -> Iterator[int]:
        for child in children.get(pid, []):
            yield from tree(child)
        yield pid

    for shim in shims:
        for pid in tree(shim):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in shims):
        time.sleep(0.1)


def _unmount_under(directory: Path) -> None:
    for point in sorted(_mounts_under(directory), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def _restore_host(state: dict[str, Any]) -> None:
    """Puts back what a node changed on the host (idempotent): veths and the bridge, the
    cgroups, the CNI cache, what the kubelet made at its fixed paths, the kernel parameters."""
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        # The pods' host-side veths go with their network namespaces, but not at once.
        for port in Path(f"/sys/class/net/{BRIDGE}/brif").glob("*"):
            subprocess.run(["ip", "link", "del", port.name], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True, check=False)
    deadline = time.monotonic() + 10
    for hierarchy in _cgroup_hierarchies():
        top = hierarchy / CGROUP_ROOT.lstrip("/")
        while not _remove_cgroup_tree(top) and time.monotonic() < deadline:
            time.sleep(0.2)
        if top.exists():
            print(f"node: could not remove {top}", flush=True)
    cni = Path("/var/lib/cni")
    if not state.get("cni_cache_existed", True):
        shutil.rmtree(cni, ignore_errors=True)
    else:
        for f in (cni / "results").glob(f"{NODE_NAME}-*"):
            f.unlink(missing_ok=True)
    if not state.get("run_containerd_existed", True):
        shutil.rmtree("/run/containerd", ignore_errors=True)
    if not state.get("kubelet_dir_existed", True):
        _unmount_under(KUBELET_FIXED_DIR)
        shutil.rmtree(KUBELET_FIXED_DIR, ignore_errors=True)
    if not state.get("container_logs_existed", True):
        shutil.rmtree(CONTAINER_LOG_LINKS, ignore_errors=True)
    elif directory := state.get("directory"):
        # Only the links to this node's pod logs: others' containers may log here too.
        for link in CONTAINER_LOG_LINKS.glob("*.log"):
            with contextlib.suppress(OSError):
                if link.is_symlink() and os.readlink(link).startswith(f"{directory}/"):
                    link.unlink()
    if RUN_LINK.is_symlink():
        RUN_LINK.unlink()
    for key, value in state.get("sysctls", {}).items():
        path = Path("/proc/sys") / key
        with contextlib.suppress(OSError):
            if path.read_text().strip() != value:
                path.write_text(value + "\n")


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running(
    directory: Path,
    cluster_names: Sequence[str],
    images: Sequence[tuple[Path, str]] = (),
    registry_hosts: Path | None = None,
) -> Iterator[tuple[ControlPlane, Node]]:
    """A plane of ``cluster_names`` with a node in the first one; all stopped at the end.
    ``registry_hosts``: see :attr:`Node.registry_hosts`."""
    plane = ControlPlane(directory / "clusters", node_cluster_specs(cluster_names))
    plane.start()
    try:
        node = Node(
            directory / "node", plane, cluster_names[0], images, registry_hosts=registry_hosts
        )
        node.start()
        try:
            yield plane, node
        finally:
            node.stop()
    finally:
        plane.stop()


def default_images() -> list[tuple[Path, str]]:
    """``make image``'s archive of this checkout, when it has been built."""
    root = repo_root()
    if root is None:
        return []
    return [
        (p, "localhost/moonlander") for p in sorted((root / "_out" / "image").glob("*.oci.tar"))
    ]


def run_foreground(
    directory: Path, cluster_names: Sequence[str], images: Sequence[tuple[Path, str]]
) -> int:
    """``moonlander-dev dev-clusters up --node``: the plane with a node in its first cluster,
    until SIGINT/SIGTERM; then everything is stopped and the host put back."""
    stop_on_signals()
    try:
        with running(directory, cluster_names, images) as (plane, node):
            for line in plane.summary():
                print(line, flush=True)
            for line in node.summary():
                print(line, flush=True)
            for archive, name in images:
                print(f"imported {archive} as {name}:<its tag>", flush=True)
            print(
                f"ready: node Ready in {node.timings['start']:.1f}s (Ctrl-C stops it)", flush=True
            )
            while all(p.popen.poll() is None for p in [*plane.processes, *node.processes]):
                time.sleep(0.5)
            for p in [*plane.processes, *node.processes]:
                if p.popen.poll() is not None:
                    print(f"{p.name} exited with {p.popen.returncode}:\n{p.log_tail()}", flush=True)
            return 1
    except KeyboardInterrupt:
        return 0
    except ControlPlaneError as err:
        print(f"error: {err}", flush=True)
        return 1
