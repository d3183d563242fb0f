"""The decoding fast paths agree with the full ones.

- ``_convert.usual_record`` (the documented record shape read directly) must
  give exactly what the full converter gives, or step aside (None);
- ``decode_record_info`` reads the usual answer from a parse without the
  long-integer scan (``_json.loads_unscanned``): its record must be the one
  an exact (stdlib) parse gives, long integers anywhere included;
- ``_json.loads`` (orjson first, the stdlib for what orjson refuses) must
  mean what :func:`json.loads` means, and the stdlib-only path must work;
- ``validate_task_id``'s one-pass check must accept only what the full
  checks accept.
"""

from __future__ import annotations

import copy
import importlib
import json
import pickle
import sys
from collections.abc import Iterator
from typing import Any

import attrs
import hypothesis
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from veo_async import _convert, _json
from veo_async._convert import KIE_TIMEZONE, record_from_wire
from veo_async._protocol import RawResponse, decode_record_info
from veo_async.errors import RecordNotFoundError, ResponseError, VeoError
from veo_async.models import MAX_TASK_ID_LENGTH, RecordInfo, TaskStatus, validate_task_id

TASK_ID = "veo_task_abcdef0123456789"

_NULLISH = st.sampled_from([None, "", "null", "NULL", "Null", "None", "none", " null "])
_TEXT = st.text(max_size=12)
# Integers beyond 64 bits (orjson reads them as floats) and just inside.
_LONG = st.one_of(
    st.integers(2**63 - 2, 2**64 + 2),
    st.integers(-(2**63) - 2, -(2**63) + 2),
    st.integers(10**19, 10**30),
    st.integers(-(10**30), -(10**19)),
)
_SCALAR = st.one_of(
    _NULLISH, _TEXT, st.integers(-5, 5), st.floats(allow_nan=True), st.booleans(), _LONG
)
_TIMES = st.one_of(
    st.sampled_from(
        [
            "2026-01-06 08:17:04",
            "2026-13-06 08:17:04",  # 19 characters, not a date
            "2026-01-06T08:17:04Z",
            "2026-01-06T08:17:04+02:00",
            "2026/01/06 08:17:04",
            "1767687424",
            " 2026-01-06 08:17:04 ",
        ]
    ),
    st.integers(0, 2_000_000_000_000),
    st.floats(0, 4e9),
    _SCALAR,
)
_URL = st.sampled_from(["https://x.example/a.mp4", " https://x.example/b.mp4", "null", "", "N"])
_URLS = st.one_of(
    st.lists(_URL, max_size=3),
    st.lists(st.one_of(_URL, st.integers(), st.none()), max_size=3),
    st.sampled_from(['["https://x.example/c.mp4"]', "https://x.example/d.mp4", "[1,"]),
    _SCALAR,
)
_PARAMS = st.one_of(
    st.sampled_from(['{"model": "veo3_fast", "prompt": "a"}', "[1]", "{", '"x"', "{}"]),
    st.dictionaries(_TEXT, _SCALAR, max_size=2),
    st.dictionaries(_TEXT, _SCALAR, max_size=2).map(json.dumps),
    _SCALAR,
)


# The strategies are built once, here: built inside the composites, each example
# would validate and label them anew (most of this module's CPU, for the same draws).
_RESPONSE_KEYS = {
    "taskId": st.one_of(st.just(TASK_ID), _SCALAR),
    "resultUrls": _URLS,
    "originUrls": _URLS,
    "fullResultUrls": _URLS,
    "resolution": st.one_of(st.sampled_from(["1080p", "720p"]), _SCALAR),
}
_RESPONSE_SHAPES = st.sampled_from(["object", "object", "object", "other"])
_OTHER_RESPONSES = st.one_of(_SCALAR, st.lists(_SCALAR, max_size=2))


@st.composite
def responses(draw: st.DrawFn) -> Any:
    """A ``response`` value: usually an object of the documented shape, sometimes not."""
    shape = draw(_RESPONSE_SHAPES)
    if shape == "other":
        return draw(_OTHER_RESPONSES)
    return {key: draw(value) for key, value in _RESPONSE_KEYS.items() if draw(st.booleans())}


