# roles: can
# CAN case (sourced by guest/guest.sh): the real `smallbms run` reading a CAN-bus BMS over
# SocketCAN (vcan0) in a guest of its own (Debian's kernel with its CAN modules; no Bluetooth).
can_main() {
  timeout 600 "$PY" "$G/guest/can_case.py"
}
