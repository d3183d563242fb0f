"""The sans-I/O core on bytes alone: envelope -> data, or the right error."""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from veo_async._protocol import (
    RawResponse,
    api_error,
    decode_envelope,
    decode_record_info,
    excerpt,
    parse_retry_after,
)
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
    VeoError,
)
from veo_async.models import RecordInfo, TaskStatus

TASK = "veo_task_abc"
NO_HEADERS: Mapping[str, str] = {}


def envelope(code: object, msg: object = "", data: object = None) -> bytes:
    """A Kie envelope as the service would serialise it."""
    return json.dumps({"code": code, "msg": msg, "data": data}).encode()


def raw(body: bytes, status: int = 200, headers: Mapping[str, str] | None = None) -> RawResponse:
    """A RawResponse with sensible defaults."""
    return RawResponse(status, dict(headers or {}), body)


CLOUDFLARE_502 = (
    b"<!DOCTYPE html>\n<html><head><title>api.kie.ai | 502: Bad gateway</title></head>"
    b"<body><div class='cf-error-details'><h1>Bad gateway</h1>"
    + b"<p>The web server reported a bad gateway error.</p>" * 20
    + b"</div></body></html>"
)
NGINX_503 = b"<html><head><title>503 Service Temporarily Unavailable</title></head></html>"
GATEWAY_504 = b"<html><body><h1>504 Gateway Time-out</h1></body></html>"


# ---------------------------------------------------------------- body codes


@pytest.mark.parametrize(
    ("code", "msg", "cls", "retryable"),
    [
        pytest.param(
            400,
            "Your prompt was flagged by content policy",
            ContentPolicyError,
            False,
            id="400-policy",
        ),
        pytest.param(
            401, "You do not have access permissions", AuthenticationError, False, id="401-auth"
        ),
        pytest.param(
            402, "Insufficient credits", InsufficientCreditsError, False, id="402-credits"
        ),
        pytest.param(404, "Not found", NotFoundError, False, id="404-not-found"),
        pytest.param(408, "Upstream timeout", APIError, False, id="408-timeout"),
        pytest.param(422, "record is null", RecordNotFoundError, False, id="422-record-null"),
        pytest.param(
            422,
            "Records older than 14 days are deleted",
            RecordNotFoundError,
            False,
            id="422-older-than-14-days",
        ),
        pytest.param(422, "The record has expired", RecordNotFoundError, False, id="422-expired"),
        pytest.param(422, "result data blank", APIError, False, id="422-result-data-blank"),
        pytest.param(422, "status is not success", APIError, False, id="422-status-not-success"),
        pytest.param(429, "Rate limited", RateLimitError, True, id="429-rate"),
        pytest.param(451, "Failed to fetch the image", APIError, False, id="451-image-fetch"),
        pytest.param(
            455, "Service under maintenance", ServiceUnavailableError, True, id="455-maintenance"
        ),
        pytest.param(500, "Server error", ServerError, True, id="500-server"),
        pytest.param(501, "Generation failed", ServerError, False, id="501-generation-failed"),
        pytest.param(505, "Feature disabled", ServerError, False, id="505-feature-disabled"),
    ],
)
def test_body_code_in_http_200_maps_to_error_class(
    code: int, msg: str, cls: type[APIError], retryable: bool
) -> None:
    """Each documented body code in an HTTP 200 raises its class with full context."""
    with pytest.raises(APIError) as info:
        decode_envelope(raw(envelope(code, msg)), task_id=TASK)
    err = info.value
    assert type(err) is cls
    assert err.code == code
    assert err.message == msg
    assert err.http_status == 200
    assert err.task_id == TASK
    assert err.retryable is retryable


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"taskId": "t"}, id="object"),
        pytest.param(12.5, id="number"),
        pytest.param("https://x/y.mp4", id="string"),
        pytest.param([1, 2], id="list"),
        pytest.param(None, id="null"),
    ],
)
def test_code_200_returns_data(data: object) -> None:
    """A success envelope hands back its data unchanged, whatever its type."""
    assert decode_envelope(raw(envelope(200, "success", data))) == data


@pytest.mark.parametrize(
    ("status", "body", "cls", "code"),
    [
        pytest.param(
            500, envelope(422, "record is null"), RecordNotFoundError, 422, id="500-with-422-body"
        ),
        pytest.param(
            404, envelope(401, "bad key"), AuthenticationError, 401, id="404-with-401-body"
        ),
        pytest.param(
            503, envelope(455, "maintenance"), ServiceUnavailableError, 455, id="503-with-455-body"
        ),
    ],
)
def test_body_error_code_wins_over_http_error_status(
    status: int, body: bytes, cls: type[APIError], code: int
) -> None:
    """An error code in the body decides the class even under a different HTTP error."""
    with pytest.raises(APIError) as info:
        decode_envelope(raw(body, status))
    assert type(info.value) is cls
    assert info.value.code == code
    assert info.value.http_status == status


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        pytest.param(401, AuthenticationError, id="401"),
        pytest.param(429, RateLimitError, id="429"),
        pytest.param(503, ServerError, id="503"),
    ],
)
def test_success_body_under_error_status_lets_status_decide(
    status: int, cls: type[APIError]
) -> None:
    """A body claiming 200 under an HTTP error status cannot be trusted: the status decides."""
    with pytest.raises(APIError) as info:
        decode_envelope(raw(envelope(200, "success", {"taskId": "t"}), status))
    assert type(info.value) is cls
    assert info.value.code == status


