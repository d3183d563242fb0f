"""The due-time queue in front of the request budget, on a real event loop."""

from __future__ import annotations

import asyncio
import random
import weakref
from collections.abc import Callable, Sequence
from typing import TypeVar

import pytest

from veo_async import _limits as limits
from veo_async._limits import _RELEASE_SLICE as RELEASE_SLICE
from veo_async._limits import DueQueue, RequestBudget, Ticket


async def test_most_overdue_first_and_never_early() -> None:
    """Waiters are granted in due order, none before its due time."""
    queue = DueQueue(RequestBudget(1))
    loop = asyncio.get_running_loop()
    now = loop.time()
    order: list[str] = []

    async def wait(name: str, due: float) -> None:
        granted = await queue.acquire(due)
        assert granted >= due
        order.append(name)
        queue.release()

    await asyncio.gather(wait("late", now + 0.03), wait("early", now), wait("mid", now + 0.01))
    assert order == ["early", "mid", "late"]


async def test_cancelled_waiter_frees_its_place_and_no_slot_leaks() -> None:
    """A waiter cancelled in the queue takes no slot; the budget ends at zero in flight."""
    budget = RequestBudget(1)
    queue = DueQueue(budget)
    first = await queue.acquire()
    waiter = asyncio.ensure_future(queue.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    queue.release()
    assert first >= 0
    assert budget.in_flight == 0
    assert queue.waiting == 0


async def test_a_waiter_cancelled_as_its_slot_comes_takes_no_slot() -> None:
    """A waiter cancelled in the same loop step as the slot it waits for is
    granted (its future is cancelled at once, its ``except`` runs later): the
    slot passes it by to the next waiter, and nothing raises."""
    budget = RequestBudget(1)
    queue = DueQueue(budget)
    await queue.acquire()
    cancelled = asyncio.ensure_future(queue.acquire())
    behind = asyncio.ensure_future(queue.acquire())
    await asyncio.sleep(0)
    cancelled.cancel()
    queue.release()  # the slot comes before the cancelled waiter's except runs
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    await asyncio.wait_for(behind, 1.0)  # the slot went on to the next waiter
    assert budget.in_flight == 1
    queue.release()
    assert budget.in_flight == 0
    assert queue.waiting == 0
    assert queue.take() is not None  # a later request gets a slot at once


async def test_closing_with_a_just_cancelled_waiter_fails_the_others_only() -> None:
    """close() right after a queued waiter was cancelled raises nothing and
    fails the other waiters with the error."""
    budget = RequestBudget(1, rng=random.Random(6))
    queue = DueQueue(budget)
    budget.on_rate_limited(asyncio.get_running_loop().time(), 0.0, retry_after=60.0)
    cancelled = asyncio.ensure_future(queue.acquire())
    other = asyncio.ensure_future(queue.acquire())
    await asyncio.sleep(0)
    cancelled.cancel()
    queue.close(lambda: RuntimeError("closed"))
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    with pytest.raises(RuntimeError, match="closed"):
        await other


async def test_cancelled_entries_do_not_pile_up() -> None:
    """20,000 waits that end during a pause leave (almost) nothing in the heap."""
    budget = RequestBudget(1, rng=random.Random(5))
    queue = DueQueue(budget)
    budget.on_rate_limited(asyncio.get_running_loop().time(), 0.0, retry_after=60.0)
    waiters = [asyncio.ensure_future(queue.acquire()) for _ in range(20_000)]
    await asyncio.sleep(0)
    for waiter in waiters:
        waiter.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)
    assert queue.waiting == 0
    assert len(queue) < 1024


async def test_close_wakes_every_waiter_with_the_error_at_once() -> None:
    """Closing the queue fails queued waiters now, and later ones immediately."""
    budget = RequestBudget(1, rng=random.Random(6))
    queue = DueQueue(budget)
    budget.on_rate_limited(asyncio.get_running_loop().time(), 0.0, retry_after=60.0)
    waiters = [asyncio.ensure_future(queue.acquire()) for _ in range(3)]
    await asyncio.sleep(0)
    queue.close(lambda: RuntimeError("closed"))
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    with pytest.raises(RuntimeError, match="closed"):
        await queue.acquire()


