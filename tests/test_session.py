"""VeoSession over real HTTP on loopback against FakeKie: one request, every answer."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime as dt
import gc
import json
import pickle
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest

from veo_async import (
    APIError,
    AuthenticationError,
    ContentPolicyError,
    InsufficientCreditsError,
    NotFoundError,
    RateLimitError,
    RawResponse,
    RecordInfo,
    RecordNotFoundError,
    ResponseError,
    ServerError,
    ServiceUnavailableError,
    SessionClosedError,
    TaskFailedError,
    TaskStatus,
    Transport,
    TransportError,
    VeoSession,
    VeoTask,
)
from veo_async._endpoints import GENERATE_PATH
from veo_async._http import AiohttpTransport, ApiKey, HttpRequest
from veo_async._requester import RECORD_INFO_PATH
from veo_async.events import Event, RequestFailed, RequestStarted, SessionPaused
from veo_async.testing import FakeKie, Fault, Quirks, TaskScript

from .conftest import API_KEY, FAST_POLICY, eventually, session_on

#: Real HTTP on 127.0.0.1: this module pins the wire path.
pytestmark = pytest.mark.loopback

RECORD_INFO = "/api/v1/veo/record-info"

MakeVeo = Callable[..., VeoSession]


# -- success ------------------------------------------------------------------------------


async def test_record_info_success(fake_kie: FakeKie, veo: VeoSession) -> None:
    """record_info makes one GET and returns the parsed SUCCESS record."""
    fake_kie.add_task("veo_task_ok", params={"prompt": "a cat", "aspectRatio": "16:9"})
    info = await veo.record_info("veo_task_ok")
    assert isinstance(info, RecordInfo)
    assert info.task_id == "veo_task_ok"
    assert info.status is TaskStatus.SUCCESS
    assert info.is_done
    assert info.params["prompt"] == "a cat"
    assert info.result_urls == ("https://tempfile.example/veo/veo_task_ok/video.mp4",)
    assert info.response is not None
    assert info.response.resolution == "1080p"
    assert isinstance(info.create_time, dt.datetime)
    assert info.create_time.tzinfo is not None
    assert info.error_code is None
    assert fake_kie.total_requests == 1
    request = fake_kie.requests[-1]
    assert (request.method, request.path, request.query) == (
        "GET",
        RECORD_INFO,
        {"taskId": "veo_task_ok"},
    )
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"


async def test_record_info_generating(fake_kie: FakeKie, veo: VeoSession) -> None:
    """A task still rendering answers GENERATING with no response, not an error."""
    fake_kie.add_task("veo_task_busy", complete_after=60)
    info = await veo.record_info("veo_task_busy")
    assert info.status is TaskStatus.GENERATING
    assert not info.is_done
    assert info.response is None
    assert info.result_urls == ()


async def test_record_info_does_not_retry(fake_kie: FakeKie, veo: VeoSession) -> None:
    """record_info is one request: a transient fault is raised, not retried."""
    fake_kie.add_task("t1", faults=[Fault.server_error()])
    with pytest.raises(ServerError):
        await veo.record_info("t1")
    assert fake_kie.polls("t1") == 1


# -- every error class, end to end ----------------------------------------------------------


async def test_bad_key_is_authentication_error(fake_kie: FakeKie, make_veo: MakeVeo) -> None:
    """A key the service refuses (HTTP 401) raises AuthenticationError, not retryable."""
    fake_kie.add_task("t1")
    veo = make_veo("not-the-key")
    with pytest.raises(AuthenticationError) as caught:
        await veo.record_info("t1")
    assert caught.value.code == 401
    assert caught.value.http_status == 401
    assert caught.value.task_id == "t1"
    assert not caught.value.retryable


@pytest.mark.parametrize(
    ("code", "msg", "error_class", "retryable"),
    [
        (402, "Insufficient credits", InsufficientCreditsError, False),
        (404, "Not found", NotFoundError, False),
        (400, "Content policy violation", ContentPolicyError, False),
        (451, "Failed to fetch the image", APIError, False),
        (501, "Generation failed", ServerError, False),
        (500, "Internal error", ServerError, True),
    ],
)
async def test_body_code_errors(
    fake_kie: FakeKie,
    veo: VeoSession,
    code: int,
    msg: str,
    error_class: type[APIError],
    retryable: bool,
) -> None:
    """An error code in an HTTP-200 envelope raises its own class with code, msg and task id."""
    fake_kie.add_task("t1", faults=[Fault.body_code(code, msg)])
    with pytest.raises(error_class) as caught:
        await veo.record_info("t1")
    error = caught.value
    assert type(error) is error_class
    assert (error.code, error.http_status, error.task_id) == (code, 200, "t1")
    assert msg in error.message
    assert error.retryable is retryable


async def test_record_null_is_record_not_found(fake_kie: FakeKie, veo: VeoSession) -> None:
    """``422 record is null`` raises RecordNotFoundError."""
    fake_kie.add_task("t1", faults=[Fault.record_null()])
    with pytest.raises(RecordNotFoundError) as caught:
        await veo.record_info("t1")
    assert caught.value.code == 422
    assert caught.value.task_id == "t1"


async def test_unknown_id_is_record_not_found(veo: VeoSession) -> None:
    """An id the service never saw raises RecordNotFoundError."""
    with pytest.raises(RecordNotFoundError):
        await veo.record_info("veo_task_nobody_made")


async def test_data_null_is_record_not_found(fake_kie: FakeKie, veo: VeoSession) -> None:
    """``200 success`` with ``data: null`` raises RecordNotFoundError like 422 does."""
    fake_kie.add_task("t1", faults=[Fault.data_null()])
    with pytest.raises(RecordNotFoundError) as caught:
        await veo.record_info("t1")
    assert caught.value.task_id == "t1"


async def test_body_429_is_rate_limit_error(fake_kie: FakeKie, veo: VeoSession) -> None:
    """A body-code 429 raises a retryable RateLimitError without retry_after."""
    fake_kie.add_task("t1", faults=[Fault.body_429()])
    with pytest.raises(RateLimitError) as caught:
        await veo.record_info("t1")
    assert caught.value.retryable
    assert caught.value.retry_after is None
    assert veo.stats.rate_limited == 1


@pytest.mark.parametrize(("header", "seconds"), [(7, 7.0), (0.5, 0.5), ("3", 3.0)])
async def test_http_429_retry_after(
    fake_kie: FakeKie, veo: VeoSession, header: float | str, seconds: float
) -> None:
    """HTTP 429 with Retry-After raises RateLimitError carrying the header's seconds."""
    fake_kie.add_task("t1", faults=[Fault.http_429(retry_after=header)])
    with pytest.raises(RateLimitError) as caught:
        await veo.record_info("t1")
    assert caught.value.retry_after == pytest.approx(seconds)
    assert caught.value.http_status == 429