_RECORD_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "taskId": st.one_of(st.just(TASK_ID), st.just("veo_task_other"), _SCALAR),
    "successFlag": st.one_of(st.integers(-1, 4), _SCALAR, st.sampled_from(["1", 1.0, "0"])),
    "paramJson": _PARAMS,
    "createTime": _TIMES,
    "completeTime": _TIMES,
    "response": st.one_of(st.none(), responses()),
    "resultUrls": st.one_of(st.none(), _URLS),
    "errorCode": st.one_of(st.none(), st.sampled_from([422, "500", "null", "x", 1.0, 1.5])),
    "errorMessage": st.one_of(st.sampled_from(["", "boom", "null"]), _SCALAR),
    "fallbackFlag": st.one_of(st.booleans(), _SCALAR, st.sampled_from(["true", "0", 2])),
}
_PRESENCE = st.sampled_from(["usual", "usual", "absent", "null"])


@st.composite
def records(draw: st.DrawFn) -> dict[str, Any]:
    """A record's ``data``: the documented shape, each field often replaced by a quirk."""
    data: dict[str, Any] = {}
    for key, value in _RECORD_FIELDS.items():
        presence = draw(_PRESENCE)
        if presence == "absent" and key not in ("taskId", "successFlag"):
            continue
        data[key] = None if presence == "null" else draw(value)
    return data


def _full(data: dict[str, Any]) -> RecordInfo | ResponseError:
    try:
        return _convert._record_full(data, TASK_ID, KIE_TIMEZONE)
    except ResponseError as exc:
        return exc


def _same(fast: RecordInfo, full: RecordInfo) -> bool:
    # repr too: equal datetimes in different zones compare equal, and a zone matters.
    return fast == full and repr(fast) == repr(full)


@settings(max_examples=700, suppress_health_check=[HealthCheck.too_slow])
@given(records())
def test_fast_record_is_the_full_converters_record(data: dict[str, Any]) -> None:
    """The fast path gives the full converter's record, or None where that one fails
    (its paramJson, parsed on first read, included: == and repr read it)."""
    fast = _convert.usual_record(data)
    full = _full(data)
    if fast is not None:
        assert isinstance(full, RecordInfo)
        assert _same(fast, full)
    public = record_from_wire(data, TASK_ID) if isinstance(full, RecordInfo) else None
    if public is not None:
        assert isinstance(full, RecordInfo)
        assert _same(public, full)


def _exact_decode(body: bytes) -> RecordInfo | Exception:
    """What decode_record_info must give: the stdlib's parse, the full converter."""
    data = json.loads(body)["data"]
    if data is None:
        return RecordNotFoundError("not visible", code=200, http_status=200, task_id=TASK_ID)
    full = _full(data)
    if isinstance(full, RecordInfo) and full.task_id != TASK_ID:
        return ResponseError("another task", field="taskId", retryable=True)
    return full


_RESPONSE_FIELD = st.sampled_from(sorted(_RESPONSE_KEYS))


@st.composite
def usual_but_one(draw: st.DrawFn) -> dict[str, Any]:
    """The documented record with one field (or one of its response's) replaced."""
    data = _documented()
    if draw(st.booleans()):
        key = draw(st.sampled_from(sorted(_RECORD_FIELDS)))
        data[key] = draw(st.one_of(_LONG, _RECORD_FIELDS[key]))
    else:
        key = draw(_RESPONSE_FIELD)
        data["response"][key] = draw(st.one_of(_LONG, _RESPONSE_KEYS[key]))
    return data


@settings(max_examples=700, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(usual_but_one(), records(), st.none()), st.booleans())
def test_an_answer_decodes_as_an_exact_parse_would(data: Any, previous: bool) -> None:
    """decode_record_info, on its unscanned parse, gives what the stdlib parse and the
    full converter give (long integers anywhere included), or the same error."""
    body = json.dumps({"code": 200, "msg": "success", "data": data}).encode()
    generating = RecordInfo(TASK_ID, TaskStatus.GENERATING) if previous else None
    expected = _exact_decode(body)
    try:
        got: RecordInfo | Exception = decode_record_info(
            RawResponse(200, {}, body), TASK_ID, generating
        )
    except VeoError as exc:
        got = exc
    if isinstance(expected, RecordInfo):
        assert isinstance(got, RecordInfo)
        # An unchanged GENERATING answer gives the previous record back as is.
        assert got is generating or _same(got, expected)
    else:
        assert type(got) is type(expected)
        assert getattr(got, "field", None) == getattr(expected, "field", None)


