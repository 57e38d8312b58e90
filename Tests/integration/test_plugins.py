"""Plugins against a real daemon in a namespace: the C and Swift examples built out of tree, every refusal
(descriptor, ABI, file permissions, lifecycle failures and hangs), withdrawal of exactly a plugin's own
elements, reloads that touch only the changed plugin, ABI compatibility both ways, a hostile plugin
flooding the host, and the asynchronous host's promises: restarts without a gap, restarts that fail, slow and
hanging lifecycle calls that hold nothing up, transitional states, SIGTERM in the middle of a start. Each test
ends with the convergence oracle where sets are involved.

The test plugins are compiled with cc from Tests/integration/plugins/ into temporary directories, once per
session; the header comes through pkg-config (pkg-files/pkgconfig/rnm-plugin.pc) as a plugin author's would.
"""
import datetime
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time

import pytest
from rnmtest import RNMCTL, RNMD, ROOT, assert_converged, normalise

HERE = os.path.dirname(os.path.abspath(__file__))
PLUGIN_SOURCES = os.path.join(HERE, "plugins")
ABI_INCLUDE = os.path.join(ROOT, "Sources", "RNMPluginABI", "include")
PC_DIR = os.path.join(ROOT, "pkg-files", "pkgconfig")
FROZEN_V1_0 = os.path.join(PLUGIN_SOURCES, "abi", "rnm_plugin_v1_0.h")
CC_FLAGS = ["-shared", "-fPIC", "-fvisibility=hidden", "-Wall", "-Wextra", "-Werror", "-O2", "-g"]
HOST_SWIFT = "swift-6.3.1"
REJECT_KEYS = {"invalid", "not_granted", "family", "unsupported", "too_big", "shutdown"}

# Builds of the probe (and the flood) plugin: name -> (source, extra cc arguments, use pkg-config's -I).
VARIANTS = {
    "probe": ("probe.c", [], True),
    "probe_reconf": ("probe.c", ["-DPROBE_RECONFIGURE"], True),
    "probe_v1_0": ("probe.c", [f'-DPROBE_HEADER="{FROZEN_V1_0}"'], False),
    "future": ("probe.c", ["-DFUTURE_FIELD", '-DPROBE_NAME="probe-future"'], True),
    "bad_magic": ("probe.c", ["-DDESC_MAGIC=0x12345678u"], True),
    "major2": ("probe.c", ["-DDESC_ABI_MAJOR=2"], True),
    "minor3": ("probe.c", ["-DDESC_ABI_MINOR=3"], True),
    "no_entry": ("probe.c", ["-DENTRY_SYMBOL=rnm_plugin_entry_v2"], True),
    "small": ("probe.c", ["-DDESC_STRUCT_SIZE=offsetof(rnm_plugin_descriptor, destroy)"], True),
    "no_create": ("probe.c", ["-DNO_CREATE"], True),
    "null_entry": ("probe.c", ["-DENTRY_RETURNS_NULL"], True),
    "swift510": ("probe.c", ['-DDESC_BUILD_INFO="swift-5.10"'], True),
    "flood": ("flood.c", [], True),
}

SETS = [
    {"name": "allow_v4", "type": "ipv4_addr", "flags": ["interval"]},
    {"name": "allow_v6", "type": "ipv6_addr", "flags": ["interval"]},
    {"name": "plain_v4", "type": "ipv4_addr"},
    {"name": "other_v4", "type": "ipv4_addr"},
]
TABLE = "rnmp"


# --- Building ---------------------------------------------------------------------------------------------

def pkg_config_cflags():
    """The plugin ABI's cflags, in-tree: the shipped .pc file with includedir pointed at the source header."""
    p = subprocess.run(["pkg-config", f"--define-variable=includedir={ABI_INCLUDE}", "--cflags", "rnm-plugin"],
                       env=dict(os.environ, PKG_CONFIG_PATH=PC_DIR), capture_output=True, text=True, check=True)
    return p.stdout.split()


def exported(path):
    """The dynamic symbols a shared object defines."""
    out = subprocess.run(["nm", "-D", "--defined-only", path], capture_output=True, text=True, check=True).stdout
    return {line.split()[-1] for line in out.splitlines() if line.strip()}


def root_dir(prefix):
    d = tempfile.mkdtemp(prefix=prefix)
    os.chmod(d, 0o755)
    return d


@pytest.fixture(scope="session")
def built():
    """Every test plugin, compiled once: {variant: path}. Also "example_c" (the C example, built out of tree
    with its Makefile), "garbage" (not an ELF file) and "missing" (no file)."""
    out = root_dir("rnm-plugins-")
    cflags = pkg_config_cflags()
    paths = {}
    for name, (source, extra, with_pkg_config) in VARIANTS.items():
        path = os.path.join(out, name + ".so")
        cmd = ["cc", *CC_FLAGS, *(cflags if with_pkg_config else []), *extra, "-o", path,
               os.path.join(PLUGIN_SOURCES, source), "-lpthread"]
        p = subprocess.run(cmd, capture_output=True, text=True)
        assert p.returncode == 0, f"{' '.join(cmd)}\n{p.stderr}"
        paths[name] = path
    # The C example, out of tree: a copy of its folder, its own Makefile, the header found by pkg-config.
    src = os.path.join(out, "example-c")
    shutil.copytree(os.path.join(ROOT, "Plugins", "example-c"), src)
    p = subprocess.run(["make", "-C", src, f"PKG_CONFIG_PATH={PC_DIR}",
                        f"PKG_CONFIG_FLAGS=--define-variable=includedir={ABI_INCLUDE}"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    paths["example_c"] = os.path.join(src, "example.so")
    paths["garbage"] = os.path.join(out, "garbage.so")
    with open(paths["garbage"], "w") as f:
        f.write("this is not an ELF file\n")
    paths["missing"] = os.path.join(out, "missing.so")
    yield paths
    shutil.rmtree(out, ignore_errors=True)


@pytest.fixture(scope="session")
def swift_example():
    """The Swift example built with `swift build -c release` in a copy of Plugins/example-swift, the header
    found through a copy of rnm-plugin.pc whose prefix holds it in the installed layout (SwiftPM reads .pc
    files itself and cannot redefine a variable)."""
    work = root_dir("rnm-swift-plugin-")
    sdk = os.path.join(work, "sdk")
    os.makedirs(os.path.join(sdk, "include", "rnm"))
    os.makedirs(os.path.join(sdk, "lib", "pkgconfig"))
    shutil.copy(os.path.join(ABI_INCLUDE, "rnm_plugin.h"), os.path.join(sdk, "include", "rnm"))
    with open(os.path.join(PC_DIR, "rnm-plugin.pc")) as f:
        pc = "".join(f"prefix={sdk}\n" if l.startswith("prefix=") else l for l in f)
    with open(os.path.join(sdk, "lib", "pkgconfig", "rnm-plugin.pc"), "w") as f:
        f.write(pc)
    pkg = os.path.join(work, "example-swift")
    shutil.copytree(os.path.join(ROOT, "Plugins", "example-swift"), pkg,
                    ignore=shutil.ignore_patterns(".build", ".swiftpm"))
    env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(sdk, "lib", "pkgconfig"))
    p = subprocess.run(["swift", "build", "-c", "release"], cwd=pkg, env=env, capture_output=True, text=True,
                       timeout=1800)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-4000:]
    path = os.path.join(pkg, ".build", "release", "libexample_swift.so")
    assert os.path.exists(path), p.stdout[-2000:]
    yield path
    shutil.rmtree(work, ignore_errors=True)


# --- Helpers ----------------------------------------------------------------------------------------------

def make_links(ns):
    ns.veth("wan0", "p0")
    ns.ip("addr", "add", "198.51.100.7/24", "dev", "wan0")


def config(plugins, sets=SETS, **kw):
    return dict({"table": TABLE, "interfaces": [{"name": "wan0", "zone": "wan"}], "sets": sets,
                 "plugins": plugins}, **kw)


def entry(name, path, sets=("allow_v4",), cfg=None, **kw):
    e = {"name": name, "path": path, "sets": list(sets)}
    if cfg is not None:
        e["config"] = cfg
    e.update(kw)
    return e


def probe_cfg(tag, addresses=(), set_name="allow_v4", **kw):
    c = {"tag": tag, "set": set_name, "addresses": list(addresses)}
    c.update(kw)
    return c


def result_of(stdout):
    """`rnmctl --json` prints the daemon's answer; the list is its result."""
    data = json.loads(stdout)
    return data["result"] if isinstance(data, dict) and "result" in data else data


def plugin_list(d):
    return result_of(d.ctl("--json", "plugins", "list", check=True).stdout)


def plugin(d, name):
    for p in plugin_list(d):
        if p["name"] == name:
            return p
    return None


def set_count(p, set_name):
    for s in p["sets"]:
        if s["name"] == set_name:
            return s["elements"]
    return None


def wait_plugin(d, name, timeout=15.0, **want):
    """Polls `rnmctl plugins list --json` until plugin `name` has every wanted field (a value, or a predicate)."""
    deadline = time.monotonic() + timeout
    p = None
    while True:
        p = plugin(d, name)
        if p is not None and all(v(p.get(k)) if callable(v) else p.get(k) == v for k, v in want.items()):
            return p
        if time.monotonic() > deadline:
            raise AssertionError(f"plugin {name} never reached {want}: {json.dumps(p)}\n{d.log_tail()}")
        d.assert_alive()
        time.sleep(0.05)


def wait_count(d, name, set_name, n, timeout=15.0):
    return wait_plugin(d, name, timeout, sets=lambda sets: sets is not None and
                       any(s["name"] == set_name and s["elements"] == n for s in sets))


def kernel_elements(ns, set_name, table=TABLE):
    """The set as `nft -j list set` prints it: element texts (prefixes as a/len, ranges as lo-hi)."""
    data = json.loads(ns.nft("-j", "list", "set", "inet", table, set_name))
    out = set()
    for obj in data["nftables"]:
        s = obj.get("set")
        for e in (s or {}).get("elem", []):
            if isinstance(e, dict) and "elem" in e:
                e = e["elem"]["val"]
            if isinstance(e, dict) and "prefix" in e:
                e = f"{e['prefix']['addr']}/{e['prefix']['len']}"
            elif isinstance(e, dict) and "range" in e:
                e = f"{e['range'][0]}-{e['range'][1]}"
            out.add(str(e))
    return out


