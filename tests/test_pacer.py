"""Polls that know the task: age-aware, learned plans wired into the session."""

from __future__ import annotations

import asyncio
import datetime
import gc
import itertools
import math
import random
from collections.abc import Callable

import pytest

from veo_async import (
    AdaptivePolicy,
    PollPolicy,
    RecordInfo,
    ServerError,
    SessionClosedError,
    TaskStatus,
    Transport,
    VeoSession,
    WaitTimeoutError,
)
from veo_async._http import ApiKey, HttpRequest
from veo_async._limits import RequestBudget
from veo_async._pacer import _REPLAN_SLICE as REPLAN_SLICE
from veo_async._pacer import _TELL_SLICE as TELL_SLICE
from veo_async._pacer import Pacer, Plan, TaskFacts
from veo_async._protocol import RawResponse, parse_http_date
from veo_async._requester import Requester
from veo_async._schedule import AdaptiveSchedule
from veo_async.events import Event, RequestStarted, RetryScheduled
from veo_async.testing import FakeKie, Fault, Quirks, TaskScript

from ._steps import ProgramSteps
from .conftest import API_KEY, on_time

#: Without jitter, so that the expected poll times can be computed exactly. No explorer (see
#: test_schedule's explorer tests): the first task follows the tables too.
STEADY = AdaptivePolicy(jitter=0.0, explorers=0)


def first_poll_of_a_task_aged(age: float, model: str = "veo3_fast") -> float:
    """What the (not yet trained) schedule says for a task of ``age`` seconds."""
    return STEADY.schedule().next_delay(model=model, age=age, polls=0, rng=random.Random(0))


async def first_table(plan: Plan, model: str) -> None:
    """Make the first table of the plan's schedule (in loop steps, like a rebuild)."""
    loop = asyncio.get_running_loop()
    # A minute old: past the explorer's ages (whose polls need no table).
    assert plan.next_delay(None, loop.time() - 60.0, model) is None  # not made yet
    told: list[bool] = []
    made = asyncio.Event()

    def tell(closing: bool) -> None:
        told.append(closing)
        made.set()

    plan.when_ready(tell)
    await made.wait()
    assert told == [False]


async def solves_per_step_until(told: list[bool], solves: ProgramSteps) -> list[int]:
    """Chunks of dynamic program run in each loop step until ``told`` is not empty."""
    per_step = []
    while not told:
        solves.count = 0
        await asyncio.sleep(0)
        per_step.append(solves.count)
    return per_step


def assert_due_as_planned(
    asked_at: float, asked_again: tuple[float, float], delay: float, planned: float
) -> None:
    """A delay read between the clock's two readings ``asked_again`` puts the
    poll at ``asked_at + planned``, the time planned when first asked. (Both
    read the loop's clock, which moves with the real time the loop works.)"""
    due = asked_at + planned
    assert asked_again[0] - 1e-6 <= due - delay <= asked_again[1] + 1e-6, (due, delay)


def poll_times(events: list[Event], task_id: str) -> list[float]:
    return [e.at for e in events if isinstance(e, RequestStarted) and e.task_id == task_id]


async def test_an_id_handed_in_late_is_polled_like_an_old_task() -> None:
    """A task 4 minutes old when its wait begins is polled like a 4-minute-old task:
    at once (it may be done), and not like a new one (whose first poll waits)."""
    kie = FakeKie(api_key=API_KEY)
    kie.add_task(TaskScript("veo_old", complete_after=600, params={"model": "veo3_fast"}))
    events: list[Event] = []
    loop = asyncio.get_running_loop()
    async with VeoSession(
        API_KEY, transport=kie.transport(), policy=STEADY, on_event=events.append
    ) as veo:
        await asyncio.sleep(240)  # the task was created 4 minutes before the wait
        started = loop.time()
        await veo.task("veo_old").wait(timeout=900)
    first = poll_times(events, "veo_old")[0] - started
    # The record (and so the age) is only known after the first poll, which goes
    # at once; the second poll follows the schedule of a 4-minute-old task.
    second = poll_times(events, "veo_old")[1] - started
    assert on_time([first], [0.0]), first
    # The schedule has learned from the first poll that the task was still
    # running at 240 s; either of the two solutions it mixes around its budget.
    schedule = STEADY.schedule()
    schedule.learner.survived("veo3_fast", 0.0, 240.0)
    table = schedule.table("veo3_fast")
    expected = [plan[120] * 2.0 - 240.0 for plan in (table.next_index, table.costly_index)]
    # createTime has whole seconds, and so has the Date header that tells the
    # session the (virtual) server's clock: the age it sees is 239-241 s.
    assert any(second == pytest.approx(option, abs=2.1) for option in expected), (second, expected)
    assert second < first_poll_of_a_task_aged(0.0)  # a fresh task would wait longer


async def test_slow_answers_do_not_stretch_the_gaps_past_max_gap() -> None:
    """Each poll of an old task answered 8 s late: the next poll is planned
    from the poll's time, not its answer's, so polls still come within
    max_gap of each other (they came max_gap + 8 s apart, 34-37 s)."""
    kie = FakeKie(api_key=API_KEY)
    slow = tuple(Fault.slow(8.0) for _ in range(20))
    kie.add_task(
        TaskScript("veo_old", complete_after=900, params={"model": "veo3_fast"}, faults=slow)
    )
    events: list[Event] = []
    async with VeoSession(
        API_KEY, transport=kie.transport(), policy=STEADY, on_event=events.append
    ) as veo:
        await asyncio.sleep(600)  # handed in 10 minutes old: past the median
        await veo.task("veo_old").wait(timeout=900)
    polls = poll_times(events, "veo_old")
    gaps = [b - a for a, b in itertools.pairwise(polls)]
    assert len(gaps) >= 5
    assert max(gaps) <= STEADY.max_gap + 0.01, gaps
    assert min(gaps) >= 8.0  # (one poll at a time: each waits for the answer before)


