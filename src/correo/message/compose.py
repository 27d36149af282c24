"""Building new messages for the MUA and for generated mail (bounces, notices).

Generation uses the stdlib ``email`` package (``EmailMessage`` + ``policy.SMTP``): on
*generation* it does not raise on odd input, it encodes display names and subjects as
RFC 2047 words, non-ASCII filenames with RFC 2231, picks 7bit / quoted-printable /
base64 per part, writes CRLF, and picks boundaries checked against the content.  We add
the structure choices (alternative / related / mixed) and the required fields.

No file I/O here (this is the wire band): callers read attachment files themselves.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address as EmailAddress
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr

from .text import html_to_text

__all__ = ["Attachment", "compose"]

AddressLike = str | tuple[str, str]


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file to attach; ``content_id`` makes it an inline part of multipart/related."""

    data: bytes
    filename: str
    content_type: str | None = None  # guessed from the filename when None
    content_id: str | None = None

    @property
    def media_type(self) -> tuple[str, str]:
        ctype = self.content_type or mimetypes.guess_type(self.filename)[0]
        main, _, sub = (ctype or "application/octet-stream").partition("/")
        return main, sub or "octet-stream"


def _address(value: AddressLike) -> EmailAddress:
    name, addr = value if isinstance(value, tuple) else parseaddr(value)
    if not addr:
        raise ValueError(f"not an address: {value!r}")
    return EmailAddress(display_name=name, addr_spec=addr)


def _drop_mime_version(part: object) -> None:
    """RFC 2045 §4: MIME-Version is needed at top level only; the stdlib adds it to parts."""
    if isinstance(part, EmailMessage):
        del part["MIME-Version"]
        for sub in part.iter_parts():
            _drop_mime_version(sub)


def compose(
    *,
    from_: AddressLike,
    to: Sequence[AddressLike] = (),
    cc: Sequence[AddressLike] = (),
    bcc: Sequence[AddressLike] = (),
    subject: str = "",
    text: str | None = None,
    html: str | None = None,
    attachments: Sequence[Attachment] = (),
    date: datetime | None = None,
    message_id: str | None = None,
    domain: str = "localhost",
    extra_headers: Sequence[tuple[str, str]] = (),
) -> bytes:
    """A complete RFC 5322 message as CRLF bytes.

    Shape: text only -> text/plain; with ``html`` -> multipart/alternative (plain text
    derived from the HTML when ``text`` is None); attachments with a ``content_id``
    go with the HTML in multipart/related; others make the whole multipart/mixed.
    Raises ValueError for an unusable address (our caller's mistake, not hostile input).
    """
    all_addrs = [from_, *to, *cc, *bcc]
    utf8 = any(not _address(a).addr_spec.isascii() for a in all_addrs)
    # RFC 6531 only when an address needs it; otherwise 7-bit clean (quoted-printable or
    # base64 for non-ASCII text) so the message passes any relay unchanged.
    pol = policy.SMTPUTF8 if utf8 else policy.SMTP.clone(cte_type="7bit")
    msg = EmailMessage(policy=pol)
    msg["From"] = _address(from_)
    for name, values in (("To", to), ("Cc", cc), ("Bcc", bcc)):
        if values:
            msg[name] = [_address(v) for v in values]
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date or datetime.now(UTC))  # RFC 5322 §3.6.1
    msg["Message-ID"] = message_id or make_msgid(domain=domain)  # RFC 5322 §3.6.4
    msg["MIME-Version"] = "1.0"  # RFC 2045 §4
    for name, value in extra_headers:
        msg[name] = value

    inline = [a for a in attachments if a.content_id]
    files = [a for a in attachments if not a.content_id]
    if html is None:
        msg.set_content(text or "", subtype="plain")
    else:
        msg.set_content(text if text is not None else html_to_text(html), subtype="plain")
        msg.add_alternative(html, subtype="html")
        if inline:
            payload = msg.get_payload()
            assert isinstance(payload, list)
            html_part = payload[1]
            assert isinstance(html_part, EmailMessage)
            for a in inline:
                main, sub = a.media_type
                cid = a.content_id or ""
                html_part.add_related(
                    a.data,
                    main,
                    sub,
                    cid=cid if cid.startswith("<") else f"<{cid}>",
                    filename=a.filename,
                    disposition="inline",
                )
    if html is None:
        files = [*inline, *files]  # nothing to relate them to
    for a in files:
        main, sub = a.media_type
        if main == "text":
            # bytes keep the author's octets; base64 keeps them intact end to end
            msg.add_attachment(a.data, main, sub, filename=a.filename, cte="base64")
        else:
            msg.add_attachment(a.data, main, sub, filename=a.filename)
    for child in msg.iter_parts():
        _drop_mime_version(child)  # RFC 2045 §4: required at top level only
    return msg.as_bytes(policy=pol)
