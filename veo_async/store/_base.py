"""What every store of this package shares: its life cycle, its argument
checks, and its writes through one :class:`~veo_async.store._writer.GroupWriter`.

A store here is a :class:`BatchedStore` plus what is its own: how it connects
(:meth:`BatchedStore._connect`, :meth:`BatchedStore._disconnect`), how it
writes one batch (:meth:`BatchedStore._apply`) and how it reads
(``_fetch_*``). The public methods - the :class:`~veo_async.store.TaskStore`
protocol - are written once, here, so that every store checks its arguments,
orders its writes and names its errors alike.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, TypeVar, get_args

from .._id_checks import validated_ids_in_steps
from ..errors import StoreCorruptError, StoreError
from ..models import RecordInfo
from ._checks import (
    check_batch_size,
    check_model,
    check_task_id,
    check_time,
    items_of,
    json_text,
    now_or,
    stored_record_text,
)
from ._contract import DEFAULT_RETENTION, TaskState
from ._values import StoredIntent, StoredTask, check_ref
from ._writer import GroupWriter, Op, Pending

__all__ = ["TASK_STATES", "BatchedStore", "without_damaged"]

logger = logging.getLogger("veo_async")

_Store = TypeVar("_Store", bound="BatchedStore")
_Row = TypeVar("_Row")
_Value = TypeVar("_Value")

#: The states :meth:`BatchedStore.list_tasks` filters on.
TASK_STATES = frozenset(get_args(TaskState))


def without_damaged(rows: Iterable[_Row], read: Callable[[_Row], _Value | None]) -> list[_Value]:
    """What *read* makes of each of *rows*, leaving out the rows gone meanwhile
    (None) and, with a warning, the damaged ones (:class:`StoreCorruptError`).

    For listings: one damaged row (a hand edit, bit rot) must not stop every
    other task from resuming or being delivered, as an unusable task id does
    not (see ``veo_async._durable``). A row asked for by name still raises.
    """
    kept = []
    for row in rows:
        try:
            value = read(row)
        except StoreCorruptError as exc:  # its message names the row, never its content
            logger.warning("%s; left out", exc)
            continue
        if value is not None:
            kept.append(value)
    return kept


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


# While a store stays open, rows past its retention are purged again after
# this many seconds (with the next write): once at open() let a worker that
# never restarts keep every task it ever acknowledged.
_PURGE_EVERY = 6 * 3600.0


class BatchedStore:
    """A :class:`~veo_async.store.TaskStore` whose writes are grouped into batches.

    :param where: the store's location, for messages and errors.
    :param retention: at :meth:`open`, and every six hours while open (with
        the next write), rows created more than this many seconds ago are
        purged; None keeps everything.
    :param flush_interval: the longest a write-behind change waits, in seconds.
    :param batch_size: a write-behind change for this many distinct tasks is
        written at once, without waiting for the interval.
    """

    def __init__(
        self,
        where: str,
        *,
        retention: float | None,
        flush_interval: float,
        batch_size: int,
    ) -> None:
        if retention is not None and check_time(retention, "retention", duration=True) <= 0:
            raise ValueError(f"retention must be positive or None, not {retention!r}")
        if check_time(flush_interval, "flush_interval", duration=True) < 0:
            raise ValueError(f"flush_interval must be >= 0, not {flush_interval!r}")
        self._where = where
        self._retention = retention
        # When rows were last purged (epoch seconds; see _submit).
        self._purged_at = 0.0
        self._state = _State.UNOPENED
        # Held while an open() connects: a second, concurrent open() waits
        # for it, then finds the store open (and does nothing).
        self._opening = asyncio.Lock()
        # Done when a close has ended: a second aclose() waits for it.
        self._closed: asyncio.Future[None] | None = None
        self._writer = GroupWriter(
            self._apply,
            self._failure,
            where=where,
            flush_interval=float(flush_interval),
            batch_size=check_batch_size(batch_size),
        )

    # -- what a store provides ----------------------------------------------------------

    async def _connect(self) -> None:
        """Connect, lock and check the store (raise StoreError if unusable)."""
        raise NotImplementedError

    async def _disconnect(self) -> None:
        """Let the connection (and any lock) go; called once, after the last write."""
        raise NotImplementedError

    async def _apply(self, ops: list[Op], pending: dict[str, Pending]) -> list[object]:
        """Write one batch: durable ops first (intents, task ids, tracked ids,
        discards, purges), then the write-behind changes, then the acks (an ack
        must find a terminal record written in this very batch), then the
        forgets (after the write-behind rows, which would bring a forgotten
        task back). One result per op; raise when nothing was written."""
        raise NotImplementedError

    def _failure(self, error: Exception) -> StoreError:
        """The StoreError a failed batch's callers get."""
        return StoreError(f"task store {self._where}: writing failed ({error!r})", path=self._where)

    async def _fetch_task(self, task_id: str) -> StoredTask | None:
        raise NotImplementedError

    async def _fetch_intent(self, ref: str) -> StoredIntent | None:
        raise NotImplementedError

    async def _fetch_tasks(self, state: str | None, limit: int | None) -> list[StoredTask]:
        """Tasks in *state* (all when None), oldest first (by creation, then id)."""
        raise NotImplementedError

    async def _fetch_uncertain(self) -> list[StoredIntent]:
        """Intents with no task id, oldest first (by creation, then ref)."""
        raise NotImplementedError

    async def _fetch_intents(self) -> list[StoredIntent]:
        """Every intent, oldest first (by creation, then ref)."""
        raise NotImplementedError

    # -- lifecycle --------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once :meth:`aclose` was called."""
        return self._state is _State.CLOSED

    def _state_name(self) -> str:
        return self._state.value

    async def open(self) -> None:
        """Connect, take the store's lock, create or check the schema, purge old rows.

        A second call does nothing; a closed store cannot be reopened (make a
        new one).

        :raises StoreLockedError: another process or store holds the store.
        :raises StoreCorruptError: the store is damaged or is not a task store.
        :raises StoreVersionError: written with another schema version.
        :raises StoreError: any other reason the store cannot be used.
        """
        async with self._opening:
            await self._open()

    async def _open(self) -> None:
        if self._state is _State.OPEN:
            return
        name = type(self).__name__
        if self._state is _State.CLOSED:
            raise RuntimeError(f"{self!r} is closed; make a new {name} to open it again")
        await self._connect()
        if self.closed:
            # Closed while this open awaited: the close found nothing to close,
            # so this connection (and the store's lock) must not be kept.
            await self._disconnect()
            raise RuntimeError(f"{self!r} was closed while it was being opened")
        self._state = _State.OPEN
        self._writer.start(f"veo_async store writer {self._where}")
        if self._retention is not None:
            try:
                await self._purge_past_retention(self._retention)
            except BaseException:
                await self.aclose()
                raise

    async def aclose(self) -> None:
        """Write everything pending, release the store, let the connection go.

        Idempotent. Raises the error of a write-behind batch that failed since
        the last :meth:`flush`, after closing.
        """
        if self._state is not _State.OPEN:
            self._state = _State.CLOSED
            if self._closed is not None:  # a close under way: returns once it is done
                await asyncio.shield(self._closed)
            return
        self._state = _State.CLOSED
        self._closed = asyncio.get_running_loop().create_future()
        try:
            lost: StoreError | None = None
            try:
                lost = await self._writer.close()
            finally:
                # Reached also when cancelled: the connection must not outlive the store.
                await self._disconnect()
            if lost is not None:
                raise lost
        finally:
            self._closed.set_result(None)

    async def __aenter__(self: _Store) -> _Store:
        """:meth:`open`, then the store itself."""
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """:meth:`aclose`."""
        await self.aclose()

    def _require_open(self) -> None:
        if self._state is not _State.OPEN:
            raise self._not_open()

    def _not_open(self) -> RuntimeError:
        """The error of a use of the store while it is not open."""
        return RuntimeError(f"{self!r} is not open: use 'async with' or await open() first")

    async def _submit(self, kind: str, *args: Any) -> Any:
        self._require_open()
        retention = self._retention
        if (
            retention is not None
            and kind != "purge"
            and now_or(None, "now") - self._purged_at >= _PURGE_EVERY
        ):
            # Past the retention again: a worker keeps its store open for
            # weeks, and rows purged only at open() piled up (some 650 bytes
            # a task) until a restart.
            await self._purge_past_retention(retention)
        return await self._writer.submit(kind, *args)

    async def _purge_past_retention(self, retention: float) -> None:
        """The store's own purge of rows past its retention, said in the log
        when it deletes any: by the wall clock, so a clock set days ahead
        deletes rows not yet that old (unfinished tasks, uncertain intents)."""
        deleted = await self.purge(retention)
        if deleted:
            logger.info(
                "%r: purged the tasks and intents created over %g days ago (by this "
                "machine's clock): %d",
                self,
                retention / 86_400,
                deleted,
            )

    # -- durable writes ---------------------------------------------------------------

    async def record_intent(
        self, ref: str, kind: str, request: Mapping[str, Any], created_at: float
    ) -> None:
        """Write a create intent; durable before returning (it precedes a paid POST).

        :raises ValueError: for an invalid or already recorded *ref*.
        :raises TypeError: when *request* cannot be written as JSON.
        """
        check_ref(ref)
        if not isinstance(kind, str) or not kind:
            raise ValueError(f"kind must be a non-empty str, not {kind!r}")
        body = json_text(request, "request")
        await self._submit("intent", ref, kind, body, check_time(created_at, "created_at"))

    async def attach_task_id(
        self, ref: str, task_id: str, model: str | None = None, *, at: float | None = None
    ) -> None:
        """Attach the POST's task id to its intent and track the task; durable
        before returning.

        The task's ``created_at`` is the intent's; its model is *model*, else
        the request's ``"model"`` field when it has one.

        :raises ValueError: when *ref* is unknown or already has another task id.
        """
        check_ref(ref)
        check_task_id(task_id)
        check_model(model)
        await self._submit("attach", ref, task_id, model, now_or(at, "at"))

    async def reconcile(self, ref: str, task_id: str, *, at: float | None = None) -> bool:
        """Attach *task_id* to an intent from a later source (a callback's ``?veo_ref=``).

        :returns: True when the intent now has this task id (also when it had
            it already); False when *ref* is unknown or has another task id.
        """
        check_ref(ref)
        check_task_id(task_id)
        result: bool = await self._submit("reconcile", ref, task_id, None, now_or(at, "at"))
        return result

    async def discard_intent(self, ref: str) -> bool:
        """Delete an intent that certainly created nothing; durable before returning.

        :returns: True when an intent without a task id was deleted; False when
            *ref* is unknown or already has a task id (then it is kept).
        """
        check_ref(ref)
        result: bool = await self._submit("discard", ref)
        return result

    async def track(
        self,
        task_ids: Iterable[str],
        *,
        model: str | None = None,
        created_at: float | None = None,
    ) -> None:
        """Follow ids a user gave, durable before returning; idempotent.

        Existing rows keep their data (a missing model is filled in).
        """
        check_model(model)
        when = now_or(created_at, "created_at")
        ids = await validated_ids_in_steps(task_ids)  # 100,000 ids: over loop steps
        if ids:
            await self._submit("track", ids, model, when)

    async def ack(self, task_id: str, *, at: float | None = None) -> None:
        """Acknowledge a finished task, durable before returning.

        It is then never listed as undelivered again; acknowledging an unknown
        or unfinished id changes nothing.
        """
        check_task_id(task_id)
        await self._submit("ack", task_id, now_or(at, "at"))

    async def forget(self, task_id: str) -> bool:
        """Delete the task, durable before returning; True when there was one."""
        check_task_id(task_id)
        result: bool = await self._submit("forget", task_id)
        return result

    async def purge(
        self, older_than_seconds: float = DEFAULT_RETENTION, *, now: float | None = None
    ) -> int:
        """Delete tasks and intents created more than *older_than_seconds* before *now*.

        Whatever their state: past Kie's retention a task can be neither polled
        nor fetched, so it only takes space.

        :returns: how many were deleted (tasks and intents).
        """
        if check_time(older_than_seconds, "older_than_seconds", duration=True) < 0:
            raise ValueError(f"older_than_seconds must be >= 0, not {older_than_seconds!r}")
        cutoff = now_or(now, "now") - older_than_seconds
        self._purged_at = now_or(None, "now")  # by the clock (see _submit)
        deleted: int = await self._submit("purge", cutoff)
        return deleted

    # -- write-behind -----------------------------------------------------------------

    async def record_seen(self, task_id: str, at: float) -> None:
        """Note that a poll saw the task (write-behind; the first time counts)."""
        check_task_id(task_id)
        when = check_time(at, "at")
        self._require_open()
        self._writer.change(task_id).saw(when)
        self._writer.noted()

    async def record_terminal(self, task_id: str, record: Mapping[str, Any], at: float) -> None:
        """Store the task's terminal record, a :func:`record_to_json` dict (write-behind).

        :raises TypeError: when *record* cannot be written as JSON.
        """
        check_task_id(task_id)
        when = check_time(at, "at")
        text = json_text(record, "record")
        self._require_open()
        self._writer.change(task_id).ended(text, when)
        self._writer.noted()

    async def mark_delivered(self, task_id: str, *, at: float | None = None) -> None:
        """Note that the finished task was handed to the user (write-behind)."""
        check_task_id(task_id)
        when = now_or(at, "at")
        self._require_open()
        self._writer.change(task_id).delivered(when)
        self._writer.noted()

    def write_behind(
        self,
        seen: Iterable[tuple[str, float]] = (),
        terminal: Iterable[tuple[str, RecordInfo, float]] = (),
        delivered: Iterable[tuple[str, float]] = (),
    ) -> None:
        """Many write-behind changes in one call, without awaiting.

        Each ``(task_id, at)`` of *seen* does what :meth:`record_seen` does,
        each ``(task_id, record, at)`` of *terminal* what :meth:`record_terminal`
        does with ``record_to_json(record)``, each ``(task_id, at)`` of
        *delivered* what :meth:`mark_delivered` does. Durable tracking hands
        its changes over this way: one call per batch, not a coroutine per change.

        :raises TypeError: for a malformed item, or a record that cannot be
            written as JSON (then nothing of this call is noted).
        :raises ValueError: for an empty task id or a time that is not finite.
        """
        self._require_open()
        # Everything is checked (and encoded) before anything is noted.
        seen_rows = [
            (check_task_id(tid), check_time(at, "at")) for tid, at in items_of(seen, 2, "seen")
        ]
        terminal_rows = [
            (check_task_id(tid), stored_record_text(record), check_time(at, "at"))
            for tid, record, at in items_of(terminal, 3, "terminal")
        ]
        delivered_rows = [
            (check_task_id(tid), check_time(at, "at"))
            for tid, at in items_of(delivered, 2, "delivered")
        ]
        change = self._writer.change
        for tid, when in seen_rows:
            change(tid).saw(when)
        for tid, text, when in terminal_rows:
            change(tid).ended(text, when)
        for tid, when in delivered_rows:
            change(tid).delivered(when)
        self._writer.noted()

    async def flush(self) -> None:
        """Write everything handed over so far.

        :raises StoreError: when a write-behind batch failed since the last flush.
        """
        self._require_open()
        await self._writer.flush()

    # -- reads ------------------------------------------------------------------------

    async def get(self, task_id: str) -> StoredTask | None:
        """The task, or None when the store does not know it."""
        check_task_id(task_id)
        await self.flush()
        return await self._fetch_task(task_id)

    async def get_intent(self, ref: str) -> StoredIntent | None:
        """The intent, or None when the store does not know it."""
        check_ref(ref)
        await self.flush()
        return await self._fetch_intent(ref)

    async def list_tasks(
        self, state: TaskState | None = None, limit: int | None = None
    ) -> list[StoredTask]:
        """Tasks in *state* (``"unfinished"``, ``"undelivered"``, ``"acked"``;
        all when None), oldest first, at most *limit*."""
        if state is not None and (not isinstance(state, str) or state not in TASK_STATES):
            raise ValueError(
                f"unknown state {state!r}; expected one of {sorted(TASK_STATES)} or None"
            )
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 0
        ):
            raise ValueError(f"limit must be a non-negative int or None, not {limit!r}")
        await self.flush()
        return await self._fetch_tasks(state, limit)

    async def unfinished(self) -> list[StoredTask]:
        """Tasks with no terminal record yet (to resume polling), oldest first."""
        return await self.list_tasks("unfinished")

    async def undelivered(self) -> list[StoredTask]:
        """Finished tasks not yet acknowledged (to hand over again), oldest first."""
        return await self.list_tasks("undelivered")

    async def uncertain(self) -> list[StoredIntent]:
        """Intents with no task id (to report, never to resend), oldest first."""
        await self.flush()
        return await self._fetch_uncertain()

    async def intents(self) -> list[StoredIntent]:
        """Every intent kept (created or uncertain; see :meth:`TaskStore.intents`),
        oldest first: one read."""
        await self.flush()
        return await self._fetch_intents()
