"""Pins on the stores' record codec, their group-commit writer and their
argument checks, that mutation testing of ``store/_codec``, ``store/_writer``
and ``store/_base`` found no test holding: each test says which behaviour it
pins."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import types
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from veo_async import RecordInfo, SQLiteStore, TaskStatus, VideoResult
from veo_async.errors import StoreCorruptError, StoreError
from veo_async.store import new_ref, record_from_json, record_to_json
from veo_async.store._codec import record_text
from veo_async.store._writer import _MOST_FAILURES, GroupWriter, Op, Pending

NEVER = 3600.0
NOW = 1_750_000_000.0


def finished(task_id: str) -> RecordInfo:
    """A terminal record with every kind of field filled."""
    return RecordInfo(
        task_id=task_id,
        status=TaskStatus.SUCCESS,
        params={"prompt": "a fox", "model": "veo3_fast"},
        create_time=dt.datetime(2025, 6, 6, 10, 25, tzinfo=dt.timezone(dt.timedelta(hours=8))),
        complete_time=dt.datetime(2025, 6, 6, 10, 30, tzinfo=dt.timezone(dt.timedelta(hours=8))),
        response=VideoResult(task_id, (f"https://x.example/{task_id}.mp4",), resolution="1080p"),
    )


def make_store(path: Path, **kwargs: Any) -> SQLiteStore:
    """A store on *path* that never flushes by time, never waits for a lock, purges nothing."""
    kwargs.setdefault("flush_interval", NEVER)
    kwargs.setdefault("lock_timeout", 0.0)
    kwargs.setdefault("retention", None)
    return SQLiteStore(path, **kwargs)


# ------------------------------------------------------------------------ codec


def _stored(**changes: Any) -> dict[str, Any]:
    """record_to_json(finished("t1")) with some keys changed (a damaged row)."""
    return {**record_to_json(finished("t1")), **changes}


def test_the_stored_status_is_a_plain_int() -> None:
    """record_to_json writes the status as a plain int (the successFlag), not
    the TaskStatus enum, so that any JSON encoder writes it as the number."""
    status = record_to_json(finished("t1"))["status"]
    assert type(status) is int
    assert status == 1


@pytest.mark.parametrize("field", ["result_urls", "origin_urls", "full_result_urls"])
def test_a_url_that_is_not_text_is_refused_by_the_fast_writer_too(field: str) -> None:
    """record_text refuses a record whose URLs hold a datetime (TypeError, as
    json.dumps of record_to_json does), in every URL field: it does not
    write it as text of its own making."""
    urls: dict[str, Any] = {field: (dt.datetime(2025, 1, 1),)}
    record = RecordInfo("t1", TaskStatus.SUCCESS, response=VideoResult("t1", **urls))
    with pytest.raises(TypeError):
        record_text(record)


def test_a_stored_url_list_held_as_one_string_is_refused() -> None:
    """A stored record whose URL list is a string (a damaged row) is a
    ValueError naming the field, not a tuple of one-character "URLs"."""
    data = _stored(response={"task_id": "t1", "result_urls": "https://x.example/a.mp4"})
    with pytest.raises(ValueError, match="result_urls"):
        record_from_json(data)


def test_stored_params_that_are_not_an_object_are_refused() -> None:
    """A stored record whose params are not a JSON object is a ValueError
    naming params, not a record whose params are a list."""
    with pytest.raises(ValueError, match="params"):
        record_from_json(_stored(params=["a fox"]))


def test_a_stored_status_written_as_text_is_refused() -> None:
    """The stored status is the successFlag integer: the text "1" is a
    damaged row (ValueError naming status), not read as SUCCESS."""
    with pytest.raises(ValueError, match="status"):
        record_from_json(_stored(status="1"))


def test_a_stored_record_that_is_a_list_of_pairs_is_refused() -> None:
    """Only a JSON object is a stored record: a list of (key, value) pairs
    is a ValueError, not read as the dict it would make."""
    with pytest.raises(ValueError, match="list"):
        record_from_json(list(record_to_json(finished("t1")).items()))  # type: ignore[arg-type]


@pytest.mark.real_time  # SQLite's thread runs in real time
async def test_params_json_cannot_hold_are_stored_as_text_keeping_their_shape(
    tmp_path: Path,
) -> None:
    """A terminal record whose params hold what JSON cannot (a NaN inside a
    tuple, a key that is not a string) is stored, not refused: the NaN as
    text inside a list, the key as its text; every other field unchanged."""
    record = RecordInfo(
        "veo_t1",
        TaskStatus.SUCCESS,
        params={"nested": (1.5, float("nan")), (1, 2): "pair"},
        response=VideoResult("veo_t1", ("https://x.example/a.mp4",)),
    )
    async with make_store(tmp_path / "s.db") as store:
        await store.track(["veo_t1"], created_at=NOW)
        store.write_behind(terminal=[("veo_t1", record, NOW + 5)])
        stored = await store.get("veo_t1")
    assert stored is not None
    back = stored.record_info()
    assert back is not None
    assert back.params == {"nested": [1.5, "nan"], "(1, 2)": "pair"}
    assert back.response == record.response


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        pytest.param({"fallback": "false"}, "fallback", id="fallback-as-text"),
        pytest.param({"error_message": None}, "error_message", id="message-null"),
        pytest.param({"error_code": 1.9}, "error_code", id="code-fraction"),
        pytest.param({"task_id": 5}, "task_id", id="id-a-number"),
    ],
)
def test_a_stored_field_of_the_wrong_json_type_is_refused_not_converted(
    changes: dict[str, Any], field: str
) -> None:
    """The stored format is strict: a field of the wrong JSON type (a damaged
    row) is a ValueError naming it, not converted into another record
    ("false" read as True, null as the text "None", 1.9 as 1)."""
    with pytest.raises(ValueError, match=field):
        record_from_json(_stored(**changes))


# ----------------------------------------------------------------------- writer


class GatedApply:
    """A store's batch writing that records each batch's write-behind changes
    (task id -> seen_at, terminal, terminal_at, deliveries) and, while
    ``gate`` is set, waits for the test to open it before answering."""

    def __init__(self) -> None:
        self.batches: list[dict[str, tuple[float | None, str | None, float | None, int]]] = []
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()
        self.fail_next = False

    async def __call__(self, ops: list[Op], pending: dict[str, Pending]) -> list[object]:
        self.batches.append(
            {
                tid: (p.seen_at, p.terminal, p.terminal_at, p.deliveries)
                for tid, p in pending.items()
            }
        )
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
            self.gate = None
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("the server went away")
        return [None] * len(ops)


def writer_for(apply: Any, *, flush_interval: float = 0.0, batch_size: int = 1000) -> GroupWriter:
    return GroupWriter(
        apply,
        lambda exc: StoreError(f"writing failed ({exc})", path="test"),
        where="test",
        flush_interval=flush_interval,
        batch_size=batch_size,
    )


async def test_a_failed_batch_retried_under_newer_changes_keeps_the_first_times() -> None:
    """Changes noted while a batch was being written, and that batch then
    failed: the retry carries the newest terminal record, but the first
    sighting and the first terminal time (those of the failed batch)."""
    apply = GatedApply()
    writer = writer_for(apply)
    writer.start("writer")
    change = writer.change("t1")
    change.saw(1.0)
    change.ended('{"status": 1, "n": "first"}', 2.0)
    writer.noted()
    apply.gate = asyncio.Event()
    apply.fail_next = True
    first = asyncio.ensure_future(writer.flush())
    await apply.entered.wait()
    newer = writer.change("t1")  # noted while the batch is being written
    newer.saw(3.0)
    newer.ended('{"status": 1, "n": "second"}', 5.0)
    writer.noted()
    apply.gate.set()
    with pytest.raises(StoreError, match="went away"):
        await first
    await writer.flush()  # the retry
    assert apply.batches[-1] == {"t1": (1.0, '{"status": 1, "n": "second"}', 2.0, 0)}
    assert await writer.close() is None


_Apply = Callable[[list[Op], dict[str, Pending]], Awaitable[list[object]]]


def _writing_bad(apply: _Apply) -> GroupWriter:
    """A started GroupWriter over ``apply``, with a change of task "bad" noted
    (a failing batch raises StoreCorruptError)."""
    writer = GroupWriter(
        apply,
        lambda exc: StoreCorruptError(f"writing failed ({exc})", path="test"),
        where="test",
        flush_interval=0.0,
        batch_size=1000,
    )
    writer.start("writer")
    writer.change("bad").saw(1.0)
    writer.noted()
    return writer


async def test_a_change_renewed_while_it_fails_is_given_up_after_the_set_number_of_batches(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A change that fails every batch over what it holds (StoreCorruptError)
    is given up after exactly _MOST_FAILURES failed batches, also when new
    notes for its task arrive while those batches fail (their count is
    carried over); the flush that saw it given up raises, the next does not."""
    renewals = [2]

    async def apply(ops: list[Op], pending: dict[str, Pending]) -> list[object]:
        if "bad" in pending:
            if renewals[0]:
                renewals[0] -= 1
                writer.change("bad").saw(9.0)  # a poll notes the task again meanwhile
            raise RuntimeError("a key of the wrong type")
        return [None] * len(ops)

    writer = _writing_bad(apply)
    failed = 0
    for _ in range(3 * _MOST_FAILURES):
        try:
            await writer.flush()
        except StoreCorruptError:
            failed += 1
        else:
            break
    assert failed == _MOST_FAILURES
    assert "given up" in caplog.text
    await writer.flush()  # nothing lost since: nothing to raise
    assert await writer.close() is None


