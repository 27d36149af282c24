"""What outbound sessions tell the TLS reports (RFC 8460 §4): one call per attempt.

The queue runner owns a :class:`TlsResults`; whoever decides a session's TLS outcome
(STARTTLS, certificate checks, MTA-STS, DANE) calls :meth:`TlsResults.record_tls_result`
with the policy domain (the recipient domain), the result type, and the policy that
applied.  The call never blocks: results are counted in memory and written to the store
in the background (:class:`correo.reports.tally.TallyBuffer`), and the daily TLS report
of each policy domain is made from them (``correo.reports.outbound``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum

from correo.reports.tally import TallyBuffer

__all__ = ["NO_POLICY", "TLS_KIND", "TlsPolicy", "TlsResultType", "TlsResults"]

#: The tally kind of TLS results in the store.
TLS_KIND = "tlsrpt"


class TlsResultType(StrEnum):
    """RFC 8460 §4.3 result types, and ``success``."""

    SUCCESS = "success"
    # §4.3.1 negotiation failures
    STARTTLS_NOT_SUPPORTED = "starttls-not-supported"
    CERTIFICATE_HOST_MISMATCH = "certificate-host-mismatch"
    CERTIFICATE_EXPIRED = "certificate-expired"
    CERTIFICATE_NOT_TRUSTED = "certificate-not-trusted"
    VALIDATION_FAILURE = "validation-failure"
    # §4.3.2 policy failures: DANE
    TLSA_INVALID = "tlsa-invalid"
    DNSSEC_INVALID = "dnssec-invalid"
    DANE_REQUIRED = "dane-required"
    # §4.3.2 policy failures: MTA-STS
    STS_POLICY_FETCH_ERROR = "sts-policy-fetch-error"
    STS_POLICY_INVALID = "sts-policy-invalid"
    STS_WEBPKI_INVALID = "sts-webpki-invalid"


@dataclass(frozen=True, slots=True)
class TlsPolicy:
    """RFC 8460 §4.4 ``policy``: ``kind`` is ``"sts"``, ``"tlsa"`` or
    ``"no-policy-found"``; ``strings`` the policy's lines (the MTA-STS policy text, or
    the TLSA records in presentation form); ``mx_hosts`` the MTA-STS mx patterns."""

    kind: str = "no-policy-found"
    strings: tuple[str, ...] = ()
    mx_hosts: tuple[str, ...] = ()


NO_POLICY = TlsPolicy()

#: Bounds on what a peer's answers can make us store per result.
_MAX_FIELD = 255
_MAX_STRINGS = 20


def _cut(text: str) -> str:
    return text[:_MAX_FIELD]


class TlsResults:
    """The TLS results of outbound sessions, by policy domain."""

    def __init__(self, tallies: TallyBuffer) -> None:
        self.tallies = tallies
        #: Set by the sender of reports: envelope senders whose mail is itself a report
        #: (their sessions count for nothing, so reports never cause reports).
        self.quiet_senders: set[str] = set()

    def record_tls_result(
        self,
        policy_domain: str,
        result_type: TlsResultType | str,
        *,
        policy: TlsPolicy = NO_POLICY,
        sending_ip: str = "",
        receiving_mx_hostname: str = "",
        receiving_ip: str = "",
        receiving_mx_helo: str = "",
        failure_reason_code: str = "",
        additional_information: str = "",
    ) -> None:
        """Count one session (RFC 8460 §4.3/§4.4).  ``result_type`` ``success`` counts
        toward ``total-successful-session-count``; any other type is a failure whose
        details (the other keywords) are kept in its ``failure-details`` entry."""
        domain = policy_domain.strip().lower().rstrip(".")
        if not domain:
            return
        result = str(result_type)
        key: dict[str, object] = {
            "policy": {
                "policy-type": policy.kind,
                "policy-string": [_cut(s) for s in policy.strings[:_MAX_STRINGS]],
                "mx-host": [_cut(s) for s in policy.mx_hosts[:_MAX_STRINGS]],
            },
            "result-type": _cut(result),
        }
        if result != TlsResultType.SUCCESS:
            details = {
                "sending-mta-ip": sending_ip,
                "receiving-mx-hostname": receiving_mx_hostname,
                "receiving-mx-helo": receiving_mx_helo,
                "receiving-ip": receiving_ip,
                "failure-reason-code": failure_reason_code,
                "additional-information": additional_information,
            }
            key["details"] = {k: _cut(v) for k, v in details.items() if v}
        self.tallies.add(TLS_KIND, _cut(domain), json.dumps(key, sort_keys=True))
