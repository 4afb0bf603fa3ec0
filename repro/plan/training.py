"""The work of training a model, per model kind (a registry keyed by the kind of
`experiments/models/<name>.yaml`), and the models a model needs trained first.

Each estimator reads the kind's own `train`/`net` settings (parsed by the trainer's schema) and
counts what `repro.trainers.<kind>.train_model` does: optimizer steps x batch, the held-out
evaluation after every epoch, samples drawn for a preview or as training data.
"""
from __future__ import annotations

import math
from collections.abc import Callable

from repro.data.split_sizes import split_size
from repro.experiments.cost import add_sigma_max_pairs, add_training_loop, net_ref
from repro.specs import resolve_model
from repro.trainers import (discriminator, edm, evaluator, mask_ddpm, noisy_classifier, noisy_segmenter, pix2pixhd,
                            score_sde, spade)
from repro.work import EVAL, TRAIN, CellWork, NetRef, edm_nfe, pc_nfe, training_steps

TrainEstimator = Callable[["object", NetRef], CellWork]
TRAINING: dict[str, TrainEstimator] = {}
UPSTREAM: dict[str, Callable] = {}   # kind -> resolved -> [(name, overrides)] trained before it


def training_estimator(kind: str):
    def register(fn):
        TRAINING[kind] = fn
        return fn
    return register


def training_work(resolved) -> CellWork:
    """The work of training `resolved` from scratch; a kind without an estimator says so."""
    fn = TRAINING.get(resolved.config.kind)
    if fn is None:
        return CellWork(unknown=[f"work units unknown for model kind {resolved.config.kind}"])
    return fn(resolved, net_ref(resolved))


def upstream_models(resolved) -> list[tuple[str, dict | None]]:
    """(name, overrides) of the models this one is trained on (trained first, if missing)."""
    fn = UPSTREAM.get(resolved.config.kind)
    return fn(resolved) if fn else []


def _n_train(resolved) -> int | None:
    ds = resolved.config.dataset
    return split_size(ds.name, ds.split, ds.n_train, ds.seed)


def _n_split(resolved, split: str, n: int | None) -> int | None:
    ds = resolved.config.dataset
    return split_size(ds.name, split, n, ds.seed)


def _steps(resolved, work: CellWork, ref: NetRef, epochs: int, n: int | None, batch: int, max_steps=None,
           per_item: int = 1, label: str = "images") -> tuple[int, int]:
    """Add the optimizer steps; returns (steps, epochs actually run)."""
    if n is None:
        work.unknown.append(f"{ref.name}: training-set size unknown before loading")
        return 0, epochs
    steps = training_steps(epochs, n, batch, max_steps)
    per_epoch = math.ceil(n / batch)
    run_epochs = min(epochs, math.ceil(steps / per_epoch)) if per_epoch else epochs
    work.add(ref, TRAIN, steps * batch * per_item, batch * per_item,
             f"training: {epochs} epochs x ceil({n} / {batch}) = {steps} steps x {batch * per_item} {label}"
             + (f" (max_steps {max_steps})" if max_steps is not None and steps == max_steps else ""))
    add_training_loop(work, resolved.config.dataset.name, ref.resolution, steps, batch)
    return steps, run_epochs


@training_estimator("score_sde")
def _score_sde(resolved, ref: NetRef) -> CellWork:
    net, ts = score_sde.parse(resolved)
    work = CellWork()
    if getattr(ts, "pretrained", None) is not None:
        work.notes.append(f"{ref.name}: loads the release checkpoint {ts.pretrained} (no training)")
        return work
    _, epochs = _steps(resolved, work, ref, ts.epochs, _n_train(resolved), ts.batch_size, ts.max_steps)
    n_eval = _n_split(resolved, ts.eval_split, ts.eval_images) or ts.eval_images
    work.add(ref, EVAL, n_eval * (epochs + 2), 256, f"held-out DSM loss: {n_eval} images x ({epochs} epochs + 2)")
    if ts.preview_samples:
        work.add(ref, EVAL, ts.preview_samples * pc_nfe(ts.preview_steps), ts.preview_samples,
                 f"preview: {ts.preview_samples} PC samples x {pc_nfe(ts.preview_steps)} evaluations")
    if net.sde == "ve" and net.sigma_max is None:
        add_sigma_max_pairs(work, resolved, net.sigma_max_pairs)
    return work


@training_estimator("edm")
def _edm(resolved, ref: NetRef) -> CellWork:
    _, ts = edm.parse(resolved)
    work = CellWork()
    if ts.pretrained is not None:
        work.notes.append(f"{ref.name}: loads the snapshot {ts.pretrained} (no training)")
        return work
    _steps(resolved, work, ref, ts.epochs, _n_train(resolved), ts.batch_size, ts.max_steps)
    if ts.preview_samples:
        nfe = edm_nfe(ts.preview_steps, "heun")
        work.add(ref, EVAL, ts.preview_samples * nfe, ts.preview_samples,
                 f"preview: {ts.preview_samples} Heun samples x {nfe} evaluations")
    return work


