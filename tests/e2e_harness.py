"""Shared frame of the end-to-end tests: a cluster on free ports in a
temporary state dir, named checks, and the closing rules every e2e test
asserts (`down` leaves no process behind; log tails on failure; the plain
"N passed, N failed" line). Standard library only."""
import os
import shutil
import smtplib
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "cluster"))
import local  # noqa: E402


def bin_dir():
    return os.environ.get("MAIL_BIN_DIR") or os.path.join(os.path.dirname(HERE), "build", "bin")


def partition_of(key, partitions):
    """router_partition_of(): lib/util.c util_hash64 (FNV-1a 64, then a
    splitmix64 finaliser) mod partitions."""
    mask = (1 << 64) - 1
    h = 0xcbf29ce484222325
    for b in key.encode():
        h = ((h ^ b) * 0x100000001b3) & mask
    h ^= h >> 30
    h = (h * 0xbf58476d1ce4e5b9) & mask
    h ^= h >> 27
    h = (h * 0x94d049bb133111eb) & mask
    h ^= h >> 31
    return h % partitions




TRACE_FIELDS = (b"Received:", b"Authentication-Results:", b"Received-SPF:")


def split_trace(raw, names=TRACE_FIELDS):
    """(the fields named names at the top of raw, each whole with its folded
    lines, what follows them)."""
    fields = []
    while raw.lower().startswith(tuple(n.lower() for n in names)):
        end = raw.index(b"\n") + 1
        while raw[end:end + 1] in (b" ", b"\t"):   # folded: the field goes on
            end = raw.index(b"\n", end) + 1
        fields.append(raw[:end])
        raw = raw[end:]
    return fields, raw


def as_sent(body):
    """The message as its sender wrote it. What we deliver is that after our
    own Received: field (frontend/smtp/smtp-trace.h), which comes first, and
    on the MX our Authentication-Results and Received-SPF (docs/inbound.md);
    no Received: first is an error."""
    assert body.startswith(b"Received: from "), body[:80]
    fields, rest = split_trace(body, (b"Received:",))
    _, rest = split_trace(b"".join(fields[1:]) + rest)
    return rest


def submit(cluster, ctx, user, password, rcpts, body, helo=None):
    """Submit body (bytes) from user to rcpts on the cluster's submission
    port with STARTTLS (ssl context ctx) and AUTH, as a mail client does
    (EHLO helo when given, else smtplib's default name); every reply must
    be 250. Returns the queue id of the final 250."""
    with smtplib.SMTP("127.0.0.1", cluster.ports["submission"], timeout=30) as s:
        if helo:
            s.ehlo(helo)
        s.starttls(context=ctx)
        if helo:
            s.ehlo(helo)
        s.login(user, password)
        code, resp = s.mail(user)
        assert code == 250, (code, resp)
        for r in rcpts:
            code, resp = s.rcpt(r)
            assert code == 250, (r, code, resp)
        code, resp = s.data(body)
        assert code == 250, (code, resp)
    text = resp.decode()
    assert "queued as " in text, text
    return text.rsplit("queued as ", 1)[1].split()[0]


def dsn_fields(report):
    """[per-recipient fields dict, lower-case names] of a multipart/report's
    message/delivery-status part (an email.message.EmailMessage)."""
    parts = list(report.iter_parts())
    assert parts[1].get_content_type() == "message/delivery-status", parts[1]
    text = parts[1].as_bytes().decode("utf-8", "replace")
    body = text.split("\n\n", 1)[1] if "\n\n" in text else text
    groups = [g for g in body.replace("\r\n", "\n").split("\n\n") if g.strip()]
    out = []
    for g in groups[1:]:
        d = {}
        for line in g.split("\n"):
            if ":" in line and not line.startswith((" ", "\t")):
                k, v = line.split(":", 1)
                d[k.strip().lower()] = v.strip()
        out.append(d)
    return out


def uid_subjects(m, n):
    """[(uid, subject)] of messages 1..n of the mailbox selected on IMAP
    connection m (headers fetched with BODY.PEEK: no flag changes)."""
    out = []
    if n:
        typ, data = m.fetch(f"1:{n}", "(UID BODY.PEEK[HEADER])")
        assert typ == "OK", (typ, data)
        for item in data:
            if isinstance(item, tuple):
                uid = int(item[0].split(b"UID ")[1].split()[0])
                subj = [l for l in item[1].decode().split("\r\n")
                        if l.lower().startswith("subject:")]
                out.append((uid, subj[0].split(":", 1)[1].strip() if subj else ""))
    return out


