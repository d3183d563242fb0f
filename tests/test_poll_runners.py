"""Polls run on reused runner tasks (veo_async._poll_runners): few tasks for a
busy batch, none left behind, and stopping one poll touches no other."""

from __future__ import annotations

import asyncio
import contextvars
import sys
from collections.abc import Coroutine
from typing import Any

import pytest

from veo_async import (
    PollPolicy,
    RecordInfo,
    TaskStatus,
    TransportError,
    VeoSession,
    WaitTimeoutError,
)
from veo_async._http import HttpRequest
from veo_async._poll_runners import PollRunners
from veo_async._protocol import RawResponse
from veo_async.events import Event, RequestAnswered, RequestFailed, RequestStarted
from veo_async.testing import FakeKie, Fault

from ._virtual import run_virtual
from .conftest import API_KEY, FAST_POLICY, leftover_tasks, session_on

EVERY_SECOND = PollPolicy(first_poll=0.0, interval=1.0, factor=1.0, jitter=0.0, timeout=60.0)


class HeldAnswers:
    """An in-process transport that holds the answers for chosen ids until released."""

    def __init__(self, kie: FakeKie, held: set[str]) -> None:
        self.inner = kie.transport()
        self.held = held
        self.release = asyncio.Event()
        self.sent: list[str] = []

    async def send(self, request: HttpRequest) -> RawResponse:
        """The inner answer; late, for the held ids, until :attr:`release` is set."""
        task_id = (request.params or {}).get("taskId", "")
        self.sent.append(task_id)
        if task_id in self.held:
            await self.release.wait()
        return await self.inner.send(request)

    async def aclose(self) -> None:
        """Close the inner transport."""
        await self.inner.aclose()


async def test_a_busy_batch_makes_a_runner_per_slot_not_a_task_per_poll(
    fake_kie: FakeKie,
) -> None:
    """2,000 finished ids at concurrency 8: every id is polled, on at most a
    few runners each (a task per poll was ~5 % of a poll's CPU)."""
    ids = [f"done{i}" for i in range(2000)]
    for task_id in ids:
        fake_kie.add_task(task_id, complete_after=0)
    loop = asyncio.get_running_loop()
    runners = 0
    default_factory = loop.get_task_factory()

    def counting(
        loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], **kwargs: Any
    ) -> asyncio.Future[Any]:
        nonlocal runners
        if getattr(coro, "__qualname__", "") == "PollRunners._run":
            runners += 1
        if default_factory is not None:
            return default_factory(loop, coro, **kwargs)
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(counting)
    try:
        async with session_on(fake_kie, concurrency=8, policy=EVERY_SECOND) as veo:
            records = await veo.wait_many(ids)
            assert not leftover_tasks()  # runners end with the work, even in an open session
    finally:
        loop.set_task_factory(default_factory)
    assert [record.task_id for record in records] == ids
    assert all(fake_kie.polls(task_id) == 1 for task_id in ids)
    assert 1 <= runners <= 4 * 8, runners


async def test_stopping_a_poll_in_flight_leaves_the_next_poll_on_its_runner_alone(
    fake_kie: FakeKie,
) -> None:
    """One slot, one runner: the first id's poll hangs and its only follower
    leaves (the poll is stopped mid-request). The runner takes the cancellation
    as that poll's alone: the next id's poll, granted the freed slot, is answered."""
    fake_kie.add_task("hangs", complete_after=0)
    fake_kie.add_task("next", complete_after=0)
    transport = HeldAnswers(fake_kie, {"hangs"})
    async with VeoSession(
        API_KEY, transport=transport, concurrency=1, policy=EVERY_SECOND
    ) as veo:
        subscription = veo.task("hangs").subscribe(lambda _handle, _error: None)
        await asyncio.sleep(0.1)
        assert transport.sent == ["hangs"]
        waiting = asyncio.create_task(veo.task("next").wait(timeout=30))
        await asyncio.sleep(0.1)
        assert transport.sent == ["hangs"]  # queued behind the one slot
        stopped = subscription.close()
        assert stopped is not None
        await asyncio.wait((stopped,))
        record = await waiting
        assert record.status is TaskStatus.SUCCESS
        assert transport.sent == ["hangs", "next"]
        assert veo.stats.in_flight == 0
    assert not leftover_tasks()


