"""The durable task store: its record codec, and SQLiteStore on real files.

Crash, lock and write-behind tests run a second Python process on the same
file (``_CHILD`` below) and kill it with SIGKILL, the closest a test gets to a
redeploy or an OOM kill.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import importlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from veo_async.errors import (
    StoreCorruptError,
    StoreError,
    StoreLockedError,
    StoreVersionError,
    VeoError,
)
from veo_async.models import RecordInfo, TaskStatus, VideoResult
from veo_async.store import (
    SQLiteStore,
    TaskStore,
    _text,
    new_ref,
    record_from_json,
    record_to_json,
)

from .conftest import child_bytecode_env, eventually, leftover_tasks

#: SQLite runs in aiosqlite's thread and child processes: real time.
pytestmark = pytest.mark.real_time

ROOT = Path(__file__).resolve().parent.parent
NOW = time.time()
#: Long enough that write-behind changes are committed only by flush/aclose/batch size.
NEVER = 3600.0


def finished(task_id: str, status: TaskStatus = TaskStatus.SUCCESS) -> RecordInfo:
    """A terminal record with every kind of field filled."""
    return RecordInfo(
        task_id=task_id,
        status=status,
        params={"prompt": "a fox", "model": "veo3_fast", "seeds": [12345]},
        create_time=dt.datetime(2025, 6, 6, 2, 25, tzinfo=dt.timezone.utc),
        complete_time=dt.datetime(2025, 6, 6, 10, 30, tzinfo=dt.timezone(dt.timedelta(hours=8))),
        response=VideoResult(task_id, (f"https://x.example/{task_id}.mp4",), resolution="1080p"),
    )


def make_store(path: Path, **kwargs: Any) -> SQLiteStore:
    """A store on *path* that never flushes by time and never waits for a lock."""
    kwargs.setdefault("flush_interval", NEVER)
    kwargs.setdefault("lock_timeout", 0.0)
    return SQLiteStore(path, **kwargs)


# ------------------------------------------------------------------------ codec

_json_scalars: st.SearchStrategy[object] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.text(),
    st.floats(allow_nan=False, allow_infinity=False),
)
_json_values = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)
_offsets = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(
    lambda minutes: dt.timezone(dt.timedelta(minutes=minutes))
)
_times = st.none() | st.datetimes(timezones=_offsets)
_urls = st.lists(st.text(), max_size=3).map(tuple)
_results = st.builds(
    VideoResult,
    task_id=st.text(),
    result_urls=_urls,
    origin_urls=_urls,
    full_result_urls=_urls,
    resolution=st.none() | st.text(),
)
_records = st.builds(
    RecordInfo,
    task_id=st.text(),
    status=st.sampled_from(TaskStatus),
    params=st.dictionaries(st.text(), _json_values, max_size=4),
    create_time=_times,
    complete_time=_times,
    response=st.none() | _results,
    error_code=st.none() | st.integers(),
    error_message=st.text(),
    fallback=st.booleans(),
)


@settings(max_examples=200, deadline=None)
@given(_records)
def test_codec_round_trips_through_json(record: RecordInfo) -> None:
    """Any record survives record_to_json -> JSON text -> record_from_json unchanged."""
    text = json.dumps(record_to_json(record), allow_nan=False)
    back = record_from_json(json.loads(text))
    assert back == record
    # Equal datetimes may differ in offset; the stored one keeps it too.
    pairs = ((back.create_time, record.create_time), (back.complete_time, record.complete_time))
    for mine, theirs in pairs:
        assert (mine.utcoffset() if mine else None) == (theirs.utcoffset() if theirs else None)


def test_codec_format() -> None:
    """Status is the successFlag integer, times ISO text with offset, URL tuples lists."""
    data = record_to_json(finished("t1"))
    assert data["status"] == 1
    assert data["complete_time"] == "2025-06-06T10:30:00+08:00"
    assert data["response"]["result_urls"] == ["https://x.example/t1.mp4"]
    assert data["response"]["origin_urls"] == []


def test_codec_writes_every_field() -> None:
    """record_to_json (written by hand) has one key per field of RecordInfo and VideoResult."""
    data = record_to_json(finished("t1"))
    assert list(data) == [field.name for field in attrs.fields(RecordInfo)]
    assert list(data["response"]) == [field.name for field in attrs.fields(VideoResult)]
    assert record_to_json(RecordInfo("t2", TaskStatus.FAILED))["response"] is None


def test_codec_refuses_what_is_not_a_record() -> None:
    """record_to_json of anything but a RecordInfo is a TypeError naming the type."""
    with pytest.raises(TypeError, match="dict"):
        record_to_json({"task_id": "t1"})  # type: ignore[arg-type]


# -------------------------------------------------------------- column text

_any_json = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),  # beyond 64 bits too: orjson refuses those, the stdlib writes them
        st.text(),  # lone surrogates too: orjson refuses those
        st.floats(allow_nan=False, allow_infinity=False),
    ),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(st.text(), inner, max_size=3)
    ),
    max_leaves=12,
)


@pytest.fixture(params=["fast", "stdlib"])
def text_module(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """store._text with orjson (when installed) and with orjson hidden."""
    if request.param == "fast":
        pytest.importorskip("orjson")
        yield _text
        return
    monkeypatch.setitem(sys.modules, "orjson", None)  # import orjson now fails
    importlib.reload(_text)
    try:
        yield _text
    finally:
        monkeypatch.undo()
        importlib.reload(_text)


@settings(
    max_examples=300,
    deadline=None,
    # The fixture only picks the module variant: the same for every example.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(value=st.dictionaries(st.text(), _any_json, max_size=4))
def test_column_text_means_what_json_dumps_writes(text_module: Any, value: dict[str, Any]) -> None:
    """The store's JSON text reads back as json.dumps(value)'s does, with or without orjson."""
    assert json.loads(text_module.dumps(value)) == json.loads(json.dumps(value))


@pytest.mark.parametrize(
    "value",
    [
        pytest.param({"x": float("nan")}, id="nan"),
        pytest.param({"x": [1, {"y": float("-inf")}]}, id="nested-inf"),
        pytest.param({"x": {1, 2}}, id="set"),
        pytest.param({"x": dt.datetime(2025, 1, 1)}, id="datetime"),
        pytest.param({"x": TaskStatus.SUCCESS}, id="int-enum"),
        pytest.param({1: "int key"}, id="int-key"),
        pytest.param({"x": 2**70}, id="big-int"),
        pytest.param({"x": "\ud800"}, id="lone-surrogate"),
    ],
)
def test_column_text_refuses_what_json_dumps_refuses(text_module: Any, value: Any) -> None:
    """Where orjson and the stdlib differ, the stdlib decides: same text meaning, same errors."""
    try:
        expected = json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        with pytest.raises(type(exc)):
            text_module.dumps(value)
    else:
        assert json.loads(text_module.dumps(value)) == expected


@pytest.mark.parametrize(
    ("data", "field"),
    [
        pytest.param({"task_id": "t"}, "status", id="missing-status"),
        pytest.param({"task_id": "t", "status": 7}, "status", id="unknown-status"),
        pytest.param({"task_id": "t", "status": 1, "create_time": 5}, "create_time", id="time"),
    ],
)
def test_codec_rejects_a_damaged_row(data: dict[str, Any], field: str) -> None:
    """A stored record that cannot be read raises ValueError naming the field."""
    with pytest.raises(ValueError, match=field):
        record_from_json(data)


# ----------------------------------------------------------- second processes

_CHILD = r"""
import asyncio, sys, time
from veo_async.store import SQLiteStore, new_ref

