"""gatt/virtual."""
