#!/usr/bin/env python3
"""SELECT of a 1,000,000-message mailbox, and what it costs the other users
of that store node (issue 9 item 4). A benchmark behind a flag, not part of
the default suite: about two minutes of both cores (five with --holes) and
~0.5 GiB of disk (0.7 GiB with --holes).

  tests/bench/imap_huge_select.py [--messages 1000000] [--size 300] [--holes]
        [--batch 1000] [--pipeline 2] [--selects 3] [--stall-limit 2.0]
        [--no-full-search] [--settle 5] [--state DIR] [--keep]

1. A cluster on free ports (cluster/local.py: 1 store node, 1 queue node,
   R=1, one frontend; the binaries of MAIL_BIN_DIR or build/bin). User
   huge@example.test gets --messages messages of --size bytes each (real
   RFC 5322 headers, a distinct Subject and Message-ID each; all \\Seen but
   the last 10) in INBOX, and small@example.test, on the same (only) store
   node, 200 messages. The mail goes in through the frontend as a
   client's would: IMAP MULTIAPPEND (RFC 3502) of --batch messages per
   command with LITERAL+, --pipeline commands in flight on one connection,
   so message n gets uid n (checked from APPENDUID). Each APPEND is one
   store APPEND RPC, one entry of the partition's replicated log and one
   LevelDB batch on the store node: the path of any client's APPEND,
   nothing written behind the store's back. (Delivery through SMTP and the
   queue makes a queue entry and a store log entry per message, each
   synced: a thousand times the sync writes.) --holes appends twice as
   many, every even one \\Deleted, and removes those with UID EXPUNGE
   (2 x --batch uids a command) first: uids 1, 3, 5... are left, so the
   session's UID map is a bitmap instead of one run, and each OPEN page
   carries 20,000 one-uid ranges. With --state DIR the cluster lives in DIR
   and the next run with the same DIR reuses it, populated.
2. Through the frontend over IMAP (imaplib, 127.0.0.1): LOGIN as huge,
   SELECT INBOX --selects times (the first one after population is
   "cold"), checking `* N EXISTS`, UIDNEXT and UNSEEN each time; then
   FETCH N (UID FLAGS), FETCH 1:10 (ENVELOPE), UID SEARCH HEADER
   Message-ID of one message (within a UID range of 10,000, then the whole
   mailbox), STORE N +FLAGS (\\Flagged), NOOP, FETCH N (FLAGS), each timed
   and its answer checked. The frontend's RSS (VmRSS) before and after
   LOGIN, after the first SELECT, at the end, and its peak during the
   SELECTs (sampled every 10 ms); the store node's RSS; the store node's
   largest reply queued on one connection (metric
   mail_rpc_out_peak_bytes), which must stay under the frame limit.
3. All the while, a second client (small@example.test) loops over connect,
   LOGIN, SELECT INBOX, FETCH 1:* (FLAGS), NOOP, LOGOUT, each command timed
   and its answer checked (200 EXISTS, 200 FETCH answers). For each big
   command above: the other user's requests that overlapped it, their
   count, p50, p99 and max. The run fails if a request of the other user
   that overlapped a big SELECT took more than --stall-limit seconds (2 s:
   the "does not stall" check), if none of its requests started and was
   answered within a big SELECT, or if any of its requests failed.
4. Exit status 0 when every check passed, 1 otherwise (each failure
   printed, then the warning and error lines of the frontend's and store
   node's logs). The other timings are printed, not asserted.

Standard library only. Registered in ctest as `imap_huge_select` with the
labels `soak;huge`, so the default runs (`-LE soak`) leave it out;
`ctest -L huge` runs it. Figures: docs/imap-bench.md.
"""
import argparse
import imaplib
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "cluster"))
import local  # noqa: E402

DOMAIN = "example.test"
HUGE, HUGE_PW = f"huge@{DOMAIN}", "huge-pw-1"
SMALL, SMALL_PW = f"small@{DOMAIN}", "small-pw-1"
SMALL_COUNT = 200
RPC_FRAME_MAX = 72 * 1024 * 1024   # proto/rpc.h
UNSEEN_TAIL = 10   # the last 10 messages of the huge mailbox have no \Seen

FAILURES = []


def fail(what):
    FAILURES.append(what)
    print(f"FAIL: {what}", flush=True)


