#!/usr/bin/env python3
"""Drive the IMAP engine with Python's imaplib (stdlib only).

Usage: test-imap-imaplib.py PATH-TO-mail-test-server

Starts the in-memory test server on a free port, logs in, lists, selects,
reads messages back byte for byte (8-bit bytes included) and header fields
as MUAs fetch them (BODY.PEEK[HEADER.FIELDS (...)]), stores flags,
expunges and logs out; then stops the server by PID and checks it exited
cleanly. Then over TLS (a development CA from cluster/dev-ca, verified):
LOGIN refused before STARTTLS (LOGINDISABLED, PRIVACYREQUIRED), STARTTLS,
IMAPS, and the STARTTLS injection case. Mailboxes the way MUAs manage them
(CREATE with special use, DELETE, RENAME, SUBSCRIBE, LIST/LSUB with and
without LIST-EXTENDED, STATUS, APPEND and MULTIAPPEND, NAMESPACE, ID, ENABLE
UTF8=ACCEPT with non-ASCII names), and COMPRESS=DEFLATE over IMAPS with a
zlib client written here (and a decompression bomb: server memory
measured)."""
import imaplib
import os
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
    b"From: a@example.test\r\nTo: demo@example.test,\r\n  other@example.test\r\n"
    b"Message-ID: <m1@example.test>\r\nSubject: hello\r\n\r\n"
    b"Hello from imaplib.\r\nSubject: not a header\r\n",
    b"Subject: 8bit\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    + bytes(range(1, 256)).replace(b"\r", b"").replace(b"\n", b"") + b"\r\n",
]


def main():
    server_bin = sys.argv[1]
    tmp = tempfile.mkdtemp(prefix="imap-imaplib-")
    srv = MailTestServer(server_bin, USER, PASSWORD, write_messages(tmp, MESSAGES))
    try:
        port = srv.ports["port"]

        imap = imaplib.IMAP4("127.0.0.1", port)
        assert "IMAP4REV1" in imap.capabilities, imap.capabilities
        try:
            imap.login(USER, "wrong")
            raise AssertionError("login with a wrong password succeeded")
        except imaplib.IMAP4.error as e:
            assert "AUTHENTICATIONFAILED" in str(e), e
        typ, _ = imap.login(USER, PASSWORD)
        assert typ == "OK"

        typ, boxes = imap.list()
        assert typ == "OK" and any(b"INBOX" in b for b in boxes), boxes

        typ, data = imap.select("INBOX")
        assert typ == "OK" and data == [str(len(MESSAGES)).encode()], data

        # header fields the way MUAs ask for them: the lines in message
        # order, then the blank line; PEEK leaves \Seen alone
        typ, data = imap.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT MESSAGE-ID)])")
        assert typ == "OK", data
        assert b"BODY[HEADER.FIELDS (SUBJECT MESSAGE-ID)]" in data[0][0], data
        assert data[0][1] == (b"Message-ID: <m1@example.test>\r\n"
                              b"Subject: hello\r\n\r\n"), data
        typ, data = imap.fetch("1", "(BODY.PEEK[HEADER.FIELDS.NOT (subject message-id)])")
        assert typ == "OK", data
        assert b"BODY[HEADER.FIELDS.NOT (SUBJECT MESSAGE-ID)]" in data[0][0], data
        assert data[0][1] == (b"From: a@example.test\r\nTo: demo@example.test,\r\n"
                              b"  other@example.test\r\n\r\n"), data
        typ, data = imap.fetch("1", "(FLAGS)")
        assert typ == "OK" and b"\\Seen" not in data[0], data
        typ, data = imap.fetch("2", "(BODY.PEEK[HEADER.FIELDS (FROM)])")
        assert typ == "OK" and data[0][1] == b"\r\n", data

        for i, body in enumerate(MESSAGES, start=1):
            typ, data = imap.fetch(str(i), "(BODY.PEEK[])")
            assert typ == "OK", data
            assert data[0][1] == body, (data[0][1], body)
            typ, data = imap.fetch(str(i), "(RFC822)")
            assert typ == "OK" and data[0][1] == body
            assert b"\\Seen" in data[0][0], data[0][0]

        typ, data = imap.uid("FETCH", "1:*", "(UID RFC822.SIZE)")
        assert typ == "OK", data
        sizes = [int(x.split(b"RFC822.SIZE ")[1].rstrip(b")")) for x in data]
        assert sizes == [len(m) for m in MESSAGES], sizes

        typ, data = imap.store("1", "+FLAGS", "(\\Deleted)")
        assert typ == "OK" and b"\\Deleted" in data[0], data
        typ, data = imap.expunge()
        assert typ == "OK" and data == [b"1"], data
        typ, data = imap.fetch("1", "(UID)")
        assert typ == "OK" and b"UID 2" in data[0], data

        try:
            imap.fetch("5", "(FLAGS)")
            raise AssertionError("FETCH of a missing message succeeded")
        except imaplib.IMAP4.error:
            pass
        typ, _ = imap.noop()
        assert typ == "OK"
        typ, _ = imap.close()
        assert typ == "OK"
        typ, _ = imap.logout()
        assert typ == "BYE"
    finally:
        srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print("imaplib: all checks passed")
    client_flow_test(server_bin)
    mailbox_tests(server_bin)
    tls_tests(server_bin)
    compress_tests(server_bin)
    output_bound_test(server_bin)


