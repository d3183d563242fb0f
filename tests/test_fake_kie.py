"""Tests of the Kie.ai simulator itself, spoken to with a raw aiohttp client."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.http import SERVER_SOFTWARE
from multidict import CIMultiDictProxy

from veo_async import PollPolicy, VeoSession
from veo_async.testing import FakeKie, Fault, Quirks, RecordedRequest, TaskScript
from veo_async.testing._script import format_time, render_record

from ._virtual import run_virtual

#: Real HTTP on 127.0.0.1: this module pins the wire path.
pytestmark = pytest.mark.loopback

RECORD_INFO = "/api/v1/veo/record-info"
CREDIT = "/api/v1/chat/credit"
SDK_UA = "veo-async/0.1.0 aiohttp/3.14.5 python/3.11.7"
HEADERS = {"User-Agent": SDK_UA, "Authorization": "Bearer test-key"}
RECORD_KEYS = [
    "taskId",
    "paramJson",
    "completeTime",
    "response",
    "successFlag",
    "errorCode",
    "errorMessage",
    "createTime",
    "fallbackFlag",
]
TIME_RE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers=HEADERS) as session:
        yield session


async def fetch(
    http: aiohttp.ClientSession,
    kie: FakeKie,
    path: str = RECORD_INFO,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    skip_auto_headers: tuple[str, ...] = (),
    **params: str,
) -> tuple[int, CIMultiDictProxy[str], bytes]:
    async with http.request(
        method,
        kie.base_url + path,
        params=params,
        headers=headers,
        skip_auto_headers=skip_auto_headers,
    ) as resp:
        return resp.status, resp.headers, await resp.read()


async def record(http: aiohttp.ClientSession, kie: FakeKie, task_id: str) -> dict[str, Any]:
    status, _, body = await fetch(http, kie, taskId=task_id)
    assert status == 200
    payload = json.loads(body)
    assert payload["code"] == 200
    data: dict[str, Any] = payload["data"]
    return data


async def wait_until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    for _ in range(int(timeout / 0.005)):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not met in time")


async def envelope(
    http: aiohttp.ClientSession, kie: FakeKie, task_id: str
) -> tuple[int, dict[str, Any]]:
    status, _, body = await fetch(http, kie, taskId=task_id)
    return status, json.loads(body)


# -- records and time ------------------------------------------------------------------


async def test_record_generating_then_success(
    fake_kie: FakeKie, http: aiohttp.ClientSession
) -> None:
    """A task answers successFlag 0 with null response until complete_after, then 1."""
    fake_kie.add_task("veo_task_1", complete_after=0.3)
    data = await record(http, fake_kie, "veo_task_1")
    assert list(data) == RECORD_KEYS
    assert data["successFlag"] == 0
    assert data["completeTime"] is None
    assert data["response"] is None
    assert data["errorCode"] is None
    assert TIME_RE.fullmatch(data["createTime"])

    await asyncio.sleep(
        max(0.0, fake_kie.completed_at("veo_task_1") - asyncio.get_running_loop().time())
    )
    data = await record(http, fake_kie, "veo_task_1")
    assert list(data) == RECORD_KEYS
    assert data["successFlag"] == 1
    assert TIME_RE.fullmatch(data["completeTime"])
    assert data["errorCode"] is None
    assert data["errorMessage"] == ""
    assert data["fallbackFlag"] is False
    assert data["response"] == {
        "taskId": "veo_task_1",
        "resultUrls": ["https://tempfile.example/veo/veo_task_1/video.mp4"],
        "originUrls": None,
        "fullResultUrls": None,
        "resolution": "1080p",
    }


async def test_completed_at_is_add_time_plus_complete_after(fake_kie: FakeKie) -> None:
    """completed_at() is the loop time of add_task plus complete_after."""
    before = asyncio.get_running_loop().time()
    fake_kie.add_task("t", complete_after=5.0)
    after = asyncio.get_running_loop().time()
    assert before + 5.0 <= fake_kie.completed_at("t") <= after + 5.0
    with pytest.raises(KeyError):
        fake_kie.completed_at("never-added")


async def test_complete_time_is_create_time_plus_complete_after() -> None:
    """completeTime is rendered as createTime + complete_after, in UTC."""
    script = TaskScript("t", complete_after=90.0)
    data = render_record(script, created_at=0.0, done=True)
    assert data["createTime"] == "1970-01-01 08:00:00"  # UTC+8, as the service writes it
    assert data["completeTime"] == "1970-01-01 08:01:30"
    assert format_time(1.5, epoch_ms=True) == 1500


@pytest.mark.parametrize(
    ("final_status", "code", "message"),
    [(2, 400, "Content policy violation"), (3, 501, "Generation failed")],
)
async def test_failure_defaults(
    fake_kie: FakeKie, http: aiohttp.ClientSession, final_status: int, code: int, message: str
) -> None:
    """Statuses 2 and 3 default to errorCode 400 / 501 with a fitting message and no response."""
    fake_kie.add_task("t", final_status=final_status)
    data = await record(http, fake_kie, "t")
    assert data["successFlag"] == final_status
    assert data["errorCode"] == code
    assert data["errorMessage"].startswith(message)
    assert data["response"] is None
    assert data["completeTime"] is not None


async def test_failure_custom_error(fake_kie: FakeKie, http: aiohttp.ClientSession) -> None:
    """error_code and error_message of the script are rendered as given."""
    fake_kie.add_task("t", final_status=2, error_code=500, error_message="internal error")
    data = await record(http, fake_kie, "t")
    assert (data["errorCode"], data["errorMessage"]) == (500, "internal error")


async def test_params_render_into_param_json(
    fake_kie: FakeKie, http: aiohttp.ClientSession
) -> None:
    """paramJson is a JSON string of the script's params, or of realistic defaults."""
    fake_kie.add_task("default")
    fake_kie.add_task("custom", params={"prompt": "a cat", "aspectRatio": "9:16"})
    default = json.loads((await record(http, fake_kie, "default"))["paramJson"])
    assert {"prompt", "model", "aspectRatio"} <= set(default)
    custom = await record(http, fake_kie, "custom")
    assert json.loads(custom["paramJson"]) == {"prompt": "a cat", "aspectRatio": "9:16"}
    # The docs: originUrls only for non-16:9 ratios.
    assert custom["response"]["originUrls"] == ["https://tempfile.example/veo/custom/original.mp4"]


