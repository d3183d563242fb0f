"""The session-wide request budget (pure) and the due-time queue in front of it.

Every HTTP request of a session, whichever task handle makes it, asks one
:class:`RequestBudget` for permission to start. It may start when:

- fewer than the current *window* of requests are in flight: ``concurrency``,
  except after a 429, when it drops to one probe and grows back by one per
  answer that is not a 429 (TCP's slow start), so a session never answers a
  429 with a herd of retries; when requests in flight with it were refused
  too (our own load met a limit, not chance: see ``_limit_met``), only up
  to half the requests then in flight, then by one per window of answers
  (TCP's congestion avoidance), so as not to meet it again a second later;
- the optional ``rate`` allows it: at most ``rate`` starts in any sliding
  window of ``period`` seconds (one by default; see :class:`RequestBudget`);
- without a ``rate``, after such a limit met: a rate learned from it (half
  the starts of the second before it, growing back by 10 % a second; see
  :class:`_LearnedRate`), since a limit of requests a second is not one of
  requests in flight, and a window alone met it again a second later;
- the session is not paused by a 429 (``Retry-After``, capped at
  :data:`MAX_PAUSE`, or a doubling backoff while 429s keep coming).

The budget is pure: the clock is an argument of every call and the random
source is injected, so it is tested without an event loop.

:class:`DueQueue` is the thin asyncio part: a heap of tickets keyed by the
time each request is *due*, served most-overdue first whenever the budget
allows, with one timer for the earliest moment something can change. Poll
loops sleep in it (one heap entry per waiting poll, not a timer, coroutine and
context apiece), and it is where closing the session or a fatal error wakes
every queued request at once. A waiting ticket can be moved to another time
(a poll planned again): its old entry stays, dead, until it comes up.

Why not aiolimiter: its leaky bucket covers only the rate rule; the in-flight
window, the session-wide 429 pause and the due-time order need the one queue.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import random
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ._numbers import is_finite, shown
from ._release import release_over_steps

__all__ = ["MAX_PAUSE", "DueQueue", "RequestBudget", "Ticket"]

#: The longest pause a 429 can impose, jitter included, in seconds. A
#: ``Retry-After`` of a day (or 1e308) from a confused proxy must not stall a
#: service: after this long one probe request finds out whether it still holds.
MAX_PAUSE = 300.0
# Pause after the n-th consecutive 429 without Retry-After: 1, 2, 4 ... 60 s.
_BACKOFF_BASE = 1.0
_BACKOFF_CAP = 60.0
# Sessions sharing an account (and its limit) must not resume in lockstep.
_PAUSE_JITTER = 0.2
# After a limit met, the window grows one per answer up to half the requests
# then in flight, but never less than this: a limit met by three requests
# must not leave the session growing one slot per window of answers from one.
_MIN_CEILING = 2
# A strike is our own load meeting a limit once this many requests in flight
# with it were refused too (its echoes), and this share of them: at a limit
# every request over it is refused; at random, two more of 64 in flight at a
# 0.5 % chance each are 4 %, two of 256 36 % (eight 0.01 %).
_ECHOES_OF_A_LIMIT = 2
_ECHO_SHARE = 0.03
# A rate learned from a 429 (see _LearnedRate): half the starts a second of
# the second before it, at least this many; it grows by this share of itself
# a second, compounded, and is dropped once it has grown this many times over
# (in about 22 s: the limit it met is gone, or far above).
_LEARNED_FLOOR = 1.0
_LEARNED_GROWTH = 0.1
_LEARNED_UNTIL = 8.0
_LEARNED_LOG_GROWTH = math.log1p(_LEARNED_GROWTH)
# Rebuild the heap once this many cancelled tickets linger in it (and they
# are at least half of it): waits that ended during a long pause must not pile up.
_COMPACT_AT = 512
# Entries a compaction drops are let go of this many per loop step: each may
# hold a whole poll run (a deadline's compaction drops tens of thousands).
_RELEASE_SLICE = 5000
# Tickets a closing queue fails per loop step (see DueQueue.aclose).
_FAIL_SLICE = 2000


class RequestBudget:
    """Admission rules for request starts. Pure: ``now`` is always passed in.

    :param concurrency: the most requests in flight at once (>= 1).
    :param rate: the most request starts in any sliding window of ``period``
        seconds, or None for no limit: ``floor(rate)`` starts per sliding
        window (a burst of them may start together); below 1, one start per
        ``period / rate`` s.
    :param period: the length of the sliding window, in seconds (> 0): the
        polling budget counts per second, the creation budget per 10 s
        (Kie's "20 new generation requests per 10 s").
    :param count_finish: count each request in the rate window from its
        start *until it finishes*, and for ``period`` after that, instead of
        for ``period`` from its start. The service counts a request when it
        arrives, somewhere between the two: only this way does no window of
        the service's see more than ``rate``, whatever the network delays
        (the creation budget needs that; it costs a round trip per window).
    :param rng: the random source of the pause jitter (seed it in tests).
    """

    def __init__(
        self,
        concurrency: int,
        rate: float | None = None,
        *,
        period: float = 1.0,
        count_finish: bool = False,
        rng: random.Random | None = None,
    ) -> None:
        if not period > 0 or not is_finite(period):
            raise ValueError(f"period must be a positive finite number, not {shown(period)}")
        self.concurrency = concurrency
        self.rate = rate
        self.period = period
        self._window = concurrency
        # Where slow start ends after a 429 (TCP's ssthresh): past it the
        # window grows one per window of answers (_grown counts them).
        self._ceiling = concurrency
        self._grown = 0
        self._rng = rng if rng is not None else random.Random()
        # The starts of the current rate window, oldest first: at most
        # _burst of them may fall within _span seconds.
        self._burst = max(1, math.floor(rate)) if rate is not None else 0
        self._span = (period if rate >= 1 else period / rate) if rate is not None else 0.0
        self._starts: deque[float] = deque(maxlen=None if count_finish else self._burst or None)
        self._count_finish = count_finish and self._burst > 0
        # count_finish: requests started and not finished (they fill the window).
        self._unfinished = 0
        #: True when :meth:`finish` must be told the time (``count_finish``).
        self.timed_finish = self._count_finish
        self._paused_until = 0.0
        self._pause_started = -math.inf
        self._strikes = 0
        # Without a rate given, one is learned from the 429s (see _LearnedRate):
        # the starts of the latest two seconds, and the rate once learned.
        self._recent: _RecentStarts | None = _RecentStarts() if rate is None else None
        self._learned: _LearnedRate | None = None
        # The latest strike, until its echoes confirm a limit (see _limit_met):
        # when, the requests then in flight, the starts a second before it.
        self._strike: tuple[float, int, float] | None = None
        self._echoes = 0
        #: Requests holding a slot now.
        self.in_flight = 0
        #: The high-water mark of :attr:`in_flight`.
        self.max_in_flight = 0
        #: How many 429 answers the session has absorbed.
        self.rate_limited = 0
        #: How many times a 429 started (or lengthened) a pause.
        self.pauses = 0

    @property
    def window(self) -> int:
        """The in-flight window now (``concurrency`` unless recovering from a 429)."""
        return self._window

    @property
    def paused_until(self) -> float:
        """The clock time until which a 429 pauses every start (past: no pause)."""
        return self._paused_until

    def blocked_until(self, now: float) -> float | None:
        """None if a request may start at ``now``; else when to ask again
        (``math.inf``: when a slot is released)."""
        if self._paused_until > now:
            return self._paused_until
        if self.in_flight >= self._window:
            return math.inf
        if self._count_finish:
            return self._window_free_at(now)
        if self._burst and len(self._starts) == self._burst:
            free_at = self._starts[0] + self._span
            if free_at > now:
                return free_at
        learned = self._learned
        if learned is not None:
            if learned.outgrown(now):
                self._learned = None
            else:
                return learned.free_at(now)
        return None

    @property
    def learned_rate(self) -> float | None:
        """The starts a second learned from the latest 429s, while one holds
        (None: none learned, or a ``rate`` was given)."""
        learned = self._learned
        return None if learned is None else learned.base

    def _window_free_at(self, now: float) -> float | None:
        """count_finish: when a start fits in the window (inf: at a finish)."""
        ends = self._starts
        while ends and ends[0] + self._span <= now:
            ends.popleft()
        over = len(ends) + self._unfinished - self._burst + 1
        if over <= 0:
            return None
        if over > len(ends):
            return math.inf  # the window is full of requests still in flight
        return ends[over - 1] + self._span

    def start(self, now: float) -> bool:
        """A request starts at ``now`` (call only when :meth:`blocked_until` is None).

        :returns: False when no other request may start at ``now`` (the window
            is full); True when one may (ask :meth:`blocked_until`).
        """
        in_flight = self.in_flight = self.in_flight + 1
        if in_flight > self.max_in_flight:
            self.max_in_flight = in_flight
        if self._count_finish:
            self._unfinished += 1
        elif self._burst:
            self._starts.append(now)
        elif self._recent is not None:
            self._recent.count(now)
            if self._learned is not None:
                self._learned.take(now)
        # Not paused at now (this start was allowed): a full window is all that blocks.
        return in_flight < self._window

    def try_start(self, now: float) -> bool:
        """:meth:`start` a request at ``now`` if :meth:`blocked_until` allows it;
        True if it started."""
        # No pause, room in the window and no rate (the usual poll): nothing to
        # ask blocked_until.
        if (
            self._paused_until > now
            or self.in_flight >= self._window
            or self._burst
            or self._learned is not None
        ) and self.blocked_until(now) is not None:
            return False
        self.start(now)
        return True

    def finish(self, now: float = 0.0, *, sent: bool = True) -> None:
        """A request gave its slot back (answered, failed or cancelled) at ``now``
        (needed only with ``count_finish``).

        :param sent: False for a request given up before it was sent: with
            ``count_finish`` it then takes no place in the rate window (the
            service never saw it).
        """
        self.in_flight -= 1
        if self._count_finish:
            self._unfinished -= 1
            if sent:
                self._starts.append(now)

    def paused_after(self, granted_at: float, now: float) -> bool:
        """Whether a 429 pause that began after a grant at ``granted_at``
        still holds at ``now`` (a request granted, not sent yet, must then
        not go: see Requester.call)."""
        # (<=: a grant in the clock tick the pause began in came before it,
        # as on_rate_limited and on_answer read it; a coarse clock, Windows'
        # 15.6 ms before Python 3.13, reads both the same.)
        return granted_at <= self._pause_started and self._paused_until > now

    def on_answer(self, granted_at: float) -> bool:
        """An answer that was not a 429, to a request granted at ``granted_at``:
        end the strike run, widen the window.

        Only a request granted after the last 429 began its pause counts: the
        answers of those sent before it (in flight through the pause) say
        nothing of the service since, and letting them widen the window
        would meet the pause's end with a herd instead of one probe.

        :returns: True if the window grew (a waiting request may start now).
        """
        if granted_at <= self._pause_started:  # (<=: see paused_after)
            return False
        self._strikes = 0
        window = self._window
        if window >= self.concurrency:
            return False
        if window >= self._ceiling:
            # Past half the load that met the 429: one more slot per window
            # of answers (one per round trip), not per answer. Growing
            # per answer, 64 slots were back within six round trips, and a
            # service limiting polls to 50 a second answered 51 % of a
            # session's requests with 429.
            self._grown += 1
            if self._grown < window:
                return False
            self._grown = 0
        self._window = window = window + 1
        if window >= self.concurrency:
            self._ceiling = window  # grown back: slow start all the way next time
        return True

    def on_rate_limited(self, now: float, granted_at: float, retry_after: float | None) -> float:
        """A 429 came back for a request granted at ``granted_at``: pause every start.

        A 429 for a request sent before the current pause began is an echo of
        the same overload: it may lengthen the pause but is not a new strike.

        :returns: the pause from ``now``, in seconds (at most :data:`MAX_PAUSE`).
        """
        self.rate_limited += 1
        strike = granted_at > self._pause_started
        recent = self._recent
        if strike:
            self._strikes += 1
            self._grown = 0
            self._window = 1
            # The window grows back as far as before (the full width, unless
            # a limit met lowered it and it has not grown back since), lower
            # if echoes show that our own load met a limit (see _limit_met).
            self._pause_started = now
            self._echoes = 0
            if recent is not None:
                # What went out before it: the starts a second (under a rate
                # learned, of what went out since its latest pause too: the
                # second before may hold a pause).
                sent = recent.per_second(now)
                learned = self._learned
                if learned is not None:
                    sent = max(sent, learned.sent_per_second(now))
                # (in_flight still counts this request: its slot is released after.)
                self._strike = (now, self.in_flight, sent)
        elif self._strike is not None:
            self._echoes += 1
            if self._echoes >= max(_ECHOES_OF_A_LIMIT, _ECHO_SHARE * self._strike[1]):
                self._limit_met()
        if retry_after is None or retry_after <= 0:
            # No Retry-After, or one that says "now" (0, or a date already
            # past): asking again at once would be refused again at once (six
            # creates refused in 3 ms), so back off as without one.
            pause = min(_BACKOFF_CAP, _BACKOFF_BASE * 2.0 ** (self._strikes - 1))
        else:
            pause = retry_after
        spread = self._rng.random()
        jittered = pause * (1 + _PAUSE_JITTER * spread)
        if jittered <= MAX_PAUSE:
            pause = jittered
        elif pause < MAX_PAUSE:
            # Never shorter than asked: between it and the cap.
            pause += (MAX_PAUSE - pause) * spread
        else:
            # Asked for more than the cap: the jitter is taken off the cap
            # (clipped, every session sharing an account resumed at 300 s
            # exactly, together).
            pause = MAX_PAUSE * (1 - _PAUSE_JITTER * spread)
        if now + pause > self._paused_until:
            self._paused_until = now + pause
            self.pauses += 1
            if self._learned is not None:
                self._learned.count_from(self._paused_until)
        return pause

    def _limit_met(self) -> None:
        """Echoes of the latest strike came back: several requests in flight
        together were refused, so our own load met a limit (a 429 alone, the
        others answered, is another client's load or chance: cut at each such
        one, a session with no limit at all fell to a few requests a second).
        The window grows back one per answer to half the requests then in
        flight, then one per window of answers; the rate, without one given,
        to half the starts a second before the strike (at most the rate
        learned), growing from the pause's end."""
        assert self._strike is not None
        struck_at, in_flight, sent = self._strike
        self._strike = None
        self._ceiling = max(_MIN_CEILING, in_flight // 2)
        if sent <= 0:
            return  # none started lately: nothing of ours to learn a rate from
        learned = self._learned
        rate = sent if learned is None else min(sent, learned.rate(struck_at))
        self._learned = _LearnedRate(max(_LEARNED_FLOOR, rate / 2), self._paused_until)


class _RecentStarts:
    """How many requests a second started lately, roughly: counts per
    one-second bucket, the current one and the one before (an addition a
    start, where a deque of times would be one entry per request)."""

    __slots__ = ("_at", "_before", "_first", "_now")

    def __init__(self) -> None:
        self._first = math.inf  # when the first request started
        self._at = -math.inf  # when the current bucket began
        self._now = 0  # starts in it
        self._before = 0  # starts in the bucket before it

    def count(self, now: float) -> None:
        """A request starts at ``now``."""
        if now - self._at >= 1.0:
            self._before = self._now if now - self._at < 2.0 else 0
            self._now = 0
            self._at = now
            if self._first == math.inf:
                self._first = now
        self._now += 1

    def per_second(self, now: float) -> float:
        """The starts a second over the second before ``now`` (the bucket
        before counted for the part of it within that second); over the time
        since the first start when that is shorter: 32 requests sent in the
        session's first 10 ms are no rate of 32 a second."""
        into = now - self._at
        if into >= 2.0:
            return 0.0
        if into >= 1.0:
            starts = self._now * (2.0 - into)
        else:
            starts = self._now + self._before * (1.0 - into)
        return starts / min(1.0, max(now - self._first, 1e-3))


class _LearnedRate:
    """A limit of starts a second learned from a 429 (a token bucket).

    A service that limits requests a second, not in flight, is met again by
    the in-flight window soon after each pause: 64 polls in flight answered
    in 0.1 s are 640 a second, whatever window brought them. So a 429 whose
    echoes show our load met a limit (see RequestBudget._limit_met) also
    sets a rate: half the starts a second of the second before it (TCP's
    multiplicative decrease, on rates; at most the rate learned before),
    growing back by 10 % of itself a second, compounded, from the pause's
    end. Once grown eight
    times over (in about 22 s), nothing is left to learn and it is dropped.
    Requests start evenly, a fifth of a second's worth at most at once.
    """

    __slots__ = ("_counted_from", "_taken", "_tokens", "_tokens_at", "base", "since")

    def __init__(self, rate: float, since: float) -> None:
        #: The starts a second it was set to, and when it starts to grow.
        self.base = rate
        self.since = since
        self._tokens = 1.0
        self._tokens_at = since
        # Requests started under it since its latest pause ended (_counted_from).
        self._taken = 0
        self._counted_from = since

    def rate(self, now: float) -> float:
        """The starts a second allowed at ``now``."""
        return self.base * math.exp(_LEARNED_LOG_GROWTH * max(0.0, now - self.since))

    def outgrown(self, now: float) -> bool:
        """Whether it grew so far that it no longer says anything."""
        return self.rate(now) >= _LEARNED_UNTIL * self.base

    def _refill(self, now: float) -> float:
        rate = self.rate(now)
        tokens = self._tokens + rate * max(0.0, now - self._tokens_at)
        self._tokens = min(max(1.0, rate / 5), tokens)
        self._tokens_at = now
        return rate

    def free_at(self, now: float) -> float | None:
        """None if a request may start at ``now``; else when one may."""
        rate = self._refill(now)
        if self._tokens >= 1.0:
            return None
        return now + (1.0 - self._tokens) / rate

    def take(self, now: float) -> None:
        """A request starts at ``now``."""
        self._refill(now)
        self._tokens -= 1.0
        self._taken += 1

    def count_from(self, resume: float) -> None:
        """A pause ends at ``resume``: count what goes out from then."""
        self._taken = 0
        self._counted_from = resume

    def sent_per_second(self, now: float) -> float:
        """The starts a second since the latest pause ended."""
        return self._taken / max(now - self._counted_from, 1e-3)


class Ticket:
    """A place in the :class:`DueQueue`: granted, failed or cancelled, once.

    Subclasses say what a grant and a failure mean (wake a future, start a
    poll); :meth:`cancel` takes the ticket out of the running.
    """

    __slots__ = ("cancelled", "entry", "queued")

    def __init__(self) -> None:
        self.cancelled = False
        self.queued = False
        #: The number of the ticket's live heap entry (see DueQueue.move):
        #: its other entries, if any, are dead.
        self.entry = -1

    def granted(self, now: float) -> None:
        """The slot is ours from ``now``; the holder must release it once."""
        raise NotImplementedError

    def failed(self, error: BaseException) -> None:
        """The queue was closed or failed: no slot will come."""
        raise NotImplementedError

    def cancel(self) -> None:
        """Withdraw: the queue drops the ticket unserved."""
        self.cancelled = True

    def wanted(self) -> bool:
        """Whether a slot is still wanted, asked just before granting one."""
        return True


class _FutureTicket(Ticket):
    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[float]) -> None:
        super().__init__()
        self.future = future

    def wanted(self) -> bool:
        # Cancelling the waiting task cancels this future at once, but its
        # ``except`` (which discards the ticket) runs only at its next step:
        # a grant in between must pass it by, or the slot would be lost.
        return not self.future.done()

    def granted(self, now: float) -> None:
        self.future.set_result(now)

    def failed(self, error: BaseException) -> None:
        if not self.future.done():  # (its waiter may be cancelled already)
            self.future.set_exception(error)


def _live(entry: tuple[float, int, Ticket]) -> bool:
    """Whether a heap entry is its ticket's live one (see DueQueue.move)."""
    ticket = entry[2]
    return not ticket.cancelled and entry[1] == ticket.entry


def _fail(entries: list[tuple[float, int, Ticket]], failure: Callable[[], BaseException]) -> None:
    """Fail the tickets of ``entries`` not served, cancelled or failed yet."""
    for entry in entries:
        # A dead entry's ticket may be queued again meanwhile (aclose fails
        # them over loop steps): failed by the queue's refusal, not twice.
        if _live(entry):
            ticket = entry[2]
            ticket.cancelled = True
            ticket.failed(failure())


class DueQueue:
    """Hands out the budget's slots to tickets in due-time order.

    :param budget: the admission rules.
    """

    def __init__(self, budget: RequestBudget) -> None:
        self.budget = budget
        self._heap: list[tuple[float, int, Ticket]] = []
        self._order = itertools.count()
        self._cancelled = 0
        # The dispatch timer and when it is due: kept apart, since uvloop
        # hands back a plain Handle, without when(), for a time due within
        # its millisecond (asyncio's TimerHandle has one).
        self._timer: asyncio.Handle | None = None
        self._timer_due = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._failure: Callable[[], BaseException] | None = None
        self._deferring = 0

    def __len__(self) -> int:
        """Tickets waiting (cancelled ones included until they are dropped)."""
        return len(self._heap)

    @property
    def waiting(self) -> int:
        """Tickets waiting that were not cancelled."""
        return len(self._heap) - self._cancelled

    def _now(self) -> float:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop.time()

    def push(self, due: float, ticket: Ticket) -> None:
        """Queue ``ticket`` for a slot at loop time ``due`` (earlier: at once).

        A closed queue fails the ticket at once.
        """
        if self._failure is not None:
            ticket.failed(self._failure())
            return
        ticket.queued = True
        if self._enter(due, ticket):  # a new earliest entry: serve or re-arm
            self.dispatch()

    def _enter(self, due: float, ticket: Ticket) -> bool:
        """Push ``ticket``'s new live entry: whether it is the earliest now."""
        ticket.entry = entry = next(self._order)
        heapq.heappush(self._heap, (due, entry, ticket))
        return self._heap[0][1] == entry

    def waiting_tickets(self) -> Iterator[Ticket]:
        """The tickets waiting, in no particular order, one at a time: those
        of the heap as it is now, each given if it is still waiting when its
        turn comes (a caller may take them over many loop steps)."""
        for entry in self._heap.copy():
            if _live(entry):
                yield entry[2]

    def move(self, ticket: Ticket, due: float) -> bool:
        """Queue a waiting ticket for ``due`` instead of its time so far (a
        poll planned again); False, and nothing done, if it is not waiting
        (served, cancelled, never queued) or the queue is closed.

        Its old entry stays in the heap, dead, until it comes up or a
        compaction drops it: one push, no search.
        """
        if ticket.cancelled or not ticket.queued or self._failure is not None:
            return False
        earliest = self._enter(due, ticket)
        self._one_more_dead()  # the old entry (a compaction keeps the earliest first)
        # A new earliest entry: serve or re-arm, unless grants are deferred
        # (a batch letting go of its runs: this one may be next).
        if earliest and not self._deferring:
            self.dispatch()
        return True

    def discard(self, ticket: Ticket) -> None:
        """Cancel a queued ticket; the heap is compacted when many linger."""
        if ticket.cancelled:
            return
        ticket.cancel()
        if not ticket.queued:
            return
        self._one_more_dead()

    def _one_more_dead(self) -> None:
        """Count an entry that died in the heap; compact when many linger."""
        self._cancelled += 1
        if self._cancelled >= _COMPACT_AT and self._cancelled * 2 >= len(self._heap):
            self._compact()

    def _compact(self) -> None:
        """Drop the cancelled entries from the heap."""
        heap = self._heap
        # Freed a slice per loop step (see release_over_steps), not all now.
        entries = heap[:]
        # In place: a new list of 100,000 entries would be young, and every
        # collection until it is old would walk all of it; the heap itself
        # is long-lived (and, in a large batch, out of the collector's view).
        heap[:] = [entry for entry in entries if _live(entry)]
        heapq.heapify(heap)
        self._cancelled = 0
        release_over_steps(entries, _RELEASE_SLICE)

    def take(self) -> float | None:
        """A slot now, without waiting, if one is free and nobody is more overdue:
        the loop time of the grant; None otherwise (and on a closed queue).

        The common case of :meth:`acquire`, without a coroutine: a request
        that can start at once costs no task switch and no future.
        """
        now = self._now()
        if (
            self._failure is None
            and (not self._heap or self._heap[0][0] > now)  # nobody more overdue
            and self.budget.try_start(now)
        ):
            return now
        return None

    async def acquire(self, due: float | None = None) -> float:
        """Wait for a slot (at ``due``, default now); returns the loop time of the grant."""
        if due is None:
            granted = self.take()
            if granted is not None:
                return granted
        if self._failure is not None:
            raise self._failure()
        now = self._now()
        if due is None:
            due = now
        elif due <= now:
            granted = self.take()
            if granted is not None:
                return granted
        assert self._loop is not None
        future: asyncio.Future[float] = self._loop.create_future()
        ticket = _FutureTicket(future)
        self.push(due, ticket)
        try:
            # The grant time, not the (later) moment this coroutine resumes: a
            # 429 is judged against when its request really got the slot.
            return await future
        except asyncio.CancelledError:
            if ticket.future.done() and not ticket.future.cancelled():
                if ticket.future.exception() is None:
                    self.release()  # granted and cancelled in one iteration
            else:
                self.discard(ticket)
            raise

    def release(self, *, sent: bool = True) -> None:
        """Give a slot back (exactly once per grant); ``sent`` False: its request
        was given up before it was sent (see :meth:`RequestBudget.finish`)."""
        if self._deferring:
            self.budget.finish(self._now(), sent=sent)  # granted again when the deferral ends
        elif self._heap or self._timer is not None:
            now = self._now()
            self.budget.finish(now, sent=sent)
            self._dispatch(now)
        elif self.budget.timed_finish:
            self.budget.finish(self._now(), sent=sent)
        else:
            self.budget.finish()  # nothing waits and no time is needed: no clock read

    @contextmanager
    def grants_deferred(self) -> Iterator[None]:
        """Within (which may span awaits): slots given back are granted
        again only at the end, in one dispatch (new tickets still are).

        For letting go of many tickets, in slices: each stopped request would
        otherwise grant its slot at once to a ticket that is about to be
        let go of as well (at a 100,000-id deadline: tens of thousands of
        requests started and cancelled in a second).
        """
        self._deferring += 1
        try:
            yield
        finally:
            self._deferring -= 1
            if not self._deferring:
                self.dispatch()

    def answered(self, granted_at: float) -> None:
        """The request granted at ``granted_at`` got an answer that was not a
        429 (may widen the window, and then grant the slot it adds: the
        request's own slot may have been given back, and granted, before)."""
        if self.budget.on_answer(granted_at):
            self.dispatch()

    def rate_limited(self, granted_at: float, retry_after: float | None) -> float:
        """A 429: pause the budget; returns the pause length."""
        pause = self.budget.on_rate_limited(self._now(), granted_at, retry_after)
        self.dispatch()
        return pause

    def close(self, failure: Callable[[], BaseException]) -> None:
        """Fail every waiting ticket now, and every later one at once.

        :param failure: makes the error each ticket gets (a fresh one each).
        """
        heap = self._closed_with(failure)
        _fail(heap, failure)
        release_over_steps(heap, _RELEASE_SLICE)

    async def aclose(self, failure: Callable[[], BaseException]) -> None:
        """:meth:`close`, failing the waiting tickets a slice per loop step: each
        failure tells its run's followers (a batch's tracker...), some
        microseconds each, and 100,000 of them in one step stalled the loop
        for a third of a second. Every later ticket fails at once, as after
        :meth:`close`; cancelled, it fails the rest at once."""
        heap = self._closed_with(failure)
        try:
            for start in range(0, len(heap), _FAIL_SLICE):
                if start:
                    await asyncio.sleep(0)
                _fail(heap[start : start + _FAIL_SLICE], failure)
        finally:
            _fail(heap, failure)  # the rest, if cancelled (done ones are skipped)
            release_over_steps(heap, _RELEASE_SLICE)

    def _closed_with(self, failure: Callable[[], BaseException]) -> list[tuple[float, int, Ticket]]:
        """Refuse every later ticket; the waiting ones, taken out of the queue."""
        self._failure = failure
        heap, self._heap, self._cancelled = self._heap, [], 0
        for _, _, ticket in heap:
            # Out of the queue: one withdrawn before its turn to fail (aclose()
            # fails them over loop steps) must not count as the queue's.
            ticket.queued = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        return heap

    def dispatch(self) -> None:
        """Grant every due ticket that can go now; arm one timer for the rest."""
        if not self._heap and self._timer is None:
            return  # the common case on every release of an idle session
        self._dispatch(self._now())

    def _dispatch(self, now: float) -> None:
        wake: float | None = None
        heap = self._heap
        full = False  # the window filled up: blocked_until(now) would say math.inf
        while heap:
            due, entry, ticket = heap[0]
            if ticket.cancelled or entry != ticket.entry:  # dead (see move)
                heapq.heappop(heap)
                self._cancelled -= 1
                continue
            if due > now:
                wake = due
                break
            blocked = math.inf if full else self.budget.blocked_until(now)
            if blocked is not None:
                wake = None if blocked == math.inf else blocked  # inf: on release
                break
            heapq.heappop(heap)
            ticket.queued = False
            ticket.cancelled = True  # served: a later discard() is a no-op
            if not ticket.wanted():
                continue
            full = not self.budget.start(now)
            ticket.granted(now)
        if wake is not None or self._timer is not None:  # else nothing to (re-)arm
            self._arm(wake)

    def _arm(self, wake: float | None) -> None:
        """One timer at ``wake`` (None: none); kept as is when it is already right."""
        timer = self._timer
        if timer is not None:
            if wake is not None and self._timer_due == wake and not timer.cancelled():
                return  # dispatch runs on every release: don't churn timers
            timer.cancel()
        if wake is None:
            self._timer = None
        else:
            assert self._loop is not None
            self._timer = self._loop.call_at(wake, self._on_timer)
            self._timer_due = wake

    def _on_timer(self) -> None:
        # Forget the timer before dispatching: asyncio may run a timer up to
        # its clock resolution early, and a dispatch that finds nothing due
        # yet must then arm a new timer, not keep this spent one (a stall).
        self._timer = None
        self.dispatch()
