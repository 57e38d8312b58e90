"""The Debian package, as a user gets it: built by `make deb`, checked by lintian, installed with apt into a
fresh Debian 12 minbase chroot (Debian's packages only, no Swift), and run there: the binaries and the
plugin resolve every library, the shipped config checks, the unit verifies, the SDK builds the C example,
and rnmd runs confined the way rnmd.service confines it (the unit's capability bounding set, its group,
NoNewPrivileges, a read-only file system but its runtime and state directories, private /tmp, no /home,
and MemoryDenyWriteExecute as PR_SET_MDWE plus systemd 252's seccomp filter) with the Docker plugin
talking to a stand-in engine and the C example loaded. Removal and purge come last.

RNM_DEB names the package (default: dist/rnm_<VERSION>_amd64.deb). The chroot's base comes from
Tests/package/make-chroot.sh (debootstrap once per machine, cached under /var/cache/rnm-package-test).
Nothing here touches the host's network: rnmd runs in network namespaces made for the test."""
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import pytest
import yaml

from conftest import record
from fake_docker import CONTAINER_IP, FakeDocker

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
VERSION = open(os.path.join(ROOT, "VERSION")).read().strip()
DEB = os.environ.get("RNM_DEB") or os.path.join(ROOT, "dist", f"rnm_{VERSION}_amd64.deb")
UNIT = os.path.join(ROOT, "pkg-files", "systemd", "rnmd.service")
PACKAGING_DOC = os.path.join(ROOT, "docs", "packaging.md")
HOST_PYTHON = "/usr/bin/python3"  # Debian's, with python3-seccomp
CHROOT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LC_ALL": "C.UTF-8",
    "HOME": "/root",
    "DEBIAN_FRONTEND": "noninteractive",
}
APT = ["apt-get", "-q", "-y", "-o", "Dpkg::Use-Pty=0", "--no-install-recommends"]
SWIFT_LIB = re.compile(r"^(libswift\w*|libdispatch|libBlocksRuntime|libFoundation\w*|lib_Foundation\w*)\.so")


def run(cmd, check=True, input=None, timeout=300, env=None):
    p = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout, env=env)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {p.returncode}\nstdout: {p.stdout[-3000:]}\n"
                             f"stderr: {p.stderr[-3000:]}")
    return p


class Chroot:
    """A directory with a Debian system in it. Every command runs in a private mount namespace with /proc
    mounted, so nothing is ever left mounted on the host."""

    def __init__(self, path):
        self.path = path

    def p(self, *parts):
        return os.path.join(self.path, *[x.lstrip("/") for x in parts])

    def args(self, *cmd, net=False, netns=None):
        script = 'mount -t proc proc "$0/proc" && exec chroot "$0" "$@"'
        a = ["unshare", "--mount", "--propagation", "private", "--fork", *(["--net"] if net else []),
             "sh", "-c", script, self.path, *cmd]
        return ["ip", "netns", "exec", netns, *a] if netns else a

    def run(self, *cmd, check=True, net=False, netns=None, input=None, timeout=300):
        return run(self.args(*cmd, net=net, netns=netns), check=check, input=input, timeout=timeout,
                   env=CHROOT_ENV)

    def pids(self, name):
        """Processes called `name` (comm) that run inside this chroot, sandboxed or not."""
        out = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if open(f"/proc/{pid}/comm").read().strip() != name:
                    continue
                root = os.readlink(f"/proc/{pid}/root")
            except OSError:
                continue
            # Seen from the host, a process in the sandbox's own mount namespace has a root that resolves
            # to the chroot's path too (it is a bind mount of it).
            if os.path.realpath(root) == os.path.realpath(self.path) or root == self.path:
                out.append(int(pid))
        return out


def unit_settings():
    """The [Service] settings of the shipped unit, as {key: [values]}."""
    out, section = {}, None
    for line in open(UNIT):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
            continue
        key, _, value = line.partition("=")
        out.setdefault((section, key), []).append(value)
    return out


