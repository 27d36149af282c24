"""IMAP FETCH data from a stored :class:`Part`: ENVELOPE, BODYSTRUCTURE, section ranges.

Output follows RFC 9051 §7.5.2 and matches Dovecot 2.3 byte for byte on our corpus,
with these deliberate differences (see tests/data/messages): an invalid Content-Type
becomes text/plain (RFC 2045 §5.2; Dovecot echoes the junk), message/global is
encapsulated like message/rfc822 (RFC 9051 §7.5.2 media-message; Dovecot 2.3 treats it
as a leaf), and empty address-list elements are skipped (Dovecot emits MISSING_MAILBOX).

Like Dovecot, a multipart with no children (no boundary, or a boundary that never
occurs) and a message/rfc822 that could not be parsed get an empty text/plain body,
because the grammar (``body-type-mpart = 1*body``) cannot express "nothing".
Parameter names and values keep the case they had in the message, as Dovecot does.
"""

from __future__ import annotations

import binascii
import re

from .mime import Address, Params, split_header_fields
from .structure import Envelope, Part, parse_structure

__all__ = [
    "TransferDecoder",
    "base64_binary_parts",
    "bodystructure",
    "decode_transfer",
    "envelope",
    "header_fields",
    "istring",
    "resolve_part",
    "section",
]

_NIL = b"NIL"
_LITERAL_OVER = 4096  # long strings go as literals so lines stay readable
_UNSAFE = re.compile(rb'[\x00-\x1f\x7f-\xff"\\]')
_EMPTY_BODY = b'"text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0'


def istring(value: str | None) -> bytes:
    """An IMAP nstring: NIL, a quoted string, or a literal (RFC 9051 §4.3).

    Like Dovecot we use a literal for anything a quoted string would need escapes for
    (quotes, backslashes) and for control or 8-bit bytes, which quoted may not carry.
    """
    if value is None:
        return _NIL
    raw = value.encode("utf-8", "surrogateescape")
    if len(raw) > _LITERAL_OVER or _UNSAFE.search(raw):
        return b"{%d}\r\n%s" % (len(raw), raw)
    return b'"' + raw + b'"'


def _nolf(value: str | None) -> bytes:
    """Folded header text as one line: CR and LF dropped (Dovecot's envelope strings)."""
    if value is None:
        return _NIL
    return istring(value.replace("\r", "").replace("\n", ""))


def _for_humans(value: str | None) -> bytes:
    """The subject as Dovecot shows it: CR/LF dropped, TAB as space, then a literal."""
    if value is None:
        return _NIL
    if not any(c in value for c in "\r\n\t"):
        return istring(value)
    raw = (
        value.replace("\r", "")
        .replace("\n", "")
        .replace("\t", " ")
        .encode("utf-8", "surrogateescape")
    )
    return b"{%d}\r\n%s" % (len(raw), raw)


def _addresses(addrs: tuple[Address, ...] | None) -> bytes:
    if not addrs:
        return _NIL
    return (
        b"("
        + b"".join(
            b"("
            + b" ".join((istring(a.name), istring(a.adl), istring(a.mailbox), istring(a.host)))
            + b")"
            for a in addrs
        )
        + b")"
    )


def envelope(part: Part) -> bytes:
    """RFC 9051 §7.5.2 ENVELOPE of a message part, without the outer parentheses."""
    env = part.envelope or Envelope()
    frm = env.from_
    return b" ".join(
        (
            _nolf(env.date),
            _for_humans(env.subject),
            _addresses(frm),
            _addresses(env.sender or frm),  # RFC 9051 §7.5.2: sender defaults to from
            _addresses(env.reply_to or frm),  # ... and so does reply-to
            _addresses(env.to),
            _addresses(env.cc),
            _addresses(env.bcc),
            _nolf(env.in_reply_to),
            _nolf(env.message_id),
        )
    )


def _params(params: Params) -> bytes:
    if not params:
        return _NIL
    return b"(" + b" ".join(istring(k) + b" " + istring(v) for k, v in params) + b")"


def _disposition(part: Part) -> bytes:
    if part.disposition is None:
        return _NIL
    return b"(" + istring(part.disposition) + b" " + _params(part.disposition_params) + b")"


def _language(part: Part) -> bytes:
    if not part.language:
        return _NIL
    return b"(" + b" ".join(istring(t) for t in part.language) + b")"


