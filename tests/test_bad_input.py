"""Bad input of every kind a user can give: one line on stderr, exit code 2, nothing written.

Each case drives the real command line (`repro.cli.main`, in this process, so that 40 cases take
seconds) in a fresh working directory with its own copy of experiments/, results/, artifacts/
and MLflow store. "Nothing written": the directory holds exactly the files the case set up
(no results, artifacts, reports, sample images, temporary files, no mlflow.db or mlruns/).
Command-line *usage* errors (missing arguments, unknown options) are tests/test_cli_usage.py's.
"""
from __future__ import annotations

import errno
import os
import shutil
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import yaml

from tests.conftest import REPO

SPEC = "fig5_9"   # segmenter_timesteps: fixed.n_images, grid t, model role `segmenter`


@dataclass
class Case:
    """A working directory being set up for one bad input."""

    root: Path
    env: dict[str, str] = field(default_factory=dict)
    patches: list[tuple[object, str, object]] = field(default_factory=list)
    fds: list[int] = field(default_factory=list)   # descriptors the case holds open (locks), closed after

    @property
    def experiments(self) -> Path:
        return self.root / "experiments"

    def spec_doc(self, spec_id: str = SPEC) -> dict:
        return yaml.safe_load((self.experiments / f"{spec_id}.yaml").read_text())

    def write_spec(self, doc: dict | str | bytes, spec_id: str = "bad") -> str:
        """experiments/<spec_id>.yaml from a document (its id set to the file name), text or bytes."""
        path = self.experiments / f"{spec_id}.yaml"
        if isinstance(doc, dict):
            doc = yaml.safe_dump({**doc, "id": spec_id}, sort_keys=False)
        path.write_bytes(doc if isinstance(doc, bytes) else doc.encode())
        return spec_id

    def mutated(self, change: Callable[[dict], None], spec_id: str = SPEC) -> str:
        doc = self.spec_doc(spec_id)
        change(doc)
        return self.write_spec(doc)

    def write_sweep(self, text: str, name: str = "bad-sweep") -> str:
        text = text.replace("id: snr\n", f"id: {name}\n")
        (self.experiments / "sweeps" / f"{name}.yaml").write_text(text)
        return name


def _png(width: int, height: int, rgb: tuple[int, int, int], mode: str = "RGB") -> bytes:
    from io import BytesIO

    from PIL import Image

    buf = BytesIO()
    Image.new(mode, (width, height), rgb if mode in ("RGB", "RGBA") else 0).save(buf, format="PNG")
    return buf.getvalue()


def _scene_colour() -> tuple[int, int, int]:
    from repro.data.palette import palette

    colours, _ = palette("street_scenes")
    return tuple(int(c) for c in colours[0])


def _unwritable(case: Case) -> Path:
    """A folder this process cannot create files in (as root, permissions do not stop it: sysfs does)."""
    if os.geteuid() == 0:
        return Path("/sys/repro-bad-input")
    ro = case.root / "read-only"
    ro.mkdir()
    ro.chmod(0o555)
    return ro / "out"


def _set(*pairs: str) -> list[str]:
    return [a for p in pairs for a in ("--set", p)]


RUN = ["run", SPEC, "--profile", "test", "--no-progress", "--device", "cpu"]


def _run(spec_id: str, *extra: str) -> list[str]:
    return ["run", spec_id, "--profile", "test", "--no-progress", "--device", "cpu", *extra]


# ----------------------------------------------------------------------------- the cases
# Each returns the command line; `expect` is a piece of the one line the user must see.

CASES: dict[str, tuple[Callable[[Case], list[str]], str]] = {}


def case(name: str, expect: str):
    def register(fn):
        CASES[name] = (fn, expect)
        return fn
    return register


@case("spec: wrong type of a fixed setting", "n_images")
def _(c):
    return _run(c.mutated(lambda d: d["profiles"]["test"]["fixed"].update(n_images="many")))


@case("spec: a key written twice (YAML would keep the last one silently)", "duplicate key 'fixed'")
def _(c):
    text = (c.experiments / f"{SPEC}.yaml").read_text()
    return _run(c.write_spec(text.replace("id: fig5_9\n", "id: bad\n") + "fixed: {n_images: 3}\n"))


@case("spec: a model role its kind needs is missing (spec.json and a FAILED run written before)",
      "needs model role(s) segmenter")
def _(c):
    return _run(c.mutated(lambda d: d.update(models={})))


@case("spec: a metric its kind does not measure (a misspelt name was accepted and never reported)",
      "metric 'mIoU' is not one kind segmenter_timesteps measures")
def _(c):
    return _run(c.mutated(lambda d: d.update(metrics=["pixel_acc", "mIoU"])))


@case("spec: grid is a list, not a mapping", "grid")
def _(c):
    return _run(c.mutated(lambda d: d.update(grid=[0.0, 0.5])))


