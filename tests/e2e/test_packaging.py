"""How Moonlander ships: the Helm chart, the kustomize manifests, the wheel and the Dockerfile.

The chart and the manifests are rendered with the pinned helm and kubectl (hack/envtest),
checked field by field against what each value promises, and applied with a server-side dry
run to the real parent API server. The CRDs (Landing, LandingPolicy) and the RBAC rules have
one source each (config/crd/bases, config/rbac): the chart reaches them through symlinks, and
these tests fail when a rendered copy differs from its source.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube import AsyncClient
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace
from packaging.requirements import Requirement

from moonlander import api

from ..conftest import Plane
from .harness import install_crd

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "moonlander"
CONFIG = ROOT / "config"
CRD_SOURCE = CONFIG / "crd" / "bases" / "moons.kingdon.ci_landings.yaml"
POLICY_CRD_SOURCE = CONFIG / "crd" / "bases" / "moons.kingdon.ci_landingpolicies.yaml"
SET_CRD_SOURCE = CONFIG / "crd" / "bases" / "moons.kingdon.ci_landingsets.yaml"
ROLE_SOURCE = CONFIG / "rbac" / "role.yaml"
LEADER_ROLE_SOURCE = CONFIG / "rbac" / "leader-election-role.yaml"
POLICY_READER_SOURCE = CONFIG / "rbac" / "policy-reader-role.yaml"
ADMISSION_SOURCE = CONFIG / "admission" / "landing-finalizer.yaml"
ALERTS_SOURCE = CONFIG / "prometheus" / "alerts.yaml"
MAP_API = "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy"
CRD_NAME = "landings.moons.kingdon.ci"
POLICY_CRD_NAME = "landingpolicies.moons.kingdon.ci"
SET_CRD_NAME = "landingsets.moons.kingdon.ci"
DOCKERFILE = ROOT / "Dockerfile"
RUNTIME_LOCK = ROOT / "requirements-runtime.lock"
FULL_LOCK = ROOT / "requirements.lock"

PARENT_MOUNT = "/etc/moonlander"
PARENT_FILE = "/etc/moonlander/parent-kubeconfig"

# Every non-default value at once: what test_chart_values_are_honoured checks.
FULL_VALUES: dict[str, Any] = {
    "image": {"repository": "registry.example/moonlander", "tag": "9.9.9", "pullPolicy": "Always"},
    "rbac": {"namespaced": True},
    "watchNamespaces": ["a", "b"],
    "replicas": 2,
    "leaderElection": {"enabled": True},
    "logFormat": "json",
    "logLevel": "DEBUG",
    "extraArgs": ["--workers=4", "--resync-interval=300"],
    "crossNamespace": {"allow": True},
    "serverPolicy": {
        "allowLoopback": True,
        "denyPrivate": True,
        "allowNetworks": ["10.96.0.0/12", "fd00::/8"],
        "allowInsecureTLS": True,
    },
    "parentKubeconfig": {"secretName": "parent-creds", "key": "admin.conf"},
    "metrics": {"enabled": True, "port": 9090, "serviceMonitor": {"enabled": True}},
    "webhook": {
        "enabled": True,
        "certManager": {"enabled": True},
        "clientCA": {"configMapName": "apiserver-webhook-client-ca"},
        "clientNames": ["kube-apiserver-webhook-client"],
    },
    "networkPolicy": {
        "apiServerPeers": [{"ipBlock": {"cidr": "10.0.0.0/24"}}],
        "metricsPeers": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
    },
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
    "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "Moonlander"}},
    "extraEnv": [{"name": "SSL_CERT_FILE", "value": "/etc/moonlander-ca/ca.crt"}],
    "extraVolumes": [{"name": "ca", "configMap": {"name": "remote-clusters-ca"}}],
    "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/moonlander-ca", "readOnly": True}],
    "topologySpreadConstraints": [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
        }
    ],
    "policies": [
        {
            "name": "team-a.full-values",
            "spec": {
                "namespaces": {"names": ["a"], "matchLabels": {"tenant": "a"}},
                "parentCredential": True,
                "mint": {
                    "clusterRoles": ["view"],
                    "roles": ["deployer"],
                    "roleNamespaces": ["a", "b"],
                    "inlineRules": True,
                    "serviceAccountNamespaces": ["moonlander-system"],
                    "maxExpirationSeconds": 7200,
                },
                "targetNamespaces": ["crossplane-system"],
                "sourceNetworks": ["10.0.0.0/8", "fd00::/8"],
            },
        },
        {"name": "team-b-full-values", "spec": {"namespaces": {"names": ["b"]}}},
    ],
}

# Kinds whose CRDs the test API server does not have (the Prometheus Operator's and
# cert-manager's): they are rendered and checked, but left out of the server-side dry run.
NOT_INSTALLED_KINDS = frozenset({"ServiceMonitor", "PrometheusRule", "Certificate", "Issuer"})


# -- tools -------------------------------------------------------------------------------


# The Kubernetes version `helm template` assumes without a cluster: the control plane's
# (hack/envtest). Helm's release builds default to their client-go's version; hack/envtest
# builds helm without those ldflags (a default of v1.20.0, below the chart's kubeVersion).
KUBE_VERSION = "1.37.2"


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """helm and kubectl from hack/envtest (pinned, cached), with helm's homes in a tmp dir.
    ``helm`` is a wrapper that gives ``helm template`` the control plane's version unless
    the caller names one (see KUBE_VERSION)."""
    out = subprocess.run(
        ["bash", str(ROOT / "hack" / "envtest" / "build.sh")],
        capture_output=True,
        text=True,
        check=True,
    )
    bin_dir = Path(out.stdout.strip().splitlines()[-1])
    home = tmp_path_factory.mktemp("helm-home")
    wrapper = home / "helm"
    wrapper.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = template ] && ! printf "%s\\n" "$@" | grep -q "^--kube-version"; then\n'
        f'  exec "{bin_dir / "helm"}" "$@" --kube-version={KUBE_VERSION}\n'
        "fi\n"
        f'exec "{bin_dir / "helm"}" "$@"\n'
    )
    wrapper.chmod(0o755)
    saved = {
        k: os.environ.get(k) for k in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME")
    }
    for key in saved:
        os.environ[key] = str(home / key.lower())
    yield {"helm": str(wrapper), "kubectl": str(bin_dir / "kubectl")}
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def run(*argv: str, stdin: str | None = None) -> str:
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True)
    assert proc.returncode == 0, (
        f"{' '.join(argv)} exited {proc.returncode}\n{proc.stderr}\n{proc.stdout[-2000:]}"
    )
    return proc.stdout


def docs_of(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def helm_template(
    tools: dict[str, str],
    tmp_path: Path,
    values: dict[str, Any] | None = None,
    *,
    release: str = "moonlander",
    namespace: str = "moonlander-system",
    chart: Path = CHART,
    api_versions: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """The chart rendered; ``api_versions`` are what the cluster serves beyond helm's
    defaults (as Argo CD passes them, and helm install finds them)."""
    values_file = tmp_path / f"values-{release}.yaml"
    values_file.write_text(yaml.safe_dump(values or {}))
    out = run(
        tools["helm"],
        "template",
        release,
        str(chart),
        "--namespace",
        namespace,
        "--include-crds",
        "--values",
        str(values_file),
        *[f"--api-versions={v}" for v in api_versions],
    )
    return docs_of(out)


def kustomize(tools: dict[str, str], directory: Path) -> list[dict[str, Any]]:
    return docs_of(run(tools["kubectl"], "kustomize", str(directory)))


def only(docs: Iterable[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = of_kind(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def of_kind(
    docs: Iterable[dict[str, Any]], kind: str, name: str | None = None
) -> list[dict[str, Any]]:
    return [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: dict[str, Any] = containers[0]
    return result


def run_args(deployment: dict[str, Any]) -> list[str]:
    """The arguments after the `run` subcommand."""
    args: list[str] = container(deployment)["args"]
    assert "run" in args, args
    return args[args.index("run") + 1 :]


def source(path: Path) -> dict[str, Any]:
    result: dict[str, Any] = yaml.safe_load(path.read_text())
    return result


def assert_same(got: Any, path: Path, key: str | None = None, hint: str = "") -> None:
    """``got`` equals the single source at ``path`` (or its ``key``), else fail with a diff."""
    want = source(path) if key is None else source(path)[key]
    if got != want:
        diff = difflib.unified_diff(
            json.dumps(want, indent=1, sort_keys=True).splitlines(),
            json.dumps(got, indent=1, sort_keys=True).splitlines(),
            str(path.relative_to(ROOT)),
            "rendered",
            lineterm="",
            n=2,
        )
        pytest.fail(f"rendered output differs from its source{hint}:\n" + "\n".join(diff))


def volume_mounted_at(deployment: dict[str, Any], path: str) -> dict[str, Any]:
    mounts = {m["mountPath"]: m for m in container(deployment)["volumeMounts"]}
    assert path in mounts, f"nothing mounted at {path}: {sorted(mounts)}"
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    return {"mount": mounts[path], "volume": volumes[mounts[path]["name"]]}


# -- what every Deployment must have, whichever way it is rendered ------------------------


def assert_hardened_controller(
    deployment: dict[str, Any], *, secret_name: str, secret_key: str, metrics_port: int
) -> None:
    pod = deployment["spec"]["template"]["spec"]
    c = container(deployment)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["health"] == 8081
    assert ports["metrics"] == metrics_port
    args = run_args(deployment)
    assert "--health-port=8081" in args
    assert f"--metrics-port={metrics_port}" in args
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert set(c["resources"]["requests"]) == {"cpu", "memory"}
    assert set(c["resources"]["limits"]) == {"cpu", "memory"}

    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert sc["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532

    # The parent kubeconfig: an optional Secret, read-only at the controller's default path.
    parent = volume_mounted_at(deployment, PARENT_MOUNT)
    assert parent["mount"]["readOnly"] is True
    secret = parent["volume"]["secret"]
    assert secret["secretName"] == secret_name
    assert secret["optional"] is True
    assert secret["items"] == [{"key": secret_key, "path": "parent-kubeconfig"}]
    assert PARENT_MOUNT + "/" + secret["items"][0]["path"] == PARENT_FILE
    # /tmp is the one writable place.
    tmp = volume_mounted_at(deployment, "/tmp")
    assert "emptyDir" in tmp["volume"]

    env = {e["name"]: e for e in c["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"


def assert_service_reaches(service: dict[str, Any], deployment: dict[str, Any], port: str) -> None:
    """The Service selects the controller pods, and its targetPort is a named container port."""
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    targets = {p["name"]: p["targetPort"] for p in service["spec"]["ports"]}
    assert targets[port] == port
    assert port in {p["name"] for p in container(deployment)["ports"]}


def assert_policy_reader(docs: list[dict[str, Any]], name: str, namespace: str) -> None:
    """The policy reader: a ClusterRole with exactly the single-source rules (LandingPolicies
    and namespaces are cluster-scoped, so whichever the RBAC mode), bound cluster-wide to the
    controller's ServiceAccount."""
    role = only(docs, "ClusterRole", name)
    assert_same(role["rules"], POLICY_READER_SOURCE, "rules")
    binding = only(docs, "ClusterRoleBinding", name)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": name,
    }
    sa = only(docs, "ServiceAccount")
    assert sa["metadata"]["namespace"] == namespace
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": namespace}
    ]


