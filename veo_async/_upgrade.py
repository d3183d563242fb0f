"""The 1080p and 4K versions of a finished video: ask, then wait until ready.

Both endpoints are read on their own schedule, not the record-info one:

- **1080p** (``GET get-1080p-video``) is ready 1-3 min after the main task;
  until then it answers a non-200 code ("1080P is processing"; any 400 there
  means that, however worded: see decode_1080p). It is asked
  at once, then every 20-30 s (jittered), until ready or the deadline.
- **4K** (``POST get-4k-video``) takes 5-10 min. The first POST starts it;
  asking again is how its state is read (Kie answers a repeated request for
  the same video with 422, never a second job): every 30-60 s until the
  answer carries the URLs. Its POSTs use the creation budget.

Transient failures (5xx, 455, 429, resets) are retried on the same schedule;
anything else ends the wait at once. A fallback-model video (``fallbackFlag``)
cannot be upgraded: that is refused before any request.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

from ._endpoints import HD_1080P_PATH, UHD_4K_PATH, decode_4k, decode_1080p
from ._requester import Requester
from ._timeouts import look_lead, within
from .errors import VeoError, WaitTimeoutError
from .models import RecordInfo

__all__ = ["HD_GAPS", "UHD_GAPS", "fetch_1080p", "fetch_4k", "refuse_fallback"]

T = TypeVar("T")

#: Seconds between 1080p requests (drawn uniformly): the reference's "20-30 s".
HD_GAPS: Final = (20.0, 30.0)
#: Seconds between 4K requests (drawn uniformly), for a 5-10 minute job.
UHD_GAPS: Final = (30.0, 60.0)


def refuse_fallback(record: RecordInfo, what: str) -> None:
    """Raise when the fallback model made the video: Kie cannot upgrade it.

    :raises ValueError: naming the task and why.
    """
    if record.fallback:
        raise ValueError(
            f"task {record.task_id!r} was made by the fallback model (720p, fallbackFlag): "
            f"Kie cannot make a {what} version of it"
        )


async def fetch_1080p(
    requester: Requester,
    record: RecordInfo,
    index: int,
    deadline: float | None,
    limit: float,
    *,
    rng: random.Random | None = None,
) -> str:
    """The 1080p URL of video ``index`` of a finished task, once ready."""
    params = {"taskId": record.task_id, "index": str(index)}

    def ask() -> Awaitable[str | None]:
        return requester.call(
            "GET", HD_1080P_PATH, decode_1080p, params=params, task_id=record.task_id
        )

    return await _until_ready(
        requester, ask, record, deadline, limit, HD_GAPS, rng, "the 1080p video"
    )


async def fetch_4k(
    requester: Requester,
    record: RecordInfo,
    index: int,
    callback_url: str | None,
    deadline: float | None,
    limit: float,
    *,
    rng: random.Random | None = None,
) -> tuple[str, ...]:
    """The 4K URLs of video ``index`` of a finished task, once ready."""
    body: dict[str, object] = {"taskId": record.task_id, "index": index}
    if callback_url is not None:
        body["callBackUrl"] = callback_url

    def ask() -> Awaitable[tuple[str, ...] | None]:
        return requester.call(
            "POST",
            UHD_4K_PATH,
            decode_4k,
            json=body,
            task_id=record.task_id,
            create=True,
            asked_again=True,
        )

    return await _until_ready(
        requester, ask, record, deadline, limit, UHD_GAPS, rng, "the 4K video"
    )


async def _until_ready(
    requester: Requester,
    ask: Callable[[], Awaitable[T | None]],
    record: RecordInfo,
    deadline: float | None,
    limit: float,
    gaps: tuple[float, float],
    rng: random.Random | None,
    what: str,
) -> T:
    """Ask until there is an answer; ``what`` names it in the timeout's message."""
    loop = asyncio.get_running_loop()
    draw = rng or random
    last_error: VeoError | None = None
    lead = look_lead(limit)
    while True:
        answered = True
        try:
            if deadline is None:
                result = await ask()
            else:
                # Bounded by the deadline: a request queued behind a 429 pause
                # (up to 5 minutes) must not hold the call past it.
                answered, result = await within(ask(), max(0.0, deadline - loop.time()))
        except VeoError as exc:
            if not exc.retryable:
                raise
            # A failure the session's close or a 401 caused ends the call
            # with that, not with a retry one gap later.
            requester.check_usable()
            last_error = exc
        else:
            if result is not None:
                return result
            if answered:
                last_error = None
        gap = draw.uniform(*gaps)
        if deadline is not None:
            left = deadline - loop.time()
            if not answered or left <= lead:  # that was the last look
                await requester.pause(max(0.0, left))  # the call ends at its deadline
                raise WaitTimeoutError(
                    record.task_id, limit, record, last_error, waiting_for=what
                )
            gap = min(gap, left - lead)  # one last look, its answer in by the deadline
        await requester.pause(gap)
