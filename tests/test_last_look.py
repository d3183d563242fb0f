"""A wait's last look: one poll just before its deadline when its schedule would
poll after it, so a short wait sees a task that finished meanwhile."""

from __future__ import annotations

import asyncio

import pytest

from veo_async import (
    AdaptivePolicy,
    PollPolicy,
    RecordNotFoundError,
    ServerError,
    TaskStatus,
    VeoSession,
    WaitTimeoutError,
)
from veo_async.events import Event, RequestAnswered, RequestStarted
from veo_async.testing import FakeKie, Fault, TaskScript

from .conftest import API_KEY, leftover_tasks, on_time

#: The learned default without jitter: poll times are exact. No explorer (see
#: test_schedule's explorer tests): the first task follows the tables too.
STEADY = AdaptivePolicy(jitter=0.0, explorers=0)


def recording(
    kie: FakeKie, policy: AdaptivePolicy | PollPolicy, events: list[Event]
) -> VeoSession:
    """A session on ``kie`` whose events go to ``events``."""
    return VeoSession(API_KEY, transport=kie.transport(), policy=policy, on_event=events.append)


def poll_times(events: list[Event], start: float) -> list[float]:
    """When each record-info request started, from ``start`` (check with ``on_time``)."""
    return [e.at - start for e in events if isinstance(e, RequestStarted)]


async def waited(
    kie: FakeKie, timeout: float, policy: AdaptivePolicy | PollPolicy = STEADY
) -> tuple[object, list[float], float]:
    """Wait on ``veo_a`` for ``timeout``: (the record or the error, poll times, seconds taken)."""
    loop = asyncio.get_running_loop()
    events: list[Event] = []
    async with recording(kie, policy, events) as veo:
        start = loop.time()
        try:
            outcome: object = await veo.task("veo_a").wait(timeout=timeout)
        except WaitTimeoutError as exc:
            outcome = exc
        took = loop.time() - start
    return outcome, poll_times(events, start), took


async def test_a_task_done_before_the_deadline_is_seen_though_its_schedule_polls_later() -> None:
    """A new veo3_fast task is next polled about 80 s after its first look; a
    20 s wait looks once more at 19 s and returns the success it finds, where it
    used to time out without a second request."""
    kie = FakeKie(api_key=API_KEY)
    kie.add_task(TaskScript("veo_a", complete_after=5, params={"model": "veo3_fast"}))
    outcome, polls, took = await waited(kie, 20.0)
    assert getattr(outcome, "status", None) is TaskStatus.SUCCESS
    assert on_time(polls, [0.0, 19.0]), polls
    assert on_time([took], [19.0]), took


async def test_a_task_still_running_at_the_last_look_times_out_with_that_record() -> None:
    """The last look finds the task running: the wait ends at its deadline with a
    timeout carrying the record that look brought."""
    kie = FakeKie(api_key=API_KEY)
    kie.add_task(TaskScript("veo_a", complete_after=600, params={"model": "veo3_fast"}))
    outcome, polls, took = await waited(kie, 20.0)
    assert isinstance(outcome, WaitTimeoutError)
    assert outcome.record is not None
    assert outcome.record.status is TaskStatus.GENERATING
    assert on_time(polls, [0.0, 19.0]), polls
    assert on_time([took], [20.0]), took


@pytest.mark.parametrize(
    ("timeout", "last"),
    [
        # The run polled at 9 s: nothing more is sent at 9.5 s (the look's time).
        (10.0, 9.0),
        # The look's time (8.8 s) comes before the run's own poll at 9 s, still
        # before the deadline: that poll, brought forward to 8.8 s (its answer
        # may take longer than the 0.3 s left at 9 s), is the last one, with
        # no second request 0.2 s before it.
        (9.3, 8.8),
    ],
)
async def test_no_last_look_when_the_schedule_polls_near_the_deadline(
    timeout: float, last: float
) -> None:
    """Polls every 3 s: a poll of the run's own within the look's lead before
    the deadline, or between the look's time and the deadline, is the last look."""
    kie = FakeKie(api_key=API_KEY)
    kie.add_task(TaskScript("veo_a", complete_after=600))
    every_3s = PollPolicy(first_poll=0, interval=3, factor=1, max_interval=3, jitter=0)
    outcome, polls, _ = await waited(kie, timeout, every_3s)
    assert isinstance(outcome, WaitTimeoutError)
    # (Lateness of 0.3 s would move the run's 9 s poll past the 9.3 s deadline.)
    assert on_time(polls, [0.0, 3.0, 6.0, last], late=0.2), polls


