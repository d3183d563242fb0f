"""The requester: transport + budget + decoding + stats + instrumentation events.

Handles, batches and the session's own calls all send through one
:class:`Requester`. It takes a slot from the session's :class:`DueQueue`
(a create request first takes one from the separate *creation* queue, whose
budget follows Kie's "20 new generation requests per 10 s"),
sends through the :class:`Transport`, decodes the answer *while still holding
the slot* (so a 429 pauses the session before the next queued request goes),
counts, reports events, and releases the slot.

Two session-wide states live here because every request must see them:

- **closed**: every queued request is woken at once with
  :class:`SessionClosedError`, and no new one starts;
- **fatal**: after the first 401 the key is known to be wrong: every queued
  and later request fails with that :class:`AuthenticationError` without I/O.
"""

from __future__ import annotations

import asyncio
import datetime
import inspect
import logging
import math
import traceback
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, Literal, TypeVar

import attrs

from ._convert import KIE_TIMEZONE
from ._deadlines import cancelling, taken_back
from ._http import ApiKey, HttpRequest, Transport
from ._limits import DueQueue, RequestBudget
from ._poll_runners import PollAnswer, PollRequest, PollRunners
from ._protocol import RawResponse, decode_record_info, parse_http_date
from .errors import (
    AuthenticationError,
    RateLimitError,
    SessionClosedError,
    TransportError,
    VeoError,
)
from .events import (
    RAISED_TOO,
    Event,
    RequestAnswered,
    RequestCancelled,
    RequestFailed,
    RequestStarted,
    SessionPaused,
)
from .models import RecordInfo

__all__ = [
    "CREATE_PERIOD",
    "CREATE_RATE",
    "RECORD_INFO_PATH",
    "Requester",
    "SessionStats",
]

logger = logging.getLogger("veo_async")

RECORD_INFO_PATH = "/api/v1/veo/record-info"
# Parsing a date on every answer would cost more than it tells: clocks drift slowly.
_DATE_EVERY = 60.0
#: Kie's documented account limit: 20 new generation requests per 10 s.
CREATE_RATE = 20
#: The window of :data:`CREATE_RATE`, in seconds.
CREATE_PERIOD = 10.0

T = TypeVar("T")
#: A session's ``on_event``: called with each event, returning nothing (an
#: ``async def`` would return a coroutine nobody awaits: refused).
EventHook = Callable[[Event], None]


@attrs.frozen
class SessionStats:
    """Counters of one session at one instant, for dashboards and the CLI.

    :ivar requests: HTTP requests started.
    :ivar failures: requests that ended in an error (any kind, 429 included).
    :ivar rate_limited: 429 answers to polls and other reads absorbed (those
        to creates are in ``create_rate_limited``).
    :ivar max_in_flight: the most requests in flight at once.
    :ivar in_flight: requests in flight now.
    :ivar queued: requests waiting for their due time or a slot.
    :ivar pauses: how many times a 429 to a read paused (or lengthened a pause
        of) the session (creates' pauses are in ``create_pauses``).
    :ivar paused_for: seconds left of the current 429 pause (0: not paused).
    :ivar last_error: the error of the most recent failed request, or None.
    :ivar last_answer_at: loop time of the most recent answer (any status),
        None before the first: with ``last_error``, tells "never reached" apart.
    :ivar creates: create requests started (generate, extend, 4K), resends included.
    :ivar create_queued: create requests waiting for the creation budget.
    :ivar create_rate_limited: 429 answers to create requests (these pause
        creating only, never polling).
    :ivar create_paused_for: seconds left of the current creation pause.
    :ivar create_pauses: how many times a 429 to a create paused (or lengthened
        a pause of) creating.
    """

    requests: int = 0
    failures: int = 0
    rate_limited: int = 0
    max_in_flight: int = 0
    in_flight: int = 0
    queued: int = 0
    pauses: int = 0
    paused_for: float = 0.0
    last_error: VeoError | None = None
    last_answer_at: float | None = None
    creates: int = 0
    create_queued: int = 0
    create_rate_limited: int = 0
    create_paused_for: float = 0.0
    create_pauses: int = 0


