"""Durable tracking through the session: VeoSession(store=...), resume(),
completed()/ack(), create intents, and the store errors a session surfaces.

The simulator runs in process; SQLite runs in aiosqlite's thread, so these
tests use a real event loop clock (``real_time``). The kill test (SIGKILL at
random points over loopback) is ``test_durable_kill.py``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from veo_async import (
    HttpRequest,
    PollPolicy,
    RawResponse,
    RecordInfo,
    RecordNotFoundError,
    RedisStore,
    ResumeReport,
    SessionClosedError,
    SQLiteStore,
    StoreCorruptError,
    StoreError,
    StoreLockedError,
    StoreVersionError,
    SubmitUncertainError,
    TaskFailedError,
    TaskStore,
    VeoSession,
    VeoTask,
    _durable,
)
from veo_async.errors import InsufficientCreditsError, NotFoundError
from veo_async.events import RAISED_TOO
from veo_async.store import StoredTask, new_ref, ref_of, with_ref, without_ref
from veo_async.testing import FakeKie, Fault

from ._redis_server import RedisServer, redis_server
from .conftest import API_KEY, FAST_POLICY, eventually, leftover_tasks, session_on

pytestmark = pytest.mark.real_time
__all__ = ["redis_server"]  # the fixture, for the Redis runs

#: Write-behind changes commit quickly, so a test reading the file sees them.
FLUSH = 0.01


def store_at(path: Path, **kwargs: Any) -> SQLiteStore:
    """A store on *path* that commits write-behind changes within 10 ms."""
    kwargs.setdefault("flush_interval", FLUSH)
    kwargs.setdefault("lock_timeout", 0.0)
    return SQLiteStore(path, **kwargs)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """The test's store file."""
    return tmp_path / "veo.db"


@pytest.fixture
async def kie() -> AsyncIterator[FakeKie]:
    """An in-process simulator whose created tasks take ~0.1-0.3 s, with no creation limit."""
    fake = FakeKie(api_key=API_KEY, time_scale=0.001, seed=7, create_limit=None)
    yield fake
    await fake.close()


def durable(kie: FakeKie, path: Path, **kwargs: Any) -> VeoSession:
    """A session on *kie* with a store on *path*."""
    kwargs.setdefault("create_rate", 10_000)
    return session_on(kie, store=store_at(path), **kwargs)


async def stored(path: Path) -> SQLiteStore:
    """The store file opened again, after its session closed (close it after use)."""
    store = store_at(path)
    await store.open()
    return store


def following(
    veo: VeoSession, delivered: list[str], count: int | None = None
) -> asyncio.Task[None]:
    """A consumer of ``veo.completed(follow=True)``, started now: it adds each
    task's id to ``delivered`` and acks it, and ends after ``count`` (None:
    runs until cancelled). It keeps no handle between tasks."""

    async def consume() -> None:
        async for task in veo.completed(follow=True):
            delivered.append(task.task_id)
            await task.ack()
            del task  # (a later poll of an id makes a new handle)
            if count is not None and len(delivered) >= count:
                return

    return asyncio.create_task(consume())


async def drain(veo: VeoSession, *, ack: bool = True) -> list[str]:
    """Ids completed() yields (acked each when asked), in order."""
    ids = []
    async for task in veo.completed():
        ids.append(task.task_id)
        if ack:
            await task.ack()
    return ids


# -- recording --------------------------------------------------------------------


async def test_wait_many_tracks_ids_and_stores_their_terminal_records(
    kie: FakeKie, db: Path
) -> None:
    """Ids given to wait_many are tracked before polling; their terminal records
    (success and failure) are stored, and nothing is acked yet."""
    kie.add_task("veo_ok", complete_after=0.05)
    kie.add_task("veo_bad", complete_after=0.05, final_status=2)
    async with durable(kie, db) as veo:
        outcomes = await veo.wait_many(["veo_ok", "veo_bad"], return_exceptions=True)
    assert isinstance(outcomes[1], TaskFailedError)
    store = await stored(db)
    try:
        ok, bad = await store.get("veo_ok"), await store.get("veo_bad")
        assert ok is not None
        assert bad is not None
        assert ok.status == 1
        assert bad.status == 2
        assert ok.first_seen_at is not None
        assert not ok.acked
        assert {t.task_id for t in await store.undelivered()} == {"veo_ok", "veo_bad"}
    finally:
        await store.aclose()


async def test_task_and_as_completed_track_their_ids(kie: FakeKie, db: Path) -> None:
    """veo.task(id) (no I/O: written with the next batch) and as_completed ids are tracked."""
    kie.add_task("veo_a", complete_after=0.05)
    async with durable(kie, db) as veo:
        veo.task("veo_lazy")
        async for task in veo.as_completed(["veo_a"]):
            assert task.result().task_id == "veo_a"
    store = await stored(db)
    try:
        assert {t.task_id for t in await store.list_tasks()} == {"veo_a", "veo_lazy"}
        assert [t.task_id for t in await store.unfinished()] == ["veo_lazy"]
    finally:
        await store.aclose()


async def test_bad_ids_are_refused_before_the_store_is_written(kie: FakeKie, db: Path) -> None:
    """wait_many with a bad id or argument raises before tracking anything."""
    async with durable(kie, db) as veo:
        with pytest.raises(ValueError, match=r"task_ids\[1\]"):
            await veo.wait_many(["veo_ok", ""])
        with pytest.raises(ValueError, match="timeout"):
            await veo.wait_many(["veo_ok"], timeout=-1)
        with pytest.raises(TypeError, match="return_exceptions"):
            await veo.wait_many(["veo_ok"], return_exceptions="yes")  # type: ignore[call-overload]
    store = await stored(db)
    try:
        assert await store.list_tasks() == []
    finally:
        await store.aclose()


# -- creating ---------------------------------------------------------------------


