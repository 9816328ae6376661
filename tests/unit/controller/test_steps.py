"""Each reconcile step on its own, against the fake store (tests/support/store.py)."""

from __future__ import annotations

import ast
import base64
from pathlib import Path

import pytest

from moonlander import api
from moonlander.api.reasons import LandingProblem, Reason
from moonlander.controller import steps
from moonlander.controller.steps.on_target import track
from moonlander.controller.steps.permission import authorize, permitted
from moonlander.controller.steps.run import LandingRun
from moonlander.controller.steps.source import read_source
from moonlander.controller.steps.target import choose_target
from moonlander.controller.steps.verification import VERIFIED_FOR

from ...support.builders import VIEW, Scene, landing, scene
from ...support.store import CHILD_SERVER, LOCAL, PARENT_SERVER, api_error, kubeconfig, secret

CHILD_TO_PARENT = {"direction": "ChildToParent"}


def granted(**kwargs: object) -> Scene:
    s = scene(**kwargs)  # type: ignore[arg-type]
    s.grant(parentCredential=True)
    return s


async def until(run: LandingRun, s: Scene, last: steps.Step) -> None:
    """Runs the steps in order up to and including ``last``."""
    for step in (*steps.LANDING, *steps.ON_TARGET, track):
        await step(run, s.ctx)
        if step is last:
            return


# -- authorize -------------------------------------------------------------------------------


async def test_authorize_refuses_what_no_policy_grants_before_anything_is_read() -> None:
    s = scene()
    asked = landing()
    with pytest.raises(LandingProblem) as caught:
        await authorize(LandingRun(asked), s.ctx)
    assert caught.value.outcome.reason is Reason.NOT_PERMITTED
    assert not permitted(LandingRun(asked), s.ctx)
    s.grant(parentCredential=True)
    run = LandingRun(asked)
    await authorize(run, s.ctx)
    assert run.source_policy is s.ctx.policy  # no sourceNetworks: the controller's own
    assert s.store.writes == []


async def test_authorize_narrows_the_source_policy_to_the_namespaces_networks() -> None:
    s = scene()
    s.grant(parentCredential=True, sourceNetworks=["203.0.113.0/24"])
    run = LandingRun(landing())
    await authorize(run, s.ctx)
    assert run.source_policy is not None
    assert [str(n) for n in run.source_policy.within_networks] == ["203.0.113.0/24"]


# -- read source -----------------------------------------------------------------------------


async def test_read_source_validates_the_kubeconfig_and_reuses_an_unchanged_secret() -> None:
    s = granted()
    asked = landing()
    s.source(asked)
    run = LandingRun(asked)
    await until(run, s, read_source)
    assert run.source is not None
    assert (run.source_key, run.source.server) == ("value", CHILD_SERVER)
    version = s.store.get(LOCAL, *asked.source_ref)["metadata"]["resourceVersion"]
    s.ctx.sources.version = lambda _ns, _name: version
    s.store.failing[LOCAL] = api_error(500)  # a second read would fail
    await read_source(LandingRun(asked), s.ctx)


async def test_a_missing_source_is_waited_for() -> None:
    s = granted()
    with pytest.raises(LandingProblem) as caught:
        await until(LandingRun(landing()), s, read_source)
    assert caught.value.outcome.reason is Reason.SOURCE_SECRET_NOT_FOUND


async def test_a_bad_kubeconfig_is_invalid_kubeconfig_and_names_the_key() -> None:
    s = granted()
    asked = landing()
    s.source(asked, value="not: a kubeconfig")
    with pytest.raises(LandingProblem) as caught:
        await until(LandingRun(asked), s, read_source)
    assert caught.value.outcome.reason is Reason.INVALID_KUBECONFIG
    assert "key 'value'" in caught.value.outcome.message


async def test_another_namespaces_secret_is_read_only_once_it_granted_access() -> None:
    s = granted()
    asked = landing(kubeconfigSecretNamespace="other", kubeconfigSecretName="src")
    s.store.put(LOCAL, secret("other", "src", {"value": kubeconfig(CHILD_SERVER)}))
    with pytest.raises(LandingProblem) as caught:
        await until(LandingRun(asked), s, read_source)
    assert caught.value.outcome.reason is Reason.CROSS_NAMESPACE_NOT_ALLOWED
    s.store.put(
        LOCAL,
        secret(
            "other",
            "src",
            {"value": kubeconfig(CHILD_SERVER)},
            {api.ALLOWED_NAMESPACES_ANNOTATION: "tenant-a"},
        ),
    )
    run = LandingRun(asked)
    await until(run, s, read_source)
    assert run.source is not None