def without_chart_metadata(crd: dict[str, Any]) -> dict[str, Any]:
    """A rendered CRD without what the chart adds to its source: Helm's labels and
    crds.keep's annotation (kustomize adds neither)."""
    crd = json.loads(json.dumps(crd))
    meta = crd["metadata"]
    for key in [k for k in meta.get("labels", {}) if k.startswith(CHART_LABEL_PREFIXES)]:
        del meta["labels"][key]
    meta.get("annotations", {}).pop("helm.sh/resource-policy", None)
    for key in ("labels", "annotations"):
        if key in meta and not meta[key]:
            del meta[key]
    return crd


CHART_LABEL_PREFIXES = ("helm.sh/", "app.kubernetes.io/")


def assert_crds(docs: list[dict[str, Any]], hint: str = "") -> None:
    """The three CRDs, each straight from its single source (but for the chart's labels and
    keep annotation), and no other."""
    for name, path in (
        (CRD_NAME, CRD_SOURCE),
        (POLICY_CRD_NAME, POLICY_CRD_SOURCE),
        (SET_CRD_NAME, SET_CRD_SOURCE),
    ):
        crd = only(docs, "CustomResourceDefinition", name)
        assert_same(without_chart_metadata(crd), path, hint=hint)
    assert len(of_kind(docs, "CustomResourceDefinition")) == 3


def assert_webhook(
    docs: list[dict[str, Any]], deployment: dict[str, Any], *, cert_manager: bool
) -> None:
    vwc = only(docs, "ValidatingWebhookConfiguration")
    # Landings at /validate, LandingSets at /validate-landingset.
    hooks = vwc["webhooks"]
    assert [h["name"] for h in hooks] == [
        "landings.moons.kingdon.ci",
        "landingsets.moons.kingdon.ci",
    ]
    for hook, resource, path in zip(
        hooks, ("landings", "landingsets"), ("/validate", "/validate-landingset"), strict=True
    ):
        assert hook["failurePolicy"] == "Fail"
        assert hook["sideEffects"] == "None"
        assert hook["admissionReviewVersions"] == ["v1"]
        (rule,) = hook["rules"]
        assert rule["apiGroups"] == ["moons.kingdon.ci"]
        assert rule["resources"] == [resource]
        assert set(rule["operations"]) == {"CREATE", "UPDATE"}
        service_ref = hook["clientConfig"]["service"]
        assert service_ref["path"] == path
        service = only(docs, "Service", service_ref["name"])
        assert service_ref["namespace"] == service["metadata"]["namespace"]
        assert service_ref["port"] == service["spec"]["ports"][0]["port"]
    assert_service_reaches(service, deployment, "webhook")

    args = run_args(deployment)
    port = {p["name"]: p["containerPort"] for p in container(deployment)["ports"]}["webhook"]
    assert f"--webhook-port={port}" in args
    (cert_dir,) = [a.split("=", 1)[1] for a in args if a.startswith("--webhook-cert-dir=")]
    cert = volume_mounted_at(deployment, cert_dir)
    assert cert["mount"]["readOnly"] is True
    secret_name = cert["volume"]["secret"]["secretName"]
    # The webhook answers only the API server: the CA of its client certificate, mounted.
    (client_ca,) = [a.split("=", 1)[1] for a in args if a.startswith("--webhook-client-ca=")]
    ca = volume_mounted_at(deployment, str(Path(client_ca).parent))
    assert ca["mount"]["readOnly"] is True
    source = ca["volume"].get("configMap") or ca["volume"]["secret"]
    assert "optional" not in source

    if cert_manager:
        # caBundle is cainjector's: a value in the manifest would be reset on every apply.
        assert "caBundle" not in hook["clientConfig"]
        (serving,) = [
            c for c in of_kind(docs, "Certificate") if c["spec"]["secretName"] == secret_name
        ]
        ns = serving["metadata"]["namespace"]
        inject = vwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
        assert inject == f"{ns}/{serving['metadata']['name']}"
        svc = f"{service_ref['name']}.{service_ref['namespace']}.svc"
        assert serving["spec"]["dnsNames"] == [svc, svc + ".cluster.local"]
        assert not serving["spec"].get("isCA")
        # Issued by a CA Issuer whose CA is a long-lived certificate from a self-signed Issuer:
        # renewing the serving certificate does not change the injected caBundle.
        issuer = only(docs, "Issuer", serving["spec"]["issuerRef"]["name"])
        (ca,) = [
            c
            for c in of_kind(docs, "Certificate")
            if c["spec"]["secretName"] == issuer["spec"]["ca"]["secretName"]
        ]
        assert ca["spec"]["isCA"] is True
        assert "selfSigned" in only(docs, "Issuer", ca["spec"]["issuerRef"]["name"])["spec"]


