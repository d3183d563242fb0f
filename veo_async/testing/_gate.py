"""Who gets through: the proxy's User-Agent filter and the API's key check.

Pure predicates on header values, so the rules can be read (and tested) apart
from the server.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["is_authorized", "is_blocked_user_agent"]

# Lower-cased prefixes of User-Agents that the Cloudflare front treats as bots
# (HTTP 403 "error code: 1010"), as reported for the real service.
_BOT_PREFIXES: Final = ("python-requests", "curl", "python-urllib", "wget")

# aiohttp's default, "Python/3.11 aiohttp/3.9.5": sent whenever a client sets no
# User-Agent, so a client that forgets to set one is caught here.
_AIOHTTP_DEFAULT: Final = re.compile(r"Python/\d+\.\d+ aiohttp/\S+")


def is_blocked_user_agent(user_agent: str | None) -> bool:
    """Tell whether the proxy refuses *user_agent* (``None``: header missing).

    Missing or blank values, ``python-requests``, ``curl``, ``Python-urllib``
    and ``Wget`` prefixes, and aiohttp's default value are refused; anything
    else, such as ``veo-async/0.1.0 aiohttp/3.10.0 python/3.12.1``, passes.
    """
    if user_agent is None or not user_agent.strip():
        return True
    if user_agent.lower().startswith(_BOT_PREFIXES):
        return True
    return _AIOHTTP_DEFAULT.fullmatch(user_agent) is not None


def is_authorized(authorization: str | None, api_key: str) -> bool:
    """Tell whether an ``Authorization`` header value carries *api_key* as a Bearer token.

    The scheme is case-insensitive, as HTTP says; the token must match exactly.
    """
    if authorization is None:
        return False
    scheme, _, token = authorization.partition(" ")
    return scheme.lower() == "bearer" and token.strip() == api_key
