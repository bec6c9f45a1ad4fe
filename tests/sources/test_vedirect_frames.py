"""The VE.Direct text protocol: a real BMV-712 capture, checksums, HEX messages, garbage.

The capture is the one in norbert-walter/LoRa-Boat-Monitor (src/vedirect.h, "Real data output
on VE.direct port"): its printed checksum character "/" is exactly the byte that makes the block
add up to 0, which is what the parser checks.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bms_daemon.sources.vedirect import TextParser, VeDirectFeed

BMV712 = [("PID", "0xA381"), ("V", "12341"), ("T", "---"), ("I", "0"), ("P", "0"),
          ("CE", "0"), ("SOC", "1000"), ("TTG", "-1"), ("Alarm", "OFF"), ("Relay", "OFF"),
          ("AR", "0"), ("BMV", "712 Smart"), ("FW", "0408"), ("MON", "0")]


def block(fields: list[tuple[str, str]], checksum: int | None = None) -> bytes:
    """A text-protocol block; ``checksum`` None = the right one."""
    body = b"".join(b"\r\n" + k.encode() + b"\t" + v.encode() for k, v in fields)
    body += b"\r\nChecksum\t"
    right = (-sum(body)) % 256
    return body + bytes([right if checksum is None else checksum])


def test_the_bmv712_capture_has_the_checksum_it_printed() -> None:
    assert block(BMV712)[-1:] == b"/"


def shunt(current_ma: int = -12500, voltage_mv: int = 52480, **more: str) -> bytes:
    fields = [("PID", "0xA389"), ("V", str(voltage_mv)), ("I", str(current_ma)),
              ("P", "-656"), ("CE", "-35200"), ("SOC", "874"), ("TTG", "1140"),
              ("Alarm", "OFF"), ("AR", "0"), *more.items()]
    return block(fields)


def test_a_capture_decodes_to_voltage_current_and_the_shunts_own_figures() -> None:
    feed = VeDirectFeed("shunt", "/dev/null")
    feed.take(block(BMV712), now=1.0)
    sample = feed.latest(1.0)
    assert sample is not None
    assert (sample.voltage, sample.current) == (12.341, 0.0)
    extra = dict(sample.extra)
    assert extra["shunt_soc"] == 100.0
    assert extra["product_id"] == "0xA381"
    assert "temperature" not in extra  # "---": no sensor fitted
    assert sample.batteries == ()  # a shunt knows no cells


def test_a_block_with_a_bad_checksum_is_dropped_and_counted_never_used() -> None:
    feed = VeDirectFeed("shunt", "/dev/null")
    feed.take(shunt(current_ma=-1000), now=1.0)
    good = feed.latest(1.0)
    bad = bytearray(shunt(current_ma=-99000))
    bad[-1] ^= 0x01
    feed.take(bytes(bad), now=2.0)
    assert feed.stats.dropped == {"bad checksum": 1}
    assert feed.latest(2.0) == good


def test_a_flipped_bit_in_a_value_is_caught_by_the_checksum() -> None:
    data = bytearray(shunt(current_ma=-1000))
    data[data.index(b"-1000")] = ord("+")
    feed = VeDirectFeed("shunt", "/dev/null")
    feed.take(shunt(), now=0.5)
    feed.take(bytes(data), now=1.0)
    assert feed.stats.dropped == {"bad checksum": 1}


def test_hex_messages_between_bytes_are_skipped() -> None:
    data = shunt()
    hex_message = b":A0102000543\n"
    mixed = data[:20] + hex_message + data[20:]
    parser = TextParser()
    assert [b["I"] for b in parser.feed(mixed)] == ["-12500"]
    assert parser.bad == {}


def test_joining_in_the_middle_of_a_block_is_not_an_error() -> None:
    data = shunt()
    parser = TextParser()
    assert parser.feed(data[37:]) == []  # the tail of a block: dropped silently
    assert [b["I"] for b in parser.feed(shunt(current_ma=5))] == ["5"]
    assert parser.bad == {}


def test_garbage_resynchronises_on_the_next_block() -> None:
    feed = VeDirectFeed("shunt", "/dev/null")
    feed.take(shunt(), now=0.5)
    feed.take(b"\n" + b"\xff\xfe" * 200 + b"\n" + b"X" * 300, now=1.0)
    feed.take(shunt(current_ma=-2000), now=2.0)
    sample = feed.latest(2.0)
    assert sample is not None
    assert sample.current == -2.0
    assert feed.stats.dropped_total >= 1


def test_an_alarm_of_the_shunt_is_a_note() -> None:
    feed = VeDirectFeed("shunt", "/dev/null")
    feed.take(block([("V", "47000"), ("I", "-1000"), ("Alarm", "ON"), ("AR", "1")]), now=1.0)
    sample = feed.latest(1.0)
    assert sample is not None
    assert sample.notes == ("shunt alarm: low voltage",)


def test_a_block_with_an_unreadable_current_is_dropped() -> None:
    feed = VeDirectFeed("shunt", "/dev/null")
    feed.take(block([("V", "47000"), ("I", "lots")]), now=1.0)
    assert feed.latest(1.0) is None
    assert feed.stats.dropped == {"unreadable value": 1}


@given(st.binary(max_size=600))
def test_random_bytes_never_raise_and_never_make_a_sample_without_a_checksum(data: bytes) -> None:
    feed = VeDirectFeed("shunt", "/dev/null")
    feed.take(data, now=1.0)
    sample = feed.latest(1.0)
    if sample is not None:  # only if the bytes held a whole block with a right checksum
        assert b"Checksum\t" in data


@given(st.integers(-500_000, 500_000), st.integers(0, 99_999), st.integers(1, 40))
def test_any_split_of_the_stream_gives_the_same_blocks(current: int, voltage: int,
                                                        cut: int) -> None:
    data = shunt(current, voltage) * 2
    whole, parts = TextParser(), TextParser()
    expected = whole.feed(data)
    got = []
    for i in range(0, len(data), cut):
        got.extend(parts.feed(data[i:i + cut]))
    assert got == expected
    assert len(got) == 2
