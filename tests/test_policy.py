"""PollPolicy: defaults, the pure schedule, validation, and an offline simulation."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from typing import Any

import attrs
import pytest

import veo_async
from veo_async.policy import POLICY_TIMEOUT, PollPolicy, resolve_timeout

DEFAULT = PollPolicy()


def take(values: Iterable[float], n: int) -> list[float]:
    """The first ``n`` values of a (possibly infinite) schedule."""
    return list(itertools.islice(values, n))


# ----------------------------------------------------------------- defaults


def test_documented_defaults() -> None:
    """The defaults are the documented ones (first poll at once, 3 s x1.5 to 30 s, 15 min)."""
    assert attrs.asdict(DEFAULT) == {
        "first_poll": 0.0,
        "interval": 3.0,
        "factor": 1.5,
        "max_interval": 30.0,
        "jitter": 0.1,
        "timeout": 900.0,
        "not_found_grace": 30.0,
    }


def test_policy_is_frozen() -> None:
    """A policy cannot be changed in place (replace() derives a new one)."""
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        DEFAULT.interval = 1.0  # type: ignore[misc]


# --------------------------------------------------------------------- gaps


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        pytest.param(
            DEFAULT, [3.0, 4.5, 6.75, 10.125, 15.1875, 22.78125, 30.0, 30.0, 30.0], id="default"
        ),
        pytest.param(
            PollPolicy(interval=1, factor=2, max_interval=5),
            [1, 2, 4, 5, 5, 5],
            id="doubling-capped-at-5",
        ),
        pytest.param(
            PollPolicy(interval=2, factor=1, max_interval=30),
            [2.0] * 6,
            id="factor-1-fixed-interval",
        ),
        pytest.param(
            PollPolicy(interval=4, factor=3, max_interval=4), [4.0] * 5, id="cap-equals-interval"
        ),
        pytest.param(
            PollPolicy(interval=1, factor=10, max_interval=50),
            [1, 10, 50, 50],
            id="overshoot-clipped-to-cap",
        ),
    ],
)
def test_gaps_grow_and_cap_exactly(policy: PollPolicy, expected: list[float]) -> None:
    """Un-jittered gaps are interval * factor**n, clipped to max_interval exactly."""
    assert take(policy.gaps(), len(expected)) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "policy",
    [
        pytest.param(DEFAULT, id="default"),
        pytest.param(PollPolicy(interval=0.1, factor=1.7, max_interval=0.3), id="fractional"),
        pytest.param(PollPolicy(interval=1, factor=1.0000001, max_interval=2), id="barely-growing"),
    ],
)
def test_gaps_never_exceed_cap_and_never_shrink(policy: PollPolicy) -> None:
    """Over a long run the gaps are non-decreasing and never above max_interval."""
    gaps = take(policy.gaps(), 500)
    assert all(g <= policy.max_interval for g in gaps)
    assert all(b >= a for a, b in itertools.pairwise(gaps))


def test_factor_1_stays_fixed_for_long() -> None:
    """factor=1 keeps the interval constant even after many polls."""
    policy = PollPolicy(interval=2.5, factor=1, max_interval=10)
    assert set(take(policy.gaps(), 10_000)) == {2.5}


# ------------------------------------------------------------------- delays


@pytest.mark.parametrize(
    "policy",
    [
        pytest.param(DEFAULT, id="default-first-poll-0"),
        pytest.param(PollPolicy(first_poll=60), id="first-poll-60"),
        pytest.param(PollPolicy(first_poll=7.5, jitter=0.5), id="first-poll-not-jittered"),
    ],
)
def test_first_delay_is_first_poll(policy: PollPolicy) -> None:
    """The first delay is first_poll exactly, never jittered, for any seed."""
    assert {next(policy.delays(seed)) for seed in range(50)} == {policy.first_poll}


@pytest.mark.parametrize(
    "policy",
    [
        pytest.param(DEFAULT, id="default-10pct"),
        pytest.param(PollPolicy(jitter=0.5, interval=1, factor=2, max_interval=8), id="50pct"),
    ],
)
def test_jitter_stays_within_bounds_and_spreads(policy: PollPolicy) -> None:
    """Every jittered gap lies in gap*(1 +- jitter), and the draws cover that range."""
    n = 12
    gaps = take(policy.gaps(), n)
    low = [math.inf] * n
    high = [-math.inf] * n
    for seed in range(300):
        delays = take(policy.delays(seed), n + 1)[1:]
        for i, (delay, gap) in enumerate(zip(delays, gaps, strict=True)):
            assert gap * (1 - policy.jitter) <= delay <= gap * (1 + policy.jitter)
            low[i] = min(low[i], delay)
            high[i] = max(high[i], delay)
    for i, gap in enumerate(gaps):
        # 300 uniform draws: the extremes come within a third of the band's edges.
        assert low[i] < gap * (1 - policy.jitter * 2 / 3)
        assert high[i] > gap * (1 + policy.jitter * 2 / 3)


def test_same_seed_same_schedule() -> None:
    """A seeded schedule is reproducible."""
    assert take(DEFAULT.delays(42), 200) == take(DEFAULT.delays(42), 200)


def test_different_seeds_differ() -> None:
    """Different seeds give different jitter (tasks do not poll in lockstep)."""
    schedules = {tuple(take(DEFAULT.delays(seed), 20)) for seed in range(20)}
    assert len(schedules) == 20


def test_unseeded_schedules_differ() -> None:
    """Without a seed two schedules are not identical."""
    assert take(DEFAULT.delays(), 20) != take(DEFAULT.delays(), 20)


def test_jitter_zero_is_exact() -> None:
    """jitter=0 gives first_poll then exactly the un-jittered gaps."""
    policy = PollPolicy(first_poll=1, jitter=0)
    assert take(policy.delays(seed=3), 10) == [1.0, *take(policy.gaps(), 9)]


def test_fixed_interval_with_jitter_centres_on_interval() -> None:
    """factor=1 with jitter keeps every gap around the one interval."""
    policy = PollPolicy(interval=10, factor=1, max_interval=10, jitter=0.2)
    delays = take(policy.delays(seed=1), 1001)[1:]
    assert all(8 <= d <= 12 for d in delays)
    assert 9.5 < sum(delays) / len(delays) < 10.5


# --------------------------------------------------------------- validation

_NUMBER_FIELDS = [
    "first_poll",
    "interval",
    "factor",
    "max_interval",
    "jitter",
    "timeout",
    "not_found_grace",
]


def _bad_values() -> list[object]:
    return [math.nan, math.inf, -math.inf, True, False, "1", None, [1]]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        *(
            pytest.param(f, v, id=f"{f}-{v!r}")
            for f in _NUMBER_FIELDS
            for v in _bad_values()
            if not (f == "timeout" and v is None)
        ),
        pytest.param("first_poll", -0.1, id="first_poll-negative"),
        pytest.param("interval", 0, id="interval-zero"),
        pytest.param("interval", -3, id="interval-negative"),
        pytest.param("factor", 0.99, id="factor-below-1"),
        pytest.param("factor", 0, id="factor-zero"),
        pytest.param("max_interval", 0, id="max_interval-zero"),
        pytest.param("max_interval", -30, id="max_interval-negative"),
        pytest.param("jitter", -0.01, id="jitter-negative"),
        pytest.param("jitter", 1, id="jitter-one"),
        pytest.param("jitter", 1.5, id="jitter-above-one"),
        pytest.param("timeout", 0, id="timeout-zero"),
        pytest.param("timeout", -1, id="timeout-negative"),
        pytest.param("not_found_grace", -1, id="not_found_grace-negative"),
    ],
)
def test_invalid_field_raises_naming_it(field: str, value: object) -> None:
    """Each invalid field value raises ValueError whose message names the field."""
    with pytest.raises(ValueError, match=field):
        PollPolicy(**{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs"),
    [
        pytest.param({"max_interval": 2.0}, id="cap-below-default-interval"),
        pytest.param({"interval": 31.0}, id="interval-above-default-cap"),
        pytest.param({"interval": 5, "max_interval": 4.999}, id="just-below"),
    ],
)
def test_max_interval_below_interval_raises(kwargs: dict[str, float]) -> None:
    """max_interval < interval is rejected with a message naming both."""
    with pytest.raises(ValueError, match="max_interval") as info:
        PollPolicy(**kwargs)
    assert "interval" in str(info.value).replace("max_interval", "")


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"first_poll": 0}, id="first_poll-zero"),
        pytest.param({"factor": 1}, id="factor-one"),
        pytest.param({"jitter": 0}, id="jitter-zero"),
        pytest.param({"jitter": 0.999}, id="jitter-just-below-one"),
        pytest.param({"timeout": None}, id="timeout-none"),
        pytest.param({"not_found_grace": 0}, id="grace-zero"),
        pytest.param({"interval": 30, "max_interval": 30}, id="cap-equals-interval"),
        pytest.param({"interval": 1, "max_interval": 2, "timeout": 5}, id="ints"),
    ],
)
def test_valid_edges_are_accepted(kwargs: dict[str, object]) -> None:
    """Boundary values that make sense are accepted and stored as given."""
    policy = PollPolicy(**kwargs)  # type: ignore[arg-type]
    for name, value in kwargs.items():
        assert getattr(policy, name) == value


def test_replace_changes_one_field_and_keeps_the_original() -> None:
    """replace() returns a new policy; the original is unchanged."""
    fast = DEFAULT.replace(interval=1.0, max_interval=5.0)
    assert (fast.interval, fast.max_interval, fast.factor) == (1.0, 5.0, DEFAULT.factor)
    assert (DEFAULT.interval, DEFAULT.max_interval) == (3.0, 30.0)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        pytest.param({"interval": -1}, "interval", id="negative-interval"),
        pytest.param({"jitter": 2}, "jitter", id="jitter-too-big"),
        pytest.param({"max_interval": 1}, "max_interval", id="cross-field"),
        pytest.param({"timeout": math.nan}, "timeout", id="nan-timeout"),
    ],
)
def test_replace_validates(changes: dict[str, float], field: str) -> None:
    """replace() applies the same validation as the constructor."""
    with pytest.raises(ValueError, match=field):
        DEFAULT.replace(**changes)


# ---------------------------------------------------------- resolve_timeout


@pytest.mark.parametrize(
    ("timeout", "policy", "expected"),
    [
        pytest.param(POLICY_TIMEOUT, DEFAULT, 900.0, id="policy-default"),
        pytest.param(POLICY_TIMEOUT, PollPolicy(timeout=12.5), 12.5, id="policy-custom"),
        pytest.param(POLICY_TIMEOUT, PollPolicy(timeout=None), None, id="policy-none"),
        pytest.param(None, DEFAULT, None, id="none-no-deadline"),
        pytest.param(0, DEFAULT, 0.0, id="zero"),
        pytest.param(0.25, DEFAULT, 0.25, id="positive-float"),
        pytest.param(60, DEFAULT, 60.0, id="positive-int"),
    ],
)
def test_resolve_timeout(timeout: object, policy: PollPolicy, expected: float | None) -> None:
    """POLICY_TIMEOUT defers to the policy; None means no deadline; numbers pass through."""
    got = resolve_timeout(timeout, policy)  # type: ignore[arg-type]
    assert got == expected
    assert got is None or type(got) is float


@pytest.mark.parametrize(
    "timeout",
    [
        pytest.param(-1, id="negative"),
        pytest.param(-0.001, id="slightly-negative"),
        pytest.param(math.nan, id="nan"),
        pytest.param(math.inf, id="inf"),
        pytest.param(True, id="bool"),
        pytest.param("30", id="string"),
        pytest.param([30], id="list"),
    ],
)
def test_resolve_timeout_rejects(timeout: object) -> None:
    """Negative, non-finite and non-numeric timeouts raise ValueError naming timeout."""
    with pytest.raises(ValueError, match="timeout"):
        resolve_timeout(timeout, DEFAULT)  # type: ignore[arg-type]


def test_policy_timeout_repr() -> None:
    """POLICY_TIMEOUT shows as its name in signatures and docs."""
    assert repr(POLICY_TIMEOUT) == "POLICY_TIMEOUT"


# ------------------------------------------------------ offline simulation


def requests_until_done(delays: Iterable[float], done_at: float) -> int:
    """How many polls a wait makes for a task finishing at ``done_at`` (virtual time)."""
    now = 0.0
    for count, delay in enumerate(delays, start=1):
        now += delay
        if now >= done_at:
            return count
    raise AssertionError("the schedule ended")  # pragma: no cover - delays are infinite


def _scaled(policy: PollPolicy, scale: float) -> Iterable[float]:
    """The schedule with every gap at the jitter band's edge ``gap * scale``."""
    yield policy.first_poll
    for gap in policy.gaps():
        yield gap * scale


