"""Reports other domains send us: find the attachment, decompress it within bounds, parse.

A report is an attachment — zip, gzip or plain XML for DMARC (RFC 7489 §7.2.1.1), gzip
or plain JSON for TLS (RFC 8460 §5.3) — and every byte of it is hostile.  Decompression
is streamed in small steps and stops as soon as the output passes ``max_input`` bytes or
``max_ratio`` times the compressed size (a zip bomb costs at most that much memory);
the parsers add their own depth and element budgets.  Blocking and CPU-bound: the server
calls :func:`extract_reports` in a worker thread.
"""

from __future__ import annotations

import binascii
import io
import json
import struct
import time
import zipfile
import zlib
from dataclasses import dataclass

from correo.message.structure import Limits, Part, parse_structure
from correo.reports.dmarcxml import DMARC_KIND, ReportError, parse_report
from correo.reports.tlsjson import parse_stamp, parse_tls_report
from correo.reports.tlsresults import TLS_KIND
from correo.store.api import ReceivedReport

__all__ = ["IntakeLimits", "decompress", "extract_reports"]

#: The ratio bound applies above this output size: small reports compress very well.
_RATIO_FLOOR = 1024 * 1024
_STEP = 64 * 1024
#: Attachments and zip members looked at in one message.
_MAX_PARTS = 10
#: Members a report archive may list: zipfile reads its whole central directory into
#: objects first (a 20 MB archive of empty members is 250,000 of them).
_MAX_MEMBERS = 1000
#: The compressions a report member may use (APPNOTE 4.4.5): zipfile inflates bzip2 and
#: LZMA with no bound on one step's output, so 465 octets of bzip2 became 400 MB at once.
_ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)


@dataclass(frozen=True, slots=True)
class IntakeLimits:
    max_input: int = 16 * 1024 * 1024  # decompressed bytes
    max_ratio: int = 200  # decompressed / compressed, above _RATIO_FLOOR


def _cap(compressed: int, limits: IntakeLimits) -> int:
    return min(limits.max_input, max(_RATIO_FLOOR, compressed * limits.max_ratio))


def _too_big(limits: IntakeLimits, compressed: int) -> ReportError:
    return ReportError(
        f"decompresses to more than {_cap(compressed, limits)} bytes"
        f" ({compressed} compressed; max_input {limits.max_input}, ratio {limits.max_ratio})"
    )


def _gunzip(data: bytes, limits: IntakeLimits) -> bytes:
    cap = _cap(len(data), limits)
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = bytearray()
    pending = data
    try:
        while pending and not d.eof:
            out += d.decompress(pending, _STEP)
            pending = d.unconsumed_tail
            if len(out) > cap:
                raise _too_big(limits, len(data))
        out += d.flush(_STEP)
    except zlib.error as exc:
        raise ReportError(f"bad gzip data: {exc}") from None
    if len(out) > cap:
        raise _too_big(limits, len(data))
    if not d.eof:
        raise ReportError("truncated gzip data")
    return bytes(out)


#: What zipfile raises on a damaged or hostile archive (ValueError: a negative seek).
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    NotImplementedError,
    RuntimeError,
    ValueError,
    struct.error,
    EOFError,
    OSError,
    zlib.error,
    KeyError,
    IndexError,
    OverflowError,
)


def _member_count(data: bytes) -> int:
    """The member count in the end of central directory record (APPNOTE 4.3.16), read
    before zipfile reads the directory itself; 0xFFFF (ZIP64) counts as too many."""
    at = data.rfind(b"PK\x05\x06", max(0, len(data) - 22 - 65535))
    if at < 0 or at + 22 > len(data):
        raise ReportError("bad zip archive: no end of central directory")
    count: int = struct.unpack_from("<H", data, at + 10)[0]
    return count


