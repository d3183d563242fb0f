"""Durable tracking: behaviour no other test pinned (a safe
resend under a store, a non-VeoError while the POST may be out, the kind of
an uncertain extend's intent, a result acked while its iteration runs, an
uncertain create naming its task while completed() follows)."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

import pytest

from veo_async import HttpRequest, RawResponse, SubmitUncertainError, VeoSession
from veo_async.testing import FakeKie, Fault

from .conftest import API_KEY, FAST_POLICY, eventually, session_on
from .test_durable import (
    _CreateAnswersRewritten,
    _server_error,
    db,
    durable,
    following,
    kie,
    store_at,
    stored,
)

pytestmark = pytest.mark.real_time
__all__ = ["db", "kie"]  # the fixtures

GENERATE = "/api/v1/veo/generate"


@pytest.mark.parametrize("fault", [Fault.maintenance(), Fault.body_429()], ids=["455", "429"])
async def test_a_durable_create_refused_once_is_resent_under_its_one_intent(
    kie: FakeKie, db: Path, fault: Fault
) -> None:
    """With a store, a create refused by a 455 or a 429 (nothing created) is
    resent as without one: it succeeds, and the store holds one intent, with
    the task's id (the resend does not write the intent again)."""
    kie.inject_create(fault)
    async with durable(kie, db) as veo:
        task = await veo.generate("a cat")
        assert await veo.uncertain() == []
    assert kie.created_ids == [task.task_id]
    store = await stored(db)
    try:
        [intent] = await store.intents()
        assert intent.task_id == task.task_id
    finally:
        await store.aclose()


class _BrokenAfterSending:
    """A user's Transport that hands a generate to the service, then fails
    with an exception of its own (a bug of its, after the POST went out)."""

    def __init__(self, kie: FakeKie) -> None:
        self.inner = kie.transport()

    async def send(self, request: HttpRequest) -> RawResponse:
        answer = await self.inner.send(request)
        if request.path == GENERATE:
            raise RuntimeError("the transport broke after sending")
        return answer

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_non_veo_error_while_the_post_may_be_out_leaves_the_intent_uncertain(
    kie: FakeKie, db: Path
) -> None:
    """An exception that is no VeoError from a create's request says nothing
    of whether the task was created: the intent stays uncertain (reported),
    not discarded as if nothing had been sent (the task exists here)."""
    store = store_at(db)
    async with session_on(
        kie, store=store, transport=_BrokenAfterSending(kie), create_rate=10_000
    ) as veo:
        with pytest.raises(RuntimeError, match="broke after sending"):
            await veo.generate("a cat")
        [intent] = await veo.uncertain()
        assert intent.request["prompt"] == "a cat"
    assert kie.created == 1


async def test_an_uncertain_extend_is_reported_as_an_extend(kie: FakeKie, db: Path) -> None:
    """The intent of an extend whose answer was lost is stored and reported
    as kind "extend" (not "generate"), naming the task it extends."""
    async with durable(kie, db) as veo:
        task = await veo.generate("a cat")
        await task
        kie.inject_create(Fault.created_then_drop())
        with pytest.raises(SubmitUncertainError):
            await task.extend("the cat jumps")
        [intent] = await veo.uncertain()
        assert intent.kind == "extend"
        assert intent.request["taskId"] == task.task_id


async def test_a_result_acked_while_its_iteration_runs_is_not_yielded_again(
    kie: FakeKie, db: Path
) -> None:
    """completed(follow=True) yields stored results, its consumer acks them;
    an acked id polled again afterwards under a new handle (waited for,
    refreshed) is not yielded a second time by that same iteration, which
    read it unacknowledged at its start (so does not ask the store again)."""
    kie.add_tasks(["veo_x", "veo_y"])
    async with durable(kie, db) as veo:
        await veo.wait_many(["veo_x", "veo_y"])
        got: list[str] = []
        consumer = following(veo, got)
        assert await eventually(lambda: sorted(got) == ["veo_x", "veo_y"])
        await asyncio.sleep(0.1)  # the acks are in
        gc.collect()  # the first result's handle is gone (nothing holds it)
        first = got[0]
        await veo.wait_many([first])
        await veo.task(first).refresh()
        await asyncio.sleep(0.2)
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)
        assert sorted(got) == ["veo_x", "veo_y"]


async def test_an_uncertain_create_naming_its_task_reaches_a_running_completed(
    kie: FakeKie, db: Path
) -> None:
    """A create answered a 500 over a success envelope naming the task: the
    id is stored, and a completed(follow=True) running meanwhile follows and
    delivers that task, as it does a certain creation's (not only a later
    iteration, or a restart)."""
    veo = VeoSession(
        API_KEY,
        transport=_CreateAnswersRewritten(kie, _server_error),
        store=store_at(db),
        create_rate=10_000,
        policy=FAST_POLICY,
    )
    async with veo:
        delivered: list[str] = []
        consumer = following(veo, delivered, 1)
        await asyncio.sleep(0.05)
        with pytest.raises(SubmitUncertainError) as caught:
            await veo.generate("a cat")
        assert caught.value.task_id == kie.created_ids[0]
        await asyncio.wait_for(consumer, 10)
        assert delivered == kie.created_ids