async def test_the_session_learns_each_models_generation_time() -> None:
    """Finished records teach the session: its learner counts them per model."""
    kie = FakeKie(api_key=API_KEY)
    ids = [f"veo_{n}" for n in range(5)]
    for task_id in ids:
        kie.add_task(TaskScript(task_id, complete_after=100, params={"model": "veo3"}))
    seen: dict[str, int] = {}

    async with VeoSession(API_KEY, transport=kie.transport()) as veo:
        await veo.wait_many(ids)
        seen = {model: veo.learner.count(model) for model in ("veo3", "veo3_fast")}
    assert seen == {"veo3": 5, "veo3_fast": 0}


async def test_the_session_counts_each_models_tasks_for_the_shared_price() -> None:
    """The session's waits tell the learner each task once (3 veo3, 2 veo3_fast,
    some polled several times, some done at their first poll): the weights of
    the price of a request shared by the models."""
    kie = FakeKie(api_key=API_KEY)
    scripts = [("veo_q0", "veo3", 400), ("veo_q1", "veo3", 30), ("veo_q2", "veo3", 500)]
    scripts += [("veo_f0", "veo3_fast", 200), ("veo_f1", "veo3_fast", 20)]
    for task_id, model, after in scripts:
        kie.add_task(TaskScript(task_id, complete_after=after, params={"model": model}))
    async with VeoSession(API_KEY, transport=kie.transport()) as veo:
        await asyncio.sleep(60)  # two of them are done before their first poll
        await veo.wait_many([task_id for task_id, _, _ in scripts])
        counts = {model: veo.learner.tasks(model) for model in ("veo3", "veo3_fast", None)}
    assert counts == {"veo3": 3, "veo3_fast": 2, None: 5}


async def test_an_explicit_poll_policy_is_a_fixed_schedule() -> None:
    """A PollPolicy passed to a wait polls at its own delays, whatever the task's age."""
    kie = FakeKie(api_key=API_KEY)
    kie.add_task(TaskScript("veo_a", complete_after=10, params={"model": "veo3_fast"}))
    events: list[Event] = []
    loop = asyncio.get_running_loop()
    fixed = PollPolicy(first_poll=0, interval=4, factor=1, max_interval=4, jitter=0)
    async with VeoSession(API_KEY, transport=kie.transport(), on_event=events.append) as veo:
        started = loop.time()
        await veo.task("veo_a").wait(policy=fixed)
    times = [t - started for t in poll_times(events, "veo_a")]
    assert on_time(times, [0.0, 4.0, 8.0, 12.0]), times


def test_ages_are_clamped_and_skew_is_applied_beyond_the_date_resolution() -> None:
    """Age = server now - createTime: a future createTime is 0, past a day is a day;
    the Date header's skew counts only beyond its one-second resolution."""
    pacer = Pacer(STEADY, loop_clock=lambda: 50.0, wall_clock=lambda: 200_000.0)
    assert pacer.age(200_000.0 + 3600) == 0.0
    assert pacer.age(0.0) == 86_400.0
    assert pacer.age(199_900.0) == pytest.approx(100.0)
    pacer.server_date(200_001.5)  # within the header's rounding: ignored
    assert pacer.age(199_900.0) == pytest.approx(100.0)
    pacer.server_date(200_030.0)  # the server's clock is 30 s ahead
    assert pacer.age(199_900.0) == pytest.approx(130.0)


