"""The session-wide request budget: in-flight cap, request rate, 429 slow-down.

Every HTTP request of a session, whichever task handle makes it, passes
through one :class:`RequestLimiter`. It grants a request a slot when:

- fewer than the current *window* of requests are in flight: ``concurrency``,
  except after a 429, when it drops to one probe and grows back by one per
  successful answer (doubling per round trip, like TCP's slow start), so a
  session never answers a 429 with a herd of retries;
- the optional rate (requests per second, a token bucket holding one second's
  worth) has a token;
- the session is not paused by a 429 (``Retry-After``, or a doubling backoff
  while 429s keep coming).

It is also the poll loops' clock: a poll asks for a slot *at its due time*
and sleeps in the limiter's queue, a heap keyed by that time, until then. So
100,000 waiting polls cost one heap entry and one future each, not a timer,
a sleeping coroutine and a context apiece, and one timer wakes the queue when
the earliest entry falls due or the earliest blocked condition clears. The
same order serves requests most-overdue first, so under a binding limit no
task starves. All timing uses ``loop.time()``.

Why not aiolimiter: its leaky bucket would cover only the ``rate`` rule; the
in-flight window, the session-wide 429 pause and the due-time order all need
the one queue, so a second limiter in front would only add a wait.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random

__all__ = ["RequestLimiter"]

# Pause after the n-th consecutive 429 without Retry-After: 1, 2, 4 ... 60 s.
_PAUSE_BASE = 1.0
_PAUSE_CAP = 60.0
# The pause is stretched by up to this fraction so sessions sharing an account
# (and a rate limit) do not resume in lockstep.
_PAUSE_JITTER = 0.2


class RequestLimiter:
    """Grants request slots; see the module docstring for the rules.

    :param concurrency: the most requests in flight at once (>= 1).
    :param rate: the most request starts per second, or None for no limit.
    """

    def __init__(self, concurrency: int, rate: float | None = None) -> None:
        self._limit = concurrency
        self._window = concurrency
        self._rate = rate
        self._tokens = max(1.0, rate) if rate is not None else 0.0
        self._refilled_at: float | None = None
        self._in_flight = 0
        self._queue: list[tuple[float, int, asyncio.Future[float]]] = []
        self._order = itertools.count()
        self._paused_until = 0.0
        self._pause_started = float("-inf")
        self._strikes = 0
        self._timer: asyncio.TimerHandle | None = None
        self._rng = random.Random()
        #: How many 429s the session has absorbed.
        self.rate_limited = 0
        #: The high-water mark of requests in flight.
        self.max_in_flight = 0

    @property
    def in_flight(self) -> int:
        """Requests currently holding a slot."""
        return self._in_flight

    @property
    def waiting(self) -> int:
        """Requests queued for a slot (cancelled ones may linger until popped)."""
        return len(self._queue)

    @property
    def paused_until(self) -> float:
        """The loop time until which a 429 pauses all requests (past: no pause)."""
        return self._paused_until

    @property
    def window(self) -> int:
        """The current in-flight window (``concurrency`` unless recovering from a 429)."""
        return self._window

    async def acquire(self, due: float) -> float:
        """Wait until ``due`` and for a slot; returns the loop time of the grant.

        :param due: the loop time at which the request should go (now or in
            the past: at once, if a slot is free); the earliest goes first.
        """
        loop = asyncio.get_running_loop()
        now = loop.time()
        if (
            due <= now
            and (not self._queue or self._queue[0][0] > now)  # nobody more overdue
            and self._blocked_until(now) is None
        ):
            self._grant(now)
            return now
        waiter: asyncio.Future[float] = loop.create_future()
        heapq.heappush(self._queue, (due, next(self._order), waiter))
        if self._queue[0][2] is waiter:  # a new earliest entry: the timer may move
            self._dispatch()
        try:
            # The grant time, not the (later) time this coroutine resumes: a
            # 429 is judged against when its request really got the slot.
            return await waiter
        except asyncio.CancelledError:
            # Granted and cancelled in the same loop iteration: give it back,
            # or the slot would leak forever.
            if waiter.done() and not waiter.cancelled():
                self.release()
            raise

    def release(self) -> None:
        """Give a slot back (call exactly once per successful :meth:`acquire`)."""
        self._in_flight -= 1
        self._dispatch()

    def record_success(self) -> None:
        """An answer that was not a 429: end the strike run, widen the window."""
        self._strikes = 0
        if self._window < self._limit:
            self._window += 1
            self._dispatch()

    def record_rate_limited(self, granted_at: float, retry_after: float | None) -> None:
        """A 429 came back for a request granted at ``granted_at``: pause everything.

        A 429 for a request that was sent before the current pause began is an
        echo of the same overload: it may lengthen the pause (its Retry-After)
        but does not count as a new strike.
        """
        self.rate_limited += 1
        now = asyncio.get_running_loop().time()
        if granted_at > self._pause_started:
            self._strikes += 1
            self._window = 1
            self._pause_started = now
        backoff_pause = min(_PAUSE_CAP, _PAUSE_BASE * 2 ** (self._strikes - 1))
        pause = retry_after if retry_after is not None else backoff_pause
        pause *= 1 + _PAUSE_JITTER * self._rng.random()
        self._paused_until = max(self._paused_until, now + pause)

    def _blocked_until(self, now: float) -> float | None:
        """None if a request may start now, else when to look again (inf: on release)."""
        if self._paused_until > now:
            return self._paused_until
        if self._in_flight >= self._window:
            return float("inf")
        if self._rate is not None:
            self._refill(now)
            if self._tokens < 1.0:
                return now + (1.0 - self._tokens) / self._rate
        return None

    def _refill(self, now: float) -> None:
        assert self._rate is not None
        if self._refilled_at is not None:
            capacity = max(1.0, self._rate)
            self._tokens = min(capacity, self._tokens + (now - self._refilled_at) * self._rate)
        self._refilled_at = now

    def _grant(self, now: float) -> None:
        self._in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self._in_flight)
        if self._rate is not None:
            self._tokens -= 1.0

    def _dispatch(self) -> None:
        """Grant every due request that can go now; arm one timer for the rest."""
        if not self._queue and self._timer is None:
            return  # the common case on every release of an idle session
        loop = asyncio.get_running_loop()
        now = loop.time()
        wake: float | None = None
        while self._queue:
            due, _, waiter = self._queue[0]
            if waiter.done():  # cancelled while queued
                heapq.heappop(self._queue)
                continue
            if due > now:
                wake = due
                break
            blocked = self._blocked_until(now)
            if blocked is not None:
                wake = None if blocked == float("inf") else blocked  # inf: on release
                break
            heapq.heappop(self._queue)
            self._grant(now)
            waiter.set_result(now)
        self._arm(loop, wake)

    def _arm(self, loop: asyncio.AbstractEventLoop, wake: float | None) -> None:
        """One timer at ``wake`` (None: none); kept as is when it is already right."""
        timer = self._timer
        if timer is not None:
            if wake is not None and timer.when() == wake and not timer.cancelled():
                return  # dispatch runs on every release: don't churn timers
            timer.cancel()
        self._timer = loop.call_at(wake, self._dispatch) if wake is not None else None
