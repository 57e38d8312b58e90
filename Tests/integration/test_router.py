"""Router features against the real kernel: static addresses, link state, routes and forwarding sysctls applied
with netlink; masquerade, port forwards and hairpin NAT checked on real packets; bad router config refused.

The topology, built afresh for every test by the `topo` fixture (four namespaces, deleted even on failure):

    client            router                          server (also the LAN segment)     lanclient
    eth0 ──────────── wan0  zone wan, dhcp: true
    203.0.113.2/24          203.0.113.1/24, 2001:db8:1::1/64 and a default route: the test's, as a DHCP
    2001:db8:1::2/64        client's (lease lifetimes)
                      lan0  zone lan, static ─────── up0 ┐
                            (rnm: up, mtu 1400,          br0 192.168.1.10/24 ─┐
                            192.168.1.1/24, fd00:1::1/64, sw1 ┘ fd00:1::10/64  └──────── eth0 192.168.1.20/24
                            10.55.0.1/24)                 lo: 10.20/30/40/80.0.1, fd00:20::1 (behind rnm's routes)

The server and the LAN client share one segment (a bridge in the server's namespace), the classic hairpin case:
without the masquerade of the reflected connection the server would answer the LAN client directly and the client
would drop the answer. Echo servers answer with the peer address they saw and the port they listen on, so NAT is
asserted on real packets.
"""
import json
import os
import re
import signal
import subprocess
import time

import pytest
from rnmtest import RNMD, NetNS, NftMonitor, assert_converged

TABLE = "rnmt"
CLIENT = "203.0.113.2"
CLIENT6 = "2001:db8:1::2"
WAN_ADDR6 = "2001:db8:1::1"
WAN_ADDR = "203.0.113.1"
WAN_ADDR2 = "203.0.113.7"
ROUTER_LAN = "192.168.1.1"
SERVER = "192.168.1.10"
LANCLIENT = "192.168.1.20"

# The forward policy the forwards must get through: nothing crosses unless lan → wan, an answer, or what
# rnm_forward (generated from `forwards:`) accepts.
FORWARD_TEMPLATE = """chain forward {
	type filter hook forward priority filter; policy drop;
	ct state established,related accept
	iifname $lan_ifaces oifname $wan_ifaces accept
	jump rnm_forward
}
"""


def router_config(tmp_path, **changes):
    tpl = tmp_path / "forward.nft"
    tpl.write_text(FORWARD_TEMPLATE)
    config = {
        "table": TABLE,
        "interfaces": [
            {"name": "wan0", "zone": "wan", "dhcp": True},
            {"name": "lan0", "zone": "lan", "addresses": ["192.168.1.1/24", "fd00:1::1/64", "10.55.0.1/24"], "mtu": 1400},
        ],
        "routes": [
            {"to": "10.20.0.0/16", "via": SERVER},
            {"to": "fd00:20::/48", "via": "fd00:1::10"},
            {"to": "10.30.0.0/16", "dev": "lan0", "metric": 100},
            {"to": "10.40.0.0/16", "via": SERVER, "table": 100},
            {"to": "default", "via": SERVER, "table": 100},
        ],
        "forwarding": True,
        "masquerade": [{"from": "lan", "to": "wan"}],
        "forwards": [
            {"zone": "wan", "proto": "tcp", "port": 8080, "to": SERVER, "to_port": 80, "hairpin": True},
            {"zone": "wan", "proto": "udp", "port": "6000-6001", "to": SERVER, "to_port": "7000-7001"},
            {"zone": "wan", "proto": "tcp", "port": 8443, "to": "fd00:1::10", "to_port": 80},
        ],
        "rules": [str(tpl)],
    }
    config.update(changes)
    return config


def lan0(addresses=("192.168.1.1/24", "fd00:1::1/64", "10.55.0.1/24"), **extra):
    return {"name": "lan0", "zone": "lan", "addresses": list(addresses), "mtu": 1400, **extra}


def router_yaml(config):
    """The config as YAML with one list item a line for interfaces, routes and forwards (so a test can name the
    line and column of a bad value), everything else as rnmtest.yaml_dump writes it."""
    out = ""
    for k, v in config.items():
        if k in ("interfaces", "routes", "forwards") and v:
            out += f"{k}:\n" + "".join(f"  - {json.dumps(item)}\n" for item in v)
        else:
            out += f"{k}: {json.dumps(v)}\n"
    return out


# --- Programs run inside the namespaces -----------------------------------------------------------------------

# Listens on the given tcp/PORT and udp/PORT (tcp6/PORT: IPv6); answers every connection or datagram with "<peer address> <port>".
ECHO = r"""
import selectors, socket, sys
sel = selectors.DefaultSelector()
for spec in sys.argv[1:]:
    proto, port = spec.split("/")
    family = socket.AF_INET6 if proto.endswith("6") else socket.AF_INET
    proto = proto.rstrip("6")
    s = socket.socket(family, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind(("", int(port)))
    if proto == "tcp":
        s.listen(16)
    sel.register(s, selectors.EVENT_READ, (proto, int(port)))
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        proto, port = key.data
        if proto == "tcp":
            c, peer = key.fileobj.accept()
            c.sendall(f"{peer[0]} {port}\n".encode())
            c.close()
        else:
            _, peer = key.fileobj.recvfrom(2048)
            key.fileobj.sendto(f"{peer[0]} {port}\n".encode(), peer)
"""

# One TCP connection or one UDP exchange (a few tries); prints the answer, exits non-zero without one.
ASK = r"""
import socket, sys
proto, host, port, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
if proto == "tcp":
    s = socket.create_connection((host, port), timeout=timeout)
    data = b""
    while True:
        b = s.recv(1024)
        if not b:
            break
        data += b
    print(data.decode().strip())
else:
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout / 4)
    for _ in range(4):
        s.sendto(b"?", (host, port))
        try:
            print(s.recvfrom(2048)[0].decode().strip())
            break
        except socket.timeout:
            continue
    else:
        sys.exit("no answer")
"""


def ask(ns, proto, host, port, timeout=2.0):
    """(the peer address the far end saw, the port it listens on), or None if nothing answered."""
    p = subprocess.run(ns.exec_args("python3", "-c", ASK, proto, host, str(port), str(timeout)),
                       capture_output=True, text=True, timeout=timeout + 10)
    if p.returncode != 0:
        return None
    peer, port = p.stdout.split()
    return peer, int(port)


