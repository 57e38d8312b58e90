"""A real Docker engine for the integration tests: a small Engine API client over the Unix socket, a dockerd
the tests start only when none answers, a tiny busybox image made here (nothing is pulled), per-test
bookkeeping that removes every container and network a test created, and the Docker side of the
convergence oracle.

The engine is reached through its HTTP API with version negotiation (`/_ping` names the server's API
version), so the same code works against Debian's dockerd 20.10 and newer engines, whichever docker CLI is
on PATH. The CLI is used nowhere.

dockerd policy:
- If /var/run/docker.sock answers `_ping`, that dockerd is the user's: the tests use it, never stop or
  restart it, and remove only what they created (containers and networks carry a label naming this test
  session; the image is removed at the end only if this session imported it).
- If a dockerd runs that would clash with ours (it serves that socket, or uses docker0 or our roots) but
  the socket does not answer within 20 s, the Docker tests skip: a second dockerd is never started beside
  a user's. A dockerd with a socket, bridge and roots of its own (a benchmark's) does not count.
- Otherwise the session starts its own: `--iptables=false --ip6tables=false --ip-forward=false` (no host
  firewall or sysctl changes), its own data and exec roots (/var/lib/rnm-test-docker, /run/rnm-test-docker)
  so a user's /var/lib/docker is never touched, a daemon.json of its own (live-restore is switched on by
  SIGHUP only for a restart that needs it), listening on /var/run/docker.sock (the plugin's default). It is
  stopped at the end of the session; docker0 is deleted then if it did not exist before.

Environment: RNM_DOCKERD (dockerd binary, default from PATH), RNM_DOCKER_DATA_ROOT, RNM_DOCKER_EXEC_ROOT,
RNM_KEEP (keep dockerd's log directory).
"""
import hashlib
import http.client
import io
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import threading
import time
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

DOCKER_SOCKET = "/var/run/docker.sock"
MAX_API = (1, 41)  # what this client is written against (dockerd 20.10); lower if the server is older
DATA_ROOT = os.environ.get("RNM_DOCKER_DATA_ROOT", "/var/lib/rnm-test-docker")
EXEC_ROOT = os.environ.get("RNM_DOCKER_EXEC_ROOT", "/run/rnm-test-docker")
DOCKERD_FLAGS = ["--iptables=false", "--ip6tables=false", "--ip-forward=false"]
IMAGE_REPO = "rnm-test/busybox"
SESSION_LABEL = "rnm.test.session"
SCOPE_LABEL = "rnm.test.scope"
SET_NAME = re.compile(r"[a-z][a-z0-9_]{0,28}")


class DockerError(RuntimeError):
    def __init__(self, status, message, method="", path=""):
        super().__init__(f"{method} {path}: {status} {message}")
        self.status = status
        self.message = message


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("docker", timeout=timeout)
        self._unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self._unix_path)
        except OSError:
            s.close()
            raise
        self.sock = s


def ping(path=DOCKER_SOCKET, timeout=1.0):
    """The server's API version if the socket answers `_ping` with OK, else None."""
    try:
        c = _UnixHTTPConnection(path, timeout)
        c.request("GET", "/_ping")
        r = c.getresponse()
        body = r.read()
        c.close()
    except (OSError, http.client.HTTPException):
        return None
    if r.status != 200 or body.strip() != b"OK":
        return None
    return r.getheader("Api-Version") or "1.24"


