"""Batches leave no reference cycles behind, and large ones set up without stalling.

A batch of 100,000 ids must not lean on the cyclic garbage collector: every
object of ours is freed by reference counting once the batch ends (so freezing
the collector's view of a big batch's set-up leaks nothing), and set-up yields
to the event loop between chunks.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import traceback
import weakref
from collections.abc import Awaitable, Callable, Iterator
from contextlib import aclosing
from pathlib import Path

import pytest

from veo_async import (
    PollPolicy,
    RecordNotFoundError,
    ServerError,
    TaskFailedError,
    VeoError,
    VeoSession,
    VeoTask,
    WaitTimeoutError,
    _batch,
)
from veo_async._batch import _SLICE as SETUP_CHUNK
from veo_async._id_checks import CHECK_SLICE
from veo_async.store import SQLiteStore
from veo_async.testing import FakeKie, Fault, TaskScript

from .conftest import eventually

IDS = [f"veo_task_gc_{n:05d}" for n in range(1000)]


@pytest.fixture
def saved_garbage() -> Iterator[list[object]]:
    """gc.DEBUG_SAVEALL for the test: what a collection finds lands in the list.

    pytest drops the last failed test's traceback (``sys.last_traceback``)
    as the next test is called, after its fixtures: its frames (that test's
    session and simulator) would become garbage inside this test and fail it
    too. Dropped here first, so one failure does not cascade.
    """
    for name in ("last_exc", "last_type", "last_value", "last_traceback"):
        if hasattr(sys, name):
            delattr(sys, name)
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    gc.garbage.clear()
    try:
        yield gc.garbage
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


def ours(garbage: list[object]) -> list[str]:
    """The veo_async objects among what the collector found unreachable."""
    return sorted(
        {type(o).__qualname__ for o in garbage if type(o).__module__.startswith("veo_async")}
    )


@pytest.mark.parametrize("how", ["wait", "on_update"])
async def test_a_wait_timed_out_with_a_poll_in_flight_is_freed_without_the_collector(
    how: str, fake_kie: FakeKie, veo: VeoSession, saved_garbage: list[object]
) -> None:
    """A wait whose deadline comes while its poll is in flight (a slow
    answer): once the handle and the error are let go of, nothing of ours is
    left in a cycle (the timeout, kept as the handle's error, held the
    frames it was raised through, and they the handle: seen rarely under
    load, every time with a slow poll)."""
    fake_kie.add_tasks([TaskScript(IDS[0], complete_after=1e6, faults=[Fault.slow(0.5)] * 50)])
    task = veo.task(IDS[0])
    seen: list[object] = []
    with pytest.raises(WaitTimeoutError) as caught:
        await task.wait(timeout=0.3, on_update=seen.append if how == "on_update" else None)
    assert caught.value is task.error
    assert "_task.py" in "".join(traceback.format_tb(caught.value.__traceback__))
    del task, caught, seen
    gc.collect()
    assert ours(saved_garbage) == []


async def test_a_finished_batch_is_freed_without_the_collector(
    fake_kie: FakeKie, veo: VeoSession, saved_garbage: list[object]
) -> None:
    """After wait_many over 1,000 finished ids, a collection finds nothing of ours."""
    fake_kie.add_tasks([TaskScript(task_id, complete_after=0.0) for task_id in IDS])
    outcomes = await veo.wait_many(IDS, return_exceptions=True)
    assert len(outcomes) == len(IDS)
    del outcomes
    gc.collect()
    assert ours(saved_garbage) == []


async def test_a_timed_out_batch_is_freed_without_the_collector(
    fake_kie: FakeKie, veo: VeoSession, saved_garbage: list[object]
) -> None:
    """Timeouts of 1,000 ids (and the runs they stop) leave no cycle of ours."""
    fake_kie.add_tasks([TaskScript(task_id, complete_after=1e6) for task_id in IDS])
    outcomes = await veo.wait_many(IDS, timeout=0.2, return_exceptions=True)
    assert all(isinstance(outcome, WaitTimeoutError) for outcome in outcomes)
    del outcomes
    gc.collect()
    assert ours(saved_garbage) == []


async def test_a_batch_with_failed_tasks_is_freed_without_the_collector(
    fake_kie: FakeKie, veo: VeoSession, saved_garbage: list[object]
) -> None:
    """A wait_many whose outcomes include failed tasks leaves no cycle of ours:
    a TaskFailedError raised to be collected held the frames of the batch
    (the dict of every outcome, itself in it), so 100,000 records waited for
    a full collection after the caller dropped them."""
    failing = IDS[:100]
    fake_kie.add_tasks(
        [TaskScript(task_id, complete_after=0.0, final_status=3 if task_id in failing else 1)
         for task_id in IDS]
    )
    outcomes = await veo.wait_many(IDS, return_exceptions=True)
    failures = [outcome for outcome in outcomes if isinstance(outcome, TaskFailedError)]
    assert len(failures) == len(failing)
    assert all(failure.__traceback__ is None for failure in failures)
    del outcomes, failures
    gc.collect()
    assert ours(saved_garbage) == []


@pytest.mark.parametrize("ending", ["failed", "timed out", "failed before"])
async def test_a_batch_that_raises_is_freed_without_the_collector(
    ending: str, fake_kie: FakeKie, veo: VeoSession, saved_garbage: list[object]
) -> None:
    """wait_many without return_exceptions raising its first failure or
    timeout (or a failure known before any request) leaves no cycle of ours:
    the raised error's traceback held a frame whose locals held the error
    (and the tracker, every outcome and record, until a full collection)."""
    last = IDS[-1]
    final = {last: 3} if ending != "timed out" else {}
    fake_kie.add_tasks(
        [
            TaskScript(
                task_id,
                complete_after=1e6 if ending == "timed out" and task_id == last else 0.0,
                final_status=final.get(task_id, 1),
            )
            for task_id in IDS
        ]
    )
    if ending == "failed before":  # (a batch that raises nothing leaves nothing)
        handle = veo.task(last)
        [outcome] = await veo.wait_many([last], return_exceptions=True)
        assert isinstance(outcome, TaskFailedError)
        assert handle.done()  # (kept: the next batch finds it failed, and sends nothing)
        del outcome
    # A failure ends the batch when the last id fails, long before its
    # deadline; a timeout ends it at 0.5 s, with whichever ids a loaded
    # machine had not polled yet (the first of them is raised).
    with pytest.raises((TaskFailedError, WaitTimeoutError)) as caught:
        await veo.wait_many(IDS, timeout=0.5 if ending == "timed out" else 60.0)
    if ending == "timed out":
        assert isinstance(caught.value, WaitTimeoutError)
    else:
        assert isinstance(caught.value, TaskFailedError)
        assert caught.value.task_id == last
    del caught
    gc.collect()
    assert ours(saved_garbage) == []


async def test_a_wait_is_freed_without_the_collector(
    fake_kie: FakeKie, veo: VeoSession, saved_garbage: list[object]
) -> None:
    """``await task`` leaves no cycle: the waiter's listener and its
    subscription let go of each other when the wait ends."""
    fake_kie.add_tasks([TaskScript(IDS[0], complete_after=0.5)])
    task = veo.task(IDS[0])
    assert (await task).task_id == IDS[0]
    assert task.exception() is None
    del task
    gc.collect()
    assert ours(saved_garbage) == []


async def test_as_completed_is_freed_without_the_collector(
    fake_kie: FakeKie, veo: VeoSession, saved_garbage: list[object]
) -> None:
    """An as_completed over 1,000 finished ids leaves no cycle of ours."""
    fake_kie.add_tasks([TaskScript(task_id, complete_after=0.0) for task_id in IDS])
    async with aclosing(veo.as_completed(IDS)) as finished:
        seen = [handle.task_id async for handle in finished]
    assert sorted(seen) == IDS
    gc.collect()
    assert ours(saved_garbage) == []


async def test_set_up_lets_the_loop_run_between_chunks(
    fake_kie: FakeKie, veo: VeoSession
) -> None:
    """A batch of several chunks polls its first ids before its last ones are set up."""
    ids = [f"veo_task_chunk_{n:05d}" for n in range(3 * SETUP_CHUNK)]
    fake_kie.add_tasks([TaskScript(task_id, complete_after=0.0) for task_id in ids])
    first, last = veo.task(ids[0]), veo.task(ids[-1])
    batch = asyncio.get_running_loop().create_task(veo.wait_many(ids))
    for _ in range(100):  # loop turns until the first chunk is followed
        if first.polling or first.done():
            break
        await asyncio.sleep(0)
    assert first.polling or first.done()
    assert not last.polling  # its chunk is not set up yet
    assert not last.done()
    outcomes = await batch
    assert len(outcomes) == len(ids)


class LoopSteps:
    """Counts the event loop's steps while it runs (a task that only yields)."""

    def __init__(self) -> None:
        self.count = 0
        self._task = asyncio.get_running_loop().create_task(self._count())

    async def _count(self) -> None:
        while True:
            self.count += 1
            await asyncio.sleep(0)

    async def stop(self) -> int:
        """Stop counting; the steps seen."""
        self._task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self._task
        return self.count


