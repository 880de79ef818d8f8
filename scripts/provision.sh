#!/usr/bin/env bash
# provision.sh -- install everything clusterq's tests and `make run` need, on Debian 12 as root.
#
#   scripts/provision.sh            # all: host packages, etcd, Asterisk chroot, Python venv
#   scripts/provision.sh etcd|asterisk|venv|host
#
# Idempotent and cached: a second run costs seconds.  Everything lands in $CLUSTERQ_CACHE
# (default: <repo>/.cache, git-ignored) except the venv (<repo>/.venv, git-ignored).
#
# Pinned versions (a clear error if the mirror cannot supply them):
#   etcd:      Debian bookworm etcd-server $ETCD_DEB_VERSION, unpacked with dpkg -x (its maintainer
#              script would start a system etcd on 2379 on an ordinary host; we never install it)
#   Asterisk:  Debian sid asterisk $AST_VERSION in a debootstrap --variant=minbase chroot
#              (bookworm has no asterisk; sid's needs a newer libc, hence the chroot)
#   Python:    requirements.lock (pip install --require-hashes is not used: sdists like aioari)
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${CLUSTERQ_CACHE:-$REPO/.cache}
ETCD_DEB_VERSION=${ETCD_DEB_VERSION:-3.4.23-4+b4}
AST_VERSION=${AST_VERSION:-1:22.10.1+dfsg+~cs6.17.60671434-1}
AST_SUITE=${AST_SUITE:-sid}
AST_ROOT=$CACHE/astroot
VENV=${CLUSTERQ_VENV:-$REPO/.venv}
PYTHON=${PYTHON:-python3}

