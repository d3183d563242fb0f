"""The checks every store makes of its arguments, before any I/O. Pure.

One set for every :class:`~veo_async.store.TaskStore` of this package, so that
a bad argument gets the same error whatever the store behind it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from .._numbers import NotANumberError, is_finite, shown
from ..models import RecordInfo, validate_task_id
from ._codec import json_safe, record_text, record_to_json
from ._text import dumps

__all__ = [
    "check_batch_size",
    "check_model",
    "check_task_id",
    "check_time",
    "json_text",
    "now_or",
    "stored_record_text",
]



def check_task_id(task_id: object) -> str:
    """*task_id* when the session could poll it.

    An id it could not poll must not get in, or every later resume would meet it.
    """
    return validate_task_id(task_id)


def check_time(value: object, name: str, *, duration: bool = False) -> float:
    """*value* as a float of epoch seconds (or, with ``duration``, of seconds).

    :raises NotANumberError: (a TypeError and a ValueError, as every refused
        number of the package) when it is not a number.
    :raises ValueError: when it is NaN or infinite.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        what = "a number of seconds" if duration else "epoch seconds (a number)"
        raise NotANumberError(f"{name} must be {what}, not {type(value).__name__}")
    if not is_finite(value):  # NaN, the infinities, an int past a float's range
        raise ValueError(f"{name} must be a finite number, not {shown(value)}")
    return float(value)


def now_or(value: float | None, name: str) -> float:
    """*value* checked, or the current time when it is None."""
    return time.time() if value is None else check_time(value, name)


def check_model(model: object) -> str | None:
    """*model* when it is a non-empty str or None."""
    if model is not None and not isinstance(model, str):
        raise TypeError(f"model must be a str or None, not {type(model).__name__}")
    if model == "":
        raise ValueError("model must be a non-empty str or None (None: not known)")
    return model


def check_batch_size(batch_size: object) -> int:
    """*batch_size* when it is a positive int."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, not {batch_size!r}")
    return batch_size


def stored_record_text(record: object) -> str:
    """The JSON text a store keeps for a terminal :class:`~veo_async.RecordInfo`.

    :raises TypeError: when it is not a record, or cannot be written as JSON.
    """
    if not isinstance(record, RecordInfo):
        raise TypeError(f"a terminal record must be a RecordInfo, not {type(record).__name__}")
    try:
        return record_text(record)
    except (TypeError, ValueError) as exc:
        # Its params hold what JSON cannot (1e999 or NaN in a paramJson read
        # as infinity or NaN): a cosmetic field, stored as text, so that the
        # record - and every other note written with it - is not refused.
        wire = record_to_json(record)
        wire["params"] = json_safe(wire["params"])
        try:
            return dumps(wire)
        except (TypeError, ValueError):
            raise TypeError(
                f"record of task {record.task_id!r} cannot be stored as JSON: {exc}"
            ) from exc


def json_text(value: Mapping[str, Any], what: str) -> str:
    """*value* (a mapping) as JSON text.

    :raises TypeError: when it is not a mapping or cannot be written as JSON.
    """
    if not isinstance(value, Mapping):
        raise TypeError(f"{what} must be a mapping, not {type(value).__name__}")
    try:
        # The JSON writer takes dicts only: another mapping (a read-only
        # MappingProxyType) is copied, not refused as "not JSON".
        return dumps(value if type(value) is dict else dict(value))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} cannot be stored as JSON: {exc}") from exc


def items_of(items: Iterable[Any], width: int, what: str) -> Iterator[Sequence[Any]]:
    """Each item of *items*, checked to be a tuple (or list) of *width* values.

    :raises TypeError: naming *what* for an item of another shape (unpacked
        as it came, a pair missing its time raised "not enough values to
        unpack", a ValueError).
    """
    for item in items:
        if not isinstance(item, (tuple, list)) or len(item) != width:
            raise TypeError(f"each item of {what} must be a tuple of {width}, not {item!r}")
        yield item
