"""Creating tasks: validation before I/O, the wire JSON, never charged twice,
the creation budget, model-aware first polls, extend, 1080p, 4K, credits,
download links and callbacks.

Most tests run in process on the virtual clock (minutes in milliseconds);
the ones about real connections (a drop after creating, a refused
connection, callbacks) run over loopback.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import hashlib
import hmac
import itertools
import json
import pickle
import random
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from veo_async import (
    AdaptivePolicy,
    APIError,
    AuthenticationError,
    ContentPolicyError,
    ErrorPage,
    ExtendRequest,
    GenerateRequest,
    HttpRequest,
    InsufficientCreditsError,
    NotFoundError,
    PollPolicy,
    RateLimitError,
    RecordNotFoundError,
    ResponseError,
    ServerError,
    SessionClosedError,
    SubmitUncertainError,
    TaskFailedError,
    TaskStatus,
    TransportError,
    VeoSession,
    VeoTask,
    WaitTimeoutError,
)
from veo_async._endpoints import (
    decode_4k,
    decode_1080p,
    decode_credits,
    decode_link,
    decode_task_id,
)
from veo_async._protocol import RawResponse
from veo_async.events import Event, RequestFailed, SessionPaused
from veo_async.models import MAX_PROMPT_LENGTH
from veo_async.testing import FakeKie, Fault, Quirks

from ._virtual import run_virtual
from .conftest import API_KEY, eventually, on_time
from .test_hardening import serving

GENERATE = "/api/v1/veo/generate"
RECORD = "/api/v1/veo/record-info"


def in_process(
    body: Callable[[FakeKie, VeoSession], Awaitable[None]],
    kie: FakeKie | None = None,
    **session: Any,
) -> None:
    """Run ``body(kie, veo)`` on the virtual clock with an in-process session."""

    async def main() -> None:
        simulator = kie or FakeKie(seed=11, credits=1e9)
        async with VeoSession(API_KEY, transport=simulator.transport(), **session) as veo:
            await body(simulator, veo)
        await simulator.close()

    run_virtual(main)


def requests_to(kie: FakeKie, path: str) -> list[Any]:
    """The recorded requests to ``path``."""
    return [r for r in kie.requests if r.path == path]


# -- validation, before any I/O ------------------------------------------------------

BAD_REQUESTS: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"prompt": ""}, ValueError, "prompt must not be empty"),
    ({"prompt": "   "}, ValueError, "prompt must not be empty"),
    ({"prompt": "x" * (MAX_PROMPT_LENGTH + 1)}, ValueError, "characters long"),
    ({"prompt": 3}, TypeError, "prompt must be a str"),
    ({"prompt": "a cat\x00 surfing"}, ValueError, "prompt contains a NUL.*at position 5"),
    ({"prompt": "a cat \ud83d surfing"}, ValueError, "lone surrogate.*position 6"),
    ({"model": "veo4"}, ValueError, "model 'veo4' is not one Kie documents"),
    ({"aspect_ratio": "4:3"}, ValueError, "aspect_ratio"),
    ({"aspectRatio": "16:9"}, TypeError, "aspectRatio"),
    ({"generation_type": "IMAGE"}, ValueError, "generation_type"),
    ({"resolution": "8k"}, ValueError, "resolution"),
    ({"generation_type": "TEXT_2_VIDEO", "image_urls": ["https://a/1.png"]},
     ValueError, "TEXT_2_VIDEO takes no images"),
    ({"generation_type": "FIRST_AND_LAST_FRAMES_2_VIDEO"}, ValueError, "1-2 image URLs, not 0"),
    ({"generation_type": "FIRST_AND_LAST_FRAMES_2_VIDEO", "image_urls": ["https://a/1"] * 3},
     ValueError, "1-2 image URLs, not 3"),
    ({"generation_type": "REFERENCE_2_VIDEO", "image_urls": ["https://a/1"] * 4},
     ValueError, "1-3 image URLs, not 4"),
    ({"image_urls": ["https://a/1"] * 3}, ValueError, "no generation_type takes 0-2"),
    ({"image_urls": "https://a/1.png"}, TypeError, "not a single string"),
    ({"image_urls": 5}, TypeError, "image_urls must be a list of URLs, not int"),
    ({"image_urls": {"https://a/1.png", "https://a/2.png"}}, TypeError, "not set"),
    ({"image_urls": {"https://a/1.png": 1}}, TypeError, "not dict"),
    ({"image_urls": ["ftp://a/1.png"]}, ValueError, "http(s) URL"),
    ({"image_urls": ["/local/file.png"]}, ValueError, "http(s) URL"),
    ({"seeds": 9999}, ValueError, "10000-99999"),
    ({"seeds": 100000}, ValueError, "10000-99999"),
    ({"seeds": True}, TypeError, "seeds must be an int"),
    ({"callback_url": "not a url"}, ValueError, "callback_url"),
    ({"callback_url": "mailto:a@b.c"}, ValueError, "callback_url"),
    ({"enable_translation": "yes"}, TypeError, "enable_translation"),
    ({"enable_fallback": 1}, TypeError, "enable_fallback"),
]


@pytest.mark.parametrize(("fields", "error", "match"), BAD_REQUESTS)
def test_bad_requests_fail_before_any_io(
    fields: dict[str, Any], error: type[Exception], match: str
) -> None:
    """Each rule of a generate request raises a clear error and sends nothing."""

    async def body(kie: FakeKie, veo: VeoSession) -> None:
        options = dict(fields)
        prompt = options.pop("prompt", "a cat")
        with pytest.raises(error, match=match.replace("(", r"\(").replace(")", r"\)")):
            await veo.generate(prompt, **options)
        assert kie.total_requests == 0

    in_process(body)


def test_allow_unknown_is_the_escape_hatch_for_new_values() -> None:
    """allow_unknown=True sends values outside the documented sets as given."""
    request = GenerateRequest(
        "a cat", model="veo4", aspect_ratio="1:1", resolution="8k", allow_unknown=True
    )
    assert request.to_wire() == {
        "prompt": "a cat", "model": "veo4", "aspect_ratio": "1:1", "resolution": "8k"
    }
    with pytest.raises(ValueError, match="not one Kie documents"):
        ExtendRequest("veo_task_1", "more", model="ultra")
    assert ExtendRequest("veo_task_1", "more", model="ultra", allow_unknown=True).model == "ultra"


@pytest.mark.parametrize("flag", ["no", "false", 1, 0, None, [0]])
def test_allow_unknown_must_be_a_bool(flag: object) -> None:
    """Only True opens the escape hatch: another value (even a truthy one) is a
    TypeError, so a typo'd model is never sent (and charged) by mistake."""
    with pytest.raises(TypeError, match="allow_unknown must be True or False"):
        GenerateRequest("a cat", model="veo3_typo", allow_unknown=flag)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="allow_unknown must be True or False"):
        ExtendRequest("veo_task_1", "more", model="veo3", allow_unknown=flag)  # type: ignore[arg-type]


@pytest.mark.parametrize("model", ["", "  ", " veo4 "])
def test_an_empty_or_padded_value_is_refused_even_with_allow_unknown(model: str) -> None:
    """With allow_unknown=True an empty or padded value is refused, and the
    message does not tell the caller to pass the flag they passed."""
    with pytest.raises(ValueError, match="non-empty str without surrounding spaces") as caught:
        GenerateRequest("a cat", model=model, allow_unknown=True)
    assert "allow_unknown" not in str(caught.value)


def test_extend_requests_are_validated() -> None:
    """An extend needs a sane task id, a prompt, a documented model and seeds in range."""
    with pytest.raises(ValueError, match="task id"):
        ExtendRequest("", "more")
    with pytest.raises(ValueError, match="prompt"):
        ExtendRequest("veo_task_1", "")
    with pytest.raises(ValueError, match="10000-99999"):
        ExtendRequest("veo_task_1", "more", seeds=5)


def test_the_wire_json_is_exactly_the_reference() -> None:
    """Every field goes out under the reference's name (aspect_ratio, not the
    older aspectRatio; callBackUrl; enableTranslation; the deprecated
    enableFallback), unset ones left out."""
    full = GenerateRequest(
        "a cat",
        model="veo3",
        aspect_ratio="9:16",
        generation_type="REFERENCE_2_VIDEO",
        image_urls=["https://img/1.png", "https://img/2.png"],
        resolution="1080p",
        seeds=12345,
        watermark="mine",
        enable_translation=False,
        callback_url="https://hooks.example/veo",
        enable_fallback=True,
    )
    assert full.to_wire() == {
        "prompt": "a cat",
        "model": "veo3",
        "aspect_ratio": "9:16",
        "generationType": "REFERENCE_2_VIDEO",
        "imageUrls": ["https://img/1.png", "https://img/2.png"],
        "resolution": "1080p",
        "seeds": 12345,
        "watermark": "mine",
        "enableTranslation": False,
        "callBackUrl": "https://hooks.example/veo",
        "enableFallback": True,
    }
    assert GenerateRequest("a cat").to_wire() == {
        "prompt": "a cat", "model": "veo3_fast", "aspect_ratio": "16:9"
    }
    extend = ExtendRequest(
        "veo_task_1", "more", model="lite", seeds=54321, watermark="w",
        callback_url="http://h/cb",
    )
    assert extend.to_wire() == {
        "taskId": "veo_task_1", "prompt": "more", "model": "lite", "seeds": 54321,
        "watermark": "w", "callBackUrl": "http://h/cb",
    }


def test_generate_sends_the_request_and_returns_the_registered_handle() -> None:
    """generate() POSTs to_wire() once; the handle is veo.task(id), remembers
    its request and creation time, and awaits to the SUCCESS record."""

    async def body(kie: FakeKie, veo: VeoSession) -> None:
        task = await veo.generate(
            "A cat surfing at sunset", model="veo3", seeds=12345, enable_fallback=False
        )
        assert veo.task(task.task_id) is task
        assert isinstance(task.request, GenerateRequest)
        assert task.request.model == "veo3"
        assert task.created_at is not None
        assert task.created_at.tzinfo is not None
        assert task.created_loop_time is not None
        sent = requests_to(kie, GENERATE)
        assert [r.json for r in sent] == [task.request.to_wire()]
        assert sent[0].json["enableFallback"] is False
        info = await task
        assert info.status is TaskStatus.SUCCESS
        assert info.params["model"] == "veo3"
        assert veo.task("veo_task_other").request is None

    in_process(body)


