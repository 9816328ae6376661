"""The LandingSet kind: one Landing per matching source Secret, from a template (pure).

A LandingSet in namespace N selects Secrets of N (a name pattern with captures and/or
labels), or Cluster API Clusters of N (their ``<cluster>-kubeconfig`` Secrets), and stamps one
Landing per source into N from its template. The substitution
language is deliberately small: ``{{variable}}`` inside string values, where the variables
are ``secret`` (the matched Secret's name), ``set`` (the LandingSet's name) and the pattern's
captures (``cluster``, the Cluster's name, for Cluster API). No expressions, no functions,
no escaping.

The name pattern is not a regular expression: ``kubernetes-{{tenant}}-admin-kubeconfig``
matches literally around its captures. Patterns are written by tenants and matched against
names tenants choose; a backtracking regex engine would let one tenant stall the controller
(ReDoS). Matching here is a handful of ``str.find`` calls.

Generated Landings are ordinary Landings of N: parsed, authorized and admitted exactly like
hand-written ones, so a set can never give its namespace more than a Landing could.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from moonlander.api.landing import OBSERVED_GENERATION, Condition
from moonlander.api.types import _Spec, _Status, doc

KIND = "LandingSet"
PLURAL = "landingsets"
# Generated Landings carry this label (the set's name) and an ownerReference to the set.
SET_LABEL = "moons.kingdon.ci/landingset"
MAX_CAPTURES = 4

_VARIABLE = re.compile(r"\{\{\s*([a-z][a-zA-Z0-9]{0,30})\s*\}\}")
_BUILTINS = ("secret", "set")
# The template fields that decide what a generated Landing binds in this cluster: literal,
# so that the template the webhook checks against the set's author is exactly what every
# generated Landing binds (a variable would let a Secret's name choose the role).
BINDING_FIELDS = (
    "direction",
    "serviceAccount.namespace",
    "serviceAccount.clusterRole",
    "serviceAccount.roles",
    "serviceAccount.rules",
    "serviceAccount.rulesNamespaces",
)
_LabelValue = Annotated[str, Meta(max_length=63)]
_Template = Annotated[str, Meta(min_length=1, max_length=253)]


class SecretGenerator(_Spec, frozen=True, kw_only=True):
    """Secrets of the LandingSet's namespace: those whose name matches namePattern and whose
    labels include every entry of matchLabels. Secrets Moonlander wrote are never matched."""

    cel_rules = (
        {
            "rule": "has(self.namePattern)"
            " || (has(self.matchLabels) && size(self.matchLabels) > 0)",
            "message": "secrets selects nothing; set namePattern or matchLabels",
        },
    )

    name_pattern: (
        Annotated[
            str,
            Meta(min_length=1, max_length=253, pattern=r"^[a-z0-9.{}-]+$"),
            doc(
                """A Secret name with captures: kubernetes-{{tenant}}-admin-kubeconfig
                matches kubernetes-acme-admin-kubeconfig with tenant=acme. Literal text
                around each capture; captures are non-empty and must be separated by text."""
            ),
        ]
        | None
    ) = None
    match_labels: Annotated[
        dict[str, _LabelValue],
        doc("Secrets whose labels include all of these.", maxProperties=32),
    ] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name_pattern is None and not self.match_labels:
            raise ValueError("selects nothing; set namePattern or matchLabels")
        if self.name_pattern is not None:
            NamePattern.compile(self.name_pattern)

    @property
    def captures(self) -> tuple[str, ...]:
        return compiled_pattern(self.name_pattern).captures if self.name_pattern else ()

    def match(self, name: str, labels: Mapping[str, str]) -> dict[str, str] | None:
        """The captured values when the Secret matches, else None."""
        if any(labels.get(k) != v for k, v in self.match_labels.items()):
            return None
        if self.name_pattern is None:
            return {}
        return compiled_pattern(self.name_pattern).match(name)


class ClusterAPIGenerator(_Spec, frozen=True, kw_only=True):
    """Cluster API Clusters (cluster.x-k8s.io) of the LandingSet's namespace whose labels
    include every entry of matchLabels; each one's kubeconfig Secret, <cluster>-kubeconfig
    (key value), is the source. Variable {{cluster}} is the Cluster's name."""

    match_labels: Annotated[
        dict[str, _LabelValue],
        doc("Clusters whose labels include all of these (empty: every Cluster).", maxProperties=32),
    ] = msgspec.field(default_factory=dict)

    def match(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.match_labels.items())


