"""The learning poll schedule: purity, seeding, priors, learning, age, caps, errors, simulation."""

from __future__ import annotations

import itertools
import math
import random
from typing import Any

import attrs
import pytest

import veo_async
from veo_async._schedule import (
    _LOG_BIN,
    _LOG_BINS,
    _TURN_SHIFT,
    DEFAULT_PRIORS,
    AdaptivePolicy,
    AdaptiveSchedule,
    DurationLearner,
    DurationPrior,
    PooledPrior,
    _Curve,
    _expected_requests,
    _grid_distribution,
    _late_share,
    _log_quantiles,
    _pricing,
    _with_fast_failures,
    optimal_polls,
)

from ._steps import ProgramSteps

POLICY = AdaptivePolicy()


def lognormal(rng: random.Random, n: int, median: float, sigma: float) -> list[float]:
    """``n`` seeded log-normal generation times."""
    return [rng.lognormvariate(math.log(median), sigma) for _ in range(n)]


def fed(
    times: list[float], model: str = "veo3_fast", policy: AdaptivePolicy = POLICY
) -> AdaptiveSchedule:
    """A schedule whose learner has observed ``times`` for ``model``."""
    schedule = policy.schedule()
    for seconds in times:
        schedule.learner.observe(model, seconds)
    return schedule


def fresh_polls(
    schedule: AdaptiveSchedule, model: str | None, count: int, seed: int = 0
) -> list[float]:
    """Ages of the first ``count`` polls of a task followed from its creation."""
    rng, age, ages = random.Random(seed), 0.0, []
    for polls in range(count):
        age += schedule.next_delay(model=model, age=age, polls=polls, rng=rng)
        ages.append(age)
    return ages


def polls_until_seen(
    schedule: AdaptiveSchedule, seconds: float, rng: random.Random, model: str = "veo3_fast"
) -> tuple[int, float]:
    """Follow a task that ends at ``seconds`` from its creation: (polls, detection age)."""
    age, polls = 0.0, 0
    while age < seconds:
        age += schedule.next_delay(model=model, age=age, polls=polls, rng=rng)
        polls += 1
    return polls, age


# ---------------------------------------------------------------- purity and seeding


def test_same_observations_and_seed_give_same_delays() -> None:
    """Two schedules fed the same observations, asked with the same seed, agree exactly."""
    times = lognormal(random.Random(1), 300, 150, 0.3)
    assert fresh_polls(fed(times), "veo3_fast", 25, seed=7) == fresh_polls(
        fed(times), "veo3_fast", 25, seed=7
    )


def test_seed_only_changes_the_jitter_and_the_mixture() -> None:
    """Another seed moves each delay by at most the jitter from one of the two
    planned gaps (the cheaper or the costlier solution); with no jitter, every
    delay is exactly one of them."""
    ages = (0, 120, 200)
    schedule = fed(lognormal(random.Random(1), 300, 150, 0.3))
    table = schedule.table("veo3_fast")

    def planned(age: int) -> set[float]:
        i = round(age / 2.0)
        return {(plan[i] - i) * 2.0 for plan in (table.next_index, table.costly_index)}

    for seed in (1, 2, 3):
        rng = random.Random(seed)
        for age in ages:
            delay = schedule.next_delay(model="veo3_fast", age=age, polls=1, rng=rng)
            assert any(abs(delay - p) <= min(POLICY.jitter * p, 0.8) for p in planned(age))
    a = [schedule.next_delay(model="veo3_fast", age=t, polls=1, rng=random.Random(1)) for t in ages]
    b = [schedule.next_delay(model="veo3_fast", age=t, polls=1, rng=random.Random(2)) for t in ages]
    assert a != b
    plain = fed(lognormal(random.Random(1), 300, 150, 0.3), policy=POLICY.replace(jitter=0))
    plain_table = plain.table("veo3_fast")
    for seed in (1, 2):
        rng = random.Random(seed)
        for age in ages:
            delay = plain.next_delay(model="veo3_fast", age=age, polls=1, rng=rng)
            i = round(age / 2.0)
            assert delay in {
                (plan[i] - i) * 2.0 for plan in (plain_table.next_index, plain_table.costly_index)
            }


def test_policy_rng_is_seeded() -> None:
    """AdaptivePolicy(seed=...) gives a reproducible random source."""
    assert AdaptivePolicy(seed=3).rng().random() == AdaptivePolicy(seed=3).rng().random()


# ---------------------------------------------------------------- priors and learning


def test_prior_before_data() -> None:
    """With no data the documented priors decide: veo3's dense polls start after veo3_fast's."""
    schedule = POLICY.schedule()
    fast = schedule.table("veo3_fast").fresh
    quality = schedule.table("veo3").fresh
    first_dense = [
        next(a for a, b in itertools.pairwise(f) if b - a <= 30) for f in (fast, quality)
    ]
    assert first_dense[0] < DEFAULT_PRIORS["veo3_fast"].median < first_dense[1]
    assert first_dense[1] > 120


def test_few_observations_move_the_prior_only_part_way() -> None:
    """Three odd observations (~610 s for a 150 s model) move the schedule later,
    but only part of the way to where 300 such observations put it."""
    prior = POLICY.schedule().table("veo3_fast").fresh
    few = fed([600.0, 610.0, 620.0]).table("veo3_fast").fresh
    many = fed(lognormal(random.Random(4), 300, 610, 0.05)).table("veo3_fast").fresh
    assert prior[2] < few[2] < many[2] - 50


def test_learning_moves_the_schedule_to_the_data() -> None:
    """After 500 renders of ~400 s, veo3_fast's dense polls move from ~150 s to ~400 s."""
    learned = fed(lognormal(random.Random(2), 500, 400, 0.2))
    polls = fresh_polls(learned, "veo3_fast", 40)
    prior = fresh_polls(POLICY.schedule(), "veo3_fast", 40)
    assert sum(1 for a in prior if a < 250) >= 6
    assert sum(1 for a in polls if a < 250) <= 3
    assert sum(1 for a in polls if 330 <= a <= 480) >= 8


def test_unknown_model_starts_from_the_pooled_estimate_and_the_pooled_prior() -> None:
    """A model with no prior, not seen yet, starts from what every model looks
    like (the pooled estimate, as model=None) mixed with the wide pooled
    prior: its polls move out with what was learned of the others, but keep
    an early probe the pooled estimate alone has lost."""
    schedule = fed(lognormal(random.Random(3), 400, 300, 0.2), model="veo3")
    unknown, pooled = schedule.table("veo9").fresh, schedule.table(None).fresh
    untrained = POLICY.schedule().table("veo9").fresh
    assert unknown[2] > untrained[2] + 15
    assert unknown[0] < pooled[0] - 60


@pytest.mark.parametrize(
    ("alias", "model"), [("fast", "veo3_fast"), ("quality", "veo3"), ("lite", "veo3_lite")]
)
def test_the_extend_endpoints_model_names_start_from_their_models_priors(
    alias: str, model: str
) -> None:
    """The extend endpoint names the models fast, quality and lite (and an
    extend's record says so): each starts from the prior of the model it
    names, not from the wide pooled prior, and learns on its own."""
    schedule = POLICY.replace(jitter=0).schedule()
    assert schedule.table(alias).fresh == schedule.table(model).fresh
    assert schedule.table(alias).fresh != schedule.table("veo9").fresh
    fed_alias = fed(lognormal(random.Random(4), 300, 600, 0.2), model=alias)
    assert fed_alias.table(alias).fresh != fed_alias.table(model).fresh


def test_learner_tracks_a_bounded_number_of_models() -> None:
    """Names past max_models feed only the pooled estimate."""
    learner = DurationLearner(max_models=2)
    for name in ("a", "b", "c"):
        learner.observe(name, 100.0)
    learner.observe("a", 12.0, failed=True)
    assert [learner.count(m) for m in ("a", "b", "c", None)] == [2, 1, 0, 4]
    assert learner.failures("a") == 1


# ---------------------------------------------------------------- age


def test_age_not_wait_start_decides() -> None:
    """A 4-minute-old veo3_fast task is polled at once, then in its bulk's short gaps."""
    schedule = POLICY.replace(jitter=0).schedule()
    rng = random.Random(0)
    assert schedule.next_delay(model="veo3_fast", age=240.0, polls=0, rng=rng) == 0.0
    new = schedule.next_delay(model="veo3_fast", age=0.0, polls=0, rng=rng)
    old = schedule.next_delay(model="veo3_fast", age=240.0, polls=1, rng=rng)
    assert new > 30
    assert old <= POLICY.max_gap < new


def test_unknown_age_follows_the_fresh_schedule() -> None:
    """age=None is treated as a task followed since creation: the fresh schedule's gaps."""
    schedule = POLICY.replace(jitter=0).schedule()
    rng = random.Random(0)
    table = schedule.table("veo3")
    fresh = table.fresh
    # Either of the two solutions mixed around the budget may be chosen.
    first = schedule.next_delay(model="veo3", age=None, polls=0, rng=rng)
    assert first in {fresh[0], table.costly_index[0] * 2.0}
    i = round(fresh[1] / 2.0)
    planned = {fresh[2] - fresh[1], table.costly_index[i] * 2.0 - fresh[1]}
    assert schedule.next_delay(model="veo3", age=None, polls=2, rng=rng) in planned


# ---------------------------------------------------------------- caps


@pytest.mark.parametrize("model", ["veo3_fast", "veo3", "veo3_lite", None, "other"])
def test_gaps_respect_min_and_max(model: str | None) -> None:
    """Every gap is >= min_gap, and <= max_gap past the bulk (the 90th
    percentile, or twice the documented median if that comes first) and past
    the horizon."""
    schedule = POLICY.schedule()
    rng = random.Random(5)
    table = schedule.table(model)
    documented = POLICY.priors.get(model or "", PooledPrior).median
    bulk_age = min(
        2.0 * next(i for i, c in enumerate(table.done) if c >= 0.9), 2 * documented
    )
    low, high = 1 - POLICY.jitter, 1 + POLICY.jitter
    for age in [a * 3.7 for a in range(1200)]:
        delay = schedule.next_delay(model=model, age=age, polls=3, rng=rng)
        assert delay >= POLICY.min_gap
        if age >= bulk_age:
            assert delay <= POLICY.max_gap * high
    assert POLICY.min_gap * low <= POLICY.min_gap


@pytest.mark.parametrize("learned", [0, 200, 2000])
@pytest.mark.parametrize("model", ["veo3_fast", "veo3", None])
def test_past_the_bulk_gaps_grow_with_the_age_up_to_two_thirds_of_the_interval(
    model: str | None, learned: int
) -> None:
    """Past the learned bulk (the 90th percentile) a gap is at least a
    twentieth of the task's age, up to 20 s (two thirds of the budget
    interval), within the table's horizon: the tail is where the estimate
    is thinnest while it learns, and the program, expecting few tasks
    there, polled them every 4-14 s: a 300-task file's slowest renders
    cost 1.3-1.6x fixed polling's requests. Within max_gap still."""
    median = POLICY.priors.get(model or "", PooledPrior).median
    times = lognormal(random.Random(learned), learned, median, 0.3)
    schedule = fed(times, model or "veo3", POLICY.replace(jitter=0.0))
    table = schedule.table(model)
    bulk_age = 2.0 * next(i for i, c in enumerate(table.done) if c >= 0.9)
    horizon = 2.0 * (len(table.done) - 1) - POLICY.max_gap
    polls = fresh_polls(schedule, model, 120)
    tail = [(a, b - a) for a, b in itertools.pairwise(polls) if bulk_age <= a <= horizon]
    assert len(tail) >= 5
    for age, gap in tail:
        # Half a 2 s grid step of rounding.
        assert min(20.0, 0.05 * age) - 1.0 <= gap <= POLICY.max_gap, (age, gap)


