"""benchmarks/survey_schedule.py: its workloads, its verdicts, its command line."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from ._benchmarks import run_script, script_module


def _modules() -> tuple[Any, Any]:
    """The survey and the benchmark it builds on, as modules."""
    return script_module("survey_schedule"), script_module("bench_schedule")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """The survey in a child process, from the repository's root."""
    return run_script("survey_schedule", *args, timeout=300)


def test_the_families_hold_266_workloads_of_distinct_names_and_seeds() -> None:
    survey, _ = _modules()
    workloads = [w for name in survey.DEFAULT_FAMILIES for w in survey.FAMILIES[name]()]
    assert len(workloads) == 266
    assert {w.family for w in workloads} == {"veo", "offset", "failures", "faster", "one"}
    assert len({w.name for w in workloads}) == 266
    assert len({(w.family, w.seed) for w in workloads}) == 266
    # With the random files (asked for by name), still distinct.
    every = [w for family in survey.FAMILIES.values() for w in family()]
    assert len(every) == 266 + survey.RANDOM_FILES == 386
    assert len({w.name for w in every}) == len({(w.family, w.seed) for w in every}) == 386


def test_the_random_files_draw_their_recipes_within_the_documented_ranges() -> None:
    survey, _ = _modules()
    files = list(survey.FAMILIES["random"]())
    assert files == list(survey.FAMILIES["random"]())  # seeded: the same files every run
    assert len(files) == 120
    assert all(1000 <= w.tasks <= 5000 for w in files)
    assert all(0.1 <= w.veo3_share <= 0.95 for w in files)
    assert all(0.2 <= w.sigma <= 0.4 for w in files)
    assert all(0.0 <= w.failure_share <= 0.08 for w in files)
    assert all(0.0 <= w.long_share <= 0.05 for w in files)
    assert all(w.failure_span == survey.EARLY and w.medians == survey.DOCUMENTED for w in files)
    # Spread over the ranges, not clustered: both halves of each range are used.
    assert min(w.sigma for w in files) < 0.25
    assert max(w.sigma for w in files) > 0.35
    assert min(w.tasks for w in files) < 2000
    assert max(w.tasks for w in files) > 4000
    assert min(w.failure_share for w in files) < 0.01 < 0.07 < max(w.failure_share for w in files)
    # A file's name says its recipe.
    first = files[0]
    assert first.name.startswith(f"rnd001_n{first.tasks}_v{round(first.veo3_share * 100)}_")
    assert "random" not in survey.DEFAULT_FAMILIES


def test_a_workload_draws_the_same_tasks_each_time_as_its_recipe_says() -> None:
    survey, bench = _modules()
    workload = next(w for w in survey.FAMILIES["failures"]() if w.name == "fx_n300_30-120_f8_v30")
    tasks = survey.draw(workload)
    assert tasks == survey.draw(workload)
    assert len(tasks) == 300
    assert all(isinstance(t, bench.Task) for t in tasks)
    failed = [t for t in tasks if t.failed]
    # 8 % of 300, give or take the draw; every one within its span.
    assert 10 <= len(failed) <= 40
    assert all(30.0 <= t.seconds <= 120.0 for t in failed)
    veo3 = sum(t.model == "veo3" for t in tasks)
    assert 60 <= veo3 <= 120  # 30 % of 300
    assert all(t.seconds == round(t.seconds, 1) for t in tasks)


