"""The ``veo-async`` command line against a FakeKie served on loopback by the
test's own event loop.

Most runs are in process (:func:`tests._cli.cli`: ``run_cli`` in a worker
thread, with a child's streams and environment); a real child process
(``python -m veo_async`` or the console script) is kept where the process is
the point: Ctrl-C and SIGTERM, ``python -m``, the console script, the missing
``cli`` extra, ``simulate`` as a server, and the key never shown by a real
process, even with --verbose.

The simulator expects a distinctive key, and every run's output is checked
for it (and for tracebacks), so each test also pins "the key is never shown".
Command-line mistakes are checked in-process through :func:`run_cli`, which
is what the console script calls; they never reach the event loop.
"""

from __future__ import annotations

import ast
import asyncio
import fcntl
import io
import json
import os
import pty
import re
import signal
import socket
import struct
import sys
import termios
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from veo_async import (
    PollPolicy,
    RecordInfo,
    RecordNotFoundError,
    TaskFailedError,
    TaskStatus,
    TransportError,
    VeoSession,
)
from veo_async.cli import EXIT_INTERRUPTED, INTERRUPTED, MISSING_EXTRA, run_cli
from veo_async.cli._errors import describe_error
from veo_async.cli._options import Settings
from veo_async.cli._reach import SilenceDetector
from veo_async.testing import FakeKie, Fault

from ._cli import (
    FAST,
    KEY,
    ROOT,
    WRONG_KEY,
    Run,
    against,
    assert_clean,
    child_env,
    cli,
    read_until,
    start,
    usage_error_of,
    veo_async,
)

#: Real threads or processes and a real simulator: real time, real HTTP.
pytestmark = [
    pytest.mark.real_time, pytest.mark.loopback, pytest.mark.usefixtures("reap_children")
]

ROWS = ("succeeded", "failed (status 2)", "failed (status 3)", "timeout", "error")


@pytest.fixture
async def kie() -> AsyncIterator[FakeKie]:
    """A simulator expecting the distinctive key."""
    async with FakeKie(api_key=KEY) as server:
        yield server


# -- wait ------------------------------------------------------------------------------


async def test_wait_streams_one_json_line_per_task_with_its_outcome(kie: FakeKie) -> None:
    """Every id gets exactly one line with the right outcome; any failure exits 1."""
    kie.add_task("ok-fast", complete_after=0.05)
    # ok-late ends well after the others (a loaded machine delays every poll).
    kie.add_task("ok-late", complete_after=1.0, faults=[Fault.server_error()])
    kie.add_task("refused", complete_after=0.1, final_status=2)
    kie.add_task("broken", complete_after=0.2, final_status=3)
    kie.add_task("forbidden", faults=[Fault.body_code(404, "Not Found")])
    run = await cli("wait", *against(kie, *FAST, "ok-fast", "ok-late", "refused",
                                     "broken", "forbidden"))

    assert run.code == 1
    lines = run.by_id()
    assert set(lines) == {"ok-fast", "ok-late", "refused", "broken", "forbidden"}
    for task_id in ("ok-fast", "ok-late"):
        line = lines[task_id]
        assert line["outcome"] == "succeeded"
        assert "error" not in line
        assert line["record"]["status"] == "SUCCESS"
        assert line["record"]["response"]["result_urls"]
    for task_id, status in (("refused", "FAILED"), ("broken", "GENERATION_FAILED")):
        line = lines[task_id]
        assert line["outcome"] == "failed"
        assert line["error"] == "TaskFailedError"
        assert status in line["message"]
        assert line["record"]["status"] == status
    assert lines["forbidden"]["outcome"] == "error"
    assert lines["forbidden"]["error"] == "NotFoundError"
    assert "record" not in lines["forbidden"]
    # Streamed in completion order: the quick ones first.
    assert [line["task_id"] for line in run.lines()][-1] == "ok-late"
    summary = run.stderr.strip().splitlines()[-1]
    assert "2 succeeded, 2 failed, 0 timed out, 1 error;" in summary


async def test_wait_exits_0_when_every_task_succeeds(kie: FakeKie) -> None:
    """All successes: exit 0 and a summary line on stderr, nothing else on stdout."""
    kie.add_tasks([f"t{n}" for n in range(5)])
    run = await cli("wait", *against(kie, *FAST, "t0", "t1", "t2", "t3", "t4"))
    assert run.code == 0
    assert {line["outcome"] for line in run.by_id().values()} == {"succeeded"}
    assert len(run.lines()) == 5
    assert "5 tasks in" in run.stderr
    assert "5 succeeded, 0 failed" in run.stderr


async def test_wait_exits_3_when_a_task_times_out_and_none_failed(kie: FakeKie) -> None:
    """A task still generating at --timeout: outcome timeout with its last record, exit 3."""
    kie.add_task("done")
    kie.add_task("stuck", complete_after=60)
    run = await cli("wait", *against(kie, *FAST, "--timeout", "0.5", "done", "stuck"))
    assert run.code == 3
    lines = run.by_id()
    assert lines["done"]["outcome"] == "succeeded"
    assert lines["stuck"]["outcome"] == "timeout"
    assert lines["stuck"]["error"] == "WaitTimeoutError"
    assert lines["stuck"]["record"]["status"] == "GENERATING"


async def test_a_failure_outweighs_a_timeout_in_the_exit_code(kie: FakeKie) -> None:
    """Failed and timed out together: exit 1, the more serious of the two."""
    kie.add_task("refused", final_status=2)
    kie.add_task("stuck", complete_after=60)
    run = await cli("wait", *against(kie, *FAST, "--timeout", "0.3", "refused", "stuck"))
    assert run.code == 1
    assert {k: v["outcome"] for k, v in run.by_id().items()} == {
        "refused": "failed",
        "stuck": "timeout",
    }


async def test_wait_reads_ids_from_stdin_skipping_blanks_and_comments(kie: FakeKie) -> None:
    """``-`` reads standard input: blank lines, # comments and layout are skipped."""
    kie.add_tasks(["a1", "a2", "a3"])
    stdin = "# tasks of the night run\n\na1\n   a2   \r\n\n# a9 is commented out\na3\na1\n"
    run = await cli("wait", *against(kie, *FAST, "-"), stdin=stdin)
    assert run.code == 0
    assert set(run.by_id()) == {"a1", "a2", "a3"}  # a1 given twice, reported once
    assert kie.polls("a9") == 0