async def test_a_create_time_in_the_future_does_not_restart_the_schedule() -> None:
    """A createTime an hour ahead (a skew the Date header does not explain)
    reads as age 0 at every poll; the plan adds the time since it first saw
    the task, so its polls move on through the schedule and, past twice the
    documented median, come within max_gap, instead of starting over at each
    poll (every gap the fresh schedule's first one, its early probe)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    pacer = Pacer(STEADY, loop_clock=loop.time, wall_clock=lambda: 1e9 + loop.time() - start)
    await first_table(pacer.plan(STEADY), "veo3_fast")
    plan = pacer.plan(STEADY)
    ahead = datetime.datetime.fromtimestamp(1e9 + 3600, datetime.timezone.utc)
    record = RecordInfo(
        "t", TaskStatus.GENERATING, params={"model": "veo3_fast"}, create_time=ahead
    )
    gaps = []
    for _ in range(16):
        delay = plan.next_delay(record, None, None, running=True)
        assert delay is not None
        gaps.append(delay)
        await asyncio.sleep(delay)
    assert sum(gaps) > 2 * 150  # past twice veo3_fast's documented median
    assert max(gaps[-4:]) <= STEADY.max_gap
    # The second poll follows the first (where the plan goes from the first
    # poll's age: either of the two solutions it mixes), not a fresh start
    # (its first poll again).
    table = STEADY.schedule().table("veo3_fast")
    i = round(gaps[0] / 2.0)
    assert {table.next_index[0], table.costly_index[0]} & {i}
    seconds = gaps[0] + gaps[1]
    plans = (table.next_index, table.costly_index)
    assert any(abs(seconds - 2.0 * plan[i]) <= 0.5 for plan in plans)


async def test_a_create_time_in_the_future_does_not_restart_the_schedule_at_a_new_wait() -> None:
    """The age a task was first planned at is the task's, not one wait's: after a
    first wait, a second one a minute later plans the task as a minute older
    instead of from age 0 again (no poll before its last look). Kie's UTC+8
    strings read as UTC are 8 h ahead."""
    loop = asyncio.get_running_loop()
    kie = FakeKie(api_key=API_KEY)
    kie.add_task(TaskScript("veo_fut", complete_after=3600, params={"model": "veo3_fast"}))
    events: list[Event] = []
    async with VeoSession(
        API_KEY,
        transport=kie.transport(),
        policy=STEADY,
        on_event=events.append,
        timezone=datetime.timezone.utc,
    ) as veo:
        start = loop.time()
        task = veo.task("veo_fut")
        with pytest.raises(WaitTimeoutError):
            await task.wait(timeout=2)
        await asyncio.sleep(60)
        with pytest.raises(WaitTimeoutError):
            await task.wait(timeout=30)
    polls = [e.at - start for e in events if isinstance(e, RequestStarted)]
    # The second wait goes on from the first one's last poll (1.9 s): the poll
    # the schedule puts after it, the task 62 s old (not from age 0 again,
    # whose first poll would come after the last look), min_gap counted from
    # that poll, 60 s before (not from the new wait's plan).
    then = STEADY.schedule().next_delay(
        model="veo3_fast",
        age=62.0,
        polls=1,
        rng=random.Random(0),
        asked_at=1.9,
        since_poll=60.1,
    )
    assert then < 30.0
    assert on_time(polls[:3], [0.0, 1.9, 62.0 + then]), polls


def _finished(
    seconds: float | None, status: TaskStatus = TaskStatus.SUCCESS, task_id: str = "t"
) -> RecordInfo:
    """A veo3 record that ended ``seconds`` after its creation (None: no completeTime)."""
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    end = None if seconds is None else start + datetime.timedelta(seconds=seconds)
    return RecordInfo(
        task_id, status, params={"model": "veo3"}, create_time=start, complete_time=end
    )


def _seen_running(at: float) -> tuple[Pacer, Plan]:
    """A pacer, and its plan of a veo3 task created at 0 s and seen running at ``at`` s."""
    now = [0.0]
    pacer = Pacer(STEADY, loop_clock=lambda: now[0])
    plan = pacer.plan(None)
    plan.next_delay(None, 0.0, "veo3")
    now[0] = at
    plan.next_delay(None, 0.0, "veo3", running=True)
    return pacer, plan


def test_only_sensible_durations_are_learned() -> None:
    """Records without both times, or with a duration outside [0 s, 6 h), teach
    nothing. (Each has its own id: with one id for all, only the first
    sensible one was learned, and the rest were skipped as seen already
    whatever their duration.)"""
    pacer = Pacer(STEADY, loop_clock=lambda: 0.0)
    for n, seconds in enumerate((None, -5.0, 0.0, 7 * 3600.0, 120.0)):
        pacer.observe(_finished(seconds, task_id=f"t{n}"))
    assert pacer.learner.count("veo3") == 2


async def test_fixed_schedules_alone_learn_nothing_until_a_learned_one_is_used() -> None:
    """Learning serves learned plans: a session on PollPolicy skips it, and starts
    once a wait asks for an AdaptivePolicy."""
    kie = FakeKie(api_key=API_KEY)
    for task_id in ("veo_a", "veo_b"):
        kie.add_task(TaskScript(task_id, complete_after=100, params={"model": "veo3"}))
    fixed = PollPolicy(interval=5, max_interval=5)
    async with VeoSession(API_KEY, transport=kie.transport(), policy=fixed) as veo:
        await veo.task("veo_a").wait()
        assert veo.learner.count("veo3") == 0
        await veo.task("veo_b").wait(policy=STEADY)
        assert veo.learner.count("veo3") == 1


async def test_polls_that_find_a_task_running_teach_the_session() -> None:
    """Each poll that finds a task still running is evidence of its model's
    generation time (a survival estimate): learned before the task finishes."""
    kie = FakeKie(api_key=API_KEY)
    kie.add_task(TaskScript("veo_a", complete_after=400, params={"model": "veo3_fast"}))
    async with VeoSession(API_KEY, transport=kie.transport(), policy=STEADY) as veo:
        waiter = asyncio.create_task(veo.task("veo_a").wait(timeout=900))
        await asyncio.sleep(300)
        assert veo.learner.count("veo3_fast") == 0
        running = veo.learner.evidence("veo3_fast")
        assert running >= 2
        await waiter
        assert veo.learner.count("veo3_fast") == 1
        assert veo.learner.evidence("veo3_fast") > running


def test_a_learned_plan_reports_its_spend_only_for_a_task_followed_from_creation() -> None:
    """The spend ledger's entry: the requests of a run that followed its task from
    creation, beside fixed polling's (one per budget interval begun); none for a
    task first planned when older than an interval, nor for a fixed plan."""
    now = [0.0]
    pacer = Pacer(STEADY, loop_clock=lambda: now[0])
    followed = pacer.plan(None)
    for now[0] in (0.0, 60.0, 90.0):
        followed.next_delay(None, 0.0, "veo3", running=now[0] > 0)
    assert followed.spend(95.0) == (3, 4)
    late = pacer.plan(None)
    late.next_delay(None, -45.0, "veo3")  # created 45 s before its wait began
    assert late.spend(95.0) == (0, 0)
    fixed = pacer.plan(PollPolicy())
    fixed.next_delay(None, 0.0, "veo3")
    assert fixed.spend(95.0) == (0, 0)


def test_a_bare_ids_first_look_is_not_in_the_spend_ledger() -> None:
    """An id handed in at its creation is looked at once, before its age is
    known: no schedule chose that look. Counted, it read as a request over
    fixed polling's for every such task, and the ledger thinned every task's
    polls (15-25 % more lag than the same tasks created by the session)."""
    now = [0.0]
    pacer = Pacer(STEADY, loop_clock=lambda: now[0])
    bare = pacer.plan(None)
    assert bare.next_delay(None, None, None) == 0.0  # a bare id: asked at once
    for now[0] in (0.3, 60.0, 90.0):  # its record told its age: followed from creation
        bare.next_delay(None, 0.0, "veo3", running=True)
    assert bare.spend(95.0) == (3, 4)


def test_running_at_an_age_past_six_hours_teaches_nothing() -> None:
    """A createTime hours off (UTC read as UTC+8) makes a task "seen running
    at 8 h": taught, the tables rebuilt while it ran thinned every other
    task's polls until its finish took it back. Past 6 h it is not taught."""
    now = [0.0]
    pacer = Pacer(STEADY, loop_clock=lambda: now[0])
    skewed = pacer.plan(None)
    for now[0] in (0.0, 30.0, 60.0):
        skewed.next_delay(None, -8 * 3600.0, "veo3", running=True)
    assert pacer.learner.evidence("veo3") == 0
    young = pacer.plan(None)
    for now[0] in (60.0, 90.0):
        young.next_delay(None, 0.0, "veo3", running=True)
    assert pacer.learner.evidence("veo3") == 2  # its two running intervals


