"""Every field of every CRD is described, so ``kubectl explain`` answers for all of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

BASES = Path(__file__).parents[3] / "config" / "crd" / "bases"
_OBJECT_META = {"apiVersion", "kind", "metadata"}  # described by Kubernetes itself


def undescribed(node: dict[str, Any], path: str = "") -> list[str]:
    """The property paths under ``node`` without a description."""
    missing: list[str] = []
    for name, prop in (node.get("properties") or {}).items():
        if not path and name in _OBJECT_META:
            continue
        where = f"{path}.{name}"
        if not prop.get("description"):
            missing.append(where)
        missing += undescribed(prop, where)
    if isinstance(node.get("items"), dict):
        missing += undescribed(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        missing += undescribed(node["additionalProperties"], f"{path}{{}}")
    return missing


def _schemas() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(BASES.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        for version in crd["spec"]["versions"]:
            found.append((f"{path.name}:{version['name']}", version["schema"]["openAPIV3Schema"]))
    return found


def test_the_walk_finds_every_kind() -> None:
    assert len(_schemas()) == 3


@pytest.mark.parametrize(("name", "schema"), _schemas(), ids=[n for n, _ in _schemas()])
def test_every_property_has_a_description(name: str, schema: dict[str, Any]) -> None:
    assert undescribed(schema) == [], f"{name}: fields without a description"


def test_the_walk_sees_nested_and_array_fields() -> None:
    schema = {
        "properties": {
            "metadata": {"type": "object"},
            "spec": {
                "description": "d",
                "properties": {
                    "list": {
                        "description": "d",
                        "items": {"properties": {"x": {"type": "string"}}},
                    }
                },
            },
        }
    }
    assert undescribed(schema) == [".spec.list[].x"]


def test_condition_reasons_are_listed() -> None:
    from moonlander.api.reasons import PolicyReason, Reason, SetReason

    text = (BASES / "moons.kingdon.ci_landings.yaml").read_text()
    crd = yaml.safe_load(text)
    status = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    reason = status["properties"]["conditions"]["items"]["properties"]["reason"]
    for member in (*Reason, *SetReason, *PolicyReason):
        assert member.value in reason["description"]
