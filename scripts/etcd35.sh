#!/usr/bin/env bash
# Kept for old instructions: etcd 3.5 from Debian trixie (ETCD35_SUITE=sid|testing: 3.5.30).
# scripts/etcd.sh is the script; `bash scripts/etcd35.sh [test ARGS]` = `bash scripts/etcd.sh trixie [test ARGS]`.
exec bash "$(dirname "$0")/etcd.sh" "${ETCD35_SUITE:-trixie}" "$@"
