"""Batch waits at scale: wait_many over 10,000 and 100,000 ids.

What it measures
----------------
For each size N (a fresh child process per size, so that RSS figures are not
polluted by the previous size), against a FakeKie in *another* process:

1. **Memory phase.** N tasks that never complete; ``wait_many`` starts on all
   of them; once every id has been polled once (each handle holds a GENERATING
   record) the client's RSS is read and compared with the RSS just before the
   batch was created (the id list itself already existed). Then the batch is
   cancelled (timed), and the script checks that no task is left behind.
   *Separating the records*: the size of one GENERATING :class:`RecordInfo`
   is measured on its own (tracemalloc over 5,000 records decoded from the very
   body the server sends), and ``overhead per id = RSS delta / N - record``.
   A traced repeat of the same phase (tracemalloc; slow, memory only) lists the
   top allocation sites per id: by default for sizes up to 10,000 ids,
   ``--tracemalloc`` for every size, ``--no-tracemalloc`` for none.
2. **Timing phase.** N tasks completing at uniformly random times in
   [``--low``, ``--high``] seconds (compressed time) under a compressed
   :class:`PollPolicy` (first poll at once, gaps from ``--interval`` growing
   x1.5 to ``--cap``, 10 % jitter), concurrency 64. Reported: wall time (and
   how long after the last completion it ended), requests per id, requests in
   flight at most (client ``veo.stats.max_in_flight`` and server
   ``kie.max_in_flight``; both must be <= concurrency), detection lag (client
   time of learning the outcome minus the task's ``completed_at``) p50/p95/max,
   peak RSS, client and server CPU utilisation and event-loop stall p99 (a
   10 ms ticker's overshoot) to tell whether a run was CPU-bound.

Only public names are used, nothing is patched: the detection time is the
loop time of the first :class:`~veo_async.events.RecordPublished` event with a
terminal status for each id, seen through ``VeoSession(on_event=...)`` (which
also counts the requests started, answered and failed); ``--api as_completed``
times each handle as it is yielded instead. The hook is part of what is
measured (an event object per request, one counter bump each).

``--policy adaptive`` runs the timing phase under the session's default kind
of schedule, an :class:`~veo_async.AdaptivePolicy`, compressed like the fixed
one (priors of the same 5-30 s window, gaps of 0.5-3 s) - a check that the
learned schedule holds up at scale, not a figure comparable with the fixed
policy's.

Why the simulator runs in a separate process: on this 2-core machine a server
in the same event loop would double the loop's work per request (inflating
wall time and lag) and its 100,000 task scripts would be counted in the
client's RSS. Both processes' loops read ``time.monotonic()``, so the
server's ``completed_at`` is directly comparable with the client's clock.

Load: at N=100,000 the schedule asks for far more requests per second than
two cores can serve (N / cap per second once the gaps reach the cap), so that
run is throughput-bound by design: it shows memory, the in-flight bound and
graceful degradation (most-overdue-first) rather than schedule-limited lag.
The table reports the offered and achieved request rates side by side.

Rerun
-----
::

    .venv/bin/python benchmarks/bench_scale.py                 # 10k and 100k, ~4-5 min
    .venv/bin/python benchmarks/bench_scale.py --ids 10000     # one size
    .venv/bin/python benchmarks/bench_scale.py --quick         # 2,000 ids, short window
    .venv/bin/python benchmarks/bench_scale.py --ids 10000 --tracemalloc
    .venv/bin/python benchmarks/bench_scale.py --policy adaptive   # the learned schedule

Writes ``benchmarks/results/scale.json`` and the ``scale`` section of
``benchmarks/RESULTS.md``; a ``--quick`` smoke run writes ``scale_quick.json`` only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import linecache
import math
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import aiohttp
from _common import (
    API_KEY,
    KieProcess,
    completion_offsets,
    first_poll_at_or_after,
    machine_note,
    note_line,
    peak_rss_bytes,
    percentile,
    publish,
    rss_bytes,
    table,
    task_ids,
)

from veo_async import (
    AdaptivePolicy,
    DurationPrior,
    HttpRequest,
    PollPolicy,
    RawResponse,
    RecordInfo,
    VeoSession,
)
from veo_async.events import (
    Event,
    RecordPublished,
    RequestAnswered,
    RequestFailed,
    RequestStarted,
)

NAME = "scale"
CONCURRENCY = 64
RECORD_SAMPLES = 5000
MiB = 1024 * 1024


def policy_for(args: argparse.Namespace) -> PollPolicy:
    """The compressed fixed schedule every figure of this benchmark is taken with."""
    return PollPolicy(
        first_poll=0.0,
        interval=args.interval,
        factor=1.5,
        max_interval=args.cap,
        jitter=0.1,
        timeout=args.timeout,
        not_found_grace=5.0,
    )


def adaptive_for(args: argparse.Namespace) -> AdaptivePolicy:
    """The learned schedule, compressed to the benchmark's window (``--policy adaptive``).

    The simulator's tasks say ``model: veo3_fast``; its prior is the window's
    log-normal fit, and the gaps are the fixed policy's.
    """
    median = (args.low * args.high) ** 0.5
    return AdaptivePolicy(
        timeout=args.timeout,
        not_found_grace=5.0,
        budget_interval=args.cap,
        min_gap=args.interval,
        max_gap=args.cap,
        jitter=0.1,
        early_mass=0.0,
        late_lag=args.cap,
        priors={"veo3_fast": DurationPrior(median=median, sigma=0.5)},
        seed=1,
    )


def schedule_only(policy: PollPolicy, offsets: list[float]) -> tuple[list[int], list[float]]:
    """Polls and lag per task if the schedule alone decided (no latency, no limit).

    The same simulation as ``bench_schedule.py``: polls at the cumulative
    ``policy.delays(seed=i)``, detection at the first poll at or after completion.
    """
    polls: list[int] = []
    lags: list[float] = []
    for i, done in enumerate(offsets):
        n, t = first_poll_at_or_after(policy, done, seed=i)
        polls.append(n)
        lags.append(t - done)
    return polls, lags


async def fetch_body(base_url: str, task_id: str) -> bytes:
    """The exact bytes the server answers for ``task_id`` (plain aiohttp)."""
    headers = {"User-Agent": "veo-async-bench/0.0", "Authorization": f"Bearer {API_KEY}"}
    async with (
        aiohttp.ClientSession() as s,
        s.get(
            base_url + "/api/v1/veo/record-info", params={"taskId": task_id}, headers=headers
        ) as r,
    ):
        return await r.read()


class CannedTransport:
    """A public :class:`veo_async.Transport` that answers every request with one body."""

    def __init__(self, body: bytes) -> None:
        self._answer = RawResponse(200, {"Content-Type": "application/json"}, body)

    async def send(self, request: HttpRequest) -> RawResponse:
        return self._answer

    async def aclose(self) -> None:
        return None


async def record_bytes(body: bytes, task_id: str) -> float:
    """Traced bytes per decoded RecordInfo (kept alive), from one real body.

    Decoded by ``VeoSession.record_info`` over a transport that hands back the
    body at once: a fresh record per call, nothing else kept.
    """
    async with VeoSession(API_KEY, transport=CannedTransport(body)) as veo:
        await veo.record_info(task_id)  # first-call caches out of the count
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        kept: list[RecordInfo] = [await veo.record_info(task_id) for _ in range(RECORD_SAMPLES)]
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
    assert len(kept) == RECORD_SAMPLES
    # The list itself (8 bytes a slot) is not part of a record.
    return (after - before) / RECORD_SAMPLES - 8


class Observer:
    """The ``on_event`` hook of a timed run: request counts and detection times."""

    def __init__(self) -> None:
        #: Loop time of the first terminal record published, per id.
        self.seen: dict[str, float] = {}
        self.started = 0
        self.answered = 0
        self.failed = 0
        self._loop = asyncio.get_running_loop()

    def __call__(self, event: Event) -> None:
        kind = type(event)
        if kind is RequestStarted:
            self.started += 1
        elif kind is RequestAnswered:
            self.answered += 1
        elif kind is RequestFailed:
            self.failed += 1
        elif kind is RecordPublished:
            assert isinstance(event, RecordPublished)
            if event.status.is_terminal and event.task_id not in self.seen:
                self.seen[event.task_id] = self._loop.time()


class LoopStall:
    """A 10 ms ticker; its overshoot says how long the event loop was busy.

    The loop thread's CPU time over each tick tells a stall of ours (the loop
    computing: CPU close to the tick's length) from the machine taking the CPU
    away (another process ran: little CPU); the machine is shared.
    """

    def __init__(self, origin: float, long: float = 0.1) -> None:
        self.overshoots: list[float] = []
        #: (seconds after ``origin`` the stall ended, its length, the loop thread's
        #: CPU share over it) for stalls over ``long``.
        self.long_stalls: list[tuple[float, float, float]] = []
        self._origin = origin
        self._long = long
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start, cpu = loop.time(), time.thread_time()
            await asyncio.sleep(0.01)
            now = loop.time()
            over = now - start - 0.01
            self.overshoots.append(over)
            if over > self._long:
                share = (time.thread_time() - cpu) / (now - start)
                self.long_stalls.append(
                    (round(now - self._origin, 3), round(over, 3), round(share, 2))
                )

    def busy(self, share: float = 0.8) -> list[tuple[float, float, float]]:
        """The long stalls during which the loop thread had the CPU (``share`` of it)."""
        return [stall for stall in self.long_stalls if stall[2] >= share]

    def __enter__(self) -> LoopStall:
        self._task = asyncio.get_running_loop().create_task(self._tick())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()


class RssSampler:
    """Samples the current RSS every ``every`` seconds; keeps the maximum."""

    def __init__(self, every: float = 0.25) -> None:
        self.every = every
        self.max = rss_bytes()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.max = max(self.max, rss_bytes())
            await asyncio.sleep(self.every)

    def __enter__(self) -> RssSampler:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        self.max = max(self.max, rss_bytes())
        if self._task is not None:
            self._task.cancel()


class GcPauses:
    """Times the cyclic garbage collector's runs (``gc.callbacks``), by generation."""

    def __init__(self) -> None:
        self.pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses[info["generation"]].append(time.perf_counter() - self._started)

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def summary(self) -> dict[str, Any]:
        return {
            f"gen{gen}": {
                "count": len(p),
                "total_s": sum(p),
                "max_ms": max(p, default=0.0) * 1e3,
            }
            for gen, p in self.pauses.items()
        }


