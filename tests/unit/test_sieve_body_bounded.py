"""The Sieve body test on the stored MIME structure: right answers, bounded work.

RFC 5173 transforms (:raw, :content, :text) over the structure correo.message computes
while a message is received; every body test of a run shares one decoding of each
part; hostile nesting, part counts, sizes and :matches patterns stay cheap.
"""

from __future__ import annotations

import time
import tracemalloc
from datetime import UTC, datetime

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import correo.sieve.body as body_module
from correo.message import parse_structure
from correo.sieve import (
    BodyLimits,
    BodyTransform,
    BytesMessageView,
    Envelope,
    MessageBody,
    RunLimits,
    parse,
    run,
)

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ENV = Envelope("sender@remote.test", "alice@example.test")

MESSAGE = (
    b"From: x@remote.test\r\nSubject: mixed\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="outer"\r\n\r\n'
    b"preamble\r\n"
    b"--outer\r\n"
    b'Content-Type: multipart/alternative; boundary="alt"\r\n\r\n'
    b"--alt\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"Caf=E9 plain words\r\n"
    b"--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    b"<p>Bold <b>html&amp;words</b></p><script>hidden()</script>\r\n"
    b"--alt--\r\n"
    b"--outer\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"UERGIHNlY3JldA==\r\n"  # "PDF secret"
    b"--outer\r\nContent-Type: message/rfc822\r\n\r\n"
    b"Subject: inner\r\nContent-Type: text/plain\r\n\r\nforwarded note\r\n"
    b"--outer--\r\n"
)


def fires(test: str, message: bytes = MESSAGE, **view: object) -> bool:
    script = parse(f'require ["body", "fileinto"]; if {test} {{ fileinto "hit"; }}')
    result = run(script, BytesMessageView(message, **view), ENV, now=NOW)  # type: ignore[arg-type]
    assert not result.errors, result.errors
    return any(getattr(a, "mailbox", None) == "hit" for a in result.actions)


@pytest.mark.parametrize(
    ("test", "expected"),
    [
        ('body :text :contains "café plain"', True),  # QP and ISO-8859-1 decoded
        ('body :contains "html&words"', True),  # :text is the default; entities resolved
        ('body :text :contains "<b>"', False),  # RFC 5173 §5.3: markup stripped
        ('body :text :contains "hidden()"', False),  # script is not visible text
        ('body :content "text/html" :contains "<b>html&amp;words</b>"', True),
        ('body :content "text" :contains "Caf\u00e9"', True),
        ('body :text :contains "forwarded note"', True),  # inside message/rfc822
        ('body :text :contains "PDF secret"', False),  # not a text part
        ('body :content "application/pdf" :contains "PDF secret"', True),  # base64
        ('body :content "application" :contains "PDF secret"', True),
        ('body :content "" :contains "PDF secret"', True),
        ('body :content "image" :contains "PDF secret"', False),
        ('body :raw :contains "UERGIHNlY3JldA=="', True),  # RFC 5173 §5.1: undecoded
        ('body :raw :contains "PDF secret"', False),
        ('body :raw :contains "Subject: mixed"', False),  # the body only
        ('body :text :matches "*plain*"', True),
        ('body :text :is "forwarded note"', True),  # the CRLF before a delimiter is its own
    ],
)
def test_transforms_give_the_rfc_5173_answers(test: str, expected: bool) -> None:
    assert fires(test) is expected
    # The same answers from the stored structure as from parsing the bytes.
    assert fires(test, structure=parse_structure(MESSAGE)) is expected


def test_a_plain_message_and_an_empty_body() -> None:
    plain = b"Subject: hi\r\n\r\nJust text.\r\n"
    assert fires('body :contains "just TEXT"', plain)
    assert fires('body :raw :contains "Just text."', plain)
    assert not fires('body :contains "x"', b"Subject: no body\r\n")