class DockerAPI:
    """The Engine API, one connection per call (thread-safe). Paths are given without the version prefix."""

    def __init__(self, path=DOCKER_SOCKET, timeout=60.0):
        self.path = path
        self.timeout = timeout
        self.version = None

    def negotiate(self):
        server = ping(self.path, timeout=5)
        if server is None:
            raise DockerError(0, f"{self.path} does not answer _ping")
        v = tuple(int(x) for x in server.split("."))
        self.version = "%d.%d" % min(v, MAX_API)
        return self.version

    def call(self, method, path, body=None, query=None, raw=None, ok=(200, 201, 204, 304), timeout=None,
             content_type="application/json"):
        if self.version is None:
            self.negotiate()
        url = f"/v{self.version}{path}"
        if query:
            url += "?" + urllib.parse.urlencode(
                {k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in query.items()})
        headers = {}
        data = None
        if raw is not None:
            data, headers["Content-Type"] = raw, content_type
        elif body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        c = _UnixHTTPConnection(self.path, timeout or self.timeout)
        try:
            c.request(method, url, body=data, headers=headers)
            r = c.getresponse()
            payload = r.read()
        finally:
            c.close()
        if r.status not in ok:
            try:
                message = json.loads(payload).get("message", payload.decode(errors="replace"))
            except ValueError:
                message = payload.decode(errors="replace")
            raise DockerError(r.status, message.strip(), method, path)
        if not payload:
            return None
        if (r.getheader("Content-Type") or "").startswith("application/json"):
            try:
                return json.loads(payload)
            except ValueError:
                pass
        return payload

    # Containers.

    def containers(self, all=False, labels=()):
        q = {"all": "1" if all else "0"}
        if labels:
            q["filters"] = {"label": list(labels)}
        return self.call("GET", "/containers/json", query=q)

    def inspect(self, cid):
        """The container's inspect document, or None if it is gone."""
        try:
            return self.call("GET", f"/containers/{cid}/json")
        except DockerError as e:
            if e.status == 404:
                return None
            raise

    def create(self, image, name=None, labels=None, network=None, restart=None, ipv4=None, ipv6=None,
               cmd=("/bin/sleep", "3600")):
        body = {
            "Image": image,
            "Cmd": list(cmd),
            "Labels": dict(labels or {}),
            # PID 1 ignores SIGTERM: stop (and dockerd's own shutdown) would wait out the timeout.
            "StopSignal": "SIGKILL",
            "StopTimeout": 1,
            "HostConfig": {
                "NetworkMode": network or "bridge",
                "RestartPolicy": {"Name": restart or "no"},
                "LogConfig": {"Type": "none"},
            },
        }
        if ipv4 or ipv6:
            ipam = {}
            if ipv4:
                ipam["IPv4Address"] = ipv4
            if ipv6:
                ipam["IPv6Address"] = ipv6
            body["NetworkingConfig"] = {"EndpointsConfig": {network: {"IPAMConfig": ipam}}}
        q = {"name": name} if name else None
        return self.call("POST", "/containers/create", body=body, query=q)["Id"]

    def start(self, cid):
        self.call("POST", f"/containers/{cid}/start")

    def stop(self, cid, t=0):
        self.call("POST", f"/containers/{cid}/stop", query={"t": str(t)})

    def kill(self, cid, signal="KILL"):
        self.call("POST", f"/containers/{cid}/kill", query={"signal": signal})

    def remove(self, cid, force=True):
        try:
            self.call("DELETE", f"/containers/{cid}", query={"force": "1" if force else "0", "v": "1"})
        except DockerError as e:
            if e.status != 404:
                raise

    def rename(self, cid, name):
        self.call("POST", f"/containers/{cid}/rename", query={"name": name})

    # Networks.

    def networks(self, labels=()):
        q = {"filters": {"label": list(labels)}} if labels else None
        return self.call("GET", "/networks", query=q)

    def network_create(self, name, subnets=(), ipv6=False, labels=None):
        body = {"Name": name, "CheckDuplicate": True, "EnableIPv6": ipv6, "Labels": dict(labels or {})}
        if subnets:
            body["IPAM"] = {"Driver": "default", "Config": [{"Subnet": s} for s in subnets]}
        return self.call("POST", "/networks/create", body=body)["Id"]

    def network_remove(self, nid):
        try:
            self.call("DELETE", f"/networks/{nid}")
        except DockerError as e:
            if e.status != 404:
                raise

    def connect(self, network, cid, ipv4=None, ipv6=None):
        body = {"Container": cid}
        if ipv4 or ipv6:
            body["EndpointConfig"] = {"IPAMConfig": {k: v for k, v in (("IPv4Address", ipv4), ("IPv6Address", ipv6))
                                                     if v}}
        self.call("POST", f"/networks/{network}/connect", body=body)

    def disconnect(self, network, cid, force=False):
        self.call("POST", f"/networks/{network}/disconnect", body={"Container": cid, "Force": force})

    # Images.

    def image_exists(self, ref):
        try:
            self.call("GET", f"/images/{ref}/json")
            return True
        except DockerError as e:
            if e.status == 404:
                return False
            raise

    def image_import(self, tar_bytes, repo, tag):
        """`docker import` of a rootfs tarball; raises if the engine reports an error in its progress stream."""
        out = self.call("POST", "/images/create", query={"fromSrc": "-", "repo": repo, "tag": tag},
                        raw=tar_bytes, content_type="application/x-tar", timeout=120)
        text = out.decode(errors="replace") if isinstance(out, bytes) else json.dumps(out)
        for line in text.splitlines():
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if isinstance(msg, dict) and msg.get("error"):
                raise DockerError(500, msg["error"], "POST", "/images/create")

    def image_remove(self, ref):
        try:
            self.call("DELETE", f"/images/{ref}", query={"force": "1"})
        except DockerError as e:
            if e.status != 404:
                raise


