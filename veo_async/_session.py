"""VeoSession: the entry point. Configuration, the state guard, the handles."""

from __future__ import annotations

import asyncio
import datetime
import enum
import inspect
import os
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Sequence
from contextlib import aclosing
from types import TracebackType
from typing import Any, Literal, NoReturn, TypeVar, overload

from ._batch import BatchOutcome, as_completed, check_return_exceptions, wait_many
from ._convert import KIE_TIMEZONE
from ._durable import DurableTracker, ResumeReport
from ._endpoints import CREDIT_PATH, DOWNLOAD_URL_PATH, decode_credits, decode_link
from ._http import (
    MAX_BODY,
    AiohttpTransport,
    ApiKey,
    ClientSession,
    Transport,
    check_api_key,
    pool_size,
)
from ._id_checks import validated_ids, validated_ids_in_steps
from ._limits import RequestBudget
from ._numbers import NotANumberError, check_real, is_finite, shown
from ._pacer import AnyPolicy, Pacer
from ._requester import CREATE_PERIOD, CREATE_RATE, EventHook, Requester, SessionStats
from ._schedule import AdaptivePolicy, DurationLearner
from ._task import TaskRegistry, VeoTask
from ._version import version
from .errors import RecordNotFoundError, SessionClosedError
from .models import (
    GenerateRequest,
    RecordInfo,
    validate_base_url,
    validate_task_id,
    validate_url,
)
from .policy import POLICY_TIMEOUT, PollPolicy, TimeoutArg
from .store import StoredIntent, TaskStore

__all__ = ["DEFAULT_BASE_URL", "VeoSession"]

#: The service root used when neither ``base_url`` nor ``KIE_BASE_URL`` says otherwise.
DEFAULT_BASE_URL = "https://api.kie.ai"


# A VeoSession or a subclass (``async with MySession() as veo`` keeps its type).
_Session = TypeVar("_Session", bound="VeoSession")


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


# Read once: on Python 3.11, _State.CLOSED runs a descriptor each time (every
# record_info() checks it).
_CLOSED = _State.CLOSED


