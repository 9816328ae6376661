"""The record one reconcile of a Landing fills step by step, and what the steps share."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from moonlander import minting
from moonlander.api import LandedStatus, Landing
from moonlander.controller.authorize import Fence, PolicyStore, source_networks
from moonlander.credentials import Credentials, Policy
from moonlander.kube.clusters import Target

if TYPE_CHECKING:
    from moonlander.controller.parent import ParentKubeconfig
    from moonlander.controller.steps.source import SourceCache
    from moonlander.controller.steps.verification import Verifier
    from moonlander.controller.store import Store


@dataclass
class Context:
    """What the steps work with: the store that writes, the operator's policies, and the
    caches kept between runs (sources as last read, credentials verified)."""

    store: Store
    policy: Policy  # the controller's address policy
    parent: ParentKubeconfig
    local_target: Target
    sources: SourceCache
    verifier: Verifier
    policies: PolicyStore = field(default_factory=PolicyStore)
    fence: Fence = field(default_factory=Fence)
    allow_cross_namespace: bool = False

    def source_policy(self, landing: Landing) -> Policy:
        """The address policy for what a Landing's source names: the controller's, narrowed
        to the sourceNetworks its namespace's LandingPolicies set, if any."""
        ranges = source_networks(self.policies.applying_to(landing.metadata.namespace))
        return self.policy if ranges is None else replace(self.policy, within_networks=ranges)


@dataclass
class LandingRun:
    landing: Landing
    source_key: str = ""
    source: Credentials | None = None  # the source Secret's kubeconfig, validated
    source_secret: Mapping[str, Any] | None = None  # that Secret as read (for its hold)
    source_policy: Policy | None = None
    # What grants access (the parent credential or the tenant's source) and its policy.
    payload: Credentials | None = None
    payload_policy: Policy | None = None
    server: str = ""  # where the landed kubeconfig points
    target: Target | None = None  # the cluster written to
    existing: Mapping[str, Any] | None = None  # the landed Secret as it is
    credentials: Credentials | None = None  # what is landed
    token: minting.MintedToken | None = None
    desired: dict[str, Any] | None = None
    written: str = ""  # created, updated or current
    provider_configs: tuple[str, ...] = ()
    landed: LandedStatus | None = None

    @property
    def key(self) -> str:
        return self.landing.key

    def need_target(self) -> Target:
        assert self.target is not None, "choose_target runs first"
        return self.target

    def need_payload(self) -> tuple[Credentials, Policy]:
        assert self.payload is not None
        assert self.payload_policy is not None
        return self.payload, self.payload_policy


Defer = Callable[[str], bool]
