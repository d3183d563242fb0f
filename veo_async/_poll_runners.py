"""Poll requests run on reused tasks: a task per burst of polls, not per poll.

A batch hands the requester one poll per granted slot, thousands a second.
Each used to run as an asyncio task of its own, made, scheduled and
collected per poll. Here a poll is a :class:`PollRequest` put in a queue, and
a few *runner* tasks take requests from it one after the other: a runner
gives a poll's slot back once that poll is over, the slot is granted to the
next due poll in the same step, and the runner takes it in the next loop
step (with the other polls answered in this one: see ``_run``), so a busy
batch makes almost no tasks at all. Measured against a task per poll (same
process, alternating rounds, 4,000 finished ids at 32 in flight): about
1 % less client CPU per poll; each runner also serves thousands of polls,
so the collector sees far fewer short-lived objects.

No task is kept for later: a runner that finds the queue empty ends (none
idles between bursts, and none is left behind once polling stops), and a
request queued when every runner is busy, or none exists, gets a runner of
its own (so at most one runner per slot in flight).

Stopping one poll (:meth:`PollRunners.stop`) cancels its runner *within that
poll's exchange*; the runner takes the cancellation as that poll's, and goes
on with the next one. Only :meth:`PollRunners.close` cancels the runners for
good. A runner cancelled for good in the very step one of its polls is
stopped (everything cancelled at once: asyncio.run's shutdown, a SIGTERM
handler) gets one CancelledError for both: from Python 3.11 the task's count
of cancellations tells them apart and the runner ends. Python 3.10 keeps no
count, so there a runner whose poll is stopped always ends (cancelled, as it
was), and a new runner takes the polls still queued: a stop costs a task, and
no cancellation is ever taken for a stop's.
A stop made while its runner runs (an event hook, a listener) cannot land
in that poll's exchange: the runner ends after that poll instead, and
another takes the queue.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import functools
import inspect
import types
from collections.abc import Callable, Coroutine, Generator
from typing import Any

from ._deadlines import COUNTS_CANCELS, uncancel
from .errors import VeoError
from .models import RecordInfo

__all__ = ["PollAnswer", "PollExchange", "PollRequest", "PollRunners"]

#: What a poll's answer is told to: ``(its request, the record, None)`` or
#: ``(its request, None, the error)``.
PollAnswer = Callable[["PollRequest", "RecordInfo | None", "BaseException | None"], object]
#: The exchange of one poll: ``(task id, previous record, granted at, False)``
#: to a coroutine giving the record; the last argument says that the caller
#: gives the slot back, not the exchange.
PollExchange = Callable[[str, "RecordInfo | None", float, bool], Coroutine[Any, Any, RecordInfo]]
#: Gives back one poll's slot.
SlotReturn = Callable[[], None]


class PollRequest:
    """One poll: queued for a runner, running on one, or over."""

    __slots__ = ("ended", "granted_at", "on_answer", "previous", "runner", "task_id")

    def __init__(
        self,
        task_id: str,
        previous: RecordInfo | None,
        granted_at: float,
        on_answer: PollAnswer,
    ) -> None:
        self.task_id = task_id
        self.previous = previous
        self.granted_at = granted_at
        #: Told once; None once told, or once the poll was stopped.
        self.on_answer: PollAnswer | None = on_answer
        #: The runner while the exchange runs (None before and after it).
        self.runner: asyncio.Task[None] | None = None
        #: Made only when a running poll is stopped: done when its exchange ends.
        self.ended: asyncio.Future[None] | None = None


class PollRunners:
    """Runs :class:`PollRequest` exchanges on a few reused tasks; see the module docstring.

    :param exchange: the exchange of one poll.
    :param give_back: gives back a poll's slot: once its exchange ended (the
        runner is free by then, so the request that slot is granted to goes on
        the same runner, no task made), or when it is dropped before it started.
    """

    def __init__(self, exchange: PollExchange, give_back: SlotReturn) -> None:
        self._exchange = exchange
        self._give_back = give_back
        self._queued: collections.deque[PollRequest] = collections.deque()
        self._runners: set[asyncio.Task[None]] = set()
        # Runners made that have not had their first step yet (see stop).
        self._unstarted: collections.deque[asyncio.Task[None]] = collections.deque()
        # Runners that will look at the queue before they wait or end: never
        # fewer than the requests queued (see start).
        self._free = 0
        self._closing = False

    def start(
        self,
        task_id: str,
        previous: RecordInfo | None,
        granted_at: float,
        on_answer: PollAnswer,
    ) -> PollRequest:
        """Queue one poll on its granted slot; a runner takes it this step or the next."""
        request = PollRequest(task_id, previous, granted_at, on_answer)
        self._queued.append(request)
        if self._free < len(self._queued):
            self._spawn_for_queued()
        return request

    def stop(self, request: PollRequest) -> asyncio.Future[None] | None:
        """Stop a poll whose answer nobody wants any more: it is not told.

        :returns: a future done once its exchange has ended, if it was
            running; if it had not started (its slot is given back now), a
            future done once the runner made for it, if no other request
            needs it, is gone (by the next loop step), else None; None if it
            was over.
        """
        request.on_answer = None
        runner = request.runner
        if runner is None:
            try:
                self._queued.remove(request)
            except ValueError:
                return None  # over already
            self._give_back()
            if self._free > len(self._queued) and self._unstarted:
                # The runner made for it is not needed: cancelled before its
                # first step, it never runs; done by the next step (await it).
                spare = self._unstarted.pop()
                self._free -= 1
                spare.cancel()
                # A future of our own: awaiting the cancelled task itself
                # would raise CancelledError in whoever awaits it.
                gone = spare.get_loop().create_future()
                spare.add_done_callback(functools.partial(_resolve, gone))
                return gone
            return None
        if request.ended is None:
            request.ended = runner.get_loop().create_future()
            runner.cancel()
        return request.ended

    def close(self, failure: Callable[[], BaseException]) -> list[asyncio.Task[None]]:
        """Cancel every runner for good; polls not started are given back their
        slot and told ``failure()`` now (those running tell theirs as they end).

        :returns: the runners, to wait for.
        """
        self._closing = True
        self._unstarted.clear()
        runners = list(self._runners)
        for runner in runners:
            runner.cancel()
        # Emptied in place: a runner still running holds the same deque.
        queued = list(self._queued)
        self._queued.clear()
        for request in queued:
            on_answer, request.on_answer = request.on_answer, None
            self._give_back()
            if on_answer is not None:
                _tell(request, on_answer, None, failure())
        return runners

    async def _run(self) -> None:
        queued = self._queued
        # Locals: read on every poll, and never rebound.
        exchange, give_back = self._exchange, self._give_back
        runner = asyncio.current_task()
        assert runner is not None
        if runner in self._unstarted:  # (an eager task factory runs this before it is listed)
            self._unstarted.remove(runner)
        while queued:
            request = queued.popleft()
            self._free -= 1
            request.runner = runner
            record: RecordInfo | None = None
            error: BaseException | None = None
            stopped_here = False
            try:
                record = await exchange(
                    request.task_id, request.previous, request.granted_at, False
                )
            except asyncio.CancelledError as exc:
                # stop() meant this poll only, unless the runner was cancelled
                # as well (the session closes, the loop shuts down): from 3.11
                # the count says so; 3.10 cannot tell, so there it ends.
                if (
                    COUNTS_CANCELS
                    and request.on_answer is None
                    and not self._closing
                    # (a count left over would turn a later asyncio.timeout
                    # in this runner into a cancellation)
                    and uncancel(runner) == 0
                ):
                    stopped_here = True
                else:
                    error = exc  # the runner's own: told, re-raised
            except VeoError as exc:
                error = exc
                without_frames(exc)
            except Exception as exc:  # a bug: handed on whole
                error = exc
            except BaseException as exc:  # KeyboardInterrupt, SystemExit: not a poll's answer
                request.on_answer = None
                error = exc
            request.runner = None
            ended = request.ended
            if ended is not None and not ended.done():  # (whoever awaited it may have cancelled it)
                ended.set_result(None)
            # A stop() whose cancellation has not landed (it was made while
            # this runner ran: an event hook, a listener; the exchange then
            # ended, answered or failed) would land in the next poll's
            # exchange: leave (the runner ends cancelled, harmlessly) and let
            # another take over. So too when cancelled for good, or closing.
            leaving = (
                (error is not None and not isinstance(error, Exception))
                or (ended is not None and not stopped_here)
                or self._closing
            )
            if not leaving:
                self._free += 1  # the next queued request is this runner's
            give_back()  # may grant the next poll (queued now, for us)
            on_answer, request.on_answer = request.on_answer, None
            if on_answer is not None:
                _tell(request, on_answer, record, error)
            if leaving:
                self._spawn_for_queued()
                if isinstance(error, asyncio.CancelledError):
                    # A fresh one, with no local left to the first or to this
                    # task: the task keeps the error it ends with, and
                    # task -> error -> traceback -> this frame -> task (or
                    # -> error) would be a cycle only the collector frees.
                    args = error.args
                    del error, runner
                    raise asyncio.CancelledError(*args)
                if error is not None and not isinstance(error, Exception):
                    raise error
                return
            # The error's traceback holds this frame: without it no cycle
            # (error -> traceback -> frame -> error) is left for the collector.
            del error
            if queued:
                # The next poll goes out in the next loop step, with those
                # of the others answered in this one. Sent at once, between
                # the answers, each send cost twice the CPU (25 against 13 us
                # a socket send, profiled) and a poll 5-10 % more than with
                # a task per poll.
                try:
                    await _next_step()
                except BaseException:  # cancelled from outside, between polls
                    self._free -= 1
                    self._spawn_for_queued()  # (the queued poll it would have taken)
                    raise
        self._free -= 1

    def _spawn_for_queued(self) -> None:
        """Give queued requests that no free runner will take a runner each."""
        if self._closing:
            return
        loop = asyncio.get_running_loop()
        while self._free < len(self._queued):
            self._free += 1
            run = self._run()
            # In a context of its own, not the caller's: a runner is reused
            # for every id's polls, and a service's request-scoped context
            # (a request id for its logs, a trace) would label other
            # requests' polls, events and log lines with the first caller's.
            # (A fresh one each time: an eager task factory may start the
            # runner, and spawn another, inside this call.)
            runner = contextvars.Context().run(loop.create_task, run, name="veo_async poll")
            if inspect.getcoroutinestate(run) == inspect.CORO_CREATED:
                # Not started yet (an eager task factory starts it at once):
                # stop() may cancel it before it ever runs.
                self._unstarted.append(runner)
            self._runners.add(runner)
            runner.add_done_callback(self._runners.discard)


def without_frames(error: BaseException) -> None:
    """Drop the traceback of ``error`` and of what it chains to.

    A poll's error is kept for as long as its task is waited for: the last
    failed poll's (for a timeout's message) or the one that ended the wait.
    A traceback holds the frames the error was raised through; each frame
    holds its caller's (``f_back``), its locals (the answer, the request) and
    its function (one is a closure over the previous record). Kept whole, an
    error held about twenty objects, and with 100,000 ids these were
    hundreds of MiB that every collection, young ones included, had to walk
    (100-200 ms each). The service's errors say what went wrong in their
    message; where our decoding raised them does not help a caller.
    """
    seen = 0
    current: BaseException | None = error
    while current is not None and seen < 8:  # chains are short; never loop
        current.__traceback__ = None
        current = current.__cause__ or current.__context__
        seen += 1


def _resolve(future: asyncio.Future[None], _done: object) -> None:
    if not future.done():  # (whoever awaited it may have cancelled it)
        future.set_result(None)


@types.coroutine
def _next_step() -> Generator[None, None, None]:
    """``await asyncio.sleep(0)`` without the ``sleep`` coroutine around it:
    the same bare yield (the task runs again in the next loop step, and a
    cancellation lands at the same point), one coroutine less per poll."""
    yield


def _tell(
    request: PollRequest,
    on_answer: PollAnswer,
    record: RecordInfo | None,
    error: BaseException | None,
) -> None:
    """Hand a poll's answer on; a failing handler is reported as a failing
    done-callback would be, and never fails the poll (nor its runner)."""
    try:
        on_answer(request, record, error)
    except Exception as exc:
        # Not under the "task" key: from 3.12 the loop runs a custom handler
        # inside that task's context, which is the running one here (the
        # answer is handed on inside the runner), and it fails.
        asyncio.get_running_loop().call_exception_handler(
            {
                "message": "Exception in a poll's answer handler",
                "exception": exc,
                "poll_task_id": request.task_id,
            }
        )
