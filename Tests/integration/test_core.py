"""The core loop against the real kernel: addresses on zone interfaces → zone sets, one transaction per change.
Each test runs rnmd in its own network namespace and ends with the convergence oracle."""
import ipaddress
import json
import signal
import time

import pytest
from rnmtest import assert_converged, run, RNMD

BASE = {
    "table": "rnmt",
    "interfaces": [
        {"name": "wan0", "zone": "wan", "dhcp": True},
        {"name": "lan0", "zone": "lan"},
        {"name": "lan1", "zone": "lan"},
    ],
}


def setup_links(ns, names=("wan0", "lan0", "lan1")):
    for i, n in enumerate(names):
        ns.veth(n, f"peer{i}")


def test_v4_and_v6_add_and_delete(ns, daemons):
    setup_links(ns)
    d = daemons(ns, BASE)
    assert_converged(ns, d)
    ns.ip("addr", "add", "198.51.100.7/24", "dev", "wan0")
    ns.ip("addr", "add", "2001:db8:1::7/64", "dev", "wan0", "nodad")
    ns.ip("addr", "add", "192.168.1.1/24", "dev", "lan0")
    ns.ip("addr", "add", "192.168.1.1/24", "dev", "lan1")  # the same address on two lan interfaces
    ns.ip("addr", "add", "fd00::1/64", "dev", "lan1", "nodad")
    want = assert_converged(ns, d)
    assert want["wan_v4"] == {"198.51.100.7"} and want["wan_v6"] == {"2001:db8:1::7"}
    assert want["lan_v4"] == {"192.168.1.1"} and want["lan_v6"] == {"fd00::1"}
    ns.ip("addr", "del", "192.168.1.1/24", "dev", "lan0")  # still on lan1: must stay
    assert_converged(ns, d)
    assert "192.168.1.1" in ns.table_sets("rnmt")["lan_v4"]
    ns.ip("addr", "del", "198.51.100.7/24", "dev", "wan0")
    ns.ip("addr", "del", "2001:db8:1::7/64", "dev", "wan0")
    want = assert_converged(ns, d)
    assert want["wan_v4"] == set() and want["wan_v6"] == set()
    assert ns.table_sets("rnmt")["lan_ifaces"] == {"lan0", "lan1"}


def test_ipv6_dad_tentative_is_not_published_and_dadfailed_never(ns, ns2, daemons):
    # wan0 (ours) <-> far0 in a second namespace that already owns 2001:db8::bad.
    ns.ip("link", "add", "wan0", "type", "veth", "peer", "name", "far0")
    ns.ip("link", "set", "far0", "netns", ns2.name)
    ns.ip("link", "set", "wan0", "up")
    ns2.ip("link", "set", "far0", "up")
    ns2.ip("addr", "add", "2001:db8::bad/64", "dev", "far0", "nodad")
    ns.sh("sysctl", "-q", "-w", "net.ipv6.conf.wan0.dad_transmits=3")
    d = daemons(ns, BASE)
    ns.ip("addr", "add", "2001:db8::900d/64", "dev", "wan0")
    ns.ip("addr", "add", "2001:db8::bad/64", "dev", "wan0")
    # While DAD runs (3 probes, ~3 s), the address is tentative and must not be in the set.
    seen_tentative = 0
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        # The set first, then the addresses: if the address is still tentative now, it was when the set was
        # read (DAD only ever ends), so the set must not have had it.
        sets = ns.table_sets("rnmt")
        infos = {a["local"]: a for a in ns.addresses()["wan0"]}
        good = infos.get("2001:db8::900d")
        if good and good.get("tentative"):
            seen_tentative += 1
            assert "2001:db8::900d" not in sets["wan_v6"], "tentative address published"
        assert "2001:db8::bad" not in sets["wan_v6"], "duplicate address published"
        if good and not good.get("tentative"):
            break
        time.sleep(0.05)
    assert seen_tentative > 0, f"never observed the tentative phase: {ns.addresses()['wan0']}"
    want = assert_converged(ns, d)
    assert want["wan_v6"] == {"2001:db8::900d"}
    deadline = time.monotonic() + 8
    while not (bad := {a["local"]: a for a in ns.addresses()["wan0"]}["2001:db8::bad"]).get("dadfailed"):
        assert time.monotonic() < deadline, f"DAD never failed: {bad}"
        time.sleep(0.1)
    assert "2001:db8::bad" not in ns.table_sets("rnmt")["wan_v6"]


