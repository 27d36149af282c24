"""Filters as a form: rules kept as a marked block of the account's active Sieve script.

Like vacation (:mod:`correo.web.jmap_vacation`) and forwarding
(:mod:`correo.web.forwarding`), the rules the account page edits are Sieve (RFC 5228), so
what ManageSieve shows is what runs.  Three marked pieces:

* a first line ``# correo:filters {rules as JSON}``: what the form shows;
* ``require [...]; # correo:filters`` right after it;
* between ``# correo:filters-begin`` and ``# correo:filters-end``, at the end of the
  script (after vacation and forwarding): one ``if`` per enabled rule, in order.

A rule is ``{"enabled", "field": from|to|subject|header, "header", "match":
contains|is|matches, "value", "actions": [{"type": fileinto|seen|flag|redirect|discard|
stop, "arg"}]}``.  The form can show a script only when everything in it is one of the
marked blocks (or ``require`` commands and comments) and the filters block is still what
its JSON line makes: a script edited by hand is shown, not replaced.  Pure functions.
"""

from __future__ import annotations

import json
import re
from typing import Any

from correo.web.forwarding import valid_address
from correo.web.jmap_vacation import with_block, without_block

__all__ = ["MAX_RULES", "FilterError", "filter_rules", "filters_script"]

MAX_RULES = 100
_MAX_ACTIONS = 10
_MAX_VALUE = 1000
_HEAD = "# correo:filters "
_BEGIN = "# correo:filters-begin"
_END = "# correo:filters-end"
_REQUIRE_TAIL = " # correo:filters"
_FIELDS = {"from", "to", "subject", "header"}
_MATCHES = {"contains", "is", "matches"}  # RFC 5228 §2.7.1 match types
_HEADER = re.compile(r"[!-9;-~]{1,100}")  # RFC 5322 §3.6.8 field name
# the other marked blocks the form knows: (head, require, begin, end)
_KNOWN = (
    ("# correo:vacation ", 'require ["vacation", "date", "relational"]; # correo:vacation',
     "# correo:vacation-begin", "# correo:vacation-end"),
    ("# correo:forward ", 'require ["copy"]; # correo:forward',
     "# correo:forward-begin", "# correo:forward-end"),
)  # fmt: skip


# the extensions each action needs (RFC 5228 §3.2 require)
_NEEDS = {"fileinto": {"fileinto"}, "seen": {"imap4flags"}, "flag": {"imap4flags"},
          "redirect": {"copy"}}  # fmt: skip


class FilterError(ValueError):
    """A rule the form sent that cannot be a filter (the text says why)."""


