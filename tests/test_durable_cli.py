"""The CLI's durable side: ``wait --store``, ``tasks list|show|resume --store``.

Run in process (:func:`tests._cli.cli`: a child's streams and environment, in a
worker thread) against a simulator on loopback, as in ``test_cli.py``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from veo_async import RedisStore, SQLiteStore
from veo_async.testing import FakeKie, Fault, TaskScript

from ._cli import FAST, KEY, against, cli
from ._redis_server import RedisServer, redis_server

__all__ = ["redis_server"]  # the fixture, imported for the Redis store test

pytestmark = [pytest.mark.real_time, pytest.mark.loopback]


@pytest.fixture
async def kie() -> AsyncIterator[FakeKie]:
    """A simulator on loopback expecting the CLI tests' key."""
    async with FakeKie(api_key=KEY) as fake:
        yield fake


async def test_wait_with_a_store_records_writes_and_acknowledges(
    kie: FakeKie, tmp_path: Path
) -> None:
    """wait --store writes each result once and acknowledges it; a rerun writes nothing."""
    db = str(tmp_path / "veo.db")
    kie.add_task("veo_a", complete_after=0.05)
    kie.add_task("veo_b", complete_after=0.05, final_status=2)
    first = await cli("wait", *against(kie, "--store", db, *FAST, "veo_a", "veo_b"))
    assert first.code == 1, first.stderr  # veo_b failed
    assert set(first.by_id()) == {"veo_a", "veo_b"}
    again = await cli("wait", *against(kie, "--store", db, *FAST))
    assert again.code == 0, again.stderr
    assert again.lines() == []
    named = await cli("wait", *against(kie, "--store", db, *FAST, "veo_a", "veo_b"))
    # Its outcome still counts: veo_b failed (it exited 0, as if it succeeded).
    assert named.code == 1, named.stderr
    assert named.lines() == []
    for task_id, status in (("veo_a", "SUCCESS"), ("veo_b", "FAILED")):
        assert f"{task_id}: already delivered and acknowledged" in named.stderr
        assert f"({status}; see" in named.stderr
    succeeded = await cli("wait", *against(kie, "--store", db, *FAST, "veo_a"))
    assert succeeded.code == 0, succeeded.stderr
    async with SQLiteStore(db) as store:
        assert {t.task_id for t in await store.list_tasks("acked")} == {"veo_a", "veo_b"}