@pytest.mark.parametrize(
    ("done_at", "low", "high"),
    [pytest.param(240.0, 8, 14, id="4-min"), pytest.param(120.0, 6, 10, id="2-min")],
)
def test_default_schedule_request_count_is_bounded(done_at: float, low: int, high: int) -> None:
    """A default wait on a few-minute task costs a small, predictable number of requests."""
    # The fewest requests come from gaps at the top of the jitter band, the most
    # from gaps at the bottom; any seed must land between the two.
    fewest = requests_until_done(_scaled(DEFAULT, 1 + DEFAULT.jitter), done_at)
    most = requests_until_done(_scaled(DEFAULT, 1 - DEFAULT.jitter), done_at)
    counts = {requests_until_done(DEFAULT.delays(seed), done_at) for seed in range(200)}
    assert min(counts) >= fewest
    assert max(counts) <= most
    assert low <= fewest <= most <= high


def test_four_minute_task_exact_count_without_jitter() -> None:
    """Without jitter, a 240 s task is polled at 0, 3, 7.5, ... 212.3, 242.3 s: 13 requests."""
    assert requests_until_done(DEFAULT.replace(jitter=0).delays(), 240.0) == 13


def test_fifteen_minute_wait_costs_about_two_requests_a_minute() -> None:
    """Over the default 900 s timeout the schedule settles at the 30 s cap (~2/min)."""
    count = requests_until_done(DEFAULT.delays(seed=7), DEFAULT.timeout or 0)
    assert 30 <= count <= 40


