#!/usr/bin/env python3
"""Fault test: two of three replicas of a partition down, as SMTP and IMAP
clients see it (docs/replication.md, "two of three replicas die").

A cluster of 3 store nodes, 3 queue nodes (R=3: every node holds every
partition), a frontend, lease TTL 2 s and 4 partitions, on free ports.
  1. Baseline: one message per user gets 250 and is readable by IMAP.
  2. Queue tier: kill -9 two queue nodes. Sends started at once, after one
     TTL and after three TTLs never get 250: each ends in 451 4.3.0 after
     the frontend's queue-client deadline (printed). IMAP reads keep
     working. One queue node back: a send gets 250 again within
     QUEUE_RESUME_BOUND_S (retrying on 4xx; the time is printed), every
     250'd message arrives exactly once, a 451'd one at most once.
  3. Store tier: kill -9 the two store nodes that are not the primary of
     the write user's partition. UID STORE +FLAGS, in a session selected
     before the kill and in a fresh one, gets NO [UNAVAILABLE], never OK
     (a fresh SELECT may itself get NO [UNAVAILABLE]); SMTP still gets 250.
     One store node back: the write succeeds within STORE_RESUME_BOUND_S,
     FETCH FLAGS shows the flag, and the mail accepted meanwhile arrives
     exactly once.
  4. Every node back, then e2e_failover's audit: every 250'd message in its
     mailbox exactly once, UIDs strictly increasing, UIDVALIDITY unchanged,
     mail_queue_messages and mail_queue_stored 0 on every queue node.
Standard library only.
"""
import imaplib
import os
import re
import signal
import smtplib
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import e2e_failover  # noqa: E402  (audit, uidvalidities, queue_depth, USERS)
import e2e_harness  # noqa: E402

USERS = e2e_failover.USERS
PASSWORD = e2e_failover.PASSWORD
TTL_S = 2
PARTITIONS = 4
QUEUE_RESUME_BOUND_S = 30   # restart of one queue node -> first 250
STORE_RESUME_BOUND_S = 30   # restart of one store node -> first OK write
DELIVERY_BOUND_S = 90       # a 250'd message reaches its mailbox
DOWN_SEND_STARTS_S = (0, TTL_S, 3 * TTL_S)  # after the kill: before, around,
                                            # after the controller reacts


def queue_client_deadline_s():
    """QUEUE_CLIENT_DEADLINE_MS from client/queue-client.h: how long
    the frontend may take before it answers 451."""
    path = os.path.join(os.path.dirname(HERE), "client", "queue-client.h")
    with open(path) as f:
        m = re.search(r"#define QUEUE_CLIENT_DEADLINE_MS (\d+)u?", f.read())
    assert m, "QUEUE_CLIENT_DEADLINE_MS not found"
    return int(m.group(1)) / 1000.0


def store_primaries(c):
    """{partition: primary} from `mailctl partitions --role store`."""
    r = c.mailctl("partitions", "--role", "store")
    out = {}
    for line in r.stdout.splitlines():
        m = re.match(r"^store (\d+) epoch=\d+ primary=([^\s(]+)", line)
        if m:
            out[int(m.group(1))] = m.group(2)
    return out


def wait_for(what, fn, timeout, step=0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last={last!r})")


def unavailable(typ, data):
    """A tagged NO [UNAVAILABLE] answer."""
    text = b" ".join(d for d in data if isinstance(d, bytes))
    return typ == "NO" and text.upper().startswith(b"[UNAVAILABLE]")