async def test_pause_holds_the_queue_until_it_ends() -> None:
    """No grant happens before the pause ends; the first one happens at its end."""
    budget = RequestBudget(2, rng=random.Random(7))
    queue = DueQueue(budget)
    loop = asyncio.get_running_loop()
    start = loop.time()
    pause = queue.rate_limited(start, retry_after=0.05)
    granted = await queue.acquire()
    assert granted >= start + pause


async def test_the_slot_an_answer_adds_to_the_window_is_granted_at_once() -> None:
    """After a 429 the window grows by one per answer; the slot that adds goes
    to a waiting request at once, even when the answered request gave its own
    slot back (and it was granted) first, as a request does: recovery is not
    one answer behind."""
    budget = RequestBudget(4, rng=random.Random(8))
    queue = DueQueue(budget)
    loop = asyncio.get_running_loop()
    queue.rate_limited(loop.time(), retry_after=0.01)
    probe = await queue.acquire()  # the one request the window of one allows
    behind = [asyncio.ensure_future(queue.acquire()) for _ in range(3)]
    await asyncio.sleep(0)
    queue.release()  # the probe's slot, given back: the first waiter gets it
    queue.answered(probe)  # its answer widens the window to two
    await asyncio.sleep(0)
    assert [waiter.done() for waiter in behind] == [True, True, False]
    assert budget.in_flight == 2
    for waiter in behind:
        waiter.cancel()
    await asyncio.gather(*behind, return_exceptions=True)


async def test_slots_given_back_while_grants_are_deferred_are_granted_at_the_end() -> None:
    """Within ``grants_deferred`` a released slot waits; the end grants it once."""
    budget = RequestBudget(1)
    queue = DueQueue(budget)
    await queue.acquire()
    waiter = asyncio.ensure_future(queue.acquire())
    await asyncio.sleep(0)  # queued behind the slot in use
    with queue.grants_deferred():
        queue.release()
        assert budget.in_flight == 0
        assert queue.waiting == 1  # not granted yet
        with queue.grants_deferred():  # nested: only the outermost end grants
            pass
        assert queue.waiting == 1
    assert queue.waiting == 0
    assert budget.in_flight == 1
    await waiter
    queue.release()
    assert budget.in_flight == 0


async def freed_over_steps(alive: Sequence[Callable[[], object]], steps: int) -> list[int]:
    """How many of ``alive`` were freed in each of the next ``steps`` loop steps."""
    freed_per_step = []
    still = sum(ref() is not None for ref in alive)
    for _ in range(steps):
        await asyncio.sleep(0)
        now_alive = sum(ref() is not None for ref in alive)
        freed_per_step.append(still - now_alive)
        still = now_alive
    return freed_per_step


class _Held(Ticket):
    """A ticket that can be watched for being freed."""

    __slots__ = ("__weakref__",)

    def granted(self, now: float) -> None:
        raise AssertionError("never granted: always in the future")

    def failed(self, error: BaseException) -> None:
        raise AssertionError("never failed")


T = TypeVar("T", bound=Ticket)


def queued_far_ahead(queue: DueQueue, kind: type[T]) -> list[T]:
    """Four slices' worth of new tickets of ``kind``, queued an hour ahead."""
    far = asyncio.get_running_loop().time() + 3600
    tickets = [kind() for _ in range(4 * RELEASE_SLICE)]
    for ticket in tickets:
        queue.push(far, ticket)
    return tickets


