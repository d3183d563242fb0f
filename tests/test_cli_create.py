"""``veo-async generate`` and ``veo-async credits``, run as a user runs them (in
process, with a child's streams and environment: :func:`tests._cli.cli`) against a
FakeKie on loopback, served by the test's own event loop.

Reading ``--from`` lines is also pinned directly (pure functions), and
command-line mistakes in-process through :func:`run_cli`.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from veo_async import GenerateRequest
from veo_async.cli import run_cli
from veo_async.cli._requests import RequestSourceError, parse_request_lines, request_from_json
from veo_async.testing import FakeKie, Fault

from ._cli import KEY, against, cli, usage_error_of

#: A real simulator, served while the CLI runs in a thread: real time, real HTTP.
pytestmark = [pytest.mark.real_time, pytest.mark.loopback]

#: A fixed schedule polling every 20-50 ms: the default one waits a minute first.
FAST = ["--first-poll", "0.05", "--interval", "0.02", "--poll-cap", "0.05"]
GENERATE_PATH = "/api/v1/veo/generate"


@pytest.fixture
async def kie() -> AsyncIterator[FakeKie]:
    """A simulator whose created tasks render in well under a second (0.15 s median)."""
    async with FakeKie(api_key=KEY, time_scale=0.001, credits=10_000.0, seed=3) as server:
        yield server


def creates_sent(kie: FakeKie) -> int:
    """How many generate requests reached the simulator."""
    return sum(1 for request in kie.requests if request.path == GENERATE_PATH)


# -- generate ---------------------------------------------------------------------------


async def test_generate_prints_the_created_task_and_its_request(kie: FakeKie) -> None:
    """One PROMPT: one create with the options as fields, one JSON line, exit 0."""
    run = await cli(
        "generate", *against(kie, "A cat surfing", "--model", "veo3_lite", "--aspect-ratio",
                             "9:16", "--seed", "12345", "--no-translation")
    )
    assert run.code == 0, run.stderr
    [line] = run.lines()
    assert line["outcome"] == "created"
    assert kie.created_ids == [line["task_id"]]
    assert line["request"] == {
        "prompt": "A cat surfing", "model": "veo3_lite", "aspect_ratio": "9:16",
        "seeds": 12345, "enableTranslation": False,
    }
    assert kie.polls(line["task_id"]) == 0  # no --wait: created, not polled
    assert "1 of 1 created" in run.stderr
    assert "; 1 request\n" in run.stderr  # one, not "1 requests"


@pytest.mark.parametrize("encoding", ["ascii", "latin-1"])
async def test_a_created_task_is_printed_on_a_stdout_that_cannot_carry_its_prompt(
    kie: FakeKie, encoding: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a stdout in ASCII (LC_ALL=C, PYTHONIOENCODING=ascii) a prompt with
    an emoji made the line of a create already sent (and charged for) an
    "unexpected UnicodeEncodeError", exit 1: its task id was printed nowhere.
    The line is written with \\u escapes instead (the same JSON)."""
    raw = io.BytesIO()
    stdout = io.TextIOWrapper(raw, encoding=encoding, write_through=True)
    monkeypatch.setattr("sys.stdout", stdout)
    argv = ["generate", *against(kie, "Un chat \U0001f431 surfe")]
    code = await asyncio.wait_for(asyncio.to_thread(run_cli, argv), 30)
    assert code == 0
    (line,) = raw.getvalue().decode(encoding).splitlines()
    created = json.loads(line)
    assert kie.created_ids == [created["task_id"]]
    assert created["request"]["prompt"] == "Un chat \U0001f431 surfe"
    assert creates_sent(kie) == 1


async def test_a_create_answered_then_interrupted_is_never_called_not_sent() -> None:
    """With a store, a create answered with its task id is recorded before
    generate() returns: a Ctrl-C then (the request no longer out) was
    written as "not sent: nothing was created" for a task created and
    charged. Only a create whose request never went out is "not sent"."""
    from veo_async.cli._generate import _SentCreates
    from veo_async.events import RequestAnswered, RequestStarted

    creates = _SentCreates()

    async def create(answered: bool) -> tuple[bool, bool]:
        if answered:
            creates.on_event(RequestStarted("POST", "/api/v1/veo/generate", None, 1.0))
            creates.on_event(RequestAnswered("POST", "/api/v1/veo/generate", None, 1.5, 0.5))
        return creates.sent(), creates.never_sent()

    assert await asyncio.create_task(create(answered=True)) == (False, False)
    assert await asyncio.create_task(create(answered=False)) == (False, True)


