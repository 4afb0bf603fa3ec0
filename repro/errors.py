"""The one error type a user can cause: printed as one line, exit code 2 (DESIGN.md, 'Errors and input')."""
from __future__ import annotations

import errno


class UserError(Exception):
    """A mistake in the user's input: unknown spec, bad YAML, value out of range, missing data.

    The message is one line that names the thing and what to do about it.
    """


class DiskFull(UserError):
    """The disk (or quota) filled up while writing: one line naming the file, exit 2. What was
    finished before stays (every result is written atomically), so the same command resumes."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (what `timeout`, `docker stop` and SLURM send), raised where the process is, so that
    it takes Ctrl-C's way out: the cell in progress stops at once, MLflow runs are marked KILLED,
    temporary files are removed, finished cells are kept; the command line exits 143 (128 + 15)."""


def is_disk_full(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in {errno.ENOSPC, getattr(errno, "EDQUOT", 122)}


def disk_full(path: object, e: OSError) -> DiskFull:
    return DiskFull(f"disk full: cannot write {path}: {e.strerror or e}; free some space and run the same "
                    "command again (what finished is kept)")
