"""RequestLimiter on a real event loop: in-flight cap, order, cancellation, 429s, rate.

Durations are small and assertions are about order and counts (or about the
limiter's own ``loop.time()`` bookkeeping), never about how fast the machine is.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from veo_async._limits import RequestLimiter

# Module constants mirrored here on purpose: a change to the pause schedule
# should be a visible, deliberate test change.
PAUSE_JITTER = 0.2
PAUSE_CAP = 60.0
#: Slack for the few microseconds between our loop.time() reads and the limiter's.
EPS = 0.05


def now() -> float:
    """The running loop's clock (the limiter's clock)."""
    return asyncio.get_running_loop().time()


async def settle(rounds: int = 5) -> None:
    """Let every ready task run a few steps (queued waiters reach their await)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


# ------------------------------------------------------------- in-flight cap


@pytest.mark.parametrize("concurrency", [1, 3, 16])
async def test_never_more_than_concurrency_in_flight(concurrency: int) -> None:
    """Across many concurrent acquirers, at most ``concurrency`` hold a slot at once."""
    limiter = RequestLimiter(concurrency)
    rng = random.Random(concurrency)
    holding = 0
    peak = 0
    served = 0

    async def worker(priority: float) -> None:
        nonlocal holding, peak, served
        await limiter.acquire(priority)
        holding += 1
        peak = max(peak, holding)
        assert limiter.in_flight <= concurrency
        for _ in range(rng.randint(0, 3)):
            await asyncio.sleep(0)
        holding -= 1
        served += 1
        limiter.release()

    await asyncio.gather(*(worker(rng.random()) for _ in range(200)))
    assert served == 200
    assert peak == concurrency
    assert limiter.max_in_flight == concurrency
    assert (limiter.in_flight, limiter.waiting) == (0, 0)


# -------------------------------------------------------------------- order


async def _grant_order(priorities: list[tuple[float, str]]) -> list[str]:
    """Queue waiters behind a full window of one; release it; return the grant order."""
    limiter = RequestLimiter(1)
    await limiter.acquire(0.0)
    order: list[str] = []

    async def waiter(priority: float, name: str) -> None:
        await limiter.acquire(priority)
        order.append(name)
        limiter.release()

    tasks = [asyncio.create_task(waiter(p, n)) for p, n in priorities]
    await settle()
    assert limiter.waiting == len(priorities)
    assert order == []
    limiter.release()
    await asyncio.gather(*tasks)
    return order


@pytest.mark.parametrize(
    ("priorities", "expected"),
    [
        pytest.param(
            [(5.0, "e"), (1.0, "a"), (4.0, "d"), (2.0, "b"), (3.0, "c")],
            ["a", "b", "c", "d", "e"],
            id="most-overdue-first",
        ),
        pytest.param(
            [(2.0, "a"), (1.0, "b"), (2.0, "c"), (1.0, "d")], ["b", "d", "a", "c"], id="ties-fifo"
        ),
        pytest.param(
            [(-10.0, "late"), (100.0, "future")], ["late", "future"], id="negative-priority"
        ),
    ],
)
async def test_waiters_granted_most_overdue_first(
    priorities: list[tuple[float, str]], expected: list[str]
) -> None:
    """Queued requests are granted smallest priority (earliest due) first, ties in order."""
    assert await _grant_order(priorities) == expected


# ------------------------------------------------------------- cancellation


async def test_cancelled_waiter_does_not_consume_a_slot() -> None:
    """A waiter cancelled while queued is skipped; the slot goes to the next one."""
    limiter = RequestLimiter(1)
    await limiter.acquire(0.0)
    granted: list[str] = []

    async def waiter(priority: float, name: str) -> None:
        await limiter.acquire(priority)
        granted.append(name)

    first = asyncio.create_task(waiter(1.0, "first"))
    second = asyncio.create_task(waiter(2.0, "second"))
    await settle()
    first.cancel()
    await settle()
    assert first.cancelled()
    limiter.release()
    await second
    assert granted == ["second"]
    assert limiter.in_flight == 1
    limiter.release()
    assert limiter.in_flight == 0
    # The slot is really free: a newcomer gets it at once.
    await asyncio.wait_for(limiter.acquire(0.0), timeout=5)
    assert limiter.in_flight == 1


