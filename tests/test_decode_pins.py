"""Pins on the wire decoding found by mutation testing of ``_convert``,
``_protocol`` and ``_json``, and answers the reference documents that the
decoding once mishandled (a "{}" response text, a "null" msg, a non-UTF-8
byte in a 1080p/4K "processing" msg)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

import pytest

from veo_async._convert import record_from_wire
from veo_async._endpoints import decode_4k, decode_1080p
from veo_async._protocol import RawResponse, decode_envelope, decode_record_info
from veo_async.errors import ErrorPage, RecordNotFoundError, ResponseError, ServerError

TASK = "veo_task_abcdef123456"
UTC = dt.timezone.utc


def rec(**fields: Any) -> dict[str, Any]:
    """A minimal generating record with some wire fields set."""
    return {"taskId": TASK, "successFlag": 0, **fields}


def envelope(code: object, msg: object = "", data: object = None) -> bytes:
    """A Kie envelope as the service would serialise it."""
    return json.dumps({"code": code, "msg": msg, "data": data}).encode()


def raw(body: bytes, status: int = 200, headers: Mapping[str, str] | None = None) -> RawResponse:
    """A RawResponse with sensible defaults."""
    return RawResponse(status, dict(headers or {}), body)


# ------------------------------------------------------------------ _convert


@pytest.mark.parametrize("spelling", ["nULL", "nuLL", "NoNe", " nULL "])
def test_null_in_any_mixed_case_is_absent(spelling: str) -> None:
    """ "null"/"none" in any case (not only the listed spellings) read as absent."""
    info = record_from_wire(rec(errorMessage=spelling, errorCode=spelling, createTime=spelling))
    assert (info.error_message, info.error_code, info.create_time) == ("", None, None)


def test_a_time_with_an_offset_and_a_zone_word_is_unreadable() -> None:
    """ "...+08:00 UTC" names two zones: the time is dropped, not read in either."""
    info = record_from_wire(rec(createTime="2025-06-06T10:30:00+08:00 UTC"))
    assert info.create_time is None


def test_a_padded_null_among_real_urls_is_dropped() -> None:
    """ " null " beside real URLs (the fast list check's strip test) is no URL."""
    urls = ["https://cdn.example/a.mp4", " null "]
    info = record_from_wire(rec(successFlag=1, response={"resultUrls": urls}))
    assert info.result_urls == ("https://cdn.example/a.mp4",)


@pytest.mark.parametrize(("flag", "expected"), [("1", True), (" 0 ", False), ("TRUE", True)])
def test_fallback_flag_as_digit_text(flag: str, expected: bool) -> None:
    """fallbackFlag "1"/"0" (any padding, any case of true) reads as its bool."""
    assert record_from_wire(rec(fallbackFlag=flag)).fallback is expected


# The text of an empty object was kept as text ({} is falsy), and the record
# refused as "response is a str" (not retryable), though response {} decodes.
def test_a_response_sent_as_the_text_of_an_empty_object_is_read() -> None:
    """response "{}" (an empty object's JSON text) reads as response {} does."""
    as_text = record_from_wire(rec(response="{}"))
    assert as_text == record_from_wire(rec(response={}))


# ----------------------------------------------------------------- _protocol


# "null" stands for absent in text fields (the reference), and a 422 with no
# msg is read as "record not (yet) visible": so is one whose msg is "null" (it
# was a plain, final APIError "[422] null").
@pytest.mark.parametrize("msg", ["null", "NULL", " null "])
def test_record_info_422_with_msg_null_is_record_not_found(msg: str) -> None:
    """A 422 whose msg is a "null" spelling says nothing: record not visible yet."""
    with pytest.raises(RecordNotFoundError) as caught:
        decode_record_info(raw(envelope(422, msg)), TASK)
    assert caught.value.code == 422


def test_an_error_whose_msg_is_null_is_told_by_its_code() -> None:
    """A msg of "null" says nothing: the error reads "error code 500", not "null"."""
    with pytest.raises(ServerError) as caught:
        decode_envelope(raw(envelope(500, "null")))
    assert "error code 500" in str(caught.value)
    assert "null" not in str(caught.value).lower()


def test_a_null_resolution_in_the_documented_shape_is_none() -> None:
    """resolution "null" in an otherwise documented record reads as None (fast path too)."""
    response = {"taskId": TASK, "resultUrls": ["https://cdn.example/a.mp4"], "resolution": "null"}
    info = record_from_wire(rec(successFlag=1, response=response))
    assert info.response is not None
    assert info.response.resolution is None


@pytest.mark.parametrize("url", ["  null ", " None  ", "\tNULL\n"])
def test_a_lone_padded_null_url_is_no_url(url: str) -> None:
    """A one-element URL list holding a padded "null" spelling gives no URL."""
    info = record_from_wire(rec(successFlag=1, response={"resultUrls": [url]}))
    assert info.result_urls == ()


@pytest.mark.parametrize("value", [42, [1, 2], True])
def test_a_param_json_that_is_neither_text_nor_object_is_kept_raw(value: object) -> None:
    """paramJson as a number or a list is kept under "raw", not dropped."""
    assert record_from_wire(rec(paramJson=value)).params == {"raw": value}


@pytest.mark.parametrize("body", [b"null", b"  null\n"])
def test_a_2xx_json_null_body_is_final(body: bytes) -> None:
    """A 2xx body of JSON null is well-formed JSON, no envelope: not retryable."""
    with pytest.raises(ResponseError) as caught:
        decode_envelope(raw(body))
    assert caught.value.retryable is False
    assert "not a Kie envelope" in str(caught.value)


def test_a_success_envelope_under_an_error_status_names_the_task_it_claims() -> None:
    """A create's "success" under HTTP 500 carries data.taskId: the task it may have made."""
    body = envelope(200, "success", {"taskId": "veo_task_made"})
    with pytest.raises(ServerError) as caught:
        decode_envelope(raw(body, status=500))
    assert caught.value.task_id == "veo_task_made"
    assert caught.value.code == 500


# A byte that is not UTF-8 in a msg (a cosmetic field) must not skip the
# "1080p still processing" / "4k is processing" reading: it was read as no
# envelope, and the 400 raised as a ContentPolicyError (a refused prompt,
# final), the 422 as a final APIError.
def test_a_1080p_400_with_a_latin1_msg_is_still_processing() -> None:
    """get-1080p-video's 400 is "processing" even when its msg has a non-UTF-8 byte."""
    body = b'{"code":400,"msg":"1080P is processing \xe9","data":null}'
    assert decode_1080p(raw(body)) is None


# (The same, for get-4k-video's repeated request.)
def test_a_4k_422_processing_with_a_latin1_msg_is_still_processing() -> None:
    """get-4k-video's 422 "4k is processing" with a non-UTF-8 msg byte is not an error."""
    body = b'{"code":422,"msg":"4k is processing \xe9","data":{"resultUrls":null}}'
    assert decode_4k(raw(body)) is None


@pytest.mark.parametrize(
    ("claimed", "expected"),
    [(" veo_task_made\n", "veo_task_made"), ("two ids", None), ("x" * 300, None), ("null", None)],
)
def test_a_claimed_task_id_is_only_one_a_poll_can_use(claimed: str, expected: str | None) -> None:
    """The task id a success-under-error-status claims is stripped, and dropped if unusable."""
    body = envelope(200, "success", {"taskId": claimed})
    with pytest.raises(ServerError) as caught:
        decode_envelope(raw(body, status=502))
    assert caught.value.task_id == expected


def test_a_proxy_code_deep_in_its_page_is_still_explained() -> None:
    """The Cloudflare 1010 hint is found anywhere in the page's first 2,000 bytes."""
    page = b"<html><head><title>Access denied</title></head><body>" + b" " * 500
    page += b"<p>error code: 1010</p></body></html>"
    with pytest.raises(ErrorPage) as caught:
        decode_envelope(raw(page, status=403))
    assert "User-Agent" in str(caught.value)
    assert caught.value.retryable is False


def test_a_byte_not_utf8_in_a_field_name_stays_unreadable() -> None:
    """A non-UTF-8 byte in a key (maybe "taskId" itself) is not cosmetic: retried as unreadable."""
    body = b'{"code":200,"msg":"ok","data":{"taskId":"veo_task_abc","successFlag":1,"x\xff":1}}'
    with pytest.raises(ResponseError) as caught:
        decode_envelope(raw(body))
    assert caught.value.retryable is True
    assert "not JSON" in str(caught.value)


def test_url_fields_under_data_fill_only_the_gaps_of_the_response() -> None:
    """URLs under data fill a response without any, but never overwrite what it has."""
    data = rec(
        successFlag=1,
        response={
            "resultUrls": [],
            "originUrls": ["https://cdn.example/o.mp4"],
            "resolution": "1080p",
        },
        resultUrls=["https://cdn.example/r.mp4"],
        originUrls=["https://cdn.example/other.mp4"],
        resolution="720p",
    )
    response = record_from_wire(data).response
    assert response is not None
    assert response.result_urls == ("https://cdn.example/r.mp4",)
    assert response.origin_urls == ("https://cdn.example/o.mp4",)
    assert response.resolution == "1080p"


def test_a_param_json_text_holding_a_lone_surrogate_is_still_parsed() -> None:
    """paramJson text holding a lone surrogate (a prompt cut mid-emoji) is parsed, not kept raw."""
    info = record_from_wire(rec(paramJson='{"prompt": "cut \ud83d"}'))
    assert info.params == {"prompt": "cut \ud83d"}


def test_a_body_cut_short_after_leading_blanks_still_says_it_starts_as_json() -> None:
    """A truncated JSON body after a newline is told as "starts as JSON", and retried."""
    with pytest.raises(ResponseError) as caught:
        decode_envelope(raw(b'\r\n  {"code":200,"msg":"success","data":{"taskId":'))
    assert "starts as JSON" in str(caught.value)
    assert caught.value.retryable is True