async def test_fallback_task(fake_kie: FakeKie, http: aiohttp.ClientSession) -> None:
    """A fallback task has fallbackFlag true and a 720p result."""
    fake_kie.add_task("t", fallback=True)
    data = await record(http, fake_kie, "t")
    assert data["fallbackFlag"] is True
    assert data["response"]["resolution"] == "720p"


async def test_result_urls_are_quoted_task_ids(
    fake_kie: FakeKie, http: aiohttp.ClientSession
) -> None:
    """Result URLs derive from the task id, URL-quoted."""
    fake_kie.add_task("a/b c")
    data = await record(http, fake_kie, "a/b c")
    assert data["response"]["resultUrls"] == ["https://tempfile.example/veo/a%2Fb%20c/video.mp4"]


async def test_visible_after(fake_kie: FakeKie, http: aiohttp.ClientSession) -> None:
    """Before visible_after the record answers like an unknown id, then appears."""
    fake_kie.add_task("t", visible_after=0.2)
    status, payload = await envelope(http, fake_kie, "t")
    assert (status, payload) == (200, {"code": 422, "msg": "record is null", "data": None})
    await asyncio.sleep(0.25)
    assert (await record(http, fake_kie, "t"))["taskId"] == "t"


async def test_unknown_task_record_null(fake_kie: FakeKie, http: aiohttp.ClientSession) -> None:
    """By default an unknown id answers HTTP 200 with body code 422 'record is null'."""
    status, payload = await envelope(http, fake_kie, "nope")
    assert (status, payload) == (200, {"code": 422, "msg": "record is null", "data": None})


async def test_unknown_task_data_null(http: aiohttp.ClientSession) -> None:
    """unknown_task='data_null' answers code 200 with data null."""
    async with FakeKie(unknown_task="data_null") as kie:
        status, payload = await envelope(http, kie, "nope")
    assert (status, payload) == (200, {"code": 200, "msg": "success", "data": None})


async def test_unknown_task_mode_is_checked() -> None:
    """An unknown_task value other than the two modes is refused."""
    with pytest.raises(ValueError, match="unknown_task"):
        FakeKie(unknown_task="nope")  # type: ignore[arg-type]


async def test_missing_task_id(fake_kie: FakeKie, http: aiohttp.ClientSession) -> None:
    """record-info without taskId (or with an empty one) is body code 400 on HTTP 200."""
    expected = {"code": 400, "msg": "taskId is required", "data": None}
    status, _, body = await fetch(http, fake_kie)
    assert (status, json.loads(body)) == (200, expected)
    status, _, body = await fetch(http, fake_kie, taskId="")
    assert (status, json.loads(body)) == (200, expected)


async def test_credit_endpoint(fake_kie: FakeKie, http: aiohttp.ClientSession) -> None:
    """GET /api/v1/chat/credit answers the (fractional) balance as data."""
    status, _, body = await fetch(http, fake_kie, CREDIT)
    assert (status, json.loads(body)) == (200, {"code": 200, "msg": "success", "data": 1234.5})
    fake_kie.credits = 0.25
    assert json.loads((await fetch(http, fake_kie, CREDIT))[2])["data"] == 0.25


async def test_unknown_path_is_json_404(fake_kie: FakeKie, http: aiohttp.ClientSession) -> None:
    """Any other path answers HTTP 404 with a code 404 envelope."""
    status, headers, body = await fetch(http, fake_kie, "/api/v1/veo/nope")
    assert status == 404
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body)["code"] == 404


async def test_wrong_method_is_405(fake_kie: FakeKie, http: aiohttp.ClientSession) -> None:
    """POST to record-info answers HTTP 405 with a code 405 envelope."""
    status, _, body = await fetch(http, fake_kie, method="POST", taskId="t")
    assert (status, json.loads(body)["code"]) == (405, 405)


