"""VeoTask handles over loopback HTTP against FakeKie: waits, watches, sharing, cancelling."""

from __future__ import annotations

import asyncio
import copy
import gc
import logging
import math
import pickle
import time
import traceback
import weakref
from collections.abc import Callable
from contextlib import aclosing, suppress
from typing import Any

import pytest

from veo_async import (
    APIError,
    AuthenticationError,
    ContentPolicyError,
    InsufficientCreditsError,
    NotFoundError,
    PollPolicy,
    RecordInfo,
    RecordNotFoundError,
    ServerError,
    SessionClosedError,
    TaskFailedError,
    TaskStatus,
    VeoSession,
    VeoTask,
    WaitTimeoutError,
)
from veo_async.events import Event, RecordPublished
from veo_async.testing import FakeKie, Fault

from ._virtual import run_virtual
from .conftest import API_KEY, FAST_POLICY, eventually, leftover_tasks, session_on

MakeVeo = Callable[..., VeoSession]

#: A fixed 50 ms interval without jitter: a single poll loop makes at most one
#: request per 50 ms, so request counts have a hard upper bound.
STEP = 0.05
FIXED_POLICY = PollPolicy(
    first_poll=0.0,
    interval=STEP,
    factor=1.0,
    max_interval=STEP,
    jitter=0.0,
    timeout=10.0,
    not_found_grace=0.3,
)


def max_polls_of_one_loop(elapsed: float) -> int:
    """The most requests one FIXED_POLICY loop can make in ``elapsed`` seconds (+1 slack)."""
    return math.floor(elapsed / STEP) + 2


# -- handles -------------------------------------------------------------------------------


async def test_same_id_same_handle(veo: VeoSession) -> None:
    """veo.task(id) returns the same object for the same id and another for another id."""
    first = veo.task("veo_a")
    assert veo.task("veo_a") is first
    other = veo.task("veo_b")
    assert other is not first
    assert other.task_id == "veo_b"
    assert "veo_a" in repr(first)


def test_a_handle_shows_only_what_a_user_may_call() -> None:
    """VeoTask's public names are its documented API. ``publish``,
    ``timed_out`` and the other hooks of the poll machinery were public
    methods: ``task.publish(other_record)`` made a handle return another
    task's record (and a store keep it as this task's result);
    ``task.timed_out(1.0)`` gave an idle handle a timeout as its outcome."""
    public = {name for name in dir(VeoTask) if not name.startswith("_")}
    assert public == {
        "ack", "created_at", "created_loop_time", "done", "error", "exception",
        "extend", "get_1080p", "get_4k", "model", "polling", "record", "refresh",
        "request", "result", "status", "subscribe", "task_id", "wait", "watch",
    }
    # subscribe()'s types are the package's, for a caller's annotations.
    import veo_async

    assert {"Listener", "Subscription"} <= set(veo_async.__all__)
    assert veo_async.Subscription.__module__ == VeoTask.__module__


async def test_a_copy_of_a_handle_is_the_handle(fake_kie: FakeKie, veo: VeoSession) -> None:
    """One handle per id: copy.copy (and deepcopy, of a structure holding
    handles) gives the handle itself. A second object for the id shared its
    poll run but got none of its records: its wait raised SessionClosedError
    while the session was open. A handle is not pickled (its id is)."""
    fake_kie.add_task("veo_a", complete_after=0.2)
    task = veo.task("veo_a")
    first = asyncio.create_task(task.wait())
    await asyncio.sleep(0.05)
    twin = copy.copy(task)
    assert twin is task
    assert copy.deepcopy({"held": [task]})["held"][0] is task
    assert (await twin.wait()).status.name == "SUCCESS"
    assert (await first).status.name == "SUCCESS"
    with pytest.raises(TypeError, match="VeoTask cannot be pickled"):
        pickle.dumps(task)


@pytest.mark.parametrize("history", ["refresh", "success", "failure", "timeout", "cancelled"])
async def test_handles_are_not_kept_forever(
    fake_kie: FakeKie, veo: VeoSession, history: str
) -> None:
    """A handle nobody holds is dropped, whatever it went through: del + gc gives a fresh one."""
    fake_kie.add_task(
        "veo_a",
        final_status=2 if history == "failure" else 1,
        complete_after=600 if history in ("timeout", "cancelled") else 0,
    )
    handle = veo.task("veo_a")
    if history == "refresh":
        await handle.refresh()
    elif history == "success":
        await handle.wait()
    elif history == "failure":
        with pytest.raises(TaskFailedError):
            await handle.wait()
    elif history == "timeout":
        with pytest.raises(WaitTimeoutError):
            await handle.wait(timeout=0.1)
    else:
        waiter = asyncio.ensure_future(handle.wait())
        assert await eventually(lambda: fake_kie.polls("veo_a") >= 1)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        del waiter
    assert handle.record is not None
    ref = weakref.ref(handle)
    del handle
    # A cancelled loop's done-callbacks hold it until the next loop iteration.
    for _ in range(10):
        gc.collect()
        if ref() is None:
            break
        await asyncio.sleep(0)
    assert ref() is None
    fresh = veo.task("veo_a")
    assert fresh.record is None  # the old handle's state went with it


async def test_running_wait_keeps_its_handle(fake_kie: FakeKie, veo: VeoSession) -> None:
    """While a wait runs, veo.task(id) returns the handle being waited on, held or not."""
    fake_kie.add_task("veo_a", complete_after=0.3)
    waiter = asyncio.create_task(veo.task("veo_a").wait())
    assert await eventually(lambda: fake_kie.polls("veo_a") >= 1)
    gc.collect()
    handle = veo.task("veo_a")
    record = await waiter
    assert handle.record is record
    assert fake_kie.polls("veo_a") <= max_polls_of_one_loop(10)


# -- waiting ---------------------------------------------------------------------------------


async def test_wait_succeeds_after_several_polls(fake_kie: FakeKie, veo: VeoSession) -> None:
    """wait() polls until successFlag leaves 0 and returns the SUCCESS record."""
    fake_kie.add_task("veo_a", complete_after=0.25)
    handle = veo.task("veo_a")
    record = await handle.wait()
    assert record.status is TaskStatus.SUCCESS
    assert record.result_urls
    assert fake_kie.polls("veo_a") >= 2
    assert handle.record is record
    assert handle.status is TaskStatus.SUCCESS
    assert handle.done()
    assert handle.error is None


async def test_await_task_is_wait(fake_kie: FakeKie, veo: VeoSession) -> None:
    """``await task`` waits like task.wait() and returns the same record."""
    fake_kie.add_task("veo_a", complete_after=0.1)
    fake_kie.add_task("veo_b", complete_after=0.1)
    awaited = await veo.task("veo_a")
    waited = await veo.task("veo_b").wait()
    assert awaited.status is waited.status is TaskStatus.SUCCESS
    assert fake_kie.polls("veo_a") >= 2


