"""The simulator's creating side: generate, extend, 1080p, 4K, download links.

:class:`CreationDesk` decides every answer of those endpoints from plain
numbers (the loop time and the wall clock are arguments), so it needs no
event loop; the server (``_server.py``) adds the tasks it creates and sends
their callbacks (``_callbacks.py``).

What it simulates, with the simulator's own values (Kie publishes prices and
times only loosely; these are plausible, not Kie's):

- generation time per model drawn from a seeded log-normal distribution
  (:data:`MEDIAN_SECONDS`, sigma :data:`SIGMA`), times ``time_scale``; an
  extend takes 1.5 times its model's time;
- credits charged at creation per model (:data:`COSTS`; an extend costs its
  model's price, a 4K :data:`UHD_COST`, a 1080p nothing); 402 when the
  balance is short, and nothing is created;
- the account's creation limit: ``create_limit`` requests per
  ``create_period`` s (Kie: 20 per 10 s); over it a 429 (HTTP 200 with body
  code 429 by default, as Kie does) and nothing created or counted;
- the 1080p version ready ``hd_delay`` s after the task finished ("1080P is
  processing" before), refused for a fallback-model video;
- the 4K version: the first POST starts it (and charges), later ones answer
  422 "processing" (null urls) until ``uhd_delay`` s have passed, then 422
  "generated successfully" with the urls.
"""

from __future__ import annotations

import json
import math
import random
import secrets
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs

from ..models import RESOLUTIONS
from ._answers import Answer, envelope_answer, payload_answer
from ._script import FAILED, SUCCESS, TaskScript, result_url

__all__ = [
    "COSTS",
    "EXTEND_MODELS",
    "MEDIAN_SECONDS",
    "SIGMA",
    "UHD_COST",
    "CreatedTask",
    "CreationDesk",
    "UpgradeJob",
]

#: Median generation seconds per model (before ``time_scale``): Kie says
#: "usually 2-5 minutes"; the cheaper models are the quicker ones.
MEDIAN_SECONDS: Final[Mapping[str, float]] = {"veo3_lite": 120.0, "veo3_fast": 150.0, "veo3": 300.0}
#: The log-normal's sigma: a task at +-1 sigma takes x0.74 to x1.35 the median.
SIGMA: Final = 0.3
#: Credits charged per generation, per model (simulator values).
COSTS: Final[Mapping[str, float]] = {"veo3_lite": 40.0, "veo3_fast": 80.0, "veo3": 400.0}
#: Credits charged for a 4K version (simulator value); a 1080p one is free.
UHD_COST: Final = 120.0
#: The extend endpoint's model names and the generate models they price as.
EXTEND_MODELS: Final[Mapping[str, str]] = {
    "fast": "veo3_fast",
    "quality": "veo3",
    "lite": "veo3_lite",
}
_EXTEND_FACTOR: Final = 1.5
_KNOWN_TYPES: Final = frozenset(
    {"TEXT_2_VIDEO", "FIRST_AND_LAST_FRAMES_2_VIDEO", "REFERENCE_2_VIDEO"}
)
_RATIOS: Final = frozenset({"16:9", "9:16", "Auto"})

_NOT_SUCCESS: Final = envelope_answer(422, "The task status is not success")
_RECORD_NULL: Final = envelope_answer(422, "record is null")
_INSUFFICIENT: Final = envelope_answer(
    402, "The current credits are insufficient. Please top up."
)
_HD_PROCESSING: Final = envelope_answer(
    400, "1080P is processing. It should be ready in 1-2 minutes. Please check back shortly."
)
_FALLBACK_REFUSED: Final = envelope_answer(
    422, "This video was made by the fallback model and cannot be upgraded"
)
_UHD_PROCESSING_MSG: Final = (
    "4k is processing. It should be ready in 5-10 minutes. Please check back shortly."
)
_UHD_DONE_MSG: Final = "4k video has been generated successfully"
#: Where the simulator's results live: only these may get a download link.
_HOSTED: Final = "https://tempfile.example/"


