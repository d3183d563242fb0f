"""Scenarios of ``veo-async demo`` and ``simulate``: what to create, what goes wrong.

``demo`` creates its tasks through the API (:func:`demo_jobs`: mixed models,
some extends and 1080p upgrades) on a simulator that fails some of them, and
meets the trouble of :func:`demo_faults` along the way. ``simulate`` serves
synthetic, time-compressed task lives (:func:`synthetic_scripts`).

The shapes follow ``kie-veo-api.md``: a render takes 2-5 minutes; a prompt
refused by moderation (status 2) fails within the first minute; a render that
breaks (status 3) fails late. Along the way the service misbehaves as it does
in recorded traffic (5xx, HTML proxy pages, truncated bodies, resets, 455
maintenance, a record not visible yet). Every duration is divided by ``speed``
so that minutes of real life play out in seconds.

Pure: scripts are built from a seeded :class:`random.Random`, no I/O.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import attrs

from ..models import GenerateRequest
from ._script import Fault, Quirks, TaskScript

__all__ = [
    "DEMO_FAILURE_RATE",
    "DEMO_FALLBACK_RATE",
    "DemoJob",
    "TimedFault",
    "demo_faults",
    "demo_jobs",
    "synthetic_scripts",
]

# Real-life seconds.
_RENDER = (120.0, 300.0, 170.0)  # success: low, high, mode (triangular)
_REFUSED = (10.0, 60.0)  # status 2: moderation answers early
_BROKEN = (90.0, 300.0)  # status 3: the render itself failed
_SHARE_FAILED = 0.08
_SHARE_GENERATION_FAILED = 0.07
_SHARE_FALLBACK = 0.05
_SHARE_FAULTY = 0.3
_SHARE_QUIRKY = 0.15
# The 429 burst: refusals asking to come back in 2 s of real time. After a
# 429 the session sends one probe at a time, so the refusals are met one after
# another: the burst costs about count x Retry-After (~20 s of real time).
_BURST_COUNT = 10
_BURST_RETRY_AFTER = 2.0

# Transient trouble a task may meet on its first polls. Two resets in a row:
# aiohttp silently retries a single one.
_TRANSIENT: tuple[tuple[Fault, ...], ...] = (
    (Fault.server_error(),),
    (Fault.bad_gateway_html(),),
    (Fault.truncated_json(),),
    (Fault.reset(), Fault.reset()),
    (Fault.maintenance(),),
    (Fault.empty_body(),),
)
# Wire-format variants the service is known (or suspected) to send.
_QUIRKS: tuple[Quirks, ...] = (
    Quirks(success_flag_as_str=True),
    Quirks(result_urls_as_json_string=True),
    Quirks(times_as_epoch_ms=True),
    Quirks(error_code_as_str_null=True),
    Quirks(omit_fallback_flag=True, omit_response=True),
    Quirks(extra_fields=True),
)


def _faults(rng: random.Random) -> tuple[Fault, ...]:
    if rng.random() >= _SHARE_FAULTY:
        return ()
    faults: list[Fault] = []
    # "record is null" can only come first: the record is not visible yet.
    if rng.random() < 0.3:
        faults.append(Fault.record_null())
    for _ in range(rng.choice((1, 1, 2))):
        faults.extend(rng.choice(_TRANSIENT))
    return tuple(faults)


def _script(task_id: str, rng: random.Random, speed: float, faults: bool) -> TaskScript:
    draw = rng.random()
    fallback = False
    if draw < _SHARE_FAILED:
        status, real_seconds = 2, rng.uniform(*_REFUSED)
    elif draw < _SHARE_FAILED + _SHARE_GENERATION_FAILED:
        status, real_seconds = 3, rng.uniform(*_BROKEN)
    else:
        low, high, mode = _RENDER
        status, real_seconds = 1, rng.triangular(low, high, mode)
        fallback = rng.random() < _SHARE_FALLBACK
    quirks = rng.choice(_QUIRKS) if rng.random() < _SHARE_QUIRKY else Quirks()
    return TaskScript(
        task_id,
        complete_after=real_seconds / speed,
        final_status=status,
        faults=_faults(rng) if faults else (),
        quirks=quirks,
        fallback=fallback,
    )


def synthetic_scripts(
    ids: Sequence[str], *, rng: random.Random, speed: float, faults: bool = True
) -> list[TaskScript]:
    """One script per id: ~85% succeed, ~8% fail (status 2), ~7% fail late (status 3).

    :param speed: how many times faster than real life the tasks run.
    :param faults: give ~30% of the tasks transient faults on their first polls.
    """
    return [_script(task_id, rng, speed, faults) for task_id in ids]


# -- the demo: tasks created through the API -------------------------------------------

#: The share of the demo's created tasks the simulator fails (status 2).
DEMO_FAILURE_RATE = 0.08
#: The share of the demo's successes made by the fallback model (no 1080p for them).
DEMO_FALLBACK_RATE = 0.04

# Model mix: mostly the cheap, quick models, some of the slow one.
_DEMO_MODELS = (("veo3_fast", 0.55), ("veo3_lite", 0.30), ("veo3", 0.15))
_SHARE_PORTRAIT = 0.2
# Extends follow the quick models only, so the demo's tail stays short.
_SHARE_EXTENDED = 0.12
_EXTEND_MODELS = {"veo3_fast": "fast", "veo3_lite": "lite"}
_SHARE_UPGRADED = 0.10
_SUBJECTS = (
    "A cat surfing a wave at sunset",
    "A paper boat drifting down a rainy street",
    "Time-lapse of a city skyline from dusk to night",
    "A hummingbird hovering over a red flower, slow motion",
    "An astronaut planting a garden on the moon",
    "A steam train crossing a snowy viaduct",
    "Close-up of coffee being poured into a glass cup",
    "A lighthouse in a storm, waves crashing",
    "A fox running through autumn leaves",
    "Neon signs reflected in puddles at night",
)
_NEXT = (
    "The camera pulls back to reveal the whole scene",
    "It begins to snow",
    "The scene slowly fades to black",
)


@attrs.frozen
class DemoJob:
    """One generation of ``veo-async demo``, and what is made of it once it succeeds.

    :ivar request: the generation.
    :ivar extend_prompt: extend the video with this prompt once it succeeds, or None.
    :ivar extend_model: the extend's model (``fast`` or ``lite``), or None.
    :ivar upgrade: ask for its 1080p version once it succeeds.
    """

    request: GenerateRequest
    extend_prompt: str | None = None
    extend_model: str | None = None
    upgrade: bool = False


def demo_jobs(count: int, *, rng: random.Random) -> list[DemoJob]:
    """``count`` generations: ~55% veo3_fast, ~30% veo3_lite, ~15% veo3; ~20%
    portrait; ~12% extended (quick models only), ~10% upgraded to 1080p
    (landscape only)."""
    models = [name for name, _ in _DEMO_MODELS]
    weights = [weight for _, weight in _DEMO_MODELS]
    jobs: list[DemoJob] = []
    for number in range(1, count + 1):
        model = rng.choices(models, weights)[0]
        portrait = rng.random() < _SHARE_PORTRAIT
        request = GenerateRequest(
            f"{rng.choice(_SUBJECTS)} (take {number})",
            model=model,
            aspect_ratio="9:16" if portrait else "16:9",
        )
        extend = model in _EXTEND_MODELS and rng.random() < _SHARE_EXTENDED
        jobs.append(
            DemoJob(
                request,
                extend_prompt=rng.choice(_NEXT) if extend else None,
                extend_model=_EXTEND_MODELS[model] if extend else None,
                upgrade=not portrait and rng.random() < _SHARE_UPGRADED,
            )
        )
    return jobs


@attrs.frozen
class TimedFault:
    """Trouble the demo's simulator meets at a set time.

    :ivar at: seconds (simulated) after the start.
    :ivar fault: what goes wrong.
    :ivar count: how many requests in a row meet it.
    :ivar create: True: the next create requests (:meth:`FakeKie.inject_create`);
        False: the next record-info requests (:meth:`FakeKie.inject`).
    """

    at: float
    fault: Fault
    count: int
    create: bool = False


def demo_faults(tasks: int) -> list[TimedFault]:
    """The demo's trouble, in simulated seconds from the start.

    The first creates meet a 455 (maintenance: safely resent) and a dropped
    connection after the task was created (the create is *uncertain*, never
    resent); polls meet 5xx, an HTML 502, truncated bodies, resets, a 455,
    and at 200 s a burst of 429s (up to 10, ``Retry-After: 2``).
    """
    burst = min(_BURST_COUNT, max(1, tasks // 10))
    return [
        TimedFault(0.0, Fault.maintenance(), 1, create=True),
        TimedFault(0.0, Fault.created_then_drop(), 1, create=True),
        TimedFault(60.0, Fault.server_error(), 3),
        TimedFault(120.0, Fault.bad_gateway_html(), 2),
        TimedFault(200.0, Fault.http_429(retry_after=_BURST_RETRY_AFTER), burst),
        TimedFault(260.0, Fault.truncated_json(), 2),
        TimedFault(320.0, Fault.reset(), 2),
        TimedFault(400.0, Fault.maintenance(), 2),
    ]
