"""Victron devices heard over Bluetooth: Smart Lithium batteries and battery monitors.

:mod:`.records` decodes their instant-readout records (0x05, 0x02) with ``victron-ble`` and
its fixes, :mod:`.encode` builds such records for test broadcasters and benchmarks,
:mod:`.frames` decides which frames of one device to trust (nonces, keys, record types).
"""
