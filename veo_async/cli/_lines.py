"""The lines of an input file (ids, requests): what counts as content, and
what is refused with its line number, the same way for every input."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import TextIO

__all__ = ["content_lines", "open_text", "stdin_lines"]

_BOM = "\ufeff"
# What surrogateescape makes of bytes that are not UTF-8.
_UNDECODED = re.compile("[\udc80-\udcff]")


def content_lines(
    lines: Iterable[str], source: str, error: type[ValueError]
) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` for each line with content, stripped: blank
    lines and ``#`` comment lines are skipped, and so is a UTF-8 byte-order
    mark opening the first line (Windows editors write one).

    :param source: names the input in error messages (``"ids.txt"``).
    :param error: raised, naming the source and line, for a line holding
        bytes that are not UTF-8 (read with ``errors="surrogateescape"``).
    """
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if number == 1:
            line = line.lstrip(_BOM).strip()
        if _UNDECODED.search(line):
            raise error(f"{source}, line {number}: not UTF-8 text")
        if line and not line.startswith("#"):
            yield number, line


def open_text(path: str) -> Iterator[str]:
    """The lines of file ``path`` as UTF-8, bytes that are not UTF-8 kept (as
    surrogates) for :func:`content_lines` to name their line.

    :raises OSError: when the file cannot be read.
    """
    with open(path, encoding="utf-8", errors="surrogateescape") as handle:
        yield from handle


def stdin_lines(stdin: TextIO | None, what: str, error: type[ValueError]) -> Iterator[str]:
    """The lines of standard input, or ``error`` saying why they cannot be
    read: closed (``<&-``: Python's ``sys.stdin`` is None), not UTF-8, or an
    I/O error (a terminal gone); a usage error, as a file that cannot be
    read is, not an "unexpected" crash.

    :param what: what is read, for the message (``"ids"``, ``"requests"``).
    """
    if stdin is None:
        raise error(f"cannot read {what} from standard input: it is closed")
    try:
        yield from stdin
    except UnicodeDecodeError:
        raise error(f"cannot read {what} from standard input: not UTF-8 text") from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise error(f"cannot read {what} from standard input: {reason}") from None
