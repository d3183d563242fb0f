"""benchmarks/bench_schedule.py as a user runs it: --durations FILE [--json]."""

from __future__ import annotations

import json
import math
import random
import statistics
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ._benchmarks import run_script, script_module

LIMIT = "limit (optimal, knows the distribution)"
GENERATING = "limit (optimal, knows the generating distribution)"
ESTIMATED = "limit (optimal, knows the estimated generating distribution)"
POLICIES = {
    "adaptive (new default)",
    "PollPolicy() (old default)",
    "fixed 30 s",
    "fixed 5 s",
    LIMIT,
}
KEYS = {"policy", "requests_per_task", "lag_mean", "lag_p50", "lag_p95"}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """The script in a child process, from the repository's root."""
    return run_script("bench_schedule", *args)


def assert_a_fair_limit(by_policy: dict[str, dict[str, Any]], fair: str) -> None:
    """The ``fair`` limit (made for the workload's distribution, not for its
    tasks; printed on the limit's object as ``generating_limit``) spends
    fixed 30 s's requests, beats fixed 30 s, and, measured on tasks it was
    not made for, does worse than the in-sample limit, which is optimal on
    them; the learned schedule's ratio to it is reported."""
    fixed, sample_limit = by_policy["fixed 30 s"], by_policy[LIMIT]
    limit = sample_limit["generating_limit"]
    assert limit["policy"] == fair
    assert limit.keys() >= KEYS
    assert limit["requests_per_task"] == pytest.approx(fixed["requests_per_task"])
    assert sample_limit["lag_mean"] < limit["lag_mean"] < fixed["lag_mean"]
    ours = by_policy["adaptive (new default)"]
    assert ours["lag_mean_vs_generating_limit"] == pytest.approx(
        ours["lag_mean"] / limit["lag_mean"]
    )


