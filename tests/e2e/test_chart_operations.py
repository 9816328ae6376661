"""What operations teams expect of the chart (issue 25 item 4): CRDs as templates, a
PodDisruptionBudget, a NetworkPolicy, a PrometheusRule whose alerts promtool tests, a Grafana
dashboard whose queries name only metrics the controller exports, image digests,
kubeVersion, Artifact Hub annotations, extra env/volumes/topology spread, aggregated roles
and a README generated from values.yaml.

Rendered with the pinned helm (the ``tools`` fixture of test_packaging); promtool and
helm-docs are built from the Go module proxy by hack/chart/build.sh. What has behaviour on
a cluster (two replicas failing over, the aggregated roles, CRDs kept and taken over) is
exercised on the dev node in test_node.py.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest

from moonlander.api.reasons import Reason
from moonlander.controller.metrics import ClusterHealth, Metrics, Snapshot
from moonlander_dev.clusters import ClusterSpec, ControlPlane, ControlPlaneError

from ..conftest import Plane
from .test_packaging import (
    ALERTS_SOURCE,
    CHART,
    ROOT,
    assert_crds,
    container,
    docs_of,
    helm_template,
    of_kind,
    only,
    run,
    source,
)
from .test_packaging import tools as tools  # the fixture

pytestmark = pytest.mark.e2e

ALERTS_TESTS = ROOT / "config" / "prometheus" / "alerts.test.yaml"
DASHBOARD = CHART / "files" / "grafana" / "moonlander.json"
ALERTS = {
    "MoonlanderLandingsNotReady",
    "MoonlanderReconcileErrors",
    "MoonlanderTokenNearExpiry",
    "MoonlanderWebhookErrors",
    "MoonlanderNoLeader",
}
# The one metric the alerts read that the controller cannot export: a webhook call that
# fails (unreachable, timed out) is seen only by its caller. test_the_webhook_alert_reads_
# what_the_api_server_exports checks it against a real API server.
API_SERVER_METRICS = {"apiserver_admission_webhook_rejection_count"}


# -- the chart's tools ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def chart_tools() -> dict[str, Path]:
    """promtool and helm-docs, built (or found in the cache) by hack/chart/build.sh."""
    started = time.monotonic()
    out = subprocess.run(
        ["nice", "-n", "10", "bash", str(ROOT / "hack" / "chart" / "build.sh")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    dirs = dict(line.split(" ", 1) for line in out.stdout.strip().splitlines())
    print(f"\nhack/chart/build.sh: {time.monotonic() - started:.1f}s")
    return {
        "promtool": Path(dirs["promtool"]) / "promtool",
        "helm-docs": Path(dirs["helm-docs"]) / "helm-docs",
    }


# -- the controller's metrics, from its own registry -----------------------------------------


def exported_metrics() -> set[str]:
    """Every sample name the controller's registry can expose: Metrics() as the operator
    builds it, with the scrape-time collector registered, rendered in the text format.
    Families whose labels have no child yet still have their # TYPE line; histograms
    expose _bucket, _sum and _count, counters _total (and _created)."""
    metrics = Metrics()
    metrics.watch_state(
        lambda: Snapshot(
            reasons={"Synced": 1},
            token_expiry={"ns/l": 1.0},
            clusters=[ClusterHealth(True)],
            queue_depth=0,
            leader=True,
        )
    )
    text = generate_latest(metrics.registry).decode()
    names: set[str] = set()
    for kind_line in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
        name, kind = kind_line
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        elif kind == "counter":
            base = name.removesuffix("_total")
            names |= {f"{base}_total", f"{base}_created"}
        else:
            names.add(name)
    names |= set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", text, re.MULTILINE))
    return names


PROMQL_WORDS = {
    # aggregations, functions and keywords: not metric names
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
    "unless", "offset", "le", "inf", "nan",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are neither a
    function call, a keyword, a label in a matcher or grouping, nor inside a string."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings out
    text = re.sub(r"\{[^}]*\}", "{}", text)  # label matchers out
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\[[^\]]*\]", "[]", text)  # ranges out
    text = re.sub(r"\b\d+(\.\d+)?(ms|[smhdwy])?\b", " ", text)  # numbers, durations out
    found = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        word = match.group()
        after = text[match.end() :].lstrip()
        if after.startswith("(") or word.lower() in PROMQL_WORDS:
            continue
        found.add(word)
    return found


def test_metric_names_finds_selectors_and_nothing_else() -> None:
    """The extractor itself: what the checks below rely on."""
    expr = (
        'sum by (job, reason) (rate(moonlander_reconciles_total{result=~"A|B",job="x"}[5m]))'
        " / on (job) group_left sum(up offset 1h) > bool 0 or vector(0)"
        " + histogram_quantile(0.99, sum by (le) (rate(x_seconds_bucket[$__rate_interval])))"
    )
    assert metric_names(expr.replace("$__rate_interval", "5m")) == {
        "moonlander_reconciles_total",
        "up",
        "x_seconds_bucket",
    }


def test_the_registry_is_read_from_the_code() -> None:
    names = exported_metrics()
    for name in (
        "moonlander_landings",
        "moonlander_reconciles_total",
        "moonlander_reconcile_duration_seconds_bucket",
        "moonlander_token_expiry_timestamp_seconds",
        "moonlander_leader",
    ):
        assert name in names, sorted(names)
    assert "moonlander_no_such_metric" not in names


# -- CRDs as templates ------------------------------------------------------------------------


def test_crds_are_templates_kept_on_uninstall(tools: dict[str, str], tmp_path: Path) -> None:
    # Without --include-crds: they are templates now, not crds/ (which Helm never upgrades).
    plain = docs_of(run(tools["helm"], "template", "r", str(CHART), "-n", "ns"))
    assert_crds(plain)
    for crd in of_kind(plain, "CustomResourceDefinition"):
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert crd["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    unkept = helm_template(tools, tmp_path, {"crds": {"keep": False}})
    assert_crds(unkept)
    for crd in of_kind(unkept, "CustomResourceDefinition"):
        assert "annotations" not in crd["metadata"]
    off = helm_template(tools, tmp_path, {"crds": {"enabled": False}})
    assert not of_kind(off, "CustomResourceDefinition")
    assert only(off, "Deployment")  # the rest is there


def test_a_broken_crd_link_fails_the_render(tools: dict[str, str], tmp_path: Path) -> None:
    chart = tmp_path / "charts" / "moonlander"
    shutil.copytree(ROOT / "config", tmp_path / "config")
    shutil.copytree(CHART, chart, symlinks=True)
    for link in (chart / "files" / "crds").iterdir():
        link.unlink()
    proc = subprocess.run(
        [tools["helm"], "template", "x", str(chart)], capture_output=True, text=True
    )
    assert proc.returncode != 0
    assert "symlinks to config/crd/bases intact" in proc.stderr


# -- PodDisruptionBudget, replicas ------------------------------------------------------------


def test_pod_disruption_budget(tools: dict[str, str], tmp_path: Path) -> None:
    docs = helm_template(tools, tmp_path)
    deployment = only(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert "--leader-elect" in container(deployment)["args"]
    pdb = only(docs, "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["minAvailable"] == 1
    assert "maxUnavailable" not in pdb["spec"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    # One replica: a PDB with minAvailable 1 would block every drain, so none.
    assert not of_kind(helm_template(tools, tmp_path, {"replicas": 1}), "PodDisruptionBudget")
    three = helm_template(
        tools, tmp_path, {"replicas": 3, "podDisruptionBudget": {"maxUnavailable": "50%"}}
    )
    spec = only(three, "PodDisruptionBudget")["spec"]
    assert spec["maxUnavailable"] == "50%" and "minAvailable" not in spec
    off = helm_template(tools, tmp_path, {"podDisruptionBudget": {"enabled": False}})
    assert not of_kind(off, "PodDisruptionBudget")


# -- NetworkPolicy ----------------------------------------------------------------------------


def ingress_by_port(policy: dict[str, Any]) -> dict[str, Any]:
    return {r["ports"][0]["port"]: r.get("from") for r in policy["spec"]["ingress"]}


def test_network_policy(tools: dict[str, str], tmp_path: Path) -> None:
    # By default (no webhook): metrics and health only, from anywhere; egress open.
    default = only(helm_template(tools, tmp_path), "NetworkPolicy")
    assert default["spec"]["policyTypes"] == ["Ingress"]
    assert ingress_by_port(default) == {"metrics": None, "health": None}
    assert "egress" not in default["spec"]
    deployment = only(helm_template(tools, tmp_path), "Deployment")
    ports = {p["name"] for p in container(deployment)["ports"]}
    assert set(ingress_by_port(default)) <= ports
    # Metrics from a peer selector, the webhook from the API server, egress as given.
    monitoring = [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}]
    api_server = [{"ipBlock": {"cidr": "192.0.2.0/24"}}]
    egress = [{"ports": [{"port": 53, "protocol": "UDP"}]}, {"to": api_server}]
    values = {
        "webhook": {"enabled": True, "clientCA": {"configMapName": "ca"}},
        "networkPolicy": {
            "apiServerPeers": api_server,
            "metricsPeers": monitoring,
            "egress": egress,
        },
    }
    policy = only(helm_template(tools, tmp_path, values), "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert ingress_by_port(policy) == {
        "webhook": api_server,
        "metrics": monitoring,
        "health": None,
    }
    assert policy["spec"]["egress"] == egress
    off = helm_template(tools, tmp_path, {"networkPolicy": {"enabled": False}})
    assert not of_kind(off, "NetworkPolicy")


# -- the Deployment's new values --------------------------------------------------------------


DIGEST = "sha256:" + "0123456789abcdef" * 4


def test_image_digest_env_volumes_topology(tools: dict[str, str], tmp_path: Path) -> None:
    values = {
        "image": {"repository": "registry.example/moonlander", "tag": "9.9.9", "digest": DIGEST},
        "extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}],
        "extraVolumes": [{"name": "ca", "configMap": {"name": "remote-ca"}}],
        "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/remote-ca", "readOnly": True}],
        "topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule"},
            {
                "maxSkew": 2,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": {"mine": "yes"}},
            },
        ],
    }  # fmt: skip
    deployment = only(helm_template(tools, tmp_path, values), "Deployment")
    c = container(deployment)
    pod = deployment["spec"]["template"]["spec"]
    # The digest wins over the tag.
    assert c["image"] == f"registry.example/moonlander@{DIGEST}"
    env = [e["name"] for e in c["env"]]
    assert env == ["POD_NAMESPACE", "HTTPS_PROXY"]
    assert {"name": "ca", "configMap": {"name": "remote-ca"}} in pod["volumes"]
    assert c["volumeMounts"][-1] == {"name": "ca", "mountPath": "/etc/remote-ca", "readOnly": True}
    spread = pod["topologySpreadConstraints"]
    # One without a labelSelector counts the controller's pods; one with keeps its own.
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert spread[0]["labelSelector"] == {"matchLabels": selector}
    assert spread[1]["labelSelector"] == {"matchLabels": {"mine": "yes"}}
    # Not given: the tag, or the appVersion.
    tagged = only(helm_template(tools, tmp_path, {"image": {"tag": "1.2.3"}}), "Deployment")
    assert container(tagged)["image"] == "ghcr.io/kingdonb/moonlander:1.2.3"
    plain = only(helm_template(tools, tmp_path), "Deployment")
    assert "topologySpreadConstraints" not in plain["spec"]["template"]["spec"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"image": {"digest": "latest"}}, "digest"),
        ({"extraEnv": [{"value": "x"}]}, "name"),
        ({"extraVolumeMounts": [{"name": "x"}]}, "mountPath"),
        ({"topologySpreadConstraints": [{"maxSkew": 1}]}, "topologyKey"),
        ({"crds": {"keeep": True}}, "keeep"),
        ({"networkPolicy": {"egress": {"to": []}}}, "egress"),
        ({"grafanaDashboard": {"labels": {"grafana_dashboard": 1}}}, "grafana_dashboard"),
    ],
)
def test_new_values_are_checked(
    tools: dict[str, str], tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    values_file = tmp_path / "bad.yaml"
    values_file.write_text(yaml.safe_dump(values))
    proc = subprocess.run(
        [tools["helm"], "template", "x", str(CHART), "--values", str(values_file)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0, proc.stdout[:500]
    assert message in proc.stderr


# -- Chart.yaml -------------------------------------------------------------------------------


def test_chart_metadata(tools: dict[str, str], tmp_path: Path) -> None:
    chart = source(CHART / "Chart.yaml")
    assert chart["kubeVersion"] == ">=1.31.0-0"
    # Helm refuses a cluster older than that (the CRDs' rules call CEL's isCIDR).
    proc = subprocess.run(
        [tools["helm"], "template", "x", str(CHART), "--kube-version=1.30.9"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert "incompatible with Kubernetes v1.30.9" in proc.stderr
    assert docs_of(run(tools["helm"], "template", "x", str(CHART), "--kube-version=1.31.0"))

    notes = chart["annotations"]
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'license = "{notes["artifacthub.io/license"]}"' in pyproject
    assert notes["artifacthub.io/prerelease"] in ("true", "false")
    # Each list annotation is YAML, and says what the chart really has.
    images = yaml.safe_load(notes["artifacthub.io/images"])
    default = only(helm_template(tools, tmp_path), "Deployment")
    assert [i["image"] for i in images] == [container(default)["image"]]
    crds = yaml.safe_load(notes["artifacthub.io/crds"])
    rendered = {
        d["metadata"]["name"]: d
        for d in of_kind(helm_template(tools, tmp_path), "CustomResourceDefinition")
    }
    assert {c["name"] for c in crds} == set(rendered)
    for c in crds:
        crd = rendered[c["name"]]
        assert c["kind"] == crd["spec"]["names"]["kind"]
        assert c["version"] in [v["name"] for v in crd["spec"]["versions"]]
    for example in yaml.safe_load(notes["artifacthub.io/crdsExamples"]):
        assert example["kind"] in {c["kind"] for c in crds}
    links = yaml.safe_load(notes["artifacthub.io/links"])
    assert all(link["url"].startswith("https://") for link in links)
    changes = yaml.safe_load(notes["artifacthub.io/changes"])
    assert changes and all(c["kind"] in {"added", "changed", "fixed", "removed"} for c in changes)


# -- aggregated roles -------------------------------------------------------------------------


def test_aggregated_roles(tools: dict[str, str], tmp_path: Path) -> None:
    docs = helm_template(tools, tmp_path)
    edit = only(docs, "ClusterRole", "moonlander-edit")
    view = only(docs, "ClusterRole", "moonlander-view")
    prefix = "rbac.authorization.k8s.io/aggregate-to-"
    assert {k for k in edit["metadata"]["labels"] if k.startswith(prefix)} == {
        prefix + "admin",
        prefix + "edit",
    }
    assert {k for k in view["metadata"]["labels"] if k.startswith(prefix)} == {
        prefix + "admin",
        prefix + "edit",
        prefix + "view",
    }
    for role in (edit, view):
        for rule in role["rules"]:
            assert rule["apiGroups"] == ["moons.kingdon.ci"]
            # Never LandingPolicies: a namespace's people must not grant themselves.
            assert not [r for r in rule["resources"] if r.startswith("landingpolicies")]
    (edit_rule,) = edit["rules"]
    assert set(edit_rule["resources"]) == {"landings", "landingsets"}  # not their status
    (view_rule,) = view["rules"]
    assert set(view_rule["verbs"]) == {"get", "list", "watch"}
    # Bound to nobody by the chart: the built-in roles' bindings are what grants them.
    for binding in of_kind(docs, "ClusterRoleBinding"):
        assert binding["roleRef"]["name"] not in ("moonlander-edit", "moonlander-view")
    off = helm_template(tools, tmp_path, {"rbac": {"aggregateToDefaultRoles": False}})
    assert not of_kind(off, "ClusterRole", "moonlander-edit")
    assert not of_kind(off, "ClusterRole", "moonlander-view")


# -- the PrometheusRule and promtool ------------------------------------------------------


def rendered_rules(tools: dict[str, str], tmp_path: Path) -> dict[str, Any]:
    docs = helm_template(tools, tmp_path, {"prometheusRule": {"enabled": True}})
    rule = only(docs, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    spec: dict[str, Any] = rule["spec"]
    return spec


def test_the_prometheus_rule_is_its_single_source(tools: dict[str, str], tmp_path: Path) -> None:
    assert rendered_rules(tools, tmp_path) == source(ALERTS_SOURCE)
    labelled = helm_template(
        tools, tmp_path, {"prometheusRule": {"enabled": True, "labels": {"release": "kps"}}}
    )
    assert only(labelled, "PrometheusRule")["metadata"]["labels"]["release"] == "kps"
    assert not of_kind(helm_template(tools, tmp_path), "PrometheusRule")


def test_alerts_pass_promtool(
    tools: dict[str, str], tmp_path: Path, chart_tools: dict[str, Path]
) -> None:
    """`promtool check rules` on what the chart renders, and `promtool test rules` with
    config/prometheus/alerts.test.yaml: every alert fires where it must (and not where it
    must not) in at least one case."""
    rules_file = tmp_path / "alerts.yaml"
    rules_file.write_text(yaml.safe_dump(rendered_rules(tools, tmp_path)))
    promtool = str(chart_tools["promtool"])
    checked = run(promtool, "check", "rules", str(rules_file))
    assert "SUCCESS: 5 rules found" in checked, checked
    tests = source(ALERTS_TESTS)
    assert tests["rule_files"] == ["alerts.yaml"]
    shutil.copy(ALERTS_TESTS, tmp_path / "alerts.test.yaml")
    proc = subprocess.run(
        [promtool, "test", "rules", str(tmp_path / "alerts.test.yaml")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout
    alerts = {r["alert"] for g in source(ALERTS_SOURCE)["groups"] for r in g["rules"]}
    assert alerts == ALERTS
    fired = {
        case["alertname"]
        for test in tests["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    quiet = {
        case["alertname"]
        for test in tests["tests"]
        for case in test.get("alert_rule_test", [])
        if not case.get("exp_alerts")
    }
    assert fired == ALERTS, f"no firing case for {ALERTS - fired}"
    assert quiet == ALERTS, f"no quiet case for {ALERTS - quiet}"


def test_alerts_fail_promtool_when_wrong(tmp_path: Path, chart_tools: dict[str, Path]) -> None:
    """The check can fail: with the not-Ready threshold moved, the same cases fail."""
    broken = source(ALERTS_SOURCE)
    for group in broken["groups"]:
        for rule in group["rules"]:
            if rule["alert"] == "MoonlanderLandingsNotReady":
                rule["expr"] = rule["expr"].replace("> 0", "> 100")
    (tmp_path / "alerts.yaml").write_text(yaml.safe_dump(broken))
    shutil.copy(ALERTS_TESTS, tmp_path / "alerts.test.yaml")
    proc = subprocess.run(
        [str(chart_tools["promtool"]), "test", "rules", "alerts.test.yaml"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode != 0
    assert "MoonlanderLandingsNotReady" in proc.stdout + proc.stderr


def test_alerts_read_metrics_the_controller_exports() -> None:
    exported = exported_metrics()
    rules = [r for g in source(ALERTS_SOURCE)["groups"] for r in g["rules"]]
    used: set[str] = set()
    for rule in rules:
        names = metric_names(rule["expr"])
        assert names, rule["alert"]
        used |= names
    assert used - exported == API_SERVER_METRICS, used - exported
    # The reasons the alerts name are reasons the controller sets.
    reasons = {r.value for r in Reason}
    for rule in rules:
        for regex in re.findall(r'(?:reason|result)!?=~"([^"]+)"', rule["expr"]):
            assert set(regex.split("|")) <= reasons, regex


def test_the_webhook_alert_reads_what_the_api_server_exports(
    tools: dict[str, str], plane: Plane
) -> None:
    """A webhook named as the chart names it, that the API server cannot call (nothing
    listens), scoped to this test's namespace: a create there is refused, and the API
    server's /metrics counts it under the labels MoonlanderWebhookErrors selects."""
    scoped = f"chart-webhook-{secrets.token_hex(4)}"
    config = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": scoped},
        "webhooks": [
            {
                "name": "landings.moons.kingdon.ci",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Fail",
                "timeoutSeconds": 2,
                "clientConfig": {"url": "https://127.0.0.1:1/validate"},
                "rules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["configmaps"],
                    }
                ],
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": scoped},
                },
            }
        ],
    }
    kubectl = [tools["kubectl"], "--kubeconfig", str(plane["parent"].kubeconfig)]
    run(*kubectl, "create", "namespace", scoped)
    run(*kubectl, "apply", "-f", "-", stdin=json.dumps(config))
    try:
        deadline = time.monotonic() + 30
        while True:  # the API server picks the configuration up within a second or so
            proc = subprocess.run(
                [*kubectl, "-n", scoped, "create", "configmap", f"c{int(time.monotonic())}"],
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert proc.returncode != 0
        assert "failed calling webhook" in proc.stderr, proc.stderr
        metrics = run(*kubectl, "get", "--raw", "/metrics")
    finally:
        run(*kubectl, "delete", "validatingwebhookconfiguration", scoped)
    rule = next(
        r
        for g in source(ALERTS_SOURCE)["groups"]
        for r in g["rules"]
        if r["alert"] == "MoonlanderWebhookErrors"
    )
    (name_regex,) = re.findall(r'name=~"([^"]+)"', rule["expr"])
    (error_regex,) = re.findall(r'error_type=~"([^"]+)"', rule["expr"])
    samples = [
        line
        for line in metrics.splitlines()
        if line.startswith("apiserver_admission_webhook_rejection_count{")
    ]
    matching = []
    for line in samples:
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if re.fullmatch(name_regex.replace("\\\\", "\\"), labels.get("name", "")) and (
            re.fullmatch(error_regex, labels.get("error_type", ""))
        ):
            matching.append(line)
    assert matching, "\n".join(samples) or metrics[:2000]


# -- the Grafana dashboard --------------------------------------------------------------------


def dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL the dashboard runs: panel targets and templating queries."""
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            inner = re.fullmatch(r"label_values\((.*),\s*\w+\)", text)
            queries.append(inner.group(1) if inner else text)
    return queries


def concrete(query: str) -> str:
    """Grafana's variables replaced by values PromQL parses."""
    return (
        query.replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h")
        .replace('"$job"', '".*"')
    )


def test_dashboard_is_rendered_where_the_sidecar_looks(
    tools: dict[str, str], tmp_path: Path
) -> None:
    values = {"grafanaDashboard": {"enabled": True, "namespace": "monitoring"}}
    (cm,) = of_kind(helm_template(tools, tmp_path, values), "ConfigMap")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["namespace"] == "monitoring"
    assert json.loads(cm["data"]["moonlander.json"]) == json.loads(DASHBOARD.read_text())
    assert not of_kind(helm_template(tools, tmp_path), "ConfigMap")


def test_dashboard_queries_name_only_exported_metrics(
    tmp_path: Path, chart_tools: dict[str, Path]
) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = dashboard_queries(dashboard)
    assert len(queries) >= 10
    # promtool parses each one (as a recording rule): no syntax error hides a name.
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": concrete(q)}
                    for i, q in enumerate(queries)
                ],
            }
        ]
    }
    rules_file = tmp_path / "dashboard.yaml"
    rules_file.write_text(yaml.safe_dump(rules))
    out = run(str(chart_tools["promtool"]), "check", "rules", str(rules_file))
    assert f"SUCCESS: {len(queries)} rules found" in out, out
    exported = exported_metrics()
    used: set[str] = set()
    for query in queries:
        names = metric_names(concrete(query))
        assert names, query
        assert names <= exported, f"{query}: {names - exported} not exported"
        used |= names
    # The dashboard shows every family the controller exports under moonlander_.
    families = {n for n in exported if n.startswith("moonlander_") and not n.endswith("_created")}
    histogram_parts = {n for n in families if n.endswith(("_bucket", "_sum", "_count"))}
    assert families - histogram_parts - used == set()


