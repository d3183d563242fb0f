"""The TaskStore contract, run against every store: SQLiteStore on a real file
and RedisStore on a real ``redis-server`` (started by ``tests/_redis_server.py``).

Each test opens stores by name through the ``stores`` fixture; the same name
is the same file (or the same Redis namespace), so "reopen" means what a
restarted process does.
"""

from __future__ import annotations

import asyncio
import logging
import time
import types
import uuid
from pathlib import Path
from typing import Any

import pytest

from veo_async.models import TaskStatus
from veo_async.store import (
    RedisStore,
    SQLiteStore,
    StoredIntent,
    StoredTask,
    TaskStore,
    _checks,
    new_ref,
    record_to_json,
)
from veo_async.store._base import BatchedStore

from ._redis_server import RedisServer, redis_server
from .test_store import NEVER, NOW, finished

#: Real files, a real server: real time.
pytestmark = pytest.mark.real_time


__all__ = ["redis_server"]  # the fixture, imported for this module's tests


class Stores:
    """Makes stores of one kind by name: the same name, the same stored tasks."""

    def __init__(self, kind: str, tmp_path: Path, redis_url: str | None) -> None:
        self.kind = kind
        self._tmp_path = tmp_path
        self._redis_url = redis_url
        self._namespace = f"test:{uuid.uuid4().hex}"

    def make(self, name: str, **kwargs: Any) -> BatchedStore:
        """A new store object on *name* that never flushes by time nor waits for a lock."""
        kwargs.setdefault("flush_interval", NEVER)
        kwargs.setdefault("lock_timeout", 0.0)
        if self.kind == "sqlite":
            return SQLiteStore(self._tmp_path / f"{name}.db", **kwargs)
        assert self._redis_url is not None
        return RedisStore(self._redis_url, namespace=f"{self._namespace}:{name}", **kwargs)


