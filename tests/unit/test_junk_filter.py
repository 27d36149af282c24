"""The junk filter: tokens, Robinson/Fisher arithmetic, signals, training in the store."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from correo.config import JunkSettings
from correo.delivery.junk import JunkFilter
from correo.dns import FakeResolver
from correo.junk import Verdict, spam_probability, strip_spam_headers, tokenize
from correo.junk.bayes import token_probability
from correo.junk.score import rspamd_headers, rspamd_score, rspamd_target, training_direction
from correo.log import get_logger
from correo.store.sqlite import SqliteStore

SPAM = (
    b"Subject: cheap pills\r\nFrom: x@spam.test\r\n\r\n"
    b"Buy cheap pills now, viagra casino winner http://pills.test/\r\n"
)
HAM = (
    b"Subject: meeting notes\r\nFrom: bob@example.test\r\n\r\n"
    b"The quarterly review meeting moved to Thursday afternoon.\r\n"
)


def test_tokens_are_bounded_and_tagged() -> None:
    tokens = tokenize(SPAM)
    assert {"h:subject:cheap", "pills", "url:pills.test"} <= tokens
    assert (
        len(
            tokenize(
                b"Subject: x\r\n\r\n"
                + b"word%d " * 0
                + b" ".join(b"w%05d" % i for i in range(20000)),
                max_tokens=100,
            )
        )
        <= 100
    )


def test_token_probability_shrinks_rare_tokens() -> None:
    assert token_probability(1, 0, 10, 10) < token_probability(9, 0, 10, 10) < 1.0
    assert token_probability(0, 0, 0, 0) == 0.5


def test_combined_probability() -> None:
    spammy = {f"s{i}": (9, 0) for i in range(10)}
    hammy = {f"h{i}": (0, 9) for i in range(10)}
    assert spam_probability(spammy, 10, 10) > 0.95
    assert spam_probability(hammy, 10, 10) < 0.05
    assert spam_probability({}, 10, 10) == 0.5


def test_strip_forged_spam_headers() -> None:
    header = b"Received: x\r\nX-Spam-Score: -100\r\n\tfolded\r\nX-Spam: no\r\nSubject: s\r\n"
    assert strip_spam_headers(header) == b"Received: x\r\nSubject: s\r\n"


def test_verdict_header_and_percent() -> None:
    v = Verdict(7.25, True, ("dnsbl:zen.test",))
    assert v.header().startswith(b"X-Spam-Score: 7.2\r\nX-Spam: yes")
    assert v.percent == 72.5


def _filter(store: SqliteStore, **kw: object) -> JunkFilter:
    settings = dataclasses.replace(JunkSettings(), **kw)  # type: ignore[arg-type]
    resolver = FakeResolver()
    resolver.add("2.0.0.127.zen.test", "A", "127.0.0.2")
    return JunkFilter(settings, store, get_logger(), hostname="mx.example.test", resolver=resolver)


def test_signals_and_training(tmp_path: Path) -> None:
    async def go() -> None:
        store = SqliteStore(tmp_path / "store")
        await store.open()
        try:
            f = _filter(store, dnsbl=("zen.test",), bayes_min_messages=3)
            assert await f.dnsbl_score("127.0.0.2") == (3.0, ["dnsbl:zen.test"])
            assert await f.dnsbl_score("127.0.0.1") == (0.0, [])
            ours = (
                b"Authentication-Results: mx.example.test; spf=fail smtp.mailfrom=x; dmarc=fail\r\n"
            )
            theirs = b"Authentication-Results: evil.test; dmarc=fail\r\n"
            assert f.auth_score(ours)[0] == 6.0 and f.auth_score(theirs)[0] == 0.0
            account = "alice@example.test"
            assert await f.bayes_score(account, tokenize(SPAM)) == (0.0, [])  # untrained
            for i in range(3):
                await f.train(account, SPAM + b"spam%d\r\n" % i, True)
                await f.train(account, HAM + b"ham%d\r\n" % i, False)
            spam_score, _ = await f.bayes_score(account, tokenize(SPAM))
            ham_score, _ = await f.bayes_score(account, tokenize(HAM))
            assert spam_score > 8.0 > 2.0 > ham_score
            # Retraining the other way moves the verdict (what an IMAP move does).
            for i in range(6):
                await f.train(account, SPAM + b"again%d\r\n" % i, False)
            moved, _ = await f.bayes_score(account, tokenize(SPAM))
            assert moved < spam_score
        finally:
            await store.close()

    asyncio.run(go())


def test_token_store_is_bounded(tmp_path: Path) -> None:
    async def go() -> None:
        store = SqliteStore(tmp_path / "store")
        store.max_junk_tokens = 100
        await store.open()
        try:
            for i in range(5):
                await store.junk_learn("a", [f"t{i}-{j}" for j in range(60)], True)
            _, _, counts = await store.junk_counts("a", [f"t4-{j}" for j in range(60)])
            nspam, _, _ = await store.junk_counts("a", [])
            assert nspam == 5 and len(counts) <= 100
            conn_count = len(
                (await store.junk_counts("a", [f"t{i}-{j}" for i in range(5) for j in range(60)]))[
                    2
                ]
            )
            assert conn_count <= 100
        finally:
            await store.close()

    asyncio.run(go())


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\r\n",
        b"\xff\xfe garbage \x00",
        b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x",
    ],
)
def test_tokenize_never_raises(body: bytes) -> None:
    assert isinstance(tokenize(body), set)


class _SilentResolver(FakeResolver):
    """A DNS server that never answers A queries."""

    async def a(self, name: str) -> list[str]:
        await asyncio.Event().wait()
        return []


def test_dnsbl_lookup_is_bounded_by_dnsbl_timeout(tmp_path: Path) -> None:
    """A silent blocklist counts as not listing, after [junk] dnsbl_timeout seconds."""

    async def go() -> None:
        settings = dataclasses.replace(JunkSettings(), dnsbl=("zen.test",), dnsbl_timeout=0.05)
        store = SqliteStore(tmp_path / "store")
        f = JunkFilter(
            settings, store, get_logger(), hostname="mx.test", resolver=_SilentResolver()
        )
        # the outer bound only turns a hang (the timeout ignored) into a failure
        assert await asyncio.wait_for(f.dnsbl_score("127.0.0.2"), 10.0) == (0.0, [])

    asyncio.run(go())


def test_training_direction() -> None:
    assert training_direction("INBOX", "Junk", "Junk") is True
    assert training_direction("Junk", "INBOX", "Junk") is False
    assert training_direction("Junk", "Trash", "Junk") is None
    assert training_direction("INBOX", "Archive", "Junk") is None


def test_rspamd_exchange_as_data() -> None:
    assert rspamd_target("http://127.0.0.1") == ("127.0.0.1", 11333, "/checkv2")
    assert rspamd_target("http://r.test:8080/x/") == ("r.test", 8080, "/x/checkv2")
    assert rspamd_target("https://r.test") is None
    assert rspamd_headers("192.0.2.1", "", "a@b.test", ["c@d.test"]) == [
        ("IP", "192.0.2.1"),
        ("From", "a@b.test"),
        ("Rcpt", "c@d.test"),
    ]
    assert rspamd_score(b'{"score": 7.5}') == 7.5
    assert rspamd_score(b'{"score": "inf"}') is None
    assert rspamd_score(b"{}") is None
    assert rspamd_score(b"not json") is None