async def test_maintenance_is_service_unavailable(fake_kie: FakeKie, veo: VeoSession) -> None:
    """Body code 455 raises a retryable ServiceUnavailableError."""
    fake_kie.add_task("t1", faults=[Fault.maintenance()])
    with pytest.raises(ServiceUnavailableError) as caught:
        await veo.record_info("t1")
    assert caught.value.code == 455
    assert caught.value.retryable


async def test_http_500_is_server_error(fake_kie: FakeKie, veo: VeoSession) -> None:
    """HTTP 500 with a 500 envelope raises a retryable ServerError."""
    fake_kie.add_task("t1", faults=[Fault.server_error()])
    with pytest.raises(ServerError) as caught:
        await veo.record_info("t1")
    assert (caught.value.code, caught.value.http_status) == (500, 500)
    assert caught.value.retryable


async def test_html_bad_gateway_is_server_error(fake_kie: FakeKie, veo: VeoSession) -> None:
    """A proxy's HTML 502 page raises a retryable ServerError keeping a short excerpt."""
    fake_kie.add_task("t1", faults=[Fault.bad_gateway_html()])
    with pytest.raises(ServerError) as caught:
        await veo.record_info("t1")
    assert (caught.value.code, caught.value.http_status) == (502, 502)
    assert caught.value.retryable
    assert "Bad gateway" in caught.value.message
    assert len(caught.value.message) < 400


@pytest.mark.parametrize("fault", [Fault.truncated_json(), Fault.empty_body()], ids=repr)
async def test_unreadable_body_is_response_error(
    fake_kie: FakeKie, veo: VeoSession, fault: Fault
) -> None:
    """A truncated JSON or empty body with HTTP 200 raises a retryable ResponseError."""
    fake_kie.add_task("t1", faults=[fault])
    with pytest.raises(ResponseError) as caught:
        await veo.record_info("t1")
    assert caught.value.retryable
    assert caught.value.http_status == 200


async def test_reset_is_transport_error(fake_kie: FakeKie, veo: VeoSession) -> None:
    """A dropped connection raises a retryable TransportError that chains nothing
    (aiohttp's exception and frames hold the request headers, the key among them)."""
    # Two: aiohttp itself retries an idempotent request once on a reused connection.
    fake_kie.inject(Fault.reset(), 2)
    fake_kie.add_task("t1")
    with pytest.raises(TransportError) as caught:
        await veo.record_info("t1")
    assert caught.value.retryable
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None


async def test_slow_answer_beyond_request_timeout(fake_kie: FakeKie, make_veo: MakeVeo) -> None:
    """An answer slower than request_timeout raises a retryable TransportError."""
    fake_kie.add_task("t1", faults=[Fault.slow(5)])
    veo = make_veo(request_timeout=0.2)
    with pytest.raises(TransportError) as caught:
        await veo.record_info("t1")
    assert caught.value.retryable


async def test_slow_answer_within_request_timeout(fake_kie: FakeKie, veo: VeoSession) -> None:
    """An answer slower than usual but within request_timeout is simply the answer."""
    fake_kie.add_task("t1", faults=[Fault.slow(0.2)])
    assert (await veo.record_info("t1")).status is TaskStatus.SUCCESS


async def test_oversized_body_is_response_error(fake_kie: FakeKie, veo: VeoSession) -> None:
    """A body over the 1 MiB cap raises a ResponseError that is not retryable."""
    fake_kie.add_task("t1", faults=[Fault.oversized()])
    with pytest.raises(ResponseError) as caught:
        await veo.record_info("t1")
    assert not caught.value.retryable
    # The session survives it: the connection was given up, not left half read.
    assert (await veo.record_info("t1")).status is TaskStatus.SUCCESS


async def test_errors_are_counted_in_stats(fake_kie: FakeKie, veo: VeoSession) -> None:
    """stats counts every request started and every one that failed."""
    fake_kie.add_task("t1", faults=[Fault.server_error(), Fault.record_null()])
    for _ in range(2):
        with pytest.raises(APIError):
            await veo.record_info("t1")
    await veo.record_info("t1")
    assert (veo.stats.requests, veo.stats.failures) == (3, 2)


class _RefusingTransport:
    """A Transport raising what is not a VeoError (as aiohttp does when it
    refuses how a session was made: .netrc credentials beside our header),
    its message quoting the key."""

    async def send(self, request: Any) -> RawResponse:
        raise ValueError(f"cannot send with {API_KEY}")

    async def aclose(self) -> None:
        pass


async def test_a_transport_error_of_another_kind_is_a_failed_request() -> None:
    """An exception that is not a VeoError is passed on to the caller as it
    is, but the request still ends as a failure: it was counted as started
    only (stats.failures 0, no RequestFailed after its RequestStarted), and
    its message kept the key."""
    events: list[Event] = []
    async with VeoSession(API_KEY, transport=_RefusingTransport(), on_event=events.append) as veo:
        for _ in range(2):
            with pytest.raises(ValueError, match="cannot send with") as caught:
                await veo.record_info("veo_a")
            assert API_KEY not in str(caught.value)
        stats = veo.stats
        assert (stats.requests, stats.failures, stats.in_flight) == (2, 2, 0)
        assert stats.last_error is not None
        assert "the transport raised ValueError" in str(stats.last_error)
        assert API_KEY not in repr(stats.last_error)
    assert [type(e) for e in events] == [RequestStarted, RequestFailed] * 2
    failed = events[1]
    assert isinstance(failed, RequestFailed)
    assert failed.task_id == "veo_a"


