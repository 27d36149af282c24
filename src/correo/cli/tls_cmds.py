"""``correo tls status``: the certificates this server serves, and how their renewal stands.

Read from the store (where ACME certificates live, shared by every node) and from the
``[tls]`` files, so it works while the server runs, and without it.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from cryptography import x509

from correo.config import load_config
from correo.store.api import TlsCertificate
from correo.store.factory import open_store

__all__ = ["cmd_tls_status", "register"]


def _when(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(stamp))


def _describe(chain: bytes) -> tuple[str, str, float, tuple[str, ...]]:
    """(issuer, subject, expiry, DNS names) of a PEM chain's first certificate."""
    leaf = x509.load_pem_x509_certificates(chain)[0]
    common = leaf.issuer.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    issuer = str(common[0].value) if common else leaf.issuer.rfc4514_string()
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = tuple(san.value.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = ()
    return issuer, leaf.subject.rfc4514_string(), leaf.not_valid_after_utc.timestamp(), names


def _acme_lines(cert: TlsCertificate) -> list[str]:
    lines = [f"ACME certificate {cert.name}", f"  names        {' '.join(cert.names)}"]
    if cert.chain:
        issuer, _, expires, covered = _describe(cert.chain)
        lines.append(f"  issuer       {issuer}")
        if covered and set(covered) != set(cert.names):
            lines.append(f"  serving for  {' '.join(covered)}")
        lines.append(f"  expires      {_when(expires)}")
        lines.append(f"  obtained     {_when(cert.updated)}")
    else:
        lines.append("  issuer       (none obtained yet: the [tls] certificate serves)")
    label = "next attempt" if cert.failures else "renewal"
    lines.append(f"  {label:<12} {_when(cert.renew_at)}")
    if cert.last_error:
        lines.append(f"  last error   {cert.last_error} ({cert.failures} failed in a row)")
    else:
        lines.append("  last error   -")
    return lines


def _file_lines(path: Path) -> list[str]:
    try:
        issuer, subject, expires, names = _describe(path.read_bytes())
    except (OSError, ValueError) as exc:
        return [f"[tls] certificate {path}", f"  unreadable: {exc}"]
    return [
        f"[tls] certificate {path}",
        f"  names        {' '.join(names) or subject}",
        f"  issuer       {issuer}",
        f"  expires      {_when(expires)}",
        "  renewal      - (replaced by hand, or by ACME when [acme] directory is set)",
    ]


def cmd_tls_status(args: argparse.Namespace) -> int:
    config = load_config(args.data_dir)

    async def read() -> list[TlsCertificate]:
        store = open_store(config)
        await store.open()
        try:
            return await store.tls_cert_list()
        finally:
            await store.close()

    stored = [c for c in asyncio.run(read()) if c.names]  # rows without names: account keys
    blocks = [_acme_lines(c) for c in stored]
    if not config.acme.directory:
        print("ACME is off ([acme] directory is empty).")
    blocks.append(_file_lines(config.path(config.tls.certificate)))
    print("\n\n".join("\n".join(block) for block in blocks))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``tls status`` to the correo command line."""
    p = sub.add_parser("tls", help="TLS certificates: 'tls status' lists them")
    tsub = p.add_subparsers(dest="action", metavar="ACTION")
    tsub.required = True
    a = tsub.add_parser(
        "status", help="each certificate: names, issuer, expiry, next renewal, last error"
    )
    a.set_defaults(func=cmd_tls_status)