async def test_readding_a_task_replaces_it(fake_kie: FakeKie, http: aiohttp.ClientSession) -> None:
    """add_task with a known id replaces the script and restarts its clock."""
    fake_kie.add_task("t", complete_after=0.0)
    assert (await record(http, fake_kie, "t"))["successFlag"] == 1
    fake_kie.add_task("t", complete_after=60.0)
    assert (await record(http, fake_kie, "t"))["successFlag"] == 0


async def test_add_task_forms(fake_kie: FakeKie) -> None:
    """add_task takes an id plus fields or a TaskScript (fields override); add_tasks takes many."""
    assert fake_kie.add_task("a", complete_after=2.0) == TaskScript("a", complete_after=2.0)
    script = TaskScript("b", final_status=3)
    assert fake_kie.add_task(script) is script
    assert fake_kie.add_task(script, final_status=2).final_status == 2
    scripts = fake_kie.add_tasks(["c", TaskScript("d", complete_after=1.0)])
    assert [s.task_id for s in scripts] == ["c", "d"]
    assert fake_kie.completed_at("d") - fake_kie.completed_at("c") == pytest.approx(1.0)


def test_script_validation() -> None:
    """Scripts and faults refuse impossible values."""
    with pytest.raises(ValueError, match="final_status"):
        TaskScript("t", final_status=0)
    with pytest.raises(ValueError, match="complete_after"):
        TaskScript("t", complete_after=-1)
    with pytest.raises(ValueError, match="task_id"):
        TaskScript("")
    with pytest.raises(ValueError, match="delay"):
        Fault.slow(-1)
    with pytest.raises(ValueError, match="kind"):
        Fault("nope")
    assert TaskScript("t", faults=[Fault.reset()]).faults == (Fault.reset(),)
    assert hash(TaskScript("t", params={"prompt": "x"}))  # a dict field must not break hashing


# -- quirks ----------------------------------------------------------------------------


async def quirky(
    kie: FakeKie,
    http: aiohttp.ClientSession,
    final_status: int = 1,
    done: bool = True,
    **quirks: bool,
) -> dict[str, Any]:
    kie.add_task(
        TaskScript(
            "q",
            final_status=final_status,
            complete_after=0.0 if done else 60.0,
            quirks=Quirks(**quirks),
        )
    )
    return await record(http, kie, "q")


async def test_quirk_success_flag_as_str(fake_kie: FakeKie, http: aiohttp.ClientSession) -> None:
    """success_flag_as_str renders successFlag as "1" / "0"."""
    assert (await quirky(fake_kie, http, success_flag_as_str=True))["successFlag"] == "1"
    assert (await quirky(fake_kie, http, done=False, success_flag_as_str=True))[
        "successFlag"
    ] == "0"


async def test_quirk_result_urls_as_json_string(
    fake_kie: FakeKie, http: aiohttp.ClientSession
) -> None:
    """result_urls_as_json_string renders response.resultUrls as a JSON-encoded string."""
    data = await quirky(fake_kie, http, result_urls_as_json_string=True)
    urls = data["response"]["resultUrls"]
    assert isinstance(urls, str)
    assert json.loads(urls) == ["https://tempfile.example/veo/q/video.mp4"]


async def test_quirk_result_urls_at_data(fake_kie: FakeKie, http: aiohttp.ClientSession) -> None:
    """result_urls_at_data moves resultUrls to data.resultUrls with a null response."""
    data = await quirky(fake_kie, http, result_urls_at_data=True)
    assert data["response"] is None
    assert data["resultUrls"] == ["https://tempfile.example/veo/q/video.mp4"]
    both = await quirky(fake_kie, http, result_urls_at_data=True, result_urls_as_json_string=True)
    assert json.loads(both["resultUrls"]) == ["https://tempfile.example/veo/q/video.mp4"]
    assert "resultUrls" not in await quirky(fake_kie, http, done=False, result_urls_at_data=True)


async def test_quirk_times_as_epoch_ms(fake_kie: FakeKie, http: aiohttp.ClientSession) -> None:
    """times_as_epoch_ms renders createTime/completeTime as integer epoch milliseconds."""
    data = await quirky(fake_kie, http, times_as_epoch_ms=True)
    assert isinstance(data["createTime"], int)
    assert isinstance(data["completeTime"], int)
    assert abs(data["createTime"] / 1000 - time.time()) < 60


async def test_quirk_error_code_as_str_null(fake_kie: FakeKie, http: aiohttp.ClientSession) -> None:
    """error_code_as_str_null renders a null errorCode as the string "null"."""
    assert (await quirky(fake_kie, http, error_code_as_str_null=True))["errorCode"] == "null"
    failed = await quirky(fake_kie, http, final_status=2, error_code_as_str_null=True)
    assert failed["errorCode"] == 400


async def test_quirk_error_code_as_str(fake_kie: FakeKie, http: aiohttp.ClientSession) -> None:
    """error_code_as_str renders a failure's errorCode as "400"."""
    assert (await quirky(fake_kie, http, final_status=2, error_code_as_str=True))[
        "errorCode"
    ] == "400"


async def test_quirk_omit_fallback_flag(fake_kie: FakeKie, http: aiohttp.ClientSession) -> None:
    """omit_fallback_flag leaves fallbackFlag out."""
    assert "fallbackFlag" not in await quirky(fake_kie, http, omit_fallback_flag=True)


