#!/usr/bin/env python3
"""End-to-end: POP3 on a real local cluster, with Python's poplib.

Starts its own cluster on free 127.0.0.1 ports (etcd, store and queue
nodes, the frontend with its development CA under state/tls/), creates a
user with mailctl and checks:
  * a message delivered by SMTP (the MX) is read with poplib over STLS,
    verified against state/tls/ca.pem: the bytes read are the bytes sent;
  * POP3S (implicit TLS) sees the same maildrop with the same UIDL;
  * DELE + QUIT expunge the message: IMAP no longer finds it; a message an
    IMAP client marked \\Deleted (not expunged) is left as it was, and the
    message RETR sent got \\Seen;
  * a session that ends without QUIT deletes nothing;
  * the maildrop lock is cluster-wide: a second frontend's session holds
    it, this frontend answers -ERR [IN-USE]; kill -9 of that frontend
    frees it within its lease (--pop3-lock-ttl);
  * fetchmail (when installed) retrieves over POP3 with STLS and the dev
    CA, and deletes what it fetched.
Standard library only (fetchmail is an outside program, skipped when
missing).
"""
import imaplib
import os
import poplib
import shutil
import smtplib
import ssl
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import e2e_harness  # noqa: E402
from local import free_port  # noqa: E402

USER = "paula@example.test"
PASSWORD = "pop pass"


def make_message(subject, lines):
    head = ["From: Sender <sender@remote.test>", f"To: {USER}", f"Subject: {subject}",
            f"Message-ID: <{subject.replace(' ', '-')}@remote.test>", ""]
    return ("\r\n".join(head + lines) + "\r\n").encode()


def joined(lines):
    return b"".join(line + b"\r\n" for line in lines)


