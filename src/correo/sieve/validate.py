"""Semantic checks (RFC 5228 §2.10.5, §3.2, §8.3 and the extension RFCs).

Every command and test is described by one entry in ``COMMANDS``/``TESTS``:
its tags, mutually exclusive tag groups, positional arguments, test and
block shape and the capability it needs. Validation fills ``tags`` and
``positional`` on each node so the interpreter never re-parses arguments,
and collects *all* errors (with line:column) for ManageSieve CHECKSCRIPT.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .address import parse_sender
from .dates import DATE_PARTS, parse_zone
from .lexer import SieveError
from .match import COMPARATORS, RELATIONS
from .parser import (
    Argument,
    Command,
    Number,
    ParseLimits,
    Script,
    StringList,
    Tag,
    Test,
    parse_syntax,
)
from .variables import MODIFIER_PRECEDENCE, VARIABLE_NAME

__all__ = ["COMMANDS", "SIEVE_EXTENSIONS", "TESTS", "Spec", "check", "parse", "validate"]

SIEVE_EXTENSIONS = (
    "fileinto",
    "reject",
    "ereject",
    "envelope",
    "encoded-character",
    "imap4flags",
    "variables",
    "vacation",
    "subaddress",
    "copy",
    "body",
    "relational",
    "comparator-i;ascii-numeric",
    "date",
    "index",
    "mailbox",
    "spamtest",
    "spamtestplus",
)
# RFC 5228 §2.7.3: these two comparators are always available.
_IMPLICIT = frozenset({"comparator-i;octet", "comparator-i;ascii-casemap"})
_KNOWN = frozenset(SIEVE_EXTENSIONS) | _IMPLICIT
_IMPLIES = {"spamtestplus": "spamtest"}  # RFC 5235 §3.2

FLAG, STRING, STRINGS, NUMBER = "flag", "string", "strings", "number"


@dataclass(frozen=True, slots=True)
class Spec:
    """Argument shape of one command or test."""

    tags: Mapping[str, str] = field(default_factory=dict)
    groups: tuple[frozenset[str], ...] = ()
    positional: tuple[str, ...] = ()
    optional_leading: int = 0  # leading positionals that may be omitted
    tests: str = "none"  # "none" | "one" | "list"
    block: bool = False
    extension: str | None = None
    tag_extensions: Mapping[str, str] = field(default_factory=dict)
    required_group: frozenset[str] = frozenset()


_COMPARATOR = {"comparator": STRING}
_MATCH = {"is": FLAG, "contains": FLAG, "matches": FLAG, "value": STRING, "count": STRING}
_MATCH_GROUP = frozenset(_MATCH)
_ADDRESS = {"all": FLAG, "localpart": FLAG, "domain": FLAG, "user": FLAG, "detail": FLAG}
_ADDRESS_GROUP = frozenset(_ADDRESS)
_INDEX = {"index": NUMBER, "last": FLAG}
_EXT_TAGS = {
    "value": "relational",  # RFC 5231 §4
    "count": "relational",
    "user": "subaddress",  # RFC 5233 §4
    "detail": "subaddress",
    "index": "index",  # RFC 5260 §6
    "last": "index",
}
_FLAG_MODS = dict.fromkeys(MODIFIER_PRECEDENCE, FLAG)

COMMANDS: Mapping[str, Spec] = {
    "require": Spec(positional=(STRINGS,)),
    "if": Spec(tests="one", block=True),
    "elsif": Spec(tests="one", block=True),
    "else": Spec(block=True),
    "stop": Spec(),
    "keep": Spec(tags={"flags": STRINGS}, tag_extensions={"flags": "imap4flags"}),
    "discard": Spec(),
    "redirect": Spec(tags={"copy": FLAG}, positional=(STRING,), tag_extensions={"copy": "copy"}),
    "fileinto": Spec(
        tags={"copy": FLAG, "create": FLAG, "flags": STRINGS},
        positional=(STRING,),
        extension="fileinto",
        tag_extensions={"copy": "copy", "create": "mailbox", "flags": "imap4flags"},
    ),
    "reject": Spec(positional=(STRING,), extension="reject"),
    "ereject": Spec(positional=(STRING,), extension="ereject"),
    "setflag": Spec(positional=(STRING, STRINGS), optional_leading=1, extension="imap4flags"),
    "addflag": Spec(positional=(STRING, STRINGS), optional_leading=1, extension="imap4flags"),
    "removeflag": Spec(positional=(STRING, STRINGS), optional_leading=1, extension="imap4flags"),
    "set": Spec(
        tags=_FLAG_MODS,
        positional=(STRING, STRING),
        extension="variables",
    ),
    "vacation": Spec(
        tags={
            "days": NUMBER,
            "subject": STRING,
            "from": STRING,
            "addresses": STRINGS,
            "mime": FLAG,
            "handle": STRING,
        },
        positional=(STRING,),
        extension="vacation",
    ),
}

TESTS: Mapping[str, Spec] = {
    "address": Spec(
        tags={**_COMPARATOR, **_ADDRESS, **_MATCH, **_INDEX},
        groups=(_MATCH_GROUP, _ADDRESS_GROUP),
        positional=(STRINGS, STRINGS),
        tag_extensions=_EXT_TAGS,
    ),
    "header": Spec(
        tags={**_COMPARATOR, **_MATCH, **_INDEX},
        groups=(_MATCH_GROUP,),
        positional=(STRINGS, STRINGS),
        tag_extensions=_EXT_TAGS,
    ),
    "envelope": Spec(
        tags={**_COMPARATOR, **_ADDRESS, **_MATCH},
        groups=(_MATCH_GROUP, _ADDRESS_GROUP),
        positional=(STRINGS, STRINGS),
        extension="envelope",
        tag_extensions=_EXT_TAGS,
    ),
    "exists": Spec(positional=(STRINGS,)),
    "size": Spec(
        tags={"over": NUMBER, "under": NUMBER},
        groups=(frozenset({"over", "under"}),),
        required_group=frozenset({"over", "under"}),
    ),
    "allof": Spec(tests="list"),
    "anyof": Spec(tests="list"),
    "not": Spec(tests="one"),
    "true": Spec(),
    "false": Spec(),
    "body": Spec(
        tags={**_COMPARATOR, **_MATCH, "raw": FLAG, "content": STRINGS, "text": FLAG},
        groups=(_MATCH_GROUP, frozenset({"raw", "content", "text"})),
        positional=(STRINGS,),
        extension="body",
        tag_extensions=_EXT_TAGS,
    ),
    "date": Spec(
        tags={**_COMPARATOR, **_MATCH, **_INDEX, "zone": STRING, "originalzone": FLAG},
        groups=(_MATCH_GROUP, frozenset({"zone", "originalzone"})),
        positional=(STRING, STRING, STRINGS),
        extension="date",
        tag_extensions=_EXT_TAGS,
    ),
    "currentdate": Spec(
        tags={**_COMPARATOR, **_MATCH, "zone": STRING},
        groups=(_MATCH_GROUP,),
        positional=(STRING, STRINGS),
        extension="date",
        tag_extensions=_EXT_TAGS,
    ),
    "hasflag": Spec(
        tags={**_COMPARATOR, **_MATCH},
        groups=(_MATCH_GROUP,),
        positional=(STRINGS, STRINGS),
        optional_leading=1,
        extension="imap4flags",
        tag_extensions=_EXT_TAGS,
    ),
    "mailboxexists": Spec(positional=(STRINGS,), extension="mailbox"),
    "spamtest": Spec(
        tags={**_COMPARATOR, **_MATCH, "percent": FLAG},
        groups=(_MATCH_GROUP,),
        positional=(STRING,),
        extension="spamtest",
        tag_extensions={**_EXT_TAGS, "percent": "spamtestplus"},
    ),
    "string": Spec(
        tags={**_COMPARATOR, **_MATCH},
        groups=(_MATCH_GROUP,),
        positional=(STRINGS, STRINGS),
        extension="variables",
        tag_extensions=_EXT_TAGS,
    ),
}


def _kind_ok(arg: Argument, kind: str) -> bool:
    if kind == NUMBER:
        return isinstance(arg, Number)
    if kind == STRING:
        return isinstance(arg, StringList) and len(arg.values) == 1
    return isinstance(arg, StringList)


def _single(arg: Argument | None) -> str | None:
    """The literal value of a one-string argument, if it has no variables."""
    if isinstance(arg, StringList) and len(arg.values) == 1 and "${" not in arg.values[0]:
        return arg.values[0]
    return None


class _Validator:
    def __init__(
        self, requires: frozenset[str], sender_allowed: Callable[[str], bool] | None = None
    ) -> None:
        self.sender_allowed = sender_allowed
        self.requires = set(requires)
        for ext, implied in _IMPLIES.items():
            if ext in self.requires:
                self.requires.add(implied)
        self.errors: list[SieveError] = []

    def error(self, message: str, node: Command | Test | Argument) -> None:
        self.errors.append(SieveError(message, node.line, node.column))

    def block(self, commands: tuple[Command, ...], top: bool) -> tuple[Command, ...]:
        out: list[Command] = []
        seen_other = False
        previous = ""
        for cmd in commands:
            if cmd.name == "require":
                # RFC 5228 §3.2: require only at the start of the script.
                if not top or seen_other:
                    self.error("require must come before any other command", cmd)
            else:
                seen_other = True
            if cmd.name in ("elsif", "else") and previous not in ("if", "elsif"):
                self.error(f"{cmd.name} without a preceding if", cmd)  # RFC 5228 §3.1
            previous = cmd.name
            out.append(self.command(cmd))
        return tuple(out)

    def command(self, cmd: Command) -> Command:
        spec = COMMANDS.get(cmd.name)
        if spec is None:
            self.error(f"unknown command {cmd.name!r}", cmd)
            return cmd
        tags, positional = self.arguments(cmd, spec)
        tests = self.tests(cmd, spec)
        block = cmd.block
        if spec.block and block is None:
            self.error(f"{cmd.name} needs a block", cmd)
        elif not spec.block and block is not None:
            self.error(f"{cmd.name} takes no block", cmd)
        if block is not None:
            block = self.block(block, top=False)
        self.command_rules(cmd, tags, positional)
        return dataclasses.replace(cmd, tests=tests, block=block, tags=tags, positional=positional)

    def tests(self, node: Command | Test, spec: Spec) -> tuple[Test, ...]:
        if spec.tests == "none" and node.tests:
            self.error(f"{node.name} takes no test", node)
        elif spec.tests == "one" and (len(node.tests) != 1 or node.test_list):
            self.error(f"{node.name} needs exactly one test", node)
        elif spec.tests == "list" and not node.test_list:
            self.error(f"{node.name} needs a test list", node)
        return tuple(self.test(t) for t in node.tests)

    def test(self, test: Test) -> Test:
        spec = TESTS.get(test.name)
        if spec is None:
            self.error(f"unknown test {test.name!r}", test)
            return test
        tags, positional = self.arguments(test, spec)
        tests = self.tests(test, spec)
        self.test_rules(test, tags, positional)
        return dataclasses.replace(test, tests=tests, tags=tags, positional=positional)

    def arguments(
        self, node: Command | Test, spec: Spec
    ) -> tuple[dict[str, Argument | None], tuple[Argument, ...]]:
        if spec.extension and spec.extension not in self.requires:
            self.error(f"{node.name} requires the {spec.extension!r} extension", node)
        tags: dict[str, Argument | None] = {}
        positional: list[Argument] = []
        args = node.args
        i = 0
        while i < len(args):
            arg = args[i]
            i += 1
            if not isinstance(arg, Tag):
                positional.append(arg)
                continue
            if positional:  # RFC 5228 §2.6.2: tagged arguments come first
                self.error(f"tag :{arg.name} after positional arguments", arg)
            kind = spec.tags.get(arg.name)
            if kind is None:
                self.error(f"unknown tag :{arg.name} for {node.name}", arg)
                continue
            ext = spec.tag_extensions.get(arg.name)
            if ext and ext not in self.requires:
                self.error(f":{arg.name} requires the {ext!r} extension", arg)
            if arg.name in tags:
                self.error(f"duplicate tag :{arg.name}", arg)
            for group in spec.groups:
                if arg.name in group and any(t in group for t in tags if t != arg.name):
                    self.error(f":{arg.name} conflicts with another tag", arg)
            value: Argument | None = None
            if kind != FLAG:
                if i >= len(args) or not _kind_ok(args[i], kind):
                    self.error(f":{arg.name} needs a {kind} argument", arg)
                    continue
                value = args[i]
                i += 1
            tags[arg.name] = value
        want = spec.positional
        if not (len(want) - spec.optional_leading <= len(positional) <= len(want)):
            self.error(f"{node.name}: wrong number of arguments", node)
        else:
            for arg, kind in zip(positional, want[len(want) - len(positional) :], strict=True):
                if not _kind_ok(arg, kind):
                    self.error(f"{node.name}: expected a {kind}", arg)
        if spec.required_group and not spec.required_group & tags.keys():
            names = " or ".join(f":{t}" for t in sorted(spec.required_group))
            self.error(f"{node.name} needs {names}", node)
        self.common_tags(node, tags)
        return tags, tuple(positional)

    def common_tags(self, node: Command | Test, tags: Mapping[str, Argument | None]) -> None:
        comparator = _single(tags.get("comparator"))
        if comparator is not None:
            name = comparator.lower()
            if name not in COMPARATORS:
                self.error(f"unknown comparator {comparator!r}", node)
            elif f"comparator-{name}" not in self.requires | _IMPLICIT:
                self.error(f"comparator {name!r} must be required", node)
            elif name == "i;ascii-numeric" and tags.keys() & {"contains", "matches"}:
                # RFC 4790 §9.1: i;ascii-numeric offers no substring matching
                self.error("i;ascii-numeric cannot be used with :contains/:matches", node)
        for rel_tag in ("value", "count"):
            rel = _single(tags.get(rel_tag))
            if rel is not None and rel.lower() not in RELATIONS:  # RFC 5231 §4
                self.error(f"invalid relational match {rel!r}", node)
        if "last" in tags and "index" not in tags:
            self.error(":last requires :index", node)  # RFC 5260 §6
        index = tags.get("index")
        if isinstance(index, Number) and index.value < 1:
            self.error(":index must be 1 or more", index)
        zone = _single(tags.get("zone"))
        if zone is not None and parse_zone(zone) is None:
            self.error(f"invalid :zone {zone!r}", node)  # RFC 5260 §4.1

    def command_rules(
        self, cmd: Command, tags: Mapping[str, Argument | None], pos: tuple[Argument, ...]
    ) -> None:
        if cmd.name == "require" and pos and isinstance(pos[0], StringList):
            for ext in pos[0].values:
                if ext.lower() not in _KNOWN:
                    self.error(f"unsupported extension {ext!r}", pos[0])  # RFC 5228 §3.2
        elif cmd.name == "set" and len(pos) == 2:
            name = _single(pos[0])
            if name is not None and not VARIABLE_NAME.match(name):
                self.error(f"invalid variable name {name!r}", pos[0])  # RFC 5229 §4
            precedences = [MODIFIER_PRECEDENCE[t] for t in tags]
            if len(precedences) != len(set(precedences)):
                self.error("set modifiers of equal precedence", cmd)  # RFC 5229 §4.1
        elif cmd.name in ("setflag", "addflag", "removeflag") and len(pos) == 2:
            self.variable_name_arg(pos[0])
        elif cmd.name == "vacation" and self.sender_allowed is not None:
            value = _single(tags.get("from"))
            if value is not None:
                # RFC 5230 §4.2 leaves :from to site policy: only the account's own
                # addresses, so an auto-reply cannot speak for someone else.
                sender = parse_sender(value)
                if sender is None:
                    self.error(f"vacation :from {value!r} is not one address", cmd)
                elif not self.sender_allowed(sender[1]):
                    self.error(f"vacation :from {sender[1]!r} is not one of your addresses", cmd)

    def variable_name_arg(self, arg: Argument) -> None:
        if "variables" not in self.requires:
            self.error("a variable name argument requires 'variables'", arg)
        if isinstance(arg, StringList):
            for name in arg.values:
                if not VARIABLE_NAME.match(name):
                    self.error(f"invalid variable name {name!r}", arg)

    def test_rules(
        self, test: Test, tags: Mapping[str, Argument | None], pos: tuple[Argument, ...]
    ) -> None:
        part: Argument | None = None
        if test.name == "date" and len(pos) == 3:
            part = pos[1]
        elif test.name == "currentdate" and len(pos) == 2:
            part = pos[0]
        elif test.name == "hasflag" and len(pos) == 2:
            self.variable_name_arg(pos[0])
        value = _single(part)
        if value is not None and value.lower() not in DATE_PARTS:
            self.error(f"unknown date-part {value!r}", test)  # RFC 5260 §4.2


def validate(
    script: Script, *, sender_allowed: Callable[[str], bool] | None = None
) -> tuple[Script, list[SieveError]]:
    """Check ``script``; returns the annotated script and all errors found.

    ``sender_allowed`` (the owner's policy) refuses a literal vacation ``:from`` it
    does not accept; without it the delivery code enforces the policy at run time.
    """
    validator = _Validator(script.requires, sender_allowed)
    commands = validator.block(script.commands, top=True)
    return Script(commands, frozenset(validator.requires)), validator.errors


_DEFAULT_LIMITS = ParseLimits()


def parse(text: str, *, limits: ParseLimits = _DEFAULT_LIMITS) -> Script:
    """Parse and validate a script; raises the first SieveError found."""
    script, errors = validate(parse_syntax(text, limits))
    if errors:
        raise errors[0]
    return script


def check(
    text: str,
    *,
    limits: ParseLimits = _DEFAULT_LIMITS,
    sender_allowed: Callable[[str], bool] | None = None,
) -> list[SieveError]:
    """All errors in ``text`` (empty when valid): ManageSieve CHECKSCRIPT/PUTSCRIPT."""
    try:
        syntax = parse_syntax(text, limits)
    except SieveError as exc:
        return [exc]
    return validate(syntax, sender_allowed=sender_allowed)[1]
