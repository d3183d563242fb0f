"""Pins on the learning poll schedule (``_schedule``) and how the pacer feeds
it (``_pacer``), found by mutation testing: argument checks that name what
they refuse, the rebase on successes a prior calls impossible (and its
bookkeeping through retracts and halving), the caps on delays, and the
learner's bookkeeping."""

from __future__ import annotations

import datetime
import itertools
import math
import random
from collections.abc import Callable

import pytest

from veo_async import RecordInfo, TaskStatus
from veo_async._pacer import Pacer
from veo_async._schedule import (
    _LOG_BIN,
    AdaptivePolicy,
    DurationLearner,
)

from .test_pacer import STEADY, first_poll_of_a_task_aged
from .test_schedule import _median_of, lognormal

# ---------------------------------------------------------------- argument checks


def test_max_gap_under_min_gap_is_refused_naming_both() -> None:
    """max_gap under min_gap is refused by the check that says so, not by
    the 2 s grid's (whose message speaks of a multiple of 2 s)."""
    with pytest.raises(ValueError, match=r"max_gap \(10\) must be >= min_gap \(20\)"):
        AdaptivePolicy(max_gap=10.0, min_gap=20.0)


def test_max_gap_of_exactly_600_s_is_accepted() -> None:
    """The documented bound is "at most 600 s": 600 itself is accepted,
    600.5 refused naming max_gap."""
    assert AdaptivePolicy(max_gap=600.0).max_gap == 600.0
    with pytest.raises(ValueError, match="max_gap must be at most 600 s"):
        AdaptivePolicy(max_gap=600.5)


def test_early_mass_of_one_half_is_refused() -> None:
    """early_mass must be under 0.5: 0.5 itself is refused, naming it."""
    with pytest.raises(ValueError, match=r"early_mass must be < 0\.5"):
        AdaptivePolicy(early_mass=0.5)
    assert AdaptivePolicy(early_mass=0.49).early_mass == 0.49


@pytest.mark.parametrize("seed", [True, False])
def test_a_bool_seed_is_refused(seed: bool) -> None:
    """A seed is an int or None: a bool (an int to Python) is refused, as
    every bool given for a number in the package is."""
    with pytest.raises(TypeError, match="seed must be an int or None"):
        AdaptivePolicy(seed=seed)


def test_a_zero_timeout_is_refused_as_a_float_too() -> None:
    """timeout must be > 0: 0.0 (a float, the checks' fast path) is refused
    as 0 (an int) is, and the message says "> 0"."""
    for timeout in (0, 0.0):
        with pytest.raises(ValueError, match="timeout must be > 0, not 0"):
            AdaptivePolicy(timeout=timeout)


def test_a_number_under_its_minimum_is_refused_saying_the_bound() -> None:
    """An inclusive bound reads ">=" in the message (min_gap at least 0.1)."""
    with pytest.raises(ValueError, match=r"min_gap must be >= 0\.1, not 0\.05"):
        AdaptivePolicy(min_gap=0.05)


def test_a_learner_memory_under_16_is_refused() -> None:
    """DurationLearner checks memory as AdaptivePolicy does (at least 16):
    a memory of 8 would halve the histograms every few finishes."""
    with pytest.raises(ValueError, match="memory must be >= 16"):
        DurationLearner(memory=8.0)
    with pytest.raises(ValueError, match="memory must be >= 16"):
        AdaptivePolicy(memory=8.0)


# ---------------------------------------------------------------- the rebase


def test_a_quick_failure_alone_does_not_rebase() -> None:
    """A failure in a second is an early failure, not the model's speed:
    alone (no task seen running past the floor to outweigh it) it still
    does not rebase the estimate."""
    learner = DurationLearner()
    learner.observe("veo3_fast", 1.0, failed=True)
    assert not learner.rebased("veo3_fast")
    assert learner.rebased_scale("veo3_fast") is None


