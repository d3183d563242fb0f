"""The public helpers of veo_async.models: ``RecordInfo.to_jsonable`` and
``validate_task_id`` (both used by the command line, both public)."""

from __future__ import annotations

import datetime as dt
import json

import attrs
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from veo_async.models import (
    MAX_TASK_ID_LENGTH,
    RecordInfo,
    TaskStatus,
    VideoResult,
    validate_task_id,
)

UTC = dt.timezone.utc
DONE = RecordInfo(
    task_id="veo_task_1",
    status=TaskStatus.SUCCESS,
    params={"prompt": "a cat", "aspectRatio": "16:9"},
    create_time=dt.datetime(2025, 6, 6, 10, 28, tzinfo=UTC),
    complete_time=dt.datetime(2025, 6, 6, 10, 30, tzinfo=UTC),
    response=VideoResult(
        task_id="veo_task_1", result_urls=("https://cdn/a.mp4", "https://cdn/b.mp4"),
        resolution="1080p",
    ),
)


def test_to_jsonable_is_plain_json_with_iso_times_and_status_names() -> None:
    """Every field, snake_case; times ISO 8601, the status by name, tuples as lists."""
    out = DONE.to_jsonable()
    assert json.loads(json.dumps(out)) == out
    assert out == {
        "task_id": "veo_task_1",
        "status": "SUCCESS",
        "params": {"prompt": "a cat", "aspectRatio": "16:9"},
        "create_time": "2025-06-06T10:28:00+00:00",
        "complete_time": "2025-06-06T10:30:00+00:00",
        "response": {
            "task_id": "veo_task_1",
            "result_urls": ["https://cdn/a.mp4", "https://cdn/b.mp4"],
            "origin_urls": [],
            "full_result_urls": [],
            "resolution": "1080p",
        },
        "error_code": None,
        "error_message": "",
        "fallback": False,
    }


def test_to_jsonable_of_a_bare_record() -> None:
    """A record still generating: no times, no response, status GENERATING."""
    out = RecordInfo("veo_task_2", TaskStatus.GENERATING).to_jsonable()
    assert out["status"] == "GENERATING"
    assert out["response"] is None
    assert out["create_time"] is None
    assert set(out) == {field.name for field in attrs.fields(RecordInfo)}


@pytest.mark.parametrize(
    ("task_id", "problem"),
    [
        ("", "must not be empty"),
        ("a b", "contains whitespace"),
        ("veo_task 1", "contains whitespace"),
        ("a\u00a0b", "contains whitespace"),  # a no-break space, pasted from a web page
        ("a\u2003b", "contains whitespace"),
        (" t1", "surrounding whitespace"),
        ("t1\n", "control characters"),
        ("bad\tid", "control characters"),
        ("t\x00", "control characters"),
        ("a\u200bb", "invisible characters"),  # a zero-width space
        ("x" * (MAX_TASK_ID_LENGTH + 1), "characters long"),
        ("null", "the service's word for none"),
        ("NULL", "the service's word for none"),
        ("None", "the service's word for none"),
    ],
)
def test_validate_task_id_names_the_problem(task_id: str, problem: str) -> None:
    """Whitespace anywhere, control or invisible characters, emptiness, excess
    length, and the service's texts for absent ("null", "None")."""
    with pytest.raises(ValueError, match=problem):
        validate_task_id(task_id)


def test_validate_task_id_refuses_a_non_string() -> None:
    """A number is a TypeError naming its type."""
    with pytest.raises(TypeError, match="must be a str, not int"):
        validate_task_id(123)


@pytest.mark.parametrize(
    "task_id", ["veo_task_abcdef123456", "t1", "a-b_c.d:e/f", "x" * MAX_TASK_ID_LENGTH, "é"]
)
def test_validate_task_id_returns_a_valid_id(task_id: str) -> None:
    """Plausible ids come back unchanged."""
    assert validate_task_id(task_id) is task_id


@given(st.text(max_size=40))
@example("NULL")
@example("none")
def test_validate_task_id_accepts_exactly_the_printable_unspaced_ids(task_id: str) -> None:
    """Accepted iff non-empty, printable, without whitespace and not the
    service's text for absent ("null", "None": any string, either way)."""
    valid = (
        bool(task_id)
        and task_id.isprintable()
        and not any(c.isspace() for c in task_id)
        and task_id.lower() not in ("null", "none")
    )
    try:
        validate_task_id(task_id)
    except ValueError:
        assert not valid
    else:
        assert valid
