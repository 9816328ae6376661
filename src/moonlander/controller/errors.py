"""What an error from an API server or the network means for a Landing (pure).

Messages carry the status code, reason and the server's message, never a request body:
a request may have carried a credential.
"""

from __future__ import annotations

import httpcore2
import httpx2
from lightkube import ApiError

from moonlander.api.reasons import LandingProblem, Reason, Retry
from moonlander.kube.clusters import AddressPolicyError, ClusterPool, Target

# What calls to API servers raise when the cluster, not our code, is the problem.
API_ERRORS = (ApiError, httpx2.HTTPError, httpcore2.ConnectError, TimeoutError)


def problem_from_error(err: BaseException, where: str) -> LandingProblem:
    """Classifies an API or transport error; messages carry status text, never bodies we sent."""
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
        if code == 429:
            retry_after = _retry_after(err.response)
            return LandingProblem(Reason.TRANSIENT_ERROR, text, Retry.BACKOFF, retry_after)
        return LandingProblem(Reason.TRANSIENT_ERROR, text, Retry.BACKOFF)
    if isinstance(err, (httpx2.TransportError, httpcore2.ConnectError, TimeoutError)):
        detail = type(err).__name__ + (f": {err}" if str(err) else "")
        return LandingProblem(Reason.CLUSTER_UNREACHABLE, f"{where}: {detail[:300]}", Retry.BACKOFF)
    if isinstance(err, httpx2.HTTPStatusError):
        code = err.response.status_code
        return LandingProblem(
            Reason.TRANSIENT_ERROR,
            f"{where}: HTTP {code}",
            Retry.BACKOFF,
            _retry_after(err.response) if code == 429 else None,
        )
    raise err


def _retry_after(response: httpx2.Response | None) -> float | None:
    if response is None:
        return None
    value = response.headers.get("Retry-After", "")
    try:
        return min(float(value), 600.0)
    except ValueError:
        return None


def fail_fast(target: Target) -> None:
    """A cluster that just failed is not dialled again until its backoff has passed."""
    if not target.reachable:
        raise LandingProblem(
            Reason.CLUSTER_UNREACHABLE,
            f"cluster {target.server} is unreachable ({target.last_error[:200]}); retrying",
            Retry.BACKOFF,
        )


async def target_problem(
    clusters: ClusterPool, target: Target, err: BaseException, key: str
) -> LandingProblem:
    """Classifies an error of a call to ``target`` and tells the pool about the cluster's
    health: unreachable clusters get a probe; a client the server answered 401 is dropped."""
    problem = problem_from_error(err, f"cluster {target.server}")
    if problem.outcome.reason is Reason.CLUSTER_UNREACHABLE:
        clusters.record_failure(target, problem.outcome.message, key)
    if problem.outcome.reason is Reason.UNAUTHORIZED and not target.local:
        await clusters.drop(target.key)
    return problem
