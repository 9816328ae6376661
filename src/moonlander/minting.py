"""Least-privilege credentials: mint a ServiceAccount identity, issue short-lived tokens for
it, renew them, revoke them.

Instead of handing out an admin kubeconfig, Moonlander creates a ServiceAccount in the
cluster whose access is handed out, binds exactly the roles the Landing asks for, and lands
a kubeconfig holding a token from the TokenRequest API (never a legacy token Secret). The
token is renewed before it expires; deleting the ServiceAccount invalidates every token
issued for it at once, which is how access is revoked.

Every object this module writes carries Moonlander's ownership marks (the managed-by label
and the owning Landing's annotation). An object without them is never modified or deleted,
whatever its name; deletes are made conditional on the object's uid and resourceVersion so
that an object replaced or edited meanwhile is re-examined first.

Tokens never appear in logs, exceptions or reprs. API errors from requests that carried a
token (TokenReview) are replaced by messages built from the status code alone.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import httpcore2
import httpx2
from lightkube import ALL_NS, ApiError, AsyncClient
from lightkube.models.authentication_v1 import TokenRequestSpec, TokenReviewSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.authentication_v1 import TokenReview
from lightkube.resources.core_v1 import Namespace, ServiceAccount
from lightkube.resources.rbac_authorization_v1 import (
    ClusterRole,
    ClusterRoleBinding,
    Role,
    RoleBinding,
)

from moonlander import api, plan
from moonlander.api import SpecError
from moonlander.kubeconfig import Policy, credentials_from_token, render_kubeconfig
from moonlander.plan import LandingProblem, Reason, Retry

__all__ = [
    "DEFAULT_AUDIENCE",
    "DEFAULT_NAMESPACE",
    "MintSpec",
    "MintedToken",
    "ObjectRef",
    "RoleGrant",
    "build_kubeconfig",
    "desired_objects",
    "ensure_identity",
    "mint_token",
    "parse_mint_spec",
    "prune",
    "revoke",
    "token_is_valid",
]

log = logging.getLogger(__name__)

# kube-apiserver accepts a token only if its audience is one of --api-audiences, which
# defaults to --service-account-issuer; this is the issuer of kubeadm, kind, k3s, Talos and
# our dev clusters. Clusters with another issuer (EKS, GKE, AKS) need spec.audience.
DEFAULT_AUDIENCE: Final = "https://kubernetes.default.svc"
# Identities live in a namespace of their own, not the tenant's: whoever can create pods or
# tokens in a ServiceAccount's namespace can act as it.
DEFAULT_NAMESPACE: Final = "moonlander-system"
DEFAULT_EXPIRATION: Final = 3600
MIN_EXPIRATION: Final = 600  # the TokenRequest API refuses less
MAX_EXPIRATION: Final = 365 * 24 * 3600
DEFAULT_RENEW_FRACTION: Final = 0.2
MIN_RENEW_FRACTION: Final = 0.05
MAX_RENEW_FRACTION: Final = 0.99  # up to 0.99: tests watch renewals happen within seconds

# On a landed Secret, so that a restarted controller knows when to renew without the token.
TOKEN_ISSUED_AT_ANNOTATION: Final = f"{api.GROUP}/token-issued-at"
TOKEN_EXPIRES_AT_ANNOTATION: Final = f"{api.GROUP}/token-expires-at"

RBAC_GROUP: Final = "rbac.authorization.k8s.io"
RBAC_API_VERSION: Final = f"{RBAC_GROUP}/v1"
_NAME_LIMIT: Final = 253

# RBAC object names are path segments: anything but '/', '%', '.' and '..'. We also refuse
# whitespace and control characters, which no real role name contains.
_ROLE_NAME = re.compile(r"[\x21-\x24\x26-\x2e\x30-\x7e]{1,253}")
_RULE_WORD = re.compile(r"[\x21-\x7e]{1,253}")
_AUDIENCE = re.compile(r"[\x21-\x7e]{1,1024}")

_SPEC_FIELDS: Final = (
    "name",
    "namespace",
    "clusterRole",
    "roles",
    "rules",
    "rulesNamespaces",
    "audience",
    "expirationSeconds",
    "renewBeforeFraction",
)
_RULE_FIELDS: Final = ("apiGroups", "resources", "resourceNames", "nonResourceURLs", "verbs")
_WHERE: Final = "spec.serviceAccount"


# --------------------------------------------------------------------------------------------
# The spec (pure)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoleGrant:
    """A Role or ClusterRole bound by a RoleBinding in each of ``namespaces``."""

    kind: str  # "Role" | "ClusterRole"
    name: str
    namespaces: tuple[str, ...]


@dataclass(frozen=True)
class MintSpec:
    """What identity to mint and how long its tokens live, every default applied."""

    name: str
    namespace: str = DEFAULT_NAMESPACE
    cluster_role: str | None = None  # bound cluster-wide (ClusterRoleBinding)
    namespaced_roles: tuple[RoleGrant, ...] = ()
    # Inline PolicyRules (normalised): a ClusterRole bound cluster-wide, or, with
    # rules_namespaces, a Role and RoleBinding in each of those namespaces.
    rules: tuple[dict[str, Any], ...] = ()
    rules_namespaces: tuple[str, ...] = ()
    audience: str = DEFAULT_AUDIENCE
    expiration_seconds: int = DEFAULT_EXPIRATION
    renew_before_fraction: float = DEFAULT_RENEW_FRACTION

    @property
    def username(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.name}"


def parse_mint_spec(raw: Mapping[str, Any] | None, *, landing_namespace: str) -> MintSpec | None:
    """``spec.serviceAccount`` of a Landing as a :class:`MintSpec`; None when it is not set.

    ``landing_namespace`` is deliberately not a default: identities live in
    ``moonlander-system`` unless ``namespace`` says otherwise (docs/minting.md says why).
    Raises :class:`api.SpecError` with the offending field. Like ``api.resolve_spec`` this
    does not trust the CRD schema to have checked shapes.
    """
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise SpecError(f"{_WHERE} must be an object")
    unknown = sorted(str(k)[:40] for k in raw if k not in _SPEC_FIELDS)
    if unknown:
        raise SpecError(f"{_WHERE} has unknown field(s): {', '.join(unknown)}")

    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise SpecError(f"{_WHERE}.name is required (the ServiceAccount to create)")
    if not api.DNS_SUBDOMAIN.fullmatch(name):
        raise SpecError(f"{_WHERE}.name {name[:80]!r} is not a valid ServiceAccount name")
    namespace = _optional_str(raw, "namespace") or DEFAULT_NAMESPACE
    if not api.DNS_LABEL.fullmatch(namespace):
        raise SpecError(f"{_WHERE}.namespace {namespace[:80]!r} is not a valid namespace name")

    cluster_role = _optional_str(raw, "clusterRole")
    if cluster_role is not None:
        _role_name(cluster_role, f"{_WHERE}.clusterRole")
    grants = _parse_grants(raw.get("roles"))
    rules = _parse_rules(raw.get("rules"))
    rules_namespaces = _namespaces(raw.get("rulesNamespaces"), f"{_WHERE}.rulesNamespaces")
    if rules_namespaces and not rules:
        raise SpecError(f"{_WHERE}.rulesNamespaces is set but there are no rules")
    if rules_namespaces and any("nonResourceURLs" in r for r in rules):
        raise SpecError(
            f"{_WHERE}.rules: nonResourceURLs need a ClusterRole; remove rulesNamespaces "
            "or the nonResourceURLs rule"
        )
    if cluster_role is None and not grants and not rules:
        raise SpecError(f"{_WHERE} grants nothing: set clusterRole, roles or rules")

    audience = _optional_str(raw, "audience") or DEFAULT_AUDIENCE
    if not _AUDIENCE.fullmatch(audience):
        raise SpecError(f"{_WHERE}.audience must be printable ASCII without spaces")

    expiration = raw.get("expirationSeconds", DEFAULT_EXPIRATION)
    if expiration is None:
        expiration = DEFAULT_EXPIRATION
    if isinstance(expiration, bool) or not isinstance(expiration, int):
        raise SpecError(f"{_WHERE}.expirationSeconds must be an integer")
    if not MIN_EXPIRATION <= expiration <= MAX_EXPIRATION:
        raise SpecError(
            f"{_WHERE}.expirationSeconds must be between {MIN_EXPIRATION} and {MAX_EXPIRATION}"
        )

    fraction = raw.get("renewBeforeFraction", DEFAULT_RENEW_FRACTION)
    if fraction is None:
        fraction = DEFAULT_RENEW_FRACTION
    if isinstance(fraction, bool) or not isinstance(fraction, int | float):
        raise SpecError(f"{_WHERE}.renewBeforeFraction must be a number")
    if not MIN_RENEW_FRACTION <= fraction <= MAX_RENEW_FRACTION:
        raise SpecError(
            f"{_WHERE}.renewBeforeFraction must be between {MIN_RENEW_FRACTION} and "
            f"{MAX_RENEW_FRACTION}"
        )

    return MintSpec(
        name=name,
        namespace=namespace,
        cluster_role=cluster_role,
        namespaced_roles=grants,
        rules=rules,
        rules_namespaces=rules_namespaces,
        audience=audience,
        expiration_seconds=expiration,
        renew_before_fraction=float(fraction),
    )


def _optional_str(raw: Mapping[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise SpecError(f"{_WHERE}.{key} must be a string")
    return value


def _role_name(value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise SpecError(f"{where} must be a non-empty string")
    if value in (".", "..") or not _ROLE_NAME.fullmatch(value):
        raise SpecError(f"{where} {value[:80]!r} is not a valid role name")
    return value


def _namespaces(value: object, where: str, *, required: bool = False) -> tuple[str, ...]:
    if value is None:
        value = []
    if not isinstance(value, list | tuple):
        raise SpecError(f"{where} must be a list of namespaces")
    if required and not value:
        raise SpecError(f"{where} must name at least one namespace")
    for ns in value:
        if not isinstance(ns, str) or not api.DNS_LABEL.fullmatch(ns):
            shown = ns[:80] if isinstance(ns, str) else type(ns).__name__
            raise SpecError(f"{where}: {shown!r} is not a valid namespace name")
    return tuple(dict.fromkeys(value))  # duplicates would only bind twice


def _parse_grants(value: object) -> tuple[RoleGrant, ...]:
    where = f"{_WHERE}.roles"
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise SpecError(f"{where} must be a list")
    grants: dict[tuple[str, str], dict[str, None]] = {}
    for i, item in enumerate(value):
        at = f"{where}[{i}]"
        if not isinstance(item, Mapping):
            raise SpecError(f"{at} must be an object")
        unknown = sorted(str(k)[:40] for k in item if k not in ("kind", "name", "namespaces"))
        if unknown:
            raise SpecError(f"{at} has unknown field(s): {', '.join(unknown)}")
        kind = item.get("kind", "ClusterRole")
        if kind not in ("Role", "ClusterRole"):
            raise SpecError(f"{at}.kind must be Role or ClusterRole")
        name = _role_name(item.get("name"), f"{at}.name")
        namespaces = _namespaces(item.get("namespaces"), f"{at}.namespaces", required=True)
        # Same role listed twice: one RoleBinding per namespace, the union of namespaces.
        grants.setdefault((kind, name), {}).update(dict.fromkeys(namespaces))
    return tuple(RoleGrant(k, n, tuple(ns)) for (k, n), ns in grants.items())


def _parse_rules(value: object) -> tuple[dict[str, Any], ...]:
    where = f"{_WHERE}.rules"
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise SpecError(f"{where} must be a list of PolicyRules")
    rules = []
    for i, item in enumerate(value):
        at = f"{where}[{i}]"
        if not isinstance(item, Mapping):
            raise SpecError(f"{at} must be an object")
        unknown = sorted(str(k)[:40] for k in item if k not in _RULE_FIELDS)
        if unknown:
            raise SpecError(f"{at} has unknown field(s): {', '.join(unknown)}")
        rule: dict[str, Any] = {}
        for key in _RULE_FIELDS:
            words = item.get(key)
            if words is None:
                continue
            if not isinstance(words, list | tuple) or not all(
                isinstance(w, str) and (w == "" or _RULE_WORD.fullmatch(w)) for w in words
            ):
                raise SpecError(f"{at}.{key} must be a list of strings without spaces")
            if words:
                rule[key] = list(words)
        # The API server's own PolicyRule validation, so mistakes show up in the Landing.
        if not rule.get("verbs"):
            raise SpecError(f"{at}.verbs must name at least one verb")
        if "nonResourceURLs" in rule:
            if {"apiGroups", "resources", "resourceNames"} & rule.keys():
                raise SpecError(f"{at}: a rule is either for resources or for nonResourceURLs")
        else:
            if "apiGroups" not in rule:
                raise SpecError(f'{at}.apiGroups is required (use [""] for the core group)')
            if "resources" not in rule:
                raise SpecError(f"{at}.resources must name at least one resource")
        rules.append(rule)
    return tuple(rules)


# --------------------------------------------------------------------------------------------
# Tokens (pure)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MintedToken:
    """A token from the TokenRequest API and its lifetime as the API server granted it."""

    token: str = field(repr=False)  # never in reprs, logs or messages
    expires_at: datetime  # timezone-aware, from status.expirationTimestamp
    issued_at: datetime  # timezone-aware

    def __post_init__(self) -> None:
        if self.expires_at.tzinfo is None or self.issued_at.tzinfo is None:
            raise ValueError("MintedToken times must be timezone-aware")
        if self.expires_at <= self.issued_at:
            raise ValueError("MintedToken expires_at must be after issued_at")

    @property
    def lifetime(self) -> timedelta:
        return self.expires_at - self.issued_at

    def renew_at(self, fraction: float) -> datetime:
        """When to renew: once ``fraction`` of the lifetime is left."""
        if not 0.0 < fraction < 1.0:
            raise ValueError("fraction must be between 0 and 1 (exclusive)")
        return self.issued_at + self.lifetime * (1.0 - fraction)

    def needs_renewal(self, now: datetime, fraction: float) -> bool:
        return now >= self.renew_at(fraction)

    def seconds_until_renewal(self, now: datetime, fraction: float) -> float:
        """For scheduling the next reconcile; 0 when renewal is due."""
        return max(0.0, (self.renew_at(fraction) - now).total_seconds())

    def annotations(self) -> dict[str, str]:
        """The token's times, to record on the landed Secret (no secret material)."""
        return {
            TOKEN_ISSUED_AT_ANNOTATION: _rfc3339(self.issued_at),
            TOKEN_EXPIRES_AT_ANNOTATION: _rfc3339(self.expires_at),
        }


