"""Sending a create request (generate, extend) without ever paying twice.

A create costs credits, so it is resent by itself only when it *certainly*
created nothing:

- the connection was refused or the name did not resolve, before anything was
  sent (:attr:`TransportError.sent` is False);
- a 429 (the creation budget pauses first; see :mod:`veo_async._requester`);
- a 455 (maintenance: the request was turned away).

At most :data:`MAX_SAFE_RESENDS` times, with a doubling, jittered delay. Any
failure after which the task may exist - a timeout, a reset after sending, a
5xx (but 501/505), a 408 upstream timeout, a success answer without a readable
task id - raises :class:`SubmitUncertainError` and is never resent. The codes
documented as rejecting the request (400, 401, 402, 404, 422, 451, 501,
505...) raise their :class:`APIError` at once: nothing was created.

Cancelling a create while its request is in flight cannot unsend it: the task
may exist.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Final

from ._endpoints import EXTEND_PATH, GENERATE_PATH, decode_task_id
from ._requester import Requester
from .errors import (
    RateLimitError,
    ResponseError,
    ServerError,
    ServiceUnavailableError,
    SubmitUncertainError,
    TransportError,
    VeoError,
)
from .models import ExtendRequest, GenerateRequest

__all__ = [
    "MAX_SAFE_RESENDS",
    "submit",
]

logger = logging.getLogger("veo_async")

#: How many times a create that certainly created nothing is resent.
MAX_SAFE_RESENDS: Final = 5
# Delays before those resends (refused, 455): 1, 2, 4, 8, 16 s, +-20%. A 429
# adds none: the creation budget's own pause already holds the resend back.
_RESEND_BASE: Final = 1.0
_RESEND_JITTER: Final = 0.2

# 5xx codes that are final answers (generation failed, feature disabled).
_REJECTING_5XX: Final = frozenset({501, 505})
# 408 "upstream timeout": the upstream may have started the job.
_UNCERTAIN_CODES: Final = frozenset({408})


async def submit(
    requester: Requester,
    request: GenerateRequest | ExtendRequest,
    *,
    rng: random.Random | None = None,
) -> str:
    """Send ``request`` (resending only when safe); the new task's id.

    :raises SubmitUncertainError: the task may exist; never resent.
    :raises APIError: the service rejected it (nothing created).
    :raises RateLimitError: (or :class:`ServiceUnavailableError`,
        :class:`TransportError` with ``sent`` False) after
        :data:`MAX_SAFE_RESENDS` safe resends.
    """
    path = GENERATE_PATH if isinstance(request, GenerateRequest) else EXTEND_PATH
    body = request.to_wire()
    draw = rng or random
    resends = 0
    while True:
        try:
            return await requester.call("POST", path, decode_task_id, json=body, create=True)
        except TransportError as exc:
            if exc.sent:
                raise SubmitUncertainError(request, f"{type(exc).__name__}: {exc}") from None
            error: VeoError = exc
            delay = True
        except RateLimitError as exc:
            error, delay = exc, False
        except ServiceUnavailableError as exc:
            error, delay = exc, True
        except ServerError as exc:
            if exc.code in _REJECTING_5XX:
                raise
            raise SubmitUncertainError(request, f"{type(exc).__name__}: {exc}") from None
        except ResponseError as exc:  # an unreadable answer: it may say "created"
            raise SubmitUncertainError(request, f"{type(exc).__name__}: {exc}") from None
        except VeoError as exc:
            if getattr(exc, "code", None) in _UNCERTAIN_CODES:
                raise SubmitUncertainError(request, f"{type(exc).__name__}: {exc}") from None
            raise
        if resends >= MAX_SAFE_RESENDS:
            raise error
        resends += 1
        logger.debug("create request refused before creating (%r); resend %d", error, resends)
        if delay:
            pause = _RESEND_BASE * 2 ** (resends - 1)
            await asyncio.sleep(pause * (1 + _RESEND_JITTER * draw.uniform(-1.0, 1.0)))