async def main(mode, path):
    store = SQLiteStore(path, flush_interval=3600, lock_timeout=0)
    await store.open()
    if mode == "hold":
        print("ready", flush=True)
        await asyncio.sleep(3600)
    elif mode == "intents":
        await store.track(["tracked-by-child"])
        n = 0
        while True:
            ref = new_ref()
            await store.record_intent(ref, "generate", {"prompt": f"p{n}"}, time.time())
            print(ref, flush=True)
            n += 1
    elif mode in ("flush", "no-flush"):
        await store.track(["t1"])
        await store.record_seen("t1", 100.0)
        await store.record_terminal("t1", {"task_id": "t1", "status": 1}, 200.0)
        if mode == "flush":
            await store.flush()
        print("ready", flush=True)
        await asyncio.sleep(3600)

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


@contextmanager
def child(mode: str, path: Path) -> Iterator[subprocess.Popen[str]]:
    """A second process running ``_CHILD`` on *path*; SIGKILLed on exit if still alive."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, mode, str(path)],
        cwd=ROOT,
        env=child_bytecode_env(dict(os.environ)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        kill(proc)


def kill(proc: subprocess.Popen[str]) -> str:
    """SIGKILL the process (no cleanup of any kind runs) and reap it; its stderr."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    _, err = proc.communicate()
    return err