def mailstore_dump(c, name, users):
    """The offline dump of a stopped store node's mailboxes of users
    (tests/support/mailstore-dump.c)."""
    r = subprocess.run([os.path.join(c.bin, "mailstore-dump"),
                        os.path.join(c.state, "data", name), *users],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"mailstore-dump {name}: rc={r.returncode} {r.stderr}")
    return r.stdout


def parse_mailstore_dump(text):
    """{user: {"uidvalidity", "uidnext", "msgs": [(uid, id, flags)]}} of INBOX."""
    boxes = {}
    for line in text.splitlines():
        f = line.split()
        if f[0] == "mailbox" and f[2] == "INBOX":
            kv = dict(p.split("=", 1) for p in f[3:])
            boxes[f[1]] = {"uidvalidity": int(kv["uidvalidity"]),
                           "uidnext": int(kv["uidnext"]), "msgs": []}
        elif f[0] == "message" and f[2] == "INBOX":
            kv = dict(p.split("=", 1) for p in f[3:])
            flags = set() if kv["flags"] == "-" else set(kv["flags"].split(","))
            boxes[f[1]]["msgs"].append((int(kv["uid"]), kv["id"], flags))
    return boxes



def checker(passed, failed):
    """check(name, fn): run one named check, print ok/FAIL (with the
    traceback), and append name to passed or failed."""
    def check(name, fn):
        start = time.monotonic()
        try:
            fn()
        except Exception:
            failed.append(name)
            print(f"FAIL {name} ({time.monotonic() - start:.1f} s)\n{traceback.format_exc()}",
                  flush=True)
        else:
            passed.append(name)
            print(f"ok   {name} ({time.monotonic() - start:.1f} s)", flush=True)
    return check


def dumps_differ(dumps):
    """Problems (text) where the replicas' mailstore dumps are not identical
    (dumps: {node name: dump text})."""
    problems = []
    names = sorted(dumps)
    for other in names[1:]:
        if dumps[other] != dumps[names[0]]:
            a, b = dumps[names[0]].splitlines(), dumps[other].splitlines()
            diff = [f"{x!r} != {y!r}" for x, y in zip(a, b) if x != y][:3]
            problems.append(f"{names[0]} and {other} differ ({len(a)} vs {len(b)} lines): "
                            + "; ".join(diff))
    return problems


REPLICATION_EVENTS = (r"snapshot_|owner_state_lost|partition_role|epoch_adopted|"
                      r"schema_upgrade|two_primaries|conflict_committed|replica_down|"
                      r"replica_up|truncate|caught_up|step|stopping|starting")


def print_replication_events(c):
    """Print every store and queue node's replication history (from its log
    file, so a node scaled away is included): what explains a divergence or
    a stuck partition after the fact."""
    logs = os.path.join(c.state, "log")
    for fn in sorted(os.listdir(logs)) if os.path.isdir(logs) else []:
        name = fn[:-len(".log")]
        if fn.endswith(".log") and name.startswith(("store-", "queue-")):
            print(f"--- {name} replication events ---\n"
                  + c.log_events(name, REPLICATION_EVENTS, n=120))


def remove_state(state, ok):
    """Remove a test cluster's state directory, but keep it after a
    failure when MAIL_KEEP_STATE is set (its logs tell what happened),
    always when it is "all"."""
    keep = os.environ.get("MAIL_KEEP_STATE")
    if keep == "all" or (keep and not ok):
        print(f"state kept (MAIL_KEEP_STATE): {state}", flush=True)
        return
    shutil.rmtree(state, ignore_errors=True)


def run(prefix, body, **cluster_kw):
    """Start local.Cluster.with_free_ports(**cluster_kw), then body(c, check)
    where check(name, fn) runs one named check; stop the cluster and report.
    Returns the process exit code."""
    passed, failed = [], []
    check = checker(passed, failed)
    state = tempfile.mkdtemp(prefix=prefix)
    c = local.Cluster.with_free_ports(state, bin_dir(), **cluster_kw)
    pids = set()
    try:
        start = time.monotonic()
        c.up()
        print(f"cluster up ({time.monotonic() - start:.1f} s)", flush=True)
        pids.update(c.pid(name) for name, *_ in c.specs())
        body(c, check)
        pids.update(c.pid(name) for name, *_ in c.specs())
    except Exception:
        failed.append("setup")
        traceback.print_exc()
    finally:
        c.down()
        left = [p for p in pids if p and local.pid_alive(p)]
        if left:
            failed.append("down_leaves_nothing")
            print(f"FAIL processes left after down: {left}")
        if failed:
            for name, *_ in c.specs():
                print(f"--- {name} log tail ---\n{c.log_tail(name, 15)}")
            print_replication_events(c)
        remove_state(state, not failed)
    print(f"{len(passed)} passed, {len(failed)} failed")
    return 1 if failed else 0
