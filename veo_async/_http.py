"""The seam to I/O: the :class:`Transport` protocol and the aiohttp transport.

A transport sends one :class:`HttpRequest` and returns the answer as a
:class:`~veo_async._protocol.RawResponse`, whatever its status, or raises
:class:`~veo_async.errors.TransportError` when no complete answer came. It
knows nothing of envelopes, retries or budgets (the gidgethub ``abc`` idea, the
httpx ``AsyncBaseTransport`` idea). Two implementations ship:
:class:`AiohttpTransport` (the only module importing aiohttp) and the
simulator's in-process one (:meth:`veo_async.testing.FakeKie.transport`).

Secrets: the key travels inside an :class:`ApiKey` whose repr is hidden, and
the ``Authorization`` header is made once per key and kept in it (its repr
hidden), never bound to a local. Errors are raised
*outside* aiohttp's ``except`` blocks, so they chain nothing: aiohttp's
exceptions and frames hold the request headers.
"""

from __future__ import annotations

import asyncio
import json
import platform
import re
import zlib
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any, Final, Protocol, runtime_checkable

import aiohttp
import attrs
from aiohttp.http_exceptions import HttpProcessingError
from multidict import CIMultiDict, CIMultiDictProxy

from ._deadlines import RequestDeadlines
from ._protocol import RawResponse
from .errors import ResponseError, SessionClosedError, TransportError, TruncatedResponseError
from .models import _slot_setters

__all__ = [
    "MAX_BODY",
    "ApiKey",
    "AiohttpTransport",
    "IDLE_CONNECTION_S",
    "HttpRequest",
    "Transport",
    "capped_response",
    "check_api_key",
    "user_agent",
]


#: The largest answer accepted, decoded (1 MiB): Kie's answers are a few KiB.
MAX_BODY = 1024 * 1024

#: aiohttp's own timeouts, all off: RequestDeadlines keeps ours (see _deadlines).
_NO_AIOHTTP_TIMEOUT = aiohttp.ClientTimeout(
    total=None, connect=None, sock_read=None, sock_connect=None
)


def user_agent(version: str) -> str:
    """The User-Agent we send: Kie's proxy rejects missing or bot-like ones."""
    return f"veo-async/{version} aiohttp/{aiohttp.__version__} python/{platform.python_version()}"


def check_api_key(key: object) -> str:
    """The key, stripped, if it can be sent in a header; else raise.

    A key pasted with its scheme (``"Bearer sk-..."``, as the service's pages
    show the header) is the key after it: sent as is, the header said
    ``Bearer Bearer sk-...`` and every request was a 401.

    :raises ValueError: naming the problem (never the key itself).
    :raises TypeError: for a key that is not a string.
    """
    problem = _key_problem(key)
    if problem is not None:
        del key  # not a local of the traceback's frame: a reporter may read them
        raise problem
    assert isinstance(key, str)
    key = key.strip()
    scheme, _, rest = key.partition(" ")
    if scheme.lower() == "bearer" and rest.strip():
        key = rest.strip()
    return key


def _key_problem(key: object) -> Exception | None:
    """What is wrong with ``key`` (see :func:`check_api_key`), or None."""
    if key is not None and not isinstance(key, str):
        return TypeError(f"api_key must be a str, not {type(key).__name__}")
    stripped = "" if key is None else key.strip()
    if not stripped:
        return ValueError(
            "no API key: pass api_key=... or set the KIE_API_KEY environment variable"
        )
    if not stripped.isascii() or not stripped.isprintable():
        return ValueError(
            "the API key contains characters not allowed in an HTTP header "
            "(control characters such as CR/LF, or non-ASCII text)"
        )
    return None


#: aiohttp's session class, for the session's ``session=`` annotation: this
#: module is the one that imports aiohttp.
ClientSession = aiohttp.ClientSession