@pytest.mark.parametrize("store", [False, True], ids=["session", "store"])
async def test_checking_many_ids_lets_the_loop_run(
    fake_kie: FakeKie, make_veo: Callable[..., VeoSession], tmp_path: Path, store: bool
) -> None:
    """The ids of a large batch are checked over loop steps (100,000 took
    20-40 ms, and a session with a store checks them twice), and a bad one
    is still refused, by its position, before any request or write."""
    ids = [f"veo_task_check_{n:05d}" for n in range(3 * CHECK_SLICE)]
    ids[-1] = "veo task"
    db = tmp_path / "tasks.db"
    veo = make_veo(store=SQLiteStore(db)) if store else make_veo()
    steps = LoopSteps()
    with pytest.raises(ValueError, match=rf"task_ids\[{len(ids) - 1}\]: .*whitespace"):
        await veo.wait_many(ids)
    assert await steps.stop() >= 2  # a step between each two slices
    assert fake_kie.requests == []
    if store:
        async with SQLiteStore(db) as opened:
            assert await opened.list_tasks() == []


async def test_a_store_checks_many_ids_over_loop_steps(tmp_path: Path) -> None:
    """``SQLiteStore.track`` checks a large list over loop steps too, and
    writes nothing when one id is bad."""
    ids = [f"veo_task_store_{n:05d}" for n in range(3 * CHECK_SLICE)]
    ids[-2] = ""
    async with SQLiteStore(tmp_path / "tasks.db") as store:
        steps = LoopSteps()
        with pytest.raises(ValueError, match=rf"task_ids\[{len(ids) - 2}\]: .*empty"):
            await store.track(ids)
        assert await steps.stop() >= 2  # a step between each two slices
        assert await store.list_tasks() == []


