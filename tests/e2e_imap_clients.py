#!/usr/bin/env python3
"""End-to-end: real mail clients against a real local cluster (issue 9,
"Real clients in the suite"), or against a scratch Dovecot.

  python3 tests/e2e_imap_clients.py                   # our cluster
  python3 tests/e2e_imap_clients.py --against-dovecot # a tuned scratch Dovecot
  python3 tests/e2e_imap_clients.py -k curl,mbsync    # cases whose name has one of these
  python3 tests/e2e_imap_clients.py --strict          # pending cases count too

Clients: Python's imaplib (every command: LOGIN, CAPABILITY, LIST, SELECT,
EXAMINE, FETCH with sections, STORE, EXPUNGE, APPEND, CREATE, DELETE,
RENAME, SUBSCRIBE/LSUB, STATUS, SEARCH, COPY, MOVE, UID commands, IDLE over
a raw socket, on the same frontend and across two frontends, STARTTLS and
implicit TLS), poplib (STAT, LIST, UIDL, RETR,
TOP, DELE over STLS and POP3S), curl's imap:// and pop3:// (LIST, FETCH by
UID, SEARCH, STORE, EXPUNGE, RETR, DELE; --ssl-reqd --cacert), mbsync
(isync: both ways, messages and flags), fetchmail (POP3 over STLS and
POP3S) and mutt (reads a message over IMAP with STARTTLS, flags it; driven
through a pseudo-terminal with `push`). Every case creates its own user,
delivers its mail the way mail arrives (SMTP to our MX; dovecot-lda for
Dovecot) and asserts what the user sees: the message arrived, the flag
synced, the search found it, the message left.

Every case counts, on our cluster as against Dovecot. (A case names the
features it needs; MAIL_IMAP_PENDING="FEATURE,..." marks features as not
implemented yet, for work on a branch: their cases then run and a failure
is printed as "pending" and counted as skipped. Nothing is pending on
main: PENDING below is empty.)

A client program that is not installed skips its cases (cluster/local
installs them: isync, fetchmail, mutt, curl). Standard library only.
Exit 77 with --against-dovecot when Dovecot cannot run here (not root, not
installed).
"""
import argparse
import fcntl
import imaplib
import os
import poplib
import pty
import re
import select
import shutil
import signal
import smtplib
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import termios
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "support"))
import e2e_harness  # noqa: E402
import dovecot  # noqa: E402
import extra_frontend  # noqa: E402

DOMAIN = "example.test"

# Features not implemented on this branch (see the module docstring).
PENDING = set()


def pending_features():
    env = os.environ.get("MAIL_IMAP_PENDING")
    if env is None:
        return set(PENDING)
    return {f.strip().upper() for f in env.split(",") if f.strip()}


class Skip(Exception):
    """A case that cannot run here (a client program is missing)."""


def need_program(name):
    if shutil.which(name) is None:
        raise Skip(f"{name} is not installed (apt-get install "
                   f"{ {'mbsync': 'isync'}.get(name, name) })")


def make_message(to, subject, body="hello from the test", sender="Alice Sender <alice@remote.test>",
                 extra=(), attachment=None):
    """A message as bytes (CRLF). attachment: bytes, makes it
    multipart/mixed with a text part and a base64 application/octet-stream."""
    import base64
    head = [f"From: {sender}", f"To: <{to}>", f"Subject: {subject}",
            "Date: Mon, 7 Dec 2026 10:00:00 +0000",
            f"Message-ID: <{re.sub(r'[^A-Za-z0-9]', '-', subject)}.{time.time_ns()}@remote.test>",
            "MIME-Version: 1.0", *extra]
    if attachment is None:
        head.append("Content-Type: text/plain; charset=us-ascii")
        return ("\r\n".join(head) + "\r\n\r\n" + body + "\r\n").encode()
    b = "=_boundary_e2e_42"
    head.append(f'Content-Type: multipart/mixed; boundary="{b}"')
    enc = base64.b64encode(attachment).decode()
    parts = [f"--{b}", "Content-Type: text/plain; charset=us-ascii", "", body,
             f"--{b}", 'Content-Type: application/octet-stream; name="data.bin"',
             "Content-Transfer-Encoding: base64",
             'Content-Disposition: attachment; filename="data.bin"', "", enc, f"--{b}--", ""]
    return ("\r\n".join(head) + "\r\n\r\n" + "\r\n".join(parts)).encode()


def account_of(case):
    """The user (and password) of a case: its own, so cases share nothing."""
    return f"{case.replace('_', '-')}@{DOMAIN}", f"pw-{case}"


# ---- the servers under test ------------------------------------------------------

class Target:
    """What a case needs of a server: ports, the CA, users, delivery."""
    ours = False
    host = "localhost"   # mbsync and fetchmail do not accept IP SANs

    def ctx(self):
        return ssl.create_default_context(cafile=self.ca)

    def imap(self, user, pw, tls="starttls"):
        """A logged-in imaplib connection (tls: starttls, implicit, none)."""
        if tls == "implicit":
            m = imaplib.IMAP4_SSL(self.host, self.ports["imaps"], ssl_context=self.ctx(),
                                  timeout=30)
        else:
            m = imaplib.IMAP4(self.host, self.ports["imap"], timeout=30)
            if tls == "starttls":
                m.starttls(ssl_context=self.ctx())
        m.login(user, pw)
        return m

    def count(self, user, pw, box="INBOX"):
        m = self.imap(user, pw, tls="none")
        try:
            typ, data = m.select(box, readonly=True)
            assert typ == "OK", (typ, data)
            return int(data[0])
        finally:
            m.logout()

    def deliver(self, user, pw, msgs, timeout=30):
        """Deliver msgs (bytes each) to user's INBOX and wait until they are
        all there."""
        before = self.count(user, pw)
        for msg in msgs:
            self.deliver_one(user, msg)
        deadline = time.monotonic() + timeout
        while True:
            n = self.count(user, pw)
            if n >= before + len(msgs):
                return n
            assert time.monotonic() < deadline, f"{n - before} of {len(msgs)} delivered"
            time.sleep(0.2)


