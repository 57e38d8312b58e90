"""The control socket and rnmctl against a real daemon in a namespace: every verb, manual entries with kernel
timeouts and persistence, permissions from SO_PEERCRED, and abuse. Each test ends with the convergence oracle
where sets are involved."""
import json
import os
import random
import signal
import socket
import subprocess
import time

import pytest
from rnmtest import RNMCTL, RNMD, assert_converged, run

CONTROL_GID = 4300
BASE = {
    "table": "rnmc",
    "interfaces": [{"name": "wan0", "zone": "wan"}, {"name": "lan0", "zone": "lan"}],
    "sets": [
        {"name": "block_v4", "type": "ipv4_addr", "flags": ["interval", "timeout"]},
        {"name": "ban_v4", "type": "ipv4_addr", "flags": ["timeout"], "timeout": "1h"},
        {"name": "allow_v6", "type": "ipv6_addr", "elements": ["2001:db8::1"]},
    ],
}


def make_links(ns):
    ns.veth("wan0", "p0")
    ns.veth("lan0", "p1")
    ns.ip("addr", "add", "198.51.100.7/24", "dev", "wan0")


def kernel_elements(ns, table, name):
    """The set as nft lists it: {element text: timeout-or-None} (intervals as CIDR/ranges like nft prints)."""
    data = json.loads(ns.nft("-j", "list", "set", "inet", table, name))
    out = {}
    for obj in data["nftables"]:
        s = obj.get("set")
        if not s:
            continue
        for e in s.get("elem", []):
            timeout = None
            if isinstance(e, dict) and "elem" in e:
                timeout = e["elem"].get("timeout")
                e = e["elem"]["val"]
            if isinstance(e, dict) and "prefix" in e:
                e = f"{e['prefix']['addr']}/{e['prefix']['len']}"
            elif isinstance(e, dict) and "range" in e:
                e = f"{e['range'][0]}-{e['range'][1]}"
            out[str(e)] = timeout
    return out


def in_set(ns, table, name, addr):
    return subprocess.run(ns.exec_args("nft", "get", "element", "inet", table, name, f"{{ {addr} }}"),
                          capture_output=True).returncode == 0


def test_every_verb_round_trips_in_text_and_json(ns, daemons):
    make_links(ns)
    d = daemons(ns, BASE)
    assert_converged(ns, d)
    p = d.ctl("ping", check=True)
    assert p.stdout.startswith("pong from rnmd ")
    j = json.loads(d.ctl("--json", "ping", check=True).stdout)
    assert j["ok"] and j["result"]["pong"] is True and j["id"] == 1

    st = d.ctl("status", check=True).stdout
    assert ", ready, up " in st and "wan0" in st and "198.51.100.7/24" in st and "block_v4" in st
    sj = json.loads(d.ctl("--json", "status", check=True).stdout)["result"]
    assert sj["state"] == "ready" and sj["config"]["table"] == "inet rnmc" and sj["config"]["generation"] == 1
    wan = [i for i in sj["interfaces"] if i["name"] == "wan0"][0]
    assert wan["present"] and wan["zone"] == "wan" and wan["addresses"][0]["address"] == "198.51.100.7/24"
    sets = {s["name"]: s for s in sj["sets"]}
    assert sets["wan_v4"]["elements"] == 1 and sets["wan_v4"]["owners"] == ["zone:wan"]
    assert sets["wan_v4"]["family"] == "ipv4" and sets["wan_v4"]["last_commit"]["transactions"] == 1
    assert sets["wan_v4"]["last_commit"]["time"].endswith("Z") and sets["wan_v4"]["last_commit"]["last_error"] is None
    assert sets["block_v4"]["flags"] == ["interval", "timeout"] and sets["ban_v4"]["timeout"] == "1h"
    assert sj["counters"]["transactions_ok"] >= 1 and sj["plugins"] == []

    assert "ELEMENTS" in d.ctl("sets", check=True).stdout
    assert {s["name"] for s in json.loads(d.ctl("--json", "sets", check=True).stdout)["result"]} >= {"allow_v6", "wan_ifaces"}

    out = d.ctl("set", "add", "block_v4", "192.0.2.0/24", "203.0.113.5", "timeout", "10m", check=True).stdout
    assert out.strip() == "added to block_v4: 192.0.2.0/24 203.0.113.5 (timeout 10m)"
    shown = d.ctl("set", "show", "block_v4", check=True).stdout
    assert "192.0.2.0/24" in shown and "manual" in shown and "9m5" in shown
    sj = json.loads(d.ctl("--json", "set", "show", "allow_v6", check=True).stdout)["result"]
    assert sj["elements"] == [{"element": "2001:db8::1", "owners": ["config"], "expires_in_ms": None}]
    assert in_set(ns, "rnmc", "block_v4", "192.0.2.200") and not in_set(ns, "rnmc", "block_v4", "192.0.3.1")
    assert d.ctl("set", "del", "block_v4", "203.0.113.5", check=True).stdout.strip() == "removed from block_v4: 203.0.113.5"
    assert not in_set(ns, "rnmc", "block_v4", "203.0.113.5")

    assert d.ctl("reload", check=True).stdout.strip() == "reloaded: generation 1 (config unchanged)"
    assert json.loads(d.ctl("--json", "reload", check=True).stdout)["result"] == {"generation": 1, "changed": False}
    m = d.ctl("metrics", check=True).stdout
    assert 'rnm_transactions_total{result="ok"}' in m and 'rnm_set_elements{set="block_v4"} 1' in m
    assert 'rnm_control_requests_total{verb="set add",result="ok"} 1' in m
    assert d.ctl("plugins", "list", check=True).stdout.strip() == "no plugins configured"
    assert json.loads(d.ctl("--json", "plugins", "list", check=True).stdout)["result"] == []
    assert_converged(ns, d)


