"""Report figures of the dg_epsilon_grid runner: curves (Fig. 12.1), heatmaps (Fig. 12.3/12.4), bars (Tab. 12.1).

The layout follows the grid (`layout`): steps x w_DG -> curves of the metric over w_DG, one line
per step count, one panel per method; w_DG x b -> a heatmap; otherwise bars per cell.
Reproduced and published values sit in separate panels: on the embedded profiles they are
different metrics (fd_evalnet on digits vs the thesis's FID on CIFAR-10).
"""
from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np

from repro.experiments import resolve_spec
from repro.experiments.dg.settings import METHOD_LABELS
from repro.plots import pyplot

FEATURE_METRICS = ("fid", "fd_evalnet")


def main_metric(spec, df) -> str | None:
    for m in spec.metrics:
        if m in FEATURE_METRICS and m in df.columns:
            return m
    return None


def published_metric(spec) -> str | None:
    for m in ("fid", "fd_evalnet"):
        if any(m in c for c in spec.paper.cells):
            return m
    return None


def _plt():
    return pyplot()


def _label(key: str | None, value) -> str:
    if key == "method":
        return METHOD_LABELS.get(str(value), str(value))
    return f"{key} = {value:g}" if isinstance(value, float) else f"{key} = {value}"


def draw(spec, df, out_dir: Path, stem: str) -> list[Path]:
    metric = main_metric(spec, df)
    if metric is None or not len(df):
        return []
    fig = layout(spec.grid)
    kind = fig["type"]
    if kind == "heatmap":
        return [heatmap(spec, df, metric, fig, out_dir / f"{stem}_heatmap.png")]
    if kind == "curves":
        return [curves(spec, df, metric, fig, out_dir / f"{stem}_curves.png")]
    return [bars(spec, df, metric, fig, out_dir / f"{stem}_bars.png")]


def layout(grid: dict) -> dict:
    """Which figure a grid gets, and which keys go where."""
    varied = {k for k, v in grid.items() if len(v) > 1}
    if {"w_dg", "eps_scale"} <= varied and not varied - {"w_dg", "eps_scale"}:
        return {"type": "heatmap", "rows": "w_dg", "cols": "eps_scale"}
    for x in ("w_dg", "eps_scale", "steps"):
        if x in varied:
            rest = [k for k in grid if k != x and k in varied]
            hue = rest[0] if rest else None
            panel = rest[1] if len(rest) > 1 else None
            if hue == "method" and panel is not None:
                hue, panel = panel, hue
            return {"type": "curves", "x": x, "hue": hue, "panel": panel}
    return {"type": "bars", "x": next(iter(grid), None)}


def _notes(spec, metric: str) -> list[dict]:
    """Published cells without a value but with a `note`: what the text says about a cell."""
    return [c for c in spec.paper.cells if "note" in c and metric not in c]


def _col(df, key: str, name: str):
    """Grid column, or the cell's resolved setting (extra) when the grid does not vary it."""
    if key in df.columns:
        return df[key]
    raise KeyError(f"figure {name} key {key!r} is not a column of the results")


def curves(spec, df, metric: str, fig: dict, path: Path) -> Path:
    """metric vs x, one line per hue value, one panel per panel value; published values below."""
    plt = _plt()
    x, hue, panel = fig["x"], fig["hue"], fig["panel"]
    panels = sorted(df[panel].unique(), key=str) if panel else [None]
    pub_metric = published_metric(spec)
    rows = 2 if pub_metric else 1
    f, axes = plt.subplots(rows, len(panels), figsize=(4.8 * len(panels), 3.6 * rows + 0.4), squeeze=False,
                           sharey="row")
    for j, p in enumerate(panels):
        ax = axes[0][j]
        sub = df if panel is None else df[df[panel] == p]
        for h in sorted(sub[hue].unique(), key=lambda v: (str(type(v)), v)) if hue else [None]:
            line = sub if hue is None else sub[sub[hue] == h]
            line = line.sort_values(x)
            ax.plot(_col(line, x, "x"), line[metric], marker="o", ms=4, label=_label(hue, h) if hue else None)
        ax.set_title(f"reproduced: {_label(panel, p)}" if panel else "reproduced", fontsize=10)
        ax.set_xlabel(x)
        ax.set_ylabel(metric)
        if hue:
            ax.legend(fontsize=8)
        if rows == 2:
            _published_panel(axes[1][j], spec, pub_metric, x, hue, panel, p, fig)
            axes[1][j].set_xlim(axes[0][j].get_xlim())
    f.suptitle(f"{spec.id}: {metric} ({spec.dataset.name}); published: {spec.source.cite()}", fontsize=10)
    unstated = rows == 2 and any(pub_metric in c and x not in c for c in spec.paper.cells)
    if unstated:
        f.text(0.5, 0.005, f"dashed lines: published values whose {x} the text does not state", ha="center",
               va="bottom", fontsize=8)
    f.tight_layout(rect=(0, 0.03 if unstated else 0, 1, 1))
    f.savefig(path, dpi=120)
    plt.close(f)
    return path


