"""Package tests: the .deb built by `make deb`, installed into a fresh Debian 12 chroot. Prints how long the
chroot and the installs took at the end of the run."""
import os

import pytest

TIMINGS = []


def record(what, seconds):
    TIMINGS.append((what, seconds))


def pytest_terminal_summary(terminalreporter):
    if TIMINGS:
        terminalreporter.write_sep("-", "package test timings")
        for what, seconds in TIMINGS:
            terminalreporter.write_line(f"{seconds:7.1f} s  {what}")


@pytest.fixture(scope="session", autouse=True)
def needs_root():
    if os.geteuid() != 0:
        pytest.skip("the package tests need root (a chroot, network namespaces, dpkg)")
