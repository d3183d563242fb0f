"""The exception tree: shape, retryability, and the context each error carries."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import pickle

import pytest

from veo_async import PollPolicy, VeoSession, errors
from veo_async._protocol import RawResponse, api_error, decode_envelope, decode_record_info
from veo_async.errors import (
    APIError,
    AuthenticationError,
    ContentPolicyError,
    ErrorPage,
    InsufficientCreditsError,
    NotFoundError,
    RateLimitError,
    RecordNotFoundError,
    ResponseError,
    ServerError,
    ServerErrorPage,
    ServiceUnavailableError,
    SessionClosedError,
    StoreCorruptError,
    StoreError,
    StoreLockedError,
    StoreVersionError,
    SubmitUncertainError,
    TaskFailedError,
    TransportError,
    TruncatedResponseError,
    VeoError,
    WaitTimeoutError,
)
from veo_async.models import GenerateRequest, RecordInfo, TaskStatus

TASK = "veo_task_xyz"


def record(status: TaskStatus, code: int | None = None, message: str = "") -> RecordInfo:
    """A record with the given end state."""
    return RecordInfo(task_id=TASK, status=status, error_code=code, error_message=message)


# --------------------------------------------------------------------- tree

#: Every class with its parent, as drawn in the errors module docstring.
TREE: list[tuple[type[BaseException], type[BaseException]]] = [
    (VeoError, Exception),
    (APIError, VeoError),
    (AuthenticationError, APIError),
    (InsufficientCreditsError, APIError),
    (NotFoundError, APIError),
    (RecordNotFoundError, APIError),
    (ContentPolicyError, APIError),
    (RateLimitError, APIError),
    (ServiceUnavailableError, APIError),
    (ServerError, APIError),
    (ServerErrorPage, ServerError),
    (ServerErrorPage, ResponseError),
    (ErrorPage, APIError),
    (ErrorPage, ResponseError),
    (TransportError, VeoError),
    (TruncatedResponseError, TransportError),
    (TruncatedResponseError, ResponseError),
    (ResponseError, VeoError),
    (SubmitUncertainError, VeoError),
    (TaskFailedError, VeoError),
    (WaitTimeoutError, VeoError),
    (WaitTimeoutError, TimeoutError),
    (SessionClosedError, VeoError),
    (SessionClosedError, RuntimeError),
    (StoreError, VeoError),
    (StoreLockedError, StoreError),
    (StoreCorruptError, StoreError),
    (StoreVersionError, StoreError),
]


@pytest.mark.parametrize(
    ("cls", "parent"), [pytest.param(c, p, id=f"{c.__name__}<{p.__name__}") for c, p in TREE]
)
def test_tree_parent(cls: type[BaseException], parent: type[BaseException]) -> None:
    """Each class sits under the parent the module docstring draws (directly,
    or through a private base: WaitTimeoutError's on Python 3.10)."""
    assert issubclass(cls, parent)
    bases = [*cls.__bases__]
    for base in cls.__bases__:
        if base.__name__.startswith("_"):
            bases += base.__bases__
    assert parent.__name__ in {b.__name__ for b in bases}


@pytest.mark.parametrize(
    "cls",
    [
        pytest.param(c, id=c.__name__)
        for c in (
            TransportError, ResponseError, TaskFailedError, WaitTimeoutError, SessionClosedError
        )
    ],
)
def test_non_api_errors_are_not_api_errors(cls: type[VeoError]) -> None:
    """Transport, response, task and timeout errors are siblings of APIError, not children."""
    assert not issubclass(cls, APIError)


def test_every_exported_error_is_in_the_tree() -> None:
    """The module exports exactly the classes of the drawn tree, all in its docstring."""
    drawn = {c.__name__ for c, _ in TREE}
    assert set(errors.__all__) == drawn
    assert errors.__doc__ is not None
    assert all(name in errors.__doc__ for name in drawn)


def test_wait_timeout_is_caught_as_timeout_error() -> None:
    """``except TimeoutError`` catches a WaitTimeoutError (asyncio.timeout-style code works)."""
    with pytest.raises(TimeoutError) as info:
        raise WaitTimeoutError(TASK, 900, None)
    assert isinstance(info.value, VeoError)


def test_wait_timeout_is_caught_as_asyncio_timeout_error() -> None:
    """``except asyncio.TimeoutError`` (what ``asyncio.wait_for`` raises, not
    the builtin TimeoutError before Python 3.11) catches it too."""
    with pytest.raises(asyncio.TimeoutError) as info:
        raise WaitTimeoutError(TASK, 900, None)
    assert isinstance(info.value, TimeoutError)
    assert isinstance(info.value, VeoError)


# --------------------------------------------------------------- retryable


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        pytest.param(APIError("x", code=418, http_status=200), False, id="APIError"),
        pytest.param(AuthenticationError("x", code=401, http_status=200), False, id="401"),
        pytest.param(InsufficientCreditsError("x", code=402, http_status=200), False, id="402"),
        pytest.param(NotFoundError("x", code=404, http_status=200), False, id="404"),
        pytest.param(RecordNotFoundError("x", code=422, http_status=200), False, id="422"),
        pytest.param(ContentPolicyError("x", code=400, http_status=200), False, id="400"),
        pytest.param(RateLimitError("x", code=429, http_status=429), True, id="429"),
        pytest.param(ServiceUnavailableError("x", code=455, http_status=200), True, id="455"),
        pytest.param(ServerError("x", code=500, http_status=200), True, id="500"),
        pytest.param(ServerError("x", code=502, http_status=502), True, id="502"),
        pytest.param(ServerErrorPage("x", code=502, http_status=502), True, id="502-page"),
        pytest.param(ServerErrorPage("x", code=501, http_status=501), False, id="501-page"),
        pytest.param(ErrorPage("x", code=403, http_status=403), False, id="403-page"),
        pytest.param(ServerError("x", code=503, http_status=503), True, id="503"),
        pytest.param(ServerError("x", code=501, http_status=200), False, id="501"),
        pytest.param(ServerError("x", code=505, http_status=200), False, id="505"),
        pytest.param(TransportError("reset"), True, id="transport"),
        pytest.param(ResponseError("html"), True, id="response-default"),
        pytest.param(ResponseError("bad", retryable=False), False, id="response-set-false"),
        pytest.param(TaskFailedError(record(TaskStatus.FAILED)), False, id="task-failed"),
        pytest.param(WaitTimeoutError(TASK, 1, None), True, id="wait-timeout"),
        pytest.param(VeoError("x"), False, id="base"),
    ],
)
def test_retryable_per_class(error: VeoError, retryable: bool) -> None:
    """Each error says whether trying again can help."""
    assert error.retryable is retryable