def test_monitor_streams_events_in_text_and_json(ns, daemons):
    make_links(ns)
    d = daemons(ns, BASE)
    for fmt in ([], ["--json"]):
        mon = subprocess.Popen([RNMCTL, "--socket", d.socket, *fmt, "monitor"], stdout=subprocess.PIPE, text=True)
        time.sleep(0.3)
        ns.ip("addr", "add", "198.51.100.8/24", "dev", "wan0")
        d.ctl("set", "add", "ban_v4", "192.0.2.9", check=True)
        d.signal(signal.SIGHUP)
        time.sleep(0.5)
        ns.ip("addr", "del", "198.51.100.8/24", "dev", "wan0")
        time.sleep(0.3)
        mon.terminate()
        out = mon.communicate(timeout=5)[0]
        if fmt:
            events = [json.loads(l) for l in out.splitlines()]
            kinds = [e["event"] for e in events]
            assert {"address", "commit", "manual", "reload"} <= set(kinds), kinds
            assert any(e["event"] == "address" and e["address"] == "198.51.100.8/24" and e["zone"] == "wan" for e in events)
        else:
            assert "address update 198.51.100.8/24 on wan0 (zone wan)" in out
            assert "manual add ban_v4: 192.0.2.9" in out and "reload: generation 1 (unchanged)" in out
            assert "commit +1 -0 in wan_v4" in out and "address delete 198.51.100.8/24" in out
        d.ctl("set", "del", "ban_v4", "192.0.2.9", check=True)
    assert_converged(ns, d)


def test_bare_lines_get_plain_text_answers(ns, daemons):
    d = daemons(ns, BASE)
    assert d.request("ping\n").startswith("pong (up ")
    st = d.request("status\n")
    assert st.startswith("rnmd ") and "INTERFACE" in st and "SET" in st
    assert d.request("reload\n").strip() == "reloaded: generation 1 (unchanged)"
    assert d.request("shutdown\n").startswith("error: expected a JSON object")
    # Several requests on one connection are answered in order.
    lines = d.request('{"id":1,"cmd":"ping"}\n{"id":2,"cmd":"sets"}\n{"id":3,"cmd":"ping"}\n').splitlines()
    assert [json.loads(l)["id"] for l in lines] == [1, 2, 3]


def test_manual_timeout_is_enforced_by_the_kernel(ns, daemons):
    d = daemons(ns, BASE)
    d.ctl("set", "add", "ban_v4", "192.0.2.50", "timeout", "2s", check=True)
    d.ctl("set", "add", "ban_v4", "192.0.2.51", check=True)  # the set's default: 1h
    k = kernel_elements(ns, "rnmc", "ban_v4")
    # The kernel gets the time left until the deadline (nft -j truncates to whole seconds). When the commit
    # follows the request within the same millisecond, that time equals the set's default, which nft does not
    # print per element (None).
    assert k["192.0.2.50"] in (1, 2) and k["192.0.2.51"] in (None, 3599, 3600), (k, d.log_tail())
    time.sleep(3)
    # Gone from the kernel by its own timeout, and from rnmd's view; no transaction was needed for it.
    assert "192.0.2.50" not in kernel_elements(ns, "rnmc", "ban_v4")
    shown = json.loads(d.ctl("--json", "set", "show", "ban_v4", check=True).stdout)["result"]["elements"]
    assert [e["element"] for e in shown] == ["192.0.2.51"]
    assert "commit failed" not in d.log_text()
    # Adding it again works (no leftover), and re-adding with a new timeout refreshes it.
    d.ctl("set", "add", "ban_v4", "192.0.2.50", "timeout", "30s", check=True)
    d.ctl("set", "add", "ban_v4", "192.0.2.50", "timeout", "2h", check=True)
    assert kernel_elements(ns, "rnmc", "ban_v4")["192.0.2.50"] in (7199, 7200)
    assert_converged(ns, d)


