"""Waiting on many tasks at once: :func:`wait_many` and :func:`as_completed`.

Both track every id at the same time (one handle and one poll loop per
distinct id); the session's :class:`~veo_async._limits.RequestLimiter`, not
the batch, bounds how many requests are in flight. Repeated ids share a handle
yet every position gets its outcome, and nothing is ever dropped: the result
has exactly one entry per id given.
"""

from __future__ import annotations

import asyncio
import functools
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING

from .models import RecordInfo
from .policy import PollPolicy, TimeoutArg, resolve_timeout
from .task import VeoTask, validate_task_id

if TYPE_CHECKING:
    from .session import VeoSession

__all__ = ["BatchOutcome", "as_completed", "wait_many"]

#: One position of :func:`wait_many`'s result: the SUCCESS record, or (with
#: ``return_exceptions=True``) the exception that ended that task's wait.
BatchOutcome = RecordInfo | BaseException


def _validated_ids(task_ids: Iterable[str]) -> list[str]:
    """All ids as a list, each checked, before any request is made."""
    if isinstance(task_ids, (str, bytes)):
        raise TypeError("task_ids must be an iterable of ids, not a single string")
    try:
        ids = list(task_ids)
    except TypeError:
        raise TypeError(
            f"task_ids must be an iterable of ids, not {type(task_ids).__name__}"
        ) from None
    for position, task_id in enumerate(ids):
        try:
            validate_task_id(task_id)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"task_ids[{position}]: {exc}") from None
    return ids


def _handles(
    session: VeoSession, task_ids: Iterable[str], timeout: TimeoutArg, policy: PollPolicy | None
) -> tuple[list[str], dict[str, VeoTask]]:
    """Validate everything a batch was given; the ids and one handle per distinct id."""
    ids = _validated_ids(task_ids)
    if policy is not None and not isinstance(policy, PollPolicy):
        raise TypeError(f"policy must be a PollPolicy, not {type(policy).__name__}")
    resolve_timeout(timeout, policy if policy is not None else session.policy)
    session._check_open()
    return ids, {task_id: session.task(task_id) for task_id in ids}


def _start_wait(
    loop: asyncio.AbstractEventLoop,
    handle: VeoTask,
    timeout: TimeoutArg,
    policy: PollPolicy | None,
) -> asyncio.Task[RecordInfo]:
    return loop.create_task(
        handle.wait(timeout, policy=policy), name=f"veo_async wait {handle.task_id}"
    )


async def _cancel_all(children: list[asyncio.Task[RecordInfo]]) -> None:
    """Cancel the waits still running and wait until each has cleaned up."""
    pending = [child for child in children if not child.done()]
    for child in pending:
        child.cancel()
    if pending:
        await asyncio.wait(pending)


async def wait_many(
    session: VeoSession,
    task_ids: Iterable[str],
    *,
    timeout: TimeoutArg,
    policy: PollPolicy | None = None,
    return_exceptions: bool = False,
) -> list[BatchOutcome]:
    """Wait for every task; one outcome per id given, in input order.

    Built on :func:`asyncio.gather` over the handles' :meth:`VeoTask.wait`.

    :param timeout: each task's deadline (seconds, None, or the policy's).
    :param return_exceptions: True: a failed position holds its exception
        (:class:`TaskFailedError`, :class:`WaitTimeoutError`, an API error).
        False: the first failure is raised, and every wait still running is
        cancelled - and has finished cleaning up - before it propagates.
    :raises TypeError: (or ValueError) for ids that are not an iterable of
        valid ids, before any request.
    """
    ids, handles = _handles(session, task_ids, timeout, policy)
    if not ids:
        return []
    loop = asyncio.get_running_loop()
    children = [_start_wait(loop, h, timeout, policy) for h in handles.values()]
    try:
        outcomes = await asyncio.gather(*children, return_exceptions=return_exceptions)
    except BaseException:
        # Also on our own cancellation: no wait (or its requests) outlives us.
        await _cancel_all(children)
        raise
    by_id: dict[str, BatchOutcome] = dict(zip(handles, outcomes, strict=True))
    return [by_id[task_id] for task_id in ids]


def as_completed(
    session: VeoSession,
    task_ids: Iterable[str],
    *,
    timeout: TimeoutArg,
    policy: PollPolicy | None = None,
) -> AsyncIterator[VeoTask]:
    """Yield each task's handle as soon as its wait ends, in completion order.

    An id given n times is yielded n times. Read each outcome without I/O
    with :meth:`VeoTask.result` (returns the record or raises the error).
    Leaving the loop early cancels the waits still running; wrap the iterator
    in ``contextlib.aclosing`` to have that happen at once rather than when
    the iterator is garbage-collected.

    :raises TypeError: (or ValueError) for bad input, here, before iterating.
    """
    ids, handles = _handles(session, task_ids, timeout, policy)
    return _completion_order(Counter(ids), handles, timeout, policy)


async def _completion_order(
    counts: Counter[str],
    handles: dict[str, VeoTask],
    timeout: TimeoutArg,
    policy: PollPolicy | None,
) -> AsyncIterator[VeoTask]:
    loop = asyncio.get_running_loop()
    finished: asyncio.Queue[VeoTask] = asyncio.Queue()

    def on_done(handle: VeoTask, child: asyncio.Task[RecordInfo]) -> None:
        """Queue the handle once its wait ends, however it ends."""
        if not child.cancelled():
            child.exception()  # kept on the handle (handle.error); mark it retrieved
        finished.put_nowait(handle)

    children: list[asyncio.Task[RecordInfo]] = []
    for handle in handles.values():
        child = _start_wait(loop, handle, timeout, policy)
        child.add_done_callback(functools.partial(on_done, handle))
        children.append(child)
    try:
        for _ in range(len(children)):
            handle = await finished.get()
            for _ in range(counts[handle.task_id]):
                yield handle
    finally:
        await _cancel_all(children)
