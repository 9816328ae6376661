"""The CRDs, generated from the models in ``api`` (pure), as controller-gen does for Go types.

``python -m moonlander.api.crd DIR`` (``make manifests``) writes them to config/crd/bases;
tests/unit/api/test_crd.py fails when the files there differ from what the models generate,
so the schema the API server enforces and the models the controller parses cannot drift.
The chart and kustomize use those files (links, no copies).

Mapping: a struct is an object (its docstring the description, ``cel_rules`` its
``x-kubernetes-validations``); a field's ``Meta`` gives limits, pattern, description and,
through ``extra``, any other schema keyword verbatim; a static default becomes the schema's
``default`` (defaults that depend on the object, ``None``, are applied by ``api.parse``).
"""

from __future__ import annotations

import enum
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import yaml
from msgspec import inspect

from moonlander.api import landingset, policy
from moonlander.api.landing import (
    LandingSpec,
    LandingStatus,
)
from moonlander.api.names import GROUP, KIND, PLURAL, VERSION

_HEADER = (
    "# Generated from src/moonlander/api by `make manifests`; do not edit. The single source of\n"
    "# this CRD for config/ (kustomize) and charts/moonlander.\n"
)


def _describe(text: str | None) -> str | None:
    return " ".join(text.split()) if text else None


