"""What the controller imports is declared, and what is declared is what the locks pin."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "moonlander"
# Import name -> distribution name, where they differ.
DISTRIBUTIONS = {"yaml": "pyyaml", "prometheus_client": "prometheus-client"}


def _pins(lines: list[str]) -> dict[str, str]:
    pins = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, _, version = line.partition("==")
        assert version, f"not pinned exactly: {line!r}"
        pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def _declared() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return _pins(project["dependencies"])


def _imported() -> set[str]:
    """Top-level third-party modules imported anywhere in the runtime package."""
    found: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m != "moonlander"}


def test_every_imported_package_is_declared() -> None:
    declared = _declared()
    missing = {m for m in _imported() if DISTRIBUTIONS.get(m, m).replace("_", "-") not in declared}
    assert not missing, f"imported but not in pyproject.toml's dependencies: {sorted(missing)}"


def test_declared_pins_agree_with_both_locks() -> None:
    declared = _declared()
    for lock in ("requirements-runtime.lock", "requirements.lock"):
        pinned = _pins((ROOT / lock).read_text().splitlines())
        disagree = {
            name: (version, pinned.get(name))
            for name, version in declared.items()
            if pinned.get(name) != version
        }
        assert not disagree, f"{lock}: pyproject.toml pin vs lock: {disagree}"


def test_the_runtime_lock_is_within_the_full_lock() -> None:
    runtime = _pins((ROOT / "requirements-runtime.lock").read_text().splitlines())
    full = _pins((ROOT / "requirements.lock").read_text().splitlines())
    assert {n: v for n, v in runtime.items() if full.get(n) != v} == {}
    assert "kopf" not in runtime