@pytest.mark.parametrize(
    ("body", "code"),
    [
        pytest.param(envelope("422", "record is null"), 422, id="string-422"),
        pytest.param(envelope(" 401 ", "bad key"), 401, id="padded-string-401"),
    ],
)
def test_numeric_string_body_code_is_read(body: bytes, code: int) -> None:
    """A body code sent as a numeric string is still the real status."""
    with pytest.raises(APIError) as info:
        decode_envelope(raw(body))
    assert info.value.code == code


def test_numeric_string_success_code_returns_data() -> None:
    """``"code": "200"`` is a success envelope like ``"code": 200``."""
    assert decode_envelope(raw(envelope("200", "ok", {"a": 1}))) == {"a": 1}


def test_a_code_written_as_a_whole_double_is_that_code() -> None:
    """``"code": 200.0`` (a backend that writes numbers as doubles) is a
    success envelope, and ``422.0`` the 422 it means; a fraction is no code."""
    assert decode_envelope(raw(b'{"code": 200.0, "msg": "ok", "data": {"a": 1}}')) == {"a": 1}
    with pytest.raises(RecordNotFoundError) as info:
        decode_envelope(raw(b'{"code": 422.0, "msg": "record is null", "data": null}'))
    assert info.value.code == 422
    with pytest.raises(ResponseError, match="numeric code"):
        decode_envelope(raw(b'{"code": 200.5, "msg": "ok", "data": {"a": 1}}'))


@pytest.mark.parametrize(
    ("msg", "expected"),
    [
        pytest.param(None, "error code 455", id="null-msg"),
        pytest.param("", "error code 455", id="empty-msg"),
        pytest.param(["x"], "error code 455", id="list-msg"),
    ],
)
def test_error_without_usable_msg_gets_a_generic_message(msg: object, expected: str) -> None:
    """An error envelope with no text message still produces a readable message."""
    with pytest.raises(ServiceUnavailableError) as info:
        decode_envelope(raw(envelope(455, msg)))
    assert info.value.message == expected


# ------------------------------------------------------ HTTP status decides


@pytest.mark.parametrize(
    ("status", "body", "cls", "retryable"),
    [
        pytest.param(502, CLOUDFLARE_502, ServerErrorPage, True, id="502-cloudflare-html"),
        pytest.param(503, NGINX_503, ServerErrorPage, True, id="503-html"),
        pytest.param(504, GATEWAY_504, ServerErrorPage, True, id="504-html"),
        pytest.param(403, b"error code: 1010", ErrorPage, False, id="403-cloudflare-1010"),
        pytest.param(429, b"Too Many Requests", RateLimitError, True, id="429-text"),
        pytest.param(
            401, b'{"code":401,"msg":"Unauth', AuthenticationError, False, id="401-truncated-json"
        ),
        pytest.param(404, b"<html>Not Found</html>", NotFoundError, False, id="404-html"),
        # A proxy's 400 page is no refusal of the prompt (Kie says that in an
        # envelope): it was a ContentPolicyError, with no excerpt.
        pytest.param(
            400, b"<html><h1>400 Bad Request</h1></html>", ErrorPage, False, id="400-html"
        ),
        pytest.param(500, b"", ServerErrorPage, True, id="500-empty"),
        pytest.param(502, b"\xff\xfe\xfa bad bytes", ServerErrorPage, True, id="502-non-utf8"),
        pytest.param(500, b"[1, 2, 3]", ServerErrorPage, True, id="500-json-list"),
        pytest.param(
            503, b'{"message": "down"}', ServerErrorPage, True, id="503-dict-without-code"
        ),
    ],
)
def test_non_envelope_error_status_decides(
    status: int, body: bytes, cls: type[APIError], retryable: bool
) -> None:
    """Without a readable envelope, the HTTP status picks the class and the code;
    a page with a plain 5xx or a status of no class of its own is also a
    ResponseError (design: "HTML proxy page"), with its excerpt."""
    with pytest.raises(APIError) as info:
        decode_envelope(raw(body, status), task_id=TASK)
    err = info.value
    assert type(err) is cls
    assert err.code == status
    assert err.http_status == status
    assert err.task_id == TASK
    assert err.retryable is retryable
    assert f"HTTP {status}" in err.message
    assert len(err.message) <= 250  # a short excerpt, never the whole page
    if cls in (ServerErrorPage, ErrorPage):
        assert isinstance(err, ResponseError)
        assert isinstance(err, ServerError) is (cls is ServerErrorPage)
        assert err.excerpt == excerpt(body)


