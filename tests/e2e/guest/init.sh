#!/bin/busybox sh
# /init of the e2e initramfs (built by tests/e2e/run.sh).
#
# Why an initramfs that chroots into the host's own root: the guest then runs the very
# bluetoothd, dbus-daemon, btvirt and Python venv that are installed on the host, unchanged,
# with no disk image to build.  The host's / comes in read-only over virtio-9p and gets a tmpfs
# overlay on top, so the guest can write anywhere (/etc/smallbms, /var/lib/smallbms, ...) the
# way a real Raspberry Pi install would, and nothing reaches the host except through the one
# read-write share (the run directory, where results, flags and logs go).
/bin/busybox --install -s /bin
ln -sf /bin/busybox /sbin/modprobe
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
arg() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
say() { echo "[init] $*"; }

# Bluetooth (vhci for btvirt, hci_uart for btattach), SMP crypto (cmac, ecdh), AF_ALG for
# btvirt's own crypto, 9p + overlay for the root, configfs + gpio-sim for GPIO when present.
for m in virtio_pci 9pnet_virtio 9p virtio_rng overlay hci_vhci hci_uart cmac ecdh_generic \
         algif_hash algif_skcipher configfs; do
  modprobe $m 2>/dev/null || grep -q "/$m.ko" /lib/modules/*/modules.builtin \
    || say "modprobe $m failed"
done
if modprobe gpio-sim 2>/dev/null; then say "gpio-sim loaded"; else say "gpio-sim not available"; fi

mkdir -p /lower /rw /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose hostroot /lower \
  || { say "cannot mount the host root"; poweroff -f; }
mount -t tmpfs -o mode=0755 tmpfs /rw
mkdir -p /rw/upper /rw/work
R=/newroot
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay $R \
  || { say "cannot mount the overlay root"; poweroff -f; }
mount -t proc proc $R/proc
mount -t sysfs sys $R/sys
mount -t devtmpfs dev $R/dev
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts devpts $R/dev/pts
mount -t tmpfs tmpfs $R/dev/shm
mount -t configfs configfs $R/sys/kernel/config 2>/dev/null
# Fresh, empty runtime directories: the host's own /run and /tmp must not leak in.
for d in /run /tmp /var/tmp /var/lib/bluetooth; do mkdir -p $R$d; mount -t tmpfs tmpfs $R$d; done
# ... but the checkout and its venv may live under one of them (CI clones wherever it likes,
# /tmp included): bring those back from the host's root.
for p in $(arg repo) $(arg venv); do
  [ -d "$R$p" ] || { mkdir -p $R$p && mount -o bind /lower$p $R$p; } \
    || { say "cannot reach $p"; poweroff -f; }
done
W=$(arg work)
mkdir -p $R$W
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 work $R$W \
  || { say "cannot mount the run directory"; poweroff -f; }
mkdir -p $R/run/dbus
chroot $R /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  HOME=/tmp TERM=dumb LANG=C.UTF-8 WORK=$W REPO=$(arg repo) VENV=$(arg venv) ROLE=$(arg role) \
  CASES=$(arg cases) EATT=$(arg eatt) \
  E2E_BONDED_RECONNECT=$(arg bonded) /bin/bash $(arg repo)/tests/e2e/guest/guest.sh
say "guest script exit=$? uptime=$(cut -d' ' -f1 /proc/uptime)"
sync
poweroff -f
