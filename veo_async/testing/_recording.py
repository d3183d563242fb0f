"""What the simulator remembers about each request it saw."""

from __future__ import annotations

from typing import Any

import attrs

__all__ = ["RecordedRequest"]


# Mutable on purpose: a request is recorded when it arrives (so a hanging
# request is visible while it hangs) and its answer is filled in later.
@attrs.define(eq=False)
class RecordedRequest:
    """One request seen by :class:`~veo_async.testing.FakeKie`.

    :ivar method: the HTTP method.
    :ivar path: the URL path, without the query string.
    :ivar query: the query parameters (the last value wins for repeated names).
    :ivar headers: the request headers as sent (left out of ``repr``: they
        carry the API key).
    :ivar task_id: the ``taskId`` of a record-info request, else ``None``.
    :ivar started: event-loop time (``loop.time()``) at arrival.
    :ivar status: the HTTP status answered; 0 while unanswered, and for a
        dropped connection (reset fault, client gone, simulator closed).
    :ivar code: the effective code answered (the envelope ``code`` for a JSON
        envelope, else the HTTP status); 0 like *status*.
    :ivar fault: the kind of the fault that shaped the answer (the last one,
        when a session-wide and a task fault both applied), else ``None``.
    :ivar finished: event-loop time at which the handler finished, or ``None``.
    :ivar json: the request's JSON body, parsed (``None`` without one).
    """

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str] = attrs.field(repr=False)
    task_id: str | None
    started: float
    status: int = 0
    code: int = 0
    fault: str | None = None
    finished: float | None = None
    json: Any = None
