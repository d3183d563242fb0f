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
- **The ``-wal`` file is part of the store** until a clean close folds it in:
  after a crash (SIGKILL, power loss) every commit since the last checkpoint
  is in ``<file>-wal`` beside it, and the next open recovers it. Moving or
  copying the file alone loses them (the copy opens as a store without those
  creates, and a rerun would send them again): move both, or open and close
  the store first.
- A file that is not SQLite, fails ``PRAGMA quick_check``, or is some other
  application's database gives :class:`~veo_async.errors.StoreCorruptError`;
  another schema version gives :class:`~veo_async.errors.StoreVersionError`.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import aiosqlite

from ..errors import StoreCorruptError, StoreError
from . import _schema as sql
from ._base import BatchedStore, without_damaged
from ._checks import check_time
from ._contract import DEFAULT_RETENTION
from ._sqlite_batch import write_batch
from ._sqlite_file import has_json, prepare, translate
from ._values import StoredIntent, StoredTask
from ._writer import Op, Pending

__all__ = ["SQLiteStore"]

#: What a row reader makes of a row (see SQLiteStore._readable).
_Read = TypeVar("_Read")


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


class SQLiteStore(BatchedStore):
    """The embedded task store: one SQLite file, used by one process at a time.

    ::

        async with SQLiteStore("veo.db") as store:
            await store.track(["veo_task_1"])

    :param path: the database file (created when missing; its directory must exist).
    :param retention: at :meth:`open`, and every six hours while open (with
        the next write), rows created more than this many seconds ago are
        purged (default 14 days, Kie's own retention); None keeps everything.
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
        if "\x00" in self._path:  # no file system takes one (sqlite3 raises it as a bug)
            raise ValueError(f"path must not contain a NUL character: {self._path!r}")
        if not isinstance(check_integrity, bool):
            raise TypeError(f"check_integrity must be True or False, not {check_integrity!r}")
        if check_time(lock_timeout, "lock_timeout", duration=True) < 0:
            raise ValueError(f"lock_timeout must be >= 0, not {lock_timeout!r}")
        super().__init__(
            self._path, retention=retention, flush_interval=flush_interval, batch_size=batch_size
        )
        self._lock_timeout = float(lock_timeout)
        self._check_integrity = check_integrity
        self._conn: aiosqlite.Connection | None = None
        # One connection: a read waits for the writer's batch, and the reverse.
        self._io_lock = asyncio.Lock()
        self._json = False  # SQLite's JSON functions: set at open()

    def __repr__(self) -> str:
        return f"SQLiteStore({self._path!r}, state={self._state_name()})"

    @property
    def path(self) -> str:
        """The database file, as given."""
        return self._path

    # -- the connection ---------------------------------------------------------------

    async def _connect(self) -> None:
        """Open the file, take its lock, create or check the schema."""
        connecting = aiosqlite.connect(self._path, timeout=self._lock_timeout, isolation_level=None)
        try:
            conn = await connecting
        except BaseException as exc:
            # aiosqlite stops its thread without waiting for it: wait here, or
            # it may hand its last result to a loop that has closed meanwhile.
            # A cancellation too: the thread still finishes connecting first.
            await thread_ended(connecting)
            if isinstance(exc, sqlite3.Error):
                raise translate(exc, self._path, "opening") from exc
            raise
        try:
            await prepare(conn, self._path, check_integrity=self._check_integrity)
            self._json = await has_json(conn)
        except BaseException:
            await close_connection(conn)
            raise
        self._conn = conn

    async def _disconnect(self) -> None:
        """Close the connection (rolling back a half-done transaction): the lock goes with it."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await close_connection(conn)

    # -- writing and reading ----------------------------------------------------------

    async def _apply(self, ops: list[Op], pending: dict[str, Pending]) -> list[object]:
        conn = self._conn
        assert conn is not None  # the writer runs only while open
        async with self._io_lock:
            return await write_batch(conn, ops, pending, json=self._json)

    def _failure(self, error: Exception) -> StoreError:
        if isinstance(error, sqlite3.Error):
            return translate(error, self._path, "writing")
        return super()._failure(error)

    async def _read(self, query: str, params: tuple[Any, ...] = ()) -> list[Any]:
        conn = self._conn
        if conn is None:
            raise self._not_open()
        try:
            async with self._io_lock:
                return list(await conn.execute_fetchall(query, params))
        except sqlite3.Error as exc:
            raise translate(exc, self._path, "reading") from exc

    async def _fetch_task(self, task_id: str) -> StoredTask | None:
        rows = await self._read(sql.SELECT_TASK, (task_id,))
        return self._task(rows[0]) if rows else None

    async def _fetch_intent(self, ref: str) -> StoredIntent | None:
        rows = await self._read(sql.SELECT_INTENT, (ref,))
        return self._intent(rows[0]) if rows else None

    def _intent(self, row: Any) -> StoredIntent:
        """An intent row, or :class:`StoreCorruptError` naming it when it is damaged."""
        return self._readable("intent", sql.row_to_intent, row)

    def _task(self, row: Any) -> StoredTask:
        """A task row, or :class:`StoreCorruptError` naming it when it is damaged."""
        return self._readable("task", sql.row_to_task, row)

    def _readable(self, what: str, read: Callable[[Any], _Read], row: Any) -> _Read:
        """``read(row)``; a damaged row (its ValueError) as a
        :class:`StoreCorruptError` naming the row by its key (first column)."""
        try:
            return read(row)
        except ValueError as exc:
            raise StoreCorruptError(
                f"task store {self._path}: {what} {row[0]!r} cannot be read ({exc})",
                path=self._path,
            ) from None

    async def _fetch_tasks(self, state: str | None, limit: int | None) -> list[StoredTask]:
        query, params = sql.select_tasks(state, limit)
        return without_damaged(await self._read(query, params), self._task)

    async def _fetch_uncertain(self) -> list[StoredIntent]:
        return without_damaged(await self._read(sql.SELECT_UNCERTAIN), self._intent)

    async def _fetch_intents(self) -> list[StoredIntent]:
        return without_damaged(await self._read(sql.SELECT_INTENTS), self._intent)
