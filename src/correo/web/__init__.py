"""The web band: what correo serves over HTTP, on aiohttp (docs/architecture.md).

:mod:`correo.web.site` is pure (what is published per domain); :mod:`correo.web.app`
is the route table and its guard; :mod:`correo.web.client` the bounded HTTP client
that MTA-STS and the rspamd junk check use.
"""
