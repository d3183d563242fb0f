"""Pins on durable tracking (``_durable``) and on where its events are
reported, that mutation testing of the durable layer found no test holding:
each test says which behaviour it pins.

The simulator runs in process; SQLite runs in aiosqlite's thread, so these
tests use a real event loop clock (``real_time``), as the other durable
tests do.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest

import veo_async._durable as durable_module
from veo_async import (
    AuthenticationError,
    NotFoundError,
    SessionClosedError,
    SQLiteStore,
    StoreError,
    StoreLockedError,
    VeoSession,
)
from veo_async.events import Event, RequestStarted
from veo_async.models import RecordInfo
from veo_async.testing import FakeKie, Fault

from .conftest import eventually, leftover_tasks, session_on
from .test_durable import db, durable, kie, store_at, stored
from .test_durable_batch import SingleCalls

pytestmark = pytest.mark.real_time
__all__ = ["db", "kie"]  # the fixtures


class _FailingOnce(SQLiteStore):
    """A SQLiteStore whose first batch of write-behind notes is refused
    (a full disk for a moment): the next batches are taken."""

    failed = False

    def write_behind(
        self,
        seen: Iterable[tuple[str, float]] = (),
        terminal: Iterable[tuple[str, RecordInfo, float]] = (),
        delivered: Iterable[tuple[str, float]] = (),
    ) -> None:
        if not self.failed:
            self.failed = True
            raise StoreError("disk full for a moment", path=str(self.path))
        super().write_behind(seen, terminal, delivered)


class _AckFailingOnce(SQLiteStore):
    """A SQLiteStore whose first ack is refused (a full disk for a moment)."""

    refused = False

    async def ack(self, task_id: str) -> None:
        if not self.refused:
            self.refused = True
            raise StoreError("disk full for a moment", path=str(self.path))
        await super().ack(task_id)


async def test_a_queued_result_acknowledged_elsewhere_is_not_yielded_by_its_iteration(
    kie: FakeKie, db: Path
) -> None:
    """An iteration of completed() holds two stored results and has yielded
    the first; the second, still queued in it, is acknowledged through its
    handle: the iteration ends without yielding it (the ack takes it out of
    the queue, not only out of what the iteration holds)."""
    kie.add_tasks(["veo_a", "veo_b"])
    async with durable(kie, db) as veo:
        await veo.wait_many(["veo_a", "veo_b"])
        results = veo.completed()
        first = await results.__anext__()
        other = "veo_b" if first.task_id == "veo_a" else "veo_a"
        await veo.task(other).ack()
        await first.ack()
        rest = [task.task_id async for task in results]
        assert rest == []
        assert [task.task_id async for task in veo.completed()] == []


async def test_a_result_let_go_of_while_queued_in_another_iteration_is_yielded_there_once(
    kie: FakeKie, db: Path
) -> None:
    """Two completed() iterations hold two stored results; the second one
    takes the result still queued in the first, then ends without
    acknowledging it: the first iteration yields it once (it is handed back
    to an iteration that has it queued already, and is not queued twice)."""
    kie.add_tasks(["veo_a", "veo_b"])
    async with durable(kie, db) as veo:
        await veo.wait_many(["veo_a", "veo_b"])
        first = veo.completed()
        held = await first.__anext__()
        second = veo.completed()
        taken = await second.__anext__()
        assert taken.task_id != held.task_id
        await second.aclose()  # without an ack: handed to the first
        await held.ack()
        rest = [task.task_id async for task in first]
        assert rest == [taken.task_id]


async def test_completed_raises_the_first_error_that_stopped_it_not_a_later_one(
    kie: FakeKie, db: Path
) -> None:
    """An iteration of completed() whose followed task stops polling with an
    error (a 404: no answer about the task) while its consumer holds a result
    raises that error at its next step, even if the session closed meanwhile
    (the first error told ends it; the close does not take its place)."""
    kie.add_task("veo_done")
    kie.add_task("veo_bad", complete_after=60, faults=[Fault.body_code(404, "no route", 404)])
    veo = durable(kie, db)
    async with veo:
        await veo.wait_many(["veo_done"])
        [bad] = await veo.track(["veo_bad"])
        results = veo.completed()
        first = await results.__anext__()
        assert first.task_id == "veo_done"
        assert await eventually(lambda: isinstance(bad.error, NotFoundError))
    assert veo.closed
    with pytest.raises(NotFoundError):
        await results.__anext__()
    await results.aclose()


async def test_leaving_completed_ends_the_poll_it_had_in_flight_before_returning(
    kie: FakeKie, db: Path
) -> None:
    """An iteration of completed() follows an unfinished stored task whose
    poll is in flight (a slow answer); cancelled there, the iteration has
    ended that request by the time its cancellation is seen: no request in
    flight, no poll of veo_async's left running (the store's writer is
    the session's)."""
    kie.add_task("veo_slow", complete_after=60, faults=[Fault.slow(30.0)])
    async with durable(kie, db) as veo:
        await veo.track(["veo_slow"])

        async def consume() -> None:
            async for _task in veo.completed():
                pass

        consumer = asyncio.create_task(consume())
        assert await eventually(lambda: veo.stats.in_flight == 1)
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)
        assert veo.stats.in_flight == 0
        running = {task.get_name() for task in leftover_tasks()}
        assert {name for name in running if not name.startswith("veo_async store")} == set()


