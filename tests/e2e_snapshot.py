#!/usr/bin/env python3
"""Fault test: log compaction and snapshot catch-up, both tiers
(docs/replication.md, "Snapshots and compaction").

A cluster of 3 store nodes, 3 queue nodes (R=3: every node holds every
partition), a frontend, lease TTL 2 s, 4 partitions and --log-keep 20, on
free ports. Users are picked so that every store partition has two.

  1. Baseline: one message per user gets 250 and arrives; UIDVALIDITY noted.
Store tier:
  2. kill -9 the store node that leads the fewest store partitions (none
     once rebalancing has settled; else its partitions are promoted before
     any write), wait until it is out of every in-sync set, then SMTP mail:
     STORE_PER_PART deliveries to every store partition, far beyond
     --log-keep, every 250'd message delivered; over IMAP flag two messages
     of every user and expunge two.
  3. Restart it: its log must show event=snapshot_installed role=store for
     every partition (its next index lies below every primary's compacted
     base, so the log alone cannot catch it up), and `mailctl partitions`
     must show it in every in-sync set within REJOIN_BOUND_S (printed).
Queue tier (same run):
  4. kill -9 the queue node that leads the most queue partitions (so that
     rebalancing hands some back once it is restored), and the two store
     nodes other than the one restored in 3 (which so becomes the primary
     of every store partition): the store tier takes no writes, so mail
     stays queued. QUEUE_MESSAGES messages get 250 (the queue tier has its
     majority), which moves every queue log far past --log-keep. Restart
     the queue node: event=snapshot_installed role=queue for every
     partition, back in every in-sync set within REJOIN_BOUND_S; its
     snapshot carries the queued mail.
  5. Once rebalancing made it primary of a queue partition again, kill -9
     the other queue node that leads the most queue partitions, under a
     stream of mail (retried on 4xx, as an MTA does), and restart the two
     store nodes. Every 250'd message is delivered exactly once, a 4xx'd one
     at most once; the restored queue node must have delivered some of the
     mail it only knew from its snapshot (its event=delivered lines against
     the queue ids the frontend accepted while it was down); the killed
     node comes back and the queues drain (mail_queue_messages 0 on every
     queue node).
Audit:
  6. Every node stopped (SIGTERM), `mailstore-dump` (tests/support/) of each
     store node: the three dumps are identical, every 250'd message (named
     by its X-Delivery-Id header) is in its user's INBOX exactly once unless
     it was expunged, the flagged ones carry \\Flagged and no other does,
     the expunged ones are gone, a 4xx'd one is there at most once, uids
     strictly increase, uidnext is above them, UIDVALIDITY is unchanged.
Standard library only. About 35 s.
"""
import imaplib
import os
import re
import signal
import smtplib
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import e2e_harness  # noqa: E402
from e2e_harness import partition_of  # noqa: E402

TTL_S = 2
PARTITIONS = 4
LOG_KEEP = 20
USERS_PER_PART = 2
STORE_PER_PART = 4 * LOG_KEEP    # deliveries to each store partition while one is down
QUEUE_MESSAGES = 160             # messages while one queue node is down (~2 entries each)
SENDERS = 4                      # SMTP connections in parallel
DOWN_BOUND_S = 6 * TTL_S         # a killed node out of every in-sync set
REJOIN_BOUND_S = 30              # restart -> in every in-sync set again
DELIVERY_BOUND_S = 60            # a 250'd message reaches its mailbox
DRAIN_BOUND_S = 60               # queues empty after the last send
SETTLE_BOUND_S = 10              # baseline: wait for a store node that leads nothing
LEAD_BOUND_S = 20                # a restored queue node gets its partitions back
STREAM_PACE_S = 0.05             # per connection, between 250s of the stream
PASSWORD = "pw"


def pick_users():
    """USERS_PER_PART users on each store partition (router_partition_of)."""
    users, per = [], {p: 0 for p in range(PARTITIONS)}
    n = 0
    while min(per.values()) < USERS_PER_PART:
        u = f"snap{n}@example.test"
        p = partition_of(u, PARTITIONS)
        if per[p] < USERS_PER_PART:
            per[p] += 1
            users.append(u)
        n += 1
    return users


USERS = pick_users()


def wait_for(what, fn, timeout, step=0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last={last!r})")


# ---- the map -----------------------------------------------------------------

