"""Fixtures of the credentials tests."""

from __future__ import annotations

import pytest
import yaml

from moonlander.credentials import yamlsafe

from ...support.kubeconfigs import PKI, _pki


@pytest.fixture(scope="module")
def pki() -> PKI:
    return _pki()


@pytest.fixture(params=["SafeLoader", "CSafeLoader"])
def yaml_loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run table tests with both the pure-Python and the libyaml parser: they must agree."""
    name: str = request.param
    loader = getattr(yaml, name, None)
    # The pinned PyYAML wheels ship libyaml; without it parsing and rendering are slow.
    assert loader is not None, f"PyYAML was installed without {name}"
    monkeypatch.setattr(yamlsafe, "_LOADER", loader)
    return name
