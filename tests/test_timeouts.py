"""within(): waiting for at most some seconds without losing a cancellation."""

from __future__ import annotations

import asyncio

import pytest

from veo_async._timeouts import within


async def test_within_gives_the_result_in_time() -> None:
    """In time: (True, the result)."""
    assert await within(asyncio.sleep(0.01, result="done"), 1.0) == (True, "done")


async def test_within_cancels_what_runs_out_of_time() -> None:
    """Out of time: (False, None), and what it waited for is cancelled."""
    inner = asyncio.ensure_future(asyncio.sleep(60))
    assert await within(inner, 0.1) == (False, None)
    assert inner.cancelled()


async def test_within_raises_what_it_waits_for_raises() -> None:
    """An exception of what it waits for is raised."""

    async def failing() -> None:
        raise LookupError("no such thing")

    with pytest.raises(LookupError, match="no such thing"):
        await within(failing(), 1.0)


async def test_a_cancellation_in_the_step_the_result_comes_is_not_lost() -> None:
    """The caller cancelled in the very loop step the awaited future gets its
    result ends cancelled (asyncio.wait_for on 3.10/3.11 returned the result)."""
    inner: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    outer = asyncio.ensure_future(within(inner, 10.0))
    await asyncio.sleep(0)
    inner.set_result(1)
    outer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await outer
    assert outer.cancelled()


async def test_a_cancelled_caller_cancels_what_it_waits_for() -> None:
    """The caller cancelled while waiting: what it waits for is cancelled too,
    and waited for (nothing is left running)."""
    inner = asyncio.ensure_future(asyncio.sleep(60))
    outer = asyncio.ensure_future(within(inner, 10.0))
    await asyncio.sleep(0)
    outer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await outer
    assert inner.cancelled()
