"""wait_many and as_completed against FakeKie over loopback."""

from __future__ import annotations

import asyncio
import itertools
import random
import traceback
from collections import Counter
from contextlib import aclosing
from typing import Any

import pytest

from veo_async import (
    AdaptivePolicy,
    InsufficientCreditsError,
    PollPolicy,
    RecordInfo,
    RecordNotFoundError,
    TaskFailedError,
    TaskStatus,
    VeoSession,
    WaitTimeoutError,
)
from veo_async._batch import _HANDOUT_SLICE as HANDOUT_SLICE
from veo_async._http import HttpRequest
from veo_async._poll_runners import PollRequest, PollRunners
from veo_async._protocol import RawResponse
from veo_async.testing import FakeKie, Fault, TaskScript

from .conftest import (
    API_KEY,
    FAST_POLICY,
    deadline_letting_go,
    eventually,
    leftover_tasks,
    session_on,
)


async def _until(condition: object, limit: float = 3.0) -> bool:
    """Poll a zero-argument callable until it is true or ``limit`` seconds pass."""
    assert callable(condition)
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while loop.time() < end:
        if condition():
            return True
        await asyncio.sleep(0.01)
    return bool(condition())


async def test_results_follow_input_order(fake_kie: FakeKie, veo: VeoSession) -> None:
    """Results come back in the order of the ids given, not completion order."""
    for index, delay in enumerate([0.3, 0.0, 0.15, 0.05]):
        fake_kie.add_task(f"t{index}", complete_after=delay)
    ids = ["t0", "t1", "t2", "t3"]
    results = await veo.wait_many(ids)
    assert [r.task_id for r in results if isinstance(r, RecordInfo)] == ids


async def test_duplicates_share_one_loop_but_every_position_answers(
    fake_kie: FakeKie, veo: VeoSession
) -> None:
    """A repeated id gets its outcome at every position, from a single poll loop."""
    fake_kie.add_task("dup", complete_after=0.2)
    fake_kie.add_task("solo", complete_after=0.2)
    results = await veo.wait_many(["dup", "solo", "dup", "dup"])
    assert [r.task_id for r in results if isinstance(r, RecordInfo)] == [
        "dup", "solo", "dup", "dup",
    ]
    # One loop per distinct id: the repeated id is polled no more than the single one (+1).
    assert fake_kie.polls("dup") <= fake_kie.polls("solo") + 1


async def test_return_exceptions_puts_each_error_in_its_place(
    fake_kie: FakeKie, veo: VeoSession
) -> None:
    """With return_exceptions=True every position holds its record or its error."""
    fake_kie.add_task("ok", complete_after=0.05)
    fake_kie.add_task("failed", complete_after=0.05, final_status=2)
    fake_kie.add_task("gen_failed", complete_after=0.05, final_status=3)
    fake_kie.add_task("slow", complete_after=60)
    fake_kie.add_task(
        TaskScript("denied", faults=(Fault.body_code(402, "insufficient credits"),))
    )
    ids = ["ok", "failed", "gen_failed", "slow", "denied"]
    results = await veo.wait_many(ids, timeout=0.5, return_exceptions=True)
    ok, failed, gen_failed, slow, denied = results
    assert isinstance(ok, RecordInfo)
    assert ok.status is TaskStatus.SUCCESS
    assert isinstance(failed, TaskFailedError)
    assert failed.record.status is TaskStatus.FAILED
    assert isinstance(gen_failed, TaskFailedError)
    assert gen_failed.record.status is TaskStatus.GENERATION_FAILED
    assert isinstance(slow, WaitTimeoutError)
    assert slow.record is not None
    assert isinstance(denied, InsufficientCreditsError)
    assert leftover_tasks() == set()


async def test_first_failure_raises_and_cancels_the_rest(
    fake_kie: FakeKie, veo: VeoSession
) -> None:
    """Without return_exceptions the first failure propagates and the other waits stop."""
    fake_kie.add_task("fails", complete_after=0.05, final_status=2)
    for index in range(20):
        fake_kie.add_task(f"long{index}", complete_after=60)
    with pytest.raises(TaskFailedError) as caught:
        await veo.wait_many(["fails", *[f"long{i}" for i in range(20)]], timeout=30)
    assert caught.value.task_id == "fails"
    assert leftover_tasks() == set()
    polls_after = fake_kie.total_requests
    await asyncio.sleep(0.2)
    assert fake_kie.total_requests == polls_after  # nothing keeps polling for nobody