def test_a_record_not_visible_yet_right_after_generate_is_retryable() -> None:
    """refresh() and record_info() just after generate(): a "record is null"
    (the record not visible yet) is retryable within the policy's
    not_found_grace of the creation, as the reference says; past it, or for
    an id this session did not create, or a record said expired, it is not."""

    async def body(kie: FakeKie, veo: VeoSession) -> None:
        grace = veo.policy.not_found_grace
        task = await veo.generate("A cat surfing at sunset")
        kie.inject(Fault.record_null(), 2)
        with pytest.raises(RecordNotFoundError) as by_refresh:
            await task.refresh()
        with pytest.raises(RecordNotFoundError) as by_record_info:
            await veo.record_info(task.task_id)
        assert by_refresh.value.retryable
        assert by_record_info.value.retryable
        kie.inject(Fault.record_null())
        with pytest.raises(RecordNotFoundError) as stranger:
            await veo.record_info("veo_task_not_ours")
        assert not stranger.value.retryable
        kie.inject(Fault.body_code(422, "record is older than 14 days"))
        with pytest.raises(RecordNotFoundError) as expired:
            await task.refresh()
        assert expired.value.expired
        assert not expired.value.retryable
        await asyncio.sleep(grace + 1.0)
        kie.inject(Fault.record_null(), 2)
        with pytest.raises(RecordNotFoundError) as late_refresh:
            await task.refresh()
        with pytest.raises(RecordNotFoundError) as late_record_info:
            await veo.record_info(task.task_id)
        assert not late_refresh.value.retryable
        assert not late_record_info.value.retryable

    in_process(body)


def test_a_record_not_visible_yet_is_retryable_for_a_caller_who_kept_only_the_id() -> None:
    """The handle generate() gave is dropped (the caller kept its id, as a
    web service hands it to a client): record_info() of that id within the
    grace still reads "record is null" as not visible yet; past the grace it
    is final, and the session forgets the creation."""

    async def body(kie: FakeKie, veo: VeoSession) -> None:
        grace = veo.policy.not_found_grace
        task_id = (await veo.generate("A cat surfing at sunset")).task_id
        gc.collect()  # the handle is gone: nothing holds it
        kie.inject(Fault.record_null())
        with pytest.raises(RecordNotFoundError) as fresh:
            await veo.record_info(task_id)
        assert fresh.value.retryable
        await asyncio.sleep(grace + 1.0)
        gc.collect()
        kie.inject(Fault.record_null())
        with pytest.raises(RecordNotFoundError) as late:
            await veo.record_info(task_id)
        assert not late.value.retryable

    in_process(body)


def test_generate_takes_a_prepared_request_but_not_both() -> None:
    """A GenerateRequest is sent as is; adding keywords to it is a TypeError."""

    async def body(kie: FakeKie, veo: VeoSession) -> None:
        request = GenerateRequest("a cat", aspect_ratio="Auto")
        with pytest.raises(TypeError, match="not both"):
            await veo.generate(request, model="veo3")
        task = await veo.generate(request)
        assert task.request is request
        assert requests_to(kie, GENERATE)[0].json["aspect_ratio"] == "Auto"

    in_process(body)


# -- never charged twice -------------------------------------------------------------


async def test_a_drop_after_creating_is_uncertain_and_never_resent() -> None:
    """Over loopback: the server creates the task, then drops the connection:
    SubmitUncertainError carrying the request; exactly one task, no resend."""
    async with FakeKie(api_key=API_KEY) as kie:
        kie.inject_create(Fault.created_then_drop())
        async with VeoSession(API_KEY, base_url=kie.base_url) as veo:
            with pytest.raises(SubmitUncertainError) as caught:
                await veo.generate("a cat")
        assert caught.value.request == GenerateRequest("a cat")
        assert not caught.value.retryable
        assert caught.value.__cause__ is None
        assert caught.value.__suppress_context__  # (its cause is named in its message)
        # (none at all, but on 3.10 under the test runner's pure-Python Task:
        # see test_secrets.test_an_answer_cut_mid_body_leaves_no_frame_reaching_the_key)
        assert caught.value.__context__ is None or sys.version_info < (3, 11)
        assert "may have created" in str(caught.value)
        assert kie.created == 1
        assert len(requests_to(kie, GENERATE)) == 1


@pytest.mark.parametrize(
    "fault",
    [Fault.server_error(), Fault.bad_gateway_html(), Fault.truncated_json(),
     Fault.body_code(408, "upstream timeout"), Fault.reset()],
    ids=["500", "502-html", "truncated", "408", "reset"],
)
def test_answers_that_may_have_created_are_uncertain(fault: Fault) -> None:
    """A 5xx, an unreadable answer, a 408 or a reset after sending: uncertain, one request."""

    async def body(kie: FakeKie, veo: VeoSession) -> None:
        kie.inject_create(fault)
        with pytest.raises(SubmitUncertainError):
            await veo.generate("a cat")
        assert len(requests_to(kie, GENERATE)) == 1

    in_process(body)


class _OneAnswer:
    """A transport answering every request with one status and body."""

    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.body = body
        self.posts = 0

    async def send(self, request: HttpRequest) -> RawResponse:
        """The one answer."""
        self.posts += request.method == "POST"
        return RawResponse(self.status, {"Content-Type": "text/html"}, self.body)

    async def aclose(self) -> None:
        """Nothing to close."""


_CLAIMED = json.dumps({"code": 200, "msg": "success", "data": {"taskId": "veo_task_made"}}).encode()


@pytest.mark.parametrize("status", [500, 408, 429, 455, 400])
def test_a_create_answered_an_error_status_names_the_task_it_may_have_created(
    status: int,
) -> None:
    """An error status over a success envelope with a taskId (a proxy that
    rewrote the status): uncertain, never resent, and the error carries that
    id, so the task can still be followed. So too under a 429 or a 455, which
    are resent otherwise (a task named may exist, and have been charged), and
    under a refusal such as a 400."""

    async def main() -> None:
        transport = _OneAnswer(status, _CLAIMED)
        async with VeoSession(API_KEY, transport=transport) as veo:
            with pytest.raises(SubmitUncertainError) as caught:
                await veo.generate("a cat")
        assert caught.value.task_id == "veo_task_made"
        # Named once: the cause quoted the error with its "(task ...)" too.
        assert str(caught.value).count("(task 'veo_task_made')") == 1
        assert transport.posts == 1

    run_virtual(main)


@pytest.mark.parametrize("task_id", ["null", "NULL", " None ", "", None])
def test_a_create_answered_a_null_task_id_is_uncertain_not_a_task_called_null(
    task_id: str | None,
) -> None:
    """A success whose taskId is a "null" spelling (the service's text for
    absent): no handle on a task called "null" (polled for a record that
    never comes), but SubmitUncertainError, one POST, nothing resent."""

    async def main() -> None:
        body = json.dumps({"code": 200, "msg": "success", "data": {"taskId": task_id}}).encode()
        transport = _OneAnswer(200, body)
        async with VeoSession(API_KEY, transport=transport) as veo:
            with pytest.raises(SubmitUncertainError, match="taskId") as caught:
                await veo.generate("a cat")
        assert caught.value.task_id is None
        assert transport.posts == 1

    run_virtual(main)


@pytest.mark.parametrize("status", [403, 413])
def test_a_proxy_refusal_page_on_a_create_is_a_rejection_not_uncertain(status: int) -> None:
    """A proxy's refusal page (an HTML 403 or 413: nothing reached the service)
    is raised as the rejection it is (an ErrorPage), not as "may have created"."""

    async def main() -> None:
        transport = _OneAnswer(status, b"<html><body>error code: 1020</body></html>")
        async with VeoSession(API_KEY, transport=transport) as veo:
            with pytest.raises(ErrorPage) as caught:
                await veo.generate("a cat")
        assert not isinstance(caught.value, SubmitUncertainError)
        assert caught.value.code == status
        assert transport.posts == 1

    run_virtual(main)


def test_a_timeout_after_sending_is_uncertain() -> None:
    """A create that gets no answer in time is uncertain and not resent."""

    async def main() -> None:
        kie = FakeKie()
        kie.inject_create(Fault.slow(60.0))
        transport = kie.transport()
        async with VeoSession(API_KEY, transport=transport) as veo:
            # The in-process transport's timeout is its own (30 s by default).
            with pytest.raises(SubmitUncertainError, match="in time"):
                await veo.generate("a cat")
        assert len(requests_to(kie, GENERATE)) == 1
        # The simulator created (and charged) it before its late answer, as a
        # real service would have: the uncertainty is real.
        assert kie.created == 1

    run_virtual(main)


@pytest.mark.parametrize(
    ("fault", "error"),
    [(Fault.body_code(400, "prompt flagged"), ContentPolicyError),
     (Fault.body_code(422, "imageUrls invalid"), APIError),
     (Fault.body_code(451, "image could not be fetched"), APIError),
     (Fault.body_code(501, "generation failed"), APIError)],
    ids=["400", "422", "451", "501"],
)
def test_rejecting_codes_raise_at_once(fault: Fault, error: type[Exception]) -> None:
    """Codes documented as rejecting the request raise their APIError, unsent again."""

    async def body(kie: FakeKie, veo: VeoSession) -> None:
        kie.inject_create(fault)
        with pytest.raises(error) as caught:
            await veo.generate("a cat")
        assert not isinstance(caught.value, SubmitUncertainError)
        assert len(requests_to(kie, GENERATE)) == 1

    in_process(body)


def test_402_when_credits_run_out_creates_nothing() -> None:
    """With too few credits the create is refused with InsufficientCreditsError."""

    async def body(kie: FakeKie, veo: VeoSession) -> None:
        await veo.generate("one", model="veo3_lite")
        with pytest.raises(InsufficientCreditsError):
            await veo.generate("two", model="veo3")
        assert kie.created == 1
        assert len(requests_to(kie, GENERATE)) == 2

    in_process(body, FakeKie(credits=100.0))


@pytest.mark.parametrize(
    "fault", [Fault.body_429(), Fault.http_429(retry_after=2), Fault.maintenance()],
    ids=["body-429", "http-429", "455"],
)
def test_refusals_that_created_nothing_are_resent(fault: Fault) -> None:
    """A 429 or a 455 certainly created nothing: the create is resent and succeeds once."""

    async def body(kie: FakeKie, veo: VeoSession) -> None:
        kie.inject_create(fault, 2)
        task = await veo.generate("a cat")
        assert kie.created == 1
        assert kie.created_ids == [task.task_id]
        assert len(requests_to(kie, GENERATE)) == 3

    in_process(body)


def test_safe_resends_are_bounded() -> None:
    """After 5 resends of a create that keeps meeting 455, the 455 is raised."""

    async def body(kie: FakeKie, veo: VeoSession) -> None:
        kie.inject_create(Fault.maintenance(), 10)
        with pytest.raises(APIError) as caught:
            await veo.generate("a cat")
        assert caught.value.code == 455
        assert len(requests_to(kie, GENERATE)) == 6

    in_process(body)