def test_1000_link_flaps_converge_and_v4_only_flaps_cost_no_transaction(ns, daemons, monitor_factory):
    setup_links(ns)
    ns.ip("addr", "add", "198.51.100.7/24", "dev", "wan0")
    ns.ip("addr", "add", "192.168.1.1/24", "dev", "lan0")
    d = daemons(ns, BASE)
    assert_converged(ns, d)
    mon = monitor_factory(ns)
    ns.ip_batch(["link set wan0 down", "link set wan0 up"] * 1000)
    assert_converged(ns, d)
    time.sleep(0.5)
    assert mon.transactions(d.pid) == 0, "IPv4 addresses survive link flaps: nothing to commit"
    # With IPv6 (flushed on link down), flaps churn; the end state must still be exact.
    ns.ip("addr", "add", "2001:db8:1::7/64", "dev", "wan0", "nodad")
    ns.ip("addr", "add", "fd00::1/64", "dev", "lan0", "nodad")
    lines = []
    for i in range(1000):
        lines += ["link set wan0 down", "link set wan0 up"]
        if i % 10 == 0:
            lines += [f"addr add 2001:db8:2::{i:x}/64 dev wan0 nodad"]
    ns.ip_batch(lines)
    assert_converged(ns, d)
    d.assert_alive()


def test_rename_with_addresses_moves_them_in_one_transaction(ns, daemons, monitor_factory):
    setup_links(ns)
    ns.ip("addr", "add", "198.51.100.7/24", "dev", "wan0")
    ns.ip("addr", "add", "10.0.0.5/24", "dev", "wan0")
    d = daemons(ns, BASE)
    assert_converged(ns, d)
    ns.ip("link", "del", "lan1")
    ns.ip("link", "set", "wan0", "down")
    mon = monitor_factory(ns)
    ns.ip("link", "set", "wan0", "name", "lan1")  # wan0 becomes lan1: its v4 addresses move from wan to lan
    want = assert_converged(ns, d)
    assert want["wan_v4"] == set() and want["lan_v4"] == {"198.51.100.7", "10.0.0.5"}
    time.sleep(0.3)
    assert mon.transactions(d.pid) == 1


def test_500_delete_and_recreate_cycles_leave_nothing_behind(ns, daemons):
    d = daemons(ns, BASE)
    lines = []
    for i in range(500):
        lines += [
            "link add wan0 type veth peer name p0",
            "link set wan0 up",
            f"addr add 198.51.{i // 250}.{i % 250 + 1}/24 dev wan0",
            f"addr add 2001:db8::{i:x}/64 dev wan0 nodad",
            "link del wan0",
        ]
    ns.ip_batch(lines)
    want = assert_converged(ns, d)
    assert want["wan_v4"] == set() and want["wan_v6"] == set()
    # And the last incarnation stays tracked.
    ns.veth("wan0", "p0")
    ns.ip("addr", "add", "198.51.100.99/24", "dev", "wan0")
    assert assert_converged(ns, d)["wan_v4"] == {"198.51.100.99"}


def test_interface_absent_at_start_is_picked_up_when_created(ns, daemons):
    d = daemons(ns, BASE)  # none of the configured interfaces exists
    assert assert_converged(ns, d)["wan_ifaces"] == {"wan0"}
    assert "interface wan0 (zone wan) is not present; waiting for it" in d.log_text()
    ns.veth("wan0", "p0")
    ns.ip("addr", "add", "203.0.113.5/24", "dev", "wan0")
    assert assert_converged(ns, d)["wan_v4"] == {"203.0.113.5"}


@pytest.mark.parametrize("deprecated", [True, False])
def test_short_lifetimes_deprecate_then_expire(ns, daemons, deprecated):
    setup_links(ns)
    config = dict(BASE, address_policy={"deprecated": deprecated})
    d = daemons(ns, config)
    ns.ip("addr", "add", "2001:db8:5::1/64", "dev", "wan0", "nodad", "valid_lft", "3", "preferred_lft", "1")
    ns.ip("addr", "add", "198.51.100.50/24", "dev", "wan0", "valid_lft", "3", "preferred_lft", "1")
    assert assert_converged(ns, d)["wan_v6"] == {"2001:db8:5::1"}
    # Preferred lifetime over: the kernel marks it deprecated (its lifetime timer runs with some slack).
    deadline = time.monotonic() + 6
    while not {a["local"]: a for a in ns.addresses()["wan0"]}["2001:db8:5::1"].get("deprecated"):
        assert time.monotonic() < deadline, "the kernel never deprecated the address"
        time.sleep(0.1)
    want = assert_converged(ns, d)
    assert ("2001:db8:5::1" in want["wan_v6"]) == deprecated
    deadline = time.monotonic() + 10
    while any(a["local"] in ("2001:db8:5::1", "198.51.100.50") for a in ns.addresses()["wan0"]):
        assert time.monotonic() < deadline, "the kernel never expired the addresses"
        time.sleep(0.2)
    want = assert_converged(ns, d)
    assert want["wan_v6"] == set() and want["wan_v4"] == set()


