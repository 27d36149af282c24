"""Forwarding as a part of the account's active Sieve script (the account page's form).

Like the vacation reply (:mod:`correo.web.jmap_vacation`), forwarding is Sieve
(``redirect``, RFC 5228 §4.2, with ``:copy`` from RFC 3894 to keep a copy), so the script
ManageSieve shows is what forwards.  Three marked pieces:

* a first line ``# correo:forward {settings as JSON}``;
* ``require ["copy"]; # correo:forward`` right after it;
* between ``# correo:forward-begin`` and ``# correo:forward-end``, after the script's
  leading ``require`` commands: one ``redirect`` per address.

Everything else in the script is left as it was.  Pure functions: no I/O.
"""

from __future__ import annotations

import json
import re
from typing import Any

from correo.web.jmap_vacation import with_block, without_block

__all__ = ["MAX_ADDRESSES", "forward_script", "forward_settings"]

MAX_ADDRESSES = 5
_HEAD = "# correo:forward "
_REQUIRE = 'require ["copy"]; # correo:forward'
_BEGIN = "# correo:forward-begin"
_END = "# correo:forward-end"
_ADDRESS = re.compile(r"[^\s\"\\<>@]{1,64}@[A-Za-z0-9.-]{1,253}")


def forward_settings(script: str | None) -> dict[str, Any]:
    """``{"to": [...], "keep": bool}`` from the script's marked line (none: no forwarding)."""
    for line in (script or "").splitlines():
        if line.startswith(_HEAD):
            try:
                found = json.loads(line[len(_HEAD) :])
            except ValueError:
                break
            if isinstance(found, dict) and isinstance(found.get("to"), list):
                return {"to": [str(a) for a in found["to"]], "keep": bool(found.get("keep"))}
    return {"to": [], "keep": True}


def valid_address(address: str) -> bool:
    return _ADDRESS.fullmatch(address) is not None


def forward_script(script: str | None, to: list[str], keep: bool) -> str:
    """``script`` with its forwarding block replaced by one for ``to`` (none: removed).

    The addresses must already have passed :func:`valid_address`.
    """
    rest = without_block(script or "", _HEAD, _REQUIRE, _BEGIN, _END)
    if not to:
        return rest
    head = _HEAD + json.dumps({"to": to, "keep": keep}, separators=(",", ":")) + "\n"
    action = "redirect :copy" if keep else "redirect"
    block = _BEGIN + "\n" + "".join(f'{action} "{a}";\n' for a in to) + _END + "\n"
    return with_block(rest, head, _REQUIRE, block)
