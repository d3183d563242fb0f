"""The ``fake_kie`` pytest fixture: a started :class:`~veo_async.testing.FakeKie`.

The plugin is registered through the ``pytest11`` entry point, so installing
``veo-async`` makes the fixture available in every test suite::

    async def test_wait(fake_kie):
        fake_kie.add_task("t1", complete_after=0.1)
        quick = PollPolicy(first_poll=0, interval=0.05, max_interval=0.2)
        async with VeoSession("test-key", base_url=fake_kie.base_url, policy=quick) as veo:
            await veo.task("t1")

(A quick fixed ``policy``: the default schedule polls a young task again
about 80 s after its first look, and over the fixture's real socket the test
would wait that long.)

pytest loads this module at start-up in every project where ``veo-async`` is
installed, so it must never fail there: pytest-asyncio is optional.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from ._server import FakeKie

__all__ = ["fake_kie"]


# The one shape of decorator we need; both pytest.fixture and
# pytest_asyncio.fixture fit it.
_FixtureDecorator = Callable[[Callable[[], AsyncIterator[FakeKie]]], object]

try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - depends on the environment
    # Without pytest-asyncio a plain fixture still serves plugins that run
    # async fixtures themselves (anyio); under bare pytest the test gets
    # pytest's own clear "async fixtures are not supported" error, instead of
    # every test run breaking when pytest imports this module.
    _as_fixture: _FixtureDecorator = pytest.fixture
else:
    # pytest_asyncio.fixture, not pytest.fixture: it works in "strict" mode too.
    # On the loop pytest-asyncio gives fixtures: it must be the test's (the
    # simulator serves from it), and no scope pinned here would always be.
    _as_fixture = pytest_asyncio.fixture


@_as_fixture
async def fake_kie() -> AsyncIterator[FakeKie]:
    """A started ``FakeKie(api_key="test-key")`` on an ephemeral port.

    Function scope: each test gets a fresh simulator, closed after the test
    even when requests are still hanging on it.
    """
    async with FakeKie(api_key="test-key") as kie:
        yield kie
