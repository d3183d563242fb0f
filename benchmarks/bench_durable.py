"""Client CPU of durable tracking in the session: wait_many with and without a store.

What it measures
----------------
The client CPU time (``time.process_time``: the event loop *and* aiosqlite's
thread) of ``await veo.wait_many(ids)`` for N ids (default 10,000), per id,
for two sessions alike but for ``store=SQLiteStore(file)``; with the store,
the time includes ``track(ids)`` (one durable write) and the final
``veo.flush()`` (every first-seen and terminal record committed). The
simulator runs in its own process (``benchmarks/kie_server.py``, real HTTP on
loopback), so its CPU is not the client's.

Two workloads (``--workloads``):

- ``harsh``: tasks finish 0.5-2.5 s after they are added; polls follow a
  compressed fixed schedule (first at 0.2 s, gaps 0.25 s growing to 0.5 s):
  ~1.3 polls per id, so the store's fixed cost per id weighs the most;
- ``ordinary``: as ``bench_scale.py``: tasks finish 5-30 s after they are
  added; first poll at once, gaps 0.5 s growing x1.5 to 3 s: ~8-9 polls per id.

Rounds alternate in ABBA order (no store, store, store, no store, ...) so that
machine noise and drift hit both; the figure is the ratio of the medians, and
the spread is that of the ratio of each store round to the no-store round
paired with it. The issue's target: recording adds at most 10% client CPU per
tracked id at 10,000 ids (ratio <= 1.10).

Rerun
-----
::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_durable.py           # ~10 min
    PYTHONPATH=. .venv/bin/python benchmarks/bench_durable.py --quick   # 2,000 ids, 2 rounds

(``PYTHONPATH=.`` from a worktree whose venv has another checkout installed.)
Writes ``benchmarks/results/durable.json`` and the ``durable`` section of
``benchmarks/RESULTS.md`` (``--quick``: ``durable_quick.json`` only).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import API_KEY, KieProcess, machine_note, median, note_line, publish, table

from veo_async import PollPolicy, RecordNotFoundError, SQLiteStore, VeoSession

CONCURRENCY = 64
TARGET = 1.10

#: name -> (policy, earliest completion s, latest completion s, what it stands for)
WORKLOADS: dict[str, tuple[PollPolicy, float, float, str]] = {
    "harsh": (
        PollPolicy(
            first_poll=0.2, interval=0.25, factor=1.5, max_interval=0.5, jitter=0.1, timeout=120.0
        ),
        0.5,
        2.5,
        "tasks finish 0.5-2.5 s after being added; first poll at 0.2 s, gaps 0.25-0.5 s",
    ),
    "ordinary": (
        PollPolicy(
            first_poll=0.0, interval=0.5, factor=1.5, max_interval=3.0, jitter=0.1, timeout=300.0
        ),
        5.0,
        30.0,
        "tasks finish 5-30 s after being added; first poll at once, gaps 0.5 s x1.5 up to 3 s",
    ),
}


async def one_round(
    kie: KieProcess, workload: str, n: int, rep: int, store_dir: Path | None
) -> dict[str, Any]:
    """One wait_many of *n* fresh ids; its client CPU and requests."""
    policy, low, high, _ = WORKLOADS[workload]
    store = SQLiteStore(store_dir / f"{workload}{rep}.db") if store_dir is not None else None
    async with VeoSession(
        API_KEY, base_url=kie.base_url, concurrency=CONCURRENCY, policy=policy, store=store
    ) as veo:
        with contextlib.suppress(RecordNotFoundError):  # the HTTP session opens before timing
            await veo.record_info("veo_task_warmup")
        prefix = f"{workload[0]}{rep}{'s' if store else 'n'}"
        ids, _ = await kie.add(prefix, n, low=low, high=high, seed=rep)
        gc.collect()
        usage0 = resource.getrusage(resource.RUSAGE_SELF)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        outcomes = await veo.wait_many(ids, return_exceptions=True)
        await veo.flush()
        cpu = time.process_time() - cpu0
        wall = time.perf_counter() - wall0
        usage = resource.getrusage(resource.RUSAGE_SELF)
        failures = sum(1 for outcome in outcomes if isinstance(outcome, BaseException))
        requests = veo.stats.requests
    if store is not None:
        async with SQLiteStore(store.path) as check:
            stored = len(await check.list_tasks("undelivered"))
        assert stored == n, f"only {stored} of {n} terminal records stored"
    return {
        "workload": workload,
        "rep": rep,
        "store": store is not None,
        "cpu_s": cpu,
        "wall_s": wall,
        "cpu_us_per_id": cpu / n * 1e6,
        "user_us_per_id": (usage.ru_utime - usage0.ru_utime) / n * 1e6,
        "system_us_per_id": (usage.ru_stime - usage0.ru_stime) / n * 1e6,
        "context_switches_per_id": (
            usage.ru_nvcsw - usage0.ru_nvcsw + usage.ru_nivcsw - usage0.ru_nivcsw
        )
        / n,
        "requests_per_id": requests / n,
        "failures": failures,
    }


def summarize(workload: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians, their ratio, and the spread of the per-pair ratios of one workload."""
    mine = [r for r in results if r["workload"] == workload]
    plain = {r["rep"]: r for r in mine if not r["store"]}
    durable = {r["rep"]: r for r in mine if r["store"]}
    base = median([r["cpu_us_per_id"] for r in plain.values()])
    with_store = median([r["cpu_us_per_id"] for r in durable.values()])
    pairs = sorted(
        durable[rep]["cpu_us_per_id"] / plain[rep]["cpu_us_per_id"]
        for rep in durable
        if rep in plain
    )
    return {
        "rounds": len(pairs),
        "base_us": base,
        "store_us": with_store,
        "added_us": with_store - base,
        "ratio": with_store / base,
        "pair_ratios": pairs,
        "requests_base": median([r["requests_per_id"] for r in plain.values()]),
        "requests_store": median([r["requests_per_id"] for r in durable.values()]),
    }