# -- the API key and the User-Agent --------------------------------------------------------


async def test_missing_key_raises_before_io(
    fake_kie: FakeKie, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No api_key and no KIE_API_KEY raises ValueError at construction, before any request."""
    monkeypatch.delenv("KIE_API_KEY", raising=False)
    with pytest.raises(ValueError, match="KIE_API_KEY"):
        VeoSession(base_url=fake_kie.base_url)
    for blank in ("", "   "):
        with pytest.raises(ValueError, match="API key"):
            VeoSession(blank, base_url=fake_kie.base_url)
    monkeypatch.setenv("KIE_API_KEY", "  ")
    with pytest.raises(ValueError, match="API key"):
        VeoSession(base_url=fake_kie.base_url)
    assert fake_kie.total_requests == 0


async def test_key_from_environment(fake_kie: FakeKie, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no api_key argument the KIE_API_KEY variable is sent as the Bearer token."""
    monkeypatch.setenv("KIE_API_KEY", API_KEY)
    fake_kie.add_task("t1")
    async with VeoSession(base_url=fake_kie.base_url, policy=FAST_POLICY) as veo:
        assert (await veo.record_info("t1")).status is TaskStatus.SUCCESS
    assert fake_kie.requests[-1].headers["Authorization"] == f"Bearer {API_KEY}"


async def test_explicit_key_wins_over_environment(
    fake_kie: FakeKie, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An api_key argument is used even when KIE_API_KEY holds another key."""
    monkeypatch.setenv("KIE_API_KEY", "some-other-key")
    fake_kie.add_task("t1")
    async with VeoSession(API_KEY, base_url=fake_kie.base_url) as veo:
        await veo.record_info("t1")
    assert fake_kie.requests[-1].headers["Authorization"] == f"Bearer {API_KEY}"


async def test_user_agent_passes_the_proxy(fake_kie: FakeKie, veo: VeoSession) -> None:
    """The SDK sends a real User-Agent starting with veo-async/ that the proxy lets through."""
    fake_kie.add_task("t1")
    await veo.record_info("t1")
    assert fake_kie.count_status(403) == 0
    user_agent = fake_kie.requests[-1].headers["User-Agent"]
    assert user_agent.startswith("veo-async/")
    assert "aiohttp/" in user_agent
    assert "python/" in user_agent


# -- the injected aiohttp session and the lifecycle ----------------------------------------


async def test_injected_client_session_is_used_and_left_open(fake_kie: FakeKie) -> None:
    """An injected aiohttp.ClientSession carries the requests and is not closed by aclose."""
    started: list[str] = []

    async def on_request_start(
        _session: aiohttp.ClientSession, _ctx: Any, params: aiohttp.TraceRequestStartParams
    ) -> None:
        started.append(params.url.path)

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_request_start)
    fake_kie.add_task("t1")
    http = aiohttp.ClientSession(trace_configs=[trace])
    try:
        veo = VeoSession(API_KEY, base_url=fake_kie.base_url, session=http)
        await veo.record_info("t1")
        await veo.aclose()
        assert veo.closed
        assert started == [RECORD_INFO]
        assert not http.closed
        # Still usable by its owner.
        async with http.get(fake_kie.base_url + "/api/v1/chat/credit") as response:
            assert response.status in (200, 401, 403)
    finally:
        await http.close()


def test_the_aiohttp_floor_has_what_an_injected_session_needs() -> None:
    """pyproject admitted aiohttp 3.9, where a session given with a
    ``base_url`` of its own failed every request (an empty AssertionError,
    fixed in 3.12) and aiohttp's resend of a GET could not be switched off
    (3.11): see the test below."""
    dependencies = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    floor = re.search(r'"aiohttp>=(\d+)\.(\d+)', dependencies)
    assert floor is not None
    assert (int(floor[1]), int(floor[2])) >= (3, 12)


async def test_an_injected_session_with_a_base_url_of_its_own_works(fake_kie: FakeKie) -> None:
    """A session made with ``base_url=`` (for its owner's relative requests)
    still takes our absolute URLs."""
    fake_kie.add_task("t1")
    async with (
        aiohttp.ClientSession(base_url="http://127.0.0.1:9/") as http,
        VeoSession(API_KEY, base_url=fake_kie.base_url, session=http) as veo,
    ):
        assert (await veo.record_info("t1")).status is TaskStatus.SUCCESS


@pytest.mark.parametrize(
    ("limit", "per_host", "expected"), [(2, 0, 2), (0, 3, 3), (5, 2, 2), (0, 0, 16), (100, 0, 16)]
)
async def test_an_injected_pool_smaller_than_concurrency_bounds_it(
    fake_kie: FakeKie, limit: int, per_host: int, expected: int
) -> None:
    """An injected session whose pool lets fewer requests out than
    ``concurrency`` bounds the session's in-flight window: no request waits in
    the pool (spending its request_timeout unsent, counted as in flight)."""
    for n in range(12):
        fake_kie.add_task(f"t{n}", complete_after=0.0)
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=per_host)
    async with aiohttp.ClientSession(connector=connector) as http:
        veo = VeoSession(API_KEY, base_url=fake_kie.base_url, session=http, concurrency=16)
        assert veo.concurrency == expected
        async with veo:
            await veo.wait_many([f"t{n}" for n in range(12)])
            assert veo.stats.max_in_flight <= expected
            assert veo.stats.failures == 0


async def test_an_injected_session_closed_by_its_owner_ends_waits_clearly(
    fake_kie: FakeKie,
) -> None:
    """An injected session its owner closed while the VeoSession is open: a
    wait ends at once with SessionClosedError naming it (not aiohttp's bare
    RuntimeError, nor retries until the deadline)."""
    fake_kie.add_task("t1", complete_after=3600)
    http = aiohttp.ClientSession()
    async with VeoSession(API_KEY, base_url=fake_kie.base_url, session=http) as veo:
        await veo.record_info("t1")
        await http.close()
        with pytest.raises(SessionClosedError, match="closed by its owner"):
            await veo.task("t1").wait(timeout=600)
        with pytest.raises(SessionClosedError, match="closed by its owner"):
            await veo.record_info("t1")


async def test_injected_session_raise_for_status_is_ignored(fake_kie: FakeKie) -> None:
    """An injected session made with raise_for_status=True still gets the SDK's error classes."""
    fake_kie.add_task("t1", faults=[Fault.server_error()])
    async with aiohttp.ClientSession(raise_for_status=True) as http:
        async with VeoSession("wrong-key", base_url=fake_kie.base_url, session=http) as veo:
            with pytest.raises(AuthenticationError):
                await veo.record_info("t1")
        async with VeoSession(API_KEY, base_url=fake_kie.base_url, session=http) as veo:
            with pytest.raises(ServerError):
                await veo.record_info("t1")


def _unclosed_warnings(made: list[Any]) -> list[str]:
    """The ResourceWarnings garbage collection raises for what ``made`` left open."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        made.clear()
        for _ in range(3):  # the session, then its connector, may sit in cycles
            gc.collect()
    return [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]


async def test_owned_client_session_is_closed(fake_kie: FakeKie) -> None:
    """Without an injected session, aclose closes the one the SDK made: collecting
    it raises no "Unclosed" ResourceWarning."""
    fake_kie.add_task("t1")
    made = [VeoSession(API_KEY, base_url=fake_kie.base_url)]
    await made[0].record_info("t1")
    await made[0].aclose()
    assert made[0].closed
    assert _unclosed_warnings(made) == []


@pytest.mark.parametrize("steps", [1, 2, 3, 4])
async def test_a_cancelled_close_still_closes_every_owned_client(
    fake_kie: FakeKie, steps: int
) -> None:
    """The transport's two owned clients (polls; creates, each on a
    connection of its own) are both closed by an aclose cancelled ``steps``
    loop steps in (Ctrl-C while the command line closes): one was left open
    ("Unclosed client session" on stderr)."""
    fake_kie.add_task("t1")
    made = [AiohttpTransport(base_url=fake_kie.base_url)]
    key = ApiKey(API_KEY)
    await made[0].send(HttpRequest("GET", RECORD_INFO_PATH, {"taskId": "t1"}, api_key=key))
    body = {"prompt": "a cat", "model": "veo3_fast"}
    await made[0].send(HttpRequest("POST", GENERATE_PATH, json=body, api_key=key))
    closing = asyncio.ensure_future(made[0].aclose())
    for _ in range(steps):
        await asyncio.sleep(0)
    closing.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await closing
    assert made[0].closed
    assert _unclosed_warnings(made) == []


async def test_a_closed_transport_makes_no_client_again(fake_kie: FakeKie) -> None:
    """After aclose() (whether it ever sent a GET, a POST or nothing), the
    transport says closed and refuses with SessionClosedError: a POST made a
    new, never-closed client, or raised aiohttp's bare RuntimeError."""
    key = ApiKey(API_KEY)
    body = {"prompt": "a cat", "model": "veo3_fast"}
    used = AiohttpTransport(base_url=fake_kie.base_url)
    await used.send(HttpRequest("POST", GENERATE_PATH, json=body, api_key=key))
    made = [used, AiohttpTransport(base_url=fake_kie.base_url)]
    for transport in made:
        await transport.aclose()
        assert transport.closed
        for request in (
            HttpRequest("POST", GENERATE_PATH, json=body, api_key=key),
            HttpRequest("GET", RECORD_INFO_PATH, {"taskId": "t1"}, api_key=key),
        ):
            with pytest.raises(SessionClosedError):
                await transport.send(request)
    assert _unclosed_warnings(made) == []


async def test_aclose_is_idempotent(fake_kie: FakeKie) -> None:
    """aclose may be called any number of times, before or after use."""
    fake_kie.add_task("t1")
    unused = VeoSession(API_KEY, base_url=fake_kie.base_url)
    await unused.aclose()
    await unused.aclose()
    async with VeoSession(API_KEY, base_url=fake_kie.base_url) as veo:
        await veo.record_info("t1")
        await veo.aclose()
        await veo.aclose()
    assert veo.closed
    assert "closed" in repr(veo)


class CountingTransport:
    """A Transport (the public seam) over another, counting its closes."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.closes = 0

    async def send(self, request: Any) -> Any:
        return await self.inner.send(request)

    async def aclose(self) -> None:
        self.closes += 1
        await self.inner.aclose()


async def test_a_cancelled_aclose_still_closes_the_transport(fake_kie: FakeKie) -> None:
    """aclose() cancelled while its polls wind down (a second Ctrl-C, an outer
    timeout) still closes the transport, and the waits end: the session counts
    as closed, so nothing would call it again. It used to leave it open."""
    fake_kie.add_task("t1", complete_after=1000.0, faults=[Fault.slow(5.0)])
    transport = CountingTransport(fake_kie.transport())
    veo = VeoSession(API_KEY, transport=transport, policy=FAST_POLICY)
    await veo.__aenter__()
    waiting = asyncio.ensure_future(veo.task("t1").wait(timeout=None))
    await eventually(lambda: veo.stats.in_flight == 1)
    closer = asyncio.ensure_future(veo.aclose())
    await asyncio.sleep(0)  # aclose now waits for the cancelled polls
    closer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closer
    await veo.aclose()
    assert veo.closed
    assert transport.closes == 1
    with pytest.raises(SessionClosedError):
        await asyncio.wait_for(waiting, 1.0)


async def test_a_batch_ended_by_the_close_names_each_id_in_its_error(fake_kie: FakeKie) -> None:
    """The session closed during a wait_many(return_exceptions=True): each
    id's SessionClosedError carries its task_id, as every per-id error does
    (those polled and those still queued behind the concurrency window)."""
    ids = [f"t{i}" for i in range(6)]
    for task_id in ids:
        fake_kie.add_task(task_id, complete_after=3600)
    veo = session_on(fake_kie, concurrency=2)
    batch = asyncio.ensure_future(veo.wait_many(ids, timeout=None, return_exceptions=True))
    await eventually(lambda: veo.stats.requests >= 6)
    await veo.aclose()
    outcomes = await batch
    assert [type(outcome) for outcome in outcomes] == [SessionClosedError] * 6
    assert [outcome.task_id for outcome in outcomes] == ids  # type: ignore[union-attr]


async def test_closed_session_refuses_work(fake_kie: FakeKie) -> None:
    """After aclose, record_info, task(), waits and re-entering raise RuntimeError, no I/O."""
    fake_kie.add_task("t1")
    veo = VeoSession(API_KEY, base_url=fake_kie.base_url, policy=FAST_POLICY)
    handle = veo.task("t1")
    await veo.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await veo.record_info("t1")
    with pytest.raises(RuntimeError, match="closed"):
        veo.task("t1")
    with pytest.raises(RuntimeError, match="closed"):
        await handle.wait()
    with pytest.raises(RuntimeError, match="closed"):
        await handle.refresh()
    with pytest.raises(RuntimeError, match="closed"):
        async with veo:
            pass
    assert fake_kie.total_requests == 0


async def test_a_finished_handle_answers_from_memory_after_the_session_closed(
    fake_kie: FakeKie,
) -> None:
    """A handle whose terminal record is known needs no request: after aclose
    its wait, await and watch still answer (the record, or the task's
    failure), as README promises; an unfinished handle's wait is refused."""
    fake_kie.add_task("done")
    fake_kie.add_task("failed", final_status=2)
    fake_kie.add_task("running", complete_after=3600)
    veo = VeoSession(API_KEY, base_url=fake_kie.base_url, policy=FAST_POLICY)
    done, failed, running = veo.task("done"), veo.task("failed"), veo.task("running")
    record = await done.wait(timeout=30)
    with pytest.raises(TaskFailedError):
        await failed.wait(timeout=30)
    await running.refresh()
    await veo.aclose()
    requests = fake_kie.total_requests
    assert await done.wait() is record
    assert await done is record
    assert [r async for r in done.watch()] == [record]
    with pytest.raises(TaskFailedError) as caught:
        await failed
    assert caught.value.record is failed.record
    assert [r.status for r in [r async for r in failed.watch()]] == [TaskStatus.FAILED]
    with pytest.raises(SessionClosedError):
        await running.wait()
    with pytest.raises(SessionClosedError):
        await anext(running.watch())
    with pytest.raises(ValueError, match="timeout"):
        await done.wait(timeout=-1)  # arguments are still checked
    assert fake_kie.total_requests == requests


# -- validation ---------------------------------------------------------------------------------

BAD_IDS: list[Any] = ["", "  x", "x ", 123, None, "a" * 300, "a\nb", "a\tb", b"bytes"]


@pytest.mark.parametrize("bad_id", BAD_IDS, ids=repr)
async def test_bad_task_ids_rejected_without_io(
    fake_kie: FakeKie, veo: VeoSession, bad_id: Any
) -> None:
    """Invalid ids raise TypeError/ValueError from record_info and task() with no request."""
    with pytest.raises((TypeError, ValueError)):
        await veo.record_info(bad_id)
    with pytest.raises((TypeError, ValueError)):
        veo.task(bad_id)
    assert fake_kie.total_requests == 0


async def test_non_string_ids_are_type_errors(veo: VeoSession) -> None:
    """A non-str id is a TypeError, a malformed string a ValueError."""
    with pytest.raises(TypeError):
        veo.task(123)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="whitespace"):
        veo.task(" x")


@pytest.mark.parametrize("hostile", ["a&b=c", "x?y#z", "a+b", "a%20b", "é/ü;x=1"])
async def test_hostile_ids_arrive_verbatim(
    fake_kie: FakeKie, veo: VeoSession, hostile: str
) -> None:
    """An id with URL metacharacters reaches the server as exactly that taskId, no extra params."""
    fake_kie.add_task(hostile)
    info = await veo.record_info(hostile)
    assert info.task_id == hostile
    request = fake_kie.requests[-1]
    assert request.query == {"taskId": hostile}
    assert request.path == RECORD_INFO


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"concurrency": 0}, ValueError),
        ({"concurrency": -1}, ValueError),
        ({"concurrency": True}, ValueError),
        ({"concurrency": 2.5}, ValueError),
        ({"rate": -1}, ValueError),
        ({"rate": 0}, ValueError),
        ({"rate": float("nan")}, ValueError),
        ({"request_timeout": 0}, ValueError),
        ({"request_timeout": -3}, ValueError),
        ({"request_timeout": float("inf")}, ValueError),
        ({"base_url": "ftp://x"}, ValueError),
        ({"base_url": "api.kie.ai"}, ValueError),
        ({"base_url": "http://"}, ValueError),
        ({"base_url": "http://a b"}, ValueError),
        ({"base_url": "http://127.0.0.1:9\n"}, ValueError),
        ({"base_url": "http://h\x00x"}, ValueError),
        ({"base_url": "http://h:99999"}, ValueError),
        ({"base_url": "http://h/?x=1"}, ValueError),
        ({"base_url": "http://h?"}, ValueError),
        ({"base_url": "http://h/#"}, ValueError),
        ({"base_url": ""}, ValueError),
        ({"base_url": 3}, TypeError),
        ({"session": 3}, TypeError),
        ({"session": "http"}, TypeError),
        ({"session": "http", "transport": FakeKie().transport()}, TypeError),
        ({"policy": "fast"}, TypeError),
        # A number setting given no number: both, as every such setting is.
        ({"concurrency": "8"}, TypeError),
        ({"concurrency": "8"}, ValueError),
        ({"concurrency": None}, TypeError),
        ({"request_timeout": "5"}, TypeError),
    ],
    ids=repr,
)
async def test_invalid_settings(
    fake_kie: FakeKie, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    """Invalid constructor settings raise at construction, before any I/O."""
    kwargs.setdefault("base_url", fake_kie.base_url)
    with pytest.raises(error):
        VeoSession(API_KEY, **kwargs)
    assert fake_kie.total_requests == 0


@pytest.mark.parametrize("url", ["http://user:hunter2pass@h", "https://:hunter2pass@h:8443/kie"])
def test_a_base_url_with_credentials_is_refused_without_showing_them(url: str) -> None:
    """user:password@ in base_url is refused at construction (aiohttp would
    refuse it beside our Authorization header on every request), and the
    error masks it, as every URL error does."""
    with pytest.raises(ValueError, match="must not carry credentials") as caught:
        VeoSession(API_KEY, base_url=url)
    assert "hunter2pass" not in str(caught.value)
    assert "***@" in str(caught.value)
    with pytest.raises(ValueError, match="not a valid URL") as caught:
        VeoSession(API_KEY, base_url="http://user:hunter2pass@h:99999")
    assert "hunter2pass" not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/?key=sk-hunter2-secret",
        "http://127.0.0.1:8080/#sk-hunter2-secret",
        "http://127.0.0.1:99999/?key=sk-hunter2-secret",
        "ftp://h/?key=sk-hunter2-secret",
    ],
)
def test_a_base_url_error_does_not_show_its_query_or_fragment(url: str) -> None:
    """A key put in base_url's query (or fragment) is not repeated by the
    error refusing it, as credentials are not: the error shows "?..."."""
    with pytest.raises(ValueError, match=r"base_url") as caught:
        VeoSession(API_KEY, base_url=url)
    assert "hunter2" not in str(caught.value)
    assert "127.0.0.1" in str(caught.value) or "ftp://h" in str(caught.value)


