"""The web band: what correo serves over HTTP, on aiohttp (docs/architecture.md).

:mod:`correo.web.site` is pure (what is published per domain); :mod:`correo.web.app`
is the route table and its guard. The bounded HTTP client that MTA-STS and the rspamd
junk check use is a core service, :mod:`correo.httpclient`.
"""
