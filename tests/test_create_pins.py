"""Pins on the creating code (``_create``, ``_endpoints.decode_task_id``, the
request models, ``VeoSession.generate``) that mutation testing found no test
holding: each test says which behaviour it pins."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from pathlib import Path
from typing import Any

import pytest

from veo_async import (
    APIError,
    ExtendRequest,
    GenerateRequest,
    HttpRequest,
    RawResponse,
    RecordNotFoundError,
    SQLiteStore,
    StoreError,
    SubmitUncertainError,
    TransportError,
    VeoSession,
)
from veo_async.models import MAX_PROMPT_LENGTH, SEED_RANGE
from veo_async.store import ref_of, without_ref
from veo_async.testing import FakeKie, Fault

from .conftest import API_KEY, on_time, session_on
from .test_create import GENERATE, requests_to

EXTEND = "/api/v1/veo/extend"


class _RefusedFirst:
    """Forwards to an in-process FakeKie, but refuses the first ``refusals``
    create POSTs before sending (``TransportError`` with ``sent`` False, as
    a refused connection is), noting the loop time of every create POST."""

    def __init__(self, kie: FakeKie, refusals: int) -> None:
        self.inner = kie.transport()
        self.refusals = refusals
        self.posts: list[float] = []

    async def send(self, request: HttpRequest) -> RawResponse:
        if request.method == "POST":
            self.posts.append(asyncio.get_running_loop().time())
            if self.refusals > 0:
                self.refusals -= 1
                raise TransportError("connection refused", sent=False)
        return await self.inner.send(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def _gaps(times: list[float]) -> list[float]:
    """The time between each two successive times (of requests)."""
    return [later - earlier for earlier, later in itertools.pairwise(times)]


async def test_a_create_refused_before_sending_is_resent_after_a_doubling_delay(
    fake_kie: FakeKie,
) -> None:
    """A create whose connection was refused (nothing sent) is resent after
    about 1 s, then about 2 s (+-20%): not at once, which would spend the
    five safe resends of a short outage in a moment."""
    transport = _RefusedFirst(fake_kie, 2)
    async with VeoSession(API_KEY, transport=transport) as veo:
        task = await veo.generate("a cat")
    assert fake_kie.created_ids == [task.task_id]
    first, second = _gaps(transport.posts)
    assert 0.8 - 1e-6 <= first <= 1.2 + 0.1
    assert 1.6 - 1e-6 <= second <= 2.4 + 0.1


async def test_a_rate_limited_create_is_resent_when_its_retry_after_ends(
    fake_kie: FakeKie,
) -> None:
    """A 429 with Retry-After 1 s: each resend goes when the creation pause
    ends, with no backoff of its own on top (the budget's pause is the
    delay), so three 429s in a row cost three seconds, not seven."""
    fake_kie.inject_create(Fault.http_429(retry_after=1), 3)
    async with VeoSession(API_KEY, transport=fake_kie.transport()) as veo:
        task = await veo.generate("a cat")
    assert fake_kie.created_ids == [task.task_id]
    posts = [r.started for r in requests_to(fake_kie, GENERATE)]
    assert on_time(_gaps(posts), [1.0, 1.0, 1.0])


@pytest.mark.parametrize(("draw", "delay"), [("lowest", 0.8), ("highest", 1.2)])
async def test_the_resend_delay_spans_twenty_percent_either_side(
    fake_kie: FakeKie, monkeypatch: pytest.MonkeyPatch, draw: str, delay: float
) -> None:
    """The delay before the first safe resend is 1 s +-20%: with the random
    draw at its lowest it is 0.8 s, at its highest 1.2 s (the jitter is
    spread both ways, not only added)."""
    monkeypatch.setattr(random, "uniform", lambda low, high: low if draw == "lowest" else high)
    fake_kie.inject_create(Fault.maintenance())
    async with VeoSession(API_KEY, transport=fake_kie.transport()) as veo:
        await veo.generate("a cat")
    posts = [r.started for r in requests_to(fake_kie, GENERATE)]
    assert on_time(_gaps(posts), [delay], late=0.1)


async def test_an_extend_refused_until_its_resends_run_out_names_the_task_it_extends() -> None:
    """An extend met by 455 on every sending raises that 455 after the five
    safe resends, naming the task it extends, as a refusal at the first
    sending does (the error says which video could not be extended)."""
    kie = FakeKie(api_key=API_KEY, time_scale=0.001, seed=7)
    async with session_on(kie) as veo:
        task = await veo.generate("a cat")
        await task
        kie.inject_create(Fault.maintenance(), 6)
        with pytest.raises(APIError) as caught:
            await task.extend("more")
    await kie.close()
    assert caught.value.code == 455
    assert caught.value.task_id == task.task_id
    assert len(requests_to(kie, EXTEND)) == 6


@pytest.mark.real_time
@pytest.mark.parametrize("how", ["created", "uncertain"])
async def test_a_durable_sessions_request_as_sent_can_be_sent_again(
    tmp_path: Path, how: str
) -> None:
    """With a store, the request a handle or a SubmitUncertainError holds is
    the request as sent (its callback URL carries the intent's veo_ref).
    Sending it again - a second video like the first, or the uncertain one
    resent once it was found not to exist - sends it under a fresh ref of
    its own, to the caller's callback URL; it is not refused for the ref the
    session itself added."""
    kie = FakeKie(api_key=API_KEY, time_scale=0.001, seed=7, create_limit=None)
    store = SQLiteStore(tmp_path / "veo.db", flush_interval=0.01, lock_timeout=0.0)
    try:
        async with VeoSession(API_KEY, transport=kie.transport(), store=store) as veo:
            sent: GenerateRequest | ExtendRequest | None
            if how == "uncertain":
                kie.inject_create(Fault.server_error())
                with pytest.raises(SubmitUncertainError) as caught:
                    await veo.generate("a fox", callback_url="https://cb.example/h?x=1")
                sent = caught.value.request
            else:
                first = await veo.generate("a fox", callback_url="https://cb.example/h?x=1")
                sent = first.request
            assert isinstance(sent, GenerateRequest)
            again = await veo.generate(sent)
            assert again.request is not None
            assert again.request.callback_url is not None
            assert sent.callback_url is not None
            assert ref_of(again.request.callback_url) not in (None, ref_of(sent.callback_url))
            assert without_ref(again.request.callback_url) == "https://cb.example/h?x=1"
    finally:
        await kie.close()


# -- validation: the edges of each rule ------------------------------------------------


@pytest.mark.parametrize("seeds", list(SEED_RANGE))
def test_both_ends_of_the_seed_range_are_accepted(seeds: int) -> None:
    """The documented seed range (10000-99999) includes both ends, for a
    generate and for an extend, and they go out as given."""
    assert GenerateRequest("a cat", seeds=seeds).to_wire()["seeds"] == seeds
    assert ExtendRequest("veo_task_1", "more", seeds=seeds).to_wire()["seeds"] == seeds


def test_a_prompt_of_exactly_the_cap_is_accepted() -> None:
    """MAX_PROMPT_LENGTH characters is allowed (one more is refused): the
    cap is a most, not a less-than."""
    prompt = "x" * MAX_PROMPT_LENGTH
    assert GenerateRequest(prompt).to_wire()["prompt"] == prompt
    assert ExtendRequest("veo_task_1", prompt).prompt == prompt


@pytest.mark.parametrize(
    ("generation_type", "count"),
    [
        ("FIRST_AND_LAST_FRAMES_2_VIDEO", 1),
        ("FIRST_AND_LAST_FRAMES_2_VIDEO", 2),
        ("REFERENCE_2_VIDEO", 1),
        ("REFERENCE_2_VIDEO", 3),
        (None, 1),
        (None, 2),
    ],
)
def test_each_documented_image_count_is_accepted(generation_type: str | None, count: int) -> None:
    """Every count the reference allows is accepted, the ends included: 1-2
    frames (one frame alone is a first frame), 1-3 references, and 1-2
    images when the type is left to Kie; the URLs go out in the order given."""
    urls = [f"https://img.example/{n}.png" for n in range(count)]
    request = GenerateRequest("a cat", generation_type=generation_type, image_urls=urls)
    assert request.to_wire()["imageUrls"] == urls


def test_a_reference_video_without_references_is_refused() -> None:
    """REFERENCE_2_VIDEO with no image is refused before anything is sent:
    there is nothing to refer to."""
    with pytest.raises(ValueError, match="REFERENCE_2_VIDEO takes 1-3 image URLs, not 0"):
        GenerateRequest("a cat", generation_type="REFERENCE_2_VIDEO")


@pytest.mark.parametrize("field", ["model", "aspect_ratio"])
def test_a_request_built_with_no_model_or_ratio_is_a_type_error(field: str) -> None:
    """GenerateRequest(model=None) (or aspect_ratio=None) is refused with a
    TypeError: both always go out, and null is no value Kie takes (through
    generate(), None means the default instead)."""
    options: dict[str, Any] = {field: None}
    with pytest.raises(TypeError, match=f"{field} must be a str, not NoneType"):
        GenerateRequest("a cat", **options)


@pytest.mark.parametrize("allow_unknown", [False, True])
@pytest.mark.parametrize("field", ["model", "aspect_ratio", "generation_type", "resolution"])
def test_a_choice_that_is_no_str_is_a_type_error(field: str, allow_unknown: bool) -> None:
    """A model, ratio, type or resolution that is not a str (3, say) is a
    TypeError naming the field, with or without allow_unknown (which opens
    the documented sets to new text, not to other types)."""
    options: dict[str, Any] = {field: 3, "allow_unknown": allow_unknown}
    with pytest.raises(TypeError, match=f"{field} must be a str, not int"):
        GenerateRequest("a cat", **options)


def test_image_urls_given_as_bytes_are_refused_as_one_value() -> None:
    """image_urls=b"https://..." (one URL, as bytes) is refused as a single
    value, not read as a sequence of numbers."""
    with pytest.raises(TypeError, match="not a single string"):
        GenerateRequest("a cat", image_urls=b"https://img.example/1.png")  # type: ignore[arg-type]


@pytest.mark.parametrize("url", ["not a url", "ftp://cb.example/x", "https://"])
def test_an_extends_callback_url_is_validated(url: str) -> None:
    """An extend's callback_url must be an http(s) URL with a host, as a
    generate's: refused when the request is built, before anything is sent."""
    with pytest.raises(ValueError, match="callback_url"):
        ExtendRequest("veo_task_1", "more", callback_url=url)


@pytest.mark.parametrize("url", ["http://:8080/cb", "https://user@/cb"])
def test_a_url_with_a_port_or_user_but_no_host_is_refused(url: str) -> None:
    """A URL whose authority holds no host (only a port, or only a user) is
    no address Kie can reach: refused as a callback URL and as an image URL."""
    with pytest.raises(ValueError, match="with a host"):
        GenerateRequest("a cat", callback_url=url)
    with pytest.raises(ValueError, match="with a host"):
        GenerateRequest("a cat", image_urls=[url])


def test_a_generation_type_kie_added_later_takes_any_number_of_images() -> None:
    """With allow_unknown, a generation type outside the documented ones is
    sent with the images given, however many: their count is only checked
    for the documented types (whose counts Kie documents)."""
    urls = [f"https://img.example/{n}.png" for n in range(4)]
    request = GenerateRequest(
        "a cat", generation_type="STORYBOARD_2_VIDEO", image_urls=urls, allow_unknown=True
    )
    assert request.to_wire()["imageUrls"] == urls
    assert request.to_wire()["generationType"] == "STORYBOARD_2_VIDEO"


async def test_generate_refuses_allow_unknown_beside_a_prepared_request(
    fake_kie: FakeKie, veo: VeoSession
) -> None:
    """generate(request, allow_unknown=True) is a TypeError, sending nothing:
    the flag belongs to the request, and ignoring it would send a request
    other than the one the caller thinks."""
    with pytest.raises(TypeError, match="not both"):
        await veo.generate(GenerateRequest("a cat"), allow_unknown=True)
    assert fake_kie.total_requests == 0


# -- reading a create's answer ---------------------------------------------------------

_A_RECORD = (
    b'{"code": 200, "msg": "success", "data": {"taskId": "veo_task_someone_else",'
    b' "successFlag": 0, "response": null}}'
)


class _AnswersWithARecord:
    """Answers every request with a task's record-info answer (of another task)."""

    def __init__(self) -> None:
        self.posts = 0

    async def send(self, request: HttpRequest) -> RawResponse:
        self.posts += request.method == "POST"
        return RawResponse(200, {"Content-Type": "application/json"}, _A_RECORD)

    async def aclose(self) -> None:
        """Nothing to close."""


async def test_a_record_answered_to_a_create_is_uncertain_not_that_records_task() -> None:
    """A create answered with a task's record (a record-info answer read as
    the create's) is not taken for the create's own answer: the taskId in it
    is another task's. SubmitUncertainError naming no task, sent once."""
    transport = _AnswersWithARecord()
    async with VeoSession(API_KEY, transport=transport) as veo:
        with pytest.raises(SubmitUncertainError, match="record") as caught:
            await veo.generate("a cat")
        assert veo.task("veo_task_someone_else").request is None
    assert caught.value.task_id is None
    assert transport.posts == 1


class _IdNotStored(SQLiteStore):
    """A store whose writes of a task id fail (a full disk, say)."""

    async def attach_task_id(self, *args: Any, **kwargs: Any) -> None:
        raise StoreError("disk full", path="veo.db")


@pytest.mark.real_time
async def test_a_created_task_whose_id_cannot_be_stored_is_logged_and_left_uncertain(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The task was created, but the store could not write its id: the
    StoreError is raised, the log names the task (its id must not be lost
    silently), and the intent stays uncertain (reported, never resent)."""
    kie = FakeKie(api_key=API_KEY, time_scale=0.001, seed=7, create_limit=None)
    store = _IdNotStored(tmp_path / "veo.db", flush_interval=0.01, lock_timeout=0.0)
    try:
        async with VeoSession(API_KEY, transport=kie.transport(), store=store) as veo:
            with pytest.raises(StoreError, match="disk full"):
                await veo.generate("a fox")
            [task_id] = kie.created_ids
            assert f"task {task_id} was created but its id could not be stored" in caplog.text
            [intent] = await veo.uncertain()
            assert intent.request["prompt"] == "a fox"
    finally:
        await kie.close()
    assert len(requests_to(kie, GENERATE)) == 1


@pytest.mark.real_time
async def test_a_store_error_after_the_task_was_created_names_the_task(tmp_path: Path) -> None:
    """The StoreError raised when the new task's id could not be stored
    carries that id (``task_id``), as every error of the SDK carries its
    context: the task exists and was charged for, and the caller can still
    follow it (``veo.task(error.task_id)``) without digging in the log."""
    kie = FakeKie(api_key=API_KEY, time_scale=0.001, seed=7, create_limit=None)
    store = _IdNotStored(tmp_path / "veo.db", flush_interval=0.01, lock_timeout=0.0)
    try:
        async with VeoSession(API_KEY, transport=kie.transport(), store=store) as veo:
            with pytest.raises(StoreError) as caught:
                await veo.generate("a fox")
    finally:
        await kie.close()
    assert caught.value.task_id == kie.created_ids[0]


class _ClaimedUnderAnError:
    """Forwards to an in-process FakeKie, but answers every create POST with
    HTTP 500 over a success envelope naming ``task_id`` (a proxy that
    rewrote the status): an uncertain create whose error names its task."""

    def __init__(self, kie: FakeKie, task_id: str) -> None:
        self.inner = kie.transport()
        envelope = {"code": 200, "msg": "success", "data": {"taskId": task_id}}
        self.body = json.dumps(envelope).encode()

    async def send(self, request: HttpRequest) -> RawResponse:
        if request.method == "POST":
            return RawResponse(500, {"Content-Type": "application/json"}, self.body)
        return await self.inner.send(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_an_uncertain_create_naming_its_task_is_read_as_a_new_task(
    fake_kie: FakeKie,
) -> None:
    """Without a store too, the task an uncertain create's error names is
    handled as one just created: a refresh() that finds its record not
    visible yet ("record is null") raises a *retryable* RecordNotFoundError
    (within the policy's grace: a new record takes a moment to appear), as
    for a task the session created, not a final one as for an old id."""
    fake_kie.add_task("veo_task_made", complete_after=0.2)
    fake_kie.inject(Fault.record_null(), count=1)
    transport = _ClaimedUnderAnError(fake_kie, "veo_task_made")
    async with session_on(fake_kie, transport=transport) as veo:
        with pytest.raises(SubmitUncertainError) as caught:
            await veo.generate("a cat")
        assert caught.value.task_id == "veo_task_made"
        with pytest.raises(RecordNotFoundError) as not_yet:
            await veo.task("veo_task_made").refresh()
        assert not_yet.value.retryable
        record = await veo.task("veo_task_made").wait(timeout=5.0)
        assert record.task_id == "veo_task_made"