def test_a_session_on_a_transport_of_its_own_does_not_read_kie_base_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With a transport (the in-process simulator's), base_url does not
    apply: a KIE_BASE_URL meant for something else, even one that is no
    URL, does not stop the session (it raised ValueError)."""
    monkeypatch.setenv("KIE_BASE_URL", "notaurl")
    veo = VeoSession(API_KEY, transport=FakeKie().transport())
    assert "notaurl" not in repr(veo)
    with pytest.raises(ValueError, match="notaurl"):
        VeoSession(API_KEY)


def test_a_settings_error_keeps_no_frame_holding_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """A key read from KIE_API_KEY is wrapped at once: a settings error (or a
    key that cannot be sent) leaves it in no frame of the traceback as text,
    where a reporter that captures locals would find it."""
    secret = "sk-from-the-environment-123"
    monkeypatch.setenv("KIE_API_KEY", secret)
    for settings in ({"concurrency": 0}, {"base_url": "ftp://x"}, {"policy": "fast"}):
        with pytest.raises((ValueError, TypeError)) as caught:
            VeoSession(**settings)
        assert_no_local_holds(caught.value, secret)
    monkeypatch.setenv("KIE_API_KEY", "sk-from-the\nenvironment-123")
    with pytest.raises(ValueError, match="not allowed in an HTTP header") as caught:
        VeoSession()
    assert_no_local_holds(caught.value, "environment-123")


def assert_no_local_holds(error: BaseException, secret: str) -> None:
    """No frame of veo_async's in ``error``'s traceback has a local whose
    repr shows ``secret``."""
    tb = error.__traceback__
    while tb is not None:
        if str(tb.tb_frame.f_globals.get("__name__")).startswith("veo_async"):
            for name, value in tb.tb_frame.f_locals.items():
                assert secret not in repr(value), (tb.tb_frame.f_code.co_name, name)
        tb = tb.tb_next


async def test_an_injected_session_with_its_own_auth_is_refused() -> None:
    """An injected aiohttp session made with auth=... is refused at
    construction (aiohttp would refuse every request, with our header)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # auth=, in aiohttp 3.14
        http = aiohttp.ClientSession(auth=aiohttp.BasicAuth("user", "pass"))
    async with http:
        with pytest.raises(ValueError, match="has its own auth"):
            VeoSession(API_KEY, base_url="http://127.0.0.1:9", session=http)


async def test_a_json_body_is_labelled_json_over_an_injected_sessions_default(
    fake_kie: FakeKie,
) -> None:
    """An injected session whose default Content-Type is another (text/plain)
    still sends a create's JSON body as application/json; a poll, with no
    body, sends none."""
    seen: list[str | None] = []

    async def on_request_start(
        _session: aiohttp.ClientSession, _ctx: Any, params: aiohttp.TraceRequestStartParams
    ) -> None:
        seen.append(params.headers.get("Content-Type"))

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_request_start)
    fake_kie.add_task("t1")
    plain = {"Content-Type": "text/plain"}
    async with (
        aiohttp.ClientSession(headers=plain, trace_configs=[trace]) as http,
        VeoSession(API_KEY, base_url=fake_kie.base_url, session=http) as veo,
    ):
        await veo.generate("a cat")
        await veo.record_info("t1")
    assert seen[0] == "application/json"
    assert fake_kie.requests[0].headers["Content-Type"].startswith("application/json")


