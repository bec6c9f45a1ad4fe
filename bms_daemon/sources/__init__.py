"""bms_daemon/sources."""
