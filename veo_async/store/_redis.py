"""RedisStore: a :class:`~veo_async.store.TaskStore` on a Redis server, for fleets.

Where :class:`~veo_async.store.SQLiteStore` keeps a worker's tasks on its own
disk, a Redis store keeps them off the machine: a worker that is redeployed
on another host, or replaced after a crash, opens the same store and resumes
where the last one stopped. How it is built, and why:

- **One owner per store, with a lease.** Two owners would each resume every
  unfinished task and each hand every result over, so a store (a Redis server
  and a *namespace*) has one owner at a time, as a SQLite file has: a second
  opener gets :class:`~veo_async.errors.StoreLockedError` after
  ``lock_timeout`` seconds. The lock is a key with a lease (``lease`` seconds,
  renewed every third of it), so a process that dies, even by SIGKILL, frees
  its store within a lease. Every write checks the lease in the same atomic
  script: a process that lost it (paused for longer than the lease while
  another took over) can no longer write. A fleet gives each worker its own
  namespace (``RedisStore(url, namespace=f"veo:{worker}")``) on one server.
- **Group commit**, as SQLiteStore: durable writes resolve once their batch
  was written - one pipeline of scripts, each atomic - and write-behind
  changes (seen, terminal, delivered) are coalesced per task and written
  within ``flush_interval``.
- **Durability is the server's.** A durable write returns once Redis has
  applied it; what survives a crash of the *server* depends on its
  persistence (``appendonly yes``, with ``appendfsync always`` to survive a
  power cut). :meth:`~RedisStore.open` logs a warning when the server
  persists nothing.
- A store written by another version is refused
  (:class:`~veo_async.errors.StoreVersionError`), and keys of the wrong type
  under the namespace give :class:`~veo_async.errors.StoreCorruptError`.

Requires the ``redis`` extra (``pip install 'veo-async[redis]'``, redis-py 5+).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import secrets
import urllib.parse
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from .._numbers import shown
from .._timeouts import within
from ..errors import StoreCorruptError, StoreError, StoreLockedError, StoreVersionError
from . import _redis_scripts as lua
from ._base import BatchedStore, without_damaged
from ._checks import check_time
from ._contract import DEFAULT_RETENTION
from ._redis_batch import Scripts, executed, write_batch
from ._schema import row_to_intent, row_to_task
from ._values import StoredIntent, StoredTask
from ._writer import Op, Pending

if TYPE_CHECKING:  # redis-py is an optional extra: imported when a store connects
    from redis.asyncio import Redis

__all__ = ["RedisStore"]

_T = TypeVar("_T")

logger = logging.getLogger("veo_async")

# A namespace is one hash tag: no braces; printable, short.
_NAMESPACE = re.compile(r"[A-Za-z0-9._:/-]{1,64}")
_SCHEMES = ("redis", "rediss", "unix")
# A URL's path that names a database ("/0"): anything else is not shown.
_DATABASE = re.compile(r"/\d{0,3}")
#: Keys a read's pipeline asks for at once.
_KEYS_PER_CALL = 1000
# How a lease ends by this process's clock alone (see RedisStore._lapsed).
_ENDED_UNRENEWED = "it ended before this process renewed it"
# The longest lease (a year): in milliseconds well within Redis's integers.
_MAX_LEASE = 365 * 86_400.0


def _text(value: object) -> Any:
    """A reply's value as text: clients made with ``decode_responses`` or without."""
    return value.decode() if isinstance(value, bytes) else value


def _port_readable(url: str) -> bool:
    """Whether *url*'s port, if any, is a number within 0-65535."""
    try:
        urllib.parse.urlsplit(url).port  # noqa: B018 (reading it checks it)
    except ValueError:
        return False
    return True


