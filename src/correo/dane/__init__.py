"""correo.dane: DANE for outbound SMTP (RFC 7672) — which MX hosts it applies to, from
DNSSEC-validated answers, and whether a server's certificate chain satisfies them.

Policy band: pure evaluation whose only effect is DNS, through the
:class:`correo.dns.DnssecResolver` passed in.
"""

from correo.dane.lookup import DaneHost, dane_hosts
from correo.dane.match import DANE_EE, DANE_TA, check_chain, record_for, usable

__all__ = ["DANE_EE", "DANE_TA", "DaneHost", "check_chain", "dane_hosts", "record_for", "usable"]
