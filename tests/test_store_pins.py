"""Store behaviours found unpinned by mutation testing of the stores' argument
checks (``_checks``), their values and refs (``_values``, ``_refs``), their JSON
text (``_text``), SQLite's file handling and both stores' group commits.

Each argument check is pinned through the public TaskStore methods, on both
stores: a bad argument is refused with an error naming it, and nothing is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import sqlite3
import types
from pathlib import Path
from typing import Any

import attrs
import pytest

from veo_async import VeoSession
from veo_async.errors import StoreCorruptError, StoreError, StoreLockedError, StoreVersionError
from veo_async.models import RecordInfo, TaskStatus
from veo_async.store import (
    SQLiteStore,
    StoredIntent,
    StoredTask,
    new_ref,
    record_to_json,
    ref_of,
    with_ref,
)
from veo_async.store import _schema as sql
from veo_async.store._sqlite_file import translate
from veo_async.store._values import check_ref
from veo_async.testing import FakeKie

from ._redis_server import redis_server
from .conftest import API_KEY
from .test_create import GENERATE, requests_to
from .test_store import NEVER, NOW, finished, make_store
from .test_store_contract import Stores, stores

#: Real files, a real server: real time.
pytestmark = pytest.mark.real_time

__all__ = ["redis_server", "stores"]  # fixtures used here


class Stamp(float):
    """A float whose repr is not a number (as numpy's ``np.float64(1.5)``)."""

    def __repr__(self) -> str:
        return f"Stamp({float(self)!r})"


async def nothing_written(store: Any) -> None:
    """The store holds no task and no intent."""
    assert await store.list_tasks() == []
    assert await store.uncertain() == []


# -- times --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda s: s.record_seen("t", True), id="seen"),
        pytest.param(lambda s: s.track(["t"], created_at=False), id="track"),
        pytest.param(lambda s: s.record_intent(new_ref(), "generate", {}, True), id="intent"),
    ],
)
async def test_a_bool_is_not_a_time(stores: Stores, call: Any) -> None:
    """True and False are refused as times (TypeError naming the argument),
    not stored as epoch seconds 1.0 and 0.0."""
    async with stores.make("s") as store:
        with pytest.raises(TypeError, match="at must be epoch seconds"):
            await call(store)
        await store.flush()
        await nothing_written(store)


@pytest.mark.parametrize(
    ("call", "error"),
    [
        pytest.param(lambda s: s.ack("t", at="now"), TypeError, id="ack"),
        pytest.param(lambda s: s.mark_delivered("t", at="now"), TypeError, id="delivered"),
        pytest.param(lambda s: s.track(["t"], created_at=float("nan")), ValueError, id="track"),
        pytest.param(
            lambda s: s.attach_task_id(new_ref(), "veo_1", at=float("inf")), ValueError, id="attach"
        ),
        pytest.param(lambda s: s.reconcile(new_ref(), "veo_1", at="x"), TypeError, id="reconcile"),
        pytest.param(lambda s: s.purge(10, now="x"), TypeError, id="purge-now"),
    ],
)
async def test_an_optional_time_is_checked_when_given(
    stores: Stores, call: Any, error: type[Exception]
) -> None:
    """A time that may be left out (``at=``, ``created_at=``, ``now=``) is
    checked like any other when given: a string or a non-finite number is
    refused naming it, and nothing is written."""
    async with stores.make("s") as store:
        await store.track(["t"], created_at=NOW)
        await store.record_terminal("t", record_to_json(finished("t")), NOW)
        with pytest.raises(error, match=r"(at|now) must be"):
            await call(store)
        await store.flush()
        [task] = await store.list_tasks()
        assert (task.acked_at, task.deliveries, task.created_at) == (None, 0, NOW)
        assert await store.uncertain() == []