MULTIPART = (b"From: Ann <ann@example.test>\r\nTo: demo@example.test\r\n"
             b"Subject: report\r\nMIME-Version: 1.0\r\n"
             b"Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
             b"--b1\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
             b"--b1\r\nContent-Type: application/octet-stream\r\n"
             b"Content-Transfer-Encoding: base64\r\n\r\naGVsbG8gd29ybGQ=\r\n--b1--\r\n")


def client_flow_test(server_bin):
    """SEARCH, SORT, THREAD, FETCH of structure and sections, COPY, MOVE,
    UID EXPUNGE, and IDLE pushes, as a real client sees them: two imaplib
    sessions on one mailbox."""
    tmp = tempfile.mkdtemp(prefix="imap-flow-")
    msgs = MESSAGES + [MULTIPART]
    srv = MailTestServer(server_bin, USER, PASSWORD, write_messages(tmp, msgs))
    try:
        port = srv.ports["port"]
        a = imaplib.IMAP4("127.0.0.1", port)
        a.login(USER, PASSWORD)
        for cap in ("IDLE", "MOVE", "UIDPLUS", "ESEARCH", "SORT", "CONDSTORE", "QRESYNC"):
            assert cap in a.capabilities, (cap, a.capabilities)
        typ, data = a.select("INBOX")
        assert typ == "OK" and data == [b"3"], data

        # SEARCH: flags, headers, text, charset, sets; UID SEARCH
        typ, data = a.search(None, "ALL")
        assert typ == "OK" and data == [b"1 2 3"], data
        typ, data = a.search("UTF-8", "SUBJECT", "hello")
        assert data == [b"1"], data
        typ, data = a.search(None, "OR", "FROM", "ann", "TEXT", "imaplib")
        assert data == [b"1 3"], data
        typ, data = a.uid("SEARCH", "2:*", "NOT", "SEEN")
        assert data == [b"2 3"], data
        typ, data = a.search("KOI8-R", "ALL")
        assert typ == "NO" and data[0].startswith(b"[BADCHARSET (US-ASCII UTF-8)]"), data
        typ, data = a.sort("(REVERSE SUBJECT)", "UTF-8", "ALL")
        assert typ == "OK" and data == [b"3 1 2"], data
        typ, data = a.thread("ORDEREDSUBJECT", "UTF-8", "ALL")
        assert typ == "OK" and data == [b"(1)(2)(3)"], data

        # FETCH: the stored structure, sections of a multipart, BINARY
        typ, data = a.fetch("3", "(ENVELOPE BODYSTRUCTURE)")
        assert typ == "OK", data
        assert b'ENVELOPE (NIL "report" (("Ann" NIL "ann" "example.test"))' in data[0], data
        assert b'"MIXED" ("BOUNDARY" "b1")' in data[0], data
        typ, data = a.fetch("3", "(BODY.PEEK[1] BODY.PEEK[2.MIME] BINARY.PEEK[2])")
        assert typ == "OK", data
        assert data[0][1] == b"see attached", data
        assert data[1][1].startswith(b"Content-Type: application/octet-stream"), data
        assert data[2][1] == b"hello world", data
        typ, data = a.fetch("1", "(BODY.PEEK[]<0.4>)")
        assert data[0][1] == b"From", data

        # COPY and MOVE with UIDPLUS; TRYCREATE
        typ, _ = a.create("Archive")
        assert typ == "OK"
        typ, data = a.copy("1:2", "Archive")
        assert typ == "OK" and data[0].startswith(b"[COPYUID "), data
        typ, data = a.copy("1", "Nowhere")
        assert typ == "NO" and data[0].startswith(b"[TRYCREATE]"), data
        typ, data = a.uid("MOVE", "2", "Archive")
        assert typ == "OK", data
        assert a.untagged_responses.get("EXPUNGE") == [b"2"], a.untagged_responses
        typ, data = a.select("Archive")
        assert data == [b"3"], data
        typ, _ = a.uid("STORE", "1:2", "+FLAGS.SILENT", "(\\Deleted)")
        typ, data = a.uid("EXPUNGE", "2")
        assert typ == "OK" and a.untagged_responses.get("EXPUNGE") == [b"2"], data
        typ, data = a.select("INBOX")
        assert data == [b"2"], data

        # IDLE: another session's changes arrive without a command
        b = imaplib.IMAP4("127.0.0.1", port)
        b.login(USER, PASSWORD)
        b.select("INBOX")
        a.send(b"I1 IDLE\r\n")
        assert a.readline().startswith(b"+ "), "no continuation for IDLE"
        b.store("1", "+FLAGS", "(\\Flagged)")
        line = a.readline()
        assert line.startswith(b"* 1 FETCH (FLAGS (") and b"\\Flagged" in line, line
        b.copy("2", "INBOX")
        assert a.readline() == b"* 3 EXISTS\r\n"
        a.send(b"DONE\r\n")
        line = a.readline()
        assert line.startswith(b"I1 OK"), line
        # NOOP tells the rest; numbering stays right
        b.store("1", "+FLAGS.SILENT", "(\\Deleted)")
        b.expunge()
        typ, data = a.noop()
        assert a.untagged_responses.get("EXPUNGE") == [b"1"], a.untagged_responses
        typ, data = a.fetch("2", "(UID)")
        assert b"UID 4" in data[0], data
        b.logout()
        a.logout()
    finally:
        srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print("imaplib: search, sort, thread, structure, sections, copy, move, idle passed")


