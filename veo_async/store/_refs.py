"""A create intent's reference in its callback URL, and back. Pure: no I/O.

When a session with a store creates a task whose request has a
``callback_url``, it sends that URL with ``veo_ref=<ref>`` added to its query.
Kie calls it back with the task id in the body; a callback handler that reads
the ref from its own URL can then give an uncertain intent its task id::

    ref = ref_of(str(request.url))
    if ref is not None:
        await veo.reconcile(ref, payload["data"]["taskId"])  # VeoSession.reconcile

(A 4K callback names its task ``data["task_id"]``; it is no create.)
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qsl, urlsplit

from ._values import check_ref

__all__ = ["REF_PARAMETER", "ref_of", "with_ref", "without_ref"]

#: The query parameter that carries an intent's reference.
REF_PARAMETER = "veo_ref"


def with_ref(url: str, ref: str) -> str:
    """*url* with ``veo_ref=<ref>`` added to its query (before any fragment).

    The ref is URL-safe as it is (see :func:`~veo_async.store.new_ref`), so
    nothing else in the URL is re-encoded.

    :raises ValueError: for an invalid ref, or a URL that already has a ``veo_ref``.
    """
    check_ref(ref)
    # Any veo_ref, even one ref_of cannot read ("?veo_ref=" of the user's own):
    # after it, the added one would never be read back (ref_of takes the first).
    if next(_ref_values(url), None) is not None:
        raise ValueError(f"the callback URL already has a {REF_PARAMETER} parameter: {url!r}")
    base, hash_, fragment = url.partition("#")
    # A separator always, even after a query ending in "?" or "&": "cb?"
    # and "cb" must not give the same URL, or without_ref could not tell
    # which was asked for (a rerun would not know the request it sent).
    separator = "&" if "?" in base else "?"
    return f"{base}{separator}{REF_PARAMETER}={ref}{hash_}{fragment}"


def ref_of(url: str) -> str | None:
    """The intent reference in a callback URL's query, or None when it has none
    (or an invalid one)."""
    value = next(_ref_values(url), None)
    if value is None:
        return None
    try:
        return check_ref(value)
    except ValueError:
        return None


def _ref_values(url: str) -> Iterator[str]:
    """The values of *url*'s ``veo_ref`` query parameters, in order (blank ones too)."""
    query = urlsplit(url).query
    pairs = parse_qsl(query, keep_blank_values=True)
    return (value for name, value in pairs if name == REF_PARAMETER)


def without_ref(url: str) -> str:
    """*url* as it was before :func:`with_ref` added its ``veo_ref`` (unchanged
    when it has none)."""
    ref = ref_of(url)
    if ref is None:
        return url
    base, hash_, fragment = url.partition("#")
    token = f"{REF_PARAMETER}={ref}"
    for joined in (f"?{token}", f"&{token}", token):
        if base.endswith(joined):
            base = base[: -len(joined)]
            break
    return f"{base}{hash_}{fragment}"