def elf_files(c):
    files = ["/usr/sbin/rnmd", "/usr/bin/rnmctl", "/usr/lib/rnm/plugins/docker.so"]
    files += sorted("/usr/lib/rnm/swift/" + f for f in os.listdir(c.p("/usr/lib/rnm/swift")))
    return files


def runpath(path):
    out = run(["readelf", "-d", path]).stdout
    m = re.search(r"\((RUNPATH|RPATH)\)\s+Library r(?:un)?path: \[(.*)\]", out)
    return (m.group(1), m.group(2)) if m else (None, None)


# --- The .deb itself ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def deb():
    if not os.path.exists(DEB):
        pytest.fail(f"{DEB} does not exist: run `make deb` first")
    return DEB


def test_the_version_comes_from_the_version_file(deb):
    assert os.path.basename(deb) == f"rnm_{VERSION}_amd64.deb"
    assert run(["dpkg-deb", "-f", deb, "Version"]).stdout.strip() == VERSION
    assert run(["dpkg-deb", "-f", deb, "Package", "Architecture"]).stdout.split() == [
        "Package:", "rnm", "Architecture:", "amd64"]


def test_package_layout_depends_and_conffiles(deb):
    listing = run(["dpkg-deb", "-c", deb]).stdout.splitlines()
    entries = {}
    for line in listing:
        mode, owner, _size, _date, _time, path = line.split(None, 5)
        entries[path[1:] if path.startswith(".") else path] = (mode, owner)
    assert all(owner == "root/root" for _, owner in entries.values())
    want = {
        "/usr/sbin/rnmd": "-rwxr-xr-x", "/usr/bin/rnmctl": "-rwxr-xr-x",
        "/usr/lib/rnm/plugins/docker.so": "-rw-r--r--",
        "/usr/lib/rnm/swift/libswiftCore.so": "-rw-r--r--",
        "/lib/systemd/system/rnmd.service": "-rw-r--r--",
        "/usr/lib/sysusers.d/rnm.conf": "-rw-r--r--", "/usr/lib/tmpfiles.d/rnm.conf": "-rw-r--r--",
        "/etc/rnm/config.yaml": "-rw-r--r--", "/etc/rnm/rules.d/common.nft": "-rw-r--r--",
        "/etc/rnm/rules.d/router.nft": "-rw-r--r--", "/etc/rnm/rules.d/host.nft": "-rw-r--r--",
        "/usr/share/man/man8/rnmd.8.gz": "-rw-r--r--", "/usr/share/man/man1/rnmctl.1.gz": "-rw-r--r--",
        "/usr/share/bash-completion/completions/rnmctl": "-rw-r--r--",
        "/usr/share/zsh/vendor-completions/_rnmctl": "-rw-r--r--",
        "/usr/share/fish/vendor_completions.d/rnmctl.fish": "-rw-r--r--",
        "/usr/include/rnm/rnm_plugin.h": "-rw-r--r--",
        "/usr/lib/x86_64-linux-gnu/pkgconfig/rnm-plugin.pc": "-rw-r--r--",
        "/usr/share/doc/rnm/copyright": "-rw-r--r--", "/usr/share/doc/rnm/changelog.gz": "-rw-r--r--",
        "/usr/share/doc/rnm/README.md": "-rw-r--r--", "/usr/share/doc/rnm/packaging.md": "-rw-r--r--",
    }
    for path, mode in want.items():
        assert path in entries, f"{path} is not in the package"
        assert entries[path][0] == mode, (path, entries[path])
    assert not [p for p in entries if p.startswith(("/opt", "/usr/local", "/var", "/run", "/tmp"))]
    # Every directory is 0755, and nothing is writable by group or others (plugins are refused otherwise).
    assert all(m == "drwxr-xr-x" for m, _ in entries.values() if m.startswith("d"))
    assert not [p for p, (m, _) in entries.items() if m[5] == "w" or m[8] == "w"]
    ctl = tempfile.mkdtemp()
    try:
        run(["dpkg-deb", "-e", deb, ctl])
        conffiles = open(os.path.join(ctl, "conffiles")).read().split()
        etc = sorted(p for p, (m, _) in entries.items() if p.startswith("/etc/") and m.startswith("-"))
        assert sorted(conffiles) == etc
        control = open(os.path.join(ctl, "control")).read()
    finally:
        shutil.rmtree(ctl)
    depends = re.search(r"^Depends: (.*)$", control, re.M).group(1)
    names = {d.split()[0] for d in depends.split(", ")}
    for lib in ("libmnl0", "libnftnl11", "libnftables1", "libyaml-0-2", "libc6", "libstdc++6", "libgcc-s1",
                "procps", "passwd"):
        assert lib in names, f"Depends lacks {lib}: {depends}"
    assert not [n for n in names if "swift" in n]