async def test_batches_sharing_a_failed_run_raise_its_error_afresh(veo: VeoSession) -> None:
    """Batches that follow one run raise its one error, each from its own
    frames: re-raised as it was, its traceback would hold every batch's."""
    errors = await asyncio.gather(
        *(veo.wait_many(["veo_nobody"]) for _ in range(10)), return_exceptions=True
    )
    assert all(isinstance(error, RecordNotFoundError) for error in errors)
    assert len({id(error) for error in errors}) == 1
    assert len(traceback.extract_tb(errors[0].__traceback__)) <= 4


async def test_empty_batch_makes_no_request(fake_kie: FakeKie, veo: VeoSession) -> None:
    """An empty list of ids answers an empty list without I/O."""
    assert await veo.wait_many([]) == []
    assert fake_kie.total_requests == 0


@pytest.mark.parametrize(
    ("task_ids", "error"),
    [
        pytest.param("veo_task_1", TypeError, id="a-bare-string"),
        pytest.param(42, TypeError, id="not-iterable"),
        pytest.param(["ok", ""], ValueError, id="empty-id"),
        pytest.param(["ok", None], TypeError, id="none-id"),
        pytest.param(["ok", " padded"], ValueError, id="whitespace"),
        pytest.param(["ok", 7], TypeError, id="int-id"),
    ],
)
async def test_bad_input_fails_before_any_request(
    fake_kie: FakeKie, veo: VeoSession, task_ids: object, error: type[Exception]
) -> None:
    """Invalid ids raise at once, naming the position, and nothing is sent."""
    with pytest.raises(error):
        await veo.wait_many(task_ids)  # type: ignore[arg-type]
    with pytest.raises(error):
        veo.as_completed(task_ids)  # type: ignore[arg-type]
    assert fake_kie.total_requests == 0


@pytest.mark.parametrize("timeout", [-1.0, float("nan"), "10"])
async def test_bad_timeout_fails_before_any_request(
    fake_kie: FakeKie, veo: VeoSession, timeout: object
) -> None:
    """A negative, NaN or non-numeric batch timeout is refused before I/O."""
    fake_kie.add_task("t")
    with pytest.raises(ValueError, match="timeout"):
        await veo.wait_many(["t"], timeout=timeout)  # type: ignore[arg-type]
    assert fake_kie.total_requests == 0


async def test_as_completed_yields_in_completion_order(
    fake_kie: FakeKie, veo: VeoSession
) -> None:
    """as_completed hands out handles as their tasks finish, fastest first."""
    fake_kie.add_task("late", complete_after=0.6)
    fake_kie.add_task("early", complete_after=0.0)
    fake_kie.add_task("middle", complete_after=0.3, final_status=2)
    seen = []
    async for task in veo.as_completed(["late", "early", "middle"]):
        seen.append((task.task_id, task.status))
    assert seen == [
        ("early", TaskStatus.SUCCESS),
        ("middle", TaskStatus.FAILED),
        ("late", TaskStatus.SUCCESS),
    ]


async def test_as_completed_reports_each_outcome_through_result(
    fake_kie: FakeKie, veo: VeoSession
) -> None:
    """Each yielded handle's result() returns the record or raises what ended it."""
    fake_kie.add_task("ok", complete_after=0.0)
    fake_kie.add_task("bad", complete_after=0.0, final_status=3)
    fake_kie.add_task("never", complete_after=60)
    outcomes: dict[str, object] = {}
    async for task in veo.as_completed(["ok", "bad", "never", "ok"], timeout=0.4):
        try:
            outcomes.setdefault(task.task_id, []).append(task.result().status)  # type: ignore[union-attr]
        except (TaskFailedError, WaitTimeoutError) as exc:
            outcomes.setdefault(task.task_id, []).append(type(exc))  # type: ignore[union-attr]
    assert outcomes == {
        "ok": [TaskStatus.SUCCESS, TaskStatus.SUCCESS],
        "bad": [TaskFailedError],
        "never": [WaitTimeoutError],
    }