def read_line(proc: subprocess.Popen[str]) -> str:
    """The child's next output line; fails with its stderr when it died instead."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        pytest.fail(f"child exited early: {kill(proc)}")
    return line.strip()


# ------------------------------------------------------------------ lifecycle


async def test_store_satisfies_the_protocol(tmp_path: Path) -> None:
    """SQLiteStore is a TaskStore (the contract a session is written against)."""
    assert isinstance(SQLiteStore(tmp_path / "s.db"), TaskStore)


async def test_aclose_is_idempotent_and_leaves_nothing_running(tmp_path: Path) -> None:
    """aclose twice is fine; after it no writer task and no SQLite thread remain."""
    threads = set(threading.enumerate())
    store = make_store(tmp_path / "s.db")
    await store.open()
    await store.open()  # a second open does nothing
    assert leftover_tasks()  # the writer runs while open: the check can fail
    assert set(threading.enumerate()) - threads  # and so does the connection's thread
    await store.aclose()
    await store.aclose()
    assert store.closed
    assert not leftover_tasks()
    assert await eventually(lambda: set(threading.enumerate()) <= threads)


async def test_closed_store_refuses_use(tmp_path: Path) -> None:
    """A closed store cannot be written, read or reopened: RuntimeError says so."""
    store = make_store(tmp_path / "s.db")
    await store.aclose()  # never opened: just closed
    with pytest.raises(RuntimeError, match="closed"):
        await store.open()
    async with make_store(tmp_path / "t.db") as other:
        pass
    with pytest.raises(RuntimeError, match="not open"):
        await other.track(["t1"])
    with pytest.raises(RuntimeError, match="not open"):
        await other.record_seen("t1", NOW)
    with pytest.raises(RuntimeError, match="not open"):
        await other.unfinished()


async def test_one_file_after_close(tmp_path: Path) -> None:
    """A closed store is one file: the WAL is checkpointed away, no lock file remains."""
    async with make_store(tmp_path / "s.db") as store:
        await store.track(["t1"])
    assert os.listdir(tmp_path) == ["s.db"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"retention": 0}, "retention", id="retention"),
        pytest.param({"flush_interval": -1}, "flush_interval", id="interval"),
        pytest.param({"batch_size": 0}, "batch_size", id="batch"),
        pytest.param({"lock_timeout": float("nan")}, "lock_timeout", id="lock-timeout"),
    ],
)
def test_bad_settings(tmp_path: Path, kwargs: dict[str, Any], message: str) -> None:
    """Bad settings raise ValueError naming the setting, at construction."""
    with pytest.raises(ValueError, match=message):
        SQLiteStore(tmp_path / "s.db", **kwargs)


@pytest.mark.parametrize("path", [":memory:", "", "file:x?mode=memory", "a\x00b.db"])
def test_path_must_be_a_file(path: str) -> None:
    """In-memory and URI paths are refused: a store is durable or nothing; so
    is a NUL character (no file system takes one; sqlite3 raised a bare
    ValueError only when the session was entered, and left its thread)."""
    with pytest.raises(ValueError, match="path"):
        SQLiteStore(path)


# ----------------------------------------------------------------- durability


async def test_write_behind_waits_for_flush_and_flush_commits(tmp_path: Path) -> None:
    """Seen/terminal changes are lost in a crash before flush() and kept after it."""
    for mode, expected in (("no-flush", None), ("flush", 200.0)):
        path = tmp_path / f"{mode}.db"
        with child(mode, path) as proc:
            assert read_line(proc) == "ready"
        async with make_store(path) as store:
            task = await store.get("t1")
            assert task is not None  # track() is durable in both runs
            assert task.terminal_at == expected
            assert task.first_seen_at == (None if expected is None else 100.0)


async def test_aclose_commits_write_behind(tmp_path: Path) -> None:
    """aclose() commits pending write-behind changes, whatever the interval."""
    path = tmp_path / "s.db"
    async with make_store(path) as store:
        await store.record_seen("t1", NOW)
        await store.mark_delivered("t1", at=NOW)
    async with make_store(path) as store:
        task = await store.get("t1")
        assert task is not None
        assert (task.first_seen_at, task.deliveries) == (NOW, 1)


async def test_write_behind_commits_within_the_interval(tmp_path: Path) -> None:
    """With a short flush_interval a change reaches the file without flush() or aclose()."""
    path = tmp_path / "s.db"
    async with make_store(path, flush_interval=0.01) as store:
        before = _wal_bytes(path)
        await store.record_seen("t1", NOW)
        # The store's own reads would flush; watch the write-ahead log grow instead.
        assert await eventually(lambda: _wal_bytes(path) > before)


def _wal_bytes(path: Path) -> int:
    """The size of the store's write-ahead log (it grows with each commit)."""
    wal = Path(f"{path}-wal")
    return wal.stat().st_size if wal.exists() else 0


