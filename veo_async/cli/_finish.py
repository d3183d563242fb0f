"""Running a command's main coroutine to its end, the same way for every command."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

import click

from .. import StoreError, VeoError
from ._errors import describe_error, tell_key_refused
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
    :raises click.ClickException: for a store that cannot be used, or an
        error that stops the whole run (one line).
    """
    try:
        run(main)
    except Interrupted as stop:
        progress.print_summary(interrupted=True)
        return stop.exit_code
    except StoreError as exc:
        raise store_failure(exc) from None
    except VeoError as exc:
        # What stops a whole run (a 401 met while delivering from a store):
        # one line, as for any command, not an "unexpected" error.
        raise click.ClickException(describe_error(exc)) from None
    finally:
        sink.close()
    tell_key_refused([progress.key_refused])
    return None
