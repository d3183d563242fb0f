"""The sans-I/O core: one HTTP answer -> the envelope's ``data`` or the right error.

Kie answers errors with HTTP 200 and an envelope ``{"code", "msg", "data"}``
whose ``code`` is the real status, while proxies in front of it answer with
HTML pages and real HTTP statuses. So:

- when the body is a JSON envelope, its ``code`` decides (an HTTP error status
  only matters when the body claims success);
- when it is not (HTML, truncated JSON, empty), the HTTP status decides, and a
  2xx with such a body is a :class:`~veo_async.errors.ResponseError`.

What is worth retrying: an unreadable body (not JSON: HTML, truncated, empty)
is a transient proxy or network accident, so its ResponseError is retryable; a
well-formed answer of the wrong *shape* (JSON that is no envelope, a record
without ``taskId``/``successFlag``, an unknown ``successFlag``) will be the
same next time, so its ResponseError is not; nor is a redirect (3xx), which
is never followed. Another task's record is retryable: it is an answer gone
astray (sent unasked on a kept-alive connection, or a proxy's mix-up), not
what the service says of the task asked for.

Pure functions of ``(status, headers, body)``: no aiohttp, no event loop, so
every quirk is tested on bytes alone (the gidgethub ``decipher_response`` idea).
"""

from __future__ import annotations

import datetime
import email.utils
import time
from collections.abc import Mapping
from typing import Any, Final, TypeGuard

import attrs

from . import _json
from ._convert import KIE_TIMEZONE, is_nullish, record_from_wire, usual_record
from .errors import (
    APIError,
    AuthenticationError,
    ContentPolicyError,
    ErrorPage,
    InsufficientCreditsError,
    NotFoundError,
    RateLimitError,
    RecordNotFoundError,
    ResponseError,
    ServerError,
    ServerErrorPage,
    ServiceUnavailableError,
    quoted,
)
from .models import RecordInfo, TaskStatus, _slot_setters, validate_task_id

__all__ = [
    "RawResponse",
    "api_error",
    "decode_envelope",
    "decode_record_info",
    "envelope_code",
    "excerpt",
    "parse_body",
    "parse_http_date",
    "parse_retry_after",
]

_EXCERPT_BYTES = 200

# Body/HTTP code -> the error class for it; codes not listed get plain APIError.
_ERROR_CLASSES: dict[int, type[APIError]] = {
    400: ContentPolicyError,
    401: AuthenticationError,
    402: InsufficientCreditsError,
    404: NotFoundError,
    422: RecordNotFoundError,
    429: RateLimitError,
    455: ServiceUnavailableError,
}
# 422 also covers plain validation errors; only these mean "no such record".
_RECORD_MISSING_HINTS = (
    "record is null",
    "recordinfo is null",  # Kie's sibling endpoint's wording
    "record not",
    "not exist",
    "not found",
    "expired",
    "14 days",
)


@attrs.frozen(init=False)
class RawResponse:
    """One HTTP answer, as the transport hands it to the protocol.

    :ivar status: the HTTP status.
    :ivar headers: the response headers (looked up case-insensitively).
    :ivar body: the body bytes (already capped by the transport).
    """

    status: int
    headers: Mapping[str, str]
    body: bytes

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        # Written out, not attrs' own: one per request (see models.VideoResult).
        set_status, set_headers, set_body = _RAW_RESPONSE_SETTERS
        set_status(self, status)
        set_headers(self, headers)
        set_body(self, body)


_RAW_RESPONSE_SETTERS = _slot_setters(RawResponse)


def excerpt(body: bytes) -> str:
    """The first bytes of a body as one short, printable line (for errors and logs)."""
    text = body[:_EXCERPT_BYTES].decode("utf-8", errors="replace")
    return " ".join(text.split())


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, candidate in headers.items():
        if key.lower() == lowered:
            return candidate
    return None


def parse_http_date(value: str | None) -> float | None:
    """Epoch seconds of an HTTP date header, or None when absent or unreadable."""
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
        if when.tzinfo is None:  # "-0000": HTTP dates are GMT, not local time
            when = when.replace(tzinfo=datetime.timezone.utc)
        return when.timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):  # e.g. year 10**20
        return None


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date).

    :param now: the current epoch time, for HTTP dates (default ``time.time()``;
        the answer's ``Date`` where there is one: the server's clock).
    :returns: seconds (never negative), or None when absent or unreadable.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        # delay-seconds (RFC 9110: digits only), however many: "9" * 400 asks
        # for a very long wait (read as a float it overflowed, and, taken for
        # absent, paused a second, not the cap).
        digits = text.lstrip("0") or "0"  # ("0000000005" is 5 s)
        return float(digits) if len(digits) <= _LONGEST_DIGITS else float(10**_LONGEST_DIGITS)
    try:
        seconds = float(text)
    except ValueError:
        when = parse_http_date(text)
        if when is None:
            return None
        seconds = when - (time.time() if now is None else now)
    if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN or infinite
        return None
    return max(0.0, seconds)


