"""Pins on the poll runners (``_poll_runners``), the stepped release
(``_release``), the id checks (``_id_checks``) and PollPolicy's schedule and
argument checks that mutation testing found no test holding: each test says
which behaviour it pins."""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import re
import weakref
from typing import Any

import pytest

from veo_async import PollPolicy, RecordInfo, TaskStatus, TransportError
from veo_async._id_checks import CHECK_SLICE, validated_ids, validated_ids_in_steps
from veo_async._numbers import NotANumberError
from veo_async._poll_runners import PollRequest, PollRunners
from veo_async._release import release_over_steps
from veo_async.testing import FakeKie

from .conftest import leftover_tasks, session_on


class Exchanges:
    """A poll exchange for PollRunners: each id's poll hangs until released,
    or answers at once; records which ids were sent and who was told what."""

    def __init__(self, hanging: set[str] | None = None) -> None:
        self.hanging = hanging or set()
        self.release: dict[str, asyncio.Event] = {}
        self.started: list[str] = []
        self.told: list[tuple[str, str]] = []
        self.given_back = 0
        self.ended: list[str] = []

    async def exchange(
        self, task_id: str, previous: RecordInfo | None, granted_at: float, release: bool
    ) -> RecordInfo:
        """Answer SUCCESS, after the id's release for a hanging id."""
        self.started.append(task_id)
        try:
            if task_id in self.hanging:
                await self.release.setdefault(task_id, asyncio.Event()).wait()
            return RecordInfo(task_id, TaskStatus.SUCCESS)
        finally:
            self.ended.append(task_id)

    def give_back(self) -> None:
        """Count the slots given back."""
        self.given_back += 1

    def answer(self, request: PollRequest, record: RecordInfo | None, error: Any) -> None:
        """Note what a poll was told."""
        told = type(error).__name__ if error is not None else "record"
        self.told.append((request.task_id, told))


def poll_runner_tasks() -> set[asyncio.Task[Any]]:
    """The runner tasks alive now."""
    return {task for task in leftover_tasks() if task.get_name() == "veo_async poll"}


async def steps(count: int = 10) -> None:
    """Let the loop run ``count`` steps."""
    for _ in range(count):
        await asyncio.sleep(0)


async def test_a_poll_stopped_in_flight_is_not_told_and_its_runner_goes_on() -> None:
    """Stopping a running poll means nobody wants its answer: it is not told
    (not even of a CancelledError), and its runner takes the stop as that
    poll's only: it is not cancelled, and ends once the queue is empty."""
    polls = Exchanges(hanging={"a"})
    runners = PollRunners(polls.exchange, polls.give_back)
    first = runners.start("a", None, 0.0, polls.answer)
    await steps()
    (runner,) = poll_runner_tasks()
    runners.start("b", None, 0.0, polls.answer)  # queued: the runner will be free
    ended = runners.stop(first)
    assert ended is not None
    await ended
    await steps()
    assert polls.told == [("b", "record")]
    assert polls.started == ["a", "b"]
    assert polls.given_back == 2
    assert runner.done()
    assert not runner.cancelled()
    assert not poll_runner_tasks()


async def test_a_poll_stopped_before_it_started_cancels_the_runner_made_for_it() -> None:
    """A poll stopped while still queued gives its slot back, and the runner
    made for it is cancelled before its first step (it never runs, so it
    cannot later take a poll meant for another runner and skew the count)."""
    polls = Exchanges()
    runners = PollRunners(polls.exchange, polls.give_back)
    request = runners.start("a", None, 0.0, polls.answer)
    (runner,) = poll_runner_tasks()
    gone = runners.stop(request)
    assert gone is not None
    await gone
    assert runner.cancelled()
    assert polls.given_back == 1
    assert polls.started == []
    assert polls.told == []