async def test_a_poll_stopped_by_its_own_answer_event_leaves_the_next_poll_alone(
    fake_kie: FakeKie,
) -> None:
    """An event hook that lets go of a handle while its own poll is being answered
    (the stop lands on the runner while it runs): the runner leaves instead of
    taking that cancellation into the next poll, which is answered."""
    fake_kie.add_task("first", complete_after=0)
    fake_kie.add_task("second", complete_after=0)
    subscriptions: dict[str, Any] = {}

    def on_event(event: Event) -> None:
        if isinstance(event, RequestAnswered) and event.task_id == "first":
            subscriptions.pop("first").close()

    async with session_on(
        fake_kie, concurrency=1, policy=EVERY_SECOND, on_event=on_event
    ) as veo:
        subscriptions["first"] = veo.task("first").subscribe(lambda _handle, _error: None)
        record: RecordInfo = await asyncio.wait_for(veo.task("second").wait(), 30)
        assert record.status is TaskStatus.SUCCESS
        assert veo.stats.in_flight == 0
    assert fake_kie.polls("second") == 1
    assert not leftover_tasks()


@pytest.mark.loopback
async def test_runners_over_real_http_stop_and_go_on(fake_kie: FakeKie) -> None:
    """Over loopback: a batch let go of at its deadline while its polls are in
    flight, then another batch on the same session is polled to the end."""
    slow = [f"slow{i}" for i in range(20)]
    quick = [f"quick{i}" for i in range(50)]
    for task_id in slow:
        fake_kie.add_task(task_id, complete_after=3600)
    for task_id in quick:
        fake_kie.add_task(task_id, complete_after=0)
    policy = PollPolicy(first_poll=0.0, interval=0.05, factor=1.0, jitter=0.0, timeout=60)
    async with session_on(fake_kie, concurrency=4, policy=policy) as veo:
        timed_out = await veo.wait_many(slow, timeout=0.5, return_exceptions=True)
        assert all(isinstance(outcome, TimeoutError) for outcome in timed_out)
        records = await veo.wait_many(quick, timeout=30)
        assert [record.task_id for record in records] == quick
        assert veo.stats.in_flight == 0
    assert not leftover_tasks()


@pytest.mark.parametrize("failing", [False, True], ids=["answered", "failed"])
async def test_a_poll_stopped_by_its_own_event_leaves_the_runner_usable(
    fake_kie: FakeKie, failing: bool
) -> None:
    """A hook that lets go of a handle while its poll's exchange is ending (on
    RequestFailed, or RequestAnswered): the stop's cancellation, made while the
    runner runs, must not kill the runner with its count of free runners
    wrong (the next poll queued with nobody to run it, the session stuck)."""
    fake_kie.add_task("first", complete_after=0)
    fake_kie.add_task("second", complete_after=0)
    if failing:
        fake_kie.inject(Fault.server_error(), count=1)  # the first poll (of "first")
    subscriptions: dict[str, Any] = {}
    kind = RequestFailed if failing else RequestAnswered

    def on_event(event: Event) -> None:
        if isinstance(event, kind) and event.task_id == "first" and "first" in subscriptions:
            subscriptions.pop("first").close()

    async with session_on(
        fake_kie, concurrency=1, policy=EVERY_SECOND, on_event=on_event
    ) as veo:
        subscriptions["first"] = veo.task("first").subscribe(lambda _handle, _error: None)
        second = await asyncio.wait_for(veo.task("second").wait(), 30)
        assert second.status is TaskStatus.SUCCESS
        fake_kie.add_task("third", complete_after=0)  # a later poll, alone
        third = await asyncio.wait_for(veo.task("third").wait(), 30)
        assert third.status is TaskStatus.SUCCESS
        assert veo.stats.in_flight == 0
    assert not leftover_tasks()


async def test_cancelling_the_future_a_close_returned_hurts_no_runner(
    fake_kie: FakeKie,
) -> None:
    """The future Subscription.close() returns may be cancelled by whoever
    awaits it (a wait_for timing out): the runner still gives the slot back
    and runs the next poll."""
    fake_kie.add_task("hangs", complete_after=0)
    fake_kie.add_task("next", complete_after=0)
    transport = HeldAnswers(fake_kie, {"hangs"})
    loop_errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(
        lambda _loop, context: loop_errors.append(context)
    )
    async with VeoSession(
        API_KEY, transport=transport, concurrency=1, policy=EVERY_SECOND
    ) as veo:
        subscription = veo.task("hangs").subscribe(lambda _handle, _error: None)
        await asyncio.sleep(0.1)
        waiting = asyncio.create_task(veo.task("next").wait(timeout=30))
        stopped = subscription.close()
        assert stopped is not None
        stopped.cancel()  # as a wait_for around it would, timing out
        record = await waiting
        assert record.status is TaskStatus.SUCCESS
        assert veo.stats.in_flight == 0
    assert loop_errors == []
    assert not leftover_tasks()