def _is_encapsulated(part: Part) -> bool:
    return part.type.lower() == "message" and part.subtype.lower() in ("rfc822", "global")


def bodystructure(part: Part, extended: bool = True) -> bytes:
    """BODYSTRUCTURE (``extended``) or BODY of a part, without the outer parentheses."""
    if part.is_multipart:
        kids = b"".join(b"(" + bodystructure(c, extended) + b")" for c in part.children)
        if not kids:
            kids = b"(" + _EMPTY_BODY + (b" NIL NIL NIL NIL" if extended else b"") + b")"
        out = kids + b" " + istring(part.subtype)
        if extended:  # RFC 9051 §7.5.2 body-ext-mpart
            out += b" " + b" ".join(
                (_params(part.params), _disposition(part), _language(part), istring(part.location))
            )
        return out
    fields = b" ".join(
        (
            istring(part.type),
            istring(part.subtype),
            _params(part.params),
            istring(part.id),
            istring(part.description),
            istring(part.encoding or "7bit"),
            b"%d" % part.body_size,
        )
    )
    if _is_encapsulated(part):  # RFC 9051 §7.5.2 body-type-msg
        inner = part.message
        if inner is None:
            env = envelope(Part(0, 0, 0))
            body = _EMPTY_BODY + (b" NIL NIL NIL NIL" if extended else b"")
        else:
            env = envelope(inner)
            body = bodystructure(inner, extended)
        fields += b" (" + env + b") (" + body + b") %d" % part.body_lines
    elif part.type.lower() == "text":  # body-type-text carries the line count
        fields += b" %d" % part.body_lines
    if extended:  # body-ext-1part
        fields += b" " + b" ".join(
            (istring(part.md5), _disposition(part), _language(part), istring(part.location))
        )
    return fields


# --- sections ------------------------------------------------------------------------------

_SECTION_TEXTS = frozenset({"", "HEADER", "TEXT", "MIME", "HEADER.FIELDS", "HEADER.FIELDS.NOT"})


def _split_spec(spec: str) -> tuple[list[int], str] | None:
    """``1.2.HEADER.FIELDS (A B)`` -> ([1, 2], "HEADER.FIELDS"), RFC 9051 §6.4.5 syntax."""
    head = spec.split("(", 1)[0].strip()
    items = head.split(".") if head else []
    nums: list[int] = []
    i = 0
    while i < len(items) and items[i].isdigit() and items[i].isascii():
        if items[i].startswith("0") or len(items[i]) > 9:
            return None  # nz-number
        nums.append(int(items[i]))
        i += 1
    text = ".".join(items[i:]).upper()
    return (nums, text) if text in _SECTION_TEXTS else None


def resolve_part(root: Part, numbers: list[int]) -> tuple[Part, bool] | None:
    """Follow part numbers (RFC 9051 §6.4.5); bool says "this is a message, not a part".

    A non-multipart message has one part, number 1, which is its body; the parts of a
    message/rfc822 part are those of the encapsulated message.
    """
    cur, is_message = root, True
    for n in numbers:
        if not is_message and cur.message is not None:
            cur, is_message = cur.message, True
        if cur.is_multipart:
            if cur.children:
                if n > len(cur.children):
                    return None
                cur, is_message = cur.children[n - 1], False
                continue
            if n != 1:
                return None
            cur, is_message = Part(cur.header_end, cur.header_end, cur.header_end), False
            continue
        if is_message and n == 1:
            is_message = False  # the body of a single-part message is its part 1
            continue
        return None
    return cur, is_message


def section(root: Part, spec: str) -> tuple[int, int] | None:
    """Byte range of ``BODY[spec]`` in the message, or None if the section does not exist.

    For ``HEADER.FIELDS (...)`` / ``.NOT`` the range is the whole header; filter it with
    :func:`header_fields`.  ``spec`` is the text between the brackets, e.g. ``1.2.MIME``.
    """
    parsed = _split_spec(spec)
    if parsed is None:
        return None
    nums, text = parsed
    if not nums:
        if text == "":
            return root.header_start, root.body_end
        if text == "MIME":
            return None  # RFC 9051 §6.4.5: MIME needs a part number
        return _message_section(root, text)
    found = resolve_part(root, nums)
    if found is None:
        return None
    part, is_message = found
    if text == "":
        return part.header_end, part.body_end
    if text == "MIME":
        return part.header_start, part.header_end
    # HEADER/TEXT apply to a message: the encapsulated one of a message/rfc822 part
    if is_message:
        return _message_section(part, text)
    if part.message is not None:
        return _message_section(part.message, text)
    return None


