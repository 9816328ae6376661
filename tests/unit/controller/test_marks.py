"""Ownership marks are made, judged and compared in one place (api.ownership)."""

from __future__ import annotations

from moonlander import api, minting
from moonlander.api import ownership as own
from moonlander.controller import outputs, plan


def test_one_is_current_and_one_adoption_rule() -> None:
    assert plan.is_current is own.is_current
    assert outputs.is_current is own.is_current
    assert minting.is_current is own.is_current
    assert plan.check_adoptable is own.check_adoptable


def test_every_writer_puts_the_same_marks() -> None:
    owner, uid = "tenant-a/l", "uid-1"
    landed = plan.desired_secret(
        name="s", namespace="n", owner=owner, owner_uid=uid, kubeconfig="k"
    )
    configs = outputs.crossplane_objects(
        api.CrossplaneSpec(),
        secret_name="s",
        secret_namespace="n",
        owner=owner,
        owner_uid=uid,
    )
    identity = [
        body
        for _, body in minting.desired_objects(
            api.ServiceAccountSpec(name="robot", namespace="m", cluster_role="view"),
            owner=owner,
            owner_uid=uid,
        )
    ]
    for body in [landed, *configs, *identity]:
        assert own.ownership(body, owner) is own.Ownership.OURS, body["kind"]
        assert body["metadata"]["annotations"][api.OWNER_UID_ANNOTATION] == uid
        assert own.is_current(body, body)
    assert own.ownership(landed, "tenant-a/other") is own.Ownership.OTHER_LANDING


def test_is_current_ignores_what_the_server_adds_but_not_what_we_set() -> None:
    body = plan.desired_secret(name="s", namespace="n", owner="o/l", owner_uid="u", kubeconfig="k")
    served = {
        **body,
        "metadata": {
            **body["metadata"],
            "resourceVersion": "9",
            "labels": {**body["metadata"]["labels"], "team": "x"},
        },
    }
    assert own.is_current(served, body)
    assert not own.is_current({**body, "data": {}}, body)
    assert not own.is_current({**body, "type": "kubernetes.io/tls"}, body)
    unmarked = {**body, "metadata": {**body["metadata"], "labels": {}}}
    assert not own.is_current(unmarked, body)