# --- The image --------------------------------------------------------------------------------------------

def busybox_path():
    for p in ("/bin/busybox", "/usr/bin/busybox"):
        if os.path.exists(p):
            return os.path.realpath(p)
    return None


def is_static_elf(path):
    """A statically linked ELF has no PT_INTERP program header (Debian's busybox-static; plain busybox is
    dynamic and would not run in an image without libc)."""
    out = subprocess.run(["readelf", "-lW", path], capture_output=True, text=True)
    if out.returncode != 0:
        # No binutils: fall back to file(1) or trust it.
        f = subprocess.run(["file", "-L", path], capture_output=True, text=True)
        return f.returncode != 0 or "statically linked" in f.stdout
    return "INTERP" not in out.stdout


def rootfs_tar(busybox):
    """A rootfs in memory: /bin/busybox and the applets the tests use as symlinks, and the usual empty
    directories (runc mounts over them)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        def add_dir(name, mode=0o755):
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, mode, 0
            tar.addfile(ti)
        for d in ("bin", "dev", "etc", "proc", "sys", "tmp", "run"):
            add_dir(d, 0o1777 if d == "tmp" else 0o755)
        data = open(busybox, "rb").read()
        ti = tarfile.TarInfo("bin/busybox")
        ti.size, ti.mode, ti.mtime = len(data), 0o755, 0
        tar.addfile(ti, io.BytesIO(data))
        for applet in ("sh", "sleep", "true", "ls", "cat", "ip"):
            ti = tarfile.TarInfo(f"bin/{applet}")
            ti.type, ti.linkname, ti.mode, ti.mtime = tarfile.SYMTYPE, "busybox", 0o777, 0
            tar.addfile(ti)
        for name, text in (("etc/passwd", "root:x:0:0:root:/:/bin/sh\n"), ("etc/group", "root:x:0:\n")):
            raw = text.encode()
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(raw), 0o644, 0
            tar.addfile(ti, io.BytesIO(raw))
    return buf.getvalue()


# --- dockerd ----------------------------------------------------------------------------------------------

def _dockerd_processes():
    """{pid: argv} of processes called dockerd."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() != "dockerd":
                    continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                out[int(pid)] = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
        except OSError:
            pass
    return out


def _option(argv, *names):
    """Values of a dockerd option (`--x v`, `--x=v`, `-x v`), in order."""
    values = []
    for i, a in enumerate(argv):
        for n in names:
            if a == n and i + 1 < len(argv):
                values.append(argv[i + 1])
            elif a.startswith(n + "="):
                values.append(a[len(n) + 1:])
    return values


def _conflict(argv):
    """Why another dockerd (argv) and ours cannot run side by side, or None: it serves (or will serve) our
    socket, or it shares our bridge, data root or exec root. A dockerd with a socket, bridge and roots of its
    own (a benchmark's, say) is left alone and does not stop the tests from starting theirs."""
    conf = {}
    conf_path = (_option(argv, "--config-file") or ["/etc/docker/daemon.json"])[-1]
    try:
        with open(conf_path) as f:
            conf = json.load(f)
    except (OSError, ValueError):
        pass
    hosts = _option(argv, "-H", "--host") or conf.get("hosts") or ["unix:///var/run/docker.sock"]
    for h in hosts:
        if h.startswith("fd://") or os.path.realpath(h.replace("unix://", "", 1)) == os.path.realpath(DOCKER_SOCKET):
            return f"it serves {DOCKER_SOCKET} ({h})"
    bridge = (_option(argv, "-b", "--bridge") or [conf.get("bridge") or "docker0"])[-1]
    if bridge == "docker0":
        return "it uses docker0, the bridge ours would use"
    data = (_option(argv, "--data-root", "-g", "--graph") or [conf.get("data-root") or "/var/lib/docker"])[-1]
    execroot = (_option(argv, "--exec-root") or [conf.get("exec-root") or "/var/run/docker"])[-1]
    same = lambda a, b: os.path.realpath(a) == os.path.realpath(b)  # noqa: E731
    if same(data, DATA_ROOT) or same(execroot, EXEC_ROOT):
        return "it uses our data or exec root"
    return None


