"""The pure request budget: admission rules tested without an event loop."""

from __future__ import annotations

import math
import random

import pytest

from veo_async._limits import MAX_PAUSE, RequestBudget


def test_window_caps_in_flight() -> None:
    """No more than ``concurrency`` requests may hold a slot; a release frees one."""
    budget = RequestBudget(3)
    for _ in range(3):
        assert budget.blocked_until(0.0) is None
        budget.start(0.0)
    assert budget.blocked_until(0.0) == math.inf
    budget.finish()
    assert budget.blocked_until(0.0) is None
    assert budget.max_in_flight == 3


@pytest.mark.parametrize("rate", [1.0, 2.0, 5.0, 2.5, 10.0])
def test_no_sliding_second_sees_more_than_rate_starts(rate: float) -> None:
    """Greedy starts over 10 s: every sliding one-second window holds at most ``rate``."""
    budget = RequestBudget(1000, rate)
    starts: list[float] = []
    now = 0.0
    while now < 10.0:
        blocked = budget.blocked_until(now)
        if blocked is None:
            budget.start(now)
            budget.finish()
            starts.append(now)
        else:
            now = blocked
    for first in starts:
        in_window = [t for t in starts if first <= t < first + 1.0]
        assert len(in_window) <= rate
    # ... and the rate is used, not starved: at least floor(rate) per second.
    assert len(starts) >= math.floor(rate) * 10


def test_fractional_rate_below_one_spaces_starts() -> None:
    """rate=0.5 allows one start every 2 s."""
    budget = RequestBudget(10, 0.5)
    budget.start(0.0)
    budget.finish()
    assert budget.blocked_until(1.0) == pytest.approx(2.0)
    assert budget.blocked_until(2.0) is None


def _limit_met(
    budget: RequestBudget, now: float, granted_at: float, retry_after: float, in_flight: int = 0
) -> float:
    """A 429 at ``now`` for a request granted at ``granted_at``, and two more
    for requests in flight with it (its echoes: our own load met a limit, not
    chance), with ``in_flight`` requests started at ``granted_at`` and
    finished after. Returns the pause they began (an echo may lengthen it a
    little)."""
    for _ in range(in_flight):
        budget.start(granted_at)
    budget.on_rate_limited(now, granted_at=granted_at, retry_after=retry_after)
    for _ in range(2):
        budget.on_rate_limited(now, granted_at=granted_at - 0.01, retry_after=retry_after)
    for _ in range(in_flight):
        budget.finish(now)
    return budget.paused_until - now


def test_rate_limited_pauses_and_shrinks_the_window() -> None:
    """A 429 pauses every start for Retry-After (plus at most 20% jitter) and
    drops the window to one probe, which grows back one answer at a time up
    to half the requests in flight when the 429 came (at least 2), then one
    per window of answers, once its echoes show our load met a limit."""
    budget = RequestBudget(16, rng=random.Random(1))
    pause = _limit_met(budget, 1.0, granted_at=0.0, retry_after=10.0, in_flight=12)
    assert 10.0 <= pause <= 12.0
    assert budget.blocked_until(5.0) == pytest.approx(1.0 + pause)
    assert budget.window == 1
    assert budget.blocked_until(1.0 + pause) is None
    windows = []
    for _ in range(40):
        budget.on_answer(granted_at=1.0 + pause)
        windows.append(budget.window)
    # Slow start to 6 (half of 12), then 7 after 6 more answers, 8 after 7...
    assert windows[:5] == [2, 3, 4, 5, 6]
    assert windows[5:11] == [6] * 5 + [7]
    assert windows[11:18] == [7] * 6 + [8]
    assert windows[-1] < 16
    assert budget.rate_limited == 3
    assert budget.pauses >= 1  # (an echo's jitter may lengthen the first's)


def test_after_a_429_the_window_grows_back_to_the_full_concurrency() -> None:
    """The slower growth past the ceiling still reaches ``concurrency``; and a
    limit met with 3 requests in flight leaves a ceiling of 2, not 1."""
    budget = RequestBudget(8, rng=random.Random(1))
    pause = _limit_met(budget, 1.0, granted_at=0.0, retry_after=1.0, in_flight=3)
    answers = 0
    while budget.window < 8:
        budget.on_answer(granted_at=1.0 + pause)
        answers += 1
    # 1 -> 2 by slow start, then 2 + 3 + ... + 7 answers for 3 ... 8.
    assert answers == 1 + sum(range(2, 8))


