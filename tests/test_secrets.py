"""The API key never leaks: not in reprs, error messages, cause chains, logs or our frames."""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import logging
import sys
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from types import FunctionType, ModuleType, TracebackType
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from veo_async import (
    AuthenticationError,
    ContentPolicyError,
    PollPolicy,
    RateLimitError,
    RecordNotFoundError,
    ResponseError,
    ServerError,
    ServerErrorPage,
    ServiceUnavailableError,
    SessionClosedError,
    SubmitUncertainError,
    TaskFailedError,
    TransportError,
    VeoError,
    VeoSession,
    WaitTimeoutError,
)
from veo_async._http import ApiKey, HttpRequest, _safe
from veo_async._protocol import RawResponse
from veo_async.testing import FakeKie, Fault

from .conftest import eventually
from .test_hardening import serving

SECRET = "sk-SECRET-abc123"
#: Any distinctive piece of the key is a leak too (a truncated or masked-badly key).
FRAGMENTS = (SECRET, "SECRET-abc", "abc123")

QUICK = PollPolicy(
    first_poll=0.0,
    interval=0.02,
    factor=1.5,
    max_interval=0.05,
    jitter=0.1,
    timeout=5.0,
    not_found_grace=0.1,
)

#: Real HTTP on 127.0.0.1: this module pins the wire path.
pytestmark = pytest.mark.loopback


def assert_clean(text: str, what: str = "") -> None:
    """Fail if ``text`` contains the key or a distinctive piece of it."""
    for fragment in FRAGMENTS:
        assert fragment not in text, f"key fragment {fragment!r} leaked in {what}: {text[:300]}"


def chain(error: BaseException) -> list[BaseException]:
    """The error and everything it was raised from or during, without loops."""
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and all(current is not e for e in seen):
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def our_frames(error: BaseException) -> list[Any]:
    """The frames of veo_async's own code in the tracebacks of the error chain."""
    frames = []
    for link in chain(error):
        tb: TracebackType | None = link.__traceback__
        while tb is not None:
            if str(tb.tb_frame.f_globals.get("__name__", "")).startswith("veo_async"):
                frames.append(tb.tb_frame)
            tb = tb.tb_next
    return frames


def assert_error_clean(error: BaseException) -> None:
    """Check the error's str/repr/args, its whole chain and the formatted traceback."""
    for link in chain(error):
        name = type(link).__name__
        assert_clean(str(link), f"str({name})")
        assert_clean(repr(link), f"repr({name})")
        assert_clean(repr(link.args), f"{name}.args")
        for attribute in ("message", "excerpt", "record"):
            if hasattr(link, attribute):
                assert_clean(repr(getattr(link, attribute)), f"{name}.{attribute}")
    assert_clean("".join(traceback.format_exception(error)), "the formatted traceback")


Scenario = Callable[[], Awaitable[object]]


@pytest.fixture
async def secret_kie() -> AsyncIterator[FakeKie]:
    """A FakeKie that expects the secret key."""
    async with FakeKie(api_key=SECRET) as kie:
        yield kie


async def collect_errors(scenarios: dict[str, Scenario]) -> dict[str, BaseException]:
    """Run each scenario; every one must raise. Returns the errors by scenario name."""
    errors: dict[str, BaseException] = {}
    for name, scenario in scenarios.items():
        try:
            await scenario()
        except Exception as exc:
            errors[name] = exc
        else:  # pragma: no cover - a broken scenario
            pytest.fail(f"scenario {name} raised nothing")
    return errors