def test_server_error_retryability_is_per_instance() -> None:
    """A 501 does not make other ServerErrors non-retryable (instance, not class, flag)."""
    final = ServerError("x", code=501, http_status=200)
    outage = ServerError("x", code=500, http_status=200)
    assert (final.retryable, outage.retryable, ServerError.retryable) == (False, True, True)


# --------------------------------------------------------- str and repr


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(
            RecordNotFoundError("record is null", code=422, http_status=200, task_id=TASK), id="422"
        ),
        pytest.param(
            ServerError("Server error", code=500, http_status=502, task_id=TASK), id="500"
        ),
        pytest.param(
            RateLimitError("slow down", code=429, http_status=429, task_id=TASK, retry_after=3.0),
            id="429",
        ),
    ],
)
def test_api_error_str_and_repr_carry_context(error: APIError) -> None:
    """str and repr of an APIError show its code, message and task id."""
    text, rep = str(error), repr(error)
    assert f"[{error.code}]" in text
    assert error.message in text
    assert TASK in text
    assert type(error).__name__ in rep
    for part in (
        f"code={error.code}",
        repr(error.message),
        f"http_status={error.http_status}",
        repr(TASK),
    ):
        assert part in rep


def test_every_errors_repr_names_its_task() -> None:
    """The repr of any error with a task says whose it is (a batch's outcomes
    printed as a list are reprs): TaskFailedError's and SubmitUncertainError's
    left the id out."""
    failed = TaskFailedError(record(TaskStatus.FAILED, 400, "flagged"))
    assert repr(failed) == f"TaskFailedError({failed.message!r}, task_id={TASK!r})"
    uncertain = SubmitUncertainError(GenerateRequest(prompt="a cat"), "reset", task_id=TASK)
    assert f"task_id={TASK!r}" in repr(uncertain)
    assert repr(VeoError("plain")) == "VeoError('plain')"