async def test_stopping_a_running_poll_twice_returns_the_same_future() -> None:
    """A second stop of a running poll (two followers leaving) hands back the
    future of the first and asks no second cancellation: the first future is
    done once the exchange ends, and the runner goes on with the next poll."""
    polls = Exchanges(hanging={"a"})
    runners = PollRunners(polls.exchange, polls.give_back)
    first = runners.start("a", None, 0.0, polls.answer)
    await steps()
    (runner,) = poll_runner_tasks()
    runners.start("b", None, 0.0, polls.answer)
    ended = runners.stop(first)
    assert runners.stop(first) is ended
    assert ended is not None
    await ended
    await steps()
    assert polls.told == [("b", "record")]
    assert runner.done()
    assert not runner.cancelled()


class Item:
    """An object that can be watched through a weak reference."""


async def test_a_release_drops_a_slice_per_step_from_the_next_step_on() -> None:
    """release_over_steps holds everything in the step it is called, then
    drops ``per_step`` items a step (not all in one), and calls ``then`` once
    the last are dropped."""
    items = [Item() for _ in range(10)]
    watched = [weakref.ref(item) for item in items]
    done: list[str] = []
    release_over_steps(items, 4, lambda: done.append("then"))
    del items
    assert all(ref() is not None for ref in watched)  # none dropped in this step
    seen: list[tuple[int, int]] = []
    for _ in range(4):
        await asyncio.sleep(0)
        seen.append((sum(ref() is not None for ref in watched), len(done)))
    assert seen == [(6, 0), (2, 0), (0, 1), (0, 1)]


async def test_a_release_of_few_items_frees_them_with_the_list() -> None:
    """As few items as ``per_step`` are not held past the caller's list (freed
    with it, now); ``then`` still comes on a later loop step, not inside the call."""
    items = [Item() for _ in range(3)]
    watched = [weakref.ref(item) for item in items]
    done: list[str] = []
    release_over_steps(items, 3, lambda: done.append("then"))
    del items
    assert all(ref() is None for ref in watched)
    assert done == []
    await asyncio.sleep(0)
    assert done == ["then"]


def test_a_release_with_no_loop_frees_at_once_and_calls_nothing() -> None:
    """Outside a running loop the items go with the caller's list, and
    ``then`` (documented as called on a later loop step) is not called."""
    items = [Item() for _ in range(10)]
    watched = [weakref.ref(item) for item in items]
    done: list[str] = []
    release_over_steps(items, 2, lambda: done.append("then"))
    del items
    assert all(ref() is None for ref in watched)
    assert done == []


def test_bytes_are_refused_as_a_single_id_not_checked_per_byte() -> None:
    """``b"veo_task"`` is one (wrong) value, not an iterable of ids: refused
    as such, not as ``task_ids[0]: ... int``."""
    with pytest.raises(TypeError, match="not a single string"):
        validated_ids(b"veo_task")  # type: ignore[arg-type]


def test_the_last_id_is_checked_too() -> None:
    """validated_ids checks every id, the last included."""
    with pytest.raises(ValueError, match=r"task_ids\[2\]: .*whitespace"):
        validated_ids(["veo_a", "veo_b", "veo c"])


async def test_an_id_at_the_end_of_a_step_slice_is_checked() -> None:
    """validated_ids_in_steps checks the last id of each slice (the id just
    before a step), not only those inside it."""
    ids = [f"veo_task_{n:05d}" for n in range(CHECK_SLICE + 5)]
    ids[CHECK_SLICE - 1] = "veo task"
    with pytest.raises(ValueError, match=rf"task_ids\[{CHECK_SLICE - 1}\]: .*whitespace"):
        await validated_ids_in_steps(ids)


class Raising(Exchanges):
    """Exchanges whose poll of ``"bad"`` raises :attr:`error` (a fresh one each time)."""

    def __init__(self, make_error: Any) -> None:
        super().__init__()
        self.make_error = make_error
        self.errors: list[BaseException] = []

    async def exchange(
        self, task_id: str, previous: RecordInfo | None, granted_at: float, release: bool
    ) -> RecordInfo:
        """Raise for ``"bad"``, answer the others."""
        if task_id == "bad":
            self.started.append(task_id)
            await asyncio.sleep(0)
            error = self.make_error()
            self.errors.append(error)
            raise error
        return await super().exchange(task_id, previous, granted_at, release)


