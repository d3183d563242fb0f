"""Numbers handed in by callers: one notion of a finite real, one way to show one.

Pure: no I/O.
"""

from __future__ import annotations

import math

__all__ = ["NotANumberError", "check_real", "is_finite", "shown"]


def is_finite(value: float) -> bool:
    """Whether ``value`` (an int or a float) is finite and within a float's
    range: False for NaN, the infinities and integers too large for a float
    (``math.isfinite`` raises OverflowError on those, naming no argument)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def shown(value: object) -> str:
    """``repr(value)`` for an error message, but an integer too large for a
    float by its size: its digits would fill the message (and past 4,300 of
    them Python refuses to write them)."""
    if type(value) is int and not is_finite(value):
        return f"an integer of {value.bit_length()} bits"
    return repr(value)


class NotANumberError(TypeError, ValueError):
    """A setting that must be a real number is not one (a str, None, a bool).

    Both a TypeError (its type is wrong) and a ValueError (as a number out
    of range is): ``except ValueError`` catches every refused number,
    whichever class (PollPolicy, AdaptivePolicy, VeoSession...) refused it,
    and ``except TypeError`` this kind along with the other settings of a
    wrong type (a policy that is no policy, a store that is no TaskStore).
    """


def check_real(name: str, value: object) -> float:
    """``value`` if it is an int or a float (a bool is not), as it is.

    :raises NotANumberError: naming ``name`` and the value.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise NotANumberError(f"{name} must be a number, not {value!r}")
    return value
