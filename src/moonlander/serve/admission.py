"""Admission checks for Landings and LandingSets that the CRDs' CEL rules cannot express.

CEL sees one object; it cannot know the operator's server address policy. The validating
webhook (kopf's admission support, wired in operator.py) parses the spec as the controller
does (``api.parse_spec``) and rejects, at ``kubectl apply`` time, what the controller would
refuse later.

For a Landing that mints in this cluster (ParentToChild with ``spec.serviceAccount``), the
webhook also asks the API server, with SubjectAccessReviews, whether the *requesting user*
could bind each role the ServiceAccount would get (``bind`` on the role, as RBAC's own
escalation check allows; ``escalate`` for inline rules). Nothing is minted that its
author could not grant by RBAC themselves. This is defence in depth: the controller bounds
minting by LandingPolicy with or without the webhook.

Whether a source Secret in another namespace grants access is deliberately not judged
here: the answer would tell a tenant whether a Secret exists in a namespace it cannot
read. The controller reports both cases the same way (``CrossNamespaceNotAllowed``).

A LandingSet's template is checked as the Landing it generates, and its minting against the
user who writes the set. The Landings the controller then creates for the set are not
checked for ``bind`` again (the controller's own identity may not bind what the set's author
could); every other check applies to them as to any Landing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from moonlander import api
from moonlander.api.landingset import substitute
from moonlander.credentials import KubeconfigError, Policy, check_server

SAMPLE = "sample"  # each variable's value when a LandingSet's template is checked


def sample_landing(body: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The Landing (name, spec) a LandingSet's template gives with every variable set to
    ``sample``; raises :class:`api.SpecError` when the set's own spec is invalid."""
    landing_set = api.parse_landingset(body)
    variables = {v: SAMPLE for g in landing_set.spec.generators for v in g.variables}
    variables.update(secret=SAMPLE, set=landing_set.name)
    template = landing_set.spec.template
    spec = substitute(template.spec, variables)
    spec.setdefault("kubeconfigSecretName", SAMPLE)
    return substitute(template.metadata.name, variables), spec


def set_problems(body: Mapping[str, Any], *, policy: Policy) -> list[str]:
    """Why this LandingSet would not work; empty when it may be admitted. Its template is
    checked as the Landing it would generate, exactly as a hand-written one."""
    try:
        name, spec = sample_landing(body)
    except api.SpecError as err:
        return [str(err)]
    return [f"spec.template (as a Landing): {p}" for p in problems(name, spec, policy=policy)]


def problems(name: str, spec: Mapping[str, Any] | None, *, policy: Policy) -> list[str]:
    """Why this Landing would not work; empty when it may be admitted."""
    try:
        parsed = api.parse_spec(spec, name=name)
    except api.SpecError as err:
        return [str(err)]
    found: list[str] = []
    if parsed.server:
        try:
            check_server(parsed.server, policy)
        except KubeconfigError as err:
            found.append(f"spec.server: {err}")
    return found


@dataclass(frozen=True)
class BindCheck:
    """One question for a SubjectAccessReview: may the user ``verb`` the role ``name`` of
    ``resource`` (``clusterroles`` or ``roles``) in ``namespace`` (None: cluster-wide)?"""

    verb: str
    resource: str
    name: str | None
    namespace: str | None

    def describe(self) -> str:
        what = f"{self.resource} {self.name}" if self.name else self.resource
        where = f" in namespace {self.namespace}" if self.namespace else " cluster-wide"
        return f"{self.verb} {what}{where}"


def bind_checks(spec: api.LandingSpec) -> Iterator[BindCheck]:
    """What the requesting user must be allowed for the bindings a Landing would mint in
    this cluster; nothing for Landings that do not mint here (ChildToParent mints in the
    child, with the child's credential)."""
    sa = spec.service_account
    if sa is None or spec.direction is not api.Direction.PARENT_TO_CHILD:
        return
    if sa.cluster_role is not None:
        yield BindCheck("bind", "clusterroles", sa.cluster_role, None)
    for grant in sa.roles:
        resource = "clusterroles" if grant.kind is api.RoleKind.CLUSTER_ROLE else "roles"
        for namespace in grant.namespaces:
            yield BindCheck("bind", resource, grant.name, namespace)
    if sa.rules:
        for namespace in sa.rules_namespaces:
            yield BindCheck("escalate", "roles", None, namespace)
        if not sa.rules_namespaces:
            yield BindCheck("escalate", "clusterroles", None, None)
