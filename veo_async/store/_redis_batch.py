"""One batch of a :class:`~veo_async.store.RedisStore`'s writes: pipelines of
its Lua scripts (:mod:`._redis_scripts`), and what each caller gets back.

The batch keeps SQLiteStore's order: intents, task ids, discards and purges
as they came, then the tracked ids, the write-behind rows, the acks (an ack
must find a terminal record of the same batch) and the forgets (after the
rows that would bring a forgotten task back). A purge ends its pipeline and
deletes the rest of its rows before anything after it is sent, else a later
write of the batch could be purged. Not a transaction: a failing script fails
the batch's callers, though earlier scripts may have been applied (Redis
rolls nothing back).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from ._values import StoredIntent
from ._writer import Op, Pending

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["Bounded", "Scripts", "executed", "write_batch"]

#: A store's bound on one round trip: ``(awaitable, what it does)`` to its result.
Bounded = Callable[[Awaitable[Any], str], Awaitable[Any]]
#: Reads an intent (for the message of a refused attach).
IntentReader = Callable[[str], Awaitable["StoredIntent | None"]]

#: Task ids a track script takes at once, rows a purge call deletes at most.
_IDS_PER_CALL = 1000
#: Write-behind tasks a script takes at once (six arguments each).
_TASKS_PER_CALL = 500


class Scripts:
    """An owner's scripts, called with its lease (lock key and token) and key prefix."""

    def __init__(
        self, scripts: dict[str, Any], lock_key: str, token: str, prefix: str, bounded: Bounded
    ) -> None:
        self._scripts = scripts
        self._lock_key = lock_key
        self._token = token
        self._prefix = prefix
        self.bounded = bounded

    async def queue(self, pipe: Any, name: str, args: Sequence[object]) -> None:
        """Queue script *name* on *pipe* (an async pipeline queues when awaited)."""
        script = self._scripts[name]
        await script(keys=[self._lock_key], args=[self._token, self._prefix, *args], client=pipe)

    async def call(self, name: str, args: Sequence[object]) -> Any:
        """Run script *name* now, within the store's bound."""
        script = self._scripts[name]
        keys, arguments = [self._lock_key], [self._token, self._prefix, *args]
        return await self.bounded(script(keys=keys, args=arguments), "writing")


async def write_batch(
    client: Redis,
    scripts: Scripts,
    ops: list[Op],
    pending: dict[str, Pending],
    read_intent: IntentReader,
) -> list[object]:
    """Write *ops* and *pending* (see the module docstring).

    :returns: one result per op: its value, or the exception its caller gets.
    :raises Exception: the first error reply, or the client's error, when the
        batch failed (its callers all hear of it).
    """
    results: dict[int, object] = {}
    batch = _Pipeline(client, scripts, read_intent)
    acks: list[Op] = []
    forgets: list[Op] = []
    tracks: list[Op] = []
    for op in ops:
        kind, args = op.kind, op.args
        if kind == "intent":
            ref, what, body, created_at = args
            model = json.loads(body).get("model")
            await batch.call(op, "INTENT", ref, what, body, repr(created_at),
                             model if isinstance(model, str) else "")  # fmt: skip
        elif kind in ("attach", "reconcile"):
            ref, task_id, model, at = args
            await batch.call(op, "ATTACH", ref, task_id, model or "", repr(at))
        elif kind == "discard":
            await batch.call(op, "DISCARD", *args)
        elif kind == "purge":
            await batch.call(op, "PURGE", repr(args[0]), _IDS_PER_CALL)
            await batch.run(results)
        elif kind == "track":
            tracks.append(op)
        elif kind == "ack":
            acks.append(op)
        elif kind == "forget":
            forgets.append(op)
        else:  # pragma: no cover - kinds are made in this package only
            raise AssertionError(f"unknown store operation {kind!r}")
    for op in tracks:
        ids, model, when = op.args
        for start in range(0, len(ids), _IDS_PER_CALL):
            await batch.call(op if start == 0 else None, "TRACK", model or "",
                             repr(when), *ids[start : start + _IDS_PER_CALL])  # fmt: skip
    rows = _write_behind_args(pending)
    for start in range(0, len(rows), _TASKS_PER_CALL * 6):
        await batch.call(None, "WRITE_BEHIND", *rows[start : start + _TASKS_PER_CALL * 6])
    for start in range(0, len(acks), _IDS_PER_CALL):
        pairs: list[object] = []
        for op in acks[start : start + _IDS_PER_CALL]:
            task_id, at = op.args
            pairs += (task_id, repr(at))
        await batch.call(None, "ACK", *pairs)
    for op in forgets:
        await batch.call(op, "FORGET", op.args[0])
    await batch.run(results)
    return [results.get(id(op)) for op in ops]