# What a key quoted back in an error becomes, and the shortest key hidden so
# (a real key is 32 characters; a two-letter test key would mangle messages).
_HIDDEN = "<ApiKey hidden>"
_HIDDEN_BYTES = _HIDDEN.encode()
_HIDDEN_FROM = 8
# The shortest end of a key hidden at the end of a body cut off mid-key.
_TAIL_FROM = 4


class ApiKey:
    """The API key, kept so that no repr, log line or traceback local shows it."""

    __slots__ = ("_escaped", "_headers", "_headers_of", "_needle", "_quoted", "_value")

    def __init__(self, value: str) -> None:
        self._value = value
        # The key as an answer's bytes would quote it; None when too short to
        # hide (see hide_in_answer).
        self._needle = value.encode() if len(value) >= _HIDDEN_FROM and value.isascii() else None
        # The key as JSON text may spell it with escapes, made when first needed.
        self._escaped: re.Pattern[bytes] | None = None
        # A key with a quote or a backslash is always escaped in JSON text
        # (\" and \\): its answers are always searched for those spellings.
        self._quoted = '"' in value or "\\" in value
        # The request headers last made for this key, and what they were made on.
        self._headers: CIMultiDictProxy[str] | None = None
        self._headers_of: Mapping[str, str] | None = None

    def reveal(self) -> str:
        """The key itself: use it inline, in the call that sends it."""
        return self._value

    def headers(self, others: Mapping[str, str]) -> CIMultiDictProxy[str]:
        """``others`` and this key's ``Authorization``, as a read-only multidict
        made once (for the same ``others`` object): aiohttp would otherwise
        build one from a dict on every request (about 1 % of a poll's client
        CPU). Kept here, where the key already is, hidden from reprs."""
        if self._headers is None or others is not self._headers_of:
            self._headers_of = others
            self._headers = CIMultiDictProxy(
                CIMultiDict(others, Authorization=f"Bearer {self._value}")
            )
        return self._headers

    def hidden_in(self, text: str) -> str:
        """*text* with every copy of the key replaced by ``<ApiKey hidden>``
        (a key under 8 characters is left)."""
        key = self._value
        if len(key) < _HIDDEN_FROM or key not in text:
            return text
        return text.replace(key, _HIDDEN)

    def hide_in(self, error: BaseException) -> None:
        """Replace every copy of the key in ``error``'s text (its message,
        excerpt, arguments) by ``<ApiKey hidden>``.

        A second guard, for errors: answers are cleaned before decoding (see
        :meth:`hide_in_answer`), but an error may quote the key from elsewhere
        (a library's message). A key under 8 characters is left.
        """
        if len(self._value) < _HIDDEN_FROM:
            return
        hidden_in = self.hidden_in
        for name, value in vars(error).items():
            if type(value) is str and (hidden := hidden_in(value)) is not value:
                setattr(error, name, hidden)
        error.args = tuple(hidden_in(arg) if type(arg) is str else arg for arg in error.args)

    def hide_in_answer(self, raw: RawResponse) -> RawResponse:
        """``raw`` with every copy of the key in its body and headers hidden,
        before anything decodes it: a server or proxy that quotes the request's
        key back (an error page, an ``errorMessage``, a ``Location``) must not
        put it into a record, an error, a log line, an excerpt cut at 200
        bytes, or the locals of a traceback's frames. A body that does not end
        as an envelope does (cut off, or a page) loses a tail that is the
        start of the key. A key under 8 characters is left (it could match
        ordinary text of the answers), as is an answer that does not quote it:
        one bytes search of its body and one look at each header per answer."""
        needle = self._needle
        if needle is None:
            return raw
        body = raw.body
        changed = False
        head = body[:4]
        if b"\x00" in head or head.startswith((b"\xff\xfe", b"\xfe\xff")):
            # JSON in UTF-16 or UTF-32 (the JSON reader takes those too): a
            # key quoted there is not the key's bytes. Read as UTF-8 from here
            # on, so that it is searched as it will be read.
            encoding = json.detect_encoding(head)
            if encoding not in ("utf-8", "utf-8-sig"):
                body = body.decode(encoding, "replace").encode()
                changed = True
        if needle in body:
            body = body.replace(needle, _HIDDEN_BYTES)
            changed = True
        if self._quoted or _ESCAPE(body) is not None:
            # JSON may spell a character as an escape: "\/" (PHP writes every
            # slash so), "\u0061" (any, some encoders <, >, &), one level
            # deeper inside a JSON text held in a string (paramJson). Decoded,
            # such a copy is the key: searched for whenever an answer has an
            # escape of an ASCII character or a slash (rarely: Kie's have none).
            if self._escaped is None:
                self._escaped = _escaped_spellings(self._value)
            body, found = self._escaped.subn(_HIDDEN_BYTES, body)
            changed = changed or found > 0
        if body[-1:] != b"}" and not body.rstrip().endswith(b"}"):
            for size in range(len(needle) - 1, _TAIL_FROM - 1, -1):
                if body.endswith(needle[:size]):
                    body = body[:-size] + _HIDDEN_BYTES
                    changed = True
                    break
        # Every answer's headers too, whatever its status: an error raised
        # over a 200 (a body code, an unreadable record) keeps the answer in
        # its traceback's frames (a header echoing the key included).
        headers = raw.headers
        key = self._value
        # One search of the values joined (a key has no newline, and a header
        # value none either: no false match across two), not one per header.
        if key in "\n".join(headers.values()):
            headers = CIMultiDict((name, self.hidden_in(value)) for name, value in headers.items())
            changed = True
        return RawResponse(raw.status, headers, body) if changed else raw

    def __repr__(self) -> str:
        return "<ApiKey hidden>"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("an ApiKey cannot be pickled")