def assert_serving(d):
    """The daemon still answers: ping (control thread) and status (through the reconciler)."""
    d.assert_alive()
    assert d.ctl("ping").returncode == 0
    st = d.ctl("--json", "status")
    assert st.returncode == 0, st.stderr
    return result_of(st.stdout)


def reload(d, cfg, timeout=10):
    d.write_config(cfg)
    return d.ctl("--timeout", str(timeout), "reload", timeout=timeout + 5)


def read_trace(path, tag):
    try:
        lines = open(path).read().splitlines()
    except FileNotFoundError:
        return []
    return [l.split(" ", 1)[1] for l in lines if l.split(" ", 1)[0] == tag]


def short(plugins):
    """`status` lists plugins as {name, state, health}."""
    return [{k: p.get(k) for k in ("name", "state", "health")} for p in plugins]


def lifecycle(path, tag):
    """The lifecycle calls a probe traced, without the "applied" lines its own thread writes."""
    return [x for x in read_trace(path, tag) if not x.startswith("applied")]


def rejected_total(p):
    return sum(p["rejected_by"].values())


# --- The examples -----------------------------------------------------------------------------------------

def test_c_and_swift_examples_load_contribute_and_are_listed(ns, daemons, built, swift_example):
    assert exported(built["example_c"]) == {"rnm_plugin_entry_v1"}
    assert exported(swift_example) == {"rnm_plugin_entry_v1"}
    make_links(ns)
    c_addrs, swift_addrs = ["192.0.2.1", "10.0.0.0/8"], ["2001:db8::1", "2001:db8:100::/40"]
    d = daemons(ns, config([
        entry("example_c", built["example_c"], cfg={"set": "allow_v4", "addresses": c_addrs}),
        entry("example_swift", swift_example, sets=["allow_v6"], cfg={"set": "allow_v6", "addresses": swift_addrs}),
    ]))
    pc = wait_count(d, "example_c", "allow_v4", 2)
    ps = wait_count(d, "example_swift", "allow_v6", 2)
    pc = wait_plugin(d, "example_c", health="ok", message=lambda m: m is not None)
    assert pc["plugin"] == "example-c" and pc["version"] == "1.0.0" and pc["build_info"] is None
    assert pc["abi"] == "1.0" and pc["path"] == os.path.realpath(built["example_c"]) and pc["enabled"] is True
    assert pc["state"] == "running" and pc["starts"] == 1 and pc["last_error"] is None
    assert pc["message"] == "added 2 addresses to allow_v4: status 0"
    assert pc["sets"] == [{"name": "allow_v4", "elements": 2}]
    assert pc["accepted"] == 1 and pc["rejected"] == 0 and pc["busy"] == 0
    assert set(pc["rejected_by"]) == REJECT_KEYS and rejected_total(pc) == 0
    ps = wait_plugin(d, "example_swift", health="ok")
    assert ps["plugin"] == "example-swift" and ps["version"] == "1.0.0" and ps["build_info"] == HOST_SWIFT
    assert ps["abi"] == "1.0" and ps["state"] == "running" and ps["starts"] == 1 and ps["last_error"] is None
    assert ps["sets"] == [{"name": "allow_v6", "elements": 2}] and ps["accepted"] == 1 and ps["rejected"] == 0
    assert ps["message"] == "replaced the contribution to allow_v6 with 2 addresses: status 0"
    # The other spellings of the list agree; the text form names both; status has the short form.
    assert [p["name"] for p in plugin_list(d)] == ["example_c", "example_swift"]
    for args in (["plugins", "list", "--json"], ["plugins", "--json"]):
        assert [p["name"] for p in result_of(d.ctl(*args, check=True).stdout)] == ["example_c", "example_swift"]
    text = d.ctl("plugins", "list", check=True).stdout
    assert "example_c" in text and "example_swift" in text and "running" in text
    st = assert_serving(d)
    assert short(st["plugins"]) == [{"name": "example_c", "state": "running", "health": "ok"},
                                    {"name": "example_swift", "state": "running", "health": "ok"}]
    # In the kernel, and their log lines attributed to them.
    assert kernel_elements(ns, "allow_v4") == {"192.0.2.1", "10.0.0.0/8"}
    assert kernel_elements(ns, "allow_v6") == {"2001:db8::1", "2001:db8:100::/40"}
    log = d.log_text()
    assert "plugin example_c: added 2 addresses to allow_v4: status 0" in log
    assert "plugin example_swift: replaced the contribution to allow_v6 with 2 addresses: status 0" in log
    assert_converged(ns, d, extra={"allow_v4": c_addrs, "allow_v6": swift_addrs})


def test_example_configs_are_checked_in_create(ns, daemons, built, swift_example):
    d = daemons(ns, config([
        entry("c_no_set", built["example_c"], cfg={"addresses": ["192.0.2.1"]}),
        entry("c_bad", built["example_c"], cfg={"set": "allow_v4", "addresses": ["192.0.2.1", "192.0.2.300"]}),
        entry("swift_bad", swift_example, cfg={"set": "allow_v4", "addresses": ["nonsense"]}),
        entry("swift_shape", swift_example, cfg={"set": "allow_v4", "addresses": "192.0.2.1"}),
    ]))
    for name, fragment in (("c_no_set", 'config: "set" is missing'),
                           ("c_bad", 'config: bad address "192.0.2.300" in "addresses"'),
                           ("swift_bad", 'config: bad address "nonsense" in "addresses"'),
                           ("swift_shape", "config: expected {")):
        p = wait_plugin(d, name, state="failed")
        assert "create failed" in p["last_error"] and fragment in p["last_error"], p
        assert fragment in d.log_text()
    assert_serving(d)
    assert_converged(ns, d)


# --- Withdrawal -------------------------------------------------------------------------------------------