class Pop3E2E:
    def __init__(self, c):
        self.c = c
        self.p = c.ports
        self.ctx = ssl.create_default_context(cafile=os.path.join(c.tls_dir(), "ca.pem"))
        self.uidl = None

    def send(self, msg):
        s = smtplib.SMTP("127.0.0.1", self.p["smtp"], timeout=30)
        s.ehlo("client.test")
        assert s.sendmail("sender@remote.test", [USER], msg) == {}
        s.quit()

    def pop3s_retry(self, port=None, timeout=15):
        """Log in over POP3S, again while the maildrop is locked."""
        deadline = time.monotonic() + timeout
        while True:
            pop = poplib.POP3_SSL("127.0.0.1", port or self.p["pop3s"], context=self.ctx,
                                  timeout=30)
            pop.user(USER)
            try:
                pop.pass_(PASSWORD)
                return pop
            except poplib.error_proto as e:
                assert str(e).startswith("b'-ERR [IN-USE]"), e
                pop.close()
                assert time.monotonic() < deadline, "the maildrop lock stayed taken"
                time.sleep(0.1)

    def pop3s(self):
        pop = poplib.POP3_SSL("localhost", self.p["pop3s"], context=self.ctx, timeout=30)
        pop.user(USER)
        pop.pass_(PASSWORD)
        return pop

    def wait_count(self, n, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            pop = self.pop3s()
            count = pop.stat()[0]
            pop.quit()
            if count == n:
                return
            assert time.monotonic() < deadline, f"maildrop has {count} messages, want {n}"
            time.sleep(0.2)

    def pop3_tls_handshakes(self):
        """TLS handshakes the frontend's POP3 listeners logged so far."""
        with open(os.path.join(self.c.state, "log", "frontend-1.log"), errors="replace") as f:
            return sum(1 for line in f if "svc=pop3 event=tls " in line)

    def imap(self):
        m = imaplib.IMAP4_SSL("localhost", self.p["imaps"], ssl_context=self.ctx, timeout=30)
        m.login(USER, PASSWORD)
        return m

    # ---- checks --------------------------------------------------------

    def stls_read(self):
        self.first = make_message("pop one", ["Hello over POP3.", ".a dotted line", "..", "end"])
        self.send(self.first)
        self.wait_count(1)
        pop = poplib.POP3("localhost", self.p["pop3"], timeout=30)
        assert "STLS" in pop.capa()
        assert pop.stls(context=self.ctx).startswith(b"+OK")
        caps = pop.capa()
        assert "STLS" not in caps and "USER" in caps and "TOP" in caps, caps
        pop.user(USER)
        assert pop.pass_(PASSWORD).startswith(b"+OK Logged in")
        count, size = pop.stat()
        resp, lines, _ = pop.retr(1)
        assert count == 1 and size == len(joined(lines)), (count, size)
        assert e2e_harness.as_sent(joined(lines)) == self.first, (lines, self.first)
        resp, self.uidl, _ = pop.uidl()
        assert len(self.uidl) == 1, self.uidl
        assert pop.quit().startswith(b"+OK")

    def pop3s_same_uidl(self):
        pop = self.pop3s()
        assert "STLS" not in pop.capa()
        resp, uidl, _ = pop.uidl()
        assert uidl == self.uidl, (uidl, self.uidl)
        resp, lines, _ = pop.top(1, 0)
        assert b"Subject: pop one" in lines, lines
        pop.quit()

    def dele_quit_expunges(self):
        second = make_message("pop two", ["marked by IMAP"])
        self.send(second)
        self.wait_count(2)
        m = self.imap()
        m.select("INBOX")
        typ, data = m.store("2", "+FLAGS", "(\\Deleted)")
        assert typ == "OK", data
        m.logout()  # LOGOUT does not expunge
        # a session that ends without QUIT changes nothing
        pop = self.pop3s()
        assert pop.dele(1).startswith(b"+OK")
        pop.file.close()
        pop.sock.close()
        pop = self.pop3s_retry()
        assert pop.stat()[0] == 2, pop.stat()
        assert pop.dele(1).startswith(b"+OK")
        resp = pop.quit()
        assert resp.startswith(b"+OK Logging out (1 messages deleted)"), resp
        m = self.imap()
        typ, data = m.select("INBOX")
        assert data == [b"1"], data
        subjects = [s for _, s in e2e_harness.uid_subjects(m, 1)]
        assert subjects == ["pop two"], subjects
        typ, data = m.fetch("1", "(FLAGS)")
        assert b"\\Deleted" in data[0], data
        # RETR marks \Seen (at QUIT): on the one that stays
        m.store("1", "-FLAGS", "(\\Deleted)")
        m.logout()
        pop = self.pop3s()
        resp, lines, _ = pop.retr(1)
        assert b"marked by IMAP" in lines, lines
        pop.quit()
        m = self.imap()
        m.select("INBOX")
        typ, data = m.fetch("1", "(FLAGS)")
        assert b"\\Seen" in data[0], data
        m.store("1", "+FLAGS", "(\\Deleted)")
        m.expunge()
        m.logout()

    def lock_across_frontends(self):
        """A second frontend (same etcd, same stores) holds the lock; kill -9
        of it gives the lock back after its lease."""
        argv = list(self.c.spec("frontend-1")[3])
        ports = {}
        for opt in ("--smtp", "--submission", "--submissions", "--imap", "--imaps",
                    "--pop3", "--pop3s", "--metrics"):
            ports[opt] = free_port()
            argv[argv.index(opt) + 1] = f"127.0.0.1:{ports[opt]}"
        argv[argv.index("--id") + 1] = "frontend-2"
        argv += ["--pop3-lock-ttl", "3"]
        log = open(os.path.join(self.c.state, "frontend-2.log"), "ab")
        fe2 = subprocess.Popen(argv, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    other = self.pop3s_retry(ports["--pop3s"])
                    break
                except OSError:
                    assert fe2.poll() is None and time.monotonic() < deadline, "frontend-2"
                    time.sleep(0.2)
            assert other.stat()[0] >= 0
            pop = poplib.POP3_SSL("127.0.0.1", self.p["pop3s"], context=self.ctx, timeout=30)
            pop.user(USER)
            try:
                pop.pass_(PASSWORD)
                raise AssertionError("a second session got the locked maildrop")
            except poplib.error_proto as e:
                assert str(e).startswith("b'-ERR [IN-USE]"), e
            assert pop.capa() is not None   # still in AUTHORIZATION
            pop.close()
            fe2.kill()
            fe2.wait()
            killed = time.monotonic()
            pop = self.pop3s_retry(timeout=15)
            waited = time.monotonic() - killed
            print(f"lock freed {waited:.1f} s after kill -9 of its frontend (lease 3 s)")
            assert pop.quit().startswith(b"+OK")
        finally:
            if fe2.poll() is None:
                fe2.kill()
                fe2.wait()
            log.close()

    def fetchmail(self):
        if shutil.which("fetchmail") is None:
            print("SKIP fetchmail: not installed")
            return
        third = make_message("pop three", ["for fetchmail"])
        self.send(third)
        self.wait_count(1)
        handshakes = self.pop3_tls_handshakes()
        tmp = tempfile.mkdtemp(prefix="fetchmail-")
        try:
            rc_path, out = os.path.join(tmp, "rc"), os.path.join(tmp, "out")
            ca = os.path.join(self.c.tls_dir(), "ca.pem")
            with open(rc_path, "w") as f:
                f.write(f'poll localhost protocol pop3 port {self.p["pop3"]} '
                        f'user "{USER}" there with password "{PASSWORD}" is "root" here '
                        f"fetchall sslproto 'TLS1.2+' sslcertck sslcertfile \"{ca}\" "
                        f'mda "cat >> {out}"\n')
            os.chmod(rc_path, 0o600)
            r = subprocess.run(["fetchmail", "-f", rc_path, "--nodetach", "-i",
                                os.path.join(tmp, "ids"), "--pidfile",
                                os.path.join(tmp, "pid")],
                               capture_output=True, text=True, timeout=60,
                               env=dict(os.environ, HOME=tmp))
            assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
            with open(out, "rb") as f:
                got = f.read()
            assert b"Subject: pop three" in got and b"for fetchmail" in got, got
            # over STLS: the listener logged one more handshake
            assert self.pop3_tls_handshakes() == handshakes + 1
            print(f"fetchmail: {r.stderr.strip().splitlines()[-1] if r.stderr else 'ok'}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        # fetchmail deletes what it fetched (no "keep")
        m = self.imap()
        typ, data = m.select("INBOX")
        assert data == [b"0"], data
        m.logout()


def main():
    def body(c, check):
        c.mailctl("user", "add", USER, stdin=PASSWORD + "\n")
        t = Pop3E2E(c)
        check("stls_read", t.stls_read)
        check("pop3s_same_uidl", t.pop3s_same_uidl)
        check("dele_quit_expunges", t.dele_quit_expunges)
        check("lock_across_frontends", t.lock_across_frontends)
        check("fetchmail", t.fetchmail)
    return e2e_harness.run("pop3-e2e-", body, lease_ttl=3, stores=1, queues=1)


if __name__ == "__main__":
    sys.exit(main())