def test_a_task_seen_past_the_floor_by_a_wrong_clock_is_taken_back() -> None:
    """A task seen "running at 40 s" (a createTime skewed) that finished at
    1 s was never running past the floor (27 s for veo3_fast): its retract
    takes that back too, and the quick success rebases the estimate."""
    learner = DurationLearner()
    learner.survived("veo3_fast", 0.0, 40.0)
    learner.observe("veo3_fast", 1.0, running_until=40.0)
    assert learner.rebased("veo3_fast")
    assert _median_of(learner, "veo3_fast") < 3.0


def test_the_rebased_median_is_the_geometric_mean_of_the_quick_successes() -> None:
    """Two successes at 4 s and 9 s: the rebased median is 6 s (their
    geometric mean), so rebased_scale is 6/150 against veo3_fast's prior."""
    learner = DurationLearner()
    learner.observe("veo3_fast", 4.0)
    learner.observe("veo3_fast", 9.0)
    assert learner.rebased_scale("veo3_fast") == pytest.approx(6.0 / 150.0)


def test_halving_keeps_the_rebased_median_and_the_balance_of_evidence() -> None:
    """forget() halves the quick successes, their log-seconds and the tasks
    seen running past the floor alike: the rebased median stays where it
    was (9 s) and the quick successes still outnumber the tasks past it."""
    learner = DurationLearner()
    learner.observe("veo3_fast", 9.0)
    learner.observe("veo3_fast", 9.0)
    learner.survived("veo3_fast", 0.0, 60.0)
    before = learner.rebased_scale("veo3_fast")
    assert before == pytest.approx(9.0 / 150.0)
    learner.forget("veo3_fast")
    assert learner.rebased("veo3_fast")
    assert learner.rebased_scale("veo3_fast") == pytest.approx(before)


def test_a_model_seen_running_but_not_finished_follows_every_models_quick_successes() -> None:
    """veo3 has a histogram of its own (a poll found one running) but no
    finish: it follows every model's quick successes like a model never
    seen (its own, empty of finishes, has nothing to say)."""
    learner = DurationLearner()
    learner.survived("veo3", 0.0, 0.5)
    learner.observe("veo3_fast", 1.0)
    assert learner.rebased("veo3")
    scale = learner.rebased_scale("veo3")
    assert scale is not None
    assert scale == pytest.approx(1.0 / 300.0)
    assert _median_of(learner, "veo3") < 3.0


# ---------------------------------------------------------------- delays


def test_an_explorer_first_planned_after_its_first_age_polls_at_once() -> None:
    """An explorer first planned at 3 s of age (no poll made yet) has its
    2 s poll overdue: it polls at once, not at 8 s (the 4 s poll is the one
    after a poll made at 3 s, not before any)."""
    schedule = AdaptivePolicy(jitter=0.0).schedule()
    rng = random.Random(0)
    delay = schedule.next_delay(model="veo3_fast", age=3.0, polls=0, rng=rng, explorer=True)
    assert delay == 0.0
    # After a poll made at 3 s (the 4 s one, jittered, as far as it can
    # tell), the next explorer age is 8 s.
    delay = schedule.next_delay(
        model="veo3_fast", age=3.0, polls=1, rng=rng, explorer=True, asked_at=3.0
    )
    assert delay == 5.0


def test_a_plan_not_made_at_an_answer_counts_min_gap_from_the_last_poll() -> None:
    """since_poll: a new wait of a task polled 50 s ago whose next poll is
    overdue polls at once (min_gap counts from the last poll, long past), not
    min_gap from now; 0.5 s after the poll, it waits out the rest of min_gap."""
    schedule = AdaptivePolicy(jitter=0.0, min_gap=2.0).schedule()
    rng = random.Random(0)
    overdue = schedule.next_delay(
        model="veo3_fast", age=200.0, polls=1, rng=rng, asked_at=150.0, since_poll=50.0
    )
    assert overdue == 0.0
    soon = schedule.next_delay(
        model="veo3_fast", age=200.0, polls=1, rng=rng, asked_at=150.0, since_poll=0.5
    )
    assert soon == pytest.approx(1.5)
    # Planned at an answer (no since_poll): min_gap from now.
    at_answer = schedule.next_delay(model="veo3_fast", age=200.0, polls=1, rng=rng, asked_at=150.0)
    assert at_answer == 2.0


