"""Group commit for a task store: one queue of writes, one task that writes them.

Every store of this package writes through a :class:`GroupWriter`:

- **Durable writes** arrive as :class:`Op` (``writer.submit(kind, *args)``);
  the caller's await resolves only once the batch holding it was written.
- **Write-behind** changes are coalesced per task in memory (one
  :class:`Pending` each, via :meth:`GroupWriter.change`) and written with the
  next batch: at the latest ``flush_interval`` seconds later, at once when
  ``batch_size`` tasks are pending, and on :meth:`GroupWriter.flush` and
  :meth:`GroupWriter.close`.
- One task drains the queue, so 10,000 concurrent ``ack()`` calls cost a
  handful of batches, not 10,000 round trips; each batch is handed to the
  store's own ``apply`` (a transaction, a pipeline), which returns one result
  per op.

What a batch means on disk, and how an error is named, is the store's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .._timeouts import within
from ..errors import StoreCorruptError, StoreError

__all__ = ["Apply", "GroupWriter", "Op", "Pending"]

#: Seconds the writer waits after a failed batch before it tries again (at
#: least its flush interval), unless a durable write comes.
_RETRY_AFTER = 0.5
#: Failed batches after which a task's write-behind changes are given up.
_MOST_FAILURES = 5

logger = logging.getLogger("veo_async")


class Pending:
    """The write-behind changes of one task not yet written (latest wins)."""

    __slots__ = ("delivered_at", "deliveries", "failures", "seen_at", "terminal", "terminal_at")

    def __init__(self) -> None:
        self.seen_at: float | None = None
        self.terminal: str | None = None
        self.terminal_at: float | None = None
        self.delivered_at: float | None = None
        self.deliveries = 0
        #: Batches that failed with these changes in them (see GroupWriter._requeue).
        self.failures = 0

    def saw(self, at: float) -> None:
        """A poll saw the task at *at* (the first time counts)."""
        if self.seen_at is None or at < self.seen_at:
            self.seen_at = at

    def ended(self, text: str, at: float) -> None:
        """The task's terminal record (JSON text), reached at *at* (the first time counts)."""
        self.terminal = text
        if self.terminal_at is None:
            self.terminal_at = at

    def delivered(self, at: float) -> None:
        """The finished task was handed to the user at *at*."""
        self.delivered_at = at
        self.deliveries += 1

    def absorb_older(self, older: Pending) -> None:
        """Take in changes noted before these (a batch that failed, to retry;
        its deliveries are not taken: see GroupWriter._requeue)."""
        if older.seen_at is not None:
            self.saw(older.seen_at)
        if older.terminal is not None:
            if self.terminal is None:
                self.terminal = older.terminal
            self.terminal_at = older.terminal_at  # the first time counts
        self.failures = max(self.failures, older.failures)


class Op:
    """One durable write waiting for the writer: what to do and who waits.

    :ivar kind: ``intent``, ``attach``, ``reconcile``, ``discard``, ``track``,
        ``ack``, ``forget`` or ``purge``.
    """

    __slots__ = ("args", "future", "kind")

    def __init__(self, kind: str, args: tuple[Any, ...], future: asyncio.Future[Any]) -> None:
        self.kind = kind
        self.args = args
        self.future = future


#: A store's writing of one batch: ``(ops, pending)`` to one result per op
#: (its value, or the exception its caller should get); raises when the whole
#: batch failed (then nothing of it was written).
Apply = Callable[[list[Op], dict[str, Pending]], Awaitable[list[object]]]