async def test_generate_wait_waits_and_reports_like_wait(kie: FakeKie) -> None:
    """--wait: the created task is polled to its end; the line is wait's plus the request."""
    run = await cli("generate", *against(kie, "A fox", "--wait", *FAST))
    assert run.code == 0, run.stderr
    [line] = run.lines()
    assert line["outcome"] == "succeeded"
    assert line["record"]["status"] == "SUCCESS"
    assert line["record"]["task_id"] == line["task_id"] == kie.created_ids[0]
    assert line["request"]["prompt"] == "A fox"
    assert "1 succeeded, 0 failed" in run.stderr.splitlines()[-1]


async def test_generate_wait_exits_1_when_the_render_fails() -> None:
    """--wait on a render that fails: outcome failed with its record, exit 1."""
    async with FakeKie(api_key=KEY, time_scale=0.001, failure_rate=1.0) as kie:
        run = await cli("generate", *against(kie, "A fox", "--wait", *FAST))
    assert run.code == 1
    [line] = run.lines()
    assert line["outcome"] == "failed"
    assert line["error"] == "TaskFailedError"
    assert line["record"]["status"] == "FAILED"


async def test_generate_from_a_file_creates_every_line(kie: FakeKie, tmp_path: Path) -> None:
    """--from FILE: wire and library names alike, blank and # lines skipped, the
    options as defaults; every request created once, one line each."""
    requests = tmp_path / "requests.jsonl"
    requests.write_text(
        "# tonight's batch\n"
        '{"prompt": "one", "aspectRatio": "9:16", "enableTranslation": false}\n'
        "\n"
        '{"prompt": "two", "generation_type": "TEXT_2_VIDEO", "model": "veo3"}\n'
        '{"prompt": "three", "imageUrls": ["https://img.example/a.png"], "seeds": 20000}\n',
        encoding="utf-8",
    )
    run = await cli(
        "generate", *against(kie, "--from", str(requests), "--model", "veo3_lite")
    )
    assert run.code == 0, run.stderr
    lines = {line["request"]["prompt"]: line for line in run.lines()}
    assert set(lines) == {"one", "two", "three"}
    assert {line["outcome"] for line in lines.values()} == {"created"}
    assert sorted(line["task_id"] for line in lines.values()) == sorted(kie.created_ids)
    assert creates_sent(kie) == 3
    assert lines["one"]["request"] == {
        "prompt": "one", "model": "veo3_lite", "aspect_ratio": "9:16",
        "enableTranslation": False,
    }
    assert lines["two"]["request"]["model"] == "veo3"  # the line wins over --model
    assert lines["two"]["request"]["generationType"] == "TEXT_2_VIDEO"
    assert lines["three"]["request"]["imageUrls"] == ["https://img.example/a.png"]


async def test_generate_from_with_a_bad_line_creates_nothing(
    kie: FakeKie, tmp_path: Path
) -> None:
    """A bad line 3: exit 2, one error line naming it, and not one request sent."""
    requests = tmp_path / "requests.jsonl"
    requests.write_text(
        '{"prompt": "fine"}\n{"prompt": "also fine"}\n{"prompt": "x", "model": "veo9"}\n'
        '{"prompt": "never read"}\n',
        encoding="utf-8",
    )
    run = await cli("generate", *against(kie, "--from", str(requests)))
    assert run.code == 2
    assert run.stdout == ""
    assert run.stderr.count("\n") == 1
    assert f"{requests}, line 3: model 'veo9'" in run.stderr
    assert kie.total_requests == 0
    assert kie.created == 0


async def test_a_line_naming_a_field_twice_creates_nothing(
    kie: FakeKie, tmp_path: Path
) -> None:
    """{"prompt": "a", "prompt": "b"}: plain JSON decoding keeps the last value,
    so the line was created (and charged) as "b" though the user may have meant
    "a". It is refused by line and key, and nothing is sent."""
    requests = tmp_path / "requests.jsonl"
    requests.write_text(
        '{"prompt": "fine"}\n{"prompt": "a cat", "model": "veo3", "prompt": "a dog"}\n',
        encoding="utf-8",
    )
    run = await cli("generate", *against(kie, "--from", str(requests)))
    assert run.code == 2
    assert f"{requests}, line 2: 'prompt' is given twice" in run.stderr
    assert kie.total_requests == 0


