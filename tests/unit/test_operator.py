"""Where `moonlander run` finds the cluster it runs in; how its kopf handlers run."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import kopf
import pytest
from kopf._core.actions import invocation

from moonlander.operator import NoDiffBase, Options, build_registry, local_kubeconfig


def test_flag_wins_over_the_environment() -> None:
    assert local_kubeconfig(Path("/a"), {"KUBECONFIG": "/b"}) == Path("/a")


def test_kubeconfig_env_is_used_when_no_flag() -> None:
    assert local_kubeconfig(None, {"KUBECONFIG": "/b"}) == Path("/b")


@pytest.mark.parametrize("environ", [{}, {"KUBECONFIG": ""}, {"KUBECONFIG": ":"}])
def test_in_cluster_when_neither(environ: dict[str, str]) -> None:
    assert local_kubeconfig(None, environ) is None


def test_several_files_are_refused_not_guessed() -> None:
    with pytest.raises(
        ValueError, match=r"names 2 files; moonlander run reads one: pass --kubeconfig"
    ):
        local_kubeconfig(None, {"KUBECONFIG": "/a:/b"})


class _Recorder:
    """Stands in for the Controller and LandingSets: records on which thread events arrive."""

    def __init__(self) -> None:
        self.threads: list[int] = []

    def landing_event(self, _type: str | None, _body: dict[str, Any]) -> None:
        self.threads.append(threading.get_ident())

    set_event = landing_event


async def test_watch_events_are_handled_on_the_event_loop_thread() -> None:
    """kopf runs a plain ``def`` handler in its thread pool; the work queue and the view are
    the event loop's alone, so the Landing and LandingSet handlers must run on its thread
    (invoked here as kopf invokes them)."""
    recorder = _Recorder()
    # No webhook port: the local client is not used.
    registry = build_registry(recorder, recorder, Options(), None)  # type: ignore[arg-type]
    handlers = registry._watching.get_all_handlers()
    assert len(handlers) == 2
    for handler in handlers:
        await invocation.invoke(
            handler.fn,
            settings=kopf.OperatorSettings(),
            kwargs={"type": "ADDED", "body": {"metadata": {}}},
        )
    # The Landing handler tells both the controller and the LandingSets; the set handler one.
    assert recorder.threads == [threading.get_ident()] * 3


async def test_no_diff_base_is_built_for_event_only_handlers() -> None:
    """The startup settings replace kopf's diff base, which would deep-copy every watched
    body for change handlers Moonlander does not have; and there are none to need it."""
    registry = build_registry(_Recorder(), _Recorder(), Options(), None)  # type: ignore[arg-type]
    assert not registry._changing.get_all_handlers()
    assert not registry._spawning.get_all_handlers()
    settings = kopf.OperatorSettings()
    for handler in registry._activities.get_all_handlers():
        if handler.activity is not None and handler.activity.value == "startup":
            await invocation.invoke(handler.fn, settings=settings, kwargs={"settings": settings})
    storage = settings.persistence.diffbase_storage
    assert isinstance(storage, NoDiffBase)
    body = kopf.Body({"metadata": {"name": "x"}, "spec": {"a": [1]}})
    assert storage.build(body=body) == {}
    assert storage.fetch(body=body) is None
