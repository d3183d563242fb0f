"""Stores under cancellation and damage: a cancellation stays a cancellation,
nothing is left running, one damaged row costs that row only."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from veo_async import SQLiteStore, StoreCorruptError, StoreError
from veo_async.store._base import BatchedStore
from veo_async.store._sqlite_batch import write_batch
from veo_async.store._writer import Op
from veo_async.testing import FakeKie

from .conftest import leftover_tasks, session_on
from .test_store import make_store

Execute = Callable[..., Awaitable[Any]]


def _edit_file(path: Path, sql: str, *params: object) -> None:
    """Run one statement on the store's file by hand (a damaging edit), committed."""
    with sqlite3.connect(path) as raw:
        raw.execute(sql, params)
    raw.close()  # (the context manager commits; it does not close)


def _cancel_on_commit(monkeypatch: pytest.MonkeyPatch, *, commit_first: bool) -> None:
    """Cancel the task that runs COMMIT, as a cancellation landing mid-COMMIT does.

    *commit_first*: the COMMIT has ended in SQLite's thread when the
    cancellation arrives (so no transaction is left). Otherwise it is still
    queued there: the caller sees a transaction, and the COMMIT runs before
    the ROLLBACK that follows it (aiosqlite runs its calls in order).
    """
    real: Execute = aiosqlite.Connection.execute
    in_flight: list[aiosqlite.Connection] = []

    async def execute(self: aiosqlite.Connection, query: str, *args: Any) -> Any:
        if query == "ROLLBACK" and self in in_flight:
            in_flight.remove(self)
            await real(self, "COMMIT")
        if query != "COMMIT":
            return await real(self, query, *args)
        if commit_first:
            await real(self, query, *args)
        else:
            in_flight.append(self)
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        await asyncio.sleep(0)
        raise AssertionError("not reached: cancelled above")  # pragma: no cover

    monkeypatch.setattr(aiosqlite.Connection, "execute", execute)


@pytest.mark.parametrize("commit_first", [True, False], ids=["committed", "committing"])
async def test_open_cancelled_during_its_commit_raises_cancelled_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, commit_first: bool
) -> None:
    """open() cancelled while its schema COMMIT runs raises CancelledError, not
    StoreError("cannot rollback - no transaction is active"), and frees the file."""
    path = tmp_path / "s.db"
    store = make_store(path)
    with monkeypatch.context() as patched:
        _cancel_on_commit(patched, commit_first=commit_first)
        with pytest.raises(asyncio.CancelledError):
            await asyncio.ensure_future(store.open())
    await store.aclose()
    async with make_store(path) as again:
        assert await again.list_tasks() == []


@pytest.mark.parametrize("commit_first", [True, False], ids=["committed", "committing"])
async def test_a_batch_cancelled_during_its_commit_raises_cancelled_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, commit_first: bool
) -> None:
    """A group commit cancelled while its COMMIT runs raises CancelledError, not
    the failed ROLLBACK's sqlite3 error."""
    path = tmp_path / "s.db"
    async with make_store(path):
        pass
    conn = await aiosqlite.connect(path, isolation_level=None)
    try:
        loop = asyncio.get_running_loop()
        ops = [Op("track", (["veo_a", "veo_b"], None, time.time()), loop.create_future())]
        with monkeypatch.context() as patched:
            _cancel_on_commit(patched, commit_first=commit_first)
            with pytest.raises(asyncio.CancelledError):
                await asyncio.ensure_future(write_batch(conn, ops, {}))
        assert not conn.in_transaction
    finally:
        await conn.close()


# Real time: on the virtual clock, the close's waits for SQLite's thread move
# the clock past the writer's batching delay, and it ends by itself.
@pytest.mark.real_time
async def test_a_cancelled_session_close_leaves_no_durable_writer(
    tmp_path: Path, fake_kie: FakeKie
) -> None:
    """A session close cancelled while the durable writer waits to write a note
    still stops that writer: nothing of veo_async runs after the close returns."""
    veo = session_on(fake_kie, store=SQLiteStore(tmp_path / "s.db"))
    await veo.__aenter__()
    veo.task("veo_task_a")  # a note: the writer starts, waits to batch more
    assert "veo_async durable writer" in {t.get_name() for t in leftover_tasks()}
    closing = asyncio.ensure_future(veo.aclose())
    await asyncio.sleep(0.01)  # the close now waits for the writer
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    assert leftover_tasks() == set()
    async with make_store(tmp_path / "s.db") as again:  # the note was written all the same
        assert [t.task_id for t in await again.list_tasks()] == ["veo_task_a"]


async def _close_cancelled_inside_track(
    tmp_path: Path,
    fake_kie: FakeKie,
    monkeypatch: pytest.MonkeyPatch,
    track: Callable[..., Awaitable[Any]],
) -> asyncio.Future[None]:
    """A session's close, cancelled while its durable writer is inside
    ``track`` (patched in for the store's); the close raised CancelledError
    and left nothing running. Returns the close's future."""
    monkeypatch.setattr(BatchedStore, "track", track)
    veo = session_on(fake_kie, store=SQLiteStore(tmp_path / "s.db"))
    await veo.__aenter__()
    veo.task("veo_task_a")
    await asyncio.sleep(0.15)  # the writer is past its batching delay, in track()
    closing = asyncio.ensure_future(veo.aclose())
    await asyncio.sleep(0.01)
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    assert leftover_tasks() == set()
    monkeypatch.undo()
    return closing