async def run_faulty_workload(kie: FakeKie, wrong_kie: FakeKie) -> dict[str, BaseException]:
    """A full run touching every error class; returns what each step raised."""
    kie.add_task("t_ok", complete_after=0.05, faults=[Fault.server_error(), Fault.record_null()])
    kie.add_task("t_failed", final_status=2)
    kie.add_task("t_hang", complete_after=600)
    for name, fault in {
        "t_500": Fault.server_error(),
        "t_html": Fault.bad_gateway_html(),
        "t_429": Fault.http_429(retry_after=0.01),
        "t_455": Fault.maintenance(),
        "t_400": Fault.body_code(400, "Content policy"),
        "t_trunc": Fault.truncated_json(),
        "t_empty": Fault.empty_body(),
        "t_big": Fault.oversized(),
        "t_slow": Fault.slow(5),
    }.items():
        kie.add_task(name, faults=[fault])
    wrong_kie.add_task("t_ok")

    veo = VeoSession(SECRET, base_url=kie.base_url, policy=QUICK, request_timeout=1.0)
    impatient = VeoSession(SECRET, base_url=kie.base_url, policy=QUICK, request_timeout=0.2)
    # The key is wrong for this server: the 401 is where an echo would happen.
    refused = VeoSession(SECRET, base_url=wrong_kie.base_url, policy=QUICK)
    try:
        assert (await veo.task("t_ok").wait()).status.name == "SUCCESS"

        async def reset() -> object:
            kie.inject(Fault.reset(), 2)
            return await veo.record_info("t_ok")

        async def hang() -> object:
            # Last in the run: the unused injected faults can hit nothing else.
            kie.inject(Fault.slow(60), 20)
            return await veo.task("t_hang").wait(timeout=0.3)

        errors = await collect_errors(
            {
                "auth": lambda: refused.record_info("t_ok"),
                "auth_wait": lambda: refused.task("t_ok").wait(),
                "server_500": lambda: veo.record_info("t_500"),
                "server_html": lambda: veo.record_info("t_html"),
                "rate_limit": lambda: veo.record_info("t_429"),
                "maintenance": lambda: veo.record_info("t_455"),
                "content_policy": lambda: veo.record_info("t_400"),
                "truncated": lambda: veo.record_info("t_trunc"),
                "empty": lambda: veo.record_info("t_empty"),
                "oversized": lambda: veo.record_info("t_big"),
                "not_found": lambda: veo.task("t_nobody").wait(),
                "task_failed": lambda: veo.task("t_failed").wait(),
                "reset": reset,
                "request_timeout": lambda: impatient.record_info("t_slow"),
                "wait_timeout": hang,
            }
        )
    finally:
        for session in (veo, impatient, refused):
            await session.aclose()
    errors.update(await collect_errors({"closed": lambda: veo.record_info("t_ok")}))
    return errors


EXPECTED = {
    "auth": AuthenticationError,
    "auth_wait": AuthenticationError,
    "server_500": ServerError,
    "server_html": ServerErrorPage,
    "rate_limit": RateLimitError,
    "maintenance": ServiceUnavailableError,
    "content_policy": ContentPolicyError,
    "truncated": ResponseError,
    "empty": ResponseError,
    "oversized": ResponseError,
    "not_found": RecordNotFoundError,
    "task_failed": TaskFailedError,
    "reset": TransportError,
    "request_timeout": TransportError,
    "wait_timeout": WaitTimeoutError,
    "closed": SessionClosedError,
}


async def test_key_not_in_session_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    """repr/str of the session, its stats, transport and handles never show the key."""
    for session in (
        VeoSession(SECRET, base_url="http://127.0.0.1:9"),
        VeoSession(f"  {SECRET}  ", base_url="http://127.0.0.1:9"),
    ):
        texts = [repr(session), str(session), repr(session.stats), repr(session.task("t1"))]
        texts += [repr(vars(session))]
        for text in texts:
            assert_clean(text, "a session repr")
        await session.aclose()
        assert_clean(repr(session), "a closed session's repr")
    monkeypatch.setenv("KIE_API_KEY", SECRET)
    from_env = VeoSession(base_url="http://127.0.0.1:9")
    assert_clean(repr(from_env), "the repr of a session keyed from the environment")
    await from_env.aclose()