# ---------------------------------------------------------------- the pacer's clamps


def _record(task_id: str, seconds: float, status: TaskStatus = TaskStatus.SUCCESS) -> RecordInfo:
    """A finished veo3 record of its own id that ended ``seconds`` after its creation."""
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    return RecordInfo(
        task_id,
        status,
        params={"model": "veo3"},
        create_time=start,
        complete_time=start + datetime.timedelta(seconds=seconds),
    )


@pytest.mark.parametrize(
    ("seconds", "learned"),
    [(-1.0, False), (0.0, True), (1.0, True), (6 * 3600.0 - 1, True), (6 * 3600.0, False)],
)
def test_durations_in_zero_to_six_hours_are_learned_and_no_others(
    seconds: float, learned: bool
) -> None:
    """A finished record teaches its duration if it lies in [0 s, 6 h): 0 s
    is a render under a second (whole-second times: a test server's), 6 h
    or more, or a negative one, is a clock gone wrong. Each record has its
    own id (the same id twice is learned once)."""
    pacer = Pacer(STEADY, loop_clock=lambda: 0.0)
    pacer.observe(_record(f"t{seconds}", seconds))
    assert pacer.learner.count("veo3") == int(learned)


def test_a_task_is_learned_once_however_often_it_is_seen_finished() -> None:
    """The same finished id observed three times counts once; another id counts too."""
    pacer = Pacer(STEADY, loop_clock=lambda: 0.0)
    for _ in range(3):
        pacer.observe(_record("same", 120.0))
    pacer.observe(_record("other", 120.0))
    assert pacer.learner.count("veo3") == 2


def test_an_explorer_delay_after_an_answer_is_never_under_min_gap() -> None:
    """explorer_delay (while the first table is made): after a poll sent at
    2 s answered at 3.5 s, the 4 s poll is half a second off, but a poll
    follows an answer by min_gap at least (a slow server is not asked again
    at once); before any poll, an overdue one goes now."""
    schedule = AdaptivePolicy(jitter=0.0, min_gap=2.0).schedule()
    rng = random.Random(0)
    assert schedule.explorer_delay(age=3.5, asked_at=2.0, polls=1, rng=rng) == 2.0
    assert schedule.explorer_delay(age=3.5, asked_at=0.0, polls=0, rng=rng) == 0.0


def test_the_ninth_odd_model_name_shares_the_pooled_table() -> None:
    """Eight names without priors get tables of their own, the ninth is
    polled by the pooled one (each table is solved again at every rebuild).
    (As on a loop, whose rebuilds are left unstepped here: each new name
    costs one solve.)"""
    schedule = AdaptivePolicy().schedule()
    rng = random.Random(0)
    schedule.next_delay(model="odd-0", age=10.0, polls=1, rng=rng)
    schedule.on_rebuild_due = lambda: None
    for n in range(1, 9):
        schedule.next_delay(model=f"odd-{n}", age=10.0, polls=1, rng=rng)
    assert schedule.table_key("odd-7") == "odd-7"
    assert schedule.table_key("odd-8") is None


def test_as_prior_is_never_narrower_than_the_learners_binning() -> None:
    """A thousand renders all of 150 s: as_prior's spread is held at 0.05
    (log-sd), not the smoothing kernel's width: a prior narrower than the
    data's binning would claim more than was learned."""
    learner = DurationLearner()
    for _ in range(1000):
        learner.observe("veo3_fast", 150.0)
    prior = learner.as_prior("veo3_fast")
    assert prior is not None
    assert prior.sigma == 0.05
    assert prior.median == pytest.approx(150.0, rel=0.02)


