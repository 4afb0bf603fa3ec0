"""Tests of repro.train: EMA closed form, sampler order, exact resume, clipping, warm-up, AMP, NaN, DDP."""

from __future__ import annotations

import importlib.util
import io
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from rich.console import Console
from torch import nn
from torch.utils.data import Dataset

from repro.errors import UserError
from repro.train import CHECKPOINT_NAME, EMA, DeterministicBatchSampler, Timer, TrainConfig, load_checkpoint, lr_at_step, peak_memory, save_checkpoint, train
from repro.rng import derive_seed
from repro.train.loop import _progress_bar

WORKER = Path(__file__).with_name("_ddp_worker.py")


class ToyImages(Dataset):
    """n random 1x8x8 images with labels, items shaped like the suite's datasets."""

    def __init__(self, n: int = 20):
        g = torch.Generator().manual_seed(1)
        self.x = torch.randn(n, 1, 8, 8, generator=g)
        self.y = torch.randint(0, 3, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.x[i], "label": int(self.y[i]), "index": i}


def make_mlp(dropout: float = 0.2) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.SiLU(), nn.Dropout(dropout), nn.Linear(32, 64))


def denoising_loss(model: nn.Module, batch: dict, g: torch.Generator) -> torch.Tensor:
    """Draws noise from the loop's generator, so resume must restore its state."""
    x = batch["image"].flatten(1)
    sigma = 0.1 + 0.9 * torch.rand(x.shape[0], 1, generator=g, device=x.device)
    noisy = x + sigma * torch.randn(x.shape, generator=g, device=x.device)
    return ((model(noisy).float() - x) ** 2).mean()


# 20 items, batch 4: 5 steps per epoch, 15 in 3 epochs
RESUME_CFG = dict(epochs=3, batch_size=4, lr=1e-2, ema_decay=0.9, grad_clip=0.5, warmup_steps=3, seed=7)


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    return train(make_mlp(), denoising_loss, ToyImages(), TrainConfig(**RESUME_CFG),
                 tmp_path_factory.mktemp("straight"), progress=False)


# ---------------------------------------------------------------- EMA


def test_ema_matches_closed_form_of_exponential_moving_average():
    d, n = 0.8, 6
    g = torch.Generator().manual_seed(0)
    seq = torch.randn(n + 1, 3, generator=g, dtype=torch.float64)
    model = nn.Linear(3, 1, bias=False).double()
    model.register_buffer("count", torch.zeros(()))
    with torch.no_grad():
        model.weight.copy_(seq[0])
    ema = EMA(model, d)
    for k in range(1, n + 1):
        with torch.no_grad():
            model.weight.copy_(seq[k])
            model.count.fill_(k)
        ema.update(model)
    # e_n = d^n p_0 + (1 - d) sum_{k=1..n} d^(n-k) p_k
    closed = d**n * seq[0] + (1 - d) * sum(d ** (n - k) * seq[k] for k in range(1, n + 1))
    torch.testing.assert_close(ema.module.weight[0], closed, rtol=0, atol=1e-12)
    assert ema.module.count.item() == n  # buffers are copied, not averaged
    assert not ema.module.weight.requires_grad and not ema.module.training

    fresh = nn.Linear(3, 1, bias=False).double()
    fresh.register_buffer("count", torch.zeros(()))
    other = EMA(fresh, 0.1)
    other.load_state_dict(ema.state_dict())
    assert other.decay == d and other.num_updates == n
    assert torch.equal(other.module.weight, ema.module.weight)


# ---------------------------------------------------------------- data order


def test_sampler_order_is_a_function_of_seed_and_epoch_and_resumes_exactly():
    s = DeterministicBatchSampler(10, 3, seed=4)
    s.set_epoch(1)
    full = list(s)
    assert len(full) == 4 and len(full[-1]) == 1  # single process keeps the short last batch
    assert sorted(i for b in full for i in b) == list(range(10))
    again = DeterministicBatchSampler(10, 3, seed=4)
    again.set_epoch(1)
    assert list(again) == full
    again.set_epoch(1, start=2)
    assert list(again) == full[2:] and len(again) == 2
    again.set_epoch(2)
    assert list(again) != full
    again = DeterministicBatchSampler(10, 3, seed=5)
    again.set_epoch(1)
    assert list(again) != full


