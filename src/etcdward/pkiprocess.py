"""PKI work at start-up (pki.ensure_node_pki), done in a forked child process (PKIWorker).

The controller itself then never imports cryptography, whose ~9 MiB of RSS it would keep for
good (a loaded extension module is never unloaded) although after start-up it only reads dates
(certfiles.py).

The child imports cryptography at once and then waits for its one job, which comes through a
pipe. `etcdward controller` forks it first thing, so that the import runs on the other core while
the controller loads its config. With a token (a joiner) at a lower priority (JOINER_NICE): where
several joiners start at once on one machine, its import gives way to their ways to their join
requests and runs while they wait for the answers; then only signing (milliseconds) stands
between the answer, which brings the etcd CA, and etcd's start, on every join
(bench/formation.py). The job gives the child the controller's own priority back where it may
(root): the controller waits for it then. No other thread exists yet when it is forked. If the
controller dies, the child reads the end of its job pipe and exits.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
from pathlib import Path
from typing import Any

from .errors import Permanent


JOINER_NICE = 10


class PKIChildFailed(Permanent):
    """The child process died without saying why."""


class PKIWorker:
    """One forked child that runs one pki.ensure_node_pki call; `close()` if it is not needed."""

    def __init__(self, nice: int = 0) -> None:
        job_r, job_w = os.pipe()  # both ends close-on-exec: etcd inherits neither
        answer_r, answer_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: no return from here
            os.close(job_w)
            os.close(answer_r)
            _child(job_r, answer_w)
        os.close(job_r)
        os.close(answer_w)
        self.pid: int | None = pid
        self.nice = nice
        self._job, self._answer = job_w, answer_r
        if nice:  # here, not in the child: then the job's restore below always comes after it
            self._set_priority(os.getpriority(os.PRIO_PROCESS, 0) + nice)

    def ensure_node_pki(self, data: Any, **kw: Any) -> None:
        """pki.ensure_node_pki(data, **kw) in the child; its PKIError or OSError is raised here."""
        if self.pid is None:
            raise RuntimeError("a PKIWorker runs one job")
        if self.nice:  # the controller waits for it now: the controller's own priority again
            self._set_priority(os.getpriority(os.PRIO_PROCESS, 0))
        with os.fdopen(self._job, "wb") as fh:
            try:
                fh.write(pickle.dumps((data, kw)))
            except BrokenPipeError:
                pass  # the child died already: its status says so below
        with os.fdopen(self._answer, "rb") as fh:
            answer = fh.read()
        status = self._reap()
        if answer:
            raise pickle.loads(answer)
        if status != 0:
            raise PKIChildFailed(f"creating the certificates under {Path(data.pki)} failed: the child process "
                                 f"ended with status {status}")

    def _set_priority(self, value: int) -> None:
        assert self.pid is not None
        with contextlib.suppress(OSError):  # raising it back takes root: else it stays lower
            os.setpriority(os.PRIO_PROCESS, self.pid, value)

    def close(self) -> None:
        """Without a job: the child reads the end of its pipe and exits."""
        if self.pid is None:
            return
        os.close(self._job)
        os.close(self._answer)
        self._reap()

    def _reap(self) -> int:
        assert self.pid is not None
        _, status = os.waitpid(self.pid, 0)
        self.pid = None
        return os.waitstatus_to_exitcode(status)

    def __enter__(self) -> PKIWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _child(job: int, answer: int) -> None:
    code = 0
    try:
        # A SIGINT/SIGTERM must not reach the parent's event loop through the inherited wakeup fd;
        # the parent stops this child by closing the job pipe.
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        from . import pki

        with os.fdopen(job, "rb") as fh:
            request = fh.read()
        if request:
            data, kw = pickle.loads(request)
            pki.ensure_node_pki(data, **kw)
    except BaseException as e:  # noqa: BLE001 - handed to the parent, which raises it
        code = 1
        try:
            payload = pickle.dumps(e)
        except Exception:  # noqa: BLE001 - an exception that does not pickle: its text
            payload = pickle.dumps(PKIChildFailed(f"{type(e).__name__}: {e}"))
        with os.fdopen(answer, "wb") as fh:
            fh.write(payload)
    os._exit(code)
