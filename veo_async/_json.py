"""JSON parsing for answers: orjson when the ``fast`` extra is installed, else the stdlib.

``pip install veo-async[fast]`` brings orjson, which parses a record-info
answer about three times faster than :func:`json.loads`; parsing is the
largest single cost of a poll on the client's side. The two must never
disagree on what an answer *means*, so orjson only ever gets the first try:
whatever it refuses (NaN, lone surrogates, a BOM, UTF-16 bodies, nesting past
its limit) goes to :func:`json.loads`, which then decides exactly as it would
have alone. One thing orjson accepts but reads differently: an integer beyond
64 bits becomes a float. So a text with a run of 19 or more digits (where such
an integer would have to be; checked in C, ~1 µs for a record-info answer)
goes straight to the stdlib. Otherwise both parse to the same objects
(``tests/test_fast_path.py`` checks that with hypothesis, and the stdlib-only
path).

A record-info answer carries a second JSON text inside a string (its
``paramJson``). :func:`loads_document` scans the body once for both: each digit
of that inner text is a digit of the body or part of a ``\\u003X`` escape, so a
body without a run of 19 bytes among digits, ``\\`` and ``u`` holds no long
integer at either level, and :func:`loads_inner` then parses the inner text
without scanning it again.

Pure: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["FAST_JSON", "loads", "loads_document", "loads_inner"]

# Every digit to "0", every other byte to " ": a long integer is a long run of "0".
_DIGITS_TO_ZERO = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
# Integers of up to 18 digits fit in 64 bits, orjson's limit.
_LONG_RUN = b"0" * 19
# Digits, backslashes and "u" to "0": what an inner text's digit can come from.
_INNER_DIGITS_TO_ZERO = bytes(
    0x30 if 0x30 <= b <= 0x39 or b in (0x5C, 0x75) else 0x20 for b in range(256)
)

Loads = Callable[[str | bytes], Any]


def _with_orjson() -> tuple[Loads, Callable[[bytes], tuple[Any, bool]], Loads] | None:
    try:
        import orjson
    except ImportError:  # the fast extra is not installed
        return None
    fast = orjson.loads
    refused = orjson.JSONDecodeError

    def loads(data: str | bytes) -> Any:
        """Parse *data*: orjson first, the stdlib for whatever orjson refuses."""
        if type(data) is bytes:
            raw = data
        elif isinstance(data, str):
            raw = data.encode("utf-8", "surrogatepass")
        else:  # bytearray and the like: rare, let the stdlib decide
            return json.loads(data)
        if _LONG_RUN in raw.translate(_DIGITS_TO_ZERO):
            return json.loads(data)  # maybe an integer orjson would make a float
        try:
            return fast(data)
        except refused:
            return json.loads(data)

    def loads_document(body: bytes) -> tuple[Any, bool]:
        """Parse *body* as :func:`loads`; True when its inner texts need no scan."""
        if type(body) is not bytes:  # bytearray and the like: rare, let the stdlib decide
            return json.loads(body), False
        if _LONG_RUN not in body.translate(_INNER_DIGITS_TO_ZERO):
            inner_safe = True  # and the body itself has no long run of digits
        elif _LONG_RUN in body.translate(_DIGITS_TO_ZERO):
            return json.loads(body), False
        else:
            inner_safe = False  # a run of escapes (say, non-Latin text): scan inner texts
        try:
            return fast(body), inner_safe
        except refused:
            # Not UTF-8 JSON orjson reads (UTF-16, a BOM...): the byte scan
            # above says nothing of what the stdlib decodes from it.
            return json.loads(body), False

    def loads_inner(text: str | bytes) -> Any:
        """Parse a JSON text found inside a document :func:`loads_document`
        vouched for: no scan for long integers."""
        try:
            return fast(text)
        except refused:
            return json.loads(text)

    return loads, loads_document, loads_inner


def _stdlib_document(body: bytes) -> tuple[Any, bool]:
    return json.loads(body), True


_fast = _with_orjson()
#: True when answers are parsed with orjson (the ``fast`` extra).
FAST_JSON = _fast is not None
#: Parse JSON text or UTF-8 bytes as :func:`json.loads` would (see the module docstring).
loads: Loads = _fast[0] if _fast is not None else json.loads
#: Parse an answer body (bytes) as :func:`loads` would; also True when JSON
#: texts inside its strings may be parsed with :func:`loads_inner`.
loads_document: Callable[[bytes], tuple[Any, bool]] = (
    _fast[1] if _fast is not None else _stdlib_document
)
#: Parse a JSON text from inside a document :func:`loads_document` vouched
#: for, as :func:`json.loads` would (no scan for long integers: done already).
loads_inner: Loads = _fast[2] if _fast is not None else json.loads
