"""The environment record, the thread setting, the lock file and `repro doctor`'s lock check."""
from __future__ import annotations

import json
import platform
import re
from importlib import metadata
from pathlib import Path

import pytest
import torch

from repro import environment

from repro.commands import doctor
from repro.errors import UserError

REPO = Path(__file__).resolve().parent.parent

MKL_CONFIG = """PyTorch built with:
  - GCC 13.3
  - Intel(R) oneAPI Math Kernel Library Version 2024.2-Product Build 20240605 for Intel(R) 64 architecture applications
  - Intel(R) MKL-DNN v3.12.0 (Git Hash 80afa71049cd69a3df32adcccb623b12cd7baa22)
  - OpenMP 201511 (a.k.a. OpenMP 4.5)
  - CPU capability usage: AVX512
  - Build settings: BLAS_INFO=mkl, BUILD_TYPE=Release, COMMIT_SHA=5c4886908584029761b579af026dcfb627c84070, CUDA_VERSION=13.0, CUDNN_VERSION=9.24.0, LAPACK_INFO=mkl, TORCH_VERSION=2.14.1, USE_CUDA=1,
"""
OPENBLAS_CONFIG = """PyTorch built with:
  - GCC 11.2
  - OpenMP 201511 (a.k.a. OpenMP 4.5)
  - LAPACK is enabled (usually provided by MKL)
  - CPU capability usage: NO AVX
  - Build settings: BLAS_INFO=open, BUILD_TYPE=Release, CXX_COMPILER=/usr/bin/c++, LAPACK_INFO=open, TORCH_VERSION=2.4.0, USE_CUDA=0,
"""


def test_torch_config_summary_of_an_mkl_cuda_build():
    assert environment.summarise_torch_config(MKL_CONFIG) == {
        "blas": "mkl", "lapack": "mkl", "cuda": "13.0", "cudnn": "9.24.0", "commit": "5c4886908584",
        "cpu_capability": "AVX512", "mkl": "2024.2", "mkldnn": "v3.12.0", "openmp": "201511"}


def test_torch_config_summary_of_a_cpu_openblas_build():
    # no CUDA/cuDNN/MKL fields at all
    assert environment.summarise_torch_config(OPENBLAS_CONFIG) == {
        "blas": "open", "lapack": "open", "cpu_capability": "NO AVX", "openmp": "201511"}


