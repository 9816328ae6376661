"""The edge: a Landing as the API server delivers it becomes typed models, once (pure).

Watch events (``controller``) and admission requests (``admission``) call
:func:`parse_landing` / :func:`parse_spec`; nothing downstream reads the raw object. The
CRD's schema has usually checked shapes already, but objects stored before a schema change
(or without the CRD's rules) may differ, so everything is checked again here and the first
problem is reported with its field path (``spec.serviceAccount.roles[0].name: ...``).

``null`` and ``""`` in a spec field mean "not set", as the seed's implementation read them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgspec

from moonlander.api.landing import (
    LandedStatus,
    LandingSpec,
    LandingStatus,
)
from moonlander.api.landingset import LandingSet, LandingSetSpec
from moonlander.api.names import (
    DEFAULT_WRITE_NAME,
    DNS_LABEL_PATTERN,
    DNS_SUBDOMAIN_PATTERN,
    default_source_name,
    owner_value,
)
from moonlander.api.output import (
    ArgoCDSpec,
    OutputSpec,
)
from moonlander.api.policy import LandingPolicy, LandingPolicySpec
from moonlander.api.serviceaccount import (
    ServiceAccountSpec,
)
from moonlander.api.types import (
    OutputFormat,
)

_MAX_MESSAGE = 300
_PATH = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_UNKNOWN_FIELD = re.compile(r"unknown field `(?P<name>.*)`", re.DOTALL)
# What a name pattern means, for messages a user can act on.
_PATTERN_NAMES = {
    DNS_LABEL_PATTERN: "a DNS label (lower case letters, digits and '-', at most 63)",
    DNS_SUBDOMAIN_PATTERN: "a DNS subdomain (lower case letters, digits, '-' and '.')",
}
_REGEX = re.compile(r"Expected `str` matching regex '(?P<pattern>.*)'", re.DOTALL)
_MEMBER = re.compile(r"(?P<field>[a-z][A-Za-z]*): (?P<problem>.*)", re.DOTALL)
_SHOWABLE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,40}")


class SpecError(ValueError):
    """The Landing's spec cannot be used as written; the message names the field."""

    # The object's metadata.generation, where the caller knows it (a LandingSet's status).
    generation: int | None = None

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}" if field else problem)
        self.field = field
        self.problem = problem


def _spec_error(err: msgspec.ValidationError, root: str) -> SpecError:
    text = str(err)
    path = ""
    found = _PATH.search(text)
    if found:
        path, text = found["path"], text[: found.start()]
    # A field name is user input: a token pasted as a key must not be echoed.
    unknown = _UNKNOWN_FIELD.search(text)
    if unknown:
        name = unknown["name"]
        shown = name if _SHOWABLE_NAME.fullmatch(name) else "(name not shown)"
        text = f"unknown field {shown}"
    regex = _REGEX.fullmatch(text)
    if regex:
        pattern = regex["pattern"].encode().decode("unicode_escape")
        text = f"must be {_PATTERN_NAMES.get(pattern, 'a string matching ' + pattern)}"
    # Checks of the models name a member of the object they check: "server: must be ...".
    member = _MEMBER.match(text)
    if member:
        path, text = f"{path}.{member['field']}", member["problem"]
    if len(text) > _MAX_MESSAGE:
        text = text[:_MAX_MESSAGE] + "..."
    return SpecError(root + path, text)


# Maps of user-chosen keys: their members are values, not fields, and are kept as given
# (an empty label value is a value; null is read as empty).
_FREE_FORM = frozenset({"labels"})


def _unset_removed(value: Any) -> Any:
    """``value`` with null and empty-string fields removed (they mean "not set"),
    recursively through objects and lists of objects."""
    if isinstance(value, list):
        return [_unset_removed(v) for v in value]
    if not isinstance(value, Mapping):
        return value
    out = {}
    for key, member in value.items():
        if member is None or member == "":
            continue
        if key in _FREE_FORM and isinstance(member, Mapping):
            out[key] = {k: "" if v is None else v for k, v in member.items()}
        else:
            out[key] = _unset_removed(member)
    return out


def parse_spec(raw: Mapping[str, Any] | None, *, name: str) -> LandingSpec:
    """A Landing's spec as the typed model, with every default applied that does not depend
    on the namespace. Raises :class:`SpecError` naming the first problem's field."""
    cleaned = _unset_removed(raw or {})
    try:
        spec = msgspec.convert(cleaned, LandingSpec, strict=True)
    except msgspec.ValidationError as err:
        raise _spec_error(err, "spec") from None
    if spec.output.format is OutputFormat.ARGOCD:
        argocd = spec.output.argocd or ArgoCDSpec()
        if argocd.name is None:
            argocd = msgspec.structs.replace(argocd, name=name)
        spec = msgspec.structs.replace(
            spec, output=msgspec.structs.replace(spec.output, argocd=argocd)
        )
    return spec