async def test_a_time_given_as_a_float_subclass_is_stored_as_its_value(stores: Stores) -> None:
    """A time of a float subclass whose repr is not a number (numpy's
    ``np.float64``) is stored as the plain float it is equal to."""
    async with stores.make("s") as store:
        await store.track(["t"], created_at=Stamp(NOW - 5))
        await store.record_seen("t", Stamp(NOW - 4))
        await store.ack("t", at=Stamp(NOW - 3))
    async with stores.make("s") as store:
        task = await store.get("t")
        assert task is not None
        assert (task.created_at, task.first_seen_at) == (NOW - 5, NOW - 4)
        assert type(task.created_at) is float


# -- models, requests, records --------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda s: s.track(["t"], model=5), id="track"),
        pytest.param(lambda s: s.attach_task_id(new_ref(), "veo_1", model=b"veo3"), id="attach"),
    ],
)
async def test_a_model_that_is_not_a_str_is_refused(stores: Stores, call: Any) -> None:
    """A model must be a str or None: another type is a TypeError naming it."""
    async with stores.make("s") as store:
        with pytest.raises(TypeError, match="model must be a str or None"):
            await call(store)
        await nothing_written(store)


async def test_a_request_that_is_not_a_mapping_is_refused(stores: Stores) -> None:
    """An intent's request must be a mapping: a JSON-able list is refused
    (TypeError naming the request), not stored as a body no rerun could read."""
    async with stores.make("s") as store:
        with pytest.raises(TypeError, match="request must be a mapping"):
            await store.record_intent(new_ref(), "generate", ["prompt"], NOW)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="record must be a mapping"):
            await store.record_terminal("t", ["x"], NOW)  # type: ignore[arg-type]
        await store.flush()
        await nothing_written(store)


async def test_a_read_only_mapping_request_is_stored(stores: Stores) -> None:
    """A request given as a read-only mapping (``MappingProxyType``) is stored
    and read back as the dict it holds, not refused as "not JSON"."""
    ref = new_ref()
    body = {"prompt": "a fox", "model": "veo3"}
    async with stores.make("s") as store:
        await store.record_intent(ref, "generate", types.MappingProxyType(body), NOW)
        await store.record_terminal("t", types.MappingProxyType(record_to_json(finished("t"))), NOW)
    async with stores.make("s") as store:
        [intent] = await store.uncertain()
        assert (intent.ref, intent.request) == (ref, body)
        task = await store.get("t")
        assert task is not None
        assert task.record_info() == finished("t")


# -- write_behind items ---------------------------------------------------------------


async def test_write_behind_refuses_a_terminal_that_is_not_a_record(stores: Stores) -> None:
    """write_behind's terminal items hold RecordInfo: a dict there is a
    TypeError naming RecordInfo, and nothing of the call is noted."""
    async with stores.make("s") as store:
        with pytest.raises(TypeError, match="must be a RecordInfo"):
            store.write_behind(
                seen=[("a", NOW)],
                terminal=[("t", record_to_json(finished("t")), NOW)],  # type: ignore[list-item]
            )
        await store.flush()
        await nothing_written(store)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        pytest.param({"seen": [("t",)]}, "seen", id="seen-short"),
        pytest.param({"seen": [("t", NOW, NOW)]}, "seen", id="seen-long"),
        pytest.param({"delivered": [("t", NOW, 1)]}, "delivered", id="delivered-long"),
        pytest.param({"terminal": [("t", finished("t"))]}, "terminal", id="terminal-short"),
    ],
)
async def test_write_behind_refuses_an_item_of_another_width(
    stores: Stores, kwargs: dict[str, Any], named: str
) -> None:
    """An item of the wrong width is a TypeError naming the argument and the
    width (not unpacking's ValueError), and nothing of the call is noted."""
    async with stores.make("s") as store:
        with pytest.raises(TypeError, match=f"each item of {named} must be a tuple of"):
            store.write_behind(**kwargs)
        await store.flush()
        await nothing_written(store)


