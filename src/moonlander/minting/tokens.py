"""Minted tokens: lifetimes, renewal times and the kubeconfig that carries one (pure).

Tokens never appear in reprs, logs or messages.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from moonlander import api
from moonlander.credentials import Policy, credentials_from_token, render_kubeconfig

log = logging.getLogger(__name__)

# On a landed Secret, so that a restarted controller knows when to renew without the token.
TOKEN_ISSUED_AT_ANNOTATION: Final = f"{api.GROUP}/token-issued-at"
TOKEN_EXPIRES_AT_ANNOTATION: Final = f"{api.GROUP}/token-expires-at"

# --------------------------------------------------------------------------------------------
# Tokens (pure)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MintedToken:
    """A token from the TokenRequest API and its lifetime as the API server granted it."""

    token: str = field(repr=False)  # never in reprs, logs or messages
    expires_at: datetime  # timezone-aware, from status.expirationTimestamp
    issued_at: datetime  # timezone-aware

    def __post_init__(self) -> None:
        if self.expires_at.tzinfo is None or self.issued_at.tzinfo is None:
            raise ValueError("MintedToken times must be timezone-aware")
        if self.expires_at <= self.issued_at:
            raise ValueError("MintedToken expires_at must be after issued_at")

    @property
    def lifetime(self) -> timedelta:
        return self.expires_at - self.issued_at

    def renew_at(self, fraction: float) -> datetime:
        """When to renew: once ``fraction`` of the lifetime is left."""
        if not 0.0 < fraction < 1.0:
            raise ValueError("fraction must be between 0 and 1 (exclusive)")
        return self.issued_at + self.lifetime * (1.0 - fraction)

    def needs_renewal(self, now: datetime, fraction: float) -> bool:
        return now >= self.renew_at(fraction)

    def seconds_until_renewal(self, now: datetime, fraction: float) -> float:
        """For scheduling the next reconcile; 0 when renewal is due."""
        return max(0.0, (self.renew_at(fraction) - now).total_seconds())

    def annotations(self) -> dict[str, str]:
        """The token's times, to record on the landed Secret (no secret material)."""
        return {
            TOKEN_ISSUED_AT_ANNOTATION: _rfc3339(self.issued_at),
            TOKEN_EXPIRES_AT_ANNOTATION: _rfc3339(self.expires_at),
        }


def token_times(annotations: Mapping[str, str] | None) -> tuple[datetime, datetime] | None:
    """(issued_at, expires_at) recorded by :meth:`MintedToken.annotations`; None if absent or
    unreadable, which callers should treat as "renew now"."""
    annotations = annotations or {}
    try:
        issued = datetime.fromisoformat(annotations[TOKEN_ISSUED_AT_ANNOTATION])
        expires = datetime.fromisoformat(annotations[TOKEN_EXPIRES_AT_ANNOTATION])
    except (KeyError, TypeError, ValueError):
        return None
    if issued.tzinfo is None or expires.tzinfo is None or expires <= issued:
        return None
    return issued, expires


def token_service_account_uid(token: str) -> str | None:
    """The ServiceAccount uid a token was issued for, read from its (unverified) claims.

    Only for our own landed token: a ServiceAccount deleted and recreated under the same name
    has a new uid, and the API server may still accept the old token for a few seconds from
    its authentication cache, so the uid is the reliable sign that a new token is needed.
    """
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        uid = claims["kubernetes.io"]["serviceaccount"]["uid"]
    except (IndexError, KeyError, TypeError, ValueError):
        return None
    return uid if isinstance(uid, str) else None


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_kubeconfig(
    server: str, ca_data: bytes | None, token: MintedToken, policy: Policy, *, name: str
) -> str:
    """A self-contained kubeconfig for the minted token (``current-context`` set).

    The server is checked against ``policy`` like any other; raises ``KubeconfigError``.
    """
    creds = credentials_from_token(server, ca_data, token.token, policy, name=name)
    return render_kubeconfig(creds, name=name)
