"""PKI work at start-up (pki.ensure_node_pki), done in a forked child process.

The controller itself then never imports cryptography, whose ~9 MiB of RSS it would keep for
good (a loaded extension module is never unloaded) although after start-up it only reads dates
(certfiles.py). Start-up is no slower: the child pays the import the controller paid before,
and fork is done while the controller has no gRPC threads yet (before etcd starts).
"""

from __future__ import annotations

import os
import pickle
import signal
from pathlib import Path
from typing import Any

from .errors import Permanent


class PKIChildFailed(Permanent):
    """The child process died without saying why."""


def ensure_node_pki(data: Any, **kw: Any) -> None:
    """pki.ensure_node_pki(data, **kw) in a child process; its PKIError or OSError is raised here."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no return from here
        os.close(r)
        _child(w, data, kw)
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        answer = fh.read()
    _, status = os.waitpid(pid, 0)
    if answer:
        raise pickle.loads(answer)
    if os.waitstatus_to_exitcode(status) != 0:
        raise PKIChildFailed(f"creating the certificates under {Path(data.pki)} failed: the child process "
                             f"ended with status {os.waitstatus_to_exitcode(status)}")


def _child(w: int, data: Any, kw: dict[str, Any]) -> None:
    code = 0
    try:
        # A SIGINT/SIGTERM must not reach the parent's event loop through the inherited wakeup fd.
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        from . import pki

        pki.ensure_node_pki(data, **kw)
    except BaseException as e:  # noqa: BLE001 - handed to the parent, which raises it
        code = 1
        try:
            payload = pickle.dumps(e)
        except Exception:  # noqa: BLE001 - an exception that does not pickle: its text
            payload = pickle.dumps(PKIChildFailed(f"{type(e).__name__}: {e}"))
        with os.fdopen(w, "wb") as fh:
            fh.write(payload)
    os._exit(code)
