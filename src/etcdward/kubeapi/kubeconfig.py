"""A kubeconfig for the kube API of a controller: the cluster CA, the API URL, and a client
certificate (CN = user) with its key, embedded, so that no key file is written anywhere.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

from ..pki import KeyPair, new_leaf

CLUSTER = "etcdward"


def _b64(pem: bytes) -> str:
    return base64.b64encode(pem).decode()


def build(ca: KeyPair, user: str, lifetime: dt.timedelta, server: str) -> dict[str, Any]:
    client = new_leaf(ca, user, [], server=False, client=True, lifetime=lifetime)
    context = f"{user}@{CLUSTER}"
    return {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": CLUSTER, "cluster": {"server": server,
                                                   "certificate-authority-data": _b64(ca.cert_pem)}}],
        "users": [{"name": user, "user": {"client-certificate-data": _b64(client.cert_pem),
                                          "client-key-data": _b64(client.key_pem)}}],
        "contexts": [{"name": context, "context": {"cluster": CLUSTER, "user": user}}],
        "current-context": context,
    }
