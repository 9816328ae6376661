"""Builders for the reconcile steps' unit tests: a Landing with modifiers, and a scene (a
fake store with a source Secret and a parent credential, the steps' context) to run it in."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from moonlander import api
from moonlander.api.reasons import LandingProblem
from moonlander.controller.authorize import Fence, PolicyStore
from moonlander.controller.steps import Context, LandingRun, SourceCache, Verifier
from moonlander.credentials import Credentials, parse_kubeconfig

from .store import (
    CHILD_SERVER,
    LOCAL,
    PARENT_SERVER,
    POLICY,
    FakeParent,
    FakeStore,
    kubeconfig,
    secret,
)

NAMESPACE = "tenant-a"
FENCE = Fence(controller_namespace="moonlander-system", mint_namespaces=("moonlander-minted",))
VIEW = {"clusterRoles": ["view"], "clusterWide": True}


def landing(
    name: str = "l",
    namespace: str = NAMESPACE,
    *,
    uid: str = "uid-1",
    generation: int = 1,
    status: dict[str, Any] | None = None,
    finalizers: tuple[str, ...] = (api.FINALIZER,),
    deleting: bool = False,
    **spec: Any,
) -> api.Landing:
    """A valid Landing (``spec`` in the API's camelCase), with ``status`` as the API has it;
    the finalizer is there (the admission webhook adds it at create) unless told otherwise."""
    return api.Landing(
        metadata=api.ObjectMeta(
            name=name,
            namespace=namespace,
            uid=uid,
            resource_version="7",
            generation=generation,
            finalizers=finalizers,
            deletion_timestamp="2026-01-01T00:00:00Z" if deleting else None,
        ),
        spec=api.parse_spec(spec, name=name),
        status=api.parse_status(status),
    )


def policy(name: str = "p", **spec: Any) -> api.LandingPolicy:
    spec.setdefault("namespaces", {"names": [NAMESPACE]})
    return api.parse_policy({"metadata": {"name": name}, "spec": spec})


def parse(server: str) -> Credentials:
    return parse_kubeconfig(kubeconfig(server), POLICY)


def credentials(
    server: str = "https://127.0.0.1:6443", ca_data: bytes | None = None
) -> Credentials:
    """Validated credentials with a token (not a real one), built directly."""
    return Credentials(
        server=server,
        ca_data=ca_data,
        token="not-a-real-token",
        client_cert=None,
        client_key=None,
        tls_server_name=None,
        insecure_skip_tls_verify=False,
        context_name="t",
        cluster_name="t",
        user_name="t",
        namespace=None,
    )


@dataclass
class Scene:
    store: FakeStore
    ctx: Context
    parent: FakeParent
    policies: PolicyStore = field(default_factory=PolicyStore)

    def grant(self, **spec: Any) -> None:
        granted = policy(f"p{len(self.policies.policies)}", **spec)
        self.policies.policies[granted.name] = granted

    def source(self, landing: api.Landing, server: str = CHILD_SERVER, **data: str) -> None:
        """The Landing's source Secret, holding a kubeconfig of ``server`` (or ``data``)."""
        namespace, name = landing.source_ref
        self.store.put(LOCAL, secret(namespace, name, data or {"value": kubeconfig(server)}))

    def run(self, landing: api.Landing) -> LandingRun:
        return LandingRun(landing=landing)


def scene(*, parent: Credentials | LandingProblem | None = None) -> Scene:
    store = FakeStore()
    fake_parent = FakeParent(parent if parent is not None else parse(PARENT_SERVER))
    policies = PolicyStore()
    ctx = Context(
        store=store,
        policy=POLICY,
        parent=fake_parent,  # type: ignore[arg-type]
        local_target=store.local_target,
        sources=SourceCache(),
        verifier=Verifier(),
        policies=policies,
        fence=FENCE,
    )
    return Scene(store=store, ctx=ctx, parent=fake_parent, policies=policies)