def test_forced_overrun_resyncs_once_and_converges(ns, daemons):
    setup_links(ns)
    # A small receive buffer makes the overflow certain ("forced"); the default is 4 MiB.
    d = daemons(ns, BASE, extra_args=["--netlink-buffer", "65536"])
    d.signal(signal.SIGSTOP)
    lines = []
    for i in range(2500):
        a = f"10.{i // 250}.{i % 250}.1/32"
        lines += [f"addr add {a} dev wan0", f"addr del {a} dev wan0"] if i % 2 else [f"addr add {a} dev lan0"]
    ns.ip_batch(lines[:5000])
    d.signal(signal.SIGCONT)
    d.wait_for_log("netlink overrun", timeout=10)
    want = assert_converged(ns, d)
    assert len(want["lan_v4"]) == 1250
    time.sleep(0.5)
    assert d.count_log("netlink overrun") == 1, "one overflow, one resync"


def test_foreign_tables_are_never_touched(ns, daemons):
    setup_links(ns)
    ns.nft("-f", "-", input="""
        table inet rnmt_neighbour {
            set wan_v4 { type ipv4_addr; elements = { 192.0.2.1 }; }
            chain c { type filter hook input priority 0; ip saddr @wan_v4 counter; }
        }
        table ip filter { chain INPUT { type filter hook input priority 0; policy accept; }; }
    """)
    before = {t: ns.nft("-j", "list", "table", *t.split()) for t in ("inet rnmt_neighbour", "ip filter")}
    d = daemons(ns, BASE)
    for i in range(50):
        ns.ip("addr", "add", f"198.51.100.{i + 1}/24", "dev", "wan0")
    ns.ip("addr", "flush", "dev", "wan0")
    assert_converged(ns, d)
    d.signal(signal.SIGHUP)
    d.wait_for_log("reload: config unchanged")
    code, _ = d.stop()
    assert code == 0
    after = {t: ns.nft("-j", "list", "table", *t.split()) for t in ("inet rnmt_neighbour", "ip filter")}
    assert after == before


def test_renews_and_identical_replays_cost_zero_transactions(ns, daemons, monitor_factory):
    setup_links(ns)
    ns.ip("addr", "add", "198.51.100.7/24", "dev", "wan0", "valid_lft", "3600", "preferred_lft", "3600")
    ns.ip("addr", "add", "2001:db8:1::7/64", "dev", "wan0", "nodad", "valid_lft", "3600", "preferred_lft", "3600")
    d = daemons(ns, BASE, extra_args=["--netlink-buffer", "65536"])
    assert_converged(ns, d)
    mon = monitor_factory(ns)
    lines = []
    for i in range(1000):
        # A DHCP renew: the same address, new lifetimes (RTM_NEWADDR each time).
        lines.append(f"addr replace 198.51.100.7/24 dev wan0 valid_lft {3600 - i} preferred_lft {3000 - i}")
        lines.append(f"addr replace 2001:db8:1::7/64 dev wan0 nodad valid_lft {3600 - i} preferred_lft {3000 - i}")
    ns.ip_batch(lines)
    # A replayed dump: an overrun (small buffer) whose net effect is nothing. The notifications still queued
    # from before the overflow (adds whose deletes were dropped) must not leak into the sets.
    d.signal(signal.SIGSTOP)
    ns.ip_batch([f"addr add 10.99.{i // 250}.{i % 250}/32 dev lan0" for i in range(3000)]
                + [f"addr del 10.99.{i // 250}.{i % 250}/32 dev lan0" for i in range(3000)])
    d.signal(signal.SIGCONT)
    d.wait_for_log("netlink overrun")
    assert_converged(ns, d)
    time.sleep(1.0)
    assert mon.transactions(d.pid) == 0
    # The monitor does see our transactions: one real change, one transaction.
    ns.ip("addr", "add", "198.51.100.8/24", "dev", "wan0")
    assert_converged(ns, d)
    assert mon.wait_for(lambda ls: mon.transactions(d.pid) == 1, 3)