def test_answers_to_requests_sent_before_the_pause_do_not_widen_the_window() -> None:
    """After a 429, answers to requests granted before the pause began (in
    flight through it) neither widen the window nor end the strike run: the
    pause's end meets one probe, not a herd."""
    budget = RequestBudget(4, rng=random.Random(1))
    for _ in range(4):
        budget.start(0.0)
    pause = budget.on_rate_limited(1.0, granted_at=0.0, retry_after=10.0)
    for _ in range(4):
        budget.finish()
    for _ in range(3):
        budget.on_answer(granted_at=0.0)
    assert budget.window == 1
    end = 1.0 + pause
    assert budget.blocked_until(end) is None
    assert budget.start(end) is False  # the probe fills the window of one
    assert budget.blocked_until(end) == math.inf
    budget.finish()
    budget.on_answer(granted_at=end)
    assert budget.window == 2


def test_a_request_granted_in_the_clock_tick_its_pause_began_was_sent_before_it() -> None:
    """A clock of coarse ticks (loop.time() on Windows before Python 3.13:
    15.6 ms) reads the same for a grant and a 429 answered in that tick: the
    request was sent before the pause, for every rule alike. Its 429 is an
    echo (no new strike), its answer does not widen the window nor end the
    strike run, and, not sent yet, it waits the pause out."""
    budget = RequestBudget(4, rng=random.Random(1))
    for _ in range(2):
        budget.start(1.0)
    first = budget.on_rate_limited(1.0, granted_at=1.0, retry_after=None)  # the tick's 429
    assert budget.paused_after(1.0, now=1.5)  # granted in that tick: not sent during the pause
    budget.finish()
    budget.finish()
    assert not budget.on_answer(granted_at=1.0)  # answered during the pause
    assert budget.window == 1
    end = 1.0 + first
    # The probe after the pause meets a 429: the second strike of the run.
    assert budget.on_rate_limited(end, granted_at=end, retry_after=None) >= 2.0


def test_answers_to_requests_sent_before_the_pause_do_not_end_the_strike_run() -> None:
    """A 429 for the probe after a pause is a second strike (a doubled pause),
    whatever the requests sent before the pause answered meanwhile."""
    budget = RequestBudget(4, rng=random.Random(2))
    first = budget.on_rate_limited(1.0, granted_at=0.0, retry_after=None)
    budget.on_answer(granted_at=0.5)
    end = 1.0 + first
    assert budget.on_rate_limited(end + 0.1, granted_at=end, retry_after=None) >= 2.0


@pytest.mark.parametrize("retry_after", [86400.0, 1e308])
def test_retry_after_is_capped(retry_after: float) -> None:
    """A Retry-After of a day (or 1e308) pauses at most MAX_PAUSE, jitter
    included, and the jitter is taken off the cap: sessions sharing an account
    do not all resume at 300 s exactly (clipped, every capped pause was 300.0)."""
    pauses = set()
    for seed in range(5):
        budget = RequestBudget(4, rng=random.Random(seed))
        pause = budget.on_rate_limited(0.0, granted_at=0.0, retry_after=retry_after)
        assert MAX_PAUSE * 0.8 <= pause <= MAX_PAUSE
        assert budget.paused_until == pause
        pauses.add(pause)
    assert len(pauses) == 5


def test_a_retry_after_of_now_backs_off_as_none_does() -> None:
    """``Retry-After: 0`` (or a negative one, or a date past, read as 0) paused
    nothing: every create refused was resent at once, six in 3 ms. It backs
    off as a 429 without the header does: 1, 2, 4 s... a strike."""
    budget = RequestBudget(4, rng=random.Random(3))
    pauses = []
    now = 0.0
    for _ in range(3):
        now += 100.0
        pauses.append(budget.on_rate_limited(now, granted_at=now, retry_after=0.0))
    for strike, pause in enumerate(pauses):
        assert 2**strike <= pause <= 2**strike * 1.2
    assert budget.paused_until >= now + 4.0


