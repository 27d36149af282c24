"""Property tests for the PROXY protocol header parser (correo.proxyproto) under hostile
input. Invariants: any input gives a header, a need for more (having taken all of it,
under the bound), or ProxyProtocolError; a header takes exactly its own octets; feeding
in pieces equals feeding at once."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from correo.proxyproto import V1_MAX, HeaderReader, ProxyProtocolError, parse_header
from tests.unit.test_proxyproto import V1_GOOD, v2

# -- properties --------------------------------------------------------------------------

HEADERS = st.sampled_from([v[0] for v in V1_GOOD] + [v2(), v2(family=0x21, src="::1")])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_input_gives_a_header_need_data_or_an_error(data: bytes) -> None:
    reader = HeaderReader()
    try:
        taken = reader.feed(data)
    except ProxyProtocolError:
        return
    assert 0 <= taken <= len(data)
    if reader.header is None:
        assert taken == len(data) and len(data) < V1_MAX + 16
    else:
        assert taken == reader.header.length


@settings(max_examples=200, deadline=None)
@given(HEADERS, st.binary(max_size=40), st.data())
def test_bytewise_feeding_equals_whole_feeding(
    header: bytes, rest: bytes, data: st.DataObject
) -> None:
    wire = header + rest
    whole = HeaderReader()
    taken = whole.feed(wire)
    piecewise = HeaderReader()
    total, at = 0, 0
    while piecewise.header is None and at < len(wire):
        size = data.draw(st.integers(1, 8))
        chunk = wire[at : at + size]
        total += piecewise.feed(chunk)
        at += len(chunk)
    assert piecewise.header == whole.header and total == taken == len(header)


@settings(max_examples=200, deadline=None)
@given(HEADERS, st.integers(0, 200), st.binary(min_size=1, max_size=1))
def test_corrupting_one_octet_never_crashes(header: bytes, where: int, octet: bytes) -> None:
    i = where % len(header)
    wire = header[:i] + octet + header[i + 1 :]
    try:
        parse_header(wire)
    except ProxyProtocolError:
        pass
