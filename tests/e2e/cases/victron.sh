# roles: periph central
# Victron case (sourced by guest/guest.sh): the central broadcasts a Smart Lithium battery's
# instant-readout frames (record 0x05) from its controller; the peripheral's `smallbms run`
# hears them over real BlueZ on the adapter it advertises on (bank current from a VE.Direct
# shunt on a pseudo-terminal), and its outputs follow the battery's cells.
periph_main() {
  timeout 900 "$PY" "$G/guest/victron_periph.py"
}
central_main() {
  timeout 900 "$PY" "$G/guest/victron_central.py"
}
