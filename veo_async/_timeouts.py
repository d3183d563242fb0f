"""Waiting for something for at most some seconds, without losing a cancellation.

``asyncio.wait_for`` on Python 3.10 and 3.11 returns the inner result when
the waiting task is cancelled in the very loop step the inner awaitable
finishes: the cancellation is lost, and a cancelled wait carries on.
:func:`within` never does that (``asyncio.timeout`` has it right, from 3.11).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["look_lead", "within"]

T = TypeVar("T")

# A wait's last look goes this long before its deadline (at most this share
# of the wait), so that its answer is in by the deadline.
_LOOK_LEAD = 1.0
_LOOK_SHARE = 0.05


def look_lead(limit: float) -> float:
    """How long before the deadline of a wait of ``limit`` seconds its last look goes."""
    return min(_LOOK_LEAD, _LOOK_SHARE * limit)


async def within(awaitable: Awaitable[T], seconds: float) -> tuple[bool, T | None]:
    """Await ``awaitable`` for at most ``seconds``.

    :returns: ``(True, its result)``, or ``(False, None)`` when the time ran
        out first (it is then cancelled, and waited for).
    :raises: what ``awaitable`` raises; :class:`asyncio.CancelledError` when
        the caller is cancelled (``awaitable`` is cancelled too, and waited for).
    """
    task = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait((task,), timeout=seconds)
    except BaseException:
        task.cancel()
        await asyncio.wait((task,))
        if not task.cancelled():
            task.exception()  # retrieved: the caller's cancellation is what counts
        raise
    if not done:
        task.cancel()
        await asyncio.wait((task,))  # a cancellation of ours still propagates here
        if task.cancelled():
            return False, None
    return True, task.result()
