"""The HTTP answers the simulator sends: envelopes, refusals and faults as bytes.

Pure: an :class:`Answer` is status, headers and body, built without I/O; the
server turns it into an ``aiohttp.web.Response``. Constant answers are built
once at import, because the simulator is used for benchmarks where every
microsecond per request counts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs

from ._script import Fault

__all__ = [
    "BAD_GATEWAY_HTML",
    "BLOCKED_USER_AGENT",
    "MISSING_TASK_ID",
    "NOT_FOUND",
    "UNAUTHORIZED",
    "Answer",
    "envelope",
    "envelope_answer",
    "fault_answer",
    "method_not_allowed",
    "payload_answer",
]

JSON: Final = "application/json"


@attrs.frozen
class Answer:
    """One HTTP answer, ready to send.

    :ivar status: the HTTP status.
    :ivar body: the exact body bytes.
    :ivar content_type: the ``Content-Type`` header value.
    :ivar code: the *effective* code counted by ``FakeKie.count_status``: the
        envelope ``code`` when the body is a JSON envelope, else the HTTP status.
    :ivar headers: extra headers (``Retry-After``).
    """

    status: int
    body: bytes
    content_type: str
    code: int
    headers: Mapping[str, str] = attrs.field(factory=dict)


def envelope(code: int, msg: str, data: Any = None) -> dict[str, Any]:
    """Return the service's JSON envelope ``{"code", "msg", "data"}``."""
    return {"code": code, "msg": msg, "data": data}


def _dumps(payload: Any) -> bytes:
    # Compact separators: what the service sends, and less to write.
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def envelope_answer(
    code: int,
    msg: str,
    data: Any = None,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Answer:
    """Return an :class:`Answer` carrying ``envelope(code, msg, data)``."""
    return Answer(status, _dumps(envelope(code, msg, data)), JSON, code, headers or {})


def payload_answer(payload: dict[str, Any], *, status: int = 200) -> Answer:
    """Return an :class:`Answer` carrying an already built envelope dict."""
    return Answer(status, _dumps(payload), JSON, payload["code"])


def method_not_allowed(method: str) -> Answer:
    """Return the answer to a known path asked with the wrong *method*."""
    return envelope_answer(405, f"Request method '{method}' not supported", status=405)


UNAUTHORIZED: Final = envelope_answer(401, "You do not have access permissions", status=401)
"""A missing or wrong API key."""

BLOCKED_USER_AGENT: Final = Answer(403, b"error code: 1010", "text/plain; charset=UTF-8", 403)
"""Cloudflare's answer to a missing or bot-like User-Agent: not JSON at all."""

NOT_FOUND: Final = envelope_answer(404, "Not Found", status=404)
"""Any path the simulator does not serve."""

MISSING_TASK_ID: Final = envelope_answer(400, "taskId is required")
"""record-info without a ``taskId``: an error in the body, HTTP 200."""

_BAD_GATEWAY_PAGE: Final = b"""<!DOCTYPE html>
<html lang="en-US">
<head><title>api.kie.ai | 502: Bad gateway</title>
<meta charset="UTF-8" /><meta name="robots" content="noindex, nofollow" /></head>
<body><div id="cf-wrapper"><div id="cf-error-details">
<h1><span class="cf-error-type">Bad gateway</span>
<span class="cf-error-code">Error code 502</span></h1>
<p>The web server reported a bad gateway error.</p>
<p>Cloudflare Ray ID: <strong>8f0e1d2c3b4a5968</strong></p>
</div></div></body>
</html>
"""

BAD_GATEWAY_HTML: Final = Answer(502, _BAD_GATEWAY_PAGE, "text/html; charset=UTF-8", 502)
"""A proxy's HTML error page in place of the JSON answer."""

_CONSTANT_FAULTS: Final[dict[str, Answer]] = {
    "body_429": envelope_answer(429, "Rate limited"),
    "maintenance": envelope_answer(
        455, "Service is currently under maintenance. Please try again later."
    ),
    "server_error": envelope_answer(500, "Internal Server Error", status=500),
    "bad_gateway_html": BAD_GATEWAY_HTML,
    "empty_body": Answer(200, b"", JSON, 200),
    "record_null": envelope_answer(422, "record is null"),
    "data_null": envelope_answer(200, "success"),
}


def _retry_after_value(value: float | str) -> str:
    if isinstance(value, str):
        return value
    # Whole seconds as the RFC spells them ("1", not "1.0"); fractions kept,
    # because tests want sub-second waits.
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def fault_answer(fault: Fault, normal: Callable[[], dict[str, Any]]) -> Answer:
    """Return the answer *fault* gives in place of the normal one.

    :param fault: any fault but ``reset`` and ``slow``, which are not answers
        (the server drops the connection or waits instead).
    :param normal: builds the envelope the request would have had without the
        fault; only called by the faults that distort it (truncated, oversized).
    :raises ValueError: for ``reset`` and ``slow``.
    """
    constant = _CONSTANT_FAULTS.get(fault.kind)
    if constant is not None:
        return constant
    if fault.kind == "http_429":
        headers = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = _retry_after_value(fault.retry_after)
        return envelope_answer(429, "Too Many Requests", status=429, headers=headers)
    if fault.kind == "body_code":
        return envelope_answer(fault.code, fault.msg, status=fault.http_status)
    if fault.kind == "truncated_json":
        body = _dumps(normal())
        # Not JSON any more, so the effective code is the HTTP status.
        return Answer(200, body[: max(1, len(body) // 2)], JSON, 200)
    if fault.kind == "oversized":
        payload = normal()
        # Pad inside data when there is a record (a plausible unknown field),
        # else beside the envelope's keys; either way the JSON stays valid.
        target = payload["data"] if isinstance(payload.get("data"), dict) else payload
        target["padding"] = "x" * (fault.size + 1)
        return payload_answer(payload)
    raise ValueError(f"{fault.kind!r} is not an answer")