def test_an_api_key_that_is_not_a_string_is_a_type_error() -> None:
    """A key of the wrong type says so (not "no API key"), without showing it."""
    with pytest.raises(TypeError, match="api_key must be a str, not int") as caught:
        VeoSession(123456789)  # type: ignore[arg-type]
    assert "123456789" not in str(caught.value)


async def test_base_url_trailing_slash(fake_kie: FakeKie) -> None:
    """A base_url with a trailing slash still reaches the documented path."""
    fake_kie.add_task("t1")
    async with VeoSession(API_KEY, base_url=fake_kie.base_url + "/") as veo:
        await veo.record_info("t1")
    assert fake_kie.requests[-1].path == RECORD_INFO


# -- wire-format variants --------------------------------------------------------------------

QUIRKS = {
    "success_flag_as_str": Quirks(success_flag_as_str=True),
    "result_urls_as_json_string": Quirks(result_urls_as_json_string=True),
    "result_urls_at_data": Quirks(result_urls_at_data=True),
    "times_as_epoch_ms": Quirks(times_as_epoch_ms=True),
    "error_code_as_str_null": Quirks(error_code_as_str_null=True),
    "error_code_as_str": Quirks(error_code_as_str=True),
    "omit_fallback_flag": Quirks(omit_fallback_flag=True),
    "omit_response": Quirks(omit_response=True),
    "extra_fields": Quirks(extra_fields=True),
    "all_at_once": Quirks(
        success_flag_as_str=True,
        result_urls_as_json_string=True,
        result_urls_at_data=True,
        times_as_epoch_ms=True,
        error_code_as_str_null=True,
        error_code_as_str=True,
        omit_fallback_flag=True,
        omit_response=True,
        extra_fields=True,
    ),
}