def test_learned_priors_include_models_without_a_documented_prior() -> None:
    """A model name with no prior of its own (a new model) that finished
    tasks is in learned_priors too, and a later session started from them
    plans it where this one's finished; names without a finish are not."""
    learner = DurationLearner()
    for seconds in (60.0, 62.0, 64.0):
        learner.observe("veo4_new", seconds)
    learner.survived("veo3", 0.0, 30.0)
    learned = learner.learned_priors()
    assert set(learned) == {"veo4_new"}
    assert learned["veo4_new"] == learner.as_prior("veo4_new")
    later = AdaptivePolicy(priors={**AdaptivePolicy().priors, **learned}).learner()
    assert _median_of(later, "veo4_new") == pytest.approx(learned["veo4_new"].median, rel=0.1)


def test_memory_lets_old_evidence_fade() -> None:
    """Past ``memory`` finishes a model's evidence is halved, so the
    estimate follows a service that changed: with memory 16, 100 renders of
    100 s then 30 of 300 s put the median near 300 s; with the default
    (4,096) the 100 older ones still rule."""
    medians = []
    for memory in (16.0, 4096.0):
        learner = DurationLearner(memory=memory)
        for seconds in [100.0] * 100 + [300.0] * 30:
            learner.observe("veo3", seconds)
        medians.append(_median_of(learner, "veo3"))
    assert medians[0] > 250.0
    assert medians[1] < 150.0


def test_a_task_polled_several_times_counts_once_in_the_mix_priced_for() -> None:
    """recent_tasks (the mix the shared price is set for) counts a task at
    its first poll only: seen running three times, then finished, it is one
    task, not four."""
    learner = DurationLearner()
    learner.survived("veo3", 0.0, 60.0)
    learner.survived("veo3", 60.0, 120.0)
    learner.survived("veo3", 120.0, 180.0)
    learner.observe("veo3", 200.0, running_until=180.0)
    assert learner.recent_tasks("veo3") == pytest.approx(1.0)
    assert learner.recent_tasks(None) == pytest.approx(1.0)


def test_a_far_date_header_is_not_believed_from_a_create_time_it_does_not_explain() -> None:
    """Our clock 20 minutes behind per a far Date header, and a createTime
    two hours in our future: the header does not explain it (the task would
    be in the server's future too), so the skew is not taken in and the age
    is 0, never negative; a createTime the header does explain is believed."""
    wall = [1e9]
    pacer = Pacer(STEADY, loop_clock=lambda: wall[0] - 1e9, wall_clock=lambda: wall[0])
    pacer.server_date(wall[0] + 1200.0)
    assert pacer.age(wall[0] + 7200.0) == 0.0
    assert pacer.skew == 0.0
    assert pacer.age(wall[0] + 1000.0) == pytest.approx(200.0)
    assert pacer.skew == pytest.approx(1200.0)


def test_a_creation_time_ahead_of_the_loop_clock_reads_as_age_0() -> None:
    """A task whose loop-clock creation time is ahead of the pacer's clock
    (a store's creation time read on another clock) is planned as a task of
    age 0, not refused for a negative age."""
    pacer = Pacer(STEADY, loop_clock=lambda: 0.0)
    plan = pacer.plan(None)
    delay = plan.next_delay(None, 5.0, "veo3")
    assert delay == first_poll_of_a_task_aged(0.0, "veo3")


def test_an_unseen_tasks_retry_is_never_under_min_gap() -> None:
    """unseen_delay jitters shorter only, and never below min_gap: the
    first retry of a bare id (back-off from min_gap) is min_gap exactly,
    however large the jitter."""
    schedule = AdaptivePolicy(jitter=0.4, min_gap=2.0).schedule()
    rng = random.Random(5)
    assert all(schedule.unseen_delay(1, rng) == 2.0 for _ in range(50))
    assert all(2.0 <= schedule.unseen_delay(2, rng) <= 4.0 for _ in range(50))


