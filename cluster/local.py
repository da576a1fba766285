#!/usr/bin/env python3
"""The local cluster: start, stop and inspect etcd and the mail daemons.

Used two ways, both with only Python's standard library:
  * by `cluster/local up|down|status` on the brief's fixed ports, with its
    state in ./state/ of the checkout;
  * as a module by the end-to-end tests, with a temporary state dir and free
    ports, so tests run while a development cluster is up.

Every process is started in its own session (setsid), its PID written to
state/run/<name>.pid, its output to state/log/<name>.log; stopping is by PID.

Node RPC is mutual TLS: every store, queue and frontend process gets its
own certificate from the development CA (cluster/dev-ca DIR node NAME
ROLE: state/tls/<name>.pem and .key, issued when it first starts) and is
started with --node-cert, --node-key and --cluster-ca state/tls/ca.pem.

etcd is closed (docs/security.md, "etcd"): https only with client
certificates from the development CA (state/tls/), its peers too; auth on,
with one etcd user per daemon (a role per kind, and per node its own keys),
`admin` for mailctl and the tests, `root` only to manage users. Passwords
are generated into state/etcd/<user>.password (0600). `up` writes
state/mailctl.conf, which mailctl reads when run from the checkout.
"""
import base64
import json
import os
import random
import re
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The brief's ports (all on 127.0.0.1). Node RPC ports are ours: store nodes
# 27101.., queue nodes 27201..; their Prometheus /metrics 27151.., 27251..;
# the frontend's /metrics 27301; etcd peer port 23800.
DEFAULT_PORTS = {
    "etcd": 23790, "etcd_peer": 23800,
    "smtp": 2525, "submission": 2587, "submissions": 2465,
    "imap": 2143, "imaps": 2993, "pop3": 2110, "pop3s": 2995,
    "store_base": 27101, "queue_base": 27201,
    "store_metrics_base": 27151, "queue_metrics_base": 27251, "frontend_metrics": 27301,
}
# what each frontend listens on (frontend-i, i >= 2: Cluster.frontend_ports)
FRONTEND_PORT_KEYS = ("smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s",
                      "frontend_metrics")
# etcd keeps every revision until something compacts it: compact what is
# older than 5 minutes (our watches resume within seconds), and raise the
# NOSPACE alarm at 1 GiB rather than etcd's 2 GiB default (a development
# cluster stays far below: docs/deploy.md). The daemons are told the same
# quota, to warn at 80% of it.
ETCD_COMPACTION = ["--auto-compaction-mode", "periodic", "--auto-compaction-retention", "5m"]
# etcd hashes its users' passwords with bcrypt, cost 10 by default: every
# authentication then costs etcd 50-300 ms of CPU (a dozen daemons starting
# at once on a small machine took over 3 s each). Our etcd passwords are 24
# random bytes: no work factor makes them easier or harder to guess, so the
# cheapest cost (4) is as safe (docs/security.md, "etcd").
ETCD_BCRYPT = ["--bcrypt-cost", "4"]
ETCD_QUOTA_BYTES = 1024 * 1024 * 1024
# The etcd keys (router/*.h, router/security-keys.h) and who may touch
# them: (role, permission, key, range end). A range end of None is one key;
# "prefix" every key under key. Roles: "frontend" (every frontend),
# "node-store" / "node-queue" (every node of that kind: the controller runs
# inside nodes, so the ring and the election key are shared by all of
# them), "admin" (mailctl). Each node also gets a role of its own with its
# node record, alive key and status key (etcd_node_perms).
ETCD_KEY_ROOT = "/mail/v1/"
# what the router reads and watches: alive/ up to ring0 (alive/, blocks/,
# controller, nodes/, progress/, ring/ sort in between). Every daemon may
# read that range: no secret may sort into it (DKIM keys are under
# secrets/dkim/, not dkim/, for that reason).
ETCD_ROUTER_RANGE = (ETCD_KEY_ROOT + "alive/", ETCD_KEY_ROOT + "ring0")
ETCD_ROLE_PERMS = [
    ("frontend", "READ", *ETCD_ROUTER_RANGE),
    ("frontend", "READ", ETCD_KEY_ROOT + "tenants/", "prefix"),
    ("frontend", "READ", ETCD_KEY_ROOT + "users/", "prefix"),
    ("frontend", "READ", ETCD_KEY_ROOT + "tls/", "prefix"),
    # the addresses a tenant receives on (router/directory.h, issue 11)
    ("frontend", "READ", ETCD_KEY_ROOT + "aliases/", "prefix"),
    ("frontend", "READ", ETCD_KEY_ROOT + "domain-aliases/", "prefix"),
    # greylisting triplets and known senders, cluster-wide, under leases
    # (router/greylist/greylist.h)
    ("frontend", "READWRITE", ETCD_KEY_ROOT + "smtp/greylist/", "prefix"),
    ("frontend", "READWRITE", ETCD_KEY_ROOT + "blocks/", "prefix"),
    ("frontend", "READWRITE", ETCD_KEY_ROOT + "locks/", "prefix"),
    ("node-store", "READ", *ETCD_ROUTER_RANGE),
    ("node-store", "READWRITE", ETCD_KEY_ROOT + "ring/", "prefix"),
    ("node-store", "READWRITE", ETCD_KEY_ROOT + "controller", None),
    ("node-store", "READWRITE", ETCD_KEY_ROOT + "progress/store/", "prefix"),
    ("node-queue", "READ", *ETCD_ROUTER_RANGE),
    ("node-queue", "READWRITE", ETCD_KEY_ROOT + "ring/", "prefix"),
    ("node-queue", "READWRITE", ETCD_KEY_ROOT + "controller", None),
    ("node-queue", "READWRITE", ETCD_KEY_ROOT + "progress/queue/", "prefix"),
    # the tenants' DKIM private keys (lib/dkim/dkim-keys.h): queue nodes
    # sign outgoing mail; no other daemon reads them, only admin writes
    ("node-queue", "READ", ETCD_KEY_ROOT + "secrets/dkim/", "prefix"),
    # where outbound mail goes (cluster/mailctl-relay.c): the relays'
    # credentials and the per-destination transports
    ("node-queue", "READ", ETCD_KEY_ROOT + "secrets/relay/", "prefix"),
    ("node-queue", "READ", ETCD_KEY_ROOT + "transport/", "prefix"),
    ("node-queue", "READ", ETCD_KEY_ROOT + "tls-policy/", "prefix"),
    ("admin", "READWRITE", ETCD_KEY_ROOT, "prefix"),
]