async def test_quirk_omit_response(fake_kie: FakeKie, http: aiohttp.ClientSession) -> None:
    """omit_response leaves response out while it would be null, keeps it on success."""
    assert "response" not in await quirky(fake_kie, http, done=False, omit_response=True)
    assert "response" not in await quirky(fake_kie, http, final_status=2, omit_response=True)
    assert (await quirky(fake_kie, http, omit_response=True))["response"] is not None


async def test_quirk_extra_fields(fake_kie: FakeKie, http: aiohttp.ClientSession) -> None:
    """extra_fields adds unknown fields at data and response level."""
    data = await quirky(fake_kie, http, extra_fields=True)
    assert {"recordId", "creditsConsumed", "mediaIds"} <= set(data)
    assert "seeds" in data["response"]


async def test_quirk_invalid_param_json(fake_kie: FakeKie, http: aiohttp.ClientSession) -> None:
    """invalid_param_json renders a paramJson string that is not valid JSON."""
    data = await quirky(fake_kie, http, invalid_param_json=True)
    assert isinstance(data["paramJson"], str)
    with pytest.raises(json.JSONDecodeError):
        json.loads(data["paramJson"])


# -- auth and User-Agent ---------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong-key", "Basic dGVzdC1rZXk=", "test-key"]
)
async def test_auth_refused(
    fake_kie: FakeKie, http: aiohttp.ClientSession, authorization: str | None
) -> None:
    """A missing or wrong key gets HTTP 401 with the 401 envelope, and is still recorded."""
    fake_kie.add_task("t")
    async with aiohttp.ClientSession(headers={"User-Agent": SDK_UA}) as bare:
        headers = {} if authorization is None else {"Authorization": authorization}
        status, _, body = await fetch(bare, fake_kie, headers=headers, taskId="t")
    assert status == 401
    assert json.loads(body) == {
        "code": 401,
        "msg": "You do not have access permissions",
        "data": None,
    }
    assert fake_kie.polls("t") == 1
    assert fake_kie.requests[0].status == 401


async def test_auth_scheme_is_case_insensitive(
    fake_kie: FakeKie, http: aiohttp.ClientSession
) -> None:
    """'bearer <key>' is accepted like 'Bearer <key>'."""
    status, _, _ = await fetch(http, fake_kie, CREDIT, headers={"Authorization": "bearer test-key"})
    assert status == 200


async def test_auth_disabled(http: aiohttp.ClientSession) -> None:
    """api_key=None accepts requests without any key."""
    async with (
        FakeKie(api_key=None) as kie,
        aiohttp.ClientSession(headers={"User-Agent": SDK_UA}) as bare,
    ):
        status, _, _ = await fetch(bare, kie, CREDIT)
        assert kie.api_key is None
    assert status == 200


@pytest.mark.parametrize(
    "user_agent",
    [
        None,
        "",
        "python-requests/2.32.3",
        "curl/8.5.0",
        SERVER_SOFTWARE,
        "Python/3.12 aiohttp/3.9.5",
    ],
)
async def test_bot_user_agent_refused(
    fake_kie: FakeKie, http: aiohttp.ClientSession, user_agent: str | None
) -> None:
    """A missing or bot-like User-Agent gets Cloudflare's HTTP 403 text 'error code: 1010'."""
    if user_agent is None:
        async with aiohttp.ClientSession(headers={"Authorization": "Bearer test-key"}) as bare:
            status, headers, body = await fetch(
                bare, fake_kie, CREDIT, skip_auto_headers=("User-Agent",)
            )
        assert "User-Agent" not in fake_kie.requests[0].headers
    else:
        status, headers, body = await fetch(
            http, fake_kie, CREDIT, headers={"User-Agent": user_agent}
        )
    assert status == 403
    assert headers["Content-Type"].startswith("text/plain")
    assert body == b"error code: 1010"
    assert fake_kie.count_status(403) == 1


async def test_aiohttp_default_user_agent_refused(fake_kie: FakeKie) -> None:
    """A client that sets no User-Agent sends aiohttp's default, which is refused."""
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer test-key"}) as bare:
        status, _, _ = await fetch(bare, fake_kie, CREDIT)
    assert status == 403
    assert fake_kie.requests[0].headers["User-Agent"] == SERVER_SOFTWARE


async def test_user_agent_check_disabled(http: aiohttp.ClientSession) -> None:
    """require_user_agent=False lets any User-Agent through."""
    async with FakeKie(require_user_agent=False) as kie:
        status, _, _ = await fetch(http, kie, CREDIT, headers={"User-Agent": "curl/8.5.0"})
    assert status == 200


async def test_user_agent_checked_before_auth(
    fake_kie: FakeKie, http: aiohttp.ClientSession
) -> None:
    """A bot User-Agent with a wrong key gets the 403, not the 401."""
    status, _, _ = await fetch(
        http, fake_kie, CREDIT, headers={"User-Agent": "curl/8", "Authorization": "Bearer x"}
    )
    assert status == 403


async def test_injected_fault_comes_before_user_agent_and_auth(
    fake_kie: FakeKie, http: aiohttp.ClientSession
) -> None:
    """A session-wide fault answers even a request the UA and key checks would refuse."""
    fake_kie.inject(Fault.body_429())
    status, _, body = await fetch(
        http, fake_kie, headers={"User-Agent": "curl/8", "Authorization": "Bearer x"}, taskId="t"
    )
    assert (status, json.loads(body)["code"]) == (200, 429)