async def test_intents_are_durable_before_return_across_sigkill(tmp_path: Path) -> None:
    """Every intent whose record_intent() returned before a SIGKILL is in the file after."""
    path = tmp_path / "s.db"
    with child("intents", path) as proc:
        refs = [read_line(proc) for _ in range(20)]
        kill(proc)  # mid-stream: the child is writing the next intent
    async with make_store(path) as store:
        for ref in refs:
            intent = await store.get_intent(ref)
            assert intent is not None
            assert intent.uncertain
            assert intent.request["prompt"].startswith("p")
        assert await store.get("tracked-by-child") is not None
        assert len(await store.uncertain()) >= len(refs)


# ------------------------------------------------------------------- delivery


# ---------------------------------------------------------- intents, reconcile


def test_new_ref_survives_a_query_string() -> None:
    """A new ref is unique and needs no escaping in a callback URL's query."""
    from urllib.parse import parse_qs, urlencode

    refs = {new_ref() for _ in range(100)}
    assert len(refs) == 100
    for ref in refs:
        assert urlencode({"ref": ref}) == f"ref={ref}"
        assert parse_qs(f"ref={ref}")["ref"] == [ref]


# ---------------------------------------------------------------- housekeeping


# ---------------------------------------------------------------- clear errors


async def test_store_held_by_another_process(tmp_path: Path) -> None:
    """A store open in another process is refused with StoreLockedError, and usable once it dies."""
    path = tmp_path / "s.db"
    threads = set(threading.enumerate())
    with child("hold", path) as proc:
        assert read_line(proc) == "ready"
        with pytest.raises(StoreLockedError) as info:
            await make_store(path).open()
        assert str(path) in str(info.value)
        assert "another process" in str(info.value)
        assert info.value.retryable is False
        assert isinstance(info.value, VeoError)
        kill(proc)  # SIGKILL: no cleanup, the OS drops the lock
    async with make_store(path) as store:
        assert await store.list_tasks() == []
    assert await eventually(lambda: set(threading.enumerate()) <= threads)


async def test_store_held_by_another_store_in_this_process(tmp_path: Path) -> None:
    """Two stores on one file in one process: the second is refused."""
    async with make_store(tmp_path / "s.db"):
        with pytest.raises(StoreLockedError):
            await make_store(tmp_path / "s.db").open()


async def test_not_a_database(tmp_path: Path) -> None:
    """A file that is not SQLite gives StoreCorruptError naming it; the file is left alone."""
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes, not a database\n" * 200)
    threads = set(threading.enumerate())
    with pytest.raises(StoreCorruptError) as info:
        await make_store(path).open()
    assert str(path) in str(info.value)
    assert "move the file aside" in str(info.value)
    assert path.read_bytes().startswith(b"these are my notes")
    assert await eventually(lambda: set(threading.enumerate()) <= threads)


async def test_damaged_store(tmp_path: Path) -> None:
    """A store with a page overwritten gives StoreCorruptError at open (quick_check)."""
    path = tmp_path / "s.db"
    async with make_store(path) as store:
        await store.track([f"veo_task_{n:06d}" for n in range(3000)])
    data = bytearray(path.read_bytes())
    data[-3 * 4096 : -2 * 4096] = b"\xff" * 4096  # an index page near the end
    path.write_bytes(bytes(data))
    with pytest.raises(StoreCorruptError, match=r"damaged|malformed"):
        await make_store(path).open()


