# roles: periph central
# Probe case (sourced by guest/guest.sh): bless + bleak smoke test of the guests' real BlueZ
# and the 31-byte advertisement budget with the instant-readout layout.
periph_main() {
  timeout 300 "$PY" "$G/guest/probe_periph.py"
}
central_main() {
  timeout 300 "$PY" "$G/guest/probe_central.py"
}
