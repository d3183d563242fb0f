"""JSON parsing for answers: orjson when the ``fast`` extra is installed, else the stdlib.

``pip install veo-async[fast]`` brings orjson, which parses a record-info
answer about three times faster than :func:`json.loads`; parsing is the
largest single cost of a poll on the client's side. The two must never
disagree on what an answer *means*, so orjson only ever gets the first try:
whatever it refuses (NaN, lone surrogates, a BOM, UTF-16 bodies, nesting past
its limit) goes to :func:`json.loads`, which then decides exactly as it would
have alone. One thing orjson accepts but reads differently: an integer beyond
64 bits becomes a float. So :func:`loads` sends a text with a run of 19 or
more digits (where such an integer would have to be; checked in C, under a
microsecond for a record-info answer) straight to the stdlib. Otherwise both
parse to the same objects (``tests/test_fast_path.py`` checks that with
hypothesis, and the stdlib-only path).

:func:`loads_unscanned` skips that scan, for a reader that can tell the
difference itself: what it returns is what :func:`json.loads` returns, but
for an integer beyond 64 bits, which may come back as a float (of magnitude
2**63 or more). A reader that accepts no float where it reads a value (the
record-info fast path) therefore reads exactly what the stdlib would have
given it, and anything else is parsed again with :func:`loads`.

Pure: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["FAST_JSON", "loads", "loads_unscanned"]

# Every digit to "0", every other byte to " ": a long integer is a long run of "0".
_DIGITS_TO_ZERO = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
# Integers of up to 18 digits fit in 64 bits, orjson's limit.
_LONG_RUN = b"0" * 19

Loads = Callable[[str | bytes], Any]


def _with_orjson() -> tuple[Loads, Callable[[bytes], Any]] | None:
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

    # loads_unscanned is orjson's own function: no Python frame on every poll.
    return loads, fast


_fast = _with_orjson()
#: True when answers are parsed with orjson (the ``fast`` extra).
FAST_JSON = _fast is not None
#: Parse JSON text or UTF-8 bytes as :func:`json.loads` would (see the module docstring).
loads: Loads = _fast[0] if _fast is not None else json.loads
#: Parse an answer body as :func:`json.loads` would, but for integers beyond
#: 64 bits, which may come back as floats (see the module docstring); raises
#: ValueError (or RecursionError) for what :func:`loads` might still read.
loads_unscanned: Callable[[bytes], Any] = _fast[1] if _fast is not None else json.loads
