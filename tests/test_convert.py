"""record_from_wire on every documented (and seen) variant of a Kie task record."""

from __future__ import annotations

import datetime as dt
import json
import logging
import zoneinfo
from typing import Any

import attrs
import pytest

from veo_async._convert import KIE_TIMEZONE, record_from_wire, record_to_jsonable
from veo_async.errors import ResponseError
from veo_async.models import RecordInfo, TaskStatus, VideoResult

UTC = dt.timezone.utc
KIE = dt.timezone(dt.timedelta(hours=8))
TASK = "veo_task_abcdef123456"
#: 2025-06-06 10:30:00 UTC as epoch seconds.
EPOCH_S = 1749205800
AT_1030 = dt.datetime(2025, 6, 6, 10, 30, tzinfo=UTC)
#: "2025-06-06 10:30:00" as Kie writes it: Beijing time, 02:30 UTC.
AT_1030_KIE = dt.datetime(2025, 6, 6, 10, 30, tzinfo=KIE)

#: The documented record-info example from kie-veo-api.md, verbatim.
DOC_EXAMPLE: dict[str, Any] = json.loads(
    """{"taskId":"veo_task_abcdef123456",
  "paramJson":"{\\"prompt\\":\\"A futuristic city...\\",\\"waterMark\\":\\"KieAI\\"}",
  "completeTime":"2025-06-06 10:30:00",
  "response":{"taskId":"veo_task_abcdef123456",
              "resultUrls":["http://example.com/video1.mp4"],
              "originUrls":["http://example.com/original_video1.mp4"],
              "fullResultUrls":["..."],
              "resolution":"1080p"},
  "successFlag":1,"errorCode":null,"errorMessage":"",
  "createTime":"2025-06-06 10:25:00","fallbackFlag":false}"""
)


def rec(**fields: Any) -> dict[str, Any]:
    """A minimal generating record with some wire fields set (None values kept as null)."""
    return {"taskId": TASK, "successFlag": 0, **fields}


def test_documented_example_in_full() -> None:
    """The documented example decodes with every field in place."""
    info = record_from_wire(DOC_EXAMPLE, "requested-id")
    assert info == RecordInfo(
        task_id=TASK,
        status=TaskStatus.SUCCESS,
        params={"prompt": "A futuristic city...", "waterMark": "KieAI"},
        create_time=dt.datetime(2025, 6, 6, 10, 25, tzinfo=KIE),
        complete_time=AT_1030_KIE,
        response=VideoResult(
            task_id=TASK,
            result_urls=("http://example.com/video1.mp4",),
            origin_urls=("http://example.com/original_video1.mp4",),
            full_result_urls=("...",),
            resolution="1080p",
        ),
        error_code=None,
        error_message="",
        fallback=False,
    )
    # Field by field too: equality above would hide a type mismatch like list vs tuple.
    assert info.params == {"prompt": "A futuristic city...", "waterMark": "KieAI"}
    assert info.status is TaskStatus.SUCCESS
    assert info.response is not None
    assert type(info.response.result_urls) is tuple
    assert info.result_urls == ("http://example.com/video1.mp4",)
    assert info.is_done
    assert info.create_time is not None
    assert info.create_time.utcoffset() == dt.timedelta(hours=8)


def test_record_is_not_mutated() -> None:
    """Decoding leaves the caller's wire dict untouched."""
    data = json.loads(json.dumps(DOC_EXAMPLE))
    record_from_wire(data, TASK)
    assert data == DOC_EXAMPLE


# -------------------------------------------------------------- successFlag


@pytest.mark.parametrize(
    ("flag", "status"),
    [
        pytest.param(0, TaskStatus.GENERATING, id="int-0"),
        pytest.param(1, TaskStatus.SUCCESS, id="int-1"),
        pytest.param(2, TaskStatus.FAILED, id="int-2"),
        pytest.param(3, TaskStatus.GENERATION_FAILED, id="int-3"),
        pytest.param("1", TaskStatus.SUCCESS, id="string-1"),
        pytest.param(" 2 ", TaskStatus.FAILED, id="padded-string-2"),
        pytest.param("0", TaskStatus.GENERATING, id="string-0"),
        pytest.param(1.0, TaskStatus.SUCCESS, id="integral-float-1"),
        pytest.param(0.0, TaskStatus.GENERATING, id="integral-float-0"),
        pytest.param(3.0, TaskStatus.GENERATION_FAILED, id="integral-float-3"),
        pytest.param("1.0", TaskStatus.SUCCESS, id="string-integral-float"),
    ],
)
def test_success_flag_variants(flag: object, status: TaskStatus) -> None:
    """successFlag as an int, an integral float or a (padded) numeric string gives the status."""
    assert record_from_wire(rec(successFlag=flag)).status is status


