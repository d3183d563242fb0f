"""The endpoints besides record-info: their paths and their answers, decoded.

Pure (no aiohttp, no event loop), like :mod:`veo_async._protocol`, which
decides what an error envelope means; this module only knows where each
endpoint puts its payload and the two non-200 answers that are not errors:

- ``get-1080p-video`` answers a non-200 code ("1080P is processing") until
  the upgrade is ready;
- ``get-4k-video`` answers 422 both while processing ("4k is processing",
  null urls) and once done ("has been generated successfully", urls present).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, Final

from ._convert import is_nullish, no_urls
from ._protocol import RawResponse, decode_envelope, envelope_code, excerpt, parse_body
from .errors import APIError, ResponseError
from .models import validate_task_id

__all__ = [
    "CREDIT_PATH",
    "DOWNLOAD_URL_PATH",
    "EXTEND_PATH",
    "GENERATE_PATH",
    "HD_1080P_PATH",
    "UHD_4K_PATH",
    "decode_1080p",
    "decode_4k",
    "decode_credits",
    "decode_link",
    "decode_task_id",
]

GENERATE_PATH: Final = "/api/v1/veo/generate"
EXTEND_PATH: Final = "/api/v1/veo/extend"
HD_1080P_PATH: Final = "/api/v1/veo/get-1080p-video"
UHD_4K_PATH: Final = "/api/v1/veo/get-4k-video"
CREDIT_PATH: Final = "/api/v1/chat/credit"
DOWNLOAD_URL_PATH: Final = "/api/v1/common/download-url"

# Words in a non-200 msg that mean "not ready yet", not "refused".
_PROCESSING_HINTS: Final = ("processing", "in progress", "not ready", "generating")
# A repeated 4K request's 422 while it renders: the documented "4k is
# processing", and whole phrases of other wordings ("4K video is being
# generated, please wait"); not bare words such as "pending" or "queued",
# which refusals use too ("task pending deletion", "queued tasks limit").
_4K_PROCESSING_HINTS: Final = (*_PROCESSING_HINTS, "being generated", "being processed")
# A repeated 4K request's answer once done ("has been generated successfully").
_GENERATED_HINTS: Final = ("generated successfully",)
# Kie's 4K failure, a final answer whatever its code (documented with 500: "The
# 4K version of this video is unavailable. Please try a different video."):
# asked again, each ask is another paid request, to the deadline.
# Its own words, not "unavailable" alone: a 455 or 503 "Service Unavailable"
# is an outage, asked again.
_4K_UNAVAILABLE_HINTS: Final = ("4k version", "different video")
# A 422 refusing the request itself ("Invalid parameter: index", "taskId is
# required"): asked again, the same refusal comes, each ask a paid request,
# to the deadline, and the timeout told nothing of it.
_4K_INVALID_HINTS: Final = ("invalid", "parameter", "required", "must be")


def _envelope(raw: RawResponse) -> dict[str, Any] | None:
    # Read as decode_envelope reads it: a non-UTF-8 byte in a msg ("1080P is
    # processing" in Latin-1) must not turn "processing" into a refusal.
    parsed = parse_body(raw.body)
    return parsed if isinstance(parsed, dict) else None


def _says(envelope: Mapping[str, Any], hints: tuple[str, ...]) -> bool:
    """Whether the envelope's ``msg`` holds one of ``hints`` (lower case)."""
    message = envelope.get("msg")
    return isinstance(message, str) and any(h in message.lower() for h in hints)


def _wrong_shape(raw: RawResponse, what: str) -> ResponseError:
    return ResponseError(
        f"the answer has no {what}",
        http_status=raw.status,
        excerpt=excerpt(raw.body),
        retryable=False,
    )


def decode_task_id(raw: RawResponse) -> str:
    """The ``data.taskId`` of a generate or extend answer.

    :raises APIError: for an error code.
    :raises ResponseError: for a success without a usable task id, a "null"
        spelling included, or a task's record in place of a create's answer
        (the task may well exist: the create code treats this as uncertain).
    """
    data = decode_envelope(raw)
    if isinstance(data, dict) and "successFlag" in data:
        # A record-info answer, not a create's: one a server sent unasked on
        # a kept-alive connection, read as this create's. Its taskId is some
        # other task's; this create's own answer never came.
        raise ResponseError(
            "the answer is a task's record, not a create's (an answer sent unasked?)",
            field="taskId",
            http_status=raw.status,
            excerpt=excerpt(raw.body),
            retryable=False,
        )
    task_id = data.get("taskId") if isinstance(data, dict) else None
    if type(task_id) is int:
        # A number (the reference says a string): its digits are the id; the
        # task exists, and throwing its id away would leave it unknown.
        task_id = str(task_id)
    if not isinstance(task_id, str) or is_nullish(task_id):
        raise _wrong_shape(raw, "taskId")
    try:
        return validate_task_id(task_id.strip())
    except ValueError as exc:
        # Created (and charged) under an id that cannot be polled: the
        # create code reports it as uncertain, with the answer's excerpt.
        raise ResponseError(
            f"the answer's taskId is not a usable task id: {exc}",
            field="taskId",
            http_status=raw.status,
            excerpt=excerpt(raw.body),
            retryable=False,
        ) from None