async def test_a_last_look_answered_after_the_deadline_is_cut_there() -> None:
    """The look's answer would take 5 s: the wait still ends at its deadline,
    and the look's request leaves nothing behind."""
    kie = FakeKie(api_key=API_KEY)
    kie.add_task(TaskScript("veo_a", complete_after=5, params={"model": "veo3_fast"}))
    kie.inject(Fault.slow(0.0))  # the first poll, as is
    kie.inject(Fault.slow(5.0))  # the look
    outcome, polls, took = await waited(kie, 20.0)
    assert isinstance(outcome, WaitTimeoutError)
    assert on_time(polls, [0.0, 19.0]), polls
    assert on_time([took], [20.0]), took
    assert leftover_tasks() == set()


async def test_a_failed_last_look_is_the_timeouts_last_error() -> None:
    """A look that fails (a 500) does not end the wait early: the timeout at the
    deadline names that failure as the reason nothing new was seen."""
    kie = FakeKie(api_key=API_KEY)
    kie.add_task(TaskScript("veo_a", complete_after=5, params={"model": "veo3_fast"}))
    kie.inject(Fault.slow(0.0))
    kie.inject(Fault.server_error())
    outcome, polls, took = await waited(kie, 20.0)
    assert isinstance(outcome, WaitTimeoutError)
    assert isinstance(outcome.last_error, ServerError)
    assert on_time(polls, [0.0, 19.0]), polls
    assert on_time([took], [20.0]), took


async def test_cancelling_a_wait_during_its_last_look_cancels_the_look() -> None:
    """Cancelled while its look is in flight, the wait raises CancelledError and
    leaves no request or task behind."""
    kie = FakeKie(api_key=API_KEY)
    kie.add_task(TaskScript("veo_a", complete_after=5, params={"model": "veo3_fast"}))
    kie.inject(Fault.slow(0.0))
    kie.inject(Fault.slow(60.0))
    async with VeoSession(API_KEY, transport=kie.transport(), policy=STEADY) as veo:
        waiter = asyncio.create_task(veo.task("veo_a").wait(timeout=20))
        await asyncio.sleep(19.5)  # the look went at 19 s and hangs
        assert veo.stats.in_flight == 1
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert veo.stats.in_flight == 0
        assert leftover_tasks() == set()


def three_tasks(kie: FakeKie, after: float) -> list[str]:
    """Three veo3_fast tasks ending ``after`` seconds from now."""
    ids = ["veo_a", "veo_b", "veo_c"]
    for task_id in ids:
        kie.add_task(TaskScript(task_id, complete_after=after, params={"model": "veo3_fast"}))
    return ids


#: Polls at 0, 3, 9, 21 s; "not visible" retried for 10 s from the first such answer.
DOUBLING = PollPolicy(
    first_poll=0, interval=3, factor=2, max_interval=100, jitter=0, not_found_grace=10
)


@pytest.mark.parametrize("how", ["wait", "wait_many", "as_completed"])
async def test_an_id_still_unknown_at_the_last_look_past_its_grace_is_not_found(
    how: str,
) -> None:
    """An unknown id polled at 0, 3 and 9 s (grace 10 s), deadline 15 s: the
    look at 14 s finds it still unknown, past its grace. It ended in
    WaitTimeoutError (the RecordNotFoundError only its last_error), where a
    deadline of 25 s, the run's own poll at 21 s, ended in RecordNotFoundError:
    which one a caller saw depended on where the deadline fell."""
    kie = FakeKie(api_key=API_KEY)  # knows no task: every poll is "record is null"
    events: list[Event] = []
    loop = asyncio.get_running_loop()
    async with recording(kie, DOUBLING, events) as veo:
        start = loop.time()
        if how == "wait":
            with pytest.raises(RecordNotFoundError):
                await veo.task("veo_a").wait(timeout=15)
        elif how == "wait_many":
            (outcome,) = await veo.wait_many(["veo_a"], timeout=15, return_exceptions=True)
            assert isinstance(outcome, RecordNotFoundError), outcome
        else:
            (task,) = [task async for task in veo.as_completed(["veo_a"], timeout=15)]
            assert isinstance(task.exception(), RecordNotFoundError), task.exception()
        took = loop.time() - start
    assert on_time(poll_times(events, start), [0.0, 3.0, 9.0, 14.0]), poll_times(events, start)
    assert on_time([took], [14.0]), took
    assert leftover_tasks() == set()


async def test_an_id_unknown_at_the_last_look_within_its_grace_times_out() -> None:
    """The same look within the grace window (30 s): "not visible yet" then,
    so the wait times out at its deadline, the look's error its last_error."""
    kie = FakeKie(api_key=API_KEY)
    async with VeoSession(
        API_KEY, transport=kie.transport(), policy=DOUBLING.replace(not_found_grace=30)
    ) as veo:
        with pytest.raises(WaitTimeoutError) as caught:
            await veo.task("veo_a").wait(timeout=15)
    assert isinstance(caught.value.last_error, RecordNotFoundError)