async def test_waiter_cancelled_right_after_grant_gives_the_slot_back() -> None:
    """Granted and cancelled in the same loop iteration: the slot is returned, not leaked."""
    limiter = RequestLimiter(1)
    await limiter.acquire(0.0)
    task = asyncio.create_task(limiter.acquire(1.0))
    await settle()
    limiter.release()  # grants the queued waiter (its future is resolved now)...
    task.cancel()  # ...and the task is cancelled before it could resume
    with pytest.raises(asyncio.CancelledError):
        await task
    assert limiter.in_flight == 0
    await asyncio.wait_for(limiter.acquire(0.0), timeout=5)
    assert limiter.in_flight == 1


async def test_all_waiters_cancelled_leaves_limiter_clean() -> None:
    """Cancelling every queued waiter leaves no slot taken once the holder releases."""
    limiter = RequestLimiter(2)
    await limiter.acquire(0.0)
    await limiter.acquire(0.0)
    tasks = [asyncio.create_task(limiter.acquire(float(i))) for i in range(10)]
    await settle()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    limiter.release()
    limiter.release()
    assert (limiter.in_flight, limiter.waiting) == (0, 0)


# ------------------------------------------------------------ 429 slow-down


async def test_rate_limited_pauses_every_new_grant_until_paused_until() -> None:
    """After a 429 no request is granted before paused_until (Retry-After honoured)."""
    limiter = RequestLimiter(8)
    granted_at = await limiter.acquire(0.0)
    limiter.release()
    before = now()
    limiter.record_rate_limited(granted_at, retry_after=0.05)
    after = now()
    paused_until = limiter.paused_until
    assert before + 0.05 <= paused_until <= after + 0.05 * (1 + PAUSE_JITTER)
    assert limiter.window == 1  # after a strike, one probe at a time

    async def one(priority: float) -> float:
        granted = await limiter.acquire(priority)
        await asyncio.sleep(0)
        limiter.release()
        return granted

    times = await asyncio.wait_for(asyncio.gather(*(one(float(i)) for i in range(10))), timeout=5)
    assert len(times) == 10
    assert all(t >= paused_until for t in times)
    assert limiter.rate_limited == 1
    assert limiter.max_in_flight <= 1  # no success answered: the window stays at one


@pytest.mark.parametrize(
    "retry_after",
    [pytest.param(0.3, id="short"), pytest.param(3.0, id="3s"), pytest.param(120.0, id="long")],
)
async def test_retry_after_sets_the_pause(retry_after: float) -> None:
    """The pause is the server's Retry-After (stretched by at most the jitter), not the backoff."""
    limiter = RequestLimiter(4)
    before = now()
    limiter.record_rate_limited(before, retry_after=retry_after)
    after = now()
    assert before + retry_after <= limiter.paused_until
    assert limiter.paused_until <= after + retry_after * (1 + PAUSE_JITTER)


async def test_window_drops_to_one_per_strike_and_grows_back_per_success() -> None:
    """Each fresh 429 leaves a window of one probe; each success adds one back up to the cap."""
    limiter = RequestLimiter(8)
    windows = []
    for _ in range(5):
        limiter.record_rate_limited(now(), retry_after=0)
        windows.append(limiter.window)
    assert windows == [1, 1, 1, 1, 1]
    grown = []
    for _ in range(9):
        limiter.record_success()
        grown.append(limiter.window)
    assert grown == [2, 3, 4, 5, 6, 7, 8, 8, 8]