def test_closing_the_session_ends_a_create_waiting_to_be_resent() -> None:
    """A create refused with 455 waits 1, 2, 4... s before each resend; the
    session's close ends that wait at once with SessionClosedError (a plain
    sleep outlived the close by up to 16 s), and nothing more is sent."""

    async def body(kie: FakeKie, veo: VeoSession) -> None:
        loop = asyncio.get_running_loop()
        kie.inject_create(Fault.maintenance(), 10)
        create = asyncio.ensure_future(veo.generate("a cat"))
        assert await eventually(lambda: len(requests_to(kie, GENERATE)) == 1)
        await asyncio.sleep(0.2)  # in the wait before the first resend (0.8-1.2 s)
        assert not create.done()
        closed_at = loop.time()
        await veo.aclose()
        with pytest.raises(SessionClosedError):
            await create
        assert loop.time() - closed_at < 0.1
        assert len(requests_to(kie, GENERATE)) == 1

    in_process(body)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _created_once_up(
    port: int, before_start: Callable[[], None] = lambda: None, **settings: Any
) -> tuple[FakeKie, VeoTask, list[TransportError]]:
    """``generate()`` against ``port``, where a simulator starts (after
    ``before_start()``) at the create's first TransportError: the simulator,
    the task, and the TransportErrors met on the way."""
    kie = FakeKie(api_key=API_KEY, port=port)
    failed: list[TransportError] = []
    started: list[asyncio.Task[None]] = []

    def on_event(event: Event) -> None:
        if isinstance(event, RequestFailed) and isinstance(event.error, TransportError):
            failed.append(event.error)
            if not started:
                before_start()
                started.append(asyncio.get_running_loop().create_task(kie.start()))

    try:
        async with VeoSession(
            API_KEY, base_url=f"http://127.0.0.1:{port}", on_event=on_event, **settings
        ) as veo:
            task = await veo.generate("a cat")
    finally:
        if started:
            await started[0]
        await kie.close()
    return kie, task, failed


async def test_a_connect_that_never_completes_is_resent_safely() -> None:
    """A listener whose accept queue is full drops the handshake: the
    create's connect times out with nothing of it sent. It was reported
    uncertain (``sent`` True: SubmitUncertainError, "may have created a
    task") though it could not have arrived; it is resent, and creates one
    task once the server answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = int(listener.getsockname()[1])
    fillers = []
    for _ in range(3):  # the queue, full: the next handshake is dropped
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)

    def close_the_listener() -> None:
        for sock in (*fillers, listener):
            sock.close()

    try:
        kie, task, timed_out = await _created_once_up(
            port, close_the_listener, request_timeout=0.5
        )
    finally:
        close_the_listener()
    assert timed_out
    assert "no connection to" in str(timed_out[0])  # timed out connecting, not refused
    assert all(not error.sent for error in timed_out)
    assert kie.created_ids == [task.task_id]


async def test_a_refused_connection_is_resent_safely() -> None:
    """Over loopback: nothing listens at first (refused before sending): the
    create is resent once the server is up, and creates exactly one task."""
    kie, task, refused = await _created_once_up(_free_port())
    assert refused
    assert all(not error.sent for error in refused)
    assert kie.created_ids == [task.task_id]


# -- the creation budget -------------------------------------------------------------


def test_500_concurrent_creates_meet_no_429_and_run_at_the_limit() -> None:
    """500 generate() calls at once: all created, zero 429s, and (virtual time)
    finished after about 500 / 20 * 10 s: throughput at the account limit."""

    async def body(kie: FakeKie, veo: VeoSession) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        tasks = await asyncio.gather(*(veo.generate(f"cat {i}") for i in range(500)))
        elapsed = loop.time() - start
        assert kie.created == 500
        assert len({t.task_id for t in tasks}) == 500
        assert kie.count_status(429) == 0
        # 25 windows of 20: the last batch starts 24 periods after the first.
        assert 24 * 10.0 <= elapsed <= 25 * 10.0
        assert veo.stats.creates == 500

    in_process(body)


def test_the_creation_budget_is_configurable() -> None:
    """create_rate/create_period are validated, read-only settings that pace creates."""
    with pytest.raises(ValueError, match="create_rate"):
        VeoSession(API_KEY, create_rate=0)
    with pytest.raises(ValueError, match="create_period"):
        VeoSession(API_KEY, create_period=-1.0)

    async def body(kie: FakeKie, veo: VeoSession) -> None:
        assert (veo.create_rate, veo.create_period) == (5, 1.0)
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.gather(*(veo.generate("a cat") for _ in range(20)))
        assert 3.0 <= loop.time() - start <= 4.0

    in_process(body, create_rate=5, create_period=1.0)


def test_a_429_on_a_create_pauses_creating_only() -> None:
    """A create's 429 (Retry-After 30 s) pauses creates; polls of other tasks
    go on meanwhile, and the session's own pause stays zero; the event says
    that creating paused, not the session."""
    events: list[Event] = []

    async def body(kie: FakeKie, veo: VeoSession) -> None:
        kie.add_task("veo_task_old", complete_after=1000.0)
        loop = asyncio.get_running_loop()
        watcher = loop.create_task(veo.task("veo_task_old").wait(timeout=None))
        await asyncio.sleep(1.0)
        kie.inject_create(Fault.http_429(retry_after=30))
        creating = loop.create_task(veo.generate("a cat"))
        await asyncio.sleep(5.0)
        stats = veo.stats
        assert stats.create_paused_for > 20.0
        assert stats.paused_for == 0.0
        assert stats.create_rate_limited == 1
        polls_before = kie.polls("veo_task_old")
        await asyncio.sleep(20.0)
        assert kie.polls("veo_task_old") > polls_before  # polling went on
        assert not creating.done()  # creating waited
        task = await creating
        assert kie.created_ids == [task.task_id]
        watcher.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watcher

    in_process(
        body,
        policy=PollPolicy(interval=2.0, max_interval=2.0, jitter=0.0),
        on_event=events.append,
    )
    [paused] = [event for event in events if isinstance(event, SessionPaused)]
    assert paused.scope == "creates"
    assert paused.retry_after == 30.0


# -- model-aware first poll ----------------------------------------------------------


def _poll_ages(kie: FakeKie, task: VeoTask) -> list[float]:
    """The ages of the polls the simulator saw for a task the session created."""
    assert task.created_loop_time is not None
    return [
        r.started - task.created_loop_time
        for r in kie.requests
        if r.path == RECORD and r.task_id == task.task_id
    ]


def _first_poll_after(kie: FakeKie, task_id: str, created: float) -> float:
    polls = [r.started for r in kie.requests if r.path == RECORD and r.task_id == task_id]
    return polls[0] - created


#: The default schedule without jitter, so first polls can be computed exactly. No explorer (see
#: test_schedule's explorer tests): the first task follows the tables too.
STEADY = AdaptivePolicy(jitter=0.0, explorers=0)


def _possible_first_polls(model: str, age: float = 0.0) -> set[float]:
    """Either first poll (age of the task) the unlearned schedule may choose for
    a task of this age: it mixes its two solutions around the budget at random
    (see AdaptiveSchedule)."""
    table = STEADY.schedule().table(model)
    i = round(age / 2.0)
    return {table.next_index[i] * 2.0, table.costly_index[i] * 2.0}


def _is_a_first_poll(first: float, model: str, age: float = 0.0) -> bool:
    return any(abs(first - option) <= 0.1 for option in _possible_first_polls(model, age))


@pytest.mark.parametrize("model", ["veo3_lite", "veo3_fast", "veo3"])
def test_created_tasks_poll_first_after_a_model_aware_delay(model: str) -> None:
    """With the adaptive default, a created task's first poll is the schedule's
    early probe for fast failures, counted from creation: never at 0 s, and
    not where a fixed 3 s poller would ask."""

    async def body(kie: FakeKie, veo: VeoSession) -> None:
        task = await veo.generate("a cat", model=model)
        assert task.created_loop_time is not None
        await task
        first = _first_poll_after(kie, task.task_id, task.created_loop_time)
        assert _is_a_first_poll(first, model), (first, _possible_first_polls(model))
        assert first >= 30.0

    in_process(body, policy=STEADY)


def test_the_first_task_of_a_session_explores_its_first_seconds() -> None:
    """With the default policy, a session's first task is polled at 2, 4, 8,
    16 s of age as well as on its table, so a service (or a test server) far
    faster than the documented times has it seen in seconds; a success that
    early (the prior calls it impossible) moves the model's table there at
    once, so the next task is polled in seconds too, not at the table's 40 s."""

    async def body(kie: FakeKie, veo: VeoSession) -> None:
        first = await veo.generate("a cat", model="veo3_fast")
        assert first.created_loop_time is not None
        await first
        ages = _poll_ages(kie, first)
        # Found by an explorer poll, not at the table's first (40 s). The
        # explorer's polls need no table: they keep their ages while the
        # session's first table is made (a second of CPU, real time on this
        # clock, which a loaded machine stretches).
        assert 1 <= len(ages) <= 4, ages
        assert ages == pytest.approx([2.0, 4.0, 8.0, 16.0][: len(ages)], abs=0.5), ages
        assert first.record is not None
        assert first.record.is_done
        second = await veo.generate("a dog", model="veo3_fast")
        assert second.created_loop_time is not None
        await second
        # Renders of 3-6 s are 0.02-0.04x the documented ones: no test
        # server's (see _TEST_SERVER_SCALE), so the table keeps fixed 30 s
        # polling's one request a task and polls once, past their tail,
        # but well before the prior's 40 s.
        assert _first_poll_after(kie, second.task_id, second.created_loop_time) < 20.0
        assert len(_poll_ages(kie, second)) <= 2

    # Renders of 3-6 s (the simulator's minutes, scaled): found by the explorer.
    fast = FakeKie(seed=11, credits=1e9, time_scale=0.02)
    in_process(body, kie=fast, policy=AdaptivePolicy(jitter=0.0))


def test_tasks_created_with_the_explorer_are_brought_forward_when_it_finds_one_done() -> None:
    """Tasks created with the session's first (the explorer) wait their
    table's first poll (30-80 s); when the explorer finds its task done in
    seconds, their polls are planned again on the moved table: a burst
    against a test server is seen in seconds, not at 40 s."""

    async def body(kie: FakeKie, veo: VeoSession) -> None:
        creating = (veo.generate(f"cat {i}", model="veo3_fast") for i in range(3))
        tasks = await asyncio.gather(*creating)
        await asyncio.gather(*tasks)
        for task in tasks:
            ages = _poll_ages(kie, task)
            assert ages[-1] < 10.0, ages

    fast = FakeKie(seed=11, credits=1e9, time_scale=0.006)  # renders of about 1 s
    in_process(body, kie=fast, policy=AdaptivePolicy(jitter=0.0))