def token_times(annotations: Mapping[str, str] | None) -> tuple[datetime, datetime] | None:
    """(issued_at, expires_at) recorded by :meth:`MintedToken.annotations`; None if absent or
    unreadable, which callers should treat as "renew now"."""
    annotations = annotations or {}
    try:
        issued = datetime.fromisoformat(annotations[TOKEN_ISSUED_AT_ANNOTATION])
        expires = datetime.fromisoformat(annotations[TOKEN_EXPIRES_AT_ANNOTATION])
    except (KeyError, TypeError, ValueError):
        return None
    if issued.tzinfo is None or expires.tzinfo is None or expires <= issued:
        return None
    return issued, expires


def token_service_account_uid(token: str) -> str | None:
    """The ServiceAccount uid a token was issued for, read from its (unverified) claims.

    Only for our own landed token: a ServiceAccount deleted and recreated under the same name
    has a new uid, and the API server may still accept the old token for a few seconds from
    its authentication cache, so the uid is the reliable sign that a new token is needed.
    """
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        uid = claims["kubernetes.io"]["serviceaccount"]["uid"]
    except (IndexError, KeyError, TypeError, ValueError):
        return None
    return uid if isinstance(uid, str) else None


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_kubeconfig(
    server: str, ca_data: bytes | None, token: MintedToken, policy: Policy, *, name: str
) -> str:
    """A self-contained kubeconfig for the minted token (``current-context`` set).

    The server is checked against ``policy`` like any other; raises ``KubeconfigError``.
    """
    creds = credentials_from_token(server, ca_data, token.token, policy, name=name)
    return render_kubeconfig(creds, name=name)


