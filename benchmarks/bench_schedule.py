"""Poll-schedule efficiency, offline: requests per task vs detection lag, against the limit.

What it measures
----------------
Tasks arrive one every ``--spacing`` seconds (2 s) in file order, as a
service creates them, and each finishes (succeeds or fails) a given number of
seconds after its creation. Every policy polls every task from its creation in
*virtual time* (no event loop, no I/O, no request latency); a task is detected
by the first poll at or after it finished. Per policy:

- requests per task (mean) - the cost;
- detection lag = detecting poll - finish: mean, p50, p95;
- fast-failure lag: the mean lag of failures that end within 60 s.

Policies: the learning schedule (``AdaptivePolicy()``, the new default); the
old default ``PollPolicy()`` (3 s x1.5 to 30 s, first poll at once); fixed
30 s (the Veo docs' advice: polls at 30, 60, 90 s ...); fixed 5 s; and
**the limit**: the best schedule possible given the task's model and the
file's exact distribution of finish times per model - a dynamic program over
poll times (1 s grid) minimising mean lag + lam x requests, with one lam for
all models chosen so the requests per task equal fixed 30 s's (between two
solutions, their mixture). No poller can beat it: "not done yet at this age"
is all a poll can learn. Made for the very tasks measured, it is optimistic:
it may place polls just after clusters that chance put in this sample. So
the built-in workloads also get **the limit of the generating distribution**:
the same program solved for 100,000 other draws of the workload and measured
on its tasks - what a poller that knew the distribution (not the sample)
could expect. A ``--durations`` file has no generator: its limit is the one
on its own tasks, and its **estimated generating distribution** stands in
for the other (the program solved for 100,000 draws of the file smoothed,
see ``smoothed_draws``: 0.95-1.03x the true generating distribution's limit
over 13 of the survey's workloads, where the file's own is 0.62-0.94x).
The table shows it as a row of its own; ``--json`` prints one object per
policy the issue names (the new default, the old default, fixed 30 s,
fixed 5 s, the limit) and puts it on the limit's object, as
``generating_limit``.

No peeking: the learning schedule starts from its documented priors and only
learns what a session would: a task's generation time (per model, as from a
record's ``completeTime - createTime``) once one of its polls has detected it,
and, from each poll that finds a task still running, that it was running at
that age; its decisions are made in virtual-time order over all tasks in
flight.

Workloads
---------
``--durations FILE``: one task per line, ``model seconds [outcome]`` (outcome
``success`` or ``failed``, absent = success; the service's status names such
as ``GENERATE_FAILED`` are understood too; blanks, tabs or commas between
fields, which may be quoted; blank lines, ``#`` comments and a header line
starting with ``model`` ignored; model names in any case, read as the
service writes them, in lower case; at most 14 days a render). Without
it, the built-in workloads (seeded, 10,000 tasks each):

- ``fast``: 90 % veo3_fast (log-normal, median 150 s, sigma 0.3), 10 % veo3
  (median 300 s, sigma 0.3);
- ``quality``: 85 % veo3, 15 % veo3_fast;
- ``mix``: 60 % veo3_fast, 35 % veo3, 5 % early failures (uniform 5-40 s,
  either model); 3 % of the renders take 2-3x longer (extends, 4K).

``--extra`` adds invented ones: ``lite`` (veo3_lite only, median 100 s, sigma
0.25), ``tail`` (veo3_fast with 15 % of renders 2-4x longer), ``failures20``
(veo3 with 20 % failures, half early, half at 60-400 s) and ``unknown`` (a
model name with no prior, median 420 s, sigma 0.2).

Rerun
-----
::

    .venv/bin/python benchmarks/bench_schedule.py            # ~10-20 s; writes RESULTS.md
    .venv/bin/python benchmarks/bench_schedule.py --extra
    .venv/bin/python benchmarks/bench_schedule.py --durations times.txt --json

The built-in run writes ``benchmarks/results/schedule.json`` and the
``schedule`` section of ``benchmarks/RESULTS.md``; ``--durations`` only prints.
"""

from __future__ import annotations

import argparse
import bisect
import codecs
import heapq
import json
import math
import random
import statistics
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from _common import first_poll_at_or_after, machine_note, note_line, percentile, publish, table

from veo_async import PollPolicy
from veo_async._schedule import REPLAN_GAIN, AdaptivePolicy, optimal_polls