def safe_url(url: str) -> str:
    """*url* as ``scheme://host[:port][/db]`` (``unix://path``): its host, port
    and database, or its socket's path, and nothing else. A user, a password
    (in the user info or ``?password=``, whatever characters it holds), a
    query or a fragment never shows: a part that does not read as what it
    should is left out rather than shown."""
    scheme = url.partition("://")[0].lower()
    try:
        parts = urllib.parse.urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:  # a port that is no number: the netloc is no host[:port]
        return f"{scheme}://?"
    if "@" in url and "@" not in parts.netloc:
        # An "@" the split did not take as the end of the user info: an
        # unescaped "/", "?" or "#" in a password cut the URL short there,
        # and what reads as the host may be the user and a password's start.
        return f"{scheme}://?"
    if scheme == "unix":
        path = parts.path if "@" not in parts.netloc + parts.path else ""
        return f"unix://{path or '?'}"
    shown = f"{scheme}://{host or '?'}"
    if "[" in parts.netloc and host:
        shown = f"{scheme}://[{host}]"
    if port is not None:
        shown += f":{port}"
    if _DATABASE.fullmatch(parts.path):
        shown += parts.path
    return shown


def _is_client(value: object) -> bool:
    """Whether *value* is a redis-py asyncio client (checked without importing redis)."""
    return callable(getattr(value, "register_script", None)) and callable(
        getattr(value, "pipeline", None)
    )


def _resends(client: object) -> int:
    """How many times ``client`` sends a command again after a lost
    connection or a timeout (redis-py's ``retry``, the client's or its
    connections'); 0 where that cannot be told (a client of another make)."""
    found = [getattr(client, "get_retry", lambda: None)()]
    pool = getattr(client, "connection_pool", None)
    make = getattr(pool, "make_connection", None)
    if callable(make):
        found.append(getattr(make(), "retry", None))  # made, not connected
    counts = [0]
    for retry in found:
        count = getattr(retry, "get_retries", None)
        if callable(count):
            counts.append(int(count()))
    return max(counts)


def _redis() -> Any:
    try:
        import redis.asyncio as redis_asyncio
    except ImportError:
        raise ImportError(
            "RedisStore needs redis-py: pip install 'veo-async[redis]'"
        ) from None
    return redis_asyncio