def _chained_transport_error() -> BaseException:
    try:
        try:
            raise OSError("connection reset")
        except OSError as cause:
            raise TransportError("reset") from cause
    except TransportError as error:
        return error


def _implicitly_chained_transport_error() -> BaseException:
    try:
        try:
            raise OSError("connection reset")
        except OSError:
            raise TransportError("reset")  # noqa: B904 (the implicit context is the point)
    except TransportError as error:
        return error


@pytest.mark.parametrize(
    "make_error",
    [_chained_transport_error, _implicitly_chained_transport_error],
    ids=["cause", "context"],
)
async def test_a_polls_error_is_told_without_frames_down_its_chain(make_error: Any) -> None:
    """A poll's VeoError is kept while its task is waited for: it is told with
    no traceback, nor any on the error it chains to (explicit cause or
    implicit context), so it holds no frames (nor their locals)."""
    polls = Raising(make_error)
    runners = PollRunners(polls.exchange, polls.give_back)
    told: list[BaseException | None] = []
    runners.start("bad", None, 0.0, lambda _request, _record, error: told.append(error))
    await steps()
    (error,) = told
    assert isinstance(error, TransportError)
    chained = error.__cause__ or error.__context__
    assert isinstance(chained, OSError)
    assert error.__traceback__ is None
    assert chained.__traceback__ is None


class Halt(BaseException):
    """Neither an Exception nor a cancellation: a poll's exchange must not take it."""


async def test_a_base_exception_in_a_poll_ends_its_runner_and_not_the_next_poll() -> None:
    """A BaseException that is no Exception (nor a cancellation) out of an
    exchange is not a poll's answer: the poll is not told, its slot is given
    back, its runner ends with that error, and the poll queued behind it
    runs on another runner."""
    polls = Raising(Halt)
    runners = PollRunners(polls.exchange, polls.give_back)
    runners.start("bad", None, 0.0, polls.answer)
    await asyncio.sleep(0)
    (runner,) = poll_runner_tasks()
    runners.start("next", None, 0.0, polls.answer)
    await steps()
    assert runner.done()
    assert isinstance(runner.exception(), Halt)
    assert polls.told == [("next", "record")]
    assert polls.given_back == 2
    assert not poll_runner_tasks()


async def test_stopping_a_poll_already_answered_touches_no_runner() -> None:
    """A poll stopped after it was answered is over: stop() returns None and
    cancels nothing (its runner may be running another poll by then)."""
    polls = Exchanges(hanging={"b"})
    runners = PollRunners(polls.exchange, polls.give_back)
    first = runners.start("a", None, 0.0, polls.answer)
    await steps()
    assert polls.told == [("a", "record")]
    runners.start("b", None, 0.0, polls.answer)
    await steps()
    (runner,) = poll_runner_tasks()
    assert runners.stop(first) is None
    polls.release["b"].set()
    await steps()
    assert polls.told == [("a", "record"), ("b", "record")]
    assert runner.done()
    assert not runner.cancelled()


async def test_the_next_poll_on_a_runner_goes_out_in_the_next_loop_step() -> None:
    """A runner that answered a poll sends the next queued one in a later
    loop step, after what the answer scheduled in this one (the other polls'
    answers), not between the answers."""
    polls = Exchanges()
    runners: PollRunners
    order: list[str] = []

    def answer(request: PollRequest, record: RecordInfo | None, error: Any) -> None:
        if request.task_id == "a":
            asyncio.get_running_loop().call_soon(order.append, "scheduled by a's answer")

    def give_back() -> None:
        polls.give_back()
        if polls.given_back == 1:
            runners.start("b", None, 0.0, answer)  # the freed slot granted at once

    async def exchange(
        task_id: str, previous: RecordInfo | None, granted_at: float, release: bool
    ) -> RecordInfo:
        order.append(f"poll {task_id}")
        return RecordInfo(task_id, TaskStatus.SUCCESS)

    runners = PollRunners(exchange, give_back)
    runners.start("a", None, 0.0, answer)
    await steps()
    assert order == ["poll a", "scheduled by a's answer", "poll b"]