def _quote(text: str) -> str:
    """A Sieve quoted string (RFC 5228 §2.4.2): backslash and quote escaped."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _text(value: object, what: str, most: int = _MAX_VALUE) -> str:
    if not isinstance(value, str) or not value.strip():
        raise FilterError(f"{what} is missing.")
    if len(value) > most or "\r" in value or "\n" in value or "\0" in value:
        raise FilterError(f"{what} must be one line of at most {most} characters.")
    return value


def _clean(rules: object) -> list[dict[str, Any]]:
    """The rules as the form sent them, checked and reduced to what is known."""
    if not isinstance(rules, list) or len(rules) > MAX_RULES:
        raise FilterError(f"Give at most {MAX_RULES} rules.")
    out: list[dict[str, Any]] = []
    for n, rule in enumerate(rules, 1):
        if not isinstance(rule, dict):
            raise FilterError(f"Rule {n} is not a rule.")
        field, match = rule.get("field"), rule.get("match")
        if field not in _FIELDS or match not in _MATCHES:
            raise FilterError(f"Rule {n}: choose what to look at and how.")
        header = ""
        if field == "header":
            header = _text(rule.get("header"), f"Rule {n}: the header's name", 100)
            if _HEADER.fullmatch(header) is None:
                raise FilterError(f"Rule {n}: {header[:100]!r} is not a header name.")
        value = _text(rule.get("value"), f"Rule {n}: the text to look for")
        actions = rule.get("actions")
        if not isinstance(actions, list) or not 1 <= len(actions) <= _MAX_ACTIONS:
            raise FilterError(f"Rule {n}: give one to {_MAX_ACTIONS} actions.")
        done: list[dict[str, str]] = []
        for action in actions:
            kind = action.get("type") if isinstance(action, dict) else None
            arg = ""
            if kind == "fileinto":
                arg = _text(action.get("arg"), f"Rule {n}: the folder", 255)
            elif kind == "redirect":
                arg = _text(action.get("arg"), f"Rule {n}: the address", 320).strip()
                if not valid_address(arg):
                    raise FilterError(f"Rule {n}: not an address: {arg[:100]}")
            elif kind not in ("seen", "flag", "discard", "stop"):
                raise FilterError(f"Rule {n}: unknown action.")
            done.append({"type": str(kind), "arg": arg})
        out.append({
            "enabled": rule.get("enabled", True) is not False,
            "field": field, "header": header, "match": match, "value": value,
            "actions": done,
        })  # fmt: skip
    return out


def _test(rule: dict[str, Any]) -> str:
    names = {"from": "from", "to": "to", "subject": "subject"}
    name = names.get(rule["field"]) or rule["header"]
    return f"header :{rule['match']} {_quote(name)} {_quote(rule['value'])}"


def _command(action: dict[str, str]) -> str:
    kind, arg = action["type"], action["arg"]
    if kind == "fileinto":
        return f"fileinto {_quote(arg)};"  # RFC 5228 §4.1
    if kind == "seen":
        return 'addflag "\\\\Seen";'  # RFC 5232 §5.2
    if kind == "flag":
        return 'addflag "\\\\Flagged";'
    if kind == "redirect":
        return f"redirect :copy {_quote(arg)};"  # RFC 3894: a copy stays here too
    return f"{kind};"  # discard, stop


def _generate(rules: list[dict[str, Any]]) -> tuple[str, str]:
    """(the require line, the block) for ``rules``."""
    needs: set[str] = set()
    lines = [_BEGIN]
    for rule in rules:
        if not rule["enabled"]:
            continue
        for action in rule["actions"]:
            needs |= _NEEDS.get(action["type"], set())
        # flags first: a fileinto or keep takes the flags set before it (RFC 5232 §3)
        ordered = sorted(rule["actions"], key=lambda a: a["type"] not in ("seen", "flag"))
        commands = " ".join(_command(a) for a in ordered)
        lines.append(f"if {_test(rule)} {{ {commands} }}")
    lines.append(_END)
    require = f"require {json.dumps(sorted(needs))};{_REQUIRE_TAIL}" if needs else ""
    return require, "\n".join(lines) + "\n"


def _rest(script: str) -> str:
    """The script without its filters block."""
    rest = script
    for line in script.splitlines():
        if line.startswith("require") and line.endswith(_REQUIRE_TAIL):
            rest = without_block(rest, _HEAD, line, _BEGIN, _END)
            break
    else:
        rest = without_block(rest, _HEAD, "\0", _BEGIN, _END)
    return rest


def _only_marked(script: str) -> bool:
    """Whether everything but the marked blocks is ``require`` commands and comments."""
    rest = _rest(script)
    for head, require, begin, end in _KNOWN:
        rest = without_block(rest, head, require, begin, end)
    rest = re.sub(r"/\*.*?\*/", "", rest, flags=re.S)
    for line in rest.splitlines():
        bare = line.split("#", 1)[0].strip() if not line.lstrip().startswith("require") else ""
        if bare:
            return False
        if line.lstrip().startswith("require") and not line.rstrip().endswith(";"):
            return False
    return True


def filter_rules(script: str | None) -> dict[str, Any]:
    """``{"rules": [...], "editable": bool}`` for the form; not editable when the script
    holds what the form cannot show (it is then kept as it is)."""
    text = script or ""
    rules: list[dict[str, Any]] = []
    block = ""
    inside = False
    for line in text.splitlines():
        if line.startswith(_HEAD):
            try:
                rules = _clean(json.loads(line[len(_HEAD) :]))
            except (ValueError, FilterError):
                return {"rules": [], "editable": False}
        elif line == _BEGIN:
            inside = True
        if inside:
            block += line + "\n"
        if line == _END:
            inside = False
    if block and block != _generate(rules)[1]:
        return {"rules": rules, "editable": False}  # the block was edited by hand
    return {"rules": rules, "editable": _only_marked(text)}


def filters_script(script: str | None, rules: object) -> str:
    """``script`` with its filters block made from ``rules`` (none: removed).

    Raises :class:`FilterError` for a rule that cannot be, and when the script holds what
    the form cannot show (it is never overwritten).
    """
    cleaned = _clean(rules)
    if not filter_rules(script)["editable"]:
        raise FilterError("The script was edited by hand: change it in the Sieve editor.")
    rest = _rest(script or "")
    if not cleaned:
        return rest
    head = _HEAD + json.dumps(cleaned, separators=(",", ":"), ensure_ascii=False) + "\n"
    require, block = _generate(cleaned)
    placed = with_block(rest, head, require, "")
    if not require:
        placed = placed.replace(head + "\n", head, 1)  # no empty line for a require
    return placed.rstrip("\n") + "\n" + block