# -- the README from values.yaml (helm-docs) ---------------------------------------------------


@pytest.fixture
def chart_copy(tmp_path: Path) -> Path:
    """A copy of the chart (its links kept: they are relative to the repository)."""
    copy = tmp_path / "charts" / "moonlander"
    shutil.copytree(ROOT / "config", tmp_path / "config")
    shutil.copytree(CHART, copy, symlinks=True)
    return copy


def helm_docs(binary: Path, chart: Path) -> str:
    run(str(binary), "--chart-search-root", str(chart), "--log-level", "warning")
    return (chart / "README.md").read_text()


def test_chart_readme_is_generated_from_values(
    chart_copy: Path, chart_tools: dict[str, Path]
) -> None:
    """charts/moonlander/README.md is what helm-docs v1.14.2 makes of values.yaml and
    README.md.gotmpl now (`make chart-docs` regenerates it)."""
    (chart_copy / "README.md").unlink()
    generated = helm_docs(chart_tools["helm-docs"], chart_copy)
    committed = (CHART / "README.md").read_text()
    assert generated == committed, "charts/moonlander/README.md is stale: run make chart-docs"
    # Every value is documented in it.
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for key in values:
        assert f"| {key}" in committed, key
    # The check can fail: a changed comment changes the README.
    values_file = chart_copy / "values.yaml"
    values_file.write_text(
        values_file.read_text().replace("# -- Secrets to pull", "# -- Drifted: secrets to pull")
    )
    assert helm_docs(chart_tools["helm-docs"], chart_copy) != committed