async def test_write_behind_takes_lists_as_items(stores: Stores) -> None:
    """Items given as lists (as JSON gives them back) are taken like tuples."""
    async with stores.make("s") as store:
        await store.track(["t", "u"], created_at=NOW - 10)
        lists: Any = {
            "seen": [["t", NOW - 9]],
            "terminal": [["u", finished("u"), NOW - 8]],
            "delivered": [["u", NOW - 7]],
        }
        store.write_behind(**lists)
        await store.flush()
        t, u = await store.get("t"), await store.get("u")
        assert t is not None
        assert t.first_seen_at == NOW - 9
        assert u is not None
        assert (u.terminal_at, u.delivered_at) == (NOW - 8, NOW - 7)


async def test_a_record_no_json_can_hold_is_a_type_error(stores: Stores) -> None:
    """A record holding NaN outside its params (which are kept as text) cannot
    be stored: TypeError naming its task, nothing noted."""
    bad = RecordInfo(task_id="t", status=TaskStatus.FAILED, error_code=float("nan"))  # type: ignore[arg-type]
    async with stores.make("s") as store:
        with pytest.raises(TypeError, match="record of task 't' cannot be stored as JSON"):
            store.write_behind(terminal=[("t", bad, NOW)])
        await store.flush()
        await nothing_written(store)


# -- settings -------------------------------------------------------------------------


def test_a_bool_batch_size_is_refused(tmp_path: Any) -> None:
    """batch_size=True is not the batch size 1: a ValueError naming it."""
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        SQLiteStore(tmp_path / "s.db", batch_size=True, flush_interval=NEVER)


# -- callback refs --------------------------------------------------------------------


@pytest.mark.parametrize("ref", ["a b", "", "r&veo_ref=x", "x" * 129, "é"])
def test_with_ref_refuses_an_invalid_ref(ref: str) -> None:
    """with_ref checks its ref (ValueError): one a URL query would escape, or
    one too long, never reaches a callback URL."""
    with pytest.raises(ValueError, match="invalid intent ref"):
        with_ref("https://x.example/cb?a=1", ref)


@pytest.mark.parametrize(
    "url", ["https://x.example/cb?veo_ref=", "https://x.example/cb?a=1&veo_ref=bad!#top"]
)
def test_with_ref_refuses_a_url_with_an_unreadable_veo_ref(url: str) -> None:
    """A callback URL that already has a ``veo_ref``
    parameter is refused (ValueError, as documented) even when that one is
    not a valid ref: the added ref would come after it, and ref_of, which
    reads the first, would never give it back (the callback could not
    reconcile its intent)."""
    with pytest.raises(ValueError, match="already has a veo_ref"):
        with_ref(url, "R1")


async def test_a_create_whose_callback_url_has_a_blank_veo_ref_is_refused_before_sending(
    tmp_path: Path,
) -> None:
    """With a store, ``generate(callback_url=".../cb?veo_ref=")`` raises
    ValueError naming the parameter before anything is sent or written: sent
    as it was, its callback could never reconcile an uncertain create."""
    kie = FakeKie(api_key=API_KEY, time_scale=0.001, seed=7, create_limit=None)
    store = SQLiteStore(tmp_path / "veo.db", flush_interval=0.01, lock_timeout=0.0)
    try:
        async with VeoSession(API_KEY, transport=kie.transport(), store=store) as veo:
            with pytest.raises(ValueError, match="already has a veo_ref"):
                await veo.generate("a fox", callback_url="https://cb.example/h?veo_ref=")
            assert await store.intents() == []
        assert requests_to(kie, GENERATE) == []
    finally:
        await kie.close()