def test_a_burst_against_a_test_server_failing_every_task_is_seen_in_seconds() -> None:
    """A test server failing every task at once: the explorer finds its
    task failed at 2 s, and the others, which waited the prior's early
    probe (40 s), are planned again on a table whose fast failures come
    that soon (failures under 5 s, which no service makes, while no task
    was seen running past 5 s); so is the next task created."""

    async def body(kie: FakeKie, veo: VeoSession) -> None:
        creating = (veo.generate(f"cat {i}", model="veo3_fast") for i in range(4))
        tasks = await asyncio.gather(*creating)
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(outcome, TaskFailedError) for outcome in outcomes), outcomes
        for task in tasks:
            ages = _poll_ages(kie, task)
            assert ages[-1] < 10.0, ages
        later = await veo.generate("a dog", model="veo3_fast")
        with pytest.raises(TaskFailedError):
            await later
        ages = _poll_ages(kie, later)
        assert ages[-1] < 10.0, ages
        assert veo.learner.failure_scale() is not None

    failing = FakeKie(seed=11, credits=1e9, time_scale=0.006, failure_rate=1.0)
    in_process(body, kie=failing, policy=AdaptivePolicy(jitter=0.0))


def test_ids_handed_in_against_a_test_server_are_seen_in_seconds() -> None:
    """Ids created elsewhere, handed to a new session against a server
    rendering in about a second: the first polls find them running at age
    0, the explorer finds its task done at 2 s, and the others are brought
    forward to seconds too (held to fixed 30 s polling's one request a
    task, the moved table polled them once, at 34 s)."""

    async def body(kie: FakeKie, veo: VeoSession) -> None:
        async with VeoSession(API_KEY, transport=kie.transport()) as maker:
            made = [await maker.generate(f"cat {i}", model="veo3_fast") for i in range(10)]
        loop = asyncio.get_running_loop()
        start = loop.time()
        seen: list[float] = []
        async for _task in veo.as_completed([task.task_id for task in made]):
            seen.append(loop.time() - start)
        assert len(seen) == 10
        assert max(seen) < 10.0, seen

    fast = FakeKie(seed=5, credits=1e9, time_scale=0.006)  # renders of about 1 s
    in_process(body, kie=fast, policy=AdaptivePolicy(jitter=0.0))


def test_a_render_under_a_second_is_learned() -> None:
    """A record's times are whole seconds: a task done within the second it
    was created reads 0 s, which the session learns like any duration (it
    was skipped, and a test server's instant renders were never learned:
    its tasks kept their 40 s first polls)."""

    async def body(kie: FakeKie, veo: VeoSession) -> None:
        task = await veo.generate("a cat", model="veo3_fast")
        info = await task
        assert info.create_time == info.complete_time
        assert veo.learner.count("veo3_fast") == 1
        assert veo.learner.rebased("veo3_fast")

    instant = FakeKie(seed=11, credits=1e9, time_scale=1e-6)  # renders of 0.2 ms
    in_process(body, kie=instant)


def test_the_explorer_costs_its_few_requests_once_against_a_service_as_documented() -> None:
    """Against renders of the documented minutes, the explorer finds its
    task running at 2-16 s; the next task follows the table from creation
    (its first poll at the early probe), so exploring costs a few requests
    once per session."""

    async def body(kie: FakeKie, veo: VeoSession) -> None:
        first = await veo.generate("a cat", model="veo3_fast")
        assert first.created_loop_time is not None
        await first
        ages = _poll_ages(kie, first)
        assert ages[:4] == pytest.approx([2.0, 4.0, 8.0, 16.0], abs=0.5), ages
        second = await veo.generate("a dog", model="veo3_fast")
        assert second.created_loop_time is not None
        await second
        assert _first_poll_after(kie, second.task_id, second.created_loop_time) >= 30.0

    in_process(body, policy=AdaptivePolicy(jitter=0.0))


@pytest.mark.parametrize(
    ("policy", "explored"),
    [
        (AdaptivePolicy(jitter=0.0), [2.0, 4.0, 8.0]),
        (AdaptivePolicy(jitter=0.0, min_gap=0.5, max_gap=4.0), [0.5, 1.0, 2.0, 4.0]),
    ],
    ids=["default", "min_gap 0.5"],
)
def test_an_id_handed_in_at_its_creation_is_explored_while_the_first_table_is_made(
    policy: AdaptivePolicy, explored: list[float]
) -> None:
    """A bare id handed in as it is created: looked at once, then its
    explorer polls at min_gap, twice that, ... of its age, while the
    session's first table is still being made (a second of CPU). They
    waited for the table, and a poll overdue by then was put min_gap
    later still: 2 s lost to a loaded machine's table was the 2 s poll."""

    async def body(kie: FakeKie, veo: VeoSession) -> None:
        kie.add_task("t1", complete_after=3600, quirks=Quirks(times_as_epoch_ms=True))
        start = asyncio.get_running_loop().time()
        with pytest.raises(WaitTimeoutError):
            await veo.task("t1").wait(timeout=explored[-1] + 0.7)
        ages = [r.started - start for r in kie.requests if r.task_id == "t1"]
        assert ages[0] < 0.1, ages  # the first look, before the age is known
        # (then the wait's last look, before its deadline)
        assert ages[1 : 1 + len(explored)] == pytest.approx(explored, abs=0.3), ages

    in_process(body, policy=policy)


def test_waits_shorter_than_min_gap_begun_one_after_another_still_poll() -> None:
    """Outer timeouts of 1 s around wait(), one after the other (a handler's
    budget, a progress loop): each new wait plans its next poll, and min_gap
    counts from the last poll, not from the plan (from the plan, every plan
    put the poll 2 s out and every wait ended first: one poll in 300 s)."""

    async def body(kie: FakeKie, veo: VeoSession) -> None:
        task = await veo.generate("a cat", model="veo3_fast")
        loop = asyncio.get_running_loop()
        start = loop.time()
        record = None
        while record is None and loop.time() - start < 600:
            try:
                record = await asyncio.wait_for(task.wait(), 1.0)
            except asyncio.TimeoutError:  # (not the builtin one before 3.11)
                continue
        assert record is not None, "never found in ten minutes of 1 s waits"
        assert record.is_done
        assert task.record is not None
        # Found as a plain wait finds it (its gaps within max_gap, 30 s); not
        # at all in ten minutes when every plan put the poll 2 s out.
        assert loop.time() - start < 60 + 2 * 30

    kie = FakeKie(seed=11, credits=1e9)
    kie.script_creates({"complete_after": 60.0})
    in_process(body, kie=kie, policy=AdaptivePolicy(jitter=0.0, explorers=0))


def test_a_wait_begun_again_keeps_exploring() -> None:
    """The explorer is the task's, not its first wait's: a wait cancelled
    before the first explorer poll and begun again polls at 2, 4, 8 s (it
    polled at the table's 40 s: the session's one explorer was spent)."""

    async def body(kie: FakeKie, veo: VeoSession) -> None:
        task = await veo.generate("a cat", model="veo3_fast")
        assert task.created_loop_time is not None
        with pytest.raises(asyncio.TimeoutError):  # (not the builtin one before 3.11)
            await asyncio.wait_for(task.wait(), 1.0)
        await task
        ages = _poll_ages(kie, task)
        assert ages, ages
        assert ages[-1] < 30.0, ages  # an explorer poll found it

    fast = FakeKie(seed=11, credits=1e9, time_scale=0.02)
    in_process(body, kie=fast, policy=AdaptivePolicy(jitter=0.0))


def _fresh_polls(model: str, count: int) -> list[float]:
    """The ages of a new task's first ``count`` polls, by the unlearned schedule."""
    schedule = STEADY.schedule()
    rng = random.Random(0)
    ages = [0.0]
    for polls in range(count):
        delay = schedule.next_delay(model=model, age=ages[-1], polls=polls, rng=rng)
        ages.append(ages[-1] + delay)
    return ages[1:]


def test_first_polls_differ_by_model() -> None:
    """After the early probe, the quality model's polls come later than the fast model's."""
    fast, quality = _fresh_polls("veo3_fast", 3), _fresh_polls("veo3", 3)
    assert fast[0] < 60  # the early probe for fast failures
    assert quality[0] < 60
    assert quality[1] > fast[1] + 30
    assert quality[1] > fast[2]  # veo3's second poll comes after veo3_fast's third


def test_the_first_delay_counts_from_the_creation() -> None:
    """A wait started 30 s after creating a veo3_fast task polls where the
    schedule puts a 30 s old task's next poll (ages count from creation: its
    early probe, 10 s on), not 30 s + the first delay."""

    async def body(kie: FakeKie, veo: VeoSession) -> None:
        task = await veo.generate("a cat")
        assert task.created_loop_time is not None
        await asyncio.sleep(30.0)
        await task
        first = _first_poll_after(kie, task.task_id, task.created_loop_time)
        assert _is_a_first_poll(first, "veo3_fast", age=30.0), first
        assert first < 30.0 + min(_possible_first_polls("veo3_fast")) - 10


def test_a_wait_started_past_the_early_probe_polls_at_once() -> None:
    """A created task first waited for once fast failures may have happened
    (the prior's 6 % of them, 5-40 s, by 50 s) is asked at once: it may have
    failed already; a fixed plan would leave it until its next planned poll."""

    async def body(kie: FakeKie, veo: VeoSession) -> None:
        task = await veo.generate("a cat", model="veo3")
        assert task.created_loop_time is not None
        await asyncio.sleep(50.0)
        await task
        first = _first_poll_after(kie, task.task_id, task.created_loop_time)
        # At once: the virtual clock also runs in real time, so a loaded
        # machine adds its delay (0.64 s seen under load).
        assert 50.0 <= first < 51.5, first

    in_process(body, policy=STEADY)


def test_an_explicit_session_policy_wins_over_the_model_delay() -> None:
    """A policy given to the session applies as is: first poll at its first_poll."""

    async def body(kie: FakeKie, veo: VeoSession) -> None:
        task = await veo.generate("a cat", model="veo3")
        assert task.created_loop_time is not None
        await task
        first = _first_poll_after(kie, task.task_id, task.created_loop_time)
        assert on_time([first], [5.0]), first

    in_process(body, policy=PollPolicy(first_poll=5.0))


def test_an_explicit_wait_policy_wins_over_the_model_delay() -> None:
    """A policy given to wait() applies as is."""

    async def body(kie: FakeKie, veo: VeoSession) -> None:
        task = await veo.generate("a cat", model="veo3")
        assert task.created_loop_time is not None
        await task.wait(policy=PollPolicy(first_poll=0.0, interval=10.0, max_interval=30.0))
        first = _first_poll_after(kie, task.task_id, task.created_loop_time)
        assert on_time([first], [0.0]), first

    in_process(body)


def test_batches_use_the_model_delay_too() -> None:
    """wait_many with the default policy also waits the model delay for created tasks."""

    async def body(kie: FakeKie, veo: VeoSession) -> None:
        task = await veo.generate("a cat", model="veo3_lite")
        assert task.created_loop_time is not None
        await veo.wait_many([task.task_id])
        first = _first_poll_after(kie, task.task_id, task.created_loop_time)
        assert _is_a_first_poll(first, "veo3_lite"), first

    in_process(body, policy=STEADY)


