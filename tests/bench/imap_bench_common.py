"""What the IMAP benchmarks (dovecot-bench, imap-idle-mem, imap-push-latency)
share: the test messages, populating a mailbox through SMTP (ours) or IMAP
APPEND (Dovecot), a cluster of ours on free ports, and reading a process
tree's CPU and memory from /proc. Standard library only."""
import concurrent.futures
import imaplib
import json
import os
import smtplib
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "cluster"))
sys.path.insert(0, os.path.join(ROOT, "tests", "support"))
import local  # noqa: E402
import dovecot  # noqa: E402,F401  (re-exported: common.dovecot)
import extra_frontend  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
DOMAIN = "example.test"


def bin_dir():
    return os.environ.get("MAIL_BIN_DIR", os.path.join(ROOT, "build", "bin"))


def tool(name):
    """Path of a benchmark binary (imap-load, imap-idle-mem) in the build."""
    path = os.path.join(bin_dir(), name)
    if not os.path.exists(path):
        raise SystemExit(f"{path} is missing: cmake --build build --target {name}")
    return path


def message(user, i, size):
    """The i-th test message for user: plain text, size bytes or a little
    more, CRLF line ends."""
    head = (f"From: Bench Sender <sender{i % 7}@remote.test>\r\n"
            f"To: <{user}>\r\n"
            f"Subject: bench message {i} for {user}\r\n"
            f"Date: Mon, 7 Dec 2026 10:{i // 60 % 60:02d}:{i % 60:02d} +0000\r\n"
            f"Message-ID: <bench-{i}-{user}>\r\n"
            "MIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=us-ascii\r\n\r\n")
    line = "the quick brown fox jumps over the lazy dog %08d" % i
    body = []
    n = len(head)
    while n < size:
        body.append(line)
        n += len(line) + 2
    return (head + "\r\n".join(body) + "\r\n").encode()


def users(n, first=1, password="bench-pw-1"):
    return {f"bench{i}@{DOMAIN}": password for i in range(first, first + n)}


# ---- populating ----------------------------------------------------------------

def populate_smtp(port, user_list, count, size, workers=8, first=0):
    """Deliver count messages to each user through SMTP on 127.0.0.1:port
    (workers connections, each sending many messages). Returns seconds."""
    t0 = time.monotonic()
    jobs = [(u, i) for i in range(first, first + count) for u in user_list]
    chunks = [jobs[k::workers] for k in range(workers)]

    def send(chunk):
        s = smtplib.SMTP("127.0.0.1", port, timeout=120)
        try:
            for n, (u, i) in enumerate(chunk):
                for attempt in range(20):
                    try:
                        s.sendmail("sender@remote.test", [u], message(u, i, size))
                        break
                    except smtplib.SMTPResponseException as e:
                        if e.smtp_code // 100 != 4 or attempt == 19:
                            raise
                        time.sleep(0.5)
                    except (smtplib.SMTPServerDisconnected, OSError):
                        if attempt == 19:
                            raise
                        time.sleep(0.5)
                        s = smtplib.SMTP("127.0.0.1", port, timeout=120)
        finally:
            try:
                s.quit()
            except Exception:
                pass
    with concurrent.futures.ThreadPoolExecutor(workers) as ex:
        for f in [ex.submit(send, c) for c in chunks if c]:
            f.result()
    return time.monotonic() - t0


def populate_append(port, accounts, count, size, workers=4, first=0):
    """APPEND count messages to each user's INBOX over IMAP (Dovecot).
    accounts: {user: password}."""
    t0 = time.monotonic()

    def fill(item):
        u, pw = item
        m = imaplib.IMAP4("127.0.0.1", port, timeout=120)
        m.login(u, pw)
        for i in range(first, first + count):
            typ, data = m.append("INBOX", None, None, message(u, i, size))
            if typ != "OK":
                raise RuntimeError(f"APPEND for {u}: {data}")
        m.logout()
    with concurrent.futures.ThreadPoolExecutor(workers) as ex:
        for f in [ex.submit(fill, it) for it in accounts.items()]:
            f.result()
    return time.monotonic() - t0


def wait_exists(port, accounts, count, timeout=300):
    """Wait until every user's INBOX holds at least count messages (the
    queue delivers after SMTP's 250). Returns {user: exists}."""
    deadline = time.monotonic() + timeout
    have = {}
    for u, pw in accounts.items():
        while True:
            m = imaplib.IMAP4("127.0.0.1", port, timeout=60)
            try:
                m.login(u, pw)
                typ, data = m.select("INBOX", readonly=True)
                have[u] = int(data[0]) if typ == "OK" else -1
            finally:
                try:
                    m.logout()
                except Exception:
                    pass
            if have[u] >= count:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{u}: {have[u]} of {count} messages after {timeout} s")
            time.sleep(1)
    return have


# ---- our cluster ---------------------------------------------------------------

def start_cluster(replicas=3, stores=3, queues=3, frontends=1, **kw):
    """A cluster on free ports in a temporary state dir (R=replicas).
    Returns it, started; c.down() and remove c.state when done."""
    state = tempfile.mkdtemp(prefix="imap-bench-")
    c = local.Cluster.with_free_ports(state, bin_dir(), stores=stores, queues=queues,
                                      replicas=replicas, **kw)
    c.up()
    return c


def wait_settled(c, quiet=6.0, timeout=150.0):
    """Wait until the partition maps stop changing: after a start the
    controller still moves primaries onto the nodes that joined last, a
    few partitions per pass (each move a short write pause), for a minute
    or so. A measurement of the steady state waits for the maps' epochs to
    stay still for `quiet` seconds. Returns the seconds waited."""
    t0 = time.monotonic()
    last, since = None, time.monotonic()
    while time.monotonic() - t0 < timeout:
        r = c.mailctl("status", "--json", check=False)
        try:
            parts = json.loads(r.stdout)["partitions"]
            now = tuple(parts[role].get("epoch") for role in ("store", "queue"))
        except (ValueError, KeyError, TypeError):
            now = None
        if now is None or now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
        time.sleep(0.5)
    return time.monotonic() - t0


def add_users(c, accounts):
    for u, pw in accounts.items():
        r = c.mailctl("user", "add", u, stdin=pw + "\n", check=False)
        if r.returncode not in (0, 3):
            raise RuntimeError(f"mailctl user add {u}: {r.stderr}")


def cluster_pids(c):
    return [p for p in (c.pid(name) for name, *_ in c.specs()) if p]


# ---- /proc ---------------------------------------------------------------------

def cpu_seconds(pids, children=False):
    """utime+stime of pids (plus what their reaped children used)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += int(fields[11]) + int(fields[12])
        if children:
            total += int(fields[13]) + int(fields[14])
    return total / TICK


def memory_kib(pids):
    """{"rss": KiB, "pss": KiB, "anon": KiB (Private_Dirty + anon PSS-ish)}
    summed over pids, from /proc/PID/smaps_rollup."""
    out = {"rss": 0, "pss": 0, "private": 0}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    k, _, v = line.partition(":")
                    if k == "Rss":
                        out["rss"] += int(v.split()[0])
                    elif k == "Pss":
                        out["pss"] += int(v.split()[0])
                    elif k in ("Private_Dirty", "Private_Clean"):
                        out["private"] += int(v.split()[0])
        except OSError:
            continue
    return out



def start_extra_frontend(c, name):
    """A second frontend on cluster c (tests/support/extra_frontend.py)."""
    return extra_frontend.ExtraFrontend(c, name)