# -- the Helm chart ------------------------------------------------------------------------


def test_helm_lint(tools: dict[str, str], tmp_path: Path) -> None:
    values = tmp_path / "full.yaml"
    values.write_text(yaml.safe_dump(FULL_VALUES))
    for extra in ([], ["--values", str(values)]):
        out = run(tools["helm"], "lint", "--strict", str(CHART), *extra)
        assert "1 chart(s) linted, 0 chart(s) failed" in out


def test_chart_links_to_the_single_sources() -> None:
    links = {
        CHART / "files" / "crds" / "landings.yaml": CRD_SOURCE,
        CHART / "files" / "crds" / "landingpolicies.yaml": POLICY_CRD_SOURCE,
        CHART / "files" / "crds" / "landingsets.yaml": SET_CRD_SOURCE,
        CHART / "files" / "prometheus" / "alerts.yaml": ALERTS_SOURCE,
        CHART / "files" / "rbac" / "role.yaml": ROLE_SOURCE,
        CHART / "files" / "rbac" / "leader-election-role.yaml": LEADER_ROLE_SOURCE,
        CHART / "files" / "rbac" / "policy-reader-role.yaml": POLICY_READER_SOURCE,
        CHART / "files" / "admission" / "landing-finalizer.yaml": ADMISSION_SOURCE,
    }
    for link, target in links.items():
        assert link.is_symlink(), f"{link} must be a symlink to {target}, not a copy"
        assert not Path(os.readlink(link)).is_absolute(), f"{link}: use a relative link"
        assert link.resolve() == target.resolve()
    # Every CRD in config/crd/bases reaches the chart, and kustomize's config/crd.
    bases = {p.resolve() for p in (CONFIG / "crd" / "bases").glob("*.yaml")}
    assert {p.resolve() for p in (CHART / "files" / "crds").iterdir()} == bases
    # Helm's crds/ is gone: the CRDs are templates, which helm upgrade updates.
    assert not (CHART / "crds").exists()
    listed = source(CONFIG / "crd" / "kustomization.yaml")["resources"]
    assert {(CONFIG / "crd" / r).resolve() for r in listed} == bases


def test_helm_package_follows_symlinks(tools: dict[str, str], tmp_path: Path) -> None:
    out = run(tools["helm"], "package", str(CHART), "--destination", str(tmp_path))
    chart_version = source(CHART / "Chart.yaml")["version"]
    package = tmp_path / f"moonlander-{chart_version}.tgz"
    assert str(package) in out
    with tarfile.open(package) as tar:
        for member, origin in {
            "moonlander/files/crds/landings.yaml": CRD_SOURCE,
            "moonlander/files/crds/landingpolicies.yaml": POLICY_CRD_SOURCE,
            "moonlander/files/crds/landingsets.yaml": SET_CRD_SOURCE,
            "moonlander/files/prometheus/alerts.yaml": ALERTS_SOURCE,
            "moonlander/files/rbac/role.yaml": ROLE_SOURCE,
            "moonlander/files/rbac/leader-election-role.yaml": LEADER_ROLE_SOURCE,
            "moonlander/files/rbac/policy-reader-role.yaml": POLICY_READER_SOURCE,
            "moonlander/files/admission/landing-finalizer.yaml": ADMISSION_SOURCE,
        }.items():
            info = tar.getmember(member)
            assert info.isfile(), f"{member} is packaged as a link, not the file's content"
            data = tar.extractfile(info)
            assert data is not None
            assert data.read() == origin.read_bytes(), member
    # The packaged chart renders the same rules as the chart directory.
    packaged = docs_of(run(tools["helm"], "template", "moonlander", str(package)))
    assert_crds(packaged)
    assert_same(only(packaged, "ClusterRole", "moonlander")["rules"], ROLE_SOURCE, "rules")
    assert_same(
        only(packaged, "ClusterRole", "moonlander-policy-reader")["rules"],
        POLICY_READER_SOURCE,
        "rules",
    )


def test_chart_defaults(tools: dict[str, str], tmp_path: Path) -> None:
    docs = helm_template(tools, tmp_path)
    chart = source(CHART / "Chart.yaml")
    assert (chart["apiVersion"], chart["version"], chart["appVersion"]) == ("v2", "0.2.0", "0.2.0")

    # The CRDs, straight from their single sources, kept on uninstall.
    assert_crds(docs)
    for crd in of_kind(docs, "CustomResourceDefinition"):
        assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    # Cluster-wide RBAC with exactly the single-source rules.
    role = only(docs, "ClusterRole", "moonlander")
    assert_same(role["rules"], ROLE_SOURCE, "rules")
    binding = only(docs, "ClusterRoleBinding", "moonlander")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    sa = only(docs, "ServiceAccount")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": "moonlander-system"}
    ]
    # The only Role is leader election's, from its single source.
    leader = only(docs, "Role")
    assert_same(leader["rules"], LEADER_ROLE_SOURCE, "rules")
    assert only(docs, "RoleBinding")["roleRef"]["name"] == leader["metadata"]["name"]
    # The policy reader, and the unbound roles aggregated into admin, edit and view.
    assert_policy_reader(docs, "moonlander-policy-reader", "moonlander-system")
    assert sorted(r["metadata"]["name"] for r in of_kind(docs, "ClusterRole")) == [
        "moonlander",
        "moonlander-edit",
        "moonlander-policy-reader",
        "moonlander-view",
    ]
    assert len(of_kind(docs, "ClusterRoleBinding")) == 2
    # No LandingPolicy unless asked for: the secure default.
    assert not of_kind(docs, "LandingPolicy")

    deployment = only(docs, "Deployment")
    # Two replicas, one leading: the webhook (failurePolicy Fail) keeps an answer.
    assert deployment["spec"]["replicas"] == 2
    c = container(deployment)
    assert c["image"] == f"ghcr.io/kingdonb/moonlander:{chart['appVersion']}"
    assert c["args"][: c["args"].index("run")] == ["--log-level=INFO", "--log-format=json"]
    args = run_args(deployment)
    assert "--leader-elect" in args
    assert f"--parent-kubeconfig={PARENT_FILE}" in args
    assert not [a for a in args if a.startswith(("--namespace", "--webhook", "--allow"))]
    assert "--deny-private" not in args
    # --controller-namespace defaults to $POD_NAMESPACE (checked in assert_hardened_controller).
    assert not [a for a in args if a.startswith("--controller-namespace")]
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == sa["metadata"]["name"]
    assert_hardened_controller(
        deployment,
        secret_name="moonlander-parent-kubeconfig",
        secret_key="kubeconfig",
        metrics_port=8080,
    )
    assert_service_reaches(only(docs, "Service"), deployment, "metrics")
    # Off by default: the webhook and the ServiceMonitor.
    for kind in ("ValidatingWebhookConfiguration", "ServiceMonitor", "Certificate", "Issuer"):
        assert not of_kind(docs, kind), kind


