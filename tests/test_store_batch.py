"""SQLiteStore's bulk paths: record_text, write_behind(), multi-row statements,
tracked ids as one JSON array, terminal rows rewritten whole, the page size."""

from __future__ import annotations

import datetime as dt
import enum
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings

from veo_async._durable import write_each
from veo_async.models import RecordInfo, TaskStatus, VideoResult
from veo_async.store import (
    SQLiteStore,
    StoredTask,
    WriteBehindBatches,
    new_ref,
    record_to_json,
)
from veo_async.store._codec import record_text
from veo_async.store._schema import PAGE_SIZE, ROWS_PER_STATEMENT
from veo_async.store._sqlite_batch import ids_json
from veo_async.store._text import dumps

from .test_store import _records, finished, make_store

#: SQLite runs in aiosqlite's thread: real time.
pytestmark = pytest.mark.real_time

NOW = time.time()


def general_text(record: RecordInfo) -> str:
    """What the store wrote before record_text: the dict, then the general dumps."""
    return dumps(record_to_json(record))


# ------------------------------------------------------------------ record_text


@settings(max_examples=300, deadline=None)
@given(_records)
def test_record_text_means_what_the_general_path_writes(record: RecordInfo) -> None:
    """record_text reads back as dumps(record_to_json(record)) does, for any record."""
    assert json.loads(record_text(record)) == json.loads(general_text(record))


class _Colour(enum.Enum):
    RED = "red"


def _odd(**changes: Any) -> RecordInfo:
    """finished("t1") with some fields changed (attrs checks no types)."""
    record = finished("t1")
    return RecordInfo(**{**{f: getattr(record, f) for f in record_to_json(record)}, **changes})


@pytest.mark.parametrize(
    "record",
    [
        pytest.param(_odd(params={"x": float("nan")}), id="nan-param"),
        pytest.param(_odd(params={"x": [1, {"y": float("inf")}]}), id="nested-inf-param"),
        pytest.param(_odd(params={"x": 1.5, "y": [True, None]}), id="nested-params"),
        pytest.param(_odd(params={"x": dt.datetime(2025, 1, 1)}), id="datetime-param"),
        pytest.param(_odd(params={"x": 2**70}), id="big-int-param"),
        pytest.param(_odd(error_code=2**70), id="big-int-code"),
        pytest.param(_odd(error_code=1.5), id="float-code"),
        pytest.param(_odd(error_code=float("nan")), id="nan-code"),
        pytest.param(_odd(task_id=_Colour.RED), id="enum-id"),
        pytest.param(_odd(error_message="\ud800"), id="lone-surrogate"),
        pytest.param(_odd(params=[1, 2]), id="params-not-a-dict"),
        pytest.param(
            _odd(response=VideoResult("t1", ["https://x.example/a.mp4"])),  # type: ignore[arg-type]
            id="urls-list",
        ),
        pytest.param(
            _odd(response=VideoResult("t1", (TaskStatus.SUCCESS,))),  # type: ignore[arg-type]
            id="enum-url",
        ),
        pytest.param(_odd(response=None, status=TaskStatus.FAILED), id="no-response"),
    ],
)
def test_record_text_decides_odd_fields_as_the_general_path(record: RecordInfo) -> None:
    """Where a field is not JSON's own type, record_text gives the general path's text or error."""
    try:
        expected = json.loads(general_text(record))
    except (TypeError, ValueError) as exc:
        with pytest.raises(type(exc)):
            record_text(record)
    else:
        assert json.loads(record_text(record)) == expected


def test_record_text_refuses_what_is_not_a_record() -> None:
    """record_text of anything but a RecordInfo is a TypeError naming the type."""
    with pytest.raises(TypeError, match="dict"):
        record_text({"task_id": "t1"})  # type: ignore[arg-type]


# ------------------------------------------------------------------ write_behind


async def test_sqlite_store_takes_write_behind_batches(tmp_path: Path) -> None:
    """SQLiteStore is a WriteBehindBatches (durable tracking hands it batches)."""
    assert isinstance(SQLiteStore(tmp_path / "s.db"), WriteBehindBatches)