async def test_wait_uses_the_given_policy(fake_kie: FakeKie, veo: VeoSession) -> None:
    """wait(policy=...) starts the poll loop on that schedule (here: first poll after 0.15 s)."""
    fake_kie.add_task("veo_a")
    loop = asyncio.get_running_loop()
    started = loop.time()
    await veo.task("veo_a").wait(policy=FIXED_POLICY.replace(first_poll=0.15))
    assert fake_kie.requests[0].started - started >= 0.14
    assert fake_kie.polls("veo_a") == 1


@pytest.mark.parametrize("final_status", [TaskStatus.FAILED, TaskStatus.GENERATION_FAILED])
async def test_failed_task_raises_task_failed(
    fake_kie: FakeKie, veo: VeoSession, final_status: TaskStatus
) -> None:
    """successFlag 2 and 3 raise TaskFailedError carrying the record, errorCode and errorMessage."""
    fake_kie.add_task(
        "veo_a",
        complete_after=0.1,
        final_status=int(final_status),
        error_code=500,
        error_message="the model fell over",
    )
    handle = veo.task("veo_a")
    with pytest.raises(TaskFailedError) as caught:
        await handle.wait()
    error = caught.value
    assert error.record.status is final_status
    assert error.record.task_id == "veo_a"
    assert error.error_code == 500
    assert error.error_message == "the model fell over"
    assert error.task_id == "veo_a"
    assert not error.retryable
    assert handle.error is error


async def test_failed_task_default_codes(fake_kie: FakeKie, veo: VeoSession) -> None:
    """The default failure codes come through: 400 for FAILED, 501 for GENERATION_FAILED."""
    fake_kie.add_task("veo_2", final_status=2)
    fake_kie.add_task("veo_3", final_status=3)
    with pytest.raises(TaskFailedError) as failed:
        await veo.task("veo_2")
    with pytest.raises(TaskFailedError) as generation_failed:
        await veo.task("veo_3")
    assert failed.value.error_code == 400
    assert generation_failed.value.error_code == 501
    assert failed.value.error_message


TRANSIENT_FAULTS: dict[str, list[Fault]] = {
    "http_429_retry_after": [Fault.http_429(retry_after=0.1)],
    "http_429_no_retry_after": [Fault.http_429()],
    "body_429": [Fault.body_429()],
    "maintenance_455": [Fault.maintenance()],
    "server_error_500": [Fault.server_error(), Fault.server_error()],
    "bad_gateway_html": [Fault.bad_gateway_html()],
    "truncated_json": [Fault.truncated_json()],
    "empty_body": [Fault.empty_body()],
    "reset": [Fault.reset(), Fault.reset()],
    "slow_within_timeout": [Fault.slow(0.3)],
    "record_null_in_grace": [Fault.record_null()],
    "data_null_in_grace": [Fault.data_null()],
    "mixed": [
        Fault.server_error(),
        Fault.truncated_json(),
        Fault.bad_gateway_html(),
        Fault.maintenance(),
        Fault.record_null(),
    ],
}


@pytest.mark.parametrize("faults", TRANSIENT_FAULTS.values(), ids=TRANSIENT_FAULTS.keys())
async def test_transient_faults_are_recovered(
    fake_kie: FakeKie, veo: VeoSession, faults: list[Fault]
) -> None:
    """Each transient fault is retried inside one wait, which then returns the SUCCESS record."""
    fake_kie.add_task("veo_a", faults=faults)
    handle = veo.task("veo_a")
    record = await handle.wait()
    assert record.status is TaskStatus.SUCCESS
    faulted = [r for r in fake_kie.requests if r.fault is not None]
    assert len(faulted) == len(faults)
    # A slow answer is still an answer; every other fault costs a poll of its own.
    assert fake_kie.polls("veo_a") >= sum(f.kind != "slow" for f in faults) + 1
    assert handle.error is None


async def test_retry_after_is_honoured(fake_kie: FakeKie, veo: VeoSession) -> None:
    """After a 429 with Retry-After: 0.4 the next poll waits at least that long."""
    fake_kie.add_task("veo_a", faults=[Fault.http_429(retry_after=0.4)])
    await veo.task("veo_a").wait()
    first, second = fake_kie.requests[0], fake_kie.requests[1]
    assert first.code == 429
    assert first.finished is not None
    assert second.started - first.finished >= 0.35


PERMANENT_FAULTS: dict[str, tuple[Fault, type[APIError]]] = {
    "402": (Fault.body_code(402, "Insufficient credits"), InsufficientCreditsError),
    "404": (Fault.body_code(404, "Not found"), NotFoundError),
    "400": (Fault.body_code(400, "Content policy"), ContentPolicyError),
    "451": (Fault.body_code(451, "Image fetch failed"), APIError),
    "501": (Fault.body_code(501, "Generation failed"), ServerError),
}


@pytest.mark.parametrize(
    ("fault", "error_class"), PERMANENT_FAULTS.values(), ids=PERMANENT_FAULTS.keys()
)
async def test_permanent_errors_end_the_wait(
    fake_kie: FakeKie, veo: VeoSession, fault: Fault, error_class: type[APIError]
) -> None:
    """A permanent error code ends the wait at once with its class, after a single poll."""
    fake_kie.add_task("veo_a", complete_after=60, faults=[fault])
    handle = veo.task("veo_a")
    with pytest.raises(error_class) as caught:
        await handle.wait()
    assert type(caught.value) is error_class
    assert caught.value.code == fault.code
    assert not caught.value.retryable
    assert fake_kie.polls("veo_a") == 1
    assert handle.error is caught.value
    with pytest.raises(error_class):
        handle.result()
    assert not leftover_tasks()


async def test_bad_key_ends_the_wait(fake_kie: FakeKie, make_veo: MakeVeo) -> None:
    """A refused key (401) ends the wait at once with AuthenticationError."""
    fake_kie.add_task("veo_a")
    veo = make_veo("wrong-key")
    with pytest.raises(AuthenticationError):
        await veo.task("veo_a").wait()
    assert fake_kie.polls("veo_a") == 1


async def test_persistent_transient_fault_times_out(fake_kie: FakeKie, veo: VeoSession) -> None:
    """A fault that never clears ends the wait at its deadline with WaitTimeoutError."""
    fake_kie.add_task("veo_a", faults=[Fault.server_error()] * 1000)
    with pytest.raises(WaitTimeoutError):
        await veo.task("veo_a").wait(timeout=0.3)
    assert fake_kie.polls("veo_a") >= 2


# -- not visible yet ---------------------------------------------------------------------------


async def test_record_appearing_within_grace(fake_kie: FakeKie, veo: VeoSession) -> None:
    """A record that becomes visible inside the grace window is waited for."""
    fake_kie.add_task("veo_a", visible_after=0.15, complete_after=0.2)
    record = await veo.task("veo_a").wait()
    assert record.status is TaskStatus.SUCCESS
    assert fake_kie.count_status(422) >= 1


