"""correo.testing: a real correo server for test suites (the ``correo`` pytest plugin).

``pip install correo`` registers the plugin; its fixtures ``correo_server`` (one server
per test) and ``correo_server_session`` (one per session) give a
:class:`CorreoTestServer`.  Outside pytest, :meth:`CorreoTestServer.start` does the same.
See docs/testing.md.
"""

from correo.testing.capture import OutboundMessage
from correo.testing.server import DOMAIN, CorreoTestServer, MailTimeout, Material

__all__ = ["DOMAIN", "CorreoTestServer", "MailTimeout", "Material", "OutboundMessage"]
