"""When a 403 on assign is the server's verdict on this executor, and when it is not yet.

Colonies words its membership check's refusals "Access denied, ..." (removed, not approved,
reaped as stale) or "Colony ... does not exist(s)": that is a verdict, and the executor stops.
But v1.9.12 can also say "Access denied, not a member" while its PostgreSQL restarts: its
lookup reads the result rows without checking the rows' error, so a query cut off by the
restart reads as "no such member". A verdict is therefore final only once the server has kept
saying it for :data:`CONFIRM_S` with no successful assign in between; a database blip passes
long before that, a removed executor stops that much later.
"""

from __future__ import annotations

from collections.abc import Callable

CONFIRM_S = 15.0  # a denial must last this long (no assign succeeding) before it is final


def maybe_database_restart(message: str) -> bool:
    """Whether a 403's text is the one v1.9.12 also gives while its PostgreSQL restarts."""
    return "not a member" in message


def is_verdict(message: str) -> bool:
    """Whether a 403's text is the membership check's refusal (not a database error text)."""
    return "Access denied" in message or "does not exist" in message


class Denials:
    """Since when the server has kept denying something: this executor's assigns (across its
    worker threads), or one report's close or fail."""

    def __init__(self, clock: Callable[[], float], confirm_s: float = CONFIRM_S) -> None:
        self._clock = clock
        self.confirm_s = confirm_s
        self._since: float | None = None

    def denied(self) -> tuple[bool, bool]:
        """Record a denial: ``(first, final)``: the first of a run of denials (say so once),
        and whether the run has lasted ``confirm_s`` (stop)."""
        now = self._clock()
        first = self._since is None
        if self._since is None:
            self._since = now
        return first, now - self._since >= self.confirm_s

    def cleared(self) -> None:
        """An assign went through: any denial before it was not a verdict."""
        self._since = None