def test_chart_values_are_honoured(tools: dict[str, str], tmp_path: Path) -> None:
    docs = helm_template(tools, tmp_path, FULL_VALUES, release="ml", namespace="ops")
    assert_crds(docs)

    # Namespaced RBAC: a Role and RoleBinding in each watched namespace; cluster-wide only the
    # policy reader (LandingPolicies and namespaces are cluster-scoped) and, for the
    # ServiceMonitor's scrapes of the authenticated /metrics, the metrics reader (unbound).
    assert sorted(r["metadata"]["name"] for r in of_kind(docs, "ClusterRole")) == [
        "ml-moonlander-edit",
        "ml-moonlander-metrics-reader",
        "ml-moonlander-policy-reader",
        "ml-moonlander-view",
    ]
    reader = only(docs, "ClusterRole", "ml-moonlander-metrics-reader")
    assert reader["rules"] == [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]
    assert [b["metadata"]["name"] for b in of_kind(docs, "ClusterRoleBinding")] == [
        "ml-moonlander-policy-reader"
    ]
    assert_policy_reader(docs, "ml-moonlander-policy-reader", "ops")
    roles = {r["metadata"]["namespace"]: r for r in of_kind(docs, "Role", "ml-moonlander")}
    assert sorted(roles) == ["a", "b"]
    for role in roles.values():
        assert_same(role["rules"], ROLE_SOURCE, "rules")
    bindings = of_kind(docs, "RoleBinding", "ml-moonlander")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["a", "b"]
    for binding in bindings:
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["roleRef"]["name"] == "ml-moonlander"
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "ml-moonlander", "namespace": "ops"}
        ]
    leader = only(docs, "Role", "ml-moonlander-leader-election")
    assert leader["metadata"]["namespace"] == "ops"

    deployment = only(docs, "Deployment")
    assert deployment["metadata"]["namespace"] == "ops"
    assert deployment["spec"]["replicas"] == 2
    c = container(deployment)
    assert c["image"] == "registry.example/moonlander:9.9.9"
    assert c["imagePullPolicy"] == "Always"
    assert c["args"][: c["args"].index("run")] == ["--log-level=DEBUG", "--log-format=json"]
    args = run_args(deployment)
    for flag in (
        "--namespace=a",
        "--namespace=b",
        "--leader-elect",
        "--leader-election-id=ml-moonlander",
        "--allow-cross-namespace",
        "--allow-loopback",
        "--deny-private",
        "--allow-network=10.96.0.0/12",
        "--allow-network=fd00::/8",
        "--allow-insecure-tls",
    ):
        assert flag in args, flag
    assert args[-2:] == ["--workers=4", "--resync-interval=300"]  # extraArgs come last
    pod = deployment["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == FULL_VALUES["nodeSelector"]
    assert pod["tolerations"] == FULL_VALUES["tolerations"]
    assert_hardened_controller(
        deployment, secret_name="parent-creds", secret_key="admin.conf", metrics_port=9090
    )

    metrics = only(docs, "Service", "ml-moonlander-metrics")
    assert_service_reaches(metrics, deployment, "metrics")
    monitor = only(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= metrics["metadata"]["labels"].items()
    )
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["ops"]}
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    # metrics.auth (the default): the controller asks the API server about each scrape's
    # bearer token, and the ServiceMonitor presents Prometheus's own.
    assert "--metrics-auth" in args
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["bearerTokenFile"] == "/var/run/secrets/kubernetes.io/serviceaccount/token"

    # `policies`: one LandingPolicy each, cluster-scoped, named and specified as given.
    policies = of_kind(docs, "LandingPolicy")
    assert [p["metadata"]["name"] for p in policies] == [p["name"] for p in FULL_VALUES["policies"]]
    for rendered, value in zip(policies, FULL_VALUES["policies"], strict=True):
        assert rendered["apiVersion"] == "moons.kingdon.ci/v1alpha1"
        assert "namespace" not in rendered["metadata"]
        assert rendered["metadata"]["labels"]["app.kubernetes.io/instance"] == "ml"
        assert rendered["spec"] == value["spec"]

    assert_webhook(docs, deployment, cert_manager=True)
    assert "--webhook-client-name=kube-apiserver-webhook-client" in run_args(deployment)
    ca = volume_mounted_at(deployment, "/var/run/secrets/moonlander/webhook-client-ca")
    assert ca["volume"]["configMap"]["name"] == "apiserver-webhook-client-ca"
    # Ingress: the webhook only from the API server's addresses, metrics from monitoring,
    # the health port (kubelet probes) from anywhere; nothing else.
    policy = only(docs, "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= (
        deployment["spec"]["template"]["metadata"]["labels"].items()
    )
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    allowed = {r["ports"][0]["port"]: r.get("from") for r in policy["spec"]["ingress"]}
    assert allowed == {
        "webhook": [{"ipBlock": {"cidr": "10.0.0.0/24"}}],
        "metrics": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
        "health": None,
    }
    # The webhooks only see the watched namespaces.
    for hook in only(docs, "ValidatingWebhookConfiguration")["webhooks"]:
        (expr,) = hook["namespaceSelector"]["matchExpressions"]
        assert (expr["key"], expr["operator"], expr["values"]) == (
            "kubernetes.io/metadata.name",
            "In",
            ["a", "b"],
        )


def test_chart_namespaced_without_list_watches_release_namespace(
    tools: dict[str, str], tmp_path: Path
) -> None:
    docs = helm_template(tools, tmp_path, {"rbac": {"namespaced": True}}, namespace="solo")
    # Cluster-wide: the policy reader, and the aggregated roles, which bind nobody.
    assert sorted(r["metadata"]["name"] for r in of_kind(docs, "ClusterRole")) == [
        "moonlander-edit",
        "moonlander-policy-reader",
        "moonlander-view",
    ]
    assert_policy_reader(docs, "moonlander-policy-reader", "solo")
    assert only(docs, "Role", "moonlander")["metadata"]["namespace"] == "solo"
    assert [a for a in run_args(only(docs, "Deployment")) if a.startswith("--namespace")] == [
        "--namespace=solo"
    ]


