"""Checking every task id a caller hands in, before any request.

Each id is checked by :func:`~veo_async.models.validate_task_id`, and an error
names its position (``task_ids[7]: ...``). At 100,000 ids a check takes
20-40 ms, more on a loaded machine: an async caller checks with
:func:`validated_ids_in_steps`, :data:`CHECK_SLICE` ids per event-loop step,
so it never holds the loop that long and still raises before its own first
request. :func:`validated_ids` checks at once, for callers that must raise
where they are called (``as_completed``, which returns an iterator). Both
return a :class:`CheckedIds`, which neither checks again: a session with a
store checks the ids once, before its write, and hands them on to the store
and the batch (each checked them again before: three checks).

Pure but for the loop steps: no I/O.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from .models import validate_task_id

__all__ = ["CHECK_SLICE", "CheckedIds", "validated_ids", "validated_ids_in_steps"]

#: Ids checked per event-loop step by :func:`validated_ids_in_steps` (a few ms).
CHECK_SLICE = 10_000


class CheckedIds(list[str]):
    """Ids this module has checked already (it does not check them again)."""

    __slots__ = ()


def _as_list(task_ids: Iterable[str]) -> CheckedIds:
    if isinstance(task_ids, (str, bytes)):
        raise TypeError("task_ids must be an iterable of ids, not a single string")
    try:
        ids = iter(task_ids)
    except TypeError:
        raise TypeError(
            f"task_ids must be an iterable of ids, not {type(task_ids).__name__}"
        ) from None
    # Outside the try: a generator's own TypeError ("row 2 has no task id")
    # is its error, not "not an iterable".
    return CheckedIds(ids)


def _check(ids: list[str], first: int, stop: int) -> None:
    for position in range(first, min(stop, len(ids))):
        try:
            validate_task_id(ids[position])
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"task_ids[{position}]: {exc}") from None


def validated_ids(task_ids: Iterable[str]) -> CheckedIds:
    """All ids as a list, each checked, at once.

    :raises TypeError: (or ValueError) naming the first bad id's position.
    """
    if type(task_ids) is CheckedIds:
        return task_ids
    ids = _as_list(task_ids)
    _check(ids, 0, len(ids))
    return ids


async def validated_ids_in_steps(task_ids: Iterable[str]) -> CheckedIds:
    """All ids as a list, each checked, :data:`CHECK_SLICE` per loop step.

    :raises TypeError: (or ValueError) naming the first bad id's position.
    """
    if type(task_ids) is CheckedIds:
        return task_ids
    ids = _as_list(task_ids)
    for first in range(0, len(ids), CHECK_SLICE):
        if first:
            await asyncio.sleep(0)
        _check(ids, first, first + CHECK_SLICE)
    return ids
