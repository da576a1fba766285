#!/usr/bin/env python3
"""Benchmark (not a test): SMTP accept rate and latency of the 250 after DATA,
at replication factor R=1 and R=3, and the failover pause.

For each R in --replicas (default "1,3") it starts its own local cluster on
free ports (--stores store nodes, --queues queue nodes, both tiers at R,
one frontend), then sends --messages messages of --size bytes over --conns
concurrent SMTP connections (one message per transaction, connections
reused) and prints messages/s and the p50/p99/max latency from the end of
DATA to the 250. The 250 is sent once the message is durable on every
in-sync replica of its queue partition (at least a majority of R), so this
is the cost of replication as a client sees it.

Then (unless --no-failover), on the last cluster: a steady stream of sends,
each retried on 4xx as an MTA would, while the queue node that is primary of
the most queue partitions is killed with -9. It prints the failover pause:
the longest time one message took from its first DATA to its 250 (retries
included), and the longest gap between two consecutive 250s. The lease TTL
is --ttl (the nodes' default is 5 s). Standard library only. Never fails on
timing; it only prints figures.

--node-tls on (default: node RPC is mutual TLS, as in every cluster
cluster/local starts), off (plaintext node RPC, for comparison) or both
(each R first without, then with). Beside each rate it prints the CPU the
cluster's processes (frontend, queue and store nodes; not etcd) spent per
message, from /proc/PID/stat: the cost of node TLS on a loaded machine
shows there more clearly than in the rates.

  python3 tests/bench/smtp_accept.py [--messages 2000] [--conns 8] [--size 4096]
      [--replicas 1,3] [--stores 3] [--queues 3] [--ttl 5] [--no-failover]
      [--node-tls on|off|both]
  python3 tests/bench/smtp_accept.py --port 2525   # a running cluster, no failover
"""
import argparse
import json
import os
import shutil
import signal
import smtplib
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "cluster"))
import local  # noqa: E402


