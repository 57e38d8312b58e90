import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from rnmtest import RNMD, Daemon, NetNS, NftMonitor  # noqa: E402


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
def daemons(tmp_path):
    """Starts daemons for a test (config and log under the test's tmp_path, which pytest keeps for the last
    few runs); stops every one of them afterwards (SIGTERM, then SIGKILL)."""
    started = []

    def start(ns, config, **kw):
        d = Daemon(ns, config, workdir=str(tmp_path), **kw)
        started.append(d)
        return d

    yield start
    for d in started:
        try:
            d.stop()
        except AssertionError:
            pass


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