def ping(ns, host, v6=False):
    cmd = ["ping", "-6" if v6 else "-4", "-n", "-c", "1", "-W", "1", host]
    return subprocess.run(ns.exec_args(*cmd), capture_output=True).returncode == 0


# --- The topology ---------------------------------------------------------------------------------------------

class Topology:
    def __init__(self):
        self.spaces = []
        self.procs = []
        try:
            self.client = self._ns("rnmt-cl")
            self.router = self._ns("rnmt-rt")
            self.server = self._ns("rnmt-sv")
            self.lanclient = self._ns("rnmt-lc")
            self._build()
        except BaseException:
            self.close()
            raise

    def _ns(self, prefix):
        n = NetNS(prefix)
        self.spaces.append(n)
        return n

    def _build(self):
        r, c, s, l = self.router, self.client, self.server, self.lanclient
        # New namespaces may inherit forwarding from the host: start the router without it (setting it is rnm's
        # job), for the interfaces created later too.
        r.sh("sysctl", "-q", "-w", "net.ipv4.conf.all.forwarding=0", "net.ipv6.conf.all.forwarding=0")
        r.ip("link", "add", "wan0", "type", "veth", "peer", "name", "eth0", "netns", c.name)
        # lan0 stays down: bringing it up (and its MTU and addresses) is rnm's job.
        r.ip("link", "add", "lan0", "type", "veth", "peer", "name", "up0", "netns", s.name)
        s.ip("link", "add", "sw1", "type", "veth", "peer", "name", "eth0", "netns", l.name)
        s.ip("link", "add", "br0", "type", "bridge")
        for port in ("up0", "sw1"):
            s.ip("link", "set", port, "master", "br0")
            s.ip("link", "set", port, "up")
        s.ip("link", "set", "br0", "up")
        for a in ("192.168.1.10/24", "192.168.4.10/24"):
            s.ip("addr", "add", a, "dev", "br0")
        s.ip("addr", "add", "fd00:1::10/64", "dev", "br0", "nodad")
        # Behind the static routes: addresses the router reaches only through them.
        for a in ("10.20.0.1/32", "10.30.0.1/32", "10.40.0.1/32", "10.80.0.1/32"):
            s.ip("addr", "add", a, "dev", "lo")
        s.ip("addr", "add", "fd00:20::1/128", "dev", "lo")
        s.ip("route", "add", "default", "via", ROUTER_LAN)
        s.ip("-6", "route", "add", "default", "via", "fd00:1::1")
        c.ip("link", "set", "eth0", "up")
        c.ip("addr", "add", f"{CLIENT}/24", "dev", "eth0")
        c.ip("addr", "add", f"{CLIENT6}/64", "dev", "eth0", "nodad")
        # Elsewhere on the internet: the client sends it to the router, which has no address there.
        c.ip("route", "add", "198.51.100.0/24", "via", WAN_ADDR)
        l.ip("link", "set", "eth0", "up")
        l.ip("addr", "add", f"{LANCLIENT}/24", "dev", "eth0")
        l.ip("route", "add", "default", "via", ROUTER_LAN)
        r.ip("link", "set", "wan0", "up")
        # What a DHCP client would have put on wan0: an address with a lease lifetime and the default route.
        r.ip("addr", "add", f"{WAN_ADDR}/24", "dev", "wan0", "valid_lft", "3600", "preferred_lft", "3600")
        r.ip("route", "add", "default", "via", CLIENT, "dev", "wan0", "proto", "dhcp")
        r.ip("addr", "add", f"{WAN_ADDR6}/64", "dev", "wan0", "valid_lft", "3600", "preferred_lft", "3600", "nodad")
        self._echo(s, "tcp/80", "tcp6/80", "udp/7000", "udp/7001")
        self._echo(l, "tcp/80")
        self._echo(c, "tcp/9000")

    def _echo(self, ns, *specs):
        p = subprocess.Popen(ns.exec_args("python3", "-c", ECHO, *specs), stdout=subprocess.PIPE, text=True)
        self.procs.append(p)
        assert p.stdout.readline().strip() == "ready"

    def dhcp_renew(self, old, new):
        """What a DHCP client does when the lease changes: old address out, new one in, default route again
        (the kernel dropped it with the link's last IPv4 address)."""
        self.router.ip("addr", "del", f"{old}/24", "dev", "wan0")
        self.router.ip("addr", "add", f"{new}/24", "dev", "wan0", "valid_lft", "3600", "preferred_lft", "3600")
        self.router.ip("route", "replace", "default", "via", CLIENT, "dev", "wan0", "proto", "dhcp")

    def close(self):
        for p in self.procs:
            p.kill()
            p.wait()
        for n in self.spaces:
            n.close()


@pytest.fixture
def topo():
    t = Topology()
    try:
        yield t
    finally:
        t.close()


# --- What the kernel and rnmd say -------------------------------------------------------------------------------

def addresses(ns, ifname):
    """{"address/len"} on the interface."""
    return {f"{a['local']}/{a['prefixlen']}" for a in ns.addresses().get(ifname, [])}


def link(ns, ifname):
    return json.loads(ns.ip("-j", "link", "show", ifname))[0]


def routes(ns):
    """Every unicast route of both families in every table: {(table, destination): route}."""
    out = {}
    for r in json.loads(ns.ip("-j", "route", "show", "table", "all") or "[]"):
        if r.get("type", "unicast") != "unicast":
            continue
        out[(r.get("table", "main"), r["dst"])] = r
    return out


def rnm_routes(ns):
    """The routes carrying rnm's mark (protocol 114)."""
    return {k: r for k, r in routes(ns).items() if r.get("protocol") == "114"}


def foreign_routes(ns):
    """Routes the test added itself (proto static and dhcp), exactly as the kernel lists them."""
    return {k: r for k, r in routes(ns).items() if r.get("protocol") in ("static", "dhcp")}


def sysctl(ns, key):
    return ns.sh("cat", "/proc/sys/" + key.replace(".", "/")).strip()


def status(d):
    return json.loads(d.ctl("--json", "status", check=True).stdout)["result"]


def counters(d):
    return status(d)["counters"]


def plan(d):
    p = d.ctl("--json", "plan")
    return json.loads(p.stdout)["result"]


def table_loads(d):
    m = d.ctl("metrics", check=True).stdout
    return int(re.search(r"^rnm_table_loads_total (\d+)$", m, re.M).group(1))


def route_key(rc):
    table = rc.get("table", "main")
    return ("main" if table in ("main", 254) else str(table)), rc["to"]