def test_a_ref_is_up_to_128_url_unreserved_characters() -> None:
    """check_ref takes 1-128 of the URL-unreserved characters (``~`` too),
    refuses the 129th and anything that is not a str (TypeError), and a new
    ref is 22 of them, as documented."""
    unreserved = "Az09._~-"
    assert check_ref(unreserved) == unreserved
    assert check_ref("x" * 128) == "x" * 128
    assert ref_of(with_ref("https://x.example/cb", "a~b")) == "a~b"
    with pytest.raises(ValueError, match="invalid intent ref"):
        check_ref("x" * 129)
    with pytest.raises(TypeError, match="intent ref must be a str, not bytes"):
        check_ref(b"abc")
    fresh = new_ref()
    assert len(fresh) == 22
    assert check_ref(fresh) == fresh


def test_stored_values_say_what_their_fields_mean() -> None:
    """StoredTask's and StoredIntent's derived properties: an unreadable
    stored status is None (not an exception), delivered needs a delivery,
    acked needs an ack (not a delivery), uncertain needs no task id."""
    task = StoredTask(task_id="t", model=None, created_at=NOW)
    assert (task.is_terminal, task.delivered, task.acked, task.status) == (
        False,
        False,
        False,
        None,
    )
    for status in (99, "done", None, [1]):
        assert attrs.evolve(task, record={"status": status}).status is None
    assert attrs.evolve(task, record={"status": 1}).status is TaskStatus.SUCCESS
    handed = attrs.evolve(task, delivered_at=NOW, deliveries=1)
    assert (handed.delivered, handed.acked) == (True, False)
    assert attrs.evolve(task, deliveries=0, delivered_at=NOW).delivered is False
    assert attrs.evolve(handed, acked_at=NOW).acked is True
    intent = StoredIntent(ref="r", kind="generate", request={}, created_at=NOW)
    assert intent.uncertain is True
    assert attrs.evolve(intent, task_id="veo_1").uncertain is False


async def test_a_request_holding_what_json_lacks_is_refused(stores: Stores) -> None:
    """A request or record holding a value JSON has no type for (a datetime,
    nested in an object) is a TypeError, as ``json.dumps`` would refuse it,
    even where orjson would write it."""
    when = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    async with stores.make("s") as store:
        with pytest.raises(TypeError, match="request cannot be stored as JSON"):
            await store.record_intent(new_ref(), "generate", {"a": {"when": when}}, NOW)
        with pytest.raises(TypeError, match="record cannot be stored as JSON"):
            await store.record_terminal("t", {"status": 1, "at": [when]}, NOW)
        await store.flush()
        await nothing_written(store)


# -- a SQLite file that is not this version's store -----------------------------------


