"""The BMS domain: pure, no I/O, no clock; ``now`` is always passed in."""
