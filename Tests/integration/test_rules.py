"""Rule templates, whole-table reloads, check/render/plan and drift repair, against the real kernel. Every test
runs rnmd in its own network namespace."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest
from rnmtest import RNMD, ROOT, NetNS, assert_converged, run

INPUT = """chain input {
	type filter hook input priority filter; policy drop;
	ct state established,related accept
	iifname "lo" accept
	icmp type echo-request accept
	icmpv6 type { echo-request, nd-neighbor-solicit, nd-neighbor-advert } accept
	iifname $wan_ifaces tcp dport $stream_port accept
	ip saddr @blocked_v4 drop
}
"""


def base_config(tmp_path, template=INPUT, **extra):
    (tmp_path / "rules.d").mkdir(exist_ok=True)
    (tmp_path / "rules.d" / "input.nft").write_text(template)
    config = {
        "table": "rnmt",
        "interfaces": [{"name": "wan0", "zone": "wan"}, {"name": "lan0", "zone": "lan"}],
        "sets": [{"name": "blocked_v4", "type": "ipv4_addr", "flags": ["interval", "timeout"]}],
        "rules": [str(tmp_path / "rules.d" / "input.nft")],
        "defines": {"stream_port": 5001},
    }
    config.update(extra)
    return config


def link(ns, ns2):
    """wan0 in ns <-> peer0 in ns2, 10.77.0.1/24 and 10.77.0.2/24 (and fd77::1/64, fd77::2/64)."""
    ns.ip("link", "add", "wan0", "type", "veth", "peer", "name", "peer0", "netns", ns2.name)
    ns.ip("link", "add", "lan0", "type", "veth", "peer", "name", "lanpeer0")
    for n, i in ((ns, "wan0"), (ns2, "peer0"), (ns, "lan0"), (ns, "lanpeer0")):
        n.ip("link", "set", i, "up")
    ns.ip("addr", "add", "10.77.0.1/24", "dev", "wan0")
    ns2.ip("addr", "add", "10.77.0.2/24", "dev", "peer0")
    ns.ip("addr", "add", "fd77::1/64", "dev", "wan0", "nodad")
    ns2.ip("addr", "add", "fd77::2/64", "dev", "peer0", "nodad")


def structure(ns, table="rnmt"):
    """The canonical structure listing (what rnmd's audit compares), or None without the table."""
    p = subprocess.run(ns.exec_args("nft", "-t", "-s", "list", "table", "inet", table), capture_output=True, text=True)
    return p.stdout if p.returncode == 0 else None


def table_json(ns, table="rnmt"):
    return ns.nft("-j", "list", "table", "inet", table)


def wait_until(predicate, timeout, step=0.005):
    """Polls; returns seconds taken, or None on timeout."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if predicate():
            return time.monotonic() - t0
        time.sleep(step)
    return None


def in_sync(ns, d, reference):
    """The table has the reference structure and the oracle's elements."""
    if structure(ns) != reference:
        return False
    from rnmtest import diff_sets, expected_sets
    stale, missing = diff_sets(expected_sets(ns, d.config), ns.table_sets(d.table))
    return not stale and not missing


def metrics(d):
    return d.ctl("metrics", check=True).stdout


# --- Templates and reload ---------------------------------------------------------------------------------

@pytest.mark.parametrize("bad, line, message", [
    ("\ttcp dport 22 acept\n", 9, "syntax error"),  # nft's parser
    ("\tip saddr @no_such_set drop\n", 9, "No such file or directory"),  # the kernel's refusal
])
def test_template_error_names_the_template_line_and_keeps_the_table_byte_for_byte(ns, ns2, daemons, tmp_path, bad, line, message):
    link(ns, ns2)
    d = daemons(ns, base_config(tmp_path))
    assert_converged(ns, d)
    before = table_json(ns)
    template = tmp_path / "rules.d" / "input.nft"
    good = template.read_text()
    template.write_text(good.replace("}\n", bad + "}\n"))
    r = d.ctl("reload")
    assert r.returncode == 1, r
    assert f"{template}:{line}:" in r.stderr and message in r.stderr, r.stderr
    assert "reload_failed" in r.stderr
    assert table_json(ns) == before
    # SIGHUP reports the same in the log; still nothing changes, and the running config still rules.
    d.signal(signal.SIGHUP)
    d.wait_for_log(f"{re.escape(str(template))}:{line}:")
    assert table_json(ns) == before
    ns.ip("addr", "add", "10.77.0.9/24", "dev", "wan0")
    assert_converged(ns, d)
    # --check says the same without a daemon, and touches nothing.
    c = subprocess.run(ns.exec_args(RNMD, "--check", "--config", d.config_path), capture_output=True, text=True)
    assert c.returncode == 1 and f"{template}:{line}:" in c.stderr, c.stderr
    template.write_text(good)
    assert d.ctl("reload").returncode == 0


def test_100_reloads_drop_no_connection_and_no_ping(ns, ns2, daemons, tmp_path):
    """Alternating two valid configs 100 times while a TCP stream and a ping cross into the namespace."""
    link(ns, ns2)
    config_a = base_config(tmp_path)
    d = daemons(ns, config_a)
    assert_converged(ns, d)
    (tmp_path / "rules.d" / "other.nft").write_text(INPUT.replace("ct state established,related accept",
                                                                 "ct state established,related accept\n\ttcp dport 9 drop"))
    config_b = dict(config_a, rules=[str(tmp_path / "rules.d" / "other.nft")], defines={"stream_port": 5001, "unused": 7})

    server = subprocess.Popen(ns.exec_args("python3", "-c", STREAM_SERVER), stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.3)
        client = subprocess.Popen(ns2.exec_args("python3", "-c", STREAM_CLIENT), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        ping = subprocess.Popen(ns2.exec_args("ping", "-n", "-q", "-i", "0.01", "-w", "120", "10.77.0.1"),
                                stdout=subprocess.PIPE, text=True)
        time.sleep(0.5)
        loads_before = d.count_log("table inet rnmt loaded")
        for i in range(100):
            d.write_config(config_b if i % 2 == 0 else config_a)
            r = d.ctl("reload")
            assert r.returncode == 0 and "generation" in r.stdout, r.stderr
        assert d.count_log("table inet rnmt loaded") == loads_before + 100
        time.sleep(0.5)
        ping.send_signal(signal.SIGINT)
        ping_out = ping.communicate(timeout=10)[0]
        client.send_signal(signal.SIGINT)
        out, err = client.communicate(timeout=10)
    finally:
        server.kill()
    sent, received = map(int, re.search(r"(\d+) packets transmitted, (\d+) received", ping_out).groups())
    assert sent > 100 and received == sent, ping_out
    result = json.loads(out.strip().splitlines()[-1])
    assert result["errors"] == 0 and result["round_trips"] > 100, (result, err)
    assert_converged(ns, d)


STREAM_SERVER = """
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 5001)); s.listen(1)
c, _ = s.accept()
while True:
    b = c.recv(65536)
    if not b: break
    c.sendall(b)
"""

STREAM_CLIENT = """
import json, signal, socket, sys, time
stop = False
def handler(*_):
    global stop; stop = True
signal.signal(signal.SIGINT, handler)
s = socket.create_connection(("10.77.0.1", 5001), timeout=5)
trips = errors = 0
payload = b"x" * 1000
while not stop:
    try:
        s.sendall(payload)
        got = 0
        while got < len(payload):
            b = s.recv(65536)
            if not b: raise ConnectionError("closed")
            got += len(b)
        trips += 1
    except InterruptedError:
        continue
    except Exception as e:
        errors += 1; print(repr(e), file=sys.stderr); break
    time.sleep(0.005)
print(json.dumps({"round_trips": trips, "errors": errors}))
"""


def test_1000_unchanged_reloads_cost_no_transaction(ns, ns2, daemons, tmp_path, monitor_factory):
    link(ns, ns2)
    d = daemons(ns, base_config(tmp_path))
    assert_converged(ns, d)
    mon = monitor_factory(ns)
    answers = d.request("".join(f'{{"id":{i},"cmd":"reload"}}\n' for i in range(1000)), timeout=60).splitlines()
    assert len(answers) == 1000
    assert all(json.loads(a)["result"]["changed"] is False for a in answers)
    for i in range(10):  # (signals sent while one is pending coalesce: one at a time)
        d.signal(signal.SIGHUP)
        d.wait_for_log("reload: config unchanged", count=1001 + i)
    time.sleep(0.3)
    assert mon.transactions(d.pid) == 0
    assert 'rnm_transactions_total{result="ok"} 1\n' in metrics(d)


# --- Drift ------------------------------------------------------------------------------------------------

def foreign_tables(ns):
    ns.nft("-f", "-", input="""table inet other {
	set keep { type ipv4_addr; elements = { 192.0.2.1 } }
	chain c { type filter hook input priority 10; policy accept; counter; }
}
table ip legacy { chain c { }; }
""")
    return ns.nft("-j", "-s", "list", "table", "inet", "other"), ns.nft("-j", "list", "table", "ip", "legacy")


@pytest.mark.parametrize("name, change, kind", [
    ("delete table", ["delete", "table", "inet", "rnmt"], "table"),
    ("flush set", ["flush", "set", "inet", "rnmt", "wan_v4"], "element"),
    ("foreign element", ["add", "element", "inet", "rnmt", "wan_v4", "{ 192.0.2.99 }"], "element"),
    ("deleted element", ["delete", "element", "inet", "rnmt", "wan_v4", "{ 10.77.0.1 }"], "element"),
    ("inserted rule", ["insert", "rule", "inet", "rnmt", "input", "tcp", "dport", "9999", "accept"], "rule"),
    ("deleted chain", ["delete", "chain", "inet", "rnmt", "input"], "chain"),
    ("deleted set", ["delete", "set", "inet", "rnmt", "lan_v6"], "set"),
])
def test_drift_is_repaired_within_a_second_and_foreign_tables_are_untouched(ns, ns2, daemons, tmp_path, monitor_factory, name, change, kind):
    link(ns, ns2)
    d = daemons(ns, base_config(tmp_path))
    assert_converged(ns, d)
    other, legacy = foreign_tables(ns)
    reference = structure(ns)
    mon = monitor_factory(ns)
    if name == "deleted chain":
        # A chain with rules cannot be deleted by itself; flush it in the same transaction.
        ns.nft("-f", "-", input="flush chain inet rnmt input\ndelete chain inet rnmt input\n")
    else:
        ns.nft(*change)
    took = wait_until(lambda: in_sync(ns, d, reference), 1.0)
    assert took is not None, f"{name}: not repaired within 1 s\n{d.log_tail()}"
    assert f'rnm_drift_total{{kind="{kind}"}} 1' in metrics(d), metrics(d)
    d.wait_for_log("repaired")
    assert ns.nft("-j", "-s", "list", "table", "inet", "other") == other
    assert ns.nft("-j", "list", "table", "ip", "legacy") == legacy
    # rnmd's own transactions never named another table.
    assert mon.transactions(d.pid) >= 1
    assert not [l for l in mon.lines if " other " in l or " legacy " in l]


def test_flush_ruleset_50_times_is_repaired_within_a_second_each(ns, ns2, daemons, tmp_path):
    link(ns, ns2)
    d = daemons(ns, base_config(tmp_path))
    assert_converged(ns, d)
    reference = structure(ns)
    times = []
    for i in range(50):
        if i % 2:
            ns.nft("flush", "ruleset")
        else:
            # What `systemctl reload nftables` runs: a script that starts with flush ruleset.
            ns.nft("-f", "-", input="flush ruleset\ntable inet filter {\n\tchain input { type filter hook input priority 0; }\n}\n")
        took = wait_until(lambda: in_sync(ns, d, reference), 1.0)
        assert took is not None, f"flush {i}: not repaired within 1 s\n{d.log_tail()}"
        times.append(took)
        if i % 2 == 0:
            assert "chain input" in ns.nft("list", "table", "inet", "filter")  # theirs, left alone
    assert 'rnm_drift_total{kind="table"} 50' in metrics(d)
    print(f"repair after flush ruleset: max {max(times) * 1000:.0f} ms")


def test_lost_notifications_are_caught_by_the_audit(ns, ns2, daemons, tmp_path):
    """One foreign transaction adds 50,000 elements to a foreign set and, at its end, inserts a rule into our
    table: its notifications overflow rnmd's watcher (given the smallest buffer, 4 KiB), so the rule's own notification
    is lost. rnmd learns
    that notifications were lost (ENOBUFS), audits the table and repairs it."""
    link(ns, ns2)
    d = daemons(ns, base_config(tmp_path), extra_args=["--nft-buffer", "4096"])
    assert_converged(ns, d)
    reference = structure(ns)
    elements = ",\n".join(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(50_000))
    script = (f"table inet other {{\n\tset big {{\n\t\ttype ipv4_addr\n\t\telements = {{ {elements} }}\n\t}}\n}}\n"
              "insert rule inet rnmt input tcp dport 9999 accept\n")
    ns.nft("-f", "-", input=script)
    took = wait_until(lambda: in_sync(ns, d, reference), 5.0)
    assert took is not None, d.log_tail()
    m = metrics(d)
    assert int(re.search(r"^rnm_nft_notifications_lost_total (\d+)$", m, re.M).group(1)) >= 1, m
    assert 'rnm_drift_total{kind="structure"} 1' in m, m
    assert "found by the audit" in d.log_text()
    assert len(ns.nft("list", "set", "inet", "other", "big").splitlines()) > 100  # theirs, untouched


def test_periodic_audit_finds_nothing_when_nothing_changed(ns, ns2, daemons, tmp_path):
    """The audit compares nft's canonical listing and the element read-back with what was committed: with
    nothing changed it must find nothing (a false positive would reload the table every audit)."""
    link(ns, ns2)
    d = daemons(ns, base_config(tmp_path, audit_interval="1s"))
    assert_converged(ns, d)
    d.ctl("set", "add", "blocked_v4", "192.0.2.0/24", "198.51.100.7", "timeout", "1h", check=True)
    time.sleep(3.5)
    m = metrics(d)
    assert int(re.search(r"^rnm_audits_total (\d+)$", m, re.M).group(1)) >= 3, m
    assert "rnm_table_loads_total 1\n" in m, m
    assert all(re.search(rf'^rnm_drift_total{{kind="{k}"}} 0$', m, re.M) for k in ("table", "structure", "element")), m


def test_report_mode_and_plan_show_exactly_the_injected_difference(ns, ns2, daemons, tmp_path):
    link(ns, ns2)
    d = daemons(ns, base_config(tmp_path, drift="report"))
    assert_converged(ns, d)
    r = d.ctl("plan", "--exit-code")
    assert r.returncode == 0 and r.stdout == "table inet rnmt: in sync\n", r
    ns.nft("insert", "rule", "inet", "rnmt", "input", "tcp", "dport", "9999", "drop")
    ns.nft("add", "element", "inet", "rnmt", "wan_v4", "{ 192.0.2.99 }")
    d.wait_for_log("reporting only", count=2)
    r = d.ctl("plan", "--exit-code")
    assert r.returncode == 4, r
    assert r.stdout == ("table inet rnmt: 0 to add, 2 to remove\n"
                        "  chain input\n"
                        "  -   tcp dport 9999 drop\n"
                        "  set wan_v4\n"
                        "  -   192.0.2.99\n"), r.stdout
    plan = json.loads(d.ctl("--json", "plan").stdout)["result"]
    assert plan["structure"] == [{"op": "-", "object": "chain input", "text": "tcp dport 9999 drop"}]
    assert plan["elements"] == [{"op": "-", "object": "set wan_v4", "text": "192.0.2.99"}]
    assert not plan["in_sync"] and not plan["config_changed"]
    assert 'rnm_drift_total{kind="rule"} 1' in metrics(d)
    # A config change on disk shows up too, and a reload applies all of it.
    template = tmp_path / "rules.d" / "input.nft"
    template.write_text(template.read_text().replace("}\n", "\ttcp dport 8443 accept\n}\n"))
    plan = json.loads(d.ctl("--json", "plan").stdout)["result"]
    assert plan["config_changed"]
    assert {"op": "+", "object": "chain input", "text": "tcp dport 8443 accept"} in plan["structure"]
    assert len(plan["structure"]) == 2
    assert d.ctl("reload").returncode == 0
    r = d.ctl("plan")
    assert r.stdout == "table inet rnmt: in sync\n", r.stdout


def test_template_sets_and_elements_are_left_to_the_template(ns, ns2, daemons, tmp_path):
    """A template may declare its own sets; element transactions never touch them, and changing their
    elements by hand is drift like any other (repaired by a whole-table load)."""
    link(ns, ns2)
    template = INPUT + "set trusted {\n\ttype ipv4_addr\n\telements = { 192.0.2.10 }\n}\n"
    d = daemons(ns, base_config(tmp_path, template=template))
    assert_converged(ns, d, template_sets=["trusted"])
    ns.nft("add", "element", "inet", "rnmt", "trusted", "{ 192.0.2.11 }")
    took = wait_until(lambda: "192.0.2.11" not in ns.nft("list", "set", "inet", "rnmt", "trusted"), 1.0)
    assert took is not None, d.log_tail()
    assert "192.0.2.10" in ns.nft("list", "set", "inet", "rnmt", "trusted")
    # Our own address changes do not disturb it.
    ns.ip("addr", "add", "10.77.0.5/24", "dev", "wan0")
    assert_converged(ns, d, template_sets=["trusted"])
    assert "192.0.2.10" in ns.nft("list", "set", "inet", "rnmt", "trusted")


# --- check and render -------------------------------------------------------------------------------------

def test_render_prints_exactly_what_is_loaded(ns, ns2, daemons, tmp_path):
    link(ns, ns2)
    d = daemons(ns, base_config(tmp_path))
    assert_converged(ns, d)
    d.ctl("set", "add", "blocked_v4", "192.0.2.0/24", check=True)
    assert_converged(ns, d)
    text = ns.sh(RNMD, "--render", "--config", d.config_path)
    assert 'define wan_ifaces = { "wan0" }' in text and "10.77.0.1," in text and "192.0.2.0/24," in text
    # Loaded into an empty namespace, the text gives the same table (sets, elements, chains, rules).
    scratch = NetNS()
    try:
        scratch.nft("-f", "-", input=text)
        strip = lambda s: re.sub(r" expires [0-9hms]+", "", re.sub(r" timeout [0-9hms]+", "", s))
        assert strip(scratch.nft("-s", "list", "table", "inet", "rnmt")) == strip(ns.nft("-s", "list", "table", "inet", "rnmt"))
    finally:
        scratch.close()


def test_check_dry_runs_the_rendered_table_without_changing_anything(ns, tmp_path):
    config = base_config(tmp_path)
    path = tmp_path / "config.yaml"
    path.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in config.items()))
    r = subprocess.run(ns.exec_args(RNMD, "--check", "--config", str(path)), capture_output=True, text=True)
    assert r.returncode == 0 and "nft dry run: the kernel accepts the table" in r.stdout, r
    assert ns.nft("list", "ruleset").strip() == ""


