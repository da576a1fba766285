#!/usr/bin/env python3
"""The three daemons' command lines (lib/daemon-options.h), without
starting anything: `--help` exits 0 on stdout and names every option (the
names cluster/local.py and the tests pass must stay), with each node role's
own log bounds and the RPC server limits as its defaults; a value out of
range, a bad address, an unknown option, a missing required option, node
TLS options not given together, and a node --listen off loopback without
node TLS each exit 2 with one line on stderr naming the option; so does a
bad MAIL_DNS in the environment (naming it). Standard library only; a few
seconds.
"""
import os
import subprocess
import tempfile
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import e2e_harness  # noqa: E402

COMMON = ["metrics", "etcd-quota-bytes", "etcd-ca", "etcd-cert", "etcd-key", "etcd-user",
          "etcd-password-file", "dns", "help"]
NODE_TLS = ["node-cert", "node-key", "cluster-ca"]
NODE = ["id", "listen", "data", "advertise", "partitions", "replicas", "lease-ttl",
        "log-keep", "log-keep-mib", "repl-write-thread", "rpc-max-conns", "rpc-idle-timeout", "rpc-max-inflight",
        "rpc-max-queued-mib", "etcd"] + NODE_TLS + COMMON
OPTIONS = {
    "frontend": ["id", "etcd", "smtp", "submission", "submissions", "imap", "imaps",
                 "pop3", "pop3s", "tls-cert", "tls-key", "secret-file", "trusted-networks", "hostname",
                 "pop3-lock-ttl", "auth-failure-delay-max", "rspamd", "rspamd-fail-closed"]
                + NODE_TLS + COMMON,
    "store-node": NODE + ["body-inline-max"],
    "queue-node": NODE + ["retry-initial-ms", "retry-max-ms", "max-inflight", "smtp-out-port",
                          "hostname", "retry-schedule", "expiry", "delay-warning",
                          "smtp-out-timeout", "smtp-out-conns", "config-refresh-ms"],
}
# (binary, option, the line under it in --help)
DEFAULTS = [
    ("store-node", "log-keep", "1..1073741824, default 10000"),
    ("store-node", "log-keep-mib", "1..1048576, default 16"),
    ("queue-node", "log-keep", "1..1073741824, default 2000"),
    ("queue-node", "log-keep-mib", "1..1048576, default 4"),
    ("store-node", "repl-write-thread", "0..1, default 1"),
    ("queue-node", "repl-write-thread", "0..1, default 1"),
    ("store-node", "partitions", "1..65536, default 256"),
    ("store-node", "body-inline-max", "0..1048576, default 16384"),
    ("queue-node", "max-inflight", "1..100000, default 64"),
    ("queue-node", "smtp-out-port", "1..65535, default 25"),
    ("queue-node", "expiry", "1..2592000, default 432000"),
    ("queue-node", "delay-warning", "0..2592000, default 14400"),
    ("queue-node", "retry-schedule", "default 60,300,900,1800,3600,7200"),
    ("frontend", "smtp", "default 127.0.0.1:2525"),
    ("frontend", "pop3", "default 127.0.0.1:2110"),
    ("frontend", "pop3s", "default 127.0.0.1:2995"),
    ("frontend", "etcd-quota-bytes", "1..184467440737095516, default 2147483648"),
    # proto/rpc.h RPC_SERVER_LIMITS_DEFAULT
    ("store-node", "rpc-max-conns", "1..1000000, default 1024"),
    ("queue-node", "rpc-max-conns", "1..1000000, default 1024"),
    ("store-node", "rpc-idle-timeout", "1..86400, default 300"),
    ("queue-node", "rpc-idle-timeout", "1..86400, default 300"),
    ("store-node", "rpc-max-inflight", "1..65536, default 256"),
    ("queue-node", "rpc-max-inflight", "1..65536, default 256"),
    ("store-node", "rpc-max-queued-mib", "1..4096, default 8"),
    ("queue-node", "rpc-max-queued-mib", "1..4096, default 8"),
]
TLS_TOGETHER = "--node-cert, --node-key and --cluster-ca go together"
OFF_LOOPBACK = "--listen off loopback needs --node-cert, --node-key and --cluster-ca"
NODE_ARGS = ["--id", "n1", "--listen", "127.0.0.1:0", "--data", "/nonexistent",
             "--etcd", "http://127.0.0.1:1"]