async def test_key_not_in_errors(secret_kie: FakeKie, fake_kie: FakeKie) -> None:
    """No error of a faulty run shows the key in str, repr, args or its cause chain."""
    errors = await run_faulty_workload(secret_kie, fake_kie)
    assert {name: type(error) for name, error in errors.items()} == EXPECTED
    for error in errors.values():
        assert_error_clean(error)
    # The key was really sent: the test would see a leak if there were one.
    sent = [r.headers.get("Authorization", "") for r in secret_kie.requests]
    assert f"Bearer {SECRET}" in sent


async def test_key_not_in_logs(
    secret_kie: FakeKie, fake_kie: FakeKie, caplog: pytest.LogCaptureFixture
) -> None:
    """DEBUG logs of every logger during a faulty run never contain the key."""
    caplog.set_level(logging.DEBUG)
    await run_faulty_workload(secret_kie, fake_kie)
    assert any(r.name.startswith("veo_async") for r in caplog.records)
    assert_clean(caplog.text, "the captured logs")
    for record in caplog.records:
        assert_clean(record.getMessage(), f"log record of {record.name}")
        assert_clean(repr(record.args), f"log args of {record.name}")
        if record.exc_info and record.exc_info[1] is not None:
            assert_error_clean(record.exc_info[1])


async def test_key_not_in_our_traceback_locals(secret_kie: FakeKie, fake_kie: FakeKie) -> None:
    """Error reporters that capture locals (Sentry, rich) find no key in veo_async's frames."""
    errors = await run_faulty_workload(secret_kie, fake_kie)
    for name, error in errors.items():
        for frame in our_frames(error):
            for variable, value in frame.f_locals.items():
                assert_clean(repr(value), f"{name}: local {variable!r} of {frame.f_code.co_name}")
        assert_no_local_reaches_the_key(error)


async def test_key_not_in_errors_with_raising_injected_session(fake_kie: FakeKie) -> None:
    """An injected session with raise_for_status=True gives no aiohttp error holding the key."""
    fake_kie.add_task("t1")
    async with (
        aiohttp.ClientSession(raise_for_status=True) as http,
        VeoSession(SECRET, base_url=fake_kie.base_url, session=http) as veo,
    ):
        with pytest.raises(AuthenticationError) as caught:
            await veo.record_info("t1")
    assert_error_clean(caught.value)


async def test_key_not_in_cancelled_wait(secret_kie: FakeKie) -> None:
    """A wait cancelled mid-request leaves no key in the CancelledError's chain."""
    secret_kie.add_task("t1", complete_after=600, faults=[Fault.slow(60)])
    async with VeoSession(SECRET, base_url=secret_kie.base_url, policy=QUICK) as veo:
        waiter = asyncio.create_task(veo.task("t1").wait())
        assert await eventually(lambda: secret_kie.in_flight == 1)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError) as caught:
            await waiter
    assert_error_clean(caught.value)


def assert_no_frame_holds_the_key(error: BaseException) -> None:
    """Every frame in the tracebacks of the error's chain, aiohttp's too: a
    reporter that captures locals walks them all."""
    for link in chain(error):
        tb: TracebackType | None = link.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            for variable, value in frame.f_locals.items():
                where = f"local {variable!r} of {frame.f_code.co_name} ({type(link).__name__})"
                assert_clean(repr(value), where)
            tb = tb.tb_next


def assert_no_local_reaches_the_key(error: BaseException, depth: int = 5) -> None:
    """No local of veo_async's frames in the error's chain reaches the key
    (``depth`` references deep), not only through its repr: a reporter that
    serialises locals, or a debugger, finds what a repr does not show (an
    aiohttp response's ``request_info.headers``). Not followed: the key's
    own holder, whose repr hides it; the simulator, which knows the key; and
    modules, classes and functions (the globals of the whole process, this
    test's constant included)."""
    skip = (ApiKey, FakeKie, ModuleType, type, FunctionType)
    # A module's globals reached through a frame (gc shows a frame's on
    # Python 3.10): the whole process's again, this test's constant included.
    module_globals = {id(vars(module)) for module in list(sys.modules.values()) if module}
    for frame in our_frames(error):
        for variable, value in frame.f_locals.items():
            seen: set[int] = set(module_globals)
            layer: list[object] = [value]
            for _ in range(depth):
                following: list[object] = []
                for item in layer:
                    if id(item) in seen or isinstance(item, skip):
                        continue
                    seen.add(id(item))
                    if isinstance(item, str | bytes):
                        text = item if isinstance(item, str) else item.decode("latin-1")
                        where = f"what local {variable!r} of {frame.f_code.co_name} holds"
                        assert_clean(text, where)
                        continue
                    following.extend(gc.get_referents(item))
                    if isinstance(item, Mapping):  # a C mapping may hide its items from gc
                        following.extend(itertools.chain.from_iterable(item.items()))
                layer = following