async def test_task_faults_come_after_auth(fake_kie: FakeKie, http: aiohttp.ClientSession) -> None:
    """A refused poll does not use up the task's scripted faults."""
    fake_kie.add_task("t", faults=(Fault.maintenance(),))
    status, _, _ = await fetch(http, fake_kie, headers={"Authorization": "Bearer x"}, taskId="t")
    assert status == 401
    assert (await envelope(http, fake_kie, "t"))[1]["code"] == 455
    assert (await envelope(http, fake_kie, "t"))[1]["code"] == 200


# -- faults ----------------------------------------------------------------------------


async def test_http_429_without_retry_after(fake_kie: FakeKie, http: aiohttp.ClientSession) -> None:
    """Fault.http_429() is HTTP 429 with envelope code 429 and no Retry-After."""
    fake_kie.add_task("t", faults=(Fault.http_429(),))
    status, headers, body = await fetch(http, fake_kie, taskId="t")
    assert status == 429
    assert json.loads(body)["code"] == 429
    assert "Retry-After" not in headers


@pytest.mark.parametrize(
    ("retry_after", "header"),
    [
        (1, "1"),
        (2.0, "2"),
        (0.5, "0.5"),
        ("Wed, 21 Oct 2015 07:28:00 GMT", "Wed, 21 Oct 2015 07:28:00 GMT"),
    ],
)
async def test_http_429_retry_after(
    fake_kie: FakeKie, http: aiohttp.ClientSession, retry_after: float | str, header: str
) -> None:
    """Retry-After is whole seconds as an integer, fractions kept, strings verbatim."""
    fake_kie.add_task("t", faults=(Fault.http_429(retry_after=retry_after),))
    status, headers, _ = await fetch(http, fake_kie, taskId="t")
    assert (status, headers["Retry-After"]) == (429, header)


@pytest.mark.parametrize(
    ("fault", "http_status", "payload"),
    [
        (Fault.body_429(), 200, {"code": 429, "msg": "Rate limited", "data": None}),
        (Fault.record_null(), 200, {"code": 422, "msg": "record is null", "data": None}),
        (Fault.data_null(), 200, {"code": 200, "msg": "success", "data": None}),
        (
            Fault.body_code(402, "Insufficient credits"),
            200,
            {"code": 402, "msg": "Insufficient credits", "data": None},
        ),
        (
            Fault.body_code(404, "Not found", http_status=404),
            404,
            {"code": 404, "msg": "Not found", "data": None},
        ),
    ],
)
async def test_envelope_faults(
    fake_kie: FakeKie,
    http: aiohttp.ClientSession,
    fault: Fault,
    http_status: int,
    payload: dict[str, Any],
) -> None:
    """Envelope faults answer their exact envelope with their HTTP status."""
    fake_kie.add_task("t", faults=(fault,))
    assert await envelope(http, fake_kie, "t") == (http_status, payload)


async def test_maintenance(fake_kie: FakeKie, http: aiohttp.ClientSession) -> None:
    """Fault.maintenance() is HTTP 200 with body code 455."""
    fake_kie.add_task("t", faults=(Fault.maintenance(),))
    status, payload = await envelope(http, fake_kie, "t")
    assert (status, payload["code"], payload["data"]) == (200, 455, None)


async def test_server_error(fake_kie: FakeKie, http: aiohttp.ClientSession) -> None:
    """Fault.server_error() is HTTP 500 with body code 500."""
    fake_kie.add_task("t", faults=(Fault.server_error(),))
    status, payload = await envelope(http, fake_kie, "t")
    assert (status, payload["code"]) == (500, 500)


async def test_bad_gateway_html(fake_kie: FakeKie, http: aiohttp.ClientSession) -> None:
    """Fault.bad_gateway_html() is HTTP 502 with a text/html proxy page."""
    fake_kie.add_task("t", faults=(Fault.bad_gateway_html(),))
    status, headers, body = await fetch(http, fake_kie, taskId="t")
    assert status == 502
    assert headers["Content-Type"].startswith("text/html")
    assert b"502: Bad gateway" in body
    assert fake_kie.count_status(502) == 1


async def test_truncated_json(fake_kie: FakeKie, http: aiohttp.ClientSession) -> None:
    """Fault.truncated_json() sends the normal envelope cut short, Content-Length matching."""
    fake_kie.add_task("t", faults=(Fault.truncated_json(),))
    status, headers, body = await fetch(http, fake_kie, taskId="t")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert int(headers["Content-Length"]) == len(body)
    with pytest.raises(json.JSONDecodeError):
        json.loads(body)
    _, _, full = await fetch(http, fake_kie, taskId="t")
    assert full.startswith(body)
    assert len(body) < len(full)


async def test_empty_body(fake_kie: FakeKie, http: aiohttp.ClientSession) -> None:
    """Fault.empty_body() is HTTP 200 with no body at all."""
    fake_kie.add_task("t", faults=(Fault.empty_body(),))
    status, headers, body = await fetch(http, fake_kie, taskId="t")
    assert (status, body, headers["Content-Length"]) == (200, b"", "0")