NAME = "schedule"
FAST_FAILURE_S = 60.0
FIXED30 = PollPolicy(first_poll=30, interval=30, factor=1, max_interval=30, jitter=0)
LIMIT_STEP = 1.0
# The limit's program: its horizon (see _limit_horizon) and longest gap, in
# seconds (a gap of 5 minutes is already past any use; a longer one only
# costs time to search for).
LIMIT_TAIL_Q = 0.995
LIMIT_MIN_HORIZON = 600.0
LIMIT_MAX_HORIZON = 4 * 3600.0
LIMIT_GAP_CAP = 300.0
LIMIT = "limit (optimal, knows the distribution)"
GENERATING_LIMIT = "limit (optimal, knows the generating distribution)"
#: A file's stand-in for GENERATING_LIMIT (see smoothed_draws).
ESTIMATED_LIMIT = "limit (optimal, knows the estimated generating distribution)"
#: Draws of a built-in workload's generator that stand for its distribution.
GENERATING_DRAWS = 100_000
#: Added to a workload's seed for those draws: another sample of its distribution.
GENERATING_SEED_SHIFT = 7919
#: The issue's goal in its own terms: a mean lag of 0.7x fixed 30 s's is "within
#: 1.2x of the limit" on the service's mix. Where the limit itself is near 0.7x
#: (a few hundred renders with 10 % early failures), that slack is the fair bound.
LIMIT_SLACK = 1.2


class Task(NamedTuple):
    model: str
    seconds: float
    failed: bool


# -- workloads ----------------------------------------------------------------------------


def _render(rng: random.Random, median: float, sigma: float) -> float:
    return rng.lognormvariate(math.log(median), sigma)


def _workload(n: int, seed: int, draw: Callable[[random.Random], Task]) -> list[Task]:
    rng = random.Random(seed)
    return [draw(rng) for _ in range(n)]


def _fast(rng: random.Random) -> Task:
    if rng.random() < 0.9:
        return Task("veo3_fast", _render(rng, 150, 0.3), False)
    return Task("veo3", _render(rng, 300, 0.3), False)


def _quality(rng: random.Random) -> Task:
    if rng.random() < 0.85:
        return Task("veo3", _render(rng, 300, 0.3), False)
    return Task("veo3_fast", _render(rng, 150, 0.3), False)


def _mix(rng: random.Random) -> Task:
    model = "veo3_fast" if rng.random() < 0.63 else "veo3"
    if rng.random() < 0.05:
        return Task(model, rng.uniform(5, 40), True)
    seconds = _render(rng, 150 if model == "veo3_fast" else 300, 0.3)
    if rng.random() < 0.03:
        seconds *= rng.uniform(2, 3)
    return Task(model, seconds, False)


def _lite(rng: random.Random) -> Task:
    return Task("veo3_lite", _render(rng, 100, 0.25), False)


def _tail(rng: random.Random) -> Task:
    seconds = _render(rng, 150, 0.3)
    return Task("veo3_fast", seconds * (rng.uniform(2, 4) if rng.random() < 0.15 else 1), False)


def _failures20(rng: random.Random) -> Task:
    kind = rng.random()
    if kind < 0.10:
        return Task("veo3", rng.uniform(5, 40), True)
    if kind < 0.20:
        return Task("veo3", rng.uniform(60, 400), True)
    return Task("veo3", _render(rng, 300, 0.3), False)


def _unknown(rng: random.Random) -> Task:
    return Task("veo4_preview", _render(rng, 420, 0.2), False)


BUILT_IN: dict[str, Callable[[random.Random], Task]] = {
    "fast": _fast,
    "quality": _quality,
    "mix": _mix,
}
EXTRA: dict[str, Callable[[random.Random], Task]] = {
    "lite": _lite,
    "tail": _tail,
    "failures20": _failures20,
    "unknown": _unknown,
}


