"""Character-level language modeling: the model, its training task, sampling and evaluation."""

from __future__ import annotations

import functools
import hashlib
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.text import (
    UNKNOWN,
    StreamBatcher,
    Vocab,
    default_corpus_files,
    open_tokens,
    resolve_corpus,
    split_tokens,
    tokenize_to_file,
)
from ..errors import RnnkitError, is_whole
from ..hardware import check_fits_in_memory, torch_threads
from ..io import write_json
from ..nn.cells import CELLS, detach_state
from ..nn.dropout import Dropout
from ..nn.init import init_recurrent
from ..nn.layers import make_layer
from ..nn.regularisation import (
    AWDRegularisation,
    activation_regularisation,
    embedding_dropout,
    locked_dropout,
    temporal_activation_regularisation,
    tie_weights,
    tied_state_dict_hooks,
)
from ..nn.stepping import SAMPLE_PRECISIONS, StepGenerator, Stepper
from ..training import distributed
from ..training.allocator import keep_freed_memory
from ..training.checkpoint import load_checkpoint, run_checkpoint
from ..training.config import SEED_MAX, TrainConfig, field_default, resolve_device, resolve_precision
from ..training.fit import fit, prepare_run_folder, removes_failed_start, run_task
from ..training.fit import resume as resume_run
from ..training.task import Task, register_task
from ..training.trainer import TrainResult, autocast, checkpoint_meta

if TYPE_CHECKING:
    from .dynamic_eval import DynamicEval

LN2 = math.log(2)


