#!/usr/bin/python3
"""Benchmark (not a test): SMTP accept rate of the MX with every inbound
check on, against every check off (issue 11 item 10; docs/inbound.md).

One local cluster on free ports (R=--replicas, default 1, so the figure is
the MX's and not replication's), resolving through a DNS server of ours
(tests/support/dnszone.py) that holds the sender's records: SPF (pass for
127.0.0.1), DMARC (p=reject), a DKIM key, the client's PTR and A, and empty
DNSBL/RHSBL zones. Each message is DKIM-signed (dkimpy, rsa-sha256) before
the clock starts. --conns connections send --messages messages, one per
transaction, connections reused, as smtp_accept.py does.

  off: the tenant says spf=off dmarc=off (no DNS, no check): what the MX
       costs without inbound trust;
  on:  spf=reject dmarc=enforce ptr=reject greylisting=on (the triplets
       passed beforehand) dnsbl=bl.bench.test rhsbl=rhs.bench.test: SPF
       (MAIL FROM and HELO), DKIM, DMARC, PTR/FCrDNS, a DNSBL and an RHSBL
       query, greylisting, Authentication-Results.
What is cached: SPF answers (lib/spf), a connection's PTR/DNSBL/RHSBL
results (per session), greylisting passes (router/greylist). DKIM keys and
DMARC records are asked for each message (lib/dns has no cache yet).
Prints msg/s and the p50/p99 latency of the 250 after DATA for each mode.
Run with Debian's /usr/bin/python3 (python3-dnslib, python3-dkim).

  /usr/bin/python3 tests/bench/inbound_accept.py [--messages 2000] [--conns 8]
      [--size 4096] [--replicas 1] [--rounds 1]
"""
import argparse
import base64
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "cluster"))
sys.path.insert(0, os.path.join(ROOT, "tests", "support"))
import local  # noqa: E402
import dnszone  # noqa: E402
import dkim  # noqa: E402

SENDER = "news@bench-sender.test"
RCPT = "bench@example.test"


def zone(pub):
    return ("$ORIGIN test.\n$TTL 300\n"
            'bench-sender IN TXT "v=spf1 ip4:127.0.0.1 -all"\n'
            '_dmarc.bench-sender IN TXT "v=DMARC1; p=reject"\n'
            f'b._domainkey.bench-sender IN TXT "v=DKIM1; k=rsa; p={pub[:200]}" "{pub[200:]}"\n'
            "1.0.0.127.in-addr.arpa. IN PTR client.bench-sender.test.\n"
            "client.bench-sender IN A 127.0.0.1\n"
            'bench IN TXT "apex"\n')


def signed(priv, size, seq):
    head = (f"From: {SENDER}\r\nTo: {RCPT}\r\nSubject: bench {seq}\r\n"
            f"Message-ID: <{seq}@bench-sender.test>\r\n\r\n").encode()
    body = head + (b"x" * 76 + b"\r\n") * max(1, size // 78)
    return dkim.sign(body, b"b", b"bench-sender.test", priv,
                     include_headers=[b"from", b"to", b"subject", b"message-id"]) + body


def worker(port, bodies, lat, errors):
    import smtplib
    s = smtplib.SMTP("127.0.0.1", port, timeout=60)
    s.ehlo("client.bench-sender.test")
    for body in bodies:
        try:
            s.mail(SENDER)
            code, resp = s.rcpt(RCPT)
            if code != 250:
                errors.append((code, resp))
                s.rset()
                continue
            t0 = time.perf_counter()
            code, resp = s.data(body)
            dt = time.perf_counter() - t0
            (lat if code == 250 else errors).append(dt if code == 250 else (code, resp))
        except smtplib.SMTPException as e:
            errors.append(str(e))
            s.rset()
    s.quit()


def pct(v, p):
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))] if v else float("nan")


def run(port, args, priv, label):
    per = args.messages // args.conns
    bodies = [[signed(priv, args.size, f"{label}-{time.time_ns()}-{c}-{k}") for k in range(per)]
              for c in range(args.conns)]
    lat, errors, threads = [], [], []
    t0 = time.perf_counter()
    for c in range(args.conns):
        t = threading.Thread(target=worker, args=(port, bodies[c], lat, errors))
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat.sort()
    print(f"inbound_accept checks={label:3} messages={len(lat)} errors={len(errors)} "
          f"conns={args.conns} size={args.size}B wall={wall:.2f}s "
          f"rate={len(lat) / wall:7.1f} msg/s  p50={pct(lat, 50) * 1000:6.2f} ms "
          f"p99={pct(lat, 99) * 1000:6.2f} ms", flush=True)
    if errors:
        print(f"  first errors: {errors[:3]}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--conns", type=int, default=8)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--replicas", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="inbound-bench-")
    key = os.path.join(tmp, "k.pem")
    subprocess.run(["openssl", "genrsa", "-out", key, "2048"], check=True, capture_output=True)
    der = subprocess.run(["openssl", "rsa", "-in", key, "-pubout", "-outform", "DER"],
                         check=True, capture_output=True).stdout
    with open(key, "rb") as f:
        priv = f.read()
    bin_dir = os.environ.get("MAIL_BIN_DIR") or os.path.join(ROOT, "build", "bin")
    with dnszone.ZoneServer(zone(base64.b64encode(der).decode())) as dns:
        c = local.Cluster.with_free_ports(os.path.join(tmp, "state"), bin_dir,
                                          stores=args.replicas, queues=args.replicas,
                                          replicas=args.replicas, dns=dns.server)
        try:
            c.up()
            c.mailctl("user", "add", RCPT, stdin="bench pw\n")
            on = ["spf=reject", "dmarc=enforce", "ptr=reject", "greylisting=on",
                  "greylist_delay=1", "dnsbl=bl.bench.test", "rhsbl=rhs.bench.test"]
            off = ["spf=off", "dmarc=off", "spam=off", "ptr=record", "greylisting=off", "dnsbl=",
                   "rhsbl="]
            # pass the greylisting triplet once (cluster-wide from then on)
            c.mailctl("tenant", "set", "example.test", *on)
            import smtplib
            for _ in range(2):
                with smtplib.SMTP("127.0.0.1", c.ports["smtp"]) as s:
                    s.ehlo("client.bench-sender.test")
                    s.mail(SENDER)
                    code, _ = s.rcpt(RCPT)
                if code == 250:
                    break
                time.sleep(1.2)
            for _ in range(args.rounds):
                c.mailctl("tenant", "set", "example.test", *off)
                run(c.ports["smtp"], args, priv, "off")
                c.mailctl("tenant", "set", "example.test", *on)
                run(c.ports["smtp"], args, priv, "on")
        finally:
            c.down()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
