"""Asking another controller to defragment its own member, over its API (HTTPS).

etcd client ports listen on 127.0.0.1 only, so a member's etcd can be defragmented only from
its own host: its controller serves POST /v1/maintenance/defrag (api.py). Callers authenticate
with a client certificate signed by the cluster CA, the credential the kube API already takes
(tlsauth.py): every controller holds the cluster CA (pki/ca.key), and so does root on it, so
the CLI and the reconciler leader mint a short-lived certificate in memory. Join tokens are no
credential here: they expire, are meant for joiners, and a joined node need not keep one.
"""

from __future__ import annotations

import datetime as dt
import os
import ssl
import tempfile
from pathlib import Path
from typing import Any

from ..errors import Permanent, Temporary
from ..paths import DataDir

# httpx and pki (cryptography) are imported only for a remote defrag: every controller imports
# this module (api.py, the reconciler), and the two would cost an idle one ~13 MiB of RSS.

DEFRAG_PATH = "/v1/maintenance/defrag"
CERT_LIFETIME = dt.timedelta(hours=1)
DEFRAG_TIMEOUT = 600.0  # etcd-druid saw 17-21 s per GB; a controller answers once its etcd is done


class RemoteDefragFailed(Permanent):
    """A controller could not defragment its member; the message says which and why."""


class ControllerUnreachable(Temporary):
    """A controller's API did not answer."""


def client_ssl_context(data: DataDir, user: str) -> ssl.SSLContext:
    """Trust the cluster CA; present a fresh client certificate (CN user) signed by it. The key
    exists on disk only for the instant ssl needs a file, in a private temporary directory."""
    from ..pki import PKIError, load_pair, new_leaf

    try:
        ca = load_pair(data.ca_crt, data.ca_key)
    except PKIError as e:
        raise RemoteDefragFailed(f"cannot sign a client certificate for the controllers' API: {e}") from None
    leaf = new_leaf(ca, user, [], server=False, client=True, lifetime=CERT_LIFETIME)
    ctx = ssl.create_default_context(cadata=ca.cert_pem.decode())
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    with tempfile.TemporaryDirectory(prefix="etcdward-") as tmp:
        crt, key = Path(tmp) / "client.crt", Path(tmp) / "client.key"
        crt.write_bytes(leaf.cert_pem)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(leaf.key_pem)
        ctx.load_cert_chain(crt, key)
    return ctx


class ControllerClient:
    """Calls other controllers' maintenance endpoint as `user`."""

    def __init__(self, data: DataDir, user: str) -> None:
        self.ctx = client_ssl_context(data, user)

    async def defrag(self, api_url: str, member_id: int, who: str, trigger: str = "manual") -> dict[str, Any]:
        """Ask the controller at api_url to defragment its member (which must be member_id);
        its answer (maintenance.defrag.DefragReport.as_dict). `trigger` (metrics.DEFRAG_TRIGGERS)
        tells it who counts the defrag: it does for "manual", the reconciler leader for the others."""
        import httpx

        url = api_url.rstrip("/") + DEFRAG_PATH
        try:
            async with httpx.AsyncClient(verify=self.ctx, timeout=DEFRAG_TIMEOUT) as client:
                r = await client.post(url, json={"memberID": format(member_id, "x"), "trigger": trigger})
        except httpx.HTTPError as e:
            raise ControllerUnreachable(f"defrag of {who}: its controller at {url} did not answer "
                                        f"({type(e).__name__}: {e})") from None
        if r.status_code != 200:
            raise RemoteDefragFailed(f"defrag of {who}: its controller at {url} answered {r.status_code}: "
                                     f"{r.text.strip()[:300]}")
        try:
            body = r.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise RemoteDefragFailed(f"defrag of {who}: its controller at {url} answered no JSON object")
        return body
