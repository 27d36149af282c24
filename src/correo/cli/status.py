"""``correo status``: what the running server says about itself.

The server answers ``GET /status`` on its ``metrics`` listener (JSON, see
:mod:`correo.server.metrics_session`); this command finds that listener in
``correo.toml``, asks, and prints the answer for a person. When nothing answers it says
so and exits 1, so scripts can use it as a check too.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import sys
from typing import Any

from correo.config import load_config

__all__ = ["cmd_status", "register", "render"]

_TIMEOUT = 10.0
_EXPIRY_WARNING = 14  # days: a certificate closer than this to expiry is flagged


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "status",
        help="ask the running server: version, uptime, listeners, queue, certificates, "
        "errors of the last hour",
    )
    p.add_argument(
        "--address",
        metavar="HOST:PORT",
        default=None,
        help="the metrics listener to ask (default: the first [listen] metrics address)",
    )
    p.add_argument("--json", action="store_true", help="print the server's answer as JSON")
    p.set_defaults(func=cmd_status)


def _target(args: argparse.Namespace) -> tuple[str, int] | str:
    """(host, port) to ask, or why there is none."""
    if args.address:
        host, sep, port = args.address.rpartition(":")
        if not sep or not port.isdigit():
            return f"--address {args.address!r}: expected HOST:PORT"
        return host.strip("[]") or "127.0.0.1", int(port)
    config = load_config(args.data_dir)
    addresses = config.listen.get("metrics", ())
    if not addresses:
        return (
            "no metrics listener in correo.toml, which correo status asks: "
            'add metrics = ["127.0.0.1:9187"] under [listen] and restart the server'
        )
    host, port = addresses[0]
    if port == 0:
        return "[listen] metrics has port 0 (any free port): give --address HOST:PORT"
    wildcard = {"0.0.0.0": "127.0.0.1", "::": "::1", "*": "127.0.0.1"}
    return wildcard.get(host, host), port


def cmd_status(args: argparse.Namespace) -> int:
    target = _target(args)
    if isinstance(target, str):
        print(f"correo: {target}", file=sys.stderr)
        return 2
    host, port = target
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    conn = http.client.HTTPConnection(host, port, timeout=_TIMEOUT)
    try:
        conn.request("GET", "/status")
        answer = conn.getresponse()
        body = answer.read(1 << 20)
    except ConnectionRefusedError:
        print(f"correo is not running: nothing listens on {shown} (the metrics listener)")
        return 1
    except (OSError, http.client.HTTPException) as exc:
        print(f"correo: no answer from {shown}: {exc}", file=sys.stderr)
        return 1
    finally:
        conn.close()
    if answer.status != 200:
        print(f"correo: {shown} answered {answer.status}: {body[:200]!r}", file=sys.stderr)
        return 1
    try:
        status = json.loads(body)
    except ValueError:
        print(f"correo: {shown} did not answer with correo's status", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(status, indent=1))
    else:
        print(render(status), end="")
    return 0 if status.get("ready") else 1


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


def render(status: dict[str, Any]) -> str:
    """The status answer as lines for a person."""
    started = dt.datetime.fromtimestamp(status["started"], dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    ready = "ready" if status.get("ready") else f"NOT READY: {status.get('problem')}"
    lines = [
        f"correo {status['version']} on {status['hostname']} (pid {status['pid']}): {ready}",
        f"Up {_duration(status['uptime'])}, since {started}",
        "Listeners:",
    ]
    sessions = status.get("sessions", {})
    for service, addresses in status.get("listeners", {}).items():
        open_now = sessions.get(service, 0)
        extra = f"  ({open_now} connected)" if open_now else ""
        lines.append(f"  {service:12} {', '.join(addresses)}{extra}")
    if status.get("lmtp_socket"):
        lines.append(f"  {'lmtp socket':12} {status['lmtp_socket']}")
    if status.get("imap_idle"):
        lines.append(f"IMAP sessions in IDLE: {status['imap_idle']}")
    queue = status.get("queue")
    if queue is None:
        lines.append("Queue: unknown (the store did not answer)")
    elif not queue["messages"]:
        lines.append("Queue: empty")
    else:
        lines.append(
            f"Queue: {queue['messages']} messages, {queue['recipients']} recipients waiting,"
            f" oldest {_duration(queue['oldest_seconds'] or 0)}"
        )
    lines.append("Certificates:")
    for cert in status.get("certificates", []):
        if "error" in cert:
            lines.append(f"  {cert['file']}: cannot be read: {cert['error']}")
            continue
        days = cert["days_left"]
        warn = "  EXPIRED" if days < 0 else "  RENEW SOON" if days < _EXPIRY_WARNING else ""
        kind = ", self-signed" if cert.get("self_signed") else ""
        lines.append(
            f"  {cert['file']}: {cert['subject']}{kind}, expires {cert['not_after']}"
            f" ({days} days){warn}"
        )
    errors = status.get("errors", {})
    hours = round(errors.get("window_seconds", 3600) / 3600)
    span = "hour" if hours == 1 else f"{hours} hours"
    lines.append(f"Warnings and errors in the last {span}: {errors.get('count', 0)}")
    for event, count in list(errors.get("by_event", {}).items())[:10]:
        lines.append(f"  {count:6}  {event}")
    if errors.get("last"):
        lines.append("Latest:")
        lines += [f"  {line}" for line in errors["last"][-5:]]
    return "\n".join(lines) + "\n"
