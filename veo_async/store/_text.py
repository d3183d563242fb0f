"""JSON text for the store's columns: orjson when the ``fast`` extra is installed.

The text must mean exactly what ``json.dumps(value, allow_nan=False)`` would
write, and the store must refuse exactly what that refuses (NaN, infinities,
sets, datetimes...). orjson is ~20 times faster on a terminal record (the
store's one write per tracked id that carries a document), and it is stricter
than the stdlib in most ways: it raises on non-str keys, integers beyond 64
bits, lone surrogates, cycles and deep nesting, and the stdlib then decides.
It is looser in two: it writes NaN and infinities as ``null``, and it writes
types JSON does not have (datetimes, UUIDs, dataclasses, enums...). So its text
is kept only when the value holds nothing but JSON's own types (exactly dict,
list, tuple, str, int, bool, None and finite float); anything else goes to the
stdlib, which decides as it would have alone.

Pure: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["FAST_TEXT", "dumps", "dumps_plain", "plain"]

_SCALARS = frozenset((str, int, bool, type(None)))


def plain(value: object) -> bool:
    """True when *value* holds JSON's own types only, every float finite.

    Call it only on what orjson has already written, or on values parsed from
    JSON: so no cycle, bounded depth.
    """
    stack = [value]
    pop, push = stack.pop, stack.extend
    while stack:
        item = pop()
        kind = type(item)
        if kind is dict:
            push(item.values())  # type: ignore[attr-defined]
        elif kind is list or kind is tuple:
            push(item)  # type: ignore[arg-type]
        elif kind is float:
            if item - item != 0.0:  # type: ignore[operator]  # NaN or an infinity
                return False
        elif kind not in _SCALARS:
            return False
    return True


def _stdlib(value: Mapping[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def _with_orjson() -> (
    tuple[Callable[[Mapping[str, Any]], str], Callable[[Mapping[str, Any]], str]] | None
):
    """orjson's :func:`dumps` and :func:`dumps_plain`; None without the extra."""
    try:
        import orjson
    except ImportError:  # the fast extra is not installed
        return None
    fast = orjson.dumps
    refused = orjson.JSONEncodeError

    def dumps_plain(value: Mapping[str, Any]) -> str:
        try:
            return fast(value).decode()
        except refused:  # an integer beyond 64 bits, a lone surrogate...
            return _stdlib(value)

    def dumps(value: Mapping[str, Any]) -> str:
        text = dumps_plain(value)
        # orjson writes NaN as null and types JSON lacks: the stdlib decides those.
        return text if plain(value) else _stdlib(value)

    return dumps, dumps_plain


_fast = _with_orjson()
#: True when JSON text is written by orjson (the ``fast`` extra).
FAST_TEXT = _fast is not None
#: *value* as compact JSON text, as ``json.dumps(value, allow_nan=False)`` would
#: write it (same meaning; spacing and escapes may differ).
#:
#: :raises TypeError: or :exc:`ValueError`, as that call would.
dumps: Callable[[Mapping[str, Any]], str] = _fast[0] if _fast is not None else _stdlib
#: :func:`dumps` for a value the caller knows to hold JSON's own types only,
#: every float finite (checked with :func:`plain`, or by construction): the
#: same text, without walking the value a second time.
dumps_plain: Callable[[Mapping[str, Any]], str] = _fast[1] if _fast is not None else _stdlib