async def test_record_invisible_past_grace(fake_kie: FakeKie, veo: VeoSession) -> None:
    """A record still invisible when the grace window ends raises RecordNotFoundError."""
    fake_kie.add_task("veo_a", visible_after=30)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(RecordNotFoundError) as caught:
        await veo.task("veo_a").wait()
    assert loop.time() - started >= FAST_POLICY.not_found_grace - 0.01
    assert caught.value.task_id == "veo_a"
    assert fake_kie.polls("veo_a") >= 2


async def test_a_record_gone_for_a_moment_after_it_was_seen_gets_a_grace_of_its_own(
    fake_kie: FakeKie, veo: VeoSession
) -> None:
    """A "record is null" answered after the record was seen (a replica
    behind) is retried within a grace window of its own: the window of the
    first null answers, long past, does not end the wait at once."""
    fake_kie.add_task("veo_a", visible_after=0.1, complete_after=0.9)
    waiting = asyncio.create_task(veo.task("veo_a").wait())
    await asyncio.sleep(0.5)  # past the 0.3 s grace since the first null
    assert veo.task("veo_a").record is not None
    fake_kie.inject(Fault.record_null())
    record = await waiting
    assert record.status is TaskStatus.SUCCESS


async def test_unknown_id_raises_record_not_found(fake_kie: FakeKie, veo: VeoSession) -> None:
    """An id the service does not know ends the wait with RecordNotFoundError after the grace."""
    with pytest.raises(RecordNotFoundError):
        await veo.task("veo_nobody").wait()
    assert fake_kie.polls("veo_nobody") >= 2


async def test_unknown_id_data_null_variant() -> None:
    """The ``200 data: null`` way of saying "unknown id" also ends in RecordNotFoundError."""
    async with (
        FakeKie(api_key=API_KEY, unknown_task="data_null") as kie,
        VeoSession(API_KEY, base_url=kie.base_url, policy=FAST_POLICY) as veo,
    ):
        with pytest.raises(RecordNotFoundError):
            await veo.task("veo_nobody").wait()
        assert kie.count_status(200) >= 2


@pytest.mark.parametrize(
    "message",
    ["record is older than 14 days", "The record has expired"],
    ids=["14-days", "expired"],
)
async def test_expired_record_ends_the_wait_at_once(
    fake_kie: FakeKie, veo: VeoSession, message: str
) -> None:
    """A record past the 14-day retention is final at once: no grace window of polls."""
    fake_kie.add_task("veo_old", complete_after=0.0, faults=[Fault.body_code(422, message)] * 50)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(RecordNotFoundError) as caught:
        await veo.task("veo_old").wait()
    assert caught.value.expired
    assert fake_kie.polls("veo_old") == 1
    assert loop.time() - started < FAST_POLICY.not_found_grace


def test_only_retention_wordings_are_expired() -> None:
    """``expired`` reads the service's retention wordings, not a record merely not visible."""
    def error(message: str) -> RecordNotFoundError:
        return RecordNotFoundError(message, code=422, http_status=200, task_id="veo_a")

    assert not error("record is null").expired
    assert not error("record is not visible (data: null)").expired
    assert error("Record is older than 14 days").expired
    assert error("The record has EXPIRED").expired


# -- deadlines ---------------------------------------------------------------------------------


async def _watch_all(handle: VeoTask, timeout: float) -> None:
    async for _record in handle.watch(timeout=timeout):
        pass


@pytest.mark.parametrize("mode", ["wait", "on_update", "watch"])
@pytest.mark.parametrize("seen_before", [False, True])
async def test_timeout_precision_with_hanging_server(
    fake_kie: FakeKie, make_veo: MakeVeo, seen_before: bool, mode: str
) -> None:
    """wait/watch(timeout=T) against a hanging server end near T (not T + request_timeout)."""
    fake_kie.add_task("veo_a", complete_after=600)
    veo = make_veo(request_timeout=30)
    handle = veo.task("veo_a")
    if seen_before:
        await handle.refresh()
    fake_kie.inject(Fault.slow(60), 100)
    loop = asyncio.get_running_loop()
    started = loop.time()
    if mode == "wait":
        pending = handle.wait(timeout=0.5)
    elif mode == "on_update":
        pending = handle.wait(timeout=0.5, on_update=lambda _record: None)
    else:
        pending = _watch_all(handle, 0.5)
    with pytest.raises(WaitTimeoutError) as caught:
        await pending
    elapsed = loop.time() - started
    assert 0.49 <= elapsed < 1.5
    error = caught.value
    assert isinstance(error, TimeoutError)
    assert error.timeout == 0.5
    assert error.task_id == "veo_a"
    assert error.retryable
    if seen_before:
        assert error.record is not None
        assert error.record.status is TaskStatus.GENERATING
    else:
        assert error.record is None
    assert handle.error is error
    assert not leftover_tasks()
    assert await eventually(lambda: fake_kie.in_flight == 0)


async def test_timeout_carries_last_record(fake_kie: FakeKie, veo: VeoSession) -> None:
    """A wait that polls GENERATING until its deadline raises WaitTimeoutError with that record."""
    fake_kie.add_task("veo_a", complete_after=600)
    with pytest.raises(WaitTimeoutError) as caught:
        await veo.task("veo_a").wait(timeout=0.2)
    assert caught.value.record is not None
    assert caught.value.record.status is TaskStatus.GENERATING
    assert "GENERATING" in str(caught.value)


async def test_timeout_says_why_nothing_was_seen(fake_kie: FakeKie, veo: VeoSession) -> None:
    """When every poll failed, the timeout carries the last poll's error; else it carries none."""
    fake_kie.add_task("down")
    fake_kie.inject(Fault.server_error(), count=10_000)
    with pytest.raises(WaitTimeoutError) as caught:
        await veo.task("down").wait(timeout=0.3)
    assert caught.value.record is None
    assert isinstance(caught.value.last_error, ServerError)
    assert "ServerError" in str(caught.value)
    fake_kie.clear_injected()
    fake_kie.add_task("rendering", complete_after=60)
    with pytest.raises(WaitTimeoutError) as caught:
        await veo.task("rendering").wait(timeout=0.3)
    assert caught.value.record is not None
    assert caught.value.last_error is None


async def test_default_timeout_comes_from_policy(fake_kie: FakeKie, make_veo: MakeVeo) -> None:
    """Without timeout=, the wait uses its policy's timeout."""
    fake_kie.add_task("veo_a", complete_after=600)
    veo = make_veo(policy=FAST_POLICY.replace(timeout=0.2))
    with pytest.raises(WaitTimeoutError) as caught:
        await veo.task("veo_a").wait()
    assert caught.value.timeout == pytest.approx(0.2)


async def test_timeout_zero(fake_kie: FakeKie, veo: VeoSession) -> None:
    """timeout=0 on an unfinished handle raises WaitTimeoutError at once and leaves nothing."""
    fake_kie.add_task("veo_a", complete_after=600)
    with pytest.raises(WaitTimeoutError) as caught:
        await veo.task("veo_a").wait(timeout=0)
    assert caught.value.record is None
    assert not leftover_tasks()


