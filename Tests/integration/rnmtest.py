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
RNMCTL = os.environ.get("RNMCTL", os.path.join(os.path.dirname(RNMD), "rnmctl"))


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
        """Our table's sets as {name: set(elements)}, or None if the table does not exist. Interval sets are
        given as their merged coverage ("lo-hi" strings), whatever ranges the kernel holds them in."""
        p = subprocess.run(self.exec_args("nft", "-j", "list", "table", "inet", table), capture_output=True, text=True)
        if p.returncode != 0:
            return None
        sets = {}
        for obj in json.loads(p.stdout)["nftables"]:
            s = obj.get("set")
            if not s:
                continue
            interval = "interval" in s.get("flags", [])
            elems, ranges = set(), []
            for e in s.get("elem", []):
                if isinstance(e, dict) and "elem" in e:
                    e = e["elem"]["val"]
                if interval:
                    if isinstance(e, dict) and "prefix" in e:
                        net = ipaddress.ip_network(f"{e['prefix']['addr']}/{e['prefix']['len']}")
                        ranges.append((int(net[0]), int(net[-1]), net.version))
                    elif isinstance(e, dict) and "range" in e:
                        lo, hi = map(ipaddress.ip_address, e["range"])
                        ranges.append((int(lo), int(hi), lo.version))
                    else:
                        a = ipaddress.ip_address(e)
                        ranges.append((int(a), int(a), a.version))
                else:
                    elems.add(normalise(e))
            sets[s["name"]] = merged(ranges) if interval else elems
        return sets


def normalise(value):
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return value


def merged(ranges):
    """Disjoint coverage of (lo, hi, version) ranges as {"lo-hi"} strings (touching ranges joined)."""
    out = []
    for lo, hi, v in sorted(ranges):
        if out and out[-1][2] == v and lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi, v])
    fmt = lambda n, v: str(ipaddress.IPv4Address(n) if v == 4 else ipaddress.IPv6Address(n))
    return {f"{fmt(lo, v)}-{fmt(hi, v)}" for lo, hi, v in out}


def manual_entries(config):
    """What the daemon has promised to keep (its state file), without what has expired."""
    path = os.path.join(config.get("state_dir", "/var/lib/rnm"), "manual.json")
    try:
        entries = json.load(open(path))["entries"]
    except FileNotFoundError:
        return []
    now_ms = time.time() * 1000
    return [e for e in entries if "expires_ms" not in e or e["expires_ms"] > now_ms + 500]


def expected_sets(ns, config, extra=None):
    """What the sets must hold given the kernel's addresses and the config: the convergence oracle's truth.
    `extra`: {set: elements} contributed by other owners (plugins), added to what the config says."""
    extra = extra or {}
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
    for decl in config.get("sets", []):
        interval = "interval" in decl.get("flags", [])
        items = list(decl.get("elements", [])) + [e["element"] for e in manual_entries(config) if e["set"] == decl["name"]]
        items += list(extra.get(decl["name"], ()))
        if interval:
            nets = [ipaddress.ip_network(x, strict=False) for x in items]
            want[decl["name"]] = merged([(int(n[0]), int(n[-1]), n.version) for n in nets])
        else:
            want[decl["name"]] = {normalise(x) for x in items}
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
    declared = {decl["name"] for decl in config.get("sets", [])}
    for name, items in extra.items():
        if name not in declared:
            want.setdefault(name, set()).update(normalise(x) for x in items)
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


def assert_converged(ns, daemon, timeout=10.0, template_sets=(), extra=None):
    """The oracle: after the events stop, sets == f(kernel addresses, config). 0 stale, 0 missing.
    `template_sets`: sets a rule template declares (not rnm's to fill). `extra`: {set: elements} that other
    owners (plugins) contribute, or a function returning it (called anew on every round, for owners whose truth
    is read from elsewhere, e.g. Docker)."""
    deadline = time.monotonic() + timeout
    while True:
        want = expected_sets(ns, daemon.config, extra() if callable(extra) else extra)
        have = ns.table_sets(daemon.table)
        if have is not None:
            have = {k: v for k, v in have.items() if k not in template_sets}
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
    """Test configs as YAML: one top-level key per line, values in flow style (JSON is valid YAML)."""
    return "".join(f"{k}: {json.dumps(v)}\n" for k, v in config.items())


class Daemon:
    """rnmd running in a namespace, its stderr captured to a file."""

    def __init__(self, ns, config, extra_args=(), wait=True, workdir=None, env=None):
        self.ns = ns
        self.config = config
        self.table = config.get("table", "rnm")
        self.dir = tempfile.mkdtemp(prefix="rnmd-", dir=workdir)
        os.chmod(self.dir, 0o755)
        # Every daemon gets its own control socket and state directory, never the host's /run/rnm.
        config = dict(config)
        config.setdefault("control", {"socket": os.path.join(self.dir, "run", "rnmd.sock"), "group": "4300"})
        config.setdefault("state_dir", os.path.join(self.dir, "state"))
        self.socket = config["control"]["socket"]
        self.config_path = os.path.join(self.dir, "config.yaml")
        self.config = config
        self.write_config()
        self.log_path = os.path.join(self.dir, "rnmd.log")
        self.extra_args = list(extra_args)
        self.env = env  # extra environment variables for rnmd
        self.proc = None
        self.start(wait=wait)

    def write_config(self, config=None, text=None):
        if config is not None:
            config = dict(config)
            config.setdefault("control", self.config["control"])
            config.setdefault("state_dir", self.config["state_dir"])
            self.config = config
        with open(self.config_path, "w") as f:
            f.write(text if text is not None else yaml_dump(self.config))

    def start(self, wait=True):
        seen = self.count_log("converged") if os.path.exists(self.log_path) else 0
        self.log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            self.ns.exec_args(RNMD, "--config", self.config_path, "--log-level", "debug", *self.extra_args),
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=dict(os.environ, **self.env) if self.env else None)
        if wait:
            self.wait_for_log("converged", timeout=15, count=seen + 1)

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


    def ctl(self, *args, check=False, timeout=10, as_user=None):
        """Runs rnmctl against this daemon; returns the CompletedProcess."""
        cmd = [RNMCTL, "--socket", self.socket, *args]
        if as_user is not None:
            uid, groups = as_user
            cmd = ["setpriv", "--reuid", str(uid), "--regid", str(uid),
                   *(["--groups", ",".join(map(str, groups))] if groups else ["--clear-groups"]), *cmd]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"rnmctl {' '.join(args)} failed ({p.returncode}): {p.stderr}")
        return p

    def request(self, line, timeout=5):
        """Sends one raw line on a fresh connection; returns what came back until the daemon closed it."""
        import socket as _s
        s = _s.socket(_s.AF_UNIX, _s.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(self.socket)
        s.sendall(line if isinstance(line, bytes) else line.encode())
        s.shutdown(_s.SHUT_WR)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
        s.close()
        return out.decode(errors="replace")

    def rss_kib(self):
        return int(open(f"/proc/{self.pid}/status").read().split("VmRSS:")[1].split()[0])


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
