"""Pins on the request path (the requester, the session's budget and its
queue, the aiohttp transport) that mutation testing of ``_requester``,
``_limits`` and ``_http`` found no test holding: each test says which
behaviour it pins."""

from __future__ import annotations

import asyncio
import json
import socket

import aiohttp
import pytest
import yarl
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from veo_async import (
    AuthenticationError,
    ContentPolicyError,
    RateLimitError,
    ResponseError,
    SessionClosedError,
    TransportError,
)
from veo_async._http import AiohttpTransport, ApiKey, HttpRequest, _safe, capped_response
from veo_async._limits import DueQueue, RequestBudget
from veo_async._protocol import RawResponse, decode_envelope
from veo_async._requester import Requester
from veo_async.events import Event, RequestStarted

from ._virtual import run_virtual
from .test_hardening import serving
from .test_requester_edges import LIMITED, OK, _call, _requester, _Scripted

UNAUTHORIZED = b'{"code": 401, "msg": "You do not have access permissions", "data": null}'


class _Answers:
    """Answers each request by its ``json["id"]`` after a delay, with a given
    answer; records when each was sent."""

    def __init__(self, script: dict[str, tuple[float, RawResponse]]) -> None:
        self.script = script
        self.sent: dict[str, float] = {}

    async def send(self, request: HttpRequest) -> RawResponse:
        name = request.json["id"]
        self.sent[name] = asyncio.get_running_loop().time()
        delay, answer = self.script[name]
        await asyncio.sleep(delay)
        return answer

    async def aclose(self) -> None:
        pass


# -- the pure budget -------------------------------------------------------------------


def test_a_rate_window_start_is_not_allowed_even_a_moment_early() -> None:
    """With ``rate`` starts used, the next may start when the oldest leaves
    the sliding window, not any earlier (the service counts to the instant)."""
    budget = RequestBudget(10, 2)
    for _ in range(2):
        budget.start(0.0)
        budget.finish()
    assert budget.blocked_until(0.995) == pytest.approx(1.0)
    assert budget.blocked_until(1.0) is None


# -- the requester ---------------------------------------------------------------------


async def test_a_waiter_granted_and_cancelled_in_one_step_gives_its_slot_back() -> None:
    """A waiter whose slot is granted and whose task is cancelled in the same
    loop step (before it resumes) gives that slot back: nothing leaks, and
    the next request gets one at once."""
    budget = RequestBudget(1)
    queue = DueQueue(budget)
    await queue.acquire()
    waiter = asyncio.ensure_future(queue.acquire())
    await asyncio.sleep(0)
    queue.release()  # granted to the waiter, which has not run since
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert budget.in_flight == 0
    assert queue.take() is not None


def test_a_401_ends_a_create_waiting_out_a_creation_pause_at_once() -> None:
    """A create queued behind a 60 s creation pause (another create's 429)
    fails with the AuthenticationError as soon as a read meets a 401, not
    when the pause ends; it is never sent."""

    async def main() -> None:
        transport = _Answers(
            {
                "A": (0.0, RawResponse(429, {"Retry-After": "60"}, LIMITED)),
                "R": (0.5, RawResponse(200, {}, UNAUTHORIZED)),
                "W": (0.0, RawResponse(200, {}, OK)),
            }
        )
        requester = _requester(transport)
        try:
            with pytest.raises(RateLimitError):
                await _call(requester, "A", create=True)
            waiting = asyncio.create_task(_call(requester, "W", create=True))
            with pytest.raises(AuthenticationError):
                await _call(requester, "R")
            for _ in range(3):  # a few loop steps: no time passes
                await asyncio.sleep(0)
            assert waiting.done()
            with pytest.raises(AuthenticationError):
                await waiting
            assert "W" not in transport.sent
        finally:
            await requester.aclose()

    run_virtual(main)


class _FailingInsideAnExcept:
    """A user's transport raising its TransportError while it handles its
    client's own error, whose message quotes the request's headers."""

    async def send(self, request: HttpRequest) -> RawResponse:
        try:
            raise RuntimeError(f"Authorization: Bearer {request.api_key.reveal()}")
        except RuntimeError:
            raise TransportError("connection reset", sent=True)  # noqa: B904

    async def aclose(self) -> None:
        pass


def test_a_transport_error_reaches_the_caller_without_the_error_it_was_raised_over() -> None:
    """A TransportError raised inside a transport's except block comes out of
    the requester with no implicit context: the client error it was raised
    over (whose text or frames may hold the headers, the key among them) is
    not chained to it."""

    async def main() -> None:
        requester = Requester(
            _FailingInsideAnExcept(), ApiKey("sk-SECRET-abc123"), RequestBudget(4)
        )
        try:
            with pytest.raises(TransportError) as caught:
                await _call(requester, "A")
            assert caught.value.__context__ is None
            assert caught.value.__cause__ is None
        finally:
            await requester.aclose()

    run_virtual(main)


