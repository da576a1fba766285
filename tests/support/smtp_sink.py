#!/usr/bin/python3
"""smtp_sink.py: a scripted SMTP server for integration tests (standard
library only; run it with Debian's /usr/bin/python3).

It listens on 127.0.0.1 (port 0 unless --port), writes the port number to
--port-file (by rename, so a reader never sees half a number) and serves
each connection on a thread. Every transaction it accepts is appended to
--out as one JSON line:
  {"helo":..., "tls":bool, "auth":user|null, "mail":"<a> PARAMS",
   "rcpts":["<b> PARAMS", ...], "data":"<latin-1 text, dot-unstuffed>"}
Each command line received is appended to --out + ".cmds" (one per line)
so a test can check what was sent (pipelining, parameters), and each
accepted message's data, as received after dot-unstuffing, is written to
--out + ".N.eml" (N = 1, 2, ... in the order accepted).

Faults and variants (combine freely):
  --greeting "421 4.3.2 busy"      greet with this and close
  --ehlo-reply "502 5.5.1 no"      answer EHLO with this (HELO still works)
  --no-pipelining --no-8bitmime --no-smtputf8 --no-dsn --size N
  --starttls --cert F --key F      offer STARTTLS
  --implicit-tls --cert F --key F  TLS from the first byte (smtps, 465)
  --broken-tls                     after 220 to STARTTLS send junk and close
  --tls-inject                     send "250 injected" in the same packet as
                                   the 220 to STARTTLS (CVE-2011-0411 style)
  --auth USER:PASS                 offer AUTH PLAIN LOGIN (after TLS, or
                                   always with --auth-plaintext)
  --auth-mechs "LOGIN"             the mechanisms offered (default PLAIN LOGIN)
  --mail-reply "550 5.7.1 no"      answer every MAIL with this
  --rcpt-reply ADDR=REPLY          answer RCPT TO:<ADDR> with REPLY (repeat)
  --data-reply "554 5.6.0 no"      final reply after the end of data
  --drop-in-data N                 close after N bytes of message data
  --stall-at greeting|mail|rcpt|data|final   stop answering there
Stops on SIGTERM or SIGINT.
"""
import argparse
import base64
import json
import os
import signal
import socket
import ssl
import sys
import threading


def parse_args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--greeting", default="220 sink.test ESMTP smtp_sink.py")
    ap.add_argument("--ehlo-reply")
    ap.add_argument("--no-pipelining", action="store_true")
    ap.add_argument("--no-8bitmime", action="store_true")
    ap.add_argument("--no-smtputf8", action="store_true")
    ap.add_argument("--no-dsn", action="store_true")
    ap.add_argument("--size", type=int)
    ap.add_argument("--starttls", action="store_true")
    ap.add_argument("--implicit-tls", action="store_true")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--broken-tls", action="store_true")
    ap.add_argument("--tls-inject", action="store_true")
    ap.add_argument("--auth")
    ap.add_argument("--auth-plaintext", action="store_true")
    ap.add_argument("--auth-mechs", default="PLAIN LOGIN")
    ap.add_argument("--mail-reply")
    ap.add_argument("--rcpt-reply", action="append", default=[])
    ap.add_argument("--data-reply", default="250 2.0.0 queued")
    ap.add_argument("--drop-in-data", type=int)
    ap.add_argument("--stall-at")
    return ap.parse_args()


