"""The Docker plugin against a real Docker engine: rnmd runs in its own network namespace, the containers on
dockerd's bridge and on user-defined networks the tests create and remove. Only the sets of the daemon's
table are asserted, and every test ends with the convergence oracle: the sets equal what the plugin's rules
give over `docker inspect` of every running container (0 stale, 0 missing), plus the zone sets.

The engine comes from dockerenv.py (the user's dockerd if one answers, else one the session starts with
--iptables=false --ip6tables=false); the containers run /bin/sleep from a busybox image imported there.

The plugin is .build/debug/librnm-docker.so, next to RNMD (RNM_DOCKER_PLUGIN overrides), copied into a
root-owned directory as docker.so. The tests skip while Plugins/docker is not in the tree.
"""
import json
import os
import random
import re
import shutil
import tempfile
import time

import pytest
from dockerenv import DOCKER_SOCKET, DockerError, expected_docker_sets, ping
from rnmtest import RNMD, ROOT, assert_converged

TABLE = "rnmdk"
GRANTED = ["web_v4", "web_v6", "containers_v4", "containers_v6"]
RULES = [
    {"label": "rnm.set", "sets_from_label_value": True},
    {"label": "app", "value": "web", "set_v4": "web_v4", "set_v6": "web_v6"},
    {"network": "bridge", "set_v4": "containers_v4", "set_v6": "containers_v6"},
]
# Label mixes: the label rule, the value rule, both (the same sets twice: a union), another value, none.
LABEL_MIX = [{"rnm.set": "web"}, {"app": "web"}, {"rnm.set": "web", "app": "web"}, {"app": "db"}, {}]


# --- The plugin -------------------------------------------------------------------------------------------

def plugin_source():
    return os.environ.get("RNM_DOCKER_PLUGIN") or os.path.join(os.path.dirname(RNMD), "librnm-docker.so")


@pytest.fixture(scope="session")
def docker_plugin():
    """The plugin copied into a root-owned 0755 directory as docker.so (0644)."""
    src = plugin_source()
    if not os.path.exists(src):
        if "RNM_DOCKER_PLUGIN" not in os.environ and not os.path.isdir(os.path.join(ROOT, "Plugins", "docker")):
            pytest.skip("the Docker plugin is not in this tree yet (no Plugins/docker)")
        pytest.fail(f"{src} is not built (`swift build` builds it with rnmd)")
    d = tempfile.mkdtemp(prefix="rnm-docker-plugin-")
    os.chmod(d, 0o755)
    dst = os.path.join(d, "docker.so")
    shutil.copy(src, dst)
    os.chmod(dst, 0o644)
    yield dst
    shutil.rmtree(d, ignore_errors=True)


def sets_decl(names):
    return [{"name": n, "type": "ipv4_addr" if n.endswith("_v4") else "ipv6_addr"} for n in names]


def config(plugin_path, rules=RULES, granted=GRANTED, socket=None, declared=None, **kw):
    """A config with zone wan on wan0 and the plugin granted `granted` (declared under sets:, with any
    `declared` extra ones). `socket` None leaves the plugin's default (/var/run/docker.sock)."""
    pc = {"rules": rules}
    if socket is not None:
        pc["socket"] = socket
    names = list(dict.fromkeys(list(granted) + list(declared or [])))
    return dict({"table": TABLE, "interfaces": [{"name": "wan0", "zone": "wan"}], "sets": sets_decl(names),
                 "plugins": [{"name": "docker", "path": plugin_path, "sets": list(granted), "config": pc}]}, **kw)


def make_links(ns):
    ns.veth("wan0", "p0")
    ns.ip("addr", "add", "198.51.100.7/24", "dev", "wan0")


# --- rnmctl -----------------------------------------------------------------------------------------------

def plugin(d, name="docker"):
    out = d.ctl("--json", "plugins", "list", check=True).stdout
    data = json.loads(out)
    assert data.get("ok") is True, out
    for p in data["result"]:
        if p["name"] == name:
            return p
    return None


def wait_plugin(d, timeout=15.0, name="docker", **want):
    """Polls `plugins list --json` until the plugin has every wanted field (a value, or a predicate)."""
    deadline = time.monotonic() + timeout
    p = None
    while True:
        p = plugin(d, name)
        if p is not None and all(v(p.get(k)) if callable(v) else p.get(k) == v for k, v in want.items()):
            return p
        if time.monotonic() > deadline:
            raise AssertionError(f"plugin {name} never reached {want}: {json.dumps(p)[:2000]}\n{d.log_tail()}")
        d.assert_alive()
        time.sleep(0.05)