def smoothed_draws(tasks: Sequence[Task], n: int, seed: int) -> list[Task]:
    """``n`` draws of the distribution ``tasks`` were drawn from, estimated by
    a smoothed bootstrap: a task of the file picked at random, its seconds
    moved by a log-normal factor whose width is Silverman's bandwidth of
    its kind's log-seconds (its model, success or failure). Seeded.

    A file's own tasks, as a distribution, hold the clusters chance put in
    that sample, and the limit made for them places polls just after those:
    over 13 of survey_schedule.py's workloads (300-3,000 tasks) its lag was
    0.62-0.94x that of the limit of the distribution they were drawn from;
    the limit made for the smoothed draws, 0.95-1.03x.
    """
    kinds: dict[tuple[str, bool], list[float]] = {}
    for task in tasks:
        kinds.setdefault((task.model, task.failed), []).append(task.seconds)
    width: dict[tuple[str, bool], float] = {}
    for kind, seconds in kinds.items():
        logs = sorted(math.log(s) for s in seconds if s > 0)
        if len(logs) < 2:
            width[kind] = 0.0
            continue
        count = len(logs)
        spread = statistics.pstdev(logs)
        quartiles = logs[(3 * count) // 4] - logs[count // 4]
        if quartiles > 0:
            spread = min(spread, quartiles / 1.34)
        width[kind] = 0.9 * spread * count**-0.2
    rng = random.Random(seed)
    draws = []
    for _ in range(n):
        task = tasks[rng.randrange(len(tasks))]
        factor = math.exp(width[task.model, task.failed] * rng.gauss(0.0, 1.0))
        draws.append(task._replace(seconds=min(_LONGEST, task.seconds * factor)))
    return draws


# Outcome words accepted in a durations file, besides success / failed: the
# service's own status names and common spellings.
_SUCCESS_WORDS = frozenset({"success", "succeeded", "ok", "done"})
_FAILED_WORDS = frozenset(
    {"failed", "fail", "failure", "error", "generate_failed", "create_task_failed"}
)


# The longest render a file may hold: Kie keeps a task's record 14 days.
_LONGEST = 14 * 86_400.0

# A first line starting with one of these is a header ("model seconds outcome",
# "model,duration_s,status"...), whatever the other columns are called.
_HEADER_WORDS = frozenset({"model", "models", "model_name", "name"})


def _is_header(parts: list[str]) -> bool:
    """Whether the first line's fields name columns: it starts with ``model``
    (or ``name``...), or neither its model nor its seconds column holds a
    digit ("task_model,duration_s,status", "model_id seconds"; "veo3 soon"
    is a task with bad seconds): a header, however an export calls them."""
    if parts[0].lower() in _HEADER_WORDS:
        return True
    return len(parts) in (2, 3) and not any(char.isdigit() for char in parts[0] + parts[1])


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """The file's lines, numbered from 1, as text: UTF-8 (a BOM, as Windows
    tools write, is dropped), or UTF-16 with its BOM. A comment is skipped
    whatever its bytes; a line of data that is not UTF-8 is refused by number."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SystemExit(f"{path}: cannot read it: {exc}") from None
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            yield from enumerate(data.decode("utf-16").splitlines(), 1)
        except UnicodeDecodeError:
            raise SystemExit(f"{path}: cannot read it: not UTF-16 text after its BOM") from None
        return
    data = data.removeprefix(codecs.BOM_UTF8)
    for number, line in enumerate(data.splitlines(), 1):
        # The comment goes first ("#" is never part of a UTF-8 sequence).
        before_comment = line.split(b"#", 1)[0]
        try:
            yield number, before_comment.decode("utf-8")
        except UnicodeDecodeError:
            raise SystemExit(f"{path}:{number}: not UTF-8 text: {line!r}") from None


def read_durations(path: Path) -> list[Task]:
    """Parse a ``model seconds [outcome]`` file (see the module doc).

    Fields are separated by blanks or commas (and may be quoted); a first
    line starting with ``model`` (a header, whatever its other columns are
    called) is skipped. Anything else that is not a task is
    refused with the file, the line and what is wrong.
    """
    tasks: list[Task] = []
    header_seen = False
    for number, raw in _lines(path):
        line = raw.split("#", 1)[0].replace(",", " ").strip()
        if not line:
            continue
        parts = [part.strip("\"'") for part in line.split()]  # CSV may quote fields
        if not tasks and not header_seen and _is_header(parts):
            header_seen = True
            continue  # a header: "model seconds", "task_model,duration_s,status", ...
        if len(parts) not in (2, 3):
            raise SystemExit(f"{path}:{number}: expected 'model seconds [outcome]', got {raw!r}")
        outcome = parts[2].lower() if len(parts) == 3 else "success"
        if outcome not in _SUCCESS_WORDS | _FAILED_WORDS:
            if parts[2].isdigit() and "," in raw:
                raise SystemExit(
                    f"{path}:{number}: seconds must be a number written with a '.' "
                    f"(a ',' separates fields), got {raw.strip()!r}"
                )
            raise SystemExit(
                f"{path}:{number}: outcome must be success or failed, not {parts[2]!r}"
            )
        try:
            seconds = float(parts[1])
        except ValueError:
            raise SystemExit(
                f"{path}:{number}: seconds must be a number, not {parts[1]!r}"
            ) from None
        if not math.isfinite(seconds) or seconds < 0:
            raise SystemExit(f"{path}:{number}: seconds must be finite and >= 0, not {parts[1]!r}")
        if seconds > _LONGEST:
            # Every policy is simulated poll by poll: a render of 1e9 s ran for
            # minutes (fixed 5 s polling alone), 1e300 without end.
            raise SystemExit(
                f"{path}:{number}: seconds must be at most {_LONGEST:.0f} (14 days: Kie"
                f" keeps a task's record that long), not {parts[1]!r}"
            )
        # Model names as the service writes them (lower case): "VEO3" is veo3.
        tasks.append(Task(parts[0].lower(), seconds, outcome in _FAILED_WORDS))
    if not tasks:
        raise SystemExit(f"{path}: no tasks")
    return tasks


# -- simulations --------------------------------------------------------------------------


def simulate_fixed(policy: PollPolicy, tasks: Sequence[Task]) -> tuple[list[int], list[float]]:
    """Requests and lag per task for a fixed :class:`PollPolicy` (polls from creation)."""
    requests, lags = [], []
    for i, task in enumerate(tasks):
        n, at = first_poll_at_or_after(policy, task.seconds, seed=i)
        requests.append(n)
        lags.append(at - task.seconds)
    return requests, lags


def simulate_adaptive(
    policy: AdaptivePolicy, tasks: Sequence[Task], spacing: float, seed: int
) -> tuple[list[int], list[float]]:
    """Requests and lag per task for the learning schedule, in virtual-time order.

    One event queue over every task in flight: each poll either detects its
    task (whose generation time the learner then observes) or asks the
    schedule for the next delay at the task's current age. When a model's
    table moves (:meth:`AdaptiveSchedule.revisions`), the polls of its tasks
    already planned are planned again, and brought forward where that is
    sooner, as a session does (see ``Pacer``).
    """
    schedule = policy.schedule()
    learner = schedule.learner
    rng = random.Random(seed)
    requests = [0] * len(tasks)
    lags = [0.0] * len(tasks)
    running_until = [0.0] * len(tasks)  # the age each task was last seen running
    due = [math.inf] * len(tasks)  # when each task's next poll is planned
    waiting: dict[str | None, set[int]] = {}  # tasks with a poll planned, by table
    table_of: list[str | None] = [None] * len(tasks)
    revisions: dict[str | None, int] = {}
    explorer = [False] * len(tasks)  # see AdaptiveSchedule.explores
    # (time, task, is a poll): a creation asks for the first delay at that moment.
    queue = [(i * spacing, i, False) for i in range(len(tasks))]
    heapq.heapify(queue)

    def plan(i: int, now: float, delay: float) -> None:
        # The delay was asked of the tables as they are now: if asking moved
        # one, this task is planned on it already (the others again, below).
        replan_moved(now)
        due[i] = now + delay
        table_of[i] = schedule.table_key(tasks[i].model)
        waiting.setdefault(table_of[i], set()).add(i)
        heapq.heappush(queue, (due[i], i, True))

    def replan_moved(now: float) -> None:
        for key in schedule.moves_since(revisions):
            replan(key, now)

    def replan(key: str | None, now: float) -> None:
        for j in sorted(waiting.get(key, ())):
            age = now - j * spacing
            delay = schedule.next_delay(
                model=tasks[j].model,
                age=age,
                polls=requests[j],
                rng=rng,
                asked_at=min(age, running_until[j]),
                explorer=explorer[j],
            )
            if now + delay < due[j] - REPLAN_GAIN:
                due[j] = now + delay
                heapq.heappush(queue, (due[j], j, True))

    while queue:
        now, i, is_poll = heapq.heappop(queue)
        task = tasks[i]
        age = now - i * spacing
        if not is_poll:
            learner.created(task.model)  # what the session creates, it knows the model of
            explorer[i] = schedule.explores(0.0)
            delay = schedule.next_delay(
                model=task.model, age=0.0, polls=0, rng=rng, explorer=explorer[i]
            )
            plan(i, now, delay)
            continue
        if now != due[i]:
            continue  # planned again, sooner: this was its old time
        requests[i] += 1
        waiting[table_of[i]].discard(i)
        if age >= task.seconds:
            lags[i] = age - task.seconds
            due[i] = math.inf
            learner.observe(
                task.model,
                task.seconds,
                failed=task.failed,
                running_until=running_until[i],
                polls=requests[i],
                fixed_polls=max(1, math.ceil(task.seconds / policy.budget_interval)),
                announced=True,
            )
            schedule.rebuild_if_due(task.model)  # as the session does on a finish
            replan_moved(now)
            continue
        learner.survived(task.model, running_until[i], age, announced=True)
        running_until[i] = age
        plan(
            i,
            now,
            schedule.next_delay(
                model=task.model, age=age, polls=requests[i], rng=rng, explorer=explorer[i]
            ),
        )
    return requests, lags


# -- the limit ----------------------------------------------------------------------------


def _cumulative(times: Sequence[float], n: int) -> tuple[list[float], list[float]]:
    done, done_time = [0.0] * (n + 1), [0.0] * (n + 1)
    share = 1.0 / len(times)
    for t in times:
        # A render of 0 s (a task failing as it is created) is still found by
        # a poll: at the first grid point, not at index 0 (done, and free).
        j = min(n, max(1, math.ceil(t / LIMIT_STEP)))
        done[j] += share
        done_time[j] += t * share
    for j in range(1, n + 1):
        done[j] += done[j - 1]
        done_time[j] += done_time[j - 1]
    done[n] = 1.0
    return done, done_time


def _polls_of(best: list[int]) -> list[float]:
    polls, i = [], 0
    while i < len(best) - 1:
        i = best[i]
        polls.append(i * LIMIT_STEP)
    return polls


def _limit_horizon(tasks: Sequence[Task], source: Sequence[Task]) -> float:
    """Where the limit's program stops: the longest task, or twice the 99.5th
    percentile (at least 10 minutes) if that comes first, and never past
    LIMIT_MAX_HORIZON (4 h). Past it, polls go every 30 s: a rare task of
    hours would otherwise make the program (its grid is one second) run for
    minutes, for a tail that weighs nothing in the mean lag (in a file of a
    few tasks the 99.5th percentile is the longest: one render of a day took
    97 s, one of 14 days did not end)."""
    seconds = sorted(t.seconds for t in source)
    high = seconds[int(LIMIT_TAIL_Q * (len(seconds) - 1))]
    longest = max(max(t.seconds for t in tasks), seconds[-1])
    return min(longest, max(LIMIT_MIN_HORIZON, 2.0 * high), LIMIT_MAX_HORIZON)


def limit(
    tasks: Sequence[Task], budget: float, known: Sequence[Task] | None = None
) -> tuple[float, list[float], int]:
    """The optimal per-model schedules at ``budget`` requests per task.

    The schedules are made for the distribution of ``known`` (by default the
    very ``tasks`` measured) and measured on ``tasks``. Returns (requests per
    task, lag per task weighted as a list, count): the lags of the two
    bracketing solutions, mixed in the proportion that spends exactly
    ``budget`` (as a randomised policy would).
    """
    source = tasks if known is None else known
    by_model: dict[str, list[float]] = {}
    for task in source:
        by_model.setdefault(task.model, []).append(task.seconds)
    n = math.ceil(_limit_horizon(tasks, source) / LIMIT_STEP) + 1
    grids = {m: _cumulative(times, n) for m, times in by_model.items()}
    # A model the known tasks lack (only with known=...) gets every model's
    # schedule; solved only when there is one.
    unknown = any(t.model not in by_model for t in tasks)
    pooled = _cumulative([t.seconds for t in source], n) if unknown else ([], [])
    cap = math.ceil(LIMIT_GAP_CAP / LIMIT_STEP)
    reach = [min(n, i + cap) for i in range(n + 1)]

    def solve(lam: float) -> tuple[float, list[float]]:
        polls = {
            m: _polls_of(optimal_polls(*grid, LIMIT_STEP, lam, reach=reach))
            for m, grid in grids.items()
        }
        everyone = (
            _polls_of(optimal_polls(*pooled, LIMIT_STEP, lam, reach=reach)) if unknown else []
        )
        requests, lags = 0, []
        for t in tasks:
            own = polls.get(t.model) or everyone
            k = bisect.bisect_left(own, t.seconds)
            if k < len(own):
                requests += k + 1
                lags.append(own[k] - t.seconds)
            else:  # past the horizon: polled as fixed polling would, every 30 s
                extra = math.ceil((t.seconds - own[-1]) / FIXED30.max_interval)
                requests += len(own) + extra
                lags.append(own[-1] + extra * FIXED30.max_interval - t.seconds)
        return requests / len(tasks), lags

    solved: dict[float, tuple[float, list[float]]] = {}

    def solved_at(lam: float) -> tuple[float, list[float]]:
        if lam not in solved:
            solved[lam] = solve(lam)
        return solved[lam]

    lo, hi = 1e-3, 1e3  # lam: requests fall as it grows
    # 24 halvings of the log-range leave lo and hi within 1e-6 of each
    # other (relative): the mixture below covers what is left. (40, and the
    # two ends solved again, took twice as long for nothing: a file of 50
    # models and 3-hour renders ran for minutes.)
    for _ in range(24):
        mid = math.sqrt(lo * hi)
        if solved_at(mid)[0] > budget:
            lo = mid
        else:
            hi = mid
    (r_lo, lags_lo), (r_hi, lags_hi) = solved_at(lo), solved_at(hi)
    share = 1.0 if r_lo == r_hi else (budget - r_hi) / (r_lo - r_hi)  # of the costly one
    # The mixture spends the budget, unless no price reaches it (every task
    # found at its first poll or two: renders of 0 s); then the nearer end,
    # with the requests it really makes.
    spent = budget if r_hi <= budget <= r_lo else (r_lo if share > 1.0 else r_hi)
    share = min(1.0, max(0.0, share))
    # A mixture: each lag weighted; expanded to a list by repetition in proportion.
    k = round(share * 20)
    return spent, lags_lo * k + lags_hi * (20 - k), len(tasks)


# -- one workload -------------------------------------------------------------------------


def _row(
    name: str, requests: Sequence[float], lags: Sequence[float], fast: Sequence[float]
) -> dict[str, Any]:
    return {
        "policy": name,
        "requests_per_task": sum(requests) / len(requests),
        "lag_mean": sum(lags) / len(lags),
        "lag_p50": percentile(lags, 50),
        "lag_p95": percentile(lags, 95),
        "fast_failure_lag": sum(fast) / len(fast) if fast else math.nan,
    }


def _strict_json(row: dict[str, Any]) -> dict[str, Any]:
    """The row with NaN and infinities as null: strict JSON for any reader."""
    return {
        key: None if isinstance(value, float) and not math.isfinite(value) else value
        for key, value in row.items()
    }


def json_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """What ``--json`` prints of a workload's rows: one object per policy the
    issue names (the new default, the old one, fixed 30 s, fixed 5 s, the
    limit), in strict JSON. The limit made for the workload's generating
    distribution (or a file's estimate of it) is no policy of its own: it
    rides on the limit's object, as ``generating_limit`` (its figures, and its
    own ``policy`` name)."""
    fair_names = (GENERATING_LIMIT, ESTIMATED_LIMIT)
    fair = next((row for row in rows if row["policy"] in fair_names), None)
    printed = []
    for row in rows:
        if row is fair:
            continue
        line = _strict_json(row)
        if fair is not None and row["policy"] == LIMIT:
            line["generating_limit"] = _strict_json(
                {key: value for key, value in fair.items() if key != "workload"}
            )
        printed.append(line)
    return printed


def ratio(value: float, base: float) -> float:
    """``value / base``; 1 when both are 0 (every poll landed on a finish), and
    infinite when only the base is."""
    if base > 0:
        return value / base
    return 1.0 if value == 0 else math.inf


def run_workload(
    name: str,
    tasks: Sequence[Task],
    spacing: float,
    seed: int,
    draw: Callable[[random.Random], Task] | None = None,
) -> dict[str, Any]:
    """Every policy on one workload, with ratios to fixed 30 s and to the limit.

    :param draw: the workload's generator, if it has one: the limit is then
        also computed for the distribution the tasks were drawn from.
    """
    fast_ids = _fast_failures(tasks)
    ours, base = against_fixed30(tasks, spacing, seed)
    fixed5 = PollPolicy(first_poll=5, interval=5, factor=1, max_interval=5, jitter=0)
    rows = [
        ours,
        _run_row("PollPolicy() (old default)", simulate_fixed(PollPolicy(), tasks), fast_ids),
        base,
        _run_row("fixed 5 s", simulate_fixed(fixed5, tasks), fast_ids),
    ]
    limits: list[tuple[str, Sequence[Task] | None]] = [(LIMIT, None)]
    if draw is not None:
        # Another seed: a sample of the workload's own distribution, not of these tasks.
        limits.append(
            (GENERATING_LIMIT, _workload(GENERATING_DRAWS, seed + GENERATING_SEED_SHIFT, draw))
        )
    else:
        limits.append(
            (ESTIMATED_LIMIT, smoothed_draws(tasks, GENERATING_DRAWS, seed + GENERATING_SEED_SHIFT))
        )
    for label, known in limits:
        budget, limit_lags, count = limit(tasks, base["requests_per_task"], known)
        # The mixture lists every task's lag once per repetition, in task order.
        fast = [
            limit_lags[start + i] for start in range(0, len(limit_lags), count) for i in fast_ids
        ]
        rows.append(_row(label, [budget], limit_lags, fast))
    by_policy = {row["policy"]: row for row in rows}
    for row in rows:
        row["workload"] = name
        row["lag_mean_vs_fixed30"] = ratio(row["lag_mean"], base["lag_mean"])
        row["lag_p95_vs_fixed30"] = ratio(row["lag_p95"], base["lag_p95"])
        row["lag_mean_vs_limit"] = ratio(row["lag_mean"], by_policy[LIMIT]["lag_mean"])
        fair = _fair_limit(by_policy)
        if fair is not None:
            row["lag_mean_vs_generating_limit"] = ratio(row["lag_mean"], fair["lag_mean"])
    models: dict[str, int] = {}
    for task in tasks:
        models[task.model] = models.get(task.model, 0) + 1
    times = [t.seconds for t in tasks]
    return {
        "workload": name,
        "tasks": len(tasks),
        "models": models,
        "failed": sum(t.failed for t in tasks),
        "seconds": {q: percentile(times, q) for q in (5, 50, 95, 99)},
        "rows": rows,
    }


def _times(ratio: float, places: int = 2) -> str:
    """A ratio as text: ``0.47x``, or ``n/a`` when the base is 0 and the value
    is not (the limit detects every task at once: renders all of one length;
    fixed 30 s polling does when every render is a multiple of 30 s)."""
    return f"{ratio:.{places}f}x" if math.isfinite(ratio) else "n/a"


def goal_target(models: int, failed: int) -> float:
    """The issue's bound on the mean lag, as a share of fixed 30 s's: 0.6 for
    renders of one model (``models`` names) without failures, 0.7 otherwise."""
    return 0.6 if models == 1 and not failed else 0.7


def meets_goal(ours: dict[str, Any], base: dict[str, Any], target: float) -> bool:
    """Whether a policy's row meets the goal against fixed 30 s's row: no more
    requests per task, a mean lag within ``target`` of its, a p95 no worse."""
    return _no_costlier(ours, base) and ratio(ours["lag_mean"], base["lag_mean"]) <= target


def near_limit(ours: dict[str, Any], base: dict[str, Any], limit_lag_mean: float) -> bool:
    """Whether a policy's row meets the goal in the issue's other terms: no
    more requests per task than fixed 30 s's row, a p95 no worse, and a mean
    lag within ``LIMIT_SLACK`` (1.2x) of the limit's (``limit_lag_mean``: of
    the generating distribution, where there is one; the limit of a file's
    own tasks is optimistic on a few hundred)."""
    return _no_costlier(ours, base) and ratio(ours["lag_mean"], limit_lag_mean) <= LIMIT_SLACK


def _no_costlier(ours: dict[str, Any], base: dict[str, Any]) -> bool:
    """What the goal asks in both its terms: no more requests per task than
    fixed 30 s's row, and a p95 lag no worse."""
    return bool(
        ours["requests_per_task"] <= base["requests_per_task"]
        and ours["lag_p95"] <= base["lag_p95"]
    )


