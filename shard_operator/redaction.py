"""Credentials kept out of every message: the one place that knows how a secret looks in a URL.

Redis URLs carry passwords (``redis://user:secret@host/0``, ``?password=secret``) and an exception's
text quotes the URL it failed on, so any message may hold one. :func:`redact_url` rewrites a whole
message; :mod:`shard_operator.config` uses it for its errors and ``repr``, the command line for every
error it prints, and :mod:`shard_operator.logs` for every log record its handler writes. It sits at the
bottom of the import layers so that all of them can use it.
"""

from __future__ import annotations

import re

__all__ = ["redact_url"]

_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^@/\s]*)@")
_SECRET_PARAM = re.compile(r"(?P<name>[?&;](?:password|passwd|pass|pwd|token|secret)=)[^&;#\s]*", re.IGNORECASE)


def redact_url(text: str) -> str:
    """``text`` with the credentials of every URL in it replaced by ``***``.

    ``redis://user:secret@host/0`` becomes ``redis://user:***@host/0``, ``redis://secret@host`` becomes
    ``redis://***@host`` and ``?password=secret`` becomes ``?password=***``. Works on whole messages
    (an exception's text that quotes a URL), not only on a URL alone.
    """

    def userinfo(match: re.Match[str]) -> str:
        user, colon, _ = match["userinfo"].partition(":")
        return f"{match['scheme']}{user}:***@" if colon else f"{match['scheme']}***@"

    return _SECRET_PARAM.sub(lambda m: f"{m['name']}***", _USERINFO.sub(userinfo, text))