def _link_exists(name):
    return os.path.exists(f"/sys/class/net/{name}")


class DockerEngine:
    """The engine the tests use. `owned`: this session started it (and may restart it)."""

    def __init__(self):
        self.api = DockerAPI(DOCKER_SOCKET)
        self.owned = False
        self.proc = None
        self.workdir = None
        self.log_path = None
        self.docker0_existed = None
        self.session = uuid.uuid4().hex[:12]
        self.config_path = None
        self.image = None
        self.imported_image = False
        self.starts = 0

    # Lifecycle.

    def setup(self):
        """Uses a dockerd that answers, or starts one; raises pytest.skip when neither is possible."""
        if ping() is not None:
            self.owned = False
        else:
            others = {pid: why for pid, argv in _dockerd_processes().items() if (why := _conflict(argv))}
            if others:
                # Someone's dockerd is starting (or wedged): wait for it, never start a second one beside it.
                deadline = time.monotonic() + 20
                while ping() is None and time.monotonic() < deadline:
                    time.sleep(0.2)
                if ping() is None:
                    pid, why = next(iter(others.items()))
                    pytest.skip(f"a dockerd (pid {pid}) runs and {why}, but {DOCKER_SOCKET} does not answer "
                                "_ping; not starting a second one")
            if ping() is None:
                binary = os.environ.get("RNM_DOCKERD") or shutil.which("dockerd")
                if binary is None:
                    pytest.skip("no dockerd on PATH and nothing answers on /var/run/docker.sock "
                                "(install docker.io)")
                self.binary = binary
                self.owned = True
                self.workdir = tempfile.mkdtemp(prefix="rnm-dockerd-")
                self.log_path = os.path.join(self.workdir, "dockerd.log")
                self.config_path = os.path.join(self.workdir, "daemon.json")
                self._write_config({})
                self.docker0_existed = _link_exists("docker0")
                self.start()
                # Our own data root: whatever earlier sessions left in it (a run killed mid-test) goes.
                self.sweep(SESSION_LABEL)
        self.api.negotiate()
        self.ensure_image()
        return self

    def dockerd_args(self):
        return [self.binary, "--config-file", self.config_path, *DOCKERD_FLAGS, "--data-root", DATA_ROOT,
                "--exec-root", EXEC_ROOT,
                "--pidfile", os.path.join(os.path.dirname(EXEC_ROOT), "rnm-test-dockerd.pid"),
                "-H", f"unix://{DOCKER_SOCKET}"]

    def start(self, timeout=60.0):
        assert self.owned, "only a dockerd this session started may be started again"
        assert self.proc is None or self.proc.poll() is not None, "dockerd already runs"
        os.makedirs(DATA_ROOT, mode=0o710, exist_ok=True)
        log = open(self.log_path, "a")
        log.write(f"--- rnm tests: starting dockerd ({time.strftime('%H:%M:%S')}) ---\n")
        log.flush()
        self.proc = subprocess.Popen(self.dockerd_args(), stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self.starts += 1
        deadline = time.monotonic() + timeout
        while ping() is None:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dockerd exited with {self.proc.returncode}\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"dockerd did not answer _ping within {timeout}s\n{self.log_tail()}")
            time.sleep(0.05)
        self.api.version = None

    def stop(self, timeout=30.0):
        """SIGTERM to the dockerd this session started (it stops its containers and its containerd), SIGKILL
        to what is left after `timeout`."""
        if not self.owned or self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill_leftovers()
        # The socket goes with it; wait until nothing answers (a restart must see the gap).
        deadline = time.monotonic() + 5
        while ping(timeout=0.2) is not None and time.monotonic() < deadline:
            time.sleep(0.05)

    def _kill_leftovers(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        pidfile = os.path.join(EXEC_ROOT, "containerd", "containerd.pid")
        try:
            pid = int(open(pidfile).read().strip())
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == "containerd":
                    os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError):
            pass

    def _write_config(self, conf):
        with open(self.config_path, "w") as f:
            json.dump(conf, f)

    def set_live_restore(self, enabled, timeout=10.0):
        """Turns live-restore on or off in the running dockerd (daemon.json and SIGHUP: a reloadable option)."""
        self._write_config({"live-restore": enabled} if enabled else {})
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while self.api.call("GET", "/info").get("LiveRestoreEnabled") != enabled:
            if time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not take live-restore={enabled}\n{self.log_tail()}")
            time.sleep(0.05)

    def restart(self, between=None, live_restore=False):
        """Stops the dockerd this session started, runs `between()` while it is down, starts it again.
        `live_restore`: the containers keep running while dockerd is down (as in a dockerd upgrade), so that
        what happens to them in the gap is seen by nobody; the dockerd started again has it off."""
        if not self.owned:
            pytest.skip("the running dockerd is not one the tests started; a user's dockerd is never restarted")
        if live_restore:
            self.set_live_restore(True)
        try:
            self.stop()
        finally:
            self._write_config({})
        try:
            if between is not None:
                between()
        finally:
            self.start()

    def teardown(self):
        try:
            if ping() is not None:
                self.sweep()
                if self.imported_image and not self.owned:
                    self.api.image_remove(self.image)
        finally:
            if self.owned:
                self.stop()
                if self.docker0_existed is False and _link_exists("docker0"):
                    subprocess.run(["ip", "link", "del", "docker0"], capture_output=True)
                if self.workdir and not os.environ.get("RNM_KEEP"):
                    shutil.rmtree(self.workdir, ignore_errors=True)

    def sweep(self, label=None):
        """Removes every container, then every network, carrying `label` (default: this session's)."""
        label = label or f"{SESSION_LABEL}={self.session}"
        for attempt in range(5):
            left = self.api.containers(all=True, labels=[label])
            for c in left:
                try:
                    self.api.remove(c["Id"])
                except DockerError:
                    pass  # "removal in progress" and the like: the next round sees it again
            nets = self.api.networks(labels=[label])
            for n in nets:
                try:
                    self.api.network_remove(n["Id"])
                except DockerError:
                    pass
            if not left and not nets:
                return
            time.sleep(0.2)
        left = self.api.containers(all=True, labels=[label])
        nets = self.api.networks(labels=[label])
        if left or nets:
            raise RuntimeError(f"could not remove {len(left)} containers and {len(nets)} networks labelled {label}")

    def log_tail(self, n=30):
        if not self.log_path or not os.path.exists(self.log_path):
            return "(no dockerd log: not started by the tests)"
        with open(self.log_path, errors="replace") as f:
            return "\n".join(f.read().splitlines()[-n:])

    def ensure_image(self):
        bb = busybox_path()
        if bb is None:
            pytest.skip("no /bin/busybox (install busybox-static) to build the test image from")
        if not is_static_elf(bb):
            pytest.skip(f"{bb} is dynamically linked (install busybox-static)")
        tar = rootfs_tar(bb)
        tag = hashlib.sha256(tar).hexdigest()[:16]
        self.image = f"{IMAGE_REPO}:{tag}"
        if not self.api.image_exists(self.image):
            self.api.image_import(tar, IMAGE_REPO, tag)
            self.imported_image = True
        return self.image