def test_a_task_seen_running_past_40_s_many_times_is_one_known_fate() -> None:
    """The fast-failure share counts a task seen running past the early span
    once, however many polls found it running there."""
    learner = DurationLearner()
    for since, age in ((0.0, 30.0), (30.0, 60.0), (60.0, 90.0), (90.0, 120.0)):
        learner.survived("veo3", since, age)
    weight, early = 20.0, 0.06
    assert learner.fast_failure_share() == pytest.approx(early * weight / (weight + 1))


def test_moves_since_reports_each_move_once() -> None:
    """moves_since(seen): a table seen for the first time has not moved; a
    move (a quick success rebases veo3_fast) is reported once, and ``seen``
    updated in place so that the next call reports nothing."""
    schedule = AdaptivePolicy(jitter=0.0).schedule()
    schedule.table("veo3_fast")
    seen: dict[str | None, int] = {}
    assert schedule.moves_since(seen) == []
    assert seen == {"veo3_fast": 0}
    schedule.learner.observe("veo3_fast", 1.0)
    schedule.table("veo3_fast")
    assert schedule.moves_since(seen) == ["veo3_fast"]
    assert seen == {"veo3_fast": 1}
    assert schedule.moves_since(seen) == []


@pytest.mark.parametrize("status", [TaskStatus.FAILED, TaskStatus.GENERATION_FAILED])
def test_a_failed_record_is_learned_as_a_failure(status: TaskStatus) -> None:
    """Both failed statuses are learned as failures (a fast one raises the
    fast-failure share); a success is not a failure."""
    pacer = Pacer(STEADY, loop_clock=lambda: 0.0)
    pacer.observe(_record("bad", 10.0, status))
    pacer.observe(_record("good", 120.0))
    assert pacer.learner.count("veo3") == 2
    assert pacer.learner.failures("veo3") == 1
    weight, early = STEADY.prior_weight, STEADY.early_mass
    assert pacer.learner.fast_failure_share() == pytest.approx((early * weight + 1) / (weight + 2))


def test_a_rebased_models_fast_failures_come_as_much_sooner() -> None:
    """Rebased on a success at 1 s (150x faster than veo3_fast's prior),
    the prior's fast-failure share moves 150x sooner too: next to nothing
    is left between 5 and 40 s (left there, that share alone held a test
    server's tasks to one poll at 34 s)."""
    learner = DurationLearner()
    learner.observe("veo3_fast", 1.0)
    masses = learner.masses("veo3_fast")
    lo, hi = int(math.log(5.0) / _LOG_BIN), int(math.log(40.0) / _LOG_BIN)
    assert sum(masses[lo:hi]) < 0.01


def test_rebuild_every_rebuilds_after_that_many_observations() -> None:
    """rebuild_every=1: one more observation rebuilds the table, however
    much evidence it was built on; by default (20,000) a table built on 100
    finishes is kept until the evidence grows by half."""
    for every, rebuilt in ((1, True), (20_000, False)):
        schedule = AdaptivePolicy(rebuild_every=every).schedule()
        for seconds in lognormal(random.Random(2), 100, 150.0, 0.3):
            schedule.learner.observe("veo3_fast", seconds)
        table = schedule.table("veo3_fast")
        schedule.learner.observe("veo3_fast", 150.0)
        assert (schedule.table("veo3_fast") is not table) is rebuilt


@pytest.mark.parametrize(
    "call",
    [
        lambda learner: learner.observe(5, 60.0),
        lambda learner: learner.created(5),
    ],
)
def test_observe_and_created_refuse_a_model_that_is_not_a_name(
    call: Callable[[DurationLearner], None],
) -> None:
    """A model that is not a str (nor None) is refused naming it, not
    learned under an int key."""
    learner = DurationLearner()
    with pytest.raises(TypeError, match="model must be a str or None"):
        call(learner)
    assert learner.count(None) == 0