async def test_a_created_task_has_its_intent_and_task_id_stored(kie: FakeKie, db: Path) -> None:
    """generate writes the intent, then the task id; the callback URL sent carries the ref."""
    async with durable(kie, db) as veo:
        task = await veo.generate(
            "a fox", model="veo3_lite", callback_url="https://cb.example/h?x=1"
        )
        await task
        assert task.request is not None
        assert task.request.callback_url is not None
        ref = ref_of(task.request.callback_url)
        assert ref is not None
        assert task.request.callback_url == f"https://cb.example/h?x=1&veo_ref={ref}"
        assert task.model == "veo3_lite"
    store = await stored(db)
    try:
        row = await store.get(task.task_id)
        assert row is not None
        assert row.ref == ref
        assert row.model == "veo3_lite"
        intent = await store.get_intent(ref)
        assert intent is not None
        assert intent.task_id == task.task_id
        assert intent.kind == "generate"
        assert intent.request["prompt"] == "a fox"
        assert await store.uncertain() == []
    finally:
        await store.aclose()


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
async def test_an_uncertain_create_is_reported_by_resume_never_resent(
    kie: FakeKie, db: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    """A create that may have created a task leaves its intent uncertain (in a
    SQLite file, in a Redis namespace): resume() reports it with its request
    (no exception) and sends nothing again; the callback's ref reconciles it."""
    namespace = f"test:{uuid.uuid4().hex}"

    def session() -> VeoSession:
        if kind == "sqlite":
            return durable(kie, db)
        server: RedisServer = request.getfixturevalue("redis_server")
        store = RedisStore(server.url, namespace=namespace, flush_interval=FLUSH, lock_timeout=0)
        return session_on(kie, store=store, create_rate=10_000)

    kie.inject_create(Fault.created_then_drop())
    async with session() as veo:
        with pytest.raises(SubmitUncertainError):
            await veo.generate("a dog", callback_url="https://cb.example/h")
    assert kie.created == 1
    async with session() as veo:
        report = await veo.resume()
        assert isinstance(report, ResumeReport)
        assert report.tasks == ()
        assert report.undelivered == ()
        [intent] = report.uncertain
        assert intent.uncertain
        assert intent.request["prompt"] == "a dog"
        assert await veo.uncertain() == [intent]
        # The simulator's record carries the callback URL sent: it reconciles.
        record = await veo.record_info(kie.created_ids[0])
        ref = ref_of(record.params["callBackUrl"])
        assert ref == intent.ref
        store = veo.store
        assert store is not None
        assert await store.reconcile(ref, kie.created_ids[0])
        assert await veo.uncertain() == []
    assert kie.created == 1


class _CreateAnswersRewritten:
    """A public Transport: the simulator's, except that each create's answer
    (the task created and charged) is rewritten by ``rewrite``."""

    def __init__(self, kie: FakeKie, rewrite: Callable[[RawResponse], RawResponse]) -> None:
        self._inner = kie.transport()
        self._rewrite = rewrite

    async def send(self, request: HttpRequest) -> RawResponse:
        raw = await self._inner.send(request)
        if request.path != "/api/v1/veo/generate":
            return raw
        return self._rewrite(raw)

    async def aclose(self) -> None:
        await self._inner.aclose()


def _creating_through(
    kie: FakeKie, rewrite: Callable[[RawResponse], RawResponse], path: Path
) -> VeoSession:
    """A session on a store at ``path`` whose create answers ``rewrite`` changes."""
    return VeoSession(
        API_KEY,
        transport=_CreateAnswersRewritten(kie, rewrite),
        store=store_at(path),
        create_rate=10_000,
    )


def _server_error(raw: RawResponse) -> RawResponse:
    """HTTP 500 over the success envelope: the answer names the task, not as a success."""
    return RawResponse(500, raw.headers, raw.body)


def _odd_id(raw: RawResponse) -> RawResponse:
    """The task id with a space in it: no poll could use it."""
    answer = json.loads(raw.body)
    answer["data"]["taskId"] = "veo task " + answer["data"]["taskId"]
    return RawResponse(raw.status, raw.headers, json.dumps(answer).encode())


async def test_an_uncertain_create_whose_answer_names_its_task_is_tracked(
    kie: FakeKie, db: Path
) -> None:
    """An uncertain create whose answer named the task: the store keeps that
    id (the task is resumed and followed, its polls tell whether it exists),
    not an intent without one, which lost a task that was charged."""
    async with _creating_through(kie, _server_error, db) as veo:
        with pytest.raises(SubmitUncertainError) as caught:
            await veo.generate("a cat")
        assert caught.value.task_id == kie.created_ids[0]
        assert await veo.uncertain() == []
    async with durable(kie, db) as veo:
        report = await veo.resume()
        assert report.uncertain == ()
        assert [task.task_id for task in report.tasks] == kie.created_ids
        [stored] = report.tasks
        assert stored.model == "veo3_fast"
    assert kie.created == 1


def _server_error_naming(task_id: str) -> Callable[[RawResponse], RawResponse]:
    """HTTP 500 over a success envelope naming ``task_id`` (whatever was created)."""

    def rewrite(raw: RawResponse) -> RawResponse:
        answer = json.loads(raw.body)
        answer["data"]["taskId"] = task_id
        return RawResponse(500, raw.headers, json.dumps(answer).encode())

    return rewrite


@pytest.mark.parametrize("named", ["veo a b", "x" * 300, "null"])
async def test_an_uncertain_create_naming_an_unusable_id_stays_uncertain(
    kie: FakeKie, db: Path, named: str
) -> None:
    """An uncertain create whose answer names an id no poll could use (spaced,
    overlong, a "null" spelling): SubmitUncertainError without a task_id and
    an intent without an id (the store refused the id: a bare ValueError)."""
    async with _creating_through(kie, _server_error_naming(named), db) as veo:
        with pytest.raises(SubmitUncertainError) as caught:
            await veo.generate("a cat")
        assert caught.value.task_id is None
        [intent] = await veo.uncertain()
        assert intent.task_id is None
    assert kie.created == 1


async def test_a_rejected_create_leaves_no_uncertain_intent(kie: FakeKie, db: Path) -> None:
    """A create the service refused (402: nothing created) discards its intent."""
    kie.credits = 0
    async with durable(kie, db) as veo:
        with pytest.raises(InsufficientCreditsError):
            await veo.generate("a cat")
        assert await veo.uncertain() == []
    assert kie.created == 0


@pytest.mark.parametrize(
    ("fault", "uncertain"),
    [
        pytest.param(Fault.maintenance(), 0, id="455-cancelled-in-the-resend-pause"),
        pytest.param(Fault.http_429(retry_after=30), 0, id="429-cancelled-in-the-budget-pause"),
        pytest.param(Fault.slow(60.0), 1, id="cancelled-while-the-post-is-out"),
    ],
)
async def test_a_create_cancelled_between_refused_sendings_leaves_no_intent(
    kie: FakeKie, db: Path, fault: Fault, uncertain: int
) -> None:
    """A create cancelled after a sending that certainly created nothing (455,
    429), while it waits to send again, leaves no uncertain intent; one
    cancelled while its POST is out stays uncertain (it may have created)."""
    kie.inject_create(fault)
    async with durable(kie, db) as veo:
        create = asyncio.create_task(veo.generate("a cat"))
        assert await eventually(lambda: veo.stats.creates == 1)
        await asyncio.sleep(0.2)  # the answer (or the lack of one) is in
        create.cancel()
        with pytest.raises(asyncio.CancelledError):
            await create
        assert len(await veo.uncertain()) == uncertain
    async with durable(kie, db) as veo:
        assert len((await veo.resume()).uncertain) == uncertain


class _SlowToConfirmIntents(SQLiteStore):
    """A store whose intent writes land at once but are confirmed 0.5 s later."""

    async def record_intent(self, *args: Any, **kwargs: Any) -> None:
        await super().record_intent(*args, **kwargs)
        await asyncio.sleep(0.5)


async def test_a_create_cancelled_while_its_intent_is_written_leaves_no_intent(
    kie: FakeKie, db: Path
) -> None:
    """A create cancelled while its intent is being written (before anything
    was sent) leaves no uncertain intent, though the write landed."""
    store = _SlowToConfirmIntents(db, flush_interval=FLUSH, lock_timeout=0.0)
    async with session_on(kie, store=store, create_rate=10_000) as veo:
        await _cancel_a_create_while_its_intent_is_written(veo)
        assert await veo.uncertain() == []
    assert kie.created == 0


async def _cancel_a_create_while_its_intent_is_written(veo: VeoSession) -> None:
    """generate() cancelled 0.2 s in (its intent write lasts 0.5 s): it raises
    CancelledError."""
    create = asyncio.create_task(veo.generate("a cat"))
    await asyncio.sleep(0.2)
    create.cancel()
    with pytest.raises(asyncio.CancelledError):
        await create


class _SlowForTheSecond(SQLiteStore):
    """A store whose second intent write takes 0.3 s (the first lands at once)."""

    writes = 0

    async def record_intent(self, *args: Any, **kwargs: Any) -> None:
        self.writes += 1
        if self.writes == 2:
            await asyncio.sleep(0.3)
        await super().record_intent(*args, **kwargs)


async def test_a_create_cancelled_waiting_out_a_pause_after_its_intent_leaves_no_intent(
    kie: FakeKie, db: Path
) -> None:
    """Another create's 429 paused creating while this one's intent was
    written: it waits the pause out before sending. Cancelled there, it was
    never sent, and its intent is discarded (it was left uncertain: a video
    the user asked for never made, and never to be sent by a rerun)."""
    kie.inject_create(Fault.http_429(retry_after=30))
    store = _SlowForTheSecond(db, flush_interval=FLUSH, lock_timeout=0.0)
    async with session_on(kie, store=store, create_rate=10_000) as veo:
        first = asyncio.create_task(veo.generate("first"))
        second = asyncio.create_task(veo.generate("second"))
        await asyncio.sleep(1.0)  # the 429 came; the second's intent is written
        assert store.writes == 2
        assert veo.stats.creates == 1  # the first only: the second waits the pause out
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await second
        assert "second" not in [i.request["prompt"] for i in await veo.uncertain()]
        first.cancel()  # (refused by the 429, waiting to be sent again)
        with pytest.raises(asyncio.CancelledError):
            await first
        assert await veo.uncertain() == []
    assert kie.created == 0


class _CannotDiscard(_SlowToConfirmIntents):
    """As _SlowToConfirmIntents, on a store that can no longer discard."""

    async def discard_intent(self, ref: str) -> bool:
        raise StoreError("the store went away", path=str(self.path))


async def test_a_cancelled_create_whose_intent_cannot_be_discarded_is_still_cancelled(
    kie: FakeKie, db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The cancellation is raised, not the store's failure to discard the
    intent: that intent stays uncertain (the safe side), said in the log."""
    store = _CannotDiscard(db, flush_interval=FLUSH, lock_timeout=0.0)
    async with session_on(kie, store=store, create_rate=10_000) as veo:
        await _cancel_a_create_while_its_intent_is_written(veo)
        assert len(await veo.uncertain()) == 1
    assert kie.created == 0
    assert "could not be discarded" in caplog.text


class _IntentAnswerLost(SQLiteStore):
    """A store whose intent writes land, but whose answer is lost."""

    async def record_intent(self, *args: Any, **kwargs: Any) -> None:
        await super().record_intent(*args, **kwargs)
        raise StoreError("no answer while writing", path=str(self.path))


async def test_an_intent_write_whose_answer_was_lost_is_discarded(
    kie: FakeKie, db: Path
) -> None:
    """generate() raises the StoreError of its intent write and sends
    nothing; the intent, which landed all the same, is discarded, not left
    to be reported as a create that may exist."""
    store = _IntentAnswerLost(db, flush_interval=FLUSH, lock_timeout=0.0)
    async with session_on(kie, store=store) as veo:
        with pytest.raises(StoreError, match="no answer while writing"):
            await veo.generate("a cat")
        assert await veo.uncertain() == []
    assert kie.created == 0


async def test_creates_still_waiting_for_the_budget_leave_no_intent(
    kie: FakeKie, db: Path
) -> None:
    """Creates cancelled while they wait for the creation budget were certainly
    not sent: they leave no intent (not reported uncertain, free to send again);
    those sent are tracked, and the store holds exactly them."""
    async with durable(kie, db, create_rate=3, create_period=60.0) as veo:
        creates = [asyncio.create_task(veo.generate(f"a cat {k}")) for k in range(8)]
        answered: set[asyncio.Task[Any]] = set()
        while len(answered) < 3:  # the budget lets three go at once
            more, _ = await asyncio.wait(set(creates) - answered, return_when="FIRST_COMPLETED")
            answered |= more
        await asyncio.sleep(0.05)  # the other five stay queued behind the budget
        for create in creates:
            create.cancel()
        results = await asyncio.gather(*creates, return_exceptions=True)
        sent = [r for r in results if not isinstance(r, BaseException)]
        assert len(sent) == 3
        assert sum(isinstance(r, asyncio.CancelledError) for r in results) == 5
        assert await veo.uncertain() == []
    assert kie.created == 3
    async with durable(kie, db) as veo:
        report = await veo.resume()
        assert report.uncertain == ()
        assert sorted(task.task_id for task in report.tasks) == sorted(kie.created_ids)


async def test_a_created_task_with_an_unusable_id_is_uncertain_not_stored(
    kie: FakeKie, db: Path
) -> None:
    """A create answered with a task id no poll could use: the task exists
    (charged), so the create is uncertain, not the caller's bad input, and the
    id never reaches the store (where it would stop every resume)."""
    async with _creating_through(kie, _odd_id, db) as veo:
        with pytest.raises(SubmitUncertainError, match="not a usable task id"):
            await veo.generate("a cat")
        [intent] = await veo.uncertain()
        assert intent.request["prompt"] == "a cat"
    assert kie.created == 1
    async with durable(kie, db) as veo:
        report = await veo.resume()
        assert report.tasks == ()
        assert len(report.uncertain) == 1


async def test_a_store_row_with_an_unusable_id_is_skipped_not_fatal(
    kie: FakeKie, db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A row whose id no poll could use (a store written by hand, or by a
    version that did not check ids) is skipped with a warning; the other
    tasks resume and are delivered."""
    kie.add_tasks(["good1", "good2"])
    async with durable(kie, db) as veo:
        await veo.track(["good1", "good2"])
    with sqlite3.connect(db) as raw:
        raw.execute("UPDATE tasks SET task_id = 'bad id' WHERE task_id = 'good2'")
    raw.close()
    caplog.set_level(logging.WARNING, logger="veo_async")
    async with durable(kie, db) as veo:
        report = await veo.resume()
        assert [task.task_id for task in report.tasks] == ["good1"]
        assert await drain(veo) == ["good1"]
    assert any("bad id" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "terminal",
    ["{not json", '"a string"', '{"task_id": "x"}', '{"task_id": "good2", "status": 9}'],
    ids=["not-json", "json-string", "wrong-shape", "unknown-status"],
)
async def test_a_finished_row_whose_record_is_damaged_is_polled_again(
    kie: FakeKie, db: Path, caplog: pytest.LogCaptureFixture, terminal: str
) -> None:
    """A finished row whose stored record cannot be read stops neither resume()
    nor completed(): it is polled again (the service still has its record) and
    delivered with the others, with a warning naming it."""
    kie.add_tasks(["good1", "good2", "good3"])
    async with durable(kie, db) as veo:
        await veo.wait_many(["good1", "good2", "good3"])
    with sqlite3.connect(db) as raw:
        raw.execute("UPDATE tasks SET terminal = ? WHERE task_id = 'good2'", (terminal,))
    raw.close()
    caplog.set_level(logging.WARNING, logger="veo_async")
    async with durable(kie, db) as veo:
        polls = kie.polls("good2")
        report = await veo.resume()
        assert [task.task_id for task in report.tasks] == ["good2"]
        assert sorted(task.task_id for task in report.undelivered) == ["good1", "good3"]
        assert sorted(await drain(veo)) == ["good1", "good2", "good3"]
        assert kie.polls("good2") > polls
        assert veo.task("good2").record is not None
    assert any("good2" in r.getMessage() for r in caplog.records)
    async with durable(kie, db) as veo:
        assert await drain(veo) == []


async def test_a_damaged_record_lists_as_unfinished(db: Path) -> None:
    """The store's own listing reads a damaged record as unfinished, status None."""
    async with store_at(db) as store:
        await store.track(["t1"])
    with sqlite3.connect(db) as raw:
        raw.execute("UPDATE tasks SET terminal = '{not json' WHERE task_id = 't1'")
    raw.close()
    async with store_at(db) as store:
        [row] = await store.list_tasks()
        assert (row.record, row.status, row.is_terminal) == (None, None, False)


async def test_a_resumed_task_that_stops_polling_is_logged_as_raised_too(
    kie: FakeKie, db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A resumed task whose polling ends in an error logs a warning marked
    RAISED_TOO (completed() hands the task over with that error, so a program
    reporting outcomes, like the command line, may leave the line out)."""
    async with durable(kie, db) as veo:
        await veo.track(["veo_gone"])
    caplog.set_level(logging.WARNING, logger="veo_async")
    async with durable(kie, db) as veo:
        await veo.resume()
        [task] = [task async for task in veo.completed()]
        assert isinstance(task.exception(), RecordNotFoundError)
    [line] = [r for r in caplog.records if "stopped polling" in r.getMessage()]
    assert getattr(line, RAISED_TOO) is True


async def test_an_ack_cancelled_while_writing_loses_no_note(kie: FakeKie, db: Path) -> None:
    """ack() cancelled while it hands the queued notes to the store (a shutdown,
    a timeout around it), then retried: the task is acknowledged for good, and
    a later session neither resumes nor delivers it. The notes the cancelled
    write held used to be dropped: the retried ack found no terminal record to
    acknowledge, and the task came back after a restart."""
    kie.add_task("veo_b", complete_after=0.0)
    async with durable(kie, db) as veo:
        task = veo.task("veo_b")
        await task.wait(timeout=10)
        acking = asyncio.ensure_future(task.ack())
        await asyncio.sleep(0)  # inside the write of the queued notes
        acking.cancel()
        await asyncio.gather(acking, return_exceptions=True)
        await task.ack()
    async with durable(kie, db) as veo:
        report = await veo.resume()
        assert report.tasks == ()
        assert report.undelivered == ()
        assert await drain(veo) == []


async def test_a_close_cancelled_while_the_writer_waits_still_writes(
    kie: FakeKie, db: Path
) -> None:
    """aclose() cancelled while the write-behind writer is still to write (a
    second Ctrl-C): an id handed to veo.task() is written all the same, not
    dropped with the queue."""
    veo = durable(kie, db)
    await veo.__aenter__()
    veo.task("given_1")  # queued, written with the next batch
    closer = asyncio.ensure_future(veo.aclose())
    await asyncio.sleep(0)
    closer.cancel()
    await asyncio.gather(closer, return_exceptions=True)
    assert veo.closed
    store = await stored(db)
    try:
        assert [task.task_id for task in await store.unfinished()] == ["given_1"]
    finally:
        await store.aclose()


async def test_resume_and_completed_let_the_loop_run_while_reading_many_rows(
    kie: FakeKie, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """resume() and completed() read a store's finished records a slice per loop
    step: other tasks run between the slices (20,000 records read in one step
    stalled the loop for 150 ms)."""
    ids = [f"veo_{n}" for n in range(1500)]
    kie.add_tasks(ids)
    async with durable(kie, db) as veo:
        await veo.wait_many(ids)
    ticks = 0
    ticks_at_reads: list[int] = []
    read = StoredTask.record_info

    def counted(stored: StoredTask) -> RecordInfo | None:
        ticks_at_reads.append(ticks)
        return read(stored)

    monkeypatch.setattr(StoredTask, "record_info", counted)

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    async with durable(kie, db) as veo:
        running = asyncio.ensure_future(ticker())
        try:
            report = await veo.resume()
            assert len(report.undelivered) == 1500
            assert len(set(ticks_at_reads)) >= 3  # 1,500 reads in 500-read slices
            ticks_at_reads.clear()
            delivered = await drain(veo)
            assert len(set(ticks_at_reads)) >= 3
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
    assert sorted(delivered) == sorted(ids)


# -- resuming ---------------------------------------------------------------------


async def test_resume_polls_unfinished_tasks_again_until_they_finish(
    kie: FakeKie, db: Path
) -> None:
    """Tasks left unfinished by one session are resumed by the next, which polls
    them to the end without anyone waiting, and completed() delivers them."""
    # Finished only when the test says so (re-adding restarts its clock), so
    # a slow machine cannot let it finish inside the first session.
    kie.add_task("veo_slow", complete_after=3600)
    async with durable(kie, db) as veo:
        outcomes = await veo.wait_many(["veo_slow"], timeout=0.05, return_exceptions=True)
        assert isinstance(outcomes[0], TimeoutError)
    kie.add_task("veo_slow", complete_after=0.05)
    async with durable(kie, db) as veo:
        report = await veo.resume()
        [task] = report.tasks
        assert task.task_id == "veo_slow"
        assert task.polling
        assert await drain(veo) == ["veo_slow"]
        assert task.done()
    async with durable(kie, db) as veo:
        report = await veo.resume()
        assert (report.tasks, report.undelivered, report.uncertain) == ((), (), ())
        assert await drain(veo) == []


async def test_a_resumed_created_task_is_polled_as_old_as_it_is(kie: FakeKie, db: Path) -> None:
    """A task created 100 s before the restart gets its creation time back: the
    pacer sees its true age, and its model."""
    async with SQLiteStore(db) as store:
        ref = new_ref()
        await store.record_intent(
            ref, "generate", {"prompt": "p", "model": "veo3"}, time.time() - 100
        )
        await store.attach_task_id(ref, "veo_old", "veo3")
        await store.track(["veo_given"])
    kie.add_task("veo_old", complete_after=5.0)
    kie.add_task("veo_given", complete_after=5.0)
    async with durable(kie, db) as veo:
        report = await veo.resume()
        old, given = sorted(report.tasks, key=lambda t: t.task_id == "veo_given")
        assert old.task_id == "veo_old"
        assert old.model == "veo3"
        assert old.created_loop_time is not None
        assert asyncio.get_running_loop().time() - old.created_loop_time >= 99
        assert old.created_at is not None
        # A tracked id's row time is not its creation time: its record tells.
        assert given.created_loop_time is None


# -- delivering -------------------------------------------------------------------


async def test_unacked_results_are_delivered_again_acked_ones_never(kie: FakeKie, db: Path) -> None:
    """completed() hands over every unacked result in each iteration and after a
    restart; after ack() it never hands it over again."""
    kie.add_tasks(["veo_1", "veo_2"])  # already finished
    async with durable(kie, db) as veo:
        await veo.wait_many(["veo_1", "veo_2"])
        assert sorted(await drain(veo, ack=False)) == ["veo_1", "veo_2"]
        assert sorted(await drain(veo, ack=False)) == ["veo_1", "veo_2"]  # same session
    async with durable(kie, db) as veo:
        async for task in veo.completed():
            if task.task_id == "veo_1":
                assert task.result().task_id == "veo_1"
                await task.ack()
    async with durable(kie, db) as veo:
        assert await drain(veo) == ["veo_2"]
    async with durable(kie, db) as veo:
        assert await drain(veo) == []
    store = await stored(db)
    try:
        row = await store.get("veo_2")
        assert row is not None
        assert row.acked
        assert row.deliveries == 4
    finally:
        await store.aclose()


async def test_completed_polls_what_it_delivers_and_includes_new_creations(
    kie: FakeKie, db: Path
) -> None:
    """With follow=True, completed() also delivers tasks created while it runs."""
    async with durable(kie, db) as veo:
        delivered: list[str] = []
        consumer = following(veo, delivered, 2)
        await asyncio.sleep(0.05)
        first = await veo.generate("one")
        second = await veo.generate("two")
        await asyncio.wait_for(consumer, 10)
        assert sorted(delivered) == sorted([first.task_id, second.task_id])
    assert not leftover_tasks()


async def test_a_reconciled_create_reaches_a_running_completed(kie: FakeKie, db: Path) -> None:
    """A callback reconciled with veo.reconcile() while completed(follow=True)
    runs: that iteration delivers the task (given to the store alone, it
    reached it only after a restart). A second reconcile of it is True and
    delivers nothing twice; an unknown ref is False."""
    kie.inject_create(Fault.created_then_drop())
    async with durable(kie, db) as veo:
        with pytest.raises(SubmitUncertainError):
            await veo.generate("a dog", callback_url="https://cb.example/h")
        [intent] = await veo.uncertain()
        delivered: list[str] = []
        consumer = following(veo, delivered, 1)
        await asyncio.sleep(0.05)
        assert await veo.reconcile(intent.ref, kie.created_ids[0]) is True
        await asyncio.wait_for(consumer, 10)
        assert delivered == [kie.created_ids[0]]
        assert await veo.uncertain() == []
        assert await veo.reconcile(intent.ref, kie.created_ids[0]) is True
        assert await veo.reconcile(new_ref(), kie.created_ids[0]) is False
        with pytest.raises(ValueError, match="word for none"):
            await veo.reconcile(intent.ref, "null")
    assert kie.created == 1
    assert not leftover_tasks()


@pytest.mark.parametrize("unfinished", [False, True])
async def test_a_following_completed_ends_when_the_session_closes(
    kie: FakeKie, db: Path, unfinished: bool
) -> None:
    """completed(follow=True) raises SessionClosedError once the session
    closes, whether it still follows a task or waits, idle, for new ones (it
    then waited forever: a worker's shutdown that awaited it hung)."""
    kie.add_tasks(["veo_done"])
    kie.add_task("veo_slow", complete_after=3600)
    got: list[str] = []

    async def consume(veo: VeoSession) -> None:
        async for task in veo.completed(follow=True):
            got.append(task.task_id)
            await task.ack()

    async with durable(kie, db) as veo:
        await veo.track(["veo_done", "veo_slow"] if unfinished else ["veo_done"])
        consumer = asyncio.create_task(consume(veo))
        assert await eventually(lambda: got == ["veo_done"])
        await asyncio.sleep(0.05)
        assert not consumer.done()
    done, _ = await asyncio.wait({consumer}, timeout=5)
    assert done, "completed(follow=True) still waits after the session closed"
    assert isinstance(consumer.exception(), SessionClosedError)
    assert not leftover_tasks()


async def test_an_acked_task_is_never_yielded_again_by_a_running_completed(
    kie: FakeKie, db: Path
) -> None:
    """A completed(follow=True) running while an acknowledged id is tracked,
    waited for or refreshed again does not yield it (it did: the store kept
    the ack, the running iteration did not look); nor does a second
    iteration that had it queued when the first one acknowledged it."""
    kie.add_tasks(["veo_x", "veo_y"])
    async with durable(kie, db) as veo:
        await veo.wait_many(["veo_x"])
        async for task in veo.completed():
            await task.ack()
        got: list[str] = []

        async def consume() -> None:
            async for task in veo.completed(follow=True):
                got.append(task.task_id)

        consumer = asyncio.create_task(consume())
        await asyncio.sleep(0.05)
        await veo.track(["veo_x"])
        await veo.wait_many(["veo_x"])
        await veo.task("veo_x").refresh()
        await asyncio.sleep(0.2)
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)
        assert got == []

        await veo.wait_many(["veo_y"])
        first, second = veo.completed(), veo.completed()
        handle = await first.__anext__()  # the first holds veo_y: the second skips it
        slow = asyncio.create_task(second.__anext__())
        await asyncio.sleep(0)
        await handle.ack()
        with pytest.raises(StopAsyncIteration):
            await slow
        await first.aclose()
        await second.aclose()
    assert not leftover_tasks()


async def test_a_following_completed_keeps_nothing_of_what_it_delivered_and_was_acked(
    kie: FakeKie, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A completed(follow=True) that runs for days, its consumer acking each
    task: the iteration holds none of the ids it handed out and saw acked
    (it kept every one, some 80 bytes each, for as long as it ran). The
    session's own list of acknowledged ids is bounded (here at 50)."""
    monkeypatch.setattr(_durable, "_ACKED_KEPT", 50)
    ids = [f"veo_{i}" for i in range(1500)]
    kie.add_tasks(ids)
    async with durable(kie, db) as veo:
        acked = 0

        async def consume() -> None:
            nonlocal acked
            async for task in veo.completed(follow=True):
                await task.ack()
                acked += 1

        consumer = asyncio.create_task(consume())
        await veo.wait_many(ids)
        assert await eventually(lambda: acked == len(ids), within=60.0)
        # Diagnosis through the running iteration's own state: what it holds
        # (this session's: another test's may not be collected yet).
        tracker = veo._durable
        assert tracker is not None
        assert [len(delivery.held) for delivery in tracker._deliveries] == [0]
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)


async def test_consumers_of_one_session_share_its_results(kie: FakeKie, db: Path) -> None:
    """Two deliver() loops of one session at once: each result goes to one of
    them (it went to both: every result was handled twice), and the two
    together handle every one."""
    ids = [f"veo_{i}" for i in range(8)]
    kie.add_tasks(ids)
    async with durable(kie, db) as veo:
        await veo.wait_many(ids)
        handled: dict[str, list[str]] = {}

        def consumer(name: str) -> Any:
            async def handle(task: VeoTask) -> None:
                handled.setdefault(task.task_id, []).append(name)
                await asyncio.sleep(0.01)  # handling takes a while: the other goes on

            return handle

        counts = await asyncio.gather(veo.deliver(consumer("a")), veo.deliver(consumer("b")))
        assert sum(counts) == len(ids)
        assert sorted(handled) == ids
        assert all(len(names) == 1 for names in handled.values()), handled
        # Split between them (the first told of the results took them all,
        # and the other ended at once with none).
        assert min(counts) >= 2, counts
        assert await veo.deliver(lambda task: None) == 0


async def test_a_failing_consumer_leaves_the_rest_to_the_other(kie: FakeKie, db: Path) -> None:
    """Two deliver() loops; one's handler fails on its second result: that
    one and every result not handled yet go to the other, which is still
    running (they waited in the failed loop's queue for a later completed())."""
    ids = [f"veo_{i}" for i in range(10)]
    kie.add_tasks(ids)
    async with durable(kie, db) as veo:
        await veo.wait_many(ids)
        handled: dict[str, list[str]] = {}
        calls = 0

        async def failing(task: VeoTask) -> None:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.01)
            if calls == 2:
                raise RuntimeError("handler broke")
            handled.setdefault(task.task_id, []).append("a")

        async def steady(task: VeoTask) -> None:
            await asyncio.sleep(0.03)
            handled.setdefault(task.task_id, []).append("b")

        a, b = await asyncio.gather(
            veo.deliver(failing), veo.deliver(steady), return_exceptions=True
        )
        assert isinstance(a, RuntimeError)
        assert b == len(ids) - 1
        assert sorted(handled) == ids
        assert all(len(names) == 1 for names in handled.values()), handled
        assert await veo.deliver(lambda task: None) == 0


async def test_a_loop_whose_result_another_took_still_ends(kie: FakeKie, db: Path) -> None:
    """Two completed() loops (not following new tasks) both wait for one
    unfinished task: one takes it; the other, left with nothing to wait for,
    ends (it slept on, never woken)."""
    kie.add_task("veo_x", complete_after=0.5)
    async with durable(kie, db) as veo:
        await veo.track(["veo_x"])
        got: dict[str, list[str]] = {}

        async def consume(name: str) -> None:
            async for task in veo.completed():
                got.setdefault(name, []).append(task.task_id)
                await task.ack()

        both = [asyncio.create_task(consume(name)) for name in ("a", "b")]
        _done, pending = await asyncio.wait(both, timeout=5.0)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        assert not pending
        assert [task_id for ids in got.values() for task_id in ids] == ["veo_x"]


async def test_a_result_left_unacknowledged_goes_to_a_running_consumer(
    kie: FakeKie, db: Path
) -> None:
    """An iteration that ends holding a result it did not acknowledge lets go
    of it: another iteration still running takes it, as a later one would."""
    kie.add_tasks(["veo_1"])
    async with durable(kie, db) as veo:
        await veo.wait_many(["veo_1"])
        first = veo.completed()
        handle = await first.__anext__()
        assert handle.task_id == "veo_1"
        got: list[str] = []
        second = _consuming(veo, got)
        await asyncio.sleep(0.05)
        assert got == []  # the first holds it
        await first.aclose()  # without an ack
        assert await eventually(lambda: got == ["veo_1"], within=5.0)
        second.cancel()
        await asyncio.gather(second, return_exceptions=True)
        assert await veo.deliver(lambda task: None) == 0
    assert not leftover_tasks()


async def test_deliver_acks_each_handled_task_and_stops_on_a_handler_error(
    kie: FakeKie, db: Path
) -> None:
    """deliver(handler) acks what the handler handled; a raising handler leaves
    its task unacked, to be delivered again."""
    kie.add_tasks(["veo_1", "veo_2", "veo_3"])
    async with durable(kie, db) as veo:
        await veo.wait_many(["veo_1", "veo_2", "veo_3"])
        handled: list[str] = []

        async def handler(task: VeoTask) -> None:
            if len(handled) == 1:
                raise OSError("disk full")
            handled.append(task.task_id)

        with pytest.raises(OSError, match="disk full"):
            await veo.deliver(handler)
        assert len(handled) == 1
        assert await veo.deliver(lambda task: None) == 2
        assert await veo.deliver(lambda task: None) == 0


async def test_an_id_the_service_does_not_know_is_delivered_with_its_error_then_forgotten(
    kie: FakeKie, db: Path
) -> None:
    """A stored id the service never knew ends with RecordNotFoundError as its
    outcome; acknowledging it removes it from the store."""
    policy = PollPolicy(first_poll=0.0, interval=0.02, max_interval=0.05, not_found_grace=0.1)
    async with durable(kie, db, policy=policy) as veo:
        veo.task("veo_ghost")
        async for task in veo.completed():
            with pytest.raises(RecordNotFoundError):
                task.result()
            await task.ack()
        assert await drain(veo) == []
        store = veo.store
        assert store is not None
        assert await store.get("veo_ghost") is None


@pytest.mark.parametrize("flush_interval", [FLUSH, 3600.0], ids=["flushed soon", "held"])
async def test_an_unknown_id_acked_at_once_is_not_stored_again(
    kie: FakeKie, db: Path, flush_interval: float
) -> None:
    """veo.task(id) queues the id's tracking; the id turns out unknown and
    is acknowledged before that note was written: the note goes first, then
    the forget (written after it, it stored the id again, and a resume
    delivered it once more)."""
    policy = PollPolicy(first_poll=0.0, interval=0.02, max_interval=0.05, not_found_grace=0.0)
    store = store_at(db, flush_interval=flush_interval)
    async with session_on(kie, store=store, policy=policy) as veo:
        task = veo.task("veo_ghost")
        with pytest.raises(RecordNotFoundError):
            await task
        await task.ack()
    reopened = await stored(db)
    try:
        assert await reopened.get("veo_ghost") is None
    finally:
        await reopened.aclose()


async def test_a_404_on_every_poll_forgets_no_stored_task(db: Path) -> None:
    """Polls answered 404 (a base URL with a wrong path: a proxy's missing
    route) are no answer about the tasks: completed() raises NotFoundError,
    and the stored tasks stay unfinished, to be resumed once the URL is
    right (each was yielded as finished-and-gone, and its ack deleted it)."""
    async with FakeKie(api_key=API_KEY) as kie:
        kie.add_tasks(["veo_a", "veo_b"])
        async with SQLiteStore(db) as store:
            await store.track(["veo_a", "veo_b"])
        async with session_on(kie, store=store_at(db), base_url=kie.base_url + "/typo") as veo:
            with pytest.raises(NotFoundError):
                await drain(veo)
        async with SQLiteStore(db) as store:
            assert sorted(t.task_id for t in await store.unfinished()) == ["veo_a", "veo_b"]


async def test_ack_needs_a_store_and_an_outcome(kie: FakeKie, db: Path) -> None:
    """ack() without a store, or before the task finished, raises a clear error."""
    kie.add_task("veo_1", complete_after=10)
    async with session_on(kie) as veo:
        with pytest.raises(RuntimeError, match="needs a session with a store"):
            await veo.task("veo_1").ack()
        with pytest.raises(RuntimeError, match="no store"):
            veo.completed()
        with pytest.raises(RuntimeError, match="no store"):
            await veo.resume()
    async with durable(kie, db) as veo:
        with pytest.raises(asyncio.InvalidStateError):
            await veo.task("veo_1").ack()


# -- opening ----------------------------------------------------------------------


async def test_a_locked_store_fails_the_session_at_enter(kie: FakeKie, db: Path) -> None:
    """A store held by another opener gives StoreLockedError when the session is entered."""
    async with SQLiteStore(db):
        veo = durable(kie, db)
        with pytest.raises(StoreLockedError, match="in use"):
            async with veo:
                pass  # pragma: no cover - never entered
        assert veo.closed


async def test_one_store_object_serves_one_open_session(kie: FakeKie, db: Path) -> None:
    """A store object already in an open session is refused by a second session
    when it is entered (before any request), and stays open for the first; once
    the first closes, another may open it."""
    kie.add_task("veo_1", complete_after=0.05)
    store = store_at(db)
    async with session_on(kie, store=store, create_rate=10_000) as first:
        second = session_on(kie, store=store)
        with pytest.raises(RuntimeError, match="already in use by another open VeoSession"):
            async with second:
                pass  # pragma: no cover - never entered
        assert second.closed
        assert await first.wait_many(["veo_1"])
        assert [task.task_id for task in await store.list_tasks()] == ["veo_1"]
    assert kie.polls("veo_1") >= 1
    reopened = store_at(db)
    async with session_on(kie, store=reopened) as third:
        assert [task.task_id async for task in third.completed()] == ["veo_1"]


async def test_a_corrupt_file_fails_the_session_at_enter(kie: FakeKie, db: Path) -> None:
    """A file that is not a store gives StoreCorruptError naming it."""
    await asyncio.to_thread(db.write_bytes, b"this is not a database at all" * 100)
    with pytest.raises(StoreCorruptError, match=str(db)):
        async with durable(kie, db):
            pass  # pragma: no cover - never entered


async def test_a_newer_schema_fails_the_session_at_enter(kie: FakeKie, db: Path) -> None:
    """A store written by a newer schema gives StoreVersionError saying to upgrade."""
    async with SQLiteStore(db):
        pass
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE schema_version SET version = 99")
    conn.close()
    with pytest.raises(StoreVersionError, match="newer"):
        async with durable(kie, db):
            pass  # pragma: no cover - never entered


async def test_a_session_used_without_entering_opens_its_store_on_first_use(
    kie: FakeKie, db: Path
) -> None:
    """The store opens lazily on first use and is closed by aclose()."""
    kie.add_task("veo_1")
    store = store_at(db)
    veo = VeoSession(API_KEY, transport=kie.transport(), policy=FAST_POLICY, store=store)
    await veo.wait_many(["veo_1"])
    assert not store.closed
    await veo.aclose()
    assert store.closed


def test_store_must_be_a_task_store() -> None:
    """A store that is not a TaskStore is refused at construction."""
    with pytest.raises(TypeError, match="TaskStore"):
        VeoSession(API_KEY, store="veo.db")  # type: ignore[arg-type]
    assert isinstance(SQLiteStore("x.db"), TaskStore)


# -- the store's additions --------------------------------------------------------


async def test_discard_intent_and_forget(db: Path) -> None:
    """discard_intent drops only an uncertain intent; forget drops a task row."""
    async with store_at(db) as store:
        kept, dropped = new_ref(), new_ref()
        await store.record_intent(kept, "generate", {"prompt": "a"}, time.time())
        await store.record_intent(dropped, "generate", {"prompt": "b"}, time.time())
        await store.attach_task_id(kept, "veo_kept")
        assert await store.discard_intent(dropped) is True
        assert await store.discard_intent(dropped) is False
        assert await store.discard_intent(kept) is False  # it has a task id: kept
        assert await store.get_intent(kept) is not None
        await store.record_terminal("veo_kept", {"x": 1}, time.time())
        assert await store.forget("veo_kept") is True  # also the pending write-behind row
        assert await store.get("veo_kept") is None
        assert await store.forget("veo_kept") is False


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://x.example/cb", "https://x.example/cb?veo_ref=R1"),
        ("https://x.example/cb?a=1", "https://x.example/cb?a=1&veo_ref=R1"),
        ("https://x.example/cb?", "https://x.example/cb?&veo_ref=R1"),
        ("https://x.example/cb?a=1&", "https://x.example/cb?a=1&&veo_ref=R1"),
        ("https://x.example/cb?a=1#top", "https://x.example/cb?a=1&veo_ref=R1#top"),
        ("https://x.example/cb?#top", "https://x.example/cb?&veo_ref=R1#top"),
    ],
)
def test_with_ref_adds_the_ref_to_a_callback_url(url: str, expected: str) -> None:
    """with_ref appends veo_ref to the query; ref_of reads it back; without_ref
    gives back the very URL asked for (a query ending in "?" or "&" too: it
    gave "cb" for "cb?", and a rerun sent that paid create again)."""
    assert with_ref(url, "R1") == expected
    assert ref_of(expected) == "R1"
    assert without_ref(expected) == url


