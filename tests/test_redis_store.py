"""RedisStore on a real ``redis-server``: its lease, its errors, its settings,
and durable tracking through a session on it. (What every store must do is
``test_store_contract.py``, run on this store too.)
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
import traceback
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis_asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from veo_async import (
    RedisStore,
    StoreCorruptError,
    StoreError,
    StoreLockedError,
    StoreVersionError,
    VeoSession,
)
from veo_async.store import record_to_json
from veo_async.testing import FakeKie

from ._redis_server import RedisServer, redis_server
from .conftest import child_bytecode_env, leftover_tasks, session_on
from .test_durable import drain, kie
from .test_store import finished

#: A real server, leases in real time, a child process: real time.
pytestmark = pytest.mark.real_time

__all__ = ["kie", "redis_server"]  # fixtures, imported for this module's tests

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def namespace() -> str:
    """A namespace of this test's own."""
    return f"test:{uuid.uuid4().hex}"


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[Any]:
    """A plain redis-py client on the test server, to look at (and spoil) keys."""
    made = redis_asyncio.from_url(redis_server.url, decode_responses=True)
    yield made
    await made.aclose()


def store_on(server: RedisServer, namespace: str, **kwargs: Any) -> RedisStore:
    kwargs.setdefault("flush_interval", 0.01)
    kwargs.setdefault("lock_timeout", 0.0)
    return RedisStore(server.url, namespace=namespace, **kwargs)


# ----------------------------------------------------------------- the lease


async def test_a_second_owner_is_refused_until_the_first_closes(
    redis_server: RedisServer, namespace: str, client: Any
) -> None:
    """One owner per store: a second opener gets StoreLockedError (after its
    lock_timeout); once the first closes, the lock key is gone and it opens."""
    first = store_on(redis_server, namespace)
    await first.open()
    assert await client.get("{" + namespace + "}:lock") is not None
    started = time.monotonic()
    with pytest.raises(StoreLockedError, match="held by another process"):
        await store_on(redis_server, namespace, lock_timeout=0.3).open()
    assert time.monotonic() - started >= 0.3
    await first.aclose()
    assert await client.get("{" + namespace + "}:lock") is None
    async with store_on(redis_server, namespace) as second:
        assert await second.list_tasks() == []
    # Another namespace is another store: no wait.
    async with store_on(redis_server, namespace), store_on(redis_server, namespace + ":b"):
        pass


async def test_the_refusal_names_the_holders_lease_not_the_openers(
    redis_server: RedisServer, namespace: str
) -> None:
    """"Its lease ends within" counts the holder's lease (what its lock key
    has left), not the lease the refused opener would have taken."""
    async with store_on(redis_server, namespace, lease=2.0):
        with pytest.raises(StoreLockedError) as caught:
            await store_on(redis_server, namespace, lease=60.0, lock_timeout=0.2).open()
    within = re.search(r"its lease ends within ([0-9.]+) s", str(caught.value))
    assert within is not None
    assert 0.0 < float(within.group(1)) <= 2.0


