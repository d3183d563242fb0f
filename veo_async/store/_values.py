"""What a task store hands back: frozen snapshots of its rows, no I/O."""

from __future__ import annotations

import re
import secrets
from typing import Any

import attrs

from ..models import RecordInfo, TaskStatus
from ._codec import record_from_json

__all__ = ["StoredIntent", "StoredTask", "check_ref", "new_ref"]

# URL-unreserved characters only (RFC 3986), so a ref travels in a callback
# URL's query string (``?veo_ref=...``) with no escaping and comes back unchanged.
_REF_PATTERN = re.compile(r"[A-Za-z0-9._~-]{1,128}")


def new_ref() -> str:
    """A fresh client-side reference for a create intent (22 URL-safe characters)."""
    return secrets.token_urlsafe(16)


def check_ref(ref: object) -> str:
    """*ref* itself when it is a valid intent reference.

    :raises TypeError: when it is not a string.
    :raises ValueError: when it is empty, longer than 128 characters, or has a
        character that a URL query would need to escape.
    """
    if not isinstance(ref, str):
        raise TypeError(f"an intent ref must be a str, not {type(ref).__name__}")
    if _REF_PATTERN.fullmatch(ref) is None:
        raise ValueError(
            f"invalid intent ref {ref!r}: use 1-128 of A-Z a-z 0-9 . _ ~ - "
            "(it must survive a callback URL unescaped)"
        )
    return ref


@attrs.frozen
class StoredTask:
    """One task the store knows, as it was when read.

    Times are epoch seconds (``time.time()`` of the caller that recorded them).

    :ivar task_id: Kie's task id.
    :ivar model: the model it was created with, when known.
    :ivar created_at: when it was created (or first tracked, for ids given by a user).
    :ivar first_seen_at: when a poll first saw its record, or None.
    :ivar record: the terminal record as :func:`record_to_json` wrote it, or
        None while the task is unfinished (see :meth:`record_info`).
    :ivar terminal_at: when the terminal record was first stored, or None.
    :ivar delivered_at: when it was last handed to the user, or None.
    :ivar deliveries: how many times it was handed over (across restarts).
    :ivar acked_at: when the user acknowledged it, or None.
    :ivar updated_at: the latest of the times above.
    :ivar ref: the intent reference it was created under, or None for tracked ids.
    """

    task_id: str
    model: str | None
    created_at: float
    first_seen_at: float | None = None
    record: dict[str, Any] | None = attrs.field(default=None, eq=True, hash=False)
    terminal_at: float | None = None
    delivered_at: float | None = None
    deliveries: int = 0
    acked_at: float | None = None
    updated_at: float = 0.0
    ref: str | None = None

    @property
    def is_terminal(self) -> bool:
        """True once a terminal record is stored."""
        return self.record is not None

    @property
    def delivered(self) -> bool:
        """True once it was handed to the user at least once."""
        return self.deliveries > 0

    @property
    def acked(self) -> bool:
        """True once the user acknowledged it: it is never delivered again."""
        return self.acked_at is not None

    @property
    def status(self) -> TaskStatus | None:
        """The terminal status, or None while unfinished (or when the stored
        record holds no readable status)."""
        if self.record is None:
            return None
        try:
            return TaskStatus(self.record["status"])
        except (KeyError, TypeError, ValueError):
            return None

    def record_info(self) -> RecordInfo | None:
        """The terminal record as a :class:`~veo_async.RecordInfo`, or None.

        :raises ValueError: when the stored record cannot be read.
        """
        return None if self.record is None else record_from_json(self.record)


@attrs.frozen
class StoredIntent:
    """A create request written before it was sent.

    :ivar ref: the client-side reference (URL-safe; see :func:`new_ref`).
    :ivar kind: what was being created, e.g. ``"generate"`` or ``"extend"``.
    :ivar request: the request body, as given.
    :ivar created_at: when the intent was written (epoch seconds).
    :ivar task_id: the task id the answer gave, or None: then it is *uncertain*
        (the POST may or may not have created, and charged for, a task).
    """

    ref: str
    kind: str
    request: dict[str, Any] = attrs.field(eq=True, hash=False)
    created_at: float
    task_id: str | None = None

    @property
    def uncertain(self) -> bool:
        """True while no task id is known for this intent."""
        return self.task_id is None
