#!/usr/bin/env bash
# Fetch Debian trixie's etcd 3.5 (etcd-server + etcd-client .debs) into a cache folder with
# `apt-get download`, unpack them with `dpkg -x`, and print the path of the etcd binary.
#
#   bash scripts/etcd35.sh                   -> <repo>/.etcd-cache/trixie/root/usr/bin/etcd
#   bash scripts/etcd35.sh test [PYTEST ARGS] the test suite (loopback + scenarios) against etcd 3.5:
#                                            ETCDWARD_ETCD_BIN=<that etcd> .venv/bin/python -m pytest ARGS
#
# Nothing is installed system-wide and the system apt configuration is not touched: apt runs
# with a private sources list, lists dir and archive cache under the cache folder.  The Debian
# mirror is the one this machine already uses (from /etc/apt/sources.list{,.d/*}); override it
# with ETCD35_MIRROR.  Idempotent: a cache that already holds a working binary is reused
# (ETCD35_REFRESH=1 fetches again).
#
# Settings: ETCD35_CACHE (default <repo>/.etcd-cache), ETCD35_SUITE (default trixie; sid gives a
# newer 3.5.x), ETCD35_MIRROR, ETCD35_REFRESH.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
suite="${ETCD35_SUITE:-trixie}"
cache="${ETCD35_CACHE:-$repo/.etcd-cache}/$suite"
bin="$cache/root/usr/bin/etcd"

log() { echo "etcd35: $*" >&2; }

if [ "${1:-}" = test ]; then
  shift
  etcd=$(bash "$0")
  log "running the tests with ETCDWARD_ETCD_BIN=$etcd ($("$etcd" --version | head -n 1))"
  cd "$repo"
  ETCDWARD_REQUIRE_PREREQS=1 ETCDWARD_ETCD_BIN="$etcd" exec .venv/bin/python -m pytest "$@"
elif [ $# -gt 0 ]; then
  echo "usage: bash scripts/etcd35.sh [test [pytest args...]]" >&2
  exit 2
fi

if [ -z "${ETCD35_REFRESH:-}" ] && [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q '^etcd Version: 3\.5\.'; then
  echo "$bin"
  exit 0
fi

for tool in apt-get dpkg; do
  command -v "$tool" >/dev/null 2>&1 || { log "needs $tool (Debian/Ubuntu)"; exit 1; }
done

# The first Debian mirror URI configured on this machine (one-line or deb822 format).
mirror="${ETCD35_MIRROR:-}"
if [ -z "$mirror" ]; then
  mirror=$(
    {
      for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] && awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; break } }' "$f"
      done
      for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] && awk 'tolower($1) == "uris:" { for (i = 2; i <= NF; i++) print $i }' "$f"
      done
    } | grep -v -e '-security' -e 'security\.' | grep '/debian/\?$' | head -n 1
  ) || true
fi
if [ -z "$mirror" ]; then
  log "no Debian mirror found in /etc/apt/sources.list or /etc/apt/sources.list.d/; set ETCD35_MIRROR"
  exit 1
fi

work="$cache.tmp.$$"
trap 'rm -rf "$work"' EXIT
rm -rf "$work"
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/debs"
echo "deb $mirror $suite main" > "$work/sources.list"
opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
      -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache"
      -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
log "fetching etcd-server and etcd-client from $suite"
apt-get "${opts[@]}" -qq update >&2
(cd "$work/debs" && apt-get "${opts[@]}" -qq download etcd-server etcd-client >&2)
for deb in "$work"/debs/*.deb; do
  dpkg -x "$deb" "$work/root"
done
"$work/root/usr/bin/etcd" --version | grep -q '^etcd Version: 3\.5\.' || {
  log "unpacked etcd is not 3.5: $("$work/root/usr/bin/etcd" --version | head -n 1)"
  exit 1
}
mkdir -p "$cache"
rm -rf "$cache/root" "$cache/debs"
mv "$work/root" "$cache/root"
mv "$work/debs" "$cache/debs"
log "$(basename "$cache"/debs/etcd-server_*.deb) -> $cache/root/usr/bin ($("$bin" --version | head -n 1))"
echo "$bin"
