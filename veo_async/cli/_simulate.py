"""``veo-async simulate``: the simulator as a standalone server for integration tests.

The tasks it serves (all clocks start when the server starts):

- ``sim-success``, ``sim-failed``, ``sim-generation-failed``: already
  finished with status 1, 2 and 3;
- ``sim-pending``: generating forever (to test timeouts);
- ``sim-00001`` ... ``sim-NNNNN`` (``--tasks N``): synthetic lives of 2-5
  minutes compressed by ``--speed``, ~85% successes, the rest failures
  (status 2 or 3); with ``--faults``, some of them also meet transient errors
  on their first polls.

Any other id answers like an id the service does not know (yet):
``{"code": 422, "msg": "record is null"}`` by default, or ``{"code": 200,
"data": null}`` with ``--unknown data-null``.

Like Kie's Cloudflare front, it answers bot-like User-Agents (``curl``,
``Wget``, ``python-requests``, ``Python-urllib``, aiohttp's default, none) with
a 403 ``error code: 1010`` that is not JSON; ``--any-user-agent`` lets every
agent through.
"""

from __future__ import annotations

import random
import sys
from typing import Literal

from ..testing import FakeKie, TaskScript, synthetic_scripts

__all__ = ["FIXED_IDS", "run_simulator", "synthetic_ids"]

#: The always-present tasks and what they do.
FIXED_IDS: dict[str, str] = {
    "sim-success": "finished, status 1 (success)",
    "sim-failed": "finished, status 2 (failed)",
    "sim-generation-failed": "finished, status 3 (generation failed)",
    "sim-pending": "generating forever",
}

# Far beyond any test's deadline, yet finite (TaskScript wants a number).
_FOREVER = 10.0**9


def synthetic_ids(count: int) -> list[str]:
    """The ids of the ``--tasks`` tasks: ``sim-00001`` ...; five digits at least."""
    width = max(5, len(str(count)))
    return [f"sim-{n:0{width}d}" for n in range(1, count + 1)]


def _scripts(tasks: int, speed: float, seed: int, faults: bool) -> list[TaskScript]:
    fixed = [
        TaskScript("sim-success"),
        TaskScript("sim-failed", final_status=2),
        TaskScript("sim-generation-failed", final_status=3),
        TaskScript("sim-pending", complete_after=_FOREVER),
    ]
    rng = random.Random(seed)
    return fixed + synthetic_scripts(synthetic_ids(tasks), rng=rng, speed=speed, faults=faults)


async def run_simulator(
    *,
    host: str,
    port: int,
    api_key: str | None,
    check_user_agent: bool,
    tasks: int,
    speed: float,
    seed: int,
    faults: bool,
    unknown: Literal["record_null", "data_null"],
    credits: float = 1234.5,
) -> None:
    """Print the address, key and ids, then serve until cancelled.

    :param check_user_agent: refuse bot-like User-Agents as Kie's proxy does.
    :param credits: the starting balance creates are charged from.

    :raises OSError: when the address cannot be listened on.
    """
    kie = FakeKie(
        api_key=api_key,
        host=host,
        port=port,
        unknown_task=unknown,
        require_user_agent=check_user_agent,
        record_requests=False,
        credits=credits,
    )
    await kie.start()
    try:
        kie.add_tasks(_scripts(tasks, speed, seed, faults))
        ids = synthetic_ids(tasks)
        lines = [
            f"veo-async simulator listening on {kie.base_url}",
            f"  base url: {kie.base_url}",
            # The simulator's own key, made up for tests: printing it is the point.
            f"  api key:  {api_key if api_key is not None else '(any; not checked)'}",
            "  user agents: "
            + (
                "curl, Wget, python-requests, Python-urllib, aiohttp's default and none "
                "get 403 (--any-user-agent accepts them)"
                if check_user_agent
                else "any accepted"
            ),
        ]
        for task_id, what in FIXED_IDS.items():
            lines.append(f"  task {task_id}: {what}")
        if ids:
            lines.append(
                f"  tasks {ids[0]} .. {ids[-1]}: 2-5 min lives compressed x{speed:g} "
                f"(seed {seed})"
            )
        unknown_answer = (
            '422 "record is null"' if unknown == "record_null" else "200 with data null"
        )
        lines.append(f"  any other id answers {unknown_answer}")
        lines.append("Press Ctrl-C to stop.")
        print("\n".join(lines), flush=True)
        await kie.serve_forever()
    finally:
        await kie.close()
        print(
            f"veo-async: simulate: stopped after {kie.total_requests} requests",
            file=sys.stderr,
            flush=True,
        )
