"""Runs last: nothing secret the suite handled appears in logs, events, status or metrics."""

from __future__ import annotations

import base64

import pytest
import yaml
from lightkube.resources.core_v1 import Event

from moonlander.kube.resources import LandingResource

from .conftest import Env
from .harness import PLANTED

pytestmark = pytest.mark.e2e


def fragments(env: Env) -> list[str]:
    """Recognisable pieces of every credential in play: the clusters' admin keys and
    certificates, the controller's own token, and tokens the tests planted."""
    found: list[str] = []
    for name in ("parent", "child-a", "child-b"):
        user = yaml.safe_load(env.kubeconfig_text(name))["users"][0]["user"]
        for field in ("client-key-data", "client-certificate-data"):
            data = user[field]
            found.append(data[60:100])  # as base64
            pem = base64.b64decode(data).decode().splitlines()
            found.append(pem[1][:48])  # as PEM
            found.append(pem[2][:48])
    own = yaml.safe_load(env.controller.kubeconfig.read_text())["users"][0]["user"]["token"]
    found.append(own)
    found.append(own.split(".")[2][:40])  # the JWT signature alone
    found.extend(PLANTED)
    return [f for f in found if len(f) >= 20]


async def test_no_secret_material_in_logs_events_status_metrics(env: Env) -> None:
    secrets = fragments(env)
    assert len(secrets) >= 20
    assert "DEBUG" in env.controller.log()  # the scan covers debug logging
    events = [e async for e in env.local.list(Event, namespace="*")]
    landings = [obj async for obj in env.local.list(LandingResource, namespace="*")]
    haystacks = {
        "controller log": env.controller.log(),
        "events": "\n".join(f"{e.reason} {e.message}" for e in events),
        "status": "\n".join(yaml.safe_dump(obj.to_dict().get("status") or {}) for obj in landings),
        "metrics": env.controller.http_get("/metrics")[1],
    }
    assert "moonlander_reconciles_total" in haystacks["metrics"]
    assert len(events) > 20 and len(landings) > 20
    leaks = [
        (where, s[:12] + "…") for where, text in haystacks.items() for s in secrets if s in text
    ]
    assert not leaks, leaks
