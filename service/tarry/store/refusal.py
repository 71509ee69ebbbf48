"""Why Redis refused a connection, when waiting will not fix it: a wrong password, a user
without permission, a TLS failure. For log lines; never names the password or the URL."""

from __future__ import annotations

import ssl

from redis.exceptions import (
    AuthenticationError,
    AuthenticationWrongNumberOfArgsError,
    AuthorizationError,
    BusyLoadingError,
    NoPermissionError,
    ResponseError,
)

_MAX = 200


def why_refused(exc: BaseException) -> str | None:
    """A short reason if `exc` (or what caused it) is Redis refusing us; None when Redis is
    simply not there (connection refused or reset, timeouts), which needs no explanation.

        why_refused(err)  # -> "authentication failed (invalid username-password pair ...)"
    """
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, ssl.SSLError):
            return f"TLS failed ({_text(e)})"
        if isinstance(e, AuthenticationError | AuthenticationWrongNumberOfArgsError):
            return f"authentication failed ({_text(e)})"
        if isinstance(e, AuthorizationError | NoPermissionError):
            return f"not permitted ({_text(e)})"
        if isinstance(e, BusyLoadingError):
            return "still loading its data set"
        if isinstance(e, ResponseError):
            return f"error reply ({_text(e)})"
        e = e.__cause__ or e.__context__
    return None


def _text(e: object) -> str:
    """The first line of Redis's message, shortened. Redis's replies to AUTH and HELLO
    never repeat the password sent."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text if len(text) <= _MAX else text[: _MAX - 3] + "..."
