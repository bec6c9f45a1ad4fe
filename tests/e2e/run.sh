#!/usr/bin/env bash
# The e2e tier: smallbms against real Linux kernels: the Bluetooth stack, and a GPIO chip.
#
# Two qemu guests (software emulation: no KVM, no host Bluetooth needed) boot Debian's stock
# kernel; the peripheral runs `btvirt` (emulated LE controllers) and the central attaches to it
# over a serial line relayed through the host, so each guest has its own kernel, bluetoothd and
# system D-Bus, as a Raspberry Pi and a phone would.  Real SMP, real advertising limits, real
# GATT error codes: what the virtual BlueZ (gatt/virtual/) can only model.  A third guest boots
# a kernel with gpio-sim (Ubuntu's; Debian builds none) for the gpiod backend and the outputs'
# fail-safe.  A fourth boots Debian's kernel with its CAN modules for the CAN source on
# SocketCAN (a vcan bus).
#
# Everything it needs is built into a cache directory on first use (apt packages, the kernel
# unpacked not installed, an initramfs); the guests use the project's own venv (.venv, as
# `make test` builds it) through a read-only 9p share of the host's root.  See docs/testing.md.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE=${E2E_CACHE:-$REPO/.cache/e2e}
VENV=${E2E_VENV:-$REPO/.venv}
CASES=${E2E_CASES:-probe,daemon,gpio,can}
# Bounds, in seconds.  Generous because the machine's 2 cores are shared (TCG guests are CPU
# bound), bounded so that a hung guest cannot stall CI: a warm run takes about a minute.
BOOT_TIMEOUT=${E2E_TIMEOUT:-480}     # each qemu, boot to power-off
GUEST_MEM=${E2E_GUEST_MEM:-512}      # MiB per guest; the guests use 60-200 MiB
APT_PACKAGES=(qemu-system-x86 bluez bluez-test-tools busybox-static kmod dbus curl zstd xz-utils
              iproute2)
# Module folders copied into the initramfs (the stock kernels have all of these as modules).
MODULE_DIRS=(crypto arch/x86/crypto lib net/bluetooth net/rfkill drivers/bluetooth net/9p fs/9p
             fs/netfs fs/fscache fs/overlayfs fs/configfs drivers/virtio drivers/char/hw_random
             drivers/gpio)
# ... and for the CAN guest only (a kernel directory of its own, so adding these does not
# rebuild the others): SocketCAN and the vcan driver.
CAN_MODULE_DIRS=(net/can drivers/net/can)

