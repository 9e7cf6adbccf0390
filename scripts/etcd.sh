#!/usr/bin/env bash
# Fetch a Debian suite's etcd (etcd-server + etcd-client .debs) into a cache folder with
# `apt-get download`, unpack them with `dpkg -x`, and print the path of the etcd binary
# (etcdctl, and etcdutl from 3.5 on, sit next to it).
#
#   bash scripts/etcd.sh SUITE                    -> the etcd binary of SUITE
#   bash scripts/etcd.sh SUITE test [PYTEST ARGS] pytest with ETCDWARD_ETCD_BIN/ETCDWARD_ETCDCTL of
#                                                 SUITE and ETCDWARD_REQUIRE_PREREQS=1
#
# SUITE is a Debian suite or a version alias:
#   bookworm | 3.4 | 3.4.23     etcd 3.4.23 (Debian 12): the installed /usr/bin/etcd when it is that version
#   trixie   | 3.5.16           etcd 3.5.16 (Debian 13)
#   testing | sid | 3.5.30      etcd 3.5.30 (Debian testing/unstable; etcdutl is in etcd-server, from 3.5.16 on)
# A version alias checks that the unpacked binary is that exact version (a suite moves on).
#
# Nothing is installed system-wide and the system apt configuration is not touched: apt runs
# with a private sources list, lists dir and archive cache under the cache folder.  The Debian
# mirror is the one this machine already uses (from /etc/apt/sources.list{,.d/*}); override it
# with ETCD_MIRROR.  Idempotent: a cache that already holds the wanted binary is reused
# (ETCD_REFRESH=1 fetches again).  Settings: ETCD_CACHE (default <repo>/.etcd-cache), ETCD_MIRROR,
# ETCD_REFRESH, ETCDWARD_PYTHON (for `test`; default .venv/bin/python).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
log() { echo "etcd.sh: $*" >&2; }
usage() { echo "usage: bash scripts/etcd.sh bookworm|trixie|testing|sid|3.4|3.4.23|3.5.16|3.5.30 [test [pytest args...]]" >&2; exit 2; }

arg="${1:-}"; [ -n "$arg" ] || usage; shift
case "$arg" in
  bookworm|3.4|3.4.23) suite=bookworm; want=3.4.23 ;;
  trixie|3.5.16)       suite=trixie;   want=3.5.16 ;;
  3.5.30)              suite=testing;  want=3.5.30 ;;
  testing|sid|unstable) suite="$arg";  want="" ;;
  *) usage ;;
esac
# what a binary must report: the exact version of an alias, else any 3.x
if [ -n "$want" ]; then pattern="^etcd Version: ${want//./\\.}\$"; else pattern='^etcd Version: 3\.[0-9]+\.[0-9]+$'; fi

is_wanted() {
  local out
  [ -x "$1" ] && out=$("$1" --version 2>/dev/null) && grep -Eq "$pattern" <<<"${out%%$'\n'*}"
}

if [ "${1:-}" = test ]; then
  shift
  etcd=$(bash "$0" "$arg")
  ctl="$(dirname "$etcd")/etcdctl"
  log "running the tests with ETCDWARD_ETCD_BIN=$etcd ($("$etcd" --version | head -n 1))"
  cd "$repo"
  py="${ETCDWARD_PYTHON:-.venv/bin/python}"  # the venv scripts/run.sh makes
  set +e
  ETCDWARD_REQUIRE_PREREQS=1 ETCDWARD_ETCD_BIN="$etcd" ETCDWARD_ETCDCTL="$ctl" "$py" -m pytest -n "${ETCDWARD_TEST_WORKERS:-2}" --dist loadfile "$@"
  rc=$?
  [ "$rc" = 5 ] && { log "pytest collected no tests"; exit 1; }
  exit "$rc"
elif [ $# -gt 0 ]; then
  usage
fi

# Debian 12's etcd is the default install (scripts/run.sh): use it when it is the wanted one.
if [ "$suite" = bookworm ] && [ -z "${ETCD_REFRESH:-}" ] && sys=$(command -v etcd) && is_wanted "$sys"; then
  echo "$sys"
  exit 0
fi

cache="${ETCD_CACHE:-${ETCD35_CACHE:-$repo/.etcd-cache}}/$suite"
bin="$cache/root/usr/bin/etcd"
if [ -z "${ETCD_REFRESH:-}" ] && is_wanted "$bin"; then
  echo "$bin"
  exit 0
fi

for tool in apt-get dpkg; do
  command -v "$tool" >/dev/null 2>&1 || { log "needs $tool (Debian/Ubuntu)"; exit 1; }
done

# The first Debian mirror URI configured on this machine (one-line or deb822 format).
mirror="${ETCD_MIRROR:-${ETCD35_MIRROR:-}}"
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
  log "no Debian mirror found in /etc/apt/sources.list or /etc/apt/sources.list.d/; set ETCD_MIRROR"
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
log "fetching etcd-server and etcd-client from $suite ($mirror)"
apt-get "${opts[@]}" -qq update >&2
(cd "$work/debs" && apt-get "${opts[@]}" -qq download etcd-server etcd-client >&2)
for deb in "$work"/debs/*.deb; do
  dpkg -x "$deb" "$work/root"
done
got=$("$work/root/usr/bin/etcd" --version 2>/dev/null) || true; got="${got%%$'\n'*}"
if ! is_wanted "$work/root/usr/bin/etcd"; then
  log "Debian $suite now ships '$got', not etcd ${want:-3.x}; pick another suite or alias"
  exit 1
fi
mkdir -p "$cache"
rm -rf "$cache/root" "$cache/debs"
mv "$work/root" "$cache/root"
mv "$work/debs" "$cache/debs"
log "$(basename "$cache"/debs/etcd-server_*.deb) -> $cache/root/usr/bin ($got)"
echo "$bin"
