#!/usr/bin/env python3
"""End-to-end: the closed platform, with Python's ssl, smtplib and imaplib.

Starts its own cluster on free 127.0.0.1 ports (cluster/local makes the
development CA under state/tls/) and checks:
  * TLS on every listener, verified against state/tls/ca.pem with the
    names localhost and 127.0.0.1: STARTTLS on the MX, on submission and
    on IMAP; implicit TLS on submissions (465) and IMAPS (993);
  * a session resumed on a new connection (tickets from the shared secret);
  * submission: MAIL before AUTH is 530 5.7.0; AUTH PLAIN, LOGIN and
    SCRAM-SHA-256 against the directory; a wrong password 535 5.7.8; a
    sender not the user's own 553 5.7.1; mail to a local user arrives;
    mail to a domain outside our tenants is accepted and handed to
    outbound delivery (the queue logs its attempt), never delivered to a
    mailbox;
  * the MX offers no AUTH, not even after STARTTLS (502 to AUTH);
  * IMAP AUTHENTICATE SCRAM-SHA-256 over IMAPS;
  * `mailctl tls set|list|remove`: a tenant's certificate is served by SNI
    without a restart (a subdomain too), and removed again;
  * `mailctl block add|list|remove`: a blocked address is refused on SMTP
    (421 4.7.1) and IMAP (BYE) within seconds, and served once unblocked;
  * auth penalties: after two failed logins from an address the next
    attempt is held back (at least the 4 s penalty);
  * etcd is closed: plain http to its port and TLS without a client
    certificate fail, a wrong password or no token is refused; with the
    frontend's credentials the directory reads but the ring (partition map)
    and the directory refuse writes (403, PERM), blocks can be written; a
    node's credentials write its own keys and the shared ones, not another
    node's, and do not read the password hashes; mailctl run with no flags
    from a directory holding state/mailctl.conf (as from the checkout after
    `cluster/local up`) reaches etcd, and with a wrong password says so in
    one line.
Standard library only.
"""
import base64
import hashlib
import hmac
import imaplib
import os
import shutil
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import e2e_harness  # noqa: E402
import local  # noqa: E402  (e2e_harness put cluster/ on the path)

USER = "carol@example.test"
PASSWORD = "tls pass"


def scram_client(user, password):
    """Steps of a SCRAM-SHA-256 client (RFC 5802) for imaplib.authenticate,
    or for SMTP driven by hand: call with None first, then each challenge."""
    nonce = base64.b64encode(os.urandom(18)).decode()
    first_bare = f"n={user},r={nonce}"
    state = {"step": 0}

    def step(challenge):
        state["step"] += 1
        if state["step"] == 1:
            return ("n,," + first_bare).encode()
        if state["step"] == 2:
            server_first = challenge.decode()
            attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
            salted = hashlib.pbkdf2_hmac("sha256", password.encode(),
                                         base64.b64decode(attrs["s"]), int(attrs["i"]))
            client_key = hmac.new(salted, b"Client Key", "sha256").digest()
            stored = hashlib.sha256(client_key).digest()
            without_proof = "c=biws,r=" + attrs["r"]
            msg = ",".join([first_bare, server_first, without_proof]).encode()
            proof = bytes(a ^ b for a, b in zip(client_key,
                                                hmac.new(stored, msg, "sha256").digest()))
            server_key = hmac.new(salted, b"Server Key", "sha256").digest()
            state["v"] = b"v=" + base64.b64encode(hmac.new(server_key, msg, "sha256").digest())
            return (without_proof + ",p=" + base64.b64encode(proof).decode()).encode()
        assert challenge == state["v"], (challenge, state["v"])
        return b""
    return step


