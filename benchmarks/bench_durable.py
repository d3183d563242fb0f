"""Client CPU of durable tracking in the session: wait_many with and without a store.

What it measures
----------------
The client CPU time (``time.process_time``: the event loop *and* aiosqlite's
thread) of ``await veo.wait_many(ids)`` for N ids (default 10,000), per id,
for two sessions alike but for ``store=SQLiteStore(file)``; with the store,
the time includes ``track(ids)`` (one durable write) and the final
``veo.flush()`` (every first-seen and terminal record committed). The
simulator runs in its own process (``benchmarks/kie_server.py``, real HTTP on
loopback), so its CPU is not the client's. Tasks finish 0.5-2.5 s after they
are added; polls follow a compressed fixed schedule (first at 0.2 s, every
0.25-0.5 s), so each id costs a few polls, as in real use.

Rounds alternate (no store, store, no store, ...) so that machine noise hits
both; the figure is the ratio of the medians. The issue's target: recording
adds at most 10% client CPU per tracked id at 10,000 ids (ratio <= 1.10).

Rerun
-----
::

    .venv/bin/python benchmarks/bench_durable.py           # ~2 min
    .venv/bin/python benchmarks/bench_durable.py --quick   # 2,000 ids, 2 rounds

Writes ``benchmarks/results/durable.json`` and the ``durable`` section of
``benchmarks/RESULTS.md`` (``--quick``: ``durable_quick.json`` only).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import API_KEY, KieProcess, machine_note, median, note_line, publish, table

from veo_async import PollPolicy, RecordNotFoundError, SQLiteStore, VeoSession

POLICY = PollPolicy(
    first_poll=0.2, interval=0.25, factor=1.5, max_interval=0.5, jitter=0.1, timeout=120.0
)
CONCURRENCY = 64
TARGET = 1.10


async def one_round(
    kie: KieProcess, n: int, rep: int, store_dir: Path | None, low: float, high: float
) -> dict[str, Any]:
    """One wait_many of *n* fresh ids; its client CPU and requests."""
    store = SQLiteStore(store_dir / f"round{rep}.db") if store_dir is not None else None
    async with VeoSession(
        API_KEY, base_url=kie.base_url, concurrency=CONCURRENCY, policy=POLICY, store=store
    ) as veo:
        with contextlib.suppress(RecordNotFoundError):  # the HTTP session opens before timing
            await veo.record_info("veo_task_warmup")
        ids, _ = await kie.add(f"r{rep}{'s' if store else 'n'}", n, low=low, high=high, seed=rep)
        gc.collect()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        outcomes = await veo.wait_many(ids, return_exceptions=True)
        await veo.flush()
        cpu = time.process_time() - cpu0
        wall = time.perf_counter() - wall0
        failures = sum(1 for outcome in outcomes if isinstance(outcome, BaseException))
        requests = veo.stats.requests
    if store is not None:
        async with SQLiteStore(store.path) as check:
            stored = len(await check.list_tasks("undelivered"))
        assert stored == n, f"only {stored} of {n} terminal records stored"
    return {
        "store": store is not None,
        "cpu_s": cpu,
        "wall_s": wall,
        "cpu_us_per_id": cpu / n * 1e6,
        "requests_per_id": requests / n,
        "failures": failures,
    }


async def main(args: argparse.Namespace) -> None:
    n = 2000 if args.quick else args.ids
    rounds = 2 if args.quick else args.rounds
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        async with KieProcess() as kie:
            for rep in range(rounds):
                for with_store in (False, True):
                    result = await one_round(
                        kie, n, rep, Path(tmp) if with_store else None, args.low, args.high
                    )
                    results.append(result)
                    print(
                        f"round {rep} {'store   ' if with_store else 'no store'}: "
                        f"{result['cpu_us_per_id']:.0f} us/id CPU, "
                        f"{result['requests_per_id']:.1f} req/id, wall {result['wall_s']:.1f} s"
                    )
    plain = [r for r in results if not r["store"]]
    durable = [r for r in results if r["store"]]
    base = median([r["cpu_us_per_id"] for r in plain])
    with_store = median([r["cpu_us_per_id"] for r in durable])
    ratio = with_store / base
    rows = [
        [
            "wait_many, no store",
            f"{base:.0f}",
            f"{median([r['requests_per_id'] for r in plain]):.1f}",
            "1.00x",
        ],
        [
            "wait_many, SQLiteStore",
            f"{with_store:.0f}",
            f"{median([r['requests_per_id'] for r in durable]):.1f}",
            f"{ratio:.3f}x",
        ],
    ]
    note = machine_note()
    verdict = "met" if ratio <= TARGET else "NOT met"
    text = "\n".join(
        [
            f"Client CPU per tracked id, {n:,} ids, median of {rounds} alternating rounds "
            f"(simulator in its own process, real HTTP; tasks finish {args.low}-{args.high} s "
            "after being added; store time includes track(ids) and the final flush).",
            "",
            table(["session", "CPU us/id", "requests/id", "vs no store"], rows),
            "",
            f"Goal ({TARGET:.2f}x at most): {verdict} ({ratio:.3f}x).",
            "",
            note_line(note),
        ]
    )
    print()
    print(text)
    publish(
        "durable",
        {"ids": n, "rounds": results, "ratio": ratio, "machine": note},
        text,
        quick=args.quick,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ids", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--low", type=float, default=0.5)
    parser.add_argument("--high", type=float, default=2.5)
    parser.add_argument("--quick", action="store_true", help="2,000 ids, 2 rounds")
    asyncio.run(main(parser.parse_args()))
