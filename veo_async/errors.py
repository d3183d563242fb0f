"""The one exception tree of veo_async.

Every error the SDK raises is a :class:`VeoError`; each one carries the context
needed to act on it, and says whether trying again can help (``retryable``)::

    VeoError
    ├── APIError(code, message, http_status, task_id)   a body/HTTP code from Kie
    │   ├── AuthenticationError        401
    │   ├── InsufficientCreditsError   402
    │   ├── NotFoundError              404
    │   ├── RecordNotFoundError        422 "record is null" / expired / data null
    │   ├── ContentPolicyError         400
    │   ├── RateLimitError             429 (retry_after)
    │   ├── ServiceUnavailableError    455
    │   ├── ServerError                5xx
    │   │   └── ServerErrorPage        a 5xx page, not an envelope (also a ResponseError)
    │   └── ErrorPage                  another status's page (also a ResponseError)
    ├── TransportError        connection reset, DNS, request timeout, TLS
    │   └── TruncatedResponseError  an answer cut off mid-body (also a ResponseError)
    ├── ResponseError         not JSON, truncated, HTML proxy page, wrong shape
    ├── SubmitUncertainError  a create that may have created a task (never resent)
    ├── TaskFailedError       successFlag 2/3 (record, error_code, error_message)
    ├── WaitTimeoutError      the wait's deadline passed (also a TimeoutError)
    ├── SessionClosedError    the session was closed (also a RuntimeError)
    └── StoreError(path)      the durable task store cannot be used
        ├── StoreLockedError       another process holds the store file
        ├── StoreCorruptError      not a SQLite file, damaged, or not a task store
        └── StoreVersionError      written with a schema this version does not read

No message built here ever contains the API key: errors are made from the
service's answer and the task id only, never from request headers.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .models import ExtendRequest, GenerateRequest, RecordInfo

__all__ = [
    "APIError",
    "AuthenticationError",
    "ContentPolicyError",
    "ErrorPage",
    "InsufficientCreditsError",
    "NotFoundError",
    "RateLimitError",
    "RecordNotFoundError",
    "ResponseError",
    "ServerError",
    "ServerErrorPage",
    "ServiceUnavailableError",
    "SessionClosedError",
    "StoreCorruptError",
    "StoreError",
    "StoreLockedError",
    "StoreVersionError",
    "SubmitUncertainError",
    "TaskFailedError",
    "TransportError",
    "TruncatedResponseError",
    "VeoError",
    "WaitTimeoutError",
]


class VeoError(Exception):
    """Base class of every error raised by veo_async.

    :ivar retryable: whether the same request may succeed if tried again later.
    :ivar task_id: the task the failing operation was about, when known.
    """

    retryable: bool = False

    def __init__(self, message: str, *, task_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.task_id = task_id

    def __str__(self) -> str:
        return self.message + _naming(self.task_id)

    def __repr__(self) -> str:
        # With the task's id: a batch's outcomes printed must say whose each is.
        if self.task_id is None:
            return f"{type(self).__name__}({self.message!r})"
        return f"{type(self).__name__}({self.message!r}, task_id={self.task_id!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled (and copied) as it is, field by field: the constructors'
        # arguments differ by class (keyword-only codes, a record, a request)
        # and are not what ``args`` holds, so the default (``cls(*args)``)
        # failed for most of them. A batch's outcomes must cross processes.
        return (_rebuilt, (type(self), self.args, dict(self.__dict__)))


def _rebuilt(cls: type[VeoError], args: tuple[Any, ...], fields: dict[str, Any]) -> VeoError:
    """An error unpickled: made without its constructor, then given its fields."""
    error = cls.__new__(cls, *args)
    error.args = args
    error.__dict__.update(fields)
    return error


def text_without_task(error: BaseException) -> str:
    """``str(error)`` without the ``(task '...')`` it ends with: for a message
    that quotes the error and names the task itself (it said the id twice)."""
    text = str(error)
    suffix = _naming(getattr(error, "task_id", None))
    if suffix and text.endswith(suffix):
        return text[: -len(suffix)]
    return text


def _naming(task_id: str | None) -> str:
    """What an error's text ends with to name its task (nothing without one)."""
    return "" if task_id is None else f" (task {task_id!r})"


# Wordings of a record past the service's retention (see RecordNotFoundError.expired).
_EXPIRED_HINTS = ("expired", "14 days", "older than")


