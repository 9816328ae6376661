"""What a LandingSet wants, and what must change to get there (pure; no I/O).

``generate`` turns a set and the Secrets of its namespace into the Landings it wants (each
checked as a Landing spec, exactly as a hand-written one), ``plan`` compares them with the
Landings that exist, and ``summarize`` counts how they fare for the set's status.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from moonlander import api
from moonlander.api.landingset import SET_LABEL, LandingSet, LandingSetStatus, substitute
from moonlander.api.names import DNS_SUBDOMAIN_PATTERN
from moonlander.api.reasons import STALLED_REASONS, Reason, SetReason
from moonlander.controller.conditions import kstatus_conditions

_NAME = re.compile(DNS_SUBDOMAIN_PATTERN)


@dataclass(frozen=True)
class Wanted:
    """One Landing the set wants: its name, the Secret it comes from, and its body."""

    name: str
    secret: str
    labels: dict[str, str]
    annotations: dict[str, str]
    spec: dict[str, Any]
    # The spec as checked when generated: what an existing Landing's spec is compared with.
    parsed: api.LandingSpec | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Generated:
    wanted: dict[str, Wanted] = field(default_factory=dict)
    # Secret name -> why it gets no Landing (bad generated name or spec, a name collision).
    refused: dict[str, str] = field(default_factory=dict)


# Cluster API writes each Cluster's kubeconfig here (key value).
CAPI_SECRET_SUFFIX = "-kubeconfig"  # noqa: S105 - a name, not a secret
CAPI_SECRET_KEY = "value"  # noqa: S105 - a key name


@dataclass(frozen=True)
class Source:
    """A matched source: its Secret, the variables it gives, and defaults for the spec."""

    secret: str
    variables: dict[str, str]
    defaults: dict[str, str]


# A ClusterProfile source is named by this field of the generated spec, not by a Secret.
PROFILE_FIELD = "clusterProfileName"


def sources(
    landing_set: LandingSet,
    secrets: Mapping[str, Mapping[str, str]],
    clusters: Mapping[str, Mapping[str, str]] | None = None,
    profiles: Mapping[str, Mapping[str, str]] | None = None,
) -> list[Source]:
    """What the set's generators match, first generator first, each source once.
    ``secrets``, ``clusters`` (Cluster API) and ``profiles`` (ClusterProfiles) map names of
    the set's namespace to their labels."""
    found: dict[str, Source] = {}
    for generator in landing_set.spec.generators:
        if generator.secrets is not None:
            for secret in sorted(secrets):
                labels = secrets[secret]
                if labels.get(api.MANAGED_BY_LABEL) == api.MANAGED_BY:
                    continue  # never a Landing for what Moonlander itself wrote: no loops
                captures = generator.secrets.match(secret, labels)
                if captures is not None and secret not in found:
                    found[secret] = Source(secret, captures, {})
        elif generator.cluster_api is not None:
            for cluster in sorted(clusters or {}):
                secret = cluster + CAPI_SECRET_SUFFIX
                if generator.cluster_api.match((clusters or {})[cluster]) and secret not in found:
                    found[secret] = Source(
                        secret, {"cluster": cluster}, {"kubeconfigSecretKey": CAPI_SECRET_KEY}
                    )
        elif generator.cluster_profiles is not None:
            for profile in sorted(profiles or {}):
                labels = (profiles or {})[profile]
                if labels.get(api.MANAGED_BY_LABEL) == api.MANAGED_BY:
                    continue  # never a Landing for what Moonlander itself wrote: no loops
                if generator.cluster_profiles.match(labels) and profile not in found:
                    found[profile] = Source(profile, {"profile": profile}, {PROFILE_FIELD: profile})
    return list(found.values())


Stamp = Wanted | str
"""One source stamped through the template: the Landing it gives, or why it gives none."""

Memo = dict[tuple[Any, ...], Stamp]
"""Stamps by source, for one set at one generation (the caller drops it when either
changes): a set looks again at every event of its burst, and its sources mostly have not
changed since the last look."""