def _message_section(msg: Part, text: str) -> tuple[int, int] | None:
    if text == "TEXT":
        return msg.header_end, msg.body_end
    if text.startswith("HEADER"):
        return msg.header_start, msg.header_end
    return None


def header_fields(raw_header: bytes, names: list[str] | tuple[str, ...], negate: bool) -> bytes:
    """The fields of ``raw_header`` named (or, if ``negate``, not named) in ``names``.

    RFC 9051 §6.4.5: the result keeps each field's original bytes and ends with the
    blank line.
    """
    wanted = {n.lower() for n in names}
    keep = [
        raw for name, raw in split_header_fields(raw_header) if (name in wanted) != negate and name
    ]
    return b"".join(keep) + b"\r\n"


# --- Content-Transfer-Encoding for BINARY[] --------------------------------------------------

_B64_JUNK = bytes(c for c in range(256) if not (chr(c).isalnum() and c < 128) and c not in b"+/")


def _b64(data: bytes) -> bytes:
    """Tolerant base64 (RFC 2045 §6.8): junk ignored, padding repaired, stops at '='."""
    eq = data.find(b"=")
    if eq >= 0:
        data = data[:eq]
    clean = data.translate(None, _B64_JUNK)
    cut = len(clean) - len(clean) % 4
    tail = clean[cut:]
    out = binascii.a2b_base64(clean[:cut]) if cut else b""
    if len(tail) >= 2:
        out += binascii.a2b_base64(tail + b"=" * (4 - len(tail)))
    return out


# an "=" neither an escape nor a soft break (blanks, then the line's end): literal
_QP_BAD_EQ = re.compile(rb"=(?![0-9A-Fa-f]{2}|[ \t\r]*(?:\n|\Z))")
_QP_BAD_EQ_WITHIN = re.compile(rb"=(?![0-9A-Fa-f]{2}|[ \t\r]*\n)")  # no line end at \Z


def _qp(data: bytes, final: bool = True) -> bytes:
    """Quoted-printable as RFC 2045 §6.7 reads it, tolerant of what it asks to tolerate.

    Per line (CRLF or bare LF): trailing blanks were added in transport and go (rule 3);
    a final ``=`` is a soft break, also when blanks follow it (rule 5); hard breaks
    come out as CRLF. ``=`` without two hex digits stays literal (note 1), lowercase
    hex is accepted (note 2). The escapes themselves are left to binascii (C).
    ``final`` False: ``data`` is cut within a line, so its end is no line end.
    """
    # literal "=" escaped before soft breaks join lines: "==" ending a line and "41"
    # starting the next are "=" and "41", never the escape "=41" (note 1)
    bad = _QP_BAD_EQ if final else _QP_BAD_EQ_WITHIN
    lines = bad.sub(b"=3D", data).split(b"\n")
    last = lines.pop()  # after the last LF: empty, or a line without its end yet
    out: list[bytes] = []
    for line in lines:
        line = line.rstrip(b" \t\r")
        out.append(line[:-1] if line[-1:] == b"=" else line + b"\r\n")
    if final:
        last = last.rstrip(b" \t\r")
        last = last[:-1] if last[-1:] == b"=" else last
    out.append(last)
    return binascii.a2b_qp(b"".join(out))


def decode_transfer(data: bytes, cte: str | None) -> bytes:
    """Decode a body for BINARY[] (RFC 3516); unknown encodings pass through."""
    kind = (cte or "").strip().lower()
    if kind == "base64":
        return _b64(data)
    if kind == "quoted-printable":
        # in pieces: one regex pass over 16 MB of "=" held the GIL 2.4 s, even in a
        # worker thread (webhooks, Sieve's body test); the streaming decoder is exact
        decoder = TransferDecoder(kind)
        out = [decoder.feed(data[i : i + _PIECE]) for i in range(0, len(data), _PIECE)]
        out.append(decoder.finish())
        return b"".join(out)
    return bytes(data)


