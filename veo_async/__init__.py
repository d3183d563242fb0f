"""veo_async: awaitable task handles for the Kie.ai Veo 3.1 video API.

::

    async with VeoSession() as veo:
        info = await veo.task("veo_task_123")          # polls until done
        results = await veo.wait_many(ids, return_exceptions=True)

    async with VeoSession(store=SQLiteStore("veo.db")) as veo:   # durable tracking
        await veo.resume()
        async for task in veo.completed():
            ...; await task.ack()
"""

from __future__ import annotations

from ._batch import BatchOutcome
from ._convert import KIE_TIMEZONE
from ._durable import ResumeReport
from ._http import HttpRequest, Transport
from ._protocol import RawResponse
from ._requester import SessionStats
from ._schedule import AdaptivePolicy, AdaptiveSchedule, DurationLearner, DurationPrior
from ._session import VeoSession
from ._task import Listener, Subscription, VeoTask
from ._version import version as _installed_version
from .errors import (
    APIError,
    AuthenticationError,
    ContentPolicyError,
    ErrorPage,
    InsufficientCreditsError,
    NotFoundError,
    RateLimitError,
    RecordNotFoundError,
    ResponseError,
    ServerError,
    ServerErrorPage,
    ServiceUnavailableError,
    SessionClosedError,
    StoreCorruptError,
    StoreError,
    StoreLockedError,
    StoreVersionError,
    SubmitUncertainError,
    TaskFailedError,
    TransportError,
    TruncatedResponseError,
    VeoError,
    WaitTimeoutError,
)
from .models import ExtendRequest, GenerateRequest, RecordInfo, TaskStatus, VideoResult
from .policy import POLICY_TIMEOUT, PollPolicy
from .store import RedisStore, SQLiteStore, StoredIntent, StoredTask, TaskStore

__version__ = _installed_version()

__all__ = [
    "AdaptivePolicy",
    "AdaptiveSchedule",
    "DurationLearner",
    "DurationPrior",
    "POLICY_TIMEOUT",
    "APIError",
    "AuthenticationError",
    "BatchOutcome",
    "ContentPolicyError",
    "ErrorPage",
    "ExtendRequest",
    "GenerateRequest",
    "HttpRequest",
    "InsufficientCreditsError",
    "KIE_TIMEZONE",
    "Listener",
    "NotFoundError",
    "PollPolicy",
    "RateLimitError",
    "RawResponse",
    "RecordInfo",
    "RecordNotFoundError",
    "RedisStore",
    "ResponseError",
    "ResumeReport",
    "SQLiteStore",
    "ServerError",
    "ServerErrorPage",
    "ServiceUnavailableError",
    "SessionClosedError",
    "SessionStats",
    "StoreCorruptError",
    "StoreError",
    "StoreLockedError",
    "StoreVersionError",
    "StoredIntent",
    "StoredTask",
    "Subscription",
    "SubmitUncertainError",
    "TaskFailedError",
    "TaskStatus",
    "TaskStore",
    "Transport",
    "TransportError",
    "TruncatedResponseError",
    "VeoError",
    "VeoSession",
    "VeoTask",
    "VideoResult",
    "WaitTimeoutError",
    "__version__",
]