class GroupWriter:
    """The write queue of one store, and the task that drains it.

    :param apply: writes one batch (see :data:`Apply`).
    :param failure: names an error *apply* raised as the :class:`StoreError`
        its callers get.
    :param where: the store's location, for messages (a path, a Redis URL
        without its password).
    :param flush_interval: the longest a write-behind change waits, in seconds.
    :param batch_size: write-behind changes for this many distinct tasks are
        written at once, without waiting for the interval.
    """

    def __init__(
        self,
        apply: Apply,
        failure: Callable[[Exception], StoreError],
        *,
        where: str,
        flush_interval: float,
        batch_size: int,
    ) -> None:
        self._apply = apply
        self._failure = failure
        self._where = where
        self._flush_interval = flush_interval
        self._batch_size = batch_size
        self._task: asyncio.Task[None] | None = None
        # _wake: there is work; _urgent: write it now (else wait flush_interval).
        self._wake = asyncio.Event()
        self._urgent = asyncio.Event()
        self._closing = False
        self._writing = False
        self._ops: list[Op] = []
        self._pending: dict[str, Pending] = {}
        self._flush_waiters: list[asyncio.Future[None]] = []
        self._lost: StoreError | None = None
        # The error of the last batch that failed with write-behind changes.
        self._last_failure: StoreError | None = None

    def start(self, name: str) -> None:
        """Start the writing task (once the store is open)."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name=name)

    # -- what callers hand over ---------------------------------------------------

    async def submit(self, kind: str, *args: Any) -> Any:
        """Queue one durable write; its result once the batch holding it was written."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._ops.append(Op(kind, args, future))
        self._write_now()
        # If the caller is cancelled now, the write still happens: the writer
        # owns it (an intent is better recorded needlessly than lost).
        return await future

    def change(self, task_id: str) -> Pending:
        """The pending write-behind changes of *task_id* (made on first use);
        call :meth:`noted` once the changes are made."""
        change = self._pending.get(task_id)
        if change is None:
            change = self._pending[task_id] = Pending()
        return change

    def noted(self) -> None:
        """Write-behind changes were noted: wake the writer (at once for a full batch)."""
        pending = self._pending
        if len(pending) >= self._batch_size:
            self._write_now()
        elif pending:
            self._wake.set()

    async def flush(self) -> None:
        """Write everything handed over so far.

        :raises StoreError: when a write-behind batch failed since the last flush.
        """
        if self._ops or self._pending or self._writing:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._flush_waiters.append(future)
            self._write_now()
            await future
        lost, self._lost = self._lost, None
        if lost is not None:
            raise lost

    async def close(self) -> StoreError | None:
        """Write everything pending, then stop the task.

        Cancelling this close does not stop the writer in the middle of a
        batch: it finishes what it holds (its callers get their answers)
        first. Whatever is left unwritten then fails its callers.

        :returns: the error of a write-behind batch lost since the last flush.
        """
        self._closing = True
        self._write_now()
        writer = self._task
        assert writer is not None  # started by the store's open()
        try:
            try:
                await asyncio.shield(writer)
            except asyncio.CancelledError:
                await asyncio.wait((writer,))
                raise
        finally:
            # Reached also when cancelled (twice): stop it before the store
            # lets its connection go.
            if not writer.done():
                writer.cancel()  # its callers hear so (see _write_batch)
                await asyncio.wait((writer,))
            self._fail_waiting(StoreError(f"task store {self._where} closed", path=self._where))
        lost, self._lost = self._lost, None
        return lost

    # -- the writer -------------------------------------------------------------------

    def _write_now(self) -> None:
        self._urgent.set()
        self._wake.set()

    def _has_work(self) -> bool:
        return bool(self._ops or self._pending or self._flush_waiters)

    async def _run(self) -> None:
        while True:
            if not self._has_work():
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            if not self._urgent.is_set():
                # Only write-behind changes: let more join this batch.
                await within(self._urgent.wait(), self._flush_interval)
            self._urgent.clear()
            self._writing = True
            try:
                written = await self._write_batch()
            finally:
                self._writing = False
            if not written:
                if self._closing:
                    return  # what is left fails its callers (see close)
                # Its write-behind changes are queued again: wait a moment
                # before the next try (unless a durable write asks for one),
                # rather than fail again at once, batch after batch.
                await within(self._urgent.wait(), max(self._flush_interval, _RETRY_AFTER))

    async def _write_batch(self) -> bool:
        """Write what is queued; False when the batch failed (its write-behind
        changes are then queued again, its other callers told)."""
        ops, self._ops = self._ops, []
        pending, self._pending = self._pending, {}
        waiters, self._flush_waiters = self._flush_waiters, []
        results: list[object] = []
        try:
            if ops or pending:
                results = await self._apply(ops, pending)
        except asyncio.CancelledError:
            # Stopped mid-batch (a close given up on): its callers hear so
            # instead of waiting forever.
            error = StoreError(
                f"task store {self._where} closed while writing; not stored", path=self._where
            )
            if pending:
                self._lost = self._lost or error
            for future in [op.future for op in ops] + waiters:
                if not future.done():
                    future.set_exception(error)
            raise
        except Exception as exc:  # resolved into every waiter below, never lost
            error = self._failure(exc)
            if pending:
                # Not dropped: a terminal record lost here would leave its task
                # unfinished in the store, and a later ack of it would change
                # nothing (a server away for a moment must not cost that).
                self._last_failure = error
                given_up = self._requeue(pending, counted=isinstance(error, StoreCorruptError))
                if given_up:
                    logger.error(
                        "task store %s: %d task(s)' notes given up after %d failed writes: %s",
                        self._where,
                        given_up,
                        _MOST_FAILURES,
                        error,
                    )
                    if not waiters:  # else a flush() caller hears of it at once
                        self._lost = self._lost or error
            for future in [op.future for op in ops] + waiters:
                if not future.done():
                    future.set_exception(error)
            return False
        if pending:
            self._last_failure = None  # written: what failed before is past
        for op, result in zip(ops, results, strict=True):
            if op.future.done():
                continue
            if isinstance(result, Exception):
                op.future.set_exception(result)
            else:
                op.future.set_result(result)
        for future in waiters:
            if not future.done():
                future.set_result(None)
        return True

    def _requeue(self, older: dict[str, Pending], *, counted: bool) -> int:
        """Queue the changes of a failed batch again, under any noted since.

        What is idempotent goes again (a sighting, a terminal record); a count
        of deliveries does not: a batch that failed may still have been
        applied (a Redis answer that came too late), and a count counted
        twice would be wrong where one counted once too few is allowed (the
        contract's write-behind).

        :param counted: the batch failed over what it holds (the store found
            something it cannot write: StoreCorruptError), not over the way
            to the store (an outage, a timeout, a lock: retried for as long
            as the store is open). A change in :data:`_MOST_FAILURES` such
            batches is given up, so that it does not fail every later one.
        :returns: how many tasks' changes were given up.
        """
        pending = self._pending
        given_up = 0
        for task_id, change in older.items():
            change.failures += counted
            change.deliveries = 0
            change.delivered_at = None
            if change.failures >= _MOST_FAILURES:
                given_up += 1
                continue
            if change.seen_at is None and change.terminal is None:
                continue  # only a delivery count: nothing left to write
            newer = pending.get(task_id)
            if newer is None:
                pending[task_id] = change
            else:
                newer.absorb_older(change)
        return given_up

    def _fail_waiting(self, error: StoreError) -> None:
        """Fail whatever a cancelled writer left behind, so no caller waits forever."""
        for future in [op.future for op in self._ops] + self._flush_waiters:
            if not future.done():
                future.set_exception(error)
        self._ops, self._flush_waiters = [], []
        if self._pending:
            # The reason the changes stayed unwritten, when a batch said it.
            self._lost = self._lost or self._last_failure or StoreError(
                f"task store {self._where} closed with {len(self._pending)} unwritten change(s)",
                path=self._where,
            )
            self._pending = {}