class OurCluster(Target):
    ours = True
    name = "our cluster"

    def __init__(self, c):
        self.c = c
        self.ports = c.ports
        self.ca = os.path.join(c.tls_dir(), "ca.pem")
        self.n = 0

    def new_user(self, case):
        user, pw = account_of(case)
        self.c.mailctl("user", "add", user, stdin=pw + "\n")
        return user, pw

    def deliver_one(self, user, msg, port=None):
        s = smtplib.SMTP("127.0.0.1", port or self.ports["smtp"], timeout=30)
        try:
            s.ehlo("client.test")
            assert s.sendmail("alice@remote.test", [user], msg) == {}
        finally:
            s.quit()

    def deliver_elsewhere(self, user, msg):
        """Deliver through another frontend (frontend-2, started on first
        use), so the change crosses the cluster to the session's frontend."""
        if getattr(self, "fe2", None) is None:
            self.fe2 = extra_frontend.ExtraFrontend(self.c, "frontend-2")
        self.deliver_one(user, msg, port=self.fe2.ports["smtp"])

    def close(self):
        if getattr(self, "fe2", None) is not None:
            self.fe2.stop()
            self.fe2 = None


class DovecotTarget(Target):
    name = "Dovecot"

    def __init__(self, d):
        self.d = d
        self.ports = d.ports
        self.ca = d.ca_file

    def new_user(self, case):
        """Every case's user is in the passwd-file from the start (Dovecot
        may miss a second change of it within the same second)."""
        return account_of(case)

    def deliver_one(self, user, msg):
        r = subprocess.run(["/usr/lib/dovecot/dovecot-lda", "-c", self.d.conf, "-d", user,
                            "-f", "alice@remote.test"], input=msg, capture_output=True,
                           timeout=30)
        assert r.returncode == 0, (r.returncode, r.stderr)

    def deliver_elsewhere(self, user, msg):
        """One server: its local delivery agent is the "other" way in."""
        self.deliver_one(user, msg)

    def close(self):
        pass


# ---- helpers ------------------------------------------------------------------------

def fetch_map(m, seqset, items, uid=False):
    """{seq or uid: {"flags": [...], "raw": bytes of the response}} of a FETCH."""
    typ, data = (m.uid("FETCH", seqset, items) if uid else m.fetch(seqset, items))
    assert typ == "OK", (typ, data)
    out, cur = {}, None
    for item in data:
        if isinstance(item, tuple):
            head, lit = item[0], item[1]
        elif item is None or item == b")":
            continue
        else:
            head, lit = item, b""
        mo = re.match(rb"(\d+) \(", head)
        if mo:
            key = int(mo.group(1))
            if uid:
                mu = re.search(rb"UID (\d+)", head)
                key = int(mu.group(1)) if mu else key
            cur = out.setdefault(key, {"raw": b"", "flags": []})
            cur["raw"] += head + b"\n" + lit
            mf = re.search(rb"FLAGS \(([^)]*)\)", head)
            if mf:
                cur["flags"] = mf.group(1).decode().split()
        elif cur is not None:
            cur["raw"] += head + lit
    return out


def subjects(m, n):
    """[subject] of messages 1..n of the selected mailbox (BODY.PEEK)."""
    if n == 0:
        return []
    got = fetch_map(m, f"1:{n}", "(BODY.PEEK[HEADER])")
    out = []
    for k in sorted(got):
        mo = re.search(rb"\r\nSubject: ([^\r\n]*)", b"\r\n" + got[k]["raw"])
        out.append(mo.group(1).decode() if mo else "")
    return out


def search_ids(m, *criteria, uid=False):
    typ, data = m.uid("SEARCH", *criteria) if uid else m.search(None, *criteria)
    assert typ == "OK", (typ, data)
    return [int(x) for x in data[0].split()]


def curl(t, user, pw, url, *args, timeout=30):
    need_program("curl")
    argv = ["curl", "-sS", "--ssl-reqd", "--cacert", t.ca, "-u", f"{user}:{pw}",
            "--max-time", str(timeout), *args, url]
    r = subprocess.run(argv, capture_output=True, timeout=timeout + 10)
    assert r.returncode == 0, (argv, r.returncode, r.stderr.decode(errors="replace"))
    return r.stdout


class Tmp:
    def __enter__(self):
        self.dir = tempfile.mkdtemp(prefix="e2e-clients-")
        return self.dir

    def __exit__(self, *exc):
        shutil.rmtree(self.dir, ignore_errors=True)


# ---- imaplib ------------------------------------------------------------------------

def case_imaplib_basics(t, user, pw):
    """LOGIN over STARTTLS, CAPABILITY, LIST, SELECT sees the delivered mail,
    FETCH headers and sizes, NOOP, EXAMINE, CLOSE, LOGOUT."""
    t.deliver(user, pw, [make_message(user, "basics one"), make_message(user, "basics two")])
    m = t.imap(user, pw)
    typ, caps = m.capability()
    assert typ == "OK" and b"IMAP4REV1" in caps[0].upper(), caps
    typ, boxes = m.list()
    assert typ == "OK" and any(b" INBOX" in b or b'"INBOX"' in b for b in boxes), boxes
    typ, data = m.select("INBOX")
    assert typ == "OK" and data == [b"2"], data
    assert subjects(m, 2) == ["basics one", "basics two"]
    got = fetch_map(m, "1:2", "(UID FLAGS RFC822.SIZE INTERNALDATE)")
    assert all(b"RFC822.SIZE" in v["raw"] and b"INTERNALDATE" in v["raw"] for v in got.values())
    assert m.noop()[0] == "OK"
    typ, data = m.select("INBOX", readonly=True)  # EXAMINE
    assert typ == "OK" and data == [b"2"], data
    assert m.close()[0] == "OK"
    assert m.logout()[0] == "BYE"