async def test_a_short_batch_looks_at_its_unfinished_ids_before_its_deadline() -> None:
    """wait_many over three new tasks done at 5 s, with a 20 s deadline: one look
    each at 19 s finds them done (their schedule's next poll is a minute away)."""
    kie = FakeKie(api_key=API_KEY)
    ids = three_tasks(kie, 5)
    events: list[Event] = []
    loop = asyncio.get_running_loop()
    async with recording(kie, STEADY, events) as veo:
        start = loop.time()
        records = await veo.wait_many(ids, timeout=20)
        took = loop.time() - start
    assert [r.status for r in records] == [TaskStatus.SUCCESS] * 3
    assert on_time(poll_times(events, start), [0.0] * 3 + [19.0] * 3)
    assert on_time([took], [19.0]), took


async def test_as_completed_looks_before_its_deadline_too() -> None:
    """as_completed over the same three tasks yields each one at its last look."""
    kie = FakeKie(api_key=API_KEY)
    ids = three_tasks(kie, 5)
    loop = asyncio.get_running_loop()
    async with VeoSession(API_KEY, transport=kie.transport(), policy=STEADY) as veo:
        start = loop.time()
        seen = [
            (task.task_id, loop.time() - start) async for task in veo.as_completed(ids, timeout=20)
        ]
    assert sorted(task_id for task_id, _ in seen) == ids
    assert on_time([at for _, at in seen], [19.0] * 3), seen


async def test_a_large_batch_makes_no_last_looks() -> None:
    """More unfinished ids than one wave of requests (64): no burst of looks at
    the deadline; each id times out after its first poll only."""
    kie = FakeKie(api_key=API_KEY)
    ids = [f"veo_{n}" for n in range(65)]
    for task_id in ids:
        kie.add_task(TaskScript(task_id, complete_after=5, params={"model": "veo3_fast"}))
    events: list[Event] = []
    async with recording(kie, STEADY, events) as veo:
        outcomes = await veo.wait_many(ids, timeout=20, return_exceptions=True)
    assert all(isinstance(outcome, WaitTimeoutError) for outcome in outcomes)
    assert sum(isinstance(e, RequestStarted) for e in events) == 65


async def test_a_wait_cancelled_as_its_last_look_answers_is_cancelled() -> None:
    """A wait cancelled in the very loop step its last look's answer comes in
    ends cancelled: asyncio.wait_for (Python 3.10 and 3.11) returned the answer
    then, losing the cancellation, and the wait went on to its timeout."""
    loop = asyncio.get_running_loop()
    kie = FakeKie(api_key=API_KEY)
    kie.add_task(TaskScript("veo_a", complete_after=1000, params={"model": "veo3_fast"}))
    waiter: asyncio.Future[object] | None = None
    answers: list[float] = []

    def cancel_at_the_last_look(event: Event) -> None:
        if isinstance(event, RequestAnswered):
            answers.append(event.at)
            if len(answers) == 2 and waiter is not None:  # the last look's answer
                waiter.cancel()

    policy = PollPolicy(first_poll=0.0, interval=30.0, max_interval=30.0, jitter=0.0)
    async with VeoSession(
        API_KEY, transport=kie.transport(), policy=policy, on_event=cancel_at_the_last_look
    ) as veo:
        start = loop.time()
        waiter = asyncio.ensure_future(veo.task("veo_a").wait(timeout=10))
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert waiter.cancelled()
        assert len(answers) == 2
        assert loop.time() - start < 10.0


@pytest.mark.parametrize("timeouts", [[25.0] * 50, [24.6 + i / 100 for i in range(50)]])
async def test_waiters_of_one_handle_share_one_last_look(timeouts: list[float]) -> None:
    """Any number of waiters on one handle whose deadlines fall together make
    one last look between them (its answer reaches them all), as one waiter
    does: 50 such waiters sent 50 requests at once just before the deadline."""
    fixed = PollPolicy(first_poll=0, interval=10, factor=1, max_interval=10, jitter=0)
    kie = FakeKie(api_key=API_KEY)
    kie.add_task("veo_alone", complete_after=100)
    kie.add_task("veo_shared", complete_after=100)
    async with VeoSession(API_KEY, transport=kie.transport(), policy=fixed) as veo:
        with pytest.raises(WaitTimeoutError):
            await veo.task("veo_alone").wait(timeout=25)
        shared = veo.task("veo_shared")
        outcomes = await asyncio.gather(
            *(shared.wait(timeout=limit) for limit in timeouts), return_exceptions=True
        )
    assert all(isinstance(outcome, WaitTimeoutError) for outcome in outcomes)
    assert kie.polls("veo_alone") == 4  # at 0, 10, 20 and the last look
    assert kie.polls("veo_shared") == kie.polls("veo_alone")


