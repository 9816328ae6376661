"""Metrics and logs by the conventions (issue 26, item 5), against a real API server.

``moonlander run --metrics-auth`` serves /metrics as controller-runtime's authentication and
authorization filter does: the real API server's TokenReview says who a bearer token is, its
SubjectAccessReview whether RBAC lets them get /metrics. The controller runs on child-a as
its "own" cluster (it never competes with the session's controller), as a ServiceAccount
bound to exactly the shipped RBAC, with ``--log-format=json``.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube import AsyncClient
from lightkube.models.authentication_v1 import TokenRequestSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace, ServiceAccount
from lightkube.resources.rbac_authorization_v1 import ClusterRole

from moonlander import __version__

from . import harness
from .conftest import Env
from .harness import (
    ControllerProcess,
    bind_cluster_role,
    controller_kubeconfig,
    install_crd,
    landing,
    secret_with,
    wait_reason,
)

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
METRICS_READER = ROOT / "config" / "prometheus" / "metrics-reader-role.yaml"


def scrape(controller: ControllerProcess, token: str | None) -> tuple[int, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{controller.metrics_port}/metrics")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310 - loopback
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


async def sa_token(client: AsyncClient, namespace: str, name: str) -> str:
    await client.apply(
        ServiceAccount(metadata=ObjectMeta(name=name, namespace=namespace)),
        field_manager="tests",
    )
    request = await client.create(
        ServiceAccount.Token(
            metadata=ObjectMeta(), spec=TokenRequestSpec(audiences=[], expirationSeconds=3600)
        ),
        name=name,
        namespace=namespace,
    )
    assert request.status is not None
    return str(request.status.token)


def json_lines(text: str) -> Iterator[dict[str, Any]]:
    for line in text.splitlines():
        if line.startswith("{"):
            yield json.loads(line)


@pytest.fixture
def json_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    """ControllerProcess with the global ``--log-format=json`` (before ``run``)."""
    spawn = harness.spawn

    def with_json(argv: list[str], *args: Any, **kwargs: Any) -> Any:
        at = argv.index("run")
        return spawn([*argv[:at], "--log-format=json", *argv[at:]], *args, **kwargs)

    monkeypatch.setattr(harness, "spawn", with_json)


async def test_metrics_auth_and_structured_logs(env: Env, tmp_path: Path, json_logs: None) -> None:
    child = env.admin["child-a"]
    await install_crd(child)
    plane = env.plane["child-a"]
    identity = tmp_path / "controller-kubeconfig"
    identity.write_text(await controller_kubeconfig(child, plane.url, plane.ca_pem))
    identity.chmod(0o600)
    ns = f"mx-{int(time.time() * 1000) % 10**9}"
    await child.create(Namespace(metadata=ObjectMeta(name=ns)))
    await child.create(secret_with(ns, "src", {"value": env.kubeconfig_text("child-b")}))
    # Scrapers: one with no rights, one bound to the shipped metrics-reader ClusterRole.
    reader = ClusterRole.from_dict(yaml.safe_load(METRICS_READER.read_text()))
    await child.apply(reader, field_manager="tests", force=True)
    await bind_cluster_role(child, ns, "scraper", reader.metadata.name)
    allowed = await sa_token(child, ns, "scraper")
    denied = await sa_token(child, ns, "nobody")

    controller = ControllerProcess(
        tmp_path, identity, env.parent_file, f"--namespace={ns}", "--metrics-auth"
    )
    controller.start()
    try:
        controller.wait_started()
        await child.create(
            landing(
                ns,
                "l",
                kubeconfigSecretName="src",
                direction="ChildToParent",
                writeKubeconfigSecretName="out",
            )
        )
        await wait_reason(child, ns, "l", "Synced")

        # Authentication, then authorization, by the API server.
        assert scrape(controller, None)[0] == 401
        assert scrape(controller, "not-a-token")[0] == 401
        status, body = scrape(controller, denied)
        assert status == 403, body
        assert f"system:serviceaccount:{ns}:nobody" in body
        status, text = scrape(controller, allowed)
        assert status == 200, text
        # The probes stay open to the kubelet.
        assert controller.http_get("/healthz")[0] == 200

        [build] = [x for x in text.splitlines() if x.startswith("moonlander_build_info{")]
        assert f'version="{__version__}"' in build and build.endswith(" 1.0")
        codes = set(
            re.findall(
                r'^moonlander_api_requests_total\{cluster="local",code="(\w+)",method="\w+"\}',
                text,
                re.MULTILINE,
            )
        )
        assert "200" in codes, codes
        print("\n" + "\n".join([build, *(x for x in text.splitlines() if "code=" in x)][:8]))

        # The reconcile's log line carries its fields as JSON keys.
        [line, *_] = [
            e
            for e in json_lines(controller.log())
            if e.get("landing") == "l" and e.get("reason") == "Synced"
        ]
        print(json.dumps(line))
        assert line["namespace"] == ns and line["target_cluster"] == "local"
        assert line["direction"] == "ChildToParent" and line["ready"] is True
        assert isinstance(line["duration_seconds"], float)
        assert line["msg"].startswith(f"{ns}/l: Synced in ")
        # No token a scraper presented is ever logged.
        log = controller.log()
        assert allowed not in log and denied not in log
    finally:
        assert controller.stop() == 0, controller.log_tail()
