"""A small HTTPS responder for what mail clients and peers fetch over the web:
the MTA-STS policy (RFC 8461) and Thunderbird-style autoconfiguration."""

from correo.http.request import HttpError, Request, parse_request, response
from correo.http.site import Site, autoconfig_xml, mta_sts_id, mta_sts_policy

__all__ = [
    "HttpError",
    "Request",
    "Site",
    "autoconfig_xml",
    "mta_sts_id",
    "mta_sts_policy",
    "parse_request",
    "response",
]