async def test_shrunk_window_limits_grants_and_success_releases_a_waiter() -> None:
    """A shrunk window admits only that many; widening it grants the next queued request."""
    limiter = RequestLimiter(8)
    limiter.record_rate_limited(now(), retry_after=0)
    assert limiter.window == 1
    await asyncio.wait_for(limiter.acquire(0.0), timeout=5)
    second = asyncio.create_task(limiter.acquire(1.0))
    await settle()
    assert not second.done()
    assert limiter.waiting == 1
    limiter.record_success()
    await asyncio.wait_for(second, timeout=5)
    assert (limiter.window, limiter.in_flight) == (2, 2)


async def test_echo_429s_do_not_escalate() -> None:
    """429s for requests granted before the pause began lengthen nothing beyond strike 1."""
    limiter = RequestLimiter(8)
    sent = now() - 1.0  # several requests went out together, a second ago
    limiter.record_rate_limited(sent, retry_after=None)  # first answer: strike 1
    assert limiter.window == 1
    for _ in range(5):  # the other answers of the same burst
        before = now()
        limiter.record_rate_limited(sent, retry_after=None)
        assert limiter.window == 1
        assert limiter.paused_until <= before + 1.0 * (1 + PAUSE_JITTER) + EPS
    assert limiter.rate_limited == 6
    # A request granted after the pause began and 429'd again: strike 2 (2 s scale).
    before = now()
    limiter.record_rate_limited(now(), retry_after=None)
    after = now()
    assert limiter.window == 1
    assert before + 2.0 <= limiter.paused_until <= after + 2.0 * (1 + PAUSE_JITTER)


async def test_echo_may_lengthen_the_pause_with_its_retry_after() -> None:
    """An echo's Retry-After can extend the pause without counting as a strike."""
    limiter = RequestLimiter(8)
    sent = now() - 1.0
    limiter.record_rate_limited(sent, retry_after=None)
    before = now()
    limiter.record_rate_limited(sent, retry_after=10.0)
    assert limiter.paused_until >= before + 10.0
    assert limiter.window == 1


async def test_consecutive_strikes_double_the_pause_up_to_the_cap() -> None:
    """Strikes without Retry-After pause 1, 2, 4 ... s, capped at 60 s (plus jitter)."""
    limiter = RequestLimiter(64)
    for strike in range(1, 10):
        base = min(PAUSE_CAP, 2.0 ** (strike - 1))
        before = now()
        limiter.record_rate_limited(now(), retry_after=None)
        after = now()
        pause_from_before = limiter.paused_until - before
        assert pause_from_before >= base, strike
        assert limiter.paused_until - after <= base * (1 + PAUSE_JITTER), strike


async def test_success_resets_the_strike_run() -> None:
    """After a success, the next 429 starts the backoff again at 1 s, not 2 s."""
    limiter = RequestLimiter(8)
    limiter.record_rate_limited(now(), retry_after=None)
    limiter.record_success()
    before = now()
    limiter.record_rate_limited(now(), retry_after=None)
    assert limiter.paused_until - before < 2.0


async def test_pause_does_not_block_forever_and_no_grant_precedes_it() -> None:
    """Waiters queued behind a short backoff pause are all served, none early."""
    limiter = RequestLimiter(2)
    limiter.record_rate_limited(now(), retry_after=0.02)
    paused_until = limiter.paused_until

    async def one(priority: float) -> float:
        granted = await limiter.acquire(priority)
        await asyncio.sleep(0)
        limiter.release()
        return granted

    times = await asyncio.wait_for(asyncio.gather(*(one(float(i)) for i in range(6))), timeout=5)
    assert len(times) == 6
    assert min(times) >= paused_until
    assert limiter.max_in_flight <= 2


async def test_waiter_granted_before_the_pause_reports_its_grant_time() -> None:
    """A waiter granted before a pause begins reports that grant time (its 429 is an echo)."""
    limiter = RequestLimiter(2)
    first = await limiter.acquire(0.0)
    await limiter.acquire(0.0)
    queued = asyncio.create_task(limiter.acquire(1.0))
    await settle()
    limiter.release()  # the first request's answer arrived: the queued waiter is granted now
    granted_by = now()
    limiter.record_rate_limited(first, retry_after=None)  # ...and that answer was a 429
    assert limiter.window == 1
    second = await queued
    assert second <= granted_by
    before = now()
    limiter.record_rate_limited(second, retry_after=None)  # the same overload's echo
    assert limiter.window == 1
    assert limiter.paused_until - before < 2.0


