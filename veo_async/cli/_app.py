"""The click application behind ``veo-async``: its commands and their error handling.

::

    veo-async status veo_task_1 veo_task_2          # one poll each, a table
    veo-async wait --from ids.txt -o results.jsonl  # poll until every task is done
    veo-async generate "A cat surfing" --wait       # create a task, wait for it
    veo-async generate --from requests.jsonl        # one JSON request per line
    veo-async credits                               # the balance
    veo-async demo                                  # 300 simulated creates, ~15 s, no key
    veo-async simulate --port 8765                  # a fake Kie for integration tests

Results go to standard output (or ``--output``) as JSON lines; progress and
errors go to standard error. A bad command line gets one line,
``veo-async: error: ...``, and exit code 2, before any request is made.
Ctrl-C stops a run cleanly: every request and connection is closed, a summary
of what finished is printed, and the exit code is 130.

The helpers live in small modules beside this one, one job each: ``_ids``
(reading ids), ``_options`` (shared options), ``_outcome`` (outcomes, exit
codes), ``_output`` (JSON lines, tables), ``_generate`` and ``_requests``
(the ``generate`` and ``credits`` commands, reading requests), ``_progress`` (the progress
display), ``_reach`` (noticing an unreachable service), ``_run`` (the event
loop and Ctrl-C), ``_demo`` and ``_simulate`` (the simulator's scenarios,
built by :mod:`veo_async.testing`). Like any user of the library, they import
only its public names.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import sys
import traceback
from collections.abc import Callable, Sequence
from contextlib import aclosing
from typing import Any, Literal

import click
from rich.console import Console

from .. import VeoError, __version__
from ._errors import tell_key_refused
from ._finish import run_to_end
from ._generate import credits, generate
from ._ids import IdSourceError, collect_ids
from ._opening import open_session
from ._options import (
    PositiveNumber,
    Settings,
    build_policy,
    configure_logging,
    global_options,
    output_option,
    policy_options,
    progress_options,
)
from ._outcome import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Tally, outcome_of
from ._output import (
    JsonLines,
    LookupResult,
    escape_what_streams_cannot_carry,
    status_json,
    status_table,
)
from ._progress import ProgressMode, ProgressReporter
from ._reach import ReachabilityWatch
from ._run import Interrupted, run
from ._tasks import STORE_HELP, delivered_from_store, require_existing_store, tasks

__all__ = ["cli", "run_cli"]

PROG = "veo-async"

_EXIT_CODES = """\b
Exit codes:
  0    every task succeeded
  1    some task failed (status 2 or 3) or ended in an error; or the run
       could not go on (401, service unreachable, store in use): stderr says
  2    usage error: bad option, id or file, no API key
  3    some task timed out, and none failed
  130  interrupted by Ctrl-C (143: SIGTERM)
"""

_STATUS_CODES = """\b
Exit codes:
  0    every record was read (whatever its status)
  1    some record could not be read (the error is in its row or line)
  2    usage error: bad option, id or file, no API key
  130  interrupted by Ctrl-C