def test_a_subclass_repr_names_its_own_class() -> None:
    """repr names the error's own class, a subclass's too: a cut answer's
    TruncatedResponseError printed as "ResponseError(...)" hid what it was."""
    cut = errors.TruncatedResponseError("the answer broke off", http_status=200)
    assert repr(cut).startswith("TruncatedResponseError(message='the answer broke off'")

    class MyUncertain(SubmitUncertainError):
        pass

    uncertain = MyUncertain(GenerateRequest(prompt="a cat"), "reset", task_id=TASK)
    assert repr(uncertain).startswith("MyUncertain(cause='reset'")


def test_str_without_task_id() -> None:
    """Without a task id, str() is just the code and message."""
    assert str(NotFoundError("gone", code=404, http_status=404)) == "[404] gone"
    assert str(VeoError("plain")) == "plain"


def test_rate_limit_carries_retry_after() -> None:
    """RateLimitError keeps retry_after, defaulting to None."""
    assert RateLimitError("x", code=429, http_status=429, retry_after=2.5).retry_after == 2.5
    assert RateLimitError("x", code=429, http_status=429).retry_after is None


def test_response_error_carries_context() -> None:
    """ResponseError keeps status, excerpt, field and task id, and shows them in repr."""
    err = ResponseError(
        "cannot read", http_status=200, excerpt="<html>", field="createTime", task_id=TASK
    )
    assert (err.http_status, err.excerpt, err.field, err.task_id) == (
        200,
        "<html>",
        "createTime",
        TASK,
    )
    rep = repr(err)
    for part in ("cannot read", "200", "'createTime'", repr(TASK), "<html>"):
        assert part in rep
    assert TASK in str(err)


@pytest.mark.parametrize(
    ("status", "code", "message", "parts"),
    [
        pytest.param(
            TaskStatus.FAILED,
            400,
            "content policy",
            ["FAILED", "400", "content policy"],
            id="failed-with-code",
        ),
        pytest.param(
            TaskStatus.GENERATION_FAILED,
            501,
            "boom",
            ["GENERATION_FAILED", "501", "boom"],
            id="generation-failed",
        ),
        pytest.param(
            TaskStatus.FAILED, None, "", ["FAILED", "no code", "no message"], id="failed-bare"
        ),
    ],
)
def test_task_failed_error_carries_record(
    status: TaskStatus, code: int | None, message: str, parts: list[str]
) -> None:
    """TaskFailedError carries the record, its error code and message, and says them."""
    rec = record(status, code, message)
    err = TaskFailedError(rec)
    assert err.record is rec
    assert err.error_code == code
    assert err.error_message == message
    assert err.task_id == TASK
    text = str(err)
    assert TASK in text
    for part in parts:
        assert part in text


@pytest.mark.parametrize(
    ("rec", "seen"),
    [
        pytest.param(record(TaskStatus.GENERATING), "last status GENERATING", id="with-record"),
        pytest.param(None, "no record seen", id="no-record"),
    ],
)
def test_wait_timeout_error_carries_context(rec: RecordInfo | None, seen: str) -> None:
    """WaitTimeoutError keeps the timeout and last record and says both."""
    err = WaitTimeoutError(TASK, 12.5, rec)
    assert (err.timeout, err.record, err.task_id) == (12.5, rec, TASK)
    text = str(err)
    assert "12.5" in text
    assert seen in text
    assert TASK in text


