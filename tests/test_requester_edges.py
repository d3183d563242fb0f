"""The requester: behaviour no other test pinned (pauses, windows, creates cut or sent back)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from veo_async import (
    RateLimitError,
    SessionClosedError,
    SubmitUncertainError,
    TransportError,
    VeoSession,
)
from veo_async._http import ApiKey, HttpRequest
from veo_async._limits import RequestBudget
from veo_async._protocol import RawResponse, decode_envelope
from veo_async._requester import Requester
from veo_async.events import Event, SessionPaused
from veo_async.testing import FakeKie, Fault, InProcessTransport, TaskScript

from ._virtual import run_virtual

OK = b'{"code": 200, "msg": "success", "data": {}}'
LIMITED = b'{"code": 429, "msg": "Rate limited", "data": null}'


class _Scripted:
    """Answers each request by its ``json["id"]``: (delay, Retry-After of a
    429 or "" for a 429 without one, or None: a 200). Records when each was
    sent."""

    def __init__(self, script: dict[str, tuple[float, str | None]]) -> None:
        self.script = script
        self.sent: dict[str, float] = {}

    async def send(self, request: HttpRequest) -> RawResponse:
        name = request.json["id"]
        self.sent[name] = asyncio.get_running_loop().time()
        delay, retry_after = self.script[name]
        await asyncio.sleep(delay)
        if retry_after is None:
            return RawResponse(200, {}, OK)
        headers = {"Retry-After": retry_after} if retry_after else {}
        return RawResponse(429, headers, LIMITED)

    async def aclose(self) -> None:
        pass


def _requester(transport: Any, **kwargs: Any) -> Requester:
    return Requester(
        transport, ApiKey("test-key"), RequestBudget(4, rng=random.Random(1)), **kwargs
    )


async def _call(requester: Requester, name: str, **kwargs: Any) -> Any:
    return await requester.call("POST", "/x", decode_envelope, json={"id": name}, **kwargs)


def test_a_pause_event_says_when_the_pause_began_not_when_its_request_started() -> None:
    """SessionPaused.at is when the 429 arrived (2 s after its request
    started): ``at + duration`` is when starts resume; stats tell that answer."""
    events: list[Event] = []

    async def main() -> None:
        requester = _requester(_Scripted({"A": (2.0, "5")}), on_event=events.append)
        try:
            assert requester.stats().last_answer_at is None
            with pytest.raises(RateLimitError):
                await _call(requester, "A")
            answered = asyncio.get_running_loop().time()
            (paused,) = [e for e in events if isinstance(e, SessionPaused)]
            assert paused.at == pytest.approx(answered, abs=0.05)
            assert paused.at + paused.duration == pytest.approx(requester.queue.budget.paused_until)
            assert requester.stats().last_answer_at == pytest.approx(answered, abs=0.05)
        finally:
            await requester.aclose()

    run_virtual(main)


class _PulledOnCancel:
    """A user's Transport raising its own TransportError when its request is
    cancelled (the session closing), as a client whose connection was pulled."""

    def __init__(self, inner: InProcessTransport) -> None:
        self.inner = inner

    async def send(self, request: HttpRequest) -> RawResponse:
        try:
            return await self.inner.send(request)
        except asyncio.CancelledError:
            raise TransportError("connection closed", sent=True) from None

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_a_create_cut_by_the_close_stays_uncertain_whatever_the_transport_raises() -> None:
    """A create in flight at the close may have gone through: SubmitUncertainError
    (never resent), not SessionClosedError (taken for "never sent")."""

    async def main() -> None:
        kie = FakeKie()
        kie.add_task(TaskScript("t1", complete_after=100, faults=(Fault.slow(10),)))
        kie.inject_create(Fault.slow(10))
        async with VeoSession("test-key", transport=_PulledOnCancel(kie.transport())) as veo:
            read = asyncio.create_task(veo.record_info("t1"))
            create = asyncio.create_task(veo.generate("a cat"))
            await asyncio.sleep(1)
        read_error, create_error = await asyncio.gather(read, create, return_exceptions=True)
        assert type(read_error) is SessionClosedError, read_error
        assert type(create_error) is SubmitUncertainError, create_error

    run_virtual(main)


class _Latency:
    """The in-process transport, 0.1 s a request, counting the most reads and
    creates in flight at once."""

    def __init__(self, inner: InProcessTransport) -> None:
        self.inner = inner
        self.in_flight = {"GET": 0, "POST": 0}
        self.most = {"GET": 0, "POST": 0}

    async def send(self, request: HttpRequest) -> RawResponse:
        self.in_flight[request.method] += 1
        self.most[request.method] = max(self.most[request.method], self.in_flight[request.method])
        try:
            await asyncio.sleep(0.1)
            return await self.inner.send(request)
        finally:
            self.in_flight[request.method] -= 1

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.mark.parametrize("errors", [False, True], ids=["records", "5xx"])
def test_after_a_429_every_answer_that_is_no_429_widens_the_window_back(errors: bool) -> None:
    """After a 429 the window is one probe; each answer that is not a 429 (a
    record, or a 5xx) widens it by one, back to four requests at a time."""

    async def main() -> None:
        kie = FakeKie()
        ids = [f"t{n}" for n in range(4)]
        kie.add_tasks(TaskScript(i, complete_after=1000) for i in ids)
        transport = _Latency(kie.transport())
        async with VeoSession("test-key", transport=transport, concurrency=4) as veo:
            kie.inject(Fault.http_429(retry_after=0.5))
            with pytest.raises(RateLimitError):
                await veo.record_info("t0")
            await asyncio.sleep(1)  # past the pause
            if errors:
                kie.inject(Fault.server_error(), count=3)
            for _ in range(3):  # one at a time: 1 -> 2 -> 3 -> 4
                await asyncio.gather(veo.record_info("t0"), return_exceptions=True)
            transport.most["GET"] = 0
            await asyncio.gather(*(veo.record_info(i) for i in ids))
            assert transport.most["GET"] == 4

    run_virtual(main)


@pytest.mark.parametrize("refused", [False, True], ids=["created", "400"])
def test_after_a_429_to_a_create_create_answers_widen_the_creation_window(refused: bool) -> None:
    """Likewise for the creation window: creates go four at a time again."""

    async def main() -> None:
        kie = FakeKie()
        transport = _Latency(kie.transport())
        async with VeoSession("test-key", transport=transport, concurrency=4) as veo:
            kie.inject_create(Fault.http_429(retry_after=0.5))
            await veo.generate("a cat")  # refused, then sent again after the pause
            if refused:
                kie.inject_create(Fault.body_code(400, "prompt refused"), count=3)
            for _ in range(3):
                await asyncio.gather(veo.generate("a dog"), return_exceptions=True)
            transport.most["POST"] = 0
            await asyncio.gather(*(veo.generate(f"cat {n}") for n in range(4)))
            assert transport.most["POST"] == 4

    run_virtual(main)


def _two_per_ten_seconds(transport: Any) -> Requester:
    return Requester(
        transport,
        ApiKey("test-key"),
        RequestBudget(1, rng=random.Random(1)),
        create_budget=RequestBudget(4, 2, period=10.0, count_finish=True, rng=random.Random(1)),
    )


def test_a_create_cancelled_while_waiting_for_a_session_slot_takes_no_place_in_the_rate() -> None:
    """Cancelled between its creation slot and its session slot, a create was
    never sent: the next one goes at once, not a creation period later."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        requester = _two_per_ten_seconds(_Scripted({"A": (0.0, None), "B": (0.0, None)}))
        try:
            await _call(requester, "A", create=True)
            await requester.queue.acquire()  # the session's one slot, busy
            waiting = asyncio.create_task(_call(requester, "X", create=True))
            await asyncio.sleep(0.1)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            requester.queue.release()
            started = loop.time()
            await _call(requester, "B", create=True)
            assert loop.time() - started < 1.0
        finally:
            await requester.aclose()

    run_virtual(main)


