"""Retention of a backup directory: keep the newest `keep` archives, oldest deleted first, and
never the newest archive that verifies.

Only files named etcdward_backup_<UTC timestamp>.tar.gz are considered (their names sort by
time); anything else in the directory - an operator's own files, temp files of a backup in
progress - is never touched. An archive is read back (verified) only when needed: walking from
the newest, until one verifies; `known_good` names one just written and verified.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .archive import ArchiveError, verify_file

log = logging.getLogger(__name__)

PATTERN = "etcdward_backup_*.tar.gz"


def archives(directory: Path) -> list[Path]:
    """The archives in directory, oldest first (by name: the UTC timestamp in it)."""
    return sorted((p for p in directory.glob(PATTERN) if p.is_file() and not p.is_symlink()), key=lambda p: p.name)


def _verifies(path: Path) -> bool:
    try:
        verify_file(path)
        return True
    except ArchiveError as e:
        log.warning("backup retention: %s does not verify (%s)", path.name, e)
        return False


def to_delete(names: list[str], keep: int, good: dict[str, bool]) -> list[str]:
    """Pure: which of `names` (oldest first) to delete, oldest first. `good` says which verify;
    a name missing from it counts as not known to verify (see prune: it asks lazily)."""
    kept = set(names[-keep:])
    newest_good = next((n for n in reversed(names) if good.get(n)), None)
    if newest_good is not None:
        kept.add(newest_good)
    return [n for n in names if n not in kept]


def prune(directory: Path, keep: int, known_good: frozenset[str] = frozenset()) -> list[Path]:
    """Delete what retention says (blocking: run it in a thread). Returns the deleted paths."""
    found = archives(directory)
    names = [p.name for p in found]
    good: dict[str, bool] = {}
    for p in reversed(found):  # newest first, until one verifies
        good[p.name] = p.name in known_good or _verifies(p)
        if good[p.name]:
            break
    deleted = []
    for name in to_delete(names, keep, good):
        path = directory / name
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as e:
            log.warning("backup retention: cannot delete %s: %s", path, e.strerror)
            continue
        deleted.append(path)
    if deleted:
        log.info("backup retention: deleted %s (keep %d)", ", ".join(p.name for p in deleted), keep)
    return deleted
