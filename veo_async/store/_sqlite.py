"""SQLiteStore: the embedded :class:`~veo_async.store.TaskStore`, one SQLite file.

How it is built, and why:

- **One writer.** Every write goes through one queue, drained by one task that
  commits whatever has accumulated in one transaction (group commit): 10,000
  concurrent ``ack()`` calls cost a handful of transactions, not 10,000. Reads
  wait for the queue to drain first, so they see every earlier write.
- **Durable writes** (intents, task ids, tracked ids, acks, purges) resolve
  only after their transaction committed. **Write-behind** ones (seen,
  terminal, delivered) are coalesced per task in memory and committed with the
  next transaction, at the latest ``flush_interval`` seconds later, at once
  when ``batch_size`` tasks are pending, and on :meth:`~SQLiteStore.flush` and
  :meth:`~SQLiteStore.aclose`.
- **Many rows, few steps**: write-behind rows and tracked ids are written by
  multi-row statements (128 rows a step) or one JSON array of ids, never row
  by row: ``executemany`` releases and retakes the GIL around every row, and
  with the event loop busy on the other thread each retake costs a thread
  switch. Durable tracking hands its changes over in one :meth:`~SQLiteStore.write_behind`
  call per batch. A terminal record rewrites its row at the end of the table
  (tasks finish in any order; growing rows in place would split pages all over
  the file), and a new file gets 16 KiB pages.
- **WAL journal, synchronous=NORMAL**: a commit survives the process being
  killed (the data is in the OS's hands), and costs no fsync. A transaction
  that writes an intent or a task id runs with **synchronous=FULL** (the WAL
  is fsynced before the commit returns), so it also survives a power cut: it
  stands for a paid POST, and creates are few (Kie allows 20 per 10 s), so the
  fsync is cheap where it matters and absent where it would not be.
- **One process at a time**: the connection uses SQLite's
  ``locking_mode=EXCLUSIVE`` and takes the write lock at :meth:`~SQLiteStore.open`,
  holding it until :meth:`~SQLiteStore.aclose`. A second opener (another
  process, or another store object on the same file) gets
  :class:`~veo_async.errors.StoreLockedError` after ``lock_timeout`` seconds.
  The lock is the OS's (POSIX advisory locks on Unix): it dies with the
  process, even on SIGKILL, so a crash never leaves a stale lock; and no
  ``-shm`` file is made (just ``-wal`` while open). Network filesystems whose
  locks do not work are not supported.
- A file that is not SQLite, fails ``PRAGMA quick_check``, or is some other
  application's database gives :class:`~veo_async.errors.StoreCorruptError`;
  another schema version gives :class:`~veo_async.errors.StoreVersionError`.
"""

from __future__ import annotations

import asyncio
import enum
import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

import aiosqlite

from .._id_checks import validated_ids_in_steps
from .._timeouts import within
from ..errors import StoreError
from ..models import RecordInfo, validate_task_id
from . import _schema as sql
from ._codec import json_safe, record_text, record_to_json
from ._contract import DEFAULT_RETENTION, TaskState
from ._sqlite_batch import Op, Pending, write_batch
from ._sqlite_file import has_json, prepare, translate
from ._text import dumps
from ._values import StoredIntent, StoredTask, check_ref

__all__ = ["SQLiteStore"]


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


def _check_task_id(task_id: object) -> str:
    # The session's own check: an id it could not poll must not get in, or
    # every later resume would meet it.
    return validate_task_id(task_id)


_INFINITIES = (math.inf, -math.inf)


