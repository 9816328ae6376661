"""The admission webhook, wired into the real parent API server and played against as the
tenant (issue 23, findings 8-11).

The session controller serves the webhook (tests/e2e/conftest.py); ``wired``
(tests/e2e/tenants.py) registers it with the parent API server (failurePolicy Fail) for the
namespaces that carry ``tenants.LABEL``, as it is for every tenancy suite, so other suites
are unaffected. The API server presents its client certificate to the webhook
(moonlander_dev.clusters' admission configuration), as it must in production
(docs/security.md, "The admission webhook"). These tests are about admission itself: they
assert the webhook's answers."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from lightkube import ApiError
from lightkube.models.meta_v1 import ObjectMeta, OwnerReference
from lightkube.models.rbac_v1 import PolicyRule, RoleRef, Subject
from lightkube.resources.core_v1 import ServiceAccount
from lightkube.resources.rbac_authorization_v1 import (
    ClusterRole,
    ClusterRoleBinding,
    Role,
    RoleBinding,
)

from moonlander import api
from moonlander.kube.resources import LandingResource, LandingSetResource
from moonlander_dev import pki

from .conftest import Env
from .harness import (
    eventually,
    landing,
    landing_gone,
    landing_policy,
    measure,
    secret_with,
    wait_reason,
)
from .tenants import Tenant, refused_by_webhook

pytestmark = pytest.mark.e2e

MINT_NAMESPACE = "moonlander-minted"
SOURCE = "kubernetes-harvey-admin-kubeconfig"


async def _grant(env: Env, tenant: Tenant, name: str, *rules: PolicyRule) -> None:
    """Gives the tenant ``rules`` in its own namespace (a Role and RoleBinding)."""
    ns = tenant.namespace
    await env.local.create(Role(metadata=ObjectMeta(name=name, namespace=ns), rules=list(rules)))
    await env.local.create(
        RoleBinding(
            metadata=ObjectMeta(name=name, namespace=ns),
            roleRef=RoleRef(apiGroup="rbac.authorization.k8s.io", kind="Role", name=name),
            subjects=[Subject(kind="ServiceAccount", name="tenant", namespace=ns)],
        )
    )


def _rbac(verb: str, resource: str, *names: str) -> PolicyRule:
    return PolicyRule(
        apiGroups=["rbac.authorization.k8s.io"],
        resources=[resource],
        verbs=[verb],
        resourceNames=list(names) or None,
    )


_refused = refused_by_webhook


# -- finding 8: only the API server may ask ---------------------------------------------------


def _review_for(namespace: str, user: str) -> dict[str, Any]:
    """What an attacker would POST: may ``user`` bind cluster-admin?"""
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "00000000-0000-0000-0000-000000000008",
            "kind": {"group": api.GROUP, "version": api.VERSION, "kind": api.KIND},
            "resource": {"group": api.GROUP, "version": api.VERSION, "resource": api.PLURAL},
            "requestKind": {"group": api.GROUP, "version": api.VERSION, "kind": api.KIND},
            "requestResource": {
                "group": api.GROUP,
                "version": api.VERSION,
                "resource": api.PLURAL,
            },
            "operation": "CREATE",
            "name": "oracle",
            "namespace": namespace,
            "userInfo": {"username": user},
            "object": {
                "metadata": {"name": "oracle", "namespace": namespace},
                "spec": {"serviceAccount": {"name": "x", "clusterRole": "cluster-admin"}},
            },
            "oldObject": None,
            "dryRun": False,
            "options": None,
        },
    }


def _post(url: str, ca_pem: bytes, review: dict[str, Any], client: Any = None) -> dict[str, Any]:
    ctx = ssl.create_default_context(cadata=ca_pem.decode())
    if client is not None:
        ctx.load_cert_chain(*client)
    request = urllib.request.Request(  # noqa: S310 - https, the test's own URL
        url, data=json.dumps(review).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, context=ctx, timeout=5) as resp:  # noqa: S310
        return dict(json.loads(resp.read()))


async def _no_answer(url: str, ca_pem: bytes, review: dict[str, Any], client: Any = None) -> str:
    """Why the POST got no AdmissionReview back (fails when it got one)."""
    try:
        answered = await asyncio.to_thread(_post, url, ca_pem, review, client)
    except urllib.error.HTTPError as err:  # an HTTP answer is an answer
        raise AssertionError(f"answered {err.code}") from err
    except OSError as err:  # ssl.SSLError, a reset: the handshake refused it
        return repr(err)
    raise AssertionError(f"answered: {answered}")


async def test_only_the_api_server_may_ask_the_webhook(
    env: Env, tenant: Tenant, tmp_path: Path
) -> None:
    """Finding 8: an AdmissionReview POSTed straight to the webhook port is refused in the
    TLS handshake unless it comes with the API server's client certificate; the API server
    itself gets its answers (a tenant's bad Landing is refused through it)."""
    url = env.webhook.url("/validate")
    review = _review_for(tenant.namespace, "system:kube-controller-manager")
    # No certificate: refused in the handshake, no answer at all.
    assert await _no_answer(url, env.webhook.ca_pem, review)
    stranger = pki.CertificateAuthority("stranger").issue("kube-apiserver", client=True)
    (tmp_path / "s.crt").write_bytes(stranger.cert_pem)
    (tmp_path / "s.key").write_bytes(stranger.key_pem)
    # A certificate from another CA: the same.
    assert await _no_answer(
        url, env.webhook.ca_pem, review, (tmp_path / "s.crt", tmp_path / "s.key")
    )
    answered = await asyncio.to_thread(
        _post, url, env.webhook.ca_pem, review, env.plane["parent"].webhook_client
    )
    assert answered["response"]["uid"] == review["request"]["uid"]
    # Through the API server, as the tenant: the webhook answers (mTLS works end to end).
    message = await _refused(
        tenant.client, landing(tenant.namespace, "imds", server="https://169.254.169.254")
    )
    assert "169.254.169.254" in message


# -- finding 9: inline rules as RBAC's escalation check ---------------------------------------


async def test_inline_rules_need_every_rule_or_escalate_and_bind(env: Env, tenant: Tenant) -> None:
    """Finding 9: `escalate` on Roles alone does not mint `* * *`; holding the rules does,
    and so do `escalate` and `bind` together (as Kubernetes defines them)."""
    ns = tenant.namespace
    await _grant(env, tenant, "escalator", _rbac("escalate", "roles"))
    star = {
        "name": "star",
        "namespace": MINT_NAMESPACE,
        "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
        "rulesNamespaces": [ns],
    }
    message = await _refused(tenant.client, landing(ns, "star", serviceAccount=star))
    assert f"grant inline rules in namespace {ns}: it does not hold *" in message
    assert f"nor escalate and bind roles in namespace {ns}" in message

    # Rules the tenant holds (its own Role reads Secrets of its namespace): admitted.
    held = {
        **star,
        "name": "reader",
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}],
    }
    await tenant.client.create(landing(ns, "reader", serviceAccount=held))
    more = {**held, "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}
    message = await _refused(tenant.client, landing(ns, "pods", serviceAccount=more))
    assert "does not hold get pods" in message

    await _grant(env, tenant, "binder", _rbac("bind", "roles"))

    async def escalate_and_bind() -> bool:  # RBAC's own cache: a moment to see the binding
        await tenant.client.create(landing(ns, "star", serviceAccount=star))
        return True

    await eventually(escalate_and_bind, timeout=15, what="escalate and bind admit * * *")


# -- finding 10: the controller's own writes ---------------------------------------------------


async def test_the_controllers_own_writes_pass_its_webhook(env: Env, tenant: Tenant) -> None:
    """Finding 10: with the webhook wired in, a minting Landing is Synced and its deletion
    completes (the finalizer's removal changes no spec; the controller may not bind `view`
    itself, and is not asked to)."""
    ns = tenant.namespace
    await _grant(env, tenant, "view-binder", _rbac("bind", "clusterroles", "view"))
    await tenant.client.create(secret_with(ns, SOURCE, {"value": env.kubeconfig_text("child-a")}))
    started = time.monotonic()
    await env.local.create(
        landing_policy(
            f"mint-view-{ns}",
            namespaces={"names": [ns]},
            mint={
                "clusterRoles": ["view"],
                "roleNamespaces": [ns],
                "serviceAccountNamespaces": [MINT_NAMESPACE],
            },
        )
    )
    viewer = {
        "name": f"{ns}-viewer",
        "namespace": MINT_NAMESPACE,
        "roles": [{"name": "view", "namespaces": [ns]}],
    }

    async def created() -> bool:  # the tenant's RoleBinding may take a moment to count
        await tenant.client.create(
            landing(ns, "viewer", kubeconfigSecretName=SOURCE, serviceAccount=viewer)
        )
        return True

    await eventually(created, timeout=15, what="the tenant may bind view")
    await wait_reason(env.local, ns, "viewer", "Synced", timeout=30)
    measure("webhook wired: minting Landing created->Synced", time.monotonic() - started)
    assert await env.local.get(ServiceAccount, f"{ns}-viewer", namespace=MINT_NAMESPACE)

    started = time.monotonic()
    await tenant.client.delete(LandingResource, "viewer", namespace=ns)

    async def gone() -> bool:
        assert await landing_gone(env.local, ns, "viewer")
        return True

    await eventually(gone, timeout=30, what="the deletion completes through the webhook")
    measure("webhook wired: minting Landing deleted->gone", time.monotonic() - started)
    with pytest.raises(ApiError) as err:
        await env.local.get(ServiceAccount, f"{ns}-viewer", namespace=MINT_NAMESPACE)
    assert err.value.status.code == 404


# -- finding 11: a generated Landing is checked as the set's author would be ------------------


def _landing_set(namespace: str, name: str, template_spec: dict[str, Any]) -> Any:
    return LandingSetResource.from_dict(
        {
            "apiVersion": api.API_VERSION,
            "kind": "LandingSet",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "generators": [
                    {"secrets": {"namePattern": "kubernetes-{{tenant}}-admin-kubeconfig"}}
                ],
                "template": {"metadata": {"name": "{{tenant}}"}, "spec": template_spec},
            },
        }
    )


