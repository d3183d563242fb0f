"""The cattrs converter: Kie's camelCase record JSON -> our snake_case attrs models.

The service is inconsistent across endpoints and over time (see
``kie-veo-api.md``), so every field is read defensively:

- ``successFlag``: an int, an integral float (``1.0``) or a numeric string.
- ``resultUrls``: a list or a JSON-encoded string, under ``data.response`` or
  directly under ``data``; ``"null"`` entries are dropped.
- ``createTime`` / ``completeTime``: ``"YYYY-MM-DD HH:MM:SS"`` strings or epoch
  seconds/milliseconds. The strings carry no zone and are Kie's clock, which
  runs in **UTC+8** (a recorded file stamped with its epoch milliseconds says
  ``completeTime`` eight hours later); they are read in :data:`KIE_TIMEZONE`
  unless the caller passes another ``tz``. Strings with an offset or ``Z``
  keep theirs; epoch values are absolute and come back in UTC.
- ``errorCode``: int, numeric string, ``"null"``, ``""`` or null.
- ``paramJson``: a JSON string; text that is not a JSON object is kept as
  ``{"raw": text}`` rather than failing the whole record.
- ``"null"`` (any case) and ``""`` stand for absent in every optional field;
  ``response`` may be null or absent, or an object's JSON text; unknown
  fields are ignored.

Only ``taskId`` and ``successFlag`` are required: a record without them (or
with an unknown flag, or a ``response`` that is not an object) raises a
non-retryable :class:`~veo_async.errors.ResponseError` naming the field. Any
other field that cannot be read takes its default (None, ``()``, ``{}``,
False, ``""``) and a DEBUG line on the ``veo_async`` logger says why, so that
a finished task is never thrown away over a cosmetic field. Pure: no I/O, no
event loop.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

import cattrs
from cattrs.gen import make_dict_structure_fn, override

from . import _json
from .errors import ResponseError
from .models import RecordInfo, TaskStatus, VideoResult, _Unparsed

__all__ = [
    "KIE_TIMEZONE",
    "is_nullish",
    "no_urls",
    "record_from_wire",
    "record_to_jsonable",
    "usual_record",
]

#: The zone of Kie's ``"YYYY-MM-DD HH:MM:SS"`` strings (Beijing time, no DST).
KIE_TIMEZONE = _dt.timezone(_dt.timedelta(hours=8), "UTC+08:00")

logger = logging.getLogger("veo_async")

# (format, True when its trailing "Z" makes it UTC) for what fromisoformat
# rejects on Python 3.10 or at all; the others are zoneless: read in the tz.
_TIME_FORMATS = (
    ("%Y-%m-%dT%H:%M:%SZ", True),
    ("%Y-%m-%dT%H:%M:%S.%fZ", True),
    ("%Y/%m/%d %H:%M:%S", False),
    # Without zero padding ("2025-6-6 10:30:00"), which fromisoformat refuses.
    ("%Y-%m-%d %H:%M:%S", False),
    ("%Y-%m-%d %H:%M:%S.%f", False),
)
# Epoch values above this are milliseconds, below it seconds (year 2286 in s).
_MS_THRESHOLD = 10_000_000_000
# A zone written as a word at the end of a time: "UTC", "GMT", "Z", maybe
# with an offset ("GMT+8", "UTC+08:00", "UTC-0530").
_ZONE_WORD = re.compile(
    r"\s*(?:UTC|GMT|Z)(?:([+-])(\d{1,2})(?::?(\d{2}))?)?\Z", re.IGNORECASE
)
# An epoch written with a fraction ("1767658623526.0"): digits, a dot, digits.
_DECIMAL = re.compile(r"\d+\.\d*\Z")


_NULL_TEXTS = frozenset(("", "null", "NULL", "Null", "None", "none"))
# The longest text in _NULL_TEXTS: a longer string without surrounding
# whitespace cannot be "null" in any spelling.
_NULL_MAX_LEN = 4


def is_nullish(value: object) -> bool:
    """Whether a wire value means "absent": JSON null, or a text that is
    empty or "null" / "None" in any case, with any surrounding blanks."""
    # Runs for every optional field of every poll: keep the common cases cheap.
    if value is None:
        return True
    return type(value) is str and (value in _NULL_TEXTS or value.strip().lower() in _NULL_TEXTS)


def no_urls(value: object) -> bool:
    """Whether a URL field holds nothing: absent, a null spelling, or empty."""
    return is_nullish(value) or (type(value) in (list, tuple) and not value)


def _short(value: object) -> str:
    """A value for an error message: its repr, cut to about 100 characters."""
    text = repr(value)
    return text if len(text) <= 100 else text[:97] + "..."


# A dict lookup is several times cheaper than calling the enum.
_STATUS_BY_FLAG = {int(status): status for status in TaskStatus}


def _integral(value: object) -> int | None:
    """The int an integral float or numeric string stands for; None otherwise (bool too)."""
    if type(value) is str:
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            value = float(text)  # "1.0"
        except ValueError:
            return None
    if type(value) is float and value.is_integer():  # False for NaN and infinities
        return int(value)
    return None


def _structure_status(value: object, _: type) -> TaskStatus:
    # type(value) is int excludes bool (an int subclass, hashing like 1: True
    # would read as SUCCESS); floats and strings are looked up by their int.
    flag = value if type(value) is int else _integral(value)
    status = None if flag is None else _STATUS_BY_FLAG.get(flag)
    if status is None:
        raise ValueError(f"successFlag {_short(value)} is none of 0, 1, 2, 3")
    return status


def _fixed_suffix(tz: _dt.tzinfo) -> str | None:
    """The ISO offset text of a fixed-offset zone ("+08:00"), None for zones with rules."""
    if type(tz) is not _dt.timezone:
        return None
    return _dt.datetime(2000, 1, 1, tzinfo=tz).isoformat()[19:]


# Times at or before it are not set (see _read_time).
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


def _read_time(value: object, tz: _dt.tzinfo) -> _dt.datetime | None:
    """A wire time as an aware datetime: zoneless strings in *tz*, epoch values in UTC."""
    if is_nullish(value):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value <= 0:
            return None  # the epoch itself: a time not set, as a backend writes it
        seconds = value / 1000 if value > _MS_THRESHOLD else float(value)
        return _dt.datetime.fromtimestamp(seconds, tz=_dt.timezone.utc)
    if isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.isdigit():
            return _read_time(int(text), tz)
        if text.startswith("0000-00-00"):
            return None  # the zero date: not set (as MySQL writes it)
        if text.isascii() and _DECIMAL.match(text):
            return _read_time(float(text), tz)
        zone = _ZONE_WORD.search(text)
        if zone is not None and zone.start() > 0:
            text, tz = text[: zone.start()], _zone_of(zone)
        try:
            parsed = _dt.datetime.fromisoformat(text)  # ~10x faster than strptime
        except ValueError:
            parsed = _strptime_any(text)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=tz)
        elif zone is not None:  # "...+08:00 UTC": two zones, which is it?
            raise ValueError(f"not a time: {_short(value)} (two zones)")
        # The epoch written as a date ("1970-01-01 08:00:00" in UTC+8) is a
        # time not set, as 0 is; no render is older than the epoch.
        return None if parsed <= _EPOCH else parsed
    raise TypeError(f"not a time: {type(value).__name__}")


def _zone_of(word: re.Match[str]) -> _dt.tzinfo:
    """The zone a trailing zone word says (see _ZONE_WORD): UTC, or UTC plus its offset."""
    sign, hours, minutes = word.groups()
    if sign is None:
        return _dt.timezone.utc
    offset = _dt.timedelta(hours=int(hours), minutes=int(minutes or 0))
    return _dt.timezone(-offset if sign == "-" else offset)


def _strptime_any(text: str) -> _dt.datetime:
    """The variants fromisoformat rejects on older Pythons (a trailing "Z" ...)."""
    for fmt, is_utc in _TIME_FORMATS:
        try:
            parsed = _dt.datetime.strptime(text, fmt)
        except ValueError:
            continue
        return parsed.replace(tzinfo=_dt.timezone.utc) if is_utc else parsed
    raise ValueError(f"not a time: {_short(text)}")


def _time_hook(tz: _dt.tzinfo) -> Callable[[object, type], _dt.datetime | None]:
    """The structure hook for times, reading zoneless strings in *tz*."""
    suffix = _fixed_suffix(tz)
    if suffix is None:  # a zone with rules (ZoneInfo): the general path
        return lambda value, _: _read_time(value, tz)

    def structure_time(value: object, _: type) -> _dt.datetime | None:
        # The documented "YYYY-MM-DD HH:MM:SS", read in one C call: appending
        # the offset is ~5x cheaper than .replace(tzinfo=tz) after parsing,
        # and this runs twice per decoded record.
        # (A date before 2000 takes the general path: see _read_time on the epoch.)
        if type(value) is str and len(value) == 19 and value[10] == " " and value[0] == "2":
            try:
                return _dt.datetime.fromisoformat(value + suffix)
            except ValueError:
                pass  # not a valid date after all: the general path explains why
        return _read_time(value, tz)

    return structure_time


def _structure_error_code(value: object, _: type) -> int | None:
    if is_nullish(value):
        return None
    if isinstance(value, bool):
        raise TypeError("errorCode must be a number")
    if isinstance(value, str):
        text = value.strip()
        if _DECIMAL.match(text) and float(text).is_integer():  # "500.0"
            return int(float(text))
        return int(text)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise TypeError(f"errorCode must be a number, not {type(value).__name__}")


def _structure_urls(value: object, _: type) -> tuple[str, ...]:
    # The documented form, checked cheaply: a list of strings none of which is
    # "null" in any spelling (no whitespace to strip, and longer than any
    # spelling or not one once lowercased).
    if type(value) is list and all(
        type(url) is str
        and url.strip() == url
        and (len(url) > _NULL_MAX_LEN or url.lower() not in _NULL_TEXTS)
        for url in value
    ):
        return tuple(value)
    if is_nullish(value):
        return ()
    if isinstance(value, str):
        text = value.strip()
        # The docs' quick-start parses a JSON-encoded list; a bare URL also occurs.
        value = json.loads(text) if text.startswith("[") else [text]
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"expected a list of URLs, not {type(value).__name__}")
    urls = tuple(url for url in value if not is_nullish(url))
    if not all(isinstance(url, str) for url in urls):
        raise TypeError("every URL must be a string")
    return urls


def _structure_params(value: object, _: type) -> dict[str, Any]:
    if is_nullish(value):
        return {}
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        return _params_from_text(value)
    return {"raw": value}


def _json_object(text: str) -> dict[str, Any] | None:
    """The JSON object ``text`` holds (a second JSON text inside a record), or None."""
    try:
        parsed = _json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested too deep
        return None
    return parsed if isinstance(parsed, dict) else None


def _params_from_text(text: str) -> dict[str, Any]:
    """paramJson's text as a dict; ``{"raw": text}`` when it is no JSON object."""
    parsed = _json_object(text)
    return {"raw": text} if parsed is None else parsed


