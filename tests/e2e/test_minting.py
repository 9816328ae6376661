"""Minted ServiceAccount credentials on real API servers: least privilege, expiry, renewal,
revocation, and ``moonlander mint`` used with kubectl."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube import ALL_NS, ApiError, AsyncClient, KubeConfig
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.core_v1 import ConfigMap, Namespace, Secret, ServiceAccount
from lightkube.resources.rbac_authorization_v1 import (
    ClusterRole,
    ClusterRoleBinding,
    Role,
    RoleBinding,
)

from moonlander import api, minting
from moonlander.api import PolicyRule, RoleGrant, RoleKind, ServiceAccountSpec
from moonlander.api.reasons import LandingProblem, Reason
from moonlander.credentials import Policy, parse_kubeconfig
from moonlander.kube.clusters import build_client, close_client
from moonlander.minting import MintedToken, ObjectRef, identity
from moonlander_dev import clusters as devclusters
from moonlander_dev.clusters import ClusterSpec, ControlPlane, ControlPlaneError

from ..conftest import Plane

pytestmark = pytest.mark.e2e

POLICY = Policy(allow_loopback=True)
CM_RULE = {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}
CM_POLICY = PolicyRule(api_groups=("",), resources=("configmaps",), verbs=("get", "list"))
KINDS: dict[str, Any] = {
    "ServiceAccount": ServiceAccount,
    "ClusterRole": ClusterRole,
    "ClusterRoleBinding": ClusterRoleBinding,
    "Role": Role,
    "RoleBinding": RoleBinding,
}


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


async def new_namespace(client: AsyncClient) -> str:
    name = unique("t")
    await client.create(Namespace(metadata=ObjectMeta(name=name)))
    return name


async def cm_reader_role(client: AsyncClient, namespace: str) -> str:
    """A Role allowing get/list on ConfigMaps in ``namespace``. (The built-in view/edit roles
    are aggregated by kube-controller-manager, which these clusters do not run.)"""
    await client.create(
        Role.from_dict(
            {
                "metadata": {"name": "cm-reader", "namespace": namespace},
                "rules": [CM_RULE],
            }
        )
    )
    await client.create(ConfigMap(metadata=ObjectMeta(name="hello", namespace=namespace)))
    return "cm-reader"


@asynccontextmanager
async def as_token(plane: Plane, cluster: str, token: MintedToken) -> AsyncIterator[AsyncClient]:
    """A client built exactly as Moonlander would from the minted kubeconfig."""
    text = minting.build_kubeconfig(
        plane[cluster].url, plane[cluster].ca_pem, token, POLICY, name="minted"
    )
    client = build_client(parse_kubeconfig(text, POLICY), POLICY)
    try:
        yield client
    finally:
        await close_client(client)


async def status_of(call: Any) -> int:
    try:
        await call
    except ApiError as err:
        return int(err.status.code or 0)
    return 200


async def create_or_status(client: AsyncClient, obj: Any) -> tuple[int, dict[str, Any]]:
    """(200, the stored spec.serviceAccount) or (the error code, {})."""
    try:
        created = await client.create(obj)
    except ApiError as err:
        return int(err.status.code or 0), {}
    return 200, dict(created.to_dict()["spec"]["serviceAccount"])


async def list_status(client: AsyncClient, kind: Any, namespace: str) -> int:
    try:
        [_ async for _ in client.list(kind, namespace=namespace)]
    except ApiError as err:
        return int(err.status.code or 0)
    return 200


def jwt_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


async def versions(client: AsyncClient, refs: list[ObjectRef]) -> dict[ObjectRef, str]:
    out = {}
    for ref in refs:
        obj = await client.get(KINDS[ref.kind], ref.name, namespace=ref.namespace)
        out[ref] = obj.metadata.resourceVersion
    return out


async def eventually_invalid(client: AsyncClient, token: str, spec: ServiceAccountSpec) -> float:
    started = time.monotonic()
    while await minting.token_is_valid(client, token, spec):
        assert time.monotonic() - started < 30, "token still valid after 30s"
        await asyncio.sleep(0.1)
    return time.monotonic() - started


# -- least privilege --------------------------------------------------------------------------


async def test_role_grant_allows_exactly_what_the_role_allows(
    plane: Plane, admin: dict[str, AsyncClient], namespace: str
) -> None:
    client = admin["child-a"]
    other = await new_namespace(client)
    role = await cm_reader_role(client, namespace)
    spec = ServiceAccountSpec(
        name="reader",
        namespace=namespace,
        roles=(RoleGrant(kind=RoleKind.ROLE, name=role, namespaces=(namespace,)),),
    )
    owner = f"{namespace}/reader-landing"
    refs = await minting.ensure_identity(client, spec, owner=owner, owner_uid="uid-1")
    assert refs == [
        ObjectRef("ServiceAccount", "reader", namespace),
        ObjectRef(
            "RoleBinding", f"moonlander:{namespace}:reader-landing:Role:cm-reader", namespace
        ),
    ]
    token = await minting.mint_token(client, spec)
    assert await minting.token_is_valid(client, token.token, spec)

    async with as_token(plane, "child-a", token) as sa:
        assert await list_status(sa, ConfigMap, namespace) == 200
        assert await status_of(sa.get(ConfigMap, "hello", namespace=namespace)) == 200
        assert await list_status(sa, ConfigMap, other) == 403
        assert await list_status(sa, Secret, namespace) == 403
        assert await list_status(sa, ConfigMap, ALL_NS) == 403
        cm = ConfigMap(metadata=ObjectMeta(name="nope", namespace=namespace))
        assert await status_of(sa.create(cm)) == 403
    # The identity exists only in the cluster it was minted in.
    assert not await minting.token_is_valid(admin["child-b"], token.token, spec)


async def test_inline_rules_in_namespaces_become_roles(
    plane: Plane, admin: dict[str, AsyncClient], namespace: str
) -> None:
    client = admin["child-a"]
    other = await new_namespace(client)
    spec = ServiceAccountSpec(
        name="inline", namespace=namespace, rules=(CM_POLICY,), rules_namespaces=(other,)
    )
    await minting.ensure_identity(client, spec, owner=f"{namespace}/inline", owner_uid="u")
    token = await minting.mint_token(client, spec)
    async with as_token(plane, "child-a", token) as sa:
        assert await list_status(sa, ConfigMap, other) == 200
        assert await list_status(sa, ConfigMap, namespace) == 403
        assert await list_status(sa, Secret, other) == 403


async def test_cluster_role_binding_works_cluster_wide(
    plane: Plane, admin: dict[str, AsyncClient], namespace: str
) -> None:
    client = admin["child-b"]
    other = await new_namespace(client)
    # An existing ClusterRole bound by name, plus inline rules in a ClusterRole of our own.
    ns_reader = unique("ns-reader")
    await client.create(
        ClusterRole.from_dict(
            {
                "metadata": {"name": ns_reader},
                "rules": [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]}],
            }
        )
    )
    spec = ServiceAccountSpec(
        name="wide", namespace=namespace, cluster_role=ns_reader, rules=(CM_POLICY,)
    )
    owner = f"{namespace}/wide"
    refs = await minting.ensure_identity(client, spec, owner=owner, owner_uid="u")
    base = f"moonlander:{namespace}:wide"
    assert refs[1:] == [
        ObjectRef("ClusterRole", base),
        ObjectRef("ClusterRoleBinding", base),
        ObjectRef("ClusterRoleBinding", f"{base}:ClusterRole:{ns_reader}"),
    ]
    token = await minting.mint_token(client, spec)
    async with as_token(plane, "child-b", token) as sa:
        for ns in (namespace, other, "kube-system"):
            assert await list_status(sa, ConfigMap, ns) == 200, ns
            assert await status_of(sa.get(Namespace, ns)) == 200, ns
        assert await list_status(sa, ConfigMap, ALL_NS) == 200
        assert await list_status(sa, Secret, other) == 403
        assert await status_of(sa.get(ClusterRole, ns_reader)) == 403
    await minting.revoke(client, spec, owner=owner)
    await client.delete(ClusterRole, ns_reader)


async def test_foreign_object_is_a_conflict_and_nothing_is_written(
    admin: dict[str, AsyncClient], namespace: str
) -> None:
    client = admin["child-a"]
    spec = ServiceAccountSpec(name="taken", namespace=namespace, cluster_role="view")
    owner = f"{namespace}/taken"
    binding = f"moonlander:{namespace}:taken:ClusterRole:view"
    # Someone else's binding with the name we would use, even with our label.
    await client.create(
        ClusterRoleBinding.from_dict(
            {
                "metadata": {
                    "name": binding,
                    "labels": {api.MANAGED_BY_LABEL: api.MANAGED_BY},
                    "annotations": {api.OWNER_ANNOTATION: f"{namespace}/someone-else"},
                },
                "roleRef": {"apiGroup": minting.RBAC_GROUP, "kind": "ClusterRole", "name": "edit"},
                "subjects": [{"kind": "User", "name": "alice", "apiGroup": minting.RBAC_GROUP}],
            }
        )
    )
    before = await client.get(ClusterRoleBinding, binding)
    with pytest.raises(LandingProblem) as err:
        await minting.ensure_identity(client, spec, owner=owner, owner_uid="u")
    assert err.value.outcome.reason is Reason.CONFLICT
    assert binding in err.value.outcome.message
    assert await status_of(client.get(ServiceAccount, "taken", namespace=namespace)) == 404
    after = await client.get(ClusterRoleBinding, binding)
    assert after.metadata.resourceVersion == before.metadata.resourceVersion
    assert not await minting.revoke(client, spec, owner=owner)  # not ours: not deleted
    await client.get(ClusterRoleBinding, binding)
    await client.delete(ClusterRoleBinding, binding)


async def test_grant_into_missing_namespace_waits(
    admin: dict[str, AsyncClient], namespace: str
) -> None:
    client = admin["child-a"]
    missing = unique("missing")
    spec = ServiceAccountSpec(
        name="waiter",
        namespace=namespace,
        roles=(RoleGrant(kind=RoleKind.CLUSTER_ROLE, name="view", namespaces=(missing,)),),
    )
    with pytest.raises(LandingProblem) as err:
        await minting.ensure_identity(client, spec, owner=f"{namespace}/waiter", owner_uid="u")
    assert err.value.outcome.reason is Reason.TRANSIENT_ERROR
    assert f"namespace {missing!r} does not exist" in err.value.outcome.message
    assert await status_of(client.get(Namespace, missing)) == 404  # not created for a grant


async def test_service_account_namespace_is_created(admin: dict[str, AsyncClient]) -> None:
    client = admin["child-b"]
    home = unique("home")
    spec = ServiceAccountSpec(name="robot", namespace=home, cluster_role="view")
    await minting.ensure_identity(client, spec, owner=f"{home}/robot", owner_uid="u")
    ns = await client.get(Namespace, home)
    assert ns.metadata.labels[api.MANAGED_BY_LABEL] == api.MANAGED_BY
    sa = await client.get(ServiceAccount, "robot", namespace=home)
    assert sa.automountServiceAccountToken is False


# -- tokens -----------------------------------------------------------------------------------


async def test_expiry_is_what_the_token_request_granted(
    admin: dict[str, AsyncClient], namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = admin["parent"]
    spec = ServiceAccountSpec(name="timed", namespace=namespace, cluster_role="view")
    owner = f"{namespace}/timed"
    await minting.ensure_identity(client, spec, owner=owner, owner_uid="u")
    before = datetime.now(UTC)
    token = await minting.mint_token(client, spec)
    claims = jwt_claims(token.token)
    # The status's expirationTimestamp is the token's exp claim; issued_at its iat.
    assert token.expires_at == datetime.fromtimestamp(claims["exp"], UTC)
    assert token.issued_at == datetime.fromtimestamp(claims["iat"], UTC)
    assert token.lifetime == timedelta(seconds=3600)
    assert claims["aud"] == ["https://kubernetes.default.svc"]
    assert abs((token.expires_at - before).total_seconds() - 3600) < 5
    assert token.renew_at(spec.renew_before_fraction) == token.issued_at + timedelta(minutes=48)
    assert await minting.token_is_valid(client, token.token, spec)
    await minting.revoke(client, spec, owner=owner)
    assert token.token not in caplog.text
    assert claims["jti"] not in caplog.text


async def test_wrong_audience_is_detected(admin: dict[str, AsyncClient], namespace: str) -> None:
    client = admin["parent"]
    spec = ServiceAccountSpec(
        name="aud", namespace=namespace, cluster_role="view", audience="vault"
    )
    await minting.ensure_identity(client, spec, owner=f"{namespace}/aud", owner_uid="u")
    token = await minting.mint_token(client, spec)  # the API server issues it...
    assert jwt_claims(token.token)["aud"] == ["vault"]
    assert not await minting.token_is_valid(client, token.token, spec)  # ...but refuses it


async def test_server_maximum_shortens_the_lifetime(tmp_path: Path) -> None:
    # Measured: kube-apiserver refuses a maximum below one hour, so "10m" cannot be tested.
    too_short = ControlPlane(
        tmp_path / "refused",
        [ClusterSpec("refused", extra_args=("--service-account-max-token-expiration=10m",))],
    )
    with pytest.raises(ControlPlaneError, match="must be between 1 hour and 2"):
        await asyncio.to_thread(too_short.start)

    short = ControlPlane(
        tmp_path / "short",
        [
            ClusterSpec(
                "short",
                extra_args=(
                    "--service-account-max-token-expiration=1h",
                    "--service-account-extend-token-expiration=false",
                ),
            )
        ],
    )
    await asyncio.to_thread(short.start)
    client = AsyncClient(KubeConfig.from_file(short.clusters["short"].kubeconfig))
    try:
        spec = ServiceAccountSpec(name="capped", cluster_role="view", expiration_seconds=7200)
        await minting.ensure_identity(client, spec, owner="x/capped", owner_uid="u")
        token = await minting.mint_token(client, spec)
        claims = jwt_claims(token.token)
        assert claims["exp"] - claims["iat"] == 3600  # clamped to the maximum, not refused
        assert token.lifetime == timedelta(hours=1)
        assert token.expires_at == datetime.fromtimestamp(claims["exp"], UTC)
        # Renewal follows the granted lifetime, not the requested one.
        assert token.renew_at(0.2) == token.issued_at + timedelta(minutes=48)
        assert await minting.token_is_valid(client, token.token, spec)
    finally:
        await client._client.close()  # type: ignore[no-untyped-call]
        await asyncio.to_thread(short.stop)


async def test_deleted_service_account_invalidates_tokens_and_is_recreated(
    plane: Plane, admin: dict[str, AsyncClient], namespace: str
) -> None:
    client = admin["child-b"]
    await cm_reader_role(client, namespace)
    spec = ServiceAccountSpec(
        name="phoenix",
        namespace=namespace,
        roles=(RoleGrant(kind=RoleKind.ROLE, name="cm-reader", namespaces=(namespace,)),),
    )
    owner = f"{namespace}/phoenix"
    await minting.ensure_identity(client, spec, owner=owner, owner_uid="u")
    old = await minting.mint_token(client, spec)
    assert await minting.token_is_valid(client, old.token, spec)

    await client.delete(ServiceAccount, "phoenix", namespace=namespace)
    # Not instant: kube-apiserver caches successful token authentications for 10 s.
    waited = await eventually_invalid(client, old.token, spec)
    print(f"\ntoken rejected {waited:.1f}s after its ServiceAccount was deleted")
    async with as_token(plane, "child-b", old) as sa:
        assert await list_status(sa, ConfigMap, namespace) == 401

    await minting.ensure_identity(client, spec, owner=owner, owner_uid="u")
    new = await minting.mint_token(client, spec)
    assert await minting.token_is_valid(client, new.token, spec)
    async with as_token(plane, "child-b", new) as sa:
        assert await list_status(sa, ConfigMap, namespace) == 200
    # A recreated ServiceAccount has a new uid: tokens of the old one stay invalid.
    assert not await minting.token_is_valid(client, old.token, spec)


# -- idempotence, pruning, revocation ---------------------------------------------------------


async def test_ensure_writes_nothing_when_current_and_prunes_what_was_dropped(
    admin: dict[str, AsyncClient], namespace: str
) -> None:
    client = admin["child-a"]
    other = await new_namespace(client)
    spec = ServiceAccountSpec(
        name="steady",
        namespace=namespace,
        cluster_role="view",
        roles=(RoleGrant(kind=RoleKind.CLUSTER_ROLE, name="edit", namespaces=(namespace, other)),),
        rules=(CM_POLICY,),
    )
    owner = f"{namespace}/steady"
    refs = await minting.ensure_identity(client, spec, owner=owner, owner_uid="u")
    assert len(refs) == 6
    first = await versions(client, refs)
    assert await minting.ensure_identity(client, spec, owner=owner, owner_uid="u") == refs
    assert await versions(client, refs) == first
    assert await minting.prune(client, spec, owner=owner) == []

    # Edited by hand: the next ensure repairs it.
    await client.patch(
        ClusterRole, f"moonlander:{namespace}:steady", {"rules": []}, field_manager="vandal"
    )
    await minting.ensure_identity(client, spec, owner=owner, owner_uid="u")
    repaired = await client.get(ClusterRole, f"moonlander:{namespace}:steady")
    assert [r.to_dict() for r in repaired.rules or []] == [CM_RULE]
    settled = await versions(client, refs)

    # A namespace dropped from a grant and a changed ClusterRole: new binding, old ones pruned.
    changed = ServiceAccountSpec(
        name="steady",
        namespace=namespace,
        cluster_role="admin",
        roles=(RoleGrant(kind=RoleKind.CLUSTER_ROLE, name="edit", namespaces=(namespace,)),),
        rules=(CM_POLICY,),
    )
    await minting.ensure_identity(client, changed, owner=owner, owner_uid="u")
    pruned = await minting.prune(client, changed, owner=owner)
    assert pruned == [
        ObjectRef("ClusterRoleBinding", f"moonlander:{namespace}:steady:ClusterRole:view"),
        ObjectRef("RoleBinding", f"moonlander:{namespace}:steady:ClusterRole:edit", other),
    ]
    kept = [r for r in refs if r not in pruned]
    assert await versions(client, kept) == {r: settled[r] for r in kept}  # untouched
    await minting.revoke(client, changed, owner=owner)


async def test_revoke_removes_ours_and_leaves_foreign_objects(
    plane: Plane, admin: dict[str, AsyncClient], namespace: str
) -> None:
    client = admin["parent"]
    other = await new_namespace(client)
    await cm_reader_role(client, namespace)
    spec = ServiceAccountSpec(
        name="leaver",
        namespace=namespace,
        cluster_role="view",
        roles=(RoleGrant(kind=RoleKind.ROLE, name="cm-reader", namespaces=(namespace,)),),
        rules=(CM_POLICY,),
        rules_namespaces=(other,),
    )
    owner = f"{namespace}/leaver"
    # An object from an earlier spec (ServiceAccount renamed) that is still ours.
    earlier = ServiceAccountSpec(name="leaver-old", namespace=namespace, cluster_role="edit")
    await minting.ensure_identity(client, earlier, owner=owner, owner_uid="u")
    refs = await minting.ensure_identity(client, spec, owner=owner, owner_uid="u")
    token = await minting.mint_token(client, spec)

    foreign = {
        "roleRef": {"apiGroup": minting.RBAC_GROUP, "kind": "Role", "name": "cm-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "leaver", "namespace": namespace}],
    }
    # Similar names, no marks; and one with our label but another owner.
    lookalikes = {
        f"moonlander:{namespace}:leaver:Role:cm-reader:copy": {},
        "moonlander-leaver": {},
        f"moonlander:{namespace}:leaver-2": {
            "labels": {api.MANAGED_BY_LABEL: api.MANAGED_BY},
            "annotations": {api.OWNER_ANNOTATION: f"{namespace}/leaver-2"},
        },
    }
    for name, meta in lookalikes.items():
        await client.create(
            RoleBinding.from_dict(
                {"metadata": {"name": name, "namespace": namespace, **meta}, **foreign}
            )
        )

    async def foreign_versions() -> dict[str, str]:
        return {
            name: (
                await client.get(RoleBinding, name, namespace=namespace)
            ).metadata.resourceVersion
            for name in lookalikes
        }

    foreign_before = await foreign_versions()

    deleted = await minting.revoke(client, spec, owner=owner)
    assert deleted[0] == ObjectRef("ServiceAccount", "leaver", namespace)  # tokens die first
    assert set(refs) | {ObjectRef("ServiceAccount", "leaver-old", namespace)} <= set(deleted)
    for ref in deleted:
        kind = KINDS[ref.kind]
        assert await status_of(client.get(kind, ref.name, namespace=ref.namespace)) == 404, ref
    assert await identity._owned(client, owner) == []
    assert await foreign_versions() == foreign_before  # untouched
    await eventually_invalid(client, token.token, spec)
    assert await minting.revoke(client, spec, owner=owner) == []  # again: nothing, no error


# -- moonlander mint --------------------------------------------------------------------------


def run_mint(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "moonlander", "mint", "--allow-loopback", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def kubectl(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(devclusters.find_assets() / "kubectl"), "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_mint_command_output_works_with_kubectl(
    plane: Plane, admin: dict[str, AsyncClient], namespace: str, tmp_path: Path
) -> None:
    client = admin["child-a"]
    other = await new_namespace(client)
    await cm_reader_role(client, namespace)
    out = tmp_path / "robot.kubeconfig"
    admin_kubeconfig = str(plane["child-a"].kubeconfig)
    common = ("--kubeconfig", admin_kubeconfig, "--name", "robot", "--namespace", namespace)

    minted = await asyncio.to_thread(
        run_mint, *common, "--role", f"Role/cm-reader@{namespace}", "--output", str(out)
    )
    assert minted.returncode == 0, minted.stderr
    assert minted.stdout == ""
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert "lifetime 3600s" in minted.stderr
    token = parse_kubeconfig(out.read_bytes(), POLICY).token
    assert token and token not in minted.stderr

    listed = await asyncio.to_thread(
        kubectl, out, "get", "configmaps", "-n", namespace, "-o", "name"
    )
    assert listed.returncode == 0, listed.stderr
    assert "configmap/hello" in listed.stdout
    for args in (("configmaps", "-n", other), ("secrets", "-n", namespace), ("namespaces",)):
        refused = await asyncio.to_thread(kubectl, out, "get", *args)
        assert refused.returncode != 0
        assert "Forbidden" in refused.stderr, refused.stderr

    # Printed to stdout without --output; a second run changes nothing but the token.
    refs = [
        ObjectRef("ServiceAccount", "robot", namespace),
        ObjectRef("RoleBinding", f"moonlander:mint:{namespace}:robot:Role:cm-reader", namespace),
    ]
    before = await versions(client, refs)
    again = await asyncio.to_thread(run_mint, *common, "--role", f"Role/cm-reader@{namespace}")
    assert again.returncode == 0, again.stderr
    assert parse_kubeconfig(again.stdout, POLICY).token not in (None, token)
    assert await versions(client, refs) == before

    revoked = await asyncio.to_thread(run_mint, *common, "--revoke")
    assert revoked.returncode == 0, revoked.stderr
    assert "2 objects deleted" in revoked.stderr
    assert await status_of(client.get(ServiceAccount, "robot", namespace=namespace)) == 404

    async def unauthorized() -> bool:
        result = await asyncio.to_thread(kubectl, out, "get", "configmaps", "-n", namespace)
        return "Unauthorized" in result.stderr or "must be logged in" in result.stderr

    deadline = time.monotonic() + 30
    while not await unauthorized():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.2)


async def test_mint_command_refuses_bad_input_and_wrong_audience(
    plane: Plane, namespace: str
) -> None:
    admin_kubeconfig = str(plane["child-b"].kubeconfig)
    common = ("--kubeconfig", admin_kubeconfig, "--namespace", namespace)
    nothing = await asyncio.to_thread(run_mint, *common, "--name", "idle")
    assert nothing.returncode == 2
    assert "grants nothing" in nothing.stderr
    bad_role = await asyncio.to_thread(run_mint, *common, "--name", "x", "--role", "view")
    assert bad_role.returncode == 2
    assert "KIND/NAME@" in bad_role.stderr
    wrong = await asyncio.to_thread(
        run_mint, *common, "--name", "aud", "--cluster-role", "view", "--audience", "vault"
    )
    assert wrong.returncode == 1
    assert "does not accept tokens for audience 'vault'" in wrong.stderr
    assert wrong.stdout == ""


# -- the proposed CRD field -------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
SA_SPECS: dict[str, tuple[bool, dict[str, Any]]] = {
    "minimal": (True, {"name": "r", "clusterRole": "view"}),
    "grants": (True, {"name": "r", "roles": [{"name": "edit", "namespaces": ["a"]}]}),
    "rules": (True, {"name": "r", "rules": [CM_RULE], "rulesNamespaces": ["a"]}),
    "urls": (True, {"name": "r", "rules": [{"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]}),
    "nothing": (False, {"name": "r"}),
    "mixed": (False, {"name": "r", "rules": [{**CM_RULE, "nonResourceURLs": ["/x"]}]}),
    "no-groups": (False, {"name": "r", "rules": [{"resources": ["pods"], "verbs": ["get"]}]}),
    "ns-no-rules": (False, {"name": "r", "clusterRole": "view", "rulesNamespaces": ["a"]}),
    "ns-urls": (
        False,
        {
            "name": "r",
            "rules": [{"nonResourceURLs": ["/x"], "verbs": ["get"]}],
            "rulesNamespaces": ["a"],
        },
    ),
    "short": (False, {"name": "r", "clusterRole": "view", "expirationSeconds": 599}),
    "fraction": (False, {"name": "r", "clusterRole": "view", "renewBeforeFraction": 0.995}),
    "kind": (False, {"name": "r", "roles": [{"kind": "Group", "name": "x", "namespaces": ["a"]}]}),
    "name": (False, {"name": "R", "clusterRole": "view"}),
}


def service_account_of(sa: dict[str, Any]) -> ServiceAccountSpec | None:
    return api.parse_spec({"serviceAccount": sa}, name="landing").service_account


async def test_proposed_crd_field_agrees_with_the_parser(
    admin: dict[str, AsyncClient], namespace: str
) -> None:
    """The CRD's spec.serviceAccount schema (config/crd/bases) accepts and rejects what
    api.parse_spec does (with the defaults it applies). It is installed under a scratch
    group, so this cluster does not get the real Landing CRD."""
    crd_file = ROOT / "config" / "crd" / "bases" / "moons.kingdon.ci_landings.yaml"
    real = yaml.safe_load(crd_file.read_text())
    spec_schema = real["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    group = f"{namespace}.mint.test"
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {"serviceAccount": spec_schema["properties"]["serviceAccount"]},
            }
        },
    }
    crd = CustomResourceDefinition.from_dict(
        {
            "metadata": {"name": f"landings.{group}"},
            "spec": {
                "group": group,
                "scope": "Namespaced",
                "names": {"plural": "landings", "kind": "Landing"},
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {"openAPIV3Schema": schema},
                    }
                ],
            },
        }
    )
    client = admin["child-b"]
    await client.create(crd)
    try:
        await client.wait(
            CustomResourceDefinition, crd.metadata.name, for_conditions=["Established"]
        )
        landing = create_namespaced_resource(group, "v1", "Landing", "landings")
        for case, (valid, sa) in SA_SPECS.items():
            obj = landing.from_dict(
                {"metadata": {"name": case, "namespace": namespace}, "spec": {"serviceAccount": sa}}
            )
            code, stored = await create_or_status(client, obj)
            if not valid:
                assert code == 422, case
                with pytest.raises(api.SpecError):
                    service_account_of(sa)
                continue
            assert code == 200, case
            assert service_account_of(stored) == service_account_of(sa), case
    finally:
        await client.delete(CustomResourceDefinition, crd.metadata.name)
