#!/usr/bin/env python3
"""Deployment test: three machines set up as docs/deploy.md says, mail
across them, then a rolling restart of every node under load.

Each machine is a network namespace with two interfaces, as a real one
has two networks: the cluster network 10.77.0.K/24 (etcd, node RPC,
metrics) and the public network 10.78.0.K/24 (the mail ports). A third
namespace, 10.78.0.100 on the public network only, is the internet: every
client of the test (smtplib, imaplib) runs there, in threads that have
entered it (setns). Both networks are bridges inside a fourth namespace;
the root namespace gets no address and no route. Nothing uses loopback
between machines.

Following the guide's numbered steps:
  1. `cmake --install` of the build ($MAIL_BIN_DIR/..) into one prefix per
     machine (each machine its own files: nothing shared through the
     file system but what the guide copies);
  2. the CA and every certificate with the installed dev-ca, on an
     "admin workstation" directory, each machine's files copied to its
     PREFIX/etc/mail/tls;
  3. etcd: three members, one per machine (one etcd would make its machine
     the one that cannot fail), from mail-etcd.service and etcd.env;
  4. etcd's roles and users with the installed mail-etcd-setup;
  5. each machine's cluster.env and node files from the installed
     examples, then its store, queue and frontend from their units;
  6. mailctl (mailctl.conf from its example) adds a tenant and users.
systemd is not PID 1 here, so `Unit` below does what it would: reads the
installed unit file, its EnvironmentFiles, expands the specifiers and the
variables of ExecStart (systemd's rules), and the test starts that argv
with `ip netns exec` (as root: User= is not applied). The unit files are
also checked with `systemd-analyze verify` where it runs.

Then: a message submitted on machine 1's frontend (587, STARTTLS, AUTH)
and one sent to its MX port are read over IMAP (STARTTLS) and IMAPS on
machine 3's frontend; the cluster-only ports are not reachable from the
internet namespace; mail-etcd-setup's permission table is the one
cluster/local.py gives etcd. Under a steady SMTP load (three senders,
each message tried on the machines' MX ports in turn and retried on 4xx
or a broken connection, as an MTA does), every node is restarted, machine
by machine: frontend, queue node, store node, etcd member (SIGTERM, wait
for the exit, which must be clean: status 0, etcd's own SIGTERM; start
again from the unit, wait until `mailctl status --json` says "ok"
again). The audit: no sender saw a 5xx, every message
that got 250 is in its mailbox exactly once (a resend after a connection
lost in DATA may only be absorbed, never doubled within the queue's
resend window), the queues drained. Clean-up (processes by PID, the
namespaces, the temp dir) runs whatever happens. Not root, or `ip netns`
refused: SKIP (exit 77). About 1.5 minutes. Standard library only.
"""
import ctypes
import imaplib
import json
import os
import re
import shlex
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import e2e_harness  # noqa: E402
from e2e_harness import local  # noqa: E402

SKIP = 77
MACHINES = (1, 2, 3)
CLUSTER_NET = "10.77.0"     # .K: machine K on the cluster network
PUBLIC_NET = "10.78.0"      # .K: machine K's public address; .100: the internet
CLIENT_IP = f"{PUBLIC_NET}.100"
PARTITIONS = 32
TENANT = "example.test"
PASSWORD = "pw-machines"
USERS = [f"u{i}@{TENANT}" for i in range(4)]
SENDERS = 3
WINDOW_S = 600              # the queue's resend window (client/queue-client.h)
REJOIN_S = 90               # a restarted node back and the cluster "ok"
# the guide's ports (docs/deploy.md, "Ports")
PORTS = {"smtp": 25, "submission": 587, "submissions": 465, "imap": 143, "imaps": 993,
         "pop3": 110, "pop3s": 995, "etcd": 2379, "etcd_peer": 2380,
         "store": 7101, "store_metrics": 7151, "queue": 7201, "queue_metrics": 7251,
         "frontend_metrics": 7301}
CLUSTER_ONLY = ("etcd", "etcd_peer", "store", "store_metrics", "queue", "queue_metrics",
                "frontend_metrics")


def sh(*argv, check=True, timeout=60, env=None, stdin=None):
    r = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                       timeout=timeout, env=env, input=stdin)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))}: rc={r.returncode} "
                           f"{r.stderr.strip()} {r.stdout.strip()}")
    return r


# ---- network namespaces -------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


