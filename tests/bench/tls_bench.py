#!/usr/bin/env python3
"""Benchmark (not a test): what TLS costs the frontend.

Part 1, SMTP accept on the MX listener, plaintext against STARTTLS, at each
of --concurrency (default 1,10,50) concurrent sessions. A session opens a
connection and does EHLO, (STARTTLS, EHLO,) then MAIL, RCPT to an existing
user and DATA of a --size byte message (default 4 KiB), --per-conn messages
per connection (default 1: a new connection, and with STARTTLS a new full
handshake, for every message, as an MX sees from many senders), until the
--messages of the run (default 2000, split over the sessions) are sent.
Every message is unique (the frontend derives the queue id from the
content). The client is a pool of --procs processes (threads inside each)
so that Python's GIL does not cap it. It prints messages/s, whether every
message got its 250, and CPU: the frontend's (utime+stime from
/proc/PID/stat) as ms per message and as a share of one core, the other
cluster processes' (etcd, store and queue nodes), and the client's own. A
frontend far below 100% of a core while the client is busy means the
figure is client-bound (or, on a shared machine, scheduler-bound: the
load average is printed too).

Part 2, TLS handshakes per second on IMAPS (implicit TLS), full and
resumed, TLS 1.3 and TLS 1.2:
  * `openssl s_time -connect 127.0.0.1:PORT -new|-reuse -time T -tls1_3|-tls1_2`,
    one at a time (--stime-parallel 1,4 adds a run of 4 at once). s_time
    prints one character per connection, `r` for a resumed session and `*`
    for a full handshake; the script counts them. Its "connections/user sec" is per second of the
    client's user CPU, not of wall time: the script divides the count by
    wall time instead. With TLS 1.3, `s_time -reuse` does not resume: it
    keeps the session right after the handshake, before the server's
    NewSessionTicket (sent after the handshake in 1.3) has been read, so
    it never holds a ticket. With -tls1_2 the ticket comes inside the
    handshake and -reuse resumes.
  * A Python ssl loop (one connection at a time, --py-time seconds per
    case) that reads the IMAP greeting on every connection (which also
    reads a TLS 1.3 ticket) and passes the first connection's session as
    `session=` to the next ones: resumption for 1.3 too.
The frontend issues stateless tickets only (docs/security.md, TLS).

It starts its own cluster on free ports in a temporary state dir
(--stores/--queues/--replicas, default 1/1/1 to keep the 2-core box for the
frontend), with binaries from $MAIL_BIN_DIR or --bin-dir (default
build/bin of this checkout), and stops it at the end. Standard library
only, plus `openssl` (the command). It never fails on timing; it exits 1
if a message was not accepted.

  python3 tests/bench/tls_bench.py
  python3 tests/bench/tls_bench.py --messages 500 --concurrency 1,10 --stime-time 5
  python3 tests/bench/tls_bench.py --skip-smtp          # handshakes only
"""
import argparse
import concurrent.futures
import os
import re
import resource
import shutil
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "cluster"))
import local  # noqa: E402

TENANT = "example.test"
RCPT = "bench@example.test"
PASSWORD = "bench-pass"
TICK = os.sysconf("SC_CLK_TCK")