def test_a_valley_between_two_kinds_of_render_is_not_polled_every_max_gap() -> None:
    """One model whose renders are of two kinds (half about 100 s, half about
    400 s): its median falls in the empty valley between them, and gaps are
    capped only past the bulk (the 90th percentile), so the valley is crossed
    in one long gap, and the requests saved go to the two modes; past the
    bulk, gaps stay within max_gap."""
    rng = random.Random(11)
    times = lognormal(rng, 1000, 100, 0.2) + lognormal(rng, 1000, 400, 0.2)
    schedule = fed(times, model="veo3")
    polls = fresh_polls(schedule, "veo3", 40)
    gaps = {a: b - a for a, b in itertools.pairwise(polls)}
    # (Capped from the median, it was polled at 224, 253 and 283 s.)
    assert sum(1 for a in polls if 190 <= a < 290) <= 1
    assert max(gaps.values()) > 2 * POLICY.max_gap
    bulk_end = sorted(times)[int(0.9 * len(times))]
    past_bulk = [gap for a, gap in gaps.items() if a >= bulk_end]
    assert past_bulk
    assert max(past_bulk) <= POLICY.max_gap * (1 + POLICY.jitter)
    # Both modes are polled closer than every max_gap.
    assert sum(1 for a in polls if 80 <= a <= 130) >= 3
    assert sum(1 for a in polls if 330 <= a <= 480) >= 8


def test_optimal_polls_lands_on_a_point_mass() -> None:
    """If every task ends at exactly 100 s, the optimum polls once, at 100 s."""
    done = [0.0] * 50 + [1.0] * 51
    done_time = [0.0] * 50 + [100.0] * 51
    best = optimal_polls(done, done_time, 2.0, 1.0)
    assert best[0] == 50


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"age": -1.0}, ValueError),
        ({"age": math.nan}, ValueError),
        ({"age": math.inf}, ValueError),
        ({"age": "5"}, TypeError),
        ({"polls": -1}, ValueError),
        ({"polls": True}, TypeError),
        ({"model": 3}, TypeError),
    ],
)
def test_next_delay_rejects_bad_input(kwargs: dict[str, object], error: type[Exception]) -> None:
    """Bad ages, poll counts and model names raise a clear error."""
    call: dict[str, object] = {"model": "veo3", "age": 10.0, "polls": 1, "rng": random.Random(0)}
    call.update(kwargs)
    with pytest.raises(error):
        POLICY.schedule().next_delay(**call)  # type: ignore[arg-type]


@pytest.mark.parametrize("seconds", [math.nan, -1.0, math.inf, "12"])
def test_observe_rejects_bad_seconds(seconds: object) -> None:
    """A NaN, negative, infinite or non-numeric generation time is refused."""
    with pytest.raises((ValueError, TypeError), match="seconds"):
        DurationLearner().observe("veo3", seconds)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("call", "error", "named"),
    [
        (lambda: DurationLearner(priors={"veo3": 1}), TypeError, "priors"),  # type: ignore[dict-item]
        (lambda: DurationLearner(priors={5: None}), TypeError, "priors"),  # type: ignore[dict-item]
        (lambda: DurationLearner(max_models=-1), ValueError, "max_models"),
        (lambda: DurationLearner(max_models=2.5), TypeError, "max_models"),  # type: ignore[arg-type]
        (lambda: DurationLearner().survived("veo3", 0, "5"), TypeError, "age"),  # type: ignore[arg-type]
        (lambda: DurationLearner().survived("veo3", "0", 5), TypeError, "since"),  # type: ignore[arg-type]
        (lambda: DurationLearner().survived("veo3", 0, True), TypeError, "age"),
        (lambda: DurationLearner().survived("veo3", -1, 5), ValueError, "since"),
        (lambda: DurationLearner().survived("veo3", 0, -5), ValueError, "age"),
        (lambda: DurationLearner().observe("veo3", 60, "no"), TypeError, "failed"),  # type: ignore[arg-type]
        (lambda: DurationLearner().as_prior(5), TypeError, "model"),  # type: ignore[arg-type]
        (
            lambda: POLICY.schedule().next_delay(model="veo3", age=0, polls=0, rng=None),  # type: ignore[arg-type]
            TypeError,
            "rng",
        ),
        (lambda: POLICY.schedule().unseen_delay(1, None), TypeError, "rng"),  # type: ignore[arg-type]
    ],
)
def test_the_learner_refuses_bad_arguments_naming_them(
    call: Any, error: type[Exception], named: str
) -> None:
    """DurationLearner's constructor and survived() check their arguments as
    observe() does: wrong types and values raise, naming the argument (they
    were taken and failed later, or were silently learned: age True as 1)."""
    with pytest.raises(error, match=named):
        call()


@pytest.mark.parametrize(
    "changes",
    [
        {"min_gap": 0},
        {"max_gap": 1.0, "min_gap": 2.0},
        {"jitter": 0.5},
        {"early_mass": math.nan},
        {"timeout": -1},
        {"rebuild_every": 0},
        {"priors": {"veo3": (300, 0.3)}},
    ],
)
def test_policy_rejects_bad_fields(changes: dict[str, object]) -> None:
    """Invalid AdaptivePolicy fields raise before any use."""
    with pytest.raises((ValueError, TypeError)):
        POLICY.replace(**changes)


@pytest.mark.parametrize(
    ("max_gap", "min_gap"), [(3.0, 3.0), (5.0, 5.0), (7.0, 6.5), (1.5, 0.5)]
)
def test_gaps_the_grid_cannot_honour_are_refused(max_gap: float, min_gap: float) -> None:
    """Polls are planned on a 2 s grid: a max_gap and min_gap with no
    multiple of 2 s between them are refused, naming both (they gave gaps
    longer than max_gap); the nearest settings that can be honoured are
    accepted, and keep their gaps."""
    with pytest.raises(ValueError, match="multiple of 2 s between them"):
        POLICY.replace(max_gap=max_gap, min_gap=min_gap)
    policy = POLICY.replace(max_gap=4.0, min_gap=3.0, jitter=0.0)
    schedule, rng = policy.schedule(), random.Random(1)
    age, gaps = 600.0, []  # past the bulk (twice veo3's documented median)
    for polls in range(1, 50):
        delay = schedule.next_delay(model="veo3", age=age, polls=polls, rng=rng)
        gaps.append(delay)
        age += delay
    assert min(gaps) >= 3.0
    assert max(gaps) <= 4.0


def test_the_schedule_is_public() -> None:
    """AdaptiveSchedule is a public name: the type of AdaptivePolicy.schedule()."""
    assert isinstance(POLICY.schedule(), veo_async.AdaptiveSchedule)
    assert "AdaptiveSchedule" in veo_async.__all__


def test_policy_shares_pollpolicy_wait_fields() -> None:
    """timeout and not_found_grace exist with PollPolicy's defaults; the policy is frozen."""
    assert (POLICY.timeout, POLICY.not_found_grace) == (900.0, 30.0)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        POLICY.timeout = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="median"):
        DurationPrior(median=0, sigma=0.3)


# ---------------------------------------------------------------- offline simulation


def test_learned_schedule_beats_fixed_30s_offline() -> None:
    """400 veo3_fast tasks, learning as it goes: fewer requests, < 0.7x fixed 30 s's mean lag."""
    times = lognormal(random.Random(11), 400, 170, 0.3)
    schedule = POLICY.schedule()
    rng = random.Random(11)
    ours_requests = ours_lag = fixed_requests = fixed_lag = 0.0
    for seconds in times:  # one task after another: only finished tasks are learned
        polls, age = polls_until_seen(schedule, seconds, rng)
        schedule.learner.observe("veo3_fast", seconds)
        ours_requests += polls
        ours_lag += age - seconds
        fixed_requests += math.ceil(seconds / 30)
        fixed_lag += math.ceil(seconds / 30) * 30 - seconds
    assert ours_requests <= fixed_requests
    assert ours_lag < 0.7 * fixed_lag


# ---------------------------------------------------------------- learning from running tasks


def test_tasks_still_running_move_the_schedule_later_before_any_finishes() -> None:
    """A batch whose veo3_fast renders run far past the prior's ~150 s is learned
    from its polls alone: seen running to 400 s, the estimate moves past 300 s."""
    schedule = POLICY.schedule()
    learner = schedule.learner
    before = fresh_polls(schedule, "veo3_fast", 6)
    for _ in range(100):
        since = 0.0
        for age in (60.0, 150.0, 250.0, 400.0):
            learner.survived("veo3_fast", since, age)
            since = age
    assert learner.count("veo3_fast") == 0
    assert learner.evidence("veo3_fast") == 400
    masses = learner.masses("veo3_fast")
    median_bin = next(k for k, c in enumerate(itertools.accumulate(masses)) if c >= 0.5)
    assert math.exp(median_bin * 0.02) > 300
    after = fresh_polls(schedule, "veo3_fast", 6)
    assert sum(1 for a in after if a < 250) < sum(1 for a in before if a < 250)


def test_a_finish_counts_its_task_once_however_often_it_was_seen_running() -> None:
    """observe(running_until=a) after survived() up to a gives the same estimate as
    a task seen only when it finished."""
    watched, unwatched = POLICY.learner(), POLICY.learner()
    rng = random.Random(8)
    for seconds in lognormal(rng, 200, 150, 0.3):
        since = 0.0
        for age in range(30, int(seconds), 30):
            watched.survived("veo3_fast", since, float(age))
            since = float(age)
        watched.observe("veo3_fast", seconds, running_until=since)
        unwatched.observe("veo3_fast", seconds)
    assert watched.masses("veo3_fast") == pytest.approx(unwatched.masses("veo3_fast"), abs=1e-9)
    assert watched.count("veo3_fast") == unwatched.count("veo3_fast") == 200


def test_survived_ignores_intervals_that_go_nowhere() -> None:
    """An age not past the last one seen adds nothing (retries, clock noise)."""
    learner = POLICY.learner()
    learner.survived("veo3", 100.0, 100.0)
    learner.survived("veo3", 100.0, 50.0)
    assert learner.evidence("veo3") == 0


def test_spend_tracks_fixed_polling_once_learned() -> None:
    """On a learned distribution, tasks followed from creation cost at most fixed
    30 s polling's requests, and most of them: the two solutions around the
    budget are mixed so that it is spent."""
    times = lognormal(random.Random(9), 3000, 200, 0.3)
    schedule = fed(times)
    rng = random.Random(10)
    ours = fixed = 0
    for seconds in times[:1500]:
        ours += polls_until_seen(schedule, seconds, rng)[0]
        fixed += math.ceil(seconds / 30)
    assert 0.9 * fixed <= ours <= fixed


def test_jitter_does_not_add_polls() -> None:
    """Jittered delays still land on the planned polls (the jitter stays under half
    a grid step, so it never piles up): the default jitter costs at most 2 % more
    requests than none (a poll a little early may just miss a finish)."""
    times = lognormal(random.Random(11), 2000, 150, 0.3)
    jittered = fed(times, policy=POLICY)
    steady = fed(times, policy=POLICY.replace(jitter=0.0))

    def mean_polls(schedule: AdaptiveSchedule) -> float:
        rng = random.Random(12)
        return sum(polls_until_seen(schedule, t, rng)[0] for t in times[:1000]) / 1000

    assert mean_polls(jittered) <= 1.02 * mean_polls(steady)