#: An int no float can hold: math.isfinite raises OverflowError on it.
HUGE = 10**400


def test_an_integer_too_large_for_a_float_is_refused_by_name() -> None:
    """Every numeric setting refuses an int beyond a float's range with a
    ValueError naming the setting (it raised a bare OverflowError), and the
    message shows its size, not 400 digits."""
    from veo_async import AdaptivePolicy, DurationPrior, VeoSession

    cases: list[tuple[str, Any]] = [
        *((f"PollPolicy.{name}", lambda n=name: PollPolicy(**{n: HUGE})) for name in (
            "first_poll", "interval", "factor", "max_interval", "jitter", "timeout",
            "not_found_grace",
        )),
        *((f"AdaptivePolicy.{name}", lambda n=name: AdaptivePolicy(**{n: HUGE})) for name in (
            "timeout", "not_found_grace", "budget_interval", "min_gap", "max_gap",
            "early_mass", "late_lag", "late_weight", "prior_weight", "memory",
        )),
        ("DurationPrior.median", lambda: DurationPrior(HUGE, 0.3)),
        ("DurationPrior.sigma", lambda: DurationPrior(100.0, -HUGE)),
        ("resolve_timeout", lambda: resolve_timeout(HUGE, PollPolicy())),
        *((f"VeoSession.{name}", lambda n=name: VeoSession("k" * 20, **{n: HUGE})) for name in (
            "request_timeout", "rate", "create_rate", "create_period",
        )),
    ]
    for label, make in cases:
        with pytest.raises(ValueError, match="integer of 1329 bits") as caught:
            make()
        name = label.split(".")[-1]
        assert name in str(caught.value) or label == "resolve_timeout", (label, caught.value)


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: PollPolicy(timeout="x"), "timeout"),  # type: ignore[arg-type]
        (lambda: PollPolicy(interval=None), "interval"),  # type: ignore[arg-type]
        (lambda: veo_async.AdaptivePolicy(timeout="x"), "timeout"),
        (lambda: veo_async.AdaptivePolicy(not_found_grace=True), "not_found_grace"),
        (lambda: veo_async.DurationPrior("150", 0.3), "median"),  # type: ignore[arg-type]
        (lambda: veo_async.VeoSession("sk-test", request_timeout="8"), "request_timeout"),  # type: ignore[arg-type]
    ],
    ids=["poll-timeout", "poll-interval", "adaptive-timeout", "adaptive-grace", "prior", "session"],
)
def test_a_setting_that_is_no_number_is_refused_alike_everywhere(make: Any, field: str) -> None:
    """A setting that is not a number (a str, None, a bool) raises an error
    that is both a ValueError, as every refused setting is, and a TypeError:
    PollPolicy said ValueError and AdaptivePolicy TypeError for the same
    bad timeout, so code catching one missed the other."""
    with pytest.raises(ValueError, match=f"{field} must be a number") as caught:
        make()
    assert isinstance(caught.value, TypeError)
