"""Running a command's main coroutine to its end, the same way for every command."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from .. import StoreError
from ._output import JsonLines
from ._progress import ProgressReporter
from ._run import Interrupted, run
from ._tasks import store_failure

__all__ = ["run_to_end"]


def run_to_end(
    main: Coroutine[Any, Any, None], progress: ProgressReporter, sink: JsonLines
) -> int | None:
    """Run ``main``; the output is closed whatever happens.

    :returns: the exit code of an interruption (after its summary), or None
        when ``main`` ran to its end.
    :raises click.ClickException: for a store that cannot be used (one line).
    """
    try:
        run(main)
    except Interrupted as stop:
        progress.print_summary(interrupted=True)
        return stop.exit_code
    except StoreError as exc:
        raise store_failure(exc) from None
    finally:
        sink.close()
    return None