async def test_write_behind_writes_what_the_single_calls_write(tmp_path: Path) -> None:
    """One write_behind() call leaves the rows record_seen/record_terminal/mark_delivered leave."""
    ids = ["seen", "done", "seen-done", "delivered"]

    async def fill(store: SQLiteStore, batch: bool) -> list[StoredTask]:
        await store.track(ids, created_at=NOW - 100)
        seen = [("seen", NOW - 50), ("seen-done", NOW - 40), ("seen-done", NOW - 45)]
        terminal = [
            (task_id, finished(task_id), NOW - 20) for task_id in ("done", "seen-done", "delivered")
        ]
        delivered = [("delivered", NOW - 10), ("delivered", NOW - 5)]
        if batch:
            store.write_behind(seen, terminal, delivered)
        else:  # the single calls durable tracking makes for a store without batches
            await write_each(store, seen, terminal, delivered)
        await store.flush()
        return await store.list_tasks()

    async with make_store(tmp_path / "batch.db") as store:
        batched = await fill(store, batch=True)
    async with make_store(tmp_path / "single.db") as store:
        single = await fill(store, batch=False)
    assert batched == single
    by_id = {task.task_id: task for task in batched}
    assert by_id["seen-done"].first_seen_at == NOW - 45
    assert (by_id["delivered"].delivered_at, by_id["delivered"].deliveries) == (NOW - 5, 2)
    assert by_id["done"].record_info() == finished("done")


@pytest.mark.parametrize(
    ("seen", "terminal", "error"),
    [
        pytest.param([(1, NOW)], [], TypeError, id="id-not-str"),
        pytest.param([("", NOW)], [], ValueError, id="empty-id"),
        pytest.param([("t1", float("nan"))], [], ValueError, id="nan-time"),
        pytest.param([], [("t1", {"task_id": "t1"}, NOW)], TypeError, id="record-not-a-record"),
    ],
)
async def test_write_behind_refuses_a_bad_item_and_notes_nothing(
    tmp_path: Path, seen: list[Any], terminal: list[Any], error: type[Exception]
) -> None:
    """A malformed item raises before anything of the call is noted."""
    async with make_store(tmp_path / "s.db") as store:
        with pytest.raises(error):
            store.write_behind([("good", NOW), *seen], terminal)
        assert await store.list_tasks() == []


async def test_write_behind_stores_a_record_whose_params_json_cannot_hold(
    tmp_path: Path,
) -> None:
    """A record with a NaN in its params is written (the NaN as text) with the
    rest of the call, not refused with it: one such record used to block every
    later write of a session (its notes queued again each time)."""
    bad = RecordInfo("t1", TaskStatus.SUCCESS, params={"x": float("nan")})
    async with make_store(tmp_path / "s.db") as store:
        store.write_behind([("good", NOW)], [("t1", bad, NOW)])
        await store.flush()
        [row] = [task for task in await store.list_tasks() if task.task_id == "t1"]
        assert row.record is not None
        assert row.record["params"] == {"x": "nan"}


async def test_write_behind_needs_an_open_store(tmp_path: Path) -> None:
    """write_behind() on a store not opened yet is a RuntimeError, as every call is."""
    with pytest.raises(RuntimeError, match="not open"):
        SQLiteStore(tmp_path / "s.db").write_behind([("t1", NOW)])


# ------------------------------------------------------------ many rows at once


async def test_many_rows_land_across_statement_boundaries(tmp_path: Path) -> None:
    """Seen and terminal rows beyond one multi-row statement (full ones and a rest) all land."""
    n = ROWS_PER_STATEMENT * 2 + 37
    ids = [f"veo_task_{i:04d}" for i in range(n)]
    async with make_store(tmp_path / "s.db") as store:
        await store.track(ids, created_at=NOW - 100)
        store.write_behind(seen=[(task_id, NOW - 60) for task_id in ids])
        await store.flush()
        store.write_behind(terminal=[(task_id, finished(task_id), NOW - 30) for task_id in ids])
        await store.flush()
        tasks = await store.list_tasks()
    assert [task.task_id for task in tasks] == ids
    assert {(t.created_at, t.first_seen_at, t.terminal_at) for t in tasks} == {
        (NOW - 100, NOW - 60, NOW - 30)
    }
    assert all(task.record_info() == finished(task.task_id) for task in tasks)


