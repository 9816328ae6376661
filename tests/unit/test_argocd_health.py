"""The Argo CD health checks have one source, config/argocd/health/*.lua: the argocd-cm
snippet and the argo-cd chart values embed exactly those files, under the keys Argo CD reads
(resource.customizations.health.<group>_<kind>). tests/e2e/test_argocd_health.py runs them
with Argo CD's own code."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import yaml

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "config" / "argocd"
KINDS = ("Landing", "LandingSet", "LandingPolicy")


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "argocd_health", ROOT / "hack" / "argocd_health.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def expected() -> dict[str, str]:
    return {
        f"resource.customizations.health.moons.kingdon.ci_{kind}": (
            FOLDER / "health" / f"{kind}.lua"
        ).read_text()
        for kind in KINDS
    }


def test_the_health_folder_holds_one_check_per_kind() -> None:
    assert sorted(p.name for p in (FOLDER / "health").iterdir()) == sorted(
        f"{k}.lua" for k in KINDS
    )


def test_the_argocd_cm_snippet_embeds_exactly_the_lua_files() -> None:
    doc = yaml.safe_load((FOLDER / "argocd-cm.yaml").read_text())
    assert (doc["apiVersion"], doc["kind"], doc["metadata"]["name"]) == (
        "v1",
        "ConfigMap",
        "argocd-cm",
    )
    # Argo CD's settings code only sees ConfigMaps with this label.
    assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "argocd"
    assert doc["data"] == expected()


def test_the_chart_values_embed_exactly_the_lua_files() -> None:
    doc = yaml.safe_load((FOLDER / "argo-cd-values.yaml").read_text())
    assert doc == {"configs": {"cm": expected()}}


def test_the_snippets_are_what_the_generator_writes() -> None:
    module = generator()
    assert module.main(["--check"]) == 0, "run: python3 hack/argocd_health.py"


def test_the_checks_need_no_string_library() -> None:
    """Argo CD runs custom checks with the base, table and os libraries only, unless
    useOpenLibs is set for the kind: no string.*, no method calls on strings."""
    for kind in KINDS:
        code = (FOLDER / "health" / f"{kind}.lua").read_text()
        for banned in ("string.", ":find(", ":match(", ":sub(", ":format(", ":gsub("):
            assert banned not in code, f"{kind}.lua uses {banned}"
