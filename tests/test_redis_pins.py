"""RedisStore behaviours found unpinned by mutation testing of the store (its
Python and its Lua scripts), and fleet races: two owners of one namespace, an
owner paused past its lease, a renewal that hangs.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from veo_async import StoreCorruptError, StoreLockedError, StoreVersionError
from veo_async.models import TaskStatus
from veo_async.store import record_to_json
from veo_async.testing import FakeKie

from ._redis_server import RedisServer, redis_server
from .conftest import session_on
from .test_durable import kie
from .test_redis_store import client, namespace, store_on
from .test_store import finished

#: A real server, leases in real time: real time.
pytestmark = pytest.mark.real_time

__all__ = ["client", "kie", "namespace", "redis_server"]  # fixtures used here


def key(namespace: str, name: str) -> str:
    return "{" + namespace + "}:" + name


async def keys_of(client: Any, namespace: str) -> set[str]:
    """Every key under the namespace, without its prefix."""
    prefix = key(namespace, "")
    return {k[len(prefix) :] async for k in client.scan_iter(match=prefix + "*")}


async def zsets(client: Any, namespace: str) -> dict[str, list[tuple[str, float]]]:
    """The store's sorted sets, member and score."""
    names = ("all", "unfinished", "undelivered", "acked", "intents", "uncertain")
    return {n: await client.zrange(key(namespace, n), 0, -1, withscores=True) for n in names}


# ------------------------------------------------------------ fleets: the lease


# An owner paused past its lease (a GC pause, SIGSTOP, a blocking call), while
# another process took the namespace over and acknowledged a result, yielded
# that result again: check_lease() knew only of a loss a renewal or a write
# had observed, and completed() hands results read earlier over from memory
# with no await in between. The lease's end is known locally.
async def test_an_owner_paused_past_its_lease_yields_no_result_the_new_owner_acked(
    kie: FakeKie, redis_server: RedisServer, namespace: str
) -> None:
    """A worker paused past its lease while a new owner of its namespace
    acknowledged a result must not yield that result when it wakes."""
    ids = ["veo_1", "veo_2"]
    kie.add_tasks(ids)
    acked_by_new_owner: list[str] = []

    def new_owner(task_id: str) -> None:
        async def run() -> None:
            async with store_on(redis_server, namespace, lock_timeout=5.0) as store:
                await store.ack(task_id)
                acked_by_new_owner.append(task_id)

        asyncio.run(run())

    outcome: str | None = None
    try:
        async with session_on(kie, store=store_on(redis_server, namespace, lease=1.0)) as veo:
            await veo.wait_many(ids)
            await veo.flush()
            completed = veo.completed()
            first = await anext(completed)
            other = ({"veo_1", "veo_2"} - {first.task_id}).pop()
            # The pause: this loop is blocked (no renewal runs) while the
            # lease lapses and another process takes the store over.
            thread = threading.Thread(target=new_owner, args=(other,))
            thread.start()
            thread.join()
            assert acked_by_new_owner == [other]
            try:
                outcome = (await anext(completed)).task_id
            except StoreLockedError:
                outcome = "StoreLockedError"
            await completed.aclose()
    except StoreLockedError:
        pass  # the close's flush of a delivery note: the lease is gone
    assert outcome == "StoreLockedError", f"yielded {outcome}, acked by the new owner"


# ------------------------------------------------------- no key left behind


