"""What became of each task, as the CLI reports it: JSON lines, counts, exit codes.

Pure: no I/O and no event loop, so the output format and the exit-code rules
can be read (and tested) in one place.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs

from .. import (
    RecordInfo,
    TaskFailedError,
    TaskStatus,
    TransportError,
    VeoTask,
    WaitTimeoutError,
)

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_TIMEOUT",
    "EXIT_USAGE",
    "Counts",
    "Outcome",
    "Tally",
    "TaskOutcome",
    "outcome_of",
]

#: Every task succeeded (``wait``), every record was read (``status``).
EXIT_OK = 0
#: Some task failed or ended in an error (``wait``); some record could not be read (``status``).
EXIT_FAILED = 1
#: The command line was wrong: nothing was requested.
EXIT_USAGE = 2
#: Some task was still generating at its deadline, and none failed.
EXIT_TIMEOUT = 3


class Outcome(enum.Enum):
    """How one wait ended; the value is the ``"outcome"`` of its JSON line."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMEOUT = "timeout"
    ERROR = "error"


@attrs.frozen
class TaskOutcome:
    """One task's outcome.

    :ivar task_id: the task.
    :ivar kind: how its wait ended.
    :ivar record: the last record seen (the SUCCESS one, the FAILED one, the
        one a timeout carries), or None.
    :ivar error: the exception that ended the wait without success, or None.
    """

    task_id: str
    kind: Outcome
    record: RecordInfo | None = None
    error: BaseException | None = None

    @property
    def request_error(self) -> BaseException | None:
        """The request error behind this outcome, for the progress display.

        The error itself for ``error``; a timeout's ``last_error`` (None when
        its polls were answered); None for a success or a failed render.
        """
        if self.kind is Outcome.ERROR:
            return self.error
        if isinstance(self.error, WaitTimeoutError):
            return self.error.last_error
        return None

    def to_json(self) -> dict[str, Any]:
        """The JSON line of this outcome.

        ``{"task_id", "outcome", "record"}`` for a success;
        ``{"task_id", "outcome", "error", "message"}`` otherwise, plus
        ``"record"`` when the error carries one.
        """
        line: dict[str, Any] = {"task_id": self.task_id, "outcome": self.kind.value}
        if self.error is not None:
            line["error"] = type(self.error).__name__
            line["message"] = str(self.error)
        if self.record is not None:
            line["record"] = self.record.to_jsonable()
        return line


def outcome_of(handle: VeoTask) -> TaskOutcome:
    """Read the outcome of a handle whose wait has ended (no I/O).

    A wait that timed out without ever getting an answer, its polls failing
    with a :class:`~veo_async.TransportError`, is an ``error`` carrying that
    transport error, not a ``timeout``.
    """
    try:
        record = handle.result()
    except TaskFailedError as exc:
        return TaskOutcome(handle.task_id, Outcome.FAILED, exc.record, exc)
    except WaitTimeoutError as exc:
        if exc.record is None and isinstance(exc.last_error, TransportError):
            # Not one answer, and the polls were failing to connect: the
            # service was never reached (a wrong --base-url, no network). That
            # is an error to fix, not a render that is merely slow.
            return TaskOutcome(handle.task_id, Outcome.ERROR, None, exc.last_error)
        return TaskOutcome(handle.task_id, Outcome.TIMEOUT, exc.record, exc)
    except Exception as exc:  # an API error, a broken answer: reported, not raised
        return TaskOutcome(handle.task_id, Outcome.ERROR, None, exc)
    return TaskOutcome(handle.task_id, Outcome.SUCCEEDED, record)


class Counts:
    """What a tally and its snapshots derive from their five counters."""

    __slots__ = ()
    total: int
    succeeded: int
    failed: int
    timed_out: int
    errors: int

    @property
    def finished(self) -> int:
        """Tasks with an outcome."""
        return self.succeeded + self.failed + self.timed_out + self.errors

    @property
    def generating(self) -> int:
        """Tasks still being waited for."""
        return self.total - self.finished


@attrs.define
class Tally(Counts):
    """Counts of the outcomes so far, out of ``total`` tasks.

    :ivar total: how many tasks are tracked.
    """

    total: int
    succeeded: int = 0
    failed: int = 0
    timed_out: int = 0
    errors: int = 0

    def add(self, outcome: TaskOutcome) -> None:
        """Count one outcome."""
        if outcome.kind is Outcome.SUCCEEDED:
            self.succeeded += 1
        elif outcome.kind is Outcome.FAILED:
            self.failed += 1
        elif outcome.kind is Outcome.TIMEOUT:
            self.timed_out += 1
        else:
            self.errors += 1

    def add_earlier(self, status: TaskStatus | None) -> None:
        """Count the outcome an earlier run delivered (its line is not written
        again): by its stored ``status``; None (not readable) as an error."""
        if status is TaskStatus.SUCCESS:
            self.succeeded += 1
        elif status is not None and status.is_terminal:
            self.failed += 1
        else:
            self.errors += 1

    def add_error(self) -> None:
        """Count an error that is not a task's outcome (a create that failed)."""
        self.errors += 1

    def withdraw(self, count: int = 1) -> None:
        """Take ``count`` planned tasks out of the total: they will not be created."""
        self.total -= count

    def exit_code(self) -> int:
        """:data:`EXIT_FAILED` if any task failed or errored, else :data:`EXIT_TIMEOUT`
        if any timed out, else :data:`EXIT_OK`."""
        if self.failed or self.errors:
            return EXIT_FAILED
        if self.timed_out:
            return EXIT_TIMEOUT
        return EXIT_OK