# ----------------------------------------------------------------- secrets

SECRET = "sk-live-0123456789abcdefSECRET"


@pytest.mark.parametrize(
    "response",
    [
        pytest.param(
            RawResponse(401, {"Authorization": f"Bearer {SECRET}"}, b"<html>401</html>"),
            id="401-html",
        ),
        pytest.param(
            RawResponse(429, {"Retry-After": "1", "X-Api-Key": SECRET}, b""), id="429-empty"
        ),
        pytest.param(
            RawResponse(200, {"Set-Cookie": SECRET}, b'{"code":401,"msg":"bad key","data":null}'),
            id="body-401",
        ),
        pytest.param(RawResponse(200, {"Authorization": SECRET}, b"not json"), id="garbage-200"),
        pytest.param(
            RawResponse(
                200, {"Authorization": SECRET}, b'{"code":200,"msg":"ok","data":{"successFlag":9}}'
            ),
            id="bad-record",
        ),
    ],
)
def test_headers_never_leak_into_errors(response: RawResponse) -> None:
    """Errors are built from the answer's body and status: header values never appear."""
    with pytest.raises(VeoError) as info:
        decode_record_info(response, TASK)
    err = info.value
    assert SECRET not in str(err)
    assert SECRET not in repr(err)
    assert SECRET not in repr(vars(err))


def test_api_error_with_key_like_headers_keeps_them_out() -> None:
    """api_error reads only Retry-After from headers; nothing else reaches the error."""
    headers = {"Authorization": f"Bearer {SECRET}", "Retry-After": "2"}
    for code in (401, 429, 500):
        err = api_error(code, "msg", http_status=code, headers=headers, task_id=TASK)
        assert SECRET not in f"{err!s}{err!r}{vars(err)!r}"
    with pytest.raises(APIError) as info:
        decode_envelope(RawResponse(403, headers, b"error code: 1010"))
    assert SECRET not in f"{info.value!s}{info.value!r}"


def _samples() -> list[VeoError]:
    """One error of every exported class, every field set."""
    failed = RecordInfo("t1", TaskStatus.FAILED, error_code=400, error_message="flagged")

    def api(cls: type[APIError], code: int) -> APIError:
        return cls("no", code=code, http_status=200, task_id="t1")

    return [
        VeoError("plain", task_id="t1"),
        api(APIError, 418),
        api(AuthenticationError, 401),
        api(InsufficientCreditsError, 402),
        api(NotFoundError, 404),
        api(RecordNotFoundError, 422),
        api(ContentPolicyError, 400),
        RateLimitError("slow down", code=429, http_status=429, task_id="t1", retry_after=2.5),
        api(ServiceUnavailableError, 455),
        ServerError("down", code=500, http_status=502, task_id="t1"),
        ServerErrorPage("HTTP 502: <html>", code=502, http_status=502, task_id="t1"),
        ErrorPage("HTTP 403: error code: 1010", code=403, http_status=403, task_id="t1"),
        TransportError("reset", task_id="t1", sent=False),
        TruncatedResponseError("cut at 362 of 462 bytes", http_status=200),
        ResponseError("not JSON", task_id="t1", excerpt="<html>", retryable=True),
        SubmitUncertainError(GenerateRequest("a cat"), "TransportError: reset"),
        TaskFailedError(failed),
        WaitTimeoutError("t1", 5.0, failed, TransportError("reset"), waiting_for="the 4K video"),
        SessionClosedError(),
        StoreError("broken", path="/data/veo.db"),
        StoreLockedError("locked", path="/data/veo.db"),
        StoreCorruptError("corrupt", path="/data/veo.db"),
        StoreVersionError("too new", path="/data/veo.db", found=9, supported=3),
    ]


