"""Error messages of moonlander.credentials never carry secret material."""

from __future__ import annotations

import string
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from moonlander.credentials import (
    KubeconfigError,
    Policy,
    find_problems,
    parse_kubeconfig,
)

from ...support.kubeconfigs import (
    DEFAULT,
    FAST,
    PERMISSIVE,
    PKI,
    _outcome,
    _pki,
    b64,
    base_doc,
    doc_with,
)


def test_names_in_messages_are_truncated_and_escaped(pki: PKI) -> None:
    long_name = "x" * 500 + "\u202e\n"
    doc = base_doc(pki)
    doc["contexts"][0]["context"]["cluster"] = long_name
    (problem,) = find_problems(yaml.safe_dump(doc))
    assert problem.reason == "MissingCluster"
    assert "x" * 64 + '..."' in str(problem)
    assert "x" * 65 not in str(problem)
    assert "\u202e" not in str(problem)
    assert "\n" not in str(problem)


SECRET_SUFFIX = st.text(alphabet=string.ascii_letters + string.digits, min_size=8, max_size=20)


@st.composite
def hostile_with_secret(draw: st.DrawFn) -> tuple[str, str]:
    """A hostile document with one secret planted in many places that messages must not echo."""
    pki = _pki()
    secret = "SECRETPLANT" + draw(SECRET_SUFFIX)

    def pem(label: str) -> str:
        return f"-----BEGIN {label}-----\n{secret}\n-----END {label}-----\n"

    def secret_value() -> str:
        return draw(
            st.sampled_from(
                [
                    secret,
                    secret + " tail",
                    b64(secret),
                    b64(pem("CERTIFICATE")),
                    b64(pem("PRIVATE KEY")),
                    b64(pem("ENCRYPTED PRIVATE KEY")),
                    pem("CERTIFICATE"),
                ]
            )
        )

    user_pool: dict[str, Callable[[], Any]] = {
        "token": secret_value,
        "password": secret_value,
        "username": secret_value,
        "client-certificate-data": secret_value,
        "client-key-data": secret_value,
        "exec": lambda: {"command": secret, "env": [{"name": "T", "value": secret}]},
        "auth-provider": lambda: {"name": "oidc", "config": {"id-token": secret}},
        "tokenFile": lambda: "/var/" + secret,
        "client-key": lambda: "/var/" + secret,
        "as": lambda: secret,
        "as-groups": lambda: [secret],
        "as-user-extra": lambda: {"scopes": [secret]},
        "unknown-field": secret_value,
        "extensions": lambda: [{"name": "x", "extension": {"token": secret}}],
    }
    cluster_pool: dict[str, Callable[[], Any]] = {
        "certificate-authority-data": secret_value,
        "server": lambda: draw(
            st.sampled_from(
                [
                    f"https://admin:{secret}@10.0.0.1:6443",
                    f"https://{secret}@10.0.0.1",
                    f"https://10.0.0.1:6443/?token={secret}",
                    f"https://10.0.0.1:6443/#{secret}",
                    f"http://admin:{secret}@10.0.0.1",
                    f"https://169.254.169.254/?x={secret}",
                    f"https://10.0.0.1/{secret}/../x",
                    f"https://10.0.0.1/ {secret}",
                    f"ftp://user:{secret}@h",
                    secret,
                ]
            )
        ),
        "proxy-url": lambda: f"http://user:{secret}@proxy:3128",
        "certificate-authority": lambda: "/etc/" + secret,
        "tls-server-name": lambda: secret + " bad",
        "insecure-skip-tls-verify": secret_value,
        "unknown-field": secret_value,
    }
    top_pool: dict[str, Callable[[], Any]] = {
        "kind": secret_value,
        "apiVersion": secret_value,
        "unknown-field": secret_value,
        "preferences": lambda: {"x": secret},
        "clusters": lambda: secret,
    }
    doc = base_doc(pki)
    for target, pool in (
        (doc["users"][0]["user"], user_pool),
        (doc["clusters"][0]["cluster"], cluster_pool),
        (doc, top_pool),
    ):
        for key in draw(st.lists(st.sampled_from(sorted(pool)), unique=True, max_size=4)):
            target[key] = pool[key]()
    document = yaml.safe_dump(doc, sort_keys=False)
    broken = draw(
        st.sampled_from(
            [
                None,
                f"token: {secret}: x\n",
                f"token: '{secret}\n",
                f'token: "{secret}\\q"\n',
                f"token: !{secret} x\n",
                f"token: !<{secret}> x\n",
                f"token: !{secret}!x y\n",
                f"token: &{secret} x\n",
                f"token: *{secret}\n",
                f"token: {secret}\x01\n",
                f"token: [{secret}\n",
                f"%TAG !{secret}! tag:x,2000:\n---\ntoken: x\n",
                f"token: x\ntoken: {secret}\n",
            ]
        )
    )
    if broken is not None:
        document = draw(st.sampled_from([broken, document + broken, broken + document]))
    return document, secret


