"""The installed version, read once from the package metadata."""

from __future__ import annotations

import functools
from importlib import metadata

__all__ = ["version"]


@functools.lru_cache(maxsize=1)
def version() -> str:
    """The distribution's version, or ``"0+unknown"`` when run from a bare source tree."""
    try:
        return metadata.version("veo-async")
    except metadata.PackageNotFoundError:
        return "0+unknown"