@pytest.mark.parametrize("timeout", [-1, -0.001, math.nan, math.inf, "5", True], ids=repr)
async def test_bad_timeouts_rejected_before_io(
    fake_kie: FakeKie, veo: VeoSession, timeout: Any
) -> None:
    """A negative, NaN, infinite or non-numeric timeout raises ValueError before any request."""
    fake_kie.add_task("veo_a")
    handle = veo.task("veo_a")
    with pytest.raises(ValueError, match="timeout"):
        await handle.wait(timeout=timeout)
    with pytest.raises(ValueError, match="timeout"):
        handle.watch(timeout=timeout)
    assert fake_kie.total_requests == 0
    assert not leftover_tasks()


async def test_bad_wait_arguments(fake_kie: FakeKie, veo: VeoSession) -> None:
    """A non-policy policy or a non-callable on_update is refused before any request."""
    handle = veo.task("veo_a")
    with pytest.raises(TypeError):
        await handle.wait(policy="fast")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        handle.watch(policy=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await handle.wait(on_update=5)  # type: ignore[arg-type]
    assert fake_kie.total_requests == 0


# -- cancellation ------------------------------------------------------------------------------


async def test_cancel_mid_request(fake_kie: FakeKie, make_veo: MakeVeo) -> None:
    """Cancelling a wait whose request hangs propagates CancelledError and leaves nothing behind."""
    fake_kie.add_task("veo_a", complete_after=600, faults=[Fault.slow(60)])
    veo = make_veo(request_timeout=30)
    handle = veo.task("veo_a")
    waiter = asyncio.create_task(handle.wait())
    assert await eventually(lambda: fake_kie.in_flight == 1)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert not leftover_tasks()
    assert await eventually(lambda: fake_kie.in_flight == 0)
    # The session, and the handle, still work afterwards.
    fake_kie.add_task("veo_b")
    assert (await veo.task("veo_b").wait()).status is TaskStatus.SUCCESS
    with pytest.raises(WaitTimeoutError) as caught:
        await handle.wait(timeout=0.2)
    assert caught.value.record is not None
    assert caught.value.record.status is TaskStatus.GENERATING


async def test_cancel_between_polls(fake_kie: FakeKie, veo: VeoSession) -> None:
    """Cancelling a wait while it sleeps between polls stops the loop: no polls after."""
    fake_kie.add_task("veo_a", complete_after=600)
    waiter = asyncio.create_task(veo.task("veo_a").wait())
    assert await eventually(lambda: fake_kie.polls("veo_a") >= 2)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert not leftover_tasks()
    assert await eventually(lambda: fake_kie.in_flight == 0)
    polls = fake_kie.polls("veo_a")
    await asyncio.sleep(0.25)  # five poll intervals
    assert fake_kie.polls("veo_a") == polls


async def test_cancel_is_not_swallowed_by_wait_for(fake_kie: FakeKie, veo: VeoSession) -> None:
    """asyncio.wait_for around a wait times out cleanly: the cancel reaches and ends the wait."""
    fake_kie.add_task("veo_a", complete_after=600)
    # asyncio.TimeoutError: the builtin TimeoutError only from Python 3.11 on.
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(veo.task("veo_a").wait(timeout=None), 0.2)
    assert not leftover_tasks()


# -- sharing one poll loop -----------------------------------------------------------------


@pytest.mark.parametrize("awaiters", [2, 50])
async def test_awaiters_share_one_poll_loop(
    fake_kie: FakeKie, veo: VeoSession, awaiters: int
) -> None:
    """Many awaiters of one id cost what one does: one poll per scheduled step."""
    fake_kie.add_task("veo_a", complete_after=0.4)
    loop = asyncio.get_running_loop()
    started = loop.time()
    records = await asyncio.gather(
        *(veo.task("veo_a").wait(policy=FIXED_POLICY) for _ in range(awaiters))
    )
    elapsed = loop.time() - started
    assert all(r.status is TaskStatus.SUCCESS for r in records)
    assert len({id(r) for r in records}) == 1  # every awaiter got the one published record
    polls = fake_kie.polls("veo_a")
    assert 2 <= polls <= max_polls_of_one_loop(elapsed)
    assert fake_kie.max_in_flight == 1
    assert not leftover_tasks()


async def test_mixed_followers_share_one_loop(fake_kie: FakeKie, veo: VeoSession) -> None:
    """await, wait() and watch() of one handle all follow the same poll loop."""
    fake_kie.add_task("veo_a", complete_after=0.3)
    handle = veo.task("veo_a")
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def watch() -> list[RecordInfo]:
        return [record async for record in handle.watch()]

    awaited, waited, watched = await asyncio.gather(
        handle.wait(policy=FIXED_POLICY), handle.wait(), watch()
    )
    elapsed = loop.time() - started
    assert awaited is waited is watched[-1]
    assert fake_kie.polls("veo_a") <= max_polls_of_one_loop(elapsed)


async def test_cancelling_one_awaiter_spares_the_others(fake_kie: FakeKie, veo: VeoSession) -> None:
    """Cancelling one of several awaiters leaves the others waiting on the same loop."""
    fake_kie.add_task("veo_a", complete_after=0.4)
    loop = asyncio.get_running_loop()
    started = loop.time()
    waiters = [asyncio.create_task(veo.task("veo_a").wait(policy=FIXED_POLICY)) for _ in range(3)]
    assert await eventually(lambda: fake_kie.polls("veo_a") >= 2)
    waiters[0].cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiters[0]
    first, second = await asyncio.gather(*waiters[1:])
    elapsed = loop.time() - started
    assert first is second
    assert first.status is TaskStatus.SUCCESS
    assert fake_kie.polls("veo_a") <= max_polls_of_one_loop(elapsed)


async def test_short_deadline_spares_the_others(fake_kie: FakeKie, veo: VeoSession) -> None:
    """One awaiter timing out does not end the loop the others follow."""
    fake_kie.add_task("veo_a", complete_after=0.4)
    handle = veo.task("veo_a")
    impatient = asyncio.create_task(handle.wait(timeout=0.1))
    patient = asyncio.create_task(handle.wait(timeout=5))
    with pytest.raises(WaitTimeoutError):
        await impatient
    assert (await patient).status is TaskStatus.SUCCESS


async def test_loop_stops_when_last_awaiter_leaves(fake_kie: FakeKie, veo: VeoSession) -> None:
    """When every awaiter is cancelled, polling stops: no request after the last one left."""
    fake_kie.add_task("veo_a", complete_after=600)
    waiters = [asyncio.create_task(veo.task("veo_a").wait()) for _ in range(3)]
    assert await eventually(lambda: fake_kie.polls("veo_a") >= 2)
    for waiter in waiters:
        waiter.cancel()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results)
    assert not leftover_tasks()
    assert await eventually(lambda: fake_kie.in_flight == 0)
    polls = fake_kie.polls("veo_a")
    await asyncio.sleep(0.25)
    assert fake_kie.polls("veo_a") == polls


# -- watch and on_update ---------------------------------------------------------------------