def against_fixed30(
    tasks: Sequence[Task], spacing: float, seed: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The learning schedule's row and fixed 30 s's on ``tasks`` (without the
    limit, which costs most of a workload's time): for surveys of many files."""
    fast_ids = _fast_failures(tasks)
    return (
        _run_row(
            "adaptive (new default)",
            simulate_adaptive(AdaptivePolicy(), tasks, spacing, seed),
            fast_ids,
        ),
        _run_row("fixed 30 s", simulate_fixed(FIXED30, tasks), fast_ids),
    )


def _fast_failures(tasks: Sequence[Task]) -> list[int]:
    """The positions of the failures within ``FAST_FAILURE_S`` of their creation."""
    return [i for i, t in enumerate(tasks) if t.failed and t.seconds <= FAST_FAILURE_S]


def _run_row(
    name: str, run: tuple[list[int], list[float]], fast_ids: Sequence[int]
) -> dict[str, Any]:
    """A simulated policy's row: ``run`` is its requests and lags per task."""
    requests, lags = run
    return _row(name, requests, lags, [lags[i] for i in fast_ids])


def _fair_limit(by_policy: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The row of the limit made for the workload's distribution (its
    generator's, or a file's estimate), if there is one."""
    return by_policy.get(GENERATING_LIMIT) or by_policy.get(ESTIMATED_LIMIT)


def goal(result: dict[str, Any]) -> str:
    """Whether the learning schedule meets the issue's goal on this workload,
    in its terms of fixed 30 s's lag, then of the limit's: of the generating
    distribution where there is one (or its estimate, for a file), else of
    the tasks' own."""
    rows = {row["policy"]: row for row in result["rows"]}
    ours, base = result["rows"][0], rows["fixed 30 s"]
    target = goal_target(len(result["models"]), result["failed"])
    ok = meets_goal(ours, base, target)
    estimated = ESTIMATED_LIMIT in rows
    fair = _fair_limit(rows)
    near = near_limit(ours, base, (fair or rows[LIMIT])["lag_mean"])
    generating = "estimated generating distribution's" if estimated else "generating distribution's"
    return (
        f"{'met' if ok else 'NOT met'} (requests {ours['requests_per_task']:.2f} vs "
        f"{base['requests_per_task']:.2f}, "
        f"mean lag {_times(ours['lag_mean_vs_fixed30'], 3)} fixed 30 s "
        f"[target <= {target}], p95 {ours['lag_p95']:.1f} vs {base['lag_p95']:.1f} s, "
        + (
            f"{ours['lag_mean_vs_limit']:.2f}x the limit"
            if math.isfinite(ours["lag_mean_vs_limit"])
            else "the limit's lag is 0"
        )
        + (
            f", {_times(ours['lag_mean_vs_generating_limit'])} the {generating}"
            if "lag_mean_vs_generating_limit" in ours
            else ""
        )
        + f"); within {LIMIT_SLACK}x of the "
        + (f"{generating} limit" if fair else "limit (optimistic on a few hundred tasks)")
        + f": {'met' if near else 'NOT met'}"
    )


def report(results: Sequence[dict[str, Any]], note: dict[str, Any] | None, spacing: float) -> str:
    lines = ["## Poll schedule (`bench_schedule.py`)", ""]
    if note:
        lines += [note_line(note), ""]
    lines += [
        f"Virtual time, no request latency; tasks created one every {spacing:g} s and polled "
        "from creation; detection at the first poll at or after the finish. The learning "
        "schedule starts from its priors and learns only from tasks it has detected. Limit: "
        "per-model optimal schedules at one shared price of a request, on the exact "
        "distribution of the very tasks measured (so optimistic: schedules made for another "
        "sample of the same workload do worse on this one), at fixed 30 s's requests per "
        "task. Limit of the generating distribution (built-in workloads): the same, made for "
        f"{GENERATING_DRAWS:,} other draws of the workload (its distribution, not these tasks) "
        "and measured on these tasks: the best any poller that knows the distribution can "
        f"expect; for a file, the same made for {GENERATING_DRAWS:,} draws of its smoothed "
        "distribution (an estimate of the generating one). Fast-failure lag: mean over "
        "failures within 60 s.",
    ]
    for result in results:
        s = result["seconds"]
        models = ", ".join(f"{m} {c:,}" for m, c in result["models"].items())
        lines += [
            "",
            f"### {result['workload']}: {result['tasks']:,} tasks ({models}; "
            f"{result['failed']:,} failed; seconds p5 {s[5]:.0f}, p50 {s[50]:.0f}, "
            f"p95 {s[95]:.0f}, p99 {s[99]:.0f})",
            "",
            table(
                [
                    "policy",
                    "req/task",
                    "lag mean s",
                    "lag p50 s",
                    "lag p95 s",
                    "fast-failure lag s",
                    "mean vs fixed 30 s",
                    "mean vs limit",
                    "mean vs generating limit",
                ],
                [
                    [
                        r["policy"],
                        r["requests_per_task"],
                        r["lag_mean"],
                        r["lag_p50"],
                        r["lag_p95"],
                        r["fast_failure_lag"],
                        _times(r["lag_mean_vs_fixed30"]),
                        _times(r["lag_mean_vs_limit"]),
                        _times(r["lag_mean_vs_generating_limit"])
                        if "lag_mean_vs_generating_limit" in r
                        else "-",
                    ]
                    for r in result["rows"]
                ],
            ),
            "",
            f"Goal: {goal(result)}.",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--durations", type=Path, help="'model seconds [outcome]' per line")
    parser.add_argument("--json", action="store_true", help="one JSON object per policy per line")
    parser.add_argument("--extra", action="store_true", help="also the invented workloads")
    parser.add_argument("--tasks", type=int, default=10_000, help="tasks per built-in workload")
    parser.add_argument("--spacing", type=float, default=2.0, help="seconds between creations")
    parser.add_argument("--seed", type=int, default=20250606)
    args = parser.parse_args()
    if args.durations is not None:
        # A file's tasks are all there is of its distribution: its generating
        # limit is estimated (see smoothed_draws).
        workloads: list[tuple[str, list[Task], Callable[[random.Random], Task] | None]] = [
            (args.durations.name, read_durations(args.durations), None)
        ]
    else:
        chosen = {**BUILT_IN, **(EXTRA if args.extra else {})}
        workloads = [
            (name, _workload(args.tasks, args.seed + k, draw), draw)
            for k, (name, draw) in enumerate(chosen.items())
        ]
    results = [
        run_workload(name, tasks, args.spacing, args.seed, draw)
        for name, tasks, draw in workloads
    ]
    if args.json:
        for result in results:
            for row in json_rows(result["rows"]):
                print(json.dumps(row, allow_nan=False))
        return
    publishing = args.durations is None and args.tasks == 10_000
    text = report(results, machine_note() if publishing else None, args.spacing)
    print(text)
    if publishing:
        publish(
            NAME,
            {"name": NAME, "spacing": args.spacing, "seed": args.seed, "workloads": results},
            text,
        )


if __name__ == "__main__":
    main()