def _classifier_like(resolved, ref: NetRef, parse) -> CellWork:
    _, ts = parse(resolved)
    work = CellWork()
    _, epochs = _steps(resolved, work, ref, ts.epochs, _n_train(resolved), ts.batch_size, getattr(ts, "max_steps", None))
    n_eval = _n_split(resolved, ts.eval_split, ts.eval_images) or ts.eval_images
    work.add(ref, EVAL, n_eval * epochs, min(n_eval, 64), f"held-out scoring: {n_eval} images x {epochs} epochs")
    return work


@training_estimator("evaluator")
def _evaluator(resolved, ref):
    return _classifier_like(resolved, ref, evaluator.parse)


@training_estimator("noisy_classifier")
def _noisy_classifier(resolved, ref):
    return _classifier_like(resolved, ref, noisy_classifier.parse)


@training_estimator("noisy_segmenter")
def _noisy_segmenter(resolved, ref):
    work = _classifier_like(resolved, ref, noisy_segmenter.parse)
    _, ts = noisy_segmenter.parse(resolved)
    if ts.sigma_max is None:
        add_sigma_max_pairs(work, resolved, ts.sigma_max_pairs)
    return work


@training_estimator("mask_ddpm")
def _mask_ddpm(resolved, ref: NetRef) -> CellWork:
    _, ts = mask_ddpm.parse(resolved)
    work = CellWork()
    _, epochs = _steps(resolved, work, ref, ts.epochs, _n_train(resolved), ts.batch_size, ts.max_steps)
    n_eval = _n_split(resolved, ts.eval_split, ts.eval_images) or ts.eval_images
    work.add(ref, EVAL, n_eval * epochs, min(n_eval, ts.batch_size), f"held-out L_simple: {n_eval} images x {epochs} epochs")
    return work


def _gan(resolved, ref: NetRef, parse) -> CellWork:
    """SPADE / pix2pixHD: each step updates the generator and the multi-scale discriminator (and the
    VGG loss where on); the calibration times the generator's step only, so the rest is not counted."""
    out = parse(resolved)
    ts = out[1] if isinstance(out, tuple) else out
    work = CellWork()
    _steps(resolved, work, ref, ts.epochs, _n_train(resolved), ts.batch_size, ts.max_steps)
    work.unknown.append(f"{ref.name}: the discriminator (and VGG) passes of every GAN step")
    return work


@training_estimator("spade")
def _spade(resolved, ref):
    return _gan(resolved, ref, spade.parse)


@training_estimator("pix2pixhd")
def _pix2pixhd(resolved, ref):
    return _gan(resolved, ref, pix2pixhd.parse)


@training_estimator("pretrained_segmenter")
def _pretrained_segmenter(resolved, ref):
    return CellWork(notes=[f"{ref.name}: loads its checkpoint (no training)"])


@training_estimator("discriminator")
def _discriminator(resolved, ref: NetRef) -> CellWork:
    _, ts = discriminator.parse(resolved)
    work = CellWork()
    if ts.pretrained is not None:
        work.notes.append(f"{ref.name}: loads {ts.pretrained} (no training)")
        return work
    gen = resolve_model(ts.generator, resolved.profile, ts.generator_overrides or None)
    nfe = edm_nfe(ts.gen_steps, ts.gen_solver)
    work.add(net_ref(gen), EVAL, ts.n_samples * nfe, ts.gen_batch_size,
             f"generated training data: {ts.n_samples} {ts.gen_solver} samples x {nfe} evaluations of {gen.id}")
    n_real = _n_split(resolved, resolved.config.dataset.split, ts.n_samples)
    n = ts.n_samples if n_real is None else min(n_real, ts.n_samples)
    n_val = round(n * ts.val_fraction)
    # each item is one real and one generated image: a batch of b items is 2b images
    _steps(resolved, work, ref, ts.epochs, n - n_val, ts.batch_size, per_item=2, label="images (real + generated)")
    work.add(ref, EVAL, 2 * n_val * ts.epochs, min(2 * n_val, 256) or 1,
             f"validation: {2 * n_val} images x {ts.epochs} epochs")
    return work


def _discriminator_upstream(resolved):
    net, ts = discriminator.parse(resolved)
    out = [] if ts.pretrained is not None else [(ts.generator, ts.generator_overrides or None)]
    if getattr(net, "encoder", None) == "evaluator" and getattr(net, "evaluator", None):
        out.append((net.evaluator, None))
    return out


def _noisy_classifier_upstream(resolved):
    _, ts = noisy_classifier.parse(resolved)
    return [(ts.score_model, ts.score_model_overrides or None)]


UPSTREAM.update({"discriminator": _discriminator_upstream, "noisy_classifier": _noisy_classifier_upstream})
