"""record_from_wire on every documented (and seen) variant of a Kie task record."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import attrs
import pytest

from veo_async._convert import record_from_wire, record_to_jsonable
from veo_async.errors import ResponseError
from veo_async.models import RecordInfo, TaskStatus, VideoResult

UTC = dt.timezone.utc
TASK = "veo_task_abcdef123456"
#: 2025-06-06 10:30:00 UTC as epoch seconds.
EPOCH_S = 1749205800
AT_1030 = dt.datetime(2025, 6, 6, 10, 30, tzinfo=UTC)

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
        create_time=dt.datetime(2025, 6, 6, 10, 25, tzinfo=UTC),
        complete_time=AT_1030,
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
    assert info.create_time.utcoffset() == dt.timedelta(0)


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
    ],
)
def test_success_flag_variants(flag: object, status: TaskStatus) -> None:
    """successFlag as an int or a (padded) numeric string gives the TaskStatus."""
    assert record_from_wire(rec(successFlag=flag)).status is status


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
    ("value", "expected"),
    [
        pytest.param("2025-06-06 10:30:00", AT_1030, id="documented-string-as-utc"),
        pytest.param(" 2025-06-06 10:30:00 ", AT_1030, id="padded-string"),
        pytest.param("2025-06-06T10:30:00", AT_1030, id="iso-t"),
        pytest.param(EPOCH_S * 1000, AT_1030, id="epoch-ms"),
        pytest.param(EPOCH_S, AT_1030, id="epoch-seconds"),
        pytest.param(float(EPOCH_S * 1000), AT_1030, id="epoch-ms-float"),
        pytest.param(str(EPOCH_S * 1000), AT_1030, id="epoch-ms-numeric-string"),
        pytest.param(str(EPOCH_S), AT_1030, id="epoch-s-numeric-string"),
        pytest.param(None, None, id="null"),
        pytest.param("", None, id="empty-string"),
        pytest.param("null", None, id="string-null"),
    ],
)
@pytest.mark.parametrize("wire_name", ["createTime", "completeTime"])
def test_time_variants(wire_name: str, value: object, expected: dt.datetime | None) -> None:
    """Times as UTC strings, epoch ms or s (numbers or strings) give aware UTC datetimes."""
    info = record_from_wire(rec(**{wire_name: value}))
    got = info.create_time if wire_name == "createTime" else info.complete_time
    assert got == expected
    if expected is not None:
        assert got is not None
        assert got.tzinfo is not None
        assert got.utcoffset() == dt.timedelta(0)


def test_time_with_explicit_offset_keeps_the_instant() -> None:
    """An ISO time with its own offset is honoured, not re-read as UTC."""
    got = record_from_wire(rec(createTime="2025-06-06T12:30:00+02:00")).create_time
    assert got == AT_1030
    assert got is not None
    assert got.utcoffset() == dt.timedelta(hours=2)


def test_string_and_epoch_times_agree() -> None:
    """The documented string form and the epoch-ms form of one instant decode equal."""
    a = record_from_wire(rec(createTime="2025-06-06 10:30:00"))
    b = record_from_wire(rec(createTime=EPOCH_S * 1000))
    assert a.create_time == b.create_time == AT_1030


# ---------------------------------------------------------------- errorCode


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(400, 400, id="int"),
        pytest.param("400", 400, id="numeric-string"),
        pytest.param(" 501 ", 501, id="padded-string"),
        pytest.param(500.0, 500, id="integral-float"),
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
    ],
)
def test_error_message_variants(value: object, expected: str) -> None:
    """errorMessage is kept as text, null reads as ""."""
    assert record_from_wire(rec(errorMessage=value)).error_message == expected


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


@pytest.mark.parametrize(
    ("data", "field"),
    [
        pytest.param(rec(successFlag=7), "successFlag", id="flag-7"),
        pytest.param(rec(successFlag=-1), "successFlag", id="flag-negative"),
        pytest.param(rec(successFlag="x"), "successFlag", id="flag-text"),
        pytest.param(rec(successFlag=True), "successFlag", id="flag-bool"),
        pytest.param(rec(successFlag=1.5), "successFlag", id="flag-float"),
        pytest.param(rec(successFlag=[1]), "successFlag", id="flag-list"),
        pytest.param({"taskId": TASK}, "successFlag", id="flag-missing"),
        pytest.param(rec(successFlag=None), "successFlag", id="flag-null"),
        pytest.param(rec(taskId={"a": 1}), "taskId", id="task-id-object"),
        pytest.param(rec(response="oops"), "response", id="response-string"),
        pytest.param(rec(response=[1, 2]), "response", id="response-list"),
        pytest.param(rec(response=5), "response", id="response-number"),
        pytest.param(rec(resultUrls=5), "response.resultUrls", id="top-level-urls-number"),
        pytest.param(
            rec(response={"resultUrls": [1, 2]}), "response.resultUrls", id="urls-numbers"
        ),
        pytest.param(
            rec(response={"resultUrls": "[1, 2]"}), "response.resultUrls", id="urls-json-numbers"
        ),
        pytest.param(
            rec(response={"resultUrls": "[oops"}), "response.resultUrls", id="urls-bad-json"
        ),
        pytest.param(
            rec(response={"resultUrls": {"a": "b"}}), "response.resultUrls", id="urls-object"
        ),
        pytest.param(
            rec(resultUrls=["http://a", 3]), "response.resultUrls", id="top-level-urls-numbers"
        ),
        pytest.param(
            rec(response={"originUrls": [None]}), "response.originUrls", id="origin-urls-null-item"
        ),
        pytest.param(
            rec(response={"fullResultUrls": 5}), "response.fullResultUrls", id="full-urls-number"
        ),
        pytest.param(rec(response={"taskId": [1]}), "response.taskId", id="response-task-id"),
        pytest.param(rec(createTime="yesterday"), "createTime", id="time-text"),
        pytest.param(rec(createTime="2025-13-45 99:99:99"), "createTime", id="time-invalid"),
        pytest.param(rec(createTime=True), "createTime", id="time-bool"),
        pytest.param(rec(createTime=[2025]), "createTime", id="time-list"),
        pytest.param(rec(createTime=10**30), "createTime", id="time-out-of-range"),
        pytest.param(rec(completeTime=float("nan")), "completeTime", id="time-nan"),
        pytest.param(rec(errorCode="abc"), "errorCode", id="error-code-text"),
        pytest.param(rec(errorCode=True), "errorCode", id="error-code-bool"),
        pytest.param(rec(errorCode=[400]), "errorCode", id="error-code-list"),
        pytest.param(rec(errorCode=1.5), "errorCode", id="error-code-fraction"),
        pytest.param(rec(errorMessage={"a": 1}), "errorMessage", id="error-message-object"),
        pytest.param(rec(fallbackFlag="maybe"), "fallbackFlag", id="fallback-text"),
    ],
)
def test_bad_record_names_the_wire_field(data: dict[str, Any], field: str) -> None:
    """A field that cannot be read raises ResponseError naming the camelCase wire field."""
    with pytest.raises(ResponseError) as info:
        record_from_wire(data, "asked")
    err = info.value
    assert type(err) is ResponseError
    assert err.field == field
    assert repr(field) in err.message
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
    """A record that is not a JSON object raises ResponseError with field "data"."""
    with pytest.raises(ResponseError) as info:
        record_from_wire(data, "asked")
    assert info.value.field == "data"
    assert info.value.task_id == "asked"


def test_no_task_id_anywhere() -> None:
    """A record without a task id, when none was asked for, names the taskId field."""
    with pytest.raises(ResponseError) as info:
        record_from_wire({"successFlag": 0})
    assert info.value.field == "taskId"


def test_bad_record_error_carries_requested_task_id() -> None:
    """The ResponseError for a bad record names the task that was asked for."""
    with pytest.raises(ResponseError) as info:
        record_from_wire(rec(successFlag=9), "asked")
    assert info.value.task_id == "asked"
    assert info.value.retryable is True


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