async def _cut_mid_body(request: web.Request) -> web.StreamResponse:
    """HTTP 200 whose body breaks off: a Content-Length, then part of it and a reset."""
    body = json.dumps({"code": 200, "msg": "success", "data": {"taskId": "t1"}}).encode()
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.content_length = len(body)
    await response.prepare(request)
    await response.write(body[:10])
    assert request.transport is not None
    request.transport.abort()
    return response


@pytest.mark.parametrize("call", ["read", "create"])
async def test_an_answer_cut_mid_body_leaves_no_frame_reaching_the_key(call: str) -> None:
    """A body that breaks off (TruncatedResponseError; a create's
    SubmitUncertainError names it and chains nothing): no local of any frame
    of the error's chain reaches the key, not even through aiohttp's
    response, whose request_info holds the request's headers."""
    async with (
        serving(_cut_mid_body) as url,
        VeoSession(SECRET, base_url=url, policy=QUICK) as veo,
    ):
        expected = ResponseError if call == "read" else SubmitUncertainError
        with pytest.raises(expected) as caught:
            await (veo.record_info("t1") if call == "read" else veo.generate("a cat"))
    assert_error_clean(caught.value)
    assert_no_local_reaches_the_key(caught.value)
    if call == "create":
        # Made of the read's error, but raised after its except block: not
        # even a suppressed context (and that error's frames) comes with it.
        assert "TruncatedResponseError" in str(caught.value)
        assert caught.value.__cause__ is None
        assert caught.value.__suppress_context__
        # (On 3.10 the test runner's pure-Python Task resumes coroutines
        # inside an except block: whatever that handles is every error's
        # context there. Not so with asyncio's own Task.)
        assert caught.value.__context__ is None or sys.version_info < (3, 11)


async def _ended_mid_request(secret_kie: FakeKie, how: str) -> BaseException:
    """What a request in flight (60 s from its answer) ends with when ``how``
    ends it: the session's close, or the caller's own timeout."""
    secret_kie.add_task("t1", complete_after=600, faults=[Fault.slow(60)])
    secret_kie.inject_create(Fault.slow(60))
    veo = VeoSession(SECRET, base_url=secret_kie.base_url, policy=QUICK)
    try:
        call = veo.generate("a cat") if how == "close a create" else veo.record_info("t1")
        if how == "caller's timeout":
            call = asyncio.wait_for(call, 0.2)
        request = asyncio.ensure_future(call)
        assert await eventually(lambda: secret_kie.in_flight == 1)
        if how != "caller's timeout":
            await veo.aclose()
        ended = (SessionClosedError, SubmitUncertainError, asyncio.TimeoutError)
        with pytest.raises(ended) as caught:
            await request
        return caught.value
    finally:
        await veo.aclose()


@pytest.mark.parametrize("how", ["close a read", "close a create", "caller's timeout"])
async def test_a_request_ended_midway_chains_no_frame_holding_the_key(
    secret_kie: FakeKie, how: str
) -> None:
    """A request ended in flight (aclose(), or the caller's timeout around
    it): the error and all it chains keep no frame of the HTTP client, whose
    locals hold the request's headers."""
    error = await _ended_mid_request(secret_kie, how)
    expected = {
        "close a read": SessionClosedError,
        "close a create": SubmitUncertainError,
        "caller's timeout": asyncio.TimeoutError,  # TimeoutError from 3.11
    }[how]
    assert isinstance(error, expected)
    assert_error_clean(error)
    assert_no_frame_holds_the_key(error)


