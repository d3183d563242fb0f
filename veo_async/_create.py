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

With a store (:func:`submit_recorded`), a create is never resubmitted across a
crash either: its *intent* (a fresh client-side ref, the kind and the request)
is committed just before the POST leaves (once the creation budget lets it
go: a create still waiting for its turn was certainly not sent, and leaves no
intent), and the task id right after the answer. An intent left without a
task id - a crash, a cancellation or a :class:`SubmitUncertainError` between
the two - is reported as *uncertain* by :meth:`TaskStore.uncertain`, never
sent again. One that certainly created nothing (any other error) is discarded.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Final

import attrs

from ._endpoints import EXTEND_PATH, GENERATE_PATH, decode_task_id
from ._requester import Requester
from .errors import (
    APIError,
    RateLimitError,
    ResponseError,
    ServerError,
    SubmitUncertainError,
    TransportError,
    VeoError,
    created_nothing,
    text_without_task,
)
from .models import ExtendRequest, GenerateRequest
from .store import TaskStore, new_ref, with_ref, without_ref

__all__ = [
    "MAX_SAFE_RESENDS",
    "submit",
    "submit_recorded",
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
    before_send: Callable[[], Awaitable[None]] | None = None,
    on_refused: Callable[[], None] | None = None,
) -> str:
    """Send ``request`` (resending only when safe); the new task's id.

    :param before_send: awaited before each sending, once the creation
        budget has granted it (see :meth:`Requester.call`).
    :param on_refused: called when a sending certainly created nothing,
        before it is resent or given up, and when a request given
        ``before_send`` is given up unsent: until the next ``before_send``,
        nothing is out.

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
        # Raised after its except block, not in it: there it would chain the
        # error it was made of (and that error's frames) as its context.
        # ("from None" too: a task that runs its coroutine inside an except
        # block, as pytest-asyncio's pure-Python Task on 3.10 does, makes what
        # that block handles the context of any error raised; it is then at
        # least left out of tracebacks.)
        uncertain: SubmitUncertainError | None = None
        try:
            return await requester.call(
                "POST",
                path,
                decode_task_id,
                json=body,
                create=True,
                before_send=before_send,
                on_unsent=on_refused,
            )
        except (TransportError, APIError) as exc:
            if created_nothing(exc):
                # Resent; a 429 without a pause of ours: the creation
                # budget's own pause already holds the resend back.
                error, delay = exc, not isinstance(exc, RateLimitError)
            elif (
                isinstance(exc, TransportError)  # sent: it may have arrived
                # A success envelope under the error status named a task (a
                # proxy that rewrote the status): whatever the status says,
                # that task may exist, and be charged: never resent.
                or exc.task_id is not None
                # A 5xx that is no final answer, or a code that may come
                # after creating (408: upstream timeout).
                or (isinstance(exc, ServerError) and exc.code not in _REJECTING_5XX)
                or exc.code in _UNCERTAIN_CODES
            ):
                uncertain = _uncertain(request, exc)
            else:
                # A code that rejected the request (a proxy's refusal page, an
                # ErrorPage, too: caught here before its ResponseError side).
                _name_the_source(request, exc)
                raise
        except ResponseError as exc:  # an unreadable answer: it may say "created"
            uncertain = _uncertain(request, exc)
        if uncertain is not None:
            raise uncertain from None
        if on_refused is not None:
            on_refused()
        if resends >= MAX_SAFE_RESENDS:
            _name_the_source(request, error)
            raise error
        resends += 1
        logger.debug("create request refused before creating (%r); resend %d", error, resends)
        if delay:
            pause = _RESEND_BASE * 2 ** (resends - 1)
            # Not a plain sleep: the session's close (or a 401) ends the wait
            # at once with what a new request would meet.
            await requester.pause(pause * (1 + _RESEND_JITTER * draw.uniform(-1.0, 1.0)))


def _name_the_source(request: GenerateRequest | ExtendRequest, error: VeoError) -> None:
    """An extend's refusal names the task it extends (a create's names none:
    no task exists). Not an uncertain extend's: its ``task_id`` is the new
    task the answer claimed, to be tracked."""
    if isinstance(request, ExtendRequest) and error.task_id is None:
        error.task_id = request.task_id


def _uncertain(request: GenerateRequest | ExtendRequest, error: VeoError) -> SubmitUncertainError:
    """The error of a create that may have created its task (with the task's
    id when the answer named one)."""
    # The cause without its task: the uncertain error names that itself.
    cause = f"{type(error).__name__}: {text_without_task(error)}"
    return SubmitUncertainError(request, cause, task_id=error.task_id)


async def submit_recorded(
    requester: Requester,
    request: GenerateRequest | ExtendRequest,
    store: TaskStore,
    *,
    rng: random.Random | None = None,
) -> tuple[str, GenerateRequest | ExtendRequest]:
    """:func:`submit`, with the create intent written to *store* around it.

    A request with a ``callback_url`` is sent with ``veo_ref=<ref>`` added to
    that URL (:func:`veo_async.store.with_ref`), so that a callback can give an
    uncertain intent its task id (:meth:`TaskStore.reconcile`).

    :returns: the new task's id and the request as sent.
    :raises SubmitUncertainError: the task may exist; its intent stays
        uncertain, or, when the answer named the task, has that id.
    :raises StoreError: the intent (nothing was sent then) or the task id could
        not be written; for the latter the task exists, the error is logged
        with its id, and the intent stays uncertain.
    """
    ref = new_ref()
    if request.callback_url is not None:
        # A request as sent before (``task.request``, an uncertain create's
        # ``error.request``) carries that create's ref: it is this one's now.
        callback_url = with_ref(without_ref(request.callback_url), ref)
        request = attrs.evolve(request, callback_url=callback_url)
    kind = "generate" if isinstance(request, GenerateRequest) else "extend"
    body = request.to_wire()
    recorded = False
    # The intent's write was handed to the store (it lands, even if the
    # caller is cancelled while it is written).
    handed = False
    # A POST may be out: from each sending until it was certainly refused.
    out = False

    async def record_intent() -> None:
        # Once the creation budget lets the POST go, just before it leaves: a
        # create still waiting for its turn when the process stops was
        # certainly not sent, and leaves no intent to report as uncertain.
        nonlocal recorded, handed, out
        if not recorded:  # a safe resend keeps the first intent
            handed = True
            await store.record_intent(ref, kind, body, time.time())
            recorded = True
        out = True

    def refused() -> None:
        nonlocal out
        out = False

    model = request.model if isinstance(request, GenerateRequest) else None
    try:
        task_id = await submit(
            requester, request, rng=rng, before_send=record_intent, on_refused=refused
        )
    except SubmitUncertainError as uncertain:
        if uncertain.task_id is not None and recorded:
            # The answer named its task, though not as a success (an error
            # status over a success envelope): the id is stored, so the task
            # is tracked, resumed and delivered (its polls tell whether it
            # exists) instead of an intent without an id.
            await _store_task_id(store, ref, uncertain.task_id, model)
        raise  # without an id the intent stays uncertain: reported as such
    except VeoError:
        # submit raises anything else only when nothing was created. The
        # intent too, if it was handed to the store: a write whose answer was
        # lost (a StoreError) may have landed all the same.
        if handed:
            await _discard_intent(store, ref)
        raise
    except asyncio.CancelledError:
        # Cancelled between a refused sending and the next (its resend
        # pause, its wait for the creation budget), or while the intent was
        # written: nothing was created, so nothing is reported as uncertain.
        # While a POST may be out, the intent stays uncertain.
        if handed and not out:
            await _discard_intent(store, ref)
        raise
    # (A bug while the POST may be out: the intent stays uncertain.)
    await _store_task_id(store, ref, task_id, model)
    return task_id, request


async def _discard_intent(store: TaskStore, ref: str) -> None:
    """Discard intent ``ref``: nothing was created. A store that cannot
    leaves it uncertain (reported so later, the safe side), said in the
    log: the exception being handled (a cancellation, the service's
    refusal) is the caller's to raise, not the store's."""
    try:
        await store.discard_intent(ref)
    except Exception as exc:  # a store of the user's may raise anything
        logger.warning(
            "intent %s: nothing was created, but the intent could not be discarded "
            "(it stays uncertain): %s",
            ref,
            exc,
        )


async def _store_task_id(store: TaskStore, ref: str, task_id: str, model: str | None) -> None:
    """Give intent ``ref`` its task id, saying so in the log when that fails
    (the task exists, or may: its id must not be lost silently)."""
    try:
        await store.attach_task_id(ref, task_id, model)
    except asyncio.CancelledError:
        # The store's writer owns a write once handed over: it lands all the same.
        logger.warning(
            "task %s was created; cancelled while its id was being stored (intent %s)",
            task_id,
            ref,
        )
        raise
    except BaseException as exc:
        logger.error(
            "task %s was created but its id could not be stored (intent %s stays uncertain)",
            task_id,
            ref,
        )
        if isinstance(exc, VeoError) and exc.task_id is None:
            exc.task_id = task_id  # it exists, and was paid for: the caller can follow it
        raise