def case_imaplib_fetch_sections(t, user, pw):
    """BODY.PEEK[] is the message as delivered, [TEXT] its body, a partial
    <0.20> its first 20 octets; BODY[] (not PEEK) sets \\Seen."""
    msg = make_message(user, "sections", body="line one of the body\r\nline two")
    t.deliver(user, pw, [msg])
    m = t.imap(user, pw)
    m.select("INBOX")
    full = fetch_map(m, "1", "(BODY.PEEK[])")[1]["raw"]
    assert b"Subject: sections" in full and b"line two" in full, full
    text = fetch_map(m, "1", "(BODY.PEEK[TEXT])")[1]["raw"]
    assert b"line one of the body" in text and b"Subject:" not in text, text
    part = fetch_map(m, "1", "(BODY.PEEK[]<0.20>)")[1]["raw"]
    assert b"BODY[]<0>" in part, part
    assert "\\Seen" not in fetch_map(m, "1", "(FLAGS)")[1]["flags"]
    fetch_map(m, "1", "(BODY[])")
    assert "\\Seen" in fetch_map(m, "1", "(FLAGS)")[1]["flags"]
    m.logout()


def case_imaplib_store_expunge(t, user, pw):
    """STORE and UID STORE flags (kept across sessions), \\Deleted +
    EXPUNGE removes exactly that message."""
    t.deliver(user, pw, [make_message(user, f"store {i}") for i in (1, 2, 3)])
    m = t.imap(user, pw)
    m.select("INBOX")
    typ, data = m.store("2", "+FLAGS", "(\\Flagged)")
    assert typ == "OK", data
    uid3 = [k for k in fetch_map(m, "1:*", "(UID)", uid=True)][-1]
    typ, data = m.uid("STORE", str(uid3), "+FLAGS", "(\\Answered)")
    assert typ == "OK", data
    m.logout()
    m = t.imap(user, pw)
    m.select("INBOX")
    flags = {k: v["flags"] for k, v in fetch_map(m, "1:3", "(FLAGS)").items()}
    assert "\\Flagged" in flags[2] and "\\Answered" in flags[3], flags
    assert "\\Flagged" not in flags[1], flags
    m.store("1", "+FLAGS", "(\\Deleted)")
    typ, data = m.expunge()
    assert typ == "OK" and data[0] == b"1", data
    typ, data = m.select("INBOX")
    assert data == [b"2"], data
    assert subjects(m, 2) == ["store 2", "store 3"]
    m.logout()


def case_imaplib_append(t, user, pw):
    """APPEND with flags and a date: the message is in the mailbox with its
    flags, its date and its bytes; APPENDUID names its UID (UIDPLUS)."""
    msg = make_message(user, "appended draft", body="saved by the client")
    m = t.imap(user, pw)
    date = imaplib.Time2Internaldate(time.mktime((2026, 3, 4, 5, 6, 7, 0, 0, -1)))
    typ, data = m.append("INBOX", "(\\Seen \\Draft)", date, msg)
    assert typ == "OK", data
    mo = re.search(rb"APPENDUID (\d+) (\d+)", data[0])
    assert mo, data
    typ, data = m.select("INBOX")
    assert data == [b"1"], data
    got = fetch_map(m, mo.group(2).decode(), "(FLAGS INTERNALDATE BODY.PEEK[])", uid=True)
    v = got[int(mo.group(2))]
    assert "\\Seen" in v["flags"] and "\\Draft" in v["flags"], v
    assert b"04-Mar-2026" in v["raw"], v["raw"][:200]
    assert msg in v["raw"], v["raw"]
    m.logout()


def case_imaplib_own_changes(t, user, pw):
    """A session's own APPEND into its selected mailbox is told before the
    tagged OK (* N EXISTS, RFC 3501 6.3.11), and its EXPUNGE as * n
    EXPUNGE; a change by another session in between is never lost: the
    next APPEND's EXISTS counts both, and both sessions end with the same
    UIDs."""
    a = t.imap(user, pw)
    b = t.imap(user, pw)
    typ, data = a.select("INBOX")
    assert data == [b"0"], data

    def append(m, subject):
        typ, data = m.append("INBOX", None, None, make_message(user, subject))
        assert typ == "OK", data
        typ, exists = m.response("EXISTS")
        return exists

    exists = append(a, "own 1")
    assert exists and exists[-1] == b"1", exists
    append(b, "other 2")
    exists = append(a, "own 3")
    assert exists and exists[-1] == b"3", exists
    typ, data = a.store("1", "+FLAGS", "(\\Deleted)")
    assert typ == "OK", data
    typ, data = a.expunge()
    assert typ == "OK" and data == [b"1"], data
    append(b, "other 4")
    typ, data = a.noop()
    typ, exists = a.response("EXISTS")
    assert exists and exists[-1] == b"3", exists
    typ, mine = a.uid("SEARCH", "ALL")
    b.select("INBOX")
    typ, theirs = b.uid("SEARCH", "ALL")
    assert mine == theirs and len(mine[0].split()) == 3, (mine, theirs)
    assert subjects(a, 3) == ["other 2", "own 3", "other 4"], subjects(a, 3)
    a.logout()
    b.logout()


def case_imaplib_fetch_many_bodies(t, user, pw):
    """One FETCH of many bodies, small and large (past the 64 KiB our
    store sends with the metadata, and one message over it), whole and by
    section, answers each message exactly as a FETCH of that message
    alone does, and as the message was delivered (APPEND here)."""
    m = t.imap(user, pw)
    msgs = [make_message(user, f"many {i}", body=("line %d " % i) * (200 + 40 * i))
            for i in range(24)]
    msgs.append(make_message(user, "big one", body="x" * 70, attachment=os.urandom(96 * 1024)))
    for msg in msgs:
        typ, data = m.append("INBOX", None, None, msg)
        assert typ == "OK", data
    typ, data = m.select("INBOX", readonly=True)
    assert data == [str(len(msgs)).encode()], data
    n = len(msgs)
    items = "(BODY.PEEK[] BODY.PEEK[TEXT] BODY.PEEK[1] BINARY.PEEK[1])"
    together = fetch_map(m, f"1:{n}", items)
    assert sorted(together) == list(range(1, n + 1)), sorted(together)
    for i in range(1, n + 1):
        alone = fetch_map(m, str(i), items)
        assert together[i]["raw"] == alone[i]["raw"], i
        assert msgs[i - 1] in together[i]["raw"], i
    m.logout()