async def test_watch_yields_each_status_change(fake_kie: FakeKie, veo: VeoSession) -> None:
    """watch() yields the current state, then each change, and ends at SUCCESS."""
    fake_kie.add_task("veo_a", complete_after=0.3)
    statuses = [record.status async for record in veo.task("veo_a").watch()]
    assert statuses == [TaskStatus.GENERATING, TaskStatus.SUCCESS]
    assert fake_kie.polls("veo_a") >= 3  # GENERATING was answered more than once
    assert not leftover_tasks()


async def test_watch_ends_with_failed_record(fake_kie: FakeKie, veo: VeoSession) -> None:
    """A failing task ends watch() with its FAILED record, without raising."""
    fake_kie.add_task("veo_a", complete_after=0.2, final_status=2, error_message="flagged")
    records = [record async for record in veo.task("veo_a").watch()]
    assert [r.status for r in records] == [TaskStatus.GENERATING, TaskStatus.FAILED]
    assert records[-1].error_message == "flagged"


@pytest.mark.parametrize("final_status", [1, 2])
async def test_watch_with_a_slow_consumer_still_ends_at_the_terminal_record(
    fake_kie: FakeKie, veo: VeoSession, final_status: int
) -> None:
    """A consumer that takes longer over an item than the run takes to end
    (the task finished meanwhile) still gets the terminal record, not a
    SessionClosedError on an open session."""
    fake_kie.add_task("veo_a", complete_after=0.2, final_status=final_status)
    statuses = []
    async for record in veo.task("veo_a").watch():
        statuses.append(record.status)
        await asyncio.sleep(1.0)  # the run ends (terminal record) meanwhile
    assert statuses == [TaskStatus.GENERATING, TaskStatus(final_status)]
    assert not veo.closed


async def test_watch_starts_from_known_record(fake_kie: FakeKie, veo: VeoSession) -> None:
    """After a refresh, watch() yields that known record first, then the change."""
    fake_kie.add_task("veo_a", complete_after=0.3)
    handle = veo.task("veo_a")
    known = await handle.refresh()
    records = [record async for record in handle.watch()]
    assert records[0] is known
    assert [r.status for r in records] == [TaskStatus.GENERATING, TaskStatus.SUCCESS]


async def test_watch_timeout(fake_kie: FakeKie, veo: VeoSession) -> None:
    """watch(timeout=...) raises WaitTimeoutError at its deadline, after yielding what it saw."""
    fake_kie.add_task("veo_a", complete_after=600)
    seen: list[TaskStatus] = []

    async def follow() -> None:
        async for record in veo.task("veo_a").watch(timeout=0.2):
            seen.append(record.status)

    with pytest.raises(WaitTimeoutError):
        await follow()
    assert seen == [TaskStatus.GENERATING]
    assert not leftover_tasks()


async def test_watch_closed_early_stops_polling(fake_kie: FakeKie, veo: VeoSession) -> None:
    """Closing a watch (aclosing + break) stops its poll loop at once."""
    fake_kie.add_task("veo_a", complete_after=600)
    async with aclosing(veo.task("veo_a").watch()) as updates:
        async for record in updates:
            assert record.status is TaskStatus.GENERATING
            break
    assert not leftover_tasks()
    assert await eventually(lambda: fake_kie.in_flight == 0)
    polls = fake_kie.polls("veo_a")
    await asyncio.sleep(0.25)
    assert fake_kie.polls("veo_a") == polls


async def test_on_update_sync_callback(fake_kie: FakeKie, veo: VeoSession) -> None:
    """A plain on_update callback gets the first record and each status change."""
    fake_kie.add_task("veo_a", complete_after=0.3)
    seen: list[RecordInfo] = []
    record = await veo.task("veo_a").wait(on_update=seen.append)
    assert [r.status for r in seen] == [TaskStatus.GENERATING, TaskStatus.SUCCESS]
    assert seen[-1] is record


async def test_on_update_async_callback(fake_kie: FakeKie, veo: VeoSession) -> None:
    """A coroutine on_update callback is awaited for each update."""
    fake_kie.add_task("veo_a", complete_after=0.3, final_status=3)
    seen: list[TaskStatus] = []

    async def on_update(record: RecordInfo) -> None:
        await asyncio.sleep(0)
        seen.append(record.status)

    with pytest.raises(TaskFailedError):
        await veo.task("veo_a").wait(on_update=on_update)
    assert seen == [TaskStatus.GENERATING, TaskStatus.GENERATION_FAILED]


async def test_a_raising_subscriber_breaks_neither_its_run_nor_closing(
    fake_kie: FakeKie, make_veo: MakeVeo
) -> None:
    """A subscribe() listener that raises is reported to the loop's exception
    handler and the run goes on: a wait on the same handle still gets its
    record; at close, every other wait still gets SessionClosedError and the
    session closes. It used to leave the run unplanned (the wait timed out)
    and to stop aclose() half-way (another wait hung, the transport stayed open)."""
    loop = asyncio.get_running_loop()
    reported: list[BaseException] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context["exception"]))
    fake_kie.add_task("veo_a", complete_after=0.3)
    fake_kie.add_task("veo_b", complete_after=3600)
    fake_kie.add_task("veo_c", complete_after=3600)

    def broken(_handle: VeoTask, _error: BaseException | None) -> None:
        raise RuntimeError("metrics backend down")

    try:
        veo = make_veo()
        async with veo:
            held = veo.task("veo_a").subscribe(broken)
            assert repr(held) == "<Subscription to 'veo_a'>"
            assert (await veo.task("veo_a").wait()).status is TaskStatus.SUCCESS
            held.close()
            assert repr(held) == "<Subscription closed>"
            veo.task("veo_b").subscribe(broken)
            other = asyncio.ensure_future(veo.task("veo_c").wait(timeout=None))
            await asyncio.sleep(0.1)
        with pytest.raises(SessionClosedError):
            await asyncio.wait_for(other, 1.0)
        assert veo.closed
        assert reported
        assert all(isinstance(exc, RuntimeError) for exc in reported)
    finally:
        loop.set_exception_handler(None)


async def test_on_update_error_propagates_and_stops(fake_kie: FakeKie, veo: VeoSession) -> None:
    """An exception from on_update ends the wait with it and stops polling."""
    fake_kie.add_task("veo_a", complete_after=600)

    def explode(_record: RecordInfo) -> None:
        raise LookupError("callback bug")

    with pytest.raises(LookupError, match="callback bug"):
        await veo.task("veo_a").wait(on_update=explode)
    assert not leftover_tasks()


# -- terminal handles, refresh, result ---------------------------------------------------------


async def test_terminal_handle_makes_no_request(fake_kie: FakeKie, veo: VeoSession) -> None:
    """Once terminal, wait/await/watch answer from memory without any request."""
    fake_kie.add_task("veo_ok")
    fake_kie.add_task("veo_bad", final_status=2)
    ok, bad = veo.task("veo_ok"), veo.task("veo_bad")
    record = await ok
    with pytest.raises(TaskFailedError):
        await bad
    total = fake_kie.total_requests
    assert await ok is record
    assert await ok.wait(timeout=0) is record
    assert [r async for r in ok.watch()] == [record]
    with pytest.raises(TaskFailedError):
        await bad.wait()
    assert [r.status async for r in bad.watch()] == [TaskStatus.FAILED]
    assert fake_kie.total_requests == total