async def test_tasks_list_shows_the_model_and_creation_of_ids_handed_in(
    kie: FakeKie, tmp_path: Path
) -> None:
    """An id handed to wait --store is stored when first tracked, with no
    model: tasks list shows its record's model and createTime (it showed "-"
    and the time tracking began)."""
    db = str(tmp_path / "veo.db")
    kie.add_task(TaskScript("veo_a", complete_after=0.05, params={"model": "veo3_fast"}))
    await asyncio.sleep(1.2)  # tracked a second after its creation, at least
    done = await cli("wait", *against(kie, "--store", db, *FAST, "veo_a"))
    assert done.code == 0, done.stderr
    created = dt.datetime.fromisoformat(done.by_id()["veo_a"]["record"]["create_time"])
    listing = await cli("tasks", "list", "--store", db)
    assert listing.code == 0, listing.stderr
    row = next(line for line in listing.stdout.splitlines() if line.startswith("veo_a"))
    assert row.split()[3] == "veo3_fast", row
    assert row.endswith(created.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")), row
    # --json says the same (it gave the row's bare fields: no model, and the
    # time tracking began).
    as_json = await cli("tasks", "list", "--store", db, "--json")
    [line] = as_json.lines()
    assert line["model"] == "veo3_fast"
    assert line["created_at"] == pytest.approx(created.timestamp(), abs=1.0)


async def test_tasks_resume_finishes_what_an_interrupted_wait_left(
    kie: FakeKie, tmp_path: Path
) -> None:
    """Ids tracked but unfinished are resumed by "tasks resume"; list and show read the store."""
    db = tmp_path / "veo.db"
    async with SQLiteStore(db) as store:
        await store.track(["veo_slow"])
    # Done on the service already: only the store says "unfinished". (Still
    # rendering, the resumed wait would poll again on the CLI's default
    # schedule, seconds later; "wait" with FAST pins waiting.)
    kie.add_task("veo_slow")
    listed = await cli("tasks", "list", "--store", str(db), "--json")
    assert listed.code == 0, listed.stderr
    [row] = listed.lines()
    assert (row["task_id"], row["state"]) == ("veo_slow", "unfinished")
    resumed = await cli(
        "tasks", "resume", "--store", str(db), "--base-url", kie.base_url, "--api-key", KEY
    )
    assert resumed.code == 0, resumed.stderr
    assert [line["task_id"] for line in resumed.lines()] == ["veo_slow"]
    # Its lines name the command typed (they said "wait").
    assert "veo-async: tasks resume: 1 task in" in resumed.stderr, resumed.stderr
    assert "1 request," in resumed.stderr  # (one, not "1 requests")
    assert "veo-async: wait:" not in resumed.stderr
    shown = await cli("tasks", "show", "veo_slow", "--store", str(db))
    assert shown.code == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["state"] == "acked"
    # The record as "wait" wrote it (status by name), not the store's own form.
    assert data["record"]["status"] == "SUCCESS"
    assert data["record"] == resumed.lines()[0]["record"]
    table = await cli("tasks", "list", "--store", str(db))
    assert "veo_slow" in table.stdout
    assert "acked" in table.stdout


async def test_a_rerun_with_a_store_adds_to_its_output_file(kie: FakeKie, tmp_path: Path) -> None:
    """wait --store -o on a rerun (after a crash, or a second batch) adds its
    lines to the file: the lines of results acknowledged by the first run,
    never delivered again, stay (the rerun emptied the file)."""
    db, out = tmp_path / "veo.db", tmp_path / "results.jsonl"
    kie.add_tasks(["veo_1", "veo_2"])
    first = await cli("wait", *against(kie, "--store", str(db), "-o", str(out), "veo_1"))
    assert first.code == 0, first.stderr
    second = await cli("wait", *against(kie, "--store", str(db), "-o", str(out), "veo_2"))
    assert second.code == 0, second.stderr
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [line["task_id"] for line in lines] == ["veo_1", "veo_2"]


async def test_a_store_in_use_is_a_one_line_error(kie: FakeKie, tmp_path: Path) -> None:
    """A store held by another SQLiteStore gives exit 1 and a one-line message, no traceback."""
    db = tmp_path / "veo.db"
    # Another run's output: a run refused for the store must leave it alone.
    out = tmp_path / "out.jsonl"
    out.write_text('{"task_id": "veo_done", "outcome": "succeeded"}\n', encoding="utf-8")
    async with SQLiteStore(db):
        listed = await cli("tasks", "list", "--store", str(db))
        waited = await cli("wait", *against(kie, "--store", str(db), "-o", str(out), "veo_a"))
    for run in (listed, waited):
        assert run.code == 1
        assert "in use by another process" in run.stderr
    assert out.read_text(encoding="utf-8") == '{"task_id": "veo_done", "outcome": "succeeded"}\n'
    # An output file that did not exist is not made by a refused run either.
    fresh = tmp_path / "fresh.jsonl"
    async with SQLiteStore(db):
        refused = await cli("wait", *against(kie, "--store", str(db), "-o", str(fresh), "veo_a"))
    assert refused.code == 1
    assert not fresh.exists()
    missing = await cli("tasks", "show", "veo_none", "--store", str(db))
    assert missing.code == 1
    assert "not in" in missing.stderr


async def test_reading_a_store_never_makes_one_and_a_bad_file_is_a_usage_error(
    tmp_path: Path,
) -> None:
    """tasks list/show/resume, and wait with no ids, on a misspelt path: exit
    2 naming it, and no file is left behind (resume and wait made an empty
    store and ended with success); a
    file that is no store: exit 2 saying so; a bad id: exit 2."""
    missing = tmp_path / "typo.db"
    for argv in (("tasks", "list"), ("tasks", "show", "veo_a"), ("tasks", "resume"), ("wait",)):
        run = await cli(*argv, "--store", str(missing))
        assert run.code == 2
        assert "no such store file" in run.stderr
        assert "Traceback" not in run.stderr
    assert not missing.exists()
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    run = await cli("tasks", "list", "--store", str(garbage))
    assert run.code == 2
    assert "not a readable SQLite database" in run.stderr
    run = await cli("tasks", "show", "bad id", "--store", str(garbage))
    assert run.code == 2
    assert "contains whitespace" in run.stderr


async def test_a_usage_error_of_tasks_resume_points_to_its_own_help(tmp_path: Path) -> None:
    """tasks resume without an API key: the hint names "tasks resume --help"
    (it named "tasks resume wait --help", no command: resume runs wait's code)."""
    db = tmp_path / "tasks.db"
    async with SQLiteStore(db) as store:
        await store.track(["veo_a"])
    for argv, command in (
        (("tasks", "resume"), "veo-async tasks resume --help"),
        (("wait",), "veo-async wait --help"),
    ):
        run = await cli(*argv, "--store", str(db))
        assert run.code == 2
        assert "no API key" in run.stderr
        assert run.stderr.rstrip().endswith(f"(see '{command}')"), run.stderr


async def test_generate_with_a_store_never_sends_a_request_twice(
    tmp_path: Path,
) -> None:
    """generate --store, run again on the same requests after an interrupted run,
    sends nothing already sent: created ones are reported with their ids, the
    uncertain one stays uncertain (exit 1), and --wait writes every result once."""
    db = str(tmp_path / "veo.db")
    requests = tmp_path / "requests.jsonl"
    requests.write_text(
        "".join(json.dumps({"prompt": f"a cat, take {n}"}) + "\n" for n in range(3)),
        encoding="utf-8",
    )
    async with FakeKie(api_key=KEY, time_scale=0.001, seed=5) as kie:
        kie.inject_create(Fault.created_then_drop(), 1)
        first = await cli(
            "generate", *against(kie, "--from", str(requests), "--store", db)
        )
        assert first.code == 1, first.stderr  # one create is uncertain
        outcomes = sorted(line["outcome"] for line in first.lines())
        assert outcomes == ["created", "created", "uncertain"]
        assert kie.created == 3  # the dropped one was created all the same
        again = await cli(
            "generate", *against(kie, "--from", str(requests), "--store", db, "--wait", *FAST)
        )
        assert kie.created == 3  # nothing was sent again
        assert again.code == 1, again.stderr  # still uncertain
        lines = again.lines()
        assert sorted(line["outcome"] for line in lines) == [
            "already created", "already created", "succeeded", "succeeded", "uncertain",
        ]
        # A result's line carries the request that created it, as asked
        # (generate --help), though the task was resumed from the store.
        prompts = {f"a cat, take {n}" for n in range(3)}
        succeeded = [line for line in lines if line["outcome"] == "succeeded"]
        assert all(line["request"]["prompt"] in prompts for line in succeeded)
        assert all("callBackUrl" not in line["request"] for line in succeeded)
        # The same shape as the first run's uncertain line (generate --help).
        [uncertain] = [line for line in lines if line["outcome"] == "uncertain"]
        [first_uncertain] = [line for line in first.lines() if line["outcome"] == "uncertain"]
        assert set(uncertain) == set(first_uncertain) == {"outcome", "error", "message", "request"}
        assert uncertain["error"] == "SubmitUncertainError"
        third = await cli(
            "generate", *against(kie, "--from", str(requests), "--store", db, "--wait", *FAST)
        )
        assert kie.created == 3
        assert sorted(line["outcome"] for line in third.lines()) == [
            "already created", "already created", "uncertain",
        ]  # results were acknowledged: not written again


async def test_a_create_whose_task_was_gone_is_not_sent_again(tmp_path: Path) -> None:
    """generate --store --wait on a task the service answers "record is null"
    for: it ends as an error, acknowledged (forgotten: it will never finish);
    run again, the request was still sent before and is not sent (nor charged)
    again (it went out on every rerun)."""
    db = str(tmp_path / "veo.db")
    async with FakeKie(api_key=KEY, time_scale=0.001) as kie:
        kie.inject(Fault.record_null(), count=10_000)  # every poll
        args = against(kie, "only once please", "--store", db, "--wait", *FAST)
        first = await cli("generate", *args)
        assert first.code == 1, first.stderr
        [line] = first.lines()
        assert line["error"] == "RecordNotFoundError"
        assert kie.created == 1
        again = await cli("generate", *args)
        assert kie.created == 1  # not sent again
        [line] = again.lines()
        assert line["outcome"] == "already created", line


@pytest.mark.parametrize(
    "callback", ["https://app.example/cb?", "https://app.example/cb?a=1&", "https://app.example/cb"]
)
async def test_a_rerun_with_a_callback_url_ending_its_query_sends_nothing_again(
    tmp_path: Path, callback: str
) -> None:
    """generate --store run twice with the same --callback-url: the second run
    finds the request sent, whatever the URL's query ends with (one ending in
    "?" or "&" came back from the store as another URL, and was sent and
    charged again)."""
    db = str(tmp_path / "veo.db")
    async with FakeKie(api_key=KEY, time_scale=0.001) as kie:
        args = against(kie, "a cat", "--store", db, "--callback-url", callback)
        first = await cli("generate", *args)
        assert first.code == 0, first.stderr
        again = await cli("generate", *args)
        assert again.code == 0, again.stderr
        [line] = again.lines()
        assert line["outcome"] == "already created", line
        assert kie.created == 1


async def test_a_wrong_key_with_a_store_is_one_error_line(kie: FakeKie, tmp_path: Path) -> None:
    """wait --store with a wrong key: exit 1 and one line naming the 401, as
    without a store; it was reported as an "unexpected" error (a bug's wording)."""
    db = tmp_path / "veo.db"
    async with SQLiteStore(db) as store:
        await store.track(["veo_a"])
    kie.add_task("veo_a", complete_after=60)
    run = await cli(
        "wait", "--base-url", kie.base_url, "--api-key", "sk-wrong-key-123456",
        "--store", str(db), *FAST,
    )  # fmt: skip
    assert run.code == 1
    assert "AuthenticationError" in run.stderr
    assert "unexpected" not in run.stderr
    assert "sk-wrong-key-123456" not in run.stderr + run.stdout


async def test_a_redis_store_url_serves_wait_and_tasks(
    kie: FakeKie, redis_server: RedisServer
) -> None:
    """--store takes a redis:// URL (#namespace): wait records, writes and
    acknowledges each result once; tasks list reads the namespace; a held
    namespace is a one-line error; the URL's password is never printed."""
    namespace = f"test:{uuid.uuid4().hex}"
    url = redis_server.url.replace("redis://", "redis://:@") + f"#{namespace}"
    kie.add_task("veo_a", complete_after=0.05)
    first = await cli("wait", *against(kie, "--store", url, *FAST, "veo_a"))
    assert first.code == 0, first.stderr
    assert set(first.by_id()) == {"veo_a"}
    again = await cli("wait", *against(kie, "--store", url, *FAST))
    assert again.code == 0, again.stderr
    assert again.lines() == []
    listed = await cli("tasks", "list", "--store", url, "--json")
    assert listed.code == 0, listed.stderr
    assert [(row["task_id"], row["state"]) for row in listed.lines()] == [("veo_a", "acked")]
    # An id not there: the URL as given is not echoed (its user info may
    # hold a password: "task ... is not in redis://:pw@host" printed it).
    unknown = await cli("tasks", "show", "veo_none", "--store", url)
    assert unknown.code == 1
    assert "veo_none is not in that Redis namespace" in unknown.stderr
    assert "redis://" not in unknown.stderr
    # Reading a namespace with no store makes none (as a missing file is not made).
    missing = await cli("tasks", "list", "--store", url + "-none")
    assert missing.code == 1
    assert "no task store" in missing.stderr
    async with RedisStore(redis_server.url, namespace=namespace):
        held = await cli("tasks", "list", "--store", url)
    assert held.code == 1
    assert "held by another process" in held.stderr
    secret = "s3cret-pw"
    away = await cli("tasks", "list", "--store", f"redis://:{secret}@127.0.0.1:1/0")
    assert away.code == 1
    assert "127.0.0.1:1" in away.stderr
    assert secret not in away.stdout + away.stderr
    upper = await cli("tasks", "list", "--store", f"REDIS://:{secret}@127.0.0.1:1/0")
    assert upper.code == 1  # a Redis URL in any case, not a file name
    assert secret not in upper.stdout + upper.stderr
    hashed = await cli("tasks", "list", "--store", "redis://:s3cret#pw-part@127.0.0.1:1/0")
    assert hashed.code == 2
    assert "%23" in hashed.stderr
    assert "pw-part" not in hashed.stdout + hashed.stderr