# --------------------------------------------------------------------------------------------
# The objects of an identity (pure)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class ObjectRef:
    """An object of an identity; ``namespace`` is None for cluster-scoped kinds."""

    kind: str
    name: str
    namespace: str | None = None

    def __str__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {where}"


def identity_base_name(owner: str) -> str:
    """``moonlander:<landing namespace>:<landing name>`` for owner ``ns/name`` (CLI owners
    ``mint/ns/sa`` give ``moonlander:mint:ns:sa``).

    Collision-free between owners: every segment is a DNS name (no ':') and object names add
    a capitalised kind segment (``:ClusterRole:<role>``), which no DNS name can be.
    """
    if not owner:
        raise ValueError("owner must not be empty")
    return "moonlander:" + owner.replace("/", ":")


def _fit(name: str) -> str:
    # Landing names may be 253 characters long; keep names unique when they must be cut.
    if len(name) <= _NAME_LIMIT:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    return f"{name[: _NAME_LIMIT - 17]}:{digest}"


def desired_objects(
    spec: MintSpec, *, owner: str, owner_uid: str = ""
) -> list[tuple[ObjectRef, dict[str, Any]]]:
    """Every object of the identity, in write order: ServiceAccount, roles, bindings.

    Binding names include the role they bind: ``roleRef`` is immutable, so a changed role
    is a new binding (and the old one is pruned) rather than an update the API refuses.
    """
    base = identity_base_name(owner)
    labels = {api.MANAGED_BY_LABEL: api.MANAGED_BY}
    annotations = {api.OWNER_ANNOTATION: owner}
    if owner_uid:
        annotations[api.OWNER_UID_ANNOTATION] = owner_uid
    subject = {"kind": "ServiceAccount", "name": spec.name, "namespace": spec.namespace}

    def meta(name: str, namespace: str | None = None) -> dict[str, Any]:
        m: dict[str, Any] = {"name": name, "labels": dict(labels), "annotations": dict(annotations)}
        if namespace is not None:
            m["namespace"] = namespace
        return m

    def binding(
        kind: str, name: str, namespace: str | None, role_kind: str, role: str
    ) -> tuple[ObjectRef, dict[str, Any]]:
        body = {
            "apiVersion": RBAC_API_VERSION,
            "kind": kind,
            "metadata": meta(name, namespace),
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": role_kind, "name": role},
            "subjects": [dict(subject)],
        }
        return ObjectRef(kind, name, namespace), body

    def role(kind: str, name: str, namespace: str | None) -> tuple[ObjectRef, dict[str, Any]]:
        body = {
            "apiVersion": RBAC_API_VERSION,
            "kind": kind,
            "metadata": meta(name, namespace),
            "rules": [dict(r) for r in spec.rules],
        }
        return ObjectRef(kind, name, namespace), body

    objects = [
        (
            ObjectRef("ServiceAccount", spec.name, spec.namespace),
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": meta(spec.name, spec.namespace),
                # Pods in its namespace must not pick up this identity by accident.
                "automountServiceAccountToken": False,
            },
        )
    ]
    bindings = []
    own = _fit(base)
    if spec.rules and not spec.rules_namespaces:
        objects.append(role("ClusterRole", own, None))
        bindings.append(binding("ClusterRoleBinding", own, None, "ClusterRole", own))
    for ns in spec.rules_namespaces:
        objects.append(role("Role", own, ns))
        bindings.append(binding("RoleBinding", own, ns, "Role", own))
    if spec.cluster_role is not None:
        name = _fit(f"{base}:ClusterRole:{spec.cluster_role}")
        bindings.append(binding("ClusterRoleBinding", name, None, "ClusterRole", spec.cluster_role))
    for grant in spec.namespaced_roles:
        name = _fit(f"{base}:{grant.kind}:{grant.name}")
        bindings.extend(
            binding("RoleBinding", name, ns, grant.kind, grant.name) for ns in grant.namespaces
        )
    return objects + bindings


