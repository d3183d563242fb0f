"""Pins on ``VeoSession`` (settings, the state guard, closing, the handles and
calls) and on the request models (``veo_async.models``) that mutation testing
found no test holding: each test says which behaviour it pins."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from veo_async import (
    AdaptivePolicy,
    ExtendRequest,
    GenerateRequest,
    HttpRequest,
    RawResponse,
    RecordInfo,
    RecordNotFoundError,
    SessionClosedError,
    SQLiteStore,
    TaskFailedError,
    TaskStatus,
    VeoSession,
)
from veo_async.testing import FakeKie, Fault

from .conftest import API_KEY, eventually, session_on
from .test_durable import db, durable, kie
from .test_durable_pins import acking_completed

__all__ = ["db", "kie"]  # the fixtures


@pytest.mark.parametrize(
    ("settings", "name"),
    [
        ({"create_period": 0}, "create_period"),
        ({"create_period": -10}, "create_period"),
        ({"create_period": float("inf")}, "create_period"),
        ({"create_rate": 0}, "create_rate"),
        ({"create_rate": float("nan")}, "create_rate"),
    ],
    ids=repr,
)
def test_a_bad_create_budget_setting_is_refused_by_its_name(
    settings: dict[str, Any], name: str
) -> None:
    """create_rate and create_period are checked as the other number
    settings are: a ValueError naming the setting, before any I/O (not the
    budget's own error about a "period" the caller never named)."""
    with pytest.raises(ValueError, match=f"^{name} must be a positive finite number"):
        VeoSession(API_KEY, transport=FakeKie().transport(), **settings)


def test_an_empty_kie_base_url_means_the_default_service(monkeypatch: pytest.MonkeyPatch) -> None:
    """KIE_BASE_URL set but empty (``KIE_BASE_URL=`` in a compose file) is
    as good as unset: the production service, not a ValueError; an explicit
    ``base_url=""`` is still refused."""
    monkeypatch.setenv("KIE_BASE_URL", "")
    assert VeoSession(API_KEY).base_url == "https://api.kie.ai"
    with pytest.raises(ValueError, match="base_url"):
        VeoSession(API_KEY, base_url="")


def test_an_explicit_empty_api_key_does_not_fall_back_to_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only ``api_key=None`` reads KIE_API_KEY: an explicit ``""`` (a config
    value that came out empty) is refused as "no API key", not silently
    replaced by whatever key the environment holds."""
    monkeypatch.setenv("KIE_API_KEY", "sk-from-the-environment")
    with pytest.raises(ValueError, match="no API key"):
        VeoSession("", transport=FakeKie().transport())
    with pytest.raises(ValueError, match="no API key"):
        VeoSession("   ", transport=FakeKie().transport())


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"timezone": "UTC"}, "timezone must be a datetime.tzinfo, not str"),
        ({"timezone": 8}, "timezone must be a datetime.tzinfo, not int"),
        ({"store": "veo.db"}, "store must be a TaskStore, not str"),
        ({"store": {}}, "store must be a TaskStore, not dict"),
        ({"on_event": 3}, "on_event must be callable"),
        ({"on_event": "print"}, "on_event must be callable"),
    ],
    ids=repr,
)
def test_a_timezone_store_or_hook_that_is_not_one_is_a_type_error_at_construction(
    settings: dict[str, Any], says: str
) -> None:
    """``timezone="UTC"``, ``store="veo.db"`` (the likely slips: a name for
    the object) and an ``on_event`` that is not callable raise TypeError
    naming the setting when the session is built, not an AttributeError
    there or at the first decoded time, store write or event."""
    with pytest.raises(TypeError, match=f"^{says}$"):
        VeoSession(API_KEY, transport=FakeKie().transport(), **settings)


async def test_entering_an_open_session_again_raises_and_leaves_it_open(fake_kie: FakeKie) -> None:
    """An open session entered again (nested, or a second ``async with``)
    raises RuntimeError, and the refused entry closes nothing: the outer
    block goes on using the session."""
    fake_kie.add_task("veo_task_ok")
    veo = session_on(fake_kie)
    async with veo:
        with pytest.raises(RuntimeError, match="already open"):
            async with veo:
                pass  # pragma: no cover - never entered
        assert not veo.closed
        assert (await veo.record_info("veo_task_ok")).task_id == "veo_task_ok"
    assert veo.closed


class _SlowToClose:
    """Forwards to an in-process FakeKie; its ``aclose`` waits for ``release``."""

    def __init__(self, fake: FakeKie) -> None:
        self.inner = fake.transport()
        self.closing = asyncio.Event()
        self.release = asyncio.Event()
        self.closed = False

    async def send(self, request: HttpRequest) -> RawResponse:
        return await self.inner.send(request)

    async def aclose(self) -> None:
        self.closing.set()
        await self.release.wait()
        await self.inner.aclose()
        self.closed = True


async def test_a_second_concurrent_aclose_returns_only_when_the_first_has_finished(
    fake_kie: FakeKie,
) -> None:
    """aclose() is idempotent and a concurrent second call waits for the
    first: it does not return (as if closed) while the transport is still
    closing."""
    transport = _SlowToClose(fake_kie)
    veo = VeoSession(API_KEY, transport=transport)
    await veo.__aenter__()
    first = asyncio.ensure_future(veo.aclose())
    await transport.closing.wait()
    second = asyncio.ensure_future(veo.aclose())
    for _ in range(20):
        await asyncio.sleep(0)
    assert not second.done()
    assert veo.closed
    transport.release.set()
    await asyncio.gather(first, second)
    assert transport.closed
    await veo.aclose()  # and a third, after, returns at once



async def test_record_info_right_after_generate_says_not_found_is_retryable(
    fake_kie: FakeKie,
) -> None:
    """veo.record_info() of a task this session just created, whose record
    is not visible yet, raises RecordNotFoundError marked retryable (within
    the policy's not_found_grace); for an id it did not create, it stays final."""
    fake_kie.script_creates({"visible_after": 30.0})
    async with session_on(fake_kie) as veo:
        task = await veo.generate("a cat")
        with pytest.raises(RecordNotFoundError) as created:
            await veo.record_info(task.task_id)
        assert created.value.retryable
        with pytest.raises(RecordNotFoundError) as unknown:
            await veo.record_info("veo_task_never_made")
        assert not unknown.value.retryable


async def test_concurrency_above_64_is_the_owned_connection_pools_size_too() -> None:
    """With its own aiohttp session, ``concurrency=80`` lets 80 requests
    reach the service at once: the connection pool is sized by the setting,
    not left at its default of 64 (where 16 requests would wait for a socket,
    spending their request_timeout unsent)."""
    ids = [f"veo_{n}" for n in range(80)]
    async with FakeKie(api_key=API_KEY) as fake:
        for task_id in ids:
            fake.add_task(task_id, faults=[Fault.slow(0.2)])
        async with VeoSession(API_KEY, base_url=fake.base_url, concurrency=80) as veo:
            await asyncio.gather(*(veo.record_info(task_id) for task_id in ids))
        assert fake.max_in_flight == 80


def test_a_new_session_is_not_closed_and_polls_adaptively_by_default() -> None:
    """``closed`` is False until aclose() (not merely "not open"), and the
    default policy is the learning AdaptivePolicy, not a fixed PollPolicy."""
    veo = VeoSession(API_KEY, transport=FakeKie().transport())
    assert veo.closed is False
    assert isinstance(veo.policy, AdaptivePolicy)


async def test_store_calls_refuse_bad_arguments_at_the_call(tmp_path: Path) -> None:
    """With a store: track() of a single string, reconcile() of a bad task
    id, resume()/completed() of a bad policy and deliver() of a handler that
    is not callable raise at the call (here, on an empty store), before any
    write; flush() of a closed session raises SessionClosedError."""
    fake = FakeKie(api_key=API_KEY)
    veo = VeoSession(API_KEY, transport=fake.transport(), store=SQLiteStore(tmp_path / "v.db"))
    async with veo:
        with pytest.raises(TypeError, match="single string"):
            await veo.track("veo_task_1")
        with pytest.raises(ValueError, match="whitespace"):
            await veo.reconcile("ref", "a b")
        with pytest.raises(TypeError, match=r"^policy must be"):
            await veo.resume(policy=3)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"^policy must be"):
            veo.completed(policy="fast")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="handler must be callable"):
            await veo.deliver(3)  # type: ignore[arg-type]
        store = veo.store
        assert store is not None
        assert await store.unfinished() == []
    with pytest.raises(SessionClosedError):
        await veo.flush()
    with pytest.raises(SessionClosedError):
        await veo.credits()