@pytest.mark.parametrize("timeout", [20.5, 20.7, 20.85, 21.0])
async def test_a_poll_due_just_before_the_deadline_is_brought_forward_as_the_last_look(
    timeout: float,
) -> None:
    """When the next poll falls due less than an answer's time before the
    deadline, the last look is that poll, brought forward: left where it was,
    its answer came after the deadline, and a task finished 8 s before timed
    out (with ``timeout=20.7`` and ``20.85``, not ``20.5`` or ``21``)."""
    fixed = PollPolicy(first_poll=0, interval=10, factor=1, max_interval=10, jitter=0)
    kie = FakeKie(api_key=API_KEY)
    kie.add_task("veo_a", complete_after=12.0)
    kie.inject(Fault.slow(0.3), 100)  # every answer takes 0.3 s
    async with VeoSession(API_KEY, transport=kie.transport(), policy=fixed) as veo:
        record = await veo.task("veo_a").wait(timeout=timeout)
    assert record.status is TaskStatus.SUCCESS
    assert kie.polls("veo_a") == 3  # at 0, 10.3 and the look: no request more


@pytest.mark.parametrize("owner_ends", ["cancelled", "failed"])
async def test_a_waiter_whose_shared_look_came_to_nothing_makes_its_own(owner_ends: str) -> None:
    """Two waiters of one handle (deadlines 25 and 25.5 s, answers taking
    0.8 s): the first one's look is out when the second's time comes. If that
    look is cancelled with its waiter, or fails, it was no look: the second
    makes its own and sees the task that finished at 22.5 s (it timed out)."""
    fixed = PollPolicy(first_poll=0, interval=10, factor=1, max_interval=10, jitter=0)
    kie = FakeKie(api_key=API_KEY)
    kie.add_task("veo_a", complete_after=22.5)
    kie.inject(Fault.slow(0.8), 3)  # the run's three polls; the looks answer at once...
    if owner_ends == "failed":
        kie.inject(Fault.server_error())  # ...but the first look fails
    else:
        kie.inject(Fault.slow(0.8))  # ...but the first look is slow
    async with VeoSession(API_KEY, transport=kie.transport(), policy=fixed) as veo:
        task = veo.task("veo_a")
        first = asyncio.ensure_future(task.wait(timeout=25.0))  # looks at 24.0
        second = asyncio.ensure_future(task.wait(timeout=25.5))  # would look at 24.5
        await asyncio.sleep(24.3)
        if owner_ends == "cancelled":
            first.cancel()  # its waiter gives up while its look is out
        record = await second
        assert record.status is TaskStatus.SUCCESS
        await asyncio.gather(first, return_exceptions=True)


async def test_waiters_of_a_fast_schedule_bring_its_poll_forward_once() -> None:
    """50 waiters of one handle on a 1 s PollPolicy, their deadlines spread
    over 0.3 s: the run's poll brought forward as one waiter's look is not
    brought forward again for the next (each set the next poll a second on,
    before the next deadline: 50 requests in 0.3 s where one polls 2)."""
    every_1s = PollPolicy(first_poll=0, interval=1, factor=1, max_interval=1, jitter=0)
    kie = FakeKie(api_key=API_KEY)
    kie.add_task("veo_a", complete_after=5000)
    loop = asyncio.get_running_loop()
    async with VeoSession(API_KEY, transport=kie.transport(), policy=every_1s) as veo:
        start = loop.time()
        task = veo.task("veo_a")

        async def one(after: float) -> None:
            await asyncio.sleep(after)
            with pytest.raises(WaitTimeoutError):
                await task.wait(timeout=25)

        await asyncio.gather(*(one(i * 0.006) for i in range(50)))
    late = [r.started - start for r in kie.requests if r.started - start > 23.5]
    assert len(late) <= 2, late


async def test_a_waiter_looks_itself_when_the_poll_brought_forward_failed() -> None:
    """The run's poll, brought forward as one waiter's look, fails (a 500):
    the next waiter's look goes out (a failed poll is no look), and both see
    the task that finished 14 s before."""
    every_19_8s = PollPolicy(first_poll=0, interval=19.8, factor=1, max_interval=20, jitter=0)
    kie = FakeKie(api_key=API_KEY)
    kie.add_task("veo_a", complete_after=45)
    async with VeoSession(API_KEY, transport=kie.transport(), policy=every_19_8s) as veo:
        task = veo.task("veo_a")
        first = asyncio.ensure_future(task.wait(timeout=60.0))  # looks at 59 s
        second = asyncio.ensure_future(task.wait(timeout=60.3))  # looks at 59.3 s
        await asyncio.sleep(58.95)
        kie.inject(Fault.server_error())  # the run's poll, brought forward to 59 s
        records = await asyncio.gather(first, second)
    assert [record.status for record in records] == [TaskStatus.SUCCESS] * 2
    assert [r.code for r in kie.requests][-2:] == [500, 200]
