"""End to end at the `test` profile: run, resume, MLflow records, reports, user errors, kill and resume."""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from repro import results
from tests.conftest import cli_env

REPRO = [sys.executable, "-m", "repro.cli"]


def _client():
    from mlflow.tracking import MlflowClient

    return MlflowClient()


def _runs(experiment: str):
    client = _client()
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no MLflow experiment {experiment}"
    return client.search_runs([exp.experiment_id], max_results=1000)


def test_run_writes_cells_tracks_and_resumes(workdir):
    from repro.engine.run import run_spec

    s = run_spec("fig5_9", "test", device="cpu", progress=False)
    assert s.total == 4 and len(s.ran) == 4 and not s.skipped
    cells = results.read_cells("fig5_9", "test")
    assert len(cells) == 4
    by_t = {c["cell"]["t"]: c for c in cells}
    for rec in cells:
        v = rec["values"]
        assert 0.0 <= v["pixel_acc"] <= 1.0 and 0.0 <= v["miou"] <= 1.0
        assert len(rec["spec_hash"]) == 12
        assert rec["seed"] and rec["git_commit"] and rec["mlflow_run_id"]
    assert set(by_t) == {0.0, 0.4, 0.8, 1.0}

    # The model was trained once, stored with its hash and a training run.
    model_dirs = list(Path("artifacts/noisy_unet").iterdir())
    assert len(model_dirs) == 1 and (model_dirs[0] / "model.pt").exists()
    meta = json.loads((model_dirs[0] / "meta.json").read_text())
    assert meta["sigma_max"] > 1.0 and len(meta["history"]) == 2 and len(meta["sha256"]) == 64
    train_runs = _runs("train-noisy_unet")
    assert len(train_runs) == 1 and train_runs[0].info.status == "FINISHED"
    assert "val_miou" in train_runs[0].data.metrics

    # MLflow: a parent run with tags and params, one child per cell with metrics and the cell JSON.
    runs = _runs("fig5_9")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == s.mlflow_run_id]
    assert len(parents) == 1 and parents[0].info.run_id == s.mlflow_run_id
    assert parents[0].info.status == "FINISHED"
    tags = parents[0].data.tags
    assert tags["repro.profile"] == "test" and tags["repro.device"] == "cpu" and tags["repro.spec_hash"]
    assert tags["repro.git_commit"] and tags["repro.dataset"] == "street_scenes"
    assert parents[0].data.params["fixed.n_images"] == "6"
    assert len(children) == 4 and all(c.info.status == "FINISHED" for c in children)
    assert all({"pixel_acc", "miou"} <= set(c.data.metrics) for c in children)
    arts = _client().list_artifacts(children[0].info.run_id)
    assert any(a.path.endswith(".json") for a in arts)

    # A rerun skips everything; deleting two cells reruns exactly those two.
    s2 = run_spec("fig5_9", "test", device="cpu", progress=False)
    assert s2.ran == [] and len(s2.skipped) == 4 and s2.mlflow_run_id is None
    for key in ("t=0.4", "t=1"):
        (results.cells_dir("fig5_9", "test") / f"{key}.json").unlink()
    s3 = run_spec("fig5_9", "test", device="cpu", progress=False)
    assert sorted(s3.ran) == ["t=0.4", "t=1"]
    assert len(_runs("train-noisy_unet")) == 1  # the model was reused, not retrained

    # A changed setting is another spec hash: its cells are recomputed, not mixed in.
    s4 = run_spec("fig5_9", "test", overrides={"fixed.n_images": 5}, device="cpu", progress=False)
    assert len(s4.ran) == 4

    # Reports render from the results files alone.
    from repro.reporting.render import report

    paths = report(["fig5_9"])
    text = Path("reports/fig5_9.md").read_text()
    assert "Protocol differs from the paper's" in text and "street_scenes (paper: cityscapes)" in text
    assert re.search(r"\|\s+t\s+\|\s+pixel_acc\s+\|\s+miou\s+\|", text)
    assert "Run with overrides: `fixed.n_images=5`" in text
    assert Path("reports/fig5_9_test_curve.png").stat().st_size > 5000
    index = Path("reports/README.md").read_text()
    assert "| fig5_9 |" in index and "done 4/4" in index and "| sec5_2_2 |" in index and "not run" in index
    assert Path("reports/README.md") in paths

    # The rendered report is attached to the parent run of the latest cells.
    from repro.reporting.render import attach_to_mlflow

    parents = attach_to_mlflow("fig5_9", [Path("reports/fig5_9.md"), Path("reports/fig5_9_test_curve.png")])
    assert parents == [s4.mlflow_run_id]
    assert {a.path for a in _client().list_artifacts(s4.mlflow_run_id, "report")} == \
        {"report/fig5_9.md", "report/fig5_9_test_curve.png"}


