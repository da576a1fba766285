#!/usr/bin/env python3
"""Fault test: kill -9 under a steady stream, then a full audit.

A cluster with 3 store nodes and 3 queue nodes (both R=3) and a frontend on
free ports. A sender thread sends a steady stream of messages to several
users (each message retried on 4xx until it gets 250, as an MTA would); an
IMAP thread keeps changing flags. Meanwhile, each killed with -9 and then
restarted: the store node that is primary of the most store partitions,
the queue node that is primary of the most queue partitions, the elected
controller (a store or queue node), the frontend. Then the store tier is
scaled 3 -> 4 -> 3 (a join, then a drain) under the stream
(MAIL_FAULT_SCALE=0 skips it). Then the audit, through IMAP: every message
that got 250 is in its mailbox exactly once, UIDs strictly increase,
UIDVALIDITY did not change, and the queues drained. It also prints the
longest pause the sender saw. Standard library only.
"""
import imaplib
import json
import os
import random
import shutil
import signal
import smtplib
import sys
import tempfile
import threading
import time
import traceback
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "cluster"))
import local  # noqa: E402
import e2e_harness  # noqa: E402

USERS = [f"user{i}@example.test" for i in range(6)]
WINDOW_S = 600  # QUEUE_CLIENT_RESEND_WINDOW_MS (client/queue-client.h)
PASSWORD = "pw"


