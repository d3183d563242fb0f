"""The values the SDK hands out and takes in: frozen, hashable where it makes
sense, no I/O. Requests (:class:`GenerateRequest`, :class:`ExtendRequest`)
validate themselves when built, so a bad one fails before anything is sent."""

from __future__ import annotations

import datetime as _dt
import enum
import re
from collections.abc import Callable, Iterable
from typing import Any, Final
from urllib.parse import urlsplit

import attrs

from ._numbers import shown

__all__ = [
    "ASPECT_RATIOS",
    "EXTEND_MODELS",
    "GENERATION_TYPES",
    "MAX_PROMPT_LENGTH",
    "MAX_TASK_ID_LENGTH",
    "MODELS",
    "RESOLUTIONS",
    "SEED_RANGE",
    "ExtendRequest",
    "GenerateRequest",
    "RecordInfo",
    "TaskStatus",
    "VideoResult",
    "validate_base_url",
    "validate_task_id",
    "validate_url",
]

#: Real ids are ~40 characters; anything this long is a bug upstream of us.
MAX_TASK_ID_LENGTH = 256


# Texts the service writes for "absent" (see is_nullish in _convert): never an id.
_NULL_WORDS = frozenset({"null", "none"})


def validate_task_id(task_id: object) -> str:
    """Return ``task_id`` if it is a plausible Kie task id, else raise.

    A task id is a non-empty string of at most :data:`MAX_TASK_ID_LENGTH`
    printable characters with no whitespace anywhere: ``"a b"`` is refused as
    surely as ``" ab"``, since no real id contains a space and one that does
    is a copy-paste accident (two ids on a line, a stray tab). ``"null"`` and
    ``"None"`` (in any case) are refused too: the service's text for absent.

    :raises ValueError: (``TypeError`` for a non-string) naming the problem.
    """
    if not isinstance(task_id, str):
        raise TypeError(f"a task id must be a str, not {type(task_id).__name__}")
    # The fast path of batches of 100,000 ids: isprintable() is False for every
    # control, format and whitespace character except the space itself.
    if (
        0 < len(task_id) <= MAX_TASK_ID_LENGTH
        and task_id.isprintable()
        and " " not in task_id
        and not (len(task_id) == 4 and task_id.lower() in _NULL_WORDS)
    ):
        return task_id
    if not task_id:
        raise ValueError("a task id must not be empty")
    if task_id.lower() in _NULL_WORDS:
        # The service writes "null" for absent: such an id is a missing one
        # read as text (a callback's, a log's), and would stand for no task.
        raise ValueError(f"task id {task_id!r} is the service's word for none, not an id")
    if len(task_id) > MAX_TASK_ID_LENGTH:
        raise ValueError(f"task id is {len(task_id)} characters long (max {MAX_TASK_ID_LENGTH})")
    if any(ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0 for char in task_id):
        raise ValueError(f"task id {task_id!r} contains control characters")
    if task_id != task_id.strip():
        raise ValueError(f"task id {task_id!r} has surrounding whitespace")
    if any(char.isspace() for char in task_id):
        raise ValueError(f"task id {task_id!r} contains whitespace")
    # What is left unprintable: format characters (a zero-width space), unassigned ones.
    if not task_id.isprintable():
        raise ValueError(f"task id {task_id!r} contains invisible characters")
    return task_id


class TaskStatus(enum.IntEnum):
    """The task's ``successFlag``: 0 while generating, then one of three ends."""

    GENERATING = 0
    SUCCESS = 1
    FAILED = 2
    GENERATION_FAILED = 3

    @property
    def is_terminal(self) -> bool:
        """True once the task will not change any more (anything but GENERATING)."""
        return self is not _GENERATING


# The default of RecordInfo.params, as attrs shows a factory's: a fresh {} each.
_NEW_DICT: Any = attrs.NOTHING


# Read once: on Python 3.11, TaskStatus.GENERATING runs a descriptor each time.
_GENERATING = TaskStatus.GENERATING