# Digits of the longest Retry-After in seconds read as it is (about 31 years
# beyond: pauses are capped far lower).
_LONGEST_DIGITS = 9


def api_error(
    code: int,
    message: str,
    *,
    http_status: int,
    headers: Mapping[str, str] | None = None,
    task_id: str | None = None,
    page: bytes | None = None,
) -> APIError:
    """The :class:`APIError` subclass for a body or HTTP ``code``.

    :param page: the body, when it was a page and no envelope: a plain 5xx is
        then a :class:`ServerErrorPage`, a code with no class of its own an
        :class:`ErrorPage` (both also ResponseErrors, with its excerpt); the
        others (429, 401, 404...) keep their class, which says more.
    """
    if code == 429:
        headers = headers or {}
        # A date in Retry-After is on the server's clock: measured against its
        # Date header, when the answer has one (a server hours ahead of ours
        # would pause us for the 300 s cap, one behind not at all).
        retry_after = parse_retry_after(
            _header(headers, "Retry-After"), now=parse_http_date(_header(headers, "Date"))
        )
        return RateLimitError(
            message, code=code, http_status=http_status, task_id=task_id, retry_after=retry_after
        )
    cls: type[APIError]
    if code >= 500:
        cls = ServerError if page is None else ServerErrorPage
    else:
        cls = _ERROR_CLASSES.get(code, APIError)
        if cls is RecordNotFoundError and not any(
            h in message.lower() for h in _RECORD_MISSING_HINTS
        ):
            cls = APIError
        if page is not None and cls in (APIError, ContentPolicyError):
            # A 400 page is a proxy's refusal (a malformed or oversized
            # request), not Kie's refusal of the prompt: the service says that
            # in an envelope. Read as ContentPolicyError, a caller told its
            # user the prompt was refused.
            cls = ErrorPage
    error = cls(message, code=code, http_status=http_status, task_id=task_id)
    if isinstance(error, ResponseError) and page is not None:
        error.excerpt = excerpt(page)
    return error


def envelope_code(envelope: Mapping[str, Any]) -> int | None:
    """The envelope's ``code`` as an int: a number (``200``, ``200.0``) or
    digits (``"200"``); None for anything else (a bool, a fraction, text)."""
    code = envelope.get("code")
    if isinstance(code, bool):
        return None
    if isinstance(code, int):
        return code
    if isinstance(code, float):
        # A backend that writes every number as a double: 200.0 is 200.
        return int(code) if code.is_integer() else None
    text = code.strip() if isinstance(code, str) else ""
    if text.isascii() and text.isdigit():
        try:
            return int(text)
        except ValueError:  # more digits than int() accepts from a string
            return None
    return None


def decode_envelope(response: RawResponse, *, task_id: str | None = None) -> Any:
    """The ``data`` of a successful envelope, or raise the error it describes.

    :raises APIError: (a subclass) for an error code in the body or the status.
    :raises ResponseError: for a 2xx answer that is not a readable envelope.
    """
    return _envelope_data(response, parse_body(response.body), task_id)


def parse_body(body: bytes) -> Any:
    """The JSON of an answer's ``body``, as every endpoint's decoding reads it;
    None for an empty body or one that is not JSON, :data:`_TOO_DEEP` (no
    dict) for JSON nested past what a parser follows."""
    try:
        try:
            # orjson with the fast extra, the stdlib otherwise (same meaning; see _json).
            return _json.loads(body) if body.strip() else None
        except UnicodeDecodeError:
            # A byte that is not UTF-8 in a cosmetic field (a msg or paramJson
            # in Latin-1): the rest is read, that byte as U+FFFD. It must not
            # cost a SUCCESS record (it was "not JSON", retried to the
            # deadline). One in any other field (a result URL, a task id)
            # stays unreadable: a URL quietly altered would be delivered, and
            # stored, as the result.
            parsed = _json.loads(body.decode("utf-8", "replace"))
            return parsed if _replaced_only_where_cosmetic(parsed) else None
    except RecursionError:  # "[[[[..." 100,000 deep: asking again gets the same
        return _TOO_DEEP
    except ValueError:
        return None