# -- choose target ---------------------------------------------------------------------------


async def test_parent_to_child_writes_to_the_child_with_the_parents_credential() -> None:
    s = granted()
    asked = landing()
    s.source(asked)
    run = LandingRun(asked)
    await until(run, s, choose_target)
    assert run.target is not None
    assert run.payload is not None
    assert (run.target.server, run.payload.server, run.server) == (
        CHILD_SERVER,
        PARENT_SERVER,
        PARENT_SERVER,
    )


async def test_child_to_parent_writes_locally_what_the_source_grants() -> None:
    s = scene()
    asked = landing(**CHILD_TO_PARENT, server="https://203.0.113.30:6443")
    s.source(asked)
    run = LandingRun(asked)
    await until(run, s, choose_target)
    assert run.target is s.ctx.local_target
    assert run.payload is run.source
    assert run.server == "https://203.0.113.30:6443"  # spec.server replaced the source's


async def test_no_parent_credential_is_said_before_anything_is_written() -> None:
    s = granted(parent=LandingProblem(Reason.PARENT_KUBECONFIG_UNAVAILABLE, "not read", None))  # type: ignore[arg-type]
    asked = landing()
    s.source(asked)
    with pytest.raises(LandingProblem) as caught:
        await until(LandingRun(asked), s, choose_target)
    assert caught.value.outcome.reason is Reason.PARENT_KUBECONFIG_UNAVAILABLE


# -- the target steps, and the whole list ----------------------------------------------------


async def test_land_writes_the_secret_once_and_records_what_was_landed() -> None:
    s = granted()
    asked = landing()
    s.source(asked)
    run = LandingRun(asked)
    await steps.land(run, s.ctx)
    assert run.written == "created"
    assert s.store.writes == [
        ("create", CHILD_SERVER, "Namespace", "", "tenant-a"),
        ("create", CHILD_SERVER, "Secret", "tenant-a", "remote-kubeconfig"),
    ]
    body = s.store.get(CHILD_SERVER, "tenant-a", "remote-kubeconfig")
    assert PARENT_SERVER in base64.b64decode(body["data"]["value"]).decode()
    landed = run.landed
    assert landed is not None
    assert (landed.cluster, landed.server, landed.namespace, landed.name, landed.source_key) == (
        CHILD_SERVER,
        PARENT_SERVER,
        "tenant-a",
        "remote-kubeconfig",
        "value",
    )
    assert landed.content_hash == body["metadata"]["annotations"][api.HASH_ANNOTATION]
    assert s.store.fake_drift.tracked == {"tenant-a/l": [(CHILD_SERVER, "tenant-a", "Secret")]}
    assert s.store.review_calls == [PARENT_SERVER]
    # Again: nothing new to land, nothing written, nobody asked.
    again = LandingRun(asked)
    await steps.land(again, s.ctx)
    assert (again.written, again.landed) == ("current", landed)
    assert len(s.store.writes) == 2
    assert s.store.review_calls == [PARENT_SERVER]


async def test_an_api_error_of_the_target_is_the_targets_problem() -> None:
    s = granted()
    asked = landing()
    s.source(asked)
    s.store.failing[CHILD_SERVER] = api_error(403)
    with pytest.raises(LandingProblem) as caught:
        await steps.land(LandingRun(asked), s.ctx)
    assert CHILD_SERVER in caught.value.outcome.message


async def test_verify_refuses_a_credential_that_does_not_authenticate() -> None:
    s = granted()
    asked = landing()
    s.source(asked)
    s.store.reviews[PARENT_SERVER] = api_error(401)
    with pytest.raises(LandingProblem) as caught:
        await steps.land(LandingRun(asked), s.ctx)
    assert caught.value.outcome.reason is Reason.CREDENTIAL_REJECTED
    assert s.store.writes == []  # not landed
    s.store.reviews[PARENT_SERVER] = api_error(403)  # authenticated, may not ask: fine
    await steps.land(LandingRun(asked), s.ctx)


async def test_verify_asks_once_for_landings_of_one_credential() -> None:
    s = granted()
    for name in ("a", "b"):
        asked = landing(name, writeKubeconfigSecretName=name)
        s.source(asked)
        await steps.land(LandingRun(asked), s.ctx)
    assert s.store.review_calls == [PARENT_SERVER]