def test_a_task_seen_running_past_its_records_duration_is_learned_once() -> None:
    """Clock skew: a task seen running at 45 s (our clock) whose record says it
    failed 38 s after its creation was counted as past the early span then; its
    record does not count it a second time (as a fast failure)."""
    pacer, plan = _seen_running(45.0)
    pacer.observe(_finished(38.0, TaskStatus.FAILED), plan)
    weight = STEADY.prior_weight
    assert pacer.learner.fast_failure_share() == pytest.approx(
        STEADY.early_mass * weight / (weight + 1)
    )


def test_a_task_created_here_is_told_to_the_learner_once_at_its_first_plan() -> None:
    """A task this session created (its creation time known) is told to the
    learner's turn check when first planned, once, whatever its later plans
    and runs; an id handed in (no creation time) is not."""
    pacer, created = _seen_running(60.0)
    again = pacer.plan(None)  # a later wait: a new run of the same task
    again.next_delay(None, 0.0, "veo3", first_seen=created.first_seen)
    handed_in = pacer.plan(None)
    handed_in.next_delay(None, None, None)
    extended = pacer.plan(None)  # an extend: created here, its model still unknown
    extended.next_delay(None, 0.0, None)
    assert pacer.learner.creations == 1
    assert created.announced
    assert again.announced
    assert not handed_in.announced
    assert not extended.announced
    assert not pacer.plan(PollPolicy()).announced


async def test_the_session_keeps_the_spend_ledger_of_its_waits() -> None:
    """Every task a session follows from its creation enters the spend ledger with
    the requests its wait made after the look at the bare id (made before its
    age was known, chosen by no schedule): 300 tasks give a reading, close to
    those requests over fixed polling's (the ledger weighs by the estimate,
    hence not exact)."""
    kie = FakeKie(api_key=API_KEY)
    rng = random.Random(7)
    durations = {f"veo_{n}": round(rng.lognormvariate(5.0, 0.3)) for n in range(300)}
    for task_id, after in durations.items():
        kie.add_task(TaskScript(task_id, complete_after=after, params={"model": "veo3_fast"}))
    events: list[Event] = []
    async with VeoSession(
        API_KEY, transport=kie.transport(), policy=STEADY, on_event=events.append
    ) as veo:
        assert veo.learner.spend_ratio() is None
        await veo.wait_many(list(durations))
        ratio = veo.learner.spend_ratio()
    # (each id's first look, at once, made before its age was known: left out)
    polls = sum(len(poll_times(events, task_id)) - 1 for task_id in durations)
    fixed = sum(max(1, math.ceil(after / 30)) for after in durations.values())
    assert ratio is not None
    assert ratio == pytest.approx(polls / fixed, rel=0.05)


async def test_a_session_rebuilds_its_schedule_one_solve_per_loop_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On the loop, a rebuild found due by a poll's next delay runs one chunk
    of a dynamic program per loop step (a rebuild takes 20-150 ms: done inside
    one poll answer it stalled the loop that long, repeatedly, in big
    batches); close() stops it."""
    solves = ProgramSteps(monkeypatch)  # resumes of the dynamic programs
    loop = asyncio.get_running_loop()
    pacer = Pacer(AdaptivePolicy(), loop_clock=loop.time, rng=random.Random(1))
    plan = pacer.plan(None)
    await first_table(plan, "veo3_fast")
    for k in range(400):
        pacer.learner.observe("veo3_fast", 100.0 + k % 90)
    solves.count = 0
    pacer.plan(None).next_delay(None, loop.time() - 120.0, "veo3_fast")
    assert solves.count == 0  # due, but not done inside the poll's answer
    per_step = []
    for _ in range(200):
        solves.count = 0
        await asyncio.sleep(0)
        per_step.append(solves.count)
    assert max(per_step) == 1
    assert sum(per_step) > 5
    assert per_step[-1] == 0  # finished
    # A rebuild under way when the session closes is stopped.
    for k in range(900):
        pacer.learner.observe("veo3_fast", 100.0 + k % 90)
    pacer.plan(None).next_delay(None, loop.time() - 120.0, "veo3_fast")
    pacer.close()
    solves.count = 0
    for _ in range(20):
        await asyncio.sleep(0)
    assert solves.count == 0
    # Nor does one start once closed (a poll answered during the teardown).
    for k in range(3000):
        pacer.learner.observe("veo3_fast", 100.0 + k % 90)
    pacer.plan(None).next_delay(None, loop.time() - 120.0, "veo3_fast")
    for _ in range(20):
        await asyncio.sleep(0)
    assert solves.count == 0


async def test_the_first_table_is_made_in_loop_steps_and_plans_as_if_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A session's first table (10-150 ms of dynamic programs, once per
    session, at the first poll that needs it) is made a chunk per loop step;
    the runs that need it meanwhile get, once it is made, the delays it
    would have given at once (the same table, from the same evidence)."""
    solves = ProgramSteps(monkeypatch)
    loop = asyncio.get_running_loop()
    pacer = Pacer(STEADY, loop_clock=loop.time, rng=random.Random(1))
    asked_at = loop.time()
    plans = [pacer.plan(None) for _ in range(3)]
    solves.count = 0
    assert all(plan.next_delay(None, asked_at, "veo3") is None for plan in plans)
    assert solves.count <= 1  # at most the first chunk within the poll's answer
    told: list[bool] = []
    for plan in plans:
        plan.when_ready(told.append)
    per_step = await solves_per_step_until(told, solves)
    assert max(per_step) == 1
    assert len(per_step) > 5
    assert told == [False, False, False]
    asked_again = loop.time()
    delays = [plan.next_delay(None, asked_at, "veo3") for plan in plans]
    answered = loop.time()
    offline = STEADY.schedule(pacer.learner)
    assert offline.has_table("veo3") is False
    expected = offline.next_delay(model="veo3", age=0.0, polls=0, rng=random.Random(0))
    assert expected == first_poll_of_a_task_aged(0.0, "veo3")
    for delay in delays:  # the same due time as if planned when first asked
        assert delay is not None
        assert_due_as_planned(asked_at, (asked_again, answered), delay, expected)


