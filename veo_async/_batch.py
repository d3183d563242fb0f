"""Waiting on many tasks at once: :func:`wait_many` and :func:`as_completed`.

Both stand on one :class:`CompletionTracker`: it follows every distinct
handle's poll run with one listener (the same bound method for all), notes
each id as it reaches an outcome, and lets go of every run when the batch ends,
whatever the way out (done, deadline, first failure, cancellation). The
session's budget, not the batch, bounds how many requests are in flight.
Repeated ids share a handle, yet every position gets its outcome: the result
has exactly one entry per id given.

Large batches (100,000 ids in one process) must not stall the event loop:

- ids are validated up front (cheap, before any I/O); handles are made,
  followed, let go of and their outcomes gathered in slices of
  :data:`_SLICE` ids, yielding to the loop between slices;
- nothing of a batch forms a reference cycle (the tracker keeps no bound
  method of itself), so a finished batch is freed by reference counting alone
  (``tests/test_gc.py``);
- while a batch of :data:`FREEZE_AT` ids or more is live, the collector's
  view is kept small with :func:`gc.freeze`: when it begins, after every
  slice of its set-up, deadline and gathering of outcomes, and right after
  every full collection (when nothing collectable is left to freeze). The
  hundreds of thousands of long-lived objects such a batch makes (handles,
  runs, records, the timeouts of its deadline) then stay out of later full
  collections, which otherwise stalled the loop for up to 0.7 s at 100,000
  ids. Frozen objects are still freed by reference counting. When the last
  large batch ends, :func:`gc.unfreeze` puts everything back, and cyclic
  garbage frozen on the way is collected as usual (unless the application
  had frozen objects of its own before: its freeze is not undone). The
  collector is never disabled; it also runs on a clock while such a batch
  lives (:class:`_PacedCollections`): the young generation would otherwise
  grow unchecked while old objects die as fast as young ones are kept;
- a poll leaves no reference cycle behind, not even a failed one (the
  service's errors a handle keeps hold no frames), so polls do not feed the
  collector;
- while a batch lets go of its runs (at its deadline, when it ends or is
  cancelled), slots given back by the requests it stops are granted again
  only once all are let go of: each would otherwise start a request for an
  id about to be let go of as well;
- what the batch held is freed over loop steps once it ends
  (:func:`_let_go_of`).
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import threading
from collections import Counter, deque
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import NoReturn, cast

from ._id_checks import validated_ids, validated_ids_in_steps
from ._limits import DueQueue
from ._pacer import AnyPolicy
from ._release import release_over_steps
from ._task import Subscription, TaskRegistry, VeoTask, last_look, timed_out
from ._timeouts import look_lead
from .errors import AuthenticationError
from .models import RecordInfo, TaskStatus
from .policy import TimeoutArg

__all__ = [
    "BatchOutcome",
    "CompletionTracker",
    "as_completed",
    "check_return_exceptions",
    "wait_many",
]

#: One position of :func:`wait_many`'s result: the SUCCESS record, or (with
#: ``return_exceptions=True``) the exception that ended that task's wait (an
#: Exception: a cancellation is raised, never an outcome).
BatchOutcome = RecordInfo | Exception


logger = logging.getLogger("veo_async")

#: Ids handled per event-loop step when a batch starts following its runs or
#: lets go of them (about 10 microseconds each): at 100,000 ids one step doing
#: all of it would block the loop for a second; slices keep a step short (a
#: loop that also answers polls runs two or three of them between two timers).
_SLICE = 1000
#: Handles :func:`as_completed` hands out per loop step when their outcomes are
#: already in: the consumer's own work on each (raising its result, say) runs
#: in that step too, so fewer than a slice (1,000 timeouts took 0.17 s).
_HANDOUT_SLICE = 100


async def _yield_between_slices(large: bool = False) -> None:
    """Let the loop run other callbacks between two slices of a batch's work
    (a large batch's slice first leaves the collector's view)."""
    if large:
        _large_batches.settle()
    await asyncio.sleep(0)


#: A batch looks at its unfinished ids once just before its deadline (see
#: VeoTask.look_before) when at most this many are left: one wave of requests.
LAST_LOOKS = 64

#: Batches of at least this many distinct ids keep the collector's view
#: frozen while they run (see the module docstring); smaller ones need not.
#: (At 20,000, a batch of 10,000 met full collections of 96-109 ms on a busy
#: machine; a full collection walks about 7-10 us of objects per id.)
FREEZE_AT = 10_000


class _FreezeWhileLarge:
    """Keeps full collections short while large batches are live (module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # gc is per process; loops may be per thread
        self._live = 0
        self._unfreeze = False

    @contextmanager
    def live(self, size: int, ends: set[Callable[[], None]]) -> Iterator[bool]:
        """The lifetime of one batch of ``size`` ids; yields whether it is large.

        A large batch's objects leave the collector's view from its start
        (:meth:`settle` after each slice of work) until the last large batch
        ends, and while it lives the collector runs on a clock
        (:class:`_PacedCollections`). Enter it inside the batch's event loop.

        :param ends: the session's live large batches: a large batch's end
            is in it while it lives, for the session's close to call. An
            ``as_completed`` left with ``break`` ends when the loop finalises
            its generator: after the close, or never if the loop closes
            first, and the collector's state stayed changed for the process
            (whatever was alive at a full collection frozen for good).
        """
        if size < FREEZE_AT:
            yield False
            return
        self._enter()
        paced = _PacedCollections(asyncio.get_running_loop())
        ended = False

        def end() -> None:
            nonlocal ended
            if not ended:
                ended = True
                ends.discard(end)
                paced.stop()
                self._leave()

        ends.add(end)
        try:
            yield True
        finally:
            end()

    def settle(self) -> None:
        """A slice of a large batch's work is done: what it made leaves the
        collector's view (``gc.freeze`` moves whole generations, in constant
        time), so no collection of the batch's life has to walk it. (None
        once no large batch lives: a batch's last steps after its session
        closed it.)"""
        if self._live:
            gc.freeze()

    def _enter(self) -> None:
        with self._lock:
            if self._live == 0:
                # An application that froze objects itself keeps its freeze.
                self._unfreeze = gc.get_freeze_count() <= _FROZEN_AT_IMPORT
                gc.callbacks.append(self._after_collection)
            self._live += 1
        gc.freeze()

    def _leave(self) -> None:
        # The batch's own objects are freed by reference counting.
        with self._lock:
            self._live -= 1
            if self._live:
                return
            gc.callbacks.remove(self._after_collection)
            if self._unfreeze:
                gc.unfreeze()

    @staticmethod
    def _after_collection(phase: str, info: dict[str, int]) -> None:
        # Right after a full collection every tracked object is reachable:
        # freezing them now keeps nothing that a collection would have freed.
        if phase == "stop" and info["generation"] == 2:
            gc.freeze()


#: Objects frozen when this module was imported: more, later, means that the
#: application froze objects itself. Not 0 everywhere: Python 3.12 starts
#: with a few hundred objects frozen.
_FROZEN_AT_IMPORT = gc.get_freeze_count()

_large_batches = _FreezeWhileLarge()

#: Seconds between two collections of the young generations while a large
#: batch lives; every :data:`_FULL_EVERY` th one is a full collection.
_YOUNG_EVERY = 0.1
_FULL_EVERY = 10


class _PacedCollections:
    """Collects on a clock while a large batch lives, so no collection has much to walk.

    CPython starts a young collection when allocations minus deallocations
    pass a threshold (700), counting the deallocation of *old* objects too.
    While a large batch runs, the objects dying are mostly old ones (a
    finished task's run, its previous records) and the ones born young (the
    records kept as outcomes): the count stands still while the young
    generation grows. At 100,000 ids it reached 40,000 objects, and one loop
    step then walked them three times (young, middle, full collection):
    100-165 ms. Collecting the two young generations every
    :data:`_YOUNG_EVERY` seconds, and everything every :data:`_FULL_EVERY`
    th time (what survives leaves the view: :meth:`_FreezeWhileLarge.live`),
    keeps each collection to what the last tenth of a second or second
    made: a few milliseconds. The automatic collector still runs as well;
    an application that disabled it (:func:`gc.disable`) is obeyed.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._ticks = 0
        self._timer = loop.call_later(_YOUNG_EVERY, self._collect)

    def _collect(self) -> None:
        self._ticks += 1
        if gc.isenabled():
            gc.collect(2 if self._ticks % _FULL_EVERY == 0 else 1)
        self._timer = self._loop.call_later(_YOUNG_EVERY, self._collect)

    def stop(self) -> None:
        """The batch ended: no more collections of its own."""
        self._timer.cancel()


# Read once: on Python 3.11, TaskStatus.SUCCESS runs a descriptor each time.
_SUCCESS = TaskStatus.SUCCESS


class CompletionTracker:
    """Follows many handles until each reaches an outcome or the batch ends.

    :param handles: one handle per distinct id, in input order.
    :param policy: the schedule of runs this batch starts.
    :param limit: the batch's timeout (for the :class:`WaitTimeoutError` s).
    :param queue: the session's request queue (its grants wait while the
        batch lets go of its runs).
    :param large: the batch is large (see :meth:`_FreezeWhileLarge.live`).
    """

    def __init__(
        self,
        handles: dict[str, VeoTask],
        policy: AnyPolicy,
        limit: float | None,
        *,
        queue: DueQueue,
        large: bool = False,
        background: set[asyncio.Task[None]] | None = None,
    ):
        self.handles = handles
        self._queue = queue
        self.limit = limit
        self.policy = policy
        #: Ids in the order they reached an outcome (consumed by as_completed).
        self.finished: deque[str] = deque()
        #: The first id whose outcome is a failure, once there is one.
        self.first_failure: str | None = None
        self._errors: dict[str, Exception] = {}
        self._subscriptions: dict[str, Subscription] = {}
        self._pending = 0
        self._stopped: list[asyncio.Future[None]] = []
        self._wake: asyncio.Future[None] | None = None
        self._wake_each = False
        self._large = large
        self._looked = False
        # The deadline of an iterator kept but not iterated (see expire_at).
        self._expiry: asyncio.TimerHandle | None = None
        self._expiring: asyncio.Task[None] | None = None
        self._in_until = False
        self._expiry_due = False  # it came while a waiter was in until()
        # Where the session keeps such deadline tasks, to wait for at its close.
        self._background = background if background is not None else set()

    async def start(self, *, wake_each: bool, stop_on_failure: bool = False) -> None:
        """Follow every handle not finished yet; finished ones count at once.

        Done in slices of :data:`_SLICE` ids, one loop step each: the polls
        of the first slices start while the later ones are being followed.

        :param wake_each: wake the waiter on every outcome (as_completed),
            not only when all are in or one failed (wait_many).
        :param stop_on_failure: stop following more handles once one failed.
        """
        self._wake_each = wake_each
        # One listener for every handle: a bound method made once, and not
        # kept on self (tracker -> method -> tracker would be a cycle holding
        # every handle of the batch until a full collection).
        listener = self._on_change
        items = list(self.handles.items())
        for first in range(0, len(items), _SLICE):
            if first:
                await _yield_between_slices(self._large)
                if stop_on_failure and self.first_failure is not None:
                    return
            for task_id, handle in items[first : first + _SLICE]:
                if handle.done():
                    self._arrived(task_id, handle, None)
                    continue
                try:
                    subscription = handle.subscribe(listener, self.policy)
                except AuthenticationError as exc:  # a 401 stopped the session
                    self._arrived(task_id, handle, exc)
                    continue
                self._pending += 1
                self._subscriptions[task_id] = subscription
        if self._large:
            _large_batches.settle()

    def _on_change(self, handle: VeoTask, error: BaseException | None) -> None:
        # The id first: a run that ends on a terminal record calls twice (the
        # change, then the end), and the second call finds the id gone.
        task_id, subscriptions = handle.task_id, self._subscriptions  # (every id comes here)
        if task_id in subscriptions and (error is not None or handle.done()):
            del subscriptions[task_id]  # the run has ended or is ending
            self._pending -= 1
            self._arrived(task_id, handle, error)

    def _arrived(self, task_id: str, handle: VeoTask, error: BaseException | None) -> None:
        if error is not None:
            # A run ends on an Exception: a cancellation of its request becomes
            # SessionClosedError (see _PollRun.answered).
            self._errors[task_id] = cast(Exception, error)
        failed = error is not None or handle.status is not _SUCCESS
        if failed and self.first_failure is None:
            self.first_failure = task_id
        self.finished.append(task_id)
        wake = self._wake
        if wake is not None and not wake.done() and (
            self._wake_each or failed or self._pending == 0
        ):
            wake.set_result(None)

    @property
    def pending(self) -> int:
        """Ids still without an outcome."""
        return self._pending

    def expire_at(self, deadline: float) -> None:
        """Give up at ``deadline`` even if nobody is waiting in :meth:`until`
        then: an ``as_completed`` iterator kept but not iterated (its consumer
        busy with an earlier task, or gone without closing it) stops polling
        at its deadline, as a waiting one does, instead of polling on for
        nobody until it is closed or collected."""
        self._expiry = asyncio.get_running_loop().call_at(deadline, self._expired)

    def _expired(self) -> None:
        self._expiry = None
        if self._in_until:
            # A waiter takes the deadline itself, unless it leaves until() on
            # an outcome instead (see until): then this comes after it.
            self._expiry_due = True
            return
        self._begin_giving_up()

    def _begin_giving_up(self) -> None:
        """Give up in a task of its own (nobody is waiting), if anything is left."""
        if not self._subscriptions or self._expiring is not None:
            return
        self._expiring = task = asyncio.get_running_loop().create_task(
            self._give_up(), name="veo_async batch deadline"
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def until(self, deadline: float | None, *, stop_on_failure: bool) -> None:
        """Sleep until every id has an outcome, the first failure (if asked), or
        the deadline; with ``wake_each``, until the next outcome."""
        self._in_until = True
        try:
            await self._until(deadline, stop_on_failure)
        finally:
            self._in_until = False
            if self._expiry_due:
                self._expiry_due = False
                self._begin_giving_up()

    async def _until(self, deadline: float | None, stop_on_failure: bool) -> None:
        loop = asyncio.get_running_loop()
        before = len(self.finished)
        while self._pending and not (stop_on_failure and self.first_failure is not None):
            if self._wake_each and len(self.finished) > before:
                return
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return
            if deadline is not None and not self._looked and self.limit:
                lead = look_lead(self.limit)
                if remaining is not None and remaining <= lead:
                    await self._last_looks(deadline, lead)
                    continue
                remaining = deadline - lead - loop.time()  # wake for the last looks
            self._wake = loop.create_future()
            try:
                await asyncio.wait((self._wake,), timeout=remaining)
            finally:
                self._wake = None

    async def _last_looks(self, deadline: float, lead: float) -> None:
        """Once, ``lead`` seconds before the deadline: a last look at each
        unfinished id (see :meth:`VeoTask.look_before`), if they are few
        enough to go in one wave of requests."""
        self._looked = True
        if self._pending <= LAST_LOOKS:
            pending = [self.handles[task_id] for task_id in self._subscriptions]
            await asyncio.gather(*(last_look(handle, deadline, lead) for handle in pending))

    def unfinished(self) -> list[str]:
        """Ids still waited for, in input order."""
        return [task_id for task_id in self.handles if task_id in self._subscriptions]

    def outcome(self, task_id: str) -> BatchOutcome:
        """The outcome of one id now: its record, or the exception that ends its wait.

        An id still unfinished gets its :class:`WaitTimeoutError` (the caller
        asks only at the deadline).
        """
        error = self._errors.get(task_id)
        if error is not None:
            return error
        handle = self.handles[task_id]
        if task_id in self._subscriptions:
            return timed_out(handle, self.limit or 0.0)
        record = handle.record
        if record is not None and record.status is _SUCCESS:
            return record  # (what exception() would find, without its calls: most ids)
        # Not raised and caught: a caught exception would hold this frame,
        # its caller's (outcomes(): every outcome of the batch) and so itself.
        failure = handle.exception()  # what ended a run: an Exception (see _arrived)
        if failure is not None:
            return cast(Exception, failure)
        record = handle.record
        assert record is not None  # exception() found the SUCCESS record
        return record

    async def give_up(self) -> None:
        """The deadline: every unfinished id gets its :class:`WaitTimeoutError`
        (also its handle's ``error``) and joins :attr:`finished`, in input order.

        Which ids timed out is decided at once (an answer arriving meanwhile
        does not count); stopping their polls is done in slices. If the
        deadline already began this while nobody waited (see
        :meth:`expire_at`), waits for that instead.
        """
        if self._expiring is not None:
            await self._expiring
            return
        await self._give_up()

    async def _give_up(self) -> None:
        if self._large:
            # What the batch's polls left young (tens of thousands of records)
            # would otherwise be walked by the collections the timeouts set off.
            _large_batches.settle()
        unfinished, self._subscriptions = self._subscriptions, {}
        self._pending = 0
        order = [task_id for task_id in self.handles if task_id in unfinished]
        limit = self.limit or 0.0
        # Locals: this loop runs once per id of the batch (100,000 of them).
        handles, errors, stopped = self.handles, self._errors, self._stopped
        # Until every run is let go of, slots that stopped requests give back
        # are not granted again: each would start a request for an id about
        # to be let go of too (in a later slice).
        with self._queue.grants_deferred():
            for first in range(0, len(order), _SLICE):
                if first:
                    await self._yield_closing(order[first:], unfinished)
                for task_id in order[first : first + _SLICE]:
                    errors[task_id] = timed_out(handles[task_id], limit, log=False)
                    request = unfinished[task_id].close()
                    if request is not None:
                        stopped.append(request)
        if order:
            logger.debug("batch deadline (%ss): %d tasks timed out", limit, len(order))
        self.finished.extend(order)

    async def close(self) -> None:
        """Let go of every run (in slices); wait for the requests this stopped to end."""
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        expiring = self._expiring
        if expiring is not None:
            expiring.cancel()  # it lets go of the runs it had not reached yet
            try:
                await asyncio.wait((expiring,))
            except asyncio.CancelledError:
                # No run may outlive its last follower: let go of the rest now.
                subscriptions, self._subscriptions = self._subscriptions, {}
                with self._queue.grants_deferred():
                    self._let_go(list(subscriptions), subscriptions)
                raise
            if not expiring.cancelled():
                expiring.exception()  # retrieved: a consumer awaiting it got it raised
        subscriptions, self._subscriptions = self._subscriptions, {}
        order = list(subscriptions)
        with self._queue.grants_deferred():  # as in give_up
            for first in range(0, len(order), _SLICE):
                if first:
                    await self._yield_closing(order[first:], subscriptions)
                self._let_go(order[first : first + _SLICE], subscriptions)
        stopped, self._stopped = self._stopped, []
        if stopped:
            await asyncio.wait(stopped)

    async def outcomes(self) -> dict[str, BatchOutcome]:
        """Every id's :meth:`outcome`, gathered in slices (yielding between them)."""
        outcomes: dict[str, BatchOutcome] = {}
        order = list(self.handles)
        for first in range(0, len(order), _SLICE):
            if first:
                await _yield_between_slices(self._large)
            for task_id in order[first : first + _SLICE]:
                outcomes[task_id] = self.outcome(task_id)
        return outcomes

    def _let_go(self, task_ids: list[str], subscriptions: dict[str, Subscription]) -> None:
        # Called within the callers' grants_deferred (give_up, close).
        for task_id in task_ids:
            request = subscriptions[task_id].close()
            if request is not None:
                self._stopped.append(request)

    async def _yield_closing(
        self, rest: list[str], subscriptions: dict[str, Subscription]
    ) -> None:
        """Yield between slices; if cancelled meanwhile, let go of ``rest`` at once:
        no run may outlive its last follower."""
        try:
            await _yield_between_slices(self._large)
        except asyncio.CancelledError:
            self._let_go(rest, subscriptions)
            raise


async def _handles(
    registry: TaskRegistry, ids: list[str], large: bool
) -> dict[str, VeoTask]:
    """One handle per distinct id, in input order; made in slices (ids already valid)."""
    handles: dict[str, VeoTask] = {}
    for first in range(0, len(ids), _SLICE):
        if first:
            await _yield_between_slices(large)
        for task_id in ids[first : first + _SLICE]:
            if task_id not in handles:
                handles[task_id] = registry.handle(task_id, validated=True)
    return handles


def check_return_exceptions(value: object) -> None:
    """Raise TypeError unless ``value`` is True or False (checked before any I/O)."""
    if not isinstance(value, bool):
        raise TypeError(f"return_exceptions must be True or False, not {type(value).__name__}")


async def wait_many(
    registry: TaskRegistry,
    task_ids: Iterable[str],
    *,
    timeout: TimeoutArg,
    policy: AnyPolicy | None = None,
    return_exceptions: bool = False,
) -> list[BatchOutcome]:
    """Wait for every task; one outcome per id given, in input order.

    See :meth:`veo_async.VeoSession.wait_many`.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()  # the deadline counts from the call, set-up included
    check_return_exceptions(return_exceptions)
    # Everything checked before any request; the ids over loop steps.
    ids = await validated_ids_in_steps(task_ids)
    limit, chosen = registry.wait_settings(timeout, policy)
    deadline = None if limit is None else started + limit
    with _large_batches.live(len(ids), registry.live_batches) as large:
        handles = await _handles(registry, ids, large)
        tracker = CompletionTracker(
            handles, chosen, limit, queue=registry.requester.queue, large=large
        )
        if not return_exceptions:
            _raise_known_failure(ids, handles)
        try:
            await tracker.start(wake_each=False, stop_on_failure=not return_exceptions)
            await tracker.until(deadline, stop_on_failure=not return_exceptions)
            raising = [] if return_exceptions else _first_failure(tracker)
            if raising:
                # Let go of every run before raising, and give a poll runner
                # that answered in the step that ended the batch the step it
                # waits before its next poll: it finds the batch's polls gone
                # and ends, and nothing of ours is left running. (Not in the
                # finally below: suspended there, batches raising one shared
                # error would each add their frames to its traceback.)
                await tracker.close()
                await asyncio.sleep(0)
                _raise_outcome(raising)
            if tracker.pending:
                await tracker.give_up()  # the deadline: time out the rest, in slices
            outcomes = await tracker.outcomes()
        finally:
            # Also on our own cancellation: no run outlives its last follower.
            await tracker.close()
            _let_go_of(handles, registry)
        return [outcomes[task_id] for task_id in ids]


def _let_go_of(handles: dict[str, VeoTask], registry: TaskRegistry) -> None:
    """Let go of a finished batch's handles a slice per loop step, then tell
    the registry (see :meth:`TaskRegistry.released`).

    The batch holds the last reference to most of them (a consumer of
    :func:`as_completed` rarely keeps every handle): freed all at once with
    their records and errors, 100,000 took 0.17 s in one step.
    """
    held = list(handles.values())
    handles.clear()
    release_over_steps(held, _SLICE, functools.partial(registry.released, len(held)))


def _raise_known_failure(ids: list[str], handles: dict[str, VeoTask]) -> None:
    """A task already known to have failed fails the batch without a request.

    A function of its own: the error's traceback holds the frame it is raised
    through, and a handle left in a local of the batch's frame (the handle
    holds its error) made a cycle only the collector frees.
    """
    for task_id in ids:
        handle = handles[task_id]
        if handle.done() and handle.status is not _SUCCESS:
            break
    else:
        return
    failure = handle.exception()  # its TaskFailedError (result() would raise it in a frame)
    assert failure is not None
    del handle, handles, ids
    try:
        raise failure
    finally:
        del failure


def _first_failure(tracker: CompletionTracker) -> list[BaseException]:
    """Without ``return_exceptions``: the error the batch raises, alone in a
    list (empty when every id succeeded): the first failure's, else the
    first unfinished id's timeout (recorded now, on its handle, where it
    stays once the runs are let go of).

    Chosen now, at the deadline, and raised as chosen: asked for again after
    the batch let go of its runs, a poll of another wait answered meanwhile
    had made the id's outcome a success (the batch failed on an assert).
    In a list, so that the batch's frame, which the raised error's traceback
    holds, does not hold the error (a cycle for the collector)."""
    failed = tracker.first_failure
    if failed is None:
        unfinished = tracker.unfinished()
        if not unfinished:
            return []
        failed = unfinished[0]
    outcome = tracker.outcome(failed)
    assert isinstance(outcome, BaseException)
    return [outcome]


def _raise_outcome(chosen: list[BaseException]) -> NoReturn:
    """Raise the error :func:`_first_failure` chose (taking it out of ``chosen``)."""
    outcome = chosen.pop()
    try:
        # Perhaps a handle's kept error, raised before: afresh, or its
        # traceback would grow with every batch that raises it.
        raise outcome.with_traceback(None)
    finally:
        # The error's traceback holds this frame: without these locals no
        # cycle (error -> traceback -> frame -> error) is left for the collector.
        del outcome, chosen


def as_completed(
    registry: TaskRegistry,
    task_ids: Iterable[str],
    *,
    timeout: TimeoutArg,
    policy: AnyPolicy | None = None,
) -> AsyncGenerator[VeoTask, None]:
    """Yield each task's handle as it reaches an outcome, in completion order.

    See :meth:`veo_async.VeoSession.as_completed`.
    """
    ids = validated_ids(task_ids)  # here, at the call: before any request
    limit, chosen = registry.wait_settings(timeout, policy)
    return _completion_order(registry, ids, chosen, limit)


async def _completion_order(
    registry: TaskRegistry,
    ids: list[str],
    policy: AnyPolicy,
    limit: float | None,
) -> AsyncGenerator[VeoTask, None]:
    # Polling (and the deadline) start with the iteration, not with the call:
    # an iterator that is never iterated must not leave runs polling for nobody.
    registry.requester.check_open()
    deadline = None if limit is None else asyncio.get_running_loop().time() + limit
    counts = Counter(ids)
    with _large_batches.live(len(ids), registry.live_batches) as large:
        handles = await _handles(registry, ids, large)  # in slices: 100,000 ids take a while
        tracker = CompletionTracker(
            handles,
            policy,
            limit,
            queue=registry.requester.queue,
            large=large,
            background=registry.background,
        )
        try:
            await tracker.start(wake_each=True)
            if deadline is not None:
                tracker.expire_at(deadline)
            for position in range(len(handles)):
                if not tracker.finished:
                    await tracker.until(deadline, stop_on_failure=False)
                elif position % _HANDOUT_SLICE == _HANDOUT_SLICE - 1:
                    # Outcomes already in (after the deadline, tens of thousands):
                    # a consumer that does not await would never let the loop run.
                    await _yield_between_slices(large)
                if not tracker.finished:  # the deadline: the rest time out, in input order
                    await tracker.give_up()
                task_id = tracker.finished.popleft()
                for _ in range(counts[task_id]):
                    yield handles[task_id]
        finally:
            await tracker.close()
            _let_go_of(handles, registry)
