"""The PROXY protocol header parser (correo.proxyproto), without sockets.

Tables of valid and hostile headers, version 1 and 2, and the invariants a shell relies
on: ``feed`` takes exactly the header's octets and never one of what follows, and
feeding byte by byte gives what feeding at once gives.
"""

from __future__ import annotations

import ipaddress
import struct

import pytest

from correo.proxyproto import (
    V1_MAX,
    V2_SIGNATURE,
    HeaderReader,
    ProxyHeader,
    ProxyProtocolError,
    crc32c,
    parse_header,
)

SIG = V2_SIGNATURE


def v2(
    command: int = 1,
    family: int = 0x11,
    src: str = "203.0.113.7",
    dst: str = "",
    sport: int = 40000,
    dport: int = 25,
    tlvs: bytes = b"",
    block: bytes | None = None,
) -> bytes:
    if block is None:
        if family in (0x11, 0x21):
            dst = dst or ("192.0.2.1" if family == 0x11 else "2001:db8::1")
            block = (
                ipaddress.ip_address(src).packed
                + ipaddress.ip_address(dst).packed
                + struct.pack("!HH", sport, dport)
            )
        elif family == 0x31:
            block = b"/run/src".ljust(108, b"\0") + b"/run/dst".ljust(108, b"\0")
        else:
            block = b""
    body = block + tlvs
    return SIG + bytes([0x20 | command, family]) + struct.pack("!H", len(body)) + body


def tlv(kind: int, value: bytes) -> bytes:
    return bytes([kind]) + struct.pack("!H", len(value)) + value


def with_crc(header: bytes) -> bytes:
    """``header`` (whose last TLV is a zeroed CRC32C) with its checksum filled in."""
    return header[:-4] + crc32c(header).to_bytes(4, "big")


# -- version 1 ---------------------------------------------------------------------------

V1_GOOD = [
    (b"PROXY TCP4 203.0.113.7 192.0.2.1 40000 25\r\n", ("203.0.113.7", 40000)),
    (b"PROXY TCP6 2001:db8::7 2001:db8::1 1 65535\r\n", ("2001:db8::7", 1)),
    (b"PROXY TCP6 ::ffff:203.0.113.9 ::1 0 25\r\n", ("203.0.113.9", 0)),  # mapped: IPv4
    (b"PROXY UNKNOWN\r\n", None),
    (b"PROXY UNKNOWN ffff::1 ffff::2 65535 65535\r\n", None),  # the rest is ignored
    (b"PROXY UNKNOWN anything at all\r\n", None),
]


@pytest.mark.parametrize(("wire", "source"), V1_GOOD)
def test_v1_valid(wire: bytes, source: tuple[str, int] | None) -> None:
    header = parse_header(wire + b"EHLO x\r\n")
    assert header is not None
    assert header.version == 1 and header.length == len(wire)
    assert header.source == source


def test_v1_longest_is_accepted() -> None:
    a = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
    wire = f"PROXY UNKNOWN {a} {a} 65535 65535\r\n".encode()
    assert len(wire) == V1_MAX  # the spec's worst case (§2.1)
    assert parse_header(wire) == ProxyHeader(1, V1_MAX, None)
    wire = f"PROXY TCP6 {a} {a} 65535 65535\r\n".encode()
    header = parse_header(wire)
    assert header is not None and header.source == (a, 65535)


