"""Counting the schedule's dynamic-program work, for the tests of stepped rebuilds."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

import veo_async._schedule as schedule_module


class ProgramSteps:
    """Counts the resumes of the schedule's dynamic programs: each runs at
    most ``STEP_WORK`` candidate polls. Set ``count`` to 0 to start afresh."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = schedule_module.optimal_polls_in_steps

        def counted(*args: Any, **kwargs: Any) -> Generator[None, None, list[int]]:
            inner = real(*args, **kwargs)
            while True:
                self.count += 1
                try:
                    next(inner)
                except StopIteration as done:
                    result: list[int] = done.value
                    return result
                yield

        monkeypatch.setattr(schedule_module, "optimal_polls_in_steps", counted)