async def test_a_runner_cancelled_in_the_step_its_poll_is_stopped_ends(fake_kie: FakeKie) -> None:
    """Everything cancelled at once (a SIGTERM handler, asyncio.run's shutdown):
    the waiter's clean-up stops its poll and the runner is cancelled too. The
    runner ends; it does not take the one CancelledError as the stop's and go
    on with the next queued poll."""
    fake_kie.add_task("a", complete_after=0)
    fake_kie.add_task("b", complete_after=3600)
    transport = HeldAnswers(fake_kie, {"a", "b"})
    veo = VeoSession(API_KEY, transport=transport, concurrency=1, policy=EVERY_SECOND)
    try:
        waiter = asyncio.create_task(veo.task("a").wait())
        await asyncio.sleep(0.05)
        subscription = veo.task("b").subscribe(lambda _handle, _error: None)
        (runner,) = leftover_tasks() - {waiter}
        waiter.cancel()
        runner.cancel()
        await asyncio.sleep(0.2)
        assert runner.cancelled()  # (b's poll, still wanted, goes on another runner)
        subscription.close()
    finally:
        await veo.aclose()
    assert not leftover_tasks()


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks came in 3.12")
async def test_polls_run_under_an_eager_task_factory(fake_kie: FakeKie) -> None:
    """With asyncio.eager_task_factory a runner starts inside create_task, before
    it is listed: polls still run, and stopping them still works."""
    for task_id in ("a", "b", "c"):
        fake_kie.add_task(task_id, complete_after=0)
    fake_kie.add_task("slow", complete_after=3600)
    loop = asyncio.get_running_loop()
    loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined,unused-ignore]
    try:
        async with session_on(fake_kie, concurrency=2, policy=EVERY_SECOND) as veo:
            records = await asyncio.wait_for(veo.wait_many(["a", "b", "c"]), 30)
            assert [record.status for record in records] == [TaskStatus.SUCCESS] * 3
            with pytest.raises(WaitTimeoutError):
                await veo.task("slow").wait(timeout=3)
            assert veo.stats.in_flight == 0
    finally:
        loop.set_task_factory(None)
    assert not leftover_tasks()