class _ParamText(_Unparsed):
    """A paramJson object text, parsed on the first read of ``params``."""

    __slots__ = ()

    def parse(self) -> dict[str, Any]:
        return _params_from_text(self.text)


def _structure_flag(value: object, _: type) -> bool:
    if is_nullish(value):
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "false", "0"):
        return value.strip().lower() in ("true", "1")
    raise TypeError(f"fallbackFlag must be a boolean, not {_short(value)}")


def _structure_text(value: object, _: type) -> str:
    if type(value) is str:  # the usual case, first
        return value
    if value is None:
        return ""
    if isinstance(value, (str, int, float)):
        return str(value)
    raise TypeError(f"expected text, not {type(value).__name__}")


def _structure_message(value: object, _: type) -> str:
    return "" if is_nullish(value) else _structure_text(value, str)


def _structure_optional_text(value: object, _: type) -> str | None:
    return None if is_nullish(value) else _structure_text(value, str)


# Attribute name -> wire key.
_RESULT_WIRE = {
    "task_id": "taskId",
    "result_urls": "resultUrls",
    "origin_urls": "originUrls",
    "full_result_urls": "fullResultUrls",
}
_RECORD_WIRE = {
    "task_id": "taskId",
    "status": "successFlag",
    "params": "paramJson",
    "create_time": "createTime",
    "complete_time": "completeTime",
    "error_code": "errorCode",
    "error_message": "errorMessage",
    "fallback": "fallbackFlag",
}
# The hook of every optional wire field, to find (and drop) the unreadable
# ones of a record the converter refused. Times are read earlier, in _normalize.
_OPTIONAL_RECORD_HOOKS: dict[str, Callable[[object, type], object]] = {
    "paramJson": _structure_params,
    "errorCode": _structure_error_code,
    "errorMessage": _structure_message,
    "fallbackFlag": _structure_flag,
}
_RESULT_HOOKS: dict[str, Callable[[object, type], object]] = {
    "taskId": _structure_text,
    "resultUrls": _structure_urls,
    "originUrls": _structure_urls,
    "fullResultUrls": _structure_urls,
    "resolution": _structure_optional_text,
}