@attrs.frozen(init=False)
class VideoResult:
    """What a finished task produced.

    :ivar task_id: the task these videos belong to.
    :ivar result_urls: the video URLs (the main result).
    :ivar origin_urls: originals, only for non-16:9 aspect ratios.
    :ivar full_result_urls: the whole video after an extend.
    :ivar resolution: e.g. ``"1080p"``, or None when not reported.
    """

    task_id: str
    result_urls: tuple[str, ...] = ()
    origin_urls: tuple[str, ...] = ()
    full_result_urls: tuple[str, ...] = ()
    resolution: str | None = None

    def __init__(
        self,
        task_id: str,
        result_urls: tuple[str, ...] = (),
        origin_urls: tuple[str, ...] = (),
        full_result_urls: tuple[str, ...] = (),
        resolution: str | None = None,
    ) -> None:
        # Written out, not attrs' own: every finished poll builds one, and the
        # slots' setters skip the attribute lookup of object.__setattr__.
        set_task_id, set_result_urls, set_origin_urls, set_full_urls, set_resolution = (
            _VIDEO_RESULT_SETTERS
        )
        set_task_id(self, task_id)
        set_result_urls(self, result_urls)
        set_origin_urls(self, origin_urls)
        set_full_urls(self, full_result_urls)
        set_resolution(self, resolution)



#: The longest repr of a record's service-supplied field (see RecordInfo).
REPR_LIMIT: Final = 300


def _bounded_repr(value: object) -> str:
    """``repr(value)``, cut to :data:`REPR_LIMIT` characters."""
    text = repr(value)
    return text if len(text) <= REPR_LIMIT else f"{text[:REPR_LIMIT]}... ({len(text):,} chars)"

@attrs.frozen(init=False)
class RecordInfo:
    """One answer of ``GET /api/v1/veo/record-info``: the state of a task.

    :ivar task_id: the task id.
    :ivar status: the :class:`TaskStatus` (``successFlag``).
    :ivar params: the generation request's parameters (``paramJson`` parsed);
        when the service sent text that is not a JSON object, ``{"raw": text}``.
    :ivar create_time: when the task was created (aware datetime) or None.
    :ivar complete_time: when it ended (aware datetime) or None.
    :ivar response: the :class:`VideoResult` once there is one, else None.
    :ivar error_code: the service's ``errorCode`` or None.
    :ivar error_message: the service's ``errorMessage`` ("" when none).
    :ivar fallback: True when the fallback model made the video (720p only).
    """

    task_id: str
    status: TaskStatus
    # The service's text, bounded in the repr (a 10,000-character prompt, an
    # errorMessage of a page): the attributes keep it whole.
    params: dict[str, Any] = attrs.field(factory=dict, hash=False, repr=_bounded_repr)
    create_time: _dt.datetime | None = None
    complete_time: _dt.datetime | None = None
    response: VideoResult | None = None
    error_code: int | None = None
    error_message: str = attrs.field(default="", repr=_bounded_repr)
    fallback: bool = False

    def __init__(
        self,
        task_id: str,
        status: TaskStatus,
        params: dict[str, Any] = _NEW_DICT,
        create_time: _dt.datetime | None = None,
        complete_time: _dt.datetime | None = None,
        response: VideoResult | None = None,
        error_code: int | None = None,
        error_message: str = "",
        fallback: bool = False,
    ) -> None:
        # Written out, not attrs' own: every poll's answer builds one (see VideoResult).
        (
            set_task_id,
            set_status,
            set_params,
            set_create_time,
            set_complete_time,
            set_response,
            set_error_code,
            set_error_message,
            set_fallback,
        ) = _RECORD_INFO_SETTERS
        set_task_id(self, task_id)
        set_status(self, status)
        set_params(self, {} if params is _NEW_DICT else params)
        set_create_time(self, create_time)
        set_complete_time(self, complete_time)
        set_response(self, response)
        set_error_code(self, error_code)
        set_error_message(self, error_message)
        set_fallback(self, fallback)

    @property
    def is_done(self) -> bool:
        """True once the task reached a terminal status."""
        return self.status is not _GENERATING  # read on every poll: no second property

    @property
    def result_urls(self) -> tuple[str, ...]:
        """The result video URLs, or ``()`` while there are none."""
        return self.response.result_urls if self.response is not None else ()

    def to_jsonable(self) -> dict[str, Any]:
        """This record as a JSON-ready dict: snake_case keys, nested dicts for
        :attr:`response`, ISO 8601 times, the status by name, lists for tuples.

        ``json.dumps(record.to_jsonable())`` always works; it is what
        ``veo-async wait`` and ``status --json`` print under ``"record"``.
        """
        return attrs.asdict(self, value_serializer=_jsonable_value)


