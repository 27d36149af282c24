"""Structured logging: one event per line, in logfmt (``key=value``).

Mail administrators grep and ship these lines, so every event is a single line with
a stable ``event`` name and flat fields.  Values are quoted and escaped so a hostile
peer cannot forge log lines (CR/LF in a HELO name, for example).  The stdlib
``logging`` machinery is skipped on purpose: it costs several microseconds per record
and the SMTP hot path logs per transaction.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from typing import IO, Final

__all__ = ["LEVELS", "Logger", "configure", "format_value", "get_logger"]

LEVELS: Final = {"debug": 10, "info": 20, "warning": 30, "error": 40}
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:@+<>[],*#")


def format_value(value: object) -> str:
    """Render one field value: bare when safe, else double-quoted with escapes."""
    if isinstance(value, float):
        return f"{value:.3f}"
    text = str(value)
    if text and all(c in _SAFE for c in text):
        return text
    out = []
    for c in text[:2000]:
        if c == '"' or c == "\\":
            out.append("\\" + c)
        elif c == "\n":
            out.append("\\n")
        elif c == "\r":
            out.append("\\r")
        elif ord(c) < 32 or ord(c) == 127:
            out.append(f"\\x{ord(c):02x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


class Logger:
    """Writes ``ts=… level=… event=… k=v …`` lines to a text stream."""

    def __init__(self, stream: IO[str] | None = None, level: str = "info") -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.threshold = LEVELS[level]
        #: The last warning and error lines as (time, level, event, line), once the server
        #: asks for them (keep_recent): ``correo status`` shows the last hour's.
        self.recent: deque[tuple[float, str, str, str]] | None = None

    def keep_recent(self, size: int) -> None:
        """Remember the last ``size`` warning and error lines (a bounded ring)."""
        self.recent = deque(self.recent or (), maxlen=size)

    def enabled(self, level: str) -> bool:
        return LEVELS[level] >= self.threshold

    def log(self, level: str, event: str, **fields: object) -> None:
        if LEVELS[level] < self.threshold:
            return
        now = time.time()
        stamp = (
            time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
        )
        parts = [f"ts={stamp} level={level} event={event}"]
        for key, value in fields.items():
            if value is None:
                continue
            parts.append(f"{key}={format_value(value)}")
        line = " ".join(parts)
        if self.recent is not None and LEVELS[level] >= 30:
            self.recent.append((now, level, event, line[:1000]))  # bounded memory
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass  # a closed or full log stream must never take the mail server down

    def debug(self, event: str, **fields: object) -> None:
        if self.threshold <= 10:
            self.log("debug", event, **fields)

    def info(self, event: str, **fields: object) -> None:
        self.log("info", event, **fields)

    def warning(self, event: str, **fields: object) -> None:
        self.log("warning", event, **fields)

    def error(self, event: str, **fields: object) -> None:
        self.log("error", event, **fields)


_logger = Logger()


def get_logger() -> Logger:
    return _logger


def configure(level: str = "info", path: str | None = None) -> Logger:
    """Set the process-wide logger (level and optional file, appended, line-buffered)."""
    global _logger
    stream: IO[str] = open(path, "a", buffering=1, encoding="utf-8") if path else sys.stderr  # noqa: SIM115
    _logger = Logger(stream, level)
    return _logger