def _is_exactly(wanted: object) -> Callable[[object], bool]:
    return lambda candidate: bool(candidate == wanted)


def _make_converter(tz: _dt.tzinfo) -> cattrs.Converter:
    conv = cattrs.Converter(detailed_validation=False)
    conv.register_structure_hook(TaskStatus, _structure_status)
    conv.register_structure_hook(bool, _structure_flag)
    conv.register_structure_hook(str, _structure_text)
    # Generic and optional types are matched exactly (functools dispatch cannot
    # key on them); the optional ones get whole-union hooks so that "null" and
    # "" strings read as None instead of failing the inner type.
    exact_hooks: list[tuple[object, Any]] = [
        (tuple[str, ...], _structure_urls),
        (dict[str, Any], _structure_params),
        (int | None, _structure_error_code),
        (_dt.datetime | None, _time_hook(tz)),
        (str | None, _structure_optional_text),
    ]
    for wire_type, hook in exact_hooks:
        conv.register_structure_hook_func(_is_exactly(wire_type), hook)
    for model, renames in ((VideoResult, _RESULT_WIRE), (RecordInfo, _RECORD_WIRE)):
        overrides: dict[str, Any] = {name: override(rename=wire) for name, wire in renames.items()}
        if model is RecordInfo:
            # A plain str field elsewhere (task ids); here "null" means no message.
            overrides["error_message"] = override(
                rename="errorMessage", struct_hook=_structure_message
            )
        conv.register_structure_hook(model, make_dict_structure_fn(model, conv, **overrides))
    return conv