@pytest.mark.parametrize("status", [301, 302, 307, 308])
@pytest.mark.parametrize(
    "body", [b"", b"<html>Moved</html>", b'{"code": 200, "msg": "success", "data": null}']
)
def test_a_redirect_is_final_and_names_where_it_points(status: int, body: bytes) -> None:
    """A 3xx is never followed nor retried (asking again gets the same): its
    error names the Location, typically https:// for a base_url with http://."""
    answer = raw(body, status, {"Location": "https://api.kie.ai/api/v1/veo/record-info"})
    decoders = (
        lambda: decode_envelope(answer, task_id=TASK),
        lambda: decode_record_info(answer, TASK),
    )
    for decode in decoders:
        with pytest.raises(ResponseError) as info:
            decode()
        err = info.value
        assert err.retryable is False
        assert err.http_status == status
        assert "redirect to https://api.kie.ai/api/v1/veo/record-info" in err.message
        assert "base_url" in err.message


def test_empty_error_body_says_so() -> None:
    """An empty error body is named as such rather than leaving a blank message."""
    with pytest.raises(ServerError) as info:
        decode_envelope(raw(b"", 500))
    assert "empty body" in info.value.message


def test_403_message_keeps_the_proxy_text() -> None:
    """The Cloudflare 1010 text survives into the message, with what it means
    (a User-Agent refused: the fix)."""
    with pytest.raises(APIError) as info:
        decode_envelope(raw(b"error code: 1010", 403))
    assert "error code: 1010" in info.value.message
    assert "User-Agent" in info.value.message


def test_a_2xx_body_cut_short_says_it_starts_as_json() -> None:
    """A 2xx body that starts as JSON but does not parse is named as such."""
    with pytest.raises(ResponseError) as info:
        decode_envelope(raw(b'{"code":200,"msg":"succ', 200))
    assert "not JSON (it starts as JSON: cut short or malformed)" in info.value.message
    with pytest.raises(ResponseError) as info:
        decode_envelope(raw(b"<html>oops</html>", 200))
    assert info.value.message.endswith("is not JSON")


@pytest.mark.parametrize(
    ("body", "start"),
    [
        pytest.param(b'{"code":200,"msg":"succ', '{"code":200,"msg":"succ', id="truncated-json"),
        pytest.param(b"\xff\xfe\xfagarbage", "garbage", id="non-utf8"),
        pytest.param(CLOUDFLARE_502, "<!DOCTYPE html>", id="html-page"),
    ],
)
def test_2xx_unreadable_body_is_retryable_response_error(body: bytes, start: str) -> None:
    """A 2xx whose body is not JSON at all (HTML, truncated) is a retryable ResponseError."""
    with pytest.raises(ResponseError) as info:
        decode_envelope(raw(body, 200), task_id=TASK)
    err = info.value
    assert type(err) is ResponseError
    assert err.http_status == 200
    assert err.task_id == TASK
    assert err.retryable is True
    assert len(err.excerpt) <= 200
    assert err.excerpt.startswith(start) or start in err.excerpt[:40]


@pytest.mark.parametrize(
    ("body", "start"),
    [
        pytest.param(b"[1, 2]", "[1, 2]", id="json-list"),
        pytest.param(b'"ok"', '"ok"', id="json-string"),
        pytest.param(b"200", "200", id="json-number"),
        pytest.param(b'{"msg":"x","data":1}', '{"msg":"x"', id="dict-without-code"),
        pytest.param(b'{"code":null,"data":1}', '{"code":null', id="null-code"),
        pytest.param(b'{"code":true,"data":1}', '{"code":true', id="bool-code"),
        pytest.param(b'{"code":"abc","data":1}', '{"code":"abc"', id="text-code"),
        pytest.param(b'{"code":200.5,"data":1}', '{"code":200.5', id="fraction-code"),
        pytest.param(b'{"code":"\xc2\xb2"}', '{"code":"', id="superscript-digit-code"),
        pytest.param(b'{"code":"' + b"1" * 5000 + b'"}', '{"code":"111', id="5000-digit-code"),
    ],
)
def test_2xx_json_of_the_wrong_shape_is_final(body: bytes, start: str) -> None:
    """A 2xx with well-formed JSON that is no envelope is a non-retryable ResponseError."""
    with pytest.raises(ResponseError) as info:
        decode_envelope(raw(body, 200), task_id=TASK)
    err = info.value
    assert type(err) is ResponseError
    assert err.http_status == 200
    assert err.task_id == TASK
    assert err.retryable is False
    assert "not a Kie envelope" in err.message
    assert len(err.excerpt) <= 200
    assert err.excerpt.startswith(start) or start in err.excerpt[:40]


@pytest.mark.parametrize(
    "body",
    [pytest.param(b"", id="empty"), pytest.param(b"  \r\n\t ", id="whitespace")],
)
def test_2xx_empty_body_is_response_error(body: bytes) -> None:
    """An empty 2xx answer is a ResponseError that says the body was empty."""
    with pytest.raises(ResponseError) as info:
        decode_envelope(raw(body, 200))
    assert "empty body" in info.value.message
    assert info.value.excerpt == ""
    assert info.value.retryable is True