def test_restart_after_kill9_converges_without_duplicates(ns, daemons):
    setup_links(ns)
    ns.ip("addr", "add", "198.51.100.7/24", "dev", "wan0")
    d = daemons(ns, BASE)
    assert_converged(ns, d)
    d.kill9()
    assert ns.table_sets("rnmt")["wan_v4"] == {"198.51.100.7"}, "fail-static: the table stays"
    ns.ip("addr", "del", "198.51.100.7/24", "dev", "wan0")
    ns.ip("addr", "add", "198.51.100.8/24", "dev", "wan0")
    d.start()
    want = assert_converged(ns, d)
    assert want["wan_v4"] == {"198.51.100.8"}
    listing = ns.nft("list", "set", "inet", "rnmt", "wan_v4")
    assert listing.count("198.51.100.8") == 1


def test_sigterm_exits_cleanly_within_2s_and_leaves_the_table(ns, daemons):
    setup_links(ns)
    d = daemons(ns, BASE)
    ns.ip("addr", "add", "198.51.100.7/24", "dev", "wan0")
    assert_converged(ns, d)
    # During a storm, too.
    storm = ns.exec_args("ip", "-force", "-batch", "-")
    import subprocess
    p = subprocess.Popen(storm, stdin=subprocess.PIPE, text=True)
    p.stdin.write("\n".join(f"addr add 10.1.{i // 250}.{i % 250}/32 dev lan0" for i in range(20000)) + "\n")
    p.stdin.close()
    time.sleep(0.2)
    code, took = d.stop(timeout=2)
    p.wait()
    assert code == 0
    assert took < 2.0, f"took {took:.2f}s"
    assert "198.51.100.7" in ns.table_sets("rnmt")["wan_v4"]
    assert "left as last committed" in d.log_text()


def test_sighup_reload_is_all_or_nothing(ns, daemons, monitor_factory):
    setup_links(ns)
    ns.ip("addr", "add", "198.51.100.7/24", "dev", "wan0")
    ns.ip("addr", "add", "192.168.1.1/24", "dev", "lan0")
    d = daemons(ns, BASE)
    assert_converged(ns, d)
    before = ns.table_sets("rnmt")
    # A bad file: the error names file, line and column; nothing changes; the daemon keeps running.
    d.write_config(text="table: rnmt\ninterfaces:\n  - name: wan0\n    zone: WAN\n")
    d.signal(signal.SIGHUP)
    d.wait_for_log("reload failed")
    assert f"{d.config_path}:4:11: interfaces[0].zone:" in d.log_text()
    assert ns.table_sets("rnmt") == before
    # A good one: lan0 moves to a new dmz zone; one transaction.
    mon = monitor_factory(ns)
    new = {"table": "rnmt", "interfaces": [
        {"name": "wan0", "zone": "wan"}, {"name": "lan0", "zone": "dmz"}, {"name": "lan1", "zone": "lan"}]}
    d.write_config(new)
    d.signal(signal.SIGHUP)
    d.wait_for_log("reload: new config")
    want = assert_converged(ns, d)
    assert want["dmz_v4"] == {"192.168.1.1"} and want["lan_v4"] == set()
    time.sleep(0.3)
    assert mon.transactions(d.pid) == 1
    # An unchanged file: no transaction.
    for i in range(20):
        d.signal(signal.SIGHUP)  # one at a time: pending signals of one kind merge
        d.wait_for_log("reload: config unchanged", count=i + 1)
    time.sleep(0.3)
    assert mon.transactions(d.pid) == 1


def test_table_rename_on_reload_moves_everything(ns, daemons):
    setup_links(ns)
    ns.ip("addr", "add", "198.51.100.7/24", "dev", "wan0")
    d = daemons(ns, BASE)
    assert_converged(ns, d)
    d.write_config(dict(BASE, table="rnmt2"))
    d.table = "rnmt2"
    d.signal(signal.SIGHUP)
    assert assert_converged(ns, d)["wan_v4"] == {"198.51.100.7"}
    assert ns.table_sets("rnmt") is None


def test_stale_table_content_from_an_older_run_is_converged(ns, daemons):
    setup_links(ns)
    ns.ip("addr", "add", "198.51.100.7/24", "dev", "wan0")
    ns.nft("-f", "-", input="""
        table inet rnmt {
            set wan_v4 { type ipv4_addr; elements = { 203.0.113.66, 198.51.100.7 } }
            set wan_v6 { type ipv4_addr; }
            set gone_v4 { type ipv4_addr; elements = { 192.0.2.1 } }
        }
    """)
    d = daemons(ns, BASE)
    assert_converged(ns, d)
    assert "gone_v4" not in ns.table_sets("rnmt")
    assert '"type": "ipv6_addr"' in ns.nft("-j", "list", "set", "inet", "rnmt", "wan_v6").replace('":"', '": "')