async def test_runs_waiting_for_the_first_table_end_when_the_session_closes() -> None:
    """Closing the session while the first table is being made ends the runs
    waiting for it (SessionClosedError), and any later one at once."""
    loop = asyncio.get_running_loop()
    pacer = Pacer(STEADY, loop_clock=loop.time, rng=random.Random(2))
    plan = pacer.plan(None)
    assert plan.next_delay(None, loop.time(), "veo3") is None
    told: list[bool] = []
    plan.when_ready(told.append)
    pacer.close()
    assert told == [True]
    plan.when_ready(told.append)
    assert told == [True, True]


async def poll_ages_of_a_created_task(waited_after: float) -> list[float]:
    """The ages at which a veo3_fast task this session created (rendering for
    150 s) is polled, its wait begun ``waited_after`` seconds after the create."""
    kie = FakeKie(api_key=API_KEY)
    events: list[Event] = []
    loop = asyncio.get_running_loop()
    policy = STEADY.replace(seed=7)
    async with VeoSession(
        API_KEY, transport=kie.transport(), policy=policy, on_event=events.append
    ) as veo:
        kie.script_creates({"complete_after": 150})
        task = await veo.generate("a cat", model="veo3_fast")
        created = loop.time()
        await asyncio.sleep(waited_after)
        await task.wait(timeout=3600)
    return [at - created for at in poll_times(events, task.task_id)]


@pytest.mark.parametrize("waited_after", [10.0, 20.0, 30.0])
async def test_a_created_task_is_polled_by_its_age_whenever_its_wait_began(
    waited_after: float,
) -> None:
    """A task this session created, waited on only ``waited_after`` seconds
    later, is polled at the same ages as one waited on at once (the fresh
    schedule's early probe included), not as if just polled when the wait began."""
    at_once = await poll_ages_of_a_created_task(0.0)
    # (The virtual clock carries the real time the loop works: a loaded machine adds some.)
    assert await poll_ages_of_a_created_task(waited_after) == pytest.approx(at_once, abs=0.3)
    assert at_once[0] > 30.0


async def test_a_created_task_waits_for_the_first_table_then_polls_on_plan() -> None:
    """A fresh session's first created task: its first poll goes where the
    (untrained) table puts it, though the table was made in loop steps; a
    session closed before that ends the wait with SessionClosedError."""
    kie = FakeKie(api_key=API_KEY)
    events: list[Event] = []
    loop = asyncio.get_running_loop()
    async with VeoSession(
        API_KEY, transport=kie.transport(), policy=STEADY, on_event=events.append
    ) as veo:
        task = await veo.generate("a cat", model="veo3")
        created = loop.time()
        await task.wait(timeout=3600)
    first = poll_times(events, task.task_id)[0] - created
    # (The virtual clock carries the real time the loop works: a loaded machine adds some.)
    assert first == pytest.approx(first_poll_of_a_task_aged(0.0, "veo3"), abs=0.3)
    async with VeoSession(API_KEY, transport=kie.transport(), policy=STEADY) as veo:
        task = await veo.generate("a dog", model="veo3")
        waiting = asyncio.create_task(task.wait(timeout=3600))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert not waiting.done()
    with pytest.raises(SessionClosedError):
        await waiting


async def test_a_retry_planned_while_the_first_table_is_made_is_reported_when_planned() -> None:
    """A bare id's first poll (at once, no table needed) fails: its retry
    needs the first table, so it is planned, and reported (RetryScheduled
    with its delay), once the table is made; the wait then succeeds."""
    kie = FakeKie(api_key=API_KEY)
    kie.add_task(TaskScript("veo_retry", complete_after=0.0, params={"model": "veo3"}))
    kie.inject(Fault.server_error())
    events: list[Event] = []
    async with VeoSession(
        API_KEY, transport=kie.transport(), policy=STEADY, on_event=events.append
    ) as veo:
        record = await veo.task("veo_retry").wait(timeout=600)
    assert record.status is TaskStatus.SUCCESS
    retries = [e for e in events if isinstance(e, RetryScheduled)]
    assert len(retries) == 1
    assert retries[0].task_id == "veo_retry"
    assert isinstance(retries[0].error, ServerError)
    assert 0 < retries[0].delay < 60
    assert len(poll_times(events, "veo_retry")) == 2


async def test_runs_waiting_for_the_first_table_are_told_a_slice_per_loop_step() -> None:
    """Thousands of runs may wait for the first table (every id of a big
    batch answered meanwhile): they are planned a slice per loop step, not
    all in one; a close meanwhile tells the rest that the session closed."""
    loop = asyncio.get_running_loop()
    pacer = Pacer(STEADY, loop_clock=loop.time, rng=random.Random(3))
    told: list[bool] = []
    plans = [pacer.plan(None) for _ in range(3 * TELL_SLICE)]
    for plan in plans:
        assert plan.next_delay(None, loop.time(), "veo3_lite") is None
        plan.when_ready(told.append)
    per_step: list[int] = []
    while len(told) < TELL_SLICE + 1:
        before = len(told)
        await asyncio.sleep(0)
        per_step.append(len(told) - before)
    assert max(per_step) == TELL_SLICE
    assert told == [False] * len(told)
    pacer.close()
    assert len(told) == len(plans)
    assert told.count(True) == len(plans) - told.count(False) > 0