def _check_time(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be epoch seconds (a number), not {type(value).__name__}")
    if value != value or value in _INFINITIES:
        raise ValueError(f"{name} must be a finite number, not {value!r}")
    return float(value)


def _now_or(value: float | None, name: str) -> float:
    return time.time() if value is None else _check_time(value, name)


def _record_text(record: object) -> str:
    if not isinstance(record, RecordInfo):
        raise TypeError(f"a terminal record must be a RecordInfo, not {type(record).__name__}")
    try:
        return record_text(record)
    except (TypeError, ValueError) as exc:
        # Its params hold what JSON cannot (1e999 or NaN in a paramJson read
        # as infinity or NaN): a cosmetic field, stored as text, so that the
        # record - and every other note written with it - is not refused.
        wire = record_to_json(record)
        wire["params"] = json_safe(wire["params"])
        try:
            return dumps(wire)
        except (TypeError, ValueError):
            raise TypeError(
                f"record of task {record.task_id!r} cannot be stored as JSON: {exc}"
            ) from exc


def _dumps(value: Mapping[str, Any], what: str) -> str:
    if not isinstance(value, Mapping):
        raise TypeError(f"{what} must be a mapping, not {type(value).__name__}")
    try:
        return dumps(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} cannot be stored as JSON: {exc}") from exc


async def close_connection(conn: aiosqlite.Connection) -> None:
    """Close ``conn`` and wait (briefly) until its worker thread has ended.

    aiosqlite's thread hands its last result back with ``call_soon_threadsafe``
    after ``close()`` returns: if the caller's loop closed first, that raises in
    the thread. Waiting for the thread keeps it from outliving the store.
    """
    await conn.close()
    await thread_ended(conn)


async def thread_ended(conn: aiosqlite.Connection) -> None:
    """Wait (at most about a second) until ``conn``'s worker thread has ended."""
    thread = getattr(conn, "_thread", None)  # aiosqlite >= 0.20; older ones are the thread
    if not isinstance(thread, threading.Thread):
        thread = conn if isinstance(conn, threading.Thread) else None
    for _ in range(1000):  # it ends within microseconds of its last task
        if thread is None or not thread.is_alive():
            return
        await asyncio.sleep(0.001)


class SQLiteStore:
    """The embedded task store: one SQLite file, used by one process at a time.

    ::

        async with SQLiteStore("veo.db") as store:
            await store.track(["veo_task_1"])

    :param path: the database file (created when missing; its directory must exist).
    :param retention: at :meth:`open`, rows created more than this many
        seconds ago are purged (default 14 days, Kie's own retention); None
        keeps everything.
    :param flush_interval: the longest a write-behind change waits, in seconds.
    :param batch_size: a write-behind change for this many distinct tasks
        commits at once, without waiting for the interval.
    :param lock_timeout: how long :meth:`open` waits for another holder of the
        file to let go before raising :class:`~veo_async.errors.StoreLockedError`.
    :param check_integrity: run ``PRAGMA quick_check`` at :meth:`open` (it
        reads the whole file once).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        retention: float | None = DEFAULT_RETENTION,
        flush_interval: float = 0.2,
        batch_size: int = 1000,
        lock_timeout: float = 2.0,
        check_integrity: bool = True,
    ) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or os.PathLike, not {type(path).__name__}")
        self._path = os.fspath(path)
        if not self._path or self._path == ":memory:" or self._path.startswith("file:"):
            raise ValueError(f"path must name a file, not {self._path!r}")
        if retention is not None and _check_time(retention, "retention") <= 0:
            raise ValueError(f"retention must be positive or None, not {retention!r}")
        if _check_time(flush_interval, "flush_interval") < 0:
            raise ValueError(f"flush_interval must be >= 0, not {flush_interval!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, not {batch_size!r}")
        if _check_time(lock_timeout, "lock_timeout") < 0:
            raise ValueError(f"lock_timeout must be >= 0, not {lock_timeout!r}")
        self._retention = retention
        self._flush_interval = float(flush_interval)
        self._batch_size = batch_size
        self._lock_timeout = float(lock_timeout)
        self._check_integrity = check_integrity
        self._state = _State.UNOPENED
        self._conn: aiosqlite.Connection | None = None
        self._writer: asyncio.Task[None] | None = None
        self._io_lock = asyncio.Lock()
        # _wake: there is work; _urgent: write it now (else wait flush_interval).
        self._wake = asyncio.Event()
        self._urgent = asyncio.Event()
        self._closing = False
        # Done when a close has ended: a second aclose() waits for it.
        self._closed: asyncio.Future[None] | None = None
        self._writing = False
        self._ops: list[Op] = []
        self._pending: dict[str, Pending] = {}
        self._flush_waiters: list[asyncio.Future[None]] = []
        self._lost: StoreError | None = None
        self._json = False  # SQLite's JSON functions: set at open()

    def __repr__(self) -> str:
        return f"SQLiteStore({self._path!r}, state={self._state.value})"

    @property
    def path(self) -> str:
        """The database file, as given."""
        return self._path

    @property
    def closed(self) -> bool:
        """True once :meth:`aclose` was called."""
        return self._state is _State.CLOSED

    # -- lifecycle --------------------------------------------------------------------

    async def open(self) -> None:
        """Open the file, take its lock, create or check the schema, purge old rows.

        A second call does nothing; a closed store cannot be reopened (make a
        new one).

        :raises StoreLockedError: another process or store has the file open.
        :raises StoreCorruptError: not a SQLite file, damaged, or not a task store.
        :raises StoreVersionError: written with another schema version.
        :raises StoreError: any other reason the file cannot be used.
        """
        if self._state is _State.OPEN:
            return
        if self._state is _State.CLOSED:
            raise RuntimeError(f"{self!r} is closed; make a new SQLiteStore to open it again")
        connecting = aiosqlite.connect(self._path, timeout=self._lock_timeout, isolation_level=None)
        try:
            conn = await connecting
        except sqlite3.Error as exc:
            # aiosqlite stops its thread without waiting for it: wait here, or
            # it may hand its last result to a loop that has closed meanwhile.
            await thread_ended(connecting)
            raise translate(exc, self._path, "opening") from exc
        try:
            await prepare(conn, self._path, check_integrity=self._check_integrity)
        except BaseException:
            await close_connection(conn)
            raise
        self._json = await has_json(conn)
        if self.closed:
            # Closed while this open awaited: the close found nothing to close,
            # so this connection (and the file's lock) must not be kept.
            await close_connection(conn)
            raise RuntimeError(f"{self!r} was closed while it was being opened")
        self._conn = conn
        self._state = _State.OPEN
        self._writer = asyncio.get_running_loop().create_task(
            self._run_writer(), name=f"veo_async store writer {self._path}"
        )
        if self._retention is not None:
            try:
                await self.purge(self._retention)
            except BaseException:
                await self.aclose()
                raise

    async def aclose(self) -> None:
        """Commit everything pending, release the lock, stop the worker thread.

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
            await self._close()
        finally:
            self._closed.set_result(None)

    async def _close(self) -> None:
        self._closing = True
        self._write_now()
        conn, writer = self._conn, self._writer
        assert conn is not None  # set together with the writer by open()
        assert writer is not None
        try:
            # Shielded: cancelling this close does not cancel the writer in the
            # middle of a batch; it finishes what it holds (its callers get
            # their answers), then the connection closes.
            try:
                await asyncio.shield(writer)
            except asyncio.CancelledError:
                await asyncio.wait((writer,))
                raise
        finally:
            # Reached also when cancelled (twice): the connection (and its thread)
            # must not outlive the store. Closing rolls back a half-done transaction.
            if not writer.done():
                writer.cancel()  # its callers hear so (see _write_batch)
                await asyncio.wait((writer,))
            self._fail_waiting(StoreError(f"task store {self._path} closed", path=self._path))
            self._conn = None
            await close_connection(conn)
        lost, self._lost = self._lost, None
        if lost is not None:
            raise lost

    async def __aenter__(self) -> SQLiteStore:
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

    def _connection(self) -> aiosqlite.Connection:
        if self._state is not _State.OPEN or self._conn is None:
            raise RuntimeError(f"{self!r} is not open: use 'async with' or await open() first")
        return self._conn

    # -- durable writes ---------------------------------------------------------------

    async def _submit(self, kind: str, *args: Any) -> Any:
        self._connection()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._ops.append(Op(kind, args, future))
        self._write_now()
        # If the caller is cancelled now, the write still happens: the writer
        # owns it (an intent is better recorded needlessly than lost).
        return await future

    async def record_intent(
        self, ref: str, kind: str, request: Mapping[str, Any], created_at: float
    ) -> None:
        """Write a create intent; committed (and fsynced) before returning.

        :raises ValueError: for an invalid or already recorded *ref*.
        :raises TypeError: when *request* cannot be written as JSON.
        """
        check_ref(ref)
        if not isinstance(kind, str) or not kind:
            raise ValueError(f"kind must be a non-empty str, not {kind!r}")
        body = _dumps(request, "request")
        await self._submit("intent", ref, kind, body, _check_time(created_at, "created_at"))

    async def attach_task_id(
        self, ref: str, task_id: str, model: str | None = None, *, at: float | None = None
    ) -> None:
        """Attach the POST's task id to its intent and track the task; committed
        (and fsynced) before returning.

        :raises ValueError: when *ref* is unknown or already has another task id.
        """
        check_ref(ref)
        _check_task_id(task_id)
        if model is not None and not isinstance(model, str):
            raise TypeError(f"model must be a str or None, not {type(model).__name__}")
        await self._submit("attach", ref, task_id, model, _now_or(at, "at"))

    async def reconcile(self, ref: str, task_id: str, *, at: float | None = None) -> bool:
        """Attach *task_id* to an intent from a later source (a callback's ``?veo_ref=``).

        :returns: True when the intent now has this task id (also when it had
            it already); False when *ref* is unknown or has another task id.
        """
        check_ref(ref)
        _check_task_id(task_id)
        result: bool = await self._submit("reconcile", ref, task_id, None, _now_or(at, "at"))
        return result

    async def discard_intent(self, ref: str) -> bool:
        """Delete an intent that certainly created nothing; committed before returning.

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
        """Follow ids a user gave, committed before returning; idempotent.

        Existing rows keep their data (a missing model is filled in).
        """
        if model is not None and not isinstance(model, str):
            raise TypeError(f"model must be a str or None, not {type(model).__name__}")
        when = _now_or(created_at, "created_at")
        ids = await validated_ids_in_steps(task_ids)  # 100,000 ids: over loop steps
        if ids:
            await self._submit("track", ids, model, when)

    async def ack(self, task_id: str, *, at: float | None = None) -> None:
        """Acknowledge a finished task, committed before returning.

        It is then never listed as undelivered again; acknowledging an unknown
        or unfinished id changes nothing.
        """
        _check_task_id(task_id)
        await self._submit("ack", task_id, _now_or(at, "at"))

    async def forget(self, task_id: str) -> bool:
        """Delete the task's row, committed before returning; True when there was one."""
        _check_task_id(task_id)
        result: bool = await self._submit("forget", task_id)
        return result

    async def purge(
        self, older_than_seconds: float = DEFAULT_RETENTION, *, now: float | None = None
    ) -> int:
        """Delete tasks and intents created more than *older_than_seconds* before *now*.

        :returns: how many rows (tasks and intents) were deleted.
        """
        if _check_time(older_than_seconds, "older_than_seconds") < 0:
            raise ValueError(f"older_than_seconds must be >= 0, not {older_than_seconds!r}")
        cutoff = _now_or(now, "now") - older_than_seconds
        deleted: int = await self._submit("purge", cutoff)
        return deleted

    # -- write-behind -----------------------------------------------------------------

    def _change(self, task_id: str) -> Pending:
        """The pending changes of *task_id* (made on first use)."""
        change = self._pending.get(task_id)
        if change is None:
            change = self._pending[task_id] = Pending()
        return change

    def _noted(self) -> None:
        """Write-behind changes were noted: wake the writer (at once for a full batch)."""
        pending = self._pending
        if len(pending) >= self._batch_size:
            self._write_now()
        elif pending:
            self._wake.set()

    async def record_seen(self, task_id: str, at: float) -> None:
        """Note that a poll saw the task (write-behind; the first time counts)."""
        _check_task_id(task_id)
        when = _check_time(at, "at")
        self._connection()
        self._change(task_id).saw(when)
        self._noted()

    async def record_terminal(self, task_id: str, record: Mapping[str, Any], at: float) -> None:
        """Store the task's terminal record, a :func:`record_to_json` dict (write-behind).

        :raises TypeError: when *record* cannot be written as JSON.
        """
        _check_task_id(task_id)
        when = _check_time(at, "at")
        text = _dumps(record, "record")
        self._connection()
        self._change(task_id).ended(text, when)
        self._noted()

    async def mark_delivered(self, task_id: str, *, at: float | None = None) -> None:
        """Note that the finished task was handed to the user (write-behind)."""
        _check_task_id(task_id)
        when = _now_or(at, "at")
        self._connection()
        self._change(task_id).delivered(when)
        self._noted()

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
        self._connection()
        # Everything is checked (and encoded) before anything is noted.
        seen_rows = [(_check_task_id(tid), _check_time(at, "at")) for tid, at in seen]
        terminal_rows = [
            (_check_task_id(tid), _record_text(record), _check_time(at, "at"))
            for tid, record, at in terminal
        ]
        delivered_rows = [(_check_task_id(tid), _check_time(at, "at")) for tid, at in delivered]
        change = self._change
        for tid, when in seen_rows:
            change(tid).saw(when)
        for tid, text, when in terminal_rows:
            change(tid).ended(text, when)
        for tid, when in delivered_rows:
            change(tid).delivered(when)
        self._noted()

    async def flush(self) -> None:
        """Commit every write made so far.

        :raises StoreError: when a write-behind batch failed since the last flush.
        """
        self._connection()
        if self._ops or self._pending or self._writing:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._flush_waiters.append(future)
            self._write_now()
            await future
        lost, self._lost = self._lost, None
        if lost is not None:
            raise lost

    # -- the writer -------------------------------------------------------------------

    def _write_now(self) -> None:
        self._urgent.set()
        self._wake.set()

    def _has_work(self) -> bool:
        return bool(self._ops or self._pending or self._flush_waiters)

    async def _run_writer(self) -> None:
        while True:
            if not self._has_work():
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            if not self._urgent.is_set():
                # Only write-behind changes: let more join this transaction.
                await within(self._urgent.wait(), self._flush_interval)
            self._urgent.clear()
            self._writing = True
            try:
                await self._write_batch()
            finally:
                self._writing = False

    async def _write_batch(self) -> None:
        ops, self._ops = self._ops, []
        pending, self._pending = self._pending, {}
        waiters, self._flush_waiters = self._flush_waiters, []
        conn = self._conn
        assert conn is not None  # the writer runs only while open
        results: list[object] = []
        try:
            if ops or pending:
                async with self._io_lock:
                    results = await write_batch(conn, ops, pending, json=self._json)
        except asyncio.CancelledError:
            # Stopped mid-batch (a close given up on): the batch is rolled back,
            # and its callers hear so instead of waiting forever.
            error = StoreError(
                f"task store {self._path} closed while writing; not stored", path=self._path
            )
            if pending:
                self._lost = self._lost or error
            for future in [op.future for op in ops] + waiters:
                if not future.done():
                    future.set_exception(error)
            raise
        except Exception as exc:  # resolved into every waiter below, never lost
            error = (
                translate(exc, self._path, "writing")
                if isinstance(exc, sqlite3.Error)
                else StoreError(
                    f"task store {self._path}: writing failed ({exc!r})", path=self._path
                )
            )
            if pending and not waiters:  # else a flush() caller hears of it at once
                self._lost = error
            for future in [op.future for op in ops] + waiters:
                if not future.done():
                    future.set_exception(error)
            return
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

    def _fail_waiting(self, error: StoreError) -> None:
        """Fail whatever a cancelled writer left behind, so no caller waits forever."""
        for future in [op.future for op in self._ops] + self._flush_waiters:
            if not future.done():
                future.set_exception(error)
        self._ops, self._flush_waiters = [], []
        if self._pending:
            self._lost = self._lost or StoreError(
                f"task store {self._path} closed with {len(self._pending)} unwritten change(s)",
                path=self._path,
            )
            self._pending = {}

    # -- reads ------------------------------------------------------------------------

    async def _read(self, query: str, params: tuple[Any, ...] = ()) -> list[Any]:
        await self.flush()
        conn = self._connection()
        try:
            async with self._io_lock:
                return list(await conn.execute_fetchall(query, params))
        except sqlite3.Error as exc:
            raise translate(exc, self._path, "reading") from exc

    async def get(self, task_id: str) -> StoredTask | None:
        """The task, or None when the store does not know it."""
        _check_task_id(task_id)
        rows = await self._read(sql.SELECT_TASK, (task_id,))
        return sql.row_to_task(rows[0]) if rows else None

    async def get_intent(self, ref: str) -> StoredIntent | None:
        """The intent, or None when the store does not know it."""
        check_ref(ref)
        rows = await self._read(sql.SELECT_INTENT, (ref,))
        return sql.row_to_intent(rows[0]) if rows else None

    async def list_tasks(
        self, state: TaskState | None = None, limit: int | None = None
    ) -> list[StoredTask]:
        """Tasks in *state* (``"unfinished"``, ``"undelivered"``, ``"acked"``;
        all when None), oldest first, at most *limit*."""
        if state is not None and state not in sql.TASK_STATES:
            raise ValueError(
                f"unknown state {state!r}; expected one of {sorted(sql.TASK_STATES)} or None"
            )
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 0
        ):
            raise ValueError(f"limit must be a non-negative int or None, not {limit!r}")
        query, params = sql.select_tasks(state, limit)
        return [sql.row_to_task(row) for row in await self._read(query, params)]

    async def unfinished(self) -> list[StoredTask]:
        """Tasks with no terminal record yet (to resume polling), oldest first."""
        return await self.list_tasks("unfinished")

    async def undelivered(self) -> list[StoredTask]:
        """Finished tasks not yet acknowledged (to hand over again), oldest first."""
        return await self.list_tasks("undelivered")

    async def uncertain(self) -> list[StoredIntent]:
        """Intents with no task id (to report, never to resend), oldest first."""
        return [sql.row_to_intent(row) for row in await self._read(sql.SELECT_UNCERTAIN)]