class Session:
    def __init__(self, srv, sock):
        self.srv = srv
        self.a = srv.args
        self.sock = sock
        self.rf = sock.makefile("rb")
        self.tls = False
        self.auth = None
        self.helo = None
        self.reset()

    def reset(self):
        self.mail = None
        self.rcpts = []

    def send(self, text):
        self.sock.sendall(text.encode("utf-8", "surrogateescape") + b"\r\n")

    def stall(self, where):
        if self.a.stall_at == where:
            while not self.srv.stop.is_set():
                self.srv.stop.wait(0.2)
            return True
        return False

    def readline(self):
        line = self.rf.readline(4096)
        if not line:
            return None
        text = line.rstrip(b"\r\n").decode("utf-8", "surrogateescape")
        self.srv.log_cmd(text)
        return text

    def caps(self):
        c = ["sink.test"]
        if not self.a.no_pipelining:
            c.append("PIPELINING")
        if self.a.size is not None:
            c.append("SIZE %d" % self.a.size)
        if not self.a.no_8bitmime:
            c.append("8BITMIME")
        if not self.a.no_smtputf8:
            c.append("SMTPUTF8")
        if not self.a.no_dsn:
            c.append("DSN")
        c.append("ENHANCEDSTATUSCODES")
        if self.a.starttls and not self.tls:
            c.append("STARTTLS")
        if self.a.auth and (self.tls or self.a.auth_plaintext) and not self.auth:
            c.append("AUTH " + self.a.auth_mechs)
        return c

    def check_auth(self, user, pw):
        u, p = self.a.auth.split(":", 1)
        return user == u and pw == p

    def do_auth(self, arg):
        parts = arg.split()
        mech = parts[0].upper() if parts else ""
        if mech not in self.a.auth_mechs.upper().split():
            mech = ""
        if mech == "PLAIN":
            if len(parts) > 1:
                resp = parts[1]
            else:
                self.send("334 ")
                resp = self.readline()
            raw = base64.b64decode(resp)
            _, user, pw = raw.split(b"\0", 2)
            user, pw = user.decode(), pw.decode()
        elif mech == "LOGIN":
            self.send("334 VXNlcm5hbWU6")
            user = base64.b64decode(self.readline()).decode()
            self.send("334 UGFzc3dvcmQ6")
            pw = base64.b64decode(self.readline()).decode()
        else:
            self.send("504 5.5.4 mechanism")
            return
        if self.check_auth(user, pw):
            self.auth = user
            self.send("235 2.7.0 ok")
        else:
            self.send("535 5.7.8 bad credentials")

    def do_data(self):
        if self.stall("data"):
            return False
        self.send("354 go ahead")
        body = bytearray()
        seen = 0
        while True:
            line = self.rf.readline(1 << 20)
            if not line:
                return False
            seen += len(line)
            if self.a.drop_in_data is not None and seen >= self.a.drop_in_data:
                return False
            if line == b".\r\n":
                break
            if line.startswith(b"."):
                line = line[1:]
            body += line
        if self.stall("final"):
            return False
        reply = self.a.data_reply
        if reply.startswith("2"):
            self.srv.log_txn({"helo": self.helo, "tls": self.tls, "auth": self.auth,
                              "mail": self.mail, "rcpts": self.rcpts,
                              "data": body.decode("latin-1")})
        self.send(reply)
        self.reset()
        return True

    def start_tls(self):
        """The server side of a TLS handshake on the connection; False when
        it failed (the connection is then over)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.a.cert, self.a.key)
        try:
            self.sock = ctx.wrap_socket(self.sock, server_side=True)
        except (ssl.SSLError, OSError):
            return False
        self.rf = self.sock.makefile("rb")
        self.tls = True
        return True

    def run(self):
        if self.a.implicit_tls and not self.start_tls():
            return
        if self.stall("greeting"):
            return
        self.send(self.a.greeting)
        if not self.a.greeting.startswith("2"):
            return
        while True:
            line = self.readline()
            if line is None:
                return
            verb, _, arg = line.partition(" ")
            verb = verb.upper()
            if verb == "EHLO":
                if self.a.ehlo_reply:
                    self.send(self.a.ehlo_reply)
                    continue
                self.helo = arg
                self.reset()
                c = self.caps()
                for x in c[:-1]:
                    self.send("250-" + x)
                self.send("250 " + c[-1])
            elif verb == "HELO":
                self.helo = arg
                self.send("250 sink.test")
            elif verb == "STARTTLS" and self.a.starttls and not self.tls:
                if self.a.tls_inject:
                    self.sock.sendall(b"220 2.0.0 ready\r\n250 injected\r\n")
                else:
                    self.send("220 2.0.0 ready")
                if self.a.broken_tls:
                    self.sock.sendall(b"this is not a TLS record\r\n" * 4)
                    return
                if not self.start_tls():
                    return
                self.helo = None
                self.reset()
            elif verb == "AUTH" and self.a.auth:
                self.do_auth(arg)
            elif verb == "MAIL":
                if self.stall("mail"):
                    return
                if self.a.mail_reply:
                    self.send(self.a.mail_reply)
                    continue
                self.mail = arg[5:] if arg.upper().startswith("FROM:") else arg
                self.rcpts = []
                self.send("250 2.1.0 ok")
            elif verb == "RCPT":
                if self.stall("rcpt"):
                    return
                if self.mail is None:
                    self.send("503 5.5.1 need MAIL")
                    continue
                path = arg[3:] if arg.upper().startswith("TO:") else arg
                addr = path.split(">", 1)[0].lstrip("<")
                reply = self.srv.rcpt_replies.get(addr, "250 2.1.5 ok")
                if reply.startswith("2"):
                    self.rcpts.append(path)
                self.send(reply)
            elif verb == "DATA":
                if not self.rcpts:
                    self.send("554 5.5.1 no valid recipients")
                    continue
                if not self.do_data():
                    return
            elif verb == "RSET":
                self.reset()
                self.send("250 2.0.0 ok")
            elif verb == "NOOP":
                self.send("250 2.0.0 ok")
            elif verb == "QUIT":
                self.send("221 2.0.0 bye")
                return
            else:
                self.send("502 5.5.2 unknown command")


class Server:
    def __init__(self, args):
        self.args = args
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.rcpt_replies = {}
        self.count = 0
        for r in args.rcpt_reply:
            addr, _, reply = r.partition("=")
            self.rcpt_replies[addr] = reply
        open(args.out, "w").close()
        open(args.out + ".cmds", "w").close()

    def log_cmd(self, text):
        with self.lock, open(self.args.out + ".cmds", "a", encoding="utf-8",
                             errors="surrogateescape") as f:
            f.write(text + "\n")

    def log_txn(self, txn):
        with self.lock:
            self.count += 1
            with open("%s.%d.eml" % (self.args.out, self.count), "wb") as f:
                f.write(txn["data"].encode("latin-1"))
            with open(self.args.out, "a", encoding="utf-8",
                      errors="surrogateescape") as f:
                f.write(json.dumps(txn) + "\n")

    def serve(self, sock):
        try:
            Session(self, sock).run()
        except (OSError, ValueError, ssl.SSLError):
            pass
        finally:
            try:
                sock.close()
            except OSError:
                pass


def main():
    args = parse_args()
    srv = Server(args)
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", args.port))
    ls.listen(16)
    ls.settimeout(0.2)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % ls.getsockname()[1])
    os.rename(tmp, args.port_file)

    def on_signal(_sig, _frm):
        srv.stop.set()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not srv.stop.is_set():
        try:
            s, _ = ls.accept()
        except socket.timeout:
            continue
        except OSError:
            break
        s.settimeout(None)
        threading.Thread(target=srv.serve, args=(s,), daemon=True).start()
    ls.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
