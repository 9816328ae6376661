"""What an error from an API server or the network means for a Landing.

Every exception a remote call can raise has a reason and a retry class here, including the
client library's own failures on answers no API server sends (a ``KeyError`` for an error
response without ``Content-Type``, a decoding error for a body that is not JSON).

Messages carry the status code, reason and the server's Status message, never a request
body (a request may have carried a credential) nor a raw response (a hostile server chooses
it): for those only the error's type is named. Of a cluster nobody vouched for (a server a
tenant named, outside any sourceNetworks) a Landing is told only that it could not be
reached; the detail goes to the log, for the operator.
"""

from __future__ import annotations

import logging

import httpcore2
import httpx2
import msgspec
from lightkube import ApiError

from moonlander.api.reasons import LandingProblem, Outcome, Reason, Retry
from moonlander.kube.clusters import (
    REQUEST_DEADLINE,
    AddressPolicyError,
    ClusterPool,
    DeadlineExceeded,
    InvalidResponse,
    Target,
    describe_error,
)

log = logging.getLogger(__name__)

# All a Landing is told when a cluster nobody vouched for fails (Target.vouched): refused,
# not TLS, a certificate from another CA, silent, no such host, an answer no API server
# sends all read alike, so naming an address is no port scanner. The log has the why.
UNREACHABLE = (
    "a cluster this Landing uses could not be reached; retrying (the controller's log says "
    "why; a LandingPolicy with sourceNetworks for this namespace shows it here)"
)

# An undisclosed failure is told no sooner than this after its reconcile began: as late as
# the slowest (a call's whole deadline), so that when it is told says no more than what is.
UNREACHABLE_AFTER = REQUEST_DEADLINE

# What the client library raises when a server answers what no API server sends: lightkube
# reads a missing Content-Type as KeyError, a body that is not JSON or not the expected
# object as a msgspec or ValueError (UnicodeDecodeError, JSONDecodeError), ...
CLIENT_FAULTS = (
    KeyError,
    IndexError,
    ValueError,
    TypeError,
    AttributeError,
    msgspec.MsgspecError,
    httpx2.StreamError,
)
# What calls to API servers raise when the cluster, not our code, is the problem.
API_ERRORS = (
    ApiError,
    httpx2.HTTPError,
    httpcore2.ConnectError,
    TimeoutError,
    OSError,
    *CLIENT_FAULTS,
)
# Faults after which a cluster is only readmitted by a probe: it accepted the connection, then
# answered too slowly or with what no API server sends.
_PROBE_ONLY = (
    DeadlineExceeded,
    httpx2.ReadTimeout,
    httpx2.WriteTimeout,
    httpx2.PoolTimeout,
    InvalidResponse,
    httpx2.ProtocolError,
    httpx2.DecodingError,
    *CLIENT_FAULTS,
)


def problem_from_error(err: BaseException, where: str) -> LandingProblem:
    """Classifies any error of a call to an API server into a reason and a retry class."""
    if isinstance(err, LandingProblem):
        return err
    if isinstance(err, AddressPolicyError):
        return LandingProblem(Reason.INVALID_KUBECONFIG, f"{where}: {err}", Retry.ON_CHANGE)
    if isinstance(err, ApiError):
        code = err.status.code or 0
        text = f"{where}: {code} {err.status.reason or ''}: {(err.status.message or '')[:300]}"
        if code == 401:
            return LandingProblem(Reason.UNAUTHORIZED, text, Retry.BACKOFF)
        if code == 403:
            return LandingProblem(Reason.FORBIDDEN, text, Retry.BACKOFF)
        if code in (429, 503):
            retry_after = _retry_after(err.response)
            return LandingProblem(Reason.TRANSIENT_ERROR, text, Retry.BACKOFF, retry_after)
        return LandingProblem(Reason.TRANSIENT_ERROR, text, Retry.BACKOFF)
    if isinstance(err, httpx2.HTTPStatusError):  # an error answer that is not a JSON Status
        code = err.response.status_code
        return LandingProblem(
            Reason.TRANSIENT_ERROR,
            f"{where}: HTTP {code}",
            Retry.BACKOFF,
            _retry_after(err.response) if code in (429, 503) else None,
        )
    detail = describe_error(err)
    if isinstance(err, (DeadlineExceeded, httpx2.ReadTimeout, httpx2.WriteTimeout)):
        return LandingProblem(
            Reason.CLUSTER_UNREACHABLE,
            f"{where} does not answer in time ({detail}; a request may take at most "
            f"{REQUEST_DEADLINE:g}s)",
            Retry.BACKOFF,
        )
    if isinstance(err, httpx2.PoolTimeout):
        return LandingProblem(
            Reason.CLUSTER_UNREACHABLE,
            f"{where} does not answer in time (every connection to it is busy: {detail})",
            Retry.BACKOFF,
        )
    if _disconnected(err):
        return LandingProblem(
            Reason.CLUSTER_UNREACHABLE, f"{where} closed the connection ({detail})", Retry.BACKOFF
        )
    if isinstance(err, (InvalidResponse, httpx2.ProtocolError, httpx2.DecodingError)):
        return LandingProblem(
            Reason.INVALID_RESPONSE,
            f"{where} answered what no API server sends ({detail})",
            Retry.BACKOFF,
        )
    if isinstance(err, CLIENT_FAULTS):
        return LandingProblem(
            Reason.INVALID_RESPONSE,
            f"{where} answered what the API client cannot read ({detail})",
            Retry.BACKOFF,
        )
    if isinstance(err, (httpx2.TransportError, httpcore2.ConnectError, TimeoutError, OSError)):
        return LandingProblem(Reason.CLUSTER_UNREACHABLE, f"{where}: {detail}", Retry.BACKOFF)
    # Anything else (a redirect loop, an error of our own): retried, and named by type only.
    return LandingProblem(
        Reason.TRANSIENT_ERROR, f"{where}: unexpected {detail}; retrying", Retry.BACKOFF
    )