async def test_wait_from_file_to_output_file(kie: FakeKie, tmp_path: Path) -> None:
    """--from FILE gives the ids, --output FILE gets the lines, stdout stays empty."""
    kie.add_tasks(["f1", "f2"])
    kie.add_task("f3", final_status=3)
    ids = tmp_path / "ids.txt"
    ids.write_text("# from a file\nf1\nf2\n\nf3\n", encoding="utf-8")
    out = tmp_path / "results.jsonl"
    run = await cli("wait", *against(kie, *FAST, "--from", str(ids), "-o", str(out)))
    assert run.code == 1
    assert run.stdout == ""
    written = Run(0, out.read_text(encoding="utf-8"), "").by_id()
    assert {k: v["outcome"] for k, v in written.items()} == {
        "f1": "succeeded",
        "f2": "succeeded",
        "f3": "failed",
    }


async def test_output_dash_is_standard_output(
    kie: FakeKie, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``-o -`` means standard output, as ``-`` does for every input; it used to
    write a file named "-"."""
    monkeypatch.chdir(tmp_path)
    kie.add_tasks(["d1"])
    run = await cli("wait", *against(kie, *FAST, "-o", "-", "d1"))
    assert run.code == 0
    assert set(run.by_id()) == {"d1"}
    assert not (tmp_path / "-").exists()


async def test_wait_with_a_live_display_keeps_stdout_machine_readable(kie: FakeKie) -> None:
    """--progress live draws on stderr (rich); stdout still holds only JSON lines."""
    kie.add_tasks([f"live{n}" for n in range(3)])
    kie.add_task("slow", complete_after=0.5)
    run = await cli(
        "wait", *against(kie, *FAST, "--progress", "live", "live0", "live1", "live2", "slow")
    )
    assert run.code == 0
    assert set(run.by_id()) == {"live0", "live1", "live2", "slow"}
    assert "finished" in run.stderr
    assert "4 tasks in" in run.stderr


async def test_on_a_terminal_live_progress_keeps_each_result_on_one_line(kie: FakeKie) -> None:
    """Standard output and error on an 80-column terminal, live progress: each
    JSON line (longer than 80 characters) stays one line, uncoloured. rich
    used to wrap the lines it passes through at the width, breaking the JSON."""
    kie.add_tasks(["ok-1", "ok-2"])
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "veo_async",
            "wait", *against(kie, *FAST, "--progress", "live", "ok-1", "ok-2"),
            stdin=child, stdout=child, stderr=child,
        )  # fmt: skip
    finally:
        os.close(child)
    await asyncio.wait_for(proc.wait(), 30)
    screen = await asyncio.to_thread(_read_all, main)
    text = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", screen).replace("\r", "")
    # (A result may follow what is left of a progress line once escapes are stripped.)
    results = [
        json.loads(line[line.index('{"task_id"') :])
        for line in text.splitlines()
        if '{"task_id"' in line
    ]
    assert proc.returncode == 0
    assert sorted(line["task_id"] for line in results) == ["ok-1", "ok-2"]
    raw = next(line for line in screen.split("\n") if '{"task_id": "ok-1"' in line)
    assert "\x1b[" not in raw[raw.index('{"task_id"') :]  # no colours inside the JSON


def _read_all(fd: int) -> str:
    """All a pseudo-terminal's reader side holds (until its writers are gone), closed."""
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except OSError:  # EIO: the terminal's other side is closed
        pass
    finally:
        os.close(fd)
    return b"".join(chunks).decode()


async def test_a_wrong_key_is_one_error_line_in_a_child_process(kie: FakeKie) -> None:
    """A 401, in a real child (no test logging in the way): the command's own
    error line only, not the library's "session stops" warning above it; with
    --verbose the library's log does show it."""
    run = await veo_async("credits", "--base-url", kie.base_url, "--api-key", WRONG_KEY)
    assert run.code == 1
    assert run.stdout == ""
    [line] = run.stderr.splitlines()
    assert line.startswith("veo-async: ")
    assert "AuthenticationError" in line
    verbose = await veo_async(
        "--verbose", "credits", "--base-url", kie.base_url, "--api-key", WRONG_KEY
    )
    assert verbose.code == 1
    assert "the session stops" in verbose.stderr


async def test_the_key_is_never_shown_even_verbose_or_rejected(kie: FakeKie) -> None:
    """Key from the environment, --verbose logging, a rejected key: never printed."""
    kie.add_task("k1", faults=[Fault.bad_gateway_html(), Fault.http_429(retry_after=0.05)])
    env = child_env(KIE_API_KEY=KEY)
    run = await veo_async(
        "--verbose", "wait", "--base-url", kie.base_url, *FAST, "k1", env=env
    )
    assert run.code == 0
    assert "veo_async" in run.stderr  # the DEBUG log did run
    assert_clean(run)

    rejected = await veo_async(
        "wait", "--base-url", kie.base_url, "--api-key", WRONG_KEY, *FAST, "k1", "--verbose"
    )
    assert rejected.code == 1
    line = rejected.by_id()["k1"]
    assert line["outcome"] == "error"
    assert line["error"] == "AuthenticationError"
    assert_clean(rejected)


@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"]
)
async def test_ctrl_c_stops_wait_cleanly_with_a_summary_and_exit_130(
    kie: FakeKie, signum: signal.Signals, code: int
) -> None:
    """SIGINT mid-run: what finished is on stdout, a summary on stderr, exit 130
    (SIGTERM: 143), no traceback, and no request left open on the server."""
    kie.add_tasks(["quick1", "quick2"])
    for n in range(3):
        kie.add_task(f"long{n}", complete_after=60)
    proc = await start(
        "wait",
        *against(kie, *FAST, "--progress", "plain", "--progress-interval", "0.05"),
        "quick1", "quick2", "long0", "long1", "long2",
    )
    seen = await read_until(proc.stderr, "2/5 finished")
    proc.send_signal(signum)
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    run = Run(proc.returncode or 0, out.decode(), seen + err.decode())

    assert run.code == code
    assert_clean(run)
    assert set(run.by_id()) == {"quick1", "quick2"}
    summary = run.stderr.strip().splitlines()[-1]
    assert "interrupted after" in summary
    assert "2 of 5 tasks finished" in summary
    assert "3 still generating" in summary
    assert kie.in_flight == 0


