"""Text classification: read a text, decide its label (sentiment, topic, language, any labels).

The network (:class:`ClassifierNet`)::

    x_t = E[token_t]                              word, subword or character embeddings (optionally pretrained)
    h_1..h_T = RNN(x_1..x_T)                      any registered cell, optionally bidirectional
    z = pool(h_1..h_T)                            over each text's own steps only
    p(y | text) = softmax(W dropout(z) + b)

Pooling (``pooling=``):

- ``max``: ``z_d = max_t h_{t,d}``, each feature's strongest evidence anywhere in the text
  (Collobert et al. 2011; Conneau et al. 2017);
- ``mean``: ``z = (1/T) sum_t h_t``;
- ``attention``: ``a_t = softmax_t(v^T tanh(W h_t))``, ``z = sum_t a_t h_t`` (Yang et al. 2016;
  Lin et al. 2017); the weights ``a_t`` are also an explanation of the decision;
- ``last``: the final state of each direction.

Trained by :func:`rnnkit.training.fit.fit` on cross-entropy, picking the checkpoint of best
validation accuracy. :class:`Classifier` is the user-facing API (fit / predict / predict_proba
/ evaluate / explain, the shape of :class:`rnnkit.tasks.forecast.Forecaster`);
:func:`cross_validate` runs it over stratified folds, building each fold's vocabulary from that
fold's training part alone.

Language-model pretraining (Dai and Le 2015, semi-supervised sequence learning): train
rnnkit's character language model on unlabelled text (``rnnkit train TEXT --out LM``), then
``Classifier(level="char", lm="LM")`` starts from its embedding and recurrent weights (the
classifier then takes the LM's cell, size and layers, reading forwards only) and fine-tunes.

An ensemble with NBSVM (``nbsvm=2``, Mesnil et al. 2015): a naive-Bayes-weighted linear SVM on
word n-grams (:class:`~rnnkit.tasks.classify_baselines.NBSVM`, Wang and Manning 2012) is fitted
beside the network on the same training texts, and the two decide together::

    z = (l - mean_c l) / s_net + (f - mean_c f) / s_nbsvm        l: the network's log-probabilities, f: NBSVM's scores
    p(y | text) = softmax(z / T)

Each member's scores are divided by their standard deviation on the validation texts (the NBSVM
that scores them has not seen them; the one kept is refitted on training and validation texts),
so both weigh the same; the temperature ``T`` then minimises the validation log-loss, so the
probabilities stay calibrated. The two err on different texts: the network reads word order and
negation, NBSVM weighs rare but decisive n-grams that the network's embeddings learn too slowly.

Why a decision was made (:meth:`Classifier.explain`): gradient x input (Shrikumar et al. 2016),
each token's contribution to the winning class's logit ``sum_d x_{t,d} * d logit_c / d x_{t,d}``,
or the attention weights with attention pooling.
"""

from __future__ import annotations

import html
import os
import shutil
import tempfile
import weakref
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.batching import LengthBuckets, length_mask, pad, shard
from ..data.labelled_text import MAX_CHARS, LabelledText, Tokenizer, Vocab, folds, holdout, label_ids, load_labelled
from ..errors import RnnkitError
from ..io import atomic_write, atomic_write_text, load_tensors, save_tensors
from ..nn.cells import CELLS
from ..nn.dropout import Dropout
from ..nn.layers import make_layer
from ..nn.regularisation import LayerRegularisation
from ..plotting import new_figure, save_figure
from ..training.checkpoint import load_checkpoint, run_checkpoint
from ..training.config import TrainConfig
from ..training.fit import fit, prepare_run_folder, removes_failed_start
from ..training.fit import resume as resume_run
from ..training.task import Task, register_task
from ..training.trainer import TrainResult, checkpoint_meta
from .classify_baselines import NBSVM

POOLINGS = ("max", "mean", "attention", "last")
LEVELS = ("word", "subword", "char")
VOCAB, DATA, SUBWORD = "vocab.json", "data.safetensors", "subword.model"  # a run resumes from its folder alone
NBSVM_FILE, ENSEMBLE = "nbsvm.safetensors", "ensemble.safetensors"  # with nbsvm=N: the member, its calibration
TRAIN_FIELDS = {f for f in TrainConfig.__dataclass_fields__}
Sources = str | os.PathLike | Sequence[str | os.PathLike]  # a table file, a folder, or LABEL=FILE pairs


# ---------------------------------------------------------------------------- the network


@dataclass
class NetConfig(LayerRegularisation):
    vocab_size: int
    classes: int
    embed: int = 128
    hidden: int = 128
    layers: int = 1
    cell: str = "lstm"
    bidirectional: bool = True
    pooling: str = "max"
    dropout: float = 0.5