@pytest.mark.parametrize(
    ("flag", "shown"),
    [
        pytest.param(4, "4", id="4"),
        pytest.param(7, "7", id="7"),
        pytest.param(-1, "-1", id="negative"),
        pytest.param("7", "'7'", id="string-7"),
        pytest.param(1.5, "1.5", id="fraction"),
        pytest.param("1.5", "'1.5'", id="string-fraction"),
        pytest.param(float("nan"), "nan", id="nan"),
        pytest.param(float("inf"), "inf", id="inf"),
        pytest.param(True, "True", id="bool"),
        pytest.param("x", "'x'", id="text"),
        pytest.param("null", "'null'", id="string-null"),
        pytest.param([1], "[1]", id="list"),
    ],
)
def test_unknown_success_flag_is_final(flag: object, shown: str) -> None:
    """An unknown successFlag is a non-retryable ResponseError whose message shows the value."""
    with pytest.raises(ResponseError) as info:
        record_from_wire(rec(successFlag=flag), TASK)
    err = info.value
    assert err.field == "successFlag"
    assert err.retryable is False
    assert shown in err.message
    assert err.task_id == TASK


# -------------------------------------------------------------- resultUrls


@pytest.mark.parametrize(
    ("data", "urls"),
    [
        pytest.param(
            rec(response={"resultUrls": ["http://a/1.mp4", "http://a/2.mp4"]}),
            ("http://a/1.mp4", "http://a/2.mp4"),
            id="list",
        ),
        pytest.param(
            rec(response={"resultUrls": '["http://a/1.mp4", "http://a/2.mp4"]'}),
            ("http://a/1.mp4", "http://a/2.mp4"),
            id="json-encoded-string",
        ),
        pytest.param(
            rec(response={"resultUrls": " http://a/1.mp4 "}),
            ("http://a/1.mp4",),
            id="bare-url-string",
        ),
        pytest.param(rec(response={"resultUrls": []}), (), id="empty-list"),
        pytest.param(rec(response={"resultUrls": None}), (), id="null"),
        pytest.param(rec(response={"resultUrls": ""}), (), id="empty-string"),
        pytest.param(rec(response={"resultUrls": "null"}), (), id="string-null"),
        pytest.param(rec(response={}), (), id="absent-in-response"),
        pytest.param(
            rec(response=None, resultUrls=["http://a/1.mp4"]),
            ("http://a/1.mp4",),
            id="top-level-list-response-null",
        ),
        pytest.param(
            rec(resultUrls='["http://a/1.mp4"]'),
            ("http://a/1.mp4",),
            id="top-level-json-string-response-absent",
        ),
        pytest.param(
            rec(resultUrls="http://a/1.mp4"), ("http://a/1.mp4",), id="top-level-bare-url"
        ),
    ],
)
def test_result_urls_variants(data: dict[str, Any], urls: tuple[str, ...]) -> None:
    """resultUrls as a list, JSON string or bare URL, in response or directly under data."""
    info = record_from_wire(data)
    assert info.response is not None
    assert info.response.result_urls == urls
    assert info.result_urls == urls
    assert info.response.task_id == TASK


def test_top_level_urls_keep_origin_urls_and_resolution() -> None:
    """URLs found directly under data bring their originUrls and resolution along."""
    info = record_from_wire(
        rec(resultUrls=["http://a/1.mp4"], originUrls='["http://a/o.mp4"]', resolution="720p")
    )
    assert info.response == VideoResult(
        task_id=TASK,
        result_urls=("http://a/1.mp4",),
        origin_urls=("http://a/o.mp4",),
        resolution="720p",
    )


def test_response_urls_win_over_top_level_urls() -> None:
    """When both places carry URLs, data.response is the documented source."""
    info = record_from_wire(rec(response={"resultUrls": ["http://a/r"]}, resultUrls=["http://a/t"]))
    assert info.result_urls == ("http://a/r",)


