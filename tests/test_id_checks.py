"""Ids are checked once, by position, before any request (``_id_checks``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from veo_async import VeoSession, _id_checks
from veo_async._id_checks import CheckedIds, validated_ids, validated_ids_in_steps
from veo_async.models import RecordInfo, validate_task_id
from veo_async.store import SQLiteStore
from veo_async.testing import FakeKie, TaskScript

IDS = [f"veo_task_once_{n:03d}" for n in range(50)]


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every id :mod:`veo_async._id_checks` checks, in order."""
    seen: list[object] = []
    check = validate_task_id

    def counted(task_id: object) -> str:
        seen.append(task_id)
        return check(task_id)

    monkeypatch.setattr(_id_checks, "validate_task_id", counted)
    return seen


async def test_checked_ids_are_not_checked_again(checks: list[object]) -> None:
    """Both checks return CheckedIds (a list), which neither checks again."""
    once = validated_ids(iter(IDS))
    assert isinstance(once, CheckedIds)
    assert once == IDS
    assert validated_ids(once) is once
    assert await validated_ids_in_steps(once) is once
    stepped = await validated_ids_in_steps(IDS)
    assert stepped == IDS
    assert await validated_ids_in_steps(stepped) is stepped
    assert checks == IDS + IDS


@pytest.mark.parametrize(
    ("given", "error", "message"),
    [
        ("veo_task", TypeError, "not a single string"),
        (42, TypeError, "not int"),
        (["ok_id", 7], TypeError, r"task_ids\[1\]: .*str"),
        (["ok_id", "a b"], ValueError, r"task_ids\[1\]: .*whitespace"),
    ],
)
async def test_bad_ids_are_named_by_position(given: object, error: type, message: str) -> None:
    """Either check refuses the same input the same way."""
    with pytest.raises(error, match=message):
        validated_ids(given)  # type: ignore[arg-type]
    with pytest.raises(error, match=message):
        await validated_ids_in_steps(given)  # type: ignore[arg-type]


@pytest.mark.parametrize("how", ["wait_many", "as_completed"])
async def test_a_session_with_a_store_checks_each_id_once(
    fake_kie: FakeKie,
    make_veo: Callable[..., VeoSession],
    tmp_path: Path,
    checks: list[object],
    how: str,
) -> None:
    """With a store, the session checks the ids before writing them and hands
    them on: neither the store nor the batch checks them again (100,000 ids
    took 20-40 ms per check)."""
    fake_kie.add_tasks([TaskScript(task_id, complete_after=0.0) for task_id in IDS])
    veo = make_veo(store=SQLiteStore(tmp_path / "tasks.db"))
    if how == "wait_many":
        outcomes = await veo.wait_many(IDS)
        assert [record.task_id for record in outcomes if isinstance(record, RecordInfo)] == IDS
    else:
        async for handle in veo.as_completed(IDS):
            assert handle.result().task_id == handle.task_id
    assert sorted(checks) == sorted(IDS)  # type: ignore[type-var]
