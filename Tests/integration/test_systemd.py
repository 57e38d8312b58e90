"""rnmd under a service manager: the sd_notify protocol spoken to a real AF_UNIX datagram listener standing in
for systemd (path and abstract addresses): READY only once converged, RELOADING/READY around a reload,
STOPPING on SIGTERM, and WATCHDOG pings that come from the reconciler's loop (they stop while it is stalled
through the test hook)."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest
from rnmtest import assert_converged

CONFIG = {"table": "rnms", "interfaces": [{"name": "wan0", "zone": "wan"}]}


# The listener for an abstract address runs inside the daemon's network namespace (abstract Unix sockets
# belong to a namespace, as they do for systemd and the services it starts): a child process that prints
# each datagram with its CLOCK_MONOTONIC arrival time.
ABSTRACT_LISTENER = r"""
import json, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\0" + sys.argv[1])
print("bound", flush=True)
while True:
    data = s.recv(4096)
    print(json.dumps([time.monotonic(), data.decode()]), flush=True)
"""


class Listener:
    """A NOTIFY_SOCKET: records every datagram with its arrival time (monotonic)."""

    def __init__(self, abstract=False, ns=None):
        self.messages = []
        self.lock = threading.Lock()
        self.running = True
        self.proc = None
        if abstract:
            name = f"rnm-notify-{os.getpid()}-{time.monotonic_ns()}"
            self.address = "@" + name
            self.proc = subprocess.Popen(ns.exec_args(sys.executable, "-c", ABSTRACT_LISTENER, name),
                                         stdout=subprocess.PIPE, text=True)
            assert self.proc.stdout.readline().strip() == "bound"
            self.thread = threading.Thread(target=self._read_child, daemon=True)
        else:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.dir = tempfile.mkdtemp(prefix="rnm-notify-")
            self.address = os.path.join(self.dir, "notify")
            self.sock.bind(self.address)
            self.sock.settimeout(0.2)
            self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read_child(self):
        for line in self.proc.stdout:
            t, m = json.loads(line)
            with self.lock:
                self.messages.append((t, m))

    def _read(self):
        while self.running:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.messages.append((time.monotonic(), data.decode()))

    def lines(self):
        """Every KEY=VALUE line received, in order, with its arrival time."""
        with self.lock:
            return [(t, line) for t, m in self.messages for line in m.split("\n") if line]

    def wait_for(self, key, after=0.0, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, line in self.lines():
                if t >= after and line.startswith(key):
                    return t, line
            time.sleep(0.01)
        raise AssertionError(f"never got {key!r} after {after}: {self.lines()}")

    def close(self):
        self.running = False
        if self.proc:
            self.proc.kill()
            self.proc.wait()
        else:
            self.sock.close()
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(params=["path", "abstract"])
def listener(request, ns):
    l = Listener(abstract=request.param == "abstract", ns=ns)
    yield l
    l.close()


def test_ready_only_after_convergence_then_reload_and_stop(ns, daemons, listener):
    ns.veth("wan0", "p0")
    ns.ip("addr", "add", "198.51.100.7/24", "dev", "wan0")
    d = daemons(ns, CONFIG, wait=False, env={"NOTIFY_SOCKET": listener.address})
    t_ready, _ = listener.wait_for("READY=1")
    # READY came with the table in place and equal to the live addresses (and the log had said so).
    assert d.count_log("converged") == 1
    assert_converged(ns, d)
    status = [l for _, l in listener.lines() if l.startswith("STATUS=")]
    assert status and "table inet rnms" in status[0] and "1 zones" in status[0], status
    # SIGHUP: RELOADING=1 with the monotonic time, then READY=1 once the reload is done.
    before = time.monotonic()
    d.signal(signal.SIGHUP)
    t_reloading, _ = listener.wait_for("RELOADING=1", after=before)
    _, usec = listener.wait_for("MONOTONIC_USEC=", after=before)
    assert abs(int(usec.split("=")[1]) / 1e6 - time.monotonic()) < 10
    t_ready2, _ = listener.wait_for("READY=1", after=t_reloading)
    assert t_ready2 >= t_reloading
    # A reload over the control socket is announced the same way.
    before = time.monotonic()
    assert d.ctl("reload").returncode == 0
    t_reloading, _ = listener.wait_for("RELOADING=1", after=before)
    listener.wait_for("READY=1", after=t_reloading)
    before = time.monotonic()
    code, _ = d.stop()
    assert code == 0
    listener.wait_for("STOPPING=1", after=before, timeout=2)
    assert not any(l.startswith("WATCHDOG") for _, l in listener.lines())  # no watchdog asked for


def test_watchdog_pings_come_from_the_reconciler_and_stop_while_it_is_stuck(ns, daemons):
    l = Listener()
    try:
        ns.veth("wan0", "p0")
        # WATCHDOG_USEC 400 ms: a ping every 200 ms. WATCHDOG_PID names another process: no pings at all.
        other = daemons(ns, dict(CONFIG, table="rnmo"), env={"NOTIFY_SOCKET": l.address, "WATCHDOG_USEC": "400000",
                                                           "WATCHDOG_PID": "1"})
        l.wait_for("READY=1")
        time.sleep(0.6)
        assert not any(line.startswith("WATCHDOG") for _, line in l.lines())
        other.stop()
        d = daemons(ns, CONFIG, env={"NOTIFY_SOCKET": l.address, "WATCHDOG_USEC": "400000", "RNMD_TEST_HOOKS": "1"})
        start = time.monotonic()
        time.sleep(1.5)
        pings = [t for t, line in l.lines() if line == "WATCHDOG=1" and t >= start]
        assert len(pings) >= 5, pings  # ~7 in 1.5 s
        gaps = [b - a for a, b in zip(pings, pings[1:])]
        assert max(gaps) < 0.35, gaps
        # Stall the reconciler for 2 s: the pings stop for as long, then resume.
        stall = threading.Thread(target=lambda: d.request('{"id":1,"cmd":"debug stall","ms":2000}\n', timeout=10))
        t0 = time.monotonic()
        stall.start()
        stall.join()
        time.sleep(0.6)
        pings = [t for t, line in l.lines() if line == "WATCHDOG=1"]
        during = [t for t in pings if t0 + 0.3 < t < t0 + 1.8]
        assert not during, (during, t0, d.log_tail())
        assert any(t0 - 0.3 < t <= t0 + 0.3 for t in pings)  # it was pinging up to the stall
        assert pings[-1] > t0 + 2.0  # and resumed
        assert "test hook: the reconciler stalls for 2000 ms" in d.log_text()
    finally:
        l.close()


def test_the_stall_hook_is_refused_without_the_test_environment(ns, daemons):
    d = daemons(ns, CONFIG)
    reply = json.loads(d.request('{"id":1,"cmd":"debug stall","ms":10}\n'))
    assert reply["ok"] is False and reply["error"]["code"] == "unknown_command"
