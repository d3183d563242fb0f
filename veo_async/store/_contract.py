"""The :class:`TaskStore` protocol: what a session needs from durable storage.

Two kinds of writes, by what a crash between the call and the disk would cost:

- **durable** (committed before the call returns): :meth:`~TaskStore.record_intent`,
  :meth:`~TaskStore.attach_task_id`, :meth:`~TaskStore.reconcile`,
  :meth:`~TaskStore.discard_intent`, :meth:`~TaskStore.track`,
  :meth:`~TaskStore.ack`, :meth:`~TaskStore.forget`. Losing one would lose a paid
  task, an id the user handed over, or deliver a result twice after it was
  acknowledged.
- **write-behind** (may be batched, committed within a short interval, on
  :meth:`~TaskStore.flush` and on :meth:`~TaskStore.aclose`):
  :meth:`~TaskStore.record_seen`, :meth:`~TaskStore.record_terminal`,
  :meth:`~TaskStore.mark_delivered`. Losing one only costs a poll again, or a
  delivery counted once too few.

Reads see every write made before them, committed or not. Times are epoch
seconds (``time.time()``), passed in by the caller so that tests control them.
Implementations: :class:`~veo_async.store.SQLiteStore` (one file, embedded);
a networked one (e.g. Redis) implements the same methods.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, Literal, Protocol, runtime_checkable

from ..models import RecordInfo
from ._values import StoredIntent, StoredTask

__all__ = ["DEFAULT_RETENTION", "LeasedStore", "TaskState", "TaskStore", "WriteBehindBatches"]

#: Kie keeps task records 14 days; after that a task can be neither polled nor fetched.
DEFAULT_RETENTION = 14 * 86400.0

#: The states :meth:`TaskStore.list_tasks` filters on.
TaskState = Literal["unfinished", "undelivered", "acked"]


@runtime_checkable
class TaskStore(Protocol):
    """Durable tracking of created and followed tasks (see the module docstring)."""

    @property
    def closed(self) -> bool:
        """True once :meth:`aclose` was called."""
        ...

    async def open(self) -> None:
        """Open (and lock) the store; a second call does nothing.

        :raises StoreError: (a subclass) when the store cannot be used.
        """
        ...

    async def aclose(self) -> None:
        """Write everything pending, then release the store; idempotent."""
        ...

    async def __aenter__(self) -> TaskStore:
        """:meth:`open`, then the store itself."""
        ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """:meth:`aclose`."""
        ...

    # -- durable writes ---------------------------------------------------------------

    async def record_intent(
        self, ref: str, kind: str, request: Mapping[str, Any], created_at: float
    ) -> None:
        """Write a create intent, committed before returning (it precedes a paid POST).

        :param ref: a new client-side reference (:func:`~veo_async.store.new_ref`).
        :param kind: what is being created (``"generate"``, ``"extend"``, ...).
        :param request: the request body; must be JSON-serialisable.
        :raises ValueError: for an invalid or already recorded *ref*.
        :raises TypeError: when *request* cannot be written as JSON.
        """
        ...

    async def attach_task_id(
        self, ref: str, task_id: str, model: str | None = None, *, at: float | None = None
    ) -> None:
        """Attach the task id the POST answered to its intent, and track the task.

        The task's ``created_at`` is the intent's; its model is *model*, else
        the request's ``"model"`` field when it has one.

        :raises ValueError: when *ref* is unknown or already has another task id.
        """
        ...

    async def reconcile(self, ref: str, task_id: str, *, at: float | None = None) -> bool:
        """Attach *task_id* to an (uncertain) intent from a later source, e.g. a
        callback whose URL carried ``?veo_ref=...`` (see :func:`~veo_async.store.ref_of`).

        :returns: True when the intent now has this task id (also when it had
            it already); False when *ref* is unknown or has another task id.
        """
        ...

    async def discard_intent(self, ref: str) -> bool:
        """Delete an intent whose POST certainly created nothing (a definite
        rejection), so that it is not reported as uncertain.

        :returns: True when an intent without a task id was deleted; False when
            *ref* is unknown or already has a task id (then it is kept).
        """
        ...

    async def track(
        self,
        task_ids: Iterable[str],
        *,
        model: str | None = None,
        created_at: float | None = None,
    ) -> None:
        """Follow ids a user gave; idempotent (existing rows keep their data).

        :param created_at: their creation time when known, else now.
        """
        ...

    async def ack(self, task_id: str, *, at: float | None = None) -> None:
        """Acknowledge a finished task: it is never listed as undelivered again.

        Acknowledging an unknown or unfinished id changes nothing.
        """
        ...

    async def forget(self, task_id: str) -> bool:
        """Stop following a task: delete its row (e.g. an id the service does
        not know). Its intent, if any, keeps its task id.

        :returns: True when a row was deleted.
        """
        ...

    # -- write-behind -----------------------------------------------------------------

    async def record_seen(self, task_id: str, at: float) -> None:
        """Note that a poll saw the task's record (the first time counts)."""
        ...

    async def record_terminal(self, task_id: str, record: Mapping[str, Any], at: float) -> None:
        """Store the task's terminal record (a :func:`record_to_json` dict)."""
        ...

    async def mark_delivered(self, task_id: str, *, at: float | None = None) -> None:
        """Note that the finished task was handed to the user (not an ack)."""
        ...

    async def flush(self) -> None:
        """Commit every write-behind change made so far."""
        ...

    # -- reads ------------------------------------------------------------------------

    async def get(self, task_id: str) -> StoredTask | None:
        """The task, or None when the store does not know it."""
        ...

    async def get_intent(self, ref: str) -> StoredIntent | None:
        """The intent, or None when the store does not know it."""
        ...

    async def unfinished(self) -> list[StoredTask]:
        """Tasks with no terminal record yet (to resume polling), oldest first."""
        ...

    async def undelivered(self) -> list[StoredTask]:
        """Finished tasks not yet acknowledged (to hand over again), oldest first."""
        ...

    async def uncertain(self) -> list[StoredIntent]:
        """Intents with no task id (to report, never to resend), oldest first."""
        ...

    async def intents(self) -> list[StoredIntent]:
        """Every intent kept: the creates sent, with their task id, or uncertain
        (None), oldest first; also those whose task was forgotten since (what
        was sent, so as never to send it again)."""
        ...

    async def list_tasks(
        self, state: TaskState | None = None, limit: int | None = None
    ) -> list[StoredTask]:
        """Tasks in *state* (all when None), oldest first, at most *limit*."""
        ...

    # -- housekeeping -----------------------------------------------------------------

    async def purge(
        self, older_than_seconds: float = DEFAULT_RETENTION, *, now: float | None = None
    ) -> int:
        """Delete tasks and intents created more than *older_than_seconds* before *now*.

        Whatever their state: past Kie's retention a task can be neither polled
        nor fetched, so its row only takes space.

        :returns: how many rows (tasks and intents) were deleted.
        """
        ...


