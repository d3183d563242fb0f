"""Pins on the waiting code (wait_many, as_completed, a handle's poll run and
its plans) that mutation testing of ``_batch``, ``_task`` and ``_pacer`` found
no test holding: each test says which behaviour it pins."""

from __future__ import annotations

import asyncio
import gc
import logging
import random
from contextlib import aclosing

import pytest

import veo_async._batch as batch_module
from veo_async import (
    AdaptivePolicy,
    AuthenticationError,
    PollPolicy,
    SessionClosedError,
    TaskFailedError,
    TaskStatus,
    VeoSession,
    VeoTask,
    WaitTimeoutError,
)
from veo_async._batch import CompletionTracker
from veo_async._pacer import Pacer
from veo_async._task import Subscription, last_look
from veo_async.events import Event, RequestStarted
from veo_async.testing import FakeKie, TaskScript

from .conftest import deadline_letting_go, leftover_tasks, session_on

#: No jitter: poll times are exact on the virtual clock.
STEADY = PollPolicy(
    first_poll=0.0, interval=0.5, factor=1.0, max_interval=0.5, jitter=0.0, timeout=60.0
)


async def test_wait_many_raises_the_first_failure_as_soon_as_it_is_seen(
    fake_kie: FakeKie, veo: VeoSession
) -> None:
    """Without return_exceptions, a failure ends the batch when it arrives,
    not at the deadline (the waiter is woken by a failure, and until() stops
    on it)."""
    fake_kie.add_task("fails", complete_after=0.1, final_status=2)
    fake_kie.add_task("long", complete_after=600)
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(TaskFailedError) as caught:
        await veo.wait_many(["long", "fails"], timeout=30)
    assert caught.value.task_id == "fails"
    assert loop.time() - start < 2.0  # not the 30 s deadline
    assert leftover_tasks() == set()


async def test_wait_many_returns_when_the_last_task_finishes_not_at_its_deadline(
    fake_kie: FakeKie, veo: VeoSession
) -> None:
    """A batch whose ids all finish returns then: the last outcome wakes it
    (it does not sleep on until the deadline)."""
    fake_kie.add_task("a", complete_after=0.1)
    fake_kie.add_task("b", complete_after=0.2)
    loop = asyncio.get_running_loop()
    start = loop.time()
    results = await veo.wait_many(["a", "b"], timeout=30)
    assert [r.task_id for r in results] == ["a", "b"]
    assert loop.time() - start < 2.0


async def test_as_completed_hands_out_each_handle_when_its_task_finishes(
    fake_kie: FakeKie, veo: VeoSession
) -> None:
    """as_completed yields a finished task's handle at once, while the others
    still run (it does not wait for the batch, nor for its deadline)."""
    fake_kie.add_task("quick", complete_after=0.1)
    fake_kie.add_task("slow", complete_after=600)
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with aclosing(veo.as_completed(["slow", "quick"], timeout=30)) as completed:
        async for handle in completed:
            assert handle.task_id == "quick"
            assert loop.time() - start < 2.0
            break
    assert leftover_tasks() == set()


async def test_a_listener_leaving_during_a_notification_does_not_hide_it_from_the_next(
    fake_kie: FakeKie, veo: VeoSession
) -> None:
    """A run tells every follower it had when a change came, even if one of
    them closes its subscription from its listener (the listeners are walked
    over a copy): the next one still sees that very change."""
    fake_kie.add_task("veo_a", complete_after=0.1)
    handle = veo.task("veo_a")
    calls: list[tuple[str, TaskStatus | None]] = []
    subscriptions: dict[str, Subscription] = {}

    def leaving(seen: VeoTask, _error: BaseException | None) -> None:
        calls.append(("leaving", seen.status))
        subscriptions["leaving"].close()

    def staying(seen: VeoTask, _error: BaseException | None) -> None:
        calls.append(("staying", seen.status))

    subscriptions["leaving"] = handle.subscribe(leaving)
    subscriptions["staying"] = handle.subscribe(staying)
    record = await handle.wait(timeout=10)
    assert record.status is TaskStatus.SUCCESS
    assert calls[:2] == [("leaving", TaskStatus.GENERATING), ("staying", TaskStatus.GENERATING)]
    subscriptions["staying"].close()