def enter_netns(ns):
    """Move the calling thread (only it: namespaces are per thread) into
    network namespace ns; every socket it opens afterwards lives there."""
    fd = os.open(f"/var/run/netns/{ns}", os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {ns}")
    finally:
        os.close(fd)


def in_netns(ns, fn, *args, **kw):
    """fn(*args, **kw) run in a new thread inside ns; its result or its
    exception."""
    out = {}

    def run():
        try:
            enter_netns(ns)
            out["r"] = fn(*args, **kw)
        except BaseException as e:   # re-raised in the caller
            out["e"] = e
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join()
    if "e" in out:
        raise out["e"]
    return out["r"]


class Net:
    """The machines' namespaces, the internet's, and the switch holding
    the two bridges; every name carries our PID."""

    def __init__(self):
        pid = os.getpid()
        self.switch = f"mailsw{pid}"
        self.internet = f"mailnet{pid}"
        self.machines = {k: f"mailm{k}-{pid}" for k in MACHINES}
        self.made = []

    def add(self, ns):
        r = sh("ip", "netns", "add", ns, check=False)
        if r.returncode != 0:
            return r.stderr.strip()
        self.made.append(ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        return None

    def wire(self, ns, bridge, port, ifname, address):
        """A veth from bridge (port, in the switch) to ns (ifname, address/24)."""
        sw = self.switch
        sh("ip", "-n", sw, "link", "add", port, "type", "veth", "peer", "name", ifname,
           "netns", ns)
        sh("ip", "-n", sw, "link", "set", port, "master", bridge)
        sh("ip", "-n", sw, "link", "set", port, "up")
        sh("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", ifname)
        sh("ip", "-n", ns, "link", "set", ifname, "up")

    def create(self):
        """None, or why namespaces cannot be made here (a SKIP)."""
        if os.geteuid() != 0:
            return "not root: `ip netns add` needs CAP_SYS_ADMIN"
        err = self.add(self.switch)
        if err:
            return f"`ip netns add` refused: {err}"
        for br in ("brc", "brp"):
            sh("ip", "-n", self.switch, "link", "add", br, "type", "bridge")
            sh("ip", "-n", self.switch, "link", "set", br, "up")
        for k, ns in self.machines.items():
            if self.add(ns):
                raise RuntimeError(f"ip netns add {ns} failed")
            self.wire(ns, "brc", f"c{k}", "cluster0", f"{CLUSTER_NET}.{k}")
            self.wire(ns, "brp", f"p{k}", "public0", f"{PUBLIC_NET}.{k}")
        if self.add(self.internet):
            raise RuntimeError(f"ip netns add {self.internet} failed")
        self.wire(self.internet, "brp", "p0", "public0", CLIENT_IP)
        return None

    def destroy(self):
        # deleting a namespace deletes the veth ends in it, and so the pairs
        for ns in reversed(self.made):
            sh("ip", "netns", "del", ns, check=False)
        self.made = []


# ---- systemd's part -----------------------------------------------------

def read_env_file(path):
    """systemd's EnvironmentFile: NAME=VALUE lines, # and ; comments,
    surrounding quotes removed."""
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            name, sep, value = line.partition("=")
            if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name.strip()):
                raise ValueError(f"{path}: not NAME=VALUE: {line!r}")
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            env[name.strip()] = value
    return env


class Unit:
    """An installed unit file, read as systemd reads it, for one instance."""

    def __init__(self, path, instance=None):
        self.path = path
        base = os.path.basename(path)
        self.prefix = base.split("@")[0] if "@" in base else base.rsplit(".", 1)[0]
        self.instance = instance
        self.name = (f"{self.prefix}@{instance}.service" if instance is not None else base)
        self.service = {}
        section = None
        with open(path) as f:
            text = f.read().replace("\\\n", " ")   # continuation lines
        for line in text.splitlines():
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                section = line.strip("[]")
                continue
            key, _, value = line.partition("=")
            if section == "Service":
                self.service.setdefault(key.strip(), []).append(value.strip())

    def specifiers(self, s):
        table = {"i": self.instance or "", "I": self.instance or "", "n": self.name,
                 "N": self.name.rsplit(".", 1)[0], "p": self.prefix, "%": "%"}

        def one(m):
            if m.group(1) not in table:
                raise ValueError(f"{self.path}: specifier %{m.group(1)} not emulated")
            return table[m.group(1)]
        return re.sub(r"%(.)", one, s)

    def environment(self):
        """Environment= then EnvironmentFile= (a leading "-": optional), in
        order; later settings win."""
        env = {}
        for e in self.service.get("Environment", []):
            for word in shlex.split(self.specifiers(e)):
                name, _, value = word.partition("=")
                env[name] = value
        for spec in self.service.get("EnvironmentFile", []):
            optional = spec.startswith("-")
            path = self.specifiers(spec.lstrip("-"))
            if optional and not os.path.exists(path):
                continue
            env.update(read_env_file(path))
        return env

    def argv(self):
        """ExecStart as systemd runs it: specifiers, then per word "$NAME"
        alone splits the value at whitespace (nothing when unset or empty)
        and "${NAME}" anywhere is the value as it is."""
        (cmd,) = self.service["ExecStart"]
        env = self.environment()
        cmd = self.specifiers(cmd).lstrip("-@:+!")
        out = []
        for word in shlex.split(cmd):
            m = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
            if m:
                out += env.get(m.group(1), "").split()
                continue
            for name in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", word):
                if name not in env:
                    raise ValueError(f"{self.name}: ${{{name}}} is set by no EnvironmentFile")
            out.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}",
                              lambda m: env[m.group(1)], word).replace("$$", "$"))
        return out

    def process_env(self):
        """What systemd gives the process: a plain PATH and the files' values."""
        return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "LANG": "C.UTF-8", **self.environment()}


