"""The BLE side of smallbms: GATT profile and codecs, bless adapter, advertisements,
bleak client, and the virtual BlueZ used where no Bluetooth hardware exists."""
