"""The stores' shared group-commit writer: what a failed batch leaves to retry."""

from __future__ import annotations

import asyncio

import pytest

from veo_async.errors import StoreCorruptError, StoreError
from veo_async.store._writer import GroupWriter, Op, Pending


class FlakyApply:
    """A store's batch writing that fails while ``failing`` says so, and
    records each batch's write-behind changes (task id -> a copy)."""

    def __init__(self, failing: object) -> None:
        self.failing = failing  # a callable: (pending) -> whether to fail
        self.batches: list[dict[str, tuple[float | None, str | None, int]]] = []

    async def __call__(self, ops: list[Op], pending: dict[str, Pending]) -> list[object]:
        self.batches.append(
            {tid: (p.seen_at, p.terminal, p.deliveries) for tid, p in pending.items()}
        )
        if self.failing(pending):  # type: ignore[operator]
            raise RuntimeError("the server went away")
        return [None] * len(ops)


def writer_for(apply: FlakyApply, failure: type[StoreError] = StoreError) -> GroupWriter:
    return GroupWriter(
        apply,
        lambda exc: failure(f"writing failed ({exc})", path="test"),
        where="test",
        flush_interval=0.0,
        batch_size=1000,
    )


async def test_a_failed_batch_is_retried_without_its_delivery_counts() -> None:
    """A failed batch's sighting and terminal record are written again by the
    next batch; its delivery count is not (the failed batch may have been
    applied after all: counted again, it would count twice)."""
    calls = [0]

    def first_fails(_pending: object) -> bool:
        calls[0] += 1
        return calls[0] == 1

    apply = FlakyApply(first_fails)
    writer = writer_for(apply)
    writer.start("writer")
    change = writer.change("t1")
    change.saw(1.0)
    change.ended('{"status": 1}', 2.0)
    change.delivered(3.0)
    writer.noted()
    with pytest.raises(StoreError, match="went away"):
        await writer.flush()
    await writer.flush()  # the retry
    assert apply.batches == [
        {"t1": (1.0, '{"status": 1}', 1)},
        {"t1": (1.0, '{"status": 1}', 0)},
    ]
    assert await writer.close() is None


async def test_a_change_failing_every_batch_is_given_up_and_later_batches_go_through(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A change that fails every batch it is in over what it holds
    (StoreCorruptError: a key of the wrong type, say) is given up after a few
    tries and named in the log; batches without it then go through (it used
    to fail every later write)."""
    apply = FlakyApply(lambda pending: "bad" in pending)
    writer = writer_for(apply, StoreCorruptError)
    writer.start("writer")
    writer.change("bad").saw(1.0)
    writer.noted()
    for _ in range(10):
        try:
            await writer.flush()
            break
        except StoreError:
            await asyncio.sleep(0)
    else:
        pytest.fail("the bad change was never given up")
    writer.change("good").saw(2.0)
    writer.noted()
    await writer.flush()
    assert apply.batches[-1] == {"good": (2.0, None, 0)}
    assert "given up" in caplog.text
    assert await writer.close() is None


async def test_an_outage_is_retried_for_as_long_as_it_lasts() -> None:
    """Batches failing over the way to the store (an outage: a plain
    StoreError) keep their changes however many fail; once the store is back
    they are written, and a close then raises nothing."""
    down = [True]
    apply = FlakyApply(lambda _pending: down[0])
    writer = writer_for(apply)
    writer.start("writer")
    writer.change("t1").ended('{"status": 1}', 1.0)
    writer.noted()
    for _ in range(12):  # more failures than a change in corrupt batches is allowed
        with pytest.raises(StoreError):
            await writer.flush()
    down[0] = False
    await writer.flush()
    assert apply.batches[-1] == {"t1": (None, '{"status": 1}', 0)}
    assert await writer.close() is None


async def test_a_close_with_changes_left_unwritten_says_why() -> None:
    """Closing while the store is still away: the error is the failed
    batch's own (what went wrong), not a bare count of changes."""
    apply = FlakyApply(lambda _pending: True)
    writer = writer_for(apply)
    writer.start("writer")
    writer.change("t1").saw(1.0)
    writer.noted()
    with pytest.raises(StoreError):
        await writer.flush()
    lost = await writer.close()
    assert lost is not None
    assert "went away" in str(lost)
