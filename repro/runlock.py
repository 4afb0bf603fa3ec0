"""One holder at a time: the lock that keeps two invocations from running one spec at one profile (or
training one model) side by side, each computing every cell twice.

The lock is an flock on a small file beside the results (`results/.locks/`, `artifacts/.locks/`:
outside the folders DVC stores, so a lock never changes a stage's output), removed by its holder
when it is done. The kernel drops an flock when its holder dies, however it dies, so a dead
holder's lock is taken over by the next invocation without any clean-up (its file stays until then). The holder writes who it is into the file; a second invocation
prints one line naming the holder and waits (Ctrl-C or SIGTERM stop the wait), or with `wait=False`
refuses with a UserError (exit 2).
"""
from __future__ import annotations

import fcntl
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from repro.errors import UserError


def _holder(fd: int) -> str:
    """Who holds the lock, as its holder wrote it ("another process" where it has not yet)."""
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        since = time.strftime("%H:%M:%S", time.localtime(float(info["since"])))
        return f"pid {int(info['pid'])} on {info['host']}, since {since}: {info['command']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@contextmanager
def held(path: Path, what: str, *, wait: bool = True, say: Callable[[str], None] = _say) -> Iterator[None]:
    """Hold the lock file `path` for `what` (e.g. "table5_3 [smoke]") while the block runs. The file
    (and the folders made for it, when empty) is removed on release, so a refused or finished
    invocation leaves nothing behind."""
    made = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
    fd = _locked(path, what, wait, say)
    try:
        me = {"pid": os.getpid(), "host": platform.node(), "since": time.time(),
              "command": " ".join(Path(a).name if i == 0 else a for i, a in enumerate(sys.argv))[:300]}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        yield
    finally:
        try:
            path.unlink()   # while still held: a waiter on this file sees it gone and opens the new one
        except OSError:
            pass
        os.close(fd)   # closing the last descriptor releases the flock
        for folder in dict.fromkeys([path.parent, *made]):   # .locks/, then what this call made, innermost first
            try:
                folder.rmdir()
            except OSError:
                break


def _locked(path: Path, what: str, wait: bool, say: Callable[[str], None]) -> int:
    """An open descriptor of `path` holding its flock. A lock file is removed by its holder on release,
    so a lock taken on a file that is no longer at `path` is let go and taken again on the new one."""
    waited = False
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except (FileNotFoundError, FileExistsError):   # a releasing holder removed the folder meanwhile: again
            continue
        except OSError as e:
            raise UserError(f"cannot create the lock {path} for {what}: {e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            if not wait:
                os.close(fd)
                raise UserError(f"{what} is being run by {holder}; wait for it to finish, or leave out "
                                f"--no-wait to wait here") from None
            if not waited:
                say(f"waiting for {what}: held by {holder} (Ctrl-C stops waiting; finished work is kept)")
                waited = True
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)   # blocks; a signal's exception (Ctrl-C, SIGTERM) ends the wait
            except BaseException:
                os.close(fd)
                raise
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)   # the holder we waited for removed this file: lock the one at `path` now


def lock_file(root: Path, *parts: str) -> Path:
    """The lock file of a thing named by `parts` under a store's root (`<root>/.locks/a.b.lock`)."""
    return root / ".locks" / (".".join(parts) + ".lock")
