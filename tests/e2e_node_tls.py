#!/usr/bin/env python3
"""End-to-end: node RPC is mutual TLS with per-method roles (issue 8).

Starts its own cluster on free 127.0.0.1 ports (2 store nodes, 2 queue
nodes, R=2: replication crosses the wire) where, as in every cluster
cluster/local starts, each process has its own certificate from the
development CA (state/tls/<name>.pem, role in SAN mail-role:ROLE). Checks:
  * every node and the frontend say node_tls=on at ready;
  * mail goes through: SMTP 250, then the message read back over IMAP
    (frontend -> queue, queue -> queue replication, queue -> store,
    store -> store replication, frontend -> store: all over TLS), and no
    node refused another (no rpc_tls_failed or rpc_denied in any log);
  * a plaintext connection to a store node's RPC port gets no RPC answer
    (nothing, or a TLS alert, then closed);
  * a TLS client without a client certificate is refused at the
    handshake, and so is one whose certificate comes from another CA;
  * with the cluster's own certificates, through tests/support/rpc-call
    (one framed RPC call, printing its status): a frontend certificate
    calling AppendEntries or InstallSnapshot on a store node gets perm, as
    does a queue certificate (replication stays within a tier) and a
    frontend certificate calling the store's Deliver; a store
    certificate's AppendEntries is served (whatever the handler says of
    an empty request, never perm), as are a frontend's mailbox List and
    queue Enqueue.
Standard library only.
"""
import os
import smtplib
import socket
import ssl
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import e2e_harness  # noqa: E402
from e2e_harness import local  # noqa: E402

# statuses that mean "the call never reached a handler"
REFUSED = {"perm", "unavailable", "deadline"}