def _positive_number(name: str, value: object, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    number = check_real(name, value)
    if not is_finite(number) or number <= 0:
        raise ValueError(f"{name} must be a positive finite number, not {shown(number)}")


def _base_url(base_url: str | None, *, from_env: bool = True) -> str:
    if base_url is not None:
        # An explicit "" is a mistake, not a wish for the production service.
        return validate_base_url(base_url)
    if not from_env:
        return DEFAULT_BASE_URL
    return validate_base_url(os.environ.get("KIE_BASE_URL") or DEFAULT_BASE_URL)


def _loop_time() -> float:
    return asyncio.get_running_loop().time()


class VeoSession:
    """A connection to the Kie.ai Veo API, used as an async context manager.

    ::

        async with VeoSession() as veo:
            info = await veo.task("veo_task_123")          # polls until done
            results = await veo.wait_many(ids, return_exceptions=True)

    A session is entered once: entering it twice (or nesting it) raises, and a
    closed session stays closed. Its settings are read-only.

    :param api_key: the Kie API key (pasted as ``"Bearer sk-..."``, the key
        after the scheme); None reads the ``KIE_API_KEY`` variable.
    :param base_url: the service root; None reads ``KIE_BASE_URL``, else
        ``https://api.kie.ai``.
    :param session: an :class:`aiohttp.ClientSession` to use; it is not closed
        by :meth:`aclose`. None creates (and later closes) our own.
    :param transport: a :class:`~veo_async.Transport` to send through instead
        of aiohttp (e.g. :meth:`veo_async.testing.FakeKie.transport`, in
        process); ``base_url``, ``session`` and ``request_timeout`` then do not
        apply (nor is ``KIE_BASE_URL`` read).
    :param concurrency: the most HTTP requests in flight at once, across every
        task handle of this session. With an injected ``session``, at most its
        connector's ``limit`` (and ``limit_per_host``): a request waiting in its
        pool would spend its ``request_timeout`` unsent.
    :param rate: the most requests in any sliding one-second window across
        the session, as the service counts them (on arrival: a request counts
        from its start until its answer, and a second after), or None for no
        limit beyond ``concurrency``.
    :param create_rate: the most create requests (generate, extend, 4K) in
        any sliding window of ``create_period`` seconds: Kie's documented
        account limit is 20 per 10 s. Creates wait for it instead of
        provoking 429s; it is separate from ``rate`` (polls never wait for it).
    :param create_period: the window of ``create_rate``, in seconds.
    :param policy: the default schedule of every wait: an
        :class:`AdaptivePolicy` (the default: polls where this model's tasks
        are likely to finish, learned as they do, and following each task's
        age, so a task just created is first polled when its model's tasks
        start to finish) or a fixed :class:`PollPolicy`, used as is.
    :param request_timeout: seconds one HTTP request may take, end to end.
    :param on_event: called with each :mod:`veo_async.events` event.
    :param timezone: the zone of the service's zoneless time strings
        (``"2026-01-06 08:17:04"``); Kie writes them in UTC+8
        (:data:`~veo_async.KIE_TIMEZONE`). Epoch values are absolute anyway.
    :param store: a :class:`~veo_async.TaskStore` (e.g.
        ``SQLiteStore("veo.db")``) for durable tracking: every task this session
        creates or is asked to follow is recorded, so that a restarted process
        :meth:`resume` s it and :meth:`completed` delivers each result until it
        is acknowledged. The session owns it: it is opened when the session is
        entered (or first used) and closed by :meth:`aclose`.
    :raises ValueError: for a missing key or a setting of a value it cannot
        take, before any I/O.
    :raises TypeError: for a setting of the wrong type (a ``policy``,
        ``session``, ``transport``, ``store``, ``timezone`` or ``on_event`` that
        is not one). A number setting given something that is no number
        (``concurrency="8"``) raises an error that is both a TypeError and a
        ValueError.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        session: ClientSession | None = None,
        transport: Transport | None = None,
        concurrency: int = 64,
        rate: float | None = None,
        create_rate: float = CREATE_RATE,
        create_period: float = CREATE_PERIOD,
        policy: AnyPolicy | None = None,
        request_timeout: float = 30.0,
        on_event: EventHook | None = None,
        timezone: datetime.tzinfo = KIE_TIMEZONE,
        store: TaskStore | None = None,
    ) -> None:
        # Wrapped at once, and the plain str dropped: an error raised here or
        # below keeps this frame, and a reporter that captures locals (Sentry,
        # rich) would find the key in the parameter.
        try:
            key = ApiKey(
                check_api_key(os.environ.get("KIE_API_KEY") if api_key is None else api_key)
            )
        finally:
            del api_key
        if isinstance(concurrency, bool) or not isinstance(concurrency, (int, float)):
            # ("8", None, True): refused as every other number setting is.
            raise NotANumberError(f"concurrency must be an int >= 1, not {shown(concurrency)}")
        if not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be an int >= 1, not {shown(concurrency)}")
        _positive_number("rate", rate, optional=True)
        _positive_number("create_rate", create_rate)
        _positive_number("create_period", create_period)
        _positive_number("request_timeout", request_timeout)
        if policy is not None and not isinstance(policy, (PollPolicy, AdaptivePolicy)):
            raise TypeError(
                f"policy must be a PollPolicy or an AdaptivePolicy, not {type(policy).__name__}"
            )
        if session is not None and not isinstance(session, ClientSession):
            raise TypeError(
                f"session must be an aiohttp.ClientSession, not {type(session).__name__}"
            )
        if transport is not None and not isinstance(transport, Transport):
            raise TypeError(f"transport must be a Transport, not {type(transport).__name__}")
        if on_event is not None and not callable(on_event):
            raise TypeError("on_event must be callable")
        if on_event is not None and (
            inspect.iscoroutinefunction(on_event)
            # an object with an async __call__ (callable: its type has one)
            or inspect.iscoroutinefunction(type(on_event).__call__)
        ):
            # Called synchronously on the loop, once per request: a coroutine
            # it returned would never run. Say so now, not by silence.
            raise TypeError(
                "on_event must be a plain function, not an async one: it is called "
                "synchronously for each event (hand the event to a queue to await work)"
            )
        if not isinstance(timezone, datetime.tzinfo):
            raise TypeError(f"timezone must be a datetime.tzinfo, not {type(timezone).__name__}")
        if store is not None and not isinstance(store, TaskStore):
            raise TypeError(f"store must be a TaskStore, not {type(store).__name__}")
        # With a transport of the caller's, the URL does not apply: the
        # environment's (perhaps meant for another program) is not read.
        self._base_url = _base_url(base_url, from_env=transport is None)
        self._policy: AnyPolicy = policy if policy is not None else AdaptivePolicy()
        if transport is None and isinstance(session, ClientSession):
            # A request waiting in the injected session's pool would spend its
            # request_timeout unsent (and count as in flight): never more
            # requests out than the pool lets go to the host.
            pool = pool_size(session)
            if pool is not None and pool < concurrency:
                concurrency = pool
        self._concurrency = concurrency
        self._rate = rate
        self._create_rate = create_rate
        self._create_period = float(create_period)
        self._request_timeout = float(request_timeout)
        if transport is None:
            transport = AiohttpTransport(
                base_url=self._base_url,
                session=session,
                concurrency=concurrency,
                request_timeout=request_timeout,
                max_body=MAX_BODY,
                version=version(),
            )
        self._pacer = Pacer(self._policy, loop_clock=_loop_time)
        self._durable = DurableTracker(store) if store is not None else None
        self._requester = Requester(
            transport,
            key,
            # A request counts in the rate window until it is answered, and a
            # period after: the service counts it when it arrives, somewhere in
            # between, so none of its windows sees more than ``rate``.
            RequestBudget(concurrency, rate, count_finish=True),
            create_budget=RequestBudget(
                concurrency, create_rate, period=create_period, count_finish=True
            ),
            on_event=on_event,
            timezone=timezone,
            on_server_date=self._pacer.server_date,
            on_stopped=self._durable.stopped if self._durable is not None else None,
        )
        self._registry = TaskRegistry(self._requester, self._pacer, self._durable)
        self._state = _State.UNOPENED
        self._closing: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        if not hasattr(self, "_state"):
            # Its constructor raised (a bad setting): an error reporter that
            # shows the frame's locals shows this one too.
            return "VeoSession(<not constructed>)"
        return (
            f"VeoSession(base_url={self._base_url!r}, concurrency={self._concurrency}, "
            f"rate={self._rate!r}, {self._state.value})"
        )

    def __copy__(self) -> NoReturn:
        # A shallow copy would share this session's requester, schedule and
        # store: entered and closed, it would close them under this one,
        # which would still say it is open.
        raise TypeError("a VeoSession cannot be copied: open another one")

    def __deepcopy__(self, memo: object) -> NoReturn:
        raise TypeError("a VeoSession cannot be copied: open another one")

    def __reduce__(self) -> NoReturn:
        raise TypeError("a VeoSession cannot be pickled: open one in each process")

    # -- settings (read-only) ------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The service root requests go to."""
        return self._base_url

    @property
    def concurrency(self) -> int:
        """The most requests in flight at once."""
        return self._concurrency

    @property
    def rate(self) -> float | None:
        """The most request starts per sliding second, or None."""
        return self._rate

    @property
    def create_rate(self) -> float:
        """The most create requests per :attr:`create_period`."""
        return self._create_rate

    @property
    def create_period(self) -> float:
        """The window of :attr:`create_rate`, in seconds."""
        return self._create_period

    @property
    def policy(self) -> AnyPolicy:
        """The default schedule of every wait."""
        return self._policy

    @property
    def learner(self) -> DurationLearner:
        """What the session has learned of each model's generation time (from
        every terminal record it has seen): ``veo.learner.count("veo3")``."""
        return self._pacer.learner

    @property
    def request_timeout(self) -> float:
        """Seconds one HTTP request may take."""
        return self._request_timeout

    @property
    def store(self) -> TaskStore | None:
        """The durable store, or None."""
        return self._durable.store if self._durable is not None else None

    # -- state ------------------------------------------------------------------------

    async def __aenter__(self: _Session) -> _Session:
        if self._state is _State.OPEN:
            raise RuntimeError("this VeoSession is already open: enter it once, do not nest it")
        if self._state is _State.CLOSED:
            raise SessionClosedError("this VeoSession is closed; open a new one")
        # Entering binds the session to this loop: a session entered in a
        # module-scoped fixture's loop and used in a test's is refused at its
        # first use there, not after working once and leaking its sockets.
        self._requester.check_loop()
        self._state = _State.OPEN
        if self._durable is not None:
            try:
                await self._durable.opened()  # a locked or damaged store fails here
            except BaseException:
                await self.aclose()
                raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def closed(self) -> bool:
        """True once :meth:`aclose` was called."""
        return self._state is _State.CLOSED

    @property
    def stats(self) -> SessionStats:
        """The request counters now (a snapshot: read it again for fresh ones)."""
        return self._requester.stats()

    async def aclose(self) -> None:
        """Stop every poll, wake every queued request with
        :class:`SessionClosedError`, and close our HTTP session; then write
        what durable tracking still holds and close the store.

        Idempotent; a concurrent second call returns when the first has finished.

        :raises StoreError: a store write failed since the last ack (after closing).
        :raises RuntimeError: called from another event loop than the one the
            session was used in while that one is open (before anything is
            closed: its connections and waiters belong to that loop, and
            closed from here they were left half-closed while the call
            returned as if done).
        """
        closing = self._closing
        if closing is not None and closing.done():
            return  # closed: a second close has nothing to do, from any loop
        self._requester.check_loop(closing=True)
        if self._closing is not None:
            await asyncio.shield(self._closing)
            return
        self._state = _State.CLOSED
        self._closing = asyncio.get_running_loop().create_future()
        try:
            try:
                self._pacer.close()
                await self._requester.aclose()
                background = self._registry.background
                if background:  # batches letting go of their runs: over in a step or two
                    await asyncio.wait(list(background))
            finally:
                # A large as_completed left with break is finalised by the loop
                # later (or never, if it closes first): its hold on the
                # collector ends with the session.
                for end in list(self._registry.live_batches):
                    end()
                if self._durable is not None:
                    await self._durable.aclose()
        finally:
            self._closing.set_result(None)

    def _check_open(self) -> None:
        if self._state is _CLOSED:
            raise SessionClosedError("this VeoSession is closed; open a new one")
        self._requester.check_loop()

    # -- tasks ------------------------------------------------------------------------

    def task(self, task_id: str) -> VeoTask:
        """The handle of a task; no I/O. The same object for the same id while alive.

        With a ``store``, the id is tracked from here (written with the
        store's next batched write): a later :meth:`completed` or
        :meth:`resume` polls it and delivers its outcome until it is
        acknowledged, even if nothing waits on the handle now.

        :raises ValueError: for an id that is not a sane non-empty string.
        """
        self._check_open()
        handle = self._registry.handle(task_id)
        if self._durable is not None:
            self._durable.track_soon(task_id)  # no I/O here: written with the next batch
            self._durable.follow_new((handle,))
        return handle

    async def record_info(self, task_id: str) -> RecordInfo:
        """One ``GET record-info`` for ``task_id``: the task's current record.

        No retry, and no handle is updated (see :meth:`VeoTask.refresh` for that).

        :raises RecordNotFoundError: the record is not visible; ``retryable``
            if this session created the task less than its policy's
            ``not_found_grace`` ago (a new record can take a moment to appear).
        :raises ValueError: for an invalid id, before any request.
        :raises VeoError: whatever the answer means (see :mod:`veo_async.errors`).
        """
        self._check_open()
        validate_task_id(task_id)
        try:
            return await self._requester.record_info(task_id)
        except RecordNotFoundError as exc:
            self._registry.note_absence(exc, task_id)
            raise

    @overload
    async def wait_many(
        self,
        task_ids: Iterable[str],
        *,
        timeout: TimeoutArg = ...,
        policy: AnyPolicy | None = ...,
        return_exceptions: Literal[False] = ...,
    ) -> list[RecordInfo]: ...

    @overload
    async def wait_many(  # with return_exceptions (True, or a bool only known when run)
        self, task_ids: Iterable[str], *, timeout: TimeoutArg = ..., policy: AnyPolicy | None = ...,
        return_exceptions: bool,
    ) -> list[BatchOutcome]: ...

    async def wait_many(
        self,
        task_ids: Iterable[str],
        *,
        timeout: TimeoutArg = POLICY_TIMEOUT,
        policy: AnyPolicy | None = None,
        return_exceptions: bool = False,
    ) -> list[RecordInfo] | list[BatchOutcome]:
        """Wait for many tasks at once; one outcome per id given, in input order.

        Typed ``list[RecordInfo]`` without ``return_exceptions`` (a failure is
        raised), ``list[RecordInfo | Exception]`` with it.

        Every id is tracked at once (repeated ids share a handle); the
        session's budget bounds the requests in flight. The deadline counts
        from this call. A batch of 10,000 ids or more steers the garbage
        collector while it lives, so that no collection stalls the loop
        (:func:`gc.freeze` of what survives, young collections every 0.1 s;
        undone when the last such batch ends): see README, "Scale".

        :param timeout: the batch's deadline (seconds, None, or the policy's);
            a task not finished by then has a :class:`WaitTimeoutError` outcome.
        :param policy: the schedule of the ids this batch starts polling;
            default the session's. An id another wait polls already is polled
            on that wait's schedule (one poll run per task, its grace window
            included): the batch's deadline still ends it for the batch.
        :param return_exceptions: True: a failed position holds its exception
            (:class:`TaskFailedError`, :class:`WaitTimeoutError`, an API error).
            False: the first real failure is raised (a task known to have
            failed at once; at the deadline, the timeout of the first
            unfinished id in input order), after every poll only this batch
            wanted has stopped; other handles are left untouched.
        :raises TypeError: (or ValueError) for ids that are not an iterable of
            valid ids, before any request.
        :raises SessionClosedError: the session is closed, or closes while
            the batch is being set up (its ids read and tracked); once its
            polls run, a close is the outcome of every id not finished (with
            ``return_exceptions``; else it is raised).
        """
        self._check_open()
        if self._durable is not None:
            ids = await validated_ids_in_steps(task_ids)
            # Bad arguments: before the write.
            self._registry.wait_settings(timeout, policy)
            check_return_exceptions(return_exceptions)
            await self._track(ids)
            task_ids = ids
        return await wait_many(
            self._registry,
            task_ids,
            timeout=timeout,
            policy=policy,
            return_exceptions=return_exceptions,
        )

    def as_completed(
        self,
        task_ids: Iterable[str],
        *,
        timeout: TimeoutArg = POLICY_TIMEOUT,
        policy: AnyPolicy | None = None,
    ) -> AsyncGenerator[VeoTask, None]:
        """Yield each task's handle as soon as it reaches an outcome.

        An id given n times is yielded n times. Read each outcome without I/O
        with :meth:`VeoTask.result`; at the deadline the unfinished ones are
        yielded with a :class:`WaitTimeoutError`. Polling and the deadline
        start with the iteration, and polling ends at the deadline whether or
        not the iterator is being iterated then. Leaving the loop early stops
        the polling only this iterator wanted (``contextlib.aclosing`` makes
        that immediate; an iterator kept but no longer iterated polls on until
        its deadline, or until it is closed or collected).

        :param policy: as for :meth:`wait_many`: the schedule of the ids this
            iteration starts polling (an id polled already keeps its schedule).
        :raises TypeError: (or ValueError) for bad input, here, before iterating.
        :raises SessionClosedError: the session is closed.
        """
        self._check_open()
        if self._durable is None:
            return as_completed(self._registry, task_ids, timeout=timeout, policy=policy)
        ids = validated_ids(task_ids)
        inner = as_completed(self._registry, ids, timeout=timeout, policy=policy)
        return self._tracked(ids, inner)

    async def _track(self, ids: list[str]) -> None:
        assert self._durable is not None
        await self._durable.track(ids)
        self._durable.follow_new(self._registry.handle(task_id) for task_id in set(ids))

    async def _tracked(
        self, ids: list[str], inner: AsyncGenerator[VeoTask, None]
    ) -> AsyncGenerator[VeoTask, None]:
        async with aclosing(inner):
            await self._track(ids)
            async for handle in inner:
                yield handle

    # -- durable tracking -------------------------------------------------------------

    def _journal(self) -> DurableTracker:
        self._check_open()
        if self._durable is None:
            raise RuntimeError("this VeoSession has no store: pass VeoSession(store=...)")
        return self._durable

    async def resume(self, *, policy: AnyPolicy | None = None) -> ResumeReport:
        """Resume what the store left unfinished; report what it left uncertain.

        ::

            async with VeoSession(store=SQLiteStore("veo.db")) as veo:
                report = await veo.resume()
                async for task in veo.completed():
                    save(task.result()); await task.ack()

        Every unfinished task's handle polls again in the background (until it
        finishes, even if nobody waits on it), age-aware: a task created
        before the restart is polled as the age it has now (an explicit
        :class:`PollPolicy`, here or the session's, is a fixed schedule and
        wins). Uncertain intents are reported (and logged), never raised and
        never resent.

        :param policy: the schedule of the resumed polling; default the session's.
        :raises RuntimeError: the session has no store.
        :raises StoreError: the store cannot be used.
        """
        journal = self._journal()
        self._registry.wait_settings(None, policy)
        return await journal.resume(self._registry, policy)

    def completed(
        self, *, follow: bool = False, policy: AnyPolicy | None = None
    ) -> AsyncGenerator[VeoTask, None]:
        """Yield each stored task's handle once its result is in, until acknowledged.

        At-least-once delivery: first the finished tasks the store holds
        unacknowledged (from before a restart, or yielded earlier and not
        acked), then every unfinished stored task as it finishes (they are
        polled for this iteration), and tasks this session creates or is
        given meanwhile. Read the outcome with :meth:`VeoTask.result` (it
        raises :class:`TaskFailedError` for a failed task), then call
        :meth:`VeoTask.ack`. Within one iteration a task is yielded once; an
        unacknowledged one is yielded again by the next iteration (this
        session's or a restarted one's); an acknowledged one never again.
        Iterations running at once share the results: each is yielded by
        one of them, and one an iteration ends without acknowledging goes to
        another still running.

        A task is durable once its id is in the store: an id handed to
        :meth:`task` alone is written with the next batched write (within a
        quarter of a second), so a result yielded for it before then comes
        back after a crash only if that write landed; :meth:`track` commits
        ids before they are polled.

        A stored id the service does not know (:class:`RecordNotFoundError`)
        is yielded with that error as its outcome; acknowledging it forgets
        it. Any other error that stops polling (a bad key, the session
        closing) is raised.

        :param follow: False: end when no stored task is left unfinished (and
            everything finished was yielded). True: keep waiting for tasks
            created or tracked later, until the caller leaves the loop.
        :param policy: the schedule of the polling this starts.
        :raises RuntimeError: the session has no store (here, before iterating).
        :raises StoreLockedError: (while iterating, instead of the next
            result) the store lost its lease, as a renewal or a write found
            (:class:`~veo_async.store.RedisStore`: a pause past it, another
            process took the store over): the new owner delivers the rest.
        """
        if not isinstance(follow, bool):
            # Not any truthy value: follow="no" waited forever on an empty store.
            raise TypeError(f"follow must be True or False, not {follow!r}")
        journal = self._journal()
        self._registry.wait_settings(None, policy)
        return journal.completed(self._registry, follow=follow, policy=policy)

    async def deliver(
        self,
        handler: Callable[[VeoTask], Awaitable[Any] | Any],
        *,
        follow: bool = False,
        policy: AnyPolicy | None = None,
    ) -> int:
        """:meth:`completed` with a handler: each task is acknowledged once
        ``handler(task)`` returned (it may be a coroutine function).

        An exception from the handler ends the delivery and propagates; that
        task is not acknowledged, so it is delivered again later.

        :returns: how many tasks were handled and acknowledged.
        """
        if not callable(handler):
            raise TypeError("handler must be callable")
        count = 0
        async with aclosing(self.completed(follow=follow, policy=policy)) as tasks:
            async for task in tasks:
                result = handler(task)
                if inspect.isawaitable(result):
                    await result
                await task.ack()
                count += 1
        return count

    async def track(self, task_ids: Iterable[str]) -> list[VeoTask]:
        """Record ids in the store (one durable write) and return their handles,
        in input order; no polling starts (await them, or use :meth:`completed`).

        :raises RuntimeError: the session has no store.
        :raises TypeError: (or ValueError) for ids that are not valid, before any write.
        """
        journal = self._journal()
        ids = await validated_ids_in_steps(task_ids)
        await journal.track(ids)
        handles = [self._registry.handle(task_id) for task_id in ids]
        journal.follow_new(handles)
        return handles

    async def reconcile(self, ref: str, task_id: str) -> bool:
        """Give an uncertain create its task id, from a later source: the
        ``veo_ref`` of a callback's URL (:func:`veo_async.store.ref_of`) and
        the task id it names. As the store's
        :meth:`~veo_async.store.TaskStore.reconcile`, and iterations of
        :meth:`completed` (``follow=True``) or :meth:`deliver` running now
        follow the task at once (given to the store itself, it reached them
        only after a restart).

        :returns: True when the intent now has this task id (also when it had
            it already); False when ``ref`` is unknown or has another task id.
        :raises RuntimeError: the session has no store.
        :raises ValueError: for an invalid ref or task id, before any write.
        """
        journal = self._journal()
        validate_task_id(task_id)
        store = await journal.opened()
        attached = await store.reconcile(ref, task_id)  # (checks the ref before writing)
        if attached:
            journal.follow_new((self._registry.handle(task_id),))
        return attached

    async def uncertain(self) -> list[StoredIntent]:
        """Create intents with no task id: tasks that may or may not exist.

        :raises RuntimeError: the session has no store.
        """
        store = await self._journal().opened()
        return await store.uncertain()

    async def flush(self) -> None:
        """Commit every change durable tracking holds (they are otherwise
        committed within the store's flush interval). No-op without a store."""
        self._check_open()
        if self._durable is not None:
            await self._durable.flush()

    # -- creating ---------------------------------------------------------------------

    async def generate(
        self,
        prompt: str | GenerateRequest,
        *,
        model: str | None = None,
        aspect_ratio: str | None = None,
        generation_type: str | None = None,
        image_urls: Sequence[str] | None = None,
        resolution: str | None = None,
        seeds: int | None = None,
        watermark: str | None = None,
        enable_translation: bool | None = None,
        callback_url: str | None = None,
        enable_fallback: bool | None = None,
        allow_unknown: bool = False,
    ) -> VeoTask:
        """Create a video task (``POST generate``); its handle, at once.

        ::

            task = await veo.generate("A cat surfing at sunset", model="veo3_fast")
            info = await task                  # the same handle as veo.task(task.task_id)

        The keywords are those of :class:`GenerateRequest` (None: its
        default), validated before any I/O; or pass a ready request alone.

        Never charged twice: the request waits for the creation budget
        (:attr:`create_rate`), and is resent by itself only when it certainly
        created nothing (connection refused or name not resolved before
        sending, 429, 455), at most 5 times. After a timeout, a reset after
        sending or a 5xx it raises :class:`SubmitUncertainError`: the task
        may exist. Codes that reject the request (400, 401, 402, 422...)
        raise their :class:`APIError`.

        Waiting on the handle with the session's default policy (none was
        given to the session or the wait) polls first where the model's tasks
        start to finish, counted from the creation, with an early probe for
        fast failures: with the documented priors at 40 s, then about 94 s
        for veo3_fast and 146 s for veo3 (veo3_lite: about 50 s, then 80-90 s). These move as
        the session learns (README, "How polls are scheduled"); an extend
        follows its model's schedule. An explicit :class:`PollPolicy` wins.

        :returns: the task's handle; :attr:`VeoTask.request` is the request.
        :raises ValueError: (or TypeError) for an invalid request, before any I/O.
        :raises SubmitUncertainError: the task may or may not exist.
        """
        self._check_open()
        options: dict[str, Any] = {
            "model": model,
            "aspect_ratio": aspect_ratio,
            "generation_type": generation_type,
            "image_urls": image_urls,
            "resolution": resolution,
            "seeds": seeds,
            "watermark": watermark,
            "enable_translation": enable_translation,
            "callback_url": callback_url,
            "enable_fallback": enable_fallback,
        }
        given = {name: value for name, value in options.items() if value is not None}
        if isinstance(prompt, GenerateRequest):
            if given or allow_unknown:
                raise TypeError("pass either a GenerateRequest or keyword arguments, not both")
            request = prompt
        else:
            request = GenerateRequest(prompt, allow_unknown=allow_unknown, **given)
        return await self._registry.create(request)

    async def credits(self) -> float:
        """The account's credit balance (``GET chat/credit``); may be fractional.

        :raises VeoError: whatever the answer means (see :mod:`veo_async.errors`).
        """
        self._check_open()
        return await self._requester.call("GET", CREDIT_PATH, decode_credits)

    async def download_url(self, url: str) -> str:
        """A temporary direct link (valid 20 minutes) to a Kie-hosted result URL.

        :raises ValueError: (TypeError) for a ``url`` that is not http(s), before any I/O.
        :raises VeoError: whatever the answer means.
        """
        self._check_open()
        validate_url(url)
        return await self._requester.call(
            "POST", DOWNLOAD_URL_PATH, decode_link, json={"url": url}
        )