# (binary, extra argv, what the one line on stderr must contain)
BAD = [
    ("store-node", ["--partitions", "0"], "--partitions must be a number in 1..65536"),
    ("store-node", ["--replicas", "9"], "--replicas must be a number in 1..8"),
    ("store-node", ["--listen", "nope"], "--listen must be HOST:PORT"),
    ("store-node", ["--log-keep-mib", "1048577"], "--log-keep-mib must be a number in 1..1048576"),
    ("store-node", ["--body-inline-max", "1048577"], "--body-inline-max must be a number in 0..1048576"),
    ("queue-node", ["--lease-ttl", "3601"], "--lease-ttl must be a number in 1..3600"),
    ("queue-node", ["--max-inflight", "0"], "--max-inflight must be a number in 1..100000"),
    ("queue-node", ["--retry-initial-ms", "5000", "--retry-max-ms", "1000"], "retry_max_ms"),
    ("queue-node", ["--partitons", "8"], "unknown option \"--partitons\""),
    ("frontend", ["--etcd-quota-bytes", "0"], "--etcd-quota-bytes must be a number in 1.."),
    ("frontend", ["--smtp", "127.0.0.1:70000"], "--smtp must be HOST:PORT"),
    ("frontend", ["--metrics", "8080"], "--metrics must be HOST:PORT"),
    ("frontend", ["--dns", "resolver.example:53"], "--dns must be IPv4:PORT or [IPv6]:PORT"),
    ("queue-node", ["--dns", "127.0.0.1:0"], "--dns must be IPv4:PORT or [IPv6]:PORT"),
    ("queue-node", ["--smtp-out-port", "0"], "--smtp-out-port must be a number in 1..65535"),
    ("queue-node", ["--retry-schedule", "60,0"], "--retry-schedule: 1..32 comma-separated"),
    ("queue-node", ["--expiry", "0"], "--expiry must be a number in 1..2592000"),
    ("frontend", ["stray"], "unexpected argument \"stray\""),
    ("store-node", ["--rpc-max-conns", "0"], "--rpc-max-conns must be a number in 1..1000000"),
    ("queue-node", ["--rpc-idle-timeout", "86401"],
     "--rpc-idle-timeout must be a number in 1..86400"),
    ("store-node", ["--rpc-max-inflight", "x"], "--rpc-max-inflight must be a number in 1..65536"),
    ("queue-node", ["--rpc-max-queued-mib", "0"],
     "--rpc-max-queued-mib must be a number in 1..4096"),
    ("store-node", ["--node-cert", "/x.pem"], TLS_TOGETHER),
    ("queue-node", ["--node-cert", "/x.pem", "--node-key", "/x.key"], TLS_TOGETHER),
    ("frontend", ["--cluster-ca", "/ca.pem"], TLS_TOGETHER),
    # plaintext node RPC only on loopback
    ("store-node", ["--listen", "10.1.2.3:7000"], OFF_LOOPBACK),
    ("queue-node", ["--listen", "0.0.0.0:7000"], OFF_LOOPBACK),
    ("store-node", ["--listen", "[2001:db8::1]:7000"], OFF_LOOPBACK),
    ("queue-node", ["--listen", "[::]:0"], OFF_LOOPBACK),
    ("frontend", ["--etcd-cert", "c.pem"], "--etcd-cert and --etcd-key go together"),
    ("store-node", ["--etcd-user", "store-1"],
     "--etcd-user and --etcd-password-file go together"),
]
# (binary, argv, what its start_failed line must contain): exit 1
START_FAILED = [
    ("frontend", ["--etcd-user", "frontend", "--etcd-password-file", "/nonexistent/pw"],
     "step=etcd reason=\"--etcd-password-file /nonexistent/pw: cannot open the etcd "
     "password file\""),
]
# (binary, argv without a required option, the option named)
MISSING = [
    ("store-node", ["--id", "n1", "--listen", "127.0.0.1:0"], "--data DIR is required"),
    ("queue-node", ["--id", "n1", "--listen", "127.0.0.1:0", "--data", "/x"],
     "--etcd URL is required"),
    ("store-node", ["--listen", "127.0.0.1:0", "--data", "/x"], "--id ID is required"),
]


def run(binary, argv, env=None):
    exe = os.path.join(e2e_harness.bin_dir(), binary)
    full = {k: v for k, v in os.environ.items() if k not in ("MAIL_DNS", "MAIL_SMTP_OUT_PORT")}
    full.update(env or {})
    return subprocess.run([exe] + argv, capture_output=True, text=True, timeout=10, env=full)