class ClassifierNet(nn.Module):
    """Embedding, recurrent encoder, pooling, linear read-out (the module docstring has the equations)."""

    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.embed, padding_idx=Vocab.pad_id)
        # small random vectors as in Kim (2014): torch's N(0, 1) rows are long enough to saturate the gates
        nn.init.uniform_(self.embed.weight, -0.25, 0.25)
        with torch.no_grad():
            self.embed.weight[Vocab.pad_id] = 0
        self.rnn = make_layer(cfg.cell, cfg.embed, cfg.hidden, cfg.layers, batch_first=True,
                              bidirectional=cfg.bidirectional, **cfg.layer_kwargs(cfg.dropout, cfg.layers))
        width = cfg.hidden * (2 if cfg.bidirectional else 1)
        if cfg.pooling == "attention":
            self.attn = nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, 1, bias=False))
        self.drop = Dropout(cfg.dropout)
        self.head = nn.Linear(width, cfg.classes)

    def forward(self, ids: Tensor, lengths: Tensor) -> Tensor:
        """Class logits ``(B, C)`` of the padded token ids ``(B, T)``."""
        return self.from_embeddings(self.embed(ids), lengths)[0]

    def from_embeddings(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor | None]:
        """Logits from embedded tokens ``(B, T, E)``, and the attention weights ``(B, T)`` if pooling by attention."""
        out, state = self.rnn(self.drop(x), lengths=lengths.cpu())
        mask = length_mask(lengths.to(out.device), out.shape[1]).unsqueeze(-1)
        weights = None
        pooling = self.cfg.pooling
        if pooling == "max":
            z = out.masked_fill(~mask, float("-inf")).amax(1)
        elif pooling == "mean":
            z = out.sum(1) / lengths.to(out.device).unsqueeze(1)
        elif pooling == "attention":
            scores = self.attn(out).masked_fill(~mask, float("-inf"))
            weights = scores.softmax(1)
            z = (weights * out).sum(1)
            weights = weights.squeeze(-1)
        else:  # last: the final state of the top layer, both directions
            h = state[0] if isinstance(state, tuple) else state
            d = 2 if self.cfg.bidirectional else 1
            z = torch.cat(list(h[-d:]), dim=-1)
        return self.head(self.drop(z)), weights


def read_vectors(path: str | os.PathLike, vocab: Vocab) -> tuple[np.ndarray, int]:
    """Rows of a GloVe or word2vec text file for the tokens of ``vocab``, and how many were found.

    One token and its numbers a line, separated by spaces; word2vec's first line (``count dim``)
    is skipped. A token missing from the file gets a random row of the same scale (Kim 2014);
    a token is also looked up in lower case, since the vocabulary may be lower-cased.
    """
    path = Path(path)
    if not path.is_file():
        raise RnnkitError(f"no such vectors file: {path}")
    rows: dict[int, np.ndarray] = {}
    dim = None
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            parts = line.rstrip("\n").rstrip().split(" ")
            if n == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                continue
            if len(parts) < 2:
                continue
            token, numbers = parts[0], parts[1:]
            if dim is None:
                dim = len(numbers)
            if len(numbers) != dim:
                raise RnnkitError(f"{path} line {n} has {len(numbers)} numbers, not {dim} like the first vector")
            i = vocab.stoi.get(token, vocab.stoi.get(token.lower()))
            if i is None or i in rows and token != vocab.itos[i]:
                continue
            try:
                rows[i] = np.asarray(numbers, dtype=np.float32)
            except ValueError:
                raise RnnkitError(f"{path} line {n} is not a token followed by numbers") from None
    if dim is None:
        raise RnnkitError(f"{path} holds no vectors")
    if not rows:
        raise RnnkitError(f"none of the {len(vocab):,} vocabulary tokens is in {path}")
    found = np.stack(list(rows.values()))
    matrix = np.random.default_rng(0).uniform(-1, 1, (len(vocab), dim)).astype(np.float32) * found.std()
    for i, row in rows.items():
        matrix[i] = row
    matrix[Vocab.pad_id] = 0
    return matrix, len(rows)


