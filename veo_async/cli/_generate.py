"""``veo-async generate`` and ``veo-async credits``: creating tasks, and what it costs.

::

    veo-async generate "A cat surfing at sunset" --model veo3 --wait
    veo-async generate --from requests.jsonl -o created.jsonl
    veo-async credits

Every request is validated (each line of ``--from``) before the first one is
sent; then all are sent at once and the session's creation budget (20 per
10 s, Kie's account limit) paces them. A create is never resent when it may
have created its task: it is reported as ``"uncertain"`` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
from collections.abc import Coroutine, Iterable
from typing import Any

import attrs
import click

from .. import (
    POLICY_TIMEOUT,
    GenerateRequest,
    PollPolicy,
    SubmitUncertainError,
    VeoError,
)
from ..errors import created_nothing
from ..events import Event, RequestAnswered, RequestFailed, RequestStarted
from ..policy import TimeoutArg
from ._errors import describe_error
from ._finish import run_to_end
from ._opening import open_session
from ._options import (
    build_policy,
    configure_logging,
    global_options,
    output_option,
    policy_options,
    progress_options,
)
from ._outcome import EXIT_FAILED, EXIT_OK, Outcome, Tally, TaskOutcome, outcome_of
from ._output import JsonLines
from ._progress import ProgressMode, ProgressReporter, Snapshot, counted
from ._requests import RequestSourceError, read_requests
from ._resume import SentBefore
from ._resume import write_stored_results as _write_stored_results
from ._run import Interrupted, run

__all__ = ["credits", "generate"]

PROG = "veo-async"

_GENERATE_CODES = """\b
Exit codes:
  0    every task was created (with --wait: and succeeded)
  1    some create failed or was uncertain, or (with --wait) some task
       failed (status 2 or 3) or ended in an error
  2    usage error: bad option or request line, no API key (nothing created)
  3    with --wait: some task timed out, and none failed
  130  interrupted by Ctrl-C (143: SIGTERM); creates in flight may exist
"""

# The GenerateRequest field behind each option, for error messages.
_OPTION_NAMES = {
    "allow_unknown=True": "--allow-unknown",
    "aspect_ratio": "--aspect-ratio",
    "generation_type": "--generation-type",
    "image_urls": "--image-url",
    "seeds": "--seed",
    "enable_translation": "--no-translation",
    "callback_url": "--callback-url",
    "watermark": "--watermark",
    "resolution": "--resolution",
    "model": "--model",
    "prompt": "PROMPT",
}
_FIELD_NAMES = re.compile(r"\b(" + "|".join(re.escape(name) for name in _OPTION_NAMES) + r")")


def _in_option_terms(message: str) -> str:
    return _FIELD_NAMES.sub(lambda match: _OPTION_NAMES[match.group(1)], message)


def _wait_settings(values: dict[str, Any]) -> tuple[PollPolicy | None, TimeoutArg]:
    """The policy and timeout of ``--wait``.

    No polling option: the session's default schedule (model-aware first
    poll). ``--timeout`` alone keeps it, with that deadline. Any other
    polling option: a fixed :class:`PollPolicy` with the options given.
    """
    fixed = [name for name, value in values.items() if name != "timeout" and value is not None]
    if fixed:
        return build_policy(values), POLICY_TIMEOUT
    timeout = values.get("timeout")
    if timeout is None:
        return None, POLICY_TIMEOUT
    build_policy({"timeout": timeout})  # validated as the option it is
    return None, float(timeout)


def _requests(
    prompt: str | None, sources: tuple[str, ...], defaults: dict[str, Any]
) -> list[GenerateRequest]:
    """Every request of the command line, validated; nothing is sent yet."""
    if prompt is not None and sources:
        raise click.UsageError("give a PROMPT or --from FILE, not both")
    if prompt == "-":
        # Not a prompt anyone means (a paid task would be made of it).
        raise click.UsageError('PROMPT "-": to read requests from standard input, pass --from -')
    if sources.count("-") > 1:
        raise click.UsageError("--from -: standard input can be read once")
    found: list[GenerateRequest] = []
    for source in sources:  # in order, every file read and checked first
        try:
            read = read_requests(source, sys.stdin, defaults)
        except RequestSourceError as exc:
            raise click.UsageError(
                str(exc).replace(
                    "pass allow_unknown=True",
                    'add "allow_unknown": true to the line (or pass --allow-unknown)',
                )
            ) from None
        if not read:
            shown = "standard input" if source == "-" else source
            raise click.UsageError(f"no requests in {shown}")
        found.extend(read)
    if found:
        return found
    if prompt is None:
        raise click.UsageError(
            'no prompt: pass PROMPT, or --from FILE (one JSON request per line; "-": '
            "standard input)"
        )
    try:
        return [GenerateRequest(prompt, **defaults)]
    except (TypeError, ValueError) as exc:
        raise click.UsageError(_in_option_terms(str(exc))) from None


def _created(task_id: str, request: GenerateRequest) -> dict[str, Any]:
    """The line of a task created (and not waited for to its end)."""
    return {"task_id": task_id, "outcome": "created", "request": request.to_wire()}


def _failed_create(kind: str, request: GenerateRequest, error: VeoError) -> dict[str, Any]:
    line = {
        "outcome": kind,
        "error": type(error).__name__,
        "message": str(error),
        "request": request.to_wire(),
    }
    if error.task_id is not None:  # an uncertain create whose answer named its task
        line = {"task_id": error.task_id, **line}
    return line


def _unanswered(request: GenerateRequest) -> dict[str, Any]:
    """The line of a create sent, then interrupted before its answer came."""
    return {
        "outcome": "uncertain",
        "error": "Interrupted",
        "message": (
            "interrupted after the create request was sent, before its answer: it may "
            "have created a task (and been charged); check for it before sending it again"
        ),
        "request": request.to_wire(),
    }


def _not_sent(request: GenerateRequest) -> dict[str, Any]:
    """The line of a create interrupted before its request was sent."""
    return {
        "outcome": "not sent",
        "message": "interrupted before the create request was sent: nothing was created",
        "request": request.to_wire(),
    }


class _SentCreates:
    """Which of the running creates have a request out with no answer yet: a
    create's request goes out in the task that awaits it, so the session's
    events about a POST are told in that task."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        # Every create whose request went out at least once (answered or not).
        self._started: set[asyncio.Task[Any]] = set()

    def on_event(self, event: Event) -> None:
        """The session's event hook."""
        if not isinstance(event, (RequestStarted, RequestAnswered, RequestFailed)):
            return
        task = asyncio.current_task()
        if event.method != "POST" or task is None:
            return
        if isinstance(event, RequestStarted):
            self._tasks.add(task)
            self._started.add(task)
        else:  # answered: not in doubt
            self._tasks.discard(task)
            if isinstance(event, RequestFailed) and created_nothing(event.error):
                # Refused before creating (a 429, a 455, not sent): until a
                # resend starts, interrupting it leaves nothing to check for,
                # and its line must say "not sent" (it had none at all).
                self._started.discard(task)

    def sent(self) -> bool:
        """Whether the current task's create request went out."""
        return asyncio.current_task() in self._tasks

    def never_sent(self) -> bool:
        """Whether the current task's create request never went out at all
        (answered is not enough: a create answered with its task id may be
        interrupted while a store records it)."""
        return asyncio.current_task() not in self._started

    def forget(self) -> None:
        """The current task's create is over (answered, or given up)."""
        task = asyncio.current_task()
        if task is not None:
            self._tasks.discard(task)
            self._started.discard(task)