_RecordHook = Callable[[Any, type[RecordInfo]], RecordInfo]


def _record_hook(tz: _dt.tzinfo) -> _RecordHook:
    """The structure hook of RecordInfo for *tz*: one converter per zone, kept.

    A lean converter (no detailed validation) reads every good record; a record
    it refuses is taken apart field by field in _salvage. The hook itself is
    kept: converter.structure() would dispatch on every call.
    """
    try:
        hook = _RECORD_HOOKS.get(tz)
    except TypeError:  # an unhashable tzinfo: correct, just not cached
        return _make_converter(tz).get_structure_hook(RecordInfo)
    if hook is None:
        hook = _RECORD_HOOKS[tz] = _make_converter(tz).get_structure_hook(RecordInfo)
    return hook


_RECORD_HOOKS: dict[_dt.tzinfo, _RecordHook] = {}
_structure_kie_record = _record_hook(KIE_TIMEZONE)

_RECORD_KEYS = (*_RECORD_WIRE.values(), "response")


def _excerpt(data: object) -> str:
    return json.dumps(data, default=str)[:200]


def _log_unreadable(field: str, value: object, task_id: object, problem: object) -> None:
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "task %s: record field %r unreadable, using its default (%s %s: %.100s)",
            task_id,
            field,
            type(value).__name__,
            _short(value),
            problem,
        )