def test_lintian_reports_no_errors_and_only_the_documented_warnings(deb):
    p = run(["lintian", "--display-info", "--pedantic", "--fail-on", "error", deb], check=False, timeout=600)
    tags = re.findall(r"^([EWIP]): rnm(?: \w+)?: (\S+)", p.stdout, re.M)
    assert p.returncode == 0 and not [t for t in tags if t[0] == "E"], p.stdout + p.stderr
    doc = open(PACKAGING_DOC).read()
    undocumented = sorted({f"{sev}: {tag}" for sev, tag in tags if f"`{tag}`" not in doc})
    assert not undocumented, f"lintian tags not explained in docs/packaging.md: {undocumented}\n{p.stdout}"


def test_sysusers_and_tmpfiles_entries_do_what_they_say(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    for f in ("passwd", "group"):
        (root / "etc" / f).write_text("root:x:0:\n" if f == "group" else "root:x:0:0:root:/root:/bin/sh\n")
    run(["systemd-sysusers", f"--root={root}", os.path.join(ROOT, "pkg-files/sysusers.d/rnm.conf")])
    assert re.search(r"^rnm:x:\d+:", (root / "etc/group").read_text(), re.M)
    run(["systemd-tmpfiles", f"--root={root}", "--create", os.path.join(ROOT, "pkg-files/tmpfiles.d/rnm.conf")])
    st = os.stat(root / "var/lib/rnm")
    gid = int(re.search(r"^rnm:x:(\d+):", (root / "etc/group").read_text(), re.M).group(1))
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o750, 0, gid)


# --- Installed in a fresh Debian 12 ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def chroot(deb):
    path = tempfile.mkdtemp(prefix="rnm-pkg-chroot-", dir="/var/tmp")
    c = Chroot(path)
    try:
        t0 = time.monotonic()
        run([os.path.join(HERE, "make-chroot.sh"), path], timeout=900)
        record("chroot ready (make-chroot.sh: debootstrap or the cached tarball)", time.monotonic() - t0)
        # Nothing of Swift before the package comes.
        assert not os.path.exists(c.p("/opt/swift"))
        found = run(["find", path, "-xdev", "-name", "libswiftCore.so*"]).stdout.split()
        assert not found, found
        shutil.copy(deb, c.p("/tmp/rnm.deb"))
        t0 = time.monotonic()
        c.run("apt-get", "-q", "update", timeout=600)
        c.run(*APT, "install", "/tmp/rnm.deb", timeout=900)
        record("apt-get update + install rnm.deb with its Depends", time.monotonic() - t0)
        yield c
    finally:
        mounted = [l for l in open("/proc/self/mountinfo") if f" {path}" in l]
        if mounted:
            print(f"warning: leaving {path}: still mounted: {mounted}", file=sys.stderr)
        else:
            shutil.rmtree(path, ignore_errors=True)