@attrs.define(eq=False)
class CreatedTask:
    """A task the desk created: what the server adds, and whom it tells.

    :ivar script: the task's life (its record).
    :ivar callback_url: where to POST its outcome, or None.
    :ivar kind: ``"generate"`` or ``"extend"``.
    """

    script: TaskScript
    callback_url: str | None
    kind: str


@attrs.define(eq=False)
class UpgradeJob:
    """A 4K version being made.

    :ivar ready_at: loop time at which it is done.
    :ivar urls: its result URLs.
    :ivar callback_url: where to POST its outcome, or None.
    """

    ready_at: float
    urls: tuple[str, ...]
    callback_url: str | None


# (script, loop time it was added, wall time it was created) of a known task.
TaskLookup = Callable[[str], "tuple[TaskScript, float, float] | None"]


class CreationDesk:
    """The state and answers of the creating endpoints; see the module docstring.

    :param credits: the starting balance.
    :param time_scale: multiplies every simulated duration (0.01: 100x faster).
    :param seed: seeds the generation times and task ids (None: random).
    :param create_limit: create requests allowed per ``create_period``; None: no limit.
    :param create_period: the window of ``create_limit``, in seconds (not scaled).
    :param rate_limit_http_status: the HTTP status of a create 429 (Kie: 200).
    :param hd_delay: seconds after the task finished until its 1080p is ready.
    :param uhd_delay: seconds after the first 4K request until the 4K is ready.
    :param fallback_rate: the share of successful tasks made by the fallback model.
    :param failure_rate: the share of created tasks that end FAILED.
    """

    def __init__(
        self,
        *,
        credits: float,
        time_scale: float = 1.0,
        seed: int | None = None,
        create_limit: int | None = 20,
        create_period: float = 10.0,
        rate_limit_http_status: int = 200,
        hd_delay: float = 90.0,
        uhd_delay: float = 420.0,
        fallback_rate: float = 0.0,
        failure_rate: float = 0.0,
    ) -> None:
        if not time_scale > 0 or not math.isfinite(time_scale):
            raise ValueError(f"time_scale must be a positive number, not {time_scale!r}")
        for name, rate in (("fallback_rate", fallback_rate), ("failure_rate", failure_rate)):
            if not 0 <= rate <= 1:
                raise ValueError(f"{name} must be within 0-1, not {rate!r}")
        for name, value in (("credits", credits), ("hd_delay", hd_delay), ("uhd_delay", uhd_delay)):
            if not 0 <= value < math.inf:
                raise ValueError(f"{name} must be a number >= 0, not {value!r}")
        if not 0 < create_period < math.inf:
            raise ValueError(f"create_period must be a positive number, not {create_period!r}")
        if create_limit is not None and (
            isinstance(create_limit, bool) or not isinstance(create_limit, int) or create_limit < 0
        ):
            raise ValueError(f"create_limit must be an int >= 0 or None, not {create_limit!r}")
        status = rate_limit_http_status
        if isinstance(status, bool) or status not in range(100, 600):
            raise ValueError(
                f"rate_limit_http_status must be an HTTP status (100-599), not "
                f"{rate_limit_http_status!r}"
            )
        self.credits = credits
        self.time_scale = time_scale
        self.create_limit = create_limit
        self.create_period = create_period
        self.rate_limit_http_status = rate_limit_http_status
        self.hd_delay = hd_delay
        self.uhd_delay = uhd_delay
        self.fallback_rate = fallback_rate
        self.failure_rate = failure_rate
        self._rng = random.Random(seed)
        self._seeded = seed is not None
        self._window: deque[float] = deque()
        #: Tasks created through the API, by id, in creation order.
        self.created: dict[str, CreatedTask] = {}
        #: Credits charged so far.
        self.charged = 0.0
        #: 4K jobs by (task id, index).
        self.uhd_jobs: dict[tuple[str, int], UpgradeJob] = {}

    # -- rules ------------------------------------------------------------------------

    def duration(self, model: str, *, extend: bool = False) -> float:
        """A generation time for ``model``: log-normal around its median, scaled."""
        median = MEDIAN_SECONDS.get(model, MEDIAN_SECONDS["veo3_fast"])
        if extend:
            median *= _EXTEND_FACTOR
        return median * math.exp(SIGMA * self._rng.gauss(0.0, 1.0)) * self.time_scale

    def new_task_id(self) -> str:
        """A fresh id shaped like Kie's (``veo_task_<hex>``)."""
        if self._seeded:
            return f"veo_task_{self._rng.getrandbits(64):016x}"
        return f"veo_task_{secrets.token_hex(8)}"

    def admit(self, now: float) -> bool:
        """True if a create request at ``now`` is within the limit (and count it)."""
        if self.create_limit is None:
            return True
        window = self._window
        while window and window[0] <= now - self.create_period:
            window.popleft()
        if len(window) >= self.create_limit:
            return False
        window.append(now)
        return True

    def _charge(self, cost: float) -> bool:
        if self.credits < cost:
            return False
        self.credits -= cost
        self.charged += cost
        return True

    def _rate_limited(self) -> Answer:
        # The limit this simulator was given, not Kie's default (a test of
        # create_limit=2 read "at most 20").
        return envelope_answer(
            429,
            f"Rate limited: at most {self.create_limit} new generation requests"
            f" per {self.create_period:g} seconds",
            status=self.rate_limit_http_status,
        )

    # -- endpoints --------------------------------------------------------------------

    def generate(self, body: Any, now: float) -> tuple[Answer, CreatedTask | None]:
        """Answer ``POST generate``; the created task, if one was."""
        problem = _check_generate(body)
        if problem is not None:
            return envelope_answer(422, problem), None
        if not self.admit(now):
            return self._rate_limited(), None
        model = body.get("model", "veo3_fast")
        if not self._charge(COSTS.get(model, COSTS["veo3_fast"])):
            return _INSUFFICIENT, None
        return self._created(body, self.duration(model), "generate")

    def extend(
        self, body: Any, now: float, lookup: TaskLookup
    ) -> tuple[Answer, CreatedTask | None]:
        """Answer ``POST extend`` (of a finished SUCCESS task only)."""
        if not isinstance(body, dict) or not isinstance(body.get("prompt"), str):
            return envelope_answer(422, "prompt is required"), None
        if not body["prompt"].strip():
            return envelope_answer(422, "prompt is required"), None
        parent = body.get("taskId")
        known = lookup(parent) if isinstance(parent, str) else None
        if known is None:
            return _RECORD_NULL, None
        script, added_at, _ = known
        if script.final_status != SUCCESS or now - added_at < script.complete_after:
            return _NOT_SUCCESS, None
        model = EXTEND_MODELS.get(body.get("model") or "fast")
        if model is None:
            return envelope_answer(422, f"model {body.get('model')!r} is not supported"), None
        if not self.admit(now):
            return self._rate_limited(), None
        if not self._charge(COSTS[model]):
            return _INSUFFICIENT, None
        return self._created(body, self.duration(model, extend=True), "extend")

    def _created(
        self, body: dict[str, Any], duration: float, kind: str
    ) -> tuple[Answer, CreatedTask]:
        task_id = self.new_task_id()
        failed = self._rng.random() < self.failure_rate
        fallback = not failed and self._rng.random() < self.fallback_rate
        resolution = body.get("resolution")
        script = TaskScript(
            task_id,
            complete_after=duration,
            final_status=FAILED if failed else SUCCESS,
            params=dict(body),
            fallback=fallback,
            # (A str first: a raw body may hold a list there, which no set takes.)
            resolution=resolution
            if isinstance(resolution, str) and resolution in RESOLUTIONS
            else "720p",
            extended=kind == "extend",
        )
        callback = body.get("callBackUrl")
        created = CreatedTask(script, callback if isinstance(callback, str) else None, kind)
        self.created[task_id] = created
        answer = payload_answer({"code": 200, "msg": "success", "data": {"taskId": task_id}})
        return answer, created

    def hd(self, query: Mapping[str, str], now: float, lookup: TaskLookup) -> Answer:
        """Answer ``GET get-1080p-video``."""
        known = _finished(query.get("taskId"), now, lookup)
        if isinstance(known, Answer):
            return known
        script, done_at = known
        if script.fallback:
            return _FALLBACK_REFUSED
        if now < done_at + self.hd_delay * self.time_scale:
            return _HD_PROCESSING
        index = _index(query.get("index"))
        url = result_url(script.task_id, f"1080p-{index}")
        return envelope_answer(200, "success", {"resultUrl": url})

    def uhd(
        self, body: Any, now: float, lookup: TaskLookup
    ) -> tuple[Answer, UpgradeJob | None]:
        """Answer ``POST get-4k-video``; the job it started, if it started one."""
        if not isinstance(body, dict):
            return envelope_answer(422, "taskId is required"), None
        known = _finished(body.get("taskId"), now, lookup)
        if isinstance(known, Answer):
            return known, None
        script, _ = known
        if script.fallback:
            return _FALLBACK_REFUSED, None
        index = _index(body.get("index"))
        key = (script.task_id, index)
        job = self.uhd_jobs.get(key)
        if job is None:
            if not self._charge(UHD_COST):
                return _INSUFFICIENT, None
            urls = (result_url(script.task_id, f"4k-{index}"),)
            callback = body.get("callBackUrl")
            job = UpgradeJob(
                now + self.uhd_delay * self.time_scale,
                urls,
                callback if isinstance(callback, str) else None,
            )
            self.uhd_jobs[key] = job
            return envelope_answer(200, "success", {"taskId": script.task_id}), job
        # Asked again: 422 either way; msg and data tell which.
        data: dict[str, Any] = {"taskId": script.task_id, "resultUrls": None, "imageUrls": None}
        if now < job.ready_at:
            return envelope_answer(422, _UHD_PROCESSING_MSG, data), None
        data["resultUrls"] = list(job.urls)
        data["imageUrls"] = [url.replace(".mp4", ".jpg") for url in job.urls]
        return envelope_answer(422, _UHD_DONE_MSG, data), None

    def download_link(self, body: Any, wall: float) -> Answer:
        """Answer ``POST common/download-url``: a link valid 20 minutes."""
        url = body.get("url") if isinstance(body, dict) else None
        if not isinstance(url, str) or not url:
            return envelope_answer(422, "url is required")
        if not url.startswith(_HOSTED):
            return envelope_answer(422, "Only URLs of files generated on Kie can be downloaded")
        expires = int(wall) + 20 * 60
        return envelope_answer(200, "success", f"{url}?download=1&expires={expires}")


