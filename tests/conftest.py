"""Shared fixtures: a FakeKie (from the package's own pytest plugin) and a
VeoSession pointed at it with a fast poll policy, so suites run in seconds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from veo_async import PollPolicy, VeoSession
from veo_async.testing import FakeKie

API_KEY = "test-key"

#: Polls every 20-50 ms: real behaviour, test-suite speed.
FAST_POLICY = PollPolicy(
    first_poll=0.0, interval=0.02, factor=1.5, max_interval=0.05, jitter=0.1,
    timeout=10.0, not_found_grace=0.3,
)


@pytest.fixture
def fast_policy() -> PollPolicy:
    """The quick schedule every loopback test uses."""
    return FAST_POLICY


@pytest.fixture
async def veo(fake_kie: FakeKie) -> AsyncIterator[VeoSession]:
    """A VeoSession on the test's FakeKie, closed (and checked for leftovers) after."""
    async with VeoSession(API_KEY, base_url=fake_kie.base_url, policy=FAST_POLICY) as session:
        yield session
    assert session.closed


def leftover_tasks() -> set[asyncio.Task[object]]:
    """veo_async's own tasks (poll loops, batch waits) still running: should be none.

    The simulator's connection handlers are not counted: they belong to the server.
    """
    return {
        t for t in asyncio.all_tasks() if not t.done() and t.get_name().startswith("veo_async")
    }


async def eventually(predicate: Callable[[], bool], *, within: float = 3.0) -> bool:
    """Poll ``predicate`` every 10 ms for up to ``within`` seconds; its last value.

    A bounded loop for conditions that settle a moment after an event (a
    server noticing a dropped connection), never a measure of speed.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() >= deadline:
            return predicate()
        await asyncio.sleep(0.01)
    return True


@pytest.fixture
async def make_veo(
    fake_kie: FakeKie,
) -> AsyncIterator[Callable[..., VeoSession]]:
    """Build extra VeoSessions on the test's FakeKie (key, policy overridable); all closed after."""
    made: list[VeoSession] = []

    def make(api_key: str | None = API_KEY, **kwargs: Any) -> VeoSession:
        kwargs.setdefault("base_url", fake_kie.base_url)
        kwargs.setdefault("policy", FAST_POLICY)
        session = VeoSession(api_key, **kwargs)
        made.append(session)
        return session

    yield make
    for session in made:
        await session.aclose()