class Quorum:
    def __init__(self, c):
        self.c = c
        self.deadline_s = queue_client_deadline_s()
        self.acked = {u: [] for u in USERS}     # tokens that got 250
        self.refused = {u: [] for u in USERS}   # tokens that got 4xx: unknown outcome
        self.n = 0
        self.lock = threading.Lock()
        self.uv_before = {}
        self.wuser = USERS[0]                   # its INBOX is written in phase 3
        self.down_stores = []

    # ---- clients -------------------------------------------------------

    def token(self):
        with self.lock:
            self.n += 1
            return f"q{self.n:04d}"

    def send(self, user, token, timeout=None):
        """One SMTP transaction. Returns (code, reply text, seconds); code is
        0 when the connection failed before a reply."""
        msg = (f"From: s@remote.test\r\nTo: {user}\r\nSubject: {token}\r\n"
               f"Message-ID: <{token}@remote.test>\r\n\r\nbody {token}\r\n").encode()
        start = time.monotonic()
        try:
            with smtplib.SMTP("127.0.0.1", self.c.ports["smtp"],
                              timeout=timeout or self.deadline_s + 15) as s:
                s.sendmail("s@remote.test", [user], msg)
            code, text = 250, b""
        except smtplib.SMTPResponseException as e:
            code, text = e.smtp_code, e.smtp_error
        except smtplib.SMTPRecipientsRefused as e:
            code, text = e.recipients[user]
        except (smtplib.SMTPException, OSError) as e:
            code, text = 0, str(e).encode()
        took = time.monotonic() - start
        with self.lock:
            if code == 250:
                self.acked[user].append(token)
            else:
                self.refused[user].append(token)
        return code, text, took

    def send_until_250(self, user, bound):
        """Retry on 4xx (as an MTA would) until 250; returns the seconds."""
        start = time.monotonic()
        while time.monotonic() - start < bound:
            code, text, _ = self.send(user, self.token())
            if code == 250:
                return time.monotonic() - start
            assert code == 0 or 400 <= code < 500, (code, text)
            time.sleep(0.2)
        raise AssertionError(f"no 250 within {bound}s")

    def imap(self, user=None, timeout=30):
        m = imaplib.IMAP4("127.0.0.1", self.c.ports["imap"], timeout=timeout)
        m.login(user or self.wuser, PASSWORD)
        return m

    def subjects(self, user):
        """[(uid, subject)] of user's INBOX, read-only."""
        m = self.imap(user)
        try:
            typ, data = m.select("INBOX", readonly=True)
            assert typ == "OK", (typ, data)
            return e2e_harness.uid_subjects(m, int(data[0]))
        finally:
            m.logout()

    def delivered_once(self):
        """Wait until every 250'd token is in its mailbox, then (after a
        moment in which a duplicate would show) check exactly once; a 4xx'd
        token (outcome unknown) may be there at most once. Returns how many
        4xx'd messages were delivered anyway."""
        def all_there():
            for user in USERS:
                have = {s for _, s in self.subjects(user)}
                if any(t not in have for t in self.acked[user]):
                    return False
            return True
        wait_for("every 250'd message delivered", all_there, DELIVERY_BOUND_S, step=0.5)
        time.sleep(2)
        late = 0
        for user in USERS:
            subj = [s for _, s in self.subjects(user)]
            for t in self.acked[user]:
                assert subj.count(t) == 1, f"{user}: 250'd {t} present {subj.count(t)} times"
            for t in self.refused[user]:
                assert subj.count(t) <= 1, f"{user}: 4xx'd {t} present {subj.count(t)} times"
                late += subj.count(t)
        return late

    # ---- 1. baseline ---------------------------------------------------

    def baseline(self):
        for user in USERS:
            code, text, _ = self.send(user, self.token(), timeout=30)
            assert code == 250, (user, code, text)
        self.delivered_once()
        self.uv_before = e2e_failover.uidvalidities(self.c)

    # ---- 2. queue tier -------------------------------------------------

    def queue_two_down(self):
        try:
            self.queue_two_down_checks()
        finally:
            for i in range(1, 4):   # whole again for the store phase
                self.c.start(f"queue-{i}")

    def queue_two_down_checks(self):
        victims, back = ("queue-1", "queue-2"), "queue-1"
        results = []

        def sender(k, delay):
            time.sleep(delay)
            user = USERS[1 + k % (len(USERS) - 1)]
            token = self.token()
            code, text, took = self.send(user, token)
            results.append((token, delay, code, text, took))

        t_kill = time.monotonic()
        for v in victims:
            self.c.kill(v, signal.SIGKILL)
        print(f"kill -9 {', '.join(victims)}", flush=True)
        threads = [threading.Thread(target=sender, args=(k, d))
                   for k, d in enumerate(DOWN_SEND_STARTS_S)]
        for t in threads:
            t.start()
        # IMAP reads keep working: the store tier is whole
        reads = 0
        while any(t.is_alive() for t in threads):
            assert self.subjects(self.wuser), "baseline message unreadable"
            reads += 1
            time.sleep(1)
        for t in threads:
            t.join()
        for token, delay, code, text, took in sorted(results, key=lambda r: r[1]):
            print(f"queue tier down: send {token} started +{delay:.0f}s after the kill: "
                  f"{code} {text.decode(errors='replace')} after {took:.2f}s "
                  f"(queue-client deadline {self.deadline_s:.0f}s)", flush=True)
        print(f"queue tier down: {reads} IMAP reads, all answered", flush=True)
        for token, delay, code, text, took in results:
            assert code != 250, f"{token} acknowledged while two of three queue nodes were down"
            assert code == 451 and text.startswith(b"4.3.0"), (token, code, text)
            assert took <= self.deadline_s + 5, (token, took)
        assert len(results) == len(DOWN_SEND_STARTS_S)
        down_for = time.monotonic() - t_kill

        t_start = time.monotonic()
        self.c.start(back)
        first = self.send_until_250(USERS[1], QUEUE_RESUME_BOUND_S)
        print(f"queue tier: {back} restarted after {down_for:.1f}s down; first 250 "
              f"{first:.2f}s after the restart began "
              f"({time.monotonic() - t_start:.2f}s incl. process start)", flush=True)
        for user in USERS:
            code, text, _ = self.send(user, self.token(), timeout=30)
            assert code == 250, (user, code, text)
        late = self.delivered_once()
        print(f"queue tier: 451'd messages delivered anyway (committed after the "
              f"answer, outcome was unknown): {late}", flush=True)

    # ---- 3. store tier -------------------------------------------------

    def store_two_down(self):
        part = e2e_harness.partition_of(self.wuser, PARTITIONS)
        primary = store_primaries(self.c)[part]
        self.down_stores = [f"store-{i}" for i in range(1, 4) if f"store-{i}" != primary]
        uid, _ = self.subjects(self.wuser)[-1]
        a = self.imap()
        typ, data = a.select("INBOX")
        assert typ == "OK", (typ, data)
        typ, data = a.uid("FETCH", str(uid), "(FLAGS)")
        assert typ == "OK" and b"\\Flagged" not in data[0], data

        for v in self.down_stores:
            self.c.kill(v, signal.SIGKILL)
        print(f"kill -9 {', '.join(self.down_stores)} ({self.wuser} is on store "
              f"partition {part}, primary {primary})", flush=True)
        sends = []

        def sender():
            for k in range(3):
                user = USERS[k % len(USERS)]
                sends.append((user,) + self.send(user, self.token(), timeout=30))
                time.sleep(0.5)

        fresh = {}

        def fresh_session():
            t0 = time.monotonic()
            b = self.imap(timeout=60)
            try:
                fresh["select"] = b.select("INBOX")
                fresh["select_s"] = time.monotonic() - t0
                if fresh["select"][0] == "OK":
                    t1 = time.monotonic()
                    fresh["store"] = b.uid("STORE", str(uid), "+FLAGS", "(\\Flagged)")
                    fresh["store_s"] = time.monotonic() - t1
            finally:
                b.logout()

        threads = [threading.Thread(target=sender), threading.Thread(target=fresh_session)]
        for t in threads:
            t.start()
        t0 = time.monotonic()
        typ, data = a.uid("STORE", str(uid), "+FLAGS", "(\\Flagged)")
        took = time.monotonic() - t0
        for t in threads:
            t.join()
        a.logout()
        print(f"store tier down: UID STORE in the session selected before: {typ} {data} "
              f"after {took:.2f}s", flush=True)
        print(f"store tier down: fresh session SELECT {fresh.get('select')} after "
              f"{fresh.get('select_s', 0):.2f}s; UID STORE {fresh.get('store')} after "
              f"{fresh.get('store_s', 0):.2f}s", flush=True)
        for user, code, text, took_s in sends:
            print(f"store tier down: send to {user}: {code} {text.decode(errors='replace')} "
                  f"after {took_s:.2f}s", flush=True)
        assert unavailable(typ, data), (typ, data)
        assert "select" in fresh, "fresh session never selected"
        if fresh["select"][0] == "OK":
            assert unavailable(*fresh["store"]), fresh["store"]
        else:
            assert unavailable(*fresh["select"]), fresh["select"]
        assert [s[1] for s in sends] == [250] * 3, sends

        back = self.down_stores[0]
        t_start = time.monotonic()
        self.c.start(back)

        def write_ok():
            try:
                m = self.imap()
                try:
                    typ, data = m.select("INBOX")
                    if typ != "OK":
                        assert unavailable(typ, data), (typ, data)
                        return False
                    typ, data = m.uid("STORE", str(uid), "+FLAGS", "(\\Flagged)")
                    if typ != "OK":
                        assert unavailable(typ, data), (typ, data)
                        return False
                    return True
                finally:
                    m.logout()
            except (imaplib.IMAP4.abort, OSError):
                return False
        wait_for("an IMAP write after one store node came back", write_ok,
                 STORE_RESUME_BOUND_S)
        print(f"store tier: {back} restarted; UID STORE OK "
              f"{time.monotonic() - t_start:.2f}s after the restart began", flush=True)
        m = self.imap()
        try:
            m.select("INBOX", readonly=True)
            typ, data = m.uid("FETCH", str(uid), "(FLAGS)")
            assert typ == "OK" and b"\\Flagged" in data[0], data
        finally:
            m.logout()
        self.delivered_once()
        print("store tier: mail accepted while two stores were down delivered once",
              flush=True)

    # ---- 4. audit -------------------------------------------------------

    def audit(self):
        for name in self.down_stores:
            self.c.start(name)
        wait_for("queues drained (nothing scheduled or stored on any queue node)",
                 lambda: e2e_failover.queue_depth(self.c) == 0, 60, step=0.5)

        class Acked:
            acked = self.acked
        problems = e2e_failover.audit(self.c, Acked, self.uv_before)
        acked = sum(len(v) for v in self.acked.values())
        refused = sum(len(v) for v in self.refused.values())
        print(f"audit: acked={acked} refused(4xx)={refused} problems={len(problems)}",
              flush=True)
        assert not problems, problems


def main():
    def body(c, check):
        for u in USERS:
            c.mailctl("user", "add", u, stdin=PASSWORD + "\n")
        q = Quorum(c)
        t0 = time.monotonic()
        for name, fn in (("baseline", q.baseline), ("queue_two_of_three_down", q.queue_two_down),
                         ("store_two_of_three_down", q.store_two_down), ("audit", q.audit)):
            check(name, fn)
            print(f"  ({name} done at +{time.monotonic() - t0:.1f}s)", flush=True)
    return e2e_harness.run("mail-quorum-", body, stores=3, queues=3, lease_ttl=TTL_S,
                           partitions=PARTITIONS)


if __name__ == "__main__":
    sys.exit(main())
