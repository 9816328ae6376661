"""The formats between Moonlander and its consumers, checked against the consumers' own
published schemas (fetched at test time, see consumers.py) on a real API server, and used by
real clients to reach the intended cluster.

child-b plays the consumer's cluster (CRDs installed there); child-a is the cluster whose
access is handed out. A namespace created only in child-a proves a client reached child-a.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.generic_resource import create_global_resource, create_namespaced_resource
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.core_v1 import Namespace, Secret, ServiceAccount
from lightkube.resources.rbac_authorization_v1 import ClusterRole

from moonlander import api
from moonlander.api import Provider, Scope
from moonlander.api import ownership as own
from moonlander.api.reasons import LandingProblem, Reason
from moonlander.controller import outputs, plan
from moonlander.controller.outputs import PROVIDER_CONFIG_KINDS
from moonlander.credentials import (
    Credentials,
    Policy,
    credentials_from_token,
    parse_kubeconfig,
    render_kubeconfig,
)
from moonlander_dev import clusters as devclusters

from ..conftest import Plane
from . import consumers
from .harness import mint_token_kubeconfig, scratch_crd

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = Policy(allow_loopback=True)
MANAGER = api.FIELD_MANAGER
NAMESPACE_READER = "moonlander-test-namespace-reader"


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


async def install_crds(client: AsyncClient, crds: list[dict[str, Any]]) -> None:
    """Server-side apply with force: idempotent when clusters are reused."""
    for crd in crds:
        await client.apply(
            CustomResourceDefinition.from_dict(crd), field_manager="tests", force=True
        )
    for crd in crds:
        await client.wait(
            CustomResourceDefinition, crd["metadata"]["name"], for_conditions=["Established"]
        )


def resource_for(obj: Mapping[str, Any], plural: str, namespaced: bool) -> Any:
    group, _, version = obj["apiVersion"].rpartition("/")
    make = create_namespaced_resource if namespaced else create_global_resource
    return make(group, version, obj["kind"], plural)


async def apply_and_read(
    client: AsyncClient, obj: Mapping[str, Any], plural: str, namespaced: bool
) -> dict[str, Any]:
    """Writes ``obj`` as the reconciler does (server-side apply, field manager moonlander,
    no force) and returns what the API server stored."""
    res = resource_for(obj, plural, namespaced)
    await client.apply(res.from_dict(dict(obj)), field_manager=MANAGER)
    ns = obj["metadata"].get("namespace")
    stored = await client.get(res, obj["metadata"]["name"], namespace=ns)
    return dict(stored.to_dict())


def secret_dict(secret: Secret) -> dict[str, Any]:
    return dict(secret.to_dict())


@pytest.fixture
async def marker(admin: dict[str, AsyncClient], namespace: str) -> str:
    """A namespace that exists only in child-a: seeing it proves a client reached child-a."""
    name = f"{namespace}-only-in-child-a"
    await admin["child-a"].create(Namespace(metadata=ObjectMeta(name=name)))
    return name


@pytest.fixture(scope="session")
def kubectl_bin() -> str:
    return str(devclusters.find_assets() / "kubectl")


def kubectl(kubectl_bin: str, tmp: Path, *args: str) -> str:
    # An empty KUBECONFIG: only what the arguments say is used.
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["KUBECONFIG"] = str(tmp / "no-such-kubeconfig")
    proc = subprocess.run(
        [kubectl_bin, *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def decode_data(data: Mapping[str, str]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


def kubectl_args_from_argocd(server: str, config: dict[str, Any], tmp: Path) -> list[str]:
    """What an Argo CD cluster entry says, as kubectl flags (files for the PEMs)."""
    tls = config["tlsClientConfig"]
    args = ["--server", server]
    for key, flag in (
        ("caData", "--certificate-authority"),
        ("certData", "--client-certificate"),
        ("keyData", "--client-key"),
    ):
        if key in tls:
            path = tmp / f"{key}-{secrets.token_hex(4)}.pem"
            path.write_bytes(base64.b64decode(tls[key]))  # base64 of the PEM, as Argo CD reads
            path.chmod(0o600)
            args += [flag, str(path)]
    if tls.get("serverName"):
        args += ["--tls-server-name", tls["serverName"]]
    if tls["insecure"]:
        args.append("--insecure-skip-tls-verify")
    if "bearerToken" in config:
        args += ["--token", config["bearerToken"]]
    return args


def kubeconfig_from_argocd(server: str, config: dict[str, Any]) -> dict[str, Any]:
    """The same entry as a kubeconfig document, assembled by hand for a Python client."""
    tls = config["tlsClientConfig"]
    cluster: dict[str, Any] = {"server": server}
    if "caData" in tls:
        cluster["certificate-authority-data"] = tls["caData"]
    user: dict[str, Any] = {}
    if "bearerToken" in config:
        user["token"] = config["bearerToken"]
    if "certData" in tls:
        user["client-certificate-data"] = tls["certData"]
        user["client-key-data"] = tls["keyData"]
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }


async def namespaces_via(kubeconfig: dict[str, Any]) -> set[str]:
    client = AsyncClient(KubeConfig.from_dict(kubeconfig))
    try:
        return {ns.metadata.name async for ns in client.list(Namespace)}
    finally:
        await client._client.close()


def child_a_admin(plane: Plane) -> Credentials:
    return parse_kubeconfig(plane["child-a"].kubeconfig.read_text(), LOOPBACK)


async def child_a_token(plane: Plane, admin: dict[str, AsyncClient], namespace: str) -> str:
    """A TokenRequest token for a ServiceAccount in child-a that may only list namespaces."""
    client = admin["child-a"]
    await client.apply(
        ClusterRole.from_dict(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": NAMESPACE_READER},
                "rules": [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list"]}],
            }
        ),
        field_manager="tests",
        force=True,
    )
    text = await mint_token_kubeconfig(
        client,
        plane["child-a"].url,
        plane["child-a"].ca_pem,
        namespace,
        "argocd-manager",
        NAMESPACE_READER,
        expiration=600,
    )
    token = yaml.safe_load(text)["users"][0]["user"]["token"]
    assert isinstance(token, str)
    return token


# --------------------------------------------------------------------------------------------
# spec.output: the CRD snippet in docs/integrations.md agrees with api.parse_spec
# --------------------------------------------------------------------------------------------

CHECK_GROUP = "tests.moons.kingdon.ci"


def parse_output(output: dict[str, Any]) -> api.OutputSpec:
    """spec.output as the controller reads it, of a Landing named harvey."""
    return api.parse_spec({"output": output}, name="harvey").output


def output_schema_from_docs() -> dict[str, Any]:
    """spec.output as the Landing CRD (the single source, config/crd/bases) defines it."""
    crd = yaml.safe_load((ROOT / "config/crd/bases/moons.kingdon.ci_landings.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return {"output": spec["properties"]["output"]}


OUTPUT_CASES: list[tuple[dict[str, Any], bool]] = [
    ({}, True),
    ({"format": "Kubeconfig"}, True),
    ({"crossplane": {}}, True),
    ({"crossplane": None}, True),  # null is pruned: not set
    ({"crossplane": {"providers": ["Kubernetes", "Helm"], "scope": "Cluster", "name": "x"}}, True),
    ({"format": "ArgoCD"}, True),
    (
        {
            "format": "ArgoCD",
            "argocd": {
                "name": "Harvey (prod)",
                "project": "tenants",
                "namespaces": ["a", "b"],
                "clusterResources": True,
                "labels": {"example.com/env": "prod", "tier": ""},
            },
        },
        True,
    ),
    ({"format": "Yaml"}, False),
    ({"argocd": {}}, False),
    ({"format": "ArgoCD", "crossplane": {}}, False),
    ({"format": "ArgoCD", "argocd": {"labels": {"argocd.argoproj.io/secret-type": "x"}}}, False),
    ({"format": "ArgoCD", "argocd": {"labels": {"app.kubernetes.io/managed-by": "me"}}}, False),
    ({"format": "ArgoCD", "argocd": {"labels": {"bad key": "x"}}}, False),
    ({"format": "ArgoCD", "argocd": {"labels": {"k": "bad value"}}}, False),
    ({"format": "ArgoCD", "argocd": {"namespaces": ["Not_A_Namespace"]}}, False),
    ({"format": "ArgoCD", "argocd": {"namespaces": ["a", "a"]}}, False),
    ({"format": "ArgoCD", "argocd": {"project": "UPPER"}}, False),
    ({"crossplane": {"providers": []}}, False),
    ({"crossplane": {"providers": ["Kubernetes", "Kubernetes"]}}, False),
    ({"crossplane": {"providers": ["Terraform"]}}, False),
    ({"crossplane": {"scope": "Global"}}, False),
    ({"crossplane": {"name": "Bad_Name"}}, False),
]


# The schema refuses empty strings; the parser (api.parse_spec) reads them as "not set"
# (objects stored before the schema may hold them).
EMPTY_IS_UNSET: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"format": "ArgoCD", "argocd": {"name": ""}}, {"format": "ArgoCD", "argocd": {}}),
    ({"format": "ArgoCD", "argocd": {"project": ""}}, {"format": "ArgoCD", "argocd": {}}),
    ({"crossplane": {"name": ""}}, {"crossplane": {}}),
]


async def test_output_schema_snippet_matches_parser(
    admin: dict[str, AsyncClient], namespace: str
) -> None:
    """The spec.output schema proposed for the Landing CRD compiles on a real API server
    (CEL included), and it accepts and rejects exactly what api.parse_spec does; the
    defaults it applies parse to the same OutputSpec."""
    client = admin["child-b"]
    crd = scratch_crd(
        CHECK_GROUP, "OutputCheck", "outputchecks", {"properties": output_schema_from_docs()}
    )
    await install_crds(client, [crd])
    res = create_namespaced_resource(CHECK_GROUP, "v1", "OutputCheck", "outputchecks")
    for i, (output, valid) in enumerate(OUTPUT_CASES):
        try:
            expected = parse_output(output)
            parser_ok = True
        except api.SpecError:
            parser_ok = False
        assert parser_ok == valid, (output, "parser")
        obj = {
            "apiVersion": f"{CHECK_GROUP}/v1",
            "kind": "OutputCheck",
            "metadata": {"name": f"case-{i}", "namespace": namespace},
            "spec": {"output": output},
        }
        stored: Any = None
        refusal: ApiError | None = None
        try:
            stored = await client.create(res.from_dict(obj))
        except ApiError as err:
            refusal = err
        if refusal is not None:
            assert refusal.status.code == 422, refusal.status.message
            assert not valid, (output, refusal.status.message)
            continue
        assert valid, (output, "accepted by the API server")
        defaulted = stored["spec"]["output"]
        assert parse_output(defaulted) == expected

    for i, (output, unset) in enumerate(EMPTY_IS_UNSET):
        obj = {
            "apiVersion": f"{CHECK_GROUP}/v1",
            "kind": "OutputCheck",
            "metadata": {"name": f"empty-{i}", "namespace": namespace},
            "spec": {"output": output},
        }
        with pytest.raises(ApiError) as refused:
            await client.create(res.from_dict(obj))
        assert refused.value.status.code == 422
        assert parse_output(output) == parse_output(unset)


# --------------------------------------------------------------------------------------------
# Crossplane provider-kubernetes: legacy and v2 (.m.) ProviderConfigs
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
async def provider_kubernetes_crds(admin: dict[str, AsyncClient]) -> dict[str, dict[str, Any]]:
    crds = consumers.crds(consumers.PROVIDER_KUBERNETES, "package/crds")
    wanted = [PROVIDER_CONFIG_KINDS[(Provider.KUBERNETES, s)].crd_name for s in Scope]
    missing = [name for name in wanted if name not in crds]
    assert not missing, f"{consumers.PROVIDER_KUBERNETES} has no CRD {missing}"
    await install_crds(admin["child-b"], [crds[name] for name in wanted])
    return crds


async def test_provider_kubernetes_accepts_every_scope(
    plane: Plane,
    admin: dict[str, AsyncClient],
    namespace: str,
    provider_kubernetes_crds: dict[str, dict[str, Any]],
) -> None:
    client = admin["child-b"]
    owner = api.owner_value(namespace, "harvey")
    kubeconfig = render_kubeconfig(child_a_admin(plane), name="child-a")
    secret = plan.desired_secret(
        name="child-a-kubeconfig",
        namespace=namespace,
        owner=owner,
        owner_uid="uid-1",
        kubeconfig=kubeconfig,
    )
    await client.apply(Secret.from_dict(secret), field_manager=MANAGER)

    for scope in Scope:
        kind = PROVIDER_CONFIG_KINDS[(Provider.KUBERNETES, scope)]
        crd = provider_kubernetes_crds[kind.crd_name]["spec"]
        # Our table names the kinds exactly as the provider's CRDs do.
        assert crd["group"] == kind.group and crd["names"]["kind"] == kind.kind
        assert crd["names"]["plural"] == kind.plural
        assert (crd["scope"] == "Namespaced") == kind.namespaced
        assert kind.version in [v["name"] for v in crd["versions"] if v["served"]]

        name = f"{namespace}-{scope.value.lower()}"
        (desired,) = outputs.crossplane_provider_configs(
            provider=Provider.KUBERNETES,
            scope=scope,
            name=name,
            secret_name="child-a-kubeconfig",
            secret_namespace=namespace,
            owner=owner,
            owner_uid="uid-1",
        )
        stored = await apply_and_read(client, desired, kind.plural, kind.namespaced)
        # Accepted, and nothing pruned: the stored object holds all we wrote.
        assert outputs.is_current(stored, desired), (scope, stored)
        assert own.ownership(stored, owner) is own.Ownership.OURS
        assert stored["spec"]["credentials"]["secretRef"] == {
            "namespace": namespace,
            "name": "child-a-kubeconfig",
            "key": "kubeconfig",
        }
        # The real schema is enforced: every kind requires secretRef.namespace, so it is
        # always written (also for the namespaced kind).
        broken = json.loads(json.dumps(desired))
        broken["metadata"]["name"] += "-broken"
        del broken["spec"]["credentials"]["secretRef"]["namespace"]
        res = resource_for(broken, kind.plural, kind.namespaced)
        with pytest.raises(ApiError) as rejected:
            await client.create(res.from_dict(broken))
        assert rejected.value.status.code == 422
        assert "namespace" in (rejected.value.status.message or "")

        await client.delete(res, name, namespace=namespace if kind.namespaced else None)


# --------------------------------------------------------------------------------------------
# Flux: Kustomization spec.kubeConfig.secretRef
# --------------------------------------------------------------------------------------------


def flux_default_keys() -> list[str]:
    """The keys Flux reads when secretRef.key is not set, from its own source."""
    module = f"{consumers.FLUX_RUNTIME}@" + consumers.required_version(
        consumers.FLUX_KUSTOMIZE_CONTROLLER, consumers.FLUX_RUNTIME
    )
    source = consumers.read_text(module, "client/impersonator.go")
    body = re.search(r"func \(i \*Impersonator\) getRESTConfigFromSecret\(.*?\n}\n", source, re.S)
    assert body, "getRESTConfigFromSecret not found in fluxcd/pkg/runtime"
    return re.findall(r'secret\.Data\["([^"]+)"\] != nil', body.group(0))


async def test_flux_kustomization_reads_the_landed_secret(
    plane: Plane,
    admin: dict[str, AsyncClient],
    namespace: str,
    marker: str,
    kubectl_bin: str,
    tmp_path: Path,
) -> None:
    client = admin["child-b"]
    crds = consumers.crds(consumers.FLUX_KUSTOMIZE_CONTROLLER, "config/crd/bases")
    crd = crds["kustomizations.kustomize.toolkit.fluxcd.io"]
    await install_crds(client, [crd])
    storage = next(v["name"] for v in crd["spec"]["versions"] if v["storage"])

    # Flux reads "value", then "value.yaml", when the key is not named: ours has "value".
    keys = flux_default_keys()
    assert keys == ["value", "value.yaml"], keys
    assert keys[0] in api.WRITTEN_KEYS

    owner = api.owner_value(namespace, "harvey")
    kubeconfig = render_kubeconfig(child_a_admin(plane), name="child-a")
    desired = plan.desired_secret(
        name="child-a-kubeconfig",
        namespace=namespace,
        owner=owner,
        owner_uid="uid-1",
        kubeconfig=kubeconfig,
    )
    await client.apply(Secret.from_dict(desired), field_manager=MANAGER)
    stored = secret_dict(await client.get(Secret, "child-a-kubeconfig", namespace=namespace))
    assert plan.is_current(stored, desired)

    res = create_namespaced_resource(
        "kustomize.toolkit.fluxcd.io", storage, "Kustomization", "kustomizations"
    )
    kustomization = {
        "apiVersion": f"kustomize.toolkit.fluxcd.io/{storage}",
        "kind": "Kustomization",
        "metadata": {"name": "apps", "namespace": namespace},
        "spec": {
            "interval": "10m",
            "prune": True,
            "path": "./apps",
            "sourceRef": {"kind": "GitRepository", "name": "fleet"},
            # Flux refuses cross-namespace refs: the Secret is in the Kustomization's namespace.
            "kubeConfig": {"secretRef": {"name": "child-a-kubeconfig"}},
        },
    }
    created = await client.create(res.from_dict(kustomization))
    assert created["spec"]["kubeConfig"] == {"secretRef": {"name": "child-a-kubeconfig"}}
    # The schema is really enforced (its CEL rule): secretRef and configMapRef exclude each other.
    both = json.loads(json.dumps(kustomization))
    both["metadata"]["name"] = "both"
    both["spec"]["kubeConfig"]["configMapRef"] = {"name": "x"}
    with pytest.raises(ApiError) as rejected:
        await client.create(res.from_dict(both))
    assert rejected.value.status.code == 422

    # The documented example is accepted as written, too.
    example = next(
        doc
        for doc in yaml.safe_load_all(
            (ROOT / "examples" / "flux" / "kustomization.yaml").read_text()
        )
        if doc["kind"] == "Kustomization"
    )
    assert example["apiVersion"] == f"kustomize.toolkit.fluxcd.io/{storage}"
    example["metadata"]["namespace"] = namespace
    await client.create(res.from_dict(example))

    # What Flux would read (the "value" key) reaches child-a.
    path = tmp_path / "value.yaml"
    path.write_text(decode_data(stored["data"])["value"])
    out = kubectl(kubectl_bin, tmp_path, "--kubeconfig", str(path), "get", "ns", "-o", "name")
    assert f"namespace/{marker}" in out.split()


# --------------------------------------------------------------------------------------------
# Argo CD: the cluster Secret against Argo CD's Go types and documentation
# --------------------------------------------------------------------------------------------


def test_argocd_config_keys_match_argo_types() -> None:
    types = consumers.read_text(consumers.ARGO_CD, "pkg/apis/application/v1alpha1/types.go")
    cluster_config = consumers.go_struct_json_tags(types, "ClusterConfig")
    tls_config = consumers.go_struct_json_tags(types, "TLSClientConfig")
    pem = b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"
    creds = Credentials(
        server="https://h:6443",
        ca_data=pem,
        token="t",  # only key names are compared
        client_cert=pem,
        client_key=pem,
        tls_server_name="h",
        insecure_skip_tls_verify=False,
        context_name="c",
        cluster_name="c",
        user_name="c",
        namespace=None,
    )
    config = outputs.argocd_config(creds)  # every field we can write is set here
    assert set(config) <= set(cluster_config), set(config) - set(cluster_config)
    assert set(config["tlsClientConfig"]) <= set(tls_config)
    assert set(config["tlsClientConfig"]) == {
        "insecure",
        "serverName",
        "caData",
        "certData",
        "keyData",
    }
    # Go encodes []byte as base64 in JSON: that is why caData etc. are base64 of the PEM.
    for key in ("caData", "certData", "keyData"):
        assert tls_config[key][0] == "[]byte"
    assert cluster_config["bearerToken"][0] == "string"
    # tlsClientConfig and insecure have no omitempty in Argo CD: we always write them.
    assert cluster_config["tlsClientConfig"][1] is False
    assert tls_config["insecure"] == ("bool", False)


def test_argocd_secret_keys_are_the_documented_ones() -> None:
    docs = consumers.read_text(consumers.ARGO_CD, "docs/operator-manual/declarative-setup.md")
    section = docs.split("\n## Clusters\n", 1)[1].split("\n## ", 1)[0]
    fields = section.split("The secret data can include the following fields:", 1)[1]
    documented = re.findall(r"^\* `(\w+)` - ", fields.split("```", 1)[0], re.M)
    assert set(documented) == set(outputs.ARGOCD_KEYS), documented

    # What Argo CD's SecretToCluster reads: our keys are among them, namespaces is split on
    # commas and clusterResources compared with "true".
    reader = consumers.read_text(consumers.ARGO_CD, "util/db/cluster.go")
    body = reader.split("func SecretToCluster(", 1)[1].split("\n}\n", 1)[0]
    read = set(re.findall(r's\.Data\["(\w+)"\]', body))
    assert set(outputs.ARGOCD_KEYS) <= read, set(outputs.ARGOCD_KEYS) - read
    assert 'string(s.Data["namespaces"]), ","' in body
    assert 'string(s.Data["clusterResources"]) == "true"' in body

    common = consumers.read_text(consumers.ARGO_CD, "common/common.go")
    assert f'LabelKeySecretType = "{api.ARGOCD_SECRET_TYPE_LABEL}"' in common
    assert f'LabelValueSecretTypeCluster = "{outputs.ARGOCD_CLUSTER}"' in common


# --------------------------------------------------------------------------------------------
# Argo CD: a real client uses what was rendered to reach child-a
# --------------------------------------------------------------------------------------------


async def argocd_round_trip(
    admin: dict[str, AsyncClient],
    namespace: str,
    creds: Credentials,
    marker: str,
    kubectl_bin: str,
    tmp: Path,
) -> None:
    client = admin["child-b"]  # where Argo CD would run
    owner = api.owner_value(namespace, "harvey")
    spec = parse_output(
        {
            "format": "ArgoCD",
            "argocd": {"namespaces": [marker], "clusterResources": False, "labels": {"env": "t"}},
        }
    ).argocd
    assert spec is not None
    desired = outputs.argocd_cluster_secret(
        creds, name="cluster-harvey", namespace=namespace, owner=owner, owner_uid="u", spec=spec
    )
    await client.apply(Secret.from_dict(desired), field_manager=MANAGER)
    stored = secret_dict(await client.get(Secret, "cluster-harvey", namespace=namespace))
    assert outputs.is_current(stored, desired)
    assert stored["metadata"]["labels"][api.ARGOCD_SECRET_TYPE_LABEL] == "cluster"
    # Server-side apply: no last-applied-configuration copy of the data (CVE-2023-40029).
    assert "kubectl.kubernetes.io/last-applied-configuration" not in (
        stored["metadata"].get("annotations") or {}
    )

    data = decode_data(stored["data"])
    assert data["name"] == "harvey" and data["namespaces"] == marker
    config = json.loads(data["config"])
    assert outputs.argocd_credentials(stored["data"], LOOPBACK).fingerprint() == (
        creds.fingerprint()
    )

    args = kubectl_args_from_argocd(data["server"], config, tmp)
    out = kubectl(kubectl_bin, tmp, *args, "get", "ns", "-o", "name")
    assert f"namespace/{marker}" in out.split()
    assert marker in await namespaces_via(kubeconfig_from_argocd(data["server"], config))


async def test_argocd_secret_with_client_certificate_reaches_child_a(
    plane: Plane,
    admin: dict[str, AsyncClient],
    namespace: str,
    marker: str,
    kubectl_bin: str,
    tmp_path: Path,
) -> None:
    creds = child_a_admin(plane)
    assert creds.client_cert is not None and creds.token is None
    await argocd_round_trip(admin, namespace, creds, marker, kubectl_bin, tmp_path)


async def test_argocd_secret_with_token_reaches_child_a(
    plane: Plane,
    admin: dict[str, AsyncClient],
    namespace: str,
    marker: str,
    kubectl_bin: str,
    tmp_path: Path,
) -> None:
    token = await child_a_token(plane, admin, namespace)
    creds = credentials_from_token(plane["child-a"].url, plane["child-a"].ca_pem, token, LOOPBACK)
    assert creds.token is not None and creds.client_cert is None
    await argocd_round_trip(admin, namespace, creds, marker, kubectl_bin, tmp_path)


# --------------------------------------------------------------------------------------------
# Producers: a Secret holding only token + ca.crt (OCM managed-serviceaccount, classic)
# --------------------------------------------------------------------------------------------


@pytest.fixture
async def token_secrets(plane: Plane, admin: dict[str, AsyncClient], namespace: str) -> list[str]:
    """Both token-only shapes, in the cluster where Moonlander runs (the parent)."""
    token = await child_a_token(plane, admin, namespace)
    local = admin["parent"]

    def b64(value: str | bytes) -> str:
        return base64.b64encode(value.encode() if isinstance(value, str) else value).decode()

    ca = b64(plane["child-a"].ca_pem)
    # OCM's ManagedServiceAccount projection: Opaque, token + ca.crt, no server.
    await local.create(
        Secret(
            metadata=ObjectMeta(name="ocm-child-a", namespace=namespace),
            data={"token": b64(token), "ca.crt": ca},
        )
    )
    # The classic ServiceAccount token Secret (no controller-manager here fills it, so the
    # test does, with the same keys).
    await local.create(ServiceAccount(metadata=ObjectMeta(name="legacy", namespace=namespace)))
    await local.create(
        Secret(
            metadata=ObjectMeta(
                name="legacy-token",
                namespace=namespace,
                annotations={"kubernetes.io/service-account.name": "legacy"},
            ),
            type="kubernetes.io/service-account-token",
            data={"token": b64(token), "ca.crt": ca, "namespace": b64(namespace)},
        )
    )
    return ["ocm-child-a", "legacy-token"]


async def test_token_secret_producers_land_a_working_kubeconfig(
    plane: Plane,
    admin: dict[str, AsyncClient],
    namespace: str,
    marker: str,
    token_secrets: list[str],
    kubectl_bin: str,
    tmp_path: Path,
) -> None:
    for name in token_secrets:
        secret = await admin["parent"].get(Secret, name, namespace=namespace)
        data = dict(secret.data or {})
        assert plan.is_token_secret(data), name
        with pytest.raises(LandingProblem) as no_server:
            plan.credentials_from_token_secret(data, None, LOOPBACK)
        assert no_server.value.outcome.reason is Reason.SOURCE_KEY_NOT_FOUND
        assert "spec.server" in no_server.value.outcome.message

        creds = plan.credentials_from_token_secret(data, plane["child-a"].url, LOOPBACK)
        assert creds.namespace == (namespace if name == "legacy-token" else None)
        path = tmp_path / f"{name}.yaml"
        path.write_text(render_kubeconfig(creds, name="child-a"))
        out = kubectl(kubectl_bin, tmp_path, "--kubeconfig", str(path), "get", "ns", "-o", "name")
        assert f"namespace/{marker}" in out.split(), name