@case("spec: title is a mapping", "title")
def _(c):
    return _run(c.mutated(lambda d: d.update(title={"a": 1})))


@case("spec: negative count", "n_images")
def _(c):
    return _run(c.mutated(lambda d: d["profiles"]["test"]["fixed"].update(n_images=-3)))


@case("spec: absurd count (10^12 images)", "n_images")
def _(c):
    return _run(c.mutated(lambda d: d["profiles"]["test"]["fixed"].update(n_images=10**12)))


@case("spec: negative resolution", "resolution")
def _(c):
    return _run(c.mutated(lambda d: d["profiles"]["test"]["dataset"].update(resolution=[-16, 32])))


@case("spec: resolution of one number", "resolution")
def _(c):
    return _run(c.mutated(lambda d: d["profiles"]["test"]["dataset"].update(resolution=[16])))


@case("spec: empty grid axis (no cells)", "grid")
def _(c):
    return _run(c.mutated(lambda d: d["profiles"]["test"].update(grid={"t": []})))


@case("spec: unknown top-level key", "colour")
def _(c):
    return _run(c.mutated(lambda d: d.update(colour="red")))


@case("spec: unknown key in dataset", "resolutionn")
def _(c):
    return _run(c.mutated(lambda d: d["dataset"].update(resolutionn=[16, 32])))


@case("spec: unknown key in fixed", "n_imagez")
def _(c):
    return _run(c.mutated(lambda d: d["fixed"].update(n_imagez=3)))


@case("spec: unknown key deep in a profile", "bogus")
def _(c):
    return _run(c.mutated(lambda d: d["profiles"]["test"]["dataset"].update(bogus=1)))


@case("spec: unknown profile name inside the spec", "huge")
def _(c):
    return _run(c.mutated(lambda d: d["profiles"].update(huge={"fixed": {"n_images": 2}})))


@case("spec: ../ path as a model name", "../")
def _(c):
    return _run(c.mutated(lambda d: d["models"].update(segmenter="../../etc/passwd")))


@case("spec: absolute path as a model name", "/etc/passwd")
def _(c):
    return _run(c.mutated(lambda d: d["models"].update(segmenter="/etc/passwd")))


@case("spec: ../ path as a dataset name", "dataset")
def _(c):
    return _run(c.mutated(lambda d: d["profiles"]["test"]["dataset"].update(name="../street_scenes")))


@case("spec: unknown kind", "kind")
def _(c):
    return _run(c.mutated(lambda d: d.update(kind="no_such_kind")))


@case("spec: kind names a module that is no runner", "unknown experiment kind 'problems'")
def _(c):   # only the KINDS table names runners: no module is found by its file name
    return _run(c.mutated(lambda d: d.update(kind="problems")))


@case("show: unknown kind", "unknown experiment kind 'no_such_kind'")
def _(c):
    return ["show", c.mutated(lambda d: d.update(kind="no_such_kind")), "--profile", "test"]


@case("spec: id differs from the file name", "id")
def _(c):
    doc = c.spec_doc()
    c.write_spec(yaml.safe_dump(doc), "bad")   # declares id fig5_9 in bad.yaml
    return _run("bad")


@case("spec file: empty", "mapping")
def _(c):
    return _run(c.write_spec(""))


@case("spec file: not UTF-8", "UTF-8")
def _(c):
    return _run(c.write_spec(b"id: bad\ntitle: caf\xe9 \xff\xfe\n"))


@case("spec file: malformed YAML", "malformed YAML")
def _(c):
    return _run(c.write_spec("id: bad\ngrid: {t: [0.0, 0.4\n"))


@case("spec file: a YAML list", "mapping")
def _(c):
    return _run(c.write_spec("- 1\n- 2\n"))


@case("spec file: a folder named like a spec (a traceback before)", "a folder, not a YAML file")
def _(c):
    (c.experiments / "bad.yaml").mkdir()
    return _run("bad")


@case("spec file: a dangling link (a traceback before)", "cannot be read")
def _(c):
    (c.experiments / "bad.yaml").symlink_to(c.root / "nowhere.yaml")
    return _run("bad")


@case("spec id: ../ path", "invalid spec name")
def _(c):
    return _run("../experiments/fig5_9")


@case("spec id: absolute path", "invalid spec name")
def _(c):
    return _run(str(REPO / "experiments" / "fig5_9.yaml"))


@case("unknown spec", "unknown spec")
def _(c):
    return _run("no_such_spec")


@case("unknown profile", "unknown profile")
def _(c):
    return ["run", SPEC, "--profile", "huge"]


@case("--set: unknown key", "unknown key")
def _(c):
    return RUN + _set("fixed.nope=1")


@case("--set: bad value type", "fixed.n_images")
def _(c):
    return RUN + _set("fixed.n_images=abc")


