"""The due-time queue: behaviour no other test pinned."""

from __future__ import annotations

import asyncio

from veo_async._limits import DueQueue, RequestBudget


async def test_a_slot_given_back_while_grants_are_deferred_is_not_taken_past_a_waiter() -> None:
    """``take`` hands out a slot only when nobody more overdue waits: a
    request asking (a ``record_info`` call) while a batch lets go of its
    runs must not jump ahead of the ticket already due for the slot."""
    budget = RequestBudget(1)
    queue = DueQueue(budget)
    await queue.acquire()
    waiter = asyncio.ensure_future(queue.acquire())
    await asyncio.sleep(0)  # queued, due now, behind the slot in use
    with queue.grants_deferred():
        queue.release()
        assert queue.take() is None
    assert budget.in_flight == 1
    await waiter
    queue.release()
    assert budget.in_flight == 0