# ------------------------------------------------------------------ excerpt


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(b"", "", id="empty"),
        pytest.param(b"a\n  b\t\tc\r\n", "a b c", id="whitespace-collapsed"),
        pytest.param(b"\xffok", "\ufffdok", id="invalid-utf8-replaced"),
        pytest.param(b"x" * 1000, "x" * 200, id="capped-at-200"),
    ],
)
def test_excerpt(body: bytes, expected: str) -> None:
    """excerpt() is the first 200 bytes as one printable line."""
    assert excerpt(body) == expected


# -------------------------------------------------------------- Retry-After

HTTP_DATE = "Wed, 21 Oct 2015 07:28:00 GMT"
HTTP_DATE_EPOCH = 1445412480.0


@pytest.mark.parametrize(
    ("value", "now", "expected"),
    [
        pytest.param("120", None, 120.0, id="seconds"),
        pytest.param("1.5", None, 1.5, id="float-seconds"),
        pytest.param(" 7 ", None, 7.0, id="padded"),
        pytest.param("0", None, 0.0, id="zero"),
        pytest.param("-5", None, 0.0, id="negative-clamped"),
        pytest.param(HTTP_DATE, HTTP_DATE_EPOCH - 30, 30.0, id="http-date-future"),
        pytest.param(HTTP_DATE, HTTP_DATE_EPOCH + 30, 0.0, id="http-date-past"),
        pytest.param(
            "Wed, 21 Oct 2015 09:28:00 +0200",
            HTTP_DATE_EPOCH - 10,
            10.0,
            id="http-date-with-offset",
        ),
        pytest.param(None, None, None, id="absent"),
        pytest.param("", None, None, id="empty"),
        pytest.param("   ", None, None, id="blank"),
        pytest.param("soon", None, None, id="garbage"),
        pytest.param("nan", None, None, id="nan"),
        pytest.param("inf", None, None, id="inf"),
        pytest.param("1e400", None, None, id="overflowing-float"),
        # delay-seconds with more digits than a float holds: a very long wait
        # (it read as absent: a pause of a second instead of the cap).
        pytest.param("9" * 400, None, 1e9, id="overflowing-digits"),
        pytest.param("86400", None, 86400.0, id="a-day"),
        pytest.param("0000000005", None, 5.0, id="leading-zeros"),
        pytest.param("Mon, 01 Jan 99999999999999999999 00:00:00 GMT", 0.0, None, id="absurd-year"),
    ],
)
def test_parse_retry_after(value: str | None, now: float | None, expected: float | None) -> None:
    """Retry-After as delta-seconds or HTTP date; unreadable -> None, never negative."""
    result = parse_retry_after(value, now=now)
    if expected is None:
        assert result is None
    else:
        assert result == pytest.approx(expected)


@pytest.fixture
def far_from_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run with a local zone 5 hours off UTC (restored afterwards)."""
    monkeypatch.setenv("TZ", "EST+05")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("far_from_utc")
def test_http_date_without_zone_is_gmt_not_local_time() -> None:
    """A "-0000" HTTP date is read as GMT whatever the machine's local zone is."""
    assert dt.datetime(2015, 10, 21, 7, 28).astimezone().utcoffset() == dt.timedelta(hours=-5)
    result = parse_retry_after("Wed, 21 Oct 2015 07:28:00 -0000", now=HTTP_DATE_EPOCH - 30)
    assert result == pytest.approx(30.0)


@pytest.mark.parametrize("server_ahead", [3 * 3600.0, -3 * 3600.0, 0.0])
def test_a_retry_after_date_is_measured_against_the_answers_date(server_ahead: float) -> None:
    """A Retry-After date is on the server's clock: a 429 with a Date header
    waits Retry-After minus Date, however far the server's clock is from ours
    (3 h ahead paused us 300 s, the cap; 3 h behind not at all)."""
    server_now = time.time() + server_ahead
    headers = {
        "Date": email.utils.formatdate(server_now, usegmt=True),
        "Retry-After": email.utils.formatdate(server_now + 30, usegmt=True),
    }
    with pytest.raises(RateLimitError) as caught:
        decode_envelope(raw(b"", 429, headers), task_id=TASK)
    assert caught.value.retry_after == pytest.approx(30.0, abs=1.0)


def test_http_date_without_now_uses_the_clock() -> None:
    """Without ``now=`` an HTTP date is measured against the current time."""
    future = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=120)
    value = future.strftime("%a, %d %b %Y %H:%M:%S GMT")
    result = parse_retry_after(value)
    assert result is not None
    assert 60 < result <= 121


