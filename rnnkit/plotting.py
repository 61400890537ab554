"""Figures for run folders and reports, drawn without pyplot.

Every plot is a :class:`matplotlib.figure.Figure` of its own, saved as a PNG atomically. No
global state is touched: a notebook user's matplotlib backend and open figures stay as they were.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .io import atomic_write


def new_figure(nrows: int = 1, ncols: int = 1, figsize: tuple[float, float] = (7, 4), dpi: int = 100,
               **subplots: Any):
    """A fresh figure and its axes (``Figure.subplots``), independent of pyplot."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi)
    return fig, fig.subplots(nrows, ncols, **subplots)


def save_figure(fig, path: str | Path) -> None:
    """Lay out a figure and write it as a PNG atomically."""
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))


def plot_curves(records: list[dict[str, Any]], path: str | Path, x: str = "step",
                panels: list[tuple[tuple[str, ...], str, bool]] | None = None, title: str = "") -> None:
    """Line plots from metrics records, one panel per ``(series, ylabel, log_y)``, saved as PNG.

    A series is every record that has both ``x`` and that key; panels with no data are left out.
    """
    panels = panels or [(("train_loss", "val_loss"), "loss", False)]
    data = [[(name, [(r[x], r[name]) for r in records if r.get(name) is not None and x in r])
             for name in series] for series, _, _ in panels]
    shown = [(p, d) for p, d in zip(panels, data, strict=True) if any(pts for _, pts in d)]
    if not shown:
        return
    fig, axes = new_figure(len(shown), 1, figsize=(7, 3.2 * len(shown) + 0.6), dpi=110, sharex=True,
                           squeeze=False)
    for ax, ((_, ylabel, log_y), series) in zip(axes[:, 0], shown, strict=True):
        for name, pts in series:
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, marker="o" if len(pts) < 30 else None, ms=3, lw=1, label=name)
        ax.set_ylabel(ylabel)
        if log_y:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
    axes[-1, 0].set_xlabel(x)
    if title:
        axes[0, 0].set_title(title)
    save_figure(fig, path)
