"""The failure vocabulary every layer speaks.

    EtcdwardError   the root of every error etcdward raises on purpose
      Temporary     try again later (optionally after `after` seconds): etcd unavailable, a
                    membership change etcd refuses for now, a join queued behind another
      Permanent     explain and stop: bad input, a conflict, a foreign cluster, a broken file

The CLI and the controller each turn these into one line and an exit code at one boundary;
anything else that escapes is a bug and is reported as such, still in one line.
"""

from __future__ import annotations


class EtcdwardError(Exception):
    """Root of etcdward's own errors; the message is meant for an operator."""


class Temporary(EtcdwardError):
    """Retrying later may succeed; `after` is a hint in seconds (e.g. a server's Retry-After)."""

    def __init__(self, message: str = "", after: float | None = None) -> None:
        super().__init__(message)
        self.after = after


class Permanent(EtcdwardError):
    """Retrying will not help: the message says what to do."""
