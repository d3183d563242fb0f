"""VeoTask: an awaitable handle on one Kie task.

A handle owns at most one *poll loop* (an asyncio task that polls record-info
on the :class:`~veo_async.PollPolicy` schedule and publishes each record).
Every waiter - ``await task``, ``task.wait()``, ``task.watch()``, a batch -
*follows* that loop instead of polling itself, so fifty awaiters of one id
cost one request per poll. Each follower keeps its own deadline; when the last
one leaves (done, timed out or cancelled), the loop is cancelled with it, so
nothing keeps polling for nobody.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, NoReturn

from .errors import RecordNotFoundError, TaskFailedError, VeoError, WaitTimeoutError
from .models import RecordInfo, TaskStatus
from .policy import POLICY_TIMEOUT, PollPolicy, TimeoutArg

if TYPE_CHECKING:
    from .session import VeoSession

__all__ = ["MAX_TASK_ID_LENGTH", "VeoTask", "validate_task_id"]

logger = logging.getLogger("veo_async")

#: Real ids are ~40 characters; anything this long is a bug upstream of us.
MAX_TASK_ID_LENGTH = 256

UpdateCallback = Callable[[RecordInfo], "Awaitable[Any] | Any"]


def validate_task_id(task_id: object) -> str:
    """Return ``task_id`` if it is a plausible Kie task id, else raise.

    :raises ValueError: (``TypeError`` for a non-string) naming the problem.
    """
    if not isinstance(task_id, str):
        raise TypeError(f"a task id must be a str, not {type(task_id).__name__}")
    if not task_id:
        raise ValueError("a task id must not be empty")
    if task_id != task_id.strip():
        raise ValueError(f"task id {task_id!r} has surrounding whitespace")
    if len(task_id) > MAX_TASK_ID_LENGTH:
        raise ValueError(f"task id is {len(task_id)} characters long (max {MAX_TASK_ID_LENGTH})")
    if not task_id.isprintable():
        raise ValueError(f"task id {task_id!r} contains control characters")
    return task_id


class _PollRun:
    """One run of a handle's poll loop and how many followers it has."""

    __slots__ = ("followers", "task")

    def __init__(self, task: asyncio.Task[RecordInfo]) -> None:
        #: The loop itself: returns the terminal record or raises what ended it.
        self.task = task
        self.followers = 0


#: One constant name (not one string per id) for every poll loop task.
_POLL_TASK_NAME = "veo_async poll"