async def test_oversized(fake_kie: FakeKie, http: aiohttp.ClientSession) -> None:
    """Fault.oversized(size) is a valid record envelope larger than size bytes."""
    fake_kie.add_task("t", faults=(Fault.oversized(100_000),))
    status, _, body = await fetch(http, fake_kie, taskId="t")
    assert status == 200
    assert len(body) > 100_000
    payload = json.loads(body)
    assert (payload["code"], payload["data"]["taskId"]) == (200, "t")


async def test_oversized_default_is_over_2_mib(
    fake_kie: FakeKie, http: aiohttp.ClientSession
) -> None:
    """Fault.oversized() defaults to a body over 2 MiB, even for an unknown id."""
    fake_kie.inject(Fault.oversized())
    status, _, body = await fetch(http, fake_kie, taskId="unknown")
    assert status == 200
    assert len(body) > 2 * 1024 * 1024
    assert json.loads(body)["code"] == 422


async def test_reset_twice_reaches_the_client(
    fake_kie: FakeKie, http: aiohttp.ClientSession
) -> None:
    """Two resets in a row surface as an aiohttp.ClientError, recorded with status 0."""
    fake_kie.add_task("t", faults=(Fault.reset(), Fault.reset()))
    fake_kie.add_task("u")
    with pytest.raises(aiohttp.ClientError):
        await fetch(http, fake_kie, taskId="t")
    # Recent aiohttp clients retry a GET once after a dropped connection.
    polls = fake_kie.polls("t")
    assert polls in (1, 2)
    assert [(r.status, r.code, r.fault) for r in fake_kie.requests] == [(0, 0, "reset")] * polls
    assert fake_kie.count_status(0) == polls
    # The server is fine afterwards.
    assert (await record(http, fake_kie, "u"))["taskId"] == "u"


async def test_single_reset_drops_one_request(
    fake_kie: FakeKie, http: aiohttp.ClientSession
) -> None:
    """One reset drops exactly one request; a client retrying it gets the normal record."""
    fake_kie.add_task("t", faults=(Fault.reset(),))
    try:
        data = await record(http, fake_kie, "t")
    except aiohttp.ClientError:
        # Older aiohttp clients (3.9) do not retry by themselves.
        assert fake_kie.polls("t") == 1
        data = await record(http, fake_kie, "t")
    assert data["taskId"] == "t"
    assert fake_kie.polls("t") == 2
    assert fake_kie.count_status(0) == 1


async def test_created_then_drop_on_a_poll_drops_it(
    fake_kie: FakeKie, http: aiohttp.ClientSession
) -> None:
    """Fault.created_then_drop() given to a poll drops the connection, as a
    reset does (it raised a ValueError inside the simulator, mid-request)."""
    fake_kie.add_task("t", faults=(Fault.created_then_drop(),))
    try:
        data = await record(http, fake_kie, "t")
    except aiohttp.ClientError:
        data = await record(http, fake_kie, "t")  # (a client that does not retry by itself)
    assert data["taskId"] == "t"
    assert fake_kie.count_status(0) == 1
    assert fake_kie.requests[0].fault == "created_then_drop"


async def test_slow_then_normal(fake_kie: FakeKie, http: aiohttp.ClientSession) -> None:
    """Fault.slow(d) answers the normal record after d seconds."""
    fake_kie.add_task("t", faults=(Fault.slow(0.2),))
    loop = asyncio.get_running_loop()
    start = loop.time()
    data = await record(http, fake_kie, "t")
    assert loop.time() - start >= 0.19
    assert data["successFlag"] == 1
    assert fake_kie.requests[0].fault == "slow"


async def test_slow_renders_the_record_after_the_delay(
    fake_kie: FakeKie, http: aiohttp.ClientSession
) -> None:
    """A slow answer reflects the task state at answer time, not at arrival."""
    fake_kie.add_task("t", complete_after=0.1, faults=(Fault.slow(0.2),))
    assert (await record(http, fake_kie, "t"))["successFlag"] == 1


async def test_hang_ends_when_client_gives_up(
    fake_kie: FakeKie, http: aiohttp.ClientSession
) -> None:
    """A client timeout on a hanging request cancels the server handler: in_flight drops to 0."""
    fake_kie.add_task("t", faults=(Fault.slow(3600),))
    with pytest.raises(asyncio.TimeoutError):
        async with http.get(
            fake_kie.base_url + RECORD_INFO,
            params={"taskId": "t"},
            timeout=aiohttp.ClientTimeout(total=0.2),
        ):
            pass
    await wait_until(lambda: fake_kie.in_flight == 0)
    assert fake_kie.requests[0].status == 0
    assert fake_kie.requests[0].finished is not None


async def test_close_with_hanging_request(http: aiohttp.ClientSession) -> None:
    """close() is quick with a request hanging, drops it, and leaves no task behind."""
    kie = FakeKie()
    await kie.start()
    kie.inject(Fault.slow(3600))
    request = asyncio.ensure_future(fetch(http, kie, taskId="t"))
    await wait_until(lambda: kie.in_flight == 1)
    loop = asyncio.get_running_loop()
    start = loop.time()
    await kie.close()
    assert loop.time() - start < 5.0  # not the request's hour (5 s: a loaded machine)
    assert kie.in_flight == 0
    with pytest.raises(aiohttp.ClientError):
        await request
    assert asyncio.all_tasks() == {asyncio.current_task()}


