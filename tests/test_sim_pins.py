"""Pins of the public simulator (veo_async.testing) and of the CLI's demo,
progress and option checks, found by hand-made mutation testing: each test
pins one behaviour a user of the simulator (or of ``veo-async demo``) relies
on and that no other test held."""

from __future__ import annotations

import asyncio
import io
import json
import random
import time
from collections import Counter
from datetime import datetime, timezone
from typing import Any

import click
import pytest
from aiohttp import web
from click.testing import CliRunner

from veo_async import VeoSession
from veo_async.cli._app import cli
from veo_async.cli._demo import DemoReport, _Run, percentile, plan, planned_tasks, run_demo
from veo_async.cli._options import PositiveNumber, Settings, build_policy, require_api_key
from veo_async.cli._outcome import Tally
from veo_async.cli._progress import ProgressReporter, Snapshot, _isatty
from veo_async.models import GenerateRequest
from veo_async.testing import (
    DemoJob,
    FakeKie,
    Fault,
    ScaledClockLoop,
    TaskScript,
    synthetic_scripts,
)
from veo_async.testing._callbacks import CallbackSender, task_payload
from veo_async.testing._creation import COSTS, CreationDesk
from veo_async.testing._script import is_done, is_visible, result_url

from ._virtual import run_virtual
from .conftest import eventually
from .test_create import hook_server
from .test_fake_kie_create import call, generate, record
from .test_readme import INNER_PYTEST

pytest_plugins = ["pytester"]

RECORD_INFO = "/api/v1/veo/record-info"
HD = "/api/v1/veo/get-1080p-video"
UHD = "/api/v1/veo/get-4k-video"


def test_the_1080p_endpoint_is_get_only() -> None:
    """get-1080p-video is a GET (the docs, FakeKie's docstring): a POST answers 405."""

    async def main() -> None:
        kie = FakeKie()
        status, envelope = await call(kie, "POST", HD, {"taskId": "t1"})
        assert status == 405
        assert envelope is not None
        assert envelope["code"] == 405

    run_virtual(main)


def test_polls_are_counted_in_process_too() -> None:
    """polls(task_id) counts record-info requests of a simulator never started
    (served in process), as on a socket."""

    async def main() -> None:
        kie = FakeKie()
        kie.add_task("t1")
        await record(kie, "t1")
        await record(kie, "t1")
        assert kie.polls("t1") == 2
        assert kie.total_requests == 2

    run_virtual(main)


def test_reset_counters_keeps_the_requests_still_in_flight_as_the_peak() -> None:
    """max_in_flight after reset_counters() starts from the requests still
    being answered, not from 0 (a slow request outlives the reset)."""

    async def main() -> None:
        kie = FakeKie()
        kie.add_task("t1")
        kie.inject(Fault.slow(10.0))
        pending = asyncio.ensure_future(record(kie, "t1"))
        await asyncio.sleep(1.0)
        assert kie.in_flight == 1
        kie.reset_counters()
        assert kie.max_in_flight == 1
        await pending
        assert (kie.in_flight, kie.max_in_flight) == (0, 1)

    run_virtual(main)



def test_a_wildcard_host_gives_a_connectable_base_url() -> None:
    """FakeKie(host="0.0.0.0") listens everywhere, and base_url names the
    loopback address (a wildcard cannot be connected to)."""

    async def main() -> None:
        async with FakeKie(host="0.0.0.0") as kie:
            assert kie.base_url.startswith("http://127.0.0.1:")

    run_virtual(main)


def test_create_time_moves_with_the_loop_clock() -> None:
    """createTime is the instant a task was added, as the loop's clock moved it
    (a virtual clock included): tasks added ten minutes apart are ten minutes
    apart in their records, and completeTime is createTime + complete_after."""

    async def main() -> None:
        kie = FakeKie()
        kie.add_task("early", complete_after=30.0)
        await asyncio.sleep(600.0)
        kie.add_task("late", complete_after=30.0)
        await asyncio.sleep(60.0)
        early = (await record(kie, "early"))["data"]
        late = (await record(kie, "late"))["data"]
        assert _seconds(late["createTime"]) - _seconds(early["createTime"]) == 600
        assert _seconds(late["completeTime"]) - _seconds(late["createTime"]) == 30

    run_virtual(main)


