"""Helpers for rnm's integration tests: throwaway network namespaces, a daemon running inside one, an
nft monitor counting transactions, and the convergence oracle.

Every namespace is created with a unique name and deleted on teardown, even when the test fails; the host's
own network configuration is never touched.
"""
import ipaddress
import json
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RNMD = os.environ.get("RNMD", os.path.join(ROOT, ".build", "debug", "rnmd"))


def run(cmd, check=True, input=None, timeout=120):
    """Runs a command (a list), returns stdout as text; raises with stderr on failure."""
    p = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip()}")
    return p.stdout


class NetNS:
    """A network namespace that exists for one test."""

    def __init__(self, prefix="rnmt"):
        self.name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        run(["ip", "netns", "add", self.name])
        self.ip("link", "set", "lo", "up")

    def close(self):
        # Deleting the namespace also deletes every interface and nft table in it.
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)

    def exec_args(self, *cmd):
        return ["ip", "netns", "exec", self.name, *cmd]

    def sh(self, *cmd, check=True, input=None, timeout=120):
        return run(self.exec_args(*cmd), check=check, input=input, timeout=timeout)

    def ip(self, *args, check=True):
        return self.sh("ip", *args, check=check)

    def ip_batch(self, lines, check=True):
        """Many ip commands in one process (fast): `ip -force -batch -`."""
        return self.sh("ip", "-force", "-batch", "-", input="\n".join(lines) + "\n", check=check, timeout=600)

    def nft(self, *args, check=True, input=None):
        return self.sh("nft", *args, check=check, input=input)

    def veth(self, a, b, up=True):
        self.ip("link", "add", a, "type", "veth", "peer", "name", b)
        if up:
            self.ip("link", "set", a, "up")
            self.ip("link", "set", b, "up")

    def addresses(self):
        """`ip -j addr` as {ifname: [addr_info, ...]}."""
        out = {}
        for link in json.loads(self.ip("-j", "addr") or "[]"):
            out[link["ifname"]] = link.get("addr_info", [])
        return out

    def table_sets(self, table):
        """Our table's sets as {name: set(elements)}, or None if the table does not exist."""
        p = subprocess.run(self.exec_args("nft", "-j", "list", "table", "inet", table), capture_output=True, text=True)
        if p.returncode != 0:
            return None
        sets = {}
        for obj in json.loads(p.stdout)["nftables"]:
            s = obj.get("set")
            if not s:
                continue
            elems = set()
            for e in s.get("elem", []):
                if isinstance(e, dict) and "elem" in e:
                    e = e["elem"]["val"]
                elems.add(normalise(e))
            sets[s["name"]] = elems
        return sets


def normalise(value):
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return value


def expected_sets(ns, config):
    """What the sets must hold given the kernel's addresses and the config: the convergence oracle's truth."""
    policy = {"link_local": False, "deprecated": True, "temporary": True}
    policy.update(config.get("address_policy", {}))
    want = {}
    zone_of = {}
    for iface in config["interfaces"]:
        z = iface.get("zone") or iface.get("nftables_zone")
        zone_of[iface["name"]] = z
        for suffix in ("_v4", "_v6", "_ifaces"):
            want.setdefault(z + suffix, set())
        want[z + "_ifaces"].add(iface["name"])
    for ifname, infos in ns.addresses().items():
        z = zone_of.get(ifname)
        if z is None:
            continue
        for a in infos:
            if a.get("tentative") or a.get("dadfailed"):
                continue
            addr = ipaddress.ip_address(a["local"])
            if addr.is_link_local and not policy["link_local"]:
                continue
            if a.get("deprecated") and not policy["deprecated"]:
                continue
            if a.get("temporary") and not policy["temporary"]:
                continue
            want[z + ("_v4" if addr.version == 4 else "_v6")].add(str(addr))
    return want


def diff_sets(want, have):
    """(stale, missing) element counts and details."""
    stale, missing = {}, {}
    for name in set(want) | set(have or {}):
        w, h = want.get(name, set()), (have or {}).get(name, set())
        if h - w:
            stale[name] = sorted(h - w)
        if w - h:
            missing[name] = sorted(w - h)
    return stale, missing


def assert_converged(ns, daemon, timeout=10.0):
    """The oracle: after the events stop, sets == f(kernel addresses, config). 0 stale, 0 missing."""
    deadline = time.monotonic() + timeout
    while True:
        want = expected_sets(ns, daemon.config)
        have = ns.table_sets(daemon.table)
        stale, missing = diff_sets(want, have)
        if have is not None and not stale and not missing and set(have) == set(want):
            return want
        if time.monotonic() > deadline:
            raise AssertionError(
                f"not converged after {timeout}s: stale={stale} missing={missing} "
                f"sets={sorted(have or [])} want={sorted(want)}\n--- daemon log tail ---\n{daemon.log_tail()}")
        daemon.assert_alive()
        time.sleep(0.05)