async def test_a_sigint_ignored_by_the_parent_stays_ignored(kie: FakeKie) -> None:
    """Started with SIGINT ignored (a shell's "cmd &" in a script does that), the
    command keeps ignoring it, as programs do: a Ctrl-C aimed at the foreground
    does not stop it; it ends at its own --timeout (exit 3). It used to install
    its own handler and stop (exit 130)."""
    kie.add_task("pend-1", complete_after=60)
    ignoring = ["sh", "-c", 'trap "" INT; exec "$0" "$@"', sys.executable, "-m", "veo_async"]
    proc = await start(
        "wait", *against(kie, *FAST, "--timeout", "2", "--progress", "plain",
                         "--progress-interval", "0.05", "pend-1"),
        command=ignoring,
    )  # fmt: skip
    seen = await read_until(proc.stderr, "finished")
    proc.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    run = Run(proc.returncode or 0, out.decode(), seen + err.decode())
    assert run.code == 3, run.stderr
    assert run.by_id()["pend-1"]["outcome"] == "timeout"
    assert "interrupted" not in run.stderr


async def test_ctrl_c_during_generate_wait_still_prints_the_created_task() -> None:
    """generate --wait without a store, interrupted while the created task still
    renders: its "created" line (with the id the service charged for) is on
    stdout before the exit 130; it used to print nothing, losing the id."""
    async with FakeKie(api_key=KEY) as slow:  # real render times: minutes
        proc = await start(
            "generate",
            *against(slow, "A fox", "--wait", *FAST, "--progress", "plain"),
        )
        for _ in range(400):  # until the created task was polled once
            if slow.created_ids and slow.polls(slow.created_ids[0]):
                break
            await asyncio.sleep(0.05)
        [created] = slow.created_ids
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), 20)
    run = Run(proc.returncode or 0, out.decode(), err.decode())
    assert run.code == 130
    assert_clean(run)
    [line] = run.lines()
    assert (line["task_id"], line["outcome"]) == (created, "created")
    assert line["request"]["prompt"] == "A fox"
    summary = run.stderr.strip().splitlines()[-1]
    assert "1 of 1 request created a task (0 finished" in summary
    assert "1 still generating)" in summary


async def test_ctrl_c_during_generate_counts_requests_not_sent_as_such(
    tmp_path: Path,
) -> None:
    """generate interrupted while requests wait for the creation budget (20 per
    10 s): the summary counts the tasks created and the requests not sent,
    instead of calling created tasks "succeeded" and unsent ones "generating"."""
    requests = tmp_path / "requests.jsonl"
    requests.write_text("".join(f'{{"prompt": "fox {n}"}}\n' for n in range(25)))
    async with FakeKie(api_key=KEY, credits=100_000) as kie:
        proc = await start(
            "generate", *against(kie, "--from", str(requests), "--progress", "plain",
                                 "--progress-interval", "0.2")
        )
        seen = ""
        while seen.count('"created"') < 20:  # the lines of the 20 the budget lets out at once
            seen += await read_until(proc.stdout, '"created"')
        # A progress line counts the 5 waiting for the budget as not created
        # (they read as "generating", as if created).
        await read_until(proc.stderr, "not created 5 ·")
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), 20)
        created = len(kie.created_ids)
    run = Run(proc.returncode or 0, seen + out.decode(), err.decode())
    assert run.code == 130
    assert created == 20
    lines = run.lines()
    # One line per request: those never sent too (there was none: a pipeline
    # could only find them by comparing its input with the lines).
    assert [line["outcome"] for line in lines] == ["created"] * 20 + ["not sent"] * 5
    assert len({line["request"]["prompt"] for line in lines}) == 25
    assert all("nothing was created" in line["message"] for line in lines[20:])
    summary = run.stderr.strip().splitlines()[-1]
    assert "20 of 25 requests created a task, 0 answered without one" in summary
    assert "0 sent without an answer" in summary
    assert "5 not sent;" in summary
    assert "succeeded" not in summary
    assert "generating" not in summary


async def test_ctrl_c_during_generate_marks_creates_sent_without_an_answer(
    tmp_path: Path,
) -> None:
    """generate interrupted while create requests are out (the service created
    and charged them, and has not answered): each gets an "uncertain" line
    with its request, and the summary counts them apart from those not sent
    (still waiting for the creation budget, 20 per 10 s). They used to leave
    no line at all: a rerun of the same file paid for them twice."""
    requests = tmp_path / "requests.jsonl"
    requests.write_text("".join(f'{{"prompt": "fox {n}"}}\n' for n in range(22)))
    async with FakeKie(api_key=KEY, credits=100_000) as kie:
        kie.inject_create(Fault.slow(3600), count=22)  # created and charged, never answered
        proc = await start(
            "generate", *against(kie, "--from", str(requests), "--progress", "plain")
        )
        for _ in range(400):
            if kie.created == 20:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), 20)
        created = kie.created
    run = Run(proc.returncode or 0, out.decode(), err.decode())
    assert run.code == 130
    assert created == 20
    lines = [line for line in run.lines() if line["outcome"] != "not sent"]
    assert [line["outcome"] for line in lines] == ["uncertain"] * 20
    assert all(line["error"] == "Interrupted" for line in lines)
    assert all("may have created a task" in line["message"] for line in lines)
    assert len({line["request"]["prompt"] for line in lines}) == 20
    assert len(run.lines()) == 22  # and a "not sent" line for each of the other two
    summary = run.stderr.strip().splitlines()[-1]
    assert "0 of 22 requests created a task" in summary
    assert "20 sent without an answer" in summary
    assert "2 not sent;" in summary


# -- status ----------------------------------------------------------------------------