@pytest.mark.real_time  # the writer's slow write runs in SQLite's thread
async def test_a_close_cancelled_while_the_writer_writes_keeps_its_note(
    tmp_path: Path, fake_kie: FakeKie, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The close is cancelled while the writer is inside its write (a slow
    disk): the note it holds is written all the same (stopping the writer put
    it back in a queue the close then cleared: the store ended empty)."""
    real_track = BatchedStore.track

    async def slow_track(self: BatchedStore, *args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0.3)
        return await real_track(self, *args, **kwargs)

    await _close_cancelled_inside_track(tmp_path, fake_kie, monkeypatch, slow_track)
    async with make_store(tmp_path / "s.db") as again:
        assert [t.task_id for t in await again.list_tasks()] == ["veo_task_a"]


@pytest.mark.real_time  # the writer's failing write runs in real time
async def test_a_cancelled_close_whose_write_fails_is_still_cancelled(
    tmp_path: Path,
    fake_kie: FakeKie,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The close is cancelled while the writer's write fails: the caller sees
    the cancellation (it saw the StoreError, the cancellation only its
    context), and the failure is logged."""

    async def failing_track(self: BatchedStore, *args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0.3)
        raise StoreError("disk full (simulated)", path=str(tmp_path))

    caplog.set_level(logging.WARNING, logger="veo_async")
    closing = await _close_cancelled_inside_track(tmp_path, fake_kie, monkeypatch, failing_track)
    assert closing.cancelled()
    assert any("disk full (simulated)" in r.getMessage() for r in caplog.records)


@pytest.mark.real_time  # SQLite's thread runs in real time
async def test_open_cancelled_while_connecting_leaves_no_thread(tmp_path: Path) -> None:
    """open() cancelled at any step, connecting included, has let SQLite's
    worker thread end by the time the CancelledError (and aclose()) returns:
    else it outlives the loop and hands its result to a closed one."""
    before = set(threading.enumerate())
    for steps in range(8):
        store = make_store(tmp_path / "s.db")
        opening = asyncio.ensure_future(store.open())
        for _ in range(steps):
            await asyncio.sleep(0)
        opening.cancel()
        with pytest.raises(asyncio.CancelledError):
            await opening
        await store.aclose()
        alive = [t.name for t in set(threading.enumerate()) - before if t.is_alive()]
        assert alive == [], f"cancelled after {steps} step(s)"


@pytest.mark.parametrize(
    "request_text", ["{not json", "[1, 2]", "null"], ids=["not-json", "array", "null"]
)
async def test_a_damaged_intent_row_is_left_out_with_a_warning(
    tmp_path: Path, fake_kie: FakeKie, caplog: pytest.LogCaptureFixture, request_text: str
) -> None:
    """An intent row whose request is not a JSON object (a hand edit, bit rot)
    is left out of uncertain(), intents() and resume() with a warning naming
    its ref (not its content); the other intents are reported. Asked for by
    ref, it raises StoreCorruptError, not a raw json error."""
    path = tmp_path / "s.db"
    async with make_store(path) as store:
        await store.record_intent("ref_damaged_0001", "generate", {"prompt": "a fox"}, time.time())
        await store.record_intent("ref_intact_00002", "generate", {"prompt": "a cat"}, time.time())
    _edit_file(path, "UPDATE intents SET request = ? WHERE ref = 'ref_damaged_0001'", request_text)
    caplog.set_level(logging.WARNING, logger="veo_async")
    async with make_store(path) as store:
        assert [i.ref for i in await store.uncertain()] == ["ref_intact_00002"]
        assert [i.ref for i in await store.intents()] == ["ref_intact_00002"]
        with pytest.raises(StoreCorruptError, match="ref_damaged_0001"):
            await store.get_intent("ref_damaged_0001")
    async with session_on(fake_kie, store=make_store(path)) as veo:
        report = await veo.resume()
        assert [i.ref for i in report.uncertain] == ["ref_intact_00002"]
    warned = [r.getMessage() for r in caplog.records if "ref_damaged_0001" in r.getMessage()]
    assert warned
    assert not any(request_text in message for message in warned)


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("created_at", "'garbage'"),
        ("first_seen_at", "'garbage'"),
        ("deliveries", "'garbage'"),
        ("created_at", "1.7e12"),  # milliseconds: year 55840
        ("model", "X'00ff'"),  # a BLOB
    ],
    ids=["text-time", "text-seen", "text-count", "ms-time", "blob-model"],
)
async def test_a_damaged_sqlite_task_row_is_left_out_of_a_resume_with_a_warning(
    tmp_path: Path,
    fake_kie: FakeKie,
    caplog: pytest.LogCaptureFixture,
    column: str,
    value: str,
) -> None:
    """A task row whose time, count or text column holds what it cannot (a
    hand edit) is left out of the listings and resume() with a warning naming
    it (resume raised a TypeError, ValueError or OverflowError from deep
    inside, for every task); asked for by id, it raises StoreCorruptError."""
    path = tmp_path / "s.db"
    kie_ids = ["veo_task_damaged", "veo_task_intact"]
    for task_id in kie_ids:
        fake_kie.add_task(task_id)
    async with make_store(path) as store:
        await store.track(kie_ids)
    _edit_file(
        path,
        f"UPDATE tasks SET {column} = {value}, ref = 'ref_damaged_0001' "
        "WHERE task_id = 'veo_task_damaged'",
    )
    caplog.set_level(logging.WARNING, logger="veo_async")
    async with make_store(path) as store:
        assert [t.task_id for t in await store.list_tasks()] == ["veo_task_intact"]
        with pytest.raises(StoreCorruptError, match="veo_task_damaged"):
            await store.get("veo_task_damaged")
    async with session_on(fake_kie, store=make_store(path)) as veo:
        report = await veo.resume()
        assert [t.task_id for t in report.tasks] == ["veo_task_intact"]
    assert any("veo_task_damaged" in r.getMessage() for r in caplog.records)