def store_file(path: Path, *statements: str) -> None:
    """Make a store file at *path*, then run *statements* on it."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        for statement in sql.CREATE_SCHEMA:
            conn.execute(statement)
        for statement in statements:
            conn.execute(statement)
        conn.commit()


async def refused_open(path: Path, error: type[StoreError], match: str) -> StoreError:
    """The *error* opening a store on *path* raises (the store is closed even
    when the open succeeds, so that a failing test does not hang)."""
    store = make_store(path)
    try:
        with pytest.raises(error, match=match) as info:
            await store.open()
    finally:
        await store.aclose()
    return info.value


async def test_an_older_schema_is_refused_as_older(tmp_path: Path) -> None:
    """A file of an older schema gives StoreVersionError saying so (never
    migrated silently), not the advice for a newer one."""
    path = tmp_path / "s.db"
    store_file(path, "UPDATE schema_version SET version = 0")
    error = await refused_open(path, StoreVersionError, "older veo_async")
    assert isinstance(error, StoreVersionError)
    assert (error.found, error.supported) == (0, sql.SCHEMA_VERSION)
    assert "newer" not in str(error)


@pytest.mark.parametrize(
    "statement",
    [
        pytest.param("INSERT INTO schema_version (version) VALUES (1)", id="two-rows"),
        pytest.param("UPDATE schema_version SET version = 'one'", id="text"),
        pytest.param("DELETE FROM schema_version", id="no-row"),
    ],
)
async def test_an_unreadable_schema_version_is_refused(tmp_path: Path, statement: str) -> None:
    """A schema_version table without exactly one integer row is a
    StoreCorruptError naming it (not read as its first row, not a TypeError)."""
    path = tmp_path / "s.db"
    store_file(path, statement)
    await refused_open(path, StoreCorruptError, "unreadable schema_version")


async def test_a_store_file_missing_a_table_is_refused(tmp_path: Path) -> None:
    """A store file that lost one of its tables is a StoreCorruptError naming
    the table, and the file is not altered (the table is not made anew)."""
    path = tmp_path / "s.db"
    store_file(path, "DROP TABLE intents")
    await refused_open(path, StoreCorruptError, r"lacks table\(s\) intents")
    with contextlib.closing(sqlite3.connect(path)) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert "intents" not in tables


@pytest.mark.parametrize(
    ("message", "doing", "error", "says"),
    [
        pytest.param("database is locked", "writing", StoreLockedError, "in use", id="locked"),
        pytest.param("database is busy", "opening", StoreLockedError, "in use", id="busy"),
        pytest.param(
            "database disk image is malformed",
            "writing",
            StoreCorruptError,
            "not a readable",
            id="malformed",
        ),
        pytest.param("file is encrypted", "opening", StoreCorruptError, "not a readable", id="enc"),
        pytest.param(
            "unable to open database file", "opening", StoreError, "cannot open", id="open"
        ),
        pytest.param(
            "attempt to write a readonly database",
            "writing",
            StoreError,
            "cannot write",
            id="readonly",
        ),
        pytest.param("disk I/O error", "opening", StoreError, "cannot write", id="io-open"),
        pytest.param("disk I/O error", "writing", StoreError, "writing failed", id="io-write"),
    ],
)
def test_what_a_sqlite_error_means(
    tmp_path: Path, message: str, doing: str, error: type[StoreError], says: str
) -> None:
    """Each SQLite error is translated to the StoreError subclass its words
    mean, naming the file; a disk I/O error means "cannot write" only on
    opening (later it is a failed write, of any cause)."""
    path = str(tmp_path / "s.db")
    translated = translate(sqlite3.OperationalError(message), path, doing)
    assert type(translated) is error
    assert says in str(translated)
    assert path in str(translated)


def test_a_read_only_store_file_is_named_as_such(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store file the user may not write is named read-only (os.access
    answers for the user: a test run as root is told the file is not writable)."""
    path = tmp_path / "s.db"
    path.write_bytes(b"")
    monkeypatch.setattr(os, "access", lambda p, mode: os.fspath(p) != os.fspath(path))
    translated = translate(sqlite3.OperationalError("readonly database"), str(path), "writing")
    assert "the file is read-only for this user" in str(translated)


# -- group commits --------------------------------------------------------------------


async def test_attach_takes_the_model_given_over_the_requests(stores: Stores) -> None:
    """attach_task_id's *model*, when given, is the task's model (the
    request's ``"model"`` is only the fallback)."""
    with_model, without = new_ref(), new_ref()
    async with stores.make("s") as store:
        await store.record_intent(with_model, "generate", {"model": "veo3"}, NOW - 5)
        await store.record_intent(without, "extend", {"taskId": "x"}, NOW - 4)
        await store.attach_task_id(with_model, "veo_1", "veo3_fast", at=NOW - 3)
        await store.attach_task_id(without, "veo_2", "veo3", at=NOW - 2)
    async with stores.make("s") as store:
        first, second = await store.get("veo_1"), await store.get("veo_2")
        assert first is not None
        assert second is not None
        assert (first.model, second.model) == ("veo3_fast", "veo3")