def test_the_prior_keeps_an_early_probe_until_data_say_no_fast_failures() -> None:
    """Before any data veo3 is probed early (its prior gives fast failures a
    share); after 500 renders and no fast failure the probe is gone."""
    schedule = POLICY.schedule()
    assert schedule.table("veo3").fresh[0] <= 60
    for seconds in lognormal(random.Random(13), 500, 300, 0.3):
        schedule.learner.observe("veo3", seconds)
    assert schedule.table("veo3").fresh[0] > 120
    no_share = POLICY.replace(early_mass=0.0).schedule()
    assert no_share.table("veo3").fresh[0] > 120


def test_fast_failures_seen_bring_the_early_probe_back() -> None:
    """Once 10 % of veo3 tasks are seen failing in 5-40 s, the schedule polls
    early again, whatever the prior's share."""
    rng = random.Random(14)
    schedule = POLICY.replace(early_mass=0.0).schedule()
    for seconds in lognormal(rng, 450, 300, 0.3):
        schedule.learner.observe("veo3", seconds)
    for _ in range(50):
        schedule.learner.observe("veo3", rng.uniform(5, 40), failed=True)
    assert schedule.table("veo3").fresh[0] <= 60


def test_the_fast_failure_share_is_learned_from_every_models_tasks() -> None:
    """Tasks of any model whose fate through 40 s is known (finished, or seen
    running past it) count once each; those that failed within it move the
    share from the prior's ``early_mass`` (worth ``prior_weight`` tasks)."""
    learner = DurationLearner(early_mass=0.06, prior_weight=20)
    assert learner.fast_failure_share() == pytest.approx(0.06)
    for k in range(80):  # seen running past 40 s, then finished: counted once
        model = "veo3_fast" if k % 2 else "other"
        learner.survived(model, 0.0, 30.0)
        learner.survived(model, 30.0, 50.0)
        learner.observe(model, 150.0, running_until=50.0)
    for _ in range(20):  # fast failures, found at their first poll
        learner.observe("veo3_fast", 20.0, failed=True)
    learner.observe("veo3_fast", 90.0, failed=True)  # a failure, not a fast one
    assert learner.fast_failure_share() == pytest.approx((0.06 * 20 + 20) / (20 + 101))


def test_a_task_seen_running_past_its_duration_counts_once() -> None:
    """Clock skew: a task seen running at 45 s whose record says it failed at
    38 s was counted by survived() (past 40 s); its finish is not counted again."""
    learner = DurationLearner(early_mass=0.06, prior_weight=20)
    learner.survived("veo3", 0.0, 45.0)
    learner.observe("veo3", 38.0, failed=True, running_until=45.0)
    assert learner.fast_failure_share() == pytest.approx(0.06 * 20 / 21)


def test_no_prior_weight_gives_the_prior_share_until_a_task_is_known() -> None:
    """prior_weight=0 (data only): the share is early_mass until some task's
    fate through 40 s is known, then the data's (it divided by zero)."""
    learner = DurationLearner(prior_weight=0)
    assert learner.fast_failure_share() == pytest.approx(0.06)
    assert AdaptivePolicy(prior_weight=0).schedule().table("veo3_fast").fresh
    learner.observe("veo3", 20.0, failed=True)
    learner.observe("veo3", 300.0)
    assert learner.fast_failure_share() == pytest.approx(0.5)


def test_a_model_with_few_tasks_is_probed_early_when_the_others_fail_early() -> None:
    """Fast failures come from the prompt, not the model: veo3, with no task of
    its own yet, is probed early once veo3_fast tasks are seen failing within
    40 s, and not once 300 of them were seen without a fast failure."""
    rng = random.Random(15)

    def veo3_first_poll(fast_failures: int) -> float:
        schedule = POLICY.schedule()
        learner = schedule.learner
        for seconds in lognormal(rng, 300, 150, 0.3):
            learner.survived("veo3_fast", 0.0, 45.0)
            learner.observe("veo3_fast", seconds, running_until=45.0)
        for _ in range(fast_failures):
            learner.observe("veo3_fast", rng.uniform(5, 40), failed=True)
        return schedule.table("veo3").fresh[0]

    assert veo3_first_poll(fast_failures=45) <= 45
    assert veo3_first_poll(fast_failures=0) > 120


# ---------------------------------------------------------------- one price across models


def test_models_used_alike_are_all_priced_for() -> None:
    """Six models used alike, two of them slow: the price is set for all six,
    so the tasks of all of them together spend their budget (priced for the
    four fast ones alone, the slow ones spent as that price made them)."""
    schedule = POLICY.schedule()
    learner = schedule.learner
    rng = random.Random(16)
    models = {f"m{k}": 100.0 if k < 4 else 900.0 for k in range(6)}
    for _ in range(60):
        for model, median in models.items():
            learner.observe(model, rng.lognormvariate(math.log(median), 0.3))
    for model in models:
        schedule.table(model)
    share = schedule._budget_share()
    spent = budget = 0.0
    for model in models:
        table = schedule.table(model)
        curve = schedule._curve(model, share)
        mixed = table.costly_share
        spent += curve.weight * (
            (1 - mixed) * _expected_requests(table.next_index, table.done)
            + mixed * _expected_requests(table.costly_index, table.done)
        )
        budget += curve.weight * curve.budget
    assert spent == pytest.approx(budget, rel=0.01)


def _weighted_curve(weight: float) -> _Curve:
    return _Curve(
        done=[0.0, 1.0], done_time=[0.0, 0.0], budget=1.0, weight=weight,
        reach=[1, 1], min_steps=1, late_steps=12, late_weight=0.5,
    )


@pytest.mark.parametrize(
    ("weights", "pricing"),
    [
        ([10.0] * 12, 12),  # models used alike: every one prices
        ([100.0, 50.0, 1.0, 1.0, 1.0, 1.0], 4),  # rare ones are priced for
        ([100.0, 50.0, 30.0, 20.0, 10.0, 1.0], 5),  # the four cover under 95 %
        ([5.0, 3.0], 2),
    ],
)
def test_the_price_is_set_by_the_models_most_tasks_use(weights: list[float], pricing: int) -> None:
    """The four most used models, and more until 95 % of the recent tasks are
    covered: with 12 models used alike the four alone priced a third of the
    tasks, and the others spent what that price made them (up to 1.2x fixed
    polling's requests over the last 800 tasks of a file)."""
    curves = [_weighted_curve(weight) for weight in weights]
    chosen = _pricing(curves)
    assert len(chosen) == pricing
    assert [curve.weight for curve in chosen] == sorted(weights, reverse=True)[:pricing]


def test_a_log_bin_wider_than_a_grid_step_is_spread_over_the_seconds_it_spans() -> None:
    """All the mass in one 2 % log bin at ~400 s (8 s wide) lands over the four
    grid cells it spans, not in the one holding its centre: else the program
    would think a poll just past the centre catches every finish in the bin."""
    masses = [0.0] * _LOG_BINS
    k = int(math.log(400.0) / _LOG_BIN)
    masses[k] = 1.0
    done, done_time, _ = _grid_distribution(masses, 30.0)
    start, end = math.exp(k * _LOG_BIN), math.exp((k + 1) * _LOG_BIN)
    steps = [c - b for b, c in itertools.pairwise(done) if c - b > 1e-9]
    assert len(steps) == math.ceil(end / 2.0) - math.floor(start / 2.0)
    assert math.isclose(sum(steps), 1.0)
    assert math.isclose(done_time[-1], (start + end) / 2, rel_tol=1e-9)


def test_learner_counts_each_task_once_at_its_first_poll() -> None:
    """tasks() counts a task seen running several times, then finished, once;
    one finished at its first poll, once too; the pooled count holds both."""
    learner = DurationLearner()
    learner.survived("veo3", 0.0, 60.0)
    learner.survived("veo3", 60.0, 120.0)
    learner.observe("veo3", 150.0, running_until=120.0)
    learner.observe("veo3_fast", 100.0)
    assert learner.tasks("veo3") == 1
    assert learner.tasks("veo3_fast") == 1
    assert learner.tasks(None) == 2


def test_the_mix_of_models_priced_for_is_the_recent_one() -> None:
    """recent_tasks() counts each task half as much once 100 more were seen
    (any model's): 300 veo3 tasks weigh the sum of their halvings. Mixed at
    random with veo3_fast ones (no turn), each model weighs its share of the
    recent tasks; tasks() still counts them all, and the pooled weight holds
    both. (A turn of the mix starts the weights again: see the next tests.)"""
    learner = DurationLearner()
    for _ in range(300):
        learner.observe("veo3", 300.0)
    weight = learner.recent_tasks("veo3")
    assert weight == pytest.approx(sum(0.5 ** (k / 100) for k in range(300)))
    rng = random.Random(4)
    for _ in range(600):  # first polls: new tasks, a third of them veo3_fast
        learner.survived(rng.choice(["veo3", "veo3", "veo3_fast"]), 0.0, 60.0)
    learner.survived("veo3_fast", 60.0, 90.0)  # a later poll: no new task
    assert learner.turns == 0
    assert learner.tasks("veo3") + learner.tasks("veo3_fast") == 900
    share = learner.recent_tasks("veo3_fast") / learner.recent_tasks(None)
    assert 0.25 < share < 0.42
    assert learner.recent_tasks(None) == pytest.approx(
        learner.recent_tasks("veo3") + learner.recent_tasks("veo3_fast")
    )
    assert learner.recent_tasks("veo3_lite") == 0.0


def _first_polls(
    learner: DurationLearner, models: list[str], *, announced: bool = False
) -> list[float]:
    """Each of ``models`` seen as a new task, in order; the mix shift after each.

    :param announced: the tasks were told to ``created()``.
    """
    shifts = []
    for model in models:
        learner.survived(model, 0.0, 60.0, announced=announced)
        shifts.append(learner.mix_shift())
    return shifts


def _turned_at(learner: DurationLearner, models: list[str]) -> int | None:
    """Each of ``models`` seen as a new task, in order; the index of the
    first at which the mix turned (a turn starts the price's mix again, so
    the shift after it reads small), or None."""
    before = learner.turns
    for k, model in enumerate(models):
        learner.survived(model, 0.0, 60.0)
        if learner.turns > before:
            return k
    return None


def test_a_steady_mix_of_models_never_turns() -> None:
    """3,000 tasks, 60 % veo3_fast and 40 % veo3 at random: the mix of the
    latest tasks stays near the recent one (well under the 0.3 of a turn)."""
    rng = random.Random(5)
    learner = DurationLearner()
    models = ["veo3_fast"] * 3 + ["veo3"] * 2
    shifts = _first_polls(learner, [rng.choice(models) for _ in range(3000)])
    assert max(shifts[200:]) < _TURN_SHIFT - 0.1
    assert learner.turns == 0


def test_a_turn_of_the_mix_is_seen_within_a_few_dozen_tasks() -> None:
    """400 veo3 tasks, then veo3_fast ones: the mix turns within 50 tasks of
    the new model, once; models alternating in blocks of 500 turn at each
    block after the first, never twice within 300 tasks."""
    learner = DurationLearner()
    _first_polls(learner, ["veo3"] * 400)
    assert learner.turns == 0
    turned = _turned_at(learner, ["veo3_fast"] * 600)
    assert turned is not None
    assert 10 <= turned <= 50
    assert learner.turns == 1
    blocks = DurationLearner()
    _first_polls(blocks, (["veo3"] * 500 + ["veo3_fast"] * 500) * 3)
    assert blocks.turns == 5


