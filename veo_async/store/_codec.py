"""A :class:`~veo_async.RecordInfo` <-> a JSON-ready dict, for storing terminal records.

Not the wire format (that is ``_convert``'s job, with every Kie quirk): this is
our own format, written and read only by us, so it is strict and lossless:

- field names are the attribute names (snake_case);
- ``status`` is the ``successFlag`` integer;
- datetimes are ISO 8601 text with their UTC offset (``fromisoformat`` reads
  them back to the same instant and offset);
- tuples of URLs are lists; ``params`` is kept as it is (it came from JSON).

``record_from_json(json.loads(json.dumps(record_to_json(r)))) == r`` for every
record whose ``params`` are JSON values. Pure: no I/O, no event loop.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from typing import Any

import cattrs

from ..models import RecordInfo, TaskStatus

__all__ = ["record_from_json", "record_to_json"]


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
    conv = cattrs.Converter()
    conv.register_unstructure_hook(_dt.datetime, _dt.datetime.isoformat)
    conv.register_structure_hook(_dt.datetime, _structure_time)
    conv.register_unstructure_hook(TaskStatus, int)
    conv.register_structure_hook(TaskStatus, lambda value, _: TaskStatus(value))
    # Without these, cattrs would keep tuples as tuples (not JSON's lists) and
    # copy ``params`` through a generic dict hook.
    conv.register_unstructure_hook_func(lambda t: t == tuple[str, ...], list)
    conv.register_structure_hook_func(lambda t: t == tuple[str, ...], _structure_urls)
    conv.register_unstructure_hook_func(lambda t: t == dict[str, Any], lambda v: v)
    conv.register_structure_hook_func(lambda t: t == dict[str, Any], _structure_params)
    return conv


_converter = _make_converter()


def record_to_json(record: RecordInfo) -> dict[str, Any]:
    """A JSON-ready dict of *record* (see the module docstring for the format).

    :raises TypeError: when *record* is not a :class:`RecordInfo`.
    """
    if not isinstance(record, RecordInfo):
        raise TypeError(f"expected a RecordInfo, not {type(record).__name__}")
    data: dict[str, Any] = _converter.unstructure(record, RecordInfo)
    return data


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