def assert_serving(d):
    d.assert_alive()
    assert d.ctl("ping").returncode == 0
    st = d.ctl("--json", "status")
    assert st.returncode == 0, st.stderr


WATCHING = re.compile(r"watching (\d+) containers?")
REFUSED = re.compile(r"(\d+) label values? refused")
UNREACHABLE = re.compile(r"no such file|not found|does not exist|enoent|refused|econnrefused|cannot connect|"
                         r"can't connect|unreachable|reset|eof|closed|ended", re.I)


def watching(p):
    m = WATCHING.search(p.get("message") or "")
    return int(m.group(1)) if m else None


def refused(p):
    m = REFUSED.search(p.get("message") or "")
    return int(m.group(1)) if m else 0


def is_unreachable_message(message, path):
    """Degraded while disconnected: says it cannot reach the socket, and why."""
    if not message:
        return False
    names_socket = path in message or "socket" in message.lower() or "docker" in message.lower()
    return names_socket and UNREACHABLE.search(message) is not None


# --- The oracle -------------------------------------------------------------------------------------------

def docker_truth(api, rules=RULES, granted=GRANTED):
    """assert_converged's `extra`, read anew from Docker on every round."""
    return lambda: expected_docker_sets(api, rules, granted)


def assert_docker_converged(ns, d, api, rules=RULES, granted=GRANTED, timeout=15.0):
    """sets == zone truth + the plugin's rules over every running container; then the plugin's own counts
    agree with the kernel. Returns the Docker part of the truth."""
    truth = docker_truth(api, rules, granted)
    assert_converged(ns, d, timeout=timeout, extra=truth)
    want = truth()
    p = plugin(d)
    counts = {s["name"]: s["elements"] for s in p["sets"]}
    assert counts == {s: len(want[s]) for s in granted}, (counts, {s: len(want[s]) for s in granted})
    return want


def addrs(api, cid):
    """{network: (v4, v6)} of a container as Docker reports it now."""
    info = api.inspect(cid)
    return {n: (ep.get("IPAddress") or None, ep.get("GlobalIPv6Address") or None)
            for n, ep in info["NetworkSettings"]["Networks"].items()}


def kernel(ns, set_name):
    return ns.table_sets(TABLE)[set_name]


def user_network(dk, hint="net"):
    """A user-defined network with IPv6 (fd00:726e:N::/64) and IPv4 (10.213.N.0/24) subnets of its own;
    tries other N if Docker already has an overlapping one. Returns (name, v4 subnet prefix, v6 prefix)."""
    last = None
    for _ in range(8):
        n = random.randrange(1, 250)
        v4, v6 = f"10.213.{n}.", f"fd00:726e:{n:x}::"
        try:
            return dk.network([f"{v4}0/24", f"{v6}/64"], ipv6=True, hint=hint), v4, v6
        except DockerError as e:
            last = e
    raise last


def wait_running(api, cids, running=True, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        states = {c: bool(((api.inspect(c) or {}).get("State") or {}).get("Running")) for c in cids}
        if all(v == running for v in states.values()):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"containers not {'running' if running else 'stopped'}: {states}")
        time.sleep(0.1)


# --- 1. What runs before rnmd starts ----------------------------------------------------------------------

def test_containers_running_before_start_are_in_the_sets_at_once(ns, daemons, docker_plugin, docker_env):
    dk = docker_env
    make_links(ns)
    dk.run_many([{"labels": LABEL_MIX[i % len(LABEL_MIX)]} for i in range(20)])
    want = expected_docker_sets(dk.api, RULES, GRANTED)
    mine = {addrs(dk.api, c)["bridge"][0] for c in dk.running()}
    assert len(mine) == 20 and mine <= want["containers_v4"]
    # No Docker event from here on: whatever the sets get comes from the plugin's initial listing.
    t0 = time.monotonic()
    d = daemons(ns, config(docker_plugin))
    p = wait_plugin(d, health="ok", state="running", message=lambda m: m is not None and WATCHING.search(m))
    assert_converged(ns, d, timeout=5, extra=want)
    took = time.monotonic() - t0
    assert expected_docker_sets(dk.api, RULES, GRANTED) == want, "Docker changed under the test"
    assert took < 8, f"the sets took {took:.1f}s after rnmd started"
    p = plugin(d)
    assert p["starts"] == 1 and p["rejected"] == 0 and p["last_error"] is None, p
    assert {s["name"]: s["elements"] for s in p["sets"]} == {s: len(want[s]) for s in GRANTED}
    assert watching(p) == len(dk.api.containers()), p["message"]
    # The ones rnm.set=web and app=web share web_v4: 12 of the 20 (4 + 4 + 4), every one in containers_v4.
    web_mine = want["web_v4"] & mine
    assert len(web_mine) == 12, sorted(web_mine)
    assert_serving(d)


