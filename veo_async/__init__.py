"""veo_async: awaitable task handles for the Kie.ai Veo 3.1 video API.

::

    async with VeoSession() as veo:
        info = await veo.task("veo_task_123")          # polls until done
        results = await veo.wait_many(ids, return_exceptions=True)
"""

from __future__ import annotations

from ._batch import BatchOutcome
from ._convert import KIE_TIMEZONE
from ._http import HttpRequest, Transport
from ._protocol import RawResponse
from ._requester import SessionStats
from ._schedule import AdaptivePolicy, DurationLearner, DurationPrior
from ._session import VeoSession
from ._task import VeoTask
from ._version import version as _installed_version
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
    SessionClosedError,
    SubmitUncertainError,
    TaskFailedError,
    TransportError,
    VeoError,
    WaitTimeoutError,
)
from .models import ExtendRequest, GenerateRequest, RecordInfo, TaskStatus, VideoResult
from .policy import POLICY_TIMEOUT, PollPolicy

__version__ = _installed_version()

__all__ = [
    "AdaptivePolicy",
    "DurationLearner",
    "DurationPrior",
    "POLICY_TIMEOUT",
    "APIError",
    "AuthenticationError",
    "BatchOutcome",
    "ContentPolicyError",
    "ExtendRequest",
    "GenerateRequest",
    "HttpRequest",
    "InsufficientCreditsError",
    "KIE_TIMEZONE",
    "NotFoundError",
    "PollPolicy",
    "RateLimitError",
    "RawResponse",
    "RecordInfo",
    "RecordNotFoundError",
    "ResponseError",
    "ServerError",
    "ServiceUnavailableError",
    "SessionClosedError",
    "SessionStats",
    "SubmitUncertainError",
    "TaskFailedError",
    "TaskStatus",
    "Transport",
    "TransportError",
    "VeoError",
    "VeoSession",
    "VeoTask",
    "VideoResult",
    "WaitTimeoutError",
    "__version__",
]