def test_every_part_is_decoded_once_per_message(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    real = body_module.decode_transfer

    def counting(data: bytes, cte: str | None) -> bytes:
        calls.append(cte)
        return real(data, cte)

    monkeypatch.setattr(body_module, "decode_transfer", counting)
    tests = " ".join(
        f'if body {kind} :contains "zz{i}" {{ keep; }}'
        for i in range(5)
        for kind in (":text", ':content "text"', ':content ""')
    )
    body = MessageBody(MESSAGE)
    for _ in range(2):  # two accounts' scripts share one MessageBody
        run(parse(f'require "body"; {tests}'), BytesMessageView(MESSAGE, body=body), ENV, now=NOW)
    assert len(calls) == 4  # plain, html, pdf, the forwarded note: once each


def _nested(depth: int, lines: int) -> bytes:
    out = b"From: x@remote.test\r\nSubject: deep\r\nMIME-Version: 1.0\r\n"
    for i in range(depth):
        out += b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
    out += b"Content-Type: text/plain\r\n\r\n" + b"a\r\n" * lines + b"needle\r\n"
    for i in reversed(range(depth)):
        out += b"--b%d--\r\n" % i
    return out


def test_hostile_nesting_is_cheap() -> None:
    """900 nested multiparts around 100,000 lines: the stdlib parser took over 8 s."""
    data = _nested(900, 100_000)
    started = time.thread_time()  # CPU time: a loaded machine's waits do not count
    for test in ('body :text :contains "needle"', 'body :raw :contains "needle"'):
        fires(test, data)
    assert time.thread_time() - started < 2.0
    # Below the depth bound the innermost text is found as usual.
    assert fires('body :text :contains "needle"', _nested(10, 10))


def test_parts_and_bytes_are_bounded() -> None:
    parts = b"".join(
        b"--p\r\nContent-Type: text/plain\r\n\r\n" + b"%05d " % i + b"x" * 1000 + b"\r\n"
        for i in range(3000)
    )
    data = b'Content-Type: multipart/mixed; boundary="p"\r\n\r\n' + parts + b"--p--\r\n"
    texts = MessageBody(data, limits=BodyLimits(max_bytes=100_000)).texts(BodyTransform())
    assert sum(len(t) for t in texts) <= 100_000
    assert texts[0].startswith("00000 ")
    texts = MessageBody(data, limits=BodyLimits(max_parts=50)).texts(BodyTransform())
    assert 0 < len(texts) < 50
    deep = MessageBody(_nested(30, 1), limits=BodyLimits(max_depth=5))
    assert deep.texts(BodyTransform()) == ()


def test_parts_beyond_the_window_are_not_read() -> None:
    """Delivery hands over the first sieve_body_limit octets and the whole stored tree."""
    window = MESSAGE[: MESSAGE.index(b"--outer\r\nContent-Type: application/pdf")]
    body = MessageBody(window, parse_structure(MESSAGE))
    assert body.texts(BodyTransform("content", ("",)))[-1].startswith("<p>Bold")


def test_matches_with_many_wildcards_is_charged_and_stopped() -> None:
    """A pattern of many ``?`` against a big body costs len(body) x len(pattern): it is
    charged window by window and the run ends on its step limit, not minutes later."""
    data = b"Subject: big\r\n\r\n" + b"a" * 1_000_000
    pattern = "*" + "?" * 2000 + "b*"
    script = parse(f'require "body"; if body :raw :matches "{pattern}" {{ discard; }}')
    started = time.thread_time()  # CPU time: a loaded machine's waits do not count
    result = run(script, BytesMessageView(data), ENV, now=NOW)
    assert time.thread_time() - started < 2.0
    assert result.implicit_keep and "step limit" in result.errors[0]


def test_a_run_stops_at_its_time_limit() -> None:
    ticks = iter(range(1_000_000))
    script = parse('require "body"; ' + 'if body :contains "x" { keep; } ' * 200)
    result = run(
        script,
        BytesMessageView(b"Subject: t\r\n\r\nbody\r\n"),
        ENV,
        now=NOW,
        limits=RunLimits(max_seconds=3),
        clock=lambda: float(next(ticks)),
    )
    assert result.errors == ("script exceeded its time limit",)


def test_header_values_gathered_are_paid_for_as_they_grow() -> None:
    """5,000 Received fields named 2,000 times: the list of values once grew to ten
    million entries before the comparison was charged; now the run stops early."""
    data = b"Received: from relay.test\r\n" * 5000 + b"Subject: s\r\n\r\nbody\r\n"
    names = ", ".join(['"received"'] * 2000)
    script = parse(f'if header :contains [{names}] "nowhere" {{ discard; }}')
    tracemalloc.start()
    try:
        result = run(script, BytesMessageView(data), ENV, now=NOW)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.implicit_keep and "step limit" in result.errors[0]
    assert peak < 20_000_000, peak


_PIECES = st.sampled_from(
    [
        b"Content-Type: multipart/mixed; boundary=b\r\n",
        b"Content-Type: text/html; charset=idna\r\n",
        b"Content-Type: message/rfc822\r\n",
        b"Content-Transfer-Encoding: base64\r\n",
        b"Content-Transfer-Encoding: quoted-printable\r\n",
        b"\r\n",
        b"--b\r\n",
        b"--b--\r\n",
        b"<p>x&amp;</p>",
        b"QUJD=\r\n",
        b"=E9=\r\n",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_PIECES, st.binary(max_size=8)), max_size=30))
@example(  # a quoted-printable body with a bare LF cut by the budget: CRLF out
    [
        b"Content-Transfer-Encoding: quoted-printable\r\n",
        b"\n",
        b"Content-Type: multipart/mixed; boundary=b\r\n",
        b"\n",
        b"Content-Type: multipart/mixed; boundary=b\r\n",
    ]
)
def test_message_body_is_total_and_within_budget(pieces: list[bytes]) -> None:
    """Invariant: any octets give strings for every transform, never more decoded
    characters than the byte budget allows."""
    data = b"".join(pieces)
    body = MessageBody(data, limits=BodyLimits(max_bytes=64))
    for transform in (
        BodyTransform("raw"),
        BodyTransform("text"),
        BodyTransform("content", ("",)),
        BodyTransform("content", ("text", "message/rfc822")),
    ):
        texts = body.texts(transform)
        assert all(isinstance(t, str) for t in texts)
        assert sum(len(t) for t in texts) <= 64


def test_a_header_in_a_slow_pseudo_charset_is_cheap() -> None:
    """An encoded word in punycode took seconds to decode (quadratic); it is read as
    UTF-8 like any charset that is not one."""
    subject = "=?punycode?q?" + "a" * 1000 + "-" + "b" * 200_000 + "?="
    data = f"Subject: {subject}\r\n\r\nbody\r\n".encode()
    started = time.thread_time()  # CPU time: a loaded machine's waits do not count
    assert fires('header :contains "subject" "bbbb"', data)
    assert time.thread_time() - started < 1.0