async def test_terminal_row_keeps_every_other_column(tmp_path: Path) -> None:
    """Storing a terminal record (the row is rewritten whole) keeps ref, model, times, counts."""
    ref = new_ref()
    async with make_store(tmp_path / "s.db") as store:
        await store.record_intent(ref, "generate", {"model": "veo3"}, NOW - 100)
        await store.attach_task_id(ref, "t1", at=NOW - 99)
        await store.record_seen("t1", NOW - 90)
        await store.record_terminal("t1", record_to_json(finished("t1")), NOW - 80)
        await store.mark_delivered("t1", at=NOW - 70)
        await store.ack("t1", at=NOW - 60)
        before = await store.get("t1")
        # A later terminal record (a refresh) replaces the text, keeps the rest.
        later = finished("t1", TaskStatus.FAILED)
        store.write_behind(seen=[("t1", NOW - 95)], terminal=[("t1", later, NOW - 50)])
        await store.flush()
        after = await store.get("t1")
    assert before is not None
    assert after is not None
    assert after.record_info() == later
    assert (after.ref, after.model, after.created_at) == (ref, "veo3", NOW - 100)
    assert (after.first_seen_at, after.terminal_at) == (NOW - 90, NOW - 80)
    assert (after.delivered_at, after.deliveries, after.acked_at) == (NOW - 70, 1, NOW - 60)
    assert after.updated_at == NOW - 50


@pytest.mark.parametrize(
    "ids",
    [
        pytest.param(['quo"te', "back\\slash", "semi;colon", "per%cent", "a'b"], id="ascii"),
        pytest.param(["café", "日本", "emoji\U0001f600"], id="unicode"),
    ],
)
async def test_tracked_ids_come_back_exactly(tmp_path: Path, ids: list[str]) -> None:
    """Many ids tracked at once (one JSON array, or rows) come back as the same strings."""
    async with make_store(tmp_path / "s.db") as store:
        await store.track([*ids, ids[0]], model="veo3", created_at=NOW - 10)
        tasks = await store.list_tasks()
    assert sorted(task.task_id for task in tasks) == sorted(ids)
    assert {(task.model, task.created_at) for task in tasks} == {("veo3", NOW - 10)}


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ("tab\there", "control characters"),
        ("new\nline", "control characters"),
        ("nul\x00inside", "control characters"),
        ("two ids", "whitespace"),
        (" padded", "surrounding whitespace"),
    ],
)
async def test_ids_a_session_could_not_poll_are_refused(
    tmp_path: Path, bad: str, problem: str
) -> None:
    """An id the session would refuse is refused by the store too, naming the
    problem, and nothing is written: one such row would stop every resume."""
    async with make_store(tmp_path / "s.db") as store:
        with pytest.raises(ValueError, match=problem):
            await store.track(["plain", bad])
        ref = new_ref()
        await store.record_intent(ref, "generate", {"prompt": "p"}, NOW)
        with pytest.raises(ValueError, match=problem):
            await store.attach_task_id(ref, bad)
        with pytest.raises(ValueError, match=problem):
            await store.reconcile(ref, bad)
        assert await store.list_tasks() == []


def test_ids_go_as_json_only_when_they_come_back_exactly() -> None:
    """ids_json: ASCII ids without NUL as a JSON array; anything else left to the row path."""
    assert ids_json(["a", 'b"c']) == '["a", "b\\"c"]'
    assert ids_json(["a", "é"]) is None
    assert ids_json(["a\x00b"]) is None


# ------------------------------------------------------------------- the file


async def test_a_new_file_has_large_pages_an_old_one_keeps_its_own(tmp_path: Path) -> None:
    """A new store file gets PAGE_SIZE pages; a file with other pages keeps them and works."""
    new, old = tmp_path / "new.db", tmp_path / "old.db"
    async with make_store(new) as store:
        await store.track(["t1"])
    async with make_store(old) as store:
        await store.track(["t1"])
    conn = sqlite3.connect(old, isolation_level=None)
    try:  # as a store made with 4 KiB pages would be
        conn.execute("PRAGMA journal_mode = DELETE")
        conn.execute("PRAGMA page_size = 4096")
        conn.execute("VACUUM")
    finally:
        conn.close()
    async with make_store(old) as store:
        await store.record_terminal("t1", record_to_json(finished("t1")), NOW)
        await store.flush()
        assert [task.task_id for task in await store.undelivered()] == ["t1"]
    sizes = {}
    for path in (new, old):
        conn = sqlite3.connect(path)
        try:
            sizes[path.name] = conn.execute("PRAGMA page_size").fetchone()[0]
        finally:
            conn.close()
    assert sizes == {"new.db": PAGE_SIZE, "old.db": 4096}
