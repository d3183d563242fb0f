"""Where the CLI's results go: JSON lines, and the ``status`` table."""

from __future__ import annotations

import codecs
import contextlib
import datetime as _dt
import errno
import io
import json
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any, Literal, TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .. import RecordInfo, TaskStatus

__all__ = [
    "JsonLines",
    "LookupResult",
    "carries_unicode",
    "escape_what_streams_cannot_carry",
    "status_json",
    "status_table",
]

# Encodings that carry every character.
_UNICODE_CODECS = frozenset(
    {"utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"}
)


def carries_unicode(stream: object) -> bool:
    """Whether text of any character can be written to ``stream`` (its
    encoding is a UTF; a stream with none, a StringIO, takes text as is)."""
    encoding = getattr(stream, "encoding", None)
    if not encoding:
        return True
    try:
        return codecs.lookup(encoding).name in _UNICODE_CODECS
    except LookupError:
        return False


@contextlib.contextmanager
def escape_what_streams_cannot_carry() -> Iterator[None]:
    """Meanwhile, standard output and error in an encoding without every
    character (LC_ALL=C, PYTHONIOENCODING=ascii) write what they cannot carry
    as backslash escapes: a record with an emoji in its prompt or error
    message ended ``status`` with "unexpected UnicodeEncodeError", and nothing
    shown. Put back after (``run_cli`` may run inside a program of the user's)."""
    changed = [
        (stream, stream.errors)
        for stream in (sys.stdout, sys.stderr)
        if isinstance(stream, io.TextIOWrapper) and not carries_unicode(stream)
    ]
    for stream, _ in changed:
        stream.reconfigure(errors="backslashreplace")
    try:
        yield
    finally:
        for stream, errors in changed:
            with contextlib.suppress(ValueError):  # (a stream closed meanwhile)
                stream.reconfigure(errors=errors)

#: One ``status`` lookup: the record, or the error that prevented reading it.
LookupResult = RecordInfo | Exception

_STATUS_STYLE = {
    TaskStatus.GENERATING: "cyan",
    TaskStatus.SUCCESS: "green",
    TaskStatus.FAILED: "red",
    TaskStatus.GENERATION_FAILED: "red",
}


def _check_writable(path: str) -> None:
    """Raise the OSError opening ``path`` for appending would, without
    making the file when it does not exist."""
    if os.path.exists(path):
        with open(path, "a", encoding="utf-8"):
            return
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
    if not os.access(folder, os.W_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)


class JsonLines:
    """Writes one JSON object per line, flushed at once so results stream.

    :param path: a file to (over)write, or None (or ``"-"``, as everywhere
        on the command line) for standard output. Standard output is looked
        up at each write, not kept: the live display may redirect it while
        it runs.
    :param append: add to the file instead of emptying it: a run with a
        store resumes an earlier one, whose lines (of results acknowledged,
        never delivered again) the file must keep.
    :raises OSError: when the file cannot be opened.
    """

    def __init__(self, path: str | None, *, append: bool = False) -> None:
        self._path = None if path is None or path == "-" else path
        self._mode: Literal["a", "w"] = "a" if append else "w"
        self._file: TextIO | None = None
        if self._path is not None:
            # Checked now (a usage error before any request), but not made or
            # emptied until start(): a run refused later (its store in use by
            # another run writing this very file) must leave no trace.
            _check_writable(self._path)

    def start(self) -> None:
        """Open the file, emptied (unless appending), for this run's lines:
        call it once the run is sure to go ahead (its session entered, its
        store locked). Idempotent; the first :meth:`write` calls it too."""
        if self._path is not None and self._file is None:
            self._file = open(self._path, self._mode, encoding="utf-8")  # noqa: SIM115 - closed by close()

    def write(self, obj: dict[str, Any]) -> None:
        """Write ``obj`` as one line."""
        if self._path is not None and self._file is None:
            self.start()
        stream = self._file if self._file is not None else sys.stdout
        # A stdout that cannot carry every character (LC_ALL=C, PYTHONIOENCODING
        # =ascii) gets the same JSON with \u escapes, which every reader decodes
        # alike: the line of a create already charged for was an "unexpected
        # UnicodeEncodeError", its task id printed nowhere.
        stream.write(json.dumps(obj, ensure_ascii=not carries_unicode(stream)) + "\n")
        stream.flush()

    def close(self) -> None:
        """Close the file, if one was opened. Idempotent."""
        if self._file is not None:
            self._file.close()
            self._file = None


def status_json(task_id: str, result: LookupResult) -> dict[str, Any]:
    """The ``status --json`` line of one lookup.

    ``{"task_id", "status": "SUCCESS", "record": {...}}``, or for a lookup
    that failed ``{"task_id", "status": null, "error": type, "message"}``.
    """
    if isinstance(result, RecordInfo):
        return {
            "task_id": task_id,
            "status": result.status.name,
            "record": result.to_jsonable(),
        }
    return {
        "task_id": task_id,
        "status": None,
        "error": type(result).__name__,
        "message": str(result),
    }


def _time(value: _dt.datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _detail(record: RecordInfo) -> str:
    if record.status is TaskStatus.SUCCESS:
        urls = record.result_urls
        more = f" (+{len(urls) - 1} more)" if len(urls) > 1 else ""
        return (urls[0] + more) if urls else "(no result URL)"
    if record.status.is_terminal:
        code = f"{record.error_code}: " if record.error_code is not None else ""
        return f"{code}{record.error_message}" if (code or record.error_message) else "-"
    return "-"


def status_table(results: Sequence[tuple[str, LookupResult]], console: Console) -> None:
    """Print one row per lookup: id, status, completion time, result URL or error."""
    table = Table()
    table.add_column("task id", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("completed (UTC)", no_wrap=True)
    table.add_column("result / error", overflow="fold")
    widths = [len("task id"), len("status"), len("completed (UTC)"), len("result / error")]
    for task_id, result in results:
        # Text, not str: a str cell is read as rich markup, and an id or an
        # error message with "[/]" or "[link=...]" in it broke the table or
        # showed as something else.
        if isinstance(result, RecordInfo):
            status = Text(result.status.name, style=_STATUS_STYLE[result.status])
            detail = _detail(result)
            done = _time(result.complete_time)
        else:
            status = Text("ERROR", style="bold red")
            detail = f"{type(result).__name__}: {result}"
            done = "-"
        cells = (Text(task_id), status, Text(done), Text(detail))
        table.add_row(*cells)
        widths = [max(width, len(cell)) for width, cell in zip(widths, cells, strict=True)]
    if console.is_terminal:
        console.print(table)
    else:
        # Piped: each row on one line (a URL folded over two cannot be
        # copied or grepped), however long; 13 = borders and padding.
        console.width = max(console.width, sum(widths) + 13)
        console.print(table)
