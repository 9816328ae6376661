"""Landings with ``spec.serviceAccount``: the credential landed is a token for a
ServiceAccount Moonlander keeps in the cluster access is granted to (minting.py does the
API work). The token already landed is reused until it is due for renewal, its
ServiceAccount was recreated, or it no longer authenticates.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from lightkube.resources.core_v1 import ServiceAccount

from moonlander import api, minting
from moonlander.api import ownership as own
from moonlander.api.reasons import LandingProblem, Reason, Retry
from moonlander.controller import outputs, plan
from moonlander.controller.conditions import now_rfc3339
from moonlander.controller.errors import API_ERRORS, fail_fast, target_problem
from moonlander.credentials import (
    Credentials,
    KubeconfigError,
    Policy,
    credentials_from_token,
    parse_kubeconfig,
)
from moonlander.kube.clusters import ClusterPool, Target, annotations_of_dict
from moonlander.kube.events import EventRecorder

log = logging.getLogger(__name__)


class Minter:
    def __init__(self, clusters: ClusterPool, events: EventRecorder, policy: Policy) -> None:
        self.clusters = clusters
        self.events = events
        self.policy = policy

    async def credentials(
        self,
        landing: api.Landing,
        granting_creds: Credentials,
        server: str,
        existing: Mapping[str, Any] | None,
        policy: Policy,
    ) -> tuple[Credentials, minting.MintedToken]:
        """Credentials of the Landing's own ServiceAccount in the cluster it grants access
        to: the identity is created or repaired, and the token already landed is kept until
        it is due for renewal or no longer authenticates."""
        mint_spec = landing.spec.service_account
        assert mint_spec is not None
        owner = landing.key
        granting = self.clusters.get(granting_creds, policy)
        fail_fast(granting)
        try:
            await minting.ensure_identity(
                granting.client, mint_spec, owner=owner, owner_uid=landing.metadata.uid
            )
            if landing.metadata.generation != landing.status.observed_generation:
                await minting.prune(granting.client, mint_spec, owner=owner)  # spec changed
            current = await self._reusable_token(
                granting, mint_spec, existing, landing.output, owner
            )
            token = current or await minting.mint_token(granting.client, mint_spec)
        except LandingProblem:
            raise
        except API_ERRORS as err:
            raise await target_problem(self.clusters, granting, err, owner) from None
        if current is None:
            renewed = existing is not None and minting.token_times(annotations_of_dict(existing))
            self.events.record(
                landing.metadata,
                "Normal",
                "TokenRenewed" if renewed else "TokenMinted",
                f"minted a token for ServiceAccount {mint_spec.namespace}/{mint_spec.name} in "
                f"{granting.server}, expires {now_rfc3339(token.expires_at)}",
            )
        try:
            creds = credentials_from_token(
                server, granting_creds.ca_data, token.token, policy, name=mint_spec.name
            )
        except KubeconfigError as err:
            raise LandingProblem(
                Reason.INVALID_SPEC, f"spec.server: {err}", Retry.ON_CHANGE
            ) from None
        return creds, token

    async def _reusable_token(
        self,
        granting: Target,
        mint_spec: api.ServiceAccountSpec,
        existing: Mapping[str, Any] | None,
        output: api.OutputSpec,
        owner: str,
    ) -> minting.MintedToken | None:
        """The token in the landed Secret, if it is ours, not yet due for renewal, and still
        accepted by its cluster (a deleted ServiceAccount invalidates it)."""
        if existing is None or own.ownership(existing, owner) is not own.Ownership.OURS:
            return None
        times = minting.token_times(annotations_of_dict(existing))
        if times is None:
            return None
        data = existing.get("data") or {}
        try:
            if output.format is api.OutputFormat.ARGOCD:
                creds = outputs.argocd_credentials(data, self.policy)
            else:
                creds = parse_kubeconfig(
                    plan.decode_secret_value(data, api.WRITTEN_KEYS[0]), self.policy
                )
        except (LandingProblem, KubeconfigError):
            return None
        if not creds.token:
            return None
        token = minting.MintedToken(token=creds.token, issued_at=times[0], expires_at=times[1])
        if token.needs_renewal(datetime.now(UTC), mint_spec.renew_before_fraction):
            return None
        account = await granting.client.get(
            ServiceAccount, mint_spec.name, namespace=mint_spec.namespace
        )
        if minting.token_service_account_uid(token.token) != (
            account.metadata and account.metadata.uid
        ):
            log.info("ServiceAccount of %s was recreated; minting a new token", owner)
            return None
        if not await minting.token_is_valid(granting.client, token.token, mint_spec):
            log.info("the landed token for %s no longer authenticates; minting a new one", owner)
            return None
        return token
