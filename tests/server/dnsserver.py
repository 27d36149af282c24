"""A small authoritative DNS server for tests: UDP and TCP on 127.0.0.1, zone in a dict.

``zone`` maps a name to ``{rtype: [value, ...]}`` in zone-file presentation format,
except TXT values, which are the plain text (split into 255-octet strings here).  Names
inside MX, SRV and CNAME values may omit the final dot ("10 mx.a.test"; "0 ." is a null
MX; "0 1 465 mail.a.test" an SRV record).
Unknown names answer NXDOMAIN, known names without the type answer NODATA; a CNAME is
followed inside the zone.  The zone may be changed while the server runs.

``signed`` plays a validating resolver: answers to questions for those names carry the
AD bit (RFC 4035 §3.2.3), denials of existence included.
"""

from __future__ import annotations

import socketserver
import threading

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

__all__ = ["DnsServer", "Zone"]

Zone = dict[str, dict[str, list[str]]]


def _absolute(name: str) -> str:
    return name if name.endswith(".") else name + "."


def _rdata(rtype: str, value: str) -> str:
    # there is no zone origin: a relative name would not encode
    if rtype == "MX":
        pref, host = value.split()
        return f"{pref} {_absolute(host)}"
    if rtype == "SRV":
        *numbers, target = value.split()
        return " ".join([*numbers, _absolute(target)])
    if rtype == "CNAME":
        return _absolute(value.strip())
    if rtype != "TXT":
        return value
    pieces = [value[i : i + 255] for i in range(0, len(value), 255)] or [""]
    return " ".join('"' + p.replace("\\", "\\\\").replace('"', '\\"') + '"' for p in pieces)


class DnsServer:
    """``with DnsServer(zone) as server:`` → ``server.address`` is "127.0.0.1:PORT"."""

    def __init__(self, zone: Zone) -> None:
        self.zone: Zone = {k.lower().rstrip("."): v for k, v in zone.items()}
        self.queries: list[tuple[str, str]] = []
        self.signed: set[str] = set()
        self._lock = threading.Lock()
        server = self

        class Udp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data, sock = self.request
                reply = server.answer(data)
                if reply is not None:
                    sock.sendto(reply, self.client_address)

        class Tcp(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                head = self.rfile.read(2)
                if len(head) < 2:
                    return
                reply = server.answer(self.rfile.read(int.from_bytes(head, "big")))
                if reply is not None:
                    self.wfile.write(len(reply).to_bytes(2, "big") + reply)

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        for attempt in range(20):  # the UDP port's TCP twin may be taken: pick another
            self._udp = socketserver.ThreadingUDPServer(("127.0.0.1", 0), Udp)
            self.port = self._udp.server_address[1]
            try:
                self._tcp = socketserver.ThreadingTCPServer(("127.0.0.1", self.port), Tcp)
                break
            except OSError:
                self._udp.server_close()
                if attempt == 19:
                    raise
        for srv in (self._udp, self._tcp):
            threading.Thread(target=srv.serve_forever, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def answer(self, wire: bytes) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return response.to_wire()
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        rtype = dns.rdatatype.to_text(question.rdtype)
        with self._lock:
            self.queries.append((name, rtype))
            if name in self.signed:
                response.flags |= dns.flags.AD
            for _ in range(8):  # CNAME chain, bounded
                records = self.zone.get(name)
                if records is None:
                    response.set_rcode(dns.rcode.NXDOMAIN)
                    break
                if "CNAME" in records and rtype != "CNAME":
                    target = records["CNAME"][0].rstrip(".").lower()
                    response.answer.append(
                        dns.rrset.from_text(name + ".", 60, "IN", "CNAME", target + ".")
                    )
                    name = target
                    continue
                values = records.get(rtype)
                if values:
                    texts = [_rdata(rtype, v) for v in values]
                    response.answer.append(
                        dns.rrset.from_text_list(name + ".", 60, "IN", rtype, texts)
                    )
                break
        return response.to_wire()

    def close(self) -> None:
        for srv in (self._udp, self._tcp):
            srv.shutdown()
            srv.server_close()

    def __enter__(self) -> DnsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
