"""A tracking store that survives parallel use: initialised once, under a file lock.

MLflow creates (or migrates) its SQL schema the first time a process opens a store. Two
processes opening the same fresh `mlflow.db` at once both run the migration, and one fails
("Online migration expected to match one row ... 0 found"): that is what torchrun ranks, sweep
workers and parallel cells did. `prepare_store` opens the store while holding a lock,
so the first process creates the schema and every later one finds it complete. A process
prepares a store once; MLflow caches the opened store per URI for the rest of its life.

A fresh SQLite store is created whole or not at all: its schema is built in a temporary file
beside it, which is renamed into place when complete, so a process killed in the middle of the
migration (SIGKILL at start-up) leaves no half-made `mlflow.db` for the next run to trip over (the
temporary file names its writer and is removed once that process is dead, repro.atomic).
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from repro.atomic import check_writable, new_temporary, remove_orphan_temporaries
from repro.errors import UserError
from repro.killpoints import kill_point

_prepared: set[str] = set()
LOCK_TIMEOUT_S = 600.0   # a schema migration takes seconds; a lock held longer is a stuck process
SERVER_TIMEOUT_S = 5.0   # a tracking server that does not answer within this is reported, not retried for minutes
# MLflow's client retries a server call 7 times with doubling back-off and waits 120 s for an answer
# (minutes per call when the server is gone); the tracker stops calling a server that stopped
# answering (repro.tracking.runs.Tracker.guard), so one bounded try is enough. A user's own settings win.
SERVER_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                  "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}
SQLITE_MAGIC = b"SQLite format 3\x00"
SCHEMES = ("sqlite", "file", "http", "https", "postgresql", "mysql", "mssql", "databricks")


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///path` URI (None for any other store)."""
    if not uri.startswith("sqlite:"):
        return None
    rest = uri[len("sqlite:"):]
    if not rest.startswith("///"):
        return None
    path = rest[3:].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def lock_path(uri: str) -> Path:
    """A per-store file in the temp folder (every process of this machine sees it; none is left in
    the working directory). A SQLite store is named by its absolute path, any other by its URI."""
    db = sqlite_path(uri)
    name = str(db.resolve()) if db is not None else uri
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"repro-mlflow-{digest}.init.lock"


def store_problem(uri: str) -> str | None:
    """What stops the tracking store at `uri` from taking runs, in words (None: nothing found). Cheap:
    a file's first bytes, a folder's writability, one request to a server; the schema is checked when
    prepare_store opens it."""
    scheme = uri.split(":", 1)[0].split("+", 1)[0] if ":" in uri else ""
    if scheme and len(scheme) > 1 and scheme not in SCHEMES:
        return f"unknown scheme {scheme!r} (use sqlite:///path/mlflow.db, http(s)://host:port or postgresql://...)"
    db = sqlite_path(uri)
    if db is not None:
        if db.is_dir():
            return f"{db} is a folder, not an SQLite file"
        if db.exists() and db.stat().st_size:
            with open(db, "rb") as f:
                if f.read(len(SQLITE_MAGIC)) != SQLITE_MAGIC:
                    return f"{db} is not an SQLite database (move it aside: a new store is made there)"
            if not os.access(db, os.W_OK):
                return f"{db} is read-only"
        try:
            check_writable(db.parent if str(db.parent) else Path("."), "the MLflow store's folder")
        except UserError as e:
            return str(e)
    if scheme in ("http", "https"):
        import urllib.request

        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=SERVER_TIMEOUT_S):
                pass
        except OSError as e:
            return f"the server does not answer within {SERVER_TIMEOUT_S:g} s ({getattr(e, 'reason', e)})"
    return None


def check_store(uri: str | None = None) -> None:
    """One line (UserError) naming the store and what is wrong, before any work."""
    import mlflow

    uri = uri or mlflow.get_tracking_uri()
    problem = store_problem(uri)
    if problem:
        raise UserError(f"MLflow store {uri}: {problem}; fix it or set MLFLOW_TRACKING_URI (REPRO_NO_MLFLOW=1: no tracking)")


def schema_problem(uri: str) -> str | None:
    """An SQL store's schema against this MLflow's (None: the same, or no store yet): a store made by
    an older MLflow needs `mlflow db upgrade` (MLflow refuses to open it), one made by a newer MLflow
    a newer MLflow. Servers check their own schema."""
    scheme = uri.split(":", 1)[0].split("+", 1)[0]
    db = sqlite_path(uri)
    if scheme not in ("sqlite", "postgresql", "mysql", "mssql") or (db is not None and not db.is_file()):
        return None
    import mlflow
    from mlflow.store.db.utils import _get_latest_schema_revision
    from sqlalchemy import create_engine, inspect

    engine = create_engine(uri)
    try:
        with engine.connect() as connection:
            if not inspect(connection).has_table("alembic_version"):
                return None   # an empty database: the first run makes the schema
            found = connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    except Exception as e:  # noqa: BLE001 (SQLAlchemy's own errors: unreachable, no such database, not SQL)
        return f"its schema cannot be read ({type(e).__name__})"
    finally:
        engine.dispose()
    head = _get_latest_schema_revision()
    if found != head:
        return (f"its schema is at revision {found}, MLflow {mlflow.__version__} expects {head}: back it up, then "
                f"`mlflow db upgrade {uri}` (or use the MLflow that made it)")
    return None


def prepare_store(uri: str | None = None) -> str:
    """Open the tracking store at `uri` (default: MLflow's current one) under the lock, creating its
    schema if it is fresh; returns the URI. Idempotent and cheap after the first call in a process."""
    import mlflow
    from filelock import FileLock

    uri = uri or mlflow.get_tracking_uri()
    if uri in _prepared:
        return uri
    if uri.startswith(("http:", "https:", "databricks")):   # a server owns its schema
        for name, value in SERVER_RETRIES.items():   # a server gone mid-run: seconds per call, not minutes
            os.environ.setdefault(name, value)
        _prepared.add(uri)
        return uri
    db = sqlite_path(uri)
    if db is not None and db.parent != Path(""):
        db.parent.mkdir(parents=True, exist_ok=True)
    lock = lock_path(uri)
    with FileLock(str(lock), timeout=LOCK_TIMEOUT_S):
        from mlflow.tracking import MlflowClient

        if db is not None and (not db.exists() or db.stat().st_size == 0):
            _create_whole(db)
        try:
            MlflowClient(tracking_uri=uri).search_experiments(max_results=1)   # opens the store: schema now
        except Exception as e:   # noqa: BLE001 (a damaged schema, a truncated file: SQLAlchemy's own errors)
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise UserError(f"MLflow store {uri}: cannot be opened ({type(e).__name__}: {first}); move it aside "
                            f"or set MLFLOW_TRACKING_URI") from None
    _prepared.add(uri)
    return uri


def _create_whole(db: Path) -> None:
    """Build a fresh SQLite store's schema in a temporary file, then rename it to `db`."""
    from mlflow.tracking import MlflowClient

    remove_orphan_temporaries(db.parent, f".{db.name}.*.tmp", recursive=False)   # a killed creator's leftovers
    fd, tmp = new_temporary(db)
    os.close(fd)   # an empty file is an empty SQLite database
    try:
        MlflowClient(tracking_uri=f"sqlite:///{Path(tmp).resolve()}").search_experiments(max_results=1)
        kill_point(f"write:{db.name}")   # test hook (repro.killpoints): the schema made, not yet in place
        os.replace(tmp, db)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