async def test_a_yielded_handle_keeps_its_outcome_when_another_wait_starts_on_it(
    fake_kie: FakeKie,
) -> None:
    """A handle as_completed yielded still tells what ended its polling (a
    record that stayed null, a batch deadline) once another wait has started
    polling that id again: result() raises that error, not InvalidStateError."""
    fake_kie.add_task("quick", complete_after=0)
    fake_kie.add_task("slow", complete_after=3600)
    policy = PollPolicy(first_poll=0, interval=1, max_interval=2, jitter=0, not_found_grace=2)
    async with session_on(fake_kie, policy=policy) as veo:
        others: list[asyncio.Task[Any]] = []
        errors: dict[str, type[Exception]] = {}
        ids = ["quick", "unknown", "slow"]
        async with aclosing(veo.as_completed(ids, timeout=20)) as completed:
            async for handle in completed:
                if handle.task_id == "quick":
                    await asyncio.sleep(10)  # "unknown" ends: its record stays null
                    continue
                # Someone else starts waiting on the same id before we read it.
                others.append(asyncio.create_task(veo.task(handle.task_id).wait(timeout=600)))
                await asyncio.sleep(0.5)
                assert handle.polling
                with pytest.raises((RecordNotFoundError, WaitTimeoutError)) as caught:
                    handle.result()
                assert handle.error is caught.value
                errors[handle.task_id] = type(caught.value)
        assert errors == {"unknown": RecordNotFoundError, "slow": WaitTimeoutError}
        for other in others:
            other.cancel()
        await asyncio.gather(*others, return_exceptions=True)


async def test_leaving_as_completed_early_cancels_the_rest(
    fake_kie: FakeKie, veo: VeoSession
) -> None:
    """Breaking out of as_completed stops every remaining wait and its polling."""
    fake_kie.add_task("first", complete_after=0.0)
    for index in range(30):
        fake_kie.add_task(f"long{index}", complete_after=60)
    ids = ["first", *[f"long{i}" for i in range(30)]]
    async with aclosing(veo.as_completed(ids)) as completed:
        async for task in completed:
            assert task.task_id == "first"
            break
    assert leftover_tasks() == set()
    requests = fake_kie.total_requests
    await asyncio.sleep(0.2)
    assert fake_kie.total_requests == requests


async def test_cancelling_a_batch_leaves_nothing_behind(
    fake_kie: FakeKie, veo: VeoSession
) -> None:
    """Cancelling wait_many mid-flight (requests hanging) propagates and cleans up fully."""
    ids = [f"hang{i}" for i in range(100)]
    fake_kie.add_tasks(TaskScript(i, faults=(Fault.slow(60),)) for i in ids)
    batch = asyncio.create_task(veo.wait_many(ids))
    assert await _until(lambda: fake_kie.in_flight > 0)
    batch.cancel()
    with pytest.raises(asyncio.CancelledError):
        await batch
    assert leftover_tasks() == set()
    assert veo.stats.in_flight == 0
    # The client hung up on every hanging request: the server sees none left.
    assert await _until(lambda: fake_kie.in_flight == 0)
    # The session is still usable.
    fake_kie.add_task("after")
    assert (await veo.task("after")).status is TaskStatus.SUCCESS


async def test_two_thousand_ids_with_faults_one_correct_outcome_each(
    fake_kie: FakeKie,
) -> None:
    """2,000 ids, mixed outcomes, injected faults: exactly one right outcome per id."""
    rng = random.Random(7)
    faults = [
        Fault.server_error(),
        Fault.bad_gateway_html(),
        Fault.truncated_json(),
        Fault.reset(),
        Fault.maintenance(),
        Fault.record_null(),
        Fault.empty_body(),
    ]
    expected: dict[str, type] = {}
    scripts = []
    for index in range(2000):
        task_id = f"veo_task_{index:05d}"
        status = rng.choices([1, 2, 3], weights=[8, 1, 1])[0]
        scripts.append(
            TaskScript(
                task_id,
                complete_after=rng.uniform(0.0, 0.5),
                final_status=status,
                faults=tuple(rng.sample(faults, rng.randint(0, 2))),
            )
        )
        expected[task_id] = RecordInfo if status == 1 else TaskFailedError
    fake_kie.add_tasks(scripts)
    # 429s are session-wide signals (each pauses every handle): a few, not hundreds.
    fake_kie.inject(Fault.http_429(retry_after=0.2), count=2)
    fake_kie.inject(Fault.body_429(), count=1)
    ids = list(expected)
    policy = FAST_POLICY.replace(interval=0.05, max_interval=0.2, timeout=60)
    async with session_on(
        fake_kie, policy=policy, concurrency=32
    ) as session:
        results = await session.wait_many(ids, return_exceptions=True)
    assert len(results) == len(ids)
    for task_id, result in zip(ids, results, strict=True):
        assert isinstance(result, expected[task_id]), (task_id, result)
        record = result if isinstance(result, RecordInfo) else result.record  # type: ignore[union-attr]
        assert record.task_id == task_id
    assert fake_kie.max_in_flight <= 32
    assert leftover_tasks() == set()