def _seconds(kie_time: str) -> float:
    """A record's "YYYY-MM-DD HH:MM:SS" time as seconds (its zone aside)."""
    return datetime.strptime(kie_time, "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc).timestamp()


def test_script_creates_refuses_params_too() -> None:
    """script_creates() refuses ``params`` as well as ``task_id``: the created
    task's request is the simulator's (what the client sent)."""
    kie = FakeKie()
    with pytest.raises(ValueError, match="params"):
        kie.script_creates({"params": {"prompt": "x"}})


def test_close_drops_the_callbacks_not_sent_yet() -> None:
    """close() cancels the timers of callbacks not sent yet: nothing of the
    simulator fires afterwards (the loop reports no error, nothing is sent)."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        errors: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, context: errors.append(context))
        kie = FakeKie(time_scale=0.01)
        status, _ = await generate(kie, callBackUrl="http://127.0.0.1:9/hook")
        assert status == 200
        await kie.close()
        await asyncio.sleep(3600.0)
        assert errors == []
        assert kie.callbacks_delivered == 0

    run_virtual(main)


def test_the_creation_window_frees_a_slot_exactly_one_period_later() -> None:
    """The account limit is a sliding window whose slot frees exactly
    ``create_period`` after a create, as the session's own creation budget
    counts it: the client waiting exactly that long must not meet a 429."""
    desk = CreationDesk(credits=0.0, create_limit=2, create_period=10.0)
    assert desk.admit(0.0)
    assert desk.admit(0.0)
    assert not desk.admit(9.999)
    assert desk.admit(10.0)


def test_a_balance_of_exactly_the_price_pays_for_a_create() -> None:
    """A balance equal to the price is enough (402 only when it runs short);
    it is then 0, and the next create is refused with 402."""

    async def main() -> None:
        kie = FakeKie(credits=COSTS["veo3_fast"])
        status, envelope = await generate(kie)
        assert (status, envelope and envelope["code"]) == (200, 200)
        assert (kie.credits, kie.charged) == (0.0, COSTS["veo3_fast"])
        _, refused = await generate(kie)
        assert refused is not None
        assert refused["code"] == 402
        assert kie.created == 1

    run_virtual(main)


def test_an_extend_takes_one_and_a_half_times_its_model_time() -> None:
    """An extend's generation time is 1.5 times its model's (the module's
    promise): the same draw, scaled by 1.5."""
    plain = CreationDesk(credits=0.0, seed=3).duration("veo3_fast")
    extend = CreationDesk(credits=0.0, seed=3).duration("veo3_fast", extend=True)
    assert extend == pytest.approx(1.5 * plain)


def test_failed_tasks_are_never_fallback_videos() -> None:
    """fallback_rate applies to the successes only: a failed task's record
    says fallbackFlag false whatever the rate."""

    async def main() -> None:
        kie = FakeKie(failure_rate=1.0, fallback_rate=1.0, seed=1)
        _, envelope = await generate(kie)
        assert envelope is not None
        task_id = envelope["data"]["taskId"]
        await asyncio.sleep(kie.completed_at(task_id) - asyncio.get_running_loop().time())
        data = (await record(kie, task_id))["data"]
        assert (data["successFlag"], data["fallbackFlag"]) == (2, False)

    run_virtual(main)


async def _finished_record(kie: FakeKie, **body: Any) -> dict[str, Any]:
    """Generate with ``body``, wait (virtual time) until done, return the record's data."""
    _, envelope = await generate(kie, **body)
    assert envelope is not None
    task_id = envelope["data"]["taskId"]
    await asyncio.sleep(kie.completed_at(task_id) - asyncio.get_running_loop().time())
    data: dict[str, Any] = (await record(kie, task_id))["data"]
    return data


def test_a_created_task_has_the_resolution_it_asked_for() -> None:
    """A generate asking for 1080p or 4k (both documented) gets a record
    saying so; without one, 720p."""

    async def main() -> None:
        kie = FakeKie(seed=4)
        asked = await _finished_record(kie, resolution="1080p")
        four_k = await _finished_record(kie, resolution="4k")
        default = await _finished_record(kie)
        assert asked["response"]["resolution"] == "1080p"
        assert four_k["response"]["resolution"] == "4k"
        assert default["response"]["resolution"] == "720p"
        # A value of another type (a raw body's) is no resolution: the default.
        listed = await _finished_record(kie, resolution=["4k"])
        assert listed["response"]["resolution"] == "720p"

    run_virtual(main)


def test_an_extended_video_carries_full_result_urls() -> None:
    """The docs: fullResultUrls only after an extend. A created extend's
    record carries them; its parent's does not."""

    async def main() -> None:
        kie = FakeKie(seed=5)
        parent = await _finished_record(kie)
        status, envelope = await call(
            kie, "POST", "/api/v1/veo/extend", {"taskId": parent["taskId"], "prompt": "more"}
        )
        assert status == 200
        assert envelope is not None
        assert envelope["code"] == 200
        child_id = envelope["data"]["taskId"]
        await asyncio.sleep(kie.completed_at(child_id) - asyncio.get_running_loop().time())
        child = (await record(kie, child_id))["data"]
        assert parent["response"]["fullResultUrls"] is None
        assert child["response"]["fullResultUrls"]

    run_virtual(main)


def test_time_scale_scales_the_1080p_delay_too() -> None:
    """time_scale multiplies every simulated duration, the 1080p delay
    included: at 0.01, a 90 s delay is 0.9 s."""

    async def main() -> None:
        kie = FakeKie(seed=6, time_scale=0.01, hd_delay=90.0)
        done = await _finished_record(kie)
        _, early = await call(kie, "GET", HD, taskId=done["taskId"])
        assert early is not None
        assert early["code"] == 400
        await asyncio.sleep(1.0)
        _, ready = await call(kie, "GET", HD, taskId=done["taskId"])
        assert ready is not None
        assert ready["code"] == 200
        assert ready["data"]["resultUrl"].endswith("/1080p-0.mp4")

    run_virtual(main)


def test_a_4k_version_is_processing_until_its_delay_then_done_with_images() -> None:
    """Asked again, get-4k-video answers 422 "processing" (null urls) until
    ``uhd_delay`` s after the first request, then 422 "generated successfully"
    with resultUrls and their .jpg imageUrls."""

    async def main() -> None:
        kie = FakeKie(seed=8, uhd_delay=420.0)
        done = await _finished_record(kie)
        body = {"taskId": done["taskId"], "index": 0}
        _, started = await call(kie, "POST", UHD, body)
        assert started is not None
        assert started["code"] == 200
        await asyncio.sleep(419.5)
        _, processing = await call(kie, "POST", UHD, body)
        assert processing is not None
        assert processing["code"] == 422
        assert "processing" in processing["msg"]
        assert processing["data"]["resultUrls"] is None
        await asyncio.sleep(1.0)
        _, ready = await call(kie, "POST", UHD, body)
        assert ready is not None
        assert ready["code"] == 422
        assert "generated successfully" in ready["msg"]
        urls = ready["data"]["resultUrls"]
        assert urls
        assert ready["data"]["imageUrls"] == [
            url.replace(".mp4", ".jpg") for url in urls
        ]

    run_virtual(main)


def test_a_download_link_is_valid_twenty_minutes() -> None:
    """common/download-url answers a link that expires 20 minutes (1200 s)
    after the request, on the simulator's wall clock."""
    desk = CreationDesk(credits=0.0)
    url = "https://tempfile.example/veo/t1/video.mp4"
    answer = desk.download_link({"url": url}, 1_000.0)
    assert json.loads(answer.body)["data"] == f"{url}?download=1&expires=2200"


def test_a_generate_takes_at_most_three_images() -> None:
    """imageUrls holds at most 3 URLs (1-3 references): a fourth is a 422,
    and nothing is created or charged."""

    async def main() -> None:
        kie = FakeKie()
        images = [f"https://img.example/{n}.png" for n in range(4)]
        _, envelope = await generate(kie, generationType="REFERENCE_2_VIDEO", imageUrls=images)
        assert envelope is not None
        assert envelope["code"] == 422
        _, accepted = await generate(
            kie, generationType="REFERENCE_2_VIDEO", imageUrls=images[:3]
        )
        assert accepted is not None
        assert accepted["code"] == 200
        assert kie.created == 1

    run_virtual(main)


def test_a_text_to_video_generate_takes_no_images() -> None:
    """TEXT_2_VIDEO with imageUrls is a 422, nothing created."""

    async def main() -> None:
        kie = FakeKie()
        _, envelope = await generate(
            kie, generationType="TEXT_2_VIDEO", imageUrls=["https://img.example/1.png"]
        )
        assert envelope is not None
        assert envelope["code"] == 422
        assert kie.created == 0

    run_virtual(main)


def test_the_older_aspect_ratio_spelling_is_checked_too() -> None:
    """``aspectRatio`` (older pages' spelling) is checked like ``aspect_ratio``:
    an unsupported ratio is a 422 either way."""

    async def main() -> None:
        kie = FakeKie()
        _, envelope = await generate(kie, aspectRatio="1:1")
        assert envelope is not None
        assert envelope["code"] == 422
        _, accepted = await generate(kie, aspectRatio="9:16")
        assert accepted is not None
        assert accepted["code"] == 200

    run_virtual(main)


def test_a_record_turns_visible_and_terminal_at_its_instant_exactly() -> None:
    """The record is visible at ``visible_after`` and terminal at
    ``complete_after`` exactly (completed_at() names that instant)."""
    script = TaskScript("t1", visible_after=2.0, complete_after=5.0)
    assert not is_visible(script, 1.999)
    assert is_visible(script, 2.0)
    assert not is_done(script, 4.999)
    assert is_done(script, 5.0)


async def test_a_callback_refused_with_a_4xx_is_tried_three_times_then_dropped() -> None:
    """A delivery counts only when answered 2xx: a 404 is a failed attempt,
    retried until 3 attempts failed (the docs: "stops after 3 failed
    deliveries"), then dropped."""
    hits: list[str] = []

    async def hook(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(status=404, text="no such hook")

    async with hook_server(hook) as url:
        sender = CallbackSender()
        try:
            sender.send(url, task_payload(TaskScript("veo_t1")))
            assert await eventually(lambda: sender.failed_attempts == 3, within=10.0)
            assert (sender.delivered, len(hits)) == (0, 3)
        finally:
            await sender.aclose()


def test_callback_payloads_follow_the_documented_shapes() -> None:
    """A success callback has originUrls only for a non-16:9 ratio (else an
    empty list); a failure callback's data names the task and its fallbackFlag."""
    landscape = task_payload(TaskScript("veo_a", params={"prompt": "x", "aspect_ratio": "16:9"}))
    portrait = task_payload(TaskScript("veo_b", params={"prompt": "x", "aspect_ratio": "9:16"}))
    assert landscape["data"]["info"]["originUrls"] == []
    assert portrait["data"]["info"]["originUrls"] == [result_url("veo_b", "original")]
    failed = task_payload(TaskScript("veo_c", final_status=2))
    assert failed["data"] == {"taskId": "veo_c", "fallbackFlag": False}
    assert failed["code"] == 400


# -- veo-async demo --------------------------------------------------------------------


def _run_demo(tasks: int, seed: int) -> tuple[DemoReport, Tally]:
    """Run the demo's scenario in process on a virtual clock (no display)."""
    jobs = plan(tasks, seed)
    tally = Tally(planned_tasks(jobs))
    progress = ProgressReporter(tally, mode="off", interval=5.0, label="demo")

    async def main() -> DemoReport:
        return await run_demo(
            jobs=jobs, speed=1.0, seed=seed, concurrency=50, tally=tally, progress=progress
        )

    return run_virtual(main), tally


def test_the_demo_reports_true_figures() -> None:
    """The demo's report adds up: every planned task is either created and
    finished or taken out of the total (uncertain creates, extends of failed
    parents); credits spent are the balance difference and equal the
    simulator's charges; no fallback video is asked for its 1080p version."""
    report, tally = _run_demo(40, seed=3)
    assert report.uncertain == 1
    assert tally.total == report.created == sum(report.outcomes.values())
    assert tally.finished == tally.total
    assert report.upgrade_errors == 0
    assert report.upgraded >= 1
    summary = report.to_json()
    assert summary["credits_spent"] == report.credits_before - report.credits_after
    assert summary["credits_spent"] == summary["simulator_charged"] > 0
    assert summary["requests"] == (
        summary["polls"] + summary["creates"] + summary["upgrade_requests"] + 2
    )


def test_planned_tasks_count_the_extends() -> None:
    """planned_tasks(): one per generation plus one per extend planned."""
    jobs = plan(200, 1)
    extends = sum(job.extend_prompt is not None for job in jobs)
    assert extends > 0
    assert planned_tasks(jobs) == 200 + extends


def test_percentile_interpolates_between_the_ranks() -> None:
    """percentile(): linear between ranks, the ends are the min and max."""
    assert percentile([10.0, 0.0], 50) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 100) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 0) == 1.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 95) == pytest.approx(4.8)


