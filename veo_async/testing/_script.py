"""What a simulated task does, and how its record looks at a given moment.

Pure data and pure functions: nothing here does I/O or needs an event loop, so
a script can be built anywhere and a record rendered from plain numbers
(:func:`render_record`). The server (``_server.py``) only decides *when* a
record is rendered; *what* it contains is decided here.

The record layout follows ``kie-veo-api.md``; every :class:`Quirks` flag
switches on one of the variants that document lists as seen on the wire or
unconfirmed, so that a client can be tested against each of them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any, Final
from urllib.parse import quote

import attrs

__all__ = [
    "FAULT_KINDS",
    "Fault",
    "Quirks",
    "TaskScript",
    "default_params",
    "format_time",
    "is_done",
    "is_visible",
    "render_record",
    "result_url",
]

GENERATING: Final = 0
SUCCESS: Final = 1
FAILED: Final = 2
GENERATION_FAILED: Final = 3

#: Every value :attr:`Fault.kind` can take.
FAULT_KINDS: Final = frozenset(
    {
        "http_429",
        "body_429",
        "maintenance",
        "server_error",
        "bad_gateway_html",
        "truncated_json",
        "empty_body",
        "reset",
        "slow",
        "record_null",
        "data_null",
        "body_code",
        "oversized",
        "created_then_drop",
    }
)

# What the service says when a task fails and the script names no error.
_DEFAULT_ERRORS: Final[dict[int, tuple[int, str]]] = {
    FAILED: (400, "Content policy violation: the prompt was flagged by the safety filter"),
    GENERATION_FAILED: (501, "Generation failed"),
}

_TIME_FORMAT: Final = "%Y-%m-%d %H:%M:%S"


def failure_of(script: TaskScript) -> tuple[int, str]:
    """The error code and message the service gives for ``script``'s
    failure (its own, or the defaults for its final status: 400 for status
    2, 501 for status 3): the record's and the callback's alike."""
    defaults = _DEFAULT_ERRORS.get(script.final_status, _DEFAULT_ERRORS[FAILED])
    default_code, default_message = defaults
    code = default_code if script.error_code is None else script.error_code
    message = default_message if script.error_message is None else script.error_message
    return code, message


def _non_negative(_inst: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value >= 0:  # NaN too: a task "done after NaN s" would never be done
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


def _retry_after_ok(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    # Strings are sent verbatim (an HTTP date, or garbage on purpose), so only
    # numbers are checked.
    if isinstance(value, (int, float)) and value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


def _non_empty_str(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{attribute.name} must be a non-empty str, got {value!r}")


@attrs.frozen
class Fault:
    """One scripted misbehaviour of the service, for one record-info request.

    Build faults with the class methods (``Fault.http_429(retry_after=1)``,
    ``Fault.reset()``, ...); the fields below only carry their parameters.
    Give them to a :class:`TaskScript` (``faults=``) to hit that task's first
    polls, or to :meth:`FakeKie.inject` to hit the next requests of any task.

    :ivar kind: which fault, one of :data:`FAULT_KINDS`.
    :ivar retry_after: ``http_429`` only: the ``Retry-After`` header value,
        seconds or a verbatim string; ``None`` sends no header.
    :ivar delay: ``slow`` only: seconds to wait before answering normally.
    :ivar code: ``body_code`` only: the envelope ``code``.
    :ivar msg: ``body_code`` only: the envelope ``msg``.
    :ivar http_status: ``body_code`` only: the HTTP status line.
    :ivar size: ``oversized`` only: the body is larger than this many bytes.
    """

    kind: str = attrs.field(validator=attrs.validators.in_(FAULT_KINDS))
    retry_after: float | str | None = attrs.field(default=None, validator=_retry_after_ok)
    delay: float = attrs.field(default=0.0, validator=_non_negative)
    code: int = 0
    msg: str = ""
    http_status: int = attrs.field(
        default=200, validator=[attrs.validators.ge(100), attrs.validators.le(599)]
    )
    size: int = attrs.field(default=0, validator=_non_negative)

    @classmethod
    def http_429(cls, retry_after: float | str | None = None) -> Fault:
        """HTTP 429 with envelope code 429, and a ``Retry-After`` header when given.

        :param retry_after: seconds (sent as ``"1"`` or ``"0.5"``), or a string
            sent verbatim (an HTTP date, say); ``None`` sends no header.
        """
        return cls("http_429", retry_after=retry_after)

    @classmethod
    def body_429(cls) -> Fault:
        """HTTP 200 carrying ``{"code": 429, "msg": "Rate limited", "data": null}``."""
        return cls("body_429")

    @classmethod
    def maintenance(cls) -> Fault:
        """HTTP 200 carrying body code 455 (service under maintenance)."""
        return cls("maintenance")

    @classmethod
    def server_error(cls) -> Fault:
        """HTTP 500 carrying body code 500."""
        return cls("server_error")

    @classmethod
    def bad_gateway_html(cls) -> Fault:
        """HTTP 502 with a Cloudflare-like ``text/html`` error page."""
        return cls("bad_gateway_html")

    @classmethod
    def truncated_json(cls) -> Fault:
        """HTTP 200 ``application/json`` whose body is the normal answer cut in half.

        ``Content-Length`` matches the truncated body, so the transfer itself
        succeeds and only the JSON parse fails.
        """
        return cls("truncated_json")

    @classmethod
    def empty_body(cls) -> Fault:
        """HTTP 200 ``application/json`` with an empty body."""
        return cls("empty_body")

    @classmethod
    def reset(cls) -> Fault:
        """Drop the connection (TCP reset) without any HTTP answer.

        A veo_async session sees it as a :class:`~veo_async.TransportError`
        (retryable: a wait polls again on its schedule), one failed request
        each time: its own aiohttp session does not resend the GET by itself.
        (A plain aiohttp client, or a ``session=`` you inject, may resend an
        idempotent request once after a reset, so a single reset can cost it
        an extra request and stay invisible.)
        """
        return cls("reset")

    @classmethod
    def slow(cls, delay: float) -> Fault:
        """Wait *delay* seconds, then answer normally.

        A huge delay is a hang: the request stays open until the client gives
        up or the simulator closes.
        """
        return cls("slow", delay=delay)

    @classmethod
    def record_null(cls) -> Fault:
        """HTTP 200 carrying ``{"code": 422, "msg": "record is null", "data": null}``."""
        return cls("record_null")

    @classmethod
    def data_null(cls) -> Fault:
        """HTTP 200 carrying ``{"code": 200, "msg": "success", "data": null}``."""
        return cls("data_null")

    @classmethod
    def body_code(cls, code: int, msg: str, http_status: int = 200) -> Fault:
        """A generic error envelope ``{"code": code, "msg": msg, "data": null}``.

        :param http_status: the HTTP status sent with it (the service mostly
            uses 200 whatever the body says).
        """
        return cls("body_code", code=code, msg=msg, http_status=http_status)

    @classmethod
    def created_then_drop(cls) -> Fault:
        """For a create request (:meth:`FakeKie.inject_create`): create the task and
        charge for it as usual, then drop the connection instead of answering.

        The client cannot tell whether anything was created: the case a
        create must never resend blindly. On a poll (a task's ``faults``,
        :meth:`FakeKie.inject`) it drops the connection, as :meth:`reset` does.
        """
        return cls("created_then_drop")

    @classmethod
    def oversized(cls, size: int = 2 * 1024 * 1024) -> Fault:
        """HTTP 200 with the normal, valid answer padded to more than *size* bytes."""
        return cls("oversized", size=size)


@attrs.frozen
class Quirks:
    """Wire-format variants for one task's record; all off by default.

    Each flag switches on one variant that ``kie-veo-api.md`` lists as seen on
    the wire or unconfirmed, which a client must accept.

    :ivar success_flag_as_str: ``successFlag`` is ``"1"`` instead of ``1``.
    :ivar result_urls_as_json_string: ``resultUrls`` is a JSON-encoded string.
    :ivar result_urls_at_data: on success ``resultUrls`` sits at
        ``data.resultUrls`` and ``data.response`` is null.
    :ivar times_as_epoch_ms: ``createTime``/``completeTime`` are integer epoch
        milliseconds instead of ``"YYYY-MM-DD HH:MM:SS"`` strings (UTC+8, as Kie's).
    :ivar error_code_as_str_null: ``errorCode`` is the string ``"null"``
        whenever it would be null.
    :ivar error_code_as_str: on failure ``errorCode`` is ``"400"``, not ``400``.
    :ivar omit_fallback_flag: no ``fallbackFlag`` key (a legacy field).
    :ivar omit_response: no ``response`` key whenever it would be null.
    :ivar extra_fields: unknown fields are added (``recordId``,
        ``creditsConsumed``, ``mediaIds``, and ``seeds`` in the response).
    :ivar invalid_param_json: ``paramJson`` is not valid JSON.
    """

    success_flag_as_str: bool = False
    result_urls_as_json_string: bool = False
    result_urls_at_data: bool = False
    times_as_epoch_ms: bool = False
    error_code_as_str_null: bool = False
    error_code_as_str: bool = False
    omit_fallback_flag: bool = False
    omit_response: bool = False
    extra_fields: bool = False
    invalid_param_json: bool = False


def _to_faults(faults: Iterable[Fault]) -> tuple[Fault, ...]:
    # A named converter, not bare ``tuple``: it gives type checkers the
    # parameter type of ``TaskScript(faults=[...])``.
    return tuple(faults)


@attrs.frozen
class TaskScript:
    """The life of one simulated task, on a clock that starts when it is added.

    :ivar task_id: the id clients poll.
    :ivar complete_after: seconds after adding at which ``successFlag``
        leaves 0 for *final_status*.
    :ivar final_status: 1 success, 2 failed, 3 generation failed.
    :ivar faults: given in order to this task's first record-info polls that
        pass the session-wide, User-Agent and auth checks; later polls are
        answered normally.
    :ivar visible_after: until this many seconds after adding, the record
        answers like an unknown id ("record not visible yet").
    :ivar quirks: wire-format variants of this task's record.
    :ivar params: the request parameters rendered into ``paramJson``;
        ``None`` means :func:`default_params`.
    :ivar error_code: the ``errorCode`` of a failed task; ``None`` means 400
        for status 2 and 501 for status 3.
    :ivar error_message: the ``errorMessage`` of a failed task; ``None`` means
        a message fitting the status.
    :ivar fallback: made by the fallback model (``fallbackFlag`` true, 720p).
    :ivar resolution: ``response.resolution`` of a successful, non-fallback task.
    :ivar extended: made by an extend: its successful record carries
        ``fullResultUrls`` (the whole video, the original and its extension).
    """

    task_id: str = attrs.field(validator=_non_empty_str)
    complete_after: float = attrs.field(default=0.0, kw_only=True, validator=_non_negative)
    final_status: int = attrs.field(
        default=SUCCESS,
        kw_only=True,
        validator=attrs.validators.in_((SUCCESS, FAILED, GENERATION_FAILED)),
    )
    faults: tuple[Fault, ...] = attrs.field(
        default=(),
        kw_only=True,
        converter=_to_faults,
        validator=attrs.validators.deep_iterable(attrs.validators.instance_of(Fault)),
    )
    visible_after: float = attrs.field(default=0.0, kw_only=True, validator=_non_negative)
    quirks: Quirks = attrs.field(
        factory=Quirks, kw_only=True, validator=attrs.validators.instance_of(Quirks)
    )
    # hash=False keeps scripts hashable although a dict is not.
    params: dict[str, Any] | None = attrs.field(default=None, kw_only=True, hash=False)
    error_code: int | None = attrs.field(default=None, kw_only=True)
    error_message: str | None = attrs.field(default=None, kw_only=True)
    fallback: bool = attrs.field(default=False, kw_only=True)
    resolution: str = attrs.field(default="1080p", kw_only=True)
    extended: bool = attrs.field(default=False, kw_only=True)


def default_params() -> dict[str, Any]:
    """Return the request parameters rendered into ``paramJson`` when a script names none."""
    return {
        "prompt": "A slow drone shot over a misty pine forest at sunrise",
        "model": "veo3_fast",
        "aspectRatio": "16:9",
        "generationType": "TEXT_2_VIDEO",
        "enableTranslation": True,
        "waterMark": "",
    }


def result_url(task_id: str, kind: str = "video") -> str:
    """Return the deterministic result URL of *task_id* (``kind`` names the file)."""
    return f"https://tempfile.example/veo/{quote(task_id, safe='')}/{kind}.mp4"


#: Kie's time strings are in UTC+8 (see kie-veo-api.md), in seconds.
_KIE_UTC_OFFSET = 8 * 3600


def format_time(epoch: float, *, epoch_ms: bool = False) -> str | int:
    """Render a wall-clock instant as the service does.

    :param epoch: seconds since the Unix epoch.
    :param epoch_ms: render integer epoch milliseconds instead of the
        documented ``"YYYY-MM-DD HH:MM:SS"`` string.
    :returns: the string in UTC+8, the zone the real service writes its
        zoneless strings in, or the integer (epoch values are absolute).
    """
    if epoch_ms:
        return round(epoch * 1000)
    return time.strftime(_TIME_FORMAT, time.gmtime(epoch + _KIE_UTC_OFFSET))


def is_visible(script: TaskScript, elapsed: float) -> bool:
    """Tell whether the record exists *elapsed* seconds after the task was added."""
    return elapsed >= script.visible_after


def is_done(script: TaskScript, elapsed: float) -> bool:
    """Tell whether the record is terminal *elapsed* seconds after the task was added."""
    return elapsed >= script.complete_after


def render_record(script: TaskScript, *, created_at: float, done: bool) -> dict[str, Any]:
    """Render the ``data`` object of a record-info answer.

    :param script: the task.
    :param created_at: wall-clock epoch seconds at which the task was created;
        ``completeTime`` is ``created_at + complete_after``.
    :param done: render the terminal record (*final_status*) rather than the
        generating one.
    :returns: a fresh JSON-ready dict, keys in the documented order.
    """
    q = script.quirks
    status = script.final_status if done else GENERATING

    param_json = json.dumps(
        default_params() if script.params is None else script.params, ensure_ascii=False
    )
    if q.invalid_param_json:
        # Any strict prefix of a JSON object is invalid JSON: the closing brace
        # is missing, whatever else survives.
        param_json = param_json[: max(1, len(param_json) // 2)]

    error_code: int | str | None = None
    error_message = ""
    if status in _DEFAULT_ERRORS:
        code, error_message = failure_of(script)
        error_code = str(code) if q.error_code_as_str else code
    if error_code is None and q.error_code_as_str_null:
        error_code = "null"

    urls: list[str] | str | None = None
    response: dict[str, Any] | None = None
    if status == SUCCESS:
        urls = [result_url(script.task_id)]
        if q.result_urls_as_json_string:
            urls = json.dumps(urls)
        if not q.result_urls_at_data:
            response = _render_response(script, urls)

    record: dict[str, Any] = {
        "taskId": script.task_id,
        "paramJson": param_json,
        "completeTime": (
            format_time(created_at + script.complete_after, epoch_ms=q.times_as_epoch_ms)
            if done
            else None
        ),
        "response": response,
        "successFlag": str(int(status)) if q.success_flag_as_str else status,
        "errorCode": error_code,
        "errorMessage": error_message,
        "createTime": format_time(created_at, epoch_ms=q.times_as_epoch_ms),
        "fallbackFlag": script.fallback,
    }
    if response is None and q.omit_response:
        del record["response"]
    if q.omit_fallback_flag:
        del record["fallbackFlag"]
    if urls is not None and q.result_urls_at_data:
        record["resultUrls"] = urls
    if q.extra_fields:
        record["recordId"] = f"rec-{script.task_id}"
        record["creditsConsumed"] = 60.0 if status == SUCCESS else 0
        record["mediaIds"] = [f"media-{script.task_id}-0"] if status == SUCCESS else []
    return record


def _render_response(script: TaskScript, urls: list[str] | str) -> dict[str, Any]:
    params = default_params() if script.params is None else script.params
    ratio = params.get("aspectRatio", params.get("aspect_ratio", "16:9"))
    response: dict[str, Any] = {
        "taskId": script.task_id,
        "resultUrls": urls,
        # The docs: originUrls only for non-16:9 ratios.
        "originUrls": None if ratio == "16:9" else [result_url(script.task_id, "original")],
        # The docs: fullResultUrls only after an extend.
        "fullResultUrls": [result_url(script.task_id, "full")] if script.extended else None,
        # A fallback-model video is always 720p.
        "resolution": "720p" if script.fallback else script.resolution,
    }
    if script.quirks.extra_fields:
        response["seeds"] = [10000 + sum(script.task_id.encode()) % 90000]
    return response
