"""Where a recipient goes: a local mailbox, the outbound queue, or nowhere.

This is the anti-relay decision, so it is deliberately simple: a recipient is local
only if the directory resolves it; anything in a local domain that does not resolve is
unknown (``%`` hacks, quoted ``@`` in local parts and source routes all end here);
anything else is remote, which only an authenticated submission may use.

``postmaster`` in every local domain is accepted even when no account or alias has
that name (RFC 5321 §4.5.1): it is routed as ``[delivery] postmaster`` if that
resolves, otherwise as the domain's first account (sorted), otherwise as the first
account of any domain — so reports and complaints always reach someone who can read
them.  An explicit ``postmaster@domain`` account or alias always wins.

A local recipient still goes to the outbound queue in two cases, after the same
check: its domain is handed to an external MDA over LMTP (``handoff``), or the
sender asked for a success notice (``notify_success``), which the queue's local
delivery issues (RFC 3461 §6.2).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from correo.directory import Directory
from correo.directory.addresses import AddressError, normalize_domain
from correo.store.api import DeliveryTarget

__all__ = ["RecipientRoute", "postmaster_target", "route_recipient"]


_QUEUED = "Recipient OK (queued for delivery)"


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
    directory: Directory,
    local_part: str,
    domain: str,
    *,
    may_relay: bool,
    handoff: Collection[str] = frozenset(),
    notify_success: bool = False,
    postmaster: str = "",
) -> RecipientRoute:
    """Decide one RCPT TO (RFC 5321 §3.3, §3.6.2 on relaying).

    ``handoff``: lowercased local domains delivered by an external MDA over LMTP.
    ``postmaster``: the ``[delivery] postmaster`` account ("" = the default choice).
    """
    literal = domain.startswith("[")
    address = f"{local_part}@{domain}"
    if not literal and directory.is_local_domain(domain):
        resolution = directory.resolve(address)
        if resolution is None or (resolution.account is None and not resolution.forward):
            # RFC 5321 §4.5.1: postmaster@ every domain is accepted; the name is
            # case-insensitive (§2.4)
            target = None
            if local_part.lower() == "postmaster":
                target = postmaster_target(directory, domain, postmaster)
            if target is not None:
                box, _, box_domain = target.rpartition("@")
                return route_recipient(
                    directory,
                    box,
                    box_domain,
                    may_relay=False,
                    handoff=handoff,
                    notify_success=notify_success,
                )
            return RecipientRoute(550, "5.1.1", "Recipient address rejected: user unknown")
        forward = tuple(resolution.forward)
        if domain.lower() in handoff:
            # The MDA knows the mailbox by its canonical name (a subaddress of it is
            # passed as written); aliases are expanded here, like any forward.
            mailbox: tuple[str, ...] = ()
            if resolution.account:
                user, _, host = resolution.account.rpartition("@")
                own = resolution.detail is not None and domain.lower() == host.lower()
                if own and local_part.lower().startswith(user.lower()):
                    mailbox = (address,)
                else:
                    mailbox = (resolution.account,)
            return RecipientRoute(250, "2.1.5", _QUEUED, remote=mailbox + forward)
        if notify_success:
            return RecipientRoute(250, "2.1.5", _QUEUED, remote=(address,))
        local = (DeliveryTarget(resolution.account),) if resolution.account else ()
        return RecipientRoute(250, "2.1.5", "Recipient OK", local, forward)
    if may_relay and not literal:
        return RecipientRoute(250, "2.1.5", _QUEUED, remote=(address,))
    if may_relay:
        return RecipientRoute(550, "5.1.2", "Address literals are not accepted as recipients")
    return RecipientRoute(554, "5.7.1", "Relay access denied")


def postmaster_target(directory: Directory, domain: str, configured: str = "") -> str | None:
    """The address that takes ``postmaster@domain`` when nothing here has that name.

    ``configured`` (``[delivery] postmaster``) if it resolves; else the first account
    of ``domain``, else the first account of all; None when there is no account yet.
    """
    if configured:
        found = directory.resolve(configured)
        if found is not None and (found.account or found.forward):
            return configured
    users = directory.users()
    try:
        name = normalize_domain(domain)
    except AddressError:
        name = domain.lower()
    own = [u for u in users if u.rpartition("@")[2] == name]
    pick = own or users
    return pick[0] if pick else None