_PIECE = 64 * 1024  # octets of quoted-printable decoded per step


class TransferDecoder:
    """Streaming :func:`decode_transfer`: ``feed()`` chunks, then ``finish()``.

    Quoted-printable holds an unfinished line as a list of pieces, searched for a line
    end only in each new piece and joined once: a long line arriving in small pieces
    costs time in proportion to its length, not to its square.
    """

    __slots__ = ("_buf", "_done", "_held", "_kind", "_pieces")

    def __init__(self, cte: str | None) -> None:
        self._kind = (cte or "").strip().lower()
        self._buf = b""
        self._done = False
        self._pieces: list[bytes] = []
        self._held = 0

    def feed(self, data: bytes) -> bytes:
        if self._kind == "base64":
            if self._done:
                return b""
            eq = data.find(b"=")
            if eq >= 0:
                data = data[:eq]
                self._done = True
            clean = self._buf + data.translate(None, _B64_JUNK)
            cut = len(clean) - len(clean) % 4
            self._buf = clean[cut:]
            return binascii.a2b_base64(clean[:cut]) if cut else b""
        if self._kind == "quoted-printable":
            return self._feed_qp(bytes(data))
        return bytes(data)

    def _feed_qp(self, data: bytes) -> bytes:
        out = b""
        end = data.rfind(b"\n") + 1
        if end:
            self._pieces.append(data[:end])
            out = _qp(b"".join(self._pieces))
            data = data[end:]
            self._pieces, self._held = [], 0
        if data:
            self._pieces.append(data)
            self._held += len(data)
        if self._held > 65536:
            # an overlong line: cut before its trailing blanks and any "=", which
            # mean something only once the line's end is known (RFC 2045 §6.7)
            buf = b"".join(self._pieces)
            cut = len(buf.rstrip(b" \t\r"))
            eq = buf.find(b"=", max(cut - 2, 0), cut)
            cut = (eq if eq >= 0 else cut) or len(buf)  # all blanks: bounded anyway
            self._pieces = [buf[cut:]] if cut < len(buf) else []
            self._held = len(buf) - cut
            out += _qp(buf[:cut], final=False)
        return out

    def finish(self) -> bytes:
        buf, self._buf = self._buf, b""
        if self._kind == "base64":
            return _b64(buf)
        if self._kind == "quoted-printable":
            rest, self._pieces, self._held = b"".join(self._pieces), [], 0
            return _qp(rest)
        return b""


_CTE_FIELD = re.compile(rb"(?im)^content-transfer-encoding[ \t]*:[^\n]*\n(?:[ \t][^\n]*\n)*")


def _leaves(part: Part) -> list[Part]:
    if part.is_multipart:
        return [leaf for child in part.children for leaf in _leaves(child)]
    if part.message is not None:
        return _leaves(part.message)
    return [part]


def base64_binary_parts(data: bytes) -> bytes | None:
    """The message with every leaf part whose body holds NUL re-encoded as base64.

    RFC 9051 §4.3 lets unencoded binary reach a client only in a BINARY[] literal8, and
    §6.3.12 lets a server store APPEND data under a reversible transfer encoding: so
    BODY[] stays a plain literal and BINARY[] still returns the original octets.
    None when no part needs it.
    """
    if b"\x00" not in data:
        return None
    tree = parse_structure(data)
    out = data
    changed = False
    for leaf in sorted(_leaves(tree), key=lambda p: p.header_start, reverse=True):
        body = data[leaf.header_end : leaf.body_end]
        if b"\x00" not in body:
            continue
        header = _CTE_FIELD.sub(b"", data[leaf.header_start : leaf.header_end])
        blank = 2 if header.endswith(b"\r\n") else 1 if header.endswith(b"\n") else 0
        if header[:-blank].endswith(b"\n") or len(header) == blank:
            at = len(header) - blank
        else:  # no blank line ended the header: the body began right after it
            at, header = len(header), header + b"\r\n"
        header = header[:at] + b"Content-Transfer-Encoding: base64\r\n" + header[at:]
        encoded = binascii.b2a_base64(body, newline=False)
        lines = b"\r\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))
        if leaf.body_end == len(data):
            lines += b"\r\n"
        out = out[: leaf.header_start] + header + lines + out[leaf.body_end :]
        changed = True
    return out if changed else None
