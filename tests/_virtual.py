"""Run a coroutine on the virtual clock: minutes of simulated waiting in milliseconds."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from veo_async.testing import VirtualClockLoop

T = TypeVar("T")


def run_virtual(main: Callable[[], Awaitable[T]]) -> T:
    """Run ``main()`` to completion on a fresh :class:`VirtualClockLoop`, then close it."""
    loop = VirtualClockLoop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
