"""``correo --help`` and every subcommand's help: each argument and option explained."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator

from correo.cli.main import build_parser


def _parsers(
    parser: argparse.ArgumentParser, path: str = "correo"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _parsers(child, f"{path} {name}")


def test_every_argument_and_option_has_a_help_line() -> None:
    missing: list[str] = []
    for path, parser in _parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helped = {a.dest for a in action._choices_actions if a.help}
                missing += [f"{path} {n}" for n in action.choices if n not in helped]
                continue
            if not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, "no help line for:\n" + "\n".join(sorted(set(missing)))


def test_no_metavar_shows_a_python_name() -> None:
    """``--from FROM_`` is how argparse spells a ``dest`` of ``from_``: a metavar is set."""
    bad: list[str] = []
    for path, parser in _parsers(build_parser()):
        text = parser.format_help()
        bad += [f"{path}: {m}" for m in re.findall(r"\b[A-Z][A-Z0-9]*_\b", text)]
        # BODY_FILE is argparse's spelling of a dest too: say what to give (FILE, TEXT)
        bad += [
            f"{path}: {m}"
            for m in re.findall(r"\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b", parser.format_usage())
        ]
    assert not bad, "\n".join(bad)


def test_top_level_help_describes_the_whole_system() -> None:
    text = build_parser().format_help()
    for word in ("SMTP", "IMAP", "POP3", "JMAP", "Sieve", "DKIM", "queue"):
        assert word in text, word