def parse_status(raw: Mapping[str, Any] | None) -> LandingStatus:
    """The status Moonlander wrote; anything unreadable counts as no status."""
    try:
        return msgspec.convert(dict(raw or {}), LandingStatus, strict=False)
    except msgspec.ValidationError:
        return LandingStatus()


class ObjectMeta(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """What the controller reads of a Landing's metadata."""

    name: str
    namespace: str
    uid: str = ""
    resource_version: str = ""
    generation: int | None = None
    deletion_timestamp: str | None = None
    finalizers: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """``namespace/name``: the work-queue key and the owner mark of what it writes."""
        return owner_value(self.namespace, self.name)


class Landing(msgspec.Struct, frozen=True, kw_only=True):
    """A Landing whose spec is valid, with the seed's name-dependent defaults resolved."""

    metadata: ObjectMeta
    spec: LandingSpec
    status: LandingStatus = LandingStatus()

    @property
    def key(self) -> str:
        return self.metadata.key

    @property
    def source_name(self) -> str:
        return self.spec.kubeconfig_secret_name or default_source_name(self.metadata.name)

    @property
    def source_namespace(self) -> str:
        return self.spec.kubeconfig_secret_namespace or self.metadata.namespace

    @property
    def source_ref(self) -> tuple[str, str]:
        return (self.source_namespace, self.source_name)

    @property
    def write_name(self) -> str:
        return self.spec.write_kubeconfig_secret_name or DEFAULT_WRITE_NAME

    @property
    def target_namespace(self) -> str:
        return self.spec.target_namespace or self.metadata.namespace

    @property
    def target(self) -> str:
        return f"{self.target_namespace}/{self.write_name}"

    @property
    def output(self) -> OutputSpec:
        return self.spec.output

    @property
    def cluster_profile_name(self) -> str | None:
        """The ClusterProfile (and token Secret) name, when output.clusterProfile is set."""
        spec = self.spec.output.cluster_profile
        return None if spec is None else spec.name or self.metadata.name

    @property
    def landed(self) -> LandedStatus | None:
        """What the status says was landed last, if anything."""
        landed = self.status.landed
        return landed if landed is not None and landed.name else None


class InvalidLanding(msgspec.Struct, frozen=True, kw_only=True):
    """A Landing whose spec cannot be used; ``error`` says which field and why."""

    metadata: ObjectMeta
    error: SpecError
    status: LandingStatus = LandingStatus()

    @property
    def key(self) -> str:
        return self.metadata.key


def parse_landing(body: Mapping[str, Any]) -> Landing | InvalidLanding:
    """A watched Landing as typed models. Metadata comes from the API server and is
    trusted; the spec is checked, and a bad one gives an :class:`InvalidLanding`."""
    metadata = msgspec.convert(body["metadata"], ObjectMeta, strict=False)
    status = parse_status(body.get("status"))
    try:
        spec = parse_spec(body.get("spec"), name=metadata.name)
    except SpecError as err:
        return InvalidLanding(metadata=metadata, error=err, status=status)
    return Landing(metadata=metadata, spec=spec, status=status)


def parse_service_account(raw: Mapping[str, Any]) -> ServiceAccountSpec:
    """A ``serviceAccount`` spec on its own (``moonlander mint`` builds one from flags)."""
    try:
        return msgspec.convert(_unset_removed(raw), ServiceAccountSpec, strict=True)
    except msgspec.ValidationError as err:
        raise _spec_error(err, "serviceAccount") from None


ParsedLanding = Landing | InvalidLanding
"""What the edge produces for every watched Landing."""


def parse_policy(body: Mapping[str, Any]) -> LandingPolicy:
    """A watched LandingPolicy as its typed model; raises :class:`SpecError` when its spec
    cannot be used (such a policy grants nothing)."""
    meta = body.get("metadata") or {}
    try:
        spec = msgspec.convert(
            _unset_removed(body.get("spec") or {}), LandingPolicySpec, strict=True
        )
    except msgspec.ValidationError as err:
        raise _spec_error(err, "spec") from None
    return LandingPolicy(
        name=str(meta.get("name", "")), spec=spec, generation=meta.get("generation")
    )


def parse_landingset(body: Mapping[str, Any]) -> LandingSet:
    """A watched or admitted LandingSet as its typed model; raises :class:`SpecError` naming
    the field when its spec cannot be used (such a set generates nothing)."""
    meta = body.get("metadata") or {}
    try:
        spec = msgspec.convert(_unset_removed(body.get("spec") or {}), LandingSetSpec, strict=True)
    except msgspec.ValidationError as err:
        error = _spec_error(err, "spec")
        error.generation = meta.get("generation")
        raise error from None
    return LandingSet(
        name=str(meta.get("name", "")),
        namespace=str(meta.get("namespace", "")),
        uid=str(meta.get("uid", "")),
        generation=meta.get("generation"),
        spec=spec,
    )
