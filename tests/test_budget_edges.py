"""The request budget: behaviour no other test pinned (pure, no event loop)."""

from __future__ import annotations

import random

import pytest

from veo_async._limits import MAX_PAUSE, RequestBudget


def _strikes(budget: RequestBudget, count: int) -> list[float]:
    """``count`` 429s without Retry-After, each for a request granted after
    the previous pause began (strikes): their pauses."""
    return [
        budget.on_rate_limited(1000.0 * n, granted_at=1000.0 * n, retry_after=None)
        for n in range(1, count + 1)
    ]


def test_the_backoff_without_retry_after_stops_doubling_at_a_minute() -> None:
    """1, 2, 4 ... 32 s, then 60 s (plus jitter): never 64, 128 ... s."""
    pauses = _strikes(RequestBudget(4, rng=random.Random(3)), 10)
    for strike, pause in enumerate(pauses[:6]):
        assert 2**strike <= pause <= 2**strike * 1.2
    for pause in pauses[6:]:
        assert 60.0 <= pause <= 72.0


@pytest.mark.parametrize("retry_after", [10.0, 280.0])
def test_a_retry_after_under_the_cap_is_spread_upward_never_cut(retry_after: float) -> None:
    """Sessions told the same Retry-After must not resume together: at least
    it, at most 20 % more (and the cap), a different pause per seed."""
    pauses = set()
    for seed in range(5):
        budget = RequestBudget(4, rng=random.Random(seed))
        pause = budget.on_rate_limited(0.0, granted_at=0.0, retry_after=retry_after)
        assert retry_after <= pause <= min(retry_after * 1.2, MAX_PAUSE)
        pauses.add(pause)
    assert len(pauses) == 5


def _limit_met(budget: RequestBudget, now: float, granted_at: float, in_flight: int = 0) -> None:
    """A strike at ``now`` and two echoes, ``in_flight`` requests in flight."""
    for _ in range(in_flight):
        budget.start(granted_at)
    budget.on_rate_limited(now, granted_at=granted_at, retry_after=1.0)
    for _ in range(2):
        budget.on_rate_limited(now, granted_at=granted_at - 1e-6, retry_after=1.0)
    for _ in range(in_flight):
        budget.finish(now)


def _started(budget: RequestBudget, times: list[float]) -> None:
    for at in times:
        budget.start(at)
        budget.finish(at)


def test_a_429_alone_after_a_full_recovery_regrows_by_slow_start() -> None:
    """Grown back to ``concurrency`` after a limit met (ceiling 6), a later
    lone 429 regrows one per answer all the way, not slowly past 6."""
    budget = RequestBudget(16, rng=random.Random(1))
    _limit_met(budget, 1.0, granted_at=0.0, in_flight=12)
    while budget.window < 16:
        budget.on_answer(granted_at=10.0)
    pause = budget.on_rate_limited(100.0, granted_at=100.0, retry_after=1.0)  # alone
    windows = []
    for _ in range(16):
        budget.on_answer(granted_at=100.0 + pause)
        windows.append(budget.window)
    assert windows == [*range(2, 17), 16]


@pytest.mark.parametrize(("echoes", "limit"), [(2, False), (8, True)])
def test_among_256_in_flight_two_echoes_are_chance_eight_a_limit(echoes: int, limit: bool) -> None:
    """Echoes count as a limit met only when they are 3 % of those in flight."""
    budget = RequestBudget(256, rng=random.Random(2))
    _started(budget, [n / 200 for n in range(200)])
    for _ in range(256):
        budget.start(1.0)
    budget.on_rate_limited(1.0, granted_at=1.0, retry_after=1.0)
    for _ in range(echoes):
        budget.on_rate_limited(1.0, granted_at=0.99, retry_after=1.0)
    for _ in range(256):
        budget.finish(1.0)
    assert (budget.learned_rate is not None) is limit
    if not limit:
        for _ in range(255):
            budget.on_answer(granted_at=5.0)
        assert budget.window == 256


def _taught_fifty_a_second(retry_after: float) -> tuple[RequestBudget, float]:
    """100 starts over a second, then a limit met at 1.0: 50 a second learned."""
    budget = RequestBudget(64, rng=random.Random(4))
    _started(budget, [n / 100 for n in range(100)])
    budget.on_rate_limited(1.0, granted_at=1.0, retry_after=retry_after)
    for _ in range(2):
        budget.on_rate_limited(1.0, granted_at=0.99, retry_after=retry_after)
    assert budget.learned_rate == pytest.approx(50.0, rel=0.05)
    return budget, budget.paused_until


def test_a_limit_met_again_soon_after_a_short_pause_halves_the_rate_learned() -> None:
    """The second before holds the burst that met the first limit (~90/s):
    the new rate is half the rate allowed (~25), not half of that burst."""
    budget, resume = _taught_fifty_a_second(retry_after=0.5)
    _started(budget, [resume])
    _limit_met(budget, resume + 0.1, granted_at=resume)
    assert budget.learned_rate is not None
    assert budget.learned_rate <= 50.0 * 1.1 / 2


def test_a_rate_learned_counts_what_went_out_since_the_latest_pause() -> None:
    """After the probe's pause, 20 starts in 0.5 s are 40 a second: a limit
    met then sets 20 a second, not 10 (half that second was pause)."""
    budget, resume = _taught_fifty_a_second(retry_after=30.0)
    budget.start(resume)  # the probe, refused: a strike, a second pause
    budget.on_rate_limited(resume + 0.1, granted_at=resume, retry_after=1.0)
    budget.finish(resume + 0.1)
    resume = budget.paused_until
    _started(budget, [resume + n / 40 for n in range(20)])
    _limit_met(budget, resume + 0.5, granted_at=resume + 0.49)
    assert budget.learned_rate == pytest.approx(20.0, rel=0.1)


def test_a_rate_learned_is_never_below_one_a_second() -> None:
    """A limit met at one request every 1.5 s teaches 1 a second, not 0.25."""
    budget = RequestBudget(8, rng=random.Random(5))
    _started(budget, [0.0, 1.5, 3.0, 4.5])
    _limit_met(budget, 6.0, granted_at=5.9)
    assert budget.learned_rate == pytest.approx(1.0)


@pytest.mark.parametrize(("more", "expected"), [(True, 50.0), (False, 25.0)])
def test_the_rate_learned_is_half_the_starts_of_the_second_before(
    more: bool, expected: float
) -> None:
    """100 starts over [0, 1), then 50 over [1, 1.5) or none: a limit met
    at 1.5 saw 100 (50 + half of 100) or 50 (half of 100) a second."""
    budget = RequestBudget(256, rng=random.Random(6))
    _started(budget, [n / 100 for n in range(100)])
    if more:
        _started(budget, [1.0 + n / 100 for n in range(50)])
    _limit_met(budget, 1.5, granted_at=1.499)
    assert budget.learned_rate == pytest.approx(expected, rel=0.05)


def test_a_429_for_a_request_granted_as_the_pause_began_is_an_echo() -> None:
    """On a coarse clock, a request granted at the same reading as the 429
    that began a pause was sent before it: its 429 does not double the pause."""
    budget = RequestBudget(4, rng=random.Random(7))
    budget.on_rate_limited(5.0, granted_at=4.0, retry_after=None)
    assert budget.on_rate_limited(5.01, granted_at=5.0, retry_after=None) <= 1.2
    assert budget.paused_until <= 5.01 + 1.2