PART_LINE = re.compile(r"^(store|queue) (\d+) epoch=\d+ primary=([^\s(]+)(\(down\))? "
                       r"replicas=(\S+) insync=(\S+)")


def partitions(c, role):
    """{partition: (primary, primary_live, replicas, insync)} from
    `mailctl partitions --role role`."""
    r = c.mailctl("partitions", "--role", role, check=False)
    out = {}
    for line in r.stdout.splitlines():
        m = PART_LINE.match(line)
        if m and m.group(1) == role:
            out[int(m.group(2))] = (m.group(3), m.group(4) is None,
                                    m.group(5).split(","), m.group(6).split(","))
    return out


def all_parts(c, role, pred):
    p = partitions(c, role)
    return len(p) == PARTITIONS and all(pred(*v) for v in p.values())


def primary_counts(c, role):
    counts = {f"{role}-{i}": 0 for i in range(1, 4)}
    for primary, _, _, _ in partitions(c, role).values():
        counts[primary] = counts.get(primary, 0) + 1
    return counts


def log_size(c, name):
    try:
        return os.path.getsize(c.logfile(name))
    except OSError:
        return 0


def log_since(c, name, offset):
    with open(c.logfile(name), errors="replace") as f:
        f.seek(offset)
        return f.read()


INSTALLED = re.compile(r"event=snapshot_installed role=(\w+) partition=(\d+) index=(\d+)")


def installed(c, name, role, offset):
    """{partition: index} of the snapshot installs `name` logged after offset."""
    return {int(m.group(2)): int(m.group(3)) for m in INSTALLED.finditer(log_since(c, name, offset))
            if m.group(1) == role}


def count_events(c, names, event, offset=None):
    n = 0
    for name in names:
        text = log_since(c, name, (offset or {}).get(name, 0))
        n += len(re.findall(rf"event={event}\b", text))
    return n


# ---- mail ----------------------------------------------------------------------