async def test_a_generated_landing_binds_what_its_set_was_checked_for(
    env: Env, tenant: Tenant
) -> None:
    """Finding 11: a set cannot let a Secret's name choose the role (the template was
    checked with every variable `sample`: a tenant who may bind a role named `sample`
    passed); the Landings the controller generates are admitted when they bind what the
    set's author was checked for; a tenant cannot pass its own Landing as generated."""
    ns = tenant.namespace
    # The tenant may bind a ClusterRole named `sample` cluster-wide, and `view` in its
    # namespace.
    sample = f"bind-sample-{ns}"
    await env.local.create(
        ClusterRole(
            metadata=ObjectMeta(name=sample), rules=[_rbac("bind", "clusterroles", "sample")]
        )
    )
    await env.local.create(
        ClusterRoleBinding(
            metadata=ObjectMeta(name=sample),
            roleRef=RoleRef(apiGroup="rbac.authorization.k8s.io", kind="ClusterRole", name=sample),
            subjects=[Subject(kind="ServiceAccount", name="tenant", namespace=ns)],
        )
    )
    await _grant(env, tenant, "view-binder", _rbac("bind", "clusterroles", "view"))
    try:
        by_name = {"serviceAccount": {"name": "{{tenant}}-robot", "clusterRole": "{{tenant}}"}}

        async def refused_by_variable() -> bool:
            message = await _refused(tenant.client, _landing_set(ns, "by-name", by_name))
            assert "serviceAccount.clusterRole: takes no variables" in message
            return True

        await eventually(refused_by_variable, timeout=15, what="a variable role refused")

        await env.local.create(
            landing_policy(
                f"mint-view-{ns}",
                namespaces={"names": [ns]},
                mint={
                    "clusterRoles": ["view"],
                    "roleNamespaces": [ns],
                    "serviceAccountNamespaces": [MINT_NAMESPACE],
                },
            )
        )
        fleet = {
            "serviceAccount": {
                "name": "{{tenant}}-robot",
                "namespace": MINT_NAMESPACE,
                "roles": [{"name": "view", "namespaces": [ns]}],
            }
        }

        async def set_admitted() -> bool:
            await tenant.client.create(_landing_set(ns, "fleet", fleet))
            return True

        await eventually(set_admitted, timeout=15, what="the tenant may bind view")
        await tenant.client.create(
            secret_with(
                ns, "kubernetes-acme-admin-kubeconfig", {"value": env.kubeconfig_text("child-a")}
            )
        )
        # The controller's create passes the webhook: it binds what the set was checked for.
        await wait_reason(env.local, ns, "acme", "Synced", timeout=30)
        generated = await env.local.get(LandingResource, "acme", namespace=ns)
        owner = generated.metadata.ownerReferences[0]
        assert owner.kind == "LandingSet" and owner.name == "fleet"

        # A tenant's own Landing claiming the set as its owner is checked as the tenant's.
        forged = landing(
            ns, "forged", serviceAccount={"name": "forged", "clusterRole": "cluster-admin"}
        )
        forged.metadata.ownerReferences = [
            OwnerReference(
                apiVersion=owner.apiVersion,
                kind="LandingSet",
                name="fleet",
                uid=owner.uid,
                controller=True,
            )
        ]
        message = await _refused(tenant.client, forged)
        assert "may not bind clusterroles cluster-admin cluster-wide" in message
    finally:
        await env.local.delete(ClusterRoleBinding, sample)
        await env.local.delete(ClusterRole, sample)
