"""The PROXY protocol, versions 1 (text) and 2 (binary), as a load balancer sends it.

A TCP load balancer in front of correo opens each connection to a node with one header
that names the client it is passing on (HAProxy's proxy-protocol.txt, "The PROXY
protocol Versions 1 & 2"); without it every client would seem to be the balancer, and
SPF, DNSBL, login throttling and per-address limits would all see one address.

:class:`HeaderReader` is sans-I/O and linear: the shell peeks at the socket, feeds what it
saw, and is told how many of those octets are the header's, so it consumes exactly those
and leaves the protocol's (or TLS's) first bytes in the socket.  A version 1 header is
at most 107 octets (spec §2.1), a version 2 header at most ``max_length``; anything
else raises :class:`ProxyProtocolError`, whose text is the reason to log.  The shell
decides whom to read a header from: never from a peer that is not a trusted balancer.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

__all__ = [
    "V1_MAX",
    "V2_MAX",
    "V2_SIGNATURE",
    "HeaderReader",
    "ProxyHeader",
    "ProxyProtocolError",
    "crc32c",
    "parse_header",
]

#: A version 1 header, CRLF included, never exceeds 107 octets (spec §2.1).
V1_MAX = 107
#: The 12 octets that open a version 2 header (spec §2.2).
V2_SIGNATURE = b"\x0d\x0a\x0d\x0a\x00\x0d\x0a\x51\x55\x49\x54\x0a"
#: Default bound of a whole version 2 header: addresses and TLVs of real balancers (ALPN,
#: authority, a unique ID of at most 128 octets, TLS facts) fit in far less.
V2_MAX = 4096

_V1_PREFIX = b"PROXY "
_V2_FIXED = 16  # signature, version and command, family and protocol, length (spec §2.2)
#: family and transport octet -> (address block size, address family) (spec §2.2)
_FAMILIES = {0x11: (12, 4), 0x21: (36, 6), 0x31: (216, 0), 0x00: (0, 0)}
_TLV_CRC32C = 0x03  # PP2_TYPE_CRC32C (spec §2.2.5)


class ProxyProtocolError(ValueError):
    """The peer's header is not a valid PROXY header; the text says why."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """A complete header.  ``source`` is the client's (address, port) the balancer
    passes on, or None when the connection's own endpoints stand (version 2 LOCAL, a
    health check; version 1 UNKNOWN; an unspecified or unix family: spec §2.1, §2.2)."""

    version: int
    length: int  # octets on the wire
    source: tuple[str, int] | None
    destination: tuple[str, int] | None = None
    tlvs: tuple[tuple[int, bytes], ...] = ()


class HeaderReader:
    """Reads one header from the first octets of a connection.

    ``feed(data)`` with what the socket holds (peeked, so nothing past the header is
    taken from it) returns how many leading octets of ``data`` are the header's: the
    shell consumes exactly those.  ``header`` is set once the header is complete.
    """

    def __init__(self, max_length: int = V2_MAX) -> None:
        self.max_length = max(max_length, _V2_FIXED + 216)  # room for a unix address block
        self.header: ProxyHeader | None = None
        self._buf = bytearray()
        self._total = 0  # the whole v2 header's length once its fixed part is in

    @property
    def want(self) -> int:
        """At most how many more octets can be the header's: a bound for a peek."""
        if self.header is not None:
            return 0
        if self._total:
            return self._total - len(self._buf)
        if self._buf[:1] == b"\r":
            return _V2_FIXED - len(self._buf)
        return V1_MAX - len(self._buf)

    def feed(self, data: bytes) -> int:
        """Take the header's octets from the start of ``data``; raises
        :class:`ProxyProtocolError` as soon as the octets cannot begin a valid header."""
        if self.header is not None or not data:
            return 0
        first = (self._buf or data)[:1]
        if first == b"P":
            return self._feed_v1(data)
        if first == b"\r":
            return self._feed_v2(data)
        raise ProxyProtocolError("no PROXY header: the connection opened with other data")

    # -- version 1: "PROXY TCP4 src dst sport dport\r\n" (spec §2.1) ------------------------

    def _feed_v1(self, data: bytes) -> int:
        room = V1_MAX - len(self._buf)
        end = data.find(b"\n", 0, room)
        take = min(len(data), room) if end < 0 else end + 1
        self._buf += data[:take]
        head = bytes(self._buf[: len(_V1_PREFIX)])
        if not _V1_PREFIX.startswith(head):
            raise ProxyProtocolError("no PROXY header: the connection opened with other data")
        if end < 0:
            if len(self._buf) >= V1_MAX:
                raise ProxyProtocolError(f"PROXY v1 header longer than {V1_MAX} octets")
            return take
        self.header = _parse_v1(bytes(self._buf))
        return take

    # -- version 2: 16 fixed octets, then addresses and TLVs (spec §2.2) -------------------

    def _feed_v2(self, data: bytes) -> int:
        taken = 0
        if not self._total:
            take = min(len(data), _V2_FIXED - len(self._buf))
            self._buf += data[:take]
            taken = take
            if not V2_SIGNATURE.startswith(bytes(self._buf[:12])):
                raise ProxyProtocolError("no PROXY header: bad version 2 signature")
            if len(self._buf) < _V2_FIXED:
                return taken
            self._total = _V2_FIXED + _check_fixed(bytes(self._buf), self.max_length)
        take = min(len(data) - taken, self._total - len(self._buf))
        self._buf += data[taken : taken + take]
        taken += take
        if len(self._buf) == self._total:
            self.header = _parse_v2(bytes(self._buf))
        return taken