@pytest.mark.loopback
async def test_requests_and_polls_run_on_tasks_that_are_not_the_c_task(fake_kie: FakeKie) -> None:
    """A loop whose tasks are asyncio's pure-Python Task (what nest_asyncio,
    common in notebooks, and some task factories make) runs requests, polls
    and stops as the C Task does: the cancellation counts (read by every
    request's deadline, over HTTP) come from each task's own methods (the C
    class's refuse any other task)."""
    for task_id in ("a", "b", "c"):
        fake_kie.add_task(task_id, complete_after=0)
    fake_kie.add_task("slow", complete_after=3600)
    py_task = asyncio.tasks._PyTask  # type: ignore[attr-defined]
    loop = asyncio.get_running_loop()

    def pure_python(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
        return py_task(coro, loop=loop, **kwargs)

    async def body() -> None:
        async with session_on(fake_kie, concurrency=2, policy=EVERY_SECOND) as veo:
            record = await veo.record_info("a")
            assert record.status is TaskStatus.SUCCESS
            records = await asyncio.wait_for(veo.wait_many(["a", "b", "c"]), 30)
            assert [record.status for record in records] == [TaskStatus.SUCCESS] * 3
            with pytest.raises(WaitTimeoutError):
                await veo.task("slow").wait(timeout=3)
            assert veo.stats.in_flight == 0

    loop.set_task_factory(pure_python)
    try:
        runner = asyncio.ensure_future(body())
        assert type(runner) is py_task
        await runner
    finally:
        loop.set_task_factory(None)
    assert not leftover_tasks()


async def test_a_close_turned_into_an_error_by_the_exchange_runs_nothing_more() -> None:
    """On 3.10 a request deadline in the step of a close wins over the close's
    cancellation (the exchange raises its timeout error): the runner must
    still stop, and not run a poll the close already failed and gave the
    slot back for (that slot was then given back twice)."""
    given_back = 0
    started: list[str] = []
    told: list[tuple[str, str]] = []

    async def exchange(
        task_id: str, previous: RecordInfo | None, granted_at: float, release: bool
    ) -> RecordInfo:
        started.append(task_id)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise TransportError("no complete answer in time") from None
        raise AssertionError("never answered")

    def give_back() -> None:
        nonlocal given_back
        given_back += 1

    def answer(name: str) -> Any:
        return lambda _request, _record, error: told.append((name, type(error).__name__))

    runners = PollRunners(exchange, give_back)
    runners.start("a", None, 0.0, answer("a"))
    await asyncio.sleep(0)  # a's exchange under way
    runners.start("b", None, 0.0, answer("b"))  # queued; its runner not started yet
    waited = runners.close(asyncio.CancelledError)
    await asyncio.wait(waited)
    await asyncio.sleep(0.1)
    assert started == ["a"]
    assert given_back == 2  # one slot each
    assert sorted(told) == [("a", "TransportError"), ("b", "CancelledError")]


async def test_what_a_close_returns_can_be_awaited_plainly(fake_kie: FakeKie) -> None:
    """Subscription.close() of a poll granted but not started yet returns a
    future that awaiting plainly does not turn into a CancelledError."""
    fake_kie.add_task("a")
    async with session_on(fake_kie, concurrency=1, policy=EVERY_SECOND) as veo:
        subscription = veo.task("a").subscribe(lambda _handle, _error: None)
        stopped = subscription.close()
        assert stopped is not None
        await stopped  # no CancelledError
        assert veo.stats.in_flight == 0
        assert not leftover_tasks()
    assert fake_kie.total_requests == 0


async def test_a_runner_cancelled_between_polls_leaves_its_next_poll_to_another() -> None:
    """A runner cancelled from outside between two polls (at its yield before
    the next): the poll it would have taken gets a runner all the same."""
    started: list[str] = []
    runners: PollRunners

    async def exchange(
        task_id: str, previous: RecordInfo | None, granted_at: float, release: bool
    ) -> RecordInfo:
        started.append(task_id)
        return RecordInfo(task_id, TaskStatus.SUCCESS)

    def give_back() -> None:
        if started == ["a"]:
            runners.start("b", None, 0.0, lambda *_: None)  # the slot granted again

    def cancel_my_runner(*_: object) -> None:
        runner = asyncio.current_task()
        assert runner is not None
        runner.cancel()  # from outside, as it were: lands at its next await

    runners = PollRunners(exchange, give_back)
    runners.start("a", None, 0.0, cancel_my_runner)
    for _ in range(10):
        await asyncio.sleep(0)
    assert started == ["a", "b"]
    assert not leftover_tasks()


_REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request", default=None)


def test_a_runner_does_not_carry_the_context_of_the_caller_it_was_made_for() -> None:
    """Runners are reused for every id's polls: one made while request A
    waited ran request B's polls, its events and log lines, in A's context
    (a service's request id, a trace). They run in a context of their own."""
    seen: list[tuple[str | None, str | None]] = []

    def hook(event: Event) -> None:
        if isinstance(event, RequestStarted):
            seen.append((event.task_id, _REQUEST_ID.get()))

    async def main() -> None:
        kie = FakeKie(api_key=API_KEY)
        kie.add_task("veo_a", complete_after=5.0)
        kie.add_task("veo_b", complete_after=5.0)
        async with VeoSession(
            API_KEY, transport=kie.transport(), policy=FAST_POLICY, on_event=hook
        ) as veo:

            async def request(request_id: str, task_id: str) -> None:
                _REQUEST_ID.set(request_id)
                await veo.task(task_id).wait(timeout=60)

            first = asyncio.create_task(request("A", "veo_a"))  # runners made for A
            await asyncio.sleep(0.5)
            await asyncio.gather(first, asyncio.create_task(request("B", "veo_b")))
        await kie.close()

    run_virtual(main)
    polls_of_b = [request_id for task_id, request_id in seen if task_id == "veo_b"]
    assert polls_of_b
    assert "A" not in polls_of_b
