"""VeoSession: the entry point. Owns the HTTP client, the request budget and
the task handles."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import weakref
from collections.abc import AsyncGenerator, Iterable
from types import TracebackType

import aiohttp
import attrs

from . import batch as _batch
from ._http import HttpTransport
from ._limits import RequestLimiter
from ._protocol import decode_record_info
from ._version import version
from .errors import RateLimitError, TransportError, VeoError
from .models import RecordInfo
from .policy import POLICY_TIMEOUT, PollPolicy, TimeoutArg, resolve_timeout
from .task import VeoTask, validate_task_id

__all__ = ["SessionStats", "VeoSession"]

logger = logging.getLogger("veo_async")

RECORD_INFO_PATH = "/api/v1/veo/record-info"
DEFAULT_BASE_URL = "https://api.kie.ai"
_MAX_BODY = 1024 * 1024


@attrs.frozen
class SessionStats:
    """Counters of one session at one instant, for dashboards and the CLI.

    :ivar requests: HTTP requests started.
    :ivar failures: requests that ended in an error (any kind, 429 included).
    :ivar rate_limited: 429 answers absorbed.
    :ivar max_in_flight: the most requests in flight at once.
    """

    requests: int = 0
    failures: int = 0
    rate_limited: int = 0
    max_in_flight: int = 0


def _positive_number(name: str, value: object, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, not {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, not {value!r}")


class VeoSession:
    """A connection to the Kie.ai Veo API, used as an async context manager.

    ::

        async with VeoSession() as veo:
            info = await veo.task("veo_task_123")          # polls until done
            results = await veo.wait_many(ids, return_exceptions=True)

    :param api_key: the Kie API key; None reads the ``KIE_API_KEY`` variable.
    :param base_url: the service root (a :class:`~veo_async.testing.FakeKie`'s
        ``base_url`` in tests).
    :param session: an :class:`aiohttp.ClientSession` to use; it is not closed
        by :meth:`aclose`. None creates (and later closes) our own.
    :param concurrency: the most HTTP requests in flight at once, across every
        task handle of this session.
    :param rate: the most requests started per second across the session, or
        None for no limit beyond ``concurrency``.
    :param policy: the default :class:`PollPolicy` of every wait.
    :param request_timeout: seconds one HTTP request may take, end to end.
    :raises ValueError: for a missing key or an invalid setting, before any I/O.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str = DEFAULT_BASE_URL,
        session: aiohttp.ClientSession | None = None,
        concurrency: int = 64,
        rate: float | None = None,
        policy: PollPolicy | None = None,
        request_timeout: float = 30.0,
    ) -> None:
        key = os.environ.get("KIE_API_KEY") if api_key is None else api_key
        if not isinstance(key, str) or not key.strip():
            raise ValueError(
                "no API key: pass api_key=... or set the KIE_API_KEY environment variable"
            )
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be an int >= 1, not {concurrency!r}")
        _positive_number("rate", rate, optional=True)
        _positive_number("request_timeout", request_timeout)
        if policy is not None and not isinstance(policy, PollPolicy):
            raise TypeError(f"policy must be a PollPolicy, not {type(policy).__name__}")
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) URL, not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.policy = policy if policy is not None else PollPolicy()
        self.concurrency = concurrency
        self.rate = rate
        self._transport = HttpTransport(
            base_url=self.base_url,
            api_key=key.strip(),
            session=session,
            concurrency=concurrency,
            request_timeout=request_timeout,
            max_body=_MAX_BODY,
            version=version(),
        )
        self._limiter = RequestLimiter(concurrency, rate)
        self._requests = 0
        self._failures = 0
        # Handles live as long as someone (a caller or their poll loop) holds
        # them: no unbounded cache across hundreds of thousands of ids.
        self._tasks: weakref.WeakValueDictionary[str, VeoTask] = weakref.WeakValueDictionary()
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (
            f"VeoSession(base_url={self.base_url!r}, concurrency={self.concurrency}, "
            f"rate={self.rate!r}, {state})"
        )

    async def __aenter__(self) -> VeoSession:
        self._check_open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def closed(self) -> bool:
        """True after :meth:`aclose`."""
        return self._closed

    @property
    def stats(self) -> SessionStats:
        """The request counters now (a snapshot: read it again for fresh ones)."""
        return SessionStats(
            requests=self._requests,
            failures=self._failures,
            rate_limited=self._limiter.rate_limited,
            max_in_flight=self._limiter.max_in_flight,
        )

    async def aclose(self) -> None:
        """Stop every poll loop and close our HTTP session. Idempotent."""
        if self._closed:
            return
        self._closed = True
        # Cancel every loop first, then wait for all at once: at 100,000 handles
        # one wait per handle would take seconds.
        stopping = [
            loop_task
            for handle in list(self._tasks.values())
            if (loop_task := handle._cancel_loop()) is not None
        ]
        if stopping:
            await asyncio.wait(stopping)
        await self._transport.aclose()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this VeoSession is closed; open a new one")

    def _wait_settings(
        self, timeout: TimeoutArg, policy: PollPolicy | None
    ) -> tuple[float | None, PollPolicy]:
        """Validate a wait's arguments (before any I/O): its timeout and its policy."""
        if policy is not None and not isinstance(policy, PollPolicy):
            raise TypeError(f"policy must be a PollPolicy, not {type(policy).__name__}")
        chosen = policy if policy is not None else self.policy
        limit = resolve_timeout(timeout, chosen)
        self._check_open()
        return limit, chosen

    def task(self, task_id: str) -> VeoTask:
        """The handle of a task; no I/O. The same object for the same id while alive.

        :raises ValueError: for an id that is not a sane non-empty string.
        """
        self._check_open()
        validate_task_id(task_id)
        handle = self._tasks.get(task_id)
        if handle is None:
            handle = VeoTask(self, task_id)
            self._tasks[task_id] = handle
        return handle

    async def record_info(self, task_id: str) -> RecordInfo:
        """One ``GET record-info`` for ``task_id``: the task's current record.

        No retry, and no handle is updated (see :meth:`VeoTask.refresh` for that).

        :raises ValueError: for an invalid id, before any request.
        :raises VeoError: whatever the answer means (see :mod:`veo_async.errors`).
        """
        self._check_open()
        validate_task_id(task_id)
        return await self._fetch_record(task_id, due=asyncio.get_running_loop().time())

    async def _fetch_record(
        self,
        task_id: str,
        *,
        due: float,
        previous: RecordInfo | None = None,
    ) -> RecordInfo:
        """One record-info request through the session's budget (no validation).

        :param due: the loop time at which to send it (the limiter holds it
            until then, and serves the most overdue first).
        :param previous: the task's last record (see ``decode_record_info``).
        """
        self._check_open()
        granted_at = await self._limiter.acquire(due)
        self._requests += 1
        try:
            raw = await self._transport.get(RECORD_INFO_PATH, {"taskId": task_id})
            # Decoded while still holding the slot, so that a 429 pauses the
            # session before the next queued request is let through.
            record = decode_record_info(raw, task_id, previous)
        except RateLimitError as exc:
            self._failures += 1
            self._limiter.record_rate_limited(granted_at, exc.retry_after)
            logger.debug("429 for %s; session paused (Retry-After %s)", task_id, exc.retry_after)
            raise
        except TransportError as exc:
            self._failures += 1  # no answer: says nothing about the rate limit
            if self._closed:  # aclose() pulled the connection from under us
                raise RuntimeError("the VeoSession was closed during the request") from exc
            raise
        except VeoError:
            self._failures += 1
            self._limiter.record_success()  # an answer, and not a 429
            raise
        finally:
            self._limiter.release()
        self._limiter.record_success()
        return record

    async def wait_many(
        self,
        task_ids: Iterable[str],
        *,
        timeout: TimeoutArg = POLICY_TIMEOUT,
        policy: PollPolicy | None = None,
        return_exceptions: bool = False,
    ) -> list[_batch.BatchOutcome]:
        """Wait for many tasks at once; one outcome per id given, in input order.

        See :func:`veo_async.batch.wait_many`.
        """
        return await _batch.wait_many(
            self, task_ids, timeout=timeout, policy=policy, return_exceptions=return_exceptions
        )

    def as_completed(
        self,
        task_ids: Iterable[str],
        *,
        timeout: TimeoutArg = POLICY_TIMEOUT,
        policy: PollPolicy | None = None,
    ) -> AsyncGenerator[VeoTask, None]:
        """Yield each task's handle as soon as it reaches an outcome.

        See :func:`veo_async.batch.as_completed`.
        """
        return _batch.as_completed(self, task_ids, timeout=timeout, policy=policy)