def test_a_key_repeated_anywhere_in_a_line_is_refused() -> None:
    """Same spelling twice (not only two spellings of one field), at any depth;
    the same value twice is refused too: the line is ambiguous as written."""
    for line in (
        '{"prompt": "p", "seeds": 10001, "seeds": 10002}',
        '{"prompt": "p", "prompt": "p"}',
        '{"prompt": "p", "watermark": {"w": 1, "w": 2}}',
    ):
        twice = r"^r\.jsonl, line 1: '(seeds|prompt|w)' is given twice$"
        with pytest.raises(RequestSourceError, match=twice):
            parse_request_lines([line], "r.jsonl")
    [request] = parse_request_lines(['{"prompt": "p", "seeds": 10001}'], "r.jsonl")
    assert request.seeds == 10001


async def test_generate_from_stdin(kie: FakeKie) -> None:
    """--from - reads the requests from standard input."""
    stdin = '{"prompt": "from a pipe"}\n{"prompt": "and another"}\n'
    run = await cli("generate", *against(kie, "--from", "-"), stdin=stdin)
    assert run.code == 0, run.stderr
    assert len(run.lines()) == kie.created == 2


async def test_generate_from_several_files_reads_them_all_in_order(
    kie: FakeKie, tmp_path: Path
) -> None:
    """--from is repeatable (as for wait and status): every file is read and
    checked, in order, before anything is sent (the last one alone was read,
    the others silently dropped)."""
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text('{"prompt": "file A"}\n', encoding="utf-8")
    second.write_text('{"prompt": "file B"}\n{"prompt": "file B again"}\n', encoding="utf-8")
    run = await cli("generate", *against(kie, "--from", str(first), "--from", str(second)))
    assert run.code == 0, run.stderr
    prompts = [line["request"]["prompt"] for line in run.lines()]
    assert sorted(prompts) == ["file A", "file B", "file B again"]
    assert creates_sent(kie) == 3
    twice = await cli("generate", *against(kie, "--from", "-", "--from", "-"), stdin="{}")
    assert twice.code == 2
    assert "standard input can be read once" in twice.stderr


async def test_a_prompt_of_a_dash_is_a_usage_error_not_a_paid_task(kie: FakeKie) -> None:
    """PROMPT "-" (meant as standard input, as "-" is everywhere else on the
    command line) is refused, naming --from -; nothing is created."""
    run = await cli("generate", *against(kie, "-"), stdin='{"prompt": "x"}\n')
    assert run.code == 2
    assert "--from -" in run.stderr
    assert kie.total_requests == 0


async def test_an_uncertain_create_is_reported_and_never_resent(kie: FakeKie) -> None:
    """The connection drops after the task was made: outcome uncertain, exit 1, sent
    once; the simulator did create exactly one task."""
    kie.inject_create(Fault.created_then_drop())
    run = await cli("generate", *against(kie, "A risky one", "--wait", *FAST))
    assert run.code == 1
    [line] = run.lines()
    assert line["outcome"] == "uncertain"
    assert line["error"] == "SubmitUncertainError"
    assert "not resent" in line["message"]
    assert line["request"]["prompt"] == "A risky one"
    assert "task_id" not in line
    assert kie.created == 1
    assert creates_sent(kie) == 1


async def test_an_uncertain_create_whose_answer_names_its_task_prints_the_id() -> None:
    """A create answered HTTP 500 over a success envelope naming its task: the
    uncertain line carries that task_id (it was only in the message text)."""
    envelope = {"code": 200, "msg": "success", "data": {"taskId": "veo_task_named_500"}}

    async def named(request: web.Request) -> web.Response:
        return web.json_response(envelope, status=500)

    app = web.Application()
    app.router.add_post("/api/v1/veo/generate", named)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        base_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        run = await cli("generate", "--base-url", base_url, "--api-key", KEY, "A named one")
    finally:
        await runner.cleanup()
    assert run.code == 1
    [line] = run.lines()
    assert (line["outcome"], line["error"]) == ("uncertain", "SubmitUncertainError")
    assert line["task_id"] == "veo_task_named_500"