async def _all(jobs: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run ``jobs`` together; if one raises, the others are cancelled first."""
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(job) for job in jobs]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)


@click.command(epilog=_GENERATE_CODES)
@click.argument("prompt", required=False)
@click.option(
    "--from",
    "sources",
    metavar="FILE",
    multiple=True,
    help='Read the requests from FILE ("-": standard input; repeatable, in '
    "order): one JSON object per line, with the reference's field names or "
    "ours; the options below fill in what a line leaves out.",
)
@click.option("--model", help="veo3_fast (the default), veo3 or veo3_lite.")
@click.option("--aspect-ratio", help="16:9 (the default), 9:16 or Auto.")
@click.option(
    "--generation-type",
    help="TEXT_2_VIDEO, FIRST_AND_LAST_FRAMES_2_VIDEO or REFERENCE_2_VIDEO "
    "(default: the service picks).",
)
@click.option(
    "--image-url", "image_urls", multiple=True, metavar="URL", help="An image URL. Repeatable."
)
@click.option("--resolution", help="720p, 1080p or 4k.")
@click.option("--seed", type=int, default=None, help="The seed (10000-99999).")
@click.option("--watermark", metavar="TEXT", help="A watermark text.")
@click.option(
    "--no-translation", is_flag=True, help="Do not translate a non-English prompt."
)
@click.option("--callback-url", metavar="URL", help="Have Kie POST the outcome to URL.")
@click.option(
    "--allow-unknown",
    is_flag=True,
    help="Accept a model, type, ratio or resolution this release does not know.",
)
@click.option(
    "--wait",
    "wait_for",
    is_flag=True,
    help="Wait for the created tasks; one JSON line per task as it finishes.",
)
@output_option
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="The most HTTP requests in flight at once.",
)
@click.option(
    "--store",
    "store_path",
    metavar="FILE|URL",
    default=None,
    help="Record every create in this store file (SQLite; or a redis:// URL, its "
    "namespace as #fragment); run again with the same "
    "requests to resume: a request the store already sent is not sent again.",
)
@policy_options
@progress_options
@global_options(at_group=False)
@click.pass_context
def generate(
    ctx: click.Context,
    /,
    prompt: str | None,
    sources: tuple[str, ...],
    model: str | None,
    aspect_ratio: str | None,
    generation_type: str | None,
    image_urls: tuple[str, ...],
    resolution: str | None,
    seed: int | None,
    watermark: str | None,
    no_translation: bool,
    callback_url: str | None,
    allow_unknown: bool,
    wait_for: bool,
    output: str | None,
    concurrency: int,
    store_path: str | None,
    progress_mode: ProgressMode,
    progress_interval: float,
    **policy_values: Any,
) -> int:
    """Create video tasks: PROMPT, or one JSON request per line of --from FILE.

    \b
    A --from line holds a request's fields by their wire or Python names
    ({"prompt": "...", "model": "veo3", "aspect_ratio": "9:16"}; a value
    Kie added later needs "allow_unknown": true); the options are defaults.
    Every request is checked before the first is sent; a bad one (a bad
    line: named by its number) creates nothing. Then all are sent at once,
    paced by the creation budget (20 per 10 s, Kie's account limit). One
    JSON line per request:
      {"task_id", "outcome": "created", "request"}    created
      {"outcome": "uncertain", "error", "message", "request"}
                 the task may exist (a timeout or a dropped connection
                 after sending): it is never resent, check before retrying
      {"outcome": "error", "error", "message", "request"}
                 refused (402 no credits, 422...): nothing was created
      {"outcome": "not sent", "message", "request"}
                 interrupted before it was sent: nothing was created

    \b
    With --wait, each created task is then waited for and its line is that
    of "veo-async wait" plus "request". The default schedule polls a new
    task first at 40 s (a probe for fast failures; the run's first task
    also at 2, 4, 8 and 16 s), then when its model's tasks start to finish
    (veo3_fast ~1.5 min, veo3 ~2.5 min); any polling option but --timeout
    makes it a fixed one. Interrupted (Ctrl-C), each task created and not
    yet finished gets its "created" line, so that no id is lost (with
    --store the ids are in the store instead: run the command again).

    \b
    With --store FILE every create is recorded before it is sent. Run the
    same command again after an interruption: a request the store already
    sent (created, or uncertain) is not sent again - its line says
    "already created" (with the task id) or "uncertain" - and with --wait
    every stored result not yet written is written, then acknowledged;
    there, as for "wait --store", --timeout does not end the run (interrupt
    it and run it again to resume), and -o is added to, not overwritten.
    """
    configure_logging(ctx)
    options: dict[str, Any] = {
        "model": model,
        "aspect_ratio": aspect_ratio,
        "generation_type": generation_type,
        "image_urls": list(image_urls) or None,
        "resolution": resolution,
        "seeds": seed,
        "watermark": watermark,
        "enable_translation": False if no_translation else None,
        "callback_url": callback_url,
        "allow_unknown": True if allow_unknown else None,
    }
    defaults = {name: value for name, value in options.items() if value is not None}
    requests = _requests(prompt, sources, defaults)
    policy, timeout = _wait_settings(policy_values)
    sent_creates = _SentCreates()
    veo = open_session(
        ctx,
        concurrency=concurrency,
        policy=policy,
        store_path=store_path,
        on_event=sent_creates.on_event,
    )
    try:
        sink = JsonLines(output, append=store_path is not None)
    except OSError as exc:
        raise click.UsageError(f"cannot write {output}: {exc.strerror or exc}") from None
    tally = Tally(len(requests))
    creates = _Creates()
    progress = ProgressReporter(
        tally,
        mode=progress_mode,
        interval=progress_interval,
        label="generate",
        summary=lambda snapshot, interrupted: creates.summary(snapshot, interrupted, wait_for),
    )

    async def one(request: GenerateRequest) -> None:
        earlier = sent_before.take(request) if sent_before is not None else None
        if earlier is not None:  # sent by an interrupted run: never again
            if earlier.uncertain:
                tally.add_error()
                creates.refused += 1
            elif earlier.task_id is not None:
                creates.created += 1
                if not wait_for:
                    tally.add(TaskOutcome(earlier.task_id, Outcome.SUCCEEDED))
            sink.write(earlier.line(request))
            return
        try:
            task = await veo.generate(request)
        except asyncio.CancelledError:
            if sent_creates.sent():
                # Interrupted with the request out: this line is its only trace
                # (without a store), and a rerun must not send it blindly.
                sink.write(_unanswered(request))
                creates.unanswered += 1
            elif sent_creates.never_sent():
                # Never sent: one line per request still, so that a pipeline
                # knows what to send again without diffing its input. (One
                # answered, then interrupted, gets no line: maybe created.)
                sink.write(_not_sent(request))
            raise
        except SubmitUncertainError as exc:
            sink.write(_failed_create("uncertain", request, exc))
            tally.add_error()
            creates.refused += 1
            progress.note_error(exc)
            return
        except VeoError as exc:
            sink.write(_failed_create("error", request, exc))
            tally.add_error()
            creates.refused += 1
            progress.note_error(exc)
            return
        finally:
            sent_creates.forget()
        creates.created += 1
        if not wait_for or sent_before is not None:
            # With a store, --wait follows the store's results (below) instead.
            if not wait_for:
                tally.add(TaskOutcome(task.task_id, Outcome.SUCCEEDED))
                sink.write(_created(task.task_id, request))
            return
        try:
            with contextlib.suppress(VeoError):  # the outcome is read below
                await task.wait(timeout, policy=policy)
        except asyncio.CancelledError:
            # Interrupted while waiting: the task exists, and was paid for.
            # Without a store, this line is the only trace of its id.
            sink.write(_created(task.task_id, request))
            raise
        outcome = outcome_of(task)
        tally.add(outcome)
        progress.note_error(outcome.request_error)
        sink.write({**outcome.to_json(), "request": request.to_wire()})

    sent_before: SentBefore | None = None

    def set_total(total: int) -> None:
        tally.total = total

    async def create_all() -> None:
        nonlocal sent_before
        async with veo:
            sink.start()  # the store (if any) is ours: -o may be emptied now
            progress.attach(lambda: veo.stats)
            # Requests not sent yet (waiting for the creation budget) are
            # "not created", not generating.
            progress.count_created(lambda: creates.created)
            if store_path is not None:
                sent_before = await SentBefore.read(veo)
            async with progress:
                await _all(one(request) for request in requests)
                if sent_before is not None and wait_for:
                    await _write_stored_results(veo, sink, tally, progress, set_total)

    interrupted = run_to_end(create_all(), progress, sink)
    if interrupted is not None:
        return interrupted
    if wait_for:
        progress.print_summary()
        return tally.exit_code()
    snap = progress.snapshot()
    if progress.mode != "off":
        click.echo(
            f"{PROG}: generate: {tally.succeeded} of {tally.total} created, "
            f"{tally.errors} not (uncertain or refused), in {snap.elapsed:.1f} s; "
            f"{counted(snap.requests, 'request')}",
            err=True,
        )
    return EXIT_FAILED if tally.errors else EXIT_OK


@attrs.define
class _Creates:
    """What the create requests of one ``generate`` run came to."""

    #: Answered with a task id (in this run, or in the run a store remembers).
    created: int = 0
    #: Uncertain or refused.
    refused: int = 0
    #: Sent, then interrupted before their answer (uncertain too).
    unanswered: int = 0

    def summary(self, snapshot: Snapshot, interrupted: bool, waited: bool) -> str:
        """The closing line; interrupted, it counts requests, not tasks: some
        were never sent, and those created are not finished for being created."""
        if not interrupted:
            return snapshot.summary(interrupted=False)
        unsent = max(0, snapshot.total - self.created - self.refused - self.unanswered)
        created = f"{self.created} of {counted(snapshot.total, 'request')} created a task"
        if waited:
            finished = snapshot.finished - self.refused
            created += (
                f" ({finished} finished: {snapshot.succeeded} succeeded, {snapshot.failed} "
                f"failed, {snapshot.timed_out} timed out, {snapshot.errors - self.refused} "
                f"errors; {max(0, self.created - finished)} still generating)"
            )
        return (
            f"interrupted after {snapshot.clock}: {created}, {self.refused} answered "
            f"without one (refused, or uncertain), {self.unanswered} sent without an "
            f"answer (uncertain: each may have created a task), {unsent} not sent; "
            f"{snapshot.requests} requests"
        )


def _number(value: float) -> str:
    """A balance as people write it: ``1234.5``, ``100`` (not ``100.0``)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


@click.command(
    epilog="Exit codes: 0 the balance was printed, 1 it could not be read, 2 usage error, "
    "130 Ctrl-C."
)
@click.option("--json", "as_json", is_flag=True, help='Print {"credits": BALANCE} instead.')
@global_options(at_group=False)
@click.pass_context
def credits(ctx: click.Context, as_json: bool) -> int:
    """Print the account's credit balance (a number; it may be fractional)."""
    configure_logging(ctx)
    veo = open_session(ctx, concurrency=1)

    async def read() -> float:
        async with veo:
            return await veo.credits()

    try:
        balance = run(read())
    except Interrupted as stop:
        click.echo(f"{PROG}: credits: interrupted", err=True)
        return stop.exit_code
    except VeoError as exc:
        raise click.ClickException(describe_error(exc)) from None
    click.echo(json.dumps({"credits": balance}) if as_json else _number(balance))
    return EXIT_OK