def _check_generate(body: Any) -> str | None:
    """What the service would refuse in a generate body (422), or None."""
    if not isinstance(body, dict):
        return "the request body must be a JSON object"
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return "prompt is required"
    if body.get("model", "veo3_fast") not in COSTS:
        return f"model {body.get('model')!r} is not supported"
    kind = body.get("generationType")
    if kind is not None and kind not in _KNOWN_TYPES:
        return f"generationType {kind!r} is not supported"
    ratio = body.get("aspect_ratio", body.get("aspectRatio", "16:9"))
    if ratio not in _RATIOS:
        return f"aspect_ratio {ratio!r} is not supported"
    images = body.get("imageUrls", [])
    if not isinstance(images, list) or len(images) > 3:
        return "imageUrls must be a list of at most 3 URLs"
    if kind == "TEXT_2_VIDEO" and images:
        return "TEXT_2_VIDEO takes no imageUrls"
    if kind == "FIRST_AND_LAST_FRAMES_2_VIDEO" and len(images) > 2:
        return "FIRST_AND_LAST_FRAMES_2_VIDEO takes at most 2 imageUrls"
    return None


def _finished(
    task_id: object, now: float, lookup: TaskLookup
) -> tuple[TaskScript, float] | Answer:
    """The script and completion time of a finished SUCCESS task, else the refusal."""
    if not isinstance(task_id, str) or not task_id:
        return envelope_answer(422, "taskId is required")
    known = lookup(task_id)
    if known is None:
        return _RECORD_NULL
    script, added_at, _ = known
    done_at = added_at + script.complete_after
    if script.final_status != SUCCESS or now < done_at:
        return _NOT_SUCCESS
    return script, done_at


def _index(value: object) -> int:
    try:
        return max(0, int(str(value)))
    except ValueError:
        return 0


def parse_body(body: bytes) -> Any:
    """The JSON of a request body, or None when it is not JSON."""
    try:
        return json.loads(body) if body.strip() else None
    except (ValueError, RecursionError):
        return None