def _one_job(kie: FakeKie, job: DemoJob) -> tuple[_Run, Tally]:
    """Run one demo job against ``kie`` (virtual clock), as the demo does."""
    tally = Tally(planned_tasks([job]))
    run = _Run(tally, ProgressReporter(tally, mode="off", interval=5.0, label="demo"))

    async def main() -> None:
        async with VeoSession("test-key", transport=kie.transport()) as veo:
            await run.job(veo, job)
        await kie.close()

    run_virtual(main)
    return run, tally


def test_a_demo_extend_of_a_failed_generation_leaves_the_total() -> None:
    """A planned extend whose parent failed is taken out of the total (it will
    never be created): the progress then ends at n/n, not n/n+1."""
    job = DemoJob(GenerateRequest("a cat"), extend_prompt="it snows", extend_model="fast")
    run, tally = _one_job(FakeKie(failure_rate=1.0, seed=1), job)
    assert (run.created, run.extended) == (1, 0)
    assert (tally.total, tally.failed, tally.finished) == (1, 1, 1)


def test_the_demo_never_asks_a_fallback_video_for_its_1080p_version() -> None:
    """A fallback-model video cannot be upgraded: the demo does not ask
    (no get-1080p-video request, no upgrade error counted)."""
    kie = FakeKie(fallback_rate=1.0, seed=1)
    run, tally = _one_job(kie, DemoJob(GenerateRequest("a cat"), upgrade=True))
    assert (tally.succeeded, run.upgraded, run.upgrade_errors) == (1, 0, 0)
    assert not any(request.path == HD for request in kie.requests)


