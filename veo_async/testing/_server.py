"""FakeKie: the Kie.ai Veo API simulated by a real HTTP server on localhost.

Clients talk to it over real sockets, so everything between the SDK and the
wire (aiohttp's connection pool, timeouts, resets, retries) is exercised as in
production. What each task does is scripted with :class:`TaskScript`; what
goes wrong is scripted with :class:`Fault`, per task or session-wide.

Every request goes through the same steps, in this order:

1. it is counted (and recorded, unless ``record_requests=False``);
2. record-info only: the next session-wide fault from :meth:`FakeKie.inject`;
3. the proxy's User-Agent filter (HTTP 403 ``error code: 1010``);
4. the API key check (HTTP 401 envelope);
5. record-info only: the task's next scripted fault; generate and extend
   only: the next fault from :meth:`FakeKie.inject_create`;
6. the normal answer.

Tasks can also be *created* through the API (generate, extend), with
realistic generation times, credits, the account's creation limit, 1080p and
4K versions and callbacks: see ``_creation.py`` for the rules and values.

The server is built for benchmarks too (100,000 tasks, thousands of requests
a second): a request costs a few dict look-ups and one ``json.dumps``, nothing
is logged, and the per-request list can be switched off.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import struct
import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from functools import partial
from itertools import repeat
from types import TracebackType
from typing import Any, Final, Literal

import attrs
from aiohttp import web

from ._answers import (
    BLOCKED_USER_AGENT,
    MISSING_TASK_ID,
    NOT_FOUND,
    UNAUTHORIZED,
    Answer,
    envelope,
    envelope_answer,
    fault_answer,
    method_not_allowed,
    payload_answer,
)
from ._callbacks import CallbackSender, task_payload, uhd_payload
from ._creation import CreatedTask, CreationDesk, UpgradeJob, parse_body
from ._gate import is_authorized, is_blocked_user_agent
from ._inprocess import InProcessTransport
from ._recording import RecordedRequest
from ._script import Fault, TaskScript, is_done, is_visible, render_record

__all__ = [
    "CREDIT_PATH",
    "DOWNLOAD_URL_PATH",
    "DROP",
    "EXTEND_PATH",
    "GENERATE_PATH",
    "HD_PATH",
    "RECORD_INFO_PATH",
    "UHD_PATH",
    "FakeKie",
]

#: The task record endpoint.
RECORD_INFO_PATH: Final = "/api/v1/veo/record-info"
#: The account balance endpoint.
CREDIT_PATH: Final = "/api/v1/chat/credit"
#: Creates a task.
GENERATE_PATH: Final = "/api/v1/veo/generate"
#: Extends a finished task's video (a new task).
EXTEND_PATH: Final = "/api/v1/veo/extend"
#: The 1080p version of a finished video.
HD_PATH: Final = "/api/v1/veo/get-1080p-video"
#: The 4K version of a finished video.
UHD_PATH: Final = "/api/v1/veo/get-4k-video"
#: A temporary download link.
DOWNLOAD_URL_PATH: Final = "/api/v1/common/download-url"
_CREATE_PATHS: Final = frozenset({GENERATE_PATH, EXTEND_PATH})
# Faults that distort the create's own answer (the task is created first).
_AFTER_CREATING: Final = frozenset({"created_then_drop", "truncated_json", "oversized", "slow"})

_READ_METHODS: Final = frozenset({"GET", "HEAD"})

# SO_LINGER on, 0 seconds: close() then sends a TCP RST instead of a FIN,
# which is what "connection reset by peer" looks like from the client.
_LINGER_RESET: Final = struct.pack("ii", 1, 0)

#: The answer that means "drop the connection instead" (HTTP status 0).
DROP: Final = Answer(0, b"", "", 0)


def _check_fault(fault: object) -> None:
    """A Fault, or a TypeError now (a string like "reset" would fail later, mid-request)."""
    if not isinstance(fault, Fault):
        raise TypeError(f"fault must be a Fault (e.g. Fault.reset()), not {fault!r}")


def _now() -> float:
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        # No loop yet (tasks added before asyncio.run): asyncio's own loops
        # read time.monotonic(), so the task clocks stay on the same scale.
        return time.monotonic()


@attrs.define(eq=False)
class _TaskState:
    """A script plus what happened to it so far."""

    script: TaskScript
    added_at: float  # event-loop time: drives progress
    created_at: float  # wall clock: only rendered into createTime/completeTime
    next_fault: int = 0


class FakeKie:
    """A local, scriptable stand-in for ``https://api.kie.ai``.

    Use it as an async context manager, or call :meth:`start` and
    :meth:`close` (idempotent) yourself; :meth:`serve_forever` runs it as a
    standalone server. ::

        async with FakeKie(api_key="test-key") as kie:
            kie.add_task("veo_task_1", complete_after=0.3)
            # A quick fixed schedule: the default one polls a young task
            # about 80 s after its first look, and over a real socket the
            # test would wait that long.
            quick = PollPolicy(first_poll=0, interval=0.1, max_interval=0.5)
            async with VeoSession(
                api_key="test-key", base_url=kie.base_url, policy=quick
            ) as veo:
                info = await veo.task("veo_task_1")

    Served: ``GET record-info``, ``GET chat/credit``, ``POST generate``,
    ``POST extend``, ``GET get-1080p-video``, ``POST get-4k-video`` and
    ``POST common/download-url``; any other path answers HTTP 404 with a 404
    envelope. See the module docstring for the order of the checks.

    :param api_key: the key expected in ``Authorization: Bearer <key>``;
        ``None`` disables the check.
    :param host: the address to listen on; use an IP literal so that port 0
        gives one port.
    :param port: the port; 0 picks a free one (see :attr:`base_url`).
    :param unknown_task: how an unknown (or not yet visible) id answers:
        ``"record_null"`` (``{"code": 422, "msg": "record is null"}``, as the
        docs suggest) or ``"data_null"`` (``{"code": 200, "data": null}``,
        as a sibling endpoint does).
    :param require_user_agent: refuse missing and bot-like User-Agents with
        HTTP 403 ``error code: 1010`` like the Cloudflare front does.
    :param record_requests: keep a :class:`RecordedRequest` per request in
        :attr:`requests`; switch off for long benchmarks (the counters are
        kept either way).
    :param credits: the balance answered by the credit endpoint, and charged
        by creates (402 when it runs short).
    :param time_scale: multiplies every simulated duration of created tasks
        (generation, 1080p, 4K): 0.01 plays minutes in seconds.
    :param seed: seeds generation times and created ids (None: random).
    :param create_limit: create requests (generate, extend) accepted per
        ``create_period`` seconds, as Kie's account limit (20 per 10 s); None
        for no limit. Over it: a 429, nothing created.
    :param create_period: the window of ``create_limit``, in seconds.
    :param rate_limit_http_status: the HTTP status of that 429 (Kie sends
        200 with body code 429).
    :param hd_delay: seconds (scaled) from a task's end to its 1080p version.
    :param uhd_delay: seconds (scaled) from the first 4K request to the 4K version.
    :param fallback_rate: the share of the successful created tasks made by the
        fallback model (of those the failure rate leaves).
    :param failure_rate: the share of created tasks that end FAILED.
    :param callback_secret: sign callbacks with this HMAC key (None: unsigned).
    :param shutdown_timeout: seconds :meth:`close` lets aiohttp wait for
        requests still being answered; hanging ones are cancelled first anyway.
    """

    def __init__(
        self,
        *,
        api_key: str | None = "test-key",
        host: str = "127.0.0.1",
        port: int = 0,
        unknown_task: Literal["record_null", "data_null"] = "record_null",
        require_user_agent: bool = True,
        record_requests: bool = True,
        credits: float = 1234.5,
        time_scale: float = 1.0,
        seed: int | None = None,
        create_limit: int | None = 20,
        create_period: float = 10.0,
        rate_limit_http_status: int = 200,
        hd_delay: float = 90.0,
        uhd_delay: float = 420.0,
        fallback_rate: float = 0.0,
        failure_rate: float = 0.0,
        callback_secret: str | None = None,
        shutdown_timeout: float = 0.1,
    ) -> None:
        if not shutdown_timeout >= 0:
            raise ValueError(f"shutdown_timeout must be >= 0, not {shutdown_timeout!r}")
        if unknown_task not in ("record_null", "data_null"):
            raise ValueError(
                f"unknown_task must be 'record_null' or 'data_null', got {unknown_task!r}"
            )
        self._api_key = api_key
        self._host = host
        self._port = port
        self._unknown_task = unknown_task
        self._require_user_agent = require_user_agent
        self._record_requests = record_requests
        self._shutdown_timeout = shutdown_timeout
        self._desk = CreationDesk(
            credits=credits,
            time_scale=time_scale,
            seed=seed,
            create_limit=create_limit,
            create_period=create_period,
            rate_limit_http_status=rate_limit_http_status,
            hd_delay=hd_delay,
            uhd_delay=uhd_delay,
            fallback_rate=fallback_rate,
            failure_rate=failure_rate,
        )
        self._callbacks = CallbackSender(callback_secret)
        # Callbacks not sent yet, by a key of their own (fired ones are dropped).
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._timer_keys = itertools.count()
        self._create_faults: list[Fault] = []  # reversed, like _injected

        self._tasks: dict[str, _TaskState] = {}
        # The wall clock as the loop's clock moves it (see _wall): on a virtual
        # clock, createTime/completeTime must move with the tasks' progress.
        self._wall_anchor: tuple[float, float] | None = None
        self._injected: list[Fault] = []  # reversed: the next fault is at the end
        self._create_scripts: deque[dict[str, Any]] = deque()  # see script_creates
        self._requests: list[RecordedRequest] = []
        self._polls: Counter[str] = Counter()
        self._codes: Counter[int] = Counter()
        self._total = 0
        self._in_flight = 0
        self._max_in_flight = 0
        # The tasks answering requests right now, so that close() can cancel
        # hanging ones instead of waiting for them.
        self._handlers: set[asyncio.Task[Any]] = set()

        self._state: Literal["new", "started", "closed"] = "new"
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._bound_port: int | None = None
        self._stopped: asyncio.Event | None = None  # set by close(): ends serve_forever()
        self._closed: asyncio.Event | None = None  # set when close() has finished

    def __repr__(self) -> str:
        # Never the API key: reprs end up in logs and test reports.
        where = self.base_url if self._state == "started" else self._state
        return f"<FakeKie {where} tasks={len(self._tasks)} requests={self._total}>"

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Start listening; :attr:`base_url` is valid afterwards.

        :raises RuntimeError: when already started or closed.
        """
        if self._state != "new":
            raise RuntimeError(f"FakeKie cannot start: it is {self._state}")
        self._stopped = asyncio.Event()
        self._closed = asyncio.Event()
        app = web.Application()
        # One catch-all route: unknown paths must answer with Kie's JSON 404
        # envelope (and be counted), not aiohttp's text 404.
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(
            app,
            handle_signals=False,
            access_log=None,
            shutdown_timeout=self._shutdown_timeout,
            # A client that gives up (timeout, cancel) closes its connection;
            # cancelling the handler then ends a hanging "slow" fault at once
            # instead of letting it pile up as in-flight work.
            handler_cancellation=True,
        )
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner, self._site = runner, site
        self._bound_port = int(runner.addresses[0][1])
        self._state = "started"

    async def close(self) -> None:
        """Stop the server; requests still hanging are cancelled, their connections dropped.

        Idempotent; a second caller waits for the first one's close to finish.
        Afterwards no task, socket or timer of the simulator is left (pending
        callbacks are dropped). Call it also for a simulator used only in
        process that had callbacks to send.
        """
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        await self._callbacks.aclose()
        if self._state == "closed":
            if self._closed is not None:
                await self._closed.wait()
            return
        was_started = self._state == "started"
        self._state = "closed"
        if self._stopped is not None:
            self._stopped.set()
        if not was_started:
            return
        assert self._runner is not None
        assert self._site is not None
        assert self._closed is not None
        try:
            # Stop listening first, so that no request starts while the
            # hanging ones are being cancelled.
            await self._site.stop()
            pending = [task for task in self._handlers if not task.done()]
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
            await self._runner.cleanup()
        finally:
            self._runner = self._site = None
            self._closed.set()

    async def serve_forever(self) -> None:
        """Start (unless started) and serve until :meth:`close` is called or this is cancelled.

        Meant for a standalone simulator (``veo-async simulate --port P``);
        the server is closed when this returns, either way.
        """
        if self._state == "new":
            await self.start()
        assert self._stopped is not None
        try:
            await self._stopped.wait()
        finally:
            await self.close()

    async def __aenter__(self) -> FakeKie:
        """Start the server and return it."""
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the server."""
        await self.close()

    @property
    def base_url(self) -> str:
        """The root URL clients use, ``"http://127.0.0.1:54321"``, no trailing slash.

        :raises RuntimeError: before :meth:`start` (the port may not be known).
        """
        if self._bound_port is None:
            raise RuntimeError("FakeKie is not started: base_url is unknown")
        host = self._host
        # A wildcard address cannot be connected to; its loopback twin can.
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self._bound_port}"

    @property
    def api_key(self) -> str | None:
        """The expected API key, or ``None`` when the check is off."""
        return self._api_key

    # -- scripting -----------------------------------------------------------------

    def add_task(self, task: str | TaskScript, /, **fields: Any) -> TaskScript:
        """Add (or replace) a task; its clock starts now.

        ``add_task("t1", complete_after=0.3)`` builds the script from keyword
        fields; ``add_task(TaskScript(...))`` takes it as is (keyword fields
        then override its fields). Re-adding an id replaces its script and
        restarts its clock and its faults.

        :returns: the script in use.
        """
        script = self._script(task, fields)
        added_at = _now()
        self._tasks[script.task_id] = _TaskState(script, added_at, self._wall(added_at))
        return script

    def add_tasks(self, tasks: Iterable[str | TaskScript]) -> list[TaskScript]:
        """Add many tasks at once, all with the same start instant.

        :returns: the scripts in use, in input order.
        """
        scripts = [self._script(task, {}) for task in tasks]
        added_at = _now()
        created_at = self._wall(added_at)
        for script in scripts:
            self._tasks[script.task_id] = _TaskState(script, added_at, created_at)
        return scripts

    def _wall(self, loop_time: float) -> float:
        """The wall-clock instant (epoch seconds) of a loop time.

        Anchored once to ``time.time()``, then moved by the loop's clock, so
        the times a record shows agree with when the simulator let the task
        finish, on a virtual clock as in real time.
        """
        if self._wall_anchor is None:
            self._wall_anchor = (time.time(), loop_time)
        wall, anchor = self._wall_anchor
        return wall + (loop_time - anchor)

    @staticmethod
    def _script(task: str | TaskScript, fields: dict[str, Any]) -> TaskScript:
        if isinstance(task, TaskScript):
            return attrs.evolve(task, **fields) if fields else task
        return TaskScript(task, **fields)

    def inject(self, fault: Fault, count: int = 1) -> None:
        """Give *fault* to the next *count* record-info requests, whatever their task.

        Injected faults come before every other check (the User-Agent and key
        checks included) and do not use up the tasks' own scripted faults.
        Successive calls queue up: ``inject(a, 2); inject(b)`` gives a, a, b.
        """
        _check_fault(fault)
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count!r}")
        # Kept reversed so that taking the next fault is a cheap list.pop().
        self._injected[:0] = repeat(fault, count)

    def script_creates(self, *fields: Mapping[str, Any]) -> None:
        """Script the tasks the next creates make (generate and extend), in
        order: each mapping holds :class:`TaskScript` fields the created task
        follows instead of the simulator's own draw (``final_status``,
        ``complete_after``, ``faults``, ``error_code``, ``error_message``,
        ``visible_after``, ``quirks``...); its id, request and kind stay the
        simulator's. Successive calls queue up; ``{}`` leaves a create as drawn.

        ``fake_kie.script_creates({"final_status": 2}, {"complete_after": 600})``:
        the next create's task fails, the one after renders for ten minutes:
        the code under test creates its tasks, and a test still decides their
        fate (a retry after a failure, a wait that times out).

        :raises TypeError: (or ValueError) for a field TaskScript does not take
            or a bad value, before any create; ``task_id`` and ``params`` are
            the simulator's.
        """
        checked = []
        for one in fields:
            if not isinstance(one, Mapping):
                raise TypeError(f"each script must be a mapping of TaskScript fields, not {one!r}")
            owned = {"task_id", "params"} & set(one)
            if owned:
                raise ValueError(f"{', '.join(sorted(owned))}: the simulator's, not scriptable")
            attrs.evolve(TaskScript("scripted"), **one)  # refused now, not at the create
            checked.append(dict(one))
        self._create_scripts.extend(checked)

    def clear_injected(self) -> int:
        """Drop the session-wide faults not yet given out ("the outage ends").

        :returns: how many were dropped.
        """
        dropped = len(self._injected)
        self._injected.clear()
        return dropped

    def inject_create(self, fault: Fault, count: int = 1) -> None:
        """Give *fault* to the next *count* create requests (generate, extend).

        They apply after the User-Agent and key checks. ``created_then_drop``
        creates and charges, then drops the connection; ``truncated_json``
        and ``oversized`` create, then distort the answer; ``slow`` creates
        and charges, then answers late (a client that times out first has a
        task it does not know of); every other fault answers in place of
        creating.
        """
        _check_fault(fault)
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count!r}")
        self._create_faults[:0] = repeat(fault, count)

    @property
    def credits(self) -> float:
        """The balance the credit endpoint answers; creates charge it; settable."""
        return self._desk.credits

    @credits.setter
    def credits(self, value: float) -> None:
        self._desk.credits = value

    @property
    def created(self) -> int:
        """How many tasks were created through the API (generate and extend)."""
        return len(self._desk.created)

    @property
    def created_ids(self) -> list[str]:
        """The ids of the tasks created through the API, in creation order."""
        return list(self._desk.created)

    @property
    def charged(self) -> float:
        """The credits charged so far (generations, extends, 4K versions)."""
        return self._desk.charged

    @property
    def callbacks_delivered(self) -> int:
        """Callbacks delivered (answered 2xx)."""
        return self._callbacks.delivered

    def completed_at(self, task_id: str) -> float:
        """Return the event-loop time at which the task's record turns terminal.

        That is when it was added plus ``complete_after``: compare it with the
        time a client noticed, to measure polling lag.

        :raises KeyError: for an id never added.
        """
        state = self._tasks[task_id]
        return state.added_at + state.script.complete_after

    # -- observation ---------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request seen since the last :meth:`reset_counters`, in arrival order.

        The live list, not a copy; always empty with ``record_requests=False``.
        """
        return self._requests

    def polls(self, task_id: str) -> int:
        """Return how many record-info requests named *task_id* (refused and faulted included)."""
        return self._polls[task_id]

    @property
    def total_requests(self) -> int:
        """How many requests arrived (any path, any outcome)."""
        return self._total

    @property
    def in_flight(self) -> int:
        """How many requests are being answered right now."""
        return self._in_flight

    @property
    def max_in_flight(self) -> int:
        """The highest :attr:`in_flight` seen since the last :meth:`reset_counters`."""
        return self._max_in_flight

    def count_status(self, code: int) -> int:
        """Return how many answers had the effective *code*.

        The effective code of an answer is its envelope ``code`` when the body
        is a JSON envelope, else its HTTP status. So ``count_status(429)``
        counts both HTTP 429 and HTTP 200 ``{"code": 429}``; ``count_status(200)``
        counts the successful answers (plus truncated and empty bodies, sent
        with HTTP 200); ``count_status(0)`` counts dropped connections.
        """
        return self._codes[code]

    def reset_counters(self) -> None:
        """Forget the requests and zero the request counters (``requests``,
        ``total_requests``, ``polls``, ``count_status``, ``max_in_flight``).
        Tasks and faults are kept, and so is the account: ``credits``,
        ``charged``, ``created`` and ``created_ids`` follow the tasks."""
        self._requests = []
        self._polls.clear()
        self._codes.clear()
        self._total = 0
        self._max_in_flight = self._in_flight

    # -- serving -------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        """The aiohttp side: the request in, :meth:`serve`'s answer out."""
        # aiohttp's handler task, for close() to cancel should it hang. (Only
        # here: in process, the task serving is the client's own.)
        handler = asyncio.current_task()
        if handler is not None:
            self._handlers.add(handler)
        try:
            answer = await self.serve(
                request.method, request.path, dict(request.query), request.headers,
                await request.read() if request.can_read_body else b"",
            )
        finally:
            if handler is not None:
                self._handlers.discard(handler)
        if answer is DROP:
            _drop_connection(request)
            # Never sent (the transport is gone); aiohttp only notes that
            # the client "disconnected", at debug level.
            return web.Response()
        return web.Response(
            status=answer.status,
            body=answer.body,
            headers={"Content-Type": answer.content_type, **answer.headers},
        )

    async def serve(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes = b"",
    ) -> Answer:
        """Answer one request, whichever way it came (socket or in process).

        :returns: the answer, or :data:`DROP` for "drop the connection".
        """
        task_id = (query.get("taskId") or None) if path == RECORD_INFO_PATH else None
        record: RecordedRequest | None = None
        loop = asyncio.get_running_loop()
        if self._record_requests:
            record = RecordedRequest(
                method=method,
                path=path,
                query=dict(query),
                headers=dict(headers),
                task_id=task_id,
                started=loop.time(),
                json=parse_body(body) if body else None,
            )
            self._requests.append(record)
        self._total += 1
        if task_id is not None:
            self._polls[task_id] += 1
        self._in_flight += 1
        if self._in_flight > self._max_in_flight:
            self._max_in_flight = self._in_flight

        answer = DROP  # what counts if the handler is cancelled
        try:
            if self._state != "closed":  # closed: refused, as a closed socket would
                answer = await self._answer(method, headers, path, task_id, record, query, body)
            return answer
        finally:
            self._in_flight -= 1
            self._codes[answer.code] += 1
            if record is not None:
                record.status = answer.status
                record.code = answer.code
                record.finished = loop.time()

    @property
    def started(self) -> bool:
        """True while it listens on a socket (between :meth:`start` and :meth:`close`)."""
        return self._state == "started"

    def transport(self, *, request_timeout: float = 30.0) -> InProcessTransport:
        """A :class:`~veo_async.Transport` served by this simulator in process.

        No socket: ``VeoSession(api_key, transport=kie.transport())`` talks to
        this simulator through plain calls, so a test can run on a virtual
        clock (see :class:`~veo_async.testing.VirtualClockPolicy`). The
        simulator need not be started.

        :param request_timeout: seconds one request may take (a ``slow`` fault).
        """
        return InProcessTransport(self, request_timeout=request_timeout)

    async def _answer(
        self,
        method: str,
        headers: Mapping[str, str],
        path: str,
        task_id: str | None,
        record: RecordedRequest | None,
        query: Mapping[str, str],
        body: bytes,
    ) -> Answer:
        if path == RECORD_INFO_PATH and self._injected:
            answer = await self._apply(self._injected.pop(), task_id, record)
            if answer is not None:
                return answer
        if self._require_user_agent and is_blocked_user_agent(headers.get("User-Agent")):
            return BLOCKED_USER_AGENT
        if self._api_key is not None and not is_authorized(
            headers.get("Authorization"), self._api_key
        ):
            return UNAUTHORIZED
        if path == RECORD_INFO_PATH:
            if method not in _READ_METHODS:
                return method_not_allowed(method)
            if task_id is None:
                return MISSING_TASK_ID
            state = self._tasks.get(task_id)
            if state is not None and state.next_fault < len(state.script.faults):
                # Taken before any await, so concurrent polls of one task get
                # its faults in order.
                fault = state.script.faults[state.next_fault]
                state.next_fault += 1
                answer = await self._apply(fault, task_id, record)
                if answer is not None:
                    return answer
            return payload_answer(self._record_envelope(task_id))
        if path == CREDIT_PATH:
            if method not in _READ_METHODS:
                return method_not_allowed(method)
            return envelope_answer(200, "success", self.credits)
        return await self._creating(method, path, query, body, record)

    # -- the creating endpoints ----------------------------------------------------

    async def _creating(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        body: bytes,
        record: RecordedRequest | None,
    ) -> Answer:
        now = asyncio.get_running_loop().time()
        if path in _CREATE_PATHS:
            if method != "POST":
                return method_not_allowed(method)
            return await self._create(path, parse_body(body), record)
        if path == HD_PATH:
            if method not in _READ_METHODS:
                return method_not_allowed(method)
            return self._desk.hd(query, now, self._lookup)
        if path == UHD_PATH:
            if method != "POST":
                return method_not_allowed(method)
            answer, job = self._desk.uhd(parse_body(body), now, self._lookup)
            if job is not None and job.callback_url is not None:
                self._schedule_uhd_callback(parse_body(body)["taskId"], job)
            return answer
        if path == DOWNLOAD_URL_PATH:
            if method != "POST":
                return method_not_allowed(method)
            return self._desk.download_link(parse_body(body), self._wall(_now()))
        return NOT_FOUND

    async def _create(self, path: str, body: Any, record: RecordedRequest | None) -> Answer:
        fault = self._create_faults.pop() if self._create_faults else None
        if fault is not None:
            if record is not None:
                record.fault = fault.kind
            if fault.kind == "reset":
                return DROP
            if fault.kind not in _AFTER_CREATING:
                return fault_answer(fault, partial(envelope, 200, "success"))
        loop = asyncio.get_running_loop()
        now = loop.time()
        if path == GENERATE_PATH:
            answer, created = self._desk.generate(body, now)
        else:
            answer, created = self._desk.extend(body, now, self._lookup)
        if created is not None:
            self._add_created(created, now)
        if fault is not None and fault.kind == "slow":
            # Created, then answered late: a client that gives up first has
            # a task it does not know of (the case SubmitUncertainError is for).
            await asyncio.sleep(fault.delay)
            fault = None
        if fault is None:
            return answer
        if fault.kind == "created_then_drop":
            return DROP
        return fault_answer(fault, partial(_json_of, answer))

    def _add_created(self, created: CreatedTask, now: float) -> None:
        if self._create_scripts:  # (see script_creates)
            created.script = attrs.evolve(created.script, **self._create_scripts.popleft())
        script = created.script
        self._tasks[script.task_id] = _TaskState(script, now, self._wall(now))
        if created.callback_url is not None:
            self._call_back_at(
                now + script.complete_after, created.callback_url, task_payload(script)
            )

    def _schedule_uhd_callback(self, task_id: str, job: UpgradeJob) -> None:
        assert job.callback_url is not None
        self._call_back_at(job.ready_at, job.callback_url, uhd_payload(task_id, job.urls))

    def _call_back_at(self, when: float, url: str, payload: dict[str, Any]) -> None:
        """POST ``payload`` to ``url`` at loop time ``when``; the timer is kept
        until then (for close() to cancel), not after."""
        key = next(self._timer_keys)
        self._timers[key] = asyncio.get_running_loop().call_at(
            when, self._call_back, key, url, payload
        )

    def _call_back(self, key: int, url: str, payload: dict[str, Any]) -> None:
        del self._timers[key]
        self._callbacks.send(url, payload)

    def _lookup(self, task_id: str) -> tuple[TaskScript, float, float] | None:
        state = self._tasks.get(task_id)
        if state is None:
            return None
        return state.script, state.added_at, state.created_at

    async def _apply(
        self, fault: Fault, task_id: str | None, record: RecordedRequest | None
    ) -> Answer | None:
        """Return the fault's answer, or ``None`` to go on answering normally."""
        if record is not None:
            record.fault = fault.kind
        if fault.kind == "slow":
            await asyncio.sleep(fault.delay)
            return None
        if fault.kind in ("reset", "created_then_drop"):  # (nothing to create on a poll)
            return DROP
        return fault_answer(fault, partial(self._record_envelope, task_id))

    def _record_envelope(self, task_id: str | None) -> dict[str, Any]:
        """Return the envelope record-info answers for *task_id* right now, faults aside."""
        if task_id is None:
            return envelope(400, "taskId is required")
        state = self._tasks.get(task_id)
        if state is not None:
            elapsed = asyncio.get_running_loop().time() - state.added_at
            script = state.script
            if is_visible(script, elapsed):
                data = render_record(
                    script, created_at=state.created_at, done=is_done(script, elapsed)
                )
                return envelope(200, "success", data)
        if self._unknown_task == "record_null":
            return envelope(422, "record is null")
        return envelope(200, "success")


def _json_of(answer: Answer) -> dict[str, Any]:
    parsed: dict[str, Any] = parse_body(answer.body)
    return parsed


def _drop_connection(request: web.Request) -> None:
    transport = request.transport
    if transport is None:  # the client is already gone
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # Best effort: without it the client sees a FIN instead of a RST,
        # which it reports as a disconnect all the same.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    transport.abort()
