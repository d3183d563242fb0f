"""Polls run on reused runner tasks (veo_async._poll_runners): few tasks for a
busy batch, none left behind, and stopping one poll touches no other."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

from veo_async import PollPolicy, RecordInfo, TaskStatus, VeoSession
from veo_async._http import HttpRequest
from veo_async._protocol import RawResponse
from veo_async.events import Event, RequestAnswered
from veo_async.testing import FakeKie

from .conftest import API_KEY, leftover_tasks, session_on

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