class Requester:
    """Sends the session's requests under its budget; see the module docstring.

    :param transport: where requests go.
    :param api_key: the credentials every request carries.
    :param budget: the session's admission rules.
    :param create_budget: the admission rules of create requests, on top of
        ``budget``; None: :data:`CREATE_RATE` per :data:`CREATE_PERIOD` s.
    :param on_event: the instrumentation hook, or None.
    """

    def __init__(
        self,
        transport: Transport,
        api_key: ApiKey,
        budget: RequestBudget,
        *,
        create_budget: RequestBudget | None = None,
        on_event: EventHook | None = None,
        timezone: datetime.tzinfo = KIE_TIMEZONE,
        on_server_date: Callable[[float], object] | None = None,
        on_stopped: Callable[[Callable[[], VeoError]], object] | None = None,
    ) -> None:
        self.transport = transport
        self.timezone = timezone
        self._on_server_date = on_server_date
        # Told once, when a 401 stops the session, with stopped_error (a
        # fresh copy of it per call): what waits for tasks that are not polled
        # yet (a following completed()) has no request of its own to meet it.
        self._on_stopped = on_stopped
        self._date_read_at = -math.inf
        self.queue = DueQueue(budget)
        if create_budget is None:
            create_budget = RequestBudget(
                budget.concurrency, CREATE_RATE, period=CREATE_PERIOD, count_finish=True
            )
        self.create_queue = DueQueue(create_budget)
        self._creates = 0
        self._api_key = api_key
        self._on_event = on_event
        #: True when events are wanted (skip building them otherwise). An
        #: attribute, not a property: read on every published record.
        self.reporting = on_event is not None
        self._requests = 0
        self._failures = 0
        self._last_error: VeoError | None = None
        self._last_answer_at: float | None = None
        self._fatal: AuthenticationError | None = None
        self._closed = False
        # The event loop of the first check_loop() inside one (see there).
        self._loop: asyncio.AbstractEventLoop | None = None
        # Poll requests run on a few reused tasks (see _poll_runners).
        self._runners = PollRunners(self._record_exchange, self.queue.release)
        #: ``poll(task_id, previous, granted_at, on_answer)``: start a
        #: record-info request on a slot already granted (by the queue).
        #: ``on_answer`` is called once with ``(request, record, None)`` or
        #: ``(request, None, error)`` at the end of the request, inside its
        #: runner (no done-callback hop per poll); ``error`` is a
        #: CancelledError when the session closed under the request. Not
        #: called after :meth:`stop_poll`. Returns the request; stop it with
        #: :meth:`stop_poll`. The slot is released either way.
        #: (The runners' own method, not one of ours calling it: one Python
        #: call less on every poll.)
        self.poll: Callable[[str, RecordInfo | None, float, PollAnswer], PollRequest] = (
            self._runners.start
        )
        # One-shot requests in flight (record_info, creates, ...; the poll
        # runners are stopped apart), by the task awaiting each; those a 401
        # ends too (all but the creates that must not be cut: see call); and
        # those aclose() or a 401 cancelled.
        self._calls: set[asyncio.Task[Any]] = set()
        self._stoppable_calls: set[asyncio.Task[Any]] = set()
        self._ended_calls: set[asyncio.Task[Any]] = set()
        # Set when a one-shot request leaves once closed (see _calls_left).
        self._call_left: asyncio.Future[None] | None = None
        # Calls sleeping between two asks (see pause): woken by a close or a 401.
        self._pausing: set[asyncio.Future[None]] = set()

    @property
    def closed(self) -> bool:
        """True once :meth:`aclose` began."""
        return self._closed

    def stats(self) -> SessionStats:
        """The counters now (a snapshot)."""
        budget = self.queue.budget
        creating = self.create_queue.budget
        loop_time = _loop_time()
        paused_for = max(0.0, budget.paused_until - loop_time) if loop_time is not None else 0.0
        create_paused = (
            max(0.0, creating.paused_until - loop_time) if loop_time is not None else 0.0
        )
        return SessionStats(
            requests=self._requests,
            failures=self._failures,
            rate_limited=budget.rate_limited,
            max_in_flight=budget.max_in_flight,
            in_flight=budget.in_flight,
            queued=self.queue.waiting,
            pauses=budget.pauses,
            paused_for=paused_for,
            last_error=self._last_error,
            last_answer_at=self._last_answer_at,
            creates=self._creates,
            create_queued=self.create_queue.waiting,
            create_rate_limited=creating.rate_limited,
            create_paused_for=create_paused,
            create_pauses=creating.pauses,
        )

    def emit(self, event: Event) -> None:
        """Hand ``event`` to the hook; a failing hook is logged, never raised
        (an interrupt, ``SystemExit`` or a cancellation is raised)."""
        hook = self._on_event
        if hook is None:
            return
        try:
            returned = hook(event)
        except (KeyboardInterrupt, SystemExit, asyncio.CancelledError):
            raise  # the process is stopping, or a cancellation: not the hook's failure
        except BaseException as exc:
            # BaseException too (pytest.fail's, a library's own): raised into a
            # poll runner, it ended the runner, and the wait of the poll it
            # was answering hung to its deadline. The hook's own error may
            # quote the key (in its message, its arguments, what it chains to,
            # an exception group's members): the text logged is the
            # traceback's, with the key hidden.
            text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            logger.error(
                "on_event hook raised on %s; ignored\n%s",
                type(event).__name__,
                self._api_key.hidden_in(text),
            )
            return
        if inspect.iscoroutine(returned):
            # A plain callable that returned a coroutine (a lambda around an
            # async function): it would never run. Close it, and say so.
            returned.close()
            logger.error("on_event hook returned a coroutine, which is not awaited; ignored")

    def check_open(self) -> None:
        """Raise :class:`SessionClosedError` once the session is closed.

        What a wait checks before it starts: on a session stopped by a 401, a
        wait still ends per task, each with its own AuthenticationError.
        """
        if self._closed:
            raise SessionClosedError()

    def check_loop(self, *, closing: bool = False) -> None:
        """Raise RuntimeError when called from another event loop than the
        first one it was called from. For the entry points (a session's
        calls, a wait's start), not for each id or request they go on to.

        :param closing: for a close: allowed from another loop once the first
            one is closed (nothing can run on it any more; what is left of
            the session is let go of from here).
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # outside any loop (a handle made before one runs)
            return
        if self._loop is None:
            self._loop = loop
        elif loop is not self._loop and not (closing and self._loop.is_closed()):
            # Its connections, timers and queue belong to that loop: used from
            # another, it failed deep in aiohttp ("Event loop is closed") or
            # never woke its waiter (a loop in another thread).
            raise RuntimeError(
                "this VeoSession was first used in another event loop; "
                "make one session per event loop (asyncio.run call, thread)"
            )

    def now(self) -> float:
        """The event loop's time, read on the session's loop once it is known
        (looking the running loop up costs a getpid() system call on Python
        3.11 and older: once or twice a request otherwise)."""
        loop = self._loop
        if loop is None:
            return asyncio.get_running_loop().time()
        return loop.time()

    def check_usable(self) -> None:
        """Raise what every new request would meet: closed, or a fatal 401."""
        if self._closed or self._fatal is not None:  # (no further call while usable)
            self.check_open()
            raise self._copy_fatal()

    async def pause(self, seconds: float) -> None:
        """Sleep ``seconds`` between two requests of one call (a 1080p or
        4K video asked for again), or less: the session closing or a 401
        stopping it wakes the sleeper, which then raises what a new request
        would. A plain sleep outlived the close by up to a minute.

        :raises SessionClosedError: the session is closed.
        :raises AuthenticationError: a 401 stopped the session.
        """
        self.check_usable()
        loop = asyncio.get_running_loop()
        woken: asyncio.Future[None] = loop.create_future()
        self._pausing.add(woken)
        timer = loop.call_later(seconds, _wake, woken)
        try:
            await woken
        finally:
            timer.cancel()
            self._pausing.discard(woken)
        self.check_usable()

    def _wake_pausing(self) -> None:
        """End every pause now (the session closes, or a 401 stopped it)."""
        for woken in self._pausing:
            _wake(woken)

    def stopped_error(self) -> VeoError:
        """What a poll the session stopped ends with: a copy of the 401 that
        stopped it, else :class:`SessionClosedError` (the session closed)."""
        if self._fatal is not None:
            return self._copy_fatal()
        return SessionClosedError("the VeoSession was closed while waiting")

    def _copy_fatal(self) -> AuthenticationError:
        fatal = self._fatal
        assert fatal is not None
        # A fresh instance per waiter: one exception raised in many places
        # would collect every waiter's traceback.
        return AuthenticationError(
            fatal.message, code=fatal.code, http_status=fatal.http_status, task_id=None
        )

    async def call(
        self,
        method: str,
        path: str,
        decode: Callable[[RawResponse], T],
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        task_id: str | None = None,
        create: bool = False,
        asked_again: bool = False,
        before_send: Callable[[], Awaitable[None]] | None = None,
        on_unsent: Callable[[], None] | None = None,
    ) -> T:
        """One request now (queued behind the budget), decoded by ``decode``.

        A 401 that stops the session ends the request at once with it (every
        new request would meet it), unless it is a create whose own answer
        must be awaited (see ``asked_again``).

        :param create: a create request: it first waits for the creation
            budget; a 429 pauses creating only; and a transport failure is
            raised as is even while closing (its ``sent`` flag matters).
        :param asked_again: a create that its caller asks for again until it
            is ready (a 4K video): a 401 ends it at once too.
        :param before_send: a create only: awaited once its slots are granted,
            just before the request goes out (a store writes its intent
            there: a create still waiting for the budget was certainly not
            sent). If it raises, nothing is sent.
        :param on_unsent: a create only: called when the request is given up
            after ``before_send`` ran but before it was sent (cancelled, or
            the session closed, while it waited out another create's 429).
        """
        self.check_usable()
        if not create:
            granted_at = self.queue.take()
            if granted_at is None:
                granted_at = await self.queue.acquire()
            return await self._exchange(
                method, path, decode, granted_at, params, json, task_id, stoppable=True
            )
        creating = self.create_queue
        while True:
            # The creation slot first: creates waiting for their rate must not
            # sit on the session's in-flight slots meanwhile (polls would starve).
            create_granted = await creating.acquire()
            try:
                granted_at = await self.queue.acquire()
            except BaseException:
                creating.release(sent=False)  # never sent: the next create may go
                raise
            if not creating.budget.paused_after(create_granted, self.now()):
                break
            # Another create's 429 paused creating while this one waited for
            # a session slot: it must not go inside that pause (it went 11 µs
            # into it); both slots back, and in line again behind the pause.
            self.queue.release()
            creating.release(sent=False)
        if before_send is not None:
            try:
                await before_send()
                # Another create's 429 may have paused creating while this
                # one's intent was written: it waits the pause out holding its
                # slots (queued again, it would write its intent twice).
                while creating.budget.paused_after(create_granted, now := self.now()):
                    await self.pause(creating.budget.paused_until - now)
            except BaseException:
                self.queue.release()
                creating.release(sent=False)
                if on_unsent is not None:
                    on_unsent()
                raise
        self._creates += 1
        try:
            return await self._exchange(
                method,
                path,
                decode,
                granted_at,
                params,
                json,
                task_id,
                create_granted,
                stoppable=asked_again,
            )
        finally:
            creating.release()

    def record_info(
        self, task_id: str, previous: RecordInfo | None = None
    ) -> Coroutine[Any, Any, RecordInfo]:
        """One record-info request now: a coroutine giving the decoded record.

        Await it at once: the slot may be taken by this call already, and
        only the coroutine gives it back. (Not a coroutine function itself:
        every layer of one is crossed again on each resumption of the
        request; errors of a closed or failed session are raised by the call.)
        """
        # call() inlined: this is every poll's path.
        if self._closed or self._fatal is not None:
            self.check_usable()
        granted_at = self.queue.take()
        if granted_at is None:
            return self._queued_record_info(task_id, previous)
        return self._record_exchange(task_id, previous, granted_at)

    async def _queued_record_info(self, task_id: str, previous: RecordInfo | None) -> RecordInfo:
        granted_at = await self.queue.acquire()
        return await self._record_exchange(task_id, previous, granted_at)

    def _record_exchange(
        self, task_id: str, previous: RecordInfo | None, granted_at: float, release: bool = True
    ) -> Coroutine[Any, Any, RecordInfo]:
        """The exchange of one record-info request on a granted slot.

        :param release: give the slot back at the end (else the caller does).
        """
        tz = self.timezone
        return self._exchange(
            "GET",
            RECORD_INFO_PATH,
            lambda raw: decode_record_info(raw, task_id, previous, tz=tz),
            granted_at,
            {"taskId": task_id},
            None,
            task_id,
            release=release,
            stoppable=True,
        )

    def stop_poll(self, request: PollRequest) -> asyncio.Future[None] | None:
        """Stop a poll whose answer nobody wants any more: its ``on_answer``
        is not called. Returns a future done when its exchange has ended, if
        it was under way (None if it had not started: its slot is given back)."""
        return self._runners.stop(request)

    async def _exchange(
        self,
        method: str,
        path: str,
        decode: Callable[[RawResponse], T],
        granted_at: float,
        params: Mapping[str, str] | None,
        json: Any,
        task_id: str | None,
        create_granted: float | None = None,
        *,
        release: bool = True,
        stoppable: bool = False,
    ) -> T:
        """Send and decode on a granted slot; always releases it, unless
        ``release`` is false (the caller then does, however this ends).

        ``create_granted`` (a create request): when its creation slot was granted.
        ``stoppable``: a 401 stopping the session ends it (see :meth:`call`).
        """
        queue = self.queue
        creating = self.create_queue if create_granted is not None else None
        if self._closed or self._fatal is not None:  # granted just before a close or a 401
            if release:
                queue.release()
            self.check_usable()  # raises
        call = asyncio.current_task(self._loop) if release else None
        if call is not None:
            self._calls.add(call)
            if stoppable:
                self._stoppable_calls.add(call)
        # What a request aclose() or a 401 ended raises, once out of the except block
        # that caught its cancellation: raised in it, the error would chain
        # that CancelledError, whose traceback holds the transport's frames
        # (aiohttp's hold our headers in their locals).
        ended: VeoError | None = None
        try:
            self._requests += 1
            if self._on_event is not None:
                self.emit(RequestStarted(method, path, task_id, granted_at))
            raw = self._api_key.hide_in_answer(
                await self.transport.send(HttpRequest(method, path, params, json, self._api_key))
            )
            self._last_answer_at = answered_at = self.now()
            if answered_at - self._date_read_at > _DATE_EVERY:
                self._read_server_date(raw, answered_at)
            try:
                result = decode(raw)
            except VeoError as exc:
                self._api_key.hide_in(exc)  # an answer quoting the key back
                raise
        except RateLimitError as exc:
            scope: Literal["session", "creates"] = "session"
            paused, granted = queue, granted_at
            if creating is not None and create_granted is not None:
                # The creation limit is separate from the polling one: pause
                # creating only, and let polls go on at full width.
                queue.answered(granted_at)
                paused, granted, scope = creating, create_granted, "creates"
            pauses_before = paused.budget.pauses
            pause = paused.rate_limited(granted, exc.retry_after)
            self._failed(method, path, task_id, granted_at, exc)
            logger.debug("429 for %s; %s paused %.1f s", path, scope, pause)
            # A 429 within a longer pause in force (answered to a request sent
            # with others before it) neither starts nor lengthens one: no
            # event, as it counts in no SessionStats.pauses either.
            if self._on_event is not None and paused.budget.pauses > pauses_before:
                # When the pause began (the 429 arrived), not when its request started.
                self.emit(
                    SessionPaused(
                        pause, exc.retry_after, asyncio.get_running_loop().time(), scope
                    )
                )
            raise
        except AuthenticationError as exc:
            self._failed(method, path, task_id, granted_at, exc)
            if self._fatal is None:
                self._fatal = exc
                logger.warning(
                    "401 from the service: the API key is wrong; the session stops",
                    # Every wait gets it as an AuthenticationError too: a
                    # program that reports those (the command line) drops this.
                    extra={RAISED_TOO: True},
                )
                queue.close(self._copy_fatal)
                self.create_queue.close(self._copy_fatal)
                self._wake_pausing()
                # The one-shot reads in flight too (a 1080p video asked for):
                # their answers cannot make the session usable again either.
                self._end_calls(self._stoppable_calls)
                # The polls in flight end now too (each told a copy of this
                # error, see stopped_error): their answers, up to a request
                # timeout away, cannot make the session usable again.
                self._runners.close(self._copy_fatal)
                if self._on_stopped is not None:
                    self._on_stopped(self.stopped_error)
            raise
        except TransportError as exc:
            # Python 3.10 can leave the transport's caught aiohttp error as the
            # implicit context: cut it, since aiohttp's errors hold our headers.
            exc.__context__ = None
            self._api_key.hide_in(exc)  # an answer that quoted the key, unparsed
            self._failed(method, path, task_id, granted_at, exc)
            if self._closed and creating is None:  # aclose() pulled the connection
                raise SessionClosedError(_CLOSED_DURING) from None
            raise
        except Exception as exc:
            queue.answered(granted_at)
            if creating is not None and create_granted is not None:
                creating.answered(create_granted)
            failure = exc if isinstance(exc, VeoError) else None
            if failure is None:
                # Not one of ours: a caller's Transport, or aiohttp refusing
                # how it was used (credentials from .netrc beside our header,
                # a session of another loop; see AiohttpTransport.send).
                # Passed on as it is, its message naming the problem, but
                # the request has ended, failed: counted and told as every
                # other failure is.
                self._api_key.hide_in(exc)
                failure = VeoError(f"the transport raised {type(exc).__name__}: {exc}")
            self._failed(method, path, task_id, granted_at, failure)
            raise
        except asyncio.CancelledError as cancelled:
            if call is not None and self._ended_by_close(call, cancelled):
                if not self._closed:
                    # A 401 stopped the session (see _end_calls).
                    ended = self._copy_fatal()
                    self._failed(method, path, task_id, granted_at, ended)
                else:
                    # As when the transport's close pulls the connection: a
                    # create may have gone through (its caller says so), a
                    # read ends with the session.
                    # (Counted as the caller sees it: stats.last_error said
                    # TransportError where the read raised SessionClosedError.)
                    ended = (
                        TransportError(_CLOSED_DURING, sent=True)
                        if creating is not None
                        else SessionClosedError(_CLOSED_DURING)
                    )
                    self._failed(method, path, task_id, granted_at, ended)
            elif self._on_event is not None:
                now = _loop_time() or granted_at
                self.emit(RequestCancelled(method, path, task_id, now, now - granted_at))
            if ended is None:
                raise
        finally:
            if call is not None:
                self._calls.discard(call)
                self._stoppable_calls.discard(call)
                left = self._call_left
                if left is not None and not left.done():
                    left.set_result(None)
                if self._ended_calls:
                    # A transport that let the cancellation pass (it answered,
                    # or raised its own error): the cancel is taken back, not
                    # left to land in the caller's next await.
                    self._ended_by_close(call)
            if release:
                queue.release()
        if ended is not None:
            raise ended
        queue.answered(granted_at)
        if creating is not None and create_granted is not None:
            creating.answered(create_granted)
        if self._on_event is not None:
            self.emit(RequestAnswered(method, path, task_id, answered_at, answered_at - granted_at))
        return result

    def _read_server_date(self, raw: RawResponse, answered_at: float) -> None:
        """Hand the server's clock (its ``Date`` header) to whoever keeps time.

        An answer without a readable header (a proxy's page) does not count as
        a read: the next answer's header is read, not one a minute later.
        """
        if self._on_server_date is None:
            self._date_read_at = answered_at
            return
        epoch = parse_http_date(raw.headers.get("Date"))
        if epoch is not None:
            self._date_read_at = answered_at
            self._on_server_date(epoch)

    def _failed(
        self, method: str, path: str, task_id: str | None, started: float, error: VeoError
    ) -> None:
        self._failures += 1
        self._last_error = error
        if error.task_id is None and task_id is not None:
            # The decoders see an answer, not the request: name the task here.
            error.task_id = task_id
        if self._on_event is not None:
            now = _loop_time() or started
            self.emit(RequestFailed(method, path, task_id, now, now - started, error))

    def _ended_by_close(
        self, call: asyncio.Task[Any], error: BaseException | None = None
    ) -> bool:
        """Whether :meth:`aclose` (or a 401) cancelled the request of ``call``
        and nobody else cancelled that task since (then the cancellation is
        taken back: the request ends with the session's error instead)."""
        if call not in self._ended_calls:
            return False
        self._ended_calls.discard(call)
        return taken_back(call, error, _CLOSING)

    def _end_calls(self, calls: set[asyncio.Task[Any]]) -> None:
        """Cancel the one-shot requests in flight among ``calls``: each ends
        as if its connection was pulled, whatever the transport does on
        close (an in-process or a user's transport may not abort its
        requests), with the session's error (see _exchange)."""
        current = asyncio.current_task()
        for call in calls:
            # One being cancelled already is left to that cancellation: its
            # count would not tell ours apart (and it ends all the same).
            if (
                call is not current
                and call not in self._ended_calls
                and not call.done()
                and cancelling(call) == 0
            ):
                self._ended_calls.add(call)
                call.cancel(_CLOSING)

    async def _calls_left(self) -> None:
        """Wait until the one-shot requests in flight have left (ended by
        :meth:`_end_calls`): their transports unwound, so none reaches the
        service after the close returned (an in-process server's task, say,
        would take its first step only then, and create a task)."""
        current = asyncio.current_task()
        while any(call is not current for call in self._calls):
            left = self._call_left = asyncio.get_running_loop().create_future()
            try:
                await left
            finally:
                self._call_left = None

    async def aclose(self) -> None:
        """Fail every queued request, cancel the requests in flight, close the transport."""
        if self._closed:
            return
        self._closed = True
        self._wake_pausing()
        self._end_calls(self._calls)
        try:
            await self._calls_left()
            # The waiting requests fail a slice per loop step (a batch of
            # 100,000 ids: one step would stall the loop a third of a second).
            await self.create_queue.aclose(SessionClosedError)
            await self.queue.aclose(SessionClosedError)
            runners = self._runners.close(asyncio.CancelledError)
            if runners:
                await asyncio.wait(runners)
        finally:
            # Also when this close is cancelled meanwhile (a second Ctrl-C, an
            # outer timeout): the queues close, the polls stop and the
            # transport closes, since nothing calls this again (the session
            # counts as closed). Closing a closed queue does nothing; polls
            # still running give their slot back and tell their run themselves.
            self.create_queue.close(SessionClosedError)
            self.queue.close(SessionClosedError)
            self._runners.close(asyncio.CancelledError)
            await self.transport.aclose()


# What a request ends with when aclose() ends it (a read's SessionClosedError,
# a create's TransportError, however the transport took the close).
_CLOSED_DURING = "the VeoSession was closed during the request"
# The message of the cancellation aclose() ends a request with (see taken_back).
_CLOSING = "veo_async: the session closed"


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():  # (its sleeper may have been cancelled)
        future.set_result(None)


def _loop_time() -> float | None:
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return None
