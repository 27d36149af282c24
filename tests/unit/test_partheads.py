"""The parts' headers SEARCH TEXT reads (as Dovecot): MIME headers of the parts and the
headers of attached messages, decoded; never the message's own, the preamble, the
epilogue or delimiter lines."""

from __future__ import annotations

from correo.delivery.partheads import part_headers
from correo.delivery.textindex import index_text_of
from correo.message.structure import parse_structure

MESSAGE = (
    b"From: top@example.test\r\nSubject: topword\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="sep"\r\n\r\n'
    b"preambleword\r\n--sep\r\nContent-Type: text/plain\r\n"
    b"Content-Description: =?utf-8?q?caf=C3=A9?= notes\r\n\r\nplain\r\n"
    b"--sep\r\nContent-Type: message/rfc822\r\n\r\n"
    b"From: attached@example.test\r\nSubject: attachedword\r\n\r\nbody\r\n"
    b"--sep--\r\nepilogueword\r\n"
)


def test_part_headers_are_every_header_but_the_messages_own() -> None:
    tree = parse_structure(MESSAGE)
    found = part_headers(MESSAGE, tree)
    assert "café notes" in found and "attachedword" in found
    assert "message/rfc822" in found and "attached@example.test" in found
    text = "\n".join(found)
    assert "topword" not in text and "top@example.test" not in text
    assert "preambleword" not in text and "epilogueword" not in text and "--sep" not in text


def test_the_index_holds_them_so_it_never_hides_a_match() -> None:
    text = index_text_of(MESSAGE, parse_structure(MESSAGE))
    for word in ("café", "attachedword", "topword", "plain", "body"):
        assert word in text
    assert "preambleword" not in text and "epilogueword" not in text
