"""Opening a store file: pragmas, the lock, the schema check, and what errors mean.

Functions of an open :class:`aiosqlite.Connection` and the file's path, used
by :class:`~veo_async.store.SQLiteStore` at open and after each failed statement.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
from collections.abc import Mapping

import aiosqlite

from ..errors import StoreCorruptError, StoreError, StoreLockedError, StoreVersionError
from . import _schema as sql

__all__ = ["has_json", "prepare", "rollback", "translate"]

_MOVE_ASIDE = "move the file aside (a new empty store is made) or restore a backup"


async def prepare(conn: aiosqlite.Connection, path: str, *, check_integrity: bool) -> None:
    """Lock the file for this connection, then create or check the schema.

    :raises StoreError: (a subclass) naming *path* when the file cannot be used.
    """
    try:
        # Exclusive locking mode before the first access: the write lock taken
        # by BEGIN EXCLUSIVE below is then kept until the connection closes.
        await conn.execute("PRAGMA locking_mode = EXCLUSIVE")
        # Takes effect only when the file is created (before WAL is set), else
        # does nothing. A terminal row is ~600 bytes and tasks finish in any
        # order: larger pages split less and cost fewer WAL frames per commit
        # (a third less CPU for the terminal rows of 10,000 ids). Any SQLite
        # (and any veo_async) reads a file of any page size.
        await conn.execute(f"PRAGMA page_size = {sql.PAGE_SIZE}")
        await conn.execute("PRAGMA synchronous = NORMAL")
        await conn.execute("BEGIN EXCLUSIVE")
        try:
            await _check_schema(conn, path, check_integrity=check_integrity)
            await conn.execute("COMMIT")
        except BaseException:
            await rollback(conn)
            raise
        # WAL only once the file is known to be a store (or was just made
        # one): the journal mode is a lasting property of the file, and a
        # database of another program given by mistake must be refused as it
        # was found. (The exclusive lock taken above is kept: no other
        # connection comes between the check and the switch.)
        await conn.execute("PRAGMA journal_mode = WAL")
    except sqlite3.Error as exc:
        raise translate(exc, path, "opening") from exc


async def rollback(conn: aiosqlite.Connection) -> None:
    """Roll back *conn*'s transaction, if any, on the way out of a failure.

    Called only while another exception propagates, which must stay the one
    the caller sees: a cancellation that lands while COMMIT runs in SQLite's
    thread finds the transaction already (or about to be) gone, and the
    ROLLBACK's "no transaction is active" must not replace the CancelledError.
    """
    if not conn.in_transaction:
        return
    # An error here means the transaction ended anyway (committed, or rolled
    # back by SQLite itself); the exception already on its way says what went wrong.
    with contextlib.suppress(sqlite3.Error):
        await conn.execute("ROLLBACK")


async def has_json(conn: aiosqlite.Connection) -> bool:
    """True when this SQLite has its JSON functions (built in since 3.38, an
    option before): the store then writes many ids in one statement."""
    try:
        await conn.execute_fetchall("SELECT count(*) FROM json_each('[]')")
    except sqlite3.OperationalError:
        return False
    return True


async def _check_schema(conn: aiosqlite.Connection, path: str, *, check_integrity: bool) -> None:
    rows = await conn.execute_fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
    tables = {row[0] for row in rows}
    if not tables:
        for statement in sql.CREATE_SCHEMA:
            await conn.execute(statement)
        return
    if "schema_version" not in tables:
        raise StoreCorruptError(
            f"{path} is a SQLite database but not a veo_async task store "
            f"(tables: {', '.join(sorted(tables))}); give the store another file",
            path=path,
        )
    versions = [row[0] for row in await conn.execute_fetchall("SELECT version FROM schema_version")]
    version = versions[0] if len(versions) == 1 else None
    if not isinstance(version, int):
        raise StoreCorruptError(
            f"task store {path} has an unreadable schema_version table ({versions!r}); "
            f"{_MOVE_ASIDE}",
            path=path,
        )
    if version != sql.SCHEMA_VERSION:
        advice = (
            "it was written by a newer veo_async: upgrade veo_async, or give this version "
            "another file"
            if version > sql.SCHEMA_VERSION
            else "it was written by an older veo_async and is never migrated silently: "
            "open it with that version, or give this one another file"
        )
        raise StoreVersionError(
            f"task store {path} has schema version {version}, this veo_async reads "
            f"version {sql.SCHEMA_VERSION}; {advice}",
            path=path,
            found=version,
            supported=sql.SCHEMA_VERSION,
        )
    missing = sql.TABLES - tables
    if missing:
        raise StoreCorruptError(
            f"task store {path} lacks table(s) {', '.join(sorted(missing))}; {_MOVE_ASIDE}",
            path=path,
        )
    for table, columns in _columns_of_a_store().items():
        rows = await conn.execute_fetchall(f"PRAGMA table_info({table})")
        lacking = columns - {row[1] for row in rows}
        if lacking:
            # Checked here, not at the first write: a file of another program
            # (or one altered by hand) that has the right table names opened
            # and then failed its first write with a bare "no such column".
            raise StoreCorruptError(
                f"task store {path}: its table {table} lacks column(s) "
                f"{', '.join(sorted(lacking))}, so it is not a veo_async task store "
                f"(or was altered); {_MOVE_ASIDE}",
                path=path,
            )
    if check_integrity:
        problems = [
            " ".join(str(row[0]).split())  # its lines are multi-line; keep messages one line
            for row in await conn.execute_fetchall("PRAGMA quick_check")
        ]
        if problems != ["ok"]:
            raise StoreCorruptError(
                f"task store {path} is damaged ({'; '.join(problems[:3])}); {_MOVE_ASIDE}",
                path=path,
            )


@functools.cache
def _columns_of_a_store() -> Mapping[str, frozenset[str]]:
    """Each table's columns, as the schema's own statements make them (one
    source of truth: read from an empty in-memory store, once)."""
    with contextlib.closing(sqlite3.connect(":memory:")) as conn:
        for statement in sql.CREATE_SCHEMA:
            conn.execute(statement)
        return {
            table: frozenset(row[1] for row in conn.execute(f"PRAGMA table_info({table})"))
            for table in sorted(sql.TABLES)
        }


def translate(exc: sqlite3.Error, path: str, doing: str) -> StoreError:
    """The :class:`StoreError` for a SQLite error met while *doing* something with *path*.

    SQLite says what went wrong only in words on Python 3.10 (no
    ``sqlite_errorname``), so the message is matched.
    """
    text = str(exc)
    lowered = text.lower()
    if "locked" in lowered or "busy" in lowered:
        return StoreLockedError(
            f"task store {path} is in use by another process (or another SQLiteStore "
            "in this one); stop that one first, or give this one another file",
            path=path,
        )
    if any(hint in lowered for hint in ("not a database", "malformed", "encrypted")):
        return StoreCorruptError(
            f"task store {path} is not a readable SQLite database ({text}); {_MOVE_ASIDE}",
            path=path,
        )
    if "unable to open" in lowered:
        return StoreError(f"cannot open task store {path} ({text}); {_why_not(path)}", path=path)
    if "readonly" in lowered or "read-only" in lowered or (
        doing == "opening" and "disk i/o" in lowered
    ):
        # (A file we may read but not write, or whose directory refuses its
        # journal, fails its first write as "disk I/O error" on opening.)
        return StoreError(
            f"cannot write task store {path} ({text}); {_why_not(path)}", path=path
        )
    return StoreError(f"task store {path}: {doing} failed ({text})", path=path)


def _why_not(path: str) -> str:
    """What to check, from what the file system says (an error path only)."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        return "it is a directory: give the path of a file in it"
    if not os.path.isdir(folder):
        return f"its directory {folder} does not exist"
    if os.path.exists(path) and not os.access(path, os.W_OK):
        return "the file is read-only for this user"
    if not os.access(folder, os.W_OK):
        return f"its directory {folder} is not writable (SQLite writes its journal beside it)"
    return "check that the file and its directory are writable"
