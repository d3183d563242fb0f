"""Where the CLI's task ids come from: arguments, files and standard input.

Ids are checked here, all of them, before the first request: a typo on line
9,000 of a file should stop the run at once with the line number, not after
an hour of polling the first 8,999.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TextIO

from ..models import validate_task_id
from ._lines import content_lines, open_text, stdin_lines

__all__ = ["STDIN", "IdSourceError", "collect_ids", "parse_id_lines"]

#: The name that stands for standard input, as an argument or as ``--from -``.
STDIN = "-"


class IdSourceError(ValueError):
    """Ids could not be read, or one of them is not a valid task id."""


def parse_id_lines(lines: Iterable[str], source: str) -> list[str]:
    """The ids in ``lines``: one per line, blank lines and ``#`` comment lines skipped.

    Surrounding whitespace (and the line ending, and a byte-order mark at the
    start) is layout, not part of the id; bytes that are not UTF-8 are refused.

    :param source: names the input in error messages (``"ids.txt"``).
    :raises IdSourceError: naming the source and line of the first invalid id.
    """
    ids: list[str] = []
    for number, line in content_lines(lines, source, IdSourceError):
        try:
            ids.append(validate_task_id(line))
        except (TypeError, ValueError) as exc:
            raise IdSourceError(f"{source}, line {number}: {exc}") from None
    return ids


def _read_file(path: str) -> list[str]:
    try:
        return parse_id_lines(open_text(path), path)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise IdSourceError(f"cannot read ids from {path}: {reason}") from None


def collect_ids(args: Sequence[str], files: Sequence[str], stdin: TextIO) -> list[str]:
    """All ids given, in order of appearance, each once.

    :param args: ids from the command line; ``-`` reads standard input there.
    :param files: files of ids (``--from``); ``-`` is standard input too.
    :param stdin: standard input, read at most once however often ``-`` is named.
    :raises IdSourceError: for an unreadable file or an invalid id.
    """
    found: list[str] = []
    stdin_read = False

    def from_stdin() -> list[str]:
        nonlocal stdin_read
        if stdin_read:
            return []
        stdin_read = True
        return parse_id_lines(stdin_lines(stdin, "ids", IdSourceError), "standard input")

    for arg in args:
        if arg == STDIN:
            found.extend(from_stdin())
            continue
        try:
            found.append(validate_task_id(arg))
        except (TypeError, ValueError) as exc:
            raise IdSourceError(f"invalid task id argument: {exc}") from None
    for path in files:
        found.extend(from_stdin() if path == STDIN else _read_file(path))
    # A repeated id is one task: one poll loop, one outcome line.
    return list(dict.fromkeys(found))