async def test_a_compaction_lets_go_of_what_it_drops_a_slice_per_loop_step() -> None:
    """A deadline's compaction drops tens of thousands of entries, each holding
    a poll run: they are freed over loop steps (all of them in a few), not in
    the step of the discard that compacted (that took 60-185 ms at 100,000)."""
    queue = DueQueue(RequestBudget(1))
    tickets = queued_far_ahead(queue, _Held)
    alive = [weakref.ref(ticket) for ticket in tickets]
    for ticket in tickets:
        queue.discard(ticket)
    del tickets
    assert len(queue) < 4 * RELEASE_SLICE  # compacted
    still = sum(ref() is not None for ref in alive)
    assert still > RELEASE_SLICE  # not all freed within the discards
    freed_per_step = await freed_over_steps(alive, 20)
    assert max(freed_per_step) <= RELEASE_SLICE
    still = sum(ref() is not None for ref in alive)
    assert still == len(queue)  # only what is left in the heap (under _COMPACT_AT)


class _Failed(_Held):
    """A ticket that notes the failure a closing queue gives it."""

    __slots__ = ("error",)

    def failed(self, error: BaseException) -> None:
        self.error = error


async def test_closing_a_queue_fails_every_ticket_and_lets_go_of_them_over_loop_steps() -> None:
    """Closing the session's queue with tens of thousands of tickets in it
    (runs let go of, or waiting) fails each now and frees them a slice per
    loop step (all at once took 0.1 s at 100,000 ids)."""
    queue = DueQueue(RequestBudget(1))
    tickets = queued_far_ahead(queue, _Failed)
    alive = [weakref.ref(ticket) for ticket in tickets]
    queue.close(lambda: RuntimeError("closed"))
    assert all(isinstance(ticket.error, RuntimeError) for ticket in tickets)
    del tickets
    still = sum(ref() is not None for ref in alive)
    assert still == len(alive)  # none freed in the close's own step
    freed_per_step = await freed_over_steps(alive, 10)
    assert all(ref() is None for ref in alive)
    assert max(freed_per_step) <= RELEASE_SLICE


class _Recorded(Ticket):
    """A ticket that records its failure."""

    __slots__ = ("errors",)

    def __init__(self, errors: list[BaseException]) -> None:
        super().__init__()
        self.errors = errors

    def granted(self, now: float) -> None:  # pragma: no cover - never granted here
        raise AssertionError("granted")

    def failed(self, error: BaseException) -> None:
        self.errors.append(error)


async def closing_a_paused_queue(
    tickets: int,
) -> tuple[DueQueue, list[BaseException], asyncio.Future[None]]:
    """A queue paused by a 429 with ``tickets`` waiting, its aclose() started and
    run for one loop step: (the queue, the failures so far, the close)."""
    budget = RequestBudget(1, rng=random.Random(9))
    queue = DueQueue(budget)
    budget.on_rate_limited(asyncio.get_running_loop().time(), 0.0, retry_after=60.0)
    errors: list[BaseException] = []
    for _ in range(tickets):
        queue.push(0.0, _Recorded(errors))
    closing = asyncio.ensure_future(queue.aclose(lambda: RuntimeError("closed")))
    await asyncio.sleep(0)
    return queue, errors, closing


async def test_an_async_close_fails_the_waiting_tickets_a_slice_per_loop_step() -> None:
    """aclose() fails the waiting tickets over loop steps (one step for 100,000
    of them stalled the loop a third of a second), every one of them in the
    end; a ticket pushed meanwhile fails at once."""
    queue, errors, closing = await closing_a_paused_queue(5000)
    assert 0 < len(errors) < 5000  # a first slice only
    late: list[BaseException] = []
    queue.push(0.0, _Recorded(late))
    assert len(late) == 1
    await closing
    assert len(errors) == 5000
    assert all(isinstance(error, RuntimeError) for error in errors)


async def test_a_cancelled_async_close_fails_the_rest_at_once() -> None:
    """aclose() cancelled between slices fails every ticket left before it raises."""
    _queue, errors, closing = await closing_a_paused_queue(5000)
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    assert len(errors) == 5000