@runtime_checkable
class WriteBehindBatches(Protocol):
    """A store that takes many write-behind changes in one call (optional).

    Durable tracking hands its changes to such a store in one call per batch
    instead of one awaited call per change; any other :class:`TaskStore` gets
    :meth:`~TaskStore.record_seen`, :meth:`~TaskStore.record_terminal` and
    :meth:`~TaskStore.mark_delivered` calls. See
    :meth:`veo_async.store.SQLiteStore.write_behind`.
    """

    def write_behind(
        self,
        seen: Iterable[tuple[str, float]] = (),
        terminal: Iterable[tuple[str, RecordInfo, float]] = (),
        delivered: Iterable[tuple[str, float]] = (),
    ) -> None:
        """Note many write-behind changes at once (no await)."""
        ...


@runtime_checkable
class LeasedStore(Protocol):
    """A store held under a lease it can lose while open (optional), as
    :class:`~veo_async.store.RedisStore` is.

    Once the lease is lost, another process may own the store and deliver and
    acknowledge its tasks: durable tracking asks before it hands over each
    result, and ends :meth:`~veo_async.VeoSession.completed` instead of
    yielding one the new owner may have acknowledged already.
    """

    def check_lease(self) -> None:
        """Return while the lease is not known to be lost.

        :raises StoreLockedError: once a renewal or a write found the lease
            lost (it lapsed, or another process took the store over).
        """
        ...
