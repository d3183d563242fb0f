"""Creating tasks: behaviour no other test pinned (505, the 4K
POSTs' creation budget; a close a transport reports as a TransportError:
see test_requester_edges)."""

from __future__ import annotations

import asyncio

import pytest

from veo_async import (
    APIError,
    HttpRequest,
    RawResponse,
    SubmitUncertainError,
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
