"""Durable task tracking: a :class:`TaskStore` protocol and its embedded default.

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
from ._contract import DEFAULT_RETENTION, TaskState, TaskStore, WriteBehindBatches
from ._refs import REF_PARAMETER, ref_of, with_ref, without_ref
from ._sqlite import SQLiteStore
from ._values import StoredIntent, StoredTask, new_ref

__all__ = [
    "DEFAULT_RETENTION",
    "REF_PARAMETER",
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