def test_before_the_first_poll_asked_at_changes_nothing() -> None:
    """With no poll made yet (polls=0, as when a waiting first poll is
    planned again), nothing was learned of the task since its creation: the
    plan goes from its age now, whatever ``asked_at`` says (the age it was
    first planned at). A veo3 task first planned at 0 s and planned again at
    35 s is polled at once (it may be done already), not at 40 s."""
    schedule = AdaptivePolicy(jitter=0.0).schedule()
    for age in (20.0, 35.0, 60.0, 150.0):
        plain = schedule.next_delay(model="veo3", age=age, polls=0, rng=random.Random(0))
        for asked_at in (0.0, age / 2):
            delay = schedule.next_delay(
                model="veo3", age=age, polls=0, rng=random.Random(0), asked_at=asked_at
            )
            assert delay == plain, (age, asked_at)
    assert schedule.next_delay(model="veo3", age=35.0, polls=0, rng=random.Random(0)) == 0.0


def test_asked_at_is_ignored_when_the_age_is_unknown() -> None:
    """age=None (creation time unknown) follows the fresh schedule by poll
    count; ``asked_at`` is ignored then, as documented: neither moving the
    plan nor refused for being past the age the schedule assumes."""
    schedule = AdaptivePolicy(jitter=0.0).schedule()
    for polls in (1, 2, 3):
        plain = schedule.next_delay(model="veo3", age=None, polls=polls, rng=random.Random(0))
        for asked_at in (0.0, 1e6):
            delay = schedule.next_delay(
                model="veo3", age=None, polls=polls, rng=random.Random(0), asked_at=asked_at
            )
            assert delay == plain


def test_a_policys_learner_takes_its_prior_weight_and_memory() -> None:
    """AdaptivePolicy.learner() hands the policy's prior_weight and memory
    to the learner: prior_weight 0 leaves the fast-failure share to the
    data alone (one task seen running past 40 s: 0), and memory 16 lets
    old evidence fade as a DurationLearner(memory=16) does."""
    learner = AdaptivePolicy(prior_weight=0.0).learner()
    learner.survived("veo3", 0.0, 60.0)
    assert learner.fast_failure_share() == 0.0
    medians = []
    for learner in (AdaptivePolicy(memory=16.0).learner(), DurationLearner(memory=16.0)):
        for seconds in [100.0] * 100 + [300.0] * 30:
            learner.observe("veo3", seconds)
        medians.append(_median_of(learner, "veo3"))
    assert medians[0] == medians[1]
    assert medians[0] > 250.0


def test_a_policy_without_timeout_is_accepted() -> None:
    """timeout=None (no overall deadline) is a valid AdaptivePolicy."""
    assert AdaptivePolicy(timeout=None).timeout is None


def test_the_plan_honours_min_gap_so_polls_land_where_planned() -> None:
    """With min_gap 10 s and a generous budget (budget_interval 4 s), the
    program plans no gap under min_gap: the polls of a task followed from
    creation are the table's planned ones (a plan with 2 s gaps, floored to
    min_gap when followed, drifts off the grid it was solved on)."""
    schedule = AdaptivePolicy(
        jitter=0.0, min_gap=10.0, max_gap=30.0, budget_interval=4.0, explorers=0
    ).schedule()
    fresh = schedule.table("veo3_fast").fresh
    assert min(b - a for a, b in itertools.pairwise(fresh)) >= 10.0
    rng, age, ages = random.Random(0), 0.0, []
    for polls in range(10):
        age += schedule.next_delay(model="veo3_fast", age=age, polls=polls, rng=rng)
        ages.append(age)
    assert ages == pytest.approx(fresh[:10])
