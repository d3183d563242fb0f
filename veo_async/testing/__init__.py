"""A local simulator of the Kie.ai Veo API, for tests and benchmarks.

:class:`FakeKie` is a real HTTP server on localhost whose tasks
(:class:`TaskScript`), failures (:class:`Fault`) and wire-format variants
(:class:`Quirks`) are scripted. It is independent of the client side of
``veo_async``: it only speaks the wire format, so it can also check other
clients. The ``fake_kie`` pytest fixture (``veo_async.testing.pytest_plugin``)
gives each test a started one.

:func:`synthetic_scripts`, :func:`burst_plan` and :func:`compressed_policy`
build the time-compressed scenarios of ``veo-async demo`` and ``simulate``:
realistic task lives and trouble, minutes of real life played in seconds.
"""

from ._clock import VirtualClockLoop, VirtualClockPolicy
from ._inprocess import InProcessTransport
from ._recording import RecordedRequest
from ._scenarios import BurstPlan, burst_plan, compressed_policy, synthetic_scripts
from ._script import Fault, Quirks, TaskScript
from ._server import FakeKie

__all__ = [
    "FakeKie",
    "BurstPlan",
    "Fault",
    "InProcessTransport",
    "Quirks",
    "RecordedRequest",
    "TaskScript",
    "VirtualClockLoop",
    "VirtualClockPolicy",
    "burst_plan",
    "compressed_policy",
    "synthetic_scripts",
]
