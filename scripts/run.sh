#!/usr/bin/env bash
# Set up a fresh Debian 12 machine (as root) and run etcdward.
#   bash scripts/run.sh up     install everything, then run a local 3-controller cluster
#   bash scripts/run.sh test   install everything, then run the whole test suite
# Extra arguments are passed on (to `etcdward up` or to pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-}"; shift || true
case "$mode" in up|test) ;; *) echo "usage: bash scripts/run.sh up|test [args...]" >&2; exit 2;; esac

need_apt=()
command -v etcd >/dev/null 2>&1 || need_apt+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need_apt+=(etcd-client)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need_apt+=(python3-venv)
if [ "$mode" = test ]; then
  command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
  command -v iptables >/dev/null 2>&1 || need_apt+=(iptables)
  # The kube API tests drive the real kubectl; Debian's kubernetes-client when none is installed.
  command -v kubectl >/dev/null 2>&1 || need_apt+=(kubernetes-client)
  # `systemd-analyze verify` checks the unit `etcdward install controller` writes.
  command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
  # promtool checks the /metrics output and the alert rules (deploy/prometheus/); Debian ships
  # it in the prometheus package, whose own service policy-rc.d below keeps from starting.
  command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
  # tests/test_ca_rotation.py creates the new CA with the README's openssl command.
  command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then echo "run as root to install: ${need_apt[*]}" >&2; exit 1; fi
  echo "installing with apt: ${need_apt[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Do not let the packages start their own services: a default etcd (on 127.0.0.1:2379/2380),
  # a prometheus (on :9090).
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d.etcdward && chmod +x /usr/sbin/policy-rc.d.etcdward
  if [ ! -e /usr/sbin/policy-rc.d ]; then cp /usr/sbin/policy-rc.d.etcdward /usr/sbin/policy-rc.d; trap 'rm -f /usr/sbin/policy-rc.d' EXIT; fi
  rm -f /usr/sbin/policy-rc.d.etcdward
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
if ! cmp -s requirements.lock .venv/.installed-lock 2>/dev/null; then
  .venv/bin/pip install -q --disable-pip-version-check -r requirements.lock
  cp requirements.lock .venv/.installed-lock
fi
.venv/bin/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e . 2>/dev/null \
  || .venv/bin/pip install -q --disable-pip-version-check --no-deps -e .

if [ "$mode" = up ]; then
  exec .venv/bin/etcdward up "$@"
fi
# A missing prerequisite (etcd, root, iptables, ...) fails the run, naming it, instead of
# skipping: a broken install step must not look green (tests/prereqs.py).
export ETCDWARD_REQUIRE_PREREQS=1
# The upgrade tests also need etcd 3.5.30 (scripts/etcd.sh caches it under .etcd-cache/); if it
# cannot be fetched, those tests fail naming it.
bash scripts/etcd.sh 3.5.30 >/dev/null || echo "could not fetch etcd 3.5.30 (scripts/etcd.sh)" >&2
set +e
# Two workers: most tests wait on etcd and timers, not on the CPU. Each test file runs whole on
# one worker, in order (modules share one cluster between their tests, and the playground tests
# use fixed addresses). `-n 0` runs everything in one process.
.venv/bin/python -m pytest -n "${ETCDWARD_TEST_WORKERS:-2}" --dist loadfile "$@"
rc=$?
[ "$rc" = 5 ] && { echo "pytest collected no tests" >&2; exit 1; }
exit "$rc"