def test_sampler_ranks_split_each_global_batch():
    single = DeterministicBatchSampler(12, 6, seed=2)
    ranks = [DeterministicBatchSampler(12, 3, seed=2, rank=r, world_size=2) for r in range(2)]
    for s in [single, *ranks]:
        s.set_epoch(3)
    for whole, a, b in zip(single, *ranks, strict=True):
        assert whole == a + b
    # uneven sizes: every rank gets full batches and every item is seen
    ranks = [DeterministicBatchSampler(7, 2, seed=0, rank=r, world_size=2) for r in range(2)]
    batches = [list(s) for s in ranks]
    assert len(batches[0]) == len(batches[1]) == 2
    assert all(len(b) == 2 for rb in batches for b in rb)
    assert set(i for rb in batches for b in rb for i in b) == set(range(7))


# ---------------------------------------------------------------- checkpoint + resume


def test_resume_mid_epoch_reproduces_uninterrupted_run_bitwise(tmp_path, straight_run):
    cfg = TrainConfig(**{**RESUME_CFG, "max_steps": 7})  # stops at epoch 1, batch 2
    first = train(make_mlp(), denoising_loss, ToyImages(), cfg, tmp_path, progress=False)
    assert first.steps == 7 and len(first.history) == 1
    ckpt = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    assert (ckpt["step"], ckpt["epoch"], ckpt["batch_in_epoch"]) == (7, 1, 2)
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_NAME]  # no temporary files left
    with pytest.raises(AssertionError):
        assert_same_weights(first.model, straight_run.model)

    # a fresh process has a fresh model and global RNG: both must come from the checkpoint
    torch.manual_seed(12345)
    resumed = train(make_mlp(dropout=0.2), denoising_loss, ToyImages(), TrainConfig(**RESUME_CFG), tmp_path,
                    progress=False)
    assert resumed.steps == straight_run.steps == 15
    assert_same_weights(resumed.model, straight_run.model)
    assert_same_weights(resumed.ema, straight_run.ema)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in straight_run.history]
    assert [h["step"] for h in resumed.history] == [5, 10, 15]


def test_resume_after_crash_restarts_from_ckpt_every_checkpoint(tmp_path, straight_run):
    calls = 0

    def crashing_loss(model, batch, g):
        nonlocal calls
        calls += 1
        if calls == 8:  # epoch 1, after the step-6 checkpoint (epoch ends are at 5, 10, 15)
            raise KeyboardInterrupt
        return denoising_loss(model, batch, g)

    cfg = TrainConfig(**{**RESUME_CFG, "ckpt_every": 3})
    with pytest.raises(KeyboardInterrupt):
        train(make_mlp(), crashing_loss, ToyImages(), cfg, tmp_path, progress=False)
    assert load_checkpoint(tmp_path / CHECKPOINT_NAME)["step"] == 6
    resumed = train(make_mlp(), denoising_loss, ToyImages(), cfg, tmp_path, progress=False)
    assert_same_weights(resumed.model, straight_run.model)
    assert_same_weights(resumed.ema, straight_run.ema)


def test_finished_run_is_not_trained_again_and_mismatched_resume_is_refused(tmp_path):
    cfg = TrainConfig(epochs=1, batch_size=5, seed=1)
    first = train(make_mlp(), denoising_loss, ToyImages(), cfg, tmp_path, progress=False)
    again = train(make_mlp(), denoising_loss, ToyImages(), cfg, tmp_path, progress=False)
    assert again.steps == first.steps == 4
    assert_same_weights(again.model, first.model)
    with pytest.raises(UserError, match="batch_size"):
        train(make_mlp(), denoising_loss, ToyImages(), TrainConfig(epochs=2, batch_size=4, seed=1), tmp_path,
              progress=False)


class _NotATensor:
    pass


def test_checkpoint_files_are_atomic_and_loaded_weights_only(tmp_path):
    path = tmp_path / "sub" / "c.pt"
    save_checkpoint(path, {"w": torch.arange(3), "meta": {"step": 2, "history": [{"loss": 0.5}]}})
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["w"], torch.arange(3)) and loaded["meta"]["history"][0]["loss"] == 0.5
    assert sorted(p.name for p in path.parent.iterdir()) == ["c.pt"]
    with pytest.raises(Exception):  # a failed write (unpicklable) leaves the old file and no temporary
        save_checkpoint(path, {"bad": lambda: 0})
    assert sorted(p.name for p in path.parent.iterdir()) == ["c.pt"] and load_checkpoint(path)["meta"]["step"] == 2
    assert load_checkpoint(tmp_path / "missing.pt") is None
    torch.save({"obj": _NotATensor()}, path)
    with pytest.raises(UserError, match="cannot load checkpoint"):
        load_checkpoint(path)