class _SlowToOpen(SQLiteStore):
    """An SQLiteStore whose open() waits for ``release`` first."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.opening = asyncio.Event()
        self.release = asyncio.Event()

    async def open(self) -> None:
        self.opening.set()
        await self.release.wait()
        await super().open()


async def test_an_entry_cancelled_while_the_store_opens_leaves_the_session_closed(
    tmp_path: Path,
) -> None:
    """``async with VeoSession(store=...)`` cancelled while the store is
    opening (a shutdown, an outer timeout) closes the session as a failed
    open does: it is not left open with nobody to close it."""
    store = _SlowToOpen(tmp_path / "v.db")
    veo = VeoSession(API_KEY, transport=FakeKie().transport(), store=store)
    entering = asyncio.ensure_future(veo.__aenter__())
    await store.opening.wait()
    entering.cancel()
    with pytest.raises(asyncio.CancelledError):
        await entering
    assert veo.closed
    with pytest.raises(SessionClosedError):
        await veo.__aenter__()


@pytest.mark.real_time  # the store's thread works in real time: waited for in real time
async def test_a_reconcile_that_attaches_nothing_leaves_the_id_unfollowed(
    kie: FakeKie, db: Path
) -> None:
    """veo.reconcile() of an unknown ref returns False and hands its task id
    to no running completed(follow=True): that task is never polled (it is
    no stored task's), while an id handed in after it is."""
    kie.add_task("veo_x", complete_after=0.2)
    kie.add_task("veo_y", complete_after=0.2)
    async with durable(kie, db) as veo, acking_completed(veo) as got:
        assert await veo.reconcile("no_such_ref", "veo_x") is False
        veo.task("veo_y")
        assert await eventually(lambda: got == ["veo_y"]), got
    assert all(request.query.get("taskId") != "veo_x" for request in kie.requests)


# -- the request models --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda: GenerateRequest("a cat", seeds=True), "seeds must be an int, not bool"),
        (lambda: ExtendRequest("t1", "more", seeds=False), "seeds must be an int, not bool"),
        (
            lambda: GenerateRequest("a cat", model="veo4", allow_unknown="no"),  # type: ignore[arg-type]
            "allow_unknown must be True or False, not 'no'",
        ),
        (
            lambda: ExtendRequest("t1", "more", model="ultra", allow_unknown=1),  # type: ignore[arg-type]
            "allow_unknown must be True or False, not 1",
        ),
    ],
    ids=["seeds-True", "extend-seeds-False", "allow_unknown-no", "extend-allow_unknown-1"],
)
def test_a_request_flag_or_seed_of_the_wrong_type_is_a_type_error(
    make: Callable[[], object], says: str
) -> None:
    """A bool is no seed (TypeError naming the field, not "out of range"),
    and only True opens the allow_unknown escape hatch: a truthy "no" or 1
    is a TypeError, so an unknown model is never sent by accident."""
    with pytest.raises(TypeError, match=f"^{re.escape(says)}$"):
        make()