# -- CRDs as templates on a fresh API server: install, keep, take over ------------------------


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A control plane of its own (kube-apiserver and etcd, no CRD installed), for what the
    session's shared clusters cannot show: a first install, an uninstall that deletes the
    release's objects, CRDs that exist without Helm's marks. Yields its admin kubeconfig."""
    control = ControlPlane(tmp_path_factory.mktemp("fresh"), [ClusterSpec("fresh")])
    try:
        control.start()
    except ControlPlaneError as err:
        pytest.fail(f"the control plane did not start: {err}", pytrace=False)
    try:
        yield control.clusters["fresh"].kubeconfig
    finally:
        control.stop()


def helm_on(
    tools: dict[str, str], kubeconfig: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tools["helm"], f"--kubeconfig={kubeconfig}", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def crd_meta(tools: dict[str, str], kubeconfig: Path) -> dict[str, dict[str, Any]]:
    out = run(tools["kubectl"], f"--kubeconfig={kubeconfig}", "get", "crd", "-o", "json")
    return {
        c["metadata"]["name"]: c["metadata"]
        for c in json.loads(out)["items"]
        if c["spec"]["group"] == "moons.kingdon.ci"
    }


def create_when_served(kubectl: list[str], obj: dict[str, Any]) -> None:
    """kubectl create, tried again while the API server has the CRD but does not serve
    its kind yet (a second or so after it is Established)."""
    deadline = time.monotonic() + 30
    while True:
        proc = subprocess.run(
            [*kubectl, "create", "-f", "-"], input=json.dumps(obj), capture_output=True, text=True
        )
        if proc.returncode == 0:
            return
        assert "There can be a delay" in proc.stderr and time.monotonic() < deadline, proc.stderr
        time.sleep(0.5)


def test_crds_installed_kept_and_taken_over(tools: dict[str, str], fresh: Path) -> None:
    """On a real API server: a first install creates the CRDs from the templates; uninstall
    leaves them (crds.keep); CRDs that exist without Helm's marks (as 0.1.0's crds/ or a
    kubectl apply left them) make helm upgrade refuse, and --take-ownership (docs/install.md,
    "Upgrades") adopts them."""
    kubectl = [tools["kubectl"], f"--kubeconfig={fresh}"]
    ns = ["-n", "moonlander-system", "--create-namespace"]
    installed = helm_on(tools, fresh, "install", "moonlander", str(CHART), *ns)
    assert installed.returncode == 0, installed.stderr
    metas = crd_meta(tools, fresh)
    assert sorted(metas) == [
        "landingpolicies.moons.kingdon.ci",
        "landings.moons.kingdon.ci",
        "landingsets.moons.kingdon.ci",
    ]
    for meta in metas.values():
        assert meta["annotations"]["meta.helm.sh/release-name"] == "moonlander"
        assert meta["annotations"]["helm.sh/resource-policy"] == "keep"
    run(*kubectl, "wait", "--for=condition=Established", "crd", *metas)
    # A Landing survives the uninstall with its CRD.
    landing = {
        "apiVersion": "moons.kingdon.ci/v1alpha1",
        "kind": "Landing",
        "metadata": {"name": "kept", "namespace": "default"},
        "spec": {"direction": "ChildToParent"},
    }
    create_when_served(kubectl, landing)
    uninstalled = helm_on(tools, fresh, "uninstall", "moonlander", "-n", "moonlander-system")
    assert uninstalled.returncode == 0, uninstalled.stderr
    assert "kept due to the resource policy" in uninstalled.stdout + uninstalled.stderr
    assert sorted(crd_meta(tools, fresh)) == sorted(metas)
    kept = json.loads(run(*kubectl, "-n", "default", "get", "landing", "kept", "-o", "json"))
    # No controller runs here to release it: its finalizer (the chart's admission policy put
    # it there) would hold the CRD's deletion below.
    if kept["metadata"].get("finalizers"):
        run(*kubectl, "-n", "default", "patch", "landing", "kept", "--type=merge",
            "-p", '{"metadata": {"finalizers": null}}')  # fmt: skip
    run(*kubectl, "-n", "default", "delete", "landing", "kept")

    # As 0.1.0 left them: the CRDs applied without Helm's marks, the release without them.
    run(*kubectl, "delete", "crd", *metas)
    run(*kubectl, "apply", "--server-side", "-f", str(ROOT / "config" / "crd" / "bases"))
    for meta in crd_meta(tools, fresh).values():
        assert "meta.helm.sh/release-name" not in (meta.get("annotations") or {})
    old = helm_on(
        tools, fresh, "install", "moonlander", str(CHART), *ns, "--set", "crds.enabled=false"
    )
    assert old.returncode == 0, old.stderr
    # (crds.enabled=true: the value set above would be reused; 0.1.0 had no such value.)
    upgrade = ["upgrade", "moonlander", str(CHART), "-n", "moonlander-system", "--set"]
    upgrade += ["crds.enabled=true"]
    refused = helm_on(tools, fresh, *upgrade, "--reset-then-reuse-values")
    assert refused.returncode != 0
    assert "invalid ownership metadata" in refused.stderr, refused.stderr
    adopted = helm_on(tools, fresh, *upgrade, "--reset-then-reuse-values", "--take-ownership")
    assert adopted.returncode == 0, adopted.stderr
    for meta in crd_meta(tools, fresh).values():
        assert meta["annotations"]["meta.helm.sh/release-name"] == "moonlander"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    helm_on(tools, fresh, "uninstall", "moonlander", "-n", "moonlander-system")


def test_first_install_with_policies_takes_two_steps(tools: dict[str, str], fresh: Path) -> None:
    """`policies` on a cluster without the CRDs: Helm builds every object of a release
    before it creates any, so a LandingPolicy cannot come with its CRD in one install
    (Helm's own error). Installing, then upgrading with the policies works
    (docs/install.md says so)."""
    kubectl = [tools["kubectl"], f"--kubeconfig={fresh}"]
    run(*kubectl, "delete", "crd", "--ignore-not-found", "landingpolicies.moons.kingdon.ci",
        "landings.moons.kingdon.ci", "landingsets.moons.kingdon.ci")  # fmt: skip
    policies = ["--set", "policies[0].name=p", "--set", "policies[0].spec.namespaces.names[0]=a"]
    # (Its own mint namespace: moonlander-minted is kept from the release above.)
    release = ["first", str(CHART), "-n", "first", "--set", "minting.namespaces={first-minted}"]
    proc = helm_on(tools, fresh, "install", *release, "--create-namespace", *policies)
    assert proc.returncode != 0
    assert 'no matches for kind "LandingPolicy"' in proc.stderr, proc.stderr
    assert not crd_meta(tools, fresh)  # nothing was created
    installed = helm_on(tools, fresh, "install", *release, "--create-namespace")
    assert installed.returncode == 0, installed.stderr
    run(*kubectl, "wait", "--for=condition=Established", "crd/landingpolicies.moons.kingdon.ci")
    upgraded = helm_on(tools, fresh, "upgrade", *release, "--reuse-values", *policies)
    assert upgraded.returncode == 0, upgraded.stderr
    policy = json.loads(run(*kubectl, "get", "landingpolicy", "p", "-o", "json"))
    assert policy["spec"]["namespaces"]["names"] == ["a"]
    helm_on(tools, fresh, "uninstall", "first", "-n", "first")