class ClusterProfileGenerator(_Spec, frozen=True, kw_only=True):
    """ClusterProfiles (multicluster.x-k8s.io, SIG Multicluster's Cluster Inventory API) of
    the LandingSet's namespace whose labels include every entry of matchLabels; each is the
    source of one Landing (clusterProfileName): its secretreader access provider's server
    and CA, and the token of the Secret of this namespace its clusterName names. Profiles
    Moonlander wrote are never matched. Variable {{profile}} is the ClusterProfile's name."""

    match_labels: Annotated[
        dict[str, _LabelValue],
        doc(
            """ClusterProfiles whose labels include all of these (empty: every one), e.g.
            x-k8s.io/cluster-manager: open-cluster-management.""",
            maxProperties=32,
        ),
    ] = msgspec.field(default_factory=dict)

    def match(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.match_labels.items())


class Generator(_Spec, frozen=True, kw_only=True):
    """One source of Landings: Secrets, Cluster API Clusters or ClusterProfiles (exactly
    one)."""

    cel_rules = (
        {
            "rule": "[has(self.secrets), has(self.clusterAPI), has(self.clusterProfiles)]"
            ".filter(x, x).size() == 1",
            "message": "set exactly one of secrets, clusterAPI and clusterProfiles",
        },
    )

    secrets: Annotated[SecretGenerator, doc("Secrets of the LandingSet's namespace.")] | None = None
    cluster_api: (
        Annotated[ClusterAPIGenerator, doc("Cluster API Clusters of the LandingSet's namespace.")]
        | None
    ) = msgspec.field(default=None, name="clusterAPI")
    cluster_profiles: (
        Annotated[ClusterProfileGenerator, doc("ClusterProfiles of the LandingSet's namespace.")]
        | None
    ) = None

    def __post_init__(self) -> None:
        chosen = (self.secrets, self.cluster_api, self.cluster_profiles)
        if sum(g is not None for g in chosen) != 1:
            raise ValueError("set exactly one of secrets, clusterAPI and clusterProfiles")

    @property
    def variables(self) -> tuple[str, ...]:
        if self.secrets is not None:
            return self.secrets.captures
        if self.cluster_profiles is not None:
            return ("profile",)
        return ("cluster",)


class TemplateMetadata(_Spec, frozen=True, kw_only=True):
    """Name and labels of each generated Landing (variables allowed)."""

    name: Annotated[_Template, doc("The generated Landing's name. Default {{set}}-{{secret}}.")] = (
        "{{set}}-{{secret}}"
    )
    labels: Annotated[dict[str, _LabelValue], doc("Extra labels.", maxProperties=32)] = (
        msgspec.field(default_factory=dict)
    )
    annotations: Annotated[
        dict[str, Annotated[str, Meta(max_length=4096)]],
        doc("Extra annotations.", maxProperties=32),
    ] = msgspec.field(default_factory=dict)


class LandingTemplate(_Spec, frozen=True, kw_only=True):
    """The Landing each matched Secret gets."""

    metadata: Annotated[TemplateMetadata, doc("Name and labels.")] = msgspec.field(
        default_factory=TemplateMetadata
    )
    spec: Annotated[
        dict[str, Any],
        doc(
            """A Landing spec; string values may use {{secret}}, {{set}} and the pattern's
            captures, except those that decide bindings (direction; serviceAccount's
            namespace, clusterRole, roles, rules and rulesNamespaces). kubeconfigSecretName
            defaults to the matched Secret. Checked as a Landing spec when the LandingSet is
            admitted and for each generated Landing."""
        ),
    ] = msgspec.field(default_factory=dict)


class LandingSetSpec(_Spec, frozen=True, kw_only=True):
    """Which Secrets get a Landing, and what that Landing says."""

    generators: Annotated[
        tuple[Generator, ...],
        Meta(min_length=1, max_length=8),
        doc("Where the Landings come from; a Secret matched by several gets one Landing."),
    ]
    template: Annotated[LandingTemplate, doc("The generated Landings.")]

    def __post_init__(self) -> None:
        known = {*_BUILTINS}
        for g in self.generators:
            known.update(g.variables)
        for path, text in _strings(self.template.metadata.name, "template.metadata.name"):
            _check_variables(path, text, known)
        for key, value in self.template.metadata.labels.items():
            _check_variables(f"template.metadata.labels.{key}", value, known)
        for path, text in _strings(self.template.spec, "template.spec"):
            _check_variables(path, text, known)
            if _VARIABLE.search(text) and _decides_bindings(path.removeprefix("template.spec.")):
                raise ValueError(
                    f"{path}: takes no variables: it decides what every generated Landing "
                    "binds, and is checked against the set's author as written"
                )


