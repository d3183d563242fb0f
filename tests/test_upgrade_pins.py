"""Pins on the 1080p / 4K upgrades (``_upgrade``), bounded waiting
(``_timeouts``), request deadlines (``_deadlines``) and ``veo-async generate``
that mutation testing found no test holding: each test says which behaviour
it pins."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import json
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from veo_async import (
    POLICY_TIMEOUT,
    HttpRequest,
    ServerError,
    TransportError,
    VeoSession,
    WaitTimeoutError,
    _deadlines,
)
from veo_async._deadlines import RequestDeadlines
from veo_async._protocol import RawResponse
from veo_async._timeouts import within
from veo_async.cli._generate import _all, _Creates, _wait_settings
from veo_async.cli._progress import Snapshot
from veo_async.testing import FakeKie, Fault

from ._cli import KEY, Run, against, cli, read_until, start
from ._virtual import run_virtual
from .conftest import API_KEY
from .test_deadlines import held

HD = "/api/v1/veo/get-1080p-video"
UHD = "/api/v1/veo/get-4k-video"
RECORD = "/api/v1/veo/record-info"


def requests_to(kie: FakeKie, path: str) -> list[Any]:
    """The recorded requests to ``path``."""
    return [r for r in kie.requests if r.path == path]


class _Around:
    """A Transport (the public seam) over a simulator's in-process one."""

    def __init__(self, kie: FakeKie) -> None:
        self.inner = kie.transport()

    async def send(self, request: HttpRequest) -> RawResponse:
        answer: RawResponse = await self.inner.send(request)
        return answer

    async def aclose(self) -> None:
        await self.inner.aclose()


class _TwoVideos(_Around):
    """The simulator's answers, except that a successful record lists two
    videos (the second one's URL made up), as a task of two videos would."""

    async def send(self, request: HttpRequest) -> RawResponse:
        answer = await super().send(request)
        if request.path != RECORD:
            return answer
        envelope = json.loads(answer.body)
        response = (envelope.get("data") or {}).get("response")
        if isinstance(response, dict) and len(response.get("resultUrls") or ()) == 1:
            response["resultUrls"].append(response["resultUrls"][0] + "?second")
        return RawResponse(answer.status, answer.headers, json.dumps(envelope).encode())


class _ScriptedHd(_Around):
    """1080p asks get ``answers`` (envelopes) in turn, the last one for good;
    every other request goes to the simulator."""

    def __init__(self, kie: FakeKie, answers: list[dict[str, Any]]) -> None:
        super().__init__(kie)
        self.answers = answers
        self.asked = 0

    async def send(self, request: HttpRequest) -> RawResponse:
        if request.path == HD:
            answer = self.answers[min(self.asked, len(self.answers) - 1)]
            self.asked += 1
            return RawResponse(
                200, {"Content-Type": "application/json"}, json.dumps(answer).encode()
            )
        return await super().send(request)


def with_session(
    kie: FakeKie,
    body: Callable[[VeoSession], Awaitable[None]],
    transport: Callable[[FakeKie], Any] = _Around,
) -> None:
    """Run ``body(veo)`` on the virtual clock, with a session on ``transport(kie)``."""

    async def main() -> None:
        async with VeoSession(API_KEY, transport=transport(kie)) as veo:
            await body(veo)
        await kie.close()

    run_virtual(main)


SERVER_ERROR = {"code": 500, "msg": "internal error", "data": None}
PROCESSING = {"code": 400, "msg": "1080P is processing", "data": None}


# -- _upgrade: what is asked for --------------------------------------------------------


def test_get_1080p_asks_for_the_video_of_its_index() -> None:
    """get_1080p(index=1) asks get-1080p-video with index=1 (not the first
    video's), and returns that video's 1080p URL."""
    kie = FakeKie(seed=3, hd_delay=0.0, credits=1e9)
    kie.add_task("veo_task_two", complete_after=0.0)

    async def body(veo: VeoSession) -> None:
        url = await veo.task("veo_task_two").get_1080p(index=1, timeout=120.0)
        assert url.endswith("1080p-1.mp4")
        assert [r.query["index"] for r in requests_to(kie, HD)] == ["1"]

    with_session(kie, body, _TwoVideos)


