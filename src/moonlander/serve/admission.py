"""Admission checks for Landings and LandingSets that the CRDs' CEL rules cannot express
(pure: the questions are asked by ``serve/review.py``).

CEL sees one object; it cannot know the operator's server address policy. The validating
webhook (``serve/webhook.py``) parses the spec as the controller does (``api.parse_spec``)
and rejects, at ``kubectl apply`` time, what the controller would refuse later.

For a Landing that mints in this cluster (ParentToChild with ``spec.serviceAccount``), the
webhook also asks the API server, with SubjectAccessReviews about the *requesting user*
only, whether that user could have made the bindings themselves, as RBAC's own escalation
check decides: ``bind`` on each named role; for inline rules, every rule held (one question
per verb, group, resource and name, or path), or both ``escalate`` and ``bind`` on the
roles of that scope. This is defence in depth: the controller bounds minting by
LandingPolicy with or without the webhook.

Whether a source Secret in another namespace grants access is deliberately not judged
here: the answer would tell a tenant whether a Secret exists in a namespace it cannot
read. The controller reports both cases the same way (``CrossNamespaceNotAllowed``).

A LandingSet's template is checked as the Landing it generates, its bindings against the
set's author. The fields that decide bindings take no variables (``api.landingset``), so
the checked template binds exactly what every generated Landing binds; the controller's
writes of generated Landings are admitted when they bind what their set's template binds.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from moonlander import api
from moonlander.api.landingset import KIND as SET_KIND
from moonlander.api.landingset import substitute
from moonlander.credentials import KubeconfigError, Policy, check_server

SAMPLE = "sample"  # each variable's value when a LandingSet's template is checked
RBAC_GROUP = "rbac.authorization.k8s.io"
# Inline rules expand into one SubjectAccessReview per verb, group, resource and name; a
# Landing asking more than this must come from someone holding escalate and bind.
MAX_RULE_QUESTIONS = 256


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


def spec_unchanged(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> bool:
    """An UPDATE that leaves the spec as it was (a finalizer, labels, annotations): it
    changes nothing the spec's author was checked for."""
    if old is None or new is None:
        return False
    return old.get("spec") == new.get("spec")


def set_owner(meta: Mapping[str, Any]) -> tuple[str, str] | None:
    """The (name, uid) of the LandingSet that controls this Landing, if one does."""
    for ref in meta.get("ownerReferences") or ():
        if ref.get("kind") == SET_KIND and ref.get("controller"):
            return str(ref.get("name", "")), str(ref.get("uid", ""))
    return None


def bound(spec: api.LandingSpec) -> tuple[Any, ...] | None:
    """What a Landing binds in this cluster (None: nothing): two specs with equal values
    mint the same rights. ChildToParent mints in the child, with the child's credential."""
    sa = spec.service_account
    if sa is None or spec.direction is not api.Direction.PARENT_TO_CHILD:
        return None
    return (sa.namespace, sa.cluster_role, sa.roles, sa.rules, sa.rules_namespaces)


@dataclass(frozen=True)
class Question:
    """One SubjectAccessReview question about the requesting user: may they ``verb`` the
    ``resource`` (``group``, ``subresource``, ``name``) in ``namespace`` (None:
    cluster-wide), or, with ``path``, that non-resource URL?"""

    verb: str
    resource: str = ""
    group: str = RBAC_GROUP
    subresource: str = ""
    name: str | None = None
    namespace: str | None = None
    path: str | None = None

    def describe(self) -> str:
        if self.path is not None:
            return f"{self.verb} {self.path}"
        what = self.resource + (f"/{self.subresource}" if self.subresource else "")
        if self.group != RBAC_GROUP:
            what += f" (apiGroup {self.group!r})"
        if self.name:
            what += f" {self.name}"
        where = f" in namespace {self.namespace}" if self.namespace else " cluster-wide"
        return f"{self.verb} {what}{where}"


def bind_checks(spec: api.LandingSpec) -> Iterator[Question]:
    """``bind`` on each role a Landing would bind in this cluster."""
    sa = spec.service_account
    if bound(spec) is None or sa is None:
        return
    if sa.cluster_role is not None:
        yield Question("bind", "clusterroles", name=sa.cluster_role)
    for grant in sa.roles:
        resource = "clusterroles" if grant.kind is api.RoleKind.CLUSTER_ROLE else "roles"
        for namespace in grant.namespaces:
            yield Question("bind", resource, name=grant.name, namespace=namespace)


@dataclass(frozen=True)
class RuleScope:
    """Inline rules minted into one scope: a Role and RoleBinding in ``namespace``, or a
    ClusterRole bound cluster-wide (None)."""

    namespace: str | None
    rules: tuple[api.PolicyRule, ...]

    def bypass(self) -> tuple[Question, Question]:
        """RBAC's own way past holding every rule: ``escalate`` to create the role and
        ``bind`` to bind it, both on any role of the scope."""
        resource = "roles" if self.namespace else "clusterroles"
        return (
            Question("escalate", resource, namespace=self.namespace),
            Question("bind", resource, namespace=self.namespace),
        )

    def held(self) -> list[Question]:
        """Every permission the rules give, one question each (wildcards asked as
        wildcards: only a wildcard covers one, as in RBAC)."""
        found: dict[Question, None] = {}
        for rule in self.rules:
            for url in rule.non_resource_urls:
                for verb in rule.verbs:
                    found[Question(verb, group="", path=url)] = None
            for group in rule.api_groups:
                for resource in rule.resources:
                    base, _, sub = resource.partition("/")
                    for verb in rule.verbs:
                        for name in rule.resource_names or (None,):
                            question = Question(verb, base, group, sub, name, self.namespace)
                            found[question] = None
        return list(found)


def rule_scopes(spec: api.LandingSpec) -> list[RuleScope]:
    """Where a Landing's inline rules would be minted in this cluster."""
    sa = spec.service_account
    if bound(spec) is None or sa is None or not sa.rules:
        return []
    namespaces: tuple[str | None, ...] = sa.rules_namespaces or (None,)
    return [RuleScope(ns, sa.rules) for ns in namespaces]