async def test_aiohttp_refusing_its_use_raises_without_its_frames(
    secret_kie: FakeKie, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiohttp refusing a request outright (an injected trust_env session
    whose .netrc has credentials for the host, beside our Authorization
    header) raises its own error, holding no frame whose locals show the key."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login user password pass\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    async with (
        aiohttp.ClientSession(trust_env=True) as http,
        VeoSession(SECRET, base_url=secret_kie.base_url, session=http) as veo,
    ):
        with pytest.raises(ValueError, match="Cannot combine AUTHORIZATION") as caught:
            await veo.record_info("t1")
    assert_error_clean(caught.value)
    assert_no_frame_holds_the_key(caught.value)
    assert secret_kie.total_requests == 0


async def echo_the_key(request: web.Request) -> web.Response:
    """A server that quotes the request's Authorization header back, as some
    proxies' error pages and some services' 401 messages do."""
    echoed = request.headers.get("Authorization", "")
    task = request.query.get("taskId", "")
    if task == "failed":  # a task whose error quotes the key
        return web.json_response(
            {
                "code": 200,
                "msg": "success",
                "data": {
                    "taskId": "failed",
                    "successFlag": 2,
                    "errorCode": 401,
                    "errorMessage": f"invalid key {echoed}",
                    "createTime": "2026-01-06 08:17:04",
                },
            }
        )
    if task == "html":
        return web.Response(
            status=502, text=f"<html><pre>{echoed}</pre></html>", content_type="text/html"
        )
    return web.json_response({"code": 401, "msg": f"Invalid API key: {echoed}", "data": None})


async def test_key_echoed_by_the_server_is_hidden(caplog: pytest.LogCaptureFixture) -> None:
    """A key the server quotes back (an HTML page, a 401 message, a failed
    task's errorMessage) is hidden in every error, its excerpt, the records
    and the logs."""
    caplog.set_level(logging.DEBUG)
    async with (
        serving(echo_the_key) as url,
        VeoSession(SECRET, base_url=url, policy=QUICK) as veo,
    ):
        with pytest.raises(WaitTimeoutError) as timed_out:
            await veo.task("html").wait(timeout=0.3)
        with pytest.raises(TaskFailedError) as failed:
            await veo.task("failed").wait(timeout=5)
        record = await veo.record_info("failed")
        with pytest.raises(AuthenticationError) as refused:
            await veo.record_info("key")
    assert failed.value.record is not None
    assert failed.value.record.error_message == "invalid key Bearer <ApiKey hidden>"
    assert_clean(repr(record), "a record's repr")
    assert_clean(str(record.error_message), "a record's error message")
    assert_error_clean(failed.value)
    assert isinstance(timed_out.value.last_error, ServerError)
    assert "<ApiKey hidden>" in timed_out.value.last_error.message
    assert refused.value.message == "Invalid API key: Bearer <ApiKey hidden>"
    for error in (timed_out.value, refused.value):
        assert_error_clean(error)
    assert_clean(caplog.text, "the captured logs")


@pytest.mark.parametrize("key", ["k", "success"])
async def test_a_key_that_is_ordinary_text_leaves_answers_intact(key: str) -> None:
    """Answers that decode are never rewritten: a key that happens to be
    ordinary text of the answers ("k" is in "taskId"; "success" in every
    envelope) still creates and reads tasks."""
    async with (
        FakeKie(api_key=key, time_scale=0.001) as kie,
        VeoSession(key, base_url=kie.base_url, policy=QUICK) as veo,
    ):
        task = await veo.generate("success story, take k")
        record = await task.wait()
    assert record.task_id == task.task_id
    assert record.params["prompt"] == "success story, take k"


