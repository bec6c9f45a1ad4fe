"""MQTT with Home Assistant discovery: every figure, code and setting of the BMS on a broker.

Off by default (``[mqtt] enabled``).  The modules, each with one job:

* ``config``: the ``[mqtt]`` table, validated (no network library imported);
* ``topics``: topic names under the base topic;
* ``payloads``: the JSON published for a status, the history and the settings (pure);
* ``discovery``: Home Assistant discovery configs (pure);
* ``outbox``: the bounded, newest-wins queue and the rate limit (pure, time passed in);
* ``control``: command topics -> the same ``DeviceControl`` calls as Bluetooth;
* ``service``: the connection (aiomqtt), reconnects with backoff, and the loop that publishes.

The control loop only hands each new status to ``service`` (a reference stored, an event set);
all network work happens in the MQTT task, so a slow or absent broker never delays protection.
"""