def parse_args():
    ap = argparse.ArgumentParser(
        description="TLS benchmarks of the frontend: SMTP accept with STARTTLS against "
                    "plaintext, and IMAPS handshakes per second with and without resumption.",
        epilog="Prints figures; never fails on timing. See the module docstring for details.")
    ap.add_argument("--messages", type=int, default=2000,
                    help="messages per SMTP run (one run per mode and concurrency; default 2000)")
    ap.add_argument("--concurrency", default="1,10,50",
                    help="comma-separated concurrent SMTP sessions (default 1,10,50)")
    ap.add_argument("--size", type=int, default=4096, help="message size in bytes (default 4096)")
    ap.add_argument("--per-conn", type=int, default=1,
                    help="messages per SMTP connection (default 1: connect, EHLO, STARTTLS "
                         "for every message)")
    ap.add_argument("--procs", type=int, default=4,
                    help="client processes at most (sessions are threads spread over them)")
    ap.add_argument("--stime-time", type=int, default=10,
                    help="seconds per s_time run (default 10)")
    ap.add_argument("--stime-parallel", default="1",
                    help="s_time processes at once, comma-separated runs (default 1; "
                         "e.g. 1,4 to see more than one client)")
    ap.add_argument("--py-time", type=float, default=4.0,
                    help="seconds per Python ssl resumption case (default 4)")
    ap.add_argument("--skip-smtp", action="store_true", help="only the handshake part")
    ap.add_argument("--skip-handshakes", action="store_true", help="only the SMTP part")
    ap.add_argument("--stores", type=int, default=1)
    ap.add_argument("--queues", type=int, default=1)
    ap.add_argument("--replicas", type=int, default=1)
    ap.add_argument("--bin-dir", default=os.environ.get("MAIL_BIN_DIR",
                                                        os.path.join(ROOT, "build", "bin")))
    args = ap.parse_args()
    args.concurrency = [int(x) for x in args.concurrency.split(",") if x]
    args.stime_parallel = [int(x) for x in args.stime_parallel.split(",") if x]
    if args.messages <= 0 or args.per_conn <= 0 or min(args.concurrency) <= 0:
        ap.error("--messages, --per-conn and --concurrency must be positive")
    return args


# ---- CPU accounting ----------------------------------------------------

def proc_cpu(pid):
    """utime+stime of a process (all its threads), in seconds; None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / TICK   # fields 14 and 15 of stat(5)


class CpuWatch:
    """CPU seconds used by the cluster's processes between start() and stop()."""

    def __init__(self, cluster):
        self.pids = {name: cluster.pid(name) for name, *_ in cluster.specs()}

    def snap(self):
        return {n: proc_cpu(p) for n, p in self.pids.items() if p}

    def start(self):
        self.t0 = time.monotonic()
        self.a = self.snap()
        self.ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)

    def stop(self):
        b = self.snap()
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.children = (ru.ru_utime - self.ru0.ru_utime) + (ru.ru_stime - self.ru0.ru_stime)
        self.delta = {n: (b[n] - self.a[n]) for n in b if b.get(n) is not None
                      and self.a.get(n) is not None}
        self.frontend = self.delta.get("frontend-1", float("nan"))
        self.others = sum(v for n, v in self.delta.items() if n != "frontend-1")


def load():
    return "%.1f" % os.getloadavg()[0]


# ---- SMTP ---------------------------------------------------------------

