"""An in-memory ``controller.store.Store`` for the reconcile steps' unit tests.

It replaces only the store's client calls (the ``_read_secret`` ... primitives, companions,
minting, reviews): the rules (create-or-conflict, adopt only what may be adopted, delete only
what is ours, echo bookkeeping, counting writes) are the real store's. Objects live in
``objects`` by (cluster key, kind, namespace, name); every call that writes is appended to
``writes`` as (verb, cluster key, kind, namespace, name). Clusters behave as the API server
does where it matters to the steps: a create of an existing name is a 409, one into a
namespace that does not exist a 404, a delete of nothing a 404, and every write bumps the
resourceVersion.
"""

from __future__ import annotations

import base64
import copy
import itertools
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import httpx2
import yaml
from lightkube import ApiError

from moonlander import api, minting
from moonlander.api.reasons import LandingProblem
from moonlander.controller.errors import problem_from_error
from moonlander.controller.store import Store
from moonlander.credentials import Credentials, Policy, credentials_from_token
from moonlander.kube.clusters import Target

from .kubeconfigs import PKI, TOKEN, _pki, b64

LOCAL = "local"
PARENT_SERVER = "https://203.0.113.10:6443"
CHILD_SERVER = "https://203.0.113.20:6443"
POLICY = Policy()


def api_error(code: int) -> ApiError:
    request = httpx2.Request("GET", "https://cluster.example/api/v1/secrets/x")
    response = httpx2.Response(
        code,
        json={"kind": "Status", "code": code, "reason": "Because", "message": f"said {code}"},
        request=request,
    )
    return ApiError(request=request, response=response)


def target(server: str, *, local: bool = False) -> Target:
    """A cluster with no client: the fake store never calls one."""
    return Target(
        key=LOCAL if local else server, server=server, client=cast(Any, None), local=local
    )


def kubeconfig(server: str, pki: PKI | None = None, token: str = TOKEN) -> str:
    pki = pki or _pki()
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "c",
                    "cluster": {"server": server, "certificate-authority-data": b64(pki.ca_pem)},
                }
            ],
            "users": [{"name": "u", "user": {"token": token}}],
            "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "ctx",
        }
    )


