"""Where a recipient goes: a local mailbox, the outbound queue, or nowhere.

This is the anti-relay decision, so it is deliberately simple: a recipient is local
only if the directory resolves it; anything in a local domain that does not resolve is
unknown (``%`` hacks, quoted ``@`` in local parts and source routes all end here);
anything else is remote, which only an authenticated submission may use.
"""

from __future__ import annotations

from dataclasses import dataclass

from correo.directory import Directory
from correo.store.api import DeliveryTarget

__all__ = ["RecipientRoute", "route_recipient"]


@dataclass(frozen=True, slots=True)
class RecipientRoute:
    code: int
    status: str
    text: str
    local: tuple[DeliveryTarget, ...] = ()
    remote: tuple[str, ...] = ()

    @property
    def accepted(self) -> bool:
        return self.code < 300


def route_recipient(
    directory: Directory, local_part: str, domain: str, *, may_relay: bool
) -> RecipientRoute:
    """Decide one RCPT TO (RFC 5321 §3.3, §3.6.2 on relaying)."""
    literal = domain.startswith("[")
    address = f"{local_part}@{domain}"
    if not literal and directory.is_local_domain(domain):
        resolution = directory.resolve(address)
        if resolution is None or (resolution.account is None and not resolution.forward):
            return RecipientRoute(550, "5.1.1", "Recipient address rejected: user unknown")
        local = (DeliveryTarget(resolution.account),) if resolution.account else ()
        return RecipientRoute(250, "2.1.5", "Recipient OK", local, tuple(resolution.forward))
    if may_relay and not literal:
        return RecipientRoute(250, "2.1.5", "Recipient OK (queued for delivery)", remote=(address,))
    if may_relay:
        return RecipientRoute(550, "5.1.2", "Address literals are not accepted as recipients")
    return RecipientRoute(554, "5.7.1", "Relay access denied")