@case("--set: negative count", "n_images")
def _(c):
    return RUN + _set("fixed.n_images=-5")


@case("--set: a grid value nan (a LinAlgError traceback before)", "grid.t[0] is nan")
def _(c):
    return _run(SPEC, "--set", "grid.t=[.nan]")


@case("--set: a grid time outside [0, 1] (computed and stored before)", "grid.t[1] = 1.5")
def _(c):
    return _run(SPEC, "--set", "grid.t=[0.5, 1.5]")


@case("--set: a negative snr in the grid (computed and stored before)", "grid.snr[0] = -0.1")
def _(c):
    return _run("snr_study", "--set", "grid.snr=[-0.1, 0.1]")


@case("--set: a model of the wrong kind for its role (a KeyError traceback before)", "takes a noisy_segmenter model")
def _(c):
    return _run(SPEC, "--set", "models.segmenter=ncsnpp_cityscapes")


@case("--set: a resolution no machine holds (a MemoryError before)", "megapixels per image")
def _(c):
    return _run(SPEC, "--set", "dataset.resolution=[100000,100000]")


@case("--set: unknown model role", "no model role")
def _(c):
    return RUN + _set("models.nope.train.epochs=1")


@case("--set: unknown model setting", "unknown key")
def _(c):
    return RUN + _set("models.segmenter.train.epochz=1")


@case("--set: protected key", "cannot be overridden")
def _(c):
    return RUN + _set("kind=snr_sweep")


@case("--device: not a device", "--device")
def _(c):
    return ["run", SPEC, "--profile", "test", "--device", "tpu:0"]


@case("unknown model", "unknown model")
def _(c):
    return ["train", "no_such_model", "--profile", "test"]


@case("train: negative epochs", "epochs")
def _(c):
    return ["train", "noisy_unet", "--profile", "test", *_set("train.epochs=-1")]


@case("model file: circular base", "circular base")
def _(c):
    (c.experiments / "models" / "loop_a.yaml").write_text("base: loop_b\n")
    (c.experiments / "models" / "loop_b.yaml").write_text("base: loop_a\n")
    return ["train", "loop_a", "--profile", "test"]


@case("unknown sweep", "sweep")
def _(c):
    return ["sweep", "no-such-sweep", "--profile", "test"]


@case("sweep file: malformed YAML", "malformed YAML")
def _(c):
    return ["sweep", c.write_sweep("base: snr_study\nspace: {snr: {type: grid\n"), "--profile", "test"]


@case("sweep file: unknown sampler", "sampler")
def _(c):
    text = (c.experiments / "sweeps" / "snr.yaml").read_text().replace("sampler: grid", "sampler: annealing")
    return ["sweep", c.write_sweep(text), "--profile", "test"]


@case("sweep file: space names no setting of the base spec", "nonexistent")
def _(c):
    text = (c.experiments / "sweeps" / "snr.yaml").read_text().replace("  snr: {type: grid}",
                                                                        "  nonexistent: {type: grid}")
    return ["sweep", c.write_sweep(text), "--profile", "test"]


@case("sweep: --status with --dashboard (the dashboard was ignored)", "--dashboard")
def _(c):
    return ["sweep", "dg-epsilon", "--profile", "test", "--status", "--dashboard"]


@case("sweep: zero workers", "--workers")
def _(c):
    return ["sweep", "snr", "--profile", "test", "--workers", "0"]


@case("report: unknown spec", "unknown spec")
def _(c):
    return ["report", "no_such_spec"]