def _escaped_spellings(key: str) -> re.Pattern[bytes]:
    """Every spelling of *key* (ASCII) in JSON text, one or two levels of
    escaping deep: each character as itself or as ``\\u00XX`` (hex in either
    case), a slash also as ``\\/``, a quote as ``\\"`` and a backslash as
    ``\\\\``."""
    parts = []
    for char in key:
        code = f"{ord(char):04x}".encode()
        digits = b"".join(
            b"[" + digit.lower() + digit.upper() + b"]" if digit.isalpha() else digit
            for digit in (code[i : i + 1] for i in range(4))
        )
        spellings = [re.escape(char.encode()), rb"\\{1,2}u" + digits]
        if char == "/":
            spellings.append(rb"\\{1,3}/")
        elif char == '"':  # \" one level deep, \\\" two
            spellings.append(rb'(?:\\\\\\|\\)"')
        elif char == "\\":  # \\ one level deep, four backslashes two
            spellings.append(rb"(?:\\\\\\\\|\\\\)")
        parts.append(b"(?:" + b"|".join(spellings) + b")")
    return re.compile(b"".join(parts))


# An escape of an ASCII character or of a slash in JSON text: one regular
# expression scan (it skips to each backslash; Kie's answers hold many, the
# escaped quotes of paramJson), cheaper than a search for each of the two.
_ESCAPE = re.compile(rb"\\(?:u00|/)").search


#: The default credentials of a request built without any (a key of its own).
_NO_KEY = ApiKey("")


@attrs.frozen(init=False)
class HttpRequest:
    """One request, as the requester hands it to a transport.

    :ivar method: ``"GET"`` or ``"POST"``.
    :ivar path: the path under the base URL, e.g. ``/api/v1/veo/record-info``.
    :ivar params: query parameters, or None.
    :ivar json: the JSON body of a POST, or None.
    :ivar api_key: the credentials, sent as ``Authorization: Bearer ...``.
    """

    method: str
    path: str
    params: Mapping[str, str] | None = None
    json: Any = None
    api_key: ApiKey = attrs.field(default=_NO_KEY, repr=False, eq=False)

    def __init__(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        api_key: ApiKey = _NO_KEY,
    ) -> None:
        # Written out, not attrs' own: one per request (see models.VideoResult).
        set_method, set_path, set_params, set_json, set_api_key = _HTTP_REQUEST_SETTERS
        set_method(self, method)
        set_path(self, path)
        set_params(self, params)
        set_json(self, json)
        set_api_key(self, api_key)