def _published_panel(ax, spec, metric, x, hue, panel, p, fig):
    """Published cells of this panel; hue values coloured in order (the profile's may differ)."""
    cells = [c for c in spec.paper.cells if metric in c and (panel is None or str(c.get(panel)) == str(p))]
    by_hue: dict = {}
    for c in cells:
        by_hue.setdefault(c.get(hue), []).append(c)
    cycle = [f"C{i}" for i in range(10)]
    for i, (h, cs) in enumerate(sorted(by_hue.items(), key=lambda kv: (str(type(kv[0])), kv[0]))):
        color = cycle[i % len(cycle)]
        with_x = sorted([c for c in cs if x in c], key=lambda c: c[x])
        if with_x:
            ax.plot([c[x] for c in with_x], [c[metric] for c in with_x], marker="s", ms=4, color=color,
                    label=_label(hue, h))
        for c in cs:
            if x not in c:   # the published setting of x is not stated: a level line
                ax.axhline(c[metric], ls="--", lw=1.2, color=color, label=f"{_label(hue, h)}: {c[metric]:g}")
    ax.set_title(f"published ({metric}): {_label(panel, p)}" if panel else f"published ({metric})", fontsize=10)
    ax.set_xlabel(x)
    ax.set_ylabel(metric)
    if cells:
        ax.legend(fontsize=7)


def _matrix(cells: list[dict], metric: str, rows: str, cols: str, row_vals, col_vals):
    M = np.full((len(row_vals), len(col_vals)), np.nan)
    for c in cells:
        if metric in c and rows in c and cols in c:
            for i, r in enumerate(row_vals):
                for j, k in enumerate(col_vals):
                    if math.isclose(float(c[rows]), float(r), rel_tol=1e-9) and \
                            math.isclose(float(c[cols]), float(k), rel_tol=1e-9):
                        M[i, j] = float(c[metric])
    return M


def _heat(ax, M, row_vals, col_vals, rows, cols, title, cmap="viridis_r", marks=()):
    from matplotlib.patches import Rectangle

    masked = np.ma.masked_invalid(M)
    ax.set_facecolor("#dddddd")
    im = ax.imshow(masked, cmap=cmap, aspect="auto")
    ax.set_xticks(range(len(col_vals)), [f"{v:g}" for v in col_vals], rotation=45, fontsize=8)
    ax.set_yticks(range(len(row_vals)), [f"{v:g}" for v in row_vals], fontsize=8)
    ax.set_xlabel(cols)
    ax.set_ylabel(rows)
    ax.grid(False)
    ax.set_title(title, fontsize=10)
    finite = M[np.isfinite(M)]
    best = np.unravel_index(np.nanargmin(M), M.shape) if finite.size else None
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    labels = {}
    for mark in marks:   # facts the text states about cells whose values it does not give
        for i, r in enumerate(row_vals):
            for j, c in enumerate(col_vals):
                if _matches(mark, {rows: r, cols: c}):
                    labels[(i, j)] = str(mark.get("note", ""))
                    ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="tab:orange", lw=1.5, ls="--"))
    for i in range(M.shape[0]):
        for j in range(M.shape[1]):
            if np.isfinite(M[i, j]):
                bright = (M[i, j] - lo) / max(hi - lo, 1e-12) < 0.5   # viridis_r is light for low values
                ax.text(j, i, f"{M[i, j]:.3g}", ha="center", va="center", fontsize=7,
                        color="black" if bright else "white", fontweight="bold" if best == (i, j) else "normal")
            else:
                label = "\n".join(textwrap.wrap(labels.get((i, j)) or "n/a", 16))
                ax.text(j, i, label, ha="center", va="center", fontsize=5.5, color="black")
    if best is not None:
        ax.add_patch(Rectangle((best[1] - 0.5, best[0] - 0.5), 1, 1, fill=False, ec="red", lw=2))
    if finite.size:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)


