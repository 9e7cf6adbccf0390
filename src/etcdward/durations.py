"""Durations from users: Go-style strings ("24h", "1h30m", "90s") and plain seconds.

One rule for every duration flag and config key: a value that is zero, negative, not finite or
below the smallest unit it is used at is refused with the reason. Only where a zero is given a
documented meaning (a token's `--expiry 0`: never) is the literal `0` accepted.
"""

from __future__ import annotations

import datetime as dt
import math
import re

_DURATION_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)", re.ASCII)  # ASCII: no "٣h"
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
# Go's limit (int64 nanoseconds, ~292 years); larger values overflow datetime arithmetic.
MAX_DURATION = dt.timedelta(seconds=(2**63 - 1) // 10**9)


def parse_duration(text: str, *, minimum: float = 1.0, zero_means: str | None = None) -> dt.timedelta:
    """A Go-style duration of at least `minimum` seconds. With `zero_means` (e.g. "never"),
    the literal "0" is accepted and returned as timedelta(0)."""
    text = text.strip()
    if zero_means and text == "0":
        return dt.timedelta(0)
    pos, total = 0, 0.0
    for m in _DURATION_RE.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    zero = f", 0 for {zero_means}" if zero_means else ""
    if pos != len(text) or not text:
        raise ValueError(f"{text!r} is not a duration (examples: 24h, 30m, 1h30m{zero})")
    if total > MAX_DURATION.total_seconds():
        raise ValueError(f"{text!r} exceeds the maximum duration ({MAX_DURATION.days // 365} years)"
                         + (f"; use 0 for {zero_means}" if zero_means else ""))
    if total < minimum:
        raise ValueError(f"{text!r} is shorter than the minimum of {minimum:g}s"
                         + (f" (only the literal 0 means {zero_means})" if zero_means else ""))
    return dt.timedelta(seconds=total)


def check_seconds(value: float, *, minimum: float, maximum: float = MAX_DURATION.total_seconds()) -> float:
    """A finite number of seconds within [minimum, maximum], else ValueError saying why."""
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"{value} is not a finite number of seconds")
    if value < minimum:
        raise ValueError(f"{value:g} is less than the minimum of {minimum:g}s")
    if value > maximum:
        limit = f"{MAX_DURATION.days // 365} years" if maximum == MAX_DURATION.total_seconds() else f"{maximum:g}s"
        raise ValueError(f"{value:g} exceeds the maximum of {limit}")
    return value

