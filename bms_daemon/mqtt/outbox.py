"""What waits for the broker, and how often each topic may speak.  Pure: time is passed in.

* ``Outbox``: messages not yet handed to the broker, at most one per topic (a newer state
  replaces the older one: while the broker is away nothing piles up, and what is sent on
  reconnection is the newest state), bounded in size.
* ``Throttle``: a changed payload goes out at once if its topic last spoke at least its interval
  ago, otherwise when the interval is over (with the newest payload by then).  A payload equal
  to the last one sent is not sent again.
* ``TokenBucket``: bounds how many command messages are acted on (a flood is refused).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

OUTBOX_LIMIT = 64  # distinct topics waiting at most; the state topics are a handful


@dataclass(frozen=True, slots=True)
class Message:
    """One MQTT publication."""

    topic: str
    payload: bytes
    retain: bool = True
    qos: int = 1


class Outbox:
    """Pending messages, one per topic, oldest topic first; newest payload wins."""

    def __init__(self, limit: int = OUTBOX_LIMIT) -> None:
        self._pending: OrderedDict[str, Message] = OrderedDict()
        self.limit = limit
        self.dropped = 0  # messages replaced by a newer one or pushed out by the bound

    def put(self, message: Message) -> None:
        """Queue ``message``, replacing a pending one for the same topic."""
        if message.topic in self._pending:
            self.dropped += 1
            self._pending[message.topic] = message  # keeps its place in the queue
            return
        if len(self._pending) >= self.limit:
            self._pending.popitem(last=False)
            self.dropped += 1
        self._pending[message.topic] = message

    def requeue(self, message: Message) -> None:
        """Put back a message the broker did not take, unless a newer one is already waiting."""
        if message.topic not in self._pending and len(self._pending) < self.limit:
            self._pending[message.topic] = message
            self._pending.move_to_end(message.topic, last=False)

    def pop(self) -> Message | None:
        """The oldest pending message, or None."""
        if not self._pending:
            return None
        return self._pending.popitem(last=False)[1]

    def clear(self) -> None:
        self._pending.clear()

    def __len__(self) -> int:
        return len(self._pending)


class Throttle:
    """Per-topic minimum spacing between publications of changed payloads."""

    def __init__(self, intervals: dict[str, float]) -> None:
        self.intervals = intervals  # topic -> seconds (0 = at once); absent = at once
        self._sent: dict[str, tuple[bytes, float]] = {}
        self._held: dict[str, float] = {}  # topic -> when the held change may go out

    def offer(self, topic: str, payload: bytes, now: float) -> bool:
        """True when ``payload`` should be published now (it is then recorded as sent)."""
        last = self._sent.get(topic)
        if last is not None and last[0] == payload:
            self._held.pop(topic, None)
            return False
        interval = self.intervals.get(topic, 0.0)
        if last is not None and now - last[1] < interval:
            self._held[topic] = last[1] + interval
            return False
        self._sent[topic] = (payload, now)
        self._held.pop(topic, None)
        return True

    def due(self, topic: str, now: float) -> bool:
        """Whether ``topic`` may speak now.  When not, a wake-up is noted for when it may
        (so its payload need not even be rendered until then)."""
        last = self._sent.get(topic)
        interval = self.intervals.get(topic, 0.0)
        if last is None or now - last[1] >= interval:
            self._held.pop(topic, None)  # rendered now: no wake-up owed for it
            return True
        self._held[topic] = last[1] + interval
        return False

    def next_due(self, now: float) -> float | None:
        """Seconds until a held change may go out (0 if one is due), or None."""
        if not self._held:
            return None
        return max(0.0, min(self._held.values()) - now)

    def forget(self) -> None:
        """After a reconnection: everything counts as never sent (so all is republished)."""
        self._sent.clear()
        self._held.clear()


class TokenBucket:
    """``capacity`` actions at once, refilled at ``rate`` per second."""

    def __init__(self, capacity: float, rate: float) -> None:
        self.capacity = capacity
        self.rate = rate
        self._tokens = capacity
        self._at: float | None = None

    def allow(self, now: float) -> bool:
        if self._at is not None:
            self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