async def test_a_store_a_session_failed_to_open_is_not_held_by_that_session(
    kie: FakeKie, db: Path
) -> None:
    """A session used without entering fails to open its store (another
    opener holds the file): that session, still open, does not hold the
    store object, so another session may open and use it once the file is
    free (it was refused as "already in use by another open VeoSession")."""
    kie.add_task("veo_1")
    store = store_at(db)
    first = session_on(kie, store=store)
    try:
        async with SQLiteStore(db):
            with pytest.raises(StoreLockedError):
                await first.track(["veo_1"])
        async with session_on(kie, store=store) as second:
            await second.wait_many(["veo_1"])
            assert [task.task_id async for task in second.completed()] == ["veo_1"]
    finally:
        await first.aclose()


async def test_a_session_closes_its_store_even_if_it_never_opened_it(
    kie: FakeKie, db: Path
) -> None:
    """The session owns its store: closed without ever using it (entered
    or not), it closes the store object all the same."""
    unused = durable(kie, db)
    await unused.aclose()
    assert unused.store is not None
    assert unused.store.closed


async def test_a_finished_handle_handed_to_a_running_completed_is_not_polled_again(
    kie: FakeKie, db: Path
) -> None:
    """A running completed(follow=True) is handed (by veo.task) the handle of
    a task whose outcome the session knows, a result another iteration holds:
    it takes the outcome as it is, with no new poll of the task."""
    kie.add_task("veo_x")
    async with durable(kie, db) as veo:
        await veo.wait_many(["veo_x"])
        holder = veo.completed()
        held = await holder.__anext__()
        follower = asyncio.create_task(anext(aiter(veo.completed(follow=True))))
        await asyncio.sleep(0.1)  # reading the store, it met the result held by the other
        polls = kie.polls("veo_x")
        assert veo.task("veo_x") is held
        await asyncio.sleep(0.2)
        assert kie.polls("veo_x") == polls
        assert not follower.done()
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        await holder.aclose()


async def test_task_returns_its_handle_after_a_401_while_completed_follows(
    kie: FakeKie, db: Path
) -> None:
    """veo.task(id) does no I/O and raises only for a bad id: after a 401
    stopped the session, it hands back the handle (whose wait then raises
    AuthenticationError), with a completed(follow=True) running as without
    one."""
    kie.add_tasks(["veo_a", "veo_b"])
    async with durable(kie, db) as veo:
        follower = asyncio.create_task(anext(aiter(veo.completed(follow=True))))
        await asyncio.sleep(0.05)
        await _stopped_by_a_401(kie, veo)
        try:
            handle = veo.task("veo_b")
            with pytest.raises(AuthenticationError):
                await handle
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)


