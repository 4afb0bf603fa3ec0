"""Where studies live: Optuna's journal file (default) or an RDB (PostgreSQL for several machines).

`--storage` absent: the journal file `results/sweeps/optuna.journal` (all sweeps' studies in one
file, so one dashboard shows them all). A path, or `journal:PATH`: another journal file. A
SQLAlchemy URL (`postgresql://...`, `sqlite:///...`): Optuna's RDBStorage with its heartbeat.
A study records which sweep (and which definition of it) made it; another sweep's study under
the same name is refused, never mixed in.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from repro.errors import UserError
from repro.hashing import stable_hash
from repro.results import results_root

JOURNAL_NAME = "optuna.journal"
RDB_SCHEMES = ("postgresql", "postgres", "sqlite", "mysql")
# RDB heartbeat: a worker records one every HEARTBEAT_S while its trial runs; a RUNNING trial
# without one for GRACE_S is stale (its worker died) and is failed and retried.
HEARTBEAT_S = 5
GRACE_S = 20
CONNECT_TIMEOUT_S = 10


def sweeps_root() -> Path:
    return results_root() / "sweeps"


def default_journal() -> Path:
    return sweeps_root() / JOURNAL_NAME


def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def _flock_class():
    from optuna.storages.journal._file import BaseJournalFileLock  # the documented lock_obj base

    class FlockLock(BaseJournalFileLock):
        """The journal's write lock as an flock: the kernel drops it when its holder dies, so a worker
        SIGKILLed while appending leaves no stale lock (Optuna's own file locks wait out a grace period)."""

        def __init__(self, path: str):
            self._path, self._fd = path, None

        def acquire(self) -> bool:
            fd = os.open(self._path, os.O_CREAT | os.O_RDWR, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._fd = fd
            return True

        def release(self) -> None:
            fd, self._fd = self._fd, None
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)

    return FlockLock


@dataclass
class SweepStorage:
    """An opened storage: the raw Optuna storage object and this machine's state folder for it."""
    kind: str                 # "journal" | "rdb"
    label: str                # for messages and tags (passwords hidden)
    storage: Any              # optuna JournalStorage | RDBStorage (not wrapped in Optuna's cache)
    local_dir: Path           # leases and lock files of workers on this machine
    url: str                  # what workers pass to open the same storage
    stale: list = field(default_factory=list)   # RDB: trials the last heartbeat check failed

    @property
    def dialect(self) -> str:
        return self.url.split(":", 1)[0].split("+", 1)[0] if self.kind == "rdb" else "journal"


def classify(url: str | None) -> tuple[str, str]:
    """(kind, target): ('journal', path) or ('rdb', url)."""
    if url is None or not url.strip():
        return "journal", str(default_journal())
    url = url.strip()
    if url.startswith("journal:"):
        return "journal", url[len("journal:"):]
    if "://" in url:
        scheme = url.split("://", 1)[0].split("+", 1)[0].lower()
        if scheme not in RDB_SCHEMES:
            raise UserError(f"--storage {url.split('://', 1)[0]}://...: not a storage Optuna can share; use a "
                            f"journal file path, or postgresql:// (several machines), sqlite:// or mysql://")
        return "rdb", url
    return "journal", url


def _hide_password(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


def open_storage(url: str | None, *, readonly: bool = False) -> SweepStorage:
    """Open (or, unless readonly, create) the storage; an unreachable one is a UserError."""
    _quiet_optuna()
    kind, target = classify(url)
    if kind == "journal":
        return _open_journal(Path(target), readonly)
    return _open_rdb(target, readonly)


def _open_journal(path: Path, readonly: bool) -> SweepStorage:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    if readonly and not path.is_file():
        raise UserError(f"no study storage at {path} yet: run `repro sweep NAME` first")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        backend = JournalFileBackend(str(path), lock_obj=_flock_class()(str(path) + ".flock"))
        storage = JournalStorage(backend)
    except OSError as e:
        raise UserError(f"--storage {path}: cannot open the journal file ({e.strerror or e})") from None
    except ValueError as e:   # not a journal: Optuna fails to parse a line
        raise UserError(f"--storage {path}: not an Optuna journal file ({e})") from None
    return SweepStorage("journal", str(path), storage, Path(str(path) + ".d"), f"journal:{path}")


def _open_rdb(url: str, readonly: bool) -> SweepStorage:
    from optuna.storages import RDBStorage

    label = _hide_password(url)
    stale: list = []
    engine_kwargs: dict[str, Any] = {}
    if url.startswith(("postgresql", "postgres")):
        engine_kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
    for attempt in range(3):
        try:
            storage = RDBStorage(url, engine_kwargs=engine_kwargs, skip_table_creation=readonly,
                                 heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                                 heartbeat_stale_trial_callback=lambda study, trial: stale.append(trial))
            break
        except ModuleNotFoundError as e:
            raise UserError(f"--storage {label}: the database driver {e.name!r} is not installed") from None
        except Exception as e:  # sqlalchemy's OperationalError / ArgumentError: unreachable or malformed
            reason = str(getattr(e, "orig", None) or e).strip().splitlines()
            # Workers that start together on an empty database race to create Optuna's tables;
            # the loser finds them made a moment later.
            if attempt < 2 and any(w in str(e) for w in ("already exists", "duplicate key")):
                time.sleep(1.0 + attempt)
                continue
            raise UserError(f"--storage {label}: cannot open the study storage "
                            f"({reason[0] if reason else type(e).__name__})") from None
    local = sweeps_root() / "rdb" / "".join(c if c.isalnum() else "_" for c in label)[:80]
    return SweepStorage("rdb", label, storage, local, url, stale)


# ----------------------------------------------------------------------------- studies

def find_study(st: SweepStorage, name: str):
    """The study of that name in the storage, or None (nothing is created)."""
    import optuna

    try:
        return optuna.load_study(study_name=name, storage=st.storage)
    except KeyError:
        return None


def open_study(st: SweepStorage, name: str, identity: dict[str, str], directions: list[str],
               sampler: Any):
    """Create the study, or join it when it exists and was made by the same sweep definition."""
    import optuna

    existing = find_study(st, name)   # looked up first: a refused study is not written to at all
    if existing is None:
        try:
            study = optuna.create_study(study_name=name, storage=st.storage, directions=directions,
                                        sampler=sampler, load_if_exists=False)
        except optuna.exceptions.DuplicatedStudyError:   # another worker created it just now
            existing = optuna.load_study(study_name=name, storage=st.storage)
    if existing is not None:
        check_identity(existing, name, identity, st.label)
        return optuna.load_study(study_name=name, storage=st.storage, sampler=sampler)
    for k, v in identity.items():
        study.set_user_attr(k, v)
    return study


def check_identity(study, name: str, identity: dict[str, str], where: str, wait_s: float = 10.0) -> None:
    attrs = study.user_attrs
    deadline = time.monotonic() + wait_s
    while "repro.sweep" not in attrs and time.monotonic() < deadline and not study.get_trials(deepcopy=False):
        time.sleep(0.2)   # the process that created it sets its identity right after creating it
        attrs = study.user_attrs
    if "repro.sweep" not in attrs:
        if study.get_trials(deepcopy=False):
            raise UserError(f"study {name!r} in {where} was not made by `repro sweep`; pass --study ANOTHER_NAME")
        for k, v in identity.items():   # an empty study whose creator died before naming it
            study.set_user_attr(k, v)
        return
    if attrs.get("repro.sweep") != identity["repro.sweep"] or attrs.get("repro.stage") != identity["repro.stage"]:
        raise UserError(f"study {name!r} in {where} belongs to sweep {attrs.get('repro.sweep')!r}"
                        f"{' (' + str(attrs.get('repro.stage')) + ' stage)' if attrs.get('repro.stage') != 'main' else ''}, "
                        f"not {identity['repro.sweep']!r}; pass --study ANOTHER_NAME")
    if attrs.get("repro.definition") != identity["repro.definition"]:
        raise UserError(f"study {name!r} in {where} was made by another definition of sweep {identity['repro.sweep']!r} "
                        f"(search space, objectives or base spec {identity['repro.base']} changed since); "
                        f"pass --study NEW_NAME")


# ----------------------------------------------------------------------------- locks

@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@contextlib.contextmanager
def queue_lock(st: SweepStorage, study_name: str) -> Iterator[None]:
    """Serialises the decisions to enqueue a point among all workers that share the storage:
    an flock for a journal or SQLite file (one machine), a PostgreSQL advisory lock (any machine;
    its connection closing releases it, whatever killed the worker). Other databases go without:
    the check after a pop (queue.claim) still keeps a second trial of a point from completing."""
    if st.kind == "journal" or st.dialect == "sqlite":
        with file_lock(st.local_dir / f"{_safe(study_name)}.queue.lock"):
            yield
        return
    if st.dialect in ("postgresql", "postgres"):
        from sqlalchemy import text

        key = int(stable_hash(["repro.queue", study_name], n=15), 16)
        with st.storage.engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        return
    yield


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