def _normalize(data: Mapping[str, Any], task_id: str | None) -> dict[str, Any]:
    """Bring every known variant of the record into the one documented shape."""
    get = data.get
    wire = {key: value for key in _RECORD_KEYS if (value := get(key)) is not None}
    record_id = wire.get("taskId")
    if record_id is None or (type(record_id) is str and is_nullish(record_id)):
        if task_id is None:
            wire.pop("taskId", None)
        else:
            wire["taskId"] = task_id
    response = wire.get("response")
    if type(response) is str:
        if is_nullish(response):  # "null" or "": no response yet
            del wire["response"]
            response = None
        else:
            # Kie JSON-encodes nested values elsewhere (paramJson, resultUrls):
            # the object's own text is the object ("{}" too: an empty one).
            parsed = _json_object(response)
            response = response if parsed is None else parsed
    if response is None:
        if is_nullish(get("resultUrls")):
            return wire
        # Seen in the docs' quick-start: the URLs directly under data.
        response = {
            key: data[key] for key in ("resultUrls", "originUrls", "resolution") if key in data
        }
    elif type(response) is not dict and not isinstance(response, Mapping):
        raise ResponseError(
            f"record field 'response' is a {type(response).__name__}, not an object",
            field="response",
            task_id=task_id,
            excerpt=repr(response)[:200],
            retryable=False,
        )
    response = dict(response)
    if no_urls(response.get("resultUrls")) and not no_urls(get("resultUrls")):
        # The URLs under data, beside a response without any (the docs'
        # quick-start reads them there): what is under data fills the gaps.
        for key in ("resultUrls", "originUrls", "resolution"):
            if key in data and no_urls(response.get(key)):
                response[key] = data[key]
    response_id = response.get("taskId")
    if response_id is None or (type(response_id) is str and is_nullish(response_id)):
        response["taskId"] = wire.get("taskId")  # absent or "null": the record's own id
    wire["response"] = response
    return wire


def _salvage(
    wire: dict[str, Any],
    data: Mapping[str, Any],
    task_id: str | None,
    tz: _dt.tzinfo,
    structure: _RecordHook,
) -> RecordInfo:
    """The record the converter refused: fail on a required field, default the others.

    Only reached for a bad record, so it may be slow: each field is tried alone.
    """
    for field, read in (("taskId", _structure_text), ("successFlag", _structure_status)):
        try:
            read(wire[field], str)
        except Exception as exc:  # any failure of our hook
            raise ResponseError(
                f"cannot read record field {field!r}: {exc}",
                field=field,
                task_id=task_id,
                excerpt=_excerpt(data),
                retryable=False,
            ) from None
    record_id = wire["taskId"]
    read_time = _time_hook(tz)
    record_hooks = {**_OPTIONAL_RECORD_HOOKS, "createTime": read_time, "completeTime": read_time}
    places: list[tuple[str, dict[str, Any], dict[str, Callable[[object, type], object]]]] = [
        ("", wire, record_hooks)
    ]
    if "response" in wire:  # an object by now: _normalize checked it
        places.append(("response.", wire["response"], _RESULT_HOOKS))
    for prefix, fields, hooks in places:
        for key, hook in hooks.items():
            if key not in fields:
                continue
            try:
                hook(fields[key], object)
            except Exception as exc:  # cosmetic: the default is better than no record
                _log_unreadable(prefix + key, fields.pop(key), record_id, exc)
                if prefix and key == "taskId":
                    fields[key] = record_id
    try:
        return structure(wire, RecordInfo)
    except Exception as exc:  # pragma: no cover - every field was checked above
        raise ResponseError(
            f"cannot read record: {exc}",
            task_id=task_id,
            excerpt=_excerpt(data),
            retryable=False,
        ) from None