@pytest.mark.parametrize("url", ["https://img.example/a b.png", "https://img.example/a\tb.png"])
def test_an_image_url_with_whitespace_inside_is_refused(url: str) -> None:
    """Whitespace inside a URL (not only around it) is refused, naming the
    field, before anything is sent: Kie would fail to fetch it after charging."""
    with pytest.raises(ValueError, match=r"^each of image_urls .* contains whitespace$"):
        GenerateRequest("a cat", image_urls=[url])


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"enable_translation": "no"}, "enable_translation must be a bool or None, not str"),
        ({"enable_fallback": 1}, "enable_fallback must be a bool or None, not int"),
        (
            {"image_urls": {"https://i.example/first.png", "https://i.example/last.png"}},
            "image_urls must be a list of URLs, not set",
        ),
        (
            {"image_urls": {"https://i.example/a.png": 1}},
            "image_urls must be a list of URLs, not dict",
        ),
    ],
    # Named, not repr'd: a set's repr differs between processes (pytest-xdist's
    # workers must collect the same ids).
    ids=["translation-str", "fallback-int", "image-urls-set", "image-urls-dict"],
)
def test_a_generate_option_of_the_wrong_type_is_refused_by_name(
    settings: dict[str, Any], says: str
) -> None:
    """enable_translation/enable_fallback take a bool (a truthy "no" would be
    sent as is), and image_urls an ordered sequence (a set's order, first and
    last frame, is arbitrary): a TypeError naming the field, before any I/O."""
    with pytest.raises(TypeError, match=f"^{re.escape(says)}$"):
        GenerateRequest("a cat", **settings)