async def test_a_ticket_withdrawn_while_the_queue_closes_is_not_counted() -> None:
    """A waiter cancelled between aclose()'s slices (its ticket not failed yet)
    takes no place in the queue's counts: they stay at zero, never below."""
    budget = RequestBudget(1, rng=random.Random(11))
    queue = DueQueue(budget)
    budget.on_rate_limited(asyncio.get_running_loop().time(), 0.0, retry_after=60.0)
    waiters = [asyncio.ensure_future(queue.acquire()) for _ in range(5000)]
    await asyncio.sleep(0)
    closing = asyncio.ensure_future(queue.aclose(lambda: RuntimeError("closed")))
    await asyncio.sleep(0)  # a first slice failed
    last = waiters[-1]
    assert not last.done()
    last.cancel()
    await asyncio.sleep(0)
    assert queue.waiting == 0
    await closing
    await asyncio.gather(*waiters, return_exceptions=True)
    assert last.cancelled()
    assert queue.waiting == 0


class _Granted(Ticket):
    """A ticket that records when it was granted (and gives the slot back)
    and how it failed."""

    __slots__ = ("errors", "grants", "queue")

    def __init__(self, queue: DueQueue) -> None:
        super().__init__()
        self.queue = queue
        self.grants: list[float] = []
        self.errors: list[BaseException] = []

    def granted(self, now: float) -> None:
        self.grants.append(now)
        self.queue.release()

    def failed(self, error: BaseException) -> None:
        self.errors.append(error)


async def test_a_moved_ticket_is_granted_at_its_new_time_once() -> None:
    """move() brings a waiting ticket forward: granted at the new time, and
    its old entry, left in the heap, grants nothing when it comes up."""
    loop = asyncio.get_running_loop()
    queue = DueQueue(RequestBudget(4))
    moved, other = _Granted(queue), _Granted(queue)
    start = loop.time()
    queue.push(start + 0.2, moved)
    queue.push(start + 0.1, other)
    assert queue.move(moved, start + 0.02)
    assert queue.waiting == 2
    await asyncio.sleep(0.3)
    assert len(moved.grants) == 1
    assert start + 0.02 <= moved.grants[0] < start + 0.1
    assert len(other.grants) == 1
    assert queue.waiting == 0
    assert len(queue) == 0  # the old entry was dropped when it came up


async def test_only_a_waiting_ticket_moves() -> None:
    """A ticket served, cancelled or never queued is not moved (False), and
    nothing is queued for it; nor on a closed queue."""
    loop = asyncio.get_running_loop()
    queue = DueQueue(RequestBudget(4))
    never, cancelled, served = _Granted(queue), _Granted(queue), _Granted(queue)
    assert not queue.move(never, loop.time())
    queue.push(loop.time() + 60, cancelled)
    queue.discard(cancelled)
    assert not queue.move(cancelled, loop.time())
    queue.push(loop.time(), served)
    assert served.grants  # at once
    assert not queue.move(served, loop.time())
    assert queue.waiting == 0
    waiting = _Granted(queue)
    queue.push(loop.time() + 60, waiting)
    assert list(queue.waiting_tickets()) == [waiting]
    queue.close(lambda: RuntimeError("closed"))
    assert [str(error) for error in waiting.errors] == ["closed"]
    assert not queue.move(waiting, loop.time())
    assert not never.grants
    assert not cancelled.grants
    assert len(served.grants) == 1


async def test_moved_tickets_dead_entries_are_compacted() -> None:
    """Moving 2,000 waiting tickets leaves their old entries dead: counted, and
    compacted once they are half the heap; each ticket stays queued once."""
    loop = asyncio.get_running_loop()
    queue = DueQueue(RequestBudget(1, rng=random.Random(3)))
    tickets = [_Granted(queue) for _ in range(2_000)]
    for ticket in tickets:
        queue.push(loop.time() + 600, ticket)
    for ticket in tickets:
        assert queue.move(ticket, loop.time() + 300)
    assert queue.waiting == 2_000
    assert len(queue) < 3_000  # compacted on the way
    assert sorted(map(id, queue.waiting_tickets())) == sorted(map(id, tickets))
    for ticket in tickets:
        queue.discard(ticket)
    assert queue.waiting == 0