async def test_refresh_is_one_request(fake_kie: FakeKie, veo: VeoSession) -> None:
    """refresh() makes exactly one request and updates record and status."""
    fake_kie.add_task("veo_a", complete_after=0.2)
    handle = veo.task("veo_a")
    first = await handle.refresh()
    assert fake_kie.total_requests == 1
    assert handle.record is first
    assert handle.status is TaskStatus.GENERATING
    await asyncio.sleep(0.25)
    second = await handle.refresh()
    assert fake_kie.total_requests == 2
    assert handle.record is second
    assert handle.status is TaskStatus.SUCCESS


async def test_refresh_does_not_retry(fake_kie: FakeKie, veo: VeoSession) -> None:
    """refresh() raises a transient error as is, after one request, keeping the old record."""
    fake_kie.add_task("veo_a", complete_after=600)
    handle = veo.task("veo_a")
    known = await handle.refresh()
    fake_kie.inject(Fault.server_error())
    with pytest.raises(ServerError):
        await handle.refresh()
    assert fake_kie.total_requests == 2
    assert handle.record is known


async def test_result_done_error_semantics(fake_kie: FakeKie, veo: VeoSession) -> None:
    """result()/done()/error follow the handle from no outcome, to timeout, to success."""
    fake_kie.add_task("veo_a", complete_after=0.4)
    handle = veo.task("veo_a")
    assert not handle.done()
    assert handle.error is None
    with pytest.raises(asyncio.InvalidStateError):
        handle.result()
    with pytest.raises(asyncio.InvalidStateError):
        handle.exception()
    with pytest.raises(WaitTimeoutError) as caught:
        await handle.wait(timeout=0.1)
    assert not handle.done()
    assert handle.error is caught.value
    with pytest.raises(WaitTimeoutError):
        handle.result()
    assert handle.exception() is caught.value
    record = await handle.wait()
    assert handle.done()
    assert handle.error is None
    assert handle.result() is record
    assert handle.exception() is None


async def test_result_of_failed_task(fake_kie: FakeKie, veo: VeoSession) -> None:
    """A handle that saw a FAILED record (even through refresh) is done; result() raises."""
    fake_kie.add_task("veo_a", final_status=2)
    handle = veo.task("veo_a")
    await handle.refresh()
    assert handle.done()
    with pytest.raises(TaskFailedError) as caught:
        handle.result()
    assert caught.value.record is handle.record
    failure = handle.exception()  # the same outcome, handed back, never raised
    assert isinstance(failure, TaskFailedError)
    assert failure.record is handle.record
    assert failure.__traceback__ is None


def _traceback_depth(error: BaseException) -> int:
    return len(traceback.extract_tb(error.__traceback__))


async def test_a_kept_error_raised_again_does_not_grow_its_traceback(
    fake_kie: FakeKie, veo: VeoSession
) -> None:
    """result() raises the error that ended the last wait each time afresh:
    re-raising one exception object would otherwise add the caller's frames
    to its traceback every time (memory growing with every call)."""
    fake_kie.add_task("veo_a", complete_after=600)
    handle = veo.task("veo_a")
    with pytest.raises(WaitTimeoutError):
        await handle.wait(timeout=0.1)
    depths = []
    for _ in range(5):
        with pytest.raises(WaitTimeoutError) as caught:
            handle.result()
        assert caught.value is handle.error
        depths.append(_traceback_depth(caught.value))
    assert depths == [depths[0]] * 5
    assert depths[0] <= 2  # result() and what it raised through, nothing older


async def test_waiters_of_a_failed_run_raise_its_error_from_where_it_arose(
    veo: VeoSession,
) -> None:
    """Every waiter of a run that ended in an error raises that one error
    with the traceback it had when the run ended, plus the waiter's own
    frames: not under the frames of every waiter before it (nor of the
    earlier waits of the same handle)."""
    with pytest.raises(RecordNotFoundError) as caught:
        await veo.task("veo_alone").wait()
    alone = _traceback_depth(caught.value)
    handle = veo.task("veo_nobody")
    errors = await asyncio.gather(*(handle.wait() for _ in range(20)), return_exceptions=True)
    assert all(isinstance(error, RecordNotFoundError) for error in errors)
    assert len({id(error) for error in errors}) == 1  # one run, one error
    assert _traceback_depth(errors[0]) <= alone  # (gather adds no frame of the test)
    for _ in range(3):
        with pytest.raises(RecordNotFoundError) as caught:
            handle.result()
        assert _traceback_depth(caught.value) <= 2


# -- closing the session -----------------------------------------------------------------------


@pytest.mark.parametrize("hanging", [False, True])
async def test_aclose_ends_pending_waits(
    fake_kie: FakeKie, make_veo: MakeVeo, hanging: bool
) -> None:
    """Closing the session while waits run makes them raise RuntimeError and leaves no task."""
    fake_kie.add_task("veo_a", complete_after=600)
    if hanging:
        fake_kie.inject(Fault.slow(60), 10)
    veo = make_veo(request_timeout=30)
    handle = veo.task("veo_a")
    waiter = asyncio.create_task(handle.wait())
    watcher = asyncio.create_task(veo.task("veo_a").watch().__anext__())
    assert await eventually(lambda: fake_kie.polls("veo_a") >= 1)
    await veo.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await waiter
    if hanging:
        with pytest.raises(RuntimeError, match="closed"):
            await watcher
    else:
        # The first record may have been yielded before the close.
        with suppress(RuntimeError):
            await watcher
    assert not leftover_tasks()
    assert await eventually(lambda: fake_kie.in_flight == 0)
    polls = fake_kie.polls("veo_a")
    await asyncio.sleep(0.15)
    assert fake_kie.polls("veo_a") == polls


# -- logging -----------------------------------------------------------------------------------


async def test_polls_retries_and_outcomes_are_logged(
    fake_kie: FakeKie, veo: VeoSession, caplog: pytest.LogCaptureFixture
) -> None:
    """At DEBUG, logger "veo_async" names the task in each poll, retry and outcome line."""
    caplog.set_level(logging.DEBUG, logger="veo_async")
    # Done after a second: a poll sees it GENERATING after the retry however
    # late a loaded machine runs that retry (at 0.1 s it could come after).
    fake_kie.add_task("veo_logged", complete_after=1.0, faults=[Fault.server_error()])
    fake_kie.add_task("veo_denied", faults=[Fault.body_code(402, "no credits")])
    await veo.task("veo_logged").wait()
    with pytest.raises(InsufficientCreditsError):
        await veo.task("veo_denied").wait()
    with pytest.raises(WaitTimeoutError):
        await veo.task("veo_nobody").wait(timeout=0.05)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("veo_async")]
    logged = [line for line in lines if "veo_logged" in line]
    assert any("retry" in line for line in logged), lines
    assert any("GENERATING" in line for line in logged), lines
    assert any("SUCCESS" in line for line in logged), lines
    assert any("veo_denied" in line and "402" in line for line in lines), lines
    assert any("veo_nobody" in line and "timed out" in line for line in lines), lines