def bin_dir():
    return os.environ.get("MAIL_BIN_DIR", os.path.join(ROOT, "build", "bin"))


# ---- messages ---------------------------------------------------------------

def message(user, tag, n, size):
    """Message n (1-based) of user: real RFC 5322 headers, a text body padded
    with CRLF lines to exactly size bytes (at least the header's length)."""
    head = (f"From: Sender {n % 97} <sender{n % 97}@remote.test>\r\n"
            f"To: <{user}>\r\n"
            f"Subject: {tag} mailbox message {n}\r\n"
            f"Date: Mon, 7 Dec 2026 {n // 3600 % 24:02d}:{n // 60 % 60:02d}:{n % 60:02d} +0000\r\n"
            f"Message-ID: <{tag}-{n}@bench.{DOMAIN}>\r\n"
            "MIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=us-ascii\r\n\r\n").encode()
    body = b"message %d of a large mailbox\r\n" % n
    left = size - len(head) - len(body)
    while left > 0:
        line = min(left, 76)
        if line < 3:
            body += b"." * line
            break
        body += b"x" * (line - 2) + b"\r\n"
        left -= line
    return head + body


def message_id(tag, n):
    return f"<{tag}-{n}@bench.{DOMAIN}>"


# ---- raw IMAP for populating (MULTIAPPEND with LITERAL+) -------------------

class RawImap:
    """One plaintext IMAP connection that sends whole commands and reads
    answers up to the tagged line (no literals in the answers it reads)."""

    def __init__(self, port, timeout=600):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.f = self.sock.makefile("rb")
        greeting = self.f.readline()
        if not greeting.startswith(b"* OK"):
            raise RuntimeError(f"greeting: {greeting!r}")
        self.n = 0

    def send(self, cmd):
        """Send cmd (bytes after the tag, ending in CRLF); returns the tag."""
        self.n += 1
        tag = b"p%d" % self.n
        self.sock.sendall(tag + b" " + cmd)
        return tag

    def wait(self, tag):
        """The untagged lines and the tagged line of tag."""
        lines = []
        while True:
            line = self.f.readline()
            if not line:
                raise RuntimeError("connection closed by the server")
            if line.startswith(tag + b" "):
                return lines, line.rstrip(b"\r\n")
            lines.append(line)

    def call(self, cmd):
        return self.wait(self.send(cmd))

    def close(self):
        try:
            self.call(b"LOGOUT\r\n")
        except Exception:
            pass
        self.sock.close()


def append_flags(n, total, holes):
    """Message n's flags at APPEND: with holes every even one is \\Deleted
    (expunged next); the last UNSEEN_TAIL messages kept have no \\Seen."""
    if holes and n % 2 == 0:
        return b"(\\Seen \\Deleted)"
    return b"()" if n > total - UNSEEN_TAIL * (2 if holes else 1) else b"(\\Seen)"


def append_batch_cmd(user, tag, first, count, size, total, holes):
    parts = [b"APPEND INBOX"]
    for n in range(first, first + count):
        flags = append_flags(n, total, holes)
        body = message(user, tag, n, size)
        parts.append(b" %s {%d+}\r\n" % (flags, len(body)))
        parts.append(body)
    parts.append(b"\r\n")
    return b"".join(parts)


APPENDUID = re.compile(rb"\[APPENDUID (\d+) (\d+)(?::(\d+))?\]")


def populate(port, user, pw, tag, total, size, batch, pipeline, holes=False, progress=True):
    """APPEND total messages to user's INBOX in batches; checks that message
    n got uid n. Returns seconds."""
    c = RawImap(port)
    _, ok = c.call(b'LOGIN "%s" "%s"\r\n' % (user.encode(), pw.encode()))
    if b" OK" not in ok:
        raise RuntimeError(f"LOGIN {user}: {ok!r}")
    t0 = time.monotonic()
    last_print = t0
    inflight = []   # (tag, first, count)
    next_n = 1
    done = 0
    while done < total:
        while next_n <= total and len(inflight) < pipeline:
            count = min(batch, total - next_n + 1)
            cmd = append_batch_cmd(user, tag, next_n, count, size, total, holes)
            inflight.append((c.send(cmd), next_n, count))
            next_n += count
        t, first, count = inflight.pop(0)
        _, line = c.wait(t)
        m = APPENDUID.search(line)
        if b" OK" not in line or m is None:
            raise RuntimeError(f"APPEND of messages {first}..{first + count - 1}: {line!r}")
        lo = int(m.group(2))
        hi = int(m.group(3) or lo)
        if (lo, hi) != (first, first + count - 1):
            raise RuntimeError(f"APPEND of messages {first}..{first + count - 1} got uids "
                               f"{lo}:{hi} (the mailbox was not empty?)")
        done += count
        now = time.monotonic()
        if progress and (now - last_print >= 15 or done == total):
            last_print = now
            print(f"  {user}: {done:>8} messages in {now - t0:6.1f} s "
                  f"({done / (now - t0):7.0f} msg/s)", flush=True)
    c.close()
    return time.monotonic() - t0