@pytest.mark.parametrize(
    ("status", "body", "headers", "retry_after"),
    [
        pytest.param(429, b"Too Many Requests", {"Retry-After": "12"}, 12.0, id="http-seconds"),
        pytest.param(
            429,
            b"<html>slow down</html>",
            {"retry-after": "2.5"},
            2.5,
            id="http-float-lowercase-header",
        ),
        pytest.param(429, b"", {"RETRY-AFTER": "-3"}, 0.0, id="http-negative"),
        pytest.param(429, b"", {"Retry-After": "later"}, None, id="http-garbage"),
        pytest.param(429, b"", {}, None, id="http-no-header"),
        pytest.param(200, envelope(429, "Too many requests"), {}, None, id="body-no-header"),
        pytest.param(
            200,
            envelope(429, "Too many requests"),
            {"Retry-After": "4"},
            4.0,
            id="body-with-header",
        ),
        pytest.param(429, envelope(429, "Too many requests"), {"Retry-After": "9"}, 9.0, id="both"),
    ],
)
def test_rate_limit_carries_retry_after(
    status: int, body: bytes, headers: dict[str, str], retry_after: float | None
) -> None:
    """A 429 (HTTP or body) becomes RateLimitError with the parsed Retry-After, if any."""
    with pytest.raises(RateLimitError) as info:
        decode_envelope(raw(body, status, headers), task_id=TASK)
    err = info.value
    assert err.code == 429
    assert err.http_status == status
    assert err.retryable is True
    assert err.task_id == TASK
    if retry_after is None:
        assert err.retry_after is None
    else:
        assert err.retry_after == pytest.approx(retry_after)


def test_rate_limit_http_date_header_via_api_error() -> None:
    """api_error hands an HTTP-date Retry-After to the parser (future date -> positive)."""
    future = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=300)
    header = future.strftime("%a, %d %b %Y %H:%M:%S GMT")
    err = api_error(429, "slow", http_status=429, headers={"Retry-After": header})
    assert isinstance(err, RateLimitError)
    assert err.retry_after is not None
    assert 200 < err.retry_after <= 301


# ---------------------------------------------------------------- api_error


@pytest.mark.parametrize(
    ("code", "message", "cls"),
    [
        pytest.param(400, "policy", ContentPolicyError, id="400"),
        pytest.param(401, "auth", AuthenticationError, id="401"),
        pytest.param(402, "credits", InsufficientCreditsError, id="402"),
        pytest.param(403, "error code: 1010", APIError, id="403"),
        pytest.param(404, "missing", NotFoundError, id="404"),
        pytest.param(422, "Record is NULL", RecordNotFoundError, id="422-case-insensitive"),
        pytest.param(422, "prompt too long", APIError, id="422-validation"),
        pytest.param(429, "slow", RateLimitError, id="429"),
        pytest.param(455, "maintenance", ServiceUnavailableError, id="455"),
        pytest.param(502, "bad gateway", ServerError, id="502"),
        pytest.param(599, "odd", ServerError, id="599"),
        pytest.param(418, "teapot", APIError, id="unknown-4xx"),
    ],
)
def test_api_error_picks_class(code: int, message: str, cls: type[APIError]) -> None:
    """api_error maps a code (and, for 422, the message) to the exact class."""
    err = api_error(code, message, http_status=200, task_id=TASK)
    assert type(err) is cls
    assert (err.code, err.message, err.http_status, err.task_id) == (code, message, 200, TASK)


@pytest.mark.parametrize(
    ("code", "retryable"),
    [
        pytest.param(500, True, id="500"),
        pytest.param(502, True, id="502"),
        pytest.param(503, True, id="503"),
        pytest.param(504, True, id="504"),
        pytest.param(501, False, id="501"),
        pytest.param(505, False, id="505"),
    ],
)
def test_api_error_server_retryability(code: int, retryable: bool) -> None:
    """5xx outages are retryable; 501/505 are final answers."""
    assert api_error(code, "x", http_status=code).retryable is retryable


# --------------------------------------------------------- record-info


def test_record_info_decodes_a_record() -> None:
    """A success envelope with a record becomes a RecordInfo."""
    body = envelope(200, "success", {"taskId": TASK, "successFlag": 0})
    info = decode_record_info(raw(body), TASK)
    assert isinstance(info, RecordInfo)
    assert info.task_id == TASK
    assert info.status is TaskStatus.GENERATING


@pytest.mark.parametrize("data", [None, "null", "NULL", " None ", ""])
def test_record_info_data_null_is_record_not_found(data: str | None) -> None:
    """``code 200, data null`` on record-info means "not visible yet", like 422
    record is null; so does a "null" text (the service's spelling of absent)."""
    with pytest.raises(RecordNotFoundError) as info:
        decode_record_info(raw(envelope(200, "success", data)), TASK)
    err = info.value
    assert err.code == 200
    assert err.http_status == 200
    assert err.task_id == TASK
    assert err.retryable is False


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (["a", "list"], "data"),
        ("hello", "data"),
        ({"taskId": TASK}, "successFlag"),
        ({"taskId": TASK, "successFlag": 0, "response": ["x"]}, "response"),
    ],
)
def test_a_record_of_the_wrong_shape_carries_the_answers_context(data: Any, field: str) -> None:
    """A record that cannot be read is told as any unreadable answer: the
    HTTP status, the body's first bytes as the excerpt, and the field."""
    body = envelope(200, "success", data)
    with pytest.raises(ResponseError) as info:
        decode_record_info(raw(body), TASK)
    err = info.value
    assert (err.http_status, err.field, err.task_id) == (200, field, TASK)
    assert err.excerpt == body.decode()[: len(err.excerpt)]
    assert err.excerpt.startswith("{")
    assert err.retryable is False


