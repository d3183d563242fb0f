"""Letting go of many objects over event-loop steps instead of in one.

When a batch of 100,000 ids ends, or the request queue drops the entries of
the runs it let go of, the last references to tens of thousands of objects
(handles with their records, poll runs with their plans) go at once: freeing
them all in one step took 60-185 ms. :func:`release_over_steps` holds them
and drops a slice per loop step instead, with no task (nothing to await or
to leave behind).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

__all__ = ["release_over_steps"]


def release_over_steps(
    items: list[Any], per_step: int, then: Callable[[], None] | None = None
) -> None:
    """Take over ``items`` and drop ``per_step`` of them per loop step, from the
    next step on; at once when they are that few, or when no loop runs.

    :param then: called once they are all dropped, on a later loop step (not
        when no loop runs).
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return  # freed now, with the list
    if len(items) <= per_step:
        if then is not None:
            loop.call_soon(then)  # by then freed with the caller's list
        return
    loop.call_soon(_drop_slice, loop, items, per_step, then)


def _drop_slice(
    loop: asyncio.AbstractEventLoop,
    items: list[Any],
    per_step: int,
    then: Callable[[], None] | None,
) -> None:
    del items[-per_step:]
    if items:
        loop.call_soon(_drop_slice, loop, items, per_step, then)
    elif then is not None:
        then()