@FAST
@given(hostile_with_secret(), st.sampled_from([DEFAULT, PERMISSIVE]))
def test_errors_never_contain_secrets(planted: tuple[str, str], policy: Policy) -> None:
    document, secret = planted
    markers = (secret, b64(secret)[:16], "SECRETPLANT", b64("SECRETPLANT")[:12])

    def assert_clean(text: str) -> None:
        for marker in markers:
            assert marker not in text

    for problem in find_problems(document, policy):
        assert_clean(str(problem))
        assert_clean(repr(problem))
        assert problem.__context__ is None
    result = _outcome(document, policy)
    if isinstance(result, KubeconfigError):
        assert_clean(str(result))
        assert_clean(repr(result))
        assert result.__context__ is None
        assert result.__cause__ is None
    else:
        assert_clean(repr(result))
        assert_clean(str(result))


def test_secret_property_sanity_check(pki: PKI) -> None:
    """The planted secrets really do reach the parser: a token-only plant parses successfully."""
    creds = parse_kubeconfig(doc_with(pki, user={"token": "SECRETPLANTabc123"}))
    assert creds.token == "SECRETPLANTabc123"
    assert "SECRETPLANT" not in repr(creds)


def test_token_like_keys_are_not_echoed(pki: PKI) -> None:
    """A token pasted where a key belongs must not end up in the message."""
    pasted = "sha256~" + "k" * 43
    for document in (
        doc_with(pki, user={pasted: None}),
        f"{{{pasted}: 1, {pasted}: 2}}\n",
    ):
        (problem,) = find_problems(document)
        assert pasted not in str(problem)
        assert "(name not shown)" in str(problem)


# Keys that look like field names but are credentials: a 40-character base64 secret and a
# short one that the old "looks like a field name" rule would have echoed.
PASTED_KEYS = ["QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVoxMjM0", "abc123", "ghp_0123456789abcdefXYZ"]


def _key_placements(pki: PKI, key: str) -> dict[str, str]:
    """Documents with ``key`` as an unknown key in every place the checker reports one."""
    entry = base_doc(pki)
    entry["users"][0][key] = "x"
    return {
        "top level": doc_with(pki, top={key: "x"}),
        "cluster": doc_with(pki, cluster={key: "x"}),
        "user": doc_with(pki, user={key: "x"}),
        "context": doc_with(pki, context={key: "x"}),
        "next to name": yaml.safe_dump(entry, sort_keys=False),
        "duplicate": f"kind: Config\n{key}: 1\n{key}: 2\n",
        "duplicate nested": f"preferences:\n  {key}: 1\n  {key}: 2\n",
    }


@pytest.mark.parametrize("key", PASTED_KEYS)
def test_unknown_keys_are_never_echoed(pki: PKI, key: str) -> None:
    assert len(PASTED_KEYS[0]) == 40
    for place, document in _key_placements(pki, key).items():
        problems = find_problems(document, PERMISSIVE)
        assert [p.reason for p in problems] in (["UnknownField"], ["DuplicateKey"]), place
        with pytest.raises(KubeconfigError) as caught:
            parse_kubeconfig(document, PERMISSIVE)
        for text in (str(problems[0]), repr(problems[0]), str(caught.value), repr(caught.value)):
            assert key not in text, place
            assert "(name not shown)" in text, place


def test_unknown_keys_are_named_by_position(pki: PKI) -> None:
    (problem,) = find_problems(doc_with(pki, cluster={"abc123": "x"}))
    assert str(problem).startswith(
        'cluster "prod": unknown field (name not shown) at key 3 of 3 (allowed: '
    )
    (problem,) = find_problems("kind: Config\nabc123: 1\nabc123: 2\n")
    assert str(problem).startswith("duplicate key (name not shown) (line 3, column 1): ")


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"cluster": {"token": "x"}}, 'cluster "prod": unknown field "token" (allowed: '),
        ({"user": {"server": "x"}}, 'user "admin": unknown field "server" (allowed: '),
        ({"context": {"exec": "x"}}, 'context "prod-admin": unknown field "exec" (allowed: '),
        ({"top": {"namespace": "x"}}, 'top level: unknown field "namespace" (allowed: '),
        ({"top": {"colors": True}}, 'top level: unknown field "colors" (allowed: '),
    ],
    ids=["token-in-cluster", "server-in-user", "exec-in-context", "namespace-top", "colors"],
)
def test_known_field_names_are_still_named(
    pki: PKI, changes: dict[str, Any], expected: str
) -> None:
    (problem,) = find_problems(doc_with(pki, **changes))
    assert problem.reason == "UnknownField"
    assert str(problem).startswith(expected)


def test_known_names_are_named_next_to_name_and_when_duplicated(pki: PKI) -> None:
    doc = base_doc(pki)
    doc["users"][0]["namespace"] = "x"
    (problem,) = find_problems(yaml.safe_dump(doc, sort_keys=False))
    assert str(problem) == 'user "admin": unknown field "namespace" next to name'
    (problem,) = find_problems("users: []\nusers: []\n")
    assert str(problem).startswith('duplicate key "users" (line 2, column 1)')