async def test_some_other_sqlite_database(tmp_path: Path) -> None:
    """Another application's SQLite file is refused, not adopted."""
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (name TEXT)")
    conn.close()
    with pytest.raises(StoreCorruptError, match="not a veo_async task store"):
        await make_store(path).open()


@pytest.mark.parametrize("tables", ["users", "schema_version"], ids=["foreign", "store-names"])
async def test_a_refused_file_keeps_its_journal_mode_and_a_store_is_in_wal(
    tmp_path: Path, tables: str
) -> None:
    """Opening refuses a file that is not a store without changing it: its
    journal mode (a lasting property of the file, which the other program
    relies on) stays as it was; was switched to WAL before the check. A new
    store file, and the same after a reopen, is in WAL mode."""
    path = tmp_path / "app.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        if tables == "users":
            conn.execute("CREATE TABLE users (name TEXT)")
        else:  # store table names, a store's version, no other table
            conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            conn.execute("INSERT INTO schema_version (version) VALUES (1)")
        conn.commit()
    with pytest.raises(StoreCorruptError):
        await make_store(path).open()
    assert _wal_bytes(path) == 0  # no log made
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    store_path = tmp_path / "veo.db"
    for _ in range(2):
        store = make_store(store_path)
        await store.open()
        await store.aclose()
        with contextlib.closing(sqlite3.connect(store_path)) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_a_file_with_the_store_tables_but_other_columns_is_refused(
    tmp_path: Path,
) -> None:
    """A file with tables named like a store's but not its columns (another
    program's, or altered by hand) is refused at open, naming the table and
    the column, and left untouched: it opened, then failed its first write
    with a bare StoreError ("no such column")."""
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_version (version) VALUES (1)")
        conn.execute("CREATE TABLE intents (ref TEXT PRIMARY KEY, kind TEXT, request TEXT, "
                     "created_at REAL, task_id TEXT)")
        conn.execute("CREATE TABLE tasks (task_id TEXT PRIMARY KEY, status TEXT)")
    conn.close()  # (the context manager commits; it does not close)
    schema = "SELECT name, sql FROM sqlite_master ORDER BY name"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        before = conn.execute(schema).fetchall()
    lacking = r"table tasks lacks column\(s\) acked_at, "
    with pytest.raises(StoreCorruptError, match=lacking) as info:
        await make_store(path).open()
    assert "not a veo_async task store" in str(info.value)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute(schema).fetchall() == before  # nothing created or altered
    # A store this code made passes the same check, with rows or without.
    fresh = tmp_path / "s.db"
    async with make_store(fresh) as store:
        await store.track(["t1"])
    async with make_store(fresh) as store:
        assert [task.task_id for task in await store.unfinished()] == ["t1"]


async def test_newer_schema_is_refused_untouched(tmp_path: Path) -> None:
    """A file written with a newer schema gives StoreVersionError and is not modified."""
    path = tmp_path / "s.db"
    async with make_store(path) as store:
        await store.track(["t1"])
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE schema_version SET version = 2")
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StoreVersionError) as info:
        await make_store(path).open()
    assert (info.value.found, info.value.supported) == (2, 1)
    assert "newer" in str(info.value)
    assert str(path) in str(info.value)
    assert path.read_bytes() == before


async def test_unusable_path(tmp_path: Path) -> None:
    """A store in a missing directory gives a StoreError saying the directory is missing."""
    with pytest.raises(StoreError, match=r"directory \S*missing does not exist"):
        await make_store(tmp_path / "missing" / "s.db").open()


async def test_a_directory_path_is_named_as_such(tmp_path: Path) -> None:
    """A store path that is a directory says so (not "check that the directory exists")."""
    with pytest.raises(StoreError, match="it is a directory: give the path of a file in it"):
        await make_store(tmp_path).open()