def test_record_info_422_record_is_null() -> None:
    """The documented unknown-id answer raises RecordNotFoundError with the task id."""
    with pytest.raises(RecordNotFoundError) as info:
        decode_record_info(raw(envelope(422, "record is null")), TASK)
    assert (info.value.code, info.value.task_id) == (422, TASK)


@pytest.mark.parametrize(
    "message",
    [
        pytest.param("recordInfo is null", id="recordInfo-is-null"),
        pytest.param(None, id="no-msg"),
        pytest.param("  ", id="blank-msg"),
    ],
)
def test_record_info_422_in_other_words_is_record_not_found(message: str | None) -> None:
    """A 422 on record-info saying "recordInfo is null" (Kie's sibling
    endpoint's wording) or nothing is the record not (yet) visible:
    RecordNotFoundError, which a wait counts as "not yet" within its grace
    window. It was a plain APIError(422) that ended the wait at once."""
    body = json.dumps({"code": 422, "data": None, **({"msg": message} if message else {})})
    for answer in (raw(body.encode()), raw(body.encode(), status=422)):
        with pytest.raises(RecordNotFoundError) as info:
            decode_record_info(answer, TASK)
        assert (info.value.code, info.value.task_id, info.value.expired) == (422, TASK, False)


def test_record_info_422_saying_something_else_stays_an_api_error() -> None:
    """A 422 whose words are no "record missing" (a gateway's validation
    message): a plain APIError, not RecordNotFoundError, which would make a
    store forget the task past the grace window."""
    body = json.dumps({"code": 422, "msg": "Validation error", "data": None}).encode()
    with pytest.raises(APIError) as info:
        decode_record_info(raw(body), TASK)
    assert type(info.value) is APIError


@pytest.mark.parametrize(
    ("data", "field"),
    [
        pytest.param([1, 2], "data", id="list-data"),
        pytest.param("done", "data", id="string-data"),
        pytest.param({"taskId": TASK}, "successFlag", id="no-success-flag"),
        pytest.param({"taskId": TASK, "successFlag": 4}, "successFlag", id="flag-4"),
        pytest.param({"taskId": TASK, "successFlag": 7}, "successFlag", id="flag-7"),
        pytest.param({"taskId": TASK, "successFlag": -1}, "successFlag", id="flag-negative"),
        pytest.param({"taskId": TASK, "successFlag": False}, "successFlag", id="flag-false"),
        pytest.param({"taskId": TASK, "successFlag": 0, "response": 1}, "response", id="response"),
    ],
)
def test_record_info_wrong_shape_is_final(data: object, field: str) -> None:
    """A success envelope whose data is no readable record: non-retryable, naming the field."""
    with pytest.raises(ResponseError) as info:
        decode_record_info(raw(envelope(200, "success", data)), TASK)
    assert info.value.field == field
    assert info.value.task_id == TASK
    assert info.value.retryable is False


@pytest.mark.parametrize("flag", [4, 7, -1, "9"])
def test_unknown_flag_names_the_value(flag: object) -> None:
    """The error for an unknown successFlag shows the value the service sent."""
    with pytest.raises(ResponseError, match=repr(flag)):
        decode_record_info(
            raw(envelope(200, "success", {"taskId": TASK, "successFlag": flag})), TASK
        )


@pytest.mark.parametrize("flag", [1, 1.0, "1"])
def test_record_info_accepts_integral_success_flags(flag: object) -> None:
    """successFlag 1, 1.0 and "1" all mean SUCCESS."""
    body = envelope(200, "success", {"taskId": TASK, "successFlag": flag})
    assert decode_record_info(raw(body), TASK).status is TaskStatus.SUCCESS


@pytest.mark.parametrize("other", ["veo_task_other", 12345, " veo_task_abc"])
def test_record_of_another_task_is_refused(other: object) -> None:
    """A record whose taskId is not the one asked for raises, naming both ids;
    retryable (an answer gone astray: the next one may be this task's)."""
    body = envelope(200, "success", {"taskId": other, "successFlag": 1})
    with pytest.raises(ResponseError) as info:
        decode_record_info(raw(body), TASK)
    err = info.value
    assert err.field == "taskId"
    assert err.retryable is True
    assert err.task_id == TASK
    assert repr(TASK) in err.message
    assert repr(str(other)) in err.message


def test_record_without_task_id_is_the_one_asked_for() -> None:
    """A record that omits its taskId (or sends "null") is taken as the task asked for."""
    for data in (
        {"successFlag": 1},
        {"taskId": None, "successFlag": 1},
        {"taskId": "null", "successFlag": 1},
    ):
        assert decode_record_info(raw(envelope(200, "success", data)), TASK).task_id == TASK


