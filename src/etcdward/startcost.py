"""What makes a controller's start cheaper, for the joiners that start side by side on a small
machine (bench/formation.py): the cyclic collector is off until the voter services have
run for GC_ON_AFTER_READY seconds, or for GC_ON_AT_THE_LATEST after the start (cli/main.py
starts a controller without it), and a joiner that waits in the join queue imports meanwhile
what it would otherwise import beside its starting etcd."""

from __future__ import annotations

import gc

GC_ON_AFTER_READY = 5.0  # s after the voter services started (their first passes, records, API answers)
GC_ON_AT_THE_LATEST = 120.0  # s after the start: a joiner waiting in line that long collects meanwhile


def collector_on() -> None:
    """Turn the cyclic garbage collector on, once: what start-up left behind is collected and
    what survives (imports, config, services) is frozen, so no later collection walks it."""
    if not gc.isenabled():
        gc.collect()
        gc.freeze()
        gc.enable()


def import_for_etcd_start() -> None:
    """What a joiner imports once its etcd is started (metrics, the store, the voter
    services; ~0.3 s of CPU), imported while it waits in line instead: then, on a busy machine,
    its etcd starts and catches up without a Python import beside it on two cores."""
    import prometheus_client  # noqa: F401

    from . import voter  # noqa: F401