async def test_a_key_echoed_where_http_breaks_is_hidden() -> None:
    """A server that quotes the key where the HTTP itself breaks (a chunk-size
    line): the TransportError names what was wrong, never the bytes, and no
    event carries the key."""
    async def answer_badly(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        auth = next(
            line.split(b":", 1)[1].strip()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"authorization:")
        )
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + auth + b"\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer_badly, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    events: list[object] = []
    async with (
        server,
        VeoSession(SECRET, base_url=f"http://127.0.0.1:{port}", on_event=events.append) as veo,
    ):
        with pytest.raises(TransportError) as caught:
            await veo.record_info("t1")
    assert "not valid HTTP" in str(caught.value)
    assert_error_clean(caught.value)
    assert_clean(" ".join(repr(event) for event in events), "the events")


@pytest.mark.parametrize(
    ("message", "said"),
    [
        (f"Bearer {SECRET}", "unreadable"),  # the Python parser quotes a bad chunk line bare
        (f"Bad status line '{SECRET}'", "Bad status line"),
        (f"Invalid header token:\n\n  b'{SECRET}'", "Invalid header token"),
    ],
)
def test_a_parser_error_is_told_without_its_bytes(message: str, said: str) -> None:
    """aiohttp's parser errors are named by their fixed wording, never by the
    bytes they quote (whichever parser, C or Python, made them)."""
    cause = HttpProcessingError(code=400, message=message)
    error = aiohttp.ClientResponseError(None, (), status=400, message=message)  # type: ignore[arg-type]
    error.__cause__ = cause
    told = _safe(error)
    assert told == f"the answer is not valid HTTP ({said})"
    assert_clean(told, "the message")


class _QuotingTransport:
    """A transport whose failure quotes the key (a library's message that does)."""

    async def send(self, request: HttpRequest) -> RawResponse:
        """Fail, quoting the request's key."""
        raise TransportError(f"connection reset by proxy for Bearer {SECRET}")

    async def aclose(self) -> None:
        """Nothing to close."""


async def test_a_transport_error_quoting_the_key_is_hidden() -> None:
    """A second guard: a TransportError whose message quotes the key (whatever
    made it) reaches the caller and the events with the key hidden."""
    events: list[object] = []
    async with VeoSession(SECRET, transport=_QuotingTransport(), on_event=events.append) as veo:
        with pytest.raises(TransportError) as caught:
            await veo.record_info("t1")
    assert "<ApiKey hidden>" in str(caught.value)
    assert_error_clean(caught.value)
    assert_clean(" ".join(repr(event) for event in events), "the events")


def _straddling_page(prefix: bytes = b"<html><pre>") -> bytes:
    """A page whose first 200 bytes end one character into the key's last."""
    pad = b"N" * (200 - len(prefix) - len(SECRET) + 1)
    return prefix + pad + SECRET.encode() + b"</pre></html>"


async def echo_everywhere(request: web.Request) -> web.StreamResponse:
    """A server quoting the key in places an answer is decoded from."""
    echoed = request.headers.get("Authorization", "")
    mode = request.path.split("/")[1]
    record = {"taskId": "t1", "successFlag": 0, "createTime": "2026-01-06 08:17:04"}
    if mode == "time":  # an unreadable field, logged at DEBUG
        data: Any = {**record, "createTime": echoed}
    elif mode == "flag":  # an unreadable status: a ResponseError from a ValueError
        data = {**record, "successFlag": echoed}
    elif mode == "credits":
        data = echoed
    elif mode == "created":  # a create answer whose taskId is no id
        data = {"taskId": f"{echoed} \n"}
    elif mode == "page":  # the key across the excerpt's 200-byte cut
        return web.Response(status=500, body=_straddling_page(), content_type="text/html")
    elif mode == "redirect":
        location = "https://elsewhere.example/" + "a" * 170 + SECRET
        return web.Response(status=302, headers={"Location": location})
    elif mode == "header":  # a body code over a 200, the key in a header
        body = {"code": 500, "msg": "boom", "data": None}
        return web.json_response(body, headers={"X-Echo": echoed})
    elif mode == "header-shape":  # an unreadable record over a 200, the key in a header
        body = {"code": 200, "msg": "success", "data": [record]}
        return web.json_response(body, headers={"X-Echo": echoed})
    elif mode == "cut":  # a page cut off in the middle of the key
        body = b"<html>" + b"x" * 50 + SECRET[:14].encode()
        return web.Response(status=500, body=body, content_type="text/html")
    else:
        raise AssertionError(mode)
    return web.json_response({"code": 200, "msg": "success", "data": data})