def case_imaplib_mailboxes(t, user, pw):
    """CREATE (hierarchy "/"), LIST, RENAME, SUBSCRIBE/LSUB/UNSUBSCRIBE,
    DELETE; the special-use mailboxes exist."""
    m = t.imap(user, pw)
    typ, boxes = m.list()
    text = b"\n".join(boxes)
    for box in (b"Sent", b"Drafts", b"Trash"):
        assert box in text, text
    assert m.create("Projects")[0] == "OK"
    assert m.create("Projects/2026")[0] == "OK"
    typ, boxes = m.list('""', "Projects*")
    text = b"\n".join(boxes)
    assert b'"/"' in text and b"Projects/2026" in text, text
    assert m.rename("Projects/2026", "Projects/Old")[0] == "OK"
    typ, boxes = m.list('""', "Projects/*")
    assert b"Projects/Old" in b"\n".join(boxes) and b"2026" not in b"\n".join(boxes), boxes
    assert m.subscribe("Projects/Old")[0] == "OK"
    typ, subs = m.lsub('""', "*")
    assert b"Projects/Old" in b"\n".join(subs), subs
    assert m.unsubscribe("Projects/Old")[0] == "OK"
    typ, subs = m.lsub('""', "Projects*")
    assert b"Projects/Old" not in b"\n".join(x for x in subs if x), subs
    assert m.delete("Projects/Old")[0] == "OK"
    typ, boxes = m.list('""', "Projects*")
    assert b"Projects/Old" not in b"\n".join(x for x in boxes if x), boxes
    typ, data = m.select("Projects/Old")
    assert typ == "NO", (typ, data)
    m.logout()


def case_imaplib_status(t, user, pw):
    """STATUS counts what the mailbox holds and what is unseen."""
    t.deliver(user, pw, [make_message(user, f"status {i}") for i in (1, 2, 3)])
    m = t.imap(user, pw)
    m.select("INBOX")
    m.store("1", "+FLAGS", "(\\Seen)")
    m.close()
    typ, data = m.status("INBOX", "(MESSAGES UNSEEN UIDNEXT UIDVALIDITY)")
    assert typ == "OK", data
    mo = dict(re.findall(rb"(MESSAGES|UNSEEN|UIDNEXT|UIDVALIDITY) (\d+)", data[0]))
    assert mo[b"MESSAGES"] == b"3" and mo[b"UNSEEN"] == b"2", data
    assert int(mo[b"UIDNEXT"]) >= 4 and int(mo[b"UIDVALIDITY"]) > 0, data
    m.logout()


def case_imaplib_search(t, user, pw):
    """SEARCH by subject, sender, body text, flags, OR/NOT; UID SEARCH."""
    t.deliver(user, pw, [
        make_message(user, "apple pie", body="crust and apples"),
        make_message(user, "banana split", sender="Carol <carol@remote.test>",
                     body="three scoops"),
        make_message(user, "cherry tart", body="a unicorn ate it"),
    ])
    m = t.imap(user, pw)
    m.select("INBOX")
    m.store("1", "+FLAGS", "(\\Seen)")
    assert search_ids(m, "SUBJECT", "banana") == [2]
    assert search_ids(m, "FROM", "carol") == [2]
    assert search_ids(m, "BODY", "unicorn") == [3]
    assert search_ids(m, "TEXT", "scoops") == [2]
    assert search_ids(m, "UNSEEN") == [2, 3]
    assert search_ids(m, "OR", "SUBJECT", "apple", "SUBJECT", "cherry") == [1, 3]
    assert search_ids(m, "NOT", "SEEN") == [2, 3]
    assert search_ids(m, "SUBJECT", "durian") == []
    uids = sorted(fetch_map(m, "1:*", "(UID)", uid=True))
    assert search_ids(m, "ALL", uid=True) == uids
    assert search_ids(m, "SUBJECT", "cherry", uid=True) == [uids[2]]
    m.logout()


def case_imaplib_copy_move(t, user, pw):
    """COPY to Trash (COPYUID), UID MOVE to Archive: the messages are where
    the user put them, and gone from where MOVE took them."""
    t.deliver(user, pw, [make_message(user, "to copy"), make_message(user, "to move")])
    m = t.imap(user, pw)
    m.select("INBOX")
    typ, data = m.copy("1", "Trash")
    assert typ == "OK" and b"COPYUID" in data[0], data
    uids = sorted(fetch_map(m, "1:*", "(UID)", uid=True))
    typ, data = m.uid("MOVE", str(uids[1]), "Archive")
    assert typ == "OK", data
    typ, data = m.select("INBOX")
    assert data == [b"1"], data
    assert subjects(m, 1) == ["to copy"]
    typ, data = m.select("Trash")
    assert data == [b"1"] and subjects(m, 1) == ["to copy"], data
    typ, data = m.select("Archive")
    assert data == [b"1"] and subjects(m, 1) == ["to move"], data
    m.logout()


def case_imaplib_uid_expunge(t, user, pw):
    """UID EXPUNGE (UIDPLUS) removes only the named \\Deleted message."""
    t.deliver(user, pw, [make_message(user, f"uidx {i}") for i in (1, 2)])
    m = t.imap(user, pw)
    m.select("INBOX")
    m.store("1:2", "+FLAGS", "(\\Deleted)")
    uids = sorted(fetch_map(m, "1:*", "(UID)", uid=True))
    typ, data = m.uid("EXPUNGE", str(uids[1]))
    assert typ == "OK", data
    typ, data = m.select("INBOX")
    assert data == [b"1"] and subjects(m, 1) == ["uidx 1"], data
    m.logout()


def case_imaplib_envelope_bodystructure(t, user, pw):
    """ENVELOPE names the subject and the sender; BODYSTRUCTURE shows
    multipart/mixed with a text part and a base64 attachment; BODY[2] is the
    attachment, BODY[1] the text."""
    blob = bytes(range(256)) * 4
    t.deliver(user, pw, [make_message(user, "with attachment", body="see attached",
                                      attachment=blob)])
    m = t.imap(user, pw)
    m.select("INBOX")
    raw = fetch_map(m, "1", "(ENVELOPE BODYSTRUCTURE)")[1]["raw"]
    assert b'"with attachment"' in raw and b'"alice"' in raw and b'"remote.test"' in raw, raw
    up = raw.upper()
    assert b'"MIXED"' in up and b'"TEXT" "PLAIN"' in up and b'"BASE64"' in up, raw
    one = fetch_map(m, "1", "(BODY.PEEK[1])")[1]["raw"]
    assert b"see attached" in one, one
    import base64
    two = fetch_map(m, "1", "(BODY.PEEK[2])")[1]["raw"]
    lit = two.split(b"\n", 1)[1]
    assert base64.b64decode(re.sub(rb"\s", b"", lit.rstrip(b")"))) == blob
    m.logout()