@case("mask: truncated PNG", "--map")
def _(c):
    blob = _png(32, 16, _scene_colour())
    (c.root / "map.png").write_bytes(blob[: len(blob) // 2])
    return ["sample", "semantic", "--map", str(c.root / "map.png"), "--profile", "test", "--no-progress"]


@case("mask: not an image", "--map")
def _(c):
    (c.root / "map.png").write_text("a drawing, honestly\n")
    return ["sample", "semantic", "--map", str(c.root / "map.png"), "--profile", "test", "--no-progress"]


@case("mask: a colour outside the palette", "colour")
def _(c):
    (c.root / "map.png").write_bytes(_png(32, 16, (1, 2, 3)))
    return ["sample", "semantic", "--map", str(c.root / "map.png"), "--profile", "test", "--no-progress"]


@case("mask: wrong mode (16-bit greyscale)", "--map")
def _(c):
    (c.root / "map.png").write_bytes(_png(32, 16, (0, 0, 0), mode="I;16"))
    return ["sample", "semantic", "--map", str(c.root / "map.png"), "--profile", "test", "--no-progress"]


@case("mask: transparent pixels (RGBA)", "transparent")
def _(c):
    (c.root / "map.png").write_bytes(_png(32, 16, (*_scene_colour(), 0), mode="RGBA"))
    return ["sample", "semantic", "--map", str(c.root / "map.png"), "--profile", "test", "--no-progress"]


@case("mask: wrong size (aspect ratio of a column)", "--map")
def _(c):
    (c.root / "map.png").write_bytes(_png(1, 400, _scene_colour()))
    return ["sample", "semantic", "--map", str(c.root / "map.png"), "--profile", "test", "--no-progress"]


@case("mask: a folder", "--map")
def _(c):
    (c.root / "map.png").mkdir()
    return ["sample", "semantic", "--map", str(c.root / "map.png"), "--profile", "test", "--no-progress"]


def _huge_png_header(width: int, height: int) -> bytes:
    """A PNG that claims width x height (8-bit RGB) and holds no pixel data: enough for Image.open,
    which reads the header only; a reader that decodes it fails (the data is missing)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IEND", b""))


@case("map: 200 megapixels (a decompression-bomb traceback before)", "megapixels")
def _(c):
    (c.root / "map.png").write_bytes(_huge_png_header(20000, 10000))
    return ["sample", "semantic", "--map", str(c.root / "map.png"), "--profile", "test", "--no-progress"]


@case("mask: 100 megapixels", "megapixels")
def _(c):
    (c.root / "mask.png").write_bytes(_huge_png_header(14142, 7071))
    return ["sample", "ddpm", "--mask", str(c.root / "mask.png"), "--profile", "test", "--no-progress"]


@case("sample: zero images", "-n")
def _(c):
    (c.root / "map.png").write_bytes(_png(32, 16, _scene_colour()))
    return ["sample", "semantic", "--map", str(c.root / "map.png"), "-n", "0", "--profile", "test"]


@case("sample: unwritable output folder", "out")
def _(c):
    (c.root / "map.png").write_bytes(_png(32, 16, _scene_colour()))
    return ["sample", "semantic", "--map", str(c.root / "map.png"), "--out", str(_unwritable(c)),
            "--profile", "test", "--no-progress"]


def _bdd_mask(c) -> str:
    from repro.data.colorbook import ColorBook

    book = ColorBook.load(None)
    colour = tuple(int(v) for v in book.to_rgb(np.zeros((1, 1), np.int64))[0, 0])
    (c.root / "mask.png").write_bytes(_png(32, 16, colour))
    return str(c.root / "mask.png")


@case("sample ddpm: guidance nan (NaN images, exit 0 before)", "--guidance")
def _(c):
    return ["sample", "ddpm", "--mask", _bdd_mask(c), "--guidance", "nan", "--profile", "test", "--no-progress"]


@case("sample ddpm: unknown convention, refused before any training", "convention")
def _(c):
    return ["sample", "ddpm", "--mask", _bdd_mask(c), "--convention", "bogus", "--profile", "test", "--no-progress"]


@case("run: --max-hours negative", "--max-hours")
def _(c):
    return _run(SPEC, "--max-hours", "-1")


@case("run: --max-hours nan", "--max-hours")
def _(c):
    return _run(SPEC, "--max-hours", "nan")


@case("REPRO_EXPERIMENTS: no such folder (said 'no specs found', exit 0)", "REPRO_EXPERIMENTS")
def _(c):
    c.env["REPRO_EXPERIMENTS"] = str(c.root / "nowhere")
    return ["list"]


_HELD: list[socket.socket] = []   # sockets kept open while a case runs


@case("ui: port in use (printed its links, exit 0 after 84 s)", "--port")
def _(c):
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    _HELD.append(held)
    return ["ui", "--port", str(held.getsockname()[1])]


@case("checkpoint of the wrong format", "does not hold a state dict")
def _(c):
    import torch

    torch.save([1, 2, 3], c.root / "classifier.pt")
    return ["run", "fig12_3", "--profile", "test", "--no-progress", *_set(
        "models.discriminator.net.encoder=adm", "models.discriminator.net.adm_width=32",
        "models.discriminator.net.adm_depth=1", "models.discriminator.net.adm_head_channels=32",
        "models.discriminator.net.train_encoder=false",
        f"models.discriminator.net.adm_classifier={c.root / 'classifier.pt'}")]


@case("cityscapes tree: an image without its label file", "label file missing")
def _(c):
    city = c.root / "data" / "cityscapes"
    (city / "leftImg8bit" / "val" / "aachen").mkdir(parents=True)
    (city / "gtFine" / "val" / "aachen").mkdir(parents=True)
    (city / "leftImg8bit" / "val" / "aachen" / "aachen_000000_000019_leftImg8bit.png").write_bytes(
        _png(64, 32, (128, 64, 128)))
    c.env["REPRO_DATA"] = str(c.root / "data")
    return RUN + _set("dataset.name=cityscapes")


@case("image folder: no images", "no .png")
def _(c):
    (c.root / "data" / "image_folder").mkdir(parents=True)
    (c.root / "data" / "image_folder" / "notes.txt").write_text("nothing here\n")
    c.env["REPRO_DATA"] = str(c.root / "data")
    return RUN + _set("dataset.name=image_folder")


@case("REPRO_RESULTS points at a file", "REPRO_RESULTS")
def _(c):
    (c.root / "results.txt").write_text("not a folder\n")
    c.env["REPRO_RESULTS"] = str(c.root / "results.txt")
    return RUN


@case("REPRO_ARTIFACTS points at a file", "REPRO_ARTIFACTS")
def _(c):
    (c.root / "artifacts.txt").write_text("not a folder\n")
    c.env["REPRO_ARTIFACTS"] = str(c.root / "artifacts.txt")
    return ["train", "noisy_unet", "--profile", "test", "--no-progress"]


@case("unwritable results folder", "cannot write")
def _(c):
    c.env["REPRO_RESULTS"] = str(_unwritable(c))
    return RUN


def _unwritable_folder(case: Case) -> Path:
    """An existing folder this process cannot create files in (as root: a sysfs folder)."""
    if os.geteuid() == 0:
        return Path("/sys/kernel")
    ro = case.root / "read-only-folder"
    ro.mkdir()
    ro.chmod(0o555)
    return ro


@case("the spec's cells/ folder cannot be written (a traceback before)", "the cells folder of fig5_9")
def _(c):
    cells = c.root / "results" / SPEC / "test" / "cells"
    cells.parent.mkdir(parents=True)
    cells.symlink_to(_unwritable_folder(c), target_is_directory=True)
    return _run(SPEC)


@case("a model's artifacts folder cannot be written (a traceback before)", "the artifacts folder of model noisy_unet")
def _(c):
    model = c.root / "artifacts" / "noisy_unet"
    model.parent.mkdir(parents=True)
    model.symlink_to(_unwritable_folder(c), target_is_directory=True)
    return _run(SPEC)


@case("report: the reports folder cannot be written (a traceback before)", "the reports folder")
def _(c):
    c.root.joinpath("reports").symlink_to(_unwritable_folder(c), target_is_directory=True)
    return ["report", SPEC]


def _store(c: Case, name: str, content: bytes | None = None, folder: bool = False) -> str:
    """MLFLOW_TRACKING_URI at store/<name> under the case's root, made garbage or a folder."""
    path = c.root / "store" / name
    path.parent.mkdir()
    if folder:
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    c.env["MLFLOW_TRACKING_URI"] = f"sqlite:///{path}"
    return str(path)


@case("MLflow store: garbage in mlflow.db (a 100-line SQLAlchemy traceback before)", "is not an SQLite database")
def _(c):
    _store(c, "mlflow.db", b"this is not a database at all" * 10)
    return _run(SPEC)


@case("MLflow store: truncated SQLite file", "cannot be opened")
def _(c):
    _store(c, "mlflow.db", b"SQLite format 3\x00" + b"\x00" * 84)
    return _run(SPEC)


@case("MLflow store: a folder where the database belongs", "is a folder")
def _(c):
    _store(c, "mlflow.db", folder=True)
    return _run(SPEC)


@case("MLflow store: unknown URI scheme", "unknown scheme 'bogus'")
def _(c):
    c.env["MLFLOW_TRACKING_URI"] = "bogus://somewhere/store"
    return _run(SPEC)


@case("MLflow store: a server that does not answer (retried for minutes before)", "does not answer")
def _(c):
    with socket.socket() as s:   # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c.env["MLFLOW_TRACKING_URI"] = f"http://127.0.0.1:{port}"
    return _run(SPEC)


@case("MLflow store: garbage, for repro train", "is not an SQLite database")
def _(c):
    _store(c, "mlflow.db", b"garbage" * 20)
    return ["train", "noisy_unet", "--profile", "test", "--no-progress", "--device", "cpu"]


@case("full disk (simulated: every fsync fails with ENOSPC)", "No space left")
def _(c):
    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    c.patches.append((os, "fsync", full))
    return RUN


@case("compare: --out is a folder (a traceback: IsADirectoryError)", "--out out is a folder")
def _(c):
    (c.root / "out").mkdir()
    (c.root / "out" / "keep.txt").write_text("x")
    return ["compare", SPEC, "--out", "out"]


@case("compare: --out under a file (a traceback: FileExistsError)", "notes.txt is a file, not a folder")
def _(c):
    (c.root / "notes.txt").write_text("x")
    return ["compare", SPEC, "--out", "notes.txt/table.csv"]


@case("compare: --metrics-dir is a file (a traceback)", "metrics is a file, not a folder")
def _(c):
    (c.root / "metrics").write_text("x")
    return ["compare", SPEC, "--profile", "test", "--metrics-dir", "metrics"]


@case("compare --claims: --out is a folder", "is a folder; give a file name")
def _(c):
    (c.root / "claims").mkdir()
    (c.root / "claims" / "keep.txt").write_text("x")
    return ["compare", "all", "--claims", "--out", "claims"]


@case("sample ddpm: --out under a file (said only after training and sampling)", "a.png is a file, not a folder")
def _(c):
    (c.root / "a.png").write_bytes(_png(8, 8, (0, 0, 0)))
    (c.root / "mask.png").write_bytes(_png(16, 16, (0, 0, 0)))
    return ["sample", "ddpm", "--mask", "mask.png", "--profile", "test", "--device", "cpu", "--out", "a.png/x"]


# -- values at the edge, tried as a user would (the first seven were accepted or half-done before)

@case("--set: a negative seed (computed and stored before)", "seed: Input should be greater than or equal to 0")
def _(c):
    return RUN + _set("seed=-1")


@case("train --set: a negative seed (trained before)", "seed: Input should be greater than or equal to 0")
def _(c):
    return ["train", "noisy_unet", "--profile", "test", "--device", "cpu", *_set("seed=-1")]


@case("sample semantic: a negative --seed (trained and sampled before)", "--seed -1: must be 0 or more")
def _(c):
    (c.root / "map.png").write_bytes(_png(32, 16, _scene_colour()))
    return ["sample", "semantic", "--map", "map.png", "--seed", "-1", "--profile", "test", "--device", "cpu"]


@case("sample ddpm: a negative --seed (trained and sampled before)", "--seed -1: must be 0 or more")
def _(c):
    (c.root / "mask.png").write_bytes(_png(16, 16, (0, 0, 0)))
    return ["sample", "ddpm", "--mask", "mask.png", "--seed", "-1", "--profile", "test", "--device", "cpu"]


@case("--set: dataset.root of a dataset the suite renders (silently ignored before)", "reads no files")
def _(c):
    return RUN + _set("dataset.root=/nonexistent")


@case("sample ddpm: unknown --loop, refused before any training (trained first before)", "--loop 'bogus'")
def _(c):
    (c.root / "mask.png").write_bytes(_png(16, 16, (0, 0, 0)))
    return ["sample", "ddpm", "--mask", "mask.png", "--loop", "bogus", "--profile", "test", "--device", "cpu"]


@case("ui: an unknown store scheme (a 66-line traceback before)", "unknown scheme 'bogus'")
def _(c):
    c.env["MLFLOW_TRACKING_URI"] = "bogus://somewhere"
    return ["ui", "--port", "5999"]


@case("--set: a float for a whole number", "expected int")
def _(c):
    return RUN + _set("fixed.n_images=1.5")


@case("--set: a seed that is no number", "--set seed")
def _(c):
    return RUN + _set("seed=abc")


@case("--set: an infinite grid value", "grid values must be finite")
def _(c):
    return RUN + _set("grid.t=[.inf]")


@case("--set: an empty grid axis", "has no values")
def _(c):
    return RUN + _set("grid.t=[]")


@case("--set: a grid key the kind does not vary", "--set grid.bogus: unknown key")
def _(c):
    return RUN + _set("grid.bogus=[1]")


@case("--set: a resolution of zero", "at least 1")
def _(c):
    return RUN + _set("dataset.resolution=[0,0]")


@case("--set: an unknown dataset split", "unknown split 'bogus'")
def _(c):
    return RUN + _set("dataset.split=bogus")


@case("--set: an unknown dataset", "unknown dataset 'nosuch'")
def _(c):
    return RUN + _set("dataset.name=nosuch")


@case("--set: a role given a model that does not exist", "unknown model 'nosuch_model'")
def _(c):
    return RUN + _set("models.segmenter=nosuch_model")


@case("--set: a negative learning rate of a role's model", "train.lr: Input should be greater than 0")
def _(c):
    return RUN + _set("models.segmenter.train.lr=-1")


@case("--set: a learning rate nan", "train.lr")
def _(c):
    return RUN + _set("models.segmenter.train.lr=nan")


@case("train --set: a learning rate that is no number", "--set train.lr")
def _(c):
    return ["train", "noisy_unet", "--profile", "test", "--device", "cpu", *_set("train.lr=abc")]


@case("train --set: fractional epochs", "--set train.epochs")
def _(c):
    return ["train", "noisy_unet", "--profile", "test", "--device", "cpu", *_set("train.epochs=1.5")]


@case("train: unknown profile", "unknown profile 'bogus'")
def _(c):
    return ["train", "noisy_unet", "--profile", "bogus"]


@case("run --set: a key one of the specs of `all` lacks", "--set fixed.n_images: unknown key")
def _(c):
    return ["run", "all", "--profile", "test", "--no-progress", *_set("fixed.n_images=3")]


@case("plan --set: a negative count", "fixed.n_images")
def _(c):
    return ["plan", SPEC, "--profile", "test", *_set("fixed.n_images=-1")]


@case("show --set: a grid time above 1", "grid.t[0] = 2")
def _(c):
    return ["show", SPEC, *_set("grid.t=[2]")]


@case("--device: a CUDA device this machine does not have", "--device cuda:7")
def _(c):
    return [*RUN[:-2], "--device", "cuda:7"]


@case("run: --jobs 0", "--jobs 0: must be at least 1")
def _(c):
    return RUN + ["--jobs", "0"]


@case("run: --devices names no device", "--devices ','")
def _(c):
    return RUN + ["--devices", ","]


@case("sweep: --n-trials 0", "--n-trials 0")
def _(c):
    return ["sweep", "snr", "--n-trials", "0"]


@case("sample semantic: --map that does not exist", "no such file")
def _(c):
    return ["sample", "semantic", "--map", "missing.png", "--profile", "test"]


@case("sample semantic: --map an empty file", "not a readable image")
def _(c):
    (c.root / "empty.png").write_bytes(b"")
    return ["sample", "semantic", "--map", "empty.png", "--profile", "test"]


@case("sample semantic: --s0 nan", "--s0 nan: must be a finite number")
def _(c):
    (c.root / "map.png").write_bytes(_png(32, 16, _scene_colour()))
    return ["sample", "semantic", "--map", "map.png", "--s0", "nan", "--profile", "test"]


@case("sample ddpm: --colorbook that does not exist", "colour book nope.json: no such file")
def _(c):
    (c.root / "mask.png").write_bytes(_png(16, 16, (0, 0, 0)))
    return ["sample", "ddpm", "--mask", "mask.png", "--colorbook", "nope.json", "--profile", "test"]


@case("sample ddpm: --colorbook that is no JSON", "not a colour book JSON")
def _(c):
    (c.root / "mask.png").write_bytes(_png(16, 16, (0, 0, 0)))
    (c.root / "book.json").write_text("classes: no")
    return ["sample", "ddpm", "--mask", "mask.png", "--colorbook", "book.json", "--profile", "test"]


@case("evaluate: --images that does not exist", "--images nope: no such folder")
def _(c):
    return ["evaluate", "--images", "nope", "--maps", "nope", "--profile", "test"]


@case("evaluate: --images with no image in it", "no image files")
def _(c):
    (c.root / "empty").mkdir()
    (c.root / "empty" / "notes.txt").write_text("x")
    return ["evaluate", "--images", "empty", "--maps", "empty", "--profile", "test"]


@case("evaluate: an unknown metric", "--metrics 'bogus'")
def _(c):
    (c.root / "imgs").mkdir()
    (c.root / "imgs" / "a.png").write_bytes(_png(16, 16, (0, 0, 0)))
    return ["evaluate", "--images", "imgs", "--maps", "imgs", "--metrics", "bogus", "--profile", "test"]


@case("ui: --port out of range", "--port 70000")
def _(c):
    return ["ui", "--port", "70000"]


@case("REPRO_THREADS is no number", "REPRO_THREADS 'abc'")
def _(c):
    c.env["REPRO_THREADS"] = "abc"
    return RUN


@case("REPRO_PLAN_WARN_HOURS is no number", "REPRO_PLAN_WARN_HOURS")
def _(c):
    c.env["REPRO_PLAN_WARN_HOURS"] = "abc"
    return RUN


@case("REPRO_REPORTS points at a file", "REPRO_REPORTS")
def _(c):
    (c.root / "reports.txt").write_text("not a folder\n")
    c.env["REPRO_REPORTS"] = str(c.root / "reports.txt")
    return ["report", SPEC]


@case("run: unknown --launcher", "--launcher 'bogus'")
def _(c):
    return RUN + ["--launcher", "bogus"]


@case("run --launcher submitit-local: --workers 0", "--workers 0")
def _(c):
    return RUN + ["--launcher", "submitit-local", "--workers", "0"]


@case("run --launcher slurm: --time 0", "--time 0")
def _(c):
    return RUN + ["--launcher", "submitit-local", "--time", "0"]


@case("run --launcher slurm: negative --gpus-per-node", "--gpus-per-node -1")
def _(c):
    return RUN + ["--launcher", "submitit-local", "--gpus-per-node", "-1"]


@case("run --launcher: with --jobs as well", "leave out --jobs/--devices")
def _(c):
    return RUN + ["--launcher", "submitit-local", "--jobs", "2"]


@case("run: --workers without a launcher that submits", "go with --launcher slurm")
def _(c):
    return RUN + ["--workers", "2"]


@case("run --launcher slurm: no SLURM client on this machine", "sbatch is not on PATH")
def _(c):
    c.env["PATH"] = str(c.root / "no-slurm-here")
    return RUN + ["--launcher", "slurm"]


@case("run --launcher slurm: a CUDA device and no GPU asked for", "give --gpus-per-node 1 or more")
def _(c):
    return [*RUN[:-2], "--device", "cuda", "--launcher", "submitit-local"]


def _hold(c: Case, lock: Path, holder: dict) -> None:
    """Hold `lock` (an flock on its own open file, as another invocation would) until the test ends."""
    import fcntl
    import json

    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.pwrite(fd, json.dumps(holder).encode(), 0)
    c.fds.append(fd)


@case("run: another invocation runs the spec, --no-wait (both computed every cell before)",
      "is being run by pid 4242")
def _(c):
    _hold(c, c.root / "results" / ".locks" / f"{SPEC}.test.lock",
          {"pid": 4242, "host": "node-a", "since": 0, "command": f"repro run {SPEC} --profile test"})
    return [*RUN, "--no-wait"]


# ----------------------------------------------------------------------------- the test

def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir() or not any(p.iterdir())}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_one_line_exit_2_nothing_written(name, tmp_path, monkeypatch, capfd):
    from repro.cli import main

    setup, expect = CASES[name]
    shutil.copytree(REPO / "experiments", tmp_path / "experiments")
    c = Case(tmp_path)
    args = setup(c)
    monkeypatch.chdir(tmp_path)
    for var in ("REPRO_RESULTS", "REPRO_ARTIFACTS", "REPRO_REPORTS", "REPRO_DATA", "REPRO_NO_MLFLOW",
                "REPRO_FID_WEIGHTS", "REPRO_TRUST_PICKLE", "REPRO_TEST_KILL_AT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("REPRO_EXPERIMENTS", str(tmp_path / "experiments"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    for k, v in c.env.items():
        monkeypatch.setenv(k, v)
    for obj, attr, value in c.patches:
        monkeypatch.setattr(obj, attr, value)
    before = _files(tmp_path)
    monkeypatch.setattr(sys, "argv", ["repro", *args])
    capfd.readouterr()
    try:
        with pytest.raises(SystemExit) as exit_:
            main()
    finally:
        for fd in c.fds:
            os.close(fd)
    out, err = capfd.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert exit_.value.code == 2, f"{name}: exit {exit_.value.code}\n{err[-3000:]}"
    assert len(lines) == 1 and lines[0].startswith("error: "), f"{name}: not one line:\n{err[-3000:]}"
    assert expect.lower() in lines[0].lower(), f"{name}: {lines[0]!r} does not mention {expect!r}"
    after = _files(tmp_path)
    assert after == before, f"{name}: wrote {sorted(after - before)}"
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()


def test_there_are_at_least_30_kinds():
    assert len(CASES) >= 30


def test_disk_full_during_a_run_is_one_line_exit_2_and_resumes(tmp_path, monkeypatch, capfd):
    """The disk fills while the 2nd cell's file is written (its fsync fails with ENOSPC, what a full
    disk does to a write that got past the preflight probe): one line naming that file, exit 2, no
    temporary file left, the 1st cell kept; the same command again computes only the other three."""
    from repro.cli import main

    monkeypatch.chdir(tmp_path)
    for var in ("REPRO_RESULTS", "REPRO_ARTIFACTS", "REPRO_REPORTS", "REPRO_DATA", "REPRO_NO_MLFLOW",
                "REPRO_TEST_KILL_AT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    real_fsync = os.fsync

    def fsync(fd):
        if Path(os.readlink(f"/proc/self/fd/{fd}")).name.startswith(".t=0.4.json."):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    cells = tmp_path / "results" / "fig5_9" / "test" / "cells"
    args = ["repro", "run", "fig5_9", "--profile", "test", "--no-progress", "--device", "cpu"]
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(sys, "argv", args)
    capfd.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main()
    lines = [ln for ln in capfd.readouterr().err.splitlines() if ln.strip()]
    assert exit_.value.code == 2
    assert len(lines) == 1 and lines[0].startswith("error: disk full: cannot write "), lines
    assert "t=0.4.json" in lines[0] and "No space left on device" in lines[0]
    assert sorted(p.name for p in cells.iterdir()) == ["t=0.json"]
    assert not [p for p in tmp_path.rglob(".*.tmp")]

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("fig5_9").experiment_id])
    assert sorted(r.info.status for r in runs) == ["FAILED", "FAILED", "FINISHED"]   # parent, 2nd cell; 1st

    monkeypatch.setattr(os, "fsync", real_fsync)
    main()   # returns: success
    assert "(3 run, 1 already finished)" in capfd.readouterr().out
    assert sorted(p.name for p in cells.iterdir()) == ["t=0.4.json", "t=0.8.json", "t=0.json", "t=1.json"]
