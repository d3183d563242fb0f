"""PollPolicy: when to poll a task, as a pure, seedable schedule of delays.

The schedule is ``backoff``'s exponential wait generator (``backoff.expo``):
the gap between polls starts at ``interval`` and grows by ``factor`` up to
``max_interval``, and each gap is jittered by ±``jitter`` of itself so that
thousands of tasks started together spread out instead of polling in lockstep.

The jitter draws from a ``random.Random`` owned by the schedule rather than
``backoff.full_jitter`` (which draws from the global ``random`` module), so a
seeded schedule is reproducible and a benchmark can replay hours of polling
offline in virtual time. No asyncio here: the wait loop in ``task.py`` consumes
the delays, this module only computes them.
"""

from __future__ import annotations

import contextlib
import enum
import random
from collections.abc import Iterator
from typing import Any, Literal, Protocol

import attrs
import backoff

from ._numbers import NotANumberError, check_real, is_finite, shown

__all__ = ["POLICY_TIMEOUT", "PollPolicy", "TimeoutArg", "resolve_timeout"]


_SHARED_RNG = random.Random()


class _PolicyTimeout(enum.Enum):
    POLICY_TIMEOUT = "the policy's timeout"

    def __repr__(self) -> str:
        return "POLICY_TIMEOUT"


#: The default of every ``timeout=`` argument: use the policy's ``timeout``.
POLICY_TIMEOUT = _PolicyTimeout.POLICY_TIMEOUT
#: What a ``timeout=`` argument accepts: seconds, None (no deadline) or POLICY_TIMEOUT.
TimeoutArg = float | None | Literal[_PolicyTimeout.POLICY_TIMEOUT]


def _number(
    *, minimum: float, inclusive: bool = True, optional: bool = False
) -> Any:
    """An attrs validator: a finite real number >= (or >) ``minimum``."""

    def check(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value is None and optional:
            return
        number = check_real(attribute.name, value)
        if not is_finite(number):
            raise ValueError(f"{attribute.name} must be finite, not {shown(number)}")
        if number < minimum or (not inclusive and number == minimum):
            relation = ">=" if inclusive else ">"
            raise ValueError(f"{attribute.name} must be {relation} {minimum:g}, not {number!r}")

    return check


@attrs.frozen
class PollPolicy:
    """How a wait polls one task. Immutable; derive variants with :meth:`replace`.

    The defaults follow the service's advice: generation usually takes 2-5
    minutes (extends and 4K up to 10+), the general guide says to start at
    2-3 s and back off, the Veo pages say every 30 s. So the first poll goes
    out at once (a finished task answers immediately), then gaps of 3 s
    growing x1.5 to a 30 s cap: a fast failure is seen within seconds, a
    long render costs about two requests a minute.

    :param first_poll: seconds before the first request (0: at once). Set it to
        ~60 for a task you just created to skip polls that cannot succeed.
    :param interval: the first gap between polls, in seconds (> 0).
    :param factor: growth of the gap per poll (>= 1; 1 means a fixed interval).
    :param max_interval: the cap on the gap (>= ``interval``), before the jitter:
        a capped gap may still move by ±``jitter`` of itself.
    :param jitter: each gap is drawn uniformly from ``gap * (1 ± jitter)``
        (0 <= jitter < 1; 0 disables it).
    :param timeout: the default overall deadline of a wait, in seconds, or
        None to wait forever. ``wait(timeout=...)`` overrides it.
    :param not_found_grace: for this many seconds from the first "record is
        null" / ``data: null`` answer, such answers mean "not visible yet" and
        polling goes on; afterwards the wait raises
        :class:`~veo_async.errors.RecordNotFoundError`. (Counted from the first
        such answer, not the start of the wait, so that a poll delayed by a
        busy session does not eat the window; and again from the first one
        after a record was seen: a record gone for a moment gets its own.)
    """

    first_poll: float = attrs.field(default=0.0, validator=_number(minimum=0))
    interval: float = attrs.field(default=3.0, validator=_number(minimum=0, inclusive=False))
    factor: float = attrs.field(default=1.5, validator=_number(minimum=1))
    max_interval: float = attrs.field(default=30.0, validator=_number(minimum=0, inclusive=False))
    jitter: float = attrs.field(default=0.1, validator=_number(minimum=0))
    timeout: float | None = attrs.field(
        default=900.0, validator=_number(minimum=0, inclusive=False, optional=True)
    )
    not_found_grace: float = attrs.field(default=30.0, validator=_number(minimum=0))

    def __attrs_post_init__(self) -> None:
        # Cross-field rules: attrs validators see one field at a time.
        if self.max_interval < self.interval:
            raise ValueError(
                f"max_interval ({self.max_interval:g}) must be >= interval ({self.interval:g})"
            )
        if self.jitter >= 1:
            raise ValueError(f"jitter must be < 1, not {self.jitter!r}")

    def replace(self, **changes: Any) -> PollPolicy:
        """A copy with some fields changed (validated like a new policy)."""
        return attrs.evolve(self, **changes)

    def gaps(self) -> Iterator[float]:
        """The un-jittered gaps between polls: ``interval * factor**n``, capped."""
        gen = backoff.expo(base=self.factor, factor=self.interval, max_value=self.max_interval)
        next(gen)  # backoff's generators are primed with one empty yield
        return _capped_past_overflow(gen, self.max_interval)

    def delays(self, seed: int | None = None) -> Iterator[float]:
        """The schedule: seconds to sleep before each poll, forever.

        The first value is ``first_poll`` (not jittered: 0 must mean "at once"),
        then one jittered gap per following poll.

        :param seed: makes the jitter reproducible; None draws a fresh seed.
        """
        # A Random holds ~2.5 KB of state: share one unless a seed asks for
        # a reproducible sequence (a batch of 100,000 schedules would pay 250 MB).
        rng = _SHARED_RNG if seed is None else random.Random(seed)
        cap, jitter = self.max_interval, self.jitter
        yield self.first_poll
        for raw_gap in self.gaps():
            # min(): expo's float grows forever when factor == 1, and the cap
            # must hold against rounding.
            gap = min(float(raw_gap), cap)
            yield gap * (1 + jitter * rng.uniform(-1.0, 1.0)) if jitter else gap


def _capped_past_overflow(gaps: Iterator[float], cap: float) -> Iterator[float]:
    """``gaps``, then ``cap`` for ever once ``factor ** n`` leaves the floats.

    backoff.expo works out ``factor ** n`` before capping: a policy whose
    gaps start tiny (``interval=1e-310, factor=2, max_interval=1``) reaches
    an OverflowError before its cap, in the middle of a wait. Such a gap was
    growing towards the cap anyway: the schedule goes on at the cap.
    """
    with contextlib.suppress(OverflowError):
        yield from gaps
    while True:
        yield cap


class HasTimeout(Protocol):
    """Any policy: it has a default ``timeout`` (seconds, or None for none)."""

    @property
    def timeout(self) -> float | None: ...


def resolve_timeout(timeout: TimeoutArg, policy: HasTimeout) -> float | None:
    """The effective timeout of a wait, validated.

    :raises ValueError: for a negative, infinite or non-numeric timeout.
    """
    if timeout is POLICY_TIMEOUT:
        return policy.timeout
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        # As every setting that is no number is refused (PollPolicy(timeout="30")):
        # a TypeError and a ValueError both.
        raise NotANumberError(f"timeout must be a number of seconds or None, not {timeout!r}")
    if not is_finite(timeout) or timeout < 0:
        raise ValueError(f"timeout must be a finite number >= 0, not {shown(timeout)}")
    return float(timeout)