async def test_forget_discard_and_purge_leave_no_key_or_member_behind(
    redis_server: RedisServer, namespace: str, client: Any
) -> None:
    """Pins that a forgotten task leaves no hash and no member in any sorted
    set (acked included), a discarded intent neither, and a purge of
    everything leaves only the schema and the lease: nothing piles up forever."""
    now = time.time()
    async with store_on(redis_server, namespace) as store:
        await store.record_intent("r1", "generate", {"model": "veo3"}, now)
        await store.attach_task_id("r1", "veo_a")
        await store.record_intent("r2", "generate", {}, now)  # stays uncertain
        await store.record_intent("r3", "generate", {}, now)
        assert await store.discard_intent("r3")
        await store.track(["veo_b", "veo_c"], created_at=now)
        for tid in ("veo_b", "veo_c"):
            await store.record_terminal(tid, record_to_json(finished(tid)), now)
        await store.ack("veo_b")
        assert [t.task_id for t in await store.list_tasks("acked")] == ["veo_b"]
        assert await store.forget("veo_b")
        assert await client.exists(key(namespace, "t:veo_b")) == 0
        found = await zsets(client, namespace)
        assert all("veo_b" not in dict(members) for members in found.values())
        assert await client.exists(key(namespace, "i:r3")) == 0
        assert all("r3" not in dict(members) for members in found.values())
        assert dict(found["uncertain"]) == {"r2": now}
        await store.ack("veo_c")  # purged while acknowledged: out of "acked" too
        assert await store.purge(0, now=now + 10) == 4  # veo_a, veo_c, r1, r2
        assert await keys_of(client, namespace) == {"schema", "lock"}
    assert await keys_of(client, namespace) == {"schema"}


async def test_a_purge_spanning_several_calls_deletes_every_row(
    redis_server: RedisServer, namespace: str, client: Any
) -> None:
    """Pins the purge's loop (a script call deletes at most 1000 tasks and
    1000 intents): more tasks than that with one intent, then more intents
    than that with one task, are all deleted and counted."""
    now = time.time()
    async with store_on(redis_server, namespace) as store:
        await store.track([f"veo_{i}" for i in range(2500)], created_at=now - 100)
        await store.record_intent("r1", "generate", {}, now - 100)
        assert await store.purge(10, now=now) == 2501
        assert await keys_of(client, namespace) == {"schema", "lock"}
        await store.track(["veo_x"], created_at=now - 100)
        await asyncio.gather(
            *(store.record_intent(f"r{i}", "generate", {}, now - 100) for i in range(1500))
        )
        assert await store.purge(10, now=now) == 1501
        assert await keys_of(client, namespace) == {"schema", "lock"}


# ------------------------------------------------ ordering and merged fields


async def test_an_attached_intent_older_than_its_tracked_task_moves_it_in_every_listing(
    redis_server: RedisServer, namespace: str, client: Any
) -> None:
    """Pins ATTACH's rescore: a task tracked at t=200 whose intent (t=100) is
    attached later takes the intent's creation time in every sorted set, so
    listings (and the purge by age) order and cut it by that time."""
    async with store_on(redis_server, namespace) as store:
        await store.track(["veo_x"], created_at=200.0)
        await store.track(["veo_y"], created_at=150.0)
        await store.record_intent("r1", "generate", {}, 100.0)
        await store.attach_task_id("r1", "veo_x")
        assert [t.task_id for t in await store.list_tasks()] == ["veo_x", "veo_y"]
        assert [t.task_id for t in await store.unfinished()] == ["veo_x", "veo_y"]
        assert (await store.get("veo_x")).created_at == 100.0  # type: ignore[union-attr]
        # A later intent does not move it back.
        await store.record_intent("r2", "generate", {}, 300.0)
        await store.reconcile("r2", "veo_y")
        assert [t.task_id for t in await store.list_tasks()] == ["veo_x", "veo_y"]
        assert await client.zscore(key(namespace, "all"), "veo_y") == 150.0


# ------------------------------------------------------------ the lease, pinned


async def test_two_workers_opening_one_fresh_namespace_at_once_get_one_owner(
    redis_server: RedisServer, namespace: str, client: Any
) -> None:
    """Pins SET NX: two stores racing to open the same fresh namespace (two
    workers started with one configuration): one owns it, the other gets
    StoreLockedError, and the lock holds the winner's lease alone."""
    first, second = store_on(redis_server, namespace), store_on(redis_server, namespace)
    outcomes = await asyncio.gather(first.open(), second.open(), return_exceptions=True)
    try:
        assert sorted(type(o).__name__ for o in outcomes) == ["NoneType", "StoreLockedError"]
        owner = first if outcomes[0] is None else second
        await owner.track(["veo_1"])  # the owner writes
        loser = second if owner is first else first
        assert not loser.closed
        assert loser._state_name() == "unopened"
        assert await client.pttl(key(namespace, "lock")) > 0
    finally:
        await first.aclose()
        await second.aclose()
    assert await client.exists(key(namespace, "lock")) == 0