class SubwordTokenizer:
    """Subword pieces from a SentencePiece unigram model (Kudo 2018) trained on the training texts alone.

    Rare and misspelt words split into known pieces instead of becoming ``<unk>``. Stored in the
    run folder as ``subword.model`` beside the vocabulary.
    """

    def __init__(self, proto: bytes, lower: bool = True) -> None:
        import sentencepiece as spm

        self.proto, self.lower = proto, lower
        self._sp = spm.SentencePieceProcessor(model_proto=proto)

    @classmethod
    def train(cls, texts: Sequence[str], size: int, lower: bool = True) -> SubwordTokenizer:
        import io

        import sentencepiece as spm

        model = io.BytesIO()
        # hard_vocab_limit off: a small training set may not hold ``size`` distinct pieces
        try:
            spm.SentencePieceTrainer.train(sentence_iterator=iter([t.lower() if lower else t for t in texts]),
                                           model_writer=model, vocab_size=size, model_type="unigram",
                                           hard_vocab_limit=False, character_coverage=1.0, minloglevel=2,
                                           num_threads=1)
        except RuntimeError as e:  # e.g. fewer pieces asked for than the texts have characters
            raise RnnkitError(f"cannot learn {size} subword pieces: {str(e).splitlines()[0][:200]}") from None
        return cls(model.getvalue(), lower)

    def __call__(self, text: str) -> list[str]:
        return self._sp.encode(text.lower() if self.lower else text, out_type=str)

    def to_dict(self) -> dict[str, Any]:
        return {"level": "subword", "lower": self.lower, "model": SUBWORD}


def load_vocab(run: Path) -> Vocab:
    """A run's vocabulary with its tokeniser (words, characters, or the run's subword model)."""
    import json

    try:
        d = json.loads((run / VOCAB).read_bytes())
    except (OSError, ValueError) as e:
        raise RnnkitError(f"cannot read {run / VOCAB}, the run's vocabulary: {e}") from None
    if d.get("tokenizer", {}).get("level") != "subword":
        return Vocab.from_dict(d)
    try:
        proto = (run / SUBWORD).read_bytes()
    except OSError as e:
        raise RnnkitError(f"cannot read {run / SUBWORD}, the run's subword model: {e.strerror}") from None
    return Vocab([str(t) for t in d["tokens"]], SubwordTokenizer(proto, bool(d["tokenizer"].get("lower", True))))


# ---------------------------------------------------------------------------- the task


def _pack(seqs: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor]:
    """Token id lists as one flat tensor and their offsets (what ``data.safetensors`` holds)."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.int64)
    offsets = torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)])
    flat = torch.tensor([t for s in seqs for t in s], dtype=torch.int64)
    return flat, offsets


def _unpack(flat: Tensor, offsets: Tensor) -> list[Tensor]:
    return [flat[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]


@register_task
class ClassifyTask(Task):
    """Batches of similar-length texts for :func:`rnnkit.training.fit.fit`; evaluation is validation accuracy."""

    name, command, unit = "classify", "rnnkit classify train", "texts"
    metric, higher_is_better, headline = "val_acc", True, "val_acc"

    def __init__(self, model: ClassifierNet, train: tuple[list[Tensor], Tensor], val: tuple[list[Tensor], Tensor],
                 batch_size: int, seed: int, description: dict[str, Any]) -> None:
        self.model, self.description = model, description
        self.train_ids, self.train_labels = train
        self.val_ids, self.val_labels = val
        self.buckets = LengthBuckets([len(s) for s in self.train_ids], batch_size=batch_size, seed=seed)

    def batches_per_epoch(self) -> int:
        return len(self.buckets)

    def training_loss(self, epoch: int, index: int) -> tuple[Tensor, int]:
        idx = self.buckets.batch(epoch, index)
        idx = idx[shard(np.arange(len(idx)), self.rank, self.world)]
        ids, lengths = pad([self.train_ids[i] for i in idx])
        logits = self.model(ids.to(self.device), lengths)
        return F.cross_entropy(logits.float(), self.train_labels[idx].to(self.device)), len(idx)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        logits = batched_logits(self.model, self.val_ids, self.device)
        labels = self.val_labels
        return {"val_loss": F.cross_entropy(logits, labels).item(),
                "val_acc": (logits.argmax(1) == labels).float().mean().item()}

    def save_data(self, run_dir: Path) -> None:
        tensors = {}
        for part, ids, labels in (("train", self.train_ids, self.train_labels), ("val", self.val_ids, self.val_labels)):
            tensors[f"{part}_ids"], tensors[f"{part}_offsets"] = _pack([s.tolist() for s in ids])
            tensors[f"{part}_labels"] = labels
        save_tensors(run_dir / DATA, tensors)

    def config(self) -> dict[str, Any]:
        return self.description

    @classmethod
    def from_config(cls, config: dict[str, Any], run_dir: Path) -> ClassifyTask:
        t, _ = load_tensors(run_dir / DATA, "the run's encoded texts")
        load_vocab(run_dir)  # read after training: a damaged one is refused before the run changes
        parts = {p: (_unpack(t[f"{p}_ids"], t[f"{p}_offsets"]), t[f"{p}_labels"]) for p in ("train", "val")}
        options = config["options"]
        return cls(ClassifierNet(NetConfig(**config["model"])), parts["train"], parts["val"], options["batch_size"],
                   options["seed"], config)


@torch.no_grad()
def batched_logits(model: ClassifierNet, seqs: Sequence[Tensor], device: torch.device,
                   batch_size: int = 256) -> Tensor:
    """Logits of every sequence (on the CPU, in the given order), batched by length so little is padding."""
    was_training = model.training
    model.eval()
    order = np.argsort([len(s) for s in seqs], kind="stable")
    out = torch.empty(len(seqs), model.cfg.classes)
    for start in range(0, len(seqs), batch_size):
        idx = order[start:start + batch_size]
        ids, lengths = pad([seqs[i] for i in idx])
        out[torch.from_numpy(idx)] = model(ids.to(device), lengths).float().cpu()
    model.train(was_training)
    return out


# ---------------------------------------------------------------------------- the NBSVM ensemble


def _centred(scores: Tensor) -> Tensor:
    return scores - scores.mean(1, keepdim=True)


@dataclass
class NBSVMEnsemble:
    """The network and an NBSVM deciding together (the module docstring has the equations)."""

    nbsvm: NBSVM
    net_scale: float
    nbsvm_scale: float
    temperature: float
    val_accuracy: float  # of the two together, on the validation texts

    @classmethod
    def calibrate(cls, nbsvm: NBSVM, net_logits: Tensor, nbsvm_scores: Tensor, labels: Tensor) -> NBSVMEnsemble:
        """Scales from each member's validation scores, then the temperature of least validation log-loss."""
        net, nb = _centred(net_logits.float().log_softmax(1)), _centred(nbsvm_scores.float())
        net_scale, nbsvm_scale = 1 / max(net.std().item(), 1e-6), 1 / max(nb.std().item(), 1e-6)
        z = net * net_scale + nb * nbsvm_scale
        temperatures = torch.logspace(-2, 2, 161)
        losses = [F.cross_entropy(z / t, labels).item() for t in temperatures]
        accuracy = (z.argmax(1) == labels).float().mean().item()
        return cls(nbsvm, net_scale, nbsvm_scale, float(temperatures[int(np.argmin(losses))]), accuracy)

    def combine(self, net_logits: Tensor, texts: Sequence[str]) -> Tensor:
        """Class probabilities of ``texts`` from the network's logits for them and NBSVM's scores."""
        nb = torch.from_numpy(self.nbsvm.decision_function(texts)).float()
        z = _centred(net_logits.float().log_softmax(1)) * self.net_scale + _centred(nb) * self.nbsvm_scale
        return (z / self.temperature).softmax(1)

    def save(self, run: Path, nbsvm_val_scores: Tensor) -> None:
        save_tensors(run / ENSEMBLE, {"nbsvm_val_scores": nbsvm_val_scores},
                     {"net_scale": repr(self.net_scale), "nbsvm_scale": repr(self.nbsvm_scale),
                      "temperature": repr(self.temperature), "val_accuracy": repr(self.val_accuracy)})