V1_BAD = [
    (b"GET / HTTP/1.1\r\n", "no PROXY header"),
    (b"PROXZ TCP4 1.2.3.4 1.2.3.4 1 2\r\n", "no PROXY header"),
    (b"proxy TCP4 1.2.3.4 1.2.3.4 1 2\r\n", "no PROXY header"),
    (b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n", "CRLF"),
    (b"PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n", "4 fields"),
    (b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2 3\r\n", "4 fields"),
    (b"PROXY TCP4  1.2.3.4 1.2.3.4 1 2\r\n", "4 fields"),
    (b"PROXY UDP4 1.2.3.4 1.2.3.4 1 2\r\n", "4 fields"),
    (b"PROXY TCP4 1.2.3.4.5 1.2.3.4 1 2\r\n", "bad address"),
    (b"PROXY TCP4 01.2.3.4 1.2.3.4 1 2\r\n", "bad address"),
    (b"PROXY TCP4 2001:db8::1 1.2.3.4 1 2\r\n", "not an IPv4"),
    (b"PROXY TCP6 1.2.3.4 2001:db8::1 1 2\r\n", "not an IPv6"),
    (b"PROXY TCP6 fe80::1%eth0 2001:db8::1 1 2\r\n", "bad address"),
    (b"PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n", "bad port"),
    (b"PROXY TCP4 1.2.3.4 1.2.3.4 01 2\r\n", "bad port"),
    (b"PROXY TCP4 1.2.3.4 1.2.3.4 -1 2\r\n", "bad port"),
    (b"PROXY TCP4 1.2.3.4 1.2.3.4 \xd9\xa1 2\r\n", "ASCII"),
    (b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\r\r\n", "bad port"),
    (b"PROXY " + b"x" * 200, "longer than 107"),
    (b"PROXY TCP4 " + b"1" * 95 + b"\r\n", "longer than 107"),
]


@pytest.mark.parametrize(("wire", "why"), V1_BAD)
def test_v1_hostile(wire: bytes, why: str) -> None:
    with pytest.raises(ProxyProtocolError, match=why):
        parse_header(wire)


def test_v1_stops_at_107_octets_without_lf() -> None:
    reader = HeaderReader()
    reader.feed(b"PROXY UNKNOWN " + b"a" * 80)
    with pytest.raises(ProxyProtocolError, match="longer than 107"):
        reader.feed(b"a" * 100)  # never buffers past the bound


def test_wrong_first_octet_fails_at_once() -> None:
    with pytest.raises(ProxyProtocolError, match="no PROXY header"):
        HeaderReader().feed(b"E")
    with pytest.raises(ProxyProtocolError, match="no PROXY header"):
        HeaderReader().feed(b"PROXx")


# -- version 2 ---------------------------------------------------------------------------


def test_v2_ipv4_and_ipv6() -> None:
    header = parse_header(v2() + b"\x16\x03\x01")  # a ClientHello follows
    assert header == ProxyHeader(2, 28, ("203.0.113.7", 40000), ("192.0.2.1", 25))
    six = v2(family=0x21, src="2001:db8::7", dst="2001:db8::1", sport=1, dport=993)
    header = parse_header(six)
    assert header is not None and header.length == 16 + 36
    assert header.source == ("2001:db8::7", 1) and header.destination == ("2001:db8::1", 993)


def test_v2_ipv4_mapped_source_is_ipv4() -> None:
    header = parse_header(v2(family=0x21, src="::ffff:198.51.100.1", dst="::1"))
    assert header is not None and header.source == ("198.51.100.1", 40000)


def test_v2_local_keeps_the_connection_endpoints() -> None:
    """LOCAL (a health check): whatever follows is skipped, even garbage."""
    wire = SIG + b"\x20\x00\x00\x05" + b"\xff" * 5
    header = parse_header(wire + b"+OK")
    assert header == ProxyHeader(2, 21, None)
    assert parse_header(SIG + b"\x20\x77\x00\x00") == ProxyHeader(2, 16, None)


def test_v2_unspec_and_unix_keep_the_connection_endpoints() -> None:
    assert parse_header(v2(family=0x00, block=b"\x01\x02")) == ProxyHeader(2, 18, None)
    header = parse_header(v2(family=0x31))
    assert header is not None and header.source is None and header.length == 16 + 216


def test_v2_tlvs() -> None:
    tlvs = tlv(0x01, b"imap") + tlv(0x02, b"mail.example.test") + tlv(0x04, b"") + tlv(0x05, b"id")
    header = parse_header(v2(tlvs=tlvs))
    assert header is not None
    assert header.tlvs == (
        (0x01, b"imap"),
        (0x02, b"mail.example.test"),
        (0x04, b""),
        (0x05, b"id"),
    )
    assert header.source == ("203.0.113.7", 40000)


def test_v2_crc32c() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the standard check value
    good = with_crc(v2(tlvs=tlv(0x01, b"h2") + tlv(0x03, b"\0\0\0\0")))
    header = parse_header(good)
    assert header is not None and header.tlvs[1][0] == 0x03
    bad = good[:-1] + bytes([good[-1] ^ 1])
    with pytest.raises(ProxyProtocolError, match="CRC32C"):
        parse_header(bad)
    with pytest.raises(ProxyProtocolError, match="CRC32C"):
        parse_header(v2(tlvs=tlv(0x03, b"\0\0")))  # not 4 octets


V2_BAD = [
    (SIG[:11] + b"X" + b"\x21\x11\x00\x0c" + bytes(12), "signature"),
    (b"\r\n\r\n\x01", "signature"),
    (SIG + b"\x11\x11\x00\x0c" + bytes(12), "version 1, not 2"),
    (SIG + b"\x31\x11\x00\x0c" + bytes(12), "version 3"),
    (SIG + b"\x22\x11\x00\x0c" + bytes(12), "unknown command 2"),
    (SIG + b"\x2f\x11\x00\x0c" + bytes(12), "unknown command 15"),
    (SIG + b"\x21\x12\x00\x0c" + bytes(12), "unsupported family 0x12"),  # UDP
    (SIG + b"\x21\x22\x00\x24" + bytes(36), "unsupported family 0x22"),
    (SIG + b"\x21\x41\x00\x0c" + bytes(12), "unsupported family 0x41"),
    (SIG + b"\x21\x10\x00\x0c" + bytes(12), "unsupported family 0x10"),
    (SIG + b"\x21\x11\x00\x08" + bytes(8), "shorter than its address block"),
    (SIG + b"\x21\x21\x00\x0c" + bytes(12), "shorter than its address block"),
    (SIG + b"\x21\x11\xff\xff", "too long"),
    (v2(tlvs=b"\x01\x00"), "truncated TLV"),
    (v2(tlvs=b"\x01\x00\x09abc"), "runs past the header"),
    (v2(tlvs=tlv(0x01, b"x") + b"\x02"), "truncated TLV"),
]


@pytest.mark.parametrize(("wire", "why"), V2_BAD)
def test_v2_hostile(wire: bytes, why: str) -> None:
    with pytest.raises(ProxyProtocolError, match=why):
        parse_header(wire)


def test_v2_length_bound_is_checked_before_the_body_arrives() -> None:
    reader = HeaderReader(max_length=300)
    with pytest.raises(ProxyProtocolError, match="too long"):
        reader.feed(SIG + b"\x21\x11" + struct.pack("!H", 400))
    assert HeaderReader(max_length=300).feed(SIG + b"\x21\x11" + struct.pack("!H", 284)) == 16


# -- incomplete input, exact consumption -------------------------------------------------


@pytest.mark.parametrize(
    "wire", [v[0] for v in V1_GOOD] + [v2(), v2(command=0), v2(tlvs=tlv(0x05, b"u" * 128))]
)
def test_truncated_needs_more_and_takes_everything(wire: bytes) -> None:
    for cut in range(1, len(wire)):
        reader = HeaderReader()
        assert reader.feed(wire[:cut]) == cut  # all of it is header
        assert reader.header is None
        assert 0 < reader.want <= max(V1_MAX, len(wire))
        assert reader.feed(wire[cut:] + b"NEXT") == len(wire) - cut
        assert reader.header is not None and reader.header.length == len(wire)
        assert reader.want == 0 and reader.feed(b"more") == 0


def test_want_bounds_a_peek_to_the_header() -> None:
    wire = v2(tlvs=tlv(0x04, b"z" * 500))
    reader = HeaderReader()
    assert reader.feed(wire[:3]) == 3
    assert reader.want == 13  # up to the length field
    reader.feed(wire[3:16])
    assert reader.want == len(wire) - 16


def test_empty_input_is_no_input() -> None:
    reader = HeaderReader()
    assert reader.feed(b"") == 0 and reader.header is None