def case_imaplib_header_fields(t, user, pw):
    """BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)]: what mail clients list
    messages with."""
    t.deliver(user, pw, [make_message(user, "header fields")])
    m = t.imap(user, pw)
    m.select("INBOX")
    raw = fetch_map(m, "1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)])")[1]["raw"]
    assert b"Subject: header fields" in raw and b"From:" in raw and b"To:" not in raw, raw
    m.logout()


def case_imaps_implicit(t, user, pw):
    """IMAPS (implicit TLS, the certificate verified for localhost)."""
    t.deliver(user, pw, [make_message(user, "over imaps")])
    m = t.imap(user, pw, tls="implicit")
    typ, data = m.select("INBOX")
    assert data == [b"1"] and subjects(m, 1) == ["over imaps"], data
    m.logout()


def idle_sees(t, user, pw, deliver, label):
    """IDLE (raw socket) on t's IMAP port; deliver(msg) meanwhile; the new
    message must show up as "* 2 EXISTS" (within 10 s: a functional bound,
    not a timing test; the latency is printed, benchmarks measure it), and
    DONE must end IDLE with a tagged OK."""
    t.deliver(user, pw, [make_message(user, "before idle")])
    s = socket.create_connection(("127.0.0.1", t.ports["imap"]), timeout=30)
    f = s.makefile("rb")

    def tagged(tag):
        lines = []
        while True:
            line = f.readline()
            assert line, "connection closed"
            lines.append(line)
            if line.startswith(tag + b" "):
                return lines
    f.readline()
    s.sendall(f'a LOGIN "{user}" "{pw}"\r\n'.encode())
    assert tagged(b"a")[-1].startswith(b"a OK")
    s.sendall(b"b SELECT INBOX\r\n")
    lines = tagged(b"b")
    assert lines[-1].startswith(b"b OK") and b"* 1 EXISTS\r\n" in lines, lines
    s.sendall(b"c IDLE\r\n")
    line = f.readline()
    assert line.startswith(b"+"), line
    t0 = time.monotonic()
    deliver(make_message(user, "during idle"))
    s.settimeout(10)
    while True:
        line = f.readline()
        assert line, "connection closed in IDLE"
        if line == b"* 2 EXISTS\r\n":
            break
    dt = time.monotonic() - t0
    s.settimeout(30)
    s.sendall(b"DONE\r\n")
    assert tagged(b"c")[-1].startswith(b"c OK")
    s.sendall(b"d LOGOUT\r\n")
    s.close()
    print(f"     IDLE: EXISTS {dt * 1000:.0f} ms after the delivery {label} started")


def case_imap_idle(t, user, pw):
    """IDLE: a message delivered meanwhile (same frontend) shows up as
    "* N EXISTS"; DONE ends IDLE with a tagged OK."""
    idle_sees(t, user, pw, lambda msg: t.deliver_one(user, msg), "(same frontend)")


def case_imap_idle_other_frontend(t, user, pw):
    """IDLE on frontend-1 sees a message delivered through frontend-2's MX
    (the change crosses the cluster: store -> the session's frontend).
    Dovecot: one server, the delivery through dovecot-lda."""
    idle_sees(t, user, pw, lambda msg: t.deliver_elsewhere(user, msg),
              "(through another frontend)")


# ---- poplib ------------------------------------------------------------------------

def pop_session(t, user, pw, implicit):
    if implicit:
        p = poplib.POP3_SSL(t.host, t.ports["pop3s"], context=t.ctx(), timeout=30)
    else:
        p = poplib.POP3(t.host, t.ports["pop3"], timeout=30)
        p.stls(context=t.ctx())
    p.user(user)
    p.pass_(pw)
    return p


def pop_case(t, user, pw, implicit):
    t.deliver(user, pw, [make_message(user, "pop one", body="first body"),
                         make_message(user, "pop two", body="second body")])
    p = pop_session(t, user, pw, implicit)
    n, size = p.stat()
    assert n == 2 and size > 0, (n, size)
    resp, listing, _ = p.list()
    assert len(listing) == 2, listing
    resp, uidls, _ = p.uidl()
    ids = [u.split()[1] for u in uidls]
    assert len(set(ids)) == 2, uidls
    resp, lines, _ = p.retr(1)
    assert b"Subject: pop one" in lines and b"first body" in lines, lines
    resp, lines, _ = p.top(2, 0)
    assert b"Subject: pop two" in lines and b"second body" not in lines, lines
    p.dele(1)
    p.quit()
    # the same UIDL for what is left; IMAP sees one message, the second
    p = pop_session(t, user, pw, not implicit)
    resp, uidls, _ = p.uidl()
    assert [u.split()[1] for u in uidls] == [ids[1]], (uidls, ids)
    p.quit()
    m = t.imap(user, pw)
    typ, data = m.select("INBOX")
    assert data == [b"1"] and subjects(m, 1) == ["pop two"], data
    m.logout()


def case_poplib_stls(t, user, pw):
    """POP3 with STLS: STAT, LIST, UIDL, RETR, TOP, DELE + QUIT; UIDLs stay,
    IMAP sees the deletion."""
    pop_case(t, user, pw, implicit=False)


def case_poplib_pop3s(t, user, pw):
    """The same over POP3S (implicit TLS)."""
    pop_case(t, user, pw, implicit=True)


# ---- curl ---------------------------------------------------------------------------