def test_three_images_without_a_generation_type_are_refused() -> None:
    """With no generation_type (Kie reads images as first/last frames) at
    most 2 image URLs are accepted: a third is refused before anything is
    sent, naming the count."""
    urls = [f"https://i.example/{n}.png" for n in range(3)]
    assert len(GenerateRequest("a cat", image_urls=urls[:2]).image_urls) == 2
    with pytest.raises(ValueError, match=r"^no generation_type takes 0-2 image URLs, not 3$"):
        GenerateRequest("a cat", image_urls=urls)


@pytest.mark.parametrize("model", ["", "   ", "veo4 ", " veo4"])
def test_allow_unknown_does_not_let_a_blank_or_padded_model_through(model: str) -> None:
    """The escape hatch takes any value Kie may have added, but not a blank
    one ("" is an unset config value) nor one with surrounding spaces (a
    copy-paste slip Kie would not recognise): refused, naming the field."""
    with pytest.raises(ValueError, match=r"^model .* must be a non-empty str"):
        GenerateRequest("a cat", model=model, allow_unknown=True)
    with pytest.raises(ValueError, match=r"^model .* must be a non-empty str"):
        ExtendRequest("t1", "more", model=model, allow_unknown=True)


def test_a_url_error_masks_the_urls_password() -> None:
    """An invalid URL's error shows it without its ``user:password@`` part
    (as ``***@``): a callback URL's credentials do not reach logs."""
    with pytest.raises(ValueError, match="whitespace") as caught:
        GenerateRequest("a cat", callback_url="https://user:s3cret@cb.example/a b")
    assert "s3cret" not in str(caught.value)
    assert "https://***@cb.example/a b" in str(caught.value)


@pytest.mark.parametrize(
    ("url", "expected"),
    [("https://api.kie.ai/", "https://api.kie.ai"), ("http://127.0.0.1:8080/kie//", "http://127.0.0.1:8080/kie")],
)
def test_a_base_url_loses_its_trailing_slashes(url: str, expected: str) -> None:
    """base_url (an argument, or KIE_BASE_URL) is kept without a trailing
    slash: request paths are appended to it ("//api/v1/..." is another path
    to some proxies)."""
    assert VeoSession(API_KEY, base_url=url).base_url == expected


@pytest.mark.parametrize("url", ["https://user@api.example", "https://user:pw@api.example"])
def test_a_base_url_with_a_user_is_refused(url: str) -> None:
    """A base_url carrying a user (with or without a password) is refused:
    aiohttp would refuse it beside the Authorization header on every request."""
    with pytest.raises(ValueError, match="must not carry credentials"):
        VeoSession(API_KEY, base_url=url)


def test_only_generating_is_not_terminal() -> None:
    """TaskStatus.is_terminal (public, for a caller reading successFlag
    itself) is False for GENERATING only: SUCCESS, FAILED and
    GENERATION_FAILED never change again."""
    assert [status.is_terminal for status in TaskStatus] == [False, True, True, True]
    assert RecordInfo("t1", TaskStatus.GENERATING).is_done is False
    assert RecordInfo("t1", TaskStatus.FAILED).is_done is True


@pytest.mark.parametrize(
    "keywords",
    [{"model": "fast"}, {"seeds": 12345}, {"watermark": "w"}, {"allow_unknown": True}],
    ids=repr,
)
async def test_extend_refuses_keywords_beside_a_prepared_request(
    fake_kie: FakeKie, keywords: dict[str, Any]
) -> None:
    """task.extend(ExtendRequest(...), model=...) is a TypeError before any
    request: the keyword would otherwise be dropped silently (the video
    extended with the request's model, not the one asked for)."""
    fake_kie.add_task("veo_done")
    async with session_on(fake_kie) as veo:
        task = veo.task("veo_done")
        with pytest.raises(TypeError, match="not both"):
            await task.extend(ExtendRequest("veo_done", "more"), **keywords)
    assert fake_kie.total_requests == 0


async def test_extending_a_task_known_to_have_failed_raises_before_any_create(
    fake_kie: FakeKie,
) -> None:
    """task.extend() of a handle whose failure is already known (a wait saw
    it) raises TaskFailedError and sends no extend: there is nothing to
    extend, and a create would be charged or refused."""
    fake_kie.add_task("veo_failed", final_status=2)
    async with session_on(fake_kie) as veo:
        task = veo.task("veo_failed")
        with pytest.raises(TaskFailedError):
            await task.wait()
        with pytest.raises(TaskFailedError):
            await task.extend("more")
    assert [request.method for request in fake_kie.requests] == ["GET"]
