"""Arguments refused when given, naming what is wrong, before any I/O.

The gaps a review of every public callable found: a watermark that went
into paid requests with a NUL or an ANSI escape in it, flags that took any
truthy value, integers too large to print in the message refusing them, a
prior spread that overflowed in a callback, a Redis URL whose password an
error's frames still held.
"""

from __future__ import annotations

import asyncio
import random
import traceback
from pathlib import Path
from typing import Any

import pytest

from veo_async import (
    AdaptivePolicy,
    DurationPrior,
    ExtendRequest,
    GenerateRequest,
    RedisStore,
    SQLiteStore,
    StoreError,
    VeoSession,
)
from veo_async.testing import FakeKie

from .conftest import API_KEY, session_on

HUGE = 10**5000  # past the 4,300 digits Python writes an int with


def _as_any(value: object) -> Any:
    """``value``, typed for a call that must refuse it."""
    return value


@pytest.mark.parametrize(
    ("watermark", "says"),
    [
        ("a\x00b", "a NUL character"),
        ("\x1b[31mred", "a control character (U+001B) at position 0"),
        ("two\nlines", "a control character (U+000A) at position 3"),
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("w" * 5001, "5001 characters long"),
    ],
)
def test_a_watermark_is_checked_as_the_prompt_is(watermark: str, says: str) -> None:
    """A watermark goes into the same paid request as the prompt: it was
    sent with a NUL, an ANSI escape, nothing but blanks or 10 MB of text."""
    for make in (
        lambda: GenerateRequest("A cat", watermark=watermark),
        lambda: ExtendRequest("veo_task_1", "more", watermark=watermark),
    ):
        with pytest.raises(ValueError, match="watermark") as caught:
            make()
        assert says in str(caught.value)
    assert GenerateRequest("A cat", watermark="Studio Ü 2026").watermark == "Studio Ü 2026"


async def test_generate_with_a_bad_watermark_sends_nothing(fake_kie: FakeKie) -> None:
    async with session_on(fake_kie) as veo:
        with pytest.raises(ValueError, match="watermark contains a NUL"):
            await veo.generate("A cat", watermark="a\x00b")
    assert fake_kie.requests == []


async def test_completed_takes_follow_as_a_bool_only(tmp_path: Path) -> None:
    """follow="no" is truthy: it meant follow=True, an iteration that never
    ended on an empty store."""
    async with VeoSession(
        api_key=API_KEY, base_url="http://127.0.0.1:9", store=SQLiteStore(tmp_path / "t.db")
    ) as veo:
        with pytest.raises(TypeError, match="follow must be True or False, not 'no'"):
            veo.completed(follow="no")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="follow must be True or False"):
            await veo.deliver(lambda _task: None, follow=1)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda: GenerateRequest("A cat", seeds=HUGE), "seeds"),
        (lambda: VeoSession(api_key=API_KEY, concurrency=-HUGE), "concurrency"),
        (lambda: AdaptivePolicy(explorers=-HUGE), "explorers"),
        (lambda: SQLiteStore("t.db", retention=10**400), "retention"),
        (lambda: SQLiteStore("t.db", flush_interval=10**400), "flush_interval"),
        (lambda: SQLiteStore("t.db", lock_timeout=HUGE), "lock_timeout"),
        (lambda: RedisStore("redis://localhost", lease=10**400), "lease"),
        (lambda: RedisStore("redis://localhost", timeout=HUGE), "timeout"),
    ],
)
def test_an_integer_too_large_to_print_is_refused_by_name(make: Any, name: str) -> None:
    """Python refuses to write an int of over 4,300 digits: the message
    refusing it failed with "Exceeds the limit ... for integer string
    conversion" (or a bare OverflowError), naming no argument."""
    with pytest.raises(ValueError, match=name) as caught:
        make()
    message = str(caught.value)
    assert "bits" in message
    assert len(message) < 200


async def test_a_video_index_too_large_is_refused_before_any_poll(fake_kie: FakeKie) -> None:
    fake_kie.add_task("veo_a", complete_after=0.0)
    async with session_on(fake_kie) as veo:
        for index in (HUGE, 2**31):
            with pytest.raises(ValueError, match=r"index must be an int within 0-2147483647"):
                await veo.task("veo_a").get_1080p(index=index)
            with pytest.raises(ValueError, match=r"index must be an int within 0-2147483647"):
                await veo.task("veo_a").get_4k(index=index)
    assert fake_kie.requests == []


def test_a_prior_spread_the_schedule_cannot_use_is_refused() -> None:
    """sigma=1e308 passed its check and overflowed in the first table, which
    a session builds in a loop callback: the wait polled blind to its timeout."""
    with pytest.raises(ValueError, match="sigma must be at most 10, not 1e\\+308"):
        DurationPrior(150.0, 1e308)
    assert DurationPrior(150.0, 10.0).sigma == 10.0
    schedule = AdaptivePolicy(priors={"veo3": DurationPrior(150.0, 10.0)}).schedule()
    assert schedule.next_delay(model="veo3", age=0.0, polls=0, rng=random.Random(1)) > 0