def _documented(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "taskId": TASK_ID,
        "paramJson": '{"model": "veo3_fast", "prompt": "a fox"}',
        "completeTime": "2026-01-06 08:17:04",
        "response": {
            "taskId": TASK_ID,
            "resultUrls": ["https://x.example/a.mp4"],
            "originUrls": None,
            "fullResultUrls": None,
            "resolution": "1080p",
        },
        "successFlag": 1,
        "errorCode": None,
        "errorMessage": "",
        "createTime": "2026-01-06 08:15:04",
        "fallbackFlag": False,
    }
    data.update(changes)
    return data


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(_documented(), id="success"),
        pytest.param(_documented(successFlag=0, response=None, completeTime=None), id="generating"),
        pytest.param(
            _documented(successFlag=2, response=None, errorCode=400, errorMessage="policy"),
            id="failed",
        ),
    ],
)
def test_documented_shapes_take_the_fast_path(data: dict[str, Any]) -> None:
    """The shapes the service really sends are read by the fast path (not stepped aside)."""
    fast = _convert.usual_record(data)
    full = _full(data)
    assert fast is not None
    assert isinstance(full, RecordInfo)
    assert _same(fast, full)


def test_params_parsed_on_first_read_look_parsed_everywhere() -> None:
    """A record whose paramJson waits for its first read copies, pickles, compares,
    converts and hashes as one decoded with it parsed at once."""
    body = json.dumps({"code": 200, "msg": "success", "data": _documented()}).encode()
    expected = _full(_documented())
    assert isinstance(expected, RecordInfo)

    def fresh() -> RecordInfo:
        return decode_record_info(RawResponse(200, {}, body), TASK_ID)

    assert fresh().params == {"model": "veo3_fast", "prompt": "a fox"}
    assert attrs.evolve(fresh()) == expected
    assert pickle.loads(pickle.dumps(fresh())) == expected
    assert copy.deepcopy(fresh()) == expected
    assert attrs.asdict(fresh()) == attrs.asdict(expected)
    assert fresh().to_jsonable() == expected.to_jsonable()
    assert hash(fresh()) == hash(expected)
    record = fresh()
    assert record.params is record.params  # parsed once, then kept
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        record.params = {}  # type: ignore[misc]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(_documented(taskId="null"), id="null-id"),
        pytest.param(_documented(successFlag="1"), id="string-flag"),
        pytest.param(_documented(successFlag=True), id="bool-flag"),
        pytest.param(_documented(response="null"), id="response-text"),
        pytest.param(
            _documented(response=None, resultUrls=["https://x.example/a.mp4"]),
            id="urls-under-data",
        ),
        pytest.param(_documented(createTime="yesterday"), id="unreadable-time"),
    ],
)
def test_unusual_shapes_step_aside(data: dict[str, Any]) -> None:
    """Anything but the documented shape is left to the full converter."""
    assert _convert.usual_record(data) is None


# -- JSON: orjson first, the stdlib for the rest ------------------------------------------

_JSON_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=8),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=12,
)
_ODD_TEXTS = st.one_of(
    st.sampled_from(
        [
            "NaN",
            "[Infinity, -Infinity]",
            "1e400",
            "18446744073709551615",
            "18446744073709551616",
            "[-9223372036854775809]",
            '{"errorCode": 123456789012345678901234567890}',
            "0.30000000000000004441",
            '"\\ud800"',
            '{"a": 1, "a": 2}',
            "\ufeff{}",
            "[" * 2000 + "]" * 2000,
            "  [1, 2]  ",
            "{'a': 1}",
            "",
            "01",
        ]
    ),
    st.text(max_size=20),
)


def _outcome(parse: Any, text: str | bytes) -> tuple[str, Any]:
    try:
        return "ok", parse(text)
    except (ValueError, RecursionError):  # what decode_envelope reads as "not JSON"
        return "error", None


@settings(max_examples=500)
@given(st.one_of(_JSON_VALUES.map(json.dumps), _ODD_TEXTS))
def test_loads_means_what_json_loads_means(text: str) -> None:
    """Text or UTF-8 bytes: the same value as json.loads, or an error where it errs."""
    for given_text in (text, text.encode("utf-8", "surrogatepass")):
        ours, stdlib = _outcome(_json.loads, given_text), _outcome(json.loads, given_text)
        assert ours[0] == stdlib[0]
        if ours[0] == "ok":
            assert repr(ours[1]) == repr(stdlib[1])  # repr: -0.0 vs 0.0, 1 vs 1.0, True vs 1


def test_the_fast_extra_is_used_when_installed() -> None:
    """With orjson installed (the dev environment), answers are parsed by it."""
    pytest.importorskip("orjson")
    assert _json.FAST_JSON
    assert _json.loads is not json.loads