def test_noise_encoding_comparison_trains_both_encodings(workdir):
    from repro.engine.run import run_spec
    from repro.reporting.render import report

    s = run_spec("sec5_2_2", "test", device="cpu", progress=False)
    assert sorted(s.ran) == ["encoding=log_sigma", "encoding=t"]
    cells = {c["cell"]["encoding"]: c for c in results.read_cells("sec5_2_2", "test")}
    for enc, rec in cells.items():
        curve = rec["extra"]["val_miou_curve"]
        assert len(curve) == 2 and rec["values"]["peak_miou"] == max(curve)
    assert cells["log_sigma"]["extra"]["model_hash"] != cells["t"]["extra"]["model_hash"]
    report(["sec5_2_2"])
    text = Path("reports/sec5_2_2.md").read_text()
    assert "0.212" in text and "0.213" in text and "peak_miou (paper)" in text


def test_crash_marks_run_failed_and_keeps_finished_cells(workdir, monkeypatch):
    import repro.experiments.semantic.segmenter_timesteps as runner
    from repro.engine.run import run_spec

    real = runner.run_cell
    calls = {"n": 0}

    def flaky(ctx, state, cell, run):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("simulated crash in cell 3")
        return real(ctx, state, cell, run)

    monkeypatch.setattr(runner, "run_cell", flaky)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_spec("fig5_9", "test", device="cpu", progress=False)
    assert len(results.read_cells("fig5_9", "test")) == 2
    runs = _runs("fig5_9")
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert parent.info.status == "FAILED" and "simulated crash" in parent.data.tags["error"]
    assert sorted(r.info.status for r in runs if "mlflow.parentRunId" in r.data.tags) == \
        ["FAILED", "FINISHED", "FINISHED"]
    monkeypatch.setattr(runner, "run_cell", real)
    s = run_spec("fig5_9", "test", device="cpu", progress=False)
    assert len(s.ran) == 2 and len(s.skipped) == 2