def _unzip(data: bytes, limits: IntakeLimits, suffixes: tuple[str, ...]) -> bytes:
    if _member_count(data) > _MAX_MEMBERS:
        raise ReportError(f"zip archive of more than {_MAX_MEMBERS} members")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = [i for i in archive.infolist()[:_MAX_PARTS] if not i.is_dir()]
            wanted = [i for i in members if i.filename.lower().endswith(suffixes)] or members
            if not wanted:
                raise ReportError("empty zip archive")
            info = wanted[0]
            if info.compress_type not in _ZIP_METHODS:
                raise ReportError(f"zip member compressed with method {info.compress_type}")
            cap = _cap(info.compress_size or len(data), limits)
            out = bytearray()
            with archive.open(info) as member:
                while chunk := member.read(_STEP):
                    out += chunk
                    if len(out) > cap:
                        raise _too_big(limits, info.compress_size or len(data))
            return bytes(out)
    except ReportError:
        raise
    except _ZIP_ERRORS as exc:  # zipfile trusts the archive's own offsets and sizes
        raise ReportError(f"bad zip archive: {type(exc).__name__}: {exc}") from None


def decompress(data: bytes, limits: IntakeLimits, suffixes: tuple[str, ...] = (".xml",)) -> bytes:
    """The report document in ``data``: unzipped, gunzipped or as it is (by magic bytes)."""
    if data[:4] == b"PK\x03\x04":
        return _unzip(data, limits, suffixes)
    if data[:2] == b"\x1f\x8b":
        return _gunzip(data, limits)
    if len(data) > limits.max_input:
        raise ReportError(f"report larger than {limits.max_input} bytes")
    return data


def _decode(message: bytes, part: Part) -> bytes:
    body = message[part.header_end : part.body_end]
    encoding = (part.encoding or "").lower()
    try:
        if encoding == "base64":
            return binascii.a2b_base64(body)
        if encoding == "quoted-printable":
            return binascii.a2b_qp(body)
    except binascii.Error as exc:
        raise ReportError(f"bad {encoding} body: {exc}") from None
    return body


def _name(part: Part) -> str:
    for key, value in (*part.disposition_params, *part.params):
        if key.lower() in ("filename", "name"):
            return value.lower()
    return ""


_DMARC_TYPES = {
    "application/zip",
    "application/x-zip-compressed",
    "application/gzip",
    "application/x-gzip",
    "application/xml",
    "text/xml",
}
_TLS_TYPES = {
    "application/tlsrpt+gzip",
    "application/tlsrpt+json",
    "application/gzip",
    "application/x-gzip",
    "application/json",
}


def _candidates(message: bytes, kind: str) -> list[Part]:
    root = parse_structure(message, Limits())
    types = _DMARC_TYPES if kind == DMARC_KIND else _TLS_TYPES
    suffixes = (".zip", ".gz", ".xml") if kind == DMARC_KIND else (".gz", ".json")
    found: list[Part] = []
    for part in root.walk():
        if part.is_multipart or part.message is not None:
            continue
        if part.media_type in types or _name(part).endswith(suffixes):
            found.append(part)
    return found[:_MAX_PARTS]


def _dmarc(document: bytes, now: float) -> ReceivedReport:
    report = parse_report(document)
    return ReceivedReport(
        0,
        DMARC_KIND,
        report["org_name"],
        report["report_id"],
        report["policy"]["domain"].lower(),
        float(report["begin"]),
        float(report["end"]),
        now,
        json.dumps(report),
    )


def _tls(document: bytes, now: float) -> ReceivedReport:
    report = parse_tls_report(document)
    domains = sorted({p["policy-domain"].lower() for p in report["policies"]} - {""})
    return ReceivedReport(
        0,
        TLS_KIND,
        report["organization-name"],
        report["report-id"],
        " ".join(domains)[:255],
        parse_stamp(report["start"]),
        parse_stamp(report["end"]),
        now,
        json.dumps(report),
    )


def extract_reports(
    message: bytes, kind: str, limits: IntakeLimits, now: float | None = None
) -> tuple[list[ReceivedReport], list[str]]:
    """The reports of ``kind`` (``dmarc``/``tlsrpt``) attached to ``message``, and why
    any attachment that looked like one was refused (blocking: run in a thread)."""
    now = time.time() if now is None else now
    reports: list[ReceivedReport] = []
    problems: list[str] = []
    suffixes = (".xml",) if kind == DMARC_KIND else (".json",)
    for part in _candidates(message, kind):
        try:
            document = decompress(_decode(message, part), limits, suffixes)
            reports.append(_dmarc(document, now) if kind == DMARC_KIND else _tls(document, now))
        except ReportError as exc:
            problems.append(str(exc))
    if not reports and not problems:
        problems.append("no report attachment found")
    return reports, problems