@pytest.mark.parametrize(
    "response",
    [
        pytest.param({"resolution": "1080p"}, id="no-urls-key"),
        pytest.param({"resultUrls": None, "resolution": "1080p"}, id="urls-null"),
        pytest.param({"resultUrls": "null", "resolution": "1080p"}, id="urls-string-null"),
        pytest.param({"resultUrls": [], "resolution": "1080p"}, id="urls-empty-list"),
        pytest.param({}, id="empty-object"),
    ],
)
def test_top_level_urls_fill_a_response_without_any(response: dict[str, Any]) -> None:
    """A response object with no URLs beside URLs directly under data (the docs'
    quick-start reads them there): the URLs are not lost, and what the response
    does carry stays."""
    data = rec(
        successFlag=1,
        response=response,
        resultUrls='["http://a/1.mp4"]',
        originUrls=["http://a/o.mp4"],
    )
    info = record_from_wire(data)
    assert info.result_urls == ("http://a/1.mp4",)
    assert info.response is not None
    assert info.response.origin_urls == ("http://a/o.mp4",)
    assert info.response.resolution == response.get("resolution")
    assert info.response.task_id == TASK


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(rec(response=None), id="response-null"),
        pytest.param(rec(), id="response-absent"),
        pytest.param(rec(response=None, resultUrls=None), id="response-and-urls-null"),
        pytest.param(rec(resultUrls=""), id="top-level-urls-empty"),
    ],
)
def test_no_response_while_generating(data: dict[str, Any]) -> None:
    """A null or absent response (and no URLs anywhere) reads as response None, no URLs."""
    info = record_from_wire(data)
    assert info.response is None
    assert info.result_urls == ()


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        pytest.param({"resultUrls": []}, TASK, id="absent"),
        pytest.param({"taskId": None, "resultUrls": []}, TASK, id="null"),
        pytest.param({"taskId": "other", "resultUrls": []}, "other", id="own-id-kept"),
    ],
)
def test_response_task_id_falls_back_to_record_id(response: dict[str, Any], expected: str) -> None:
    """The VideoResult's task id defaults to the record's when the response omits it."""
    info = record_from_wire(rec(response=response))
    assert info.response is not None
    assert info.response.task_id == expected


# -------------------------------------------------------------------- times


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("2025-06-06 10:30:00", id="documented"),
        pytest.param(" 2025-06-06 10:30:00 ", id="padded"),
        pytest.param("2025-06-06T10:30:00", id="iso-t"),
        pytest.param("2025-06-06T10:30:00.000", id="iso-t-fraction"),
        pytest.param("2025/06/06 10:30:00", id="slashes"),
        pytest.param("2025-6-6 10:30:00", id="no-zero-padding"),
        pytest.param("2025-6-6 10:30:00.000", id="no-zero-padding-fraction"),
        pytest.param("2025/6/6 10:30:00", id="slashes-no-zero-padding"),
    ],
)
@pytest.mark.parametrize("wire_name", ["createTime", "completeTime"])
def test_zoneless_time_strings_are_kie_time(wire_name: str, value: str) -> None:
    """A time string without a zone is read in UTC+8, Kie's clock, by default."""
    info = record_from_wire(rec(**{wire_name: value}))
    got = info.create_time if wire_name == "createTime" else info.complete_time
    assert got == AT_1030_KIE
    assert got is not None
    assert got.utcoffset() == dt.timedelta(hours=8)
    assert got == AT_1030 - dt.timedelta(hours=8)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(EPOCH_S * 1000, id="epoch-ms"),
        pytest.param(EPOCH_S, id="epoch-seconds"),
        pytest.param(float(EPOCH_S * 1000), id="epoch-ms-float"),
        pytest.param(str(EPOCH_S * 1000), id="epoch-ms-numeric-string"),
        pytest.param(str(EPOCH_S), id="epoch-s-numeric-string"),
        pytest.param(f"{EPOCH_S * 1000}.0", id="epoch-ms-decimal-string"),
    ],
)
@pytest.mark.parametrize("wire_name", ["createTime", "completeTime"])
@pytest.mark.parametrize("tz", [KIE_TIMEZONE, UTC, dt.timezone(dt.timedelta(hours=-5))])
def test_epoch_times_are_absolute(wire_name: str, value: object, tz: dt.tzinfo) -> None:
    """Epoch seconds or milliseconds name one instant, in UTC, whatever zone strings use."""
    info = record_from_wire(rec(**{wire_name: value}), tz=tz)
    got = info.create_time if wire_name == "createTime" else info.complete_time
    assert got == AT_1030
    assert got is not None
    assert got.utcoffset() == dt.timedelta(0)


