"""Durable tracking: the session's side of a :class:`~veo_async.store.TaskStore`.

:class:`DurableTracker` is the registry's :class:`~veo_async._task.TaskJournal`
when a session has a store. What it writes, and when:

- **ids a user hands over**: ``wait_many``/``as_completed`` ids are tracked in
  one durable write before polling starts; ``veo.task(id)`` (which does no
  I/O) queues its id, written with the next batch;
- **creations**: the intent before the POST, the task id after the answer
  (see :func:`veo_async._create.submit_recorded`);
- **first seen, terminal record, delivered**: noted in memory on the poll
  path (a list append), handed to the store by one background writer in
  batches (one :meth:`~veo_async.store.WriteBehindBatches.write_behind` call
  per batch when the store takes them, as SQLiteStore does; else one call per
  note); the store commits them write-behind. Nothing else on the poll path
  touches the store;
- **acks**: the pending notes are handed over first (an ack must find the
  terminal record it acknowledges), then the ack is committed before
  :meth:`VeoTask.ack` returns.

:meth:`DurableTracker.completed` delivers at least once: each stored task
whose terminal record is not acknowledged is yielded once per iteration, so
again by a later :meth:`~veo_async.VeoSession.completed` call and after a
restart, until :meth:`VeoTask.ack`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import AsyncGenerator, Callable, Container, Iterable
from typing import TypeVar

import attrs

from ._pacer import AnyPolicy
from ._task import Subscription, TaskRegistry, VeoTask
from .errors import AuthenticationError, RecordNotFoundError, SessionClosedError, VeoError
from .events import RAISED_TOO
from .models import RecordInfo, validate_task_id
from .store import (
    LeasedStore,
    StoredIntent,
    StoredTask,
    TaskStore,
    WriteBehindBatches,
    record_to_json,
)

__all__ = ["DurableTracker", "ResumeReport"]

logger = logging.getLogger("veo_async")

#: Errors that end a stored task's polling for good, as its outcome (the
#: service does not know the id): yielded by completed(); ack() forgets them.
#: Not a 404 (NotFoundError): the reference's unknown id is a 422 "record is
#: null"; a 404 is a path the server does not serve (a base URL with a wrong
#: path, a proxy's missing route), which says nothing of the task: it ends the
#: iteration like any other error, and the task stays stored.
GONE = (RecordNotFoundError,)

_T = TypeVar("_T")

#: The writer waits this long after a first note, so that one batch carries
#: many (one wake-up per batch, not one per poll answer).
WRITE_DELAY = 0.05


@attrs.frozen(eq=False)
class ResumeReport:
    """What :meth:`VeoSession.resume` found in the store.

    :ivar tasks: the handles of every unfinished task, oldest first; their
        polling has resumed (age-aware: a task created before the restart is
        polled as the age it has now).
    :ivar undelivered: the handles of finished tasks whose results were not
        acknowledged; :meth:`VeoSession.completed` hands them over again.
    :ivar uncertain: create intents with no task id (the process stopped, or
        the answer was lost, between writing the intent and storing the id):
        the task may or may not exist. Reported, never resent; see
        :meth:`TaskStore.reconcile`.
    """

    tasks: tuple[VeoTask, ...]
    undelivered: tuple[VeoTask, ...]
    uncertain: tuple[StoredIntent, ...]


# Stored rows handled per loop step when resuming or delivering.
_ROWS_PER_STEP = 500
# Acknowledged ids a session remembers, to never deliver again while a
# completed() runs (a few MB at most; an older one could come back only if
# polled again after that many later acks).
_ACKED_KEPT = 100_000

# The session tracker holding each open store, by the store's id(): the entry
# lives as long as its tracker (which holds the store, so the id is not reused).
_STORE_HOLDERS: weakref.WeakValueDictionary[int, DurableTracker] = weakref.WeakValueDictionary()


def _usable(rows: Iterable[StoredTask]) -> list[StoredTask]:
    """The rows whose task id can be polled. Others (a store written by hand,
    or by a version that did not check ids) are skipped with a warning: one
    bad row must not stop every other task from resuming."""
    usable = []
    for stored in rows:
        try:
            validate_task_id(stored.task_id)
        except (TypeError, ValueError) as exc:
            logger.warning("store row skipped, not a usable task id: %s", exc)
            continue
        usable.append(stored)
    return usable


async def _stored_rows(
    unfinished: Iterable[StoredTask], undelivered: Iterable[StoredTask]
) -> tuple[list[StoredTask], list[tuple[StoredTask, RecordInfo]]]:
    """The usable rows to poll, and the finished ones with their records.

    A finished row whose record cannot be read (damaged by hand or on disk)
    is polled again, with a warning: the service still has the record, and
    neither the task nor the others are lost over it. The records are read
    a slice per loop step (tens of microseconds each: 20,000 of them in one
    step stalled the loop for 150 ms).
    """
    to_poll = _usable(unfinished)
    finished = []
    for count, stored in enumerate(_usable(undelivered), start=1):
        try:
            record = stored.record_info()
        except ValueError as exc:
            logger.warning("task %s: %s; polled again", stored.task_id, exc)
            record = None
        if record is None:  # (the store found no JSON object: it said so)
            to_poll.append(attrs.evolve(stored, record=None))
        else:
            finished.append((stored, record))
        await _now_and_then(count)
    return to_poll, finished


async def _now_and_then(count: int) -> None:
    """Let the loop run once every ``_ROWS_PER_STEP`` rows (``count`` so far)."""
    if count % _ROWS_PER_STEP == 0:
        await asyncio.sleep(0)


def _restore(registry: TaskRegistry, stored: StoredTask, record: RecordInfo | None) -> VeoTask:
    # Only a task created under an intent has a true creation time; a tracked
    # id's created_at is when it was first tracked, so its age comes from its
    # record's createTime at the first poll instead.
    return registry.restore(
        stored.task_id,
        model=stored.model,
        created_at=stored.created_at if stored.ref is not None else None,
        record=record,
    )


class _Delivery:
    """One iteration of :meth:`DurableTracker.completed`: what it follows and holds."""

    def __init__(
        self, policy: AnyPolicy | None, acked: Container[str], claims: dict[str, _Delivery]
    ) -> None:
        self.policy = policy
        self.ready: deque[VeoTask] = deque()
        #: Handles queued or yielded by this iteration and not acknowledged:
        #: each is yielded once. Acknowledged ones leave it (an iteration that
        #: follows for days must not keep every id it ever handed out):
        #: ``acked``, the session's latest acknowledged ids, keeps them out.
        self.held: dict[str, VeoTask] = {}
        self._acked = acked
        # The session's running iterations share their results: each is
        # queued by every one, and claimed by the first to come to it in its
        # queue (see take): two consumers split the work instead of each
        # handling every result, or the first told taking them all while the
        # other idles. One claimed is offered again to the others if its
        # iteration ends without acknowledging it.
        self._claims = claims
        self.waiting: dict[str, Subscription] = {}
        self.error: BaseException | None = None
        self._wake: asyncio.Future[None] | None = None
        self._listener = self._on_change

    def follow(self, handle: VeoTask) -> None:
        """Poll an unfinished handle for this iteration (its outcome is then queued)."""
        task_id = handle.task_id
        if task_id in self.held or task_id in self.waiting or task_id in self._acked:
            return
        if handle.done():
            self.arrived(handle)
            return
        try:
            self.waiting[task_id] = handle.subscribe(self._listener, self.policy)
        except (AuthenticationError, SessionClosedError) as exc:
            # A 401 stopped the session (or it closed): this iteration ends
            # with it. Not raised here: follow() is called by veo.task(),
            # track() and generate() for the iterations running, and they
            # must not fail for it (the task was created, the ids written).
            self.fail(exc)

    def _on_change(self, handle: VeoTask, error: BaseException | None) -> None:
        if error is None and not handle.done():
            return
        # The run has ended or is ending: drop our hold without closing it.
        if self.waiting.pop(handle.task_id, None) is None:
            return
        if error is None or isinstance(error, GONE):
            self.arrived(handle)
        else:
            self.fail(error)

    def fail(self, error: BaseException) -> None:
        """End the iteration with ``error`` (the first one told), once what
        is queued has been yielded."""
        if self.error is None:
            self.error = error
            self.wake()

    def acked(self, task_id: str) -> None:
        """Acknowledged (by this iteration's consumer or another): never
        yielded by this iteration, if it was not already; no longer followed."""
        self.held.pop(task_id, None)
        subscription = self.waiting.pop(task_id, None)
        if subscription is not None:
            subscription.close()
        for handle in [handle for handle in self.ready if handle.task_id == task_id]:
            self.ready.remove(handle)

    def arrived(self, handle: VeoTask) -> None:
        """A handle reached its outcome: queue it (once)."""
        task_id = handle.task_id
        if task_id in self.held or task_id in self._acked:
            return
        subscription = self.waiting.pop(task_id, None)
        if subscription is not None:
            subscription.close()
        self.held[task_id] = handle
        self.ready.append(handle)
        self.wake()

    def take(self) -> VeoTask | None:
        """The next result queued that no other iteration claimed, claimed for
        this one; None when the queue is empty. One another iteration claimed
        is dropped here (offered again if that one lets go: see release)."""
        while self.ready:
            handle = self.ready.popleft()
            task_id = handle.task_id
            if self._claims.setdefault(task_id, self) is self:
                return handle
            self.held.pop(task_id, None)
        return None

    def release(self) -> list[VeoTask]:
        """Let go of the results claimed and not acknowledged (the iteration
        ended): the handles, for the other iterations to take."""
        released = [
            handle for task_id, handle in self.held.items() if self._claims.get(task_id) is self
        ]
        for handle in released:
            del self._claims[handle.task_id]
        self.held.clear()
        return released

    def wake(self) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def changed(self) -> None:
        """Sleep until something is queued or failed."""
        self._wake = asyncio.get_running_loop().create_future()
        try:
            await self._wake
        finally:
            self._wake = None

    async def close(self) -> None:
        subscriptions, self.waiting = self.waiting, {}
        stopped = [
            request for sub in subscriptions.values() if (request := sub.close()) is not None
        ]
        if stopped:
            await asyncio.wait(stopped)


class DurableTracker:
    """Records a session's tasks in its store; resumes and delivers from it.

    See the module docstring. The session owns the store: it is opened on
    first use (or when the session is entered) and closed by :meth:`aclose`.

    :param store: the store.
    """

    def __init__(self, store: TaskStore) -> None:
        self.store = store
        self._opened = False
        self._open_failed = False
        self._open_lock = asyncio.Lock()
        self._drain_lock = asyncio.Lock()
        # Notes waiting for the writer, one list per kind: (task id, epoch
        # time), with the record for terminal ones; ids to track.
        self._tracked: list[str] = []
        self._seen: list[tuple[str, float]] = []
        self._terminal: list[tuple[str, RecordInfo, float]] = []
        self._delivered: list[tuple[str, float]] = []
        self._writer: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None
        self._deliveries: set[_Delivery] = set()
        # Which running iteration holds each result (see _Delivery).
        self._claims: dict[str, _Delivery] = {}
        # Ids acknowledged by this session, the latest _ACKED_KEPT (oldest
        # first): a running completed() that reads none of them from the store
        # must not take one again from a later poll of it either.
        # Ordered: the oldest let go of in O(1) (popitem; a dict's
        # next(iter()) walks the deleted slots piling up at its front).
        self._acked: OrderedDict[str, None] = OrderedDict()
        self._keepers: dict[str, Subscription] = {}
        self._keeper = self._on_kept_change
        self._closed = False

    # -- the journal (called by the registry) ---------------------------------------

    def seen(self, handle: VeoTask) -> None:
        """Note a handle's first record (write-behind)."""
        self._note(self._seen, (handle.task_id, time.time()))

    def finished(self, handle: VeoTask) -> None:
        """Note a terminal record (write-behind) and hand the handle to deliveries."""
        record = handle.record
        if record is not None:
            self._note(self._terminal, (handle.task_id, record, time.time()))
        for delivery in self._deliveries:
            delivery.arrived(handle)  # (an acknowledged one: skipped there)

    def stopped(self, stopped_error: Callable[[], VeoError]) -> None:
        """A 401 stopped the session: every running iteration ends with it
        (a copy each), once it has yielded what it holds; one following new
        tasks while it polls none would otherwise wait until the close."""
        for delivery in self._deliveries:
            delivery.fail(stopped_error())

    def adopted(self, handle: VeoTask) -> None:
        """A task this session created: running deliveries follow it too."""
        for delivery in self._deliveries:
            delivery.follow(handle)

    async def opened(self) -> TaskStore:
        """The store, opened on first use.

        :raises StoreError: when it cannot be opened (locked, corrupt, newer schema...).
        :raises SessionClosedError: the session is closed.
        """
        if self._closed:
            raise SessionClosedError("this VeoSession is closed; open a new one")
        if not self._opened:
            async with self._open_lock:
                if self._closed:  # closed while this waited for the lock
                    raise SessionClosedError("this VeoSession is closed; open a new one")
                if not self._opened:
                    self._claim()
                    try:
                        await self.store.open()
                    except BaseException:
                        self._open_failed = True
                        self._release()
                        if self._closed:  # closed while opening: the store refused
                            raise SessionClosedError(
                                "this VeoSession was closed while its store opened"
                            ) from None
                        raise
                    self._opened = True
        return self.store

    def _claim(self) -> None:
        """Make the store this session's, or raise if another open session has it:
        the first to close would close it under the other (which would then
        lose its writes)."""
        holder = _STORE_HOLDERS.get(id(self.store))
        if holder is not None and holder is not self and not holder._closed:
            raise RuntimeError(
                f"{self.store!r} is already in use by another open VeoSession;"
                " give each session its own store object (one per file), or share the session"
            )
        _STORE_HOLDERS[id(self.store)] = self

    def _release(self) -> bool:
        """Give the store up; False if another open session holds it (leave it open)."""
        holder = _STORE_HOLDERS.get(id(self.store))
        if holder is self:
            del _STORE_HOLDERS[id(self.store)]
        return holder is None or holder is self

    async def ack(self, handle: VeoTask) -> None:
        """Acknowledge a handle's outcome durably (see :meth:`VeoTask.ack`)."""
        store = await self.opened()
        if handle.done():
            await self._drain()  # its terminal record must reach the store first
            await store.ack(handle.task_id)
        elif isinstance(handle.error, GONE):
            # Its notes first (the id's tracking, queued by veo.task()):
            # written after the forget, they would store it again, and a
            # resume would deliver it once more.
            await self._drain()
            await store.forget(handle.task_id)
        else:
            raise asyncio.InvalidStateError(
                f"task {handle.task_id!r} has no outcome to acknowledge yet"
            )
        self._note_acked(handle.task_id)

    def _note_acked(self, task_id: str) -> None:
        """Never deliver ``task_id`` again in this session (see ``_acked``)."""
        acked = self._acked
        acked.pop(task_id, None)
        acked[task_id] = None
        if len(acked) > _ACKED_KEPT:
            acked.popitem(last=False)
        self._claims.pop(task_id, None)
        for delivery in self._deliveries:
            delivery.acked(task_id)

    # -- tracking ids -----------------------------------------------------------------

    def track_soon(self, task_id: str) -> None:
        """Queue an id to track, written with the next batch (``veo.task(id)``)."""
        self._note(self._tracked, task_id)

    async def track(self, task_ids: Iterable[str]) -> None:
        """Track ids in one durable write, committed before returning."""
        store = await self.opened()
        await store.track(task_ids)

    # -- the writer -------------------------------------------------------------------

    def _note(self, notes: list[_T], note: _T) -> None:
        """Queue a note for the writer (once closed, none), and wake it."""
        if self._closed:
            return
        notes.append(note)
        writer = self._writer
        if writer is None or writer.done():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                # ``veo.task(id)`` before a loop runs (no I/O, as without a
                # store): written with the next write, or at the close.
                return
            self._writer = loop.create_task(self._write_notes(), name="veo_async durable writer")

    async def _write_notes(self) -> None:
        try:
            await asyncio.sleep(WRITE_DELAY)
            await self._drain()
        except Exception as exc:  # kept for the next ack, flush or close to raise
            logger.error("durable tracking could not write to the store: %r", exc)
            self._failure = exc

    async def _drain(self) -> None:
        """Hand every queued note to the store, in order (one batch at a time)."""
        async with self._drain_lock:
            while self._has_notes():
                tracked, self._tracked = self._tracked, []
                seen, self._seen = self._seen, []
                terminal, self._terminal = self._terminal, []
                delivered, self._delivered = self._delivered, []
                try:
                    store = await self.opened()
                    if tracked:
                        await store.track(tracked)
                    if isinstance(store, WriteBehindBatches):
                        store.write_behind(seen, terminal, delivered)  # one call, no await
                    else:
                        await write_each(store, seen, terminal, delivered)
                except BaseException:
                    # Not (all) handed over - a cancelled ack or flush, a failed
                    # write: queued again, in front, for the next drain. Dropped,
                    # a retried ack() found no terminal record to acknowledge,
                    # and the task was delivered again after a restart.
                    self._tracked[:0] = tracked
                    self._seen[:0] = seen
                    self._terminal[:0] = terminal
                    self._delivered[:0] = delivered
                    raise
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    def _has_notes(self) -> bool:
        return bool(self._tracked or self._seen or self._terminal or self._delivered)

    async def flush(self) -> None:
        """Hand every note to the store and have it commit them."""
        await self._drain()
        await (await self.opened()).flush()

    # -- resuming ---------------------------------------------------------------------

    async def resume(self, registry: TaskRegistry, policy: AnyPolicy | None) -> ResumeReport:
        """Handles for what the store left unfinished (polling again) or undelivered."""
        await self._drain()
        store = await self.opened()
        unfinished, undelivered = await _stored_rows(
            await store.unfinished(), await store.undelivered()
        )
        uncertain = await store.uncertain()
        tasks = []
        for count, stored in enumerate(unfinished, start=1):
            handle = _restore(registry, stored, None)
            self._keep(handle, policy)
            tasks.append(handle)
            await _now_and_then(count)
        finished = []
        for count, (stored, record) in enumerate(undelivered, start=1):
            finished.append(_restore(registry, stored, record))
            await _now_and_then(count)
        if uncertain:
            logger.warning(
                "%d create intent(s) have no task id: the task may or may not exist; "
                "they are reported, never resent (first: ref %s)",
                len(uncertain),
                uncertain[0].ref,
            )
        return ResumeReport(tuple(tasks), tuple(finished), tuple(uncertain))

    def _keep(self, handle: VeoTask, policy: AnyPolicy | None) -> None:
        """Keep a resumed handle polling until it finishes (nobody may wait on it)."""
        if handle.done() or handle.task_id in self._keepers:
            return
        self._keepers[handle.task_id] = handle.subscribe(self._keeper, policy)

    def _on_kept_change(self, handle: VeoTask, error: BaseException | None) -> None:
        if error is None and not handle.done():
            return
        self._keepers.pop(handle.task_id, None)  # the run has ended or is ending
        if error is not None and not isinstance(error, SessionClosedError):
            logger.warning(
                "resumed task %s stopped polling: %r",
                handle.task_id,
                error,
                # completed() hands the task over with this error, to be reported there.
                extra={RAISED_TOO: True},
            )

    # -- delivering -------------------------------------------------------------------

    async def completed(
        self, registry: TaskRegistry, *, follow: bool, policy: AnyPolicy | None
    ) -> AsyncGenerator[VeoTask, None]:
        """See :meth:`veo_async.VeoSession.completed`.

        :raises StoreLockedError: the store lost its lease (a
            :class:`~veo_async.store.LeasedStore`): its new owner hands these
            results over now.
        """
        # Stopped by a 401 already: raised now (stopped() told the running
        # ones; this one would wait for a notice that came before it).
        registry.requester.check_usable()
        delivery = _Delivery(policy, self._acked, self._claims)
        # Registered before reading the store: a task finishing meanwhile is
        # then queued by the notification (and not twice: seen ids are skipped).
        self._deliveries.add(delivery)
        try:
            await self._drain()
            store = await self.opened()
            unfinished, undelivered = await _stored_rows(
                await store.unfinished(), await store.undelivered()
            )
            # Rows read unacknowledged now: the only acks they can get later
            # are this session's (the store is its alone), which _acked holds.
            unacked: set[str] = set()
            for count, (stored, record) in enumerate(undelivered, start=1):
                delivery.arrived(_restore(registry, stored, record))
                unacked.add(stored.task_id)
                await _now_and_then(count)
            for count, stored in enumerate(unfinished, start=1):
                delivery.follow(_restore(registry, stored, None))
                unacked.add(stored.task_id)
                await _now_and_then(count)
            check_lease = _lease_check(store)
            while True:
                while delivery.ready:
                    # Asked before each result: once another process owns the
                    # store, it delivers (and acks) them; this one must stop.
                    check_lease()
                    handle = delivery.take()
                    if handle is None:
                        break  # the rest were claimed by other iterations
                    if handle.task_id not in unacked and await _acked_before(
                        store, handle.task_id
                    ):
                        # Acknowledged in an earlier session, and met again in
                        # this one (a late callback reconciled, the id handed
                        # in, a wait on it): never delivered after its ack.
                        self._note_acked(handle.task_id)
                        continue
                    self._note(self._delivered, (handle.task_id, time.time()))
                    yield handle
                if delivery.error is not None:
                    raise delivery.error
                if not follow and not delivery.waiting:
                    return
                await delivery.changed()
        finally:
            self._deliveries.discard(delivery)
            # What it held unacknowledged goes to the iterations still running
            # (the first to take each keeps it), as a later one would get it.
            for handle in delivery.release():
                for other in self._deliveries:
                    other.arrived(handle)
            await delivery.close()

    def follow_new(self, handles: Iterable[VeoTask]) -> None:
        """Ids just tracked: running deliveries follow them too."""
        if self._deliveries:
            for handle in handles:
                for delivery in self._deliveries:  # (acknowledged ones: skipped there)
                    delivery.follow(handle)

    # -- closing ----------------------------------------------------------------------

    async def aclose(self) -> None:
        """Write what is queued, then close the store (polling has stopped already).

        :raises StoreError: a write that failed since the last ack or flush.
        """
        if self._closed:
            return
        self._keepers.clear()  # their runs ended with the requester
        # An iteration that follows new tasks may be idle, following none:
        # no run of its ends to tell it (one that follows a task is told by
        # that run), and no task will come to a closed session.
        for delivery in self._deliveries:
            delivery.fail(SessionClosedError("the VeoSession was closed while waiting"))
        writer = self._writer
        try:
            if writer is not None:
                await asyncio.wait((writer,))
        except asyncio.CancelledError:
            # Cancelled while the writer works: what is queued is still
            # written before the store closes, but a failure to write must
            # not take the cancellation's place (asyncio.timeout, a TaskGroup
            # and the caller count on seeing it).
            await self._finish_close(quietly=True)
            raise
        await self._finish_close(quietly=False)

    async def _finish_close(self, *, quietly: bool) -> None:
        """Write what is queued, stop the writer, close the store.

        Drained whether or not notes are queued: the batch the writer holds
        is not, and the drain waits for it (its lock) instead of the stop
        below putting it back in a queue that is then cleared.

        :param quietly: the close was cancelled: a store failure is logged,
            not raised.
        """
        try:
            try:
                # (Notes queued where no loop ran yet have had no writer to
                # open the store for them; a store this session failed to
                # open is not tried again: its lock_timeout paid twice, and
                # the close's error in place of the open's.)
                if self._opened or (self._has_notes() and not self._open_failed):
                    await self._drain()
            finally:
                self._closed = True
                try:
                    # A close cancelled while it waited for the writer must
                    # not leave it behind, to wake later on a closed store.
                    await _stopped(self._writer)
                finally:
                    self._tracked, self._seen, self._terminal, self._delivered = [], [], [], []
                    if self._release():
                        await self.store.aclose()
        except Exception as exc:
            if not quietly:
                raise
            logger.warning("task store failed while the session's close was cancelled: %s", exc)


async def _acked_before(store: TaskStore, task_id: str) -> bool:
    """Whether the store holds ``task_id`` as acknowledged (by any session)."""
    stored = await store.get(task_id)
    return stored is not None and stored.acked_at is not None


def _lease_check(store: TaskStore) -> Callable[[], None]:
    """What raises :class:`~veo_async.errors.StoreLockedError` once *store*
    knows it lost its lease (a store with no lease never does)."""
    if isinstance(store, LeasedStore):
        return store.check_lease
    return _held


def _held() -> None:
    """A store without a lease keeps its lock until it closes."""


async def _stopped(task: asyncio.Task[None] | None) -> None:
    """Cancel *task* if it still runs, and wait until it has ended.

    A cancellation of the caller while it waits propagates (the task has been
    told to stop already).
    """
    if task is None or task.done():
        return
    task.cancel()
    await asyncio.wait((task,))


async def write_each(
    store: TaskStore,
    seen: Iterable[tuple[str, float]],
    terminal: Iterable[tuple[str, RecordInfo, float]],
    delivered: Iterable[tuple[str, float]],
) -> None:
    """Write-behind notes as single store calls, for a store that takes no
    batches: what :meth:`WriteBehindBatches.write_behind` does in one call.
    Kinds in causal order: a task is seen, then finished, then delivered."""
    for task_id, at in seen:
        await store.record_seen(task_id, at)
    for task_id, record, at in terminal:
        await store.record_terminal(task_id, record_to_json(record), at)
    for task_id, at in delivered:
        await store.mark_delivered(task_id, at=at)
