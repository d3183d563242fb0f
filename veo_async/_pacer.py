"""When each poll goes: the session's pacer and the per-run plans it hands out.

A poll run asks its *plan* for the delay before each poll. Two kinds:

- :class:`PollPolicy` gives a fixed plan: its seeded delays, whatever the task;
- :class:`AdaptivePolicy` (the default) gives a learned plan: the session's
  :class:`AdaptiveSchedule` is asked for the next delay of a task of this
  *model* and this *age*, and the session's :class:`DurationLearner` learns
  each model's generation time from every terminal record the session sees.

When a rebuild moves a model's table (:meth:`AdaptiveSchedule.revisions`),
the polls waiting in the session's queue are planned again, a slice per loop
step, and each brought forward if its plan now says sooner (see
:meth:`Plan.replanned_delay`).

Age is ``server now - createTime``. The server's clock is estimated from the
HTTP ``Date`` header when one comes (it has one-second resolution, so only a
skew beyond two seconds is applied), and "now" is read from the event loop's
clock anchored to the wall clock when the session was made, so that a test on
a virtual clock sees ages move with its loop. What does not make sense is
clamped: a ``createTime`` in the future counts as age 0, an age beyond a day
as a day, and a finished record's duration outside [0 s, 6 h) is not learned
(0 s: done within the second it was created, as whole-second times read).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import itertools
import logging
import math
import random
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

from ._schedule import AdaptivePolicy, AdaptiveSchedule
from .models import RecordInfo, TaskStatus
from .policy import PollPolicy

__all__ = ["AgeSeen", "AnyPolicy", "Pacer", "Plan", "Replannable", "TaskFacts"]

logger = logging.getLogger("veo_async")

_T = TypeVar("_T")

#: What a wait's ``policy=`` accepts.
AnyPolicy = PollPolicy | AdaptivePolicy

#: A task's age when first planned, the loop time then, and whether it was
#: made an explorer then (see Plan.first_seen, AdaptiveSchedule.explores).
AgeSeen = tuple[float, float, bool]

_MAX_AGE = 86_400.0
_MAX_LEARNED = 6 * 3600.0
# Task ids learned from, remembered so that a task seen finished again (a
# service checking the same old ids on each request, a batch waited twice)
# teaches its generation time once: 50 looks at one finished task counted
# 50 renders. The oldest are let go of past this many (~100 bytes each).
_LEARNED_IDS = 32_768
# The Date header has whole seconds: smaller differences are its rounding.
_SKEW_NOISE = 2.0
# A server clock further off than this is a wrong Date header, not a clock,
# unless a createTime as far in the future bears it out (see Pacer.age).
_SKEW_BELIEVED = 900.0
# Running at an age past this is not taught to the learner: a createTime in a
# zone hours off (UTC for UTC+8) made every such task "seen running at 8 h",
# and the tables rebuilt while they ran (until their finish took it back)
# thinned the polls of every other task (p95 lag over fixed polling's).
_SURVIVAL_BELIEVED = 6 * 3600.0
# How long such a header stays a candidate (seconds of wall time).
_FAR_SKEW_FRESH = 600.0
# Schedules kept for distinct (schedule-wise) AdaptivePolicy values; the
# oldest is let go of past this (runs keep the one they use).
_MAX_SCHEDULES = 16
# Runs told per loop step that a rebuild they waited for ended (see
# Pacer._rebuild_step): each is planned then (tens of microseconds), or waits
# again if its model still has no table.
_TELL_SLICE = 100
# Waiting polls planned again per loop step when a table moved (see
# Pacer._replan_moved): each is one next_delay (10-30 microseconds).
_REPLAN_SLICE = 500


class TaskFacts(NamedTuple):
    """What a plan is told of its task (see :meth:`Plan.next_delay` for each)."""

    record: RecordInfo | None
    created: float | None
    model: str | None
    first_seen: AgeSeen | None


class Replannable(Protocol):
    """A poll waiting in the queue that can be planned again (a poll run)."""

    def replan(self, moved: AdaptiveSchedule, tables: frozenset[str | None]) -> None:
        """Plan the waiting poll again if it follows one of ``tables`` of
        ``moved``, and bring it forward if that is sooner."""


class Plan:
    """The delays of one poll run; see the module docstring."""

    __slots__ = ()

    def next_delay(
        self,
        record: RecordInfo | None,
        created: float | None,
        model: str | None,
        *,
        running: bool = False,
        first_seen: AgeSeen | None = None,
        since_asked: float = 0.0,
    ) -> float | None:
        """Seconds from now to the next poll; None: not known yet (a learned
        plan whose schedule is still making its first table, in loop steps),
        ask again, with ``running`` False, once :meth:`when_ready` calls back.

        :param record: the task's last record, if any.
        :param created: the loop time of the task's creation if this session
            created it; else the record's ``createTime`` gives the age.
        :param model: the task's model if known without a record (its request).
        :param running: a poll has just found the task still running (not a
            failed poll's retry): a learned plan learns from it.
        :param first_seen: the task's age when an earlier run first planned
            it, the loop time then, and whether it explores (see
            :attr:`first_seen`).
        :param since_asked: seconds since the last poll was sent (0: none
            yet): a learned plan plans the next poll from that poll's time,
            not from its answer's (a slow answer would lengthen every gap).
        """
        raise NotImplementedError

    def replanned_delay(
        self, task: TaskFacts, moved: AdaptiveSchedule, tables: frozenset[str | None]
    ) -> float | None:
        """Seconds from now to the poll already planned, planned again because
        the ``tables`` of schedule ``moved`` moved (see
        :meth:`AdaptiveSchedule.revisions`), from the same age as before (the
        last poll's sending, or the age when it was planned); None: this plan
        does not follow them (a fixed plan, another schedule or model, an age
        not known). Nothing is counted or learned: the poll is the one
        planned before.
        """
        return None

    def finished(self, model: str | None) -> None:
        """The run's task finished and was learned from: a learned plan
        starts the rebuild of its schedule this makes due (so that a batch
        waiting out long gaps still sees its table move)."""

    @property
    def first_seen(self) -> AgeSeen | None:
        """The task's age when first planned, and the loop time then (None: not
        yet, or a fixed plan): kept by the task for its later runs, so that a
        ``createTime`` in the future (age 0 at every reading) does not restart
        the schedule at each new wait."""
        return None

    def when_ready(self, callback: Callable[[bool], None]) -> None:
        """Call ``callback(False)`` once :meth:`next_delay` can answer, or
        ``callback(True)`` if the session closes first."""
        callback(False)

    @property
    def running_until(self) -> float:
        """The task's age when a poll last found it running (0: never, or not
        tracked): the start of what its finish adds to the learner."""
        return 0.0

    @property
    def announced(self) -> bool:
        """Whether the learner was told of the task's creation (see
        :meth:`DurationLearner.created`): its polls say so."""
        return False

    def spend(self, seconds: float) -> tuple[int, int]:
        """For the spend ledger (:meth:`DurationLearner.spend_ratio`), of a
        task that finished ``seconds`` after its creation: the requests this
        run made, and those polling every budget interval from the creation
        would have made; ``(0, 0)`` when the run does not count (a fixed
        plan, or a task first polled when already old)."""
        return 0, 0


class _FixedPlan(Plan):
    # The delays generator is made at the second poll: most runs of a batch over
    # finished ids need one poll, and a generator costs ~0.5 KiB and microseconds.
    __slots__ = ("_delays", "_first_given", "_policy")

    def __init__(self, policy: PollPolicy) -> None:
        self._policy = policy
        self._delays: Iterator[float] | None = None
        self._first_given = False

    def next_delay(
        self,
        record: RecordInfo | None,
        created: float | None,
        model: str | None,
        *,
        running: bool = False,
        first_seen: AgeSeen | None = None,
        since_asked: float = 0.0,
    ) -> float:
        delays = self._delays
        if delays is None:
            if not self._first_given:
                self._first_given = True
                if since_asked > 0.0:
                    # An earlier run polled the task (a wait cancelled, then
                    # another started): the next poll one interval after that.
                    return max(self._policy.first_poll, self._policy.interval - since_asked)
                return self._policy.first_poll  # what delays() yields first
            delays = self._delays = self._policy.delays()
            next(delays)  # its first_poll, given already
        return next(delays)


class _LearnedPlan(Plan):
    __slots__ = (
        "_announced",
        "_explorer",
        "_first_age",
        "_first_seen",
        "_pacer",
        "_planned_from",
        "_polls",
        "_rng",
        "_running_until",
        "_schedule",
        "_unaged_looks",
        "_waiting_for",
    )

    def __init__(self, pacer: Pacer, schedule: AdaptiveSchedule, rng: random.Random) -> None:
        self._pacer = pacer
        self._schedule = schedule
        self._rng = rng  # its policy's (see Pacer._schedule_like)
        self._polls = 0
        # Looks at a bare id before its age was known: no schedule chose them.
        self._unaged_looks = 0
        self._running_until = 0.0
        self._first_age: float | None = None  # the task's age when this run first planned it
        self._first_seen: AgeSeen | None = None  # that age and the loop time, of the first run
        self._waiting_for: str | None = None  # the model whose first table is awaited
        # The age the waiting poll was planned from (None: not planned by age).
        self._planned_from: float | None = None
        self._announced = False  # see announced
        self._explorer = False  # see AdaptiveSchedule.explores

    @property
    def first_seen(self) -> AgeSeen | None:
        return self._first_seen

    @property
    def running_until(self) -> float:
        return self._running_until

    @property
    def announced(self) -> bool:
        return self._announced

    def spend(self, seconds: float) -> tuple[int, int]:
        interval = self._schedule.policy.budget_interval
        first_age = self._first_age
        # Only a task followed from its creation compares with fixed polling
        # from its creation (whose first poll, at one interval, was still ahead).
        # The looks at a bare id before its age was known are left out: the
        # schedule did not choose them, and counted, an id handed in at its
        # creation read as a request over fixed polling's, and the ledger
        # thinned every task's polls for it (15-25 % more lag).
        polls = self._polls - self._unaged_looks
        if first_age is None or first_age >= interval or polls <= 0:
            return 0, 0
        return polls, max(1, math.ceil(seconds / interval))

    def next_delay(
        self,
        record: RecordInfo | None,
        created: float | None,
        model: str | None,
        *,
        running: bool = False,
        first_seen: AgeSeen | None = None,
        since_asked: float = 0.0,
    ) -> float | None:
        pacer = self._pacer
        model = _model_of(record) or model
        age = self._age(record, created)
        # Planned at a run's start, not at an answer: min_gap counts from
        # the last poll (see AdaptiveSchedule.next_delay's since_poll).
        since_poll: float | None = None
        if since_asked > 0.0 and self._polls == 0:
            # An earlier run polled the task (a wait cancelled, then another
            # started): the schedule goes on from that poll, not from a
            # first look at a task handed in (at once if likely done).
            self._polls = 1
            since_poll = since_asked
        if age is None and self._polls == 0:
            # A bare id: its age is unknown until a record says when it was
            # created. Ask at once (a finished task answers immediately).
            self._polls = 1
            self._unaged_looks = 1
            return 0.0
        if age is None and record is None:
            # Asked, and still no record (the poll failed, or found none yet):
            # its age is still unknown. Retry backing off, never past max_gap.
            delay = self._schedule.unseen_delay(self._polls, self._rng)
            self._polls += 1
            self._unaged_looks += 1
            return delay
        if created is not None and model is not None:
            # Created by this session (or resumed with its creation time):
            # its model is known from the start, not only at its first poll
            # (an extend's comes with its first record). Every run of it
            # says so; the first plan of its first run tells the learner
            # (see DurationLearner.created).
            self._announced = True
        if age is not None:
            now = pacer.loop_now()
            seen = self._first_seen or first_seen
            if seen is None:
                self._explorer = self._schedule.explores(age)
                self._first_seen = (age, now, self._explorer)
                if self._announced:
                    self._schedule.learner.created(model)
            else:
                # Never younger than when first planned (by this run or an
                # earlier one) plus the time since: a createTime in the future
                # (a skew the Date header does not explain) reads as age 0 at
                # every poll, and the schedule would start over each time
                # (60-80 s apart, past max_gap), and at each new wait.
                self._first_seen = seen
                self._explorer = seen[2]  # a wait begun again keeps exploring
                age = max(age, seen[0] + now - seen[1])
            if self._first_age is None:
                self._first_age = age
        schedule = self._schedule
        if running and age is not None and self._running_until < age <= _SURVIVAL_BELIEVED:
            # Still running at this age is evidence too (see DurationLearner.survived).
            schedule.learner.survived(
                model, self._running_until, age, announced=self._announced
            )
            self._running_until = age
        asked_at = None if age is None else max(0.0, age - since_asked)
        if not schedule.ready(model):
            # The model's first table is being made (see when_ready): an
            # explorer's polls, which need none, go on meanwhile.
            explored = (
                schedule.explorer_delay(
                    age=age, asked_at=asked_at, polls=self._polls, rng=self._rng
                )
                if self._explorer and age is not None and asked_at is not None
                else None
            )
            if explored is None:
                self._waiting_for = model
                return None
            delay = explored
        else:
            delay = schedule.next_delay(
                model=model,
                age=age,
                polls=self._polls,
                rng=self._rng,
                asked_at=asked_at,
                explorer=self._explorer,
                since_poll=since_poll,
            )
        self._polls += 1
        self._planned_from = asked_at  # for replanned_delay
        return delay

    def replanned_delay(
        self, task: TaskFacts, moved: AdaptiveSchedule, tables: frozenset[str | None]
    ) -> float | None:
        schedule = self._schedule
        record, created = task.record, task.created
        model = _model_of(record) or task.model
        seen = self._first_seen or task.first_seen
        planned_from = self._planned_from
        if (
            moved is not schedule
            or seen is None
            or planned_from is None
            or schedule.table_key(model) not in tables
            or not schedule.has_table(model)
        ):
            return None
        age = self._age(record, created)
        if age is None:
            return None
        age = max(age, seen[0] + self._pacer.loop_now() - seen[1])  # as next_delay reads it
        return schedule.next_delay(
            model=model,
            age=age,
            polls=max(0, self._polls - 1),
            rng=self._rng,
            asked_at=min(age, planned_from),
            explorer=self._explorer,
        )

    def finished(self, model: str | None) -> None:
        self._schedule.rebuild_if_due(model)

    def _age(self, record: RecordInfo | None, created: float | None) -> float | None:
        """The task's age now as its creation time says (None: not known yet)."""
        if created is not None:  # created here: the loop's clock says exactly how long ago
            return max(0.0, self._pacer.loop_now() - created)
        if record is not None and record.create_time is not None:
            return self._pacer.age(record.create_time.timestamp())
        return None

    def when_ready(self, callback: Callable[[bool], None]) -> None:
        self._pacer.when_ready(self._schedule, self._waiting_for, callback)


