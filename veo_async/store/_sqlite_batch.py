"""One group commit: every queued write of a :class:`~veo_async.store.SQLiteStore`
in one transaction.

Durable writes arrive as :class:`Op` (each with a future its caller awaits);
write-behind ones as one :class:`Pending` per task, coalesced in memory.
Same-kind rows are written together, so a batch of 10,000 acks costs a few
calls to SQLite's thread, not 10,000. Tracked ids and write-behind rows (the
bulk: one or two rows per tracked id) go in multi-row statements, 128 rows a
step (:class:`~veo_async.store._schema.RowsStatement`), or one JSON array
for many ids: one GIL hand-off per step instead of one per row.
"""

from __future__ import annotations

import json as _json
from typing import Any

import aiosqlite

from . import _schema as sql
from ._sqlite_file import rollback
from ._writer import Op, Pending

__all__ = ["FSYNC_KINDS", "ids_json", "write_batch"]

#: Transactions holding one of these writes run with synchronous=FULL: they
#: stand for a paid POST (see SQLiteStore's module docstring).
FSYNC_KINDS = frozenset(("intent", "attach", "reconcile"))


async def write_batch(
    conn: aiosqlite.Connection, ops: list[Op], pending: dict[str, Pending], *, json: bool = False
) -> list[object]:
    """Apply *ops* and *pending* in one transaction.

    :param json: SQLite has its JSON functions: many tracked ids go in as one
        JSON array, one statement (see :func:`ids_json`).
    :returns: one result per op: its value, or the exception (``ValueError``)
        its caller should get; such an op changed nothing, the others commit.
    :raises sqlite3.Error: when the transaction failed (it was rolled back).
    """
    single = _single_row(ops, pending)
    if single is not None:
        # One row of one statement: autocommit makes it its own transaction,
        # one trip to SQLite's thread instead of three (BEGIN, the row, COMMIT).
        # The common case of results acknowledged (or ids tracked) one by one.
        await conn.execute(*single)
        return [None]
    fsync = any(op.kind in FSYNC_KINDS for op in ops)
    if fsync:
        await conn.execute("PRAGMA synchronous = FULL")
    try:
        await conn.execute("BEGIN IMMEDIATE")
        try:
            results = await _apply(conn, ops, pending, json)
            await conn.execute("COMMIT")
        except BaseException:
            await rollback(conn)
            raise
    finally:
        if fsync:
            await conn.execute("PRAGMA synchronous = NORMAL")
    return results


def _single_row(ops: list[Op], pending: dict[str, Pending]) -> tuple[str, Any] | None:
    """The one statement and row of a batch that is just one ack or one tracked id."""
    if pending or len(ops) != 1:
        return None
    op = ops[0]
    if op.kind == "ack":
        return sql.UPDATE_ACKED, sql.acked(*op.args)
    if op.kind == "track" and len(op.args[0]) == 1:
        ids, model, when = op.args
        return sql.UPSERT_TRACKED, (ids[0], model, when, when)
    return None


def ids_json(ids: list[str]) -> str | None:
    """*ids* as a JSON array SQLite's ``json_each`` reads back exactly, or None.

    Only for ASCII ids without NUL (Kie's are ``[0-9a-z_]``): JSON escapes
    every other character faithfully, but a lone surrogate or a NUL would not
    come back as the same text (the row-by-row path decides those as it always
    did).
    """
    joined = "".join(ids)
    if not joined.isascii() or "\x00" in joined:
        return None
    return _json.dumps(ids)