def test_chart_webhook_without_cert_manager(tools: dict[str, str], tmp_path: Path) -> None:
    values = {
        "webhook": {
            "enabled": True,
            "certManager": {"enabled": False},
            "certSecretName": "my-tls",
            "caBundle": "Q0EK",
            "clientCA": {"secretName": "apiserver-ca", "key": "client-ca.pem"},
        },
        "networkPolicy": {"enabled": False},
    }
    docs = helm_template(tools, tmp_path, values)
    assert not of_kind(docs, "Certificate")
    assert not of_kind(docs, "Issuer")
    vwc = only(docs, "ValidatingWebhookConfiguration")
    assert "cert-manager.io/inject-ca-from" not in (vwc["metadata"].get("annotations") or {})
    assert {h["clientConfig"]["caBundle"] for h in vwc["webhooks"]} == {"Q0EK"}
    deployment = only(docs, "Deployment")
    assert_webhook(docs, deployment, cert_manager=False)
    args = run_args(deployment)
    (cert_dir,) = [a.split("=", 1)[1] for a in args if a.startswith("--webhook-cert-dir=")]
    assert volume_mounted_at(deployment, cert_dir)["volume"]["secret"]["secretName"] == "my-tls"
    assert not of_kind(docs, "NetworkPolicy")
    assert "--webhook-client-ca=/var/run/secrets/moonlander/webhook-client-ca/client-ca.pem" in args
    ca = volume_mounted_at(deployment, "/var/run/secrets/moonlander/webhook-client-ca")
    assert ca["volume"]["secret"]["secretName"] == "apiserver-ca"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"logFormat": "xml"}, "logFormat"),
        ({"watchNamespaces": ["Not_A_Namespace"]}, "watchNamespaces"),
        ({"tpyo": True}, "tpyo"),
        ({"replicas": 2, "leaderElection": {"enabled": False}}, "leaderElection.enabled"),
        ({"webhook": {"enabled": True, "certManager": {"enabled": False}}}, "caBundle"),
        ({"webhook": {"enabled": True}}, "webhook.clientCA.configMapName or"),
        (
            {"webhook": {"enabled": True, "clientCA": {"configMapName": "a", "secretName": "b"}}},
            "one of the two",
        ),
        (
            {"webhook": {"enabled": True, "clientCA": {"configMapName": "a"}}},
            "networkPolicy.apiServerPeers",
        ),
        ({"metrics": {"enabled": False, "serviceMonitor": {"enabled": True}}}, "metrics.enabled"),
        ({"policies": [{"spec": {"namespaces": {"names": ["a"]}}}]}, "name"),
        ({"policies": [{"name": "Not_A_Name", "spec": {}}]}, "policies"),
        ({"policies": [{"name": "p", "spec": ["not", "an", "object"]}]}, "policies"),
        ({"policies": [{"name": "p", "sepc": {}}]}, "sepc"),
        ({"policies": [{"name": "p"}]}, "policies[0] (p) needs a spec"),
        ({"policies": {"name": "p"}}, "policies"),
    ],
)
def test_chart_rejects_bad_values(
    tools: dict[str, str], tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    values_file = tmp_path / "bad.yaml"
    values_file.write_text(yaml.safe_dump(values))
    proc = subprocess.run(
        [tools["helm"], "template", "x", str(CHART), "--values", str(values_file)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0, proc.stdout
    assert message in proc.stderr


def test_chart_renders_what_the_sources_say(tools: dict[str, str], tmp_path: Path) -> None:
    """The chart holds no copy: a change to config/rbac/role.yaml shows in its output, and a
    broken link is an error, not a Role without rules."""
    repo = tmp_path / "repo"
    shutil.copytree(CONFIG, repo / "config")
    shutil.copytree(CHART, repo / "charts" / "moonlander", symlinks=True)
    role_file = repo / "config" / "rbac" / "role.yaml"
    role = source(role_file)
    role["rules"].append({"apiGroups": ["example.test"], "resources": ["x"], "verbs": ["get"]})
    role_file.write_text(yaml.safe_dump(role))
    reader_file = repo / "config" / "rbac" / "policy-reader-role.yaml"
    reader = source(reader_file)
    reader["rules"].append(
        {"apiGroups": ["example.test"], "resources": ["widgets"], "verbs": ["list"]}
    )
    reader_file.write_text(yaml.safe_dump(reader))
    docs = helm_template(tools, tmp_path, chart=repo / "charts" / "moonlander")
    assert only(docs, "ClusterRole", "moonlander")["rules"] == role["rules"]
    assert only(docs, "ClusterRole", "moonlander-policy-reader")["rules"] == reader["rules"]

    for broken in (role_file, reader_file):
        broken.unlink()
        proc = subprocess.run(
            [tools["helm"], "template", "x", str(repo / "charts" / "moonlander")],
            capture_output=True,
            text=True,
        )
        assert proc.returncode != 0
        assert str(broken.relative_to(repo)) in proc.stderr


# -- kustomize -------------------------------------------------------------------------------


KYAML_HINT = (
    " (kustomize's YAML library adds a blank line before a more-indented line in a folded"
    " `>` block scalar: indent such lines evenly, or use `|-`)"
)


def test_finalizer_policy_from_its_single_source(tools: dict[str, str], tmp_path: Path) -> None:
    """config/admission: the chart renders it exactly where the cluster serves the API and
    it is not switched off; kustomize gives it as it is, without a namespace."""
    policy_docs = list(yaml.safe_load_all(ADMISSION_SOURCE.read_text()))
    kinds = ("MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding")
    assert [d["kind"] for d in policy_docs] == list(kinds)
    served = helm_template(tools, tmp_path, api_versions=[MAP_API])
    assert [d for d in served if d["kind"] in kinds] == policy_docs
    assert not [d for d in helm_template(tools, tmp_path) if d["kind"] in kinds]
    off = helm_template(
        tools, tmp_path, {"finalizerPolicy": {"enabled": False}}, api_versions=[MAP_API]
    )
    assert not [d for d in off if d["kind"] in kinds]
    assert kustomize(tools, CONFIG / "admission") == policy_docs
    expression = policy_docs[0]["spec"]["mutations"][0]["applyConfiguration"]["expression"]
    assert f'"{api.FINALIZER}"' in expression


def test_kustomize_default(tools: dict[str, str]) -> None:
    docs = kustomize(tools, CONFIG / "default")
    assert_crds(docs, hint=KYAML_HINT)
    assert only(docs, "Namespace")["metadata"]["name"] == "moonlander-system"
    cluster_scoped = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
    for doc in docs:
        if doc["kind"] not in cluster_scoped:
            assert doc["metadata"]["namespace"] == "moonlander-system", doc["kind"]

    role = only(docs, "ClusterRole", "moonlander-controller")
    assert_same(role, ROLE_SOURCE)  # reused as it is
    binding = only(docs, "ClusterRoleBinding", "moonlander-controller")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    sa = only(docs, "ServiceAccount")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": "moonlander-system"}
    ]
    leader = only(docs, "Role")
    assert {k: v for k, v in leader.items() if k != "metadata"} == {
        k: v for k, v in source(LEADER_ROLE_SOURCE).items() if k != "metadata"
    }
    leader_binding = only(docs, "RoleBinding")
    assert leader_binding["roleRef"]["name"] == leader["metadata"]["name"]
    assert leader_binding["subjects"] == binding["subjects"]
    assert_same(only(docs, "ClusterRole", "moonlander-policy-reader"), POLICY_READER_SOURCE)
    assert_policy_reader(docs, "moonlander-policy-reader", "moonlander-system")
    assert len(of_kind(docs, "ClusterRole")) == len(of_kind(docs, "ClusterRoleBinding")) == 2

    deployment = only(docs, "Deployment")
    assert container(deployment)["image"] == "ghcr.io/kingdonb/moonlander:0.2.0"
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == sa["metadata"]["name"]
    assert "--leader-elect" in run_args(deployment)
    assert not [a for a in run_args(deployment) if a.startswith(("--namespace", "--webhook"))]
    resources = container(deployment)["resources"]
    assert resources == {
        "requests": {"cpu": "50m", "memory": "128Mi"},
        "limits": {"cpu": "500m", "memory": "256Mi"},
    }
    assert_hardened_controller(
        deployment,
        secret_name="moonlander-parent-kubeconfig",
        secret_key="kubeconfig",
        metrics_port=8080,
    )
    assert_service_reaches(only(docs, "Service"), deployment, "metrics")
    assert not of_kind(docs, "ValidatingWebhookConfiguration")


def test_kustomize_namespaced(tools: dict[str, str]) -> None:
    docs = kustomize(tools, CONFIG / "namespaced")
    assert_crds(docs, hint=KYAML_HINT)
    # Only the policy reader stays cluster-wide: the patches turn moonlander-controller alone
    # into a Role and RoleBinding.
    assert [r["metadata"]["name"] for r in of_kind(docs, "ClusterRole")] == [
        "moonlander-policy-reader"
    ]
    assert [b["metadata"]["name"] for b in of_kind(docs, "ClusterRoleBinding")] == [
        "moonlander-policy-reader"
    ]
    ns = only(docs, "Namespace")["metadata"]["name"]
    assert_policy_reader(docs, "moonlander-policy-reader", ns)
    role = only(docs, "Role", "moonlander-controller")
    assert role["metadata"]["namespace"] == ns
    assert_same(role["rules"], ROLE_SOURCE, "rules")
    binding = only(docs, "RoleBinding", "moonlander-controller")
    assert binding["metadata"]["namespace"] == ns
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "moonlander-controller",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "moonlander-controller", "namespace": ns}
    ]
    deployment = only(docs, "Deployment")
    assert deployment["metadata"]["namespace"] == ns
    # Kubernetes expands $(POD_NAMESPACE) from the env: the controller watches its namespace.
    assert "--namespace=$(POD_NAMESPACE)" in run_args(deployment)
    assert_hardened_controller(
        deployment,
        secret_name="moonlander-parent-kubeconfig",
        secret_key="kubeconfig",
        metrics_port=8080,
    )