# -- extend, 1080p, 4K ---------------------------------------------------------------


def test_extend_waits_for_success_then_creates_a_new_task() -> None:
    """task.extend() waits for the task to succeed, then POSTs extend once: a new handle."""

    async def body(kie: FakeKie, veo: VeoSession) -> None:
        task = await veo.generate("a cat")
        ext = await task.extend("The cat jumps off the board", model="fast", seeds=22222)
        assert task.done()
        assert ext is not task
        assert veo.task(ext.task_id) is ext
        assert ext.request == ExtendRequest(
            task.task_id, "The cat jumps off the board", model="fast", seeds=22222
        )
        sent = requests_to(kie, "/api/v1/veo/extend")
        assert [r.json for r in sent] == [ext.request.to_wire()]
        extended = await ext
        assert extended.status is TaskStatus.SUCCESS
        # The reference: fullResultUrls after an extend (and only then).
        assert extended.response is not None
        assert len(extended.response.full_result_urls) == 1
        original = task.record
        assert original is not None
        assert original.response is not None
        assert original.response.full_result_urls == ()
        with pytest.raises(ValueError, match="is for task 'veo_task_x'"):
            await ext.extend(ExtendRequest("veo_task_x", "more"))

    in_process(body)


def test_a_refused_extend_names_the_task_it_extends() -> None:
    """An extend the service refuses raises an error naming the task it
    extends (it named none); a generate's refusal names none (no task exists)."""

    async def body(kie: FakeKie, veo: VeoSession) -> None:
        task = await veo.generate("a cat")
        await task
        kie.inject_create(Fault.body_code(400, "prompt flagged"))
        with pytest.raises(ContentPolicyError) as caught:
            await task.extend("more")
        assert caught.value.task_id == task.task_id
        assert task.task_id in str(caught.value)
        kie.inject_create(Fault.body_code(400, "prompt flagged"))
        with pytest.raises(ContentPolicyError) as generated:
            await veo.generate("a dog")
        assert generated.value.task_id is None
        assert len(requests_to(kie, "/api/v1/veo/extend")) == 1

    in_process(body)


def test_get_1080p_polls_processing_until_ready() -> None:
    """get_1080p waits for the task, then asks every 20-30 s while "processing"."""

    async def body(kie: FakeKie, veo: VeoSession) -> None:
        task = await veo.generate("a cat")
        url = await task.get_1080p(index=0)
        assert url.endswith("1080p-0.mp4")
        asks = requests_to(kie, "/api/v1/veo/get-1080p-video")
        assert len(asks) >= 3
        assert asks[-1].query == {"taskId": task.task_id, "index": "0"}
        gaps = [b.started - a.started for a, b in itertools.pairwise(asks)]
        assert all(20.0 <= gap <= 30.0 + 1e-6 for gap in gaps)
        record = task.record
        assert record is not None
        assert record.complete_time is not None

    in_process(body, FakeKie(seed=5, hd_delay=90.0, credits=1e9))


class _Around:
    """A Transport (the public seam) over a simulator's: every request passed
    on; the wrappers below answer some themselves."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def send(self, request: HttpRequest) -> RawResponse:
        answer: RawResponse = await self.inner.send(request)
        return answer

    async def aclose(self) -> None:
        await self.inner.aclose()


class _AnswersFirst1080p(_Around):
    """A public Transport: the simulator's, except that the first 1080p requests
    get ``answers`` (envelopes) instead, as another server words them."""

    def __init__(self, kie: FakeKie, answers: list[dict[str, Any]]) -> None:
        super().__init__(kie.transport())
        self._answers = answers

    async def send(self, request: HttpRequest) -> RawResponse:
        if request.path == "/api/v1/veo/get-1080p-video" and self._answers:
            body = json.dumps(self._answers.pop(0)).encode()
            return RawResponse(200, {"Content-Type": "application/json"}, body)
        return await super().send(request)


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        pytest.param(
            {"code": 400, "msg": "1080P video is not generated yet, please try again later"},
            "url",
            id="400-worded-otherwise",
        ),
        pytest.param({"code": 404, "msg": "task not found"}, NotFoundError, id="404"),
    ],
)
def test_get_1080p_asks_again_after_any_400_and_names_the_task_in_errors(
    answer: dict[str, Any], outcome: object
) -> None:
    """Kie's table: a 400 on the 1080p endpoint is "still processing", however
    worded: asked again, the URL comes. Another error ends the wait at once,
    naming the task."""

    async def main() -> None:
        kie = FakeKie(seed=3, hd_delay=0.0, credits=1e9)
        kie.add_task("veo_task_hd", complete_after=0.0)
        transport = _AnswersFirst1080p(kie, [{**answer, "data": None}])
        async with VeoSession(API_KEY, transport=transport) as veo:
            task = veo.task("veo_task_hd")
            if outcome == "url":
                url = await task.get_1080p(timeout=120.0)
                assert url.startswith("https://")
                assert len(requests_to(kie, "/api/v1/veo/get-1080p-video")) == 1
            else:
                assert isinstance(outcome, type)
                with pytest.raises(outcome) as caught:
                    await task.get_1080p(timeout=120.0)
                assert caught.value.task_id == "veo_task_hd"
                assert requests_to(kie, "/api/v1/veo/get-1080p-video") == []
        await kie.close()

    run_virtual(main)


def test_an_upgrade_checks_its_index_and_time_before_asking() -> None:
    """An index past the task's videos is a ValueError, and a deadline already
    passed a WaitTimeoutError, before any upgrade request (a 4K one costs)."""

    async def body(kie: FakeKie, veo: VeoSession) -> None:
        kie.add_task("veo_task_a", complete_after=0.0)
        task = veo.task("veo_task_a")
        record = await task.wait()
        assert len(record.result_urls) == 1
        with pytest.raises(ValueError, match="index 1 is out of range"):
            await task.get_1080p(index=1)
        with pytest.raises(ValueError, match="index 5 is out of range"):
            await task.get_4k(index=5)
        charged = kie.charged
        with pytest.raises(TimeoutError, match="the 4K video not ready after 0 s"):
            await task.get_4k(timeout=0)
        assert requests_to(kie, "/api/v1/veo/get-4k-video") == []
        assert requests_to(kie, "/api/v1/veo/get-1080p-video") == []
        assert kie.charged == charged
        assert task.error is None  # the task itself succeeded
        with pytest.raises(TypeError, match="return_exceptions must be True or False"):
            await veo.wait_many(["veo_task_a"], return_exceptions="yes")  # type: ignore[arg-type]

    in_process(body, FakeKie(credits=1000.0))


def test_get_1080p_times_out_at_its_deadline() -> None:
    """Not ready by the deadline: WaitTimeoutError, close to the timeout."""

    async def body(kie: FakeKie, veo: VeoSession) -> None:
        kie.add_task("veo_task_a", complete_after=0.0)
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(WaitTimeoutError) as caught:
            await veo.task("veo_task_a").get_1080p(timeout=100.0)
        assert 100.0 <= loop.time() - start <= 101.0
        # The task itself finished: the message says what was not ready.
        assert caught.value.waiting_for == "the 1080p video"
        assert str(caught.value).startswith("the 1080p video not ready after 100 s")
        assert pickle.loads(pickle.dumps(caught.value)).waiting_for == "the 1080p video"

    in_process(body, FakeKie(hd_delay=1000.0))


class FirstUpgrade429(_Around):
    """A Transport (the public seam) over a simulator's: the first request to
    ``path`` is answered 429 with ``Retry-After: 300``, a 5-minute pause."""

    def __init__(self, inner: Any, path: str) -> None:
        super().__init__(inner)
        self.path, self.hit = path, 0

    async def send(self, request: HttpRequest) -> RawResponse:
        if request.path == self.path:
            self.hit += 1
            if self.hit == 1:
                body = json.dumps({"code": 429, "msg": "rate limited", "data": None}).encode()
                return RawResponse(429, {"Retry-After": "300"}, body)
        return await super().send(request)


@pytest.mark.parametrize("path", ["/api/v1/veo/get-1080p-video", "/api/v1/veo/get-4k-video"])
def test_an_upgrade_keeps_its_deadline_behind_a_429_pause(path: str) -> None:
    """get_1080p / get_4k(timeout=60) end at 60 s even when their next request
    waits behind a 5-minute 429 pause (the session's, or the creation budget's
    for 4K); they used to end when the pause did, at 300 s."""

    async def main() -> None:
        kie = FakeKie(seed=11, credits=1e9, hd_delay=30.0, uhd_delay=30.0)
        kie.add_task("veo_task_a", complete_after=0.0)
        transport = FirstUpgrade429(kie.transport(), path)
        async with VeoSession(API_KEY, transport=transport) as veo:
            task = veo.task("veo_task_a")
            await task.wait(timeout=60)
            loop = asyncio.get_running_loop()
            start = loop.time()
            upgrade = task.get_1080p if "1080p" in path else task.get_4k
            with pytest.raises(WaitTimeoutError) as caught:
                await upgrade(timeout=60.0)
            assert 59.0 <= loop.time() - start <= 60.5
            assert caught.value.waiting_for in ("the 1080p video", "the 4K video")
        await kie.close()

    run_virtual(main)


@pytest.mark.parametrize("upgrade", ["1080p", "4k"])
@pytest.mark.parametrize("stop", ["aclose", "401"])
def test_an_upgrade_between_two_asks_ends_when_the_session_stops(upgrade: str, stop: str) -> None:
    """get_1080p / get_4k sleeping between two asks when the session closes
    (or a 401 stops it) end at once with what a new request would meet: they
    slept out their gap, and asked again, for up to a minute after."""

    async def main() -> None:
        kie = FakeKie(seed=3, hd_delay=1000.0, uhd_delay=1000.0, credits=1e9)
        kie.add_task("veo_task_a", complete_after=0.0)
        kie.add_task("veo_task_b", complete_after=1e6)
        veo = VeoSession(API_KEY, transport=kie.transport())
        task = veo.task("veo_task_a")
        call = asyncio.ensure_future(task.get_1080p() if upgrade == "1080p" else task.get_4k())
        await asyncio.sleep(5.0)  # asked once: "processing"; sleeping 20-60 s
        asked = kie.total_requests
        loop = asyncio.get_running_loop()
        stopped_at = loop.time()
        if stop == "aclose":
            await veo.aclose()
            expected: type[Exception] = SessionClosedError
        else:
            kie.inject(Fault.body_code(401, "You do not have access permissions"))
            with pytest.raises(AuthenticationError):
                await veo.task("veo_task_b").refresh()
            expected = AuthenticationError
        with pytest.raises(expected):
            await asyncio.wait_for(call, 1.0)
        assert loop.time() - stopped_at < 1.0
        assert kie.total_requests == asked + (1 if stop == "401" else 0)
        await veo.aclose()
        await kie.close()

    run_virtual(main)


class _FirstCreate429(_Around):
    """A Transport over a simulator's: the first create is answered, half a
    second later, HTTP 429 with ``Retry-After: 5``."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.creates: list[float] = []

    async def send(self, request: HttpRequest) -> RawResponse:
        if request.method == "POST" and request.path == "/api/v1/veo/generate":
            self.creates.append(asyncio.get_running_loop().time())
            if len(self.creates) == 1:
                await asyncio.sleep(0.5)
                body = json.dumps({"code": 429, "msg": "rate limited", "data": None}).encode()
                return RawResponse(429, {"Retry-After": "5"}, body)
        return await super().send(request)