# --------------------------------------------------------------------- rate


async def test_rate_limit_spaces_grants() -> None:
    """With a rate, no instant has seen more grants than one second's bucket plus rate*elapsed."""
    rate, n = 40.0, 60
    capacity = max(1.0, rate)  # the bucket holds one second's worth
    limiter = RequestLimiter(1000, rate=rate)

    async def one(priority: float) -> float:
        granted = await limiter.acquire(priority)
        limiter.release()
        return granted

    start = now()
    times = sorted(
        await asyncio.wait_for(asyncio.gather(*(one(float(i)) for i in range(n))), timeout=10)
    )
    assert len(times) == n
    for count, at in enumerate(times, start=1):
        assert count <= capacity + rate * (at - start) + 1, (count, at - start)
    # The burst beyond the bucket had to wait for tokens: (n - capacity) / rate seconds.
    assert times[-1] - start >= (n - capacity - 1) / rate


async def test_rate_limited_waiters_still_go_most_overdue_first() -> None:
    """Under a binding rate, queued requests are still served by priority."""
    limiter = RequestLimiter(1, rate=20.0)
    for _ in range(20):  # drain the bucket
        await limiter.acquire(0.0)
        limiter.release()
    await asyncio.wait_for(limiter.acquire(0.0), timeout=5)  # hold the only slot
    order: list[float] = []

    async def one(priority: float) -> None:
        await limiter.acquire(priority)
        order.append(priority)
        limiter.release()

    priorities = [7.0, 3.0, 9.0, 1.0, 5.0]
    tasks = [asyncio.create_task(one(p)) for p in priorities]
    await settle()
    assert limiter.waiting == len(priorities)
    limiter.release()
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)
    assert order == sorted(priorities)


async def test_fractional_rate_allows_one_then_waits() -> None:
    """A rate below 1/s still admits one request at once and queues the next."""
    limiter = RequestLimiter(10, rate=0.5)
    await asyncio.wait_for(limiter.acquire(0.0), timeout=5)
    limiter.release()
    second = asyncio.create_task(limiter.acquire(1.0))
    await settle()
    assert not second.done()
    assert limiter.waiting == 1
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second


# ------------------------------------------------------------ the limiter as the polls' clock


async def test_a_future_due_time_is_not_granted_early() -> None:
    """A request due later sleeps in the queue and is granted at (not before) its due time."""
    limiter = RequestLimiter(4)
    due = now() + 0.15
    granted = await asyncio.wait_for(limiter.acquire(due), timeout=5)
    assert granted >= due
    assert limiter.in_flight == 1


async def test_sleeping_requests_hold_no_slot() -> None:
    """Requests waiting for their due time leave every slot free for due ones."""
    limiter = RequestLimiter(1)
    sleepers = [asyncio.create_task(limiter.acquire(now() + 60)) for _ in range(50)]
    await settle()
    assert limiter.waiting == 50
    assert limiter.in_flight == 0
    granted = await asyncio.wait_for(limiter.acquire(now()), timeout=5)  # one due now
    assert granted <= now()
    for sleeper in sleepers:
        sleeper.cancel()
    await asyncio.gather(*sleepers, return_exceptions=True)
    limiter.release()
    assert limiter.in_flight == 0


async def test_earlier_due_time_queued_later_goes_first() -> None:
    """Entries are served by due time, not by arrival order."""
    limiter = RequestLimiter(4)
    order: list[str] = []

    async def one(name: str, delay: float) -> None:
        await limiter.acquire(now() + delay)
        order.append(name)
        limiter.release()

    late = asyncio.create_task(one("late", 0.2))
    await settle()
    early = asyncio.create_task(one("early", 0.05))
    await asyncio.wait_for(asyncio.gather(late, early), timeout=5)
    assert order == ["early", "late"]