def decode_credits(raw: RawResponse) -> float:
    """The balance of a ``chat/credit`` answer (``data``: a number, maybe fractional)."""
    data = decode_envelope(raw)
    if isinstance(data, str):
        try:
            data = float(data.strip())
        except ValueError:
            raise _wrong_shape(raw, "numeric balance") from None
    if isinstance(data, bool) or not isinstance(data, (int, float)):
        raise _wrong_shape(raw, "numeric balance")
    try:
        balance = float(data)  # an int of 400 digits overflows
    except OverflowError:
        raise _wrong_shape(raw, "numeric balance") from None
    if not math.isfinite(balance):
        raise _wrong_shape(raw, "numeric balance")
    return balance


def decode_link(raw: RawResponse) -> str:
    """The temporary link of a ``common/download-url`` answer (``data``: a URL)."""
    data = decode_envelope(raw)
    if isinstance(data, dict):  # tolerate {"url": ...} should the shape grow
        data = data.get("url") or data.get("downloadUrl")
    link = data.strip() if isinstance(data, str) else ""
    if not _is_http_url(link):  # (as the 1080p and 4K answers' URLs are read)
        raise _wrong_shape(raw, "download URL")
    return link


def decode_1080p(raw: RawResponse) -> str | None:
    """The 1080p URL, or None while the upgrade is processing.

    On this endpoint a 400 means "still processing", whatever its message
    (Kie's error table: "on 1080p: still processing"; the messages vary).

    :raises APIError: for an error that is not "processing".
    """
    envelope = _envelope(raw)
    code = envelope_code(envelope) if envelope is not None else None
    if (
        envelope is not None
        and code not in (None, 200)
        and (code == 400 or _says(envelope, _PROCESSING_HINTS))
    ):
        return None
    data = decode_envelope(raw)
    if data is None:
        return None  # accepted, nothing yet
    if isinstance(data, (str, list)):
        # A bare URL (or a list of them) is the answer; the null spellings
        # ("null", "", []) are nothing yet, asked again, as a 4K answer's
        # are; other text is no answer to wait out.
        urls = _urls(data)
        if urls:
            return urls[0]
        if no_urls(data):
            return None
        raise _wrong_shape(raw, "resultUrl")
    if not isinstance(data, dict):
        raise _wrong_shape(raw, "resultUrl")
    url = data.get("resultUrl")
    if url is not None and not isinstance(url, str):
        raise _wrong_shape(raw, "resultUrl")
    # A URL, a JSON list of them, or not one yet ("null", "", a "processing"
    # text): only an http(s) URL is handed back, else it is asked again.
    urls = _urls(url) or _urls(data.get("resultUrls"))
    return urls[0] if urls else None


def decode_4k(raw: RawResponse) -> tuple[str, ...] | None:
    """The 4K URLs, or None while the upgrade is processing.

    A first request is answered 200 (accepted); a repeated one 422, both while
    processing (null urls, a "processing" msg) and once done (urls present).

    :raises APIError: for an error that is neither; not retryable when it
        says the 4K version is unavailable (whatever its code).
    """
    envelope = _envelope(raw)
    code = envelope_code(envelope) if envelope is not None else None
    if envelope is not None and code == 422:
        urls = _4k_urls(envelope.get("data"))
        if urls:
            return urls
        if (
            _says(envelope, _4K_PROCESSING_HINTS)
            or _says(envelope, _GENERATED_HINTS)  # done, its URLs not given yet: asked again
            or (isinstance(envelope.get("data"), dict) and not _says(envelope, _4K_INVALID_HINTS))
        ):
            return None
    try:
        data = decode_envelope(raw)  # raises for every other error
    except APIError as exc:
        if envelope is not None and _says(envelope, _4K_UNAVAILABLE_HINTS):
            exc.retryable = False
        raise
    return _4k_urls(data) or None


def _4k_urls(data: object) -> tuple[str, ...]:
    """The URLs wherever the 4K answers (and callbacks) put them."""
    if not isinstance(data, dict):
        return ()
    for holder in (data, data.get("info"), data.get("response")):
        if not isinstance(holder, dict):
            continue
        for key in ("resultUrls", "result_urls"):
            urls = _urls(holder.get(key))
            if urls:
                return urls
    return ()


def _urls(value: object) -> tuple[str, ...]:
    """The http(s) URLs of a list, of one JSON-encoded as a string (seen on
    the wire), or of a lone URL; anything else dropped (null spellings, a
    "processing" text, a relative path): not a URL a caller could fetch."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except (ValueError, RecursionError):  # "[[[[..." nested too deep
                return ()
        else:
            value = [text]
    if isinstance(value, list):
        urls = (url.strip() for url in value if isinstance(url, str))
        return tuple(url for url in urls if _is_http_url(url))
    return ()


def _is_http_url(text: str) -> bool:
    """Whether ``text`` (stripped) starts as an http(s) URL, any case."""
    return text[:8].lower().startswith(_HTTP_SCHEMES)


# (A scheme is case-insensitive: "HTTPS://" is a URL too.)
_HTTP_SCHEMES = ("http://", "https://")
