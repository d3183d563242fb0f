"""Request deadlines: one timer for every request in flight.

aiohttp's own per-request timeout arms a loop timer, a timeout context for the
request and another for the body on every request, and cancels the timer after
it: a few microseconds per request, 4-6 % of a poll's client CPU. Every
request of a transport has the same time limit, so their deadlines come in the
order the requests started. One timer, armed for the oldest deadline, serves
them all: a request costs two dictionary writes, and the timer fires about once
per time limit.

What happens at a deadline is what aiohttp's ``TimerContext`` does: the
request's task is cancelled, and the transport turns that cancellation into its
timeout error unless someone else cancelled the task too (on Python 3.11+,
where ``Task.cancelling`` says so; on 3.10, as aiohttp does, a timeout wins).
The task is only ever cancelled while it is inside :meth:`RequestDeadlines.enter`
... :meth:`RequestDeadlines.leave`, and leaving is synchronous, so a request
that got its answer is never cancelled afterwards.
"""

from __future__ import annotations

import asyncio
import operator
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["COUNTS_CANCELS", "RequestDeadlines", "cancelling", "taken_back", "uncancel"]

#: Whether a task counts the cancellations asked of it (``Task.cancelling``, 3.11+).
COUNTS_CANCELS = sys.version_info >= (3, 11)

if sys.version_info >= (3, 11):  # (as COUNTS_CANCELS; spelt so for the type checker)
    # The task's own methods, called by a C caller: no Python frame of ours in
    # between (every one-shot request reads the count on entry). Looked up on
    # each task, not taken from asyncio.Task once: a loop's tasks need not be
    # the C Task (nest_asyncio, a pure-Python task factory), and the C
    # class's method refuses any other ("descriptor 'cancelling' for
    # '_asyncio.Task' objects doesn't apply to a 'Task' object").

    #: The cancellations asked of ``task`` and not taken back (0 on 3.10).
    cancelling: Callable[[asyncio.Task[Any]], int] = operator.methodcaller("cancelling")
    #: Take back one cancellation of ``task``; the count left (0 on 3.10).
    uncancel: Callable[[asyncio.Task[Any]], int] = operator.methodcaller("uncancel")

else:  # no count of cancel requests before 3.11: as in aiohttp, a timeout wins

    def cancelling(task: asyncio.Task[Any]) -> int:
        """The cancellations asked of ``task`` and not taken back (0 on 3.10)."""
        return 0

    def uncancel(task: asyncio.Task[Any]) -> int:
        """Take back one cancellation of ``task``; the count left (0 on 3.10)."""
        return 0


def taken_back(
    task: asyncio.Task[Any], error: BaseException | None, message: str, entered: int = 0
) -> bool:
    """Whether the cancellation ``task`` met (``error``) was only the one
    asked of it by ``task.cancel(message)``, since it counted ``entered``
    cancellations; if so, that cancellation is taken back (the caller then
    raises its own error instead of it).

    On 3.11+ the task's count tells whether anyone else cancelled it too. On
    3.10 there is no count: the error's message tells whose cancellation
    landed first, and a second one in the same step, merged into it, goes
    unseen (so a caller's cancel just before ours still propagates).
    """
    if COUNTS_CANCELS:
        return uncancel(task) <= entered
    return error is not None and error.args == (message,)


# The message of a deadline's cancellation (see taken_back).
_DEADLINE = "veo_async: the request's deadline passed"


class RequestDeadlines:
    """Cancels requests still in flight ``limit`` seconds after they began.

    :param limit: seconds one request may take, connect to last byte.

    Use it around one request, inside the task that awaits it::

        task = deadlines.enter()
        try:
            ...  # the request
        except asyncio.CancelledError as exc:
            if deadlines.timed_out(task, exc):
                ...  # the request took too long: raise a timeout error
            raise
        finally:
            deadlines.leave(task)
    """

    __slots__ = ("_expired", "_limit", "_loop", "_started", "_timer")

    def __init__(self, limit: float) -> None:
        self._limit = limit
        # Task -> (deadline, its cancelling() count on entry). Insertion order
        # is start order, hence deadline order: the first entry is the oldest.
        self._started: dict[asyncio.Task[Any], tuple[float, int]] = {}
        # Tasks this object cancelled, with their count on entry.
        self._expired: dict[asyncio.Task[Any], int] = {}
        self._timer: asyncio.TimerHandle | None = None
        # The loop of the first request: its requests are looked up there.
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"RequestDeadlines(limit={self._limit}, in_flight={len(self._started)})"

    @property
    def in_flight(self) -> int:
        """Requests between :meth:`enter` and :meth:`leave`."""
        return len(self._started)

    def enter(self) -> asyncio.Task[Any]:
        """Start the clock of a request made by the current task; returns that task.

        :raises RuntimeError: outside a task, or when the task is already inside.
        """
        loop = self._loop
        # Given the loop, current_task() skips looking up the running loop: a
        # getpid() system call on Python 3.11 and older, on every request.
        task = asyncio.current_task() if loop is None else asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("a request with a deadline must be made inside a task")
        if task in self._started:
            raise RuntimeError("a task can make one request at a time")
        if loop is None:
            # The first request's loop serves for all: an owner (a session's
            # transport) is used from one loop, its connections belong to it.
            self._loop = loop = task.get_loop()
        deadline = loop.time() + self._limit
        self._started[task] = (deadline, cancelling(task))
        if self._timer is None:
            self._timer = loop.call_at(deadline, self._expire)
        return task

    def leave(self, task: asyncio.Task[Any]) -> None:
        """The request of ``task`` ended, however it ended."""
        self._started.pop(task, None)
        self._expired.pop(task, None)

    def timed_out(self, task: asyncio.Task[Any], error: BaseException | None = None) -> bool:
        """Whether the CancelledError ``error`` the request of ``task`` raised
        is its deadline's alone (then the cancellation is taken back, and the
        caller raises its timeout error instead); False when it is not ours,
        or someone else cancelled the task as well (then it must propagate)."""
        entered = self._expired.pop(task, None)
        if entered is None:
            return False
        return taken_back(task, error, _DEADLINE, entered)

    def close(self) -> None:
        """Disarm the timer (the owner is closing; requests still in flight
        keep no deadline)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        """The timer: cancel every request past its deadline, re-arm for the next."""
        self._timer = None
        started = self._started
        loop = asyncio.get_running_loop()
        now = loop.time()
        while started:
            task = next(iter(started))
            deadline, entered = started[task]
            if deadline > now:
                self._timer = loop.call_at(deadline, self._expire)
                return
            del started[task]
            if not task.done():
                self._expired[task] = entered
                task.cancel(_DEADLINE)
