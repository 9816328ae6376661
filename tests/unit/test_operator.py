"""Where `moonlander run` finds the cluster it runs in."""

from __future__ import annotations

from pathlib import Path

import pytest

from moonlander.operator import local_kubeconfig


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