@pytest.mark.parametrize(
    "mode", ["flag", "credits", "created", "page", "redirect", "cut", "header", "header-shape"]
)
async def test_a_key_quoted_where_an_answer_is_decoded_is_hidden_everywhere(
    mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The key quoted in a record field, a credits value, a create's taskId, a
    page cut at the excerpt's 200 bytes, a long Location, a compressed page
    cut mid-key, or a header of a 200 answer that fails: hidden in the error,
    all it chains to, our frames' locals (an answer's headers included) and
    the DEBUG logs (answers are cleaned before they are decoded)."""
    caplog.set_level(logging.DEBUG)
    async with (
        serving(echo_everywhere) as url,
        VeoSession(SECRET, base_url=f"{url}/{mode}", policy=QUICK) as veo,
    ):
        call = {
            "credits": veo.credits,
            "created": lambda: veo.generate("a cat"),
        }.get(mode, lambda: veo.record_info("t1"))
        with pytest.raises(VeoError) as caught:
            await call()
    assert_error_clean(caught.value)
    for frame in our_frames(caught.value):
        for name, value in frame.f_locals.items():
            where = f"{frame.f_code.co_name}().{name}"
            assert_clean(repr(value), where)
            if isinstance(value, RawResponse):
                assert_clean(repr(list(value.headers.items())), where + ".headers")
    assert_clean(caplog.text, "the captured logs")


async def test_an_unreadable_field_quoting_the_key_is_logged_hidden(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A record field that cannot be read is logged at DEBUG with its value:
    the key in it is hidden."""
    caplog.set_level(logging.DEBUG)
    async with (
        serving(echo_everywhere) as url,
        VeoSession(SECRET, base_url=f"{url}/time", policy=QUICK) as veo,
    ):
        record = await veo.record_info("t1")
    assert record.create_time is None
    assert "createTime" in caplog.text
    assert_clean(caplog.text, "the captured logs")


SLASHED = "sk/SECRET/abc123def"  # a key with slashes, which JSON may write "\/"


def _escape_all(text: str, case: str = "x") -> str:
    """Every character of ``text`` as a JSON ``\\uXXXX`` escape."""
    return "".join(f"\\u{ord(char):04{case}}" for char in text)


class _QuotingKie:
    """A public Transport answering a FAILED record whose errorMessage and
    paramJson quote the key as JSON text ``spelled`` it."""

    def __init__(self, spelled: str, spelled_inside: str) -> None:
        self.body = (
            '{"code":200,"msg":"success","data":{"taskId":"t1","successFlag":2,'
            '"errorCode":400,"errorMessage":"bad key ' + spelled + '",'
            '"paramJson":"{\\"prompt\\":\\"a cat ' + spelled_inside + '\\"}",'
            '"createTime":"2026-01-06 08:15:04","completeTime":"2026-01-06 08:17:04"}}'
        ).encode()

    async def send(self, request: HttpRequest) -> RawResponse:
        """The same answer each time."""
        return RawResponse(200, {"Content-Type": "application/json"}, self.body)

    async def aclose(self) -> None:
        """Nothing to close."""


