"""What a LandingSet wants (pure): name patterns, templates, plans and status counts."""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moonlander import api
from moonlander.api.landingset import SET_LABEL, NamePattern
from moonlander.controller import fleet


def make_set(
    pattern: str = "kubernetes-{{tenant}}-admin-kubeconfig",
    name: str = "{{tenant}}",
    match_labels: dict[str, str] | None = None,
    **spec: Any,
) -> api.LandingSet:
    secrets: dict[str, Any] = {"namePattern": pattern} if pattern else {}
    if match_labels:
        secrets["matchLabels"] = match_labels
    return api.parse_landingset(
        {
            "metadata": {
                "name": "fleet",
                "namespace": "tenant-root",
                "uid": "u-1",
                "generation": 3,
            },
            "spec": {
                "generators": [{"secrets": secrets}],
                "template": {"metadata": {"name": name}, "spec": spec},
            },
        }
    )


# -- name patterns --------------------------------------------------------------------------


def test_cozystack_names_give_the_tenant() -> None:
    pattern = NamePattern.compile("kubernetes-{{tenant}}-admin-kubeconfig")
    assert pattern.match("kubernetes-acme-admin-kubeconfig") == {"tenant": "acme"}
    assert pattern.match("kubernetes-a-b-admin-kubeconfig") == {"tenant": "a-b"}
    assert pattern.match("kubernetes--admin-kubeconfig") is None  # empty capture
    assert pattern.match("kubernetes-acme-admin-kubeconfig-old") is None
    assert pattern.match("xkubernetes-acme-admin-kubeconfig") is None


