"""veo_async: awaitable task handles for the Kie.ai Veo 3.1 video API.

::

    async with VeoSession() as veo:
        info = await veo.task("veo_task_123")          # polls until done
        results = await veo.wait_many(ids, return_exceptions=True)
"""

from __future__ import annotations

from ._version import version as _installed_version
from .batch import BatchOutcome
from .errors import (
    APIError,
    AuthenticationError,
    ContentPolicyError,
    InsufficientCreditsError,
    NotFoundError,
    RateLimitError,
    RecordNotFoundError,
    ResponseError,
    ServerError,
    ServiceUnavailableError,
    TaskFailedError,
    TransportError,
    VeoError,
    WaitTimeoutError,
)
from .models import RecordInfo, TaskStatus, VideoResult
from .policy import POLICY_TIMEOUT, PollPolicy
from .session import SessionStats, VeoSession
from .task import VeoTask

__version__ = _installed_version()

__all__ = [
    "POLICY_TIMEOUT",
    "APIError",
    "AuthenticationError",
    "BatchOutcome",
    "ContentPolicyError",
    "InsufficientCreditsError",
    "NotFoundError",
    "PollPolicy",
    "RateLimitError",
    "RecordInfo",
    "RecordNotFoundError",
    "ResponseError",
    "ServerError",
    "ServiceUnavailableError",
    "SessionStats",
    "TaskFailedError",
    "TaskStatus",
    "TransportError",
    "VeoError",
    "VeoSession",
    "VeoTask",
    "VideoResult",
    "WaitTimeoutError",
    "__version__",
]