async def test_a_batch_raises_the_failure_that_arrived_first(fake_kie: FakeKie) -> None:
    """Failures arriving together (a session stopped by a 401: every id fails
    as the batch starts following it): wait_many raises the first one, that
    of the first id, not the last one to arrive."""
    fake_kie.add_tasks(["t0", "t1", "t2"])
    async with session_on(fake_kie, api_key="a-wrong-key") as veo:
        with pytest.raises(AuthenticationError):
            await veo.record_info("t0")  # the 401 stops the session
        with pytest.raises(AuthenticationError) as caught:
            await veo.wait_many(["t1", "t2", "t0"], timeout=30)
        assert caught.value.task_id == "t1"


async def test_a_batch_makes_its_last_looks_once(
    fake_kie: FakeKie, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A short batch looks at each unfinished id once before its deadline, and
    then sleeps to the deadline (it does not look again and again: with the
    look's answer in, that was a busy loop until the deadline)."""
    looks: list[str] = []
    real = last_look

    async def counted(handle: VeoTask, deadline: float, lead: float) -> None:
        looks.append(handle.task_id)
        await real(handle, deadline, lead)

    monkeypatch.setattr(batch_module, "last_look", counted)
    fake_kie.add_task("slow", complete_after=600)
    slow_policy = PollPolicy(first_poll=0.0, interval=100, factor=1.0, max_interval=100, jitter=0.0)
    async with session_on(fake_kie, policy=slow_policy) as veo:
        results = await veo.wait_many(["slow"], timeout=20, return_exceptions=True)
    assert isinstance(results[0], WaitTimeoutError)
    assert looks == ["slow"]
    assert fake_kie.polls("slow") == 2  # the first poll and the last look


async def test_a_batch_of_exactly_last_looks_unfinished_ids_still_looks(fake_kie: FakeKie) -> None:
    """LAST_LOOKS is inclusive: a batch with exactly that many ids unfinished
    near its deadline looks at each once more before timing them out."""
    ids = [f"slow{i}" for i in range(batch_module.LAST_LOOKS)]
    fake_kie.add_tasks(TaskScript(task_id, complete_after=600) for task_id in ids)
    slow_policy = PollPolicy(first_poll=0.0, interval=100, factor=1.0, max_interval=100, jitter=0.0)
    async with session_on(fake_kie, policy=slow_policy) as veo:
        results = await veo.wait_many(ids, timeout=20, return_exceptions=True)
    assert all(isinstance(result, WaitTimeoutError) for result in results)
    assert all(fake_kie.polls(task_id) == 2 for task_id in ids)


def _alive(kind: type) -> int:
    """How many objects of exactly ``kind`` are alive after a full collection."""
    gc.collect()
    return sum(1 for obj in gc.get_objects() if type(obj) is kind)


async def test_an_as_completed_that_ended_before_its_deadline_releases_its_tracker(
    fake_kie: FakeKie, veo: VeoSession
) -> None:
    """An as_completed whose ids all finished long before its deadline lets
    go of its deadline timer at its close: nothing holds the tracker (and
    the outcomes it kept) until the deadline."""
    fake_kie.add_task("a", complete_after=0.1)
    fake_kie.add_task("b", complete_after=0.2, final_status=2)
    seen = [handle.task_id async for handle in veo.as_completed(["a", "b"], timeout=3600)]
    assert seen == ["a", "b"]
    await asyncio.sleep(0.1)
    assert _alive(CompletionTracker) == 0


async def test_a_known_failure_deep_in_a_batch_fails_it_before_any_request(
    fake_kie: FakeKie,
) -> None:
    """A task known FAILED fails the batch before the batch follows any id,
    wherever it stands in the list: not even the ids of the first slice
    (followed a loop step before the failed one is reached) are polled."""
    fake_kie.add_task("bad", complete_after=0, final_status=2)
    ids = [f"new{i}" for i in range(1200)]
    fake_kie.add_tasks(TaskScript(task_id, complete_after=600) for task_id in ids)
    events: list[Event] = []
    async with session_on(fake_kie, on_event=events.append) as veo:
        bad = veo.task("bad")
        with pytest.raises(TaskFailedError):
            await bad.wait()
        before = fake_kie.total_requests
        with pytest.raises(TaskFailedError):
            await veo.wait_many([*ids, "bad"], timeout=30)
        await asyncio.sleep(1)
        assert fake_kie.total_requests == before
        assert not [e for e in events if isinstance(e, RequestStarted) and e.task_id != "bad"]


async def test_a_batch_deadline_logs_one_line_for_all_its_timeouts(
    fake_kie: FakeKie, veo: VeoSession, caplog: pytest.LogCaptureFixture
) -> None:
    """At its deadline a batch times out its unfinished ids itself (give_up):
    one debug line for all of them, not one "wait ... timed out" line per id."""
    ids = [f"slow{i}" for i in range(5)]
    fake_kie.add_tasks(TaskScript(task_id, complete_after=600) for task_id in ids)
    caplog.set_level(logging.DEBUG, logger="veo_async")
    results = await veo.wait_many(ids, timeout=1, return_exceptions=True)
    assert all(isinstance(result, WaitTimeoutError) for result in results)
    messages = [record.getMessage() for record in caplog.records]
    assert [m for m in messages if m.startswith("batch deadline")] == [
        "batch deadline (1.0s): 5 tasks timed out"
    ]
    assert not [m for m in messages if m.startswith("wait for task")]


async def test_as_completed_iterated_after_the_session_closed_raises_even_for_finished_ids(
    fake_kie: FakeKie,
) -> None:
    """as_completed checks the session when iteration starts: an iterator
    made before the close raises SessionClosedError, even when every id's
    outcome is already known (it does not hand out handles of a closed session)."""
    fake_kie.add_task("done", complete_after=0)
    async with session_on(fake_kie) as veo:
        handle = veo.task("done")
        await handle.wait()
        completed = veo.as_completed(["done"], timeout=10)
    with pytest.raises(SessionClosedError):
        async for _ in completed:
            pass


async def test_as_completed_resumed_while_its_deadline_lets_go_waits_for_that(
    fake_kie: FakeKie,
) -> None:
    """The consumer comes back to the iterator while the deadline it was not
    waiting for is letting go of thousands of runs (in slices): it waits for
    that letting go and gets every unfinished id as timed out, in input order."""
    slow = [f"slow{i}" for i in range(2500)]
    fake_kie.add_tasks(TaskScript(task_id, complete_after=3600) for task_id in slow)
    fake_kie.add_task("quick")
    policy = PollPolicy(first_poll=0.0, interval=1.0, factor=1.0, jitter=0.0, timeout=None)
    async with session_on(fake_kie, policy=policy) as veo:
        async with aclosing(veo.as_completed(["quick", *slow], timeout=10)) as completed:
            # The deadline counts from the first step, before the first polls
            # of 2,501 ids (a loaded machine spends real, so virtual, time on
            # them): busy with the first task until near the deadline.
            started = asyncio.get_running_loop().time()
            assert (await anext(completed)).task_id == "quick"
            await asyncio.sleep(started + 9.5 - asyncio.get_running_loop().time())
            await deadline_letting_go()  # looked at in every loop step
            await asyncio.sleep(0)  # a slice let go of, the next ones not yet
            rest = [handle async for handle in completed]
        assert [handle.task_id for handle in rest] == slow
        assert all(isinstance(handle.exception(), WaitTimeoutError) for handle in rest)
    assert leftover_tasks() == set()


async def test_a_closed_pacer_starts_no_rebuild() -> None:
    """Once the pacer is closed (the session closing), a rebuild that falls
    due is not started on the loop: no schedule work runs for a closed session."""
    loop = asyncio.get_running_loop()
    policy = AdaptivePolicy(jitter=0.0, explorers=0)
    pacer = Pacer(policy, loop_clock=loop.time, rng=random.Random(4))
    plan = pacer.plan(None)
    assert plan.next_delay(None, loop.time() - 60.0, "veo3") is None  # first table: in steps
    made = asyncio.Event()
    plan.when_ready(lambda _closing: made.set())
    await made.wait()
    schedule = pacer.schedule_for()
    before = dict(schedule.revisions())
    pacer.close()
    for seconds in range(90, 130):  # renders far faster than the prior: a move is due
        pacer.learner.observe("veo3", float(seconds))
    plan.next_delay(None, loop.time(), "veo3")  # finds the rebuild due
    for _ in range(50):
        await asyncio.sleep(0)
    assert schedule.revisions() == before
