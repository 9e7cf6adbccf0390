"""How the controller's log lines look: one line per event, as text (the default) or as one JSON
object (`--log-format json`), so that journald, `kubectl logs`-style collectors and grep all see
exactly one record per event.

JSON lines carry `time` (RFC 3339, UTC, milliseconds), `level`, `logger`, `message`, then every
non-standard LogRecord attribute passed with `extra=` (membership decisions pass `member`,
`memberID`, `action`, `outcome`). An exception becomes an `error` field ("Type: message"), never a
multi-line traceback; with --verbose the traceback is added as one escaped `traceback` string.

etcd's own output never reaches these streams: the supervisor writes it to
<data-dir>/logs/etcd.log. Where the controller quotes etcd (the tail of that log when etcd keeps
crashing) the quote is part of one message, escaped like any other.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
REQUIRED_KEYS = ("time", "level", "logger", "message")
# Third-party loggers that chat at INFO about every connection.
NOISY_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "httpx", "httpcore")

# Every attribute a plain LogRecord has, so that what remains on a record came from `extra=`.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
# Characters str.splitlines() (and some log viewers) treat as line breaks that json.dumps leaves
# raw with ensure_ascii=False; escaped so a line stays one line for every reader.
_RAW_BREAKS = str.maketrans({"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"})

_json_mode = False  # set by configure(); read by fatal() for the last words of the process


def rfc3339_utc(created: float) -> str:
    """2024-05-01T12:00:00.123Z"""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created * 1000) % 1000:03d}Z"


def describe_exception(exc_info: Any) -> str:
    """One line naming an exception: "ValueError: bad thing"."""
    _, exc, _ = exc_info
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def record_extras(record: logging.LogRecord) -> dict[str, Any]:
    """What the caller passed with `extra=`, in the order it was given."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def __init__(self, tracebacks: bool = False) -> None:
        super().__init__()
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"time": rfc3339_utc(record.created), "level": record.levelname.lower(),
                               "logger": record.name, "message": record.getMessage()}
        for key, value in record_extras(record).items():
            # an extra never replaces a required field; it is kept under another name instead
            out[f"extra_{key}" if key in out or key in ("error", "traceback") else key] = value
        if record.exc_info and record.exc_info[1] is not None:
            out["error"] = describe_exception(record.exc_info)
            if self.tracebacks:
                out["traceback"] = self.formatException(record.exc_info)
        if record.stack_info and self.tracebacks:
            out["stack"] = record.stack_info
        return json.dumps(out, ensure_ascii=False, default=str).translate(_RAW_BREAKS)


class TextFormatter(logging.Formatter):
    """Today's human format, kept to one line: line breaks inside a message are shown as \\n, and
    an exception is named at the end of the line (its traceback follows only with --verbose)."""

    def __init__(self, tracebacks: bool = False) -> None:
        super().__init__(TEXT_FORMAT)
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        record.asctime = self.formatTime(record, self.datefmt)
        line = self.formatMessage(record)
        if record.exc_info and record.exc_info[1] is not None:
            line += f" ({describe_exception(record.exc_info)})"
        line = "\\n".join(line.splitlines()) if line else line
        if self.tracebacks and record.exc_info:
            line += "\n" + self.formatException(record.exc_info)  # asked for with --verbose
        if self.tracebacks and record.stack_info:
            line += "\n" + record.stack_info
        return line


def configure(fmt: str = "text", verbose: bool = False) -> None:
    """Route every log record (ours, the libraries', Python warnings) through one stderr
    handler with the chosen formatter."""
    global _json_mode
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    _json_mode = fmt == "json"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(verbose) if _json_mode else TextFormatter(verbose))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.captureWarnings(True)  # a warning is otherwise two raw lines on stderr


def fatal(line: str) -> None:
    """The last line a failing process prints: as today in text mode ("etcdward ...: why"),
    one JSON object at level error in JSON mode, so a JSON log stays parseable to its end."""
    if _json_mode:
        logging.getLogger("etcdward").error(line)
        return
    print(line, file=sys.stderr, flush=True)