@pytest.fixture(params=["sqlite", "redis"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Stores:
    """Stores of each kind in turn."""
    url = None
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        url = server.url
    return Stores(request.param, tmp_path, url)


async def test_every_store_satisfies_the_protocol(stores: Stores) -> None:
    """Each store is a TaskStore (the contract a session is written against)."""
    assert isinstance(stores.make("s"), TaskStore)


async def test_everything_committed_survives_reopen(stores: Stores) -> None:
    """A fresh store on the same file (namespace) sees every intent, id, record and ack."""
    path = "s"
    ref, lost_ref = new_ref(), new_ref()
    async with stores.make(path) as store:
        await store.record_intent(ref, "generate", {"prompt": "p", "model": "veo3"}, NOW - 60)
        await store.attach_task_id(ref, "created", at=NOW - 59)
        await store.record_intent(lost_ref, "extend", {"taskId": "created"}, NOW - 30)
        await store.track(["tracked", "done"], model="veo3_fast", created_at=NOW - 50)
        await store.record_seen("tracked", NOW - 40)
        await store.record_terminal("done", record_to_json(finished("done")), NOW - 20)
        await store.mark_delivered("done", at=NOW - 10)

    async with stores.make(path) as store:
        created = await store.get("created")
        assert created == StoredTask(
            task_id="created", model="veo3", created_at=NOW - 60, updated_at=NOW - 59, ref=ref
        )
        tracked = await store.get("tracked")
        assert tracked is not None
        assert (tracked.model, tracked.created_at, tracked.first_seen_at) == (
            "veo3_fast",
            NOW - 50,
            NOW - 40,
        )
        done = await store.get("done")
        assert done is not None
        assert done.record_info() == finished("done")
        assert done.status is TaskStatus.SUCCESS
        assert (done.terminal_at, done.delivered_at, done.deliveries) == (NOW - 20, NOW - 10, 1)
        assert [t.task_id for t in await store.unfinished()] == ["created", "tracked"]
        assert [t.task_id for t in await store.undelivered()] == ["done"]
        assert await store.uncertain() == [
            StoredIntent(lost_ref, "extend", {"taskId": "created"}, NOW - 30)
        ]
        assert await store.get("unknown") is None


async def test_reads_see_unflushed_writes(stores: Stores) -> None:
    """A read right after a write-behind change sees it (reads flush first)."""
    async with stores.make("s") as store:
        await store.record_terminal("t1", record_to_json(finished("t1")), NOW)
        assert [t.task_id for t in await store.undelivered()] == ["t1"]


async def test_first_sighting_and_terminal_record_in_one_batch(stores: Stores) -> None:
    """A seen and a terminal change committed together keep the sighting's time (one row)."""
    async with stores.make("s") as store:
        await store.track(["tracked"], created_at=NOW - 100)
        for task_id in ("tracked", "untracked"):
            await store.record_seen(task_id, NOW - 40)
            await store.record_terminal(task_id, record_to_json(finished(task_id)), NOW - 20)
        await store.flush()
        tracked, untracked = await store.get("tracked"), await store.get("untracked")
    assert tracked is not None
    assert untracked is not None
    assert (tracked.created_at, tracked.first_seen_at, tracked.terminal_at) == (
        NOW - 100,
        NOW - 40,
        NOW - 20,
    )
    assert (untracked.created_at, untracked.first_seen_at, untracked.terminal_at) == (
        NOW - 40,
        NOW - 40,
        NOW - 20,
    )
    assert tracked.updated_at == untracked.updated_at == NOW - 20
    assert untracked.record_info() == finished("untracked")


async def test_track_is_idempotent(stores: Stores) -> None:
    """Tracking an id again keeps its row (creation time, record); a missing model is filled."""
    async with stores.make("s") as store:
        await store.track(["t1"], created_at=NOW - 100)
        await store.record_terminal("t1", record_to_json(finished("t1")), NOW - 50)
        await store.track(["t1", "t1"], model="veo3", created_at=NOW)
        task = await store.get("t1")
        assert task is not None
        assert (task.created_at, task.model, task.is_terminal) == (NOW - 100, "veo3", True)


async def test_result_is_delivered_until_acked(stores: Stores) -> None:
    """A finished task stays undelivered across restarts, also once handed over, until acked."""
    path = "s"
    async with stores.make(path) as store:
        await store.track(["t1", "t2"])
        await store.record_terminal("t1", record_to_json(finished("t1")), NOW)
        await store.record_terminal("t2", record_to_json(finished("t2", TaskStatus.FAILED)), NOW)
        await store.mark_delivered("t1", at=NOW)
    async with stores.make(path) as store:  # restart 1: both again
        undelivered = await store.undelivered()
        assert [(t.task_id, t.delivered, t.acked) for t in undelivered] == [
            ("t1", True, False),
            ("t2", False, False),
        ]
        await store.ack("t1", at=NOW + 1)
        assert [t.task_id for t in await store.undelivered()] == ["t2"]
    async with stores.make(path) as store:  # restart 2: the ack held
        assert [t.task_id for t in await store.undelivered()] == ["t2"]
        acked = await store.list_tasks("acked")
        assert [(t.task_id, t.acked_at) for t in acked] == [("t1", NOW + 1)]
        # A late re-poll recording the record again does not bring it back.
        await store.record_terminal("t1", record_to_json(finished("t1")), NOW + 2)
        assert [t.task_id for t in await store.undelivered()] == ["t2"]


async def test_ack_of_unfinished_or_unknown_changes_nothing(stores: Stores) -> None:
    """Acking a task with no terminal record (or no row) does not hide its future result."""
    async with stores.make("s") as store:
        await store.track(["t1"])
        await store.ack("t1")
        await store.ack("nobody")
        await store.record_terminal("t1", record_to_json(finished("t1")), NOW)
        assert [t.task_id for t in await store.undelivered()] == ["t1"]
        assert await store.get("nobody") is None


async def test_ack_in_the_same_batch_as_the_record(stores: Stores) -> None:
    """An ack queued right behind an unflushed terminal record acknowledges it."""
    async with stores.make("s") as store:
        await store.record_terminal("t1", record_to_json(finished("t1")), NOW)
        await store.ack("t1")
        assert await store.undelivered() == []


async def test_concurrent_acks_are_all_committed(stores: Stores) -> None:
    """Many concurrent acks (grouped into few transactions) each end committed."""
    path = "s"
    ids = [f"t{n:04d}" for n in range(500)]
    async with stores.make(path) as store:
        await store.track(ids)
        for task_id in ids:
            await store.record_terminal(task_id, {"task_id": task_id, "status": 1}, NOW)
        await store.flush()
        await asyncio.gather(*(store.ack(task_id) for task_id in ids))
    async with stores.make(path) as store:
        assert await store.undelivered() == []
        assert len(await store.list_tasks("acked")) == len(ids)


async def test_uncertain_intents_are_listed_with_their_request(stores: Stores) -> None:
    """An intent with no task id is uncertain; attaching the id makes it a task."""
    request = {"prompt": "a fox", "model": "veo3", "aspect_ratio": "9:16"}
    async with stores.make("s") as store:
        first, second = new_ref(), new_ref()
        await store.record_intent(first, "generate", request, NOW - 2)
        await store.record_intent(second, "generate", {"prompt": "b"}, NOW - 1)
        assert [(i.ref, i.request) for i in await store.uncertain()] == [
            (first, request),
            (second, {"prompt": "b"}),
        ]
        await store.attach_task_id(first, "veo_1")
        assert [i.ref for i in await store.uncertain()] == [second]
        task = await store.get("veo_1")
        assert task is not None
        assert (task.ref, task.model, task.created_at) == (first, "veo3", NOW - 2)


async def test_intents_are_every_create_sent_even_once_its_task_is_forgotten(
    stores: Stores,
) -> None:
    """intents() lists every create sent, oldest first, with its task id or
    None (uncertain), across a reopen; forgetting the task keeps its intent
    (it was sent, and must never be sent again); a discarded one is gone."""
    async with stores.make("s") as store:
        created, uncertain, forgotten, discarded = (new_ref() for _ in range(4))
        for offset, ref in enumerate((created, uncertain, forgotten, discarded)):
            await store.record_intent(ref, "generate", {"prompt": ref}, NOW - 10 + offset)
        await store.attach_task_id(created, "veo_made")
        await store.attach_task_id(forgotten, "veo_gone")
        assert await store.forget("veo_gone")
        assert await store.discard_intent(discarded)
        expected = [(created, "veo_made"), (uncertain, None), (forgotten, "veo_gone")]
        assert [(i.ref, i.task_id) for i in await store.intents()] == expected
        assert [i.request for i in await store.intents()] == [
            {"prompt": ref} for ref, _ in expected
        ]
    async with stores.make("s") as store:
        assert [(i.ref, i.task_id) for i in await store.intents()] == expected
        assert await store.get("veo_gone") is None


async def test_intent_misuse(stores: Stores) -> None:
    """A reused ref, an unknown ref or a second task id for one intent raise ValueError."""
    async with stores.make("s") as store:
        ref = new_ref()
        await store.record_intent(ref, "generate", {"prompt": "p"}, NOW)
        with pytest.raises(ValueError, match="already recorded"):
            await store.record_intent(ref, "generate", {"prompt": "other"}, NOW)
        with pytest.raises(ValueError, match="no intent"):
            await store.attach_task_id(new_ref(), "veo_1")
        await store.attach_task_id(ref, "veo_1")
        await store.attach_task_id(ref, "veo_1")  # the same answer twice is fine
        with pytest.raises(ValueError, match="already has task id"):
            await store.attach_task_id(ref, "veo_2")
        intent = await store.get_intent(ref)
        assert intent is not None
        assert (intent.task_id, intent.request) == ("veo_1", {"prompt": "p"})


@pytest.mark.parametrize(
    ("call", "error"),
    [
        pytest.param(lambda s: s.record_intent("a b", "generate", {}, NOW), ValueError, id="ref"),
        pytest.param(
            lambda s: s.record_intent("a&b=c", "generate", {}, NOW), ValueError, id="ref-query"
        ),
        pytest.param(lambda s: s.record_intent(new_ref(), "", {}, NOW), ValueError, id="kind"),
        pytest.param(
            lambda s: s.record_intent(new_ref(), "generate", {"x": {1, 2}}, NOW),
            TypeError,
            id="request-not-json",
        ),
        pytest.param(
            lambda s: s.record_intent(new_ref(), "generate", {}, "now"), TypeError, id="time"
        ),
        pytest.param(lambda s: s.track("veo_1"), TypeError, id="track-one-str"),
        pytest.param(lambda s: s.track([""]), ValueError, id="track-empty-id"),
        pytest.param(lambda s: s.track(["t"], model=""), ValueError, id="track-empty-model"),
        pytest.param(lambda s: s.record_seen("t", float("inf")), ValueError, id="seen-time"),
        pytest.param(
            lambda s: s.record_terminal("t", {"x": float("nan")}, NOW), TypeError, id="record-nan"
        ),
        pytest.param(lambda s: s.list_tasks("done"), ValueError, id="state"),
        pytest.param(lambda s: s.list_tasks(limit=-1), ValueError, id="limit"),
    ],
)
async def test_bad_input_is_refused_before_writing(stores: Stores, call: Any, error: type) -> None:
    """Invalid refs, requests, ids, times and filters raise a clear error; nothing is written."""
    async with stores.make("s") as store:
        with pytest.raises(error):
            await call(store)
        assert await store.list_tasks() == []
        assert await store.uncertain() == []


async def test_reconcile_by_ref(stores: Stores) -> None:
    """A callback's ref attaches its task id to the uncertain intent, once and only that one."""
    path = "s"
    ref = new_ref()
    async with stores.make(path) as store:
        await store.record_intent(ref, "generate", {"prompt": "p", "model": "veo3"}, NOW - 5)
    async with stores.make(path) as store:  # after the crash: uncertain
        assert [i.ref for i in await store.uncertain()] == [ref]
        assert await store.reconcile(new_ref(), "veo_x") is False  # unknown ref
        assert await store.reconcile(ref, "veo_1") is True
        assert await store.reconcile(ref, "veo_1") is True  # the callback came twice
        assert await store.reconcile(ref, "veo_2") is False  # another id: refused
        assert await store.uncertain() == []
        [task] = await store.unfinished()
        assert (task.task_id, task.ref, task.model, task.created_at) == (
            "veo_1",
            ref,
            "veo3",
            NOW - 5,
        )


async def test_purge_deletes_rows_older_than_retention(stores: Stores) -> None:
    """purge() deletes tasks and intents created before now - retention, whatever their state."""
    day = 86400.0
    async with stores.make("s", retention=None) as store:
        await store.track(["old"], created_at=NOW - 15 * day)
        await store.record_terminal("old", {"task_id": "old", "status": 1}, NOW - 15 * day)
        await store.track(["recent"], created_at=NOW - 13 * day)
        await store.record_intent(new_ref(), "generate", {}, NOW - 20 * day)
        assert await store.purge(now=NOW) == 2
        assert [t.task_id for t in await store.list_tasks()] == ["recent"]
        assert await store.uncertain() == []
        assert await store.purge(1 * day, now=NOW) == 1
        assert await store.list_tasks() == []


async def test_open_purges_with_the_retention_setting(
    stores: Stores, caplog: pytest.LogCaptureFixture
) -> None:
    """Opening applies the retention (default 14 days) to the wall clock; None
    keeps all. What it deletes is said in the log (a clock set days ahead
    deletes rows not that old: it was silent)."""
    path = "s"
    async with stores.make(path, retention=None) as store:
        await store.track(["old"], created_at=time.time() - 15 * 86400)
        await store.track(["new"])
    async with stores.make(path, retention=None) as store:
        assert len(await store.list_tasks()) == 2
    caplog.set_level(logging.INFO, logger="veo_async")
    async with stores.make(path) as store:
        assert [t.task_id for t in await store.list_tasks()] == ["new"]
    [line] = [r.getMessage() for r in caplog.records if "purged" in r.getMessage()]
    assert "purged the tasks and intents created over 14 days ago" in line
    assert line.endswith(": 1")


async def test_a_store_kept_open_purges_past_its_retention_every_six_hours(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker keeps its store open for weeks: rows past the retention are
    purged again with the first write six hours after the last purge (they
    were purged only at open, and piled up until a restart)."""
    clock = [time.time()]
    monkeypatch.setattr(_checks, "time", types.SimpleNamespace(time=lambda: clock[0]))
    day = 86400.0
    async with stores.make("s", retention=2 * day) as store:
        await store.track(["first"])
        clock[0] += 1.5 * day
        await store.track(["second"])  # nothing is past two days yet
        assert {t.task_id for t in await store.list_tasks()} == {"first", "second"}
        clock[0] += 1 * day  # "first" is 2.5 days old now
        await store.ack("second")  # the next write purges first
        assert [t.task_id for t in await store.list_tasks()] == ["second"]
        clock[0] += 3600.0
        await store.track(["third"], created_at=clock[0] - 3 * day)
        await store.track(["fourth"])  # within six hours of the last purge: none
        assert len(await store.list_tasks()) == 3


async def test_list_tasks_limit_and_order(stores: Stores) -> None:
    """list_tasks returns oldest first and honours limit."""
    async with stores.make("s") as store:
        for n in (3, 1, 2):
            await store.track([f"t{n}"], created_at=NOW + n)
        assert [t.task_id for t in await store.list_tasks(limit=2)] == ["t1", "t2"]
        assert [t.task_id for t in await store.list_tasks("unfinished")] == ["t1", "t2", "t3"]


async def test_a_purge_comes_before_the_rest_of_its_batch(stores: Stores) -> None:
    """A purge deletes only what was there before it: writes queued behind it
    in the same batch - an intent as old as the purged rows, ids tracked -
    are kept, whatever the number of rows purged (more than one call's worth)."""
    async with stores.make("s", retention=None) as store:
        await store.track([f"old_{n:05d}" for n in range(1500)], created_at=NOW - 100)
        ref = new_ref()
        deleted, _, _ = await asyncio.gather(
            store.purge(50, now=NOW),
            store.record_intent(ref, "generate", {"prompt": "p"}, NOW - 100),
            store.track(["veo_new"], created_at=NOW - 100),
        )
        assert deleted == 1500
        assert [i.ref for i in await store.uncertain()] == [ref]
        assert [t.task_id for t in await store.list_tasks()] == ["veo_new"]