def test_strikes_double_the_pause_and_an_answer_resets_them() -> None:
    """Without Retry-After consecutive strikes pause 1, 2, 4 ... s; an answer resets."""
    budget = RequestBudget(4, rng=random.Random(3))
    pauses = []
    now = 0.0
    for _ in range(4):
        now += 100.0  # each request granted after the previous pause began
        pauses.append(budget.on_rate_limited(now, granted_at=now, retry_after=None))
    for strike, pause in enumerate(pauses):
        assert 2**strike <= pause <= 2**strike * 1.2
    budget.on_answer(granted_at=now + pauses[-1])  # the probe after the last pause
    assert 1.0 <= budget.on_rate_limited(1000.0, granted_at=1000.0, retry_after=None) <= 1.2


def test_echo_429s_are_not_new_strikes() -> None:
    """A 429 for a request sent before the pause began does not escalate it."""
    budget = RequestBudget(4, rng=random.Random(4))
    budget.on_rate_limited(10.0, granted_at=9.0, retry_after=None)
    echo = budget.on_rate_limited(10.5, granted_at=9.5, retry_after=None)
    assert echo <= 1.2  # still the first strike's 1 s, not 2 s


def test_seeded_jitter_is_reproducible() -> None:
    """The jitter comes from the injected random source only."""
    pauses = []
    for _ in range(2):
        budget = RequestBudget(4, rng=random.Random(42))
        pauses.append(budget.on_rate_limited(0.0, granted_at=0.0, retry_after=5.0))
    assert pauses[0] == pauses[1]


@pytest.mark.parametrize(("rate", "period"), [(20.0, 10.0), (3.0, 2.5), (0.5, 10.0)])
def test_no_sliding_period_sees_more_than_rate_starts(rate: float, period: float) -> None:
    """With ``period``, every sliding window of that length holds at most ``rate`` starts,
    and the rate is used: the creation budget's 20 per 10 s."""
    budget = RequestBudget(1000, rate, period=period)
    starts: list[float] = []
    now = 0.0
    horizon = 10 * period
    while now < horizon:
        blocked = budget.blocked_until(now)
        if blocked is None:
            budget.start(now)
            budget.finish()
            starts.append(now)
        else:
            now = blocked
    for first in starts:
        assert len([t for t in starts if first <= t < first + period]) <= max(1, rate)
    assert len(starts) >= (math.floor(rate) * 10 if rate >= 1 else 10 * rate)


def test_period_default_keeps_the_per_second_rule() -> None:
    """period=1 (the default) is the per-second rate of the polling budget."""
    budget = RequestBudget(10, 2.0)
    assert budget.period == 1.0
    budget.start(0.0)
    budget.start(0.0)
    assert budget.blocked_until(0.5) == pytest.approx(1.0)


@pytest.mark.parametrize("period", [0.0, -1.0, math.inf, math.nan])
def test_period_must_be_positive_and_finite(period: float) -> None:
    """A zero, negative or non-finite period is refused."""
    with pytest.raises(ValueError, match="period"):
        RequestBudget(1, 1.0, period=period)


def test_count_finish_keeps_a_start_in_the_window_until_it_finishes() -> None:
    """With count_finish, a request fills the window while in flight and for
    ``period`` after it finished: the service, counting arrivals, never sees more."""
    budget = RequestBudget(100, 2.0, period=10.0, count_finish=True)
    budget.start(0.0)
    budget.start(0.0)
    assert budget.blocked_until(50.0) == math.inf  # both still in flight
    budget.finish(3.0)
    assert budget.blocked_until(5.0) == pytest.approx(13.0)
    budget.finish(4.0)
    assert budget.blocked_until(13.0) is None
    budget.start(13.0)
    assert budget.blocked_until(13.5) == pytest.approx(14.0)


def test_a_request_given_up_before_sending_takes_no_place_in_the_window() -> None:
    """With count_finish, a slot given back by a request never sent (cancelled
    while it waited for its other slot) does not count: the service never saw
    it, and the next create need not wait a whole period for it."""
    budget = RequestBudget(100, 1.0, period=10.0, count_finish=True)
    budget.start(0.0)
    budget.finish(1.1, sent=False)
    assert budget.blocked_until(1.2) is None
    budget.start(1.2)
    budget.finish(2.0)
    assert budget.blocked_until(3.0) == pytest.approx(12.0)