async def test_a_refused_create_is_an_error_line_and_the_others_go_on(kie: FakeKie) -> None:
    """No credits for the expensive one: an error line (402); the cheap one is created."""
    kie.credits = 100.0  # a veo3_lite costs 40 here, a veo3 400
    stdin = '{"prompt": "cheap", "model": "veo3_lite"}\n{"prompt": "dear", "model": "veo3"}\n'
    run = await cli("generate", *against(kie, "--from", "-"), stdin=stdin)
    assert run.code == 1
    lines = {line["request"]["prompt"]: line for line in run.lines()}
    assert lines["cheap"]["outcome"] == "created"
    assert lines["dear"]["outcome"] == "error"
    assert lines["dear"]["error"] == "InsufficientCreditsError"
    assert kie.created == 1


async def test_a_full_window_of_creates_goes_out_at_once_without_a_429() -> None:
    """20 requests sent together against Kie's limit (20 per 10 s): all created, no 429
    (the demo's test pins the pacing beyond one window)."""
    async with FakeKie(api_key=KEY, credits=10_000.0, create_limit=20) as kie:
        stdin = "".join(f'{{"prompt": "take {n}"}}\n' for n in range(20))
        run = await cli("generate", *against(kie, "--from", "-"), stdin=stdin)
    assert run.code == 0, run.stderr
    assert kie.created == 20
    assert kie.count_status(429) == 0


# -- credits ----------------------------------------------------------------------------


async def test_credits_prints_the_balance(kie: FakeKie) -> None:
    """credits: the balance as a plain number; --json: {"credits": x}."""
    kie.credits = 1234.5
    plain, as_json = await cli("credits", *against(kie)), await cli(
        "credits", "--json", *against(kie)
    )
    assert plain.code == as_json.code == 0
    assert plain.stdout == "1234.5\n"
    assert json.loads(as_json.stdout) == {"credits": 1234.5}
    kie.credits = 800.0
    assert (await cli("credits", *against(kie))).stdout == "800\n"


async def test_credits_with_a_wrong_key_is_one_error_line(kie: FakeKie) -> None:
    """A refused key: one error line naming AuthenticationError, exit 1."""
    run = await cli("credits", "--base-url", kie.base_url, "--api-key", "sk-wrong-0000")
    assert run.code == 1
    assert run.stdout == ""
    assert "veo-async: error: AuthenticationError" in run.stderr


# -- command-line mistakes (in process) -------------------------------------------------

BAD_INPUT = [
    pytest.param(["generate", "--api-key", KEY], "no prompt", id="no-prompt"),
    pytest.param(["generate", "x"], "no API key", id="no-key"),
    pytest.param(["credits"], "no API key", id="credits-no-key"),
    pytest.param(
        ["generate", "--api-key", KEY, "x", "--from", "r.jsonl"], "not both", id="both"
    ),
    pytest.param(["generate", "--api-key", KEY, "  "], "PROMPT must not be empty", id="blank"),
    pytest.param(
        ["generate", "--api-key", KEY, "x", "--model", "veo9"], "--allow-unknown", id="model"
    ),
    pytest.param(
        ["generate", "--api-key", KEY, "x", "--image-url", "ftp://a"], "--image-url",
        id="image-url",
    ),
    pytest.param(["generate", "--api-key", KEY, "x", "--seed", "7"], "--seed", id="seed"),
    pytest.param(
        ["generate", "--api-key", KEY, "--from", "/nonexistent/r.jsonl"],
        "cannot read requests from /nonexistent/r.jsonl",
        id="unreadable",
    ),
    pytest.param(
        ["generate", "--api-key", KEY, "x", "--wait", "--timeout", "-1"], "--timeout",
        id="timeout",
    ),
]


