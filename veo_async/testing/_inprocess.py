"""The in-process transport: a :class:`~veo_async.Transport` served by a
:class:`~veo_async.testing.FakeKie` through plain calls, with no socket.

Everything but the bytes on a wire is kept: the same headers (User-Agent,
``Authorization``), the simulator's checks, faults and counters, the size cap,
the request timeout, and a dropped connection as a
:class:`~veo_async.errors.TransportError`. With no socket there is no real
I/O to wait for, so a test on a virtual clock runs a ten-minute wait in
milliseconds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Protocol

from .._http import MAX_BODY, HttpRequest, capped_response, user_agent
from .._protocol import RawResponse
from .._timeouts import within
from .._version import version
from ..errors import TransportError
from ._answers import Answer

__all__ = ["InProcessTransport"]



class _Server(Protocol):
    async def serve(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes = b"",
    ) -> Answer: ...


class InProcessTransport:
    """Sends each request straight to a simulator's request handling.

    :param server: the :class:`~veo_async.testing.FakeKie` that answers.
    :param request_timeout: seconds one request may take (a ``slow`` fault).
    """

    def __init__(self, server: _Server, *, request_timeout: float = 30.0) -> None:
        if not request_timeout > 0:
            raise ValueError(f"request_timeout must be > 0, not {request_timeout!r}")
        self._server = server
        self._timeout = request_timeout
        self._user_agent = user_agent(version())
        self._closed = False

    def __repr__(self) -> str:
        return f"<InProcessTransport to {self._server!r}>"

    async def send(self, request: HttpRequest) -> RawResponse:
        """Answer ``request`` in process; see the module docstring."""
        if self._closed:
            # A programming error, not a network fault to retry until the
            # deadline: the VeoSession it was given to closed it on exit.
            raise RuntimeError(
                "this in-process transport is closed (the VeoSession it was given to "
                "closes it): make one per session with FakeKie.transport()"
            )
        body = b"" if request.json is None else json.dumps(request.json).encode()
        # within(): asyncio.wait_for loses a cancellation on Python 3.10/3.11.
        _answered, answer = await within(
            self._server.serve(
                request.method,
                request.path,
                dict(request.params or {}),
                {
                    "User-Agent": self._user_agent,
                    "Accept": "application/json",
                    "Authorization": f"Bearer {request.api_key.reveal()}",
                },
                body,
            ),
            self._timeout,
        )
        if answer is None:
            raise TransportError(f"no complete answer to {request.path} in time")
        if answer.status == 0:
            raise TransportError(f"connection to {request.path} was reset (simulated)")
        headers = {"Content-Type": answer.content_type, **answer.headers}
        return capped_response(answer.status, headers, answer.body, MAX_BODY)

    async def aclose(self) -> None:
        """Stop sending; idempotent (the simulator itself stays as it is)."""
        self._closed = True