@pytest.mark.parametrize("error", _samples(), ids=lambda error: type(error).__name__)
@pytest.mark.parametrize("copied", [pickle.loads, copy.deepcopy], ids=["pickle", "deepcopy"])
def test_every_error_pickles_and_copies_as_it_is(error: VeoError, copied: object) -> None:
    """A batch's outcomes cross processes (multiprocessing, executors): each
    error comes back of its class with every field, message and str (the
    default, ``cls(*args)``, failed for the keyword-only and record-taking
    constructors)."""
    back = copied(pickle.dumps(error)) if copied is pickle.loads else copy.deepcopy(error)
    assert type(back) is type(error)
    assert (str(back), repr(back), back.args) == (str(error), repr(error), error.args)
    assert back.retryable == error.retryable
    assert {k: repr(v) for k, v in vars(back).items()} == {
        k: repr(v) for k, v in vars(error).items()
    }


def test_the_pickle_samples_cover_every_exported_error() -> None:
    """A new error class needs a sample above."""
    assert {type(error).__name__ for error in _samples()} == set(errors.__all__)


@pytest.mark.loopback
@pytest.mark.parametrize(
    ("answer", "what"),
    [
        (b"garbage test-key-echoed\r\n\r\n", "Bad status line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nno colon test-key-echoed\r\n\r\n{}", "Invalid"),
    ],
)
async def test_an_answer_that_is_not_http_says_so_not_http_400(answer: bytes, what: str) -> None:
    """aiohttp's parser refuses a malformed answer with a "400" of its own: the
    error says the answer is not valid HTTP (what was wrong, not the bytes: a
    bad header line could hold anything), is retryable, and quotes no 400."""
    async def answer_badly(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(answer_badly, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with (
        server,
        VeoSession("test-key-echoed", base_url=f"http://127.0.0.1:{port}") as veo,
    ):
        with pytest.raises(TransportError) as caught:
            await veo.record_info("veo_task_1")
    message = str(caught.value)
    assert "not valid HTTP" in message
    assert what in message
    assert "HTTP 400" not in message
    assert "test-key-echoed" not in message
    assert caught.value.retryable


_RECORD = (
    b'{"code":200,"msg":"success","data":{"taskId":"veo_cut","successFlag":1,'
    b'"createTime":"2026-11-30 10:00:00","response":{"resultUrls":["https://r/v.mp4"]}}}'
)


@pytest.mark.loopback
async def test_an_answer_cut_mid_body_is_a_truncated_response_both_kinds_catch() -> None:
    """An answer whose body breaks off (fewer bytes than its Content-Length,
    then the connection closes): a TruncatedResponseError, which both
    ``except TransportError`` and ``except ResponseError`` catch, with the
    answer's status; retryable (a wait asks again and gets the record), and
    a create it cut is uncertain, never resent."""
    answers = [0]
    posts = [0]

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if head.startswith(b"POST"):
            posts[0] += 1
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
        answers[0] += 1
        whole = answers[0] == 3  # the third answer comes whole
        body = _RECORD if whole else _RECORD[:40]
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(_RECORD), body)
        )
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    fast = PollPolicy(first_poll=0, interval=0.01, jitter=0, timeout=5)
    async with server, VeoSession("k" * 16, base_url=f"http://127.0.0.1:{port}") as veo:
        with pytest.raises(TruncatedResponseError) as caught:
            await veo.record_info("veo_cut")
        error = caught.value
        assert isinstance(error, TransportError)
        assert isinstance(error, ResponseError)
        assert (error.http_status, error.sent, error.retryable) == (200, True, True)
        assert error.task_id == "veo_cut"
        assert "broke off" in str(error)
        with pytest.raises(SubmitUncertainError):
            await veo.generate("a cat")
        assert posts[0] == 1
        info = await veo.task("veo_cut").wait(policy=fast)  # the third answer, whole
        assert info.status is TaskStatus.SUCCESS


def _answer_of(task_id: str, flag: int) -> bytes:
    body = (
        b'{"code":200,"msg":"success","data":{"taskId":"%s","successFlag":%d,'
        b'"createTime":"2026-11-30 10:00:00","response":%s}}'
        % (task_id.encode(), flag, b'{"resultUrls":["https://r/v.mp4"]}' if flag else b"null")
    )
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )


