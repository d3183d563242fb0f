"""Client CPU of durable tracking: SQLiteStore's cost per tracked id, at 10,000 ids.

What it measures
----------------
The CPU time (``time.process_time``: the event loop *and* aiosqlite's thread)
of recording the life of N ids (default 10,000) in a fresh
:class:`~veo_async.store.SQLiteStore`, phase by phase, as a session would:

- ``track bulk``: one ``track(ids)`` call (``wait_many(ids)``);
- ``track each``: one ``track([id])`` per id, all concurrent (``veo.task(id)``
  in many coroutines; group commit batches them);
- ``seen``: ``record_seen`` per id (write-behind), then ``flush()``;
- ``terminal``: ``record_to_json(record)`` + ``record_terminal`` per id
  (write-behind), then ``flush()``;
- ``delivered``: ``mark_delivered`` per id, then ``flush()``;
- ``ack seq``: ``await ack(id)`` one after another (``async for task in
  completed(): await task.ack()``: one transaction per id, the worst case);
- ``ack conc``: all acks concurrent (group commit).

A lifetime is ``track bulk + seen + terminal + delivered + ack seq``.

The baseline, measured in the same process: ``decode_record_info`` on a
realistic finished record-info answer (the least CPU one poll costs, without
its HTTP request); the ratio says how many such decodes one id's recording
costs. The issue's criterion is relative to the whole tracking of an id
without a store (every poll, with HTTP): the estimate line multiplies a
client CPU per poll and a number of polls per id, by default the figures of
``bench_poll_overhead.py`` (175 µs, ``record_info c32``) and
``bench_scale.py`` (9 requests per id) in RESULTS.md; pass yours with
``--poll-cpu-us`` / ``--polls-per-id``. The integrated measurement belongs to
the session's benchmark, once the store is wired in.

Rerun
-----
::

    .venv/bin/python benchmarks/bench_store.py           # ~1 min
    .venv/bin/python benchmarks/bench_store.py --quick   # 2,000 ids, 3 rounds

Writes ``benchmarks/results/store.json`` and the ``store`` section of
``benchmarks/RESULTS.md`` (``--quick``: ``store_quick.json`` only).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import tempfile
import time
import timeit
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from _common import machine_note, median, note_line, publish, table

from veo_async._protocol import RawResponse, decode_record_info
from veo_async.models import RecordInfo
from veo_async.store import SQLiteStore, record_to_json
from veo_async.testing import TaskScript
from veo_async.testing._script import render_record

NAME = "store"
PHASES = ("track bulk", "track each", "seen", "terminal", "delivered", "ack seq", "ack conc")
LIFETIME = ("track bulk", "seen", "terminal", "delivered", "ack seq")


def answer_body(task_id: str) -> bytes:
    """A finished record-info answer as the simulator renders it (~700 bytes)."""
    record = render_record(TaskScript(task_id), created_at=time.time() - 180, done=True)
    return json.dumps({"code": 200, "msg": "success", "data": record}).encode()


def decode_us(body: bytes, task_id: str, loops: int = 5000) -> float:
    """µs per ``decode_record_info`` of *body*: median of 5 timeit runs."""
    raw = RawResponse(200, {"Content-Type": "application/json"}, body)
    runs = [
        timeit.timeit(lambda: decode_record_info(raw, task_id), number=loops) / loops * 1e6
        for _ in range(5)
    ]
    return median(runs)


async def cpu_of(step: Callable[[], Awaitable[None]]) -> float:
    """Process CPU seconds spent while *step* runs."""
    gc.collect()
    start = time.process_time()
    await step()
    return time.process_time() - start


async def one_round(directory: Path, ids: list[str], records: list[RecordInfo]) -> dict[str, float]:
    """µs of client CPU per id for each phase, on fresh store files."""
    at = time.time()
    out: dict[str, float] = {}
    n = len(ids)

    async with SQLiteStore(directory / "each.db") as store:

        async def track_each() -> None:
            await asyncio.gather(*(store.track([task_id]) for task_id in ids))

        out["track each"] = await cpu_of(track_each) / n * 1e6

    async with SQLiteStore(directory / "life.db") as store:

        async def track_bulk() -> None:
            await store.track(ids, model="veo3_fast")

        async def seen() -> None:
            for task_id in ids:
                await store.record_seen(task_id, at)
            await store.flush()

        async def terminal() -> None:
            for task_id, record in zip(ids, records, strict=True):
                await store.record_terminal(task_id, record_to_json(record), at)
            await store.flush()

        async def delivered() -> None:
            for task_id in ids:
                await store.mark_delivered(task_id, at=at)
            await store.flush()

        async def ack_seq() -> None:
            for task_id in ids[: n // 2]:
                await store.ack(task_id, at=at)

        async def ack_conc() -> None:
            await asyncio.gather(*(store.ack(task_id, at=at) for task_id in ids[n // 2 :]))

        out["track bulk"] = await cpu_of(track_bulk) / n * 1e6
        out["seen"] = await cpu_of(seen) / n * 1e6
        out["terminal"] = await cpu_of(terminal) / n * 1e6
        out["delivered"] = await cpu_of(delivered) / n * 1e6
        out["ack seq"] = await cpu_of(ack_seq) / (n // 2) * 1e6
        out["ack conc"] = await cpu_of(ack_conc) / (n - n // 2) * 1e6
        assert await store.undelivered() == []  # every ack landed
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    ids = [f"veo_task_{n:08d}_bench0000000000" for n in range(args.ids)]
    bodies = {task_id: answer_body(task_id) for task_id in ids[:1]}
    template = bodies[ids[0]]
    records = [
        decode_record_info(
            RawResponse(200, {}, template.replace(ids[0].encode(), task_id.encode())), task_id
        )
        for task_id in ids
    ]
    rounds: list[dict[str, float]] = []
    decodes: list[float] = []
    for index in range(args.reps):
        # Interleaved with the store rounds, so both see the same machine load.
        decodes.append(decode_us(template, ids[0], loops=2000))
        with tempfile.TemporaryDirectory(prefix="bench_store_") as tmp:
            rounds.append(await one_round(Path(tmp), ids, records))
        print(
            f"round {index + 1}/{args.reps}: "
            + ", ".join(f"{k} {v:.1f}" for k, v in rounds[-1].items()),
            flush=True,
        )
    phases = {name: median([r[name] for r in rounds]) for name in PHASES}
    lifetime = median([sum(r[name] for name in LIFETIME) for r in rounds])
    decode = median(decodes)
    per_id_tracking = args.poll_cpu_us * args.polls_per_id
    return {
        "note": machine_note(),
        "ids": args.ids,
        "reps": args.reps,
        "body_bytes": len(template),
        "phases_us_per_id": phases,
        "lifetime_us_per_id": lifetime,
        "decode_us": decode,
        "lifetime_in_decodes": lifetime / decode,
        "poll_cpu_us": args.poll_cpu_us,
        "polls_per_id": args.polls_per_id,
        "estimated_overhead": lifetime / per_id_tracking,
        "rounds": rounds,
    }


def report(result: dict[str, Any]) -> str:
    decode = result["decode_us"]
    rows: list[list[object]] = [
        [name, us, f"{us / decode:.2f}x"] for name, us in result["phases_us_per_id"].items()
    ]
    rows.append(
        [f"lifetime ({' + '.join(LIFETIME)})", result["lifetime_us_per_id"],
         f"{result['lifetime_in_decodes']:.2f}x"]
    )  # fmt: skip
    rows.append(["baseline: decode_record_info, one poll", decode, "1.00x"])
    verdict = "met" if result["estimated_overhead"] <= 0.10 else "NOT met"
    return "\n".join(
        [
            "## Store (`bench_store.py`)",
            "",
            note_line(result["note"]),
            "",
            f"Client CPU (event loop + SQLite thread) per id, {result['ids']:,} ids, fresh "
            f"SQLiteStore files (WAL, synchronous=NORMAL), medians of {result['reps']} rounds; "
            f"`ack seq`/`ack conc` over half the ids each. Ratio = µs / µs of one "
            f"`decode_record_info` of a {result['body_bytes']}-byte finished answer "
            "(measured in the same rounds).",
            "",
            table(["phase", "CPU µs/id", "in decodes"], rows),
            "",
            f"Estimate against tracking an id without a store: {result['polls_per_id']:g} "
            f"polls x {result['poll_cpu_us']:g} µs = "
            f"{result['polls_per_id'] * result['poll_cpu_us']:,.0f} µs per id; the store's "
            f"lifetime adds **{result['estimated_overhead']:.1%}** (target ≤ 10%: {verdict}). "
            "Borrowed figures (RESULTS.md: `record_info c32`, `bench_scale` requests per id); "
            "the integrated measurement comes with the session wiring.",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=10_000, help="ids per round")
    parser.add_argument("--reps", type=int, default=5, help="rounds (median)")
    parser.add_argument("--poll-cpu-us", type=float, default=175.0, help="client CPU per poll")
    parser.add_argument("--polls-per-id", type=float, default=9.0, help="polls per tracked id")
    parser.add_argument("--quick", action="store_true", help="2,000 ids, 3 rounds")
    args = parser.parse_args()
    if args.quick:
        args.ids, args.reps = 2000, 3
    result = asyncio.run(run(args))
    text = report(result)
    print()
    print(text)
    publish(NAME, result, text, quick=args.quick)


if __name__ == "__main__":
    main()