@pytest.mark.parametrize(
    "value",
    [
        None, "", "null", " NULL ", 0, 0.0, "0", -1, "0000-00-00 00:00:00",
        # The epoch as a date, in UTC+8 as Kie writes times, in UTC, and before it.
        "1970-01-01 08:00:00", "1970-01-01T00:00:00Z", "1970-01-01 00:00:00",
    ],
)
@pytest.mark.parametrize("wire_name", ["createTime", "completeTime"])
def test_absent_times_are_none(wire_name: str, value: object) -> None:
    """A null, empty or "null" time reads as None; so does the epoch itself (0,
    or written as a date) and the zero date, which backends write for a time
    not set (they read as 1970-01-01)."""
    info = record_from_wire(rec(**{wire_name: value}))
    assert (info.create_time if wire_name == "createTime" else info.complete_time) is None


@pytest.mark.parametrize(
    ("value", "offset"),
    [
        pytest.param("2025-06-06T12:30:00+02:00", dt.timedelta(hours=2), id="plus-two"),
        pytest.param("2025-06-06T10:30:00Z", dt.timedelta(0), id="z"),
        pytest.param("2025-06-06T10:30:00.000Z", dt.timedelta(0), id="z-fraction"),
        pytest.param("2025-06-06 10:30:00+00:00", dt.timedelta(0), id="space-utc"),
        # A zone written as a word: UTC, GMT or Z, maybe with an offset.
        pytest.param("2025-06-06 10:30:00 UTC", dt.timedelta(0), id="word-utc"),
        pytest.param("2025-06-06 10:30:00 gmt", dt.timedelta(0), id="word-gmt"),
        pytest.param("2025-06-06 18:30:00 GMT+8", dt.timedelta(hours=8), id="word-gmt+8"),
        pytest.param("2025-06-06 18:30:00 UTC+08:00", dt.timedelta(hours=8), id="word-utc+08:00"),
        pytest.param(
            "2025-06-06 05:00:00 UTC-0530", -dt.timedelta(hours=5, minutes=30), id="word-utc-0530"
        ),
        pytest.param("2025/06/06 10:30:00 UTC", dt.timedelta(0), id="slashes-word-utc"),
    ],
)
def test_time_with_explicit_offset_keeps_the_instant(value: str, offset: dt.timedelta) -> None:
    """A time string with its own offset (or Z) is honoured, not re-read in UTC+8."""
    got = record_from_wire(rec(createTime=value)).create_time
    assert got == AT_1030
    assert got is not None
    assert got.utcoffset() == offset


def test_recorded_string_and_epoch_ms_agree() -> None:
    """The recorded pair: file stamp 1767658623526 ms and "2026-01-06 08:17:04" are 1 s apart."""
    stamped = record_from_wire(rec(createTime=1767658623526)).create_time
    written = record_from_wire(rec(completeTime="2026-01-06 08:17:04")).complete_time
    assert stamped == dt.datetime(2026, 1, 6, 0, 17, 3, 526000, tzinfo=UTC)
    assert written is not None
    assert stamped is not None
    assert dt.timedelta(0) <= written - stamped < dt.timedelta(seconds=1)


@pytest.mark.parametrize(
    ("tz", "expected"),
    [
        pytest.param(UTC, AT_1030, id="utc"),
        pytest.param(
            dt.timezone(dt.timedelta(hours=5, minutes=30)),
            AT_1030 - dt.timedelta(hours=5, minutes=30),
            id="plus-5-30",
        ),
        pytest.param(
            zoneinfo.ZoneInfo("America/New_York"), AT_1030 + dt.timedelta(hours=4), id="zoneinfo"
        ),
    ],
)
def test_time_zone_can_be_overridden(tz: dt.tzinfo, expected: dt.datetime) -> None:
    """tz= changes the zone of zoneless strings (fixed offsets and named zones alike)."""
    info = record_from_wire(
        rec(createTime="2025-06-06 10:30:00", completeTime="2025-06-06T10:30:00"), tz=tz
    )
    assert info.create_time == info.complete_time == expected
    assert info.create_time is not None
    assert info.create_time.utcoffset() == tz.utcoffset(info.create_time.replace(tzinfo=None))


def test_kie_timezone_is_utc_plus_8() -> None:
    """KIE_TIMEZONE, the documented default, is a fixed UTC+08:00."""
    assert KIE_TIMEZONE.utcoffset(None) == dt.timedelta(hours=8)
    assert KIE_TIMEZONE.tzname(None) == "UTC+08:00"