class LandingSetStatus(_Status, frozen=True, kw_only=True):
    """How many Landings the set wants and how they fare."""

    observed_generation: Annotated[int, Meta(ge=0), doc(OBSERVED_GENERATION)] | None = 0
    desired: Annotated[int, doc("Landings the set generates.")] = 0
    ready: Annotated[int, doc("Of those, Ready.")] = 0
    failing: Annotated[int, doc("Of those, not Ready with a reason, or not generated.")] = 0
    failing_landings: Annotated[
        tuple[Annotated[str, Meta(max_length=400)], ...],
        Meta(max_length=20),
        doc("Up to 20 failing ones: 'name: reason'."),
    ] = ()
    conditions: Annotated[
        tuple[Condition, ...],
        doc(
            """Ready (AllReady when every Landing is), and beside a False one Reconciling
            (Landings still being landed or retrying) or Stalled (the spec is invalid, or a
            Landing or Secret fails for a reason only a human can fix)."""
        ),
    ] = ()


class LandingSet(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    namespace: str
    uid: str
    generation: int | None
    spec: LandingSetSpec

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


# -- the small languages ---------------------------------------------------------------------


class NamePattern(msgspec.Struct, frozen=True):
    """``lit0{{a}}lit1{{b}}lit2``: literals around non-empty captures, matched left to right
    (each capture ends at the first occurrence of the literal after it)."""

    literals: tuple[str, ...]
    captures: tuple[str, ...]

    @classmethod
    def compile(cls, text: str) -> NamePattern:
        literals, captures, pos = [], [], 0
        for found in _VARIABLE.finditer(text):
            literals.append(text[pos : found.start()])
            captures.append(found[1])
            pos = found.end()
        literals.append(text[pos:])
        if any("{" in lit or "}" in lit for lit in literals):
            raise ValueError("captures are written {{name}}: letters and digits, a letter first")
        if len(captures) > MAX_CAPTURES:
            raise ValueError(f"at most {MAX_CAPTURES} captures")
        if len(set(captures)) != len(captures):
            raise ValueError("a capture name is used twice")
        if any(c in _BUILTINS for c in captures):
            raise ValueError(f"{', '.join(_BUILTINS)} are set by Moonlander; name captures else")
        if any(not lit for lit in literals[1:-1]):
            raise ValueError("two captures need text between them")
        return cls(tuple(literals), tuple(captures))

    def match(self, name: str) -> dict[str, str] | None:
        if not self.captures:
            return {} if name == self.literals[0] else None
        first, *middle, last = self.literals
        if len(name) < len(first) + len(last):
            return None
        if not name.startswith(first) or not name.endswith(last):
            return None
        rest = name[len(first) : len(name) - len(last)]
        values: dict[str, str] = {}
        for capture, literal in zip(self.captures[:-1], middle, strict=True):
            at = rest.find(literal, 1)
            if at < 0:
                return None
            values[capture], rest = rest[:at], rest[at + len(literal) :]
        values[self.captures[-1]] = rest
        return values if all(values.values()) else None


@functools.lru_cache(maxsize=1024)
def compiled_pattern(text: str) -> NamePattern:
    """``NamePattern.compile``, once per text: a set matches its pattern against every Secret
    of its namespace each time it looks."""
    return NamePattern.compile(text)


def _strings(value: Any, path: str) -> list[tuple[str, str]]:
    """Every string in ``value`` (dicts and lists walked) with its field path."""
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, Mapping):
        return [p for k, v in value.items() for p in _strings(v, f"{path}.{k}")]
    if isinstance(value, list | tuple):
        return [p for i, v in enumerate(value) for p in _strings(v, f"{path}[{i}]")]
    return []


def _decides_bindings(path: str) -> bool:
    return any(
        path == field or path.startswith((f"{field}.", f"{field}[")) for field in BINDING_FIELDS
    )


def _check_variables(path: str, text: str, known: set[str]) -> None:
    for name in _VARIABLE.findall(text):
        if name not in known:
            raise ValueError(
                f"{path}: unknown variable {{{{{name}}}}}; known: {', '.join(sorted(known))}"
            )
    if "{{" in _VARIABLE.sub("", text) or "}}" in _VARIABLE.sub("", text):
        raise ValueError(f"{path}: variables are written {{{{name}}}}")


def substitute(value: Any, variables: Mapping[str, str]) -> Any:
    """``value`` with every ``{{variable}}`` in its strings replaced (dicts, lists walked)."""
    if isinstance(value, str):
        return _VARIABLE.sub(lambda m: variables[m[1]], value)
    if isinstance(value, Mapping):
        return {k: substitute(v, variables) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [substitute(v, variables) for v in value]
    return value


SAMPLE_VALUE = "x"  # what each variable becomes when a template is checked at admission