# ---------------------------------------------------------------------------- the user-facing API


@dataclass
class Explanation:
    """Why a text got its label: each token's contribution to the predicted class (positive: for it)."""

    tokens: list[str]
    scores: np.ndarray
    label: str
    probability: float
    method: str

    def html(self) -> str:
        """A self-contained HTML page: tokens on a background green for the label, red against it."""
        scale = float(np.abs(self.scores).max()) or 1.0
        spans = []
        for token, s in zip(self.tokens, self.scores, strict=True):
            a = abs(float(s)) / scale
            colour = f"rgba(30,160,60,{a:.2f})" if s > 0 else f"rgba(215,40,40,{a:.2f})"
            spans.append(f'<span style="background:{colour};padding:1px 2px" title="{s:+.4f}">'
                         f"{html.escape(token)}</span>")
        return ("<!doctype html><html><head><meta charset='utf-8'><title>rnnkit classify explain</title>"
                "<style>body{font-family:sans-serif;margin:2em} p{font:15px/2 sans-serif}</style></head><body>"
                f"<h2>{html.escape(self.label)} ({self.probability:.3f}): {html.escape(self.method)}, green for the "
                f"label, red against it (hover for the value)</h2><p>{' '.join(spans)}</p></body></html>")

    def save_html(self, path: str | Path) -> None:
        atomic_write_text(path, self.html())

    def save_png(self, path: str | Path, width: int = 14) -> None:
        """The tokens as coloured boxes, ``width`` to a row."""
        rows = max(1, -(-len(self.tokens) // width))
        fig, ax = new_figure(figsize=(width * 0.75, rows * 0.4 + 0.7), dpi=110)
        scale = float(np.abs(self.scores).max()) or 1.0
        for i, (token, s) in enumerate(zip(self.tokens, self.scores, strict=True)):
            r, c = divmod(i, width)
            colour = (0.12, 0.63, 0.24, abs(s) / scale) if s > 0 else (0.84, 0.16, 0.16, abs(s) / scale)
            ax.text(c + 0.5, r + 0.5, token[:12], ha="center", va="center", fontsize=8,
                    bbox={"boxstyle": "round,pad=0.2", "facecolor": colour, "edgecolor": "none"})
        ax.set_xlim(0, width)
        ax.set_ylim(rows, 0)
        ax.axis("off")
        ax.set_title(f"{self.label} ({self.probability:.3f}): {self.method}", fontsize=9, loc="left")
        save_figure(fig, path)


class Classifier:
    """A recurrent text classifier with the fit / predict / predict_proba / evaluate shape of scikit-learn.

    >>> clf = Classifier(cell="gru", epochs=5).fit(load_labelled(["pos=good.txt", "neg=bad.txt"]))
    >>> clf.predict(["a moving, funny film"]), clf.evaluate(test)["accuracy"]

    Model: ``cell`` (any registered cell), ``level`` (``word`` tokens, ``subword`` pieces of a
    SentencePiece model of ``subword_size`` pieces trained on the training texts, or ``char``),
    ``embed``, ``hidden``, ``layers``, ``bidirectional``, ``pooling`` (``max``, ``mean``,
    ``attention``, ``last``), ``dropout``. Data: ``max_vocab`` ids and ``min_count`` for the
    vocabulary (built from the training texts only), ``max_len`` tokens kept of each text,
    ``vectors`` a GloVe/word2vec text file to initialise the embeddings from (``embed`` then
    follows its dimension), ``lm`` a character language model's run folder (``rnnkit train``) to
    start a ``level="char"`` model from, ``val_fraction`` held out per class when ``fit`` gets no
    validation data. ``nbsvm=N`` adds an NBSVM on word 1..N-grams as a second member that decides
    with the network (the module docstring has how; :meth:`explain` shows the network's part).
    Training options (``lr``, ``epochs``, ``max_time``, ``patience``, ``seed``, ...) are
    :class:`TrainConfig`'s; with no budget, 10 epochs with patience 3, evaluated every epoch.
    ``out``: run folder; a temporary one if not given.
    """

    def __init__(self, cell: str = "lstm", level: str = "word", embed: int = 128, hidden: int = 128, layers: int = 1,
                 bidirectional: bool = True, pooling: str = "max", dropout: float = 0.5, max_vocab: int = 30_000,
                 min_count: int = 1, max_len: int = 400, subword_size: int = 8000, lower: bool = True,
                 vectors: str | Path | None = None,
                 lm: str | Path | None = None, batch_size: int = 32, val_fraction: float = 0.1,
                 out: str | Path | None = None,
                 progress: bool | None = False, weight_drop: float = 0.0, variational_dropout: float = 0.0,
                 nbsvm: int = 0, **train_options: Any) -> None:
        if cell not in CELLS:
            raise RnnkitError(f"cell must be one of {', '.join(CELLS)}, not {cell!r}")
        if pooling not in POOLINGS:
            raise RnnkitError(f"pooling must be one of {', '.join(POOLINGS)}, not {pooling!r}")
        if level not in LEVELS:
            raise RnnkitError(f"level must be one of {', '.join(LEVELS)}, not {level!r}")
        for name, v in (("embed", embed), ("hidden", hidden), ("layers", layers), ("batch_size", batch_size),
                        ("max_len", max_len), ("min_count", min_count), ("subword_size", subword_size)):
            if v <= 0:
                raise RnnkitError(f"{name} must be positive, got {v}")
        if nbsvm < 0:
            raise RnnkitError(f"nbsvm is the longest word n-gram of the NBSVM member (0: none), not {nbsvm}")
        if max_vocab < 3:
            raise RnnkitError(f"max_vocab must be at least 3, got {max_vocab}")
        if not 0 <= dropout < 1 or not 0 < val_fraction < 1:
            raise RnnkitError("dropout must be in [0, 1) and val_fraction in (0, 1)")
        if lm is not None and (level != "char" or vectors is not None):
            raise RnnkitError("starting from a character language model (--lm) needs --level char and no --vectors")
        unknown = set(train_options) - TRAIN_FIELDS
        if unknown:
            raise TypeError(f"unknown options: {', '.join(sorted(unknown))}")
        reg = LayerRegularisation.checked(cell, weight_drop=weight_drop, variational_dropout=variational_dropout)
        self.net_options = {"embed": embed, "hidden": hidden, "layers": layers, "cell": cell,
                            "bidirectional": bidirectional, "pooling": pooling, "dropout": dropout,
                            **reg.layer_options()}
        self.data_options = {"level": level, "lower": lower, "max_vocab": max_vocab, "min_count": min_count,
                             "max_len": max_len, "subword_size": subword_size}
        self.vectors, self.lm, self.batch_size, self.val_fraction = vectors, lm, batch_size, val_fraction
        self.nbsvm_ngram = nbsvm
        self.ensemble: NBSVMEnsemble | None = None
        self.out, self.progress = out, progress
        given = {k: v for k, v in train_options.items() if v is not None}
        self.train_config = TrainConfig(**{"precision": "fp32", "warmup_steps": 50, **given})
        if not self.train_config.has_budget:
            self.train_config.epochs = 10
            if self.train_config.patience is None:
                self.train_config.patience = 3
        self.train_config.validate()
        self._asked = self.train_config
        self.net: ClassifierNet | None = None
        self.vocab: Vocab | None = None
        self.classes: list[str] = []
        self.result: TrainResult | None = None
        self.run_dir: Path | None = None
        self.vectors_found = 0  # vocabulary tokens that got a pretrained vector (or LM embedding)

    # --- fitting ---------------------------------------------------------------------------
    @removes_failed_start
    def fit(self, data: LabelledText | Sources, val: LabelledText | Sources | None = None,
            **load_options: Any) -> Classifier:
        """Train on ``data``; validate on ``val``, or on a stratified ``val_fraction`` of ``data``.

        Either may be :class:`LabelledText` or what :func:`~rnnkit.data.labelled_text.load_labelled`
        reads (a table file, a folder, ``LABEL=FILE`` pairs), with its ``load_options``
        (``encoding``, ``text_col``, ``label_col``, ``max_chars``).
        """
        data = load_labelled(data, **load_options)
        val = None if val is None else load_labelled(val, **{**load_options, "min_classes": 1})
        tc = self.train_config = replace(self._asked)  # a second fit must not inherit the first's eval_every
        if val is None:
            train_idx, val_idx = holdout(data.labels, self.val_fraction, tc.seed)
            data, val = data.subset(train_idx), data.subset(val_idx)
        self.classes = data.classes
        if len(self.classes) < 2:
            raise RnnkitError(f"the training data holds only the label {self.classes[0]!r}; "
                              "a classifier needs at least 2 classes")
        val_y = label_ids(val.labels, self.classes, val.origins)  # a validation label unseen in training: refused
        d = self.data_options
        tokenizer = (SubwordTokenizer.train(data.texts, d["subword_size"], d["lower"]) if d["level"] == "subword"
                     else Tokenizer(d["level"], d["lower"]))
        self.vocab = Vocab.build(data.texts, tokenizer, d["min_count"], d["max_vocab"])
        embedding = None
        if self.vectors is not None:
            embedding, found = read_vectors(self.vectors, self.vocab)
            self.net_options["embed"] = embedding.shape[1]
            self.vectors_found = found
        lm = self._language_model() if self.lm is not None else None
        torch.manual_seed(tc.seed)
        cfg = NetConfig(len(self.vocab), len(self.classes), **self.net_options)
        self.net = ClassifierNet(cfg)
        if embedding is not None:
            self.net.embed.weight.data.copy_(torch.from_numpy(embedding))
        if lm is not None:
            self._start_from(lm)
        train = (self.encode(data.texts), torch.from_numpy(label_ids(data.labels, self.classes)))
        valid = (self.encode(val.texts), torch.from_numpy(val_y))
        task = ClassifyTask(self.net, train, valid, self.batch_size, tc.seed, self._meta())
        if tc.eval_every is None:  # early stopping on validation accuracy wants a look every epoch
            tc.eval_every = task.batches_per_epoch()
        if self.out is None:
            self.run_dir = Path(tempfile.mkdtemp(prefix="rnnkit-classify-"))
            weakref.finalize(self, shutil.rmtree, str(self.run_dir), True)
        else:
            self.run_dir = prepare_run_folder(self.out, "rnnkit classify train --resume")
        if isinstance(tokenizer, SubwordTokenizer):
            atomic_write(self.run_dir / SUBWORD, lambda tmp: Path(tmp).write_bytes(tokenizer.proto))
        self.vocab.save(self.run_dir / VOCAB)
        task.save_data(self.run_dir)
        if self.nbsvm_ngram:
            self._fit_nbsvm(data, val)
        self.result = fit(task, tc, self.run_dir, progress=self.progress, new_folder=False)
        self.net.eval()
        if self.nbsvm_ngram:
            self._calibrate_ensemble(save=True)
        return self

    def _fit_nbsvm(self, train: LabelledText, val: LabelledText) -> None:
        """The NBSVM member, saved in the run folder: its validation scores come from one fitted on the
        training texts alone; the one kept is refitted on the training and validation texts together."""
        options = {"ngram": self.nbsvm_ngram, "lower": self.data_options["lower"]}
        held_out = NBSVM(**options).fit(train.texts, train.labels)
        val_scores = torch.from_numpy(held_out.decision_function(val.texts)).float()
        NBSVM(**options).fit(train.texts + val.texts, train.labels + val.labels).save(self.run_dir / NBSVM_FILE)
        save_tensors(self.run_dir / ENSEMBLE, {"nbsvm_val_scores": val_scores})

    def _calibrate_ensemble(self, save: bool) -> None:
        """Scale the members and find the temperature on the run's validation texts (its folder holds them)."""
        net, run = self._require(), Path(self.run_dir)
        scores, _ = load_tensors(run / ENSEMBLE, "the NBSVM member's validation scores")
        data, _ = load_tensors(run / DATA, "the run's encoded texts")
        logits = batched_logits(net, _unpack(data["val_ids"], data["val_offsets"]), next(net.parameters()).device)
        self.ensemble = NBSVMEnsemble.calibrate(NBSVM.load(run / NBSVM_FILE), logits, scores["nbsvm_val_scores"],
                                                data["val_labels"])
        if save:
            self.ensemble.save(run, scores["nbsvm_val_scores"])

    def _language_model(self) -> nn.Module:
        """The user's character LM; the classifier takes its shape (a resumed run reads only its own folder)."""
        from .charlm import CharLM

        lm = CharLM.load(self.lm, device="cpu")
        c = lm.config
        self.net_options.update(cell=c.cell, hidden=c.hidden, layers=c.layers, embed=c.hidden, bidirectional=False)
        return lm

    def _start_from(self, lm: nn.Module) -> None:
        """Copy the LM's recurrent weights and the embedding row of every character both vocabularies hold."""
        net = self._require()
        net.rnn.load_state_dict(lm.rnn.state_dict())
        found = 0
        with torch.no_grad():
            for i, token in enumerate(self.vocab.itos[2:], start=2):
                j = lm.vocab.index.get(token)
                if j is not None:
                    net.embed.weight[i] = lm.embed.weight[j]
                    found += 1
        self.vectors_found = found

    @classmethod
    def resume(cls, run: str | Path, progress: bool | None = None, **changes: Any) -> Classifier:
        """Continue an interrupted ``fit`` in its run folder (only the budget and device may change)."""
        task, result = resume_run(run, progress, expect=ClassifyTask, **changes)
        self = cls.load(run, weights=task.model.state_dict())
        self.result = result
        if self.nbsvm_ngram:
            self._calibrate_ensemble(save=True)  # the network changed since the last calibration
        return self

    # --- using it --------------------------------------------------------------------------
    def _require(self) -> ClassifierNet:
        if self.net is None or self.vocab is None:
            raise RnnkitError("the classifier is not fitted: call fit() or Classifier.load(run)")
        return self.net

    def encode(self, texts: Sequence[str]) -> list[Tensor]:
        """Token ids of each text, the first ``max_len`` kept; a text with no tokens becomes one ``<unk>``."""
        if self.vocab is None:
            raise RnnkitError("the classifier is not fitted: call fit() or Classifier.load(run)")
        n = self.data_options["max_len"]
        return [torch.tensor(self.vocab.encode(t)[:n] or [Vocab.unk_id], dtype=torch.int64) for t in texts]

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities, one row a text, columns in :attr:`classes` order."""
        net = self._require()
        if isinstance(texts, str) or texts is None:
            raise RnnkitError(f"give a list of texts, not {'one string' if texts is not None else 'None'}")
        texts = list(texts)  # a pandas column or numpy array of texts too
        bad = [t for t in texts if not isinstance(t, str)]
        if bad:
            raise RnnkitError(f"every text must be a string, got {type(bad[0]).__name__}")
        if not len(texts):
            return np.zeros((0, len(self.classes)))
        logits = batched_logits(net, self.encode(texts), next(net.parameters()).device)
        if self.ensemble is not None:
            return self.ensemble.combine(logits, texts).numpy()
        return logits.softmax(1).numpy()

    def predict(self, texts: Sequence[str]) -> list[str]:
        """The most likely label of each text."""
        return [self.classes[i] for i in self.predict_proba(texts).argmax(1)]

    def score(self, texts: Sequence[str], labels: Sequence[str]) -> float:
        return float(np.mean(np.array(self.predict(texts)) == np.array(labels)))

    def evaluate(self, data: LabelledText | Sources, **load_options: Any) -> dict[str, Any]:
        """Accuracy, macro F1, per-class precision/recall/F1/support and the confusion matrix (scikit-learn's).

        ``data`` as for :meth:`fit`. A label the model never saw is an error naming where it is.
        """
        data = load_labelled(data, **{**load_options, "min_classes": 1})
        from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

        y = label_ids(data.labels, self.classes, data.origins)
        pred = self.predict_proba(data.texts).argmax(1)
        labels = list(range(len(self.classes)))
        p, r, f, s = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
        return {"accuracy": float(accuracy_score(y, pred)),
                "macro_f1": float(f1_score(y, pred, labels=labels, average="macro", zero_division=0)),
                "per_class": {c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                                  "support": int(s[i])} for i, c in enumerate(self.classes)},
                "confusion": confusion_matrix(y, pred, labels=labels).tolist(), "classes": list(self.classes),
                "examples": len(y)}

    def explain(self, text: str, method: str | None = None) -> Explanation:
        """Each token's contribution to the predicted label: ``gradient`` x input, or ``attention`` weights
        (the default with attention pooling)."""
        net = self._require()
        method = method or ("attention" if net.cfg.pooling == "attention" else "gradient")
        if method not in ("gradient", "attention"):
            raise RnnkitError(f"explanation method must be 'gradient' or 'attention', not {method!r}")
        if method == "attention" and net.cfg.pooling != "attention":
            raise RnnkitError("attention weights need a model trained with --pooling attention; use gradient")
        if not isinstance(text, str):
            raise RnnkitError(f"explain() takes one text (a string), not {type(text).__name__}")
        if not text.strip():
            raise RnnkitError("nothing to explain: the text is empty")
        ids = self.encode([text])[0]
        device = next(net.parameters()).device
        net.eval()
        x = net.embed(ids.unsqueeze(0).to(device)).detach().requires_grad_(True)
        logits, weights = net.from_embeddings(x, torch.tensor([len(ids)]))
        probs = logits.softmax(1)[0]
        c = int(probs.argmax())
        if method == "gradient":
            logits[0, c].backward()
            scores = (x.grad * x).sum(-1)[0].detach().cpu().numpy()
        else:
            scores = weights[0].detach().cpu().numpy()
        return Explanation(self.vocab.decode(ids.tolist()), scores, self.classes[c], float(probs[c].detach()), method)

    # --- saving and loading ----------------------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        net = self._require()
        return {"task": "classify", "model": asdict(net.cfg), "classes": self.classes, "data": self.data_options,
                "options": {"batch_size": self.batch_size, "seed": self.train_config.seed, "nbsvm": self.nbsvm_ngram}}

    @classmethod
    def load(cls, run: str | Path, weights: dict[str, Tensor] | None = None) -> Classifier:
        """A trained classifier from its run folder (``best.pt``, else ``last.pt``, and ``vocab.json``)."""
        run = Path(run)
        if not run.is_dir():
            raise RnnkitError(f"no run folder at {run}: give the --out folder of `rnnkit classify train`")
        state = load_checkpoint(run_checkpoint(run))
        meta = checkpoint_meta(state)
        if meta.get("task") != "classify":
            raise RnnkitError(f"{run} holds a {meta.get('task')!r} model, not a classifier")
        cfg = NetConfig(**meta["model"])
        net_options = {k: v for k, v in asdict(cfg).items() if k not in ("vocab_size", "classes")}
        self = cls(**net_options, **meta["data"], **meta["options"])
        self.classes, self.vocab, self.run_dir = list(meta["classes"]), load_vocab(run), run
        self.net = ClassifierNet(cfg)
        try:
            self.net.load_state_dict(weights if weights is not None else state["model"])
        except (RuntimeError, KeyError) as e:
            raise RnnkitError(f"checkpoint weights do not fit its model: {str(e).splitlines()[0]}") from None
        self.net.eval()
        if self.nbsvm_ngram:
            self._load_ensemble()
        return self

    def _load_ensemble(self) -> None:
        """The saved NBSVM member and calibration; a run stopped before its calibration is calibrated now."""
        run = Path(self.run_dir)
        _, meta = load_tensors(run / ENSEMBLE, "the ensemble's calibration")
        try:
            scales = [float(meta[k]) for k in ("net_scale", "nbsvm_scale", "temperature", "val_accuracy")]
        except (KeyError, ValueError):
            self._calibrate_ensemble(save=False)
            return
        self.ensemble = NBSVMEnsemble(NBSVM.load(run / NBSVM_FILE), *scales)


def cross_validate(data: LabelledText, k: int = 10, seed: int = 0, report: Any = None,
                   **options: Any) -> np.ndarray:
    """Accuracy of a fresh :class:`Classifier` (``options``) on each of ``k`` stratified, seeded folds.

    Each fold's vocabulary, validation split (for early stopping) and model come from its
    training part alone; ``report(fold, accuracy, classifier)`` is called after each fold.
    """
    scores = []
    for i, (train, test) in enumerate(folds(data.labels, k, seed)):
        clf = Classifier(**{**options, "out": None}).fit(data.subset(train))
        scores.append(clf.score([data.texts[j] for j in test], [data.labels[j] for j in test]))
        if report is not None:
            report(i, scores[-1], clf)
    return np.array(scores)


__all__ = ["MAX_CHARS", "POOLINGS", "Classifier", "ClassifierNet", "ClassifyTask", "Explanation", "NetConfig",
           "cross_validate", "read_vectors"]
