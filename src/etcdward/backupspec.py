"""`spec.backup`: scheduled backups inside the controller (taken by the reconciler leader).

    interval: 0                      "0" or 0 = off; else a Go-style duration ("1h", "30m"), at least 1 s
    dir: ""                          absolute path; empty = <data-dir>/backups (resolved at run time)
    keep: 24                         archives kept in dir (the newest that verifies is never deleted)
    beforeMembershipChange: false    also one before each learner add and member removal (≤ 1 per 30 s)

The interval's minimum is 1 s (the rule of every duration key): short intervals are for tests;
a real cluster wants hours. Kept out of config.py so that it stays small.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .durations import parse_duration

MIN_INTERVAL = 1.0


class BackupSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, strict=True)

    interval: str = "0"
    dir: str = ""
    keep: int = Field(24, ge=1, le=100_000)
    before_membership_change: bool = Field(False, alias="beforeMembershipChange")

    @field_validator("interval", mode="before")
    @classmethod
    def _interval(cls, v: Any) -> Any:
        if v == 0 and type(v) is int:  # YAML `interval: 0`; a bool is not an int here
            return "0"
        if not isinstance(v, str):
            raise ValueError(f"{v!r} is not a duration: write one with a unit (\"1h\", \"30m\"), or 0 for off")
        parse_duration(v, minimum=MIN_INTERVAL, zero_means="off")
        return v.strip()

    @field_validator("dir")
    @classmethod
    def _dir(cls, v: str) -> str:
        if any(ord(c) < 32 or ord(c) == 127 for c in v):
            raise ValueError("contains a newline or another control character")
        if v and not v.startswith("/"):
            raise ValueError(f"{v!r} is not an absolute path (empty means <data-dir>/backups)")
        return v

    @property
    def interval_seconds(self) -> float:
        """0.0 when scheduled backups are off."""
        return parse_duration(self.interval, minimum=MIN_INTERVAL, zero_means="off").total_seconds()