class NodeTls:
    def __init__(self, c):
        self.c = c
        self.tls = c.tls_dir()
        self.ca = os.path.join(self.tls, "ca.pem")
        self.store_port = c.node_port("store-1")
        self.queue_port = c.node_port("queue-1")

    def cert(self, name):
        return ["--node-cert", os.path.join(self.tls, f"{name}.pem"),
                "--node-key", os.path.join(self.tls, f"{name}.key")]

    def call(self, port, method, *tls_args):
        r = subprocess.run([os.path.join(self.c.bin, "rpc-call"),
                            "--connect", f"127.0.0.1:{port}", "--method", method,
                            "--deadline-ms", "5000", *tls_args],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, (r.returncode, r.stderr[-500:])
        out = r.stdout.strip()
        assert out.startswith("status="), out
        return out.split("=", 1)[1]

    def expect(self, want, port, method, *tls_args):
        got = self.call(port, method, *tls_args)
        assert got == want, (method, tls_args, got, want)

    def served(self, port, method, *tls_args):
        got = self.call(port, method, *tls_args)
        assert got not in REFUSED, (method, tls_args, got)
        who = os.path.basename(tls_args[-1]) if tls_args else "plaintext"
        print(f"     {method} on port {port} with {who}: served, status={got}")
        return got

    def node_logs_grep(self, pattern):
        hits = []
        for name, role, *_ in self.c.specs():
            if role != "etcd":
                hits += [f"{name}: {line}" for line in
                         self.c.log_events(name, pattern).splitlines()]
        return hits

    # ---- checks ----------------------------------------------------------

    def ready_with_tls(self):
        # a node's port opens before it has joined the ring and said ready
        deadline = time.monotonic() + 30
        for name, role, *_ in self.c.specs():
            if role == "etcd":
                continue
            while True:
                ready = self.c.log_events(name, r"event=ready")
                if ready or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert "node_tls=on" in ready, (name, ready)

    def mail_flows(self):
        subject = f"mtls {time.time()}"
        with smtplib.SMTP("127.0.0.1", self.c.ports["smtp"], timeout=30) as s:
            s.ehlo("client.test")
            s.sendmail("someone@remote.test", [local.DEMO_USER],
                       f"From: someone@remote.test\r\nTo: {local.DEMO_USER}\r\n"
                       f"Subject: {subject}\r\n\r\nover mutual TLS\r\n")
        import imaplib
        deadline = time.monotonic() + 30
        while True:
            m = imaplib.IMAP4("127.0.0.1", self.c.ports["imap"], timeout=30)
            try:
                m.login(local.DEMO_USER, local.DEMO_PASSWORD)
                typ, data = m.select("INBOX")
                subjects = [s for _, s in e2e_harness.uid_subjects(m, int(data[0]))]
            finally:
                m.logout()
            if subject in subjects or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert subject in subjects, subjects
        refused = self.node_logs_grep(r"event=rpc_(tls_failed|denied)")
        assert not refused, refused[:5]

    def plaintext_closed(self):
        # What a plaintext rpc client sends first: a frame (4-byte length,
        # then the header and a HELLO); the TLS server takes it for a bad
        # record and closes.
        hello = b"\x01\x01" + b"\x00" * 18 + b"store"
        with socket.create_connection(("127.0.0.1", self.store_port), timeout=10) as s:
            s.sendall(struct.pack(">I", len(hello)) + hello)
            got = b""
            try:
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    got += chunk
            except ConnectionResetError:
                pass
        # nothing, or a TLS alert record (content type 21): never a frame
        assert got == b"" or got[0] == 21, got[:40]
        self.expect("unavailable", self.store_port, "list")

    def no_client_cert_refused(self):
        ctx = ssl.create_default_context(cafile=self.ca)
        refused = False
        try:
            with socket.create_connection(("127.0.0.1", self.store_port), timeout=10) as raw:
                with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                    # TLS 1.3: the server judges the client's (empty)
                    # certificate after the client's Finished
                    s.sendall(b"\x00\x00\x00\x00")
                    refused = s.recv(1) == b""
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            refused = True
        assert refused
        self.expect("unavailable", self.store_port, "list", "--cluster-ca", self.ca)
        assert self.c.log_events("store-1", "peer did not return a certificate"), \
            self.c.log_tail("store-1")

    def other_ca_refused(self):
        other = os.path.join(self.c.state, "other-ca")
        subprocess.run([os.path.join(local.ROOT, "cluster", "dev-ca"), other, "node", "intruder",
                        "store"], check=True)
        intruder = ["--node-cert", os.path.join(other, "intruder.pem"),
                    "--node-key", os.path.join(other, "intruder.key")]
        # trusting our CA for the server, presenting the other CA's store cert
        self.expect("unavailable", self.store_port, "append_entries", "--cluster-ca", self.ca,
                    *intruder)
        self.expect("unavailable", self.queue_port, "enqueue", "--cluster-ca", self.ca,
                    *intruder)
        assert self.c.log_events("store-1", "certificate verify failed"), \
            self.c.log_tail("store-1")

    def roles(self):
        ca = ["--cluster-ca", self.ca]
        fe, st, qu = self.cert("frontend-1"), self.cert("store-2"), self.cert("queue-2")
        # replication: only the serving node's own tier
        self.expect("perm", self.store_port, "append_entries", *ca, *fe)
        self.expect("perm", self.store_port, "install_snapshot", *ca, *fe)
        self.expect("perm", self.store_port, "append_entries", *ca, *qu)
        self.expect("perm", self.queue_port, "append_entries", *ca, *st)
        self.expect("perm", self.queue_port, "append_entries", *ca, *fe)
        self.served(self.store_port, "append_entries", *ca, *st)
        self.served(self.queue_port, "append_entries", *ca, *qu)
        # store: Deliver from queues, mailboxes from frontends
        self.expect("perm", self.store_port, "deliver", *ca, *fe)
        self.expect("perm", self.store_port, "list", *ca, *qu)
        self.served(self.store_port, "deliver", *ca, *qu)
        self.served(self.store_port, "list", *ca, *fe)
        # queue: Enqueue from frontends and queues, not stores
        self.expect("perm", self.queue_port, "enqueue", *ca, *st)
        self.served(self.queue_port, "enqueue", *ca, *fe)
        denied = self.c.log_events("store-1", r"event=rpc_denied .*role=frontend")
        assert "method=append_entries" in denied, denied


def main():
    def body(c, check):
        t = NodeTls(c)
        check("ready_with_tls", t.ready_with_tls)
        check("mail_flows", t.mail_flows)   # first: it asserts no refusal so far
        check("plaintext_closed", t.plaintext_closed)
        check("no_client_cert_refused", t.no_client_cert_refused)
        check("other_ca_refused", t.other_ca_refused)
        check("roles", t.roles)
    return e2e_harness.run("node-tls-e2e-", body, lease_ttl=3, stores=2, queues=2, replicas=2)


if __name__ == "__main__":
    sys.exit(main())