@pytest.mark.parametrize("tz", ["+08:00", 8, None])
def test_tz_must_be_a_tzinfo(tz: Any) -> None:
    """A tz that is not a tzinfo is a TypeError naming it, not a silent misreading."""
    with pytest.raises(TypeError, match="tz"):
        record_from_wire(rec(), tz=tz)


# ---------------------------------------------------------------- errorCode


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(400, 400, id="int"),
        pytest.param("400", 400, id="numeric-string"),
        pytest.param(" 501 ", 501, id="padded-string"),
        pytest.param(500.0, 500, id="integral-float"),
        pytest.param("500.0", 500, id="integral-float-string"),
        pytest.param("null", None, id="string-null"),
        pytest.param("NULL", None, id="string-null-upper"),
        pytest.param(None, None, id="null"),
        pytest.param("", None, id="empty-string"),
    ],
)
def test_error_code_variants(value: object, expected: int | None) -> None:
    """errorCode as int, numeric string, "null", "" or null."""
    got = record_from_wire(rec(successFlag=2, errorCode=value)).error_code
    assert got == expected
    assert got is None or type(got) is int


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("boom", "boom", id="text"),
        pytest.param(None, "", id="null"),
        pytest.param("", "", id="empty"),
        pytest.param("null", "", id="string-null"),
        pytest.param(" NULL ", "", id="padded-string-null-upper"),
    ],
)
def test_error_message_variants(value: object, expected: str) -> None:
    """errorMessage is kept as text; null, "" and "null" read as ""."""
    assert record_from_wire(rec(errorMessage=value)).error_message == expected


# ------------------------------------------------------- "null" means absent


def test_string_null_in_every_optional_field_reads_as_absent() -> None:
    """The text "null" stands for absent in every optional text, URL and object field."""
    info = record_from_wire(
        {
            "taskId": "null",
            "successFlag": 1,
            "paramJson": "null",
            "createTime": "null",
            "completeTime": "null",
            "errorCode": "null",
            "errorMessage": "null",
            "fallbackFlag": "null",
            "response": {
                "taskId": "null",
                "resultUrls": ["http://a/1.mp4"],
                "originUrls": "null",
                "fullResultUrls": ["null"],
                "resolution": "null",
            },
        },
        TASK,
    )
    assert info == RecordInfo(
        task_id=TASK,
        status=TaskStatus.SUCCESS,
        response=VideoResult(task_id=TASK, result_urls=("http://a/1.mp4",)),
    )


@pytest.mark.parametrize(
    ("urls", "expected"),
    [
        pytest.param(["null"], (), id="only-null"),
        pytest.param(["http://a/1.mp4", "null"], ("http://a/1.mp4",), id="null-after"),
        pytest.param(
            ["NULL", "http://a/1.mp4", "", None, " null "], ("http://a/1.mp4",), id="mixed-nullish"
        ),
        pytest.param('["null", "http://a/1.mp4"]', ("http://a/1.mp4",), id="json-string"),
        pytest.param(["...", "abc"], ("...", "abc"), id="short-texts-kept"),
    ],
)
def test_null_entries_are_dropped_from_url_lists(urls: object, expected: tuple[str, ...]) -> None:
    """A URL list keeps its real URLs and drops "null", "" and null entries."""
    info = record_from_wire(rec(successFlag=1, response={"resultUrls": urls, "originUrls": urls}))
    assert info.response is not None
    assert info.response.result_urls == info.response.origin_urls == expected


@pytest.mark.parametrize("response", ["null", "", "NULL"])
def test_string_null_response_is_no_response(response: str) -> None:
    """A response sent as the text "null" (or "") is read as no response."""
    info = record_from_wire(rec(response=response))
    assert info.response is None


def test_response_sent_as_json_text_is_read_as_the_object() -> None:
    """A response JSON-encoded as a string (as Kie sends paramJson) keeps its URLs."""
    urls = ["https://cdn.example/a.mp4"]
    text = json.dumps({"taskId": TASK, "resultUrls": urls, "resolution": "720p"})
    info = record_from_wire(rec(successFlag=1, response=text))
    assert info.response is not None
    assert info.result_urls == tuple(urls)
    assert info.response.resolution == "720p"


