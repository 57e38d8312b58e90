#!/usr/bin/python3
"""Runs a command with writable-and-executable memory refused, the way systemd's MemoryDenyWriteExecute=yes
would run it, so a test can tell whether rnmd (the Swift runtime, libdispatch, the plugins) copes.

Two mechanisms, both on by default, both inherited across fork and execve:
  prctl    PR_SET_MDWE with PR_MDWE_REFUSE_EXEC_GAIN (Linux 6.3+): no mapping may become writable and
           executable, and none may gain PROT_EXEC later. systemd 253+ uses it where the kernel has it.
  seccomp  the filter systemd 252 (Debian 12) installs instead: mmap with PROT_WRITE|PROT_EXEC, any
           mprotect/pkey_mprotect adding PROT_EXEC and shmat with SHM_EXEC fail with EPERM. Stricter than
           the prctl: it refuses every mprotect(PROT_EXEC), even of a mapping that was never writable.

    mdwe_exec.py [--mode prctl|seccomp|both] -- COMMAND [ARG...]
    mdwe_exec.py --selftest      # exit 0 if an anonymous RWX mapping is refused under each mode
"""
import ctypes
import mmap
import os
import sys

PR_SET_MDWE = 65
PR_GET_MDWE = 66
PR_MDWE_REFUSE_EXEC_GAIN = 1
PROT_WRITE = 0x2
PROT_EXEC = 0x4
SHM_EXEC = 0o100000

libc = ctypes.CDLL(None, use_errno=True)


def apply_prctl():
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        sys.exit(f"mdwe_exec: prctl(PR_SET_MDWE): {os.strerror(err)} (needs Linux 6.3+)")
    if libc.prctl(PR_GET_MDWE, 0, 0, 0, 0) & PR_MDWE_REFUSE_EXEC_GAIN == 0:
        sys.exit("mdwe_exec: PR_GET_MDWE does not report REFUSE_EXEC_GAIN")


def apply_seccomp():
    try:
        import seccomp  # python3-seccomp
    except ImportError:
        sys.exit("mdwe_exec: the seccomp mode needs python3-seccomp")
    import errno
    f = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    deny = seccomp.ERRNO(errno.EPERM)
    f.add_rule(deny, "mmap", seccomp.Arg(2, seccomp.MASKED_EQ, PROT_WRITE | PROT_EXEC, PROT_WRITE | PROT_EXEC))
    f.add_rule(deny, "mprotect", seccomp.Arg(2, seccomp.MASKED_EQ, PROT_EXEC, PROT_EXEC))
    f.add_rule(deny, "pkey_mprotect", seccomp.Arg(2, seccomp.MASKED_EQ, PROT_EXEC, PROT_EXEC))
    f.add_rule(deny, "shmat", seccomp.Arg(2, seccomp.MASKED_EQ, SHM_EXEC, SHM_EXEC))
    f.load()  # sets no_new_privs itself


def apply(mode):
    if mode in ("prctl", "both"):
        apply_prctl()
    if mode in ("seccomp", "both"):
        apply_seccomp()


def rwx_refused():
    try:
        m = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except PermissionError:
        return True
    m.close()
    return False


def selftest():
    if rwx_refused():
        sys.exit("mdwe_exec: an RWX mapping is refused before anything was applied?")
    for mode in ("prctl", "seccomp"):
        pid = os.fork()
        if pid == 0:
            apply(mode)
            os._exit(0 if rwx_refused() else 1)
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"mdwe_exec: mode {mode} did not refuse an RWX mapping")
    print("mdwe_exec: both modes refuse RWX mappings")


def main(argv):
    mode = "both"
    if argv[:1] == ["--selftest"]:
        selftest()
        return
    if argv[:1] == ["--mode"]:
        mode, argv = argv[1], argv[2:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if mode not in ("prctl", "seccomp", "both") or not argv:
        sys.exit(__doc__)
    apply(mode)
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main(sys.argv[1:])