def test_at_a_turn_the_price_is_set_for_the_mix_the_turn_brought() -> None:
    """400 veo3 tasks, then veo3_fast ones: once the turn is seen, the mix
    the price is set for is the latest one (mostly veo3_fast), not the
    recent one still fading in (a fifth veo3_fast): the model coming in was
    polled at the price set for the one leaving."""
    learner = DurationLearner()
    _first_polls(learner, ["veo3"] * 400)
    turned = _turned_at(learner, ["veo3_fast"] * 60)
    assert turned is not None
    _first_polls(learner, ["veo3_fast"] * (59 - turned))  # 60 in all
    assert learner.turns == 1
    share = learner.recent_tasks("veo3_fast") / learner.recent_tasks(None)
    assert share > 0.6, (turned, share)  # (0.35 before)
    assert learner.mix_shift() < _TURN_SHIFT  # no second turn from the same one


def _bursts(rng: random.Random, bursts: int, size: int) -> list[list[str]]:
    """Bursts of tasks created at once, veo3 and veo3_fast at random."""
    return [[rng.choice(["veo3", "veo3_fast"]) for _ in range(size)] for _ in range(bursts)]


def test_tasks_created_in_bursts_are_no_turn_when_their_creations_are_told() -> None:
    """Bursts of 250 tasks, half veo3, half veo3_fast, each model's first polls
    coming together (its first delay is its own): at their first polls alone
    they read as turns; told at their creation (in random order) they are no
    turn, while a real turn told the same way still is one."""
    rng = random.Random(8)
    bursts = _bursts(rng, 12, 250)
    polled_only, told = DurationLearner(), DurationLearner()
    for burst in bursts:
        for model in burst:
            told.created(model)
        grouped = sorted(burst)  # first polls: every veo3 task, then every veo3_fast one
        _first_polls(polled_only, grouped)
        _first_polls(told, grouped, announced=True)
    assert polled_only.turns >= 3
    assert told.turns == 0
    assert told.creations == 3000


@pytest.mark.parametrize("behind", [30, 400])
def test_a_real_turn_of_tasks_told_at_creation_counts_however_far_polls_trail(
    behind: int,
) -> None:
    """400 veo3 tasks, then 600 veo3_fast ones, each told at its creation and
    first polled ``behind`` creations later (a session creating quickly has
    hundreds created before the first is polled): the turn counts, once."""
    learner = DurationLearner()
    models = ["veo3"] * 400 + ["veo3_fast"] * 600
    for k, model in enumerate(models):
        learner.created(model)
        if k >= behind:
            _first_polls(learner, [models[k - behind]], announced=True)
    _first_polls(learner, models[-behind:], announced=True)
    assert learner.turns == 1


def test_turns_of_tasks_not_created_here_count_when_most_first_polls_were_not_told() -> None:
    """A session that created and waited for 600 veo3 tasks, then tracks ids
    handed in (400 veo3, then 600 veo3_fast): once most recent first polls are
    of tasks not told at their creation, a turn at first polls counts alone.
    So too after 1,000 tasks told but never polled (their waits cancelled)."""
    learner = DurationLearner()
    for _ in range(600):
        learner.created("veo3")
    _first_polls(learner, ["veo3"] * 600, announced=True)
    _first_polls(learner, ["veo3"] * 400 + ["veo3_fast"] * 600)
    assert learner.turns == 1
    never_polled = DurationLearner()
    for _ in range(1000):
        never_polled.created("veo3")
    _first_polls(never_polled, ["veo3"] * 400 + ["veo3_fast"] * 600)
    assert never_polled.turns == 1


def test_a_turn_halves_the_spend_ledger() -> None:
    """The same ledger entries (tasks of veo3 spending 0.8x fixed polling,
    then of veo3_fast spending 1.3x), once with their models named and once
    as unnamed tasks (no mix to turn): the named learner sees the turn and
    halves its old entries, so its reading after the turn is nearer the new
    model's spend."""
    named, unnamed = DurationLearner(), DurationLearner()
    rng = random.Random(3)
    for model, median, spend in (("veo3", 300.0, 0.8), ("veo3_fast", 150.0, 1.3)):
        for _ in range(400):
            seconds = rng.lognormvariate(math.log(median), 0.3)
            fixed = max(1, math.ceil(seconds / 30))
            polls = max(1, round(1 + spend * (fixed - 1)))
            for learner, name in ((named, model), (unnamed, None)):
                learner.observe(name, seconds, polls=polls, fixed_polls=fixed)
    assert named.turns == 1
    assert unnamed.turns == 0
    with_turn, without = named.extra_spend_ratio(), unnamed.extra_spend_ratio()
    assert with_turn is not None
    assert without is not None
    assert with_turn > without + 0.02


def test_models_share_one_price_of_a_request() -> None:
    """Half veo3_fast, half veo3: both tables are solved at one price; the short
    model then gets more requests than fixed 30 s would spend on it and the
    long one fewer, the two weighted together within fixed 30 s's, and the
    mean lag is lower than each model spending its own budget."""
    rng = random.Random(21)
    fast = lognormal(rng, 1000, 150, 0.3)
    slow = lognormal(rng, 1000, 300, 0.3)
    shared = POLICY.schedule()
    for a, b in zip(fast, slow, strict=True):
        shared.learner.observe("veo3_fast", a)
        shared.learner.observe("veo3", b)
    shared.table("veo3_fast")
    shared.table("veo3")  # the second model's first table solves both again
    assert shared.table("veo3_fast").lam == shared.table("veo3").lam

    def follow(schedule: AdaptiveSchedule, model: str, times: list[float]) -> tuple[int, float]:
        rng = random.Random(22)
        polls = lag = 0.0
        for seconds in times[:500]:
            n, age = polls_until_seen(schedule, seconds, rng, model)
            polls, lag = polls + n, lag + age - seconds
        return int(polls), lag

    fixed = {m: sum(math.ceil(t / 30) for t in ts[:500]) for m, ts in (("f", fast), ("s", slow))}
    fast_polls, fast_lag = follow(shared, "veo3_fast", fast)
    slow_polls, slow_lag = follow(shared, "veo3", slow)
    assert fast_polls > fixed["f"]
    assert slow_polls < fixed["s"]
    assert fast_polls + slow_polls <= fixed["f"] + fixed["s"]
    alone_fast = fed(fast, "veo3_fast")  # each model on its own: its own budget
    alone_slow = fed(slow, "veo3")
    alone_lag = follow(alone_fast, "veo3_fast", fast)[1] + follow(alone_slow, "veo3", slow)[1]
    assert fast_lag + slow_lag < alone_lag


def test_many_model_names_all_get_tables_at_the_one_price() -> None:
    """Six model names: each has its table, every table at the same price (the
    most used models set it; the rest are solved at it)."""
    rng = random.Random(23)
    schedule = POLICY.schedule()
    names = [f"model{k}" for k in range(6)]
    for k, name in enumerate(names):
        for seconds in lognormal(rng, 50 * (6 - k), 100 + 40 * k, 0.3):
            schedule.learner.observe(name, seconds)
    for name in names:
        schedule.table(name)
    prices = {schedule.table(name).lam for name in names}
    assert len(prices) == 1
    assert all(schedule.table(name).fresh for name in names)


def test_the_prior_is_wider_until_finishes_pin_its_median() -> None:
    """Before any finish, veo3's estimate puts ~9 % below half its documented
    median (3 % fast failures and 6.4 % of renders: the doubt about the median
    widens it; the documented spread alone would give 5.4 % in all); after
    1,000 renders drawn from the documented distribution, the documented
    spread rules again (~2 %)."""

    def below_half_median(learner: DurationLearner) -> float:
        half = math.log(DEFAULT_PRIORS["veo3"].median / 2)
        masses = learner.masses("veo3")
        return sum(m for k, m in enumerate(masses) if (k + 1) * 0.02 <= half)

    learner = POLICY.learner()
    assert below_half_median(learner) > 0.08
    for seconds in lognormal(random.Random(24), 1000, DEFAULT_PRIORS["veo3"].median, 0.35):
        learner.observe("veo3", seconds)
    assert below_half_median(learner) < 0.03


def median_of(learner: DurationLearner, model: str | None) -> float:
    """The median of ``model``'s estimate, in seconds."""
    return math.exp(_log_quantiles(learner.masses(model), (0.5,))[0])


def test_a_model_not_seen_yet_moves_as_the_others_did_from_their_priors() -> None:
    """One service's renders speed up and slow down together: veo3_fast's
    renders at half their documented time move veo3's estimate, before any
    veo3 task finished, most of the way down (the move of 50 finishes counts
    50/60); veo3's own finishes at its documented time then take it back."""
    learner = DurationLearner()
    documented = DEFAULT_PRIORS["veo3"].median
    assert median_of(learner, "veo3") == pytest.approx(documented, rel=0.05)
    half = DEFAULT_PRIORS["veo3_fast"].median / 2
    for seconds in lognormal(random.Random(31), 50, half, 0.3):
        learner.observe("veo3_fast", seconds)
    expected = documented * math.exp(math.log(0.5) * 50 / 60)
    assert median_of(learner, "veo3") == pytest.approx(expected, rel=0.1)
    assert median_of(learner, "veo3_lite") < 0.65 * DEFAULT_PRIORS["veo3_lite"].median
    for seconds in lognormal(random.Random(32), 200, documented, 0.3):
        learner.observe("veo3", seconds)
    assert median_of(learner, "veo3") == pytest.approx(documented, rel=0.1)


def test_names_without_a_prior_neither_move_nor_are_moved_by_the_others() -> None:
    """A name with no prior of its own has no documented median to move
    from: its tasks do not move veo3's estimate, and the others' moves do
    not move its (pooled) one."""
    learner = DurationLearner()
    unseen = median_of(learner, "veo3")
    for seconds in lognormal(random.Random(33), 100, 40.0, 0.3):
        learner.observe("my_model", seconds)
    assert median_of(learner, "veo3") == pytest.approx(unseen, rel=0.05)
    pooled = median_of(learner, "my_model")
    for seconds in lognormal(random.Random(34), 100, 60.0, 0.3):
        learner.observe("veo3_fast", seconds)
    assert median_of(learner, "my_model") == pytest.approx(pooled, rel=0.05)


@pytest.mark.parametrize("seen_running_at", [1200.0, 8 * 3600.0])
def test_a_task_seen_running_past_its_own_finish_adds_no_tail(seen_running_at: float) -> None:
    """Ids handed in whose ages read 20 minutes or 8 hours too old (a server
    clock behind ours, a createTime read in another zone) were seen running
    at that age, then finished in about 150 s: the learner kept both, every
    such task ran through every later bin, and the estimate grew a tail
    (log-sd 1.6-2.1 for renders of 0.3) that tasks aged right were planned
    on. What they were seen running past their finish is taken back."""
    right, skewed = DurationLearner(), DurationLearner()
    for seconds in lognormal(random.Random(35), 150, 150.0, 0.3):
        right.survived("veo3_fast", 0.0, 40.0)
        right.observe("veo3_fast", seconds, running_until=40.0)
        skewed.survived("veo3_fast", 0.0, seen_running_at)
        skewed.observe("veo3_fast", seconds, running_until=seen_running_at)
    learned, expected = skewed.as_prior("veo3_fast"), right.as_prior("veo3_fast")
    assert learned is not None
    assert expected is not None
    assert learned.sigma == pytest.approx(expected.sigma, abs=0.02)
    assert learned.median == pytest.approx(expected.median, rel=0.03)
    assert median_of(skewed, None) == pytest.approx(median_of(right, None), rel=0.03)


