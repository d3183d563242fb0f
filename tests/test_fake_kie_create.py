"""The simulator's creating side, on the wire: generate, extend, 1080p, 4K,
download links, credits, the creation limit and the created-then-drop fault."""

from __future__ import annotations

import asyncio
import json
import statistics
from typing import Any

import pytest

from veo_async import TaskFailedError, TaskStatus, VeoSession, WaitTimeoutError
from veo_async._version import version
from veo_async.testing import FakeKie, Fault, TaskScript
from veo_async.testing._callbacks import task_payload
from veo_async.testing._creation import COSTS, UHD_COST, CreationDesk
from veo_async.testing._script import render_record
from veo_async.testing._server import DROP

from ._virtual import run_virtual

HEADERS = {
    "User-Agent": f"veo-async/{version()} aiohttp/3 python/3",
    "Authorization": "Bearer test-key",
}


async def call(
    kie: FakeKie, method: str, path: str, body: Any = None, **query: str
) -> tuple[int, dict[str, Any] | None]:
    """One request straight into the simulator: (HTTP status, envelope or None if dropped)."""
    raw = b"" if body is None else json.dumps(body).encode()
    answer = await kie.serve(method, path, query, HEADERS, raw)
    if answer is DROP:
        return 0, None
    return answer.status, json.loads(answer.body)


async def generate(kie: FakeKie, **body: Any) -> tuple[int, dict[str, Any] | None]:
    """POST generate with a default prompt."""
    body.setdefault("prompt", "a cat")
    return await call(kie, "POST", "/api/v1/veo/generate", body)


async def record(kie: FakeKie, task_id: str) -> dict[str, Any]:
    """The record-info envelope of ``task_id``."""
    _, envelope = await call(kie, "GET", "/api/v1/veo/record-info", taskId=task_id)
    assert envelope is not None
    return envelope


def test_generate_creates_a_task_whose_record_holds_the_request() -> None:
    """A generate answers a veo_task id; its record has paramJson = the body,
    createTime as a time string, and turns SUCCESS after its drawn duration."""

    async def main() -> None:
        kie = FakeKie(seed=7)
        status, envelope = await generate(kie, model="veo3", aspect_ratio="9:16")
        assert status == 200
        assert envelope is not None
        task_id = envelope["data"]["taskId"]
        assert task_id.startswith("veo_task_")
        data = (await record(kie, task_id))["data"]
        assert json.loads(data["paramJson"]) == {
            "prompt": "a cat", "model": "veo3", "aspect_ratio": "9:16"
        }
        assert data["successFlag"] == 0
        assert len(data["createTime"]) == len("2025-06-06 10:25:00")
        await asyncio.sleep(kie.completed_at(task_id) - asyncio.get_running_loop().time())
        done = (await record(kie, task_id))["data"]
        assert done["successFlag"] == 1
        assert done["completeTime"] is not None
        assert kie.created == 1
        assert kie.created_ids == [task_id]

    run_virtual(main)


def test_the_tasks_the_next_creates_make_can_be_scripted() -> None:
    """The code under test creates its tasks: a test still decides their
    fate (a failure to retry after, a render that outlasts a wait), in
    order, through a real session; bad fields are refused at once."""

    async def main() -> None:
        kie = FakeKie(api_key="test-key", seed=7)
        kie.script_creates(
            {"final_status": 2, "error_code": 400, "error_message": "flagged", "complete_after": 5},
            {},
        )
        kie.script_creates({"complete_after": 3600})
        async with VeoSession("test-key", transport=kie.transport()) as veo:
            failed, drawn, long = [await veo.generate(f"cat {n}") for n in range(3)]
            with pytest.raises(TaskFailedError) as caught:
                await failed.wait(timeout=900)
            assert (caught.value.error_code, caught.value.error_message) == (400, "flagged")
            assert (await drawn.wait(timeout=900)).status is TaskStatus.SUCCESS
            with pytest.raises(WaitTimeoutError):
                await long.wait(timeout=900)
            again = await veo.generate("cat 4")  # as drawn again: a success (failure_rate 0)
            assert (await again.wait(timeout=900)).status is TaskStatus.SUCCESS
        assert kie.completed_at(long.task_id) - kie.completed_at(failed.task_id) > 3000
        assert failed.record is not None
        assert failed.record.params["prompt"] == "cat 0"  # the request stays the simulator's

    run_virtual(main)
    kie = FakeKie()
    with pytest.raises(TypeError):
        kie.script_creates({"final_satus": 2})
    with pytest.raises(ValueError, match="task_id: the simulator's"):
        kie.script_creates({"task_id": "mine"})
    with pytest.raises(TypeError, match="mapping of TaskScript fields"):
        kie.script_creates(TaskScript("t1"))  # type: ignore[arg-type]


