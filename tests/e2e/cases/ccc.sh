# roles: periph central
# CCC case (sourced by guest/guest.sh): what real BlueZ does when a central that is not paired
# subscribes (CCC write: StartNotify / AcquireNotify) to a characteristic whose reads need
# encryption, with plain "notify" and with "encrypt-notify" (issue 16, finding 2).
periph_main() {
  timeout 300 "$PY" "$G/guest/ccc_periph.py"
}
central_main() {
  timeout 300 "$PY" "$G/guest/ccc_central.py"
}