@dataclass
class ModelConfig(AWDRegularisation):
    """The shape of a character model, and its AWD-LSTM regularisers (all off by default).

    The regularisers' fields come from :class:`rnnkit.nn.regularisation.AWDRegularisation`. The
    embedding is as wide as the hidden layer unless ``embed`` is given (``tie_embeddings`` needs
    them equal). The first layer only ever sees ``vocab_size`` distinct inputs, so its input
    weights times the embedding form a ``vocab_size x gates`` table of rank at most
    ``min(vocab_size, embed)``: an embedding as wide as the vocabulary can express what a wider one
    can, and saves most of the first layer's input product, a quarter of a two-layer LSTM's
    arithmetic. It learns less per step, though (BENCHMARKS.md, "Eighth session"), so the
    default stays the hidden size.
    """

    cell: str = "lstm"
    hidden: int = 512
    embed: int | None = None  # embedding width; None: the hidden size
    layers: int = 2
    dropout: float = 0.0
    init: str = "default"  # see rnnkit.nn.init: default, orthogonal, identity, forget1, chrono
    vocab_size: int = 0

    def validate(self) -> None:
        if self.cell not in CELLS:
            raise RnnkitError(f"--cell must be one of {', '.join(CELLS)}, not {self.cell!r}")
        for name in ("hidden", "layers", "embed"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise RnnkitError(f"--{name} must be positive, got {getattr(self, name)}")
        if self.tie_embeddings and self.embed_width != self.hidden:
            raise RnnkitError(f"--tie-embeddings needs --embed equal to --hidden ({self.hidden}), not {self.embed}")
        if not 0 <= self.dropout < 1:
            raise RnnkitError(f"--dropout must be in [0, 1), got {self.dropout}")
        self.check_awd_options(self.cell)
        # embedding and output layer (a vocabulary of ~100) plus each layer's own parameters
        shapes = CELLS[self.cell].parameter_shapes(self.hidden, self.hidden, True).values()
        n_params = (max(self.vocab_size, 100) * (self.embed_width + self.hidden)
                    + self.layers * sum(math.prod(s) for s in shapes))
        check_fits_in_memory(n_params, f"--hidden {self.hidden} --layers {self.layers}")

    @property
    def embed_width(self) -> int:
        return self.embed or self.hidden


class CharModel(nn.Module):
    """What a trained character model offers, whatever its make-up: :meth:`evaluate`, :meth:`sample`,
    and the training text of the run it was loaded from.

    A subclass gives ``forward(ids (B, T), state) -> (logits (B, T, vocab), state)``, the ``vocab``
    and a :meth:`stepper` for generation: :class:`CharLM` (one network) and
    :class:`rnnkit.tasks.charlm_ensemble.CharLMEnsemble` (several, their probabilities averaged).
    """

    vocab: Vocab | None
    origin: dict[str, Any] | None  # the run folder it was loaded from, its data options and token file

    def stepper(self, dtype: torch.dtype | None, batch: int) -> Stepper:
        """The model prepared for generating ``batch`` texts a character at a time, weights in ``dtype``."""
        raise NotImplementedError

    @classmethod
    def load(cls, run: str | Path, which: str = "best", device: str = "auto") -> CharModel:
        """A trained character model from its run folder (or checkpoint file): a :class:`CharLM`, or the
        :class:`rnnkit.tasks.charlm_ensemble.CharLMEnsemble` of a run that trained several."""
        from .charlm_ensemble import CharLMEnsemble, ensemble_members

        if ensemble_members(run) is not None:
            return CharLMEnsemble.load(run, which, device)
        return CharLM.load(run, which, device)

    def run_tokens(self, part: str = "train") -> tuple[np.ndarray | None, str]:
        """The ``train`` or ``val`` split of the token file of the run this model was loaded from, as it
        trained on them, and where they came from; or None and why there are none (not loaded from a run,
        the token file missing or changed)."""
        origin = self.origin
        if not origin or origin.get("run") is None:
            return None, "the model was not loaded from a run folder"
        run = Path(origin["run"])
        problem = token_file_problem(run, origin.get("tokens"))
        if problem:
            return None, f"{run / TOKENS} {problem}"
        tokens = open_tokens(run / TOKENS, self._require_vocab())
        train, val = split_tokens(tokens, (origin.get("data") or {}).get("val_fraction", 0.1))
        return (train if part == "train" else val), f"{run / TOKENS}"

    # --- using a trained model -----------------------------------------------------------
    def _require_vocab(self) -> Vocab:
        if self.vocab is None:
            raise RnnkitError("this model has no vocabulary; load it from a run")
        return self.vocab

    def evaluate(self, text: str, streams: int = 1, chunk: int = 1024, dynamic: DynamicEval | bool | None = None,
                 train_tokens: np.ndarray | str | None = None, progress: bool | None = False) -> dict[str, Any]:
        """Loss of ``text`` in nats and bits per character, state carried along the text.

        Characters outside the vocabulary map to its unknown character when it has one (a capped
        vocabulary), and count against the model like any other; otherwise the model cannot
        score them at all, and they are left out (``skipped`` says how many).

        ``dynamic`` (``True`` or :class:`rnnkit.tasks.dynamic_eval.DynamicEval` settings) adds
        dynamic evaluation: one stream read segment by segment, the weights of a copy of the
        model adapting as it reads; the result then also has ``dynamic_loss``, ``dynamic_bpc``
        and the settings used (``streams`` and ``chunk`` do not apply). Its ``rms`` method
        takes gradient statistics from the run's training text, or from ``train_tokens``.
        ``progress`` (None: on a terminal) shows its progress. The model's weights are unchanged.
        """
        if not isinstance(text, str):
            raise TypeError(f"evaluate takes the text as one string, got {type(text).__name__}")
        vocab = self._require_vocab()
        skipped = 0
        if UNKNOWN not in vocab.index:
            unknown = vocab.unknown_chars(text)
            if unknown:
                kept = text.translate({ord(c): None for c in unknown})
                skipped, text = len(text) - len(kept), kept
        tokens = vocab.encode(text, strict=False)
        if dynamic is not None and dynamic is not False:
            from .dynamic_eval import DynamicEval, dynamic_evaluate

            if dynamic is not True and not isinstance(dynamic, DynamicEval):
                raise TypeError(f"dynamic takes True or DynamicEval settings (such as DynamicEval(method='rms')), "
                                f"got {dynamic!r}")
            settings = DynamicEval() if dynamic is True else dynamic
            return {**dynamic_evaluate(self, tokens, settings, train_tokens, progress), "skipped": float(skipped)}
        with torch.no_grad():
            loss = stream_loss(self, tokens, streams, chunk, next(self.parameters()).device)
        return {"loss": loss, "bpc": loss / LN2, "chars": float(len(tokens) - 1), "skipped": float(skipped)}

    @torch.no_grad()
    def sample(self, length: int = 500, prime: str = "", temperature: float = 1.0,
               top_k: int | None = None, top_p: float | None = None, greedy: bool = False,
               stop: str | None = None, seed: int | None = None, num_samples: int = 1,
               on_text: Callable[[str], None] | None = None, precision: str = "auto") -> list[str]:
        """Generate ``num_samples`` texts of up to ``length`` characters after ``prime``.

        ``on_text`` receives each new character of the first sample as it is made (streaming).
        The returned texts exclude the prime and end at (and include) ``stop`` if it appears.
        ``precision`` is the weights' type while stepping: ``fp32``, ``bf16`` or ``int8``
        (weight-only, per-row scales: fastest at batch 1); ``auto`` is int8 for fewer than 16
        samples on CPUs with AVX2 or AVX-512, and for more bf16 on CPUs with AVX-512 BF16, else fp32.
        """
        vocab = self._require_vocab()
        if length < 0 or num_samples < 1:
            raise RnnkitError("--length must be >= 0 and --num-samples >= 1")
        if not (0 < temperature < math.inf or greedy):
            raise RnnkitError(f"--temperature must be positive and finite (or use --greedy), got {temperature}")
        if top_k is not None and top_k < 1:
            raise RnnkitError("--top-k must be >= 1")
        if seed is not None and (not is_whole(seed) or not 0 <= seed <= SEED_MAX):
            raise RnnkitError(f"--seed must be a whole number in 0..{SEED_MAX}, got {seed!r}")
        if top_p is not None and not 0 < top_p <= 1:
            raise RnnkitError("--top-p must be in (0, 1]")
        missing = vocab.unknown_chars(prime)
        if missing:
            raise RnnkitError("--prime has characters not in the model's vocabulary: "
                              + ", ".join(repr(c) for c in missing))
        if precision not in ("auto", *SAMPLE_PRECISIONS):
            raise RnnkitError(f"--precision must be auto, {', '.join(SAMPLE_PRECISIONS)}, not {precision!r}")
        dtype = None if precision == "auto" else SAMPLE_PRECISIONS[precision]
        gen = self.stepper(dtype, num_samples)
        g = torch.Generator(device="cpu")
        g.manual_seed(seed if seed is not None else int(torch.randint(0, 2**31, (1,)).item()))
        return gen.generate(vocab, prime, length, num_samples, g, temperature, top_k, top_p,
                            greedy, stop, on_text)


class CharLM(CharModel):
    """Embedding -> stacked recurrent layer -> dropout -> linear over the vocabulary.

    The AWD-LSTM regularisers (Merity et al. 2017) are options of :class:`ModelConfig`, all
    off by default: embedding dropout, variational dropout on the embedding output, between
    layers and on the last layer's output, weight drop on the recurrent matrices, AR and TAR
    (added to the training loss by :class:`CharLMTask`) and tied input and output embeddings.

    ``CharLM.load(run_dir)`` gives a trained model with its vocabulary, ready for
    :meth:`sample` and :meth:`evaluate`.
    """

    def __init__(self, config: ModelConfig, vocab: Vocab | None = None) -> None:
        super().__init__()
        config.validate()
        self.config, self.vocab = config, vocab
        self.origin: dict[str, Any] | None = None  # the run folder it was loaded from (see load)
        self.embed = nn.Embedding(config.vocab_size, config.embed_width)
        self.rnn = make_layer(config.cell, config.embed_width, config.hidden, config.layers, batch_first=True,
                              **config.layer_kwargs(config.dropout, config.layers))
        init_recurrent(self.rnn, config.init)
        self.drop = Dropout(config.dropout)
        self.head = nn.Linear(config.hidden, config.vocab_size)
        if config.tie_embeddings:
            tie_weights(self.embed, self.head)
            tied_state_dict_hooks(self, "embed.weight", "head.weight")

    def forward(self, ids: Tensor, state=None, outputs: bool = False) -> tuple[Any, ...]:
        """``ids`` (B, T) -> logits (B, T, vocab) and the final recurrent state.

        The work runs time-major, as the recurrent kernels want it: the embedding is looked up
        in (T, B) order and the layer gets a batch-first view of it, so no (B, T) <-> (T, B)
        copies are made on the way in or out, nor in backward. The logits are a (B, T) view of
        time-major memory. With ``outputs``, a third item: the last layer's output (T, B, H)
        before and after its dropout, for AR and TAR.
        """
        c, training = self.config, self.training
        if training and c.embedding_dropout > 0:
            x = F.embedding(ids.t(), embedding_dropout(self.embed.weight, c.embedding_dropout))
        else:
            x = self.embed(ids.t())
        x = locked_dropout(x, c.input_dropout, training)
        out, state = self.rnn(x.transpose(0, 1), state)
        raw = out.transpose(0, 1)
        dropped = locked_dropout(raw, c.output_dropout, training) if c.output_dropout > 0 else self.drop(raw)
        logits = self.head(dropped).transpose(0, 1)
        return (logits, state, (raw, dropped)) if outputs else (logits, state)

    def stepper(self, dtype: torch.dtype | None, batch: int) -> StepGenerator:
        return StepGenerator(self.embed, self.rnn, self.head, dtype, batch)

    # --- loading -------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(cls, state: dict[str, Any]) -> CharLM:
        meta = checkpoint_meta(state)
        if meta.get("task") != "charlm":
            raise RnnkitError(f"checkpoint is for task {meta.get('task')!r}, not a character model")
        model = cls(ModelConfig(**meta["model"]), Vocab(meta["vocab"]))
        try:
            model.load_state_dict(state["model"])
        except (RuntimeError, KeyError) as e:
            raise RnnkitError(f"checkpoint weights do not fit its model: {str(e).splitlines()[0]}") from None
        return model.eval()

    @classmethod
    def load(cls, run: str | Path, which: str = "best", device: str = "auto") -> CharLM:
        """Load a run folder's ``best`` (or ``last``) checkpoint, or a checkpoint file itself.

        The model remembers its run folder (the checkpoint's folder), where dynamic evaluation
        finds the training text for its gradient statistics.
        """
        from .charlm_ensemble import ensemble_members

        folders = ensemble_members(run)
        if folders:
            raise RnnkitError(f"{run} is an ensemble of {len(folders)} character models: give one of them "
                              f"({folders[0]}), or load the ensemble with CharModel.load")
        path = run_checkpoint(run, which)
        state = load_checkpoint(path)
        model = cls.from_checkpoint(state).to(resolve_device(device))
        meta = checkpoint_meta(state)
        model.origin = {"run": path.parent, "data": meta.get("data"), "tokens": meta.get("tokens")}
        return model


VAL_STREAMS, VAL_CHUNK = 64, 512  # how training scores the validation text: streams read in parallel, chunk length


def stream_loss(model: CharModel, tokens: np.ndarray, streams: int, chunk: int,
                device: torch.device) -> float:
    """Mean next-character loss (nats) over ``tokens`` cut into ``streams`` contiguous streams."""
    if streams < 1 or chunk < 1:
        raise RnnkitError(f"streams and chunk must be at least 1, got {streams} and {chunk}")
    streams = max(1, min(streams, (len(tokens) - 1) // 2))
    length = (len(tokens) - 1) // streams
    if length < 1:
        raise RnnkitError("text too short to evaluate: need at least 2 characters")
    ids = torch.from_numpy(np.ascontiguousarray(tokens[: streams * length + 1]).astype(np.int64))
    x = ids[:-1].view(streams, length).to(device)
    y = ids[1:].view(streams, length).to(device)
    total, state = 0.0, None
    for start in range(0, length, chunk):
        logits, state = model(x[:, start:start + chunk], state)
        total += F.cross_entropy(logits.float().flatten(0, 1), y[:, start:start + chunk].flatten(),
                                 reduction="sum").item()
    return total / y.numel()


@register_task
class CharLMTask(Task):
    """Next-character prediction over contiguous streams with the hidden state carried (TBPTT)."""

    name, command, unit = "charlm", "rnnkit train", "chars"
    metric, headline, loss_label = "val_loss", "val_bpc", "loss (nats)"
    # tuned with AdamW's decay on every parameter (BENCHMARKS.md, recommended defaults)
    decay_everything = True

    def __init__(self, model: CharLM, train_tokens: np.ndarray, val_tokens: np.ndarray,
                 batch_size: int, seq_len: int, device: torch.device | None = None,
                 data_config: DataConfig | None = None) -> None:
        self.model, self.device = model, device or torch.device("cpu")
        self.ar, self.tar = model.config.ar, model.config.tar  # self.model may become a DDP wrapper
        rank, world = distributed.rank(), distributed.world_size()
        if batch_size % world:
            raise RnnkitError(f"--batch-size {batch_size} must be divisible by the number of processes ({world})")
        share = batch_size // world  # each process trains its own contiguous streams
        self.batcher = StreamBatcher(train_tokens, batch_size, seq_len, range(rank * share, (rank + 1) * share))
        self.val_tokens, self.batch_size = val_tokens, batch_size
        self.data_config = data_config
        self.token_file: dict[str, Any] | None = None  # size and checksum of tokens.bin, recorded in the run
        self.state: Any = None

    def batches_per_epoch(self) -> int:
        return len(self.batcher)

    def training_loss(self, epoch: int, index: int) -> tuple[Tensor, int]:
        if index == 0:
            self.state = None  # each epoch starts the streams afresh
        x, y = (t.to(self.device, non_blocking=True) for t in self.batcher.batch(index))
        regularised = self.ar > 0 or self.tar > 0
        logits, state, *hidden = self.model(x, self.state, outputs=True) if regularised else self.model(x, self.state)
        self.state = detach_state(state)
        # In the logits' time-major memory order, where flattening is free.
        loss = F.cross_entropy(logits.transpose(0, 1).float().flatten(0, 1), y.t().flatten())
        if regularised:  # AWD-LSTM's AR and TAR on the last layer's output, time-major (T, B, H)
            raw, dropped = hidden[0]
            if self.ar > 0:
                loss = loss + activation_regularisation(dropped, self.ar)
            if self.tar > 0:
                loss = loss + temporal_activation_regularisation(raw, self.tar)
        return loss, y.numel()

    def evaluate(self) -> dict[str, float]:
        loss = stream_loss(self.model, self.val_tokens, VAL_STREAMS, VAL_CHUNK, self.device)
        return {"val_loss": loss, "val_bpc": loss / LN2}

    def state_dict(self) -> dict[str, Any]:
        if self.state is None:
            return {"hidden": []}
        return {"hidden": list(self.state) if isinstance(self.state, tuple) else [self.state]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        hidden = [h.to(self.device) for h in state["hidden"]]
        self.state = None if not hidden else (tuple(hidden) if len(hidden) == 2 else hidden[0])

    def config(self) -> dict[str, Any]:
        if self.data_config is None:
            return super().config()
        return {"model": asdict(self.model.config), "data": asdict(self.data_config),
                "vocab": self.model._require_vocab().chars, "tokens": self.token_file}

    @classmethod
    def from_config(cls, config: dict[str, Any], run_dir: Path) -> CharLMTask:
        model_cfg, data_cfg = ModelConfig(**config["model"]), DataConfig(**config["data"])
        vocab = Vocab(config["vocab"])
        problem = token_file_problem(run_dir, config.get("tokens"))
        if problem:
            raise RnnkitError(f"{run_dir / TOKENS} {problem}; give the corpus again to rebuild it: "
                              f"rnnkit train CORPUS --resume {run_dir}")
        return _make_task(open_tokens(run_dir / TOKENS, vocab), vocab, model_cfg, data_cfg, config.get("tokens"))


def token_file_record(path: Path, files: Sequence[Path]) -> dict[str, Any]:
    """Size and checksum of the token file, and the corpus files it was made from (absolute paths)."""
    digest = hashlib.blake2b(digest_size=16)
    with path.open("rb") as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
    return {"bytes": path.stat().st_size, "blake2b": digest.hexdigest(), "files": [str(p.resolve()) for p in files]}


def token_file_problem(run_dir: Path, record: dict[str, Any] | None) -> str | None:
    """What is wrong with a run's token file (missing, resized, changed), or None."""
    path = run_dir / TOKENS
    if not path.is_file():
        return "is missing"
    if record is None:
        return None  # a run from before the file was recorded
    if path.stat().st_size != record["bytes"]:
        return f"has {path.stat().st_size:,} bytes, not the run's {record['bytes']:,}"
    if token_file_record(path, [])["blake2b"] != record["blake2b"]:
        return "is damaged (its checksum differs from the run's)"
    return None


def _make_task(tokens: np.ndarray, vocab: Vocab, model_cfg: ModelConfig, data_cfg: DataConfig,
               token_file: dict[str, Any] | None = None) -> CharLMTask:
    train_tokens, val_tokens = split_tokens(tokens, data_cfg.val_fraction)
    if len(val_tokens) < 2:
        raise RnnkitError("validation split too short: give more text or a larger --val-fraction")
    model_cfg.vocab_size = len(vocab)
    task = CharLMTask(CharLM(model_cfg, vocab), train_tokens, val_tokens, data_cfg.batch_size, data_cfg.seq_len,
                      data_config=data_cfg)
    task.token_file = token_file
    return task


@dataclass
class DataConfig:
    """Where the text comes from and how it is cut."""

    corpus: list[str] | None = None   # files, directories or globs; None: the built-in default
    encoding: str = "utf-8"
    val_fraction: float = 0.1
    seq_len: int = 32
    batch_size: int = 64
    max_vocab: int | None = None

    def validate(self) -> None:
        for name in ("seq_len", "batch_size"):
            if getattr(self, name) <= 0:
                raise RnnkitError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if not 0 < self.val_fraction < 1:
            raise RnnkitError(f"--val-fraction must be in (0, 1), got {self.val_fraction}")
        if self.max_vocab is not None and self.max_vocab < 2:
            raise RnnkitError("--max-vocab must be at least 2")


DEFAULT_MAX_TIME = 120.0  # seconds, when no budget is given
# A wider model beats a narrower, faster one once its budget lets it read about as many characters
# as it has recurrent weights; below that the budget buys too little compute for it. BENCHMARKS.md
# ("Defaults that fit the machine") has the side-by-side runs that place the ratio between the
# wide models' losses and wins, on AMX and AVX2 CPUs, at 60 s and 300 s.
CHARS_PER_WEIGHT = 1.0
# seconds: without a speed measurement, up to this a smaller model learns more (where the AMX
# machine the defaults were tuned on has its 2x512 LSTM read enough_chars(512))
SHORT_BUDGET = 180.0
SMALLER_HIDDEN = (256, 128)  # the short-budget model's sizes, tried in turn on slower machines


def enough_chars(hidden: int, layers: int = 2) -> float:
    """Characters a model of this width must read within its budget to beat a narrower one.

    Counted as an LSTM's recurrent weights whatever the cell: a minGRU, with half of them, still
    needs this much text (BENCHMARKS.md, "Cells against each other").
    """
    return CHARS_PER_WEIGHT * layers * 4 * hidden * (hidden + hidden)  # 4 gates over input and state a layer


def recommended(max_time: float | None, chars_per_s: Callable[[int, str], float] | None = None,
                hidden: int | None = None, cell: str | None = None) -> dict[str, Any]:
    """The settings ``rnnkit train`` uses for options not given, by the compute the budget buys.

    Tuned for validation loss per CPU second on tiny-shakespeare (BENCHMARKS.md). When the
    budget lets the wide model read enough text (:func:`enough_chars`; always under a step or
    epoch budget) a 2x512 LSTM with dropout wins, evaluated with a moving average of its weights.
    Otherwise a smaller model wins: it reads many more characters a second. Its cell is the one
    :func:`default_cell` picks for this machine. Every LSTM takes AWD-LSTM's activation
    regularisers (AR 2, TAR 1; the wide model whatever its cell), which the GRU learns slower with
    (BENCHMARKS.md). All overfit the 1 MB text within minutes; AdamW's weight decay (0.3, 0.2 for
    the wide model at its higher learning rate) is the regulariser that costs no speed.
    The learning rate decays all the way to zero (``min_lr_ratio`` 0): the last, smallest steps
    gained in every replayed run (BENCHMARKS.md).

    ``chars_per_s(hidden, cell)`` measures this machine's training speed for a model of that width
    and cell (:func:`training_speed`), so a slow CPU (AVX2 only, fp32) or a busy one gets the model its
    budget can train; without it the budget alone decides (:data:`SHORT_BUDGET`). A width given
    (``hidden``) takes that width's settings whatever the budget: the wide model's from 512 up, the
    smaller models' below, so a 2x256 trains alike whether the rule or the user picked it; a cell
    given (``cell``) is measured and set up in place of the default one.
    """
    def speed(width: int) -> float:
        return chars_per_s(width, cell or default_cell(width))

    if hidden is None:
        if max_time is None:
            hidden = 512
        elif chars_per_s is None:
            hidden = 512 if max_time > SHORT_BUDGET else SMALLER_HIDDEN[0]
        elif max_time * speed(512) >= enough_chars(512):
            hidden = 512
        else:
            hidden = next((h for h in SMALLER_HIDDEN if max_time * speed(h) >= enough_chars(h)), SMALLER_HIDDEN[-1])
    cell = cell or default_cell(hidden, chars_per_s)
    common = {"cell": cell, "layers": 2, "hidden": hidden, "batch_size": 64, "seq_len": 32,
              "weight_decay": 0.3, "min_lr_ratio": 0.0}
    awd = {"ar": 2.0, "tar": 1.0}
    # the multiplicative LSTM's gradients explode at the other cells' rates (1e-2 at 256 units, 6e-3 at
    # 512) within the first few hundred steps, in fp32 as in bf16; it trains at half of them
    # (BENCHMARKS.md, "Fifteenth session" and "Sixteenth session")
    rate = 0.5 if cell == "mlstm" else 1.0
    if hidden >= 512:
        # AdamW decays a weight by lr x weight_decay a step: 0.2 at 6e-3 keeps the step's decay
        # that 0.3 gave at the wide model's earlier rate of 4e-3 (BENCHMARKS.md, "Eleventh session")
        return {**common, "lr": rate * 6e-3, "weight_decay": 0.2, "dropout": 0.2, "ema": 0.998, **awd}
    return {**common, "lr": rate * 1e-2, "dropout": 0.0, **(awd if cell == "lstm" else {})}


# The GRU learns more per character than a plain LSTM at the smaller widths and won wherever it
# trained faster than the LSTM (AVX2 and AVX-512 BF16 CPUs, a slow AMX one); where oneDNN's bf16
# LSTM runs as fast as the GRU or faster (the fast AMX CPU, one thread or two) the LSTM with AR and
# TAR won (BENCHMARKS.md, "Fifteenth session"). Near 1.0 the pick follows the probe's noise; its median
# of several steps keeps a moment of other load from deciding it (BENCHMARKS.md, "Seventeenth session").
LSTM_OVER_GRU_SPEED = 1.0


def default_cell(hidden: int, chars_per_s: Callable[[int, str], float] | None = None) -> str:
    """The recommended cell at this width: the LSTM for the wide model; below 512 units the GRU,
    unless this machine trains the LSTM at least as fast (:data:`LSTM_OVER_GRU_SPEED`;
    ``chars_per_s(hidden, cell)``, :func:`training_speed`)."""
    if hidden >= 512:
        return "lstm"
    if chars_per_s is not None and chars_per_s(hidden, "lstm") >= LSTM_OVER_GRU_SPEED * chars_per_s(hidden, "gru"):
        return "lstm"
    return "gru"


def training_speed(options: dict[str, Any], hidden: int, steps: int = 5) -> float:
    """Characters a second this machine trains a model of width ``hidden`` at, with the given options.

    A throwaway model of the options' cell (else the width's :func:`default_cell`), depth, embedding, batch,
    window, device and precision takes one warm-up step and ``steps`` timed ones (forward,
    backward, fused AdamW) on random text; the median step counts, so a moment of other load on the
    machine does not decide the cell or the width. The process's allocator is set as the trainer sets it
    (without that, each step's page faults slow oneDNN's LSTM more than the GRU: BENCHMARKS.md,
    "Fifteenth session").
    """
    defaults = recommended(None)
    device = resolve_device(options.get("device", "auto"))
    if device.type == "cpu":
        keep_freed_memory()
    cell, layers = options.get("cell", default_cell(hidden)), options.get("layers", defaults["layers"])
    batch, seq = options.get("batch_size", defaults["batch_size"]), options.get("seq_len", defaults["seq_len"])
    precision = resolve_precision(options.get("precision", "auto"), device)
    model = CharLM(ModelConfig(cell=cell, hidden=hidden, layers=layers, embed=options.get("embed"),
                               vocab_size=96)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), fused=True)
    ids = torch.randint(0, 96, (batch, seq + 1), device=device)
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    times = []
    for step in range(steps + 1):
        start = time.perf_counter()
        with autocast(device, precision):
            logits, _ = model(ids[:, :-1])
            loss = F.cross_entropy(logits.float().reshape(-1, 96), ids[:, 1:].reshape(-1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step:  # the first step builds the kernels' plans
            times.append(time.perf_counter() - start)
    return batch * seq / statistics.median(times)


TOKENS = "tokens.bin"  # the corpus as token ids, memory-mapped during training


def corpus_files(corpus: Sequence[str] | None) -> list[Path]:
    return resolve_corpus(corpus) if corpus else default_corpus_files()


def _split(options: dict[str, Any]) -> tuple[ModelConfig, DataConfig, TrainConfig]:
    parts = []
    for cls in (ModelConfig, DataConfig, TrainConfig):
        names = {f.name for f in fields(cls)}
        parts.append(cls(**{k: v for k, v in options.items() if k in names and v is not None}))
    unknown = set(options) - {f.name for cls in (ModelConfig, DataConfig, TrainConfig) for f in fields(cls)}
    if unknown:
        raise TypeError(f"unknown options: {', '.join(sorted(unknown))}")
    return parts[0], parts[1], parts[2]


@removes_failed_start
def train(corpus: Sequence[str] | str | None = None, out: str | Path | None = None,
          resume: str | Path | None = None, progress: bool | None = None, members: int | None = None,
          **options: Any) -> tuple[CharModel, TrainResult]:
    """Train a character model; the Python face of ``rnnkit train``.

    ``options`` are the fields of :class:`ModelConfig`, :class:`DataConfig` and
    :class:`rnnkit.training.config.TrainConfig` (``cell``, ``hidden``, ``seq_len``, ``lr``,
    ``max_time``, ...). With ``resume``, training continues a run exactly where it stopped;
    only the budget (and device) may be changed then. ``members`` > 1 trains that many models side
    by side, their probabilities averaged (:mod:`rnnkit.tasks.charlm_ensemble`); the model returned
    is then a :class:`rnnkit.tasks.charlm_ensemble.CharLMEnsemble`.
    """
    from .charlm_ensemble import ensemble_members, resume_ensemble, train_ensemble

    distributed.setup()  # joins the process group when started by torchrun; else nothing
    if isinstance(corpus, (str, Path)):
        corpus = [str(corpus)]
    elif corpus is not None:
        corpus = list(corpus)
        if not corpus:
            raise RnnkitError("no corpus files given: name some, or leave corpus out for the built-in text")
    if members is not None and (not is_whole(members) or members < 1):
        raise RnnkitError(f"--members must be a whole number of at least 1, got {members!r}")
    if resume is not None:
        folders = ensemble_members(resume)
        trained = len(folders) if folders is not None else 1
        if members is not None and members != trained:
            raise RnnkitError(f"--resume: --members {members} conflicts with the run's {trained}; "
                              "only the budget and device may change")
        if folders is not None:
            return resume_ensemble(Path(resume), corpus, progress, options)
        return _resume(Path(resume), corpus, progress, options)
    if out is None:
        raise RnnkitError("give an output run folder (--out)")
    if all(options.get(k) is None for k in ("max_time", "max_steps", "epochs")):
        options["max_time"] = DEFAULT_MAX_TIME
    given = {k: v for k, v in options.items() if v is not None}
    if "dropout" not in given and (given.get("variational_dropout") or given.get("output_dropout")):
        given["dropout"] = 0.0  # the variational kinds replace the recommended per-step dropout
    budget = given.get("max_time") if "max_steps" not in given and "epochs" not in given else None
    model_cfg, data_cfg, train_cfg = checked_configs(
        corpus, {**recommended(budget, hidden=given.get("hidden"), cell=given.get("cell")), **given})
    files = corpus_files(data_cfg.corpus)
    train_chars = training_chars(files, data_cfg.val_fraction)
    if members is None and budget is not None and "hidden" not in given and not distributed.active():
        # two models where the budget buys them, their width and cell picked for half the threads
        pick = ensemble_pick(given, budget, train_chars)
        if pick is not None:
            members = pick.pop("members")
            given = {**given, **pick}
    if (members or 1) > 1:
        if distributed.active():
            raise RnnkitError("--members trains each model in a process of its own: run it without torchrun")
        return train_ensemble(corpus, out, int(members), progress, given, budget, train_chars)
    out = prepare_run_folder(out, "rnnkit train --resume")
    vocab, tokens = _tokenize_once(files, out / TOKENS, data_cfg.encoding, data_cfg.max_vocab, None)
    # the width (and the smaller models' cell) by what the budget buys on this machine, measured once
    # the options and the text are known good, unless the width is given; one process under torchrun
    # could measure differently from another, so there the budget alone decides
    if (budget is not None and "hidden" not in given and not distributed.active()
            and len(tokens) > data_cfg.batch_size * data_cfg.seq_len):
        model_cfg, data_cfg, train_cfg = checked_configs(corpus, machine_pick(given, budget))
    if distributed.rank() == 0:
        write_json(out / "vocab.json", vocab.chars)
    torch.manual_seed(train_cfg.seed)
    task = _make_task(tokens, vocab, model_cfg, data_cfg, token_file_record(out / TOKENS, files))
    result = fit(task, train_cfg, out, progress=progress, new_folder=False)
    return task.model.eval(), result


def measured_speed(given: dict[str, Any]) -> Callable[[int, str], float]:
    """``chars_per_s(hidden, cell)`` for :func:`recommended`: :func:`training_speed` with the options given,
    each width and cell measured once, on the threads set when it is first asked."""
    return functools.cache(lambda hidden, cell: training_speed({**given, "cell": cell}, hidden))


def machine_pick(given: dict[str, Any], budget: float) -> dict[str, Any]:
    """The options given, completed with the settings the budget buys on this machine (the width, and the
    smaller models' cell, from training speeds measured here: :func:`recommended`)."""
    return {**recommended(budget, measured_speed(given), cell=given.get("cell")), **given}


# Two models averaged beat one model on the whole CPU once a model on half its threads reads the training
# text this many times within the budget: one model then overfits, and the average of two that do so
# apart generalises better. The members are the widest of these widths that reads the text that often,
# LSTMs (with AR and TAR) whatever their speed against the GRU: a model that reads its text this often
# is limited by overfitting, not by the characters it reads (BENCHMARKS.md, "Seventeenth session").
ENSEMBLE_PASSES = 7.0
MEMBER_WIDTHS = (512, 384, 256)
MEMBER_CELL = "lstm"


def member_pick(given: dict[str, Any], budget: float, train_chars: float, threads: int) -> dict[str, Any] | None:
    """The width and cell of the widest of :data:`MEMBER_WIDTHS` that reads ``train_chars`` characters of
    training text :data:`ENSEMBLE_PASSES` times within the budget on ``threads`` threads (measured), or None."""
    cell = given.get("cell", MEMBER_CELL)
    speed = measured_speed(given)
    with torch_threads(threads):
        for hidden in MEMBER_WIDTHS:
            if budget * speed(hidden, cell) >= ENSEMBLE_PASSES * train_chars:
                return {"hidden": hidden, "cell": cell}
    return None


def ensemble_pick(given: dict[str, Any], budget: float, train_chars: float) -> dict[str, Any] | None:
    """Two models' settings (``members``, and the :func:`member_pick` for half this machine's threads) where
    the budget buys them; None where one model is the better use of the machine (one thread, a GPU, or a
    budget too short for two models to each read the text :data:`ENSEMBLE_PASSES` times)."""
    threads = torch.get_num_threads()
    if threads < 2 or resolve_device(given.get("device", "auto")).type != "cpu" or train_chars <= 0:
        return None
    pick = member_pick(given, budget, train_chars, threads // 2)
    return None if pick is None else {"members": 2, **pick}


def training_chars(files: Sequence[Path], val_fraction: float) -> float:
    """About how many characters of training text ``files`` hold (their bytes, less the validation share)."""
    return sum(f.stat().st_size for f in files) * (1 - val_fraction)


def checked_configs(corpus: Sequence[str] | None, options: dict[str, Any]) -> tuple[ModelConfig, DataConfig,
                                                                                   TrainConfig]:
    model_cfg, data_cfg, train_cfg = _split({"corpus": list(corpus) if corpus else None, **options})
    model_cfg.validate()
    data_cfg.validate()
    train_cfg.validate()
    return model_cfg, data_cfg, train_cfg


def _resume(run: Path, corpus, progress, options) -> tuple[CharLM, TrainResult]:
    """Continue a run; model and data options, if given, must be the run's own."""
    meta = checkpoint_meta(load_checkpoint(run / "last.pt"))
    run_task(run, meta, CharLMTask)  # before the corpus is read or compared
    # a run from before an option existed had it at its default
    saved = {**{f.name: field_default(ModelConfig, f.name) for f in fields(ModelConfig)}, **meta["model"],
             **meta["data"]}
    record = meta.get("tokens")
    if corpus:  # the user names the corpus: rebuild the token file from it if it is missing or damaged
        files = corpus_files(corpus)
        if record is not None and [str(p.resolve()) for p in files] != record["files"]:
            raise RnnkitError(f"--resume: the run was trained on {', '.join(record['files'])}; give those files "
                              "(or no corpus) when resuming")
        if token_file_problem(run, record):
            _tokenize_once(files, run / TOKENS, saved["encoding"], None, Vocab(meta["vocab"]))
            problem = token_file_problem(run, record)
            if problem:
                raise RnnkitError(f"the corpus has changed since the run started: the rebuilt {TOKENS} {problem}")
    for k in list(options):
        if k in saved and k != "vocab_size":
            v = options.pop(k)
            if v is not None and v != saved[k]:
                raise RnnkitError(f"--resume: --{k.replace('_', '-')} {v} conflicts with the run's "
                                  f"{saved[k]}; only the budget and device may change")
    task, result = resume_run(run, progress, **options)  # the task was checked above
    return task.model.eval(), result


def _tokenize_once(files: list[Path], path: Path, encoding: str, max_vocab: int | None,
                   vocab: Vocab | None) -> tuple[Vocab, np.ndarray]:
    """Tokenise on the first process; the others wait, then map the same file."""
    first = distributed.rank() == 0
    if first:
        vocab, tokens = tokenize_to_file(files, path, encoding, max_vocab, vocab)
    chars = distributed.gather(vocab.chars if first else None)[0]  # also waits for the file
    if not first:
        vocab = Vocab(chars)
        tokens = open_tokens(path, vocab)
    return vocab, tokens


def sample_to_stdout(model: CharLM, **kwargs: Any) -> list[str]:
    """Sample, streaming the first sample to stdout as it is generated."""
    def write(chunk: str) -> None:
        sys.stdout.write(chunk)
        sys.stdout.flush()
    return model.sample(on_text=write, **kwargs)


__all__ = ["CharModel", "CharLM", "CharLMTask", "ModelConfig", "DataConfig", "train", "recommended",
           "sample_to_stdout"]
