"""The process ``test_durable_kill.py`` kills: creates and tracks tasks on a store.

Run as ``python tests/_durable_child.py BASE_URL STORE TOTAL``. It opens a
:class:`~veo_async.VeoSession` with the store STORE names (a
:class:`~veo_async.SQLiteStore` file, or ``redis://...#namespace`` for a
:class:`~veo_async.RedisStore`), resumes it, creates tasks until the store
holds ``TOTAL`` create intents (with a task id or uncertain), and consumes
:meth:`~veo_async.VeoSession.completed`, acknowledging each result. One line
per event on stdout, flushed at once, so that the parent sees everything a
SIGKILL did not cut short::

    RESUMED <unfinished> <undelivered> <uncertain>
    UNCERTAIN <ref>          (one per uncertain intent resume() reported)
    CREATED <task id>        (generate() returned: the task id is stored)
    DELIVER <task id>        (completed() yielded it; before the ack)
    ACKED <task id>          (ack() returned: committed)
    DONE                     (every task finished and acknowledged)

Each prompt is unique, so the parent can tell a resubmission from a new task.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from contextlib import aclosing, suppress

from veo_async import PollPolicy, RedisStore, SQLiteStore, VeoSession

API_KEY = "test-key"
#: Tasks take ~1-2 s on the parent's simulator: a first poll at 0.6 s, then every
#: 0.3 s (two or three polls a task: a few thousand requests in all).
POLICY = PollPolicy(
    first_poll=0.6, interval=0.3, factor=1.0, max_interval=0.3, jitter=0.2, timeout=None
)
CREATORS = 32


def open_store(spec: str) -> SQLiteStore | RedisStore:
    """The store *spec* names: a SQLite file, or ``redis://...#namespace`` (a
    lease of 3 s: a killed run's successor waits at most that for the lock,
    and a run whose loop is busy for a second on a loaded machine keeps it)."""
    if spec.startswith("redis://"):
        url, _, namespace = spec.partition("#")
        return RedisStore(
            url, namespace=namespace, flush_interval=0.05, lock_timeout=10.0, lease=3.0
        )
    return SQLiteStore(spec, flush_interval=0.05, lock_timeout=10.0)


def say(*words: object) -> None:
    """One line to the parent, flushed at once (a kill may come any moment)."""
    sys.stdout.write(" ".join(str(word) for word in words) + "\n")
    sys.stdout.flush()


async def main(base_url: str, path: str, total: int) -> None:
    """Resume, create up to *total*, deliver and acknowledge everything."""
    store = open_store(path)
    async with VeoSession(
        API_KEY,
        base_url=base_url,
        store=store,
        policy=POLICY,
        concurrency=64,
        create_rate=1_000_000,
    ) as veo:
        report = await veo.resume()
        say("RESUMED", len(report.tasks), len(report.undelivered), len(report.uncertain))
        for intent in report.uncertain:
            say("UNCERTAIN", intent.ref)
        created = [task for task in await store.list_tasks() if task.ref is not None]
        todo = iter(range(total - len(created) - len(report.uncertain)))

        async def create() -> None:
            for _ in todo:
                task = await veo.generate(f"clip {uuid.uuid4().hex}", model="veo3_fast")
                say("CREATED", task.task_id)

        async def consume(follow: bool) -> None:
            async with aclosing(veo.completed(follow=follow)) as tasks:
                async for task in tasks:
                    say("DELIVER", task.task_id)
                    await task.ack()
                    say("ACKED", task.task_id)

        consumer = asyncio.create_task(consume(follow=True))
        try:
            await asyncio.gather(*(create() for _ in range(CREATORS)))
        finally:
            consumer.cancel()
            with suppress(asyncio.CancelledError):
                await consumer
        await consume(follow=False)  # everything left, until nothing is unfinished
    say("DONE")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