def parse_header(data: bytes, max_length: int = V2_MAX) -> ProxyHeader | None:
    """The header at the start of ``data``, or None if ``data`` ends before it does."""
    reader = HeaderReader(max_length)
    reader.feed(data)
    return reader.header


def _parse_v1(line: bytes) -> ProxyHeader:
    if not line.endswith(b"\r\n"):
        raise ProxyProtocolError("PROXY v1 header does not end with CRLF")
    try:
        text = line[len(_V1_PREFIX) : -2].decode("ascii")
    except UnicodeDecodeError:
        raise ProxyProtocolError("PROXY v1 header is not ASCII") from None
    if text == "UNKNOWN" or text.startswith("UNKNOWN "):
        # spec §2.1: the rest up to CRLF is ignored, the connection's own endpoints stand
        return ProxyHeader(1, len(line), None)
    parts = text.split(" ")
    if len(parts) != 5 or parts[0] not in ("TCP4", "TCP6"):
        raise ProxyProtocolError("PROXY v1 header is not TCP4, TCP6 or UNKNOWN with 4 fields")
    version = 4 if parts[0] == "TCP4" else 6
    src, dst = _v1_address(parts[1], version), _v1_address(parts[2], version)
    sport, dport = _v1_port(parts[3]), _v1_port(parts[4])
    return ProxyHeader(1, len(line), (src, sport), (dst, dport))


def _v1_address(text: str, version: int) -> str:
    """A literal of the family the header names, in its canonical spelling."""
    if version == 4 and _dotted_quad(text):
        return text  # already canonical; ipaddress would cost more than the rest
    try:
        if "%" in text:  # a scope zone is no client address
            raise ValueError(text)
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ProxyProtocolError(f"PROXY v1 header: bad address {text[:45]!r}") from None
    if address.version != version:
        raise ProxyProtocolError(f"PROXY v1 header: {text!r} is not an IPv{version} address")
    return _plain(address)


def _dotted_quad(text: str) -> bool:
    """Four decimal octets without leading zeros: an IPv4 address as ipaddress spells it."""
    parts = text.split(".")
    return len(parts) == 4 and all(_octet(p) for p in parts)


def _octet(part: str) -> bool:
    if part == "0":
        return True
    return (
        part.isascii() and part.isdigit() and len(part) <= 3 and part[0] != "0" and int(part) <= 255
    )


def _quad(octets: bytes) -> str:
    return f"{octets[0]}.{octets[1]}.{octets[2]}.{octets[3]}"