class APIError(VeoError):
    """The service answered with an error code (in the body or the HTTP status).

    :ivar code: the envelope ``code`` (or the HTTP status when the body had none).
    :ivar http_status: the HTTP status of the answer (Kie often says 200).
    """

    def __init__(
        self,
        message: str,
        *,
        code: int,
        http_status: int,
        task_id: str | None = None,
    ) -> None:
        super().__init__(message, task_id=task_id)
        self.code = code
        self.http_status = http_status

    def __str__(self) -> str:
        return f"[{self.code}] {super().__str__()}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code}, message={self.message!r}, "
            f"http_status={self.http_status}, task_id={self.task_id!r})"
        )


class AuthenticationError(APIError):
    """401: the API key is missing, wrong or revoked.

    Its text says so after Kie's message ("You do not have access
    permissions"), which, with a task's id after it, read as a refusal of
    that task rather than of the key.
    """

    def __str__(self) -> str:
        refused = f"[{self.code}] {self.message}: the API key was refused (check it)"
        return refused + _naming(self.task_id)


class InsufficientCreditsError(APIError):
    """402: the account has no credits left."""


class NotFoundError(APIError):
    """404: the endpoint or resource does not exist."""


class RecordNotFoundError(APIError):
    """422 "record is null" (or ``data: null``): the task is not visible.

    Right after creation a record can take a moment to appear, so a wait treats
    this as "not yet" during its policy's grace window; after that it is
    final, and at once for a record the service says is past its 14-day
    retention (:attr:`expired`). A single request (:meth:`VeoTask.refresh`,
    :meth:`VeoSession.record_info`) for a task the session created less than
    ``not_found_grace`` ago raises it with :attr:`retryable` True.
    """

    @property
    def expired(self) -> bool:
        """Whether the service said the record is gone for good ("expired",
        "older than 14 days"), not merely not visible yet: no grace window
        can bring it back."""
        text = self.message.lower()
        return any(hint in text for hint in _EXPIRED_HINTS)


class ContentPolicyError(APIError):
    """400: the request was refused (content policy, language, image fetch).
    (Kie's 451, an image that could not be fetched, is a plain
    :class:`APIError` with ``code`` 451, as every code without a class is.)

    A 400 answered with a page, not an envelope (a proxy refusing a request),
    is an :class:`ErrorPage` instead: the service did not refuse the prompt.
    """


class RateLimitError(APIError):
    """429: too many requests.

    :ivar retry_after: seconds the service asked us to wait, or ``None`` when it
        sent no usable ``Retry-After`` header.
    """

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        code: int,
        http_status: int,
        task_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, code=code, http_status=http_status, task_id=task_id)
        self.retry_after = retry_after


class ServiceUnavailableError(APIError):
    """455: the service is under maintenance."""

    retryable = True


class ServerError(APIError):
    """5xx: the service (or a proxy in front of it) failed; usually transient.

    501 ("generation failed") and 505 ("feature disabled") are final answers,
    not outages, and are marked not retryable.
    """

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        code: int,
        http_status: int,
        task_id: str | None = None,
    ) -> None:
        super().__init__(message, code=code, http_status=http_status, task_id=task_id)
        self.retryable = code not in (501, 505)


class TransportError(VeoError):
    """The request never got a complete HTTP answer (reset, DNS, TLS, timeout).

    :ivar sent: False only when the request certainly never left (the
        connection was refused, the name did not resolve); True when it may
        have reached the service (a reset or timeout after sending). A create
        is resent by itself only when this is False.
    """

    retryable = True

    def __init__(self, message: str, *, task_id: str | None = None, sent: bool = True) -> None:
        super().__init__(message, task_id=task_id)
        self.sent = sent


class ResponseError(VeoError):
    """The answer could not be understood: not JSON, truncated, an HTML proxy
    page, too large, or a record of the wrong shape.

    :ivar http_status: the HTTP status of the answer.
    :ivar excerpt: the first bytes of the body, decoded leniently, for debugging.
    :ivar field: the record field that could not be read, when that was the problem.
    """

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        excerpt: str = "",
        field: str | None = None,
        task_id: str | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message, task_id=task_id)
        self.http_status = http_status
        self.excerpt = excerpt
        self.field = field
        if retryable is not None:  # else the class's (True; an ErrorPage's False)
            self.retryable = retryable

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(message={self.message!r}, http_status={self.http_status}, "
            f"field={self.field!r}, task_id={self.task_id!r}, excerpt={self.excerpt!r})"
        )