def set_values(path, values):
    """Set NAME=VALUE lines of an env file copied from an example (what an
    operator does with an editor): each name must be in the file."""
    with open(path) as f:
        lines = f.read().splitlines()
    for name, value in values.items():
        hits = [i for i, l in enumerate(lines) if l.startswith(f"{name}=")]
        if len(hits) != 1:
            raise RuntimeError(f"{path}: {name}= is not in the example once")
        lines[hits[0]] = f"{name}={value}"
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def set_conf(path, values):
    """The same for mailctl.conf's "name = value" lines."""
    with open(path) as f:
        lines = f.read().splitlines()
    for name, value in values.items():
        hits = [i for i, l in enumerate(lines) if re.match(rf"{re.escape(name)}\s*=", l)]
        if len(hits) != 1:
            raise RuntimeError(f"{path}: {name} is not in the example once")
        lines[hits[0]] = f"{name} = {value}"
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


# ---- the machines -------------------------------------------------------

class Machine:
    def __init__(self, k, root, ns):
        self.k = k
        self.ns = ns
        self.prefix = os.path.join(root, f"m{k}")
        self.conf = os.path.join(self.prefix, "etc", "mail")
        self.units = os.path.join(self.prefix, "lib", "systemd", "system")
        self.logs = os.path.join(root, "logs")
        self.ip = f"{CLUSTER_NET}.{k}"
        self.public = f"{PUBLIC_NET}.{k}"
        self.procs = {}     # unit name -> Popen
        self.store, self.queue, self.frontend = f"store-{k}", f"queue-{k}", f"frontend-{k}"

    def unit(self, template, instance=None):
        return Unit(os.path.join(self.units, template), instance)

    def unit_of(self, name):
        """The Unit of a node of this machine by id ("etcd" for its member)."""
        if name == "etcd":
            return self.unit("mail-etcd.service")
        return self.unit(f"mail-{name.rsplit('-', 1)[0]}@.service", name)

    def start(self, name):
        u = self.unit_of(name)
        log = open(os.path.join(self.logs, f"m{self.k}-{name}.log"), "ab")
        p = subprocess.Popen(["ip", "netns", "exec", self.ns, *u.argv()], env=u.process_env(),
                             stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True)
        log.close()
        self.procs[name] = p
        return p

    def stop(self, name, timeout=30):
        """SIGTERM (the units' KillSignal), SIGKILL after TimeoutStopSec;
        (seconds, exit status, killed)."""
        p = self.procs.get(name)
        if p is None or p.poll() is not None:
            return 0.0, p.returncode if p else None, False
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout)
            killed = False
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            killed = True
        return time.monotonic() - t0, p.returncode, killed

    def alive(self, name):
        p = self.procs.get(name)
        return p is not None and p.poll() is None

    def log_tail(self, name, n=15):
        try:
            with open(os.path.join(self.logs, f"m{self.k}-{name}.log"), errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""


def port_open(host, port, timeout=1.0):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for(what, fn, timeout, interval=0.3):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            v = fn()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 (kept for the message)
            last = e
        time.sleep(interval)
    raise RuntimeError(f"{what}: not after {timeout}s" + (f" (last error: {last})" if last else ""))


class Deployment:
    """The guide's steps on three machines."""

    def __init__(self, root, net, build_dir):
        self.root = root
        self.net = net
        self.build = build_dir
        self.m = {k: Machine(k, root, net.machines[k]) for k in MACHINES}
        self.admin = os.path.join(root, "admin")      # the admin workstation
        self.ca = os.path.join(self.admin, "ca")
        os.makedirs(os.path.join(root, "logs"), exist_ok=True)

    # step 1
    def install(self):
        for m in self.m.values():
            sh("cmake", "--install", self.build, "--prefix", m.prefix, timeout=120)
        tools = os.path.join(self.m[1].prefix, "share", "mail")
        self.dev_ca = os.path.join(tools, "dev-ca")
        self.etcd_setup = os.path.join(tools, "mail-etcd-setup")

    def verify_units(self):
        """systemd-analyze verify of each installed unit, as an instance
        (None when systemd-analyze is missing)."""
        if not shutil.which("systemd-analyze"):
            return None
        m = self.m[1]
        d = tempfile.mkdtemp(dir=self.root)
        names = []
        for t, inst in (("mail-store@.service", "store-1"), ("mail-queue@.service", "queue-1"),
                        ("mail-frontend@.service", "frontend-1"), ("mail-etcd.service", None)):
            name = t.replace("@.", f"@{inst}.") if inst else t
            shutil.copy(os.path.join(m.units, t), os.path.join(d, name))
            names.append(os.path.join(d, name))
        r = sh("systemd-analyze", "verify", "--man=no", *names, check=False)
        return r.returncode, (r.stdout + r.stderr).strip()

    # step 2
    def certificates(self):
        ca, dev_ca = self.ca, self.dev_ca
        sh(dev_ca, ca)
        members = ",".join(f"IP:{m.ip}" for m in self.m.values())
        sh(dev_ca, ca, "server", "etcd-server", members)
        for user in ("root", "admin", "frontend"):
            sh(dev_ca, ca, "etcd-client", f"etcd-{user}")
        sh(dev_ca, ca, "node", "mailctl", "admin")
        for m in self.m.values():
            for node, role in ((m.store, "store"), (m.queue, "queue"),
                               (m.frontend, "frontend")):
                sh(dev_ca, ca, "node", node, role, f"IP:{m.ip}")
            for node in (m.store, m.queue):
                sh(dev_ca, ca, "etcd-client", f"etcd-{node}")
            # the certificate clients see (in production a public CA's)
            sh(dev_ca, ca, "server", f"mx{m.k}", f"DNS:mx{m.k}.example.net,IP:{m.public}")
        with open(os.path.join(ca, "frontend.secret"), "wb") as f:
            f.write(os.urandom(32))
        for m in self.m.values():
            files = ["ca.pem", "etcd-server.pem", "etcd-server.key", "frontend.secret",
                     "etcd-frontend.pem", "etcd-frontend.key"]
            for node in (m.store, m.queue, m.frontend):
                files += [f"{node}.pem", f"{node}.key"]
            for node in (m.store, m.queue):
                files += [f"etcd-{node}.pem", f"etcd-{node}.key"]
            files += [f"mx{m.k}.pem", f"mx{m.k}.key"]
            self.copy(ca, os.path.join(m.conf, "tls"), files)

    @staticmethod
    def copy(src, dst, files):
        os.makedirs(dst, mode=0o750, exist_ok=True)
        for f in files:
            shutil.copy(os.path.join(src, f), os.path.join(dst, f))
            secret = f.endswith((".key", ".secret", ".password"))
            os.chmod(os.path.join(dst, f), 0o600 if secret else 0o644)

    def etcd_urls(self, port="etcd"):
        return ",".join(f"https://{m.ip}:{PORTS[port]}" for m in self.m.values())

    # step 3
    def etcd(self):
        initial = ",".join(f"m{m.k}=https://{m.ip}:{PORTS['etcd_peer']}" for m in self.m.values())
        for m in self.m.values():
            env = os.path.join(m.conf, "etcd.env")
            shutil.copy(env + ".example", env)
            set_values(env, {
                "ETCD_NAME": f"m{m.k}",
                "ETCD_LISTEN_CLIENT_URLS": f"https://{m.ip}:{PORTS['etcd']}",
                "ETCD_ADVERTISE_CLIENT_URLS": f"https://{m.ip}:{PORTS['etcd']}",
                "ETCD_LISTEN_PEER_URLS": f"https://{m.ip}:{PORTS['etcd_peer']}",
                "ETCD_INITIAL_ADVERTISE_PEER_URLS": f"https://{m.ip}:{PORTS['etcd_peer']}",
                "ETCD_INITIAL_CLUSTER": initial,
                # the test's etcd is small and short-lived
                "ETCD_QUOTA_BACKEND_BYTES": str(256 * 1024 * 1024),
                "ETCD_LOG_LEVEL": "error"})
        for m in self.m.values():
            m.start("etcd")
        for m in self.m.values():
            self.wait_etcd(m)

    def etcd_health(self, m):
        ctx = ssl.create_default_context(cafile=os.path.join(self.ca, "ca.pem"))
        ctx.load_cert_chain(os.path.join(self.ca, "etcd-admin.pem"),
                            os.path.join(self.ca, "etcd-admin.key"))

        def probe():
            url = f"https://{m.ip}:{PORTS['etcd']}/health"
            with urllib.request.urlopen(url, timeout=2, context=ctx) as r:
                return json.load(r).get("health") == "true"
        return in_netns(m.ns, probe)

    def wait_etcd(self, m, timeout=40):
        def ok():
            if not m.alive("etcd"):
                raise RuntimeError(f"etcd on machine {m.k} exited:\n{m.log_tail('etcd')}")
            return self.etcd_health(m)
        wait_for(f"etcd member m{m.k} healthy", ok, timeout)

    def etcdctl_env(self):
        ca = self.ca
        return dict(os.environ, ETCDCTL_ENDPOINTS=self.etcd_urls(),
                    ETCDCTL_CACERT=os.path.join(ca, "ca.pem"),
                    ETCDCTL_CERT=os.path.join(ca, "etcd-root.pem"),
                    ETCDCTL_KEY=os.path.join(ca, "etcd-root.key"),
                    MAIL_ETCD_SECRETS=os.path.join(ca, "etcd"))

    # step 4
    def etcd_users(self):
        ns = self.m[1].ns   # the admin runs it from a machine that reaches etcd
        env = self.etcdctl_env()
        sh("ip", "netns", "exec", ns, self.etcd_setup, "init", env=env)
        for m in self.m.values():
            sh("ip", "netns", "exec", ns, self.etcd_setup, "node", m.store, "store", env=env)
            sh("ip", "netns", "exec", ns, self.etcd_setup, "node", m.queue, "queue", env=env)
        secrets = os.path.join(self.ca, "etcd")
        for m in self.m.values():
            self.copy(secrets, os.path.join(m.conf, "etcd"),
                      [f"{m.store}.password", f"{m.queue}.password", "frontend.password"])

    # step 5
    def configure(self):
        data = os.path.join(self.root, "data")
        for m in self.m.values():
            c = m.conf
            os.makedirs(os.path.join(data, f"m{m.k}"), mode=0o750)
            shutil.copy(os.path.join(c, "cluster.env.example"), os.path.join(c, "cluster.env"))
            set_values(os.path.join(c, "cluster.env"), {
                "MAIL_ETCD": self.etcd_urls(),
                "MAIL_DATA_DIR": os.path.join(data, f"m{m.k}"),
                "MAIL_PARTITIONS": str(PARTITIONS),
                "MAIL_ETCD_QUOTA_BYTES": str(256 * 1024 * 1024)})
            for kind in ("store", "queue"):
                path = os.path.join(c, f"{kind}-{m.k}.env")
                shutil.copy(os.path.join(c, f"{kind}.env.example"), path)
                values = {"MAIL_LISTEN": f"{m.ip}:{PORTS[kind]}",
                          "MAIL_METRICS": f"{m.ip}:{PORTS[kind + '_metrics']}"}
                if kind == "queue":
                    values["MAIL_HOSTNAME"] = f"mx{m.k}.example.net"
                set_values(path, values)
            path = os.path.join(c, f"frontend-{m.k}.env")
            shutil.copy(os.path.join(c, "frontend.env.example"), path)
            values = {f"MAIL_{p.upper()}": f"{m.public}:{PORTS[p]}"
                      for p in ("smtp", "submission", "submissions", "imap", "imaps",
                                "pop3", "pop3s")}
            values.update({"MAIL_METRICS": f"{m.ip}:{PORTS['frontend_metrics']}",
                           "MAIL_HOSTNAME": f"mx{m.k}.example.net",
                           "MAIL_TLS_CERT": os.path.join(c, "tls", f"mx{m.k}.pem"),
                           "MAIL_TLS_KEY": os.path.join(c, "tls", f"mx{m.k}.key")})
            set_values(path, values)

    def start_nodes(self):
        for kind in ("store", "queue", "frontend"):
            for m in self.m.values():
                m.start(f"{kind}-{m.k}")
            for m in self.m.values():
                self.wait_listening(m, f"{kind}-{m.k}")

    def wait_listening(self, m, name, timeout=40):
        kind = name.rsplit("-", 1)[0]
        host, port = (m.public, PORTS["smtp"]) if kind == "frontend" else (m.ip, PORTS[kind])

        def ok():
            if not m.alive(name):
                raise RuntimeError(f"{name} exited:\n{m.log_tail(name)}")
            return in_netns(m.ns, port_open, host, port)
        wait_for(f"{name} listening on {host}:{port}", ok, timeout)

    # step 6
    def mailctl_conf(self):
        """The admin workstation's mailctl.conf, from machine 1's example."""
        conf = os.path.join(self.admin, "mailctl.conf")
        shutil.copy(os.path.join(self.m[1].conf, "mailctl.conf.example"), conf)
        set_conf(conf, {"etcd": self.etcd_urls(), "etcd-ca": "ca/ca.pem",
                        "etcd-cert": "ca/etcd-admin.pem", "etcd-key": "ca/etcd-admin.key",
                        "etcd-password-file": "ca/etcd/admin.password",
                        "node-cert": "ca/mailctl.pem", "node-key": "ca/mailctl.key",
                        "cluster-ca": "ca/ca.pem"})
        return conf

    def mailctl(self, *args, stdin=None, check=True, timeout=60):
        env = dict(os.environ, MAIL_ETCD_CONF=os.path.join(self.admin, "mailctl.conf"))
        return sh("ip", "netns", "exec", self.m[1].ns,
                  os.path.join(self.m[1].prefix, "bin", "mailctl"), *args,
                  check=check, env=env, stdin=stdin, timeout=timeout)

    def status(self):
        r = self.mailctl("status", "--json", check=False)
        try:
            return json.loads(r.stdout)
        except ValueError:
            return {"health": f"no JSON (rc={r.returncode}): {r.stderr.strip()[:200]}"}

    def wait_ok(self, what, timeout=REJOIN_S, alive=None):
        """`mailctl status --json` says "ok" (every node alive, every
        partition healthy, every queue node answered); alive: a node id
        that must be among the alive ones."""
        last = {}

        def ok():
            s = self.status()
            last["s"] = s
            if s.get("health") != "ok":
                return False
            if alive:
                role = alive.rsplit("-", 1)[0]
                return any(n["id"] == alive and n["alive"]
                           for n in s["nodes"].get(role, []))
            return True
        try:
            wait_for(what, ok, timeout, interval=1.0)
        except RuntimeError:
            s = last.get("s", {})
            brief = {k: s.get(k) for k in ("health", "etcd", "queue")}
            for role in ("store", "queue"):
                p = (s.get("partitions") or {}).get(role) or {}
                brief[role] = {k: p.get(k) for k in ("healthy", "no_primary",
                                                     "under_replicated", "lagging")}
            raise RuntimeError(f"{what}: status not ok after {timeout}s: {brief}") from None


# ---- clients (in the internet namespace) --------------------------------

def client_ctx(d):
    return ssl.create_default_context(cafile=os.path.join(d.ca, "ca.pem"))


def message(user, token):
    return (f"From: s@remote.test\r\nTo: {user}\r\nSubject: {token}\r\n"
            f"Message-ID: <{token}@remote.test>\r\n\r\nbody {token}\r\n").encode()


def imap_tokens(d, host, user, tls="starttls"):
    """(UIDVALIDITY, [(uid, subject)]) of user's INBOX over IMAP on host."""
    ctx = client_ctx(d)
    if tls == "implicit":
        m = imaplib.IMAP4_SSL(host, PORTS["imaps"], ssl_context=ctx, timeout=30)
    else:
        m = imaplib.IMAP4(host, PORTS["imap"], timeout=30)
        m.starttls(ssl_context=ctx)
    try:
        m.login(user, PASSWORD)
        typ, data = m.select("INBOX", readonly=True)
        assert typ == "OK", (typ, data)
        uv = int(m.response("UIDVALIDITY")[1][0])
        return uv, e2e_harness.uid_subjects(m, int(data[0]))
    finally:
        try:
            m.logout()
        except (imaplib.IMAP4.error, OSError):
            pass


class Load:
    """SENDERS threads in the internet namespace, each message tried on
    the machines' MX ports in turn (equal-preference MX records) and
    retried on 4xx or a broken connection until a 250, as an MTA does. A
    5xx is a failure of the test."""

    def __init__(self, d):
        self.d = d
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked = {u: [] for u in USERS}
        self.unknown = {}        # token -> attempts lost after DATA was sent
        self.retries = 0
        self.sent = 0
        self.max_pause = 0.0
        self.errors = []
        self.threads = []

    def start(self):
        for i in range(SENDERS):
            t = threading.Thread(target=self.sender, args=(i,), daemon=True)
            t.start()
            self.threads.append(t)

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=150)

    def send_one(self, n, user, token):
        start = time.monotonic()
        attempt = 0
        while time.monotonic() - start < 120:
            host = f"{PUBLIC_NET}.{MACHINES[(n + attempt) % len(MACHINES)]}"
            attempt += 1
            in_data, t_attempt = False, time.time()
            try:
                with smtplib.SMTP(host, PORTS["smtp"], timeout=20) as s:
                    s.ehlo("sender.remote.test")
                    code, resp = s.mail("s@remote.test")
                    if code == 250:
                        code, resp = s.rcpt(user)
                    if code == 250:
                        in_data = True
                        code, resp = s.data(message(user, token))
                        in_data = False
                    if code >= 500:
                        with self.lock:
                            self.errors.append(f"{token} via {host}: {code} {resp!r}")
                        return False
                    if code != 250:
                        raise smtplib.SMTPResponseException(code, resp)
                with self.lock:
                    self.max_pause = max(self.max_pause, time.monotonic() - start)
                return True
            except (smtplib.SMTPException, OSError) as e:
                if in_data and not isinstance(e, smtplib.SMTPResponseException):
                    with self.lock:
                        self.unknown.setdefault(token, []).append(t_attempt)
                with self.lock:
                    self.retries += 1
                time.sleep(0.2)
        with self.lock:
            self.errors.append(f"{token}: no 250 within 120 s")
        return False

    def sender(self, i):
        enter_netns(self.d.net.internet)
        n = 0
        while not self.stop.is_set():
            user = USERS[(i + n) % len(USERS)]
            token = f"s{i}-{n:05d}"
            if self.send_one(i + n, user, token):
                with self.lock:
                    self.acked[user].append(token)
            n += 1
            with self.lock:
                self.sent += 1
            time.sleep(0.05)

    def allowed_copies(self, token):
        """1, plus one per attempt lost after DATA whose resend fell in
        another resend window of the queue (frontend/smtp: the queue id is
        derived from the content and a 10-minute window)."""
        now = time.time()
        return 1 + sum(1 for t in self.unknown.get(token, [])
                       if int(t // WINDOW_S) != int(now // WINDOW_S)
                       or abs(t - round(t / WINDOW_S) * WINDOW_S) < 2)


# ---- the test -----------------------------------------------------------

def compare_perm_tables(d):
    """mail-etcd-setup's table is local.py's (ETCD_ROLE_PERMS)."""
    out = sh(d.etcd_setup, "table").stdout.split("\n")
    theirs = set()
    for line in filter(None, out):
        role, perm, key, end = line.split()
        theirs.add((role, perm, key, None if end == "-" else end))
    ours = set(local.ETCD_ROLE_PERMS)
    assert theirs == ours, (f"only in mail-etcd-setup: {theirs - ours}; "
                            f"only in local.py: {ours - theirs}")


def first_mail(d, check):
    """Submission on machine 1 (587, STARTTLS, AUTH) and MX on machine 1
    (25); both read on machine 3, over IMAP STARTTLS and IMAPS."""
    a, b = USERS[0], USERS[1]

    def send():
        ctx = client_ctx(d)
        with smtplib.SMTP(d.m[1].public, PORTS["submission"], timeout=30) as s:
            s.starttls(context=ctx)
            s.login(a, PASSWORD)
            s.sendmail(a, [b], message(b, "first-submission"))
        with smtplib.SMTP(d.m[1].public, PORTS["smtp"], timeout=30) as s:
            s.sendmail("s@remote.test", [b], message(b, "first-mx"))
    in_netns(d.net.internet, send)

    def read(tls):
        def got():
            _, pairs = in_netns(d.net.internet, imap_tokens, d, d.m[3].public, b, tls)
            subjects = [s for _, s in pairs]
            return sorted(subjects) == ["first-mx", "first-submission"]
        wait_for(f"both messages in {b} over IMAP ({tls}) on machine 3", got, 30, 0.5)
    check("mail in on machine 1 (587 AUTH, 25), read on machine 3 (IMAP STARTTLS)",
          lambda: read("starttls"))
    check("... and over IMAPS on machine 3", lambda: read("implicit"))


def exposure(d):
    """From the internet: the mail ports answer on each machine's public
    address, the cluster's ports do not (nothing listens there), and the
    cluster network is not reachable at all."""
    def probe():
        bad = []
        for m in d.m.values():
            for p in ("smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s"):
                if not port_open(m.public, PORTS[p]):
                    bad.append(f"{m.public}:{PORTS[p]} ({p}) closed")
            for p in CLUSTER_ONLY:
                if port_open(m.public, PORTS[p], 0.5):
                    bad.append(f"{m.public}:{PORTS[p]} ({p}) open to the internet")
                if port_open(m.ip, PORTS[p], 0.5):
                    bad.append(f"{m.ip}:{PORTS[p]} ({p}) reachable from the internet")
        return bad
    bad = in_netns(d.net.internet, probe)
    assert not bad, bad


def rolling_restart(d, load, problems):
    """Machine by machine: frontend, queue node, store node, etcd member."""
    for m in d.m.values():
        for name in (m.frontend, m.queue, m.store, "etcd"):
            sent = load.sent
            secs, status, killed = m.stop(name)
            label = f"m{m.k} {name}"
            print(f"  SIGTERM {label} (sent so far {sent}): exit {status} in {secs:.1f}s"
                  + (" (SIGKILL)" if killed else ""), flush=True)
            # etcd ends a clean stop by raising SIGTERM again (systemd counts
            # that exit as a success); our daemons exit 0
            if killed or status not in ((0, -signal.SIGTERM) if name == "etcd" else (0,)):
                problems.append(f"{label}: did not stop cleanly (status {status}, "
                                f"killed {killed}); its last lines:\n{m.log_tail(name, 40)}")
            t0 = time.monotonic()
            m.start(name)
            if name == "etcd":
                d.wait_etcd(m)
                d.wait_ok(f"cluster after {label}")
            else:
                if name == m.frontend:
                    d.wait_listening(m, name)
                d.wait_ok(f"cluster after {label}",
                          alive=None if name == m.frontend else name)
            print(f"  {label} back in {time.monotonic() - t0:.1f}s "
                  f"(retries so far {load.retries})", flush=True)


def audit(d, load):
    problems = list(load.errors)
    for i, user in enumerate(USERS):
        host = d.m[MACHINES[i % len(MACHINES)]].public
        _, pairs = in_netns(d.net.internet, imap_tokens, d, host, user)
        uids = [u for u, _ in pairs]
        tokens = [t for _, t in pairs]
        if uids != sorted(set(uids)):
            problems.append(f"{user}: UIDs not strictly increasing")
        for t in load.acked[user]:
            k = tokens.count(t)
            if not 1 <= k <= load.allowed_copies(t):
                problems.append(f"{user}: {t} present {k} times "
                                f"({len(load.unknown.get(t, []))} attempts lost in DATA)")
    return problems


def main():
    net = Net()
    root = tempfile.mkdtemp(prefix="mail-machines-")
    build = os.path.dirname(os.path.abspath(e2e_harness.bin_dir()))
    passed, failed = [], []
    check = e2e_harness.checker(passed, failed)
    d = None
    load = None
    t_start = time.monotonic()
    try:
        why = net.create()
        if why:
            print(f"SKIP: {why}")
            return SKIP
        d = Deployment(root, net, build)
        d.install()
        r = d.verify_units()
        if r is not None:
            def verified():
                assert r[0] == 0, r[1]
            check("systemd-analyze verify: the installed units", verified)
        check("mail-etcd-setup's permissions are cluster/local.py's",
              lambda: compare_perm_tables(d))
        d.certificates()
        d.etcd()
        d.etcd_users()
        def setup_again():   # the guide: run it again at will
            d.etcd_users()
        check("mail-etcd-setup a second time (auth on): nothing to do, no error",
              setup_again)
        d.configure()
        d.start_nodes()
        d.mailctl_conf()
        d.mailctl("tenant", "add", TENANT)
        for u in USERS:
            d.mailctl("user", "add", u, stdin=PASSWORD + "\n")
        d.wait_ok("the new cluster", timeout=120)
        print(f"deployed in {time.monotonic() - t_start:.0f}s", flush=True)
        first_mail(d, check)
        check("cluster ports closed to the internet, mail ports open", lambda: exposure(d))

        load = Load(d)
        load.start()
        time.sleep(3)
        problems = []
        t_roll = time.monotonic()
        try:
            rolling_restart(d, load, problems)
        except Exception:
            problems.append(traceback.format_exc())
        print(f"rolling restart took {time.monotonic() - t_roll:.0f}s", flush=True)
        time.sleep(3)
        load.finish()
        try:
            wait_for("the queues drained",
                     lambda: (d.status().get("queue") or {}).get("messages") == 0, 60, 1.0)
        except RuntimeError as e:
            problems.append(str(e))
        problems += audit(d, load)
        acked = sum(len(v) for v in load.acked.values())
        print(f"load: acked={acked} retries={load.retries} "
              f"lost_in_data={sum(len(v) for v in load.unknown.values())} "
              f"longest_pause={load.max_pause:.1f}s problems={len(problems)}", flush=True)

        def verdict():
            assert acked > 0, "no message acknowledged"
            assert not problems, "\n".join(problems[:20])
        check("rolling restart under load: every 250 in its mailbox once, no 5xx, "
              "queues drained", verdict)
    except Exception:
        failed.append("setup")
        traceback.print_exc()
    finally:
        if load is not None:
            load.stop.set()
        left = []
        if d is not None:
            if failed:
                for m in d.m.values():
                    for name in list(m.procs):
                        print(f"--- m{m.k} {name} (last lines) ---\n{m.log_tail(name)}")
            # the guide's order for stopping everything: etcd last, so the
            # nodes can still give up their leases
            for kind in ("frontend", "queue", "store", "etcd"):
                for m in d.m.values():
                    name = "etcd" if kind == "etcd" else f"{kind}-{m.k}"
                    secs, status, killed = m.stop(name, timeout=15)
                    if killed:
                        left.append(f"m{m.k} {name}")
        net.destroy()
        if left:
            print("needed SIGKILL at the end: " + ", ".join(left))
        e2e_harness.remove_state(root, not failed)
    print(f"{len(passed)} passed, {len(failed)} failed "
          f"({time.monotonic() - t_start:.0f}s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