def case_curl_imap_list_fetch(t, user, pw):
    """curl imap://: LIST of the account, FETCH of a message by UID
    (STARTTLS required, the CA verified)."""
    t.deliver(user, pw, [make_message(user, "curl fetch", body="fetched by curl")])
    base = f"imap://localhost:{t.ports['imap']}"
    out = curl(t, user, pw, base + "/")
    assert b"INBOX" in out, out
    m = t.imap(user, pw)
    m.select("INBOX")
    uid = sorted(fetch_map(m, "1:*", "(UID)", uid=True))[0]
    m.logout()
    out = curl(t, user, pw, f"{base}/INBOX;UID={uid}")
    assert b"Subject: curl fetch" in out and b"fetched by curl" in out, out
    # over IMAPS too
    out = curl(t, user, pw, f"imaps://localhost:{t.ports['imaps']}/INBOX;UID={uid}")
    assert b"fetched by curl" in out, out


def case_curl_imap_store_expunge(t, user, pw):
    """curl -X 'STORE 1 +FLAGS (\\Deleted)' and -X EXPUNGE on imap://.../INBOX:
    the message is gone; -X 'UID FETCH 1:* (FLAGS)' shows the flags."""
    t.deliver(user, pw, [make_message(user, "curl keep"), make_message(user, "curl drop")])
    url = f"imap://localhost:{t.ports['imap']}/INBOX"
    curl(t, user, pw, url, "-X", "STORE 1 +FLAGS (\\Flagged)")
    out = curl(t, user, pw, url, "-X", "UID FETCH 1:* (FLAGS)")
    assert re.search(rb"\* 1 FETCH \(.*\\Flagged", out), out
    curl(t, user, pw, url, "-X", "STORE 2 +FLAGS (\\Deleted)")
    curl(t, user, pw, url, "-X", "EXPUNGE")
    m = t.imap(user, pw)
    typ, data = m.select("INBOX")
    assert data == [b"1"] and subjects(m, 1) == ["curl keep"], data
    assert "\\Flagged" in fetch_map(m, "1", "(FLAGS)")[1]["flags"]
    m.logout()


def case_curl_imap_search(t, user, pw):
    """curl imap://.../INBOX?SUBJECT%20banana and -X 'UID SEARCH ALL'."""
    t.deliver(user, pw, [make_message(user, "apple"), make_message(user, "banana")])
    url = f"imap://localhost:{t.ports['imap']}/INBOX"
    out = curl(t, user, pw, url + "?SUBJECT%20banana")
    assert re.search(rb"\* SEARCH 2\r?\n", out), out
    out = curl(t, user, pw, url, "-X", "UID SEARCH ALL")
    mo = re.search(rb"\* SEARCH ([\d ]+)", out)
    assert mo and len(mo.group(1).split()) == 2, out


def case_curl_pop3(t, user, pw):
    """curl pop3://: LIST, RETR of message 1, DELE (-X DELE -I): POP3 STAT
    then counts one."""
    t.deliver(user, pw, [make_message(user, "curl pop a", body="pop body a"),
                         make_message(user, "curl pop b")])
    base = f"pop3://localhost:{t.ports['pop3']}"
    out = curl(t, user, pw, base + "/")
    assert re.match(rb"1 \d+\r?\n2 \d+\r?\n", out), out
    out = curl(t, user, pw, base + "/1")
    assert b"Subject: curl pop a" in out and b"pop body a" in out, out
    curl(t, user, pw, base + "/1", "-X", "DELE", "-I")
    p = pop_session(t, user, pw, implicit=True)
    assert p.stat()[0] == 1
    resp, lines, _ = p.retr(1)
    assert b"Subject: curl pop b" in lines, lines
    p.quit()


# ---- mbsync -------------------------------------------------------------------------

MBSYNC_RC = """\
IMAPAccount acct
Host localhost
Port {port}
User {user}
Pass {pw}
SSLType STARTTLS
CertificateFile {ca}

IMAPStore far
Account acct

MaildirStore near
Path {dir}/mail/
Inbox {dir}/mail/INBOX
SubFolders Verbatim

Channel ch
Far :far:
Near :near:
Patterns INBOX
Create Near
Sync {sync}
SyncState *
"""


def mbsync(t, user, pw, d, sync, extra=""):
    need_program("mbsync")
    os.makedirs(os.path.join(d, "mail"), exist_ok=True)
    rc = os.path.join(d, "mbsyncrc")
    with open(rc, "w") as f:
        f.write(MBSYNC_RC.format(port=t.ports["imap"], user=user, pw=pw, ca=t.ca, dir=d,
                                 sync=sync) + extra)
    r = subprocess.run(["mbsync", "-c", rc, "-a"], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, HOME=d))
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)


def maildir_messages(d):
    """{subject: (path, flags)} of the local INBOX maildir."""
    out = {}
    for sub in ("cur", "new"):
        p = os.path.join(d, "mail", "INBOX", sub)
        for fn in os.listdir(p) if os.path.isdir(p) else []:
            with open(os.path.join(p, fn), "rb") as f:
                mo = re.search(rb"(?m)^Subject: ([^\r\n]*)", f.read())
            flags = fn.split(":2,", 1)[1] if ":2," in fn else ""
            out[mo.group(1).decode() if mo else fn] = (os.path.join(p, fn), flags)
    return out


def case_mbsync_pull(t, user, pw):
    """mbsync pulls the mailbox: both messages arrive in the local Maildir,
    with the flag set on the server (\\Flagged -> F)."""
    t.deliver(user, pw, [make_message(user, "sync one"), make_message(user, "sync two")])
    m = t.imap(user, pw)
    m.select("INBOX")
    m.store("2", "+FLAGS", "(\\Flagged)")
    m.logout()
    with Tmp() as d:
        mbsync(t, user, pw, d, "Pull")
        got = maildir_messages(d)
        assert set(got) == {"sync one", "sync two"}, got
        assert "F" in got["sync two"][1] and "F" not in got["sync one"][1], got