def test_a_create_waiting_for_a_session_slot_does_not_go_inside_a_creates_pause() -> None:
    """A create holding its creation slot, waiting for a session slot when
    another create's 429 paused creating, went out as soon as that create gave
    its session slot back: inside the pause. It queues again behind it."""

    async def main() -> None:
        kie = FakeKie(seed=1, credits=1e9)
        kie.add_task("veo_b", complete_after=0.0)
        kie.inject(Fault.slow(3.0))
        transport = _FirstCreate429(kie.transport())
        async with VeoSession(API_KEY, transport=transport, concurrency=2) as veo:
            held = asyncio.ensure_future(veo.record_info("veo_b"))  # one session slot, 3 s
            await asyncio.sleep(0.1)
            made = await asyncio.gather(veo.generate("a cat"), veo.generate("a dog"))
            assert len({task.task_id for task in made}) == 2
            await held
        first, *later = transport.creates
        assert len(later) == 2  # the refused one resent, and the other
        assert all(at >= first + 0.5 + 5.0 for at in later), [at - first for at in later]
        await kie.close()

    run_virtual(main)


class HeldUpgrades(_Around):
    """A Transport over a simulator's whose requests to ``path`` are never
    answered (held until cancelled)."""

    def __init__(self, inner: Any, path: str) -> None:
        super().__init__(inner)
        self.path, self.held = path, 0

    async def send(self, request: HttpRequest) -> RawResponse:
        if request.path == self.path:
            self.held += 1
            await asyncio.Event().wait()
        return await super().send(request)


@pytest.mark.parametrize("path", ["/api/v1/veo/get-1080p-video", "/api/v1/veo/get-4k-video"])
def test_an_upgrade_whose_request_is_in_flight_ends_when_a_401_stops_the_session(
    path: str,
) -> None:
    """A 401 that stops the session ends get_1080p / get_4k at once even with
    their request in flight (as it ends the polls in flight): they waited for
    that request's own answer, up to request_timeout (30 s) later."""

    async def main() -> None:
        kie = FakeKie(seed=5, credits=1e9)
        kie.add_task("veo_task_a", complete_after=0.0)
        kie.add_task("veo_task_b", complete_after=1e6)
        transport = HeldUpgrades(kie.transport(), path)
        async with VeoSession(API_KEY, transport=transport) as veo:
            task = veo.task("veo_task_a")
            await task.wait(timeout=60)
            upgrade = task.get_1080p if "1080p" in path else task.get_4k
            call = asyncio.ensure_future(upgrade())
            await asyncio.sleep(5.0)
            assert transport.held == 1
            loop = asyncio.get_running_loop()
            stopped_at = loop.time()
            kie.inject(Fault.body_code(401, "You do not have access permissions"))
            with pytest.raises(AuthenticationError):
                await veo.task("veo_task_b").refresh()
            with pytest.raises(AuthenticationError):
                await asyncio.wait_for(call, 1.0)
            assert loop.time() - stopped_at < 1.0
            assert veo.stats.in_flight == 0
        await kie.close()

    run_virtual(main)


def test_a_401_leaves_a_create_in_flight_to_its_own_answer() -> None:
    """A generate() in flight when a 401 stops the session is not cut short
    (it may have created a task: its own answer says): only the reads and
    the 4K asks, which are asked again anyway, end at once."""

    async def main() -> None:
        kie = FakeKie(seed=5, credits=1e9)
        kie.add_task("veo_task_b", complete_after=1e6)
        kie.inject_create(Fault.slow(10.0))
        async with VeoSession(API_KEY, transport=kie.transport()) as veo:
            loop = asyncio.get_running_loop()
            call = asyncio.ensure_future(veo.generate("a cat surfing"))
            await asyncio.sleep(1.0)
            kie.inject(Fault.body_code(401, "You do not have access permissions"))
            with pytest.raises(AuthenticationError):
                await veo.task("veo_task_b").refresh()
            created = await call  # the slow answer, 9 s later, is the create's own
            assert loop.time() >= 10.0
            assert created.task_id
        await kie.close()

    run_virtual(main)


def test_get_1080p_of_a_fallback_video_fails_at_once() -> None:
    """A fallback-model record is refused with a clear error before any 1080p request."""

    async def body(kie: FakeKie, veo: VeoSession) -> None:
        kie.add_task("veo_task_fb", complete_after=0.0, fallback=True)
        with pytest.raises(ValueError, match="fallback model"):
            await veo.task("veo_task_fb").get_1080p()
        assert requests_to(kie, "/api/v1/veo/get-1080p-video") == []
        with pytest.raises(ValueError, match="index"):
            await veo.task("veo_task_fb").get_1080p(index=-1)

    in_process(body)


def test_get_4k_requests_once_and_waits_until_done() -> None:
    """get_4k POSTs once (one charge), re-asks through "processing" 422s, and
    returns the URLs of the "generated successfully" 422."""

    async def body(kie: FakeKie, veo: VeoSession) -> None:
        kie.add_task("veo_task_a", complete_after=0.0)
        urls = await veo.task("veo_task_a").get_4k(index=0)
        assert urls == ("https://tempfile.example/veo/veo_task_a/4k-0.mp4",)
        asks = requests_to(kie, "/api/v1/veo/get-4k-video")
        assert len(asks) >= 3
        assert asks[0].json == {"taskId": "veo_task_a", "index": 0}
        assert kie.charged == 120.0

    in_process(body, FakeKie(uhd_delay=300.0, credits=1000.0))


def test_the_4k_answers_are_told_apart_by_msg_and_data() -> None:
    """422 "processing" with null urls is not ready; 422 with urls is done; other 422s raise."""

    def raw(payload: dict[str, Any]) -> RawResponse:
        return RawResponse(200, {}, json.dumps(payload).encode())

    processing = {"code": 422, "msg": "4k is processing.", "data": {"resultUrls": None}}
    done = {"code": 422, "msg": "has been generated successfully",
            "data": {"taskId": "t", "resultUrls": ["https://r/4k.mp4"]}}
    in_info = {"code": 200, "msg": "ok", "data": {"info": {"resultUrls": '["https://r/a"]'}}}
    assert decode_4k(raw(processing)) is None
    for wording in ("4K video is being generated, please wait", "4K is being processed"):
        assert decode_4k(raw({"code": 422, "msg": wording, "data": None})) is None, wording
    # Refusals that share a word with a wait are raised, not waited out.
    refusals = ("task pending deletion", "Queued tasks limit exceeded", "Submitted params invalid")
    for refusal in refusals:
        with pytest.raises(APIError):
            decode_4k(raw({"code": 422, "msg": refusal, "data": None}))
    limited = {"code": 429, "msg": "Too many requests, please wait", "data": None}
    with pytest.raises(RateLimitError):
        decode_1080p(raw(limited))
    assert decode_4k(raw(done)) == ("https://r/4k.mp4",)
    assert decode_4k(raw(in_info)) == ("https://r/a",)
    assert decode_4k(raw({"code": 200, "msg": "success", "data": {"taskId": "t"}})) is None
    with pytest.raises(APIError):
        decode_4k(raw({"code": 422, "msg": "taskId is invalid", "data": None}))
    # A 422 refusing the request with a data object (it was read as
    # "processing" and asked again, each ask paid, to the deadline).
    for invalid in ("Invalid parameter: index", "taskId is required", "index must be 0 or 1"):
        with pytest.raises(APIError, match=invalid) as refused:
            decode_4k(raw({"code": 422, "msg": invalid, "data": {}}))
        assert not refused.value.retryable
    # An unknown wording with a data object is still waited out.
    assert decode_4k(raw({"code": 422, "msg": "please wait", "data": {"taskId": "t"}})) is None
    assert decode_1080p(raw({"code": 400, "msg": "1080P is processing", "data": None})) is None
    # On the 1080p endpoint every 400 means "not ready yet", whatever it says.
    later = "1080P video is not generated yet, please try again later"
    assert decode_1080p(raw({"code": 400, "msg": later, "data": None})) is None
    assert decode_1080p(raw({"code": 400, "msg": "bad request", "data": None})) is None
    with pytest.raises(NotFoundError):
        decode_1080p(raw({"code": 404, "msg": "task not found", "data": None}))
    assert decode_1080p(raw({"code": 422, "msg": "1080p is generating", "data": None})) is None
    # "null" spellings of data are "not ready yet" (they raised a ResponseError
    # that ended the call), and a bare URL for data is the answer.
    for nothing in ("null", "", [], "  "):
        assert decode_1080p(raw({"code": 200, "msg": "success", "data": nothing})) is None
    bare = {"code": 200, "msg": "success", "data": " https://r/1080.mp4\n"}
    assert decode_1080p(raw(bare)) == "https://r/1080.mp4"
    # Other text is no answer to wait out for 15 minutes: raised at once.
    for other in ("index out of range", ["/relative/1080.mp4"], [{"url": "https://r/x"}]):
        with pytest.raises(ResponseError, match="resultUrl"):
            decode_1080p(raw({"code": 200, "msg": "success", "data": other}))
    # A URL field of JSON-like text nested too deep is no URL (it raised a
    # bare RecursionError, out of the error tree).
    deep = "[" * 100_000
    assert decode_1080p(raw({"code": 200, "msg": "ok", "data": {"resultUrl": deep}})) is None
    done_deep = {"code": 422, "msg": "has been generated successfully"}
    done_deep["data"] = {"resultUrls": deep}
    assert decode_4k(raw(done_deep)) is None


@pytest.mark.parametrize(
    ("data", "link"),
    [
        ("https://r/v.mp4?sig=1", "https://r/v.mp4?sig=1"),
        ("HTTPS://r/v.mp4", "HTTPS://r/v.mp4"),
        (" https://r/v.mp4\n", "https://r/v.mp4"),
        ({"url": "http://r/v.mp4"}, "http://r/v.mp4"),
    ],
)
def test_a_download_link_is_read_as_the_upgrades_urls_are(data: Any, link: str) -> None:
    """download_url() read its answer's link case-sensitively and unstripped
    (``HTTPS://`` or a trailing newline was "no download URL") where the 1080p
    and 4K answers' URLs were read leniently."""
    body = json.dumps({"code": 200, "msg": "success", "data": data}).encode()
    assert decode_link(RawResponse(200, {}, body)) == link