def body_of(size, tag):
    head = (f"From: bench@remote.test\r\nTo: {RCPT}\r\nSubject: tls bench\r\n"
            f"X-Seq: {tag}\r\n\r\n").encode()
    line = b"x" * 76 + b"\r\n"
    return head + line * max(1, (size - len(head)) // len(line))


def smtp_session(port, tls, ctx, n, per_conn, size, tag, out):
    """n messages over connections of per_conn messages each. Appends
    (accepted, failures[]) to out."""
    ok, fails, k = 0, [], 0
    while k < n:
        s = None
        try:
            s = smtplib.SMTP("127.0.0.1", port, local_hostname="bench.test", timeout=60)
            code, msg = s.ehlo()
            if code != 250:
                raise smtplib.SMTPResponseException(code, msg)
            if tls:
                code, msg = s.starttls(context=ctx)   # raises unless 220
                code, msg = s.ehlo()
                if code != 250:
                    raise smtplib.SMTPResponseException(code, msg)
            for _ in range(min(per_conn, n - k)):
                k += 1
                code, msg = s.mail("bench@remote.test")
                if code == 250:
                    code, msg = s.rcpt(RCPT)
                if code == 250:
                    code, msg = s.data(body_of(size, f"{tag}-{k}-{time.time_ns()}"))
                if code == 250:
                    ok += 1
                else:
                    fails.append(f"{code} {msg[:80]!r}")
                    s.rset()
            s.quit()
        except (smtplib.SMTPException, OSError) as e:
            fails.append(repr(e)[:120])
            k += 1   # the message in flight (or the connection) is lost
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass
    out.append((ok, fails))


def smtp_proc(port, tls, cafile, counts, per_conn, size, tag, start_at):
    """One client process: a thread per session (counts[i] messages each),
    all starting at start_at (time.monotonic, shared by all processes).
    Returns (accepted, failures, cpu seconds, end time)."""
    ctx = ssl.create_default_context(cafile=cafile)
    out, threads = [], []
    for i, n in enumerate(counts):
        threads.append(threading.Thread(target=smtp_session, args=(
            port, tls, ctx, n, per_conn, size, f"{tag}-{os.getpid()}-{i}", out)))
    delay = start_at - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    t0 = os.times()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    t1 = os.times()
    end = time.monotonic()
    return (sum(o for o, _ in out), [f for _, fl in out for f in fl],
            (t1.user - t0.user) + (t1.system - t0.system), end)


def smtp_run(c, args, tls, conc, label):
    port = c.ports["smtp"]
    cafile = os.path.join(c.tls_dir(), "ca.pem")
    # messages per session, sessions per process
    per_session = [args.messages // conc + (1 if i < args.messages % conc else 0)
                   for i in range(conc)]
    procs = max(1, min(args.procs, conc))
    groups = [per_session[i::procs] for i in range(procs)]
    w = CpuWatch(c)
    with concurrent.futures.ProcessPoolExecutor(max_workers=procs) as ex:
        start_at = time.monotonic() + 0.5
        w.start()
        futs = [ex.submit(smtp_proc, port, tls, cafile, g, args.per_conn, args.size,
                          f"{label}-{conc}", start_at) for g in groups]
        res = [f.result() for f in futs]
        w.stop()
    wall = max(r[3] for r in res) - start_at
    ok = sum(r[0] for r in res)
    fails = [f for r in res for f in r[1]]
    client = sum(r[2] for r in res)
    return {"mode": label, "conc": conc, "procs": procs, "sent": args.messages, "ok": ok,
            "fails": fails, "wall": wall, "rate": ok / wall if wall > 0 else 0.0,
            "fe_ms": 1000 * w.frontend / max(ok, 1), "fe_pct": 100 * w.frontend / wall,
            "oth_pct": 100 * w.others / wall, "cli_pct": 100 * client / wall,
            "cli_ms": 1000 * client / max(ok, 1), "load": load()}


def smtp_part(c, args):
    print(f"== SMTP accept on the MX listener (port {c.ports['smtp']}): {args.messages} "
          f"messages of {args.size} B per run, {args.per_conn} message(s) per connection",
          flush=True)
    # warm up (etcd directory, queue partitions, TLS contexts)
    warm = argparse.Namespace(**{**vars(args), "messages": 20})
    for tls in (False, True):
        r = smtp_run(c, warm, tls, 2, "warmup")
        if r["ok"] != r["sent"]:
            print(f"  warm-up ({'STARTTLS' if tls else 'plain'}): {r['ok']}/{r['sent']} "
                  f"accepted: {r['fails'][:3]}", flush=True)
    rows = []
    for conc in args.concurrency:
        for tls in (False, True):
            r = smtp_run(c, args, tls, conc, "starttls" if tls else "plain")
            rows.append(r)
            print(f"  {r['mode']:<8} c={conc:<3} {r['ok']}/{r['sent']} accepted in "
                  f"{r['wall']:.2f}s: {r['rate']:.1f} msg/s; frontend {r['fe_pct']:.0f}% "
                  f"of a core ({r['fe_ms']:.2f} ms/msg), client {r['cli_pct']:.0f}%, "
                  f"other nodes {r['oth_pct']:.0f}%, load {r['load']}", flush=True)
            for f in r["fails"][:5]:
                print(f"    failure: {f}")
    return rows


# ---- handshakes -----------------------------------------------------------

STIME_LINE = re.compile(r"^(\d+) connections in ([\d.]+)s;")


def stime_run(c, version, mode, parallel, seconds):
    port = c.ports["imaps"]
    argv = ["openssl", "s_time", "-connect", f"127.0.0.1:{port}", f"-{mode}",
            "-time", str(seconds), f"-{version}"]
    w = CpuWatch(c)
    w.start()
    t0 = time.monotonic()
    ps = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL, text=True) for _ in range(parallel)]
    outs = [p.communicate(timeout=seconds + 60)[0] for p in ps]
    wall = time.monotonic() - t0
    w.stop()
    conns = resumed = full = 0
    for out in outs:
        for line in out.splitlines():
            m = STIME_LINE.match(line)
            if m:
                conns += int(m.group(1))
            elif line and set(line) <= set("r*"):
                resumed += line.count("r")
                full += line.count("*")
    return {"tool": f"s_time x{parallel}", "version": version.replace("tls1_", "TLS 1."),
            "mode": "resume" if mode == "reuse" else "full", "n": conns, "wall": wall,
            "rate": conns / wall, "resumed": resumed, "full": full,
            "fe_ms": 1000 * w.frontend / max(conns, 1), "fe_pct": 100 * w.frontend / wall,
            "cli_pct": 100 * w.children / wall, "load": load()}


