"""Small, total parsers for the header values IMAP needs: MIME parameters and addresses.

The stdlib's ``email.headerregistry`` (``policy.default``) raises on some malformed
values on 3.11 and allocates a full parse tree per header, so every value that feeds the
stored structure goes through these tolerant scanners instead: they take any ``str`` and
return a best-effort result, never an exception.  Values are kept *raw* (case as given,
encoded words undecoded) because IMAP ENVELOPE and BODYSTRUCTURE return them that way.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from .encoded import text_codec

__all__ = [
    "Address",
    "decode_param",
    "merge_continuations",
    "parse_address_list",
    "parse_content_type",
    "parse_disposition",
    "parse_language",
    "split_header_fields",
    "unfold",
]

Params = tuple[tuple[str, str], ...]

# RFC 2045 §5.1: tspecials plus SPACE and CTLs end a token.
_TOKEN = re.compile(r"[^\x00-\x20()<>@,;:\\\"/\[\]?=\x7f]+")
_WS = frozenset(" \t\r\n")
_CONTINUATION = re.compile(r"^(.+?)\*(\d{1,3})(\*?)$")


@dataclass(frozen=True, slots=True)
class Address:
    """One RFC 9051 §7.5.2 address structure; a group is bracketed by two markers.

    Group start: ``mailbox`` holds the group name, ``host`` is None.  Group end: all None.
    """

    name: str | None
    adl: str | None
    mailbox: str | None
    host: str | None


def unfold(value: str) -> str:
    """Remove CR and LF (RFC 5322 §2.2.3 unfolding), keep the folding whitespace, trim."""
    return value.replace("\r", "").replace("\n", "").strip(" \t")


def split_header_fields(header: bytes) -> list[tuple[str, bytes]]:
    """(lowercased name, raw field bytes incl. line ends) for CRLF or bare-LF headers.

    Junk lines (no colon) stay attached to the previous field so that byte ranges cover
    the whole section; a leading junk line becomes a field with an empty name.
    """
    names: list[str] = []
    lines: list[list[bytes]] = []  # joined once at the end: linear in many folds
    for line in header.splitlines(keepends=True):
        if line in (b"\r\n", b"\n"):
            break  # RFC 5322 §2.1: the blank line ends the header section
        if line[:1] in (b" ", b"\t") or b":" not in line:
            if lines:
                lines[-1].append(line)
            else:
                names.append("")
                lines.append([line])
            continue
        # RFC 5322 §4.5 obs-optional: blanks may stand between the name and the colon
        names.append(line[: line.index(b":")].decode("latin-1").strip().lower())
        lines.append([line])
    return [(name, b"".join(parts)) for name, parts in zip(names, lines, strict=True)]


def _skip_cfws(s: str, i: int) -> int:
    """Skip white space and (nested) comments, RFC 5322 §3.2.2."""
    n = len(s)
    while i < n:
        c = s[i]
        if c in _WS:
            i += 1
        elif c == "(":
            i = _comment_end(s, i)
        else:
            break
    return i


def _comment_end(s: str, i: int) -> int:
    """Index after the comment opening at ``i``; an unclosed comment runs to the end."""
    depth = 0
    n = len(s)
    while i < n:
        c = s[i]
        if c == "\\":
            i += 2
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return n


def _quoted(s: str, i: int) -> tuple[str, int]:
    """Content of the quoted-string at ``i`` (RFC 5322 §3.2.4), unescaped; tolerant of EOF."""
    out: list[str] = []
    i += 1
    n = len(s)
    j = -1
    while i < n:
        if j < i:  # found once per closing-quote candidate, not per escape: linear
            j = s.find('"', i)
        k = s.find("\\", i)
        if j < 0:
            out.append(s[i:])
            return "".join(out), n
        if 0 <= k < j:
            out.append(s[i:k])
            out.append(s[k + 1 : k + 2])
            i = k + 2
            continue
        out.append(s[i:j])
        return "".join(out), j + 1
    return "".join(out), n


def _value(s: str, i: int) -> tuple[str, int]:
    """A parameter value: quoted-string or token (RFC 2045 §5.1), leniently up to ``;``."""
    i = _skip_cfws(s, i)
    if i < len(s) and s[i] == '"':
        return _quoted(s, i)
    m = _TOKEN.match(s, i)
    after = _skip_cfws(s, m.end()) if m else i
    if m and (after >= len(s) or s[after] == ";"):
        return m.group(), after  # a token, trailing comment dropped
    j = s.find(";", i)  # lenient: unquoted value with spaces or tspecials
    end = len(s) if j < 0 else j
    return s[i:end].strip(" \t\r\n"), end


def _params(s: str, i: int) -> Params:
    """``*(";" attribute "=" value)``; junk between semicolons is skipped."""
    out: list[tuple[str, str]] = []
    n = len(s)
    while i < n:
        j = s.find(";", i)
        if j < 0:
            break
        i = _skip_cfws(s, j + 1)
        m = _TOKEN.match(s, i)
        if not m:
            continue
        name = m.group()
        i = _skip_cfws(s, m.end())
        if i >= n or s[i] != "=":
            continue
        value, i = _value(s, i + 1)
        out.append((name, value))
    return merge_continuations(tuple(out))


def merge_continuations(params: Params) -> Params:
    """Join RFC 2231 §3 continuations ``name*0*``, ``name*1`` ... into one parameter.

    As Dovecot does, the joined parameter is named ``name*`` when its first segment is
    extended (charset'language'%XX) and ``name`` otherwise; values are concatenated raw.
    """
    if not any("*" in name for name, _ in params):
        return params
    groups: dict[str, list[tuple[int, bool, str, str]]] = {}
    first_name: dict[str, str] = {}
    order: list[tuple[str, str] | str] = []
    for name, value in params:
        m = _CONTINUATION.match(name)
        if not m:
            order.append((name, value))
            continue
        key = m.group(1).lower()
        if key not in groups:
            groups[key] = []
            first_name[key] = m.group(1)
            order.append(key)
        groups[key].append((int(m.group(2)), bool(m.group(3)), value, name))
    out: list[tuple[str, str]] = []
    for item in order:
        if isinstance(item, tuple):
            out.append(item)
            continue
        segs = sorted(groups[item], key=lambda t: t[0])
        if [seg[0] for seg in segs] != list(range(len(segs))):
            # a gap or a repeated number: not one value; kept raw, as Dovecot does
            out.extend((seg[3], seg[2]) for seg in groups[item])
            continue
        extended = segs[0][0] == 0 and segs[0][1]
        value = "".join(seg[2] for seg in segs)
        out.append((first_name[item] + "*" if extended else first_name[item], value))
    return tuple(out)


def parse_content_type(value: str) -> tuple[str, str, Params] | None:
    """``type "/" subtype *(";" parameter)`` (RFC 2045 §5.1); None when unusable."""
    i = _skip_cfws(value, 0)
    m = _TOKEN.match(value, i)
    if not m:
        return None
    i = _skip_cfws(value, m.end())
    if i >= len(value) or value[i] != "/":
        return None  # RFC 2045 §5.2: invalid, caller applies the default
    i = _skip_cfws(value, i + 1)
    m2 = _TOKEN.match(value, i)
    if not m2:
        return None
    return m.group(), m2.group(), _params(value, m2.end())


def parse_disposition(value: str) -> tuple[str, Params] | None:
    """RFC 2183 §2 ``disposition-type *(";" parameter)``."""
    i = _skip_cfws(value, 0)
    m = _TOKEN.match(value, i)
    if not m:
        return None
    return m.group(), _params(value, m.end())


def parse_language(value: str) -> tuple[str, ...]:
    """RFC 3282 §2 comma-separated language tags, comments dropped."""
    out: list[str] = []
    for item in value.split(","):
        i = _skip_cfws(item, 0)
        m = _TOKEN.match(item, i)
        if m:
            out.append(m.group())
    return tuple(out)


def decode_param(params: Params, name: str) -> str | None:
    """The value of ``name`` with RFC 2231 §4 ``charset'lang'%XX`` decoding applied."""
    want = name.lower()
    plain: str | None = None
    for key, value in params:
        k = key.lower()
        if k == want + "*":
            charset, _, rest = value.partition("'")
            _lang, sep, encoded = rest.partition("'")
            if not sep:
                return value
            raw = unquote_to_bytes(encoded)
            try:
                return raw.decode(text_codec(charset or "us-ascii"), "replace")
            except (LookupError, UnicodeError):
                return raw.decode("utf-8", "replace")
        if k == want and plain is None:
            plain = value
    return plain


# --- RFC 5322 §3.4 address lists, tolerant --------------------------------------------

_ASPECIALS = '()<>@,;:"[]'
_ATOM_RUN = re.compile(r'[^()<>@,;:"\[\] \t\r\n]+')
#: Words and specials read from one address list.  A thousand recipients written
#: ``"Name" <a@b.example>,`` take about 8,000; the rest of a longer list is dropped, so a
#: 256 KiB field of ``a,a,a,…`` costs milliseconds, not a second, of the event loop.
MAX_ADDRESS_TOKENS = 10_000


def _tokens(s: str, limit: int = MAX_ADDRESS_TOKENS) -> tuple[list[tuple[str, str]], bool]:
    """Lex an address list: ('a', atom) ('q', quoted) ('c', comment) or a special.

    Returns the tokens and whether ``limit`` cut the list short.
    """
    out: list[tuple[str, str]] = []
    i = 0
    n = len(s)
    while i < n:
        if len(out) >= limit:
            return out, True
        c = s[i]
        if c in _WS:
            i += 1
        elif c == "(":
            j = _comment_end(s, i)
            out.append(("c", s[i + 1 : j - 1] if s[j - 1 : j] == ")" else s[i + 1 : j]))
            i = j
        elif c == '"':
            text, i = _quoted(s, i)
            out.append(("q", text))
        elif c == "[":
            j = s.find("]", i)
            j = n if j < 0 else j + 1
            out.append(("a", s[i:j]))
            i = j
        elif c in _ASPECIALS:
            out.append((c, c))
            i += 1
        else:
            m = _ATOM_RUN.match(s, i)
            j = m.end() if m else i + 1
            out.append(("a", s[i:j]))
            i = j
    return out, False


def _note(problems: list[str], problem: str) -> None:
    """Record ``problem`` once: a hostile list repeats the same fault thousands of times."""
    if problem not in problems:
        problems.append(problem)


def _adjacent_words(words: list[tuple[str, str]]) -> bool:
    """True if two words follow each other without a dot (``a b@x``, ``a@b c``)."""
    return any(
        not ((a[0] == "a" and a[1].endswith(".")) or (b[0] == "a" and b[1].startswith(".")))
        for a, b in itertools.pairwise(words)
    )


def _addr_spec(
    toks: list[tuple[str, str]], problems: list[str] | None = None
) -> tuple[str | None, str | None]:
    """(local-part, domain) from tokens; quoted local parts keep their quotes.

    ``problems`` collects what makes the address ambiguous — clients may read another
    address out of it than the one returned (RFC 5322 §3.4.1 addr-spec).
    """
    words = [t for t in toks if t[0] != "c"]
    at = max((i for i, t in enumerate(words) if t[0] == "@"), default=-1)
    local_toks = words if at < 0 else words[:at]
    dom_toks = [] if at < 0 else words[at + 1 :]
    local = "".join(f'"{v}"' if k == "q" else v for k, v in local_toks) or None
    domain = "".join(v for _k, v in dom_toks) or None
    if problems is not None:
        if local is None:
            _note(problems, "an address without a local part")
        if domain is None:
            _note(problems, "an address without a domain")
        if any(k not in ("a", "q") for k, _v in local_toks) or any(k != "a" for k, _v in dom_toks):
            _note(problems, "an address with special characters outside quotes")
        elif _adjacent_words(local_toks) or _adjacent_words(dom_toks):
            _note(problems, "an address split by white space")
        elif "=?" in (local or "") or "=?" in (domain or ""):
            _note(problems, "an encoded word inside an address")  # RFC 2047 §5 (3)
    return local, domain


def _mailbox(toks: list[tuple[str, str]], problems: list[str] | None = None) -> Address | None:
    """One mailbox (name-addr or addr-spec, RFC 5322 §3.4), None for an empty element."""
    if not toks:
        return None
    if any(k == "<" for k, _ in toks):
        lt = next(i for i, t in enumerate(toks) if t[0] == "<")
        gt = next((i for i, t in enumerate(toks) if t[0] == ">" and i > lt), len(toks))
        phrase = [v for k, v in toks[:lt] if k in ("a", "q", "@", ".")]
        inner = toks[lt + 1 : gt]
        adl: str | None = None
        colon = next((i for i, t in enumerate(inner) if t[0] == ":"), -1)
        if colon >= 0:  # RFC 5322 §4.4 obs-route
            adl = "".join(v for k, v in inner[:colon] if k != "c") or None
            inner = inner[colon + 1 :]
        local, domain = _addr_spec(inner, problems)
        name = " ".join(phrase) or None
        if problems is not None:
            if gt == len(toks):
                _note(problems, "an unclosed angle address")
            if any(k != "c" for k, _v in toks[gt + 1 :]):
                _note(problems, "text after an angle address")
    else:
        comments = [v for k, v in toks if k == "c"]
        if all(k == "c" for k, _v in toks):
            return None  # a comment alone is no mailbox
        local, domain = _addr_spec(toks, problems)
        adl = None
        name = comments[-1].strip() or None if comments else None
        if local is None and domain is None:
            return None
    # Dovecot's placeholders keep the structure well-formed for clients.
    return Address(name, adl, local or "MISSING_MAILBOX", domain or "MISSING_DOMAIN")


def parse_address_list(value: str, problems: list[str] | None = None) -> tuple[Address, ...]:
    """Address list with groups (RFC 5322 §3.4) as RFC 9051 §7.5.2 address structures.

    Empty list elements (``a@b, , c@d`` — RFC 5322 §4.4 obs-addr-list) are skipped.
    Given a ``problems`` list, every ambiguity a stricter reader could resolve
    differently is appended to it (a mailbox with no domain, text after ``<…>``, a
    nested group…), so that a sender check can refuse what it cannot read for sure.
    """
    toks, cut = _tokens(value)
    if cut and problems is not None:
        _note(problems, f"more than {MAX_ADDRESS_TOKENS} words")
    out: list[Address] = []
    cur: list[tuple[str, str]] = []
    in_group = False
    in_angle = False
    for tok in toks:
        kind = tok[0]
        if kind == "<":
            in_angle = True
        elif kind == ">":
            in_angle = False
        if kind == ":" and not in_angle and not in_group:
            name = " ".join(v for k, v in cur if k in ("a", "q"))
            out.append(Address(None, None, name, None))  # RFC 9051 §7.5.2 group start
            cur = []
            in_group = True
            continue
        if kind == "," and not in_angle:
            mb = _mailbox(cur, problems)
            if mb:
                out.append(mb)
            cur = []
            continue
        if kind == ";" and in_group and not in_angle:
            mb = _mailbox(cur, problems)
            if mb:
                out.append(mb)
            out.append(Address(None, None, None, None))  # group end
            cur = []
            in_group = False
            continue
        if problems is not None and kind in (":", ";") and not in_angle:
            _note(problems, "a nested or unopened group")
        cur.append(tok)
    mb = _mailbox(cur, problems)
    if mb:
        out.append(mb)
    if in_group:
        out.append(Address(None, None, None, None))
        if problems is not None:
            _note(problems, "an unclosed group")  # RFC 5322 §3.4: group ends with ";"
    return tuple(out)
