"""A :class:`~veo_async.RecordInfo` <-> a JSON-ready dict, for storing terminal records.

Not the wire format (that is ``_convert``'s job, with every Kie quirk): this is
our own format, written and read only by us, so it is strict and lossless:

- field names are the attribute names (snake_case);
- ``status`` is the ``successFlag`` integer;
- datetimes are ISO 8601 text with their UTC offset (``fromisoformat`` reads
  them back to the same instant and offset);
- tuples of URLs are lists; ``params`` is kept as it is (it came from JSON).

``record_from_json(json.loads(json.dumps(record_to_json(r)))) == r`` for every
record whose ``params`` are JSON values. :func:`record_text` writes the same
document as JSON text in one step (the form a store column holds). Pure: no
I/O, no event loop.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import cattrs

from ..models import RecordInfo, TaskStatus, VideoResult
from ._text import dumps, dumps_plain, plain

_T = TypeVar("_T")

__all__ = ["json_safe", "record_from_json", "record_text", "record_to_json"]


def _structure_time(value: object, _: type) -> _dt.datetime:
    if not isinstance(value, str):
        raise TypeError(f"expected an ISO 8601 time, not {type(value).__name__}")
    return _dt.datetime.fromisoformat(value)


def _structure_urls(value: object, _: type) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(u, str) for u in value):
        raise TypeError("expected a list of URL strings")
    return tuple(value)


def _structure_params(value: object, _: type) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"expected an object, not {type(value).__name__}")
    return value


def _make_converter() -> cattrs.Converter:
    """The reading side (structure hooks only: record_to_json writes by hand)."""
    conv = cattrs.Converter()
    conv.register_structure_hook(_dt.datetime, _structure_time)
    conv.register_structure_hook(TaskStatus, lambda value, _: TaskStatus(value))
    # Without these, cattrs would accept any iterable for the URL tuples and
    # copy ``params`` through a generic dict hook.
    conv.register_structure_hook_func(lambda t: t == tuple[str, ...], _structure_urls)
    conv.register_structure_hook_func(lambda t: t == dict[str, Any], _structure_params)
    # And these would convert a damaged row instead of refusing it ("false"
    # read as True, null as the text "None", 1.9 as 1): the format is strict.
    for kind in (str, int, bool):
        conv.register_structure_hook(kind, _exactly(kind))
    return conv


def _exactly(kind: type[_T]) -> Callable[[object, type], _T]:
    """A structure hook taking a value of type *kind* exactly (not a bool for
    an int), refusing any other."""

    def structure(value: object, _: type) -> _T:
        if type(value) is not kind:
            raise TypeError(f"expected {kind.__name__}, not {type(value).__name__}")
        return value

    return structure


_converter = _make_converter()


def record_to_json(record: RecordInfo) -> dict[str, Any]:
    """A JSON-ready dict of *record* (see the module docstring for the format).

    :raises TypeError: when *record* is not a :class:`RecordInfo`.
    """
    # Written out by hand, not by the cattrs converter that reads it back: this
    # runs once per tracked id on the poll path, where the generated unstructure
    # code (hooks per field, optional wrappers) cost three times as much.
    # tests/test_store.py pins the key set to the classes' fields.
    if not isinstance(record, RecordInfo):
        raise TypeError(f"expected a RecordInfo, not {type(record).__name__}")
    created, completed, response = record.create_time, record.complete_time, record.response
    return {
        "task_id": record.task_id,
        "status": int(record.status),
        "params": record.params,
        "create_time": None if created is None else created.isoformat(),
        "complete_time": None if completed is None else completed.isoformat(),
        "response": None
        if response is None
        else {
            "task_id": response.task_id,
            "result_urls": list(response.result_urls),
            "origin_urls": list(response.origin_urls),
            "full_result_urls": list(response.full_result_urls),
            "resolution": response.resolution,
        },
        "error_code": record.error_code,
        "error_message": record.error_message,
        "fallback": record.fallback,
    }


#: The types whose values orjson and the stdlib write alike (an int beyond 64
#: bits makes orjson raise, and the stdlib then writes it).
_SCALARS = frozenset((str, int, bool, type(None)))


def _plain_params(params: object) -> bool:
    """True when *params* is a dict of JSON's own types only, every float finite."""
    if type(params) is not dict:
        return False
    # The common case in one C-level pass: a flat object of scalars.
    return set(map(type, params.values())) <= _SCALARS or plain(params)


def json_safe(value: object) -> Any:
    """``value`` with what JSON cannot hold written as text: a NaN or an
    infinity as ``"nan"`` / ``"inf"``, a type JSON lacks as its ``repr``."""
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if value is None or isinstance(value, (str, int)):
        return value
    return repr(value)


def record_text(record: RecordInfo) -> str:
    """``record_to_json(record)`` as compact JSON text, the form a store column holds.

    The same text :func:`~veo_async.store._text.dumps` writes of that dict
    (same meaning, same errors), in less time: a store writes one per tracked
    id. When every field already has JSON's own type (always, for a record
    decoded from an answer), the dict is built with the URL tuples as they
    are and written without a second walk over it; anything else takes the
    general path, which decides as it would have alone.

    :raises TypeError: when *record* is not a :class:`RecordInfo`, or cannot
        be written as JSON.
    :raises ValueError: when it holds a NaN or an infinity.
    """
    if type(record) is not RecordInfo:
        return dumps(record_to_json(record))
    response = record.response
    leaves: tuple[object, ...] = (
        record.task_id,
        record.error_code,
        record.error_message,
        record.fallback,
    )
    if response is None:
        result = None
    elif (
        type(response) is VideoResult
        and type(response.result_urls) is tuple
        and type(response.origin_urls) is tuple
        and type(response.full_result_urls) is tuple
    ):
        result = {
            "task_id": response.task_id,
            "result_urls": response.result_urls,
            "origin_urls": response.origin_urls,
            "full_result_urls": response.full_result_urls,
            "resolution": response.resolution,
        }
        leaves = (
            *leaves,
            response.task_id,
            response.resolution,
            *response.result_urls,
            *response.origin_urls,
            *response.full_result_urls,
        )
    else:
        return dumps(record_to_json(record))
    params = record.params
    if not (set(map(type, leaves)) <= _SCALARS and _plain_params(params)):
        return dumps(record_to_json(record))
    created, completed = record.create_time, record.complete_time
    return dumps_plain(
        {
            "task_id": record.task_id,
            "status": int(record.status),
            "params": params,
            "create_time": None if created is None else created.isoformat(),
            "complete_time": None if completed is None else completed.isoformat(),
            "response": result,
            "error_code": record.error_code,
            "error_message": record.error_message,
            "fallback": record.fallback,
        }
    )


def record_from_json(data: Mapping[str, Any]) -> RecordInfo:
    """The :class:`RecordInfo` a :func:`record_to_json` dict describes.

    :raises ValueError: when *data* is not such a dict (a damaged store row),
        naming the first field that could not be read.
    """
    if not isinstance(data, Mapping):
        raise ValueError(f"stored record is a {type(data).__name__}, not an object")
    try:
        return _converter.structure(dict(data), RecordInfo)
    except Exception as exc:  # cattrs wraps hook errors in validation groups
        messages = cattrs.transform_error(exc, path="record")
        raise ValueError(
            f"stored record cannot be read: {messages[0] if messages else exc}"
        ) from exc
