"""Pins on the command line's waiting side (``wait``, ``status``, their
outcomes, exit codes and JSON lines, and reading ids from files and standard
input) that mutation testing of ``veo_async/cli`` found no test holding: each
test says which behaviour it pins."""

from __future__ import annotations

import errno
import io
import json
import os
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import click
import pytest
from rich.console import Console

from veo_async import (
    RecordInfo,
    ServerError,
    SQLiteStore,
    StoreCorruptError,
    StoreLockedError,
    TaskFailedError,
    TaskStatus,
    TransportError,
    VideoResult,
    WaitTimeoutError,
)
from veo_async.cli._ids import IdSourceError, collect_ids, parse_id_lines
from veo_async.cli._outcome import EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT, Outcome, Tally, outcome_of
from veo_async.cli._output import JsonLines, carries_unicode, status_json, status_table
from veo_async.cli._tasks import (
    delivered_from_store,
    open_store,
    require_existing_store,
    store_failure,
)
from veo_async.testing import FakeKie, Fault

from ._cli import FAST, KEY, against, cli, usage_error_of
from .conftest import session_on

GENERATING = RecordInfo(task_id="t1", status=TaskStatus.GENERATING)


class _Ended:
    """A handle whose wait has ended with ``error`` (or the SUCCESS record)."""

    def __init__(self, error: BaseException | None) -> None:
        self.task_id = "t1"
        self._error = error

    def result(self) -> RecordInfo:
        if self._error is not None:
            raise self._error
        return RecordInfo(task_id="t1", status=TaskStatus.SUCCESS)


def _outcome(error: BaseException | None) -> Any:
    return outcome_of(_Ended(error))  # type: ignore[arg-type]


# -- outcomes -------------------------------------------------------------------------------


def test_a_timeout_whose_polls_were_answered_with_5xx_is_a_timeout() -> None:
    """A wait that timed out having seen no record, its polls answered with a
    5xx, reached the service: its outcome is ``timeout`` (exit 3), not
    ``error``; only failing to connect at all is an error."""
    busy = ServerError("busy", code=500, http_status=500, task_id="t1")
    outcome = _outcome(WaitTimeoutError("t1", 5.0, None, busy))
    assert outcome.kind is Outcome.TIMEOUT
    assert outcome.request_error is busy


def test_a_timeout_that_saw_a_record_is_a_timeout_whatever_its_last_error() -> None:
    """A wait that read the task's record at least once and then lost the
    connection is a ``timeout`` carrying that record, not an ``error``: the
    service was reached."""
    reset = TransportError("connection reset", task_id="t1")
    outcome = _outcome(WaitTimeoutError("t1", 5.0, GENERATING, reset))
    assert outcome.kind is Outcome.TIMEOUT
    assert outcome.to_json()["record"]["status"] == "GENERATING"
    assert outcome.request_error is reset


def test_a_timeout_that_never_reached_the_service_is_an_error_of_transport() -> None:
    """No record and the polls failing to connect: ``error`` carrying the
    TransportError itself (its name in the line), and no record."""
    reset = TransportError("connection refused", task_id="t1")
    outcome = _outcome(WaitTimeoutError("t1", 5.0, None, reset))
    assert outcome.kind is Outcome.ERROR
    assert outcome.to_json() == {
        "task_id": "t1", "outcome": "error", "error": "TransportError",
        "message": str(reset),
    }


def test_a_failed_render_is_failed_with_its_record_and_message() -> None:
    """Status 2 or 3 is ``failed`` (not ``error``): the line names
    TaskFailedError, its message, and the FAILED record."""
    record = RecordInfo(task_id="t1", status=TaskStatus.FAILED, error_message="refused")
    outcome = _outcome(TaskFailedError(record))
    assert outcome.kind is Outcome.FAILED
    assert outcome.request_error is None
    line = outcome.to_json()
    assert line["outcome"] == "failed"
    assert line["error"] == "TaskFailedError"
    assert line["record"]["status"] == "FAILED"


