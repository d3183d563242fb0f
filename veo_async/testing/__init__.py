"""A local simulator of the Kie.ai Veo API, for tests and benchmarks.

:class:`FakeKie` is a real HTTP server on localhost whose tasks
(:class:`TaskScript`), failures (:class:`Fault`) and wire-format variants
(:class:`Quirks`) are scripted. It is independent of the client side of
``veo_async``: it only speaks the wire format, so it can also check other
clients. The ``fake_kie`` pytest fixture (``veo_async.testing.pytest_plugin``)
gives each test a started one.

:func:`demo_jobs` and :func:`demo_faults` build the scenario of
``veo-async demo`` (run on a :class:`ScaledClockLoop`: minutes of real life
in seconds); :func:`synthetic_scripts` the time-compressed task lives of
``simulate``.
"""

from ._clock import ScaledClockLoop, VirtualClockLoop, VirtualClockPolicy
from ._inprocess import InProcessTransport
from ._recording import RecordedRequest
from ._scenarios import (
    DEMO_FAILURE_RATE,
    DEMO_FALLBACK_RATE,
    DemoJob,
    TimedFault,
    demo_faults,
    demo_jobs,
    synthetic_scripts,
)
from ._script import Fault, Quirks, TaskScript
from ._server import FakeKie

__all__ = [
    "DEMO_FAILURE_RATE",
    "DEMO_FALLBACK_RATE",
    "DemoJob",
    "FakeKie",
    "TimedFault",
    "Fault",
    "InProcessTransport",
    "Quirks",
    "RecordedRequest",
    "ScaledClockLoop",
    "TaskScript",
    "VirtualClockLoop",
    "VirtualClockPolicy",
    "demo_faults",
    "demo_jobs",
    "synthetic_scripts",
]
