#!/usr/bin/python3
"""A small authoritative DNS server for tests: one BIND-style zone file
served on 127.0.0.1, UDP and TCP on the same port.

Debian's python3-dnslib parses the zone and the packets; run it with
/usr/bin/python3 (the `python3` first on PATH may not see Debian's
packages). dnslib's own `python3 -m dnslib.zoneresolver` is not enough for
a resolver's tests: it answers NXDOMAIN for every empty answer (no NODATA),
puts the target of a CNAME in the additional section (resolvers look in
the answer) and never truncates UDP answers. This one answers like a real
server:

  * NXDOMAIN only when the name does not exist at all; a name that exists
    (or has names below it) without records of the type asked: NOERROR
    with an empty answer (NODATA);
  * a CNAME is followed inside the zone (at most 8 links), every link and
    the target's records in the answer (--no-chase: the CNAME alone);
  * UDP answers longer than 512 bytes (or the query's EDNS payload size)
    go out truncated (TC), so the client retries over TCP;
  * per name, on purpose: --servfail NAME, --refused NAME, --drop NAME
    (never answered, over UDP or TCP).

As a program (what the C tests run, tests/support/dns-fixture.h):

  /usr/bin/python3 tests/support/dnszone.py --zone FILE [--port 0]
      [--port-file FILE] [--servfail NAME]... [--refused NAME]...
      [--drop NAME]... [--no-chase] [--log]

--port 0 (the default) picks a free port; --port-file gets the port number
(written whole, by rename) once both sockets listen. It runs until SIGTERM.

As a module (Python tests):

  with dnszone.ZoneServer(zone_text, drop=["slow.example.test"]) as dns:
      ... dns.server ("127.0.0.1:PORT": what --dns and MAIL_DNS take)

Standard library and python3-dnslib only.
"""
import argparse
import os
import signal
import socket
import socketserver
import struct
import sys
import threading

from dnslib import QTYPE, RCODE, RR, DNSHeader, DNSRecord

CHASE_MAX = 8
UDP_PAYLOAD = 512


def _key(name):
    """A name as a dictionary key: lowercase, one trailing dot."""
    s = str(name).lower()
    return s if s.endswith(".") else s + "."


class Zone:
    """The records of one zone file and the answer to one question."""

    def __init__(self, zone_text, servfail=(), refused=(), drop=(), chase=True):
        self.records = {}
        for rr in RR.fromZone(zone_text):
            self.records.setdefault(_key(rr.rname), []).append(rr)
        # every name that exists, with the empty non-terminals above them
        self.names = set()
        for name in self.records:
            labels = name.rstrip(".").split(".")
            for i in range(len(labels)):
                self.names.add(".".join(labels[i:]) + ".")
        self.servfail = {_key(n) for n in servfail}
        self.refused = {_key(n) for n in refused}
        self.drop = {_key(n) for n in drop}
        self.chase = chase

    def add(self, zone_text):
        """More records (a test publishing a key it just made)."""
        for rr in RR.fromZone(zone_text):
            name = _key(rr.rname)
            self.records.setdefault(name, []).append(rr)
            labels = name.rstrip(".").split(".")
            for i in range(len(labels)):
                self.names.add(".".join(labels[i:]) + ".")

    def answer(self, request):
        """The reply to request, or None to drop it."""
        reply = request.reply()
        reply.header.aa = 1
        reply.header.ra = 1
        qtype = request.q.qtype
        name = _key(request.q.qname)
        for _ in range(CHASE_MAX + 1):
            if name in self.drop:
                return None
            if name in self.servfail:
                reply.header.rcode = RCODE.SERVFAIL
                return reply
            if name in self.refused:
                reply.header.rcode = RCODE.REFUSED
                return reply
            rrs = self.records.get(name, [])
            hits = [rr for rr in rrs if rr.rtype == qtype or qtype == QTYPE.ANY]
            if hits:
                for rr in hits:
                    reply.add_answer(rr)
                return reply
            cname = [rr for rr in rrs if rr.rtype == QTYPE.CNAME]
            if cname and qtype != QTYPE.CNAME:
                reply.add_answer(cname[0])
                if not self.chase:
                    return reply
                name = _key(cname[0].rdata.label)
                continue
            if name not in self.names:
                reply.header.rcode = RCODE.NXDOMAIN
            return reply
        return reply  # a CNAME loop: what we have so far