def yaml_dump(config):
    """A tiny YAML writer for test configs (flow style for scalars and lists)."""
    def scalar(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return str(v)
        return json.dumps(v)

    lines = []
    for k, v in config.items():
        if k == "interfaces":
            lines.append("interfaces:")
            for iface in v:
                first = True
                for ik, iv in iface.items():
                    prefix = "  - " if first else "    "
                    first = False
                    if isinstance(iv, list):
                        lines.append(f"{prefix}{ik}: [{', '.join(scalar(x) for x in iv)}]")
                    else:
                        lines.append(f"{prefix}{ik}: {scalar(iv)}")
        elif isinstance(v, dict):
            lines.append(f"{k}:")
            for dk, dv in v.items():
                lines.append(f"  {dk}: {scalar(dv)}")
        else:
            lines.append(f"{k}: {scalar(v)}")
    return "\n".join(lines) + "\n"


class Daemon:
    """rnmd running in a namespace, its stderr captured to a file."""

    def __init__(self, ns, config, extra_args=(), wait=True, workdir=None):
        self.ns = ns
        self.config = config
        self.table = config.get("table", "rnm")
        self.dir = tempfile.mkdtemp(prefix="rnmd-", dir=workdir)
        self.config_path = os.path.join(self.dir, "config.yaml")
        self.write_config(config)
        self.log_path = os.path.join(self.dir, "rnmd.log")
        self.extra_args = list(extra_args)
        self.proc = None
        self.start(wait=wait)

    def write_config(self, config=None, text=None):
        if config is not None:
            self.config = config
        with open(self.config_path, "w") as f:
            f.write(text if text is not None else yaml_dump(self.config))

    def start(self, wait=True):
        self.log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            self.ns.exec_args(RNMD, "--config", self.config_path, "--log-level", "debug", *self.extra_args),
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if wait:
            self.wait_for_log("converged", timeout=15)

    @property
    def pid(self):
        return self.proc.pid

    def log_text(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def log_tail(self, n=40):
        return "\n".join(self.log_text().splitlines()[-n:])

    def count_log(self, pattern):
        return len(re.findall(pattern, self.log_text()))

    def wait_for_log(self, pattern, timeout=10.0, count=1):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count_log(pattern) >= count:
                return
            self.assert_alive()
            time.sleep(0.02)
        raise AssertionError(f"log never showed {pattern!r} x{count}\n{self.log_tail()}")

    def assert_alive(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"rnmd exited with {self.proc.returncode}\n{self.log_tail()}")

    def signal(self, sig):
        os.kill(self.proc.pid, sig)

    def stop(self, timeout=2.0):
        """SIGTERM; returns (exit code, seconds taken)."""
        if self.proc.poll() is not None:
            return self.proc.returncode, 0.0
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout + 3)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"rnmd did not exit within {timeout + 3}s of SIGTERM\n{self.log_tail()}")
        self.log.close()
        return code, time.monotonic() - t0

    def kill9(self):
        self.proc.kill()
        self.proc.wait()
        self.log.close()


class NftMonitor:
    """`nft monitor` in the namespace, counting transactions (new generations) by process id."""

    GEN = re.compile(r"# new generation (\d+) by process (\d+)")

    def __init__(self, ns):
        self.ns = ns
        self.proc = subprocess.Popen(ns.exec_args("nft", "monitor"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, bufsize=1)
        self.lines = []
        self.lock = threading.RLock()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        # Make sure it listens before the test starts counting: wait for a marker transaction of our own.
        marker = f"mon_{uuid.uuid4().hex[:8]}"
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            ns.nft("add", "table", "inet", marker)
            ns.nft("delete", "table", "inet", marker)
            if self.wait_for(lambda ls: any(marker in l for l in ls), 0.5):
                return
        raise AssertionError("nft monitor did not start")

    def _read(self):
        for line in self.proc.stdout:
            with self.lock:
                self.lines.append(line.rstrip("\n"))

    def wait_for(self, predicate, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if predicate(list(self.lines)):
                    return True
            time.sleep(0.02)
        return False

    def transactions(self, pid):
        """Transactions committed by process `pid`. nftables names the sending *thread*, so every thread id
        of the process counts (rnmd commits from its dedicated `rnmd-reconcile` thread)."""
        try:
            tids = {int(t) for t in os.listdir(f"/proc/{pid}/task")}
        except FileNotFoundError:
            tids = set()
        tids.add(pid)
        with self.lock:
            return sum(1 for l in self.lines if (m := self.GEN.search(l)) and int(m.group(2)) in tids)

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