def secret(
    namespace: str, name: str, data: Mapping[str, str], annotations: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """A Secret body; ``data`` values are plain text, encoded here."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "annotations": dict(annotations or {})},
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


class FakeDrift:
    """What the drift watches were asked: ``tracked`` by Landing, ``remembered`` writes."""

    def __init__(self) -> None:
        self.tracked: dict[str, list[tuple[str, str, str]]] = {}
        self.remembered: list[tuple[str, str, str, bool]] = []
        self.cache: dict[tuple[str, str, str], dict[str, Any] | None] = {}

    def cached(self, target: Target, namespace: str, name: str) -> tuple[bool, Any]:
        ref = (target.key, namespace, name)
        return (ref in self.cache, self.cache.get(ref))

    def remember(self, target: Target, obj: Any, namespace: str, name: str) -> None:
        self.remembered.append((target.key, namespace, name, obj is not None))

    def track(self, key: str, wanted: Iterable[tuple[Target, str, str]]) -> None:
        self.tracked[key] = [(t.key, ns, kind) for t, ns, kind in wanted]

    def release(self, key: str) -> None:
        self.tracked.pop(key, None)


class FakeEvents:
    def __init__(self) -> None:
        self.recorded: list[tuple[str, str, str, str]] = []  # (object, type, reason, message)

    def record(self, meta: Any, type_: str, reason: str, message: str, kind: str = "") -> None:
        self.recorded.append((f"{meta.namespace}/{meta.name}", type_, reason, message))

    def reasons(self) -> list[str]:
        return [r for _, _, r, _ in self.recorded]


class FakeParent:
    def __init__(self, creds: Credentials | LandingProblem) -> None:
        self.creds = creds

    def current(self) -> Credentials:
        if isinstance(self.creds, LandingProblem):
            raise self.creds
        return self.creds


class FakeStore(Store):
    def __init__(self, policy: Policy = POLICY) -> None:
        self.fake_drift = FakeDrift()
        self.fake_events = FakeEvents()
        super().__init__(
            local=cast(Any, None),
            clusters=cast(Any, None),
            drift=cast(Any, self.fake_drift),
            events=cast(Any, self.fake_events),
            policy=policy,
        )
        self.local_target = target("https://local.example", local=True)
        self.targets: dict[str, Target] = {}
        self.objects: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        self.namespaces: dict[str, set[str]] = {}
        self.writes: list[tuple[str, str, str, str, str]] = []
        self.landings: dict[tuple[str, str], dict[str, Any]] = {}
        self.policy_status: dict[str, Mapping[str, Any]] = {}
        self.failing: dict[str, BaseException] = {}  # cluster key -> raised by every call
        self.reviews: dict[str, BaseException | None] = {}  # server -> SelfSubjectReview answer
        self.review_calls: list[str] = []
        self.minted: list[str] = []
        self.revoked: list[tuple[str, str]] = []
        self.succeeded_targets: list[str] = []
        self.companion_kinds: set[str] = set()  # ProviderConfig kinds whose CRD exists
        # Source Secrets' finalizer patches (controller.holds): (namespace, name, metadata).
        self.finalizer_patches: list[tuple[str, str, dict[str, Any]]] = []
        self._rv = itertools.count(1)

    # -- setting the scene ---------------------------------------------------------------

    def put(self, key: str, obj: Mapping[str, Any]) -> dict[str, Any]:
        body = copy.deepcopy(dict(obj))
        meta = body.setdefault("metadata", {})
        meta["resourceVersion"] = str(next(self._rv))
        ref = (key, body.get("kind", "Secret"), meta.get("namespace", ""), meta["name"])
        self.objects[ref] = body
        self.namespaces.setdefault(key, set()).add(meta.get("namespace", ""))
        return copy.deepcopy(body)

    def get(self, key: str, namespace: str, name: str, kind: str = "Secret") -> Any:
        return self.objects.get((key, kind, namespace, name))

    def verbs(self) -> list[str]:
        return [w[0] for w in self.writes]

    # -- clusters ------------------------------------------------------------------------

    def target(self, creds: Credentials, policy: Policy) -> Target:
        if creds.server not in self.targets:
            self.targets[creds.server] = target(creds.server)
        return self.targets[creds.server]

    async def problem(self, target: Target, err: BaseException, key: str) -> LandingProblem:
        return problem_from_error(err, f"cluster {target.server}")

    def succeeded(self, target: Target) -> None:
        self.succeeded_targets.append(target.key)

    # -- client calls --------------------------------------------------------------------

    def _call(self, key: str) -> None:
        err = self.failing.get(key)
        if err is not None:
            raise err

    async def source_metadata(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        body = await self._read_secret(None, namespace, name)
        return None if body is None else body["metadata"]

    async def review(self, target: Target) -> BaseException | None:
        self.review_calls.append(target.server)
        return self.reviews.get(target.server)

    async def _read_secret(
        self, target: Target | None, namespace: str, name: str
    ) -> dict[str, Any] | None:
        key = LOCAL if target is None else target.key
        self._call(key)
        found = self.objects.get((key, "Secret", namespace, name))
        return copy.deepcopy(found) if found is not None else None

    async def _create_secret(self, target: Target, body: dict[str, Any]) -> dict[str, Any]:
        self._call(target.key)
        meta = body["metadata"]
        if meta["namespace"] not in self.namespaces.get(target.key, set()):
            raise api_error(404)
        if (target.key, "Secret", meta["namespace"], meta["name"]) in self.objects:
            raise api_error(409)
        self.writes.append(("create", target.key, "Secret", meta["namespace"], meta["name"]))
        return self.put(target.key, body)

    async def _apply_secret(self, target: Target, body: dict[str, Any]) -> dict[str, Any]:
        self._call(target.key)
        meta = body["metadata"]
        ref = (target.key, "Secret", meta["namespace"], meta["name"])
        merged = copy.deepcopy(self.objects.get(ref) or {})
        merged.update({k: v for k, v in body.items() if k != "metadata"})
        have = merged.setdefault("metadata", {})
        for part in ("labels", "annotations"):
            have[part] = {**(have.get(part) or {}), **(meta.get(part) or {})}
        have.update(name=meta["name"], namespace=meta["namespace"])
        self.writes.append(("apply", target.key, "Secret", meta["namespace"], meta["name"]))
        return self.put(target.key, merged)

    async def _delete_secret(self, target: Target, namespace: str, name: str) -> None:
        self._call(target.key)
        if self.objects.pop((target.key, "Secret", namespace, name), None) is None:
            raise api_error(404)
        self.writes.append(("delete", target.key, "Secret", namespace, name))

    async def _patch_local_secret(
        self, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> None:
        """A strategic merge of finalizers: added to, or deleted from, the list."""
        self._call(LOCAL)
        found = self.objects.get((LOCAL, "Secret", namespace, name))
        if found is None:
            raise api_error(404)
        meta = found.setdefault("metadata", {})
        have = list(meta.get("finalizers") or ())
        wanted = patch["metadata"]
        for name_ in wanted.get("finalizers", ()):
            if name_ not in have:
                have.append(name_)
        gone = set(wanted.get("$deleteFromPrimitiveList/finalizers", ()))
        meta["finalizers"] = [f for f in have if f not in gone]
        meta["resourceVersion"] = str(next(self._rv))
        self.finalizer_patches.append((namespace, name, dict(wanted)))

    async def _namespace_exists(self, target: Target, namespace: str) -> bool:
        self._call(target.key)
        return namespace in self.namespaces.get(target.key, set())

    async def _create_namespace(self, target: Target, namespace: str) -> None:
        self._call(target.key)
        self.namespaces.setdefault(target.key, set()).add(namespace)
        self.writes.append(("create", target.key, "Namespace", "", namespace))

    async def _patch_landing(
        self, meta: api.ObjectMeta, patch: Mapping[str, Any], *, status: bool
    ) -> dict[str, Any]:
        self._call(LOCAL)
        body = self.landings.setdefault(
            (meta.namespace, meta.name),
            {"metadata": {"name": meta.name, "namespace": meta.namespace}},
        )
        part = "status" if status else "metadata"
        current = body.setdefault(part, {})
        for k, v in patch[part].items():
            if v is None:
                current.pop(k, None)
            else:
                current[k] = v
        body["metadata"]["resourceVersion"] = str(next(self._rv))
        self.writes.append(("patch-" + part, LOCAL, "Landing", meta.namespace, meta.name))
        return copy.deepcopy(body)

    async def patch_policy_status(self, name: str, status: Mapping[str, Any]) -> None:
        self._call(LOCAL)
        self.policy_status[name] = status
        self.writes.append(("patch-status", LOCAL, "LandingPolicy", "", name))

    async def apply_companions(
        self, target: Target, desired: Iterable[dict[str, Any]], owner: str
    ) -> tuple[list[str], list[str]]:
        self._call(target.key)
        present, skipped = [], []
        for obj in desired:
            name = f"{obj['kind']}.{obj['apiVersion'].split('/')[0]}"
            if name not in self.companion_kinds:
                skipped.append(name)
                continue
            meta = obj["metadata"]
            ref = f"{name} {meta.get('namespace', '') and meta['namespace'] + '/'}{meta['name']}"
            self.put(target.key, obj)
            self.writes.append(
                ("apply", target.key, obj["kind"], meta.get("namespace", ""), meta["name"])
            )
            present.append(ref)
        return present, skipped

    async def prune_companions(self, target: Target, owner: str, keep: Iterable[str]) -> list[str]:
        self._call(target.key)
        self.writes.append(("prune", target.key, "ProviderConfig", "", ",".join(sorted(keep))))
        return []

    async def mint(
        self,
        landing: api.Landing,
        granting: Credentials,
        server: str,
        existing: Mapping[str, Any] | None,
        policy: Policy,
    ) -> tuple[Credentials, minting.MintedToken]:
        self._call(granting.server)
        mint_spec = landing.spec.service_account
        assert mint_spec is not None
        now = datetime(2026, 1, 1, tzinfo=UTC)
        token = minting.MintedToken(
            token=f"minted-{len(self.minted)}", issued_at=now, expires_at=now + timedelta(hours=1)
        )
        self.minted.append(landing.key)
        creds = credentials_from_token(
            server, granting.ca_data, token.token, policy, name=mint_spec.name
        )
        return creds, token

    async def revoke_identity(
        self, granting: Target, account: minting.ObjectRef, owner: str
    ) -> list[minting.ObjectRef]:
        self._call(granting.key)
        self.revoked.append((granting.key, owner))
        return [account]