def _site(frame: tracemalloc.Frame) -> str:
    """``package/module.py:line `code``` of an allocation site (lines move as code changes)."""
    code = linecache.getline(frame.filename, frame.lineno).strip()
    code = (code if len(code) <= 60 else code[:57] + "...").replace("|", "\\|")
    return f"{'/'.join(frame.filename.rsplit('/', 2)[-2:])}:{frame.lineno} `{code}`"


def _own_tasks() -> int:
    """veo_async's tasks still alive (poll loops and batch waits)."""
    return sum(
        1 for t in asyncio.all_tasks() if t.get_name().startswith(("veo_async", "veo-async"))
    )


async def memory_phase(kie: KieProcess, n: int, policy: PollPolicy, traced: bool) -> dict[str, Any]:
    ids, _ = await kie.add("mem", n, low=1e6, high=1e6)
    body = await fetch_body(kie.base_url, ids[0])
    per_record = await record_bytes(body, ids[0])
    result: dict[str, Any] = {"record_bytes": per_record, "record_body_bytes": len(body)}
    async with VeoSession(
        API_KEY, base_url=kie.base_url, concurrency=CONCURRENCY, policy=policy
    ) as veo:
        await veo.record_info(ids[0])  # open the HTTP session before the baseline
        gc.collect()
        if traced:
            tracemalloc.start(1)
        base_rss = rss_bytes()
        base_traced = tracemalloc.get_traced_memory()[0] if traced else 0
        loop = asyncio.get_running_loop()
        started = loop.time()
        batch = loop.create_task(veo.wait_many(ids, timeout=None))
        await asyncio.sleep(0)
        handles = [veo.task(tid) for tid in ids]  # the batch's own handles
        while True:
            await asyncio.sleep(0.2)
            if all(h.record is not None for h in handles):
                break
            if batch.done():
                batch.result()  # raise whatever ended it
        result["all_polled_after_s"] = loop.time() - started
        rss_delta = rss_bytes() - base_rss
        result["rss_delta_bytes"] = rss_delta
        result["rss_per_id_bytes"] = rss_delta / n
        result["overhead_per_id_bytes"] = rss_delta / n - per_record
        result["tasks_alive"] = _own_tasks()
        if traced:
            snap = tracemalloc.take_snapshot()
            result["traced_delta_bytes"] = tracemalloc.get_traced_memory()[0] - base_traced
            result["traced_per_id_bytes"] = result["traced_delta_bytes"] / n
            tracemalloc.stop()
            top = snap.statistics("lineno")[:15]
            result["traced_top"] = [
                {
                    "where": _site(s.traceback[0]),
                    "bytes_per_id": s.size / n,
                    "count": s.count,
                }
                for s in top
            ]
        del handles
        cancel_started = loop.time()
        batch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await batch
        result["cancel_s"] = loop.time() - cancel_started
        await asyncio.sleep(0)
        result["tasks_left_after_cancel"] = _own_tasks()
        result["requests"] = veo.stats.requests
    return result