async def test_status_json_polls_each_id_once(kie: FakeKie) -> None:
    """status --json: one line per id in input order, unreadable ones as errors, exit 1."""
    kie.add_task("s-done")
    kie.add_task("s-running", complete_after=60)
    kie.add_task("s-failed", final_status=2, error_message="Prompt flagged")
    run = await cli(
        "status", "--json", *against(kie, "s-running", "s-done", "s-failed", "s-unknown")
    )
    assert run.code == 1
    lines = run.lines()
    assert [line["task_id"] for line in lines] == ["s-running", "s-done", "s-failed", "s-unknown"]
    assert [line["status"] for line in lines] == ["GENERATING", "SUCCESS", "FAILED", None]
    assert lines[2]["record"]["error_message"] == "Prompt flagged"
    assert lines[3]["error"] == "RecordNotFoundError"
    assert all(kie.polls(task_id) == 1 for task_id in ("s-done", "s-running", "s-unknown"))


async def test_status_table_shows_each_task(kie: FakeKie) -> None:
    """status without --json: a table with each id and its status; exit 0 when all read."""
    kie.add_task("row-ok")
    kie.add_task("row-wip", complete_after=60)
    run = await cli("status", *against(kie, "row-ok", "row-wip"))
    assert run.code == 0
    rows = {line.split()[1]: line for line in run.stdout.splitlines() if "row-" in line}
    assert "SUCCESS" in rows["row-ok"]
    assert "row-ok/video.mp4" in rows["row-ok"]
    assert "GENERATING" in rows["row-wip"]