def _tell_made(callback: Callable[[bool], None]) -> None:
    """Tell a run waiting for a first table that the rebuild ended."""
    callback(False)


def _forget(walks: dict[AdaptiveSchedule, Any], schedule: AdaptiveSchedule, walk: object) -> None:
    """A walk ended: forget it (kept alone or first of a tuple), not another
    that took its place meanwhile."""
    entry = walks.get(schedule)
    if entry is walk or (isinstance(entry, tuple) and entry[0] is walk):
        del walks[schedule]


def _replan(run: Replannable, *, schedule: AdaptiveSchedule, tables: frozenset[str | None]) -> None:
    run.replan(schedule, tables)


def _model_of(record: RecordInfo | None) -> str | None:
    if record is None:
        return None
    model = record.params.get("model")
    return model if isinstance(model, str) else None


class _SlicedWalk(Generic[_T]):
    """Calls ``each`` on the items of ``items``, ``size`` per loop step from the
    next one, then ``done`` with the walk: work for thousands of runs (a big
    batch's) that must not stall the loop. :meth:`stop` ends it and gives
    back those left."""

    __slots__ = ("_done", "_each", "_items", "_size", "_step")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        items: Iterator[_T],
        size: int,
        each: Callable[[_T], object],
        done: Callable[[_SlicedWalk[_T]], object],
    ) -> None:
        self._items = items
        self._size = size
        self._each = each
        self._done = done
        self._step = loop.call_soon(self._slice, loop)

    def _slice(self, loop: asyncio.AbstractEventLoop) -> None:
        told = 0
        for item in itertools.islice(self._items, self._size):
            self._each(item)
            told += 1
        if told == self._size:
            self._step = loop.call_soon(self._slice, loop)
        else:
            self._done(self)

    def stop(self) -> Iterator[_T]:
        """End the walk (no step left): the items not reached yet."""
        self._step.cancel()
        return self._items


