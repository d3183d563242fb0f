"""``generate --store``: what an interrupted run already sent, and its results.

A request the store has an intent for - created (it has a task id) or
uncertain (it may exist) - is never sent again; requests are matched by their
wire JSON (the store's ``veo_ref`` left out of the callback URL), as many times
as they were sent before, so a file that asks twice for the same video still
gets two.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from .. import GenerateRequest, VeoSession, VeoTask
from ..store import without_ref
from ._outcome import Tally, outcome_of
from ._output import JsonLines
from ._progress import ProgressReporter
from ._tasks import delivered_from_store

__all__ = ["Earlier", "SentBefore", "write_stored_results"]


def _key(wire: Mapping[str, Any]) -> str:
    """The request as sent, minus what the session added (the callback's ref)."""
    return json.dumps(_as_asked(wire), sort_keys=True)


def _as_asked(wire: Mapping[str, Any]) -> dict[str, Any]:
    """A stored request as the user asked for it: its callback URL without the
    ``veo_ref`` the store added, and without an empty end of its query ("cb?"
    is "cb", "cb?a=1&" is "cb?a=1": the same address, and what an earlier
    release stored for either)."""
    plain = dict(wire)
    url = plain.get("callBackUrl")
    if isinstance(url, str):
        base, hash_, fragment = without_ref(url).partition("#")
        if "?" in base:
            base = base.rstrip("?&")
        plain["callBackUrl"] = f"{base}{hash_}{fragment}"
    return plain


@attrs.frozen
class Earlier:
    """A request an earlier run already sent.

    :ivar task_id: the task it created, or None when that is uncertain.
    """

    task_id: str | None

    @property
    def uncertain(self) -> bool:
        """True when the earlier create may or may not have made a task."""
        return self.task_id is None

    def line(self, request: GenerateRequest) -> dict[str, Any]:
        """The JSON line reporting it, instead of sending it again."""
        if self.task_id is None:
            return {
                "outcome": "uncertain",
                # The shape of a fresh uncertain create's line (generate --help).
                "error": "SubmitUncertainError",
                "message": "sent by an earlier run that stopped before the answer: "
                "the task may exist; not resent",
                "request": request.to_wire(),
            }
        return {"task_id": self.task_id, "outcome": "already created", "request": request.to_wire()}


class SentBefore:
    """The requests a store says were sent, to take out of a new run."""

    def __init__(self, by_request: Mapping[str, list[Earlier]]) -> None:
        self._by_request = {key: list(earlier) for key, earlier in by_request.items()}

    @classmethod
    async def read(cls, veo: VeoSession) -> SentBefore:
        """Everything the session's store has sent (one look at the store)."""
        store = veo.store
        if store is None:
            raise ValueError("the session has no store")
        found: defaultdict[str, list[Earlier]] = defaultdict(list)
        # Every intent, in one read: also those whose task was forgotten
        # since (acknowledged as gone); a store's tasks alone missed them, and
        # their requests went out again (and were charged again).
        for intent in await store.intents():
            found[_key(intent.request)].append(Earlier(intent.task_id))
        return cls(found)

    def take(self, request: GenerateRequest) -> Earlier | None:
        """The earlier send of ``request``, used up; None when it was not sent."""
        earlier = self._by_request.get(_key(request.to_wire()))
        return earlier.pop() if earlier else None


async def write_stored_results(
    veo: VeoSession,
    sink: JsonLines,
    tally: Tally,
    progress: ProgressReporter,
    set_total: Callable[[int], None],
) -> None:
    """Write every stored result not yet acknowledged (waiting for the unfinished
    ones), acknowledging each once its line is out."""
    errors = tally.errors

    def total(count: int) -> None:
        set_total(count + errors)

    async for handle in delivered_from_store(veo, [], total):
        outcome = outcome_of(handle)
        tally.add(outcome)
        progress.note_error(outcome.request_error)
        sink.write({**outcome.to_json(), "request": await _request_of(veo, handle)})


async def _request_of(veo: VeoSession, handle: VeoTask) -> dict[str, Any] | None:
    """The request that created ``handle``'s task, as sent: the handle's own,
    else (a task resumed from the store) its intent's; None if unknown."""
    if handle.request is not None:
        return handle.request.to_wire()
    store = veo.store
    stored = await store.get(handle.task_id) if store is not None else None
    if store is None or stored is None or stored.ref is None:
        return None
    intent = await store.get_intent(stored.ref)
    return None if intent is None else _as_asked(intent.request)