def _normal(value: Any) -> Any:
    """Drops empty and null fields, which the API server omits, before comparing."""
    if isinstance(value, Mapping):
        return {k: _normal(v) for k, v in value.items() if v not in (None, "", [], {})}
    if isinstance(value, list | tuple):
        return [_normal(v) for v in value]
    return value


def is_current(existing: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    """True when ``existing`` holds everything ``desired`` says; fields others added stay."""
    meta = existing.get("metadata") or {}
    for part in ("labels", "annotations"):
        have = meta.get(part) or {}
        if any(have.get(k) != v for k, v in desired["metadata"][part].items()):
            return False
    for key, want in desired.items():
        if key in ("apiVersion", "kind", "metadata"):
            continue
        if _normal(existing.get(key)) != _normal(want):
            return False
    return True


# --------------------------------------------------------------------------------------------
# Talking to the cluster
# --------------------------------------------------------------------------------------------


_RESOURCES: Final[dict[str, Any]] = {
    "ServiceAccount": ServiceAccount,
    "ClusterRole": ClusterRole,
    "ClusterRoleBinding": ClusterRoleBinding,
    "Role": Role,
    "RoleBinding": RoleBinding,
}


# Revocation removes the identity first: once the ServiceAccount is gone, every token issued
# for it is rejected, whatever happens to the rest.
_REVOKE_ORDER: Final = (
    "ServiceAccount",
    "ClusterRoleBinding",
    "RoleBinding",
    "ClusterRole",
    "Role",
)
# Pruning keeps the current identity working: stale bindings go before stale roles.
_PRUNE_ORDER: Final = ("ClusterRoleBinding", "RoleBinding", "ClusterRole", "Role", "ServiceAccount")
_NAMESPACED: Final = frozenset({"ServiceAccount", "Role", "RoleBinding"})


async def _get(client: AsyncClient, ref: ObjectRef) -> dict[str, Any] | None:
    try:
        obj = await client.get(_RESOURCES[ref.kind], ref.name, namespace=ref.namespace)
    except ApiError as err:
        if err.status.code == 404:
            return None
        raise
    return dict(obj.to_dict())


async def _ensure_namespace(client: AsyncClient, namespace: str) -> None:
    try:
        await client.get(Namespace, namespace)
        return
    except ApiError as err:
        if err.status.code != 404:
            raise
    labels = {api.MANAGED_BY_LABEL: api.MANAGED_BY}
    try:
        await client.create(
            Namespace(metadata=ObjectMeta(name=namespace, labels=labels)),
            field_manager=api.FIELD_MANAGER,
        )
        log.info("created Namespace %s for minted identities", namespace)
    except ApiError as err:
        if err.status.code != 409:  # created meanwhile
            raise


def _conflict(ref: ObjectRef, owner: str) -> LandingProblem:
    hint = (
        "choose another spec.serviceAccount.name or namespace"
        if ref.kind == "ServiceAccount"
        else "remove it or rename the Landing"
    )
    return LandingProblem(
        Reason.CONFLICT,
        f"{ref} exists and is not managed by {owner}; it is left untouched ({hint})",
        Retry.ON_CHANGE,
    )


async def ensure_identity(
    client: AsyncClient, spec: MintSpec, *, owner: str, owner_uid: str
) -> list[ObjectRef]:
    """Creates or updates the ServiceAccount and its RBAC; writes nothing when all is current.

    ``owner`` is ``plan.owner_value(ns, name)`` of the Landing (``mint/<ns>/<name>`` from the
    CLI). Objects that exist without our marks for ``owner`` are never touched: raises
    ``LandingProblem(CONFLICT)`` before writing anything. A RoleBinding for a namespace that
    does not exist raises ``LandingProblem(TRANSIENT_ERROR)`` (retry with backoff). Other API
    errors propagate as ``lightkube.ApiError``. Returns the refs of the identity's objects.
    """
    objects = desired_objects(spec, owner=owner, owner_uid=owner_uid)
    await _ensure_namespace(client, spec.namespace)
    existing = await asyncio.gather(*(_get(client, ref) for ref, _ in objects))
    for (ref, _), current in zip(objects, existing, strict=True):
        if current is not None and plan.ownership(current, owner) is not plan.Ownership.OURS:
            raise _conflict(ref, owner)

    for (ref, body), current in zip(objects, existing, strict=True):
        obj = _RESOURCES[ref.kind].from_dict(body)
        if current is not None and is_current(current, body):
            continue
        try:
            if current is None:
                # create, not apply: it fails instead of merging into an object that someone
                # else created since we looked.
                await client.create(obj, field_manager=api.FIELD_MANAGER)
                log.info("created %s for %s", ref, owner)
            elif "roleRef" in body and _normal(current.get("roleRef")) != body["roleRef"]:
                # roleRef is immutable; only a name collision after truncation gets here.
                await _delete_if_ours(client, ref, owner)
                await client.create(obj, field_manager=api.FIELD_MANAGER)
                log.info("replaced %s for %s", ref, owner)
            else:
                await client.apply(obj, field_manager=api.FIELD_MANAGER, force=True)
                log.info("updated %s for %s", ref, owner)
        except ApiError as err:
            code = err.status.code
            if code == 409:
                raise LandingProblem(
                    Reason.TRANSIENT_ERROR,
                    f"{ref} was created or changed concurrently; retrying",
                    Retry.BACKOFF,
                ) from None
            if code == 404 and ref.namespace is not None and ref.namespace != spec.namespace:
                raise LandingProblem(
                    Reason.TRANSIENT_ERROR,
                    f"cannot create {ref}: namespace {ref.namespace!r} does not exist "
                    "(Moonlander does not create namespaces it grants access to); waiting for it",
                    Retry.BACKOFF,
                ) from None
            raise
    return [ref for ref, _ in objects]


async def mint_token(client: AsyncClient, spec: MintSpec) -> MintedToken:
    """A new token for the ServiceAccount from the TokenRequest API.

    The lifetime is the one the API server granted (it caps requests at its
    ``--service-account-max-token-expiration``): ``issued_at`` is the expiration minus the
    granted ``spec.expirationSeconds`` the server returns, so both times are on its clock.
    """
    asked = datetime.now(UTC)
    request = ServiceAccount.Token(
        metadata=ObjectMeta(),
        spec=TokenRequestSpec(audiences=[spec.audience], expirationSeconds=spec.expiration_seconds),
    )
    result = await client.create(request, name=spec.name, namespace=spec.namespace)
    where = f"TokenRequest for ServiceAccount {spec.namespace}/{spec.name}"
    status = result.status
    token = status.token if status is not None else None
    expires = status.expirationTimestamp if status is not None else None
    if not isinstance(token, str) or not token or not isinstance(expires, datetime):
        raise LandingProblem(
            Reason.TRANSIENT_ERROR, f"{where}: the answer has no token", Retry.BACKOFF
        )
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    granted = getattr(result.spec, "expirationSeconds", None)
    issued = expires - timedelta(seconds=granted) if isinstance(granted, int) else asked
    if issued >= expires:
        issued = min(asked, expires - timedelta(seconds=1))
    minted = MintedToken(token=token, expires_at=expires, issued_at=issued)
    if isinstance(granted, int) and granted < spec.expiration_seconds:
        log.info(
            "%s: asked for %ds, the API server granted %ds",
            where,
            spec.expiration_seconds,
            granted,
        )
    log.info(
        "minted a token for ServiceAccount %s/%s, expires %s",
        spec.namespace,
        spec.name,
        _rfc3339(expires),
    )
    return minted


async def token_is_valid(client: AsyncClient, token: str, spec: MintSpec) -> bool:
    """Asks the API server (TokenReview) whether ``token`` authenticates as the ServiceAccount.

    False for an expired token, a deleted (or deleted and recreated) ServiceAccount, a wrong
    audience or another identity. Errors raise ``LandingProblem`` built from the status code
    only: the original exception holds the request, and with it the token.
    """
    problem: LandingProblem | None = None
    result: Any = None
    try:
        result = await client.create(
            TokenReview(metadata=ObjectMeta(), spec=TokenReviewSpec(token=token))
        )
    except ApiError as err:
        code = err.status.code or 0
        reason = {401: Reason.UNAUTHORIZED, 403: Reason.FORBIDDEN}.get(code, Reason.TRANSIENT_ERROR)
        problem = LandingProblem(
            reason, f"TokenReview: {code} {err.status.reason or ''}".rstrip(), Retry.BACKOFF
        )
    except (httpx2.HTTPError, httpcore2.ConnectError, TimeoutError) as err:
        problem = LandingProblem(
            Reason.CLUSTER_UNREACHABLE, f"TokenReview: {type(err).__name__}", Retry.BACKOFF
        )
    if problem is not None:
        raise problem  # outside the handler: no __context__ holding the request
    status = result.status
    user = status.user if status is not None else None
    return bool(
        status is not None
        and status.authenticated
        and user is not None
        and user.username == spec.username
    )


async def _owned(client: AsyncClient, owner: str) -> list[ObjectRef]:
    """Every identity object carrying our marks for ``owner``, in any namespace."""
    refs = []
    selector: Any = {api.MANAGED_BY_LABEL: api.MANAGED_BY}
    for kind, res in _RESOURCES.items():
        if kind in _NAMESPACED:
            items = client.list(res, namespace=ALL_NS, labels=selector)
        else:
            items = client.list(res, labels=selector)
        async for obj in items:
            body = obj.to_dict()
            if plan.ownership(body, owner) is plan.Ownership.OURS:
                meta = body["metadata"]
                refs.append(ObjectRef(kind, meta["name"], meta.get("namespace")))
    return refs


async def _delete_preconditioned(
    client: AsyncClient, ref: ObjectRef, uid: str, version: str
) -> None:
    # lightkube's delete() sends no body; DeleteOptions.preconditions needs one.
    inner: Any = client._client
    request = inner.prepare_request(
        "delete", res=_RESOURCES[ref.kind], name=ref.name, namespace=ref.namespace
    )
    request.data = {
        "apiVersion": "v1",
        "kind": "DeleteOptions",
        "preconditions": {"uid": uid, "resourceVersion": version},
    }
    response = await inner.send(inner.build_adapter_request(request))
    inner.handle_response("delete", response, request)


async def _delete_if_ours(client: AsyncClient, ref: ObjectRef, owner: str) -> bool:
    for _ in range(5):
        current = await _get(client, ref)
        if current is None or plan.ownership(current, owner) is not plan.Ownership.OURS:
            return False
        meta = current["metadata"]
        try:
            await _delete_preconditioned(client, ref, meta["uid"], meta["resourceVersion"])
        except ApiError as err:
            if err.status.code == 404:
                return False
            if err.status.code == 409:  # changed since we looked: look again
                continue
            raise
        log.info("deleted %s of %s", ref, owner)
        return True
    raise LandingProblem(
        Reason.TRANSIENT_ERROR, f"{ref} keeps changing; retrying its deletion", Retry.BACKOFF
    )


def _in_order(refs: Iterable[ObjectRef], order: Sequence[str]) -> list[ObjectRef]:
    return sorted(refs, key=lambda r: (order.index(r.kind), r))


async def prune(client: AsyncClient, spec: MintSpec, *, owner: str) -> list[ObjectRef]:
    """Deletes our objects for ``owner`` that ``spec`` no longer wants (a namespace dropped
    from a grant, a changed role or ServiceAccount name). Returns what was deleted."""
    wanted = {ref for ref, _ in desired_objects(spec, owner=owner)}
    stale = [ref for ref in await _owned(client, owner) if ref not in wanted]
    return [
        ref for ref in _in_order(stale, _PRUNE_ORDER) if await _delete_if_ours(client, ref, owner)
    ]


async def revoke(client: AsyncClient, spec: MintSpec, *, owner: str) -> list[ObjectRef]:
    """Deletes the ServiceAccount (which invalidates all its tokens) and every RBAC object
    carrying our marks for ``owner``, including ones a changed spec left behind. Objects
    that are not ours are never touched; absent ones are fine. Returns what was deleted."""
    sa = ObjectRef("ServiceAccount", spec.name, spec.namespace)
    found = set(await _owned(client, owner)) | {sa}
    return [
        ref for ref in _in_order(found, _REVOKE_ORDER) if await _delete_if_ours(client, ref, owner)
    ]


# --------------------------------------------------------------------------------------------
# `moonlander mint`
# --------------------------------------------------------------------------------------------


def cli_owner(namespace: str, name: str) -> str:
    """Owner value of identities minted from the command line (no Landing owns them)."""
    return f"mint/{namespace}/{name}"


def parse_role_flag(text: str) -> dict[str, Any]:
    """``--role KIND/NAME@ns1,ns2`` as a ``roles`` item of the spec."""
    kind, slash, rest = text.partition("/")
    name, at, namespaces = rest.rpartition("@")
    if not kind or not slash or not at or not name:
        raise SpecError(f"--role {text[:80]!r}: expected KIND/NAME@NAMESPACE[,NAMESPACE...]")
    return {"kind": kind, "name": name, "namespaces": [n for n in namespaces.split(",") if n]}


def _write_private(path: Path, text: str) -> None:
    """Writes ``text`` to ``path`` with mode 0600, atomically: never readable by others,
    not even for a moment, and never half-written."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", text=True)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


async def mint_command(
    *,
    admin_kubeconfig: Path,
    name: str,
    namespace: str,
    cluster_role: str | None,
    roles: Sequence[str],
    expiration: int,
    audience: str | None,
    server: str | None,
    output: Path | None,
    revoke_only: bool,
    policy: Policy,
) -> int:
    """``moonlander mint``: the least-privilege alternative to ``argocd cluster add``.

    Creates the identity in the cluster of ``admin_kubeconfig`` and prints (or writes, mode
    0600) a kubeconfig for it; ``revoke_only`` deletes the identity instead. ``roles`` are
    ``KIND/NAME@NS[,NS...]``. Exit codes: 0 done, 1 the cluster refused or failed, 2 bad input.
    """
    from moonlander.clusters import build_client, close_client
    from moonlander.kubeconfig import KubeconfigError, check_server, parse_kubeconfig

    def fail(code: int, message: str) -> int:
        print(f"error: {message}", file=sys.stderr)
        return code

    owner = cli_owner(namespace, name)
    try:
        if revoke_only:
            if not api.DNS_SUBDOMAIN.fullmatch(name) or not api.DNS_LABEL.fullmatch(namespace):
                raise SpecError("--name and --namespace must be valid names")
            spec = MintSpec(name=name, namespace=namespace)
        else:
            raw = {
                "name": name,
                "namespace": namespace,
                "clusterRole": cluster_role,
                "roles": [parse_role_flag(r) for r in roles],
                "audience": audience,
                "expirationSeconds": expiration,
            }
            parsed = parse_mint_spec(raw, landing_namespace=namespace)
            assert parsed is not None  # raw is not None
            spec = parsed
        # Checked before anything is created: --server is only written into the output.
        out_server = check_server(server, policy) if server is not None else None
    except (SpecError, KubeconfigError) as err:
        return fail(2, str(err))
    try:
        admin = parse_kubeconfig(await asyncio.to_thread(admin_kubeconfig.read_bytes), policy)
    except OSError as err:
        return fail(2, f"{admin_kubeconfig}: cannot read: {err.strerror}")
    except KubeconfigError as err:
        return fail(2, f"{admin_kubeconfig}: {err}")

    client = build_client(admin, policy)
    try:
        if revoke_only:
            gone = await revoke(client, spec, owner=owner)
            print(f"revoked {spec.username} ({len(gone)} objects deleted)", file=sys.stderr)
            return 0
        refs = await ensure_identity(client, spec, owner=owner, owner_uid="")
        await prune(client, spec, owner=owner)  # what earlier runs granted and this one does not
        token = await mint_token(client, spec)
        if not await token_is_valid(client, token.token, spec):
            return fail(
                1,
                f"the API server does not accept tokens for audience {spec.audience!r}; "
                "pass --audience with one of its --api-audiences (usually its issuer)",
            )
        kubeconfig = build_kubeconfig(
            out_server or admin.server,
            admin.ca_data,
            token,
            policy,
            name=f"{spec.name}@{admin.cluster_name}",
        )
    except LandingProblem as problem:
        return fail(1, problem.outcome.message)
    except ApiError as err:
        return fail(1, f"{err.status.code} {err.status.reason or ''}: {err.status.message or ''}")
    except (httpx2.HTTPError, httpcore2.ConnectError, TimeoutError) as err:
        return fail(1, f"cannot reach {admin.server}: {type(err).__name__}: {err}")
    except KubeconfigError as err:
        return fail(2, str(err))
    finally:
        await close_client(client)

    if output is not None:
        try:
            _write_private(output, kubeconfig)
        except OSError as err:
            return fail(2, f"{output}: cannot write: {err.strerror}")
    else:
        sys.stdout.write(kubeconfig)
    shortened = ""
    granted = int(token.lifetime.total_seconds())
    if granted < spec.expiration_seconds:
        shortened = f" (asked for {spec.expiration_seconds}s; the API server's maximum applies)"
    print(
        f"{spec.username}: {len(refs)} objects current; token expires {_rfc3339(token.expires_at)}"
        f", lifetime {granted}s{shortened}" + (f"; written to {output}" if output else ""),
        file=sys.stderr,
    )
    return 0