def test_swift_runtime_is_private_and_every_library_resolves(chroot):
    c = chroot
    assert c.run("dpkg-query", "-W", "-f=${Status}", "rnm").stdout == "install ok installed"
    # The only Swift on the system is the package's private runtime.
    found = run(["find", c.path, "-xdev", "-name", "libswiftCore.so*"]).stdout.split()
    assert found == [c.p("/usr/lib/rnm/swift/libswiftCore.so")], found
    for f in elf_files(c):
        ldd = c.run("ldd", f).stdout
        assert "not found" not in ldd, f"{f}:\n{ldd}"
        for line in ldd.splitlines():
            m = re.match(r"\s*(\S+) => (\S+)", line)
            if m and SWIFT_LIB.match(m.group(1)):
                assert os.path.normpath(m.group(2)).startswith("/usr/lib/rnm/swift/"), f"{f}: {line}"
        kind, rp = runpath(c.p(f))
        if f in ("/usr/sbin/rnmd", "/usr/bin/rnmctl"):
            assert (kind, rp) == ("RUNPATH", "$ORIGIN/../lib/rnm/swift"), f
        elif f.startswith("/usr/lib/rnm/plugins/"):
            assert (kind, rp) == ("RUNPATH", "$ORIGIN/../swift"), f
        else:
            assert rp in (None, "$ORIGIN") and kind != "RPATH", (f, kind, rp)


def test_rnmd_and_rnmctl_run(chroot):
    c = chroot
    assert c.run("rnmd", "--version").stdout.strip() == VERSION
    assert c.run("rnmctl", "--version").stdout.strip() == VERSION
    assert "--check" in c.run("rnmd", "--help").stdout
    help_text = c.run("rnmctl", "--help").stdout
    assert "status" in help_text and "reload" in help_text
    # No daemon: rnmctl says so with its documented exit code.
    p = c.run("rnmctl", "status", check=False)
    assert p.returncode == 3 and "cannot connect" in p.stderr


def test_shipped_config_checks_in_a_scratch_network_namespace(chroot):
    # As root --check also has the kernel dry-run the rendered table: in a network namespace of its own,
    # never against the host's ruleset.
    p = chroot.run("rnmd", "--check", "--config", "/etc/rnm/config.yaml", net=True, check=False)
    assert p.returncode == 0, p.stdout + p.stderr


def test_maintainer_scripts_made_the_group_and_state_dir_and_enabled_but_did_not_start(chroot):
    c = chroot
    group = c.run("getent", "group", "rnm").stdout
    gid = int(group.split(":")[2])
    st = os.stat(c.p("/var/lib/rnm"))
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o750, 0, gid)
    link = c.p("/etc/systemd/system/multi-user.target.wants/rnmd.service")
    assert os.readlink(link) == "/lib/systemd/system/rnmd.service"
    assert c.pids("rnmd") == []
    assert not os.path.exists(c.p("/run/rnm/rnmd.sock"))


def test_unit_verifies_and_man_pages_render(chroot):
    c = chroot
    # systemd is not in a minbase chroot: the host's systemd-analyze reads the chroot's files (--root), so
    # ExecStart= and ExecReload= must exist there. The man pages are checked below (--man=no here: the
    # host's man cannot see the chroot's).
    p = run(["systemd-analyze", "verify", f"--root={c.path}", "--man=no", "/lib/systemd/system/rnmd.service"],
            check=False)
    assert p.returncode == 0 and p.stdout.strip() == "" and p.stderr.strip() == "", p.stdout + p.stderr
    for page, section in (("rnmd", 8), ("rnmctl", 1)):
        p = run(["man", "--warnings", "-l", c.p(f"/usr/share/man/man{section}/{page}.{section}.gz")],
                env={"MANWIDTH": "100", "LC_ALL": "C.UTF-8", "PATH": os.environ["PATH"]}, check=False)
        assert p.returncode == 0 and "NAME" in p.stdout and page in p.stdout, p.stderr
        assert p.stderr.strip() == "", f"{page}.{section}: {p.stderr}"
    # The rnmd page documents every option rnmd --help lists.
    help_text = c.run("rnmd", "--help").stdout
    page = run(["man", "-l", c.p("/usr/share/man/man8/rnmd.8.gz")], env={"MANWIDTH": "200", "LC_ALL": "C.UTF-8",
                                                                     "PATH": os.environ["PATH"]}).stdout
    page = re.sub(r".\x08", "", page)
    for option in sorted(set(re.findall(r"--[a-z][a-z-]+", help_text))):
        assert option in page, f"rnmd.8 does not document {option}"


