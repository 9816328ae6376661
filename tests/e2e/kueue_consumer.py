"""Kueue's manager out of cluster, for the MultiKueue e2e (tests/e2e/test_kueue.py).

The binaries (Kueue's manager, cluster-inventory-api's secretreader credential plugin) come
from ``hack/consumers/kueue``; Kueue's CRDs from the same module version
(``config/components/crd``, with the conversion-webhook patches its kustomization applies).

Out of cluster, Kueue runs as it does in a Pod with its own certificate management
(``internalCertManagement``): it fills the webhook Secret in its namespace, and this module
plays the kubelet, copying that Secret into the certificate directory the webhook server
reads. The webhook server runs (Kueue's readiness waits for it) but is registered with no
API server; what its defaulting would add to a Job (``suspend``, ``spec.managedBy``) the
test writes itself. Metrics are off; health, webhook and nothing else bind, on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from lightkube import ApiError, AsyncClient
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.models.rbac_v1 import PolicyRule, RoleRef, Subject
from lightkube.resources.core_v1 import Secret, ServiceAccount
from lightkube.resources.rbac_authorization_v1 import Role, RoleBinding

from moonlander_dev import clusters as devclusters
from moonlander_dev.crossplane import LocalProcess, ProcessDied, module_dir

KUEUE_MODULE = "sigs.k8s.io/kueue"
INVENTORY_MODULE = "sigs.k8s.io/cluster-inventory-api"
# The names Kueue's kustomization gives (config/default: namePrefix kueue-).
WEBHOOK_SERVICE = "kueue-webhook-service"
CERT_SECRET = "kueue-webhook-server-cert"
# The credential provider name the secretreader plugin answers to (its ProviderName).
SECRETREADER = "secretreader"
MULTIKUEUE_CONTROLLER = "kueue.x-k8s.io/multikueue"  # a Job's spec.managedBy for MultiKueue
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"


class KueueDied(ProcessDied):
    pass


def kueue_crds(namespace: str) -> tuple[list[dict[str, Any]], str]:
    """Kueue's CRDs as its kustomization renders them for a Kueue in ``namespace``: the
    bases, with the conversion webhook patches it lists (the Service is never called while
    only the storage version v1beta2 is used, but the certificate rotator injects its CA
    into each and waits for that). Returns them and the module version."""
    directory, version = module_dir("kueue", KUEUE_MODULE)
    crd_dir = directory / "config" / "components" / "crd"
    kustomization = yaml.safe_load((crd_dir / "kustomization.yaml").read_text())
    crds: dict[str, dict[str, Any]] = {}
    for resource in kustomization["resources"]:
        doc = yaml.safe_load((crd_dir / resource).read_text())
        doc.pop("status", None)
        doc["metadata"].pop("creationTimestamp", None)
        crds[doc["metadata"]["name"]] = doc
    for patch in kustomization.get("patches", []):
        doc = yaml.safe_load((crd_dir / patch["path"]).read_text())
        conversion = doc["spec"]["conversion"]
        service = conversion["webhook"]["clientConfig"]["service"]
        service.update(namespace=namespace, name=WEBHOOK_SERVICE)
        crds[doc["metadata"]["name"]]["spec"]["conversion"] = conversion
    if not crds:
        raise devclusters.ControlPlaneError(f"{KUEUE_MODULE}@{version}: no CRDs in {crd_dir}")
    return list(crds.values()), version


def manager_config(
    namespace: str,
    *,
    health_port: int,
    webhook_port: int,
    cert_dir: Path,
    credential_plugin: Path | None = None,
    plugin_kubeconfig: Path | None = None,
) -> dict[str, Any]:
    """A Kueue Configuration (config.kueue.x-k8s.io/v1beta2) for one cluster: Kueue's own
    sample (config/components/manager) with its ports on 127.0.0.1, no leader election, no
    metrics, only batch/Job; with ``credential_plugin``, MultiKueue resolves ClusterProfiles
    through it (the secretreader plugin, reading with ``plugin_kubeconfig``)."""
    config: dict[str, Any] = {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "namespace": namespace,
        "health": {"healthProbeBindAddress": f"127.0.0.1:{health_port}"},
        "metrics": {"bindAddress": "0"},
        "webhook": {"port": webhook_port, "host": "127.0.0.1", "certDir": str(cert_dir)},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {
            "enable": True,
            "webhookServiceName": WEBHOOK_SERVICE,
            "webhookSecretName": CERT_SECRET,
        },
        "clientConnection": {"qps": 50, "burst": 100},
        "integrations": {"frameworks": ["batch/job"]},
        # Not served out of cluster (it would bind its own port on every interface).
        "featureGates": {"VisibilityOnDemand": False},
        "multiKueue": {"gcInterval": "30s", "workerLostTimeout": "30s"},
    }
    if credential_plugin is not None:
        assert plugin_kubeconfig is not None
        config["featureGates"]["MultiKueueClusterProfile"] = True
        config["multiKueue"]["clusterProfile"] = {
            "credentialsProviders": [
                {
                    "name": SECRETREADER,
                    "execConfig": {
                        "apiVersion": "client.authentication.k8s.io/v1",
                        "command": str(credential_plugin),
                        "provideClusterInfo": True,
                        "interactiveMode": "Never",
                        # The plugin reads Secret <its context's namespace>/<clusterName>.
                        "env": [{"name": "KUBECONFIG", "value": str(plugin_kubeconfig)}],
                    },
                }
            ]
        }
    return config


def _http_ok(url: str) -> bool:
    with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310
        return int(resp.status) == 200
    return False


class KueueProcess(LocalProcess):
    """Kueue's manager (cmd/kueue) against one cluster, as its admin."""

    died = KueueDied
    # Logged once the main manager is set up (after the certificates are bootstrapped);
    # from then on /readyz also waits for the webhook server.
    SET_UP = b"Probe endpoints are configured on healthz and readyz"

    def __init__(
        self,
        binary: Path,
        workdir: Path,
        kubeconfig: Path,
        namespace: str,
        *,
        role: str,
        credential_plugin: Path | None = None,
        plugin_kubeconfig: Path | None = None,
    ) -> None:
        self.name = f"kueue-{role}"
        super().__init__(workdir)
        self.binary = binary
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.health_port = devclusters.free_port()
        self.cert_dir = workdir / "serving-certs"
        self.config_path = workdir / "config.yaml"
        self.config = manager_config(
            namespace,
            health_port=self.health_port,
            webhook_port=devclusters.free_port(),
            cert_dir=self.cert_dir,
            credential_plugin=credential_plugin,
            plugin_kubeconfig=plugin_kubeconfig,
        )

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.cert_dir.mkdir(exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(self.config))
        args = [str(self.binary), f"--config={self.config_path}", "--zap-log-level=3"]
        self._spawn(args, {"KUBECONFIG": str(self.kubeconfig)})

    def wait_ready(self, timeout: float = 120.0) -> None:
        url = f"http://127.0.0.1:{self.health_port}/readyz"
        self._wait(
            lambda: self.SET_UP in self.log_path.read_bytes() and _http_ok(url),
            timeout,
            "not ready",
        )

    async def mount_certs(self, client: AsyncClient, timeout: float = 120.0) -> None:
        """What the kubelet does for Kueue's Pod: the webhook Secret, once Kueue's
        certificate rotator has filled it, as files in the certificate directory."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            self.check_alive()
            with contextlib.suppress(ApiError):
                secret = await client.get(Secret, CERT_SECRET, namespace=self.namespace)
                data = secret.data or {}
                if data.get("tls.crt") and data.get("tls.key"):
                    for key in ("ca.crt", "tls.crt", "tls.key"):
                        path = self.cert_dir / key
                        path.write_bytes(base64.b64decode(data[key]))
                        path.chmod(0o600)
                    return
            if asyncio.get_running_loop().time() > deadline:
                raise KueueDied(f"{self.name}: {CERT_SECRET} never filled")
            await asyncio.sleep(0.2)

    async def run(self, client: AsyncClient) -> None:
        """Starts Kueue in its namespace (the webhook Secret created empty, as Kueue's
        manifests create it) and waits until it is ready."""
        await client.create(Secret(metadata=ObjectMeta(name=CERT_SECRET, namespace=self.namespace)))
        self.start()
        await self.mount_certs(client)
        await asyncio.to_thread(self.wait_ready)


# MultiKueue's rights in a worker for batch/Job (the manager creates, watches and garbage
# collects Workloads and Jobs there, and reads their status).
WORKER_RULES: list[dict[str, Any]] = [
    {
        "apiGroups": ["kueue.x-k8s.io"],
        "resources": ["workloads"],
        "verbs": ["create", "delete", "get", "list", "watch", "update", "patch"],
    },
    {
        "apiGroups": ["kueue.x-k8s.io"],
        "resources": ["workloads/status"],
        "verbs": ["get", "update", "patch"],
    },
    {
        "apiGroups": ["batch"],
        "resources": ["jobs"],
        "verbs": ["create", "delete", "get", "list", "watch"],
    },
    {"apiGroups": ["batch"], "resources": ["jobs/status"], "verbs": ["get"]},
]


async def secretreader_kubeconfig(
    client: AsyncClient, server: str, ca_pem: bytes, namespace: str
) -> str:
    """A kubeconfig for the secretreader plugin with exactly the RBAC its README asks for:
    ``get`` on Secrets in the consumer's namespace, and that namespace in its context (the
    plugin reads Secret <context namespace>/<clusterName>)."""
    name = "kueue-secretreader"
    await client.apply(
        ServiceAccount(metadata=ObjectMeta(name=name, namespace=namespace)), force=True
    )
    await client.apply(
        Role(
            metadata=ObjectMeta(name=name, namespace=namespace),
            rules=[PolicyRule(apiGroups=[""], resources=["secrets"], verbs=["get"])],
        ),
        force=True,
    )
    await client.apply(
        RoleBinding(
            metadata=ObjectMeta(name=name, namespace=namespace),
            roleRef=RoleRef(apiGroup="rbac.authorization.k8s.io", kind="Role", name=name),
            subjects=[Subject(kind="ServiceAccount", name=name, namespace=namespace)],
        ),
        force=True,
    )
    from lightkube.models.authentication_v1 import TokenRequestSpec

    tr = await client.create(
        ServiceAccount.Token(
            metadata=ObjectMeta(), spec=TokenRequestSpec(audiences=[], expirationSeconds=3600)
        ),
        name=name,
        namespace=namespace,
    )
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "manager",
                    "cluster": {
                        "server": server,
                        "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                    },
                }
            ],
            "users": [{"name": name, "user": {"token": tr.status.token}}],
            "contexts": [
                {
                    "name": name,
                    "context": {"cluster": "manager", "user": name, "namespace": namespace},
                }
            ],
            "current-context": name,
        }
    )


def job(namespace: str, name: str, queue: str) -> dict[str, Any]:
    """A Job as Kueue's webhook would leave it for a MultiKueue queue: suspended, labelled
    with its LocalQueue, managed by MultiKueue (so the manager's Job controller, if any,
    leaves it alone)."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": {QUEUE_LABEL: queue}},
        "spec": {
            "suspend": True,
            "managedBy": MULTIKUEUE_CONTROLLER,
            "parallelism": 1,
            "completions": 1,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "main",
                            "image": "registry.k8s.io/e2e-test-images/agnhost:2.53",
                            "args": ["entrypoint-tester"],
                            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                        }
                    ],
                }
            },
        },
    }


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=1, sort_keys=True, default=str)
