"""How API and network errors are classified into reasons and retry classes."""

from __future__ import annotations

import asyncio

import httpcore2
import httpx2
import msgspec
import pytest
from lightkube import ApiError

from moonlander.api.reasons import LandingProblem, Reason, Retry
from moonlander.controller.errors import (
    UNREACHABLE,
    fail_fast,
    needs_probe,
    problem_from_error,
    target_problem,
)
from moonlander.credentials import Policy
from moonlander.kube.clusters import (
    AddressPolicyError,
    ClusterPool,
    DeadlineExceeded,
    InvalidResponse,
    ResponseTooLarge,
    Target,
)

from ...support.builders import credentials


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


def test_problems_pass_through() -> None:
    problem = LandingProblem(Reason.CONFLICT, "x", Retry.ON_CHANGE)
    assert problem_from_error(problem, "c") is problem


_REQUEST = httpx2.Request("GET", "https://evil.example/api/v1/namespaces/n/secrets/s")
_SERVER_BYTES = "HTTP/9 tenant-chosen-bytes"  # what a hostile server sent, never to be echoed


def _status_error(code: int, headers: dict[str, str] | None = None) -> httpx2.HTTPStatusError:
    response = httpx2.Response(code, headers=headers, content=b"<html>", request=_REQUEST)
    return httpx2.HTTPStatusError(_SERVER_BYTES, request=_REQUEST, response=response)


def _no_content_type() -> BaseException:
    """What lightkube raises for an error answer without Content-Type (a KeyError)."""
    from lightkube.core.generic_client import transform_exception

    try:
        raise transform_exception(_status_error(500))
    except KeyError as err:
        return err


def _not_json() -> BaseException:
    from lightkube.core import decoders
    from lightkube.resources.core_v1 import Secret

    try:
        decoders.decode_object(_SERVER_BYTES.encode(), Secret)
    except Exception as err:
        return err
    raise AssertionError("decoded")