def _logical(record: RecordInfo) -> RecordInfo:
    """The record with its task id and clock readings taken out, to compare variants."""
    response = record.response
    if response is not None:
        response = attrs.evolve(
            response,
            task_id="*",
            result_urls=tuple(url.replace(record.task_id, "*") for url in response.result_urls),
        )
    return attrs.evolve(
        record, task_id="*", create_time=None, complete_time=None, response=response
    )


@pytest.mark.parametrize("final_status", [1, 2, 3])
@pytest.mark.parametrize("phase", ["generating", "done"])
async def test_quirk_variants_parse_to_the_same_record(
    fake_kie: FakeKie, veo: VeoSession, final_status: int, phase: str
) -> None:
    """Every documented wire variant parses to the same logical record as the plain form."""
    complete_after = 60.0 if phase == "generating" else 0.0
    ids = ["plain", *QUIRKS]
    for name in ids:
        fake_kie.add_task(
            f"veo_{name}",
            complete_after=complete_after,
            final_status=final_status,
            quirks=QUIRKS.get(name, Quirks()),
        )
    records = {name: await veo.record_info(f"veo_{name}") for name in ids}
    reference = records["plain"]
    assert reference.status is (
        TaskStatus(final_status) if phase == "done" else TaskStatus.GENERATING
    )
    for name, record in records.items():
        assert record.task_id == f"veo_{name}", name
        expected = _logical(reference)
        if QUIRKS.get(name, Quirks()).result_urls_at_data and expected.response is not None:
            # URLs beside the record, no response object: the resolution is not sent.
            expected = attrs.evolve(
                expected, response=attrs.evolve(expected.response, resolution=None)
            )
        assert _logical(record) == expected, name
        if record.result_urls:
            assert record.result_urls == (f"https://tempfile.example/veo/veo_{name}/video.mp4",), (
                name
            )
        # Second-resolution strings and millisecond epochs name the same instant.
        assert record.create_time is not None
        assert reference.create_time is not None
        assert abs(record.create_time - reference.create_time) < dt.timedelta(seconds=2), name
        assert (record.complete_time is None) == (reference.complete_time is None), name


