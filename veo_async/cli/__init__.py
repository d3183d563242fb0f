"""The ``veo-async`` command line: create, check, wait for, demo and simulate Veo tasks.

::

    veo-async status veo_task_1 veo_task_2          # one poll each, a table
    veo-async wait --from ids.txt -o results.jsonl  # poll until every task is done
    veo-async generate "A cat surfing" --wait       # create a task, wait for it
    veo-async generate --from requests.jsonl        # one JSON request per line
    veo-async credits                               # the balance
    veo-async demo                                  # 300 simulated creates, ~15 s, no key
    veo-async simulate --port 8765                  # a fake Kie for integration tests

``python -m veo_async`` is the same program. Results go to standard output (or
``--output``) as JSON lines; progress and errors go to standard error. A bad
command line gets one line, ``veo-async: error: ...``, and exit code 2,
before any request is made. Ctrl-C stops a run cleanly: every request and
connection is closed, a summary of what finished is printed, and the exit
code is 130.

click and rich come with the ``cli`` extra (``pip install 'veo-async[cli]'``);
this module imports them only when the command line runs, so the library
itself never needs them.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import NoReturn

__all__ = ["EXIT_INTERRUPTED", "INTERRUPTED", "MISSING_EXTRA", "main", "run_cli"]

#: What ``veo-async`` says, and exits 2 with, when click or rich is missing.
MISSING_EXTRA = (
    "veo-async: error: the command line needs click and rich: pip install 'veo-async[cli]'"
)

#: What ``veo-async`` says, and exits :data:`EXIT_INTERRUPTED` with, when
#: Ctrl-C comes before a command started.
INTERRUPTED = "veo-async: interrupted"
#: The shell's code for "stopped by SIGINT" (128 + 2).
EXIT_INTERRUPTED = 130

_CLI_PACKAGES = ("click", "rich")


def _is_cli_package(name: str | None) -> bool:
    return name is not None and name.partition(".")[0] in _CLI_PACKAGES


def run_cli(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code (``main`` without ``sys.exit``).

    :param argv: the arguments, without the program name; None reads ``sys.argv``.
    """
    try:
        from ._app import run_cli as run_app
    except ModuleNotFoundError as exc:
        if not _is_cli_package(exc.name):
            raise
        print(MISSING_EXTRA, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Ctrl-C while the command line loads (click, rich, the commands: a
        # few tenths of a second): nothing has started, so nothing to report
        # but that, and no traceback. From here on, click and the commands'
        # own signal handling take over.
        print(INTERRUPTED, file=sys.stderr)
        return EXIT_INTERRUPTED
    return run_app(argv)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """The ``veo-async`` console script (and ``python -m veo_async``)."""
    sys.exit(run_cli(argv))
