"""Join tokens: k0s-compatible encoding, stored in etcd as a hash only.

Token string = base64(gzip(kubeconfig YAML)) with one cluster (`server`, CA), one user
`controller-bootstrap` whose token is `<id>.<secret>`. etcd holds `/etcdward/tokens/<id>` =
{role, secretHash, created, expires}; the secret itself is never stored.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import gzip
import hashlib
import hmac
import json
import logging
import re
import secrets
import string
import zlib
from dataclasses import dataclass

from typing import TYPE_CHECKING

import yaml

from .errors import Permanent
from .keys import TOKENS

if TYPE_CHECKING:  # the store pulls in asyncio's TLS streams; a joiner decodes its token long before it needs it
    from .store import Store

log = logging.getLogger(__name__)

TOKEN_RE = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")
USER = "controller-bootstrap"
ROLES = ("controller",)
_ALPHABET = string.ascii_lowercase + string.digits


class TokenError(Permanent):
    """A token string that cannot be used; the message says why."""


@dataclass(frozen=True)
class JoinToken:
    server: str  # https://host:port of a join API
    ca_pem: bytes  # cluster CA certificate
    bearer: str  # "<id>.<secret>"

    @property
    def id(self) -> str:
        return self.bearer.split(".", 1)[0]


@dataclass(frozen=True)
class TokenRecord:
    id: str
    role: str
    secret_hash: str
    created: str
    expires: str | None

    def expired(self, now: dt.datetime | None = None) -> bool:
        if not self.expires:
            return False
        return (now or _now()) >= dt.datetime.fromisoformat(self.expires)

    def to_json(self) -> str:
        return json.dumps({"id": self.id, "role": self.role, "secretHash": self.secret_hash,
                           "created": self.created, "expires": self.expires})


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_bearer() -> tuple[str, str]:
    return ("".join(secrets.choice(_ALPHABET) for _ in range(6)),
            "".join(secrets.choice(_ALPHABET) for _ in range(16)))


def encode(token: JoinToken) -> str:
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "k0s", "cluster": {
            "server": token.server,
            "certificate-authority-data": base64.b64encode(token.ca_pem).decode()}}],
        "contexts": [{"name": "k0s", "context": {"cluster": "k0s", "user": USER}}],
        "current-context": "k0s",
        "preferences": {},
        "users": [{"name": USER, "user": {"token": token.bearer}}],
    }
    raw = yaml.safe_dump(kubeconfig, sort_keys=False).encode()
    return base64.b64encode(gzip.compress(raw, compresslevel=9)).decode()


def decode(text: str) -> JoinToken:
    """Parse a token string; raises TokenError (and nothing else) for anything unusable."""
    if not isinstance(text, str):
        raise TokenError("join token is not valid: expected a string")
    try:
        raw = gzip.decompress(base64.b64decode(text.strip(), validate=True))
        kc = yaml.safe_load(raw)
    except (binascii.Error, OSError, EOFError, zlib.error, yaml.YAMLError, ValueError, RecursionError):
        raise TokenError("join token is not valid: expected base64(gzip(kubeconfig))") from None
    try:
        ctx_name = kc.get("current-context") or kc["contexts"][0]["name"]
        ctx = next(c["context"] for c in kc["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in kc["clusters"] if c["name"] == ctx["cluster"])
        user = next(u for u in kc["users"] if u["name"] == ctx["user"])
    except (KeyError, TypeError, StopIteration, IndexError, AttributeError):
        raise TokenError("join token is not valid: kubeconfig lacks a cluster, context or user") from None
    if not isinstance(cluster, dict) or not isinstance(user, dict):
        raise TokenError("join token is not valid: kubeconfig lacks a cluster, context or user")
    if user["name"] != USER:
        raise TokenError(f"wrong token type: user {user['name']!r}, expected {USER!r} (a controller token)")
    auth = user.get("user")
    bearer = auth.get("token") if isinstance(auth, dict) else None
    if not isinstance(bearer, str) or not TOKEN_RE.fullmatch(bearer):
        raise TokenError("join token is not valid: user token is not <6 chars>.<16 chars>")
    server = cluster.get("server")
    if not isinstance(server, str) or not server.startswith("https://") or len(server) <= len("https://"):
        raise TokenError("join token is not valid: cluster server is not an https:// URL")
    try:
        ca = base64.b64decode(cluster["certificate-authority-data"], validate=True)
    except (KeyError, TypeError, ValueError):
        raise TokenError("join token is not valid: no certificate-authority-data") from None
    if b"-----BEGIN CERTIFICATE-----" not in ca:
        raise TokenError("join token is not valid: certificate-authority-data is not a PEM certificate")
    return JoinToken(server=server, ca_pem=ca, bearer=bearer)


# -- storage ---------------------------------------------------------------------------------
async def create(store: Store, role: str, expiry: dt.timedelta) -> tuple[str, TokenRecord]:
    if role not in ROLES:
        raise ValueError(f"--role: {role!r} is not one of {', '.join(ROLES)}")
    while True:
        tid, secret = new_bearer()
        now = _now()
        rec = TokenRecord(tid, role, hash_secret(secret), now.isoformat(),
                          (now + expiry).isoformat() if expiry.total_seconds() > 0 else None)
        if await store.create(TOKENS + tid, rec.to_json()):
            return f"{tid}.{secret}", rec


def _record(raw: bytes) -> TokenRecord:
    """Parse a stored record; ValueError if it is not one (written by hand, or corrupt)."""
    try:
        d = json.loads(raw)
        rec = TokenRecord(d["id"], d["role"], d["secretHash"], d["created"], d.get("expires"))
        if not all(isinstance(v, str) for v in (rec.id, rec.role, rec.secret_hash, rec.created)):
            raise TypeError("fields must be strings")
        dt.datetime.fromisoformat(rec.created)
        if rec.expires is not None:
            if dt.datetime.fromisoformat(rec.expires).tzinfo is None:
                raise ValueError("expires has no time zone")
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"not a token record: {e}") from None
    return rec


async def list_tokens(store: Store) -> list[TokenRecord]:
    """Valid token records, oldest first; unreadable records are skipped with a warning."""
    kvs, _ = await store.get_prefix(TOKENS)
    recs = []
    for kv in kvs:
        try:
            recs.append(_record(kv.value))
        except ValueError as e:
            log.warning("ignoring %s: %s", kv.key, e)
    return sorted(recs, key=lambda r: r.created)


async def invalidate(store: Store, tid: str) -> bool:
    return await store.delete(TOKENS + tid)


async def verify(store: Store, bearer: str, role: str = "controller") -> TokenRecord | None:
    """The stored record if bearer is a valid, unexpired token of role; else None."""
    m = TOKEN_RE.fullmatch(bearer or "")
    if not m:
        return None
    kv = await store.get(TOKENS + m.group(1))
    if kv is None:
        return None
    try:
        rec = _record(kv.value)
    except ValueError as e:
        log.warning("refusing token %s: %s", m.group(1), e)
        return None
    if rec.role != role or rec.expired():
        return None
    if not hmac.compare_digest(rec.secret_hash, hash_secret(m.group(2))):
        return None
    return rec
