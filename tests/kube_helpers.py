"""Helpers for the kube API tests: the real kubectl (Debian's kubernetes-client or any kubectl on
PATH; ETCDWARD_KUBECTL picks another binary), kubeconfigs from `etcdward kubeconfig`, and
client certificates that must be refused (another CA's, expired)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from etcdward import pki
from tests.cluster import Node

GROUP_PATH = "/apis/etcd.etcdward.io/v1beta1/etcdmembers"


def kubectl_binary() -> str:
    found = os.environ.get("ETCDWARD_KUBECTL") or shutil.which("kubectl")
    if not found:
        pytest.skip("no kubectl (scripts/run.sh test installs Debian's kubernetes-client)")
    return found


def write_kubeconfig(node: Node, path: Path, *args: str) -> Path:
    path.write_text(node.cli("kubeconfig", "--data-dir", str(node.data.root), *args).stdout)
    path.chmod(0o600)
    return path


class Kubectl:
    """`kubectl --kubeconfig F ...` with its own HOME, so no discovery cache is shared."""

    def __init__(self, kubeconfig: Path, home: Path) -> None:
        self.kubeconfig, self.home = kubeconfig, home
        home.mkdir(parents=True, exist_ok=True)
        self.binary = kubectl_binary()

    def argv(self, *args: str) -> list[str]:
        return [self.binary, f"--kubeconfig={self.kubeconfig}", *args]

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "HOME": str(self.home), "KUBECACHEDIR": str(self.home / "cache")}

    def __call__(self, *args: str, check: bool = True, input: str | None = None,
                 timeout: float = 60) -> subprocess.CompletedProcess[str]:
        p = subprocess.run(self.argv(*args), capture_output=True, text=True, env=self.env, input=input,
                           timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({p.returncode}): {p.stderr}")
        return p

    @property
    def minor(self) -> int:
        """The client's minor version (Debian 12's kubernetes-client is 1.20)."""
        out = json.loads(self("version", "--client", "-o", "json").stdout)["clientVersion"]
        return int("".join(ch for ch in out["minor"] if ch.isdigit()))

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(self.argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=self.env, bufsize=1)


def kubeconfig_with(base: Path, out: Path, **user: Any) -> Path:
    """base's kubeconfig with its user's credentials replaced by `user` (cert/key data, token)."""
    kc = yaml.safe_load(base.read_text())
    kc["users"][0]["user"] = user
    out.write_text(yaml.safe_dump(kc))
    return out


def b64(pem: bytes) -> str:
    return base64.b64encode(pem).decode()


def foreign_client() -> pki.KeyPair:
    """A client certificate from a CA the cluster has never seen."""
    return pki.new_leaf(pki.new_ca("some-other-ca"), "admin", [], server=False, client=True)


def expired_client(node: Node) -> pki.KeyPair:
    ca = pki.load_pair(node.data.ca_crt, node.data.ca_key)
    return pki.new_leaf(ca, "admin", [], server=False, client=True, lifetime=-dt.timedelta(minutes=1))


def https(node: Node, cert: pki.KeyPair | None, tmp: Path, **headers: str) -> httpx.Client:
    """httpx to the node's API listener trusting the cluster CA, with an optional client cert."""
    ctx = ssl.create_default_context(cafile=str(node.data.ca_crt))
    if cert is not None:
        crt, key = tmp / "client.crt", tmp / "client.key"
        pki.write_pair(cert, crt, key)
        ctx.load_cert_chain(crt, key)
    return httpx.Client(base_url=f"https://{node.address}:9443", verify=ctx, trust_env=False, headers=headers,
                        timeout=20)
