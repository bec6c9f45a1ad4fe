#!/bin/bash
# Runs inside a guest (chrooted by init.sh), as ROLE = periph | central | gpio | can.
#
# Brings up the guest's Bluetooth (system D-Bus, controller, bluetoothd; not in the gpio and
# can guests), then runs each case of CASES in order: tests/e2e/cases/<case>.sh defines
# `<role>_main` for each of its roles.
# The two guests meet through flag files in the shared run directory ($WORK/flags): they have
# no network, and the run directory is the only thing they share.
set -u
G=$REPO/tests/e2e
OUT=$WORK/out/$ROLE
PY=$VENV/bin/python
export PATH=$VENV/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
export E2E_WORK=$WORK E2E_ROLE=$ROLE
mkdir -p "$OUT"
up() { cut -d' ' -f1 /proc/uptime; }
log() { echo "[$ROLE] t=$(up) $*"; }
signal() { touch "$WORK/flags/$1"; }
# await FLAG SECONDS: poll for the other guest's flag (the guests share no clock or socket).
await() {
  local i n=$(( ${2:-120} * 10 ))
  for ((i = 0; i < n; i++)); do [ -e "$WORK/flags/$1" ] && return 0; sleep 0.1; done
  log "timed out after ${2:-120}s waiting for $1"; return 1
}
wait_for() {  # SECONDS COMMAND...: poll a condition
  local i n=$(( $1 * 10 )); shift
  for ((i = 0; i < n; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  return 1
}

# EATT off (one ATT bearer), unless E2E_EATT=1: with BlueZ 5.66's default of 3 channels, the
# MTU exchange sometimes leaves on an EATT bearer, is refused (ATT 0x06) or never answered,
# and service discovery fails ("MTU Exchange failed", 1 connect in about 15 under TCG).
# See docs/testing.md, "Real BlueZ findings".
if [ "${EATT:-0}" != 1 ]; then
  sed -i 's/^#Channels = 3$/Channels = 1/' /etc/bluetooth/main.conf
  grep -q '^Channels = 1$' /etc/bluetooth/main.conf || log "could not disable EATT"
fi

# bluetoothd -d writes each debug line to stderr unbuffered, and one of them ("Elevating
# security level...") sits between its read and its raise of a reconnecting central's security
# level: the window of the race in finding 4 (docs/testing.md).  Written straight to the shared
# run directory (virtio-9p under TCG) each line costs milliseconds and can block; so every
# bluetoothd of a guest (this one, and the one daemon_periph.py restarts) appends to a file on
# the guest's tmpfs, and `tail -F` copies it to the run directory on its own time.
BLUETOOTHD_LOG=/tmp/bluetoothd.log
BLUETOOTHD_PID=
LOGCOPY=
start_bluetoothd() {
  /usr/libexec/bluetooth/bluetoothd -n -d >> "$BLUETOOTHD_LOG" 2>&1 &
  BLUETOOTHD_PID=$!
  if [ -z "$LOGCOPY" ]; then
    tail -n +1 -F "$BLUETOOTHD_LOG" >> "$OUT/bluetoothd.log" 2>/dev/null & LOGCOPY=$!
  fi
  wait_for 30 sh -c 'bluetoothctl list | grep -q Controller'
}
stop_bluetoothd() {  # the way a crash looks to its clients: SIGKILL
  kill -KILL "$BLUETOOTHD_PID" 2>/dev/null
  wait "$BLUETOOTHD_PID" 2>/dev/null
}

log "userland up ($(uname -r)), cases: $CASES"
dbus-daemon --system --fork || log "dbus-daemon failed"
case $ROLE in
  gpio|can) ;;  # no Bluetooth: these guests prove the GPIO edge and the CAN source
  periph)
    # One LE-only 4.2 controller (hci0 here) plus, in the same emulator, an H4 server socket
    # whose second controller becomes the central's hci0 through the relay and the host.
    (cd /tmp && exec btvirt -L -l1 -s > "$OUT/btvirt.log" 2>&1) &
    wait_for 10 test -S /tmp/bt-server-le || log "btvirt server socket missing"
    $PY "$G/guest/relay.py" /dev/ttyS1 /tmp/bt-server-le "$WORK/flags/relay.ready" \
      > "$OUT/relay.log" 2>&1 &
    ;;
  central)
    await relay.ready 240 || exit 1
    btattach -B /dev/ttyS1 -P h4 > "$OUT/btattach.log" 2>&1 &
    ;;
esac
MON=
if [ "$ROLE" != gpio ] && [ "$ROLE" != can ]; then
  wait_for 30 test -e /sys/class/bluetooth/hci0 || log "no hci0"
  btmon -w "$OUT/btmon.snoop" > /dev/null 2>&1 & MON=$!
  start_bluetoothd || log "bluetoothd did not register a controller"
  log "controller: $(bluetoothctl list | tr '\n' ' ')"
fi

for c in ${CASES//,/ }; do
  if [ ! -f "$G/cases/$c.sh" ]; then log "unknown case $c"; continue; fi
  unset -f periph_main central_main gpio_main
  # shellcheck source=/dev/null
  . "$G/cases/$c.sh"
  log "case $c: start"
  "${ROLE}_main" > "$OUT/$c.log" 2>&1
  log "case $c: exit $?"
  signal "$c.$ROLE.end"
  case $ROLE in gpio|can) continue ;; esac  # alone in its guest: nobody to wait for
  other=periph; [ "$ROLE" = periph ] && other=central
  await "$c.$other.end" 300
done

log "mem used/total MiB: $(free -m | awk '/Mem:/{print $3"/"$2}')"
if [ -n "$MON" ]; then kill "$MON" 2>/dev/null; wait "$MON" 2>/dev/null; fi
if [ -n "$LOGCOPY" ]; then  # the whole log, whatever tail had not copied yet
  kill "$LOGCOPY" 2>/dev/null; wait "$LOGCOPY" 2>/dev/null
  cp "$BLUETOOTHD_LOG" "$OUT/bluetoothd.log"
fi
sync
