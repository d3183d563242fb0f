"""Creating tasks: throughput against Kie's creation limit, and the requests a created task costs.

What it measures
----------------
Everything runs against the in-process simulator (``FakeKie.transport()``) on a
virtual clock (``VirtualClockLoop``): simulated minutes take milliseconds, and
the simulator enforces Kie's account limit of 20 creates per 10 s.

(a) **Creation throughput.** ``--creates`` (500) ``generate()`` calls started
at once, through one session. Per variant: the virtual time from the first
create to the last, creates per 10 s of virtual time (mean, and the most in
any sliding 10 s window, both against the limit of 20), the 429s the
simulator answered, creates that failed, and the client's real CPU time per
create (the in-process simulator's included), against a baseline measured
the same way in the same process: a ``record_info`` poll of a finished task
(CPU per create / CPU per poll). Variants: the session's creation
budget (the default, ``create_rate=20, create_period=10``), and no client
budget (``create_rate=1e9``: the simulator's 429s and the safe resends do
the pacing).

(b) **Requests per created task.** ``--tasks`` (300) generations, mixed
models as in ``veo-async demo`` (55 % veo3_fast, 30 % veo3_lite, 15 % veo3;
the simulator's life-size generation times: log-normal medians 150/120/300 s,
sigma 0.3; 8 % fail), created under the budget and each waited for. Per
poll policy: record-info requests per task (the creates are the same for
all), and detection lag (from the simulator turning the record terminal to
the session publishing it; virtual seconds): mean, p50, p95. Policies: the
default ``AdaptivePolicy`` (a created task's first poll comes from its
model's prior, then the learned, age-aware schedule), the old default
``PollPolicy()`` (first poll at once, 3 s x1.5 to 30 s) and
``PollPolicy(first_poll=60)``. Same simulator seed for all: the same tasks
with the same generation times.

Rerun
-----
::

    .venv/bin/python benchmarks/bench_create.py            # ~10 s; writes RESULTS.md
    .venv/bin/python benchmarks/bench_create.py --quick    # smaller, RESULTS.md untouched
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import time
from collections.abc import Callable, Coroutine
from typing import Any

from _common import machine_note, note_line, percentile, publish, table

from veo_async import (
    AdaptivePolicy,
    GenerateRequest,
    PollPolicy,
    VeoError,
    VeoSession,
)
from veo_async.events import Event, RecordPublished, RequestStarted
from veo_async.testing import FakeKie, VirtualClockLoop, demo_jobs

NAME = "create"
KEY = "bench-key"
LIMIT, PERIOD = 20, 10.0
GENERATE = "/api/v1/veo/generate"
RECORD_INFO = "/api/v1/veo/record-info"
SEED = 20260606


def on_virtual_clock(main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run ``main()`` on a fresh VirtualClockLoop."""
    loop = VirtualClockLoop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


def max_in_window(times: list[float], window: float) -> int:
    """The most of ``times`` (sorted) in any half-open window of ``window`` seconds."""
    best, low = 0, 0
    for high, at in enumerate(times):
        while times[low] <= at - window:
            low += 1
        best = max(best, high - low + 1)
    return best


# -- (a) creation throughput ------------------------------------------------------------


def throughput(creates: int, create_rate: float) -> dict[str, Any]:
    """``creates`` generate() calls at once; see the module docstring, (a)."""

    async def main() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        kie = FakeKie(
            api_key=KEY, record_requests=False, credits=1e12, seed=SEED,
            create_limit=LIMIT, create_period=PERIOD,
        )
        started: list[float] = []

        def on_event(event: Event) -> None:
            if isinstance(event, RequestStarted) and event.path == GENERATE:
                started.append(event.at)

        async with VeoSession(
            KEY, transport=kie.transport(), create_rate=create_rate, on_event=on_event
        ) as veo:
            requests = [GenerateRequest(f"take {n}") for n in range(creates)]

            async def one(request: GenerateRequest) -> bool:
                try:
                    await veo.generate(request)
                except VeoError:
                    return False
                return True

            t0 = loop.time()
            cpu0 = time.process_time()
            results = await asyncio.gather(*(one(r) for r in requests))
            cpu = time.process_time() - cpu0
            span = loop.time() - t0
            stats = veo.stats
        accepted = sorted(started)
        created = sum(results)
        return {
            "create_rate": create_rate,
            "creates": creates,
            "created": created,
            "failed": creates - created,
            "simulator_created": kie.created,
            "requests": stats.creates,
            "virtual_s": span,
            # After the first window's burst, the pace the limit allows: 20 per 10 s.
            "per_10s_mean": (created - LIMIT) / span * PERIOD if span else float("nan"),
            "per_10s_max_window": max_in_window(accepted, PERIOD) if create_rate <= LIMIT
            else None,
            "server_429s": kie.count_status(429),
            "client_create_429s": stats.create_rate_limited,
            "cpu_us_per_create": cpu / creates * 1e6,
        }

    result: dict[str, Any] = on_virtual_clock(main)
    return result


def poll_baseline(polls: int) -> float:
    """Client CPU µs per ``record_info`` of a finished task (the same process, loop, simulator)."""

    async def main() -> float:
        kie = FakeKie(api_key=KEY, record_requests=False)
        kie.add_task("veo_task_done")
        async with VeoSession(KEY, transport=kie.transport()) as veo:
            for _ in range(50):  # warm-up
                await veo.record_info("veo_task_done")
            cpu0 = time.process_time()
            for _ in range(polls):
                await veo.record_info("veo_task_done")
            return (time.process_time() - cpu0) / polls * 1e6

    result: float = on_virtual_clock(main)
    return result


