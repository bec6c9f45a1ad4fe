# roles: periph central
# Daemon case (sourced by guest/guest.sh): the real `smallbms run` in the peripheral, started
# as systemd would; `smallbms-client` and victron-ble in the central.
periph_main() {
  timeout 900 "$PY" "$G/guest/daemon_periph.py"
}
central_main() {
  timeout 900 "$PY" "$G/guest/daemon_central.py"
}