async def test_a_models_first_table_is_made_in_steps_as_offline_makes_it_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A model seen after the session's first table gets its own in loop steps
    too (a rebuild with it in), not a solve inside the poll's answer; its runs
    are then planned as an offline schedule, which makes it at once, plans."""
    solves = ProgramSteps(monkeypatch)
    loop = asyncio.get_running_loop()
    pacer = Pacer(STEADY, loop_clock=loop.time, rng=random.Random(4))
    await first_table(pacer.plan(None), "veo3_fast")
    offline = STEADY.schedule()
    offline.next_delay(model="veo3_fast", age=0.0, polls=0, rng=random.Random(0))
    asked_at = loop.time()
    plan = pacer.plan(None)
    solves.count = 0
    assert plan.next_delay(None, asked_at, "veo3") is None
    assert solves.count <= 1
    told: list[bool] = []
    plan.when_ready(told.append)
    per_step = await solves_per_step_until(told, solves)
    assert told == [False]
    assert max(per_step) == 1
    asked_again = loop.time()
    delay = plan.next_delay(None, asked_at, "veo3")
    answered = loop.time()
    expected = offline.next_delay(model="veo3", age=0.0, polls=0, rng=random.Random(0))
    assert delay is not None
    assert_due_as_planned(asked_at, (asked_again, answered), delay, expected)


def test_a_date_header_far_off_is_not_taken_for_the_servers_clock() -> None:
    """A Date header days off (a proxy's stale page) is ignored; one some
    seconds off is the server's clock. Taken in, it aged every task by a day
    and taught the learner renders that never happened."""
    pacer = Pacer(STEADY, loop_clock=lambda: 0.0, wall_clock=lambda: 1e9)
    pacer.server_date(1e9 + 2 * 86400)
    assert pacer.skew == 0.0
    pacer.server_date(1e9 + 30)
    assert pacer.skew == pytest.approx(30.0)
    pacer.server_date(1e9 - 2 * 86400)
    assert pacer.skew == pytest.approx(30.0)


def test_a_far_date_header_borne_out_by_a_create_time_in_the_future_is_believed() -> None:
    """Our clock 20 minutes behind the server's: its Date header alone is
    taken for a wrong one, but a createTime as far in our future bears it
    out (no stale page explains that): ages follow the server's clock from
    then on (an id handed in 4 minutes after its creation was planned as a
    new task). A far header not borne out, or gone stale, or followed by a
    near one, changes nothing."""
    wall = [1e9]
    pacer = Pacer(STEADY, loop_clock=lambda: wall[0] - 1e9, wall_clock=lambda: wall[0])
    server_ahead = 1200.0
    pacer.server_date(wall[0] + server_ahead)
    assert pacer.skew == 0.0
    assert pacer.age(wall[0] - 100.0) == pytest.approx(100.0)  # not in our future: no proof
    assert pacer.skew == 0.0
    created = wall[0] + server_ahead - 240.0  # 4 minutes old, on the server's clock
    assert pacer.age(created) == pytest.approx(240.0)
    assert pacer.skew == pytest.approx(server_ahead)
    wall[0] += 30.0
    assert pacer.age(created) == pytest.approx(270.0)

    stale = Pacer(STEADY, loop_clock=lambda: wall[0] - 1e9, wall_clock=lambda: wall[0])
    stale.server_date(wall[0] + server_ahead)
    wall[0] += 700.0  # past the candidate's freshness
    assert stale.age(wall[0] + server_ahead - 240.0) == 0.0
    assert stale.skew == 0.0

    cleared = Pacer(STEADY, loop_clock=lambda: wall[0] - 1e9, wall_clock=lambda: wall[0])
    cleared.server_date(wall[0] + server_ahead)
    cleared.server_date(wall[0] + 30.0)  # a near header since: that is the server's clock
    assert cleared.age(wall[0] + server_ahead - 240.0) == 0.0
    assert cleared.skew == pytest.approx(30.0)


def test_equal_policies_share_one_schedule() -> None:
    """A fresh AdaptivePolicy per wait, equal but for its deadline or grace,
    plans on the schedule of the first: one more schedule per wait (its own
    tables and rebuilds) cost 100 ms and 10 KB each, without bound."""
    pacer = Pacer(STEADY, loop_clock=lambda: 0.0)
    plans = [
        pacer.plan(AdaptivePolicy(jitter=0.0, timeout=float(60 + n), not_found_grace=n))
        for n in range(50)
    ]
    assert len({id(plan._schedule) for plan in plans}) == 1  # type: ignore[attr-defined]
    other = pacer.plan(AdaptivePolicy(jitter=0.0, budget_interval=60.0))
    assert other._schedule is not plans[0]._schedule  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "fault",
    [Fault.server_error(), Fault.reset(), Fault.record_null()],
    ids=["500", "reset", "null"],
)
async def test_a_bare_id_whose_first_poll_found_nothing_is_retried_backing_off(
    fault: Fault,
) -> None:
    """A handed-in id whose first polls fail (a 500, a reset) or find no record
    yet: retried after min_gap, then doubling (2, 4, 8 s), never after a fresh
    task's first delay (36 s or more: the task may be done already)."""
    kie = FakeKie(api_key=API_KEY)
    kie.add_task(TaskScript("veo_old", complete_after=0.0))
    kie.inject(fault, 3)
    events: list[Event] = []
    async with VeoSession(API_KEY, transport=kie.transport(), on_event=events.append) as veo:
        record = await veo.task("veo_old").wait(timeout=600)
    assert record.status is TaskStatus.SUCCESS
    times = poll_times(events, "veo_old")
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert len(gaps) == 3
    for gap, planned in zip(gaps, (2.0, 4.0, 8.0), strict=True):
        # (Up to a second over: the virtual clock is the real one plus the
        # idle waits skipped, and the first tables' build, tens of ms of
        # CPU, runs meanwhile; on a loaded machine it read 2.11 s. A fresh
        # task's first delay would be 36 s or more.)
        assert planned * 0.9 <= gap <= planned + 1.0
    await kie.close()


def test_unseen_delays_back_off_to_max_gap_and_stay_within_it() -> None:
    """The retry delays of a task no poll has seen: min_gap doubling, capped at
    max_gap, jittered shorter only; seeded, the same every time."""
    schedule = AdaptivePolicy(jitter=0.1).schedule()
    delays = [schedule.unseen_delay(polls, random.Random(polls)) for polls in range(1, 40)]
    assert delays == [schedule.unseen_delay(p, random.Random(p)) for p in range(1, 40)]
    assert all(2.0 * 0.9 <= d <= 30.0 for d in delays)
    assert delays[0] <= 2.0 < delays[1] <= 4.0 < delays[2] <= 8.0
    assert min(delays[5:]) >= 30.0 - 0.8


def test_a_policy_passed_to_a_wait_draws_from_its_own_seed() -> None:
    """A seeded AdaptivePolicy passed to a wait draws its jitter from its own
    seed, whatever the session's default ("a policy passed to a wait is used
    as is": it drew from the session's random source); the default's plans
    draw from the default's seed."""

    def first_delays(default: AdaptivePolicy, policy: AdaptivePolicy | None) -> list[float]:
        pacer = Pacer(default, loop_clock=lambda: 0.0)
        delays = []
        for _ in range(20):
            delay = pacer.plan(policy).next_delay(None, 0.0, "veo3")  # created now
            assert delay is not None
            delays.append(delay)
        return delays

    seeded = first_delays(AdaptivePolicy(seed=1), AdaptivePolicy(seed=7))
    assert seeded == first_delays(AdaptivePolicy(seed=2), AdaptivePolicy(seed=7))
    assert seeded == first_delays(AdaptivePolicy(seed=7), None)
    assert first_delays(AdaptivePolicy(seed=1), None) != first_delays(AdaptivePolicy(seed=2), None)


async def test_polls_planned_on_a_table_that_moved_are_planned_again() -> None:
    """A service far faster than documented (veo3 renders of 60 s; the prior
    says 300): a task probed at 40 s then waits for the prior's next poll, at
    an age near 140 s. Once enough finishes moved the table (about 180 s in,
    with a task created every 2 s), the polls of the tasks planned on the old
    one are planned again: those still waiting are polled then, not 86 s
    after their finish, and the polls brought forward are no extra ones."""
    kie = FakeKie(api_key=API_KEY)
    events: list[Event] = []
    loop = asyncio.get_running_loop()
    created: dict[str, float] = {}
    async with VeoSession(
        API_KEY, transport=kie.transport(), policy=STEADY, on_event=events.append
    ) as veo:
        waits = []
        for n in range(90):
            task_id = f"veo_fast_{n}"
            kie.add_task(TaskScript(task_id, complete_after=60, params={"model": "veo3"}))
            created[task_id] = loop.time()
            waits.append(asyncio.ensure_future(veo.task(task_id).wait(timeout=900)))
            await asyncio.sleep(2.0)
        await asyncio.gather(*waits)
        assert veo.learner.count("veo3") == 90
    lags = [poll_times(events, task_id)[-1] - at - 60 for task_id, at in created.items()]
    # The first 16 or so had their poll near 140 s before anything was learned.
    # Those created from 64 s on: polled when the table moved (at most 56 s
    # after the finish), or planned on the moved table; without planning
    # again, 74-86 s after.
    assert max(lags[32:]) < 65, [round(lag) for lag in lags]
    # The first poll (at once: a bare id's age is unknown), the probe, those after.
    assert max(len(poll_times(events, task_id)) for task_id in created) <= 6


class _Waiting:
    """A waiting poll that records each time it is asked to plan again."""

    def __init__(self, asked: list[frozenset[str | None]]) -> None:
        self.asked = asked

    def replan(self, moved: AdaptiveSchedule, tables: frozenset[str | None]) -> None:
        self.asked.append(tables)


async def moved_table(pacer: Pacer) -> None:
    """Teach ``pacer`` veo3 renders of 100 s (its prior says 300) and let the
    rebuild that moves the table run, in loop steps."""
    loop = asyncio.get_running_loop()
    plan = pacer.plan(None)
    await first_table(plan, "veo3")
    for seconds in range(90, 130):
        pacer.learner.observe("veo3", float(seconds))
    plan.next_delay(None, loop.time(), "veo3")  # finds the rebuild due: in steps
    await asyncio.sleep(0)


async def test_waiting_polls_are_planned_again_a_slice_per_loop_step() -> None:
    """When a table moves, the session's waiting polls are asked to plan again,
    a slice per loop step (a batch may hold 100,000), each once, told which
    tables moved; closing the session meanwhile stops it (no step left)."""
    loop = asyncio.get_running_loop()
    for close_early in (False, True):
        pacer = Pacer(STEADY, loop_clock=loop.time, rng=random.Random(4))
        asked: list[frozenset[str | None]] = []
        polls = [_Waiting(asked) for _ in range(2 * REPLAN_SLICE + 7)]
        pacer.waiting_polls = lambda polls=polls: list(polls)  # type: ignore[misc]
        await moved_table(pacer)
        per_step = []
        for _ in range(400):  # the rebuild's steps, then the slices
            before = len(asked)
            await asyncio.sleep(0)
            per_step.append(len(asked) - before)
            if asked and close_early:
                pacer.close()
        if close_early:
            assert len(asked) == REPLAN_SLICE  # one slice, then closed
        else:
            assert len(asked) == len(polls)
            assert [n for n in per_step if n] == [REPLAN_SLICE, REPLAN_SLICE, 7]
        assert set(asked) == {frozenset({"veo3"})}


async def test_a_poll_planned_again_on_the_same_table_stays_where_it_was() -> None:
    """Planned again on the table it was planned on, at the same moment, a
    poll comes out where it was, whatever the run (one at the task's
    creation, or a later wait's first run of a task created 24-57 s before):
    a walk moves no poll its table did not move."""
    loop = asyncio.get_running_loop()
    pacer = Pacer(STEADY, loop_clock=loop.time, rng=random.Random(4))
    await first_table(pacer.plan(None), "veo3")
    schedule = pacer.schedule_for()
    with pytest.raises(TypeError, match="AdaptivePolicy"):
        pacer.schedule_for(PollPolicy())  # type: ignore[arg-type]
    tables = frozenset({"veo3"})
    for gap in (0, 24, 30, 36, 44, 50, 57):
        created = loop.time()
        first = pacer.plan(None)
        first.next_delay(None, created, "veo3")
        await asyncio.sleep(gap)
        later = pacer.plan(None)  # a later wait's run, not polled yet
        planned = later.next_delay(None, created, "veo3", first_seen=first.first_seen)
        again = later.replanned_delay(
            TaskFacts(None, created, "veo3", first.first_seen), schedule, tables
        )
        assert planned is not None
        assert again == pytest.approx(planned, abs=0.5), gap  # (jitter: 0.02 x, at most 0.8 s)
        other = pacer.plan(PollPolicy())
        facts = TaskFacts(None, created, "veo3", None)
        assert other.replanned_delay(facts, schedule, tables) is None  # never planned again


async def steps_until(done: Callable[[], bool], most: int = 10_000) -> int:
    """Loop steps until ``done()`` (at most ``most``): how many it took."""
    for step in range(most):
        if done():
            return step
        await asyncio.sleep(0)
    raise AssertionError(f"not done after {most} loop steps")


async def test_runs_told_of_two_first_tables_at_once_are_each_told_once_on_close() -> None:
    """Runs of one model told a slice per step that its table is made, when
    another model's first table is made meanwhile: the walk under way takes
    the new runs on (it was replaced, and close() missed its runs: told
    False after the close, never True). Closing then tells every run not
    told yet that the session closed, each exactly once, and nothing after."""
    loop = asyncio.get_running_loop()
    pacer = Pacer(STEADY, loop_clock=loop.time, rng=random.Random(3))
    told: dict[int, list[bool]] = {}

    def waiter(n: int, model: str) -> None:
        plan = pacer.plan(None)
        assert plan.next_delay(None, loop.time(), model) is None
        plan.when_ready(lambda closing: told.setdefault(n, []).append(closing))

    for n in range(300 * TELL_SLICE):
        waiter(n, "veo3")
    await steps_until(lambda: bool(told))
    waiter(-1, "veo3_fast")  # a second model's first table: another rebuild
    await steps_until(lambda: pacer.schedule_for().has_table("veo3_fast"))
    await asyncio.sleep(0)
    assert len(told) < 300 * TELL_SLICE  # the close comes while runs wait
    pacer.close()
    closed = {n: list(values) for n, values in told.items()}
    for _ in range(50):
        await asyncio.sleep(0)
    assert told == closed  # nothing told after the close
    assert len(told) == 300 * TELL_SLICE + 1
    assert all(len(values) == 1 for values in told.values())
    assert True in {values[0] for values in told.values()}


# ---------------------------------------------------------------- what is learned, once


async def test_a_finished_task_seen_again_and_again_is_learned_once() -> None:
    """One finished task waited on by handle after handle (each let go) and in
    batches teaches its generation time once, not at every look: 50 looks at
    one old render counted 50 renders, and the schedule followed it."""
    kie = FakeKie(api_key=API_KEY)
    kie.add_task(TaskScript("veo_done", complete_after=30, params={"model": "veo3"}))
    async with VeoSession(API_KEY, transport=kie.transport(), policy=STEADY) as veo:
        await asyncio.sleep(3600)
        for _ in range(5):
            await veo.task("veo_done").wait()
            gc.collect()  # the handle is let go of: the next look makes a new one
        for _ in range(3):
            await veo.wait_many(["veo_done"])
            gc.collect()
        assert sum(r.task_id == "veo_done" for r in kie.requests) >= 8  # each look asked
        assert veo.learner.count("veo3") == 1


async def test_a_created_task_is_learned_under_its_model_when_its_record_names_none() -> None:
    """Tasks this session created with ``model="veo3"`` whose records name no
    model (``paramJson`` unreadable, or without the key, as the reference's
    example) are learned as veo3's: their polls counted them running as
    veo3's, and their finishes went to the pooled estimate (veo3 learned
    only that its tasks run long)."""
    kie = FakeKie(api_key=API_KEY)
    odd = Quirks(invalid_param_json=True)
    kie.script_creates(*({"complete_after": 60, "quirks": odd} for _ in range(3)))
    async with VeoSession(API_KEY, transport=kie.transport(), policy=STEADY) as veo:
        tasks = [await veo.generate("a cat", model="veo3") for _ in range(3)]
        records = await veo.wait_many([task.task_id for task in tasks])
        assert all("model" not in record.params for record in records)
        assert veo.learner.count("veo3") == 3


async def test_an_extend_knows_and_is_learned_as_the_model_it_names() -> None:
    """An extend created with ``model="quality"`` knows its model from the
    start (as a generate does): it is planned on that model's prior, and its
    finish is learned as that model's."""
    kie = FakeKie(api_key=API_KEY)
    kie.add_task(TaskScript("veo_base", complete_after=30, params={"model": "veo3"}))
    async with VeoSession(API_KEY, transport=kie.transport(), policy=STEADY) as veo:
        base = await veo.task("veo_base").wait()
        extended = await veo.task(base.task_id).extend("and then it rains", model="quality")
        assert extended.model == "quality"
        await extended.wait(timeout=7200)
        assert veo.learner.count("quality") == 1


class _DateFromSecondAnswer:
    """A Transport whose first answer has no ``Date`` header (a proxy's page
    would not) and whose later ones do."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.answers = 0

    async def send(self, request: HttpRequest) -> RawResponse:
        raw = await self.inner.send(request)
        self.answers += 1
        headers = {k: v for k, v in raw.headers.items() if k.lower() != "date"}
        if self.answers > 1:
            headers["Date"] = "Wed, 02 Dec 2026 07:00:00 GMT"
        return RawResponse(raw.status, headers, raw.body)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_an_answer_without_a_date_header_does_not_hold_back_the_next_ones() -> None:
    """The server's clock is read from the next answer that has a ``Date``:
    one without (read a minute apart otherwise) used to count as the read."""
    kie = FakeKie(api_key=API_KEY)
    kie.add_task("veo_a")
    dates: list[float] = []
    requester = Requester(
        _DateFromSecondAnswer(kie.transport()),
        ApiKey(API_KEY),
        RequestBudget(4),
        on_server_date=dates.append,
    )
    try:
        await requester.record_info("veo_a")
        assert dates == []
        await requester.record_info("veo_a")
        assert dates == [parse_http_date("Wed, 02 Dec 2026 07:00:00 GMT")]
    finally:
        await requester.aclose()
        await kie.close()
