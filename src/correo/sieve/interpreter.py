"""Evaluates a validated script against one message; returns actions only.

The interpreter never performs an action: it returns a ``Result`` for the
delivery code. Any runtime failure (limits, bad redirect address,
incompatible actions) yields ``errors`` and an implicit keep, so a broken
script never loses mail (RFC 5228 §2.10.6).

The message comes from a stranger, so a run is bounded: every command, test and
comparison is charged to ``RunLimits.max_steps`` in proportion to the characters it
scans (``correo.sieve.match.WORK_PER_STEP``), body text is decoded once per message
within ``BodyLimits``, and with a ``clock`` a run also stops after
``RunLimits.max_seconds``. The delivery code runs it in a worker thread.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from correo.message.structure import Part

from .address import Envelope, address_part, decode_header_value, parse_addresses
from .body import BodyLimits, BodyTransform, MessageBody
from .dates import date_part, parse_date_header, parse_zone
from .match import WORK_PER_STEP, Matcher
from .parser import Argument, Command, Number, Script, StringList, Test
from .variables import VariableStore, apply_modifiers

__all__ = [
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
    "Redirect",
    "Reject",
    "Result",
    "RunLimits",
    "Vacation",
    "run",
]


class MessageView(Protocol):
    """What the interpreter reads from a message; delivery adapts its model."""

    @property
    def size(self) -> int: ...

    def header(self, name: str) -> list[str]:
        """Raw (unfolded, undecoded) values of every field called ``name``."""
        ...

    def body_text(self, transform: BodyTransform) -> Iterable[str]: ...

    def mailbox_exists(self, name: str) -> bool: ...

    def spam_score(self) -> float | None:
        """Spam likelihood in percent (0-100); None when never tested."""
        ...


@dataclass(frozen=True, slots=True)
class Keep:
    """Store into the default mailbox with ``flags`` (RFC 5232 §5)."""

    flags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FileInto:
    """Store into ``mailbox``; ``create`` per RFC 5490 §3, ``copy`` RFC 3894."""

    mailbox: str
    flags: tuple[str, ...] = ()
    create: bool = False
    copy: bool = False


@dataclass(frozen=True, slots=True)
class Redirect:
    """Forward to ``address`` (RFC 5228 §4.2)."""

    address: str
    copy: bool = False


@dataclass(frozen=True, slots=True)
class Discard:
    """Silently drop the message (RFC 5228 §4.4)."""


@dataclass(frozen=True, slots=True)
class Reject:
    """Refuse the message (RFC 5429); ``ereject`` prefers SMTP-level refusal."""

    reason: str
    ereject: bool = False


@dataclass(frozen=True, slots=True)
class Vacation:
    """An auto-reply request; delivery applies vacation_allowed and the
    RFC 5230 §4.2 duplicate-response tracking keyed by ``handle``."""

    handle: str
    days: int
    subject: str | None
    from_: str | None
    addresses: tuple[str, ...]
    mime: bool
    reason: str
    recipient_of_reply: str


Action = Keep | FileInto | Redirect | Discard | Reject | Vacation


@dataclass(frozen=True, slots=True)
class Result:
    """Actions to perform; ``implicit_keep`` means also store in INBOX with
    ``implicit_keep_flags`` (RFC 5232 §3: the internal flag variable)."""

    actions: tuple[Action, ...]
    errors: tuple[str, ...] = ()
    implicit_keep: bool = True
    implicit_keep_flags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RunLimits:
    """Per-run bounds; exceeding one is a runtime error (implicit keep)."""

    max_actions: int = 32
    max_redirects: int = 4
    max_steps: int = 100_000  # commands, tests, comparisons; scans per WORK_PER_STEP chars
    max_variable_length: int = 4096
    max_vacation_days: int = 90
    max_seconds: float = 5.0  # wall clock, when run() is given a clock


class _RuntimeFailure(Exception):
    pass


class _Stop(Exception):
    pass


_FLAG_VAR = "\x00imap4flags"  # the internal variable (RFC 5232 §3), not nameable


def _split_flags(values: Iterable[str]) -> list[str]:
    """RFC 5232 §3: flags are space-separated; duplicates collapse ignoring case."""
    out: list[str] = []
    seen: set[str] = set()
    for value in values:
        for flag in value.split():
            key = flag.lower()
            if key not in seen:
                seen.add(key)
                out.append(flag)
    return out


class _Run:
    def __init__(
        self,
        script: Script,
        message: MessageView,
        envelope: Envelope,
        now: datetime,
        limits: RunLimits,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.clock = clock
        self.deadline = clock() + limits.max_seconds if clock is not None else 0.0
        self.next_check = 0
        self.decoded: dict[str, list[str]] = {}  # header name -> decoded values
        self.script = script
        self.message = message
        self.envelope = envelope
        self.now = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
        self.limits = limits
        self.expand_vars = "variables" in script.requires
        self.use_flags = "imap4flags" in script.requires
        self.vars = VariableStore(limits.max_variable_length)
        self.flags: dict[str, list[str]] = {_FLAG_VAR: []}
        self.actions: list[Action] = []
        self.implicit_keep = True
        self.redirects = 0
        self.steps = 0

    # -- helpers -----------------------------------------------------------
    def charge(self, n: int = 1) -> None:
        """Pay ``n`` steps before doing the work; over budget is a runtime error."""
        self.steps += n
        if self.steps > self.limits.max_steps:
            raise _RuntimeFailure("script exceeded its step limit")
        if self.clock is not None and self.steps >= self.next_check:
            self.next_check = self.steps + 64
            if self.clock() > self.deadline:
                raise _RuntimeFailure("script exceeded its time limit")

    def scan(self, text: str) -> None:
        """Pay for reading ``text`` (decoding, parsing, folding)."""
        self.charge(1 + len(text) // WORK_PER_STEP)

    def strings(self, arg: Argument | None) -> list[str]:
        if not isinstance(arg, StringList):
            return []
        if self.expand_vars:  # RFC 5229 §3: expansion in every string argument
            out: list[str] = []
            for v in arg.values:
                out.append(self.vars.expand(v))
                self.scan(out[-1])  # a list of long expansions is paid for as it grows
            return out
        return list(arg.values)

    def string(self, arg: Argument | None) -> str:
        values = self.strings(arg)
        return values[0] if values else ""

    @staticmethod
    def number(arg: Argument | None) -> int:
        return arg.value if isinstance(arg, Number) else 0

    def matcher(self, node: Test) -> Matcher:
        tags = node.tags
        comparator = self.string(tags["comparator"]).lower() if "comparator" in tags else None
        for mt in ("is", "contains", "matches", "value", "count"):
            if mt in tags:
                break
        else:
            mt = "is"  # RFC 5228 §2.7.1: :is is the default
        relation = self.string(tags[mt]).lower() if mt in ("value", "count") else "eq"
        if relation not in ("gt", "ge", "lt", "le", "eq", "ne"):
            raise _RuntimeFailure(f"invalid relational match {relation!r}")
        if comparator is None:
            comparator = "i;ascii-casemap"  # RFC 5228 §2.7.3 default
        elif comparator not in ("i;octet", "i;ascii-casemap", "i;ascii-numeric"):
            raise _RuntimeFailure(f"unknown comparator {comparator!r}")
        return Matcher(comparator, mt, relation)

    def compare(self, node: Test, values: Sequence[str], keys: Sequence[str]) -> bool:
        self.charge(max(1, len(values)) * max(1, len(keys)))
        found = self.matcher(node).match(values, keys, self.charge)
        if found is None:
            return False
        if found:  # RFC 5229 §3.2: a successful :matches sets ${0}..${n}
            self.vars.set_matches(found)
        return True

    def add(self, action: Action) -> None:
        if action in self.actions:
            return  # RFC 5228 §2.10.3: identical actions are done once
        if len(self.actions) >= self.limits.max_actions:
            raise _RuntimeFailure("too many actions")
        kinds = {type(a) for a in self.actions} | {type(action)}
        # RFC 5429 §2.1 / RFC 5230 §4.7: reject excludes keep, fileinto, vacation.
        if Reject in kinds and kinds & {Keep, FileInto, Vacation}:
            raise _RuntimeFailure("reject cannot be combined with keep, fileinto or vacation")
        self.actions.append(action)

    def get_flags(self, name: str | None) -> list[str]:
        if name is None:
            return self.flags[_FLAG_VAR]
        return _split_flags([self.vars.get(name)])

    def set_flags(self, name: str | None, flags: list[str]) -> None:
        if name is None:
            self.flags[_FLAG_VAR] = flags
        else:
            self.vars.set(name, " ".join(flags))

    def current_flags(self, node: Command) -> tuple[str, ...]:
        if "flags" in node.tags:  # RFC 5232 §5: :flags overrides the variable
            return tuple(_split_flags(self.strings(node.tags["flags"])))
        return tuple(self.flags[_FLAG_VAR]) if self.use_flags else ()

    # -- commands ----------------------------------------------------------
    def block(self, commands: Sequence[Command]) -> None:
        chain_done = False
        for cmd in commands:
            self.charge()
            match cmd.name:
                case "if":
                    chain_done = self.test(cmd.tests[0])
                    if chain_done:
                        self.block(cmd.block or ())
                case "elsif":
                    if not chain_done:
                        chain_done = self.test(cmd.tests[0])
                        if chain_done:
                            self.block(cmd.block or ())
                case "else":
                    if not chain_done:
                        self.block(cmd.block or ())
                    chain_done = True
                case _:
                    self.command(cmd)

    def command(self, cmd: Command) -> None:
        pos = cmd.positional
        tags = cmd.tags
        match cmd.name:
            case "require":
                pass
            case "stop":
                raise _Stop
            case "keep":
                self.add(Keep(self.current_flags(cmd)))
                self.implicit_keep = False
            case "discard":
                self.add(Discard())
                self.implicit_keep = False  # RFC 5228 §4.4
            case "fileinto":
                mailbox = self.string(pos[0])
                if not mailbox:
                    raise _RuntimeFailure("fileinto: empty mailbox name")
                copy = "copy" in tags
                previous = [a for a in self.actions if isinstance(a, FileInto)]
                if not any(a.mailbox == mailbox for a in previous):  # RFC 5228 §2.10.3
                    self.add(FileInto(mailbox, self.current_flags(cmd), "create" in tags, copy))
                if not copy:  # RFC 3894 §3: :copy keeps the implicit keep
                    self.implicit_keep = False
            case "redirect":
                self.redirect(self.string(pos[0]), "copy" in tags)
            case "reject" | "ereject":
                self.add(Reject(self.string(pos[0]), ereject=cmd.name == "ereject"))
                self.implicit_keep = False  # RFC 5429 §2.1
            case "setflag" | "addflag" | "removeflag":
                self.flag_command(cmd)
            case "set":
                value = apply_modifiers(self.string(pos[1]), tags)
                self.vars.set(self.string(pos[0]), value)
            case "vacation":
                self.vacation(cmd)
            case other:
                raise _RuntimeFailure(f"unknown command {other!r}")

    def redirect(self, target: str, copy: bool) -> None:
        addresses = parse_addresses(target)
        # RFC 5228 §4.2: the argument must be a single valid address.
        if len(addresses) != 1 or "@" not in addresses[0] or any(c in target for c in "\r\n"):
            raise _RuntimeFailure(f"redirect: invalid address {target!r}")
        action = Redirect(addresses[0], copy)
        if not any(isinstance(a, Redirect) and a.address == action.address for a in self.actions):
            self.redirects += 1
            if self.redirects > self.limits.max_redirects:
                raise _RuntimeFailure("too many redirects")
            self.add(action)
        if not copy:
            self.implicit_keep = False

    def flag_command(self, cmd: Command) -> None:
        pos = cmd.positional
        name = self.string(pos[0]) if len(pos) == 2 else None
        given = _split_flags(self.strings(pos[-1]))
        current = self.get_flags(name)
        if cmd.name == "setflag":  # RFC 5232 §4
            updated = given
        elif cmd.name == "addflag":
            updated = _split_flags([*current, *given])
        else:
            drop = {f.lower() for f in given}
            updated = [f for f in current if f.lower() not in drop]
        self.set_flags(name, updated)

    def vacation(self, cmd: Command) -> None:
        tags = cmd.tags
        if any(isinstance(a, Vacation) for a in self.actions):
            raise _RuntimeFailure("more than one vacation action")  # RFC 5230 §4.7
        reason = self.string(cmd.positional[0])
        subject = self.string(tags["subject"]) if "subject" in tags else None
        from_ = self.string(tags["from"]) if "from" in tags else None
        days = self.number(tags["days"]) if "days" in tags else 7  # RFC 5230 §4.1
        days = min(max(days, 1), self.limits.max_vacation_days)
        mime = "mime" in tags
        if "handle" in tags:
            handle = self.string(tags["handle"])
        else:  # RFC 5230 §4.2: derive a handle from the arguments
            digest = hashlib.sha256(
                "\x00".join([reason, subject or "", from_ or "", str(mime)]).encode(
                    "utf-8", "surrogatepass"
                )
            )
            handle = digest.hexdigest()[:32]
        if subject is None:  # RFC 5230 §4.3: default "Auto: " + original subject
            original = self.message.header("subject")
            subject = "Auto: " + decode_header_value(original[0]).strip() if original else None
        addresses = tuple(self.strings(tags.get("addresses")))
        self.add(
            Vacation(handle, days, subject, from_, addresses, mime, reason, self.envelope.sender)
        )

    # -- tests -------------------------------------------------------------
    def test(self, node: Test) -> bool:
        self.charge()
        pos = node.positional
        tags = node.tags
        match node.name:
            case "true":
                return True
            case "false":
                return False
            case "not":
                return not self.test(node.tests[0])
            case "allof":
                return all(self.test(t) for t in node.tests)
            case "anyof":
                return any(self.test(t) for t in node.tests)
            case "exists":
                wanted = self.strings(pos[0])
                self.charge(len(wanted))
                return all(self.message.header(n) for n in wanted)
            case "size":
                if "over" in tags:
                    return self.message.size > self.number(tags["over"])
                return self.message.size < self.number(tags["under"])
            case "header":
                values: list[str] = []
                for name in self.strings(pos[0]):
                    found = self.decoded_fields(node, name)
                    self.charge(1 + len(found))  # thousands of fields, named again and again
                    values += found
                return self.compare(node, values, self.strings(pos[1]))
            case "address":
                return self.compare(node, self.address_values(node), self.strings(pos[1]))
            case "envelope":
                return self.compare(node, self.envelope_values(node), self.strings(pos[1]))
            case "body":
                return self.compare(node, list(self.body_values(node)), self.strings(pos[0]))
            case "date" | "currentdate":
                return self.compare(node, self.date_values(node), self.strings(pos[-1]))
            case "hasflag":
                names = self.strings(pos[0]) if len(pos) == 2 else [None]
                flags = [f for n in names for f in self.get_flags(n)]
                return self.compare(node, flags, self.strings(pos[-1]))
            case "mailboxexists":
                return all(self.message.mailbox_exists(n) for n in self.strings(pos[0]))
            case "spamtest":
                return self.compare(
                    node, [self.spam_value("percent" in tags)], self.strings(pos[0])
                )
            case "string":
                values = self.strings(pos[0])
                if "count" in tags:  # RFC 5229 §5: empty strings are not counted
                    values = [v for v in values if v]
                return self.compare(node, values, self.strings(pos[1]))
            case other:
                raise _RuntimeFailure(f"unknown test {other!r}")

    def fields(self, node: Test, name: str) -> list[str]:
        """Values of header ``name``, narrowed by :index/:last (RFC 5260 §6)."""
        values = self.message.header(name)
        if "index" not in node.tags:
            return values
        index = self.number(node.tags["index"])
        if "last" in node.tags:
            index = len(values) - index + 1
        return [values[index - 1]] if 1 <= index <= len(values) else []

    def decoded_fields(self, node: Test, name: str) -> list[str]:
        """``fields`` with RFC 2047 words decoded (RFC 5228 §2.7.2), decoded once a run."""
        key = name.lower()
        values = self.decoded.get(key)
        if values is None:
            values = []
            for raw in self.message.header(name):
                self.scan(raw)
                values.append(decode_header_value(raw))
            self.decoded[key] = values
        if "index" not in node.tags:
            return values
        index = self.number(node.tags["index"])
        if "last" in node.tags:
            index = len(values) - index + 1
        return [values[index - 1]] if 1 <= index <= len(values) else []

    def address_part(self, node: Test) -> str:
        for part in ("localpart", "domain", "user", "detail"):
            if part in node.tags:
                return part
        return "all"  # RFC 5228 §2.7.4

    def address_values(self, node: Test) -> list[str]:
        part = self.address_part(node)
        out: list[str] = []
        for name in self.strings(node.positional[0]):
            for value in self.fields(node, name):
                self.scan(value)
                for addr in parse_addresses(value):
                    piece = address_part(addr, part)
                    if piece is not None:
                        out.append(piece)
        return out

    def envelope_values(self, node: Test) -> list[str]:
        part = self.address_part(node)
        env = self.envelope
        out: list[str] = []
        for name in self.strings(node.positional[0]):
            value = {"from": env.sender, "to": env.recipient, "auth": env.auth}.get(name.lower())
            if value is None:
                continue
            if value == "":  # RFC 5228 §5.4: null reverse-path is "" for every part
                out.append("")
                continue
            piece = address_part(value.strip("<>"), part)
            if piece is not None:
                out.append(piece)
        return out

    def body_values(self, node: Test) -> Iterator[str]:
        tags = node.tags
        if "raw" in tags:
            transform = BodyTransform("raw")
        elif "content" in tags:
            transform = BodyTransform("content", tuple(self.strings(tags["content"])))
        else:
            transform = BodyTransform("text")  # RFC 5173 §5: :text is the default
        for text in self.message.body_text(transform):
            self.scan(text)
            yield text

    def date_values(self, node: Test) -> list[str]:
        pos = node.positional
        tags = node.tags
        zone = None
        if "zone" in tags:
            zone = parse_zone(self.string(tags["zone"]))
            if zone is None:
                raise _RuntimeFailure("invalid :zone")
        part = self.string(pos[-2]).lower()
        if node.name == "currentdate":
            dates = [self.now]
        else:
            dates = []
            name = self.string(pos[0])
            for value in self.fields(node, name):
                self.scan(value)
                if name.lower() == "received":  # RFC 5260 §4: date follows the last ';'
                    value = value.rpartition(";")[2]
                parsed = parse_date_header(value)
                if parsed is not None:
                    dates.append(parsed)
        out: list[str] = []
        for dt in dates:
            if zone is not None:
                dt = dt.astimezone(zone)
            elif "originalzone" not in tags:  # RFC 5260 §4.1: default is local zone
                dt = dt.astimezone(self.now.tzinfo)
            try:
                out.append(date_part(dt, part))
            except (ValueError, OverflowError) as exc:
                raise _RuntimeFailure(f"date: {exc}") from None
        return out

    def spam_value(self, percent: bool) -> str:
        score = self.message.spam_score()
        if score is None or score != score:  # RFC 5235 §3.1: "0" means not tested
            return "0"
        score = min(max(score, 0.0), 100.0)
        if percent:  # RFC 5235 §3.2: 0-100
            return str(round(score))
        return str(1 + round(score * 9 / 100))  # RFC 5235 §3.1: 1 (ham) .. 10 (spam)


def run(
    script: Script,
    message: MessageView,
    envelope: Envelope,
    *,
    now: datetime,
    limits: RunLimits = RunLimits(),
    clock: Callable[[], float] | None = None,
) -> Result:
    """Evaluate ``script``; never raises for anything the script or message does.

    ``clock`` (seconds, e.g. ``time.monotonic``) enables ``limits.max_seconds``.
    """
    state = _Run(script, message, envelope, now, limits, clock)
    try:
        state.block(script.commands)
    except _Stop:
        pass
    except _RuntimeFailure as exc:
        return Result((), (str(exc),), True, ())
    except (RecursionError, MemoryError, ValueError, TypeError, IndexError, KeyError) as exc:
        return Result((), (f"internal error: {type(exc).__name__}",), True, ())
    keep_flags = tuple(state.flags[_FLAG_VAR]) if state.use_flags else ()
    return Result(tuple(state.actions), (), state.implicit_keep, keep_flags)


# -- a simple message view over raw bytes -----------------------------------

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_NUMBER = re.compile(r"[-+]?[0-9]+(?:\.[0-9]+)?")


class BytesMessageView:
    """A MessageView over a message (or its first octets) in memory.

    ``mailboxes`` answers mailboxexists; the spam score is the first number in
    ``spam_header`` read as a percentage. ``structure`` is the stored MIME tree (or
    a loader for it) the body test walks, else it is parsed from ``data`` when first
    needed; ``body`` shares one decoded body between several views of the same
    message. Never raises on malformed input.
    """

    def __init__(
        self,
        data: bytes,
        *,
        mailboxes: Iterable[str] = ("INBOX",),
        spam_header: str = "X-Spam-Score",
        structure: Part | Callable[[], Part] | None = None,
        body_limits: BodyLimits | None = None,
        body: MessageBody | None = None,
    ) -> None:
        self.data = data
        self.mailboxes = set(mailboxes)
        self.spam_header = spam_header
        self.body = body if body is not None else MessageBody(data, structure, body_limits)
        m = _HEADER_END.search(data)
        head = data if m is None else data[: m.start()]
        if data.startswith((b"\r\n", b"\n")):
            head = b""
        self.headers: dict[str, list[str]] = {}
        text = head.decode("utf-8", "replace")
        for field in _FOLD.sub("", text).replace("\r\n", "\n").split("\n"):
            name, sep, value = field.partition(":")
            if sep and name and name == name.strip():
                self.headers.setdefault(name.lower(), []).append(value.strip())

    @property
    def size(self) -> int:
        return len(self.data)

    def header(self, name: str) -> list[str]:
        return list(self.headers.get(name.lower(), ()))

    def mailbox_exists(self, name: str) -> bool:
        return name in self.mailboxes or (name.upper() == "INBOX" and "INBOX" in self.mailboxes)

    def spam_score(self) -> float | None:
        for value in self.header(self.spam_header):
            m = _NUMBER.search(value)
            if m is not None:
                return float(m.group())
        return None

    def body_text(self, transform: BodyTransform) -> Iterable[str]:
        return self.body.texts(transform)