def test_intervals_from_manual_entries_and_config_are_merged_right_in_the_kernel(ns, daemons):
    cfg = dict(BASE, sets=BASE["sets"] + [{"name": "nets_v4", "type": "ipv4_addr", "flags": ["interval"],
                                           "elements": ["10.1.0.0/16"]}])
    d = daemons(ns, cfg)
    d.ctl("set", "add", "nets_v4", "10.0.0.0/8", check=True)
    d.ctl("set", "add", "nets_v4", "10.1.2.3", "192.0.2.0/25", "192.0.2.128/25", check=True)
    for a, want in [("10.200.0.1", True), ("10.1.2.3", True), ("11.0.0.0", False), ("9.255.255.255", False),
                    ("192.0.2.0", True), ("192.0.2.255", True), ("192.0.3.0", False)]:
        assert in_set(ns, "rnmc", "nets_v4", a) == want, a
    d.ctl("set", "del", "nets_v4", "10.0.0.0/8", check=True)
    # The config's /16 (and the host inside it) remain; the rest of the /8 is gone.
    assert in_set(ns, "rnmc", "nets_v4", "10.1.200.1") and not in_set(ns, "rnmc", "nets_v4", "10.2.0.1")
    assert "commit failed" not in d.log_text()


def test_manual_entries_survive_kill9_and_expired_ones_are_not_restored(ns, daemons):
    make_links(ns)
    d = daemons(ns, BASE)
    d.ctl("set", "add", "block_v4", "192.0.2.0/24", check=True)
    d.ctl("set", "add", "block_v4", "198.18.0.0/15", "timeout", "1h", check=True)
    d.ctl("set", "add", "ban_v4", "192.0.2.77", "timeout", "2s", check=True)
    state = json.load(open(os.path.join(d.config["state_dir"], "manual.json")))
    assert len(state["entries"]) == 3
    d.kill9()
    time.sleep(2.5)  # 192.0.2.77 expires while rnmd is down
    d.start()
    assert "manual entries restored expired=1 restored=2" in d.log_text()
    assert set(kernel_elements(ns, "rnmc", "block_v4")) == {"192.0.2.0/24", "198.18.0.0/15"}
    assert "192.0.2.77" not in kernel_elements(ns, "rnmc", "ban_v4")
    # No duplicates, the remaining lifetime kept (about 1 h, not reset), and 0 transactions for the restore.
    t = kernel_elements(ns, "rnmc", "block_v4")["198.18.0.0/15"]
    assert 3500 < t <= 3600
    shown = json.loads(d.ctl("--json", "set", "show", "block_v4", check=True).stdout)["result"]["elements"]
    assert [e["element"] for e in shown] == ["192.0.2.0/24", "198.18.0.0/15"]
    assert_converged(ns, d)


def test_invalid_requests_are_refused_and_change_nothing(ns, daemons):
    d = daemons(ns, BASE)
    before = ns.nft("-j", "list", "table", "inet", "rnmc")
    for args, code, msg in [
        (["set", "add", "nope_v4", "1.2.3.4"], 1, 'set "nope_v4" is not declared'),
        (["set", "add", "wan_v4", "1.2.3.4"], 1, "is not declared under `sets:`"),
        (["set", "add", "allow_v6", "192.0.2.1"], 1, "is not an IPv6 address"),
        (["set", "add", "allow_v6", "2001:db8::/64"], 1, "has no interval flag"),
        (["set", "add", "allow_v6", "2001:db8::9", "timeout", "1m"], 1, "has no timeout flag"),
        (["set", "del", "block_v4", "10.0.0.1"], 1, "is not a manual entry of set block_v4"),
        (["set", "show", "nope"], 1, 'no managed set named "nope"'),
        (["set", "add", "block_v4", "300.1.1.1"], 2, "not an IPv4/IPv6 address"),
        (["set", "add", "block_v4", "1.2.3.4", "timeout", "soon"], 2, "invalid duration"),
        (["frobnicate"], 2, "Unexpected argument"),
    ]:
        p = d.ctl(*args)
        assert p.returncode == code, (args, p.returncode, p.stderr)
        assert msg in p.stderr, (args, p.stderr)
    assert ns.nft("-j", "list", "table", "inet", "rnmc") == before