def generate(
    landing_set: LandingSet,
    secrets: Mapping[str, Mapping[str, str]],
    clusters: Mapping[str, Mapping[str, str]] | None = None,
    memo: Memo | None = None,
    profiles: Mapping[str, Mapping[str, str]] | None = None,
) -> Generated:
    """The Landings ``landing_set`` wants, from the Secrets (and Cluster API Clusters,
    ClusterProfiles) of its namespace, each name mapped to its labels."""
    out = Generated()
    for source in sources(landing_set, secrets, clusters, profiles):
        key = (
            source.secret,
            tuple(sorted(source.variables.items())),
            tuple(sorted(source.defaults.items())),
        )
        stamp = memo.get(key) if memo is not None else None
        if stamp is None:
            stamp = _stamp(landing_set, source)
            if memo is not None:
                memo[key] = stamp
        if isinstance(stamp, str):
            out.refused[source.secret] = stamp
        elif stamp.name in out.wanted:
            other = out.wanted[stamp.name].secret
            out.refused[source.secret] = (
                f"generated name {stamp.name} is already generated for Secret {other}"
            )
        else:
            out.wanted[stamp.name] = stamp
    return out


def _stamp(landing_set: LandingSet, source: Source) -> Stamp:
    template = landing_set.spec.template
    secret = source.secret
    variables = {**source.variables, "secret": secret, "set": landing_set.name}
    name = substitute(template.metadata.name, variables)
    if len(name) > 253 or not _NAME.fullmatch(name):
        return f"generated name {name!r} is not a DNS subdomain"
    spec = substitute(template.spec, variables)
    if PROFILE_FIELD not in source.defaults:
        spec.setdefault("kubeconfigSecretName", secret)
    for field_name, value in source.defaults.items():
        spec.setdefault(field_name, value)
    try:
        parsed = api.parse_spec(spec, name=name)
    except api.SpecError as err:
        return f"generated Landing {name}: {err}"
    return Wanted(
        name=name,
        secret=secret,
        labels={**substitute(template.metadata.labels, variables), SET_LABEL: landing_set.name},
        annotations=substitute(template.metadata.annotations, variables),
        spec=spec,
        parsed=parsed,
    )


def owned_by(body: Mapping[str, Any], landing_set: LandingSet) -> bool:
    """True when the Landing ``body`` was generated by this very set (label and owner uid)."""
    meta = body.get("metadata") or {}
    if (meta.get("labels") or {}).get(SET_LABEL) != landing_set.name:
        return False
    return any(ref.get("uid") == landing_set.uid for ref in meta.get("ownerReferences") or ())


@dataclass(frozen=True)
class Plan:
    create: list[Wanted]
    update: list[Wanted]
    delete: list[str]
    # Landing name -> why the set leaves it alone (someone else's Landing has that name).
    blocked: dict[str, str]


def plan(
    landing_set: LandingSet, generated: Generated, existing: Mapping[str, Mapping[str, Any]]
) -> Plan:
    """What to create, correct and delete; ``existing`` holds the Landings of the namespace
    that carry the set's label (name -> body)."""
    create, update, blocked = [], [], {}
    for name, wanted in generated.wanted.items():
        body = existing.get(name)
        if body is None:
            create.append(wanted)
        elif not owned_by(body, landing_set):
            blocked[name] = "a Landing of that name exists and was not generated by this set"
        elif _differs(body, wanted):
            update.append(wanted)
    delete = sorted(
        name
        for name, body in existing.items()
        if name not in generated.wanted and owned_by(body, landing_set)
    )
    return Plan(create=create, update=update, delete=delete, blocked=blocked)


def _differs(body: Mapping[str, Any], wanted: Wanted) -> bool:
    meta = body.get("metadata") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    return (
        not _same_spec(body.get("spec") or {}, wanted)
        or any(labels.get(k) != v for k, v in wanted.labels.items())
        or any(annotations.get(k) != v for k, v in wanted.annotations.items())
    )