def test_two_captures_and_a_literal_name() -> None:
    pattern = NamePattern.compile("{{cluster}}.{{tenant}}-kubeconfig")
    assert pattern.match("harvey.acme-kubeconfig") == {"cluster": "harvey", "tenant": "acme"}
    assert NamePattern.compile("exact-name").match("exact-name") == {}
    assert NamePattern.compile("exact-name").match("exact-names") is None


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{{a}}{{b}}", "two captures need text between them"),
        ("{{secret}}-x", "set by Moonlander"),
        ("{{a}}-{{a}}", "used twice"),
        ("{{1a}}-x", "captures are written {{name}}"),
        ("{a}-x", "captures are written {{name}}"),
        ("{{a}}-{{b}}-{{c}}-{{d}}-{{e}}", "at most 4 captures"),
    ],
)
def test_bad_patterns_say_why(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        NamePattern.compile(text)


_LITERAL = st.text(alphabet="abcxyz.-", min_size=1, max_size=8)
_VALUE = st.text(alphabet="0123456789", min_size=1, max_size=60)


@given(st.lists(_LITERAL, min_size=3, max_size=5), st.data())
def test_a_pattern_gives_back_what_was_put_in(literals: list[str], data: st.DataObject) -> None:
    """Values that cannot contain the literals (digits only) always come back exactly."""
    captures = [f"c{i}" for i in range(len(literals) - 1)]
    text = literals[0] + "".join(
        f"{{{{{c}}}}}{lit}" for c, lit in zip(captures, literals[1:], strict=True)
    )
    values = {c: data.draw(_VALUE) for c in captures}
    name = literals[0] + "".join(
        values[c] + lit for c, lit in zip(captures, literals[1:], strict=True)
    )
    assert NamePattern.compile(text).match(name) == values


def test_matching_a_hostile_name_is_linear() -> None:
    """No regex engine: a name built to make backtracking explode matches in microseconds."""
    pattern = NamePattern.compile("{{a}}-{{b}}-{{c}}-{{d}}x")
    name = "-" * 252 + "y"
    started = time.perf_counter()
    for _ in range(1000):
        assert pattern.match(name) is None
    assert time.perf_counter() - started < 1.0


# -- templates and plans --------------------------------------------------------------------


def test_unknown_variables_are_refused_with_their_field() -> None:
    with pytest.raises(
        api.SpecError,
        match=r"template.spec.writeKubeconfigSecretName: unknown variable \{\{tenat\}\}",
    ):
        make_set(writeKubeconfigSecretName="{{tenat}}-x")


def test_generate_substitutes_and_defaults_the_source() -> None:
    landing_set = make_set(direction="ChildToParent", writeKubeconfigSecretName="{{tenant}}-parent")
    secrets = {
        "kubernetes-acme-admin-kubeconfig": {},
        "kubernetes-globex-admin-kubeconfig": {},
        "unrelated": {},
        # what Moonlander wrote is never a source, even when its name matches
        "kubernetes-loop-admin-kubeconfig": {api.MANAGED_BY_LABEL: api.MANAGED_BY},
    }
    out = fleet.generate(landing_set, secrets)
    assert sorted(out.wanted) == ["acme", "globex"]
    acme = out.wanted["acme"]
    assert acme.spec == {
        "direction": "ChildToParent",
        "writeKubeconfigSecretName": "acme-parent",
        "kubeconfigSecretName": "kubernetes-acme-admin-kubeconfig",
    }
    assert acme.labels == {SET_LABEL: "fleet"}
    body = fleet.landing_body(landing_set, acme)
    assert body["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert body["metadata"]["namespace"] == "tenant-root"


def test_label_generators_and_refusals_per_secret() -> None:
    landing_set = make_set(pattern="", name="{{secret}}-x", match_labels={"fleet": "yes"})
    out = fleet.generate(
        landing_set,
        {"a": {"fleet": "yes"}, "b": {"fleet": "no"}, "C_bad": {"fleet": "yes"}},
    )
    assert list(out.wanted) == ["a-x"]
    assert out.refused == {"C_bad": "generated name 'C_bad-x' is not a DNS subdomain"}


def test_a_memo_gives_what_generating_afresh_gives_and_keeps_each_source_once() -> None:
    landing_set = make_set(pattern="", name="{{secret}}-x", match_labels={"fleet": "yes"})
    secrets = {
        "a": {"fleet": "yes"},
        "b": {"fleet": "yes"},
        "C_bad": {"fleet": "yes"},
        "kubernetes-dup-admin-kubeconfig": {"fleet": "no"},
    }
    memo: fleet.Memo = {}
    first = fleet.generate(landing_set, secrets, memo=memo)
    assert first == fleet.generate(landing_set, secrets)
    assert len(memo) == 3  # a stamp, or a refusal, per matched source
    again = fleet.generate(landing_set, secrets, memo=memo)
    assert again == first
    assert again.wanted["a-x"] is first.wanted["a-x"]  # stamped once
    assert len(memo) == 3
    # A source whose variables changed is stamped anew; one no longer matched is gone.
    secrets["b"] = {"fleet": "no"}
    assert list(fleet.generate(landing_set, secrets, memo=memo).wanted) == ["a-x"]
    # A name collision is decided per call, whatever the memo holds.
    collide = make_set(pattern="kubernetes-{{tenant}}-admin-kubeconfig", name="same")
    memo = {}
    names = {"kubernetes-a-admin-kubeconfig": {}, "kubernetes-b-admin-kubeconfig": {}}
    for _ in range(2):
        out = fleet.generate(collide, names, memo=memo)
        assert list(out.wanted) == ["same"]
        assert out.refused == {
            "kubernetes-b-admin-kubeconfig": "generated name same is already generated for "
            "Secret kubernetes-a-admin-kubeconfig"
        }


def test_a_generated_spec_is_checked_like_a_landing() -> None:
    landing_set = make_set(kubeconfigSecretKey="{{tenant}}/bad")
    out = fleet.generate(landing_set, {"kubernetes-acme-admin-kubeconfig": {}})
    assert out.wanted == {}
    assert out.refused["kubernetes-acme-admin-kubeconfig"].startswith(
        "generated Landing acme: spec.kubeconfigSecretKey"
    )


def _stored(landing_set: api.LandingSet, wanted: fleet.Wanted, **spec: Any) -> dict[str, Any]:
    body = fleet.landing_body(landing_set, wanted)
    # as the API server returns it: the CRD's defaults filled in
    body["spec"] = {"suspend": False, "deletionPolicy": "Delete", **body["spec"], **spec}
    return body


def test_plan_creates_corrects_deletes_and_never_takes_anothers() -> None:
    landing_set = make_set()
    out = fleet.generate(
        landing_set,
        {f"kubernetes-{t}-admin-kubeconfig": {} for t in ("new", "same", "edited", "foreign")},
    )
    stale = fleet.Wanted(
        name="stale", secret="gone", labels={SET_LABEL: "fleet"}, annotations={}, spec={}
    )
    foreign = fleet.landing_body(landing_set, out.wanted["foreign"])
    foreign["metadata"]["ownerReferences"] = [{"uid": "someone-else"}]  # a forged label
    existing = {
        "same": _stored(landing_set, out.wanted["same"]),
        "edited": _stored(landing_set, out.wanted["edited"], suspend=True),
        "stale": _stored(landing_set, stale),
        "foreign": foreign,
    }
    planned = fleet.plan(landing_set, out, existing)
    assert [w.name for w in planned.create] == ["new"]
    assert [w.name for w in planned.update] == ["edited"]
    assert planned.delete == ["stale"]
    assert list(planned.blocked) == ["foreign"]


def test_summary_counts_ready_failing_and_refused() -> None:
    landing_set = make_set()
    out = fleet.generate(
        landing_set,
        {f"kubernetes-{t}-admin-kubeconfig": {} for t in ("ok", "bad", "new")},
    )
    out.refused["weird"] = "generated name 'X' is not a DNS subdomain"

    def with_ready(name: str, status: str, reason: str) -> dict[str, Any]:
        body = fleet.landing_body(landing_set, out.wanted[name])
        body["status"] = {"conditions": [{"type": "Ready", "status": status, "reason": reason}]}
        return body

    existing = {
        "ok": with_ready("ok", "True", "Synced"),
        "bad": with_ready("bad", "False", "NotPermitted"),
    }
    status = fleet.summarize(landing_set, out, fleet.plan(landing_set, out, existing), existing)
    assert (status.desired, status.ready, status.failing) == (3, 1, 2)
    assert status.failing_landings == (
        "bad: NotPermitted",
        "Secret weird: generated name 'X' is not a DNS subdomain",
    )
    assert status.conditions[0].reason == "LandingsFailing"
    assert status.observed_generation == 3


def test_cluster_api_generator_uses_each_clusters_kubeconfig_secret() -> None:
    landing_set = api.parse_landingset(
        {
            "metadata": {"name": "capi", "namespace": "fleet", "uid": "u"},
            "spec": {
                "generators": [{"clusterAPI": {"matchLabels": {"env": "prod"}}}],
                "template": {"metadata": {"name": "{{cluster}}-access"}, "spec": {}},
            },
        }
    )
    out = fleet.generate(
        landing_set, {}, {"east": {"env": "prod"}, "west": {"env": "prod"}, "dev": {"env": "dev"}}
    )
    assert sorted(out.wanted) == ["east-access", "west-access"]
    assert out.wanted["east-access"].spec == {
        "kubeconfigSecretName": "east-kubeconfig",
        "kubeconfigSecretKey": "value",
    }


def test_a_generator_is_exactly_one_kind() -> None:
    for generators in (
        [{}],
        [{"secrets": {"namePattern": "x"}, "clusterAPI": {}}],
        [{"clusterAPI": {}, "clusterProfiles": {}}],
    ):
        with pytest.raises(
            api.SpecError, match="exactly one of secrets, clusterAPI and clusterProfiles"
        ):
            api.parse_landingset(
                {"metadata": {"name": "s"}, "spec": {"generators": generators, "template": {}}}
            )
