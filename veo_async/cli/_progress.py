"""Progress of a batch on standard error: a live line on a terminal, plain lines elsewhere.

Standard output is left to the results (JSON lines), so that
``veo-async wait ids.txt > out.jsonl`` stays machine-readable while a person
watches the progress. The display is refreshed by a task on the event loop
(rich's own refresh thread is not used), so it only ever reads counters from
the thread that writes them.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from types import TracebackType
from typing import Literal

import attrs
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from .. import AuthenticationError, SessionStats
from ._errors import describe_error
from ._outcome import Counts, Tally

__all__ = ["PROGRESS_MODES", "ProgressMode", "ProgressReporter", "Snapshot"]

ProgressMode = Literal["auto", "live", "plain", "off"]
#: The values of ``--progress``.
PROGRESS_MODES: tuple[ProgressMode, ...] = ("auto", "live", "plain", "off")

# Often enough to look live, rarely enough to cost nothing next to the polling.
_LIVE_REFRESH = 0.1


@attrs.frozen
class Snapshot(Counts):
    """The counters at one instant."""

    total: int
    succeeded: int
    failed: int
    timed_out: int
    errors: int
    requests: int
    failed_requests: int
    rate_limited: int
    elapsed: float
    #: The latest request error known (see :meth:`ProgressReporter.note_error`), one line.
    last_error: str | None = None
    #: Create requests started, and those waiting for the creation budget.
    creates: int = 0
    create_queued: int = 0
    #: The clock is a simulated one (``demo``): times are simulated seconds.
    simulated: bool = False
    #: Tasks created so far, where the command counts them (``demo``, whose
    #: total plans tasks the creation budget lets it create later): None
    #: where every task of the total exists (``wait``).
    created: int | None = None

    @property
    def not_created(self) -> int:
        """Planned tasks not created yet (waiting for the creation budget, or
        for their parent to finish): counted apart from those generating. 0
        where the command does not count its creations (``created`` None)."""
        if self.created is None:
            return 0
        return max(0, self.total - max(self.created, self.finished))

    @property
    def generating(self) -> int:
        """Tasks created and not finished yet."""
        return self.total - self.finished - self.not_created

    @property
    def creating(self) -> str | None:
        """``"creates 40 (260 queued)"``, or None when nothing was created."""
        if not (self.creates or self.create_queued):
            return None
        return f"creates {self.creates} ({self.create_queued} queued)"

    @property
    def clock(self) -> str:
        """The elapsed time: ``"3.1 s"``, or ``"312 s simulated"``."""
        if self.simulated:
            return f"{self.elapsed:.0f} s simulated"
        return f"{self.elapsed:.1f} s"

    def describe(self) -> str:
        """One plain line: ``"12/300 finished · generating 288 · ... · 3.1 s"``,
        then ``" · last error: ..."`` once a request error is known."""
        creating = "" if self.creating is None else f"{self.creating} · "
        waiting = f"not created {self.not_created} · " if self.not_created else ""
        line = (
            f"{self.finished}/{self.total} finished · generating {self.generating} · {waiting}"
            f"succeeded {self.succeeded} · failed {self.failed} · "
            f"timed out {self.timed_out} · errors {self.errors} · {creating}"
            f"requests {self.requests} ({self.failed_requests} failed) · "
            f"429s {self.rate_limited} · {self.clock}"
        )
        return line if self.last_error is None else f"{line} · last error: {self.last_error}"

    def summary(self, *, interrupted: bool) -> str:
        """The closing line: what finished, and (when interrupted) what did not."""
        counts = (
            f"{self.succeeded} succeeded, {self.failed} failed, "
            f"{self.timed_out} timed out, {counted(self.errors, 'error')}"
        )
        requests = counted(self.requests, "request")
        if interrupted:
            waiting = f", {self.not_created} not created yet" if self.not_created else ""
            return (
                f"interrupted after {self.clock}: {self.finished} of "
                f"{counted(self.total, 'task')} finished ({counts}), "
                f"{self.generating} still generating{waiting}; {requests}"
            )
        return (
            f"{counted(self.total, 'task')} in {self.clock}: {counts}; "
            f"{requests}, {self.rate_limited} rate-limited"
        )


def counted(count: int, noun: str) -> str:
    """``"1 task"``, ``"2 tasks"``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