# -- the tally and its exit code --------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (TaskStatus.SUCCESS, EXIT_OK),
        (TaskStatus.FAILED, EXIT_FAILED),
        (TaskStatus.GENERATION_FAILED, EXIT_FAILED),
        (None, EXIT_FAILED),
    ],
)
def test_an_outcome_an_earlier_run_delivered_still_sets_the_exit_code(
    status: TaskStatus | None, code: int
) -> None:
    """``wait --store`` on an id an earlier run delivered and acknowledged
    writes no line again, but its stored status still counts: a failed task
    exits 1 the second time too, and one whose status cannot be read counts as
    an error (exit 1), never as a success."""
    tally = Tally(1)
    tally.add_earlier(status)
    assert tally.finished == 1
    assert tally.generating == 0
    assert tally.exit_code() == code
    if status is None:
        assert (tally.succeeded, tally.failed, tally.errors) == (0, 0, 1)
    elif status is TaskStatus.SUCCESS:
        assert (tally.succeeded, tally.failed, tally.errors) == (1, 0, 0)
    else:
        assert (tally.succeeded, tally.failed, tally.errors) == (0, 1, 0)


def test_an_error_outweighs_a_timeout_and_a_timeout_a_success() -> None:
    """Exit codes: any error (not only a failed render) gives 1 even beside a
    timeout; a timeout with only successes gives 3; successes alone 0."""
    tally = Tally(3, succeeded=1)
    assert tally.exit_code() == EXIT_OK
    tally.timed_out += 1
    assert tally.exit_code() == EXIT_TIMEOUT
    tally.add_error()
    assert tally.exit_code() == EXIT_FAILED
    assert tally.generating == 0


def test_generating_counts_the_tasks_without_an_outcome() -> None:
    """``generating`` is the total less every outcome so far (of each kind)."""
    tally = Tally(10, succeeded=1, failed=2, timed_out=3, errors=1)
    assert tally.finished == 7
    assert tally.generating == 3


# -- ids from arguments, files and standard input -----------------------------------------------


class _Stdin(io.StringIO):
    """Standard input that counts how often it is read through."""

    reads = 0

    def __iter__(self) -> Any:
        self.reads += 1
        return super().__iter__()


def test_ids_keep_their_first_order_and_each_is_kept_once() -> None:
    """Ids come in order of appearance (arguments, then each file), a repeat
    dropped where it comes again, not sorted: the lines of ``status`` follow it."""
    stdin = _Stdin("zz3\nbb2\nzz9\n")
    assert collect_ids(["zz9", "-", "aa1", "zz9"], [], stdin) == ["zz9", "zz3", "bb2", "aa1"]


def test_standard_input_named_twice_is_read_once() -> None:
    """``wait - --from -``: standard input is read once, whatever names it
    (a terminal would otherwise wait for a second end of input)."""
    stdin = _Stdin("s1\ns2\n")
    assert collect_ids(["-", "a1"], ["-", "-"], stdin) == ["s1", "s2", "a1"]
    assert stdin.reads == 1


def test_from_dash_reads_standard_input_not_a_file_named_dash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--from -`` is standard input, even where a file named "-" exists."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "-").write_text("from-the-file\n", encoding="utf-8")
    assert collect_ids([], ["-"], _Stdin("from-stdin\n")) == ["from-stdin"]


def test_standard_input_that_is_not_utf8_is_a_usage_error_naming_it() -> None:
    """Bytes on standard input that are not UTF-8 are refused as an id source
    error (a usage error, exit 2) saying so, not an unexpected traceback."""
    stdin = io.TextIOWrapper(io.BytesIO(b"ok1\n\xff\xfe\n"), encoding="utf-8")
    with pytest.raises(IdSourceError, match="standard input: not UTF-8"):
        collect_ids(["-"], [], stdin)


def test_an_unreadable_ids_file_is_named_with_the_reason(tmp_path: Path) -> None:
    """A --from that is a directory (not only a missing file) is refused
    naming the path and the system's reason, before any request."""
    with pytest.raises(IdSourceError) as refused:
        collect_ids([], [str(tmp_path)], _Stdin(""))
    assert str(refused.value) == f"cannot read ids from {tmp_path}: Is a directory"


def _ids(text: str, source: str = "ids.txt") -> list[str]:
    return parse_id_lines(io.StringIO(text), source)