async def test_thousands_of_acks_in_one_batch_are_all_committed(stores: Stores) -> None:
    """More acks than one script call takes (1000) in one batch: every one is
    committed, the last of each call's share too."""
    ids = [f"t{n:05d}" for n in range(2001)]
    async with stores.make("s", batch_size=10_000) as store:
        await store.track(ids, created_at=NOW - 10)
        store.write_behind(terminal=[(task_id, finished(task_id), NOW - 5) for task_id in ids])
        await store.flush()
        await asyncio.gather(*(store.ack(task_id, at=NOW) for task_id in ids))
    async with stores.make("s") as store:
        assert await store.undelivered() == []
        assert len(await store.list_tasks("acked")) == len(ids)


async def test_an_existing_store_file_is_locked_by_its_open(tmp_path: Path) -> None:
    """Opening an existing store file (nothing to create, nothing written)
    takes its lock at once: a second store on it is refused at its open,
    not at its first write."""
    path = tmp_path / "s.db"
    async with make_store(path) as store:
        await store.track(["t"], created_at=NOW)
    async with make_store(path):
        await refused_open(path, StoreLockedError, "in use by another")


async def test_discard_says_whether_it_deleted(stores: Stores) -> None:
    """discard_intent is True only for an uncertain intent it deleted; an
    unknown ref, or one with a task id (kept), is False."""
    uncertain, attached = new_ref(), new_ref()
    async with stores.make("s") as store:
        await store.record_intent(uncertain, "generate", {"prompt": "a"}, NOW - 2)
        await store.record_intent(attached, "generate", {"prompt": "b"}, NOW - 1)
        await store.attach_task_id(attached, "veo_1", at=NOW)
        assert await store.discard_intent(new_ref()) is False
        assert await store.discard_intent(attached) is False
        assert await store.discard_intent(uncertain) is True
        assert await store.discard_intent(uncertain) is False
        assert [intent.ref for intent in await store.intents()] == [attached]


async def test_attach_keeps_times_in_order_and_no_empty_model(stores: Stores) -> None:
    """A task attached with an ``at`` before its intent was written (another
    clock) is updated no earlier than it was created; a request whose
    ``"model"`` is "" gives the task no model (None), not ""."""
    ref = new_ref()
    async with stores.make("s") as store:
        await store.record_intent(ref, "generate", {"prompt": "p", "model": ""}, NOW)
        await store.attach_task_id(ref, "veo_1", at=NOW - 10)
    async with stores.make("s") as store:
        task = await store.get("veo_1")
        assert task is not None
        assert (task.created_at, task.updated_at, task.model) == (NOW, NOW, None)


async def test_attaching_to_a_damaged_intent_fails_that_call_only(tmp_path: Path) -> None:
    """An attach to an intent whose stored request cannot be read is a
    ValueError naming it; the writes batched with it still commit."""
    path = tmp_path / "s.db"
    async with make_store(path) as store:
        await store.record_intent("ref_damaged_0001", "generate", {"prompt": "a"}, NOW)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("UPDATE intents SET request = '{not json'")
        conn.commit()
    async with make_store(path) as store:
        attached, tracked = await asyncio.gather(
            store.attach_task_id("ref_damaged_0001", "veo_1", at=NOW),
            store.track(["veo_2"], created_at=NOW),
            return_exceptions=True,
        )
        assert isinstance(attached, ValueError)
        assert "ref_damaged_0001" in str(attached)
        assert tracked is None
    async with make_store(path) as store:
        assert [task.task_id for task in await store.list_tasks()] == ["veo_2"]


async def test_a_forget_wins_over_write_behind_changes_of_its_batch(stores: Stores) -> None:
    """A task forgotten while write-behind changes for it wait (committed in
    the same batch) stays forgotten: the changes do not bring it back."""
    async with stores.make("s") as store:
        await store.track(["t"], created_at=NOW - 5)
        await store.record_seen("t", NOW - 4)
        await store.record_terminal("t", record_to_json(finished("t")), NOW - 3)
        await store.mark_delivered("t", at=NOW - 2)
        assert await store.forget("t") is True
    async with stores.make("s") as store:
        assert await store.get("t") is None
        assert await store.list_tasks() == []
