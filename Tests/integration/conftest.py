import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from rnmtest import RNMD, Daemon, NetNS, NftMonitor  # noqa: E402
# The real Docker engine (session) and per-test Docker bookkeeping; used only by the tests that ask for them.
from dockerenv import docker_engine, docker_env  # noqa: E402,F401


def pytest_configure(config):
    if os.geteuid() != 0:
        raise pytest.UsageError("the integration tests need root (network namespaces, nftables)")
    if not os.access(RNMD, os.X_OK):
        raise pytest.UsageError(f"{RNMD} is not built; run `swift build` or set RNMD")


def _namespace():
    n = NetNS()
    try:
        yield n
    finally:
        n.close()


# A throwaway network namespace per test (two for tests that need a far end); deleted even on failure.
ns = pytest.fixture(_namespace, name="ns")
ns2 = pytest.fixture(_namespace, name="ns2")


@pytest.fixture
def daemons(request):
    """Starts daemons for a test; stops every one of them afterwards (SIGTERM, then SIGKILL). Config, log,
    control socket and state live in a directory others may traverse (the permission tests run rnmctl as
    other users), removed afterwards unless the test failed or RNM_KEEP is set."""
    import shutil
    import tempfile
    workdir = tempfile.mkdtemp(prefix="rnm-it-")
    os.chmod(workdir, 0o755)
    started = []

    def start(ns, config, **kw):
        d = Daemon(ns, config, workdir=workdir, **kw)
        started.append(d)
        return d

    yield start
    for d in started:
        try:
            d.stop()
        except AssertionError:
            pass
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    if not failed and not os.environ.get("RNM_KEEP"):
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def monitor_factory():
    started = []

    def start(ns):
        m = NftMonitor(ns)
        started.append(m)
        return m

    yield start
    for m in started:
        m.close()
