"""Noticing that the service cannot be reached, from the session's public counters.

A wrong ``--base-url`` or a dead network does not end a ``wait``: transport
errors are retried until ``--timeout`` (15 minutes by default), which on its
own looks exactly like slow renders. :class:`SilenceDetector` tells the two
apart from :attr:`VeoSession.stats <veo_async.VeoSession.stats>` alone: when
for a whole window no request has been answered and some have failed, the
service is unreachable (or failing everything), and :class:`ReachabilityWatch`
says so, once per run, on standard error, with the latest error.

``requests - failures`` counts the answered requests plus those in flight; it
only climbs above its previous high-water mark when an answer arrives (or
when more requests are in flight at once than ever before, which the
concurrency bounds). So "the mark has not risen for a window" means "nothing
was answered in that window", whatever the request timeout.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable

import attrs

from .. import RecordNotFoundError, SessionStats, VeoError, VeoSession
from ._errors import describe_error

__all__ = ["ReachabilityWatch", "SilenceDetector"]

# At most this often: the check reads three integers, but a huge --unreachable-after
# must not make the first check wait that long.
_MAX_TICK = 1.0


@attrs.define
class SilenceDetector:
    """Decides, tick by tick, when no request has been answered for ``window`` seconds.

    Pure: the caller passes the time and the counters.

    :ivar window: seconds without an answer (and with failures) before :meth:`observe` fires.
    """

    window: float
    _mark: int = attrs.field(default=0, init=False)
    _since: float | None = attrs.field(default=None, init=False)
    _failures_then: int = attrs.field(default=0, init=False)
    _fired: bool = attrs.field(default=False, init=False)

    def observe(self, now: float, requests: int, failures: int) -> bool:
        """True once per silence: the first tick at which, for ``window`` seconds,
        nothing was answered and at least one request failed.

        An answer ends the silence, so a later outage fires again.
        """
        answered = requests - failures
        if self._since is None or answered > self._mark:
            self._mark = max(self._mark, answered)
            self._since = now
            self._failures_then = failures
            self._fired = False
            return False
        if self._fired or now - self._since < self.window or failures <= self._failures_then:
            return False
        self._fired = True
        return True


class ReachabilityWatch:
    """While :meth:`run` runs, warn on standard error when the service is silent.

    :param veo: the open session whose :attr:`~veo_async.VeoSession.stats` are read.
    :param window: seconds without an answer before the warning.
    :param base_url: the service root, for the message.
    :param probe_id: a task id to poll once, to learn the error when the
        session's stats do not carry the latest one.
    :param on_error: called with the error the warning names (the progress
        display shows it).
    """

    def __init__(
        self,
        veo: VeoSession,
        *,
        window: float,
        base_url: str,
        probe_id: str,
        on_error: Callable[[BaseException], None],
    ) -> None:
        self._veo = veo
        self._detector = SilenceDetector(window)
        self._base_url = base_url
        self._probe_id = probe_id
        self._on_error = on_error
        self._tick = min(_MAX_TICK, window / 5)

    async def run(self) -> None:
        """Check the counters every tick until the warning is given, or until cancelled.

        One warning per run: the counters cannot tell an answer from a request
        still in flight, so a new high of requests in flight (this watch's
        own probe among them) looks like an answer and would start a second
        window; repeating the warning every window would be noise anyway.
        """
        loop = asyncio.get_running_loop()
        while True:
            stats = self._veo.stats
            if self._detector.observe(loop.time(), stats.requests, stats.failures):
                error = await self._latest_error(stats)
                # "Not visible yet" is the service answering: ids just created
                # (within the policy's grace), not an outage.
                if error is not None and not isinstance(error, RecordNotFoundError):
                    self._warn(error)
                    return
            await asyncio.sleep(self._tick)

    async def _latest_error(self, stats: SessionStats) -> BaseException | None:
        # Shown when the core provides it; else one poll tells what goes wrong.
        latest = getattr(stats, "last_error", None)
        if isinstance(latest, BaseException):
            return latest
        try:
            await self._veo.record_info(self._probe_id)
        except VeoError as exc:
            return exc
        return None  # answered after all: the silence is over, nothing to say

    def _warn(self, error: BaseException) -> None:
        self._on_error(error)
        window = self._detector.window
        print(
            f"veo-async: wait: no successful answer from {self._base_url} for {window:g} s: "
            f"every request failed (last error: {describe_error(error)})",
            file=sys.stderr,  # looked up now: the live display may have replaced it
            flush=True,
        )