@pytest.fixture(scope="module")
def example_plugin(chroot):
    """The shipped C example, built in the chroot against the installed SDK and installed the way
    docs/plugins.md says (root's, 0644, in a root-owned directory): its path inside the chroot."""
    c = chroot
    t0 = time.monotonic()
    c.run(*APT, "install", "gcc", "libc6-dev", "make", "pkg-config", timeout=900)
    record("apt-get install gcc libc6-dev make pkg-config (for the SDK test)", time.monotonic() - t0)
    c.run("sh", "-c", "rm -rf /tmp/example-c && cp -r /usr/share/doc/rnm/examples/example-c /tmp/")
    c.run("make", "-C", "/tmp/example-c")
    c.run("install", "-D", "-o", "root", "-g", "root", "-m", "0644", "/tmp/example-c/example.so",
          "/opt/rnm-example/example.so")
    return "/opt/rnm-example/example.so"


def test_the_c_example_plugin_builds_against_the_installed_sdk(chroot, example_plugin):
    c = chroot
    assert c.run("pkg-config", "--cflags", "rnm-plugin").stdout.strip() == "-I/usr/include/rnm"
    assert c.run("pkg-config", "--modversion", "rnm-plugin").stdout.strip()
    # What the example's header comment says, by hand (its Makefile built example.so the same way).
    c.run("sh", "-c", "cd /tmp/example-c && cc -shared -fPIC -fvisibility=hidden -Wall -Wextra -Werror "
                      "$(pkg-config --cflags rnm-plugin) -o by-hand.so example.c -lpthread")
    for so in ("/tmp/example-c/by-hand.so", example_plugin):
        exported = c.run("sh", "-c", f"nm -D --defined-only {so} | awk '{{print $3}}'").stdout.split()
        assert exported == ["rnm_plugin_entry_v1"], (so, exported)


# --- rnmd confined as rnmd.service confines it ----------------------------------------------------------

# Runs "$@" the way systemd would run ExecStart= with the unit's sandboxing, inside a private mount
# namespace (and the test's network namespace): ProtectSystem=strict (the whole tree read-only but the
# API filesystems and the Runtime/StateDirectory), PrivateTmp=, ProtectHome=. $0 is the chroot.
SANDBOX = r"""
set -e
C=$0
mount --rbind "$C" "$C"
mount -t proc proc "$C/proc"
mount -t sysfs sysfs "$C/sys"
for d in run/rnm var/lib/rnm; do mount --bind "$C/$d" "$C/$d"; done
mount -t tmpfs -o mode=1777 tmpfs "$C/tmp"
mount -t tmpfs -o mode=1777 tmpfs "$C/var/tmp"
mount -t tmpfs -o ro,mode=0755 tmpfs "$C/home"
mount -t tmpfs -o ro,mode=0700 tmpfs "$C/root"
mount -o remount,bind,ro "$C"
umask 0022
exec "$@"
"""


class Notify:
    """A NOTIFY_SOCKET listener: collects the datagrams rnmd sends."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.lines = []
        self.running = True
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while self.running:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            self.lines += [(time.monotonic(), l) for l in data.decode().split("\n") if l]

    def wait_for(self, prefix, after=0.0, timeout=20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, l in list(self.lines):
                if t >= after and l.startswith(prefix):
                    return l
            time.sleep(0.02)
        raise AssertionError(f"no {prefix!r} from rnmd: {self.lines}")

    def close(self):
        self.running = False
        self.sock.close()
        os.unlink(self.path)


def unit_capabilities(settings):
    """The unit's CapabilityBoundingSet= (an allow list) as names."""
    caps = " ".join(settings[("[Service]", "CapabilityBoundingSet")]).split()
    assert caps and not [c for c in caps if c.startswith("~")]
    return caps


def capability_mask(names):
    numbers = dict(re.findall(r"^#define (CAP_[A-Z_]+)\s+(\d+)\s*$", open("/usr/include/linux/capability.h").read(), re.M))
    return f"{sum(1 << int(numbers[n]) for n in names):016x}"