_HTTP_REQUEST_SETTERS = _slot_setters(HttpRequest)


@runtime_checkable
class Transport(Protocol):
    """Sends requests; two methods, no policy. Implement it to plug in another client."""

    async def send(self, request: HttpRequest) -> RawResponse:
        """Send one request; the answer whatever its status.

        :raises TransportError: when no complete answer came (reset, DNS,
            timeout); never a third-party exception. Its ``sent`` is False
            only when the request certainly did not leave (refused, DNS).
        :raises ResponseError: when the answer is over the size cap.
        """

    async def aclose(self) -> None:
        """Release connections; idempotent."""


class _Reached:
    """Whether a request on a traced client got a connection (see
    :func:`_connection_trace`): until then nothing of it was sent."""

    __slots__ = ("connected",)

    def __init__(self) -> None:
        self.connected = False


async def _on_connection(
    _client: aiohttp.ClientSession, context: SimpleNamespace, _params: object
) -> None:
    # (No await before the flag is set: a cancellation cannot come between
    # the connection being made and this knowing it.)
    reached = context.trace_request_ctx
    if isinstance(reached, _Reached):
        reached.connected = True


def _connection_trace() -> aiohttp.TraceConfig:
    """Tells a request's :class:`_Reached` (its ``trace_request_ctx``) that
    it has a connection, new or reused: the first moment it may send."""
    trace = aiohttp.TraceConfig()
    trace.on_connection_create_end.append(_on_connection)
    trace.on_connection_reuseconn.append(_on_connection)
    return trace


#: The encodings we inflate (what we ask for; ``x-gzip`` is gzip, RFC 9110 8.4.1.3).
_INFLATED = frozenset({"gzip", "x-gzip", "deflate"})


class _UnreadableBody(Exception):
    """A compressed body that does not inflate."""


class _Decoder:
    """Inflates gzip/deflate bodies ourselves, bounded: aiohttp's cap on
    ``Content-Length`` sees only the compressed size (a 300 KB bomb is 300 MB).

    The framing is read from the first bytes, as browsers and aiohttp do:
    ``deflate`` is sent zlib-wrapped (RFC 1950) as specified, raw (no header)
    by many servers, and gzip-framed by some. A gzip body may be several
    members one after the other (RFC 1952: "a series of members", as a
    server that compresses each chunk of its answer on its own sends it):
    each is inflated in turn.
    """

    __slots__ = ("_encoding", "_gzip", "_head", "_inflater")

    def __init__(self, encoding: str) -> None:
        self._encoding = encoding
        self._inflater: Any = None  # made on the first two bytes (see _framing)
        self._gzip = False  # gzip-framed: more members may follow the first
        self._head = b""

    @staticmethod
    def _framing(first: bytes, encoding: str) -> int:
        if first[:2] == b"\x1f\x8b":
            return 16 + zlib.MAX_WBITS  # gzip framing, whatever the label
        if encoding == "deflate" and first[0] & 0x0F != 8:
            return -zlib.MAX_WBITS  # no zlib header: raw deflate
        return 32 + zlib.MAX_WBITS  # zlib or gzip, from the header

    def feed(self, data: bytes, room: int) -> bytes:
        """Inflate ``data``, at most ``room`` bytes (more means over the cap).

        :raises _UnreadableBody: the stream is broken.
        """
        if self._inflater is None:
            data = self._head + data
            if len(data) < 2:  # the framing shows in two bytes; a chunk may hold one
                self._head = data
                return b""
            framing = self._framing(data, self._encoding)
            self._gzip = framing == 16 + zlib.MAX_WBITS
            self._inflater = zlib.decompressobj(framing)
            self._head = b""
        try:
            inflated: bytes = self._inflater.decompress(data, room)
            # A member ended and another begins after it (gzip only; bytes
            # after a zlib stream are not part of it): inflate that one too.
            # Anything else after a member (zero padding, a CRLF) is ignored,
            # as gzip tools and aiohttp do; bytes fed later land after it (a
            # finished stream keeps them), so a magic split between two
            # chunks is found at the next feed.
            while self._gzip and self._inflater.eof and len(inflated) < room:
                rest = self._inflater.unused_data.lstrip(b"\0")
                if rest[:2] != b"\x1f\x8b":
                    break
                self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
                inflated += self._inflater.decompress(rest, room - len(inflated))
        except zlib.error:
            raise _UnreadableBody from None
        return inflated

    def cut_short(self) -> bool:
        """Whether the stream fed so far began but did not reach its end
        (an answer cut off: what was inflated is only part of it)."""
        return (self._inflater is not None and not self._inflater.eof) or bool(self._head)


