"""The pure parts of the CLI: flag names in messages, kubectl's kubeconfig search and merge,
``status`` summaries and their text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from moonlander.cli import kubeconfig as own
from moonlander.cli import status
from moonlander.cli.errors import CliError, Exit, as_flags
from moonlander.cli.mint import _flag_names
from moonlander.cli.output import render


def test_policy_field_names_become_flags() -> None:
    text = "denied (an operator can permit it with allowed_networks); allow_loopback enables them"
    assert as_flags(text) == (
        "denied (an operator can permit it with --allow-network); --allow-loopback enables them"
    )
    assert as_flags("not_allowed_networks stays") == "not_allowed_networks stays"
    assert as_flags("server override: server http://x: plain HTTP") == (
        "--server: server http://x: plain HTTP"
    )
    assert as_flags("(keys: a, b); set spec.kubeconfigSecretKey") == "(keys: a, b); pass --key"


def test_spec_paths_become_mint_flags() -> None:
    assert _flag_names("serviceAccount.expirationSeconds: Expected `int` >= 600") == (
        "--expiration: Expected `int` >= 600"
    )
    assert _flag_names("serviceAccount.roles[0].kind: bad") == "--role: bad"
    assert "pass --cluster-role or --role" in _flag_names(
        "serviceAccount: grants nothing: set clusterRole, roles or rules"
    )


def test_kubeconfig_search_order(tmp_path: Path) -> None:
    home = tmp_path / "home"
    flag = tmp_path / "flag"
    assert own.kubeconfig_files(flag, {"KUBECONFIG": "/a"}, home) == [flag]
    assert own.kubeconfig_files(None, {"KUBECONFIG": "/a:/b"}, home) == [Path("/a"), Path("/b")]
    assert own.kubeconfig_files(None, {}, home) == []  # in-cluster
    (home / ".kube").mkdir(parents=True)
    (home / ".kube" / "config").write_text("{}")
    assert own.kubeconfig_files(None, {"KUBECONFIG": ""}, home) == [home / ".kube" / "config"]


def test_merge_first_definition_wins() -> None:
    a = {"current-context": "one", "contexts": [{"name": "one", "context": {"cluster": "x"}}]}
    b = {
        "current-context": "two",
        "contexts": [{"name": "one", "context": {"cluster": "y"}}, {"name": "two"}],
        "clusters": [{"name": "x"}],
    }
    merged = own.merge([a, b])
    assert merged["current-context"] == "one"
    assert [c["name"] for c in merged["contexts"]] == ["one", "two"]
    assert merged["contexts"][0]["context"]["cluster"] == "x"


def test_kubeconfig_from_merged_files_and_context(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.write_text("clusters: [{name: c, cluster: {server: 'https://a:6443'}}]\n")
    two.write_text(
        "current-context: dev\n"
        "contexts: [{name: dev, context: {cluster: c, namespace: team}}, "
        "{name: ops, context: {cluster: c}}]\n"
    )
    env = {"KUBECONFIG": f"{one}:{tmp_path / 'absent'}:{two}"}
    target = own.load(None, None, env, tmp_path)
    assert (target.server, target.namespace, target.source) == (
        "https://a:6443",
        "team",
        "$KUBECONFIG",
    )
    assert own.load(None, "ops", env, tmp_path).namespace == "default"
    with pytest.raises(CliError) as err:
        own.load(None, "prod", env, tmp_path)
    assert err.value.code == Exit.USAGE


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("a: [", "invalid YAML (line 1)"),
        ("- 1\n", "not a kubeconfig"),
        ("clusters: 3", "not a kubeconfig"),
    ],
)
def test_unreadable_kubeconfigs(tmp_path: Path, text: str, said: str) -> None:
    path = tmp_path / "kc"
    path.write_text(text)
    with pytest.raises(CliError) as err:
        own.load(path, None, {}, tmp_path)
    assert err.value.code == Exit.UNREACHABLE and said in err.value.message


SYNCED = {
    "metadata": {"namespace": "team", "name": "talos", "generation": 2},
    "spec": {"kubeconfigSecretName": "harvey-admin", "serviceAccount": {"name": "robot"}},
    "status": {
        "observedGeneration": 2,
        "target": "apps/talos-kubeconfig",
        "lastSyncTime": "2026-12-07T13:00:00Z",
        "landed": {
            "cluster": "https://child:6443",
            "server": "https://parent:6443",
            "sourceKey": "admin.conf",
            "serviceAccount": "moonlander-minted/robot",
            "tokenExpiresAt": "2026-12-07T14:00:00Z",
        },
        "conditions": [{"type": "Ready", "status": "True", "reason": "Synced", "message": "ok"}],
    },
}
REFUSED = {
    "metadata": {
        "namespace": "team",
        "name": "evil",
        "generation": 3,
        "ownerReferences": [{"kind": "LandingSet", "name": "fleet", "uid": "u"}],
    },
    "spec": {"kubeconfigSecretName": "x", "kubeconfigSecretNamespace": "other"},
    "status": {
        "observedGeneration": 2,
        "conditions": [
            {"type": "Ready", "status": "False", "reason": "NotPermitted", "message": "no grant"},
            {"type": "Stalled", "status": "True", "reason": "NotPermitted"},
            {"type": "Reconciling", "status": "False", "reason": "Done"},
        ],
        "target": "team/remote-kubeconfig",
    },
}
SET = {
    "metadata": {"namespace": "team", "name": "fleet"},
    "status": {
        "desired": 3,
        "ready": 2,
        "failing": 1,
        "failingLandings": ["fleet-b: NotPermitted"],
        "conditions": [{"type": "Ready", "status": "False", "reason": "LandingsFailing"}],
    },
}


def test_status_text_says_what_landed_where_and_why_not() -> None:
    summaries = status.order(
        [
            status.landing_summary(SYNCED),
            status.landing_summary(REFUSED),
            status.landingset_summary(SET),
        ]
    )
    assert [s["name"] for s in summaries] == ["fleet", "evil", "talos"]
    text = status.render_text(summaries, status.Query("team"))
    talos = text.split("\n\n")[2]
    assert talos.splitlines() == [
        "Landing talos",
        "  Ready:     True Synced",
        "  Source:    team/harvey-admin key admin.conf (ParentToChild)",
        "  Landed:    apps/talos-kubeconfig in https://child:6443",
        "  Points at: https://parent:6443",
        "  Identity:  moonlander-minted/robot, token expires 2026-12-07T14:00:00Z",
        "  Synced at: 2026-12-07T13:00:00Z",
    ]
    evil = text.split("\n\n")[1]
    assert evil.startswith("Landing evil (of LandingSet fleet)\n")
    assert "Ready:     False NotPermitted (generation 3 not yet seen; status is of 2)" in evil
    assert "Stalled:   NotPermitted" in evil and "Reconciling" not in evil
    assert "Target:    team/remote-kubeconfig (nothing landed)" in evil
    assert "Message:   no grant" in evil and "Source:    other/x (ParentToChild)" in evil
    fleet = text.split("\n\n")[0]
    assert "Landings:  2/3 ready, 1 failing" in fleet and "- fleet-b: NotPermitted" in fleet
    assert "Landing team/talos" in status.render_text(summaries, status.Query(None))


def test_status_of_nothing_and_of_a_new_landing() -> None:
    assert status.render_text([], status.Query("team")) == "No Landings found in namespace team.\n"
    fresh = status.landing_summary({"metadata": {"namespace": "t", "name": "n"}, "spec": {}})
    assert (fresh["ready"], fresh["reason"], fresh["source"]) == (
        "Unknown",
        "Pending",
        "t/kubernetes-n-admin-kubeconfig",
    )


def test_machine_readable_output() -> None:
    data = {"items": [status.landing_summary(SYNCED)]}
    assert json.loads(render(data, "json")) == data
    assert yaml.safe_load(render(data, "yaml")) == data


def test_a_landing_the_controller_has_not_seen_says_so() -> None:
    new = status.landing_summary(
        {
            "metadata": {"namespace": "t", "name": "n", "generation": 1},
            "spec": {},
            "status": {"observedGeneration": 0},  # the CRD's default
        }
    )
    text = status.render_text([new], status.Query("t"))
    assert "(generation 1 not yet seen by the controller)" in text
    assert "status is of 0" not in text