class Pacer:
    """Hands each poll run its plan and learns from finished records.

    :param default: the session's default policy.
    :param loop_clock: the event loop's clock (``loop.time``), read lazily.
    :param wall_clock: the wall clock (epoch seconds).
    :param rng: the jitter's random source (seed it to replay).
    """

    def __init__(
        self,
        default: AnyPolicy,
        *,
        loop_clock: Callable[[], float],
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.default = default
        adaptive = default if isinstance(default, AdaptivePolicy) else AdaptivePolicy()
        #: What the session has learned of each model's generation time.
        self.learner = adaptive.learner()
        # By identity: a policy's priors are a mapping, so policies do not hash;
        # the policy is kept beside its schedule so its id stays its own.
        # Each with the random source its plans draw from.
        self._schedules: dict[
            int, tuple[AdaptivePolicy, AdaptiveSchedule, random.Random]
        ] = {}
        self.rng = rng if rng is not None else adaptive.rng()
        self._loop_clock = loop_clock
        self._wall_clock = wall_clock
        self._anchor: tuple[float, float] | None = None
        with contextlib.suppress(RuntimeError):  # no loop yet: anchored on first use
            self.now()
        #: Seconds the server's clock is ahead of ours (from ``Date`` headers).
        self.skew = 0.0
        # The last Date header further off than _SKEW_BELIEVED (skew, wall
        # time read): believed only once a createTime bears it out (see age).
        self._far_skew: tuple[float, float] | None = None
        # Rebuilds stepping on the loop (see plan), by schedule.
        self._rebuilds: dict[AdaptiveSchedule, asyncio.Handle] = {}
        # Who waits for a schedule's first table (see when_ready), by schedule;
        # once it is made, they are told a slice per loop step (_rebuild_step).
        self._waiting: dict[AdaptiveSchedule, collections.deque[Callable[[bool], None]]] = {}
        # Those being told, a slice per step.
        self._telling: dict[AdaptiveSchedule, _SlicedWalk[Callable[[bool], None]]] = {}
        #: Set by the session: the polls waiting in its queue, planned again
        #: when a table they follow moves (see _replan_moved).
        self.waiting_polls: Callable[[], Iterable[Replannable]] | None = None
        # The revisions of each schedule's tables last acted on, and the
        # re-planning under way (the walk, the tables it plans again for).
        # (Weakly: a schedule let go of past _MAX_SCHEDULES takes its entry along.)
        self._revisions: weakref.WeakKeyDictionary[AdaptiveSchedule, dict[str | None, int]] = (
            weakref.WeakKeyDictionary()
        )
        self._replanning: dict[
            AdaptiveSchedule, tuple[_SlicedWalk[Replannable], frozenset[str | None]]
        ] = {}
        self._closed = False
        # Ordered: the oldest let go of in O(1) (popitem; a dict's
        # next(iter()) walks the deleted slots piling up at its front).
        self._learned_ids: collections.OrderedDict[str, None] = collections.OrderedDict()
        #: Whether :meth:`observe` learns anything: learning serves learned
        #: plans only, so a session polling on fixed schedules alone skips it
        #: (its callers too: it is read on every terminal record).
        self.learning = isinstance(default, AdaptivePolicy)

    def plan(self, policy: AnyPolicy | None) -> Plan:
        """A fresh plan for one run (``policy`` None: the session's default)."""
        chosen = self.default if policy is None else policy
        if isinstance(chosen, PollPolicy):
            return _FixedPlan(chosen)
        _, schedule, rng = self._entry_of(chosen)
        return _LearnedPlan(self, schedule, rng)

    def schedule_for(self, policy: AdaptivePolicy | None = None) -> AdaptiveSchedule:
        """The schedule the plans of ``policy`` ask (None: the session's
        default policy, a learned one), made if none is yet.

        :raises TypeError: for a policy that is not an AdaptivePolicy.
        """
        chosen = self.default if policy is None else policy
        if not isinstance(chosen, AdaptivePolicy):
            raise TypeError(f"only an AdaptivePolicy has a schedule, not {chosen!r}")
        return self._entry_of(chosen)[1]

    def _entry_of(
        self, chosen: AdaptivePolicy
    ) -> tuple[AdaptivePolicy, AdaptiveSchedule, random.Random]:
        """``chosen``'s schedule entry: the one kept for this very policy
        object, else one for a policy like it (see _schedule_like)."""
        return self._schedules.get(id(chosen)) or self._schedule_like(chosen)

    def _schedule_like(
        self, chosen: AdaptivePolicy
    ) -> tuple[AdaptivePolicy, AdaptiveSchedule, random.Random]:
        """The schedule of a policy equal to ``chosen`` but for its deadline and
        grace (which no table depends on), or a new one. A fresh
        ``AdaptivePolicy(timeout=...)`` per wait must not add a schedule (its
        own tables and rebuilds: 100 ms and 10 KB each) per wait.

        Its plans draw their jitter from the random source of ``chosen``'s
        ``seed`` (the session's own for its default policy): a policy passed
        to a wait is used as is, its seed included."""
        same = chosen.replace(timeout=None, not_found_grace=0.0)
        for entry in self._schedules.values():
            if entry[0].replace(timeout=None, not_found_grace=0.0) == same:
                return entry
        schedule = chosen.schedule(self.learner)
        # On the loop, a rebuild (20-150 ms of dynamic programs) runs one
        # solve per loop step, not inside the poll answer that found it due.
        schedule.on_rebuild_due = functools.partial(self._rebuild_soon, schedule)
        if len(self._schedules) >= _MAX_SCHEDULES:
            del self._schedules[next(iter(self._schedules))]
        rng = self.rng if chosen is self.default else chosen.rng()
        entry = self._schedules[id(chosen)] = (chosen, schedule, rng)
        self.learning = True
        return entry

    def _rebuild_soon(self, schedule: AdaptiveSchedule) -> None:
        if schedule in self._rebuilds or self._closed:
            return  # its steps are running (they take the new rebuild on), or closing
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop to step on: rebuild now
            while schedule.step():
                pass
            return
        self._rebuilds[schedule] = loop.call_soon(self._rebuild_step, loop, schedule)

    def _rebuild_step(self, loop: asyncio.AbstractEventLoop, schedule: AdaptiveSchedule) -> None:
        if schedule.step():
            self._rebuilds[schedule] = loop.call_soon(self._rebuild_step, loop, schedule)
        else:
            self._rebuilds.pop(schedule, None)
            waiting = self._waiting.pop(schedule, None)
            if waiting:
                # Thousands of runs of a big batch may wait (every id answered
                # while the table was made), told a slice per step from the
                # next (this one solved); closing tells the rest at once. A
                # walk still telling those of an earlier rebuild takes these on.
                telling = self._telling.pop(schedule, None)
                left = iter(waiting)
                if telling is not None:
                    left = itertools.chain(telling.stop(), left)
                self._telling[schedule] = _SlicedWalk(
                    loop,
                    left,
                    _TELL_SLICE,
                    _tell_made,
                    functools.partial(_forget, self._telling, schedule),
                )
            self._replan_moved(loop, schedule)

    def _replan_moved(self, loop: asyncio.AbstractEventLoop, schedule: AdaptiveSchedule) -> None:
        """After a rebuild: if tables moved (a prior found wrong), plan the
        polls of their tasks waiting in the queue again, a slice per loop
        step (a batch may hold 100,000): those planned on the old table would
        otherwise wait out gaps it chose (a probe at 40 s, then 140 s, for
        renders now known to take 60)."""
        moved = set(schedule.moves_since(self._revisions.setdefault(schedule, {})))
        if not moved or self.waiting_polls is None:
            return
        under_way = self._replanning.pop(schedule, None)
        if under_way is not None:  # start over, for those tables too
            under_way[0].stop()
            moved.update(under_way[1])
        tables = frozenset(moved)
        # Listed lazily, a slice per step too (100,000 at once took 27 ms).
        walk = _SlicedWalk(
            loop,
            iter(self.waiting_polls()),
            _REPLAN_SLICE,
            functools.partial(_replan, schedule=schedule, tables=tables),
            functools.partial(_forget, self._replanning, schedule),
        )
        self._replanning[schedule] = (walk, tables)

    def when_ready(
        self, schedule: AdaptiveSchedule, model: str | None, callback: Callable[[bool], None]
    ) -> None:
        """Call ``callback(False)`` once the rebuild ``schedule`` has under way
        ends (``model`` may have its first table then: until it does, the
        plans of its runs cannot say when to poll), or ``callback(True)`` if
        the session closes first."""
        if self._closed:
            callback(True)
        elif schedule.has_table(model):  # made meanwhile
            callback(False)
        else:
            self._waiting.setdefault(schedule, collections.deque()).append(callback)

    def close(self) -> None:
        """Stop the rebuilds in progress, and start none (the session is
        closing); runs waiting for a first table are told so."""
        self._closed = True
        rebuilds, self._rebuilds = self._rebuilds, {}
        for handle in rebuilds.values():
            handle.cancel()
        telling, self._telling = self._telling, {}
        waiting, self._waiting = self._waiting, {}
        left = [walk.stop() for walk in telling.values()]
        replanning, self._replanning = self._replanning, {}
        for walk, _ in replanning.values():
            walk.stop()
        for callbacks in [*left, *waiting.values()]:
            for callback in callbacks:
                callback(True)

    def loop_now(self) -> float:
        """The event loop's clock."""
        return self._loop_clock()

    def now(self) -> float:
        """The wall clock (epoch seconds) as the event loop's clock moves it."""
        loop_now = self._loop_clock()
        if self._anchor is None:
            self._anchor = (self._wall_clock(), loop_now)
        wall, loop_then = self._anchor
        return wall + (loop_now - loop_then)

    def age(self, created_at: float) -> float:
        """Seconds since ``created_at`` by the server's clock, clamped to [0, 1 day]."""
        now = self.now()
        age = now + self.skew - created_at
        if age < 0:
            if age < -60:
                far = self._far_skew
                if far is not None and now - far[1] < _FAR_SKEW_FRESH:
                    # A createTime in the future by about what a Date header
                    # far off said: our clock is off, not the header (a stale
                    # page's Date is in the past, and its tasks' ages are
                    # never negative): the server's clock, believed from now on.
                    corrected = now + far[0] - created_at
                    if 0 <= corrected < _MAX_AGE:
                        logger.info(
                            "our clock is %.0f s behind the server's (its Date header and"
                            " a createTime agree): task ages follow the server's clock",
                            far[0],
                        )
                        self.skew, self._far_skew = far[0], None
                        return corrected
                logger.debug("createTime %.0f s in the future: clock or zone skew", -age)
            return 0.0
        return min(age, _MAX_AGE)

    def server_date(self, epoch: float) -> None:
        """The server's ``Date`` (epoch seconds) of an answer just received.

        A skew past ``_SKEW_BELIEVED`` is a wrong header (a proxy's cached
        page, a broken clock), not the server's clock: it is ignored. Taken
        in, it aged every task by days (one day, clamped), kept them at that
        age for good and taught the learner renders that never happened.
        Unless the records bear it out: a server ahead of us by that much
        writes createTimes in our future, which no wrong header explains
        (see :meth:`age`); a server behind us cannot be told from a wrong
        header so, and ages stay on our clock (clamped to a day).
        """
        now = self.now()
        skew = epoch - now
        if abs(skew) > _SKEW_BELIEVED:
            logger.debug("Date header %.0f s off the local clock: ignored", skew)
            self._far_skew = (skew, now)  # unless a createTime bears it out (see age)
            return
        self._far_skew = None
        self.skew = skew if abs(skew) > _SKEW_NOISE else 0.0

    def observe(
        self, record: RecordInfo, plan: Plan | None = None, *, model: str | None = None
    ) -> None:
        """Learn from a terminal record (its duration and model), if it makes sense
        and a learned plan is (or was) in use.

        :param plan: the plan of the run that saw it, if any: the age at which
            it last saw the task running.
        :param model: the model the task was created with, if this session
            knows it: the record's ``params`` may not name it (the reference's
            own example does not), and the task's polls counted it as running
            under this one.
        """
        if not self.learning or record.create_time is None or record.complete_time is None:
            return
        seconds = (record.complete_time - record.create_time).total_seconds()
        # (Times are whole seconds: 0 is a render under a second, a test
        # server's, which the schedule must learn of like any other.)
        if not 0 <= seconds < _MAX_LEARNED or record.task_id in self._learned_ids:
            return
        learned = self._learned_ids
        learned[record.task_id] = None
        if len(learned) > _LEARNED_IDS:
            learned.popitem(last=False)
        failed = record.status is not TaskStatus.SUCCESS
        running_until, polls, fixed_polls = 0.0, 0, 0
        if plan is not None:
            # Not clamped to seconds: a task seen running at a later age than
            # the server's duration (clock skew) was counted by survived() up
            # to that age, and the learner must not count its start again.
            running_until = plan.running_until
            polls, fixed_polls = plan.spend(seconds)
        model = _model_of(record) or model
        self.learner.observe(
            model,
            seconds,
            failed=failed,
            running_until=running_until,
            polls=polls,
            fixed_polls=fixed_polls,
            announced=plan is not None and plan.announced,
        )
        if plan is not None:
            plan.finished(model)
