"""Waiting on many tasks at once: :func:`wait_many` and :func:`as_completed`.

Both track every id at the same time (one handle and one poll loop per
distinct id); the session's :class:`~veo_async._limits.RequestLimiter`, not
the batch, bounds how many requests are in flight. Repeated ids share a handle
yet every position gets its outcome, and nothing is ever dropped: the result
has exactly one entry per id given.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections import Counter, deque
from collections.abc import AsyncGenerator, Iterable
from typing import TYPE_CHECKING, Any

from .models import RecordInfo, TaskStatus
from .policy import PollPolicy, TimeoutArg
from .task import VeoTask, _PollRun, validate_task_id

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
) -> tuple[list[str], dict[str, VeoTask], PollPolicy, float | None]:
    """Validate everything a batch was given, before any request.

    :returns: the ids, one handle per distinct id, the policy and the timeout.
    """
    ids = _validated_ids(task_ids)
    limit, chosen = session._wait_settings(timeout, policy)
    return ids, {task_id: session.task(task_id) for task_id in ids}, chosen, limit


class _Followed:
    """The handles of a batch and the poll loops it follows.

    A batch follows each handle's poll loop directly (as a plain
    :meth:`VeoTask.wait` does) instead of running one wait task per id: at
    100,000 ids, a task, a coroutine frame and a timer per id would cost more
    than everything else a tracked id needs.
    """

    __slots__ = ("handles", "limit", "runs")

    def __init__(self, handles: dict[str, VeoTask], policy: PollPolicy, limit: float | None):
        self.handles = handles
        self.limit = limit
        # Handles already terminal need no loop: they answer from their record.
        self.runs: dict[str, _PollRun] = {
            task_id: handle._join(policy)
            for task_id, handle in handles.items()
            if not handle.done()
        }

    def loops(self) -> list[asyncio.Task[RecordInfo]]:
        return [run.task for run in self.runs.values()]

    def outcome(self, task_id: str) -> BatchOutcome:
        """The outcome of one id now: its record, or the exception that ends its wait."""
        handle = self.handles[task_id]
        run = self.runs.get(task_id)
        try:
            if run is None:
                return handle.result()
            return handle._outcome_of(run, self.limit)
        except Exception as exc:  # the outcome *is* the exception (VeoError, or a bug)
            return exc

    async def leave(self) -> None:
        """Detach from every loop; wait until the ones nobody else follows have ended."""
        stopped = [
            loop_task
            for task_id, run in self.runs.items()
            if (loop_task := self.handles[task_id]._release(run)) is not None
        ]
        self.runs = {}
        if stopped:
            await asyncio.wait(stopped)


def _is_failure(loop_task: asyncio.Task[RecordInfo]) -> bool:
    if loop_task.cancelled() or loop_task.exception() is not None:
        return True
    return loop_task.result().status is not TaskStatus.SUCCESS


_Loop = asyncio.Task[RecordInfo]


def _first_failure(loops: list[_Loop]) -> asyncio.Future[_Loop]:
    """A future resolved with the first loop to end in a failure."""
    first: asyncio.Future[_Loop] = asyncio.get_running_loop().create_future()

    def check(loop_task: _Loop) -> None:
        if not first.done() and _is_failure(loop_task):
            first.set_result(loop_task)

    # One shared callback and context, not one per loop: at 100,000 ids each
    # copy is 100,000 more objects for the garbage collector to walk.
    context = contextvars.copy_context()
    for loop_task in loops:
        loop_task.add_done_callback(check, context=context)
    return first


async def wait_many(
    session: VeoSession,
    task_ids: Iterable[str],
    *,
    timeout: TimeoutArg,
    policy: PollPolicy | None = None,
    return_exceptions: bool = False,
) -> list[BatchOutcome]:
    """Wait for every task; one outcome per id given, in input order.

    Built on :func:`asyncio.gather` over the handles' poll loops (the same
    loops :meth:`VeoTask.wait` follows, shared with any other waiter), with one
    deadline for the whole batch.

    :param timeout: the batch's deadline (seconds, None, or the policy's); a
        task not finished by then has a :class:`WaitTimeoutError` outcome.
    :param return_exceptions: True: a failed position holds its exception
        (:class:`TaskFailedError`, :class:`WaitTimeoutError`, an API error).
        False: the first failure is raised (the first to happen; at the
        deadline, the first unfinished id in input order), and every poll loop
        only this batch was following is stopped - and has ended - before it
        propagates.
    :raises TypeError: (or ValueError) for ids that are not an iterable of
        valid ids, before any request.
    """
    ids, handles, chosen, limit = _handles(session, task_ids, timeout, policy)
    followed = _Followed(handles, chosen, limit)
    runs = dict(followed.runs)
    try:
        loops = followed.loops()
        # return_exceptions=True: the gather never raises; each id's outcome
        # is read from its handle below.
        stop_when: set[asyncio.Future[Any]] = {asyncio.gather(*loops, return_exceptions=True)}
        first_failure = _first_failure(loops)
        if not return_exceptions:
            stop_when.add(first_failure)
        already_failed = not return_exceptions and any(
            handle.done() and handle.status is not TaskStatus.SUCCESS
            for handle in handles.values()
        )
        if loops and not already_failed:
            await asyncio.wait(stop_when, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
        outcomes = {task_id: followed.outcome(task_id) for task_id in handles}
    finally:
        # Also on our own cancellation: no poll loop outlives its last follower.
        await followed.leave()
    if not return_exceptions:
        if first_failure.done() and not first_failure.cancelled():
            failed_loop = first_failure.result()
            failed = next(
                outcomes[task_id] for task_id, run in runs.items() if run.task is failed_loop
            )
            assert isinstance(failed, BaseException)
            raise failed
        first_failure.cancel()
        for task_id in ids:
            outcome = outcomes[task_id]
            if isinstance(outcome, BaseException):
                raise outcome
    return [outcomes[task_id] for task_id in ids]


def as_completed(
    session: VeoSession,
    task_ids: Iterable[str],
    *,
    timeout: TimeoutArg,
    policy: PollPolicy | None = None,
) -> AsyncGenerator[VeoTask, None]:
    """Yield each task's handle as soon as it reaches an outcome, in completion order.

    An id given n times is yielded n times. Read each outcome without I/O
    with :meth:`VeoTask.result` (returns the record or raises the error; at
    the deadline, the unfinished ones are yielded with a
    :class:`WaitTimeoutError`). Leaving the loop early stops the polling
    that only this iterator wanted; wrap it in ``contextlib.aclosing`` to have
    that happen at once rather than when the iterator is garbage-collected.

    :raises TypeError: (or ValueError) for bad input, here, before iterating.
    """
    ids, handles, chosen, limit = _handles(session, task_ids, timeout, policy)
    return _completion_order(Counter(ids), handles, chosen, limit)


async def _completion_order(
    counts: Counter[str], handles: dict[str, VeoTask], policy: PollPolicy, limit: float | None
) -> AsyncGenerator[VeoTask, None]:
    # Polling starts with the iteration, not with the call: an iterator that
    # is never iterated must not leave loops polling for nobody.
    followed = _Followed(handles, policy, limit)
    loop = asyncio.get_running_loop()
    deadline = None if followed.limit is None else loop.time() + followed.limit
    ready: deque[str] = deque(i for i in followed.handles if i not in followed.runs)
    wake: list[asyncio.Future[None]] = []

    def on_done(task_id: str, _loop_task: asyncio.Task[RecordInfo]) -> None:
        ready.append(task_id)
        if wake and not wake[0].done():
            wake[0].set_result(None)

    try:
        for task_id, run in followed.runs.items():
            run.task.add_done_callback(functools.partial(on_done, task_id))
        unfinished = set(followed.runs)
        for _ in range(len(followed.handles)):
            if not ready:
                wake[:] = [loop.create_future()]
                remaining = None if deadline is None else max(0.0, deadline - loop.time())
                done, _ = await asyncio.wait(wake, timeout=remaining)
                if not done:  # the deadline: every unfinished id times out now
                    ready.extend(unfinished)
            task_id = ready.popleft()
            unfinished.discard(task_id)
            followed.outcome(task_id)  # settles the handle's result() / error
            for _ in range(counts[task_id]):
                yield followed.handles[task_id]
    finally:
        await followed.leave()
