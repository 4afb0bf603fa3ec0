"""Which DVC stages a change re-runs (docs DESIGN.md "Layout": a change to one runner touches only
the stages of the specs that use it, and `reports`).

On a copy of the repository at the test profile whose every stage is recorded as done without
computing anything (the `code` stage's fingerprints are real, other outputs are stand-in files,
`dvc commit -f` writes dvc.lock), one file is changed and `dvc status --json` is read. Each test
first checks the machinery (DVC names exactly `code` and the stages whose fingerprint changed),
then the structure (which stages those are)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, cli_env

# One xdist worker for the module: the recorded copy is built once (`make test` runs -n 2 --dist loadgroup).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("dvc_changes")]
PROFILE = "test"


def copy_repo(dst: Path) -> None:
    """The tracked files, and the package as it is in the working tree (what dvc.yaml is rendered
    from); not the committed smoke run's dvc.lock, metrics/ and reports/ (each test makes its own)."""
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for rel in tracked:
        if (REPO / rel).is_file() and not rel.startswith(("reports/", "metrics/")) and rel != "dvc.lock":
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dst / rel)
    shutil.copytree(REPO / "repro", dst / "repro", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def dvc_env(repo: Path) -> dict[str, str]:
    return cli_env(repo) | {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
                            "DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(repo)}


def dvc(repo: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    out = subprocess.run([str(Path(sys.executable).parent / "dvc"), *args], cwd=repo, env=dvc_env(repo),
                         capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stdout + out.stderr
    return out


def write_fingerprints(repo: Path) -> None:
    subprocess.run([sys.executable, "-m", "repro.commands.pipeline", "fingerprints", "--profile", PROFILE],
                   cwd=repo, env=dvc_env(repo), check=True, capture_output=True)


def _stand_ins(repo: Path, stages: dict) -> None:
    """Every output of every stage but `code`, as a small file: the stage looks done to DVC."""
    for name, stage in stages.items():
        for section in ("outs", "metrics", "plots"):
            for out in stage.get(section, []) if name != "code" else []:
                path = repo / (out if isinstance(out, str) else next(iter(out))).replace("${profile}", PROFILE)
                if path.suffix in (".json", ".csv"):
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text("{}\n" if path.suffix == ".json" else "a\n1\n")
                else:
                    path.mkdir(parents=True, exist_ok=True)
                    (path / "stand-in").write_text("x")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Path:
    """The copy with every stage recorded as done (built once; each test works on its own copy)."""
    from repro.commands.pipeline import render_dvc_yaml, render_params

    repo = tmp_path_factory.mktemp("recorded") / "repo"
    copy_repo(repo)
    (repo / "params.yaml").write_text(render_params(PROFILE))
    (repo / "dvc.yaml").write_text(render_dvc_yaml(PROFILE))
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    write_fingerprints(repo)
    _stand_ins(repo, yaml.safe_load((repo / "dvc.yaml").read_text())["stages"])
    dvc(repo, "commit", "-f", "-q")
    return repo


@pytest.fixture
def repo(recorded, tmp_path) -> Path:
    copy = tmp_path / "repo"
    shutil.copytree(recorded, copy, symlinks=True)
    return copy


def changed(repo: Path) -> set[str]:
    """The stages `dvc status` names (changed deps, params or outs)."""
    return set(json.loads(dvc(repo, "status", "--json").stdout or "{}"))


def _fingerprints(repo: Path) -> dict[str, str]:
    return {p.stem: p.read_text() for p in (repo / "fingerprints").glob("*.txt")}


def _stages(repo: Path) -> dict:
    return yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]


def _specs_of_kind(repo: Path, kind: str) -> set[str]:
    return {p.stem for p in (repo / "experiments").glob("*.yaml")
            if (yaml.safe_load(p.read_text()) or {}).get("kind") == kind}


def edit_and_refingerprint(repo: Path, rel: str) -> set[str]:
    """Append a comment line to one module, rewrite the fingerprints (what the `code` stage does);
    check that DVC names `code` and exactly the stages whose fingerprint changed, and return those."""
    before = _fingerprints(repo)
    path = repo / rel
    path.write_text(path.read_text() + "\n# changed by tests/test_dvc_changes.py\n")
    write_fingerprints(repo)
    after = _fingerprints(repo)
    refingerprinted = {s for s in after if after[s] != before.get(s)}
    named = changed(repo)
    assert named == {"code"} | refingerprinted, (
        f"dvc status names {sorted(named)}; fingerprints changed: {sorted(refingerprinted)}")
    return named


def test_changing_one_sample_count_reruns_only_its_stage(repo):
    assert changed(repo) == set()
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["specs"]["fig5_9"]["n_images"] += 1
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    assert changed(repo) == {"fig5_9"}
    # A change to one runner: the `code` stage first (it re-hashes), then the specs of that kind (the
    # reports draw from its report module, which does not import this runner; they follow once the
    # spec's results change); fig5_9 is still pending from the change above.
    runner = repo / "repro/experiments/semantic/guidance_scale_sweep.py"
    runner.write_text(runner.read_text() + "\n# changed\n")
    assert changed(repo) == {"fig5_9", "code"}
    dvc(repo, "repro", "--single-item", "code")
    assert changed(repo) == {"fig5_9", "table5_3"}


def test_a_runner_change_reruns_its_kind_specs_and_the_reports(repo):
    """A runner module is in its own specs' stages only; the reports draw a kind's figures and notes
    from its report module, so they follow a runner change through the spec's new results (DVC
    re-runs `reports` once the spec stage has written them)."""
    named = edit_and_refingerprint(repo, "repro/experiments/score/snr_sweep.py")
    expected = {"code"} | _specs_of_kind(repo, "snr_sweep")
    assert expected == {"code", "snr_study"}
    if named != expected:
        pytest.fail(f"dvc status names {sorted(named)}\nexpected {sorted(expected)}", pytrace=False)


def test_a_cost_estimator_change_reruns_no_spec(repo):
    """The estimate `repro run` prints before it starts never changes a result: a change to the
    estimators all families share re-runs the reports (which print estimates) and no spec."""
    named = edit_and_refingerprint(repo, "repro/experiments/cost.py")
    if named != {"code", "reports"}:
        pytest.fail(f"after a cost-estimator edit dvc status names {sorted(named)}", pytrace=False)


def test_a_report_module_change_reruns_the_reports_only(repo):
    named = edit_and_refingerprint(repo, "repro/experiments/score/report_snr_sweep.py")
    if named != {"code", "reports"}:
        pytest.fail(f"after a report edit dvc status names {sorted(named)}", pytrace=False)


def test_a_shared_sampler_change_reruns_the_specs_whose_runners_use_it(repo):
    """repro/sampling/sde_solvers.py (Euler-Maruyama, Milstein): no trainer imports it. Read from
    the code, not from the closures (that would check the closures against themselves): only
    repro/experiments/score/sampling.py imports it (`run_setting`, the score kinds' sampler dispatch),
    and of the score family's runners sampler_comparison (sampler_table, milstein_study) and
    snr_sweep (snr_study) use that, through score/evaluation.py and score/sampler_settings.py;
    class_conditional (sec5_1_digits) samples with repro.sampling.predictor_corrector directly.
    `reports` may or may not draw on it (whether a kind's report module imports its sampling code):
    left out of the comparison."""
    expected_specs = {"sampler_table", "milstein_study", "snr_study"}
    named = edit_and_refingerprint(repo, "repro/sampling/sde_solvers.py")
    assert not {s for s in named if s.startswith("train_")}, f"training stages named: {sorted(named)}"
    others = named - {"code", "reports"}
    if others != expected_specs:
        pytest.fail(f"spec stages named: {sorted(others)}\nexpected: {sorted(expected_specs)}\n"
                    f"not expected: {sorted(others - expected_specs)}\nmissing: {sorted(expected_specs - others)}",
                    pytrace=False)
    assert set(_stages(repo)) >= expected_specs


def test_a_claim_or_published_value_edit_reruns_the_reports_only(repo):
    """A spec's claims, published values and title change no result: the `code` stage re-hashes the
    spec (its fingerprint keeps resolve's hash, which leaves them out), then only `reports` follow;
    a setting that changes results re-runs the spec."""
    path = repo / "experiments" / "table5_3.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["title"] += " (edited)"
    doc["paper"]["notes"] = (doc["paper"].get("notes") or "") + " edited"
    doc.setdefault("claims", []).append({
        "id": "added_by_test", "quote": "words of the thesis", "claim": "a claim added by the test",
        "place": {"document": "000_6e84dfabea47f45d.txt", "lines": [1, 1]}, "kind": "threshold",
        "metric": "miou", "unit": "maps", "a": {"where": {"s0": 0.0}}, "value": 0.1, "direction": "higher"})
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert changed(repo) == {"code", "reports"}
    dvc(repo, "repro", "--single-item", "code")
    assert changed(repo) == {"reports"}
    doc["fixed"]["t_decay"] = 0.5   # a setting: the spec's results change
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    dvc(repo, "repro", "--single-item", "code")
    assert changed(repo) == {"reports", "table5_3"}