def _matches(mark: dict, cell: dict) -> bool:
    """A published note names some grid values; it matches every cell that has them."""
    for k, v in cell.items():
        if k in mark and not math.isclose(float(mark[k]), float(v), rel_tol=1e-9):
            return False
    return any(k in mark for k in cell)


def heatmap(spec, df, metric: str, fig: dict, path: Path) -> Path:
    """Published grid (paper profile's axes) beside the reproduced grid; best cell outlined in red."""
    plt = _plt()
    rows, cols = fig["rows"], fig["cols"]
    paper_grid = resolve_spec(spec.id, "paper").spec.grid
    pub_metric = published_metric(spec) or ("fid" if "fid" in resolve_spec(spec.id, "paper").spec.metrics else metric)
    p_rows, p_cols = paper_grid.get(rows, []), paper_grid.get(cols, [])
    r_rows, r_cols = sorted(df[rows].unique()), sorted(df[cols].unique())
    P = _matrix(spec.paper.cells, pub_metric, rows, cols, p_rows, p_cols)
    R = _matrix(df.to_dict("records"), metric, rows, cols, r_rows, r_cols)
    f, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.4))
    _heat(a1, P, p_rows, p_cols, rows, cols, f"published {pub_metric} (paper grid)", marks=_notes(spec, pub_metric))
    if not np.isfinite(P).any():
        a1.text(0.5, -0.3, "No value of this grid is in the thesis text (the figure is an image); dashed boxes: "
                "cells the text comments on.", transform=a1.transAxes, fontsize=7, ha="center", va="top", wrap=True)
    _heat(a2, R, r_rows, r_cols, rows, cols, f"reproduced {metric} ({spec.dataset.name})")
    f.suptitle(f"{spec.id}: {rows} x {cols}; lower is better; red box = best", fontsize=10)
    f.tight_layout()
    f.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(f)
    return path


def bars(spec, df, metric: str, fig: dict, path: Path) -> Path:
    """Reproduced value per x (with NFE) beside the published rows (with NFE)."""
    plt = _plt()
    x = fig["x"] or next(iter(spec.grid), None)
    pub_metric = published_metric(spec)
    f, axes = plt.subplots(1, 2 if pub_metric else 1, figsize=(12 if pub_metric else 6, 4.2), squeeze=False)
    ax = axes[0][0]
    rows = df.sort_values(metric, ascending=False) if x is None else df.sort_values(x)
    labels = [_bar_label(r, x) for _, r in rows.iterrows()]
    ax.barh(labels, rows[metric], color="tab:blue")
    for i, v in enumerate(rows[metric]):
        ax.text(v, i, f" {v:.3g}", va="center", fontsize=8)
    ax.set_xlabel(metric)
    ax.set_title(f"reproduced ({spec.dataset.name})", fontsize=10)
    if pub_metric:
        cells = [c for c in spec.paper.cells if pub_metric in c]
        ax2 = axes[0][1]
        labels = [_bar_label(c, x) for c in cells]
        ax2.barh(labels, [c[pub_metric] for c in cells], color="tab:grey")
        for i, c in enumerate(cells):
            ax2.text(c[pub_metric], i, f" {c[pub_metric]:g}", va="center", fontsize=8)
        ax2.set_xlabel(pub_metric)
        ax2.set_title(f"published ({spec.source.cite()})", fontsize=9)
        ax2.tick_params(axis="y", labelsize=7)
    ax.tick_params(axis="y", labelsize=7)
    f.tight_layout()
    f.savefig(path, dpi=120)
    plt.close(f)
    return path


def _bar_label(row, x) -> str:
    parts = []
    if x is not None and x in row and row[x] is not None:
        parts.append(METHOD_LABELS.get(str(row[x]), str(row[x])) if x == "method" else _label(x, row[x]))
    for key in ("w_dg", "eps_scale"):
        if key != x and key in row and row[key] is not None and not (isinstance(row[key], float) and math.isnan(row[key])):
            parts.append(f"{'w' if key == 'w_dg' else 'b'}={row[key]:g}")
    if "nfe" in row and row["nfe"] is not None:
        parts.append(f"NFE {int(row['nfe'])}")
    return ", ".join(parts)
