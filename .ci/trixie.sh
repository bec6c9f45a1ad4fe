#!/usr/bin/env bash
# Runs the test suite on Python 3.13 in a Debian 13 (trixie) chroot: current Raspberry Pi OS is
# Debian 13, the CI machines run Debian 12 (Python 3.11).  The root is built with mmdebstrap
# from Debian's archive on first use and cached under $TRIXIE_CACHE (default .cache/trixie),
# keyed on this script and .ci/test-packages: change either and a new root is built.  The
# checkout is bind-mounted at its own path inside the chroot, in a private mount namespace (the
# mounts vanish with the run); the venv lives in .cache/venv-trixie in the checkout.
#
#   .ci/trixie.sh              build the root if needed, then `make test` with python3.13
#   .ci/trixie.sh --build      only build (or check) the cached root
#   .ci/trixie.sh -- CMD...    run CMD in the checkout inside the chroot instead of `make test`
#
# Needs root (mmdebstrap, chroot, mount).  See docs/testing.md.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
CACHE=${TRIXIE_CACHE:-$REPO/.cache/trixie}
MIRROR=${TRIXIE_MIRROR:-http://deb.debian.org/debian}
# What the root needs beyond the test packages: the interpreter and venv support, and a CA
# bundle for pip.  python3-dev and gcc are not needed: every dependency ships a cp313 wheel.
BASE_PACKAGES=(python3 python3-venv ca-certificates)
SUITE=trixie
VARIANT=apt
mapfile -t TEST_PACKAGES < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$HERE/test-packages")

usage() { sed -n '2,13s/^# \{0,1\}//p' "$0"; }
MODE=test
case ${1:-} in
  --build) MODE=build ;;
  --) shift; MODE=cmd ;;
  -h|--help) usage; exit 0 ;;
  "") ;;
  *) echo "trixie.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
esac
[ "$(id -u)" = 0 ] || { echo "trixie.sh: needs root (mmdebstrap, chroot, mount)" >&2; exit 2; }

# What builds the root, and nothing else: editing how it is used does not rebuild it.
KEY=$(printf '%s\n' "$SUITE" "$VARIANT" "$MIRROR" "${BASE_PACKAGES[@]}" "${TEST_PACKAGES[@]}" |
      sha256sum | cut -c1-12)
ROOT=$CACHE/root-$KEY
if [ ! -x "$ROOT/usr/bin/python3.13" ]; then
  command -v mmdebstrap >/dev/null || apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null
  echo "trixie.sh: building the Debian 13 root in $ROOT (a few minutes, once)" >&2
  mkdir -p "$CACHE"
  rm -rf "$ROOT.tmp"
  list=$(IFS=,; echo "${BASE_PACKAGES[*]},${TEST_PACKAGES[*]}")
  # in a mount namespace of its own: an interrupted build leaves no mount behind
  unshare --mount --propagation private -- \
    mmdebstrap --variant="$VARIANT" --include="$list" --quiet "$SUITE" "$ROOT.tmp" "$MIRROR"
  mv "$ROOT.tmp" "$ROOT"
  # Roots built from an older key are of no further use.
  find "$CACHE" -maxdepth 1 -name 'root-*' ! -name "root-$KEY" -exec rm -rf {} +
fi
echo "trixie.sh: root $ROOT ($(chroot "$ROOT" python3 --version))" >&2
[ "$MODE" = build ] && exit 0

if [ "$MODE" = cmd ]; then CMD=("$@"); else
  CMD=(make test PYTHON=python3.13 VENV=.cache/venv-trixie)
fi
# pip's local settings of the host (wheel folders, config files) do not exist in the root; the
# host's trust store is copied in: a CI network may reach PyPI through a proxy with its own CA.
unset PIP_FIND_LINKS PIP_CERT PIP_CONFIG_FILE
exec unshare --mount --propagation private -- bash -euc '
  root=$1 repo=$2; shift 2
  mount --rbind /dev "$root/dev"
  mount -t proc proc "$root/proc"
  mount -t sysfs sys "$root/sys"
  mount -t tmpfs tmpfs "$root/tmp"
  mkdir -p "$root$repo"
  mount --bind "$repo" "$root$repo"
  cp -L /etc/resolv.conf "$root/etc/resolv.conf"
  cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  exec chroot "$root" /usr/bin/env -C "$repo" HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
' trixie "$ROOT" "$REPO" "${CMD[@]}"