def test_durations_json_prints_one_object_per_policy(tmp_path: Path) -> None:
    """A small file in the documented format gives one strict JSON object per
    policy with the documented keys; fixed 30 s's figures are what 30 s polls
    give on these tasks; the limit spends fixed 30 s's requests."""
    rng = random.Random(5)
    lines = ["model seconds outcome", "# a comment", ""]
    seconds = []
    for k in range(120):
        model = "veo3_fast" if k % 2 else "veo3"
        value = round(rng.lognormvariate(5.0 if k % 2 else 5.6, 0.3), 1)
        failed = k % 20 == 0
        if failed:
            value = round(rng.uniform(5, 40), 1)
        seconds.append(value)
        lines.append(f"{model} {value}" + (" GENERATE_FAILED" if failed else ""))
    path = tmp_path / "times.txt"
    path.write_text("\n".join(lines) + "\n")
    done = run("--durations", str(path), "--json")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    # One object per policy the issue names (five), in its order.
    assert [row["policy"] for row in rows] == [
        "adaptive (new default)", "PollPolicy() (old default)", "fixed 30 s", "fixed 5 s", LIMIT
    ]
    assert all(row.keys() >= KEYS for row in rows)
    by_policy = {row["policy"]: row for row in rows}
    fixed = by_policy["fixed 30 s"]
    expected = sum(max(1, -(-s // 30)) for s in seconds) / len(seconds)
    assert fixed["requests_per_task"] == pytest.approx(expected)
    limit = by_policy[LIMIT]
    assert limit["requests_per_task"] == pytest.approx(fixed["requests_per_task"])
    assert limit["lag_mean"] < fixed["lag_mean"]
    # A file's stand-in for the generating distribution's limit: made for its
    # smoothed draws, so no better than the limit made for these very tasks.
    assert_a_fair_limit(by_policy, ESTIMATED)
    # Every policy, the limit included, reports how late its fast failures were seen.
    fast = [s for k, s in enumerate(seconds) if k % 20 == 0]
    expected_fast = sum(max(1, -(-s // 30)) * 30 - s for s in fast) / len(fast)
    assert fixed["fast_failure_lag"] == pytest.approx(expected_fast)
    for row in [*rows, by_policy[LIMIT]["generating_limit"]]:
        assert isinstance(row["fast_failure_lag"], float), row["policy"]
        assert 0 <= row["fast_failure_lag"] <= 60, row["policy"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("veo3 12 maybe\n", "outcome must be success or failed, not 'maybe'"),
        ("veo3 soon\n", "seconds must be a number, not 'soon'"),
        ("veo3 -3\n", "seconds must be finite and >= 0"),
        ("veo3\n", "expected 'model seconds [outcome]'"),
        ("# nothing\n", "no tasks"),
        ("veo3 100\nveo3 1,5\n", "2: seconds must be a number written with a '.'"),
        # Simulated poll by poll: 1e300 ran without end.
        ("veo3 200\nveo3 1e300\n", "2: seconds must be at most 1209600 (14 days"),
    ],
)
def test_a_bad_durations_file_is_refused_with_its_line(
    tmp_path: Path, content: str, message: str
) -> None:
    """A malformed file ends with the file, the line and the problem; no traceback."""
    path = tmp_path / "bad.txt"
    path.write_text(content)
    done = run("--durations", str(path), "--json")
    assert done.returncode != 0
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize(
    "header",
    [
        "model seconds", "model,duration,outcome", "Model\tduration_s\tstatus", '"model","secs"',
        # Column names of other exports: refused on line 1 ("outcome must be
        # success or failed, not 'status'").
        "task_model,duration_s,status", "model_id seconds",
    ],
)
def test_a_header_line_is_skipped_whatever_its_columns_are_called(
    tmp_path: Path, header: str
) -> None:
    """A CSV or TSV export (quoted or not) with a header row reads like the plain format."""
    plain = tmp_path / "plain.txt"
    plain.write_text("veo3_fast 140.5\nveo3 310 failed\n" * 20)
    exported = tmp_path / "export.csv"
    exported.write_text(header + "\n" + '"veo3_fast",140.5,"success"\nveo3,310,failed\n' * 20)
    expected = run("--durations", str(plain), "--json")
    done = run("--durations", str(exported), "--json")
    assert expected.returncode == 0, expected.stderr
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    reference = [json.loads(line) for line in expected.stdout.splitlines()]
    strip = [{k: v for k, v in row.items() if k != "workload"} for row in rows]
    assert strip == [{k: v for k, v in row.items() if k != "workload"} for row in reference]


def test_model_names_are_read_in_any_case(tmp_path: Path) -> None:
    """"VEO3" and "Veo3_Fast" are veo3 and veo3_fast (their priors), as the
    service writes them: the same figures as the lower-case file."""
    lower = tmp_path / "lower.txt"
    lower.write_text("veo3_fast 140.5\nveo3 310 failed\nveo3 290\n" * 20)
    mixed = tmp_path / "mixed.txt"
    mixed.write_text("Veo3_Fast 140.5\nVEO3 310 failed\nveo3 290\n" * 20)
    expected = run("--durations", str(lower), "--json")
    done = run("--durations", str(mixed), "--json")
    assert expected.returncode == 0, expected.stderr
    assert done.returncode == 0, done.stderr
    rows = [{k: v for k, v in json.loads(line).items() if k != "workload"}
            for line in done.stdout.splitlines()]
    reference = [{k: v for k, v in json.loads(line).items() if k != "workload"}
                 for line in expected.stdout.splitlines()]
    assert rows == reference


def ours_and_fixed_30s(path: Path, lines: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``lines`` written to ``path`` and run with ``--json``: the rows of the
    learned schedule and of fixed 30 s polling."""
    path.write_text("\n".join(lines) + "\n")
    done = run("--durations", str(path), "--json")
    assert done.returncode == 0, done.stderr
    rows = {row["policy"]: row for row in map(json.loads, done.stdout.splitlines())}
    return rows["adaptive (new default)"], rows["fixed 30 s"]


def test_a_file_shaped_like_the_services_mix_meets_the_goal(tmp_path: Path) -> None:
    """2,000 renders drawn as the issue describes the service (60 % veo3_fast
    at 150 s and 35 % veo3 at 300 s, log-sd 0.3; 5 % early failures over
    5-40 s; 3 % of the renders 2-3x longer), replayed from a file with
    ``--json`` as a user would: no more requests than fixed 30 s polling, at
    most 0.7x its mean lag, a p95 no worse, and within 1.2x of the limit of
    the file's estimated generating distribution (on eight such files:
    0.60-0.64x fixed polling's lag, 1.05-1.09x that limit)."""
    rng = random.Random(3)
    lines = []
    for _ in range(2000):
        model = "veo3_fast" if rng.random() < 0.6 else "veo3"
        if rng.random() < 0.05:
            lines.append(f"{model} {rng.uniform(5, 40):.1f} failed")
            continue
        seconds = rng.lognormvariate(math.log(150 if model == "veo3_fast" else 300), 0.3)
        if rng.random() < 0.03:
            seconds *= rng.uniform(2, 3)
        lines.append(f"{model} {seconds:.1f}")
    path = tmp_path / "mix.txt"
    path.write_text("\n".join(lines) + "\n")
    done = run("--durations", str(path), "--json")
    assert done.returncode == 0, done.stderr
    rows = {row["policy"]: row for row in map(json.loads, done.stdout.splitlines())}
    ours, fixed = rows["adaptive (new default)"], rows["fixed 30 s"]
    assert ours["requests_per_task"] <= fixed["requests_per_task"]
    assert ours["lag_mean"] <= 0.7 * fixed["lag_mean"]
    assert ours["lag_p95"] <= fixed["lag_p95"]
    assert ours["lag_mean"] <= 1.2 * rows[LIMIT]["generating_limit"]["lag_mean"]


_SLOW_THEN_FAST = (("veo3", 300, 1200), ("veo3_fast", 150, 1800))


@pytest.mark.parametrize(
    ("turns", "seed", "early_failures"),
    [
        (_SLOW_THEN_FAST, 7, 0.0),
        (_SLOW_THEN_FAST, 7, 0.05),
        ((("veo3", 300, 400), ("veo3_fast", 150, 600)), 2, 0.0),
        ((("veo3", 300, 500), ("veo3_fast", 150, 500)), 50, 0.0),
    ],
    ids=["1200-1800", "1200-1800-failures", "400-600", "500-500"],
)
def test_models_in_turns_spend_no_more_than_fixed_polling(
    tmp_path: Path, turns: tuple[tuple[str, float, int], ...], seed: int, early_failures: float
) -> None:
    """A file whose models come in turns (veo3 renders, then veo3_fast ones,
    as a generator that writes one model after the other makes): the learned
    schedule still spends no more than fixed 30 s polling and meets the lag
    goal. (The shared price of a request was set for every model seen since
    the start: the fast renders were polled at the price of the slow ones,
    and spent 4-6 % more than fixed polling. With the price following the
    recent mix, the slow model's savings in the spend ledger were still
    spent on the fast one at first: 1,000-task files spent 1.008x and
    1.013x, until a turn of the mix halved the ledger's old entries.)"""
    rng = random.Random(seed)
    lines = []
    for model, median, count in turns:
        for _ in range(count):
            if rng.random() < early_failures:
                lines.append(f"{model} {rng.uniform(5, 40):.1f} failed")
            else:
                lines.append(f"{model} {rng.lognormvariate(math.log(median), 0.3):.1f}")
    ours, fixed = ours_and_fixed_30s(tmp_path / "in_turns.txt", lines)
    assert ours["requests_per_task"] <= fixed["requests_per_task"]
    assert ours["lag_mean"] <= 0.7 * fixed["lag_mean"]
    assert ours["lag_p95"] <= fixed["lag_p95"]


@pytest.mark.parametrize("seed", [5, 8])
def test_models_in_turns_on_a_faster_service_spend_no_more_than_fixed_polling(
    tmp_path: Path, seed: int
) -> None:
    """500 veo3 renders (median 250 s), then 500 veo3_fast ones (100 s), 2 %
    of them 2-3x longer: the model coming in was polled at the price set for
    the one leaving until the recent mix (half-life 100 tasks) caught up, and
    5 of 8 such files spent 1.001-1.006x fixed polling's requests. At a turn
    the price is now set for the mix the turn brought."""
    rng = random.Random(seed)
    lines = []
    for model, median, count in (("veo3", 250, 500), ("veo3_fast", 100, 500)):
        for _ in range(count):
            seconds = rng.lognormvariate(math.log(median), 0.3)
            if rng.random() < 0.02:
                seconds *= rng.uniform(2, 3)
            lines.append(f"{model} {seconds:.1f}")
    ours, fixed = ours_and_fixed_30s(tmp_path / "in_turns.txt", lines)
    assert ours["requests_per_task"] <= fixed["requests_per_task"]
    assert ours["lag_mean"] <= 0.7 * fixed["lag_mean"]
    assert ours["lag_p95"] <= fixed["lag_p95"]


def test_a_service_slowing_down_through_the_session_spends_about_what_fixed_polling_does(
    tmp_path: Path,
) -> None:
    """Renders whose median grows from 150 s to 450 s over 2,000 tasks (a
    service slowing down through the hours): every task is longer than the
    estimate, made of the past, expects. The drift check halves the old
    evidence (see the speeding-up test), and the spend ledger, reading over
    fixed polling's, cuts the budget as the fourth power of its reading:
    within 5 % of fixed 30 s polling's requests (1.021-1.047x over eleven
    such files; 1.2x before either, 1.07-1.10x with the check and a
    proportional cut), the lag within the goal."""
    rng = random.Random(11)
    lines = [
        f"veo3_fast {150 * (1 + k / 1000) * rng.lognormvariate(0, 0.3):.1f}" for k in range(2000)
    ]
    ours, fixed = ours_and_fixed_30s(tmp_path / "slowing.txt", lines)
    assert ours["requests_per_task"] <= 1.05 * fixed["requests_per_task"]
    assert ours["lag_mean"] <= 0.6 * fixed["lag_mean"]  # one model: the tighter goal
    assert ours["lag_p95"] <= fixed["lag_p95"]


def test_a_service_speeding_up_through_the_session_is_still_polled_in_time(
    tmp_path: Path,
) -> None:
    """Renders whose median falls from 450 s to 150 s over 2,000 tasks: an
    estimate made of the whole past is too long, and its polls came late
    (0.9-0.98x fixed 30 s polling's mean lag, 1.4-1.65x its p95). Checked
    against the table, the finishes come far sooner than it expects: the
    old evidence counts half, again while they do, and the lag meets the
    goal (0.61-0.64x, p95 0.76-0.80x over five such files)."""
    rng = random.Random(3)
    lines = [
        f"veo3_fast {450 / (1 + k / 1000) * rng.lognormvariate(0, 0.3):.1f}" for k in range(2000)
    ]
    ours, fixed = ours_and_fixed_30s(tmp_path / "speeding.txt", lines)
    assert ours["requests_per_task"] <= fixed["requests_per_task"]
    assert ours["lag_mean"] <= 0.7 * fixed["lag_mean"]
    assert ours["lag_p95"] <= fixed["lag_p95"]


def test_a_missing_durations_file_is_refused_without_a_traceback(tmp_path: Path) -> None:
    """A file that does not exist is named in one line."""
    done = run("--durations", str(tmp_path / "absent.txt"))
    assert done.returncode != 0
    assert "absent.txt: cannot read it" in done.stderr
    assert "Traceback" not in done.stderr


def test_built_in_workloads_add_the_limit_of_their_generating_distribution() -> None:
    """Built-in workloads also get the limit made for their generator's
    distribution (not for the tasks measured): it spends fixed 30 s's requests,
    beats fixed 30 s, and, measured on tasks it was not made for, does worse
    than the in-sample limit, which is optimal on them."""
    done = run("--tasks", "300", "--json")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    workloads = {row["workload"] for row in rows}
    assert workloads == {"fast", "quality", "mix"}
    for workload in workloads:
        by_policy = {row["policy"]: row for row in rows if row["workload"] == workload}
        assert set(by_policy) == POLICIES
        assert_a_fair_limit(by_policy, GENERATING)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"veo3 100\n# caf\xe9 (Latin-1)\nveo3 130\n", None),
        ("veo3 100\nveo3 130\n".encode("utf-16"), None),
        (b"veo3 100\nve\xffo3 130\n", "2: not UTF-8 text"),
    ],
    ids=["latin1-comment", "utf16", "bad-byte"],
)
def test_a_durations_file_in_another_encoding(
    tmp_path: Path, content: bytes, expected: str | None
) -> None:
    """Bytes that are no UTF-8 in a comment are skipped, a UTF-16 file (with
    its BOM, as Windows saves "Unicode") is read; a data line that is not
    UTF-8 is refused by its number, no traceback."""
    path = tmp_path / "durations.txt"
    path.write_bytes(content)
    done = run("--durations", str(path), "--json")
    if expected is None:
        assert done.returncode == 0, done.stderr
        assert len(done.stdout.splitlines()) == len(POLICIES)
    else:
        assert done.returncode != 0
        assert expected in done.stderr
        assert "Traceback" not in done.stderr


def test_a_bom_opening_a_durations_file_is_no_part_of_the_first_model(tmp_path: Path) -> None:
    """A UTF-8 byte-order mark (Windows tools write one) is read as layout: the
    figures are those of the file without it (it made the first model another)."""
    plain = tmp_path / "plain.txt"
    plain.write_text("veo3 300\nveo3_fast 140\n" * 20, encoding="utf-8")
    marked = tmp_path / "bom.txt"
    marked.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    expected = run("--durations", str(plain), "--json")
    done = run("--durations", str(marked), "--json")
    assert expected.returncode == done.returncode == 0, done.stderr
    strip = [
        {k: v for k, v in json.loads(line).items() if k != "workload"}
        for line in done.stdout.splitlines()
    ]
    assert strip == [
        {k: v for k, v in json.loads(line).items() if k != "workload"}
        for line in expected.stdout.splitlines()
    ]


def _bench() -> Any:
    """The benchmark script as a module."""
    return script_module("bench_schedule")


def test_a_task_of_hours_is_polled_past_the_limits_horizon_every_30_s() -> None:
    """The limit's program stops at twice the 99.5th percentile (ten minutes
    at least): a rare task of hours is polled past it every 30 s, as fixed
    polling would (a one-second grid to the longest task ran for minutes)."""
    bench = _bench()
    tasks = [bench.Task("veo3", 100.0 + n % 50, False) for n in range(400)]
    tasks.append(bench.Task("veo3", 7200.0, False))
    assert bench._limit_horizon(tasks, tasks) == 600.0
    _budget, lags, _count = bench.limit(tasks, 6.0)
    assert len(lags) % len(tasks) == 0
    long_lags = lags[len(tasks) - 1 :: len(tasks)]  # the long task's, in each copy
    assert all(0.0 <= lag < 30.0 for lag in long_lags)


def test_the_limits_horizon_stops_at_four_hours_even_in_a_tiny_file() -> None:
    """In a file of a few tasks the 99.5th percentile is the longest: one
    render of a day made the program run a one-second grid to it (97 s), one
    of 14 days never ended. The horizon stops at 4 h; past it, 30 s polls."""
    bench = _bench()
    tasks = [bench.Task("veo3", 86_400.0, False)]
    assert bench._limit_horizon(tasks, tasks) == 4 * 3600.0
    assert bench._limit_horizon(tasks * 2, tasks) == 4 * 3600.0


def test_renders_of_no_time_are_found_by_a_poll_in_the_limit() -> None:
    """Renders of 0 s (a task failing as it is created) are found by a first
    poll, not done for free at the grid's index 0: the limit's row said 4
    requests and a lag of 200 s (its polls were really one, at 300 s)."""
    bench = _bench()
    tasks = [
        bench.Task("veo3", 0.0, False),
        bench.Task("veo3", 0.0, True),
        bench.Task("veo3", 300.0, False),
    ]
    spent, lags, _count = bench.limit(tasks, 4.0)
    assert spent < 4.0  # no price reaches fixed polling's budget: what it spends
    assert spent >= 1.0
    assert max(lags) <= 1.0  # the first poll, at 1 s, finds the two; the third at its end


def test_renders_all_of_one_length_give_the_limit_no_lag_and_no_infinite_ratio(
    tmp_path: Path,
) -> None:
    """Every render exactly 137 s: the limit polls once, at 137 s, and its lag
    is 0, so a ratio to it has no value. The table and the goal line say so
    (they printed "infx"), and the JSON has null there, never Infinity."""
    path = tmp_path / "same.txt"
    path.write_text("veo3_fast 137\n" * 60)
    done = run("--durations", str(path))
    assert done.returncode == 0, done.stderr
    assert "inf" not in done.stdout
    assert "the limit's lag is 0" in done.stdout
    limit_row = next(line for line in done.stdout.splitlines() if line.startswith("| limit"))
    assert "| 0 " in limit_row
    as_json = run("--durations", str(path), "--json")
    rows = {row["policy"]: row for row in map(json.loads, as_json.stdout.splitlines())}
    assert rows["adaptive (new default)"]["lag_mean_vs_limit"] is None
    assert "Infinity" not in as_json.stdout
    # Every render a multiple of 30 s: fixed 30 s polling's lag is 0 too.
    path.write_text("veo3 120\n" * 60)
    done = run("--durations", str(path))
    assert done.returncode == 0, done.stderr
    assert "inf" not in done.stdout
    assert "mean lag n/a fixed 30 s" in done.stdout


def _goal_result(
    ours_lag: float, limit_lag: float, generating_lag: float | None, *, estimated: bool = False
) -> dict[str, Any]:
    """A workload's result as run_workload gives it, with only what goal() reads
    (a file's, with ``estimated``: its generating distribution estimated)."""

    def row(policy: str, requests: float, lag: float, p95: float) -> dict[str, Any]:
        return {
            "policy": policy,
            "requests_per_task": requests,
            "lag_mean": lag,
            "lag_p95": p95,
            "lag_mean_vs_fixed30": lag / 15.0,
            "lag_mean_vs_limit": lag / limit_lag,
            **({"lag_mean_vs_generating_limit": lag / generating_lag} if generating_lag else {}),
        }

    rows = [
        row("adaptive (new default)", 9.5, ours_lag, 25.0),
        row("PollPolicy() (old default)", 15.0, 14.0, 28.0),
        row("fixed 30 s", 10.0, 15.0, 28.0),
        row("fixed 5 s", 58.0, 2.5, 4.8),
        row(LIMIT, 10.0, limit_lag, 15.0),
    ]
    if generating_lag:
        rows.append(row(ESTIMATED if estimated else GENERATING, 10.0, generating_lag, 16.0))
    return {"models": {"veo3": 280, "veo3_fast": 20}, "failed": 30, "rows": rows}


def test_the_goal_line_gives_both_terms_of_the_issue() -> None:
    """0.7x fixed 30 s's mean lag, and within 1.2x of the limit: that of the
    generating distribution where there is one (the tasks' own is optimistic
    on a few hundred), else the tasks' own."""
    bench = script_module("bench_schedule")
    # 0.8x fixed 30 s, 1.5x the tasks' limit, 1.14x the generating one's.
    line = bench.goal(_goal_result(12.0, 8.0, 10.5))
    assert line.startswith("NOT met (")
    assert line.endswith("within 1.2x of the generating distribution's limit: met")
    line = bench.goal(_goal_result(12.0, 8.0, 9.5))  # 1.26x the generating limit
    assert line.endswith("within 1.2x of the generating distribution's limit: NOT met")
    line = bench.goal(_goal_result(12.0, 8.0, 10.5, estimated=True))  # a file's
    assert "1.14x the estimated generating distribution's" in line
    assert line.endswith("within 1.2x of the estimated generating distribution's limit: met")
    line = bench.goal(_goal_result(12.0, 8.0, None))
    assert line.endswith("within 1.2x of the limit (optimistic on a few hundred tasks): NOT met")
    line = bench.goal(_goal_result(10.0, 9.0, None))  # 0.67x fixed, 1.11x the limit
    assert line.startswith("met (")
    assert line.endswith("of the limit (optimistic on a few hundred tasks): met")


def test_a_files_smoothed_draws_keep_its_kinds_and_blur_its_sample() -> None:
    """The estimate of a file's generating distribution: seeded draws of its
    tasks, each kind (model, outcome) in its share, each render moved by a
    log-normal factor of Silverman's width for its kind: no draw repeats a
    render of the file exactly, and none strays beyond a few widths."""
    bench = script_module("bench_schedule")
    rng = random.Random(3)
    tasks = [bench.Task("veo3", round(rng.lognormvariate(5.6, 0.3), 1), False) for _ in range(300)]
    tasks += [bench.Task("veo3_fast", round(rng.uniform(5, 40), 1), True) for _ in range(100)]
    draws = bench.smoothed_draws(tasks, 20_000, seed=7)
    assert draws == bench.smoothed_draws(tasks, 20_000, seed=7)
    assert draws != bench.smoothed_draws(tasks, 20_000, seed=8)
    failed = [d for d in draws if d.failed]
    assert {d.model for d in failed} == {"veo3_fast"}
    assert {d.model for d in draws if not d.failed} == {"veo3"}
    assert len(failed) / len(draws) == pytest.approx(0.25, abs=0.02)
    renders = {t.seconds for t in tasks}
    assert sum(d.seconds in renders for d in draws) < len(draws) * 0.01
    logs = [math.log(t.seconds) for t in tasks if not t.failed]
    width = 0.9 * statistics.pstdev(logs) * len(logs) ** -0.2  # at most: min(sd, IQR/1.34)
    low, high = min(logs) - 5 * width, max(logs) + 5 * width
    assert all(low <= math.log(d.seconds) <= high for d in draws if not d.failed)