async def _stopped_by_a_401(kie: FakeKie, veo: VeoSession) -> None:
    kie.inject(Fault.body_code(401, "bad key", 401))
    with pytest.raises(AuthenticationError):
        await veo.record_info("veo_a")


@pytest.mark.parametrize("begun", ["before", "after"])
async def test_a_following_completed_raises_the_401_that_stopped_its_session(
    kie: FakeKie, db: Path, begun: str
) -> None:
    """A completed(follow=True) with nothing to poll, begun before or after
    a 401 stopped the session, ends with that AuthenticationError (no task
    can come to it any more): it waited on until the session closed, then
    ended with SessionClosedError."""
    kie.add_tasks(["veo_a"])
    async with durable(kie, db) as veo:
        if begun == "after":
            await _stopped_by_a_401(kie, veo)
        follower = asyncio.create_task(anext(aiter(veo.completed(follow=True))))
        if begun == "before":
            await asyncio.sleep(0.05)
            await _stopped_by_a_401(kie, veo)
        done, _ = await asyncio.wait({follower}, timeout=5)
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        assert done, "completed(follow=True) still waits after a 401 stopped the session"
        assert isinstance(follower.exception(), AuthenticationError)


async def test_an_acknowledged_result_leaves_no_claim_behind(kie: FakeKie, db: Path) -> None:
    """Two completed() iterations share results by claims; once every result
    is acknowledged the session keeps no claim (each ack drops its id's: a
    following iteration acking for days kept one per result, and the
    iteration that claimed it)."""
    ids = ["veo_1", "veo_2", "veo_3"]
    kie.add_tasks(ids)
    async with durable(kie, db) as veo:
        await veo.wait_many(ids)
        counts = await asyncio.gather(
            veo.deliver(lambda task: None), veo.deliver(lambda task: None)
        )
        assert sum(counts) == len(ids)
        tracker = veo._durable
        assert tracker is not None
        assert tracker._claims == {}


