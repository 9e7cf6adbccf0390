"""What `etcdward status` prints, without click: shared by its click command (status_cmd.py)
and the fast path (fastpath.py), so both print the same bytes and exit the same way."""

from __future__ import annotations

from ..clusterview import human_bytes
from .output import data_text

TYPE_CHECKING = False  # typing costs the CLI's fast path (cli/fastpath.py) more than it prints

if TYPE_CHECKING:
    from typing import Any

    from pathlib import Path

HEALTHY, DEGRADED, UNREACHABLE = 0, 1, 2


def backup_schedule(backup: dict[str, Any], root: Path) -> dict[str, Any]:
    """spec.backup of this node's effective config as status shows it (interval, dir, keep,
    beforeMembershipChange); no dir: <data dir>/backups."""
    return {"interval": backup["interval"], "dir": backup["dir"] or str(root / "backups"), "keep": backup["keep"],
            "beforeMembershipChange": backup["beforeMembershipChange"]}


def status_info(view: dict[str, Any], local: dict[str, Any]) -> dict[str, Any]:
    """clusterview.to_dict's view with what this node's files say (_local_facts of status_cmd.py)."""
    info = {**view, "backup": {**local["backup"], **view["backup"]}}
    return {**info, "pinnedClusterID": local["pinnedClusterID"], "clientURL": local["clientURL"],
            "waiting": local["waiting"]}


def exit_code(info: dict[str, Any]) -> int:
    return DEGRADED if info["reasons"] else HEALTHY


def status_text(info: dict[str, Any], output: str) -> str:
    if output != "table":
        return data_text(info, output)
    return "".join(line + "\n" for line in table_lines(info))


def remaining_text(seconds: float) -> str:
    """'364d 23h', '5h 3m', '1m 20s', '42s'; 'expired' at or below 0."""
    if seconds <= 0:
        return "expired"
    s = int(seconds)
    d, h, m = s // 86400, s % 86400 // 3600, s % 3600 // 60
    return f"{d}d {h}h" if d else f"{h}h {m}m" if h else f"{m}m {s % 60}s" if m else f"{s}s"


def table_lines(info: dict[str, Any]) -> list[str]:
    def size(n: int | None) -> str:
        return "-" if n is None else human_bytes(n)

    def opt(v: Any) -> str:
        return "-" if v is None or v == [] else str(v)

    head = {"status": info["verdict"], "clusterID": info["clusterID"], "etcdVersions": ", ".join(info["etcdVersions"]),
            "etcdLeader": info["etcdLeader"], "reconcilerLeader": info["reconcilerLeader"],
            "member": info["member"], "memberID": info["memberID"], "role": info["role"],
            "healthy": info["healthy"], "pinnedClusterID": info["pinnedClusterID"], "clientURL": info["clientURL"]}
    width = 18
    lines = [f"{k + ':':<{width}}{'' if v is None else v}" for k, v in head.items()]
    columns = ["MEMBER", "ID", "ROLE", "LEADER", "STARTED", "HEALTHY", "TERM", "APPLIED", "DB", "IN USE", "QUOTA",
               "ALARMS", "PROGRESS", "REPORTED"]
    rows = []
    for m in info["members"]:
        lead = ",".join(x for x, on in (("etcd", m["etcdLeader"]), ("reconciler", m["reconcilerLeader"])) if on)
        rows.append([m["name"], m["id"], m["role"], lead or "-", "yes" if m["started"] else "no",
                     "-" if m["healthy"] is None else "yes" if m["healthy"] else "NO", opt(m["raftTerm"]),
                     opt(m["raftAppliedIndex"]), size(m["dbSize"]), size(m["dbSizeInUse"]),
                     "none" if m["dbQuota"] == 0 else size(m["dbQuota"]), ",".join(m["alarms"]) or "-",
                     "-" if m["progress"] is None else f"{m['progress']:.0f}%",
                     "-" if m["lastReportSeconds"] is None else f"{m['lastReportSeconds']:.0f}s ago"])
    widths = [max(len(str(c)), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    lines.append("")
    lines.extend("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in [columns, *rows])
    lines.append("")
    rec = info["records"]
    lines.append(f"{'records:':<{width}}" + (f"in sync ({rec['count']} records)" if rec["inSync"] else "OUT OF SYNC: "
                 + "; ".join(f"{d['record']}: {d['why']}" for d in rec["differ"])))
    versions = ", ".join(f"{k}={v}" for k, v in info["memberVersions"].items())
    lines.append(f"{'memberVersions:':<{width}}{versions}")
    lines.append("backup:")
    lines.extend(f"  {line}" for line in backup_lines(info["backup"]))
    lines.append("maintenance:")
    lines.extend(f"  {line}" for line in maintenance_lines(info["maintenance"]))
    lines.append(f"{'certificates:':<{width}}{certificates_line(info['certificates'])}")
    if info["reasons"]:
        lines.append("degraded:")
        lines.extend(f"  - {r}" for r in info["reasons"])
    return lines


def backup_lines(b: dict[str, Any]) -> list[str]:
    """The backup block of the table: the schedule of this node's config, the cluster's last outcomes."""
    every = "off" if b["interval"] == "0" else f"every {b['interval']}"
    lines = [f"scheduled:    {every} into {b['dir']} (keep {b['keep']}; before membership changes: "
             f"{'yes' if b['beforeMembershipChange'] else 'no'})"]
    ok, bad = b.get("lastSuccess"), b.get("lastFailure")
    lines.append("lastSuccess:  " + (f"{ok.get('time')} on {ok.get('node')} ({ok.get('trigger')}, "
                                     f"{ok.get('durationSeconds')}s): {ok.get('path')}" if ok else "none"))
    lines.append("lastFailure:  " + (f"{bad.get('time')} on {bad.get('node')} ({bad.get('trigger')}): "
                                     f"{bad.get('reason')}" if bad else "none"))
    return lines


def maintenance_lines(m: dict[str, Any]) -> list[str]:
    last, running = m.get("last"), m.get("running")
    if last:
        names = ", ".join(str(x.get("name")) for x in last.get("members") or [] if isinstance(x, dict)) or "-"
        done = f"{last.get('what')} at {last.get('when')} by {last.get('by')} ({names}): {last.get('message')}"
    else:
        done = "none recorded"
    now = "none" if not running else (f"defrag by {running['holder']}" + (
        "" if running.get("forSeconds") is None else f", for {running['forSeconds']:.0f}s"))
    return [f"last:         {done}", f"running:      {now}"]


def certificates_line(c: dict[str, Any] | None) -> str:
    """This node's earliest leaf and CA expiries."""
    if not c:
        return "-"
    def left(seconds: int) -> str:
        text = remaining_text(seconds)
        return text if text == "expired" else f"{text} left"

    parts = [f"{what} {e['path']} until {e['notAfter']} ({left(e['remainingSeconds'])})"
             for what, e in (("earliest leaf", c["earliestLeaf"]), ("earliest CA", c["earliestCA"])) if e]
    return "; ".join(parts) or "unreadable"
