"""When this node's certificates expire, read from its pki/ without the cryptography package.

`node_certificates` + `expiry_problems` are what `etcdward status` warns about and /metrics
exports (etcdward_certificate_*): renewal is failing when a leaf is still not renewed
RENEWAL_OVERDUE of its life after its latest renewal point, and any certificate expiring
within EXPIRES_SOON is named (a CA, or a leaf renewal cannot extend) - except a short-lived
leaf, whose whole last third lies within it by design.

Only the validity of a certificate is read: a few lines of DER (certfiles.py) instead of
importing cryptography, which costs `etcdward status` more than all its reads.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from .certfiles import CertDates, node_leaves, read_dates
from .frozen import frozen
from .paths import DataDir

TYPE_CHECKING = False  # typing costs the CLI's fast path (cli/fastpath.py) more than it prints
if TYPE_CHECKING:
    from typing import Any

RENEWAL_OVERDUE = 0.1  # of a leaf's life past its latest renewal point: renewing is failing
EXPIRES_SOON = dt.timedelta(days=7)


@frozen
class CertExpiry:
    """One certificate of this node, as far as its expiry goes."""
    name: str  # a leaf's name (certfiles.Leaf.name), or "ca" / "etcd-ca"
    path: Path
    is_ca: bool
    not_before: dt.datetime | None = None  # None: unreadable (error says why)
    not_after: dt.datetime | None = None
    renewal_due: dt.datetime | None = None  # a leaf renewal can extend: renewed by then at the latest
    error: str = ""

    def where(self, root: Path) -> str:
        return str(self.path.relative_to(root)) if self.path.is_relative_to(root) else str(self.path)

    def as_dict(self, root: Path, now: dt.datetime) -> dict[str, Any]:
        def when(t: dt.datetime | None) -> str | None:
            return None if t is None else t.strftime("%Y-%m-%dT%H:%M:%SZ")

        return {"cert": self.name, "path": self.where(root), "isCA": self.is_ca, "notAfter": when(self.not_after),
                "renewalDue": when(self.renewal_due), "error": self.error or None,
                "remainingSeconds": None if self.not_after is None else int((self.not_after - now).total_seconds())}


def node_certificates(data: DataDir) -> list[CertExpiry]:
    """This node's CAs and leaf certificates, read from pki/ (no etcd)."""
    cas = {data.ca_crt: "ca", data.etcd_cert("ca")[0]: "etcd-ca"}
    loaded: dict[Path, CertDates | str] = {}

    def load(path: Path) -> CertDates | str:
        if path not in loaded:
            try:
                loaded[path] = read_dates(path)
            except OSError as e:
                loaded[path] = f"cannot read it: {e.strerror}"
            except ValueError:
                loaded[path] = "not a readable PEM certificate"
        return loaded[path]

    out = []
    for path, name in cas.items():
        c = load(path)
        out.append(CertExpiry(name, path, True, error=c) if isinstance(c, str) else
                   CertExpiry(name, path, True, c.not_before, c.not_after))
    for leaf in node_leaves(data):
        c, ca = load(leaf.crt), load(leaf.ca_crt)
        if isinstance(c, str):
            out.append(CertExpiry(leaf.name, leaf.crt, False, error=c))
            continue
        extendable = not isinstance(ca, str) and c.not_after < ca.not_after
        out.append(CertExpiry(leaf.name, leaf.crt, False, c.not_before, c.not_after,
                              c.renewal_due if extendable else None))
    return out


def expiry_problems(certs: list[CertExpiry], now: dt.datetime, root: Path) -> list[str]:
    """What is wrong with this node's certificates, one sentence each ([] when nothing). Pure."""
    out = []
    for c in certs:
        where = c.where(root)
        if c.not_after is None or c.not_before is None:
            out.append(f"certificate {where}: {c.error}")
            continue
        left, expiry = c.not_after - now, f"{c.not_after:%Y-%m-%d %H:%M:%S}Z"
        due = None if c.renewal_due is None else f"{c.renewal_due:%Y-%m-%d %H:%M:%S}Z"
        renew_hint = "the controller's log says why; `etcdward certs renew`"
        if left <= dt.timedelta(0):
            out.append(f"certificate {where} expired at {expiry}")
        elif c.renewal_due is not None and now > c.renewal_due + (c.not_after - c.not_before) * RENEWAL_OVERDUE:
            out.append(f"certificate renewal is failing: {where} was due for renewal at {due} and expires at "
                       f"{expiry} ({renew_hint})")
        elif left >= EXPIRES_SOON:
            continue
        elif c.is_ca:
            out.append(f"CA certificate {where} expires within {EXPIRES_SOON.days} days, at {expiry}: etcdward "
                       "never renews a CA; rotate it by hand (README, Certificates)")
        elif c.renewal_due is None:
            out.append(f"certificate {where} expires within {EXPIRES_SOON.days} days, at {expiry}, with its CA: "
                       "renewing cannot extend it; rotate the CA (README, Certificates)")
        elif c.not_after - c.renewal_due >= EXPIRES_SOON:  # else: short-lived, renewed in its last days by design
            out.append(f"certificate {where} expires within {EXPIRES_SOON.days} days, at {expiry}, and was not "
                       f"renewed by {due} ({renew_hint})")
    return out