def case_mbsync_push_flags(t, user, pw):
    """mbsync both ways, flags: a message the user read (S) and one deleted
    (T) locally are \\Seen and gone on the server after the sync; a flag
    set on the server reaches the local copy."""
    t.deliver(user, pw, [make_message(user, f"flags {i}") for i in (1, 2, 3)])
    with Tmp() as d:
        mbsync(t, user, pw, d, "All")
        got = maildir_messages(d)
        assert set(got) == {"flags 1", "flags 2", "flags 3"}, got
        path, flags = got["flags 1"]
        base = path.split(":2,", 1)[0]
        cur = os.path.join(d, "mail", "INBOX", "cur", os.path.basename(base))
        os.rename(path, cur + ":2," + "".join(sorted(set(flags + "S"))))
        path, flags = got["flags 3"]
        base = path.split(":2,", 1)[0]
        cur = os.path.join(d, "mail", "INBOX", "cur", os.path.basename(base))
        os.rename(path, cur + ":2," + "".join(sorted(set(flags + "T"))))
        m = t.imap(user, pw)
        m.select("INBOX")
        m.store("2", "+FLAGS", "(\\Flagged)")
        m.logout()
        mbsync(t, user, pw, d, "All", extra="Expunge Both\n")
        m = t.imap(user, pw)
        typ, data = m.select("INBOX")
        assert data == [b"2"], data
        assert subjects(m, 2) == ["flags 1", "flags 2"]
        flags = {k: v["flags"] for k, v in fetch_map(m, "1:2", "(FLAGS)").items()}
        assert "\\Seen" in flags[1] and "\\Seen" not in flags[2], flags
        m.logout()
        got = maildir_messages(d)
        assert "F" in got["flags 2"][1] and "flags 3" not in got, got


def case_mbsync_push_new(t, user, pw):
    """mbsync pushes a message written locally (what a client saves to
    Sent or Drafts) to the server: APPEND."""
    t.deliver(user, pw, [make_message(user, "already there")])
    with Tmp() as d:
        mbsync(t, user, pw, d, "All")
        new = os.path.join(d, "mail", "INBOX", "new")
        with open(os.path.join(new, f"{int(time.time())}.local.e2e"), "wb") as f:
            f.write(make_message(user, "written locally", body="pushed by mbsync"))
        mbsync(t, user, pw, d, "All")
        m = t.imap(user, pw)
        typ, data = m.select("INBOX")
        assert data == [b"2"], data
        assert sorted(subjects(m, 2)) == ["already there", "written locally"]
        m.logout()


# ---- fetchmail -----------------------------------------------------------------------

def fetchmail(t, user, pw, implicit):
    need_program("fetchmail")
    t.deliver(user, pw, [make_message(user, "fetch one", body="fetchmail body"),
                         make_message(user, "fetch two")])
    with Tmp() as d:
        rc, out = os.path.join(d, "rc"), os.path.join(d, "out")
        port = t.ports["pop3s" if implicit else "pop3"]
        tls = "ssl" if implicit else "sslproto 'TLS1.2+'"
        with open(rc, "w") as f:
            f.write(f'poll localhost protocol pop3 port {port} user "{user}" there with '
                    f'password "{pw}" is "root" here fetchall {tls} sslcertck '
                    f'sslcertfile "{t.ca}" mda "cat >> {out}"\n')
        os.chmod(rc, 0o600)
        r = subprocess.run(["fetchmail", "-f", rc, "--nodetach", "-i", os.path.join(d, "ids"),
                            "--pidfile", os.path.join(d, "pid")], capture_output=True,
                           text=True, timeout=60, env=dict(os.environ, HOME=d))
        assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
        with open(out, "rb") as f:
            got = f.read()
    assert b"Subject: fetch one" in got and b"fetchmail body" in got, got
    assert b"Subject: fetch two" in got, got
    assert t.count(user, pw) == 0   # fetched without "keep": deleted


def case_fetchmail_pop3_stls(t, user, pw):
    """fetchmail downloads over POP3 with STLS (certificate checked) and
    deletes what it fetched."""
    fetchmail(t, user, pw, implicit=False)


def case_fetchmail_pop3s(t, user, pw):
    """The same over POP3S."""
    fetchmail(t, user, pw, implicit=True)


# ---- mutt ---------------------------------------------------------------------------

MUTT_RC = """\
set imap_user = "{user}"
set imap_pass = "{pw}"
set ssl_force_tls = yes
set ssl_starttls = yes
set ssl_ca_certificates_file = "{ca}"
set certificate_file = "{d}/certificates"
set header_cache = ""
set message_cachedir = ""
set imap_check_subscribed = no
set imap_passive = yes
set mail_check = 60
set timeout = 0
set wait_key = no
set quit = yes
set move = no
set delete = yes
set confirmappend = no
set beep = no
set sort = date
set folder = "imap://localhost:{port}/"
set spoolfile = "imap://localhost:{port}/INBOX"
set record = ""
set postponed = ""
"""


def run_mutt(d, rc, keys, timeout=40):
    """mutt -n -F rc -e 'push KEYS' on a pseudo-terminal (80x24, TERM=vt100);
    returns (exit status, what it drew)."""
    need_program("mutt")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = dict(os.environ, TERM="vt100", HOME=d, LANG="C.UTF-8", LC_ALL="C.UTF-8")
    p = subprocess.Popen(["mutt", "-n", "-F", rc, "-e", f"push '{keys}'"], stdin=slave,
                         stdout=slave, stderr=slave, env=env, start_new_session=True,
                         close_fds=True)
    os.close(slave)
    screen = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            r, _, _ = select.select([master], [], [], 0.2)
            if r:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    chunk = b""
                screen += chunk
                if not chunk and p.poll() is not None:
                    break
            elif p.poll() is not None:
                break
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            p.wait(5)
            drawn = re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b" ", screen)[-600:]
            raise AssertionError(f"mutt did not finish in {timeout} s; it drew: {drawn!r}")
        return p.returncode, screen
    finally:
        os.close(master)


def case_mutt_imap(t, user, pw):
    """mutt (batch, via push on a pseudo-terminal) opens the IMAP INBOX over
    STARTTLS, pipes the message it shows to a file (the user read it),
    flags it and syncs: the file holds the message, the server has
    \\Flagged."""
    t.deliver(user, pw, [make_message(user, "read in mutt", body="mutt can read this")])
    with Tmp() as d:
        rc = os.path.join(d, "muttrc")
        with open(rc, "w") as f:
            f.write(MUTT_RC.format(user=user, pw=pw, ca=t.ca, d=d, port=t.ports["imap"]))
        out = os.path.join(d, "piped")
        status, screen = run_mutt(
            d, rc, f"<pipe-message>cat > {out}<enter><flag-message><sync-mailbox><quit>")
        assert status == 0, (status, screen[-400:])
        with open(out, "rb") as f:
            got = f.read()
    assert b"Subject: read in mutt" in got and b"mutt can read this" in got, got
    m = t.imap(user, pw)
    m.select("INBOX")
    assert "\\Flagged" in fetch_map(m, "1", "(FLAGS)")[1]["flags"]
    m.logout()