#: Fields of an answer whose text is only shown to people.
_COSMETIC = frozenset({"msg", "paramJson", "errorMessage", "promptJson"})


def _replaced_only_where_cosmetic(value: Any, key: str | None = None) -> bool:
    """Whether every U+FFFD in ``value`` is in the text of a :data:`_COSMETIC`
    field (or anywhere under one)."""
    if key in _COSMETIC:
        return True
    if isinstance(value, str):
        return "\ufffd" not in value
    if isinstance(value, dict):
        return all(
            "\ufffd" not in name and _replaced_only_where_cosmetic(item, name)
            for name, item in value.items()
        )
    if isinstance(value, list):
        return all(_replaced_only_where_cosmetic(item, key) for item in value)
    return True


#: What parse_body returns for JSON nested too deeply to follow: no envelope, and
#: not worth asking again (it was read as "cut short", and retried).
_TOO_DEEP: Final = ("JSON nested too deeply",)


def _envelope_data(response: RawResponse, envelope: Any, task_id: str | None) -> Any:
    """decode_envelope once the body is parsed (``envelope``)."""
    status, body = response.status, response.body
    if 300 <= status < 400:
        # Never followed (a POST resent elsewhere could create twice), and
        # asking again gets the same: usually a base_url with http:// for https.
        location = _header(response.headers, "Location") or "nowhere given"
        raise ResponseError(
            f"HTTP {status} redirect to {location[:200]}: redirects are not followed;"
            " check base_url",
            http_status=status,
            excerpt=excerpt(body),
            task_id=task_id,
            retryable=False,
        )
    readable = True
    if envelope is None:  # JSON null, an empty body or no JSON at all
        readable = body.strip() == b"null"
    code = envelope_code(envelope) if isinstance(envelope, dict) else None
    if code is None or (code == 200 and status >= 400):
        # Not an envelope (HTML page, truncated, empty) or one contradicting an
        # error status: the HTTP status is the only trustworthy signal.
        if status >= 400:
            raise api_error(
                status,
                f"HTTP {status}: {excerpt(body) or 'empty body (or one cut off)'}"
                f"{_page_hint(body)}",
                http_status=status,
                headers=response.headers,
                task_id=task_id or _claimed_task_id(envelope),
                page=body if code is None else None,
            )
        if readable:
            # Well-formed JSON without a numeric code: asking again gets the same.
            what = "JSON, but not a Kie envelope with a numeric code"
        elif not body.strip():
            what = "an empty body"
        elif body.lstrip()[:1] in (b"{", b"["):
            what = "not JSON (it starts as JSON: cut short or malformed)"
        else:
            what = "not JSON"
        raise ResponseError(
            f"HTTP {status} answer is {what}",
            http_status=status,
            excerpt=excerpt(body),
            task_id=task_id,
            retryable=not readable,
        )
    assert isinstance(envelope, dict)  # for the type checker: code came from it
    if code != 200:
        message = envelope.get("msg")
        raise api_error(
            code,
            quoted(message) if _has_text(message) else f"error code {code}",
            http_status=status,
            headers=response.headers,
            task_id=task_id,
        )
    return envelope.get("data")


# A proxy's page that says why it refused: (what it holds, what it means).
_PAGE_HINTS = (
    (b"error code: 1010", "a proxy (Cloudflare 1010) refused the request's User-Agent"),
    (b"error code: 1020", "a proxy (Cloudflare 1020) refused the request by a firewall rule"),
)


def _claimed_task_id(envelope: Any) -> str | None:
    """The ``data.taskId`` of an envelope claiming success under an error
    status (a create's answer: the task it may have created), if any."""
    data = envelope.get("data") if isinstance(envelope, dict) else None
    claimed = data.get("taskId") if isinstance(data, dict) else None
    if not isinstance(claimed, str) or is_nullish(claimed):
        return None
    try:
        # Only an id a poll can use: it is handed to the caller to track,
        # and a store keeps it (a padded, spaced or overlong one it refuses).
        return validate_task_id(claimed.strip())
    except ValueError:
        return None


def _page_hint(body: bytes) -> str:
    """What a proxy's page means, for the pages that say it in a code."""
    head = body[:2000]
    for marker, meaning in _PAGE_HINTS:
        if marker in head:
            return f" ({meaning})"
    return ""


