"""Certificates by ACME (RFC 8555): obtained, renewed and put into service (docs/tls.md)."""
