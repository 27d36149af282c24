"""Reply formatting: continuation lines, enhanced codes, sanitising."""

from __future__ import annotations

import pytest

from correo.smtp import LocalProtocolError, Reply, ehlo_reply, greeting


@pytest.mark.parametrize(
    ("reply", "wire"),
    [
        (Reply(250, "2.1.0", "Sender OK"), b"250 2.1.0 Sender OK\r\n"),
        (Reply(250, None, "OK"), b"250 OK\r\n"),
        (Reply(250, None), b"250\r\n"),
        (Reply(250, "2.0.0"), b"250 2.0.0\r\n"),
        (Reply(250, None, ("a", "b", "c")), b"250-a\r\n250-b\r\n250 c\r\n"),
        (Reply(550, "5.1.1", ("no", "such")), b"550-5.1.1 no\r\n550 5.1.1 such\r\n"),
        (Reply(250, None, ()), b"250\r\n"),
        (Reply(250, None, ("x", "")), b"250-x\r\n250\r\n"),
        # CR, LF and NUL inside text must not forge extra lines.
        (Reply(550, None, "a\r\n250 ok\x00"), b"550 a  250 ok\r\n"),
        (Reply(250, None, "caf\u00e9"), "250 caf\u00e9\r\n".encode()),
        (Reply(354, None, "go ahead"), b"354 go ahead\r\n"),
    ],
)
def test_to_bytes(reply: Reply, wire: bytes) -> None:
    assert reply.to_bytes() == wire


@pytest.mark.parametrize(
    ("code", "positive"), [(220, True), (250, True), (334, True), (421, False), (554, False)]
)
def test_is_positive(code: int, positive: bool) -> None:
    assert Reply(code, None).is_positive is positive


@pytest.mark.parametrize(
    ("code", "status"), [(199, None), (600, None), (250, "5.0.0"), (550, "2.0.0"), (250, "2.0")]
)
def test_invalid_reply_is_our_bug(code: int, status: str | None) -> None:
    with pytest.raises(LocalProtocolError):
        Reply(code, status)


def test_ehlo_and_greeting() -> None:
    r = ehlo_reply("mx.example", "client.example", ["PIPELINING", "SIZE 1000"])
    assert r.to_bytes() == (
        b"250-mx.example greets client.example\r\n250-PIPELINING\r\n250 SIZE 1000\r\n"
    )
    assert greeting("mx.example").to_bytes() == b"220 mx.example ESMTP\r\n"
    assert greeting("lmtp.example", "LMTP").to_bytes() == b"220 lmtp.example LMTP\r\n"