# How the HTTP client words a connection closed before the answer was complete: a server
# restarting, a proxy or load balancer dropping it. The text is the library's own (a
# server's bytes only ever follow other prefixes), so a prefix match cannot be forged.
_DISCONNECTS = (
    "Server disconnected",
    "peer closed connection without sending complete message body",
)


def _disconnected(err: BaseException) -> bool:
    return isinstance(err, (httpx2.RemoteProtocolError, httpcore2.RemoteProtocolError)) and str(
        err
    ).startswith(_DISCONNECTS)


def _retry_after(response: httpx2.Response | None) -> float | None:
    if response is None:
        return None
    value = response.headers.get("Retry-After", "")
    try:
        return min(float(value), 600.0)
    except ValueError:
        return None


def _undisclosed(target: Target) -> bool:
    return not (target.local or target.vouched)


def is_undisclosed(outcome: Outcome) -> bool:
    """True for the outcome of a failing cluster nobody vouched for (:func:`unreachable`)."""
    return outcome.reason is Reason.CLUSTER_UNREACHABLE and outcome.message == UNREACHABLE


def unreachable(retry_after: float | None = None) -> LandingProblem:
    """The one problem a Landing is told of a failing cluster nobody vouched for. A server's
    ``Retry-After`` (429, 503) still spaces the retries: it is not told, only obeyed."""
    return LandingProblem(Reason.CLUSTER_UNREACHABLE, UNREACHABLE, Retry.BACKOFF, retry_after)


def fail_fast(target: Target) -> None:
    """A cluster that just failed is not dialled again until its backoff has passed (or,
    after a slow or malformed answer, until a probe has seen it answer)."""
    if not target.reachable and _undisclosed(target):
        raise unreachable()
    if not target.reachable:
        reason = Reason(target.last_reason) if target.last_reason else Reason.CLUSTER_UNREACHABLE
        if reason is Reason.INVALID_RESPONSE:
            state = "answered what no API server sends"
        elif target.until_probe:
            state = "does not answer in time"
        else:
            state = "is unreachable"
        until = "failing fast until a probe sees it answer" if target.until_probe else "retrying"
        raise LandingProblem(
            reason,
            f"cluster {target.server} {state} ({target.last_error[:200]}); {until}",
            Retry.BACKOFF,
        )


def needs_probe(err: BaseException) -> bool:
    """True for a fault after which only a probe should readmit the cluster."""
    return isinstance(err, _PROBE_ONLY) and not _disconnected(err)


async def target_problem(
    clusters: ClusterPool, target: Target, err: BaseException, key: str
) -> LandingProblem:
    """Classifies an error of a call to ``target`` and tells the pool about the cluster's
    health: unreachable, slow or misbehaving clusters get a probe (their Landings fail fast
    meanwhile); a client the server answered 401 is dropped."""
    problem = problem_from_error(err, f"cluster {target.server}")
    reason = problem.outcome.reason
    if target.local:  # not chosen by a tenant, and an error of our own must not close it
        if reason is Reason.CLUSTER_UNREACHABLE and not isinstance(err, CLIENT_FAULTS):
            clusters.record_failure(target, describe_error(err), key, reason=reason.value)
    elif reason in (Reason.CLUSTER_UNREACHABLE, Reason.INVALID_RESPONSE):
        clusters.record_failure(
            target,
            describe_error(err),
            key,
            reason=reason.value,
            until_probe=needs_probe(err),
        )
    if reason is Reason.UNAUTHORIZED and not target.local:
        await clusters.drop(target.key)
    if _undisclosed(target) and not isinstance(err, ApiError):
        # Only an API server's own Status (after TLS verified against the kubeconfig's CA)
        # is told; anything short of that says no more than "could not be reached".
        log.info("%s: %s", key, problem.outcome.message)
        return unreachable(problem.outcome.retry_after)
    return problem
