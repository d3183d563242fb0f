"""The README's simulator example runs as written (so the docs cannot rot)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from veo_async.testing import FakeKie

README = Path(__file__).resolve().parent.parent / "README.md"


def _section_code(heading: str) -> str:
    """The first ```python block under a ``## heading`` of the README."""
    text = README.read_text(encoding="utf-8")
    section = text.split(f"## {heading}", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None, f"no python block under {heading!r}"
    return match.group(1)


@pytest.mark.loopback
async def test_readme_simulator_example_runs(fake_kie: FakeKie) -> None:
    """The 'Testing your code with the simulator' example passes against a real FakeKie."""
    namespace: dict[str, Any] = {}
    exec(_section_code("Testing your code with the simulator"), namespace)
    await namespace["test_my_service"](fake_kie)
    assert fake_kie.polls("veo_task_1") >= 1
    assert fake_kie.polls("veo_task_2") >= 3  # its 429 and reset were retried
