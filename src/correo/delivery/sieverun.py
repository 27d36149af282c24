"""Running an account's active Sieve script for one delivery, off the event loop.

The sender controls the message and so the cost of the script's tests (a body test
over a deeply nested message, ``:matches`` over a megabyte): the script is parsed
(once per text, then cached) and evaluated in a small pool of its own threads, each
run bounded by :class:`correo.sieve.RunLimits` (steps and seconds). Hostile mail can
keep at most these threads busy; the event loop, and the default executor that spool
and store work share, stay free.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from correo import sieve
from correo.junk import Verdict
from correo.log import Logger
from correo.store.api import MailStore
from correo.ttlcache import Missing, TtlCache

__all__ = ["ScriptRunner", "SieveMessage"]

_THREADS = 2  # scripts evaluated at once
_MAX_CACHED = 1000  # parsed scripts kept (one per account)


@dataclass(frozen=True, slots=True)
class SieveMessage:
    """What a script may read of the message being delivered.

    ``window``: its first octets (the header and up to ``sieve_body_limit``); ``size``:
    the whole size; ``verdict``: the junk filter's; ``body``: the decoded body, shared
    by every account's script.
    """

    window: bytes
    size: int
    verdict: Verdict | None
    body: sieve.MessageBody


class _View:
    """The Sieve MessageView over a spool: bounded windows, our own spam verdict."""

    def __init__(self, message: SieveMessage, mailboxes: Iterable[str]) -> None:
        self._bytes = sieve.BytesMessageView(message.window, mailboxes=mailboxes, body=message.body)
        self._size = message.size
        self._verdict = message.verdict

    @property
    def size(self) -> int:
        return self._size

    def header(self, name: str) -> list[str]:
        return self._bytes.header(name)

    def body_text(self, transform: sieve.BodyTransform) -> Iterable[str]:
        return self._bytes.body_text(transform)

    def mailbox_exists(self, name: str) -> bool:
        return self._bytes.mailbox_exists(name)

    def spam_score(self) -> float | None:
        # Never from a header: a sender could write X-Spam-Score: 0 (RFC 5235 §2.2).
        return None if self._verdict is None else self._verdict.percent


class ScriptRunner:
    """Finds, parses (cached by text) and runs accounts' active scripts."""

    def __init__(self, store: MailStore, log: Logger, cache_seconds: float) -> None:
        self.store = store
        self.log = log
        self._cache_seconds = cache_seconds
        self._scripts: dict[str, tuple[str, sieve.Script | None]] = {}
        # Every delivery asks; a change takes effect within cache_seconds.
        self._active: TtlCache[str, tuple[str, str] | None] = TtlCache(cache_seconds)
        self._pool = ThreadPoolExecutor(_THREADS, thread_name_prefix="sieve")

    def forget(self, account: str) -> None:
        """The account's active script changed: look it up again at the next delivery."""
        self._active.forget(account)

    def clear(self) -> None:
        """Forget every account (a name may now belong to a new account)."""
        self._active = TtlCache(self._cache_seconds)
        self._scripts = {}

    async def run(
        self,
        envelope: sieve.Envelope,
        message: SieveMessage,
        *,
        account: str,
        mailboxes: set[str],
        session: str,
    ) -> sieve.Result | None:
        """The result of ``account``'s active script; None without a (working) script,
        which means the implicit keep (RFC 5228 §2.10.6)."""
        active = self._active.get(account)
        if isinstance(active, Missing):
            active = self._active.put(account, await self.store.sieve_active(account))
        if active is None:
            return None
        name, text = active
        cached = self._scripts.get(account)
        known = cached is not None and cached[0] == text
        script = cached[1] if cached is not None and known else None
        names = frozenset(mailboxes)
        now = datetime.now(UTC)

        def evaluate() -> tuple[sieve.Script | None, str, sieve.Result | None]:
            parsed, error = script, ""
            if not known:
                try:
                    parsed = sieve.parse(text)
                except sieve.SieveError as exc:
                    error = str(exc)
            if parsed is None:
                return None, error, None
            view = _View(message, names)
            return parsed, "", sieve.run(parsed, view, envelope, now=now, clock=time.monotonic)

        loop = asyncio.get_running_loop()
        parsed, error, result = await loop.run_in_executor(self._pool, evaluate)
        if not known:
            if error:
                self.log.warning(
                    "delivery.sieve_error",
                    session=session,
                    account=account,
                    script=name,
                    error=error,
                )
            if len(self._scripts) >= _MAX_CACHED:
                self._scripts.clear()
            self._scripts[account] = (text, parsed)
        if result is not None and result.errors:
            self.log.warning(
                "delivery.sieve_runtime_error",
                session=session,
                account=account,
                script=name,
                error="; ".join(result.errors),
            )
        return result
