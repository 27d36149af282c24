"""The application: it welcomes new users by mail, through an authenticated SMTP server."""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage


@dataclass(frozen=True)
class MailSettings:
    host: str
    port: int
    username: str
    password: str
    sender: str
    tls: ssl.SSLContext | None = None  # None: the system's trusted certificates


def welcome(settings: MailSettings, address: str, name: str) -> str:
    """Send the welcome message; returns its Message-ID."""
    message = EmailMessage()
    message["From"] = settings.sender
    message["To"] = address
    message["Subject"] = f"Welcome, {name}!"
    message["Message-ID"] = f"<welcome.{address}>"
    message.set_content(f"Hello {name},\n\nyour account is ready.\n")
    message.add_alternative(f"<p>Hello <b>{name}</b>, your account is ready.</p>", subtype="html")
    with smtplib.SMTP(settings.host, settings.port, timeout=10) as smtp:
        smtp.starttls(context=settings.tls or ssl.create_default_context())
        smtp.login(settings.username, settings.password)
        smtp.send_message(message)
    return str(message["Message-ID"])
