"""Instrumentation: typed events a session reports through one hook.

Pass ``VeoSession(on_event=callback)``; the callback gets each event as it
happens, synchronously, on the event loop (keep it quick: count, log, forward
to a metrics client). An exception raised by the callback is logged and
otherwise ignored: metrics must never break polling. ::

    from collections import Counter
    from veo_async.events import Event, RequestAnswered

    seen: Counter[str] = Counter()

    def count(event: Event) -> None:
        seen[type(event).__name__] += 1

    async with VeoSession(on_event=count) as veo: ...

Times are the event loop's clock (``loop.time()``, seconds).
"""

from __future__ import annotations

from typing import Literal

import attrs

from .errors import VeoError
from .models import RecordInfo, TaskStatus

__all__ = [
    "RAISED_TOO",
    "Event",
    "RecordPublished",
    "RequestAnswered",
    "RequestCancelled",
    "RequestFailed",
    "RequestStarted",
    "RetryScheduled",
    "SessionPaused",
]

#: Logging, beside the events: the attribute (True) of a ``veo_async`` log
#: record whose news every caller also gets as an exception (a 401 stops the
#: session: each wait raises AuthenticationError). A program that reports those
#: may leave the record out (a ``logging.Filter`` returning
#: ``not getattr(record, RAISED_TOO, False)``), as the command line does.
RAISED_TOO = "veo_raised_too"


@attrs.frozen
class RequestStarted:
    """A request got its slot and is being sent.

    :ivar method: ``"GET"`` or ``"POST"``.
    :ivar path: the API path.
    :ivar task_id: the task it is about, if any.
    :ivar at: loop time of the start.
    """

    method: str
    path: str
    task_id: str | None
    at: float


@attrs.frozen
class RequestAnswered:
    """A request got an answer the protocol accepted (a record, a task id...).

    :ivar duration: seconds from start to decoded answer.
    """

    method: str
    path: str
    task_id: str | None
    at: float
    duration: float


@attrs.frozen
class RequestFailed:
    """A request ended in an error (an error answer, no answer, a bad answer).

    :ivar error: the :class:`~veo_async.errors.VeoError` it ended with.
    """

    method: str
    path: str
    task_id: str | None
    at: float
    duration: float
    error: VeoError


@attrs.frozen
class RequestCancelled:
    """A request was given up before its answer (the wait that wanted it
    ended or was cancelled, or the session closed). With
    :class:`RequestAnswered` and :class:`RequestFailed`, every
    :class:`RequestStarted` ends in exactly one of the three.

    :ivar duration: seconds from start to being given up.
    """

    method: str
    path: str
    task_id: str | None
    at: float
    duration: float


@attrs.frozen
class RecordPublished:
    """A poll brought a task's record whose status differs from the last one seen.

    :ivar previous: the status before (None: the first record seen).
    """

    task_id: str
    status: TaskStatus
    previous: TaskStatus | None
    record: RecordInfo


@attrs.frozen
class RetryScheduled:
    """A poll failed with a retryable error; the next one is due in ``delay``
    seconds, by the schedule (a pause of the session, after a 429, may hold it
    longer: its :class:`SessionPaused` says until when)."""

    task_id: str
    delay: float
    error: VeoError


@attrs.frozen
class SessionPaused:
    """A 429 paused the session's requests: every one (``scope`` ``"session"``,
    a 429 on a poll or a read), or only its creates (``"creates"``, a 429 on a
    create: the creation limit is the service's separate one, and polls go on).
    Sent when a 429 starts a pause or lengthens the one in force; a 429 that
    ends within the pause in force sends none (nor counts in ``pauses``).

    :ivar duration: seconds of the pause (capped, jitter included).
    :ivar retry_after: the service's ``Retry-After`` in seconds, if it sent one.
    :ivar at: loop time the pause began (the 429 arrived); no request of the
        scope starts before ``at + duration``.
    :ivar scope: ``"session"`` or ``"creates"``. Only a session pause counts
        in :attr:`SessionStats.pauses <veo_async.SessionStats.pauses>`.
    """

    duration: float
    retry_after: float | None
    at: float
    scope: Literal["session", "creates"] = "session"


#: Any event a session reports.
Event = (
    RequestStarted
    | RequestAnswered
    | RequestFailed
    | RequestCancelled
    | RecordPublished
    | RetryScheduled
    | SessionPaused
)
