"""One error, one short line: how the CLI shows an exception in passing."""

from __future__ import annotations

__all__ = ["describe_error"]

# Long enough for "TransportError: Cannot connect to host api.kie.ai:443 ssl:default
# [...]", short enough for one terminal line next to the counters.
_MAX_LENGTH = 160


def describe_error(error: BaseException) -> str:
    """``"TransportError: cannot connect ..."``: whitespace collapsed, at most 160 characters."""
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return text if len(text) <= _MAX_LENGTH else text[: _MAX_LENGTH - 3] + "..."