#: Every 0.25 s: four rounds of polls in the second the batch lives, not twenty.
QUARTER_SECONDS = PollPolicy(
    first_poll=0.0, interval=0.25, factor=1.0, max_interval=0.25, jitter=0.0, timeout=10.0
)


async def test_a_large_batch_freezes_while_live_and_unfreezes_after(
    fake_kie: FakeKie, make_veo: Callable[..., VeoSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large batch keeps the collector's view frozen while it runs, and puts it back."""
    monkeypatch.setattr(_batch, "FREEZE_AT", 100)  # 1,000 ids count as large here
    veo = make_veo(policy=QUARTER_SECONDS)
    callbacks = list(gc.callbacks)
    # Not 0 everywhere: Python 3.12 starts with a few hundred objects frozen.
    frozen_before = gc.get_freeze_count()
    fake_kie.add_tasks([TaskScript(task_id, complete_after=1.0) for task_id in IDS])
    batch = asyncio.get_running_loop().create_task(veo.wait_many(IDS))
    await asyncio.sleep(0.5)  # set up, still polling
    frozen_during = gc.get_freeze_count()
    outcomes = await batch
    assert len(outcomes) == len(IDS)
    assert frozen_during > frozen_before + 1000  # the batch's handles at least
    assert gc.get_freeze_count() <= frozen_before
    assert gc.callbacks == callbacks


async def test_a_large_as_completed_left_unfinished_lets_the_collector_go_at_the_close(
    fake_kie: FakeKie, make_veo: Callable[..., VeoSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large ``as_completed`` left after its first task (``break`` without
    ``aclosing``: the loop finalises the generator later, or never if the
    loop closes first) no longer holds the collector frozen once its
    session is closed: the freeze and the collection hook stayed for the
    process, and a cycle alive at any later full collection was never freed."""
    monkeypatch.setattr(_batch, "FREEZE_AT", 100)  # 1,000 ids count as large here
    veo = make_veo(policy=QUARTER_SECONDS)
    callbacks = list(gc.callbacks)
    frozen_before = gc.get_freeze_count()
    fake_kie.add_tasks([TaskScript(task_id, complete_after=1.0) for task_id in IDS])
    completions = veo.as_completed(IDS)
    first = await completions.__anext__()  # then left, unfinished
    assert first.task_id in IDS
    assert gc.get_freeze_count() > frozen_before
    await veo.aclose()
    assert gc.get_freeze_count() <= frozen_before
    assert gc.callbacks == callbacks
    await completions.aclose()  # its finalisation later changes nothing
    assert gc.get_freeze_count() <= frozen_before
    assert gc.callbacks == callbacks


async def test_a_large_batch_keeps_the_applications_own_freeze(
    fake_kie: FakeKie, make_veo: Callable[..., VeoSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An application that froze objects itself (a pre-fork server, say)
    still has them frozen after a large batch: the batch does not unfreeze."""
    monkeypatch.setattr(_batch, "FREEZE_AT", 100)
    veo = make_veo(policy=QUARTER_SECONDS)
    fake_kie.add_tasks([TaskScript(task_id, complete_after=0.5) for task_id in IDS])
    kept = [[n] for n in range(1000)]  # the application's own long-lived objects
    gc.freeze()
    try:
        frozen_by_the_application = gc.get_freeze_count()
        assert len(await veo.wait_many(IDS)) == len(IDS)
        assert gc.get_freeze_count() >= frozen_by_the_application
    finally:
        gc.unfreeze()
    assert len(kept) == 1000


@pytest.fixture
def collections_asked(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The generation of every ``gc.collect`` call the test makes happen."""
    asked: list[int] = []
    collect = gc.collect

    def counted(generation: int = 2) -> int:
        asked.append(generation)
        return collect(generation)

    monkeypatch.setattr(gc, "collect", counted)
    return asked


async def _first_handles(veo: VeoSession, ids: list[str], wanted: int) -> int:
    """Iterate ``as_completed`` over ``ids`` and leave after ``wanted`` handles."""
    taken = 0
    async with aclosing(veo.as_completed(ids)) as finished:
        async for _handle in finished:
            taken += 1
            if taken == wanted:
                break
    return taken


@pytest.mark.parametrize("ending", ["done", "cancelled", "as_completed left early"])
async def test_a_large_batch_collects_on_a_clock_while_it_lives(
    fake_kie: FakeKie,
    make_veo: Callable[..., VeoSession],
    monkeypatch: pytest.MonkeyPatch,
    collections_asked: list[int],
    ending: str,
) -> None:
    """While a large batch lives the young generations are collected every
    tenth of a second and everything every tenth time (at 100,000 ids the
    young generation had grown to 40,000 objects unchecked); once it ends,
    done, cancelled or left early, no more."""
    monkeypatch.setattr(_batch, "FREEZE_AT", 100)  # 1,000 ids count as large here
    veo = make_veo(policy=QUARTER_SECONDS)
    # (Cancelled, the batch must still be running when it has had 20 ticks.)
    ends = 3600.0 if ending == "cancelled" else 3.0
    fake_kie.add_tasks(
        [TaskScript(task_id, complete_after=ends + n / 1000) for n, task_id in enumerate(IDS)]
    )
    if ending == "as_completed left early":
        assert await _first_handles(veo, IDS, 50) == 50  # the first after 3 s
    else:
        batch = asyncio.get_running_loop().create_task(veo.wait_many(IDS))
        if ending == "cancelled":
            # 20 ticks (2 s, more on a busy loop: each tick slips a little).
            every = _batch._FULL_EVERY
            assert await eventually(lambda: len(collections_asked) >= 2 * every, within=60)
            batch.cancel()
            with pytest.raises(asyncio.CancelledError):
                await batch
        else:
            assert len(await batch) == len(IDS)
    during = list(collections_asked)
    await asyncio.sleep(2.0)
    assert collections_asked == during  # the clock stopped with the batch
    every = _batch._FULL_EVERY
    assert len(during) >= 20
    assert during[: 2 * every] == 2 * ([1] * (every - 1) + [2])


async def test_a_large_batch_leaves_a_disabled_collector_alone(
    fake_kie: FakeKie,
    make_veo: Callable[..., VeoSession],
    monkeypatch: pytest.MonkeyPatch,
    collections_asked: list[int],
) -> None:
    """An application that disabled the collector keeps it so: a large batch
    collects nothing on its clock."""
    monkeypatch.setattr(_batch, "FREEZE_AT", 100)
    veo = make_veo(policy=QUARTER_SECONDS)
    fake_kie.add_tasks([TaskScript(task_id, complete_after=1.0) for task_id in IDS])
    gc.disable()
    try:
        assert len(await veo.wait_many(IDS)) == len(IDS)
    finally:
        gc.enable()
    assert collections_asked == []


def assert_holds_no_frame_of_the_poll(error: BaseException) -> None:
    """Neither the error nor what it chains to holds a frame of the poll
    that raised it. (Handed out by ``wait_many``, an outcome may carry the
    frames of the batch and the handle that re-raised it to collect it.)"""
    current: BaseException | None = error
    while current is not None:
        files = [frame.f_code.co_filename for frame, _ in traceback.walk_tb(current.__traceback__)]
        polling = ("_requester.py", "_protocol.py", "_convert.py", "_http.py")
        assert not [name for name in files if name.endswith(polling)], files
        current = current.__cause__ or current.__context__


async def test_failed_polls_leave_no_cycle_and_keep_no_frames(
    fake_kie: FakeKie, make_veo: Callable[..., VeoSession], saved_garbage: list[object]
) -> None:
    """Polls that fail (ids the service does not know, answers of 500, a 400)
    leave nothing for the collector, and the errors a wait keeps (its
    ``last_error``, for its timeout's message, or the one that ended it) hold
    no frame: a frame holds its caller's, their locals and a closure over the
    previous record, and at 100,000 ids those filled every collection.
    """
    unknown = [f"veo_task_unknown_{n:03d}" for n in range(100)]
    erring = [f"veo_task_erring_{n:03d}" for n in range(100)]
    fake_kie.add_tasks([TaskScript(task_id, complete_after=1e6) for task_id in erring])
    veo = make_veo(policy=QUARTER_SECONDS)
    fake_kie.inject(Fault.server_error(), count=100_000)
    erred = await veo.wait_many(erring, timeout=2.0, return_exceptions=True)
    fake_kie.clear_injected()
    not_found = await veo.wait_many(unknown, timeout=2.0, return_exceptions=True)
    for outcomes, kind in ((erred, ServerError), (not_found, RecordNotFoundError)):
        for outcome in outcomes:
            assert isinstance(outcome, WaitTimeoutError)
            assert isinstance(outcome.last_error, kind)
            assert_holds_no_frame_of_the_poll(outcome.last_error)
    fake_kie.inject(Fault.body_code(400, "bad request"), count=len(erring))
    ended = await veo.wait_many(erring, timeout=2.0, return_exceptions=True)
    for outcome in ended:
        assert isinstance(outcome, VeoError)
        assert not isinstance(outcome, WaitTimeoutError)
        assert_holds_no_frame_of_the_poll(outcome)
    gc.collect()
    kinds = {type(o).__name__ for o in saved_garbage}
    assert not kinds & {"frame", "traceback", "Task", "coroutine"}, kinds
    assert ours(saved_garbage) == []


async def test_a_finished_batch_lets_go_of_its_handles_a_slice_per_loop_step(
    fake_kie: FakeKie, veo: VeoSession
) -> None:
    """A batch holds the last reference to handles its caller did not keep:
    once it ends they are freed a slice per loop step, not all in one (100,000
    handles with their records took 0.17 s)."""
    ids = [f"veo_task_free_{n:05d}" for n in range(4 * SETUP_CHUNK)]
    fake_kie.add_tasks([TaskScript(task_id, complete_after=0.0) for task_id in ids])
    refs: list[weakref.ref[VeoTask]] = []
    freed_per_step: list[int] = []
    done = asyncio.Event()

    async def watch() -> None:
        alive = 0
        while not done.is_set():
            now_alive = sum(ref() is not None for ref in refs)
            freed_per_step.append(max(0, alive - now_alive))
            alive = now_alive
            await asyncio.sleep(0)

    watcher = asyncio.create_task(watch())
    async with aclosing(veo.as_completed(ids)) as finished:
        async for handle in finished:
            refs.append(weakref.ref(handle))
    del handle
    for _ in range(10):  # the last slices go after the batch
        await asyncio.sleep(0)
    done.set()
    await watcher
    assert len(refs) == len(ids)
    assert all(ref() is None for ref in refs)
    assert max(freed_per_step) <= SETUP_CHUNK + 1  # (+1: the loop variable above)


@pytest.mark.parametrize("how", ["wait_many", "as_completed"])
async def test_a_large_batch_leaves_no_entries_of_its_handles_behind(
    how: str, fake_kie: FakeKie, veo: VeoSession
) -> None:
    """The session's map of handles (weak references, the dead ones dropped
    in bulk when it doubles) kept an entry per id of a large batch after its
    handles were freed, about 170 bytes each, until as many new ids came
    again: 85 MB after a batch of 500,000. A batch that was half the map or
    more has the dead entries dropped once its handles are let go of."""
    ids = [f"veo_task_map_{n:05d}" for n in range(3 * SETUP_CHUNK)]
    fake_kie.add_tasks([TaskScript(task_id, complete_after=0.0) for task_id in ids])
    entries = veo._registry._handles  # (the map itself: what this is about)
    if how == "wait_many":
        assert len(await veo.wait_many(ids)) == len(ids)
    else:
        async with aclosing(veo.as_completed(ids)) as finished:
            assert len([task.task_id async for task in finished]) == len(ids)
    assert len(entries) >= len(ids)  # every entry is still there as it ends
    assert await eventually(lambda: len(entries) == 0), len(entries)
    small = ids[:10]
    await veo.wait_many(small)  # a small batch leaves its entries to the next doubling
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(entries) == len(small)


@pytest.mark.parametrize(
    ("how", "ending"),
    [
        (how, ending)
        for how in ("wait", "await", "on_update")
        for ending in ("failed", "timed out", "not found")
        if (how, ending) != ("await", "timed out")  # (await has the policy's deadline)
    ],
)
async def test_a_failed_wait_is_freed_without_the_collector(
    ending: str, how: str, fake_kie: FakeKie, veo: VeoSession, saved_garbage: list[object]
) -> None:
    """A wait that raises (a failed task, its deadline, a run's error) leaves
    no cycle of ours once the handle and the error are let go of: the
    handle keeps its error, and a frame of the error's traceback that held
    the handle would make a cycle (handle, record, error, frames) that only
    the collector frees."""
    if ending != "not found":
        fake_kie.add_tasks(
            [TaskScript(IDS[0], complete_after=0.0 if ending == "failed" else 1e6, final_status=3)]
        )
    limit = 0.3 if ending == "timed out" else 10.0  # (not found: after the 0.3 s grace)
    task = veo.task(IDS[0])
    seen: list[object] = []
    waiting: Awaitable[object] = (
        task
        if how == "await"
        else task.wait(timeout=limit, on_update=seen.append if how == "on_update" else None)
    )
    with pytest.raises(VeoError) as caught:
        await waiting
    assert type(caught.value) is {
        "failed": TaskFailedError,
        "timed out": WaitTimeoutError,
        "not found": RecordNotFoundError,
    }[ending]
    assert caught.value is task.error
    # The error still says where it came from, line by line.
    assert "_task.py" in "".join(traceback.format_tb(caught.value.__traceback__))
    del task, caught, seen, waiting
    gc.collect()
    assert ours(saved_garbage) == []