def decode_record_info(
    response: RawResponse,
    task_id: str,
    previous: RecordInfo | None = None,
    *,
    tz: datetime.tzinfo = KIE_TIMEZONE,
) -> RecordInfo:
    """Decode a record-info answer into a :class:`RecordInfo` of task *task_id*.

    ``data: null`` with code 200 means the record is not visible (yet), exactly
    like ``422 record is null``: both raise :class:`RecordNotFoundError`. So
    does ``data: "null"`` (or ``""``, ``"None"``), the service's text for absent.

    :param previous: the record the last poll of this task gave. While a task
        generates, each poll answers the same record; when the answer still
        says generating (and has no result yet), ``previous`` is returned as
        is instead of being rebuilt: most polls of a long wait cost only the
        envelope's JSON parse.
    :param tz: the zone of time strings without one (default
        :data:`~veo_async._convert.KIE_TIMEZONE`, UTC+8).
    :raises ResponseError: retryable, when the record is of another task
        (``field="taskId"``); not retryable, when it is of the wrong shape (see
        :func:`record_from_wire`).
    """
    if tz is KIE_TIMEZONE and response.status < 300:
        try:
            # No scan for long integers: nothing read below can be one
            # misread (see _json.loads_unscanned); the rest parses again.
            envelope = _json.loads_unscanned(response.body)
        except (ValueError, RecursionError):
            envelope = None
        if type(envelope) is dict and type(code := envelope.get("code")) is int and code == 200:
            data = envelope.get("data")
            if data is None:
                raise _not_visible(response, task_id)
            if type(data) is dict:
                if previous is not None and _unchanged(data, task_id, previous):
                    return previous
                record = usual_record(data)
                if record is not None and record.task_id == task_id:
                    return record  # (another task's: the full path raises)
    # Anything else: parsed exactly, every check and quirk.
    parsed = parse_body(response.body)
    try:
        data = _envelope_data(response, parsed, task_id)
    except APIError as exc:
        message = parsed.get("msg") if isinstance(parsed, dict) else None
        if type(exc) is not APIError or exc.code != 422 or _has_text(message):
            raise
        # A 422 that says nothing ("msg" absent, empty or "null"): record-info's only
        # argument is checked before sending, so it is the record not (yet)
        # visible, as "record is null" ("recordInfo is null" is read so by
        # its hint). Other wordings stay what they are: with a store, a
        # RecordNotFoundError past the grace window forgets the task.
        raise RecordNotFoundError(
            exc.message, code=422, http_status=exc.http_status, task_id=task_id
        ) from None
    if is_nullish(data):  # null, or a "null" text: the service's spelling of absent
        raise _not_visible(response, task_id)
    if previous is not None and type(data) is dict and _unchanged(data, task_id, previous):
        return previous
    try:
        record = record_from_wire(data, task_id, tz=tz)
    except ResponseError as exc:
        # A record of the wrong shape: told as every other unreadable answer
        # is, with the answer's status and the body's first bytes (the field
        # it could not read is exc.field).
        if exc.http_status is None:
            exc.http_status = response.status
        exc.excerpt = excerpt(response.body)
        raise
    return _checked_owner(record, response, task_id)


def _has_text(value: object) -> TypeGuard[str]:
    """Whether ``value`` is a text that says something: not blank, and not
    one of the service's spellings of absent ("null", "None")."""
    return isinstance(value, str) and not is_nullish(value)


def _not_visible(response: RawResponse, task_id: str) -> RecordNotFoundError:
    """``data: null`` with code 200: as ``422 record is null``."""
    return RecordNotFoundError(
        "record is not visible (data: null)",
        code=200,
        http_status=response.status,
        task_id=task_id,
    )


def _checked_owner(record: RecordInfo, response: RawResponse, task_id: str) -> RecordInfo:
    """*record*, if it is the record of *task_id*; else raise.

    Retryable: another task's record is an answer gone astray, not what the
    service says of this task (an answer a server sent unasked on an idle
    keep-alive connection is read as the next request's; a proxy may serve
    one URL's answer for another): a wait asks again, up to its deadline.
    """
    if record.task_id != task_id:
        raise ResponseError(
            f"asked for task {task_id!r}, got the record of task {record.task_id!r}",
            http_status=response.status,
            field="taskId",
            task_id=task_id,
            excerpt=excerpt(response.body),
            retryable=True,
        )
    return record


def _unchanged(data: dict[str, Any], task_id: str, previous: RecordInfo) -> bool:
    """True when *data* is *previous*, a GENERATING record of the same task, again."""
    flag = data.get("successFlag")
    return (
        previous.status is TaskStatus.GENERATING
        and previous.task_id == task_id
        # Compared by type too: False == 0.0 == 0 in Python, and a bool flag is
        # refused by the full decode.
        and (flag == 0 if type(flag) in (int, float) else flag == "0")
        and data.get("response") is None
        and data.get("resultUrls") is None
        and data.get("taskId", task_id) == task_id
    )