async def test_invalid_param_json_is_kept_raw(fake_kie: FakeKie, veo: VeoSession) -> None:
    """A paramJson that is not JSON keeps the record readable, with the text under "raw"."""
    fake_kie.add_task("t1", quirks=Quirks(invalid_param_json=True))
    info = await veo.record_info("t1")
    assert info.status is TaskStatus.SUCCESS
    assert set(info.params) == {"raw"}
    assert info.params["raw"].startswith("{")


async def test_task_returns_a_handle_without_io(fake_kie: FakeKie, veo: VeoSession) -> None:
    """veo.task() builds a VeoTask for the id and sends nothing."""
    handle = veo.task("t1")
    assert isinstance(handle, VeoTask)
    assert handle.task_id == "t1"
    assert handle.record is None
    assert handle.status is None
    assert fake_kie.total_requests == 0


# -- the session-wide request budget ---------------------------------------------------------


async def test_concurrency_bounds_requests_across_handles(
    fake_kie: FakeKie, make_veo: MakeVeo
) -> None:
    """No more than ``concurrency`` requests are in flight at once, across every handle."""
    ids = [f"veo_{n}" for n in range(12)]
    for task_id in ids:
        fake_kie.add_task(task_id, faults=[Fault.slow(0.1)])
    veo = make_veo(concurrency=3)
    records = await asyncio.gather(*(veo.task(task_id).wait() for task_id in ids))
    assert all(r.status is TaskStatus.SUCCESS for r in records)
    assert fake_kie.max_in_flight == 3
    assert veo.stats.max_in_flight == 3


async def test_429_pauses_the_whole_session(fake_kie: FakeKie) -> None:
    """A 429 with Retry-After holds back every handle's polls, not only the one that got it.

    Judged by when the client starts requests (RequestStarted), from when it
    learned of the 429 (SessionPaused): a request it had already started may
    reach the server after the 429 left it, on a loaded machine.
    """
    fake_kie.add_task("veo_limited", faults=[Fault.http_429(retry_after=0.4)])
    fake_kie.add_task("veo_other", complete_after=0.3)
    events: list[Event] = []
    async with session_on(fake_kie, on_event=events.append) as veo:
        other = asyncio.create_task(veo.task("veo_other").wait())
        assert await eventually(lambda: fake_kie.polls("veo_other") >= 1)
        await veo.task("veo_limited").wait()
        await other
        assert veo.stats.rate_limited == 1
    [paused] = [e for e in events if isinstance(e, SessionPaused)]
    later = [e.at for e in events if isinstance(e, RequestStarted) and e.at > paused.at]
    assert later
    assert min(later) - paused.at >= 0.35
    # The other handle was held back too (it was still running at the 429).
    held = {e.task_id for e in events if isinstance(e, RequestStarted) and e.at > paused.at}
    assert "veo_other" in held


async def test_a_one_shot_call_during_a_pause_waits_it_out_past_its_request_timeout(
    fake_kie: FakeKie,
) -> None:
    """record_info made while the session is paused by a 429 waits for the
    pause to end (the README says so), then answers: request_timeout bounds
    the HTTP exchange, not the wait for the session's turn."""
    fake_kie.add_task("veo_limited", faults=[Fault.http_429(retry_after=1.0)])
    fake_kie.add_task("veo_done", complete_after=0.0)
    async with session_on(fake_kie, request_timeout=0.1) as veo:
        with pytest.raises(RateLimitError):
            await veo.record_info("veo_limited")
        loop = asyncio.get_running_loop()
        asked = loop.time()
        record = await veo.record_info("veo_done")
        assert loop.time() - asked >= 0.5  # held for the pause (1 s from the 429)
        assert record.status is TaskStatus.SUCCESS
        assert veo.stats.pauses == 1


class _CannedTransport:
    """A Transport answering every poll with one finished record, on any loop."""

    async def send(self, request: Any) -> RawResponse:
        record = {"taskId": "veo_a", "successFlag": 1, "response": {"resultUrls": ["u"]}}
        body = json.dumps({"code": 200, "msg": "success", "data": record}).encode()
        return RawResponse(200, {}, body)

    async def aclose(self) -> None:
        pass