@pytest.mark.parametrize("json_lines", [False, True])
async def test_status_shows_a_record_on_a_stdout_that_cannot_carry_its_text(
    kie: FakeKie, json_lines: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a stdout in ASCII (LC_ALL=C, PYTHONIOENCODING=ascii) a record whose
    error message held an accent and an emoji ended ``status`` with
    "unexpected UnicodeEncodeError", exit 1, nothing shown. The table shows
    them as backslash escapes; JSON lines as \\u escapes (the same JSON)."""
    kie.add_task("s-failed", final_status=2, error_message="\u00c9chec \U0001f431")
    raw = io.BytesIO()
    monkeypatch.setattr("sys.stdout", io.TextIOWrapper(raw, encoding="ascii", write_through=True))
    argv = ["status", *(["--json"] if json_lines else []), *against(kie, "s-failed")]
    code = await asyncio.wait_for(asyncio.to_thread(run_cli, argv), 30)
    assert code == 0
    shown = raw.getvalue().decode("ascii")
    if json_lines:
        (line,) = shown.splitlines()
        assert json.loads(line)["record"]["error_message"] == "\u00c9chec \U0001f431"
    else:
        assert "FAILED" in shown
        assert "\\xc9chec" in shown


async def test_run_cli_puts_back_the_streams_it_made_escape(
    kie: FakeKie, monkeypatch: pytest.MonkeyPatch
) -> None:
    """run_cli is public: a program of the user's may call it. Its stdout in
    ASCII was left writing backslash escapes for good (its own print of an
    accent no longer raised); it is put back as it was."""
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="ascii", errors="strict")
    monkeypatch.setattr("sys.stdout", stdout)
    argv = ["status", *against(kie, "s-none")]
    await asyncio.wait_for(asyncio.to_thread(run_cli, argv), 30)
    assert stdout.errors == "strict"


async def test_status_table_shows_ids_and_messages_as_written_each_row_on_one_line(
    kie: FakeKie,
) -> None:
    """Ids and error messages that look like rich markup ("[/]", "[red]",
    "[link=...]") are shown as written (one broke the table, others showed as
    another id); piped, a row stays on one line however long its URL."""
    long_id = "veo_" + "a" * 90
    kie.add_task(long_id)
    kie.add_task("[red]abc", final_status=2, error_message="bad [/] [bold]input")
    run = await cli("status", *against(kie, "x[/]", "[red]abc", long_id))
    assert run.code == 1, run.stderr
    out = run.stdout
    assert "x[/]" in out
    assert "[red]abc" in out
    assert "bad [/] [bold]input" in out
    long_row = next(line for line in out.splitlines() if long_id in line)
    assert f"{long_id}/video.mp4" in long_row


# -- demo and simulate -----------------------------------------------------------------


async def test_demo_runs_to_a_summary_whose_outcomes_add_up() -> None:
    """demo --tasks 50: the outcome rows sum to the tasks created, and the
    measurements (requests, 429s, credits, lags) are filled in, in simulated seconds."""
    run = await cli("demo", "--tasks", "50", "--speed", "1000", "--seed", "7")
    assert run.code == 0, run.stderr
    counts: dict[str, int] = {}
    for line in run.stdout.splitlines():
        match = re.match(r"\W*([a-z][a-z ()0-9]*?)\s*\W\s*(\d+)\s*\W*$", line)
        if match and match.group(1) in (*ROWS, "total"):
            counts[match.group(1)] = int(match.group(2))
    assert set(counts) == {*ROWS, "total"}, run.stdout
    assert sum(counts[row] for row in ROWS) == counts["total"]
    created = re.search(r"tasks created\W+(\d+) \((\d+) generations, (\d+) extends\)",
                        run.stdout)
    assert created is not None, run.stdout
    assert int(created.group(1)) == counts["total"]
    assert int(created.group(2)) == 49  # one of the 50 creates was made uncertain
    assert counts["succeeded"] > counts["failed (status 2)"] + counts["failed (status 3)"]
    for measure in ("requests per task", "429s absorbed", "credits spent",
                    "detection lag p50", "detection lag p95", "1080p versions"):
        assert measure in run.stdout
    assert "s simulated)" in run.stdout
    # What is simulated is said first, on stderr; the summary line comes last.
    err = run.stderr.strip().splitlines()
    assert err[0].startswith("veo-async: demo: simulating 50 generations")
    assert "seed 7" in err[0]
    assert f"{counts['total']} tasks in" in err[-1]
    assert "s simulated:" in err[-1]
    assert "simulating" not in run.stdout


async def test_demo_json_summary_is_consistent_and_reproducible() -> None:
    """demo --json: created = succeeded + failed, the simulator made exactly the tasks
    created plus the uncertain one, no create met a 429 (the budget paced 60 creates
    against 20 per 10 s), credits were spent as charged; the same --seed gives the
    same outcomes."""
    args = ("demo", "--tasks", "60", "--speed", "1000", "--seed", "11", "--json")
    first, second = await cli(*args), await cli(*args)
    reports = [json.loads(first.stdout), json.loads(second.stdout)]
    assert first.code == second.code == 0
    assert reports[0]["outcomes"] == reports[1]["outcomes"]
    for report in reports:
        outcomes = report["outcomes"]
        assert report["generations"] == 60
        assert report["uncertain"] == 1  # the scripted dropped connection
        assert report["tasks"] == 60 - 1 + report["extended"]
        assert report["simulator_created"] == report["tasks"] + report["uncertain"]
        assert sum(outcomes.values()) == report["tasks"]
        assert outcomes["succeeded"] + outcomes["failed (status 2)"] == report["tasks"]
        assert report["extended"] >= 1
        assert report["upgraded_1080p"] >= 1
        # Every generation once, the 455 resent once, every extend once.
        assert report["creates"] == 60 + 1 + report["extended"]
        assert report["create_rate_limited"] == 0
        assert report["rate_limited"] >= 1  # the burst of 429s on the polls was absorbed
        assert report["credits_spent"] == report["simulator_charged"] > 0
        assert report["requests"] == (
            report["polls"] + report["creates"] + report["upgrade_requests"] + 2
        )  # + the two balance reads
        assert report["polls"] >= report["tasks"]
        assert report["lag_p50"] is not None
        assert report["lag_p95"] >= report["lag_p50"] >= 0
        assert report["elapsed"] > 120  # simulated seconds: renders take minutes


async def test_ctrl_c_stops_the_demo_with_exit_130() -> None:
    """SIGINT during the demo: simulator and session closed, summary line, exit 130."""
    proc = await start(
        "demo", "--tasks", "20", "--speed", "1", "--progress", "plain",
        "--progress-interval", "0.05",
    )
    first = await read_until(proc.stderr, "finished")
    proc.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    run = Run(proc.returncode or 0, out.decode(), first + err.decode())
    assert run.code == 130
    assert_clean(run)
    assert "interrupted after" in run.stderr
    assert re.search(r"of \d+ tasks finished", run.stderr)


async def test_simulate_serves_documented_ids_until_ctrl_c() -> None:
    """simulate prints its URL and key, serves the fixed and synthetic ids, exits 0 on SIGINT."""
    proc = await start(
        "simulate", "--port", "0", "--tasks", "3", "--speed", "1000", "--credits", "1000000"
    )
    banner = await read_until(proc.stdout, "Ctrl-C")
    base_url = re.search(r"base url: (\S+)", banner)
    assert base_url is not None
    assert "api key:  test-key" in banner
    assert "sim-00001 .. sim-00003" in banner
    policy = PollPolicy(interval=0.02, max_interval=0.05, timeout=10, not_found_grace=0.1)
    async with VeoSession("test-key", base_url=base_url.group(1), policy=policy) as veo:
        assert (await veo.record_info("sim-success")).status is TaskStatus.SUCCESS
        assert (await veo.record_info("sim-failed")).status is TaskStatus.FAILED
        assert (await veo.record_info("sim-pending")).status is TaskStatus.GENERATING
        with pytest.raises(RecordNotFoundError):
            await veo.record_info("not-a-sim-id")
        results = await veo.wait_many(
            ["sim-00001", "sim-00002", "sim-00003"], return_exceptions=True
        )
        assert all(isinstance(r, (RecordInfo, TaskFailedError)) for r in results)
        assert await veo.credits() == 1_000_000  # --credits (the default ran out at 3 veo3)
    proc.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0
    assert "stopped after" in err.decode()
    assert "Traceback" not in err.decode()


# -- the console script and usage errors -----------------------------------------------


async def test_console_script_documents_the_exit_codes() -> None:
    """The installed ``veo-async`` script runs; --help lists every exit code."""
    script = Path(sys.executable).with_name("veo-async")
    if not script.exists():
        pytest.skip("the console script is not installed next to this interpreter")
    run = await veo_async("wait", "--help", command=[str(script)])
    assert run.code == 0
    for code in ("0 ", "1 ", "2 ", "3 ", "130"):
        assert f"\n    {code}" in run.stdout


async def test_usage_errors_in_a_real_process_are_one_line_and_exit_2() -> None:
    """As a user sees it: no ids, then no key -> one ``veo-async: error:`` line, exit 2."""
    no_ids, no_key = await asyncio.gather(veo_async("wait"), veo_async("status", "t1"))
    for run, expected in ((no_ids, "no task ids"), (no_key, "no API key")):
        assert run.code == 2
        assert run.stdout == ""
        assert run.stderr.count("\n") == 1
        assert run.stderr.startswith("veo-async: error: ")
        assert expected in run.stderr


BAD_INPUT = [
    pytest.param(["wait", "--api-key", KEY], "no task ids given", id="no-ids"),
    pytest.param(["wait", "t1"], "no API key", id="no-key"),
    pytest.param(["status", "t1"], "no API key", id="status-no-key"),
    pytest.param(["wait", "--api-key", "  ", "t1"], "the API key is blank", id="blank-key"),
    pytest.param(
        ["wait", "--api-key", KEY, "--from", "/nonexistent/ids.txt"],
        "cannot read ids from /nonexistent/ids.txt",
        id="unreadable-file",
    ),
    pytest.param(["wait", "--api-key", KEY, "x" * 300], "characters long", id="long-id"),
    pytest.param(["wait", "--api-key", KEY, "bad\tid"], "control characters", id="control-id"),
    pytest.param(["wait", "--api-key", KEY, " t1"], "whitespace", id="padded-id"),
    pytest.param(["wait", "--api-key", KEY, "a b"], "contains whitespace", id="spaced-id"),
    pytest.param(
        ["wait", "--api-key", KEY, "--unreachable-after", "0", "t1"],
        "--unreachable-after",
        id="unreachable-after-0",
    ),
    pytest.param(
        ["wait", "--api-key", KEY, "--timeout", "-5", "t1"], "--timeout", id="neg-timeout"
    ),
    pytest.param(["wait", "--api-key", KEY, "--timeout", "soon", "t1"], "'soon'", id="nan-timeout"),
    pytest.param(["wait", "--api-key", KEY, "--concurrency", "0", "t1"], "--concurrency",
                 id="concurrency-0"),
    pytest.param(["wait", "--api-key", KEY, "--rate", "-1", "t1"], "--rate", id="neg-rate"),
    pytest.param(
        ["wait", "--api-key", KEY, "--interval", "5", "--poll-cap", "1", "t1"],
        "--poll-cap (1) must be >= --interval (5)",
        id="cap-below-interval",
    ),
    pytest.param(["wait", "--api-key", KEY, "--jitter", "1.5", "t1"], "jitter", id="jitter"),
    pytest.param(["wait", "--api-key", KEY, "--factor", "0.5", "t1"], "--factor", id="factor"),
    pytest.param(["wait", "--api-key", KEY, "--grace", "nan", "t1"], "--grace", id="nan-grace"),
    *(
        pytest.param(
            ["wait", "--api-key", KEY, option, value, "t1"],
            f"{option}': {value!r} is not a finite number",
            id=f"{value}{option}",
        )
        for option in ("--unreachable-after", "--progress-interval", "--rate")
        for value in ("nan", "inf")
    ),
    pytest.param(["demo", "--speed", "nan"], "is not a finite number", id="nan-speed"),
    pytest.param(
        ["wait", "--api-key", KEY, "--base-url", "ftp://kie", "t1"], "http", id="bad-url"
    ),
    pytest.param(
        ["wait", "--api-key", KEY, "--base-url", "http://", "t1"], "with a host", id="no-host"
    ),
    pytest.param(
        ["wait", "--api-key", KEY, "--base-url", "http://a b", "t1"], "whitespace",
        id="url-with-space",
    ),
    pytest.param(
        ["wait", "--api-key", KEY, "-o", "/nonexistent/dir/out.jsonl", "t1"],
        "cannot write",
        id="unwritable-output",
    ),
    pytest.param(
        ["wait", "--api-key", KEY, "--store", "/nonexistent/dir/s.db", "t1"],
        "--store: the directory of /nonexistent/dir/s.db does not exist",
        id="store-in-no-directory",
    ),
    pytest.param(
        ["generate", "--api-key", KEY, "--store", "/", "a cat"],
        "--store: / is a directory",
        id="store-a-directory",
    ),
    pytest.param(["wait", "--bogus"], "--bogus", id="unknown-option"),
    pytest.param(["frobnicate"], "frobnicate", id="unknown-command"),
    pytest.param(["demo", "--tasks", "0"], "--tasks", id="demo-no-tasks"),
    pytest.param(["simulate", "--port", "70000"], "--port", id="bad-port"),
    pytest.param(["simulate", "--key", " "], "--key must not be blank", id="blank-sim-key"),
]


@pytest.mark.parametrize(("argv", "expected"), BAD_INPUT)
def test_bad_input_gets_one_line_and_exit_2(
    argv: list[str],
    expected: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each command-line mistake: one ``veo-async: error:`` line naming it, exit 2."""
    monkeypatch.delenv("KIE_API_KEY", raising=False)
    assert expected in usage_error_of(argv, capsys)


def test_ids_files_with_a_bom_or_bytes_that_are_not_utf8(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A byte-order mark opening an ids file is layout (Windows editors write
    one); bytes that are not UTF-8 are named by their line, before any request."""
    from veo_async.cli._ids import IdSourceError, collect_ids

    with_bom = tmp_path / "bom.txt"
    with_bom.write_bytes(b"\xef\xbb\xbfok-1\nok-2\n")
    assert collect_ids([], [str(with_bom)], io.StringIO()) == ["ok-1", "ok-2"]
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"ok-1\ncaf\xe9\n")
    assert run_cli(["wait", "--api-key", KEY, "--from", str(latin)]) == 2
    assert f"{latin}, line 2: not UTF-8 text" in capsys.readouterr().err
    # Standard input read with surrogateescape (a POSIX locale): the same message.
    stdin = io.StringIO(b"ok-1\ncaf\xe9\n".decode("utf-8", "surrogateescape"))
    with pytest.raises(IdSourceError, match="standard input, line 2: not UTF-8 text"):
        collect_ids(["-"], [], stdin)


def test_an_invalid_id_in_a_file_is_reported_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad id on line 3 of a file names the file and the line, before any request."""
    ids = tmp_path / "ids.txt"
    ids.write_text("t1\n# fine\n" + "y" * 300 + "\n", encoding="utf-8")
    assert run_cli(["wait", "--api-key", KEY, "--from", str(ids)]) == 2
    err = capsys.readouterr().err
    assert f"{ids}, line 3:" in err
    assert err.count("\n") == 1


# -- an unreachable service (issue 9, item 22) -----------------------------------------


def closed_port() -> int:
    """A loopback port that was just bound and released: connecting to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_wait_against_an_unreachable_host_says_so_and_ends_in_error() -> None:
    """Connection refused on every poll: one stderr warning naming the URL and the
    error, progress showing the latest error, outcome error (not timeout), exit 1."""
    base_url = f"http://127.0.0.1:{closed_port()}"
    run = await cli(
        "wait", "--base-url", base_url, "--api-key", KEY, *FAST, "--timeout", "1",
        "--unreachable-after", "0.3", "--progress", "plain", "--progress-interval", "0.4",
        "t1",
    )
    assert run.code == 1, run.stderr
    line = run.by_id()["t1"]
    assert line["outcome"] == "error"
    assert line["error"] == "TransportError"
    assert "record" not in line
    warnings = [w for w in run.stderr.splitlines() if "no successful answer" in w]
    assert len(warnings) == 1, run.stderr
    assert f"no successful answer from {base_url} for 0.3 s" in warnings[0]
    assert "every request failed (last error: TransportError:" in warnings[0]
    progress = [p for p in run.stderr.splitlines() if " finished · " in p]
    assert any("· last error: TransportError: " in p for p in progress), run.stderr
    assert "0 timed out, 1 error;" in run.stderr.splitlines()[-1]


def test_silence_detector_fires_once_per_silence_with_failures() -> None:
    """No answer for the window and some failures: fires once; an answer re-arms it."""
    detector = SilenceDetector(10.0)
    assert not detector.observe(0.0, requests=0, failures=0)
    assert not detector.observe(5.0, requests=1, failures=0)  # in flight: counts as progress
    assert not detector.observe(14.0, requests=3, failures=2)  # 9 s since the mark
    assert detector.observe(15.0, requests=4, failures=4)
    assert not detector.observe(30.0, requests=9, failures=9)  # said once
    assert not detector.observe(31.0, requests=11, failures=9)  # answers: the mark rises
    assert not detector.observe(40.0, requests=12, failures=10)
    assert detector.observe(41.0, requests=13, failures=11)  # a second outage


def test_silence_detector_needs_failures() -> None:
    """A quiet session (nothing requested, nothing failed) is not an unreachable one."""
    detector = SilenceDetector(1.0)
    assert not detector.observe(0.0, requests=5, failures=1)
    assert not detector.observe(100.0, requests=5, failures=1)


# -- simulate's User-Agent check (issue 9, item 24) ------------------------------------


@pytest.mark.parametrize(("flags", "expected"), [((), 403), (("--any-user-agent",), 200)],
                         ids=["default", "any-user-agent"])
async def test_simulate_refuses_curl_unless_any_user_agent(
    flags: tuple[str, ...], expected: int
) -> None:
    """A curl User-Agent gets Cloudflare's 403 by default (the banner says so), and an
    answer with --any-user-agent."""
    proc = await start("simulate", "--port", "0", "--tasks", "0", *flags)
    banner = await read_until(proc.stdout, "Ctrl-C")
    base_url = re.search(r"base url: (\S+)", banner)
    assert base_url is not None
    assert "user agents:" in banner
    assert ("--any-user-agent accepts them" in banner) is (expected == 403)
    headers = {"User-Agent": "curl/8.5.0", "Authorization": "Bearer test-key"}
    async with aiohttp.ClientSession(headers=headers) as http, http.get(
        f"{base_url.group(1)}/api/v1/veo/record-info", params={"taskId": "sim-success"}
    ) as response:
        body = await response.text()
    proc.send_signal(signal.SIGINT)
    await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0
    assert response.status == expected
    assert ("error code: 1010" in body) is (expected == 403)


# -- python -m, the cli extra, public imports only (issue 8, item 1) -------------------


@pytest.mark.parametrize("module", ["veo_async", "veo_async.cli"])
async def test_python_dash_m_runs_the_command_line(module: str) -> None:
    """``python -m veo_async`` (and ``-m veo_async.cli``) is the veo-async program."""
    run = await veo_async("--help", command=[sys.executable, "-m", module])
    assert run.code == 0
    assert run.stdout.startswith("Usage: veo-async ")
    for command in ("credits", "demo", "generate", "simulate", "status", "wait"):
        assert f"  {command} " in run.stdout


_BLOCK_AND_RUN = """
import sys

class Missing:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, Missing())
import veo_async, veo_async.models, veo_async.testing
assert "click" not in sys.modules and "rich" not in sys.modules, "the library imported them"
from veo_async.cli import main
main(["demo", "--tasks", "1"])
"""


@pytest.mark.parametrize("blocked", ["click", "rich"])
async def test_without_the_cli_extra_one_line_says_what_to_install(blocked: str) -> None:
    """click or rich missing: the library still imports; the CLI prints one line
    naming ``pip install 'veo-async[cli]'`` and exits 2."""
    script = _BLOCK_AND_RUN.format(blocked=blocked)
    run = await veo_async(command=[sys.executable, "-c", script])
    assert run.code == 2
    assert run.stdout == ""
    assert run.stderr == MISSING_EXTRA + "\n"
    assert "pip install 'veo-async[cli]'" in run.stderr


_INTERRUPT_WHILE_LOADING = """
import sys

class CtrlC:
    def find_spec(self, name, path=None, target=None):
        if name == "veo_async.cli._app":  # SIGINT lands while the commands load
            raise KeyboardInterrupt
        return None

sys.meta_path.insert(0, CtrlC())
from veo_async.cli import main
main(["demo", "--tasks", "1"])
"""


async def test_ctrl_c_while_the_command_line_loads_is_one_line_and_130() -> None:
    """Ctrl-C in the few tenths of a second the command line takes to load
    (click, rich, the commands) ends the program like a Ctrl-C later on: one
    line on standard error and exit code 130, not a KeyboardInterrupt
    traceback."""
    run = await veo_async(command=[sys.executable, "-c", _INTERRUPT_WHILE_LOADING])
    assert run.code == EXIT_INTERRUPTED == 130
    assert run.stdout == ""
    assert run.stderr == INTERRUPTED + "\n"


CLI_DIR = ROOT / "veo_async" / "cli"


def private_core_imports(source: str, module: str) -> list[str]:
    """The imports in ``source`` (the text of ``module``) that reach a private part of
    veo_async outside veo_async.cli: a module or a name starting with ``_``."""
    package = module.rsplit(".", 1)[0]
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            base = base[: len(base) - node.level + 1] if node.level else []
            origin = ".".join([*base, *filter(None, [node.module])])
            targets = [origin] + [
                f"{origin}.{alias.name}" for alias in node.names if alias.name != "*"
            ]
        else:
            continue
        for target in targets:
            parts = target.split(".")
            if parts[0] != "veo_async" or parts[:2] == ["veo_async", "cli"]:
                continue
            for depth, part in enumerate(parts[1:], start=2):
                if part.startswith("_") and not part.startswith("__"):
                    found.append(".".join(parts[:depth]))  # up to the first private part
                    break
    return sorted(set(found))


def test_the_cli_imports_only_public_names_of_the_library() -> None:
    """No module under veo_async/cli imports a private core module or name."""
    files = sorted(CLI_DIR.glob("*.py"))
    assert len(files) >= 10
    offenders = {
        path.name: bad
        for path in files
        if (bad := private_core_imports(
            path.read_text(encoding="utf-8"), f"veo_async.cli.{path.stem}"
        ))
    }
    assert offenders == {}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from veo_async._convert import record_to_jsonable", ["veo_async._convert"]),
        ("from .._http import HttpTransport", ["veo_async._http"]),
        ("from .. import _limits", ["veo_async._limits"]),
        ("import veo_async._session", ["veo_async._session"]),
        ("from ..testing._script import Fault", ["veo_async.testing._script"]),
        ("from ..task import _PollRun", ["veo_async.task._PollRun"]),
        ("from .. import VeoSession, __version__\nfrom ..testing import FakeKie", []),
        ("from ._ids import collect_ids\nfrom . import _run\nimport click", []),
    ],
)
def test_the_private_import_check_can_fail(source: str, expected: list[str]) -> None:
    """The check above flags private imports in every spelling, and only those."""
    assert private_core_imports(source, "veo_async.cli._app") == expected


async def test_a_second_ctrl_c_still_stops_the_live_display(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The live progress cancelled again while it winds down (a second Ctrl-C)
    still stops: standard error is given back (it stayed rich's proxy)."""
    from veo_async.cli._outcome import Tally
    from veo_async.cli._progress import ProgressReporter

    monkeypatch.setattr(sys, "stderr", io.StringIO())
    stderr = sys.stderr
    progress = ProgressReporter(Tally(3), mode="live", interval=1.0, label="wait")

    async def command() -> None:
        async with progress:
            await asyncio.sleep(3600)

    task = asyncio.ensure_future(command())
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    task.cancel()  # the first Ctrl-C: the display winds down
    await asyncio.sleep(0)
    task.cancel()  # the second, a loop step later
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sys.stderr is stderr


@pytest.mark.parametrize(
    "command",
    [
        ["wait", *FAST, "k1", "--progress", "off"],
        ["wait", *FAST, "k1", "--progress", "plain"],
        ["status", "k1"],
        ["generate", "a cat", "--progress", "off"],
    ],
    ids=["wait-off", "wait-plain", "status", "generate"],
)
async def test_a_wrong_key_says_so_on_stderr_for_every_command(
    kie: FakeKie, command: list[str]
) -> None:
    """The exit code (1) means the run could not go on; the one line on
    standard error says why, for the commands that report per task too (the
    401 was only in their stdout lines or table)."""
    kie.add_task("k1")
    run = await veo_async(
        command[0], "--base-url", kie.base_url, "--api-key", WRONG_KEY, *command[1:]
    )
    assert run.code == 1
    told = [line for line in run.stderr.splitlines() if line.startswith("veo-async: error: ")]
    assert len(told) == 1, run.stderr
    assert "AuthenticationError" in told[0]
    assert WRONG_KEY not in run.stderr + run.stdout


def test_tasks_not_created_yet_are_not_counted_as_generating() -> None:
    """The demo plans more tasks than the creation budget lets it create at
    once: those not created yet are counted apart (they read "generating
    329" with 160 created); a run that creates nothing counts as before."""
    from veo_async.cli._progress import Snapshot

    def at_79_s(created: int | None = None, succeeded: int = 0) -> Snapshot:
        return Snapshot(
            total=329, succeeded=succeeded, failed=0, timed_out=0, errors=0, requests=238,
            failed_requests=0, rate_limited=0, elapsed=79.0,
            creates=165, create_queued=20, created=created,
        )

    demo = at_79_s(created=160)
    assert (demo.generating, demo.not_created) == (160, 169)
    assert "generating 160 · not created 169 · " in demo.describe()
    summary = demo.summary(interrupted=True)
    assert "160 still generating, 169 not created yet; 238 requests" in summary
    later = at_79_s(created=160, succeeded=100)  # finished ones are not generating
    assert (later.generating, later.not_created) == (60, 169)
    waiting = at_79_s()  # wait: every task exists already
    assert (waiting.generating, waiting.not_created) == (329, 0)
    assert "not created" not in waiting.describe() + waiting.summary(interrupted=True)


def test_the_429s_counted_include_the_creates() -> None:
    """Creates have a budget of their own, with its own count of 429s: the
    progress line said "429s 0" beside a create's RateLimitError."""
    from veo_async import SessionStats
    from veo_async.cli._outcome import Tally
    from veo_async.cli._progress import ProgressReporter

    progress = ProgressReporter(Tally(3), mode="plain", interval=1.0, label="generate")
    progress.attach(lambda: SessionStats(requests=9, rate_limited=2, create_rate_limited=3))
    snapshot = progress.snapshot()
    assert snapshot.rate_limited == 5
    assert "429s 5" in snapshot.describe()


async def test_demo_and_simulate_need_no_service_settings() -> None:
    """demo and simulate talk to no service: a bad KIE_BASE_URL in the
    environment does not stop them (it did: a usage error), and they take no
    --api-key or --base-url of their own (those were accepted and ignored)."""
    env = child_env(KIE_BASE_URL="notaurl")
    run = await cli("demo", "--tasks", "3", "--speed", "1000", "--progress", "off", env=env)
    assert run.code == 0, run.stderr
    assert_clean(run)
    for command in ("demo", "simulate"):
        for option in ("--api-key", "--base-url"):
            refused = await cli(command, option, "x")
            assert refused.code == 2
            assert f"No such option '{option}'" in refused.stderr


async def test_a_bad_kie_base_url_is_still_a_usage_error_where_it_is_used() -> None:
    """A command that talks to the service says what is wrong with the
    KIE_BASE_URL it would use, as a usage error naming it."""
    run = await cli("credits", "--api-key", KEY, env=child_env(KIE_BASE_URL="notaurl"))
    assert run.code == 2
    assert "KIE_BASE_URL" in run.stderr
    assert "notaurl" in run.stderr
    assert_clean(run)


def test_a_long_error_line_keeps_its_reason() -> None:
    """A one-line error longer than 160 characters is cut in the middle, not
    at the end: the reason aiohttp puts last ("[Connect call failed ...]")
    is kept (it was cut to "[Connect cal...")."""
    error = TransportError(
        "could not connect to http://127.0.0.1:1/api/v1/chat/credit: ClientConnectorError: "
        "Cannot connect to host 127.0.0.1:1 ssl:default [Connect call failed ('127.0.0.1', 1)]",
        sent=False,
    )
    line = describe_error(error)
    assert len(line) == 160
    assert line.startswith("TransportError: could not connect to http://127.0.0.1:1")
    assert line.endswith("[Connect call failed ('127.0.0.1', 1)]")
    assert " ... " in line
    assert describe_error(TransportError("short", sent=False)) == "TransportError: short"


def test_the_cli_settings_repr_hides_the_api_key() -> None:
    """Settings (the click context's object, shown by a traceback that prints
    locals, a debugger, a log of ctx.obj) never shows the API key."""
    key = "kie-secret-key-0123456789"
    settings = Settings(api_key=key, base_url="https://api.kie.ai")
    assert key not in repr(settings)
    assert key not in str(settings)
    assert "https://api.kie.ai" in repr(settings)
