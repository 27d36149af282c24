"""DMARC aggregate reports (RFC 7489 §7) and SMTP TLS reports (RFC 8460): recording the
results they count, sending ours, and taking in the ones other domains send us."""