def network_problems(ns, config):
    """What the kernel lacks of the config's addresses, link settings and routes (empty: all there)."""
    problems = []
    have_routes = rnm_routes(ns)
    for iface in config["interfaces"]:
        try:
            l = link(ns, iface["name"])
        except RuntimeError:
            problems.append(f"{iface['name']} is absent")
            continue
        if iface.get("up", True) and "UP" not in l["flags"]:
            problems.append(f"{iface['name']} is down")
        if "mtu" in iface and l["mtu"] != iface["mtu"]:
            problems.append(f"{iface['name']} has mtu {l['mtu']}")
        missing = set(iface.get("addresses", [])) - addresses(ns, iface["name"])
        if missing:
            problems.append(f"{iface['name']} lacks {sorted(missing)}")
    for rc in config.get("routes", []):
        r = have_routes.get(route_key(rc))
        if r is None:
            problems.append(f"no rnm route {route_key(rc)}")
        elif "via" in rc and r.get("gateway") != rc["via"]:
            problems.append(f"route {rc['to']} via {r.get('gateway')}")
        elif "dev" in rc and r.get("dev") != rc["dev"]:
            problems.append(f"route {rc['to']} dev {r.get('dev')}")
        elif "metric" in rc and r.get("metric", 0) != rc["metric"]:
            problems.append(f"route {rc['to']} metric {r.get('metric')}")
    return problems


