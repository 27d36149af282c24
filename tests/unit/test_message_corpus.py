"""Golden corpus: each tests/data/messages/*.eml has its expected tree, ENVELOPE and
BODYSTRUCTURE in the matching .json.

The expected files were generated once by correo, compared with Dovecot 2.3.19 (a
throwaway ``doveadm fetch`` instance) and read by hand against RFC 9051 §7.5.2.  Known,
deliberate differences from Dovecot are listed in ``DOVECOT_DIFFERS``.
Regenerate with ``CORREO_REGEN=1 pytest tests/unit/test_message_corpus.py`` and review
the diff before committing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from correo.message import Part, StructureBuilder, bodystructure, envelope, parse_structure

DATA = Path(__file__).resolve().parents[1] / "data" / "messages"
FILES = sorted(DATA.glob("*.eml"))

DOVECOT_DIFFERS = {
    "14-bare-lf": "Dovecot reports CRLF-normalised sizes; we report stored octets",
    "21-invalid-content-type": "RFC 2045 §5.2 default text/plain; Dovecot echoes 'garbage' ''",
    "25-message-global": "RFC 9051 §7.5.2 encapsulates message/global; Dovecot 2.3 does not",
}


def _render(data: bytes) -> dict[str, object]:
    part = parse_structure(data)
    return {
        "tree": part.to_json(),
        "envelope": envelope(part).decode("utf-8", "surrogateescape"),
        "bodystructure": bodystructure(part).decode("utf-8", "surrogateescape"),
        "body": bodystructure(part, extended=False).decode("utf-8", "surrogateescape"),
    }


def test_corpus_size() -> None:
    assert len(FILES) >= 25


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_golden(path: Path) -> None:
    got = _render(path.read_bytes())
    expected_path = path.with_suffix(".json")
    if os.environ.get("CORREO_REGEN"):
        expected_path.write_text(json.dumps(got, indent=1, ensure_ascii=True) + "\n")
    assert got == json.loads(expected_path.read_text())


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_json_round_trip_and_chunked_equal(path: Path) -> None:
    data = path.read_bytes()
    part = parse_structure(data)
    assert Part.from_json(json.loads(json.dumps(part.to_json()))) == part
    for size in (1, 3, 7, 64):
        b = StructureBuilder()
        for i in range(0, len(data), size):
            b.feed(data[i : i + size])
        assert b.finish() == part, size


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_offsets_are_sane(path: Path) -> None:
    data = path.read_bytes()
    for p in parse_structure(data).walk():
        assert 0 <= p.header_start <= p.header_end <= p.body_end <= len(data)
