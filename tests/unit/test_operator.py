"""Where `moonlander run` finds the cluster it runs in; what it asks of kopf."""

from __future__ import annotations

from pathlib import Path

import pytest

from moonlander.operator import Options, build_registry, local_kubeconfig


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


def test_kopf_serves_admission_only() -> None:
    """The watches are the controller's own (kube/watch.py): kopf is given validating
    handlers and nothing that would make it watch Landings, LandingSets or Secrets."""
    registry = build_registry(Options(webhook_port=9443), None)  # type: ignore[arg-type]
    assert not registry._watching.get_all_handlers()
    assert not registry._changing.get_all_handlers()
    assert not registry._spawning.get_all_handlers()
    assert {h.id for h in registry._webhooks.get_all_handlers()} == {
        "validate",
        "validate-landingset",
    }