def test_generation_times_are_drawn_per_model_not_constant() -> None:
    """Durations come from a per-model distribution: they vary, and the medians
    order lite < fast < veo3; a seed makes them reproducible."""
    desk = CreationDesk(credits=0, seed=3)
    models = ("veo3_lite", "veo3_fast", "veo3")
    samples = {m: [desk.duration(m) for _ in range(400)] for m in models}
    medians = {m: statistics.median(v) for m, v in samples.items()}
    assert medians["veo3_lite"] < medians["veo3_fast"] < medians["veo3"]
    assert all(statistics.pstdev(v) > 0.1 * medians[m] for m, v in samples.items())
    again = CreationDesk(credits=0, seed=3)
    assert [again.duration("veo3_lite") for _ in range(3)] == samples["veo3_lite"][:3]
    fast = CreationDesk(credits=0, seed=3, time_scale=0.01)
    assert fast.duration("veo3_lite") == pytest.approx(samples["veo3_lite"][0] * 0.01)


def test_credits_are_charged_per_model_and_402_when_short() -> None:
    """Each model costs its price; a create the balance cannot pay is a 402 and creates nothing."""

    async def main() -> None:
        kie = FakeKie(credits=COSTS["veo3_fast"] + COSTS["veo3_lite"] + 10.5)
        await generate(kie, model="veo3_fast")
        await generate(kie, model="veo3_lite")
        assert kie.credits == pytest.approx(10.5)
        assert kie.charged == COSTS["veo3_fast"] + COSTS["veo3_lite"]
        status, envelope = await generate(kie, model="veo3")
        assert (status, envelope["code"] if envelope else None) == (200, 402)
        assert kie.created == 2
        _, balance = await call(kie, "GET", "/api/v1/chat/credit")
        assert balance is not None
        assert balance["data"] == pytest.approx(10.5)

    run_virtual(main)


def test_the_creation_limit_answers_429_and_counts_only_accepted_creates() -> None:
    """The 21st create within 10 s gets body code 429 over HTTP 200 and creates
    nothing; once the window slides, creates are accepted again."""

    async def main() -> None:
        kie = FakeKie(credits=1e9)
        for _ in range(20):
            status, envelope = await generate(kie)
            assert envelope is not None
            assert envelope["code"] == 200
        status, envelope = await generate(kie)
        assert status == 200
        assert envelope is not None
        assert envelope["code"] == 429
        assert kie.created == 20
        assert kie.count_status(429) == 1
        await asyncio.sleep(10.0)
        _, envelope = await generate(kie)
        assert envelope is not None
        assert envelope["code"] == 200

    run_virtual(main)


def test_the_limit_can_answer_with_http_429() -> None:
    """rate_limit_http_status=429 sends the 429 as the HTTP status too."""

    async def main() -> None:
        kie = FakeKie(create_limit=1, rate_limit_http_status=429)
        await generate(kie)
        status, _ = await generate(kie)
        assert status == 429

    run_virtual(main)


def test_the_429_message_states_the_limit_the_simulator_was_given() -> None:
    """Its text names the limit it enforces (it always said Kie's "20 per
    10 seconds"), and the default says Kie's."""

    async def main() -> None:
        kie = FakeKie(create_limit=2, create_period=2.5)
        for _ in range(2):
            await generate(kie)
        _, envelope = await generate(kie)
        assert envelope is not None
        assert envelope["msg"] == "Rate limited: at most 2 new generation requests per 2.5 seconds"
        default = FakeKie(credits=1e9)
        for _ in range(21):
            _, envelope = await generate(default)
        assert envelope is not None
        assert envelope["msg"].endswith("at most 20 new generation requests per 10 seconds")

    run_virtual(main)


def test_created_then_drop_creates_and_charges_then_drops() -> None:
    """The fault creates (and charges) the task, then answers nothing at all."""

    async def main() -> None:
        kie = FakeKie()
        kie.inject_create(Fault.created_then_drop())
        status, envelope = await generate(kie)
        assert (status, envelope) == (0, None)
        assert kie.created == 1
        assert kie.charged == COSTS["veo3_fast"]
        assert kie.count_status(0) == 1

    run_virtual(main)


def test_other_create_faults_answer_instead_of_creating() -> None:
    """A 500 or 455 injected for a create is answered in its place: nothing created."""

    async def main() -> None:
        kie = FakeKie()
        kie.inject_create(Fault.server_error())
        kie.inject_create(Fault.maintenance())
        assert (await generate(kie))[0] == 500
        assert (await generate(kie))[1]["code"] == 455  # type: ignore[index]
        assert kie.created == 0
        assert (await generate(kie))[1]["code"] == 200  # type: ignore[index]

    run_virtual(main)