def body_of(size, seq):
    """A message of about size bytes; seq makes it unique (the frontend
    derives the queue id from the content, and an identical resend is one
    message)."""
    head = f"Subject: bench\r\nX-Seq: {seq}\r\n\r\n".encode()
    return head + (b"x" * 76 + b"\r\n") * max(1, size // 78)


def worker(port, n, size, rcpt, lat, errors):
    s = smtplib.SMTP("127.0.0.1", port, timeout=60)
    s.ehlo("bench.test")
    for k in range(n):
        body = body_of(size, f"{threading.get_ident()}-{k}-{time.time_ns()}")
        try:
            s.mail("bench@remote.test")
            s.rcpt(rcpt)
            t0 = time.perf_counter()
            code, _ = s.data(body)
            dt = time.perf_counter() - t0
            if code == 250:
                lat.append(dt)
            else:
                errors.append(code)
        except smtplib.SMTPException as e:
            errors.append(str(e))
            s.rset()
    s.quit()


def pct(sorted_vals, p):
    if not sorted_vals:
        return float("nan")
    i = min(len(sorted_vals) - 1, int(round(p / 100.0 * (len(sorted_vals) - 1))))
    return sorted_vals[i]


def accept(port, args, label):
    lat, errors, threads = [], [], []
    per = args.messages // args.conns
    t0 = time.perf_counter()
    for _ in range(args.conns):
        t = threading.Thread(target=worker, args=(port, per, args.size, args.rcpt, lat, errors))
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat.sort()
    print(f"smtp_accept {label} messages={len(lat)} errors={len(errors)} "
          f"conns={args.conns} size={args.size}B wall={wall:.2f}s")
    print(f"  rate        {len(lat) / wall:8.1f} msg/s")
    print(f"  250 latency p50 {pct(lat, 50) * 1000:7.2f} ms   p99 {pct(lat, 99) * 1000:7.2f} ms"
          f"   max {lat[-1] * 1000 if lat else float('nan'):7.2f} ms", flush=True)


TICK = os.sysconf("SC_CLK_TCK")


def cluster_cpu(c):
    """{role: CPU seconds (user + system)} of the cluster's processes but
    etcd, from /proc/PID/stat."""
    out = {}
    for name, role, *_ in c.specs():
        pid = c.pid(name)
        if role == "etcd" or not pid:
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().split(") ", 1)[1].split()
        except OSError:
            continue
        out[role] = out.get(role, 0.0) + (int(fields[11]) + int(fields[12])) / TICK
    return out


def busiest_queue_primary(c):
    ring = json.loads(c.etcd_get("/mail/v1/ring/queue"))
    counts = {}
    for part in ring["map"]:
        counts[part["r"][0]] = counts.get(part["r"][0], 0) + 1
    return max(counts, key=counts.get)


def failover(c, args):
    """Kill -9 the busiest queue primary under a steady retried stream."""
    stop = threading.Event()
    lock = threading.Lock()
    acks, longest = [], [0.0]

    def sender():
        k = 0
        while not stop.is_set():
            k += 1
            body = body_of(args.size, f"f{threading.get_ident()}-{k}")
            first = time.monotonic()
            while True:
                try:
                    with smtplib.SMTP("127.0.0.1", c.ports["smtp"], timeout=60) as s:
                        s.sendmail("bench@remote.test", [args.rcpt], body)
                    break
                except (smtplib.SMTPException, OSError):
                    time.sleep(0.05)
            now = time.monotonic()
            with lock:
                acks.append(now)
                longest[0] = max(longest[0], now - first)
            time.sleep(0.01)

    threads = [threading.Thread(target=sender, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(3)
    victim = busiest_queue_primary(c)
    t_kill = time.monotonic()
    c.kill(victim, signal.SIGKILL)
    time.sleep(max(4.0, 3 * args.ttl))
    stop.set()
    for t in threads:
        t.join(timeout=120)
    with lock:
        gaps = [b - a for a, b in zip(acks, acks[1:]) if b >= t_kill]
        after = [a for a in acks if a >= t_kill]
    print(f"failover (kill -9 {victim}, the primary of the most queue partitions, "
          f"lease TTL {args.ttl} s, R={c.replicas}):")
    print(f"  longest DATA-to-250 of one message (retries included) {longest[0]:6.2f} s")
    print(f"  longest gap between two 250s after the kill           "
          f"{max(gaps) if gaps else float('nan'):6.2f} s")
    print(f"  first 250 after the kill {after[0] - t_kill if after else float('nan'):.2f} s; "
          f"250s in the {max(4.0, 3 * args.ttl):.0f} s after it: {len(after)}", flush=True)
    c.start(victim)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--conns", type=int, default=8)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--port", type=int, help="SMTP port of a running cluster")
    ap.add_argument("--rcpt", default="bench@example.test")
    ap.add_argument("--replicas", default="1,3", help="comma-separated R values to run")
    ap.add_argument("--stores", type=int, default=3)
    ap.add_argument("--queues", type=int, default=3)
    ap.add_argument("--ttl", type=int, default=5, help="lease TTL of the nodes (s)")
    ap.add_argument("--no-failover", action="store_true")
    ap.add_argument("--node-tls", choices=["on", "off", "both"], default="on",
                    help="node RPC over mutual TLS (both: each R without, then with)")
    args = ap.parse_args()

    if args.port is not None:
        accept(args.port, args, "cluster=running")
        return
    bin_dir = os.environ.get("MAIL_BIN_DIR", os.path.join(ROOT, "build", "bin"))
    modes = {"on": [True], "off": [False], "both": [False, True]}[args.node_tls]
    runs = [(int(r), tls) for r in args.replicas.split(",") for tls in modes]
    for k, (r, tls) in enumerate(runs):
        state = tempfile.mkdtemp(prefix="mail-bench-")
        c = local.Cluster.with_free_ports(state, bin_dir, stores=args.stores,
                                          queues=args.queues, replicas=r, lease_ttl=args.ttl,
                                          node_tls=tls)
        try:
            c.up()
            c.mailctl("user", "add", args.rcpt, stdin="bench\n", check=False)
            time.sleep(2 * args.ttl)  # the map settles (replicas in sync)
            cpu0 = cluster_cpu(c)
            accept(c.ports["smtp"], args, f"R={r} stores={args.stores} queues={args.queues} "
                   f"node_tls={'on' if tls else 'off'}")
            cpu1 = cluster_cpu(c)
            per = {role: (cpu1[role] - cpu0.get(role, 0.0)) * 1000 / max(1, args.messages)
                   for role in cpu1}
            print(f"  CPU per message {sum(per.values()):6.2f} ms (" + ", ".join(
                f"{role} {ms:.2f}" for role, ms in sorted(per.items())) + ")", flush=True)
            if k == len(runs) - 1 and not args.no_failover:
                failover(c, args)
        finally:
            c.down()
            shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