def test_kustomize_webhook(tools: dict[str, str]) -> None:
    docs = kustomize(tools, CONFIG / "with-webhook")
    deployment = only(docs, "Deployment")
    assert_webhook(docs, deployment, cert_manager=True)
    for certificate in of_kind(docs, "Certificate"):
        assert certificate["metadata"]["namespace"] == "moonlander-system"
    # Everything config/default has is still there.
    default = kustomize(tools, CONFIG / "default")
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert {(d["kind"], d["metadata"]["name"]) for d in default} <= names
    assert run_args(only(default, "Deployment")) == run_args(deployment)[:-3]


def test_manifest_flags_exist(tools: dict[str, str], tmp_path: Path) -> None:
    """Every flag the manifests pass is one that `moonlander` knows."""

    def flags(help_text: str) -> set[str]:
        return set(re.findall(r"(?<![\w-])--[a-z][-a-z]*", help_text))

    known_global = flags(run(sys.executable, "-m", "moonlander", "--help"))
    known_run = flags(run(sys.executable, "-m", "moonlander", "run", "--help"))
    rendered = [
        *helm_template(tools, tmp_path, FULL_VALUES),
        *helm_template(tools, tmp_path, release="defaults"),
        *kustomize(tools, CONFIG / "namespaced"),
        *kustomize(tools, CONFIG / "with-webhook"),
    ]
    used_global: set[str] = set()
    used_run: set[str] = set()
    for deployment in of_kind(rendered, "Deployment"):
        args = container(deployment)["args"]
        used_global |= {a.split("=")[0] for a in args[: args.index("run")]}
        used_run |= {a.split("=")[0] for a in run_args(deployment)}
    assert used_global - known_global == set()
    assert used_run - known_run == set()
    assert {
        "--namespace",
        "--leader-elect",
        "--webhook-cert-dir",
        "--webhook-client-ca",
    } <= used_run


# -- the real API server accepts what is rendered --------------------------------------------


def apply_dry_run(
    tools: dict[str, str], plane: Plane, docs: list[dict[str, Any]]
) -> subprocess.CompletedProcess[str]:
    """Server-side apply, dry run, on the parent API server (admission included).

    Conflicts are forced: other tests own live objects of the same names (the CRD, installed
    by harness.install_crd) and field ownership is not what is checked here; that the
    rendered CRD equals its source is (test_chart_defaults, test_kustomize_default)."""
    return subprocess.run(
        [
            tools["kubectl"],
            "--kubeconfig",
            str(plane["parent"].kubeconfig),
            "apply",
            "--server-side",
            "--force-conflicts",
            "--dry-run=server",
            "--field-manager=test-packaging",
            "--output=json",
            "--filename=-",
        ],
        input=yaml.safe_dump_all(docs),
        capture_output=True,
        text=True,
    )


def dry_run(tools: dict[str, str], plane: Plane, docs: list[dict[str, Any]]) -> None:
    """Every object must be accepted by the API server."""
    proc = apply_dry_run(tools, plane, docs)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    items = result["items"] if result.get("kind") == "List" else [result]
    sent = {(d["kind"], d["metadata"]["name"], d["metadata"].get("namespace")) for d in docs}
    accepted = {(i["kind"], i["metadata"]["name"], i["metadata"].get("namespace")) for i in items}
    assert accepted == sent
    # The server processed them: it defaulted fields that no manifest sets.
    for item in items:
        if item["kind"] == "Deployment":
            assert container(item)["terminationMessagePath"] == "/dev/termination-log"


async def create_namespaces(client: AsyncClient, *names: str) -> None:
    # No kube-controller-manager: namespaces are created for real (and never reused).
    for name in names:
        await client.create(Namespace(metadata=ObjectMeta(name=name)))


def installable(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] not in NOT_INSTALLED_KINDS]


@pytest.mark.parametrize("variant", ["defaults", "full"])
async def test_chart_is_accepted_by_the_api_server(
    tools: dict[str, str],
    tmp_path: Path,
    plane: Plane,
    admin: dict[str, AsyncClient],
    namespace: str,
    variant: str,
) -> None:
    await install_crd(admin["parent"])
    values: dict[str, Any] = {}
    if variant == "full":
        watched = [f"{namespace}-a", f"{namespace}-b"]
        await create_namespaces(admin["parent"], *watched)
        values = {**FULL_VALUES, "watchNamespaces": watched}
    # The release name makes cluster-scoped names (ClusterRole, webhook) unique to this test.
    docs = helm_template(
        tools, tmp_path, values, release=namespace, namespace=namespace, api_versions=[MAP_API]
    )
    assert of_kind(docs, "MutatingAdmissionPolicy")
    applied = installable(docs)
    if variant == "full":
        assert {d["kind"] for d in docs} - {d["kind"] for d in applied} == NOT_INSTALLED_KINDS
        # The `policies` value: LandingPolicies the API server validates against their CRD.
        assert len(of_kind(applied, "LandingPolicy")) == len(FULL_VALUES["policies"])
    assert len(of_kind(applied, "CustomResourceDefinition")) == 3
    assert of_kind(applied, "ClusterRole", f"{namespace}-moonlander-policy-reader")
    dry_run(tools, plane, applied)
    if variant == "full":
        # The server does judge a rendered policy: one that selects nothing is refused.
        empty = {"policies": [{"name": f"{namespace}-empty", "spec": {"namespaces": {}}}]}
        docs = helm_template(tools, tmp_path, empty, release=namespace, namespace=namespace)
        proc = apply_dry_run(tools, plane, of_kind(docs, "LandingPolicy"))
        assert proc.returncode != 0
        assert "namespaces selects nothing" in proc.stderr


