"""``veo-async tasks list|show|resume --store FILE``, and the store side of ``wait --store``.

A store (:class:`~veo_async.SQLiteStore`, or a :class:`~veo_async.RedisStore`
named by a ``redis://`` URL) remembers every task a run created or tracked.
``list`` and ``show`` read it (no API key, no request);
``resume`` (and ``wait --store``) resumes what an interrupted run left
unfinished and writes one JSON line per result, acknowledging each once its
line is written: a result is written at least once, and never again after that.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import aclosing
from pathlib import Path
from typing import Any

import click

from .. import (
    RedisStore,
    SQLiteStore,
    StoreCorruptError,
    StoredTask,
    StoreError,
    StoreVersionError,
    TaskStatus,
    VeoSession,
    VeoTask,
)
from ..models import validate_task_id

__all__ = ["STORE_HELP", "delivered_from_store", "open_store", "require_existing_store", "tasks"]

STORE_HELP = (
    "Record the tasks in this store file (SQLite; or a redis:// URL, its namespace as "
    "#fragment, default veo) and resume those an interrupted run left unfinished; each "
    "result is written until its line is out, then acknowledged."
)
#: What starts a --store that names a Redis server rather than a file.
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
#: Any store the command line opens.
AnyStore = SQLiteStore | RedisStore
_STATES = ("unfinished", "undelivered", "acked")


def is_redis(path: str) -> bool:
    """Whether a --store names a Redis server (a URL, any case) rather than a file."""
    return path.lower().startswith(_REDIS_SCHEMES)


def open_store(path: str, *, create: bool = True) -> AnyStore:
    """The store *path* names, checked before any I/O: a SQLite file, or a
    ``redis://`` URL whose ``#fragment`` is the namespace (default ``veo``).

    :raises click.UsageError: for a path that cannot name a store.
    """
    try:
        # A command line finds out at once that another process holds the store,
        # rather than waiting the library's default 2 s for its lock.
        if is_redis(path):
            return _redis_store(path, create=create)
        _check_store_file(path)
        return SQLiteStore(path, lock_timeout=0.3)
    except (TypeError, ValueError) as exc:
        raise click.UsageError(f"--store: {exc}") from None


def _check_store_file(path: str) -> None:
    """Refuse a store file that cannot be, as -o does (a usage error, exit 2):
    a directory, or a file in a directory that does not exist."""
    target = Path(path)
    if target.is_dir():
        raise ValueError(f"{path} is a directory, not a store file")
    if not target.parent.is_dir():
        raise ValueError(f"the directory of {path} does not exist")


def _redis_store(path: str, *, create: bool) -> RedisStore:
    """``URL[#namespace]``: a namespace has no "#", so the last one starts it
    (a password may hold one). Refused without quoting it: what follows a
    "#" may be part of a password."""
    url, mark, namespace = path.rpartition("#")
    if not mark:
        url, namespace = path, "veo"
    try:
        return RedisStore(url, namespace=namespace, lock_timeout=0.3, create=create)
    except ValueError as exc:
        if "namespace" not in str(exc):
            raise
    raise ValueError(
        "a redis URL's #namespace must be 1-64 of A-Z a-z 0-9 . _ : / - "
        "(a \"#\" in the password must be written %23)"
    )


def store_failure(exc: StoreError) -> click.ClickException:
    """The one-line CLI error of a store that cannot be used: a usage error
    (exit 2) for a file that is no store this version can read (corrupt,
    foreign, newer), exit 1 for one another process holds."""
    if isinstance(exc, (StoreCorruptError, StoreVersionError)):
        return click.UsageError(f"--store: {exc}")
    return click.ClickException(str(exc))


async def delivered_from_store(
    veo: VeoSession,
    task_ids: Sequence[str],
    on_total: Callable[[int], None],
    on_earlier: Callable[[TaskStatus | None], None] | None = None,
) -> AsyncGenerator[VeoTask, None]:
    """Track *task_ids*, resume the store, yield each result not yet acknowledged.

    A handle is acknowledged when the caller asks for the next one (its line is
    written by then); leaving early acknowledges nothing more.

    :param on_total: called once with how many tasks will be yielded at most.
    :param on_earlier: called with the stored status (None: not readable) of
        each of *task_ids* an earlier run delivered and acknowledged: its
        outcome still counts (a failed task must not exit 0 the second time).
    """
    if task_ids:
        await veo.track(task_ids)
    report = await veo.resume()
    on_total(len(set(task_ids) | {t.task_id for t in report.tasks + report.undelivered}))
    for intent in report.uncertain:
        click.echo(
            f"veo-async: uncertain create (ref {intent.ref}, "
            f"{dt.datetime.fromtimestamp(intent.created_at, dt.timezone.utc):%Y-%m-%d %H:%M:%S}Z): "
            "the task may or may not exist; not resent",
            err=True,
        )
    named = set(task_ids)
    async with aclosing(veo.completed()) as finished:
        async for handle in finished:
            named.discard(handle.task_id)
            yield handle
            await handle.ack()
    # Named on the command line but delivered and acknowledged by an earlier
    # run: say so, rather than print nothing for them.
    store = veo.store
    for task_id in sorted(named):
        stored = await store.get(task_id) if store is not None else None
        status = stored.status if stored is not None else None
        shown = status.name if status is not None else "outcome not readable"
        click.echo(
            f"veo-async: {task_id}: already delivered and acknowledged by an earlier run "
            f"({shown}; see 'veo-async tasks show')",
            err=True,
        )
        if on_earlier is not None:
            on_earlier(status)


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _state(task: StoredTask) -> str:
    if task.acked:
        return "acked"
    if task.is_terminal:
        return "undelivered"
    return "unfinished"


def _task_json(task: StoredTask, *, record: bool) -> dict[str, Any]:
    # The model and creation time the table shows (the record's, for an id
    # handed in), not the row's bare fields: the two views of a task agree.
    model, created_at = _model_and_creation(task)
    data: dict[str, Any] = {
        "task_id": task.task_id,
        "state": _state(task),
        "status": None if task.status is None else task.status.name,
        "model": model,
        "created_at": created_at,
        "first_seen_at": task.first_seen_at,
        "terminal_at": task.terminal_at,
        "deliveries": task.deliveries,
        "acked_at": task.acked_at,
        "ref": task.ref,
    }
    if record:
        data["record"] = _record_json(task)
    return data


def _record_json(task: StoredTask) -> dict[str, Any] | None:
    """The stored record as ``wait`` and ``status --json`` write records
    (``"status": "SUCCESS"``); as stored when it cannot be read."""
    try:
        info = task.record_info()
    except ValueError:
        return task.record
    return None if info is None else info.to_jsonable()


def _model_and_creation(task: StoredTask) -> tuple[str | None, float]:
    """The MODEL and CREATED columns of a task: its stored record's, where the
    store has only when it began tracking an id handed in (and no model)."""
    model, created_at = task.model, task.created_at
    try:
        info = task.record_info()
    except ValueError:  # a stored record this version cannot read: the row as is
        info = None
    if info is not None:
        if model is None and isinstance(info.params.get("model"), str):
            model = info.params["model"]
        if info.create_time is not None:
            created_at = info.create_time.timestamp()
    return model, created_at


def _store_option(func: Any) -> Any:
    return click.option(
        "--store",
        "store_path",
        required=True,
        metavar="FILE|URL",
        help="The store file, or a redis:// URL (#namespace).",
    )(func)


def require_existing_store(path: str) -> None:
    """Refuse a store file that does not exist: reading or resuming never
    makes one (a misspelt path would show an empty store, or resume nothing
    with success, and leave a file behind).

    :raises click.UsageError: naming the path.
    """
    if not is_redis(path) and not os.path.exists(path):
        raise click.UsageError(f"--store: {path}: no such store file")


def _read(path: str, reader: Callable[[AnyStore], Any]) -> Any:
    """``reader(store)`` on an existing store (see require_existing_store)."""
    require_existing_store(path)
    store = open_store(path, create=False)  # (a Redis namespace: none is made either)

    async def main() -> Any:
        async with store:
            return await reader(store)

    try:
        return asyncio.run(main())
    except StoreError as exc:
        raise store_failure(exc) from None


@click.group()
def tasks() -> None:
    """The tasks a store file remembers (see "wait --store").

    A store is held by one command at a time: while a "wait --store" or
    "generate --store" runs on it, these commands say it is in use (exit 1);
    read it once that run ends or is interrupted.
    """


@tasks.command("list")
@_store_option
@click.option("--state", type=click.Choice(_STATES), default=None, help="Only tasks in this state.")
@click.option("--limit", type=click.IntRange(min=0), default=None, help="At most this many.")
@click.option("--json", "as_json", is_flag=True, help="One JSON line per task instead of a table.")
def list_tasks(store_path: str, state: str | None, limit: int | None, as_json: bool) -> int:
    """List the stored tasks, oldest first, and count the uncertain creates.

    \b
    States: unfinished  no terminal record yet (resumed by "tasks resume")
            undelivered finished, its result not acknowledged yet
            acked       finished and acknowledged
    """

    async def read(store: AnyStore) -> tuple[list[StoredTask], int]:
        return await store.list_tasks(state, limit), len(await store.uncertain())  # type: ignore[arg-type]

    found, uncertain = _read(store_path, read)
    if as_json:
        for task in found:
            click.echo(json.dumps(_task_json(task, record=False)))
    else:
        click.echo(f"{'TASK ID':<40} {'STATE':<12} {'STATUS':<18} {'MODEL':<10} CREATED (UTC)")
        for task in found:
            status = "-" if task.status is None else task.status.name
            model, created_at = _model_and_creation(task)
            click.echo(
                f"{task.task_id:<40} {_state(task):<12} {status:<18} "
                f"{model or '-':<10} {_when(created_at)}"
            )
    if uncertain:
        click.echo(
            f"veo-async: {uncertain} uncertain create(s): the task may or may not exist "
            "(never resent)",
            err=True,
        )
    return 0


@tasks.command("show")
@click.argument("task_id")
@_store_option
def show(task_id: str, store_path: str) -> int:
    """Print one stored task, with its terminal record, as JSON."""

    try:
        validate_task_id(task_id)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None

    async def read(store: AnyStore) -> StoredTask | None:
        return await store.get(task_id)

    found = _read(store_path, read)
    if found is None:
        # Not a Redis URL as given: its user info may hold a password.
        where = "that Redis namespace" if is_redis(store_path) else store_path
        raise click.ClickException(f"task {task_id} is not in {where}")
    click.echo(json.dumps(_task_json(found, record=True), indent=2))
    return 0