@pytest.mark.parametrize(
    ("spelled", "spelled_inside"),
    [
        # PHP's json_encode writes every slash "\/"; inside paramJson one level deeper.
        (SLASHED.replace("/", "\\/"), SLASHED.replace("/", "\\\\\\/")),
        # Every character escaped, hex in either case; inside: the escape's backslash escaped.
        (_escape_all(SLASHED), _escape_all(SLASHED).replace("\\", "\\\\")),
        (_escape_all(SLASHED, "X"), _escape_all(SLASHED, "X").replace("\\", "\\\\")),
        # Only some characters escaped (as an encoder escaping <, > and & does).
        (SLASHED.replace("S", "\\u0053"), SLASHED.replace("S", "\\\\u0053")),
    ],
    ids=["slash", "all-lower", "all-upper", "some"],
)
async def test_a_key_quoted_back_with_json_escapes_is_hidden_in_records(
    spelled: str, spelled_inside: str
) -> None:
    """A server that quotes the key back in a record with JSON escapes
    ("\\/", "\\u0061") has its bytes miss the key, but decoded, the text is the
    key: it is hidden before decoding as the plain one is (the failure's
    message, the record's repr and its params, the events); the record
    stays readable."""
    events: list[object] = []
    transport = _QuotingKie(spelled, spelled_inside)
    assert json.loads(transport.body)["data"]["errorMessage"] == "bad key " + SLASHED
    async with VeoSession(
        SLASHED, transport=transport, policy=QUICK, on_event=events.append
    ) as veo:
        with pytest.raises(TaskFailedError) as caught:
            await veo.task("t1")
    record = caught.value.record
    assert record.error_message == "bad key <ApiKey hidden>"
    assert record.params == {"prompt": "a cat <ApiKey hidden>"}
    for text, what in [
        (str(caught.value), "the error"),
        (repr(record), "the record"),
        (repr(events), "the events"),
    ]:
        assert SLASHED not in text, what
        assert "SECRET" not in text, what


@pytest.mark.parametrize(
    "key",
    ['sk-"quoted"-0123456789abcdef', "sk-back\\slash-0123456789ab"],
    ids=["quote", "backslash"],
)
async def test_a_key_with_a_quote_or_a_backslash_quoted_back_is_hidden(key: str) -> None:
    """A key with a quote or a backslash is always escaped in JSON text (\\"
    and \\\\, one level deeper in paramJson): quoted back, it is hidden as
    any other (it was left in the failure's message and the record)."""
    once = json.dumps(key)[1:-1]
    transport = _QuotingKie(once, json.dumps(once)[1:-1])
    assert json.loads(transport.body)["data"]["errorMessage"] == "bad key " + key
    async with VeoSession(key, transport=transport, policy=QUICK) as veo:
        with pytest.raises(TaskFailedError) as caught:
            await veo.task("t1")
    record = caught.value.record
    assert record.error_message == "bad key <ApiKey hidden>"
    assert record.params == {"prompt": "a cat <ApiKey hidden>"}
    assert key not in str(caught.value)
    assert key not in repr(record)


async def test_an_answer_with_escapes_but_no_key_is_left_as_it_is() -> None:
    """Escapes alone (a prompt in another script, slashes written "\\/") change
    nothing: the answer is decoded from its own bytes."""
    transport = _QuotingKie("caf\\u00e9 http:\\/\\/x", "caf\\\\u00e9")
    async with VeoSession(SLASHED, transport=transport, policy=QUICK) as veo:
        record = await veo.record_info("t1")
    assert record.error_message == "bad key café http://x"
    assert record.params == {"prompt": "a cat café"}


@pytest.mark.parametrize("pasted", [f"Bearer {SECRET}", f"bearer  {SECRET} ", f" BEARER {SECRET}"])
async def test_a_key_pasted_with_its_scheme_is_sent_once(pasted: str) -> None:
    """A key pasted as the service's pages show the header (``Bearer sk-...``)
    is sent as ``Bearer sk-...``, not ``Bearer Bearer sk-...`` (every request
    a 401 the user could not explain)."""
    kie = FakeKie(api_key=SECRET)
    kie.add_task("veo_a")
    async with VeoSession(pasted, transport=kie.transport()) as veo:
        record = await veo.record_info("veo_a")
    assert record.task_id == "veo_a"
    assert kie.requests[0].headers["Authorization"] == f"Bearer {SECRET}"
