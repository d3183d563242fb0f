"""Running ``veo-async`` from the tests: in process (most tests) or as a child process.

:func:`cli` runs the command line in process, in a worker thread, as
:func:`veo_async.cli.main` would (:func:`~veo_async.cli.run_cli`, its exit
code): its own event loop in that thread, while the test's loop goes on
serving the FakeKie on loopback; standard input, output and error are pipes'
stand-ins (UTF-8 text, not a terminal) and the environment is a child's
(:func:`child_env`). It saves the ~0.3 s of interpreter start and imports a
child costs. :func:`veo_async` starts a real child process, kept where the
process itself is the point: signals and exit codes, ``python -m``, the
console script, the missing extra, the key never in a real process's output.

Both check every run's output for the key (right or wrong) and for tracebacks.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs

from veo_async.cli import run_cli
from veo_async.testing import FakeKie

from .conftest import CHILDREN, child_bytecode_env

KEY = "sk-kie-7f3a9c1e-TOP-secret-d41d8cd9"
WRONG_KEY = "sk-kie-0000-not-the-right-one-5e6f"
#: Polls every 20-50 ms: the real schedule's shape at test speed.
FAST = ["--interval", "0.02", "--poll-cap", "0.05", "--grace", "0.3"]

#: The checkout under test: children import this veo_async, whatever their working
#: directory and whichever copy the console script was installed from.
ROOT = Path(__file__).resolve().parent.parent


@attrs.frozen
class Run:
    """What a finished run of the command line left behind."""

    code: int
    stdout: str
    stderr: str

    def lines(self) -> list[dict[str, Any]]:
        """Standard output parsed as JSON lines."""
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    def by_id(self) -> dict[str, dict[str, Any]]:
        """The JSON lines by task id, checking that no id appears twice."""
        lines = self.lines()
        ids = [line["task_id"] for line in lines]
        assert len(ids) == len(set(ids)), f"an id was reported twice: {ids}"
        return {line["task_id"]: line for line in lines}


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child: this checkout first, no key or URL inherited, wide tables."""
    env = {k: v for k, v in os.environ.items() if k not in ("KIE_API_KEY", "KIE_BASE_URL")}
    path = os.pathsep.join(filter(None, (str(ROOT), env.get("PYTHONPATH"))))
    env.update(COLUMNS="200", PYTHONIOENCODING="utf-8", PYTHONPATH=path, **extra)
    return child_bytecode_env(env)


def assert_clean(run: Run) -> None:
    """No key (right or wrong) and no traceback in anything the CLI printed."""
    for text in (run.stdout, run.stderr):
        assert KEY not in text
        assert WRONG_KEY not in text
        assert "Traceback" not in text


def usage_error_of(argv: list[str], capsys: Any) -> str:
    """Run *argv* in process and return its one stderr line, having checked that
    it is a usage error: exit 2, nothing on stdout, one ``veo-async: error:``
    line, no key and no traceback. (``capsys``: pytest's fixture.)"""
    code = run_cli(argv)
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1, err
    assert err.startswith("veo-async: error: ")
    assert KEY not in err
    assert "Traceback" not in err
    return str(err)


def against(kie: FakeKie, *args: str) -> list[str]:
    """``wait``/``status`` arguments pointing at ``kie``, with the key and a fast policy."""
    return ["--base-url", kie.base_url, "--api-key", KEY, *args]


# -- in process ---------------------------------------------------------------------------

#: One in-process run at a time: standard streams and the environment are the process's.
_ONE_AT_A_TIME = threading.Lock()


def _pipe(raw: io.BytesIO) -> io.TextIOWrapper:
    """A text stream on ``raw`` like a child's piped one: UTF-8, universal newlines,
    not a terminal."""
    return io.TextIOWrapper(raw, encoding="utf-8", write_through=True)


@contextmanager
def _as_a_child(env: dict[str, str]) -> Iterator[None]:
    """The process's environment is ``env`` meanwhile (what :func:`child_env` gives a
    child), and the ``veo_async`` logger is put back as it was after (``--verbose``
    configures it)."""
    logger = logging.getLogger("veo_async")
    saved_logger = (logger.level, list(logger.handlers))
    saved_env = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        logger.setLevel(saved_logger[0])
        logger.handlers[:] = saved_logger[1]


def _run_here(argv: list[str], stdin: str, env: dict[str, str]) -> Run:
    """``run_cli(argv)`` with standard streams and environment like a child's."""
    streams = (sys.stdin, sys.stdout, sys.stderr)
    out, err = io.BytesIO(), io.BytesIO()
    # Held (in ``pipes``) until read: a text wrapper closes its buffer when collected.
    pipes = (_pipe(io.BytesIO(stdin.encode())), _pipe(out), _pipe(err))
    with _ONE_AT_A_TIME, _as_a_child(env):
        sys.stdin, sys.stdout, sys.stderr = pipes
        try:
            code = run_cli(argv)
        finally:
            sys.stdin, sys.stdout, sys.stderr = streams
    return Run(code, out.getvalue().decode(), err.getvalue().decode())


async def cli(*args: str, stdin: str = "", env: dict[str, str] | None = None) -> Run:
    """Run ``veo-async ARGS`` in process to the end (see the module docstring); check
    that it showed no key and no traceback."""
    run = await asyncio.wait_for(
        asyncio.to_thread(_run_here, list(args), stdin, env or child_env()), 30
    )
    assert_clean(run)
    return run


# -- in a child process -------------------------------------------------------------------


def _ctrl_c_as_on_a_terminal() -> None:
    """In the child before it runs: SIGINT's default action. A suite started
    where SIGINT is ignored (a background job of a script, some CI runners)
    would pass that on, and the command keeps an ignored SIGINT on purpose
    (as ``nohup`` wants): the Ctrl-C tests would wait for an exit that never
    comes."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


async def start(
    *args: str, env: dict[str, str] | None = None, command: list[str] | None = None
) -> asyncio.subprocess.Process:
    """Start ``veo-async ARGS`` as a child process with piped standard streams."""
    proc = await asyncio.create_subprocess_exec(
        *(command or [sys.executable, "-m", "veo_async"]),
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env or child_env(),
        preexec_fn=_ctrl_c_as_on_a_terminal,
    )
    CHILDREN.append(proc)  # reaped after the test (fixture reap_children), should it fail or hang
    return proc


async def veo_async(
    *args: str,
    stdin: str = "",
    env: dict[str, str] | None = None,
    command: list[str] | None = None,
) -> Run:
    """Run ``veo-async ARGS`` in a child process to the end; check that it showed no
    key and no traceback."""
    proc = await start(*args, env=env, command=command)
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 30)
    assert proc.returncode is not None
    run = Run(proc.returncode, out.decode(), err.decode())
    assert_clean(run)
    return run


async def read_until(stream: asyncio.StreamReader | None, needle: str) -> str:
    """Read lines from a child's stream until one contains ``needle``; all read so far."""
    assert stream is not None
    seen = ""

    async def read() -> None:
        nonlocal seen
        while needle not in seen:
            line = await stream.readline()
            assert line, f"the CLI ended before printing {needle!r}: {seen}"
            seen += line.decode()

    await asyncio.wait_for(read(), 20)
    return seen