class ProgressReporter:
    """Shows a :class:`Tally` while ``async with`` is active, then a summary line.

    :param tally: the counts to show (updated by the caller).
    :param mode: ``"live"`` (rich, redrawn in place), ``"plain"`` (a line
        every ``interval`` seconds), ``"off"``, or ``"auto"``: live when
        standard error is a terminal, else plain.
    :param interval: seconds between plain lines.
    :param label: the command, shown in front of each line.
    :param clock_speed: how many times faster than real time the event loop's
        clock runs (``demo``'s simulated clock): the display still refreshes
        in real time, and shows simulated seconds.
    :param summary: makes the closing line from the last snapshot and
        whether the run was interrupted (default :meth:`Snapshot.summary`).
    """

    def __init__(
        self,
        tally: Tally,
        *,
        mode: ProgressMode,
        interval: float,
        label: str,
        clock_speed: float = 1.0,
        summary: Callable[[Snapshot, bool], str] | None = None,
    ) -> None:
        if mode == "auto":
            mode = "live" if _isatty(sys.stderr) else "plain"
        self.mode = mode
        self._tally = tally
        self._interval = interval
        self._label = label
        self._clock_speed = clock_speed
        self._stats: Callable[[], SessionStats] | None = None
        self._started: float | None = None
        self._ended: float | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._live: Live | None = None
        self._last_error: BaseException | None = None
        self._created: Callable[[], int] | None = None  # see count_created
        #: The first 401 noted (see note_error): it stopped the session.
        self.key_refused: AuthenticationError | None = None
        self._summary = summary

    def note_error(self, error: BaseException | None) -> None:
        """Remember ``error`` as the latest request error (None is ignored).

        The session's own ``stats.last_error`` is preferred when the core
        provides it; this one comes from tasks that ended, and from the
        unreachable-service check.
        """
        if error is not None:
            self._last_error = error
        if isinstance(error, AuthenticationError) and self.key_refused is None:
            self.key_refused = error

    def attach(self, stats: Callable[[], SessionStats]) -> None:
        """Read request counters from ``stats`` (``lambda: veo.stats``) from now on."""
        self._stats = stats

    def count_created(self, created: Callable[[], int]) -> None:
        """Read how many of the total's tasks were created so far from
        ``created``: the others are shown as not created yet, not generating."""
        self._created = created

    def snapshot(self) -> Snapshot:
        """The counters now (or at the end, once the display has stopped)."""
        stats = self._stats() if self._stats is not None else SessionStats()
        tally = self._tally
        latest = getattr(stats, "last_error", None)  # when the core provides it
        if not isinstance(latest, BaseException):
            latest = self._last_error
        return Snapshot(
            total=tally.total,
            succeeded=tally.succeeded,
            failed=tally.failed,
            timed_out=tally.timed_out,
            errors=tally.errors,
            requests=stats.requests,
            failed_requests=stats.failures,
            # The creates' 429s too (a budget of their own): "429s 0" was
            # shown beside a create's RateLimitError as the last error.
            rate_limited=stats.rate_limited + stats.create_rate_limited,
            elapsed=self._elapsed(),
            last_error=None if latest is None else describe_error(latest),
            creates=stats.creates,
            create_queued=stats.create_queued,
            simulated=self._clock_speed != 1.0,
            created=None if self._created is None else self._created(),
        )

    def _elapsed(self) -> float:
        if self._started is None:
            return 0.0
        end = self._ended if self._ended is not None else asyncio.get_running_loop().time()
        return end - self._started

    async def __aenter__(self) -> ProgressReporter:
        loop = asyncio.get_running_loop()
        self._started = loop.time()
        if self.mode == "live":
            # Results printed to a terminal pass through this console (see
            # redirect_stdout): each must stay one line, uncoloured, as it
            # would be on standard output (no wrapping at the width, which
            # broke the JSON of lines longer than the terminal).
            console = Console(
                file=sys.stderr, force_terminal=True, soft_wrap=True, highlight=False
            )
            self._live = Live(
                self._render(),
                console=console,
                auto_refresh=False,
                transient=True,
                # Results printed to a terminal must pass through rich, or
                # they would be drawn over by the next refresh; results going
                # to a file or pipe must not (rich would send them to stderr).
                redirect_stdout=_isatty(sys.stdout),
                redirect_stderr=True,
            )
            self._live.start()
            self._ticker = loop.create_task(self._refresh_live(), name="veo-async progress")
        elif self.mode == "plain":
            self._ticker = loop.create_task(self._print_lines(), name="veo-async progress")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._ended = asyncio.get_running_loop().time()
        try:
            if self._ticker is not None:
                self._ticker.cancel()
                await asyncio.wait((self._ticker,))
                self._ticker = None
        finally:
            # Also when cancelled meanwhile (a second Ctrl-C): the live display
            # must give standard error (and the cursor) back.
            if self._live is not None:
                self._live.stop()
                self._live = None

    def print_summary(self, *, interrupted: bool = False) -> None:
        """Write the closing line to standard error (unless the mode is ``off``)."""
        if self.mode != "off":
            snapshot = self.snapshot()
            if self._summary is not None:
                self._emit(self._summary(snapshot, interrupted))
            else:
                self._emit(snapshot.summary(interrupted=interrupted))

    def _emit(self, text: str) -> None:
        print(f"veo-async: {self._label}: {text}", file=sys.stderr, flush=True)

    async def _print_lines(self) -> None:
        # The first line after one interval: a quick run needs only its summary.
        while True:
            await asyncio.sleep(self._interval * self._clock_speed)
            self._emit(self.snapshot().describe())

    async def _refresh_live(self) -> None:
        while True:
            await asyncio.sleep(_LIVE_REFRESH * self._clock_speed)
            if self._live is not None:
                self._live.update(self._render(), refresh=True)

    def _render(self) -> RenderableType:
        snap = self.snapshot()
        head = Table.grid(padding=(0, 1))
        head.add_row(
            Text(self._label, style="bold"),
            ProgressBar(total=max(snap.total, 1), completed=snap.finished, width=30),
            Text(f"{snap.finished}/{snap.total} finished", style="bold"),
            Text(snap.clock, style="dim"),
        )
        counts = Text("  ")
        rows: tuple[tuple[str, object, str], ...] = (
            ("generating", snap.generating, "cyan"),
            *((("not created", snap.not_created, "dim"),) if snap.not_created else ()),
            ("succeeded", snap.succeeded, "green"),
            ("failed", snap.failed, "red"),
            ("timed out", snap.timed_out, "yellow"),
            ("errors", snap.errors, "magenta"),
            *(
                (("creates", f"{snap.creates} ({snap.create_queued} queued)", "blue"),)
                if snap.creating is not None
                else ()
            ),
            ("requests", f"{snap.requests} ({snap.failed_requests} failed)", "dim"),
            ("429s", snap.rate_limited, "dim"),
        )
        for position, (label, value, style) in enumerate(rows):
            if position:
                counts.append(" · ", style="dim")
            counts.append(f"{label} {value}", style=style)
        if snap.last_error is None:
            return Group(head, counts)
        return Group(head, counts, Text(f"  last error: {snap.last_error}", style="red"))


def _isatty(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except ValueError:  # a closed stream
        return False
