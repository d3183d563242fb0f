"""The values the SDK hands out: frozen, hashable where it makes sense, no I/O."""

from __future__ import annotations

import datetime as _dt
import enum
import re
from typing import Any

import attrs

__all__ = ["MAX_TASK_ID_LENGTH", "RecordInfo", "TaskStatus", "VideoResult", "validate_task_id"]

_WHITESPACE = re.compile(r"\s")
#: Real ids are ~40 characters; anything this long is a bug upstream of us.
MAX_TASK_ID_LENGTH = 256


def validate_task_id(task_id: object) -> str:
    """Return ``task_id`` if it is a plausible Kie task id, else raise.

    An id is a non-empty string of at most :data:`MAX_TASK_ID_LENGTH`
    characters with no whitespace or control character anywhere.

    :raises ValueError: (``TypeError`` for a non-string) naming the problem.
    """
    if not isinstance(task_id, str):
        raise TypeError(f"a task id must be a str, not {type(task_id).__name__}")
    if not task_id:
        raise ValueError("a task id must not be empty")
    if len(task_id) > MAX_TASK_ID_LENGTH:
        raise ValueError(f"task id is {len(task_id)} characters long (max {MAX_TASK_ID_LENGTH})")
    if not task_id.isprintable() or _WHITESPACE.search(task_id):
        raise ValueError(f"task id {task_id!r} contains whitespace or control characters")
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
