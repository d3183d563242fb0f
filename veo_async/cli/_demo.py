"""``veo-async demo``: hundreds of simulated tasks tracked end to end, in seconds.

A :class:`~veo_async.testing.FakeKie` runs in this process on loopback with
synthetic lives from :func:`veo_async.testing.synthetic_scripts`; a real
:class:`~veo_async.VeoSession` tracks every task over real sockets with
:meth:`~veo_async.VeoSession.as_completed`, and a :class:`DemoReport` says
how it went: outcomes, requests per task, how soon each outcome was seen.
"""

from __future__ import annotations

import asyncio
import math
import random
import secrets
from collections import Counter
from collections.abc import Sequence
from contextlib import aclosing
from typing import Any

import attrs
from rich.console import Console
from rich.table import Table

from .. import TaskStatus, VeoSession
from ..testing import FakeKie, Fault, burst_plan, compressed_policy, synthetic_scripts
from ._outcome import Outcome, Tally, outcome_of
from ._progress import ProgressReporter

__all__ = ["DemoReport", "demo_header", "percentile", "run_demo"]


def demo_header(tasks: int, speed: float, seed: int) -> str:
    """What the demo simulates, in one line (printed before it starts)."""
    return (
        f"simulating {tasks} tasks (2-5 min renders, ~15% failing, transient faults, "
        f"a burst of 429s) {speed:g} times faster than life, seed {seed}; "
        f"times are shown as run seconds and simulated seconds"
    )


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), interpolated linearly; nan for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@attrs.frozen
class DemoReport:
    """What a demo run measured. Durations are seconds of the run (the compressed
    clock); times ``speed`` they are simulated, life-size seconds.

    :ivar outcomes: tasks per outcome name (``succeeded``, ``failed (status 2)``,
        ``failed (status 3)``, ``timeout``, ``error``).
    :ivar lags: per task, from the instant its record turned terminal on the
        simulator to the instant the client yielded it.
    """

    tasks: int
    speed: float
    seed: int
    elapsed: float
    outcomes: dict[str, int]
    requests: int
    rate_limited: int
    server_429s: int
    lags: tuple[float, ...]

    @property
    def requests_per_task(self) -> float:
        """Requests made per task tracked."""
        return self.requests / self.tasks if self.tasks else 0.0

    def to_json(self) -> dict[str, Any]:
        """The report as a JSON-ready dict (``demo --json``)."""
        p50, p95 = percentile(self.lags, 50), percentile(self.lags, 95)
        return {
            "tasks": self.tasks,
            "speed": self.speed,
            "seed": self.seed,
            "elapsed": round(self.elapsed, 3),
            "outcomes": self.outcomes,
            "requests": self.requests,
            "requests_per_task": round(self.requests_per_task, 2),
            "rate_limited": self.rate_limited,
            "server_429s": self.server_429s,
            "lag_p50": None if math.isnan(p50) else round(p50, 4),
            "lag_p95": None if math.isnan(p95) else round(p95, 4),
        }

    def print_table(self, console: Console) -> None:
        """Print the summary tables (outcomes, then measurements).

        The header (what was simulated) went to standard error at the start.
        """
        outcomes = Table()
        outcomes.add_column("outcome")
        outcomes.add_column("tasks", justify="right")
        for name, count in self.outcomes.items():
            outcomes.add_row(name, str(count))
        outcomes.add_row("total", str(sum(self.outcomes.values())), style="bold")
        console.print(outcomes)

        def both(seconds: float) -> str:
            return f"{seconds:.2f} s (≈ {seconds * self.speed:.1f} s simulated)"

        measures = Table(show_header=False)
        measures.add_column("measure")
        measures.add_column("value", justify="right")
        measures.add_row("elapsed", both(self.elapsed))
        measures.add_row("requests", str(self.requests))
        measures.add_row("requests per task", f"{self.requests_per_task:.1f}")
        measures.add_row("429s absorbed", str(self.rate_limited))
        for q in (50, 95):
            lag = percentile(self.lags, q)
            measures.add_row(f"detection lag p{q}", "n/a" if math.isnan(lag) else both(lag))
        console.print(measures)


def _outcome_name(kind: Outcome, status: TaskStatus | None) -> str:
    if kind is Outcome.FAILED and status is not None:
        return f"failed (status {int(status)})"
    return kind.value


async def run_demo(
    *,
    tasks: int,
    speed: float,
    seed: int,
    concurrency: int,
    tally: Tally,
    progress: ProgressReporter,
) -> DemoReport:
    """Run the demo; ``tally`` and ``progress`` are updated as tasks finish.

    Cancelling it closes the session and the simulator before returning.
    """
    rng = random.Random(seed)
    ids = [f"veo_demo_{n:05d}" for n in range(1, tasks + 1)]
    scripts = synthetic_scripts(ids, rng=rng, speed=speed)
    policy = compressed_policy(speed)
    burst = burst_plan(tasks, speed)
    # A throwaway key: the demo needs none from the user, and this one is never shown.
    key = f"demo-{secrets.token_hex(8)}"
    outcomes: Counter[str] = Counter()
    lags: list[float] = []
    loop = asyncio.get_running_loop()
    async with FakeKie(api_key=key, record_requests=False) as kie:
        kie.add_tasks(scripts)
        burst_timer = loop.call_later(
            burst.at, kie.inject, Fault.http_429(retry_after=burst.retry_after), burst.count
        )
        try:
            async with VeoSession(
                key, base_url=kie.base_url, policy=policy, concurrency=concurrency
            ) as veo:
                progress.attach(lambda: veo.stats)
                async with progress, aclosing(veo.as_completed(ids)) as finished:
                    async for handle in finished:
                        seen = loop.time()
                        outcome = outcome_of(handle)
                        tally.add(outcome)
                        progress.note_error(outcome.request_error)
                        status = outcome.record.status if outcome.record is not None else None
                        outcomes[_outcome_name(outcome.kind, status)] += 1
                        if status is not None and status.is_terminal:
                            # Only a terminal record was "detected"; a timeout was not.
                            lags.append(seen - kie.completed_at(handle.task_id))
                stats = veo.stats
        finally:
            burst_timer.cancel()
        server_429s = kie.count_status(429)
    order = ["succeeded", "failed (status 2)", "failed (status 3)", "timeout", "error"]
    return DemoReport(
        tasks=tasks,
        speed=speed,
        seed=seed,
        elapsed=progress.snapshot().elapsed,
        # The usual rows always (zeros included), then anything unexpected.
        outcomes={**{name: outcomes[name] for name in order}, **outcomes},
        requests=stats.requests,
        rate_limited=stats.rate_limited,
        server_429s=server_429s,
        lags=tuple(lags),
    )