# -- carrying what was learned over -------------------------------------------------


def test_as_prior_summarises_the_estimate_as_a_lognormal() -> None:
    """The learned median and spread, as a DurationPrior; a few early failures
    barely widen it (the spread is read between the 16th and 84th
    percentiles); nothing before a task of the model has finished."""
    learner = DurationLearner()
    assert learner.as_prior("veo3") is None
    learner.survived("veo3", 0.0, 120.0)  # running polls alone are not a finish
    assert learner.as_prior("veo3") is None
    for seconds in lognormal(random.Random(8), 2000, 600.0, 0.3):
        learner.observe("veo3", seconds)
    prior = learner.as_prior("veo3")
    assert prior is not None
    assert prior.median == pytest.approx(600.0, rel=0.05)
    assert prior.sigma == pytest.approx(0.3, abs=0.03)
    for seconds in lognormal(random.Random(9), 100, 20.0, 0.3):
        learner.observe("veo3", seconds, failed=True)
    widened = learner.as_prior("veo3")
    assert widened is not None
    assert prior.sigma < widened.sigma < prior.sigma + 0.05
    assert learner.as_prior("veo3_fast") is None


def test_learned_priors_start_a_later_session_where_this_one_left_off() -> None:
    """A restarted worker given the learned priors plans its first tasks where
    renders finished (600 s here), not at the documented 5 minutes; only
    models with a finished task are in the mapping."""
    learner = DurationLearner()
    for seconds in lognormal(random.Random(10), 2000, 600.0, 0.3):
        learner.observe("veo3", seconds)
    learner.survived("veo3_fast", 0.0, 90.0)
    learned = learner.learned_priors()
    assert set(learned) == {"veo3"}
    restarted = AdaptivePolicy(jitter=0, priors={**AdaptivePolicy().priors, **learned})

    def fresh(policy: AdaptivePolicy) -> list[float]:
        schedule, rng, age, polls = policy.schedule(), random.Random(0), 0.0, []
        for made in range(3):
            age += schedule.next_delay(model="veo3", age=age, polls=made, rng=rng)
            polls.append(age)
        return polls

    # Both keep the early probe for fast failures; the bulk moves out with the renders.
    assert fresh(AdaptivePolicy(jitter=0))[1] < 200
    assert fresh(restarted)[1] > 200


# -- the spend ledger -----------------------------------------------------------------