def output_bound_test(server_bin):
    """Sessions that FETCH 8 x BINARY[1] of a 4 MiB base64 message (a
    section decoded in memory; raw sections stream from the store) and never read
    must not make the server queue 8 copies each: sections go out in
    chunks as the client reads. A normal client is served meanwhile, and
    the per-address session cap (20) turns the next one away."""
    tmp = tempfile.mkdtemp(prefix="imap-bound-")
    line = b"QUJD" * 19 + b"\r\n"
    big = (b"Subject: big\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           + line * (4 * 1024 * 1024 // len(line)))
    srv = MailTestServer(server_bin, USER, PASSWORD, write_messages(tmp, [big, MESSAGES[0]]),
                         budget=6 * 1024 * 1024)
    socks = []
    try:
        port = srv.ports["port"]
        base = srv.rss_kib()
        socks = never_reading(port, 19, b'a LOGIN "%s" "%s"\r\nb SELECT INBOX\r\n'
                              b"c FETCH 1 (BINARY.PEEK[1] BINARY.PEEK[1] BINARY.PEEK[1] "
                              b"BINARY.PEEK[1] BINARY.PEEK[1] BINARY.PEEK[1] "
                              b"BINARY.PEEK[1] BINARY.PEEK[1])\r\n"
                              % (USER.encode(), PASSWORD.encode()))
        grown = srv.rss_kib() - base
        print(f"output bound: 19 sessions not reading 8 x 4 MiB: server RSS +{grown // 1024} MiB")
        # unbounded, each session would queue 32 MiB (608 MiB in all)
        assert grown < 300 * 1024, grown
        imap = imaplib.IMAP4("127.0.0.1", port)  # the 20th from this address
        try:
            imaplib.IMAP4("127.0.0.1", port)
            raise AssertionError("a 21st session from one address was let in")
        except imaplib.IMAP4.error as e:
            assert "Too many connections" in str(e), e
        imap.login(USER, PASSWORD)
        typ, data = imap.select("INBOX")
        assert typ == "OK", data
        typ, data = imap.fetch("2", "(BODY.PEEK[])")
        assert typ == "OK" and data[0][1] == MESSAGES[0], data
        imap.logout()
        # the body budget (6 MiB) held one 4 MiB body at a time: the other
        # sessions were told to come back (NO [UNAVAILABLE])
        busy = count_answered(socks, b"c NO [UNAVAILABLE]")
        print(f"output bound: {busy} of 19 FETCHes told to retry by the 6 MiB body budget")
        assert busy >= 10, busy
    finally:
        for sk in socks:
            sk.close()
        srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    stream_bound_test(server_bin)


def stream_bound_test(server_bin):
    """BODY[] of a 4 MiB message streams from the store in pieces: 19
    sessions asking for it 8 times and never reading hold about their
    output bound each (1 MiB plus a piece), not 32 MiB, and need no body
    budget (none is told to retry)."""
    tmp = tempfile.mkdtemp(prefix="imap-stream-")
    line = b"x" * 998 + b"\r\n"
    big = b"Subject: big\r\n\r\n" + line * (4 * 1024 * 1024 // len(line))
    srv = MailTestServer(server_bin, USER, PASSWORD, write_messages(tmp, [big]),
                         budget=6 * 1024 * 1024)
    socks = []
    try:
        base = srv.rss_kib()
        socks = never_reading(srv.ports["port"], 19,
                              b'a LOGIN "%s" "%s"\r\nb SELECT INBOX\r\n'
                              b"c FETCH 1 (BODY.PEEK[] BODY.PEEK[] BODY.PEEK[] BODY.PEEK[] "
                              b"BODY.PEEK[] BODY.PEEK[] BODY.PEEK[] BODY.PEEK[])\r\n"
                              % (USER.encode(), PASSWORD.encode()))
        grown = srv.rss_kib() - base
        print(f"stream bound: 19 sessions not reading 8 x 4 MiB BODY[]: "
              f"server RSS +{grown // 1024} MiB")
        assert grown < 150 * 1024, grown  # unbounded: 608 MiB
        busy = count_answered(socks, b"c NO [UNAVAILABLE]")
        assert busy == 0, busy
    finally:
        for sk in socks:
            sk.close()
        srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)


class ScramClient:
    """SCRAM-SHA-256 client steps for imaplib.authenticate (RFC 5802)."""

    def __init__(self, user, password):
        import base64
        import os as _os
        self.user, self.password = user, password
        self.nonce = base64.b64encode(_os.urandom(18)).decode()
        self.first_bare = f"n={user},r={self.nonce}"
        self.step = 0
        self.expect = None

    def __call__(self, challenge):
        import base64
        import hashlib
        import hmac
        self.step += 1
        if self.step == 1:
            return ("n,," + self.first_bare).encode()
        if self.step == 2:
            server_first = challenge.decode()
            attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
            assert attrs["r"].startswith(self.nonce)
            salt = base64.b64decode(attrs["s"])
            salted = hashlib.pbkdf2_hmac("sha256", self.password.encode(), salt, int(attrs["i"]))
            client_key = hmac.new(salted, b"Client Key", "sha256").digest()
            stored = hashlib.sha256(client_key).digest()
            without_proof = "c=biws,r=" + attrs["r"]
            auth_msg = ",".join([self.first_bare, server_first, without_proof]).encode()
            sig = hmac.new(stored, auth_msg, "sha256").digest()
            proof = bytes(a ^ b for a, b in zip(client_key, sig))
            server_key = hmac.new(salted, b"Server Key", "sha256").digest()
            self.expect = base64.b64encode(hmac.new(server_key, auth_msg, "sha256").digest())
            return (without_proof + ",p=" + base64.b64encode(proof).decode()).encode()
        assert challenge == b"v=" + self.expect, (challenge, self.expect)
        return b""


def tls_tests(server_bin):
    tmp = tempfile.mkdtemp(prefix="imap-tls-")
    srv = None
    try:
        subprocess.run([os.path.join(SRC, "cluster", "dev-ca"), tmp], check=True)
        srv = MailTestServer(server_bin, USER, PASSWORD, [], tls=tmp)
        tls_port, port = srv.ports["tlsport"], srv.ports["port"]
        ctx = ssl.create_default_context(cafile=os.path.join(tmp, "ca.pem"))

        imap = imaplib.IMAP4("localhost", port)
        assert "STARTTLS" in imap.capabilities and "LOGINDISABLED" in imap.capabilities, \
            imap.capabilities
        try:
            imap.login(USER, PASSWORD)
            raise AssertionError("a plaintext LOGIN was accepted")
        except imaplib.IMAP4.error as e:
            assert "PRIVACYREQUIRED" in str(e), e
        typ, _ = imap.starttls(ssl_context=ctx)
        assert typ == "OK"
        assert "STARTTLS" not in imap.capabilities, imap.capabilities
        assert "LOGINDISABLED" not in imap.capabilities, imap.capabilities
        typ, _ = imap.login(USER, PASSWORD)
        assert typ == "OK"
        typ, _ = imap.select("INBOX")
        assert typ == "OK"
        imap.logout()

        imaps = imaplib.IMAP4_SSL("localhost", tls_port, ssl_context=ctx)
        assert "STARTTLS" not in imaps.capabilities, imaps.capabilities
        for mech in ("AUTH=PLAIN", "AUTH=LOGIN", "AUTH=SCRAM-SHA-256", "SASL-IR"):
            assert mech in imaps.capabilities, (mech, imaps.capabilities)
        typ, _ = imaps.login(USER, PASSWORD)
        assert typ == "OK"
        imaps.logout()

        # AUTHENTICATE PLAIN (SASL-IR: imaplib sends the initial response)
        imaps = imaplib.IMAP4_SSL("localhost", tls_port, ssl_context=ctx)
        typ, _ = imaps.authenticate("PLAIN", lambda _: b"\0" + USER.encode() + b"\0" +
                                    PASSWORD.encode())
        assert typ == "OK"
        imaps.logout()
        imaps = imaplib.IMAP4_SSL("localhost", tls_port, ssl_context=ctx)
        try:
            imaps.authenticate("PLAIN", lambda _: b"\0" + USER.encode() + b"\0wrong")
            raise AssertionError("AUTHENTICATE PLAIN with a wrong password succeeded")
        except imaplib.IMAP4.error as e:
            assert "AUTHENTICATIONFAILED" in str(e), e
        imaps.logout()
        # AUTHENTICATE LOGIN: two challenges
        answers = iter([USER.encode(), PASSWORD.encode()])
        imaps = imaplib.IMAP4_SSL("localhost", tls_port, ssl_context=ctx)
        typ, _ = imaps.authenticate("LOGIN", lambda _: next(answers))
        assert typ == "OK"
        imaps.logout()
        # SCRAM-SHA-256, client written here from RFC 5802
        imaps = imaplib.IMAP4_SSL("localhost", tls_port, ssl_context=ctx)
        typ, _ = imaps.authenticate("SCRAM-SHA-256", ScramClient(USER, PASSWORD))
        assert typ == "OK"
        imaps.logout()
        imaps = imaplib.IMAP4_SSL("localhost", tls_port, ssl_context=ctx)
        try:
            imaps.authenticate("SCRAM-SHA-256", ScramClient(USER, "wrong"))
            raise AssertionError("SCRAM with a wrong password succeeded")
        except imaplib.IMAP4.error as e:
            assert "AUTHENTICATIONFAILED" in str(e), e
        imaps.logout()

        # injection: a LOGIN pipelined after STARTTLS must never run
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        f = raw.makefile("rb")
        f.readline()
        raw.sendall(b"a STARTTLS\r\nb LOGIN \"%s\" \"%s\"\r\n" %
                    (USER.encode(), PASSWORD.encode()))
        line = f.readline()
        assert line.startswith(b"a OK"), line
        tls = ctx.wrap_socket(raw, server_hostname="localhost")
        tf = tls.makefile("rb")
        tls.sendall(b"c SELECT INBOX\r\n")
        line = tf.readline()
        # not logged in: the injected LOGIN did not run
        assert line.startswith(b"c BAD") and b"Not authenticated" in line, line
        # SASL-IR: the initial response on the command line
        import base64
        ir = base64.b64encode(b"\0" + USER.encode() + b"\0" + PASSWORD.encode())
        tls.sendall(b"e AUTHENTICATE PLAIN " + ir + b"\r\n")
        line = tf.readline()
        assert line.startswith(b"e OK"), line
        tls.sendall(b"d LOGOUT\r\n")
        tf.readline()
        tls.close()
        print("imap tls: 3 passed, 0 failed; AUTHENTICATE PLAIN, LOGIN, SCRAM-SHA-256 passed")
    finally:
        if srv is not None:
            srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def mutf7(name):
    """name in modified UTF-7 (RFC 3501 5.1.3), written here from the RFC."""
    import base64
    out, run = [], []

    def flush():
        if run:
            b64 = base64.b64encode("".join(run).encode("utf-16-be")).decode()
            out.append("&" + b64.rstrip("=").replace("/", ",") + "-")
            run.clear()
    for ch in name:
        if 0x20 <= ord(ch) <= 0x7e:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            run.append(ch)
    flush()
    return "".join(out)


def mailbox_tests(server_bin):
    tmp = tempfile.mkdtemp(prefix="imap-mbox-")
    srv = MailTestServer(server_bin, USER, PASSWORD, write_messages(tmp, MESSAGES))
    try:
        imap = imaplib.IMAP4("127.0.0.1", srv.ports["port"])
        for cap in ("IMAP4REV2", "NAMESPACE", "ID", "ENABLE", "LIST-EXTENDED", "LIST-STATUS",
                    "SPECIAL-USE", "CREATE-SPECIAL-USE", "CHILDREN", "MULTIAPPEND",
                    "UTF8=ACCEPT", "COMPRESS=DEFLATE", "STATUS=SIZE"):
            assert cap in imap.capabilities, (cap, imap.capabilities)
        assert any(c.startswith("APPENDLIMIT=") for c in imap.capabilities), imap.capabilities
        # ID before login (RFC 2971)
        typ, _ = imap.xatom("ID", '("name" "imaplib" "version" "3")')
        assert typ == "OK", typ
        typ, data = imap.response("ID")
        assert data and b'"name" "mail-platform"' in data[0], data
        imap.login(USER, PASSWORD)

        typ, data = imap.namespace()
        assert typ == "OK" and data == [b'(("" "/")) NIL NIL'], data

        # CREATE, with special use and a hierarchy
        assert imap.create("Work")[0] == "OK"
        assert imap.create("Work/2026/Q1")[0] == "OK"
        assert imap.create("Sent (USE (\\Sent))")[0] == "OK"
        typ, data = imap.create("Work")
        assert typ == "NO" and b"ALREADYEXISTS" in data[0], data
        typ, data = imap.list('""', "*")
        assert typ == "OK", data
        names = {d.rsplit(b' "/" ', 1)[1]: d for d in data}
        assert set(names) == {b"INBOX", b"Work", b"Work/2026", b"Work/2026/Q1", b"Sent"}, names
        assert b"\\HasChildren" in names[b"Work"] and b"\\Sent" in names[b"Sent"], names
        typ, data = imap.list("Work/", "%")
        assert data == [b'(\\HasChildren) "/" Work/2026'], data
        typ, data = imap.list('""', '""')
        assert data == [b'(\\Noselect) "/" ""'], data

        # DELETE: children first; INBOX never
        typ, data = imap.delete("Work/2026")
        assert typ == "NO" and b"HASCHILDREN" in data[0], data
        typ, data = imap.delete("INBOX")
        assert typ == "NO", data
        typ, data = imap.delete("nosuch")
        assert typ == "NO" and b"NONEXISTENT" in data[0], data
        assert imap.delete("Work/2026/Q1")[0] == "OK"

        # RENAME moves children
        assert imap.rename("Work", "Projects")[0] == "OK"
        typ, data = imap.list('""', "Projects*")
        assert [d.rsplit(b" ", 1)[1] for d in data] == [b"Projects", b"Projects/2026"], data
        typ, data = imap.rename("nosuch", "x")
        assert typ == "NO" and b"NONEXISTENT" in data[0], data

        # SUBSCRIBE / LSUB / LIST (SUBSCRIBED)
        assert imap.subscribe("Projects/2026")[0] == "OK"
        assert imap.subscribe("Gone")[0] == "OK"
        typ, data = imap.lsub('""', "*")
        assert sorted(data) == [b'() "/" Gone', b'() "/" Projects/2026'], data
        typ, data = imap.lsub('""', "%")
        assert b'(\\Noselect) "/" Projects' in data, data
        typ, data = imap._simple_command("LIST", "(SUBSCRIBED)", '""', "*")
        typ, data = imap._untagged_response(typ, data, "LIST")
        assert b'(\\NonExistent \\HasNoChildren \\Subscribed) "/" Gone' in data, data
        assert imap.unsubscribe("Gone")[0] == "OK"

        # APPEND (flags, date), STATUS, MULTIAPPEND
        date = imaplib.Time2Internaldate(1700000000)
        typ, data = imap.append("Sent", "(\\Seen)", date, MESSAGES[0])
        assert typ == "OK" and b"APPENDUID" in data[0], data
        typ, data = imap.append("nosuch", None, None, MESSAGES[0])
        assert typ == "NO" and b"TRYCREATE" in data[0], data
        typ, data = imap.status("Sent", "(MESSAGES UNSEEN UIDNEXT SIZE)")
        assert typ == "OK", data
        assert data[0] == b"Sent (MESSAGES 1 UIDNEXT 2 UNSEEN 0 SIZE %d)" % len(MESSAGES[0]), data
        typ, data = imap.status("INBOX", "(MESSAGES)")
        assert data == [b"INBOX (MESSAGES %d)" % len(MESSAGES)], data
        tag = imap._new_tag().decode()
        m1, m2 = MESSAGES
        imap.send(b"%s APPEND Sent {%d+}\r\n%s (\\Draft) {%d+}\r\n%s\r\n" %
                  (tag.encode(), len(m1), m1, len(m2), m2))
        while True:
            line = imap.readline()
            if line.startswith(tag.encode()):
                break
        assert b"OK [APPENDUID" in line and b" 2:3]" in line, line
        typ, data = imap.status("Sent", "(MESSAGES)")
        assert data == [b"Sent (MESSAGES 3)"], data
        typ, data = imap.select("Sent")
        typ, data = imap.fetch("2", "(FLAGS BODY.PEEK[])")
        assert typ == "OK" and data[0][1] == m1, data
        typ, data = imap.fetch("3", "(FLAGS BODY.PEEK[])")
        assert typ == "OK" and data[0][1] == m2 and b"\\Draft" in data[0][0], data
        imap.close()

        # LIST-STATUS (RFC 5819)
        typ, data = imap._simple_command("LIST", '""', "%", "RETURN", "(STATUS (MESSAGES))")
        typ, data = imap._untagged_response(typ, data, "STATUS")
        assert b"Sent (MESSAGES 3)" in data, data

        # modified UTF-7 names, then UTF-8 after ENABLE UTF8=ACCEPT
        name = "Entw\u00fcrfe/\u65e5\u672c\u8a9e & co"
        assert imap.create('"%s"' % mutf7(name))[0] == "OK"
        typ, data = imap.list('""', "Entw*")
        assert data[-1].endswith(b'"' + mutf7(name).encode() + b'"'), data
        typ, data = imap.enable("UTF8=ACCEPT")
        assert typ == "OK", data
        typ, data = imap.list('""', "Entw*")
        assert data[-1].endswith(b'"' + name.encode() + b'"'), data
        assert imap.create("\u00dcbersicht")[0] == "OK"
        typ, data = imap.status("\u00dcbersicht", "(MESSAGES)")
        assert typ == "OK" and data == ['"\u00dcbersicht" (MESSAGES 0)'.encode()], data
        imap.logout()
    finally:
        srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print("imaplib mailboxes: all checks passed")


class Deflated:
    """One IMAP connection under COMPRESS=DEFLATE (RFC 4978): raw deflate
    both ways over a socket (plain or TLS)."""

    def __init__(self, sock):
        import zlib
        self.sock = sock
        self.z_out = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.z_in = zlib.decompressobj(-15)
        self.buf = b""

    def send(self, data, flush=True):
        import zlib
        out = self.z_out.compress(data)
        if flush:
            out += self.z_out.flush(zlib.Z_SYNC_FLUSH)
        if out:
            self.sock.sendall(out)

    def until(self, prefix):
        """Lines up to and including the first that starts with prefix."""
        while True:
            pos = 0
            while True:
                nl = self.buf.find(b"\r\n", pos)
                if nl < 0:
                    break
                if self.buf.startswith(prefix, pos):
                    out, self.buf = self.buf[:nl + 2], self.buf[nl + 2:]
                    return out
                pos = nl + 2
            data = self.sock.recv(65536)
            assert data, "connection closed"
            self.buf += self.z_in.decompress(data)


def plain_until(f, prefix):
    out = b""
    while True:
        line = f.readline()
        assert line, "connection closed"
        out += line
        if line.startswith(prefix):
            return out


def compress_tests(server_bin):
    """COMPRESS over IMAPS (TLS below, deflate above), and a bomb on the
    plain port: 256 MiB inflated from about a quarter MiB must not show in
    the server's memory."""
    import time
    import zlib
    tmp = tempfile.mkdtemp(prefix="imap-compress-")
    srv = None
    try:
        subprocess.run([os.path.join(SRC, "cluster", "dev-ca"), tmp], check=True)
        srv = MailTestServer(server_bin, USER, PASSWORD, write_messages(tmp, MESSAGES), tls=tmp)
        ctx = ssl.create_default_context(cafile=os.path.join(tmp, "ca.pem"))
        raw = socket.create_connection(("127.0.0.1", srv.ports["tlsport"]), timeout=20)
        tls = ctx.wrap_socket(raw, server_hostname="localhost")
        f = tls.makefile("rb")
        plain_until(f, b"* OK")
        tls.sendall(b'a LOGIN "%s" "%s"\r\n' % (USER.encode(), PASSWORD.encode()))
        assert b"a OK" in plain_until(f, b"a ")
        tls.sendall(b"b COMPRESS DEFLATE\r\n")
        assert plain_until(f, b"b ") == b"b OK DEFLATE active\r\n"
        z = Deflated(tls)
        z.send(b"c SELECT INBOX\r\n")
        assert b"c OK" in z.until(b"c ")
        z.send(b"d FETCH 2 BODY.PEEK[]\r\n")
        out = z.until(b"d ")
        assert MESSAGES[1] in out and b"d OK" in out, out[:200]
        big = b"Subject: zipped\r\n\r\n" + b"0123456789abcdef" * 65536
        z.send(b"e APPEND INBOX {%d+}\r\n" % len(big), flush=False)
        z.send(big, flush=False)
        z.send(b"\r\n")
        assert b"e OK [APPENDUID" in z.until(b"e ")
        z.send(b"e2 SELECT INBOX\r\n")
        assert b"e2 OK" in z.until(b"e2 ")
        z.send(b"f FETCH 3 BODY.PEEK[]\r\n")
        assert big in z.until(b"f ")
        z.send(b"g COMPRESS DEFLATE\r\n")
        assert b"g NO [COMPRESSIONACTIVE]" in z.until(b"g ")
        z.send(b"h LOGOUT\r\n")
        assert b"* BYE" in z.until(b"h ")
        tls.close()

        srv.stop()
        srv = None

        # the bomb: one overlong line of 256 MiB, then a NOOP (plaintext
        # logins on loopback: a server without TLS)
        srv = MailTestServer(server_bin, USER, PASSWORD, [])
        sock = socket.create_connection(("127.0.0.1", srv.ports["port"]), timeout=120)
        f = sock.makefile("rb")
        plain_until(f, b"* OK")
        sock.sendall(b'a LOGIN "%s" "%s"\r\nb COMPRESS DEFLATE\r\n' %
                     (USER.encode(), PASSWORD.encode()))
        assert plain_until(f, b"b ").endswith(b"b OK DEFLATE active\r\n")
        base = srv.rss_kib()
        z = Deflated(sock)
        chunk = b"x" * (1 << 20)
        start = time.monotonic()
        z.send(b"c NOOP ", flush=False)
        for _ in range(256):
            z.send(chunk, flush=False)
        z.send(b"\r\nd NOOP\r\n")
        out = z.until(b"d ")
        took = time.monotonic() - start
        assert b"c BAD Line too long" in out and b"d OK" in out, out
        grown = srv.rss_kib() - base
        print(f"compress bomb: 256 MiB inflated in {took:.2f} s, server RSS +{grown} KiB")
        with open(server_bin, "rb") as f:
            sanitized = b"__asan_init" in f.read()
        # ASan's quarantine keeps freed memory: the bound holds for real builds
        assert sanitized or grown < 32 * 1024, grown
        sock.close()
        print("imap compress: TLS + DEFLATE and the bomb passed")
    finally:
        if srv is not None:
            srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
