"""Request deadlines: one timer for every request in flight (``_deadlines``), and the
aiohttp transport's timeouts built on it, over loopback."""

from __future__ import annotations

import asyncio
import sys
import time

import aiohttp
import pytest
from aiohttp import web

from veo_async import TransportError, VeoSession, _deadlines
from veo_async._deadlines import RequestDeadlines
from veo_async._http import AiohttpTransport, ApiKey, HttpRequest

from .test_hardening import serving

PATH = "/api/v1/veo/record-info"
KEY = ApiKey("k")


async def held(
    deadlines: RequestDeadlines, release: asyncio.Event, started: asyncio.Event | None = None
) -> str:
    """A stand-in request: waits for ``release`` under a deadline; "answered" or
    "timed out". ``started`` is set once it is under its deadline."""
    task = deadlines.enter()
    if started is not None:
        started.set()
    try:
        await release.wait()
    except asyncio.CancelledError as exc:
        if deadlines.timed_out(task, exc):
            return "timed out"
        raise
    finally:
        deadlines.leave(task)
    return "answered"


async def test_a_request_past_its_deadline_is_timed_out_and_not_left_cancelling() -> None:
    deadlines = RequestDeadlines(2.0)
    loop = asyncio.get_running_loop()
    start = loop.time()
    task = asyncio.create_task(held(deadlines, asyncio.Event()))
    assert await task == "timed out"
    # The virtual clock adds the real time the loop spends working, which a
    # loaded machine stretches: never early, and nowhere near a second deadline.
    assert 2.0 <= loop.time() - start < 2.5
    assert deadlines.in_flight == 0
    if sys.version_info >= (3, 11):
        assert task.cancelling() == 0  # the deadline's cancel was taken back


async def test_each_request_keeps_its_own_deadline() -> None:
    """Requests started 1 s apart time out 1 s apart: one timer, re-armed for the next."""
    deadlines = RequestDeadlines(3.0)
    loop = asyncio.get_running_loop()
    start = loop.time()
    ended: dict[str, float] = {}

    async def request(name: str) -> None:
        assert await held(deadlines, asyncio.Event()) == "timed out"
        ended[name] = loop.time() - start

    first = asyncio.create_task(request("first"))
    await asyncio.sleep(1.0)
    second = asyncio.create_task(request("second"))
    await asyncio.gather(first, second)
    # Never early; late only by the real time a loaded machine adds to the
    # virtual clock (one timer armed for the first deadline + limit would end
    # the second at 6 s, one timer for both at 3 s).
    assert 3.0 <= ended["first"] < 3.5
    assert 4.0 <= ended["second"] < 4.5


async def test_an_answered_request_is_never_cancelled_later() -> None:
    deadlines = RequestDeadlines(1.0)
    release = asyncio.Event()
    release.set()
    assert await held(deadlines, release) == "answered"
    # The timer armed by that request fires with nothing to do; this task lives on.
    await asyncio.sleep(2.0)
    assert deadlines.in_flight == 0
    # And a later request is timed from its own start, not the first one's.
    later = asyncio.Event()
    waiting = asyncio.create_task(held(deadlines, later))
    await asyncio.sleep(0.5)
    later.set()
    assert await waiting == "answered"