def py_loop(c, version, resume, seconds):
    port = c.ports["imaps"]
    ctx = ssl.create_default_context(cafile=os.path.join(c.tls_dir(), "ca.pem"))
    ctx.minimum_version = ctx.maximum_version = version
    sess, n, resumed, errors = None, 0, 0, 0
    w = CpuWatch(c)
    w.start()
    c0 = os.times()
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                with ctx.wrap_socket(raw, server_hostname="localhost",
                                     session=sess if resume else None) as s:
                    greeting = s.recv(4096)   # also reads a TLS 1.3 ticket
                    if not greeting.startswith(b"* OK"):
                        raise OSError(f"greeting {greeting[:40]!r}")
                    n += 1
                    resumed += s.session_reused
                    if resume and sess is None:
                        sess = s.session
        except (OSError, ssl.SSLError):
            errors += 1
    wall = time.monotonic() - t0
    c1 = os.times()
    w.stop()
    client = (c1.user - c0.user) + (c1.system - c0.system)
    name = "TLS 1.3" if version == ssl.TLSVersion.TLSv1_3 else "TLS 1.2"
    return {"tool": "python x1", "version": name, "mode": "resume" if resume else "full",
            "n": n, "wall": wall, "rate": n / wall, "resumed": resumed, "full": n - resumed,
            "errors": errors, "fe_ms": 1000 * w.frontend / max(n, 1),
            "fe_pct": 100 * w.frontend / wall, "cli_pct": 100 * client / wall, "load": load()}


def handshake_part(c, args):
    print(f"== TLS handshakes on IMAPS (port {c.ports['imaps']})", flush=True)
    rows = []

    def show(r):
        rows.append(r)
        print(f"  {r['tool']:<10} {r['version']} {r['mode']:<6} {r['n']} in {r['wall']:.1f}s: "
              f"{r['rate']:.0f}/s, resumed {r['resumed']}/{r['resumed'] + r['full']}; "
              f"frontend {r['fe_pct']:.0f}% ({r['fe_ms']:.2f} ms/handshake), "
              f"client {r['cli_pct']:.0f}%, load {r['load']}"
              + (f", errors {r['errors']}" if r.get("errors") else ""), flush=True)

    if shutil.which("openssl"):
        for parallel in args.stime_parallel:
            for version in ("tls1_3", "tls1_2"):
                for mode in ("new", "reuse"):
                    show(stime_run(c, version, mode, parallel, args.stime_time))
    else:
        print("  openssl not found: s_time skipped")
    for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
        for resume in (False, True):
            show(py_loop(c, version, resume, args.py_time))
    return rows


