"""What ``veo-async demo`` is built from: its scenario (pure) and its faster clock.

The demo itself runs in a child process in ``test_cli.py``.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from veo_async.testing import DemoJob, Fault, ScaledClockLoop, demo_faults, demo_jobs


def test_demo_jobs_are_a_seeded_mix_of_models_extends_and_upgrades() -> None:
    """The same seed gives the same jobs; all three models appear; extends follow the
    quick models only, with their extend model; upgrades are landscape only."""
    jobs = demo_jobs(400, rng=random.Random(5))
    assert jobs == demo_jobs(400, rng=random.Random(5))
    assert jobs != demo_jobs(400, rng=random.Random(6))
    assert {job.request.model for job in jobs} == {"veo3_fast", "veo3_lite", "veo3"}
    extended = [job for job in jobs if job.extend_prompt is not None]
    upgraded = [job for job in jobs if job.upgrade]
    assert 0 < len(extended) < len(jobs) / 4
    assert 0 < len(upgraded) < len(jobs) / 4
    expected = {"veo3_fast": "fast", "veo3_lite": "lite"}
    assert all(expected[job.request.model] == job.extend_model for job in extended)
    assert all(job.request.aspect_ratio == "16:9" for job in upgraded)
    assert len({job.request.prompt for job in jobs}) == len(jobs)


def test_demo_jobs_of_none() -> None:
    """No tasks asked, no jobs."""
    assert demo_jobs(0, rng=random.Random(1)) == []
    assert isinstance(demo_jobs(1, rng=random.Random(1))[0], DemoJob)


@pytest.mark.parametrize(("tasks", "burst"), [(5, 1), (50, 5), (300, 10)])
def test_demo_faults_script_an_uncertain_create_and_a_bounded_429_burst(
    tasks: int, burst: int
) -> None:
    """The first creates meet a 455 then a drop after creating; the 429 burst on the
    polls grows with the tasks up to 10."""
    faults = demo_faults(tasks)
    creates = [f for f in faults if f.create]
    assert [(f.at, f.fault.kind, f.count) for f in creates] == [
        (0.0, Fault.maintenance().kind, 1),
        (0.0, "created_then_drop", 1),
    ]
    [limited] = [f for f in faults if f.fault.kind == Fault.http_429().kind]
    assert limited.count == burst
    assert not limited.create
    assert all(f.at >= 0 for f in faults)


def test_a_scaled_clock_fires_timers_in_order_and_moves_by_their_delays() -> None:
    """On a ScaledClockLoop, sleeps end in the order of their delays, and the loop's
    clock has moved at least by the longest (minutes pass; the test does not wait them)."""
    loop = ScaledClockLoop(2000)
    ended: list[float] = []

    async def sleeper(delay: float) -> None:
        await asyncio.sleep(delay)
        ended.append(delay)

    async def main() -> float:
        start = loop.time()
        await asyncio.gather(*(sleeper(d) for d in (120.0, 30.0, 60.0)))
        return loop.time() - start

    try:
        moved = loop.run_until_complete(main())
    finally:
        loop.close()
    assert ended == [30.0, 60.0, 120.0]
    assert moved >= 120.0
    assert loop.speed == 2000.0


@pytest.mark.parametrize(
    ("speed", "error"), [(0, ValueError), (-1.0, ValueError), (float("inf"), ValueError),
                         ("10", TypeError), (True, TypeError)]
)
def test_a_scaled_clock_refuses_a_bad_speed(speed: object, error: type[Exception]) -> None:
    """A speed that is not a finite number > 0 is refused when the loop is made."""
    with pytest.raises(error, match="speed"):
        ScaledClockLoop(speed)  # type: ignore[arg-type]
