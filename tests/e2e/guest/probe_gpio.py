"""Probe case, GPIO: is there a kernel GPIO simulator in this guest to test gpiod for real?

The product's fail-safe (a killed daemon leaves every output released) can only be proven
against a kernel GPIO chip.  The gpio-sim module (configfs) provides one; init.sh tries to
load it.  Debian 12's stock kernel is built without it (CONFIG_GPIO_SIM and
CONFIG_GPIO_MOCKUP unset), in which case this reports "not covered" rather than pretending.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

from e2elib import Results

GPIO_SIM_CONFIGFS = Path("/sys/kernel/config/gpio-sim")


def main() -> int:
    os.environ["E2E_ROLE"] = "gpio"
    results = Results("probe")
    if not GPIO_SIM_CONFIGFS.is_dir():
        results.uncovered(
            "gpiod backend on a real kernel GPIO chip; SIGKILL releases the lines",
            f"no gpio-sim in the guest kernel {platform.release()} (Debian builds it with "
            "CONFIG_GPIO_SIM and CONFIG_GPIO_MOCKUP unset)")
        return 0
    results.uncovered("gpiod backend on gpio-sim",
                      "gpio-sim is present but the gpio scenario is not written yet")
    return 0


if __name__ == "__main__":
    sys.exit(main())