async def main(args: argparse.Namespace) -> None:
    n = 2000 if args.quick else args.ids
    rounds = 2 if args.quick else args.rounds
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        async with KieProcess() as kie:
            for workload in args.workloads:
                for rep in range(rounds):
                    # ABBA: the variant that goes first swaps every round.
                    order = (False, True) if rep % 2 == 0 else (True, False)
                    for with_store in order:
                        directory = Path(tmp) if with_store else None
                        result = await one_round(kie, workload, n, rep, directory)
                        results.append(result)
                        print(
                            f"{workload} round {rep} "
                            f"{'store   ' if with_store else 'no store'}: "
                            f"{result['cpu_us_per_id']:.0f} us/id CPU "
                            f"(user {result['user_us_per_id']:.0f}, "
                            f"system {result['system_us_per_id']:.0f}, "
                            f"{result['context_switches_per_id']:.1f} switches/id), "
                            f"{result['requests_per_id']:.1f} req/id, "
                            f"wall {result['wall_s']:.1f} s",
                            flush=True,
                        )
    summaries = {workload: summarize(workload, results) for workload in args.workloads}
    rows = []
    for workload, s in summaries.items():
        spread = s["pair_ratios"]
        rows.append(
            [
                workload,
                f"{s['requests_base']:.1f}",
                f"{s['base_us']:.0f}",
                f"{s['store_us']:.0f}",
                f"{s['added_us']:+.0f}",
                f"**{s['ratio']:.3f}x**",
                f"{spread[0]:.3f}-{spread[-1]:.3f}x",
            ]
        )
    worst = max(s["ratio"] for s in summaries.values())
    verdict = "met" if worst <= TARGET else "NOT met"
    note = machine_note()
    lines = [
        "## Durable tracking (`bench_durable.py`)",
        "",
        note_line(note),
        "",
        f"Client CPU (event loop + SQLite thread) per tracked id of `wait_many` over "
        f"{n:,} ids, with and without `store=SQLiteStore(file)`; medians of {rounds} "
        "rounds per variant, in ABBA order (simulator in its own process, real HTTP; the "
        "store's time includes `track(ids)` and the final `flush()`). Spread: the lowest "
        "and highest ratio of a store round to the no-store round paired with it.",
        "",
    ]
    lines += [f"- `{name}`: {WORKLOADS[name][3]}." for name in summaries]
    lines += [
        "",
        table(
            [
                "workload",
                "requests/id",
                "no store µs/id",
                "SQLiteStore µs/id",
                "added µs/id",
                "ratio",
                "spread",
            ],
            rows,
        ),
        "",
        f"Goal ({TARGET:.2f}x at most, both workloads): {verdict} (worst {worst:.3f}x).",
    ]
    text = "\n".join(lines)
    print()
    print(text)
    publish(
        "durable",
        {"ids": n, "rounds": results, "summaries": summaries, "machine": note},
        text,
        quick=args.quick,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ids", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=7, help="rounds per variant (median)")
    parser.add_argument(
        "--workloads", nargs="+", choices=sorted(WORKLOADS), default=["harsh", "ordinary"]
    )
    parser.add_argument("--quick", action="store_true", help="2,000 ids, 2 rounds")
    asyncio.run(main(parser.parse_args()))