def record_from_wire(
    data: object,
    task_id: str | None = None,
    *,
    tz: _dt.tzinfo = KIE_TIMEZONE,
) -> RecordInfo:
    """Turn the ``data`` of a record-info envelope into a :class:`RecordInfo`.

    :param data: the envelope's ``data`` (already JSON-decoded).
    :param task_id: the id that was asked for; used when the record omits it
        (this function does not check that they match).
    :param tz: the zone of time strings that carry none (default
        :data:`KIE_TIMEZONE`, UTC+8); epoch values are absolute either way.
    :raises ResponseError: (not retryable) naming the field when the record has
        no readable ``taskId`` or ``successFlag``, or a ``response`` that is not
        an object. Other unreadable fields take their defaults (logged at DEBUG).
    :raises TypeError: when *tz* is not a :class:`datetime.tzinfo`.
    """
    if tz is KIE_TIMEZONE and type(data) is dict:
        record = usual_record(data)  # the usual shape, quickly (or None)
        if record is not None:
            return record
    if tz is not KIE_TIMEZONE and not isinstance(tz, _dt.tzinfo):
        raise TypeError(f"tz must be a datetime.tzinfo, not {type(tz).__name__}")
    return _record_full(data, task_id, tz)


def _record_full(data: object, task_id: str | None, tz: _dt.tzinfo) -> RecordInfo:
    """record_from_wire without its fast path: every shape, every quirk."""
    if not isinstance(data, Mapping):
        raise ResponseError(
            f"record is a {type(data).__name__}, not an object",
            field="data",
            task_id=task_id,
            excerpt=repr(data)[:200],
            retryable=False,
        )
    wire = _normalize(data, task_id)
    for required in ("taskId", "successFlag"):
        if required not in wire:
            raise ResponseError(
                f"record has no {required!r}",
                field=required,
                task_id=task_id,
                excerpt=_excerpt(data),
                retryable=False,
            )
    structure = _structure_kie_record if tz is KIE_TIMEZONE else _record_hook(tz)
    try:
        return structure(wire, RecordInfo)
    except Exception:  # any failure of a hook: found field by field below
        pass
    return _salvage(wire, data, task_id, tz, structure)


# The time hook of the default zone, for the fast path, and its offset text.
_read_kie_time = _time_hook(KIE_TIMEZONE)
_KIE_SUFFIX = _fixed_suffix(KIE_TIMEZONE) or ""