def _median_render(tasks: list[Any], model: str) -> float:
    renders = sorted(t.seconds for t in tasks if t.model == model and not t.failed)
    return float(renders[len(renders) // 2])


def test_the_slower_service_family_scales_the_documented_medians() -> None:
    survey, _ = _modules()
    slow = next(w for w in survey.FAMILIES["offset"]() if w.name == "off_n1000_x1.6_f0_v80")
    assert 430 < _median_render(survey.draw(slow), "veo3") < 530  # 300 s x 1.6 = 480 s


def test_the_faster_service_family_renders_in_its_own_medians() -> None:
    survey, _ = _modules()
    fast = next(w for w in survey.FAMILIES["faster"]() if w.name == "fast_n3000_f45_q90_fail5")
    tasks = survey.draw(fast)
    assert 80 < _median_render(tasks, "veo3") < 100
    assert 40 < _median_render(tasks, "veo3_fast") < 50
    assert 0.03 < sum(t.failed for t in tasks) / len(tasks) < 0.07


def test_the_one_model_family_draws_one_model_without_failures_and_its_long_renders() -> None:
    """300 veo3_fast renders of log-sd 0.3, 5 % of them 2-3x longer: one model
    name, no failure, so the goal's target is 0.6x; about 15 renders past
    twice the median (a log-normal of 0.3 puts 1 % there)."""
    survey, bench = _modules()
    family = {w.name: w for w in survey.FAMILIES["one"]()}
    assert len(family) == 36
    tasks = survey.draw(family["one_n300_veo3_fast_s30_l5"])
    assert len(tasks) == 300
    assert {t.model for t in tasks} == {"veo3_fast"}
    assert not any(t.failed for t in tasks)
    assert 130 < _median_render(tasks, "veo3_fast") < 170
    assert 8 <= sum(t.seconds > 300 for t in tasks) <= 30
    assert bench.goal_target(len({t.model for t in tasks}), 0) == 0.6
    plain = survey.draw(family["one_n1000_veo3_s20_l0"])
    assert {t.model for t in plain} == {"veo3"}
    assert sum(t.seconds > 600 for t in plain) <= 2  # log-sd 0.2, no long renders


def test_a_verdict_follows_the_goal_of_the_issue() -> None:
    """Met with fewer requests and 0.7x the lag; missed for one request more,
    or a p95 worse than fixed polling's, or a lag over the target."""
    _, bench = _modules()
    base = {"requests_per_task": 10.0, "lag_mean": 15.0, "lag_p95": 28.0}
    ours = {"requests_per_task": 9.9, "lag_mean": 10.5, "lag_p95": 20.0}
    assert bench.meets_goal(ours, base, 0.7)
    assert not bench.meets_goal(ours, base, 0.6)
    assert not bench.meets_goal({**ours, "requests_per_task": 10.01}, base, 0.7)
    assert not bench.meets_goal({**ours, "lag_p95": 28.1}, base, 0.7)
    assert not bench.meets_goal({**ours, "lag_mean": 10.6}, base, 0.7)
    assert bench.goal_target(1, 0) == 0.6
    assert bench.goal_target(1, 3) == 0.7
    assert bench.goal_target(2, 0) == 0.7


def test_near_the_limit_means_within_its_slack_at_no_more_requests_and_p95() -> None:
    """The goal's other terms: a mean lag within 1.2x of the limit's, the
    requests and the p95 as in the 0.7x terms."""
    _, bench = _modules()
    base = {"requests_per_task": 10.0, "lag_mean": 15.0, "lag_p95": 28.0}
    ours = {"requests_per_task": 9.9, "lag_mean": 12.0, "lag_p95": 20.0}
    assert not bench.meets_goal(ours, base, 0.7)  # 0.8x fixed 30 s's
    assert bench.near_limit(ours, base, 10.0)  # 1.2x a limit of 0.67x
    assert not bench.near_limit(ours, base, 9.9)
    assert not bench.near_limit({**ours, "requests_per_task": 10.01}, base, 10.0)
    assert not bench.near_limit({**ours, "lag_p95": 28.1}, base, 10.0)


def test_evaluate_reports_the_ratios_the_benchmark_measures() -> None:
    survey, bench = _modules()
    workload = next(w for w in survey.FAMILIES["veo"]() if w.name == "n300_v10_f0_s20")
    result = survey.evaluate(workload, 2.0, 20250606)
    ours, base = bench.against_fixed30(survey.draw(workload), 2.0, 20250606)
    assert result["requests_vs_fixed30"] == ours["requests_per_task"] / base["requests_per_task"]
    assert result["lag_mean_vs_fixed30"] == ours["lag_mean"] / base["lag_mean"]
    assert result["met"] == bench.meets_goal(ours, base, 0.7)
    assert result["target"] == 0.7
    # The learning schedule beats fixed polling's lag on Veo's own shape.
    assert result["lag_mean_vs_fixed30"] < 0.8
    # The limit of the workload's distribution: no poller does better than
    # it on average, and it is measured at fixed 30 s's requests.
    limit_lag = survey.generating_limit(workload, survey.draw(workload), base["requests_per_task"])
    assert 0 < limit_lag < ours["lag_mean"]
    assert result["lag_mean_vs_limit"] == ours["lag_mean"] / limit_lag
    assert result["near_limit"] == bench.near_limit(ours, base, limit_lag)


def test_the_limit_of_a_distribution_is_made_for_other_draws_of_it() -> None:
    """The limit's schedules come from another sample of the workload: on a
    few hundred tasks the limit of their own distribution is optimistic."""
    survey, bench = _modules()
    workload = next(w for w in survey.FAMILIES["veo"]() if w.name == "n300_v95_f10_s30")
    tasks = survey.draw(workload)
    _, base = bench.against_fixed30(tasks, 2.0, 20250606)
    budget = base["requests_per_task"]
    generating = survey.generating_limit(workload, tasks, budget)
    _, own, _ = bench.limit(tasks, budget)
    assert sum(own) / len(own) < generating
    # Near 0.64x fixed 30 s's here: 0.7x is within 1.1x of it.
    assert 0.55 < generating / base["lag_mean"] < 0.75


# About 55 s of CPU over two processes (each workload's limit is computed
# from 100,000 draws): half a minute on a quiet machine, but 167 s seen on a
# loaded one; the suite's 120 s would fail it there, not a hang.
@pytest.mark.timeout(360)
def test_the_command_line_prints_one_object_per_workload() -> None:
    done = run("--families", "failures", "--max-tasks", "300", "--jobs", "2", "--json")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(rows) == 12
    assert {r["family"] for r in rows} == {"failures"}
    assert all(r["tasks"] == 300 for r in rows)
    for row in rows:
        assert row["met"] == (
            row["requests_vs_fixed30"] <= 1
            and row["lag_mean_vs_fixed30"] <= row["target"]
            and row["lag_p95_vs_fixed30"] <= 1
        )
        assert row["near_limit"] == (
            row["requests_vs_fixed30"] <= 1
            and row["lag_mean_vs_limit"] <= 1.2
            and row["lag_p95_vs_fixed30"] <= 1
        )
        # The limit knows the distribution: the schedule that learns it lags more.
        assert row["lag_mean_vs_limit"] > 1


def test_the_report_names_the_misses_and_counts_them() -> None:
    survey, _ = _modules()
    results = [
        {"family": "veo", "workload": "a", "tasks": 300, "requests_vs_fixed30": 0.95,
         "lag_mean_vs_fixed30": 0.65, "lag_p95_vs_fixed30": 0.8, "lag_mean_vs_limit": 1.1,
         "target": 0.7, "met": True, "near_limit": True},
        {"family": "veo", "workload": "b", "tasks": 300, "requests_vs_fixed30": 1.01,
         "lag_mean_vs_fixed30": 0.5, "lag_p95_vs_fixed30": 0.7, "lag_mean_vs_limit": 1.0,
         "target": 0.7, "met": False, "near_limit": False},
        {"family": "offset", "workload": "c", "tasks": 300, "requests_vs_fixed30": 0.9,
         "lag_mean_vs_fixed30": 0.75, "lag_p95_vs_fixed30": 0.9, "lag_mean_vs_limit": 1.15,
         "target": 0.7, "met": False, "near_limit": True},
    ]
    text = survey.report(results)
    misses = text.split("Ratios")[0]
    assert "| b " in misses
    assert "| c " in misses
    assert "| a " not in misses
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("|")}
    # Workloads, goal missed, nor near the limit, over fixed polling's requests.
    assert [cell.strip() for cell in rows["veo"].split("|")[2:6]] == ["2", "1", "1", "1"]
    assert [cell.strip() for cell in rows["offset"].split("|")[2:6]] == ["1", "1", "0", "0"]
    assert [cell.strip() for cell in rows["all"].split("|")[2:6]] == ["3", "2", "1", "1"]
    assert [cell.strip() for cell in rows["c"].split("|")[6:8]] == ["1.150x", "yes"]


def test_a_published_report_is_headed_by_the_command_that_reruns_it() -> None:
    survey, _ = _modules()
    note = {"date": "2026-12-03 20:00 UTC", "cores": 2, "cpu": "x", "python": "3.11",
            "aiohttp": "3.14", "platform": "linux", "commit": "abc1234"}
    row = {"family": "random", "workload": "rnd001", "tasks": 1000, "requests_vs_fixed30": 0.97,
           "lag_mean_vs_fixed30": 0.6, "lag_p95_vs_fixed30": 0.8, "lag_mean_vs_limit": 1.05,
           "target": 0.7, "met": True, "near_limit": True}
    alone = survey.report([row], note).splitlines()[0]
    assert alone == "## Schedule survey (`survey_schedule.py --families random`)"
    mixed = survey.report([row, {**row, "family": "veo", "workload": "n300"}], note)
    assert mixed.splitlines()[0] == "## Schedule survey (`survey_schedule.py`)"
    assert survey.RANDOM_NAME != survey.NAME  # its own section and JSON


def test_bad_arguments_are_refused_before_any_work() -> None:
    for args, said in (
        (("--families", "nope"), "unknown family nope"),
        (("--jobs", "0"), "--jobs must be at least 1"),
        (("--max-tasks", "10"), "no workload is that small"),
        (("--spacing", "0"), "--spacing must be a positive"),
    ):
        done = run(*args)
        assert done.returncode == 2
        assert said in done.stderr


@pytest.mark.parametrize(
    "name",
    [
        "one_n300_veo3_s20_l5",
        "one_n300_veo3_s30_l5",
        "one_n300_veo3_s40_l2",
        "one_n300_veo3_fast_s30_l0",
    ],
)
def test_files_of_one_model_with_long_renders_spend_no_more_than_fixed_polling(
    name: str,
) -> None:
    """Four of the files of 300 renders of one model the survey found over
    fixed 30 s polling's requests (1.006-1.04x): the learned tail was thin
    and polled every 4-14 s. With gaps past the bulk of at least a
    twentieth of the age, each spends no more, at a lag still under fixed
    polling's."""
    survey, bench = _modules()
    workload = next(w for w in survey.FAMILIES["one"]() if w.name == name)
    ours, base = bench.against_fixed30(survey.draw(workload), survey.SPACING, survey.SEED)
    assert ours["requests_per_task"] <= base["requests_per_task"]
    assert ours["lag_mean"] <= 0.75 * base["lag_mean"]
    assert ours["lag_p95"] <= base["lag_p95"]