def expunge_holes(port, user, pw, total, step):
    """SELECT the mailbox of total messages (every even uid \\Deleted) and
    UID EXPUNGE it step uids at a time: uids 1, 3, 5... are left. Returns
    (seconds of the SELECT, seconds of the expunges)."""
    c = RawImap(port)
    _, ok = c.call(b'LOGIN "%s" "%s"\r\n' % (user.encode(), pw.encode()))
    if b" OK" not in ok:
        raise RuntimeError(f"LOGIN {user}: {ok!r}")
    t0 = time.monotonic()
    lines, ok = c.call(b"SELECT INBOX\r\n")
    t_select = time.monotonic() - t0
    if b" OK" not in ok or b"* %d EXISTS\r\n" % total not in lines:
        raise RuntimeError(f"SELECT of {total} messages: {ok!r} {lines[:4]!r}")
    t0 = time.monotonic()
    last_print = t0
    gone = 0
    for lo in range(1, total + 1, step):
        hi = min(total, lo + step - 1)
        lines, ok = c.call(b"UID EXPUNGE %d:%d\r\n" % (lo, hi))
        n = sum(1 for x in lines if x.endswith(b" EXPUNGE\r\n"))
        if b" OK" not in ok or n != hi // 2 - (lo - 1) // 2:
            raise RuntimeError(f"UID EXPUNGE {lo}:{hi}: {ok!r}, {n} expunged")
        gone += n
        now = time.monotonic()
        if now - last_print >= 15 or hi == total:
            last_print = now
            print(f"  {user}: {gone:>8} messages expunged in {now - t0:6.1f} s", flush=True)
    c.close()
    return t_select, time.monotonic() - t0


# ---- measuring ----------------------------------------------------------------

def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class RssSampler(threading.Thread):
    """The peak VmRSS of pid while armed (every 10 ms)."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self.armed = threading.Event()
        self.stop = threading.Event()

    def sample(self):
        self.peak = max(self.peak, rss_kib(self.pid))

    def run(self):
        while not self.stop.is_set():
            if self.armed.is_set():
                self.sample()
            time.sleep(0.01)


class OtherUser(threading.Thread):
    """small@: connect, LOGIN, SELECT, FETCH 1:* (FLAGS), NOOP, LOGOUT in a
    loop; every command's (name, start, end, ok, detail) recorded."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.samples = []
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def timed(self, name, fn, check):
        t0 = time.monotonic()
        ok, detail = True, ""
        try:
            result = fn()
            detail = check(result)
            ok = detail == ""
        except Exception as e:  # recorded; the run fails on it
            ok, detail, result = False, f"{type(e).__name__}: {e}", None
        t1 = time.monotonic()
        with self.lock:
            self.samples.append((name, t0, t1, ok, detail))
        if not ok:
            raise RuntimeError(detail)
        return result

    def run(self):
        def tagged_ok(r):
            return "" if r[0] == "OK" else f"answer {r!r}"

        def select_ok(r):
            if r[0] != "OK":
                return f"answer {r!r}"
            return "" if int(r[1][0]) == SMALL_COUNT else f"EXISTS {r[1][0]!r}, not {SMALL_COUNT}"

        def fetch_ok(r):
            if r[0] != "OK":
                return f"answer {r!r}"
            n = sum(1 for x in r[1] if x and b"FLAGS" in x)
            return "" if n == SMALL_COUNT else f"{n} FETCH answers, not {SMALL_COUNT}"

        while not self.stop.is_set():
            m = None
            try:
                m = self.timed("connect", lambda: imaplib.IMAP4("127.0.0.1", self.port,
                                                                  timeout=60),
                               lambda r: "")
                self.timed("LOGIN", lambda: m.login(SMALL, SMALL_PW), tagged_ok)
                self.timed("SELECT", lambda: m.select("INBOX"), select_ok)
                self.timed("FETCH", lambda: m.fetch("1:*", "(FLAGS)"), fetch_ok)
                self.timed("NOOP", lambda: m.noop(), tagged_ok)
                self.timed("LOGOUT", lambda: m.logout(), lambda r: "" if r[0] == "BYE" else
                           f"answer {r!r}")
            except Exception:
                time.sleep(0.05)   # recorded by timed(); go on with a new session
                if m is not None:
                    try:
                        m.shutdown()
                    except Exception:
                        pass

    def window(self, t0, t1):
        """The requests that overlapped [t0, t1]."""
        with self.lock:
            return [s for s in self.samples if s[1] < t1 and s[2] > t0]