class TruncatedResponseError(TransportError, ResponseError):
    """An answer cut off before its end: the connection closed or was reset
    in the middle of the body (fewer bytes than its ``Content-Length``, a
    chunked body without its last chunk).

    Both a :class:`TransportError` (no complete HTTP answer came: ``sent`` is
    True, a create is not resent) and a :class:`ResponseError` (a truncated
    answer, with the answer's :attr:`http_status`): either ``except`` catches
    it. Retryable, as both are. Its :attr:`excerpt` is empty: once the
    connection breaks, aiohttp hands over none of the body that came (the
    message says how the answer broke off).
    """

    def __init__(self, message: str, *, http_status: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status


class ServerErrorPage(ServerError, ResponseError):  # type: ignore[misc]  # http_status: int here
    """A 5xx status answered with a page, not an envelope: a proxy's HTML error
    page (502/503/504), an empty or cut body.

    Both a :class:`ServerError` (by its HTTP status: ``code`` is that status,
    retried as a 5xx is) and a :class:`ResponseError` (the answer could not be
    understood; :attr:`excerpt` holds its first bytes): either ``except``
    catches it.
    """


class ErrorPage(APIError, ResponseError):  # type: ignore[misc]  # http_status: int here
    """Another HTTP error status with no class of its own (such as 403: a
    proxy refusing the request), or a 400, answered with a page, not an
    envelope (a 400 page is a proxy's refusal, not the service's of a prompt).

    Both an :class:`APIError` (``code`` is the HTTP status) and a
    :class:`ResponseError` (with its :attr:`excerpt`); not retryable: the same
    request meets the same refusal.
    """

    retryable = False


class SubmitUncertainError(VeoError):
    """A create request (generate, extend) may or may not have created a task.

    The request left, and then no clear answer came back: a timeout, a reset
    after sending, a 5xx, an unreadable answer. The service may have created
    (and charged for) the task. It is never resent by itself: look for the
    task (its callback, your Kie dashboard) before sending it again.

    A 4K request is not one of these: Kie answers a repeated 4K request of a
    video with 422 ("processing", or "generated" with the URLs), never a
    second job, so :meth:`~veo_async.VeoTask.get_4k` asks again when an
    answer was lost, as it asks again to see whether the 4K video is ready.

    :ivar request: the :class:`~veo_async.GenerateRequest` or
        :class:`~veo_async.ExtendRequest` that was sent.
    :ivar cause: what went wrong, as text. The underlying error is not
        chained as a cause (raised ``from None``: its ``__context__`` is kept
        but suppressed, and tracebacks do not show it).
    :ivar task_id: the id of the task the answer claimed it created, when an
        error status came with a success envelope naming one (track it with
        ``veo.task(error.task_id)``); None otherwise.
    """

    retryable = False

    def __init__(
        self, request: GenerateRequest | ExtendRequest, cause: str, *, task_id: str | None = None
    ) -> None:
        super().__init__(
            f"the create request may have created a task (and been charged): {cause}; "
            "it was not resent: check for the task before sending it again",
            task_id=task_id,
        )
        self.request = request
        self.cause = cause

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(cause={self.cause!r}, request={self.request!r}, "
            f"task_id={self.task_id!r})"
        )


#: The most characters of the service's own text (a ``msg``, an
#: ``errorMessage``) an error's message quotes; the attributes keep it whole.
QUOTE_LIMIT = 300


def quoted(text: str) -> str:
    """``text`` as an error message quotes it: cut to :data:`QUOTE_LIMIT`
    characters (a 50 KB page sent as ``msg`` made 50 KB messages and log lines)."""
    if len(text) <= QUOTE_LIMIT:
        return text
    return f"{text[:QUOTE_LIMIT]}... ({len(text):,} chars)"


class TaskFailedError(VeoError):
    """The task ended with ``successFlag`` 2 (failed) or 3 (generation failed).

    :ivar record: the final :class:`~veo_async.RecordInfo`.
    :ivar error_code: the service's ``errorCode`` (e.g. 400, 500, 501) or None.
    :ivar error_message: the service's ``errorMessage``.
    """

    task_id: str  # always the record's task

    def __init__(self, record: RecordInfo) -> None:
        detail = quoted(record.error_message or "no message")
        code = f"error {record.error_code}" if record.error_code is not None else "no code"
        super().__init__(
            f"task ended with status {record.status.name} ({code}: {detail})",
            task_id=record.task_id,
        )
        self.record = record
        self.error_code = record.error_code
        self.error_message = record.error_message


if sys.version_info >= (3, 11):
    _Timeout = TimeoutError
else:

    class _Timeout(TimeoutError, asyncio.TimeoutError):
        """Before 3.11, ``asyncio.TimeoutError`` (what ``asyncio.wait_for``
        raises) is not the builtin: a wait's timeout is both."""


class WaitTimeoutError(VeoError, _Timeout):
    """The wait's deadline passed before the task reached a terminal state.

    :ivar record: the last :class:`~veo_async.RecordInfo` seen, or ``None``.
    :ivar timeout: the timeout, in seconds, that expired.
    :ivar last_error: the retryable error of the most recent failed poll, if
        the polls were failing when time ran out (a wrong base URL, an outage):
        the difference between "still rendering" and "never reached Kie".
    :ivar waiting_for: what was not ready, when not the task itself (``"the
        1080p video"`` of :meth:`~veo_async.VeoTask.get_1080p`), else None.
    """

    # The task may still finish: waiting again (with a longer deadline) can help.
    retryable = True
    task_id: str  # always the task waited for

    def __init__(
        self,
        task_id: str,
        timeout: float,
        record: RecordInfo | None,
        last_error: VeoError | None = None,
        *,
        waiting_for: str | None = None,
    ) -> None:
        # The message is built when first read: a batch's deadline makes one of
        # these per unfinished id (50,000 at once), and most are never printed.
        Exception.__init__(self, task_id, timeout)
        self.task_id = task_id
        self.timeout = timeout
        self.record = record
        self.last_error = last_error
        self.waiting_for = waiting_for
        self._message: str | None = None

    @property
    def message(self) -> str:
        """What went wrong, in words (built on first use)."""
        if self._message is None:
            record, last_error = self.record, self.last_error
            seen = f"last status {record.status.name}" if record is not None else "no record seen"
            if last_error is not None:
                failed = text_without_task(last_error)  # (this error names the task)
                seen += f"; last poll failed: {type(last_error).__name__}: {failed}"
            waited = self.waiting_for
            late = "task not finished" if waited is None else f"{waited} not ready"
            self._message = f"{late} after {self.timeout:g} s ({seen})"
        return self._message

    @message.setter
    def message(self, value: str) -> None:
        self._message = value


class SessionClosedError(VeoError, RuntimeError):
    """The :class:`~veo_async.VeoSession` was closed: before the call, or while
    it was waiting (queued behind a pause, or polling). Open a new session."""

    def __init__(self, message: str = "the VeoSession is closed; open a new one") -> None:
        super().__init__(message)


class StoreError(VeoError):
    """The durable task store (:mod:`veo_async.store`) cannot be used.

    Never retryable as such: each message names the file and what to do.

    :ivar path: the store's file (or other location), as given.
    """

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path

    def __repr__(self) -> str:
        return f"{type(self).__name__}(message={self.message!r}, path={self.path!r})"


class StoreLockedError(StoreError):
    """Another process (or another store object) has the store open.

    Two writers would each believe they own every unfinished task, so a store
    is used by one process at a time.
    """


class StoreCorruptError(StoreError):
    """The file is not a SQLite database, is damaged, or is not a task store."""


class StoreVersionError(StoreError):
    """The store was written with a schema version this veo_async cannot read.

    :ivar found: the version in the file.
    :ivar supported: the version this veo_async reads and writes.
    """

    def __init__(self, message: str, *, path: str, found: int, supported: int) -> None:
        super().__init__(message, path=path)
        self.found = found
        self.supported = supported


def created_nothing(error: BaseException) -> bool:
    """Whether a create request (generate, extend) that ended in ``error``
    certainly created nothing, so that sending it again cannot pay twice: a
    :class:`TransportError` before anything was sent, or a 429 or a 455 that
    names no task. Anything else after sending (a timeout, a reset, a 5xx, an
    unreadable answer) may have created the task. The one judgement a create
    is resent by, and the command line reports an interrupted create by."""
    if isinstance(error, TransportError):
        return not error.sent
    return isinstance(error, (RateLimitError, ServiceUnavailableError)) and error.task_id is None
