"""correo.mailauth: anti-spoofing policy — SPF, DKIM, DMARC, ARC, Authentication-Results.

The policy band: pure evaluation whose only effect is DNS, through the
:class:`correo.dns.Resolver` passed in (``keys`` is the one service-side module: it keeps
DKIM private keys on disk).  The SMTP shells use two objects:

* :class:`MessageAuthenticator` (MX role) — feed the message as it arrives, then
  ``await finish()`` for an :class:`AuthVerdict` (action + Authentication-Results field);
* :class:`DkimSigner` (submission role) — ``stream()``, feed, ``finish()`` for the
  DKIM-Signature fields to prepend.
"""

from correo.mailauth.arc import ArcResult, ArcStatus
from correo.mailauth.dkim import DkimResult, DkimStatus, DkimVerifier
from correo.mailauth.dmarc import DmarcOutcome, DmarcPolicy, DmarcStatus, check_dmarc
from correo.mailauth.inbound import Action, AuthVerdict, MessageAuthenticator
from correo.mailauth.results import strip_forged_results
from correo.mailauth.signing import DkimSigner, SigningKey, SigningStream
from correo.mailauth.spf import SpfOutcome, SpfResult, SpfVerdict, check_host, check_spf

__all__ = [
    "Action",
    "ArcResult",
    "ArcStatus",
    "AuthVerdict",
    "DkimResult",
    "DkimSigner",
    "DkimStatus",
    "DkimVerifier",
    "DmarcOutcome",
    "DmarcPolicy",
    "DmarcStatus",
    "MessageAuthenticator",
    "SigningKey",
    "SigningStream",
    "SpfOutcome",
    "SpfResult",
    "SpfVerdict",
    "check_dmarc",
    "check_host",
    "check_spf",
    "strip_forged_results",
]