# --- 2. Churn: 100 containers -----------------------------------------------------------------------------

def test_a_hundred_containers_started_stopped_killed_and_removed(ns, daemons, docker_plugin, docker_env):
    dk, api = docker_env, docker_env.api
    make_links(ns)
    d = daemons(ns, config(docker_plugin))
    wait_plugin(d, health="ok", state="running")
    assert_docker_converged(ns, d, api)
    # 100 started, 6 at a time.
    ids = dk.run_many([{"labels": LABEL_MIX[i % len(LABEL_MIX)]} for i in range(100)])
    want = assert_docker_converged(ns, d, api, timeout=30)
    assert len(want["containers_v4"]) >= 100
    # Every fifth stopped, killed, removed, stopped and started again (a new address, maybe), renamed; ten new
    # ones started meanwhile.
    stopped, killed = [], []

    def churn(item):
        i, cid = item
        if cid is None:
            return dk.run(labels=LABEL_MIX[i % len(LABEL_MIX)])
        op = (i + i // 5) % 5  # every op meets every label mix
        if op == 0:
            api.stop(cid)
            stopped.append(cid)
        elif op == 1:
            api.kill(cid)
            killed.append(cid)
        elif op == 2:
            api.remove(cid)
        elif op == 3:
            api.stop(cid)
            api.start(cid)
        else:
            api.rename(cid, dk.name("renamed"))
        return cid

    work = list(enumerate(ids)) + [(i, None) for i in range(10)]
    random.Random(7).shuffle(work)
    dk.map(churn, work)
    assert_docker_converged(ns, d, api, timeout=30)
    # Some come back.
    dk.map(api.start, stopped[:10] + killed[:10])
    assert_docker_converged(ns, d, api, timeout=30)
    # All gone: nothing of theirs is left.
    dk.map(api.remove, [c["Id"] for c in api.containers(all=True, labels=[f"rnm.test.scope={dk.id}"])])
    want = assert_docker_converged(ns, d, api, timeout=30)
    p = plugin(d)
    assert p["health"] == "ok" and p["state"] == "running" and p["starts"] == 1, p
    assert p["rejected"] == 0 and p["last_error"] is None, p
    assert watching(p) == len(api.containers()), p["message"]
    assert_serving(d)


# --- 3. Two networks --------------------------------------------------------------------------------------

def test_a_container_on_two_networks_and_disconnects(ns, daemons, docker_plugin, docker_env):
    dk, api = docker_env, docker_env.api
    make_links(ns)
    net, v4, v6 = user_network(dk)
    # A label rule limited to the user network: only that network's addresses, both families.
    rules = RULES + [{"label": "rnm.edge", "network": net, "set_v4": "edge_v4", "set_v6": "edge_v6"}]
    granted = GRANTED + ["edge_v4", "edge_v6"]
    d = daemons(ns, config(docker_plugin, rules=rules, granted=granted))
    wait_plugin(d, health="ok", state="running")
    a = dk.run({"app": "web"}, network=net)      # web: every address on both networks
    api.connect("bridge", a)
    b = dk.run({"rnm.edge": "1"}, network=net)   # edge: its user-network addresses only
    api.connect("bridge", b)
    c = dk.run({}, network=net)                  # no rule matches: nowhere
    assert_docker_converged(ns, d, api, rules, granted)
    A, B, C = addrs(api, a), addrs(api, b), addrs(api, c)
    assert A[net][0].startswith(v4) and A[net][1].startswith(v6) and A["bridge"][0] and not A["bridge"][1], A
    k = ns.table_sets(TABLE)
    assert {A[net][0], A["bridge"][0]} <= k["web_v4"] and A[net][1] in k["web_v6"]
    assert A["bridge"][0] in k["containers_v4"] and A[net][0] not in k["containers_v4"]
    assert k["edge_v4"] >= {B[net][0]} and B[net][1] in k["edge_v6"] and B["bridge"][0] not in k["edge_v4"]
    assert B["bridge"][0] in k["containers_v4"] and B[net][0] not in k["web_v4"]
    assert not {C[net][0], C[net][1]} & set().union(*k.values())
    # Disconnects take exactly that network's addresses.
    api.disconnect(net, a)
    assert_docker_converged(ns, d, api, rules, granted)
    k = ns.table_sets(TABLE)
    assert A["bridge"][0] in k["web_v4"] and A["bridge"][0] in k["containers_v4"]
    assert A[net][0] not in k["web_v4"] and A[net][1] not in k["web_v6"]
    api.disconnect("bridge", b)
    assert_docker_converged(ns, d, api, rules, granted)
    k = ns.table_sets(TABLE)
    assert B["bridge"][0] not in k["containers_v4"] and B[net][0] in k["edge_v4"] and B[net][1] in k["edge_v6"]
    api.connect(net, a)
    assert_docker_converged(ns, d, api, rules, granted)
    A = addrs(api, a)
    assert A[net][1] in kernel(ns, "web_v6")
    # The same addresses for a new container while the old one still exists and goes later: e dies, f takes
    # its addresses, then e is removed; f's addresses stay.
    x4, x6 = f"{v4}50", f"{v6}50"
    e = dk.run({"app": "web", "rnm.edge": "e"}, network=net, ipv4=x4, ipv6=x6)
    assert_docker_converged(ns, d, api, rules, granted)
    assert x4 in kernel(ns, "web_v4") and x6 in kernel(ns, "edge_v6")
    api.kill(e)
    wait_running(api, [e], running=False)
    f = dk.create({"app": "web", "rnm.edge": "f"}, network=net, ipv4=x4, ipv6=x6)
    for attempt in range(50):
        try:
            api.start(f)
            break
        except DockerError as err:  # the old endpoint's addresses are released just after the exit
            if attempt == 49 or "in use" not in err.message.lower():
                raise
            time.sleep(0.1)
    api.remove(e)
    assert_docker_converged(ns, d, api, rules, granted)
    k = ns.table_sets(TABLE)
    assert x4 in k["web_v4"] and x6 in k["web_v6"] and x4 in k["edge_v4"] and x6 in k["edge_v6"]
    # A container with no network left contributes nothing; removing the network's containers empties the
    # user-network addresses.
    api.disconnect(net, a)
    api.disconnect("bridge", a)
    assert_docker_converged(ns, d, api, rules, granted)
    dk.map(api.remove, [a, b, c, f])
    want = assert_docker_converged(ns, d, api, rules, granted)
    assert not want["edge_v4"] and not want["edge_v6"]
    p = plugin(d)
    assert p["health"] == "ok" and p["rejected"] == 0 and p["starts"] == 1, p
    assert_serving(d)


# --- 4. dockerd restarts ----------------------------------------------------------------------------------

def test_dockerd_restart_with_changes_in_the_gap(ns, daemons, docker_plugin, docker_env, docker_engine, tmp_path):
    """dockerd restarts while containers die and start where the plugin cannot see it, and the plugin must
    find all of it by relisting: 0 stale, 0 missing; health degraded while disconnected, ok after.

    The gap is made deterministic two ways. dockerd goes down with live-restore on (as in an upgrade), so no
    container dies in its shutdown, seen or not; while it is down the test kills container processes itself
    (a restart=always one comes back when dockerd does, maybe with another container's old address). And the
    plugin reaches the engine through a symlink the test removes before the restart and puts back only after
    more containers were removed, stopped and started through the real socket."""
    if not docker_engine.owned:
        pytest.skip("restarts dockerd, and the one running is not one the tests started (a user's dockerd is "
                    "never restarted)")
    dk, api = docker_env, docker_env.api
    make_links(ns)
    link = str(tmp_path / "docker.sock")
    os.symlink(DOCKER_SOCKET, link)
    gone = [dk.run(LABEL_MIX[i % 3]) for i in range(3)]                                # killed in the gap
    back = [dk.run(LABEL_MIX[i % len(LABEL_MIX)], restart="always") for i in range(5)]  # [:2] killed, restarted
    pids = {c: api.inspect(c)["State"]["Pid"] for c in gone + back[:2]}
    d = daemons(ns, config(docker_plugin, socket=link))
    wait_plugin(d, health="ok", state="running", message=lambda m: m is not None and WATCHING.search(m))
    before = assert_docker_converged(ns, d, api)

    def unchanged():
        """While it cannot connect, the plugin's elements stay as they were (nothing withdrawn on a
        disconnect, nothing learnt)."""
        k = ns.table_sets(TABLE)
        assert all(k[s] == before[s] for s in GRANTED), ({s: k[s] for s in GRANTED}, before)

    def while_down():
        wait_plugin(d, timeout=10, health="degraded", message=lambda m: is_unreachable_message(m, link))
        assert ping() is None
        for pid in pids.values():
            os.kill(pid, 9)
        unchanged()

    os.unlink(link)
    docker_engine.restart(between=while_down, live_restore=True)
    wait_running(api, back)
    wait_running(api, gone, running=False)
    # More the plugin cannot see as it happens.
    api.remove(back[2])
    api.stop(back[3])
    api.remove(gone[0])
    new = [dk.run(LABEL_MIX[i % len(LABEL_MIX)]) for i in range(4)]
    p = plugin(d)
    assert p["health"] == "degraded", p
    unchanged()
    os.symlink(DOCKER_SOCKET, link)
    p = wait_plugin(d, timeout=10, health="ok", message=lambda m: m is not None and WATCHING.search(m))
    after = assert_docker_converged(ns, d, api, timeout=10)
    assert p["state"] == "running" and p["starts"] == 1 and p["rejected"] == 0, p
    assert watching(p) == len(api.containers()), p["message"]
    assert dk.running() == set(back[:2] + back[4:] + new)
    assert {addrs(api, c)["bridge"][0] for c in dk.running()} <= after["containers_v4"]
    # The host logged both health changes, in that order.
    log = d.log_text()
    assert "plugin docker: health degraded" in log
    assert log.rfind("plugin docker: health degraded") < log.rfind("plugin docker: health ok"), d.log_tail()
    assert_serving(d)


# --- 5. No socket at start --------------------------------------------------------------------------------

def test_socket_absent_at_start_then_appears(ns, daemons, docker_plugin, docker_env, tmp_path):
    dk, api = docker_env, docker_env.api
    make_links(ns)
    dk.run_many([{"labels": LABEL_MIX[i % len(LABEL_MIX)]} for i in range(5)])
    link = str(tmp_path / "later" / "docker.sock")
    os.makedirs(os.path.dirname(link))
    d = daemons(ns, config(docker_plugin, socket=link))
    p = wait_plugin(d, state="running", health="degraded")
    assert is_unreachable_message(p["message"], link), p
    assert {s["name"]: s["elements"] for s in p["sets"]} == {s: 0 for s in GRANTED}
    # The core goes on: zone sets follow the addresses; the plugin's sets are empty.
    ns.ip("addr", "add", "203.0.113.5/24", "dev", "wan0")
    ns.ip("addr", "add", "2001:db8:5::5/64", "dev", "wan0", "nodad")
    assert_converged(ns, d)
    ns.ip("addr", "del", "198.51.100.7/24", "dev", "wan0")
    assert_converged(ns, d)
    assert plugin(d)["health"] == "degraded"
    # The socket appears: within the back-off's 2 s cap (and a listing), without anyone's help.
    t0 = time.monotonic()
    os.symlink(DOCKER_SOCKET, link)
    p = wait_plugin(d, timeout=10, health="ok", message=lambda m: m is not None and WATCHING.search(m))
    assert_docker_converged(ns, d, api, timeout=5)
    assert time.monotonic() - t0 < 6
    assert p["starts"] == 1 and p["rejected"] == 0, p
    # Followed from there on.
    dk.run({"app": "web"})
    assert_docker_converged(ns, d, api)
    assert_serving(d)


# --- 6. Hostile label values ------------------------------------------------------------------------------

TEMPLATE = """chain input {
	type filter hook input priority filter; policy accept;
	ip saddr @web_v4 accept
	ip6 saddr @web_v6 accept
	ip saddr @containers_v4 accept
	iifname $wan_ifaces ip saddr @nogrant_v4 drop
}
"""


def structure(ns):
    """The namespace's tables, and ours as nft -j lists it without set elements: table, chains, rules, set
    declarations."""
    tables = [o["table"]["name"] for o in json.loads(ns.nft("-j", "list", "tables"))["nftables"] if "table" in o]
    out = [{"tables": tables}]
    for obj in json.loads(ns.nft("-j", "list", "table", "inet", TABLE))["nftables"]:
        if "metainfo" in obj:
            continue
        if "set" in obj:
            obj = {"set": {k: v for k, v in obj["set"].items() if k != "elem"}}
        out.append(obj)
    return out


def test_hostile_label_values_are_refused_and_change_nothing(ns, daemons, docker_plugin, docker_env, tmp_path):
    dk, api = docker_env, docker_env.api
    make_links(ns)
    rules_file = tmp_path / "input.nft"
    rules_file.write_text(TEMPLATE)
    forged = f"FORGED-{dk.id}"
    hostile = ["; flush ruleset", "@set", "*", "a" * 65536, f"x\n{forged} rnmd: converged\x1b[31m"]
    # nogrant_v4 is declared (the template uses it) but not granted: the host refuses it.
    cfg = config(docker_plugin, declared=["nogrant_v4", "nogrant_v6"])
    cfg["rules"] = [str(rules_file)]  # the top-level rule templates (not the plugin's rules)
    first = dk.run({"rnm.set": hostile[0]})                      # there before rnmd: refused from the listing
    d = daemons(ns, cfg)
    p = wait_plugin(d, health="ok", message=lambda m: m is not None and WATCHING.search(m))
    assert refused(p) == 1, p["message"]
    before = structure(ns)
    assert before[0] == {"tables": [TABLE]}
    assert len([o for o in before if "rule" in o]) == 4 and len([o for o in before if "chain" in o]) == 2  # input and the (empty) rnm_forward
    assert {o["set"]["name"] for o in before if "set" in o} == \
        {"wan_v4", "wan_v6", "wan_ifaces", "nogrant_v4", "nogrant_v6", *GRANTED}
    good = [dk.run({"rnm.set": "web"}), dk.run({"app": "web"})]
    bad = [first] + [dk.run({"rnm.set": v}) for v in hostile[1:]]
    ungranted = dk.run({"rnm.set": "nogrant", "app": "web"})     # well-formed: its app=web part still counts
    p = wait_plugin(d, health="ok", message=lambda m: m is not None and refused({"message": m}) == len(hostile))
    p = wait_plugin(d, rejected_by=lambda r: r is not None and r["not_granted"] >= 1)
    assert_docker_converged(ns, d, api)
    assert structure(ns) == before
    k = ns.table_sets(TABLE)
    assert not k["nogrant_v4"] and not k["nogrant_v6"]
    g = [addrs(api, c)["bridge"][0] for c in good + [ungranted]]
    assert set(g) <= k["web_v4"] and set(g) <= k["containers_v4"]
    for c in bad:  # their addresses are in containers_v4 by the network rule, and nowhere else
        a = addrs(api, c)["bridge"][0]
        assert a in k["containers_v4"] and a not in k["web_v4"]
    # Logged, escaped, one line each: nothing forged, no raw control characters.
    log = d.log_text()
    lines = [l for l in log.splitlines() if "plugin docker:" in l and "is not a set name" in l]
    for v in ("; flush ruleset", "@set", "*"):
        assert any(v in l for l in lines), (v, lines)
    assert not any(l.startswith(forged) or l.startswith(f"<6>{forged}") for l in log.splitlines())
    assert forged in log and "\x1b" not in log
    # Escaped as the host escapes (docs/plugins.md, logging): `\n` or two hex digits, never an ambiguous `\xa`
    # that runs into the next character ("\xaF" reads as one byte 0xAF).
    assert re.search(r"x(\\n|\\x0a)" + forged, log), [l for l in lines if forged in l]
    # Everything goes on: the hostile ones leave, the good ones stay, the daemon answers.
    dk.map(api.remove, bad)
    assert_docker_converged(ns, d, api)
    assert structure(ns) == before
    p = plugin(d)
    assert p["state"] == "running" and p["starts"] == 1, p
    assert_serving(d)
