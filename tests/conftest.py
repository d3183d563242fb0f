"""Shared fixtures: a FakeKie and a VeoSession on it with a fast poll policy.

Every async test runs on a virtual clock (:class:`VirtualClockPolicy`), and by
default talks to the simulator in process (``FakeKie.transport()``), so waits
of minutes take milliseconds and no assertion depends on the machine's speed.
Tests marked ``loopback`` get a started simulator on 127.0.0.1 instead and
use real HTTP (the loop then waits in real time: real I/O cannot be skipped).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import hypothesis
import pytest
import pytest_asyncio.plugin

from veo_async import PollPolicy, VeoSession
from veo_async.testing import FakeKie, VirtualClockLoop, VirtualClockPolicy


def _cache_bytecode_outside_the_checkout() -> None:
    """With ``PYTHONDONTWRITEBYTECODE`` set (as on the CI machine), every pytest
    process (each xdist worker) would compile and assertion-rewrite all test
    modules and hypothesis again: ~1.7 s of CPU each. Their bytecode goes to a
    cache under the temp directory instead (``sys.pycache_prefix``), never into
    the checkout; ``VEO_TEST_NO_PYCACHE=1`` keeps the interpreter's choice."""
    if (
        sys.dont_write_bytecode
        and sys.pycache_prefix is None
        and os.environ.get("VEO_TEST_NO_PYCACHE") != "1"
    ):
        sys.pycache_prefix = os.path.join(tempfile.gettempdir(), "veo_async-tests-pycache")
        sys.dont_write_bytecode = False


_cache_bytecode_outside_the_checkout()

# No property test has a deadline: hypothesis's 200 ms per example is a timed
# assertion, and on a loaded machine (a fresh-clone CI run, 4 workers on 2
# cores) one example of test_loads_means_what_json_loads_means took 392 ms
# the first time and 0.13 ms when replayed: a failure of the machine, not of
# the code. What the properties check is behaviour; speed is for benchmarks/.
hypothesis.settings.register_profile("veo_async", deadline=None)
hypothesis.settings.load_profile("veo_async")


def child_bytecode_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` for a child Python that shares the cache above (as is when there is none)."""
    if sys.pycache_prefix is None:
        return env
    shared = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    shared["PYTHONPYCACHEPREFIX"] = sys.pycache_prefix
    return shared

API_KEY = "test-key"

#: Polls every 20-50 ms: real behaviour, test-suite speed.
FAST_POLICY = PollPolicy(
    first_poll=0.0, interval=0.02, factor=1.5, max_interval=0.05, jitter=0.1,
    timeout=10.0, not_found_grace=0.3,
)


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers this suite uses."""
    config.addinivalue_line("markers", "loopback: real HTTP to a FakeKie on 127.0.0.1")
    config.addinivalue_line("markers", "real_time: a real event loop clock (subprocesses)")


if hasattr(pytest_asyncio.plugin, "PytestAsyncioSpecs"):  # pytest-asyncio >= 1.5

    @pytest.hookimpl(optionalhook=True)
    def pytest_asyncio_loop_factories(
        config: pytest.Config, item: pytest.Item
    ) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
        """Every test's event loop runs on a virtual clock (see the module docstring),
        but those marked ``real_time`` (subprocesses, threads: waits that are real)."""
        if item.get_closest_marker("real_time") is not None:
            return {"real_time": asyncio.new_event_loop}
        return {"virtual_clock": VirtualClockLoop}

else:  # older pytest-asyncio: the same through its policy fixture

    @pytest.fixture(scope="session")
    def event_loop_policy() -> VirtualClockPolicy:
        """Every test's event loop runs on a virtual clock (see the module docstring)."""
        return VirtualClockPolicy()


@pytest.fixture(autouse=True)
def _veo_async_logger_as_it_was() -> Iterator[None]:
    """The ``veo_async`` logger's filters, handlers and level as before each test:
    a command run in process (click's runner) configures the logger as its
    process would, and that must not hide later tests' records from caplog."""
    logger = logging.getLogger("veo_async")
    filters, handlers, level = logger.filters[:], logger.handlers[:], logger.level
    yield
    logger.filters[:], logger.handlers[:] = filters, handlers
    logger.setLevel(level)


@pytest.fixture
async def fake_kie(request: pytest.FixtureRequest) -> AsyncIterator[FakeKie]:
    """The test's simulator: in process, or started on loopback for ``loopback`` tests."""
    kie = FakeKie(api_key=API_KEY)
    if request.node.get_closest_marker("loopback") is not None:
        async with kie:
            yield kie
    else:
        yield kie
        await kie.close()


def session_on(kie: FakeKie, api_key: str | None = API_KEY, **kwargs: Any) -> VeoSession:
    """A VeoSession on ``kie``: over HTTP if it is started, else in process."""
    kwargs.setdefault("policy", FAST_POLICY)
    if kie.started:
        kwargs.setdefault("base_url", kie.base_url)
    elif "transport" not in kwargs and "base_url" not in kwargs:
        timeout = kwargs.get("request_timeout", 30.0)
        kwargs["transport"] = kie.transport(request_timeout=timeout)
    return VeoSession(api_key, **kwargs)


@pytest.fixture
def fast_policy() -> PollPolicy:
    """The quick schedule every loopback test uses."""
    return FAST_POLICY


@pytest.fixture
async def veo(fake_kie: FakeKie) -> AsyncIterator[VeoSession]:
    """A VeoSession on the test's FakeKie, closed (and checked for leftovers) after."""
    async with session_on(fake_kie) as session:
        yield session
    assert session.closed


def leftover_tasks() -> set[asyncio.Task[object]]:
    """veo_async's own tasks (poll loops, batch waits) still running: should be none.

    The simulator's connection handlers are not counted: they belong to the server.
    """
    return {
        t for t in asyncio.all_tasks() if not t.done() and t.get_name().startswith("veo_async")
    }


async def deadline_letting_go(*, step: float = 0.0, tries: int = 1_000_000) -> None:
    """Return in the loop step in which a batch's deadline is letting go of
    its runs (its task is running), looking every ``step`` seconds; fail if
    it has not begun after ``tries`` looks."""
    for _ in range(tries):
        if any(task.get_name() == "veo_async batch deadline" for task in leftover_tasks()):
            return
        await asyncio.sleep(step)
    pytest.fail("the deadline never began letting go")


def on_time(actual: Sequence[float], expected: Sequence[float], late: float = 0.3) -> bool:
    """Whether each time of ``actual`` is its ``expected`` one, never early and
    less than ``late`` seconds late: the virtual clock carries the real time
    the loop spends working, which a loaded machine stretches (a poll's gap is
    counted from the one before, so that lateness adds up along a schedule)."""
    return len(actual) == len(expected) and all(
        want - 1e-6 <= got < want + late for got, want in zip(actual, expected, strict=True)
    )


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
        session = session_on(fake_kie, api_key, **kwargs)
        made.append(session)
        return session

    yield make
    for session in made:
        await session.aclose()


#: Child processes started by the running test (CLI runs): reaped after it.
CHILDREN: list[asyncio.subprocess.Process] = []


@pytest.fixture
async def reap_children() -> AsyncIterator[None]:
    """Kill whatever child a failing (or hung) test left running (for tests that
    start children through ``tests._cli.start``)."""
    yield
    while CHILDREN:
        proc = CHILDREN.pop()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
