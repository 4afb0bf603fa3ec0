"""The software environment a result is computed in: package versions, torch's build, the
intra-op thread count (a run setting), and the lock file of exact versions.

Numbers depend on more than the code and the seed: the BLAS that torch was built with, its
CPU kernels (AVX2 vs AVX512), and how many threads split a reduction (float addition is not
associative). So every result records `record()`, and the thread count is fixed by the run
(`--threads`, `REPRO_THREADS`, default DEFAULT_THREADS) instead of left to torch's default
(the number of cores, which differs between machines and changes a smoke figure in the third
digit). This module never initialises CUDA (a parent process that must not hold a CUDA
context calls it).
"""
from __future__ import annotations

import os
import platform
import re
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from repro.errors import UserError
from repro.specs import repo_root

if TYPE_CHECKING:
    import torch

THREADS_ENV = "REPRO_THREADS"
DEFAULT_THREADS = 2
# Libraries whose versions change the numbers: torch (kernels), numpy, and the metric packages.
RECORDED_PACKAGES = ("torch", "torchvision", "numpy", "scipy", "torchmetrics", "pytorch-fid")
LOCK_FILE = "requirements.lock"


# --- the thread setting -------------------------------------------------------------------

def threads_setting(value: int | str | None = None) -> int:
    """The intra-op thread count to use: `value` (from --threads), else $REPRO_THREADS, else 2."""
    where = "--threads"
    if value is None:
        value = os.environ.get(THREADS_ENV, "").strip() or DEFAULT_THREADS
        where = THREADS_ENV
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise UserError(f"{where} {value!r}: expected a whole number of threads, e.g. 2") from None
    if n < 1 or n > 1024:
        raise UserError(f"{where} {n}: must be between 1 and 1024")
    return n