def test_rnmd_runs_confined_like_the_unit_with_both_plugins(chroot, example_plugin):
    c = chroot
    settings = unit_settings()
    svc = lambda key: settings.get(("[Service]", key), [None])[-1]
    assert svc("Type") == "notify" and svc("ProtectSystem") == "strict" and svc("NoNewPrivileges") == "yes"
    assert svc("RuntimeDirectory") == "rnm" and svc("StateDirectory") == "rnm"
    group = svc("Group")
    caps = unit_capabilities(settings)
    mdwe = svc("MemoryDenyWriteExecute") == "yes"
    if mdwe:
        run([HOST_PYTHON, os.path.join(HERE, "mdwe_exec.py"), "--selftest"])

    # The test's network: eth0 (wan, a DHCP-style address) and eth1 (lan) as the shipped config names them.
    ns = f"rnmpkg-{uuid.uuid4().hex[:8]}"
    run(["ip", "netns", "add", ns])
    fake = notify = proc = None
    try:
        ipn = lambda *a: run(["ip", "-n", ns, *a])
        ipn("link", "set", "lo", "up")
        ipn("link", "add", "eth0", "type", "veth", "peer", "name", "up0")
        ipn("link", "add", "eth1", "type", "veth", "peer", "name", "up1")
        for i in ("eth0", "up0", "eth1", "up1"):
            ipn("link", "set", i, "up")
        ipn("addr", "add", "198.51.100.7/24", "dev", "eth0")

        # The shipped config, plus the Docker plugin and the C example with a set each.
        config = yaml.safe_load(open(c.p("/etc/rnm/config.yaml")))
        config["sets"] += [{"name": "web_v4", "type": "ipv4_addr"},
                           {"name": "allow_v4", "type": "ipv4_addr", "flags": ["interval"]}]
        config["plugins"] = [
            {"name": "docker", "sets": ["web_v4"],
             "config": {"socket": "/run/docker.sock", "rules": [{"label": "app", "value": "web", "set_v4": "web_v4"}]}},
            {"name": "example", "path": example_plugin, "sets": ["allow_v4"],
             "config": {"set": "allow_v4", "addresses": ["192.0.2.1", "10.0.0.0/8"]}},
        ]
        with open(c.p("/etc/rnm/pkgtest.yaml"), "w") as f:
            yaml.safe_dump(config, f, sort_keys=False)
        c.run("rnmd", "--check", "--config", "/etc/rnm/pkgtest.yaml", netns=ns)

        # What systemd does before ExecStart=: RuntimeDirectory= (root:<Group> 0750), the notify socket.
        gid = int(c.run("getent", "group", group).stdout.split(":")[2])
        os.makedirs(c.p("/run/rnm"), exist_ok=True)
        os.chown(c.p("/run/rnm"), 0, gid)
        os.chmod(c.p("/run/rnm"), 0o750)
        fake = FakeDocker(c.p("/run/docker.sock"))
        notify = Notify(c.p("/run/rnm-test-notify.sock"))

        bounding = ",".join(["-all"] + ["+" + cap.lower().removeprefix("cap_") for cap in caps])
        inner = ["chroot", c.path, "setpriv", f"--regid={group}", "--clear-groups", f"--bounding-set={bounding}",
                 "--inh-caps=-all", "--no-new-privs", "/usr/sbin/rnmd", "--config", "/etc/rnm/pkgtest.yaml"]
        if mdwe:
            inner = [HOST_PYTHON, os.path.join(HERE, "mdwe_exec.py"), "--mode", "both", "--", *inner]
        env = dict(CHROOT_ENV, NOTIFY_SOCKET="/run/rnm-test-notify.sock", WATCHDOG_USEC="1000000")
        log = open(c.p("/var/tmp/rnmd-pkgtest.log"), "w+")
        t_start = time.monotonic()
        proc = subprocess.Popen(["ip", "netns", "exec", ns, "unshare", "--mount", "--propagation", "private",
                                 "--fork", "sh", "-c", SANDBOX, c.path, *inner],
                                stdout=log, stderr=subprocess.STDOUT, env=env)
        ctl = lambda *a, check=True: c.run("rnmctl", *a, check=check)
        notify.wait_for("READY=1", timeout=30)
        record("rnmd confined: start to READY=1", time.monotonic() - t_start)
        assert any(l.startswith("STATUS=") for _, l in notify.lines)
        notify.wait_for("WATCHDOG=1", timeout=5)

        pids = c.pids("rnmd")
        assert len(pids) == 1, pids
        status = open(f"/proc/{pids[0]}/status").read()
        field = lambda name: re.search(rf"^{name}:\s+(.*)$", status, re.M).group(1).split()
        mask = capability_mask(caps)
        assert field("CapBnd") == [mask] and field("CapEff") == [mask], status
        assert field("NoNewPrivs") == ["1"] and field("Gid")[:2] == [str(gid)] * 2
        if mdwe:
            assert field("Seccomp") == ["2"]

        # The sandbox is real: in rnmd's mount namespace / is read-only, /run/rnm and /var/lib/rnm are not,
        # /tmp is its own.
        mounts = {}
        for line in open(f"/proc/{pids[0]}/mountinfo"):
            fields = line.split()
            mounts[fields[4]] = (fields[5].split(","), fields[fields.index("-") + 1])
        assert "ro" in mounts["/"][0], mounts
        assert "rw" in mounts["/run/rnm"][0] and "rw" in mounts["/var/lib/rnm"][0], mounts
        assert mounts["/tmp"][1] == "tmpfs" and "ro" in mounts["/home"][0], mounts

        # It converged with the shipped templates and both plugins, and answers on its socket.
        assert "ready" in ctl("status").stdout

        def plugins():
            return {p["name"]: p for p in json.loads(ctl("--json", "plugins", "list").stdout)["result"]}

        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            p = plugins()
            if all(p[n]["state"] == "running" and p[n].get("health") == "ok" for n in ("docker", "example")):
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"plugins never became healthy: {json.dumps(p)}\n{open(log.name).read()}")
        nft = lambda s: run(["ip", "netns", "exec", ns, "nft", "list", "set", "inet", "rnm", s]).stdout
        deadline = time.monotonic() + 10
        while CONTAINER_IP not in nft("web_v4") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert CONTAINER_IP in nft("web_v4")
        assert "192.0.2.1" in nft("allow_v4") and "10.0.0.0/8" in nft("allow_v4")
        assert "198.51.100.7" in nft("wan_v4") and "192.168.1.1" in nft("lan_v4")
        assert any(r.startswith("/containers/json") for r in fake.requests)

        # The network side under CAP_NET_ADMIN alone: the lan address added, forwarding sysctls written.
        assert "192.168.1.1/24" in run(["ip", "-n", ns, "addr", "show", "eth1"]).stdout
        for key in ("net.ipv6.conf.all.forwarding", "net.ipv6.conf.eth1.forwarding", "net.ipv4.conf.eth1.forwarding"):
            assert run(["ip", "netns", "exec", ns, "sysctl", "-n", key]).stdout.strip() == "1", key

        # The control socket is root:<Group> 0660 in the RuntimeDirectory; manual entries persist in the
        # StateDirectory, the only other writable place.
        st = os.stat(c.p("/run/rnm/rnmd.sock"))
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660 and (st.st_uid, st.st_gid) == (0, gid)
        ctl("set", "add", "blocklist_v4", "192.0.2.99", "timeout", "1h")
        assert "192.0.2.99" in open(c.p("/var/lib/rnm/manual.json")).read()
        assert "in sync" in ctl("plan").stdout

        # The documented limit of the unit's capabilities: plan cannot work out a changed table's structure
        # without CAP_SYS_ADMIN; reloads (SIGHUP, as ExecReload= sends it, and rnmctl reload) still work.
        text = open(c.p("/etc/rnm/pkgtest.yaml")).read()
        with open(c.p("/etc/rnm/pkgtest.yaml"), "w") as f:
            f.write(text.replace("ssh_port: 22", "ssh_port: 2222"))
        p = ctl("plan", check=False)
        if "CAP_SYS_ADMIN" not in caps:
            assert p.returncode == 1 and "CAP_SYS_ADMIN" in p.stderr, p.stdout + p.stderr
        before = time.monotonic()
        os.kill(pids[0], signal.SIGHUP)
        notify.wait_for("RELOADING=1", after=before)
        notify.wait_for("READY=1", after=before)
        assert "2222" in run(["ip", "netns", "exec", ns, "nft", "list", "chain", "inet", "rnm", "input"]).stdout
        with open(c.p("/etc/rnm/pkgtest.yaml"), "w") as f:
            f.write(text)
        assert "reloaded" in ctl("reload").stdout
        assert "in sync" in ctl("plan").stdout

        # SIGTERM (systemctl stop): STOPPING=1, exit 0, the table stays.
        before = time.monotonic()
        os.kill(pids[0], signal.SIGTERM)
        assert proc.wait(timeout=10) == 0, open(log.name).read()
        notify.wait_for("STOPPING=1", after=before, timeout=1)
        assert CONTAINER_IP in nft("web_v4")
        proc = None
        text = open(log.name).read()
        assert "converged" in text and not re.search(r"^<[0-3]>", text, re.M), text
    finally:
        if proc is not None:
            for pid in c.pids("rnmd"):
                os.kill(pid, signal.SIGKILL)
            proc.wait(timeout=10)
        if fake:
            fake.close()
        if notify:
            notify.close()
        run(["ip", "netns", "del", ns], check=False)
        for f in ("/etc/rnm/pkgtest.yaml",):
            if os.path.exists(c.p(f)):
                os.unlink(c.p(f))
        shutil.rmtree(c.p("/run/rnm"), ignore_errors=True)