class Security:
    def __init__(self, c):
        self.c = c
        self.p = c.ports
        self.ctx = ssl.create_default_context(cafile=os.path.join(c.tls_dir(), "ca.pem"))

    def submission(self):
        s = smtplib.SMTP("127.0.0.1", self.p["submission"], timeout=30)
        s.ehlo("client.test")
        s.starttls(context=self.ctx)
        s.ehlo("client.test")
        return s

    def tls_everywhere(self):
        for name in ("smtp", "submission"):
            with smtplib.SMTP("127.0.0.1", self.p[name], timeout=30) as s:
                s.ehlo("client.test")
                assert s.has_extn("starttls"), name
                s.starttls(context=self.ctx)
                assert s.sock.version() in ("TLSv1.2", "TLSv1.3"), s.sock.version()
        with smtplib.SMTP_SSL("localhost", self.p["submissions"], context=self.ctx,
                              timeout=30) as s:
            assert s.ehlo("client.test")[0] == 250
        m = imaplib.IMAP4("localhost", self.p["imap"], timeout=30)
        assert "STARTTLS" in m.capabilities
        m.starttls(ssl_context=self.ctx)
        m.logout()
        m = imaplib.IMAP4_SSL("localhost", self.p["imaps"], ssl_context=self.ctx, timeout=30)
        m.logout()

    def resumption(self):
        """A second connection resumes the first one's session (a ticket)."""
        ctx = ssl.create_default_context(cafile=os.path.join(self.c.tls_dir(), "ca.pem"))
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2  # the session is ready after the handshake
        raw = socket.create_connection(("127.0.0.1", self.p["imaps"]), timeout=30)
        a = ctx.wrap_socket(raw, server_hostname="localhost")
        a.recv(1024)
        session = a.session
        a.close()
        raw = socket.create_connection(("127.0.0.1", self.p["imaps"]), timeout=30)
        b = ctx.wrap_socket(raw, server_hostname="localhost", session=session)
        b.recv(1024)
        assert b.session_reused, "the session was not resumed"
        b.close()

    def submission_rules(self):
        with smtplib.SMTP("127.0.0.1", self.p["submission"], timeout=30) as s:
            s.ehlo("client.test")
            code, _ = s.mail(USER)
            assert code == 530, code
        with self.submission() as s:
            assert "PLAIN" in s.esmtp_features.get("auth", ""), s.esmtp_features
            try:
                s.login(USER, "wrong")
                raise AssertionError("a wrong password was accepted")
            except smtplib.SMTPAuthenticationError as e:
                assert e.smtp_code == 535, e
        with self.submission() as s:
            s.login(USER, PASSWORD)
            code, msg = s.mail("someone.else@example.test")
            assert code == 553 and b"5.7.1" in msg, (code, msg)
        with self.submission() as s:
            # LOGIN
            s.user, s.password = USER, PASSWORD
            code, _ = s.auth("LOGIN", s.auth_login, initial_response_ok=False)
            assert code == 235, code

    def submission_scram(self):
        with self.submission() as s:
            step = scram_client(USER, PASSWORD)
            code, resp = s.docmd("AUTH", "SCRAM-SHA-256 " +
                                 base64.b64encode(step(None)).decode())
            assert code == 334, (code, resp)
            code, resp = s.docmd(base64.b64encode(step(base64.b64decode(resp))).decode())
            assert code == 334, (code, resp)
            step(base64.b64decode(resp))  # checks the server's proof
            code, resp = s.docmd("")
            assert code == 235, (code, resp)

    def submit_local_and_remote(self):
        body = (f"From: {USER}\r\nTo: {USER}\r\nSubject: submitted\r\n\r\nover TLS\r\n")
        with self.submission() as s:
            s.login(USER, PASSWORD)
            refused = s.sendmail(USER, [USER, "bob@elsewhere.test"], body)
            assert not refused, refused
        deadline = time.monotonic() + 30
        found = False
        while time.monotonic() < deadline and not found:
            m = imaplib.IMAP4_SSL("localhost", self.p["imaps"], ssl_context=self.ctx)
            m.login(USER, PASSWORD)
            typ, data = m.select("INBOX", readonly=True)
            n = int(data[0])
            if n:
                typ, data = m.fetch(f"1:{n}", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
                found = any(b"submitted" in part[1] for part in data if isinstance(part, tuple))
            m.logout()
            time.sleep(0.5)
        assert found, "the submitted message did not arrive"
        # the outside recipient goes to outbound delivery (no such domain
        # here: it fails or is deferred, by the queue's primary)
        deadline = time.monotonic() + 30
        while True:
            logs = "".join(self.c.log_tail(f"queue-{i}", 400) for i in (1, 2, 3)
                           if os.path.exists(os.path.join(self.c.state, "log",
                                                          f"queue-{i}.log")))
            if "rcpt=bob@elsewhere.test" in logs and ("event=deferred_remote" in logs or
                                                      "event=failed" in logs):
                break
            assert time.monotonic() < deadline, logs[-2000:]
            time.sleep(0.5)

    def swaks(self):
        """A client we did not write: swaks, verifying the CA."""
        import shutil
        import subprocess
        if shutil.which("swaks") is None:
            raise AssertionError("swaks is not installed (cluster/local installs it)")
        ca = os.path.join(self.c.tls_dir(), "ca.pem")
        common = ["--tls-verify", "--tls-ca-path", ca, "--auth-user", USER,
                  "--auth-password", PASSWORD, "--to", USER, "--h-Subject", "swaks"]
        r = subprocess.run(["swaks", "--server", f"127.0.0.1:{self.p['submission']}", "--tls",
                            "--auth", "PLAIN", "--from", USER] + common,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout[-2000:]
        r = subprocess.run(["swaks", "--server", f"127.0.0.1:{self.p['submissions']}", "--tlsc",
                            "--auth", "LOGIN", "--from", "other@example.test"] + common,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode != 0 and "553 5.7.1" in r.stdout, r.stdout[-2000:]

    def mx_has_no_auth(self):
        with smtplib.SMTP("127.0.0.1", self.p["smtp"], timeout=30) as s:
            s.ehlo("client.test")
            s.starttls(context=self.ctx)
            s.ehlo("client.test")
            assert not s.has_extn("auth"), s.esmtp_features
            code, _ = s.docmd("AUTH", "PLAIN " + base64.b64encode(
                b"\0" + USER.encode() + b"\0" + PASSWORD.encode()).decode())
            assert code == 502, code

    def imap_scram(self):
        m = imaplib.IMAP4_SSL("localhost", self.p["imaps"], ssl_context=self.ctx)
        assert "AUTH=SCRAM-SHA-256" in m.capabilities, m.capabilities
        typ, _ = m.authenticate("SCRAM-SHA-256", scram_client(USER, PASSWORD))
        assert typ == "OK"
        m.logout()

    def peer_cn(self, name):
        raw = socket.create_connection(("127.0.0.1", self.p["imaps"]), timeout=30)
        s = self.ctx.wrap_socket(raw, server_hostname=name)
        cert = s.getpeercert()
        s.close()
        return dict(x[0] for x in cert["subject"])["commonName"]

    def until(self, fn, seconds=15):
        deadline = time.monotonic() + seconds
        while True:
            try:
                return fn()
            except (AssertionError, ssl.SSLError, OSError, imaplib.IMAP4.error):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def sni_certificates(self):
        import subprocess
        d = self.c.tls_dir()
        subprocess.run([os.path.join(os.path.dirname(HERE), "cluster", "dev-ca"), d, "server",
                        "tenant-a.test", "DNS:tenant-a.test,DNS:*.tenant-a.test"], check=True)
        r = self.c.mailctl("tls", "set", "tenant-a.test", "--cert",
                           os.path.join(d, "tenant-a.test.pem"), "--key",
                           os.path.join(d, "frontend.key"), check=False)
        assert r.returncode == 1 and "not the key" in r.stderr, (r.returncode, r.stderr)
        self.c.mailctl("tls", "set", "tenant-a.test", "--cert",
                       os.path.join(d, "tenant-a.test.pem"), "--key",
                       os.path.join(d, "tenant-a.test.key"))
        assert "tenant-a.test" in self.c.mailctl("tls", "list").stdout

        def served():
            assert self.peer_cn("mail.tenant-a.test") == "tenant-a.test"
        self.until(served)
        assert self.peer_cn("localhost") == "localhost"
        self.c.mailctl("tls", "remove", "tenant-a.test")

        def gone():
            try:
                self.peer_cn("mail.tenant-a.test")
            except ssl.SSLCertVerificationError:
                return
            raise AssertionError("still served")
        self.until(gone)

    def block(self):
        self.c.mailctl("block", "add", "127.0.0.1", "--ttl", "60")
        assert "127.0.0.1" in self.c.mailctl("block", "list").stdout

        def refused():
            with socket.create_connection(("127.0.0.1", self.p["smtp"]), timeout=30) as s:
                line = s.makefile("rb").readline()
                assert line.startswith(b"421 4.7.1"), line
            with socket.create_connection(("127.0.0.1", self.p["imap"]), timeout=30) as s:
                line = s.makefile("rb").readline()
                assert line.startswith(b"* BYE"), line
        self.until(refused)
        self.c.mailctl("block", "remove", "127.0.0.1")

        def served():
            with smtplib.SMTP("127.0.0.1", self.p["smtp"], timeout=30) as s:
                assert s.ehlo("client.test")[0] == 250
        self.until(served)

    def penalty(self):
        m = imaplib.IMAP4_SSL("localhost", self.p["imaps"], ssl_context=self.ctx)
        for _ in range(2):
            try:
                m.login(USER, "wrong")
            except imaplib.IMAP4.error:
                pass
        m.logout()
        m = imaplib.IMAP4_SSL("localhost", self.p["imaps"], ssl_context=self.ctx, timeout=60)
        t0 = time.monotonic()
        m.login(USER, PASSWORD)  # right, but held back by the penalty first
        waited = time.monotonic() - t0
        m.logout()
        assert waited >= 3.5, f"no penalty: {waited:.2f}s"
        print(f"     penalty after 2 failures: {waited:.1f}s", flush=True)


def etcd_refused(fn, status, text):
    """fn() must raise local.EtcdError with HTTP status (or one of a tuple)
    and text (or one of a tuple) in its body."""
    statuses = status if isinstance(status, tuple) else (status,)
    texts = text if isinstance(text, tuple) else (text,)
    try:
        fn()
    except local.EtcdError as e:
        assert e.status in statuses and any(t in str(e.body) for t in texts), (e.status, e.body)
        return
    raise AssertionError(f"etcd did not refuse (wanted {status} {text})")


def etcd_queue_only(c, key="/mail/v1/secrets/dkim/example.test/perm-check",
                   value='{"algorithm":"ed25519-sha256","key":"k","created":1,"active":false}'):
    """The tenants' DKIM private keys (/mail/v1/secrets/dkim/,
    docs/outbound-dkim.md): queue nodes read them (they sign), frontends
    and store nodes cannot, and only admin (mailctl dkim) writes them. The
    same holds for the outbound relays' credentials and the transports
    (cluster/mailctl-relay.c)."""
    b64 = local.b64
    put = {"key": b64(key), "value": b64(value)}
    c.etcd_call("/v3/kv/put", put)  # as admin
    try:
        assert c.etcd_get(key, user="queue-1") is not None
        for user in ("frontend", "store-1"):
            etcd_refused(lambda: c.etcd_call("/v3/kv/range", {"key": b64(key)}, user=user),
                         403, "permission denied")
        etcd_refused(lambda: c.etcd_call("/v3/kv/put", put, user="queue-1"),
                     403, "permission denied")
        etcd_refused(lambda: c.etcd_call("/v3/kv/deleterange", {"key": b64(key)},
                                         user="queue-1"), 403, "permission denied")
    finally:
        c.etcd_call("/v3/kv/deleterange", {"key": b64(key)})


def etcd_closed(c):
    """etcd over TLS only, with credentials, and per-role permissions."""
    b64 = local.b64
    port = c.etcd_port(1)
    # plain http to etcd's port: no answer etcd would give
    try:
        urllib.request.urlopen(urllib.request.Request(
            f"http://127.0.0.1:{port}/v3/kv/range", data=b"{}", method="POST"), timeout=5)
    except (OSError, urllib.error.URLError):
        pass
    else:
        raise AssertionError("plain http to etcd answered")
    # TLS with our CA but no client certificate: the handshake fails
    ctx = ssl.create_default_context(cafile=os.path.join(c.tls_dir(), "ca.pem"))
    try:
        urllib.request.urlopen(urllib.request.Request(
            f"https://127.0.0.1:{port}/v3/kv/range", data=b"{}", method="POST"),
            timeout=5, context=ctx)
    except (OSError, urllib.error.URLError):
        pass
    else:
        raise AssertionError("etcd answered a client without a certificate")
    users_key = "/mail/v1/users/example.test/carol"
    # a client certificate but no token, and a wrong password: refused
    # (etcd 3.4 says "user name is empty" to some calls, "permission
    # denied" to a range)
    etcd_refused(lambda: c.etcd_post("/v3/kv/range", {"key": b64(users_key)}, "frontend",
                                      None), (400, 403), ("user name is empty",
                                                          "permission denied"))
    etcd_refused(lambda: c.etcd_post("/v3/kv/put", {"key": b64("/mail/v1/blocks/x"),
                                                     "value": b64("x")}, "frontend", None),
                 (400, 403), ("user name is empty", "permission denied"))
    etcd_refused(lambda: c.etcd_post("/v3/auth/authenticate",
                                      {"name": "frontend", "password": "wrong"}, "frontend",
                                      None), 400, "authentication failed")

    # the frontend: reads the directory and the ring, writes blocks only
    fe = "frontend"
    rec = c.etcd_call("/v3/kv/range", {"key": b64(users_key)}, user=fe)
    assert b'"hash"' in base64.b64decode(rec["kvs"][0]["value"]), rec
    assert c.etcd_get("/mail/v1/ring/store", user=fe) is not None
    ring_put = {"key": b64("/mail/v1/ring/store"), "value": b64("{}")}
    etcd_refused(lambda: c.etcd_call("/v3/kv/put", ring_put, user=fe), 403, "permission denied")
    etcd_refused(lambda: c.etcd_call("/v3/kv/txn", {
        "compare": [{"target": "MOD", "result": "EQUAL", "key": b64("/mail/v1/ring/store"),
                     "mod_revision": "0"}],
        "success": [{"request_put": ring_put}]}, user=fe), 403, "permission denied")
    etcd_refused(lambda: c.etcd_call("/v3/kv/deleterange", {"key": b64("/mail/v1/ring/queue")},
                                     user=fe), 403, "permission denied")
    etcd_refused(lambda: c.etcd_call("/v3/kv/put", {"key": b64(users_key), "value": b64("{}")},
                                     user=fe), 403, "permission denied")
    etcd_refused(lambda: c.etcd_call("/v3/kv/put", {
        "key": b64("/mail/v1/tenants/evil.test"), "value": b64("{}")}, user=fe),
        403, "permission denied")
    block = {"key": b64("/mail/v1/blocks/192.0.2.1"), "value": b64('{"reason":"test"}')}
    c.etcd_call("/v3/kv/put", block, user=fe)
    c.etcd_call("/v3/kv/deleterange", {"key": block["key"]}, user=fe)
    # a watch outside its permissions is canceled, not left hanging
    with c.etcd_open("/v3/watch", {"create_request": {
            "key": b64("/mail/v1/status/"), "range_end": b64("/mail/v1/status0")}},
            user=fe, timeout=10) as r:
        line = r.readline()
    assert b'"canceled":true' in line and b"ermission" in line, line

    # a node: its own keys and the shared ones, not another node's, and
    # not the password hashes
    node = "store-1"
    c.etcd_call("/v3/kv/put", {"key": b64("/mail/v1/status/store/store-1"),
                               "value": b64(c.etcd_get("/mail/v1/status/store/store-1")
                                            or b"{}")}, user=node)
    etcd_refused(lambda: c.etcd_call("/v3/kv/put", {
        "key": b64("/mail/v1/alive/store/store-2"), "value": b64("127.0.0.1:1")}, user=node),
        403, "permission denied")
    etcd_refused(lambda: c.etcd_call("/v3/kv/put", {
        "key": b64("/mail/v1/nodes/store/store-10"), "value": b64("{}")}, user=node),
        403, "permission denied")
    etcd_refused(lambda: c.etcd_call("/v3/kv/put", {
        "key": b64("/mail/v1/progress/queue/0/store-1"), "value": b64("{}")}, user=node),
        403, "permission denied")
    etcd_refused(lambda: c.etcd_call("/v3/kv/range", {"key": b64(users_key)}, user=node),
                 403, "permission denied")
    etcd_queue_only(c)
    etcd_queue_only(c, "/mail/v1/secrets/relay/default",
                   '{"url":"smtp://relay.example:25","user":"u","password":"p"}')
    etcd_queue_only(c, "/mail/v1/transport/example.org", '{"url":"smtp://10.0.0.5:25"}')

    # mailctl with no flags from a directory with state/mailctl.conf (the
    # checkout after `cluster/local up`)
    root = tempfile.mkdtemp(prefix="mailctl-root-")
    try:
        os.symlink(c.state, os.path.join(root, "state"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAIL_ETCD")}
        r = subprocess.run([os.path.join(c.bin, "mailctl"), "tenant", "list"], cwd=root,
                           env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "example.test" in r.stdout, (r.returncode, r.stderr)
        # the same with a wrong password: one line that says so
        bad = os.path.join(root, "bad.password")
        with open(bad, "w") as f:
            f.write("wrong\n")
        os.chmod(bad, 0o600)
        r = subprocess.run([os.path.join(c.bin, "mailctl"), "--etcd-password-file", bad,
                            "tenant", "list"], cwd=root, env=env, capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 5, (r.returncode, r.stderr)
        assert r.stderr.count("\n") == 1 and 'etcd refused user "admin" (wrong user name ' \
            "or password)" in r.stderr, r.stderr
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main():
    def body(c, check):
        c.mailctl("user", "add", USER, stdin=PASSWORD + "\n")
        t = Security(c)
        check("tls_everywhere", t.tls_everywhere)
        check("resumption", t.resumption)
        check("submission_rules", t.submission_rules)
        check("submission_scram", t.submission_scram)
        check("submit_local_and_remote", t.submit_local_and_remote)
        check("mx_has_no_auth", t.mx_has_no_auth)
        check("swaks", t.swaks)
        check("imap_scram", t.imap_scram)
        check("sni_certificates", t.sni_certificates)
        check("block", t.block)
        check("etcd_closed", lambda: etcd_closed(c))
        check("penalty", t.penalty)  # last: it leaves 127.0.0.1 penalised
    return e2e_harness.run("security-e2e-", body, lease_ttl=3, stores=1, queues=1)


if __name__ == "__main__":
    sys.exit(main())
