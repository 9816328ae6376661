"""The package layout is the architecture: each layer imports only from the layers below it,
and the pure layers import no Kubernetes or HTTP client (docs/architecture.md, "Packages")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "moonlander"
DEVTOOLS = ROOT / "devtools" / "src" / "moonlander_dev"

# Bottom to top; a module may import its own layer and those before it.
LAYERS = ("api", "credentials", "kube", "minting", "controller", "serve", "operator", "cli")
# The development tooling (devtools/, its own distribution) may use these of the runtime.
DEVTOOLS_USES = {"credentials", "cli"}
PURE = ("api", "credentials")
CLIENTS = ("lightkube", "httpx2", "httpcore2", "aiohttp")


def _layer(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0].removesuffix(".py")


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, as dotted names (``from moonlander import api`` gives
    ``moonlander.api``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            if node.module == "moonlander":
                found.update(f"moonlander.{alias.name}" for alias in node.names)
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE or p.name == "operator.py")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_follow_the_layers(path: Path) -> None:
    layer = _layer(path)
    allowed = set(LAYERS[: LAYERS.index(layer) + 1])
    imports = _imports(path)
    used = {
        name.split(".")[1]
        for name in imports
        if name.startswith("moonlander.") and name.split(".")[1] != "__version__"
    }
    assert used <= allowed, f"{layer} may not import {sorted(used - allowed)}"
    # What ships is the controller: development tooling is never imported by it.
    assert not {n for n in imports if n.split(".")[0] == "moonlander_dev"}, path.name


@pytest.mark.parametrize(
    "path", sorted(DEVTOOLS.rglob("*.py")), ids=lambda p: str(p.relative_to(DEVTOOLS))
)
def test_devtools_use_only_the_runtime_edges(path: Path) -> None:
    used = {n.split(".")[1] for n in _imports(path) if n.startswith("moonlander.")}
    assert used <= DEVTOOLS_USES, f"{path.name} imports {sorted(used - DEVTOOLS_USES)}"


@pytest.mark.parametrize(
    "path",
    [p for p in MODULES if _layer(p) in PURE],
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_pure_layers_import_no_client(path: Path) -> None:
    clients = {n for n in _imports(path) if n.split(".")[0] in CLIENTS}
    assert not clients, f"{path.name} imports {sorted(clients)}"


def test_every_package_is_placed() -> None:
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages == set(LAYERS) - {"operator"}
