"""output.clusterProfile without a cluster: the objects written, reading them back, the spec
rule and the grant (tests/e2e/test_clusterprofile.py has them on real API servers)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from moonlander import api
from moonlander.api.parse import SpecError
from moonlander.controller import fleet, profiles

from .test_authorize import allowed, landing, policy, refused

CA = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
HEALTHY = profiles.Health(True, "Reachable", "ok", "v1.37.2")
MINT = {"name": "reader", "namespace": "tenant-a", "clusterRole": "view"}


def _status(**kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "name": "c1",
        "server": "https://c1.example:6443",
        "ca_data": CA,
        "tls_server_name": None,
        "health": HEALTHY,
        "generation": None,
        "transition_time": "2026-01-01T00:00:00Z",
    }
    args.update(kw)
    return profiles.profile_status(**args)


def test_the_profile_names_moonlander_as_its_cluster_manager() -> None:
    obj = profiles.profile_object(
        name="c1", namespace="kueue-system", owner="t/l", owner_uid="u", display_name="C 1"
    )
    assert obj["apiVersion"] == "multicluster.x-k8s.io/v1alpha1"
    assert obj["kind"] == "ClusterProfile"
    assert obj["spec"] == {"clusterManager": {"name": "moonlander"}, "displayName": "C 1"}
    assert obj["metadata"]["labels"]["x-k8s.io/cluster-manager"] == "moonlander"
    assert obj["metadata"]["labels"][api.MANAGED_BY_LABEL] == api.MANAGED_BY
    assert obj["metadata"]["annotations"][api.OWNER_ANNOTATION] == "t/l"
    assert "status" not in obj  # written through the status subresource


def test_the_status_holds_the_secretreader_access_both_ways() -> None:
    status = _status()
    provider = {
        "name": "secretreader",
        "cluster": {
            "server": "https://c1.example:6443",
            "certificate-authority-data": base64.b64encode(CA).decode(),
            "extensions": [
                {"name": "client.authentication.k8s.io/exec", "extension": {"clusterName": "c1"}}
            ],
        },
    }
    assert status["accessProviders"] == [provider]
    assert status["credentialProviders"] == [provider]
    assert status["version"] == {"kubernetes": "v1.37.2"}
    (cond,) = status["conditions"]
    assert (cond["type"], cond["status"], cond["reason"]) == (
        "ControlPlaneHealthy",
        "True",
        "Reachable",
    )


def test_the_condition_keeps_its_transition_time_until_it_changes() -> None:
    first = _status()
    again = _status(transition_time="2026-02-02T00:00:00Z", previous=first)
    assert again["conditions"][0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert profiles.status_is_current({"status": first}, again)
    down = _status(
        transition_time="2026-02-02T00:00:00Z",
        previous=first,
        health=profiles.Health(False, "Unreachable", "no"),
    )
    assert down["conditions"][0]["lastTransitionTime"] == "2026-02-02T00:00:00Z"
    assert "version" not in down
    assert not profiles.status_is_current({"status": first}, down)


@pytest.mark.parametrize(
    ("answer", "version"),
    [
        ({"gitVersion": "v1.37.2"}, "v1.37.2"),
        ({"gitVersion": "v1.30.0+k3s1"}, "v1.30.0+k3s1"),
        ({"gitVersion": "v1.30 <script>"}, None),
        ({"gitVersion": "x" * 100}, None),
        ({"gitVersion": 5}, None),
        (["v1.30.0"], None),
    ],
)
def test_only_a_plain_version_is_kept(answer: object, version: str | None) -> None:
    assert profiles.kubernetes_version(answer) == version


def test_the_token_secret_holds_the_token_only() -> None:
    secret = profiles.token_secret(
        name="c1", namespace="kueue-system", owner="t/l", owner_uid="u", token="tok"
    )
    assert secret["data"] == {"token": base64.b64encode(b"tok").decode()}
    assert secret["type"] == "Opaque"
    assert "tok" not in repr(secret["metadata"])


def test_reading_a_profile_back_gives_server_ca_and_secret() -> None:
    profile = {"metadata": {"name": "c1"}, "status": _status()}
    access = profiles.access_of(profile)
    assert access == profiles.Access("https://c1.example:6443", CA, None, "c1")
    document = profiles.kubeconfig_of(access, "tok", "c1")
    assert document["users"][0]["user"] == {"token": "tok"}


def test_access_providers_win_over_credential_providers() -> None:
    status = _status()
    status["credentialProviders"] = [
        {"name": "secretreader", "cluster": {"server": "https://old.example"}}
    ]
    access = profiles.access_of({"metadata": {"name": "c1"}, "status": status})
    assert access.server == "https://c1.example:6443"
    del status["accessProviders"]
    access = profiles.access_of({"metadata": {"name": "c1"}, "status": status})
    assert (access.server, access.secret_name) == ("https://old.example", "c1")


@pytest.mark.parametrize(
    ("cluster", "message"),
    [
        ({"server": "http://plain"}, "no https server"),
        ({"server": "https://x", "proxy-url": "http://p"}, "proxy-url"),
        ({"server": "https://x", "insecure-skip-tls-verify": True}, "insecure-skip-tls-verify"),
        ({"server": "https://x", "certificate-authority-data": "!!"}, "not base64"),
        (
            {
                "server": "https://x",
                "extensions": [
                    {
                        "name": "client.authentication.k8s.io/exec",
                        "extension": {"clusterName": "../etc"},
                    }
                ],
            },
            "no valid Secret",
        ),
    ],
)
def test_a_profile_moonlander_cannot_use_is_refused(cluster: dict[str, Any], message: str) -> None:
    profile = {
        "metadata": {"name": "c1"},
        "status": {"accessProviders": [{"name": "secretreader", "cluster": cluster}]},
    }
    with pytest.raises(profiles.ProfileError, match=message):
        profiles.access_of(profile)


def test_a_profile_without_the_provider_is_refused() -> None:
    with pytest.raises(profiles.ProfileError, match="no secretreader"):
        profiles.access_of({"metadata": {"name": "c1"}, "status": {"accessProviders": []}})
    with pytest.raises(profiles.ProfileError, match="no status"):
        profiles.access_of({"metadata": {"name": "c1"}})


def test_a_profile_output_needs_a_mint() -> None:
    with pytest.raises(SpecError, match="needs serviceAccount"):
        api.parse_spec({"output": {"clusterProfile": {}}}, name="l")
    spec = api.parse_spec({"output": {"clusterProfile": {}}, "serviceAccount": MINT}, name="l")
    assert spec.output.cluster_profile == api.ClusterProfileSpec()


def _profile_landing(target: str) -> api.Landing:
    return landing(
        direction="ChildToParent",
        targetNamespace=target,
        serviceAccount=MINT,
        output={"clusterProfile": {"name": "c1"}},
    )


MINT_GRANT = {
    "clusterRoles": ["view"],
    "clusterWide": True,
    "serviceAccountNamespaces": ["tenant-a"],
}


def test_a_profile_in_the_own_namespace_needs_only_the_mint() -> None:
    allowed(_profile_landing("tenant-a"), [policy(mint=MINT_GRANT)])


def test_a_profile_elsewhere_needs_one_policy_granting_target_and_profiles() -> None:
    target_only = policy("target", mint=MINT_GRANT, targetNamespaces=["kueue-system"])
    message = refused(_profile_landing("kueue-system"), [target_only])
    assert "outputs.clusterProfiles.namespaces" in message and "kueue-system" in message
    profiles_only = policy(
        "profiles", outputs={"clusterProfiles": {"namespaces": ["kueue-system"]}}
    )
    refused(_profile_landing("kueue-system"), [target_only, profiles_only])
    whole = policy(
        "whole",
        targetNamespaces=["kueue-system"],
        outputs={"clusterProfiles": {"namespaces": ["kueue-system"]}},
    )
    allowed(_profile_landing("kueue-system"), [target_only, whole])


def test_the_profile_grant_never_opens_the_controller_namespace() -> None:
    whole = policy(
        "whole",
        mint=MINT_GRANT,
        targetNamespaces=["moonlander-system"],
        outputs={"clusterProfiles": {"namespaces": ["moonlander-system"]}},
    )
    assert "never" in refused(_profile_landing("moonlander-system"), [whole])


# -- the clusterProfiles generator -------------------------------------------------------------


def _profile_set(template_spec: dict[str, Any]) -> Any:
    return api.parse_landingset(
        {
            "metadata": {"name": "mk", "namespace": "kueue-system", "uid": "u"},
            "spec": {
                "generators": [
                    {"clusterProfiles": {"matchLabels": {"x-k8s.io/cluster-manager": "ocm"}}}
                ],
                "template": {"metadata": {"name": "{{profile}}-worker"}, "spec": template_spec},
            },
        }
    )


def test_the_generator_makes_one_landing_per_matching_profile() -> None:
    ocm = {"x-k8s.io/cluster-manager": "ocm"}
    mine = {**ocm, api.MANAGED_BY_LABEL: api.MANAGED_BY}
    out = fleet.generate(
        _profile_set({"writeKubeconfigSecretName": "{{profile}}-kubeconfig"}),
        {"east": {}},  # a Secret of that name is not a source here
        profiles={"east": ocm, "west": ocm, "gke": {"x-k8s.io/cluster-manager": "gke"}, "ml": mine},
    )
    assert sorted(out.wanted) == ["east-worker", "west-worker"]  # never a profile Moonlander wrote
    assert out.wanted["east-worker"].spec == {
        "clusterProfileName": "east",
        "writeKubeconfigSecretName": "east-kubeconfig",
    }
    assert out.wanted["east-worker"].parsed is not None


def test_a_template_naming_a_secret_too_is_refused_per_profile() -> None:
    out = fleet.generate(
        _profile_set({"kubeconfigSecretName": "x"}),
        {},
        profiles={"east": {"x-k8s.io/cluster-manager": "ocm"}},
    )
    assert not out.wanted
    assert "clusterProfileName" in out.refused["east"]


def test_an_unreachable_cluster_keeps_its_access_and_version() -> None:
    first = _status()
    down = profiles.with_health(
        first, profiles.Health(False, "Unreachable", "no"), "2026-03-03T00:00:00Z"
    )
    assert down["accessProviders"] == first["accessProviders"]
    assert down["version"] == first["version"]
    (cond,) = down["conditions"]
    assert (cond["status"], cond["reason"], cond["lastTransitionTime"]) == (
        "False",
        "Unreachable",
        "2026-03-03T00:00:00Z",
    )
    again = profiles.with_health(
        down, profiles.Health(False, "Unreachable", "no"), "2026-04-04T00:00:00Z"
    )
    assert profiles.status_is_current({"status": down}, again)