def usual_record(data: dict[str, Any]) -> RecordInfo | None:
    """The documented record shape, read directly; None for anything else.

    Nearly every answer has the documented shape: a string ``taskId``, an int
    ``successFlag``, and ``response`` null or an object. Reading that shape
    field by field with the very hooks the converter uses skips _normalize's
    copy and cattrs' dispatch, about a third of a record's decoding. Anything
    else - an id that is absent or "null", a flag of another type, URLs
    directly under ``data``, a response that is not an object, any field a
    hook refuses - gives None, and the full path decides. So the result is
    always the full converter's (``tests/test_fast_path.py`` checks that with
    hypothesis). Absent and null fields get what the full path gives them
    (_normalize drops nulls; each hook reads None as its field's default).

    It reads no float where it reads a value (times, codes, texts) and no
    nested object (``paramJson`` as an object): those step aside too. So
    *data* may come from :func:`_json.loads_unscanned`, which may turn an
    integer beyond 64 bits into a float: the result is then still exactly
    what the full path makes of an exact parse. A paramJson text is parsed
    (exactly) when ``record.params`` is first read.
    """
    get = data.get
    record_id = get("taskId")
    flag = get("successFlag")
    # type() is int: a bool flag is refused by the full path, not read as 0/1.
    # The "null" spellings: a string longer than any once stripped is none of
    # them (this runs on every decoded record; real ids are ~40 characters).
    if (
        type(record_id) is not str
        or type(flag) is not int
        or (len(record_id.strip()) <= _NULL_MAX_LEN and is_nullish(record_id))
    ):
        return None
    status = _STATUS_BY_FLAG.get(flag)
    if status is None:
        return None
    response = get("response")
    if get("resultUrls") is not None:
        return None  # URLs directly under data: _normalize moves or merges them
    result: VideoResult | None = None
    try:
        if response is not None:
            if type(response) is not dict:
                return None  # "null" text, a list...: the full path explains
            rget = response.get
            result_id = rget("taskId")
            if result_id is None or result_id == record_id:
                result_id = record_id  # absent: as _normalize does, the record's own id
            elif type(result_id) is not str:
                return None
            elif is_nullish(result_id):
                result_id = record_id
            urls = rget("resultUrls")
            origin = rget("originUrls")
            full = rget("fullResultUrls")
            resolution = rget("resolution")
            if type(resolution) is str:  # "1080p": longer than any "null" spelling
                if len(resolution.strip()) <= _NULL_MAX_LEN and is_nullish(resolution):
                    resolution = None
            elif type(resolution) is float:
                return None  # maybe a long integer misread (see the docstring)
            elif resolution is not None:
                resolution = _structure_text(resolution, str)
            if (  # one URL, the usual answer: what _structure_urls gives it, inline
                type(urls) is list
                and len(urls) == 1
                and type(url := urls[0]) is str
                and len(url) > _NULL_MAX_LEN
                and url.strip() == url
            ):
                result_urls: tuple[str, ...] = (url,)
            else:
                result_urls = _structure_urls(urls, tuple)
            result = VideoResult(
                result_id,
                result_urls,
                () if origin is None else _structure_urls(origin, tuple),
                () if full is None else _structure_urls(full, tuple),
                resolution,
            )
        # The usual values inline (None, "", a bool, a JSON object text, the
        # documented time format); the others through their hook. A value
        # inline code refuses raises, and the full path decides.
        params: Any = get("paramJson")
        if type(params) is str:
            # An object text is parsed when record.params is first read (most
            # never are), to the very value _structure_params gives it.
            params = _ParamText(params) if params[:1] == "{" else _structure_params(params, dict)
        elif params is None:
            params = {}
        else:
            return None  # an object or a number (see the docstring)
        created = get("createTime")
        completed = get("completeTime")
        error_code = get("errorCode")
        message = get("errorMessage")
        # (A float flag reads as its truth either way: no long-integer doubt.)
        fallback = get("fallbackFlag")
        if float in (type(created), type(completed), type(error_code), type(message)):
            return None  # maybe a long integer misread (see the docstring)
        if (
            type(created) is str and len(created) == 19 and created[10] == " " and created[0] == "2"
        ):
            created = _dt.datetime.fromisoformat(created + _KIE_SUFFIX)
        else:
            created = _read_kie_time(created, _dt.datetime)
        if (
            type(completed) is str
            and len(completed) == 19
            and completed[10] == " "
            and completed[0] == "2"
        ):
            completed = _dt.datetime.fromisoformat(completed + _KIE_SUFFIX)
        else:
            completed = _read_kie_time(completed, _dt.datetime)
        return RecordInfo(
            record_id,
            status,
            params,
            created,
            completed,
            result,
            None if error_code is None else _structure_error_code(error_code, int),
            "" if message is None or message == "" else _structure_message(message, str),
            fallback if type(fallback) is bool else _structure_flag(fallback, bool),
        )
    except Exception:  # a field a hook refuses: the full path salvages the record
        return None


def record_to_jsonable(record: RecordInfo) -> dict[str, Any]:
    """A JSON-ready dict of a record (see :meth:`RecordInfo.to_jsonable`)."""
    return record.to_jsonable()