@pytest.mark.parametrize(
    ("text", "tz", "expected"),
    [
        pytest.param(
            "2026-01-06 08:17:04",
            None,
            dt.datetime(2026, 1, 6, 0, 17, 4, tzinfo=dt.timezone.utc),
            id="default-utc-plus-8",
        ),
        pytest.param(
            "2026-01-06 08:17:04",
            dt.timezone.utc,
            dt.datetime(2026, 1, 6, 8, 17, 4, tzinfo=dt.timezone.utc),
            id="override-utc",
        ),
    ],
)
def test_record_info_reads_times_in_the_given_zone(
    text: str, tz: dt.tzinfo | None, expected: dt.datetime
) -> None:
    """decode_record_info reads zoneless times in UTC+8 unless tz= says otherwise."""
    body = envelope(200, "success", {"taskId": TASK, "successFlag": 1, "completeTime": text})
    info = (
        decode_record_info(raw(body), TASK)
        if tz is None
        else decode_record_info(raw(body), TASK, tz=tz)
    )
    assert info.complete_time == expected


# ------------------------------------------------------------ properties

_json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    _json_leaf,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
statuses = st.one_of(st.integers(min_value=100, max_value=599), st.sampled_from([200, 429, 502]))
header_maps = st.dictionaries(
    st.sampled_from(["Retry-After", "retry-after", "Content-Type", "X-Other"]),
    st.text(max_size=40),
    max_size=3,
)


def _decode_or_veo_error(response: RawResponse) -> None:
    try:
        result = decode_record_info(response, "t")
    except VeoError:
        return
    assert isinstance(result, RecordInfo)


_PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@_PROPERTY_SETTINGS
@given(
    status=statuses,
    headers=header_maps,
    body=st.one_of(
        st.binary(max_size=300),
        st.text(max_size=200).map(str.encode),
        st.builds(lambda n: b"[" * n, st.integers(0, 50_000)),
        json_values.map(lambda v: json.dumps(v).encode()),
    ),
)
def test_arbitrary_bytes_raise_only_veo_errors(
    status: int, headers: dict[str, str], body: bytes
) -> None:
    """Any status, headers and body bytes give a RecordInfo or a VeoError, nothing else."""
    _decode_or_veo_error(RawResponse(status, headers, body))


_flag_values = st.one_of(
    st.integers(-2, 8), st.sampled_from(["0", "1", " 2 ", "3", "x", "", "null"]), json_values
)
_time_values = st.one_of(
    st.sampled_from(["2025-06-06 10:25:00", "", "null", "1749205800000", "2025-13-45 99:99:99"]),
    st.integers(min_value=-(10**18), max_value=10**18),
    st.floats(),
    json_values,
)
_url_values = st.one_of(
    st.lists(st.text(max_size=10), max_size=3),
    st.lists(st.one_of(st.text(max_size=5), st.integers()), max_size=3),
    st.sampled_from(['["http://a/1.mp4"]', "http://a/2.mp4", "[1, 2]", "[oops", "", "null"]),
    json_values,
)
_response_values = st.one_of(
    st.none(),
    json_values,
    st.fixed_dictionaries(
        {},
        optional={
            "taskId": json_values,
            "resultUrls": _url_values,
            "originUrls": _url_values,
            "fullResultUrls": _url_values,
            "resolution": json_values,
        },
    ),
)
record_like = st.fixed_dictionaries(
    {},
    optional={
        "taskId": st.one_of(st.just("veo_task_1"), json_values),
        "successFlag": _flag_values,
        "paramJson": st.one_of(st.just('{"prompt": "p"}'), st.just("{bad"), json_values),
        "createTime": _time_values,
        "completeTime": _time_values,
        "response": _response_values,
        "resultUrls": _url_values,
        "errorCode": st.one_of(st.sampled_from(["400", "null", "", "x"]), json_values),
        "errorMessage": json_values,
        "fallbackFlag": st.one_of(st.sampled_from(["true", "false", "maybe"]), json_values),
        "recordId": json_values,
    },
)


@_PROPERTY_SETTINGS
@given(
    status=statuses,
    code=st.one_of(st.just(200), st.just("200"), st.integers(-1000, 1000), json_values),
    msg=json_values,
    data=st.one_of(record_like, json_values),
)
def test_structured_wrong_envelopes_raise_only_veo_errors(
    status: int, code: Any, msg: Any, data: Any
) -> None:
    """Well-formed JSON envelopes with wrong codes or data give a RecordInfo or a VeoError."""
    body = json.dumps({"code": code, "msg": msg, "data": data}).encode()
    _decode_or_veo_error(RawResponse(status, {}, body))


# ------------------------------------------------------------ bytes that are not UTF-8


@pytest.mark.parametrize("field", ["msg", "paramJson"])
def test_a_byte_not_utf8_in_a_cosmetic_field_costs_no_success_record(field: str) -> None:
    """One Latin-1 byte in ``msg`` or ``paramJson`` made the whole answer
    "not JSON" (retryable): a finished task's SUCCESS record was thrown away
    at every poll, the wait retried to its deadline. The rest is read, the
    byte as U+FFFD."""
    data = {"taskId": TASK, "successFlag": 1, "paramJson": '{"prompt": "Cafe"}',
            "response": {"resultUrls": ["https://cdn.example/v.mp4"]}}
    text = json.dumps({"code": 200, "msg": "success", "data": data})
    marker = '"success"' if field == "msg" else "Cafe"
    latin1 = text.encode().replace(marker.encode(), marker.encode().replace(b"e", b"\xe9", 1), 1)
    with pytest.raises(UnicodeDecodeError):
        latin1.decode("utf-8")
    record = decode_record_info(raw(latin1), TASK)
    assert record.status is TaskStatus.SUCCESS
    assert record.result_urls == ("https://cdn.example/v.mp4",)
    if field == "paramJson":
        assert record.params == {"prompt": "Caf\ufffd"}