def test_demo_rates_are_per_task_created() -> None:
    """requests_per_task and polls_per_task divide by the tasks created
    (generations and extends), not by the generations asked for."""
    report = DemoReport(
        generations=5, speed=1.0, seed=0, elapsed=1.0, elapsed_real=1.0, created=10,
        extended=5, uncertain=0, create_errors=0, simulator_created=10, outcomes={},
        upgraded=0, upgrade_errors=0, requests=100, polls=50, creates=10,
        upgrade_requests=0, rate_limited=0, create_rate_limited=0, credits_before=1.0,
        credits_after=0.0, charged=1.0, lags=(),
    )
    assert (report.requests_per_task, report.polls_per_task) == (10.0, 5.0)
    assert report.to_json()["lag_p50"] is None


def test_plain_progress_lines_come_every_interval_of_real_time(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """On a clock ``clock_speed`` times faster (demo), plain lines still come
    every ``interval`` seconds of real time: 5 s at speed 100 is a line per
    500 simulated seconds."""
    tally = Tally(3)
    progress = ProgressReporter(
        tally, mode="plain", interval=5.0, label="demo", clock_speed=100.0
    )

    async def main() -> None:
        async with progress:
            await asyncio.sleep(1_100.0)

    run_virtual(main)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    assert all(line.startswith("veo-async: demo: 0/3 finished") for line in lines)
    assert lines[-1].endswith("s simulated")


def test_progress_off_prints_no_summary_line(capsys: pytest.CaptureFixture[str]) -> None:
    """--progress off: no closing summary either; plain prints one."""
    ProgressReporter(Tally(2), mode="off", interval=5.0, label="demo").print_summary()
    assert capsys.readouterr().err == ""
    ProgressReporter(Tally(2), mode="plain", interval=5.0, label="demo").print_summary()
    assert capsys.readouterr().err.startswith("veo-async: demo: 2 tasks in")


def test_first_and_last_frames_take_at_most_two_images() -> None:
    """The docs: imageUrls holds 1-2 frames for
    FIRST_AND_LAST_FRAMES_2_VIDEO (1-3 only for references): three frames are
    a 422 from the service, and were accepted (and charged) by the simulator."""

    async def main() -> None:
        kie = FakeKie()
        frames = [f"https://img.example/{n}.png" for n in range(3)]
        _, envelope = await generate(
            kie, generationType="FIRST_AND_LAST_FRAMES_2_VIDEO", imageUrls=frames
        )
        assert envelope is not None
        assert envelope["code"] == 422
        assert (kie.created, kie.charged) == (0, 0.0)
        _, accepted = await generate(
            kie, generationType="FIRST_AND_LAST_FRAMES_2_VIDEO", imageUrls=frames[:2]
        )
        assert accepted is not None
        assert accepted["code"] == 200

    run_virtual(main)


def test_synthetic_scripts_put_record_null_first_only() -> None:
    """A synthetic task's "record is null" fault can only be its first (the
    record not visible yet), never after a transient fault."""
    scripts = synthetic_scripts([f"sim-{n}" for n in range(500)], rng=random.Random(2), speed=1.0)
    kinds = [[fault.kind for fault in script.faults] for script in scripts]
    assert any(faults and faults[0] == "record_null" for faults in kinds)
    assert all("record_null" not in faults[1:] for faults in kinds)


def test_synthetic_scripts_fail_in_both_documented_ways() -> None:
    """~8% of synthetic tasks fail early (status 2), ~7% late (status 3)."""
    scripts = synthetic_scripts(
        [f"sim-{n}" for n in range(4000)], rng=random.Random(5), speed=1.0, faults=False
    )
    shares = Counter(script.final_status for script in scripts)
    assert 0.06 < shares[2] / 4000 < 0.10
    assert 0.05 < shares[3] / 4000 < 0.09


def test_the_json_lag_p95_is_the_95th_percentile() -> None:
    """demo --json: lag_p50 and lag_p95 are those percentiles of the lags."""
    report = DemoReport(
        generations=1, speed=1.0, seed=0, elapsed=1.0, elapsed_real=1.0, created=1,
        extended=0, uncertain=0, create_errors=0, simulator_created=1, outcomes={},
        upgraded=0, upgrade_errors=0, requests=1, polls=1, creates=1,
        upgrade_requests=0, rate_limited=0, create_rate_limited=0, credits_before=1.0,
        credits_after=0.0, charged=1.0, lags=tuple(float(n) for n in range(101)),
    )
    summary = report.to_json()
    assert (summary["lag_p50"], summary["lag_p95"]) == (50.0, 95.0)


def _snapshot(**counts: Any) -> Snapshot:
    fields: dict[str, Any] = {
        "total": 10, "succeeded": 0, "failed": 0, "timed_out": 0, "errors": 0,
        "requests": 0, "failed_requests": 0, "rate_limited": 0, "elapsed": 12.0,
    }
    return Snapshot(**{**fields, **counts})


def test_a_snapshot_keeps_tasks_not_created_apart_from_those_generating() -> None:
    """demo: of 10 planned tasks, 4 created and 1 finished: 3 generating and
    6 not created; the interrupted summary says both."""
    snap = _snapshot(succeeded=1, created=4)
    assert (snap.generating, snap.not_created) == (3, 6)
    assert "generating 3 · not created 6 ·" in snap.describe()
    summary = snap.summary(interrupted=True)
    assert "3 still generating, 6 not created yet;" in summary


def test_a_closed_stream_is_no_terminal() -> None:
    """auto progress on a closed standard error: plain, not a crash."""
    stream = io.StringIO()
    stream.close()
    assert _isatty(stream) is False


# -- option checks ---------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
def test_a_positive_number_option_refuses_zero_and_non_finite_values(value: str) -> None:
    """PositiveNumber (--progress-interval, --speed): > 0 and finite, else a
    usage error (exit 2)."""
    with pytest.raises(click.BadParameter):
        PositiveNumber().convert(value, None, None)
    assert PositiveNumber().convert("0.5", None, None) == 0.5


def test_a_policy_the_session_refuses_is_a_usage_error_naming_the_options() -> None:
    """build_policy(): a value PollPolicy refuses is a usage error (exit 2)
    naming the command-line options, not the policy's field names."""
    with pytest.raises(click.UsageError) as caught:
        build_policy({"max_interval": 0.1, "interval": 5.0, "not_found_grace": None})
    message = caught.value.message
    assert "--poll-cap" in message
    assert "--interval" in message
    assert "max_interval" not in message


def test_a_blank_api_key_is_a_usage_error_saying_so() -> None:
    """A key given but blank ("  ", an empty variable) is a usage error saying
    it is blank, not a request the service refuses."""
    ctx = click.Context(click.Command("wait"), obj=Settings(api_key="  "))
    with pytest.raises(click.UsageError, match="blank"):
        require_api_key(ctx)



def test_a_scaled_clock_waits_only_a_fraction_of_real_time() -> None:
    """ScaledClockLoop(2000): a two-minute sleep takes about 60 ms of real
    time (bounded loosely here: well under 30 s), not two minutes or its delay
    in real seconds."""
    loop = ScaledClockLoop(2000)
    try:
        started = time.monotonic()
        loop.run_until_complete(asyncio.sleep(120.0))
        assert time.monotonic() - started < 30.0
    finally:
        loop.close()


def test_auto_progress_is_plain_off_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    """--progress auto: plain lines when standard error is no terminal (a
    file, a pipe, CI logs), never the live display's control codes."""
    assert ProgressReporter(Tally(1), mode="auto", interval=5.0, label="wait").mode == "plain"
    assert capsys.readouterr().err == ""


# -- the pytest plugin -----------------------------------------------------------------


def test_the_fake_kie_fixture_is_started_and_expects_test_key(pytester: pytest.Pytester) -> None:
    """The plugin's ``fake_kie`` fixture (installed with veo-async) is a started
    FakeKie expecting the key "test-key", as its docstring and the README say."""
    pytester.makepyfile(
        test_fixture="""
import pytest

@pytest.mark.asyncio
async def test_fixture(fake_kie):
    assert fake_kie.started
    assert fake_kie.api_key == "test-key"
"""
    )
    result = pytester.runpytest_inprocess(*INNER_PYTEST, "-o", "asyncio_mode=strict")
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize("where", ["before", "after"])
def test_a_bad_base_url_option_is_a_usage_error_naming_it(where: str) -> None:
    """--base-url that is no http(s) URL is a usage error (exit 2) naming the
    option, before the command or after it."""
    bad = ["--base-url", "ftp://x"]
    args = [*bad, "credits"] if where == "before" else ["credits", *bad]
    result = CliRunner().invoke(cli, args, env={"KIE_API_KEY": "k", "KIE_BASE_URL": None})
    assert result.exit_code == 2
    assert "'--base-url'" in result.output