class _Pipeline:
    """Scripts queued for one round trip, and which op each reply answers."""

    def __init__(self, client: Redis, scripts: Scripts, read_intent: IntentReader) -> None:
        self._client = client
        self._scripts = scripts
        self._read_intent = read_intent
        self._pipe = client.pipeline(transaction=False)
        self._answers: list[Op | None] = []

    async def call(self, op: Op | None, name: str, *args: object) -> None:
        """Queue script *name*; its reply answers *op* (None: nobody waits for it)."""
        await self._scripts.queue(self._pipe, name, args)
        self._answers.append(op)

    async def run(self, results: dict[int, object]) -> None:
        """Send what is queued; each answered op's result into *results*."""
        if not self._answers:
            return
        replies = await executed(self._pipe, self._scripts.bounded, "writing")
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        for op, reply in zip(self._answers, replies, strict=True):
            if op is not None:
                results[id(op)] = await self._result(op, reply)
        self._pipe = self._client.pipeline(transaction=False)
        self._answers = []

    async def _result(self, op: Op, reply: Any) -> object:
        """What the caller of *op* gets for its script's *reply*."""
        kind = op.kind
        if kind == "intent":
            if reply == 1:
                return None
            return ValueError(f"intent ref {op.args[0]!r} is already recorded")
        if kind in ("attach", "reconcile"):
            reconciling = kind == "reconcile"
            if reply == 1:
                return True if reconciling else None
            if reconciling:
                return False
            ref = op.args[0]
            if reply == -1:
                return ValueError(f"no intent with ref {ref!r}")
            intent = await self._read_intent(ref)
            have = intent.task_id if intent is not None else None
            return ValueError(f"intent {ref!r} already has task id {have!r}")
        if kind == "purge":
            return await self._purge_rest(op.args[0], reply)
        return bool(reply)  # discard, forget

    async def _purge_rest(self, cutoff: float, first: Sequence[int]) -> int:
        """Deleted rows of a purge: its first call's, then calls until none is full."""
        deleted = int(first[0]) + int(first[1])
        last = first
        while max(int(last[0]), int(last[1])) >= _IDS_PER_CALL:
            last = await self._scripts.call("PURGE", (repr(cutoff), _IDS_PER_CALL))
            deleted += int(last[0]) + int(last[1])
        return deleted


async def executed(pipe: Any, bounded: Bounded, doing: str) -> list[Any]:
    """The replies of *pipe* (errors as values), within the store's bound.

    The pipeline is reset (its connection given back) however that ends: one
    given up on mid-way (its time ran out, its caller was cancelled) would
    otherwise keep its connection and warn when collected (ResourceWarning).
    """
    try:
        replies: list[Any] = await bounded(pipe.execute(raise_on_error=False), doing)
        return replies
    finally:
        await pipe.reset()


def _write_behind_args(pending: dict[str, Pending]) -> list[str]:
    """The WRITE_BEHIND script's arguments for *pending*: six per task."""
    rows: list[str] = []
    for task_id, change in pending.items():
        rows += (
            task_id,
            "" if change.seen_at is None else repr(change.seen_at),
            change.terminal or "",
            "" if change.terminal_at is None else repr(change.terminal_at),
            "" if change.delivered_at is None else repr(change.delivered_at),
            str(change.deliveries) if change.deliveries else "",
        )
    return rows
