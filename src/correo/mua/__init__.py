"""correo.mua: the client side — account profiles, IMAP/SMTP/POP3 helpers, rendering,
``fetch`` into Maildir/mbox, and the Maildir/mbox formats shared with import/export."""

__all__: list[str] = []