def _state(budget: RequestBudget) -> tuple[object, ...]:
    return (budget.in_flight, budget.max_in_flight, budget.window, budget.blocked_until(50.0))


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: RequestBudget(3, rng=random.Random(0)), id="window"),
        pytest.param(lambda: RequestBudget(3, 2.0, rng=random.Random(0)), id="rate"),
        pytest.param(
            lambda: RequestBudget(3, 2.0, count_finish=True, rng=random.Random(0)),
            id="count-finish",
        ),
    ],
)
def test_try_start_is_blocked_until_then_start(make: object) -> None:
    """try_start starts exactly when blocked_until says a start may go, keeping the
    same books as start (also through a 429's pause and the shrunk window after it)."""
    assert callable(make)
    ours, reference = make(), make()
    rng = random.Random(7)
    now = 0.0
    for step in range(300):
        now += rng.choice([0.0, 0.0, 0.1, 0.6])
        if step == 100:  # a 429: a pause, then a window of one growing back
            for budget in (ours, reference):
                budget.on_rate_limited(now, now, 1.0)
        action = rng.random()
        if action < 0.6:
            allowed = reference.blocked_until(now) is None
            if allowed:
                reference.start(now)
            assert ours.try_start(now) is allowed
        elif action < 0.9 and reference.in_flight:
            ours.finish(now)
            reference.finish(now)
        else:
            ours.on_answer(now)
            reference.on_answer(now)
        assert _state(ours) == _state(reference)


def _greedy_starts(budget: RequestBudget, start: float, end: float, step: float = 0.001) -> int:
    """Start (and at once finish) every request the budget lets start from
    ``start`` to ``end``, looking every ``step`` seconds; how many started."""
    started = 0
    now = start
    while now < end:
        while budget.try_start(now):
            budget.finish(now)
            started += 1
        now += step
    return started


def _taught_fifty_a_second(seed: int, retry_after: float) -> tuple[RequestBudget, float]:
    """A budget that started 100 requests over a second, then met a 429:
    it learned 50 a second. Returns it and the end of the pause."""
    budget = RequestBudget(64, rng=random.Random(seed))
    for index in range(100):
        budget.start(index / 100)
        budget.finish(index / 100)
    pause = _limit_met(budget, 1.0, granted_at=1.0, retry_after=retry_after)
    assert budget.learned_rate == pytest.approx(50.0, rel=0.05)
    return budget, 1.0 + pause


def test_a_429_teaches_a_rate_of_half_the_starts_before_it() -> None:
    """A limit of requests a second is not one of requests in flight: after a
    429 the budget also keeps to half the starts a second of the second
    before it (a service limiting polls to 50 a second answered 51 % of a
    session's requests with 429 when only the window shrank)."""
    budget, resume = _taught_fifty_a_second(seed=4, retry_after=0.5)
    for _ in range(64):  # the window back to full: only the rate holds now
        budget.on_answer(granted_at=resume)
    # 50-55 a second (growing from the pause's end), plus a first burst (a
    # fifth of a second's worth at most).
    first_second = _greedy_starts(budget, resume, resume + 1.0)
    assert 45 <= first_second <= 72, first_second
    # It grows back by 10 % a second, compounded ...
    later = _greedy_starts(budget, resume + 10.0, resume + 11.0)
    assert 1.1**9 * 45 <= later <= 1.1**11 * 72, later
    # ... and once grown eight times over, it is dropped.
    assert budget.blocked_until(resume + 25.0) is None
    assert budget.learned_rate is None


def test_no_rate_is_learned_from_a_first_burst_or_with_a_rate_given() -> None:
    """32 requests in the session's first 10 ms are no rate of 32 a second: a
    429 then teaches a rate over the time since the first start (it starved
    a batch of 2,000 ids at 16 a second). A 429 when nothing started lately
    teaches none, nor one when the session was given a ``rate``."""
    budget = RequestBudget(32, rng=random.Random(5))
    _limit_met(budget, 0.01, granted_at=0.0, retry_after=0.1, in_flight=32)
    learned = budget.learned_rate
    assert learned is not None
    assert learned >= 1000
    idle = RequestBudget(4, rng=random.Random(5))
    _limit_met(idle, 10.0, granted_at=9.0, retry_after=0.1)
    assert idle.learned_rate is None
    given = RequestBudget(4, rate=10.0, rng=random.Random(5))
    for index in range(10):
        given.start(index / 10)
        given.finish(index / 10)
    _limit_met(given, 1.0, granted_at=0.95, retry_after=0.1)
    assert given.learned_rate is None


