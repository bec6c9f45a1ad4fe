"""bms_daemon/gpio."""
