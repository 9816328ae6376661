"""Where `moonlander run` finds the cluster it runs in; when it refuses to serve the webhook."""

from __future__ import annotations

from pathlib import Path

import pytest

from moonlander.operator import Options, local_kubeconfig, webhook_tls


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


def test_the_webhook_does_not_serve_without_a_client_ca(tmp_path: Path) -> None:
    """Anyone who reaches the port could ask it: without the API server's client CA the
    controller refuses to start, naming the flag."""
    with pytest.raises(SystemExit, match="--webhook-port needs --webhook-client-ca FILE"):
        webhook_tls(Options(webhook_port=9443, webhook_cert_dir=tmp_path))


def test_unreadable_webhook_files_stop_the_start_with_their_names(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"cannot load .*tls.crt and tls.key with client CA"):
        webhook_tls(
            Options(webhook_port=9443, webhook_cert_dir=tmp_path, webhook_client_ca=tmp_path / "ca")
        )


def test_no_webhook_no_tls() -> None:
    assert webhook_tls(Options()) is None
