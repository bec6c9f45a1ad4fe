"""What the BMS keeps in its state directory, file by file, and how much of it to trust.

``layout`` splits the state in two documents with different lives: the settings and the PIN
(changed by a person, saved at once and acknowledged only once on disk) and the counters (SOC,
history: changed at every tick, saved by the persistence policy).  Damage to one never costs
the other.  ``resetpin`` is the operator's way back when the PIN state is lost.  ``lock`` makes
sure one process at a time writes the directory.  ``identity`` is the device serial, one for
Bluetooth and MQTT.
"""
