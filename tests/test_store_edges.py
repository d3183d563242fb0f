"""SQLiteStore: behaviour no other test pinned (a close that
lost write-behind changes raises; the writes standing for a paid POST are
fsynced)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from veo_async import SQLiteStore, StoreError
from veo_async.store import new_ref

pytestmark = pytest.mark.real_time


def make_store(path: Path, **kwargs: Any) -> SQLiteStore:
    """A store that never flushes by time, never waits for a lock, purges nothing."""
    kwargs.setdefault("flush_interval", 3600.0)
    kwargs.setdefault("lock_timeout", 0.0)
    kwargs.setdefault("retention", None)
    return SQLiteStore(path, **kwargs)


async def test_aclose_raises_when_its_write_behind_changes_could_not_be_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A terminal record still pending when the store closes, whose batch
    fails (a disk error): aclose() raises that StoreError after closing,
    instead of returning as if the record had been stored."""
    store = make_store(tmp_path / "s.db")
    await store.open()
    await store.record_terminal("veo_t1", {"status": 1}, time.time())
    real = aiosqlite.Connection.execute

    async def execute(self: aiosqlite.Connection, query: str, *args: Any) -> Any:
        if query == "BEGIN IMMEDIATE":
            raise sqlite3.OperationalError("disk I/O error")
        return await real(self, query, *args)

    monkeypatch.setattr(aiosqlite.Connection, "execute", execute)
    with pytest.raises(StoreError):
        await store.aclose()
    assert store.closed


@pytest.mark.parametrize("write", ["intent", "attach"])
async def test_the_writes_standing_for_a_paid_post_are_fsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write: str
) -> None:
    """An intent and a task id are committed with synchronous=FULL (they
    survive a power cut), the store then going back to NORMAL."""
    statements: list[str] = []
    real = aiosqlite.Connection.execute

    async def execute(self: aiosqlite.Connection, query: str, *args: Any) -> Any:
        statements.append(query)
        return await real(self, query, *args)

    async with make_store(tmp_path / "s.db") as store:
        ref = new_ref()
        if write == "attach":
            await store.record_intent(ref, "generate", {"prompt": "a"}, time.time())
        monkeypatch.setattr(aiosqlite.Connection, "execute", execute)
        if write == "intent":
            await store.record_intent(ref, "generate", {"prompt": "a"}, time.time())
        else:
            await store.attach_task_id(ref, "veo_t1")
        monkeypatch.undo()
    marker = "INSERT INTO intents" if write == "intent" else "UPDATE intents SET task_id"
    at = next(i for i, s in enumerate(statements) if s.startswith(marker))
    pragmas = [s for s in statements[:at] if s.startswith("PRAGMA synchronous")]
    assert pragmas[-1:] == ["PRAGMA synchronous = FULL"], statements
    commit = statements.index("COMMIT", at)
    assert "PRAGMA synchronous = NORMAL" in statements[commit:], statements