# ---------------------------------------------------------------- paramJson


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(
            '{"prompt": "p", "model": "veo3"}',
            {"prompt": "p", "model": "veo3"},
            id="json-object-string",
        ),
        pytest.param("{not json", {"raw": "{not json"}, id="invalid-json-kept-raw"),
        pytest.param("[1, 2]", {"raw": "[1, 2]"}, id="json-list-kept-raw"),
        pytest.param('"text"', {"raw": '"text"'}, id="json-string-kept-raw"),
        pytest.param("42", {"raw": "42"}, id="json-number-kept-raw"),
        pytest.param({"prompt": "p"}, {"prompt": "p"}, id="already-a-dict"),
        pytest.param(None, {}, id="null"),
        pytest.param("", {}, id="empty-string"),
    ],
)
def test_param_json_variants(value: object, expected: dict[str, Any]) -> None:
    """paramJson is parsed; anything that is not a JSON object is kept as {"raw": ...}."""
    assert record_from_wire(rec(paramJson=value)).params == expected


def test_param_json_absent() -> None:
    """A record without paramJson has empty params."""
    assert record_from_wire(rec()).params == {}


# ------------------------------------------------------------- fallbackFlag


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param({"fallbackFlag": True}, True, id="true"),
        pytest.param({"fallbackFlag": False}, False, id="false"),
        pytest.param({}, False, id="absent"),
        pytest.param({"fallbackFlag": None}, False, id="null"),
        pytest.param({"fallbackFlag": "true"}, True, id="string-true"),
        pytest.param({"fallbackFlag": "False"}, False, id="string-false"),
        pytest.param({"fallbackFlag": 1}, True, id="int-1"),
        pytest.param({"fallbackFlag": 0}, False, id="int-0"),
    ],
)
def test_fallback_flag_variants(fields: dict[str, Any], expected: bool) -> None:
    """fallbackFlag true/false, absent, or as a string/number reads as a bool."""
    got = record_from_wire(rec(**fields)).fallback
    assert got is expected


# ------------------------------------------- unknown, missing, task id


def test_unknown_fields_are_ignored() -> None:
    """New fields the service adds over time do not change or break the record."""
    extended = json.loads(json.dumps(DOC_EXAMPLE))
    extended.update(recordId="r1", creditsConsumed=12.5, mediaIds=["m1"], nested={"a": {"b": 1}})
    extended["response"]["thumbnailUrl"] = "http://example.com/t.jpg"
    assert record_from_wire(extended) == record_from_wire(DOC_EXAMPLE)


def test_missing_optional_fields_take_defaults() -> None:
    """Only taskId and successFlag are required; everything else has a default."""
    info = record_from_wire({"taskId": TASK, "successFlag": 0})
    assert info == RecordInfo(task_id=TASK, status=TaskStatus.GENERATING)
    assert (info.params, info.create_time, info.complete_time, info.response) == (
        {},
        None,
        None,
        None,
    )
    assert (info.error_code, info.error_message, info.fallback) == (None, "", False)


@pytest.mark.parametrize(
    ("data", "requested", "expected"),
    [
        pytest.param({"successFlag": 0}, "asked", "asked", id="absent-uses-requested"),
        pytest.param(
            {"taskId": None, "successFlag": 0}, "asked", "asked", id="null-uses-requested"
        ),
        pytest.param({"taskId": "own", "successFlag": 0}, "asked", "own", id="own-wins"),
        pytest.param({"taskId": "own", "successFlag": 0}, None, "own", id="nothing-requested"),
    ],
)
def test_task_id_falls_back_to_requested(
    data: dict[str, Any], requested: str | None, expected: str
) -> None:
    """A record without its task id takes the id that was asked for."""
    assert record_from_wire(data, requested).task_id == expected


# ------------------------------------------------------------- bad records