def store_out_peak(c):
    """The store node's mail_rpc_out_peak_bytes (server side): the most
    reply bytes ever queued on one of its connections, an upper bound of
    its largest single answer since it started."""
    url = f"http://127.0.0.1:{c.metrics_port('store-1')}/metrics"
    with urllib.request.urlopen(url, timeout=10) as r:
        for line in r.read().decode().splitlines():
            if (line.startswith("mail_rpc_out_peak_bytes{") and 'role="server"' in line
                    and 'service="store"' in line):
                return int(line.rsplit(None, 1)[1])
    raise RuntimeError(f"no mail_rpc_out_peak_bytes in {url}")


def pct(values, p):
    if not values:
        return 0.0
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * p / 100.0))]


def fmt_ms(s):
    return f"{s * 1000:8.1f}"


# ---- the cluster ------------------------------------------------------------

def open_cluster(state):
    conf = os.path.join(state, "huge-select.json")
    if os.path.exists(conf):
        with open(conf) as f:
            saved = json.load(f)
        c = local.Cluster(state, bin_dir(), saved["ports"], stores=1, queues=1, replicas=1)
        c.node_ports = saved["node_ports"]
        return c, saved
    c = local.Cluster.with_free_ports(state, bin_dir(), stores=1, queues=1, replicas=1)
    saved = {"ports": c.ports, "node_ports": c.node_ports, "populated": None}
    with open(conf, "w") as f:
        json.dump(saved, f)
    return c, saved


def save_conf(state, saved):
    with open(os.path.join(state, "huge-select.json"), "w") as f:
        json.dump(saved, f)


def wait_login(port, user, pw, timeout=60):
    """Wait until user can LOGIN and SELECT (the ring has a primary)."""
    deadline = time.monotonic() + timeout
    err = None
    while True:
        try:
            m = imaplib.IMAP4("127.0.0.1", port, timeout=30)
            try:
                m.login(user, pw)
                typ, data = m.select("INBOX", readonly=True)
                if typ == "OK":
                    return int(data[0])
                err = f"SELECT: {typ} {data}"
            finally:
                try:
                    m.logout()
                except Exception:
                    pass
        except Exception as e:
            err = e
        if time.monotonic() > deadline:
            raise RuntimeError(f"{user}: no SELECT after {timeout} s: {err}")
        time.sleep(0.5)


def error_lines(c):
    out = []
    for name in ("frontend-1", "store-1"):
        text = c.log_events(name, r"level=(error|warn)|ERROR|WARN", n=20)
        if text:
            out.append(f"--- {c.logfile(name)} (errors and warnings, last 20)\n{text}")
    return "".join(out)


# ---- the big user's session ----------------------------------------------------

