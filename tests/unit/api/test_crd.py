"""The CRDs in config/crd/bases are what the models generate, and schema and models agree
field for field, default for default."""

from __future__ import annotations

import enum
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from msgspec import inspect

from moonlander.api import crd

ROOT = Path(__file__).resolve().parents[3]
BASES = ROOT / "config" / "crd" / "bases"


def _ids(kind: crd.Kind) -> str:
    return kind.kind


@pytest.mark.parametrize("kind", crd.KINDS, ids=_ids)
def test_committed_crd_is_generated_from_the_models(kind: crd.Kind) -> None:
    path = BASES / kind.file_name
    assert path.is_file(), f"{path.relative_to(ROOT)} is missing: run `make manifests`"
    assert path.read_text() == crd.render(kind), (
        f"{path.relative_to(ROOT)} differs from what src/moonlander/api generates: "
        "run `make manifests` and commit the result"
    )


def _bare(t: inspect.Type) -> inspect.Type:
    """``t`` without its metadata and without ``| None``."""
    while True:
        if isinstance(t, inspect.Metadata):
            t = t.type
        elif isinstance(t, inspect.UnionType):
            members = [m for m in t.types if not isinstance(m, inspect.NoneType)]
            assert len(members) == 1, f"not an optional type: {t}"
            t = members[0]
        else:
            return t


def _walk(
    t: inspect.Type, schema: dict[str, Any], path: str
) -> Iterator[tuple[str, inspect.StructType, dict[str, Any]]]:
    """Every struct reachable from ``t``, with the schema node that describes it."""
    t = _bare(t)
    if isinstance(t, inspect.StructType):
        assert schema.get("type") == "object", path
        yield path, t, schema
        properties = schema.get("properties", {})
        for field in t.fields:
            if field.encode_name in properties:
                yield from _walk(
                    field.type, properties[field.encode_name], f"{path}.{field.encode_name}"
                )
    elif isinstance(t, inspect.VarTupleType | inspect.ListType):
        assert schema.get("type") == "array", path
        yield from _walk(t.item_type, schema["items"], f"{path}[]")
    elif isinstance(t, inspect.DictType) and isinstance(t.value_type, inspect.AnyType):
        # Free-form (a LandingSet's template spec): the controller checks it, not the schema.
        assert schema.get("type") == "object", path
        assert schema.get("x-kubernetes-preserve-unknown-fields") is True, path
        assert "properties" not in schema and "additionalProperties" not in schema, path
    elif isinstance(t, inspect.DictType):
        assert schema.get("type") == "object", path
        assert "properties" not in schema, f"{path}: a map has no fixed properties"
        yield from _walk(t.value_type, schema["additionalProperties"], f"{path}[*]")
    else:
        assert "properties" not in schema and "items" not in schema, (
            f"{path}: the schema has structure the model ({t}) lacks"
        )


def _structs(kind: crd.Kind) -> list[tuple[str, inspect.StructType, dict[str, Any]]]:
    root = crd.crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    found: list[tuple[str, inspect.StructType, dict[str, Any]]] = []
    for part, model in (("spec", kind.spec), ("status", kind.status)):
        found.extend(_walk(inspect.type_info(model), root[part], part))
    return found


def _cases() -> list[Any]:
    return [
        pytest.param(kind, path, struct, schema, id=f"{kind.kind}:{path}")
        for kind in crd.KINDS
        for path, struct, schema in _structs(kind)
    ]


@pytest.mark.parametrize(("kind", "path", "struct", "schema"), _cases())
def test_schema_and_model_have_the_same_fields(
    kind: crd.Kind, path: str, struct: inspect.StructType, schema: dict[str, Any]
) -> None:
    model_fields = {f.encode_name for f in struct.fields}
    schema_fields = set(schema.get("properties", {}))
    assert model_fields - schema_fields == set(), f"{path}: in the model, not in the schema"
    assert schema_fields - model_fields == set(), f"{path}: in the schema, not in the model"
    required = {f.encode_name for f in struct.fields if f.required}
    assert set(schema.get("required", [])) == required, path


def _wire(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [_wire(v) for v in value]
    return value


@pytest.mark.parametrize(("kind", "path", "struct", "schema"), _cases())
def test_static_model_defaults_are_the_schema_defaults(
    kind: crd.Kind, path: str, struct: inspect.StructType, schema: dict[str, Any]
) -> None:
    for field in struct.fields:
        prop = schema.get("properties", {}).get(field.encode_name)
        if prop is None:
            continue  # test_schema_and_model_have_the_same_fields says so
        where = f"{path}.{field.encode_name}"
        # A default_factory builds a fresh object each time (an empty map, a struct whose
        # own fields carry the defaults): no schema default stands for it.
        if field.default_factory is not msgspec.NODEFAULT:
            assert "default" not in prop, f"{where}: a schema default the model does not have"
            continue
        # None: a default that depends on the object (applied by api.parse); "" and ():
        # nothing, which the API server's pruning gives without a default.
        if field.default is msgspec.NODEFAULT or field.default in (None, "", ()):
            assert "default" not in prop, f"{where}: a schema default the model does not have"
            continue
        assert "default" in prop, f"{where}: the model defaults to {field.default!r}"
        assert prop["default"] == _wire(field.default), where
