"""VeoTask: an awaitable handle on one Kie task, and the poll run behind it.

A handle owns at most one *poll run* (:class:`_PollRun`): a ticket in the
session's due-time queue that, when granted, sends one record-info request,
publishes the record and queues itself again at the next due time. A waiting
poll is one heap entry; a poll in flight is one request task. There is no
task per id.

Everything that waits on a handle - ``await task``, ``wait()``, ``watch()``,
``wait_many``, ``as_completed`` - *follows* the run the same way: it
subscribes a listener, which the run calls on each status change and when the
run ends. Fifty followers of one id cost one request per poll; each keeps its
own deadline; when the last one leaves, the run stops (its queued poll is
dropped and its request in flight cancelled), so nothing polls for nobody.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import functools
import inspect
import logging
import math
import time
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Iterator
from contextlib import aclosing
from typing import Any, NoReturn, Protocol

from ._create import submit, submit_recorded
from ._limits import Ticket
from ._numbers import shown
from ._pacer import AgeSeen, AnyPolicy, Pacer, Plan, Replannable, TaskFacts
from ._poll_runners import PollRequest
from ._requester import Requester
from ._schedule import REPLAN_GAIN, AdaptivePolicy, AdaptiveSchedule
from ._timeouts import look_lead, within
from ._upgrade import fetch_4k, fetch_1080p, refuse_fallback
from .errors import (
    AuthenticationError,
    RecordNotFoundError,
    SessionClosedError,
    SubmitUncertainError,
    TaskFailedError,
    VeoError,
    WaitTimeoutError,
)
from .events import RecordPublished, RetryScheduled
from .models import (
    ExtendRequest,
    GenerateRequest,
    RecordInfo,
    TaskStatus,
    validate_task_id,
    validate_url,
)
from .policy import POLICY_TIMEOUT, PollPolicy, TimeoutArg, resolve_timeout
from .store import TaskStore

__all__ = [
    "Listener",
    "Subscription",
    "TaskJournal",
    "TaskRegistry",
    "VeoTask",
    "last_look",
    "timed_out",
]

logger = logging.getLogger("veo_async")

# The largest video index asked for: the service's 32-bit ints (a larger one
# waited for the task, then failed writing the request).
_MAX_INDEX = 2**31 - 1

UpdateCallback = Callable[[RecordInfo], "Awaitable[Any] | Any"]
#: Called with the handle and None on each status change, and with the handle
#: and the run's error (None when it ended on a terminal record) when it ends.
Listener = Callable[["VeoTask", "BaseException | None"], None]


class TaskJournal(Protocol):
    """What the registry tells durable tracking (the session's store side).

    :meth:`seen` and :meth:`finished` are called synchronously from the poll
    path, only on a handle's first record and on its terminal one: they must
    only note the change (write-behind), never wait.
    """

    def seen(self, handle: VeoTask) -> None:
        """The handle's first record (not terminal) was published."""

    def finished(self, handle: VeoTask) -> None:
        """The handle's terminal record was published (once per handle)."""

    def adopted(self, handle: VeoTask) -> None:
        """This session created the handle's task (its intent has its id)."""

    async def opened(self) -> TaskStore:
        """The store, opened on first use.

        :raises StoreError: when it cannot be opened.
        """
        ...

    async def ack(self, handle: VeoTask) -> None:
        """Acknowledge the handle's outcome durably (see :meth:`VeoTask.ack`)."""


class Subscription:
    """A follower's hold on a handle's poll run; :meth:`close` lets go."""

    __slots__ = ("_listener", "run")

    def __init__(self, run: _PollRun, listener: Listener) -> None:
        self.run: _PollRun | None = run
        self._listener = listener

    def __repr__(self) -> str:
        run = self.run
        if run is None:
            return "<Subscription closed>"
        return f"<Subscription to {run.handle.task_id!r}>"

    def close(self) -> asyncio.Future[None] | None:
        """Stop following (idempotent). If this was the last follower, the run
        stops; returns a future done once its stopped request has ended (one
        in flight, or a runner made for one not started yet), to await, if any."""
        run, self.run = self.run, None
        if run is None:
            return None
        return run.unfollow(self._listener)


class _PollRun(Ticket):
    """One run of polling for one handle; see the module docstring."""

    __slots__ = (
        "attempt",
        "due",
        "ended",
        "error",
        "error_traceback",
        "granted_at",
        "handle",
        "listeners",
        "look",
        "looked_at",
        "not_found_grace",
        "not_found_since",
        "plan",
        "request",
        "requester",
    )

    def __init__(
        self, handle: VeoTask, requester: Requester, plan: Plan, not_found_grace: float
    ) -> None:
        # Ticket's fields set here, not through super().__init__(): one call
        # less per tracked id.
        self.cancelled = False
        self.queued = False
        self.entry = -1
        self.handle = handle
        self.requester = requester
        self.plan = plan
        self.not_found_grace = not_found_grace
        self.listeners: list[Listener] = []
        self.request: PollRequest | None = None
        self.not_found_since: float | None = None
        self.attempt = 0
        self.ended = False
        self.error: BaseException | None = None
        self.due = 0.0  # when the next poll is due (loop time)
        # When the last poll was granted: an earlier run's last answered one,
        # if any (a wait cancelled, then another started: the schedule goes
        # on from that poll instead of polling at once; a
        # wait_for(task.wait(), 5) in a loop asked every 5 s).
        self.granted_at: float | None = handle._asked_at
        # A wait's last look (see last_look) out now, done with whether it
        # was answered; and when the last answered one was sent: any number
        # of waiters on the handle make one look between them.
        self.look: asyncio.Future[bool] | None = None
        self.looked_at: float | None = None

    def next_delay(self, now: float, *, running: bool = False) -> float | None:
        handle = self.handle
        # The handle's slots, not its properties: the run is the handle's own
        # poll loop (this module), and this runs for every poll.
        plan = self.plan
        granted_at = self.granted_at
        delay = plan.next_delay(
            handle._record,
            handle._created_loop_time,
            handle._model,
            running=running,
            first_seen=handle._first_seen,
            since_asked=0.0 if granted_at is None else max(0.0, now - granted_at),
        )
        if handle._first_seen is None:
            handle._first_seen = plan.first_seen  # for the task's later runs
        return delay

    def plan_next(
        self, now: float, *, running: bool = False, retry_of: VeoError | None = None
    ) -> None:
        """Queue the next poll where the plan puts it. A learned plan whose
        schedule is still making its first table (a few loop steps) puts it
        once the table is made; meanwhile the run waits outside the queue.

        :param retry_of: the error of the failed poll this one retries.
        """
        delay = self.next_delay(now, running=running)
        if delay is None:
            self.due = math.inf  # not due at all until planned (see idle_at)
            self.plan.when_ready(functools.partial(self._planned_later, retry_of))
            return
        if retry_of is not None:
            if self.requester.reporting:
                self.requester.emit(RetryScheduled(self.handle.task_id, delay, retry_of))
            logger.debug(
                "task %s poll %d failed, will retry: %r",
                self.handle.task_id,
                self.attempt,
                retry_of,
            )
        self.queue_next(now, delay)

    def _planned_later(self, retry_of: VeoError | None, closing: bool) -> None:
        if self.ended:
            return  # let go of meanwhile
        if closing:
            self.finish(self.requester.stopped_error())
            return
        self.plan_next(self.requester.now(), retry_of=retry_of)

    def replan(self, moved: AdaptiveSchedule, tables: frozenset[str | None]) -> None:
        """Plan the waiting poll again (``tables`` of ``moved`` moved: see
        Pacer._replan_moved), and bring it forward if that is sooner: never
        later, and never a poll in flight."""
        if self.ended or self.cancelled or not self.queued or self.request is not None:
            return
        handle = self.handle
        facts = TaskFacts(
            handle._record, handle._created_loop_time, handle._model, handle._first_seen
        )
        delay = self.plan.replanned_delay(facts, moved, tables)
        if delay is None:
            return
        due = self.requester.now() + delay
        if due < self.due - REPLAN_GAIN and self.requester.queue.move(self, due):
            self.due = due

    def queue_next(self, now: float, delay: float) -> None:
        self.cancelled = False
        self.due = now + delay
        self.requester.queue.push(self.due, self)

    def poll_now_for(self, when: float, lead: float, deadline: float) -> bool:
        """Bring the waiting poll forward to ``when`` if it is due after it
        but before ``deadline`` (a wait's last look at ``when``), unless a
        poll or look was answered near it: that poll is then the look. Left
        where it was, its answer could not come by the deadline (a poll due
        0.1 s before it, answered in 0.3 s: a task finished long before
        timed out). Whether it was brought forward."""
        if self.ended or self.request is not None or not when < self.due < deadline:
            return False
        # Not again for the next waiter: each poll brought forward set the
        # next one an interval on, before that waiter's deadline (50 waiters
        # of a 1 s PollPolicy made 50 requests in 0.3 s).
        if self._answered_near(when, lead):
            return False
        if self.requester.queue.move(self, when):
            self.due = when
            return True
        return False

    def idle_at(self, when: float, lead: float, deadline: float) -> bool:
        """Whether a look at ``when`` would be the only poll near it: no
        request in flight, none answered in the ``lead`` seconds before, and
        the next one not due before ``deadline`` (else that poll is the last
        look, and a look now would be a second request within a second)."""
        return (
            not self.ended
            and self.request is None
            and self.due >= deadline
            and not self._answered_near(when, lead)
        )

    def _answered_near(self, when: float, lead: float) -> bool:
        """Whether a poll granted, or another waiter's look sent, in the
        ``lead`` seconds before ``when`` was answered: a look at ``when``
        would learn nothing more. A poll that failed was no look."""
        # A poll granted just about ``lead`` before counts as near: the
        # look's timer and that grant each run a little late, by however
        # long the loop was busy (a loaded machine), not by the same.
        near = when - lead - _NEAR_SLACK
        looked_at = self.looked_at
        if looked_at is not None and looked_at >= near:
            return True  # another waiter's look, answered: this one's too
        granted_at = self.granted_at
        return granted_at is not None and granted_at >= near and self.handle._last_failure is None

    def follow(self, listener: Listener) -> Subscription:
        self.listeners.append(listener)
        return Subscription(self, listener)

    def unfollow(self, listener: Listener) -> asyncio.Future[None] | None:
        self.listeners.remove(listener)
        if self.listeners or self.ended:
            return None
        # Nobody is waiting any more: stop polling for nobody.
        self.ended = True
        _run_stopped(self.handle, self)
        self.requester.queue.discard(self)
        request, self.request = self.request, None
        if request is not None:
            return self.requester.stop_poll(request)
        return None

    def notify(self, error: BaseException | None = None) -> None:
        # Those following now, told even if one leaves (or another joins) meanwhile.
        for listener in tuple(self.listeners):
            try:
                listener(self.handle, error)
            except Exception as exc:
                _listener_failed(self.handle, exc)

    # -- the queue's side (Ticket) ----------------------------------------------

    def granted(self, now: float) -> None:
        self.attempt += 1
        self.granted_at = now
        handle = self.handle
        self.request = self.requester.poll(handle.task_id, handle._record, now, self.answered)

    def failed(self, error: BaseException) -> None:
        self.finish(error)

    # -- one answer ---------------------------------------------------------------

    def answered(
        self,
        request: PollRequest,
        record: RecordInfo | None,
        error: BaseException | None,
    ) -> None:
        if self.request is not request:
            return  # stopped meanwhile: nobody wants this answer
        self.request = None
        # A later run of the task goes on from this poll (see __init__): one
        # answered (or failed by the service), not one its waiters let go of
        # in flight, or waits timing out just after each poll left would
        # each plan the next from an unanswered one, and never see an answer.
        self.handle._asked_at = self.granted_at
        # (None first: the usual answer then costs no isinstance() call.)
        if error is not None and isinstance(error, asyncio.CancelledError):
            # Only the session stopping (closed, or a 401) cancels a request
            # of a run still followed.
            self.finish(self.requester.stopped_error())
            return
        if error is None:
            assert record is not None
            if logger.isEnabledFor(logging.DEBUG):  # every poll: skip the arguments too
                logger.debug(
                    "task %s poll %d: %s", self.handle.task_id, self.attempt, record.status.name
                )
            _publish(self.handle, record)
            # Visible now: a "record is null" later (a replica behind) gets a
            # grace window of its own, not what is left of the first one.
            self.not_found_since = None
            if record.status is not _GENERATING:  # record.is_done, without a call
                if not self.ended:  # (as a rule _publish ended the run: no call then)
                    self.finish(None)
            else:
                self.plan_next(self.requester.now(), running=True)
            return
        if not isinstance(error, VeoError):
            self.finish(error)  # a bug: surface it, never loop on it
            return
        _note_failure(self.handle, error)
        if self.retrying(error):
            self.plan_next(self.requester.now(), retry_of=error)
        else:
            self.finish(error)

    def retrying(self, error: VeoError) -> bool:
        if isinstance(error, RecordNotFoundError) and not error.expired:
            # The grace window opens at the first "not visible" answer, not at
            # the start of the wait: in a big batch the first poll may leave
            # long after the wait began.
            now = self.requester.now()
            if self.not_found_since is None:
                self.not_found_since = now
            return now - self.not_found_since < self.not_found_grace
        return error.retryable

    def end(self, error: BaseException | None = None) -> None:
        """End now (out of the queue, if queued): the handle has its terminal
        record (``error`` None), or a look outside this run's own polls met
        an error this run would have ended on."""
        if self.ended:
            return
        if self.queued:
            self.requester.queue.discard(self)
        self.finish(error)

    def finish(self, error: BaseException | None) -> None:
        if self.ended:
            return
        self.ended = True
        self.error = error
        if error is not None:
            # Set only here, and read only when ``error`` is set: every waiter
            # raises the error with this traceback (see VeoTask._changes).
            self.error_traceback = error.__traceback__
            if isinstance(error, VeoError) and error.task_id is None:
                # Errors of no request (the session closed while this run
                # waited its turn): each a fresh one, named for its task as
                # the answers' errors are.
                error.task_id = self.handle.task_id
            logger.debug("polling task %s ended: %r", self.handle.task_id, error)
        _run_stopped(self.handle, self)
        self.notify(error)


#: Seconds of the loop's lateness a last look allows for (see _PollRun.idle_at).
_NEAR_SLACK = 0.05


def _now() -> float:
    return asyncio.get_running_loop().time()


def _listener_failed(handle: VeoTask, exc: Exception) -> None:
    """A subscriber's listener raised: report it as a failing done-callback
    would be, and go on (the run, its other followers and a closing session
    must not be left half told)."""
    asyncio.get_running_loop().call_exception_handler(
        {"message": f"a listener of {handle!r} raised", "exception": exc}
    )


# RecordInfo.is_done is ``status is not GENERATING``: inlined on the poll path.
# Members read once: on Python 3.11, TaskStatus.X runs a descriptor each time.
_GENERATING = TaskStatus.GENERATING
_SUCCESS = TaskStatus.SUCCESS


class _Follower:
    """A waiter's listener: wakes the waiter on each change of its run."""

    __slots__ = ("expired", "stopped", "subscription", "wake")

    def __init__(self) -> None:
        self.wake: asyncio.Future[None] | None = None
        self.subscription: Subscription | None = None
        self.expired = False
        #: A request this follower's leaving cancelled, to be awaited.
        self.stopped: asyncio.Future[None] | None = None

    def __call__(self, _handle: VeoTask, _error: BaseException | None) -> None:
        wake = self.wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    def expire(self) -> None:
        """The deadline passed while nobody was waiting (an abandoned watch)."""
        self.expired = True
        self.leave()
        self(None, None)  # type: ignore[arg-type]  # wake whoever may be waiting

    def leave(self) -> None:
        """Stop following (idempotent); keep what that stopped, to await."""
        subscription, self.subscription = self.subscription, None
        if subscription is not None:
            # Let go of it too: it holds this follower (its listener), a cycle.
            stopped = subscription.close()
            if stopped is not None:
                self.stopped = stopped

    async def changed(self, deadline: float | None) -> bool:
        """Sleep until the run changes (True) or the deadline (False)."""
        loop = asyncio.get_running_loop()
        if self.expired or (deadline is not None and loop.time() >= deadline):
            return False
        self.wake = loop.create_future()
        try:
            timeout = None if deadline is None else deadline - loop.time()
            done, _ = await asyncio.wait((self.wake,), timeout=timeout)
        finally:
            self.wake = None
        return bool(done) and not self.expired


class VeoTask:
    """The handle of one task. Get it from :meth:`VeoSession.task`; no I/O.

    ``await task`` is ``await task.wait()`` with the session's policy. Handles
    cannot be constructed directly: the session keeps one per id.

    :ivar task_id: the task id.
    """

    __slots__ = (
        "__weakref__",
        "_asked_at",
        "_created_at",
        "_created_loop_time",
        "_error",
        "_first_seen",
        "_last_failure",
        "_model",
        "_record",
        "_registry",
        "_request",
        "_run",
        "_uhd_asking",
        "task_id",
    )

    task_id: str
    _registry: TaskRegistry
    _request: GenerateRequest | ExtendRequest | None
    _created_at: datetime.datetime | None
    _created_loop_time: float | None
    _model: str | None
    _record: RecordInfo | None
    _error: BaseException | None
    _first_seen: AgeSeen | None
    _last_failure: VeoError | None
    _run: _PollRun | None
    _asked_at: float | None
    _uhd_asking: dict[int, asyncio.Lock] | None

    def __init__(self, *_args: object, **_kwargs: object) -> None:
        raise TypeError("VeoTask handles come from VeoSession.task(task_id), one per id")

    def __repr__(self) -> str:
        status = self.status.name if self.status is not None else "unknown"
        return f"<VeoTask {self.task_id!r} {status}>"

    # One handle per id: a copy is the handle itself. A second object for
    # the id would share its poll run and get none of its records (its wait
    # ended "closed" while the session was open), or start a second run.
    def __copy__(self) -> VeoTask:
        return self

    def __deepcopy__(self, memo: object) -> VeoTask:
        return self

    def __reduce__(self) -> NoReturn:
        raise TypeError(
            "a VeoTask cannot be pickled: pass its task_id, and get the handle "
            "from the other session with veo.task(task_id)"
        )

    @property
    def record(self) -> RecordInfo | None:
        """The last record seen, or None before the first poll."""
        return self._record

    @property
    def request(self) -> GenerateRequest | ExtendRequest | None:
        """The request that created this task in this session, or None (a bare id)."""
        return self._request

    @property
    def model(self) -> str | None:
        """The model of the request that created the task, if this session (or
        the session whose store it was resumed from) created it."""
        return self._model

    @property
    def created_at(self) -> datetime.datetime | None:
        """When the create answer came (aware, wall clock), or None for an id
        this session (or the one it was resumed from) did not create."""
        return self._created_at

    @property
    def created_loop_time(self) -> float | None:
        """The event-loop time of :attr:`created_at` (for schedules), or None."""
        return self._created_loop_time

    @property
    def status(self) -> TaskStatus | None:
        """The last status seen, or None before the first poll."""
        return self._record.status if self._record is not None else None

    @property
    def error(self) -> BaseException | None:
        """What ended the last wait without success (a :class:`VeoError`), or None."""
        return self._error

    @property
    def polling(self) -> bool:
        """True while a poll run follows this task for someone."""
        return self._run is not None

    def done(self) -> bool:
        """True once the task reached a terminal status (no more polling needed)."""
        record = self._record
        return record is not None and record.status is not _GENERATING  # is_done, inline

    def result(self) -> RecordInfo:
        """The outcome so far, without I/O (like :meth:`asyncio.Future.result`).

        :returns: the SUCCESS record.
        :raises TaskFailedError: the task failed.
        :raises VeoError: the error that ended the last wait (e.g. a timeout).
        :raises asyncio.InvalidStateError: no outcome yet.
        """
        failure = self.exception()
        if failure is not None:
            # A kept error may be raised many times: each time afresh, or its
            # traceback would grow by this frame and the caller's every time.
            raise failure.with_traceback(None)
        record = self._record
        assert record is not None  # exception() found the SUCCESS record
        return record

    def exception(self) -> BaseException | None:
        """The outcome's exception so far, without I/O and without raising it
        (like :meth:`asyncio.Future.exception`): None after success.

        What :meth:`result` would raise, handed back instead: a batch
        collecting thousands of outcomes must not raise each one, since a
        raised exception holds the frames it went through and, through
        them, everything those frames held (the whole batch's outcomes).

        :raises asyncio.InvalidStateError: no outcome yet.
        """
        record = self._record
        if record is not None and record.status is not _GENERATING:  # is_done, inline
            return _failure_of(record)
        if self._error is not None:
            return self._error
        raise asyncio.InvalidStateError(f"task {self.task_id!r} has no outcome yet")

    # -- following ------------------------------------------------------------------

    def subscribe(self, listener: Listener, policy: AnyPolicy | None = None) -> Subscription:
        """Follow this handle's poll run (starting it, on ``policy``, if none runs).

        ``listener(handle, None)`` is called on each status change and
        ``listener(handle, error)`` when the run ends (``error`` None when it
        ended on a terminal record). Close the subscription to let go: the last
        follower to leave stops the polling. For batch tools and metrics; most
        code wants :meth:`wait` or :meth:`watch`.

        :raises SessionClosedError: the session is closed.
        :raises AuthenticationError: the session was stopped by a 401; it is
            also this handle's :attr:`error` (its wait ended there).
        """
        try:
            self._registry.requester.check_usable()
        except (AuthenticationError, SessionClosedError) as exc:  # fresh ones: ours to fill in
            exc.task_id = self.task_id
            if self._run is None and isinstance(exc, AuthenticationError):
                self._error = exc  # as a run that met the 401 would leave it
            raise
        run = self._run
        if run is None:
            registry = self._registry
            chosen = policy or registry.policy
            plan = registry.pacer.plan(chosen)
            run = _PollRun(self, registry.requester, plan, chosen.not_found_grace)
            self._run = run
            # The last wait's error stays the outcome until this run has one
            # (error, result(): "what ended the last wait"): a batch consumer
            # reading a handle it was handed must find what ended it there,
            # even once another wait has started polling it again.
            run.plan_next(registry.requester.now())
        return run.follow(listener)

    # -- waiting --------------------------------------------------------------------

    async def refresh(self) -> RecordInfo:
        """Poll once (no retry) and return the record; followers see it too.

        :raises RecordNotFoundError: the record is not visible; ``retryable``
            if this session created the task less than its policy's
            ``not_found_grace`` ago (a new record can take a moment to appear).
        :raises RuntimeError: from another event loop than the session's.
        """
        requester = self._registry.requester
        requester.check_loop()  # (an entry point, as record_info and wait are)
        try:
            record = await requester.record_info(self.task_id, self._record)
        except RecordNotFoundError as exc:
            self._registry.note_absence(exc, self.task_id)
            raise
        _publish(self, record)
        return self._record if self._record is not None else record

    async def wait(
        self,
        timeout: TimeoutArg = POLICY_TIMEOUT,
        *,
        policy: AnyPolicy | None = None,
        on_update: UpdateCallback | None = None,
    ) -> RecordInfo:
        """Poll until the task leaves GENERATING; return the SUCCESS record.

        Transient errors (5xx, 455, 429, resets, timeouts, unreadable bodies)
        are retried on the policy's schedule until the deadline; permanent ones
        (401, 402, 404, 400, ...) end the wait at once.

        :param timeout: seconds, None for no deadline, default the policy's.
        :param policy: the schedule if this wait starts the handle's polling
            (running polling keeps its own); default the session's.
        :param on_update: called with the first record seen and every status
            change after it; may be a coroutine function. It is never
            interrupted by the deadline: its time counts toward the timeout,
            checked when it returns.
        :raises TaskFailedError: the task ended FAILED or GENERATION_FAILED.
        :raises WaitTimeoutError: the deadline passed (carries the last record).
        :raises APIError: a permanent error from the service.
        :raises ValueError: for a bad timeout (negative, infinite or not a
            number), before any request.
        :raises TypeError: for a policy that is not a :class:`PollPolicy` or
            :class:`AdaptivePolicy`, or an ``on_update`` that is not
            callable, before any request.
        """
        if on_update is not None and not callable(on_update):
            raise TypeError("on_update must be callable")
        limit, chosen = self._registry.wait_settings(timeout, policy, finished=self._known_final())
        try:
            if on_update is not None:
                record = await self._wait_reporting(limit, chosen, on_update)
            else:
                async with aclosing(self._changes(limit, chosen, every=False)) as changes:
                    record = await anext(changes)  # terminal (else it raises what ended the run)
        except WaitTimeoutError as exc:
            # Raised afresh, without the frames it came through, which hold
            # the handle (those of a wait whose deadline met a poll in flight
            # stayed alive).
            failure: VeoError = exc.with_traceback(None)
        else:
            outcome = self._kept_outcome(record)
            if isinstance(outcome, RecordInfo):
                return outcome
            failure = outcome
            del record, outcome
        # A failed task, a timeout: the handle keeps the error (its
        # ``error``), so the error must leave from a frame that does not hold
        # the handle, or handle -> error -> traceback -> frame -> handle would
        # be a cycle only the collector frees.
        del self
        try:
            raise failure
        finally:
            del failure

    async def _wait_reporting(
        self, limit: float | None, policy: AnyPolicy, on_update: UpdateCallback
    ) -> RecordInfo:
        record: RecordInfo | None = None
        async with aclosing(self._changes(limit, policy, every=True)) as updates:
            async for record in updates:
                result = on_update(record)
                if inspect.isawaitable(result):
                    await result
        assert record is not None  # _changes ends only after a terminal record
        return record

    def __await__(self) -> Generator[Any, None, RecordInfo]:
        return self.wait().__await__()

    def watch(
        self, *, timeout: TimeoutArg = POLICY_TIMEOUT, policy: AnyPolicy | None = None
    ) -> AsyncGenerator[RecordInfo, None]:
        """Yield the current record and then each status change, until terminal.

        A failed task ends the iteration with its FAILED record (no exception);
        the deadline raises :class:`WaitTimeoutError`. Arguments are checked
        here, before iteration starts; the deadline counts from the first
        iteration, when polling starts (as :meth:`VeoSession.as_completed`'s
        does). It also stops the polling of an iterator that is kept but no
        longer iterated; with ``timeout=None`` such an iterator polls until
        it is closed or dropped. Close it early with ``contextlib.aclosing``
        to stop polling at once.
        """
        limit, chosen = self._registry.wait_settings(timeout, policy, finished=self._known_final())
        return self._changes(limit, chosen, every=True)

    def _known_final(self) -> bool:
        """The terminal record is known (a wait answers from memory)."""
        record = self._record
        return record is not None and record.is_done

    def _kept_outcome(self, record: RecordInfo) -> RecordInfo | TaskFailedError:
        """The outcome of a terminal record, remembered for :meth:`result`:
        the record itself after success, else the error :meth:`wait` raises
        (``handle.error is`` that very exception)."""
        self._error = _failure_of(record)
        return self._error or record

    async def _changes(
        self, limit: float | None, policy: AnyPolicy, *, every: bool
    ) -> AsyncGenerator[RecordInfo, None]:
        """The one way a waiter follows the run: each status change (``every``)
        or only the terminal record; raises what ends the run, or the timeout
        (``limit`` seconds from its first step: a wait's call, a watch's first
        iteration)."""
        deadline = None if limit is None else _now() + limit
        record = self._record
        if record is not None and record.is_done:
            yield record  # terminal: answer from memory, no request
            return
        follower = _Follower()
        subscription = self.subscribe(follower, policy)
        follower.subscription = subscription
        run = subscription.run
        assert run is not None
        loop = asyncio.get_running_loop()
        # An abandoned iterator must not poll past its deadline.
        timer = loop.call_at(deadline, follower.expire) if deadline is not None else None
        # The last sleep is clipped to the deadline: one look just before it,
        # unless the run looks then anyway (see last_look).
        lead = look_lead(limit) if deadline is not None and limit else None
        look_at = None if deadline is None or lead is None else deadline - lead
        last: TaskStatus | None = None
        try:
            while True:
                record = self._record
                if record is not None and record.status is not last:
                    last = record.status
                    if every or record.is_done:
                        yield record
                    if record.is_done:
                        return
                    if every:
                        # The consumer may have taken its time over that one:
                        # the run may have ended on a newer record meanwhile.
                        continue
                if run.ended and run.error is not None:
                    # Every waiter raises the one error: from where it arose,
                    # not under the frames of each waiter before (as
                    # asyncio.Future does), or its traceback would grow.
                    raise run.error.with_traceback(run.error_traceback)
                if run.ended and not follower.expired:
                    # Stopped by nobody's wish (cannot happen while we follow).
                    raise self._registry.requester.stopped_error()
                if look_at is not None:
                    if await follower.changed(look_at):
                        continue
                    look_at = None
                    assert deadline is not None
                    assert lead is not None
                    if not follower.expired:
                        await last_look(self, deadline, lead)
                    continue
                if not await follower.changed(deadline):
                    record = self._record
                    if record is not None and record.is_done and record.status is not last:
                        # It came as the deadline passed (the loop busy
                        # elsewhere when both fell due): a known outcome wins.
                        continue
                    raise timed_out(self, limit or 0.0)
        finally:
            if timer is not None:
                timer.cancel()
            follower.leave()
            if follower.stopped is not None:
                await asyncio.wait((follower.stopped,))

    # -- durable delivery -------------------------------------------------------------

    async def ack(self) -> None:
        """Acknowledge this task's outcome: its store never delivers it again.

        For a handle from :meth:`VeoSession.completed`: committed before
        returning, so a restart does not hand it over again. A task whose
        polling ended because the service does not know it
        (:class:`RecordNotFoundError`) is forgotten by the store instead: it
        is no longer resumed.

        :raises RuntimeError: the session has no store (``VeoSession(store=...)``).
        :raises asyncio.InvalidStateError: the task has no outcome to acknowledge yet.
        :raises StoreError: the store could not write it.
        """
        journal = self._registry.journal
        if journal is None:
            raise RuntimeError(
                f"task {self.task_id!r}: ack() needs a session with a store "
                "(VeoSession(store=SQLiteStore(path)))"
            )
        await journal.ack(self)

    # -- what can be made of a finished video ---------------------------------------

    async def extend(
        self,
        prompt: str | ExtendRequest,
        *,
        model: str | None = None,
        seeds: int | None = None,
        watermark: str | None = None,
        callback_url: str | None = None,
        allow_unknown: bool = False,
    ) -> VeoTask:
        """Extend this task's video (``POST extend``); the new task's handle.

        Waits for this task to succeed first (with the session's policy). The
        request is validated before anything is sent, and sent once (see
        :meth:`VeoSession.generate` for when it is resent).

        :param prompt: what happens next, or a ready :class:`ExtendRequest`
            (then give no other argument).
        :param model: ``fast``, ``quality`` or ``lite``; None: Kie's default.
        :raises SubmitUncertainError: the extend may exist; not resent.
        :raises TaskFailedError: this task failed: there is nothing to extend.
        """
        if isinstance(prompt, ExtendRequest):
            if (model, seeds, watermark, callback_url, allow_unknown) != (
                None, None, None, None, False,
            ):
                raise TypeError("pass either an ExtendRequest or keyword arguments, not both")
            if prompt.task_id != self.task_id:
                raise ValueError(
                    f"the ExtendRequest is for task {prompt.task_id!r}, not {self.task_id!r}"
                )
            request = prompt
        else:
            request = ExtendRequest(
                self.task_id,
                prompt,
                model=model,
                seeds=seeds,
                watermark=watermark,
                callback_url=callback_url,
                allow_unknown=allow_unknown,
            )
        if not self.done():
            await self.wait()
        _outcome(self._record)  # type: ignore[arg-type]  # done: a record exists
        return await self._registry.create(request)

    async def get_1080p(self, index: int = 0, *, timeout: float | None = 900.0) -> str:
        """The 1080p version of video ``index``: waits until it is ready.

        Waits for this task to succeed first, then asks ``get-1080p-video`` at
        once and every 20-30 s while it answers "processing" (usually 1-3 min).

        :param timeout: seconds for the whole call (None: no deadline).
        :raises ValueError: a fallback-model video, which Kie cannot upgrade
            (before any upgrade request); a bad index or timeout.
        :raises WaitTimeoutError: not ready by the deadline.
        """
        record, deadline, limit = await self._finished(index, timeout, "1080p")
        return await fetch_1080p(self._registry.requester, record, index, deadline, limit)

    async def get_4k(
        self, index: int = 0, *, callback_url: str | None = None, timeout: float | None = 1200.0
    ) -> tuple[str, ...]:
        """The 4K version of video ``index``: requested, then waited for.

        Waits for this task to succeed first, POSTs ``get-4k-video`` (it costs
        credits, once), then asks again every 30-60 s until the answer carries
        the URLs (usually 5-10 min): Kie answers a repeated request with 422,
        both "processing" and "already generated" (never a second job), which
        are told apart here. So a request whose answer was lost (a reset, a
        5xx) is asked again the same way, not raised as
        :class:`~veo_async.SubmitUncertainError`.

        :param callback_url: also have Kie POST the outcome there.
        :param timeout: seconds for the whole call (None: no deadline).
        :raises ValueError: a fallback-model video, a bad index, URL or timeout.
        :raises WaitTimeoutError: not ready by the deadline.
        """
        if callback_url is not None:
            validate_url(callback_url, "callback_url")
        record, deadline, limit = await self._finished(index, timeout, "4K")
        # One caller at a time asks for a video's 4K version: two at once sent
        # two first requests together (each may be charged). The next asks
        # when the first is done, and is told "already generated".
        asking = self._uhd_asking
        if asking is None:
            asking = self._uhd_asking = {}
        lock = asking.setdefault(index, asyncio.Lock())
        if not await _acquired_by(lock, deadline):
            raise WaitTimeoutError(self.task_id, limit, record, None, waiting_for="the 4K video")
        try:
            return await fetch_4k(
                self._registry.requester, record, index, callback_url, deadline, limit
            )
        finally:
            lock.release()

    async def _finished(
        self, index: int, timeout: float | None, what: str
    ) -> tuple[RecordInfo, float | None, float]:
        """Check the arguments, wait for success, refuse a fallback video."""
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= _MAX_INDEX:
            raise ValueError(f"index must be an int within 0-{_MAX_INDEX}, not {shown(index)}")
        limit = resolve_timeout(timeout, self._registry.policy)
        deadline = None if limit is None else _now() + limit
        record = self._record
        if record is None or not record.is_done:
            record = await self.wait(timeout=limit)
        else:
            record = _outcome(record)
        refuse_fallback(record, what)
        videos = len(record.result_urls)
        if videos and index >= videos:
            raise ValueError(
                f"index {index} is out of range: task {self.task_id!r} has {videos} video(s)"
            )
        if deadline is not None and _now() >= deadline:
            # Out of time before asking: the upgrade request may cost credits.
            raise WaitTimeoutError(
                self.task_id, limit or 0.0, record, None, waiting_for=f"the {what} video"
            )
        return record, deadline, limit if limit is not None else 0.0

def _run_stopped(handle: VeoTask, run: _PollRun) -> None:
    """``run``, ``handle``'s poll run, ended or was stopped (called by the run)."""
    if handle._run is run:
        handle._run = None
    if run.error is not None:
        handle._error = run.error


def _publish(handle: VeoTask, record: RecordInfo) -> None:
    """``handle`` takes a fresh record (from a poll or :meth:`VeoTask.refresh`)
    and tells its followers.

    A terminal record is final: a stale answer (sent before the task
    finished, answered after) never moves a handle backwards. (Not a method:
    only a poll of the task's own id may bring its record; a user handing a
    handle another task's record made it that task's.)
    """
    previous = handle._record
    if previous is not None and previous.status is not _GENERATING:  # is_done
        return
    handle._record = record
    handle._last_failure = None
    if previous is not None and previous.status is record.status:
        return
    registry = handle._registry
    journal = registry.journal
    if record.status is not _GENERATING:  # record.is_done
        # The newest outcome, whichever wait brought it (a watch, a batch):
        # an older wait's timeout is no longer what ended the last one.
        handle._error = _failure_of(record)
        pacer = registry.pacer
        if pacer.learning:
            run = handle._run
            pacer.observe(record, None if run is None else run.plan, model=handle._model)
        if journal is not None:
            journal.finished(handle)
    elif previous is None and journal is not None:
        journal.seen(handle)
    if registry.requester.reporting:
        registry.requester.emit(
            RecordPublished(
                handle.task_id, record.status, previous.status if previous else None, record
            )
        )
    run = handle._run
    if run is not None:
        if record.status is not _GENERATING:
            # Final, whoever brought it: a refresh() or a last look ends the
            # run as its own poll would (which then finds it ended). Left
            # queued, it polled on for followers that had let go. Its end
            # tells the followers, once (the change and the end together).
            run.end()
        else:
            run.notify(None)


def _note_failure(handle: VeoTask, error: VeoError) -> None:
    """A poll of ``handle`` failed: a timeout later says why nothing was seen."""
    handle._last_failure = error


async def last_look(handle: VeoTask, deadline: float, lead: float) -> None:
    """A wait's last look at ``handle``, ``lead`` seconds before its
    ``deadline``: one poll, if the handle's run has no poll due before the
    deadline (one due between now and then is brought forward to now: it is
    the look), none in flight and none in the last ``lead`` seconds (a learned
    schedule's first poll of a new task comes a minute or more after its
    creation). A task that finished meanwhile is seen, not reported as timed
    out; an answer that misses the deadline, or a failed poll, leaves the
    timeout to be raised (the failure as its ``last_error``).

    For :meth:`VeoTask.wait`, :meth:`VeoTask.watch` and the batch tools.
    """
    run = handle._run
    while True:
        now = _now()
        left = deadline - now
        if run is None or handle._run is not run or left <= 0:
            return
        if run.poll_now_for(now, lead, deadline):
            return
        shared = run.look
        if shared is None:
            break
        # Another waiter's look is out: its answer reaches this wait as
        # every poll's does (50 waiters of one deadline made 50 requests at
        # once). Failed, or cancelled with its waiter, it was no look: then
        # this wait makes its own, if there is time.
        done, _ = await asyncio.wait((shared,), timeout=left)
        if not done or shared.result():
            return
    if not run.idle_at(now, lead, deadline):
        return
    run.look = look = asyncio.get_running_loop().create_future()
    answered = False
    try:
        # No answer by the deadline: the wait times out (within() says so).
        answered, _ = await within(handle.refresh(), left)
    except VeoError as exc:
        _note_failure(handle, exc)
        # An answer the run's own poll would have ended on ends it (an id
        # still unknown past its grace is RecordNotFoundError, not a timeout
        # that depended on where the deadline fell).
        if handle._run is run and run.request is None and not run.retrying(exc):
            run.end(exc)
    finally:
        run.look = None
        if answered:
            run.looked_at = now
        look.set_result(answered)


def timed_out(handle: VeoTask, limit: float, *, log: bool = True) -> WaitTimeoutError:
    """Record and return the timeout of a wait of ``limit`` seconds for ``handle``.

    :param log: write the debug line (a batch writes one for all instead).
    """
    error = WaitTimeoutError(handle.task_id, limit, handle._record, handle._last_failure)
    handle._error = error
    if log:
        logger.debug("wait for task %s timed out after %ss", handle.task_id, limit)
    return error


async def _acquired_by(lock: asyncio.Lock, deadline: float | None) -> bool:
    """Acquire ``lock`` by ``deadline`` (loop time; None: whenever); False
    when the deadline came first. Given up (the deadline, a cancellation),
    it never leaves the lock held: no await between giving up and letting
    go (a second cancellation there left it held for good)."""
    acquiring = asyncio.ensure_future(lock.acquire())
    try:
        timeout = None if deadline is None else max(0.0, deadline - _now())
        await asyncio.wait((acquiring,), timeout=timeout)
    except BaseException:
        _give_up(acquiring, lock)
        raise
    if acquiring.done() and not acquiring.cancelled():
        return True
    _give_up(acquiring, lock)
    return False


def _give_up(acquiring: asyncio.Task[Any], lock: asyncio.Lock) -> None:
    """Stop ``acquiring`` ``lock``, now: released if it was acquired, or when
    an acquire that cannot be stopped any more ends acquired."""
    if acquiring.done():
        if not acquiring.cancelled():
            lock.release()
        return
    acquiring.cancel()  # (asyncio.Lock passes on a turn its cancelled waiter was given)
    acquiring.add_done_callback(
        lambda ended: None if ended.cancelled() else lock.release()
    )


def _new_handle(task_id: str, registry: TaskRegistry) -> VeoTask:
    """The only way a handle is made (``VeoTask()`` itself refuses)."""
    handle = object.__new__(VeoTask)
    handle.task_id = task_id
    handle._registry = registry
    handle._record = None
    handle._error = None
    handle._last_failure = None
    handle._run = None
    handle._asked_at = None
    handle._request = None
    handle._created_at = None
    handle._created_loop_time = None
    handle._model = None
    handle._first_seen = None
    handle._uhd_asking = None
    return handle


def _set_origin(handle: VeoTask, request: GenerateRequest | ExtendRequest, now: float) -> None:
    """Remember that this session created ``handle``'s task, and when."""
    handle._request = request
    # An extend names its model as the extend endpoint does (``fast``...),
    # which has its own prior: without it the task was polled on the pooled one.
    handle._model = request.model
    handle._created_at = datetime.datetime.now(datetime.timezone.utc)
    handle._created_loop_time = now


def _restore(
    handle: VeoTask, model: str | None, created_at: float | None, record: RecordInfo | None
) -> None:
    """Give a handle what a store remembers of its task (what it knows already wins).

    A stored terminal record is set without publishing: it is not news (the
    store has it, and nobody follows the handle yet).
    """
    if handle._model is None:
        handle._model = model
    if created_at is not None and handle._created_loop_time is None:
        # The loop clock of the creation, so that the pacer sees the task's true
        # age after a restart (the wall clock moved on while nobody polled).
        age = max(0.0, time.time() - created_at)
        handle._created_loop_time = _now() - age
        handle._created_at = datetime.datetime.fromtimestamp(created_at, datetime.timezone.utc)
    if record is not None and (handle._record is None or not handle._record.is_done):
        handle._record = record


def _failure_of(record: RecordInfo) -> TaskFailedError | None:
    """The error a terminal record's task ended in: None after success."""
    return None if record.status is _SUCCESS else TaskFailedError(record)


def _outcome(record: RecordInfo) -> RecordInfo:
    """A terminal record after success; else raise the task's failure."""
    failure = _failure_of(record)
    if failure is not None:
        raise failure
    return record


# The registry sweeps out dead handles' entries once it holds this many (or
# twice as many as after the last sweep): bounded garbage, amortised cost.
_PURGE_MIN = 1024
# Entries a purge after a batch looks at per loop step (see TaskRegistry.released).
_PURGE_SLICE = 20_000


class TaskRegistry:
    """The session's handles (one per id while alive) and what they share.

    :param requester: sends every poll.
    :param pacer: gives each poll run its plan (the session's default policy).
    :param journal: told of first and terminal records and of creations
        (durable tracking), or None.
    """

    def __init__(
        self, requester: Requester, pacer: Pacer, journal: TaskJournal | None = None
    ) -> None:
        self.requester = requester
        self.pacer = pacer
        self.journal = journal
        pacer.waiting_polls = self._waiting_polls
        # Handles live as long as someone (a caller or their poll run) holds
        # them: no unbounded cache across hundreds of thousands of ids. Plain
        # weak references, with the dead ones dropped in bulk (see _purge):
        # a WeakValueDictionary costs two Python calls per new handle and a
        # callback per dead one, on every id of every batch.
        self._handles: dict[str, weakref.ref[VeoTask]] = {}
        self._purge_at = _PURGE_MIN
        # Tasks this session created within its policy's not_found_grace, by
        # creation time (oldest first): a caller who kept only the id (the
        # handle gone) still has "record is null" read as "not visible yet".
        # (Ordered: a dict's next(iter()) walks the deleted slots piling up
        # at its front, see _durable's _acked.)
        self._fresh: collections.OrderedDict[str, float] = collections.OrderedDict()
        #: Tasks of batches letting go of their runs at a deadline nobody was
        #: waiting for (see CompletionTracker.expire_at): the session's close
        #: waits for them.
        self.background: set[asyncio.Task[None]] = set()
        #: The ends of this session's large batches still live (see
        #: _FreezeWhileLarge.live): the session's close calls them.
        self.live_batches: set[Callable[[], None]] = set()

    def _waiting_polls(self) -> Iterator[Replannable]:
        """The poll runs waiting in the queue, one at a time (see Pacer.waiting_polls)."""
        for ticket in self.requester.queue.waiting_tickets():
            if isinstance(ticket, _PollRun):
                yield ticket

    def handle(self, task_id: str, *, validated: bool = False) -> VeoTask:
        """The one handle of ``task_id``, made on first use.

        :param validated: the caller has checked the id already (a batch checks
            every id before its first request): do not check it again.
        :raises ValueError: (TypeError for a non-string) for a bad id.
        """
        if not validated:
            validate_task_id(task_id)
        handles = self._handles
        ref = handles.get(task_id)
        handle = ref() if ref is not None else None
        if handle is None:
            handle = _new_handle(task_id, self)
            handles[task_id] = weakref.ref(handle)
            if len(handles) >= self._purge_at:
                self._purge()
        return handle

    def released(self, count: int) -> None:
        """A batch let go of ``count`` handles (now freed, unless held
        elsewhere). If they were half the map or more, its dead entries go
        now: left until the map doubled, the entries of a batch of 500,000
        ids (170 bytes each) stayed until 500,000 more new ids came."""
        if count >= _PURGE_MIN and 2 * count >= len(self._handles):
            # A slice per loop step (500,000 entries in one took 0.11 s).
            ids = list(self._handles)
            asyncio.get_running_loop().call_soon(self._purge_slice, ids)

    def _purge_slice(self, ids: list[str]) -> None:
        """Drop the dead entries among the last ``_PURGE_SLICE`` of ``ids``;
        the rest on the next loop step."""
        self._drop_dead(ids[-_PURGE_SLICE:])
        del ids[-_PURGE_SLICE:]
        if ids:
            asyncio.get_running_loop().call_soon(self._purge_slice, ids)
        else:
            self._purge_at = max(_PURGE_MIN, 2 * len(self._handles))

    def _purge(self) -> None:
        """Drop the entries of dead handles; next time when the map has doubled
        (so each new handle pays O(1) for it, amortised)."""
        self._drop_dead(list(self._handles))
        self._purge_at = max(_PURGE_MIN, 2 * len(self._handles))

    def _drop_dead(self, ids: list[str]) -> None:
        """Drop the entries among ``ids`` whose handles are gone."""
        # In place: a new map of 100,000 entries would be young, and walked by
        # every collection until it is old.
        handles = self._handles
        for task_id in ids:
            ref = handles.get(task_id)
            if ref is not None and ref() is None:
                del handles[task_id]

    async def create(self, request: GenerateRequest | ExtendRequest) -> VeoTask:
        """Send a create request (see :func:`veo_async._create.submit`); the
        new task's handle, which remembers the request.

        With a journal, the create intent is written first and the task id
        right after the answer (:func:`veo_async._create.submit_recorded`);
        the handle then remembers the request as sent (its ``callback_url``
        carries the intent's ``veo_ref``).
        """
        journal = self.journal
        sent: GenerateRequest | ExtendRequest = request
        try:
            if journal is None:
                task_id = await submit(self.requester, request)
            else:
                store = await journal.opened()
                task_id, sent = await submit_recorded(self.requester, request, store)
        except SubmitUncertainError as uncertain:
            if uncertain.task_id is None:
                raise
            # The answer named its task: just created, if it exists, so a wait
            # on it gets the grace a new record takes to appear (not "record
            # is null" as final at once); stored with its intent, it is
            # followed too.
            self._adopt(uncertain.task_id, uncertain.request)
            raise
        return self._adopt(task_id, sent)

    def _adopt(self, task_id: str, request: GenerateRequest | ExtendRequest) -> VeoTask:
        """The handle of a task just created with ``request``, followed by
        the journal's running deliveries when there is one."""
        handle = self.created(task_id, request)
        if self.journal is not None:
            self.journal.adopted(handle)
        return handle

    def restore(
        self,
        task_id: str,
        *,
        model: str | None = None,
        created_at: float | None = None,
        record: RecordInfo | None = None,
    ) -> VeoTask:
        """The handle of a task a store remembers, given what it remembers.

        :param model: the task's model, when known.
        :param created_at: its creation time (epoch seconds) when this or an
            earlier session created it: the pacer then knows its age.
        :param record: its stored terminal record, if any.
        """
        handle = self.handle(task_id)
        _restore(handle, model, created_at, record)
        return handle

    def created(self, task_id: str, request: GenerateRequest | ExtendRequest) -> VeoTask:
        """The handle of a task this session just created with ``request``."""
        handle = self.handle(task_id)
        now = _now()
        _set_origin(handle, request, now)
        self._forget_stale_creations(now)
        self._fresh[task_id] = now
        return handle

    def _forget_stale_creations(self, now: float) -> None:
        """Drop the creations older than the policy's ``not_found_grace``."""
        grace, fresh = self.policy.not_found_grace, self._fresh
        while fresh:
            oldest, created = next(iter(fresh.items()))
            if now - created < grace:
                break
            del fresh[oldest]

    @property
    def policy(self) -> AnyPolicy:
        """The session's default policy."""
        return self.pacer.default

    def note_absence(self, error: RecordNotFoundError, task_id: str) -> None:
        """Mark a single request's "record is null" for ``task_id`` retryable
        if this session created the task within its policy's
        ``not_found_grace``: the reference says a new record can take a
        moment to appear (a wait retries it; a caller of refresh() or
        record_info() right after generate() should too). Past the window,
        for an id it did not create, or for a record said expired, the
        error stays final."""
        ref = self._handles.get(task_id)
        handle = ref() if ref is not None else None
        created = None if handle is None else handle.created_loop_time
        if created is None:
            self._forget_stale_creations(self.requester.now())
            created = self._fresh.get(task_id)
        if created is None or error.expired:
            return
        if self.requester.now() - created < self.policy.not_found_grace:
            error.retryable = True

    def wait_settings(
        self, timeout: TimeoutArg, policy: AnyPolicy | None, *, finished: bool = False
    ) -> tuple[float | None, AnyPolicy]:
        """Validate a wait's arguments (before any I/O): its timeout and policy.

        :param finished: the wait is of a handle whose terminal record is
            known: it answers from memory, with no request, so a closed
            session (or another loop) does not refuse it.
        """
        if policy is not None and not isinstance(policy, (PollPolicy, AdaptivePolicy)):
            raise TypeError(
                f"policy must be a PollPolicy or an AdaptivePolicy, not {type(policy).__name__}"
            )
        chosen = policy if policy is not None else self.policy
        limit = resolve_timeout(timeout, chosen)
        if finished:
            return limit, chosen
        # Closed: refused. Stopped by a 401: each task's wait ends with it
        # (see VeoTask.subscribe), so a batch still has one outcome per id.
        self.requester.check_open()
        self.requester.check_loop()
        return limit, chosen
