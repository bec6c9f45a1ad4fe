#!/usr/bin/env bash
# The e2e tier: the BLE side of smallbms against the real Linux Bluetooth stack.
#
# Two qemu guests (software emulation: no KVM, no host Bluetooth needed) boot Debian's stock
# kernel; the peripheral runs `btvirt` (emulated LE controllers) and the central attaches to it
# over a serial line relayed through the host, so each guest has its own kernel, bluetoothd and
# system D-Bus, as a Raspberry Pi and a phone would.  Real SMP, real advertising limits, real
# GATT error codes: what the virtual BlueZ (gatt/virtual/) can only model.
#
# Everything it needs is built into a cache directory on first use (apt packages, the kernel
# unpacked not installed, an initramfs); the guests use the project's own venv (.venv, as
# `make test` builds it) through a read-only 9p share of the host's root.  See docs/testing.md.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE=${E2E_CACHE:-$REPO/.cache/e2e}
VENV=${E2E_VENV:-$REPO/.venv}
CASES=${E2E_CASES:-probe,daemon}
# Bounds, in seconds.  Generous because the machine's 2 cores are shared (TCG guests are CPU
# bound), bounded so that a hung guest cannot stall CI: a warm run takes about a minute.
BOOT_TIMEOUT=${E2E_TIMEOUT:-480}     # each qemu, boot to power-off
GUEST_MEM=${E2E_GUEST_MEM:-512}      # MiB per guest; the guests use 60-200 MiB
APT_PACKAGES=(qemu-system-x86 bluez bluez-test-tools busybox-static kmod dbus)
# Module folders copied into the initramfs (the stock kernel has all of these as modules).
MODULE_DIRS=(crypto arch/x86/crypto lib net/bluetooth net/rfkill drivers/bluetooth net/9p fs/9p
             fs/netfs fs/fscache fs/overlayfs fs/configfs drivers/virtio drivers/char/hw_random
             drivers/gpio)

usage() {
  cat <<USAGE
Usage: tests/e2e/run.sh [--cases LIST] [--help]

Boots two qemu guests (peripheral, central) with real BlueZ and runs the e2e scenarios.
Exit status 0 = every check passed, 1 = a check failed, 2 = the harness itself failed.

  --cases LIST   comma-separated scenarios to run, in order (default: $CASES)
                   probe   bless + bleak smoke test and the 31-byte advertisement budget
                   daemon  the real 'smallbms run' daemon and 'smallbms-client' + victron-ble

Environment: E2E_CACHE (default .cache/e2e), E2E_VENV (default .venv), E2E_TIMEOUT
(seconds per guest, default $BOOT_TIMEOUT), E2E_EATT=1 (keep BlueZ's EATT on; see
docs/testing.md for the race that makes the tier turn it off).  Logs of the last run: \$E2E_CACHE/last;
a failed run is kept as \$E2E_CACHE/failed-<time>.  Needs root the first time (apt-get).
USAGE
}