@pytest.mark.parametrize("field", ["resultUrls", "taskId"])
def test_a_byte_not_utf8_in_a_field_that_matters_stays_unreadable(field: str) -> None:
    """Read as U+FFFD there, a result URL (or the task id) would be quietly
    altered and delivered, and stored, as the result: the answer stays "not
    JSON", retried."""
    data = {"taskId": TASK, "successFlag": 1, "paramJson": "{}",
            "response": {"resultUrls": ["https://cdn.example/cafe.mp4"]}}
    text = json.dumps({"code": 200, "msg": "success", "data": data}).encode()
    marker = b"cafe.mp4" if field == "resultUrls" else TASK.encode()
    body = text.replace(marker, marker.replace(b"a", b"\xe1", 1), 1)
    with pytest.raises(ResponseError) as info:
        decode_record_info(raw(body), TASK)
    assert info.value.retryable is True


def test_json_nested_too_deeply_is_not_asked_again() -> None:
    """Well-formed JSON 100,000 levels deep is no envelope, and asking again
    gets the same: not retryable (it was read as "cut short", and retried)."""
    body = b'{"code":200,"msg":"success","data":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    for answer in (body, b"[" * 100_000 + b"]" * 100_000):
        with pytest.raises(ResponseError) as info:
            decode_envelope(raw(answer, 200), task_id=TASK)
        assert info.value.retryable is False
        assert "not a Kie envelope" in info.value.message
        with pytest.raises(ResponseError) as info:
            decode_record_info(raw(answer, 200), TASK)
        assert info.value.retryable is False


# ------------------------------------------------------------ unchanged GENERATING records


def _record_body(flag: object, **extra: object) -> bytes:
    data = {"taskId": "t", "successFlag": flag, "paramJson": '{"prompt": "p"}', **extra}
    return json.dumps({"code": 200, "msg": "success", "data": data}).encode()


@pytest.mark.parametrize("flag", [0, "0"])
def test_unchanged_generating_answer_reuses_the_previous_record(flag: object) -> None:
    """A poll that still says GENERATING hands back the previous record, not a rebuilt one."""
    previous = decode_record_info(raw(_record_body(0)), "t")
    assert previous.status is TaskStatus.GENERATING
    assert decode_record_info(raw(_record_body(flag)), "t", previous) is previous


@pytest.mark.parametrize(
    ("body", "previous_flag"),
    [
        pytest.param(_record_body(1), 0, id="now-success"),
        pytest.param(_record_body(2, errorCode=400), 0, id="now-failed"),
        pytest.param(_record_body(0, response={"resultUrls": ["u"]}), 0, id="result-appeared"),
        pytest.param(_record_body(0), 1, id="previous-was-terminal"),
        pytest.param(_record_body(0, resultUrls=["u"]), 0, id="urls-beside-record"),
    ],
)
def test_a_changed_answer_is_decoded_afresh(body: bytes, previous_flag: int) -> None:
    """Any change (status, result, task) or a terminal previous record means a full decode."""
    previous = decode_record_info(raw(_record_body(previous_flag)), "t")
    fresh = decode_record_info(raw(body), "t", previous)
    assert fresh is not previous
    assert fresh == decode_record_info(raw(body), "t")


@pytest.mark.parametrize("flag", [0.0, "0"])
def test_unchanged_answer_with_another_zero_spelling_is_still_generating(flag: object) -> None:
    """0.0 or "0" after a 0 poll gives the same GENERATING record (shortcut or not)."""
    previous = decode_record_info(raw(_record_body(0)), "t")
    again = decode_record_info(raw(_record_body(flag)), "t", previous)
    assert again == previous
    assert again.status is TaskStatus.GENERATING


def test_false_flag_is_not_taken_for_generating() -> None:
    """successFlag false (a bool, equal to 0 in Python) is refused even after a 0 poll."""
    previous = decode_record_info(raw(_record_body(0)), "t")
    with pytest.raises(ResponseError) as info:
        decode_record_info(raw(_record_body(False)), "t", previous)
    assert info.value.field == "successFlag"


@pytest.mark.parametrize(
    ("body", "asked"),
    [
        pytest.param(_record_body(0, taskId="other"), "t", id="answer-names-another-task"),
        pytest.param(_record_body(0), "other", id="previous-of-another-task"),
    ],
)
def test_generating_shortcut_never_returns_another_tasks_record(body: bytes, asked: str) -> None:
    """The unchanged-record shortcut refuses a record or a previous of another task."""
    previous = decode_record_info(raw(_record_body(0)), "t")
    with pytest.raises(ResponseError) as info:
        decode_record_info(raw(body), asked, previous)
    assert info.value.field == "taskId"