def wait_for(what, predicate, d, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s\n--- daemon log tail ---\n{d.log_tail()}")
        d.assert_alive()
        time.sleep(0.05)


def wait_network(ns, d, config, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        problems = network_problems(ns, config)
        if not problems:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"network not as configured after {timeout}s: {problems}\n"
                                 f"--- status.network ---\n{json.dumps(status(d).get('network'), indent=1)}\n"
                                 f"--- daemon log tail ---\n{d.log_tail()}")
        d.assert_alive()
        time.sleep(0.05)


def start(topo, daemons, config):
    d = daemons(topo.router, config)
    wait_network(topo.router, d, config)
    assert_converged(topo.router, d)
    return d


# --- Addresses, link, routes, sysctls ---------------------------------------------------------------------------

def test_addresses_link_routes_and_forwarding_are_applied_at_start_and_shown_in_status(topo, daemons, tmp_path):
    r = topo.router
    assert "UP" not in link(r, "lan0")["flags"] and link(r, "lan0")["mtu"] == 1500
    assert sysctl(r, "net.ipv4.conf.lan0.forwarding") == "0"
    config = router_config(tmp_path)
    d = start(topo, daemons, config)

    for fam in ("ipv4", "ipv6"):
        for ifname in ("wan0", "lan0"):
            assert sysctl(r, f"net.{fam}.conf.{ifname}.forwarding") == "1", (fam, ifname)
    # rnm's routes are the configured ones, marked as its own; the DHCP client's default route is untouched.
    mine = rnm_routes(r)
    assert set(mine) == {("main", "10.20.0.0/16"), ("main", "fd00:20::/48"), ("main", "10.30.0.0/16"),
                         ("100", "10.40.0.0/16"), ("100", "default")}, mine
    assert mine[("main", "10.30.0.0/16")]["dev"] == "lan0" and "gateway" not in mine[("main", "10.30.0.0/16")]
    assert routes(r)[("main", "default")]["gateway"] == CLIENT and routes(r)[("main", "default")]["protocol"] == "dhcp"
    assert addresses(r, "wan0") >= {f"{WAN_ADDR}/24"}
    # Real packets on the routes: a gateway route, a device route, IPv6 (once DAD let fd00:1::1 be used).
    assert ping(r, "10.20.0.1") and ping(r, "10.30.0.1")
    wait_for("ping fd00:20::1 over the IPv6 route", lambda: ping(r, "fd00:20::1", v6=True), d)
    table100 = r.ip("route", "show", "table", "100")
    assert f"default via {SERVER} dev lan0 proto 114" in table100 and f"10.40.0.0/16 via {SERVER} dev lan0 proto 114" in table100, table100

    net = status(d)["network"]
    assert net["managed"] is True and net["forwarding"] is True, net
    assert {(a["interface"], a["address"]): a["state"] for a in net["addresses"]} == {
        ("lan0", "192.168.1.1/24"): "present", ("lan0", "fd00:1::1/64"): "present",
        ("lan0", "10.55.0.1/24"): "present"}, net["addresses"]
    shown = {(x["to"], x["table"]): x for x in net["routes"]}
    assert set(shown) == {("10.20.0.0/16", 254), ("fd00:20::/48", 254), ("10.30.0.0/16", 254),
                          ("10.40.0.0/16", 100), ("default", 100)}, net["routes"]
    assert all(x["state"] == "present" for x in net["routes"]), net["routes"]
    assert shown[("10.20.0.0/16", 254)]["via"] == SERVER and shown[("10.30.0.0/16", 254)]["metric"] == 100
    assert net["failures"] == {}, net
    p = plan(d)
    assert p["network"] == [] and p["in_sync"] is True, p
    assert counters(d).get("drift_address", 0) == 0 and counters(d).get("drift_route", 0) == 0


def test_drift_is_restored_removal_by_config_and_foreign_addresses_and_routes_are_left_alone(topo, daemons, tmp_path):
    r = topo.router
    config = router_config(tmp_path)
    d = start(topo, daemons, config)
    # Not rnm's: an address on a managed interface and routes in main and in a table rnm uses too.
    r.ip("addr", "add", "172.16.5.1/24", "dev", "lan0")
    r.ip("route", "add", "10.99.0.0/16", "via", SERVER, "proto", "static")
    r.ip("route", "add", "10.98.0.0/16", "via", SERVER, "table", "100", "proto", "static")
    r.ip("-6", "route", "add", "fd00:99::/48", "via", "fd00:1::10", "proto", "static")
    foreign = foreign_routes(r)
    assert len(foreign) == 4, foreign  # the three and the DHCP client's default route

    # Someone removes one of rnm's addresses, then one of its routes: both come back, counted as drift.
    r.ip("addr", "del", "10.55.0.1/24", "dev", "lan0")
    wait_for("10.55.0.1/24 restored", lambda: "10.55.0.1/24" in addresses(r, "lan0"), d, 3)
    wait_for("drift_address counted", lambda: counters(d).get("drift_address") == 1, d, 2)
    r.ip("route", "del", "10.20.0.0/16")
    wait_for("route 10.20.0.0/16 restored",
             lambda: rnm_routes(r).get(("main", "10.20.0.0/16"), {}).get("gateway") == SERVER, d, 3)
    wait_for("drift_route counted", lambda: counters(d).get("drift_route") == 1, d, 2)
    assert ping(r, "10.20.0.1")

    # An unchanged reload changes nothing.
    assert d.ctl("reload").returncode == 0
    time.sleep(0.3)
    assert network_problems(r, config) == []
    assert "172.16.5.1/24" in addresses(r, "lan0") and foreign_routes(r) == foreign

    # The config drops an address and two routes (one IPv6) and brings a new address and a new route: the plan
    # names exactly these, a reload applies them, nothing foreign moves.
    new = dict(config, interfaces=[config["interfaces"][0], lan0(("192.168.1.1/24", "fd00:1::1/64", "10.56.0.1/24"))],
               routes=[{"to": "10.20.0.0/16", "via": SERVER}, {"to": "10.40.0.0/16", "via": LANCLIENT, "table": 100},
                       {"to": "10.60.0.0/16", "via": SERVER, "metric": 50}])
    d.write_config(new)
    p = plan(d)
    assert p["in_sync"] is False and p["config_changed"] is True, p
    ops = p["network"]
    assert len(ops) == 7, ops
    assert "add address 10.56.0.1/24 on lan0" in ops, ops
    assert "remove address 10.55.0.1/24 from lan0 (no longer in the config)" in ops, ops
    for prefix, dst in (("add route", "10.60.0.0/16"), ("remove route", "10.30.0.0/16"), ("remove route", "fd00:20::/48"),
                        ("replace route", "10.40.0.0/16 table 100 via 192.168.1.20"), ("remove route", "default table 100")):
        assert any(op.startswith(f"{prefix} {dst}") for op in ops), (prefix, dst, ops)
    loads = table_loads(d)
    assert d.ctl("reload").returncode == 0
    wait_network(r, d, new)  # (10.40.0.0/16 in table 100 now via the new gateway)
    wait_for("removed from the config: gone", lambda: "10.55.0.1/24" not in addresses(r, "lan0")
             and set(rnm_routes(r)) == {("main", "10.20.0.0/16"), ("100", "10.40.0.0/16"), ("main", "10.60.0.0/16")}, d)
    assert ping(r, "10.20.0.1") and not ping(r, "10.30.0.1")
    assert "172.16.5.1/24" in addresses(r, "lan0") and foreign_routes(r) == foreign
    assert table_loads(d) == loads  # addresses and routes only: the rules did not change
    c = counters(d)
    assert c.get("drift_address") == 1 and c.get("drift_route") == 1, c  # its own removals are no drift
    p = plan(d)
    assert p["network"] == [] and p["in_sync"] is True, p
    assert_converged(r, d)

    # exclusive: addresses the config does not list go, except link-local ones and a DHCP client's lease.
    excl = dict(new, interfaces=[dict(new["interfaces"][0], exclusive=True), dict(new["interfaces"][1], exclusive=True)])
    d.write_config(excl)
    assert plan(d)["network"] == ["remove address 172.16.5.1/24 from lan0 (exclusive: not in the config)"]
    assert d.ctl("reload").returncode == 0
    wait_for("foreign address removed on the exclusive interface", lambda: "172.16.5.1/24" not in addresses(r, "lan0"), d)
    time.sleep(0.3)
    lan = addresses(r, "lan0")
    assert {a for a in lan if not a.startswith("fe80:")} == {"192.168.1.1/24", "fd00:1::1/64", "10.56.0.1/24"}, lan
    assert any(a.startswith("fe80:") for a in lan), lan
    wan = addresses(r, "wan0")
    assert f"{WAN_ADDR}/24" in wan and any(a.startswith("fe80:") for a in wan), wan
    assert foreign_routes(r) == foreign  # routes rnm did not add: never, exclusive or not
    assert counters(d).get("drift_address") == 1


def test_a_route_whose_gateway_is_not_reachable_yet_is_retried_when_the_link_or_address_appears(topo, daemons, tmp_path):
    r, s = topo.router, topo.server
    config = router_config(tmp_path)
    config["interfaces"].append({"name": "lan1", "zone": "lan", "addresses": ["192.168.3.1/24"]})
    config["routes"] += [{"to": "10.70.0.0/16", "via": "192.168.3.10"},  # through lan1, which does not exist yet
                         {"to": "10.80.0.0/16", "via": "192.168.4.10"},  # through an address lan0 does not have yet
                         {"to": "10.90.0.0/16", "dev": "lan1"}]  # a device route on the missing interface
    d = daemons(r, config)
    present_now = dict(config, interfaces=config["interfaces"][:2], routes=config["routes"][:-3])
    wait_network(r, d, present_now)

    def state(to):
        return {x["to"]: x["state"] for x in status(d)["network"]["routes"]}.get(to)

    pending = ("failed", "waiting", "missing")
    wait_for("the routes reported as not applied",
             lambda: all((state(to) or "").startswith(pending) for to in ("10.70.0.0/16", "10.80.0.0/16", "10.90.0.0/16")), d)
    assert state("10.90.0.0/16") == "waiting: interface lan1 is not present"
    net = status(d)["network"]
    assert {(a["interface"], a["address"]): a["state"] for a in net["addresses"]}[("lan1", "192.168.3.1/24")] \
        == "waiting for the interface", net["addresses"]
    assert ("main", "10.70.0.0/16") not in routes(r) and ("main", "10.80.0.0/16") not in routes(r)
    ops = plan(d)["network"]
    assert any(op.startswith("add route 10.70.0.0/16") for op in ops) and any(op.startswith("add route 10.80.0.0/16") for op in ops), ops
    # The same in the text forms.
    text = d.ctl("plan").stdout
    assert "network: add route 10.70.0.0/16 via 192.168.3.10" in text, text
    text = d.ctl("status").stdout
    assert "network (forwarding on):" in text and "192.168.3.1/24 on lan1: waiting for the interface" in text, text
    assert re.search(r"route 10\.70\.0\.0/16 via 192\.168\.3\.10: (failed|waiting)", text), text

    # The link appears (down, as a new veth does): rnm brings it up, gives it its address, then the route follows.
    r.ip("link", "add", "lan1", "type", "veth", "peer", "name", "opt0", "netns", s.name)
    s.ip("link", "set", "opt0", "up")
    s.ip("addr", "add", "192.168.3.10/24", "dev", "opt0")
    s.ip("addr", "add", "10.70.0.1/32", "dev", "lo")
    wait_for("route 10.70.0.0/16 applied once lan1 is there",
             lambda: rnm_routes(r).get(("main", "10.70.0.0/16"), {}).get("gateway") == "192.168.3.10", d)
    assert "UP" in link(r, "lan1")["flags"] and "192.168.3.1/24" in addresses(r, "lan1")
    assert ping(r, "10.70.0.1")
    wait_for("lan1's forwarding sysctl", lambda: sysctl(r, "net.ipv4.conf.lan1.forwarding") == "1", d, 2)
    wait_for("device route 10.90.0.0/16 on lan1", lambda: rnm_routes(r).get(("main", "10.90.0.0/16"), {}).get("dev") == "lan1", d, 2)
    assert state("10.70.0.0/16") == "present" and state("10.90.0.0/16") == "present"
    assert (state("10.80.0.0/16") or "").startswith(pending)

    # The address appears (not rnm's: another tool's, on lan0): the route through it follows.
    r.ip("addr", "add", "192.168.4.1/24", "dev", "lan0")
    wait_for("route 10.80.0.0/16 applied once its gateway is on a connected network",
             lambda: rnm_routes(r).get(("main", "10.80.0.0/16"), {}).get("gateway") == "192.168.4.10", d)
    assert ping(r, "10.80.0.1")
    net = status(d)["network"]
    assert all(x["state"] == "present" for x in net["routes"]) and net["failures"] == {}, net
    assert all(a["state"] == "present" for a in net["addresses"]), net["addresses"]
    p = plan(d)
    assert p["network"] == [] and p["in_sync"] is True, p
    assert counters(d).get("drift_route", 0) == 0
    assert_converged(r, d)

    # The interface goes away and comes back (a new index): address, link, routes and its sysctl again.
    r.ip("link", "del", "lan1")
    wait_for("routes through lan1 reported as not applied",
             lambda: state("10.90.0.0/16") == "waiting: interface lan1 is not present"
             and (state("10.70.0.0/16") or "").startswith(pending), d)
    r.ip("link", "add", "lan1", "type", "veth", "peer", "name", "opt0", "netns", s.name)
    s.ip("link", "set", "opt0", "up")
    s.ip("addr", "add", "192.168.3.10/24", "dev", "opt0")
    wait_network(r, d, config)
    assert ping(r, "10.70.0.1")
    wait_for("lan1's forwarding sysctl again", lambda: sysctl(r, "net.ipv4.conf.lan1.forwarding") == "1"
             and sysctl(r, "net.ipv6.conf.lan1.forwarding") == "1", d, 2)
    p = plan(d)
    assert p["network"] == [] and p["in_sync"] is True, p
    assert_converged(r, d)


def test_forwarding_turned_on_by_a_reload(topo, daemons, tmp_path):
    r, client = topo.router, topo.client
    config = router_config(tmp_path, forwarding=False)
    d = start(topo, daemons, config)
    assert sysctl(r, "net.ipv4.conf.lan0.forwarding") == "0" and status(d)["network"]["forwarding"] is False
    assert ask(client, "tcp", WAN_ADDR, 8080, timeout=1) is None  # DNAT alone does not forward
    d.write_config(dict(config, forwarding=True))
    p = plan(d)
    assert sorted(p["network"]) == ["sysctl net.ipv4.conf.lan0.forwarding = 1", "sysctl net.ipv4.conf.wan0.forwarding = 1",
                                    "sysctl net.ipv6.conf.all.forwarding = 1", "sysctl net.ipv6.conf.lan0.forwarding = 1",
                                    "sysctl net.ipv6.conf.wan0.forwarding = 1"], p
    assert p["in_sync"] is False
    assert d.ctl("reload").returncode == 0
    keys = ("ipv4.conf.lan0", "ipv4.conf.wan0", "ipv6.conf.all", "ipv6.conf.lan0", "ipv6.conf.wan0")
    wait_for("forwarding sysctls set", lambda: all(sysctl(r, f"net.{k}.forwarding") == "1" for k in keys), d, 2)
    assert status(d)["network"]["forwarding"] is True
    assert ask(client, "tcp", WAN_ADDR, 8080) == (CLIENT, 80), d.log_tail()
    assert plan(d)["in_sync"] is True


def test_what_is_removed_while_notifications_are_lost_is_restored_after_the_resync(topo, daemons, tmp_path):
    """An overrun (small receive buffer, rnmd stopped while thousands of address changes queue up) hides the
    removal of one of rnm's addresses and one of its routes: the resync's dump finds them missing."""
    r, s = topo.router, topo.server
    r.ip("link", "add", "junk0", "type", "veth", "peer", "name", "junk1")
    r.ip("link", "set", "junk0", "up")
    config = router_config(tmp_path)
    d = daemons(r, config, extra_args=["--netlink-buffer", "65536"])
    wait_network(r, d, config)
    d.signal(signal.SIGSTOP)
    try:
        lines = []
        for i in range(2500):
            a = f"10.{100 + i // 250}.{i % 250}.1/32"
            lines += [f"addr add {a} dev junk0", f"addr del {a} dev junk0"]
        lines += ["addr del 10.55.0.1/24 dev lan0", "route del 10.20.0.0/16",
                  f"route add 10.99.0.0/16 via {SERVER} proto static"]
        r.ip_batch(lines)
    finally:
        d.signal(signal.SIGCONT)
    d.wait_for_log("netlink overrun", timeout=10)
    wait_network(r, d, config)
    assert ping(r, "10.20.0.1")
    assert foreign_routes(r)[("main", "10.99.0.0/16")]["gateway"] == SERVER
    wait_for("both counted as drift", lambda: counters(d).get("drift_address") == 1 and counters(d).get("drift_route") == 1, d, 2)
    assert_converged(r, d)


def test_addresses_on_an_interface_that_leaves_the_config_are_removed(topo, daemons, tmp_path):
    """An interface entry removed from the config takes rnm's addresses on it along (they have left the config);
    someone else's stay."""
    r = topo.router
    r.ip("link", "add", "dmz0", "type", "veth", "peer", "name", "dmz1")
    r.ip("link", "set", "dmz1", "up")
    config = router_config(tmp_path)
    config["interfaces"].append({"name": "dmz0", "zone": "dmz", "addresses": ["10.77.0.1/24", "fd00:77::1/64"]})
    d = start(topo, daemons, config)
    r.ip("addr", "add", "172.16.7.1/24", "dev", "dmz0")
    new = dict(config, interfaces=config["interfaces"][:2])
    d.write_config(new)
    ops = plan(d)["network"]
    assert sorted(ops) == ["remove address 10.77.0.1/24 from dmz0 (the interface is no longer in the config)",
                           "remove address fd00:77::1/64 from dmz0 (the interface is no longer in the config)"], ops
    assert d.ctl("reload").returncode == 0
    wait_for("rnm's addresses on dmz0 removed", lambda: not {"10.77.0.1/24", "fd00:77::1/64"} & addresses(r, "dmz0"), d, 3)
    assert "172.16.7.1/24" in addresses(r, "dmz0")
    assert plan(d)["in_sync"] is True
    assert_converged(r, d)


def test_forwarding_reset_by_someone_shows_in_plan_and_a_reload_sets_it_again(topo, daemons, tmp_path):
    """`sysctl --system` or an admin turns forwarding off on a managed interface. There is no notification for
    sysctls, but plan must not call the host in sync, and a reload must set it again."""
    r, client = topo.router, topo.client
    config = router_config(tmp_path)
    d = start(topo, daemons, config)
    r.sh("sysctl", "-q", "-w", "net.ipv4.conf.lan0.forwarding=0")
    p = plan(d)
    assert "sysctl net.ipv4.conf.lan0.forwarding = 1" in p["network"] and p["in_sync"] is False, p
    assert d.ctl("reload").returncode == 0
    wait_for("forwarding on lan0 again", lambda: sysctl(r, "net.ipv4.conf.lan0.forwarding") == "1", d, 2)
    assert ask(client, "tcp", WAN_ADDR, 8080) == (CLIENT, 80)


def test_after_a_restart_rnm_removes_only_what_it_marked_as_its_own(topo, daemons, tmp_path):
    """No memory across restarts: rnm knows its addresses and routes by their marks (IFA_PROTO and protocol 114)."""
    r = topo.router
    config = router_config(tmp_path)
    d = start(topo, daemons, config)
    r.ip("addr", "add", "172.16.5.1/24", "dev", "lan0")
    r.ip("route", "add", "10.99.0.0/16", "via", SERVER, "proto", "static")
    foreign = foreign_routes(r)
    code, _ = d.stop()
    assert code == 0
    time.sleep(0.2)
    # Like the table, the network stays as it is when rnmd stops.
    assert network_problems(r, config) == []
    new = dict(config, interfaces=[config["interfaces"][0], lan0(("192.168.1.1/24", "fd00:1::1/64"))],
               routes=[config["routes"][0], config["routes"][3]])
    d.write_config(new)
    d.start()
    wait_for("rnm's own address and routes removed after the restart", lambda: "10.55.0.1/24" not in addresses(r, "lan0")
             and set(rnm_routes(r)) == {("main", "10.20.0.0/16"), ("100", "10.40.0.0/16")}, d)
    time.sleep(0.3)
    assert network_problems(r, new) == []
    assert "172.16.5.1/24" in addresses(r, "lan0") and foreign_routes(r) == foreign
    c = counters(d)
    assert c.get("drift_address", 0) == 0 and c.get("drift_route", 0) == 0, c
    p = plan(d)
    assert p["network"] == [] and p["in_sync"] is True, p


def test_a_link_set_down_by_someone_comes_back_with_its_addresses_and_routes(topo, daemons, tmp_path):
    """Setting lan0 down makes the kernel drop its IPv6 address and every route through it (IPv4 ones without a
    notification); rnm brings the link up and puts back what it keeps."""
    r = topo.router
    config = router_config(tmp_path)
    d = start(topo, daemons, config)
    wait_for("ping fd00:20::1 over the IPv6 route", lambda: ping(r, "fd00:20::1", v6=True), d)
    r.ip("link", "set", "lan0", "down")
    wait_network(r, d, config)
    assert ping(r, "10.20.0.1") and ping(r, "10.30.0.1")
    wait_for("ping fd00:20::1 again", lambda: ping(r, "fd00:20::1", v6=True), d)
    assert ask(topo.client, "tcp", WAN_ADDR, 8080) == (CLIENT, 80), d.log_tail()
    net = status(d)["network"]
    assert all(x["state"] == "present" for x in net["routes"] + net["addresses"]) and net["failures"] == {}, net
    # The MTU too.
    r.ip("link", "set", "lan0", "mtu", "1500")
    wait_for("lan0's MTU back to 1400", lambda: link(r, "lan0")["mtu"] == 1400, d, 3)
    assert_converged(r, d)


def test_a_route_replaced_by_someone_elses_is_left_alone_reported_and_restored_when_theirs_goes(topo, daemons, tmp_path):
    """`ip route replace` with another protocol puts someone else's route in the place of rnm's (same table,
    destination and metric). rnm must not touch theirs, must not claim its own is there, and must put its own
    back once theirs is deleted."""
    r = topo.router
    config = router_config(tmp_path)
    d = start(topo, daemons, config)
    r.ip("route", "replace", "10.20.0.0/16", "via", LANCLIENT, "proto", "static")
    theirs = routes(r)[("main", "10.20.0.0/16")]

    def shown():
        return {x["to"]: x for x in status(d)["network"]["routes"]}["10.20.0.0/16"]

    time.sleep(0.5)
    assert routes(r)[("main", "10.20.0.0/16")] == theirs  # never touched
    wait_for("status no longer claims rnm's route 10.20.0.0/16 is there", lambda: shown()["state"] != "present", d, 2)
    r.ip("route", "del", "10.20.0.0/16")
    wait_for("rnm's route 10.20.0.0/16 restored once theirs is gone",
             lambda: rnm_routes(r).get(("main", "10.20.0.0/16"), {}).get("gateway") == SERVER, d, 3)
    assert shown()["state"] == "present"


def test_a_configured_route_that_exists_as_someone_elses_is_left_alone_and_reported(topo, daemons, tmp_path):
    r = topo.router
    # lan0 set up by hand before rnmd starts: its address is one the config lists (rnm takes it as it is), and a
    # route to 10.20.0.0/16 that is not rnm's, through another gateway.
    r.ip("link", "set", "lan0", "up", "mtu", "1400")
    r.ip("addr", "add", "192.168.1.1/24", "dev", "lan0")
    r.ip("route", "add", "10.20.0.0/16", "via", LANCLIENT, "proto", "static")
    theirs = routes(r)[("main", "10.20.0.0/16")]
    config = router_config(tmp_path)
    d = daemons(r, config)
    wait_network(r, d, dict(config, routes=config["routes"][1:]))
    wait_for("the clash reported in status",
             lambda: {x["to"]: x["state"] for x in status(d)["network"]["routes"]}["10.20.0.0/16"].startswith("failed"), d)
    time.sleep(0.3)
    assert routes(r)[("main", "10.20.0.0/16")] == theirs
    assert ("main", "10.20.0.0/16") not in rnm_routes(r)
    net = status(d)["network"]
    assert "not rnm's" in {x["to"]: x["state"] for x in net["routes"]}["10.20.0.0/16"], net["routes"]
    assert [a["state"] for a in net["addresses"]] == ["present"] * 3, net["addresses"]
    assert counters(d).get("drift_route", 0) == 0
    d.ctl("reload", check=True)
    time.sleep(0.3)
    assert routes(r)[("main", "10.20.0.0/16")] == theirs


# --- Masquerade, forwards, hairpin ------------------------------------------------------------------------------

def rnmd_transactions(mon, pid):
    """rnmd's transactions as the lists of lines nft monitor printed for them (each closed by its
    `# new generation … by process` line; nftables names the committing thread)."""
    tids = {int(t) for t in os.listdir(f"/proc/{pid}/task")} | {pid}
    out, current = [], []
    with mon.lock:
        lines = list(mon.lines)
    for line in lines:
        m = NftMonitor.GEN.search(line)
        if m:
            if int(m.group(2)) in tids:
                out.append(current)
            current = []
        elif line.strip():
            current.append(line)
    return out


def test_masquerade_and_port_forwards_survive_a_dhcp_address_change_without_a_rerender(topo, daemons, tmp_path, monitor_factory):
    r, client, server = topo.router, topo.client, topo.server
    d = start(topo, daemons, router_config(tmp_path))

    # Masquerade: the WAN side sees the router's WAN address, not the LAN host's.
    assert ask(server, "tcp", CLIENT, 9000) == (WAN_ADDR, 9000), d.log_tail()
    # Forwards: to the WAN address, reaching the server with the client's own address (DNAT only); the UDP
    # range is mapped port by port.
    assert ask(client, "tcp", WAN_ADDR, 8080) == (CLIENT, 80), d.log_tail()
    assert ask(client, "udp", WAN_ADDR, 6000) == (CLIENT, 7000), d.log_tail()
    assert ask(client, "udp", WAN_ADDR, 6001) == (CLIENT, 7001), d.log_tail()
    # IPv6: to the router's IPv6 WAN address (the zone's v6 set), DNAT to the server's IPv6 address (once DAD is
    # done with the router's fd00:1::1, the server's gateway).
    wait_for("fd00:1::1 usable", lambda: not any(a.get("tentative") for a in r.addresses()["lan0"]), d)
    assert ask(client, "tcp", WAN_ADDR6, 8443) == (CLIENT6, 80), d.log_tail()
    # Only what is forwarded gets through: the server's port 80 is not reachable on the WAN address's port 80,
    # nor is port 8080 of an address that is not the zone's (arriving on wan0 all the same).
    assert ask(client, "tcp", WAN_ADDR, 80, timeout=1) is None
    assert ask(client, "tcp", "198.51.100.5", 8080, timeout=1) is None

    loads = table_loads(d)
    mon = monitor_factory(r)
    topo.dhcp_renew(WAN_ADDR, WAN_ADDR2)
    assert_converged(r, d)
    assert ask(client, "tcp", WAN_ADDR2, 8080) == (CLIENT, 80), d.log_tail()
    assert ask(client, "udp", WAN_ADDR2, 6000) == (CLIENT, 7000), d.log_tail()
    assert ask(client, "udp", WAN_ADDR2, 6001) == (CLIENT, 7001), d.log_tail()
    assert ask(server, "tcp", CLIENT, 9000) == (WAN_ADDR2, 9000), d.log_tail()
    time.sleep(0.3)

    # No re-render: no table load, and every transaction rnmd committed was element changes only.
    assert table_loads(d) == loads, d.log_tail()
    txs = rnmd_transactions(mon, d.pid)
    assert txs, "rnmd committed nothing for the address change"
    for tx in txs:
        assert tx and all(re.match(rf"(add|delete) element inet {TABLE} ", line) for line in tx), txs
    changes = [line for tx in txs for line in tx]
    assert any(line.startswith(f"add element inet {TABLE} wan_v4 ") and WAN_ADDR2 in line for line in changes), changes
    assert any(line.startswith(f"delete element inet {TABLE} wan_v4 ") and WAN_ADDR in line for line in changes), changes
    # The DHCP client's address and route are its own: rnm neither removed them nor counted them as drift.
    assert routes(r)[("main", "default")]["protocol"] == "dhcp"
    assert f"{WAN_ADDR2}/24" in addresses(r, "wan0")
    c = counters(d)
    assert c.get("drift_address", 0) == 0 and c.get("drift_route", 0) == 0, c


def test_hairpin_lets_a_lan_client_reach_the_server_through_the_wan_address(topo, daemons, tmp_path):
    lc = topo.lanclient
    d = start(topo, daemons, router_config(tmp_path))
    # Directly on the segment: no NAT at all.
    assert ask(lc, "tcp", SERVER, 80) == (LANCLIENT, 80)
    # Through the WAN address: reflected to the server, the connection masqueraded so the answer comes back
    # through the router (the server sees the router's LAN address).
    assert ask(lc, "tcp", WAN_ADDR, 8080) == (ROUTER_LAN, 80), d.log_tail()
    # The UDP forward has no hairpin: from the LAN, the WAN address's port 6000 is the router's own (nothing
    # listens there).
    assert ask(lc, "udp", WAN_ADDR, 6000, timeout=1) is None
    # After a DHCP change the reflection follows the new address (the zone's address set).
    topo.dhcp_renew(WAN_ADDR, WAN_ADDR2)
    assert_converged(topo.router, d)
    assert ask(lc, "tcp", WAN_ADDR2, 8080) == (ROUTER_LAN, 80), d.log_tail()


def test_nat_changes_follow_a_reload_in_one_transaction_and_are_repaired_like_the_templates(topo, daemons, tmp_path, monitor_factory):
    r, client, server = topo.router, topo.client, topo.server
    config = router_config(tmp_path)
    d = start(topo, daemons, config)
    assert ask(server, "tcp", CLIENT, 9000) == (WAN_ADDR, 9000)
    mon = monitor_factory(r)
    loads = table_loads(d)
    # A new forward (to the LAN client), no more masquerade, the rest as it was.
    new = dict(config, masquerade=[],
               forwards=config["forwards"] + [{"zone": "wan", "proto": "tcp", "port": 8081, "to": LANCLIENT, "to_port": 80}])
    d.write_config(new)
    assert d.ctl("reload").returncode == 0
    time.sleep(0.3)
    assert mon.transactions(d.pid) == 1 and table_loads(d) == loads + 1, mon.lines
    assert ask(client, "tcp", WAN_ADDR, 8081) == (CLIENT, 80), d.log_tail()
    assert ask(client, "tcp", WAN_ADDR, 8080) == (CLIENT, 80), d.log_tail()
    # Without masquerade the server's packets reach the client with its own address; the client has no way back.
    assert ask(server, "tcp", CLIENT, 9000, timeout=1) is None
    # The generated chains are part of our table: someone flushing one is drift, repaired.
    r.nft("flush", "chain", "inet", TABLE, "rnm_prerouting")
    wait_for("rnm_prerouting repaired", lambda: "dnat" in r.nft("list", "chain", "inet", TABLE, "rnm_prerouting"), d, 2)
    assert ask(client, "tcp", WAN_ADDR, 8081) == (CLIENT, 80), d.log_tail()
    r.nft("flush", "chain", "inet", TABLE, "rnm_forward")
    wait_for("rnm_forward repaired", lambda: "accept" in r.nft("list", "chain", "inet", TABLE, "rnm_forward"), d, 2)
    assert ask(client, "tcp", WAN_ADDR, 8080) == (CLIENT, 80), d.log_tail()
    assert d.ctl("plan").stdout == f"table inet {TABLE}: in sync\n"


# --- Bad input ------------------------------------------------------------------------------------------------

# Each case: what to add to the good config, where the error points (the text of the offending value as
# router_yaml writes it), the field, and what the message must say (all of the fragments, on that line).
BAD = {
    "overlapping forwards": ("forwards", {"zone": "wan", "proto": "tcp", "port": "8070-8090", "to": SERVER},
                             '"8070-8090"', "forwards[{i}].port", ["tcp ports 8070-8090 on zone wan overlap the forward at {forward0} (8080)"]),
    "port out of range": ("forwards", {"zone": "wan", "proto": "udp", "port": 70000, "to": SERVER},
                          "70000", "forwards[{i}].port", ["port 70000 is out of range (1–65535)"]),
    "target outside every zone": ("forwards", {"zone": "wan", "proto": "tcp", "port": 9000, "to": "10.99.0.1"},
                                  '"10.99.0.1"', "forwards[{i}].to", ["10.99.0.1 is outside every zone's networks"]),
    "route via the wrong family": ("routes", {"to": "10.67.0.0/16", "via": "fd00:1::10"},
                                   '"fd00:1::10"', "routes[{i}].via", ["fd00:1::10 is IPv6; the route to 10.67.0.0/16 is IPv4"]),
    # The kernel stores an IPv6 route's metric 0 as 1024: these two are one route (routes[1] is fd00:20::/48 via
    # fd00:1::10 without a metric). Accepted, rnmd would replace one with the other for ever.
    "IPv6 route listed twice (metric 0 is 1024)": ("routes", {"to": "fd00:20::/48", "via": "fd00:1::11", "metric": 1024},
                                                   "{", "routes[{i}]", ["route to fd00:20::/48 in table 254", "listed twice (first at {route1})"]),
}


def position(text, line_containing, token):
    """1-based (line, column) of `token` on the first line containing `line_containing`."""
    for n, line in enumerate(text.splitlines(), 1):
        if line_containing in line:
            return n, line.index(token) + 1
    raise AssertionError(f"{line_containing!r} not in\n{text}")


@pytest.mark.parametrize("case", list(BAD))
def test_bad_router_config_is_a_clear_error_and_nothing_is_applied(topo, daemons, tmp_path, case):
    r, client = topo.router, topo.client
    config = router_config(tmp_path)
    d = start(topo, daemons, config)
    before = (r.ip("-j", "addr"), routes(r), r.nft("-s", "list", "table", "inet", TABLE), status(d)["config"]["generation"])

    key, item, token, field, message = BAD[case]
    bad = dict(d.config)
    bad[key] = bad[key] + [item]
    # Valid changes next to the bad one: none of them may be applied either.
    bad["interfaces"] = [bad["interfaces"][0], lan0(("192.168.1.1/24", "fd00:1::1/64", "10.55.0.1/24", "10.66.0.1/24"))]
    if key != "routes":
        bad["routes"] = bad["routes"] + [{"to": "10.68.0.0/16", "via": SERVER}]
    text = router_yaml(bad)
    line, col = position(text, json.dumps(item), token)
    marks = {name: "{}:{}".format(*position(text, json.dumps(bad[k][0 if name == "forward0" else 1]), "{"))
             for name, k in (("forward0", "forwards"), ("route1", "routes"))}
    prefix = f"{d.config_path}:{line}:{col}: {field.format(i=len(config[key]))}: "
    fragments = [m.format(**marks) for m in message]
    want = prefix + " … ".join(fragments)

    def reported(stderr):
        return any(prefix in l and all(f in l for f in fragments) for l in stderr.splitlines())

    d.write_config(text=text)
    c = subprocess.run(r.exec_args(RNMD, "--check", "--config", d.config_path), capture_output=True, text=True)
    assert c.returncode == 1 and reported(c.stderr), f"want: {want}\ngot ({c.returncode}): {c.stderr}{c.stdout}"

    rl = d.ctl("reload")
    assert rl.returncode == 1 and reported(rl.stderr), f"want: {want}\ngot ({rl.returncode}): {rl.stderr}{rl.stdout}"
    time.sleep(0.3)
    assert (r.ip("-j", "addr"), routes(r), r.nft("-s", "list", "table", "inet", TABLE), status(d)["config"]["generation"]) == before
    assert "10.66.0.1/24" not in addresses(r, "lan0") and ("main", "10.68.0.0/16") not in routes(r)
    # The running config still rules: its forward works, and what someone removes is still put back.
    assert ask(client, "tcp", WAN_ADDR, 8080) == (CLIENT, 80), d.log_tail()
    r.ip("addr", "del", "10.55.0.1/24", "dev", "lan0")
    wait_for("10.55.0.1/24 restored under the running config", lambda: "10.55.0.1/24" in addresses(r, "lan0"), d, 3)
    assert_converged(r, d)
