"""Hidden-state neurons: what single units of a trained character model keep track of.

Karpathy's "The Unreasonable Effectiveness of Recurrent Neural Networks" (2015) showed that,
trained only to predict the next character, some units of an LSTM come to track properties
of the text that the task makes useful: whether we are inside a quotation, how deep inside
brackets, how far along the line. This module records every hidden unit (and LSTM cell
state) over a text, correlates each with simple, causally defined properties of the text,
and renders the text coloured by one unit's activation and by the model's confidence.

Every property is defined for the state *after* reading a character, from the characters
read so far, because that is all the state can know.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import RnnkitError
from ..io import atomic_write_text, output_folder
from ..plotting import new_figure, save_figure
from ..tasks.charlm import CharLM

OPEN, CLOSE = "([{", ")]}"


def _in_quotes(text: str) -> np.ndarray:
    """1 between an opening and a closing double quote (the quotes themselves: after the opening one).

    An escaped quote (``\\"``) and a quote character in single quotes (``'"'``, common in code)
    do not open or close anything: counted, either would flip the rest of a file.
    """
    out, inside = np.zeros(len(text)), False
    for i, ch in enumerate(text):
        if ch == '"' and not (i and text[i - 1] == "\\") and not (0 < i < len(text) - 1 and text[i - 1] == "'"
                                                                 and text[i + 1] == "'"):
            inside = not inside
        out[i] = inside
    return out


def _in_brackets(text: str) -> np.ndarray:
    """1 while at least one (, [ or { is open."""
    out, depth = np.zeros(len(text)), 0
    for i, ch in enumerate(text):
        if ch in OPEN:
            depth += 1
        elif ch in CLOSE:
            depth = max(0, depth - 1)
        out[i] = depth > 0
    return out


def _line_position(text: str) -> np.ndarray:
    """Characters read on the current line (0 right after a newline)."""
    out, col = np.zeros(len(text)), 0
    for i, ch in enumerate(text):
        col = 0 if ch == "\n" else col + 1
        out[i] = col
    return out


def _indent(text: str) -> np.ndarray:
    """Leading spaces (a tab counts 4) of the current line, as far as read."""
    out, indent, leading = np.zeros(len(text)), 0, True
    for i, ch in enumerate(text):
        if ch == "\n":
            indent, leading = 0, True
        elif leading and ch in " \t":
            indent += 4 if ch == "\t" else 1
        else:
            leading = False
        out[i] = indent
    return out


def _word_start(text: str) -> np.ndarray:
    """1 on the first letter of a word."""
    out = np.zeros(len(text))
    prev = " "
    for i, ch in enumerate(text):
        out[i] = ch.isalpha() and not (prev.isalnum() or prev == "_")
        prev = ch
    return out


def _after_newline(text: str) -> np.ndarray:
    """1 on a newline character: the next one starts a line."""
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32) == ord("\n")


PROPERTIES: dict[str, Callable[[str], np.ndarray]] = {
    "in_quotes": _in_quotes,
    "in_brackets": _in_brackets,
    "line_position": _line_position,
    "indent": _indent,
    "word_start": _word_start,
    "after_newline": _after_newline,
}


def text_properties(text: str, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Each property of ``text`` at every character, as a float array of ``len(text)``."""
    names = list(PROPERTIES) if names is None else list(names)
    unknown = [n for n in names if n not in PROPERTIES]
    if unknown:
        raise RnnkitError(f"unknown property {unknown[0]!r}: one of {', '.join(PROPERTIES)}")
    return {n: np.asarray(PROPERTIES[n](text), dtype=np.float64) for n in names}


@dataclass
class Recording:
    """Every unit over a text: ``units[i, u]`` is unit ``names[u]`` after reading ``text[i]``."""

    text: str
    units: np.ndarray          # (N, U) float32
    names: list[str]           # "h0:12" = layer 0 hidden unit 12; "c0:12" its LSTM cell state
    confidence: np.ndarray     # (N,) probability the model gave text[i] before reading it (NaN for i = 0)

    def unit(self, name: str) -> np.ndarray:
        try:
            return self.units[:, self.names.index(name)]
        except ValueError:
            raise RnnkitError(f"no unit {name!r}: units are named like {self.names[0]} "
                              f"(h or c, layer, ':', index), up to {self.names[-1]}") from None


@torch.no_grad()
def record(model: CharLM, text: str) -> Recording:
    """Run ``model`` over ``text`` from a zero state, keeping every unit at every step."""
    vocab = model._require_vocab()
    if len(text) < 2:
        raise RnnkitError("the text must have at least 2 characters")
    ids = torch.from_numpy(vocab.encode(text, strict=False).astype(np.int64)).unsqueeze(0)
    model = model.eval()
    device = next(model.parameters()).device
    un = model.rnn.unroll(model.embed(ids.to(device)))
    blocks, names = [], []
    hidden = model.rnn.hidden_size
    for k in range(model.rnn.num_layers):
        for part in un.names:  # h, and c for an LSTM
            blocks.append(torch.stack(un.part(part, k))[:, 0])
            names += [f"{part}{k}:{i}" for i in range(hidden)]
    logp = torch.log_softmax(model.head(un.output()[:, 0]).float(), dim=-1)  # (N, V): predicts the next char
    conf = torch.full((len(text),), math.nan)
    conf[1:] = logp[:-1].gather(1, ids[0, 1:, None].to(device))[:, 0].exp().cpu()
    return Recording(text, torch.cat(blocks, dim=1).float().cpu().numpy(), names, conf.numpy())


def correlations(units: np.ndarray, prop: np.ndarray) -> np.ndarray:
    """Pearson correlation of each column of ``units`` with ``prop``; 0 where either is constant."""
    u = units - units.mean(axis=0)
    p = prop - prop.mean()
    denom = np.sqrt((u * u).sum(axis=0) * (p * p).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (u * p[:, None]).sum(axis=0) / denom
    return np.where(denom > 0, r, 0.0)


@dataclass
class Match:
    unit: str
    prop: str
    r: float


def top_units(rec: Recording, properties: Sequence[str] | None = None, top: int = 3) -> list[Match]:
    """For each property, the ``top`` units whose activation correlates most (by |r|) with it.

    Properties that are constant on the text (say, no quotes in it) are left out.
    """
    results = []
    for name, values in text_properties(rec.text, properties).items():
        if values.std() == 0:
            continue
        r = correlations(rec.units.astype(np.float64), values)
        for idx in np.argsort(-np.abs(r))[:top]:
            results.append(Match(rec.names[idx], name, float(r[idx])))
    return results


def format_matches(matches: Sequence[Match]) -> str:
    rows = [("unit", "property", "correlation")] + [(m.unit, m.prop, f"{m.r:+.3f}") for m in matches]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# --- rendering -----------------------------------------------------------------------------------

def _unit_colours(values: np.ndarray) -> np.ndarray:
    """RGBA per character: red for positive, blue for negative, strength by |value| (its 99th percentile is full).

    A percentile rather than the maximum, so that a few outliers (cell states are unbounded) do
    not wash out the rest.
    """
    scale = float(np.nanpercentile(np.abs(values), 99)) or 1.0
    v = np.clip(np.nan_to_num(values / scale), -1, 1)
    rgba = np.zeros((len(v), 4))
    rgba[:, 0] = np.where(v > 0, 0.85, 0.15)
    rgba[:, 1] = 0.25
    rgba[:, 2] = np.where(v > 0, 0.15, 0.85)
    rgba[:, 3] = np.abs(v)
    return rgba


def _confidence_colours(conf: np.ndarray) -> np.ndarray:
    """RGBA per character: green when the model was sure of the character, red when it was surprised."""
    c = np.nan_to_num(conf, nan=1.0)
    rgba = np.zeros((len(c), 4))
    rgba[:, 0] = 1 - c
    rgba[:, 1] = 0.75 * c
    rgba[:, 2] = 0.1
    rgba[:, 3] = 0.55
    return rgba


def _html_panel(text: str, rgba: np.ndarray, values: np.ndarray, title: str) -> str:
    parts = [f"<h2>{html.escape(title)}</h2><pre>"]
    for ch, (r, g, b, a), v in zip(text, rgba, values, strict=True):
        shown = "↵\n" if ch == "\n" else html.escape(ch)
        colour = f"rgba({int(r * 255)},{int(g * 255)},{int(b * 255)},{a:.2f})"
        parts.append(f'<span style="background:{colour}" title="{v:.3f}">{shown}</span>')
    parts.append("</pre>")
    return "".join(parts)


def render_html(rec: Recording, unit: str, path: str | Path, label: str = "") -> None:
    """A self-contained HTML page: the text coloured by ``unit``, then by the model's confidence."""
    values = rec.unit(unit)
    page = ["<!doctype html><html><head><meta charset='utf-8'><title>rnnkit neurons</title>",
            "<style>body{font-family:sans-serif;margin:2em} pre{font:13px/1.5 monospace;white-space:pre-wrap}"
            "h2{font-size:15px}</style></head><body>",
            _html_panel(rec.text, _unit_colours(values), values,
                        f"unit {unit}{label}: red positive, blue negative (hover for the value)"),
            _html_panel(rec.text, _confidence_colours(rec.confidence), rec.confidence,
                        "prediction confidence: probability the model gave each character (green sure, red surprised)"),
            "</body></html>"]
    atomic_write_text(path, "".join(page))


def render_png(rec: Recording, unit: str, path: str | Path, max_chars: int = 1200, width: int = 90,
               label: str = "") -> None:
    """The first ``max_chars`` characters as a grid of coloured cells: by ``unit``, and by confidence."""

    text = rec.text[:max_chars]
    cells: list[tuple[int, int]] = []
    row = col = 0
    for ch in text:
        cells.append((row, col))
        col += 1
        if ch == "\n" or col >= width:
            row, col = row + 1, 0
    rows = row + 1
    panels = [(_unit_colours(rec.unit(unit))[: len(text)], f"unit {unit}{label}"),
              (_confidence_colours(rec.confidence)[: len(text)], "prediction confidence (green sure, red surprised)")]
    fig, axes = new_figure(2, 1, figsize=(width * 0.1, 2 * (rows * 0.17 + 0.5)), dpi=90)
    for ax, (rgba, title) in zip(axes, panels, strict=True):
        image = np.ones((rows, width, 4))
        for (r, c), colour in zip(cells, rgba, strict=True):
            image[r, c] = colour
        ax.imshow(image, aspect="auto", interpolation="nearest", extent=(0, width, rows, 0))
        for ch, (r, c) in zip(text, cells, strict=True):
            if ch not in " \n\t":
                ax.text(c + 0.5, r + 0.5, ch, ha="center", va="center", family="monospace", fontsize=7)
        ax.set_title(title, fontsize=9, loc="left")
        ax.set_xticks([])
        ax.set_yticks([])
    save_figure(fig, path)

def default_out(run: str | Path) -> Path:
    """``<run>/neurons``: next to the model it describes."""
    run = Path(run)
    return (run if run.is_dir() else run.parent) / "neurons"


def neurons(run: str | Path, text: str, out: str | Path | None = None, unit: str | None = None,
            properties: Sequence[str] | None = None, top: int = 3, which: str = "best",
            png_chars: int = 1200) -> tuple[Recording, list[Match], str]:
    """Record, correlate and render; the Python face of ``rnnkit neurons``.

    Renders ``unit``, or if none is given the unit best correlated with any of ``properties``,
    into ``out/neurons.html`` and ``out/neurons.png`` (``out`` defaults to ``<run>/neurons``).
    Returns the recording, the matches and the unit rendered.
    """
    if top < 1:
        raise RnnkitError("--top must be at least 1")
    model = CharLM.load(run, which, device="cpu")
    rec = record(model, text)
    matches = top_units(rec, properties, top)
    label = ""
    if unit is None:
        if not matches:
            raise RnnkitError("no property varies over this text; give --unit to render one")
        best = max(matches, key=lambda m: abs(m.r))
        unit, label = best.unit, f" (r = {best.r:+.2f} with {best.prop})"
    else:  # say what the chosen unit tracks best
        values = rec.unit(unit).astype(np.float64)[:, None]
        scores = [(float(correlations(values, p)[0]), name) for name, p in text_properties(text, properties).items()]
        r, prop = max(scores, key=lambda s: abs(s[0]))
        label = f" (r = {r:+.2f} with {prop})"
    with output_folder(Path(out) if out is not None else default_out(run)) as folder:
        render_html(rec, unit, folder / "neurons.html", label)
        render_png(rec, unit, folder / "neurons.png", png_chars, label=label)
    return rec, matches, unit


__all__ = ["PROPERTIES", "Match", "Recording", "correlations", "default_out", "format_matches", "neurons", "record",
           "render_html", "render_png", "text_properties", "top_units"]