# ---- main -----------------------------------------------------------------

def commit():
    r = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty", "--abbrev=12"],
                       capture_output=True, text=True)
    return r.stdout.strip() or "unknown"


def main():
    args = parse_args()
    state = tempfile.mkdtemp(prefix="mail-tls-bench-")
    c = local.Cluster.with_free_ports(state, args.bin_dir, stores=args.stores,
                                      queues=args.queues, replicas=args.replicas)
    smtp_rows, hs_rows = [], []
    t_start = time.monotonic()
    try:
        c.up()
        r = c.mailctl("tenant", "add", TENANT, check=False)   # up() made it already: rc 3
        if r.returncode not in (0, 3):
            raise RuntimeError(f"mailctl tenant add: {r.stderr}")
        r = c.mailctl("user", "add", RCPT, stdin=PASSWORD + "\n", check=False)
        if r.returncode not in (0, 3):
            raise RuntimeError(f"mailctl user add: {r.stderr}")
        print(f"tls_bench: checkout {commit()}, binaries {args.bin_dir}, cluster "
              f"stores={args.stores} queues={args.queues} R={args.replicas}, "
              f"{os.cpu_count()} CPUs, load {load()}", flush=True)
        if not args.skip_smtp:
            smtp_rows = smtp_part(c, args)
        if not args.skip_handshakes:
            hs_rows = handshake_part(c, args)
    finally:
        c.down()
        shutil.rmtree(state, ignore_errors=True)

    print(f"\n== Summary ({time.monotonic() - t_start:.0f} s in all; CPU as % of one core; "
          f"ms = frontend CPU per message or handshake)")
    if smtp_rows:
        print(f"{'SMTP':<9}{'conc':>5}{'accepted':>12}{'msg/s':>9}{'fe ms':>8}{'fe %':>7}"
              f"{'nodes %':>9}{'client %':>10}{'load':>6}")
        for r in smtp_rows:
            print(f"{r['mode']:<9}{r['conc']:>5}{str(r['ok']) + '/' + str(r['sent']):>12}"
                  f"{r['rate']:>9.1f}{r['fe_ms']:>8.2f}{r['fe_pct']:>7.0f}{r['oth_pct']:>9.0f}"
                  f"{r['cli_pct']:>10.0f}{r['load']:>6}")
        for conc in args.concurrency:
            p = [r for r in smtp_rows if r["conc"] == conc]
            if len(p) == 2 and p[0]["rate"] > 0:
                print(f"  c={conc}: STARTTLS/plain = {p[1]['rate'] / p[0]['rate']:.2f} "
                      f"(frontend CPU per message {p[1]['fe_ms'] / max(p[0]['fe_ms'], 1e-9):.1f}x)")
    if hs_rows:
        print(f"{'handshakes':<12}{'version':>8}{'mode':>8}{'count':>7}{'/s':>8}{'resumed':>12}"
              f"{'fe ms':>8}{'fe %':>7}{'client %':>10}{'load':>6}")
        for r in hs_rows:
            print(f"{r['tool']:<12}{r['version']:>8}{r['mode']:>8}{r['n']:>7}{r['rate']:>8.0f}"
                  f"{str(r['resumed']) + '/' + str(r['resumed'] + r['full']):>12}"
                  f"{r['fe_ms']:>8.2f}{r['fe_pct']:>7.0f}{r['cli_pct']:>10.0f}{r['load']:>6}")
    lost = sum(r["sent"] - r["ok"] for r in smtp_rows)
    if lost:
        print(f"NOT ACCEPTED: {lost} message(s) did not get a 250")
        return 1
    if smtp_rows:
        print("every message got its 250")
    return 0


if __name__ == "__main__":
    sys.exit(main())