# ---- the table ------------------------------------------------------------------------

# (name, function, features it needs that may be pending on our side)
CASES = [
    ("imaplib_basics", case_imaplib_basics, ()),
    ("imaplib_fetch_sections", case_imaplib_fetch_sections, ()),
    ("imaplib_store_expunge", case_imaplib_store_expunge, ()),
    ("imaps_implicit", case_imaps_implicit, ()),
    ("imaplib_append", case_imaplib_append, ("APPEND", "UIDPLUS")),
    ("imaplib_own_changes", case_imaplib_own_changes, ("APPEND",)),
    ("imaplib_fetch_many_bodies", case_imaplib_fetch_many_bodies, ("APPEND", "BINARY")),
    ("imaplib_mailboxes", case_imaplib_mailboxes, ("CREATE", "SUBSCRIBE", "SPECIAL-USE")),
    ("imaplib_status", case_imaplib_status, ("STATUS",)),
    ("imaplib_search", case_imaplib_search, ("SEARCH",)),
    ("imaplib_copy_move", case_imaplib_copy_move, ("COPY", "MOVE", "UIDPLUS", "SPECIAL-USE")),
    ("imaplib_uid_expunge", case_imaplib_uid_expunge, ("UIDPLUS",)),
    ("imaplib_envelope_bodystructure", case_imaplib_envelope_bodystructure,
     ("ENVELOPE", "BODYSTRUCTURE")),
    ("imaplib_header_fields", case_imaplib_header_fields, ("HEADER.FIELDS",)),
    ("imap_idle", case_imap_idle, ("IDLE",)),
    ("imap_idle_other_frontend", case_imap_idle_other_frontend, ("IDLE",)),
    ("poplib_stls", case_poplib_stls, ()),
    ("poplib_pop3s", case_poplib_pop3s, ()),
    ("curl_imap_list_fetch", case_curl_imap_list_fetch, ()),
    ("curl_imap_store_expunge", case_curl_imap_store_expunge, ()),
    ("curl_imap_search", case_curl_imap_search, ("SEARCH",)),
    ("curl_pop3", case_curl_pop3, ()),
    ("mbsync_pull", case_mbsync_pull, ()),
    ("mbsync_push_flags", case_mbsync_push_flags, ("CHECK",)),
    ("mbsync_push_new", case_mbsync_push_new, ("APPEND",)),
    ("fetchmail_pop3_stls", case_fetchmail_pop3_stls, ()),
    ("fetchmail_pop3s", case_fetchmail_pop3s, ()),
    ("mutt_imap", case_mutt_imap, ()),
]


def run_cases(t, selected, strict):
    pend = set() if (strict or not t.ours) else pending_features()
    passed, failed, skipped, pending, xpass = [], [], [], [], []
    for name, fn, needs in CASES:
        if selected and not any(s in name for s in selected):
            continue
        waiting = sorted(set(needs) & pend)
        try:
            user, pw = t.new_user(name)
            fn(t, user, pw)
        except Skip as e:
            skipped.append(name)
            print(f"SKIP {name}: {e}", flush=True)
        except Exception as e:
            if waiting:
                pending.append(name)
                first = (str(e) or type(e).__name__).splitlines()[0][:160]
                print(f"pending {name} (needs {', '.join(waiting)}): "
                      f"{type(e).__name__}: {first}", flush=True)
            else:
                failed.append(name)
                print(f"FAIL {name}\n{traceback.format_exc()}", flush=True)
        else:
            passed.append(name)
            if waiting:
                xpass.append(name)
                print(f"ok   {name} (now passes; was pending on {', '.join(waiting)})",
                      flush=True)
            else:
                print(f"ok   {name}", flush=True)
    print(f"\n{t.name}: {len(passed)} passed ({', '.join(passed) or '-'})")
    if pending:
        print(f"pending on the engine/store branches of issue 9: {', '.join(pending)}")
    if xpass:
        print(f"passing though marked pending (remove from PENDING?): {', '.join(xpass)}")
    if failed:
        print(f"failed: {', '.join(failed)}")
    return passed, failed, skipped + pending


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--against-dovecot", action="store_true",
                    help="run every case against a scratch tuned Dovecot instead")
    ap.add_argument("-k", default="", help="comma-separated substrings of case names")
    ap.add_argument("--strict", action="store_true",
                    default=os.environ.get("MAIL_IMAP_CLIENTS_STRICT") == "1",
                    help="pending cases count as failures")
    a = ap.parse_args()
    selected = [s for s in a.k.split(",") if s]
    if a.against_dovecot:
        why = dovecot.available()
        if why:
            print(f"SKIP: {why}")
            return 77
        d = dovecot.Dovecot(dict(account_of(name) for name, *_ in CASES))
        passed, failed, skipped = [], ["setup"], []
        try:
            d.start()
            passed, failed, skipped = run_cases(DovecotTarget(d), selected, a.strict)
        except Exception:
            traceback.print_exc()
        finally:
            if failed:
                print(f"--- dovecot log ---\n{d.log_tail(30)}")
            d.stop()
        tail = f", {len(skipped)} skipped" if skipped else ""
        print(f"{len(passed)} passed, {len(failed)} failed{tail}")
        return 1 if failed else 0

    def body(c, check):
        t = OurCluster(c)
        try:
            p, f, s = run_cases(t, selected, a.strict)
        finally:
            t.close()

        def failed_above(name):
            raise AssertionError(f"{name} failed (its traceback is above)")
        # the harness's closing line counts what run_cases found
        for name in p:
            check(name, lambda: None)
        for name in f:
            check(name, lambda name=name: failed_above(name))
        if s:
            print(f"({len(s)} skipped or pending, not counted below: {', '.join(s)})")
    return e2e_harness.run("imap-clients-e2e-", body, lease_ttl=3, stores=1, queues=1)


if __name__ == "__main__":
    sys.exit(main())