async def timing_phase(
    kie: KieProcess,
    n: int,
    args: argparse.Namespace,
    policy: PollPolicy | AdaptivePolicy,
    rep: int,
) -> dict[str, Any]:
    observer = Observer()
    async with VeoSession(
        API_KEY,
        base_url=kie.base_url,
        concurrency=CONCURRENCY,
        policy=policy,
        on_event=observer,
    ) as veo:
        await veo.record_info(task_ids("mem", 1)[0])  # open the HTTP session first
        gc.collect()
        base_rss = rss_bytes()
        seed = n + rep
        ids, completed = await kie.add(f"run{rep}", n, low=args.low, high=args.high, seed=seed)
        await kie.reset()
        server0 = await kie.stats()
        requests0 = observer.started
        seen = observer.seen
        seen.clear()  # the warm-up request's record is not part of the run
        loop = asyncio.get_running_loop()
        cpu0, t0 = time.process_time(), loop.time()
        failures = 0
        with RssSampler() as rss, LoopStall(t0) as stall, GcPauses() as gcp:
            if args.api == "wait_many":
                outcomes = await veo.wait_many(ids, return_exceptions=True)
                failures = sum(1 for o in outcomes if isinstance(o, BaseException))
                del outcomes
            else:
                seen = {}  # when each handle is yielded, not when it was published
                async for handle in veo.as_completed(ids):
                    seen[handle.task_id] = loop.time()
                    if handle.error is not None:
                        failures += 1
        wall = loop.time() - t0
        cpu = time.process_time() - cpu0
        server = await kie.stats()
        stats = veo.stats
        offsets = completion_offsets(n, seed, args.low, args.high)
        if isinstance(policy, PollPolicy):
            ideal_polls, ideal_lags = schedule_only(policy, offsets)
        else:  # a learned schedule has no offline replay here
            ideal_polls, ideal_lags = [], []
        lags = [seen[tid] - done for tid, done in zip(ids, completed, strict=True) if tid in seen]
        early = sum(1 for x in lags if x < -0.05)  # seen before completed_at: a clock problem
        return {
            "wall_s": wall,
            "last_completion_s": max(completed) - t0,
            "ended_after_last_completion_s": t0 + wall - max(completed),
            "client_requests": stats.requests,
            "client_failures": stats.failures,
            "requests_started_events": observer.started - requests0,
            "requests_answered_events": observer.answered,
            "requests_failed_events": observer.failed,
            "server_requests": server["total_requests"],
            "requests_per_id": stats.requests / n,
            "achieved_rps": stats.requests / wall,
            "schedule_only_requests_per_id": sum(ideal_polls) / n if ideal_polls else math.nan,
            "offered_rps": sum(ideal_polls) / max(offsets) if ideal_polls else math.nan,
            "schedule_only_lag_p50_s": percentile(ideal_lags, 50),
            "schedule_only_lag_p95_s": percentile(ideal_lags, 95),
            "max_in_flight_client": stats.max_in_flight,
            "max_in_flight_server": server["max_in_flight"],
            "max_connections_server": server["max_connections"],
            "outcome_failures": failures,
            "detected": len(lags),
            "detected_early": early,
            "lag_p50_s": percentile(lags, 50),
            "lag_p95_s": percentile(lags, 95),
            "lag_max_s": max(lags) if lags else float("nan"),
            "lag_mean_s": sum(lags) / len(lags) if lags else float("nan"),
            "client_cpu_util": cpu / wall,
            "client_cpu_us_per_request": cpu / max(1, stats.requests) * 1e6,
            "server_cpu_util": (server["cpu_s"] - server0["cpu_s"]) / wall,
            "loop_stall_p99_ms": percentile(stall.overshoots, 99) * 1e3,
            "loop_stall_max_ms": max(stall.overshoots, default=0.0) * 1e3,
            "loop_stalls_over_100ms": stall.long_stalls,
            "busy_loop_stalls_over_100ms": stall.busy(),
            "busy_loop_stall_max_ms": max((b[1] for b in stall.busy()), default=0.0) * 1e3,
            "gc": gcp.summary(),
            "rss_peak_during_bytes": rss.max,
            "rss_delta_peak_bytes": rss.max - base_rss,
        }


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per key, the median of the numeric values over runs (others: the first run's).

    High-water marks (``max_in_flight*``, ``max_connections*``) take the maximum:
    the bound must hold in every run.
    """
    merged: dict[str, Any] = {}
    for key, value in runs[0].items():
        if key.startswith(("max_in_flight", "max_connections")):
            merged[key] = max(r[key] for r in runs)
        elif key.startswith("rss_"):
            merged[key] = value  # later runs start from the first one's high-water mark
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            merged[key] = statistics.median(r[key] for r in runs)
        else:
            merged[key] = value
    merged["runs"] = len(runs)
    return merged


def _cache_sources() -> None:
    """Read veo_async's sources now, so that allocation sites show the code that ran.

    (Other people may edit the files while a run is in progress.)
    """
    for module in list(sys.modules.values()):
        name = getattr(module, "__name__", "")
        path = getattr(module, "__file__", None)
        if path and (name == "veo_async" or name.startswith("veo_async.")):
            linecache.getlines(path)


async def child(args: argparse.Namespace) -> dict[str, Any]:
    _cache_sources()
    n = args.ids[0]
    policy = policy_for(args)
    timed_policy = adaptive_for(args) if args.policy == "adaptive" else policy
    rss_start = rss_bytes()
    async with KieProcess() as kie:
        print(f"[{n:,} ids] memory phase ...", file=sys.stderr, flush=True)
        memory = await memory_phase(kie, n, policy, traced=False)
        print(f"[{n:,} ids] timing phase ...", file=sys.stderr, flush=True)
        repeat = args.repeat if args.repeat is not None else (3 if n <= 20_000 else 1)
        timings = []
        for rep in range(repeat):
            timings.append(await timing_phase(kie, n, args, timed_policy, rep))
            t = timings[-1]
            print(
                f"[{n:,} ids] run {rep + 1}/{repeat}: wall {t['wall_s']:.1f} s, "
                f"lag p50 {t['lag_p50_s']:.2f} s, p95 {t['lag_p95_s']:.2f} s",
                file=sys.stderr,
                flush=True,
            )
        # Taken before the traced phase: tracemalloc's own bookkeeping is large.
        peak_rss = peak_rss_bytes()
        trace = args.tracemalloc if args.tracemalloc is not None else n <= 10_000
        if trace:
            print(f"[{n:,} ids] traced memory phase ...", file=sys.stderr, flush=True)
        traced = await memory_phase(kie, n, policy, traced=True) if trace else None
    return {
        "ids": n,
        "api": args.api,
        "policy": {
            "kind": args.policy,
            "interval": policy.interval,
            "factor": policy.factor,
            "cap": policy.max_interval,
            "jitter": policy.jitter,
        },
        "window_s": [args.low, args.high],
        "concurrency": CONCURRENCY,
        "rss_at_start_bytes": rss_start,
        "peak_rss_bytes": peak_rss,
        "memory": memory,
        "traced_memory": traced,
        "timing": median_of(timings),
        "timing_runs": timings,
    }


def run_children(args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    for n in args.ids:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out.json"
            cmd = [
                sys.executable,
                __file__,
                "--child",
                str(out),
                "--ids",
                str(n),
                "--low",
                str(args.low),
                "--high",
                str(args.high),
                "--interval",
                str(args.interval),
                "--cap",
                str(args.cap),
                "--timeout",
                str(args.timeout),
                "--api",
                args.api,
                "--policy",
                args.policy,
            ]
            if args.repeat is not None:
                cmd += ["--repeat", str(args.repeat)]
            if args.tracemalloc is not None:
                cmd.append("--tracemalloc" if args.tracemalloc else "--no-tracemalloc")
            started = time.perf_counter()
            subprocess.run(cmd, check=True)
            result = json.loads(out.read_text())
            result["child_runtime_s"] = time.perf_counter() - started
            results.append(result)
            print(f"[{n:,} ids] done in {result['child_runtime_s']:.0f} s", file=sys.stderr)
    return results


def report(runs: list[dict[str, Any]], note: dict[str, Any]) -> str:
    first = runs[0]
    pol = first["policy"]
    mem_rows = []
    for r in runs:
        m = r["memory"]
        mem_rows.append(
            [
                f"{r['ids']:,}",
                m["rss_delta_bytes"] / MiB,
                m["rss_per_id_bytes"] / 1024,
                m["record_bytes"] / 1024,
                m["overhead_per_id_bytes"] / 1024,
                r["peak_rss_bytes"] / MiB,
                m["cancel_s"],
                m["tasks_left_after_cancel"],
            ]
        )
    time_rows = []
    for r in runs:
        t = r["timing"]
        time_rows.append(
            [
                f"{r['ids']:,}",
                t["wall_s"],
                t["ended_after_last_completion_s"],
                f"{t['requests_per_id']:.2f} ({t['schedule_only_requests_per_id']:.2f})",
                f"{t['offered_rps']:,.0f} / {t['achieved_rps']:,.0f}",
                f"{t['max_in_flight_client']} / {t['max_connections_server']}",
                f"{t['lag_p50_s']:.2f} ({t['schedule_only_lag_p50_s']:.2f})",
                f"{t['lag_p95_s']:.2f} ({t['schedule_only_lag_p95_s']:.2f})",
                t["lag_max_s"],
                f"{t['client_cpu_util']:.0%} / {t['server_cpu_util']:.0%}",
                t["client_cpu_us_per_request"],
                f"{t['loop_stall_p99_ms']:.0f} / {t['loop_stall_max_ms']:.0f} / "
                f"{t.get('busy_loop_stall_max_ms', math.nan):.0f}",
            ]
        )
    adaptive = pol.get("kind", "fixed") == "adaptive"
    if adaptive:  # no offline replay of a learned schedule: "(nan)" reads as a bug
        time_rows = [
            [
                cell.replace("(nan)", "(n/a)").replace("nan / ", "n/a / ")
                if isinstance(cell, str)
                else cell
                for cell in row
            ]
            for row in time_rows
        ]
    lines = [
        "## Scale, learned schedule (`bench_scale.py --policy adaptive`)"
        if adaptive
        else "## Scale (`bench_scale.py`)",
        "",
        note_line(note),
        "",
        f"`{first['api']}` with concurrency {first['concurrency']}; simulator in another "
        f"process; tasks complete uniformly in "
        f"{first['window_s'][0]:g}-{first['window_s'][1]:g} s; "
        + (
            f"policy: first poll at once, gaps {pol['interval']:g} s x{pol['factor']:g} up to "
            f"{pol['cap']:g} s, jitter {pol['jitter']:.0%}."
            if not adaptive
            else "timing phase under a compressed `AdaptivePolicy` (prior: log-normal, median "
            f"at the window's geometric mean, sigma 0.5; gaps {pol['interval']:g}-{pol['cap']:g}"
            " s; budget: one poll per cap); memory phase under the fixed policy "
            f"(first poll at once, gaps {pol['interval']:g} s x{pol['factor']:g} up to "
            f"{pol['cap']:g} s)."
        )
        + " One child process per size.",
        "",
        "Memory: RSS once every id holds its (GENERATING) record, minus RSS before the batch. "
        "Record = traced size of one decoded GENERATING `RecordInfo`; "
        "overhead = RSS per id - record (target ≤ ~4 KiB per id at 10,000). Peak RSS: "
        "`ru_maxrss` of the size's child process over the memory and timing phases "
        "(the simulator is not in it). Cancel: time for `wait_many` to unwind when "
        "cancelled with every id in flight; tasks left: veo_async tasks alive afterwards.",
        "",
        table(
            [
                "ids",
                "RSS delta MiB",
                "RSS/id KiB",
                "record KiB",
                "overhead/id KiB",
                "peak RSS MiB",
                "cancel s",
                "tasks left",
            ],
            mem_rows,
        ),
        "",
        "Timing (medians of "
        + ", ".join(f"{r['timing']['runs']} run(s) at {r['ids']:,}" for r in runs)
        + "; in-flight figures are maxima over the runs): "
        "lag = when the client learned the outcome - when the server turned the "
        "record terminal. In brackets: the same figure if the schedule alone decided "
        "(no latency, no request limit; see `bench_schedule.py`). rps = requests per "
        "second the schedule asks for / achieved. In flight: client "
        "`stats.max_in_flight` / open connections seen by the server (both must be ≤ "
        f"{first['concurrency']}; FakeKie's own `max_in_flight` is always 1 here because it "
        "answers without awaiting). CPU: client / server process utilisation.",
        "",
        table(
            [
                "ids",
                "wall s",
                "after last s",
                "req/id",
                "rps offered / achieved",
                "max in flight",
                "lag p50 s",
                "lag p95 s",
                "lag max s",
                "CPU",
                "client CPU µs/req",
                "loop stall p99 / max / busy max ms",
            ],
            time_rows,
        ),
    ]
    for r in runs:
        first = r["timing_runs"][0]
        stalls = first["loop_stalls_over_100ms"]
        busy = first.get("busy_loop_stalls_over_100ms", [])
        shown = ", ".join(
            f"{stall[1] * 1e3:.0f} ms ending at t={stall[0]:g} s"
            + (f" (loop CPU {stall[2]:.0%})" if len(stall) > 2 else "")
            for stall in stalls[:8]
        )
        more = f" and {len(stalls) - 8} more" if len(stalls) > 8 else ""
        gcs = first["gc"]
        g2 = gcs["gen2"]
        gc_total = sum(g["total_s"] for g in gcs.values())
        client_cpu = first["client_cpu_util"] * first["wall_s"]
        lines += [
            "",
            f"{r['ids']:,} ids, first timing run: event-loop stalls over 100 ms: "
            f"{shown or 'none'}{more}; of which with the loop thread on the CPU (≥ 80%: "
            f"our code or the collector, not the machine): {len(busy)}"
            + (f", longest {max(b[1] for b in busy) * 1e3:.0f} ms" if busy else "")
            + ". "
            f"Full (gen 2) garbage collections during the run: {g2['count']}, "
            f"{g2['total_s']:.2f} s in all, longest {g2['max_ms']:.0f} ms; all "
            f"generations: {gc_total:.2f} s = {gc_total / client_cpu:.0%} of the "
            "client's CPU time.",
        ]
    traced = [r for r in runs if r.get("traced_memory")]
    for r in traced:
        tm = r["traced_memory"]
        lines += [
            "",
            f"tracemalloc, {r['ids']:,} ids in flight: {tm['traced_per_id_bytes']:,.0f} "
            "traced bytes per id; top sites:",
            "",
            table(
                ["where", "bytes/id", "blocks"],
                [[s["where"], s["bytes_per_id"], s["count"]] for s in tm["traced_top"]],
            ),
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--low", type=float, default=5.0, help="earliest completion, s")
    parser.add_argument("--high", type=float, default=30.0, help="latest completion, s")
    parser.add_argument("--interval", type=float, default=0.5, help="first gap, s")
    parser.add_argument("--cap", type=float, default=3.0, help="largest gap, s")
    parser.add_argument("--timeout", type=float, default=600.0, help="per-task deadline, s")
    parser.add_argument("--api", choices=["wait_many", "as_completed"], default="wait_many")
    parser.add_argument(
        "--policy",
        choices=["fixed", "adaptive"],
        default="fixed",
        help="the timing phase's schedule: the compressed PollPolicy, or a compressed "
        "AdaptivePolicy (its own RESULTS.md section)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="timing runs per size, medians reported (default 3 up to 20,000 ids, else 1)",
    )
    parser.add_argument(
        "--tracemalloc",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="add a traced memory phase (default: for sizes up to 10,000 ids)",
    )
    parser.add_argument("--quick", action="store_true", help="2,000 ids, 2-8 s window")
    parser.add_argument("--child", metavar="OUT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.ids, args.low, args.high = [2000], 2.0, 8.0
    if args.child:
        result = asyncio.run(child(args))
        Path(args.child).write_text(json.dumps(result, default=str))
        return
    note = machine_note()  # before the runs: the commit that is measured
    runs = run_children(args)
    text = report(runs, note)
    print()
    print(text)
    name = NAME if args.policy == "fixed" else f"{NAME}_{args.policy}"
    data = {"name": name, "machine": note, "runs": runs}
    publish(name, data, text, quick=args.quick)


if __name__ == "__main__":
    main()
