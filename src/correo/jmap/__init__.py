"""JMAP (RFC 8620 core, RFC 8621 mail) as plain data: requests, errors, result
references, ids, states and the mail object model. No I/O: the methods that reach the
store are in :mod:`correo.web.jmap_methods`, the HTTP side in :mod:`correo.web.jmap`.
"""
