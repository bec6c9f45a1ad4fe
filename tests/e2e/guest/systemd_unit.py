"""Just enough of systemd's service semantics to start the daemon the way systemd would.

The peripheral guest has no systemd (PID 1 is the initramfs's shell), so this reads
``systemd/smallbms.service`` and reproduces what matters to the daemon: the ExecStart command
line, its environment (Environment=, $STATE_DIRECTORY and friends, $NOTIFY_SOCKET, the
watchdog variables), the user and groups, the working directory and the state directories.
Anything in the unit this does not understand is listed, so a new directive is noticed
rather than silently ignored.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

# Directives this model honours; the others are reported (most are sandboxing, which the
# guest need not reproduce to prove the daemon starts and speaks BLE).
UNDERSTOOD = {
    "ExecStart", "ExecStartPre", "ExecStopPost", "Environment", "User", "Group",
    "SupplementaryGroups", "StateDirectory", "RuntimeDirectory", "ConfigurationDirectory",
    "WorkingDirectory",
    "Type", "WatchdogSec", "KillSignal", "KillMode", "StateDirectoryMode",
    "ConfigurationDirectoryMode", "UMask", "NotifyAccess",
}
DIRECTORY_ROOTS = {
    "StateDirectory": ("/var/lib", "STATE_DIRECTORY"),
    "RuntimeDirectory": ("/run", "RUNTIME_DIRECTORY"),
    "ConfigurationDirectory": ("/etc", "CONFIGURATION_DIRECTORY"),
}
SPECIFIERS = {"%S": "/var/lib", "%t": "/run", "%E": "/etc", "%%": "%"}


@dataclass
class Unit:
    exec_start: list[str]
    exec_start_pre: list[list[str]] = field(default_factory=list)
    exec_stop_post: list[list[str]] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    group: str | None = None
    supplementary_groups: list[str] = field(default_factory=list)
    directories: dict[str, list[str]] = field(default_factory=dict)  # directive -> paths
    working_directory: str | None = None
    type: str = "simple"
    watchdog_s: float | None = None
    umask: int | None = None
    state_directory_mode: int | None = None
    ignored: list[str] = field(default_factory=list)

    def config_path(self) -> str | None:
        """The file given to ``--config``/``-c`` on the ExecStart line, if any."""
        args = self.exec_start
        for i, arg in enumerate(args):
            if arg in ("--config", "-c") and i + 1 < len(args):
                return args[i + 1]
            if arg.startswith("--config="):
                return arg.split("=", 1)[1]
        return None

    def directory_environment(self) -> dict[str, str]:
        env: dict[str, str] = {}
        for directive, paths in self.directories.items():
            root, variable = DIRECTORY_ROOTS[directive]
            env[variable] = ":".join(f"{root}/{p}" for p in paths)
        return env


def _expand(text: str) -> str:
    for spec, value in SPECIFIERS.items():
        text = text.replace(spec, value)
    return text


def _command(value: str) -> list[str]:
    # Prefixes: '-' ignore failure, '@' argv0, '+' '!' '!!' privileges: none changes argv here.
    argv = shlex.split(_expand(value))
    if argv:
        argv[0] = argv[0].lstrip("-@+!:")
    return argv


def _seconds(value: str) -> float:
    value = value.strip()
    for suffix, factor in (("ms", 0.001), ("min", 60.0), ("s", 1.0), ("h", 3600.0)):
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * factor
    return float(value)


def parse(path: Path) -> Unit:
    """Parse the [Service] section of a unit file (continuation lines and comments handled)."""
    unit = Unit(exec_start=[])
    section = ""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if pending:
            line = pending + " " + line
            pending = ""
        if line.endswith("\\"):
            pending = line[:-1].strip()
            continue
        logical.append(line)
    for line in logical:
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        if section != "Service" or "=" not in line:
            continue
        key, value = (part.strip() for part in line.split("=", 1))
        if key == "ExecStart":
            unit.exec_start = _command(value)
        elif key == "ExecStartPre":
            unit.exec_start_pre.append(_command(value))
        elif key == "ExecStopPost":
            unit.exec_stop_post.append(_command(value))
        elif key == "Environment":
            for assignment in shlex.split(value):
                name, _, val = assignment.partition("=")
                unit.environment[name] = val
        elif key == "User":
            unit.user = value
        elif key == "Group":
            unit.group = value
        elif key == "SupplementaryGroups":
            unit.supplementary_groups += value.split()
        elif key in DIRECTORY_ROOTS:
            unit.directories.setdefault(key, []).extend(value.split())
        elif key == "WorkingDirectory":
            unit.working_directory = _expand(value).lstrip("-")
        elif key == "Type":
            unit.type = value
        elif key == "WatchdogSec":
            unit.watchdog_s = _seconds(value)
        elif key == "UMask":
            unit.umask = int(value, 8)
        elif key == "StateDirectoryMode":
            unit.state_directory_mode = int(value, 8)
        elif key not in UNDERSTOOD:
            unit.ignored.append(key)
    if not unit.exec_start:
        raise ValueError(f"{path}: no ExecStart= in [Service]")
    return unit
