#!/usr/bin/env python3
"""Drive the POP3 engine with Python's poplib (stdlib only).

Usage: test-pop3-poplib.py PATH-TO-mail-test-server

Starts the in-memory test server (IMAP and POP3 over one backend) on free
ports and checks, with poplib as the client:
  * plaintext (loopback development mode): USER/PASS, STAT, LIST, UIDL,
    RETR byte for byte (8-bit, dot-stuffed lines, bare LF made CRLF), TOP,
    DELE, RSET, QUIT; then imaplib sees the deleted message gone and the
    retrieved one \\Seen; UIDL the same in the next session;
  * TLS with a development CA from cluster/dev-ca, verified: USER refused
    before STLS (-ERR [AUTH]) and not in CAPA; stls(); POP3_SSL; AUTH PLAIN
    by hand; the STLS injection case (what was pipelined after STLS never
    runs);
  * bounded output: POP3 sessions that RETR a 4 MiB message and never read
    do not grow the server by their bodies (the 6 MiB body budget sends
    the others -ERR [SYS/TEMP]), and the per-address cap turns the 21st
    session away while a normal client is served.
The server is stopped by PID each time and must exit 0."""
import base64
import imaplib
import os
import poplib
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))
from mail_test_server import (MailTestServer, count_answered, never_reading,  # noqa: E402
                              write_messages)

USER = "demo@example.test"
PASSWORD = "pass word"
MESSAGES = [
    b"From: a@example.test\r\nTo: demo@example.test\r\nSubject: hello\r\n\r\n"
    b"Hello from poplib.\r\n.a line with a dot\r\n.\r\n..\r\nbare\nLF\r\n",
    b"Subject: 8bit\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    + bytes(range(1, 256)).replace(b"\r", b"").replace(b"\n", b"") + b"\r\n",
    b"Subject: third\r\n\r\nline 1\r\nline 2\r\nline 3\r\n",
]


def normalised(msg):
    """What RETR sends (before dot-stuffing): every line end CRLF."""
    return msg.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


def joined(lines):
    return b"".join(line + b"\r\n" for line in lines)


def plaintext_tests(server_bin, tmp):
    srv = MailTestServer(server_bin, USER, PASSWORD, write_messages(tmp, MESSAGES))
    try:
        pop = poplib.POP3("127.0.0.1", srv.ports["pop3port"], timeout=10)
        assert pop.getwelcome().startswith(b"+OK"), pop.getwelcome()
        caps = pop.capa()
        for cap in ("TOP", "UIDL", "USER", "SASL", "RESP-CODES", "PIPELINING"):
            assert cap in caps, (cap, caps)
        assert "STLS" not in caps, caps
        pop.user(USER)
        try:
            pop.pass_("wrong")
            raise AssertionError("PASS with a wrong password succeeded")
        except poplib.error_proto as e:
            assert b"[AUTH]" in e.args[0], e
        pop.user(USER)
        assert pop.pass_(PASSWORD).startswith(b"+OK"), "login"
        sizes = [len(m) for m in MESSAGES]
        assert pop.stat() == (3, sum(sizes)), pop.stat()
        resp, listing, _ = pop.list()
        assert listing == [b"%d %d" % (i + 1, s) for i, s in enumerate(sizes)], listing
        resp, uidls, _ = pop.uidl()
        assert len(uidls) == 3 and len(set(u.split()[1] for u in uidls)) == 3, uidls
        for i, msg in enumerate(MESSAGES, start=1):
            resp, lines, octets = pop.retr(i)
            assert resp.startswith(b"+OK"), resp
            assert joined(lines) == normalised(msg), (lines, msg)
        resp, lines, _ = pop.top(3, 1)
        assert joined(lines) == b"Subject: third\r\n\r\nline 1\r\n", lines
        resp, lines, _ = pop.top(1, 0)
        assert lines[-1] == b"" and lines[0].startswith(b"From:"), lines
        try:
            pop.retr(4)
            raise AssertionError("RETR of a missing message succeeded")
        except poplib.error_proto as e:
            assert b"No such message" in e.args[0], e
        assert pop.dele(3).startswith(b"+OK")
        assert pop.stat()[0] == 2
        assert pop.rset().startswith(b"+OK")
        assert pop.stat()[0] == 3
        assert pop.dele(1).startswith(b"+OK")
        assert pop.noop().startswith(b"+OK")
        assert pop.quit().startswith(b"+OK"), "quit"

        # the next session: numbers renumbered, unique ids kept
        pop = poplib.POP3("127.0.0.1", srv.ports["pop3port"], timeout=10)
        pop.user(USER)
        pop.pass_(PASSWORD)
        resp, after, _ = pop.uidl()
        assert [u.split()[1] for u in after] == [u.split()[1] for u in uidls[1:]], (after, uidls)
        pop.quit()

        # IMAP on the same backend: message 1 expunged, 2 and 3 \Seen
        imap = imaplib.IMAP4("127.0.0.1", srv.ports["port"])
        imap.login(USER, PASSWORD)
        typ, data = imap.select("INBOX")
        assert data == [b"2"], data
        typ, data = imap.fetch("1:2", "(FLAGS BODY.PEEK[])")
        assert typ == "OK" and b"\\Seen" in data[0][0] and b"\\Seen" in data[2][0], data
        assert data[0][1] == MESSAGES[1] and data[2][1] == MESSAGES[2], data
        imap.logout()
    finally:
        srv.stop()
    print("poplib: plaintext checks passed")


