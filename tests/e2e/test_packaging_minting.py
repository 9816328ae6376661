"""The mint namespaces as shipped: the chart passes minting.namespaces to the controller as
--mint-namespace, creates them (kept on uninstall), and refuses the release namespace;
config/minted is the default mint namespace, out of config/default."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from moonlander import api

from .test_packaging import CHART, CONFIG, helm_template, kustomize, of_kind, only, run_args
from .test_packaging import tools as tools  # the fixture

pytestmark = pytest.mark.e2e


def test_the_chart_mints_in_its_mint_namespaces(tools: dict[str, str], tmp_path: Path) -> None:
    docs = helm_template(tools, tmp_path)
    assert "--mint-namespace=moonlander-minted" in run_args(only(docs, "Deployment"))
    minted = only(docs, "Namespace", api.DEFAULT_MINT_NAMESPACE)
    assert minted["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"

    values = {"minting": {"namespaces": ["robots", "robots-b"], "createNamespaces": False}}
    docs = helm_template(tools, tmp_path, values)
    args = run_args(only(docs, "Deployment"))
    assert [a for a in args if a.startswith("--mint-namespace")] == [
        "--mint-namespace=robots",
        "--mint-namespace=robots-b",
    ]
    assert of_kind(docs, "Namespace") == []


def test_the_chart_refuses_the_release_namespace_as_a_mint_namespace(
    tools: dict[str, str], tmp_path: Path
) -> None:
    proc = subprocess.run(
        [tools["helm"], "template", "x", str(CHART), "--namespace", api.DEFAULT_MINT_NAMESPACE],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert "holds the parent credential" in proc.stderr


def test_config_minted_is_the_default_mint_namespace(tools: dict[str, str]) -> None:
    namespace = only(kustomize(tools, CONFIG / "minted"), "Namespace")
    assert namespace["metadata"]["name"] == api.DEFAULT_MINT_NAMESPACE
    names = [
        d["metadata"]["name"] for d in of_kind(kustomize(tools, CONFIG / "default"), "Namespace")
    ]
    assert names == ["moonlander-system"]