def test_extend_only_a_finished_successful_task() -> None:
    """Extending an unknown or unfinished task is a 422; a finished one creates a new task."""

    async def main() -> None:
        kie = FakeKie(seed=1)
        _, envelope = await generate(kie)
        assert envelope is not None
        parent = envelope["data"]["taskId"]
        body = {"taskId": parent, "prompt": "then it jumps", "model": "quality"}
        assert (await call(kie, "POST", "/api/v1/veo/extend", body))[1]["code"] == 422  # type: ignore[index]
        missing = {"taskId": "veo_task_nope", "prompt": "x"}
        assert (await call(kie, "POST", "/api/v1/veo/extend", missing))[1]["code"] == 422  # type: ignore[index]
        await asyncio.sleep(kie.completed_at(parent) - asyncio.get_running_loop().time())
        charged = kie.charged
        _, envelope = await call(kie, "POST", "/api/v1/veo/extend", body)
        assert envelope is not None
        assert envelope["code"] == 200
        assert envelope["data"]["taskId"] != parent
        assert kie.charged - charged == COSTS["veo3"]  # "quality" prices as veo3

    run_virtual(main)


def test_1080p_is_processing_then_ready_and_refused_for_fallback() -> None:
    """get-1080p-video answers 400 "processing" until hd_delay after the end,
    then the URL; a fallback-model task is refused."""

    async def main() -> None:
        kie = FakeKie(hd_delay=60.0)
        kie.add_task("veo_task_a", complete_after=100.0)
        kie.add_task("veo_task_fb", complete_after=0.0, fallback=True)
        path = "/api/v1/veo/get-1080p-video"
        _, early = await call(kie, "GET", path, taskId="veo_task_a", index="0")
        assert early is not None
        assert early["code"] == 422
        await asyncio.sleep(120.0)
        _, processing = await call(kie, "GET", path, taskId="veo_task_a", index="0")
        assert processing is not None
        assert processing["code"] == 400
        assert "processing" in processing["msg"]
        await asyncio.sleep(45.0)
        _, ready = await call(kie, "GET", path, taskId="veo_task_a", index="0")
        assert ready is not None
        assert ready["code"] == 200
        assert ready["data"]["resultUrl"].endswith("1080p-0.mp4")
        _, refused = await call(kie, "GET", path, taskId="veo_task_fb", index="0")
        assert refused is not None
        assert refused["code"] == 422
        assert "fallback" in refused["msg"]

    run_virtual(main)


def test_4k_is_charged_once_and_422_tells_processing_from_done() -> None:
    """The first 4K POST starts (and charges) it; later ones answer 422 with
    null urls while processing and 422 with urls once done."""

    async def main() -> None:
        kie = FakeKie(uhd_delay=300.0)
        kie.add_task("veo_task_a", complete_after=0.0)
        path = "/api/v1/veo/get-4k-video"
        body = {"taskId": "veo_task_a", "index": 0}
        first = await call(kie, "POST", path, body)
        assert first[1] is not None
        assert first[1]["code"] == 200
        _, processing = await call(kie, "POST", path, body)
        assert processing is not None
        assert processing["code"] == 422
        assert processing["data"]["resultUrls"] is None
        assert "processing" in processing["msg"]
        await asyncio.sleep(300.0)
        _, done = await call(kie, "POST", path, body)
        assert done is not None
        assert done["code"] == 422
        assert done["data"]["resultUrls"]
        assert "successfully" in done["msg"]
        assert kie.charged == UHD_COST

    run_virtual(main)


def test_download_links_only_for_kie_hosted_urls() -> None:
    """common/download-url answers a link for the simulator's own result URLs only."""

    async def main() -> None:
        kie = FakeKie()
        kie.add_task("veo_task_a")
        hosted = "https://tempfile.example/veo/veo_task_a/video.mp4"
        path = "/api/v1/common/download-url"
        _, ok = await call(kie, "POST", path, {"url": hosted})
        assert ok is not None
        assert ok["data"].startswith(hosted + "?")
        _, refused = await call(kie, "POST", path, {"url": "https://elsewhere.example/a.mp4"})
        assert refused is not None
        assert refused["code"] == 422

    run_virtual(main)


def test_create_endpoints_refuse_wrong_methods_and_bad_bodies() -> None:
    """GET on generate is a 405; a body without a prompt is a 422 and creates nothing."""

    async def main() -> None:
        kie = FakeKie()
        assert (await call(kie, "GET", "/api/v1/veo/generate"))[0] == 405
        _, envelope = await generate(kie, prompt="  ")
        assert envelope is not None
        assert envelope["code"] == 422
        assert kie.created == 0

    run_virtual(main)