def _slot_setters(cls: type) -> tuple[Callable[[object, object], None], ...]:
    """The setters of a frozen slotted class's fields, in field order (for its ``__init__``)."""
    return tuple(cls.__dict__[field.name].__set__ for field in attrs.fields(cls))


_VIDEO_RESULT_SETTERS = _slot_setters(VideoResult)
_RECORD_INFO_SETTERS = _slot_setters(RecordInfo)


class _Unparsed:
    """A field's wire text, parsed when the field is first read.

    The decoder stores one in :attr:`RecordInfo.params` instead of the parsed
    ``paramJson``: that is a second JSON text per answer, and most records
    (every poll of a batch) are never asked for it. Subclasses say how to parse.
    """

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def parse(self) -> Any:
        """The field's value (what the decoder would have stored)."""
        raise NotImplementedError


class _ParsedOnRead:
    """A slot's descriptor that turns an :class:`_Unparsed` into its value on
    the first read and keeps the value: readers only ever see the value
    (``repr``, ``==``, ``attrs.asdict``, pickling all read through it)."""

    __slots__ = ("_get", "_set")

    def __init__(self, slot: Any) -> None:
        self._get = slot.__get__
        self._set = slot.__set__

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        if instance is None:
            return self
        value = self._get(instance, owner)
        if isinstance(value, _Unparsed):
            value = value.parse()
            self._set(instance, value)
        return value

    def __set__(self, instance: object, value: object) -> None:
        self._set(instance, value)


# After the setters were read: RecordInfo.__init__ stores what it is given as is.
setattr(RecordInfo, "params", _ParsedOnRead(RecordInfo.__dict__["params"]))  # noqa: B010


def _jsonable_value(_inst: object, _field: object, value: Any) -> Any:
    if isinstance(value, _dt.datetime):
        return value.isoformat()
    if isinstance(value, TaskStatus):
        return value.name
    if isinstance(value, tuple):
        return list(value)
    return value


# -- requests ------------------------------------------------------------------------

#: The documented ``model`` values of ``POST /api/v1/veo/generate``.
MODELS: Final = frozenset({"veo3", "veo3_fast", "veo3_lite"})
#: The documented ``generationType`` values.
GENERATION_TYPES: Final = frozenset(
    {"TEXT_2_VIDEO", "FIRST_AND_LAST_FRAMES_2_VIDEO", "REFERENCE_2_VIDEO"}
)
#: The documented ``aspect_ratio`` values.
ASPECT_RATIOS: Final = frozenset({"16:9", "9:16", "Auto"})
#: The documented ``resolution`` values.
RESOLUTIONS: Final = frozenset({"720p", "1080p", "4k"})
#: The documented ``model`` values of ``POST /api/v1/veo/extend``.
EXTEND_MODELS: Final = frozenset({"fast", "quality", "lite"})
#: The documented range of ``seeds``, both ends included.
SEED_RANGE: Final = (10000, 99999)
#: Our cap on a prompt's length, in characters. Kie documents none; a prompt
#: this long is a bug upstream of us (a whole file pasted in), and refusing it
#: here costs nothing, while the service may charge for it or answer 400.
MAX_PROMPT_LENGTH: Final = 5000

# How many images each generation type takes (None: the type is left to Kie,
# which reads images as first/last frames).
_IMAGE_COUNTS: Final[dict[str | None, tuple[int, int]]] = {
    None: (0, 2),
    "TEXT_2_VIDEO": (0, 0),
    "FIRST_AND_LAST_FRAMES_2_VIDEO": (1, 2),
    "REFERENCE_2_VIDEO": (1, 3),
}