@pytest.mark.parametrize("data", ["file:///etc/passwd", "null", "", None, 3])
def test_a_download_answer_without_a_link_is_a_response_error(data: Any) -> None:
    """What is no http(s) URL is no link."""
    body = json.dumps({"code": 200, "msg": "success", "data": data}).encode()
    with pytest.raises(ResponseError, match="download URL"):
        decode_link(RawResponse(200, {}, body))


@pytest.mark.parametrize("null", ["null", "None", " NULL ", ""])
def test_null_spellings_in_upgrade_answers_are_no_url(null: str) -> None:
    """A 1080p resultUrl of "null" (any spelling) is not there yet (the wait goes
    on, and a resultUrls list is read instead); "null" entries of a 4K list are
    dropped, as from a record's lists."""

    def raw(data: dict[str, Any]) -> RawResponse:
        envelope = {"code": 200, "msg": "success", "data": data}
        return RawResponse(200, {}, json.dumps(envelope).encode())

    assert decode_1080p(raw({"resultUrl": null})) is None
    assert decode_1080p(raw({"resultUrl": null, "resultUrls": [null, "https://r/hd.mp4"]})) == (
        "https://r/hd.mp4"
    )
    assert decode_4k(raw({"resultUrls": [null, "https://r/4k.mp4"]})) == ("https://r/4k.mp4",)
    assert decode_4k(raw({"resultUrls": [null]})) is None


def test_only_http_urls_come_out_of_the_upgrade_answers() -> None:
    """A 1080p resultUrl JSON-encoded as a list gives its URL; a text that is
    no http(s) URL ("1080P is processing", a relative path) is not ready yet,
    as is a 4K list of such texts: they were handed back as "URLs" (that
    download_url() itself refuses)."""

    def raw(data: dict[str, Any]) -> RawResponse:
        envelope = {"code": 200, "msg": "success", "data": data}
        return RawResponse(200, {}, json.dumps(envelope).encode())

    assert decode_1080p(raw({"resultUrl": '["https://r/hd.mp4"]'})) == "https://r/hd.mp4"
    assert decode_1080p(raw({"resultUrl": " https://r/hd.mp4 "})) == "https://r/hd.mp4"
    assert decode_1080p(raw({"resultUrl": "HTTPS://R/hd.mp4"})) == "HTTPS://R/hd.mp4"
    assert decode_1080p(raw({"resultUrl": "1080P is processing"})) is None
    assert decode_1080p(raw({"resultUrl": "/relative/path.mp4"})) is None
    assert decode_4k(raw({"resultUrls": ["4k is processing"]})) is None
    assert decode_4k(raw({"resultUrls": ["4k is processing", "http://r/4k.mp4"]})) == (
        "http://r/4k.mp4",
    )
    with pytest.raises(ResponseError):
        decode_1080p(raw({"resultUrl": 5}))


def test_a_4k_said_generated_without_its_urls_is_asked_again() -> None:
    """A repeated 4K request answered 422 "has been generated successfully"
    with no URL: not ready yet (asked again), not an error whose message says
    it succeeded ("[422] 4k has been generated successfully", raised at once
    after the 4K credits were spent)."""
    envelope = {"code": 422, "msg": "4k has been generated successfully", "data": None}
    assert decode_4k(RawResponse(422, {}, json.dumps(envelope).encode())) is None
    refused = {"code": 422, "msg": "taskId is invalid", "data": None}
    with pytest.raises(APIError):
        decode_4k(RawResponse(422, {}, json.dumps(refused).encode()))


# -- credits, download links ---------------------------------------------------------


def test_credits_is_a_float_and_may_be_fractional() -> None:
    """credits() answers the balance as a float."""

    async def body(kie: FakeKie, veo: VeoSession) -> None:
        kie.credits = 12.75
        balance = await veo.credits()
        assert balance == 12.75
        assert isinstance(balance, float)

    in_process(body)


def test_download_url_returns_the_temporary_link() -> None:
    """download_url() POSTs {url} and returns the link; a non-http URL fails before I/O."""

    async def body(kie: FakeKie, veo: VeoSession) -> None:
        with pytest.raises(ValueError, match="http"):
            await veo.download_url("file:///etc/passwd")
        assert kie.total_requests == 0
        url = "https://tempfile.example/veo/veo_task_a/video.mp4"
        link = await veo.download_url(url)
        assert link.startswith(url + "?")
        assert requests_to(kie, "/api/v1/common/download-url")[0].json == {"url": url}
        with pytest.raises(APIError) as caught:
            await veo.download_url("https://elsewhere.example/v.mp4")
        assert caught.value.code == 422

    in_process(body)


def test_a_create_429_counts_as_rate_limited_not_as_a_session_pause() -> None:
    """Stats: a create 429 shows in create_rate_limited, not in rate_limited."""

    async def body(kie: FakeKie, veo: VeoSession) -> None:
        kie.inject_create(Fault.body_429())
        await veo.generate("a cat")
        assert veo.stats.create_rate_limited == 1
        assert veo.stats.rate_limited == 0
        # Its pause is counted too, apart from the session's (none counted it).
        assert veo.stats.create_pauses == 1
        assert veo.stats.pauses == 0

    in_process(body)


def test_a_rate_limit_that_never_ends_raises_after_the_resends() -> None:
    """A create meeting 429 six times raises the RateLimitError."""

    async def body(kie: FakeKie, veo: VeoSession) -> None:
        kie.inject_create(Fault.body_429(), 6)
        with pytest.raises(RateLimitError):
            await veo.generate("a cat")
        assert kie.created == 0

    in_process(body)


# -- callbacks -----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def hook_server(
    hook: Callable[[web.Request], Awaitable[web.Response]],
) -> AsyncIterator[str]:
    """A callback receiver on loopback: ``hook`` answers POSTs to the URL yielded."""
    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    finally:
        await runner.cleanup()


async def test_callbacks_are_posted_and_signed() -> None:
    """A created task's outcome is POSTed to its callBackUrl, signed with HMAC-SHA256."""
    received: list[tuple[dict[str, Any], dict[str, str]]] = []
    got = asyncio.Event()

    async def hook(request: web.Request) -> web.Response:
        received.append((await request.json(), dict(request.headers)))
        got.set()
        return web.Response(text="ok")

    kie = FakeKie(time_scale=0.001, callback_secret="s3cret", seed=2)
    try:
        async with hook_server(hook) as url:
            async with VeoSession(API_KEY, transport=kie.transport()) as veo:
                task = await veo.generate("a cat", callback_url=url)
                await asyncio.wait_for(got.wait(), 10.0)
            payload, headers = received[0]
            assert payload["code"] == 200
            assert payload["data"]["taskId"] == task.task_id
            assert payload["data"]["info"]["resultUrls"]
            assert json.loads(payload["data"]["promptJson"])["prompt"] == "a cat"
            stamp = headers["X-Webhook-Timestamp"]
            expected = base64.b64encode(
                hmac.new(b"s3cret", f"{task.task_id}.{stamp}".encode(), hashlib.sha256).digest()
            ).decode()
            assert headers["X-Webhook-Signature"] == expected
            # Counted once the simulator has read our answer, a moment after the hook ran.
            assert await eventually(lambda: kie.callbacks_delivered == 1)
    finally:
        await kie.close()


@pytest.mark.parametrize("balance", ["1" + "0" * 400, "1e999", '"nan"', "true", '"lots"'])
def test_a_balance_that_is_no_finite_number_is_a_response_error(balance: str) -> None:
    """credits(): a balance that is no finite number (an integer of 400 digits
    raised a bare OverflowError, no VeoError) is a ResponseError."""
    body = f'{{"code": 200, "msg": "success", "data": {balance}}}'.encode()
    with pytest.raises(ResponseError):
        decode_credits(RawResponse(200, {}, body))


def test_a_create_whose_intent_is_being_written_does_not_go_inside_a_creates_pause() -> None:
    """A create's ``before_send`` (a store writing its intent) awaited while
    another create's 429 paused creating: it went out as the write ended,
    inside the pause. It waits the pause out (its intent written once)."""
    from veo_async._create import submit
    from veo_async._http import ApiKey
    from veo_async._limits import RequestBudget
    from veo_async._requester import Requester

    async def main() -> None:
        kie = FakeKie(seed=1, credits=1e9)
        transport = _FirstCreate429(kie.transport())
        requester = Requester(transport, ApiKey(API_KEY), RequestBudget(4))
        writes: list[float] = []
        loop = asyncio.get_running_loop()

        async def slow_intent() -> None:
            writes.append(loop.time())
            await asyncio.sleep(1.0)

        first = asyncio.ensure_future(submit(requester, GenerateRequest("a cat")))
        await asyncio.sleep(0.1)
        second = await submit(requester, GenerateRequest("a dog"), before_send=slow_intent)
        assert second
        await first
        assert len(writes) == 1
        start, *later = transport.creates
        assert all(at >= start + 0.5 + 5.0 for at in later), [at - start for at in later]
        await requester.aclose()
        await kie.close()

    run_virtual(main)


# -- answers sent unasked on a kept-alive connection ----------------------------------------------


def _http_answer(payload: dict[str, Any]) -> bytes:
    body = json.dumps(payload).encode()
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )


class _StaleAnswers:
    """A loopback server that creates a task for each generate and answers
    it, but also sends answers nobody asked for on the kept-alive connection
    (``how``): the first create's answer twice at once ("twice"), again a
    moment later ("later"), again ahead of the next answer on that
    connection ("ahead"), or, a moment after each record-info answer,
    another task's record ("record")."""

    def __init__(self, how: str) -> None:
        self.how = how
        self.created: dict[str, str] = {}  # task id -> prompt
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stale = b""
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if head.startswith(b"GET"):
                    task_id = head.split(b"taskId=")[1].split(b" ")[0].decode()
                    running = {"taskId": task_id, "successFlag": 0}
                    answer = _http_answer({"code": 200, "msg": "success", "data": running})
                    writer.write(stale + answer)
                    stale = b""
                    if self.how == "record":  # another task's record, unasked
                        await writer.drain()
                        await asyncio.sleep(0.02)  # the connection is idle in the pool
                        writer.write(
                            _http_answer(
                                {
                                    "code": 200,
                                    "msg": "success",
                                    "data": {"taskId": "veo_stranger", "successFlag": 0},
                                }
                            )
                        )
                    await writer.drain()
                    continue
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                prompt = json.loads(await reader.readexactly(length))["prompt"]
                task_id = f"veo_task_{len(self.created) + 1:04d}"
                self.created[task_id] = prompt
                answer = _http_answer({"code": 200, "msg": "success", "data": {"taskId": task_id}})
                first = len(self.created) == 1
                writer.write(stale + answer + (answer if first and self.how == "twice" else b""))
                stale = answer if first and self.how == "ahead" else b""
                await writer.drain()
                if first and self.how == "later":
                    await asyncio.sleep(0.02)  # the connection is idle in the pool
                    writer.write(answer)
                    await writer.drain()
                if b"connection: close" in head.lower():
                    break
        writer.close()


