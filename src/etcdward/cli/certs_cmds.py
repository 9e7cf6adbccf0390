"""`etcdward certs ...`: check-expiration and renew (kubeadm's `certs` commands, for etcdward's pki/).

check-expiration exits 0 even when a certificate has expired, like kubeadm: it reports; scripts
read `-o json` (`remainingSeconds`, `expired`). It needs no running controller.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from cryptography import x509

from .. import pki
from ..paths import DataDir
from .status_output import remaining_text
from .common import CLIError, Seconds, data_dir_option, node_config, print_table, with_store

if TYPE_CHECKING:
    from ..store import Store


@click.group("certs")
def certs_group() -> None:
    """Check and renew this node's certificates (pki/ in the data dir)."""


def _when(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def describe(path: Path, root: Path, now: dt.datetime) -> dict[str, Any]:
    """What check-expiration says about one certificate file."""
    rel = str(path.relative_to(root))
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except OSError as e:
        return {"path": rel, "error": f"cannot read it: {e.strerror}"}
    except ValueError:  # cryptography's message is a paragraph with a URL
        return {"path": rel, "error": "not a readable PEM certificate"}
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    remaining = (cert.not_valid_after_utc - now).total_seconds()
    return {
        "path": rel, "subject": cert.subject.rfc4514_string(), "sans": sorted(pki.sans_of(cert)),
        "issuer": cert.issuer.rfc4514_string(), "serial": format(cert.serial_number, "x"), "isCA": is_ca,
        "notBefore": _when(cert.not_valid_before_utc), "notAfter": _when(cert.not_valid_after_utc),
        "remainingSeconds": int(remaining), "expired": remaining <= 0,
        # when a running controller renews it (CAs are never renewed)
        "renewAt": None if is_ca else _when(pki.controller_renews_at(cert)),
    }


def expiration_report(data: DataDir, now: dt.datetime | None = None) -> list[dict[str, Any]]:
    if not data.pki.is_dir():
        raise CLIError(f"no {data.pki}: is {data.root} an etcdward data dir? (--data-dir)")
    t = now or dt.datetime.now(dt.timezone.utc)
    return [describe(p, data.root, t) for p in sorted(data.pki.rglob("*.crt"))]


@certs_group.command("check-expiration")
@data_dir_option
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="output format")
def check_expiration(data_dir: Path, output: str) -> None:
    """Show every certificate under pki/ (CAs and this node's leaves) and when it expires."""
    report = expiration_report(DataDir.at(data_dir))
    if output == "json":
        sys.stdout.write(json.dumps({"certificates": report}, indent=2) + "\n")
        return
    rows = [[c["path"], c.get("subject", c.get("error")), ",".join(c.get("sans", [])) or "-", c.get("issuer", ""),
             c.get("notAfter", ""), remaining_text(c["remainingSeconds"]) if "remainingSeconds" in c else ""]
            for c in report]
    print_table(["PATH", "SUBJECT", "SANS", "ISSUER", "NOT AFTER", "REMAINING"], rows)


@certs_group.command("renew")
@click.option("--all", "everywhere", is_flag=True,
              help="renew on every controller of the cluster (through etcd), not only on this node")
@click.option("--timeout", type=Seconds(minimum=1.0), default=60.0, show_default=True,
              help="with --all: seconds to wait for every controller's answer")
@data_dir_option
def renew(everywhere: bool, timeout: float, data_dir: Path) -> None:
    """Renew this node's leaf certificates now (same keys; never a CA). A running controller
    serves them within seconds, etcd on its next connections; nothing is restarted."""
    ctx = click.get_current_context()
    if not everywhere and ctx.get_parameter_source("timeout") is not click.core.ParameterSource.DEFAULT:
        raise click.UsageError("--timeout applies only with --all (renewing this node's files waits for nothing)")
    data = DataDir.at(data_dir)
    cfg = node_config(data)
    if everywhere:
        _renew_everywhere(data, timeout)
        return
    try:
        renewed = pki.renew_leaves(data, cfg.spec.pki.cert_lifetime_td, force=True)
    except pki.PKIError as e:
        raise CLIError(f"cannot renew: {e}") from None
    for leaf in pki.node_leaves(data):
        if leaf.name in renewed:
            cert = renewed[leaf.name]
            click.echo(f"renewed {leaf.crt.relative_to(data.root)}: serial {cert.serial_number:x}, "
                       f"valid until {_when(cert.not_valid_after_utc)}")
        else:
            click.echo(f"not renewed {leaf.crt.relative_to(data.root)}: it already ends with its CA")


def _renew_everywhere(data: DataDir, timeout: float) -> None:
    from ..store import errors as E

    try:
        results = with_store(data, lambda store: request_renewal(store, timeout))
    except E.StoreError as e:
        raise CLIError(f"cannot reach this node's etcd ({e}): `certs renew --all` asks every controller "
                       "through etcd; without --all it renews this node's files") from None
    print_table(["NODE", "MEMBER ID", "RESULT"], [[r["node"], r["memberID"], r["result"]] for r in results])
    failed = [r["node"] for r in results if not r["ok"]]
    if failed:
        raise CLIError(f"not renewed on: {', '.join(failed)}")


async def request_renewal(store: Store, timeout: float, poll: float = 0.5) -> list[dict[str, Any]]:
    """Ask every controller to renew (CERTS_RENEW_REQUEST) and collect the answers of those that
    run (ALIVE) until all answered or timeout; one result per etcd member."""
    import asyncio

    from ..certrenewal import parse_answer
    from ..keys import ALIVE, CERTS_RENEW_REQUEST, CERTS_RENEWED, member_id_of

    request = uuid.uuid4().hex
    await store.put(CERTS_RENEW_REQUEST, json.dumps({"id": request, "at": time.time(), "by": socket.gethostname()}))
    members = {m.id: m.name or "(unstarted)" for m in await store.members()}
    end = time.monotonic() + timeout
    answers: dict[int, dict[str, Any]] = {}
    while True:
        alive = {member_id_of(kv.key, ALIVE) for kv in (await store.get_prefix(ALIVE))[0]}
        for kv in (await store.get_prefix(CERTS_RENEWED))[0]:
            answer = parse_answer(kv.value)
            mid = member_id_of(kv.key, CERTS_RENEWED)
            if answer and answer["request"] == request and mid is not None:
                answers[mid] = answer
        if all(mid in answers for mid in members if mid in alive) or time.monotonic() >= end:
            break
        await asyncio.sleep(poll)
    return [_result(mid, name, answers.get(mid), mid in alive) for mid, name in sorted(members.items())]


def _result(member_id: int, name: str, answer: dict[str, Any] | None, alive: bool) -> dict[str, Any]:
    row = {"node": name, "memberID": format(member_id, "x"), "ok": False}
    if answer is None:
        why = "no answer in time" if alive else "no controller running: it renews due certificates when it starts"
        return {**row, "result": why}
    if answer.get("error"):
        return {**row, "result": f"failed: {answer['error']}"}
    return {**row, "ok": True, "result": "renewed " + (", ".join(answer.get("renewed") or []) or "nothing")}