def test_a_create_sent_back_behind_a_pause_takes_no_place_in_the_rate() -> None:
    """B, granted its creation slot before A's 429 and its session slot inside
    the pause, is sent back unsent: it goes at the pause's end (~1.2 s), not
    a creation period later."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        transport = _Scripted({"A": (0.1, "1"), "B": (0.0, None)})
        requester = _two_per_ten_seconds(transport)
        try:
            started = loop.time()
            a, b = list[Any](
                await asyncio.gather(
                    _call(requester, "A", create=True),
                    _call(requester, "B", create=True),
                    return_exceptions=True,
                )
            )
            assert isinstance(a, RateLimitError)
            assert b == {}
            assert transport.sent["B"] - started < 2.0
        finally:
            await requester.aclose()

    run_virtual(main)


async def _slow_intent(seconds: float) -> None:
    await asyncio.sleep(seconds)


def test_a_create_waiting_out_a_pause_before_sending_also_waits_out_its_lengthening() -> None:
    """B's intent is written inside A's pause; C's 429 (Retry-After 3) then
    lengthens it: B waits to the new end, not only to the one it first saw."""

    async def main() -> None:
        transport = _Scripted({"A": (0.2, "1"), "C": (0.8, "3"), "B": (0.0, None)})
        requester = _requester(transport)
        try:
            outcomes = await asyncio.gather(
                _call(requester, "A", create=True),
                _call(requester, "C", create=True),
                _call(requester, "B", create=True, before_send=lambda: _slow_intent(0.5)),
                return_exceptions=True,
            )
            assert [type(o) for o in outcomes[:2]] == [RateLimitError, RateLimitError]
            assert outcomes[2] == {}
            assert requester.create_queue.budget.pauses == 2  # the first, then its lengthening
            assert transport.sent["B"] >= requester.create_queue.budget.paused_until
        finally:
            await requester.aclose()

    run_virtual(main)


def test_a_create_whose_intent_outlasted_a_whole_pause_goes_at_once() -> None:
    """B's intent takes 3 s, longer than A's whole pause: B goes once it is
    written (it looped on zero-length sleeps forever when only "granted
    before the pause began" was asked)."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        transport = _Scripted({"A": (0.1, "1"), "B": (0.0, None)})
        requester = _requester(transport)
        try:
            started = loop.time()
            both = asyncio.gather(
                _call(requester, "A", create=True),
                _call(requester, "B", create=True, before_send=lambda: _slow_intent(3.0)),
                return_exceptions=True,
            )
            a, b = list[Any](await asyncio.wait_for(both, 10))
            assert isinstance(a, RateLimitError)
            assert b == {}
            assert transport.sent["B"] - started == pytest.approx(3.0, abs=0.05)
        finally:
            await requester.aclose()

    run_virtual(main)