@pytest.mark.parametrize("retry_after", [250.0, 280.0, 299.0])
def test_a_pause_is_never_shorter_than_a_retry_after_under_the_cap(retry_after: float) -> None:
    """Jittered over the cap, a pause is drawn between the Retry-After and the
    cap: taken off the cap, 64 % of the pauses asked for 280 s were shorter."""
    for seed in range(50):
        budget = RequestBudget(4, rng=random.Random(seed))
        pause = budget.on_rate_limited(0.0, granted_at=0.0, retry_after=retry_after)
        assert retry_after <= pause <= MAX_PAUSE


def test_a_learned_rate_grows_from_the_pauses_end_and_a_further_429_halves_it() -> None:
    """The learned rate grows from when requests start again: grown through a
    30 s pause from the 429 it was gone when the pause ended. A 429 to the
    probe after the pause says the pause was too short, not the rate too
    high: the rate stays (half the starts of the second before, the probe
    alone, was the floor of 1 a second). A 429 after more went out since
    sets half of what went out (at most the rate allowed)."""
    budget, resume = _taught_fifty_a_second(seed=6, retry_after=30.0)
    assert budget.blocked_until(resume) is None  # the pause is over; the rate holds
    assert budget.learned_rate == pytest.approx(50.0, rel=0.05)
    budget.start(resume)  # the probe
    pause = budget.on_rate_limited(resume + 0.1, granted_at=resume, retry_after=1.0)
    budget.finish(resume + 0.1)
    assert budget.learned_rate == pytest.approx(50.0, rel=0.05)
    resume += 0.1 + pause
    for index in range(30):  # 30 a second for a second, then a 429
        budget.start(resume + index / 30)
        budget.finish(resume + index / 30)
    _limit_met(budget, resume + 1.0, granted_at=resume + 0.99, retry_after=1.0)
    assert budget.learned_rate == pytest.approx(15.0, rel=0.1)


def test_with_a_rate_given_the_window_grows_back_one_per_answer_to_the_full_width() -> None:
    """The ceiling after a 429 is for sessions without a rate: with one (the
    creation budget's 20 per 10 s), the rate keeps to the limit, and the
    window grows back one per answer all the way, as before."""
    budget = RequestBudget(4, rate=20, period=10.0, count_finish=True, rng=random.Random(7))
    for _ in range(4):
        budget.start(0.0)
    pause = budget.on_rate_limited(0.5, granted_at=0.0, retry_after=1.0)
    for _ in range(4):
        budget.finish(0.5)
    windows = []
    for _ in range(4):
        budget.on_answer(granted_at=0.5 + pause)
        windows.append(budget.window)
    assert windows == [2, 3, 4, 4]
    assert budget.learned_rate is None


def test_a_429_alone_teaches_nothing_and_keeps_the_window_s_growth() -> None:
    """A 429 whose echoes do not come (the other requests in flight were
    answered) is chance or another client's load, not a limit our load met:
    it pauses, but teaches no rate and leaves the window growing back to the
    full width one per answer. Cut at each one, a session with no limit at
    all fell to a few requests a second under 1 random 429 in 200 answers."""
    budget = RequestBudget(8, rng=random.Random(9))
    for index in range(100):
        budget.start(index / 100)
        budget.finish(index / 100)
    for _ in range(8):
        budget.start(1.0)
    pause = budget.on_rate_limited(1.0, granted_at=1.0, retry_after=None)
    budget.on_rate_limited(1.0, granted_at=0.99, retry_after=None)  # one echo only
    for _ in range(8):
        budget.finish(1.0)
    assert budget.learned_rate is None
    windows = []
    for _ in range(8):
        budget.on_answer(granted_at=1.0 + pause)
        windows.append(budget.window)
    assert windows == [2, 3, 4, 5, 6, 7, 8, 8]