def test_a_handles_refresh_is_bound_to_the_sessions_event_loop() -> None:
    """refresh() from another loop than the session's is refused, as its other
    entry points are: over a transport that works on any loop it was not (and
    over aiohttp it failed deep inside with a misleading message)."""
    veo = VeoSession(API_KEY, transport=_CannedTransport(), policy=FAST_POLICY)

    async def first() -> VeoTask:
        await veo.record_info("veo_a")
        return veo.task("veo_a")

    async def second(handle: VeoTask) -> None:
        with pytest.raises(RuntimeError, match="first used in another event loop"):
            await handle.refresh()
        await veo.aclose()

    asyncio.run(second(asyncio.run(first())))


def test_a_session_is_bound_to_the_event_loop_it_was_first_used_in() -> None:
    """Used in one asyncio.run and then in another (or from a loop in another
    thread), a session says so at once, for its own calls and its handles'
    waits, instead of failing deep in aiohttp ("Event loop is closed") or
    never waking the waiter."""
    kie = FakeKie(api_key=API_KEY)
    kie.add_task("veo_a")
    veo = VeoSession(API_KEY, transport=kie.transport(), policy=FAST_POLICY)

    async def first() -> TaskStatus:
        return (await veo.record_info("veo_a")).status

    async def second() -> None:
        for call in (
            lambda: veo.task("veo_a").refresh(),
            lambda: veo.record_info("veo_a"),
            lambda: veo.task("veo_a").wait(),
        ):
            with pytest.raises(RuntimeError, match="first used in another event loop"):
                await call()
        await veo.aclose()

    assert asyncio.run(first()) is TaskStatus.SUCCESS
    asyncio.run(second())
    assert kie.total_requests == 1


@pytest.mark.parametrize("how", [copy.copy, copy.deepcopy, pickle.dumps])
async def test_a_session_cannot_be_copied_or_pickled(veo: VeoSession, how: Any) -> None:
    """copy.copy(session) made a second session sharing the first one's
    requester and store: closing the copy closed them under the original,
    which still said it was open. Copies and pickles are refused."""
    with pytest.raises(TypeError, match="VeoSession cannot be"):
        how(veo)
    assert not veo.closed


@pytest.mark.real_time
async def test_an_idle_connection_is_closed_before_a_server_closes_it() -> None:
    """A connection idle for 4 s is closed by the client, before the 5 s after
    which common servers close theirs (a request sent on one as the server
    closes it fails with no answer); one idle for 1 s is used again."""
    from aiohttp import web

    peers: list[int] = []

    async def record_info(request: web.Request) -> web.Response:
        peers.append(request.transport.get_extra_info("peername")[1])  # type: ignore[union-attr]
        record = {"taskId": "veo_a", "successFlag": 0, "paramJson": "{}"}
        return web.json_response({"code": 200, "msg": "success", "data": record})

    app = web.Application()
    app.router.add_get("/api/v1/veo/record-info", record_info)
    runner = web.AppRunner(app, keepalive_timeout=60.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        host, port = runner.addresses[0][:2]
        async with VeoSession(api_key=API_KEY, base_url=f"http://{host}:{port}") as veo:
            await veo.record_info("veo_a")
            await asyncio.sleep(1.0)
            await veo.record_info("veo_a")
            await asyncio.sleep(4.5)
            await veo.record_info("veo_a")
    finally:
        await runner.cleanup()
    assert peers[0] == peers[1] != peers[2]


def test_entering_binds_the_loop_and_a_close_from_another_open_loop_is_refused() -> None:
    """A session entered in one loop (a module-scoped fixture's) is refused
    at its first use in another (it worked there once, and the close back in
    the first left that loop's socket open); a close from another loop while
    the session's own is open is refused before anything is closed, and the
    close on the session's loop then closes it."""
    kie = FakeKie(api_key=API_KEY)
    kie.add_task("veo_a")
    veo = VeoSession(API_KEY, transport=kie.transport(), policy=FAST_POLICY)
    own = asyncio.new_event_loop()
    try:
        own.run_until_complete(veo.__aenter__())

        async def elsewhere() -> None:
            with pytest.raises(RuntimeError, match="first used in another event loop"):
                await veo.record_info("veo_a")
            with pytest.raises(RuntimeError, match="first used in another event loop"):
                await veo.aclose()

        asyncio.run(elsewhere())
        assert not veo.closed
        own.run_until_complete(veo.aclose())
        assert veo.closed
        assert kie.total_requests == 0
    finally:
        own.close()


async def test_a_read_ended_by_the_close_is_counted_as_the_error_it_raised(
    fake_kie: FakeKie,
) -> None:
    """A record_info() in flight when the session closes raises
    SessionClosedError, and the session's stats say the same (they said
    TransportError, an error nobody saw)."""
    fake_kie.add_task(TaskScript("veo_slow", faults=[Fault.slow(1000)]))
    veo = VeoSession(API_KEY, transport=fake_kie.transport(), policy=FAST_POLICY)
    reading = asyncio.ensure_future(veo.record_info("veo_slow"))
    await eventually(lambda: veo.stats.in_flight == 1)
    await veo.aclose()
    with pytest.raises(SessionClosedError) as raised:
        await reading
    assert type(veo.stats.last_error) is SessionClosedError
    assert str(veo.stats.last_error) == str(raised.value)


def test_a_closed_session_closes_again_and_refuses_entry_from_any_loop() -> None:
    """A second close of a closed session returns, whatever loop it is called
    from (cleanup code, atexit handlers, notebooks: a close from another loop
    raised "first used in another event loop" though nothing was left to
    close); entering it again says it is closed, from any loop."""
    kie = FakeKie(api_key=API_KEY)
    veo = VeoSession(API_KEY, transport=kie.transport(), policy=FAST_POLICY)
    own = asyncio.new_event_loop()
    try:

        async def use() -> None:
            async with veo:
                pass

        own.run_until_complete(use())
        assert veo.closed
        asyncio.run(veo.aclose())

        async def enter() -> None:
            with pytest.raises(SessionClosedError):
                await veo.__aenter__()

        asyncio.run(enter())
    finally:
        own.close()