# --- Upgrade, removal, purge (last: they change the chroot) ---------------------------------------------

def test_reinstall_keeps_the_admins_choices_then_remove_and_purge_clean_up(chroot):
    c = chroot
    link = c.p("/etc/systemd/system/multi-user.target.wants/rnmd.service")
    # An admin's edit to a conffile survives a reinstall (the upgrade path of the maintainer scripts).
    with open(c.p("/etc/rnm/config.yaml"), "a") as f:
        f.write("# edited by the admin\n")
    c.run("dpkg", "-i", "--force-confold", "/tmp/rnm.deb")
    assert open(c.p("/etc/rnm/config.yaml")).read().endswith("# edited by the admin\n")
    assert os.path.islink(link)
    # Disabled by the admin (what `systemctl disable` does to the links): a reinstall leaves it disabled.
    os.unlink(link)
    c.run("dpkg", "-i", "--force-confold", "/tmp/rnm.deb")
    assert not os.path.lexists(link)
    os.symlink("/lib/systemd/system/rnmd.service", link)

    c.run("dpkg", "-r", "rnm")
    for f in ("/usr/sbin/rnmd", "/usr/bin/rnmctl", "/usr/lib/rnm", "/lib/systemd/system/rnmd.service",
              "/usr/include/rnm", "/usr/lib/x86_64-linux-gnu/pkgconfig/rnm-plugin.pc"):
        assert not os.path.exists(c.p(f)), f
    assert os.path.exists(c.p("/etc/rnm/config.yaml"))  # conffiles stay until purge
    c.run("dpkg", "-P", "rnm")
    for f in ("/etc/rnm", "/var/lib/rnm"):
        assert not os.path.exists(c.p(f)), f
    assert not os.path.lexists(link)
    leftovers = run(["find", c.p("/etc/systemd"), c.p("/var/lib/systemd"), "-name", "*rnmd*"], check=False).stdout
    assert leftovers.strip() == "", leftovers
    assert c.run("dpkg-query", "-W", "-f=${Status}", "rnm", check=False).stdout.strip() in ("", "unknown ok not-installed")
    # The group stays (system groups are not removed: files elsewhere may belong to it).
    assert c.run("getent", "group", "rnm").returncode == 0
