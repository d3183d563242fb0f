"""The benchmark simulator: a FakeKie in its own process, driven over stdin/stdout.

Not a benchmark: :class:`_common.KieProcess` starts it so that the server's
CPU time and memory are not charged to the client being measured. It can also
be run by hand::

    .venv/bin/python benchmarks/kie_server.py --api-key bench-key
    {"base_url": "http://127.0.0.1:41234", "pid": 12345}
    {"cmd": "add", "prefix": "done", "count": 1000, "low": 0, "high": 0, "seed": 1}
    {"added_at": 81234.5, "count": 1000}

It uses ``record_requests=False`` (only counters are kept), and serves until
its standard input is closed. See :class:`_common.KieProcess` for the commands.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

from _common import API_KEY, completion_offsets, task_ids

from veo_async.testing import FakeKie, TaskScript


class _Connections:
    """Samples how many client connections this process has open.

    FakeKie's own ``max_in_flight`` counts requests being *answered*; it answers
    without awaiting anything, so that count never exceeds 1. Open HTTP/1.1
    connections bound the requests a client can have in flight instead. Counted
    as this process's socket descriptors (``/proc/self/fd``) minus those open
    before any client connected (the listening socket, the loop's self-pipe);
    ``/proc/net/tcp`` would cost ~10 ms a read with many TIME_WAIT entries.
    """

    def __init__(self) -> None:
        self._baseline = self._sockets()
        self.max = 0

    @staticmethod
    def _sockets() -> int:
        count = 0
        try:
            names = os.listdir("/proc/self/fd")
        except OSError:
            return -1
        for name in names:
            try:
                if os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                    count += 1
            except OSError:
                continue  # closed meanwhile
        return count

    def count(self) -> int:
        sockets = self._sockets()
        return -1 if sockets < 0 else max(0, sockets - self._baseline)

    async def sample(self, every: float = 0.02) -> None:
        while True:
            self.max = max(self.max, self.count())
            await asyncio.sleep(every)


async def _serve(api_key: str, host: str) -> None:
    loop = asyncio.get_running_loop()
    async with FakeKie(api_key=api_key, host=host, record_requests=False) as kie:
        conns = _Connections()
        sampler = loop.create_task(conns.sample())
        _say({"base_url": kie.base_url, "pid": os.getpid()})
        try:
            while True:
                line = await loop.run_in_executor(None, sys.stdin.readline)
                if not line:
                    return  # the client closed our stdin: done
                try:
                    _say(_run(kie, conns, json.loads(line)))
                except Exception as exc:  # report, keep serving
                    _say({"error": f"{type(exc).__name__}: {exc}"})
        finally:
            sampler.cancel()


def _run(kie: FakeKie, conns: _Connections, cmd: dict[str, Any]) -> dict[str, Any]:
    name = cmd.get("cmd")
    if name == "add":
        count = int(cmd["count"])
        offsets = completion_offsets(
            count, int(cmd.get("seed", 0)), float(cmd.get("low", 0)), float(cmd.get("high", 0))
        )
        ids = task_ids(str(cmd["prefix"]), count)
        scripts = [
            TaskScript(tid, complete_after=off) for tid, off in zip(ids, offsets, strict=True)
        ]
        kie.add_tasks(scripts)
        return {"added_at": kie.completed_at(ids[0]) - offsets[0], "count": count}
    if name == "stats":
        codes = {str(code): kie.count_status(code) for code in (0, 200, 401, 403, 422, 429, 500)}
        return {
            "total_requests": kie.total_requests,
            "max_in_flight": kie.max_in_flight,
            "codes": {k: v for k, v in codes.items() if v},
            "cpu_s": time.process_time(),
            "max_connections": conns.max,
            "connections": conns.count(),
        }
    if name == "reset":
        kie.reset_counters()
        conns.max = conns.count()
        return {"ok": True}
    raise ValueError(f"unknown command {name!r}")


def _say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main() -> None:
    """Parse the arguments and serve until stdin closes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api-key", default=API_KEY)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    asyncio.run(_serve(args.api_key, args.host))


if __name__ == "__main__":
    main()