while [ $# -gt 0 ]; do
  case $1 in
    --cases) CASES=${2:?--cases needs a list}; shift 2 ;;
    --cases=*) CASES=${1#*=}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done

for c in ${CASES//,/ }; do
  [ -f "$HERE/cases/$c.sh" ] || { echo "run.sh: no case '$c' (tests/e2e/cases/*.sh; try --help)" >&2; exit 2; }
done

T0=$(date +%s%N)
elapsed() { echo $(( ($(date +%s%N) - T0) / 1000000000 )); }
ts() { echo "[e2e +$(elapsed)s] $*"; }
die() { echo "e2e: $*" >&2; exit 2; }

if [ "$(uname -m)" != x86_64 ] || [ "$(uname -s)" != Linux ]; then
  echo "e2e: SKIPPED: the tier boots x86_64 Debian guests with qemu; this is $(uname -sm)."
  exit 0
fi
command -v apt-get >/dev/null || {
  echo "e2e: SKIPPED: no apt-get here; the tier needs a Debian host (see docs/testing.md)."
  exit 0; }

mkdir -p "$CACHE"
exec 9>"$CACHE/lock"
flock -n 9 || { ts "another e2e run holds $CACHE/lock; waiting"; flock 9; }

# --- 1. host packages -------------------------------------------------------------------
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "missing packages: ${missing[*]}; run as root or: sudo apt-get install ${missing[*]}"
  echo "e2e: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
fi

# --- 2. guest kernel and initramfs ----------------------------------------------------------
# The kernel package name is resolved, not pinned: security updates rename its ABI (6.1.0-NN).
KPKG=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
[ -n "$KPKG" ] || KPKG=$(cd "$CACHE" && ls -d linux-image-* 2>/dev/null | tail -1)
[ -n "$KPKG" ] || die "cannot resolve the Debian kernel package (apt-cache depends linux-image-amd64)"
KDIR=$CACHE/$KPKG
STAMP=$( (sha256sum "$HERE/guest/init.sh"; echo "${MODULE_DIRS[*]}") | sha256sum | cut -c1-16)
if [ ! -f "$KDIR/vmlinuz" ] || [ "$(cat "$KDIR/initrd.stamp" 2>/dev/null)" != "$STAMP" ]; then
  ts "building the guest kernel and initramfs from $KPKG"
  rm -rf "$KDIR.tmp" && mkdir -p "$KDIR.tmp/deb" "$KDIR.tmp/ir"
  ( cd "$KDIR.tmp/deb" && apt-get download "$KPKG" >/dev/null 2>&1 ) || die "apt-get download $KPKG failed"
  dpkg -x "$KDIR.tmp/deb/"*.deb "$KDIR.tmp/x"
  KVER=$(ls "$KDIR.tmp/x/lib/modules")
  M=$KDIR.tmp/x/lib/modules/$KVER
  IR=$KDIR.tmp/ir
  mkdir -p "$IR"/{bin,sbin,proc,sys,dev,lower,rw,newroot} "$IR/lib/modules/$KVER/kernel"
  cp /bin/busybox "$IR/bin/busybox"
  for d in "${MODULE_DIRS[@]}"; do
    [ -d "$M/kernel/$d" ] || continue
    mkdir -p "$IR/lib/modules/$KVER/kernel/$d"
    cp -r "$M/kernel/$d/." "$IR/lib/modules/$KVER/kernel/$d/"
  done
  cp "$M"/modules.{order,builtin,builtin.modinfo} "$IR/lib/modules/$KVER/"
  depmod -b "$IR" "$KVER"
  install -m 0755 "$HERE/guest/init.sh" "$IR/init"
  mkdir -p "$KDIR"
  (cd "$IR" && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1) > "$KDIR/initrd.gz"
  cp "$KDIR.tmp/x/boot/vmlinuz-$KVER" "$KDIR/vmlinuz"
  cp "$KDIR.tmp/x/boot/config-$KVER" "$KDIR/config"
  echo "$STAMP" > "$KDIR/initrd.stamp"
  rm -rf "$KDIR.tmp"
fi

# --- 3. the project's venv ----------------------------------------------------------------
if [ ! -x "$VENV/bin/smallbms" ]; then
  [ "$VENV" = "$REPO/.venv" ] || die "E2E_VENV=$VENV has no bin/smallbms"
  ts "building the project's venv (make)"
  make -C "$REPO" --no-print-directory .venv/bin/smallbms >/dev/null || die "building .venv failed"
fi
# The guests import from a read-only share under TCG, where compiling is slow: compile on the
# host once (a no-op when nothing changed).
"$VENV/bin/python" -m compileall -q -j 2 "$REPO/bms_daemon" "$REPO/gatt" "$REPO/tests/e2e" \
  "$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" >/dev/null 2>&1 || true

# --- 4. the run directory: the one read-write share ----------------------------------------
RUN=$CACHE/run
rm -rf "$RUN"
mkdir -p "$RUN/out/periph" "$RUN/out/central" "$RUN/flags" "$RUN/results"
echo "$CASES" > "$RUN/cases"

PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "$RUN"/qemu-*.pid; do
    [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'echo "e2e: interrupted"; exit 2' INT TERM

boot() {  # role, serial-backend-for-the-Bluetooth-link
  timeout -k 10 "$BOOT_TIMEOUT" qemu-system-x86_64 -accel tcg -m "$GUEST_MEM" -smp 1 \
    -display none -no-reboot -nic none -pidfile "$RUN/qemu-$1.pid" \
    -kernel "$KDIR/vmlinuz" -initrd "$KDIR/initrd.gz" \
    -append "console=ttyS0 panic=-1 quiet work=$RUN repo=$REPO venv=$VENV role=$1 cases=$CASES eatt=${E2E_EATT:-0}" \
    -serial "file:$RUN/out/console-$1.log" -serial "$2" \
    -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
    -virtfs "local,path=$RUN,mount_tag=work,security_model=none,multidevs=remap" \
    > "$RUN/out/qemu-$1.log" 2>&1
}

ts "booting the peripheral and central guests (cases: $CASES)"
boot periph "unix:$RUN/bt.sock,server=on,wait=off" & PIDS+=($!)
for _ in $(seq 100); do [ -S "$RUN/bt.sock" ] && break; sleep 0.1; done
[ -S "$RUN/bt.sock" ] || die "the peripheral guest did not start (see $RUN/out/qemu-periph.log)"
boot central "unix:$RUN/bt.sock" & PIDS+=($!)
rc_p=0; rc_c=0
wait "${PIDS[0]}" || rc_p=$?
wait "${PIDS[1]}" || rc_c=$?
PIDS=()
ts "guests powered off (qemu exit: periph=$rc_p central=$rc_c)"
[ "$rc_p" = 124 ] || [ "$rc_c" = 124 ] && echo "e2e: a guest hit the ${BOOT_TIMEOUT}s timeout"

# --- 5. verdict ---------------------------------------------------------------------------
for role in periph central; do
  tr -d '\r' < "$RUN/out/console-$role.log" | grep -E '^\[(init|guest|periph|central)' | sed "s/^/  /" || true
done
set +e
"$VENV/bin/python" "$HERE/report.py" "$RUN" "$CASES"
RC=$?
set -e
WALL=$(elapsed)
rm -rf "$CACHE/last"
if [ $RC = 0 ]; then
  mv "$RUN" "$CACHE/last"
  echo "e2e: PASS in ${WALL} s (logs: $CACHE/last)"
else
  KEEP=$CACHE/failed-$(date +%Y%m%d-%H%M%S)
  mv "$RUN" "$KEEP"
  ln -sfn "$KEEP" "$CACHE/last"
  echo "e2e: FAIL in ${WALL} s; guest logs kept in $KEEP"
fi
exit $RC