log() { printf '[provision %(%T)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (apt-get, debootstrap, chroot)"
mkdir -p "$CACHE"

host_mirror() {  # the Debian mirror the host's apt already uses
  local m
  m=$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | grep '/debian/*$' | head -n1 || true)
  [[ -n $m ]] || m=$(grep -hsE '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | grep -v security | grep '/debian/*$' | head -n1 || true)
  printf '%s' "$m"
}

apt_updated=0
apt_update_once() {
  [ $apt_updated = 1 ] && return 0
  DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null || die "apt-get update failed"
  apt_updated=1
}

cmd_host() {
  local missing=()
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v curl >/dev/null || missing+=(curl)
  command -v make >/dev/null || missing+=(make)
  command -v openssl >/dev/null || missing+=(openssl)  # tests make their own CA (clusterq_testing/certs.py)
  "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
  if [ ${#missing[@]} -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    apt_update_once
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null \
      || die "apt-get install ${missing[*]} failed"
  fi
}

cmd_etcd() {
  local dir=$CACHE/etcd stamp=$CACHE/etcd/.version
  if [ -x "$dir/usr/bin/etcd" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$ETCD_DEB_VERSION" ]; then
    log "etcd $ETCD_DEB_VERSION already unpacked"; return 0
  fi
  log "fetching etcd-server=$ETCD_DEB_VERSION (unpacked, never installed)"
  apt_update_once
  local tmp; tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download -q "etcd-server=$ETCD_DEB_VERSION" "etcd-client=$ETCD_DEB_VERSION" >/dev/null 2>&1) \
    || die "etcd-server=$ETCD_DEB_VERSION is not available from the mirror (set ETCD_DEB_VERSION; apt-cache policy etcd-server)"
  rm -rf "$dir"; mkdir -p "$dir"
  local deb; for deb in "$tmp"/*.deb; do dpkg -x "$deb" "$dir"; done
  rm -rf "$tmp"
  [ -x "$dir/usr/bin/etcd" ] || die "etcd binary missing after unpacking"
  printf '%s' "$ETCD_DEB_VERSION" >"$stamp"
  log "etcd: $("$dir/usr/bin/etcd" --version 2>/dev/null | head -1)"
}

in_root() { chroot "$AST_ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 HOME=/root "$@"; }
mounted() { mountpoint -q "$1" 2>/dev/null; }
mount_api() {  # /proc and /dev/pts for dpkg maintainer scripts only; Asterisk runs without them
  mounted "$AST_ROOT/proc" || mount -t proc proc "$AST_ROOT/proc"
  mounted "$AST_ROOT/dev/pts" || { mkdir -p "$AST_ROOT/dev/pts"; mount -t devpts -o newinstance,ptmxmode=0666 devpts "$AST_ROOT/dev/pts" 2>/dev/null || true; }
}
umount_api() {
  local m; for m in "$AST_ROOT/dev/pts" "$AST_ROOT/proc"; do
    if mounted "$m"; then umount "$m" || umount -l "$m" || true; fi
  done
}

cmd_asterisk() {
  local t0=$SECONDS stamp="$AST_ROOT/.clusterq-asterisk"
  local pkgs="asterisk=$AST_VERSION asterisk-modules=$AST_VERSION asterisk-core-sounds-en asterisk-moh-opsound-gsm"
  if [ -x "$AST_ROOT/usr/sbin/asterisk" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$pkgs" ]; then
    log "asterisk already installed in $AST_ROOT"; return 0
  fi
  cmd_host
  local mirror=${AST_MIRROR:-$(host_mirror)}
  [ -n "$mirror" ] || die "no Debian mirror found in the host's apt sources: set AST_MIRROR"
  if [ ! -x "$AST_ROOT/usr/bin/apt-get" ]; then
    log "debootstrap --variant=minbase $AST_SUITE (about 30 s)"
    rm -rf "$AST_ROOT.partial"
    debootstrap --variant=minbase "$AST_SUITE" "$AST_ROOT.partial" "$mirror" >"$CACHE/debootstrap.log" 2>&1 \
      || { tail -30 "$CACHE/debootstrap.log" >&2; die "debootstrap failed (log: $CACHE/debootstrap.log)"; }
    rm -rf "$AST_ROOT"; mv "$AST_ROOT.partial" "$AST_ROOT"
  fi
  # The mirror snapshot may be older than its Release file's Valid-Until; no recommends; no service starts.
  echo 'Acquire::Check-Valid-Until "false";' >"$AST_ROOT/etc/apt/apt.conf.d/99no-check-valid-until"
  echo 'APT::Install-Recommends "false";' >"$AST_ROOT/etc/apt/apt.conf.d/99no-recommends"
  printf '#!/bin/sh\nexit 101\n' >"$AST_ROOT/usr/sbin/policy-rc.d"; chmod 755 "$AST_ROOT/usr/sbin/policy-rc.d"
  cp -L /etc/resolv.conf "$AST_ROOT/etc/resolv.conf" 2>/dev/null || true
  mount_api; trap umount_api EXIT
  log "apt-get install $pkgs (inside the chroot, about 20 s)"
  # shellcheck disable=SC2086
  if ! in_root sh -c "export DEBIAN_FRONTEND=noninteractive; apt-get update -q && apt-get install -y -q --no-install-recommends $pkgs && apt-get clean" \
      >"$CACHE/asterisk-apt.log" 2>&1; then
    umount_api
    tail -20 "$CACHE/asterisk-apt.log" >&2
    grep -q "Version '.*' for 'asterisk' was not found\|has no installation candidate" "$CACHE/asterisk-apt.log" \
      && die "pinned asterisk $AST_VERSION is not available from $mirror $AST_SUITE (set AST_VERSION)"
    die "apt-get install in the chroot failed (log: $CACHE/asterisk-apt.log)"
  fi
  umount_api; trap - EXIT
  : >"$AST_ROOT/etc/resolv.conf"   # no DNS at run time: everything is on loopback
  printf '%s' "$pkgs" >"$stamp"
  log "installed $(in_root /usr/sbin/asterisk -V) in $((SECONDS - t0)) s"
}

cmd_venv() {
  local stamp=$VENV/.clusterq-lock
  local want; want=$(cat "$REPO/requirements.lock" "$REPO/pyproject.toml" | sha256sum | cut -d' ' -f1)
  if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    log "venv up to date"; return 0
  fi
  cmd_host
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  log "pip install -r requirements.lock (+ clusterq editable)"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REPO/requirements.lock" \
    || die "pip install of the pinned requirements failed"
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps -e "$REPO" || die "pip install -e . failed"
  printf '%s' "$want" >"$stamp"
}

case ${1:-all} in
  host) cmd_host ;;
  etcd) cmd_etcd ;;
  asterisk) cmd_asterisk ;;
  venv) cmd_venv ;;
  unmount) umount_api ;;
  all) cmd_host; cmd_etcd; cmd_asterisk; cmd_venv ;;
  *) die "usage: $0 [all|host|etcd|asterisk|venv|unmount]" ;;
esac
