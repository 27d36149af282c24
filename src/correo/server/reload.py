"""What a configuration reload (SIGHUP) can apply to a running server, and what not.

Sessions read ``ctx.config`` when they need a limit, so swapping the Config object
changes those for every connection from then on.  Listeners, the store, the queue
runner, the junk filter and the login throttle are built once at start: a change to
their keys is reported as needing a restart and the running value stays.
"""

from __future__ import annotations

import dataclasses

from correo.config import Config

__all__ = ["LIVE_KEYS", "applied", "changed_keys", "restart_keys"]

#: Keys (``section.name``, or a whole ``section``) a reload puts into effect.
LIVE_KEYS = frozenset(
    {
        "hostname",
        "tls",  # the files are read again and the chain replaced in the live context
        "limits",
        "auth.allow_plaintext",
        "auth.min_password_length",
        "smtp",
        "delivery",
        "mta_sts",
        "log.level",
        "webhooks",  # read at each event and attempt
    }
)
#: Read once at start although their section is live.
_FIXED = frozenset(
    {
        "limits.connections_per_ip",
        "limits.ipv6_prefix",
        "limits.listen_backlog",
        "limits.index_workers",
    }
)


def changed_keys(old: Config, new: Config) -> list[str]:
    """Every ``section.key`` (or top-level key) whose value differs, in file order."""
    out: list[str] = []
    for field in dataclasses.fields(Config):
        a, b = getattr(old, field.name), getattr(new, field.name)
        if a == b:
            continue
        if field.name == "listen":
            names = sorted(set(a) | set(b))
            out += [f"listen.{s}" for s in names if a.get(s) != b.get(s)]
        elif dataclasses.is_dataclass(a) and dataclasses.is_dataclass(b):
            out += [
                f"{field.name}.{f.name}"
                for f in dataclasses.fields(a)
                if getattr(a, f.name) != getattr(b, f.name)
            ]
        else:
            out.append(field.name)
    return out


def restart_keys(old: Config, new: Config) -> list[str]:
    """The changed keys a reload cannot apply: they take effect at the next start."""
    return [
        key
        for key in changed_keys(old, new)
        if key in _FIXED or (key not in LIVE_KEYS and key.split(".")[0] not in LIVE_KEYS)
    ]


def applied(old: Config, new: Config) -> Config:
    """``new`` with every key that needs a restart set back to its running value, so
    nothing reads a listener, store or queue setting the process does not have."""
    keep = restart_keys(old, new)
    changes: dict[str, object] = {}
    if any(k.startswith("listen.") for k in keep):
        changes["listen"] = old.listen
    for section in {k.split(".")[0] for k in keep if "." in k} - {"listen"}:
        fields = {k.split(".", 1)[1] for k in keep if k.startswith(section + ".")}
        current = changes.get(section, getattr(new, section))
        running = getattr(old, section)
        changes[section] = dataclasses.replace(
            current,  # type: ignore[type-var]
            **{f: getattr(running, f) for f in fields},
        )
    for key in keep:
        if "." not in key:
            changes[key] = getattr(old, key)
    return dataclasses.replace(new, **changes)  # type: ignore[arg-type]