async def test_a_change_given_up_with_no_one_waiting_is_raised_by_the_next_flush(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A change given up by batches the writer wrote on its own (no flush
    waiting for them) is not forgotten: the next flush() raises that error,
    once; the flush after it raises nothing."""

    async def apply(ops: list[Op], pending: dict[str, Pending]) -> list[object]:
        if "bad" in pending:
            raise RuntimeError("a key of the wrong type")
        return [None] * len(ops)

    writer = _writing_bad(apply)
    await asyncio.sleep(60.0)  # the writer retries on its own, then gives up
    assert "given up" in caplog.text
    with pytest.raises(StoreCorruptError, match="wrong type"):
        await writer.flush()
    await writer.flush()
    assert await writer.close() is None


async def test_a_full_batch_of_write_behind_changes_is_written_without_waiting() -> None:
    """Changes for batch_size distinct tasks are written at once, not after
    the flush interval (virtual clock: one second of a one-hour interval)."""
    apply = GatedApply()
    writer = writer_for(apply, flush_interval=NEVER, batch_size=2)
    writer.start("writer")
    writer.change("t1").saw(1.0)
    writer.change("t2").saw(2.0)
    writer.noted()
    await asyncio.sleep(1.0)
    assert apply.batches == [{"t1": (1.0, None, None, 0), "t2": (2.0, None, None, 0)}]
    assert await writer.close() is None


async def test_a_write_behind_change_is_written_within_the_flush_interval_unasked() -> None:
    """A single write-behind change noted while the writer is idle, with no
    flush and no durable write after it, is written once the flush interval
    has passed (virtual clock)."""
    apply = GatedApply()
    writer = writer_for(apply, flush_interval=5.0)
    writer.start("writer")
    await asyncio.sleep(1.0)  # the writer idle, waiting for work
    writer.change("t1").saw(1.0)
    writer.noted()
    await asyncio.sleep(10.0)
    assert apply.batches == [{"t1": (1.0, None, None, 0)}]
    assert await writer.close() is None


async def test_a_flush_during_a_batch_returns_only_once_that_batch_is_written() -> None:
    """flush() called while the writer is writing a batch (nothing else
    queued) waits for that batch: what was handed over before it is written
    when it returns."""
    apply = GatedApply()
    writer = writer_for(apply)
    writer.start("writer")
    writer.change("t1").saw(1.0)
    writer.noted()
    apply.gate = gate = asyncio.Event()
    first = asyncio.ensure_future(writer.flush())
    await apply.entered.wait()
    second = asyncio.ensure_future(writer.flush())
    await asyncio.sleep(1.0)
    assert not second.done()
    gate.set()
    await asyncio.gather(first, second)
    assert apply.batches[0] == {"t1": (1.0, None, None, 0)}
    assert await writer.close() is None


@pytest.mark.real_time  # SQLite's thread runs in real time
async def test_a_terminal_record_noted_twice_before_a_batch_keeps_its_first_time(
    tmp_path: Path,
) -> None:
    """Two terminal records for one task noted before one batch: the store
    keeps the later record but the first terminal time (the first time counts)."""
    first = finished("veo_t1")
    later = RecordInfo("veo_t1", TaskStatus.SUCCESS, params={"again": True})
    async with make_store(tmp_path / "s.db") as store:
        await store.track(["veo_t1"], created_at=NOW)
        store.write_behind(terminal=[("veo_t1", first, NOW + 5)])
        store.write_behind(terminal=[("veo_t1", later, NOW + 9)])
        stored = await store.get("veo_t1")
    assert stored is not None
    assert stored.terminal_at == NOW + 5
    assert stored.record_info() == later


# ------------------------------------------------------------ argument checks


@pytest.mark.real_time  # SQLite's thread runs in real time
async def test_a_request_given_as_a_read_only_mapping_is_recorded(tmp_path: Path) -> None:
    """record_intent takes any Mapping as its request (its signature says so):
    a read-only view of a JSON object is recorded and read back as that
    object, not refused as "cannot be stored as JSON"."""
    async with make_store(tmp_path / "s.db") as store:
        ref = new_ref()
        request = types.MappingProxyType({"prompt": "a fox", "model": "veo3_fast"})
        await store.record_intent(ref, "generate", request, NOW)
        intent = await store.get_intent(ref)
    assert intent is not None
    assert intent.request == {"prompt": "a fox", "model": "veo3_fast"}


@pytest.mark.real_time  # SQLite's thread runs in real time
async def test_a_terminal_record_given_as_a_read_only_mapping_is_stored(tmp_path: Path) -> None:
    """record_terminal takes any Mapping as the record_to_json dict: a
    read-only view of it is stored, and read back after a restart as the
    same record."""
    path = tmp_path / "s.db"
    record = finished("veo_t1")
    async with make_store(path) as store:
        await store.track(["veo_t1"], created_at=NOW)
        await store.record_terminal(
            "veo_t1", types.MappingProxyType(record_to_json(record)), NOW + 5
        )
    async with make_store(path) as again:
        stored = await again.get("veo_t1")
    assert stored is not None
    assert stored.record_info() == record


@pytest.mark.real_time  # SQLite's thread runs in real time
@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"seen": [("veo_t1",)]}, id="seen-without-time"),
        pytest.param({"seen": [("veo_t1", NOW, NOW)]}, id="seen-with-three"),
        pytest.param({"terminal": [("veo_t1", NOW)]}, id="terminal-without-record"),
        pytest.param({"delivered": [("veo_t1",)]}, id="delivered-without-time"),
    ],
)
async def test_write_behind_refuses_an_item_of_the_wrong_length_with_a_type_error(
    tmp_path: Path, changes: dict[str, Any]
) -> None:
    """write_behind() raises TypeError for a malformed item (as its docstring
    says), also for a tuple of the wrong length, and notes nothing."""
    async with make_store(tmp_path / "s.db") as store:
        await store.track(["veo_t1"], created_at=NOW)
        with pytest.raises(TypeError):
            store.write_behind(**changes)
        stored = await store.get("veo_t1")
    assert stored is not None
    assert (stored.first_seen_at, stored.record, stored.deliveries) == (None, None, 0)


@pytest.mark.real_time  # SQLite's thread runs in real time
async def test_list_tasks_refuses_a_state_that_is_not_a_string_with_a_clear_error(
    tmp_path: Path,
) -> None:
    """A state that is not one of the names (here a list of one) is a
    ValueError listing the states, as an unknown name is, not the bare
    "unhashable type" TypeError of a set lookup."""
    async with make_store(tmp_path / "s.db") as store:
        with pytest.raises(ValueError, match="unfinished"):
            await store.list_tasks(["unfinished"])  # type: ignore[arg-type]


async def test_write_behind_changes_after_a_durable_write_wait_for_their_batch() -> None:
    """A durable write is written at once, but does not leave the writer in a
    hurry: a write-behind change noted after it waits for the flush interval
    (or a full batch, or a flush) to be written with others (virtual clock)."""
    apply = GatedApply()
    writer = writer_for(apply, flush_interval=NEVER)
    writer.start("writer")
    durable = asyncio.ensure_future(writer.submit("ack", "t0", NOW))
    await asyncio.sleep(1.0)
    assert durable.done()
    writer.change("t1").saw(1.0)
    writer.noted()
    await asyncio.sleep(1.0)
    assert apply.batches == [{}]
    await writer.flush()
    assert apply.batches == [{}, {"t1": (1.0, None, None, 0)}]
    assert await writer.close() is None


@pytest.mark.real_time  # SQLite's thread runs in real time
@pytest.mark.parametrize(
    ("call", "error"),
    [
        pytest.param(lambda s, ref: s.attach_task_id(ref, "veo_t1", ""), ValueError, id="model"),
        pytest.param(lambda s, ref: s.reconcile(ref, ""), ValueError, id="reconcile-id"),
        pytest.param(lambda s, ref: s.discard_intent("a b"), ValueError, id="discard-ref"),
        pytest.param(lambda s, ref: s.ack(""), ValueError, id="ack-id"),
        pytest.param(lambda s, ref: s.get(""), ValueError, id="get-id"),
        pytest.param(lambda s, ref: s.list_tasks(limit=True), ValueError, id="limit-bool"),
        pytest.param(lambda s, ref: s.purge(-0.5), ValueError, id="purge-negative"),
        pytest.param(lambda s, ref: s.record_seen("veo_t1", "now"), TypeError, id="seen-time"),
    ],
)
async def test_bad_arguments_are_refused_before_anything_is_written(
    tmp_path: Path, call: Any, error: type[Exception]
) -> None:
    """An invalid id, ref, model, limit, age or time is refused with a clear
    error, and the intent stays as it was (uncertain, not discarded)."""
    async with make_store(tmp_path / "s.db") as store:
        ref = new_ref()
        await store.record_intent(ref, "generate", {"prompt": "p"}, NOW)
        with pytest.raises(error):
            await call(store, ref)
        assert [i.ref for i in await store.uncertain()] == [ref]
        assert await store.list_tasks() == []


@pytest.mark.real_time  # SQLite's thread runs in real time
@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"seen": [("", NOW)]}, id="seen-empty-id"),
        pytest.param({"delivered": [("veo_t1", "now")]}, id="delivered-time"),
        pytest.param({"delivered": [("", NOW)]}, id="delivered-empty-id"),
    ],
)
async def test_write_behind_checks_every_item_before_noting_any(
    tmp_path: Path, changes: dict[str, Any]
) -> None:
    """write_behind() refuses an empty task id or a time that is not a
    number in any of its lists, and notes nothing of the call (not even its
    valid terminal record)."""
    async with make_store(tmp_path / "s.db") as store:
        await store.track(["veo_t1"], created_at=NOW)
        with pytest.raises((TypeError, ValueError)):
            store.write_behind(terminal=[("veo_t1", finished("veo_t1"), NOW)], **changes)
        stored = await store.get("veo_t1")
        assert stored is not None
        assert stored.record is None
        assert await store.list_tasks() == [stored]


def test_a_retention_of_zero_seconds_is_refused() -> None:
    """retention must be positive or None: 0 (which would purge every row
    at open) is a ValueError, not accepted."""
    with pytest.raises(ValueError, match="retention"):
        SQLiteStore("unused.db", retention=0)


@pytest.mark.real_time  # SQLite's thread runs in real time
async def test_explicit_times_are_the_ones_stored(tmp_path: Path) -> None:
    """mark_delivered(at=...) stores that time, and purge(now=...) measures
    ages from that now (not from the clock)."""
    async with make_store(tmp_path / "s.db") as store:
        await store.track(["veo_old"], created_at=NOW - 100)
        await store.track(["veo_new"], created_at=NOW)
        await store.record_terminal("veo_new", record_to_json(finished("veo_new")), NOW + 1)
        await store.mark_delivered("veo_new", at=NOW + 7)
        assert await store.purge(50, now=NOW) == 1
        stored = await store.get("veo_new")
        assert stored is not None
        assert stored.delivered_at == NOW + 7
        assert await store.get("veo_old") is None


@pytest.mark.real_time  # SQLite's thread runs in real time
async def test_an_open_whose_retention_purge_fails_leaves_the_store_closed_and_unlocked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """open() raises the error of its retention purge (a disk error) and
    leaves the store closed, its file lock let go: a new store opens the file."""
    path = tmp_path / "s.db"
    async with make_store(path):
        pass  # the file exists, with its schema
    real = aiosqlite.Connection.execute

    async def execute(self: aiosqlite.Connection, query: str, *args: Any) -> Any:
        if query.startswith("DELETE FROM tasks WHERE created_at"):
            raise sqlite3.OperationalError("disk I/O error")
        return await real(self, query, *args)

    monkeypatch.setattr(aiosqlite.Connection, "execute", execute)
    store = make_store(path, retention=86_400.0)
    with pytest.raises(StoreError):
        await store.open()
    assert store.closed
    monkeypatch.setattr(aiosqlite.Connection, "execute", real)
    async with make_store(path) as again:
        assert await again.list_tasks() == []