class DockerScope:
    """What one test creates: containers and networks labelled with the session and a scope id, removed in
    teardown whatever happened. `workers`: threads for the bulk helpers (container starts are mostly waits
    on runc and containerd, so a few in parallel help even on 2 cores)."""

    def __init__(self, engine, workers=6):
        self.engine = engine
        self.api = engine.api
        self.id = uuid.uuid4().hex[:10]
        self.workers = workers
        self.counter = 0
        self.lock = threading.Lock()

    @property
    def labels(self):
        return {SESSION_LABEL: self.engine.session, SCOPE_LABEL: self.id}

    def name(self, hint="c"):
        with self.lock:
            self.counter += 1
            return f"rnmt-{self.id}-{hint}{self.counter}"

    def create(self, labels=None, network=None, restart=None, ipv4=None, ipv6=None, name=None):
        all_labels = dict(self.labels)
        all_labels.update(labels or {})
        return self.api.create(self.engine.image, name=name or self.name(), labels=all_labels, network=network,
                               restart=restart, ipv4=ipv4, ipv6=ipv6)

    def run(self, labels=None, **kw):
        """Creates and starts a container running /bin/sleep 3600; returns its id."""
        cid = self.create(labels, **kw)
        self.api.start(cid)
        return cid

    def run_many(self, specs):
        """Runs containers concurrently; `specs` is a list of dicts of run() arguments. Returns ids in order."""
        return self.map(lambda spec: self.run(**spec), specs)

    def map(self, fn, items):
        with ThreadPoolExecutor(self.workers) as pool:
            return list(pool.map(fn, items))

    def network(self, subnets=(), ipv6=False, hint="net"):
        """A user-defined bridge network; returns its name."""
        name = self.name(hint)
        self.api.network_create(name, subnets=subnets, ipv6=ipv6, labels=self.labels)
        return name

    def running(self):
        """Ids of this scope's running containers."""
        return {c["Id"] for c in self.api.containers(labels=[f"{SCOPE_LABEL}={self.id}"])}

    def cleanup(self):
        self.engine.sweep(f"{SCOPE_LABEL}={self.id}")