def test_check_dry_runs_masquerade_and_forwards_of_every_shape(ns):
    """Tests/RNMConfigTests/Fixtures/router.yaml: the shipped templates with the NAT chains rnmd generates
    (shifted port and range, UDP, IPv6, hairpin); the kernel must accept the rendered table."""
    path = os.path.join(ROOT, "Tests", "RNMConfigTests", "Fixtures", "router.yaml")
    r = subprocess.run(ns.exec_args(RNMD, "--check", "--config", path), capture_output=True, text=True)
    assert r.returncode == 0 and "nft dry run: the kernel accepts the table" in r.stdout, r
    assert ns.nft("list", "ruleset").strip() == ""


# --- The shipped policy -----------------------------------------------------------------------------------

def test_shipped_router_policy(ns, ns2, daemons, tmp_path):
    """pkg-files/config: the default config and rules.d on a router between a wan peer (ns2) and a lan peer."""
    lan = NetNS()
    try:
        ns.ip("link", "add", "eth0", "type", "veth", "peer", "name", "up0", "netns", ns2.name)
        ns.ip("link", "add", "eth1", "type", "veth", "peer", "name", "down0", "netns", lan.name)
        for n, i in ((ns, "eth0"), (ns, "eth1"), (ns2, "up0"), (lan, "down0")):
            n.ip("link", "set", i, "up")
        ns.ip("addr", "add", "203.0.113.1/24", "dev", "eth0")
        ns.ip("addr", "add", "2001:db8:1::1/64", "dev", "eth0", "nodad")
        ns.ip("addr", "add", "192.168.1.1/24", "dev", "eth1")
        ns2.ip("addr", "add", "203.0.113.2/24", "dev", "up0")
        ns2.ip("addr", "add", "2001:db8:1::2/64", "dev", "up0", "nodad")
        lan.ip("addr", "add", "192.168.1.2/24", "dev", "down0")
        lan.ip("route", "add", "default", "via", "192.168.1.1")
        ns.sh("sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        shutil.copytree(os.path.join(ROOT, "pkg-files", "config", "rules.d"), tmp_path / "rules.d")
        config = yaml_config_from(os.path.join(ROOT, "pkg-files", "config", "default.yaml"), tmp_path)
        # The default has no forwards; one exercises rnm_forward (router.nft jumps to it) and hairpin NAT.
        assert "forwards" not in config and config["masquerade"] == [{"from": "lan", "to": "wan"}]
        config["forwards"] = [{"zone": "wan", "proto": "tcp", "port": 8080, "to": "192.168.1.2", "to_port": 8081,
                               "hairpin": True}]
        d = daemons(ns, config)
        assert_converged(ns, d)
        listen = []
        for port in (22, 80):
            listen.append(subprocess.Popen(ns.exec_args("python3", "-c", LISTENER % port)))
        listen.append(subprocess.Popen(ns2.exec_args("python3", "-c", LISTENER % 8080)))
        listen.append(subprocess.Popen(lan.exec_args("python3", "-c", LISTENER % 8081)))
        time.sleep(0.5)
        try:
            assert can_connect(lan, "192.168.1.1", 80)  # lan zone is open
            assert can_connect(ns2, "203.0.113.1", 22)  # wan: SSH only
            assert not can_connect(ns2, "203.0.113.1", 80)
            assert ping(ns2, "203.0.113.1") and ping(lan, "192.168.1.1")
            assert ping(ns2, "2001:db8:1::1", v6=True)  # needs neighbour discovery through policy drop
            assert can_connect(lan, "203.0.113.2", 8080)  # forwarded out, masqueraded
            assert not can_connect(ns2, "192.168.1.2", 8081)  # nothing in from wan
            assert can_connect(ns2, "203.0.113.1", 8080)  # ... but the forward: DNAT, rnm_forward
            # Hairpin: lan's own host through the wan address. Without the masquerade of the reflected
            # connection it would see its own address as the source (a martian) and never answer.
            assert can_connect(lan, "203.0.113.1", 8080)
            d.ctl("set", "add", "blocklist_v4", "203.0.113.2", check=True)
            time.sleep(0.2)
            assert not ping(ns2, "203.0.113.1")
            assert not can_connect(ns2, "203.0.113.1", 22)
        finally:
            for p in listen:
                p.kill()
        # What was loaded is what the shipped files say: no drift, nothing to plan.
        r = d.ctl("plan")
        assert r.stdout == "table inet rnm: in sync\n", r.stdout
    finally:
        lan.close()


LISTENER = """
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("", %d)); s.listen(8)
while True:
    c, _ = s.accept(); c.close()
"""


def can_connect(ns, host, port):
    code = f"import socket; socket.create_connection(({host!r}, {port}), timeout=1).close()"
    return subprocess.run(ns.exec_args("python3", "-c", code), capture_output=True).returncode == 0


def ping(ns, host, v6=False):
    cmd = ["ping", "-6" if v6 else "-4", "-n", "-c", "1", "-W", "1", host]
    return subprocess.run(ns.exec_args(*cmd), capture_output=True).returncode == 0


def yaml_config_from(path, tmp_path):
    """The shipped config as a dict (via rnmd's own reading: --render would need addresses; a tiny parser
    for its simple layout is enough), with the templates copied next to the daemon's config."""
    import yaml  # python3-yaml
    config = yaml.safe_load(open(path))
    config["rules"] = [str(tmp_path / r) for r in config["rules"]]
    config.pop("control", None)
    config.pop("state_dir", None)
    return config
