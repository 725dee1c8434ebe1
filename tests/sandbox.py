"""Run `livecut ARGS` under the system call rules of a systemd unit, without systemd.

    python tests/sandbox.py systemd/livecut.service serve --config livecut.toml

Installs, with libseccomp, what the unit's SystemCallFilter=, SystemCallErrorNumber=,
SystemCallArchitectures=native, RestrictAddressFamilies= and MemoryDenyWriteExecute= ask
systemd for (the groups expanded by `systemd-analyze syscall-filter`, as systemd expands
them), after NoNewPrivileges, then runs the command line in this process. Before that it
proves the filter bites: setuid, an AF_NETLINK socket and a writable executable mapping
must each be refused; it says so on stderr.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import mmap
import os
import socket
import subprocess
import sys
from pathlib import Path

SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_EQ = 4
SCMP_CMP_MASKED_EQ = 7
PR_SET_NO_NEW_PRIVS = 38
SHM_EXEC = 0o100000
# Always allowed by systemd with an allow list, whatever the groups say.
ALWAYS = ("execve", "exit", "exit_group", "getrlimit", "rt_sigreturn", "sigreturn")
FAMILIES = {"AF_UNIX": socket.AF_UNIX, "AF_INET": socket.AF_INET, "AF_INET6": socket.AF_INET6}


class ArgCmp(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


def unit_settings(unit: Path) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith(("#", ";", "[")):
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


@functools.cache
def expand(item: str) -> frozenset[str]:
    """A syscall name, or every syscall of a group and its nested groups."""
    if not item.startswith("@"):
        return frozenset({item})
    listing = subprocess.run(
        ["systemd-analyze", "syscall-filter", "--no-pager", item],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    names: set[str] = set()
    for line in listing[1:]:
        entry = line.strip()
        if entry and not entry.startswith("#"):
            names |= expand(entry)
    return frozenset(names)


def install(unit: Path) -> None:
    settings = unit_settings(unit)
    allowed: set[str] = set()
    for value in settings.get("SystemCallFilter", []):
        deny = value.startswith("~")
        items = {name for word in value.lstrip("~").split() for name in expand(word)}
        allowed = allowed - items if deny else allowed | items
    allowed |= set(ALWAYS)
    assert settings.get("SystemCallArchitectures") == ["native"], "the unit allows other ABIs"
    error_name = settings.get("SystemCallErrorNumber", ["EPERM"])[-1]
    families = [FAMILIES[f] for f in settings["RestrictAddressFamilies"][-1].split()]
    deny_wx = settings.get("MemoryDenyWriteExecute") == ["yes"]

    lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(ArgCmp),
    ]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    # The default action for everything not allowed; only native syscalls match at all.
    ctx = lib.seccomp_init(0x00050000 | getattr(errno, error_name))

    def allow(name: str, *conditions: tuple[int, int, int, int]) -> None:
        number = lib.seccomp_syscall_resolve_name(name.encode())
        if number < 0:
            return  # not a syscall of this architecture
        array = (ArgCmp * max(1, len(conditions)))(*(ArgCmp(*c) for c in conditions))
        result = lib.seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, number, len(conditions), array)
        if result < 0:
            raise OSError(-result, f"seccomp rule for {name}")

    conditional = {"socket", "mmap", "mmap2", "mprotect", "pkey_mprotect", "shmat"}
    for name in sorted(allowed - conditional):
        allow(name)
    if "socket" in allowed:
        for family in families:
            allow("socket", (0, SCMP_CMP_EQ, family, 0))
    for name in ("mmap", "mmap2", "mprotect", "pkey_mprotect", "shmat"):
        if name not in allowed:
            continue
        if not deny_wx:
            allow(name)
        elif name.startswith("mmap"):  # not writable and executable at once
            allow(name, (2, SCMP_CMP_MASKED_EQ, mmap.PROT_EXEC, 0))
            allow(name, (2, SCMP_CMP_MASKED_EQ, mmap.PROT_WRITE, 0))
        elif name == "shmat":
            allow(name, (2, SCMP_CMP_MASKED_EQ, SHM_EXEC, 0))
        else:  # nothing becomes executable later
            allow(name, (2, SCMP_CMP_MASKED_EQ, mmap.PROT_EXEC, 0))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    result = lib.seccomp_load(ctx)
    if result < 0:
        raise OSError(-result, "seccomp_load")


def prove_it_bites() -> list[str]:
    refused = []
    try:
        os.setuid(os.getuid())
    except PermissionError:
        refused.append("setuid")
    try:
        socket.socket(socket.AF_NETLINK, socket.SOCK_RAW).close()
    except OSError:
        refused.append("AF_NETLINK")
    try:
        prot = mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC
        mmap.mmap(-1, mmap.PAGESIZE, prot=prot).close()
    except OSError:
        refused.append("W+X mmap")
    return refused


def main() -> int:
    unit, args = Path(sys.argv[1]), sys.argv[2:]
    install(unit)
    print("sandbox: refused " + ", ".join(prove_it_bites()), file=sys.stderr, flush=True)
    # Imported only now: PyAV, FFmpeg and numpy are loaded under the filter.
    from livecut.cli import main as livecut

    return livecut(args)


if __name__ == "__main__":
    sys.exit(main())