# -- faults: order and scope -----------------------------------------------------------


async def test_task_faults_in_order_then_normal(
    fake_kie: FakeKie, http: aiohttp.ClientSession
) -> None:
    """A task's faults hit its first polls in order; later polls are normal."""
    fake_kie.add_task(
        "t", faults=(Fault.http_429(retry_after=1), Fault.server_error(), Fault.maintenance())
    )
    fake_kie.add_task("other")
    codes = [(await envelope(http, fake_kie, "t"))[1]["code"] for _ in range(4)]
    assert codes == [429, 500, 455, 200]
    assert (await envelope(http, fake_kie, "other"))[1]["code"] == 200
    assert fake_kie.polls("t") == 4


async def test_inject_hits_next_requests_of_any_task(
    fake_kie: FakeKie, http: aiohttp.ClientSession
) -> None:
    """inject(fault, count=n) answers the next n record-info requests, whatever their id."""
    fake_kie.add_task("a")
    fake_kie.add_task("b")
    fake_kie.inject(Fault.http_429(retry_after=0.5), count=3)
    statuses = [(await fetch(http, fake_kie, taskId=i))[0] for i in ("a", "b", "unknown", "a")]
    assert statuses == [429, 429, 429, 200]
    assert fake_kie.count_status(429) == 3


async def test_inject_queues_in_order(fake_kie: FakeKie, http: aiohttp.ClientSession) -> None:
    """Successive inject() calls queue up first in, first out."""
    fake_kie.add_task("t")
    fake_kie.inject(Fault.server_error(), count=2)
    fake_kie.inject(Fault.maintenance())
    codes = [(await envelope(http, fake_kie, "t"))[1]["code"] for _ in range(4)]
    assert codes == [500, 500, 455, 200]


async def test_inject_skips_other_endpoints(fake_kie: FakeKie, http: aiohttp.ClientSession) -> None:
    """Session-wide faults are for record-info only: the credit endpoint does not use them up."""
    fake_kie.inject(Fault.server_error())
    assert (await fetch(http, fake_kie, CREDIT))[0] == 200
    assert (await fetch(http, fake_kie, taskId="t"))[0] == 500


async def test_inject_does_not_use_up_task_faults(
    fake_kie: FakeKie, http: aiohttp.ClientSession
) -> None:
    """A poll answered by an injected fault leaves the task's own faults for later polls."""
    fake_kie.add_task("t", faults=(Fault.maintenance(),))
    fake_kie.inject(Fault.server_error())
    codes = [(await envelope(http, fake_kie, "t"))[1]["code"] for _ in range(3)]
    assert codes == [500, 455, 200]


async def test_injected_slow_then_task_fault(
    fake_kie: FakeKie, http: aiohttp.ClientSession
) -> None:
    """An injected slow fault delays, then the request goes on to the task's fault."""
    fake_kie.add_task("t", faults=(Fault.maintenance(),))
    fake_kie.inject(Fault.slow(0.05))
    assert (await envelope(http, fake_kie, "t"))[1]["code"] == 455


async def test_clear_injected(fake_kie: FakeKie, http: aiohttp.ClientSession) -> None:
    """clear_injected() drops the session-wide faults not yet given out."""
    fake_kie.inject(Fault.server_error(), count=5)
    assert (await fetch(http, fake_kie, taskId="t"))[0] == 500
    assert fake_kie.clear_injected() == 4
    assert (await fetch(http, fake_kie, taskId="t"))[0] == 200


def test_inject_refuses_negative_count() -> None:
    """inject() with a negative count is refused."""
    with pytest.raises(ValueError, match="count"):
        FakeKie().inject(Fault.reset(), count=-1)


# -- counters and recording ------------------------------------------------------------


async def test_requests_are_recorded(fake_kie: FakeKie, http: aiohttp.ClientSession) -> None:
    """Each request is recorded with method, path, query, headers, task id, time and answer."""
    fake_kie.add_task("t")
    before = asyncio.get_running_loop().time()
    await fetch(http, fake_kie, taskId="t")
    await fetch(http, fake_kie, CREDIT)
    first, second = fake_kie.requests
    assert isinstance(first, RecordedRequest)
    assert (first.method, first.path, first.query, first.task_id) == (
        "GET",
        RECORD_INFO,
        {"taskId": "t"},
        "t",
    )
    assert first.headers["Authorization"] == "Bearer test-key"
    assert (first.status, first.code, first.fault) == (200, 200, None)
    assert first.finished is not None
    assert before <= first.started <= first.finished
    assert (second.path, second.task_id, second.status) == (CREDIT, None, 200)
    assert "test-key" not in repr(first)