@pytest.mark.parametrize(("argv", "expected"), BAD_INPUT)
def test_bad_input_gets_one_line_and_exit_2(
    argv: list[str],
    expected: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each command-line mistake: one ``veo-async: error:`` line naming it, exit 2."""
    monkeypatch.delenv("KIE_API_KEY", raising=False)
    assert expected in usage_error_of(argv, capsys)


def test_an_empty_requests_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file with only comments and blank lines: exit 2, "no requests in FILE"."""
    requests = tmp_path / "r.jsonl"
    requests.write_text("# nothing yet\n\n", encoding="utf-8")
    assert run_cli(["generate", "--api-key", KEY, "--from", str(requests)]) == 2
    assert f"no requests in {requests}" in capsys.readouterr().err


# -- reading request lines (pure) -------------------------------------------------------


def test_wire_and_library_names_give_the_same_request() -> None:
    """Every wire name and its library spelling build the same GenerateRequest."""
    wire = {
        "prompt": "p", "model": "veo3", "aspectRatio": "9:16",
        "generationType": "FIRST_AND_LAST_FRAMES_2_VIDEO",
        "imageUrls": ["https://img.example/1.png"], "resolution": "1080p", "seeds": 10001,
        "watermark": "w", "enableTranslation": False, "callBackUrl": "https://cb.example/x",
        "enableFallback": True,
    }
    ours = {
        "prompt": "p", "model": "veo3", "aspect_ratio": "9:16",
        "generation_type": "FIRST_AND_LAST_FRAMES_2_VIDEO",
        "image_urls": ["https://img.example/1.png"], "resolution": "1080p", "seeds": 10001,
        "watermark": "w", "enable_translation": False, "callback_url": "https://cb.example/x",
        "enable_fallback": True,
    }
    assert request_from_json(wire) == request_from_json(ours)
    assert request_from_json(wire).enable_fallback is True
    # What is sent is what was read: the output's "request" can be fed back.
    request = request_from_json(wire)
    assert request_from_json(request.to_wire()) == request


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (["prompt"], "not an array"),
        ({"model": "veo3"}, 'no "prompt"'),
        ({"prompt": "p", "promt": "q"}, "unknown field 'promt'"),
        ({"prompt": "p", "aspectRatio": "9:16", "aspect_ratio": "16:9"}, "same field"),
        ({"prompt": "p", "imageUrls": "https://img.example/1.png"}, "not a string"),
        ({"prompt": "p", "allow_unknown": "yes"}, "true or false"),
        ({"prompt": "p", "seeds": 1.5}, "seeds"),
    ],
)
def test_bad_request_objects_are_refused_by_name(obj: Any, expected: str) -> None:
    """Each malformed request object raises a ValueError/TypeError naming the problem."""
    with pytest.raises((TypeError, ValueError), match=expected):
        request_from_json(obj)


def test_null_leaves_a_field_to_its_default() -> None:
    """``null`` is "unset": the option's default (or the request's own) applies."""
    request = request_from_json({"prompt": "p", "model": None}, {"model": "veo3_lite"})
    assert request == GenerateRequest("p", model="veo3_lite")


def test_a_line_that_is_not_json_is_named_by_its_number() -> None:
    """Line numbers count every line, blank and comment lines included."""
    lines = ["# c\n", "\n", '{"prompt": "ok"}\n', "{prompt: oops}\n"]
    with pytest.raises(RequestSourceError, match=r"^r\.jsonl, line 4: not JSON"):
        parse_request_lines(lines, "r.jsonl")


def test_a_requests_file_opening_with_a_bom_is_read(tmp_path: Path) -> None:
    """A UTF-8 byte-order mark (as PowerShell writes) opening a requests file is
    layout, not the start of the first line's JSON."""
    from veo_async.cli._requests import read_requests

    path = tmp_path / "r.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"prompt": "a cat"}\n{"prompt": "a dog"}\n')
    requests = read_requests(str(path), io.StringIO())
    assert [request.prompt for request in requests] == ["a cat", "a dog"]
    path.write_bytes(b'{"prompt": "a cat"}\n{"prompt": "caf\xe9"}\n')
    with pytest.raises(RequestSourceError, match="line 2: not UTF-8 text"):
        read_requests(str(path), io.StringIO())


def test_an_undocumented_model_in_a_line_gets_command_line_advice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A --from line with a model Kie does not document: the advice is the line's
    own field or the option, not the Python keyword; with the field it is sent."""
    path = tmp_path / "r.jsonl"
    path.write_text('{"prompt": "p", "model": "veo9"}\n', encoding="utf-8")
    error = usage_error_of(["generate", "--api-key", KEY, "--from", str(path)], capsys)
    assert 'add "allow_unknown": true to the line (or pass --allow-unknown)' in error
    assert "allow_unknown=True" not in error
    from veo_async.cli._requests import read_requests

    path.write_text('{"prompt": "p", "model": "veo9", "allow_unknown": true}\n', encoding="utf-8")
    [request] = read_requests(str(path), io.StringIO())
    assert request.to_wire()["model"] == "veo9"
