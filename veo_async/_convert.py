"""The cattrs converter: Kie's camelCase record JSON -> our snake_case attrs models.

The service is inconsistent across endpoints and over time (see
``kie-veo-api.md``), so every field is read defensively:

- ``successFlag``: an int or a numeric string.
- ``resultUrls``: a list or a JSON-encoded string, under ``data.response`` or
  directly under ``data``.
- ``createTime`` / ``completeTime``: ``"YYYY-MM-DD HH:MM:SS"`` strings or epoch
  milliseconds. The strings carry no zone; we read them as **UTC**, the zone of
  the epoch values sibling endpoints send, so both forms agree.
- ``errorCode``: int, numeric string, ``"null"``, ``""`` or null.
- ``paramJson``: a JSON string; text that is not a JSON object is kept as
  ``{"raw": text}`` rather than failing the whole record.
- ``response`` null or absent; unknown fields ignored; optional fields absent.

Anything that still cannot be made sense of raises
:class:`~veo_async.errors.ResponseError` naming the field, never a bare cattrs,
``KeyError`` or ``ValueError``. Pure: no I/O, no event loop.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, override

from .errors import ResponseError
from .models import RecordInfo, TaskStatus, VideoResult

__all__ = ["record_from_wire", "record_to_jsonable"]

_TIME_FORMATS = ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%fZ", "%Y/%m/%d %H:%M:%S")
# Epoch values above this are milliseconds, below it seconds (year 2286 in s).
_MS_THRESHOLD = 10_000_000_000


_NULL_TEXTS = frozenset(("", "null", "NULL", "Null", "None", "none"))


def _is_nullish(value: object) -> bool:
    # Runs for every optional field of every poll: keep the common cases cheap.
    if value is None:
        return True
    return type(value) is str and (value in _NULL_TEXTS or value.strip().lower() in _NULL_TEXTS)


# type(value) is int excludes bool (an int subclass: True would read as SUCCESS),
# and a dict lookup is several times cheaper than calling the enum.
_STATUS_BY_FLAG = {int(status): status for status in TaskStatus}


def _structure_status(value: object, _: type) -> TaskStatus:
    if type(value) is str:
        value = int(value.strip())
    if type(value) is not int:
        raise TypeError(f"successFlag must be a number, not {value!r}")
    status = _STATUS_BY_FLAG.get(value)
    if status is None:
        raise ValueError(f"unknown successFlag {value!r}")
    return status


def _structure_time(value: object, _: type) -> _dt.datetime | None:
    if type(value) is str and len(value) == 19 and value[10] == " ":
        # The documented "YYYY-MM-DD HH:MM:SS", read as UTC in one C call;
        # this runs twice per decoded record.
        try:
            return _dt.datetime.fromisoformat(value + "+00:00")
        except ValueError:
            pass  # not a valid date after all: the general path explains why
    if _is_nullish(value):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = value / 1000 if value > _MS_THRESHOLD else float(value)
        return _dt.datetime.fromtimestamp(seconds, tz=_dt.timezone.utc)
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return _structure_time(int(text), _)
        try:
            parsed = _dt.datetime.fromisoformat(text)  # ~10x faster than strptime
        except ValueError:
            parsed = _strptime_any(text)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=_dt.timezone.utc)
    raise TypeError(f"not a time: {type(value).__name__}")


def _strptime_any(text: str) -> _dt.datetime:
    """The variants fromisoformat rejects on older Pythons (a trailing "Z" ...)."""
    for fmt in _TIME_FORMATS:
        try:
            return _dt.datetime.strptime(text, fmt)
        except ValueError:
            continue
    raise ValueError(f"not a time: {text!r}")


def _structure_error_code(value: object, _: type) -> int | None:
    if _is_nullish(value):
        return None
    if isinstance(value, bool):
        raise TypeError("errorCode must be a number")
    if isinstance(value, str):
        return int(value.strip())
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise TypeError(f"errorCode must be a number, not {type(value).__name__}")


def _structure_urls(value: object, _: type) -> tuple[str, ...]:
    if type(value) is list and all(type(url) is str for url in value):
        return tuple(value)  # the documented form, checked cheaply
    if _is_nullish(value):
        return ()
    if isinstance(value, str):
        text = value.strip()
        # The docs' quick-start parses a JSON-encoded list; a bare URL also occurs.
        value = json.loads(text) if text.startswith("[") else [text]
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"expected a list of URLs, not {type(value).__name__}")
    if not all(isinstance(url, str) for url in value):
        raise TypeError("every URL must be a string")
    return tuple(value)


def _structure_params(value: object, _: type) -> dict[str, Any]:
    if _is_nullish(value):
        return {}
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return {"raw": value}
        return parsed if isinstance(parsed, dict) else {"raw": value}
    return {"raw": value}


def _structure_flag(value: object, _: type) -> bool:
    if _is_nullish(value):
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "false", "0"):
        return value.strip().lower() in ("true", "1")
    raise TypeError(f"fallbackFlag must be a boolean, not {value!r}")


def _structure_text(value: object, _: type) -> str:
    if type(value) is str:  # the usual case, first
        return value
    if value is None:
        return ""
    if isinstance(value, (str, int, float)):
        return str(value)
    raise TypeError(f"expected text, not {type(value).__name__}")


def _structure_optional_text(value: object, _: type) -> str | None:
    return None if _is_nullish(value) else _structure_text(value, str)


# Attribute name -> wire key; also used to name the wire field in errors.
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
_WIRE_NAMES = {**_RESULT_WIRE, **_RECORD_WIRE}


def _is_exactly(wanted: object) -> Callable[[object], bool]:
    return lambda candidate: bool(candidate == wanted)


def _make_converter(*, detailed: bool) -> cattrs.Converter:
    conv = cattrs.Converter(detailed_validation=detailed)
    conv.register_structure_hook(TaskStatus, _structure_status)
    conv.register_structure_hook(_dt.datetime, _structure_time)
    conv.register_structure_hook(bool, _structure_flag)
    conv.register_structure_hook(str, _structure_text)
    # Generic and optional types are matched exactly (functools dispatch cannot
    # key on them); the optional ones get whole-union hooks so that "null" and
    # "" strings read as None instead of failing the inner type.
    exact_hooks: list[tuple[object, Any]] = [
        (tuple[str, ...], _structure_urls),
        (dict[str, Any], _structure_params),
        (int | None, _structure_error_code),
        (_dt.datetime | None, _structure_time),
        (str | None, _structure_optional_text),
    ]
    for wire_type, hook in exact_hooks:
        conv.register_structure_hook_func(_is_exactly(wire_type), hook)
    for model, renames in ((VideoResult, _RESULT_WIRE), (RecordInfo, _RECORD_WIRE)):
        overrides: dict[str, Any] = {name: override(rename=wire) for name, wire in renames.items()}
        conv.register_structure_hook(model, make_dict_structure_fn(model, conv, **overrides))
    return conv


# Two converters over the same hooks: the lean one reads every good record; the
# detailed one (which tracks the path of every field, ~2x slower) runs only to
# name the field of a record the lean one could not read.
_converter = _make_converter(detailed=False)
_explaining_converter = _make_converter(detailed=True)
# The hook itself, looked up once: converter.structure() dispatches per call.
_structure_record: Callable[[Any, type[RecordInfo]], RecordInfo] = (
    _converter.get_structure_hook(RecordInfo)
)

_RECORD_KEYS = (*_RECORD_WIRE.values(), "response")


def _normalize(data: Mapping[str, Any], task_id: str | None) -> dict[str, Any]:
    """Bring every known variant of the record into the one documented shape."""
    wire = {key: data[key] for key in _RECORD_KEYS if key in data and data[key] is not None}
    if "taskId" not in wire and task_id is not None:
        wire["taskId"] = task_id
    response = wire.get("response")
    if response is None and not _is_nullish(data.get("resultUrls")):
        # Seen in the docs' quick-start: the URLs directly under data.
        response = {
            key: data[key] for key in ("resultUrls", "originUrls", "resolution") if key in data
        }
    if response is not None:
        if not isinstance(response, Mapping):
            raise ResponseError(
                "record field 'response' is not an object",
                field="response",
                task_id=task_id,
                excerpt=repr(response)[:200],
            )
        response = dict(response)
        if response.get("taskId") is None:  # absent or null: the record's own id
            response["taskId"] = wire.get("taskId")
        wire["response"] = response
    return wire


def _first_field(exc: BaseException) -> tuple[str, str]:
    """The wire path and message of the first problem cattrs found."""
    messages = cattrs.transform_error(exc, path="$")
    first = messages[0] if messages else str(exc)
    # transform_error says "<what went wrong> @ $.response.result_urls", in
    # attribute names; users compare against the wire, so speak camelCase.
    what, _, where = first.rpartition(" @ ")
    parts = [_WIRE_NAMES.get(part, part) for part in where.split(".")[1:]]
    return (".".join(parts) or "data"), (what or first)


def record_from_wire(data: object, task_id: str | None = None) -> RecordInfo:
    """Turn the ``data`` of a record-info envelope into a :class:`RecordInfo`.

    :param data: the envelope's ``data`` (already JSON-decoded).
    :param task_id: the id that was asked for; used when the record omits it.
    :raises ResponseError: naming the field when the record cannot be read.
    """
    if not isinstance(data, Mapping):
        raise ResponseError(
            f"record is a {type(data).__name__}, not an object",
            field="data",
            task_id=task_id,
            excerpt=repr(data)[:200],
        )
    wire = _normalize(data, task_id)
    for required in ("taskId", "successFlag"):
        if required not in wire:
            raise ResponseError(
                f"record has no {required!r}",
                field=required,
                task_id=task_id,
                excerpt=json.dumps(data, default=str)[:200],
            )
    try:
        return _structure_record(wire, RecordInfo)
    except Exception:  # any failure of a hook; explained below
        pass
    try:
        _explaining_converter.structure(wire, RecordInfo)
    except Exception as exc:  # cattrs wraps hook errors in validation groups
        field, what = _first_field(exc)
        raise ResponseError(
            f"cannot read record field {field!r}: {what}",
            field=field,
            task_id=task_id,
            excerpt=json.dumps(data, default=str)[:200],
        ) from exc
    # Unreachable unless the two converters disagree; never return a bad record.
    raise ResponseError("cannot read record", task_id=task_id)  # pragma: no cover


def _jsonable_value(_inst: object, _field: object, value: Any) -> Any:
    if isinstance(value, _dt.datetime):
        return value.isoformat()
    if isinstance(value, TaskStatus):
        return value.name
    if isinstance(value, tuple):
        return list(value)
    return value


def record_to_jsonable(record: RecordInfo) -> dict[str, Any]:
    """A JSON-ready dict of a record (snake_case, ISO times, status by name)."""
    return attrs.asdict(record, value_serializer=_jsonable_value)