class Mail:
    def __init__(self, c):
        self.c = c
        self.lock = threading.Lock()
        self.n = 0
        self.acked = {u: [] for u in USERS}     # tokens that got 250
        self.refused = {u: [] for u in USERS}   # tokens that got 4xx: outcome unknown
        self.flagged = set()
        self.expunged = set()
        self.retries = 0
        self.max_pause = 0.0

    def token(self):
        with self.lock:
            self.n += 1
            return f"s{self.n:05d}"

    @staticmethod
    def message(user, token):
        return (f"From: s@remote.test\r\nTo: {user}\r\nSubject: {token}\r\n"
                f"Message-ID: <{token}@remote.test>\r\nX-Delivery-Id: {token}\r\n"
                f"\r\nbody {token}\r\n").encode()

    def send_all(self, users, bound=90, stop=None, pace=0.0):
        """One message to each user in `users`, over SENDERS connections in
        parallel. Each is retried on 4xx or a broken connection with a new
        token (the old one's outcome is unknown) until it gets 250, for at
        most `bound` seconds. With `stop` (an Event) the list is cycled
        until it is set; each connection then waits `pace` seconds after
        each 250."""
        work = list(users)
        errors = []

        def worker(k):
            s = None
            i = k
            while True:
                if stop is None:
                    if i >= len(work):
                        break
                elif stop.is_set():
                    break
                user = work[i % len(work)]
                i += SENDERS
                start = time.monotonic()
                while True:
                    token = self.token()
                    try:
                        if s is None:
                            s = smtplib.SMTP("127.0.0.1", self.c.ports["smtp"], timeout=30)
                        s.sendmail("s@remote.test", [user], self.message(user, token))
                        with self.lock:
                            self.acked[user].append(token)
                            self.max_pause = max(self.max_pause, time.monotonic() - start)
                        time.sleep(pace)
                        break
                    except smtplib.SMTPResponseException as e:
                        self.note_refused(user, token)
                        if not 400 <= e.smtp_code < 500:
                            errors.append(f"{token}: {e.smtp_code} {e.smtp_error!r}")
                            return
                    except smtplib.SMTPRecipientsRefused as e:
                        code, text = e.recipients[user]
                        self.note_refused(user, token)
                        if not 400 <= code < 500:
                            errors.append(f"{token}: {code} {text!r}")
                            return
                    except (smtplib.SMTPException, OSError):
                        self.note_refused(user, token)
                        s = self.close(s)
                    if time.monotonic() - start > bound:
                        errors.append(f"{user}: no 250 within {bound}s")
                        return
                    time.sleep(0.2)
            self.close(s)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(SENDERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[:5]

    def note_refused(self, user, token):
        with self.lock:
            self.refused[user].append(token)
            self.retries += 1

    @staticmethod
    def close(s):
        if s is not None:
            try:
                s.quit()
            except (smtplib.SMTPException, OSError):
                pass
        return None

    def imap(self, user):
        m = imaplib.IMAP4("127.0.0.1", self.c.ports["imap"], timeout=30)
        m.login(user, PASSWORD)
        return m

    def inbox(self, user, m=None):
        """[(uid, subject)] of user's INBOX (read-only unless m is given,
        selected read-write)."""
        own = m is None
        if own:
            m = self.imap(user)
        try:
            typ, data = m.select("INBOX", readonly=own)
            assert typ == "OK", (typ, data)
            return e2e_harness.uid_subjects(m, int(data[0]))
        finally:
            if own:
                m.logout()

    def delivered(self, bound=DELIVERY_BOUND_S):
        """Wait until every 250'd token not expunged is in its mailbox; then
        (after a moment in which a duplicate would show) exactly once, and a
        4xx'd one at most once."""
        def all_there():
            for user in USERS:
                have = {s for _, s in self.inbox(user)}
                if any(t not in have for t in self.acked[user] if t not in self.expunged):
                    return False
            return True
        wait_for("every 250'd message delivered", all_there, bound, step=0.5)
        time.sleep(1)
        for user in USERS:
            subj = [s for _, s in self.inbox(user)]
            for t in self.acked[user]:
                want = 0 if t in self.expunged else 1
                assert subj.count(t) == want, f"{user}: 250'd {t} present {subj.count(t)} times"
            for t in self.refused[user]:
                assert subj.count(t) <= 1, f"{user}: 4xx'd {t} present {subj.count(t)} times"

    def flag_and_expunge(self):
        """Per user: \\Flagged on the 2nd and 3rd message, the 1st and 4th
        expunged (UID STORE +FLAGS \\Deleted, then EXPUNGE)."""
        for user in USERS:
            m = self.imap(user)
            try:
                msgs = self.inbox(user, m)
                assert len(msgs) >= 4, (user, len(msgs))
                flag, gone = [msgs[1], msgs[2]], [msgs[0], msgs[3]]
                for uid, _ in flag:
                    typ, data = m.uid("STORE", str(uid), "+FLAGS", "(\\Flagged)")
                    assert typ == "OK", (user, typ, data)
                for uid, _ in gone:
                    typ, data = m.uid("STORE", str(uid), "+FLAGS", "(\\Deleted)")
                    assert typ == "OK", (user, typ, data)
                typ, data = m.expunge()
                assert typ == "OK", (user, typ, data)
                self.flagged.update(s for _, s in flag)
                self.expunged.update(s for _, s in gone)
            finally:
                m.logout()


def uidvalidities(mail):
    out = {}
    for user in USERS:
        m = mail.imap(user)
        try:
            m.select("INBOX", readonly=True)
            out[user] = int(m.response("UIDVALIDITY")[1][0])
        finally:
            m.logout()
    return out


def queue_depth(c, names):
    """mail_queue_messages summed over the queue nodes `names` (their
    /metrics, as e2e_failover.queue_depth reads it); None while one of them
    does not answer (a node just restarted)."""
    total = 0
    for name in names:
        url = f"http://127.0.0.1:{c.metrics_port(name)}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                for line in r.read().decode().splitlines():
                    if line.startswith("mail_queue_messages{"):
                        total += int(float(line.rsplit(" ", 1)[1]))
        except OSError:
            return None
    return total


# ---- the offline audit -----------------------------------------------------------

def dump(c, name):
    return e2e_harness.mailstore_dump(c, name, USERS)


def parse_dump(text):
    return e2e_harness.parse_mailstore_dump(text)


def audit(dumps, mail, uv_before):
    problems = e2e_harness.dumps_differ(dumps)
    for name in sorted(dumps):
        boxes = parse_dump(dumps[name])
        for user in USERS:
            box = boxes.get(user)
            if box is None:
                problems.append(f"{name}: {user} has no INBOX")
                continue
            if box["uidvalidity"] != uv_before[user]:
                problems.append(f"{name}: {user}: UIDVALIDITY {uv_before[user]} -> "
                                f"{box['uidvalidity']}")
            uids = [u for u, _, _ in box["msgs"]]
            if uids != sorted(set(uids)):
                problems.append(f"{name}: {user}: uids not strictly increasing")
            if uids and box["uidnext"] <= max(uids):
                problems.append(f"{name}: {user}: uidnext {box['uidnext']} <= uid {max(uids)}")
            by_id = {}
            for uid, did, flags in box["msgs"]:
                by_id.setdefault(did, []).append(flags)
            for t in mail.acked[user]:
                got = by_id.get(t, [])
                want = 0 if t in mail.expunged else 1
                if len(got) != want:
                    problems.append(f"{name}: {user}: 250'd {t} stored {len(got)} times, "
                                    f"want {want}")
                elif want and (("\\Flagged" in got[0]) != (t in mail.flagged)):
                    problems.append(f"{name}: {user}: {t} flags {sorted(got[0])}, flagged "
                                    f"{t in mail.flagged}")
            for t in mail.refused[user]:
                if len(by_id.get(t, [])) > 1:
                    problems.append(f"{name}: {user}: 4xx'd {t} stored "
                                    f"{len(by_id[t])} times")
            known = set(mail.acked[user]) | set(mail.refused[user])
            strays = [d for d in by_id if d not in known]
            if strays:
                problems.append(f"{name}: {user}: unknown ids {strays[:3]}")
    return problems


# ---- the test ----------------------------------------------------------------------

class Snap:
    def __init__(self, c):
        self.c = c
        self.mail = Mail(c)
        self.uv_before = {}
        self.store_restored = None
        self.queue_restored = None
        self.stores_down = []
        self.held = set()

    def baseline(self):
        for u in USERS:
            self.c.mailctl("user", "add", u, stdin=PASSWORD + "\n")
        wait_for("three in-sync replicas of every partition, both tiers", lambda: all(
            all_parts(self.c, role, lambda p, live, r, i: live and len(i) == 3)
            for role in ("store", "queue")), 30)
        self.mail.send_all(USERS)
        self.mail.delivered()
        self.uv_before = uidvalidities(self.mail)
        # the first node up led every partition; rebalancing moves one
        # primary per pass: give it a moment to leave a store node leading
        # none (with 3 nodes and 4 partitions one is nobody's first choice)
        try:
            wait_for("a store node that leads no partition",
                     lambda: min(primary_counts(self.c, "store").values()) == 0,
                     SETTLE_BOUND_S, step=0.5)
        except AssertionError:
            print("no store node leads zero partitions yet: the least loaded one is "
                  "killed and its partitions promoted before any write", flush=True)
        print(f"users: {', '.join(f'{u}(p{partition_of(u, PARTITIONS)})' for u in USERS)}",
              flush=True)

    def take_down(self, role, pick):
        """kill -9 the node of role that leads the fewest (pick=min) or the
        most (pick=max) partitions; wait until it leads none and is in no
        in-sync set. Returns its name."""
        counts = primary_counts(self.c, role)
        victim = pick(sorted(counts), key=counts.get)
        self.c.kill(victim, signal.SIGKILL)
        t0 = time.monotonic()
        wait_for(f"{victim} out of every in-sync set and primary slot", lambda: all_parts(
            self.c, role, lambda p, live, r, i: p != victim and live and victim not in i),
            DOWN_BOUND_S)
        print(f"kill -9 {victim} (primary of {counts[victim]} {role} partition(s)); out of "
              f"every in-sync set after {time.monotonic() - t0:.2f}s", flush=True)
        return victim

    def bring_back(self, role, victim):
        """Restart victim; require a snapshot install of every partition
        and its return to every in-sync set. Returns the install times."""
        peers = [f"{role}-{i}" for i in range(1, 4) if f"{role}-{i}" != victim]
        offset = log_size(self.c, victim)
        peer_off = {n: log_size(self.c, n) for n in peers}
        t0 = time.monotonic()
        self.c.start(victim)
        got = wait_for(f"{victim}: event=snapshot_installed role={role} for every partition",
                       lambda: (lambda d: d if len(d) == PARTITIONS else None)(
                           installed(self.c, victim, role, offset)), REJOIN_BOUND_S, step=0.1)
        t_snap = time.monotonic() - t0
        wait_for(f"{victim} back in every in-sync set", lambda: all_parts(
            self.c, role, lambda p, live, r, i: live and victim in i and len(i) == 3),
            REJOIN_BOUND_S - t_snap)
        t_sync = time.monotonic() - t0
        sent = count_events(self.c, peers, "snapshot_sent", peer_off)
        restarts = count_events(self.c, peers, "snapshot_send_restart", peer_off)
        failed = count_events(self.c, [victim], "snapshot_install_failed", {victim: offset})
        print(f"{victim} restarted: snapshots installed "
              f"{', '.join(f'p{p}@{i}' for p, i in sorted(got.items()))} within "
              f"{t_snap:.2f}s; in every in-sync set {t_sync:.2f}s after the restart "
              f"(bound {REJOIN_BOUND_S}s); primaries logged {sent} snapshot_sent, "
              f"{restarts} snapshot_send_restart; {failed} snapshot_install_failed",
              flush=True)
        assert failed == 0, f"{victim} logged snapshot_install_failed"

    def store_tier(self):
        victim = self.take_down("store", min)
        t0 = time.monotonic()
        self.mail.send_all([u for _ in range(STORE_PER_PART // USERS_PER_PART) for u in USERS])
        self.mail.delivered()
        self.mail.flag_and_expunge()
        acked = sum(len(v) for v in self.mail.acked.values())
        print(f"store tier: {acked} messages 250'd so far ({self.mail.retries} 4xx/retries), "
              f"{len(self.mail.flagged)} flagged, {len(self.mail.expunged)} expunged, "
              f"{time.monotonic() - t0:.1f}s with {victim} down", flush=True)
        self.bring_back("store", victim)
        self.store_restored = victim

    def queue_tier(self):
        victim = self.take_down("queue", max)
        # Two stores down (all but the one restored by snapshot above, which
        # so becomes the primary of every store partition): deliveries fail
        # and the mail stays queued, so the queue snapshot carries messages.
        self.stores_down = [f"store-{i}" for i in range(1, 4)
                            if f"store-{i}" != self.store_restored]
        for name in self.stores_down:
            self.c.kill(name, signal.SIGKILL)
        print(f"kill -9 {', '.join(self.stores_down)}: the store tier takes no writes, "
              "mail stays queued", flush=True)
        front = log_size(self.c, "frontend-1")
        t0 = time.monotonic()
        users = [USERS[k % len(USERS)] for k in range(QUEUE_MESSAGES)]
        self.mail.send_all(users)
        self.held = set(re.findall(r"event=accepted sid=\S+ qid=(\S+)",
                                   log_since(self.c, "frontend-1", front)))
        print(f"queue tier: {len(users)} messages 250'd in {time.monotonic() - t0:.1f}s "
              f"with {victim} down ({len(self.held)} queue ids held)", flush=True)
        assert len(self.held) == len(users), (len(self.held), len(users))
        self.bring_back("queue", victim)
        self.queue_restored = victim

    def queue_failover(self):
        restored = self.queue_restored
        t0 = time.monotonic()
        wait_for(f"{restored} (restored by snapshot) primary of a queue partition again "
                 "(rebalancing)", lambda: primary_counts(self.c, "queue")[restored] > 0,
                 LEAD_BOUND_S)
        counts = primary_counts(self.c, "queue")
        print(f"{restored} leads {counts[restored]} queue partition(s) again "
              f"{time.monotonic() - t0:.2f}s after it was back in sync", flush=True)
        victim = max(sorted(n for n in counts if n != restored), key=counts.get)
        stop = threading.Event()
        before = sum(len(v) for v in self.mail.acked.values())
        failure = []

        def stream():
            try:
                self.mail.send_all(USERS, stop=stop, pace=STREAM_PACE_S)
            except Exception as e:  # reported below, in this thread
                failure.append(e)
        sender = threading.Thread(target=stream)
        sender.start()
        time.sleep(1)
        offset = log_size(self.c, restored)
        self.c.kill(victim, signal.SIGKILL)
        t_kill = time.monotonic()
        print(f"kill -9 {victim} (primary of {counts[victim]} queue partition(s)) under the "
              "stream", flush=True)
        try:
            wait_for(f"every queue partition led by a live node other than {victim}",
                     lambda: all_parts(self.c, "queue",
                                       lambda p, live, r, i: p != victim and live),
                     DOWN_BOUND_S)
            t_promoted = time.monotonic() - t_kill
            for name in self.stores_down:
                self.c.start(name)
            wait_for("three in-sync store replicas of every partition", lambda: all_parts(
                self.c, "store", lambda p, live, r, i: live and len(i) == 3), REJOIN_BOUND_S)
            print(f"{', '.join(self.stores_down)} back in every store in-sync set "
                  f"{time.monotonic() - t_kill:.2f}s after the queue kill", flush=True)
            time.sleep(2)   # keep sending under the new primaries
        finally:
            stop.set()
            sender.join()
        assert not failure, failure
        led = sorted(p for p, v in partitions(self.c, "queue").items() if v[0] == restored)
        print(f"queue partitions promoted {t_promoted:.2f}s after the kill; "
              f"{restored} (restored by snapshot) now leads {led}; "
              f"{sum(len(v) for v in self.mail.acked.values()) - before} messages 250'd "
              f"during the stream, longest wait for a 250 {self.mail.max_pause:.2f}s",
              flush=True)
        assert led, f"{restored} leads no queue partition"
        alive = [f"queue-{i}" for i in range(1, 4) if f"queue-{i}" != victim]
        t0 = time.monotonic()
        self.mail.delivered()
        # mail it knew only from the snapshot, delivered by the restored node
        by_restored = set(re.findall(r"event=delivered qid=(\S+)",
                                     log_since(self.c, restored, offset))) & self.held
        print(f"every 250'd message delivered once {time.monotonic() - t0:.2f}s after the "
              f"stream; {restored} delivered {len(by_restored)} of the {len(self.held)} "
              "messages it got by snapshot", flush=True)
        assert by_restored, f"{restored} delivered none of the mail in its snapshot"
        self.c.start(victim)
        wait_for("queues drained (mail_queue_messages 0 on every queue node)",
                 lambda: queue_depth(self.c, alive + [victim]) == 0, DRAIN_BOUND_S, step=0.5)
        print(f"queue tier: queues drained, {victim} back", flush=True)

    def final_audit(self):
        # the replicas learn the last commit index from the next heartbeat
        # (100 ms): give them a moment before stopping the nodes
        time.sleep(1.5)
        print(self.c.mailctl("partitions", "--role", "store", check=False).stdout.rstrip(),
              flush=True)
        # SIGTERM to each group at once, then wait for each: the frontend
        # and the queues first, so nothing writes while the stores stop
        for group in (["frontend-1"] + [f"queue-{i}" for i in range(1, 4)],
                      [f"store-{i}" for i in range(1, 4)]):
            for name in group:
                pid = self.c.pid(name)
                if pid:
                    os.kill(pid, signal.SIGTERM)
            for name in group:
                self.c.kill(name)
        dumps = {n: dump(self.c, n) for n in ("store-1", "store-2", "store-3")}
        problems = audit(dumps, self.mail, self.uv_before)
        acked = sum(len(v) for v in self.mail.acked.values())
        refused = sum(len(v) for v in self.mail.refused.values())
        stored = sum(len(b["msgs"]) for b in parse_dump(dumps["store-1"]).values())
        print(f"audit: {acked} 250'd, {refused} 4xx'd, {len(self.mail.expunged)} expunged, "
              f"{len(self.mail.flagged)} flagged; {stored} messages on each replica; "
              f"problems={len(problems)}", flush=True)
        for p in problems[:20]:
            print("  " + p)
        assert not problems, f"{len(problems)} problems"


def main():
    def body(c, check):
        s = Snap(c)
        t0 = time.monotonic()
        for name, fn in (("baseline", s.baseline),
                         ("store_replica_catches_up_by_snapshot", s.store_tier),
                         ("queue_replica_catches_up_by_snapshot", s.queue_tier),
                         ("queue_primary_killed_delivered_once", s.queue_failover),
                         ("replicas_identical_acks_once_with_flags", s.final_audit)):
            check(name, fn)
            print(f"  ({name} done at +{time.monotonic() - t0:.1f}s)", flush=True)
    return e2e_harness.run("mail-snapshot-", body, stores=3, queues=3, lease_ttl=TTL_S,
                           partitions=PARTITIONS, log_keep=LOG_KEEP)


if __name__ == "__main__":
    sys.exit(main())