# ---------------------------------------------------------------- optimizer step details


def _first_update(tmp_path: Path, **kw) -> float:
    model = make_mlp(dropout=0.0)
    before = [p.detach().clone() for p in model.parameters()]
    cfg = TrainConfig(epochs=1, batch_size=4, lr=0.1, ema_decay=None, max_steps=1, **kw)
    out = train(model, denoising_loss, ToyImages(), cfg, tmp_path, progress=False).model
    return max((p.detach() - b).abs().max().item() for p, b in zip(out.parameters(), before))


def test_grad_clip_and_warmup_act_on_the_first_adam_step(tmp_path):
    # Adam's first step moves each weight by lr * g / (|g| + eps): ~lr for any ordinary gradient,
    # ~0 once the global norm is clipped far below eps, lr / warmup_steps during warm-up.
    assert _first_update(tmp_path / "a", grad_clip=None) == pytest.approx(0.1, rel=1e-3)
    assert _first_update(tmp_path / "b", grad_clip=1e-12) < 1e-4 * 0.1
    assert _first_update(tmp_path / "c", grad_clip=None, warmup_steps=4) == pytest.approx(0.025, rel=1e-3)


def test_lr_warmup_is_linear_then_constant():
    assert [lr_at_step(1.0, s, 4) for s in (1, 2, 4, 9)] == [0.25, 0.5, 1.0, 1.0]
    assert lr_at_step(3e-4, 1, 0) == 3e-4


def test_nan_loss_raises_naming_the_step(tmp_path):
    calls = 0

    def loss_going_nan(model, batch, g):
        nonlocal calls
        calls += 1
        loss = denoising_loss(model, batch, g)
        return loss * float("nan") if calls == 3 else loss

    with pytest.raises(RuntimeError, match=r"nan at step 3\b"):
        train(make_mlp(), loss_going_nan, ToyImages(), TrainConfig(epochs=2, batch_size=4), tmp_path, progress=False)


def test_bad_config_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="batch_size"):
        train(make_mlp(), denoising_loss, ToyImages(), TrainConfig(batch_size=0), tmp_path, progress=False)


# ---------------------------------------------------------------- AMP


def test_amp_on_cpu_uses_bf16_autocast_and_still_learns(tmp_path):
    seen = []

    def loss(model, batch, g):
        seen.append((torch.is_autocast_enabled("cpu"), model[1](batch["image"].flatten(1)).dtype))
        return denoising_loss(model, batch, g)

    cfg = TrainConfig(epochs=4, batch_size=4, lr=1e-2, amp=True, ema_decay=None)
    res = train(make_mlp(dropout=0.0), loss, ToyImages(), cfg, tmp_path, progress=False)
    assert set(seen) == {(True, torch.bfloat16)}
    assert res.history[-1]["loss"] < 0.8 * res.history[0]["loss"]
    assert all(p.dtype == torch.float32 for p in res.model.parameters())  # master weights stay fp32