#: Seconds a pooled connection may stay idle before we close it: under the 5 s
#: after which common servers (uvicorn, Node) close theirs. aiohttp keeps them
#: 15 s, and a request sent on a connection just as the server closes it fails
#: with no answer: a poll lost, or a create reported uncertain (maybe charged)
#: that certainly created nothing.
IDLE_CONNECTION_S: Final = 4.0


class AiohttpTransport:
    """The production transport: aiohttp, one connection pool per session.

    :param base_url: e.g. ``https://api.kie.ai``.
    :param session: an aiohttp session to use (and not close), or None to own one.
    :param concurrency: connection-pool size of an owned session.
    :param request_timeout: seconds for one whole request, connect to last byte.
    :param max_body: decoded answers larger than this are refused while reading.
    :param version: the package version, for the User-Agent.
    """

    def __init__(
        self,
        *,
        base_url: str,
        session: aiohttp.ClientSession | None = None,
        concurrency: int = 64,
        request_timeout: float = 30.0,
        max_body: int = MAX_BODY,
        version: str = "0",
    ) -> None:
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            raise TypeError(
                f"session must be an aiohttp.ClientSession, not {type(session).__name__}"
            )
        if session is not None and session.auth is not None:
            # aiohttp refuses, on every request, to send it beside our
            # Authorization header: say so once, before any request.
            raise ValueError(
                "the aiohttp session given as session= has its own auth=...: the "
                "API key is sent as the Authorization header, so make it without auth"
            )
        self._base_url = base_url.rstrip("/")
        self._session = session
        self._owns_session = session is None
        # An owned session's POSTs (creates, 4K requests) go over a client of
        # their own that pools nothing (see _posting_client): made on first use.
        self._posting: aiohttp.ClientSession | None = None
        self._closed = False  # aclose() was called: no client is made or used again
        self._concurrency = concurrency
        self._deadlines = RequestDeadlines(request_timeout)
        self._max_body = max_body
        # Whether we inflate bodies ourselves (our own session never does it;
        # an injected one may): read once, not on every request.
        self._inflate = session is None or not getattr(session, "auto_decompress", True)
        self._headers = {
            "User-Agent": user_agent(version),
            "Accept": "application/json",
            "Accept-Encoding": "gzip, deflate",
        }
        # Per request, besides the key: nothing for our own session (it sends
        # self._headers by default), those for an injected one; and for a
        # JSON body its type, over an injected session's default (aiohttp
        # labels the body only when no header says otherwise).
        self._request_headers: Mapping[str, str] = {} if session is None else self._headers
        # Over an injected session, a POST (a create, a 4K request) asks for
        # its connection to be closed after the answer (and closes it: see
        # send), as our own POST client's connector does by itself: an
        # answer a server sends again unasked on a kept-alive connection is
        # read as the next request's, and a create cannot tell another
        # create's task id from its own.
        self._json_headers: Mapping[str, str] = (
            {}
            if session is None
            else {**self._headers, "Content-Type": "application/json", "Connection": "close"}
        )

    def __repr__(self) -> str:
        return f"AiohttpTransport(base_url={self._base_url!r})"

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            # Created lazily: aiohttp wants a running loop, and a VeoSession may
            # be constructed outside one.
            self._session = self._new_client(
                aiohttp.TCPConnector(
                    limit=self._concurrency,
                    limit_per_host=0,
                    keepalive_timeout=IDLE_CONNECTION_S,
                )
            )
        return self._session

    def _posting_client(self) -> aiohttp.ClientSession:
        """The owned client of POSTs: each on a connection of its own, closed
        after the answer. On a pooled connection that the server closed as it
        went idle, a create fails with no answer, reported uncertain (maybe
        charged) though it never arrived; and one whose answer a server sends
        again unasked leaves that answer for the next request to read."""
        if self._posting is None:
            self._posting = self._new_client(
                aiohttp.TCPConnector(limit=self._concurrency, limit_per_host=0, force_close=True),
                traced=True,
            )
        return self._posting

    def _new_client(
        self, connector: aiohttp.TCPConnector, *, traced: bool = False
    ) -> aiohttp.ClientSession:
        """An owned aiohttp client over ``connector``. We inflate bodies
        ourselves (bounded). ``traced``: its requests tell a :class:`_Reached`
        given as their ``trace_request_ctx`` when they get a connection."""
        client = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            timeout=_NO_AIOHTTP_TIMEOUT,
            # Sent with every request without being merged in per request.
            headers=self._headers,
            trace_configs=[_connection_trace()] if traced else None,
        )
        # aiohttp sends a GET once more, on a new connection, when the
        # pooled one it went out on turns out closed by the server: a
        # request the requester would neither count, nor pace, nor see
        # fail (record_info is one GET; a reset is a TransportError that
        # the wait's schedule retries). There is no public switch for it;
        # the test pinning this fails if aiohttp renames the attribute.
        client._retry_connection = False
        return client

    async def send(self, request: HttpRequest) -> RawResponse:
        """One request; the answer whatever its status, or :class:`TransportError`."""
        url = self._base_url + request.path
        if self._closed:
            # (not a client made anew after the close, which nothing would close)
            raise SessionClosedError("the transport is closed")
        client = self._session
        reached: _Reached | None = None
        if request.json is not None and self._owns_session:
            client = self._posting_client()
            reached = _Reached()
        elif client is None:  # made on first use (see _client)
            client = self._client()
        elif client.closed:
            # An injected session its owner closed: no request can go out any
            # more (aiohttp would raise a bare RuntimeError for each).
            raise SessionClosedError(
                "the aiohttp session given as VeoSession(session=...) was closed by its owner"
            )
        failure: str | None = None
        # Whether the request may have left: only a failure to connect (refused,
        # no such host, TLS handshake) proves it did not, and only then may a
        # create be resent without risking a second charge.
        sent = True
        # The answer's status and headers once its head came: a failure after
        # it cut the body.
        status: int | None = None
        headers: Mapping[str, str] = {}
        cut = False
        late = False  # the deadline came first
        deadlines = self._deadlines
        # aiohttp's response, once its head came: its request_info holds the
        # request's headers, the key among them (see finally).
        response: aiohttp.ClientResponse | None = None
        task = deadlines.enter()
        try:
            async with client.request(
                request.method,
                url,
                params=request.params,
                json=request.json,
                # Never bound to a local of ours: error reporters that
                # capture frame locals must not find the key.
                headers=request.api_key.headers(
                    self._request_headers if request.json is None else self._json_headers
                ),
                timeout=_NO_AIOHTTP_TIMEOUT,
                trace_request_ctx=reached,
                allow_redirects=False,
                # An injected session may raise on 4xx/5xx; the status is ours.
                raise_for_status=False,
            ) as response:
                status, headers = response.status, response.headers
                declared = response.content_length
                encoding = headers.get("Content-Encoding")
                if (
                    self._inflate
                    and declared is not None
                    and declared <= self._max_body
                    and (encoding is None or encoding.strip().lower() in ("", "identity"))
                ):
                    # The common answer: uncompressed and sized (the bytes are
                    # as declared: this session does not inflate), one read.
                    raw = RawResponse(status, headers, await response.read())
                else:
                    raw = await self._read_capped(response, inflate=self._inflate)
                if request.json is not None and not self._owns_session:
                    response.close()  # not back to the injected pool (see _json_headers)
                return raw
        except asyncio.CancelledError as exc:
            if not deadlines.timed_out(task, exc):
                # Someone else's cancellation (a caller's, a timeout's, a
                # close's) passes on, but without aiohttp's frames: their
                # locals hold our headers, and a TimeoutError of the caller's
                # asyncio.timeout() chains this error.
                raise exc.with_traceback(None)  # noqa: B904 (the same error, re-raised)
            failure = f"no complete answer from {url} in time"
            late = True
        except aiohttp.ClientConnectorError as exc:  # before anything was sent
            sent = False
            failure = f"could not connect to {url}: {type(exc).__name__}: {_safe(exc)}"
        except aiohttp.ClientPayloadError as exc:  # the head came, the body broke off
            failure = f"the answer from {url} broke off: {type(exc).__name__}: {_safe(exc)}"
            cut = True
        except aiohttp.ClientError as exc:
            failure = f"request to {url} failed: {type(exc).__name__}: {_safe(exc)}"
        except OSError as exc:
            failure = f"request to {url} failed: {type(exc).__name__}: {exc.strerror or ''}"
        except Exception as exc:
            # aiohttp refusing how it was used (an injected session of another
            # loop, credentials from .netrc beside our header...): passed on,
            # without aiohttp's frames, whose locals hold our headers.
            raise exc.with_traceback(None)  # noqa: B904 (the same error, re-raised)
        finally:
            deadlines.leave(task)
            # Every error raised here or below keeps this frame, and a reporter
            # that serialises its locals (or a debugger) would walk from the
            # response to the key.
            response = None
        # Raised here, outside the except blocks: the error chains nothing
        # (aiohttp's exception holds request_info, with our headers).
        if cut and status is not None:
            if status >= 400:
                # An error status decides whatever its body, cut or whole (a
                # 401 stops the session, a 429 pauses it, a refused create is
                # refused): the protocol reads the status and the headers.
                return RawResponse(status, headers, b"")
            raise TruncatedResponseError(failure, http_status=status)
        if reached is not None and not reached.connected:
            # No connection was made (a connect that timed out: a listener
            # whose queue is full drops the handshake): nothing of it can
            # have arrived, and a create may be sent again.
            sent = False
            if late:
                failure = f"no connection to {url} in time"
        raise TransportError(failure, sent=sent)

    async def _read_capped(self, response: aiohttp.ClientResponse, *, inflate: bool) -> RawResponse:
        """The body, counted while it is read (the uncommon answers: compressed,
        unsized, or from a session that inflates on its own)."""
        status = response.status
        encoding = response.headers.get("Content-Encoding", "").strip().lower()
        cap = self._max_body
        decoder = _Decoder(encoding) if inflate and encoding in _INFLATED else None
        chunks: list[bytes] = []
        size = 0
        unreadable = False
        # Counted as decoded while reading: Content-Length is the compressed size.
        async for chunk in response.content.iter_any():
            room = cap + 1 - size  # one byte over the cap is enough to refuse
            try:
                data = decoder.feed(chunk, room) if decoder is not None else chunk[:room]
            except _UnreadableBody:
                unreadable = True
                break
            size += len(data)
            chunks.append(data)
            if size > cap:
                break
        if status >= 400:
            # An error status decides whatever its body (the part inflated is
            # read as a page): a 401 still stops the session, a 429 its pause.
            return capped_response(status, response.headers, b"".join(chunks), cap)
        if decoder is not None and not unreadable and size <= cap and decoder.cut_short():
            # Else read as "not JSON" or "an empty body": the part inflated.
            raise ResponseError(
                f"HTTP {status} answer's {encoding} body is cut short (the stream ends early)",
                http_status=status,
                retryable=True,
            )
        if unreadable:
            # Raised outside the loop's except: nothing is chained. A proxy
            # that mangled one answer may send the next intact: retryable.
            raise ResponseError(
                f"HTTP {status} answer's {encoding} body does not inflate (a broken stream)",
                http_status=status,
                retryable=True,
            )
        return capped_response(status, response.headers, b"".join(chunks), cap)

    @property
    def closed(self) -> bool:
        """True once :meth:`aclose` was called, or an injected session was closed."""
        return self._closed or (self._session is not None and self._session.closed)

    async def aclose(self) -> None:
        """Close the aiohttp session if we own it; an injected one is left open."""
        self._closed = True
        self._deadlines.close()
        if not self._owns_session:
            return
        clients = [
            client
            for client in (self._session, self._posting)
            if client is not None and not client.closed
        ]
        if not clients:
            return
        # Both closes start now, shielded: a cancellation while they run
        # (Ctrl-C as the command line closes) left the second client open
        # ("Unclosed client session"). Cancelled, this waits for them, then
        # passes the cancellation on.
        # return_exceptions: one close failing must not end this before the other.
        closing = asyncio.gather(*(client.close() for client in clients), return_exceptions=True)
        try:
            outcomes = await asyncio.shield(closing)
        except asyncio.CancelledError:
            await asyncio.wait({closing})
            raise
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome


