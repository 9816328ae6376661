"""``moonlander run --mint-namespace``: where ParentToChild Landings may mint, handed to the
fence; never the controller's own namespace."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from moonlander.cli import main as cli


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[Any]:
    """The Options ``moonlander run`` would start the controller with (it is not started)."""
    seen: list[Any] = []

    async def fake_run(options: Any) -> None:
        seen.append(options)

    monkeypatch.setattr("moonlander.operator.run", fake_run)
    monkeypatch.setenv("POD_NAMESPACE", "moonlander-system")
    (tmp_path / "kubeconfig").write_text("{}")
    monkeypatch.chdir(tmp_path)
    return seen


def test_the_default_mint_namespace(started: list[Any]) -> None:
    assert cli.main(["run", "--kubeconfig", "kubeconfig"]) == 0
    assert started[0].mint_namespaces == ("moonlander-minted",)


def test_mint_namespaces_are_repeatable(started: list[Any]) -> None:
    args = ["run", "--kubeconfig", "kubeconfig", "--mint-namespace", "a", "--mint-namespace=b"]
    assert cli.main(args) == 0
    assert started[0].mint_namespaces == ("a", "b")


@pytest.mark.parametrize("bad", ["moonlander-system", "Not_A_Name"])
def test_the_controller_namespace_is_never_a_mint_namespace(
    started: list[Any], bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["run", "--kubeconfig", "kubeconfig", f"--mint-namespace={bad}"]) == 2
    assert "--mint-namespace" in capsys.readouterr().err
    assert started == []