"""

#: ``demo --speed``: a few hundred tasks' ~15 simulated minutes in ~15 s.
DEMO_SPEED = 60.0

_CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _from_option(func: Any) -> Any:
    return click.option(
        "--from",
        "files",
        multiple=True,
        metavar="FILE",
        help='Read ids from FILE, one per line ("-": standard input). Repeatable.',
    )(func)


def _concurrency_option(func: Any) -> Any:
    return click.option(
        "--concurrency",
        type=click.IntRange(min=1),
        default=64,
        show_default=True,
        help="The most HTTP requests in flight at once.",
    )(func)


def _speed_option(help_text: str, *, default: float = 25.0) -> Callable[[Any], Any]:
    """``--speed``: the time compression shared by ``demo`` and ``simulate``."""
    return click.option(
        "--speed",
        type=PositiveNumber(100_000),
        default=default,
        show_default=True,
        help=help_text,
    )


def _read_ids(ids: Sequence[str], files: Sequence[str], *, required: bool = True) -> list[str]:
    try:
        found = collect_ids(ids, files, sys.stdin)
    except IdSourceError as exc:
        raise click.UsageError(str(exc)) from None
    if not found and required:
        raise click.UsageError(
            'no task ids given: pass IDs, --from FILE, or "-" for standard input'
        )
    return found


@click.group(context_settings=_CONTEXT, epilog=_EXIT_CODES)
@click.version_option(__version__, "--version", prog_name=PROG)
@global_options(at_group=True)
def cli() -> None:
    """Track Kie.ai Veo 3.1 video tasks from the command line.

    Results are JSON lines on standard output; progress and errors go to
    standard error. Run "veo-async COMMAND --help" for a command's options.
    """


@cli.command(epilog=_STATUS_CODES)
@click.argument("ids", nargs=-1, metavar="[ID|-]...")
@_from_option
@click.option("--json", "as_json", is_flag=True, help="One JSON line per id instead of a table.")
@_concurrency_option
@global_options(at_group=False)
@click.pass_context
def status(
    ctx: click.Context, ids: tuple[str, ...], files: tuple[str, ...], as_json: bool,
    concurrency: int,
) -> int:
    """Poll each task once and show its record.

    A table of id, status, completion time and result URL (or error), in the order
    given; with --json, one line per id: {"task_id", "status", "record"}, or
    {"task_id", "status": null, "error", "message"} when it could not be read.

    \b
    IDs come from the arguments, from --from FILE, or from standard input
    when an argument (or FILE) is "-". See "veo-async wait --help".
    """
    configure_logging(ctx)
    task_ids = _read_ids(ids, files)
    veo = open_session(ctx, concurrency=concurrency)

    async def lookup(task_id: str) -> LookupResult:
        try:
            return await veo.record_info(task_id)
        except VeoError as exc:  # reported in the output, not raised
            return exc

    async def lookup_all() -> list[LookupResult]:
        async with veo:
            return list(await asyncio.gather(*(lookup(task_id) for task_id in task_ids)))

    try:
        results = run(lookup_all())
    except Interrupted as stop:
        click.echo(f"{PROG}: status: interrupted", err=True)
        return stop.exit_code
    if as_json:
        sink = JsonLines(None)
        for task_id, result in zip(task_ids, results, strict=True):
            sink.write(status_json(task_id, result))
    else:
        status_table(list(zip(task_ids, results, strict=True)), Console())
    errors = [r for r in results if isinstance(r, Exception)]
    tell_key_refused(errors)
    return EXIT_FAILED if errors else EXIT_OK


@cli.command(epilog=_EXIT_CODES)
@click.argument("ids", nargs=-1, metavar="[ID|-]...")
@_from_option
@output_option
@_concurrency_option
@click.option(
    "--rate",
    type=PositiveNumber(),
    default=None,
    help="The most requests started per second (default: no limit).",
)
@click.option(
    "--unreachable-after",
    type=PositiveNumber(),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="Say so on standard error when no request has been answered for SECONDS "
    "and every one failed (a wrong --base-url, no network).",
)
@click.option("--store", "store_path", metavar="FILE|URL", default=None, help=STORE_HELP)
@policy_options
@progress_options
@global_options(at_group=False)
@click.pass_context
def wait(
    ctx: click.Context,
    /,
    ids: tuple[str, ...],
    files: tuple[str, ...],
    output: str | None,
    concurrency: int,
    rate: float | None,
    unreachable_after: float,
    progress_mode: ProgressMode,
    progress_interval: float,
    store_path: str | None = None,
    **policy_values: Any,
) -> int:
    """Poll every task until it is done; one JSON line per task as it finishes.

    \b
    Each line is {"task_id", "outcome", ...}:
      succeeded  + "record"
      failed     + "error", "message", "record" (status 2 or 3)
      timeout    + "error", "message", and "record" when one was seen
      error      + "error", "message" (401, 404, an expired record, or
                 TransportError: the service was never reached)

    IDs come from the arguments, from --from FILE, or from standard input
    when an argument (or FILE) is "-": one per line, blank lines and lines
    starting with "#" skipped. A repeated id is tracked once.

    Polling starts at once and backs off from --interval by --factor up to
    --poll-cap; transient errors (5xx, 429, 455, resets, broken answers) are
    retried until --timeout. The progress shows the latest error. When no
    request has been answered for --unreachable-after seconds, standard error
    says so; a task whose polls never reached the service ends as "error",
    not "timeout".

    With --store FILE, IDs are optional: the tasks the store left unfinished
    are resumed, results not yet written are written, each is acknowledged
    once written, and --timeout does not end the run (interrupt it and run
    it again to resume); -o is added to, not overwritten (the lines of the
    results acknowledged before stay).
    """
    configure_logging(ctx)
    task_ids = _read_ids(ids, files, required=store_path is None)
    if store_path is not None and not task_ids:
        require_existing_store(store_path)  # nothing to wait for in a store never made
    policy = build_policy(policy_values)
    veo = open_session(
        ctx, concurrency=concurrency, rate=rate, policy=policy, store_path=store_path
    )
    try:
        sink = JsonLines(output, append=store_path is not None)
    except OSError as exc:
        raise click.UsageError(f"cannot write {output}: {exc.strerror or exc}") from None
    tally = Tally(len(task_ids))
    progress = ProgressReporter(
        tally, mode=progress_mode, interval=progress_interval, label=_typed_command(ctx)
    )

    def set_total(total: int) -> None:
        tally.total = total

    async def track() -> None:
        async with veo:
            sink.start()  # the store (if any) is ours: -o may be emptied now
            progress.attach(lambda: veo.stats)
            watch = ReachabilityWatch(
                veo,
                window=unreachable_after,
                base_url=ctx.ensure_object(Settings).shown_base_url,
                probe_id=task_ids[0] if task_ids else "veo_task_probe",
                on_error=progress.note_error,
            )
            watcher = asyncio.get_running_loop().create_task(watch.run(), name="veo-async reach")
            source = (
                veo.as_completed(task_ids)
                if store_path is None
                else delivered_from_store(veo, task_ids, set_total, tally.add_earlier)
            )
            try:
                async with progress, aclosing(source) as finished:
                    async for handle in finished:
                        outcome = outcome_of(handle)
                        tally.add(outcome)
                        progress.note_error(outcome.request_error)
                        sink.write(outcome.to_json())
            finally:
                watcher.cancel()
                await asyncio.wait((watcher,))

    interrupted = run_to_end(track(), progress, sink)
    if interrupted is not None:
        return interrupted
    progress.print_summary()
    return tally.exit_code()


cli.add_command(tasks)


@tasks.command("resume", epilog=_EXIT_CODES)
@click.option(
    "--store",
    "store_path",
    required=True,
    metavar="FILE|URL",
    help="The store file, or a redis:// URL (#namespace).",
)
@output_option
@_concurrency_option
@global_options(at_group=False)
@click.pass_context
def resume_tasks(
    ctx: click.Context, /, store_path: str, output: str | None, concurrency: int
) -> int:
    """Resume what the store left unfinished: "wait --store FILE" with no ids.

    One JSON line per result not yet acknowledged (see "wait --help").
    """
    # (wait with no ids refuses a store never made: nothing to resume)
    try:
        result: int = ctx.invoke(
            wait, ids=(), files=(), store_path=store_path, output=output, concurrency=concurrency
        )
    except click.UsageError as exc:
        # Raised in the context invoke() made for wait, whose path reads
        # "tasks resume wait": the user typed this command.
        if exc.ctx is not None and exc.ctx.parent is ctx:
            exc.ctx = ctx
        raise
    return result


@cli.command(epilog="Exit codes: 0 when the demo ran to the end, 2 usage error, 130 Ctrl-C.")
@click.option(
    "--tasks",
    type=click.IntRange(min=1, max=100_000),
    default=300,
    show_default=True,
    help="How many generations to create (extends come on top).",
)
@_speed_option(
    "How many times faster than life the simulated clock runs (a 2-5 min render "
    "takes 2-5 s at 60).",
    default=DEMO_SPEED,
)
@click.option("--seed", type=int, default=None, help="Replay a run (default: a random seed).")
@_concurrency_option
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@progress_options
@global_options(at_group=False, service=False)
@click.pass_context
def demo(
    ctx: click.Context,
    tasks: int,
    speed: float,
    seed: int | None,
    concurrency: int,
    as_json: bool,
    progress_mode: ProgressMode,
    progress_interval: float,
) -> int:
    """Create hundreds of simulated tasks end to end, in seconds, without a key.

    A simulator of the Kie API runs in this process (no network). The demo
    creates --tasks generations with mixed models (veo3_fast, veo3_lite,
    veo3) under the creation budget (20 per 10 s), extends some once they
    succeed and fetches the 1080p version of others, and waits for every
    task with the default schedule. ~8% of the renders fail; a maintenance
    answer, an uncertain create (never resent) and transient faults on the
    polls, a burst of 429s among them, come along the way.

    Everything runs on a clock --speed times faster than life: the
    simulator's render times (minutes), the polling schedule and the
    creation budget alike, so the figures are those of a real run. The
    summary gives outcomes, requests (polls, creates), 429s, credits spent
    and detection lag (from a task finishing on the simulator to the session
    seeing it) in simulated seconds.
    """
    configure_logging(ctx)
    # Imported here: the simulator is not needed by the other commands.
    from ..testing import ScaledClockLoop
    from ._demo import demo_header, plan, planned_tasks, run_demo

    chosen_seed = seed if seed is not None else secrets.randbelow(1_000_000)
    # Said first, so that whoever watches the progress knows what it is about.
    click.echo(f"{PROG}: demo: {demo_header(tasks, speed, chosen_seed)}", err=True)
    jobs = plan(tasks, chosen_seed)
    tally = Tally(planned_tasks(jobs))
    progress = ProgressReporter(
        tally, mode=progress_mode, interval=progress_interval, label="demo", clock_speed=speed
    )
    try:
        report = run(
            run_demo(
                jobs=jobs,
                speed=speed,
                seed=chosen_seed,
                concurrency=concurrency,
                tally=tally,
                progress=progress,
            ),
            loop_factory=lambda: ScaledClockLoop(speed),
        )
    except Interrupted as stop:
        progress.print_summary(interrupted=True)
        return stop.exit_code
    progress.print_summary()
    if as_json:
        click.echo(json.dumps(report.to_json()))
    else:
        report.print_table(Console())
    return EXIT_OK


@cli.command(epilog="Exit codes: 0 when stopped by Ctrl-C or SIGTERM, 1 cannot listen, 2 usage.")
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(min=0, max=65535),
    default=0,
    show_default=True,
    help="The port; 0 picks a free one (printed at start).",
)
@click.option(
    "--tasks",
    type=click.IntRange(min=0, max=1_000_000),
    default=300,
    show_default=True,
    help="How many synthetic tasks (sim-00001 ...).",
)
@_speed_option("How many times faster than real life the synthetic tasks run.")
@click.option("--seed", type=int, default=0, show_default=True, help="The synthetic lives' seed.")
@click.option(
    "--faults/--no-faults",
    default=False,
    show_default=True,
    help="Give some synthetic tasks transient faults on their first polls.",
)
@click.option(
    "--key",
    default="test-key",
    show_default=True,
    help="The key the simulator expects (it is made up, so it is printed).",
)
@click.option("--no-auth", is_flag=True, help="Accept any key, or none.")
@click.option(
    "--any-user-agent",
    is_flag=True,
    help="Accept every User-Agent. By default, like Kie's Cloudflare front, a missing "
    "one and curl, Wget, python-requests, Python-urllib and aiohttp's default agents "
    'get 403 "error code: 1010".',
)
@click.option(
    "--unknown",
    type=click.Choice(["record-null", "data-null"]),
    default="record-null",
    show_default=True,
    help='How unknown ids answer: 422 "record is null", or 200 with data null.',
)
@click.option(
    "--credits",
    "balance",
    type=click.FloatRange(min=0),
    default=1234.5,
    show_default=True,
    help="The starting balance; creates are charged (veo3 400, veo3_fast 80, a 4K "
    "version 120) and answered 402 once it runs out.",
)
@global_options(at_group=False, service=False)
@click.pass_context
def simulate(
    ctx: click.Context,
    host: str,
    port: int,
    tasks: int,
    speed: float,
    seed: int,
    faults: bool,
    key: str,
    no_auth: bool,
    any_user_agent: bool,
    unknown: str,
    balance: float,
) -> int:
    """Serve a simulated Kie API until Ctrl-C, for integration tests.

    \b
    Tasks (clocks start with the server):
      sim-success, sim-failed, sim-generation-failed   done: status 1, 2, 3
      sim-pending                                      generating forever
      sim-00001 ... (--tasks N)                        2-5 min lives / --speed
    Any other id answers like an unknown one (see --unknown). The base URL and
    key are printed at start. --api-key and KIE_API_KEY are not used here.

    Like the real service, it refuses bot-like User-Agents (curl, Wget,
    python-requests, Python-urllib, aiohttp's default, none) with a 403 that
    is not JSON; "curl -A my-app/1.0 ..." passes, and so does anything with
    --any-user-agent.
    """
    if not no_auth and not key.strip():
        # No session could use it (VeoSession refuses an empty key).
        raise click.UsageError("--key must not be blank (--no-auth accepts any key, or none)")
    configure_logging(ctx)
    from ._simulate import run_simulator

    mode: Literal["record_null", "data_null"] = (
        "record_null" if unknown == "record-null" else "data_null"
    )
    try:
        run(
            run_simulator(
                host=host,
                port=port,
                api_key=None if no_auth else key,
                check_user_agent=not any_user_agent,
                tasks=tasks,
                speed=speed,
                seed=seed,
                faults=faults,
                unknown=mode,
                credits=balance,
            )
        )
    except Interrupted:
        return EXIT_OK  # the normal way to stop a server
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from None
    return EXIT_OK


# Creating lives in its own module (``_generate``): the commands are only added here.
cli.add_command(generate)
cli.add_command(credits)


def _typed_command(ctx: click.Context) -> str:
    """The command the user typed, for the lines it prints: "wait", or
    "tasks resume" when that invoked wait (it said "wait: interrupted")."""
    parent = ctx.parent
    if parent is not None and parent.command is resume_tasks:
        return "tasks resume"
    return ctx.info_name or "wait"


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def _verbose() -> bool:
    return logging.getLogger("veo_async").isEnabledFor(logging.DEBUG)


def run_cli(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code (``main`` without ``sys.exit``).

    Every error is reported as one line on standard error, never a traceback
    (with ``--verbose``, an unexpected error's traceback follows the line).
    """
    with escape_what_streams_cannot_carry():
        return _run(argv)


def _run(argv: Sequence[str] | None) -> int:
    try:
        result = cli.main(args=argv, prog_name=PROG, standalone_mode=False)
    except click.UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":
            # A bare "veo-async" (click >= 8.2; older versions print the help
            # themselves and exit 0): the help is the message, not an error line.
            click.echo(exc.format_message(), err=True)
            return EXIT_USAGE
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        click.echo(f"{PROG}: error: {_one_line(exc.format_message())}{hint}", err=True)
        return EXIT_USAGE
    except click.ClickException as exc:
        click.echo(f"{PROG}: error: {_one_line(exc.format_message())}", err=True)
        return exc.exit_code
    except click.Abort:
        # Ctrl-C outside the event loop (e.g. while typing ids on standard input).
        click.echo(f"{PROG}: interrupted", err=True)
        return 130
    except BrokenPipeError:
        # The reader of our output went away (``| head``): not worth a message,
        # and the interpreter must not complain again when it flushes at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED
    except Exception as exc:  # a bug or an unforeseen environment failure
        if _verbose():
            traceback.print_exc()
        click.echo(
            f"{PROG}: error: unexpected {type(exc).__name__}: {_one_line(str(exc))}"
            + ("" if _verbose() else " (run with --verbose for details)"),
            err=True,
        )
        return EXIT_FAILED
    return result if isinstance(result, int) else EXIT_OK
