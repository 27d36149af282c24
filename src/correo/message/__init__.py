"""correo.message: RFC 5322 / MIME over bytes, with part offsets for IMAP.

``parse_structure`` / ``StructureBuilder`` compute a :class:`Part` tree once per
message (JSON-serialisable); ``imapfmt`` answers ENVELOPE, BODYSTRUCTURE and section
ranges from it; ``text`` feeds search; ``compose`` builds new messages.
"""

from .compose import Attachment, compose
from .encoded import decode_header, encode_header
from .headers import HeaderCollector, addresses_in, parse_fields
from .imapfmt import (
    TransferDecoder,
    bodystructure,
    decode_transfer,
    envelope,
    header_fields,
    section,
)
from .mime import Address, decode_param, parse_address_list, parse_content_type
from .structure import Envelope, Limits, Part, StructureBuilder, parse_structure
from .text import html_to_text, searchable_text

__all__ = [
    "Address",
    "Attachment",
    "Envelope",
    "HeaderCollector",
    "Limits",
    "Part",
    "StructureBuilder",
    "TransferDecoder",
    "addresses_in",
    "bodystructure",
    "compose",
    "decode_header",
    "decode_param",
    "decode_transfer",
    "encode_header",
    "envelope",
    "header_fields",
    "html_to_text",
    "parse_address_list",
    "parse_content_type",
    "parse_fields",
    "parse_structure",
    "searchable_text",
    "section",
]
