"""One error, one short line: how the CLI shows an exception in passing."""

from __future__ import annotations

import sys
from collections.abc import Iterable

from .. import AuthenticationError

__all__ = ["describe_error", "tell_key_refused"]

# Long enough for "TransportError: Cannot connect to host api.kie.ai:443 ssl:default
# [...]", short enough for one terminal line next to the counters.
_MAX_LENGTH = 160
# A longer text keeps this much of its start (the error's kind and what it
# was doing) and its end (the reason: "[Connect call failed ...]", which a
# cut at the end took away), with " ... " between them.
_HEAD = 90


def describe_error(error: BaseException) -> str:
    """``"TransportError: cannot connect ..."``: whitespace collapsed, at most
    160 characters (a longer one cut in the middle, keeping the reason at its end)."""
    text = " ".join(f"{type(error).__name__}: {error}".split())
    if len(text) <= _MAX_LENGTH:
        return text
    gap = " ... "
    return text[:_HEAD] + gap + text[len(text) - (_MAX_LENGTH - _HEAD - len(gap)) :]


def tell_key_refused(errors: Iterable[BaseException | None]) -> None:
    """Print ``veo-async: error: AuthenticationError: ...`` on standard error
    if any of ``errors`` is a refused key (401).

    A 401 stops the whole session: every task after it ends in the same
    error, and the exit code (1) says the run could not go on. The per-task
    lines (stdout, or a table) show it too, but a user reading the terminal
    with ``--progress off`` or stdout piped away is owed the one line that
    says why, as ``credits`` gives.
    """
    refused = next((e for e in errors if isinstance(e, AuthenticationError)), None)
    if refused is not None:
        print(f"veo-async: error: {describe_error(refused)}", file=sys.stderr)
