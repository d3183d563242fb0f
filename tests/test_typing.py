"""The package's types as a user's ``mypy --strict`` sees them (py.typed)."""

from __future__ import annotations

from pathlib import Path

from mypy import api

PROGRAM = '''
from veo_async import RecordInfo, VeoSession


async def main(ids: list[str]) -> None:
    async with VeoSession("k") as veo:
        records: list[RecordInfo] = await veo.wait_many(ids)
        for record in records:
            print(record.result_urls)
        outcomes = await veo.wait_many(ids, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, Exception):  # as the README has it
                print(outcome)
            else:
                print(outcome.result_urls)
        info: RecordInfo = await veo.task(ids[0])
        print(info.status.name)
        wrong: list[RecordInfo] = await veo.wait_many(ids, return_exceptions=True)
        print(wrong)
'''


def test_wait_many_is_typed_by_return_exceptions(tmp_path: Path) -> None:
    """Without return_exceptions the result is list[RecordInfo] (a failure is
    raised), so its records' fields are read without narrowing; with it, each
    position is RecordInfo | Exception (a cancellation is raised, never an
    outcome), narrowed by isinstance(..., Exception). The one mistake in the program,
    taking the latter for the former, is the one error mypy reports."""
    error = the_one_error(tmp_path, PROGRAM)
    assert "user.py:18: error: Incompatible types in assignment" in error
    assert 'list[RecordInfo | Exception]", variable has type "list[RecordInfo]"' in error


def the_one_error(tmp_path: Path, text: str) -> str:
    """The error ``mypy --strict`` reports on the user program ``text``,
    which must be its only one."""
    program = tmp_path / "user.py"
    program.write_text(text)
    out, err, status = api.run(["--strict", "--no-incremental", str(program)])
    assert status == 1, out + err
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert len(errors) == 1, out
    return errors[0]


HOOKS_AND_ERRORS = '''
from veo_async import TaskFailedError, VeoSession, WaitTimeoutError
from veo_async.events import Event


class MySession(VeoSession):
    def mine(self) -> str:
        return "mine"


def counted(_event: Event) -> None:
    pass


async def hook(_event: Event) -> None:
    pass


async def main(ids: list[str]) -> None:
    async with MySession("k", on_event=counted) as veo:
        print(veo.mine())  # the subclass, not a bare VeoSession
        for outcome in await veo.wait_many(ids, return_exceptions=True):
            if isinstance(outcome, (WaitTimeoutError, TaskFailedError)):
                print(veo.task(outcome.task_id))  # a str: no narrowing needed
    VeoSession("k", on_event=hook)
'''


def test_hooks_subclasses_and_per_task_errors_type_as_documented(tmp_path: Path) -> None:
    """``async with`` on a VeoSession subclass keeps the subclass; a wait's
    WaitTimeoutError and TaskFailedError always name their task (``task_id``
    is a str); an ``async def`` on_event, which the session refuses (its
    coroutine would never run), is the one error mypy reports."""
    error = the_one_error(tmp_path, HOOKS_AND_ERRORS)
    assert 'user.py:25: error: Argument "on_event"' in error
