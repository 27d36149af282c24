"""Fetching a domain's MTA-STS policy over HTTPS (RFC 8461 §3.3), bounded in size and time.

The policy host's name is resolved through correo's own resolver (the one the queue
uses for MX records), and its certificate must be valid for ``mta-sts.<domain>``.
Redirects are not followed (§3.3) and only a ``200`` with ``text/plain`` counts.
"""

from __future__ import annotations

import asyncio
import re
import ssl

from correo.dns.api import DnsError, Resolver

__all__ = ["FetchError", "fetch_policy", "parse_response", "tls_context"]

POLICY_PATH = "/.well-known/mta-sts.txt"
MAX_BODY = 64 * 1024  # RFC 8461 §3.3: senders may limit a policy's size (64 KB suggested)
_MAX_HEAD = 16 * 1024


class FetchError(Exception):
    """The policy could not be fetched: the domain is treated as having none (or the
    cached policy is kept, RFC 8461 §5.1)."""


def tls_context(ca_file: str = "") -> ssl.SSLContext:
    """The system's trust store (plus ``ca_file``), TLS 1.2 or later, names checked."""
    ctx = ssl.create_default_context()
    if ca_file:
        ctx.load_verify_locations(ca_file)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.hostname_checks_common_name = False  # RFC 8461 §3.3, RFC 6125: a DNS-ID in the SAN
    return ctx


async def fetch_policy(
    domain: str,
    resolver: Resolver,
    *,
    port: int = 443,
    context: ssl.SSLContext | None = None,
    timeout: float = 30.0,
) -> bytes:
    """The body of ``https://mta-sts.<domain>/.well-known/mta-sts.txt``; FetchError if not.

    ``domain`` is in A-labels. ``timeout`` bounds the whole fetch, every address tried
    included, so a policy host that drops packets costs one timeout, not one per address.
    """
    host = f"mta-sts.{domain}"
    try:
        request = (
            f"GET {POLICY_PATH} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: correo\r\n"
            "Accept: text/plain\r\nConnection: close\r\n\r\n"
        ).encode("ascii")
    except UnicodeEncodeError:
        raise FetchError(f"{host!r} is not an A-label name") from None
    ctx = context if context is not None else tls_context()
    errors: list[str] = []
    try:
        async with asyncio.timeout(timeout):
            addresses: list[str] = []
            for lookup in (resolver.aaaa, resolver.a):
                try:
                    addresses += await lookup(host)
                except DnsError:
                    continue
            if not addresses:
                raise FetchError(f"no address for {host}")
            for address in addresses[:4]:
                try:
                    return parse_response(await _exchange(address, port, host, ctx, request))
                except (OSError, ssl.SSLError) as exc:
                    errors.append(f"{address}: {exc}")
    except TimeoutError:
        errors.append(f"no answer within {timeout:g} s")
    raise FetchError(f"{host}: " + "; ".join(errors))


async def _exchange(
    address: str, port: int, host: str, ctx: ssl.SSLContext, request: bytes
) -> bytes:
    reader, writer = await asyncio.open_connection(
        address, port, ssl=ctx, server_hostname=host, ssl_handshake_timeout=30
    )
    try:
        writer.write(request)
        await writer.drain()
        data = bytearray()
        while chunk := await reader.read(65536):
            data += chunk
            if len(data) > _MAX_HEAD + 2 * MAX_BODY:  # room for chunked framing
                raise FetchError(f"{host}: the response is larger than {MAX_BODY} bytes")
            if _complete(data):
                break  # a server that keeps the connection open despite "close"
        return bytes(data)
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (OSError, ssl.SSLError):
            pass


def _complete(data: bytearray) -> bool:
    """Whether ``data`` holds a whole response by its own framing (else read to EOF)."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return False
    head = bytes(data[:end]).lower()
    body = bytes(data[end + 4 :])
    if b"\r\ntransfer-encoding:" in head and b"chunked" in head:
        try:
            _unchunk(body)
        except FetchError:
            return False
        return True
    for line in head.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            length = line.partition(b":")[2].strip()
            return length.isdigit() and len(body) >= int(length)
    return False


def parse_response(data: bytes) -> bytes:
    """The body of a complete HTTP/1.x response if it is a 200 text/plain; FetchError if not."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep or len(head) > _MAX_HEAD:
        raise FetchError("malformed HTTP response")
    lines = head.split(b"\r\n")
    status = lines[0].split(b" ", 2)
    if len(status) < 2 or not status[0].startswith(b"HTTP/1."):
        raise FetchError("malformed HTTP status line")
    if status[1] != b"200":  # RFC 8461 §3.3: a 3xx is not followed, anything else fails
        raise FetchError(f"HTTP status {status[1].decode('ascii', 'replace')}")
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon:
            raise FetchError("malformed HTTP header")
        headers.setdefault(name.strip().lower(), value.strip())
    media = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
    if media != b"text/plain":  # RFC 8461 §3.2
        raise FetchError(f"policy served as {media.decode('ascii', 'replace') or 'nothing'}")
    if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
        body = _unchunk(body)
    elif (length := headers.get(b"content-length")) is not None:
        if not length.isdigit() or int(length) > len(body):
            raise FetchError("truncated HTTP body")
        body = body[: int(length)]
    if len(body) > MAX_BODY:
        raise FetchError(f"the policy is larger than {MAX_BODY} bytes")
    return body


_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,8})[ \t]*(?:;[^\r\n]*)?")


def _unchunk(data: bytes) -> bytes:
    """The body of a chunked transfer coding (RFC 9112 §7.1), strictly and boundedly."""
    out = bytearray()
    pos = 0
    while True:
        end = data.find(b"\r\n", pos)
        if end < 0:
            raise FetchError("truncated chunked body")
        m = _CHUNK_SIZE.fullmatch(data, pos, end)
        if m is None:
            raise FetchError("malformed chunk size")
        size = int(m.group(1), 16)
        if size == 0:
            return bytes(out)
        start = end + 2
        if len(out) + size > MAX_BODY:
            raise FetchError(f"the policy is larger than {MAX_BODY} bytes")
        if start + size + 2 > len(data):
            raise FetchError("truncated chunked body")
        if data[start + size : start + size + 2] != b"\r\n":
            raise FetchError("malformed chunk")
        out += data[start : start + size]
        pos = start + size + 2  # always forward: size > 0