def test_get_4k_asks_for_the_video_of_its_index_with_its_callback() -> None:
    """get_4k(index=1, callback_url=URL) POSTs index 1 and callBackUrl URL:
    Kie renders (and charges for) that video, and calls back there."""
    kie = FakeKie(seed=3, uhd_delay=60.0, credits=1e9)
    kie.add_task("veo_task_two", complete_after=0.0)
    hook = "https://example.com/hooks/4k"

    async def body(veo: VeoSession) -> None:
        urls = await veo.task("veo_task_two").get_4k(index=1, callback_url=hook, timeout=600.0)
        assert urls == ("https://tempfile.example/veo/veo_task_two/4k-1.mp4",)
        asks = requests_to(kie, UHD)
        assert asks[0].json == {"taskId": "veo_task_two", "index": 1, "callBackUrl": hook}
        assert all(ask.json == asks[0].json for ask in asks)

    with_session(kie, body, _TwoVideos)


def test_get_4k_refuses_a_bad_callback_url_before_any_request() -> None:
    """A callback_url that is not an http(s) URL is a ValueError before the
    4K request (which costs credits) goes out."""
    kie = FakeKie(seed=3, uhd_delay=60.0, credits=1e9)
    kie.add_task("veo_task_a", complete_after=0.0)

    async def body(veo: VeoSession) -> None:
        task = veo.task("veo_task_a")
        await task.wait(timeout=60.0)
        with pytest.raises(ValueError, match="callback_url"):
            await task.get_4k(callback_url="not a url")
        assert requests_to(kie, UHD) == []
        assert kie.charged == 0.0

    with_session(kie, body)


def test_the_4k_versions_of_two_videos_are_asked_for_at_once() -> None:
    """Two get_4k calls for two videos of one task are not made to wait for
    each other (one at a time is per video): both first POSTs go out together."""
    kie = FakeKie(seed=3, uhd_delay=300.0, credits=1e9)
    kie.add_task("veo_task_two", complete_after=0.0)

    async def body(veo: VeoSession) -> None:
        task = veo.task("veo_task_two")
        await task.wait(timeout=60.0)
        loop = asyncio.get_running_loop()
        start = loop.time()
        first, second = await asyncio.gather(
            task.get_4k(index=0, timeout=900.0), task.get_4k(index=1, timeout=900.0)
        )
        assert first != second
        firsts: dict[int, float] = {}
        for ask in requests_to(kie, UHD):
            firsts.setdefault(ask.json["index"], ask.started)
        assert abs(firsts[0] - firsts[1]) < 5.0
        assert loop.time() - start < 450.0  # not one 5-minute render after the other

    with_session(kie, body, _TwoVideos)


# -- _upgrade: the last look and what a timeout tells -------------------------------------


def test_a_1080p_ready_just_before_the_deadline_is_seen_by_a_last_look() -> None:
    """Asks every 20-30 s, but the last one goes just before the deadline
    (its answer in by then): a 1080p ready 13 s into a 15 s call is returned,
    not a timeout (an ask at or after the deadline gets no answer in time)."""
    kie = FakeKie(seed=3, hd_delay=13.0, credits=1e9)
    kie.add_task("veo_task_a", complete_after=0.0)

    async def body(veo: VeoSession) -> None:
        task = veo.task("veo_task_a")
        await task.refresh()  # done at 0: its 1080p is ready 13 s later
        url = await task.get_1080p(timeout=15.0)
        assert url.endswith("1080p-0.mp4")
        assert len(requests_to(kie, HD)) == 2

    with_session(kie, body)


def test_a_1080p_timeout_carries_the_error_its_asks_kept_failing_with() -> None:
    """Every ask failing (a 500) until the deadline: the WaitTimeoutError
    carries that error as last_error and says so (not "still processing")."""
    kie = FakeKie(seed=3, hd_delay=0.0, credits=1e9)
    kie.add_task("veo_task_a", complete_after=0.0)

    async def body(veo: VeoSession) -> None:
        with pytest.raises(WaitTimeoutError) as caught:
            await veo.task("veo_task_a").get_1080p(timeout=60.0)
        assert isinstance(caught.value.last_error, ServerError)
        assert "last poll failed: ServerError" in str(caught.value)

    with_session(kie, body, lambda kie: _ScriptedHd(kie, [SERVER_ERROR]))


