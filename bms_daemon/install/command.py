"""``smallbms install-service``: put the systemd unit and the example configuration in place.

It writes what a person would otherwise copy by hand from a git checkout: the unit (its
``ExecStart=`` and ``ExecStopPost=`` pointing at *this* installation's ``smallbms``, wherever
pip put it) and, only if none exists yet, the example configuration.  An existing
configuration is never replaced: it holds the user's wiring.  It does not create the system
user nor start anything; it prints those steps, so nothing happens to the machine that the
user did not read first.  Each file is written whole or not at all (temporary file, rename).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from bms_daemon.install import CONFIG_NAME, UNIT_NAME, packaged_text

EXIT_FAILED = 1
UNIT_DIR = Path("/etc/systemd/system")
CONFIG_DIR = Path("/etc/smallbms")
# The path the packaged unit names (the layout of docs/raspberry-pi.md); replaced on install.
PACKAGED_EXECUTABLE = "/opt/smallbms/venv/bin/smallbms"
PACKAGED_CONFIG = "/etc/smallbms/smallbms.toml"


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of ``smallbms install-service``."""
    parser.description = (
        f"Write the systemd unit ({UNIT_DIR / UNIT_NAME}) and, if none exists yet, the example "
        f"configuration ({CONFIG_DIR / CONFIG_NAME}); an existing configuration is kept. "
        "Prints the remaining steps (system user, systemctl); runs none of them."
    )
    parser.add_argument("--unit-dir", type=Path, default=UNIT_DIR, metavar="DIR",
                        help=f"where the unit goes (default: {UNIT_DIR})")
    parser.add_argument("--config-dir", type=Path, default=CONFIG_DIR, metavar="DIR",
                        help=f"where the configuration goes (default: {CONFIG_DIR})")
    parser.add_argument("--executable", type=Path, metavar="PATH",
                        help="the smallbms the unit runs (default: this one, "
                             f"{_this_executable()})")
    parser.add_argument("--print", dest="show", choices=("unit", "config"),
                        help="print the unit or the example configuration instead of writing")


def main(args: argparse.Namespace) -> int:
    """Run ``smallbms install-service``."""
    executable = Path(args.executable) if args.executable else _this_executable()
    config_path = Path(args.config_dir) / CONFIG_NAME
    unit = unit_text(executable, config_path)
    if args.show:
        sys.stdout.write(unit if args.show == "unit" else packaged_text(CONFIG_NAME))
        return 0
    unit_path = Path(args.unit_dir) / UNIT_NAME
    try:
        unit_state = "replaced" if unit_path.exists() else "written"
        _write_atomically(unit_path, unit, 0o644)
        if config_path.exists():
            config_state = "kept (already there; compare with `smallbms install-service "
            config_state += "--print config`)"
        else:
            _write_atomically(config_path, packaged_text(CONFIG_NAME), 0o644)
            config_state = "written"
    except OSError as exc:
        where = exc.filename or "a file"
        print(f"smallbms install-service: cannot write {where}: {exc.strerror or exc}"
              + (" (try sudo)" if isinstance(exc, PermissionError) else ""), file=sys.stderr)
        return EXIT_FAILED
    print(f"unit:          {unit_path} {unit_state}, runs {executable}")
    print(f"configuration: {config_path} {config_state}")
    print(next_steps(executable, config_path))
    return 0


def unit_text(executable: Path, config_path: Path) -> str:
    """The packaged unit, running ``executable`` with ``config_path``."""
    text = packaged_text(UNIT_NAME)
    return text.replace(PACKAGED_EXECUTABLE, str(executable)).replace(
        PACKAGED_CONFIG, str(config_path)
    )


def next_steps(executable: Path, config_path: Path) -> str:
    """What is left to do, as commands to copy."""
    return "\n".join([
        "next steps:",
        "  sudo adduser --system --group --no-create-home smallbms",
        "  sudo usermod -aG gpio,bluetooth smallbms",
        f"  sudoedit {config_path}",
        f"  {executable} check-config {config_path}",
        "  sudo systemctl daemon-reload",
        "  sudo systemctl enable --now smallbms",
    ])


def _this_executable() -> Path:
    """The ``smallbms`` script beside this interpreter (a venv's bin/), else on PATH."""
    beside = Path(sys.executable).parent / "smallbms"
    if beside.exists():
        return beside
    return Path(sys.argv[0]).absolute() if sys.argv and sys.argv[0] else beside


def _write_atomically(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
