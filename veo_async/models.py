"""The values the SDK hands out: frozen, hashable where it makes sense, no I/O."""

from __future__ import annotations

import datetime as _dt
import enum
from typing import Any

import attrs

__all__ = ["MAX_TASK_ID_LENGTH", "RecordInfo", "TaskStatus", "VideoResult", "validate_task_id"]

#: Real ids are ~40 characters; anything this long is a bug upstream of us.
MAX_TASK_ID_LENGTH = 256


def validate_task_id(task_id: object) -> str:
    """Return ``task_id`` if it is a plausible Kie task id, else raise.

    A task id is a non-empty string of at most :data:`MAX_TASK_ID_LENGTH`
    printable characters with no whitespace anywhere: ``"a b"`` is refused as
    surely as ``" ab"``, since no real id contains a space and one that does
    is a copy-paste accident (two ids on a line, a stray tab).

    :raises ValueError: (``TypeError`` for a non-string) naming the problem.
    """
    # The common case in one pass of C code (this runs for every id of every
    # batch): printable ASCII excludes the control characters and every
    # whitespace but the space, so with no space the checks below all pass.
    if (
        type(task_id) is str
        and 0 < len(task_id) <= MAX_TASK_ID_LENGTH
        and task_id.isascii()
        and task_id.isprintable()
        and " " not in task_id
    ):
        return task_id
    if not isinstance(task_id, str):
        raise TypeError(f"a task id must be a str, not {type(task_id).__name__}")
    if not task_id:
        raise ValueError("a task id must not be empty")
    if len(task_id) > MAX_TASK_ID_LENGTH:
        raise ValueError(f"task id is {len(task_id)} characters long (max {MAX_TASK_ID_LENGTH})")
    if any(ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0 for char in task_id):
        raise ValueError(f"task id {task_id!r} contains control characters")
    if task_id != task_id.strip():
        raise ValueError(f"task id {task_id!r} has surrounding whitespace")
    if any(char.isspace() for char in task_id):
        raise ValueError(f"task id {task_id!r} contains whitespace")
    # What is left unprintable: format characters (a zero-width space), unassigned ones.
    if not task_id.isprintable():
        raise ValueError(f"task id {task_id!r} contains invisible characters")
    return task_id


class TaskStatus(enum.IntEnum):
    """The task's ``successFlag``: 0 while generating, then one of three ends."""

    GENERATING = 0
    SUCCESS = 1
    FAILED = 2
    GENERATION_FAILED = 3

    @property
    def is_terminal(self) -> bool:
        """True once the task will not change any more (anything but GENERATING)."""
        return self is not TaskStatus.GENERATING


@attrs.frozen
class VideoResult:
    """What a finished task produced.

    :ivar task_id: the task these videos belong to.
    :ivar result_urls: the video URLs (the main result).
    :ivar origin_urls: originals, only for non-16:9 aspect ratios.
    :ivar full_result_urls: the whole video after an extend.
    :ivar resolution: e.g. ``"1080p"``, or None when not reported.
    """

    task_id: str
    result_urls: tuple[str, ...] = ()
    origin_urls: tuple[str, ...] = ()
    full_result_urls: tuple[str, ...] = ()
    resolution: str | None = None


@attrs.frozen
class RecordInfo:
    """One answer of ``GET /api/v1/veo/record-info``: the state of a task.

    :ivar task_id: the task id.
    :ivar status: the :class:`TaskStatus` (``successFlag``).
    :ivar params: the generation request's parameters (``paramJson`` parsed);
        when the service sent text that is not a JSON object, ``{"raw": text}``.
    :ivar create_time: when the task was created (aware datetime) or None.
    :ivar complete_time: when it ended (aware datetime) or None.
    :ivar response: the :class:`VideoResult` once there is one, else None.
    :ivar error_code: the service's ``errorCode`` or None.
    :ivar error_message: the service's ``errorMessage`` ("" when none).
    :ivar fallback: True when the fallback model made the video (720p only).
    """

    task_id: str
    status: TaskStatus
    params: dict[str, Any] = attrs.field(factory=dict, hash=False)
    create_time: _dt.datetime | None = None
    complete_time: _dt.datetime | None = None
    response: VideoResult | None = None
    error_code: int | None = None
    error_message: str = ""
    fallback: bool = False

    @property
    def is_done(self) -> bool:
        """True once the task reached a terminal status."""
        return self.status.is_terminal

    @property
    def result_urls(self) -> tuple[str, ...]:
        """The result video URLs, or ``()`` while there are none."""
        return self.response.result_urls if self.response is not None else ()

    def to_jsonable(self) -> dict[str, Any]:
        """This record as a JSON-ready dict: snake_case keys, nested dicts for
        :attr:`response`, ISO 8601 times, the status by name, lists for tuples.

        ``json.dumps(record.to_jsonable())`` always works; it is what
        ``veo-async wait`` and ``status --json`` print under ``"record"``.
        """
        return attrs.asdict(self, value_serializer=_jsonable_value)


def _jsonable_value(_inst: object, _field: object, value: Any) -> Any:
    if isinstance(value, _dt.datetime):
        return value.isoformat()
    if isinstance(value, TaskStatus):
        return value.name
    if isinstance(value, tuple):
        return list(value)
    return value