def overlay_into(directory: Path, base: Path, namespace: str) -> Path:
    """An overlay of ``base`` into ``namespace``, with a prefix that makes the cluster-scoped
    names unique (kustomize prefixes neither the CRD nor the Namespace)."""
    directory.mkdir()
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": namespace,
        "namePrefix": f"{namespace}-",
        "resources": [os.path.relpath(base, directory)],
    }
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return directory


@pytest.mark.parametrize("variant", ["default", "namespaced", "with-webhook"])
async def test_kustomize_is_accepted_by_the_api_server(
    tools: dict[str, str],
    tmp_path: Path,
    plane: Plane,
    admin: dict[str, AsyncClient],
    namespace: str,
    variant: str,
) -> None:
    await install_crd(admin["parent"])
    docs = kustomize(tools, overlay_into(tmp_path / "overlay", CONFIG / variant, namespace))
    assert only(docs, "Namespace")["metadata"]["name"] == namespace
    assert only(docs, "Deployment")["metadata"]["namespace"] == namespace
    applied = installable(docs)
    if variant == "with-webhook":
        assert {d["kind"] for d in docs} - {d["kind"] for d in applied} == {"Certificate", "Issuer"}
    else:
        assert applied == docs
    dry_run(tools, plane, applied)


def pod_of(deployment: dict[str, Any], namespace: str, name: str) -> dict[str, Any]:
    template = deployment["spec"]["template"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": template["metadata"]["labels"],
        },
        "spec": template["spec"],
    }


async def test_pods_meet_the_restricted_pod_security_standard(
    tools: dict[str, str],
    tmp_path: Path,
    plane: Plane,
    admin: dict[str, AsyncClient],
    namespace: str,
) -> None:
    """The API server's PodSecurity admission, enforcing `restricted`, admits the pods that the
    chart's and the manifests' Deployments would create."""
    restricted = f"{namespace}-restricted"
    labels = {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
    }
    await admin["parent"].create(Namespace(metadata=ObjectMeta(name=restricted, labels=labels)))
    deployments = {
        "chart": only(helm_template(tools, tmp_path, FULL_VALUES), "Deployment"),
        "kustomize": only(kustomize(tools, CONFIG / "with-webhook"), "Deployment"),
    }
    assert (
        only(kustomize(tools, CONFIG / "default"), "Namespace")["metadata"]["labels"].items()
        >= {"pod-security.kubernetes.io/enforce": "restricted"}.items()
    )
    for origin, deployment in deployments.items():
        proc = apply_dry_run(tools, plane, [pod_of(deployment, restricted, origin)])
        assert proc.returncode == 0, f"{origin}: {proc.stderr}"
    # The namespace does enforce: without its container securityContext the pod is refused.
    pod = pod_of(deployments["chart"], restricted, "insecure")
    del pod["spec"]["containers"][0]["securityContext"]
    proc = apply_dry_run(tools, plane, [pod])
    assert proc.returncode != 0
    assert "violates PodSecurity" in proc.stderr


# -- the wheel, the runtime lock and the image -------------------------------------------------


