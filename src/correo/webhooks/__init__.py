"""Webhooks: mail events as HTTP calls (docs/webhooks.md).

``events`` turns a local delivery or a queue outcome into queued calls (store API),
``payload`` expands a ``received`` call into the parsed message, ``sender`` makes the
calls with retries, ``links`` signs the attachment links the https listener serves.
"""