async def _write_rows(
    conn: aiosqlite.Connection, statement: sql.RowsStatement, flat: list[Any]
) -> None:
    """Write the rows of *flat* (``statement.width`` values a row, one after
    another): full steps of ``ROWS_PER_STATEMENT`` rows, then the rest."""
    width = statement.width
    step = sql.ROWS_PER_STATEMENT * width
    full = len(flat) // step * step
    if full:
        chunks = [flat[start : start + step] for start in range(0, full, step)]
        await conn.executemany(statement.text(sql.ROWS_PER_STATEMENT), chunks)
    if full < len(flat):
        await conn.execute(statement.text((len(flat) - full) // width), flat[full:])


async def _track(conn: aiosqlite.Connection, ops: list[Op], tracked: list[int], json: bool) -> None:
    rows: list[Any] = []
    for index in tracked:
        ids, model, when = ops[index].args
        array = ids_json(ids) if json and len(ids) > 1 else None
        if array is None:
            for task_id in ids:
                rows += (task_id, model, when)
        else:
            await conn.execute(sql.UPSERT_TRACKED_JSON, (model, when, when, array))
    if rows:
        await _write_rows(conn, sql.UPSERT_TRACKED_ROWS, rows)


async def _apply(
    conn: aiosqlite.Connection, ops: list[Op], pending: dict[str, Pending], json: bool
) -> list[object]:
    results: list[object] = [None] * len(ops)
    tracked: list[int] = []
    acks: list[tuple[Any, ...]] = []
    forgets: list[int] = []
    for index, op in enumerate(ops):
        if op.kind == "intent":
            cursor = await conn.execute(sql.INSERT_INTENT, op.args)
            if cursor.rowcount == 0:
                results[index] = ValueError(f"intent ref {op.args[0]!r} is already recorded")
        elif op.kind in ("attach", "reconcile"):
            results[index] = await _attach(conn, op.kind == "reconcile", *op.args)
        elif op.kind == "track":
            tracked.append(index)
        elif op.kind == "ack":
            acks.append(sql.acked(*op.args))
        elif op.kind == "discard":
            cursor = await conn.execute(sql.DELETE_UNCERTAIN_INTENT, op.args)
            results[index] = cursor.rowcount > 0
        elif op.kind == "forget":
            forgets.append(index)
        elif op.kind == "purge":
            tasks = await conn.execute(sql.DELETE_OLD_TASKS, op.args)
            intents = await conn.execute(sql.DELETE_OLD_INTENTS, op.args)
            results[index] = tasks.rowcount + intents.rowcount
        else:  # pragma: no cover - kinds are made in this package only
            raise AssertionError(f"unknown store operation {op.kind!r}")
    if tracked:
        await _track(conn, ops, tracked, json)
    if pending:
        await _apply_pending(conn, pending)
    # Last: an ack must find the terminal record it acknowledges, which may be
    # in this very batch.
    if acks:
        await conn.executemany(sql.UPDATE_ACKED, acks)
    # After the write-behind rows, which would otherwise bring a forgotten task back.
    for index in forgets:
        cursor = await conn.execute(sql.DELETE_TASK, ops[index].args)
        results[index] = cursor.rowcount > 0
    return results


async def _attach(
    conn: aiosqlite.Connection,
    reconciling: bool,
    ref: str,
    task_id: str,
    model: str | None,
    at: float,
) -> object:
    rows = list(await conn.execute_fetchall(sql.SELECT_INTENT, (ref,)))
    if not rows:
        return False if reconciling else ValueError(f"no intent with ref {ref!r}")
    try:
        intent = sql.row_to_intent(rows[0])
    except ValueError as exc:  # a damaged row fails this op only, not the whole batch
        return ValueError(f"intent {ref!r} cannot be read ({exc})")
    if intent.task_id is not None and intent.task_id != task_id:
        if reconciling:
            return False
        return ValueError(f"intent {ref!r} already has task id {intent.task_id!r}")
    if model is None and isinstance(intent.request.get("model"), str) and intent.request["model"]:
        model = intent.request["model"]
    await conn.execute(sql.SET_INTENT_TASK, (task_id, ref))
    await conn.execute(
        sql.UPSERT_CREATED, (task_id, model, intent.created_at, max(at, intent.created_at), ref)
    )
    return True if reconciling else None


async def _apply_pending(conn: aiosqlite.Connection, pending: dict[str, Pending]) -> None:
    # One pass, one row per task and kind; a task with a terminal record
    # writes its first sighting in that row (one row, not two).
    # Rows flat, as the multi-row statements take them.
    seen: list[Any] = []
    terminal: list[Any] = []
    delivered: list[tuple[float | None, int, float | None, str]] = []
    for tid, p in pending.items():
        text = p.terminal
        if text is not None:
            at = p.terminal_at
            assert at is not None  # set together with the text
            terminal += (tid, text, at, at if p.seen_at is None else p.seen_at)
        elif p.seen_at is not None:
            seen += (tid, p.seen_at)
        if p.deliveries:
            delivered.append((p.delivered_at, p.deliveries, p.delivered_at, tid))
    if seen:
        await _write_rows(conn, sql.UPSERT_SEEN_ROWS, seen)
    if terminal:
        await _write_rows(conn, sql.UPSERT_TERMINAL_ROWS, terminal)
    if delivered:
        await conn.executemany(sql.UPDATE_DELIVERED, delivered)