class Stream:
    def __init__(self, c):
        self.c = c
        self.stop = threading.Event()
        self.acked = {u: [] for u in USERS}   # user -> [token]
        # token -> attempts whose DATA was sent but got no reply (the
        # connection died: a frontend killed after the queue committed but
        # before its 250 reached us: RFC 1047). The frontend derives the
        # queue id from the content and a 10-minute window, so our resend
        # is recognised and stored once; only a resend that falls in the
        # next window may leave a second copy, and the audit allows exactly
        # those.
        self.unknown = {}
        self.unknown_at = {}   # token -> wall times of those attempts
        self.unknown_total = 0
        self.max_pause = 0.0
        self.sent = 0
        self.retries = 0
        self.errors = []

    def message(self, user, token):
        return (f"From: s@remote.test\r\nTo: {user}\r\nSubject: {token}\r\n"
                f"Message-ID: <{token}@remote.test>\r\n\r\nbody {token}\r\n").encode()

    def send_one(self, user, token):
        start = time.monotonic()
        while not self.stop.is_set() or time.monotonic() - start < 60:
            in_data = False
            t_attempt = time.time()
            try:
                with smtplib.SMTP("127.0.0.1", self.c.ports["smtp"], timeout=30) as s:
                    s.ehlo("stream.test")
                    code, _ = s.mail("s@remote.test")
                    if code == 250:
                        code, _ = s.rcpt(user)
                    if code == 250:
                        in_data = True
                        code, _ = s.data(self.message(user, token))
                        in_data = False
                    if code != 250:
                        raise smtplib.SMTPResponseException(code, b"not accepted")
                self.max_pause = max(self.max_pause, time.monotonic() - start)
                self.unknown_total += len(self.unknown_at.get(token, []))
                self.unknown[token] = sum(
                    1 for u in self.unknown_at.get(token, [])
                    if int(u // WINDOW_S) != int(time.time() // WINDOW_S)
                    or abs(u - round(u / WINDOW_S) * WINDOW_S) < 2)
                return True
            except (smtplib.SMTPException, OSError) as e:
                if in_data and not isinstance(e, smtplib.SMTPResponseException):
                    self.unknown_at.setdefault(token, []).append(t_attempt)
                self.retries += 1
                time.sleep(0.2)
            if time.monotonic() - start > 90:
                break
        self.errors.append(f"{token}: no 250 within 90 s")
        return False

    def sender(self):
        n = 0
        while not self.stop.is_set():
            user = USERS[n % len(USERS)]
            token = f"t{n:05d}"
            if self.send_one(user, token):
                self.acked[user].append(token)
            n += 1
            self.sent = n
            time.sleep(0.02)

    def flagger(self):
        while not self.stop.is_set():
            try:
                m = imaplib.IMAP4("127.0.0.1", self.c.ports["imap"], timeout=30)
                m.login(USERS[0], PASSWORD)
                while not self.stop.is_set():
                    typ, data = m.select("INBOX")
                    n = int(data[0]) if typ == "OK" else 0
                    if n:
                        m.store(str(random.randint(1, n)), "+FLAGS", "(\\Flagged)")
                    time.sleep(0.1)
                m.logout()
            except (imaplib.IMAP4.error, OSError, ValueError):
                time.sleep(0.3)


def audit(c, stream, uidvalidity_before):
    problems = []
    for user in USERS:
        m = imaplib.IMAP4("127.0.0.1", c.ports["imap"], timeout=60)
        m.login(user, PASSWORD)
        typ, data = m.select("INBOX", readonly=True)
        n = int(data[0])
        uv = int(m.response("UIDVALIDITY")[1][0])
        if user in uidvalidity_before and uidvalidity_before[user] != uv:
            problems.append(f"{user}: UIDVALIDITY changed {uidvalidity_before[user]} -> {uv}")
        pairs = e2e_harness.uid_subjects(m, n)
        uids = [u for u, _ in pairs]
        tokens = [t for _, t in pairs]
        m.logout()
        if uids != sorted(uids) or len(set(uids)) != len(uids):
            problems.append(f"{user}: UIDs not strictly increasing")
        unknown = getattr(stream, "unknown", {})
        for t in stream.acked[user]:
            k = tokens.count(t)
            if not 1 <= k <= 1 + unknown.get(t, 0):
                problems.append(f"{user}: {t} present {k} times "
                                f"({unknown.get(t, 0)} attempts of unknown outcome)")
    return problems


def stop_and_audit(c, stream, threads, uidvalidity_before, label, problems=()):
    """Let the stream run 3 s more, stop it, wait (60 s at most) for the
    queues to drain, audit, print a summary line and the first problems.
    Returns (problems, acknowledged count)."""
    time.sleep(3)
    stream.stop.set()
    for t in threads:
        t.join(timeout=120)
    deadline = time.monotonic() + 60
    while queue_depth(c) != 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    depth = queue_depth(c)
    problems = list(problems) + audit(c, stream, uidvalidity_before) + stream.errors
    if depth != 0:
        problems.append(f"queue not drained: {depth} messages")
    acked = sum(len(v) for v in stream.acked.values())
    print(f"{label}: acked={acked} retries={stream.retries} "
          f"unknown_outcome={stream.unknown_total} "
          f"longest_pause={stream.max_pause:.2f}s problems={len(problems)}")
    for p in problems[:20]:
        print("  " + p)
    return problems, acked


def queue_depth(c):
    """Messages still queued on all queue nodes (their /metrics): those
    scheduled for delivery plus every replica's stored copy, so 0 means
    nothing is left in any queue, on any replica."""
    total = 0
    for i in range(1, c.queues + 1):
        url = f"http://127.0.0.1:{c.metrics_port(f'queue-{i}')}/metrics"
        with urllib.request.urlopen(url, timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(("mail_queue_messages{", "mail_queue_stored{")):
                    total += int(float(line.rsplit(" ", 1)[1]))
    return total


def etcd_get(c, key):
    """The value of key in etcd (bytes), or None (as admin, over TLS)."""
    return c.etcd_get(key)


def controller_node(c):
    """The node id holding /mail/v1/controller (the elected controller)."""
    v = etcd_get(c, "/mail/v1/controller")
    assert v, "no controller elected"
    return v.decode()


def busiest_primary(c, role):
    """The node that is the primary of the most partitions of role."""
    ring = json.loads(etcd_get(c, f"/mail/v1/ring/{role}"))
    counts = {}
    for part in ring["map"]:
        counts[part["r"][0]] = counts.get(part["r"][0], 0) + 1
    return max(counts, key=counts.get)


def uidvalidities(c):
    out = {}
    for user in USERS:
        m = imaplib.IMAP4("127.0.0.1", c.ports["imap"], timeout=60)
        m.login(user, PASSWORD)
        m.select("INBOX", readonly=True)
        out[user] = int(m.response("UIDVALIDITY")[1][0])
        m.logout()
    return out


def main():
    bin_dir = os.environ.get("MAIL_BIN_DIR") or os.path.join(
        os.path.dirname(HERE), "build", "bin")
    state = tempfile.mkdtemp(prefix="mail-failover-")
    c = local.Cluster.with_free_ports(state, bin_dir, stores=3, queues=3, lease_ttl=2)
    ok = False
    s = None
    try:
        c.up()
        for u in USERS:
            c.mailctl("user", "add", u, stdin=PASSWORD + "\n")
        s = Stream(c)
        threads = [threading.Thread(target=s.sender, daemon=True),
                   threading.Thread(target=s.flagger, daemon=True)]
        for t in threads:
            t.start()
        time.sleep(3)
        uv_before = uidvalidities(c)
        for victim in ("store", "queue", "controller", "frontend-1"):
            if victim == "controller":
                victim = controller_node(c)
            elif victim in ("store", "queue"):
                victim = busiest_primary(c, victim)
            time.sleep(2)
            print(f"kill -9 {victim} (sent so far {s.sent})", flush=True)
            c.kill(victim, signal.SIGKILL)
            time.sleep(3)
            c.start(victim)
        if os.environ.get("MAIL_FAULT_SCALE", "1") == "1":
            # scale out to 4 store nodes and back to 3 (drain) under the
            # stream
            conf = {"etcd_members": 1, "stores": 3, "queues": 3}
            conf_path = os.path.join(state, "cluster.json")
            t0 = time.monotonic()
            assert local.scale(c, conf, conf_path, ["store=4"]) == 0
            time.sleep(4)
            assert local.scale(c, conf, conf_path, ["store=3"]) == 0
            print(f"scaled 3 -> 4 -> 3 store nodes in {time.monotonic() - t0:.1f}s "
                  f"(sent so far {s.sent})", flush=True)
        problems, acked = stop_and_audit(c, s, threads, uv_before, "failover")
        ok = not problems and acked > 0
    except Exception:
        traceback.print_exc()
    finally:
        if s is not None:
            s.stop.set()   # the threads end (they are daemons, too)
        c.down()
        if not ok:
            for name, *_ in c.specs():
                print(f"--- {name} log tail ---\n{c.log_tail(name, 10)}")
            e2e_harness.print_replication_events(c)
        if os.environ.get("MAIL_KEEP_TMP") != "1":
            shutil.rmtree(state, ignore_errors=True)
        else:
            print(f"state kept in {state}")
    print(f"{1 if ok else 0} passed, {0 if ok else 1} failed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