async def test_a_cancel_from_outside_is_not_taken_for_a_timeout() -> None:
    deadlines = RequestDeadlines(5.0)
    task = asyncio.create_task(held(deadlines, asyncio.Event()))
    await asyncio.sleep(1.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert deadlines.in_flight == 0


@pytest.mark.skipif(sys.version_info < (3, 11), reason="Task.cancelling tells them apart")
async def test_a_cancel_arriving_with_the_deadline_still_propagates() -> None:
    """Cancelled by its deadline and then by its caller before it resumes: the
    caller's cancel wins (as in aiohttp's TimerContext); the timeout must not
    swallow it."""
    deadlines = RequestDeadlines(0.2)
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(held(deadlines, asyncio.Event()))
    await asyncio.sleep(0)  # the request starts: its deadline is 0.2 s from now
    loop.call_at(loop.time() + 0.25, task.cancel)  # the caller's cancel, just after
    # Hold the loop past both (its clock is the real one plus skipped waits):
    # the next iteration runs the deadline's timer, then the caller's, and
    # only then the request's task, with both cancellations pending.
    time.sleep(0.4)  # noqa: ASYNC251 - blocking on purpose: see above
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_enter_needs_a_task_of_its_own() -> None:
    deadlines = RequestDeadlines(1.0)
    task = deadlines.enter()
    try:
        with pytest.raises(RuntimeError, match="one request at a time"):
            deadlines.enter()
    finally:
        deadlines.leave(task)
    loop = asyncio.get_running_loop()
    outside: list[BaseException] = []

    def from_a_callback() -> None:
        try:
            deadlines.enter()
        except RuntimeError as exc:
            outside.append(exc)

    loop.call_soon(from_a_callback)
    await asyncio.sleep(0)
    assert len(outside) == 1
    assert "inside a task" in str(outside[0])


async def test_close_disarms_the_timer() -> None:
    deadlines = RequestDeadlines(1.0)
    release = asyncio.Event()
    task = asyncio.create_task(held(deadlines, release))
    await asyncio.sleep(0.5)
    deadlines.close()
    await asyncio.sleep(1.0)  # past the deadline: nothing fired
    assert not task.done()
    release.set()
    assert await task == "answered"


# -- the aiohttp transport, over loopback ------------------------------------------------


@pytest.mark.loopback
async def test_transport_times_out_each_request_at_its_own_deadline() -> None:
    """Over real HTTP: a hanging server, two requests 0.4 s apart, a 1 s limit. Each
    fails with a retryable TransportError about its own deadline, and the connection
    pool is usable afterwards."""
    answer = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        if request.query.get("taskId") != "quick":
            await answer.wait()
        return web.json_response({"code": 200, "msg": "success", "data": {}})

    async with serving(handler) as base_url:
        transport = AiohttpTransport(base_url=base_url, request_timeout=1.0)
        loop = asyncio.get_running_loop()
        took: dict[str, float] = {}

        async def send(task_id: str) -> TransportError:
            began = loop.time()
            with pytest.raises(TransportError) as caught:
                await transport.send(HttpRequest("GET", PATH, {"taskId": task_id}, api_key=KEY))
            took[task_id] = loop.time() - began
            return caught.value

        try:
            first = asyncio.create_task(send("a"))
            await asyncio.sleep(0.4)
            errors = await asyncio.gather(first, send("b"))
            for error in errors:
                assert "in time" in str(error)
                assert error.retryable
                assert error.sent  # it may have reached the server
                assert error.__cause__ is None
                assert error.__context__ is None
            # Each at its own deadline, timed from its own start (bounds wide
            # enough for a loaded machine): the second did not go with the
            # first (0.4 s into its second), nor wait for aiohttp's 5 min.
            assert 0.95 <= took["a"] < 3.0
            assert 0.95 <= took["b"] < 3.0
            answered = await transport.send(
                HttpRequest("GET", PATH, {"taskId": "quick"}, api_key=KEY)
            )
            assert answered.status == 200
        finally:
            answer.set()
            await transport.aclose()


@pytest.mark.loopback
async def test_cancelling_a_session_call_mid_request_raises_cancelled_not_timeout() -> None:
    """A caller's cancel of a request in flight is a CancelledError, however close the
    deadline; the session's timeout is reported only for its own deadline."""
    answer = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        await answer.wait()
        return web.json_response({"code": 200, "msg": "success", "data": {}})

    async with serving(handler) as base_url:
        async with VeoSession("k", base_url=base_url, request_timeout=5.0) as veo:
            call = asyncio.create_task(veo.record_info("t1"))
            await asyncio.sleep(0.3)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            assert veo.stats.in_flight == 0
        answer.set()


@pytest.mark.loopback
async def test_an_injected_session_gets_the_request_timeout_and_stays_open() -> None:
    """An application's own aiohttp session, with its own (long) timeout: the
    session's ``request_timeout`` still ends a hanging request, and the
    application's session is left open and usable."""
    answer = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        if request.query.get("taskId") == "t_hang":
            await answer.wait()
        return web.json_response({"code": 422, "msg": "record is null", "data": None})

    async with serving(handler) as base_url:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as http:
            loop = asyncio.get_running_loop()
            async with VeoSession("k", base_url=base_url, session=http, request_timeout=0.5) as veo:
                start = loop.time()
                with pytest.raises(TransportError, match="in time"):
                    await veo.record_info("t_hang")
                assert 0.45 <= loop.time() - start < 5.0  # ours, not the session's 600 s
            assert not http.closed
            async with http.get(f"{base_url}/api/v1/veo/record-info?taskId=t1") as response:
                assert (await response.json())["code"] == 422
        answer.set()


@pytest.mark.loopback
@pytest.mark.parametrize("injected", [False, True], ids=["own session", "injected session"])
async def test_each_request_carries_its_own_key(injected: bool) -> None:
    """One transport, requests of two keys in turn: each carries its own Bearer
    token, once (the headers made for one key never go with the other's), and
    our User-Agent and Accept with it, from an injected session too."""
    seen: list[tuple[list[str], str, str]] = []

    async def handler(request: web.Request) -> web.Response:
        headers = request.headers
        seen.append(
            (headers.getall("Authorization", []), headers["User-Agent"], headers["Accept"])
        )
        return web.json_response({"code": 200, "msg": "success", "data": {}})

    first, second = ApiKey("key-one"), ApiKey("key-two")
    async with serving(handler) as base_url:
        theirs = {"Authorization": "Bearer theirs"}
        session = aiohttp.ClientSession(headers=theirs) if injected else None
        transport = AiohttpTransport(base_url=base_url, session=session)
        try:
            for key in (first, second, second, first):
                request = HttpRequest("GET", PATH, {"taskId": "t"}, api_key=key)
                answer = await transport.send(request)
                assert answer.status == 200
        finally:
            await transport.aclose()
            if session is not None:
                await session.close()
    assert [authorization for authorization, _, _ in seen] == [
        ["Bearer key-one"],
        ["Bearer key-two"],
        ["Bearer key-two"],
        ["Bearer key-one"],
    ]
    assert all(agent.startswith("veo-async/") for _, agent, _ in seen)
    assert all(accept == "application/json" for _, _, accept in seen)


@pytest.mark.loopback
async def test_a_reset_on_a_pooled_connection_is_one_counted_failed_request() -> None:
    """The server answers a poll, then resets the pooled connection the next
    one goes out on: that record_info is one request, which fails with a
    retryable TransportError; the server saw as many requests as veo.stats
    counts (aiohttp's own resend of the GET on a new connection is off), and
    the next call goes out on a new connection."""
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.query["taskId"])
        if len(seen) == 2:
            assert request.transport is not None
            request.transport.abort()  # a reset, on the connection the first answer used
        flag = 1 if len(seen) > 2 else 0
        data = {"taskId": "veo_r", "successFlag": flag, "createTime": "2026-11-30 00:00:00"}
        return web.json_response({"code": 200, "msg": "success", "data": data})

    async with serving(handler) as base_url, VeoSession("k", base_url=base_url) as veo:
        await veo.record_info("veo_r")
        with pytest.raises(TransportError) as caught:
            await veo.record_info("veo_r")
        assert caught.value.retryable
        assert (veo.stats.requests, veo.stats.failures, len(seen)) == (2, 1, 2)
        record = await veo.record_info("veo_r")  # a new connection
        assert record.status.name == "SUCCESS"
        assert veo.stats.requests == len(seen) == 3


@pytest.mark.parametrize(
    ("message", "ours"), [("ours", True), (None, False), ("another's", False)]
)
async def test_without_a_cancel_count_the_first_cancels_message_tells_whose_it_was(
    monkeypatch: pytest.MonkeyPatch, message: str | None, ours: bool
) -> None:
    """On Python 3.10 (no Task.cancelling), taken_back reads the message of
    the cancellation the task met: ours is taken back; a caller's, landing
    first, propagates (a caller cancelling then closing kept its cancel)."""
    monkeypatch.setattr(_deadlines, "COUNTS_CANCELS", False)

    async def request() -> tuple[bool, bool]:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError as exc:  # in the task cancelled: its message
            me = asyncio.current_task()
            assert me is not None
            return _deadlines.taken_back(me, exc, "ours"), _deadlines.taken_back(me, None, "ours")
        raise AssertionError("not cancelled")

    waiting = asyncio.ensure_future(request())
    await asyncio.sleep(0)
    waiting.cancel(message)
    assert await waiting == (ours, False)
