#!/usr/bin/env bash
# Runs the installation steps of docs/raspberry-pi.md §4 as written, inside a Debian root
# (`.ci/chroot.sh --suite trixie|bookworm -- bash tests/install/pi-steps.sh`), then checks what
# they left: the unit, the configuration, the system user, a working `smallbms`.
#
# What a chroot cannot do is stood in for, and only that: `sudo` (we are root), `sudoedit`
# (nobody edits), `systemctl` (no booted systemd: the calls are recorded and checked), the
# `gpio` group (Raspberry Pi OS has it, Debian does not), and the package source (the
# placeholder git URL becomes this checkout).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
DOC=$REPO/docs/raspberry-pi.md
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

steps=$(sed -n '/<!-- install-steps:begin -->/,/<!-- install-steps:end -->/p' "$DOC" |
        sed -e '/^<!--/d' -e '/^```/d')
[ -n "$steps" ] || { echo "pi-steps: no install-steps block in $DOC" >&2; exit 2; }
steps=${steps//git+https:\/\/github.com\/<you>\/smallbms/file://$REPO}

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq && apt-get install -y -qq adduser >/dev/null  # Pi OS has it
getent group gpio >/dev/null || groupadd --system gpio
cat > "$WORK/stand-ins.sh" <<STANDINS
sudo() { "\$@"; }
sudoedit() { :; }
systemctl() { echo "systemctl \$*" >> "$WORK/systemctl"; }
STANDINS
echo "pi-steps: running the steps of docs/raspberry-pi.md on $(. /etc/os-release; echo "$PRETTY_NAME"), $(python3 --version)"
bash -euc "source '$WORK/stand-ins.sh'; set -x; $steps" 2>&1 | sed 's/^/  | /'

fail() { echo "pi-steps: FAILED: $*" >&2; exit 1; }
unit=/etc/systemd/system/smallbms.service
grep -qx "ExecStart=/opt/smallbms/venv/bin/smallbms run --config /etc/smallbms/smallbms.toml" \
  "$unit" || fail "$unit does not run /opt/smallbms/venv/bin/smallbms"
/opt/smallbms/venv/bin/smallbms check-config /etc/smallbms/smallbms.toml >/dev/null ||
  fail "the installed example configuration is not valid"
id -nG smallbms | grep -qw gpio || fail "the smallbms user is not in the gpio group"
id -nG smallbms | grep -qw bluetooth || fail "the smallbms user is not in the bluetooth group"
/opt/smallbms/venv/bin/python -c 'import gpiod, bless, bleak' || fail "the [gpio] extra or BLE"
grep -qx "systemctl enable --now smallbms" "$WORK/systemctl" || fail "no systemctl enable"
echo "pi-steps: OK ($(/opt/smallbms/venv/bin/smallbms --version), $(/opt/smallbms/venv/bin/python --version))"