@pytest.mark.parametrize("how", ["watch", "wait_on_update", "wait"])
async def test_aclose_before_first_poll_ends_followers(
    fake_kie: FakeKie, make_veo: MakeVeo, how: str
) -> None:
    """A close racing the start of a wait (loop not run yet) still ends it with RuntimeError."""
    fake_kie.add_task("veo_a", complete_after=600)
    veo = make_veo()
    handle = veo.task("veo_a")
    follower: asyncio.Future[Any]
    if how == "watch":
        follower = asyncio.ensure_future(handle.watch(timeout=None).__anext__())
    elif how == "wait_on_update":
        follower = asyncio.ensure_future(handle.wait(timeout=None, on_update=lambda _r: None))
    else:
        follower = asyncio.ensure_future(handle.wait(timeout=None))
    # Scheduled in the same loop iteration: the close cancels the poll loop
    # before that loop ever ran a step.
    closer = asyncio.ensure_future(veo.aclose())
    done, _ = await asyncio.wait((follower,), timeout=3)
    await closer
    if not done:
        follower.cancel()
        await asyncio.wait((follower,))
        pytest.fail("the follower was never told that the session closed")
    with pytest.raises(RuntimeError, match="closed"):
        follower.result()
    assert not leftover_tasks()


async def test_cancel_mid_request_frees_the_slot(fake_kie: FakeKie, make_veo: MakeVeo) -> None:
    """With concurrency=1, cancelling the wait holding the only slot lets the next request run."""
    fake_kie.add_task("veo_hang", complete_after=600, faults=[Fault.slow(60)])
    fake_kie.add_task("veo_b")
    veo = make_veo(concurrency=1, request_timeout=30)
    waiter = asyncio.create_task(veo.task("veo_hang").wait())
    assert await eventually(lambda: fake_kie.in_flight == 1)
    queued = asyncio.create_task(veo.task("veo_b").wait())
    await asyncio.sleep(0.1)
    assert not queued.done()  # behind the hanging request
    assert fake_kie.polls("veo_b") == 0
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    done, _ = await asyncio.wait((queued,), timeout=3)
    assert done, "the cancelled request never gave its slot back"
    assert queued.result().status is TaskStatus.SUCCESS
    assert veo.stats.max_in_flight == 1


async def test_cancel_while_queued_for_a_slot(fake_kie: FakeKie, make_veo: MakeVeo) -> None:
    """A wait cancelled while queued for a slot leaves, and the slot holder is unaffected."""
    fake_kie.add_task("veo_slow", faults=[Fault.slow(0.3)])
    fake_kie.add_task("veo_b", complete_after=600)
    veo = make_veo(concurrency=1, request_timeout=30)
    holder = asyncio.create_task(veo.task("veo_slow").wait())
    assert await eventually(lambda: fake_kie.in_flight == 1)
    queued = asyncio.create_task(veo.task("veo_b").wait())
    await asyncio.sleep(0.05)
    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    assert (await holder).status is TaskStatus.SUCCESS
    assert fake_kie.polls("veo_b") == 0
    assert not leftover_tasks()
    fake_kie.add_task("veo_c")
    assert (await veo.record_info("veo_c")).status is TaskStatus.SUCCESS


async def test_cancel_during_rate_limit_pause(fake_kie: FakeKie, veo: VeoSession) -> None:
    """A wait cancelled while the session is paused by a 429 ends at once and leaves nothing."""
    fake_kie.add_task("veo_a", complete_after=600, faults=[Fault.http_429(retry_after=5)])
    waiter = asyncio.create_task(veo.task("veo_a").wait())
    assert await eventually(lambda: fake_kie.count_status(429) == 1)
    await asyncio.sleep(0.1)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert not leftover_tasks()
    assert fake_kie.polls("veo_a") == 1


async def test_on_update_reports_a_known_terminal_record_without_a_request(
    fake_kie: FakeKie, veo: VeoSession
) -> None:
    """A finished handle still tells on_update its (final) record once, from memory."""
    fake_kie.add_task("done_already")
    task = veo.task("done_already")
    await task
    requests = fake_kie.total_requests
    seen: list[TaskStatus] = []
    record = await task.wait(on_update=lambda info: seen.append(info.status))
    assert record.status is TaskStatus.SUCCESS
    assert seen == [TaskStatus.SUCCESS]
    assert fake_kie.total_requests == requests


async def test_a_raising_listener_is_reported_to_the_loop(
    fake_kie: FakeKie, veo: VeoSession
) -> None:
    """A listener that raises is reported to the loop's exception handler (with the
    error and the handle), as a failing callback is; its poll ends as usual."""
    fake_kie.add_task("veo_a")
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:

        def broken(_handle: Any, _error: BaseException | None) -> None:
            raise ValueError("listener bug")

        subscription = veo.task("veo_a").subscribe(broken)
        assert await eventually(lambda: bool(reported))
        subscription.close()
    finally:
        loop.set_exception_handler(None)
    assert isinstance(reported[0]["exception"], ValueError)
    assert "veo_a" in reported[0]["message"]
    assert await eventually(lambda: not leftover_tasks())
    assert fake_kie.polls("veo_a") >= 1


async def test_a_poll_stopped_before_its_first_step_gives_its_slot_back(
    fake_kie: FakeKie,
) -> None:
    """A run let go of in the step its poll was granted (the poll never ran) gives
    the budget slot back: with one slot, the next request still goes."""
    fake_kie.add_task("veo_a")
    async with session_on(fake_kie, concurrency=1, policy=PollPolicy()) as veo:
        subscription = veo.task("veo_a").subscribe(lambda _handle, _error: None)
        assert subscription.run is not None
        assert subscription.run.request is not None  # granted at once: one slot, free
        stopped = subscription.close()
        assert stopped is not None
        await asyncio.wait((stopped,))
        assert veo.stats.in_flight == 0
        record = await asyncio.wait_for(veo.record_info("veo_a"), 5.0)
        assert record.task_id == "veo_a"
    assert fake_kie.total_requests == 1  # the stopped poll sent nothing


# -- an outcome that came as the deadline passed ---------------------------------------------

_LAST_MOMENT = PollPolicy(first_poll=0.97, interval=5, factor=1, max_interval=5, jitter=0)


def _stalling_hook(event: Event) -> None:
    """A slow synchronous metrics write on a task's terminal record: the loop
    stalls across the deadline (as a GC pause or another coroutine's CPU does)."""
    if isinstance(event, RecordPublished) and event.status.is_terminal:
        time.sleep(0.3)