def test_a_429_to_a_create_counts_as_an_answer_for_the_polling_window() -> None:
    """After a read's 429 shrank the session's window to one probe, a
    create's 429 (creating's limit, not polling's) widens the polling window
    as any other answer does and ends the polling strike run."""

    async def main() -> None:
        transport = _Scripted({"R": (0.0, "1"), "C": (0.0, "1")})
        requester = _requester(transport)
        polling = requester.queue.budget
        try:
            with pytest.raises(RateLimitError):
                await _call(requester, "R")
            assert polling.window == 1
            await asyncio.sleep(2.0)  # past the pause
            with pytest.raises(RateLimitError):
                await _call(requester, "C", create=True)
            assert polling.window == 2
            assert requester.stats().pauses == 1
            assert requester.stats().create_pauses == 1
        finally:
            await requester.aclose()

    run_virtual(main)


async def _slow_intent(seconds: float) -> None:
    await asyncio.sleep(seconds)


def test_a_create_given_up_while_it_waits_out_a_pause_after_its_intent_says_unsent() -> None:
    """B's intent is written, then it waits out A's creation pause; cancelled
    there, B is never sent and its ``on_unsent`` is called (once), so a
    store can tell the intent certainly created nothing."""

    async def main() -> None:
        transport = _Scripted({"A": (0.2, "5"), "B": (0.0, None)})
        requester = _requester(transport)
        unsent: list[str] = []
        try:
            a = asyncio.create_task(_call(requester, "A", create=True))
            b = asyncio.create_task(
                _call(
                    requester,
                    "B",
                    create=True,
                    before_send=lambda: _slow_intent(0.5),
                    on_unsent=lambda: unsent.append("B"),
                )
            )
            await asyncio.sleep(1.0)  # B's intent is written, A's pause holds
            assert not b.done()
            b.cancel()
            with pytest.raises(asyncio.CancelledError):
                await b
            assert unsent == ["B"]
            assert "B" not in transport.sent
            with pytest.raises(RateLimitError):
                await a
            assert requester.stats().in_flight == 0
        finally:
            await requester.aclose()

    run_virtual(main)


def test_a_pause_between_two_asks_ends_with_the_close_raising_session_closed() -> None:
    """A call sleeping between two asks (a 1080p video asked for again) is
    woken by the session's close and raises SessionClosedError at once,
    instead of returning as if its sleep had ended."""

    async def main() -> None:
        requester = _requester(_Scripted({}))
        sleeper = asyncio.create_task(requester.pause(60.0))
        await asyncio.sleep(1.0)
        await requester.aclose()
        for _ in range(3):  # a few loop steps: no time passes
            await asyncio.sleep(0)
        assert sleeper.done()
        with pytest.raises(SessionClosedError):
            await sleeper

    run_virtual(main)


def test_a_cancellation_raised_by_the_event_hook_is_passed_on() -> None:
    """An ``on_event`` hook that raises CancelledError (its task is being
    cancelled) is not taken for a failing hook to log and ignore: the
    request raises it, and its slot is given back."""

    def hook(event: Event) -> None:
        if isinstance(event, RequestStarted):
            raise asyncio.CancelledError

    async def main() -> None:
        transport = _Scripted({"A": (0.0, None)})
        requester = _requester(transport, on_event=hook)
        try:
            with pytest.raises(asyncio.CancelledError):
                await _call(requester, "A")
            assert "A" not in transport.sent
            assert requester.stats().in_flight == 0
        finally:
            await requester.aclose()

    run_virtual(main)


def test_record_info_on_a_closed_session_raises_at_the_call() -> None:
    """Requester.record_info on a closed session raises SessionClosedError
    at the call itself (no coroutine is made that a caller could drop
    unawaited)."""

    async def main() -> None:
        requester = _requester(_Scripted({}))
        await requester.aclose()
        with pytest.raises(SessionClosedError):
            requester.record_info("t1")  # not awaited: the call raises

    run_virtual(main)


def test_the_server_clock_is_read_again_once_a_minute_has_passed() -> None:
    """The server's ``Date`` is handed on from the first answer, not from
    answers within a minute of that read, and again from the first answer
    more than a minute later (the clocks' offset is kept current)."""
    date = "Wed, 21 Oct 2026 07:28:00 GMT"

    async def main() -> None:
        read: list[float] = []
        transport = _Answers({name: (0.0, RawResponse(200, {"Date": date}, OK)) for name in "ABC"})
        requester = _requester(transport, on_server_date=read.append)
        try:
            await _call(requester, "A")
            await asyncio.sleep(30.0)
            await _call(requester, "B")
            assert len(read) == 1
            await asyncio.sleep(31.0)
            await _call(requester, "C")
            assert len(read) == 2
        finally:
            await requester.aclose()

    run_virtual(main)


