"""Why a Landing is or is not Ready, and when it is tried again: part of the API (pure).

The ``reason`` of a Landing's Ready condition is one of :class:`Reason`; each member's
comment says what it means and what to do. :class:`Retry` is how the controller schedules
the next attempt after each outcome (docs/architecture.md, "Retries", has the table).

The conditions follow the Kubernetes API conventions that kstatus, Flux and ``kubectl wait``
read (:class:`ConditionType`): besides Ready, ``Reconciling`` is True while the controller is
still at work or backing off, ``Stalled`` is True when nothing will change until someone
edits something (:data:`STALLED_REASONS`); docs/api.md has the table.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Reason(enum.StrEnum):
    # Ready=True: the Secret is landed and current.
    SYNCED = "Synced"
    # A LandingSet's Ready=False while its Landings are still being landed (none failing).
    PROGRESSING = "Progressing"
    # Ready=Unknown: spec.suspend is set; nothing is changed.
    SUSPENDED = "Suspended"
    # The spec cannot be used as written; the message names the field. Fix the Landing.
    INVALID_SPEC = "InvalidSpec"
    # The source Secret is not there yet ("Planet B"): waiting, with backoff.
    SOURCE_SECRET_NOT_FOUND = "SourceSecretNotFound"  # noqa: S105 - a reason, not a secret
    # The source Secret has no kubeconfig key that was asked for or searched.
    SOURCE_KEY_NOT_FOUND = "SourceKeyNotFound"
    # The source Secret is in another namespace that has not granted this one.
    CROSS_NAMESPACE_NOT_ALLOWED = "CrossNamespaceNotAllowed"
    # The kubeconfig was refused by the validator (exec, files, http, addresses, ...).
    INVALID_KUBECONFIG = "InvalidKubeconfig"
    # The mounted parent kubeconfig cannot be read or is invalid: the operator's to fix.
    PARENT_KUBECONFIG_UNAVAILABLE = "ParentKubeconfigUnavailable"
    # The cluster written to (or granting access) does not answer, or not in time: waiting,
    # with backoff; its Landings fail fast until a probe sees it answer.
    CLUSTER_UNREACHABLE = "ClusterUnreachable"
    # The cluster answered what no API server sends (a body over the size cap, not HTTP, not
    # JSON, an error without Content-Type): treated like an unreachable one.
    INVALID_RESPONSE = "InvalidResponse"
    # The credential to be landed does not authenticate where it grants access (401).
    CREDENTIAL_REJECTED = "CredentialRejected"
    # The credential used to write was refused (401) or lacks the rights (403).
    UNAUTHORIZED = "Unauthorized"
    FORBIDDEN = "Forbidden"
    # The Landing asks for something its namespace was not granted by a LandingPolicy (the
    # parent credential, minting, a write into another namespace); the message says what.
    NOT_PERMITTED = "NotPermitted"
    # The Secret to write exists and is not this Landing's (set adoptExisting to take it).
    CONFLICT = "Conflict"
    # output.clusterProfile: the Secret is landed, but the cluster written to has no
    # ClusterProfile CRD (multicluster.x-k8s.io) yet: waiting, with backoff.
    CLUSTER_PROFILE_CRD_NOT_FOUND = "ClusterProfileCRDNotFound"
    # A fault that retrying may fix (5xx, 429, timeouts, 409 races).
    TRANSIENT_ERROR = "TransientError"
    # The Landing is being deleted and what it landed removed.
    DELETING = "Deleting"


class ConditionType(enum.StrEnum):
    READY = "Ready"  # converged (True), not (False), or suspended (Unknown)
    RECONCILING = "Reconciling"  # True while work is in progress or backing off
    STALLED = "Stalled"  # True while only a human can help: the Ready reason says why


# The Ready=False reasons of a Landing that no retry can fix (the Retry.ON_CHANGE outcomes):
# the Landing, its source Secret or a LandingPolicy has to change. They make Stalled True
# (kstatus: Failed); every other Ready=False reason makes Reconciling True (InProgress).
STALLED_REASONS: frozenset[str] = frozenset(
    {
        Reason.NOT_PERMITTED,
        Reason.INVALID_SPEC,
        Reason.INVALID_KUBECONFIG,
        Reason.CONFLICT,
        Reason.SOURCE_KEY_NOT_FOUND,
        Reason.CROSS_NAMESPACE_NOT_ALLOWED,
    }
)


class SetReason(enum.StrEnum):
    """Reasons of a LandingSet's conditions."""

    ALL_READY = "AllReady"  # Ready=True: every generated Landing is Ready
    PROGRESSING = "Progressing"  # Reconciling: Landings not yet Ready, none failing for good
    LANDINGS_FAILING = "LandingsFailing"  # Ready=False: see status.failingLandings
    INVALID_SPEC = "InvalidSpec"  # Stalled: the set's spec cannot be used; fix it


class PolicyReason(enum.StrEnum):
    """Reasons of a LandingPolicy's Ready condition (always True: a policy is applied as
    soon as it is read; what it cannot grant is listed, not failed)."""

    APPLIED = "Applied"  # every entry grants what it says
    # Applied, but some entries grant nothing: see status.fenced and status.ambiguous
    PARTIALLY_APPLIED = "PartiallyApplied"


class Retry(enum.StrEnum):
    RESYNC = "Resync"  # converged: come back at the periodic resync
    BACKOFF = "Backoff"  # waiting or transient: capped exponential backoff
    ON_CHANGE = "OnChange"  # permanent: wait for a watched change (or the slow resync)


@dataclass(frozen=True)
class Outcome:
    ready: bool
    reason: Reason
    message: str
    retry: Retry
    retry_after: float | None = None  # a server's Retry-After, honoured as a lower bound
    requeue_after: float | None = None  # converged, but due again then (token renewal)


class LandingProblem(Exception):
    """A reason the Landing cannot converge now. The message never holds secret material."""

    def __init__(
        self, reason: Reason, message: str, retry: Retry, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.outcome = Outcome(False, reason, message, retry, retry_after)