def _builtin(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [_builtin(v) for v in value]
    return value


def _limits(node: dict[str, Any], t: Any, names: tuple[str, str]) -> None:
    low, high = names
    if getattr(t, "min_length", None) is not None:
        node[low] = t.min_length
    if getattr(t, "max_length", None) is not None:
        node[high] = t.max_length


def schema_of(t: inspect.Type) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of one msgspec type."""
    if isinstance(t, inspect.Metadata):
        node = schema_of(t.type)
        described = _describe((t.extra_json_schema or {}).get("description"))
        if described:
            node = {"type": node.pop("type"), "description": described, **node}
        node.update(t.extra or {})
        return node
    if isinstance(t, inspect.UnionType):
        members = [m for m in t.types if not isinstance(m, inspect.NoneType)]
        if len(members) != 1:
            raise TypeError(f"only optional types are supported in CRDs: {t}")
        return schema_of(members[0])
    if isinstance(t, inspect.StrType):
        node = {"type": "string"}
        _limits(node, t, ("minLength", "maxLength"))
        if t.pattern is not None:
            node["pattern"] = t.pattern
        return node
    if isinstance(t, inspect.BoolType):
        return {"type": "boolean"}
    if isinstance(t, inspect.IntType | inspect.FloatType):
        node = {"type": "integer" if isinstance(t, inspect.IntType) else "number"}
        if t.ge is not None:
            node["minimum"] = t.ge
        if t.le is not None:
            node["maximum"] = t.le
        return node
    if isinstance(t, inspect.EnumType):
        return {"type": "string", "enum": [m.value for m in t.cls]}
    if isinstance(t, inspect.VarTupleType | inspect.ListType):
        node = {"type": "array"}
        _limits(node, t, ("minItems", "maxItems"))
        node["items"] = schema_of(t.item_type)
        return node
    if isinstance(t, inspect.DictType) and isinstance(t.value_type, inspect.AnyType):
        # Free-form (a LandingSet's template spec): checked by the controller, not the schema.
        return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    if isinstance(t, inspect.DictType):
        node = {"type": "object"}
        _limits(node, t, ("minProperties", "maxProperties"))
        node["additionalProperties"] = schema_of(t.value_type)
        return node
    if isinstance(t, inspect.StructType):
        return _struct(t)
    raise TypeError(f"no CRD schema for {t}")


def _struct(t: inspect.StructType) -> dict[str, Any]:
    node: dict[str, Any] = {"type": "object"}
    described = _describe(t.cls.__dict__.get("__doc__"))
    if described:
        node["description"] = described
    required = [f.encode_name for f in t.fields if f.required]
    if required:
        node["required"] = required
    properties: dict[str, Any] = {}
    for field in t.fields:
        prop = schema_of(field.type)
        # An empty default is no default; None marks one that depends on the object.
        if field.default is not msgspec.NODEFAULT and field.default not in (None, "", ()):
            prop["default"] = _builtin(field.default)
        properties[field.encode_name] = prop
    node["properties"] = properties
    rules = getattr(t.cls, "cel_rules", ())
    if rules:
        node["x-kubernetes-validations"] = [dict(r) for r in rules]
    return node


@dataclass(frozen=True)
class Kind:
    """One kind of the API and how kubectl shows it."""

    kind: str
    plural: str
    scope: str
    spec: type[msgspec.Struct]
    status: type[msgspec.Struct]
    description: str
    short_names: tuple[str, ...]
    columns: tuple[dict[str, Any], ...]

    @property
    def file_name(self) -> str:
        return f"{GROUP}_{self.plural}.yaml"


def _ready_columns(target: tuple[str, str] | None) -> tuple[dict[str, Any], ...]:
    ready = '.status.conditions[?(@.type=="Ready")]'
    columns: list[dict[str, Any]] = [
        {"name": "Ready", "type": "string", "jsonPath": f"{ready}.status"},
        {"name": "Reason", "type": "string", "jsonPath": f"{ready}.reason"},
    ]
    if target is not None:
        columns.append({"name": target[0], "type": "string", "jsonPath": target[1]})
    return tuple(columns)


LANDING = Kind(
    kind=KIND,
    plural=PLURAL,
    scope="Namespaced",
    spec=LandingSpec,
    status=LandingStatus,
    description=(
        "Landing lands access to one cluster as a kubeconfig Secret in a namespace of "
        "another cluster, and keeps it there: renewed, repaired and revoked on delete."
    ),
    short_names=("ld", "lnd"),
    columns=(
        *_ready_columns(("Target", ".status.target")),
        {"name": "Direction", "type": "string", "jsonPath": ".spec.direction", "priority": 1},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ),
)

LANDING_POLICY = Kind(
    kind=policy.KIND,
    plural=policy.PLURAL,
    scope="Cluster",
    spec=policy.LandingPolicySpec,
    status=policy.LandingPolicyStatus,
    description=(
        "LandingPolicy grants the Landings of the namespaces it selects what only the "
        "operator can give: the parent credential, minting bounded by role allow-lists, and "
        "writes into other namespaces. Without a policy a Landing gets none of these."
    ),
    short_names=("lp",),
    columns=(
        {"name": "Parent", "type": "boolean", "jsonPath": ".spec.parentCredential"},
        {"name": "Namespaces", "type": "string", "jsonPath": ".status.matchedNamespaces"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ),
)

LANDING_SET = Kind(
    kind=landingset.KIND,
    plural=landingset.PLURAL,
    scope="Namespaced",
    spec=landingset.LandingSetSpec,
    status=landingset.LandingSetStatus,
    description=(
        "LandingSet stamps one Landing per matching Secret of its namespace from a template "
        "and keeps the set true: new Secrets get a Landing, removed ones lose it, template "
        "edits reach every generated Landing, hand edits are reverted."
    ),
    short_names=("lds",),
    columns=(
        *_ready_columns(None),
        {"name": "Desired", "type": "integer", "jsonPath": ".status.desired"},
        {"name": "Landed", "type": "integer", "jsonPath": ".status.ready"},
        {"name": "Failing", "type": "integer", "jsonPath": ".status.failing"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ),
)

KINDS: tuple[Kind, ...] = (LANDING, LANDING_POLICY, LANDING_SET)


def crd(kind: Kind) -> dict[str, Any]:
    """The CustomResourceDefinition of ``kind``."""
    schema = {
        "type": "object",
        "description": kind.description,
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": schema_of(inspect.type_info(kind.spec)),
            # Defaulted (to observedGeneration 0, its fields' defaults) so that a new object
            # reads as not yet observed until the controller writes its status: what kstatus,
            # Flux and Argo CD wait on (docs/api.md, "Conditions").
            "status": {**schema_of(inspect.type_info(kind.status)), "default": {}},
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{kind.plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": kind.scope,
            "names": {
                "plural": kind.plural,
                "singular": kind.kind.lower(),
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "shortNames": list(kind.short_names),
                "categories": ["moonlander"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [dict(c) for c in kind.columns],
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def render(kind: Kind) -> str:
    """The CRD file's text, as committed in config/crd/bases."""
    body = yaml.safe_dump(crd(kind), sort_keys=False, width=100, allow_unicode=False)
    return _HEADER + body


def write(directory: Path) -> list[Path]:
    written = []
    for kind in KINDS:
        path = directory / kind.file_name
        path.write_text(render(kind))
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write(Path(sys.argv[1] if len(sys.argv) > 1 else "config/crd/bases")):
        print(path)