async def test_runners_that_ended_are_not_kept() -> None:
    """A runner that found the queue empty and ended is let go of: a later
    close() has no runner to cancel or wait for."""
    polls = Exchanges()
    runners = PollRunners(polls.exchange, polls.give_back)
    for task_id in ("a", "b", "c"):
        runners.start(task_id, None, 0.0, polls.answer)
    await steps()
    assert len(polls.told) == 3
    assert runners.close(asyncio.CancelledError) == []


async def test_cancelling_the_future_a_queued_polls_stop_returned_is_harmless() -> None:
    """The future stop() returns for a poll not started yet may be cancelled
    by whoever awaits it (a wait_for timing out): the runner's end is then
    no error in the loop's exception handler."""
    loop_errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(
        lambda _loop, context: loop_errors.append(context)
    )
    polls = Exchanges()
    runners = PollRunners(polls.exchange, polls.give_back)
    request = runners.start("a", None, 0.0, polls.answer)
    gone = runners.stop(request)
    assert gone is not None
    gone.cancel()
    await steps()
    assert loop_errors == []
    assert not poll_runner_tasks()


async def test_a_failing_answer_handler_is_reported_to_the_loop() -> None:
    """An answer handler that raises is reported through the loop's exception
    handler (naming the poll's id), as a failing done-callback would be; the
    runner goes on with the next poll."""
    loop_errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(
        lambda _loop, context: loop_errors.append(context)
    )
    polls = Exchanges()
    runners = PollRunners(polls.exchange, polls.give_back)

    def broken(request: PollRequest, record: RecordInfo | None, error: Any) -> None:
        raise RuntimeError("handler bug")

    runners.start("a", None, 0.0, broken)
    runners.start("b", None, 0.0, polls.answer)
    await steps()
    assert polls.told == [("b", "record")]
    (context,) = loop_errors
    assert isinstance(context["exception"], RuntimeError)
    assert context["poll_task_id"] == "a"


async def test_stopping_a_queued_poll_never_cancels_a_runner_that_has_started() -> None:
    """Stopping a poll queued for a free runner (granted while that runner
    tells an answer) cancels no runner: in particular not one that started
    long ago and is running another id's poll."""
    polls = Exchanges(hanging={"a", "b"})
    runners = PollRunners(polls.exchange, polls.give_back)
    stopped: list[object] = []

    def answer(request: PollRequest, record: RecordInfo | None, error: Any) -> None:
        polls.answer(request, record, error)
        if request.task_id == "a":
            queued = runners.start("d", None, 0.0, polls.answer)
            stopped.append(runners.stop(queued))

    runners.start("a", None, 0.0, answer)
    runners.start("b", None, 0.0, polls.answer)
    await steps()  # both runners started, each on its poll
    polls.release["a"].set()
    await steps()
    assert stopped == [None]
    polls.release["b"].set()
    await steps()
    assert polls.told == [("a", "record"), ("b", "record")]
    assert polls.started == ["a", "b"]


@pytest.mark.parametrize("timeout", ["30", True, [30]], ids=["str", "bool", "list"])
async def test_a_wait_timeout_that_is_no_number_is_refused_as_every_setting_is(
    fake_kie: FakeKie, timeout: object
) -> None:
    """``wait(timeout="30")`` is refused before any request with the error
    ``PollPolicy(timeout="30")`` and every other setting give a value that is
    no number: both a ValueError and a TypeError (NotANumberError), naming
    timeout. It was a ValueError only, so ``except TypeError`` around a
    wait missed what it catches around a policy."""
    fake_kie.add_task("veo_a", complete_after=0)
    async with session_on(fake_kie) as veo:
        with pytest.raises(NotANumberError, match="timeout must be a number"):
            await veo.task("veo_a").wait(timeout=timeout)  # type: ignore[arg-type]
        with pytest.raises(NotANumberError, match="timeout must be a number"):
            await veo.wait_many(["veo_a"], timeout=timeout)  # type: ignore[arg-type]
    assert fake_kie.total_requests == 0


