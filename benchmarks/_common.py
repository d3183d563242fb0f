"""Helpers shared by the benchmark scripts (not a benchmark itself).

- :class:`KieProcess`: a :class:`~veo_async.testing.FakeKie` running in a
  separate process (``benchmarks/kie_server.py``), driven over its stdin/stdout,
  so that the simulator's CPU time and memory are not charged to the client.
- Memory probes (current and peak RSS), percentiles, table formatting.
- Writing ``benchmarks/results/<name>.json`` and the ``<name>`` section of
  ``benchmarks/RESULTS.md``.

The scripts are run as files (``python benchmarks/bench_x.py``), which puts
this directory on ``sys.path``; that is how they import this module.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import math
import os
import platform
import random
import re
import resource
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
RESULTS_MD = HERE / "RESULTS.md"
SERVER_SCRIPT = HERE / "kie_server.py"

#: The key the benchmark server expects and the clients send.
API_KEY = "bench-key"


# -- the simulator in its own process ---------------------------------------------------


def completion_offsets(count: int, seed: int, low: float, high: float) -> list[float]:
    """Seconds after adding at which each of ``count`` tasks completes: uniform in [low, high].

    The server and the client both call this with the same arguments, so the
    client knows every ``completed_at`` without shipping 100,000 numbers over a pipe.
    """
    rng = random.Random(seed)
    return [rng.uniform(low, high) for _ in range(count)]


def task_ids(prefix: str, count: int) -> list[str]:
    """The ids the server creates for an ``add`` command: ``veo_<prefix>_<n>``, 40-ish chars."""
    return [f"veo_task_{prefix}_{n:08d}_bench0000000000" for n in range(count)]


class KieProcess:
    """A FakeKie in a child process; ``await kie.command({...})`` drives it.

    Commands (one JSON object per line, answered with one JSON line):

    - ``{"cmd": "add", "prefix": p, "count": n, "low": a, "high": b, "seed": s}``:
      add tasks :func:`task_ids` ``(p, n)`` completing after
      :func:`completion_offsets` ``(n, s, a, b)`` seconds, all with one start
      instant; answers ``{"added_at": <server loop.time()>}``. Both processes'
      loops read ``time.monotonic()``, so the client can compare with its own.
    - ``{"cmd": "stats"}``: ``{"total_requests", "max_in_flight", "codes", "cpu_s",
      "max_connections", "connections"}`` (``cpu_s``: the server process's CPU
      seconds so far; ``max_connections``: the most client connections seen
      open at once, sampled every 20 ms).
    - ``{"cmd": "reset"}``: zero the counters.
    - end of input: the server closes and exits.
    """

    def __init__(self, *, api_key: str = API_KEY) -> None:
        self.api_key = api_key
        self.base_url = ""
        self._proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> KieProcess:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(SERVER_SCRIPT),
            "--api-key",
            self.api_key,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=16 * 1024 * 1024,
        )
        hello = await self._read()
        self.base_url = hello["base_url"]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()

    async def _read(self) -> dict[str, Any]:
        assert self._proc is not None
        assert self._proc.stdout is not None
        line = await self._proc.stdout.readline()
        if not line:
            raise RuntimeError("the benchmark server exited unexpectedly")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"benchmark server: {answer['error']}")
        return answer

    async def command(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Send one command, return its answer."""
        assert self._proc is not None
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps(cmd).encode() + b"\n")
        await self._proc.stdin.drain()
        return await self._read()

    async def add(
        self, prefix: str, count: int, *, low: float = 0.0, high: float = 0.0, seed: int = 0
    ) -> tuple[list[str], list[float]]:
        """Add tasks; return their ids and their ``completed_at`` (monotonic seconds)."""
        answer = await self.command(
            {"cmd": "add", "prefix": prefix, "count": count, "low": low, "high": high, "seed": seed}
        )
        added_at = float(answer["added_at"])
        offsets = completion_offsets(count, seed, low, high)
        return task_ids(prefix, count), [added_at + off for off in offsets]

    async def stats(self) -> dict[str, Any]:
        """The server's counters."""
        return await self.command({"cmd": "stats"})

    async def reset(self) -> None:
        """Zero the server's counters."""
        await self.command({"cmd": "reset"})


# -- measurements -------------------------------------------------------------------------


def rss_bytes() -> int:
    """The current resident set size of this process (Linux ``/proc``; else the peak)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return peak_rss_bytes()


def peak_rss_bytes() -> int:
    """The peak resident set size of this process so far (``ru_maxrss``)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation; nan for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    pos = (len(ordered) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return float(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo))


def median(values: Sequence[float]) -> float:
    """The median; nan for no values."""
    return float(statistics.median(values)) if values else math.nan


# -- output -------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-markdown table (also readable as plain text on a terminal)."""
    cells = [[str(h) for h in headers], *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), sep, *(line(r) for r in cells[1:])])


def _cell(value: object) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def machine_note() -> dict[str, Any]:
    """Where and on what the figures were taken."""
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for raw in f:
                if raw.startswith("model name"):
                    cpu = raw.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=HERE.parent,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "veo_async"],
            cwd=HERE.parent,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        commit, dirty = "", ""
    import aiohttp

    return {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "aiohttp": aiohttp.__version__,
        "commit": (commit + ("+uncommitted veo_async changes" if dirty else "")) or "unknown",
    }


def note_line(note: dict[str, Any]) -> str:
    """The machine note as one markdown line."""
    return (
        f"_{note['date']}; {note['cores']} cores {note['cpu']} (shared, noisy VM); "
        f"Python {note['python']}, aiohttp {note['aiohttp']}; {note['platform']}; "
        f"commit {note['commit']}._"
    )


def write_json(name: str, data: dict[str, Any]) -> Path:
    """Write ``benchmarks/results/<name>.json`` and return its path."""
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


_MD_HEADER = """# Benchmark results

The latest figures of the scripts in this folder; each script rewrites its own
section when it runs (see README.md for what each one measures and how to
rerun it). Raw numbers: `benchmarks/results/<name>.json` (not committed).
"""


def update_results_md(name: str, section: str) -> None:
    """Replace (or append) the ``<name>`` section of ``benchmarks/RESULTS.md``."""
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    block = f"{begin}\n{section.strip()}\n{end}"
    text = RESULTS_MD.read_text() if RESULTS_MD.exists() else _MD_HEADER
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _m: block, text)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    RESULTS_MD.write_text(text)


def first_poll_at_or_after(policy: Any, done: float, seed: int) -> tuple[int, float]:
    """Virtual-time polling of one task: (polls made, time of the detecting poll).

    Polls at the cumulative ``policy.delays(seed=seed)``; the task, finished at
    ``done`` seconds, is detected by the first poll at or after that.
    """
    at = 0.0
    polls = 0
    for delay in policy.delays(seed=seed):
        at += delay
        polls += 1
        if at >= done:
            break
    return polls, at


def publish(name: str, data: dict[str, Any], text: str, *, quick: bool = False) -> None:
    """Save a run: its JSON, and (unless a ``--quick`` smoke run) its RESULTS.md section."""
    if quick:  # a smoke run: keep the real figures
        print(f"\nwrote {write_json(name + '_quick', data)} (RESULTS.md untouched)")
        return
    print(f"\nwrote {write_json(name, data)}")
    update_results_md(name, text)