@pytest.mark.loopback
async def test_an_answer_sent_unasked_on_an_idle_connection_does_not_end_a_wait() -> None:
    """A server that sends an extra answer on an idle keep-alive connection
    (another task's record) has it read as the next request's: that answer
    is refused as another task's (never taken for this task's record), as a
    retryable ResponseError, and a wait asks again and gets its own record."""
    polls: dict[str, int] = {}

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                task_id = head.split(b"taskId=")[1].split(b" ")[0].decode()
                polls[task_id] = polls.get(task_id, 0) + 1
                writer.write(_answer_of(task_id, 1 if polls[task_id] >= 2 else 0))
                await writer.drain()
                if sum(polls.values()) == 1:
                    await asyncio.sleep(0.05)  # the connection is idle in the pool
                    writer.write(_answer_of("veo_stranger", 0))
                    await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    fast = PollPolicy(first_poll=0, interval=0.01, jitter=0, timeout=5)
    async with server, VeoSession("k" * 16, base_url=f"http://127.0.0.1:{port}") as veo:
        assert (await veo.record_info("veo_first")).task_id == "veo_first"
        await asyncio.sleep(0.2)
        with pytest.raises(ResponseError) as caught:
            await veo.record_info("veo_second")  # one request, no retry: the stray answer
        assert "got the record of task 'veo_stranger'" in str(caught.value)
        assert caught.value.retryable
        assert caught.value.task_id == "veo_second"
        info = await veo.task("veo_waited").wait(policy=fast)
        assert (info.task_id, info.status) == ("veo_waited", TaskStatus.SUCCESS)


def test_the_services_long_text_is_bounded_in_messages_and_reprs() -> None:
    """A 50 KB page sent as an envelope's ``msg``, a 50,000-character
    ``errorMessage``, a 10,000-character prompt: messages, reprs and the log
    lines quoting them were as long (a page cut from a body was already
    200 bytes). They quote 300 characters; the attributes keep it whole."""
    page = "<html>" + "x" * 50_000 + "</html>"
    body = json.dumps({"code": 403, "msg": page, "data": None}).encode()
    with pytest.raises(APIError) as caught:
        decode_envelope(RawResponse(200, {}, body))
    assert len(str(caught.value)) < 500
    assert len(repr(caught.value)) < 500
    long = RecordInfo(
        task_id=TASK,
        status=TaskStatus.FAILED,
        params={"prompt": "a cat " * 2_000},
        error_code=500,
        error_message="m" * 50_000,
    )
    assert len(repr(long)) < 1_000
    assert long.params["prompt"] == "a cat " * 2_000
    failure = TaskFailedError(long)
    assert len(str(failure)) < 500
    assert len(repr(failure)) < 500
    assert failure.error_message == "m" * 50_000
    # Short text is quoted whole.
    short = TaskFailedError(record(TaskStatus.FAILED, 400, "prompt rejected"))
    assert "prompt rejected" in str(short)


def test_a_401_says_the_api_key_was_refused() -> None:
    """Kie's 401 message ("You do not have access permissions"), with a task's
    id after it, read as a refusal of that task: the text says it is the key."""
    error = AuthenticationError(
        "You do not have access permissions", code=401, http_status=401, task_id=TASK
    )
    assert str(error) == (
        "[401] You do not have access permissions: the API key was refused (check it) "
        f"(task {TASK!r})"
    )
    assert "API key" in str(api_error(401, "Unauthorized", http_status=401))


def test_a_timeout_quoting_its_last_failure_names_the_task_once() -> None:
    """The last poll's error, quoted in the timeout's message, named the task
    again: "...reset by peer (task 't1')) (task 't1')"."""
    error = WaitTimeoutError(TASK, 3.0, None, TransportError("reset by peer", task_id=TASK))
    assert str(error).count(TASK) == 1
    assert "reset by peer" in str(error)
