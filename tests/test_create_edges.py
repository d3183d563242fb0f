"""Creating tasks: behaviour no other test pinned (505, a
close that a transport reports as a TransportError, the 4K POSTs'
creation budget)."""

from __future__ import annotations

import asyncio

import pytest

from veo_async import (
    APIError,
    HttpRequest,
    RawResponse,
    SubmitUncertainError,
    TransportError,
    VeoSession,
)
from veo_async.testing import FakeKie, Fault

from ._virtual import run_virtual
from .conftest import API_KEY
from .test_create import GENERATE, in_process, requests_to

UHD = "/api/v1/veo/get-4k-video"


def test_a_505_feature_disabled_is_a_rejection_not_uncertain() -> None:
    """505 ("feature disabled") is a final answer, like 501: the create
    raises its APIError at once, not SubmitUncertainError, and is not resent."""

    async def body(kie: FakeKie, veo: VeoSession) -> None:
        kie.inject_create(Fault.body_code(505, "feature disabled"))
        with pytest.raises(APIError) as caught:
            await veo.generate("a cat")
        assert not isinstance(caught.value, SubmitUncertainError)
        assert caught.value.code == 505
        assert len(requests_to(kie, GENERATE)) == 1

    in_process(body)


class _AbortedOnClose:
    """A user's Transport that reports a request cut by the session's close
    as a TransportError (the connection was pulled), as aiohttp does when its
    connector closes under a request."""

    def __init__(self, kie: FakeKie) -> None:
        self.inner = kie.transport()

    async def send(self, request: HttpRequest) -> RawResponse:
        """The inner answer; a cancellation becomes a TransportError (sent)."""
        try:
            return await self.inner.send(request)
        except asyncio.CancelledError:
            raise TransportError("connection aborted", sent=True) from None

    async def aclose(self) -> None:
        """Close the inner transport."""
        await self.inner.aclose()


def test_a_create_cut_by_the_close_as_a_transport_error_is_uncertain() -> None:
    """A create in flight when the session closes, whose transport reports
    the close as a TransportError: it may have gone through, so
    SubmitUncertainError, not SessionClosedError (which tells the caller,
    and submit_recorded, that nothing was created)."""

    async def main() -> None:
        kie = FakeKie()
        kie.inject_create(Fault.slow(10))
        veo = VeoSession(API_KEY, transport=_AbortedOnClose(kie))
        async with veo:
            create = asyncio.create_task(veo.generate("a cat"))
            await asyncio.sleep(1)
            assert not create.done()
        error = (await asyncio.gather(create, return_exceptions=True))[0]
        assert type(error) is SubmitUncertainError, error
        await kie.close()

    run_virtual(main)


class _First4kRateLimited:
    """Forwards to an in-process FakeKie, but answers the first 4K POST with
    an HTTP 429 (Retry-After 30 s)."""

    def __init__(self, kie: FakeKie) -> None:
        self.inner = kie.transport()
        self.limited = False

    async def send(self, request: HttpRequest) -> RawResponse:
        if request.path == UHD and not self.limited:
            self.limited = True
            body = b'{"code": 429, "msg": "too many requests", "data": null}'
            return RawResponse(429, {"Retry-After": "30"}, body)
        return await self.inner.send(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_a_429_on_a_4k_request_pauses_creating_only() -> None:
    """4K POSTs go through the creation budget (they are counted as creates):
    a 429 to one pauses creating, not the polling of every other task."""

    async def main() -> None:
        kie = FakeKie(uhd_delay=60.0, credits=1000.0)
        kie.add_task("veo_task_a", complete_after=0.0)
        async with VeoSession(API_KEY, transport=_First4kRateLimited(kie)) as veo:
            fetch = asyncio.create_task(veo.task("veo_task_a").get_4k())
            await asyncio.sleep(5.0)
            stats = veo.stats
            assert stats.create_rate_limited == 1
            assert stats.paused_for == 0.0
            assert stats.create_paused_for > 0.0
            await fetch
            # Every 4K POST counts as a create: the one the 429 refused too.
            assert veo.stats.creates == len(requests_to(kie, UHD)) + 1
        await kie.close()

    run_virtual(main)