# Each class of failure a remote call can raise, what it means and whether only a probe may
# readmit the cluster afterwards.
FAULTS: list[tuple[str, BaseException, Reason, bool]] = [
    ("connection refused", httpx2.ConnectError("[Errno 111] Connection refused"), Reason.CLUSTER_UNREACHABLE, False),
    ("connect or TLS timeout", httpx2.ConnectTimeout("timed out"), Reason.CLUSTER_UNREACHABLE, False),
    ("address policy", AddressPolicyError("169.254.169.254 is link-local"), Reason.INVALID_KUBECONFIG, False),
    ("read timeout", httpx2.ReadTimeout("timed out"), Reason.CLUSTER_UNREACHABLE, True),
    ("write timeout", httpx2.WriteTimeout("timed out"), Reason.CLUSTER_UNREACHABLE, True),
    ("pool timeout", httpx2.PoolTimeout("timed out"), Reason.CLUSTER_UNREACHABLE, True),
    ("request deadline", DeadlineExceeded("no answer within 10s"), Reason.CLUSTER_UNREACHABLE, True),
    ("connection reset", httpx2.ReadError("[Errno 104] Connection reset by peer"), Reason.CLUSTER_UNREACHABLE, False),
    ("asyncio timeout", TimeoutError(), Reason.CLUSTER_UNREACHABLE, False),
    ("OS error", ConnectionResetError(104, "reset"), Reason.CLUSTER_UNREACHABLE, False),
    ("endless body", ResponseTooLarge("the response is larger than 4194304 bytes"), Reason.INVALID_RESPONSE, True),
    ("compressed body", InvalidResponse("the response is compressed"), Reason.INVALID_RESPONSE, True),
    ("not HTTP", httpx2.RemoteProtocolError(_SERVER_BYTES), Reason.INVALID_RESPONSE, True),
    ("disconnected", httpx2.RemoteProtocolError("Server disconnected without sending a response."), Reason.CLUSTER_UNREACHABLE, False),
    ("body cut short", httpx2.RemoteProtocolError("peer closed connection without sending complete message body (incomplete chunked read)"), Reason.CLUSTER_UNREACHABLE, False),
    ("forged disconnect", httpx2.RemoteProtocolError("illegal status line: bytearray(b'Server disconnected')"), Reason.INVALID_RESPONSE, True),
    ("bad encoding", httpx2.DecodingError(_SERVER_BYTES), Reason.INVALID_RESPONSE, True),
    ("no Content-Type", _no_content_type(), Reason.INVALID_RESPONSE, True),
    ("not JSON", _not_json(), Reason.INVALID_RESPONSE, True),
    ("not an object", msgspec.ValidationError(_SERVER_BYTES), Reason.INVALID_RESPONSE, True),
    ("undecodable text", UnicodeDecodeError("utf-8", b"\xff", 0, 1, _SERVER_BYTES), Reason.INVALID_RESPONSE, True),
    ("stream misuse", httpx2.StreamConsumed(), Reason.INVALID_RESPONSE, True),
    ("HTTP 503 not JSON", _status_error(503, {"Retry-After": "3"}), Reason.TRANSIENT_ERROR, False),
    ("redirect loop", httpx2.TooManyRedirects(_SERVER_BYTES, request=_REQUEST), Reason.TRANSIENT_ERROR, False),
    ("anything else", RuntimeError(_SERVER_BYTES), Reason.TRANSIENT_ERROR, False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("what", "err", "reason", "probe_only"), FAULTS, ids=[f[0] for f in FAULTS]
)
def test_every_fault_of_a_remote_call_has_a_reason_and_a_retry(
    what: str, err: BaseException, reason: Reason, probe_only: bool
) -> None:
    outcome = problem_from_error(err, "cluster https://evil.example").outcome
    assert outcome.reason is reason, what
    expected = Retry.ON_CHANGE if reason is Reason.INVALID_KUBECONFIG else Retry.BACKOFF
    assert outcome.retry is expected
    assert outcome.message.startswith("cluster https://evil.example"), outcome.message
    # What the server sent is never echoed: a hostile server chooses it.
    assert "tenant-chosen" not in outcome.message, outcome.message
    assert needs_probe(err) is probe_only


def test_503_honours_retry_after_like_429() -> None:
    assert problem_from_error(api_error(503, {"Retry-After": "5"}), "c").outcome.retry_after == 5
    assert (
        problem_from_error(_status_error(503, {"Retry-After": "3"}), "c").outcome.retry_after == 3
    )


def _target(*, vouched: bool = True) -> Target:
    """A remote cluster; ``vouched``: dialled within a namespace's sourceNetworks, so its
    failures are told in statuses."""
    return Target(key="k", server="https://evil.example", client=None, vouched=vouched)  # type: ignore[arg-type]


async def test_a_slow_or_misbehaving_cluster_fails_fast_until_a_probe_readmits_it() -> None:
    woken: list[str] = []
    pool = ClusterPool(Policy(), woken.extend)
    target = _target()
    for err, reason in (
        (DeadlineExceeded("no answer within 10s"), Reason.CLUSTER_UNREACHABLE),
        (ResponseTooLarge("too large"), Reason.INVALID_RESPONSE),
    ):
        problem = await target_problem(pool, target, err, "ns/a")
        assert problem.outcome.reason is reason
        assert not target.reachable and target.until_probe
        target.unreachable_until = 0.0  # the backoff has passed: still closed
        with pytest.raises(LandingProblem) as caught:
            fail_fast(target)
        assert caught.value.outcome.reason is reason
        assert "https://evil.example" in caught.value.outcome.message
        assert "until a probe sees it answer" in caught.value.outcome.message, caught.value
        pool.record_success(target)  # what the probe does when the cluster answers
        assert target.reachable
    assert target.probe is not None
    target.probe.cancel()


async def test_a_refused_connection_fails_fast_only_for_its_backoff() -> None:
    pool = ClusterPool(Policy(), lambda _keys: None)
    target = _target()
    await target_problem(pool, target, httpx2.ConnectError("refused"), "ns/a")
    assert not target.reachable and not target.until_probe
    target.unreachable_until = 0.0
    assert target.reachable
    assert target.probe is not None
    target.probe.cancel()


async def test_the_local_cluster_is_not_closed_by_a_client_fault() -> None:
    pool = ClusterPool(Policy(), lambda _keys: None)
    local = Target(key="local", server="https://local", client=None, local=True)  # type: ignore[arg-type]
    problem = await target_problem(pool, local, KeyError("Content-Type"), "ns/a")
    assert problem.outcome.reason is Reason.INVALID_RESPONSE
    assert local.reachable and local.failures == 0


class _Readyz:
    """Stands in for a lightkube client: its httpx client answers /readyz with the given
    status codes."""

    def __init__(self, codes: list[int]) -> None:
        self.codes = codes

        def answer(request: httpx2.Request) -> httpx2.Response:
            assert request.url.path == "/readyz"
            return httpx2.Response(self.codes.pop(0))

        http = httpx2.AsyncClient(transport=httpx2.MockTransport(answer), base_url="https://x")
        self._client = type("GenericClient", (), {"_client": http})()


async def test_a_probe_readmits_a_misbehaving_cluster_only_on_a_real_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from moonlander.kube import clusters

    monkeypatch.setattr(clusters, "backoff_delay", lambda *_a, **_k: 0.01)
    woken: list[str] = []
    pool = ClusterPool(Policy(), woken.extend)
    readyz = _Readyz([500, 503, 403])  # a server error is all such a server may give
    target = Target(key="k", server="https://evil.example", client=readyz)  # type: ignore[arg-type]
    pool._targets["k"] = target
    await target_problem(pool, target, _no_content_type(), "ns/a")
    assert target.probe is not None
    await asyncio.wait_for(target.probe, 5)
    assert readyz.codes == [] and target.reachable and woken == ["ns/a"]


# A cluster a tenant named, outside any sourceNetworks: whatever went wrong, the Landing is
# told the same, so that naming addresses is no port scanner; the log says why.
_UNDISCLOSED = {
    "closed port": httpx2.ConnectError("[Errno 111] Connection refused"),
    "plain HTTP": httpx2.ConnectError("[SSL: WRONG_VERSION_NUMBER] wrong version number"),
    "another CA": httpx2.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify"),
    "silent port": httpx2.ConnectTimeout("_ssl.c:989: The handshake operation timed out"),
    "too slow": DeadlineExceeded("no answer within 10s"),
    "no such host": httpcore2.ConnectError("cannot resolve nonexistent.invalid: [Errno -2]"),
    "resolves to a denied address": AddressPolicyError("internal.example: it is loopback"),
    "not an API server": _no_content_type(),
    "too large": ResponseTooLarge("the response is larger than 4194304 bytes"),
    "error without a Status": _status_error(404),
    "closed mid-answer": httpx2.RemoteProtocolError("Server disconnected without response"),
}


async def test_an_unvouched_clusters_failures_all_read_alike(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pool = ClusterPool(Policy(), lambda _keys: None)
    told = set()
    with caplog.at_level("INFO", logger="moonlander.controller.errors"):
        for name, err in _UNDISCLOSED.items():
            target = _target(vouched=False)
            problem = await target_problem(pool, target, err, "tenant-a/scan")
            outcome = problem.outcome
            told.add((outcome.reason, outcome.message, outcome.retry, outcome.retry_after))
            target.unreachable_until = 0.0 if target.until_probe else target.unreachable_until
            if not target.reachable:  # and so does failing fast afterwards
                with pytest.raises(LandingProblem) as caught:
                    fail_fast(target)
                after = caught.value.outcome
                told.add((after.reason, after.message, after.retry, after.retry_after))
            if target.probe is not None:
                target.probe.cancel()
            assert "evil.example" not in outcome.message, name
    assert told == {(Reason.CLUSTER_UNREACHABLE, UNREACHABLE, Retry.BACKOFF, None)}
    # The operator reads why, by Landing and server.
    logged = caplog.text
    for detail in ("Errno 111", "WRONG_VERSION_NUMBER", "CERTIFICATE_VERIFY_FAILED", "resolve"):
        assert detail in logged, detail
    assert "tenant-a/scan" in logged and "https://evil.example" in logged


async def test_an_api_servers_own_answer_and_a_vouched_cluster_are_told() -> None:
    pool = ClusterPool(Policy(), lambda _keys: None)
    # A Status from an API server (TLS verified against the kubeconfig's CA) is told.
    problem = await target_problem(pool, _target(vouched=False), api_error(403), "ns/a")
    assert problem.outcome.reason is Reason.FORBIDDEN and "said 403" in problem.outcome.message
    # Within a namespace's sourceNetworks the operator vouched for the network: the why.
    target = _target(vouched=True)
    refused = httpx2.ConnectError("[Errno 111] Connection refused")
    problem = await target_problem(pool, target, refused, "ns/a")
    assert "Errno 111" in problem.outcome.message
    with pytest.raises(LandingProblem) as caught:
        fail_fast(target)
    assert "Errno 111" in caught.value.outcome.message
    assert target.probe is not None
    target.probe.cancel()


async def test_a_target_is_vouched_for_only_within_source_networks() -> None:
    import ipaddress

    creds = credentials()
    pool = ClusterPool(Policy(allow_loopback=True), lambda _keys: None)
    try:
        assert not pool.get(creds).vouched
        narrowed = Policy(
            allow_loopback=True, within_networks=(ipaddress.ip_network("127.0.0.0/8"),)
        )
        assert pool.get(creds, narrowed).vouched
    finally:
        await pool.close()


async def test_an_unvouched_clusters_retry_after_is_obeyed_not_told() -> None:
    pool = ClusterPool(Policy(), lambda _keys: None)
    request = httpx2.Request("GET", "https://evil.example/api")
    response = httpx2.Response(429, headers={"Retry-After": "20"}, request=request)
    err = httpx2.HTTPStatusError("429", request=request, response=response)
    problem = await target_problem(pool, _target(vouched=False), err, "ns/a")
    assert problem.outcome.message == UNREACHABLE  # nothing of the answer is told
    assert problem.outcome.retry_after == 20  # but the retry waits as the server asked