usage() {
  cat <<USAGE
Usage: tests/e2e/run.sh [--cases LIST] [--help]

Boots qemu guests and runs the e2e scenarios against real kernels: two guests (peripheral,
central) with real BlueZ for the Bluetooth cases, one guest with a gpio-sim chip for the GPIO
case.  Exit status 0 = every check passed, 1 = a check failed, 2 = the harness itself failed.

  --cases LIST   comma-separated scenarios to run (default: $CASES)
                   probe   bless + bleak smoke test and the 31-byte advertisement budget
                   daemon  the real 'smallbms run' daemon and 'smallbms-client' + victron-ble
                   gpio    the daemon's gpiod backend on a kernel GPIO chip (gpio-sim):
                           outputs, remote input, SIGKILL and SIGTERM leave the lines released
                   can     the daemon reading a CAN-bus BMS over SocketCAN (vcan0): pre-alarm,
                           LOAD 30 s later, then the sender stops: W-B05, A-B05
                   victron the daemon hearing a Victron battery over real BlueZ on the adapter
                           it advertises on (not in the default list: --cases victron)

Environment: E2E_CACHE (default .cache/e2e), E2E_VENV (default .venv), E2E_TIMEOUT
(seconds per guest, default $BOOT_TIMEOUT), E2E_EATT=1 (keep BlueZ's EATT on; see
docs/testing.md for the race that makes the tier turn it off), E2E_BONDED_RECONNECT=1 (the
daemon case reconnects after the bluetoothd restart with the bond kept, which reproduces the
BlueZ race of finding 4 in docs/testing.md; by default both sides forget the bond first),
E2E_UBUNTU_MIRROR (where the gpio case's kernel comes from; default
http://archive.ubuntu.com/ubuntu).  Logs of the last run: \$E2E_CACHE/last;
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

# Each case file names the guests it runs in ("# roles: periph central" or "# roles: gpio"):
# the Bluetooth cases share one boot of the guest pair, the GPIO case has its own guest.
BT_CASES=; GPIO_CASES=; CAN_CASES=; REPORT_SPEC=
for c in ${CASES//,/ }; do
  [ -f "$HERE/cases/$c.sh" ] || { echo "run.sh: no case '$c' (tests/e2e/cases/*.sh; try --help)" >&2; exit 2; }
  roles=$(sed -n 's/^# roles: //p' "$HERE/cases/$c.sh")
  case $roles in
    "periph central") BT_CASES+=${BT_CASES:+,}$c ;;
    gpio) GPIO_CASES+=${GPIO_CASES:+,}$c ;;
    can) CAN_CASES+=${CAN_CASES:+,}$c ;;
    *) echo "run.sh: case '$c' names no known roles ('# roles: $roles')" >&2; exit 2 ;;
  esac
  REPORT_SPEC+=${REPORT_SPEC:+,}$c:${roles// /+}
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

# --- 2. guest kernels and initramfs --------------------------------------------------------
# build_kernel NAME DEB...: unpack a kernel package set (not installed) into $CACHE/NAME as
# vmlinuz + an initramfs holding busybox, the modules of MODULE_DIRS (decompressed: busybox's
# modprobe reads plain .ko only) and guest/init.sh as /init.  Rebuilt when init.sh changes.
STAMP=$( (sha256sum "$HERE/guest/init.sh"; echo "${MODULE_DIRS[*]}") | sha256sum | cut -c1-16)
kernel_ready() { [ -f "$CACHE/$1/vmlinuz" ] && [ "$(cat "$CACHE/$1/initrd.stamp" 2>/dev/null)" = "${2:-$STAMP}" ]; }
build_kernel() {
  local name=$1 kdir=$CACHE/$1 tmp=$CACHE/$1.tmp; shift
  local x=$tmp/x ir=$tmp/ir kver m d deb
  for deb in "$@"; do dpkg -x "$deb" "$x"; done
  kver=$(ls "$x/lib/modules")
  m=$x/lib/modules/$kver
  mkdir -p "$ir"/{bin,sbin,proc,sys,dev,lower,rw,newroot} "$ir/lib/modules/$kver/kernel"
  cp /bin/busybox "$ir/bin/busybox"
  for d in "${MODULE_DIRS[@]}"; do
    [ -d "$m/kernel/$d" ] || continue
    mkdir -p "$ir/lib/modules/$kver/kernel/$d"
    cp -r "$m/kernel/$d/." "$ir/lib/modules/$kver/kernel/$d/"
  done
  find "$ir/lib/modules" -name '*.ko.zst' -exec zstd -q -d --rm {} \;
  find "$ir/lib/modules" -name '*.ko.xz' -exec xz -d {} \;
  cp "$m"/modules.{order,builtin,builtin.modinfo} "$ir/lib/modules/$kver/"
  depmod -b "$ir" "$kver"
  install -m 0755 "$HERE/guest/init.sh" "$ir/init"
  mkdir -p "$kdir"
  (cd "$ir" && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1) > "$kdir/initrd.gz"
  cp "$x/boot/vmlinuz-$kver" "$kdir/vmlinuz"
  cp "$(ls "$x"/boot/config-* "$m"/config 2>/dev/null | head -1)" "$kdir/config" 2>/dev/null || true
  echo "$STAMP" > "$kdir/initrd.stamp"
  rm -rf "$tmp"
}

# Debian's own kernel for the Bluetooth and CAN guests.  The package name is resolved, not
# pinned: security updates rename its ABI (6.1.0-NN).
debian_kernel() {
  local k
  k=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  [ -n "$k" ] || k=$(cd "$CACHE" && ls -d linux-image-* 2>/dev/null | grep -v -- '-can$' | tail -1)
  [ -n "$k" ] || die "cannot resolve the Debian kernel package (apt-cache depends linux-image-amd64)"
  echo "$k"
}
if [ -n "$BT_CASES" ]; then
  KPKG=$(debian_kernel)
  KDIR=$CACHE/$KPKG
  if ! kernel_ready "$KPKG"; then
    ts "building the Bluetooth guests' kernel and initramfs from $KPKG"
    rm -rf "$KDIR.tmp" && mkdir -p "$KDIR.tmp/deb"
    ( cd "$KDIR.tmp/deb" && apt-get download "$KPKG" >/dev/null 2>&1 ) || die "apt-get download $KPKG failed"
    build_kernel "$KPKG" "$KDIR.tmp/deb/"*.deb
  fi
fi

CAN_KDIR=
if [ -n "$CAN_CASES" ]; then
  CAN_KPKG=$(debian_kernel)
  CAN_KDIR=$CACHE/$CAN_KPKG-can
  CAN_STAMP=$(echo "$STAMP ${CAN_MODULE_DIRS[*]}" | sha256sum | cut -c1-16)
  if ! kernel_ready "$CAN_KPKG-can" "$CAN_STAMP"; then
    ts "building the CAN guest's kernel and initramfs from $CAN_KPKG"
    rm -rf "$CAN_KDIR.tmp" && mkdir -p "$CAN_KDIR.tmp/deb"
    ( cd "$CAN_KDIR.tmp/deb" && apt-get download "$CAN_KPKG" >/dev/null 2>&1 ) \
      || die "apt-get download $CAN_KPKG failed"
    ( MODULE_DIRS+=("${CAN_MODULE_DIRS[@]}"); STAMP=$CAN_STAMP
      build_kernel "$CAN_KPKG-can" "$CAN_KDIR.tmp/deb/"*.deb )
  fi
fi

GPIO_KDIR=
if [ -n "$GPIO_CASES" ]; then
  # The GPIO guest needs a kernel built with gpio-sim, which Debian's kernels (6.1, and 6.12
  # in bookworm-backports) leave out.  Ubuntu 24.04's generic kernel has it (a module in
  # linux-modules-extra); these are its release-pocket packages, which the archive keeps for
  # the life of the release, pinned by checksum.
  GPIO_KPKG=ubuntu-noble-6.8.0-31-generic
  GPIO_KBASE=${E2E_UBUNTU_MIRROR:-http://archive.ubuntu.com/ubuntu}/pool/main/l/linux
  GPIO_KDEBS=(
    "linux-image-unsigned-6.8.0-31-generic_6.8.0-31.31_amd64.deb 35115ceb5ddc1e73034a73d6b064b9c6d38c534f20279fd7229c510515b931d8"
    "linux-modules-6.8.0-31-generic_6.8.0-31.31_amd64.deb 3f17f2c279257eb50e40da44390bdf8272c440ca078831c348773d1314b5c2fe"
    "linux-modules-extra-6.8.0-31-generic_6.8.0-31.31_amd64.deb 8880451586278da0522a178ad54e940328447d80f47393a0e46185e1dd9dd879"
  )
  GPIO_KDIR=$CACHE/$GPIO_KPKG
  if ! kernel_ready "$GPIO_KPKG"; then
    ts "building the GPIO guest's kernel and initramfs from $GPIO_KPKG"
    rm -rf "$GPIO_KDIR.tmp" && mkdir -p "$GPIO_KDIR.tmp/deb"
    debs=()
    for entry in "${GPIO_KDEBS[@]}"; do
      read -r file sum <<< "$entry"
      if ! curl -fsS --retry 3 -m 600 -o "$GPIO_KDIR.tmp/deb/$file" "$GPIO_KBASE/$file"; then
        # Only a network that cannot reach the archive lands here: the GPIO case is then
        # reported "not covered", with this reason, rather than failed or silently dropped.
        echo "could not download $GPIO_KBASE/$file" > "$CACHE/gpio-kernel.unavailable"
        GPIO_KDIR=; break
      fi
      echo "$sum  $GPIO_KDIR.tmp/deb/$file" | sha256sum -c --quiet - \
        || die "$file: checksum mismatch (expected $sum)"
      debs+=("$GPIO_KDIR.tmp/deb/$file")
    done
    if [ -n "$GPIO_KDIR" ]; then
      rm -f "$CACHE/gpio-kernel.unavailable"
      build_kernel "$GPIO_KPKG" "${debs[@]}"
    else
      rm -rf "$CACHE/$GPIO_KPKG.tmp"
      ts "GPIO guest kernel unavailable: $(cat "$CACHE/gpio-kernel.unavailable")"
    fi
  fi
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
mkdir -p "$RUN/out/periph" "$RUN/out/central" "$RUN/out/gpio" "$RUN/out/can" "$RUN/flags" \
  "$RUN/results"
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

boot() {  # role, kernel directory, cases, serial backend for the Bluetooth link
  timeout -k 10 "$BOOT_TIMEOUT" qemu-system-x86_64 -accel tcg -m "$GUEST_MEM" -smp 1 \
    -display none -no-reboot -nic none -pidfile "$RUN/qemu-$1.pid" \
    -kernel "$2/vmlinuz" -initrd "$2/initrd.gz" \
    -append "console=ttyS0 panic=-1 quiet work=$RUN repo=$REPO venv=$VENV role=$1 cases=$3 eatt=${E2E_EATT:-0} bonded=${E2E_BONDED_RECONNECT:-0}" \
    -serial "file:$RUN/out/console-$1.log" -serial "$4" \
    -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
    -virtfs "local,path=$RUN,mount_tag=work,security_model=none,multidevs=remap" \
    > "$RUN/out/qemu-$1.log" 2>&1
}

CONSOLES=()
if [ -n "$BT_CASES" ]; then
  ts "booting the peripheral and central guests (cases: $BT_CASES)"
  boot periph "$KDIR" "$BT_CASES" "unix:$RUN/bt.sock,server=on,wait=off" & PIDS+=($!)
  for _ in $(seq 100); do [ -S "$RUN/bt.sock" ] && break; sleep 0.1; done
  [ -S "$RUN/bt.sock" ] || die "the peripheral guest did not start (see $RUN/out/qemu-periph.log)"
  boot central "$KDIR" "$BT_CASES" "unix:$RUN/bt.sock" & PIDS+=($!)
  rc_p=0; rc_c=0
  wait "${PIDS[0]}" || rc_p=$?
  wait "${PIDS[1]}" || rc_c=$?
  PIDS=()
  ts "guests powered off (qemu exit: periph=$rc_p central=$rc_c)"
  [ "$rc_p" = 124 ] || [ "$rc_c" = 124 ] && echo "e2e: a guest hit the ${BOOT_TIMEOUT}s timeout"
  CONSOLES+=(periph central)
fi
if [ -n "$GPIO_CASES" ] && [ -n "$GPIO_KDIR" ]; then
  # After the Bluetooth pair, not beside it: three TCG guests on two cores would slow them all.
  ts "booting the GPIO guest (cases: $GPIO_CASES)"
  rc_g=0
  boot gpio "$GPIO_KDIR" "$GPIO_CASES" null || rc_g=$?
  ts "GPIO guest powered off (qemu exit: $rc_g)"
  [ "$rc_g" = 124 ] && echo "e2e: the GPIO guest hit the ${BOOT_TIMEOUT}s timeout"
  CONSOLES+=(gpio)
elif [ -n "$GPIO_CASES" ]; then
  for c in ${GPIO_CASES//,/ }; do
    "$VENV/bin/python" -c 'import json, sys
case, why, out = sys.argv[1:]
item = {"name": "the gpio case (a kernel with gpio-sim)", "why": why}
json.dump({"case": case, "role": "gpio", "checks": [], "not_covered": [item], "facts": {}},
          open(out, "w"))' "$c" "$(cat "$CACHE/gpio-kernel.unavailable")" "$RUN/results/$c.gpio.json"
  done
fi

if [ -n "$CAN_CASES" ]; then
  ts "booting the CAN guest (cases: $CAN_CASES)"
  rc_can=0
  boot can "$CAN_KDIR" "$CAN_CASES" null || rc_can=$?
  ts "CAN guest powered off (qemu exit: $rc_can)"
  [ "$rc_can" = 124 ] && echo "e2e: the CAN guest hit the ${BOOT_TIMEOUT}s timeout"
  CONSOLES+=(can)
fi

# --- 5. verdict ---------------------------------------------------------------------------
for role in "${CONSOLES[@]}"; do
  tr -d '\r' < "$RUN/out/console-$role.log" | grep -E '^\[(init|guest|periph|central|gpio|can)' | sed "s/^/  /" || true
done
set +e
"$VENV/bin/python" "$HERE/report.py" "$RUN" "$REPORT_SPEC"
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