def test_record_matches_the_libraries_own_answers():
    rec = environment.record()
    for pkg in environment.RECORDED_PACKAGES:
        assert rec["packages"][pkg] == metadata.version(pkg)
    assert rec["packages"]["torch"] == torch.__version__.split("+")[0]
    assert rec["threads"] == torch.get_num_threads()
    build = rec["torch_build"]
    if torch.backends.mkl.is_available():
        assert build["blas"] == "mkl"
    assert build["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    if torch.version.cuda:
        assert build["cuda"] == torch.version.cuda
    assert rec["cpu"]["model"] == environment.cpu_model() and set(rec["cpu"]["bf16"]) <= {"avx512_bf16", "amx_bf16"}
    json.dumps(rec)   # goes into every results file as it is


def test_tags_flatten_the_record():
    rec = {"python": "3.11.7", "machine": "x86_64", "threads": 3,
           "packages": {"torch": "2.14.1", "numpy": "2.4.6"}, "torch_build": {"blas": "mkl"}}
    assert environment.tags(rec) == {"repro.env.torch": "2.14.1", "repro.env.numpy": "2.4.6",
                                     "repro.env.blas": "mkl", "repro.env.threads": "3",
                                     "repro.env.python": "3.11.7", "repro.env.machine": "x86_64"}


def test_thread_setting_default_env_and_flag(monkeypatch):
    monkeypatch.delenv("REPRO_THREADS", raising=False)
    assert environment.threads_setting() == 2
    monkeypatch.setenv("REPRO_THREADS", "5")
    assert environment.threads_setting() == 5
    assert environment.threads_setting(3) == 3   # --threads wins over the variable
    for bad in ("0", "-1", "two", "1.5"):
        monkeypatch.setenv("REPRO_THREADS", bad)
        with pytest.raises(UserError, match="REPRO_THREADS"):
            environment.threads_setting()


def test_apply_threads_sets_torch_and_the_environment_of_child_processes(monkeypatch):
    for var in ("REPRO_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        # 1: below this machine's cores (a child's default), so the child shows the inherited setting
        assert environment.apply_threads(1) == 1
        assert torch.get_num_threads() == 1
        import os
        import subprocess
        import sys

        child = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                               capture_output=True, text=True, env=dict(os.environ), timeout=120)
        assert child.stdout.strip() == "1"
        assert environment.record()["threads"] == 1
    finally:
        torch.set_num_threads(before)


LOCK_TEXT = """# a comment
-e file:///somewhere
Torch==2.14.1
typing_extensions==4.16.0   # trailing comment
nvidia-cublas==13.1.1.3 ; sys_platform == "linux"
ruamel.yaml==0.19.1

uvicorn[standard]==0.54.0
"""


def test_read_lock_normalises_names_and_drops_markers(tmp_path):
    p = tmp_path / "requirements.lock"
    p.write_text(LOCK_TEXT)
    assert environment.read_lock(p) == {"torch": "2.14.1", "typing-extensions": "4.16.0",
                                        "nvidia-cublas": "13.1.1.3", "ruamel-yaml": "0.19.1",
                                        "uvicorn": "0.54.0"}


def test_read_lock_refuses_a_range(tmp_path):
    p = tmp_path / "requirements.lock"
    p.write_text("torch>=2.4\n")
    with pytest.raises(UserError, match="name==version"):
        environment.read_lock(p)


def test_lock_differences():
    pins = {"torch": "2.14.1", "numpy": "2.4.6", "scipy": "1.17.1"}
    installed = {"torch": "2.14.1", "numpy": "2.3.0"}
    assert environment.lock_differences(pins, installed) == [("numpy", "2.4.6", "2.3.0"), ("scipy", "1.17.1", None)]


def test_unlocked_requirements(tmp_path):
    py = tmp_path / "pyproject.toml"
    py.write_text('[project]\nname = "x"\ndependencies = ["torch>=2.4,<=2.14.1", "Ruamel.YAML>=0.18"]\n'
                  '[project.optional-dependencies]\ntest = ["pytest>=8"]\n')
    assert environment.declared_requirements(py) == ["pytest", "ruamel-yaml", "torch"]
    assert environment.unlocked_requirements({"torch": "2.14.1", "ruamel-yaml": "0.19.1"}, py) == ["pytest"]


def test_doctor_names_each_pin_the_installation_breaks(tmp_path, monkeypatch):
    lock = tmp_path / "requirements.lock"
    lock.write_text(f"torch=={metadata.version('torch')}\nnumpy==0.0.1\nno-such-package-xyz==1.0\n")
    monkeypatch.setattr(environment, "lock_path", lambda: lock)
    lines = list(doctor.lock_lines())
    assert lines[0].startswith("lock        2 of 3 pins differ")
    assert f"  differs   numpy: locked 0.0.1, installed {metadata.version('numpy')}" in lines
    assert "  differs   no-such-package-xyz: locked 1.0, installed none" in lines
    assert not any("torch:" in line for line in lines)


def test_doctor_without_a_lock(tmp_path, monkeypatch):
    monkeypatch.setattr(environment, "lock_path", lambda: tmp_path / "requirements.lock")
    assert "no requirements.lock" in next(doctor.lock_lines())


def test_the_committed_lock_pins_torch_and_every_declared_dependency():
    lock = REPO / environment.LOCK_FILE
    header = lock.read_text().splitlines()[:12]
    assert any("pip freeze" in line for line in header) and any("make lock" in line for line in header)
    pins = environment.read_lock(lock)
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"
    assert environment.unlocked_requirements(pins) == [], "refresh the lock: make lock"
    for pin in pins.values():
        assert re.fullmatch(r"[0-9][0-9A-Za-z.+!_-]*", pin)


def _load_compare_runs():
    import importlib.util

    spec = importlib.util.spec_from_file_location("compare_runs", REPO / "benchmarks" / "compare_runs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _cell(root: Path, key: str, record: dict) -> None:
    p = root / "fig5_9" / "smoke" / "cells" / f"{key}.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(record, indent=2, sort_keys=True))


def test_compare_runs_bitwise(tmp_path, capsys):
    import math

    cr = _load_compare_runs()
    a, b = tmp_path / "a", tmp_path / "b"
    base = {"cell": {"t": 0.02}, "values": {"pixel_acc": 0.8216, "miou": float("nan")}, "seconds": 1.0,
            "finished_at": "2026-12-01T20:00:00+00:00", "mlflow_run_id": "x", "environment": {"threads": 1}}
    _cell(a, "same", base)
    _cell(b, "same", base)
    _cell(a, "volatile", base)
    _cell(b, "volatile", {**base, "seconds": 2.5, "mlflow_run_id": "y", "finished_at": "later"})
    _cell(a, "ulp", base)
    _cell(b, "ulp", {**base, "values": {**base["values"], "pixel_acc": math.nextafter(0.8216, 1.0)}})
    _cell(a, "threads", base)
    _cell(b, "threads", {**base, "values": {"pixel_acc": 0.8196, "miou": float("nan")}, "environment": {"threads": 2}})
    _cell(a, "only_a", base)
    r = cr.compare(a, b, [])
    assert r["byte_identical"] == ["fig5_9/smoke/cells/same.json"]
    assert r["equal"] == ["fig5_9/smoke/cells/volatile.json"]
    assert set(r["differs"]) == {"fig5_9/smoke/cells/ulp.json", "fig5_9/smoke/cells/threads.json"}
    assert r["differs"]["fig5_9/smoke/cells/threads.json"] == [("environment.threads", 1, 2),
                                                                ("values.pixel_acc", 0.8216, 0.8196)]
    assert r["only_a"] == ["fig5_9/smoke/cells/only_a.json"] and r["only_b"] == []
    count, gap = r["moves"][("fig5_9", "pixel_acc")]
    assert count == 2 and gap == pytest.approx(0.002, abs=1e-12)
    assert cr.main([str(a), str(b), "--quiet"]) == 1
    # with the differing fields ignored and the lone cell removed: exit 0
    (a / "fig5_9" / "smoke" / "cells" / "only_a.json").unlink()
    assert cr.main([str(a), str(b), "--quiet", "--ignore", "values.*", "--ignore", "environment.*"]) == 0
    assert "0 differ" in capsys.readouterr().out
    with pytest.raises(SystemExit) as usage:
        cr.main([str(a), str(tmp_path / "missing")])
    assert usage.value.code == 2 and "missing: not a folder" in capsys.readouterr().err


def test_compare_verdicts_compares_claims_csv_rows(tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("compare_verdicts", REPO / "benchmarks" / "compare_verdicts.py")
    cv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cv)
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    head = "spec,claim_id,profile,verdict,share\n"
    (a / "claims.csv").write_text(head + "fig12_1,eps_helps,smoke,held,0.93\ntable5_3,miou_rises,smoke,held,1\n")
    (b / "claims.csv").write_text(head + "fig12_1,eps_helps,smoke,held,0.97\ntable5_3,miou_rises,smoke,held,1\n")
    # shares move, the verdicts do not: equal
    r = cv.compare(a, b)
    assert (r["compared"], r["differs"], r["only_a"]) == (2, [], [])
    assert cv.main([str(a), str(b), "--quiet"]) == 0
    (b / "claims.csv").write_text(head + "fig12_1,eps_helps,smoke,inconclusive,0.6\n")
    r = cv.compare(a, b)
    assert [(d[0], d[1], d[2]) for d in r["differs"]] == [(("fig12_1", "eps_helps", "smoke"), "held", "inconclusive")]
    assert r["only_a"] == [("table5_3", "miou_rises", "smoke")]
    assert cv.main([str(a), str(b)]) == 1
    assert "1 differ" in capsys.readouterr().out
    with pytest.raises(SystemExit) as usage:   # a report folder that is not a folder: usage error
        cv.main([str(a / "claims.csv"), str(b)])
    assert usage.value.code == 2 and "not a folder" in capsys.readouterr().err


def test_every_locked_version_is_inside_pyproject_ranges():
    """A range tightened in pyproject.toml (an upper bound after an API broke) needs a new lock."""
    import tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    reqs += [Requirement(r) for extra in project["optional-dependencies"].values() for r in extra]
    pins = environment.read_lock(REPO / environment.LOCK_FILE)
    outside = [f"{r.name} {pins[environment._normalise(r.name)]} not in {r.specifier}" for r in reqs
               if not r.specifier.contains(pins[environment._normalise(r.name)], prereleases=True)]
    assert outside == [], "refresh the lock: make lock"


def test_cpu_model_and_native_bf16_from_cpuinfo(tmp_path, monkeypatch):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\n"
                    "flags\t\t: fpu avx2 avx512f avx512_bf16 amx_tile amx_bf16\n\nprocessor\t: 1\n"
                    "model name\t: other\n")
    monkeypatch.setattr(environment, "CPUINFO", info)
    assert environment.cpu_model() == "Intel(R) Xeon(R) Processor"   # the first CPU's
    assert environment.cpu_bf16_flags() == ["amx_bf16", "avx512_bf16"]
    info.write_text("model name\t: Old Xeon\nflags\t\t: fpu avx2 avx512f\n")
    assert environment.cpu_bf16_flags() == []
    rec = {"packages": {"torch": "2.14.1"}, "threads": 1, "torch_build": {}, "cpu": {"model": "Old Xeon", "bf16": []}}
    assert environment.describe(rec) == "torch 2.14.1, 1 thread(s), CPU Old Xeon (native bf16: none)"
    assert environment.tags({**rec, "python": "3.11.7", "machine": "x86_64"})["repro.env.cpu_bf16"] == "none"
    monkeypatch.setattr(environment, "CPUINFO", tmp_path / "missing")   # not Linux: what platform knows
    assert environment.cpu_bf16_flags() == []
    assert environment.cpu_model() == (platform.processor() or platform.machine() or "unknown cpu")