_HOLDER = textwrap.dedent(
    """
    import asyncio, sys
    from veo_async import RedisStore

    async def main():
        store = RedisStore(sys.argv[1], namespace=sys.argv[2], lease=1.0, lock_timeout=0)
        await store.open()
        await store.track(["veo_held"])
        print("ready", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


def start_holder(url: str, namespace: str) -> subprocess.Popen[str]:
    """A child process that opens the store, tracks one id, says "ready" and waits."""
    return subprocess.Popen(
        [sys.executable, "-c", _HOLDER, url, namespace],
        stdout=subprocess.PIPE,
        text=True,
        env=child_bytecode_env({**os.environ, "PYTHONPATH": str(ROOT)}),
    )


async def test_a_killed_owner_frees_the_store_within_its_lease(
    redis_server: RedisServer, namespace: str
) -> None:
    """A process SIGKILLed while holding the store frees it within its lease
    (no stale lock), and what it wrote durably is there."""
    proc = start_holder(redis_server.url, namespace)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        with pytest.raises(StoreLockedError):
            await store_on(redis_server, namespace).open()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        started = time.monotonic()
        async with store_on(redis_server, namespace, lock_timeout=10.0) as store:
            assert time.monotonic() - started < 5.0
            assert [t.task_id for t in await store.unfinished()] == ["veo_held"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


async def test_the_lease_is_renewed_while_open(
    redis_server: RedisServer, namespace: str, client: Any
) -> None:
    """An owner keeps its store past its lease (renewed every third of it)."""
    async with store_on(redis_server, namespace, lease=2.0) as store:
        await asyncio.sleep(3.0)  # past the lease: renewed meanwhile (every 2/3 s)
        assert await client.pttl("{" + namespace + "}:lock") > 0
        with pytest.raises(StoreLockedError):
            await store_on(redis_server, namespace).open()
        await store.track(["veo_1"])  # still the owner: writes go through


async def test_an_owner_that_lost_its_lease_can_no_longer_write(
    redis_server: RedisServer, namespace: str, client: Any
) -> None:
    """When another owner took the store over (this one paused past its lease),
    every write of the old owner fails with StoreLockedError, and none lands."""
    store = store_on(redis_server, namespace)
    await store.open()
    try:
        await store.track(["veo_1"])
        await client.set("{" + namespace + "}:lock", "someone-else")
        with pytest.raises(StoreLockedError, match="lost the store's lease"):
            await store.track(["veo_2"])
        with pytest.raises(StoreLockedError):
            await store.ack("veo_1")
        assert await client.exists("{" + namespace + "}:t:veo_2") == 0
    finally:
        await store.aclose()  # (its release leaves the other owner's lock alone)
    assert await client.get("{" + namespace + "}:lock") == "someone-else"


async def test_completed_ends_once_a_write_finds_the_lease_lost(
    kie: FakeKie, redis_server: RedisServer, namespace: str, client: Any
) -> None:
    """A worker whose lease another took over (it paused past its lease) stops
    handing over results once an ack finds the lease gone: completed() ends
    with StoreLockedError, not yielding results the new owner delivers and acks."""
    ids = ["veo_1", "veo_2", "veo_3"]
    kie.add_tasks(ids)
    async with durable(kie, redis_server, namespace) as veo:
        await veo.wait_many(ids)
        yielded: list[str] = []

        async def consume() -> None:
            async for task in veo.completed():
                yielded.append(task.task_id)
                if len(yielded) > 1:
                    with pytest.raises(StoreLockedError):
                        await task.ack()
                    continue
                await task.ack()
                await client.set("{" + namespace + "}:lock", "someone-else")

        with pytest.raises(StoreLockedError, match="lost the store's lease"):
            await consume()
        assert len(yielded) == 2


async def test_completed_ends_once_a_renewal_finds_the_lease_lost(
    kie: FakeKie, redis_server: RedisServer, namespace: str, client: Any
) -> None:
    """A lease found lost by its renewal ends completed() with StoreLockedError
    before it yields anything (another owner delivers those results now)."""
    kie.add_tasks(["veo_1", "veo_2"])
    store = store_on(redis_server, namespace, lease=1.0)
    async with session_on(kie, store=store) as veo:
        await veo.wait_many(["veo_1", "veo_2"])
        await veo.flush()
        await client.set("{" + namespace + "}:lock", "someone-else")
        await asyncio.sleep(0.6)  # a renewal (every third of the lease) has been refused
        completed = veo.completed()
        with pytest.raises(StoreLockedError, match="lost the store's lease"):
            await anext(completed)


async def test_a_lease_not_renewed_for_a_whole_lease_is_held_no_longer(
    kie: FakeKie, redis_server: RedisServer, namespace: str, client: Any
) -> None:
    """Renewals that fail (the server answers no writes) for longer than the
    lease: it may have lapsed and been taken over by a process that reaches
    the server, so completed() ends with StoreLockedError (the renewer only
    warned and tried again, and deliveries went on)."""
    kie.add_tasks(["veo_1", "veo_2"])
    store = store_on(redis_server, namespace, lease=1.0)
    async with session_on(kie, store=store) as veo:
        await veo.wait_many(["veo_1", "veo_2"])
        await veo.flush()
        await client.execute_command("CLIENT", "PAUSE", "3000", "WRITE")
        # Renewals every third of the lease, each timing out after another
        # third: found lost 1.0-1.4 s in.
        await asyncio.sleep(2.2)
        completed = veo.completed()
        with pytest.raises(StoreLockedError, match="lost the store's lease"):
            await anext(completed)
        await client.execute_command("CLIENT", "UNPAUSE")


# ----------------------------------------------------------------- clear errors


async def test_a_newer_schema_is_refused_untouched(
    redis_server: RedisServer, namespace: str, client: Any
) -> None:
    """A store written by a newer version: StoreVersionError, the keys untouched,
    the lock let go."""
    await client.set("{" + namespace + "}:schema", "2")
    with pytest.raises(StoreVersionError) as caught:
        await store_on(redis_server, namespace).open()
    assert (caught.value.found, caught.value.supported) == (2, 1)
    assert await client.get("{" + namespace + "}:schema") == "2"
    assert await client.get("{" + namespace + "}:lock") is None


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        pytest.param({"schema": "one"}, "not a number", id="schema-text"),
        pytest.param({"all": "x"}, "no schema version", id="tasks-without-schema"),
    ],
)
async def test_keys_a_task_store_did_not_write_are_refused(
    redis_server: RedisServer, namespace: str, client: Any, spoil: dict[str, str], message: str
) -> None:
    """Keys under the namespace that a task store did not write: StoreCorruptError."""
    for key, value in spoil.items():
        await client.set("{" + namespace + "}:" + key, value)
    with pytest.raises(StoreCorruptError, match=message):
        await store_on(redis_server, namespace).open()


@pytest.mark.parametrize("kind", ["hash", "string without an expiry"])
async def test_a_lock_key_that_is_no_lease_is_named_as_corrupt(
    redis_server: RedisServer, namespace: str, client: Any, kind: str
) -> None:
    """A lock key a task store did not take (another type, or a string that
    never expires) would hold the namespace forever: StoreCorruptError naming
    it, not "held by another process (its lease ends within 15 s)" at every
    open; a lease another store holds is still StoreLockedError."""
    lock = "{" + namespace + "}:lock"
    if kind == "hash":
        await client.hset(lock, "owner", "someone else")
    else:
        await client.set(lock, "someone else")
    with pytest.raises(StoreCorruptError, match=f"lock key .* is a {kind.split()[0]}"):
        await store_on(redis_server, namespace, lock_timeout=5.0).open()
    await client.delete(lock)
    async with store_on(redis_server, namespace):
        with pytest.raises(StoreLockedError, match="held by another process"):
            await store_on(redis_server, namespace, lock_timeout=0.1).open()


async def test_a_key_of_the_wrong_type_is_named_as_corrupt(
    redis_server: RedisServer, namespace: str, client: Any
) -> None:
    """A set of the store holding another type (written by something else): a
    write naming it fails with StoreCorruptError."""
    async with store_on(redis_server, namespace) as store:
        await client.set("{" + namespace + "}:unfinished", "not a sorted set")
        with pytest.raises(StoreCorruptError, match="not what a task store writes"):
            await store.track(["veo_1"])


async def test_a_damaged_task_is_named(
    redis_server: RedisServer, namespace: str, client: Any
) -> None:
    """A task hash whose times are not numbers: reading it raises StoreCorruptError."""
    async with store_on(redis_server, namespace) as store:
        await store.track(["veo_1"])
        await client.hset("{" + namespace + "}:t:veo_1", "created_at", "yesterday")
        with pytest.raises(StoreCorruptError, match="veo_1"):
            await store.get("veo_1")


async def test_a_damaged_task_is_left_out_of_a_resume_with_a_warning(
    kie: FakeKie,
    redis_server: RedisServer,
    namespace: str,
    client: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One task hash whose creation time is not a number (bit rot, a hand edit)
    is left out of resume() and the listings with a warning naming it; every
    other task of the namespace resumes (it used to fail them all)."""
    async with store_on(redis_server, namespace) as store:
        await store.track(["veo_1", "veo_2", "veo_3"])
    await client.hset("{" + namespace + "}:t:veo_2", "created_at", "abc")
    caplog.set_level(logging.WARNING, logger="veo_async")
    async with durable(kie, redis_server, namespace) as veo:
        report = await veo.resume()
        assert sorted(task.task_id for task in report.tasks) == ["veo_1", "veo_3"]
    assert any("veo_2" in r.getMessage() for r in caplog.records)


async def test_a_damaged_intent_is_left_out_of_the_listings_with_a_warning(
    redis_server: RedisServer, namespace: str, client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """An intent hash whose request is not JSON is left out of uncertain() and
    intents() with a warning naming its ref, never its content; asked for by
    ref, it raises StoreCorruptError."""
    async with store_on(redis_server, namespace) as store:
        await store.record_intent("ref_damaged_0001", "generate", {"prompt": "a"}, time.time())
        await store.record_intent("ref_intact_00002", "generate", {"prompt": "b"}, time.time())
    await client.hset("{" + namespace + "}:i:ref_damaged_0001", "request", "{secret prompt")
    caplog.set_level(logging.WARNING, logger="veo_async")
    async with store_on(redis_server, namespace) as store:
        assert [i.ref for i in await store.uncertain()] == ["ref_intact_00002"]
        assert [i.ref for i in await store.intents()] == ["ref_intact_00002"]
        with pytest.raises(StoreCorruptError, match="ref_damaged_0001"):
            await store.get_intent("ref_damaged_0001")
    warned = [r.getMessage() for r in caplog.records if "ref_damaged_0001" in r.getMessage()]
    assert warned
    assert not any("secret" in message for message in warned)


async def test_an_unreachable_server_names_the_store_never_the_password() -> None:
    """No server: StoreError at open naming the store; the password appears in
    no repr, message or chained error."""
    with socket_port() as port:
        store = RedisStore(f"redis://user:s3cret-pw@127.0.0.1:{port}/0", timeout=2.0)
        assert "s3cret-pw" not in repr(store)
        with pytest.raises(StoreError) as caught:
            await store.open()
    text = "".join(traceback.format_exception(caught.value))
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert "s3cret-pw" not in text
    assert not leftover_tasks()


class socket_port:
    """A loopback port with nothing listening on it (bound, never listened)."""

    def __enter__(self) -> int:
        import socket

        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        port: int = self._socket.getsockname()[1]
        return port

    def __exit__(self, *exc: object) -> None:
        self._socket.close()


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        pytest.param((), {}, TypeError, "either a url or a client", id="neither"),
        pytest.param(("http://x",), {}, ValueError, "redis://", id="scheme"),
        pytest.param(("redis://x",), {"namespace": "a{b}"}, ValueError, "namespace", id="ns"),
        pytest.param(("redis://x",), {"namespace": ""}, ValueError, "namespace", id="ns-empty"),
        pytest.param(("redis://x",), {"lease": 0.5}, ValueError, "lease", id="lease"),
        pytest.param(("redis://x",), {"timeout": 0}, ValueError, "timeout", id="timeout"),
        pytest.param(("redis://x",), {"batch_size": 0}, ValueError, "batch_size", id="batch"),
        pytest.param(("redis://x",), {"retention": -1}, ValueError, "retention", id="retention"),
        pytest.param((42,), {}, TypeError, "url must be a str", id="url-type"),
    ],
)
def test_bad_settings_are_refused_at_construction(
    args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    """Bad settings raise at construction, naming the setting (no I/O)."""
    with pytest.raises(error, match=message):
        RedisStore(*args, **kwargs)


@pytest.mark.parametrize(
    "url",
    [
        "redis://alice:pw-hunter22@host:6379/0",
        "redis://host:6379/0?password=pw-hunter22",
        "unix:///run/redis.sock?db=0&password=pw-hunter22",
        "redis://127.0.0.1:1/0?password=pw@hunter22",
        "unix:///x.sock?password=pw@hunter22",
    ],
)
async def test_a_password_anywhere_in_the_url_stays_out_of_reprs_and_errors(url: str) -> None:
    """The password in the user info, or in the query (``?password=``, the
    unix form): in no repr, message or chain."""
    store = RedisStore(url, timeout=1.0)
    assert "hunter22" not in repr(store)
    with pytest.raises(StoreError) as caught:
        await store.open()
    assert "hunter22" not in "".join(traceback.format_exception(caught.value))


@pytest.mark.parametrize(
    "url",
    [
        "redis://alice:ab/pw-hunter22@host:6379/0",
        "redis://alice:pw-hunter22#x@host/0",
        "redis://:pw?hunter22@host/0",
    ],
)
def test_a_password_whose_delimiter_ends_the_host_part_is_refused_when_given(url: str) -> None:
    """A "/", "#" or "?" in a password ends the host part there: what stands
    as the port is part of the password. Refused at construction (it failed
    only at open()), saying how to write them, quoting none of it."""
    with pytest.raises(ValueError, match="%2F, %3F or %23") as caught:
        RedisStore(url, timeout=1.0)
    told = "".join(traceback.format_exception(caught.value))
    assert "hunter22" not in told
    assert "pw" not in str(caught.value)
    assert caught.value.__context__ is None


async def test_a_lapsed_lease_is_not_taken_again(
    redis_server: RedisServer, namespace: str, client: Any
) -> None:
    """An owner whose lease lapsed (paused past it) does not take it back when
    its renewer runs again, even if nobody holds it: another owner may have
    come and gone meanwhile. Its writes fail from then on."""
    async with store_on(redis_server, namespace, lease=1.0) as store:
        await client.delete("{" + namespace + "}:lock")  # as if it lapsed
        await asyncio.sleep(0.8)  # the renewer ran (every third of the lease)
        assert await client.get("{" + namespace + "}:lock") is None
        with pytest.raises(StoreLockedError):
            await store.track(["veo_1"])


@pytest.mark.parametrize(
    "url", ["redis://admin:4821/xyz@host:6379/0", "redis://admin:4821#xyz@host:6379/0"]
)
def test_a_password_cut_short_by_a_delimiter_shows_no_part(url: str) -> None:
    """A password with an unescaped "/" or "#" after digits reads to a URL
    parser as ``user:port``: the store shows no host then, rather than the
    user and the password's start."""
    assert "4821" not in repr(RedisStore(url))
    assert "admin" not in repr(RedisStore(url))


def test_a_password_in_a_bad_url_is_not_echoed() -> None:
    """A refused URL's message leaves its password out."""
    with pytest.raises(ValueError, match="redis://") as caught:
        RedisStore("http://me:hunter22@host/")
    assert "hunter22" not in str(caught.value)


async def test_a_client_that_sends_commands_again_is_refused() -> None:
    """A given client that resends a command after a lost connection
    (redis-py's retry) is refused before any I/O: a write Redis applied but
    whose answer was lost would be applied twice (an intent read as already
    recorded, a delivery counted twice, the store's own lease as another's).
    One made without retries is taken."""
    resending = redis_asyncio.Redis(host="127.0.0.1", port=1, retry=Retry(NoBackoff(), 3))
    once = redis_asyncio.Redis(host="127.0.0.1", port=1, retry=Retry(NoBackoff(), 0))
    try:
        with pytest.raises(ValueError, match=r"again after a lost connection \(up to 3 times\)"):
            RedisStore(client=resending)
        with pytest.raises(ValueError, match="up to 3 times"):
            RedisStore(resending)  # given first, positionally
        assert "Redis" in repr(RedisStore(client=once))
    finally:
        await resending.aclose()
        await once.aclose()


async def test_a_given_client_is_used_and_left_open(
    redis_server: RedisServer, namespace: str
) -> None:
    """A client the caller made (here: one answering bytes) serves the store and
    is not closed with it."""
    given = redis_asyncio.from_url(redis_server.url)  # no decode_responses
    try:
        async with RedisStore(client=given, namespace=namespace, lock_timeout=0) as store:
            await store.track(["veo_1"], model="veo3")
            [task] = await store.list_tasks()
            assert (task.task_id, task.model) == ("veo_1", "veo3")
            assert "Redis" in repr(store)
        # Given first, positionally, it is taken as the client too.
        async with RedisStore(given, namespace=namespace, lock_timeout=0) as store:
            assert [task.task_id for task in await store.list_tasks()] == ["veo_1"]
        assert await given.ping()
    finally:
        await given.aclose()


async def test_close_leaves_nothing_running(redis_server: RedisServer, namespace: str) -> None:
    """While open, the writer and the lease's renewer run; after aclose none does."""
    store = store_on(redis_server, namespace)
    await store.open()
    assert {t.get_name().split(" ")[2] for t in leftover_tasks()} == {"writer", "lease"}
    await store.aclose()
    await store.aclose()
    assert not leftover_tasks()


# ------------------------------------------------------ through a session


def durable(kie: FakeKie, server: RedisServer, namespace: str) -> VeoSession:
    return session_on(kie, store=store_on(server, namespace), create_rate=10_000)


async def test_a_session_resumes_and_delivers_until_acked_across_restarts(
    kie: FakeKie, redis_server: RedisServer, namespace: str
) -> None:
    """Created and tracked tasks survive a restart of the session on the same
    store: unfinished ones are polled again, results are handed over until
    acknowledged, then never again."""
    kie.add_task("veo_slow", complete_after=3600)
    async with durable(kie, redis_server, namespace) as veo:
        created = await veo.generate("a fox", model="veo3_fast")
        await created
        outcomes = await veo.wait_many(["veo_slow"], timeout=0.05, return_exceptions=True)
        assert isinstance(outcomes[0], TimeoutError)
    kie.add_task("veo_slow", complete_after=0.05)
    async with durable(kie, redis_server, namespace) as veo:
        report = await veo.resume()
        assert [task.task_id for task in report.tasks] == ["veo_slow"]
        assert [task.task_id for task in report.undelivered] == [created.task_id]
        assert sorted(await drain(veo, ack=False)) == sorted([created.task_id, "veo_slow"])
    async with durable(kie, redis_server, namespace) as veo:
        await veo.resume()
        assert sorted(await drain(veo)) == sorted([created.task_id, "veo_slow"])
    async with durable(kie, redis_server, namespace) as veo:
        report = await veo.resume()
        assert (report.tasks, report.undelivered, report.uncertain) == ((), (), ())
        assert await drain(veo) == []
    assert kie.created == 1


async def test_an_open_cancelled_at_its_last_step_holds_no_lease(
    redis_server: RedisServer, namespace: str, client: Any
) -> None:
    """An open() cancelled while it asks the server about persistence (its
    last step, after the lease was taken) lets the lease go and leaves no
    task: a renewer left behind would hold the namespace forever."""

    class SlowConfig(redis_asyncio.Redis):
        async def config_get(self, *args: Any, **kwargs: Any) -> Any:
            await asyncio.sleep(3600)

    given = SlowConfig.from_url(redis_server.url, decode_responses=True)
    try:
        store = RedisStore(client=given, namespace=namespace, lock_timeout=0)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(store.open(), 0.5)
        assert await client.get("{" + namespace + "}:lock") is None
        assert not leftover_tasks()
        async with store_on(redis_server, namespace):
            pass  # free for the next owner
    finally:
        await given.aclose()


async def test_a_cancelled_consumer_of_completed_ends_at_any_step(
    kie: FakeKie, redis_server: RedisServer, namespace: str
) -> None:
    """A consumer of completed() cancelled at any loop step of its reads ends
    cancelled. redis-py's own socket_timeout went through asyncio.wait_for,
    which on Python 3.10/3.11 lost a cancellation landing as a command's write
    completed: the cancelled consumer carried on and waited forever."""
    kie.add_task("veo_done")
    kie.add_task("veo_running", complete_after=3600)
    async with durable(kie, redis_server, namespace) as veo:
        await veo.track(["veo_done", "veo_running"])
        await veo.wait_many(["veo_done"])

        async def consume() -> None:
            async for _task in veo.completed(follow=True):
                pass

        for steps in range(40):
            consumer = asyncio.ensure_future(consume())
            for _ in range(steps):
                await asyncio.sleep(0)
            consumer.cancel()
            done, _ = await asyncio.wait((consumer,), timeout=5)
            assert done, f"a consumer cancelled after {steps} loop steps went on"
            assert consumer.cancelled()


async def test_a_server_that_never_answers_fails_within_the_timeout(
    namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A server that accepts and never answers: StoreError naming the wait
    after ``timeout`` seconds, nothing left running."""
    connections: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        store = RedisStore(f"redis://127.0.0.1:{port}/0", namespace=namespace, timeout=0.3)
        with pytest.raises(StoreError, match=r"no answer in 0.3 s while opening"):
            await store.open()
        assert not leftover_tasks()
        # No lease can be let go at a server that does not answer: no second wait.
        assert "letting the lease go failed" not in caplog.text
    finally:
        for writer in connections:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_refused_connection_fails_the_open_without_a_lease_warning(
    namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A server that refuses the connection: the open's StoreError, and no
    warning that letting a lease go failed (none can have been taken)."""
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    caplog.set_level(logging.WARNING, logger="veo_async")
    store = RedisStore(f"redis://127.0.0.1:{port}/0", namespace=namespace, timeout=1)
    with pytest.raises(StoreError, match="opening failed"):
        await store.open()
    assert not leftover_tasks()
    assert [r.getMessage() for r in caplog.records if r.name == "veo_async"] == []


async def test_a_write_behind_batch_failing_while_the_server_is_away_is_kept(
    redis_server: RedisServer, namespace: str
) -> None:
    """The server stops answering while a terminal record waits to be written:
    flush() says so (StoreError), but the record is not dropped: once the
    server is back, ack() acknowledges it (it used to find the task unfinished
    and change nothing), and the result is not delivered again after a reopen.
    A pipeline given up on leaves no connection behind (no ResourceWarning)."""
    record = record_to_json(finished("veo_1"))
    async with store_on(redis_server, namespace, timeout=0.5, flush_interval=3600) as store:
        await store.track(["veo_1"])
        await store.record_terminal("veo_1", record, time.time())
        redis_server.process.send_signal(signal.SIGSTOP)
        try:
            with pytest.raises(StoreError, match="no answer"):
                await store.flush()
        finally:
            redis_server.process.send_signal(signal.SIGCONT)
        await store.ack("veo_1")
        [acked] = await store.list_tasks("acked")
        assert acked.task_id == "veo_1"
        assert acked.record == record
    async with store_on(redis_server, namespace) as again:
        assert await again.undelivered() == []
    gc.collect()  # a pipeline still holding its connection would warn here


async def test_an_open_cancelled_while_its_lease_is_being_taken_holds_none(
    redis_server: RedisServer, namespace: str, client: Any
) -> None:
    """An open() cancelled while the SET that takes the lease is out (the
    server took it, the answer never came back): the lease is let go, so the
    next owner does not wait a whole lease."""

    class LateAnswer(redis_asyncio.Redis):
        async def set(self, *args: Any, **kwargs: Any) -> Any:
            await super().set(*args, **kwargs)
            await asyncio.sleep(3600)

    given = LateAnswer.from_url(redis_server.url, decode_responses=True)
    try:
        store = RedisStore(given, namespace=namespace, lock_timeout=0)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(store.open(), 0.5)
        assert await client.get("{" + namespace + "}:lock") is None
        assert not leftover_tasks()
    finally:
        await given.aclose()


async def test_two_concurrent_opens_of_one_store_open_it_once(
    redis_server: RedisServer, namespace: str, client: Any
) -> None:
    """Two open() calls at once: the second waits for the first and finds the
    store open; the store works, and its close lets the lease go."""
    store = store_on(redis_server, namespace, lock_timeout=1.0)
    await asyncio.gather(store.open(), store.open())
    await store.track(["veo_1"])
    assert [task.task_id for task in await store.list_tasks()] == ["veo_1"]
    await store.aclose()
    assert await client.get("{" + namespace + "}:lock") is None


async def test_a_reader_that_must_not_create_finds_no_store_and_leaves_nothing(
    redis_server: RedisServer, namespace: str, client: Any
) -> None:
    """create=False (what the command line's readers pass): a namespace with
    no store raises StoreError and is left as it was, without a schema key
    or a lock; one with a store opens."""
    with pytest.raises(StoreError, match="no task store in this namespace"):
        await store_on(redis_server, namespace, create=False).open()
    assert await client.keys("{" + namespace + "}:*") == []
    async with store_on(redis_server, namespace) as made:
        await made.track(["veo_1"])
    async with store_on(redis_server, namespace, create=False) as store:
        assert [task.task_id for task in await store.list_tasks()] == ["veo_1"]