class VeoTask:
    """The handle of one task. Get it from :meth:`VeoSession.task`; no I/O.

    ``await task`` is ``await task.wait()`` with the session's policy.

    :ivar task_id: the task id.
    """

    __slots__ = (
        "__weakref__",
        "_changed",
        "_error",
        "_last_failure",
        "_record",
        "_run",
        "_session",
        "task_id",
    )

    def __init__(self, session: VeoSession, task_id: str) -> None:
        self._session = session
        self.task_id = task_id
        self._record: RecordInfo | None = None
        self._error: BaseException | None = None
        # The retryable error of the latest poll, while polls keep failing:
        # a timeout then says why nothing was seen.
        self._last_failure: VeoError | None = None
        self._run: _PollRun | None = None
        # Resolved (and dropped) whenever the record's status changes or a run
        # ends; followers sleep on it instead of on a timer per poll.
        self._changed: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        status = self.status.name if self.status is not None else "unknown"
        return f"<VeoTask {self.task_id!r} {status}>"

    @property
    def record(self) -> RecordInfo | None:
        """The last record seen, or None before the first poll."""
        return self._record

    @property
    def status(self) -> TaskStatus | None:
        """The last status seen, or None before the first poll."""
        return self._record.status if self._record is not None else None

    @property
    def error(self) -> BaseException | None:
        """What ended the last wait without success (a :class:`VeoError`), or None."""
        return self._error

    def done(self) -> bool:
        """True once the task reached a terminal status (no more polling needed)."""
        return self._record is not None and self._record.is_done

    def result(self) -> RecordInfo:
        """The outcome so far, without I/O (like :meth:`asyncio.Future.result`).

        :returns: the SUCCESS record.
        :raises TaskFailedError: the task failed.
        :raises VeoError: the error that ended the last wait (e.g. a timeout).
        :raises asyncio.InvalidStateError: no outcome yet.
        """
        if self._record is not None and self._record.is_done:
            return _outcome(self._record)
        if self._error is not None:
            raise self._error
        raise asyncio.InvalidStateError(f"task {self.task_id!r} has no outcome yet")

    async def refresh(self) -> RecordInfo:
        """Poll once (no retry) and return the record; followers see it too."""
        loop = asyncio.get_running_loop()
        record = await self._session._fetch_record(self.task_id, due=loop.time())
        self._publish(record)
        return record

    async def wait(
        self,
        timeout: TimeoutArg = POLICY_TIMEOUT,
        *,
        policy: PollPolicy | None = None,
        on_update: UpdateCallback | None = None,
    ) -> RecordInfo:
        """Poll until the task leaves GENERATING; return the SUCCESS record.

        Transient errors (5xx, 455, 429, resets, timeouts, unreadable bodies)
        are retried on the policy's schedule until the deadline; permanent ones
        (401, 402, 404, 400, ...) end the wait at once.

        :param timeout: seconds, None for no deadline, default the policy's.
        :param policy: the schedule if this wait starts the handle's poll loop
            (an already running loop keeps its own); default the session's.
        :param on_update: called with the first record seen and every status
            change after it; may be a coroutine function.
        :raises TaskFailedError: the task ended FAILED or GENERATION_FAILED.
        :raises WaitTimeoutError: the deadline passed (carries the last record).
        :raises APIError: a permanent error from the service.
        :raises ValueError: for a bad timeout or policy, before any request.
        """
        if on_update is not None and not callable(on_update):
            raise TypeError("on_update must be callable")
        limit, chosen = self._session._wait_settings(timeout, policy)
        if on_update is not None:
            return await self._wait_reporting(limit, chosen, on_update)
        record = self._record
        if record is not None and record.is_done:
            return self._finish(record)  # terminal: answer from memory, no request
        # The plain wait sleeps on the poll loop's own task: no generator and
        # no change notifications.
        run = self._join(chosen)
        try:
            await asyncio.wait((run.task,), timeout=limit)
            return self._outcome_of(run, limit)
        finally:
            await self._leave(run)

    async def _wait_reporting(
        self, limit: float | None, policy: PollPolicy, on_update: UpdateCallback
    ) -> RecordInfo:
        record: RecordInfo | None = None
        updates = self._status_changes(limit, policy)
        async with aclosing(updates):
            async for record in updates:
                result = on_update(record)
                if inspect.isawaitable(result):
                    await result
        assert record is not None  # _status_changes ends only after a terminal record
        return self._finish(record)

    def __await__(self) -> Generator[Any, None, RecordInfo]:
        return self.wait().__await__()

    def watch(
        self, *, timeout: TimeoutArg = POLICY_TIMEOUT, policy: PollPolicy | None = None
    ) -> AsyncGenerator[RecordInfo, None]:
        """Yield the current record and then each status change, until terminal.

        A failed task ends the iteration with its FAILED record (no exception);
        the deadline raises :class:`WaitTimeoutError`. Arguments are checked
        here, before iteration starts. Close it early with
        ``contextlib.aclosing`` to stop polling at once.
        """
        limit, chosen = self._session._wait_settings(timeout, policy)
        return self._status_changes(limit, chosen)

    def _finish(self, record: RecordInfo) -> RecordInfo:
        """The outcome of a terminal record, remembered for :meth:`result`."""
        try:
            outcome = _outcome(record)
        except TaskFailedError as exc:
            self._error = exc
            raise
        self._error = None
        return outcome

    async def _status_changes(
        self, limit: float | None, policy: PollPolicy
    ) -> AsyncGenerator[RecordInfo, None]:
        record = self._record
        if record is not None and record.is_done:
            yield record  # terminal: answer from memory, no request
            return
        loop = asyncio.get_running_loop()
        deadline = None if limit is None else loop.time() + limit
        run = self._join(policy)
        last: TaskStatus | None = None
        try:
            while True:
                record = self._record
                if record is not None and record.status is not last:
                    last = record.status
                    yield record
                    if record.is_done:
                        return
                if run.task.done():
                    self._settle(run)  # the loop ended without a terminal record: raises why
                if self._changed is None:
                    self._changed = loop.create_future()
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    self._raise_timeout(limit)
                done, _ = await asyncio.wait((self._changed,), timeout=remaining)
                if not done:
                    self._raise_timeout(limit)
        finally:
            await self._leave(run)

    def _raise_timeout(self, limit: float | None) -> NoReturn:
        error = WaitTimeoutError(self.task_id, limit or 0.0, self._record, self._last_failure)
        self._error = error
        logger.debug("wait for task %s timed out after %ss", self.task_id, limit)
        raise error

    def _join(self, policy: PollPolicy) -> _PollRun:
        run = self._run
        if run is None:
            loop = asyncio.get_running_loop()
            run = _PollRun(loop.create_task(self._poll(policy), name=_POLL_TASK_NAME))
            self._run = run
        run.followers += 1
        return run

    def _settle(self, run: _PollRun) -> RecordInfo:
        """What a finished poll loop ended with: its terminal record, or raise why not."""
        if run.task.cancelled():
            # Only the session's aclose() cancels a loop that still has followers.
            raise RuntimeError("the VeoSession was closed while waiting")
        error = run.task.exception()
        if error is not None:
            self._error = error
            raise error
        return run.task.result()

    def _outcome_of(self, run: _PollRun, limit: float | None) -> RecordInfo:
        """Once a follower stops waiting on ``run``: the SUCCESS record, or raise
        what ended the wait (a failure, the loop's error, or the deadline)."""
        record = self._record
        if record is not None and record.is_done:
            return self._finish(record)
        if not run.task.done():
            self._raise_timeout(limit)
        return self._finish(self._settle(run))

    def _release(self, run: _PollRun) -> asyncio.Task[RecordInfo] | None:
        """Detach a follower; if it was the last, cancel the loop and return it."""
        run.followers -= 1
        if run.followers > 0:
            return None
        if run.task.done():
            if not run.task.cancelled():
                # The last follower may have left without reading it (an early
                # aclose()): mark it read, or asyncio reports it as lost.
                run.task.exception()
            return None
        # Nobody is waiting any more: stop polling for nobody.
        if self._run is run:
            self._run = None
        run.task.cancel()
        return run.task

    async def _leave(self, run: _PollRun) -> None:
        """Detach a follower and, if the loop was stopped, wait until it has ended."""
        stopped = self._release(run)
        if stopped is not None:
            await asyncio.wait((stopped,))

    def _cancel_loop(self) -> asyncio.Task[RecordInfo] | None:
        """Cancel the poll loop for good (the session is closing) and return it.

        Its followers then end with a RuntimeError (see :meth:`_settle`).
        """
        run = self._run
        if run is None or run.task.done():
            return None
        run.task.cancel()
        # A loop cancelled before its first step never runs the finally that
        # wakes followers: watchers sleeping on _changed would wait forever.
        run.task.add_done_callback(self._wake_followers)
        return run.task

    def _publish(self, record: RecordInfo) -> None:
        previous = self._record
        self._record = record
        if previous is None or previous.status is not record.status:
            self._wake_followers()

    def _wake_followers(self, _done: object = None) -> None:
        changed, self._changed = self._changed, None
        if changed is not None and not changed.done():
            changed.set_result(None)

    async def _poll(self, policy: PollPolicy) -> RecordInfo:
        """The poll loop: returns the terminal record, or raises what ended it."""
        loop = asyncio.get_running_loop()
        not_found_since: float | None = None
        try:
            attempt = 0
            for delay in policy.delays():
                attempt += 1
                try:
                    # No sleep here: the request waits in the session's limiter
                    # until it is due (one heap entry instead of a timer each).
                    record = await self._session._fetch_record(
                        self.task_id, due=loop.time() + delay, previous=self._record
                    )
                except RecordNotFoundError as exc:
                    self._last_failure = exc
                    # The grace window opens at the first "not visible" answer,
                    # not at the start of the wait: in a big batch the first
                    # poll may leave long after the wait began.
                    if not_found_since is None:
                        not_found_since = loop.time()
                    if loop.time() - not_found_since >= policy.not_found_grace:
                        raise
                    logger.debug("task %s not visible yet (poll %d)", self.task_id, attempt)
                    continue
                except VeoError as exc:
                    if not exc.retryable:
                        raise
                    self._last_failure = exc
                    logger.debug(
                        "task %s poll %d failed, will retry: %r", self.task_id, attempt, exc
                    )
                    continue
                logger.debug("task %s poll %d: %s", self.task_id, attempt, record.status.name)
                self._last_failure = None
                self._publish(record)
                if record.is_done:
                    return record
            raise AssertionError("PollPolicy.delays() ended")  # pragma: no cover - endless
        except Exception as exc:  # CancelledError is a BaseException: it propagates
            logger.debug("wait for task %s ended: %r", self.task_id, exc)
            raise
        finally:
            run = self._run
            if run is not None and run.task is asyncio.current_task():
                self._run = None
            self._wake_followers()


def _outcome(record: RecordInfo) -> RecordInfo:
    if record.status is TaskStatus.SUCCESS:
        return record
    raise TaskFailedError(record)