class _Handler(socketserver.BaseRequestHandler):
    def handle(self):
        zone = self.server.zone
        if self.server.socket_type == socket.SOCK_STREAM:
            data = b""
            while len(data) < 2 or len(data) < 2 + struct.unpack("!H", data[:2])[0]:
                more = self.request.recv(65537)
                if not more:
                    return
                data += more
            query = data[2:2 + struct.unpack("!H", data[:2])[0]]
        else:
            query, sock = self.request
        try:
            request = DNSRecord.parse(query)
        except Exception:  # a test server: ignore what it cannot parse
            return
        reply = zone.answer(request)
        if self.server.log:
            rcode = RCODE[reply.header.rcode] if reply is not None else "DROP"
            proto = "tcp" if self.server.socket_type == socket.SOCK_STREAM else "udp"
            print(f"dnszone: {proto} {request.q.qname} {QTYPE[request.q.qtype]} -> {rcode} "
                  f"{len(reply.rr) if reply is not None else 0} rr", file=sys.stderr, flush=True)
        if reply is None:
            return
        out = reply.pack()
        if self.server.socket_type == socket.SOCK_STREAM:
            self.request.sendall(struct.pack("!H", len(out)) + out)
            return
        limit = UDP_PAYLOAD
        for rr in request.ar:
            if rr.rtype == QTYPE.OPT:
                limit = max(UDP_PAYLOAD, rr.rclass)
        if len(out) > limit:
            # the header and the question, TC set (dnslib's truncate()
            # drops the question, and resolvers match answers by it)
            short = DNSRecord(DNSHeader(id=reply.header.id, bitmap=reply.header.bitmap, tc=1),
                              q=request.q)
            out = short.pack()
        sock.sendto(out, self.client_address)


class _UDP(socketserver.ThreadingMixIn, socketserver.UDPServer):
    daemon_threads = True


class _TCP(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


class ZoneServer:
    """The zone served on address, UDP and TCP on one port, from threads
    of this process. start() returns once both listen; stop() closes."""

    def __init__(self, zone_text, address="127.0.0.1", port=0, servfail=(), refused=(),
                 drop=(), chase=True, tcp=True, log=False):
        self.zone = Zone(zone_text, servfail, refused, drop, chase)
        self.address = address
        self.want_port = port
        self.tcp = tcp
        self.log = log
        self.servers = []
        self.port = None

    def _bind(self):
        for _ in range(50):
            udp = _UDP((self.address, self.want_port), _Handler)
            port = udp.server_address[1]
            if not self.tcp:
                return [udp], port
            try:
                tcp = _TCP((self.address, port), _Handler)
            except OSError:
                udp.server_close()
                if self.want_port != 0:
                    raise
                continue
            return [udp, tcp], port
        raise OSError("no port free for both UDP and TCP")

    def start(self):
        self.servers, self.port = self._bind()
        for s in self.servers:
            s.zone = self.zone
            s.log = self.log
            threading.Thread(target=s.serve_forever, args=(0.1,), daemon=True).start()
        return self

    @property
    def server(self):
        """HOST:PORT, as --dns and MAIL_DNS take it."""
        return f"{self.address}:{self.port}"

    def stop(self):
        for s in self.servers:
            s.shutdown()
            s.server_close()
        self.servers = []

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def main():
    p = argparse.ArgumentParser(description="Serve one zone file for tests.")
    p.add_argument("--zone", required=True, help="BIND-style zone file ('-': stdin)")
    p.add_argument("--address", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0: a free port")
    p.add_argument("--port-file", help="where to write the port once listening")
    p.add_argument("--servfail", action="append", default=[], metavar="NAME")
    p.add_argument("--refused", action="append", default=[], metavar="NAME")
    p.add_argument("--drop", action="append", default=[], metavar="NAME")
    p.add_argument("--no-chase", action="store_true", help="answer a CNAME alone")
    p.add_argument("--no-tcp", action="store_true")
    p.add_argument("--log", action="store_true", help="one line per query on stderr")
    args = p.parse_args()
    zone_text = sys.stdin.read() if args.zone == "-" else open(args.zone).read()
    server = ZoneServer(zone_text, args.address, args.port, args.servfail, args.refused,
                        args.drop, not args.no_chase, not args.no_tcp, args.log).start()
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{server.port}\n")
        os.rename(tmp, args.port_file)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(3600):
        pass
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