class _Gated:
    """Answers each request by its ``json["id"]`` with a given answer, those
    named in ``gated`` once :attr:`gate` is set (all in one loop step, in
    the order they were sent); records what was sent."""

    def __init__(self, answers: dict[str, RawResponse], gated: set[str]) -> None:
        self.answers = answers
        self.gated = gated
        self.gate = asyncio.get_running_loop().create_future()
        self.sent: list[str] = []

    async def send(self, request: HttpRequest) -> RawResponse:
        name = request.json["id"]
        self.sent.append(name)
        if name in self.gated:
            await self.gate
        return self.answers[name]

    async def aclose(self) -> None:
        pass


def test_a_request_granted_just_before_a_401_is_not_sent() -> None:
    """B is granted the slot A's answer frees in the same loop step as C's
    401 arrives (before B's task runs again): B is not sent with the refused
    key, and fails with the AuthenticationError as every later request does."""

    async def main() -> None:
        transport = _Gated(
            {
                "A": RawResponse(200, {}, OK),
                "C": RawResponse(200, {}, UNAUTHORIZED),
                "B": RawResponse(200, {}, OK),
            },
            gated={"A", "C"},
        )
        requester = Requester(transport, ApiKey("test-key"), RequestBudget(2))
        try:
            a = asyncio.create_task(_call(requester, "A"))
            c = asyncio.create_task(_call(requester, "C"))
            await asyncio.sleep(0.1)
            b = asyncio.create_task(_call(requester, "B"))
            await asyncio.sleep(0.1)  # B waits for a slot
            assert transport.sent == ["A", "C"]
            transport.gate.set_result(None)
            outcomes = await asyncio.gather(a, c, b, return_exceptions=True)
            assert outcomes[0] == {}
            assert isinstance(outcomes[1], AuthenticationError)
            assert isinstance(outcomes[2], AuthenticationError)
            assert transport.sent == ["A", "C"]
            assert requester.stats().in_flight == 0
        finally:
            await requester.aclose()

    run_virtual(main)


def test_the_default_creation_budget_counts_a_create_until_its_answer() -> None:
    """With the default creation budget (Kie's 20 per 10 s), a create holds
    its place in the window from its start until 10 s after its answer (the
    service counts it when it arrives, somewhere in between): after 20 slow
    creates, the 21st goes 10 s after their answers, not 10 s after their
    starts."""

    async def main() -> None:
        names = [f"c{n}" for n in range(20)]
        transport = _Scripted({**dict.fromkeys(names, (3.0, None)), "X": (0.0, None)})
        requester = Requester(transport, ApiKey("test-key"), RequestBudget(64))
        try:
            await asyncio.gather(*(_call(requester, name, create=True) for name in names))
            await _call(requester, "X", create=True)
            # The first answer came 3 s after the first start at the earliest
            # (the virtual clock also carries the real time a loaded machine
            # takes, so the answers' own times are not pinned down).
            first_answer = min(transport.sent[name] for name in names) + 3.0
            assert transport.sent["X"] >= first_answer + 10.0 - 0.01
        finally:
            await requester.aclose()

    run_virtual(main)


SECRET = "sk-SECRET-abc123"