@pytest.mark.parametrize("concurrency", [1, 4, 16])
async def test_requests_in_flight_never_exceed_concurrency(
    fake_kie: FakeKie, concurrency: int
) -> None:
    """However many ids are tracked, at most `concurrency` requests are in flight."""
    ids = [f"t{i}" for i in range(80)]
    # Slow answers keep requests in flight long enough for any overshoot to show.
    fake_kie.add_tasks(
        TaskScript(i, complete_after=0.1, faults=(Fault.slow(0.02),)) for i in ids
    )
    async with session_on(
        fake_kie, policy=FAST_POLICY, concurrency=concurrency
    ) as session:
        results = await session.wait_many(ids)
        assert session.stats.max_in_flight <= concurrency
    assert len(results) == 80
    assert fake_kie.max_in_flight == concurrency  # the budget was used, never exceeded


async def test_a_429_pauses_the_whole_session(fake_kie: FakeKie) -> None:
    """After a 429 with Retry-After, no handle sends anything until the pause is over."""
    ids = [f"t{i}" for i in range(50)]
    fake_kie.add_tasks(TaskScript(i, complete_after=1.0) for i in ids)
    retry_after = 0.5
    async with session_on(
        fake_kie, policy=FAST_POLICY, concurrency=8
    ) as session:
        batch = asyncio.create_task(session.wait_many(ids))
        await _until(lambda: fake_kie.total_requests >= 60)
        fake_kie.inject(Fault.http_429(retry_after=retry_after), count=3)
        results = await batch
        rate_limited = session.stats.rate_limited
    assert len(results) == 50
    throttled = sorted(r.started for r in fake_kie.requests if r.code == 429)
    assert len(throttled) == 3 == rate_limited
    first = throttled[0]
    quiet = [
        r
        for r in fake_kie.requests
        if first + 0.1 < r.started < first + retry_after - 0.05
    ]
    assert quiet == []  # the whole session held off, not just the task that got the 429


async def test_a_burst_of_429s_stays_bounded(fake_kie: FakeKie) -> None:
    """A burst of 429s shrinks the session's window: few requests are wasted on it."""
    ids = [f"t{i}" for i in range(64)]
    # Running well past the outage (virtual time is cheap): polls keep going
    # during it however slowly the machine gets through the first round.
    fake_kie.add_tasks(TaskScript(i, complete_after=5.0) for i in ids)
    async with session_on(
        fake_kie, policy=FAST_POLICY, concurrency=32
    ) as session:
        batch = asyncio.create_task(session.wait_many(ids))
        await _until(lambda: fake_kie.total_requests >= 64)
        # The service says 429 to everything for a while (no Retry-After).
        fake_kie.inject(Fault.body_429(), count=1000)
        await asyncio.sleep(1.5)
        # Each 429 strike halves the window and doubles the pause: in 1.5 s
        # only a handful of probes go out, instead of 32 requests every poll.
        wasted = fake_kie.count_status(429)
        fake_kie.clear_injected()  # the outage ends
        results = await batch
    assert len(results) == 64
    assert 1 <= wasted <= 32 + 8


async def test_tight_rate_limit_starves_nobody(fake_kie: FakeKie) -> None:
    """Under a binding rate limit every task keeps getting polled; all finish."""
    ids = [f"t{i}" for i in range(40)]
    fake_kie.add_tasks(TaskScript(i, complete_after=0.8) for i in ids)
    async with session_on(
        fake_kie, policy=FAST_POLICY, rate=40.0
    ) as session:
        results = await session.wait_many(ids, timeout=20)
    assert all(isinstance(r, RecordInfo) for r in results)
    polls = Counter(r.task_id for r in fake_kie.requests)
    # Most-overdue-first keeps the polls even: no task got far fewer than another.
    assert max(polls.values()) - min(polls.values()) <= 3, polls
    starts = sorted(r.started for r in fake_kie.requests)
    # The limit held: no 1-second window saw more than rate + burst requests.
    for index, start in enumerate(starts):
        in_window = sum(1 for s in starts[index:] if s < start + 1.0)
        assert in_window <= 40 + 40 + 10  # server-side arrival times bunch a little