@pytest.mark.parametrize(
    "settings",
    [
        {"credits": -1},
        {"credits": float("nan")},
        {"hd_delay": -5},
        {"uhd_delay": float("inf")},
        {"create_period": 0},
        {"create_period": -5},
        {"create_limit": -1},
        {"create_limit": 2.5},
        {"rate_limit_http_status": 42},
        {"rate_limit_http_status": True},
        {"shutdown_timeout": -1},
    ],
    ids=lambda settings: "-".join(f"{k}={v}" for k, v in settings.items()),
)
def test_a_bad_simulator_setting_is_refused_when_made(settings: dict[str, Any]) -> None:
    """Each setting is checked when the simulator is made, naming it: a negative
    delay or a status that is no HTTP status used to misbehave later instead."""
    name = next(iter(settings))
    with pytest.raises(ValueError, match=name):
        FakeKie(**settings)


def test_bad_scripts_and_faults_are_refused_when_made() -> None:
    """NaN durations, a quirks that is no Quirks, a fault given as a string and a
    non-positive in-process timeout are refused at once, not mid-request."""
    kie = FakeKie()
    with pytest.raises(ValueError, match="delay"):
        Fault.slow(float("nan"))
    with pytest.raises(ValueError, match="complete_after"):
        TaskScript("t", complete_after=float("nan"))
    with pytest.raises(TypeError, match="quirks"):
        TaskScript("t", quirks=1)  # type: ignore[arg-type]
    for inject in (kie.inject, kie.inject_create):
        with pytest.raises(TypeError, match=r"fault must be a Fault \(e.g. Fault.reset\(\)\)"):
            inject("reset")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="request_timeout"):
        kie.transport(request_timeout=0)


async def test_closing_a_started_simulator_cancels_no_in_process_caller() -> None:
    """A started simulator closed while it answers a request made in process
    (its transport()) leaves the caller's task alone: a create that went
    through is uncertain, as over a socket, not a cancellation nobody asked
    for (close() used to cancel the caller's own task as a hanging handler)."""
    from veo_async import SubmitUncertainError, VeoSession

    kie = FakeKie(credits=1e9)
    await kie.start()
    kie.inject_create(Fault.slow(60.0))
    async with VeoSession("test-key", transport=kie.transport(request_timeout=5.0)) as veo:
        creating = asyncio.ensure_future(veo.generate("a cat"))
        await asyncio.sleep(0.05)
        await kie.close()
        with pytest.raises(SubmitUncertainError):
            await creating
        assert not creating.cancelled()
    assert kie.created == 1


async def test_a_closed_simulator_answers_nothing_in_process() -> None:
    """A closed simulator refuses requests made in process too (a reset), and
    creates, charges and calls back nothing."""
    from veo_async import SubmitUncertainError, TransportError, VeoSession

    kie = FakeKie(credits=1e9)
    kie.add_task("veo_a")
    await kie.close()
    async with VeoSession("test-key", transport=kie.transport()) as veo:
        with pytest.raises(SubmitUncertainError):
            await veo.generate("a cat", callback_url="http://127.0.0.1:9/hook")
        with pytest.raises(TransportError):
            await veo.record_info("veo_a")
    assert (kie.created, kie.charged) == (0, 0.0)


def test_fired_callbacks_are_let_go_of() -> None:
    """A callback's timer is kept until it fires (for close() to cancel), not
    after: 500 creates with a callback URL used to keep 500 spent timers."""

    async def main() -> None:
        from veo_async import VeoSession

        kie = FakeKie(credits=1e9, time_scale=0.001, create_limit=None)
        async with VeoSession("test-key", transport=kie.transport()) as veo:
            for _ in range(50):
                await veo.generate("a cat", callback_url="http://127.0.0.1:9/hook")
            assert 0 < len(kie._timers) <= 50
            await asyncio.sleep(60)  # every render (and callback) done
            assert len(kie._timers) == 0
        await kie.close()

    run_virtual(main)


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [(2, None, 400), (3, None, 501), (3, 422, 422), (2, 500, 500)],
)
def test_a_failure_callback_says_what_the_record_says(
    status: int, code: int | None, expected: int
) -> None:
    """The callback of a failed task carries the record's errorCode and
    errorMessage (the defaults: 400 for status 2, 501 for status 3); it said
    400 and "Video generation failed" for status 3, which the record gives as 501."""
    script = TaskScript("veo_failed", final_status=status, error_code=code)
    record = render_record(script, created_at=1.7e9, done=True)
    payload = task_payload(script)
    assert payload["code"] == record["errorCode"] == expected
    assert payload["msg"] == record["errorMessage"]