def test_a_byte_order_mark_opening_the_first_line_is_layout() -> None:
    """A UTF-8 byte-order mark opening a file (Windows editors write one) is
    not part of the first id, even with spaces after it; one opening a later
    line is refused as part of that id."""
    assert _ids("\ufeffbom1\nbom2\n") == ["bom1", "bom2"]
    assert _ids("\ufeff  spaced\n") == ["spaced"]
    assert _ids("\ufeff\nfirst-after-blank\n") == ["first-after-blank"]
    with pytest.raises(IdSourceError, match=r"^ids\.txt, line 2: "):
        _ids("ok1\n\ufeffok2\n")


def test_comment_lines_are_skipped_however_they_are_written() -> None:
    """A line whose content starts with "#" is a comment, with or without a
    space after the mark and however indented."""
    assert _ids("#tight\n# spaced\n   # indented\nkept\n") == ["kept"]


def test_layout_around_an_id_is_not_part_of_it() -> None:
    """Spaces, tabs and a CRLF around an id are layout."""
    assert _ids("\t lead \t\r\ntrail   \n") == ["lead", "trail"]


def test_an_invalid_id_is_named_by_its_source_and_line_number() -> None:
    """The first invalid id stops the read, naming the source and its
    1-based line number (blank and comment lines counted)."""
    with pytest.raises(IdSourceError, match=r"^ids\.txt, line 4: "):
        _ids("# head\n\nok1\nnull\nok2\n")


def test_a_file_line_that_is_not_utf8_is_named_by_its_line(tmp_path: Path) -> None:
    """A --from file with bytes that are not UTF-8 is refused naming its
    line, not read as an id of replacement characters."""
    ids = tmp_path / "ids.txt"
    ids.write_bytes(b"ok1\nok2\nbad\xff\n")
    with pytest.raises(IdSourceError, match=r"ids\.txt, line 3: not UTF-8 text"):
        collect_ids([], [str(ids)], _Stdin(""))


# -- JSON lines and the status table ----------------------------------------------------------


def test_each_json_line_is_in_the_file_as_soon_as_it_is_written(tmp_path: Path) -> None:
    """``-o FILE``: a line is flushed as it is written (a reader tailing the
    file sees each result at once, and a killed run loses none)."""
    path = tmp_path / "out.jsonl"
    sink = JsonLines(str(path))
    try:
        sink.write({"task_id": "t1", "outcome": "succeeded"})
        assert json.loads(path.read_text(encoding="utf-8")) == {
            "task_id": "t1", "outcome": "succeeded"
        }
    finally:
        sink.close()


def test_appending_keeps_the_lines_already_in_the_file(tmp_path: Path) -> None:
    """With a store, -o is added to: the lines of results an earlier run wrote
    (and acknowledged) stay; without, the file is emptied, but only when the
    run starts."""
    path = tmp_path / "out.jsonl"
    path.write_text('{"task_id": "old"}\n', encoding="utf-8")
    sink = JsonLines(str(path), append=True)
    sink.write({"task_id": "new"})
    sink.close()
    assert path.read_text(encoding="utf-8").splitlines() == [
        '{"task_id": "old"}', '{"task_id": "new"}'
    ]
    fresh = JsonLines(str(path))
    assert path.read_text(encoding="utf-8") != ""  # not emptied before start()
    fresh.start()
    fresh.close()
    assert path.read_text(encoding="utf-8") == ""


def test_an_output_that_cannot_be_written_is_refused_before_the_run(tmp_path: Path) -> None:
    """-o naming a directory, or a file in a directory that does not exist, is
    refused when the sink is made (a usage error before any request), and
    nothing is created."""
    with pytest.raises(IsADirectoryError):
        JsonLines(str(tmp_path))
    missing = tmp_path / "no" / "out.jsonl"
    with pytest.raises(FileNotFoundError):
        JsonLines(str(missing))
    assert not missing.parent.exists()