async def test_policy_argument_reaches_every_wait(fake_kie: FakeKie, veo: VeoSession) -> None:
    """A batch policy's timeout applies to each task of the batch."""
    fake_kie.add_task("never", complete_after=60)
    policy = PollPolicy(interval=0.02, max_interval=0.05, timeout=0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    (result,) = await veo.wait_many(["never"], policy=policy, return_exceptions=True)
    assert isinstance(result, WaitTimeoutError)
    assert result.timeout == pytest.approx(0.3)
    assert loop.time() - started < 5


async def test_as_completed_polls_nothing_until_iterated(
    fake_kie: FakeKie, veo: VeoSession
) -> None:
    """Calling as_completed without iterating starts no polling (nothing to clean up)."""
    fake_kie.add_task("t")
    completed = veo.as_completed(["t"])
    await asyncio.sleep(0.1)
    assert fake_kie.total_requests == 0
    assert leftover_tasks() == set()
    await completed.aclose()


@pytest.mark.parametrize("slow_ids", [3, 2500])  # one slice, and several
async def test_an_as_completed_iterator_kept_but_not_iterated_stops_polling_at_its_deadline(
    fake_kie: FakeKie, slow_ids: int
) -> None:
    """A consumer busy with the first task past the deadline (the iterator kept,
    not iterated): polling stops at the deadline all the same, and the next
    iterations yield the rest as timed out, with nothing left behind."""
    fake_kie.add_task("quick")
    slow = [f"slow{i}" for i in range(slow_ids)]
    for task_id in slow:
        fake_kie.add_task(task_id, complete_after=3600)
    policy = PollPolicy(first_poll=0.0, interval=1.0, factor=1.0, jitter=0.0, timeout=None)
    async with session_on(fake_kie, policy=policy) as veo:
        completed = veo.as_completed(["quick", *slow], timeout=10)
        first = await anext(completed)
        assert first.task_id == "quick"
        await asyncio.sleep(11)  # busy with the first task, past the deadline
        at_deadline = fake_kie.total_requests
        await asyncio.sleep(60)
        assert fake_kie.total_requests == at_deadline  # nobody polled for nobody
        assert leftover_tasks() == set()
        rest = [handle async for handle in completed]
        assert [handle.task_id for handle in rest] == slow
        assert all(isinstance(handle.exception(), WaitTimeoutError) for handle in rest)
        assert veo.stats.in_flight == 0
    assert leftover_tasks() == set()


async def test_an_as_completed_iterator_closed_while_its_deadline_lets_go_is_clean(
    fake_kie: FakeKie,
) -> None:
    """Closed in the middle of the deadline's letting go (thousands of ids, in
    slices): the letting go stops, every run is let go of, nothing is left."""
    slow = [f"slow{i}" for i in range(6000)]
    for task_id in slow:
        fake_kie.add_task(task_id, complete_after=3600)
    fake_kie.add_task("quick")
    policy = PollPolicy(first_poll=0.0, interval=1.0, factor=1.0, jitter=0.0, timeout=None)
    async with session_on(fake_kie, policy=policy) as veo:
        completed = veo.as_completed(["quick", *slow], timeout=10)
        assert (await anext(completed)).task_id == "quick"
        await deadline_letting_go(step=0.001, tries=20_000)
        await asyncio.sleep(0)  # a slice let go of, the next ones not yet
        await completed.aclose()
        assert leftover_tasks() == set()
        requests = fake_kie.total_requests
        await asyncio.sleep(30)
        assert fake_kie.total_requests == requests
        assert veo.stats.in_flight == 0


async def test_mixed_batch_gives_every_position_its_own_outcome(
    fake_kie: FakeKie, veo: VeoSession
) -> None:
    """Ids done at their first poll (their records kept as they arrive), ids needing
    several polls, failures, an error, ids finished before the batch and repeats:
    each position holds that id's own outcome, the same object at every repeat."""
    fake_kie.add_task("now_ok")
    fake_kie.add_task("later_ok", complete_after=0.3)
    fake_kie.add_task("now_failed", final_status=2)
    fake_kie.add_task("later_failed", complete_after=0.3, final_status=3)
    fake_kie.add_task(
        TaskScript("denied", faults=(Fault.body_code(402, "insufficient credits"),))
    )
    fake_kie.add_task("known_ok")
    fake_kie.add_task("known_failed", final_status=2)
    known = [veo.task("known_ok"), veo.task("known_failed")]  # finished before the batch
    for handle in known:
        await handle.refresh()
    ids = [
        "later_ok", "now_ok", "denied", "now_ok", "known_failed",
        "later_failed", "known_ok", "now_failed", "later_ok", "denied",
    ]
    # Held here: a batch lets go of the handles its caller did not keep.
    handles = {task_id: veo.task(task_id) for task_id in ids}
    results = await veo.wait_many(ids, return_exceptions=True)
    assert len(results) == len(ids)
    for task_id, outcome in zip(ids, results, strict=True):
        handle = handles[task_id]
        first = results[ids.index(task_id)]
        assert outcome is first, task_id  # a repeat: the very same outcome
        if task_id.endswith("_ok"):
            assert isinstance(outcome, RecordInfo)
            assert outcome.status is TaskStatus.SUCCESS
            assert outcome is handle.record
        elif task_id.endswith("_failed"):
            assert isinstance(outcome, TaskFailedError)
            assert outcome.record is handle.record
        else:
            assert isinstance(outcome, InsufficientCreditsError)
            assert outcome is handle.error
    assert fake_kie.polls("now_ok") == 1
    assert fake_kie.polls("later_ok") > 1
    assert fake_kie.polls("known_ok") == fake_kie.polls("known_failed") == 1  # not asked again
    assert leftover_tasks() == set()


async def test_a_failure_known_before_the_batch_fails_it_without_a_request(
    fake_kie: FakeKie, veo: VeoSession
) -> None:
    """Without return_exceptions, an id already known to have failed raises its
    TaskFailedError before any request, even after new ids; new ids alone that
    fail at their first poll raise too."""
    fake_kie.add_task("known_failed", final_status=2)
    fake_kie.add_task("new_ok")
    fake_kie.add_task("new_failed", final_status=3)
    handle = veo.task("known_failed")
    await handle.refresh()
    requests = fake_kie.total_requests
    with pytest.raises(TaskFailedError) as caught:
        await veo.wait_many(["new_ok", "known_failed"])
    assert caught.value.task_id == "known_failed"
    assert fake_kie.total_requests == requests
    with pytest.raises(TaskFailedError) as caught:
        await veo.wait_many(["new_ok", "new_failed", "new_ok"])
    assert caught.value.task_id == "new_failed"
    assert leftover_tasks() == set()


async def test_as_completed_lets_the_loop_run_while_handing_out_timeouts(
    fake_kie: FakeKie,
) -> None:
    """At the deadline thousands of outcomes are in at once: as_completed hands
    them out with a loop step at least every slice, so a consumer that does not
    await still lets other work run (at 100,000 ids it held the loop 0.2 s)."""
    ids = [f"slow{i}" for i in range(9000)]
    fake_kie.add_tasks(TaskScript(task_id, complete_after=3600) for task_id in ids)
    steps = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal steps
        while not stop.is_set():
            steps += 1
            await asyncio.sleep(0)

    seen_at: list[int] = []  # the ticker's count when each handle came
    async with session_on(fake_kie, concurrency=256) as veo:
        ticking = asyncio.create_task(ticker())
        async for task in veo.as_completed(ids, timeout=2):
            seen_at.append(steps)
            assert isinstance(task.error, TimeoutError)
        stop.set()
        await ticking
    assert len(seen_at) == len(ids)
    longest = max(len(list(run)) for _, run in itertools.groupby(seen_at))
    assert longest <= HANDOUT_SLICE, longest  # never more than a slice without a loop step


@pytest.mark.parametrize("ending", ["deadline", "cancel"])
async def test_letting_go_of_a_batch_starts_no_request_for_its_ids(
    fake_kie: FakeKie, ending: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At a backlogged batch's deadline, or when it is cancelled, each request
    stopped gives back its slot; those slots are granted again only once every
    run is let go of, so the batch's end does not start a poll for id after id
    only to cancel it (at 100,000 ids: 30,000 in a second at a deadline, and a
    cancel unwound in 0.5 s instead of 0.2 s)."""
    ids = [f"backlog{i}" for i in range(6000)]  # several slices
    fake_kie.add_tasks(TaskScript(task_id, complete_after=3600) for task_id in ids)
    polls = 0
    start = PollRunners.start

    def counting(runners: PollRunners, *args: Any) -> PollRequest:
        nonlocal polls
        polls += 1  # one poll started on its granted slot
        return start(runners, *args)

    # Every id due each second: the end finds thousands queued.
    policy = PollPolicy(first_poll=0.0, interval=1.0, jitter=0.0, timeout=None)
    monkeypatch.setattr(PollRunners, "start", counting)
    async with session_on(fake_kie, concurrency=4, policy=policy) as veo:
        if ending == "deadline":
            outcomes = await veo.wait_many(ids, timeout=5, return_exceptions=True)
            assert all(isinstance(outcome, WaitTimeoutError) for outcome in outcomes)
        else:
            batch = asyncio.create_task(veo.wait_many(ids, return_exceptions=True))
            # Cancelled once every id had a poll, with thousands due again.
            # (The loop never idles here: its clock is the real one, and a
            # loaded machine polls fewer ids in a given time.)
            assert await eventually(lambda: polls >= len(ids), within=120)
            batch.cancel()
            with pytest.raises(asyncio.CancelledError):
                await batch
    # Thousands of polls were made while thousands were due (the backlog the
    # end finds; a loaded machine makes fewer in the deadline's 5 s).
    assert polls >= 1000
    never_sent = polls - fake_kie.total_requests
    assert 0 <= never_sent <= 4, never_sent  # one wave (concurrency 4) at the most
    assert leftover_tasks() == set()


@pytest.mark.parametrize("seen_by", ["last-look", "refresh"])
async def test_no_polling_is_left_after_a_batch_whose_result_came_from_a_refresh(
    seen_by: str,
) -> None:
    """A terminal record a refresh brings (the batch's own last look, or a
    user's task.refresh()) ends the handle's poll run: nothing polls after
    the batch returns. The run used to stay queued, polling for nobody (and
    retrying 5xx answers for hours)."""
    kie = FakeKie()
    kie.add_task(TaskScript("veo_a", complete_after=5, params={"model": "veo3_fast"}))
    async with VeoSession(
        "test-key", transport=kie.transport(), policy=AdaptivePolicy(jitter=0.0)
    ) as veo:
        if seen_by == "last-look":
            [record] = await veo.wait_many(["veo_a"], timeout=20)
        else:
            batch = asyncio.ensure_future(veo.wait_many(["veo_a"], timeout=600))
            await asyncio.sleep(10)
            await veo.task("veo_a").refresh()
            [record] = await batch
        assert record.status is TaskStatus.SUCCESS
        assert not veo.task("veo_a").polling
        polls = kie.polls("veo_a")
        await asyncio.sleep(300)
        assert kie.polls("veo_a") == polls


class _HoldingLateLooks:
    """Holds the polls of one id made after ``after`` seconds for 30 s."""

    def __init__(self, kie: FakeKie, task_id: str, after: float) -> None:
        self.inner = kie.transport()
        self.task_id = task_id
        self.after = after
        self.start = asyncio.get_running_loop().time()

    async def send(self, request: HttpRequest) -> RawResponse:
        """The inner answer; late for the held id's late polls."""
        late = asyncio.get_running_loop().time() - self.start > self.after
        if late and (request.params or {}).get("taskId") == self.task_id:
            await asyncio.sleep(30)
        return await self.inner.send(request)

    async def aclose(self) -> None:
        """Close the inner transport."""
        await self.inner.aclose()


async def test_a_deadline_passing_while_the_consumer_gets_an_outcome_still_stops_polling(
    fake_kie: FakeKie,
) -> None:
    """The deadline passes while the consumer is waiting in the iterator but
    comes back with an outcome (its last look answered late): the rest still
    stop polling at the deadline, though nobody iterates after that."""
    fake_kie.add_task("X", complete_after=3600)
    fake_kie.add_task("Y", complete_after=9.2)  # done at the last look
    transport = _HoldingLateLooks(fake_kie, "X", after=9.0)
    policy = PollPolicy(first_poll=0.0, interval=4.0, factor=1.0, jitter=0.0, timeout=10.0)
    async with VeoSession("test-key", transport=transport, policy=policy) as veo:
        completed = veo.as_completed(["X", "Y"], timeout=10)
        first = await anext(completed)
        assert first.task_id == "Y"
        polls = fake_kie.polls("X")
        await asyncio.sleep(120)  # busy; the iterator kept, not iterated
        assert fake_kie.polls("X") == polls
        assert isinstance(veo.task("X").exception(), WaitTimeoutError)
        assert leftover_tasks() == set()
        await completed.aclose()


async def test_a_cancelled_close_during_the_deadline_still_lets_go_of_every_run(
    fake_kie: FakeKie,
) -> None:
    """The iterator closed in the step after its deadline began letting go, and
    that close cancelled: every run is let go of all the same."""
    for i in range(3):
        fake_kie.add_task(f"slow{i}", complete_after=3600)
    fake_kie.add_task("quick")
    policy = PollPolicy(first_poll=0.0, interval=1.0, factor=1.0, jitter=0.0, timeout=None)
    loop = asyncio.get_running_loop()
    async with session_on(fake_kie, policy=policy) as veo:
        completed = veo.as_completed(["quick", "slow0", "slow1", "slow2"], timeout=10)
        start = loop.time()
        await anext(completed)
        await asyncio.sleep(10 - 0.002 - (loop.time() - start))
        await deadline_letting_go(tries=10_000)  # the step after the deadline fired
        me = asyncio.current_task()
        assert me is not None
        loop.call_soon(me.cancel)  # an outer cancel, one step later
        with pytest.raises(asyncio.CancelledError):
            await completed.aclose()
        # A poll already on its way when the close began may still land (a
        # loaded machine stretches the virtual clock, and the runs poll every
        # 1 s, the deadline's second among them): counted from half a second
        # on, a run not let go still shows, polling every second.
        await asyncio.sleep(0.5)
        before = fake_kie.total_requests
        await asyncio.sleep(100)
        assert fake_kie.total_requests == before
        assert veo.stats.in_flight == 0


async def test_closing_the_session_waits_for_a_deadline_letting_go(fake_kie: FakeKie) -> None:
    """The session closed while a kept iterator's deadline lets go of thousands
    of runs: aclose() returns with nothing of ours left running."""
    slow = [f"slow{i}" for i in range(6000)]
    for task_id in slow:
        fake_kie.add_task(task_id, complete_after=3600)
    fake_kie.add_task("quick")
    policy = PollPolicy(first_poll=0.0, interval=1.0, factor=1.0, jitter=0.0, timeout=None)
    veo = session_on(fake_kie, policy=policy)
    completed = veo.as_completed(["quick", *slow], timeout=10)
    try:
        assert (await anext(completed)).task_id == "quick"
        await deadline_letting_go(step=0.001, tries=20_000)
        await veo.aclose()
        assert leftover_tasks() == set()
    finally:
        await completed.aclose()
        await veo.aclose()


@pytest.mark.parametrize("steps", range(6))
async def test_a_batch_raises_the_outcome_it_chose_at_its_deadline(steps: int) -> None:
    """wait_many without return_exceptions raises the error it chose at its
    deadline, though another wait's poll of the id answers success while the
    batch lets go of its runs (it failed on an assert, asking again)."""
    kie = FakeKie(api_key=API_KEY)
    kie.add_task("veo_a")  # finished already
    policy = PollPolicy(first_poll=0, interval=1, jitter=0)
    async with VeoSession(API_KEY, transport=kie.transport(), policy=policy) as veo:
        other = asyncio.ensure_future(veo.task("veo_a").wait(timeout=10))
        for _ in range(steps):
            await asyncio.sleep(0)
        try:
            outcome: object = await veo.wait_many(["veo_a"], timeout=0)
        except WaitTimeoutError as exc:
            outcome = exc
        assert (await other).status is TaskStatus.SUCCESS
    if isinstance(outcome, WaitTimeoutError):
        assert outcome.task_id == "veo_a"
    else:
        assert [record.status for record in outcome] == [TaskStatus.SUCCESS]  # type: ignore[attr-defined]


class _PollLimit:
    """A public Transport: the simulator's, behind a service that answers 429
    (no Retry-After) to every record-info request past ``limit`` arrivals in
    the last second; each answer takes ``latency`` seconds."""

    def __init__(self, kie: FakeKie, limit: int, latency: float) -> None:
        self.inner = kie.transport()
        self.limit = limit
        self.latency = latency
        self.arrivals: list[float] = []
        self.refused = 0

    async def send(self, request: HttpRequest) -> RawResponse:
        now = asyncio.get_running_loop().time()
        self.arrivals.append(now)
        await asyncio.sleep(self.latency)
        recent = sum(1 for t in self.arrivals[-self.limit - 1 :] if t > now - 1.0)
        if recent > self.limit:
            self.refused += 1
            body = b'{"code": 429, "msg": "Too many requests", "data": null}'
            return RawResponse(200, {"Content-Type": "application/json"}, body)
        answer: RawResponse = await self.inner.send(request)
        return answer

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_a_session_settles_under_a_poll_limit_it_is_not_told_of() -> None:
    """A service that limits polls to 50 a second, met by 64 requests in
    flight at 0.1 s each: the window, after each 429, grows back one per
    answer only to half the load that met it, then one per round trip, and
    the starts keep to a rate learned from the 429 (half the starts a second
    before it, growing back by 10 % a second). With the window alone growing
    back one per answer (64 in six round trips) 51 % of the requests were
    429s, with the window's ceiling alone 23 %, now about 9 %; every wait
    still ends with its record."""
    from ._virtual import run_virtual

    async def main() -> tuple[int, int, list[Any]]:
        kie = FakeKie(seed=3)
        ids = [f"t{i}" for i in range(600)]
        kie.add_tasks(TaskScript(i, complete_after=20.0 + (n % 40)) for n, i in enumerate(ids))
        transport = _PollLimit(kie, limit=50, latency=0.1)
        policy = PollPolicy(interval=2.0, factor=1.0, max_interval=2.0, jitter=0.1, timeout=None)
        async with VeoSession(API_KEY, transport=transport, concurrency=64, policy=policy) as veo:
            results = await veo.wait_many(ids, return_exceptions=True)
        return len(transport.arrivals), transport.refused, results

    sent, refused, results = run_virtual(main)
    assert all(isinstance(r, RecordInfo) for r in results)
    assert refused / sent < 0.12, (refused, sent)
