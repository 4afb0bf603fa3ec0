"""Who wrote this, and are they still alive? The identity of a process on this host.

A process is named by (host, pid, start time): the kernel reuses pids, so a pid alone could
name a newer process; the start time (Linux: /proc/<pid>/stat, field 22, in clock ticks since
boot) tells them apart. Used to judge leftovers of a killed run: a temporary file or an MLflow
run marked RUNNING whose writer is dead is an orphan; one whose writer is alive is not ours to touch.
"""
from __future__ import annotations

import hashlib
import os
import platform
from functools import lru_cache


@lru_cache(maxsize=1)
def host_tag() -> str:
    """8 hex digits naming this host (safe inside a file name, unlike some host names)."""
    return hashlib.sha256(platform.node().encode()).hexdigest()[:8]


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot, or None where /proc does not say."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
    except OSError:
        return None
    # comm (field 2) may hold spaces and parentheses: the fields after it follow the last ')'.
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[19] if len(fields) > 19 else None   # field 22 overall = index 19 after comm


def this_process() -> dict[str, str]:
    """Tags naming the current process (for MLflow runs)."""
    pid = os.getpid()
    return {"repro.host": platform.node(), "repro.pid": str(pid), "repro.pid_start": start_time(pid) or ""}


def pid_alive(pid: int, started: str | None = None) -> bool:
    """Whether process `pid` on this host is alive (and, given `started`, is the one that started then)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # alive, another user's
        pass
    if started:
        now = start_time(pid)
        if now is not None and now != started:
            return False   # the pid was reused by a newer process
    st = _state(pid)
    return st != "Z"   # a zombie has finished; its parent has not reaped it yet


def _state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
    except OSError:
        return None
    rest = stat[stat.rfind(")") + 2:].split()
    return rest[0] if rest else None


def is_dead_here(host: str | None, pid: str | int | None, started: str | None = None) -> bool:
    """True only when the named process ran on this host and is certainly gone."""
    if host != platform.node() or pid in (None, ""):
        return False
    try:
        return not pid_alive(int(pid), started or None)
    except ValueError:
        return False