@pytest.mark.parametrize("absent", ["null", "NULL", "None"])
async def test_a_callback_naming_no_task_does_not_settle_an_intent(db: Path, absent: str) -> None:
    """reconcile() with the service's text for absent as the task id (a
    callback's "taskId": "null") is refused: it gave the intent that id, took
    it out of uncertain(), and refused the real id later (the task was lost)."""
    ref = new_ref()
    async with SQLiteStore(db) as store:
        await store.record_intent(ref, "generate", {"prompt": "a cat"}, time.time())
        with pytest.raises(ValueError, match="word for none"):
            await store.reconcile(ref, absent)
        assert [intent.ref for intent in await store.uncertain()] == [ref]
        assert await store.reconcile(ref, "veo_task_real") is True


def test_ref_of_ignores_urls_without_a_valid_ref() -> None:
    """ref_of gives None for no ref or an invalid one; with_ref refuses a second one."""
    assert ref_of("https://x.example/cb?a=1") is None
    assert ref_of("https://x.example/cb?veo_ref=a%20b") is None
    with pytest.raises(ValueError, match="already has"):
        with_ref("https://x.example/cb?veo_ref=R1", "R2")


async def test_a_create_cancelled_while_its_id_is_stored_says_so_and_the_id_lands(
    kie: FakeKie, db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """generate() cancelled while the store writes the new task's id: the id
    lands all the same (the store's writer owns the write), and the log says
    the create was cancelled, not that the id could not be stored."""

    storing = asyncio.Event()

    class SlowAttach(SQLiteStore):
        async def attach_task_id(self, *args: Any, **kwargs: Any) -> None:
            # Handed to the writer at once; its answer comes late (the cancel
            # lands while the caller waits for it).
            writing = asyncio.ensure_future(super().attach_task_id(*args, **kwargs))
            storing.set()
            await asyncio.sleep(0.2)
            await writing

    store = SlowAttach(db, flush_interval=FLUSH, lock_timeout=0.0)
    async with session_on(kie, store=store, create_rate=10_000) as veo:
        creating = asyncio.ensure_future(veo.generate("a fox"))
        await asyncio.wait_for(storing.wait(), 10)
        creating.cancel()
        with pytest.raises(asyncio.CancelledError):
            await creating
    assert "cancelled while its id was being stored" in caplog.text
    assert "could not be stored" not in caplog.text
    reopened = await stored(db)
    try:
        [task] = await reopened.list_tasks()
        assert task.ref is not None
        assert await reopened.uncertain() == []
        assert kie.created_ids == [task.task_id]
    finally:
        await reopened.aclose()


async def test_a_session_used_without_async_with_opens_and_closes_its_store(
    kie: FakeKie, db: Path
) -> None:
    """Used without ``async with`` (as README allows), a session opens its
    store at its first call that needs it, and ``aclose()`` closes it: the
    task is in the file, and the store is free for the next opener."""
    veo = durable(kie, db)
    task = await veo.generate("a cat")
    assert veo.store is not None
    assert "state=open" in repr(veo.store)
    await veo.aclose()
    assert "state=closed" in repr(veo.store)
    reopened = await stored(db)
    try:
        assert [t.task_id for t in await reopened.unfinished()] == [task.task_id]
    finally:
        await reopened.aclose()


async def test_a_result_acknowledged_before_a_restart_is_never_delivered_again(
    kie: FakeKie, db: Path
) -> None:
    """Acknowledged in one session; in the next, a running completed(follow=True)
    meets the task again: a late callback reconciled (veo.reconcile), the id
    handed in (veo.task), a wait on it. None is delivered again (each was:
    the session's memory of acks starts empty, and the store's was not read)."""
    kie.add_task("veo_tracked")
    async with durable(kie, db) as veo:
        created = await veo.generate("a cat", callback_url="https://cb.example/h")
        assert created.request is not None
        assert created.request.callback_url is not None
        ref = ref_of(created.request.callback_url)
        assert ref is not None
        await veo.track(["veo_tracked"])
        first = [task.task_id async for task in _acking(veo.completed())]
        assert sorted(first) == sorted([created.task_id, "veo_tracked"])
    async with durable(kie, db) as veo:
        delivered: list[str] = []
        consumer = _consuming(veo, delivered)
        await asyncio.sleep(0.1)
        assert await veo.reconcile(ref, created.task_id) is True
        handed_in = veo.task("veo_tracked")
        await handed_in.wait(timeout=10)
        await asyncio.sleep(0.5)
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        assert delivered == []
    assert kie.created == 1


def _consuming(veo: VeoSession, delivered: list[str]) -> asyncio.Task[None]:
    """A task iterating ``veo.completed(follow=True)``: each id put in
    ``delivered``, then acknowledged."""

    async def consume() -> None:
        async for task in veo.completed(follow=True):
            delivered.append(task.task_id)
            await task.ack()

    return asyncio.create_task(consume())


async def _acking(results: AsyncIterator[VeoTask]) -> AsyncIterator[VeoTask]:
    """Each result, acknowledged once the caller has it."""
    async for task in results:
        yield task
        await task.ack()


@pytest.mark.parametrize("then", ["close", "enter"])
def test_a_handle_made_before_any_loop_runs_is_tracked_all_the_same(db: Path, then: str) -> None:
    """``veo.task(id)`` has no I/O, so it may be called before a loop runs, as
    it may without a store: with one it raised "no running event loop" after
    queueing the id. The id is written with the next write, or at the close."""
    kie = FakeKie(api_key=API_KEY)
    veo = session_on(kie, store=store_at(db))
    handle = veo.task("veo_early")
    assert handle.task_id == "veo_early"

    async def later() -> list[str]:
        if then == "enter":
            async with veo:
                pass
        else:
            await veo.aclose()
        store = await stored(db)
        try:
            return [task.task_id for task in await store.unfinished()]
        finally:
            await store.aclose()
            await kie.close()

    assert asyncio.run(later()) == ["veo_early"]


class _CountedOpens(SQLiteStore):
    """A store file that counts the times it is asked to open."""

    opens = 0

    async def open(self) -> None:
        self.opens += 1
        await super().open()


def test_a_store_that_failed_to_open_is_not_tried_again_by_the_close(db: Path) -> None:
    """An id queued before any loop ran, then an enter whose store is locked
    by another session: the store is asked to open once (the close asked
    again to write the id: the lock timeout paid twice, and the close's
    error raised in place of the enter's)."""
    kie = FakeKie(api_key=API_KEY)
    store = _CountedOpens(db, flush_interval=FLUSH, lock_timeout=0.2)
    early = session_on(kie, store=store)
    early.task("veo_early")  # no loop runs yet

    async def enter_while_held() -> None:
        async with session_on(kie, store=store_at(db)):
            with pytest.raises(StoreLockedError):
                async with early:
                    pass

    try:
        asyncio.run(enter_while_held())
    finally:
        asyncio.run(kie.close())
    assert store.opens == 1