def lock_pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", line
            pins[normalize(req.name)] = spec.version
    return pins


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_runtime_lock_is_the_runtime_closure() -> None:
    """requirements-runtime.lock: the closure of pyproject's dependencies (extras followed),
    at requirements.lock's versions, and nothing else."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    todo = [
        (Requirement(r).name, frozenset(Requirement(r).extras)) for r in project["dependencies"]
    ]
    seen: set[tuple[str, frozenset[str]]] = set()
    closure: set[str] = set()
    while todo:
        name, extras = todo.pop()
        if (normalize(name), extras) in seen:
            continue
        seen.add((normalize(name), extras))
        closure.add(normalize(name))
        for text in importlib.metadata.requires(name) or []:
            req = Requirement(text)
            if req.marker and not any(req.marker.evaluate({"extra": e}) for e in {"", *extras}):
                continue
            todo.append((req.name, frozenset(req.extras)))
    runtime = lock_pins(RUNTIME_LOCK)
    full = lock_pins(FULL_LOCK)
    assert set(runtime) == closure
    assert {name: full.get(name) for name in runtime} == runtime
    assert not {"pytest", "mypy", "ruff", "hypothesis"} & set(runtime)


def test_wheel_installs_and_runs(tmp_path: Path) -> None:
    """As the Dockerfile does it: a wheel from pyproject.toml, README.md and src/ only, then a
    fresh venv with requirements-runtime.lock as prebuilt wheels (network to PyPI)."""
    context = tmp_path / "context"
    context.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, context / name)
    shutil.copytree(
        ROOT / "src", context / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    wheels = tmp_path / "wheels"
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(wheels), str(context))
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    (wheel,) = wheels.glob("moonlander-*.whl")
    assert wheel.name == f"moonlander-{version}-py3-none-any.whl"

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", str(venv))
    python = str(venv / "bin" / "python")
    pip = [sys.executable, "-m", "pip", "--python", python]
    run(*pip, "install", "--no-deps", "--only-binary=:all:", "--requirement", str(RUNTIME_LOCK))
    run(*pip, "install", "--no-deps", str(wheel))
    run(*pip, "check")

    installed = json.loads(
        run(
            python,
            "-c",
            "import importlib.metadata as m, json;"
            "print(json.dumps([d.metadata['Name'] for d in m.distributions()]))",
        )
    )
    assert {normalize(n) for n in installed} == {*lock_pins(RUNTIME_LOCK), "moonlander"}

    moonlander = str(venv / "bin" / "moonlander")
    assert run(moonlander, "version").strip() == version
    help_text = run(moonlander, "run", "--help")
    for flag in ("--parent-kubeconfig", "--namespace", "--allow-loopback", "--deny-private"):
        assert flag in help_text
    # Every module imports with the runtime lock alone, not only the CLI.
    imported = run(
        python,
        "-c",
        "import importlib, pkgutil, moonlander;"
        "names = [m.name for m in pkgutil.walk_packages(moonlander.__path__, 'moonlander.')"
        " if not m.name.endswith('__main__')];"
        "[importlib.import_module(n) for n in names]; print(len(names))",
    )
    package = ROOT / "src" / "moonlander"
    # Every module and subpackage (its __init__.py) below the top-level package.
    expected = [
        p for p in package.rglob("*.py") if p.name != "__main__.py" and p.parent != package
    ] + list(package.glob("[!_]*.py"))
    assert int(imported) == len(expected)


# A small Dockerfile reader: enough to check the invariants, not a full parser.


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuations joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, rest = line.partition(" ")
        instructions.append((keyword.upper(), " ".join(rest.split())))
    assert not pending, "dangling line continuation"
    return instructions


def dockerfile_problems(text: str, dockerignore: str) -> list[str]:
    """What breaks the image's invariants; empty when none."""
    problems: list[str] = []
    instructions = dockerfile_instructions(text)
    args: dict[str, str] = {}
    stages: list[dict[str, Any]] = []
    for keyword, rest in instructions:
        if keyword == "ARG" and not stages:
            arg, _, default = rest.partition("=")
            args[arg] = default
        elif keyword == "FROM":
            words = rest.split()
            flags = [w for w in words if w.startswith("--")]
            words = [w for w in words if not w.startswith("--")]
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), words[0])
            alias = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append({"image": image, "name": alias, "flags": flags, "body": []})
        elif stages:
            stages[-1]["body"].append((keyword, rest))
    if len(stages) < 2:
        return ["not multi-stage"]
    builder, final = stages[0], stages[-1]
    pinned = re.compile(r"^python:3\.11\.\d+-slim(-[a-z]+)?$")
    for stage in stages:
        if not pinned.match(stage["image"]):
            problems.append(f"base {stage['image']} is not a pinned python:3.11.N-slim tag")
    if any("BUILDPLATFORM" in f for f in final["flags"]):
        problems.append("the final stage must be built for the target platform")
    runs = {id(s): " && ".join(r for k, r in s["body"] if k == "RUN") for s in stages}
    if not re.search(r"pip wheel .*--no-deps", runs[id(builder)]):
        problems.append("the builder stage does not build a wheel with pip wheel --no-deps")
    final_runs = runs[id(final)]
    if f"from={builder['name']}" not in final_runs and not any(
        k == "COPY" and f"--from={builder['name']}" in r for k, r in final["body"]
    ):
        problems.append("the final stage takes nothing from the builder")
    if not re.search(r"install .*moonlander-\*\.whl", final_runs):
        problems.append("the final stage does not install the wheel")
    if not re.search(r"--no-deps --only-binary=:all: .*requirements-runtime\.lock", final_runs):
        problems.append("the runtime lock is not installed as pinned prebuilt wheels only")
    if not re.search(r"pip .*\bcheck\b", final_runs):
        problems.append("no `pip check`: a dependency missing from the lock would go unseen")
    if any(re.search(r"(?<![-\w])requirements\.lock", r) for _, r in instructions):
        problems.append("requirements.lock has the dev tools: use requirements-runtime.lock")
    installs = re.findall(
        r"(?:apt-get|apt|apk|dnf|yum) +(?:-\S+ +)*(?:install|add) +([^&;|]*)", final_runs
    )
    compilers = re.compile(r"\b(gcc|g\+\+|clang|cc|build-essential|make|cargo|rustc|gfortran)\b")
    for packages in installs:
        if compilers.search(packages):
            problems.append(f"compilers installed in the final stage: {packages.strip()}")
    all_runs = " && ".join(runs.values())
    if re.search(r"\b(curl|wget)\b", all_runs) or any(
        k == "ADD" and "://" in r for s in stages for k, r in s["body"]
    ):
        problems.append("downloads outside pip: arch-specific and unpinned")
    users = [r for k, r in final["body"] if k == "USER"]
    uid = users[-1].split(":")[0] if users else "0"
    if not uid.isdigit() or int(uid) == 0:
        problems.append(f"USER must be a numeric non-root uid, not {users[-1] if users else None}")
    entrypoints = [r for k, r in final["body"] if k == "ENTRYPOINT"]
    if not entrypoints or json.loads(entrypoints[-1]) != ["moonlander"]:
        problems.append(f'ENTRYPOINT must be ["moonlander"]: {entrypoints}')
    cmds = [r for k, r in final["body"] if k == "CMD"]
    if not cmds or json.loads(cmds[-1]) != ["run"]:
        problems.append(f'CMD must be ["run"]: {cmds}')
    # The build context: everything excluded, then what the COPYs need included again.
    ignore = [line.strip() for line in dockerignore.splitlines() if line.strip()]
    ignore = [line for line in ignore if not line.startswith("#")]
    if not ignore or ignore[0] != "*":
        problems.append(".dockerignore must start by excluding everything")
    for stage in stages:
        for keyword, rest in stage["body"]:
            if keyword == "COPY" and "--from" not in rest:
                for path in rest.split()[:-1]:
                    if f"!{path.rstrip('/')}" not in {i.rstrip("/") for i in ignore}:
                        problems.append(f"COPY {path}: excluded by .dockerignore")
    return problems


def test_dockerfile_invariants() -> None:
    text = DOCKERFILE.read_text()
    dockerignore = (ROOT / ".dockerignore").read_text()
    assert dockerfile_problems(text, dockerignore) == []
    # The checks catch what they are for.
    broken = {
        "USER 65532:65532": "USER root",
        'ENTRYPOINT ["moonlander"]': 'ENTRYPOINT ["python"]',
        "ARG PYTHON_IMAGE=python:3.11.14-slim-trixie": "ARG PYTHON_IMAGE=python:3.11",
        "--requirement /tmp/requirements-runtime.lock": "--requirement /tmp/requirements.lock",
        "/wheels/moonlander-*.whl": "moonlander",
        "install --no-deps --only-binary=:all:": "install",
        "/bin/python check": "/bin/python --version",
        "ENV PATH": "RUN apt-get install -y --no-install-recommends gcc\nENV PATH",
        "COPY src ./src": "COPY src ./src\nRUN curl -sSL https://example.invalid/tool-amd64 -o /t",
    }
    for old, new in broken.items():
        assert old in text, old
        assert dockerfile_problems(text.replace(old, new), dockerignore), new
    assert dockerfile_problems(text, dockerignore.replace("!src/", "")), "src excluded"


def test_dockerfile_passes_hadolint(tmp_path: Path) -> None:
    """hadolint (pinned in the dev dependencies, runs offline) finds nothing in the Dockerfile,
    and does find problems in a Dockerfile that has them."""
    hadolint = Path(sys.executable).parent / "hadolint"
    clean = subprocess.run(
        [str(hadolint), str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert clean.returncode == 0, clean.stdout + clean.stderr
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install -y gcc\nUSER root\n")
    found = subprocess.run([str(hadolint), str(bad)], capture_output=True, text=True, check=False)
    assert found.returncode != 0
    assert "DL3007" in found.stdout  # :latest


def test_sharding_in_the_chart_and_in_kustomize(tools: dict[str, str], tmp_path: Path) -> None:
    """`sharding.enabled` (chart) and config/sharded (kustomize) run every replica with
    --shards instead of --leader-elect, with the Lease Role that lists and deletes Leases."""
    docs = helm_template(tools, tmp_path, {"sharding": {"enabled": True}, "replicas": 3})
    deployment = only(docs, "Deployment")
    args = run_args(deployment)
    assert deployment["spec"]["replicas"] == 3
    assert "--shards" in args and "--leader-elect" not in args
    assert "--leader-election-id=moonlander" in args  # the Lease group: one per release
    lease_role = of_kind(docs, "Role")
    assert any(
        "list" in r["verbs"] and "delete" in r["verbs"] for d in lease_role for r in d["rules"]
    )

    sharded = kustomize(tools, CONFIG / "sharded")
    deployment = only(sharded, "Deployment")
    args = run_args(deployment)
    assert deployment["spec"]["replicas"] == 3
    assert "--shards" in args and "--leader-elect" not in args
    assert_crds(sharded, hint=KYAML_HINT)
