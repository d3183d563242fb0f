"""Building the session a command uses, from its options (no I/O yet)."""

from __future__ import annotations

from collections.abc import Callable

import click

from .. import PollPolicy, VeoSession
from ..events import Event
from ._options import Settings, require_api_key
from ._tasks import open_store

__all__ = ["open_session"]


def open_session(
    ctx: click.Context,
    *,
    concurrency: int,
    rate: float | None = None,
    policy: PollPolicy | None = None,
    store_path: str | None = None,
    on_event: Callable[[Event], None] | None = None,
) -> VeoSession:
    """A session from the global options and these; built outside the event loop.

    :raises click.UsageError: for a bad setting or store path.
    """
    key = require_api_key(ctx)
    base_url = ctx.ensure_object(Settings).base_url
    store = open_store(store_path) if store_path is not None else None
    try:
        # base_url None: the session's own default (KIE_BASE_URL, else Kie's).
        return VeoSession(
            key,
            base_url=base_url,
            concurrency=concurrency,
            rate=rate,
            policy=policy,
            store=store,
            on_event=on_event,
        )
    except (TypeError, ValueError) as exc:
        if base_url is None and str(exc).startswith("base_url"):
            # The URL came from KIE_BASE_URL, read by the session itself.
            raise click.UsageError(f"KIE_BASE_URL: {exc}") from None
        raise click.UsageError(str(exc)) from None