def test_logs_carry_syslog_priorities_when_not_a_tty(ns, daemons):
    d = daemons(ns, BASE)
    lines = [l for l in d.log_text().splitlines() if l]
    assert lines and all(l[0] == "<" and l[2] == ">" and l[1] in "01234567" for l in lines), lines[:5]
    assert any(l.startswith("<5>rnmd ") and "starting" in l for l in lines)


def test_check_validates_without_touching_the_kernel(ns, tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("interfaces:\n  - name: eth0\n    zone: wan\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("interfaces:\n  - name: eth0\n    zone: wan\n    speed: 9000\n")
    p = ns.sh(RNMD, "--check", "--config", str(good))
    assert "OK" in p
    import subprocess
    r = subprocess.run(ns.exec_args(RNMD, "--check", "--config", str(bad)), capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr.strip() == f"{bad}:4:5: interfaces[0].speed: unknown key `speed` (known: name, zone, dhcp, addresses, exclusive, up, mtu)"
    assert ns.nft("list", "ruleset").strip() == ""
    v = subprocess.run([RNMD, "--version"], capture_output=True, text=True)
    assert v.returncode == 0 and v.stdout.strip() == open(__file__.rsplit("/Tests/", 1)[0] + "/VERSION").read().strip()


def test_invalid_config_at_start_exits_1_with_the_position(ns, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("interfaces:\n  - name: eth0\n    zone: [wan]\n")
    import subprocess
    r = subprocess.run(ns.exec_args(RNMD, "--config", str(bad)), capture_output=True, text=True, timeout=10)
    assert r.returncode == 1
    assert f"{bad}:3:11: interfaces[0].zone: expected a string, got a list" in r.stderr
    assert ns.nft("list", "ruleset").strip() == ""


def test_commit_refused_by_the_kernel_keeps_the_old_state_and_is_retried(ns, daemons):
    """NFT-01: a transaction the kernel refuses changes nothing; rnmd logs the cause, reads back, retries.
    (With `drift: report` a foreign deletion is only reported, so rnmd's next delete of it is refused.)"""
    setup_links(ns)
    a, b = "198.51.100.7", "198.51.100.8"
    ns.ip("addr", "add", f"{a}/32", "dev", "wan0")  # /32: deleting a primary /24 would take its secondaries
    ns.ip("addr", "add", f"{b}/32", "dev", "wan0")
    d = daemons(ns, dict(BASE, drift="report"))
    assert_converged(ns, d)
    # Someone deletes one of our elements behind our back; then the address really goes away, so rnmd's
    # delete of that element is refused (ENOENT) and the whole transaction with it.
    ns.nft("delete", "element", "inet", "rnmt", "wan_v4", f"{{ {a} }}")
    d.wait_for_log("reporting only")
    ns.ip_batch([f"addr del {a}/32 dev wan0", "addr add 198.51.100.9/32 dev wan0"])
    want = assert_converged(ns, d)
    assert want["wan_v4"] == {b, "198.51.100.9"}
    log = d.log_text()
    failure = [l for l in log.splitlines() if "transaction failed" in l]
    assert failure, log
    assert "remove 1 element from wan_v4" in failure[0] and "(ENOENT)" in failure[0], failure[0]


def test_200_interfaces_with_2_addresses_each_appear_and_vanish(ns, daemons):
    """NL-12: 200 interfaces × 2 addresses created in one burst, then deleted: converged, memory bounded."""
    config = {"table": "rnmt", "interfaces": [{"name": f"x{i}", "zone": f"z{i % 4}"} for i in range(200)]}
    d = daemons(ns, config)
    rss0 = int(open(f"/proc/{d.pid}/status").read().split("VmRSS:")[1].split()[0])
    lines = []
    for i in range(100):
        lines += [f"link add x{2 * i} type veth peer name x{2 * i + 1}"]
    for i in range(200):
        lines += [f"link set x{i} up", f"addr add 10.{i}.0.1/24 dev x{i}", f"addr add fd00:{i:x}::1/64 dev x{i} nodad"]
    t0 = time.monotonic()
    ns.ip_batch(lines)
    assert time.monotonic() - t0 < 5
    want = assert_converged(ns, d)
    assert sum(len(want[f"z{z}_v4"]) for z in range(4)) == 200
    assert sum(len(want[f"z{z}_v6"]) for z in range(4)) == 200
    ns.ip_batch([f"link del x{2 * i}" for i in range(100)])
    want = assert_converged(ns, d)
    assert all(not want[f"z{z}_v4"] and not want[f"z{z}_v6"] for z in range(4))
    rss1 = int(open(f"/proc/{d.pid}/status").read().split("VmRSS:")[1].split()[0])
    assert rss1 - rss0 < 8 * 1024, f"RSS grew by {rss1 - rss0} KiB"