@pytest.mark.parametrize("how", ["wait", "watch"])
def test_a_record_that_came_as_the_deadline_passed_is_the_outcome(how: str) -> None:
    """The only poll (0.97 s into a 1 s wait) finds the task done, and the loop
    stalls across the deadline: the deadline's timer ran before the waiter
    woke, and the wait raised WaitTimeoutError, its own record SUCCESS, while
    wait_many and as_completed returned the record."""

    async def main() -> None:
        kie = FakeKie(api_key=API_KEY)
        kie.add_task("veo_a", complete_after=0.0)
        async with VeoSession(
            API_KEY, transport=kie.transport(), policy=_LAST_MOMENT, on_event=_stalling_hook
        ) as veo:
            task = veo.task("veo_a")
            if how == "wait":
                record = await task.wait(timeout=1.0)
            else:
                record = [seen async for seen in task.watch(timeout=1.0)][-1]
            assert record.status is TaskStatus.SUCCESS
            assert task.error is None
        await kie.close()

    run_virtual(main)


@pytest.mark.parametrize("how", ["watch", "wait_many", "as_completed"])
def test_a_later_success_clears_an_earlier_waits_timeout(how: str) -> None:
    """``error`` is what ended the last wait without success: after a wait
    that timed out, a watch or a batch that ends in SUCCESS leaves None
    there (only wait() cleared it; the others left the old timeout)."""

    async def main() -> None:
        kie = FakeKie(api_key=API_KEY)
        kie.add_task("veo_a", complete_after=20.0)
        async with VeoSession(API_KEY, transport=kie.transport(), policy=FAST_POLICY) as veo:
            task = veo.task("veo_a")
            with pytest.raises(WaitTimeoutError):
                await task.wait(timeout=1.0)
            assert isinstance(task.error, WaitTimeoutError)
            if how == "watch":
                [_ async for _ in task.watch(timeout=60.0)]
            elif how == "wait_many":
                await veo.wait_many(["veo_a"], timeout=60.0)
            else:
                [_ async for _ in veo.as_completed(["veo_a"], timeout=60.0)]
            assert task.result().status is TaskStatus.SUCCESS
            assert task.error is None
        await kie.close()

    run_virtual(main)


def test_a_watchs_deadline_counts_from_its_first_iteration() -> None:
    """As as_completed's: a watch made, then iterated later than its timeout,
    polls and yields (it raised "not finished after 1 s (no record seen)" at
    once, with no request made, on a task long done)."""

    async def main() -> None:
        kie = FakeKie(api_key=API_KEY)
        kie.add_task("veo_a", complete_after=0.0)
        async with VeoSession(API_KEY, transport=kie.transport(), policy=FAST_POLICY) as veo:
            watch = veo.task("veo_a").watch(timeout=1.0)
            await asyncio.sleep(1.5)
            async with aclosing(watch) as records:
                seen = [record.status async for record in records]
            assert seen == [TaskStatus.SUCCESS]
            assert kie.total_requests >= 1
        await kie.close()

    run_virtual(main)


@pytest.mark.parametrize("policy", ["fixed", "learned"])
def test_waits_cancelled_and_begun_again_keep_to_the_schedule(policy: str) -> None:
    """``asyncio.wait_for(task.wait(), 0.5)`` in a loop (a worker reporting
    progress) started a new poll run each time whose first poll went at once:
    a request every 0.5 s, whatever the schedule. A new run goes on from the
    handle's last poll: a fixed policy's next poll an interval after it, a
    learned one where its schedule puts it (an old task: every 30 s)."""

    async def main() -> None:
        kie = FakeKie(api_key=API_KEY)
        kie.add_task("veo_a", complete_after=1e6)
        chosen = PollPolicy(first_poll=0, interval=5, factor=1, max_interval=5, jitter=0)
        async with VeoSession(
            API_KEY, transport=kie.transport(), policy=chosen if policy == "fixed" else None
        ) as veo:
            await asyncio.sleep(3600.0)  # handed in an hour old: likely done, asked at once
            task = veo.task("veo_a")
            loop = asyncio.get_running_loop()
            start = loop.time()
            while loop.time() - start < 20.0:
                with suppress(asyncio.TimeoutError):  # (3.10: not the builtin)
                    await asyncio.wait_for(task.wait(), 0.5)
            # fixed: at 0, 5, 10, 15 (and 20) s; learned: at 0 (then 30 s on).
            # One more where a loaded machine kept a poll in flight past a
            # wait_for's 0.5 s (the clock counts the loop's real time): a run
            # goes on from an answered poll, not from one let go of in flight.
            # (The bug: one request per 0.5 s, 40.)
            assert kie.total_requests <= (6 if policy == "fixed" else 3)
            assert task.status is TaskStatus.GENERATING
        await kie.close()

    run_virtual(main)


def test_waits_timing_out_as_each_poll_leaves_still_see_the_task_finish() -> None:
    """A poll its waiters let go of in flight is not the one a later wait
    goes on from: with a fixed 30 s policy, 0.5 s answers and a 5 s
    ``wait_for`` in a loop, each wait's poll left just before its deadline
    and was cancelled, the next planned from it, and no answer ever came
    (not done after an hour; done at 100 s is what it should see)."""

    async def main() -> None:
        kie = FakeKie(api_key=API_KEY)
        kie.add_task("veo_a", complete_after=100.0)
        kie.inject(Fault.slow(0.5), count=10_000)
        policy = PollPolicy(first_poll=0, interval=30, factor=1, max_interval=30)
        async with VeoSession(API_KEY, transport=kie.transport(), policy=policy) as veo:
            task = veo.task("veo_a")
            loop = asyncio.get_running_loop()
            start = loop.time()
            while not task.done() and loop.time() - start < 3600.0:
                with suppress(asyncio.TimeoutError):  # (3.10: not the builtin)
                    await asyncio.wait_for(task.wait(), 5.0)
            assert task.done()
            assert loop.time() - start < 100.0 + 2 * 30.0 + 5.0
        await kie.close()

    run_virtual(main)


def test_a_slow_on_update_is_not_interrupted_and_its_time_counts_toward_the_timeout() -> None:
    """An on_update that takes 3 s inside a wait(timeout=1) runs to its end
    (the deadline never cancels the user's code), and the wait then raises
    WaitTimeoutError, 3 s in, as README says."""
    finished: list[float] = []

    async def main() -> None:
        kie = FakeKie(api_key=API_KEY)
        kie.add_task("veo_slow", complete_after=600)
        loop = asyncio.get_running_loop()

        async def slow(_record: RecordInfo) -> None:
            await asyncio.sleep(3.0)
            finished.append(loop.time())

        async with VeoSession(API_KEY, transport=kie.transport(), policy=FAST_POLICY) as veo:
            started = loop.time()
            with pytest.raises(WaitTimeoutError):
                await veo.task("veo_slow").wait(timeout=1.0, on_update=slow)
            assert len(finished) == 1
            assert 3.0 <= finished[0] - started <= loop.time() - started < 3.5
        await kie.close()

    run_virtual(main)