def test_a_1080p_timeout_forgets_an_error_a_later_answer_replaced() -> None:
    """One ask failing (a 500), the later ones answered "processing": the
    timeout's last_error is None, the video was just not ready."""
    kie = FakeKie(seed=3, hd_delay=0.0, credits=1e9)
    kie.add_task("veo_task_a", complete_after=0.0)

    async def body(veo: VeoSession) -> None:
        with pytest.raises(WaitTimeoutError) as caught:
            await veo.task("veo_task_a").get_1080p(timeout=60.0)
        assert caught.value.last_error is None
        assert "last poll failed" not in str(caught.value)

    with_session(kie, body, lambda kie: _ScriptedHd(kie, [SERVER_ERROR, PROCESSING]))


class _FirstHdReset(_Around):
    """The first 1080p ask meets a connection reset after it was sent."""

    def __init__(self, kie: FakeKie) -> None:
        super().__init__(kie)
        self.reset = False

    async def send(self, request: HttpRequest) -> RawResponse:
        if request.path == HD and not self.reset:
            self.reset = True
            raise TransportError("Connection reset by peer", sent=True)
        return await super().send(request)


def test_a_reset_on_a_1080p_ask_is_asked_again() -> None:
    """A connection reset on a 1080p ask (transient: the request is a read)
    is asked again one gap later, not raised: the URL comes."""
    kie = FakeKie(seed=3, hd_delay=0.0, credits=1e9)
    kie.add_task("veo_task_a", complete_after=0.0)

    async def body(veo: VeoSession) -> None:
        url = await veo.task("veo_task_a").get_1080p(timeout=120.0)
        assert url.endswith("1080p-0.mp4")
        assert len(requests_to(kie, HD)) == 1  # the reset one never reached it

    with_session(kie, body, _FirstHdReset)


def test_the_1080p_asks_of_calls_started_together_are_spread() -> None:
    """The 20-30 s gaps are drawn afresh for each ask of each call: two calls
    started together do not ask in step (nor at a fixed interval)."""
    kie = FakeKie(seed=3, hd_delay=200.0, credits=1e9)
    kie.add_tasks(["veo_task_a", "veo_task_b"])

    async def body(veo: VeoSession) -> None:
        tasks = [veo.task("veo_task_a"), veo.task("veo_task_b")]
        await asyncio.gather(*(task.refresh() for task in tasks))
        await asyncio.gather(*(task.get_1080p(timeout=600.0) for task in tasks))
        gaps: dict[str, list[float]] = {}
        for task in tasks:
            starts = [r.started for r in requests_to(kie, HD) if r.query["taskId"] == task.task_id]
            gaps[task.task_id] = [round(b - a, 3) for a, b in itertools.pairwise(starts)]
        first, second = gaps.values()
        assert len(first) >= 3
        assert any(abs(a - b) > 0.5 for a, b in zip(first, second, strict=False))
        assert max(first) - min(first) > 0.5

    with_session(kie, body)


# -- _timeouts.within ---------------------------------------------------------------------


async def test_a_cancelled_within_leaves_no_unretrieved_exception_behind() -> None:
    """The caller cancelled while what it waits for ends with an error of its
    own: that error is retrieved (no "exception was never retrieved" report)."""
    loop = asyncio.get_running_loop()
    reports: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reports.append(context))

    async def failing_on_cancel() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            raise LookupError("cleanup failed") from None

    outer = asyncio.ensure_future(within(failing_on_cancel(), 10.0))
    await asyncio.sleep(0)
    outer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await outer
    del outer
    gc.collect()
    await asyncio.sleep(0)
    loop.set_exception_handler(None)
    assert reports == []


async def test_a_cancelled_within_raises_the_callers_cancellation() -> None:
    """The caller's cancellation propagates as its own (its message kept: on
    Python 3.10 that is how a request deadline's cancel is told apart), not
    the inner awaitable's."""

    outer = asyncio.ensure_future(within(asyncio.sleep(60), 10.0))
    await asyncio.sleep(0)
    outer.cancel("the caller's")
    with pytest.raises(asyncio.CancelledError) as caught:
        await outer
    assert caught.value.args == ("the caller's",)


async def test_within_keeps_a_result_that_came_as_time_ran_out() -> None:
    """Out of time, what it waits for is cancelled; if it still finishes with
    a result (or an error) rather than cancelled, that is the outcome."""

    async def answering_anyway() -> str:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            return "late answer"
        return "answer"

    assert await within(answering_anyway(), 1.0) == (True, "late answer")