def export_threads(n: int) -> None:
    """Put the setting in the environment, so that processes started from here (AMP arms, sweep
    workers, torchrun ranks) and a torch imported later start with the same count."""
    for var in (THREADS_ENV, "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)


def apply_threads(value: int | str | None = None) -> int:
    """Fix torch's intra-op thread count before any work (see the module docstring)."""
    n = threads_setting(value)
    export_threads(n)
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


# --- what a result records ------------------------------------------------------------------

def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()   # PEP 503


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


_BUILD_FIELDS = {"BLAS_INFO": "blas", "LAPACK_INFO": "lapack", "CUDA_VERSION": "cuda",
                 "CUDNN_VERSION": "cudnn", "COMMIT_SHA": "commit"}


def summarise_torch_config(text: str) -> dict[str, str]:
    """The parts of `torch.__config__.show()` that change numbers: BLAS/LAPACK and their versions,
    the CPU kernels in use, the OpenMP runtime, the CUDA/cuDNN versions built against."""
    out: dict[str, str] = {}
    for key, name in _BUILD_FIELDS.items():
        m = re.search(rf"\b{key}=([^,\s]*)", text)
        if m and m.group(1):
            out[name] = m.group(1)[:12] if name == "commit" else m.group(1)
    patterns = {"cpu_capability": r"CPU capability usage:[ \t]*([^\n,]*\S)",
                "mkl": r"Math Kernel Library Version\s+([\w.]+)",
                "mkldnn": r"MKL-DNN\s+(v[\w.]+)",
                "openmp": r"OpenMP\s+(\d+)",
                "openblas": r"OpenBLAS\s+([\w.]+)"}
    for name, pattern in patterns.items():
        m = re.search(pattern, text)
        if m:
            out[name] = m.group(1)
    return out


@lru_cache(maxsize=1)
def torch_build() -> dict[str, str]:
    import torch

    return summarise_torch_config(torch.__config__.show())


CPUINFO = Path("/proc/cpuinfo")


def _cpuinfo_field(name: str) -> str | None:
    """The first /proc/cpuinfo line's value for `name` (Linux), or None."""
    try:
        for line in CPUINFO.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip().lower() == name:
                return value.strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else what platform knows."""
    return _cpuinfo_field("model name") or platform.processor() or platform.machine() or "unknown cpu"


def cpu_bf16_flags() -> list[str]:
    """The CPU's native bf16 instructions (without them bf16 autocast is emulated, and slow). The
    machines of one kind differ here from day to day: a stage's time depends on it."""
    return sorted(set((_cpuinfo_field("flags") or "").split()) & {"avx512_bf16", "amx_bf16"})


@lru_cache(maxsize=1)
def _static_record() -> dict[str, Any]:
    return {"python": platform.python_version(), "machine": platform.machine(),
            "packages": {p: package_version(p) or "not installed" for p in RECORDED_PACKAGES},
            "torch_build": torch_build(), "cpu": {"model": cpu_model(), "bf16": cpu_bf16_flags()}}


def record() -> dict[str, Any]:
    """What every results file and MLflow run records about the environment (JSON-ready)."""
    import torch

    return {**_static_record(), "threads": torch.get_num_threads()}


def tags(rec: dict[str, Any] | None = None) -> dict[str, str]:
    """`record()` as flat MLflow tags: repro.env.torch, repro.env.threads, repro.env.blas, ..."""
    rec = rec or record()
    out = {f"repro.env.{name}": str(v) for name, v in rec["packages"].items()}
    out.update({f"repro.env.{k}": str(v) for k, v in rec["torch_build"].items()})
    out.update({"repro.env.threads": str(rec["threads"]), "repro.env.python": rec["python"],
                "repro.env.machine": rec["machine"]})
    if rec.get("cpu"):
        out["repro.env.cpu"] = rec["cpu"]["model"]
        out["repro.env.cpu_bf16"] = ",".join(rec["cpu"]["bf16"]) or "none"
    return out


def describe(rec: dict[str, Any]) -> str:
    """One line for a report: packages, threads, BLAS, CPU kernels and the CPU."""
    pk = rec.get("packages") or {}
    build = rec.get("torch_build") or {}
    order = [p for p in RECORDED_PACKAGES if p in pk] + sorted(p for p in pk if p not in RECORDED_PACKAGES)
    parts = [f"{p} {pk[p]}" for p in order]
    parts.append(f"{rec.get('threads', '?')} thread(s)")
    if build.get("blas"):
        parts.append(f"BLAS {build['blas']}" + (f" {build['mkl']}" if build.get("blas") == "mkl" and build.get("mkl") else ""))
    if build.get("cpu_capability"):
        parts.append(f"CPU kernels {build['cpu_capability']}")
    if rec.get("cpu"):   # the model and its native bf16 (AMX / AVX512-BF16): the same code's numbers differ by CPU
        parts.append(f"CPU {rec['cpu']['model']} (native bf16: {', '.join(rec['cpu']['bf16']) or 'none'})")
    if rec.get("python"):
        parts.append(f"Python {rec['python']}")
    return ", ".join(parts)


# --- the lock file --------------------------------------------------------------------------

def lock_path() -> Path:
    return repo_root() / LOCK_FILE


def read_lock(path: Path | None = None) -> dict[str, str]:
    """{normalised name: exact version} from a pip-freeze style lock (`name==version` lines)."""
    path = path or lock_path()
    pins: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*==\s*([^\s]+)", line)
        if m is None:
            raise UserError(f"{path.name}: cannot read the line {raw.strip()!r} (expected name==version)")
        pins[_normalise(m.group(1))] = m.group(3)
    return pins


def lock_differences(pins: dict[str, str], installed: dict[str, str | None] | None = None) -> list[tuple[str, str, str | None]]:
    """(package, locked version, installed version or None) for every pin the environment breaks."""
    out = []
    for name, want in sorted(pins.items()):
        have = installed.get(name) if installed is not None else package_version(name)
        if have != want:
            out.append((name, want, have))
    return out


def declared_requirements(pyproject: Path | None = None) -> list[str]:
    """The normalised names of the project's dependencies and extras, from pyproject.toml."""
    pyproject = pyproject or repo_root() / "pyproject.toml"
    try:
        import tomllib
    except ImportError:  # Python 3.10: the installed metadata says the same
        reqs = metadata.requires("repro") or []
    else:
        project = tomllib.loads(pyproject.read_text())["project"]
        reqs = list(project.get("dependencies", []))
        for extra in project.get("optional-dependencies", {}).values():
            reqs += extra
    names = {_normalise(re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", r).group(1)) for r in reqs}
    return sorted(names)


def unlocked_requirements(pins: dict[str, str], pyproject: Path | None = None) -> list[str]:
    """Declared dependencies the lock does not pin: the lock needs refreshing."""
    return [n for n in declared_requirements(pyproject) if n not in pins]


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU; a CUDA request without CUDA is a user error."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r}: not a device; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UserError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) present")
    if dev.type not in ("cpu", "cuda"):
        raise UserError(f"--device {name}: only cpu and cuda devices are supported")
    return dev