def help_block(text, option):
    """The --help lines of one option: its own and the one under it."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(f"  --{option} ") or line == f"  --{option}":
            return lines[i:i + 2]
    return None


def main():
    problems = []
    for binary, options in OPTIONS.items():
        r = run(binary, ["--help"])
        if r.returncode != 0 or not r.stdout.startswith(f"usage: {binary} "):
            problems.append(f"{binary} --help: rc={r.returncode} stdout={r.stdout[:200]!r}")
            continue
        named = {line.split()[0][2:] for line in r.stdout.splitlines()
                 if line.startswith("  --")}
        if named != set(options):
            problems.append(f"{binary} --help names {sorted(named)}, want {sorted(options)}")
    for binary, option, want in DEFAULTS:
        block = help_block(run(binary, ["--help"]).stdout, option)
        if block is None or len(block) < 2 or block[1].strip() != want:
            problems.append(f"{binary} --help for --{option}: {block}, want {want!r}")
    cases = [(b, (NODE_ARGS if b != "frontend" else []) + extra, want)
             for b, extra, want in BAD] + MISSING
    for binary, argv, want in cases:
        r = run(binary, argv)
        err = r.stderr.strip().splitlines()
        if r.returncode != 2 or len(err) != 1 or want not in err[0] or r.stdout:
            problems.append(f"{binary} {' '.join(argv)}: rc={r.returncode} stderr={r.stderr!r}")
    # off loopback with node TLS passes the checks; the unreadable files
    # then fail the start (exit 1) with the one start_failed line
    tls = ["--node-cert", "/nonexistent/n.pem", "--node-key", "/nonexistent/n.key",
           "--cluster-ca", "/nonexistent/ca.pem"]
    for binary in ("store-node", "queue-node"):
        argv = NODE_ARGS + ["--listen", "10.1.2.3:0"] + tls
        r = run(binary, argv)
        failed = [line for line in r.stderr.splitlines() if "event=start_failed" in line]
        if r.returncode != 1 or len(failed) != 1 or "step=node_tls" not in failed[0]:
            problems.append(f"{binary} {' '.join(argv)}: rc={r.returncode} stderr={r.stderr!r}")
    # --dns from the environment: checked like the option, and named
    for binary in ("frontend", "store-node"):
        argv = [] if binary == "frontend" else NODE_ARGS
        r = run(binary, argv, {"MAIL_DNS": "dns.example:53"})
        err = r.stderr.strip().splitlines()
        if r.returncode != 2 or len(err) != 1 or "(from the environment: MAIL_DNS)" not in err[0]:
            problems.append(f"{binary} MAIL_DNS=dns.example:53: rc={r.returncode} "
                            f"stderr={r.stderr!r}")
        r = run(binary, ["--help"], {"MAIL_DNS": "dns.example:53"})
        if r.returncode != 0 or "environment: MAIL_DNS" not in r.stdout:
            problems.append(f"{binary} --help with a bad MAIL_DNS: rc={r.returncode}")
    # --smtp-out-port from the environment, likewise
    r = run("queue-node", NODE_ARGS, {"MAIL_SMTP_OUT_PORT": "70000"})
    err = r.stderr.strip().splitlines()
    if r.returncode != 2 or len(err) != 1 or \
            "(from the environment: MAIL_SMTP_OUT_PORT)" not in err[0]:
        problems.append(f"queue-node MAIL_SMTP_OUT_PORT=70000: rc={r.returncode} "
                        f"stderr={r.stderr!r}")
    # cluster/local up refuses bad test interfaces before starting anything
    local_py = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cluster",
                            "local.py")
    with tempfile.TemporaryDirectory() as state:
        for argv, want in ((["--dns", "dns.example:53"], "--dns must be IPv4:PORT"),
                           (["--smtp-out-port", "0"], "--smtp-out-port must be a port")):
            r = subprocess.run([sys.executable, local_py, "up"] + argv, capture_output=True,
                               text=True, timeout=30, env=dict(os.environ, MAIL_STATE_DIR=state))
            if r.returncode != 1 or want not in r.stderr or os.path.exists(
                    os.path.join(state, "run", "etcd.pid")):
                problems.append(f"local.py up {' '.join(argv)}: rc={r.returncode} "
                                f"stderr={r.stderr!r}")
    for binary, argv, want in START_FAILED:
        r = run(binary, argv)
        failed = [line for line in r.stderr.splitlines() if "event=start_failed" in line]
        if r.returncode != 1 or len(failed) != 1 or want not in failed[0]:
            problems.append(f"{binary} {' '.join(argv)}: rc={r.returncode} stderr={r.stderr!r}")
    for p in problems:
        print("FAIL", p)
    print(f"daemon_options: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