# -- _deadlines ---------------------------------------------------------------------------


async def test_close_disarms_the_deadlines_of_every_request_in_flight() -> None:
    """Two requests in flight, started apart: after close() neither is cut
    at its deadline (one timer serves both; none is left armed)."""
    deadlines = RequestDeadlines(1.0)
    releases = [asyncio.Event(), asyncio.Event()]
    first = asyncio.create_task(held(deadlines, releases[0]))
    await asyncio.sleep(0.3)
    second = asyncio.create_task(held(deadlines, releases[1]))
    await asyncio.sleep(0.3)
    deadlines.close()
    await asyncio.sleep(2.0)
    assert not first.done()
    assert not second.done()
    for release in releases:
        release.set()
    assert list(await asyncio.gather(first, second)) == ["answered", "answered"]


@pytest.mark.skipif(not _deadlines.COUNTS_CANCELS, reason="Task.cancelling counts")
async def test_a_deadline_a_request_did_not_report_does_not_swallow_a_later_cancel() -> None:
    """A request cut at its deadline that ends otherwise (the client library
    turned the cancellation into its own error): the task's next request,
    cancelled by its caller, propagates that cancellation, not a timeout."""
    deadlines = RequestDeadlines(1.0)
    outcomes: list[str] = []
    second_started = asyncio.Event()

    async def two_requests() -> None:
        task = deadlines.enter()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            outcomes.append("first ended by a library error")
            _deadlines.uncancel(task)  # the library's own error took the cancel's place
        finally:
            deadlines.leave(task)
        outcomes.append(await held(deadlines, asyncio.Event(), second_started))

    runner = asyncio.create_task(two_requests())
    await second_started.wait()
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner
    assert outcomes == ["first ended by a library error"]


@pytest.mark.skipif(not _deadlines.COUNTS_CANCELS, reason="Task.cancelling counts")
async def test_a_request_of_a_task_already_counting_a_cancel_still_times_out() -> None:
    """A task that met (and kept count of) a cancellation earlier, then makes a
    request that overruns: that is its deadline's timeout, taken back as such,
    not a cancellation passed on."""
    deadlines = RequestDeadlines(1.0)

    async def after_a_cancel() -> tuple[str, int]:
        me = asyncio.current_task()
        assert me is not None
        me.cancel()
        # Handled, and not taken back: cancelling() stays 1.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0)
        outcome = await held(deadlines, asyncio.Event())
        return outcome, _deadlines.cancelling(me)

    assert await asyncio.create_task(after_a_cancel()) == ("timed out", 1)


async def test_without_a_cancel_count_a_deadline_knows_its_own_cancel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On Python 3.10 (no Task.cancelling) a request cut at its deadline is
    still a timeout: the deadline's cancel carries the message taken_back reads."""
    monkeypatch.setattr(_deadlines, "COUNTS_CANCELS", False)
    deadlines = RequestDeadlines(1.0)
    assert await asyncio.create_task(held(deadlines, asyncio.Event())) == "timed out"


# -- veo-async generate -------------------------------------------------------------------


