"""Sieve mail filtering (RFC 5228 and extensions): parser, validator and a
pure interpreter that returns actions for the delivery code to perform.

Errors: ``SieveError`` (script errors, with line and column) is the only
exception ``parse`` raises; ``run`` never raises, it reports runtime errors
in ``Result.errors`` together with an implicit keep.
"""

from __future__ import annotations

from .address import Envelope, parse_sender, vacation_allowed
from .interpreter import (
    Action,
    BodyLimits,
    BodyTransform,
    BytesMessageView,
    Discard,
    FileInto,
    Keep,
    MessageBody,
    MessageView,
    Redirect,
    Reject,
    Result,
    RunLimits,
    Vacation,
    run,
)
from .lexer import SieveError
from .parser import ParseLimits, Script
from .validate import SIEVE_EXTENSIONS, check, parse

__all__ = [
    "SIEVE_EXTENSIONS",
    "Action",
    "BodyLimits",
    "BodyTransform",
    "BytesMessageView",
    "Discard",
    "Envelope",
    "FileInto",
    "Keep",
    "MessageBody",
    "MessageView",
    "ParseLimits",
    "Redirect",
    "Reject",
    "Result",
    "RunLimits",
    "Script",
    "SieveError",
    "Vacation",
    "check",
    "parse",
    "parse_sender",
    "run",
    "vacation_allowed",
]