def test_json_lines_keep_text_as_is_on_a_utf8_stdout(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a UTF-8 standard output (or one with no encoding) the JSON carries
    characters as written, not as \\u escapes."""
    raw = io.BytesIO()
    monkeypatch.setattr("sys.stdout", io.TextIOWrapper(raw, encoding="utf-8", write_through=True))
    JsonLines(None).write({"message": "\u00c9chec"})
    assert raw.getvalue().decode("utf-8") == '{"message": "\u00c9chec"}\n'
    assert carries_unicode(io.StringIO())


def test_a_status_line_that_could_not_be_read_has_a_null_status() -> None:
    """``status --json`` for a lookup that failed: ``"status": null`` (the key
    is there), the error's type and message."""
    line = status_json("t1", TransportError("connection refused", task_id="t1"))
    assert line == {
        "task_id": "t1", "status": None, "error": "TransportError",
        "message": str(TransportError("connection refused", task_id="t1")),
    }


def _table(record: RecordInfo, width: int = 200) -> str:
    out = io.StringIO()
    status_table([(record.task_id, record)], Console(file=out, width=width))
    return out.getvalue()


def test_the_status_table_says_how_many_more_urls_a_success_has() -> None:
    """A success with several result URLs shows the first and "(+N more)"."""
    video = VideoResult(task_id="t1", result_urls=("https://x/1.mp4", "https://x/2.mp4"))
    shown = _table(RecordInfo(task_id="t1", status=TaskStatus.SUCCESS, response=video))
    assert "https://x/1.mp4 (+1 more)" in shown


@pytest.mark.parametrize("status", [TaskStatus.FAILED, TaskStatus.GENERATION_FAILED])
def test_the_status_table_shows_a_failures_code_and_message(status: TaskStatus) -> None:
    """Status 2 and 3 alike show "code: message", code 0 included."""
    record = RecordInfo(task_id="t1", status=status, error_code=0, error_message="flagged")
    assert "0: flagged" in _table(record)


def test_a_piped_status_table_keeps_each_row_on_one_line() -> None:
    """Not on a terminal, the table is as wide as its longest row: a long
    result URL is never folded over two lines."""
    url = "https://example.com/" + "v" * 150 + ".mp4"
    video = VideoResult(task_id="t1", result_urls=(url,))
    shown = _table(RecordInfo(task_id="t1", status=TaskStatus.SUCCESS, response=video), 60)
    assert any(url in line for line in shown.splitlines())


# -- wait --store -------------------------------------------------------------------------------


@pytest.fixture
async def kie() -> AsyncIterator[FakeKie]:
    """A simulator on loopback expecting the CLI tests' key."""
    async with FakeKie(api_key=KEY) as fake:
        yield fake


@pytest.mark.real_time
@pytest.mark.loopback
async def test_wait_store_counts_each_id_once_whether_delivered_now_or_before(
    kie: FakeKie, tmp_path: Path
) -> None:
    """wait --store: an id delivered in this run gets its line and is not also
    called "already delivered"; one an earlier run delivered gets no line,
    one stderr notice, and counts once in the summary, as does each new one."""
    db = str(tmp_path / "veo.db")
    kie.add_task("veo_a", complete_after=0.05)
    kie.add_task("veo_c", complete_after=0.05)
    first = await cli("wait", *against(kie, "--store", db, *FAST, "veo_a"))
    assert first.code == 0, first.stderr
    assert set(first.by_id()) == {"veo_a"}
    assert "already delivered" not in first.stderr
    assert "1 task in" in first.stderr
    assert "1 succeeded, 0 failed, 0 timed out, 0 errors" in first.stderr
    second = await cli("wait", *against(kie, "--store", db, *FAST, "veo_a", "veo_c"))
    assert second.code == 0, second.stderr
    assert set(second.by_id()) == {"veo_c"}
    assert second.stderr.count("already delivered") == 1
    assert "veo_a: already delivered and acknowledged by an earlier run (SUCCESS;" in second.stderr
    assert "2 tasks in" in second.stderr
    assert "2 succeeded, 0 failed, 0 timed out, 0 errors" in second.stderr


async def test_a_result_is_acknowledged_only_once_the_next_is_asked_for(
    fake_kie: FakeKie, tmp_path: Path
) -> None:
    """delivered_from_store acknowledges a result after its caller has had it
    (and written its line), not before handing it over: a run that stops
    while holding it leaves it to be delivered again."""
    fake_kie.add_task("veo_a")
    async with session_on(fake_kie, store=SQLiteStore(tmp_path / "veo.db")) as veo:
        assert veo.store is not None
        async with aclosing(delivered_from_store(veo, ["veo_a"], lambda total: None)) as found:
            handle = await anext(found)
            assert handle.task_id == "veo_a"
            held = await veo.store.get("veo_a")
            assert held is not None
            assert not held.acked
        left = await veo.store.get("veo_a")
        assert left is not None
        assert not left.acked


def test_a_redis_store_url_is_never_refused_as_a_missing_file() -> None:
    """A redis:// (any case) --store with no ids is not a file: it is not
    refused as "no such store file"; a missing file is, by its path."""
    require_existing_store("REDIS://localhost:6379/0#veo")
    with pytest.raises(click.UsageError, match="no such store file"):
        require_existing_store("/nonexistent/veo.db")


def test_a_store_that_is_no_store_is_a_usage_error_and_one_in_use_is_not(
    tmp_path: Path,
) -> None:
    """A corrupt or foreign store file is a usage error (exit 2); a store
    another process holds is exit 1; a directory is refused before any I/O."""
    corrupt = store_failure(StoreCorruptError("not a store", path="x.db"))
    assert isinstance(corrupt, click.UsageError)
    assert corrupt.exit_code == 2
    held = store_failure(StoreLockedError("in use", path="x.db"))
    assert not isinstance(held, click.UsageError)
    assert held.exit_code == 1
    with pytest.raises(click.UsageError, match="is a directory"):
        open_store(str(tmp_path))


class _UnreadableStdin(io.StringIO):
    """Standard input whose read fails (a terminal gone, a reset socket)."""

    def __iter__(self) -> Any:
        raise OSError(errno.EIO, os.strerror(errno.EIO))


@pytest.mark.parametrize(
    ("command", "what"),
    [(["wait", "-"], "ids"), (["status", "-"], "ids"), (["generate", "--from", "-"], "requests")],
)
@pytest.mark.parametrize("stdin", [None, _UnreadableStdin()], ids=["closed", "unreadable"])
def test_standard_input_that_cannot_be_read_is_a_usage_error(
    command: list[str], what: str, stdin: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """``-`` with standard input closed (``<&-``: Python's sys.stdin is None)
    or failing to read is refused as an unreadable --from FILE is: a usage
    error naming standard input (exit 2, before any request), not an
    "unexpected TypeError/OSError" exit 1."""
    monkeypatch.setattr("sys.stdin", stdin)
    err = usage_error_of([command[0], "--api-key", KEY, *command[1:]], capsys)
    assert f"cannot read {what} from standard input" in err


@pytest.mark.parametrize(
    ("stored", "asked"),
    [
        ("https://cb.example/h?", "https://cb.example/h"),
        ("https://cb.example/h?a=1&", "https://cb.example/h?a=1"),
        ("https://cb.example/h?&veo_ref=r1", "https://cb.example/h"),
    ],
)
def test_a_rerun_knows_a_request_whose_callback_url_ends_its_query_empty(
    stored: str, asked: str
) -> None:
    """generate --store: a request stored with its callback URL ending in an
    empty query ("cb?", "cb?a=1&", as the store's ref was added to it) is
    the same request as the one asked again without it, so a rerun finds it
    sent already and does not send it (and pay for it) a second time."""
    from veo_async.cli._resume import _key

    assert _key({"prompt": "p", "callBackUrl": stored}) == _key(
        {"prompt": "p", "callBackUrl": asked}
    )
    assert _key({"prompt": "p", "callBackUrl": "https://cb.example/h?a=1"}) != _key(
        {"prompt": "p", "callBackUrl": "https://cb.example/h"}
    )


@pytest.mark.real_time
@pytest.mark.loopback
async def test_a_store_waited_generate_counts_refused_creates_in_its_total(
    tmp_path: Path,
) -> None:
    """generate --store --wait with one create refused (an error line) and
    two created and waited for: the summary's total counts all three
    requests, the refused one beside the stored results."""
    requests = tmp_path / "requests.jsonl"
    requests.write_text(
        "".join(json.dumps({"prompt": f"a cat, take {n}"}) + "\n" for n in range(3)),
        encoding="utf-8",
    )
    async with FakeKie(api_key=KEY, time_scale=0.001, seed=5) as kie:
        kie.inject_create(Fault.body_code(400, "refused", 200), 1)
        args = ("--from", str(requests), "--store", str(tmp_path / "veo.db"), "--wait")
        run = await cli("generate", *against(kie, *args, "--progress", "plain", *FAST))
    assert run.code == 1
    assert "generate: 3 tasks in " in run.stderr
    assert "2 succeeded, 0 failed, 0 timed out, 1 error;" in run.stderr

