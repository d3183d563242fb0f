"""Virtual time for tests: an event loop whose clock jumps over idle waits.

:class:`VirtualClockLoop` is an ordinary selector event loop whose
``time()`` is the real monotonic clock plus an offset. Whenever the loop has
nothing to do but wait for a timer - no callback ready, no I/O ready, and no
socket of anyone's open that real I/O could arrive on - it adds the wait to
the offset instead of sleeping. So a ten-minute poll schedule against the
in-process simulator (:meth:`FakeKie.transport`) runs in milliseconds, with
every timer, deadline and sleep firing in the same order as in real time.

While a socket is open (a loopback simulator, a real aiohttp session), or a
job handed to a thread by ``run_in_executor`` (``asyncio.to_thread``) runs,
the loop waits in real time as usual: real I/O and threads cannot be
fast-forwarded, and a timeout must not fire before a real answer could
arrive. Threads a library starts by itself are not seen: aiosqlite's, which
a :class:`~veo_async.store.SQLiteStore` works through, among them (a
timeout around a store call can fire while the database answers; test
durable tracking on an ordinary loop).

The SDK and the simulator read only ``loop.time()``, so they follow the
virtual clock; code reading ``time.monotonic()`` directly does not.

:class:`ScaledClockLoop` is the paced variant, for demos that a person
watches: its idle waits pass ``speed`` times faster than real time (a
ten-minute wait takes ten seconds at 60), work is counted at its real
duration, and everything that reads ``loop.time()`` - the SDK's schedules,
budgets and timeouts, the simulator's task lives - is compressed alike.
"""

from __future__ import annotations

import asyncio
import math
import selectors
import time
from typing import Any

__all__ = ["ScaledClockLoop", "VirtualClockLoop", "VirtualClockPolicy"]


class _DelegatingSelector(selectors.BaseSelector):
    """A selector that hands everything to a real one; subclasses change ``select``
    and keep an ``offset``: the seconds of waiting the loop's clock has skipped."""

    def __init__(self, inner: selectors.BaseSelector) -> None:
        self._inner = inner
        self.offset = 0.0

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.modify(fileobj, events, data)

    def get_map(self) -> Any:
        return self._inner.get_map()

    def close(self) -> None:
        self._inner.close()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        return self._inner.select(timeout)


class _FastForwardSelector(_DelegatingSelector):
    """Delegates to a real selector, but turns idle timer waits into clock jumps."""

    def __init__(self, inner: selectors.BaseSelector) -> None:
        super().__init__(inner)
        self._internal: frozenset[Any] = frozenset()
        #: Jobs handed to threads by ``run_in_executor`` not yet done: their
        #: results come in real time, so the clock must not jump past them.
        self.threads_busy = 0

    def seal_internal(self) -> None:
        """The file objects registered so far are the loop's own (its self-pipe)."""
        self._internal = frozenset(self._inner.get_map().keys())

    def _real_io_possible(self) -> bool:
        return any(fd not in self._internal for fd in self._inner.get_map())

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None or timeout <= 0 or self.threads_busy or self._real_io_possible():
            return self._inner.select(timeout)
        ready = self._inner.select(0)
        if not ready:
            self.offset += timeout  # nothing can happen before the next timer: jump to it
        return ready


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """A selector event loop on a virtual clock; see the module docstring.

    ::

        loop = VirtualClockLoop()
        loop.run_until_complete(main())   # sleeps of minutes take no real time
        loop.close()
    """

    def __init__(self) -> None:
        self._fast_forward = _FastForwardSelector(selectors.DefaultSelector())
        super().__init__(self._fast_forward)
        self._fast_forward.seal_internal()

    def time(self) -> float:
        """The real monotonic clock plus every idle wait skipped so far."""
        return super().time() + self._fast_forward.offset

    # (The base signature is generic over the arguments' types, which needs
    # TypeVarTuple, Python 3.11+: the override is typed plainly.)
    def run_in_executor(  # type: ignore[override]
        self, executor: Any, func: Any, *args: Any
    ) -> asyncio.Future[Any]:
        """As the base loop's; while the job runs, waits are real (not skipped):
        a thread's result comes in real time, and a timeout around it must
        not fire on a jump. (``asyncio.to_thread`` goes through here; threads
        a library starts by itself are not seen.)"""
        future = super().run_in_executor(executor, func, *args)
        self._fast_forward.threads_busy += 1
        future.add_done_callback(self._thread_done)
        return future

    def _thread_done(self, _future: asyncio.Future[Any]) -> None:
        self._fast_forward.threads_busy -= 1

    async def shutdown_default_executor(self, *args: Any, **kwargs: Any) -> None:
        """As the base loop's; waits are real while the executor's threads are
        joined: from Python 3.12 asyncio.run joins them under a timeout of
        300 s, which a jump would reach while a thread still runs."""
        self._fast_forward.threads_busy += 1
        try:
            await super().shutdown_default_executor(*args, **kwargs)
        finally:
            self._fast_forward.threads_busy -= 1

    @property
    def skipped(self) -> float:
        """Seconds of waiting skipped so far."""
        return self._fast_forward.offset