def test_permissions_follow_peer_credentials(ns, daemons):
    d = daemons(ns, BASE)  # control group: gid 4300
    member, outsider = (4242, [CONTROL_GID]), (4243, [])
    assert d.ctl("status", as_user=member).returncode == 0
    assert d.ctl("sets", as_user=member).returncode == 0
    for args in (["reload"], ["set", "add", "ban_v4", "192.0.2.1"], ["set", "del", "ban_v4", "192.0.2.1"]):
        p = d.ctl(*args, as_user=member)
        assert p.returncode == 1 and "permission_denied" in p.stderr, (args, p.stderr)
    # Outside the group the socket's directory (0750 root:4300) is already closed.
    p = d.ctl("ping", as_user=outsider)
    assert p.returncode == 3 and "Permission denied" in p.stderr
    st = os.stat(os.path.dirname(d.socket))
    assert oct(st.st_mode & 0o777) == "0o750" and st.st_gid == CONTROL_GID
    st = os.stat(d.socket)
    assert oct(st.st_mode & 0o777) == "0o660" and st.st_uid == 0 and st.st_gid == CONTROL_GID
    m = d.ctl("metrics", check=True).stdout
    assert "rnm_control_rejected_total 3" in m


def test_abuse_leaves_the_daemon_serving_and_the_table_unchanged(ns, daemons):
    make_links(ns)
    d = daemons(ns, BASE)
    before = ns.nft("-j", "list", "table", "inet", "rnmc")
    rng = random.Random(1234)
    payloads = []
    for i in range(1000):
        kind = i % 6
        if kind == 0:
            payloads.append(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))) + b"\n")
        elif kind == 1:
            payloads.append(b'{"cmd":"st\xff\xfeatus"}\n')
        elif kind == 2:
            payloads.append(json.dumps({"id": i, "cmd": rng.choice(["shutdown", "flush", "", "SET ADD"])}).encode() + b"\n")
        elif kind == 3:
            payloads.append(json.dumps({"id": i, "cmd": "set add", "set": rng.choice([1, None, [], "block_v4"]),
                                        "elements": rng.choice(["1.2.3.4", [1], [None], {"a": 1}])}).encode() + b"\n")
        elif kind == 4:
            payloads.append(b'{"cmd":' + b"[" * 10000 + b"]" * 10000 + b"}\n")
        else:
            payloads.append(b'{"cmd":"set add","set":"block_v4","elements":["1.2.3.4"],"timeout":"-5s"}\n')
    for chunk in range(0, 1000, 50):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(d.socket)
        s.sendall(b"".join(payloads[chunk:chunk + 50]))
        s.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
        s.close()
        assert data.count(b"\n") >= 50
        assert b'"ok":true' not in data
    d.assert_alive()
    assert d.ctl("ping").returncode == 0
    assert ns.nft("-j", "list", "table", "inet", "rnmc") == before
    assert_converged(ns, d)


def test_one_mebibyte_line_is_cut_at_the_limit_with_bounded_memory(ns, daemons):
    d = daemons(ns, BASE)
    rss0 = d.rss_kib()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(d.socket)
    sent = 0
    try:
        while sent < (1 << 20):
            sent += s.send(b"x" * 65536)
    except (BrokenPipeError, ConnectionResetError, socket.timeout):
        pass
    data = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
    except (ConnectionResetError, socket.timeout):
        pass
    s.close()
    assert b'"code":"too_long"' in data
    assert d.rss_kib() - rss0 < 4 * 1024
    assert d.ctl("ping").returncode == 0


def test_idle_connections_and_a_client_that_never_reads_do_not_block_anyone(ns, daemons):
    make_links(ns)
    d = daemons(ns, BASE)
    idle = []
    for _ in range(200):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(d.socket)
        idle.append(s)
    # A client that asks and asks but never reads its answers.
    hog = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    hog.connect(d.socket)
    hog.setblocking(False)
    try:
        for _ in range(2000):
            hog.send(b'{"cmd":"status"}\n')
    except BlockingIOError:
        pass
    for _ in range(20):
        t0 = time.monotonic()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(2)
        s.connect(d.socket)
        s.sendall(b'{"id":1,"cmd":"ping"}\n')
        assert b'"pong":true' in s.recv(4096)
        s.close()
        assert time.monotonic() - t0 < 0.1, f"ping took {time.monotonic() - t0:.3f}s"
    # The daemon keeps following the network meanwhile.
    ns.ip("addr", "add", "198.51.100.9/24", "dev", "wan0")
    assert_converged(ns, d)
    # The hog is cut off after the write deadline (5 s); idle ones after the read deadline (10 s) or when
    # newer connections needed their slot.
    time.sleep(6)
    with pytest.raises((ConnectionResetError, BrokenPipeError, BlockingIOError, OSError)):
        for _ in range(100):
            hog.send(b'{"cmd":"status"}\n' * 1000)
    for s in idle + [hog]:
        s.close()
    d.assert_alive()