class RedisStore(BatchedStore):
    """A task store on a Redis server, owned by one process at a time (a lease).

    ::

        async with VeoSession(store=RedisStore("redis://cache:6379/0", namespace="veo:w1")) as veo:
            await veo.resume()

    :param url: the server, ``redis://[[user]:password@]host[:port][/db]``
        (``rediss://`` for TLS, ``unix:///path`` for a socket). The password
        never appears in a message or a repr. A client given here is taken
        as *client*.
    :param client: an existing :class:`redis.asyncio.Redis` instead of *url*
        (not closed by the store), made without retries
        (``retry=Retry(NoBackoff(), 0)``; redis-py's own default resends a
        command after a lost connection, which would apply a store write
        twice: refused with a ValueError). Leave its ``socket_timeout`` unset: on
        Python 3.10 and 3.11 redis-py applies it through ``asyncio.wait_for``,
        which can lose a cancellation; the store bounds each round trip itself
        (*timeout*).
    :param namespace: the prefix of this store's keys (a Redis Cluster hash
        tag); a fleet gives each worker its own.
    :param retention: at :meth:`open`, and every six hours while open (with
        the next write), tasks and intents created more than this many seconds
        ago are purged (default 14 days, Kie's own retention); None keeps
        everything.
    :param flush_interval: the longest a write-behind change waits, in seconds.
    :param batch_size: a write-behind change for this many distinct tasks is
        written at once, without waiting for the interval.
    :param lock_timeout: how long :meth:`open` waits for the store's owner to
        let go before raising :class:`~veo_async.errors.StoreLockedError`.
    :param lease: seconds the lock outlives its owner's last renewal (a dead
        owner frees the store within it): 1 s to a year.
    :param timeout: seconds a connection, or one round trip of the store, may
        take before it fails with :class:`~veo_async.errors.StoreError`.
    :param create: make the store when the namespace has none; False: opening
        such a namespace raises :class:`~veo_async.errors.StoreError` (a reader
        that must not leave an empty store behind).
    """

    def __init__(
        self,
        url: str | Redis | None = None,
        *,
        client: Redis | None = None,
        namespace: str = "veo",
        retention: float | None = DEFAULT_RETENTION,
        flush_interval: float = 0.2,
        batch_size: int = 1000,
        lock_timeout: float = 2.0,
        lease: float = 15.0,
        timeout: float = 10.0,
        create: bool = True,
    ) -> None:
        if client is None and _is_client(url):
            url, client = None, url  # RedisStore(my_redis): a client given first
        if (url is None) == (client is None):
            raise TypeError("give RedisStore either a url or a client, not both or neither")
        if url is not None:
            if not isinstance(url, str):
                raise TypeError(f"url must be a str, not {type(url).__name__}")
            if urllib.parse.urlsplit(url).scheme not in _SCHEMES:
                raise ValueError(
                    f"url must start with redis://, rediss:// or unix://, not {safe_url(url)!r}"
                )
            where = safe_url(url)
        else:
            where = f"<{type(client).__name__}>"
            resends = _resends(client)
            if resends:
                # A write Redis applied whose answer was lost would be sent
                # again: an intent then reads as already recorded, a delivery
                # counts twice, the store's own lease reads as another's.
                raise ValueError(
                    f"the client sends a command again after a lost connection (up to "
                    f"{resends} times): a store write Redis applied but whose answer was "
                    "lost would be applied twice; give a client made with "
                    "retry=Retry(NoBackoff(), 0), or a URL"
                )
        if not isinstance(namespace, str) or _NAMESPACE.fullmatch(namespace) is None:
            raise ValueError(
                f"namespace must be 1-64 of A-Z a-z 0-9 . _ : / -, not {namespace!r}"
            )
        if not isinstance(create, bool):
            # Not any truthy value: create="no" must not make a store.
            raise TypeError(f"create must be True or False, not {create!r}")
        if url is not None and not _port_readable(url):
            # Refused here, not at open() (raised outside an except block: no
            # error holding the URL is its __context__). Mostly a password
            # with a "/", "?" or "#" in it, which ends the host part there.
            raise ValueError(
                f"url {where!r} cannot be read: what stands as its port is not a number "
                "within 0-65535 (a \"/\", \"?\" or \"#\" in a password must be written "
                "%2F, %3F or %23)"
            )
        if check_time(lock_timeout, "lock_timeout", duration=True) < 0:
            raise ValueError(f"lock_timeout must be >= 0, not {lock_timeout!r}")
        if not 1 <= check_time(lease, "lease", duration=True) <= _MAX_LEASE:
            # (Redis takes the lease in milliseconds, as a 64-bit integer: a
            # lease of 1e300 s was accepted here and refused at open(), with
            # an error that did not name it.)
            raise ValueError(
                f"lease must be between 1 second and {_MAX_LEASE:g} seconds, not {shown(lease)}"
            )
        if check_time(timeout, "timeout", duration=True) <= 0:
            raise ValueError(f"timeout must be positive, not {timeout!r}")
        super().__init__(
            f"{where} (namespace {namespace})",
            retention=retention,
            flush_interval=flush_interval,
            batch_size=batch_size,
        )
        # The URL itself (password included) lives only in this attribute,
        # until the client is made.
        self.__url = url
        self._given_client = client
        self._client: Redis | None = None
        self._namespace = namespace
        self._prefix = lua.key_prefix(namespace)
        self._lock_key = self._prefix + "lock"
        self._token = secrets.token_hex(16)
        self._create = bool(create)
        self._lock_timeout = float(lock_timeout)
        self._lease_ms = int(float(lease) * 1000)
        self._timeout = float(timeout)
        self._renewer: asyncio.Task[None] | None = None
        # Whether a SET taking the lease may have succeeded (see _connect).
        self._lease_maybe_held = False
        # Set for good once a renewal or a write found the lease gone: another
        # owner may be delivering this store's tasks now (see check_lease).
        self._lease_lost = False
        # The loop time the lease ends at, as far as this process knows: its
        # lease time from when the request that took or renewed it was sent
        # (the server set it a little later, so this end is never late).
        self._held_until = -math.inf
        self._scripts: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"RedisStore({self._where!r}, state={self._state_name()})"

    @property
    def namespace(self) -> str:
        """The prefix of this store's keys, as given."""
        return self._namespace

    # -- the connection ---------------------------------------------------------------

    async def _bounded(
        self, awaitable: Awaitable[_T], doing: str, seconds: float | None = None
    ) -> _T:
        """*awaitable* (one round trip), failing after ``timeout`` seconds.

        The store's own bound, not redis-py's ``socket_timeout``: on Python
        3.10 and 3.11 that one goes through ``asyncio.wait_for``, which loses
        a cancellation landing in the step a command's write completes (the
        cancelled task carries on). :func:`~veo_async._timeouts.within` loses none.
        """
        limit = self._timeout if seconds is None else seconds
        finished, result = await within(awaitable, limit)
        if not finished:
            raise StoreError(
                f"task store {self._where}: no answer in {limit:g} s while {doing}",
                path=self._where,
            )
        return result  # type: ignore[return-value]  # (finished: the awaitable's result)

    def _error(self, exc: Exception, doing: str) -> StoreError:
        """The StoreError (subclass) a redis-py error stands for (a StoreError itself)."""
        if isinstance(exc, StoreError):
            return exc
        message = str(exc)
        if lua.LOCK_LOST in message:
            self._lease_lost = True
            return self._lost_lease("not stored")
        if "WRONGTYPE" in message:
            return StoreCorruptError(
                f"task store {self._where}: a key under the namespace is not what a task "
                f"store writes ({message}); use another namespace or delete those keys",
                path=self._where,
            )
        if type(exc).__name__ == "AuthenticationError":  # redis-py's, without importing it
            return StoreError(
                f"task store {self._where}: the server refused the credentials while {doing}",
                path=self._where,
            )
        return StoreError(
            f"task store {self._where}: {doing} failed ({type(exc).__name__}: {message})",
            path=self._where,
        )

    def _lost_lease(self, what: str) -> StoreLockedError:
        """The error saying this process lost the lease, and *what* that means here."""
        return StoreLockedError(
            f"task store {self._where}: this process lost the store's lease (it "
            f"lapsed, {self._lease_ms / 1000:g} s without renewal, or another process "
            f"took the store over); {what}: open the store again",
            path=self._where,
        )

    def check_lease(self) -> None:
        """Return while this store's lease is not known to be lost (see
        :class:`~veo_async.store.LeasedStore`).

        :raises StoreLockedError: a renewal or a write found the lease gone,
            or it ended with no renewal (this process was paused past it: a
            blocking call, SIGSTOP), whatever a renewal may say later.
        """
        if not self._lease_lost and self._lapsed():
            self._lost(_ENDED_UNRENEWED)
        if self._lease_lost:
            raise self._lost_lease("its results are another owner's now")

    async def _connect(self) -> None:
        """Connect, take the lease, create or check the layout, start renewing."""
        redis_asyncio = _redis()
        if self._given_client is not None:
            client = self._given_client
        else:
            made: Redis | None = None
            # A ValueError's message may quote the URL, and its frames hold it
            # (the password too): ours is raised after this block, so that
            # one is not even its suppressed __context__.
            with contextlib.suppress(ValueError):
                made = redis_asyncio.from_url(
                    self.__url,
                    socket_connect_timeout=self._timeout,
                    decode_responses=True,
                )
            if made is None:
                raise StoreError(
                    f"task store {self._where}: the URL cannot be read "
                    "(check its host, port, database and escaping)",
                    path=self._where,
                )
            client = made
        for name in ("INTENT", "ATTACH", "DISCARD", "TRACK", "ACK", "FORGET", "PURGE",
                     "WRITE_BEHIND", "RENEW", "RELEASE"):  # fmt: skip
            self._scripts[name] = client.register_script(getattr(lua, name))
        self._lease_maybe_held = False
        try:
            await self._take_lease(client)
            await self._check_layout(client)
            await self._warn_without_persistence(client)
        except BaseException as exc:
            # A cancelled open too, even one cancelled while the SET that
            # takes the lease was out (the server may have taken it): the
            # release deletes the lock only if it holds our token. Not sent
            # when no lease can be ours, nor to a server that does not answer
            # (a lease it took lapses by itself).
            silent = isinstance(exc, StoreError) and "no answer" in str(exc)
            try:
                if self._lease_maybe_held and not silent:
                    await self._release(client, opening=True)
            finally:
                await self._close_client(client)
            raise
        # Last, with no await after it: an open cancelled before this point
        # leaves no renewer behind to hold the lease forever.
        self._client = client
        self._renewer = asyncio.get_running_loop().create_task(
            self._renew(), name=f"veo_async store lease {self._where}"
        )

    def _lapsed(self) -> bool:
        """Whether the lease, held open, has ended by this process's clock (see _held_until)."""
        return self._renewer is not None and asyncio.get_running_loop().time() >= self._held_until

    def _hold_from(self, asked: float) -> None:
        """The lease was taken or renewed by a request sent at loop time ``asked``."""
        self._held_until = asked + self._lease_ms / 1000

    def _lost(self, how: str) -> None:
        """Hold the lease as lost, for good: another owner may deliver now."""
        self._lease_lost = True
        logger.error(
            "task store %s: its lease was lost (%s); writes now fail", self._where, how
        )

    async def _take_lease(self, client: Redis) -> None:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self._lock_timeout
        # The key held is checked to be a lease once (then only waited out):
        # when it was, and the milliseconds it had left then.
        checked: tuple[float, int] | None = None
        while True:
            try:
                self._lease_maybe_held = True  # until the answer says otherwise
                asked = loop.time()
                taken = await self._bounded(
                    client.set(self._lock_key, self._token, nx=True, px=self._lease_ms), "opening"
                )
                self._lease_maybe_held = bool(taken)
            except StoreError:
                raise
            except Exception as exc:
                raise self._error(exc, "opening") from exc
            if taken:
                self._hold_from(asked)
                return
            if checked is None:
                checked = (loop.time(), await self._check_lock_is_a_lease(client))
            if loop.time() >= give_up:
                # The holder's lease, not ours: what its key had left when read.
                at, left_ms = checked
                left = max(0.0, left_ms / 1000 - (loop.time() - at))
                raise StoreLockedError(
                    f"task store {self._where} is held by another process (or another "
                    f"RedisStore); if that process died, its lease ends within "
                    f"{math.ceil(left * 10) / 10:g} s",
                    path=self._where,
                )
            await asyncio.sleep(min(0.05, max(0.0, give_up - loop.time())))

    async def _check_lock_is_a_lease(self, client: Redis) -> int:
        """The lock key another holds is a lease a task store took (a string
        that expires), not a key of something else: one without an expiry,
        or of another type, would hold the namespace forever, reported as
        "held by another process" at every open.

        :returns: the milliseconds the lease has left (0: gone meanwhile).
        :raises StoreCorruptError: for such a key.
        """
        try:
            kind = _text(await self._bounded(client.type(self._lock_key), "opening"))
            left = await self._bounded(client.pttl(self._lock_key), "opening")
        except StoreError:
            raise
        except Exception as exc:
            raise self._error(exc, "opening") from exc
        if kind == "none" or left == -2:
            return 0  # gone meanwhile: taken at the next try
        if kind != "string" or left == -1:
            what = f"a {kind}" if kind != "string" else "a string without an expiry"
            raise StoreCorruptError(
                f"task store {self._where}: its lock key {self._lock_key!r} is {what}, "
                "not a lease a task store takes; use another namespace or delete that key",
                path=self._where,
            )
        return int(left)

    async def _check_layout(self, client: Redis) -> None:
        key = self._prefix + "schema"
        try:
            found = _text(await self._bounded(client.get(key), "opening"))
            if found is None:
                there = client.exists(self._prefix + "all", self._prefix + "intents")
                if await self._bounded(there, "opening"):
                    raise StoreCorruptError(
                        f"task store {self._where}: tasks are there but no schema version; "
                        "use another namespace or delete its keys",
                        path=self._where,
                    )
                if not self._create:
                    raise StoreError(
                        f"task store {self._where}: no task store in this namespace",
                        path=self._where,
                    )
                await self._bounded(client.set(key, str(lua.SCHEMA_VERSION), nx=True), "opening")
                return
        except StoreError:
            raise
        except Exception as exc:
            raise self._error(exc, "opening") from exc
        try:
            version = int(found)
        except ValueError:
            raise StoreCorruptError(
                f"task store {self._where}: its schema version {found!r} is not a number",
                path=self._where,
            ) from None
        if version != lua.SCHEMA_VERSION:
            raise StoreVersionError(
                f"task store {self._where} was written with schema version {version}; this "
                f"veo_async reads version {lua.SCHEMA_VERSION} (left untouched)",
                path=self._where,
                found=version,
                supported=lua.SCHEMA_VERSION,
            )

    async def _warn_without_persistence(self, client: Redis) -> None:
        try:
            config = await self._bounded(client.config_get("appendonly"), "opening")
            snapshots = await self._bounded(client.config_get("save"), "opening")
        except Exception:  # CONFIG is often disabled on managed servers: nothing to say
            return
        if _text(config.get("appendonly")) == "no" and not _text(snapshots.get("save")):
            logger.warning(
                "task store %s: the server persists nothing (appendonly no, no snapshots): "
                "a restart of the server loses every task",
                self._where,
            )

    async def _renew(self) -> None:
        """Keep the lease while the store is open."""
        client = self._client
        assert client is not None
        renew = self._scripts["RENEW"]
        loop = asyncio.get_running_loop()
        every = pause = self._lease_ms / 3000
        while True:
            await asyncio.sleep(pause)
            if self._lapsed():
                # Woken past the lease (the loop was blocked): it may be
                # another's now, and a renewal must not take it back.
                self._lost(_ENDED_UNRENEWED)
                return
            asked = loop.time()
            try:
                # Bounded by a third of the lease too: a renewal that hangs
                # for the whole timeout must not let the lease lapse meanwhile.
                kept = await self._bounded(
                    renew(keys=[self._lock_key], args=[self._token, self._lease_ms]),
                    "renewing",
                    min(self._timeout, every),
                )
            except Exception as exc:  # the server is away: try again, writes fail meanwhile
                logger.warning("task store %s: renewing the lease failed: %s", self._where, exc)
                if not self._lapsed():
                    # Soon again, not a third of the lease on: a renewal that
                    # hung for its whole bound (a third) plus that wait would
                    # ask exactly as the lease ends, after it lapsed.
                    pause = every / 4
                    continue
                # No renewal for a whole lease: it may have lapsed, and another
                # process (one that reaches the server) may own the store now.
                # Held no longer: deliveries stop rather than hand out results
                # that owner hands out too.
                kept = False
            else:
                pause = every
                if kept:
                    self._hold_from(asked)
            if not kept:
                self._lost("lapsed, or another process took the store over")
                return

    async def _release(self, client: Redis, *, opening: bool = False) -> None:
        """Let the lease go (if it holds our token).

        :param opening: the open failed: its error is raised already, and a
            release failing too (the server refused the connection or the
            password, so most likely no lease was taken) is only noted at
            DEBUG, not warned about as if a lease were left behind.
        """
        try:
            release = self._scripts["RELEASE"](keys=[self._lock_key], args=[self._token])
            await self._bounded(release, "closing")
        except Exception as exc:  # it lapses by itself within a lease
            logger.log(
                logging.DEBUG if opening else logging.WARNING,
                "task store %s: letting the lease go failed: %s",
                self._where,
                exc,
            )

    async def _close_client(self, client: Redis) -> None:
        """Close *client*, unless it was given (its owner closes it)."""
        if client is not self._given_client:
            await client.aclose()

    async def _disconnect(self) -> None:
        """Stop renewing, let the lease go, close the client (unless it was given)."""
        renewer, self._renewer = self._renewer, None
        if renewer is not None:
            renewer.cancel()
            await asyncio.wait((renewer,))
        client, self._client = self._client, None
        if client is not None:
            try:
                await self._release(client)
            finally:
                await self._close_client(client)

    # -- writing ----------------------------------------------------------------------

    def _failure(self, error: Exception) -> StoreError:
        return self._error(error, "writing")

    async def _apply(self, ops: list[Op], pending: dict[str, Pending]) -> list[object]:
        client = self._client
        assert client is not None  # the writer runs only while open
        scripts = Scripts(self._scripts, self._lock_key, self._token, self._prefix, self._bounded)
        return await write_batch(client, scripts, ops, pending, self._fetch_intent)

    # -- reading ----------------------------------------------------------------------

    async def _hashes(self, keys: Sequence[str]) -> list[dict[str, Any]]:
        client = self._client
        if client is None:
            raise self._not_open()
        found: list[dict[str, Any]] = []
        try:
            for start in range(0, len(keys), _KEYS_PER_CALL):
                pipe = client.pipeline(transaction=False)
                for key in keys[start : start + _KEYS_PER_CALL]:
                    pipe.hgetall(key)
                replies = await executed(pipe, self._bounded, "reading")
                for reply in replies:
                    if isinstance(reply, Exception):
                        raise reply
                found += replies
        except StoreError:
            raise
        except Exception as exc:
            raise self._error(exc, "reading") from exc
        return [{_text(k): _text(v) for k, v in fields.items()} for fields in found]

    async def _members(self, zset: str, limit: int | None) -> list[str]:
        client = self._client
        if client is None:
            raise self._not_open()
        try:
            last = -1 if limit is None else limit - 1
            members = await self._bounded(client.zrange(self._prefix + zset, 0, last), "reading")
        except StoreError:
            raise
        except Exception as exc:
            raise self._error(exc, "reading") from exc
        return [_text(member) for member in members]

    def _task(self, task_id: str, fields: dict[str, Any]) -> StoredTask | None:
        if not fields:
            return None  # deleted between the listing and the read
        try:
            row = [task_id] + [_field(fields, name) for name in lua.TASK_FIELDS]
            if row[2] is None:
                raise ValueError("it has no creation time")
            return row_to_task(row)
        except (TypeError, ValueError) as exc:
            raise StoreCorruptError(
                f"task store {self._where}: task {task_id!r} cannot be read ({exc})",
                path=self._where,
            ) from None

    def _intent(self, ref: str, fields: dict[str, Any]) -> StoredIntent | None:
        if not fields:
            return None
        try:
            created_at = float(fields["created_at"])
            return row_to_intent(
                (ref, fields["kind"], fields["request"], created_at, fields.get("task_id"))
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreCorruptError(
                f"task store {self._where}: intent {ref!r} cannot be read ({exc!r})",
                path=self._where,
            ) from None

    async def _fetch_task(self, task_id: str) -> StoredTask | None:
        (fields,) = await self._hashes([self._prefix + "t:" + task_id])
        return self._task(task_id, fields)

    async def _fetch_intent(self, ref: str) -> StoredIntent | None:
        (fields,) = await self._hashes([self._prefix + "i:" + ref])
        return self._intent(ref, fields)

    async def _fetch_tasks(self, state: str | None, limit: int | None) -> list[StoredTask]:
        if limit == 0:
            return []
        ids = await self._members("all" if state is None else state, limit)
        rows = await self._hashes([self._prefix + "t:" + task_id for task_id in ids])
        return without_damaged(zip(ids, rows, strict=True), lambda row: self._task(*row))

    async def _fetch_uncertain(self) -> list[StoredIntent]:
        return await self._intents_in("uncertain")

    async def _fetch_intents(self) -> list[StoredIntent]:
        return await self._intents_in("intents")

    async def _intents_in(self, zset: str) -> list[StoredIntent]:
        """The intents a sorted set of refs names, in its order (by creation, then ref)."""
        refs = await self._members(zset, None)
        rows = await self._hashes([self._prefix + "i:" + ref for ref in refs])
        return without_damaged(zip(refs, rows, strict=True), lambda row: self._intent(*row))


_FLOAT_FIELDS = frozenset(
    ("created_at", "first_seen_at", "terminal_at", "delivered_at", "acked_at", "updated_at")
)


def _field(fields: dict[str, Any], name: str) -> Any:
    """A task hash's field as the SQLite row holds it (None when absent)."""
    value = fields.get(name)
    if value is None:
        return 0 if name == "deliveries" else None
    if name in _FLOAT_FIELDS:
        return float(value)
    if name == "deliveries":
        return int(value)
    return value