def _same_spec(stored: Mapping[str, Any], wanted: Wanted) -> bool:
    # Compared as models: the API server fills in the CRD's defaults, which are the model's.
    try:
        parsed = wanted.parsed or api.parse_spec(wanted.spec, name=wanted.name)
        return api.parse_spec(stored, name=wanted.name) == parsed
    except api.SpecError:
        return False


def landing_body(landing_set: LandingSet, wanted: Wanted) -> dict[str, Any]:
    """The Landing object to create for ``wanted``, owned by the set."""
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "metadata": {
            "name": wanted.name,
            "namespace": landing_set.namespace,
            "labels": dict(wanted.labels),
            "annotations": dict(wanted.annotations),
            "ownerReferences": [owner_reference(landing_set)],
            # Set at creation: the Landing controller need not patch it in (one write less
            # per generated Landing); it removes it after revoking, as for any Landing.
            "finalizers": [api.FINALIZER],
        },
        "spec": wanted.spec,
    }


def owner_reference(landing_set: LandingSet) -> dict[str, Any]:
    return {
        "apiVersion": api.API_VERSION,
        "kind": "LandingSet",
        "name": landing_set.name,
        "uid": landing_set.uid,
        "controller": True,
    }


def summarize(
    landing_set: LandingSet,
    generated: Generated,
    planned: Plan,
    existing: Mapping[str, Mapping[str, Any]],
    problems: Sequence[str] = (),
) -> LandingSetStatus:
    """The set's status: desired, ready and failing counts and the failing ones' names;
    ``problems`` are the set's own (a generator's source kind not served, say)."""
    ready, failing = 0, list(problems)
    stalled = bool(problems)  # the set's own problems wait for a human
    for name in sorted(generated.wanted):
        if name in planned.blocked:
            failing.append(f"{name}: {planned.blocked[name]}")
            stalled = True
            continue
        condition = _ready_condition(existing.get(name))
        if condition is None:
            continue  # not reported on yet: neither ready nor failing
        if condition.get("status") == "True":
            ready += 1
        elif condition.get("reason") not in (None, "", Reason.PROGRESSING):
            failing.append(f"{name}: {condition.get('reason')}")
            stalled = stalled or condition.get("reason") in STALLED_REASONS
    failing += [f"Secret {secret}: {why}" for secret, why in sorted(generated.refused.items())]
    stalled = stalled or bool(generated.refused)
    desired = len(generated.wanted)
    if failing:
        state, reason = "False", SetReason.LANDINGS_FAILING.value
        message = f"{len(failing)} failing; first: {failing[0]}"
    elif ready == desired:
        state, reason = "True", SetReason.ALL_READY.value
        message = f"{ready} of {desired} Landings Ready"
    else:
        state, reason = "False", SetReason.PROGRESSING.value
        message = f"{ready} of {desired} Landings Ready"
    return LandingSetStatus(
        observed_generation=landing_set.generation,
        desired=desired,
        ready=ready,
        failing=len(failing),
        failing_landings=tuple(f[:400] for f in failing[:20]),
        # Failing only for reasons a retry may fix (a cluster down, a source not there yet):
        # Reconciling, as the Landings are; failing for good anywhere: Stalled.
        conditions=set_conditions(
            state, reason, message[:1024], stalled=stalled, generation=landing_set.generation
        ),
    )


def set_conditions(
    state: str, reason: str, message: str, *, stalled: bool, generation: int | None
) -> tuple[api.Condition, ...]:
    """A LandingSet's conditions: Ready, and Reconciling or Stalled beside a False one. No
    lastTransitionTime: the status is rewritten whole, and only when it changes."""
    return kstatus_conditions(
        (),
        ready=state,
        reason=reason,
        message=message,
        stalled=stalled,
        observed_generation=generation,
        now=None,
    )


def _ready_condition(body: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    if body is None:
        return None
    for condition in (body.get("status") or {}).get("conditions") or ():
        if condition.get("type") == "Ready":
            return condition  # type: ignore[no-any-return]
    return None
