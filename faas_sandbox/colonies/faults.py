"""What a failed Colonies request means to whoever asked: the one reading, as a failure kind
and a message, for every caller that answers someone (the HTTP front end, ``calls.run_call``).

- :class:`ColoniesUnreachable` -> ``unreachable``: the request never reached the server (safe
  to retry).
- :class:`ColoniesRefused` -> ``refused``: the server answered with an error (key, colony,
  state, ...); never retried blindly.
- :class:`ReplyUnreadable` -> ``refused`` too: the server answered, maybe after acting (a
  submitted call may exist), with a reply over our limits or malformed; so, like a refusal,
  not safe to retry blindly.

The front end answers both kinds 502 (``problems.py``), except where the request named
something the server may not know (a process id): there a refusal means "no such process".
"""

from __future__ import annotations

from ..errors import ColoniesError, ColoniesUnreachable, ReplyUnreadable
from ..kinds import ErrorKind


def fault(exc: ColoniesError, doing: str) -> tuple[ErrorKind, str]:
    """(kind, message) for ``exc``, raised while ``doing`` (e.g. "the call")."""
    if isinstance(exc, ColoniesUnreachable):
        return ErrorKind.UNREACHABLE, f"Colonies server unreachable: {exc}"
    if isinstance(exc, ReplyUnreadable):
        return ErrorKind.REFUSED, f"Colonies server's reply to {doing} cannot be read: {exc}"
    return ErrorKind.REFUSED, f"Colonies server refused {doing}: {exc}"
