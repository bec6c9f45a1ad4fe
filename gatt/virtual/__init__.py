"""A virtual BlueZ: ``org.bluez`` emulated on a private D-Bus, for bless and bleak without radio.

``smallbms virtual-bus`` (or :func:`gatt.virtual.bus.start_virtual_bus`) starts a private
``dbus-daemon`` and an emulator process that owns ``org.bluez`` on it, with adapters hci0
(peripheral side, bless's default) and hci1.. (centrals, ``bluez={"adapter": "hci1"}`` in
bleak).  Point ``DBUS_SYSTEM_BUS_ADDRESS`` at it and both libraries talk to it as to BlueZ 5.66:
advertising (31-byte legacy PDUs built from the registered LEAdvertisement1, live updates
through PropertiesChanged), discovery reports, Connect/Pair/Disconnect, the mirrored GATT tree
with BlueZ's object paths, reads, writes, notifications, AcquireWrite/AcquireNotify, errors
mapped application -> ATT -> central, clean-up when a client leaves the bus, and a test-only
control interface (``org.smallbms.VirtualBlueZ1`` at ``/org/bluez``: RestartBluetoothd, DropLink,
SetPairingMode, ListAdvertisements/Refusals/Links/Applications).

Modules: :mod:`.air` (AD bytes), :mod:`.errors` (error mapping), :mod:`.adapter`,
:mod:`.device` (Device1 and the link), :mod:`.gatt_mirror` (attribute database and its mirror),
:mod:`.acquire`, :mod:`.monitor` (passive scanning), :mod:`.world` (routing, clean-up),
:mod:`.control`, :mod:`.service` (the emulator process), :mod:`.bus` (launcher), :mod:`.cli`,
:mod:`.config`, :mod:`.beacon` (test broadcasters, also on real BlueZ).

Honest limits: what real BlueZ (and the air) do that this does not
-------------------------------------------------------------------
Radio and timing
  * No radio: no loss, no interference, no range.  RSSI is the configured value give or take
    2 dB.  Latency is a D-Bus round trip (about a millisecond), not a connection interval
    (7.5 ms to 4 s on hardware): nothing timing-sensitive is validated here.
  * Advertising reports arrive every ``report_interval`` (0.1 s) while a central discovers,
    whatever MinInterval/MaxInterval say.  Connection parameters, PHY, data length, TX power
    are not modelled.
Advertising and discovery
  * Legacy advertising only (as BlueZ 5.66 uses for a connectable advertisement).  Flags are
    always present (LE-only controllers).  Experimental LEAdvertisement1 properties (Data,
    ScanResponse*, SecondaryChannel, intervals) are ignored; several registered instances take
    turns on the air.  A PropertiesChanged refresh that no longer fits is refused silently, as
    on BlueZ: the old data stays on the air (``ListAdvertisements`` shows ``last_error``).
  * Device1 on a central: ManufacturerData/ServiceData are replaced by each report (BlueZ may
    keep other companies' entries from earlier reports); TxPower and Appearance are not
    exposed; Name is "" rather than absent for a nameless advertiser.  Devices are never
    removed after discovery stops (BlueZ drops temporary devices after about 30 s).
    Discovery filters: UUIDs, RSSI and Pattern; DuplicateData is ignored (every report is
    signalled, where BlueZ signals only changed properties).  Passive scanning
    (AdvertisementMonitor1, only with ``--experimental`` as on BlueZ 5.66: :mod:`.monitor`)
    has no RSSI thresholds and never sends DeviceLost.  A non-connectable advertisement
    goes out from the adapter's own address (the kernel uses a random non-resolvable one).
    Any adapter can scan while it advertises and serves GATT (as on BlueZ); it never hears
    its own advertisement.
    No Adapter1.ConnectDevice, no BR/EDR at all.
GATT
  * The peripheral's own GAP (0x1800) and GATT (0x1801) services are not mirrored, so there is
    no Service Changed characteristic; application handles start at 0x0010 and are assigned in
    object-path order.  Service discovery is instant and nothing is cached between connections.
    When an application (un)registers while a central is connected, the central's objects are
    added or removed at once, as after a Service Changed indication.
  * The MTU is fixed per bus (``--mtu``, default 247); there is no exchange.  Reads longer than
    MTU-1 bytes are done as BlueZ does (Read Blob with the ``offset`` option): an application
    that ignores ``offset`` (bless 0.3.0 does) returns corrupted long values, here as on
    hardware.  Long writes reach the application in one WriteValue (BlueZ merges prepared
    writes).  Reliable writes, ``authorize`` and ``prepare-authorize`` are not modelled;
    indications are delivered like notifications and the application's Confirm is not called.
  * The CCC descriptor that BlueZ adds is answered locally; writing it is refused (clients use
    StartNotify).  The application hears StartNotify on the first subscription of any central
    and StopNotify when the last one goes (BlueZ's per-characteristic counter).
  * ``org.bluez.Error.Failed`` with a message "0x80".."0x9F" becomes that ATT code (newer
    BlueZ); some older BlueZ versions always send 0x80.
Security, links, life cycle
  * No SMP.  As on BlueZ 5.66, Device1.Pair is refused while no agent is registered
    (AgentManager1 records agents but never calls them); with one, Pair succeeds as configured
    (``--pairing just-works`` gives an encrypted link, ``authenticated`` an authenticated one,
    ``reject`` fails).  Bonds last as long as the emulator process: a bluetoothd restart forgets
    them (BlueZ keeps them on disk).  No privacy/RPA.
  * Connect to a device that is not advertising connectable fails at once ("Software caused
    connection abort") instead of timing out; there is no connection limit.  A link is lost
    only through ``DropLink``.  As on BlueZ, there is one link per pair of adapters: clients of
    the same central adapter share it, Device1.Disconnect ends it for all of them, and a
    central process that exits does not end it.
  * Both adapters live in one emulated bluetoothd, so RestartBluetoothd restarts the centrals'
    side as well; on hardware the central is usually another machine.

Found with it, true on hardware too: bless 0.3.0's D-Bus library (dbus-next 0.2.3) drops its
connection when its socket buffer fills, so a few hundred notifications emitted in one go kill
the server's connection; pace bursts (tests/virtual/vbz_peripheral.py ``Peripheral.flush``).
"""