def pool_size(session: aiohttp.ClientSession) -> int | None:
    """How many requests ``session``'s connection pool lets out at once to one
    host (its connector's ``limit`` and ``limit_per_host``), or None: no limit."""
    connector = session.connector
    if connector is None:
        return None
    limits = [limit for limit in (connector.limit, connector.limit_per_host) if limit]
    return min(limits) if limits else None


def capped_response(status: int, headers: Mapping[str, str], body: bytes, cap: int) -> RawResponse:
    """The answer as the protocol should see it, given the size cap.

    :raises ResponseError: (not retryable) for an oversized answer under a
        status below 400.
    """
    if len(body) <= cap:
        return RawResponse(status, headers, body)
    if status >= 400:
        # An error status decides whatever its body: a huge 5xx (a proxy's
        # HTML page) is as transient as a small one, a huge 401 page still
        # stops the session. The status goes on with the head of the body.
        return RawResponse(status, headers, body[:512])
    raise ResponseError(
        f"HTTP {status} answer exceeds the {cap}-byte cap",
        http_status=status,
        retryable=False,
    )


# aiohttp's parser messages: a fixed wording, then the bad bytes after a colon
# (the C parser) or in quotes (the Python one).
_PARSER_WORDING = re.compile(r"([A-Za-z][A-Za-z ]{2,40}?)\s*(?::\s|['\"])")


def _safe(exc: BaseException) -> str:
    """An aiohttp error's message without anything that could carry headers."""
    if isinstance(exc, aiohttp.ClientResponseError):
        cause = exc.__cause__
        if isinstance(cause, HttpProcessingError):
            # aiohttp's parser refused the answer and says "400" for it: the
            # server sent no 400. What was wrong, never the bytes (a header
            # or chunk line could quote anything, the key included): the
            # parser's class when it says it, else its fixed wording before
            # the quoted bytes, if that is all letters.
            what = type(cause).__name__
            if type(cause) is HttpProcessingError:
                fixed = _PARSER_WORDING.match(exc.message)
                what = fixed.group(1) if fixed else "unreadable"
            return f"the answer is not valid HTTP ({what})"
        return f"HTTP {exc.status}"
    return str(exc)[:200]