def test_statements_bind_only_plain_question_marks() -> None:
    """Every statement of the store binds its values with plain ``?``: Python
    3.12.0-3.12.3 warn on numbered ones (``?1``) bound to a sequence, and
    with warnings as errors every write of the store failed."""
    from veo_async.store import _schema

    constants = [value for name, value in vars(_schema).items() if name.isupper()]
    texts = [value for value in constants if isinstance(value, str)]
    texts += [
        value.text(rows)
        for value in constants
        if isinstance(value, _schema.RowsStatement)
        for rows in (1, 2)
    ]
    numbered = [text for text in texts if re.search(r"[?:@$][0-9A-Za-z_]", text)]
    assert len(texts) > 20
    assert numbered == []


def test_a_read_only_file_is_named_as_such(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The "disk I/O error" SQLite gives when opening a file it may read but not
    write becomes a message saying the file is read-only (root may write any
    file, so the permission is faked here)."""
    import os
    import sqlite3

    from veo_async.store import _sqlite_file

    path = tmp_path / "ro.db"
    path.write_bytes(b"")
    real_access = os.access
    monkeypatch.setattr(
        _sqlite_file.os,
        "access",
        lambda p, mode: False if str(p) == str(path) else real_access(p, mode),
    )
    error = _sqlite_file.translate(sqlite3.OperationalError("disk I/O error"), str(path), "opening")
    assert str(error).startswith(f"cannot write task store {path}")
    assert "the file is read-only for this user" in str(error)


# ---------------------------------------------------------- closing, cancelled


async def test_a_cancelled_close_lets_the_writer_finish_its_batch(tmp_path: Path) -> None:
    """aclose() cancelled while the writer commits a batch (an outer timeout
    round a shutdown): the writer finishes it, its caller is answered and the
    rows are there. The writer used to be cancelled with the close: its
    caller waited forever and the batch was rolled back."""
    path = tmp_path / "s.db"
    store = make_store(path)
    await store.open()
    ids = [f"veo_task_{n:07d}" for n in range(100_000)]
    tracking = asyncio.ensure_future(store.track(ids))
    for _ in range(100_000):  # (read only to pick the moment: the batch is being written)
        if store._writer._writing:
            break
        await asyncio.sleep(0)
    assert store._writer._writing
    closing = asyncio.ensure_future(store.aclose())
    await asyncio.sleep(0)
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    await asyncio.wait_for(tracking, 30)
    async with make_store(path) as again:
        assert len(await again.list_tasks()) == len(ids)


async def test_a_second_close_returns_once_the_first_is_done(tmp_path: Path) -> None:
    """A second aclose() while the first still commits returns once the store
    is closed (everything committed, the file free), not at once."""
    path = tmp_path / "s.db"
    store = make_store(path)
    await store.open()
    ids = [f"veo_task_{n:07d}" for n in range(50_000)]
    store.write_behind(seen=[(task_id, time.time()) for task_id in ids])
    first = asyncio.ensure_future(store.aclose())
    await asyncio.sleep(0)
    await store.aclose()
    async with make_store(path) as again:  # lock_timeout 0: a held lock would fail here
        assert len(await again.list_tasks()) == len(ids)
    await first


async def test_closed_while_opening_releases_the_file(tmp_path: Path) -> None:
    """A store closed while it is being opened does not end up open (holding the
    file's lock, its writer running): the open raises, and the file is free."""
    path = tmp_path / "s.db"
    store = make_store(path)
    opening = asyncio.ensure_future(store.open())
    await asyncio.sleep(0)
    await store.aclose()
    with pytest.raises(RuntimeError, match="closed while it was being opened"):
        await opening
    assert store.closed
    async with make_store(path) as again:
        assert await again.list_tasks() == []


def test_a_record_whose_params_json_cannot_hold_is_stored_with_them_as_text() -> None:
    """Params holding an infinity or a NaN (a paramJson with 1e999, read by the
    stdlib) are stored as text: the record, and every note written with it,
    is not refused (one such record used to block every later ack)."""
    from veo_async.store._checks import stored_record_text as _record_text

    record = RecordInfo(
        "veo_task_bad",
        TaskStatus.SUCCESS,
        params={"seeds": float("inf"), "nested": [float("nan"), 1.5], "model": "veo3"},
    )
    stored = json.loads(_record_text(record))
    assert stored["params"] == {"seeds": "inf", "nested": ["nan", 1.5], "model": "veo3"}
    assert stored["task_id"] == "veo_task_bad"