def success(*, response: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    """A good SUCCESS record, with some record (or response) fields replaced."""
    return {
        "taskId": TASK,
        "successFlag": 1,
        "createTime": "2025-06-06 10:25:00",
        "completeTime": "2025-06-06 10:30:00",
        "errorMessage": "",
        "response": {"resultUrls": ["http://a/ok.mp4"], "resolution": "720p", **(response or {})},
        **fields,
    }


def without(data: dict[str, Any], field: str) -> dict[str, Any]:
    """The record with one wire field ("response.x" for a response field) removed."""
    data = json.loads(json.dumps(data, default=str))
    where, _, name = field.rpartition(".")
    (data[where] if where else data).pop(name)
    return data


@pytest.mark.parametrize(
    ("data", "field", "type_name"),
    [
        pytest.param(success(createTime="yesterday"), "createTime", "str", id="time-text"),
        pytest.param(
            success(createTime="2025-13-45 99:99:99"), "createTime", "str", id="time-invalid"
        ),
        pytest.param(success(createTime=True), "createTime", "bool", id="time-bool"),
        pytest.param(success(createTime=[2025]), "createTime", "list", id="time-list"),
        pytest.param(success(createTime=10**30), "createTime", "int", id="time-out-of-range"),
        pytest.param(success(createTime=1e20), "createTime", "float", id="time-1e20-ms"),
        pytest.param(success(completeTime=float("nan")), "completeTime", "float", id="time-nan"),
        pytest.param(success(completeTime=float("inf")), "completeTime", "float", id="time-inf"),
        pytest.param(success(errorCode="abc"), "errorCode", "str", id="error-code-text"),
        pytest.param(success(errorCode=True), "errorCode", "bool", id="error-code-bool"),
        pytest.param(success(errorCode=[400]), "errorCode", "list", id="error-code-list"),
        pytest.param(success(errorCode=1.5), "errorCode", "float", id="error-code-fraction"),
        pytest.param(
            success(errorMessage={"a": 1}), "errorMessage", "dict", id="error-message-object"
        ),
        pytest.param(success(fallbackFlag="maybe"), "fallbackFlag", "str", id="fallback-text"),
        pytest.param(success(fallbackFlag=[1]), "fallbackFlag", "list", id="fallback-list"),
        pytest.param(
            success(response={"originUrls": [1, 2]}), "response.originUrls", "list", id="urls-ints"
        ),
        pytest.param(
            success(response={"originUrls": "[1, 2]"}),
            "response.originUrls",
            "str",
            id="urls-json-ints",
        ),
        pytest.param(
            success(response={"originUrls": "[oops"}),
            "response.originUrls",
            "str",
            id="urls-bad-json",
        ),
        pytest.param(
            success(response={"originUrls": {"a": "b"}}),
            "response.originUrls",
            "dict",
            id="urls-object",
        ),
        pytest.param(
            success(response={"fullResultUrls": 5}),
            "response.fullResultUrls",
            "int",
            id="full-urls-number",
        ),
        pytest.param(
            success(response={"taskId": [1]}), "response.taskId", "list", id="response-task-id"
        ),
        pytest.param(
            success(response={"resolution": {"p": 1}}),
            "response.resolution",
            "dict",
            id="resolution-object",
        ),
    ],
)
def test_unreadable_cosmetic_field_keeps_the_record(
    data: dict[str, Any], field: str, type_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An unreadable optional field takes its default; the record (still SUCCESS) is kept."""
    with caplog.at_level(logging.DEBUG, logger="veo_async"):
        info = record_from_wire(data, TASK)
    assert info.status is TaskStatus.SUCCESS
    assert info == record_from_wire(without(data, field), TASK)
    assert info.result_urls == ("http://a/ok.mp4",)
    (log,) = (r for r in caplog.records if r.name == "veo_async")
    assert log.levelno == logging.DEBUG
    assert repr(field) in log.getMessage()
    assert type_name in log.getMessage()


def test_unreadable_field_log_line_is_short(caplog: pytest.LogCaptureFixture) -> None:
    """The debug line about an unreadable field shows at most ~100 characters of the value."""
    with caplog.at_level(logging.DEBUG, logger="veo_async"):
        info = record_from_wire(success(createTime="x" * 10_000), TASK)
    assert info.create_time is None
    (line,) = (r.getMessage() for r in caplog.records)
    assert "createTime" in line
    assert "x" * 100 not in line
    assert len(line) < 300


def test_unreadable_urls_directly_under_data_give_no_urls() -> None:
    """URLs beside the record that cannot be read leave a SUCCESS record without URLs."""
    info = record_from_wire({"taskId": TASK, "successFlag": 1, "resultUrls": 5})
    assert info.status is TaskStatus.SUCCESS
    assert info.result_urls == ()


@pytest.mark.parametrize(
    ("data", "field"),
    [
        pytest.param({"taskId": TASK}, "successFlag", id="flag-missing"),
        pytest.param(rec(successFlag=None), "successFlag", id="flag-null"),
        pytest.param(rec(successFlag=9), "successFlag", id="flag-9"),
        pytest.param(rec(taskId={"a": 1}), "taskId", id="task-id-object"),
        pytest.param(rec(taskId=[TASK]), "taskId", id="task-id-list"),
        pytest.param(rec(response="oops"), "response", id="response-string"),
        pytest.param(rec(response=[1, 2]), "response", id="response-list"),
        pytest.param(rec(response=5), "response", id="response-number"),
    ],
)
def test_record_of_the_wrong_shape_is_final(data: dict[str, Any], field: str) -> None:
    """A record without a readable taskId/successFlag or object response: non-retryable error."""
    with pytest.raises(ResponseError) as info:
        record_from_wire(data, "asked")
    err = info.value
    assert type(err) is ResponseError
    assert err.field == field
    assert repr(field) in err.message
    assert err.retryable is False
    assert err.task_id == "asked"
    assert len(err.excerpt) <= 200


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(None, id="null"),
        pytest.param([{"taskId": TASK}], id="list"),
        pytest.param("veo_task_1", id="string"),
        pytest.param(5, id="number"),
    ],
)
def test_data_not_an_object(data: object) -> None:
    """A record that is not a JSON object raises a non-retryable ResponseError on "data"."""
    with pytest.raises(ResponseError) as info:
        record_from_wire(data, "asked")
    assert info.value.field == "data"
    assert info.value.task_id == "asked"
    assert info.value.retryable is False


@pytest.mark.parametrize("task_id", [None, "null", ""])
def test_no_task_id_anywhere(task_id: object) -> None:
    """A record without a task id, when none was asked for, names the taskId field."""
    with pytest.raises(ResponseError) as info:
        record_from_wire({"taskId": task_id, "successFlag": 0})
    assert info.value.field == "taskId"
    assert info.value.retryable is False


# ------------------------------------------------------ record_to_jsonable


def _keys(value: object) -> set[str]:
    """Every dict key in a nested JSON value."""
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys(v)}
    return set()


def test_record_to_jsonable_round_trips_through_json() -> None:
    """record_to_jsonable gives json.dumps-able snake_case with ISO times and status names."""
    info = record_from_wire(DOC_EXAMPLE)
    out = record_to_jsonable(info)
    again = json.loads(json.dumps(out))
    assert again == out
    assert set(out) == {f.name for f in attrs.fields(RecordInfo)}
    assert set(out["response"]) == {f.name for f in attrs.fields(VideoResult)}
    without_params = {k: v for k, v in out.items() if k != "params"}
    assert all(k == k.lower() for k in _keys(without_params))
    assert out["status"] == "SUCCESS"
    assert dt.datetime.fromisoformat(out["create_time"]) == info.create_time
    assert dt.datetime.fromisoformat(out["complete_time"]) == info.complete_time
    assert out["response"]["result_urls"] == ["http://example.com/video1.mp4"]
    assert out["params"] == {"prompt": "A futuristic city...", "waterMark": "KieAI"}
    assert out["fallback"] is False


def test_record_to_jsonable_without_response() -> None:
    """A generating record serialises with response null and no times."""
    out = record_to_jsonable(record_from_wire(rec()))
    assert json.loads(json.dumps(out)) == out
    assert out["response"] is None
    assert out["create_time"] is None
    assert out["status"] == "GENERATING"


# ----------------------------------------------------------------- helpers


@pytest.mark.parametrize(
    ("status", "terminal"),
    [
        pytest.param(TaskStatus.GENERATING, False, id="generating"),
        pytest.param(TaskStatus.SUCCESS, True, id="success"),
        pytest.param(TaskStatus.FAILED, True, id="failed"),
        pytest.param(TaskStatus.GENERATION_FAILED, True, id="generation-failed"),
    ],
)
def test_is_terminal_and_is_done(status: TaskStatus, terminal: bool) -> None:
    """Only GENERATING is non-terminal; RecordInfo.is_done follows the status."""
    assert status.is_terminal is terminal
    assert RecordInfo(task_id=TASK, status=status).is_done is terminal


def test_task_status_values_match_success_flag() -> None:
    """TaskStatus values are exactly the documented successFlag numbers."""
    assert {s.name: int(s) for s in TaskStatus} == {
        "GENERATING": 0,
        "SUCCESS": 1,
        "FAILED": 2,
        "GENERATION_FAILED": 3,
    }


def test_result_urls_shortcut() -> None:
    """RecordInfo.result_urls is the response's URLs, or () with no response."""
    done = RecordInfo(
        task_id=TASK,
        status=TaskStatus.SUCCESS,
        response=VideoResult(task_id=TASK, result_urls=("u1", "u2"), origin_urls=("o",)),
    )
    assert done.result_urls == ("u1", "u2")
    assert RecordInfo(task_id=TASK, status=TaskStatus.GENERATING).result_urls == ()
