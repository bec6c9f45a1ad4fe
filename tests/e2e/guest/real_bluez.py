"""What real BlueZ 5.66 does, as the e2e tier observed it, for the virtual bus to match.

The e2e probe case checks these against real bluetoothd in qemu (so a BlueZ update that
changes them fails there), and tests/e2e/test_virtual_agrees.py checks the virtual BlueZ
against the same values on every `make test`.  docs/testing.md lists each disagreement found.
"""

from __future__ import annotations

# RegisterAdvertisement of a connectable advertisement whose data exceed 31 bytes (flags 3 +
# 128-bit service UUID 18 + the readout's manufacturer data 28): bluetoothd logs "Advertising
# data too long or couldn't be generated." and the kernel's MGMT status 0xea, and the D-Bus
# caller gets this error, with this message and no detail.
TOO_LONG_ERROR = "org.bluez.Error.Failed"
TOO_LONG_MESSAGE = "Failed to register advertisement"

# `smallbms-client set discharge_floor 150` against the real daemon: the BMS refuses the
# value (ATT 0x80 and its 0x80 result indication), the CLI exits 5 with this line on stderr.
INVALID_WRITE_ARGS = ("set", "discharge_floor", "150")
INVALID_WRITE_EXIT = 5
INVALID_WRITE_MESSAGE = (
    "smallbms-client: discharge_floor = 150: discharge_floor 150% is out of range 0-99%"
)

# A central that is not paired (no agent: it cannot pair) subscribes to a characteristic whose
# reads need encryption (ccc case).  BlueZ's CCC takes its permissions from the notify flags
# only (src/gatt-database.c parse_chrc_flags): with "notify" the CCC write is accepted and the
# central receives every notification although it may not read the value; "encrypt-notify"
# makes the CCC write need encryption.  The virtual BlueZ does the same (gatt_mirror.py).
# Observed on 5.66: the plain one delivers every notification to the unpaired central, and with
# NotifyAcquired the application's AcquireNotify is called with that central in "device" (and
# when that call failed, bluetoothd 5.66 crashed with SIGSEGV at the next connection); the
# encrypt-notify one is refused (the central, unable to pair without an agent, reports ATT 0x0e
# "Unlikely Error"; the virtual BlueZ answers insufficient encryption, 0x0f: both refuse).
CCC_UNPAIRED = {
    "plain": "subscribed",
    "enc": "refused",
}
