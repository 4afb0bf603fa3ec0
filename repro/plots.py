"""Figures for reports: headless matplotlib with the suite's seaborn theme."""
from __future__ import annotations


def pyplot(theme: bool = True):
    """matplotlib.pyplot on the Agg backend (no display needed), seaborn's whitegrid theme on."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if theme:
        import seaborn as sns

        sns.set_theme(style="whitegrid")
    return plt


def save(fig, path, dpi: int = 120):
    """Lay out, write and close a figure; returns the path (for a runner's list of figures)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
