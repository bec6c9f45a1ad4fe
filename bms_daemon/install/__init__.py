"""What an installed package carries for the system it runs on: the systemd unit and the
example configuration (``smallbms install-service`` writes them where systemd looks).

The two files live in the repository's ``systemd/`` folder, where people reading the source
look for them; the entries here are links to them, so a wheel carries the same bytes and
``pip install smallbms`` needs no git checkout.
"""

from __future__ import annotations

import importlib.resources

UNIT_NAME = "smallbms.service"
CONFIG_NAME = "smallbms.toml"


def packaged_text(name: str) -> str:
    """The text of a file this package carries (``UNIT_NAME`` or ``CONFIG_NAME``)."""
    return importlib.resources.files(__name__).joinpath(name).read_text(encoding="utf-8")