@pytest.fixture
def stdlib_json(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """_json as it is without the fast extra (orjson hidden), restored afterwards."""
    monkeypatch.setitem(sys.modules, "orjson", None)  # import orjson now fails
    importlib.reload(_json)
    try:
        yield
    finally:
        monkeypatch.undo()
        importlib.reload(_json)


@pytest.mark.usefixtures("stdlib_json")
def test_without_orjson_the_stdlib_parses() -> None:
    """Without the fast extra, answers are parsed by json.loads and decode the same."""
    assert not _json.FAST_JSON
    assert _json.loads is json.loads
    body = json.dumps({"code": 200, "msg": "success", "data": _documented()}).encode()
    record = decode_record_info(RawResponse(200, {}, body), TASK_ID)
    assert record == _full(_documented())
    assert record.params == {"model": "veo3_fast", "prompt": "a fox"}


# -- task ids -----------------------------------------------------------------------------


def _valid_by_the_full_checks(task_id: str) -> bool:
    return (
        0 < len(task_id) <= MAX_TASK_ID_LENGTH
        and not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in task_id)
        and task_id == task_id.strip()
        and not any(c.isspace() for c in task_id)
        and task_id.isprintable()
        and task_id.lower() not in ("null", "none")  # the service's texts for absent
    )


@settings(max_examples=500)
@given(
    st.one_of(
        st.text(max_size=40),
        st.text(st.characters(max_codepoint=0x7F), max_size=40),
        st.text(min_size=250, max_size=260, alphabet="ab"),
    )
)
@example("NONE")
@example("null")
def test_task_id_check_accepts_exactly_the_valid_ids(task_id: str) -> None:
    """The one-pass check of common ids accepts what the full checks accept, no more."""
    try:
        accepted = validate_task_id(task_id) == task_id
    except ValueError:
        accepted = False
    assert accepted == _valid_by_the_full_checks(task_id)


def _params_of(document: bytes) -> Any:
    """The params decode_record_info reads from a body (a record of TASK_ID)."""
    return decode_record_info(RawResponse(200, {}, document), TASK_ID).params


def _quoted(text: str, *, escape_digits: bool, ascii_only: bool) -> str:
    """``text`` as a JSON string; with ``escape_digits``, each digit as a \\u003X escape."""
    return (
        '"'
        + "".join(
            f"\\u{ord(c):04x}"
            if escape_digits and "0" <= c <= "9"
            else json.dumps(c, ensure_ascii=ascii_only)[1:-1]
            for c in text
        )
        + '"'
    )


@settings(max_examples=300)
@given(
    st.dictionaries(
        st.text(max_size=4),
        st.one_of(st.integers(), st.integers(min_value=10**18, max_value=10**30), st.text()),
        max_size=4,
    ),
    st.booleans(),
    st.booleans(),
)
def test_params_keep_their_long_integers(
    params: dict[str, Any], escape: bool, ascii_only: bool
) -> None:
    """A record's paramJson reads as json.loads reads it, long integers included,
    even when its digits are \\u escapes in the body."""
    inner = json.dumps(params, ensure_ascii=ascii_only)
    quoted = _quoted(inner, escape_digits=escape, ascii_only=ascii_only)
    record = f'{{"taskId": "{TASK_ID}", "successFlag": 1, "paramJson": {quoted}}}'
    document = ('{"code": 200, "data": ' + record + "}").encode()
    assert repr(_params_of(document)) == repr(json.loads(inner))


def test_a_body_orjson_refuses_is_read_exactly() -> None:
    """A UTF-16 body (which orjson refuses) is read by the stdlib, long integers intact."""
    inner = json.dumps({"seeds": 10**25})
    record = {"taskId": TASK_ID, "successFlag": 1, "paramJson": inner, "errorCode": 10**20 + 1}
    document = json.dumps({"code": 200, "data": record}).encode("utf-16")
    decoded = decode_record_info(RawResponse(200, {}, document), TASK_ID)
    assert decoded.params == {"seeds": 10**25}
    assert decoded.error_code == 10**20 + 1


def test_property_tests_run_without_a_deadline() -> None:
    """Hypothesis's default 200 ms per example is a timed assertion: the
    suite's profile (conftest) turns it off, so a loaded machine cannot fail
    a property (one example above once took 392 ms, then 0.13 ms replayed)."""
    assert hypothesis.settings().deadline is None  # (a fresh settings takes the profile)
