"""`spec.maintenance`: etcd's own compaction, and automatic defragmentation by the reconciler leader.

    autoCompaction:
      enabled: true                etcd compacts its history itself (--auto-compaction-mode=periodic)
      retention: 5m                history kept (--auto-compaction-retention), as Kubernetes runs etcd
    defrag:
      auto: true                   the reconciler leader defragments members that need it
      fragmentedRatio: 0.5         a member needs it when (dbSize - dbSizeInUse) / dbSize >= this
      minFragmentedBytes: 104857600  ... and dbSize - dbSizeInUse >= this (100 MiB)
      window: ""                   "HH:MM-HH:MM" (UTC; may wrap midnight): automatic defrags start only
                                   inside it; empty = any time. NOSPACE recovery ignores it.

Kept out of config.py so that it stays small; pure (the window check is used by the reconciler).
"""

from __future__ import annotations

import datetime as dt
import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .durations import parse_duration

MIN_RETENTION = 60.0  # compacting more often than every minute makes watchers relist for nothing
_WINDOW_RE = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-3]):([0-5][0-9])", re.ASCII)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, strict=True)


class AutoCompactionSpec(_Strict):
    enabled: bool = True
    retention: str = "5m"

    @field_validator("retention")
    @classmethod
    def _retention(cls, v: str) -> str:
        seconds = parse_duration(v, minimum=MIN_RETENTION).total_seconds()
        if seconds != int(seconds):
            raise ValueError(f"{v!r}: etcd keeps history in whole seconds")
        return v.strip()

    @property
    def etcd_retention(self) -> str:
        """The retention as a Go duration (Go has no "d" unit): "5m", "36h", "90s"."""
        seconds = int(parse_duration(self.retention, minimum=MIN_RETENTION).total_seconds())
        for unit, size in (("h", 3600), ("m", 60)):
            if seconds % size == 0:
                return f"{seconds // size}{unit}"
        return f"{seconds}s"


class DefragSpec(_Strict):
    auto: bool = True
    fragmented_ratio: float = Field(0.5, alias="fragmentedRatio", gt=0, le=1, allow_inf_nan=False)
    min_fragmented_bytes: int = Field(100 * 2**20, alias="minFragmentedBytes", ge=0, le=2**40)
    window: str = ""

    @field_validator("window")
    @classmethod
    def _window(cls, v: str) -> str:
        v = v.strip()
        if not v:
            return v
        m = _WINDOW_RE.fullmatch(v)
        if not m:
            raise ValueError(f"{v[:60]!r} is not a daily UTC window \"HH:MM-HH:MM\" (e.g. \"02:00-04:00\")")
        if m.group(1, 2) == m.group(3, 4):
            raise ValueError(f"{v!r} is an empty window (start equals end); leave it empty for any time")
        return v

    def allows(self, now: dt.datetime) -> bool:
        """Is now (aware, any zone) inside the window? Always, without one."""
        if not self.window:
            return True
        start, end = (int(h) * 60 + int(m) for h, m in (p.split(":") for p in self.window.split("-")))
        t = now.astimezone(dt.timezone.utc)
        minute = t.hour * 60 + t.minute
        return start <= minute < end if start < end else (minute >= start or minute < end)


class MaintenanceSpec(_Strict):
    auto_compaction: AutoCompactionSpec = Field(AutoCompactionSpec(), alias="autoCompaction")
    defrag: DefragSpec = DefragSpec()

    def etcd_args(self) -> dict[str, str]:
        """The etcd flags these settings stand for (none when compaction is left to others)."""
        if not self.auto_compaction.enabled:
            return {}
        return {"auto-compaction-mode": "periodic", "auto-compaction-retention": self.auto_compaction.etcd_retention}