def validate_url(url: object, what: str = "url") -> str:
    """Return ``url`` if it is an absolute http(s) URL with a host, else raise.

    :param what: how the error names the value (``"callback_url"``...).
    :raises ValueError: (``TypeError`` for a non-string) naming the problem.
    """
    if not isinstance(url, str):
        raise TypeError(f"{what} must be a str, not {type(url).__name__}")
    shown = _shown_url(url)
    if url != url.strip() or any(char.isspace() for char in url):
        raise ValueError(f"{what} {shown!r} contains whitespace")
    if not url.isprintable():
        raise ValueError(f"{what} {shown!r} contains control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a port out of range or not a number raises here
    except ValueError:  # e.g. an unbalanced "[" in the host
        # (urllib's message quotes the URL: not repeated, for its password)
        raise ValueError(f"{what} {shown!r} is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.netloc or not parts.hostname:
        raise ValueError(f"{what} must be an http(s) URL with a host, not {shown!r}")
    return url


#: The ``user:password@`` of a URL, which errors do not repeat.
_CREDENTIALS = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")


#: A URL's query or fragment, which errors do not repeat either.
_QUERY_ON = re.compile(r"([?#]).*\Z", re.DOTALL)


def _shown_url(url: str) -> str:
    """``url`` as an error may show it: a ``user:password@`` part masked,
    and a query or fragment (a key pasted in as ``?key=...``) cut to ``?...``."""
    return _QUERY_ON.sub(r"\1...", _CREDENTIALS.sub(r"\1***@", url))


def validate_base_url(url: object) -> str:
    """Return the service's base URL without a trailing slash, else raise.

    An absolute http(s) URL with a host (:func:`validate_url`), and no query
    or fragment, since request paths are appended to it, nor credentials.

    :raises ValueError: (``TypeError`` for a non-string) naming the problem.
    """
    validate_url(url, "base_url")
    assert isinstance(url, str)
    shown = _shown_url(url)
    if "?" in url or "#" in url:  # even an empty one: "host?" + a path is no path
        raise ValueError(f"base_url {shown!r} must not have a query or a fragment")
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        # aiohttp refuses to send them beside our Authorization header, on
        # every request; and a password does not belong in a setting shown
        # in reprs and logs.
        raise ValueError(
            f"base_url {shown!r} must not carry credentials (user:password@): "
            "the API key is sent as its Authorization header"
        )
    return url.rstrip("/")


def _prompt(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{attribute.name} must be a str, not {type(value).__name__}")
    _check_text(attribute.name, value, _BROKEN_TEXT)


def _watermark(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise TypeError(f"{attribute.name} must be a str or None, not {type(value).__name__}")
    # Printed on the video as one line: a control character (a newline, an
    # ANSI escape, a NUL) is text no one meant to pay for, as for the prompt.
    _check_text(attribute.name, value, _BROKEN_LINE)


def _check_text(name: str, value: str, broken_chars: re.Pattern[str]) -> None:
    """A text that goes into a paid request: not blank, not over
    ``MAX_PROMPT_LENGTH``, none of ``broken_chars``."""
    if not value.strip():
        raise ValueError(f"{name} must not be empty")
    if len(value) > MAX_PROMPT_LENGTH:
        raise ValueError(f"{name} is {len(value)} characters long (max {MAX_PROMPT_LENGTH})")
    # A paid request is not sent with text no one meant: a NUL (a C string or
    # a binary file pasted in) or half of a surrogate pair (text decoded
    # wrongly, which UTF-8 cannot even carry).
    broken = broken_chars.search(value)
    if broken is not None:
        where = broken.start()
        raise ValueError(f"{name} contains {_describe(broken.group())} at position {where}")


#: A NUL, or a surrogate code point (only ever half of a pair in a str).
_BROKEN_TEXT = re.compile("[\x00\ud800-\udfff]")
#: ... or any control character (C0, DEL, C1), in a one-line text.
_BROKEN_LINE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _describe(char: str) -> str:
    if char == "\x00":
        return "a NUL character (U+0000)"
    if "\ud800" <= char <= "\udfff":
        return f"a lone surrogate (U+{ord(char):04X})"
    return f"a control character (U+{ord(char):04X})"


def _seeds(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    low, high = SEED_RANGE
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{attribute.name} must be an int, not {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{attribute.name} must be within {low}-{high}, not {shown(value)}")


def _optional_url(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None:
        validate_url(value, attribute.name)


def _optional_str(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{attribute.name} must be a str or None, not {type(value).__name__}")


def _bool(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    # Not any truthy value: allow_unknown="no" must not open the escape hatch.
    if not isinstance(value, bool):
        raise TypeError(f"{attribute.name} must be True or False, not {value!r}")


def _optional_bool(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not isinstance(value, bool):
        raise TypeError(f"{attribute.name} must be a bool or None, not {type(value).__name__}")


def _image_urls(urls: Iterable[str] | None) -> tuple[str, ...]:
    if urls is None:
        return ()
    if isinstance(urls, (str, bytes)):
        raise TypeError("image_urls must be a list of URLs, not a single string")
    # An ordered sequence: the first and last frames go in the order given
    # (a set's order is arbitrary, a dict's keys hardly meant).
    if isinstance(urls, (set, frozenset, dict)) or not isinstance(urls, Iterable):
        raise TypeError(f"image_urls must be a list of URLs, not {type(urls).__name__}")
    return tuple(urls)


def _check_choice(name: str, value: object, choices: frozenset[str], allow_unknown: bool) -> None:
    """``value`` must be one of ``choices`` (or, with ``allow_unknown``, any non-empty str)."""
    if value is None:
        return
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if value in choices:
        return
    if allow_unknown:
        if value.strip() and value == value.strip():
            return
        raise ValueError(f"{name} {value!r} must be a non-empty str without surrounding spaces")
    known = ", ".join(sorted(choices))
    raise ValueError(
        f"{name} {value!r} is not one Kie documents ({known}); pass allow_unknown=True "
        "to send a value Kie added later"
    )


@attrs.frozen
class GenerateRequest:
    """A ``POST /api/v1/veo/generate`` request, validated when built.

    ::

        request = GenerateRequest("A cat surfing at sunset", aspect_ratio="9:16")
        task = await veo.generate(request)

    Unset optional fields (None) are left out of the JSON so the service's own
    defaults apply (``enableTranslation`` true, no watermark...).

    :ivar prompt: what to film; non-empty, at most :data:`MAX_PROMPT_LENGTH`
        characters (our cap: Kie documents none).
    :ivar model: one of :data:`MODELS`; ``veo3_fast`` by default.
    :ivar aspect_ratio: one of :data:`ASPECT_RATIOS`; ``16:9`` by default. Sent
        as ``aspect_ratio``, the spelling of the current reference (older pages
        wrote ``aspectRatio``).
    :ivar generation_type: one of :data:`GENERATION_TYPES`, or None to let the
        service choose (text only without images, first/last frames with them).
    :ivar image_urls: http(s) image URLs: none for ``TEXT_2_VIDEO``, 1-2 for
        ``FIRST_AND_LAST_FRAMES_2_VIDEO`` (and when the type is None), 1-3 for
        ``REFERENCE_2_VIDEO``.
    :ivar resolution: one of :data:`RESOLUTIONS`, or None.
    :ivar seeds: an int within :data:`SEED_RANGE`, or None.
    :ivar watermark: the watermark text, or None for none.
    :ivar enable_translation: translate non-English prompts (Kie's default: yes).
    :ivar callback_url: an http(s) URL Kie POSTs the outcome to, or None.
    :ivar enable_fallback: sent as ``enableFallback`` when given: let Kie use
        its fallback model when Veo refuses (deprecated by Kie, which may
        ignore it; a fallback video has :attr:`RecordInfo.fallback` set).
    :ivar allow_unknown: the escape hatch: accept a ``model``,
        ``generation_type``, ``aspect_ratio`` or ``resolution`` outside the
        documented sets (a value Kie added after this release). Image counts
        are then only checked for the documented generation types.
    :raises ValueError: (``TypeError`` for a wrong type) naming the problem.
    """

    prompt: str = attrs.field(validator=_prompt)
    model: str = attrs.field(default="veo3_fast", kw_only=True)
    aspect_ratio: str = attrs.field(default="16:9", kw_only=True)
    generation_type: str | None = attrs.field(default=None, kw_only=True)
    image_urls: tuple[str, ...] = attrs.field(default=(), kw_only=True, converter=_image_urls)
    resolution: str | None = attrs.field(default=None, kw_only=True)
    seeds: int | None = attrs.field(default=None, kw_only=True, validator=_seeds)
    watermark: str | None = attrs.field(default=None, kw_only=True, validator=_watermark)
    enable_translation: bool | None = attrs.field(
        default=None, kw_only=True, validator=_optional_bool
    )
    callback_url: str | None = attrs.field(default=None, kw_only=True, validator=_optional_url)
    enable_fallback: bool | None = attrs.field(default=None, kw_only=True, validator=_optional_bool)
    allow_unknown: bool = attrs.field(default=False, kw_only=True, validator=_bool)

    def __attrs_post_init__(self) -> None:
        unknown = self.allow_unknown
        if self.model is None:
            raise TypeError("model must be a str, not NoneType")
        _check_choice("model", self.model, MODELS, unknown)
        if self.aspect_ratio is None:
            raise TypeError("aspect_ratio must be a str, not NoneType")
        _check_choice("aspect_ratio", self.aspect_ratio, ASPECT_RATIOS, unknown)
        _check_choice("generation_type", self.generation_type, GENERATION_TYPES, unknown)
        _check_choice("resolution", self.resolution, RESOLUTIONS, unknown)
        for url in self.image_urls:
            validate_url(url, "each of image_urls")
        counts = _IMAGE_COUNTS.get(self.generation_type)
        if counts is not None:
            low, high = counts
            count = len(self.image_urls)
            if not low <= count <= high:
                kind = self.generation_type or "no generation_type"
                wanted = "no images" if high == 0 else f"{low}-{high} image URLs"
                raise ValueError(f"{kind} takes {wanted}, not {count}")

    def to_wire(self) -> dict[str, Any]:
        """The JSON body, with the reference's field names; unset fields left out."""
        body: dict[str, Any] = {
            "prompt": self.prompt,
            "model": self.model,
            "aspect_ratio": self.aspect_ratio,
        }
        if self.generation_type is not None:
            body["generationType"] = self.generation_type
        if self.image_urls:
            body["imageUrls"] = list(self.image_urls)
        if self.resolution is not None:
            body["resolution"] = self.resolution
        if self.seeds is not None:
            body["seeds"] = self.seeds
        if self.watermark is not None:
            body["watermark"] = self.watermark
        if self.enable_translation is not None:
            body["enableTranslation"] = self.enable_translation
        if self.callback_url is not None:
            body["callBackUrl"] = self.callback_url
        if self.enable_fallback is not None:
            body["enableFallback"] = self.enable_fallback
        return body


@attrs.frozen
class ExtendRequest:
    """A ``POST /api/v1/veo/extend`` request: continue a finished video.

    :ivar task_id: the task whose video is extended.
    :ivar prompt: what happens next; same rules as :attr:`GenerateRequest.prompt`.
    :ivar model: one of :data:`EXTEND_MODELS` (``fast``, ``quality``,
        ``lite``), or None for the service's default.
    :ivar seeds: an int within :data:`SEED_RANGE`, or None.
    :ivar watermark: the watermark text, or None.
    :ivar callback_url: an http(s) URL for the outcome, or None.
    :ivar allow_unknown: accept a ``model`` outside :data:`EXTEND_MODELS`.
    :raises ValueError: (``TypeError`` for a wrong type) naming the problem.
    """

    task_id: str = attrs.field()
    prompt: str = attrs.field(validator=_prompt)
    model: str | None = attrs.field(default=None, kw_only=True)
    seeds: int | None = attrs.field(default=None, kw_only=True, validator=_seeds)
    watermark: str | None = attrs.field(default=None, kw_only=True, validator=_watermark)
    callback_url: str | None = attrs.field(default=None, kw_only=True, validator=_optional_url)
    allow_unknown: bool = attrs.field(default=False, kw_only=True, validator=_bool)

    def __attrs_post_init__(self) -> None:
        validate_task_id(self.task_id)
        _check_choice("model", self.model, EXTEND_MODELS, self.allow_unknown)

    def to_wire(self) -> dict[str, Any]:
        """The JSON body, with the reference's field names; unset fields left out."""
        body: dict[str, Any] = {"taskId": self.task_id, "prompt": self.prompt}
        if self.model is not None:
            body["model"] = self.model
        if self.seeds is not None:
            body["seeds"] = self.seeds
        if self.watermark is not None:
            body["watermark"] = self.watermark
        if self.callback_url is not None:
            body["callBackUrl"] = self.callback_url
        return body