def test_amp_off_is_plain_fp32_adam(tmp_path):
    """amp=False: no autocast, and the weights equal a hand-written AdamW loop over the same batches."""
    seen = []

    def loss(model, batch, g):
        seen.append(torch.is_autocast_enabled("cpu"))
        return denoising_loss(model, batch, g)

    cfg = TrainConfig(epochs=2, batch_size=4, lr=1e-2, ema_decay=None, grad_clip=None, seed=3)
    res = train(make_mlp(dropout=0.0), loss, ToyImages(), cfg, tmp_path, progress=False)
    assert not any(seen)

    data, model = ToyImages(), make_mlp(dropout=0.0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    g = torch.Generator().manual_seed(derive_seed(3, "noise", 0))
    sampler = DeterministicBatchSampler(len(data), 4, seed=3)
    for epoch in range(2):
        sampler.set_epoch(epoch)
        for idx in sampler:
            batch = {"image": torch.stack([data[i]["image"] for i in idx])}
            denoising_loss(model, batch, g).backward()
            opt.step()
            opt.zero_grad()
    assert_same_weights(res.model, model)


# ---------------------------------------------------------------- callbacks, logging, probes, progress


def test_epoch_callback_logging_history_and_probes(tmp_path, capsys):
    seen_models, logged = [], []

    def on_epoch_end(epoch, model):
        seen_models.append(model)
        assert not model.training
        return {"fd_evalnet": 10.0 - epoch}

    cfg = TrainConfig(epochs=2, batch_size=4, log_every=4)
    res = train(make_mlp(), denoising_loss, ToyImages(), cfg, tmp_path, on_epoch_end=on_epoch_end,
                log_metrics=lambda m, s: logged.append((dict(m), s)))
    assert all(m is res.ema for m in seen_models) and len(seen_models) == 2  # evaluation uses the EMA
    assert [h["fd_evalnet"] for h in res.history] == [10.0, 9.0]
    assert set(res.history[0]) == {"epoch", "loss", "seconds", "step", "fd_evalnet"}
    epoch_logs = [(m, s) for m, s in logged if "loss" in m]
    assert [s for _, s in epoch_logs] == [5, 10] and epoch_logs[1][0]["fd_evalnet"] == 9.0
    assert [s for m, s in logged if "step_loss" in m] == [4, 8]
    assert res.probes["peak_memory_kind"] == "cpu_peak_rss" and res.probes["peak_memory_mb"] > 10
    assert res.probes["samples_per_second"] > 0 and res.probes["seconds_per_epoch"] > 0
    assert "cuda_max_memory_reserved_mb" not in res.probes
    assert capsys.readouterr().out == ""  # progress=True but not a terminal: no output


def test_progress_bar_only_on_a_terminal():
    term = Console(file=io.StringIO(), force_terminal=True)
    assert not _progress_bar(True, term).disable
    assert _progress_bar(False, term).disable
    assert _progress_bar(True, Console(file=io.StringIO(), force_terminal=False, force_jupyter=False)).disable
    with _progress_bar(True, term) as bar:
        bar.add_task("epoch 1/1", total=3, loss=0.5)
    assert "loss 0.5" in term.file.getvalue() and "it/s" in term.file.getvalue()


def test_probes_report_cpu_peak_rss_and_time():
    """Peak RSS against the kernel's own counts, in a fresh process that touches a 256 MiB tensor: the
    process's lifetime peak (ru_maxrss) is at least this image's peak (VmHWM in /proc/self/status, which
    grew by the tensor) and at most the larger of that and its parent's peak, which Linux carries across
    fork + exec into the child's ru_maxrss."""
    import subprocess
    import sys

    mb, kind = peak_memory("cpu")
    assert kind == "cpu_peak_rss"
    if sys.platform.startswith("linux"):
        code = ("import torch\n"
                "from repro.train.probes import peak_memory\n"
                "def status(key):\n"
                "    line = [x for x in open('/proc/self/status') if x.startswith(key)][0]\n"
                "    return int(line.split()[1]) / 1024\n"
                "rss = status('VmRSS:')\n"
                "x = torch.ones(64 * 2**20)\n"   # 256 MiB of float32, every page written
                "print(rss, peak_memory('cpu')[0], status('VmHWM:'))\n")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        parent_peak = peak_memory("cpu")[0]
        rss_before, after, kernel = map(float, out.split())
        assert kernel >= rss_before + 256 - 8           # the oracle saw the tensor's pages
        assert kernel - 1.0 <= after <= max(kernel, parent_peak) + 1.0
    with Timer() as t:
        time.sleep(0.02)
    assert 0.02 <= t.seconds < 1.0


# ---------------------------------------------------------------- DDP


def test_ddp_two_cpu_ranks_match_single_process_global_batch(tmp_path):
    spec = importlib.util.spec_from_file_location("_ddp_worker", WORKER)
    worker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(worker)

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(worker.WORLD),
           str(WORKER), str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    assert r0["world_size"] == 2
    for key in ("model", "ema"):
        for name in r0[key]:
            assert torch.equal(r0[key][name], r1[key][name]), (key, name)  # ranks stay in sync
    ckpt = torch.load(tmp_path / "run" / CHECKPOINT_NAME, weights_only=True)
    assert ckpt["config"]["world_size"] == 2 and len(ckpt["rng"]["noise"]) == 2

    # one process on the global batch sees the same samples per step: same weights up to rounding
    single = train(worker.make_model(), worker.mse_loss, worker.Regression(),
                   worker.config(worker.PER_RANK_BATCH * worker.WORLD), tmp_path / "single", progress=False)
    for name, p in single.model.state_dict().items():
        torch.testing.assert_close(r0["model"][name], p, rtol=1e-5, atol=1e-6)
    assert [h["step"] for h in r0["history"]] == [h["step"] for h in single.history] == [2, 4]
    assert [h["loss"] for h in r0["history"]] == pytest.approx([h["loss"] for h in single.history], rel=1e-5)
    assert single.history[1]["loss"] < single.history[0]["loss"]