def test_a_prior_moved_like_the_others_past_the_largest_median_is_kept_within_it() -> None:
    """A model's prior moves as far as the other models' estimates moved
    from theirs: a user's prior of 5e8 s moved 20-fold passed the largest
    median a prior takes, and its table's rebuild (a loop callback) raised
    ValueError. It is kept at that median."""
    policy = AdaptivePolicy(
        priors={"slow": DurationPrior(5e8, 0.3), "quick": DurationPrior(5.0, 0.3)}
    )
    learner = policy.learner()
    for _ in range(200):
        learner.observe("quick", 100.0)  # 20x its prior: the others' move
    assert sum(learner.masses("slow")) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda path: SQLiteStore(path, check_integrity=_as_any("1")), "check_integrity must be"),
        (lambda path: SQLiteStore(path, check_integrity=_as_any(None)), "check_integrity must be"),
        (lambda _path: RedisStore("redis://localhost", create=_as_any("no")), "create must be"),
    ],
)
def test_store_flags_are_bools(tmp_path: Path, make: Any, says: str) -> None:
    with pytest.raises(TypeError, match=says):
        make(tmp_path / "t.db")


def test_a_redis_url_with_an_unreadable_port_is_refused_when_given() -> None:
    """It was taken, and failed only at open()."""
    with pytest.raises(ValueError, match="port is not a number within 0-65535") as caught:
        RedisStore("redis://:hunter2secret@localhost:99999/0")
    assert "hunter2secret" not in str(caught.value)
    assert caught.value.__context__ is None  # (urlsplit's error held the URL)


async def test_a_redis_url_redis_cannot_read_leaves_no_error_holding_its_password() -> None:
    """StoreError was raised ``from None`` inside the except block: that only
    hides redis-py's ValueError, which stayed its ``__context__``, and that
    error's frames held the whole URL, password included."""
    pytest.importorskip("redis")
    store = RedisStore("redis://:hunter2secret@localhost:6379/?socket_timeout=abc")
    with pytest.raises(StoreError, match="the URL cannot be read") as caught:
        await asyncio.wait_for(store.open(), 10)
    error = caught.value
    assert error.__context__ is None
    assert error.__cause__ is None
    told = "".join(
        traceback.TracebackException.from_exception(error, capture_locals=True).format()
    )
    assert "hunter2secret" not in told


@pytest.mark.parametrize(
    ("make", "named"),
    [
        # Accepted, then an OverflowError in a rebuild (a loop callback): the
        # wait polled blind until its last look.
        (lambda: DurationPrior(median=150, sigma=1e-160), "sigma must be at least 0.001"),
        # Accepted, then 17-19 s of CPU for one task's tables (3,000 s).
        (lambda: AdaptivePolicy(max_gap=3000), "max_gap must be at most 600"),
        # Accepted, then refused by Redis at open(), naming nothing.
        (lambda: RedisStore("redis://localhost", lease=1e300), "lease must be between"),
    ],
)
def test_values_that_misbehaved_later_are_refused_when_given(make: Any, named: str) -> None:
    """Settings accepted at construction that failed later, far from where
    they were given, are refused where they are given, naming themselves."""
    with pytest.raises(ValueError, match=named):
        make()


@pytest.mark.parametrize(
    ("make", "named"),
    [
        (lambda: AdaptivePolicy(explorers=_as_any("1")), "explorers must be an int"),
        (lambda: AdaptivePolicy(rebuild_every=_as_any(2.0)), "rebuild_every must be an int"),
        (lambda: SQLiteStore("x.db", retention=_as_any("1")), "retention must be"),
        (lambda: SQLiteStore("x.db", flush_interval=_as_any(None)), "flush_interval must be"),
        (lambda: RedisStore("redis://localhost", lease=_as_any("15")), "lease must be"),
    ],
)
def test_every_refused_number_is_a_value_error(make: Any, named: str) -> None:
    """``except ValueError`` catches every refused number (and ``except
    TypeError`` one of the wrong type): these raised a plain TypeError."""
    with pytest.raises(ValueError, match=named) as raised:
        make()
    assert isinstance(raised.value, TypeError)


def test_a_stores_durations_are_called_seconds_not_epoch_seconds() -> None:
    """A duration of the wrong type is said to be a number of seconds (the
    message called ``retention`` epoch seconds)."""
    with pytest.raises(TypeError, match="retention must be a number of seconds"):
        SQLiteStore("x.db", retention=_as_any("14 days"))
