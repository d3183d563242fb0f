"""Every Python example of the README runs as written (so the docs cannot rot).

Full programs run as they are, on the in-process simulator and a virtual clock
(``asyncio.run`` and ``VeoSession`` are pointed there, the text is untouched);
fragments that use a session ``veo`` run inside a coroutine given one; the
pytest example runs under pytest itself (an inner session, in process), in
strict and in auto mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import textwrap
import uuid
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

import veo_async
from veo_async import PollPolicy, RedisStore, TaskFailedError, VeoSession
from veo_async.testing import FakeKie, VirtualClockLoop

from ._redis_server import RedisServer, redis_server

pytest_plugins = ["pytester"]
__all__ = ["redis_server"]  # the fixture, imported for the RedisStore example

README = Path(__file__).resolve().parent.parent / "README.md"
KEY = "test-key"
#: The inner pytest runs (in this process: a child would cost ~1 s of start-up):
#: no cache, and pytest-asyncio's loop scope set, as a project using it sets it
#: (else it warns about the default at start-up).
INNER_PYTEST = ("-p", "no:cacheprovider", "-o", "asyncio_default_fixture_loop_scope=function")


def python_blocks(heading: str) -> list[str]:
    """The ```python blocks under a ``##``/``###`` heading, up to the next heading."""
    text = README.read_text(encoding="utf-8")
    # Two or more hashes: a comment inside a code block has one.
    match = re.search(rf"^##+ {re.escape(heading)}\n(.*?)(?=^##+ |\Z)", text, re.M | re.S)
    assert match is not None, f"no heading {heading!r} in the README"
    blocks = re.findall(r"```python\n(.*?)```", match.group(1), re.S)
    assert blocks, f"no python block under {heading!r}"
    return blocks


def run_virtual(main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run ``main()`` to completion on a fresh virtual-clock loop."""
    loop = VirtualClockLoop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def simulator() -> FakeKie:
    """An in-process simulator with the README's example tasks."""
    kie = FakeKie(api_key=KEY, seed=3, credits=1e6)
    kie.add_task("veo_task_123", complete_after=200)
    for n in range(3):
        kie.add_task(f"veo_task_{n}", complete_after=100 + 50 * n, final_status=1 + (n == 2))
    return kie


@contextlib.contextmanager
def sessions_on(kie: FakeKie, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[VeoSession]]:
    """Make ``VeoSession(...)`` and ``asyncio.run`` of the examples use ``kie`` in
    process on a virtual clock; yields the sessions they made."""
    made: list[VeoSession] = []

    def session(*args: Any, **kwargs: Any) -> VeoSession:
        kwargs.setdefault("transport", kie.transport())
        made.append(VeoSession(*args, **kwargs))
        return made[-1]

    monkeypatch.setenv("KIE_API_KEY", KEY)
    monkeypatch.setattr(veo_async, "VeoSession", session)
    monkeypatch.setattr(asyncio, "run", lambda coro: run_virtual(lambda: coro))
    yield made


def test_quick_start_runs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The quick start creates a task, waits for it and fetches its 1080p video."""
    kie = simulator()
    with sessions_on(kie, monkeypatch) as made:
        exec(python_blocks("Quick start")[0], {})
    printed = capsys.readouterr().out
    assert kie.created == 1
    assert "http" in printed  # the result URLs and the 1080p URL
    assert made
    assert all(session.closed for session in made)


def _run_fragment(code: str, kie: FakeKie, **names: Any) -> dict[str, Any]:
    """Run a fragment that uses ``veo`` inside a coroutine; its locals afterwards."""
    namespace: dict[str, Any] = {
        "asyncio": asyncio, "itertools": itertools, "TaskFailedError": TaskFailedError,
        "PollPolicy": PollPolicy, **names,
    }
    source = "async def fragment(veo):\n" + textwrap.indent(code, "    ")
    source += "\n    return dict(locals())\n"
    exec(source, namespace)

    async def main() -> dict[str, Any]:
        async with VeoSession(KEY, transport=kie.transport()) as veo:
            result: dict[str, Any] = await namespace["fragment"](veo)
            return result

    return run_virtual(main)  # type: ignore[no-any-return]


def test_one_task_fragment_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """The one-task fragment: refresh, wait, await, watch and on_update."""
    local = _run_fragment(python_blocks("One task")[0], simulator())
    assert local["info"].status.name == "SUCCESS"
    assert "SUCCESS" in capsys.readouterr().out


def test_many_tasks_fragment_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """The batch fragment: wait_many with exceptions in place, then as_completed."""
    ids = ["veo_task_0", "veo_task_1", "veo_task_2"]
    local = _run_fragment(python_blocks("Many tasks")[0], simulator(), ids=ids)
    assert len(local["results"]) == 3
    assert isinstance(local["results"][2], TaskFailedError)
    assert "veo_task_2 failed" in capsys.readouterr().out


def test_creating_tasks_fragment_runs() -> None:
    """The creation fragment: generate, extend, 1080p, 4K, credits, download link."""
    kie = simulator()
    local = _run_fragment(python_blocks("Creating tasks")[0], kie)
    assert kie.created == 2  # the generation and its extend (4K is an upgrade)
    assert local["url"].startswith("http")
    assert local["urls"]
    assert all(u.startswith("http") for u in local["urls"])
    assert isinstance(local["balance"], float)
    assert local["link"].startswith("http")


def test_session_block_builds_a_session(monkeypatch: pytest.MonkeyPatch) -> None:
    """The documented constructor, with every default spelled out, is valid."""
    monkeypatch.setenv("KIE_API_KEY", KEY)
    namespace: dict[str, Any] = {}  # the block imports what it uses
    code = python_blocks("The session")[0]
    exec(code.replace("\nVeoSession(", "\nsession = VeoSession("), namespace)
    assert isinstance(namespace["session"], VeoSession)


def test_policy_block_runs() -> None:
    """The offline schedule example gives five delays."""
    namespace: dict[str, Any] = {}  # the block imports what it uses
    code = python_blocks("How polls are scheduled")[0]
    exec(code.replace("list(itertools", "delays = list(itertools"), namespace)
    assert len(namespace["delays"]) == 5
    assert namespace["policy"].first_poll == 60


def test_learned_priors_block_runs() -> None:
    """Carrying learned priors over: after a batch, the block saves them as JSON
    and builds a policy whose priors are the learned ones."""
    code = python_blocks("How polls are scheduled")[1]
    ids = ["veo_task_0", "veo_task_1", "veo_task_2"]
    waited = "await veo.wait_many(ids, return_exceptions=True)\n" + code
    local = _run_fragment(waited, simulator(), ids=ids)
    assert local["learned"]
    model, learned = next(iter(local["learned"].items()))
    assert local["policy"].priors[model] == learned  # JSON keeps a float exactly
    assert set(local["policy"].priors) >= {"veo3", "veo3_fast", "veo3_lite"}


def test_instrumentation_block_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The event-counting example builds a session whose hook counts events."""
    monkeypatch.setenv("KIE_API_KEY", KEY)
    namespace: dict[str, Any] = {}
    exec(python_blocks("Instrumentation")[0], namespace)
    namespace["count"](veo_async.events.SessionPaused(1.0, None, 0.0))
    assert namespace["seen"] == {"SessionPaused": 1}


def test_virtual_clock_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """The in-process, virtual-clock example waits ten virtual minutes."""
    exec(python_blocks("Testing your code with the simulator")[1], {})
    waited = float(capsys.readouterr().out.strip())
    assert 600 <= waited < 700


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_pytest_example_runs_under_pytest(pytester: pytest.Pytester, mode: str) -> None:
    """The fixture example passes as written, in pytest-asyncio's strict and auto modes."""
    pytester.makepyfile(test_example=python_blocks("Testing your code with the simulator")[0])
    result = pytester.runpytest_inprocess(*INNER_PYTEST, "-o", f"asyncio_mode={mode}")
    result.assert_outcomes(passed=1)


def test_virtual_clock_conftest_runs_a_long_test_fast(pytester: pytest.Pytester) -> None:
    """The conftest hook puts a suite on the virtual clock: a 600 s sleep passes at once."""
    pytester.makeconftest(python_blocks("Testing your code with the simulator")[2])
    pytester.makepyfile(
        test_sleep="""
import asyncio, time, pytest

@pytest.mark.asyncio
async def test_sleeps():
    started = time.monotonic()
    await asyncio.sleep(600)
    assert time.monotonic() - started < 60
"""
    )
    result = pytester.runpytest_inprocess(*INNER_PYTEST)
    result.assert_outcomes(passed=1)




def test_durable_tracking_example_runs_twice(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The durable example creates, delivers and acknowledges; run again on the same
    file, it never delivers the acknowledged task again."""
    monkeypatch.chdir(tmp_path)
    kie = simulator()
    delivered: list[list[str]] = []
    for _ in range(2):
        with sessions_on(kie, monkeypatch):
            exec(python_blocks("Durable tracking")[0], {})
        delivered.append(capsys.readouterr().out.split())
    first, second = delivered
    assert first[1] == "SUCCESS"
    assert kie.created == 2  # nothing pending after the first run: the second creates anew
    assert second[0] != first[0]  # the acknowledged task is not delivered again


@pytest.mark.real_time
def test_redis_store_example_runs(
    monkeypatch: pytest.MonkeyPatch,
    redis_server: RedisServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The RedisStore example runs as written (its URL pointed at the test's
    redis-server) and resumes what an earlier session left in its namespace."""
    kie = simulator()
    block = python_blocks("On Redis, for fleets")[0]
    assert "redis://localhost:6379/0" in block
    block = block.replace("redis://localhost:6379/0", redis_server.url)
    namespace = f"veo:readme-{uuid.uuid4().hex}"
    block = block.replace('namespace="veo:worker-1"', f"namespace={namespace!r}")

    async def leave_one_unfinished() -> None:
        kie.add_task("veo_left", complete_after=3600)
        store = RedisStore(redis_server.url, namespace=namespace, lock_timeout=0)
        async with VeoSession(KEY, transport=kie.transport(), store=store) as veo:
            await veo.track(["veo_left"])

    asyncio.run(leave_one_unfinished())
    with sessions_on(kie, monkeypatch):
        exec(block, {})
    assert capsys.readouterr().out.split()[:3] == ["1", "unfinished,", "0"]
