"""Helpers for the MIME differential test: a private Dovecot, an IMAP value parser and the
list of items one corpus message is compared on."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.server.imap_helpers import RawImap

DOVECOT = "/usr/sbin/dovecot"

Value = bytes | int | None | list["Value"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _dovecot_conf(root: Path, port: int, user: str, group: str) -> str:
    """A minimal imap-only Dovecot living wholly in ``root``: no TLS, plaintext LOGIN over
    loopback, no chroot (so it runs as a normal user too)."""
    return f"""base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {user}
first_valid_uid = 0
mail_location = maildir:{root}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {root}/passwd
}}
userdb {{
  driver = passwd-file
  args = {root}/passwd
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
service stats {{
  chroot =
}}
"""


@contextmanager
def dovecot() -> Iterator[int]:
    """Start a private Dovecot (foreground, owned by us) in a temporary directory and
    yield its IMAP port; as root its processes and the mail run as 'nobody', who must be
    able to reach the directory (pytest's own tmp tree is 0700)."""
    root = Path(tempfile.mkdtemp(prefix="correo-dovecot-"))
    try:
        with _dovecot_in(root) as port:
            yield port
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def _dovecot_in(root: Path) -> Iterator[int]:
    if os.geteuid() == 0:
        entry = pwd.getpwnam("nobody")
        root.chmod(0o755)
    else:
        entry = pwd.getpwuid(os.getuid())
    (root / "mail").mkdir(exist_ok=True)
    if os.geteuid() == 0:
        os.chown(root / "mail", entry.pw_uid, entry.pw_gid)
    (root / "passwd").write_text(
        f"t:{{PLAIN}}pw:{entry.pw_uid}:{entry.pw_gid}::{root}/mail/t\n", encoding="ascii"
    )
    port = _free_port()
    conf = root / "dovecot.conf"
    group = grp.getgrgid(entry.pw_gid).gr_name
    conf.write_text(_dovecot_conf(root, port, entry.pw_name, group), encoding="ascii")
    proc = subprocess.Popen(
        [DOVECOT, "-F", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60  # only a failed start waits that long
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                    log = root / "dovecot.log"
                    raise RuntimeError(
                        "dovecot did not start: "
                        + err
                        + (log.read_text(errors="replace") if log.exists() else "")
                    ) from None
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def have_dovecot() -> bool:
    return os.access(DOVECOT, os.X_OK)


# --- IMAP values ---------------------------------------------------------------------


def _atom_end(data: bytes, i: int) -> int:
    depth = 0
    while i < len(data):
        c = data[i : i + 1]
        if c == b"[":
            depth += 1
        elif c == b"]":
            depth -= 1
        elif depth == 0 and c in (b" ", b"(", b")"):
            break
        i += 1
    return i


def parse_value(data: bytes, i: int) -> tuple[Value, int]:
    """One IMAP value from ``data[i:]``: lists, quoted strings and literals become bytes or
    lists (a quoted string and a literal with the same octets compare equal)."""
    while data[i : i + 1] == b" ":
        i += 1
    c = data[i : i + 1]
    if c == b"(":
        items: list[Value] = []
        i += 1
        while True:
            while data[i : i + 1] == b" ":
                i += 1
            if data[i : i + 1] == b")":
                return items, i + 1
            item, i = parse_value(data, i)
            items.append(item)
    if c == b'"':
        out = bytearray()
        i += 1
        while data[i : i + 1] != b'"':
            if data[i : i + 1] == b"\\":
                i += 1
            out += data[i : i + 1]
            i += 1
        return bytes(out), i + 1
    if c == b"~" or c == b"{":
        close = data.index(b"}", i)
        n = int(data[i + (2 if c == b"~" else 1) : close].rstrip(b"+"))
        start = close + 3  # }\r\n
        return data[start : start + n], start + n
    end = _atom_end(data, i)
    atom = data[i:end]
    if atom.upper() == b"NIL":
        return None, end
    if atom.isdigit():
        return int(atom), end
    return atom, end


def fetch_items(line: bytes) -> dict[bytes, Value]:
    """The name → value map of one ``* N FETCH (...)`` line."""
    start = line.index(b"(")
    values, _ = parse_value(line, start)
    assert isinstance(values, list)
    out: dict[bytes, Value] = {}
    for k in range(0, len(values) - 1, 2):
        name = values[k]
        assert isinstance(name, bytes)
        out[name.upper()] = values[k + 1]
    return out


def part_sections(structure: Value, prefix: str = "") -> list[tuple[str, bool]]:
    """Every part number of a BODYSTRUCTURE with whether it is a message/rfc822 (RFC 9051
    §6.4.5: a non-multipart message has part 1; a multipart's children are 1..n)."""
    out: list[tuple[str, bool]] = []
    if not isinstance(structure, list) or not structure:
        return out
    if isinstance(structure[0], list):  # multipart: children then the subtype
        for n, child in enumerate(c for c in structure if isinstance(c, list)):
            number = f"{prefix}{n + 1}"
            out += _leaf_or_multi(child, number)
        return out
    return _leaf_or_multi(structure, f"{prefix}1") if not prefix else out


def _leaf_or_multi(child: Value, number: str) -> list[tuple[str, bool]]:
    assert isinstance(child, list)
    if child and isinstance(child[0], list):
        return [(number, False), *part_sections(child, number + ".")]
    kind = (child[0] or b"") if isinstance(child[0], bytes) else b""
    sub = (child[1] or b"") if len(child) > 1 and isinstance(child[1], bytes) else b""
    is_msg = kind.lower() == b"message" and sub.lower() in (b"rfc822", b"global")
    out = [(number, is_msg)]
    if is_msg and len(child) > 8 and isinstance(child[8], list):
        inner = child[8]
        if inner and isinstance(inner[0], list):
            out += part_sections(inner, number + ".")
        else:
            out += [(number + ".1", False)]
    return out


def items_for(sections: list[tuple[str, bool]]) -> list[str]:
    """The FETCH items compared for one message."""
    items = [
        "ENVELOPE",
        "BODYSTRUCTURE",
        "BODY",
        "RFC822.SIZE",
        "BODY.PEEK[]",
        "BODY.PEEK[HEADER]",
        "BODY.PEEK[TEXT]",
        "BINARY.PEEK[]",
        "BINARY.SIZE[]",
    ]
    for number, is_msg in sections:
        items += [
            f"BODY.PEEK[{number}]",
            f"BODY.PEEK[{number}.MIME]",
            f"BINARY.PEEK[{number}]",
            f"BINARY.SIZE[{number}]",
        ]
        if is_msg:
            items += [f"BODY.PEEK[{number}.HEADER]", f"BODY.PEEK[{number}.TEXT]"]
    return items


def response_name(item: str) -> bytes:
    return item.replace(".PEEK", "").encode()


Outcome = tuple[str, Value]


def fetch_one(raw: RawImap, seq: int, item: str, tag: str = "f") -> Outcome:
    """FETCH one item of one message: ("OK", value) or ("NO"/"BAD" with its code, None)."""
    lines = raw.cmd(tag, f"FETCH {seq} ({item})")
    status = lines[-1].split(b" ", 2)
    word = status[1].decode() if len(status) > 1 else "?"
    if word != "OK":
        code = status[2].split(b"]")[0] + b"]" if len(status) > 2 and status[2][:1] == b"[" else b""
        return word + " " + code.decode(errors="replace"), None
    want = response_name(item)
    for line in lines[:-1]:
        if b" FETCH (" in line:
            got = fetch_items(line)
            if want in got:
                return "OK", got[want]
    return "OK-missing", None


def append(raw: RawImap, box: str, data: bytes, tag: str = "a") -> bool:
    """APPEND with a synchronising literal (every server supports it)."""
    raw.send(f"{tag} APPEND {box} {{{len(data)}}}\r\n".encode())
    first = raw.line()
    if not first.startswith(b"+"):
        return False
    raw.send(data + b"\r\n")
    return raw.until(tag.encode())[-1].startswith(tag.encode() + b" OK")
