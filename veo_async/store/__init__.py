"""Durable task tracking: a :class:`TaskStore` protocol, its embedded default
(:class:`SQLiteStore`, one file) and :class:`RedisStore` (a Redis server, for fleets).

::

    from veo_async.store import SQLiteStore

    async with SQLiteStore("veo.db") as store:
        await store.track(["veo_task_123"])
        for task in await store.unfinished(): ...

A store remembers every task a session created or was asked to follow, the
create intents written before each paid POST, each terminal record and whether
the user acknowledged it, so that a restarted process resumes where it stopped.
"""

from ._codec import record_from_json, record_to_json
from ._contract import DEFAULT_RETENTION, LeasedStore, TaskState, TaskStore, WriteBehindBatches
from ._redis import RedisStore
from ._refs import REF_PARAMETER, ref_of, with_ref, without_ref
from ._sqlite import SQLiteStore
from ._values import StoredIntent, StoredTask, new_ref

__all__ = [
    "DEFAULT_RETENTION",
    "REF_PARAMETER",
    "LeasedStore",
    "RedisStore",
    "SQLiteStore",
    "StoredIntent",
    "StoredTask",
    "TaskState",
    "TaskStore",
    "WriteBehindBatches",
    "new_ref",
    "record_from_json",
    "record_to_json",
    "ref_of",
    "with_ref",
    "without_ref",
]
