"""``veo-async demo``: hundreds of tasks created, extended, upgraded and waited for, in seconds.

The Kie simulator (:class:`~veo_async.testing.FakeKie`) runs in this process
and answers a real :class:`~veo_async.VeoSession` through its in-process
transport: no socket, no network, no key. The whole run is on a
:class:`~veo_async.testing.ScaledClockLoop`, whose waits pass ``speed``
times faster than life, so everything timed plays out as it would for real,
only compressed: the simulator's generation times (minutes, per model), the
session's default schedule (a created task's first poll comes from its
model's prior), its creation budget (20 creates per 10 s), its 429 pauses and
the 1080p polling. Times are reported in simulated seconds.

The scenario (:func:`veo_async.testing.demo_jobs`,
:func:`veo_async.testing.demo_faults`): mixed models, some extends and 1080p
upgrades, ~8% of the renders failing, a maintenance answer and an
*uncertain* create (the connection dropped after the task was made: never
resent), and transient trouble on the polls, a burst of 429s among it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import secrets
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import attrs
from rich.console import Console
from rich.table import Table

from .. import AdaptivePolicy, SubmitUncertainError, VeoError, VeoSession, VeoTask
from ..events import Event, RecordPublished, RequestStarted
from ..testing import (
    DEMO_FAILURE_RATE,
    DEMO_FALLBACK_RATE,
    DemoJob,
    FakeKie,
    TimedFault,
    demo_faults,
    demo_jobs,
)
from ._outcome import Outcome, Tally, TaskOutcome, outcome_of
from ._progress import ProgressReporter

__all__ = ["DemoReport", "demo_header", "percentile", "plan", "planned_tasks", "run_demo"]

#: The simulated account's balance: plenty for the largest demo's creates.
_CREDITS = 10_000_000.0
_ORDER = ("succeeded", "failed (status 2)", "failed (status 3)", "timeout", "error")


def demo_header(tasks: int, speed: float, seed: int) -> str:
    """What the demo simulates, in one line (printed before it starts)."""
    return (
        f"simulating {tasks} generations (veo3_fast, veo3_lite, veo3; some extended, some "
        f"upgraded to 1080p; ~{DEMO_FAILURE_RATE:.0%} failing; transient faults, a burst of "
        f"429s, an uncertain create) on an in-process Kie simulator, {speed:g} times faster "
        f"than life, seed {seed}; times are simulated seconds"
    )


def planned_tasks(jobs: Sequence[DemoJob]) -> int:
    """The tasks the jobs would create if every one succeeded (generations + extends)."""
    return len(jobs) + sum(job.extend_prompt is not None for job in jobs)


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
    """What a demo run measured. Durations are simulated seconds unless named ``_real``.

    :ivar generations: the generations asked for (``--tasks``).
    :ivar created: tasks the client created and tracked (generations and extends).
    :ivar extended: how many of those are extends.
    :ivar uncertain: creates that raised :class:`~veo_async.SubmitUncertainError`.
    :ivar create_errors: creates refused by the service (nothing created).
    :ivar simulator_created: tasks the simulator created (``created + uncertain``).
    :ivar outcomes: tracked tasks per outcome name (``succeeded``,
        ``failed (status 2)``, ``failed (status 3)``, ``timeout``, ``error``).
    :ivar upgraded: 1080p versions obtained; ``upgrade_errors``: asked, not obtained.
    :ivar requests: HTTP requests in all; ``polls``, ``creates`` (resends
        included) and ``upgrade_requests`` among them.
    :ivar rate_limited: 429 answers absorbed; ``create_rate_limited`` of them
        to creates (the creation budget keeps that at 0).
    :ivar credits_before: the balance before; ``credits_after``: after.
    :ivar charged: the credits the simulator says it charged.
    :ivar lags: per task, from the instant its record turned terminal on the
        simulator to the instant the session saw it.
    """

    generations: int
    speed: float
    seed: int
    elapsed: float
    elapsed_real: float
    created: int
    extended: int
    uncertain: int
    create_errors: int
    simulator_created: int
    outcomes: dict[str, int]
    upgraded: int
    upgrade_errors: int
    requests: int
    polls: int
    creates: int
    upgrade_requests: int
    rate_limited: int
    create_rate_limited: int
    credits_before: float
    credits_after: float
    charged: float
    lags: tuple[float, ...]

    @property
    def credits_spent(self) -> float:
        """The balance before minus the balance after."""
        return self.credits_before - self.credits_after

    @property
    def requests_per_task(self) -> float:
        """Requests made per task created."""
        return self.requests / self.created if self.created else 0.0

    @property
    def polls_per_task(self) -> float:
        """record-info requests per task created."""
        return self.polls / self.created if self.created else 0.0

    def to_json(self) -> dict[str, Any]:
        """The report as a JSON-ready dict (``demo --json``)."""
        p50, p95 = percentile(self.lags, 50), percentile(self.lags, 95)
        return {
            "tasks": self.created,
            "generations": self.generations,
            "extended": self.extended,
            "uncertain": self.uncertain,
            "create_errors": self.create_errors,
            "simulator_created": self.simulator_created,
            "speed": self.speed,
            "seed": self.seed,
            "elapsed": round(self.elapsed, 3),
            "elapsed_real": round(self.elapsed_real, 3),
            "outcomes": self.outcomes,
            "upgraded_1080p": self.upgraded,
            "upgrade_errors": self.upgrade_errors,
            "requests": self.requests,
            "polls": self.polls,
            "creates": self.creates,
            "upgrade_requests": self.upgrade_requests,
            "requests_per_task": round(self.requests_per_task, 2),
            "polls_per_task": round(self.polls_per_task, 2),
            "rate_limited": self.rate_limited,
            "create_rate_limited": self.create_rate_limited,
            "credits_before": self.credits_before,
            "credits_after": self.credits_after,
            "credits_spent": self.credits_spent,
            "simulator_charged": self.charged,
            "lag_p50": None if math.isnan(p50) else round(p50, 3),
            "lag_p95": None if math.isnan(p95) else round(p95, 3),
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

        measures = Table(show_header=False)
        measures.add_column("measure")
        measures.add_column("value", justify="right")
        measures.add_row(
            "elapsed", f"{self.elapsed_real:.1f} s real (≈ {self.elapsed:.0f} s simulated)"
        )
        measures.add_row(
            "tasks created",
            f"{self.created} ({self.created - self.extended} generations, "
            f"{self.extended} extends)",
        )
        measures.add_row(
            "uncertain creates",
            f"{self.uncertain} (never resent; the simulator made {self.simulator_created})",
        )
        if self.create_errors:
            measures.add_row("creates refused", str(self.create_errors))
        measures.add_row(
            "1080p versions",
            f"{self.upgraded}" + (f" ({self.upgrade_errors} not ready)" if self.upgrade_errors
                                  else ""),
        )
        other = self.requests - self.polls - self.creates - self.upgrade_requests
        measures.add_row(
            "requests",
            f"{self.requests} ({self.polls} polls, {self.creates} creates, "
            f"{self.upgrade_requests} 1080p, {other} other)",
        )
        measures.add_row(
            "requests per task",
            f"{self.requests_per_task:.2f} ({self.polls_per_task:.2f} polls)",
        )
        measures.add_row(
            "429s absorbed",
            f"{self.rate_limited} ({self.create_rate_limited} on creates)",
        )
        measures.add_row(
            "credits spent",
            f"{self.credits_spent:,.0f} (simulator charged {self.charged:,.0f})",
        )
        for q in (50, 95):
            lag = percentile(self.lags, q)
            measures.add_row(
                f"detection lag p{q}", "n/a" if math.isnan(lag) else f"{lag:.1f} s simulated"
            )
        console.print(measures)


def _outcome_name(outcome: TaskOutcome) -> str:
    status = outcome.record.status if outcome.record is not None else None
    if outcome.kind is Outcome.FAILED and status is not None:
        return f"failed (status {int(status)})"
    return outcome.kind.value


@attrs.define
class _Run:
    """What the jobs of one run count as they go."""

    tally: Tally
    progress: ProgressReporter
    outcomes: Counter[str] = attrs.Factory(Counter)
    created: int = 0
    extended: int = 0
    uncertain: int = 0
    create_errors: int = 0
    upgraded: int = 0
    upgrade_errors: int = 0

    async def create(self, make: Any, planned: int) -> VeoTask | None:
        """Await ``make`` (a create); on failure take ``planned`` tasks out of the total."""
        try:
            task: VeoTask = await make
        except SubmitUncertainError:
            self.uncertain += 1
            self.tally.withdraw(planned)
            return None
        except VeoError as exc:
            self.create_errors += 1
            self.progress.note_error(exc)
            self.tally.withdraw(planned)
            return None
        self.created += 1
        return task

    async def settle(self, task: VeoTask) -> TaskOutcome:
        """Wait for ``task`` (default schedule) and count its outcome."""
        with contextlib.suppress(VeoError):  # read below, like any outcome
            await task.wait()
        outcome = outcome_of(task)
        self.tally.add(outcome)
        self.progress.note_error(outcome.request_error)
        self.outcomes[_outcome_name(outcome)] += 1
        return outcome

    async def job(self, veo: VeoSession, job: DemoJob) -> None:
        """One generation, then its extend and its 1080p version if it succeeded."""
        extend = job.extend_prompt is not None
        task = await self.create(veo.generate(job.request), 1 + extend)
        if task is None:
            return
        outcome = await self.settle(task)
        succeeded = outcome.kind is Outcome.SUCCEEDED
        if extend:
            if not succeeded:
                self.tally.withdraw()
            else:
                child = await self.create(
                    task.extend(job.extend_prompt or "", model=job.extend_model), 1
                )
                if child is not None:
                    self.extended += 1
                    await self.settle(child)
        record = outcome.record
        if job.upgrade and succeeded and record is not None and not record.fallback:
            try:
                await task.get_1080p()
            except VeoError as exc:
                self.upgrade_errors += 1
                self.progress.note_error(exc)
            else:
                self.upgraded += 1


async def _run_all(run: _Run, veo: VeoSession, jobs: Sequence[DemoJob]) -> None:
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(run.job(veo, job)) for job in jobs]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)


def _schedule_faults(
    loop: asyncio.AbstractEventLoop, kie: FakeKie, faults: Sequence[TimedFault]
) -> list[asyncio.TimerHandle]:
    timers = []
    for trouble in faults:
        inject = kie.inject_create if trouble.create else kie.inject
        if trouble.at <= 0:
            inject(trouble.fault, trouble.count)
        else:
            timers.append(loop.call_later(trouble.at, inject, trouble.fault, trouble.count))
    return timers


async def run_demo(
    *,
    jobs: Sequence[DemoJob],
    speed: float,
    seed: int,
    concurrency: int,
    tally: Tally,
    progress: ProgressReporter,
) -> DemoReport:
    """Run the demo's ``jobs``; ``tally`` and ``progress`` are updated as tasks finish.

    Meant for a :class:`~veo_async.testing.ScaledClockLoop` of ``speed``
    (it works on any loop: ``speed`` is only reported). Cancelling it closes
    the session and the simulator before returning.
    """
    loop = asyncio.get_running_loop()
    started_real = time.perf_counter()
    started = loop.time()
    # A throwaway key: the demo needs none from the user, and this one is never shown.
    key = f"demo-{secrets.token_hex(8)}"
    kie = FakeKie(
        api_key=key,
        record_requests=False,
        credits=_CREDITS,
        seed=seed,
        failure_rate=DEMO_FAILURE_RATE,
        fallback_rate=DEMO_FALLBACK_RATE,
    )
    lags: list[float] = []
    paths: Counter[str] = Counter()

    def on_event(event: Event) -> None:
        if isinstance(event, RequestStarted):
            paths[event.path.rsplit("/", 1)[-1]] += 1
        elif isinstance(event, RecordPublished) and event.status.is_terminal:
            # An id the simulator does not know has nothing to measure.
            with contextlib.suppress(KeyError):
                lags.append(loop.time() - kie.completed_at(event.task_id))

    run = _Run(tally, progress)
    timers: list[asyncio.TimerHandle] = []
    try:
        async with VeoSession(
            key,
            transport=kie.transport(),
            concurrency=concurrency,
            # The default schedule, its jitter seeded too, for --seed.
            policy=AdaptivePolicy(seed=seed),
            on_event=on_event,
        ) as veo:
            credits_before = await veo.credits()
            timers = _schedule_faults(loop, kie, demo_faults(len(jobs)))
            progress.attach(lambda: veo.stats)
            progress.count_created(lambda: run.created)
            async with progress:
                await _run_all(run, veo, jobs)
            credits_after = await veo.credits()
            stats = veo.stats
    finally:
        for timer in timers:
            timer.cancel()
        await kie.close()
    return DemoReport(
        generations=len(jobs),
        speed=speed,
        seed=seed,
        elapsed=loop.time() - started,
        elapsed_real=time.perf_counter() - started_real,
        created=run.created,
        extended=run.extended,
        uncertain=run.uncertain,
        create_errors=run.create_errors,
        simulator_created=kie.created,
        # The usual rows always (zeros included), then anything unexpected.
        outcomes={**{name: run.outcomes[name] for name in _ORDER}, **run.outcomes},
        upgraded=run.upgraded,
        upgrade_errors=run.upgrade_errors,
        requests=stats.requests,
        polls=paths["record-info"],
        creates=stats.creates,
        upgrade_requests=paths["get-1080p-video"],
        rate_limited=stats.rate_limited,
        create_rate_limited=stats.create_rate_limited,
        credits_before=credits_before,
        credits_after=credits_after,
        charged=kie.charged,
        lags=tuple(lags),
    )


def plan(tasks: int, seed: int) -> list[DemoJob]:
    """The demo's jobs for ``--tasks`` and ``--seed``."""
    return demo_jobs(tasks, rng=random.Random(seed))

