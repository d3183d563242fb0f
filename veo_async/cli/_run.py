"""Running one CLI command's coroutine: a fresh event loop, Ctrl-C as cancellation.

Python's default SIGINT handling raises :class:`KeyboardInterrupt` wherever the
interpreter happens to be, which inside an event loop can land in the middle
of a callback and leave connections half closed. Instead, :func:`run` turns
SIGINT (and SIGTERM) into a plain :meth:`asyncio.Task.cancel` of the command's
task: every ``async with`` (the :class:`~veo_async.VeoSession`, the
simulator) unwinds normally, and only then does :func:`run` raise
:class:`Interrupted` for the caller to report and turn into an exit code.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["Interrupted", "run"]

T = TypeVar("T")

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(Exception):
    """The command was stopped by a signal, after it had cleaned up.

    :ivar signum: the signal received (``signal.SIGINT`` for Ctrl-C).
    """

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """The shell convention for "killed by signal N": ``128 + N`` (130 for Ctrl-C)."""
        return 128 + self.signum


def run(
    main: Coroutine[Any, Any, T],
    *,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
) -> T:
    """Run ``main`` to completion on a new event loop and return its result.

    SIGINT and SIGTERM cancel ``main`` (and so everything it awaits); once it
    has unwound, :class:`Interrupted` is raised. A signal the process was
    started ignoring stays ignored. A second signal during that
    clean-up cancels it again, so a stuck clean-up can still be cut short.
    Called from a thread other than the main one, it installs no signal
    handler (only the main thread may).

    :param loop_factory: makes the event loop (``demo``: a faster clock);
        None: asyncio's default loop.
    :raises Interrupted: when a signal stopped the run.
    """
    try:
        if loop_factory is None:
            return asyncio.run(_guarded(main))
        return _run_on(loop_factory, main)
    except KeyboardInterrupt:
        # Only where signal handlers cannot be installed (Windows): asyncio.run
        # has already cancelled the main task and waited for it to finish.
        raise Interrupted(signal.SIGINT) from None


def _run_on(
    loop_factory: Callable[[], asyncio.AbstractEventLoop], main: Coroutine[Any, Any, T]
) -> T:
    """``asyncio.run`` on a loop of our making (``asyncio.Runner`` before 3.11)."""
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(_guarded(main))
    loop = loop_factory()  # pragma: no cover - Python 3.10
    try:  # pragma: no cover
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(_guarded(main))
    finally:  # pragma: no cover
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


async def _guarded(main: Coroutine[Any, Any, T]) -> T:
    loop = asyncio.get_running_loop()
    # A task of its own, so that cancelling it never cancels this wrapper,
    # which must survive to translate the cancellation into Interrupted.
    task = loop.create_task(main, name="veo-async command")
    received: list[int] = []

    def on_signal(signum: int) -> None:
        received.append(signum)
        task.cancel()

    installed: list[int] = []
    # Signal handlers belong to the main thread (the real program always runs
    # there). Run from another thread (the tests run the CLI in process that
    # way), the command installs none and leaves the process's signals alone.
    in_main_thread = threading.current_thread() is threading.main_thread()
    for sig in _SIGNALS if in_main_thread else ():
        if signal.getsignal(sig) == signal.SIG_IGN:
            # Ignored by whoever started us (a shell's "cmd &" ignores SIGINT,
            # so that a Ctrl-C aimed at the foreground spares its background
            # jobs): keep ignoring it, as programs do.
            continue
        try:
            loop.add_signal_handler(sig, on_signal, int(sig))
        except (NotImplementedError, RuntimeError, ValueError):
            continue  # Windows: KeyboardInterrupt still works
        installed.append(int(sig))
    try:
        return await task
    except asyncio.CancelledError:
        if received and task.cancelled():
            raise Interrupted(received[0]) from None
        raise
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