async def test_one_failed_renewal_within_the_lease_keeps_the_store(
    redis_server: RedisServer, namespace: str, client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Pins that "a whole lease without renewal" counts from the last renewal
    that succeeded, not from the open: past one lease of good renewals, a
    renewal that fails at once (its lock key briefly of another type) loses
    nothing, and the next renewal holds the store."""
    lock = key(namespace, "lock")
    async with store_on(redis_server, namespace, lease=1.0) as store:
        await asyncio.sleep(1.6)  # past one lease: renewed meanwhile
        token = await client.get(lock)
        async with client.pipeline(transaction=True) as pipe:
            await pipe.delete(lock).hset(lock, "x", "y").pexpire(lock, 1000).execute()
        await asyncio.sleep(0.45)  # a renewal (every third of the lease) fails meanwhile
        async with client.pipeline(transaction=True) as pipe:
            await pipe.delete(lock).set(lock, token, px=1000).execute()
        assert "renewing the lease failed" in caplog.text
        await asyncio.sleep(0.5)  # the next renewal holds it again
        store.check_lease()
        await store.track(["veo_1"])
        assert await client.pttl(lock) > 0


# One renewal that hung (the server stalled for a bit over a third of the
# lease, well within the lease) lost the lease for good: the renewer slept a
# third, the renewal timed out after a third, and it slept a third again, so
# the next renewal went exactly as the lease ended, after it lapsed.
async def test_a_renewal_hanging_for_a_third_of_the_lease_does_not_lose_the_store(
    redis_server: RedisServer, namespace: str, client: Any
) -> None:
    """A server stall right after a renewal, for 1.15 s of a 1.5 s lease,
    ends 0.3 s before the lease would: the store must still be held."""
    lock = key(namespace, "lock")
    async with store_on(redis_server, namespace, lease=1.5) as store:
        await asyncio.sleep(0.6)
        last = await client.pttl(lock)
        while True:  # a renewal: the lease's time left jumps back up
            await asyncio.sleep(0.005)
            left = await client.pttl(lock)
            if left > last + 100:
                break
            last = left
        await client.execute_command("CLIENT", "PAUSE", "1150", "WRITE")
        await asyncio.sleep(1.8)
        store.check_lease()  # (was StoreLockedError: the lease lapsed)
        await store.track(["veo_1"])


async def test_attach_keeps_the_tasks_first_ref_and_model_and_takes_the_later_update(
    redis_server: RedisServer, namespace: str
) -> None:
    """Pins ATTACH's merge, as SQLite's upsert does it: a task keeps the ref
    it was first created under when a second intent is reconciled to it, a
    model already known is kept, and updated_at is the later of the
    intent's creation and the attach."""
    async with store_on(redis_server, namespace) as store:
        await store.record_intent("r1", "generate", {"model": "veo3"}, 100.0)
        await store.attach_task_id("r1", "veo_x", at=500.0)
        task = await store.get("veo_x")
        assert task is not None
        assert (task.ref, task.model, task.created_at, task.updated_at) == (
            "r1", "veo3", 100.0, 500.0
        )  # fmt: skip
        await store.record_intent("r2", "generate", {"model": "veo3_fast"}, 50.0)
        assert await store.reconcile("r2", "veo_x", at=600.0)
        task = await store.get("veo_x")
        assert task is not None
        assert (task.ref, task.model, task.created_at, task.updated_at) == (
            "r1", "veo3", 50.0, 600.0
        )  # fmt: skip


async def test_track_fills_a_missing_model_and_never_overwrites_one(
    redis_server: RedisServer, namespace: str
) -> None:
    """Pins TRACK on a known task: its model is filled in when missing, kept
    when present; its creation time is kept."""
    async with store_on(redis_server, namespace) as store:
        await store.track(["veo_a"], created_at=100.0)
        await store.track(["veo_a"], model="veo3", created_at=200.0)
        await store.track(["veo_a"], model="veo3_fast", created_at=300.0)
        task = await store.get("veo_a")
        assert task is not None
        assert (task.model, task.created_at) == ("veo3", 100.0)


async def test_write_behind_keeps_first_times_and_counts_every_delivery(
    redis_server: RedisServer, namespace: str
) -> None:
    """Pins WRITE_BEHIND's merge across batches: the first sighting and the
    first terminal time are kept, deliveries add up (not the last batch's
    count), a terminal record of a task never seen takes its own time as
    creation and first sighting."""
    async with store_on(redis_server, namespace) as store:
        await store.track(["veo_a"], created_at=100.0)
        await store.record_seen("veo_a", 110.0)
        await store.flush()
        await store.record_seen("veo_a", 120.0)  # a sighting alone, in its own batch
        await store.flush()
        await store.record_seen("veo_a", 125.0)  # rides on the terminal record
        await store.record_terminal("veo_a", record_to_json(finished("veo_a")), 130.0)
        await store.flush()
        await store.record_terminal("veo_a", record_to_json(finished("veo_a")), 140.0)
        await store.mark_delivered("veo_a", at=150.0)
        await store.flush()
        await store.mark_delivered("veo_a", at=160.0)
        await store.mark_delivered("veo_a", at=170.0)
        await store.flush()
        task = await store.get("veo_a")
        assert task is not None
        assert (task.created_at, task.first_seen_at, task.terminal_at) == (100.0, 110.0, 130.0)
        assert (task.deliveries, task.delivered_at, task.updated_at) == (3, 170.0, 170.0)
        # Never seen nor tracked: its terminal record's time stands for both.
        await store.record_terminal("veo_b", record_to_json(finished("veo_b")), 200.0)
        task = await store.get("veo_b")
        assert task is not None
        assert (task.created_at, task.first_seen_at, task.terminal_at) == (200.0, 200.0, 200.0)
        assert [t.task_id for t in await store.undelivered()] == ["veo_a", "veo_b"]


async def test_a_delivery_note_for_an_unknown_or_forgotten_task_writes_nothing(
    redis_server: RedisServer, namespace: str, client: Any
) -> None:
    """Pins WRITE_BEHIND's "deliveries count only for a task the store
    knows": a late delivery note of a forgotten task neither brings back a
    hash (one without a creation time, unreadable and never purged) nor a
    listing entry."""
    async with store_on(redis_server, namespace) as store:
        await store.record_terminal("veo_a", record_to_json(finished("veo_a")), 100.0)
        await store.flush()
        assert await store.forget("veo_a")
        await store.mark_delivered("veo_a", at=110.0)
        await store.mark_delivered("veo_never", at=110.0)
        await store.flush()
        assert await store.get("veo_a") is None
        assert await store.get("veo_never") is None
        assert await store.list_tasks() == []
        assert await keys_of(client, namespace) == {"schema", "lock"}


async def test_an_ack_of_an_acked_task_keeps_its_first_time_and_a_late_record_does_not_undeliver_it(
    redis_server: RedisServer, namespace: str
) -> None:
    """Pins ACK's "not acknowledged yet" condition and WRITE_BEHIND's
    "not acked": a second ack keeps the first time, and a terminal record
    met again after the ack (a later session polled it) does not list the
    task as undelivered again (it would be handed over after its ack)."""
    async with store_on(redis_server, namespace) as store:
        await store.record_terminal("veo_a", record_to_json(finished("veo_a")), 100.0)
        await store.ack("veo_a", at=110.0)
        await store.ack("veo_a", at=120.0)
        await store.record_terminal(
            "veo_a", record_to_json(finished("veo_a", TaskStatus.FAILED)), 130.0
        )
        await store.flush()
        task = await store.get("veo_a")
        assert task is not None
        assert task.acked_at == 110.0
        assert await store.undelivered() == []
        assert [t.task_id for t in await store.list_tasks("acked")] == ["veo_a"]


async def test_an_intent_with_a_task_id_is_never_discarded(
    redis_server: RedisServer, namespace: str, client: Any
) -> None:
    """Pins DISCARD's "without a task id": discarding an intent that already
    has its task id returns False and keeps it (it stands for a paid create
    that `intents()` must keep listing, so it is never sent again)."""
    async with store_on(redis_server, namespace) as store:
        await store.record_intent("r1", "generate", {"prompt": "a fox"}, 100.0)
        await store.attach_task_id("r1", "veo_x")
        assert await store.discard_intent("r1") is False
        intent = await store.get_intent("r1")
        assert intent is not None
        assert intent.task_id == "veo_x"
        assert [i.ref for i in await store.intents()] == ["r1"]
        assert await store.discard_intent("r_unknown") is False
        await store.record_intent("r2", "generate", {}, 100.0)
        assert await store.discard_intent("r2") is True
        assert await store.get_intent("r2") is None
        assert await client.exists(key(namespace, "i:r2")) == 0


async def test_a_purge_keeps_what_was_created_exactly_at_its_cutoff(
    redis_server: RedisServer, namespace: str
) -> None:
    """Pins the purge's strict "created before the cutoff" (SQLite's
    ``created_at < cutoff``): a task or an intent created at the cutoff is kept."""
    async with store_on(redis_server, namespace) as store:
        await store.track(["veo_old"], created_at=99.5)
        await store.track(["veo_edge"], created_at=100.0)
        await store.record_intent("r_old", "generate", {}, 99.5)
        await store.record_intent("r_edge", "generate", {}, 100.0)
        assert await store.purge(10, now=110.0) == 2
        assert [t.task_id for t in await store.list_tasks()] == ["veo_edge"]
        assert [i.ref for i in await store.intents()] == ["r_edge"]


async def test_a_sighting_of_an_unknown_task_tracks_it_as_unfinished(
    redis_server: RedisServer, namespace: str
) -> None:
    """Pins WRITE_BEHIND's "a sighting alone makes the task known": an id
    first written by its sighting (veo.task(id) polled before any track)
    is listed unfinished, so a restart resumes it, created at its sighting."""
    async with store_on(redis_server, namespace) as store:
        await store.record_seen("veo_n", 100.0)
        await store.flush()
        [task] = await store.unfinished()
        assert (task.task_id, task.created_at, task.first_seen_at) == ("veo_n", 100.0, 100.0)
        assert [t.task_id for t in await store.list_tasks()] == ["veo_n"]


async def test_a_store_of_an_older_schema_is_refused_untouched_too(
    redis_server: RedisServer, namespace: str, client: Any
) -> None:
    """Pins "a namespace written by another version is refused": an older
    schema version (0) is refused as a newer one is, never silently read or
    rewritten, and the lease is let go."""
    await client.set(key(namespace, "schema"), "0")
    with pytest.raises(StoreVersionError) as caught:
        await store_on(redis_server, namespace).open()
    assert (caught.value.found, caught.value.supported) == (0, 1)
    assert await client.get(key(namespace, "schema")) == "0"
    assert await client.exists(key(namespace, "lock")) == 0


async def test_a_task_hash_without_a_creation_time_is_named_as_damaged(
    redis_server: RedisServer, namespace: str, client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Pins the read's "it has no creation time": a task hash missing
    created_at (a hand edit, a partial write by another tool) raises
    StoreCorruptError naming it when asked for, and is left out of listings
    with a warning, never read as a task created at None."""
    async with store_on(redis_server, namespace) as store:
        await store.track(["veo_ok"], created_at=100.0)
        await client.hset(key(namespace, "t:veo_bad"), mapping={"deliveries": "0"})
        await client.zadd(key(namespace, "all"), {"veo_bad": 50.0})
        with pytest.raises(StoreCorruptError, match=r"veo_bad.*no creation time"):
            await store.get("veo_bad")
        assert [t.task_id for t in await store.list_tasks()] == ["veo_ok"]
        assert "veo_bad" in caplog.text