async def test_results_yielded_after_the_close_write_nothing_and_log_no_store_error(
    kie: FakeKie, db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An iteration of completed() still holding queued results when its
    session closes yields them, then raises SessionClosedError; handing
    them out notes nothing for the closed store (no writer wakes up later
    to fail on it and log an error)."""
    kie.add_tasks(["veo_a", "veo_b"])
    async with durable(kie, db) as veo:
        await veo.wait_many(["veo_a", "veo_b"])
        results = veo.completed()
        first = await results.__anext__()
    caplog.set_level(logging.WARNING, logger="veo_async")
    second = await results.__anext__()
    assert {first.task_id, second.task_id} == {"veo_a", "veo_b"}
    with pytest.raises(SessionClosedError):
        await results.__anext__()
    await asyncio.sleep(0.2)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_terminal_records_reach_the_store_batch_after_batch_with_no_ack_or_flush(
    kie: FakeKie, db: Path
) -> None:
    """The background writer hands notes to the store batch after batch: a
    task finishing after an earlier batch was written has its terminal
    record in the store soon after, with no ack, flush or close to push it
    (a second writer is started once the first has ended)."""
    kie.add_tasks(["veo_a", "veo_b"])
    async with durable(kie, db) as veo:
        store = veo.store
        assert store is not None
        await veo.wait_many(["veo_a"])
        await asyncio.sleep(0.2)  # the first writer has ended
        await veo.wait_many(["veo_b"])
        await asyncio.sleep(0.3)
        row = await store.get("veo_b")
        assert row is not None
        assert row.is_terminal


async def test_a_failed_background_write_is_raised_by_the_next_flush_and_retried(
    kie: FakeKie, db: Path
) -> None:
    """The background writer's batch is refused by the store: the next
    flush() raises that error (once), and the notes, kept, reach the store
    all the same (the flush after it passes, the record is stored)."""
    kie.add_tasks(["veo_a"])
    store = _FailingOnce(db, flush_interval=0.01, lock_timeout=0.0)
    async with session_on(kie, store=store) as veo:
        await veo.wait_many(["veo_a"])
        assert await eventually(lambda: store.failed)
        await asyncio.sleep(0.2)  # the writer has met the failure
        with pytest.raises(StoreError, match="disk full"):
            await veo.flush()
        await veo.flush()
        row = await store.get("veo_a")
        assert row is not None
        assert row.is_terminal


class _CountingFlushes(SQLiteStore):
    """A SQLiteStore that counts the commits asked of it (its flush calls)."""

    flushes = 0

    async def flush(self) -> None:
        self.flushes += 1
        await super().flush()


async def test_flush_has_the_store_commit_what_it_handed_over(kie: FakeKie, db: Path) -> None:
    """veo.flush() hands every note to the store, then has the store commit
    them (its flush), not only queue them for its own flush interval (an
    hour here)."""
    kie.add_tasks(["veo_a"])
    store = _CountingFlushes(db, flush_interval=3600.0, lock_timeout=0.0)
    async with session_on(kie, store=store) as veo:
        await veo.wait_many(["veo_a"])
        before = store.flushes
        await veo.flush()
        assert store.flushes == before + 1
        row = await store.get("veo_a")
        assert row is not None
        assert row.is_terminal


async def test_resume_includes_ids_handed_to_task_just_before(kie: FakeKie, db: Path) -> None:
    """resume() hands the queued notes to the store before reading it: an id
    given to veo.task() a moment before (its tracking not written yet) is
    among the tasks it resumes."""
    kie.add_task("veo_x", complete_after=60)
    async with durable(kie, db) as veo:
        handle = veo.task("veo_x")
        report = await veo.resume()
        assert report.tasks == (handle,)


async def test_closing_a_session_with_resumed_tasks_logs_no_warning(
    kie: FakeKie, db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Resumed tasks still polling when their session closes stop quietly:
    the close is no news to report (a resumed task that stops polling for
    another reason is logged)."""
    kie.add_task("veo_x", complete_after=60)
    async with durable(kie, db) as veo:
        await veo.track(["veo_x"])
    caplog.set_level(logging.WARNING, logger="veo_async")
    async with durable(kie, db) as veo:
        report = await veo.resume()
        assert [task.task_id for task in report.tasks] == ["veo_x"]
        assert await eventually(lambda: kie.polls("veo_x") >= 1)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_a_result_whose_ack_failed_is_delivered_again_by_the_session(
    kie: FakeKie, db: Path
) -> None:
    """An ack the store refused raises, and the result is not acknowledged:
    the next completed() of the same session yields it again (the session
    does not count it as acknowledged), and a retried ack takes."""
    kie.add_tasks(["veo_a"])
    store = _AckFailingOnce(db, flush_interval=0.01, lock_timeout=0.0)
    async with session_on(kie, store=store) as veo:
        await veo.wait_many(["veo_a"])
        async for task in veo.completed():
            with pytest.raises(StoreError, match="disk full"):
                await task.ack()
        again = [task async for task in veo.completed()]
        assert [task.task_id for task in again] == ["veo_a"]
        await again[0].ack()
        assert [task.task_id async for task in veo.completed()] == []


async def test_results_queued_before_an_error_are_yielded_before_it_is_raised(
    kie: FakeKie, db: Path
) -> None:
    """While the consumer of completed() holds a result, a followed task
    finishes and another stops polling with an error (a 404): the next
    steps yield the finished one, then raise the error (what was queued is
    handed over first)."""
    kie.add_task("veo_done")
    kie.add_task("veo_ok", complete_after=0.2)
    kie.add_task("veo_bad", complete_after=60, faults=[Fault.body_code(404, "no route", 404)])
    async with durable(kie, db) as veo:
        await veo.wait_many(["veo_done"])
        ok, bad = await veo.track(["veo_ok", "veo_bad"])
        results = veo.completed()
        first = await results.__anext__()
        assert first.task_id == "veo_done"
        assert await eventually(lambda: ok.done() and isinstance(bad.error, NotFoundError))
        second = await results.__anext__()
        assert second is ok
        with pytest.raises(NotFoundError):
            await results.__anext__()
        await results.aclose()


async def test_a_failed_background_write_is_raised_by_the_close(kie: FakeKie, db: Path) -> None:
    """A batch the background writer could not hand over, with no ack or
    flush since: the session's close writes it, closes the store, and
    raises that error (it is not only logged); the notes reached the file."""
    kie.add_tasks(["veo_a"])
    store = _FailingOnce(db, flush_interval=0.01, lock_timeout=0.0)
    veo = session_on(kie, store=store)
    await veo.__aenter__()
    await veo.wait_many(["veo_a"])
    assert await eventually(lambda: store.failed)
    await asyncio.sleep(0.2)  # the writer has met the failure
    with pytest.raises(StoreError, match="disk full"):
        await veo.aclose()
    assert store.closed
    reopened = await stored(db)
    try:
        row = await reopened.get("veo_a")
        assert row is not None
        assert row.is_terminal
    finally:
        await reopened.aclose()


async def test_a_store_without_batches_gets_each_tasks_notes_in_causal_order(
    kie: FakeKie, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store that takes no batches gets one batch's notes as single calls
    in causal order: a task seen running and finished within one batch is
    recorded seen, then finished, then delivered (never finished first)."""
    monkeypatch.setattr(durable_module, "WRITE_DELAY", 1.0)  # seen and finished: one batch
    kie.add_task("veo_x", complete_after=0.3)
    single = SingleCalls(store_at(db))
    async with session_on(kie, store=single) as veo:
        await veo.wait_many(["veo_x"])
        async for _task in veo.completed():
            pass
        await veo.flush()
    assert single.calls == ["record_seen", "record_terminal", "mark_delivered"]


@pytest.mark.parametrize("how", ["wait_many", "as_completed"])
async def test_batch_ids_are_stored_before_their_first_poll_is_answered(
    kie: FakeKie, db: Path, how: str
) -> None:
    """wait_many and as_completed write their ids to the store before polling
    starts: while the first poll of an id is still unanswered, the store
    holds the id already (not only once a record was seen)."""
    kie.add_task("veo_x", complete_after=60, faults=[Fault.slow(30.0)])
    async with durable(kie, db) as veo:
        store = veo.store
        assert store is not None

        async def batch() -> None:
            if how == "wait_many":
                await veo.wait_many(["veo_x"])
            else:
                async for _task in veo.as_completed(["veo_x"]):
                    pass

        waiting = asyncio.create_task(batch())
        try:
            assert await eventually(lambda: veo.stats.in_flight == 1)
            assert await store.get("veo_x") is not None
        finally:
            waiting.cancel()
            await asyncio.gather(waiting, return_exceptions=True)


@pytest.mark.parametrize("how", ["task", "track"])
async def test_a_running_completed_follows_ids_handed_in_meanwhile(
    kie: FakeKie, db: Path, how: str
) -> None:
    """An id handed to veo.task() or veo.track() while a completed(follow=True)
    runs is followed by it at once: it polls the task (nobody else waits on
    it) and yields its result."""
    kie.add_task("veo_x", complete_after=0.2)
    async with durable(kie, db) as veo, acking_completed(veo) as got:
        if how == "task":
            veo.task("veo_x")
        else:
            await veo.track(["veo_x"])
        assert await eventually(lambda: got == ["veo_x"])


@contextlib.asynccontextmanager
async def acking_completed(veo: VeoSession) -> AsyncIterator[list[str]]:
    """A running ``completed(follow=True)`` that acks each result: yields the
    list of the ids it yielded (it has begun by then); cancelled at the exit."""
    got: list[str] = []

    async def consume() -> None:
        async for task in veo.completed(follow=True):
            got.append(task.task_id)
            await task.ack()

    consumer = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    try:
        yield got
    finally:
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)


async def test_a_running_completed_remembers_more_than_a_few_acks(kie: FakeKie, db: Path) -> None:
    """A completed(follow=True) yields five stored results, each acknowledged;
    the first of them waited for again under a new handle is not yielded a
    second time (the session remembers its acks by the thousand, not only
    the latest few)."""
    ids = [f"veo_{i}" for i in range(5)]
    kie.add_tasks(ids)
    async with durable(kie, db) as veo:
        await veo.wait_many(ids)
        got: list[str] = []

        async def consume() -> None:
            async for task in veo.completed(follow=True):
                got.append(task.task_id)
                await task.ack()
                del task

        consumer = asyncio.create_task(consume())
        try:
            assert await eventually(lambda: sorted(got) == ids)
            await asyncio.sleep(0.1)
            gc.collect()  # the handles are gone: a new wait makes a new one
            await veo.wait_many([got[0]])
            await asyncio.sleep(0.2)
            assert sorted(got) == ids
        finally:
            consumer.cancel()
            await asyncio.gather(consumer, return_exceptions=True)


async def test_a_cancellation_raised_by_the_event_hook_is_not_swallowed(
    kie: FakeKie, caplog: pytest.LogCaptureFixture
) -> None:
    """The on_event hook's failures are logged and ignored, but a
    CancelledError it raises is a cancellation, not its failure: it
    propagates to the call whose event it was, and nothing is logged."""
    kie.add_task("veo_a")

    def hook(event: Event) -> None:
        if isinstance(event, RequestStarted):
            raise asyncio.CancelledError

    caplog.set_level(logging.ERROR, logger="veo_async")
    async with session_on(kie, on_event=hook) as veo:
        with pytest.raises(asyncio.CancelledError):
            await veo.record_info("veo_a")
    assert not [r for r in caplog.records if "on_event hook raised" in r.getMessage()]


async def test_a_close_cancelled_while_the_writer_waits_leaves_no_writer_behind(
    kie: FakeKie, db: Path
) -> None:
    """aclose() cancelled while the write-behind writer waits to write: the
    close still writes the queue and stops that writer before it returns
    (it did not wake later, on a closed store)."""
    veo = durable(kie, db)
    await veo.__aenter__()
    veo.task("given_1")  # queued: the writer waits to write it
    closer = asyncio.ensure_future(veo.aclose())
    await asyncio.sleep(0)
    closer.cancel()
    await asyncio.gather(closer, return_exceptions=True)
    assert veo.closed
    assert "veo_async durable writer" not in {task.get_name() for task in leftover_tasks()}


async def test_completed_delivers_an_id_handed_to_task_just_before(kie: FakeKie, db: Path) -> None:
    """completed() hands the queued notes to the store before reading it: an
    id given to veo.task() a moment before (its tracking not written yet,
    nothing waiting on it) is polled and yielded by that iteration."""
    kie.add_task("veo_x", complete_after=0.1)
    async with durable(kie, db) as veo:
        veo.task("veo_x")
        assert [task.task_id async for task in veo.completed()] == ["veo_x"]


@pytest.mark.parametrize("hook", [42, "print"], ids=["int", "str"])
def test_an_on_event_that_is_not_callable_is_refused_with_a_type_error(hook: object) -> None:
    """VeoSession(on_event=...) refuses a value that cannot be called with a
    TypeError saying so, when the session is made (not an AttributeError
    from looking for its __call__)."""
    with pytest.raises(TypeError, match="on_event must be callable"):
        VeoSession("k", on_event=hook)  # type: ignore[arg-type]
