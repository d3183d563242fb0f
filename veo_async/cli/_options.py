"""The options the CLI's commands share, and turning them into library objects.

The global options (``--api-key``, ``--base-url``, ``--verbose``) are accepted
both before the command (``veo-async --api-key K wait ...``) and after it
(``veo-async wait --api-key K ...``), since people type both; the value given
last on the command line wins. The environment (``KIE_API_KEY``,
``KIE_BASE_URL``) is read once, at the group level, so that it can never
override a value given on the command line.
"""

from __future__ import annotations

import logging
import math
import re
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
import click

from .. import PollPolicy
from ..events import RAISED_TOO
from ..models import validate_base_url
from ._progress import PROGRESS_MODES

__all__ = [
    "DEFAULT_BASE_URL",
    "PositiveNumber",
    "Settings",
    "build_policy",
    "configure_logging",
    "global_options",
    "output_option",
    "policy_options",
    "progress_options",
    "require_api_key",
]

F = TypeVar("F", bound=Callable[..., Any])

class PositiveNumber(click.FloatRange):
    """A number > 0 (at most ``maximum``), finite: ``nan`` and ``inf`` pass
    click's own range check (every comparison with NaN is false)."""

    name = "positive number"

    def __init__(self, maximum: float | None = None) -> None:
        super().__init__(min=0, min_open=True, max=maximum)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


#: The service root when neither ``--base-url`` nor ``KIE_BASE_URL`` gives one.
#: For messages only: the CLI passes no URL then, and the session picks its default.
DEFAULT_BASE_URL = "https://api.kie.ai"

#: The policy field behind each option, for options and error messages alike.
_POLICY_OPTIONS = {
    "timeout": "--timeout",
    "first_poll": "--first-poll",
    "interval": "--interval",
    "factor": "--factor",
    "max_interval": "--poll-cap",
    "jitter": "--jitter",
    "not_found_grace": "--grace",
}
_FIELD_NAMES = re.compile(r"\b(" + "|".join(_POLICY_OPTIONS) + r")\b")


@attrs.define
class Settings:
    """The global options, kept on the click context (``ctx.obj``).

    :ivar api_key: the Kie API key, or None when neither given nor in the environment.
    :ivar base_url: the service root, or None when neither given nor in the environment.
    :ivar verbose: log the ``veo_async`` logger at DEBUG level to standard error.
    """

    api_key: str | None = attrs.field(default=None, repr=False)  # never in a repr
    base_url: str | None = None
    verbose: bool = False

    @property
    def shown_base_url(self) -> str:
        """The service root the session will use, for messages."""
        return self.base_url if self.base_url is not None else DEFAULT_BASE_URL


def _settings(ctx: click.Context) -> Settings:
    return ctx.ensure_object(Settings)


def _check_base_url(value: str) -> str:
    try:
        return validate_base_url(value)
    except ValueError as exc:  # the session's own check, as a usage error
        raise click.BadParameter(str(exc)) from None