def test_a_slow_event_subscriber_loses_its_own_oldest_events_not_the_daemons_time(ns, daemons):
    make_links(ns)
    d = daemons(ns, BASE)
    sub = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sub.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sub.connect(d.socket)
    sub.sendall(b'{"id":1,"cmd":"events"}\n')
    time.sleep(0.2)
    lines = [f"addr add 10.9.{i // 250}.{i % 250 + 1}/32 dev lan0" for i in range(3000)]
    t0 = time.monotonic()
    ns.ip_batch(lines)
    assert_converged(ns, d)
    assert time.monotonic() - t0 < 10
    sub.settimeout(2)
    data = b""
    try:
        while True:
            b = sub.recv(1 << 20)
            if not b:
                break
            data += b
    except socket.timeout:
        pass
    events = [json.loads(l) for l in data.decode().splitlines()[1:]]
    assert any(e["event"] == "dropped" and e["count"] > 0 for e in events), [e["event"] for e in events][:20]
    sub.close()
    assert "rnm_events_dropped_total 0" not in d.ctl("metrics", check=True).stdout


def test_stale_socket_is_replaced_and_a_second_instance_refuses(ns, daemons, tmp_path):
    d = daemons(ns, BASE)
    second = subprocess.run(ns.exec_args(RNMD, "--config", d.config_path), capture_output=True, text=True, timeout=10)
    assert second.returncode == 1
    assert "another rnmd is already running" in second.stderr
    assert d.ctl("ping").returncode == 0, "the first one still serves"
    d.kill9()
    assert os.path.exists(d.socket), "a killed daemon leaves its socket behind"
    d.start()
    assert "replaced a stale control socket" in d.log_text()
    assert d.ctl("ping").returncode == 0
    # A symlink at the socket path is never followed.
    d.stop()
    target = tmp_path / "elsewhere.sock"
    os.symlink(target, d.socket)
    third = subprocess.run(ns.exec_args(RNMD, "--config", d.config_path), capture_output=True, text=True, timeout=10)
    assert third.returncode == 1 and "is a symlink; refusing to follow it" in third.stderr
    assert not target.exists()
    os.unlink(d.socket)


def test_rnmctl_gives_up_on_a_stopped_daemon_within_its_timeout(ns, daemons):
    d = daemons(ns, BASE)
    d.signal(signal.SIGSTOP)
    try:
        for args, limit in ((["status"], 6.5), (["--timeout", "1", "status"], 2.0)):
            t0 = time.monotonic()
            p = d.ctl(*args, timeout=15)
            took = time.monotonic() - t0
            assert p.returncode == 3 and "timed out" in p.stderr, p.stderr
            assert took < limit, f"{args} took {took:.1f}s"
    finally:
        d.signal(signal.SIGCONT)
    assert d.ctl("ping").returncode == 0
    # RNM_SOCKET is honoured when --socket is absent.
    env = dict(os.environ, RNM_SOCKET=d.socket)
    assert subprocess.run([RNMCTL, "ping"], env=env, capture_output=True).returncode == 0
    p = subprocess.run([RNMCTL, "ping"], env=dict(os.environ, RNM_SOCKET="/nonexistent/rnmd.sock"), capture_output=True, text=True)
    assert p.returncode == 3 and "is rnmd running?" in p.stderr


def test_completion_scripts_and_help():
    for shell, marker in (("bash", "-F _rnmctl rnmctl"), ("zsh", "#compdef rnmctl"), ("fish", "complete -c 'rnmctl'")):
        p = subprocess.run([RNMCTL, "--generate-completion-script", shell], capture_output=True, text=True)
        assert p.returncode == 0 and marker in p.stdout, shell
    p = subprocess.run([RNMCTL, "set", "add", "--help"], capture_output=True, text=True)
    assert p.returncode == 0 and "timeout DURATION" in p.stdout
