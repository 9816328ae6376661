"""How API and network errors are classified into reasons and retry classes."""

from __future__ import annotations

import httpcore2
import httpx2
import pytest
from lightkube import ApiError

from moonlander.api.reasons import LandingProblem, Reason, Retry
from moonlander.controller.errors import problem_from_error
from moonlander.kube.clusters import AddressPolicyError


def api_error(code: int, headers: dict[str, str] | None = None) -> ApiError:
    request = httpx2.Request("PATCH", "https://cluster.example/api/v1/secrets/x")
    response = httpx2.Response(
        code,
        headers=headers,
        json={"kind": "Status", "code": code, "reason": "Because", "message": f"said {code}"},
        request=request,
    )
    return ApiError(request=request, response=response)


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (401, Reason.UNAUTHORIZED),
        (403, Reason.FORBIDDEN),
        (409, Reason.TRANSIENT_ERROR),
        (500, Reason.TRANSIENT_ERROR),
        (503, Reason.TRANSIENT_ERROR),
    ],
)
def test_api_errors_back_off_with_a_specific_reason(code: int, reason: Reason) -> None:
    outcome = problem_from_error(api_error(code), "cluster X").outcome
    assert outcome.reason is reason
    assert outcome.retry is Retry.BACKOFF
    assert outcome.message.startswith(f"cluster X: {code} Because: said {code}")


def test_429_honours_retry_after_up_to_ten_minutes() -> None:
    assert problem_from_error(api_error(429, {"Retry-After": "7"}), "c").outcome.retry_after == 7
    assert (
        problem_from_error(api_error(429, {"Retry-After": "9999"}), "c").outcome.retry_after == 600
    )
    assert (
        problem_from_error(api_error(429, {"Retry-After": "soon"}), "c").outcome.retry_after is None
    )


def test_network_faults_mean_unreachable_and_policy_denials_are_permanent() -> None:
    for err in (
        httpx2.ConnectTimeout("timed out"),
        httpcore2.ConnectError("refused"),
        TimeoutError(),
    ):
        outcome = problem_from_error(err, "cluster Y").outcome
        assert outcome.reason is Reason.CLUSTER_UNREACHABLE
        assert outcome.retry is Retry.BACKOFF
    denied = problem_from_error(AddressPolicyError("169.254.169.254 is link-local"), "c").outcome
    assert denied.reason is Reason.INVALID_KUBECONFIG
    assert denied.retry is Retry.ON_CHANGE


def test_problems_pass_through_and_other_errors_are_not_swallowed() -> None:
    problem = LandingProblem(Reason.CONFLICT, "x", Retry.ON_CHANGE)
    assert problem_from_error(problem, "c") is problem
    with pytest.raises(KeyError):
        problem_from_error(KeyError("bug"), "c")