async def test_generate_cancels_the_other_creates_when_one_raises() -> None:
    """When one request's job raises (its line could not be written), the
    other jobs are cancelled before the error is raised, not waited out."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    cancelled: list[str] = []

    async def long_wait() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append("long")
            raise

    async def failing() -> None:
        await asyncio.sleep(1.0)
        raise OSError("no space left on device")

    with pytest.raises(OSError, match="no space left"):
        await _all([long_wait(), failing()])
    assert cancelled == ["long"]
    assert loop.time() - start < 60.0


def test_generate_wait_with_only_a_timeout_keeps_the_default_schedule() -> None:
    """--wait --timeout T alone: the session's default (model-aware) schedule
    with that deadline; another polling option makes a fixed policy."""
    values: dict[str, Any] = {"timeout": 30.0, "interval": None, "first_poll": None}
    assert _wait_settings(values) == (None, 30.0)
    assert _wait_settings({"timeout": None, "interval": None}) == (None, POLICY_TIMEOUT)
    policy, timeout = _wait_settings({"timeout": None, "interval": 5.0})
    assert policy is not None
    assert timeout is POLICY_TIMEOUT


def test_an_interrupted_generate_wait_counts_refused_creates_apart_from_finished() -> None:
    """Interrupted with --wait: the summary's "finished" counts tasks that
    ended, not creates refused (those are counted as "answered without one")."""
    snapshot = Snapshot(
        total=4,
        succeeded=1,
        failed=0,
        timed_out=0,
        errors=1,
        requests=5,
        failed_requests=1,
        rate_limited=0,
        elapsed=12.0,
    )
    creates = _Creates(created=3, refused=1, unanswered=0)
    line = creates.summary(snapshot, interrupted=True, waited=True)
    assert "3 of 4 requests created a task (1 finished: 1 succeeded" in line
    assert "0 errors; 2 still generating)" in line
    assert "1 answered without one" in line


@pytest.mark.real_time
@pytest.mark.loopback
async def test_generate_with_a_store_adds_to_its_output_file(tmp_path: Path) -> None:
    """generate --store -o, run again with another request: the file keeps the
    first run's line and gets the second's (a rerun must not empty it)."""
    db, out = tmp_path / "veo.db", tmp_path / "created.jsonl"
    async with FakeKie(api_key=KEY, time_scale=0.001, credits=10_000.0, seed=3) as kie:
        first = await cli("generate", *against(kie, "a cat", "--store", str(db), "-o", str(out)))
        assert first.code == 0, first.stderr
        second = await cli("generate", *against(kie, "a dog", "--store", str(db), "-o", str(out)))
        assert second.code == 0, second.stderr
        lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        assert [line["request"]["prompt"] for line in lines] == ["a cat", "a dog"]
        assert [line["task_id"] for line in lines] == kie.created_ids


@pytest.mark.real_time
@pytest.mark.loopback
async def test_a_create_refused_with_a_429_then_interrupted_gets_a_not_sent_line() -> None:
    """A create answered 429 (Kie: over the limit, the request is not queued:
    nothing was created) and interrupted while it waits to be sent again: it
    gets its "not sent" line, as the summary counts it, so that a pipeline
    knows to send it again."""
    async with FakeKie(api_key=KEY, credits=1000.0) as kie:
        kie.inject_create(Fault.http_429(retry_after=120), count=1)
        proc = await start("generate", *against(kie, "A fox", "--progress", "plain"))
        for _ in range(400):
            if requests_to(kie, "/api/v1/veo/generate"):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # the 429 is in: the create waits out its pause
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), 20)
        created = kie.created
    run = Run(proc.returncode or 0, out.decode(), err.decode())
    assert run.code == 130
    assert created == 0
    assert "1 not sent;" in run.stderr
    assert [line["outcome"] for line in run.lines()] == ["not sent"]
    assert run.lines()[0]["request"]["prompt"] == "A fox"


#: ``veo-async`` whose generate() has its create answered (the session's
#: events say so), then stays inside (as while a store records the task).
_ANSWERED_THEN_HELD = """
import asyncio, sys
import veo_async.cli._generate as generate_command
from veo_async import VeoSession
from veo_async.cli import main
from veo_async.events import RequestAnswered, RequestStarted

hooks = []
opened = generate_command.open_session

def open_session(*args, **kwargs):
    hooks.append(kwargs["on_event"])
    return opened(*args, **kwargs)

async def generate(self, *args, **kwargs):
    path = "/api/v1/veo/generate"
    hooks[0](RequestStarted("POST", path, None, 0.0))
    hooks[0](RequestAnswered("POST", path, None, 0.5, 0.5))
    print("answered", file=sys.stderr, flush=True)
    await asyncio.Event().wait()

generate_command.open_session = open_session
VeoSession.generate = generate
sys.argv[0] = "veo-async"
main()
"""


@pytest.mark.real_time
@pytest.mark.loopback
async def test_a_create_answered_then_interrupted_gets_no_not_sent_line() -> None:
    """Interrupted after its create was answered, before generate() returned
    (a store recording the task): no "not sent: nothing was created" line,
    for the task may exist and be charged."""
    async with FakeKie(api_key=KEY, credits=1000.0) as kie:
        proc = await start(
            "generate",
            *against(kie, "A fox", "--progress", "plain"),
            command=[sys.executable, "-c", _ANSWERED_THEN_HELD],
        )
        await read_until(proc.stderr, "answered")
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), 20)
    run = Run(proc.returncode or 0, out.decode(), err.decode())
    assert run.code == 130, run.stderr
    assert run.lines() == []