def _ledger_polls(seconds: float) -> tuple[int, int]:
    """A schedule's requests for a task of ``seconds`` (half fixed polling's below
    300 s, 1.5 x above: a learned schedule spends on the bulk and the tail), and
    fixed polling's."""
    fixed = max(1, math.ceil(seconds / 30))
    return max(1, fixed * (1 if seconds < 300 else 3) // 2), fixed


def test_the_spend_ledger_weighs_each_generation_time_as_the_estimate_does() -> None:
    """Finished tasks come short ones first: with most long tasks missing from the
    ledger, a plain sum would read 0.80 for a session spending 1.07 x fixed
    polling; the ledger weighs each stratum by the estimate and reads ~1.07."""
    rng = random.Random(3)
    times = lognormal(rng, 3000, 300.0, 0.3)
    every, biased = DurationLearner(), DurationLearner()
    kept_polls = kept_fixed = 0
    for k, seconds in enumerate(times):
        polls, fixed = _ledger_polls(seconds)
        every.observe("veo3", seconds, polls=polls, fixed_polls=fixed)
        if seconds >= 300 and k % 3:
            polls = fixed = 0  # still running when the reading is taken: not in the ledger
        biased.observe("veo3", seconds, polls=polls, fixed_polls=fixed)
        kept_polls += polls
        kept_fixed += fixed
    true = sum(_ledger_polls(s)[0] for s in times) / sum(_ledger_polls(s)[1] for s in times)
    assert kept_polls / kept_fixed == pytest.approx(0.80, abs=0.01)  # what a plain sum reads
    assert every.spend_ratio() == pytest.approx(true, rel=0.01)
    assert biased.spend_ratio() == pytest.approx(true, rel=0.02)


def test_the_extra_spend_counts_the_requests_beyond_each_tasks_first() -> None:
    """What a schedule chooses to spend: requests beyond the first over fixed
    polling's beyond the first (each stratum weighed as in spend_ratio); no
    reading where fixed polling makes one request a task (renders shorter than
    its interval), where that ratio is of two near-zeros."""
    times = lognormal(random.Random(6), 2000, 300.0, 0.3)
    learner, quick = DurationLearner(), DurationLearner()

    def entry(seconds: float) -> tuple[int, int]:  # half fixed polling's requests
        fixed = max(1, math.ceil(seconds / 30))
        return max(1, fixed // 2), fixed

    for seconds in times:
        polls, fixed = entry(seconds)
        learner.observe("veo3", seconds, polls=polls, fixed_polls=fixed)
        quick.observe("veo3", seconds / 20, polls=1, fixed_polls=1)
    whole = learner.spend_ratio()
    extra = learner.extra_spend_ratio()
    assert whole is not None
    assert extra is not None
    spent = sum(entry(s)[0] for s in times) / len(times)
    fixed = sum(entry(s)[1] for s in times) / len(times)
    assert whole == pytest.approx(spent / fixed, rel=0.02)  # about 0.5
    assert extra == pytest.approx((spent - 1) / (fixed - 1), rel=0.02)  # about 0.44
    assert extra < whole - 0.04
    assert quick.spend_ratio() == pytest.approx(1.0)
    assert quick.extra_spend_ratio() is None


def test_renders_shorter_than_the_budget_interval_are_polled_no_later_than_fixed_polling() -> None:
    """Fixed 30 s polling makes one request for a render under 30 s, and so does
    the budget: the share held back (for the estimate's error) is of the
    requests beyond each task's first, so a service rendering in ~15 s keeps a
    poll within 30 s of creation and a mean lag no worse than fixed polling's
    (a share of the whole left less than one request a task: one late poll at
    34 s, 4 s more lag than fixed polling)."""
    times = lognormal(random.Random(2), 400, 15.0, 0.3)
    schedule = AdaptivePolicy(jitter=0).schedule()
    for seconds in times:
        schedule.learner.observe(
            "veo3", seconds, polls=1, fixed_polls=max(1, math.ceil(seconds / 30))
        )
    rng, age, polls = random.Random(0), 0.0, []
    for made in range(4):
        age += schedule.next_delay(model="veo3", age=age, polls=made, rng=rng)
        polls.append(age)
    assert polls[0] <= 30.0
    lag = sum(min(p for p in polls if p >= t) - t for t in times) / len(times)
    fixed_lag = sum(math.ceil(t / 30) * 30 - t for t in times) / len(times)
    assert lag <= fixed_lag


def test_the_spend_ledger_is_silent_until_its_tasks_cover_the_distribution() -> None:
    """Fewer than 100 entries, or entries of the short tasks alone (the long ones
    still running), or of all but the slowest 7 %: no reading, and the
    schedule keeps its default share. 100 entries spread over 95 % of the
    estimate speak."""
    times = lognormal(random.Random(4), 3000, 300.0, 0.3)
    few, short, most = DurationLearner(), DurationLearner(), DurationLearner()
    for seconds in times[:99]:
        few.observe("veo3", seconds, polls=3, fixed_polls=4)
    # The 27th and the 93rd percentiles of the log-normal (median 300 s, sigma 0.3).
    for learner, below in ((short, 250.0), (most, 300.0 * math.exp(1.48 * 0.3))):
        for seconds in times:
            entry = (3, 4) if seconds < below else (0, 0)
            learner.observe("veo3", seconds, polls=entry[0], fixed_polls=entry[1])
    assert few.spend_ratio() is None
    assert short.spend_ratio() is None
    assert most.spend_ratio() is None
    few.observe("veo3", times[99], polls=3, fixed_polls=4)
    assert few.spend_ratio() == pytest.approx(0.75)  # 100 entries covering 95 %
    assert DurationLearner().spend_ratio() is None


def test_the_spend_ledger_spans_the_empty_strata_under_its_slowest_entries() -> None:
    """Early failures at a few times within 5-40 s leave the ledger's strata
    between them empty (10 % wide each), which the estimate still weighs
    (its failures smoothed over the span): the ledger counts them as
    spanned, and speaks, its reading the mean of the strata it has entries
    for. Empty strata above the slowest entry still keep it silent."""
    rng = random.Random(9)
    learner, slow_missing = DurationLearner(), DurationLearner()
    failures = (5.5, 9.0, 14.0, 22.0, 35.0)
    for k in range(400):
        if k % 10 == 0:
            seconds = failures[(k // 10) % len(failures)]
            learner.observe("veo3", seconds, failed=True, polls=1, fixed_polls=1)
            slow_missing.observe("veo3", seconds, failed=True, polls=1, fixed_polls=1)
            continue
        seconds = rng.lognormvariate(math.log(300.0), 0.3)
        learner.observe("veo3", seconds, polls=8, fixed_polls=10)
        entry = (8, 10) if seconds < 380.0 else (0, 0)
        slow_missing.observe("veo3", seconds, polls=entry[0], fixed_polls=entry[1])
    masses = learner.masses(None)
    # What the old reading counted as covered: the strata holding an entry.
    strata = {int(math.log(t) / _LOG_BIN) // 5 for t in failures}
    held = sum(m for k, m in enumerate(masses) if k // 5 in strata or k * _LOG_BIN > math.log(40))
    assert held < 0.95
    ratio = learner.spend_ratio()
    assert ratio is not None
    early = sum(masses[: int(math.log(40.0) / _LOG_BIN)])
    # Between the renders' 0.8 and the failures' 1.0, as the estimate weighs them.
    assert 0.8 < ratio < 0.8 + 0.2 * early + 0.01
    assert slow_missing.spend_ratio() is None


@pytest.mark.parametrize(
    ("polls", "extra", "share"),
    [
        (5, 0.8, 1.075),  # 1.15 read, half of it past 1
        (3, 0.4, 1.15),  # 1.55 read, 1.275 at half the pace: capped
        (6, 1.0, 0.95),  # at fixed polling's spend: under the aim, no savings
    ],
)
def test_savings_the_ledger_reads_are_spent_at_half_the_pace(
    polls: int, extra: float, share: float
) -> None:
    """Finished tasks that spent ``polls - 1`` requests beyond their first
    where fixed polling spent 5: the share aimed at moves from 0.95 as the
    ledger reads under the aim, but past 1 by half of it, and never past
    1.15: the ledger reads a task's spend minutes after its plan was set,
    and spending the savings at once overshot."""
    schedule = POLICY.schedule()
    rng = random.Random(3)
    for _ in range(300):
        seconds = rng.lognormvariate(math.log(300.0), 0.3)
        schedule.learner.observe("veo3", seconds, polls=polls, fixed_polls=6)
    assert schedule.learner.extra_spend_ratio() == pytest.approx(extra)
    assert schedule._budget_share() == pytest.approx(share)


def watch(
    schedule: AdaptiveSchedule,
    plain: DurationLearner,
    durations: list[float],
    *,
    spacing: float,
    start: float = 0.0,
) -> float:
    """Tasks of veo3_fast created every ``spacing`` seconds from ``start`` (0:
    all at once), each polled every 10 s from its creation: what the polls
    see is told, in time order, to the schedule's learner and to ``plain``
    (a learner no schedule checks), and the schedule is asked for its table
    after each poll, as a session does. Returns when the last one was seen."""
    seen = []
    for k, seconds in enumerate(durations):
        created, last = start + k * spacing, 0.0
        while last + 10.0 < seconds:
            seen.append((created + last + 10.0, k, last, last + 10.0, False))
            last += 10.0
        seen.append((created + last + 10.0, k, last, seconds, True))
    seen.sort()
    for _at, _k, since, age, finished in seen:
        for learner in (schedule.learner, plain):
            if finished:
                learner.observe("veo3_fast", age, running_until=since)
            else:
                learner.survived("veo3_fast", since, age)
        schedule.table("veo3_fast")
    return seen[-1][0]


def test_a_service_drifting_off_the_table_has_its_old_evidence_halved() -> None:
    """600 renders as the estimate expects: nothing is halved (the schedule's
    learner and one no schedule checks agree). Then renders three times as
    long: the finishes seen over the latest intervals fall far short of those
    the table expects, the model's old evidence counts half (again while
    they stay off) and the estimate follows them much sooner."""
    rng = random.Random(12)
    schedule, plain = POLICY.schedule(), DurationLearner()
    end = watch(schedule, plain, lognormal(rng, 600, 150.0, 0.3), spacing=2.0)
    assert schedule.learner.as_prior("veo3_fast") == plain.as_prior("veo3_fast")
    assert len(schedule.learner.latest_intervals("veo3_fast")) == 500
    watch(schedule, plain, lognormal(rng, 300, 450.0, 0.3), spacing=2.0, start=end)
    learned, kept = schedule.learner.as_prior("veo3_fast"), plain.as_prior("veo3_fast")
    assert learned is not None
    assert kept is not None
    assert learned.median > 1.3 * kept.median, (learned, kept)


def test_a_burst_of_tasks_finishing_short_ones_first_is_no_drift() -> None:
    """300 tasks created at once, as the service renders them: their short
    renders finish first, long ones last. Each finish comes where the table
    expects it given the tasks still running, so nothing is halved: the
    schedule's learner and one no schedule checks still agree. (A check of
    the latest finishes alone read a drift in each slice of the burst.)"""
    rng = random.Random(14)
    schedule, plain = POLICY.schedule(), DurationLearner()
    end = watch(schedule, plain, lognormal(rng, 600, 150.0, 0.3), spacing=2.0)
    for _burst in range(3):
        end = watch(schedule, plain, lognormal(rng, 300, 150.0, 0.3), spacing=0.0, start=end)
    assert schedule.learner.as_prior("veo3_fast") == plain.as_prior("veo3_fast")


@pytest.mark.parametrize(
    "renders",
    [[150.0] * 1500, [60.0] * 1500, [1.0] * 1500],
    ids=["all 150 s", "all 60 s", "all failing at 1 s"],
)
def test_renders_all_alike_are_no_drift(renders: list[float]) -> None:
    """Renders all of one length: the estimate's smoothing spreads them over
    neighbouring seconds, so near the longest one it expected half the
    finishes it saw, and the check halved everything at every window. The
    test stops short of the oldest age its data reached, and renders of
    seconds are not tested at all: nothing is halved."""
    schedule, plain = POLICY.schedule(), DurationLearner()
    watch(schedule, plain, renders, spacing=2.0)
    assert schedule.learner.as_prior("veo3_fast") == plain.as_prior("veo3_fast")


def test_survived_refuses_a_model_that_is_not_a_name_and_ignores_an_endless_age() -> None:
    """As observe() does: a model that is not a str is a TypeError; an age
    that is infinite or NaN teaches nothing (it was an OverflowError)."""
    learner = DurationLearner()
    with pytest.raises(TypeError, match="model"):
        learner.survived(3, 0.0, 10.0)  # type: ignore[arg-type]
    learner.survived("veo3", 0.0, math.inf)
    learner.survived("veo3", 0.0, math.nan)
    assert learner.evidence("veo3") == 0


def test_a_drift_found_while_a_rebuild_runs_in_steps_is_rebuilt_after_it() -> None:
    """On a loop (rebuilds in steps): veo3's tables are being made again
    when veo3_fast's renders are found three times as long. That rebuild
    took its evidence before the halving, so once it ends another is due:
    the halving must reach a table (it used to wait for 100 more finishes,
    then halve again for the same drift)."""
    rng = random.Random(15)
    schedule = POLICY.schedule()
    for seconds in lognormal(rng, 400, 150.0, 0.3):
        schedule.learner.observe("veo3_fast", seconds)
    for seconds in lognormal(rng, 100, 300.0, 0.3):
        schedule.learner.observe("veo3", seconds)
    schedule.table("veo3_fast")
    schedule.table("veo3")
    told: list[int] = []
    schedule.on_rebuild_due = lambda: told.append(1)
    for seconds in lognormal(rng, 60, 300.0, 0.3):  # veo3's evidence grows by half
        schedule.learner.observe("veo3", seconds)
    schedule.table("veo3")
    assert told == [1]
    assert schedule.step()  # the rebuild has taken its evidence
    for seconds in lognormal(rng, 100, 450.0, 0.3):
        schedule.learner.observe("veo3_fast", seconds)
    schedule.table("veo3_fast")  # the drift is found: halved, a rebuild runs already
    assert len(schedule.learner.latest_intervals("veo3_fast")) == 0
    assert told == [1]
    while schedule.step():
        pass
    schedule.table("veo3_fast")
    assert told == [1, 1]


def test_a_new_model_name_is_probed_early_though_every_model_seen_is_slow() -> None:
    """800 veo3 renders of ten minutes learned: the pooled estimate puts a
    fresh task's first poll near 300 s. A model name never seen (a new model
    may be nothing like the others) mixes in the wide pooled prior, and is
    first polled within about a minute: every task of it created before its
    first poll tells waits that first delay (renders of 137 s waited 216 s,
    a p95 lag of 143 s over 200 such tasks)."""
    schedule = AdaptivePolicy(jitter=0).schedule()
    for seconds in lognormal(random.Random(1), 800, 600.0, 0.3):
        schedule.learner.observe("veo3", seconds)
    pooled = fresh_polls(schedule, None, 1)[0]
    new_name = fresh_polls(schedule, "a_new_model", 3)
    assert pooled >= 250
    assert new_name[0] <= 90
    assert new_name[2] <= 150


def test_forget_halves_a_models_evidence_and_empties_its_window() -> None:
    """forget() halves the model's histogram (its estimate moves twice as far
    towards what comes next) and leaves other models alone."""
    learner = DurationLearner()
    for seconds in lognormal(random.Random(13), 300, 150.0, 0.3):
        learner.observe("veo3_fast", seconds)
        learner.observe("veo3", 2 * seconds)
    learner.forget("veo3_fast")
    assert len(learner.latest_intervals("veo3_fast")) == 0
    assert len(learner.latest_intervals("veo3")) == 300
    since, _age, finished = learner.latest_intervals("veo3")[-1]
    assert (since, finished) == (0.0, True)  # watched from creation to its finish
    twin = DurationLearner()
    for seconds in lognormal(random.Random(13), 300, 150.0, 0.3):
        twin.observe("veo3_fast", seconds)
    for learned in (learner, twin):
        for _ in range(150):
            learned.observe("veo3_fast", 450.0)
    halved, whole = learner.as_prior("veo3_fast"), twin.as_prior("veo3_fast")
    assert halved is not None
    assert whole is not None
    assert halved.median > whole.median
    learner.forget("never-seen")  # nothing to halve: no error


@pytest.mark.parametrize(
    ("polls", "fixed_polls", "error"),
    [(-1, 3, ValueError), (0, -3, ValueError), (1.5, 3, TypeError), (2, True, TypeError)],
)
def test_observe_refuses_bad_poll_counts(polls: object, fixed_polls: object, error: type) -> None:
    """A ledger entry's counts are ints >= 0, checked before anything is learned."""
    learner = DurationLearner()
    with pytest.raises(error, match="polls"):
        learner.observe("veo3", 100.0, polls=polls, fixed_polls=fixed_polls)  # type: ignore[arg-type]
    assert learner.count("veo3") == 0


def _planned_requests(schedule: AdaptiveSchedule, model: str) -> float:
    """Expected requests of a task followed from creation, by the table's own estimate."""
    table = schedule.table(model)
    n = len(table.done) - 1
    return 1.0 + sum(1.0 - table.done[min(n, round(age / 2.0))] for age in table.fresh[:-1])


def test_the_ledger_steers_the_budget_within_its_range() -> None:
    """A session that spent over the aim plans fewer requests, one under it more,
    than a session without a ledger reading; past the range's ends the budget
    stays at them, whatever the ledger says."""
    times = lognormal(random.Random(5), 3000, 150.0, 0.3)

    def schedule_with_ledger(polls: int, fixed_polls: int) -> AdaptiveSchedule:
        schedule = POLICY.schedule()
        for seconds in times:
            schedule.learner.observe("veo3_fast", seconds, polls=polls, fixed_polls=fixed_polls)
        return schedule

    silent = _planned_requests(fed(times), "veo3_fast")
    over = _planned_requests(schedule_with_ledger(11, 10), "veo3_fast")
    under = _planned_requests(schedule_with_ledger(9, 10), "veo3_fast")
    assert over < silent < under
    lowest = [schedule_with_ledger(polls, 10).table("veo3_fast").lam for polls in (20, 30)]
    assert lowest[0] == lowest[1]


def test_the_p95_guard_reads_late_lags_within_their_grid_step() -> None:
    """Finishes spread evenly, polled every 5 grid steps: lag is uniform over
    [0, 10 s), so 5 % of it is past 9.5 s, 10 % past 9 s and half past 5 s:
    the part of a step past the limit counts, not the whole step or none
    (read a step low, schedules whose real p95 passed the limit got by)."""
    n = 100
    done = [k / n for k in range(n + 1)]
    best = [min(n, (i // 5 + 1) * 5) for i in range(n + 1)]
    assert _late_share(best, done, 9.5) == pytest.approx(0.05)
    assert _late_share(best, done, 9.0) == pytest.approx(0.10)
    assert _late_share(best, done, 5.0) == pytest.approx(0.5)
    assert _late_share(best, done, 10.0) == pytest.approx(0.0)
    assert _late_share(best, done, 0.0) == pytest.approx(1.0)


def _trained_schedule() -> AdaptiveSchedule:
    """Tables built on the priors, then enough finishes seen that a rebuild is due."""
    schedule = POLICY.schedule()
    for model in ("veo3_fast", "veo3"):
        schedule.next_delay(model=model, age=0.0, polls=0, rng=random.Random(1))
    for k in range(300):
        schedule.learner.observe("veo3_fast", 120.0 + k % 70)
        schedule.learner.observe("veo3", 260.0 + k % 90)
    return schedule


def test_a_rebuild_due_on_a_loop_runs_in_steps_and_ends_as_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With ``on_rebuild_due`` set (a session on an event loop), a rebuild found
    due is not run inside next_delay (it takes 20-150 ms): the table in hand
    answers, the hook is told once, and each step() solves one program. The
    tables it ends with are the ones a rebuild at once makes from the same
    evidence, so the schedule stays a pure function of its calls."""
    solves = ProgramSteps(monkeypatch)  # resumes of the dynamic programs
    stepped, at_once = _trained_schedule(), _trained_schedule()
    told: list[int] = []
    stepped.on_rebuild_due = lambda: told.append(1)
    old = stepped.table("veo3_fast")
    solves.count = 0
    assert stepped.table("veo3_fast") is old  # still due: the job runs already
    stepped.next_delay(model="veo3", age=100.0, polls=1, rng=random.Random(2))
    assert solves.count == 0
    assert told == [1]
    per_step = []
    while True:
        solves.count = 0
        more = stepped.step()
        per_step.append(solves.count)
        if not more:
            break
    assert len(per_step) > 5
    assert max(per_step) == 1
    assert stepped.step() is False  # nothing left
    for model in ("veo3_fast", "veo3"):
        done, fresh = stepped.table(model), at_once.table(model)
        assert done is not old
        assert (done.next_index, done.costly_index, done.lam) == (
            fresh.next_index,
            fresh.costly_index,
            fresh.lam,
        )


def test_a_model_first_seen_on_a_loop_gets_a_table_at_the_shared_price() -> None:
    """A new model while tables exist: its own table at once, at the price in
    hand (one solve), and every table again in steps."""
    schedule = _trained_schedule()
    told: list[int] = []
    schedule.on_rebuild_due = lambda: told.append(1)
    shared = schedule.table("veo3").lam  # due: told, and stepping
    assert told == [1]
    lite = schedule.table("veo3_lite")
    assert lite.lam == shared
    assert told == [1, 1]  # a new rebuild, with the new model, in steps
    delay = schedule.next_delay(model="veo3_lite", age=0.0, polls=0, rng=random.Random(3))
    assert 2.0 <= delay <= 200.0
    while schedule.step():
        pass
    assert schedule.table("veo3_lite") is not lite


@pytest.mark.parametrize("model", ["veo3_fast", "veo3", "veo3_lite", "no-prior-model"])
def test_a_task_twice_its_documented_median_is_polled_within_max_gap(model: str) -> None:
    """Many tasks seen running at 600 s (a batch of ids handed in old) move the
    learned median out past 600 s; a task that old is still polled within
    max_gap (30 s), however much it was seen, and jitter keeps to its bound."""
    for seen in (0, 400, 2000):
        schedule = POLICY.schedule()
        for _ in range(seen):
            schedule.learner.survived(model, 0.0, 600.0)
        rng = random.Random(seen)
        for age in (602.0, 640.0, 900.0):
            gaps = [schedule.next_delay(model=model, age=age, polls=1, rng=rng) for _ in range(20)]
            assert max(gaps) <= POLICY.max_gap * (1 + POLICY.jitter) + 1e-9, (seen, age)


def test_odd_model_names_share_the_pooled_table_past_a_cap() -> None:
    """Past eight model names without priors with tables of their own, others
    are polled by the pooled table: every table is solved again at each
    rebuild, and a hundred odd names (from the service's records) cost a
    hundred rebuilds of up to a hundred tables."""
    schedule = POLICY.schedule()
    rng = random.Random(0)
    for n in range(20):
        schedule.next_delay(model=f"odd-{n}", age=10.0, polls=1, rng=rng)
    assert [schedule.table_key(f"odd-{n}") for n in range(8)] == [f"odd-{n}" for n in range(8)]
    assert schedule.table_key("odd-19") is None
    assert schedule.table_key("odd-99") is None
    assert schedule.table_key("veo3") == "veo3"  # a model with a prior has its own
    assert schedule.has_table("odd-19") == schedule.has_table(None)


def test_a_jittered_gap_never_passes_max_gap() -> None:
    """Past the median gaps are capped at max_gap, and jitter never stretches
    a gap within it beyond it: an old task is seen at least every max_gap."""
    schedule = AdaptivePolicy(seed=3).schedule()
    rng = random.Random(3)
    for age in range(400, 4000, 7):
        delay = schedule.next_delay(model="veo3_fast", age=float(age), polls=5, rng=rng)
        assert delay <= schedule.policy.max_gap, (age, delay)


def test_the_learner_and_the_schedule_say_what_they_hold_in_their_repr() -> None:
    """repr(veo.learner) shows each model's tasks seen and finished; the
    schedule's shows its policy and learner (both were the default
    ``<... object at 0x...>``)."""
    schedule = AdaptivePolicy().schedule()
    learner = schedule.learner
    learner.created("veo3")
    learner.observe("veo3", 120.0, failed=False)
    assert repr(learner) == "<DurationLearner {'veo3': 1 tasks, 1 finished}>"
    assert repr(schedule).startswith("AdaptiveSchedule(policy=AdaptivePolicy(")
    assert repr(learner) in repr(schedule)


def test_an_explorer_first_planned_past_its_ages_polls_as_any_task() -> None:
    """An explorer task whose first plan comes past 30 s of age (a new wait
    of a task whose earlier polls went unanswered) has no explorer poll due:
    planned as any task, not at once."""
    schedule = AdaptivePolicy(jitter=0.0).schedule()
    rng = random.Random(2)
    plain = schedule.next_delay(model="veo3_fast", age=31.0, polls=0, rng=rng)
    explored = schedule.next_delay(model="veo3_fast", age=31.0, polls=0, rng=rng, explorer=True)
    assert explored == plain > 0.0
    assert schedule.explorer_delay(age=45.0, asked_at=45.0, polls=0, rng=rng) is None
    # Younger, an overdue explorer poll goes at once.
    assert schedule.explorer_delay(age=3.0, asked_at=3.0, polls=0, rng=rng) == 0.0


def test_asked_at_plans_the_next_poll_from_the_polls_time() -> None:
    """next_delay(age=answer's age, asked_at=the poll's age): the next poll is
    where the plan puts it after the poll, so the time the answer took comes
    off the delay (past the median the polls stay within max_gap)."""
    policy = AdaptivePolicy(jitter=0.0)
    schedule = policy.schedule()
    rng = random.Random(1)
    prompt = schedule.next_delay(model="veo3_fast", age=600.0, polls=3, rng=rng)
    late = schedule.next_delay(model="veo3_fast", age=608.0, polls=3, rng=rng, asked_at=600.0)
    assert late == pytest.approx(prompt - 8.0)
    assert 600.0 + 8.0 + late <= 600.0 + policy.max_gap
    # Past the table's horizon too: max_gap from the poll, not from its answer.
    far = schedule.next_delay(model="veo3_fast", age=1e6 + 8.0, polls=9, rng=rng, asked_at=1e6)
    assert far == pytest.approx(policy.max_gap - 8.0)
    # An answer slower than the gap: the next poll as soon as min_gap allows.
    assert schedule.next_delay(
        model="veo3_fast", age=700.0, polls=3, rng=rng, asked_at=600.0
    ) == policy.min_gap


@pytest.mark.parametrize(
    ("age", "asked_at", "message"),
    [
        (100.0, 101.0, "asked_at (101.0) must not be past age (100.0)"),
        (100.0, -1.0, "asked_at"),
        (100.0, math.nan, "asked_at"),
    ],
)
def test_asked_at_is_checked(age: float, asked_at: float, message: str) -> None:
    """asked_at past the age, negative or not a number: a ValueError naming it."""
    schedule = AdaptivePolicy().schedule()
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        schedule.next_delay(
            model="veo3", age=age, polls=1, rng=random.Random(1), asked_at=asked_at
        )


@pytest.mark.parametrize(
    ("median", "sigma", "error", "message"),
    [
        (1e308, 0.3, ValueError, "median must be at most 1e\\+09 s"),
        (0.0, 0.3, ValueError, "median must be a finite number > 0"),
        (math.inf, 0.3, ValueError, "median must be a finite number > 0"),
        (100.0, -1.0, ValueError, "sigma must be a finite number > 0"),
        ("100", 0.3, TypeError, "median must be a number"),
    ],
)
def test_a_prior_out_of_range_is_refused_when_made(
    median: Any, sigma: Any, error: type[Exception], message: str
) -> None:
    """DurationPrior checks its numbers when made: a median of 1e308 was
    taken, and the first table raised a bare OverflowError."""
    with pytest.raises(error, match=message):
        DurationPrior(median=median, sigma=sigma)
    assert DurationPrior(median=1e9, sigma=0.3).median == 1e9


def test_a_table_moves_when_its_median_moves_a_fifth() -> None:
    """revisions() counts the moves of each table: none while what is learned
    agrees with the prior (veo3 renders of about 300 s), one once renders of
    100 s have moved its median, the same for two schedules fed alike (pure)."""

    def fed(seconds: float, n: int) -> AdaptiveSchedule:
        schedule = AdaptivePolicy().schedule()
        rng = random.Random(1)
        schedule.next_delay(model="veo3", age=0.0, polls=0, rng=rng)  # the first table
        for value in lognormal(random.Random(2), n, seconds, 0.3):
            schedule.learner.observe("veo3", value)
            schedule.next_delay(model="veo3", age=0.0, polls=0, rng=rng)  # rebuilt when due
        return schedule

    assert fed(300.0, 200).revisions() == {"veo3": 0}
    fast = fed(100.0, 200)
    assert fast.revisions()["veo3"] >= 1
    assert fast.revisions() == fed(100.0, 200).revisions()
    fast.revisions()["veo3"] = 99  # a copy
    assert fast.revisions()["veo3"] < 99


def test_a_finish_starts_the_rebuild_it_makes_due() -> None:
    """rebuild_if_due() starts the rebuild a model's table is due for (on a
    loop, through on_rebuild_due), so a finish moves the table even while no
    poll asks for a delay; nothing for a model without a table, nor when
    nothing new was learned."""
    schedule = AdaptivePolicy().schedule()
    due: list[int] = []
    schedule.rebuild_if_due("veo3")  # no table yet: its first poll makes it
    assert not schedule.has_table("veo3")
    schedule.next_delay(model="veo3", age=0.0, polls=0, rng=random.Random(1))
    schedule.on_rebuild_due = lambda: due.append(1)
    schedule.rebuild_if_due("veo3")
    assert due == []
    for seconds in lognormal(random.Random(3), 20, 100.0, 0.3):
        schedule.learner.observe("veo3", seconds)
    schedule.rebuild_if_due("veo3")
    assert due == [1]
    while schedule.step():
        pass
    assert schedule.revisions()["veo3"] == 1


# -- a service far faster than its prior -------------------------------------------------


def _median_of(learner: DurationLearner, model: str | None) -> float:
    return math.exp(_log_quantiles(learner.masses(model), (0.5,))[0])


def test_a_success_the_prior_calls_impossible_moves_the_estimate_to_it() -> None:
    """One success at 1 s (veo3_fast's prior: 150 s, and under 27 s
    impossible) moves the model's estimate there at once: one finish
    against the prior's 20 tasks moved it nowhere, and a test server's
    tasks were polled at 24-40 s for the first ten of a session."""
    learner = DurationLearner()
    assert not learner.rebased("veo3_fast")
    learner.observe("veo3_fast", 1.0)
    assert learner.rebased("veo3_fast")
    assert _median_of(learner, "veo3_fast") < 3.0
    learner.observe("veo3_fast", 0.0)  # a render under a second (whole-second times)
    assert _median_of(learner, "veo3_fast") < 3.0


def test_a_quick_failure_or_a_success_at_documented_times_moves_nothing() -> None:
    """Failures in seconds are the early failures' share, not the model's
    speed; a success past the floor is the prior's to explain."""
    learner = DurationLearner()
    learner.observe("veo3_fast", 1.0, failed=True)
    learner.observe("veo3_fast", 30.0)  # early for veo3_fast, not impossible (27 s)
    assert not learner.rebased("veo3_fast")
    assert _median_of(learner, "veo3_fast") > 60.0


def test_failures_at_once_bring_the_early_probe_to_the_first_seconds() -> None:
    """A failure at 0 s (a test server failing every task) while no task
    was seen running past 5 s: the fast failures' span moves to it (1 s
    against the documented 5-40 s's middle, 14 s), the table is rebuilt at
    once and counts a move (waiting polls are planned again), and a fresh
    task's first poll comes in seconds, not at the prior's 40 s. The
    renders' estimate stays. Once a task is seen running past 5 s (a
    service), the documented span is back, and that is a move too."""
    schedule = AdaptivePolicy(jitter=0, explorers=0).schedule()
    learner, rng = schedule.learner, random.Random(0)
    assert schedule.next_delay(model="veo3_fast", age=0.0, polls=0, rng=rng) >= 30.0
    learner.observe("veo3_fast", 0.0, failed=True)
    assert learner.failure_scale() == pytest.approx(1.0 / math.sqrt(200.0))
    assert schedule.next_delay(model="veo3_fast", age=0.0, polls=0, rng=rng) <= 4.0
    assert schedule.revisions()["veo3_fast"] == 1
    assert not learner.rebased("veo3_fast")
    learner.survived("veo3_fast", 0.0, 12.0)
    assert learner.failure_scale() is None
    assert schedule.next_delay(model="veo3_fast", age=0.0, polls=0, rng=rng) >= 30.0
    assert schedule.revisions()["veo3_fast"] == 2


def test_failures_in_the_documented_span_or_outnumbered_move_no_probe() -> None:
    """A failure at 6 s is a fast failure as documented (and its task ran
    past 5 s); failures under 5 s count only while they outnumber the tasks
    seen running past 5 s (every model's), and then by the geometric mean
    of their times, a second at least."""
    learner = DurationLearner()
    learner.observe("veo3_fast", 6.0, failed=True)
    assert learner.failure_scale() is None
    learner.survived("veo3_fast", 0.0, 30.0)
    learner.survived("veo3", 0.0, 30.0)  # three past 5 s
    for seconds in (1.0, 2.0, 4.0):
        learner.observe("veo3", seconds, failed=True)
        assert learner.failure_scale() is None  # not outnumbered yet
    learner.observe("veo3_fast", 0.0, failed=True)
    assert learner.failure_scale() == pytest.approx(8.0**0.25 / math.sqrt(200.0))
    learner.observe("veo3_fast", 3.0)  # a success that soon is the rebase's, not this
    assert learner.failure_scale() == pytest.approx(8.0**0.25 / math.sqrt(200.0))


def test_tasks_seen_running_past_the_floor_outweigh_a_quick_success() -> None:
    """An odd success in seconds among tasks seen still running at a minute
    (a service as documented) does not move the estimate: the quick
    successes must outnumber the tasks seen running past the floor."""
    learner = DurationLearner()
    learner.observe("veo3_fast", 2.0)
    assert learner.rebased("veo3_fast")
    learner.survived("veo3_fast", 0.0, 40.0)
    assert not learner.rebased("veo3_fast")  # one each: not outnumbered
    assert _median_of(learner, "veo3_fast") > 60.0
    learner.observe("veo3_fast", 1.0)
    assert learner.rebased("veo3_fast")
    # A task seen running at 10 s, then done at 12 s: under the floor all along.
    learner.survived("veo3_fast", 0.0, 10.0)
    learner.observe("veo3_fast", 12.0, running_until=10.0)
    assert learner.rebased("veo3_fast")
    learner.survived("veo3_fast", 0.0, 60.0)
    learner.observe("veo3_fast", 150.0, running_until=20.0)  # ran through 27 s
    learner.survived("veo3_fast", 0.0, 90.0)
    assert not learner.rebased("veo3_fast")


def test_a_model_with_no_finish_of_its_own_follows_every_models_quick_successes() -> None:
    """A test server renders every model in seconds: a model none of whose
    tasks finished yet starts from the quick successes of every model
    (veo3's prior, 300 s, moved there), until its own finishes speak."""
    learner = DurationLearner()
    learner.observe("veo3_fast", 1.0)
    assert learner.rebased("veo3")
    assert _median_of(learner, "veo3") < 3.0
    learner.observe("veo3", 280.0)
    assert not learner.rebased("veo3")
    assert _median_of(learner, "veo3") > 100.0


def test_a_quick_success_moves_the_table_at_once_and_counts_a_revision() -> None:
    """The table is rebuilt as soon as the estimate is rebased (not once
    some eight more finishes have grown the evidence), and the move counts
    as a revision, so queued polls are planned again."""
    schedule = AdaptivePolicy(jitter=0.0).schedule()
    assert schedule.table("veo3_fast").fresh[0] >= 30.0
    assert schedule.revisions() == {"veo3_fast": 0}
    schedule.learner.observe("veo3_fast", 1.0)
    assert schedule.table("veo3_fast").fresh[0] <= 4.0
    assert schedule.revisions() == {"veo3_fast": 1}


def _planned_requests(schedule: AdaptiveSchedule, model: str) -> float:
    """The expected requests a task followed from creation spends on ``model``'s table."""
    table = schedule.table(model)
    return _expected_requests(table.next_index, table.done)


def test_a_test_servers_table_is_held_to_fixed_polling_at_its_pace() -> None:
    """Against renders of 1-2 s, fixed 30 s polling spends one request a
    task: held to that, the table polled once, past the tail the doubt
    widens (ids handed in were seen at 8-33 s). Renders under 0.02x the
    documented times come from no video model: its yardstick is fixed
    polling at the service's pace (at least every min_gap), and the table
    polls in the first seconds."""
    schedule = AdaptivePolicy(jitter=0.0).schedule()
    learner = schedule.learner
    assert learner.rebased_scale("veo3_fast") is None
    for _ in range(3):
        learner.survived("veo3_fast", 0.0, 0.5)  # handed in: running at their first polls
    learner.observe("veo3_fast", 1.0, running_until=0.5)
    scale = learner.rebased_scale("veo3_fast")
    assert scale == pytest.approx(1.0 / 150.0, rel=0.01)
    fresh = schedule.table("veo3_fast").fresh
    assert fresh[0] <= 4.0
    assert fresh[1] <= 10.0, fresh


def test_a_fast_service_that_is_no_test_server_keeps_fixed_30_s_pollings_budget() -> None:
    """Renders of 10 s (0.07x veo3_fast's documented times) move the
    estimate there too, but keep fixed 30 s polling's budget: a file of
    such renders spent 3.2-3.9x its requests at the service's pace."""
    schedule = AdaptivePolicy(jitter=0.0).schedule()
    schedule.learner.observe("veo3_fast", 10.0)
    assert schedule.learner.rebased_scale("veo3_fast") == pytest.approx(10.0 / 150.0, rel=0.01)
    assert _planned_requests(schedule, "veo3_fast") < 1.1


@pytest.mark.parametrize("scale", [1.0, 0.5, 0.05, 0.001])
def test_the_fast_failures_share_keeps_the_total_and_its_span(scale: float) -> None:
    """The prior's fast failures move ``share`` of the mass, uniform over
    5-40 s times ``scale`` (a rebased prior's: a service 100x faster fails
    in a second); a span under a second lands in bin 0."""
    masses = [0.0] * _LOG_BINS
    masses[_LOG_BINS // 2] = 1.0
    out = _with_fast_failures(masses, 0.1, scale)
    assert sum(out) == pytest.approx(1.0, abs=0.002)
    early = [k for k, mass in enumerate(out) if mass > 0 and k != _LOG_BINS // 2]
    lo, hi = 5.0 * scale, 40.0 * scale
    for k in early:
        assert math.exp(k * _LOG_BIN) <= max(hi, 1.0)
        assert math.exp((k + 1) * _LOG_BIN) >= lo
    if hi < 1.0:
        assert early == [0]
        assert out[0] == pytest.approx(0.1)


def test_a_rebuild_due_while_one_runs_starts_when_it_ends() -> None:
    """A finish that makes a table due while a rebuild is under way (the
    explorer's task found done while the first tables are made) starts
    another when that one ends, if it did not take the finish in: the
    tasks queued on the old table would wait out its first delay (40 s)."""
    schedule = AdaptivePolicy(jitter=0.0).schedule()
    schedule.table("veo3_fast")
    for seconds in lognormal(random.Random(3), 20, 150.0, 0.3):
        schedule.learner.observe("veo3_fast", seconds)
    told: list[int] = []
    schedule.on_rebuild_due = lambda: told.append(1)
    old = schedule.table("veo3_fast")  # due: a rebuild starts, in steps
    assert told == [1]
    assert schedule.step()  # it has read what it is built on
    for _ in range(25):
        schedule.learner.observe("veo3_fast", 1.0)  # a service turned test server
    schedule.rebuild_if_due("veo3_fast")  # due again, while the rebuild runs
    steps = 0
    while schedule.step():
        steps += 1
    table = schedule.table("veo3_fast")
    assert table is not old
    assert table.basis.rebased
    assert table.fresh[0] <= 4.0
    assert steps > 2


# -- the explorer ----------------------------------------------------------------------


def _explored_ages(schedule: AdaptiveSchedule, *, explorer: bool, until: float) -> list[float]:
    """The ages of a fresh veo3_fast task's polls up to ``until``, none finding it done."""
    rng = random.Random(0)
    ages, age, polls = [], 0.0, 0
    while True:
        age += schedule.next_delay(
            model="veo3_fast", age=age, polls=polls, rng=rng, explorer=explorer
        )
        if age > until:
            return ages
        ages.append(age)
        polls += 1


def test_an_explorer_is_also_polled_at_2_4_8_16_s_then_follows_its_table() -> None:
    schedule = AdaptivePolicy(jitter=0.0).schedule()
    table_polls = _explored_ages(schedule, explorer=False, until=200.0)
    explored = _explored_ages(schedule, explorer=True, until=200.0)
    assert table_polls[0] >= 30.0  # the table's first poll: the early probe
    assert explored[:4] == pytest.approx([2.0, 4.0, 8.0, 16.0])
    # Then the table's own continuation of a poll made at 16 s (either of
    # the two solutions it mixes to spend the budget).
    table = schedule.table("veo3_fast")
    assert explored[4] in {table.next_index[8] * 2.0, table.costly_index[8] * 2.0}
    assert explored[4] > 30.0


def test_explorers_are_granted_to_the_first_young_tasks_until_one_finishes() -> None:
    schedule = AdaptivePolicy(explorers=2).schedule()
    assert not schedule.explores(30.0)  # too old to learn the first seconds from
    assert not schedule.explores(None)  # age unknown
    assert not schedule.explores(20.0)  # its next explorer poll (32 s) is too late
    assert schedule.explores(0.0)
    assert schedule.explores(12.5)  # polled at 16 s
    assert not schedule.explores(0.0)  # both used
    other = AdaptivePolicy(explorers=5).schedule()
    other.learner.observe("veo3_fast", 140.0)
    assert not other.explores(0.0)  # something finished: the tables learn from it
    assert not AdaptivePolicy(explorers=0).schedule().explores(0.0)


@pytest.mark.parametrize(
    ("value", "error"), [(-1, ValueError), ("1", TypeError), (1.5, TypeError), (True, TypeError)]
)
def test_explorers_must_be_a_count(value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="explorers"):
        AdaptivePolicy(explorers=value)  # type: ignore[arg-type]
