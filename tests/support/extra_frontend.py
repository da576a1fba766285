"""A second frontend for a cluster of cluster/local.py (which starts one):
what the cross-frontend IDLE test and the push-latency benchmark need.
Standard library only."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "cluster"))
import local  # noqa: E402


class ExtraFrontend:
    """A second frontend process for a cluster of cluster/local.py (which
    starts one): frontend-1's command line with another --id, ports of its
    own and its own node certificate; stopped by PID with stop()."""

    LISTENERS = ("smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s")

    def __init__(self, c, name):
        self.c, self.name = c, name
        argv = list(c.spec("frontend-1")[3])
        self.ports = {k: local.free_port() for k in self.LISTENERS + ("metrics",)}
        values = {f"--{k}": f"127.0.0.1:{p}" for k, p in self.ports.items()}
        values["--id"] = name
        if c.node_tls:
            c.ensure_node_cert(name, "frontend")
            values["--node-cert"] = os.path.join(c.tls_dir(), f"{name}.pem")
            values["--node-key"] = os.path.join(c.tls_dir(), f"{name}.key")
        for i in range(1, len(argv) - 1):
            if argv[i] in values:
                argv[i + 1] = values[argv[i]]
        self.log = os.path.join(c.state, "log", f"{name}.log")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 20
        while not local.port_open(self.ports["imap"]):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{name} did not start; see {self.log}")
            time.sleep(0.05)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except Exception:
                self.proc.kill()
                self.proc.wait()