class _Body:
    """Answers every request with HTTP 200 and ``body``."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    async def send(self, request: HttpRequest) -> RawResponse:
        return RawResponse(200, {}, self.body)

    async def aclose(self) -> None:
        pass


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-32"])
def test_an_error_quoting_the_key_in_an_answer_of_any_json_encoding_hides_it(
    encoding: str,
) -> None:
    """An error envelope that quotes the key back, in any encoding the JSON
    reader accepts (UTF-8, UTF-16, UTF-32), raises an error whose text and
    repr do not hold the key."""
    refusal = {"code": 400, "msg": f"key {SECRET} refused", "data": None}

    async def main() -> None:
        body = json.dumps(refusal).encode(encoding)
        requester = Requester(_Body(body), ApiKey(SECRET), RequestBudget(4))
        try:
            with pytest.raises(ContentPolicyError) as caught:
                await requester.call("GET", "/x", decode_envelope)
            error = caught.value
            assert SECRET not in f"{error} {error!r} {error.args}"
        finally:
            await requester.aclose()

    run_virtual(main)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-32"])
def test_a_record_quoting_the_key_in_an_answer_of_any_json_encoding_hides_it(
    encoding: str,
) -> None:
    """A record-info answer whose errorMessage quotes the key back, in any
    encoding the JSON reader accepts (UTF-8, UTF-16, UTF-32), gives a record
    whose fields and repr do not hold the key."""
    answer = {
        "code": 200,
        "msg": "success",
        "data": {
            "taskId": "t1",
            "paramJson": json.dumps({"prompt": "a cat"}),
            "successFlag": 2,
            "errorCode": 400,
            "errorMessage": f"refused for key {SECRET}",
            "createTime": "2025-06-06 10:25:00",
            "response": None,
        },
    }

    async def main() -> None:
        body = json.dumps(answer).encode(encoding)
        requester = Requester(_Body(body), ApiKey(SECRET), RequestBudget(4))
        try:
            record = await requester.record_info("t1")
            assert record.error_message is not None
            assert SECRET not in record.error_message
            assert SECRET not in repr(record)
        finally:
            await requester.aclose()

    run_virtual(main)


@pytest.mark.parametrize("status", [200, 400])
def test_an_answer_of_exactly_the_cap_is_read_whole(status: int) -> None:
    """An answer exactly ``cap`` bytes long is within the cap: handed on
    whole, whatever its status."""
    body = b"x" * 64
    answer = capped_response(status, {}, body, 64)
    assert (answer.status, answer.body) == (status, body)


def test_an_oversized_400_page_is_handed_on_by_its_status() -> None:
    """An answer over the cap with HTTP 400 (a proxy's refusal page) is
    decided by its status, as every error status is: handed on with the
    head of its body, not refused as an oversized answer."""
    answer = capped_response(400, {}, b"<html>" + b"x" * 100, 64)
    assert answer.status == 400
    assert answer.body.startswith(b"<html>")
    with pytest.raises(ResponseError):
        capped_response(399, {}, b"x" * 100, 64)


def test_an_http_error_of_aiohttp_s_is_named_by_its_status_alone() -> None:
    """A ClientResponseError (no parser error behind it) is described by its
    HTTP status only: not by its message or URL, which a server or proxy
    can fill with anything."""
    info = aiohttp.RequestInfo(
        url=yarl.URL("http://127.0.0.1/x?taskId=t1"),
        method="GET",
        headers=CIMultiDictProxy(CIMultiDict()),
        real_url=yarl.URL("http://127.0.0.1/x?taskId=t1"),
    )
    error = aiohttp.ClientResponseError(info, (), status=502, message=f"bad gateway {SECRET}")
    assert _safe(error) == "HTTP 502"


# -- the aiohttp transport, over loopback ----------------------------------------------


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then let go of)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.mark.loopback
@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_refused_connection_is_a_transport_error_that_was_not_sent(method: str) -> None:
    """A request whose connection is refused fails with a retryable
    TransportError saying it was not sent (a create may then be resent
    without risking a second charge), read or create alike."""
    transport = AiohttpTransport(base_url=f"http://127.0.0.1:{_closed_port()}")
    body = {"id": "A"} if method == "POST" else None
    try:
        with pytest.raises(TransportError) as caught:
            await transport.send(HttpRequest(method, "/x", None, body, ApiKey("test-key")))
        assert caught.value.sent is False
        assert caught.value.retryable
    finally:
        await transport.aclose()


@pytest.mark.loopback
async def test_a_redirect_is_returned_as_it_is_never_followed() -> None:
    """A 302 answer is handed back as it is (its status and Location): the
    transport does not follow it (with the key, to wherever it points)."""
    paths: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        paths.append(request.path)
        if request.path == "/elsewhere":
            return web.json_response({"code": 200, "msg": "success", "data": {}})
        return web.Response(status=302, headers={"Location": "/elsewhere"})

    async with serving(handler) as base_url:
        transport = AiohttpTransport(base_url=base_url)
        try:
            answer = await transport.send(HttpRequest("GET", "/x", None, None, ApiKey("test-key")))
            assert answer.status == 302
            assert answer.headers["Location"] == "/elsewhere"
            assert paths == ["/x"]
        finally:
            await transport.aclose()


@pytest.mark.loopback
async def test_a_post_over_an_injected_session_asks_for_its_connection_to_close() -> None:
    """A POST (a create) sent over a caller's aiohttp session says
    ``Connection: close`` and goes on a connection of its own: an answer a
    server sends again unasked cannot be read as the next create's."""
    seen: list[tuple[str | None, int]] = []

    async def handler(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peername")[1]  # type: ignore[union-attr]
        seen.append((request.headers.get("Connection"), peer))
        return web.json_response({"code": 200, "msg": "success", "data": {"taskId": "t1"}})

    async with serving(handler) as base_url, aiohttp.ClientSession() as session:
        transport = AiohttpTransport(base_url=base_url, session=session)
        try:
            for name in ("A", "B"):
                answer = await transport.send(
                    HttpRequest("POST", "/x", None, {"id": name}, ApiKey("test-key"))
                )
                assert answer.status == 200
        finally:
            await transport.aclose()
    assert [connection for connection, _ in seen] == ["close", "close"]
    assert seen[0][1] != seen[1][1]