def tls_tests(server_bin, tmp):
    tls = os.path.join(tmp, "tls")
    subprocess.run([os.path.join(SRC, "cluster", "dev-ca"), tls], check=True,
                   stdout=subprocess.DEVNULL)
    ctx = ssl.create_default_context(cafile=os.path.join(tls, "ca.pem"))
    srv = MailTestServer(server_bin, USER, PASSWORD, write_messages(tmp, MESSAGES[:1]), tls=tls)
    try:
        pop = poplib.POP3("localhost", srv.ports["pop3port"], timeout=10)
        caps = pop.capa()
        assert "STLS" in caps and "USER" not in caps and "SASL" not in caps, caps
        try:
            pop.user(USER)
            raise AssertionError("USER before STLS was accepted")
        except poplib.error_proto as e:
            assert b"-ERR [AUTH]" in e.args[0], e
        assert pop.stls(context=ctx).startswith(b"+OK")
        caps = pop.capa()
        assert "STLS" not in caps and "USER" in caps, caps
        assert caps["SASL"] == ["PLAIN", "LOGIN", "SCRAM-SHA-256"], caps
        pop.user(USER)
        pop.pass_(PASSWORD)
        resp, lines, _ = pop.retr(1)
        assert joined(lines) == normalised(MESSAGES[0])
        pop.quit()

        # POP3S, and AUTH PLAIN by hand (poplib has no AUTH)
        pop = poplib.POP3_SSL("localhost", srv.ports["pop3sport"], context=ctx, timeout=10)
        assert "STLS" not in pop.capa()
        ir = base64.b64encode(b"\0" + USER.encode() + b"\0" + PASSWORD.encode()).decode()
        assert pop._shortcmd("AUTH PLAIN " + ir).startswith(b"+OK Logged in")
        assert pop.stat()[0] == 1
        pop.quit()
        pop = poplib.POP3_SSL("localhost", srv.ports["pop3sport"], context=ctx, timeout=10)
        bad = base64.b64encode(b"\0" + USER.encode() + b"\0wrong").decode()
        try:
            pop._shortcmd("AUTH PLAIN " + bad)
            raise AssertionError("AUTH PLAIN with a wrong password succeeded")
        except poplib.error_proto as e:
            assert b"-ERR [AUTH]" in e.args[0], e
        pop.quit()

        # injection: USER/PASS pipelined after STLS must never run
        raw = socket.create_connection(("127.0.0.1", srv.ports["pop3port"]), timeout=10)
        f = raw.makefile("rb")
        f.readline()
        raw.sendall(b"STLS\r\nUSER %s\r\nPASS %s\r\n" % (USER.encode(), PASSWORD.encode()))
        line = f.readline()
        assert line.startswith(b"+OK"), line
        conn = ctx.wrap_socket(raw, server_hostname="localhost")
        tf = conn.makefile("rb")
        conn.sendall(b"STAT\r\n")
        line = tf.readline()
        assert line == b"-ERR Not logged in\r\n", line
        conn.sendall(b"QUIT\r\n")
        tf.readline()
        conn.close()
    finally:
        srv.stop()
    print("poplib tls: STLS, POP3S, AUTH PLAIN and the STLS injection case passed")


def output_bound_test(server_bin, tmp):
    line = b"x" * 998 + b"\r\n"
    big = b"Subject: big\r\n\r\n" + line * (4 * 1024 * 1024 // len(line))
    srv = MailTestServer(server_bin, USER, PASSWORD, write_messages(tmp, [big, MESSAGES[2]]),
                         budget=6 * 1024 * 1024)
    socks = []
    try:
        port = srv.ports["pop3port"]
        base = srv.rss_kib()
        socks = never_reading(port, 19, b"USER %s\r\nPASS %s\r\nRETR 1\r\n"
                              % (USER.encode(), PASSWORD.encode()))
        grown = srv.rss_kib() - base
        print(f"output bound: 19 POP3 sessions not reading a 4 MiB RETR: "
              f"server RSS +{grown // 1024} MiB")
        assert grown < 100 * 1024, grown
        pop = poplib.POP3("127.0.0.1", port, timeout=10)  # the 20th from this address
        try:
            poplib.POP3("127.0.0.1", port, timeout=10)
            raise AssertionError("a 21st session from one address was let in")
        except poplib.error_proto as e:
            assert b"-ERR [SYS/TEMP] Too many connections" in e.args[0], e
        pop.user(USER)
        pop.pass_(PASSWORD)
        resp, lines, _ = pop.retr(2)
        assert joined(lines) == MESSAGES[2]
        pop.quit()
        busy = count_answered(socks, b"-ERR [SYS/TEMP] Server busy")
        print(f"output bound: {busy} of 19 RETRs told to retry by the 6 MiB body budget")
        assert busy >= 10, busy
    finally:
        for sk in socks:
            sk.close()
        srv.stop()


def main():
    server_bin = sys.argv[1]
    tmp = tempfile.mkdtemp(prefix="pop3-poplib-")
    try:
        plaintext_tests(server_bin, tmp)
        tls_tests(server_bin, tmp)
        output_bound_test(server_bin, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("pop3 poplib: 3 passed, 0 failed")


if __name__ == "__main__":
    main()
