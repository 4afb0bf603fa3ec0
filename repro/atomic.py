"""Atomic file writes: a temporary file in the same folder, fsync, then os.replace.

A reader sees the old file or the new one, never half of one; an interrupted write leaves
no partial file behind (DESIGN.md: nothing half-written). A SIGKILL between the temporary
file's creation and the rename cannot run any cleanup, so the temporary file names its
writer (`.<name>.<host tag>.<pid>.<random>.tmp`): `remove_orphan_temporaries` deletes the
ones whose writer is dead at the start of the next run, and leaves a live writer's alone.
"""
from __future__ import annotations

import errno
import os
import re
import tempfile
from pathlib import Path
from typing import IO, Callable

from repro.errors import UserError, disk_full, is_disk_full
from repro.killpoints import kill_point
from repro.liveness import host_tag, pid_alive

# .<target>.<8 hex host>.<pid>.<mkstemp's random part>.tmp
_TMP_RE = re.compile(r"^\.(?P<target>.+)\.(?P<host>[0-9a-f]{8})\.(?P<pid>\d+)\.[^.]+\.tmp$")


def atomic_write(path: str | Path, write: Callable[[IO], None], binary: bool = False) -> None:
    path = Path(path)
    if path.is_dir():
        raise UserError(f"cannot write {path}: it is a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UserError(f"cannot write {path}: {_first_file(path.parent)} is a file, not a folder") from None
    fd, tmp = new_temporary(path)
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        kill_point(f"write:{path.name}")
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if is_disk_full(e):
            raise disk_full(path, e) from None
        raise


def new_temporary(path: Path) -> tuple[int, str]:
    """(fd, name) of a new temporary file beside `path`, named by its writer (host, pid)."""
    return tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{host_tag()}.{os.getpid()}.", suffix=".tmp")


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text))


def orphan_owner(tmp: Path) -> int | None:
    """The pid that wrote temporary file `tmp` on this host, or None when it is not one of ours."""
    m = _TMP_RE.match(tmp.name)
    if m is None or m["host"] != host_tag():
        return None   # another host's writer (a shared folder): its liveness cannot be judged here
    return int(m["pid"])


def remove_orphan_temporaries(root: str | Path, pattern: str = ".*.tmp", recursive: bool = True) -> list[Path]:
    """Delete the temporary files under `root` (matching `pattern`; in `root` alone unless
    `recursive`) left by dead writers on this host; returns them."""
    root = Path(root)
    if not root.is_dir():
        return []
    removed = []
    for tmp in (root.rglob(pattern) if recursive else root.glob(pattern)):
        pid = orphan_owner(tmp)
        if pid is not None and pid != os.getpid() and not pid_alive(pid):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _first_file(folder: Path) -> Path:
    """The first part of `folder`'s path that exists and is not a folder (else `folder` itself)."""
    for part in [*reversed(folder.parents), folder]:
        if part.exists() and not part.is_dir():
            return part
    return folder


def check_output_file(path: str | Path, what: str) -> None:
    """UserError (one line) unless `path` can be written as a file now: not a folder, and its folder
    writable (check_writable); nothing is created."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{what} {path} is a folder; give a file name")
    check_writable(path.parent, what)


def check_writable(folder: str | Path, what: str) -> None:
    """UserError (one line) unless files can be written under `folder` now: no part of the path is a
    file, and a probe file can be created, written, fsynced and removed in the deepest existing
    folder (a full disk, a read-only mount or missing permissions fail here, before any work).
    Nothing is left behind: missing folders are not created."""
    folder = Path(folder)
    probe_dir = folder
    while not probe_dir.exists():
        if probe_dir.parent == probe_dir:
            break
        probe_dir = probe_dir.parent
    if probe_dir.exists() and not probe_dir.is_dir():
        raise UserError(f"{what} {folder}: {probe_dir} is a file, not a folder; point it at a folder")
    try:
        fd, tmp = tempfile.mkstemp(dir=probe_dir, prefix=f".probe.{host_tag()}.{os.getpid()}.", suffix=".tmp")
    except OSError as e:
        raise UserError(f"cannot write to {what} {folder}: {e.strerror or e} ({probe_dir})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(b"\0" * 4096)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        hint = "; free some space" if e.errno in (errno.ENOSPC, errno.EDQUOT) else ""
        raise UserError(f"cannot write to {what} {folder}: {e.strerror or e}{hint}") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