def test_disable_and_removal_withdraw_exactly_their_own_elements(ns, daemons, built, tmp_path):
    make_links(ns)
    sets = [dict(SETS[0], elements=["192.0.2.1"])] + SETS[1:]
    # Not adjacent: allow_v4 is an interval set, where neighbours merge into one range.
    a_addrs = ["192.0.2.1", "192.0.2.5", "192.0.2.7", "198.51.100.0/24", "203.0.113.9"]
    b_addrs = ["192.0.2.9", "203.0.113.9"]
    plugins = [entry("a", built["probe"], cfg=probe_cfg("a", a_addrs)),
               entry("b", built["probe"], cfg=probe_cfg("b", b_addrs))]
    d = daemons(ns, config(plugins, sets=sets))
    wait_count(d, "a", "allow_v4", 5)
    wait_count(d, "b", "allow_v4", 2)
    d.ctl("set", "add", "allow_v4", "192.0.2.5", check=True)  # a manual owner of one of a's elements
    assert_converged(ns, d, extra={"allow_v4": a_addrs + b_addrs})
    # Disabled: a's elements go, except what the config (192.0.2.1), rnmctl (192.0.2.5) and b (203.0.113.9)
    # also contribute.
    off = [dict(plugins[0], enabled=False), plugins[1]]
    assert reload(d, config(off, sets=sets)).returncode == 0
    p = wait_plugin(d, "a", state="disabled")
    assert p["enabled"] is False
    assert_converged(ns, d, extra={"allow_v4": b_addrs})
    assert kernel_elements(ns, "allow_v4") == {"192.0.2.1", "192.0.2.5", "192.0.2.9", "203.0.113.9"}
    assert plugin(d, "b")["starts"] == 1 and plugin(d, "b")["state"] == "running"
    # Enabled again: back.
    assert reload(d, config(plugins, sets=sets)).returncode == 0
    wait_count(d, "a", "allow_v4", 5)
    wait_plugin(d, "a", state="running")
    assert_converged(ns, d, extra={"allow_v4": a_addrs + b_addrs})
    # Removed: gone from the list, its elements withdrawn the same way.
    assert reload(d, config(plugins[1:], sets=sets)).returncode == 0
    assert_converged(ns, d, extra={"allow_v4": b_addrs})
    # The removed plugin is listed as "stopping" until its stop job ends (asynchronously).
    deadline = time.monotonic() + 10
    while [p["name"] for p in plugin_list(d)] != ["b"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [p["name"] for p in plugin_list(d)] == ["b"] and plugin(d, "b")["starts"] == 1
    # b removed, and the manual entry deleted: only the config's element is left.
    assert reload(d, config([], sets=sets)).returncode == 0
    d.ctl("set", "del", "allow_v4", "192.0.2.5", check=True)
    assert_converged(ns, d)
    assert kernel_elements(ns, "allow_v4") == {"192.0.2.1"}


def test_failed_health_keeps_the_elements_and_fail_static_on_sigterm(ns, daemons, built):
    make_links(ns)
    d = daemons(ns, config([
        entry("sick", built["probe"], cfg=probe_cfg("sick", ["192.0.2.50"], health="failed",
                                                    health_message="upstream unreachable", log="probe says hello")),
        entry("meh", built["probe"], cfg=probe_cfg("meh", ["192.0.2.52"], health="degraded",
                                                   health_message="reconnecting")),
    ]))
    p = wait_plugin(d, "sick", health="failed", message="upstream unreachable")
    assert p["state"] == "running" and set_count(p, "allow_v4") == 1
    wait_plugin(d, "meh", health="degraded", message="reconnecting")
    assert "plugin sick: probe says hello" in d.log_text()
    st = assert_serving(d)
    assert {"name": "sick", "state": "running", "health": "failed"} in short(st["plugins"])
    assert_converged(ns, d, extra={"allow_v4": ["192.0.2.50", "192.0.2.52"]})
    code, took = d.stop(timeout=2)
    assert code == 0 and took < 2.0, took
    assert kernel_elements(ns, "allow_v4") == {"192.0.2.50", "192.0.2.52"}


def kernel_expiry(ns, set_name, table=TABLE):
    """{element: seconds until it expires, or None} as `nft -j list set` prints them (an element added
    without a timeout of its own gets the set's default from the kernel)."""
    data = json.loads(ns.nft("-j", "list", "set", "inet", table, set_name))
    out = {}
    for obj in data["nftables"]:
        for e in (obj.get("set") or {}).get("elem", []):
            if isinstance(e, dict) and "elem" in e:
                out[str(e["elem"]["val"])] = e["elem"].get("expires", e["elem"].get("timeout"))
            else:
                out[str(e)] = None
    return out


def test_plugin_timeouts_are_enforced_by_the_kernel(ns, daemons, built):
    make_links(ns)
    sets = SETS + [{"name": "ban_v4", "type": "ipv4_addr", "flags": ["timeout"], "timeout": "1h"}]
    d = daemons(ns, config([
        entry("short", built["probe"], sets=["ban_v4"],
              cfg=probe_cfg("short", ["192.0.2.60"], "ban_v4", timeout_ms=2000)),
        entry("default", built["probe"], sets=["ban_v4"], cfg=probe_cfg("default", ["192.0.2.61"], "ban_v4")),
        entry("shared", built["probe"], sets=["ban_v4"],
              cfg=probe_cfg("shared", ["192.0.2.61"], "ban_v4", timeout_ms=1000)),
    ], sets=sets))
    for name in ("short", "default", "shared"):
        wait_plugin(d, name, health="ok", accepted=1)
    k = kernel_expiry(ns, "ban_v4")
    # The kernel gets the time left (nft -j prints whole seconds); the latest owner deadline wins (the set's
    # default 1 h for timeout_ms 0, over "shared"'s 1 s).
    assert k["192.0.2.60"] in (0, 1, 2) and 3590 <= k["192.0.2.61"] <= 3600, k
    time.sleep(3)
    assert set(kernel_expiry(ns, "ban_v4")) == {"192.0.2.61"}
    assert "commit failed" not in d.log_text()
    assert_converged(ns, d, extra={"ban_v4": ["192.0.2.61"]})
    assert_serving(d)


# --- Refusals ---------------------------------------------------------------------------------------------

REFUSALS = {
    # variant or probe config: (plugin, config, state, fragments)
    "bad_magic": ("bad_magic", None, "refused", ["bad magic"]),
    "abi_major_2": ("major2", None, "refused", ["ABI major 2"]),
    "abi_minor_too_new": ("minor3", None, "refused", ["ABI 1.3"]),
    "no_entry_symbol": ("no_entry", None, "refused", ["does not export rnm_plugin_entry_v1"]),
    "struct_size_too_small": ("small", None, "refused", ["struct_size"]),
    "no_create": ("no_create", None, "refused", ["no create function"]),
    "entry_returns_null": ("null_entry", None, "refused", ["returned no descriptor"]),
    "other_swift_toolchain": ("swift510", None, "refused", ["swift-5.10"]),
    "not_an_elf_file": ("garbage", None, "refused", ["dlopen"]),
    "no_such_file": ("missing", None, "refused", ["No such file"]),
    "create_fails": ("probe", {"fail_create": "probe: the token is bad"}, "failed",
                     ["create failed", "probe: the token is bad"]),
    "start_fails": ("probe", {"fail_start": True}, "failed", ["start failed"]),
    "create_hangs": ("probe", {"hang": "create"}, "hung", ["did not return within"]),
    "start_hangs": ("probe", {"hang": "start"}, "hung", ["did not return within"]),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refusals_name_the_reason_and_leave_everything_else_running(ns, daemons, built, case):
    variant, extra_cfg, state, fragments = REFUSALS[case]
    make_links(ns)
    bad_cfg = dict(probe_cfg("bad", ["192.0.2.66"]), **(extra_cfg or {}))
    d = daemons(ns, config([
        entry("good", built["probe"], cfg=probe_cfg("good", ["192.0.2.10"])),
        entry("bad", built[variant], cfg=bad_cfg),
        entry("good2", built["probe"], cfg=probe_cfg("good2", ["192.0.2.11"])),
    ]))
    p = wait_plugin(d, "bad", timeout=20, state=state)
    for fragment in fragments:
        assert p["last_error"] is not None and fragment in p["last_error"], p
        assert fragment in d.log_text(), d.log_tail()
    assert set_count(p, "allow_v4") in (0, None) and p["accepted"] == 0
    if state == "refused":
        assert p["starts"] == 0
    for good in ("good", "good2"):
        g = wait_count(d, good, "allow_v4", 1)
        assert g["state"] == "running" and g["starts"] == 1 and g["health"] == "ok"
    st = assert_serving(d)
    assert {"name": "bad", "state": state, "health": p["health"]} in short(st["plugins"])
    assert_converged(ns, d, extra={"allow_v4": ["192.0.2.10", "192.0.2.11"]})
    assert "192.0.2.66" not in kernel_elements(ns, "allow_v4")
    code, took = d.stop(timeout=2)
    assert code == 0 and took < 2.0, f"SIGTERM took {took:.2f}s"


PERMISSIONS = {
    # case: (what to do to the tree, fragment or None if it must load)
    "file_not_root_owned": (lambda t: os.chown(t["file"], 65534, 65534), "owned by uid"),
    "file_world_writable": (lambda t: os.chmod(t["file"], 0o666), "writable by group or others"),
    "file_group_writable": (lambda t: os.chmod(t["file"], 0o664), "writable by group or others"),
    "directory_world_writable": (lambda t: os.chmod(t["dir"], 0o777), "writable by group or others"),
    "directory_not_root_owned": (lambda t: os.chown(t["dir"], 65534, 65534), "owned by uid"),
    "ancestor_world_writable": (lambda t: os.chmod(t["parent"], 0o777), "writable by group or others"),
    "ancestor_not_root_owned": (lambda t: os.chown(t["parent"], 65534, 65534), "owned by uid"),
    "ancestor_sticky_like_tmp": (lambda t: os.chmod(t["parent"], 0o1777), None),
    "symlink_to_a_good_file": (lambda t: t, None),
}


@pytest.mark.parametrize("case", list(PERMISSIONS))
def test_plugin_files_must_be_root_owned_and_not_writable_by_others(ns, daemons, built, case):
    change, fragment = PERMISSIONS[case]
    base = root_dir("rnm-perm-")
    try:
        parent = os.path.join(base, "lib")
        pdir = os.path.join(parent, "plugins")
        os.makedirs(pdir, mode=0o755)
        os.chmod(parent, 0o755)
        os.chmod(pdir, 0o755)
        target = os.path.join(pdir, "probe.so")
        if case == "symlink_to_a_good_file":
            os.symlink(built["probe"], target)
        else:
            shutil.copy(built["probe"], target)
            os.chmod(target, 0o644)
        change({"file": target, "dir": pdir, "parent": parent})
        # No path: the plugin is <plugin_dir>/<name>.so.
        d = daemons(ns, config([{"name": "probe", "sets": ["allow_v4"], "config": probe_cfg("probe", ["192.0.2.77"])}],
                               plugin_dir=pdir))
        if fragment is None:
            p = wait_count(d, "probe", "allow_v4", 1)
            assert p["state"] == "running" and p["path"] in (target, os.path.realpath(target))
            assert_converged(ns, d, extra={"allow_v4": ["192.0.2.77"]})
        else:
            p = wait_plugin(d, "probe", state="refused")
            assert p["last_error"] is not None and fragment in p["last_error"], p
            assert fragment in d.log_text()
            assert_serving(d)
            assert_converged(ns, d)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_config_errors_fail_check_and_reload_keeps_the_running_config(ns, daemons, built, tmp_path):
    make_links(ns)
    good = config([entry("one", built["probe"], cfg=probe_cfg("one", ["192.0.2.5"]))])
    d = daemons(ns, good)
    wait_count(d, "one", "allow_v4", 1)
    before = ns.nft("-j", "list", "table", "inet", TABLE)
    set_lines = "".join(f"  - {json.dumps(s)}\n" for s in SETS)
    head = f"table: {TABLE}\ninterfaces:\n  - name: wan0\n    zone: wan\nsets:\n{set_lines}" \
           f"control: {json.dumps(d.config['control'])}\nstate_dir: {d.config['state_dir']}\nplugins:\n"
    cases = [
        # (plugins block, line of the error within the block, field path, message fragment)
        (f"  - name: one\n    path: {built['probe']}\n    sets: [allow_v4, nope_v4]\n", 3, "plugins[0].sets[1]",
         'set "nope_v4" is not declared'),
        (f"  - name: one\n    path: {built['probe']}\n  - name: one\n    path: {built['probe']}\n", 3,
         "plugins[1].name", "duplicate plugin name"),
    ]
    for block, line, field, fragment in cases:
        text = head + block
        lineno = head.count("\n") + line
        path = tmp_path / "bad.yaml"
        path.write_text(text)
        r = subprocess.run(ns.exec_args(RNMD, "--check", "--config", str(path)), capture_output=True, text=True)
        assert r.returncode == 1, r
        assert f"{path}:{lineno}:" in r.stderr and field in r.stderr and fragment in r.stderr, r.stderr
        # The running daemon refuses the same file on reload and keeps its plugin and table.
        d.write_config(text=text)
        r = d.ctl("reload")
        assert r.returncode == 1 and f"{d.config_path}:{lineno}:" in r.stderr and field in r.stderr, r.stderr
        assert fragment in r.stderr
        p = plugin(d, "one")
        assert p["state"] == "running" and p["starts"] == 1 and set_count(p, "allow_v4") == 1
        assert ns.nft("-j", "list", "table", "inet", TABLE) == before
    d.write_config(good)
    assert_serving(d)
    assert_converged(ns, d, extra={"allow_v4": ["192.0.2.5"]})


def test_check_lists_plugins_and_warns_about_files_it_would_refuse(ns, built, tmp_path):
    writable = tmp_path / "writable.so"
    shutil.copy(built["probe"], writable)
    os.chmod(writable, 0o666)
    path = tmp_path / "config.yaml"
    path.write_text(f"table: {TABLE}\ninterfaces:\n  - name: wan0\n    zone: wan\n"
                    "sets:\n  - name: allow_v4\n    type: ipv4_addr\nplugins:\n"
                    f"  - name: good\n    path: {built['probe']}\n    sets: [allow_v4]\n"
                    f"  - name: writable\n    path: {writable}\n"
                    f"  - name: gone\n    path: {built['missing']}\n"
                    "  - name: off\n    enabled: false\n")
    r = subprocess.run(ns.exec_args(RNMD, "--check", "--config", str(path)), capture_output=True, text=True)
    # Files are checked where the daemon will run; a file it would refuse is a warning, not a config error.
    assert r.returncode == 0, r.stderr
    assert f"plugin good (sets allow_v4): {built['probe']}" in r.stdout
    assert "plugin off (disabled)" in r.stdout
    assert f"plugin writable would be refused: {writable}: writable by group or others" in r.stderr
    assert f"plugin gone would be refused: {built['missing']}: No such file" in r.stderr
    assert "plugin good would be refused" not in r.stderr
    assert ns.nft("list", "ruleset").strip() == ""


# --- ABI compatibility ------------------------------------------------------------------------------------

LAYOUT_PROBE = r"""
#include <stdio.h>
#include <stddef.h>
#include HEADER
#define F(t, f) printf(#t "." #f " %zu %zu\n", offsetof(t, f), sizeof(((t *)0)->f))
int main(void) {
    F(rnm_addr, family); F(rnm_addr, prefix_len); F(rnm_addr, reserved); F(rnm_addr, bytes);
    F(rnm_set_change, op); F(rnm_set_change, reserved); F(rnm_set_change, timeout_ms); F(rnm_set_change, addr);
    F(rnm_host_api, struct_size); F(rnm_host_api, abi_minor); F(rnm_host_api, log); F(rnm_host_api, set_apply);
    F(rnm_host_api, set_replace); F(rnm_host_api, addr_parse); F(rnm_host_api, set_health);
    F(rnm_host_api, wait_writable); F(rnm_host_api, addr_format);
    F(rnm_plugin_descriptor, struct_size); F(rnm_plugin_descriptor, magic); F(rnm_plugin_descriptor, abi_major);
    F(rnm_plugin_descriptor, abi_minor); F(rnm_plugin_descriptor, name); F(rnm_plugin_descriptor, version);
    F(rnm_plugin_descriptor, build_info); F(rnm_plugin_descriptor, create); F(rnm_plugin_descriptor, start);
    F(rnm_plugin_descriptor, reconfigure); F(rnm_plugin_descriptor, stop); F(rnm_plugin_descriptor, destroy);
    printf("sizeof.rnm_addr %zu\nsizeof.rnm_set_change %zu\n", sizeof(rnm_addr), sizeof(rnm_set_change));
    printf("const %d %u %s %u\n", RNM_ABI_MAJOR, RNM_PLUGIN_MAGIC, RNM_PLUGIN_ENTRY_V1, RNM_MAX_CHANGES);
    printf("codes %d %d %d %d %d %d %d %d %d\n", RNM_OK, RNM_ENOENT, RNM_E2BIG, RNM_EAGAIN, RNM_EINVAL,
           RNM_ENOTSUP, RNM_EAFNOSUPPORT, RNM_ESHUTDOWN, RNM_ETIMEDOUT);
    printf("ops %d %d health %d %d %d\n", RNM_OP_ADD, RNM_OP_REMOVE, RNM_HEALTH_OK, RNM_HEALTH_DEGRADED,
           RNM_HEALTH_FAILED);
    return 0;
}
"""


def test_the_header_keeps_every_v1_0_field_where_it_was(tmp_path):
    """Within major 1 the ABI only grows at the end: every v1.0 field keeps its offset and size, and every v1.0
    constant its value (the frozen copy is today's header; this guards later edits)."""
    src = tmp_path / "layout.c"
    src.write_text(LAYOUT_PROBE)
    outputs = []
    for header in (FROZEN_V1_0, os.path.join(ABI_INCLUDE, "rnm_plugin.h")):
        exe = tmp_path / "layout"
        subprocess.run(["cc", "-Wall", "-Werror", f'-DHEADER="{header}"', "-o", str(exe), str(src)], check=True)
        outputs.append(subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout)
    assert outputs[0] == outputs[1]


def test_older_and_newer_minor_plugins_load_and_a_too_new_one_is_refused(ns, daemons, built):
    make_links(ns)
    d = daemons(ns, config([
        entry("v1_0", built["probe_v1_0"], cfg=probe_cfg("v1_0", ["192.0.2.1"])),
        entry("future", built["future"], cfg=probe_cfg("future", ["192.0.2.2"])),
        entry("too_new", built["minor3"], cfg=probe_cfg("too_new", ["192.0.2.3"])),
    ]))
    p = wait_count(d, "v1_0", "allow_v4", 1)
    assert p["state"] == "running" and p["abi"] == "1.0" and p["plugin"] == "probe"
    f = wait_count(d, "future", "allow_v4", 1)
    assert f["state"] == "running" and f["abi"] == "1.0" and f["plugin"] == "probe-future" and f["last_error"] is None
    t = wait_plugin(d, "too_new", state="refused")
    assert "ABI 1.3" in t["last_error"]
    assert_serving(d)
    assert_converged(ns, d, extra={"allow_v4": ["192.0.2.1", "192.0.2.2"]})


# --- Reload -----------------------------------------------------------------------------------------------

def test_reload_touches_only_the_changed_plugins(ns, daemons, built, tmp_path):
    make_links(ns)
    trace = str(tmp_path / "trace")

    def cfg(a=("192.0.2.10",), b=("192.0.2.20",), c=("192.0.2.30",), a_extra=None, with_c=True, sets=SETS):
        plugins = [
            entry("a", built["probe_reconf"], cfg=probe_cfg("a", a, trace=trace, **(a_extra or {}))),
            entry("b", built["probe"], sets=["allow_v4", "plain_v4"], cfg=probe_cfg("b", b, trace=trace)),
        ]
        if with_c:
            plugins.append(entry("c", built["probe"], cfg=probe_cfg("c", c, trace=trace)))
        return config(plugins, sets=sets)

    def starts():
        return {p["name"]: p["starts"] for p in plugin_list(d)}

    d = daemons(ns, cfg())
    for name in "abc":
        wait_plugin(d, name, health="ok")
    assert starts() == {"a": 1, "b": 1, "c": 1}
    assert_converged(ns, d, extra={"allow_v4": ["192.0.2.10", "192.0.2.20", "192.0.2.30"]})

    # An unchanged reload touches nobody.
    assert reload(d, cfg()).returncode == 0
    time.sleep(0.3)
    assert starts() == {"a": 1, "b": 1, "c": 1}
    assert lifecycle(trace, "c") == ["create", "start"] and read_trace(trace, "c")[-1] == "applied 0"

    # a has reconfigure: it takes the new config in place. b has none: it is restarted. c is untouched.
    assert reload(d, cfg(a=["192.0.2.11"], b=["192.0.2.21"])).returncode == 0
    wait_count(d, "b", "allow_v4", 1)
    assert_converged(ns, d, extra={"allow_v4": ["192.0.2.11", "192.0.2.21", "192.0.2.30"]})
    assert starts() == {"a": 1, "b": 2, "c": 1}
    assert read_trace(trace, "a") == ["create", "start", "applied 0", "reconfigure", "applied 0"]
    assert lifecycle(trace, "b") == ["create", "start", "stop", "destroy", "create", "start"]
    assert lifecycle(trace, "c") == ["create", "start"]

    # A failing reconfigure falls back to a restart with the new config.
    assert reload(d, cfg(a=["192.0.2.12"], b=["192.0.2.21"], a_extra={"fail_reconfigure": True})).returncode == 0
    wait_plugin(d, "a", starts=2, state="running")
    assert_converged(ns, d, extra={"allow_v4": ["192.0.2.12", "192.0.2.21", "192.0.2.30"]})
    assert lifecycle(trace, "a") == ["create", "start", "reconfigure", "reconfigure", "stop", "destroy", "create",
                                     "start"]
    assert starts() == {"a": 2, "b": 2, "c": 1}

    # A changed definition of a set granted only to b restarts b alone.
    sets = [s if s["name"] != "plain_v4" else dict(s, flags=["timeout"]) for s in SETS]
    r = reload(d, cfg(a=["192.0.2.12"], b=["192.0.2.21"], a_extra={"fail_reconfigure": True}, sets=sets))
    assert r.returncode == 0, r.stderr
    wait_plugin(d, "b", starts=3, state="running")
    assert starts() == {"a": 2, "b": 3, "c": 1}
    assert lifecycle(trace, "b")[-4:] == ["stop", "destroy", "create", "start"]
    assert_converged(ns, d, extra={"allow_v4": ["192.0.2.12", "192.0.2.21", "192.0.2.30"]})

    # Removing c stops it and withdraws its elements; the others are untouched.
    assert reload(d, cfg(a=["192.0.2.12"], b=["192.0.2.21"], a_extra={"fail_reconfigure": True}, sets=sets,
                         with_c=False)).returncode == 0
    assert_converged(ns, d, extra={"allow_v4": ["192.0.2.12", "192.0.2.21"]})
    assert lifecycle(trace, "c") == ["create", "start", "stop", "destroy"]
    assert starts() == {"a": 2, "b": 3}
    assert_serving(d)


# --- Hangs ------------------------------------------------------------------------------------------------

def test_a_stop_that_hangs_is_abandoned_and_its_elements_withdrawn(ns, daemons, built):
    make_links(ns)
    plugins = [entry("stuck", built["probe"], cfg=probe_cfg("stuck", ["192.0.2.40", "192.0.2.42"], hang="stop")),
               entry("fine", built["probe"], cfg=probe_cfg("fine", ["192.0.2.41", "192.0.2.42"]))]
    d = daemons(ns, config(plugins))
    wait_count(d, "stuck", "allow_v4", 2)
    wait_count(d, "fine", "allow_v4", 2)
    d.write_config(config([dict(plugins[0], enabled=False), plugins[1]]))
    t0 = time.monotonic()
    r = subprocess.Popen([RNMCTL, "--socket", d.socket, "--timeout", "30", "reload"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    # While the stop hangs, the daemon answers and keeps following the network.
    ns.ip("addr", "add", "198.51.100.9/24", "dev", "wan0")
    t1 = time.monotonic()
    deadline = t1 + 15
    while "198.51.100.9" not in ns.table_sets(TABLE)["wan_v4"] and time.monotonic() < deadline:
        time.sleep(0.01)
    took_address = time.monotonic() - t1
    t1 = time.monotonic()
    st = d.ctl("--json", "status")
    took_status = time.monotonic() - t1
    out, err = r.communicate(timeout=40)
    took_reload = time.monotonic() - t0
    p = wait_plugin(d, "stuck", timeout=20, state="hung")
    took_hung = time.monotonic() - t0
    print(f"during the hung stop: status answered in {took_status:.2f}s, an address reached the set in "
          f"{took_address:.2f}s; reload answered after {took_reload:.2f}s, state hung after {took_hung:.2f}s")
    assert r.returncode == 0, err
    assert st.returncode == 0 and took_status < 1.0, f"status took {took_status:.2f}s while a plugin's stop hung"
    assert took_address < 1.0, f"an address change took {took_address:.2f}s while a plugin's stop hung"
    assert took_reload < 5.0, f"reload answered after {took_reload:.2f}s: rnmctl's default timeout is 5 s"
    assert "did not return within" in d.log_text()
    assert set_count(p, "allow_v4") in (0, None)
    f = plugin(d, "fine")
    assert f["state"] == "running" and f["starts"] == 1
    assert_converged(ns, d, extra={"allow_v4": ["192.0.2.41", "192.0.2.42"]})
    # The daemon keeps following the network and serving.
    ns.ip("addr", "add", "198.51.100.8/24", "dev", "wan0")
    assert_converged(ns, d, extra={"allow_v4": ["192.0.2.41", "192.0.2.42"]})
    code, took = d.stop(timeout=2)
    assert code == 0 and took < 2.0, f"SIGTERM took {took:.2f}s"


def address_latency(ns, address, timeout=15.0):
    """Adds an address to wan0 and returns how long it took to reach wan_v4 in the kernel."""
    ns.ip("addr", "add", f"{address}/24", "dev", "wan0")
    t0 = time.monotonic()
    while address not in (ns.table_sets(TABLE) or {}).get("wan_v4", set()):
        assert time.monotonic() - t0 < timeout, f"{address} never reached wan_v4"
        time.sleep(0.01)
    return time.monotonic() - t0


@pytest.mark.parametrize("call", ["create", "start", "reconfigure"])
def test_a_hanging_lifecycle_call_does_not_hold_up_the_daemon(ns, daemons, built, call):
    """A plugin stuck in create, start or reconfigure is abandoned after its watchdog; meanwhile the daemon
    keeps following the network and answering, and the reload that started it answers in time."""
    make_links(ns)
    good = entry("fine", built["probe"], cfg=probe_cfg("fine", ["192.0.2.41"]))
    stuck_cfg = probe_cfg("stuck", ["192.0.2.40"])
    plugins = [good] + ([entry("stuck", built["probe_reconf"], cfg=stuck_cfg)] if call == "reconfigure" else [])
    d = daemons(ns, config(plugins))
    wait_count(d, "fine", "allow_v4", 1)
    if call == "reconfigure":
        wait_count(d, "stuck", "allow_v4", 1)
    d.write_config(config([good, entry("stuck", built["probe_reconf"], cfg=dict(stuck_cfg, hang=call))]))
    t0 = time.monotonic()
    r = subprocess.Popen([RNMCTL, "--socket", d.socket, "--timeout", "30", "reload"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    took_address = address_latency(ns, "198.51.100.9")
    t1 = time.monotonic()
    st = d.ctl("--json", "status")
    took_status = time.monotonic() - t1
    _, err = r.communicate(timeout=40)
    took_reload = time.monotonic() - t0
    p = wait_plugin(d, "stuck", timeout=20, state="hung")
    print(f"{call} hangs: an address reached the set in {took_address:.2f}s, status answered in "
          f"{took_status:.2f}s, reload answered after {took_reload:.2f}s")
    assert r.returncode == 0, err
    assert "did not return within" in (p["last_error"] or "") and "did not return within" in d.log_text()
    assert set_count(p, "allow_v4") in (0, None)
    f = plugin(d, "fine")
    assert f["state"] == "running" and f["starts"] == 1
    assert_converged(ns, d, extra={"allow_v4": ["192.0.2.41"]})
    assert st.returncode == 0 and took_status < 1.0, f"status took {took_status:.2f}s while {call} hung"
    assert took_address < 1.0, f"an address change took {took_address:.2f}s while {call} hung"
    assert took_reload < 5.0, f"reload answered after {took_reload:.2f}s: rnmctl's default timeout is 5 s"


def test_a_plugin_hanging_in_create_does_not_delay_startup(ns, daemons, built):
    make_links(ns)
    t0 = time.monotonic()
    d = daemons(ns, config([entry("stuck", built["probe"], cfg=probe_cfg("stuck", ["192.0.2.40"], hang="create")),
                            entry("fine", built["probe"], cfg=probe_cfg("fine", ["192.0.2.41"]))]), wait=False)
    d.wait_for_log("converged", timeout=15)
    took_converged = time.monotonic() - t0
    wait_count(d, "fine", "allow_v4", 1)
    took_fine = time.monotonic() - t0
    wait_plugin(d, "stuck", timeout=20, state="hung")
    print(f"converged after {took_converged:.2f}s, the other plugin contributed after {took_fine:.2f}s")
    assert_converged(ns, d, extra={"allow_v4": ["192.0.2.41"]})
    assert took_converged < 2.0, f"the first convergence waited {took_converged:.2f}s for a hung create"
    assert took_fine < 2.0, f"the other plugin waited {took_fine:.2f}s for a hung create"


def test_sigterm_does_not_wait_for_a_plugin_whose_stop_hangs(ns, daemons, built):
    make_links(ns)
    d = daemons(ns, config([entry("stuck", built["probe"], cfg=probe_cfg("stuck", ["192.0.2.40"], hang="stop"))]))
    wait_count(d, "stuck", "allow_v4", 1)
    code, took = d.stop(timeout=10)
    assert code == 0 and took < 2.0, f"SIGTERM took {took:.2f}s"
    assert kernel_elements(ns, "allow_v4") == {"192.0.2.40"}  # fail-static


# --- A hostile plugin -------------------------------------------------------------------------------------

EXPECTED_PROBE = {
    "bad_op": -22, "bad_family": -22, "prefix_on_plain_set": -22, "prefix_too_long": -22,
    "undeclared_set": -2, "ungranted_set": -2, "wrong_family": -97, "timeout_without_flag": -95,
    "too_big": -7, "mixed_batch": -22,
}
CODE_KEYS = {-22: "invalid", -2: "not_granted", -97: "family", -95: "unsupported", -7: "too_big", -108: "shutdown"}


def test_a_flooding_hostile_plugin_gets_exactly_what_it_was_told_and_memory_stays_bounded(
        ns, daemons, built, tmp_path, record_property):
    make_links(ns)
    report = str(tmp_path / "flood.json")
    sets = SETS + [{"name": "flood_v4", "type": "ipv4_addr"}]
    d = daemons(ns, config([
        entry("good", built["probe"], cfg=probe_cfg("good", ["192.0.2.10"])),
        entry("flood", built["flood"], sets=["flood_v4"],
              cfg={"set": "flood_v4", "ungranted": "other_v4", "report": report, "total": 1000000, "threads": 4,
                   "hostile_every": 1000}),
    ], sets=sets))
    rss0 = d.rss_kib()
    rss_max = rss0
    t0 = time.monotonic()
    deadline = t0 + 300
    while True:
        rss_max = max(rss_max, d.rss_kib())
        p = plugin(d, "flood")
        if p["message"] == "done":
            break
        assert time.monotonic() < deadline, f"the flood did not finish: {p}\n{d.log_tail()}"
        d.assert_alive()
        time.sleep(0.05)
    flood_seconds = time.monotonic() - t0
    r = json.load(open(report))
    accepted = set(r["accepted"])
    codes = {int(k): v for k, v in r["codes"].items()}
    # Let the queue drain into the kernel, watching memory meanwhile.
    deadline = time.monotonic() + 60
    while set_count(plugin(d, "flood"), "flood_v4") != len(accepted):
        rss_max = max(rss_max, d.rss_kib())
        assert time.monotonic() < deadline, f"{plugin(d, 'flood')} vs {len(accepted)} accepted"
        time.sleep(0.1)
    rss_max = max(rss_max, d.rss_kib())
    record_property("rnmd_rss_kib_before", rss0)
    record_property("rnmd_rss_kib_max", rss_max)
    record_property("flood_seconds", round(flood_seconds, 2))
    print(f"flood: {r['calls']} calls in {r['elapsed_ms']} ms; codes {codes}; {len(accepted)} addresses accepted; "
          f"rnmd RSS {rss0 // 1024} MiB before, {rss_max // 1024} MiB at most")

    # Each kind of bad call, made on an empty queue, got its code.
    assert r["probe"] == EXPECTED_PROBE
    assert r["calls"] == 1000000 + len(EXPECTED_PROBE)
    assert sum(codes.values()) == r["calls"] and 1 not in codes, codes  # no status outside the ABI
    assert codes.get(0, 0) > 0 and accepted, "nothing was accepted"
    # The host's counters equal what the plugin saw, code for code.
    p = plugin(d, "flood")
    assert p["state"] == "running" and p["health"] == "ok"
    assert p["accepted"] == codes.get(0, 0)
    assert p["busy"] == codes.get(-11, 0)
    assert p["rejected"] == sum(v for k, v in codes.items() if k not in (0, -11))
    assert p["rejected_by"] == {name: codes.get(code, 0) for code, name in CODE_KEYS.items()}
    # Nothing from a refused call reached the set (all or nothing), and everything accepted did.
    assert r["accepted_other"] == []
    assert_converged(ns, d, timeout=30, extra={"flood_v4": accepted, "allow_v4": ["192.0.2.10"]})
    assert kernel_elements(ns, "flood_v4") == accepted
    assert rss_max < 200 * 1024, f"rnmd RSS reached {rss_max // 1024} MiB"
    # Everyone else was served all along.
    g = plugin(d, "good")
    assert g["state"] == "running" and set_count(g, "allow_v4") == 1 and g["rejected"] == 0
    assert_serving(d)
    assert_converged(ns, d, timeout=30, extra={"flood_v4": accepted, "allow_v4": ["192.0.2.10"]})
    # Removing the flood withdraws all of it at once.
    assert reload(d, config([entry("good", built["probe"], cfg=probe_cfg("good", ["192.0.2.10"]))],
                            sets=sets)).returncode == 0
    assert_converged(ns, d, timeout=30, extra={"allow_v4": ["192.0.2.10"]})
    assert kernel_elements(ns, "flood_v4") == set()
    assert plugin(d, "good")["starts"] == 1


def flood_entry(built, report, **cfg):
    c = {"set": "flood_v4", "ungranted": "other_v4", "report": report, "threads": 4}
    c.update(cfg)
    return entry("flood", built["flood"], sets=["flood_v4"], cfg=c)


def wait_report(d, report, timeout=120):
    """Waits for the flood plugin's "done", then returns its report."""
    wait_plugin(d, "flood", timeout=timeout, message="done")
    r = json.load(open(report))
    r["codes"] = {int(k): v for k, v in r["codes"].items()}
    return r


def test_a_polite_flood_gets_everything_in_through_wait_writable(ns, daemons, built, tmp_path):
    make_links(ns)
    report = str(tmp_path / "flood.json")
    sets = SETS + [{"name": "flood_v4", "type": "ipv4_addr"}]
    d = daemons(ns, config([flood_entry(built, report, total=200000, hostile_every=0, polite=True)], sets=sets))
    r = wait_report(d, report)
    codes = r["codes"]
    print(f"polite flood: {r['calls']} calls in {r['elapsed_ms']} ms; codes {codes}")
    assert r["probe"] == EXPECTED_PROBE
    # Every good call got in eventually; each busy answer was followed by a wait, and nothing else failed.
    assert codes.get(0, 0) == 200000
    assert set(codes) <= {0, -11} | set(EXPECTED_PROBE.values())
    p = plugin(d, "flood")
    assert p["accepted"] == 200000 and p["busy"] == codes.get(-11, 0)
    assert p["rejected"] == len(EXPECTED_PROBE)
    accepted = set(r["accepted"])
    assert_converged(ns, d, timeout=30, extra={"flood_v4": accepted})
    assert set_count(plugin(d, "flood"), "flood_v4") == len(accepted)


def test_a_plugin_that_ignores_stop_is_cut_off_and_withdrawn(ns, daemons, built, tmp_path):
    """Its threads keep calling after stop() began; the host answers RNM_ESHUTDOWN (so stop() returns) and
    nothing queued late makes it into the set."""
    make_links(ns)
    report = str(tmp_path / "flood.json")
    sets = SETS + [{"name": "flood_v4", "type": "ipv4_addr"}]
    flood = flood_entry(built, report, hostile_every=0, until_shutdown=True)
    good = entry("good", built["probe"], cfg=probe_cfg("good", ["192.0.2.10"]))
    d = daemons(ns, config([good, flood], sets=sets))
    wait_plugin(d, "flood", accepted=lambda n: n is not None and n > 10000)
    r = reload(d, config([good, dict(flood, enabled=False)], sets=sets))
    assert r.returncode == 0, r.stderr
    p = wait_plugin(d, "flood", state="disabled")
    deadline = time.monotonic() + 10
    while not os.path.exists(report):
        assert time.monotonic() < deadline, "the flood's threads never ended"
        time.sleep(0.05)
    codes = {int(k): v for k, v in json.load(open(report))["codes"].items()}
    print(f"cut off after {sum(codes.values())} calls: {codes}; listed as {json.dumps(p)}")
    assert codes.get(-108) == 4, codes  # one RNM_ESHUTDOWN per thread, which then stopped
    assert "did not return within" not in d.log_text()
    assert_converged(ns, d, extra={"allow_v4": ["192.0.2.10"]})
    assert kernel_elements(ns, "flood_v4") == set()
    time.sleep(1)
    assert kernel_elements(ns, "flood_v4") == set()
    assert plugin(d, "good")["starts"] == 1
    assert_serving(d)


# --- The asynchronous host: restarts without a gap, slow plugins, transitional states -------------------

def element_events(m, set_name, since=0, table=TABLE):
    """(op, element) for every element an `nft monitor` saw added to or deleted from a set, after line
    `since`; a flush of the set or a deletion of the table shows as ("flush", "*")."""
    out = []
    with m.lock:
        lines = list(m.lines[since:])
    for line in lines:
        words = line.split()
        if words[:5] in (["flush", "set", "inet", table, set_name], ["delete", "set", "inet", table, set_name]) \
                or words[:4] in (["delete", "table", "inet", table], ["flush", "table", "inet", table]):
            out.append(("flush", "*"))
        elif len(words) > 5 and words[1] == "element" and words[2:5] == ["inet", table, set_name] \
                and words[0] in ("add", "delete"):
            body = line[line.index("{") + 1:line.rindex("}")]
            for e in body.split(","):
                e = e.strip().split()[0] if e.strip() else ""
                if e:
                    out.append((words[0], normalise(e)))
    return out


def monitor_mark(m):
    with m.lock:
        return len(m.lines)


class SetWatch:
    """Polls a set in the kernel on a thread (as fast as `nft -j list set` goes) and records every sample in
    which an element was missing, and how many samples it took."""

    def __init__(self, ns, set_name, elements):
        self.ns, self.set_name, self.elements = ns, set_name, set(elements)
        self.samples, self.missing = 0, []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()

    def _poll(self):
        while not self.stopping.is_set():
            have = (self.ns.table_sets(TABLE) or {}).get(self.set_name, set())
            self.samples += 1
            if self.elements - have:
                self.missing.append((time.monotonic(), sorted(self.elements - have)))

    def stop(self):
        self.stopping.set()
        self.thread.join(timeout=10)
        return self.missing


def timed(f, *args, **kw):
    t0 = time.monotonic()
    r = f(*args, **kw)
    return r, time.monotonic() - t0


def observe_states(d, name, until, timeout=15.0):
    """Polls `plugins list --json`; returns the distinct states plugin `name` went through (in order) until
    `until(plugin)` holds."""
    seen = []
    deadline = time.monotonic() + timeout
    while True:
        p = plugin(d, name)
        state = p["state"] if p else None
        if not seen or seen[-1] != state:
            seen.append(state)
        if p is not None and until(p):
            return seen
        assert time.monotonic() < deadline, f"{name}: states {seen}; never reached the end\n{d.log_tail()}"
        d.assert_alive()
        time.sleep(0.02)


def monitor_transactions(m, since=0):
    """The lines an `nft monitor` printed after line `since`, one list per transaction."""
    with m.lock:
        lines = list(m.lines[since:])
    out, current = [], []
    for line in lines:
        if line.startswith("# new generation"):
            out.append(current)
            current = []
        else:
            current.append(line)
    return out


def wall_seconds(rfc3339):
    """`since` as seconds since the epoch."""
    return datetime.datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


NO_GAP_CASES = {
    # case: (set, X, only the old instance's, only the new one's, X as the kernel's coverage, ms the old
    # instance's stop() and the new one's start() take)
    "plain_quick": ("plain_v4", "192.0.2.10", "192.0.2.11", "192.0.2.12", "192.0.2.10", 0),
    "plain_slow": ("plain_v4", "192.0.2.10", "192.0.2.11", "192.0.2.12", "192.0.2.10", 800),
    "interval_quick": ("allow_v4", "10.1.0.0/16", "192.0.2.11", "192.0.2.13", "10.1.0.0-10.1.255.255", 0),
}


@pytest.mark.parametrize("case", list(NO_GAP_CASES))
def test_a_restart_that_recontributes_in_start_leaves_no_gap(ns, daemons, built, monitor_factory, tmp_path, case):
    """A plugin without reconfigure is restarted by a `config:` change; its new instance contributes X again
    from start(). X never leaves the kernel (no delete of it in `nft monitor`, and a poller never misses it),
    the old instance's elements stay while it stops and the new one starts (also across a commit for an
    address change meanwhile), and what only the old one had goes after."""
    set_name, x, old_only, new_only, x_coverage, slow_ms = NO_GAP_CASES[case]
    make_links(ns)
    trace = str(tmp_path / "trace")
    first = entry("p", built["probe"], sets=[set_name],
                  cfg=probe_cfg("p", [x, old_only], set_name, in_start=True, trace=trace, sleep_stop_ms=slow_ms))
    d = daemons(ns, config([first]))
    wait_count(d, "p", set_name, 2)
    assert_converged(ns, d, extra={set_name: [x, old_only]})
    m = monitor_factory(ns)
    mark = monitor_mark(m)
    watch = SetWatch(ns, set_name, [x_coverage])
    second = entry("p", built["probe"], sets=[set_name],
                   cfg=probe_cfg("p", [x, new_only], set_name, in_start=True, trace=trace, sleep_start_ms=slow_ms))
    r = reload(d, config([second]))
    assert r.returncode == 0, r.stderr
    if slow_ms:
        # While the old instance stops and the new one starts, the old instance's elements are all still
        # there, also after a commit for something else.
        seen = [plugin(d, "p")["state"]]
        assert kernel_elements(ns, set_name) == {x, old_only}, seen
        assert address_latency(ns, "198.51.100.9", timeout=2) < 0.5
        p = wait_plugin(d, "p", state="starting", timeout=2)
        assert kernel_elements(ns, set_name) == {x, old_only}, p
        assert seen == ["stopping"], seen
    wait_plugin(d, "p", state="running", starts=2)
    assert_converged(ns, d, extra={set_name: [x, new_only]})
    # Let a late commit show up in the monitor before judging.
    assert m.wait_for(lambda ls: any(f"delete element inet {TABLE} {set_name}" in l for l in ls[mark:]), 5), \
        m.lines[mark:]
    time.sleep(0.3)
    missing = watch.stop()
    events = element_events(m, set_name, since=mark)
    print(f"restart ({case}): {watch.samples} samples of the set, events {events}")
    assert lifecycle(trace, "p") == ["create", "start", "stop", "destroy", "create", "start"]
    assert read_trace(trace, "p")[-1] == "applied 0"
    assert ("flush", "*") not in events, events
    assert ("delete", x) not in events, f"{x} was deleted during the restart: {events}"
    assert ("delete", old_only) in events and ("add", new_only) in events, events
    assert watch.samples > 3 and missing == [], f"{x} was missing from the kernel in {len(missing)} of " \
                                                 f"{watch.samples} samples"
    assert kernel_elements(ns, set_name) == {x, new_only}
    assert plugin(d, "p")["sets"] == [{"name": set_name, "elements": 2}]


RESTART_FAILURES = {
    # case: (the old instance's extra config, the new entry's variant, its extra config, state, error, starts)
    "create_fails": ({}, "probe", {"fail_create": "probe: the new token is bad"}, "failed",
                     "create failed (-22): probe: the new token is bad", 1),
    "start_fails": ({}, "probe", {"fail_start": True}, "failed", "start failed", 2),
    "refused": ({}, "missing", {}, "refused", "No such file", 1),
    "create_hangs": ({}, "probe", {"hang": "create"}, "hung", "create did not return within", 1),
    "old_stop_hangs": ({"hang": "stop"}, "probe", {"hang": "stop", "log": "v2"}, "hung", "stop did not return within", 1),
}


@pytest.mark.parametrize("case", list(RESTART_FAILURES))
def test_a_restart_whose_new_instance_fails_withdraws_the_old_elements(ns, daemons, built, monitor_factory, case):
    """The new instance fails, is refused or hangs until the watchdog abandons it (or the old one hangs in
    stop): the old instance's elements are withdrawn then, except those other owners hold too (another
    plugin, a manual entry, the config). Until then they stay."""
    old_extra, variant, new_extra, state, error, starts = RESTART_FAILURES[case]
    make_links(ns)
    shared_plugin, shared_manual, shared_config, own = "192.0.2.20", "192.0.2.21", "192.0.2.22", "192.0.2.23"
    sets = [s if s["name"] != "plain_v4" else dict(s, elements=[shared_config]) for s in SETS]
    addrs = [shared_plugin, shared_manual, shared_config, own]
    other = entry("other", built["probe"], sets=["plain_v4"], cfg=probe_cfg("other", [shared_plugin], "plain_v4"))
    a = entry("a", built["probe"], sets=["plain_v4"], cfg=probe_cfg("a", addrs, "plain_v4", **old_extra))
    d = daemons(ns, config([a, other], sets=sets))
    wait_count(d, "a", "plain_v4", 4)
    wait_count(d, "other", "plain_v4", 1)
    d.ctl("set", "add", "plain_v4", shared_manual, check=True)
    assert_converged(ns, d, extra={"plain_v4": addrs + [shared_plugin]})
    m = monitor_factory(ns)
    mark = monitor_mark(m)
    r = reload(d, config([entry("a", built[variant], sets=["plain_v4"], cfg=probe_cfg("a", addrs, "plain_v4", **new_extra)),
                          other], sets=sets))
    assert r.returncode == 0, r.stderr
    if state == "hung":
        time.sleep(1)
        p = plugin(d, "a")
        assert p["state"] == ("stopping" if case == "old_stop_hangs" else "starting"), p
        assert kernel_elements(ns, "plain_v4") == set(addrs), "withdrawn before the instance was abandoned"
    p = wait_plugin(d, "a", state=state, timeout=10)
    assert error in p["last_error"], p
    assert p["starts"] == starts, p
    assert_converged(ns, d, extra={"plain_v4": [shared_plugin]})
    assert kernel_elements(ns, "plain_v4") == {shared_plugin, shared_manual, shared_config}
    assert set_count(plugin(d, "a"), "plain_v4") in (0, None)
    o = plugin(d, "other")
    assert o["state"] == "running" and o["starts"] == 1 and set_count(o, "plain_v4") == 1
    assert m.wait_for(lambda ls: any(f"delete element inet {TABLE} plain_v4" in l for l in ls[mark:]), 5)
    time.sleep(0.3)
    events = element_events(m, "plain_v4", since=mark)
    assert events == [("delete", own)], events
    assert "plugin a: withdrew its 4 elements" in d.log_text(), d.log_tail()
    assert_serving(d)


def test_a_slow_start_holds_up_neither_addresses_nor_the_control_socket(ns, daemons, built):
    """start() takes 2 s (legal: within the watchdog). Meanwhile the reload has answered (the plugin
    "starting"), an address change reaches its zone set at once, ping and status answer at once; then the
    plugin runs and its elements are in the kernel."""
    make_links(ns)
    fast = entry("fast", built["probe"], cfg=probe_cfg("fast", ["192.0.2.30"]))
    d = daemons(ns, config([fast]))
    wait_count(d, "fast", "allow_v4", 1)
    slow = entry("slow", built["probe"], cfg=probe_cfg("slow", ["192.0.2.32"], sleep_start_ms=2000))
    d.write_config(config([fast, slow]))
    t0 = time.monotonic()
    r, took_reload = timed(d.ctl, "--json", "reload")
    assert r.returncode == 0, r.stderr
    answered = {p["name"]: p["state"] for p in result_of(r.stdout)["plugins"]}
    took_address = address_latency(ns, "198.51.100.9", timeout=5)
    ping, took_ping = timed(d.ctl, "ping")
    st, took_status = timed(d.ctl, "--json", "status")
    during = plugin(d, "slow")
    elapsed = time.monotonic() - t0
    print(f"during a 2 s start: reload answered in {took_reload:.2f}s, an address reached the set in "
          f"{took_address:.2f}s, ping {took_ping:.2f}s, status {took_status:.2f}s (all within {elapsed:.2f}s)")
    assert elapsed < 1.9, f"the measurements took {elapsed:.2f}s: they did not all fall within the slow start"
    assert during["state"] == "starting", during
    assert answered == {"fast": "running", "slow": "starting"}, answered
    assert took_reload < 0.5, f"reload answered after {took_reload:.2f}s while a plugin started"
    assert took_address < 0.5, f"an address change took {took_address:.2f}s while a plugin started"
    assert ping.returncode == 0 and took_ping < 0.5, f"ping took {took_ping:.2f}s"
    assert st.returncode == 0 and took_status < 0.5, f"status took {took_status:.2f}s"
    assert {"name": "slow", "state": "starting", "health": None} in short(result_of(st.stdout)["plugins"])
    p = wait_count(d, "slow", "allow_v4", 1, timeout=10)
    assert p["state"] == "running" and p["starts"] == 1 and p["last_error"] is None
    assert time.monotonic() - t0 > 1.9, "the plugin was running before its start() returned"
    assert kernel_elements(ns, "allow_v4") == {"192.0.2.30", "192.0.2.32"}
    assert plugin(d, "fast")["starts"] == 1
    assert_converged(ns, d, extra={"allow_v4": ["192.0.2.30", "192.0.2.32"]})


def test_transitional_states_are_listed(ns, daemons, built):
    """starting (at daemon start and on a restart), reconfiguring and stopping show in `plugins list` and
    `status` while the call runs; the contribution stays in the kernel during a slow reconfigure."""
    make_links(ns)
    d = daemons(ns, config([entry("slow", built["probe_reconf"], cfg=probe_cfg("slow", ["192.0.2.40"], sleep_start_ms=1000))]))
    # The first convergence did not wait for the plugin: it is still starting.
    assert plugin(d, "slow")["state"] == "starting"
    assert {"name": "slow", "state": "starting", "health": None} in short(assert_serving(d)["plugins"])
    assert observe_states(d, "slow", lambda p: p["state"] == "running")[-2:] == ["starting", "running"]
    wait_count(d, "slow", "allow_v4", 1)

    # A slow reconfigure: "reconfiguring", the contribution unchanged meanwhile, then the new one.
    r = reload(d, config([entry("slow", built["probe_reconf"],
                                cfg=probe_cfg("slow", ["192.0.2.41"], sleep_start_ms=1000, sleep_reconfigure_ms=1000))]))
    assert r.returncode == 0, r.stderr
    p = wait_plugin(d, "slow", state="reconfiguring", timeout=1)
    assert kernel_elements(ns, "allow_v4") == {"192.0.2.40"}
    assert {"name": "slow", "state": "reconfiguring", "health": "ok"} in short(assert_serving(d)["plugins"]), p
    seen = observe_states(d, "slow", lambda p: p["state"] == "running" and set_count(p, "allow_v4") == 1
                          and "192.0.2.41" in kernel_elements(ns, "allow_v4"))
    assert seen == ["reconfiguring", "running"], seen
    assert plugin(d, "slow")["starts"] == 1
    assert_converged(ns, d, extra={"allow_v4": ["192.0.2.41"]})

    # A restart (the path changed) with a slow stop and a slow start: stopping, then starting, then running.
    # (First taken in place by reconfigure, so that the running instance's stop is the slow one.)
    cfg = probe_cfg("slow", ["192.0.2.42"], sleep_start_ms=1000, sleep_stop_ms=1000)
    assert reload(d, config([entry("slow", built["probe_reconf"], cfg=cfg)])).returncode == 0
    wait_plugin(d, "slow", state="running")
    assert reload(d, config([entry("slow", built["probe"], cfg=cfg)])).returncode == 0
    seen = observe_states(d, "slow", lambda p: p["state"] == "running" and p["starts"] == 2)
    assert seen == ["stopping", "starting", "running"], seen
    assert_converged(ns, d, extra={"allow_v4": ["192.0.2.42"]})

    # Disabled with a slow stop: "stopping", then "disabled".
    assert reload(d, config([entry("slow", built["probe"], cfg=cfg, enabled=False)])).returncode == 0
    seen = observe_states(d, "slow", lambda p: p["state"] == "disabled")
    assert seen == ["stopping", "disabled"], seen
    assert_converged(ns, d)


def test_several_plugins_hanging_in_create_are_abandoned_together(ns, daemons, built):
    """Three creates hang at once: each is abandoned by the watchdog about 5 s after it began, all together
    (not one after the other: 10 and 15 s); the daemon answers and follows the network meanwhile. The first
    look after the deadline already finds them hung (the watchdog needs nobody to wake the daemon). The
    watchdog times each call: a plugin whose create and start take 2.8 s each (5.6 s in all) runs."""
    make_links(ns)
    good = entry("fine", built["probe"], cfg=probe_cfg("fine", ["192.0.2.50"]))
    d = daemons(ns, config([good]))
    wait_count(d, "fine", "allow_v4", 1)
    stuck = [entry(f"stuck{i}", built["probe"], cfg=probe_cfg(f"stuck{i}", [f"192.0.2.{60 + i}"], hang="create"))
             for i in range(3)]
    slowpoke = entry("slowpoke", built["probe"],
                     cfg=probe_cfg("slowpoke", ["192.0.2.55"], sleep_create_ms=2800, sleep_start_ms=2800))
    d.write_config(config([good] + stuck + [slowpoke]))
    t0, w0 = time.monotonic(), time.time()
    r = d.ctl("--json", "reload")
    assert r.returncode == 0, r.stderr
    assert {p["name"]: p["state"] for p in result_of(r.stdout)["plugins"]} == \
        {"fine": "running", "stuck0": "starting", "stuck1": "starting", "stuck2": "starting", "slowpoke": "starting"}
    # Twice during the hang: the daemon answers and takes an address change at once.
    latencies = []
    for i, at in enumerate((1.0, 2.5)):
        time.sleep(max(0.0, t0 + at - time.monotonic()))
        _, took_ping = timed(d.ctl, "ping", check=True)
        st, took_status = timed(d.ctl, "--json", "status", check=True)
        took_address = address_latency(ns, f"198.51.100.{20 + i}", timeout=5)
        latencies.append((took_ping, took_status, took_address))
        assert [p["state"] for p in result_of(st.stdout)["plugins"]] == ["running"] + ["starting"] * 4
    time.sleep(max(0.0, t0 + 6.5 - time.monotonic()))
    listed = {p["name"]: p for p in plugin_list(d)}
    hung_at = {n: round(wall_seconds(p["since"]) - w0, 3) for n, p in listed.items() if n.startswith("stuck")}
    running_at = round(wall_seconds(listed["slowpoke"]["since"]) - w0, 3)
    print(f"hung after {hung_at}, slowpoke running after {running_at} (s after the reload); while they hung "
          f"(ping, status, address): "
          f"{[tuple(round(x, 2) for x in l) for l in latencies]}")
    for took_ping, took_status, took_address in latencies:
        assert took_ping < 0.5 and took_status < 0.5 and took_address < 0.5, latencies
    assert {n: p["state"] for n, p in listed.items()} == \
        {"fine": "running", "stuck0": "hung", "stuck1": "hung", "stuck2": "hung", "slowpoke": "running"}, d.log_tail()
    assert min(hung_at.values()) > 4.9, f"abandoned before the 5 s watchdog: {hung_at}"
    assert max(hung_at.values()) < 6.0, f"abandoned late: {hung_at}"
    assert max(hung_at.values()) - min(hung_at.values()) < 0.5, f"not abandoned together: {hung_at}"
    for s in stuck:
        p = listed[s["name"]]
        assert "create did not return within" in p["last_error"], p
        assert set_count(p, "allow_v4") in (0, None)
    assert d.count_log("hung: create did not return within") == 3
    assert listed["fine"]["starts"] == 1
    assert listed["slowpoke"]["starts"] == 1 and listed["slowpoke"]["last_error"] is None and running_at > 5.5
    wait_count(d, "slowpoke", "allow_v4", 1)
    assert_serving(d)
    assert_converged(ns, d, extra={"allow_v4": ["192.0.2.50", "192.0.2.55"]})
    code, took = d.stop(timeout=2)
    assert code == 0 and took < 2.0, f"SIGTERM took {took:.2f}s with three threads stuck in create"


def test_many_plugins_starting_and_stopping_at_once_are_never_abandoned_early(ns, daemons, built):
    """150 plugins start at once (create and start taking a few ms each), then are removed at once; three
    rounds. No call is anywhere near the 5 s watchdog, so none may end "hung": a call that begins while the
    reconciler checks the watchdogs must not count as overdue."""
    make_links(ns)
    d = daemons(ns, config([]))
    n = 150

    def settle(t0, done):
        while True:
            listed = plugin_list(d)
            hung = [(p["name"], p["last_error"]) for p in listed if p["state"] == "hung"]
            assert not hung, f"{len(hung)} of {n} abandoned {time.monotonic() - t0:.2f}s after the reload " \
                             f"(no call took more than 50 ms): {hung[:3]}"
            if done(listed):
                return
            assert time.monotonic() - t0 < 15, [(p["name"], p["state"]) for p in listed if not done([p])]
            time.sleep(0.05)

    for r in range(3):
        addresses = [f"10.{r}.{i}.1" for i in range(n)]
        plugins = [entry(f"p{i}", built["probe"], sets=["plain_v4"],
                         cfg=probe_cfg(f"p{i}", [addresses[i]], "plain_v4", sleep_create_ms=i * 7 % 50,
                                       sleep_start_ms=i * 3 % 50, sleep_stop_ms=i * 5 % 30))
                   for i in range(n)]
        t0 = time.monotonic()
        assert reload(d, config(plugins)).returncode == 0
        settle(t0, lambda listed: len(listed) == n and all(p["state"] == "running" for p in listed))
        assert_converged(ns, d, extra={"plain_v4": addresses})
        t0 = time.monotonic()
        assert reload(d, config([])).returncode == 0
        settle(t0, lambda listed: listed == [])
        assert_converged(ns, d)
    assert "hung" not in d.log_text()
    assert_serving(d)


@pytest.mark.parametrize("case", ["disabled_while_starting", "removed_while_starting", "disabled_while_reconfiguring"])
def test_a_plugin_going_away_and_back_while_its_job_runs_ends_running_with_its_elements(ns, daemons, built,
                                                                                       tmp_path, case):
    """While a slow start (or reconfigure) runs, a reload disables (or removes) the plugin: when the job is
    done it is stopped, with nothing left in the kernel. And if the next reload puts it back as it was before
    the job is done, the plugin ends running with its elements in the kernel, as after a plain start."""
    make_links(ns)
    trace = str(tmp_path / "trace")
    fine = entry("fine", built["probe"], cfg=probe_cfg("fine", ["192.0.2.80"]))
    variant = "probe_reconf" if case == "disabled_while_reconfiguring" else "probe"
    busy = "reconfiguring" if case == "disabled_while_reconfiguring" else "starting"

    def slow(address, **kw):
        return entry("slow", built[variant], cfg=probe_cfg("slow", [address], trace=trace, sleep_start_ms=1000,
                                                           sleep_reconfigure_ms=1000, reconfigure_ok=True), **kw)

    def away(address):
        return config([fine]) if case == "removed_while_starting" else config([fine, slow(address, enabled=False)])

    def begin_job(address):
        """A reload that makes the slow job run: a start, or (the plugin running) a reconfigure."""
        if busy == "reconfiguring":
            assert reload(d, config([fine, entry("slow", built[variant], cfg=probe_cfg("slow", ["192.0.2.88"]))])
                          ).returncode == 0
            wait_count(d, "slow", "allow_v4", 1)
            wait_plugin(d, "slow", state="running")
        assert reload(d, config([fine, slow(address)])).returncode == 0
        assert plugin(d, "slow")["state"] == busy

    d = daemons(ns, config([fine]))
    wait_count(d, "fine", "allow_v4", 1)

    # Away while the job runs: stopped when it is done, nothing left.
    begin_job("192.0.2.82")
    assert reload(d, away("192.0.2.82")).returncode == 0
    if case == "removed_while_starting":
        deadline = time.monotonic() + 5
        while plugin(d, "slow") is not None:
            assert time.monotonic() < deadline, plugin(d, "slow")
            time.sleep(0.05)
    else:
        wait_plugin(d, "slow", state="disabled", timeout=5)
    assert_converged(ns, d, extra={"allow_v4": ["192.0.2.80"]})
    assert lifecycle(trace, "slow")[-2:] == ["stop", "destroy"]

    # Away and back before the job is done: running, its elements in the kernel.
    begin_job("192.0.2.84")
    assert reload(d, away("192.0.2.84")).returncode == 0
    assert reload(d, config([fine, slow("192.0.2.84")])).returncode == 0
    p = plugin(d, "slow")
    assert p["state"] == busy, f"the {busy} job should still run: {p}"
    wait_plugin(d, "slow", state="running", timeout=5)
    time.sleep(0.5)
    p = plugin(d, "slow")
    print(f"{case}: {json.dumps(p)}; trace {read_trace(trace, 'slow')}")
    assert p["state"] == "running" and p["health"] == "ok", p
    assert p["rejected_by"]["shutdown"] == 0, f"the running instance is cut off: {p}"
    assert_converged(ns, d, extra={"allow_v4": ["192.0.2.80", "192.0.2.84"]})
    assert set_count(plugin(d, "slow"), "allow_v4") == 1
    assert plugin(d, "fine")["starts"] == 1


@pytest.mark.parametrize("when", ["daemon_start", "restart"])
def test_sigterm_while_a_plugin_starts_exits_at_once_and_leaves_the_table(ns, daemons, built, monitor_factory, when):
    """SIGTERM while a plugin's start() sleeps 3 s: rnmd exits within 2 s, and the table stays as last
    committed (fail-static), with another plugin's elements and, on a restart, the previous instance's. rnmd
    started again (the plugin quick now) takes them over without a gap: they are in its first table load."""
    make_links(ns)
    steady = entry("steady", built["probe"], cfg=probe_cfg("steady", ["192.0.2.70"]))
    slow_cfg = probe_cfg("slow", ["192.0.2.72"], sleep_start_ms=3000)
    if when == "daemon_start":
        d = daemons(ns, config([steady, entry("slow", built["probe"], cfg=slow_cfg)]))
        wait_count(d, "steady", "allow_v4", 1)
        expected = {"192.0.2.70"}
    else:
        d = daemons(ns, config([steady, entry("slow", built["probe"], cfg=probe_cfg("slow", ["192.0.2.72"]))]))
        wait_count(d, "steady", "allow_v4", 1)
        wait_count(d, "slow", "allow_v4", 1)
        assert reload(d, config([steady, entry("slow", built["probe"], cfg=slow_cfg)])).returncode == 0
        expected = {"192.0.2.70", "192.0.2.72"}  # the previous instance's, kept while the new one starts
    assert_converged(ns, d, extra={"allow_v4": expected})
    assert plugin(d, "slow")["state"] == "starting"
    before = ns.table_sets(TABLE)
    code, took = d.stop(timeout=2)
    print(f"SIGTERM during a slow start ({when}): exit {code} after {took:.2f}s")
    assert code == 0 and took < 2.0, f"SIGTERM took {took:.2f}s while a plugin was starting\n{d.log_tail()}"
    assert "left as last committed" in d.log_text()
    assert ns.table_sets(TABLE) == before
    assert kernel_elements(ns, "allow_v4") == expected
    assert "198.51.100.7" in before["wan_v4"]

    m = monitor_factory(ns)
    mark = monitor_mark(m)
    d.write_config(config([steady, entry("slow", built["probe"], cfg=probe_cfg("slow", ["192.0.2.72"]))]))
    d.start()
    wait_count(d, "slow", "allow_v4", 1)
    assert_converged(ns, d, extra={"allow_v4": ["192.0.2.70", "192.0.2.72"]})
    time.sleep(0.3)
    txs = monitor_transactions(m, mark)
    loads = [i for i, tx in enumerate(txs) if f"add table inet {TABLE}" in tx]
    assert len(loads) == 1, txs
    load = txs[loads[0]]
    for e in expected:
        assert f"add element inet {TABLE} allow_v4 {{ {e} }}" in load, f"{e} not in the first load: {load}"
    later = [l for tx in txs[loads[0] + 1:] for l in tx]
    assert not any(l.startswith(f"delete element inet {TABLE} allow_v4") for l in later), later
