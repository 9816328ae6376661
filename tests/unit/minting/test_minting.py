"""The pure parts of minting: role flags, token renewal math, object names, kubeconfig."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from moonlander import api, minting
from moonlander.api import PolicyRule, RoleGrant, RoleKind, ServiceAccountSpec
from moonlander.cli import mint as command
from moonlander.credentials import KubeconfigError, Policy, parse_kubeconfig
from moonlander.minting import MintedToken, ObjectRef
from moonlander_dev import pki

TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzZWNyZXQifQ.c2VjcmV0LXNpZ25hdHVyZQ"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def parse(**fields: Any) -> ServiceAccountSpec:
    spec = api.parse_spec({"serviceAccount": fields}, name="land").service_account
    assert spec is not None
    return spec


# -- role flags -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        ("Role/reader@a", {"kind": "Role", "name": "reader", "namespaces": ["a"]}),
        ("ClusterRole/view@a,b", {"kind": "ClusterRole", "name": "view", "namespaces": ["a", "b"]}),
        (
            "ClusterRole/system:x@a",
            {"kind": "ClusterRole", "name": "system:x", "namespaces": ["a"]},
        ),
    ],
)
def test_role_flag(flag: str, expected: dict[str, Any]) -> None:
    assert command.parse_role_flag(flag) == expected


@pytest.mark.parametrize("flag", ["view", "Role/reader", "Role@a", "/x@a"])
def test_bad_role_flag(flag: str) -> None:
    with pytest.raises(api.SpecError, match="KIND/NAME@"):
        command.parse_role_flag(flag)


# -- tokens -----------------------------------------------------------------------------------


def test_token_is_never_in_repr_or_str() -> None:
    token = MintedToken(token=TOKEN, expires_at=T0 + timedelta(hours=1), issued_at=T0)
    for text in (repr(token), str(token), f"{token}", repr([token]), repr({"t": token})):
        assert TOKEN not in text
        assert "signature" not in text
    assert "expires_at" in repr(token)


def test_invalid_token_times_do_not_show_the_token() -> None:
    with pytest.raises(ValueError, match="after issued_at") as err:
        MintedToken(token=TOKEN, expires_at=T0, issued_at=T0)
    assert TOKEN not in str(err.value)
    with pytest.raises(ValueError, match="timezone-aware"):
        MintedToken(token=TOKEN, expires_at=datetime(2026, 1, 2), issued_at=T0)


def test_renewal_at_default_fraction() -> None:
    token = MintedToken(token=TOKEN, expires_at=T0 + timedelta(hours=1), issued_at=T0)
    assert token.renew_at(0.2) == T0 + timedelta(minutes=48)
    assert not token.needs_renewal(T0 + timedelta(minutes=47, seconds=59), 0.2)
    assert token.needs_renewal(T0 + timedelta(minutes=48), 0.2)
    assert token.seconds_until_renewal(T0, 0.2) == 48 * 60
    assert token.seconds_until_renewal(T0 + timedelta(hours=2), 0.2) == 0.0
    with pytest.raises(ValueError, match="fraction"):
        token.renew_at(1.0)


@given(
    issued=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    lifetime=st.integers(min_value=1, max_value=2**32),  # seconds
    micros=st.integers(min_value=0, max_value=999_999),
    fraction=st.floats(min_value=0.05, max_value=0.99),
)
def test_renewal_is_after_issue_and_before_expiry(
    issued: datetime, lifetime: int, micros: int, fraction: float
) -> None:
    expires = issued + timedelta(seconds=lifetime, microseconds=micros)
    token = MintedToken(token=TOKEN, expires_at=expires, issued_at=issued)
    renew = token.renew_at(fraction)
    assert issued < renew < expires
    assert not token.needs_renewal(issued, fraction)
    assert token.needs_renewal(renew, fraction)
    assert token.needs_renewal(expires, fraction)
    # What is left at renewal is the asked fraction of the lifetime (to the microsecond).
    left = (expires - renew) / token.lifetime
    assert abs(left - fraction) < 1e-6 + 1e-6 / lifetime


def test_token_times_round_trip_through_annotations() -> None:
    token = MintedToken(token=TOKEN, expires_at=T0 + timedelta(hours=1), issued_at=T0)
    annotations = token.annotations()
    assert TOKEN not in str(annotations)
    assert annotations == {
        "moons.kingdon.ci/token-issued-at": "2026-01-01T00:00:00Z",
        "moons.kingdon.ci/token-expires-at": "2026-01-01T01:00:00Z",
    }
    assert minting.token_times(annotations) == (T0, T0 + timedelta(hours=1))
    assert minting.token_times({}) is None
    assert minting.token_times(None) is None
    bad = dict(annotations, **{"moons.kingdon.ci/token-expires-at": "soon"})
    assert minting.token_times(bad) is None


def test_build_kubeconfig_is_self_contained() -> None:
    ca = pki.CertificateAuthority("unit-ca")
    token = MintedToken(token=TOKEN, expires_at=T0 + timedelta(hours=1), issued_at=T0)
    text = minting.build_kubeconfig(
        "https://10.0.0.1:6443", ca.cert_pem, token, Policy(), name="robot@parent"
    )
    doc = yaml.safe_load(text)
    assert doc["current-context"] == "robot@parent"
    creds = parse_kubeconfig(text, Policy())
    assert creds.token == TOKEN
    assert creds.server == "https://10.0.0.1:6443"
    assert creds.ca_data == ca.cert_pem
    with pytest.raises(KubeconfigError, match="loopback") as err:
        minting.build_kubeconfig("https://127.0.0.1:6443", None, token, Policy(), name="x")
    assert TOKEN not in str(err.value)


def test_written_kubeconfig_is_private(tmp_path: Path) -> None:
    out = tmp_path / "out.yaml"
    out.write_text("old")
    out.chmod(0o644)
    command._write_private(out, "new")
    assert out.read_text() == "new"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["out.yaml"]


# -- objects ----------------------------------------------------------------------------------


def test_objects_of_an_identity() -> None:
    spec = parse(
        name="robot",
        clusterRole="view",
        roles=[{"kind": "Role", "name": "reader", "namespaces": ["a", "b"]}],
        rules=[{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}],
    )
    objects = minting.desired_objects(spec, owner="tenant/land", owner_uid="uid-1")
    refs = [ref for ref, _ in objects]
    assert refs == [
        ObjectRef("ServiceAccount", "robot", "moonlander-minted"),
        ObjectRef("ClusterRole", "moonlander:tenant:land"),
        ObjectRef("ClusterRoleBinding", "moonlander:tenant:land"),
        ObjectRef("ClusterRoleBinding", "moonlander:tenant:land:ClusterRole:view"),
        ObjectRef("RoleBinding", "moonlander:tenant:land:Role:reader", "a"),
        ObjectRef("RoleBinding", "moonlander:tenant:land:Role:reader", "b"),
    ]
    for ref, body in objects:
        meta = body["metadata"]
        assert meta["labels"] == {"app.kubernetes.io/managed-by": "moonlander"}
        assert meta["annotations"] == {
            "moons.kingdon.ci/landing": "tenant/land",
            "moons.kingdon.ci/landing-uid": "uid-1",
        }
        if ref.kind.endswith("Binding"):
            assert body["subjects"] == [
                {"kind": "ServiceAccount", "name": "robot", "namespace": "moonlander-minted"}
            ]
    assert objects[0][1]["automountServiceAccountToken"] is False
    assert objects[2][1]["roleRef"]["name"] == "moonlander:tenant:land"
    assert objects[3][1]["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "view",
    }


def test_namespaced_rules_become_roles() -> None:
    spec = parse(
        name="robot",
        rules=[{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}],
        rulesNamespaces=["a", "b"],
    )
    refs = [ref for ref, _ in minting.desired_objects(spec, owner="mint/ns/robot")]
    assert refs[1:] == [
        ObjectRef("Role", "moonlander:mint:ns:robot", "a"),
        ObjectRef("Role", "moonlander:mint:ns:robot", "b"),
        ObjectRef("RoleBinding", "moonlander:mint:ns:robot", "a"),
        ObjectRef("RoleBinding", "moonlander:mint:ns:robot", "b"),
    ]


_dns = st.from_regex(r"[a-z]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
_role = st.from_regex(r"[a-z][a-z0-9:.-]{0,20}", fullmatch=True)


@given(
    owners=st.lists(
        st.one_of(
            st.tuples(_dns, _dns).map("/".join),
            st.tuples(st.just("mint"), _dns, _dns).map("/".join),
        ),
        min_size=2,
        max_size=2,
        unique=True,
    ),
    roles=st.lists(_role, min_size=1, max_size=3),
)
def test_names_of_different_owners_never_collide(owners: list[str], roles: list[str]) -> None:
    names = []
    for owner in owners:
        spec = ServiceAccountSpec(
            name="robot",
            cluster_role=roles[0],
            roles=tuple(RoleGrant(kind=RoleKind.ROLE, name=r, namespaces=("a",)) for r in roles),
            rules=(PolicyRule(api_groups=("",), resources=("pods",), verbs=("get",)),),
        )
        names.append(
            {(ref.kind, ref.name) for ref, _ in minting.desired_objects(spec, owner=owner)}
        )
    names[0].discard(("ServiceAccount", "robot"))
    assert not names[0] & names[1]


def test_long_names_are_cut_but_stay_unique() -> None:
    owner_a = "tenant/" + "a" * 250
    owner_b = "tenant/" + "a" * 249 + "b"
    spec = ServiceAccountSpec(name="robot", cluster_role="view")
    a = {ref.name for ref, _ in minting.desired_objects(spec, owner=owner_a)}
    b = {ref.name for ref, _ in minting.desired_objects(spec, owner=owner_b)}
    assert all(len(n) <= 253 for n in a | b)
    assert not (a & b) - {"robot"}


def test_is_current_ignores_what_the_server_adds() -> None:
    spec = parse(name="robot", clusterRole="view")
    (_, sa), (_, crb) = minting.desired_objects(spec, owner="t/l")
    server_crb = {
        **crb,
        "metadata": {
            **crb["metadata"],
            "uid": "u",
            "resourceVersion": "7",
            "labels": {**crb["metadata"]["labels"], "extra": "x"},
        },
        "subjects": [{**crb["subjects"][0], "apiGroup": ""}],
    }
    assert minting.is_current(server_crb, crb)
    assert minting.is_current({**sa, "secrets": [{"name": "x"}]}, sa)
    assert not minting.is_current({**sa, "automountServiceAccountToken": True}, sa)
    assert not minting.is_current({**server_crb, "subjects": []}, crb)
    stripped = {**server_crb, "metadata": {**server_crb["metadata"], "annotations": {}}}
    assert not minting.is_current(stripped, crb)
