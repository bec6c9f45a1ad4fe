"""smallbms: a Raspberry Pi emulation of the Victron smallBMS NG.

``bms_daemon.core`` decides (pure logic, time passed in); the other modules are the edges
(battery sources, GPIO, state store) and the daemon that wires them together.
"""

__version__ = "0.1.0"