# --- The Docker side of the oracle ------------------------------------------------------------------------

def addresses_by_network(info):
    """{network name: (IPv4 or None, global IPv6 or None)} of an inspected container."""
    out = {}
    for name, ep in ((info.get("NetworkSettings") or {}).get("Networks") or {}).items():
        v4 = ep.get("IPAddress") or None
        v6 = ep.get("GlobalIPv6Address") or None
        out[name] = (v4, v6)
    return out


def rule_targets(rule, labels):
    """(set_v4, set_v6) a matching rule puts addresses in, or None if the rule does not match the labels.
    A set name from a label value that is not a valid set name gives (None, None): refused."""
    key = rule.get("label")
    if key is not None:
        if key not in labels:
            return None
        if "value" in rule and labels[key] != rule["value"]:
            return None
    if rule.get("sets_from_label_value"):
        value = labels[key]
        if not SET_NAME.fullmatch(value):
            return (None, None)
        return (value + "_v4", value + "_v6")
    return (rule.get("set_v4"), rule.get("set_v6"))


def expected_from_containers(infos, rules, granted):
    """The plugin's contribution the spec calls for: {set: {address}} over running containers. Sets the
    plugin is not granted are left out (the host refuses them)."""
    want = {s: set() for s in granted}
    for info in infos:
        if not info or not (info.get("State") or {}).get("Running"):
            continue
        labels = (info.get("Config") or {}).get("Labels") or {}
        nets = addresses_by_network(info)
        for rule in rules:
            targets = rule_targets(rule, labels)
            if targets is None:
                continue
            if "network" in rule:
                chosen = [nets[rule["network"]]] if rule["network"] in nets else []
            else:
                chosen = list(nets.values())
            for v4, v6 in chosen:
                for addr, target in ((v4, targets[0]), (v6, targets[1])):
                    if addr and target in granted:
                        want[target].add(str(ipaddress.ip_address(addr)))
    return want


def inspect_running(api):
    """Inspect documents of every running container on the engine (not only the tests' own: the plugin
    sees them all)."""
    ids = [c["Id"] for c in api.containers()]
    infos = [api.inspect(cid) for cid in ids]
    return [i for i in infos if i is not None]


def expected_docker_sets(api, rules, granted):
    return expected_from_containers(inspect_running(api), rules, granted)


# --- Fixtures (imported by conftest.py) -------------------------------------------------------------------

@pytest.fixture(scope="session")
def docker_engine():
    """A Docker engine answering on /var/run/docker.sock with the test image imported: the user's if one
    runs, else one the session starts (and stops at its end). Skips when there is no way to have one."""
    engine = DockerEngine()
    try:
        engine.setup()
    except BaseException:
        engine.teardown()
        raise
    yield engine
    engine.teardown()


@pytest.fixture
def docker_env(docker_engine):
    """Per test: a DockerScope whose containers and networks are removed afterwards, even on failure."""
    if ping() is None and docker_engine.owned and (docker_engine.proc is None or docker_engine.proc.poll() is not None):
        # A test that restarted dockerd and failed in the gap: bring it back for the next ones.
        docker_engine.start()
    scope = DockerScope(docker_engine)
    yield scope
    if ping() is None and docker_engine.owned:
        docker_engine.start()
    scope.cleanup()
