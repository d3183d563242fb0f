"""The SQLite schema of a task store (version 1) and its statements. Pure: no I/O.

One file holds three tables:

- ``schema_version``: one row, the version that wrote the file. A store never
  upgrades (or downgrades) a file silently: another version is refused.
- ``intents``: one row per create request, written before the POST; ``task_id``
  stays NULL until the answer (or a callback) gives it.
- ``tasks``: one row per task created or tracked; ``terminal`` holds the final
  record as JSON (:func:`~veo_async.store.record_to_json`) once known.

Partial indexes keep the three questions a restart asks (unfinished?
undelivered? uncertain?) proportional to their answers, not to the file.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from ._values import StoredIntent, StoredTask

logger = logging.getLogger("veo_async")

__all__ = [
    "APPLICATION_ID",
    "CREATE_SCHEMA",
    "PAGE_SIZE",
    "ROWS_PER_STATEMENT",
    "RowsStatement",
    "SCHEMA_VERSION",
    "TABLES",
    "row_to_intent",
    "row_to_task",
]

#: The version this code reads and writes.
SCHEMA_VERSION = 1
#: The page size of a new store file (an existing file keeps its own).
PAGE_SIZE = 16384
#: ``PRAGMA application_id`` of a task store ("VeoA"), so tools like ``file``
#: can tell it from other SQLite files.
APPLICATION_ID = 0x56656F41

TABLES = frozenset(("schema_version", "intents", "tasks"))

CREATE_SCHEMA = (
    "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    f"INSERT INTO schema_version (version) VALUES ({SCHEMA_VERSION})",
    """CREATE TABLE intents (
        ref TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        request TEXT NOT NULL,
        created_at REAL NOT NULL,
        task_id TEXT
    )""",
    "CREATE INDEX intents_uncertain ON intents (created_at) WHERE task_id IS NULL",
    """CREATE TABLE tasks (
        task_id TEXT PRIMARY KEY,
        model TEXT,
        created_at REAL NOT NULL,
        first_seen_at REAL,
        terminal TEXT,
        terminal_at REAL,
        delivered_at REAL,
        deliveries INTEGER NOT NULL DEFAULT 0,
        acked_at REAL,
        updated_at REAL NOT NULL,
        ref TEXT
    )""",
    "CREATE INDEX tasks_unfinished ON tasks (created_at) WHERE terminal IS NULL",
    "CREATE INDEX tasks_undelivered ON tasks (created_at) "
    "WHERE terminal IS NOT NULL AND acked_at IS NULL",
    f"PRAGMA application_id = {APPLICATION_ID}",
)

# -- writes ---------------------------------------------------------------------------
# Parameters are plain "?", in order, a value repeated where a statement needs
# it twice: Python 3.12.0-3.12.3 warn (DeprecationWarning, an error where
# warnings are) on numbered ones ("?1") bound to a sequence.

INSERT_INTENT = (
    "INSERT INTO intents (ref, kind, request, created_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (ref) DO NOTHING"
)
SELECT_INTENT = "SELECT ref, kind, request, created_at, task_id FROM intents WHERE ref = ?"
SET_INTENT_TASK = "UPDATE intents SET task_id = ? WHERE ref = ?"
# An attached task keeps whatever a poll or a user already wrote about it.
UPSERT_CREATED = (
    "INSERT INTO tasks (task_id, model, created_at, updated_at, ref) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (task_id) DO UPDATE SET ref = COALESCE(tasks.ref, excluded.ref), "
    "model = COALESCE(tasks.model, excluded.model), "
    "created_at = MIN(tasks.created_at, excluded.created_at), "
    "updated_at = MAX(tasks.updated_at, excluded.updated_at)"
)
#: Rows one multi-row statement writes (see :class:`RowsStatement`); with at
#: most 4 parameters a row, under SQLite's oldest limit of 999 parameters.
ROWS_PER_STATEMENT = 128


class RowsStatement:
    """A statement that writes many rows, each of ``width`` parameters, in one step.

    ``WITH b(columns) AS (VALUES (?, ...), (?, ...), ...) <body>``: SQLite
    runs it in one call with Python's GIL released, where ``executemany``
    would release and retake the GIL around every row. With the event loop
    busy on another thread, each retake waits for a switch: thousands of
    context switches per thousand rows, more CPU than the rows themselves.

    :ivar width: parameters per row.
    """

    def __init__(self, columns: str, width: int, body: str) -> None:
        self.width = width
        self._head = f"WITH b({columns}) AS (VALUES "
        self._row = "(" + ", ".join("?" * width) + ")"
        self._body = f") {body}"
        self._texts: dict[int, str] = {}

    def text(self, rows: int) -> str:
        """The statement for *rows* rows (1 to :data:`ROWS_PER_STATEMENT`)."""
        text = self._texts.get(rows)
        if text is None:
            text = self._texts[rows] = self._head + ",".join([self._row] * rows) + self._body
        return text


UPSERT_TRACKED = (  # (task_id, model, at, at)
    "INSERT INTO tasks (task_id, model, created_at, updated_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (task_id) DO UPDATE SET model = COALESCE(tasks.model, excluded.model)"
)
# "WHERE true" keeps "ON CONFLICT" after a SELECT from parsing as a join constraint.
UPSERT_TRACKED_ROWS = RowsStatement(
    "task_id, model, at",
    3,
    "INSERT INTO tasks (task_id, model, created_at, updated_at) "
    "SELECT task_id, model, at, at FROM b WHERE true "
    "ON CONFLICT (task_id) DO UPDATE SET model = COALESCE(tasks.model, excluded.model)",
)
# UPSERT_TRACKED for many ids in one statement and one parameter, the last: a
# JSON array of ids, walked by SQLite in C. (model, at, at, array)
UPSERT_TRACKED_JSON = (
    "INSERT INTO tasks (task_id, model, created_at, updated_at) "
    "SELECT value, ?, ?, ? FROM json_each(?) WHERE true "
    "ON CONFLICT (task_id) DO UPDATE SET model = COALESCE(tasks.model, excluded.model)"
)
UPSERT_SEEN_ROWS = RowsStatement(
    "task_id, at",
    2,
    "INSERT INTO tasks (task_id, created_at, first_seen_at, updated_at) "
    "SELECT task_id, at, at, at FROM b WHERE true "
    "ON CONFLICT (task_id) DO UPDATE SET "
    "first_seen_at = COALESCE(tasks.first_seen_at, excluded.first_seen_at), "
    "updated_at = MAX(tasks.updated_at, excluded.updated_at)",
)
# seen: when a poll first saw the task (its pending seen time, else at): the
# first sighting rides on the terminal row instead of a row of its own.
#
# An upsert, written as a replace: the row is rebuilt from the stored one (LEFT
# JOIN: every column kept, merged as an ON CONFLICT DO UPDATE would) and
# written anew at the end of the table. The terminal record makes a row ~15
# times larger; grown in place, each would split a page somewhere in the
# middle of the table (tasks finish in any order), which costs several times
# the append. Nothing depends on a row's rowid.
UPSERT_TERMINAL_ROWS = RowsStatement(
    "task_id, terminal, at, seen",
    4,
    "INSERT OR REPLACE INTO tasks (task_id, model, created_at, first_seen_at, terminal, "
    "terminal_at, delivered_at, deliveries, acked_at, updated_at, ref) "
    "SELECT b.task_id, t.model, COALESCE(t.created_at, b.seen), "
    "COALESCE(t.first_seen_at, b.seen), b.terminal, COALESCE(t.terminal_at, b.at), "
    "t.delivered_at, COALESCE(t.deliveries, 0), t.acked_at, "
    "MAX(COALESCE(t.updated_at, b.at), b.at, b.seen), t.ref "
    "FROM b LEFT JOIN tasks AS t ON t.task_id = b.task_id",
)
UPDATE_DELIVERED = (  # (at, deliveries, at, task_id)
    "UPDATE tasks SET delivered_at = ?, deliveries = deliveries + ?, "
    "updated_at = MAX(updated_at, ?) WHERE task_id = ?"
)
UPDATE_ACKED = (  # acked(task_id, at)
    "UPDATE tasks SET acked_at = ?, updated_at = MAX(updated_at, ?) "
    "WHERE task_id = ? AND terminal IS NOT NULL AND acked_at IS NULL"
)


def acked(task_id: str, at: float) -> tuple[float, float, str]:
    """The parameters of :data:`UPDATE_ACKED` for one ack."""
    return (at, at, task_id)


DELETE_UNCERTAIN_INTENT = "DELETE FROM intents WHERE ref = ? AND task_id IS NULL"
DELETE_TASK = "DELETE FROM tasks WHERE task_id = ?"
DELETE_OLD_TASKS = "DELETE FROM tasks WHERE created_at < ?"
DELETE_OLD_INTENTS = "DELETE FROM intents WHERE created_at < ?"

# -- reads ----------------------------------------------------------------------------

_TASK_COLUMNS = (
    "task_id, model, created_at, first_seen_at, terminal, terminal_at, "
    "delivered_at, deliveries, acked_at, updated_at, ref"
)
SELECT_TASK = f"SELECT {_TASK_COLUMNS} FROM tasks WHERE task_id = ?"
_TASK_FILTERS = {
    None: "",
    "unfinished": "WHERE terminal IS NULL",
    "undelivered": "WHERE terminal IS NOT NULL AND acked_at IS NULL",
    "acked": "WHERE acked_at IS NOT NULL",
}
SELECT_UNCERTAIN = (
    "SELECT ref, kind, request, created_at, task_id FROM intents "
    "WHERE task_id IS NULL ORDER BY created_at, ref"
)
SELECT_INTENTS = (
    "SELECT ref, kind, request, created_at, task_id FROM intents ORDER BY created_at, ref"
)


def select_tasks(state: str | None, limit: int | None) -> tuple[str, tuple[Any, ...]]:
    """The query (and its parameters) listing tasks in *state*, oldest first."""
    sql = f"SELECT {_TASK_COLUMNS} FROM tasks {_TASK_FILTERS[state]} ORDER BY created_at, task_id"
    if limit is None:
        return sql, ()
    return sql + " LIMIT ?", (limit,)


def row_to_task(row: Sequence[Any]) -> StoredTask:
    """A :class:`StoredTask` from a row of ``SELECT {task columns}``.

    :raises ValueError: a time or count column is no number (a damaged row);
        a ``terminal`` record that cannot be read is not damage enough: the
        task reads as unfinished (see _terminal_record).
    """
    (task_id, model, created_at, first_seen_at, terminal, terminal_at,
     delivered_at, deliveries, acked_at, updated_at, ref) = row  # fmt: skip
    times = {
        "created_at": created_at,
        "first_seen_at": first_seen_at,
        "terminal_at": terminal_at,
        "delivered_at": delivered_at,
        "acked_at": acked_at,
        "updated_at": updated_at,
    }
    for name, value in times.items():
        if value is not None:
            _check_time(name, value)
    _check_number("deliveries", deliveries)
    for name, value in (("task_id", task_id), ("model", model), ("ref", ref)):
        if value is not None and not isinstance(value, str):  # a BLOB, say
            raise ValueError(f"its {name} is a {type(value).__name__}, not text")
    return StoredTask(
        task_id=task_id,
        model=model,
        created_at=created_at,
        first_seen_at=first_seen_at,
        record=None if terminal is None else _terminal_record(task_id, terminal),
        terminal_at=terminal_at,
        delivered_at=delivered_at,
        deliveries=deliveries,
        acked_at=acked_at,
        updated_at=updated_at,
        ref=ref,
    )


def _terminal_record(task_id: object, text: object) -> dict[str, Any] | None:
    """A ``terminal`` column's record; None (the task reads as unfinished, so
    it is polled again) when the text is not a JSON object: one damaged row
    must not stop every other task's resume or delivery, nor lose its own."""
    try:
        record = json.loads(text)  # type: ignore[arg-type]  # the column may hold anything
    except (TypeError, ValueError, RecursionError) as exc:
        record = exc
    if isinstance(record, dict):
        return record
    logger.warning(
        "task %r: its stored record cannot be read (%s); read as unfinished",
        task_id,
        record if isinstance(record, Exception) else f"a JSON {type(record).__name__}",
    )
    return None