async def test_a_moved_ticket_queued_again_while_closing_fails_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A ticket moved, then served, leaves its old entry in the heap: if its
    poll answers and queues it again while aclose() fails the heap over loop
    steps, the closed queue fails it at once, and the old entry does not
    fail it a second time."""
    monkeypatch.setattr(limits, "_FAIL_SLICE", 1)
    loop = asyncio.get_running_loop()
    queue = DueQueue(RequestBudget(4))
    start = loop.time()
    others = [_Granted(queue) for _ in range(3)]
    for other in others:
        queue.push(start + 30, other)
    moved = _Granted(queue)
    queue.push(start + 60, moved)
    assert queue.move(moved, start + 1)
    await asyncio.sleep(2)
    assert len(moved.grants) == 1
    assert len(queue) == 4  # its old entry is still there, dead

    async def queued_again() -> None:
        await asyncio.sleep(0)
        moved.cancelled = False  # as a poll run does once its answer came
        queue.push(loop.time() + 30, moved)

    again = asyncio.ensure_future(queued_again())
    await queue.aclose(lambda: RuntimeError("closed"))
    await again
    assert [str(error) for error in moved.errors] == ["closed"]
    assert all(len(other.errors) == 1 for other in others)


async def test_a_ticket_moved_while_grants_are_deferred_waits_for_their_end() -> None:
    """A ticket moved to now while grants are deferred (a batch letting go of
    its runs at its deadline) is not granted then, but when the deferral ends."""
    loop = asyncio.get_running_loop()
    queue = DueQueue(RequestBudget(4))
    ticket = _Granted(queue)
    queue.push(loop.time() + 60, ticket)
    with queue.grants_deferred():
        assert queue.move(ticket, loop.time())
        assert ticket.grants == []
    assert len(ticket.grants) == 1


class _UvloopLikeLoop(asyncio.SelectorEventLoop):
    """A loop whose call_at hands back a plain Handle (no when()) for a time
    due within a millisecond, as uvloop's does (it goes through call_soon)."""

    def call_at(self, when, callback, *args, context=None):  # type: ignore[no-untyped-def, override]
        if when - self.time() < 0.001:
            return self.call_soon(callback, *args, context=context)
        return super().call_at(when, callback, *args, context=context)


def test_the_queue_runs_on_a_loop_whose_near_timers_are_plain_handles() -> None:
    """Under uvloop the dispatch timer could be a plain Handle: re-arming it
    read its when(), an AttributeError in a poll runner or a caller, and the
    queue's timer was lost (the session stopped polling)."""
    from veo_async import PollPolicy, TaskStatus, VeoSession
    from veo_async.testing import FakeKie

    policy = PollPolicy(first_poll=0, interval=0.2, factor=1, max_interval=0.2, jitter=0.1)
    errors: list[dict[str, object]] = []

    async def main() -> list[object]:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: errors.append(ctx))
        kie = FakeKie(api_key="k-1234567890")
        ids = [f"veo_task_{i}" for i in range(200)]
        for i, task_id in enumerate(ids):
            kie.add_task(task_id, complete_after=(i % 10) / 10)
        async with VeoSession("k-1234567890", transport=kie.transport(), policy=policy) as veo:
            outcomes = await veo.wait_many(ids, timeout=30, return_exceptions=True)
        await kie.close()
        return outcomes

    loop = _UvloopLikeLoop()
    try:
        outcomes = loop.run_until_complete(main())
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    assert [getattr(o, "status", o) for o in outcomes] == [TaskStatus.SUCCESS] * 200
    assert errors == []
