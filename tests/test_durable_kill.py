"""The kill test: a process creating and tracking 1,000 tasks is SIGKILLed at
random points, several times, and restarted on the same store.

The simulator runs here, in the parent, on loopback (its state must outlive
the child); ``_durable_child.py`` is the process killed. After the last run:

- every task the simulator created is acknowledged in the store, and no task
  was handed over (``DELIVER``) after its acknowledgement was committed
  (``ACKED``): none lost, no duplicate after ack;
- nothing was resubmitted: every prompt (unique per intent) reached the
  simulator at most once, and the store holds exactly ``TOTAL`` intents;
- the intents left uncertain are exactly those whose POST never reached the
  simulator, and the last run's ``resume()`` reported them (without raising).

Between runs the parent plays the callback: an uncertain intent whose task
the simulator did create is reconciled with its task id, as a callback
carrying ``veo_ref`` would; the next run then resumes and delivers it.
``VEO_KILL_TASKS`` sets the number of tasks (default 1,000), ``VEO_KILL_SEED``
the kill points.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import uuid
from collections import defaultdict
from pathlib import Path

import pytest

from veo_async import VeoSession
from veo_async.testing import FakeKie

from ._durable_child import open_store
from ._redis_server import RedisServer, redis_server
from .conftest import API_KEY, child_bytecode_env

pytestmark = [pytest.mark.real_time, pytest.mark.loopback, pytest.mark.timeout(150)]
__all__ = ["redis_server"]  # the fixture, imported for the Redis run

CHILD = Path(__file__).resolve().parent / "_durable_child.py"
ROOT = CHILD.parent.parent
TOTAL = int(os.environ.get("VEO_KILL_TASKS", "1000"))
SEED = int(os.environ.get("VEO_KILL_SEED", "20260106"))
KILLS = 5
#: A run is killed after printing this many lines (a random number in this
#: range): while it creates (``CREATED``), polls, delivers or acknowledges.
KILL_AFTER_LINES = (2, TOTAL // 2)
#: The simulator's times x0.008: a veo3_fast task takes ~1-2 s (the child's
#: schedule is scaled alike: a few polls per task, as in life).
TIME_SCALE = 0.008


async def run_child(kie: FakeKie, db: str, kill_at: int | None) -> tuple[list[str], bool]:
    """One run of the child, SIGKILLed once it printed *kill_at* lines (None:
    never): its stdout lines, and whether it was killed."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(CHILD),
        kie.base_url,
        str(db),
        str(TOTAL),
        cwd=ROOT,
        # This checkout's veo_async, not whichever one the interpreter has installed.
        env=child_bytecode_env({
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        }),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        limit=2**24,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    errors = asyncio.ensure_future(proc.stderr.read())
    lines: list[str] = []
    killed = False
    while line := await proc.stdout.readline():
        lines.append(line.decode().rstrip("\n"))
        if len(lines) == kill_at:
            proc.send_signal(signal.SIGKILL)
            killed = True
    await proc.wait()
    err = await errors
    if not killed:
        assert proc.returncode == 0, err.decode()[-3000:]
    return lines, killed


async def prompts_of(kie: FakeKie, task_ids: list[str], known: dict[str, str]) -> None:
    """Fill *known* (task id -> prompt) from the simulator's records, in process."""
    missing = [task_id for task_id in task_ids if task_id not in known]
    if not missing:
        return
    async with VeoSession(API_KEY, transport=kie.transport()) as veo:
        for task_id in missing:
            known[task_id] = (await veo.record_info(task_id)).params["prompt"]


async def reconcile(kie: FakeKie, db: str, prompts: dict[str, str]) -> int:
    """Play the callback: give uncertain intents whose task exists their task id."""
    await prompts_of(kie, kie.created_ids, prompts)
    by_prompt = {prompt: task_id for task_id, prompt in prompts.items()}
    reconciled = 0
    async with open_store(db) as store:
        for intent in await store.uncertain():
            task_id = by_prompt.get(intent.request["prompt"])
            if task_id is not None:
                assert await store.reconcile(intent.ref, task_id)
                reconciled += 1
    return reconciled


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
async def test_killed_runs_lose_nothing_resubmit_nothing_and_redeliver_nothing_acked(
    tmp_path: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    """SIGKILL at random points, restart on the same store (a SQLite file, a
    Redis namespace): every created task is acked, none is handed over after
    its ack, none resubmitted, uncertain reported."""
    rng = random.Random(SEED)
    if kind == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        db = f"{server.url}#test:kill:{uuid.uuid4().hex}"
    else:
        db = str(tmp_path / "kill.db")
    lines: list[str] = []
    prompts: dict[str, str] = {}
    kills = reconciled = 0
    async with FakeKie(
        api_key=API_KEY,
        time_scale=TIME_SCALE,
        seed=SEED,
        create_limit=None,
        credits=1e9,
        record_requests=False,
    ) as kie:
        for _ in range(KILLS):
            out, killed = await run_child(kie, db, rng.randint(*KILL_AFTER_LINES))
            lines += out
            kills += killed
            reconciled += await reconcile(kie, db, prompts)
        last, killed = await run_child(kie, db, None)
        lines += last
        assert not killed
        assert last[-1] == "DONE"
        # A POST the simulator read only after the kill creates its task late,
        # like a callback that comes late: reconcile, and a restart delivers it.
        for _ in range(3):
            late = await reconcile(kie, db, prompts)
            if not late:
                break
            reconciled += late
            last, _ = await run_child(kie, db, None)
            lines += last
            assert last[-1] == "DONE"
        created = kie.created_ids
        await prompts_of(kie, created, prompts)

    assert kills == KILLS, "every run but the last ones must really be killed"
    async with open_store(db) as store:
        tasks = await store.list_tasks()
        acked = {task.task_id for task in tasks if task.acked}
        uncertain = await store.uncertain()
        intents = {}
        for task in tasks:
            assert task.ref is not None  # every task here was created under an intent
            intent = await store.get_intent(task.ref)
            assert intent is not None
            intents[task.task_id] = intent

    # None lost: every created task is in the store, finished and acknowledged.
    assert {task.task_id for task in tasks} == set(created)
    assert acked == set(created)
    # Nothing resubmitted: one task per prompt, one prompt per intent, TOTAL intents.
    assert len(set(created)) == len(created)
    assert len(set(prompts.values())) == len(created)
    for task_id, intent in intents.items():
        assert intent.task_id == task_id
        assert intent.request["prompt"] == prompts[task_id]
    assert len(intents) + len(uncertain) == TOTAL
    # Uncertain: exactly the intents that never reached the simulator, reported.
    assert not {intent.request["prompt"] for intent in uncertain} & set(prompts.values())
    reported = {line.split()[1] for line in last if line.startswith("UNCERTAIN ")}
    assert reported == {intent.ref for intent in uncertain}
    # No duplicate after ack; every task delivered.
    events: dict[str, list[str]] = defaultdict(list)
    for line in lines:
        kind, _, task_id = line.partition(" ")
        if kind in ("DELIVER", "ACKED"):
            events[task_id].append(kind)
    for task_id in created:
        seen = events[task_id]
        assert "DELIVER" in seen, f"{task_id} was never delivered"
        if "ACKED" in seen:
            assert "DELIVER" not in seen[seen.index("ACKED") :], f"{task_id}: {seen}"
    print(
        f"{TOTAL} intents, {len(created)} created, {kills} kills, {reconciled} reconciled, "
        f"{len(uncertain)} uncertain, {sum(len(e) for e in events.values())} delivery events"
    )
