# roles: gpio
# GPIO case (sourced by guest/guest.sh): the real `smallbms run` with the gpiod backend on a
# gpio-sim chip, in a guest of its own (its kernel has gpio-sim; no Bluetooth).
gpio_main() {
  timeout 600 "$PY" "$G/guest/gpio_case.py"
}