def global_options(*, at_group: bool, service: bool = True) -> Callable[[F], F]:
    """Add ``--api-key``, ``--base-url`` and ``--verbose`` to a group or a command.

    :param at_group: read the environment too (only the group does).
    :param service: False for a command that talks to no service (``demo``,
        ``simulate``): ``--verbose`` only.
    """

    def store(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        source = ctx.get_parameter_source(param.name or "")
        given = source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")
        if at_group or given:
            if param.name == "base_url" and value is not None:
                if source is not None and source.name == "ENVIRONMENT":
                    try:
                        value = validate_base_url(value)
                    except ValueError:
                        # Said by the commands that talk to the service (the
                        # session reads KIE_BASE_URL itself: see open_session);
                        # one that does not (demo, simulate) must not fail on it.
                        return
                else:
                    value = _check_base_url(value)
            if value is not None:
                setattr(_settings(ctx), param.name or "", value)

    def decorate(func: F) -> F:
        func = click.option(
            "--verbose",
            "-v",
            is_flag=True,
            default=None,
            expose_value=False,
            callback=store,
            help="Log what the library does (logger veo_async, DEBUG) to standard error.",
        )(func)
        if not service:
            return func
        func = click.option(
            "--base-url",
            metavar="URL",
            envvar="KIE_BASE_URL" if at_group else None,
            show_envvar=at_group,
            expose_value=False,
            callback=store,
            help=f"The service root (default {DEFAULT_BASE_URL}).",
        )(func)
        return click.option(
            "--api-key",
            metavar="KEY",
            envvar="KIE_API_KEY" if at_group else None,
            show_envvar=at_group,
            expose_value=False,
            callback=store,
            help="The Kie API key (default: the KIE_API_KEY environment variable). "
            "Never printed.",
        )(func)

    return decorate


def require_api_key(ctx: click.Context) -> str:
    """The API key for a command that talks to the service.

    :raises click.UsageError: when there is none.
    """
    key = _settings(ctx).api_key
    if key is None:
        raise click.UsageError("no API key: pass --api-key KEY or set KIE_API_KEY", ctx=ctx)
    if not key.strip():
        # Given but blank (an empty variable, a quoted space): say so, or the
        # user looks for a key that is missing when it is empty.
        raise click.UsageError(
            "the API key is blank: pass --api-key KEY or set KIE_API_KEY to the key", ctx=ctx
        )
    return key


def policy_options(func: F) -> F:
    """Add the :class:`PollPolicy` knobs; they reach the command as keyword arguments."""
    default = PollPolicy()
    helps = {
        "timeout": f"Give up on a task after SECONDS (default {default.timeout:g}).",
        # The fixed schedule's (PollPolicy) knobs, with its defaults: "wait"
        # polls by it; "generate --wait" only when one of them is given.
        "first_poll": "Fixed schedule: seconds before a task's first poll "
        f"(default {default.first_poll:g}).",
        "interval": "Fixed schedule: the first gap between polls, in seconds "
        f"(default {default.interval:g}).",
        "factor": f"Fixed schedule: growth of the gap per poll (default {default.factor:g}).",
        "max_interval": "Fixed schedule: the largest gap between polls, in seconds "
        f"(default {default.max_interval:g}).",
        "jitter": "Fixed schedule: randomise each gap by ± this fraction "
        f"(default {default.jitter:g}).",
        "not_found_grace": "Seconds during which an unknown id counts as 'not visible yet' "
        f"(default {default.not_found_grace:g}).",
    }
    metavars = {"factor": "X", "jitter": "FRACTION"}
    for field, option in reversed(_POLICY_OPTIONS.items()):
        func = click.option(
            option,
            field,
            type=float,
            default=None,
            metavar=metavars.get(field, "SECONDS"),
            help=helps[field],
        )(func)
    return func


def build_policy(values: dict[str, Any]) -> PollPolicy:
    """The default policy with the knobs given on the command line.

    :param values: the command's keyword arguments; the non-policy ones are ignored.
    :raises click.UsageError: naming the options, for values the policy refuses.
    """
    changes = {field: values[field] for field in _POLICY_OPTIONS if values.get(field) is not None}
    try:
        return PollPolicy().replace(**changes)
    except (TypeError, ValueError) as exc:
        message = _FIELD_NAMES.sub(lambda match: _POLICY_OPTIONS[match.group(1)], str(exc))
        raise click.UsageError(message) from None


def progress_options(func: F) -> F:
    """Add ``--progress`` and ``--progress-interval``."""
    func = click.option(
        "--progress-interval",
        type=PositiveNumber(),
        default=5.0,
        show_default=True,
        metavar="SECONDS",
        help="Seconds between progress lines when they are plain.",
    )(func)
    return click.option(
        "--progress",
        "progress_mode",
        type=click.Choice(PROGRESS_MODES),
        default="auto",
        show_default=True,
        help="Progress on standard error: live (redrawn in place), plain (a line every "
        "--progress-interval), off (no progress lines nor closing summary; demo's "
        "opening line, with its seed, stays); auto is live on a terminal, plain elsewhere.",
    )(func)


class _CurrentStderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is *now*.

    The live display swaps ``sys.stderr`` for a proxy that prints above it; a
    handler holding the original stream would draw log lines across it.
    """

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


def _not_raised_too(record: logging.LogRecord) -> bool:
    """Leave out what the command reports itself, from the exception every wait
    gets (a 401): an error is one line."""
    return not getattr(record, RAISED_TOO, False)


def configure_logging(ctx: click.Context) -> None:
    """Send the ``veo_async`` logger to standard error at DEBUG when ``--verbose``
    was given; without it, warnings still reach standard error (Python's own
    last-resort handler) except those the command reports as its error line."""
    logger = logging.getLogger("veo_async")
    if not _settings(ctx).verbose:
        if _not_raised_too not in logger.filters:
            logger.addFilter(_not_raised_too)
        return
    if not any(isinstance(h, _CurrentStderrHandler) for h in logger.handlers):
        handler = _CurrentStderrHandler()
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)


#: ``--output/-o FILE``: where the JSON lines go (standard output by default).
output_option = click.option(
    "--output",
    "-o",
    metavar="FILE",
    help=(
        'Write the JSON lines to FILE instead of standard output ("-"): overwritten, '
        "or added to with --store (a rerun resumes the run that wrote it)."
    ),
)
