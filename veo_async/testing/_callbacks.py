"""The simulator's callbacks: the outcome of a task POSTed to its ``callBackUrl``.

As the reference describes: JSON, a 15 s timeout, at most 3 delivery
attempts, optionally signed with ``X-Webhook-Timestamp`` (unix seconds) and
``X-Webhook-Signature`` = base64(HMAC-SHA256(key, ``taskId + "." + timestamp``)).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
from typing import Any, Final

import aiohttp

from ._script import SUCCESS, TaskScript, default_params, failure_of, result_url

__all__ = ["CallbackSender", "sign", "task_payload", "uhd_payload"]

logger = logging.getLogger("veo_async.testing")

_TIMEOUT: Final = 15.0
_ATTEMPTS: Final = 3
# Seconds between delivery attempts (not documented by Kie; short so tests end).
_RETRY_GAP: Final = 0.5


def sign(secret: str, task_id: str, timestamp: str) -> str:
    """The ``X-Webhook-Signature`` of a callback for ``task_id`` sent at ``timestamp``."""
    digest = hmac.new(
        secret.encode(), f"{task_id}.{timestamp}".encode(), hashlib.sha256
    ).digest()
    return base64.b64encode(digest).decode()


def task_payload(script: TaskScript) -> dict[str, Any]:
    """The callback body of a finished generate or extend task."""
    params = default_params() if script.params is None else script.params
    if script.final_status != SUCCESS:
        code, message = failure_of(script)
        return {
            "code": code,
            "msg": message,
            "data": {"taskId": script.task_id, "fallbackFlag": script.fallback},
        }
    ratio = params.get("aspect_ratio", params.get("aspectRatio", "16:9"))
    return {
        "code": 200,
        "msg": "Veo3.1 video generated successfully.",
        "data": {
            "taskId": script.task_id,
            "promptJson": json.dumps(params, ensure_ascii=False),
            "info": {
                "resultUrls": [result_url(script.task_id)],
                "originUrls": (
                    [] if ratio == "16:9" else [result_url(script.task_id, "original")]
                ),
                "resolution": "720p" if script.fallback else script.resolution,
            },
            "fallbackFlag": script.fallback,
        },
    }


def uhd_payload(task_id: str, urls: tuple[str, ...]) -> dict[str, Any]:
    """The callback body of a finished 4K version."""
    return {
        "code": 200,
        "msg": "4K Video generated successfully.",
        "data": {
            "taskId": task_id,
            "info": {
                "resultUrls": list(urls),
                "imageUrls": [url.replace(".mp4", ".jpg") for url in urls],
            },
        },
    }


class CallbackSender:
    """POSTs callbacks from tasks of its own; :meth:`aclose` cancels the rest.

    :param secret: the HMAC key to sign with, or None to send unsigned.
    """

    def __init__(self, secret: str | None = None) -> None:
        self.secret = secret
        self._client: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        #: Callbacks delivered (a 2xx answer).
        self.delivered = 0
        #: Delivery attempts that failed (no answer, or not 2xx).
        self.failed_attempts = 0

    def send(self, url: str, payload: dict[str, Any]) -> None:
        """Start delivering ``payload`` to ``url`` (returns at once)."""
        task = asyncio.get_running_loop().create_task(
            self._deliver(url, payload), name="fake_kie callback"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, url: str, payload: dict[str, Any]) -> None:
        if self._client is None:
            self._client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=_TIMEOUT))
        body = json.dumps(payload).encode()
        task_id = str(payload["data"].get("taskId", ""))
        for attempt in range(_ATTEMPTS):
            headers = {"Content-Type": "application/json"}
            if self.secret is not None:
                stamp = str(int(time.time()))
                headers["X-Webhook-Timestamp"] = stamp
                headers["X-Webhook-Signature"] = sign(self.secret, task_id, stamp)
            try:
                async with self._client.post(url, data=body, headers=headers) as answer:
                    if 200 <= answer.status < 300:
                        self.delivered += 1
                        return
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                logger.debug("callback to %s failed: %r", url, exc)
            self.failed_attempts += 1
            if attempt + 1 < _ATTEMPTS:
                await asyncio.sleep(_RETRY_GAP)

    async def aclose(self) -> None:
        """Cancel the deliveries under way and close the HTTP client."""
        pending = [task for task in self._tasks if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        if self._client is not None:
            await self._client.close()
            self._client = None