@pytest.mark.parametrize(
    "settings",
    [
        {"interval": 1e-300, "factor": 1e10, "max_interval": 1e300},
        {"interval": 1e-310, "factor": 2, "max_interval": 1.0},
    ],
    ids=["float-power", "int-power"],
)
def test_an_accepted_policy_has_a_schedule_without_end(settings: dict[str, float]) -> None:
    """A policy that construction accepts has a schedule that goes on for
    ever at its cap: computing a gap never fails mid-wait (here
    ``factor ** n`` grew past a float's range, an OverflowError out of the
    wait after hundreds of polls, while the gap had long been capped)."""
    policy = PollPolicy(jitter=0.0, **settings)
    delays = list(itertools.islice(policy.delays(seed=1), 2000))
    assert delays[-1] == policy.max_interval
    assert all(0 <= delay <= policy.max_interval for delay in delays)


async def test_a_runner_cancelled_from_outside_tells_its_poll_and_ends() -> None:
    """A runner cancelled from outside (no stop, no close: asyncio.run's
    shutdown) while its poll is in flight takes that as its own end: the
    poll, still wanted, is told the CancelledError (not left untold, nor told
    nothing at all), the runner ends cancelled, and a poll started meanwhile
    is answered on another runner."""
    polls = Exchanges(hanging={"a"})
    runners = PollRunners(polls.exchange, polls.give_back)
    runners.start("a", None, 0.0, polls.answer)
    await steps()
    (runner,) = poll_runner_tasks()
    runners.start("b", None, 0.0, polls.answer)
    runner.cancel()
    await steps()
    assert runner.cancelled()
    assert sorted(polls.told) == [("a", "CancelledError"), ("b", "record")]
    assert polls.given_back == 2
    assert not poll_runner_tasks()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"interval": 0}, "interval must be > 0, not 0"),
        ({"factor": 0.5}, "factor must be >= 1, not 0.5"),
        ({"first_poll": -1}, "first_poll must be >= 0, not -1"),
        ({"timeout": 0}, "timeout must be > 0, not 0"),
    ],
)
def test_a_policy_setting_out_of_range_is_refused_with_its_bound(
    settings: dict[str, float], message: str
) -> None:
    """An out-of-range setting is refused naming the setting, the bound it
    must meet (strict or not) and the value given."""
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        PollPolicy(**settings)


async def test_an_error_raised_by_a_generator_of_ids_is_not_reported_as_no_iterable() -> None:
    """A generator of ids that fails while producing them (a TypeError of
    the caller's own: a bad row in its data) is an iterable: its error comes
    out as raised, not turned into "task_ids must be an iterable of ids, not
    generator", which names the wrong fault and hides the real one."""

    def ids_from_rows() -> Any:
        yield "veo_a"
        raise TypeError("row 2 has no task id")

    with pytest.raises(TypeError, match="row 2 has no task id"):
        validated_ids(ids_from_rows())
    with pytest.raises(TypeError, match="row 2 has no task id"):
        await validated_ids_in_steps(ids_from_rows())


_CALLER: contextvars.ContextVar[str | None] = contextvars.ContextVar("caller", default=None)


async def test_a_runner_starts_in_a_context_of_its_own_not_a_copy_of_its_callers() -> None:
    """A runner is made in a fresh context, not a copy of the caller's that
    asked for the poll: a context variable the caller set (a request id, a
    trace) is not seen by the exchange, nor by the answer handler."""
    seen: list[tuple[str, str | None]] = []

    async def exchange(
        task_id: str, previous: RecordInfo | None, granted_at: float, release: bool
    ) -> RecordInfo:
        seen.append(("exchange", _CALLER.get()))
        return RecordInfo(task_id, TaskStatus.SUCCESS)

    def answer(request: PollRequest, record: RecordInfo | None, error: Any) -> None:
        seen.append(("answer", _CALLER.get()))

    runners = PollRunners(exchange, lambda: None)
    token = _CALLER.set("request A")
    try:
        runners.start("a", None, 0.0, answer)
    finally:
        _CALLER.reset(token)
    await steps()
    assert seen == [("exchange", None), ("answer", None)]
