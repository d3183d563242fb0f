"""Durable tracking hands its notes over in batches: one write_behind() call to a
store that takes them (SQLiteStore), single awaited calls to any other TaskStore."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from veo_async import SQLiteStore, TaskStore, VeoSession
from veo_async.store import StoredTask, WriteBehindBatches
from veo_async.testing import FakeKie

from .conftest import API_KEY, session_on
from .test_durable import drain, store_at, stored

pytestmark = pytest.mark.real_time


@pytest.fixture
async def kie() -> AsyncIterator[FakeKie]:
    """An in-process simulator (as test_durable's)."""
    fake = FakeKie(api_key=API_KEY, time_scale=0.001, seed=7, create_limit=None)
    yield fake
    await fake.close()


class SingleCalls:
    """A TaskStore that is not a WriteBehindBatches: SQLiteStore's methods but write_behind.

    Each method of the TaskStore protocol is defined on the class (below), not
    served by __getattr__: from Python 3.12 isinstance() checks a protocol with
    inspect.getattr_static, which does not see __getattr__.
    """

    def __init__(self, inner: SQLiteStore) -> None:
        self.inner = inner
        self.calls: list[str] = []

    @property
    def closed(self) -> bool:
        """The inner store's."""
        return self.inner.closed

    async def __aenter__(self) -> SingleCalls:
        await self.inner.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.inner.aclose()


def _delegate(name: str) -> Any:
    def method(self: SingleCalls, *args: Any, **kwargs: Any) -> Any:
        if name in ("record_seen", "record_terminal", "mark_delivered"):
            self.calls.append(name)
        return getattr(self.inner, name)(*args, **kwargs)

    method.__name__ = name
    return method


for _name in dir(TaskStore):
    if not _name.startswith("_") and _name != "closed" and _name not in vars(SingleCalls):
        setattr(SingleCalls, _name, _delegate(_name))


async def run(kie: FakeKie, store: Any) -> list[str]:
    """wait_many over two tasks (one seen before it finishes), then completed() with acks."""
    kie.add_task("veo_quick", complete_after=0.0)
    kie.add_task("veo_slow", complete_after=1.0)  # seen running first, even on a loaded machine
    veo: VeoSession = session_on(kie, store=store, create_rate=10_000)
    async with veo:
        await veo.wait_many(["veo_quick", "veo_slow"])
        await veo.flush()
        return sorted(await drain(veo, ack=False))


async def rows(path: Path) -> dict[str, StoredTask]:
    """The tasks of the store file at *path*, by id."""
    store = await stored(path)
    try:
        return {task.task_id: task for task in await store.list_tasks()}
    finally:
        await store.aclose()


async def test_a_store_without_batches_gets_single_calls(kie: FakeKie, tmp_path: Path) -> None:
    """A TaskStore without write_behind records the same through its single methods."""
    single = SingleCalls(store_at(tmp_path / "single.db"))
    assert isinstance(single, TaskStore)
    assert not isinstance(single, WriteBehindBatches)
    assert await run(kie, single) == ["veo_quick", "veo_slow"]
    assert {"record_seen", "record_terminal", "mark_delivered"} <= set(single.calls)
    tasks = await rows(tmp_path / "single.db")
    assert set(tasks) == {"veo_quick", "veo_slow"}
    for task in tasks.values():
        assert task.is_terminal
        assert task.first_seen_at is not None
        assert task.deliveries == 1


async def test_sqlite_store_gets_batches(
    kie: FakeKie, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLiteStore gets write_behind() batches, never a single write-behind call."""
    store = store_at(tmp_path / "batch.db")
    batches: list[int] = []
    write_behind = store.write_behind

    def counting(*args: Any, **kwargs: Any) -> None:
        batches.append(1)
        write_behind(*args, **kwargs)

    def refused(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a single write-behind call")

    monkeypatch.setattr(store, "write_behind", counting)
    for name in ("record_seen", "record_terminal", "mark_delivered"):
        monkeypatch.setattr(store, name, refused)
    assert await run(kie, store) == ["veo_quick", "veo_slow"]
    assert batches
    tasks = await rows(tmp_path / "batch.db")
    assert {task.deliveries for task in tasks.values()} == {1}
    assert all(task.is_terminal and task.first_seen_at is not None for task in tasks.values())