async def test_a_minted_token_is_landed_unverified_and_its_times_recorded() -> None:
    s = scene()
    s.grant(mint=VIEW)
    asked = landing(
        serviceAccount={"name": "robot", "namespace": "moonlander-minted", "clusterRole": "view"}
    )
    s.source(asked)
    run = LandingRun(asked)
    await steps.land(run, s.ctx)
    assert s.store.minted == ["tenant-a/l"]
    assert s.store.review_calls == []
    assert run.token is not None
    landed = run.landed
    assert landed is not None
    assert landed.service_account == "moonlander-minted/robot"
    assert landed.token_expires_at == "2026-01-01T01:00:00Z"
    assert landed.token_renew_at is not None
    body = s.store.get(CHILD_SERVER, "tenant-a", "remote-kubeconfig")
    assert "minted-0" in base64.b64decode(body["data"]["value"]).decode()
    tracked = s.store.fake_drift.tracked["tenant-a/l"]
    assert [kind for _, _, kind in tracked] == ["Secret", "ServiceAccount"]


async def test_a_renamed_target_removes_the_old_secret_if_ours() -> None:
    s = granted()
    asked = landing()
    s.source(asked)
    first = LandingRun(asked)
    await steps.land(first, s.ctx)
    assert first.landed is not None
    status = {
        "landed": {"cluster": CHILD_SERVER, "namespace": "tenant-a", "name": "remote-kubeconfig"}
    }
    renamed = landing(writeKubeconfigSecretName="renamed", status=status)
    await steps.land(LandingRun(renamed), s.ctx)
    assert s.store.get(CHILD_SERVER, "tenant-a", "remote-kubeconfig") is None
    assert s.store.get(CHILD_SERVER, "tenant-a", "renamed") is not None


async def test_a_repaired_secret_gets_an_event() -> None:
    s = granted()
    asked = landing()
    s.source(asked)
    await steps.land(LandingRun(asked), s.ctx)
    body = s.store.get(CHILD_SERVER, "tenant-a", "remote-kubeconfig")
    body["data"]["value"] = "ZWRpdGVk"
    s.store.put(CHILD_SERVER, body)
    run = LandingRun(asked)
    await steps.land(run, s.ctx)
    assert run.written == "updated"
    assert s.store.fake_events.reasons() == ["Repaired"]


async def test_argocd_output_lands_a_cluster_secret() -> None:
    s = granted()
    asked = landing(output={"format": "ArgoCD", "argocd": {"name": "child"}})
    s.source(asked)
    run = LandingRun(asked)
    await steps.land(run, s.ctx)
    body = s.store.get(CHILD_SERVER, "tenant-a", "remote-kubeconfig")
    assert base64.b64decode(body["data"]["server"]).decode() == PARENT_SERVER


async def test_companions_written_where_their_crd_exists_and_pruned_when_dropped() -> None:
    s = granted()
    asked = landing(output={"crossplane": {"providers": ["Kubernetes"], "scope": "Namespaced"}})
    s.source(asked)
    run = LandingRun(asked)
    await steps.land(run, s.ctx)
    assert run.provider_configs == ()  # no CRD yet: skipped, not failed
    s.store.companion_kinds = {"ProviderConfig.kubernetes.m.crossplane.io"}
    run = LandingRun(asked)
    await steps.land(run, s.ctx)
    assert len(run.provider_configs) == 1
    status = {
        "landed": {"name": "remote-kubeconfig", "providerConfigs": list(run.provider_configs)}
    }
    await steps.land(LandingRun(landing(status=status)), s.ctx)
    assert s.store.verbs()[-1] == "prune"


def test_no_step_sees_a_client() -> None:
    """Every call to a cluster goes through the store: no step imports a client class or
    reaches for a Target's client (error types, to say what a failure means, are fine)."""
    package = Path(steps.__file__).parent
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = {a.name for a in node.names}
                assert not names & {"AsyncClient", "Client"}, f"{path.name} imports a client"
            if isinstance(node, ast.Attribute):
                assert node.attr not in {"client", "watch_client"}, f"{path.name} uses a client"


def test_the_order_is_the_reconcile() -> None:
    assert [s.__name__ for s in (*steps.LANDING, *steps.ON_TARGET)] == [
        "authorize",
        "read_source",
        "choose_target",
        "relocate",
        "read_landed",
        "hold",
        "credentials",
        "render",
        "verify",
        "write",
        "companions",
    ]
    assert VERIFIED_FOR == 60.0