async def test_counters(fake_kie: FakeKie, http: aiohttp.ClientSession) -> None:
    """total_requests, polls and count_status count every answer, faulted ones included."""
    fake_kie.add_task("t", faults=(Fault.body_429(), Fault.http_429()))
    for _ in range(3):
        await fetch(http, fake_kie, taskId="t")
    await fetch(http, fake_kie, taskId="unknown")
    await fetch(http, fake_kie, CREDIT)
    assert fake_kie.total_requests == 5
    assert (fake_kie.polls("t"), fake_kie.polls("unknown"), fake_kie.polls("never")) == (3, 1, 0)
    assert fake_kie.count_status(429) == 2
    assert fake_kie.count_status(422) == 1
    assert fake_kie.count_status(200) == 2


async def test_in_flight_high_water_mark(fake_kie: FakeKie, http: aiohttp.ClientSession) -> None:
    """in_flight counts requests being answered; max_in_flight keeps the peak."""
    fake_kie.inject(Fault.slow(0.2), count=5)
    requests = [asyncio.ensure_future(fetch(http, fake_kie, taskId="t")) for _ in range(5)]
    await wait_until(lambda: fake_kie.in_flight == 5)
    await asyncio.gather(*requests)
    assert (fake_kie.in_flight, fake_kie.max_in_flight) == (0, 5)


async def test_reset_counters(fake_kie: FakeKie, http: aiohttp.ClientSession) -> None:
    """reset_counters() zeroes counters and requests but keeps tasks and their fault progress."""
    fake_kie.add_task("t", faults=(Fault.maintenance(), Fault.server_error()))
    await fetch(http, fake_kie, taskId="t")
    fake_kie.reset_counters()
    assert (fake_kie.total_requests, fake_kie.polls("t"), fake_kie.count_status(455)) == (0, 0, 0)
    assert (fake_kie.requests, fake_kie.max_in_flight) == ([], 0)
    assert (await envelope(http, fake_kie, "t"))[1]["code"] == 500
    assert fake_kie.total_requests == 1


async def test_record_requests_off_keeps_counters(http: aiohttp.ClientSession) -> None:
    """record_requests=False keeps no request list but still counts."""
    async with FakeKie(record_requests=False) as kie:
        kie.add_task("t")
        await fetch(http, kie, taskId="t")
        assert kie.requests == []
        assert (kie.total_requests, kie.polls("t"), kie.count_status(200)) == (1, 1, 1)


# -- lifecycle -------------------------------------------------------------------------


async def test_start_close_without_context_manager(http: aiohttp.ClientSession) -> None:
    """start()/close() work without async with; close() is idempotent; restart is refused."""
    kie = FakeKie()
    with pytest.raises(RuntimeError):
        _ = kie.base_url
    await kie.start()
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", kie.base_url)
    assert "test-key" not in repr(kie)
    assert (await fetch(http, kie, CREDIT))[0] == 200
    with pytest.raises(RuntimeError):
        await kie.start()
    await kie.close()
    await kie.close()
    with pytest.raises(RuntimeError):
        await kie.start()
    with pytest.raises(aiohttp.ClientError):
        await fetch(http, kie, CREDIT)


async def test_close_before_start() -> None:
    """close() on a never-started simulator is a no-op."""
    kie = FakeKie()
    await kie.close()
    await kie.close()


async def test_serve_forever_ends_on_close(http: aiohttp.ClientSession) -> None:
    """serve_forever() starts the server and returns once close() is called."""
    kie = FakeKie()
    server = asyncio.ensure_future(kie.serve_forever())
    await wait_until(lambda: repr(kie).startswith("<FakeKie http://"))
    assert kie.base_url.startswith("http://127.0.0.1:")
    assert (await fetch(http, kie, CREDIT))[0] == 200
    await kie.close()
    await asyncio.wait_for(server, 5.0)


async def test_serve_forever_cancelled_closes(http: aiohttp.ClientSession) -> None:
    """Cancelling serve_forever() closes the server."""
    kie = FakeKie()
    await kie.start()
    server = asyncio.ensure_future(kie.serve_forever())
    await asyncio.sleep(0.01)
    server.cancel()
    with pytest.raises(asyncio.CancelledError):
        await server
    with pytest.raises(aiohttp.ClientError):
        await fetch(http, kie, CREDIT)


async def test_fixed_port(http: aiohttp.ClientSession) -> None:
    """An explicit port is used as given."""
    async with FakeKie() as probe:
        port = int(probe.base_url.rsplit(":", 1)[1])
    async with FakeKie(port=port) as kie:
        assert kie.base_url == f"http://127.0.0.1:{port}"
        assert (await fetch(http, kie, CREDIT))[0] == 200


def test_a_transport_a_closed_session_closed_fails_at_once() -> None:
    """The VeoSession a transport is given to closes it on exit; a second
    session on it gets a clear programming error at its first request, not
    a retryable TransportError that polls on until the wait's deadline."""
    async def main() -> None:
        kie = FakeKie(api_key="sk-test-key-1234")
        kie.add_task("veo_task_a", complete_after=0.0)
        transport = kie.transport()
        async with VeoSession("sk-test-key-1234", transport=transport) as veo:
            assert (await veo.record_info("veo_task_a")).is_done
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with VeoSession(
            "sk-test-key-1234", transport=transport, policy=PollPolicy(timeout=300)
        ) as veo:
            with pytest.raises(RuntimeError, match="make one per session"):
                await veo.task("veo_task_a").wait()
        assert loop.time() - started < 1.0
        await kie.close()

    run_virtual(main)