def big_session(a, other, port, fe_pid, sampler):
    """The huge user's session. Returns (rows, rss): rows of (what, t0, t1,
    the other user's requests that overlapped it), rss {moment: KiB}."""
    n = a.messages
    # message number = uid; with holes sequence number s is uid 2s-1
    def uid_of(seq):
        return 2 * seq - 1 if a.holes else seq
    uidnext = uid_of(n) + (2 if a.holes else 1)
    rows = []

    def measured(what, fn):
        t0 = time.monotonic()
        r = fn()
        t1 = time.monotonic()
        rows.append((what, t0, t1, other.window(t0, t1)))
        return r

    rss = {"before LOGIN": rss_kib(fe_pid)}
    m = imaplib.IMAP4("127.0.0.1", port, timeout=900)
    typ, data = m.login(HUGE, HUGE_PW)
    if typ != "OK":
        fail(f"LOGIN {HUGE}: {typ} {data}")
        return rows, rss
    rss["after LOGIN"] = rss_kib(fe_pid)
    for i in range(a.selects):
        sampler.armed.set()
        typ, data = measured(f"SELECT #{i + 1}{' (cold)' if i == 0 else ''}",
                             lambda: m.select("INBOX"))
        sampler.armed.clear()
        sampler.sample()   # a SELECT shorter than the sampling period
        if typ != "OK":
            fail(f"SELECT #{i + 1}: {typ} {data}")
            return rows, rss
        exists = int(data[0])
        got_uidnext = m.response("UIDNEXT")[1]
        unseen = m.response("UNSEEN")[1]
        if exists != n:
            fail(f"SELECT #{i + 1}: * {exists} EXISTS, expected {n}")
        if got_uidnext != [str(uidnext).encode()]:
            fail(f"SELECT #{i + 1}: UIDNEXT {got_uidnext}, expected {uidnext}")
        if unseen != [str(n - UNSEEN_TAIL + 1).encode()]:
            fail(f"SELECT #{i + 1}: UNSEEN {unseen}, expected {n - UNSEEN_TAIL + 1}")
        if i == 0:
            rss["after SELECT"] = rss_kib(fe_pid)
    rss["peak during SELECTs"] = sampler.peak

    typ, data = measured(f"FETCH {n} (UID FLAGS)", lambda: m.fetch(str(n), "(UID FLAGS)"))
    got = b" ".join(x for x in data if isinstance(x, bytes)) if typ == "OK" else b""
    if (typ != "OK" or not re.search(rb"^%d \(.*UID %d\b" % (n, uid_of(n)), got)
            or b"\\Seen" in got):
        fail(f"FETCH {n} (UID FLAGS): {typ} {data}, expected UID {uid_of(n)} without \\Seen")

    typ, data = measured("FETCH 1:10 (ENVELOPE)", lambda: m.fetch("1:10", "(ENVELOPE)"))
    envs = [x for x in data if isinstance(x, bytes) and b"ENVELOPE" in x] if typ == "OK" else []
    if len(envs) != 10 or not all(
            b'"huge mailbox message %d"' % uid_of(k) in envs[k - 1]
            and message_id("huge", uid_of(k)).encode() in envs[k - 1] for k in range(1, 11)):
        fail(f"FETCH 1:10 (ENVELOPE): {typ} {data[:3]}...")

    target = uid_of(n * 3 // 4 + 7)
    mid = message_id("huge", target)
    lo, hi = max(1, target - 5000), target + 5000
    typ, data = measured(f"UID SEARCH UID {lo}:{hi} HEADER Message-ID",
                         lambda: m.uid("SEARCH", "UID", f"{lo}:{hi}", "HEADER", "Message-ID",
                                       f'"{mid}"'))
    if typ != "OK" or data != [str(target).encode()]:
        fail(f"UID SEARCH UID {lo}:{hi} HEADER Message-ID {mid}: {typ} {data}, "
             f"expected [{target}]")
    if not a.no_full_search:
        typ, data = measured(f"UID SEARCH HEADER Message-ID (all {n})",
                             lambda: m.uid("SEARCH", "HEADER", "Message-ID", f'"{mid}"'))
        if typ != "OK" or data != [str(target).encode()]:
            fail(f"UID SEARCH HEADER Message-ID {mid}: {typ} {data}, expected [{target}]")

    typ, data = measured(f"STORE {n} +FLAGS (\\Flagged)",
                         lambda: m.store(str(n), "+FLAGS", "(\\Flagged)"))
    if typ != "OK" or not data or data[0] is None or b"\\Flagged" not in data[0]:
        fail(f"STORE {n} +FLAGS (\\Flagged): {typ} {data}")
    typ, data = measured("NOOP", lambda: m.noop())
    if typ != "OK":
        fail(f"NOOP: {typ} {data}")
    typ, data = measured(f"FETCH {n} (FLAGS) after STORE", lambda: m.fetch(str(n), "(FLAGS)"))
    if typ != "OK" or not data or data[0] is None or b"\\Flagged" not in data[0]:
        fail(f"FETCH {n} (FLAGS) after STORE: {typ} {data}")
    # put it back, so that a run with --state finds the mailbox as it was
    m.store(str(n), "-FLAGS.SILENT", "(\\Flagged)")
    rss["end of session"] = rss_kib(fe_pid)
    m.logout()
    time.sleep(0.5)
    rss["after LOGOUT"] = rss_kib(fe_pid)
    return rows, rss


def report(a, rows, rss, other, t_big, store_rss, out_peak):
    """Print the figures; fail() on the other user's checks."""
    print(f"\n{a.messages} messages of {a.size} B in {HUGE}'s INBOX"
          f"{' (uids 1, 3, 5...: every other one expunged)' if a.holes else ''}; the other "
          f"user ({SMALL}, {SMALL_COUNT} messages) loops connect/LOGIN/SELECT/FETCH 1:*/"
          "NOOP/LOGOUT meanwhile\n")
    base = [s[2] - s[1] for s in other.samples if s[2] < t_big and s[3]]
    print(f"{'command of ' + HUGE:<52} {'secs':>7}   other user during it: "
          f"{'reqs':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    print(f"{'(baseline: the other user alone, before)':<52} {'':>7}   {'':>21}"
          f"{len(base):>5} {fmt_ms(pct(base, 50))} {fmt_ms(pct(base, 99))} "
          f"{fmt_ms(max(base) if base else 0)}")
    sel_lat, inside = [], 0
    for what, t0, t1, win in rows:
        lat = [s[2] - s[1] for s in win]
        if what.startswith("SELECT"):
            sel_lat += lat
            inside += sum(1 for s in win if s[1] >= t0 and s[2] <= t1 and s[3])
        print(f"{what:<52} {t1 - t0:7.3f}   {'':>21}{len(win):>5} {fmt_ms(pct(lat, 50))} "
              f"{fmt_ms(pct(lat, 99))} {fmt_ms(max(lat) if lat else 0)}")
    print("\nfrontend RSS (KiB): " + ", ".join(f"{k} {v}" for k, v in rss.items()))
    if "after LOGIN" in rss and "after SELECT" in rss:
        print(f"frontend RSS delta of the selected session: "
              f"{rss['after SELECT'] - rss['after LOGIN']} KiB after the first SELECT, "
              f"peak {rss.get('peak during SELECTs', 0) - rss['after LOGIN']} KiB during "
              "the SELECTs (above the logged-in session)")
    print(f"store node RSS (KiB): before the session {store_rss[0]}, after {store_rss[1]}")
    print(f"store node's largest reply queued on one connection since it started "
          f"(mail_rpc_out_peak_bytes): {out_peak} bytes (frame limit {RPC_FRAME_MAX})")
    if out_peak >= RPC_FRAME_MAX:
        fail(f"the store node queued a reply of {out_peak} bytes, over the frame limit")
    if sel_lat:
        print(f"other user during the big SELECTs: {len(sel_lat)} requests overlapped them "
              f"({inside} started and answered within), p99 {pct(sel_lat, 99) * 1000:.1f} ms, "
              f"max {max(sel_lat) * 1000:.1f} ms (limit {a.stall_limit * 1000:.0f} ms)")
    for name, t0, _, _, detail in [s for s in other.samples if not s[3]][:10]:
        fail(f"other user's {name} at +{t0 - t_big:.2f} s failed: {detail}")
    if any(r[0].startswith("SELECT") for r in rows):
        if inside == 0:
            fail("the other user was not served during the big SELECTs (no request of "
                 "its started and was answered within one)")
        if sel_lat and max(sel_lat) > a.stall_limit:
            fail(f"the other user waited {max(sel_lat) * 1000:.1f} ms during a big SELECT "
                 f"(limit {a.stall_limit * 1000:.0f} ms)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=1000000)
    ap.add_argument("--size", type=int, default=300, help="bytes per message (300)")
    ap.add_argument("--holes", action="store_true",
                    help="append twice as many and expunge every other one first (the "
                    "session's UID map is then a bitmap, not one run)")
    ap.add_argument("--batch", type=int, default=1000, help="messages per APPEND (1000)")
    ap.add_argument("--pipeline", type=int, default=2, help="APPENDs in flight (2)")
    ap.add_argument("--selects", type=int, default=3, help="SELECTs of the big mailbox (3)")
    ap.add_argument("--stall-limit", type=float, default=2.0,
                    help="longest wait (s) of the other user during a big SELECT (2.0)")
    ap.add_argument("--settle", type=float, default=5.0,
                    help="seconds between populating and measuring (5)")
    ap.add_argument("--no-full-search", action="store_true",
                    help="skip the UID SEARCH over the whole mailbox")
    ap.add_argument("--state", help="cluster directory, kept and reused when populated")
    ap.add_argument("--keep", action="store_true", help="keep the temporary cluster dir")
    a = ap.parse_args()
    if a.messages < 1000:
        ap.error("--messages must be at least 1000")

    state = a.state or tempfile.mkdtemp(prefix="imap-huge-select-")
    os.makedirs(state, exist_ok=True)
    c, saved = open_cluster(state)
    want = {"messages": a.messages, "size": a.size, "holes": a.holes}
    if saved.get("populated") not in (None, want):
        raise SystemExit(f"{state} holds {saved['populated']}, not {want}: use another --state")
    print(f"cluster in {state}: 1 store node, 1 queue node, R=1, one frontend", flush=True)
    try:
        c.up()
        port = c.ports["imap"]
        for u, pw in ((HUGE, HUGE_PW), (SMALL, SMALL_PW)):
            r = c.mailctl("user", "add", u, stdin=pw + "\n", check=False)
            if r.returncode not in (0, 3):
                raise RuntimeError(f"mailctl user add {u}: {r.stderr}")
        if saved.get("populated") is None:
            for u, pw in ((HUGE, HUGE_PW), (SMALL, SMALL_PW)):
                have = wait_login(port, u, pw)
                if have != 0:
                    raise SystemExit(f"{u} already has {have} messages: use a fresh --state")
            total = a.messages * (2 if a.holes else 1)
            print(f"populating: {total} x {a.size} B messages for {HUGE}, MULTIAPPEND of "
                  f"{a.batch} per command, {a.pipeline} in flight", flush=True)
            populate(port, SMALL, SMALL_PW, "small", SMALL_COUNT, a.size, a.batch, 1,
                     progress=False)
            secs = populate(port, HUGE, HUGE_PW, "huge", total, a.size, a.batch, a.pipeline,
                            holes=a.holes)
            print(f"populated in {secs:.1f} s ({total / secs:.0f} msg/s)", flush=True)
            saved["populate_seconds"] = secs
            if a.holes:
                t_sel, t_exp = expunge_holes(port, HUGE, HUGE_PW, total, 2 * a.batch)
                print(f"SELECT of {total} messages: {t_sel:.3f} s; every other one expunged "
                      f"in {t_exp:.1f} s (UID EXPUNGE of {a.batch} per command)", flush=True)
                saved["expunge_seconds"] = t_exp
            saved["populated"] = want
            save_conf(state, saved)
        else:
            print(f"reusing the populated store ({saved.get('populate_seconds', 0):.0f} s "
                  "to populate)", flush=True)
            wait_login(port, SMALL, SMALL_PW)
        time.sleep(a.settle)

        fe_pid = c.pid("frontend-1")
        store_pid = c.pid("store-1")
        sampler = RssSampler(fe_pid)
        sampler.start()
        other = OtherUser(port)
        other.start()
        time.sleep(3)   # a baseline of the other user's latencies
        t_big = time.monotonic()
        store_rss0 = rss_kib(store_pid)
        rows, rss = big_session(a, other, port, fe_pid, sampler)
        store_rss1 = rss_kib(store_pid)
        time.sleep(1)
        other.stop.set()
        other.join(120)
        sampler.stop.set()
        report(a, rows, rss, other, t_big, (store_rss0, store_rss1), store_out_peak(c))
    except Exception as e:
        fail(f"{type(e).__name__}: {e}")
    finally:
        if FAILURES:
            sys.stdout.write(error_lines(c))
        c.down()
        if a.state is None and not a.keep and not FAILURES:
            shutil.rmtree(state, ignore_errors=True)
        elif a.state is None:
            print(f"cluster state kept in {state}")
    if FAILURES:
        print(f"\n{len(FAILURES)} check(s) failed")
        return 1
    print("\nall checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