def row_to_intent(row: Sequence[Any]) -> StoredIntent:
    """A :class:`StoredIntent` from a row of ``SELECT ref, kind, request, created_at, task_id``.

    :raises ValueError: the row is damaged (by hand or on disk); the message
        says how, never quoting the request (it holds the user's prompt).
    """
    ref, kind, request, created_at, task_id = row
    _check_time("created_at", created_at)
    return StoredIntent(
        ref=ref, kind=kind, request=_request(request), created_at=created_at, task_id=task_id
    )


def _check_number(name: str, value: object) -> None:
    """:raises ValueError: ``value`` (a damaged row's column) is no number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"its {name} is a {type(value).__name__}, not a number")


# Epoch seconds of 10000-01-01: a time a datetime cannot hold is damage.
_LATEST_TIME = 253_402_300_800.0


def _check_time(name: str, value: object) -> None:
    """:raises ValueError: ``value`` is no epoch time a date can hold (NaN,
    infinite, negative, past the year 9999: milliseconds, say)."""
    _check_number(name, value)
    if not 0 <= value < _LATEST_TIME:  # type: ignore[operator]  # a number, checked above
        raise ValueError(f"its {name} ({value!r}) is no epoch time in seconds")


def _request(text: object) -> dict[str, Any]:
    """An intent's ``request`` column: the JSON object it was written as."""
    try:
        request = json.loads(text)  # type: ignore[arg-type]  # the column may hold anything
    except (TypeError, ValueError, RecursionError):
        raise ValueError("its request is not JSON") from None
    if not isinstance(request, dict):
        raise ValueError("its request is JSON but not an object")
    return request