# -- (b) requests per created task ------------------------------------------------------


def polls_per_task(tasks: int, name: str, policy: Any) -> dict[str, Any]:
    """Create ``tasks`` demo-mix generations and wait for each with ``policy``."""
    jobs = demo_jobs(tasks, rng=random.Random(SEED))

    async def main() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        kie = FakeKie(
            api_key=KEY, record_requests=False, credits=1e12, seed=SEED,
            failure_rate=0.08, create_limit=LIMIT, create_period=PERIOD,
        )
        lags: list[float] = []
        polls = 0

        def on_event(event: Event) -> None:
            nonlocal polls
            if isinstance(event, RequestStarted) and event.path == RECORD_INFO:
                polls += 1
            elif isinstance(event, RecordPublished) and event.status.is_terminal:
                lags.append(loop.time() - kie.completed_at(event.task_id))

        session_policy = policy if policy is not None else AdaptivePolicy(seed=SEED)
        async with VeoSession(
            KEY, transport=kie.transport(), policy=session_policy, on_event=on_event
        ) as veo:

            async def one(request: GenerateRequest) -> None:
                task = await veo.generate(request)
                with contextlib.suppress(VeoError):
                    await task.wait()

            cpu0 = time.process_time()
            await asyncio.gather(*(one(job.request) for job in jobs))
            cpu = time.process_time() - cpu0
            stats = veo.stats
        return {
            "policy": name,
            "tasks": tasks,
            "detected": len(lags),
            "polls_per_task": polls / tasks,
            "requests_per_task": stats.requests / tasks,
            "lag_mean": statistics.fmean(lags),
            "lag_p50": percentile(lags, 50),
            "lag_p95": percentile(lags, 95),
            "server_429s": kie.count_status(429),
            "cpu_s": cpu,
        }

    result: dict[str, Any] = on_virtual_clock(main)
    return result


POLICIES: list[tuple[str, Any]] = [
    ("AdaptivePolicy() (default)", None),
    ("PollPolicy() (old default, first poll at 0 s)", PollPolicy()),
    ("PollPolicy(first_poll=60)", PollPolicy(first_poll=60.0)),
]


def report(result: dict[str, Any], note: dict[str, Any] | None) -> str:
    lines = ["## Creating (`bench_create.py`)", ""]
    if note is not None:
        lines += [note_line(note), ""]
    base = result["poll_cpu_us"]
    lines += [
        f"(a) {result['creates']} `generate()` calls started at once against the in-process "
        f"simulator enforcing Kie's limit ({LIMIT} per {PERIOD:g} s), virtual clock. "
        f"Creates per 10 s: the pace after the first window's burst ((created - {LIMIT}) / "
        f"virtual s x 10) / the most sent in any sliding 10 s window. CPU: real CPU per "
        f"create (client and in-process simulator), and as a ratio to one `record_info` "
        f"poll of a finished task measured the same way ({base:.0f} µs).",
        "",
        table(
            ["client budget", "created", "failed", "virtual s", "per 10 s (mean / max)",
             "429s (server)", "create requests", "CPU µs/create", "vs a poll"],
            [
                [
                    "create_rate=20 / 10 s (default)" if r["create_rate"] <= LIMIT
                    else "none (create_rate=1e9)",
                    r["created"],
                    r["failed"],
                    r["virtual_s"],
                    f"{r['per_10s_mean']:.1f} / "
                    + ("-" if r["per_10s_max_window"] is None else str(r["per_10s_max_window"])),
                    r["server_429s"],
                    r["requests"],
                    r["cpu_us_per_create"],
                    f"{r['cpu_us_per_create'] / base:.2f}x",
                ]
                for r in result["throughput"]
            ],
        ),
        "",
        f"(b) {result['tasks']} generations (the demo's mix: 55% veo3_fast, 30% veo3_lite, "
        f"15% veo3; simulator generation times log-normal, medians 150/120/300 s, sigma 0.3; "
        f"8% fail), created under the budget and each waited for; virtual clock, same "
        f"seed for every policy. Polls = record-info requests per task (the creates, one "
        f"per task, are not counted). Lag = session saw the terminal record - simulator "
        f"turned it terminal, virtual seconds.",
        "",
        table(
            ["policy", "polls/task", "vs default", "lag mean s", "lag p50 s", "lag p95 s"],
            [
                [
                    r["policy"],
                    r["polls_per_task"],
                    f"{r['polls_per_task'] / result['schedules'][0]['polls_per_task']:.2f}x",
                    r["lag_mean"],
                    r["lag_p50"],
                    r["lag_p95"],
                ]
                for r in result["schedules"]
            ],
        ),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--creates", type=int, default=500, help="creates started at once (a)")
    parser.add_argument("--tasks", type=int, default=300, help="tasks created and waited (b)")
    parser.add_argument("--quick", action="store_true", help="100 creates, 60 tasks")
    args = parser.parse_args()
    creates, tasks = (100, 60) if args.quick else (args.creates, args.tasks)
    result: dict[str, Any] = {
        "name": NAME,
        "creates": creates,
        "tasks": tasks,
        "poll_cpu_us": poll_baseline(2000),
        "throughput": [throughput(creates, float(LIMIT)), throughput(creates, 1e9)],
        "schedules": [polls_per_task(tasks, name, policy) for name, policy in POLICIES],
    }
    text = report(result, machine_note())
    print(text)
    publishing = not args.quick and (args.creates, args.tasks) == (500, 300)
    publish(NAME, result, text, quick=not publishing)


if __name__ == "__main__":
    main()
