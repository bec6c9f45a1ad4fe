#!/usr/bin/env bash
# Runs the test suite (or a command) in a Debian chroot: Debian 13 "trixie" (Python 3.13, as the
# current Raspberry Pi OS) by default, or Debian 12 "bookworm" (Python 3.11, as Raspberry Pi OS
# Bookworm).  CI machines run Debian 12.  The root is built with mmdebstrap from Debian's
# archive on first use and cached under $CHROOT_CACHE (default .cache/chroot), keyed on what
# builds it (suite, mirror, packages: .ci/test-packages): change one and a new root is built.
# Every run sees the cached root through an overlay, in a private mount namespace: what a run
# writes (apt-get, /etc, /opt) vanishes with it.  The checkout is bind-mounted at its own path;
# the suite's venv lives in the checkout's .cache/venv-SUITE.
#
#   .ci/chroot.sh [--suite S]             `make test` in the chroot (default suite: trixie)
#   .ci/chroot.sh [--suite S] --build     only build (or check) the cached root
#   .ci/chroot.sh [--suite S] -- CMD...   run CMD in the checkout inside the chroot
#
# Needs root (mmdebstrap, chroot, mount).  See docs/testing.md.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
CACHE=${CHROOT_CACHE:-$REPO/.cache/chroot}
MIRROR=${CHROOT_MIRROR:-http://deb.debian.org/debian}
SUITE=trixie
VARIANT=apt
# What the root needs beyond the test packages: the interpreter and venv support, and a CA
# bundle for pip.  python3-dev and gcc are not needed: every dependency ships a wheel.
BASE_PACKAGES=(python3 python3-venv ca-certificates)
mapfile -t TEST_PACKAGES < <(sed -e 's/#.*//' -e 's/[[:space:]]*$//' -e '/^$/d' "$HERE/test-packages")

usage() { sed -n '2,15s/^# \{0,1\}//p' "$0"; }
MODE=test
while [ $# -gt 0 ]; do
  case $1 in
    --suite) SUITE=${2:?--suite needs a name}; shift 2 ;;
    --build) MODE=build; shift ;;
    --) shift; MODE=cmd; break ;;
    -h|--help) usage; exit 0 ;;
    *) echo "chroot.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "chroot.sh: needs root (mmdebstrap, chroot, mount)" >&2; exit 2; }

# What builds the root, and nothing else: editing how it is used does not rebuild it.
KEY=$(printf '%s\n' "$SUITE" "$VARIANT" "$MIRROR" "${BASE_PACKAGES[@]}" "${TEST_PACKAGES[@]}" |
      sha256sum | cut -c1-12)
ROOT=$CACHE/root-$KEY
if [ ! -e "$ROOT/.complete" ]; then
  command -v mmdebstrap >/dev/null || apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null
  echo "chroot.sh: building the Debian $SUITE root in $ROOT (a few minutes, once)" >&2
  mkdir -p "$CACHE"
  rm -rf "$ROOT.tmp"
  list=$(IFS=,; echo "${BASE_PACKAGES[*]},${TEST_PACKAGES[*]}")
  # in a mount namespace of its own: an interrupted build leaves no mount behind
  unshare --mount --propagation private -- \
    mmdebstrap --variant="$VARIANT" --include="$list" --quiet "$SUITE" "$ROOT.tmp" "$MIRROR"
  echo "$SUITE" > "$ROOT.tmp/.complete"
  rm -rf "$ROOT"
  mv "$ROOT.tmp" "$ROOT"
  # Roots of this suite built from an older key are of no further use.
  for old in "$CACHE"/root-*; do
    if [ "$old" != "$ROOT" ] && [ "$(cat "$old/.complete" 2>/dev/null)" = "$SUITE" ]; then
      rm -rf "$old"
    fi
  done
fi
echo "chroot.sh: $SUITE root $ROOT ($(chroot "$ROOT" python3 --version))" >&2
[ "$MODE" = build ] && exit 0

if [ "$MODE" = cmd ]; then CMD=("$@"); else
  CMD=(make test PYTHON=python3 VENV=".cache/venv-$SUITE")
fi
# pip's local settings of the host (wheel folders, config files) do not exist in the root; the
# host's trust store is copied in: a CI network may reach PyPI through a proxy with its own CA.
unset PIP_FIND_LINKS PIP_CERT PIP_CONFIG_FILE
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
unshare --mount --propagation private -- bash -euc '
  root=$1 repo=$2 scratch=$3; shift 3
  mkdir -p "$scratch/upper" "$scratch/work" "$scratch/merged"
  mount -t overlay overlay \
    -o "lowerdir=$root,upperdir=$scratch/upper,workdir=$scratch/work" "$scratch/merged"
  root=$scratch/merged
  mount --rbind /dev "$root/dev"
  mount -t proc proc "$root/proc"
  mount -t sysfs sys "$root/sys"
  mount -t tmpfs tmpfs "$root/tmp"
  mkdir -p "$root$repo"
  mount --bind "$repo" "$root$repo"
  cp -L /etc/resolv.conf "$root/etc/resolv.conf"
  cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  exec chroot "$root" /usr/bin/env -C "$repo" HOME=/root \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
' chroot "$ROOT" "$REPO" "$SCRATCH" "${CMD[@]}"