class _ScaledWaitSelector(_DelegatingSelector):
    """Delegates to a real selector, waiting ``1 / speed`` of each timed wait."""

    def __init__(self, inner: selectors.BaseSelector, speed: float) -> None:
        super().__init__(inner)
        self._speed = speed

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None or timeout <= 0:
            return self._inner.select(timeout)
        started = time.monotonic()
        ready = self._inner.select(timeout / self._speed)
        # The real time waited (less when I/O or a signal woke us early),
        # stretched: the clock moved ``speed`` times as far.
        self.offset += (time.monotonic() - started) * (self._speed - 1)
        return ready


class ScaledClockLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose idle waits pass ``speed`` times faster.

    ::

        loop = ScaledClockLoop(60)
        loop.run_until_complete(main())   # a 10-minute sleep takes 10 s

    Unlike :class:`VirtualClockLoop` it never jumps: a person watching a
    progress display sees time flow, only faster. CPU work takes its real
    time on this clock (it is not stretched), so the slower the machine, the
    closer the run is to life-size.

    :param speed: how many times faster than real time idle waits pass (> 0).
    :raises ValueError: for a speed that is not a finite number > 0.
    """

    def __init__(self, speed: float) -> None:
        problem: Exception | None = None
        if isinstance(speed, bool) or not isinstance(speed, (int, float)):
            problem = TypeError(f"speed must be a number, not {type(speed).__name__}")
        elif not math.isfinite(speed) or speed <= 0:
            problem = ValueError(f"speed must be a finite number > 0, not {speed!r}")
        self._speed = 1.0 if problem is not None else float(speed)
        self._scaled = _ScaledWaitSelector(selectors.DefaultSelector(), self._speed)
        super().__init__(self._scaled)
        if problem is not None:
            # Built first and closed: a loop that never finished __init__
            # would complain when collected.
            self.close()
            raise problem

    def time(self) -> float:
        """The real monotonic clock plus the idle waits' stretch so far."""
        return super().time() + self._scaled.offset

    @property
    def speed(self) -> float:
        """How many times faster than real time idle waits pass."""
        return self._speed


class VirtualClockPolicy(asyncio.DefaultEventLoopPolicy):
    """An event loop policy whose new loops are :class:`VirtualClockLoop` s.

    With pytest-asyncio older than 1.5, override its ``event_loop_policy``
    fixture in a ``conftest.py`` to run every async test on virtual time::

        @pytest.fixture(scope="session")
        def event_loop_policy():
            return VirtualClockPolicy()

    From 1.5 that override is deprecated (an error where warnings are):
    return ``{"virtual_clock": VirtualClockLoop}`` from the
    ``pytest_asyncio_loop_factories`` hook instead (see the README's
    "Testing your code with the simulator").
    """

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        """A fresh :class:`VirtualClockLoop`."""
        return VirtualClockLoop()
