"""Where ``generate``'s requests come from: one JSON object per line, all checked first.

Each line of ``generate --from FILE`` is one :class:`~veo_async.GenerateRequest`,
spelled with the reference's wire names (``aspect_ratio``, ``generationType``,
``imageUrls``, ``enableTranslation``, ``callBackUrl``...) or with the
library's (``generation_type``, ``image_urls``, ``enable_translation``,
``callback_url``...), which may be mixed. Every line is read and validated
before anything is created: a request costs credits, and a typo on line 400
must not leave 399 paid-for tasks behind a half-finished run.

Pure: no I/O but reading the given file or stream.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

from .. import GenerateRequest
from ._lines import content_lines, open_text, stdin_lines

__all__ = [
    "FIELD_NAMES",
    "RequestSourceError",
    "parse_request_lines",
    "read_requests",
    "request_from_json",
]

#: Every accepted name of a field, and the :class:`GenerateRequest` field it sets.
FIELD_NAMES: Mapping[str, str] = {
    "prompt": "prompt",
    "model": "model",
    "aspect_ratio": "aspect_ratio",
    "aspectRatio": "aspect_ratio",  # older pages of the reference
    "generation_type": "generation_type",
    "generationType": "generation_type",
    "image_urls": "image_urls",
    "imageUrls": "image_urls",
    "resolution": "resolution",
    "seeds": "seeds",
    "watermark": "watermark",
    "enable_translation": "enable_translation",
    "enableTranslation": "enable_translation",
    "callback_url": "callback_url",
    "callBackUrl": "callback_url",
    "enable_fallback": "enable_fallback",
    "enableFallback": "enable_fallback",
    "allow_unknown": "allow_unknown",
}


class RequestSourceError(ValueError):
    """Requests could not be read, or one of them is not a valid request."""


def request_from_json(obj: object, defaults: Mapping[str, Any] | None = None) -> GenerateRequest:
    """The request a decoded JSON line describes.

    ``null`` leaves a field unset (the default, or ``defaults``' value).

    :param defaults: field values (library names) for fields the line leaves out.
    :raises ValueError: (or TypeError) naming the problem: not an object, an
        unknown field, a field given twice, no prompt, a value the request refuses.
    """
    if not isinstance(obj, dict):
        raise TypeError(f"expected a JSON object, not {_json_type(obj)}")
    fields: dict[str, Any] = dict(defaults or {})
    named: dict[str, str] = {}
    for key, value in obj.items():
        field = FIELD_NAMES.get(key)
        if field is None:
            known = ", ".join(FIELD_NAMES)
            raise ValueError(f"unknown field {key!r} (known: {known})")
        if field in named:
            raise ValueError(f"{named[field]!r} and {key!r} are the same field")
        named[field] = key
        if value is not None:
            fields[field] = value
    if "prompt" not in fields:
        raise ValueError('no "prompt"')
    allow_unknown = fields.get("allow_unknown", False)
    if not isinstance(allow_unknown, bool):
        raise TypeError(f"allow_unknown must be true or false, not {allow_unknown!r}")
    if isinstance(fields.get("image_urls"), str):
        raise TypeError("image_urls must be a list of URLs, not a string")
    return GenerateRequest(**fields)


def _json_type(obj: object) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return names.get(type(obj), type(obj).__name__)


class _RepeatedKeyError(ValueError):
    """A JSON object names the same key twice."""


def _refusing_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last of a repeated key without a word, so
    # {"prompt": "a", "prompt": "b"} would be created (and charged) as "b":
    # the user meant one of them, and only they know which.
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _RepeatedKeyError(f"{key!r} is given twice")
        obj[key] = value
    return obj


def parse_request_lines(
    lines: Iterable[str], source: str, defaults: Mapping[str, Any] | None = None
) -> list[GenerateRequest]:
    """The requests in ``lines``: one JSON object per line; blank and ``#`` lines skipped.

    :param source: names the input in error messages (``"requests.jsonl"``).
    :param defaults: see :func:`request_from_json`.
    :raises RequestSourceError: naming the source and line of the first bad line.
    """
    requests: list[GenerateRequest] = []
    for number, line in content_lines(lines, source, RequestSourceError):
        try:
            obj = json.loads(line, object_pairs_hook=_refusing_repeated_keys)
        except json.JSONDecodeError as exc:
            raise RequestSourceError(
                f"{source}, line {number}: not JSON ({exc.msg}, column {exc.colno})"
            ) from None
        except _RepeatedKeyError as exc:
            raise RequestSourceError(f"{source}, line {number}: {exc}") from None
        try:
            requests.append(request_from_json(obj, defaults))
        except (TypeError, ValueError) as exc:
            raise RequestSourceError(f"{source}, line {number}: {exc}") from None
    return requests


def read_requests(
    path: str, stdin: TextIO, defaults: Mapping[str, Any] | None = None
) -> list[GenerateRequest]:
    """The requests of file ``path`` (``"-"``: ``stdin``); see :func:`parse_request_lines`.

    :raises RequestSourceError: for an unreadable file or a bad line.
    """
    if path == "-":
        lines = stdin_lines(stdin, "requests", RequestSourceError)
        return parse_request_lines(lines, "standard input", defaults)
    try:
        return parse_request_lines(open_text(path), path, defaults)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise RequestSourceError(f"cannot read requests from {path}: {reason}") from None
