"""The only module that touches aiohttp: one request -> a :class:`RawResponse`.

Everything aiohttp can raise (resets, DNS, TLS, payload errors, timeouts)
becomes a :class:`~veo_async.errors.TransportError` here, so the layers above
only ever see the SDK's own exception tree. ``asyncio.CancelledError`` is never
caught.
"""

from __future__ import annotations

import asyncio
import platform
from collections.abc import Mapping

import aiohttp

from ._protocol import RawResponse
from .errors import ResponseError, TransportError

__all__ = ["HttpTransport", "user_agent"]


def user_agent(version: str) -> str:
    """The User-Agent we send: Kie's proxy rejects missing or bot-like ones."""
    return f"veo-async/{version} aiohttp/{aiohttp.__version__} python/{platform.python_version()}"


class _Secret:
    """Holds the API key so that no repr, log or traceback local can show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<secret>"

    __str__ = __repr__


class HttpTransport:
    """Sends GET requests to one base URL with the key, the User-Agent and a cap.

    :param base_url: e.g. ``https://api.kie.ai`` (no trailing slash needed).
    :param api_key: sent as ``Authorization: Bearer ...``; never shown.
    :param session: an aiohttp session to use (and not close), or None to own one.
    :param concurrency: connection-pool size of an owned session.
    :param request_timeout: seconds for one whole request, connect to last byte.
    :param max_body: bodies larger than this many bytes are refused unread.
    """

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        session: aiohttp.ClientSession | None,
        concurrency: int,
        request_timeout: float,
        max_body: int,
        version: str,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._key = _Secret(api_key)
        self._session = session
        self._owns_session = session is None
        self._concurrency = concurrency
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._max_body = max_body
        self._headers = {
            "User-Agent": user_agent(version),
            "Accept": "application/json",
        }

    def __repr__(self) -> str:
        return f"HttpTransport(base_url={self._base_url!r})"

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            # Created lazily: aiohttp wants a running loop, and a VeoSession may
            # be constructed outside one.
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._concurrency, limit_per_host=0),
            )
        return self._session

    async def get(self, path: str, params: Mapping[str, str]) -> RawResponse:
        """One GET; the answer whatever its status, or :class:`TransportError`."""
        url = self._base_url + path
        try:
            async with self._client().get(
                url,
                params=params,
                # Built in the call, never bound to a local of ours: error
                # reporters that capture frame locals (Sentry, rich) must not
                # find the key in this frame.
                headers={**self._headers, "Authorization": f"Bearer {self._key.reveal()}"},
                timeout=self._timeout,
                allow_redirects=False,
                # An injected session may raise on 4xx/5xx; the status is ours
                # to read (401 is an AuthenticationError, not a transport failure).
                raise_for_status=False,
            ) as response:
                body = await self._read_capped(response)
                return RawResponse(response.status, response.headers, body)
        except asyncio.TimeoutError as exc:
            raise TransportError(f"no complete answer from {url} in time") from exc
        except aiohttp.ClientError as exc:
            raise TransportError(f"request to {url} failed: {type(exc).__name__}: {exc}") from exc

    async def _read_capped(self, response: aiohttp.ClientResponse) -> bytes:
        declared = response.content_length
        if declared is not None and declared > self._max_body:
            raise ResponseError(
                f"answer of {declared} bytes exceeds the {self._max_body}-byte cap",
                http_status=response.status,
                retryable=False,
            )
        if declared is not None:
            return await response.read()
        # No Content-Length (chunked): read in pieces and stop at the cap
        # rather than buffering whatever a broken proxy streams at us.
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_any():
            size += len(chunk)
            if size > self._max_body:
                raise ResponseError(
                    f"answer exceeds the {self._max_body}-byte cap",
                    http_status=response.status,
                    retryable=False,
                )
            chunks.append(chunk)
        return b"".join(chunks)

    @property
    def closed(self) -> bool:
        """True once an owned session was closed."""
        return self._session is not None and self._session.closed

    async def aclose(self) -> None:
        """Close the aiohttp session if we own it; an injected one is left open."""
        if self._owns_session and self._session is not None and not self._session.closed:
            await self._session.close()