def _v1_port(text: str) -> int:
    # spec §2.1: decimal, 0 to 65535, no leading zero
    if not text.isascii() or not text.isdigit() or len(text) > 5 or text[:1] == "0" != text:
        raise ProxyProtocolError(f"PROXY v1 header: bad port {text[:8]!r}")
    port = int(text)
    if port > 65535:
        raise ProxyProtocolError(f"PROXY v1 header: bad port {text!r}")
    return port


def _check_fixed(fixed: bytes, max_length: int) -> int:
    """The length of what follows the 16 fixed octets, once they are checked."""
    version, command = fixed[12] >> 4, fixed[12] & 0x0F
    if version != 2:
        raise ProxyProtocolError(f"PROXY v2 header: version {version}, not 2")
    if command not in (0, 1):  # LOCAL, PROXY
        raise ProxyProtocolError(f"PROXY v2 header: unknown command {command}")
    length = int.from_bytes(fixed[14:16], "big")
    if _V2_FIXED + length > max_length:
        raise ProxyProtocolError(f"PROXY v2 header of {_V2_FIXED + length} octets: too long")
    if command == 1:
        if fixed[13] not in _FAMILIES:  # UDP, or values the spec leaves undefined
            raise ProxyProtocolError(f"PROXY v2 header: unsupported family 0x{fixed[13]:02x}")
        if length < _FAMILIES[fixed[13]][0]:
            raise ProxyProtocolError("PROXY v2 header: shorter than its address block")
    return length


def _parse_v2(header: bytes) -> ProxyHeader:
    if header[12] & 0x0F == 0:
        # LOCAL (spec §2.2): the balancer's own connection, a health check; what follows
        # is skipped and the connection's own endpoints stand
        return ProxyHeader(2, len(header), None)
    size, family = _FAMILIES[header[13]]
    if header[13] == 0:
        # UNSPEC (spec §2.2): the receiver ignores what follows and keeps its endpoints
        return ProxyHeader(2, len(header), None)
    block = header[_V2_FIXED : _V2_FIXED + size]
    tlvs = _tlvs(header, _V2_FIXED + size)
    source: tuple[str, int] | None = None
    destination: tuple[str, int] | None = None
    if family == 4:
        sport, dport = struct.unpack_from("!HH", block, 8)
        source, destination = (_quad(block[:4]), sport), (_quad(block[4:8]), dport)
    elif family == 6:
        src = ipaddress.IPv6Address(block[:16])
        dst = ipaddress.IPv6Address(block[16:32])
        sport, dport = struct.unpack_from("!HH", block, 32)
        source, destination = (_plain(src), sport), (_plain(dst), dport)
    return ProxyHeader(2, len(header), source, destination, tlvs)


def _tlvs(header: bytes, start: int) -> tuple[tuple[int, bytes], ...]:
    """The type-length-value fields after the addresses (spec §2.2.1); a CRC32C one is
    checked over the whole header (§2.2.5)."""
    out: list[tuple[int, bytes]] = []
    at = start
    while at < len(header):
        if at + 3 > len(header):
            raise ProxyProtocolError("PROXY v2 header: truncated TLV")
        kind = header[at]
        (size,) = struct.unpack_from("!H", header, at + 1)
        if at + 3 + size > len(header):
            raise ProxyProtocolError(f"PROXY v2 header: TLV 0x{kind:02x} runs past the header")
        value = header[at + 3 : at + 3 + size]
        if kind == _TLV_CRC32C:
            zeroed = header[: at + 3] + b"\0\0\0\0" + header[at + 7 :]
            if size != 4 or crc32c(zeroed) != int.from_bytes(value, "big"):
                raise ProxyProtocolError("PROXY v2 header: CRC32C mismatch")
        out.append((kind, value))
        at += 3 + size
    return tuple(out)


def _plain(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """An IPv4 client carried as IPv4-mapped IPv6 is the IPv4 address (SPF, DNSBL and
    the per-network limits look at it as such)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _crc32c_table() -> tuple[int, ...]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1  # Castagnoli, reflected
        table.append(c)
    return tuple(table)


_CRC32C = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli, RFC 3720 §B.4), the checksum PP2_TYPE_CRC32C carries."""
    crc = 0xFFFFFFFF
    table = _CRC32C
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF
