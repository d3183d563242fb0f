"""The stores' shared group-commit writer: what a failed batch leaves to retry."""

from __future__ import annotations

import asyncio

import pytest

from veo_async.errors import StoreError
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


def writer_for(apply: FlakyApply) -> GroupWriter:
    return GroupWriter(
        apply,
        lambda exc: StoreError(f"writing failed ({exc})", path="test"),
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
    """A change that fails every batch it is in (a key of the wrong type, say)
    is given up after a few tries and named in the log; batches without it
    then go through (it used to fail every later write)."""
    apply = FlakyApply(lambda pending: "bad" in pending)
    writer = writer_for(apply)
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