@pytest.mark.loopback
@pytest.mark.parametrize("how", ["twice", "later", "ahead", "record"])
async def test_an_answer_sent_unasked_is_never_taken_for_a_creates(how: str) -> None:
    """A create's answer sent again unasked (at once, or ahead of the next
    answer on that connection), or a record sent unasked after a poll's: no
    create takes an answer that was not its own. Each prompt gets the task
    the server made for it, or SubmitUncertainError (it may exist: never
    resent); no task the server made is lost from sight, and no id is handed
    out twice. (The second create took the first's id, and the task made for
    it was never seen.)"""
    server = _StaleAnswers(how)
    got: dict[str, str | None] = {}
    async with (
        server as url,
        VeoSession("k" * 16, base_url=url, concurrency=1, create_rate=10_000) as veo,
    ):
        for prompt in ("first", "second", "third", "fourth"):
            if how == "record":
                # Refused when it reads the record sent unasked after the last (as it must).
                with contextlib.suppress(ResponseError):
                    await veo.record_info("veo_polled")
                await asyncio.sleep(0.05)  # the unasked record waits in the idle connection
            try:
                got[prompt] = (await veo.generate(prompt)).task_id
            except SubmitUncertainError as uncertain:
                got[prompt] = uncertain.task_id
            await asyncio.sleep(0.05)
    made = {prompt: task_id for task_id, prompt in server.created.items()}
    for prompt, task_id in got.items():
        assert task_id in (None, made.get(prompt)), (prompt, got, made)
    handed = [task_id for task_id in got.values() if task_id is not None]
    assert len(handed) == len(set(handed))
    # Every task made was handed to its create, or that create is uncertain.
    assert all(got[prompt] in (task_id, None) for prompt, task_id in made.items())
    if how != "record":  # (a create reading a stale record may not have sent its POST)
        assert len(made) >= 3


@pytest.mark.loopback
async def test_a_create_never_goes_out_on_a_pooled_connection() -> None:
    """Each create (and 4K request) opens a connection of its own and closes
    it: sent on a pooled one that the server closed as it went idle (servers
    close idle connections after 2-5 s, some sooner), it failed with no
    answer and was reported uncertain, maybe charged, though it never
    arrived. Polls still share pooled connections."""
    connections: list[list[str]] = []  # the requests each connection carried

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        carried: list[str] = []
        connections.append(carried)
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                carried.append(head.split(b" ")[0].decode())
                if head.startswith(b"POST"):
                    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                    await reader.readexactly(length)
                    data: dict[str, Any] = {"taskId": f"veo_task_{len(connections)}"}
                else:
                    task_id = head.split(b"taskId=")[1].split(b" ")[0].decode()
                    data = {"taskId": task_id, "successFlag": 0}
                writer.write(_http_answer({"code": 200, "msg": "success", "data": data}))
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    async with server, VeoSession("k" * 16, base_url=url, create_rate=10_000) as veo:
        for n in range(3):
            await veo.record_info("veo_polled")
            await veo.record_info("veo_polled")
            await veo.generate(f"prompt {n}")
    posts = [carried for carried in connections if "POST" in carried]
    assert posts == [["POST"]] * 3
    gets = [carried for carried in connections if "GET" in carried]
    assert sum(map(len, gets)) == 6
    assert len(gets) == 1  # the polls' connection, kept


@pytest.mark.parametrize(
    ("task_id", "expected"),
    [
        pytest.param("veo_task_1", "veo_task_1", id="text"),
        pytest.param(" veo_task_1 ", "veo_task_1", id="padded"),
        pytest.param(123456789, "123456789", id="number"),
    ],
)
def test_a_creates_task_id_is_read_as_text(task_id: object, expected: str) -> None:
    """A create's answer names its task; a number (the reference says a
    string; the service's ids are text) is read as its digits, not thrown
    away (the create was then uncertain, without the id it was given)."""
    body = json.dumps({"code": 200, "msg": "success", "data": {"taskId": task_id}}).encode()
    assert decode_task_id(RawResponse(200, {}, body)) == expected


@pytest.mark.parametrize("task_id", [True, 1.5, None, "null", ["x"]])
def test_a_creates_answer_without_a_usable_task_id_is_unreadable(task_id: object) -> None:
    """A boolean, a fraction, a list or an absent id is no task id: ResponseError
    (a create reports it as uncertain)."""
    body = json.dumps({"code": 200, "msg": "success", "data": {"taskId": task_id}}).encode()
    with pytest.raises(ResponseError, match="taskId"):
        decode_task_id(RawResponse(200, {}, body))


def test_a_4k_version_said_unavailable_is_final() -> None:
    """Kie's documented 4K failure (500 "The 4K version of this video is
    unavailable. Please try a different video.") is a final answer: raised,
    not retryable, so get_4k stops asking (each ask a paid POST; it asked
    every 30-60 s to its deadline). An ordinary 500 stays retryable."""
    final = {
        "code": 500,
        "msg": "The 4K version of this video is unavailable. Please try a different video.",
        "data": None,
    }
    with pytest.raises(ServerError) as caught:
        decode_4k(RawResponse(200, {}, json.dumps(final).encode()))
    assert caught.value.retryable is False
    ordinary = {"code": 500, "msg": "Internal Server Error", "data": None}
    with pytest.raises(ServerError) as caught:
        decode_4k(RawResponse(200, {}, json.dumps(ordinary).encode()))
    assert caught.value.retryable is True
    # An outage that says "unavailable" is no answer about the video: asked again.
    for code, outage in ((503, "Service Unavailable"), (455, "Service temporarily unavailable")):
        body = json.dumps({"code": code, "msg": outage, "data": None}).encode()
        with pytest.raises(APIError) as caught:
            decode_4k(RawResponse(200, {}, body))
        assert caught.value.retryable is True, outage


@pytest.mark.loopback
async def test_get_4k_stops_at_a_version_said_unavailable() -> None:
    """get_4k asks once, reads the unavailable answer, and raises it (it
    asked again, a paid POST each time, every 30-60 s to its deadline)."""
    asks: list[dict[str, Any]] = []
    unavailable = "The 4K version of this video is unavailable. Please try a different video."

    async def handler(request: web.Request) -> web.Response:
        if request.method == "POST":
            asks.append(await request.json())
            return web.json_response({"code": 500, "msg": unavailable, "data": None})
        record = {"taskId": "veo_a", "successFlag": 1, "response": {"resultUrls": ["https://r/v"]}}
        return web.json_response({"code": 200, "msg": "success", "data": record})

    async with (
        serving(handler) as url,
        VeoSession("k" * 16, base_url=url) as veo,
    ):
        with pytest.raises(ServerError, match="unavailable"):
            await veo.task("veo_a").get_4k(index=0, timeout=1200)
    assert asks == [{"taskId": "veo_a", "index": 0}]


def test_two_get_4k_calls_at_once_send_one_first_request() -> None:
    """Two get_4k() of one video at once: one first request (each may be
    charged: both went out together); the second asks once the first has
    its URLs, and is told "already generated", with them."""

    async def body(kie: FakeKie, veo: VeoSession) -> None:
        kie.add_task("veo_task_a", complete_after=0.0)
        task = veo.task("veo_task_a")
        first, second = await asyncio.gather(task.get_4k(index=0), task.get_4k(index=0))
        assert first == second == ("https://tempfile.example/veo/veo_task_a/4k-0.mp4",)
        asks = requests_to(kie, "/api/v1/veo/get-4k-video")
        assert len([ask for ask in asks if ask.code == 200]) == 1
        # While the 4K video rendered, one caller asked, 30-60 s apart (both
        # asked: the first two requests went out together); the second asks
        # once, after the first's last ask.
        rendering = [ask.started for ask in asks[:-2]]
        assert all(b - a >= 29.0 for a, b in itertools.pairwise(rendering))
        assert asks[-1].started >= asks[-2].finished
        assert kie.charged == 120.0

    in_process(body, FakeKie(uhd_delay=300.0, credits=1000.0))


def test_a_get_4k_waiting_for_another_times_out_or_is_cancelled_cleanly() -> None:
    """A get_4k waiting for another caller's ask of the same video: its own
    deadline ends it (WaitTimeoutError, having sent nothing); cancelled, it
    raises CancelledError; neither leaves the video's turn taken: a later
    call still gets the URLs."""

    async def body(kie: FakeKie, veo: VeoSession) -> None:
        kie.add_task("veo_task_a", complete_after=0.0)
        task = veo.task("veo_task_a")
        await task.wait(timeout=60)
        first = asyncio.ensure_future(task.get_4k(index=0))
        await asyncio.sleep(1.0)
        asked = len(requests_to(kie, "/api/v1/veo/get-4k-video"))
        with pytest.raises(WaitTimeoutError, match="4K"):
            await task.get_4k(index=0, timeout=5.0)
        cancelled = asyncio.ensure_future(task.get_4k(index=0))
        await asyncio.sleep(1.0)
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        assert len(requests_to(kie, "/api/v1/veo/get-4k-video")) == asked
        urls = await first
        assert await task.get_4k(index=0, timeout=120) == urls

    in_process(body, FakeKie(uhd_delay=300.0, credits=1000.0))


@pytest.mark.parametrize("cancels", [1, 2])
async def test_a_4k_turn_handed_over_as_its_waiter_is_cancelled_is_passed_on(
    cancels: int,
) -> None:
    """The turn (a lock) is handed to a waiting get_4k in the step its caller
    cancels it, once or twice (a second cancellation during its clean-up: a
    TaskGroup's abort, a second Ctrl-C): the waiter raises CancelledError and
    the turn is free for the next (a second cancellation left it held for
    good: every later get_4k of the video waited to its deadline)."""
    from veo_async._task import _acquired_by  # the turn-taking alone

    lock = asyncio.Lock()
    await lock.acquire()
    loop = asyncio.get_running_loop()
    waiter = asyncio.ensure_future(_acquired_by(lock, loop.time() + 100))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    lock.release()  # handed to the waiter's acquire
    for _ in range(cancels):
        waiter.cancel()
        await asyncio.sleep(0)
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await asyncio.sleep(0)
    assert not lock.locked()
    assert await _acquired_by(lock, loop.time() + 1) is True
    lock.release()
    # A deadline that passes first: False, the turn not taken.
    await lock.acquire()
    assert await _acquired_by(lock, loop.time() + 0.01) is False
    lock.release()
    assert not lock.locked()
