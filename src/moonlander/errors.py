"""What an error from an API server or the network means for a Landing (pure).

Messages carry the status code, reason and the server's message, never a request body:
a request may have carried a credential.
"""

from __future__ import annotations

import httpcore2
import httpx2
from lightkube import ApiError

from moonlander.clusters import AddressPolicyError
from moonlander.plan import LandingProblem, Reason, Retry

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