def etcd_node_perms(role, node):
    """The keys only node `node` of `role` writes: its record, its alive key
    (under its lease) and its status."""
    return [("READWRITE", f"{ETCD_KEY_ROOT}{sub}/{role}/{node}", None)
            for sub in ("nodes", "alive", "status")]


def etcd_user_of(name, role):
    """The etcd user a process runs as: the node's own name for nodes, one
    user for every frontend."""
    return "frontend" if role == "frontend" else name


class EtcdError(RuntimeError):
    """An etcd JSON-gateway call answered an error: .status (HTTP) and
    .body (the parsed {"error","code"} or the raw text)."""

    def __init__(self, path, status, body):
        super().__init__(f"etcd {path}: HTTP {status}: {body}")
        self.status = status
        self.body = body


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


DEMO_TENANT = "example.test"
DEMO_USER = "demo@example.test"
DEMO_MX = "mail.example.test"   # a SAN of the frontends' development certificate
DEMO_PASSWORD = "demo"


# Ports handed out by free_port() in this process (never twice).
_HANDED_OUT = set()


def free_port():
    """A port free now, below the kernel's ephemeral range (32768-60999 on
    Linux): what other processes get when they bind port 0 (tests, RPC
    clients, etcd's own connections) can then not take it between this
    pick and our daemon's bind."""
    for _ in range(200):
        port = random.randrange(20000, 32000)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    with socket.socket() as s:   # that range is full: any free port
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours is not alive
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class Cluster:
    """A local cluster rooted at state_dir. ports: dict like DEFAULT_PORTS."""

    def __init__(self, state_dir, bin_dir, ports=None, stores=1, queues=1,
                 lease_ttl=5, partitions=64, etcd_members=1, replicas=3, log_keep=None,
                 node_tls=True, frontends=1, dns=None, smtp_out_port=None,
                 queue_extra=None, rspamd=False, frontend_extra=None, store_extra=None):
        self.state = state_dir
        self.bin = bin_dir
        self.ports = ports or dict(DEFAULT_PORTS)
        self.stores = stores
        self.queues = queues
        self.frontends = frontends
        self.lease_ttl = lease_ttl
        self.partitions = partitions
        self.replicas = replicas
        self.log_keep = log_keep  # entries kept per partition log (None: default)
        self.etcd_members = etcd_members
        # issue 10's test interfaces: every daemon resolves through dns
        # ("IP:PORT", None: the system resolver) and the queue nodes deliver
        # to remote MXs on smtp_out_port (None: 25)
        self.dns = dns
        self.smtp_out_port = smtp_out_port
        # more queue-node options (tests: a short --retry-schedule, --expiry)
        self.queue_extra = list(queue_extra or [])
        # more store-node options (benchmarks: --repl-write-thread 0)
        self.store_extra = list(store_extra or [])
        # more frontend options (tests: a short --auth-failure-delay-max)
        self.frontend_extra = list(frontend_extra or [])
        # issue 11: a local rspamd (tests/support/rspamd.py) in state/rspamd,
        # started by up() before the frontends, which get --rspamd URL
        self.rspamd = rspamd
        # mutual TLS between the processes (always, but for benchmarks that
        # measure what it costs: node_tls=False runs node RPC in plaintext)
        self.node_tls = node_tls
        self.stops = {}  # name -> how its last kill() went (seconds, killed, status)
        self.etcd_extra_sans = []  # more SANs for etcd's certificate ("IP:10.0.0.1")
        self._etcd_tokens = {}     # etcd user -> token (etcd_call)
        self._etcd_ready = set()   # etcd users known to exist with their roles
        for sub in ("run", "log", "data"):
            os.makedirs(os.path.join(self.state, sub), exist_ok=True)

    @classmethod
    def with_free_ports(cls, state_dir, bin_dir, **kw):
        ports = {k: free_port() for k in DEFAULT_PORTS}
        for i in range(2, kw.get("etcd_members", 1) + 1):
            ports[f"etcd{i}"] = free_port()
            ports[f"etcd_peer{i}"] = free_port()
        c = cls(state_dir, bin_dir, ports, **kw)
        # node RPC ports: pick each one free rather than a base + offset
        c.node_ports = {}
        for i in range(1, c.stores + 1):
            c.node_ports[f"store-{i}"] = free_port()
            c.node_ports[f"store-{i}-metrics"] = free_port()
        for i in range(1, c.queues + 1):
            c.node_ports[f"queue-{i}"] = free_port()
            c.node_ports[f"queue-{i}-metrics"] = free_port()
        return c

    def etcd_port(self, i, peer=False):
        """Client (or peer) port of etcd member i (1-based)."""
        key = "etcd_peer" if peer else "etcd"
        if i == 1:
            return self.ports[key]
        return self.ports.get(f"{key}{i}", self.ports[key] + i - 1)

    def etcd_names(self):
        if self.etcd_members == 1:
            return ["etcd"]
        return [f"etcd-{i}" for i in range(1, self.etcd_members + 1)]

    @property
    def etcd_url(self):
        """Every member's client URL, comma-separated (our etcd client fails
        over between them)."""
        return ",".join(f"https://127.0.0.1:{self.etcd_port(i)}"
                        for i in range(1, self.etcd_members + 1))

    def node_port(self, name, metrics=False):
        fixed = getattr(self, "node_ports", None)
        key = f"{name}-metrics" if metrics else name
        if fixed is not None:
            # a cluster on free ports: a node added later (scale) gets
            # free ports too, never base + offset
            if key not in fixed:
                fixed[key] = free_port()
            return fixed[key]
        role, idx = name.rsplit("-", 1)
        base = f"{role}_metrics_base" if metrics else f"{role}_base"
        return self.ports[base] + int(idx) - 1

    def metrics_port(self, name):
        if name.startswith("frontend"):
            return self.frontend_ports(int(name.rsplit("-", 1)[1]))["frontend_metrics"]
        return self.node_port(name, metrics=True)

    def frontend_ports(self, i):
        """The listener and metrics ports of frontend-i (keys as in
        DEFAULT_PORTS): frontend-1 has self.ports; frontend-i, i >= 2, the
        same + 1000 * (i - 1) (metrics + i - 1), or free ports for a
        cluster on free ports."""
        keys = FRONTEND_PORT_KEYS
        if i == 1:
            return {k: self.ports[k] for k in keys}
        fixed = getattr(self, "node_ports", None)
        out = {}
        for k in keys:
            if fixed is not None:
                out[k] = fixed.setdefault(f"frontend-{i}-{k}", free_port())
            elif k == "frontend_metrics":
                out[k] = self.ports[k] + i - 1
            else:
                out[k] = self.ports[k] + 1000 * (i - 1)
        return out

    # ---- process table -------------------------------------------------

    def specs(self):
        """(name, role, listen, argv, ready_port) for every process, in start order."""
        out = []
        data = os.path.join(self.state, "data")
        n = self.etcd_members
        initial = ",".join(f"m{i}=https://127.0.0.1:{self.etcd_port(i, peer=True)}"
                           for i in range(1, n + 1))
        for i, name in enumerate(self.etcd_names(), start=1):
            e, ep = self.etcd_port(i), self.etcd_port(i, peer=True)
            out.append((name, "etcd", f"127.0.0.1:{e}", [
                "etcd", "--name", f"m{i}", "--data-dir", os.path.join(data, name),
                "--logger", "zap", "--log-level", "error",
                "--listen-client-urls", f"https://127.0.0.1:{e}",
                "--advertise-client-urls", f"https://127.0.0.1:{e}",
                "--listen-peer-urls", f"https://127.0.0.1:{ep}",
                "--initial-advertise-peer-urls", f"https://127.0.0.1:{ep}",
                "--initial-cluster", initial, "--initial-cluster-state", "new",
                "--initial-cluster-token", "mail-local",
                "--heartbeat-interval", "100", "--election-timeout", "1000",
                *self.etcd_server_args(), *ETCD_BCRYPT,
                *ETCD_COMPACTION, "--quota-backend-bytes", str(ETCD_QUOTA_BYTES)], e))
        for role, count in (("store", self.stores), ("queue", self.queues)):
            for i in range(1, count + 1):
                name = f"{role}-{i}"
                port = self.node_port(name)
                out.append((name, role, f"127.0.0.1:{port}", [
                    os.path.join(self.bin, f"{role}-node"), "--id", name,
                    "--listen", f"127.0.0.1:{port}",
                    "--metrics", f"127.0.0.1:{self.metrics_port(name)}",
                    "--data", os.path.join(data, name), *self.etcd_args(name),
                    "--partitions", str(self.partitions),
                    "--replicas", str(self.replicas),
                    "--lease-ttl", str(self.lease_ttl),
                    "--etcd-quota-bytes", str(ETCD_QUOTA_BYTES)]
                    + (["--log-keep", str(self.log_keep)] if self.log_keep else [])
                    + self.outbound_args(role)
                    + self.node_tls_args(name), port))
        tls = self.tls_dir()
        for i in range(1, self.frontends + 1):
            out.append(self.frontend_spec(i, tls))
        return out

    def rspamd_dir(self):
        return os.path.join(self.state, "rspamd")

    def rspamd_url(self):
        """The running rspamd's URL (state/rspamd/rspamd.json), or None."""
        try:
            with open(os.path.join(self.rspamd_dir(), "rspamd.json")) as f:
                return json.load(f)["url"]
        except (OSError, ValueError, KeyError):
            return None

    def rspamd_args(self):
        url = self.rspamd_url() if self.rspamd else None
        return ["--rspamd", url] if url else []

    def rspamd_module(self):
        sys.path.insert(0, os.path.join(ROOT, "tests", "support"))
        import rspamd  # noqa: E402 (tests/support/rspamd.py)
        return rspamd

    def rspamd_start(self):
        """Start rspamd (installed by cluster/local's PACKAGES) unless it
        runs; the first start compiles its rules (up to ~40 s, cached)."""
        if self.rspamd_url() is not None:
            try:
                r = self.rspamd_module().Rspamd.attach(self.rspamd_dir())
                if r._alive():
                    return
            except (OSError, ValueError, KeyError):
                pass
        r = self.rspamd_module().Rspamd(dir=self.rspamd_dir(), dns=self.dns,
                                        die_with_parent=False)
        r.start()

    def rspamd_stop(self):
        if self.rspamd_url() is None:
            return
        try:
            self.rspamd_module().Rspamd.attach(self.rspamd_dir()).stop()
        except (OSError, ValueError, KeyError):
            pass

    def outbound_args(self, role):
        """--dns for every daemon, --smtp-out-port for the queue nodes, and
        the extra options of queue and store nodes."""
        out = ["--dns", self.dns] if self.dns else []
        if role == "queue" and self.smtp_out_port:
            out += ["--smtp-out-port", str(self.smtp_out_port)]
        if role == "queue":
            out += self.queue_extra
        if role == "store":
            out += self.store_extra
        return out

    def frontend_spec(self, i, tls):
        name = f"frontend-{i}"
        p = self.frontend_ports(i)
        return (name, "frontend",
                    f"smtp=127.0.0.1:{p['smtp']} imap=127.0.0.1:{p['imap']}", [
                        os.path.join(self.bin, "frontend"), "--id", name,
                        *self.etcd_args("frontend"),
                        "--smtp", f"127.0.0.1:{p['smtp']}",
                        "--submission", f"127.0.0.1:{p['submission']}",
                        "--submissions", f"127.0.0.1:{p['submissions']}",
                        "--imap", f"127.0.0.1:{p['imap']}",
                        "--imaps", f"127.0.0.1:{p['imaps']}",
                        "--pop3", f"127.0.0.1:{p['pop3']}",
                        "--pop3s", f"127.0.0.1:{p['pop3s']}",
                        "--tls-cert", os.path.join(tls, "frontend.pem"),
                        "--tls-key", os.path.join(tls, "frontend.key"),
                        "--secret-file", os.path.join(tls, "frontend.secret"),
                        "--trusted-networks", "127.0.0.0/8,::1",
                        "--metrics", f"127.0.0.1:{p['frontend_metrics']}",
                        "--etcd-quota-bytes", str(ETCD_QUOTA_BYTES)]
                    + self.rspamd_args()
                    + self.outbound_args("frontend")
                    + self.node_tls_args(name) + self.frontend_extra, p["imap"])

    def spec(self, name):
        for s in self.specs():
            if s[0] == name:
                return s
        raise KeyError(name)

    def pidfile(self, name):
        return os.path.join(self.state, "run", f"{name}.pid")

    def pid(self, name):
        try:
            with open(self.pidfile(name)) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    # ---- start / stop --------------------------------------------------

    def start(self, name, wait=True, timeout=20):
        """Start one process unless it already runs. Returns its PID."""
        pid = self.pid(name)
        if pid:
            return pid
        _, role, _, argv, ready_port = self.spec(name)
        if role in ("store", "queue", "frontend"):
            self.ensure_tls()
            if self.node_tls:
                self.ensure_node_cert(name, role)
        if role == "etcd":
            self.ensure_etcd_tls()
        elif role in ("store", "queue", "frontend"):
            self.ensure_etcd_user(etcd_user_of(name, role), role)
        if role != "etcd":
            os.makedirs(os.path.join(self.state, "data", name), exist_ok=True)
        log = open(os.path.join(self.state, "log", f"{name}.log"), "ab")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        with open(self.pidfile(name), "w") as f:
            f.write(f"{proc.pid}\n")
        self._procs = getattr(self, "_procs", {})
        self._procs[name] = proc
        if wait:
            self.wait_ready(name, timeout)
        return proc.pid

    def wait_ready(self, name, timeout=20):
        _, role, _, _, port = self.spec(name)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.pid(name):
                raise RuntimeError(f"{name} exited; see {self.logfile(name)}:\n"
                                   + self.log_tail(name))
            if role == "etcd":
                # members of a new multi-member cluster only become healthy
                # together: wait for the port here, for health in up()
                if (self.etcd_members > 1 and port_open(port)) or self.etcd_healthy():
                    return
            elif port_open(port):
                return
            time.sleep(0.05)
        raise RuntimeError(f"{name} not ready after {timeout}s; see {self.logfile(name)}")

    def etcd_healthy(self, member=None):
        """Health of one member (1-based), or of any member when None."""
        members = [member] if member else range(1, self.etcd_members + 1)
        for i in members:
            try:
                url = f"https://127.0.0.1:{self.etcd_port(i)}/health"
                with urllib.request.urlopen(url, timeout=1,
                                            context=self.etcd_ssl_context()) as r:
                    if json.load(r).get("health") == "true":
                        return True
            except (OSError, ValueError):
                pass
        return False

    def logfile(self, name):
        return os.path.join(self.state, "log", f"{name}.log")

    def log_events(self, name, pattern, n=80):
        """The last n lines of a process's log matching the regex pattern
        (what a failed test prints to explain itself)."""
        import re
        rx = re.compile(pattern)
        try:
            with open(self.logfile(name), errors="replace") as f:
                return "".join([line for line in f if rx.search(line)][-n:])
        except OSError:
            return ""

    def log_tail(self, name, n=20):
        try:
            with open(self.logfile(name), errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def kill(self, name, sig=signal.SIGTERM, timeout=10):
        """Signal one process by PID and wait until it is gone; SIGKILL it
        if it is still there after timeout seconds. Records in
        self.stops[name] how long it took, whether SIGKILL was needed and
        its exit status (when this object started it; else None)."""
        pid = self.pid(name)
        if not pid:
            return False
        t0 = time.monotonic()
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
        deadline = t0 + timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            self._reap(name)
            time.sleep(0.02)
        killed = pid_alive(pid)
        if killed:
            os.kill(pid, signal.SIGKILL)
            while pid_alive(pid):
                self._reap(name)
                time.sleep(0.02)
        self._reap(name)
        proc = getattr(self, "_procs", {}).get(name)
        self.stops[name] = {"seconds": time.monotonic() - t0, "killed": killed,
                            "status": proc.returncode if proc is not None else None}
        try:
            os.unlink(self.pidfile(name))
        except OSError:
            pass
        return True

    def _reap(self, name):
        proc = getattr(self, "_procs", {}).get(name)
        if proc is not None:
            proc.poll()

    def tls_dir(self):
        return os.path.join(self.state, "tls")

    def ensure_tls(self):
        """The development CA and certificates (cluster/dev-ca) and the
        secret the frontends share (TLS tickets, SASL), under state/tls/."""
        d = self.tls_dir()
        subprocess.run([os.path.join(ROOT, "cluster", "dev-ca"), d], check=True)
        secret = os.path.join(d, "frontend.secret")
        if not os.path.exists(secret):
            fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(os.urandom(32))

    def ensure_node_cert(self, name, role, sans=None):
        """The node certificate of process `name` (cluster/dev-ca node NAME
        ROLE, plus the SANs given, e.g. "IP:10.1.2.3" for a node off
        loopback): state/tls/<name>.pem and .key, kept once issued."""
        argv = [os.path.join(ROOT, "cluster", "dev-ca"), self.tls_dir(), "node", name, role]
        subprocess.run(argv + ([sans] if sans else []), check=True)

    def node_tls_args(self, name):
        """--node-cert, --node-key and --cluster-ca of process `name` (its
        certificate issued by ensure_node_cert()); [] without node TLS."""
        if not self.node_tls:
            return []
        d = self.tls_dir()
        return ["--node-cert", os.path.join(d, f"{name}.pem"),
                "--node-key", os.path.join(d, f"{name}.key"),
                "--cluster-ca", os.path.join(d, "ca.pem")]

    def up(self):
        self.ensure_tls()
        started = []
        if self.rspamd:
            self.rspamd_start()
        for name, role, *_ in self.specs():
            if self.pid(name):
                continue
            self.start(name)
            started.append(name)
            if role == "etcd" and name == self.etcd_names()[-1]:
                deadline = time.monotonic() + 20
                while not self.etcd_healthy() and time.monotonic() < deadline:
                    time.sleep(0.05)
                if not self.etcd_healthy():
                    raise RuntimeError("etcd cluster not healthy after 20s")
                # users, roles, auth on: before the first daemon
                self.ensure_etcd_auth()
        self.ensure_etcd_auth()  # (all was running: writes mailctl.conf)
        self.ensure_demo()
        return started

    def down(self):
        """Stop everything, frontends first and etcd last (so nodes
        deregister): SIGTERM, then SIGKILL after 10 s. Names (on stderr) any
        process that needed SIGKILL. Returns those names."""
        killed = []
        for name, *_ in reversed(self.specs()):
            if self.kill(name) and self.stops[name]["killed"]:
                killed.append(name)
                print(f"cluster/local: {name} did not exit within 10 s of SIGTERM: "
                      f"killed (SIGKILL); see {self.logfile(name)}", file=sys.stderr)
        self.rspamd_stop()
        return killed

    # ---- etcd: TLS, users, direct calls ----------------------------------

    def etcd_dir(self):
        return os.path.join(self.state, "etcd")

    def etcd_password_file(self, user):
        """state/etcd/<user>.password (0600), made with a random password
        the first time."""
        d = self.etcd_dir()
        os.makedirs(d, mode=0o700, exist_ok=True)
        path = os.path.join(d, f"{user}.password")
        if not os.path.exists(path):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(24) + "\n")
        return path

    def etcd_password(self, user):
        with open(self.etcd_password_file(user)) as f:
            return f.readline().strip()

    def etcd_cert_paths(self, user):
        """(certificate, key) paths of etcd user `user`'s client certificate."""
        tls = self.tls_dir()
        return os.path.join(tls, f"etcd-{user}.pem"), os.path.join(tls, f"etcd-{user}.key")

    def etcd_cert(self, user):
        """etcd_cert_paths(), issued on first use (cluster/dev-ca
        etcd-client: no CN, which etcd's gateway refuses)."""
        pem, key = self.etcd_cert_paths(user)
        if not (os.path.exists(pem) and os.path.exists(key)):
            subprocess.run([os.path.join(ROOT, "cluster", "dev-ca"), self.tls_dir(),
                            "etcd-client", f"etcd-{user}"], check=True)
        return pem, key

    def ensure_etcd_tls(self):
        """etcd's certificate (serverAuth and clientAuth: its gateway dials
        etcd with it; also its peer certificate) and the admin's."""
        tls = self.tls_dir()
        sans = ",".join(["DNS:localhost", "IP:127.0.0.1", *self.etcd_extra_sans])
        subprocess.run([os.path.join(ROOT, "cluster", "dev-ca"), tls, "server", "etcd-server",
                        sans], check=True)
        self.etcd_cert("admin")

    def etcd_server_args(self):
        """etcd's TLS flags: clients and peers over https with a client
        certificate from the development CA."""
        tls = self.tls_dir()
        pem, key = os.path.join(tls, "etcd-server.pem"), os.path.join(tls, "etcd-server.key")
        ca = os.path.join(tls, "ca.pem")
        # peers: only etcd's own certificate (CN etcd-server), not any
        # client certificate of the same CA
        return ["--cert-file", pem, "--key-file", key, "--trusted-ca-file", ca,
                "--client-cert-auth",
                "--peer-cert-file", pem, "--peer-key-file", key,
                "--peer-trusted-ca-file", ca, "--peer-client-cert-auth",
                "--peer-cert-allowed-cn", "etcd-server"]

    def etcd_args(self, user, url=None):
        """A daemon's etcd options for etcd user `user` (the files are made
        by start()); url: another way to reach etcd than etcd_url."""
        tls = self.tls_dir()
        return ["--etcd", url or self.etcd_url,
                "--etcd-ca", os.path.join(tls, "ca.pem"),
                "--etcd-cert", os.path.join(tls, f"etcd-{user}.pem"),
                "--etcd-key", os.path.join(tls, f"etcd-{user}.key"),
                "--etcd-user", user,
                "--etcd-password-file", os.path.join(self.etcd_dir(), f"{user}.password")]

    def mailctl_conf(self):
        """state/mailctl.conf: how mailctl reaches this cluster's etcd as
        admin (cluster/mailctl-conf.c reads it)."""
        return os.path.join(self.state, "mailctl.conf")

    def write_mailctl_conf(self):
        pem, key = self.etcd_cert("admin")
        lines = ["# written by cluster/local: mailctl's etcd settings (docs/security.md)",
                 f"etcd = {self.etcd_url}",
                 f"etcd-ca = {os.path.join(self.tls_dir(), 'ca.pem')}",
                 f"etcd-cert = {pem}", f"etcd-key = {key}", "etcd-user = admin",
                 f"etcd-password-file = {self.etcd_password_file('admin')}"]
        if self.node_tls:
            # mailctl queue asks the queue nodes over mutual TLS, as admin
            self.ensure_node_cert("mailctl", "admin")
            d = self.tls_dir()
            lines += [f"node-cert = {os.path.join(d, 'mailctl.pem')}",
                      f"node-key = {os.path.join(d, 'mailctl.key')}",
                      f"cluster-ca = {os.path.join(d, 'ca.pem')}"]
        tmp = self.mailctl_conf() + ".tmp"
        with open(tmp, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(tmp, self.mailctl_conf())

    def etcd_ssl_context(self, user="admin"):
        """TLS to etcd as `user`: the development CA, the user's client
        certificate."""
        ctx = ssl.create_default_context(cafile=os.path.join(self.tls_dir(), "ca.pem"))
        ctx.load_cert_chain(*self.etcd_cert_paths(user))
        return ctx

    def etcd_token(self, user="admin", fresh=False):
        """A token of `user` (cached; fresh: a new one). None when etcd's
        auth is off."""
        if fresh or user not in self._etcd_tokens:
            try:
                r = self.etcd_post("/v3/auth/authenticate",
                                    {"name": user, "password": self.etcd_password(user)},
                                    user, None)
                self._etcd_tokens[user] = r["token"]
            except EtcdError as e:
                if "authentication is not enabled" not in str(e.body):
                    raise
                self._etcd_tokens[user] = None
        return self._etcd_tokens[user]

    def etcd_post(self, path, body, user, token, timeout=5, member=None, stream=False):
        """POST body as `user` (its client certificate) with exactly `token`
        (None: no Authorization header); no retry. The parsed answer, or the
        open response with stream. Raises EtcdError for an error answer."""
        url = f"https://127.0.0.1:{self.etcd_port(member or 1)}{path}"
        req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
        if token:
            req.add_header("Authorization", token)  # no "Bearer": etcd's gateway wants it bare
        try:
            r = urllib.request.urlopen(req, timeout=timeout,
                                       context=self.etcd_ssl_context(user))
        except urllib.error.HTTPError as e:
            text = e.read().decode(errors="replace")
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = text
            raise EtcdError(path, e.code, parsed) from None
        if stream:
            return r
        with r:
            return json.load(r)

    def etcd_open(self, path, body, user="admin", timeout=5, member=None):
        """POST body to etcd's JSON gateway as `user` (TLS with the user's
        certificate, its token) and return the open response (a watch
        streams lines). Authenticates again once when the token is refused
        (etcd restarted). Raises EtcdError for an error answer."""
        token = self.etcd_token(user)
        try:
            return self.etcd_post(path, body, user, token, timeout, member, stream=True)
        except EtcdError as e:
            if e.status != 401:
                raise
        return self.etcd_post(path, body, user, self.etcd_token(user, fresh=True), timeout,
                               member, stream=True)

    def etcd_call(self, path, body=None, user="admin", timeout=5, member=None):
        """etcd_open() for a plain call: the parsed JSON answer."""
        with self.etcd_open(path, body or {}, user, timeout, member) as r:
            return json.load(r)

    def etcd_get(self, key, user="admin"):
        """The value of key (bytes), or None."""
        kvs = self.etcd_call("/v3/kv/range", {"key": b64(key)}, user).get("kvs", [])
        return base64.b64decode(kvs[0]["value"]) if kvs else None

    def _etcd_admin(self, path, body, token, exists_ok=True):
        try:
            self.etcd_post(path, body, "root", token)
        except EtcdError as e:
            if not (exists_ok and "already exists" in str(e.body)):
                raise

    def _etcd_grant(self, role, perm, key, end, token):
        if end == "prefix":
            end = key[:-1] + chr(ord(key[-1]) + 1)
        p = {"permType": perm, "key": b64(key)}
        if end is not None:
            p["range_end"] = b64(end)
        self._etcd_admin("/v3/auth/role/grant", {"name": role, "perm": p}, token)

    def _etcd_user(self, user, roles, token):
        self._etcd_admin("/v3/auth/user/add",
                         {"name": user, "password": self.etcd_password(user)}, token)
        for role in roles:
            self._etcd_admin("/v3/auth/user/grant", {"user": user, "role": role}, token)

    def ensure_etcd_auth(self):
        """Users, roles and `auth enable` (last), once: root (user
        management only), admin (mailctl, tests), frontend, the node roles
        (ETCD_ROLE_PERMS); then state/mailctl.conf. Idempotent: a second
        run (an existing cluster) only repairs what is missing."""
        if "root" in self._etcd_ready:
            return
        self.ensure_etcd_tls()
        for user in ("root", "frontend"):
            self.etcd_cert(user)
            self.etcd_password_file(user)
        token = self.etcd_token("root", fresh=True)  # None while auth is off
        self._etcd_admin("/v3/auth/role/add", {"name": "root"}, token)
        for role in sorted({r for r, *_ in ETCD_ROLE_PERMS}):
            self._etcd_admin("/v3/auth/role/add", {"name": role}, token)
        for role, perm, key, end in ETCD_ROLE_PERMS:
            self._etcd_grant(role, perm, key, end, token)
        self._etcd_user("root", ["root"], token)
        self._etcd_user("admin", ["admin"], token)
        self._etcd_user("frontend", ["frontend"], token)
        if token is None:
            self._etcd_admin("/v3/auth/enable", {}, None, exists_ok=False)
            self.etcd_token("root", fresh=True)
        self._etcd_ready.update(("root", "admin", "frontend"))
        self.write_mailctl_conf()

    def ensure_etcd_user(self, user, role):
        """The etcd user of a daemon (its certificate, its password file,
        and for a node its user and roles: node-<kind> and its own)."""
        self.etcd_cert(user)
        self.etcd_password_file(user)
        self.ensure_etcd_auth()
        if user in self._etcd_ready:
            return
        token = self.etcd_token("root")
        own = f"node-{user}"
        self._etcd_admin("/v3/auth/role/add", {"name": own}, token)
        for perm, key, end in etcd_node_perms(role, user):
            self._etcd_grant(own, perm, key, end, token)
        self._etcd_user(user, [f"node-{role}", own], token)
        self._etcd_ready.add(user)

    # ---- admin ----------------------------------------------------------

    def mailctl_env(self):
        """The environment mailctl runs in: its settings file is this
        cluster's (etcd URL, TLS files, the admin user)."""
        return dict(os.environ, MAIL_ETCD_CONF=self.mailctl_conf())

    def mailctl(self, *args, stdin=None, check=True):
        r = subprocess.run([os.path.join(self.bin, "mailctl"), *args], input=stdin,
                           capture_output=True, text=True, timeout=60,
                           env=self.mailctl_env())
        if check and r.returncode != 0:
            raise RuntimeError(f"mailctl {' '.join(args)}: rc={r.returncode} {r.stderr}")
        return r

    def ensure_demo(self):
        r = self.mailctl("tenant", "add", DEMO_TENANT, check=False)
        if r.returncode not in (0, 3):
            raise RuntimeError(f"mailctl tenant add: {r.stderr}")
        r = self.mailctl("user", "add", DEMO_USER, stdin=DEMO_PASSWORD + "\n", check=False)
        if r.returncode not in (0, 3):
            raise RuntimeError(f"mailctl user add: {r.stderr}")
        # the platform's names for `mailctl dns` (docs/dns.md): this
        # cluster's MX name (in the frontend certificate) and its ports;
        # never over an operator's own settings
        r = self.mailctl("dns", "platform", "show", "--json", check=False)
        if r.returncode == 0 and not json.loads(r.stdout).get("mx"):
            p = self.ports
            self.mailctl("dns", "platform", "set", f"mx={DEMO_MX}",
                         f"imaps_port={p['imaps']}", f"imap_port={p['imap']}",
                         f"pop3s_port={p['pop3s']}", f"pop3_port={p['pop3']}",
                         f"submissions_port={p['submissions']}",
                         f"submission_port={p['submission']}", check=False)

    def status_lines(self):
        lines = []
        for name, role, listen, _, port in self.specs():
            pid = self.pid(name)
            if not pid:
                state = "stopped"
            elif (self.etcd_healthy(self.etcd_names().index(name) + 1) if role == "etcd"
                  else port_open(port)):
                state = "running"
            else:
                state = "starting"
            lines.append(f"{role:<9} {name:<11} pid={pid or '-':<8} {listen:<40} {state}")
        return lines


def scale(c, conf, conf_path, args):
    """cluster/local scale store=N queue=M frontend=F: start new nodes, or
    drain and stop the highest-numbered ones (mailctl node drain waits until
    the controller has moved their partitions away, printing progress), then
    remove their records. Frontends are stateless: the extra ones just start
    (frontend-i listens on frontend-1's ports + 1000 * (i - 1)) or stop."""
    want = {}
    usage = "usage: cluster/local scale store=N queue=M frontend=F (N, M, F >= 1)"
    for a in args:
        role, _, n = a.partition("=")
        if role not in ("store", "queue", "frontend") or not n.isdigit() or int(n) < 1:
            print(usage, file=sys.stderr)
            return 1
        want[role] = int(n)
    if not want:
        print(usage, file=sys.stderr)
        return 1
    for role, n in want.items():
        key = role + "s"
        have = conf.get(key, 1)
        if role == "frontend":
            conf[key] = n
            c.frontends = max(n, have)
            for i in range(have + 1, n + 1):
                c.start(f"frontend-{i}")
                p = c.frontend_ports(i)
                print(f"started frontend-{i} (SMTP {p['smtp']}, IMAP {p['imap']}, "
                      f"IMAPS {p['imaps']}, POP3 {p['pop3']})", flush=True)
            for i in range(have, n, -1):
                c.kill(f"frontend-{i}")
                print(f"stopped frontend-{i}", flush=True)
            c.frontends = n
            with open(conf_path, "w") as f:
                json.dump(conf, f)
            continue
        if n > have:
            conf[key] = n
            setattr(c, key, n)
            for i in range(have + 1, n + 1):
                name = f"{role}-{i}"
                c.start(name)
                print(f"started {name}", flush=True)
        for i in range(have, n, -1):
            name = f"{role}-{i}"
            print(f"draining {name} ...", flush=True)
            r = subprocess.run([os.path.join(c.bin, "mailctl"), "node",
                                "drain", name, "--role", role, "--timeout", "300"],
                               env=c.mailctl_env())
            if r.returncode != 0:
                print(f"cluster/local scale: drain of {name} failed (rc={r.returncode}); "
                      "it keeps running; the partitions now:", file=sys.stderr)
                print(c.mailctl("partitions", "--role", role, check=False).stdout,
                      file=sys.stderr)
                return 1
            c.kill(name)
            c.mailctl("node", "remove", name, "--role", role, check=False)
            conf[key] = i - 1
            setattr(c, key, i - 1)
            print(f"stopped {name}", flush=True)
        with open(conf_path, "w") as f:
            json.dump(conf, f)
    for line in c.status_lines():
        print(line)
    return 0


def main(argv):
    cmd = argv[1] if len(argv) > 1 else ""
    state = os.environ.get("MAIL_STATE_DIR", os.path.join(ROOT, "state"))
    bin_dir = os.path.join(os.environ.get("MAIL_BUILD_DIR", os.path.join(ROOT, "build")), "bin")
    # the shape of the cluster is fixed by the first `up` and kept in
    # state/cluster.json, so later up/down/status see the same processes
    conf_path = os.path.join(state, "cluster.json")
    conf = {"etcd_members": 1, "stores": 3, "queues": 3}
    try:
        with open(conf_path) as f:
            conf.update(json.load(f))
    except (OSError, ValueError):
        pass
    args = argv[2:]
    if cmd == "up" and "--etcd-members" in args:
        i = args.index("--etcd-members")
        try:
            members = int(args[i + 1])
        except (IndexError, ValueError):
            members = 0
        if members not in (1, 3, 5):
            print("cluster/local up: --etcd-members must be 1, 3 or 5", file=sys.stderr)
            return 1
        if os.path.exists(os.path.join(state, "data")) and members != conf["etcd_members"] \
                and any(os.scandir(os.path.join(state, "data"))):
            print("cluster/local up: the cluster already exists with "
                  f"{conf['etcd_members']} etcd member(s); `cluster/local down` and "
                  "remove state/ to change it", file=sys.stderr)
            return 1
        conf["etcd_members"] = members
    if cmd == "up":
        # issue 10's test interfaces, kept for the later `up`s of this state
        for flag, key in (("--dns", "dns"), ("--smtp-out-port", "smtp_out_port")):
            if flag not in args:
                continue
            i = args.index(flag)
            value = args[i + 1] if i + 1 < len(args) else ""
            if key == "dns" and not re.fullmatch(r"(\d{1,3}(\.\d{1,3}){3}|\[[0-9A-Fa-f:.]+\]):\d{1,5}",
                                                 value):
                print("cluster/local up: --dns must be IPv4:PORT or [IPv6]:PORT",
                      file=sys.stderr)
                return 1
            if key == "smtp_out_port" and not (value.isdigit() and 1 <= int(value) <= 65535):
                print("cluster/local up: --smtp-out-port must be a port number (1..65535)",
                      file=sys.stderr)
                return 1
            conf[key] = value if key == "dns" else int(value)
        if "--rspamd" in args:
            conf["rspamd"] = True
    c = Cluster(state, bin_dir, etcd_members=conf["etcd_members"],
                stores=conf["stores"], queues=conf["queues"],
                frontends=conf.get("frontends", 1), dns=conf.get("dns"),
                smtp_out_port=conf.get("smtp_out_port"), rspamd=conf.get("rspamd", False))
    if cmd == "scale":
        return scale(c, conf, conf_path, args)
    if cmd == "up":
        os.makedirs(state, exist_ok=True)
        with open(conf_path, "w") as f:
            json.dump(conf, f)
        try:
            started = c.up()
        except RuntimeError as e:
            print(f"cluster/local up: {e}", file=sys.stderr)
            return 1
        print("started: " + (", ".join(started) if started else "nothing (all running)"))
        for line in c.status_lines():
            print(line)
        p = c.ports
        print(f"\nSMTP MX 127.0.0.1:{p['smtp']}  submission {p['submission']} (STARTTLS), "
              f"{p['submissions']} (TLS)  IMAP 127.0.0.1:{p['imap']} (STARTTLS), "
              f"{p['imaps']} (TLS)  POP3 127.0.0.1:{p['pop3']} (STLS), {p['pop3s']} (TLS)  "
              f"etcd {c.etcd_url}")
        print(f"TLS: CA {os.path.join(state, 'tls', 'ca.pem')} (the certificate names "
              "localhost, 127.0.0.1, mail.example.test); node RPC: mutual TLS, one "
              "certificate per process in state/tls/<name>.pem")
        print(f"etcd: https with client certificates and users (passwords in {state}/etcd/); "
              f"mailctl reads {c.mailctl_conf()} (run build/bin/mailctl from {ROOT})")
        print(f"demo user {DEMO_USER} password '{DEMO_PASSWORD}'; logs in {state}/log/")
        return 0
    if cmd == "down":
        killed = c.down()
        print("stopped" + (f" ({len(killed)} needed SIGKILL: {', '.join(killed)})"
                           if killed else ""))
        return 0
    if cmd == "status":
        for line in c.status_lines():
            print(line)
        return 0
    print("usage: local.py up [--etcd-members 1|3|5] [--dns IP:PORT] [--smtp-out-port N] "
          "[--rspamd] "
          "| down | status "
          "| scale store=N queue=M frontend=F", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
