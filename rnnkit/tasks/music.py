"""Polyphonic music: a recurrent network over piano-roll frames, trained, evaluated and sampled.

A piece is a piano roll ``v_1 ... v_T``, each frame ``v_t`` a vector of 88 bits (one per piano
key, MIDI 21-108; see :mod:`rnnkit.data.music`). The model factorises the piece over time,

    log p(v_1..T) = sum_t log p(v_t | h_t),      h_t = RNN(v_1, ..., v_{t-1}),

so the recurrent state ``h_t`` summarises the past frames, and an *output* turns it into a
distribution over the 2^88 possible next frames:

- ``output="independent"``: one Bernoulli per key, ``p(v_t | h_t) = prod_i sigmoid(z_i)^v_i
  (1 - sigmoid(z_i))^(1 - v_i)`` with ``z = W h_t + b``. The classic RNN/LSTM/GRU baseline: the
  keys of a frame do not inform each other, so it cannot say "a third above whatever the bass plays".
- ``output="nade"``: the RNN-NADE of Boulanger-Lewandowski, Bengio and Vincent (2012,
  "Modeling temporal dependencies in high-dimensional sequences"). The frame is modelled
  autoregressively across keys, low to high, by a NADE (Larochelle and Murray 2011) whose biases
  come from ``h_t``::

      a_i = c(h_t) + W[:, :i] v_{<i}        (hidden pre-activation of key i, W: H x 88)
      p(v_i = 1 | v_{<i}, h_t) = sigmoid(b_i(h_t) + V_i . sigmoid(a_i))

  ``b(h_t)`` and ``c(h_t)`` are linear in ``h_t``. The likelihood is exact (a product of 88
  conditionals) and all 88 are computed at once with a cumulative sum over keys; sampling goes
  key by key.

The loss and the reported metric are the negative log-likelihood per frame in nats, summed over
the 88 keys and averaged over every frame of every piece (the measure of Boulanger-Lewandowski et
al. 2012 and later papers). Frame-level accuracy (Bay et al. 2009) scores the model's best guess of
each frame given the true past: keys whose probability exceeds 0.5 (independent output), or the
greedy key-by-key choice (NADE: each key takes its more likely value given the choices below it).

Training cuts pieces into chunks of at most ``seq_len`` frames (the state starts at zero in
each; the first input of a chunk is the frame before it, or silence at the start of a piece)
and batches chunks of similar length. Evaluation runs over whole pieces.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import music as md
from ..data.batching import LengthBuckets, length_mask, pad, shard
from ..errors import RnnkitError
from ..io import load_tensors, save_tensors
from ..nn.cells import CELLS
from ..nn.dropout import Dropout
from ..nn.layers import make_layer
from ..nn.regularisation import LayerRegularisation
from ..training.checkpoint import load_checkpoint, run_checkpoint
from ..training.config import TrainConfig
from ..training.fit import fit, prepare_run_folder, removes_failed_start
from ..training.fit import resume as resume_run
from ..training.task import Task, register_task
from ..training.trainer import TrainResult

OUTPUTS = ("independent", "nade")
KEYS = md.N_PITCHES
DATA_FILE = "pieces.safetensors"  # the run's pieces, so a run resumes and evaluates from its folder alone
EVAL_FRAMES = 2048  # frames per chunk when the output is scored: bounds NADE's (frames, 88, H) tensor


@dataclass
class NetConfig(LayerRegularisation):
    """The shape of a music network: everything needed to rebuild it from a run folder (with the
    recurrent layer's regularisers, :class:`rnnkit.nn.regularisation.LayerRegularisation`)."""

    output: str = "nade"
    cell: str = "lstm"
    hidden: int = 256
    layers: int = 1
    nade_hidden: int = 150
    dropout: float = 0.0


class MusicNet(nn.Module):
    """A recurrent layer over frames and an independent or NADE output per frame (see the module docstring)."""

    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.rnn = make_layer(cfg.cell, KEYS, cfg.hidden, cfg.layers, batch_first=True,
                              **cfg.layer_kwargs(cfg.dropout, cfg.layers))
        self.drop = Dropout(cfg.dropout)
        self.bias_v = nn.Linear(cfg.hidden, KEYS)  # independent output: the logits; NADE: b(h_t)
        if cfg.output == "nade":
            self.bias_h = nn.Linear(cfg.hidden, cfg.nade_hidden)  # c(h_t)
            # small weights: each key starts close to its own bias, as in an independent output
            self.W = nn.Parameter(torch.randn(cfg.nade_hidden, KEYS) * 0.01)
            self.V = nn.Parameter(torch.randn(KEYS, cfg.nade_hidden) * 0.01)

    def forward(self, x: Tensor, lengths: Tensor | None = None, state: Any = None) -> tuple[Tensor, Any]:
        """Previous frames ``(B, T, 88)`` -> conditioning ``(B, T, hidden)`` for each next frame, and the state."""
        out, state = self.rnn(x, state, lengths=lengths)
        return self.drop(out), state

    def log_prob(self, cond: Tensor, v: Tensor) -> Tensor:
        """``log p(v | cond)`` per frame ``(N,)``, summed over the keys; ``cond`` ``(N, hidden)``, ``v`` ``(N, 88)``."""
        cond, v = cond.float(), v.float()
        logits = self.bias_v(cond)
        if self.cfg.output == "nade":
            logits = logits + self._nade_logits(self.bias_h(cond), v)
        return -F.binary_cross_entropy_with_logits(logits, v, reduction="none").sum(-1)

    def _nade_logits(self, c: Tensor, v: Tensor) -> Tensor:
        """``V_i . sigmoid(a_i)`` for every key, ``(N, 88)``, computed segment by segment.

        ``a_i`` only changes at keys that are on, so across a frame with ``m`` notes it takes
        ``m + 1`` values: ``A_s = c + sum of W[:, j]`` over the ``s`` lowest notes. Key ``i`` uses
        ``A_s`` with ``s`` the number of notes below it. Two small matrix products over
        ``(N, m + 1)`` segments give the same numbers as the dense ``(N, 88, H)`` form at a
        fraction of its cost, since frames hold few notes.
        """
        below = torch.cumsum(v, 1) - v                                   # (N, 88): notes below each key
        m = int(v.sum(1).max().item()) + 1 if len(v) else 1
        steps = torch.arange(m, device=v.device, dtype=v.dtype).view(1, m, 1)
        chosen = v.unsqueeze(1) * (below.unsqueeze(1) < steps)           # (N, m, 88): the s lowest notes
        a = c.unsqueeze(1) + chosen @ self.W.t()                         # (N, m, H)
        per_segment = torch.sigmoid(a) @ self.V.t()                      # (N, m, 88)
        return per_segment.gather(1, below.long().unsqueeze(1)).squeeze(1)

    def draw(self, cond: Tensor, temperature: float = 1.0, generator: torch.Generator | None = None,
             greedy: bool = False) -> Tensor:
        """One frame per row of ``cond``: sampled (logits divided by ``temperature``) or greedy, ``(N, 88)`` floats."""
        cond = cond.float()
        logits = self.bias_v(cond)

        def pick(z: Tensor) -> Tensor:
            if greedy:
                return (z > 0).float()
            p = torch.sigmoid(z / temperature)
            return torch.bernoulli(p, generator=generator) if generator is not None else torch.bernoulli(p)

        if self.cfg.output == "independent":
            return pick(logits)
        a = self.bias_h(cond)
        frame = torch.zeros_like(logits)
        for i in range(KEYS):  # key by key: each choice moves the hidden units of the keys above it
            frame[:, i] = pick(logits[:, i] + torch.sigmoid(a) @ self.V[i])
            a = a + frame[:, i:i + 1] * self.W[:, i]
        return frame


def previous_frames(roll: Tensor) -> Tensor:
    """The input of each step: the frame before it, silence before the first."""
    return torch.cat([roll.new_zeros(1, KEYS), roll[:-1]])


@torch.no_grad()
def score(net: MusicNet, rolls: Sequence[np.ndarray], device: torch.device | None = None,
          max_frames: int = 16384) -> dict[str, float]:
    """NLL per frame (nats) and frame accuracy of whole pieces, each frame predicted from the true past.

    Returns ``nll`` (summed over keys, averaged over all frames of all pieces), ``frame_accuracy``
    (:func:`rnnkit.data.music.frame_accuracy`, pooled over pieces), ``frames`` and ``pieces``.
    """
    device = device or next(net.parameters()).device
    order = sorted(range(len(rolls)), key=lambda i: len(rolls[i]))
    total, frames = 0.0, 0
    guesses: dict[int, np.ndarray] = {}
    start = 0
    while start < len(order):  # batches of similar length, at most max_frames padded frames each
        end = start + 1
        while end < len(order) and len(rolls[order[end]]) * (end - start + 1) <= max_frames:
            end += 1
        idx = order[start:end]
        start = end
        ys = [torch.as_tensor(rolls[i], dtype=torch.float32) for i in idx]
        x, lengths = pad([previous_frames(y) for y in ys])
        y, _ = pad(ys)
        cond, _ = net(x.to(device), lengths)
        mask = length_mask(lengths, x.shape[1]).to(device)
        cond, y = cond[mask], y.to(device)[mask]
        guess = torch.empty_like(y)
        for s in range(0, len(y), EVAL_FRAMES):
            total -= net.log_prob(cond[s:s + EVAL_FRAMES], y[s:s + EVAL_FRAMES]).sum().item()
            guess[s:s + EVAL_FRAMES] = net.draw(cond[s:s + EVAL_FRAMES], greedy=True)
        frames += len(y)
        guess = guess.cpu().numpy().astype(np.uint8)
        for i, piece in zip(idx, np.split(guess, np.cumsum(lengths.tolist())[:-1]), strict=True):
            guesses[i] = piece
    if not frames:
        raise RnnkitError("no frames to evaluate")
    accuracy = md.frame_accuracy([guesses[i] for i in range(len(rolls))], list(rolls))
    return {"nll": total / frames, "frame_accuracy": accuracy, "frames": frames, "pieces": len(rolls)}


# --- the pieces of a run, kept in its folder -----------------------------------------------------

def save_pieces(path: Path, pieces: dict[str, list[np.ndarray]]) -> None:
    """Every split's rolls, concatenated, with their lengths (uint8 and int64 tensors in one safetensors file)."""
    tensors = {}
    for split, rolls in pieces.items():
        if rolls:
            tensors[f"{split}_rolls"] = torch.from_numpy(np.concatenate(rolls).astype(np.uint8))
            tensors[f"{split}_lengths"] = torch.tensor([len(r) for r in rolls], dtype=torch.int64)
    save_tensors(path, tensors)


def load_pieces(path: Path) -> dict[str, list[np.ndarray]]:
    t, _ = load_tensors(path, "the run's pieces")
    out: dict[str, list[np.ndarray]] = {s: [] for s in md.SPLITS}
    for split in md.SPLITS:
        if f"{split}_rolls" in t:
            rolls = t[f"{split}_rolls"].numpy()
            out[split] = np.split(rolls, np.cumsum(t[f"{split}_lengths"].numpy())[:-1])
    return out


# --- the training task ---------------------------------------------------------------------------

@register_task
class MusicTask(Task):
    """Chunks of training pieces in batches of similar length; the NLL per frame on the validation pieces.

    The batch at any step comes from ``(epoch, index)`` alone (:class:`LengthBuckets`), so a
    resumed run reads the batches an uninterrupted one would. Without validation pieces the
    evaluation is over the training pieces, logged as ``fit_nll``, and the last weights are kept.
    ``augment=k`` moves each training chunk by a random number of semitones in ``[-k, k]``
    (the usual remedy for small sets such as JSB's 229 chorales; a key change keeps the music).
    """

    name, command, unit = "music", "rnnkit music train", "frames"
    metric, loss_label = "val_nll", "NLL per frame (nats)"

    def __init__(self, net: MusicNet, pieces: dict[str, list[np.ndarray]], grid: dict[str, Any],
                 batch_size: int = 16, seq_len: int = 100, seed: int = 0, augment: int = 0) -> None:
        self.model, self.pieces, self.grid = net, pieces, grid
        self.net = net  # the model itself: under data parallelism self.model is its wrapper while training
        self.batch_size, self.seq_len, self.seed, self.augment = batch_size, seq_len, seed, augment
        train = pieces["train"]
        if not train:
            raise RnnkitError("no training pieces")
        self.rolls = [torch.from_numpy(np.ascontiguousarray(r)) for r in train]
        self.chunks = [(i, s, min(s + seq_len, len(r))) for i, r in enumerate(train) for s in range(0, len(r), seq_len)]
        self.buckets = LengthBuckets([e - s for _, s, e in self.chunks], batch_size=batch_size, seed=seed)
        self.has_valid = bool(pieces.get("valid"))
        self.metric = "val_nll" if self.has_valid else "fit_nll"
        self.headline = self.metric
        self.select_best = self.has_valid

    def batches_per_epoch(self) -> int:
        return len(self.buckets)

    def training_loss(self, epoch: int, index: int) -> tuple[Tensor, int]:
        idx = self.buckets.batch(epoch, index)
        idx = idx[shard(np.arange(len(idx)), self.rank, self.world)]
        xs, ys = [], []
        # transposition: each chunk moved by its own number of semitones, drawn from (seed, epoch, index)
        shifts = np.random.default_rng([self.seed, epoch, index]).integers(-self.augment, self.augment + 1, len(idx))
        for i, shift in zip(idx, shifts, strict=True):
            piece, s, e = self.chunks[i]
            roll = self.rolls[piece].float()
            x, y = (roll[s - 1:e - 1] if s else previous_frames(roll[:e])), roll[s:e]
            xs.append(transpose(x, int(shift)) if shift else x)
            ys.append(transpose(y, int(shift)) if shift else y)
        x, lengths = pad(xs)
        y, _ = pad(ys)
        cond, _ = self.model(x.to(self.device), lengths)
        mask = length_mask(lengths, x.shape[1]).to(self.device)
        return -self.net.log_prob(cond[mask], y.to(self.device)[mask]).mean(), int(lengths.sum())

    def evaluate(self) -> dict[str, float]:
        split, prefix = ("valid", "val") if self.has_valid else ("train", "fit")
        r = score(self.model, self.pieces[split], self.device)
        return {f"{prefix}_loss": r["nll"], f"{prefix}_nll": r["nll"], f"{prefix}_frame_acc": r["frame_accuracy"]}

    def config(self) -> dict[str, Any]:
        return {"model": asdict(self.model.cfg), "grid": self.grid, "batch_size": self.batch_size,
                "seq_len": self.seq_len, "seed": self.seed, "augment": self.augment, "pieces": DATA_FILE,
                "select_best": self.select_best}

    @classmethod
    def from_config(cls, config: dict[str, Any], run_dir: Path) -> MusicTask:
        net = MusicNet(NetConfig(**config["model"]))
        return cls(net, load_pieces(run_dir / DATA_FILE), config["grid"], config["batch_size"], config["seq_len"],
                   config["seed"], config.get("augment", 0))


# --- reading data --------------------------------------------------------------------------------

def transpose(roll: Any, semitones: int) -> Any:
    """``roll`` (array or tensor) moved by ``semitones`` (positive: up); notes pushed off the keyboard are dropped."""
    out = roll.new_zeros(roll.shape) if isinstance(roll, Tensor) else np.zeros_like(roll)
    if semitones >= 0:
        out[:, semitones:] = roll[:, :KEYS - semitones]
    else:
        out[:, :semitones] = roll[:, -semitones:]
    return out


def mat_grid(path: Path) -> dict[str, Any]:
    """How a ``.mat`` set's frames sound: the sets record no time step, so it is the documented guess.

    JSB Chorales: quarter notes, stored an octave above sung pitch, so output is moved down 12
    semitones (and MIDI given to a JSB model moved up 12). The others: eighth notes (a guess that
    only sets playback speed), no transposition.
    """
    jsb = path.stem.lower().startswith("jsb")
    spb = 1 if jsb else 2
    return {"source": path.stem, "steps_per_beat": spb, "frame_rate": None, "frame_seconds": 60 / (120 * spb),
            "transpose": -12 if jsb else 0}


def read_pieces(data: Any, *, steps_per_beat: int = 4, frame_rate: float | None = None,
                valid_share: float = 0.1, seed: int = 0) -> tuple[dict[str, list[np.ndarray]], dict[str, Any]]:
    """Train/valid/test rolls and the grid from a ``.mat`` set, MIDI files or folders, or a dict of rolls.

    MIDI pieces are split by piece: ``valid_share`` of them (at least one when there are two or
    more) drawn with ``seed`` for validation, no test split.
    """
    if isinstance(data, dict):
        pieces = {s: [np.asarray(md._as_roll(r, f"{s} roll"), dtype=np.uint8) for r in data.get(s, [])]
                  for s in md.SPLITS}
        grid = {"source": "rolls", "steps_per_beat": steps_per_beat, "frame_rate": frame_rate,
                "frame_seconds": 1 / frame_rate if frame_rate else 60 / (120 * steps_per_beat), "transpose": 0}
        return pieces, grid
    paths = [data] if isinstance(data, (str, os.PathLike)) else list(data)
    if not paths:
        raise RnnkitError("no data: give a .mat set, or MIDI files or folders")
    mats = [Path(p) for p in paths if Path(p).suffix.lower() == ".mat"]
    if mats:
        if len(paths) > 1:
            raise RnnkitError("give one .mat set, or MIDI files and folders, not both")
        return load_mat_pieces(mats[0]), mat_grid(mats[0])
    if not 0 <= valid_share < 1:
        raise RnnkitError(f"valid_share must be in [0, 1), got {valid_share}")
    midis = md.load_midi(paths, steps_per_beat=steps_per_beat, frame_rate=frame_rate)
    rolls = [m.roll for m in midis]
    n_valid = 0 if len(rolls) < 2 or not valid_share else max(1, round(valid_share * len(rolls)))
    order = np.random.default_rng(seed).permutation(len(rolls))
    bpm = float(np.median([m.initial_bpm for m in midis]))
    grid = {"source": "midi", "steps_per_beat": None if frame_rate else steps_per_beat, "frame_rate": frame_rate,
            "frame_seconds": 1 / frame_rate if frame_rate else 60 / (bpm * steps_per_beat), "transpose": 0}
    return {"train": [rolls[i] for i in sorted(order[n_valid:])], "valid": [rolls[i] for i in sorted(order[:n_valid])],
            "test": []}, grid


def load_mat_pieces(path: Path) -> dict[str, list[np.ndarray]]:
    pieces = md.load_mat(path)
    if not pieces["train"]:
        raise RnnkitError(f"{path} holds no training pieces")
    return pieces


# --- the user-facing model -----------------------------------------------------------------------

@dataclass
class Piece:
    """A generated piece: its roll (primer first, ``primer_frames`` long) and how to play it.

    ``roll`` is in the model's own pitch layout; writing applies ``transpose`` (JSB's octave).
    """

    roll: np.ndarray
    primer_frames: int
    steps_per_beat: int
    frame_seconds: float
    transpose: int = 0

    @property
    def sounding(self) -> np.ndarray:
        """The roll at the pitches it is played at."""
        return transpose(self.roll, self.transpose) if self.transpose else self.roll

    def write_midi(self, path: str | Path) -> None:
        md.write_midi(path, self.sounding, frame_seconds=self.frame_seconds, steps_per_beat=self.steps_per_beat)

    def write_wav(self, path: str | Path, synth: str = "auto") -> str:
        """Audio through FluidSynth with a General MIDI soundfont when available, else the built-in synth."""
        return md.write_wav(path, self.sounding, frame_seconds=self.frame_seconds, synth=synth)

    def plot(self, path: str | Path, title: str = "") -> None:
        md.plot_piano_roll(path, self.sounding, boundary=self.primer_frames or None, title=title,
                           frame_seconds=self.frame_seconds)


class MusicModel:
    """A polyphonic music model with the fit/evaluate/generate shape of rnnkit's Forecaster.

    >>> m = MusicModel(output="nade", max_time=600, out="runs/jsb").fit("JSB_Chorales.mat")
    >>> m.evaluate("test")                      # {"nll": ..., "frame_accuracy": ..., ...}
    >>> m.generate(64, temperature=1.0, seed=1).write_midi("song.mid")
    >>> MusicModel.load("runs/jsb")             # a trained run, later

    ``output``: ``"independent"`` (Bernoulli per key) or ``"nade"`` (RNN-NADE, joint over the
    keys of a frame). Training options (``lr``, ``max_time``, ``max_steps``, ``epochs``, ``seed``,
    ...) are those of :class:`rnnkit.training.config.TrainConfig`; with no budget, 300 s.
    """

    def __init__(self, output: str = "nade", cell: str = "lstm", hidden: int = 256, layers: int = 1,
                 nade_hidden: int = 150, dropout: float = 0.0, batch_size: int = 16, seq_len: int = 100,
                 augment: int = 0, out: str | Path | None = None, progress: bool | None = False,
                 weight_drop: float = 0.0, variational_dropout: float = 0.0, **train_options: Any) -> None:
        if output not in OUTPUTS:
            raise RnnkitError(f"output must be one of {', '.join(OUTPUTS)}, not {output!r}")
        if cell not in CELLS:
            raise RnnkitError(f"cell must be one of {', '.join(CELLS)}, not {cell!r}")
        for name, v in (("hidden", hidden), ("layers", layers), ("nade_hidden", nade_hidden),
                        ("batch_size", batch_size), ("seq_len", seq_len)):
            if not (isinstance(v, int) and v > 0):
                raise RnnkitError(f"{name} must be a positive whole number, got {v!r}")
        if not (isinstance(augment, int) and 0 <= augment < 12):
            raise RnnkitError(f"augment must be a whole number of semitones from 0 to 11, got {augment!r}")
        if not 0 <= dropout < 1:
            raise RnnkitError(f"dropout must be in [0, 1), got {dropout}")
        reg = LayerRegularisation.checked(cell, weight_drop=weight_drop, variational_dropout=variational_dropout)
        self.cfg = NetConfig(output, cell, hidden, layers, nade_hidden, dropout, **reg.layer_options())
        self.batch_size, self.seq_len, self.augment = batch_size, seq_len, augment
        self.out, self.progress = out, progress
        self.train_config = TrainConfig(**{"precision": "fp32", **{k: v for k, v in train_options.items()
                                                                   if v is not None}})
        if not self.train_config.has_budget:
            self.train_config.max_time = 300.0
        self.train_config.validate()
        self.net: MusicNet | None = None
        self.grid: dict[str, Any] = {}
        self.run_dir: Path | None = None
        self.result: TrainResult | None = None
        self._pieces: dict[str, list[np.ndarray]] | None = None

    # --- training ------------------------------------------------------------------------------
    @removes_failed_start
    def fit(self, data: Any, *, steps_per_beat: int = 4, frame_rate: float | None = None,
            valid_share: float = 0.1) -> MusicModel:
        """Train on a ``.mat`` set, MIDI files/folders (see :func:`read_pieces`), or ``{"train": rolls, ...}``."""
        if self.out is None:
            raise RnnkitError("give a run folder: MusicModel(out=...)")
        pieces, grid = read_pieces(data, steps_per_beat=steps_per_beat, frame_rate=frame_rate,
                                   valid_share=valid_share, seed=self.train_config.seed)
        torch.manual_seed(self.train_config.seed)
        net = MusicNet(self.cfg)
        task = MusicTask(net, pieces, grid, self.batch_size, self.seq_len, self.train_config.seed, self.augment)
        self.run_dir = prepare_run_folder(self.out, "rnnkit music train --resume")
        save_pieces(self.run_dir / DATA_FILE, pieces)
        self.result = fit(task, self.train_config, self.run_dir, progress=self.progress, new_folder=False)
        return self._take(task)

    @classmethod
    def resume(cls, run: str | Path, progress: bool | None = None, **changes: Any) -> MusicModel:
        """Continue an interrupted :meth:`fit` in its run folder (only the budget and device may change)."""
        task, result = resume_run(run, progress, expect=MusicTask, **changes)
        model = cls._from_task(task, run)
        model.result = result
        return model

    def _take(self, task: MusicTask) -> MusicModel:
        self.net, self.grid, self._pieces = task.model, task.grid, task.pieces
        self.net.eval()
        return self

    @classmethod
    def _from_task(cls, task: MusicTask, run: str | Path) -> MusicModel:
        c = task.model.cfg
        model = cls(c.output, c.cell, c.hidden, c.layers, c.nade_hidden, c.dropout, task.batch_size, task.seq_len,
                    task.augment, out=run, max_steps=1, **c.layer_options())
        model.run_dir = Path(run)
        return model._take(task)

    @classmethod
    def load(cls, run: str | Path, checkpoint: str = "best") -> MusicModel:
        """A trained run: its network with ``best.pt``'s weights (``last.pt``'s if there is no best, or asked for)."""
        run = Path(run)
        try:
            config = json.loads((run / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise RnnkitError(f"{run} is not a run folder (no readable config.json)") from None
        if config.get("task") != MusicTask.name:
            raise RnnkitError(f"{run} is a {config.get('task', 'unknown')} run, not a music one")
        if not config.get("select_best", True):
            checkpoint = "last"  # no validation pieces: "best" would only mean best on the training pieces
        state = load_checkpoint(run_checkpoint(run, checkpoint))
        c = NetConfig(**config["model"])
        net = MusicNet(c)
        net.load_state_dict(state["model"])
        model = cls(c.output, c.cell, c.hidden, c.layers, c.nade_hidden, c.dropout, config["batch_size"],
                    config["seq_len"], config.get("augment", 0), out=run, max_steps=1, **c.layer_options())
        model.net, model.grid, model.run_dir = net.eval(), config["grid"], run
        return model

    def _require(self) -> MusicNet:
        if self.net is None:
            raise RnnkitError("the model is not trained: call fit() or MusicModel.load(run)")
        return self.net

    # --- evaluation ----------------------------------------------------------------------------
    def pieces(self, split: str) -> list[np.ndarray]:
        """The run's own pieces of ``split`` (train, valid or test)."""
        if split not in md.SPLITS:
            raise RnnkitError(f"split must be one of {', '.join(md.SPLITS)}, not {split!r}")
        if self._pieces is None:
            if self.run_dir is None:
                raise RnnkitError("the model has no run folder holding its pieces")
            self._pieces = load_pieces(self.run_dir / DATA_FILE)
        if not self._pieces.get(split):
            raise RnnkitError(f"the run has no {split} pieces; evaluate MIDI files or a .mat set instead")
        return self._pieces[split]

    def read(self, data: Any, split: str = "test") -> list[np.ndarray]:
        """Rolls to evaluate or prime with: a split name, a ``.mat`` set (its ``split``), MIDI paths, or rolls."""
        if isinstance(data, str) and data in md.SPLITS:
            return self.pieces(data)
        paths = [data] if isinstance(data, (str, os.PathLike)) else data
        if isinstance(paths, list) and paths and all(isinstance(p, (str, os.PathLike)) for p in paths):
            if any(Path(p).suffix.lower() == ".mat" for p in paths):
                if len(paths) > 1:
                    raise RnnkitError("give one .mat set, or MIDI files and folders, not both")
                return load_mat_pieces(Path(paths[0]))[split] or self._no(split, paths[0])
            g = self.grid
            midis = md.load_midi(paths, steps_per_beat=g.get("steps_per_beat") or 4, frame_rate=g.get("frame_rate"))
            # MIDI is at sounding pitch; the model's layout is shifted by -transpose (JSB's octave)
            return [transpose(m.roll, -g.get("transpose", 0)) for m in midis]
        return [np.asarray(md._as_roll(r), dtype=np.uint8) for r in data]

    @staticmethod
    def _no(split: str, path: Any) -> list[np.ndarray]:
        raise RnnkitError(f"{path} has no {split} pieces")

    def evaluate(self, data: Any = "test", split: str = "test") -> dict[str, float]:
        """``nll`` (nats per frame, summed over keys), ``frame_accuracy``, ``frames``, ``pieces`` (:func:`score`)."""
        net = self._require()
        rolls = self.read(data, split)
        if not rolls:
            raise RnnkitError("no pieces to evaluate")
        return score(net, rolls)

    # --- generation ----------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, length: int = 64, temperature: float = 1.0, prime: Any = None,
                 seed: int | None = None) -> Piece:
        """Sample ``length`` frames, after the frames of ``prime`` (a MIDI path or a roll) if given.

        ``temperature`` divides every key's logit: below 1 plays safer (fewer, likelier notes),
        above 1 more adventurous.
        """
        net = self._require()
        if not (isinstance(length, int) and length > 0):
            raise RnnkitError(f"length must be a positive number of frames, got {length!r}")
        if not (np.isfinite(temperature) and temperature > 0):
            raise RnnkitError(f"temperature must be positive, got {temperature}")
        device = next(net.parameters()).device
        seed = seed if seed is not None else int(torch.randint(0, 2**31, ()).item())
        g = torch.Generator(device=device).manual_seed(seed)
        primer = np.zeros((0, KEYS), dtype=np.uint8)
        if prime is not None:
            rolls = self.read([prime] if isinstance(prime, (str, os.PathLike)) else [prime])
            primer = rolls[0]
        frames = [torch.zeros(1, KEYS, device=device)]  # the silence before the first frame
        state = None
        if len(primer):
            x = previous_frames(torch.as_tensor(primer, dtype=torch.float32)).to(device)
            _, state = net(x.unsqueeze(0), state=state)
            frames = [torch.as_tensor(primer[-1:], dtype=torch.float32, device=device)]
        out = []
        for _ in range(length):
            cond, state = net(frames[-1].unsqueeze(0), state=state)
            frame = net.draw(cond[0], temperature, g)
            out.append(frame)
            frames = [frame]
        generated = torch.cat(out).cpu().numpy().astype(np.uint8)
        return Piece(np.concatenate([primer, generated]), len(primer), self.grid.get("steps_per_beat") or 4,
                     self.grid.get("frame_seconds", 0.125), self.grid.get("transpose", 0))


__all__ = ["OUTPUTS", "MusicModel", "MusicNet", "MusicTask", "NetConfig", "Piece", "read_pieces", "score",
           "transpose"]
