"""What a SIGHUP reload applies and what it leaves for a restart (correo.server.reload)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from correo.config import Config, Limits, LogSettings, OutboundSettings, StoreSettings
from correo.server.reload import applied, changed_keys, restart_keys


def _config(**changes: object) -> Config:
    base = Config(
        data_dir=Path("/data"),
        hostname="mail.example.org",
        listen={"imap": (("0.0.0.0", 143),), "smtp": (("0.0.0.0", 25),)},
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_unchanged_config_has_nothing_to_report() -> None:
    assert changed_keys(_config(), _config()) == []


def test_live_keys_apply_and_the_others_are_named() -> None:
    old = _config()
    new = _config(
        hostname="mx.example.org",
        limits=Limits(recipients=5, connections_per_ip=3),
        log=LogSettings(level="warning", file="x.log"),
        listen={"imap": (("0.0.0.0", 1143),), "pop3": (("0.0.0.0", 110),)},
        store=StoreSettings(url="postgresql://db/mail"),
        outbound=OutboundSettings(relayhost="[smart.example.net]:587"),
    )
    assert sorted(restart_keys(old, new)) == [
        "limits.connections_per_ip",
        "listen.imap",
        "listen.pop3",
        "listen.smtp",  # turned off: still listening until the restart
        "log.file",
        "outbound.relayhost",
        "store.url",
    ]
    running = applied(old, new)
    assert running.hostname == "mx.example.org"
    assert running.limits.recipients == 5
    assert running.limits.connections_per_ip == old.limits.connections_per_ip
    assert running.log == LogSettings(level="warning", file="")
    assert running.listen == old.listen
    assert running.store == old.store
    assert running.outbound == old.outbound