def test_killed_run_resumes_with_only_the_missing_cells(workdir):
    env = cli_env(workdir)
    cells = workdir / "results/fig5_9/test/cells"
    # Twelve cells so that the kill lands between cells.
    args = REPRO + ["run", "fig5_9", "--profile", "test", "--device", "cpu", "--no-progress",
                    "--set", "grid.t=[0.0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,0.95,1.0]",
                    "--set", "fixed.n_images=24"]
    proc = subprocess.Popen(args, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if cells.is_dir() and any(cells.glob("*.json")):
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {p.name: p.stat().st_mtime_ns for p in cells.glob("*.json")}
    assert 1 <= len(before) <= 12
    assert not list(cells.glob("*.tmp"))  # nothing half-written is left as a cell
    for p in cells.glob("*.json"):
        json.loads(p.read_text())
    out = subprocess.run(args, cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert f"({12 - len(before)} run, {len(before)} already finished)" in out.stdout
    after = {p.name: p.stat().st_mtime_ns for p in cells.glob("*.json")}
    assert len(after) == 12 and all(after[k] == v for k, v in before.items())


@pytest.mark.parametrize("args,message", [
    (["run", "nope"], "unknown spec 'nope'"),
    (["run", "fig5_9", "--set", "fixed.n_imgs=3"], "unknown key"),
    (["run", "fig5_9", "--set", "fixed.n_images=lots"], "expected int"),
    (["run", "fig5_9", "--profile", "huge"], "unknown profile"),
    (["run", "fig5_9", "--profile", "paper"], "cityscapes not found"),
    (["run", "fig5_9", "--profile", "test", "--device", "cuda:7"], "cuda"),
    (["show", "nope"], "unknown spec"),
    (["report", "nope"], "unknown spec"),
    (["train", "nope"], "unknown model"),
    (["train", "noisy_unet", "--set", "train.lr=fast"], "expected float"),
    (["train", "noisy_unet", "--set", "train.lr=-1"], "model noisy_unet: train.lr: Input should be greater than 0"),
    (["pipeline", "--profile", "huge"], "unknown profile"),
    (["run", "fig12_3", "--profile", "test", "--set", "models.critic.train.epochs=2"], "no model role 'critic'"),
    (["run", "fig12_3", "--profile", "test", "--set", "models.discriminator.train.epochs=x"], "expected int"),
])
def test_user_errors_exit_2_with_one_line_and_write_nothing(workdir, args, message):
    out = subprocess.run(REPRO + args, cwd=workdir, env=cli_env(workdir), capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and message in lines[0], out.stderr
    assert sorted(p.name for p in workdir.iterdir()) == [], "a failed command left files behind"


def test_missing_dg_checkpoint_at_paper_is_named_before_anything_is_written(workdir, tmp_path_factory):
    """With CIFAR-10 in place, fig12_3 at `paper` needs DG's ADM classifier, then pytorch-fid's
    Inception weights and enough samples for a 2048-dim FID: each problem is named in one line
    (exit 2) before any training."""
    from tests.test_data import _write_cifar

    data = tmp_path_factory.mktemp("data")
    _write_cifar(data / "cifar10" / "cifar-10-batches-py")
    env = cli_env(workdir) | {"REPRO_DATA": str(data), "TORCH_HOME": str(data / "torch")}
    clf = data / "32x32_classifier.pt"
    clf.write_bytes(b"")   # preflight checks that the file is there; loading it comes later
    weights = data / "pt_inception.pth"
    weights.write_bytes(b"")
    with_clf = ["--set", f"models.discriminator.net.adm_classifier={clf}"]
    for extra, more_env, message in (
            ([], {}, "32x32_classifier.pt does not exist"),
            (with_clf, {}, "`fid` is unavailable offline without the Inception weights"),
            (with_clf + ["--set", "fixed.n_samples=100"], {"REPRO_FID_WEIGHTS": str(weights)},
             "needs at least 2049 samples per set, got 100")):
        out = subprocess.run(REPRO + ["run", "fig12_3", "--profile", "paper", *extra], cwd=workdir,
                             env=env | more_env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 2, (out.stdout, out.stderr)
        lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and message in lines[0], out.stderr
        assert list(workdir.iterdir()) == []


def test_malformed_spec_yaml_exits_2(workdir, monkeypatch):
    import shutil

    from repro.specs import experiments_dir

    exp = workdir.parent / f"{workdir.name}-exp"
    shutil.copytree(experiments_dir(), exp)
    (exp / "fig5_9.yaml").write_text("id: fig5_9\ntitle: {oops\n")
    env = cli_env(workdir) | {"REPRO_EXPERIMENTS": str(exp)}
    out = subprocess.run(REPRO + ["run", "fig5_9", "--profile", "test"], cwd=workdir, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "malformed YAML in spec fig5_9.yaml" in out.stderr
    assert list(workdir.iterdir()) == []


def test_help_and_list_do_not_import_torch_or_mlflow(workdir):
    code = ("import sys; from repro.cli import app\n"
            "for argv in (['--help'], ['list']):\n"
            "    try: app(argv, standalone_mode=False)\n"
            "    except SystemExit: pass\n"
            "heavy = [m for m in ('torch', 'mlflow', 'pandas') if m in sys.modules]\n"
            "print('HEAVY', heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=workdir, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout and "fig5_9" in out.stdout


def test_mlflow_ui_serves_the_runs_over_rest(workdir):
    import socket
    import urllib.request

    from repro.engine.run import run_spec

    run_spec("fig5_9", "test", device="cpu", progress=False, overrides={"grid.t": [0.0]})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(REPRO + ["ui", "--port", str(port)], cwd=workdir, env=cli_env(workdir),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}/api/2.0/mlflow"
        body = None
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"{base}/experiments/get-by-name?experiment_name=fig5_9", timeout=5) as r:
                    body = json.loads(r.read())
                break
            except OSError:
                time.sleep(0.5)
        assert body is not None, "the MLflow UI did not answer"
        exp_id = body["experiment"]["experiment_id"]
        req = urllib.request.Request(f"{base}/runs/search", method="POST",
                                     data=json.dumps({"experiment_ids": [exp_id]}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            runs = json.loads(r.read())["runs"]
        assert len(runs) == 2  # the parent and its one cell
        metrics = {m["key"] for run in runs for m in run["data"].get("metrics", [])}
        assert {"pixel_acc", "miou"} <= metrics
    finally:
        import os

        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_doctor_reports_versions_datasets_fid_and_store(workdir):
    out = subprocess.run(REPRO + ["doctor"], cwd=workdir, env=cli_env(workdir), capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "torch" in text and "mlflow" in text and "street_scenes  embedded" in text
    assert "cityscapes     not found at data/cityscapes" in text
    assert "fid" in text and f"sqlite:///{workdir}/mlflow.db" in text
    assert ("checkpoint  discriminator_digits net.adm_classifier: missing at "
            "checkpoints/ADM_classifier/32x32_classifier.pt") in text


def test_dvc_yaml_is_the_rendering_of_the_registry():
    """dvc.yaml is generated (`repro pipeline > dvc.yaml`): every spec and the models it needs."""
    import yaml

    from repro.commands.pipeline import render_dvc_yaml
    from repro.commands.stages import spec_models
    from repro.specs import list_spec_ids, repo_root

    committed = (repo_root() / "dvc.yaml").read_text()
    assert committed == render_dvc_yaml(), "dvc.yaml is stale: run `repro pipeline > dvc.yaml`"
    stages = yaml.safe_load(committed)["stages"]
    assert spec_models("fig5_9", "smoke") == ["noisy_unet"]
    assert spec_models("sec5_2_2", "smoke") == ["noisy_unet", "noisy_unet_t"]
    for spec_id in list_spec_ids():
        # the spec's YAML reaches its stage through its fingerprint (resolve's hash, not its claims)
        assert f"fingerprints/{spec_id}.txt" in stages[spec_id]["deps"]
        assert f"experiments/{spec_id}.yaml" not in stages[spec_id]["deps"]
        assert f"experiments/{spec_id}.yaml" in stages["reports"]["deps"]
        assert f"results/{spec_id}/${{profile}}" in stages["reports"]["deps"]
        assert f"specs.{spec_id}" in stages[spec_id]["params"]
        for model in spec_models(spec_id, "smoke"):
            assert f"train_{model}" in stages and f"artifacts/{model}" in stages[spec_id]["deps"]


def test_stage_dependencies_are_narrow():
    """A spec stage depends on its own runner and the modules it imports, not on the package: through
    its fingerprint file (the sha256 of each of those files, written by the `code` stage)."""
    from repro.commands.fingerprints import code_closure, command_modules, stage_code
    from repro.commands.pipeline import spec_stage

    assert "fingerprints/fig5_9.txt" in spec_stage("fig5_9", "smoke")["deps"]
    code = stage_code("smoke")
    deps = set(code["fig5_9"])
    assert {"repro/engine/run.py", "repro/experiments/semantic/segmenter_timesteps.py", "repro/nets/unet.py",
            "repro/data/street_scenes.py", "repro/specs/resolve.py"} <= deps
    for other in ("repro/experiments/dg/dg_epsilon_grid.py", "repro/experiments/amp/amp_benchmark.py",
                  "repro/data/cifar10.py", "repro/data/digits.py", "repro/cli.py", "repro/sweeps/runner.py"):
        assert other not in deps
    # The registry imports every dataset loader; a stage depends on its own datasets' code only.
    digits = set(code["train_evaluator_digits"])
    assert "repro/data/digits.py" in digits and "repro/data/street_scenes.py" not in digits
    # The engine trains or loads models through repro.trainers.ensure, which uses the artifact store.
    assert "repro/models.py" in code_closure("repro/engine/run.py")
    # The reports read the kind's report module, not its runner: a runner edit re-runs its specs only.
    assert "repro/experiments/semantic/report_segmenter_timesteps.py" in code["reports"]
    assert "repro/experiments/semantic/segmenter_timesteps.py" not in code["reports"]
    # What the stage's commands run, read from cli.py per command (cli.py only parses: no dependency);
    # the modules loaded by name: the kind's runner, the trainer that rebuilds each model it loads; a
    # training stage: its trainer and its learners' trainers. `repro run` runs the cost estimate too,
    # but it changes no result: not a spec stage's code (the reports print it: theirs).
    assert "repro.commands.run" in command_modules("run")
    assert {"repro/engine/run.py", "repro/plan/__init__.py", "repro/experiments/__init__.py"} <= set(
        code_closure("repro/commands/run.py"))
    assert "repro.sweeps.report" not in command_modules("run") and "repro.engine.run" not in command_modules("compare")
    assert {"repro/reporting/comparison.py", "repro/trainers/noisy_segmenter.py"} <= deps
    assert "repro/trainers/noisy_segmenter.py" in code["train_noisy_unet"]
    assert {"repro/trainers/discriminator.py", "repro/trainers/edm.py"} <= set(code["train_discriminator_digits"])
    assert all("repro/cli.py" not in files for files in code.values())
    cost = {"repro/plan/__init__.py", "repro/plan/training.py", "repro/experiments/cost.py",
            "repro/experiments/semantic/cost.py", "repro/work.py"}
    assert not cost & deps and cost <= set(code["reports"])
    # Only the trainers of its own models (plan/training.py, which imports every trainer, is cost code).
    assert {f for f in deps if f.startswith("repro/trainers/") and f.count("/") == 2} == {
        "repro/trainers/__init__.py", "repro/trainers/ensure.py", "repro/trainers/weights.py",
        "repro/trainers/noisy_segmenter.py"}   # fig5_9 names one model, noisy_unet (a noisy_segmenter)
    assert not any(f.startswith("repro/sweeps/") for f in deps)   # `repro compare` is not `repro report`


def test_a_model_stage_depends_on_the_yaml_of_its_base(tmp_path, monkeypatch):
    """`base: OTHER` merges OTHER's YAML under the model's (repro.specs.load_model_document), so a
    change to OTHER re-runs the model's training stage too, and a base chain is followed to its end."""
    from repro.commands import pipeline
    from repro.errors import UserError
    from repro.specs import load_model_document

    deps = pipeline.train_stage("noisy_unet_t", "smoke")["deps"]
    assert {"experiments/models/noisy_unet_t.yaml", "experiments/models/noisy_unet.yaml"} <= set(deps)
    assert "experiments/models/evaluator_digits.yaml" in pipeline.train_stage("evaluator_digits_8x8", "smoke")["deps"]
    assert pipeline.model_yaml_chain("evaluator_digits") == ["experiments/models/evaluator_digits.yaml"]
    models = tmp_path / "experiments" / "models"
    models.mkdir(parents=True)
    (models / "a.yaml").write_text("id: a\nbase: b\n")
    (models / "b.yaml").write_text("id: b\nbase: c\n")
    (models / "c.yaml").write_text("id: c\n")
    monkeypatch.setenv("REPRO_EXPERIMENTS", str(tmp_path / "experiments"))
    assert pipeline.model_yaml_chain("a") == [f"experiments/models/{m}.yaml" for m in "abc"]
    (models / "c.yaml").write_text("id: c\nbase: a\n")   # the one chain repro.specs merges: a cycle is an error
    with pytest.raises(UserError, match="circular base 'a'"):
        pipeline.model_yaml_chain("a")
    with pytest.raises(UserError, match="model a.yaml: circular base .b."):
        load_model_document("b")


def test_fingerprint_files_hash_each_code_file(tmp_path):
    import hashlib

    from repro.commands.fingerprints import stage_code, write_fingerprints
    from repro.specs import repo_root

    paths = {p.stem: p for p in write_fingerprints("smoke", tmp_path)}
    assert set(paths) == set(stage_code("smoke"))
    lines = [ln for ln in paths["fig5_9"].read_text().splitlines() if not ln.startswith("#")]
    listed = dict(reversed(ln.split("  ", 1)) for ln in lines)
    engine = repo_root() / "repro/engine/run.py"
    assert listed["repro/engine/run.py"] == hashlib.sha256(engine.read_bytes()).hexdigest()
    before = paths["fig5_9"].stat().st_mtime_ns
    write_fingerprints("smoke", tmp_path)   # unchanged code: the file is left as it is
    assert paths["fig5_9"].stat().st_mtime_ns == before


def test_stage_time_records_the_wall_time_of_a_stage_command(tmp_path):
    """Every stage's command runs under `python -m repro.commands.stage_time OUT -- CMD` (dvc.yaml)."""
    out = tmp_path / "time" / "stage.json"
    code = [sys.executable, "-c", "import sys; sys.exit(0)"]
    subprocess.run([sys.executable, "-m", "repro.commands.stage_time", str(out), "--", *code], check=True)
    assert {"wall_seconds", "cpu_seconds", "cpu_model"} <= set(json.loads(out.read_text()))
    failing = [sys.executable, "-c", "import sys; sys.exit(3)"]
    assert subprocess.run([sys.executable, "-m", "repro.commands.stage_time", str(tmp_path / "no.json"), "--",
                           *failing]).returncode == 3
    assert not (tmp_path / "no.json").exists()   # a failed stage records no time


def test_params_yaml_holds_every_stage_knob_at_its_profile():
    """params.yaml has what the stages interpolate (profile, specs.<id>.seed and sample count), and its
    values are the profile's own (so that `dvc repro` computes what `repro run` would)."""
    import yaml

    from repro.commands.pipeline import default_params, read_params
    from repro.experiments import resolve_spec

    params = read_params()
    defaults = default_params(params["profile"])
    assert set(params["specs"]) == set(defaults["specs"])
    for spec_id, knobs in defaults["specs"].items():
        assert set(params["specs"][spec_id]) == set(knobs)
    # Hand-checked against experiments/fig5_9.yaml's smoke profile: fixed.n_images 64, seed 0.
    assert default_params("smoke")["specs"]["fig5_9"] == {"seed": 0, "n_images": 64}
    assert default_params("test")["specs"]["fig5_9"] == {"seed": 0, "n_images": 6}
    # Setting a spec's own value through --set gives the same hash (the cells already run are kept).
    assert resolve_spec("fig5_9", "smoke", {"seed": 0, "fixed.n_images": 64}).hash == \
        resolve_spec("fig5_9", "smoke").hash
    from repro.commands.pipeline import render_params

    assert yaml.safe_load(render_params("smoke")) == default_params("smoke")
    # Regenerating keeps the values a user set (and only for the same profile).
    mine = {"profile": "smoke", "specs": {"fig5_9": {"seed": 3, "n_images": 32}}}
    kept = yaml.safe_load(render_params("smoke", keep=mine))["specs"]
    assert kept["fig5_9"] == {"seed": 3, "n_images": 32} and kept["table5_3"] == {"seed": 0, "n_maps": 36}
    assert yaml.safe_load(render_params("test", keep=mine))["specs"]["fig5_9"] == {"seed": 0, "n_images": 6}


@pytest.mark.slow
def test_dvc_repro_twice_does_nothing_the_second_time(workdir):
    """`dvc repro` on a copy of the repository at the test profile, then again: nothing reruns; the
    stage's results are in DVC's cache (shareable with `dvc push`), its metrics readable by dvc."""
    from repro.commands.pipeline import render_dvc_yaml, render_params
    from tests.test_dvc_changes import copy_repo, dvc, dvc_env

    repo = workdir / "clone"
    copy_repo(repo)
    (repo / "params.yaml").write_text(render_params("test"))
    (repo / "dvc.yaml").write_text(render_dvc_yaml("test"))
    env = dvc_env(repo)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "x"]):
        subprocess.run(cmd, cwd=repo, check=True, env=env, capture_output=True)
    first = dvc(repo, "repro", "fig5_9", timeout=600)
    assert "Running stage 'train_noisy_unet'" in first.stdout and "Running stage 'fig5_9'" in first.stdout
    assert len(list((repo / "results/fig5_9/test/cells").glob("*.json"))) == 4
    second = dvc(repo, "repro", "fig5_9", timeout=600)
    assert "Running stage" not in second.stdout and "didn't change, skipping" in second.stdout
    # Cached outputs: the results and the model are in .dvc/cache, so `dvc push` shares them.
    lock = (repo / "dvc.lock").read_text()
    assert "results/fig5_9/test" in lock and "artifacts/noisy_unet" in lock
    assert any((repo / ".dvc/cache").rglob("*.dir"))
    metrics = json.loads(dvc(repo, "metrics", "show", "--json").stdout)
    shown = json.dumps(metrics)
    assert '"t=0.4"' in shown and '"miou"' in shown and '"wall_seconds"' in shown
    cells = {json.loads(p.read_text())["key"]: json.loads(p.read_text())["values"]
             for p in (repo / "results/fig5_9/test/cells").glob("*.json")}
    assert json.loads((repo / "metrics/fig5_9.json").read_text())["test"]["t=0.4"]["miou"] == \
        cells["t=0.4"]["miou"]


@pytest.mark.slow
def test_repro_train_under_torchrun_ddp_on_cpu(workdir):
    """`torchrun --nproc_per_node 2 -m repro.cli train` (gloo): one model, one MLflow run, from rank 0."""
    env = cli_env(workdir) | {"OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "repro.cli", "train", "noisy_unet", "--profile", "test", "--device", "cpu",
                          "--no-progress"], cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("noisy_unet [test]: artifacts/noisy_unet/") == 1
    (folder,) = list((workdir / "artifacts/noisy_unet").iterdir())
    meta = json.loads((folder / "meta.json").read_text())
    # 24 training images, 8 per rank and step: 2 global steps per epoch, 2 epochs.
    assert meta["steps"] == 4 and len(meta["history"]) == 2
    runs = _runs("train-noisy_unet")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
