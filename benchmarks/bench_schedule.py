"""Poll-schedule efficiency, offline: requests per task vs detection lag.

What it measures
----------------
For each :class:`~veo_async.PollPolicy` compared, 10,000 simulated tasks in
*virtual time* (no event loop, no I/O, no request latency): polls happen at
the cumulative sums of ``policy.delays(seed=i)`` from t=0 (the moment a wait
starts, i.e. right after creating the task); a task is detected at the first
poll at or after its completion. Reported per policy:

- requests per task (mean, p95) - the cost, and what the account's limits see;
- detection lag = detecting poll - completion (p50, p95, mean, max);
- the lag of fast failures alone (tasks that end within 90 s, p50);
- requests per minute per 1,000 tasks in flight (mean requests / mean
  tracked time): the steady load a big batch puts on the service.

Generation times are drawn (seeded) from a mixture shaped like the service's
documentation ("usually 2-5 minutes", extends and 4K "up to 10+ minutes",
some tasks fail fast):

- 80 % normal renders: lognormal, median 200 s, sigma 0.25 (~130-300 s);
- 15 % slow ones (extends, 4K): lognormal, median 420 s, sigma 0.30 (~250-690 s);
- 5 % fast failures: uniform 10-90 s.

Each task i uses ``delays(seed=i)`` under every policy (common random
numbers), so the policies are compared on identical draws. Tasks longer than
a policy's ``timeout`` (900 s by default) are counted separately; their polls
still count until detection (a real wait would stop at the deadline).

Compared: the default ``PollPolicy()``; fixed 30 s polling (the Veo pages'
advice: ``PollPolicy(interval=30, factor=1, max_interval=30, jitter=0)``);
fixed 5 s; the default with ``first_poll=60`` (for freshly created tasks); the
default capped at 15 s; both variants together.

Rerun
-----
::

    .venv/bin/python benchmarks/bench_schedule.py            # ~10 s
    .venv/bin/python benchmarks/bench_schedule.py --tasks 100000 --seed 7

Writes ``benchmarks/results/schedule.json`` and the ``schedule`` section of
``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import math
import random
import time
from typing import Any

from _common import (
    first_poll_at_or_after,
    machine_note,
    note_line,
    percentile,
    publish,
    table,
)

from veo_async import PollPolicy

NAME = "schedule"
FAST_FAILURE_S = 90.0


def generation_times(n: int, seed: int) -> list[float]:
    """Seconds each of ``n`` tasks takes to reach a terminal status (see the module doc)."""
    rng = random.Random(seed)
    times = []
    for _ in range(n):
        kind = rng.random()
        if kind < 0.80:
            times.append(rng.lognormvariate(math.log(200.0), 0.25))
        elif kind < 0.95:
            times.append(rng.lognormvariate(math.log(420.0), 0.30))
        else:
            times.append(rng.uniform(10.0, FAST_FAILURE_S))
    return times


def policies() -> list[tuple[str, PollPolicy]]:
    """The policies compared, by label."""
    default = PollPolicy()
    return [
        ("default PollPolicy()", default),
        ("fixed 30 s (Veo docs)", PollPolicy(interval=30, factor=1, max_interval=30, jitter=0)),
        ("fixed 5 s", PollPolicy(interval=5, factor=1, max_interval=5, jitter=0)),
        ("default, first_poll=60", default.replace(first_poll=60.0)),
        ("default, cap 15 s", default.replace(max_interval=15.0)),
        ("default, first_poll=60, cap 15 s", default.replace(first_poll=60.0, max_interval=15.0)),
    ]


def simulate(policy: PollPolicy, gen: list[float]) -> dict[str, Any]:
    """Polls and lag of every task under ``policy``, in virtual time."""
    requests: list[int] = []
    lags: list[float] = []
    detected_at: list[float] = []
    for i, done in enumerate(gen):
        n, t = first_poll_at_or_after(policy, done, seed=i)
        requests.append(n)
        lags.append(t - done)
        detected_at.append(t)
    fast = [lag for lag, g in zip(lags, gen, strict=True) if g <= FAST_FAILURE_S]
    timeout = policy.timeout
    mean_requests = sum(requests) / len(requests)
    mean_tracked = sum(detected_at) / len(detected_at)
    return {
        "requests_mean": mean_requests,
        "requests_p95": percentile(requests, 95),
        "lag_p50_s": percentile(lags, 50),
        "lag_p95_s": percentile(lags, 95),
        "lag_mean_s": sum(lags) / len(lags),
        "lag_max_s": max(lags),
        "fast_failure_lag_p50_s": percentile(fast, 50),
        "requests_per_min_per_1000": mean_requests / mean_tracked * 60 * 1000,
        "past_timeout": sum(1 for g in gen if timeout is not None and g > timeout),
    }


def run(n: int, seed: int) -> dict[str, Any]:
    gen = generation_times(n, seed)
    rows = []
    for label, policy in policies():
        started = time.perf_counter()
        row = simulate(policy, gen)
        row["label"] = label
        row["policy"] = {
            "first_poll": policy.first_poll,
            "interval": policy.interval,
            "factor": policy.factor,
            "max_interval": policy.max_interval,
            "jitter": policy.jitter,
            "timeout": policy.timeout,
        }
        row["sim_seconds"] = time.perf_counter() - started
        rows.append(row)
    return {
        "name": NAME,
        "machine": machine_note(),
        "tasks": n,
        "seed": seed,
        "generation_s": {
            "p5": percentile(gen, 5),
            "p50": percentile(gen, 50),
            "p95": percentile(gen, 95),
            "max": max(gen),
        },
        "rows": rows,
    }


def report(result: dict[str, Any]) -> str:
    g = result["generation_s"]
    base = next(r for r in result["rows"] if r["label"].startswith("fixed 30"))
    rows = [
        [
            r["label"],
            r["requests_mean"],
            r["requests_p95"],
            f"{r['requests_mean'] / base['requests_mean']:.2f}x",
            r["lag_p50_s"],
            r["lag_p95_s"],
            r["lag_mean_s"],
            r["lag_max_s"],
            r["fast_failure_lag_p50_s"],
            r["requests_per_min_per_1000"],
        ]
        for r in result["rows"]
    ]
    past = result["rows"][0]["past_timeout"]
    return "\n".join(
        [
            "## Poll schedule (`bench_schedule.py`)",
            "",
            note_line(result["machine"]),
            "",
            f"{result['tasks']:,} simulated tasks per policy (seed {result['seed']}), virtual "
            "time, no request latency; polls from the start of the wait, detection at the "
            "first poll at or after completion. Generation times: 80 % lognormal around "
            "200 s, 15 % around 420 s, 5 % fast failures in 10-90 s "
            f"(p5 {g['p5']:.0f} s, p50 {g['p50']:.0f} s, p95 {g['p95']:.0f} s, "
            f"max {g['max']:.0f} s; {past} beyond the 900 s default timeout).",
            "",
            table(
                [
                    "policy",
                    "req/task mean",
                    "req/task p95",
                    "req vs fixed 30 s",
                    "lag p50 s",
                    "lag p95 s",
                    "lag mean s",
                    "lag max s",
                    "fast-failure lag p50 s",
                    "req/min per 1,000 tasks",
                ],
                rows,
            ),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=20250606)
    args = parser.parse_args()
    result = run(args.tasks, args.seed)
    text = report(result)
    print(text)
    publish(NAME, result, text)


if __name__ == "__main__":
    main()
