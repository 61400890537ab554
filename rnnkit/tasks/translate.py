"""Machine translation: an encoder-decoder with attention, its training task, beam search and :class:`Translator`.

The network (Bahdanau et al. 2015, "Neural machine translation by jointly learning to align
and translate"; Luong et al. 2015, "Effective approaches to attention-based NMT"):

- a bidirectional recurrent **encoder** (any registered cell) reads the source subwords into
  memories ``m_s = [h_fwd_s; h_bwd_s]``; a bridge ``tanh(W_b [h_fwd_last; h_bwd_first])`` starts
  the decoder from the encoder's final states;
- a recurrent **decoder** reads the previous target subword ``y_{t-1}`` and gives ``h_t``;
- **attention** scores every source position against ``h_t``, additive
  ``e_ts = v^T tanh(W_k m_s + W_q h_t)`` (Bahdanau's score) or multiplicative
  ``e_ts = h_t^T W_k m_s`` (Luong's "general"), masks the padding, and averages the memories,
  ``c_t = sum_s softmax(e_t)_s m_s``;
- the attentional vector ``a_t = tanh(W_c [h_t; c_t])`` predicts ``y_t`` through the output
  layer, whose weights are the target embeddings when tied (Press and Wolf 2017);
- **input feeding** (Luong) gives ``a_{t-1}`` to the decoder beside ``y_{t-1}``, so it knows what it
  attended to; training then steps through time, as does **scheduled sampling** (Bengio et al.
  2015), which feeds the model's own previous prediction instead of the reference with a
  probability. Without either, teacher-forced training runs the decoder over the whole target
  in one call of the fused kernel.

Decoding is beam search with length normalisation (score / length^alpha); ``beam=1`` is greedy
search. Each sentence of a batch is decoded as if alone: the encoder runs on each sentence's own
length, attention never sees padding, and every length limit is the sentence's own.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import weakref
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..data.batching import LengthBuckets, length_mask, masked_cross_entropy, shard
from ..data.parallel_text import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    EncodedParallel,
    ParallelCorpus,
    ParallelTokenizer,
    encode_parallel,
    make_batch,
    read_lines,
    read_parallel,
    train_parallel_tokenizer,
    translation_scores,
)
from ..errors import RnnkitError
from ..io import load_tensors, save_tensors
from ..nn.cells import CELLS
from ..nn.dropout import Dropout
from ..nn.layers import make_layer
from ..plotting import new_figure, save_figure
from ..training.checkpoint import load_checkpoint, run_checkpoint
from ..training.config import TrainConfig
from ..training.fit import fit, prepare_run_folder, removes_failed_start
from ..training.fit import resume as resume_run
from ..training.task import Task, register_task
from ..training.trainer import TrainResult, checkpoint_meta

ATTENTIONS = ("additive", "multiplicative", "none")
DATA = "data.safetensors"  # the encoded training and validation pairs, so a run resumes from its folder alone
AUTO_VAL = 1000            # pairs held out for validation when none are given (at most 5% of the corpus)
# characters that end a line for some reader (str.splitlines): byte-fallback subwords can emit them,
# and one translation must stay one line of output
LINE_BREAKS = str.maketrans({c: " " for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"})


# --- the network -------------------------------------------------------------------------------

@dataclass
class ModelConfig:
    """The shape of a translation network: everything needed to rebuild it from a checkpoint."""

    src_vocab: int
    tgt_vocab: int
    cell: str = "gru"
    embed: int = 256
    hidden: int = 256
    layers: int = 1
    attention: str = "additive"
    input_feeding: bool = False
    tie_embeddings: bool = True
    dropout: float = 0.3

    def check(self) -> None:
        if self.cell not in CELLS:
            raise RnnkitError(f"--cell must be one of {', '.join(CELLS)}, not {self.cell!r}")
        if self.attention not in ATTENTIONS:
            raise RnnkitError(f"--attention must be one of {', '.join(ATTENTIONS)}, not {self.attention!r}")
        if self.input_feeding and self.attention == "none":
            raise RnnkitError("--input-feeding feeds the attentional vector back: it needs --attention additive "
                              "or multiplicative")
        for name in ("embed", "hidden", "layers"):
            if getattr(self, name) <= 0:
                raise RnnkitError(f"--{name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.dropout < 1:
            raise RnnkitError(f"--dropout must be in [0, 1), got {self.dropout}")


@dataclass
class Memory:
    """The encoded source: memories ``(B, S, 2H)``, their attention keys, and which positions are real."""

    values: Tensor
    keys: Tensor | None
    mask: Tensor  # (B, S) True at real source positions

    def index_select(self, index: Tensor) -> Memory:
        keys = self.keys.index_select(0, index) if self.keys is not None else None
        return Memory(self.values.index_select(0, index), keys, self.mask.index_select(0, index))


State = Tensor | tuple[Tensor, ...]


def select_state(state: State, index: Tensor) -> State:
    """Rows ``index`` of a decoder state (``(L, B, H)``, a pair of them for an LSTM)."""
    if isinstance(state, Tensor):
        return state.index_select(1, index)
    return tuple(s.index_select(1, index) for s in state)


class Attention(nn.Module):
    """Additive (Bahdanau) or multiplicative (Luong "general") attention over the source memories."""

    def __init__(self, kind: str, memory_size: int, query_size: int) -> None:
        super().__init__()
        self.kind = kind
        self.key = nn.Linear(memory_size, query_size, bias=False)  # computed once per sentence (keys)
        if kind == "additive":
            self.query = nn.Linear(query_size, query_size)
            self.v = nn.Linear(query_size, 1, bias=False)

    def forward(self, query: Tensor, memory: Memory) -> tuple[Tensor, Tensor]:
        """``query`` ``(B, T, H)`` -> context ``(B, T, 2H)`` and weights ``(B, T, S)`` (zero on padding)."""
        if self.kind == "additive":
            scores = self.v(torch.tanh(memory.keys.unsqueeze(1) + self.query(query).unsqueeze(2))).squeeze(-1)
        else:
            scores = query @ memory.keys.transpose(1, 2)
        scores = scores.float().masked_fill(~memory.mask.unsqueeze(1), float("-inf"))
        weights = scores.softmax(-1).to(memory.values.dtype)
        return weights @ memory.values, weights


class Seq2Seq(nn.Module):
    """Bidirectional encoder, attentional decoder (see the module docstring for the equations)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        cfg.check()
        self.cfg = cfg
        E, H, L = cfg.embed, cfg.hidden, cfg.layers
        self.src_embed = nn.Embedding(cfg.src_vocab, E, padding_idx=PAD_ID)
        self.tgt_embed = nn.Embedding(cfg.tgt_vocab, E, padding_idx=PAD_ID)
        self.encoder = make_layer(cfg.cell, E, H, L, batch_first=True, bidirectional=True, dropout=cfg.dropout)
        self.bridge = nn.Linear(2 * H, H)
        self.decoder = make_layer(cfg.cell, E * (2 if cfg.input_feeding else 1), H, L, batch_first=True,
                                  dropout=cfg.dropout)
        self.attention = Attention(cfg.attention, 2 * H, H) if cfg.attention != "none" else None
        self.combine = nn.Linear(H + (2 * H if self.attention is not None else 0), E)
        self.out = nn.Linear(E, cfg.tgt_vocab)
        if cfg.tie_embeddings:  # the attentional vector lives in the embedding space, so E^T reads it out
            self.out.weight = self.tgt_embed.weight
        self.drop = Dropout(cfg.dropout)

    @property
    def stepwise(self) -> bool:
        """Whether teacher-forced training must step through time (input feeding)."""
        return self.cfg.input_feeding

    # --- encoding ------------------------------------------------------------------------------
    def encode(self, src: Tensor, src_lengths: Tensor) -> tuple[Memory, State]:
        """Source ids ``(B, S)`` -> memory and the decoder's initial state."""
        values, final = self.encoder(self.drop(self.src_embed(src)), lengths=src_lengths)
        mask = length_mask(src_lengths.to(src.device), src.shape[1])
        keys = self.attention.key(values) if self.attention is not None else None
        return Memory(values, keys, mask), self._bridge(final)

    def _bridge(self, final: State) -> State:
        """``(2L, B, H)`` final states (layer-major, forward then backward) -> ``(L, B, H)``."""
        def one(s: Tensor) -> Tensor:
            both = s.view(self.cfg.layers, 2, *s.shape[1:])
            return torch.tanh(self.bridge(torch.cat([both[:, 0], both[:, 1]], dim=-1)))
        return one(final) if isinstance(final, Tensor) else tuple(one(s) for s in final)

    # --- decoding ------------------------------------------------------------------------------
    def attend(self, h: Tensor, memory: Memory) -> tuple[Tensor, Tensor | None]:
        """Decoder outputs ``(B, T, H)`` -> attentional vectors ``(B, T, E)`` and attention weights."""
        if self.attention is None:
            return torch.tanh(self.combine(h)), None
        context, weights = self.attention(h, memory)
        return torch.tanh(self.combine(torch.cat([h, context], dim=-1))), weights

    def logits(self, attentional: Tensor) -> Tensor:
        return self.out(self.drop(attentional))

    def step(self, prev: Tensor, state: State, feed: Tensor | None,
             memory: Memory) -> tuple[Tensor, State, Tensor, Tensor | None]:
        """One decoder step: previous ids ``(B,)`` -> logits ``(B, V)``, state, attentional vector, weights."""
        x = self.drop(self.tgt_embed(prev))
        if self.cfg.input_feeding:
            x = torch.cat([x, feed if feed is not None else x.new_zeros(x.shape)], dim=-1)
        h, state = self.decoder(x.unsqueeze(1), state)
        a, w = self.attend(h, memory)
        return self.logits(a[:, 0]), state, a[:, 0], (w[:, 0] if w is not None else None)

    def forward(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor, sampling: float = 0.0,
                generator: torch.Generator | None = None) -> Tensor:
        """Teacher-forced logits ``(B, T, V)`` for targets ``tgt_in`` (BOS y1 .. yn).

        With ``sampling`` > 0 each input after the first is, with that probability, the model's own
        previous prediction (argmax) instead of the reference (scheduled sampling).
        """
        memory, state = self.encode(src, src_lengths)
        if not self.stepwise and sampling <= 0:
            h, _ = self.decoder(self.drop(self.tgt_embed(tgt_in)), state)  # causal: padding after the end is harmless
            return self.logits(self.attend(h, memory)[0])
        out, feed, prev = [], None, tgt_in[:, 0]
        for t in range(tgt_in.shape[1]):
            logits, state, feed, _ = self.step(prev, state, feed, memory)
            out.append(logits)
            if t + 1 < tgt_in.shape[1]:
                prev = tgt_in[:, t + 1]
                if sampling > 0:
                    own = torch.rand(prev.shape, generator=generator).to(prev.device) < sampling
                    prev = torch.where(own, logits.argmax(-1), prev)
        return torch.stack(out, dim=1)


# --- beam search -------------------------------------------------------------------------------

@dataclass
class Hypothesis:
    """One translation: subword ids (no BOS/EOS), its length-normalised log-probability, its attention."""

    ids: list[int]
    score: float
    attention: Tensor | None = None  # (len(ids) + 1, S): each output step (EOS last) over the source


@torch.no_grad()
def beam_search(model: Seq2Seq, src: Tensor, src_lengths: Tensor, beam: int = 1, n_best: int = 1,
                length_penalty: float = 1.0, max_ratio: float = 2.0, max_extra: int = 10,
                keep_attention: bool = False) -> list[list[Hypothesis]]:
    """The ``n_best`` best translations of each source sentence, best first; ``beam=1`` is greedy search.

    A hypothesis ending in EOS scores ``log p(y | x) / |y|^length_penalty`` (``|y|`` counts EOS).
    A sentence is done when ``beam`` hypotheses have ended (the top ``beam`` candidates of a step
    are the only ones that may end, as in fairseq), or at its own limit of
    ``max_ratio * source length + max_extra`` subwords, where its live hypotheses end unfinished.
    """
    if beam < 1 or not 1 <= n_best <= beam:
        raise RnnkitError(f"need beam >= 1 and 1 <= n-best <= beam, got beam {beam} and n-best {n_best}")
    B, K, device = src.shape[0], beam, src.device
    memory, state = model.encode(src, src_lengths)
    rows = torch.arange(B, device=device).repeat_interleave(K)
    memory, state = memory.index_select(rows), select_state(state, rows)
    limits = [int(n * max_ratio) + max_extra for n in src_lengths.tolist()]
    scores = torch.full((B, K), float("-inf"), device=device)
    scores[:, 0] = 0.0  # one live hypothesis at first: K copies of it would fill the beam with duplicates
    prev = torch.full((B * K,), BOS_ID, dtype=torch.long, device=device)
    history = torch.zeros((B * K, 0), dtype=torch.long, device=device)
    keep_attention = keep_attention and model.attention is not None
    attention = torch.zeros((B * K, 0, src.shape[1]), device=device) if keep_attention else None
    feed = None
    finished: list[list[Hypothesis]] = [[] for _ in range(B)]
    done = [False] * B
    for t in range(max(limits)):
        logits, state, feed, weights = model.step(prev, state, feed, memory)
        logp = logits.float().log_softmax(-1)
        logp[:, [PAD_ID, BOS_ID]] = float("-inf")  # never outputs: a step spent on them would be wasted
        V = logp.shape[-1]
        if attention is not None:
            attention = torch.cat([attention, weights.float().unsqueeze(1)], dim=1)
        top_scores, top_index = (scores.view(-1, 1) + logp).view(B, K * V).topk(min(2 * K, K * V), dim=1)
        origins, tokens = (top_index // V).tolist(), (top_index % V).tolist()
        top = top_scores.tolist()
        new_scores, new_rows, new_tokens = [], [], []
        for b in range(B):
            live: list[tuple[float, int, int]] = []
            if not done[b]:
                last = t + 1 >= limits[b]
                for j, (s, o, k) in enumerate(zip(top[b], origins[b], tokens[b], strict=True)):
                    if s == float("-inf"):
                        break
                    if (k == EOS_ID or last) and j < K:
                        ids = history[b * K + o].tolist() + ([] if k == EOS_ID else [k])
                        attn = attention[b * K + o] if attention is not None else None
                        finished[b].append(Hypothesis(ids, s / (t + 1) ** length_penalty, attn))
                    elif k != EOS_ID and len(live) < K:
                        live.append((s, o, k))
                done[b] = last or len(finished[b]) >= K or not live
            if done[b]:
                live = []
            live += [(float("-inf"), 0, PAD_ID)] * (K - len(live))  # dead slots: kept in shape, never chosen
            new_scores += [s for s, _, _ in live]
            new_rows += [b * K + o for _, o, _ in live]
            new_tokens += [k for _, _, k in live]
        if all(done):
            break
        index = torch.tensor(new_rows, device=device)
        scores = torch.tensor(new_scores, device=device).view(B, K)
        prev = torch.tensor(new_tokens, device=device)
        history = torch.cat([history.index_select(0, index), prev.unsqueeze(1)], dim=1)
        state, feed = select_state(state, index), feed.index_select(0, index)
        if attention is not None:
            attention = attention.index_select(0, index)
    return [sorted(f, key=lambda h: -h.score)[:n_best] or [Hypothesis([], float("-inf"))] for f in finished]


# --- the training task -------------------------------------------------------------------------

@dataclass
class TaskOptions:
    """How the task batches and scores (stored in the run folder)."""

    batch_size: int = 64
    label_smoothing: float = 0.1
    scheduled_sampling: float = 0.0  # the largest probability of feeding the model's own prediction
    eval_batch_size: int = 128
    seed: int = 1337


ENCODED_KEYS = ("src_ids", "src_offsets", "tgt_ids", "tgt_offsets", "line_numbers")


def save_encoded(path: Path, train: EncodedParallel, val: EncodedParallel) -> None:
    """Both splits' subword ids in one safetensors file (no pickle: reading it runs no code)."""
    save_tensors(path, {f"{name}_{key}": np.ascontiguousarray(getattr(data, key))
                        for name, data in (("train", train), ("val", val)) for key in ENCODED_KEYS})


def load_encoded(path: Path) -> tuple[EncodedParallel, EncodedParallel]:
    t, _ = load_tensors(path, "the run's encoded sentence pairs")
    train, val = (EncodedParallel(*(t[f"{name}_{key}"].numpy() for key in ENCODED_KEYS)) for name in ("train", "val"))
    return train, val


@register_task
class TranslateTask(Task):
    """Batches of sentence pairs of similar lengths; validation loss and greedy validation BLEU (sacreBLEU)."""

    name, command, unit = "translate", "rnnkit translate train", "sentences"
    metric, higher_is_better = "val_bleu", True
    loss_label = "cross-entropy per target subword"

    def __init__(self, model: Seq2Seq, tokenizer: ParallelTokenizer, train: EncodedParallel, val: EncodedParallel,
                 options: TaskOptions) -> None:
        self.model, self.tokenizer, self.train, self.val, self.options = model, tokenizer, train, val, options
        lengths = np.maximum(train.src_lengths, train.tgt_lengths)
        self.buckets = LengthBuckets(lengths, batch_size=min(options.batch_size, len(train)), seed=options.seed)
        self.references = tokenizer.tgt.decode_batch([val.tgt(i) for i in range(len(val))])  # lossless: the raw text

    def batches_per_epoch(self) -> int:
        return len(self.buckets)

    def sampling(self, epoch: int, index: int) -> float:
        """Scheduled sampling's probability, ramped linearly from 0 over the first epoch."""
        p = self.options.scheduled_sampling
        return p * min(1.0, (epoch * len(self.buckets) + index) / len(self.buckets)) if p else 0.0

    def training_loss(self, epoch: int, index: int) -> tuple[Tensor, int]:
        idx = self.buckets.batch(epoch, index)
        idx = idx[shard(np.arange(len(idx)), self.rank, self.world)]
        b = make_batch(self.train, idx).to(self.device)
        g = torch.Generator().manual_seed(self.options.seed * 1_000_003 + epoch * 100_003 + index)
        logits = self.model(b.src, b.src_lengths, b.tgt_in, self.sampling(epoch, index), g)
        return masked_cross_entropy(logits, b.tgt_out, b.tgt_lengths, self.options.label_smoothing), len(idx)

    def evaluate(self) -> dict[str, float]:
        """Cross-entropy per target subword (no smoothing) and cased sacreBLEU of greedy translations."""
        total, tokens = 0.0, 0
        order = np.argsort(self.val.src_lengths, kind="stable")  # similar lengths together: less padding
        out: dict[int, str] = {}
        for start in range(0, len(order), self.options.eval_batch_size):
            idx = order[start:start + self.options.eval_batch_size]
            b = make_batch(self.val, idx).to(self.device)
            logits = self.model(b.src, b.src_lengths, b.tgt_in)
            total += masked_cross_entropy(logits, b.tgt_out, b.tgt_lengths, reduction="sum").item()
            tokens += b.num_target_tokens
            for i, best in zip(idx.tolist(), beam_search(self.model, b.src, b.src_lengths), strict=True):
                out[i] = self.tokenizer.tgt.decode(best[0].ids)
        hyps = [out[i] for i in range(len(self.val))]
        scores = translation_scores(hyps, self.references)
        return {"val_loss": total / tokens, "val_bleu": scores["bleu"].score, "val_chrf": scores["chrf"].score}

    def config(self) -> dict[str, Any]:
        return {"model": asdict(self.model.cfg), "options": asdict(self.options), "data": DATA,
                "joint_vocab": self.tokenizer.joint, "train_stats": self.train.stats(), "val_pairs": len(self.val)}

    @classmethod
    def from_config(cls, config: dict[str, Any], run_dir: Path) -> TranslateTask:
        train, val = load_encoded(run_dir / DATA)
        return cls(Seq2Seq(ModelConfig(**config["model"])), ParallelTokenizer.load(run_dir), train, val,
                   TaskOptions(**config["options"]))


# --- the Translator ----------------------------------------------------------------------------

TRAIN_FIELDS = {f.name for f in fields(TrainConfig)}
MODEL_FIELDS = {f.name for f in fields(ModelConfig)} - {"src_vocab", "tgt_vocab"}
OPTION_FIELDS = {f.name for f in fields(TaskOptions)} - {"seed"}


@dataclass
class DataOptions:
    """How the text is read and cut into subwords (the CLI flags of the same names)."""

    vocab_size: int = 8000
    joint_vocab: bool = True
    subword: str = "bpe"
    max_tokens: int | None = 100
    max_chars: int | None = None
    drop_empty: bool = False
    drop_long: bool = False
    encoding: str = "utf-8"
    columns: tuple[str, str] | None = None


DATA_FIELDS = {f.name for f in fields(DataOptions)}


@dataclass
class Scores:
    """sacreBLEU on detokenised output: cased BLEU (13a), lowercased BLEU, chrF, with their signatures."""

    bleu: float
    bleu_lowercase: float
    chrf: float
    signatures: dict[str, str] = field(default_factory=dict)
    sentences: int = 0
    seconds: float = 0.0

    @property
    def sentences_per_second(self) -> float:
        return self.sentences / max(self.seconds, 1e-9)


class Translator:
    """Train a translation model on any parallel corpus, then translate and score.

    >>> t = Translator(attention="additive", max_time=600, out="runs/de-en")
    >>> t.fit("train.de", "train.en", "val.de", "val.en")
    >>> t.predict(["Ein Hund rennt."], beam=5)             # one translation a sentence
    >>> t.evaluate("test.de", "test.en", beam=5).bleu      # cased sacreBLEU

    Model options are :class:`ModelConfig`'s (``cell``, ``embed``, ``hidden``, ``layers``,
    ``attention``, ``input_feeding``, ``tie_embeddings``, ``dropout``); task options
    :class:`TaskOptions`'s (``batch_size``, ``label_smoothing``, ``scheduled_sampling``); data
    options :class:`DataOptions`'s (``vocab_size``, ``joint_vocab``, ``max_tokens``, ...);
    the rest are :class:`rnnkit.training.config.TrainConfig`'s (``lr``, ``max_time``, ``epochs``, ...),
    with no budget 10 minutes. ``out`` is the run folder (a temporary one if not given).
    """

    def __init__(self, out: str | Path | None = None, progress: bool | None = False, **options: Any) -> None:
        unknown = set(options) - MODEL_FIELDS - OPTION_FIELDS - TRAIN_FIELDS - DATA_FIELDS
        if unknown:
            raise TypeError(f"unknown options: {', '.join(sorted(unknown))}")
        given = {k: v for k, v in options.items() if v is not None}
        self.model_options = {k: v for k, v in given.items() if k in MODEL_FIELDS}
        self.data_options = DataOptions(**{k: v for k, v in given.items() if k in DATA_FIELDS})
        self.train_config = TrainConfig(**{"warmup_steps": 200,
                                           **{k: v for k, v in given.items() if k in TRAIN_FIELDS}})
        if not self.train_config.has_budget:
            self.train_config.max_time = 600.0
        self.train_config.validate()
        self.task_options = TaskOptions(**{k: v for k, v in given.items() if k in OPTION_FIELDS},
                                        seed=self.train_config.seed)
        _check_options(self.task_options, self.data_options)
        ModelConfig(1, 1, **self.model_options).check()  # an unknown cell or attention fails before any reading
        self.out, self.progress = out, progress
        self.model: Seq2Seq | None = None
        self.tokenizer: ParallelTokenizer | None = None
        self.result: TrainResult | None = None
        self.run_dir: Path | None = None

    # --- training ------------------------------------------------------------------------------
    @removes_failed_start
    def fit(self, src: str | Path, tgt: str | Path | None = None, val_src: str | Path | None = None,
            val_tgt: str | Path | None = None) -> Translator:
        """Read the pairs, train the subword model on the training text, then the network.

        ``src``/``tgt`` are line-aligned text files (gzip accepted); or ``src`` alone is a
        TSV/JSONL/Parquet file with two columns, and likewise ``val_src`` alone. Without validation
        data, min(:data:`AUTO_VAL`, 5%) training pairs drawn with the seed are held out.
        Everything is read and checked before the run folder is created.
        """
        d = self.data_options
        read = dict(columns=d.columns, encoding=d.encoding, drop_empty=d.drop_empty, max_chars=d.max_chars,
                    drop_long=d.drop_long)
        train = read_parallel(src, tgt, **read)
        if val_tgt is not None and val_src is None:
            raise RnnkitError("--val-tgt needs --val-src")
        val = read_parallel(val_src, val_tgt, **read) if val_src is not None else None
        if val is None:
            train, val = hold_out(train, self.task_options.seed)
        tokenizer = train_parallel_tokenizer(train, joint=d.joint_vocab, vocab_size=d.vocab_size, model_type=d.subword)
        train_ids = encode_parallel(train, tokenizer, max_tokens=d.max_tokens, drop_long=d.drop_long)
        val_ids = encode_parallel(val, tokenizer, max_tokens=d.max_tokens, drop_long=d.drop_long)
        if self.out is None:
            self.run_dir = Path(tempfile.mkdtemp(prefix="rnnkit-translate-"))
            weakref.finalize(self, shutil.rmtree, str(self.run_dir), True)
        else:
            self.run_dir = prepare_run_folder(self.out, "rnnkit translate train --resume")
        tokenizer.save(self.run_dir)
        save_encoded(self.run_dir / DATA, train_ids, val_ids)
        torch.manual_seed(self.train_config.seed)
        cfg = ModelConfig(tokenizer.src.vocab_size, tokenizer.tgt.vocab_size, **self.model_options)
        task = TranslateTask(Seq2Seq(cfg), tokenizer, train_ids, val_ids, self.task_options)
        self.model, self.tokenizer = task.model, tokenizer
        self.result = fit(task, self.train_config, self.run_dir, progress=self.progress, new_folder=False)
        self.model.eval()
        return self

    @classmethod
    def resume(cls, run: str | Path, progress: bool | None = None, **changes: Any) -> Translator:
        """Continue an interrupted run in its folder (only the budget and device may change)."""
        task, result = resume_run(run, progress, expect=TranslateTask, **changes)
        self = cls.load(run)
        self.result = result
        return self

    @classmethod
    def load(cls, run: str | Path, checkpoint: str = "best") -> Translator:
        """A trained translator from its run folder (``best.pt`` by validation BLEU, or ``last.pt``)."""
        run = Path(run)
        if not run.is_dir():
            raise RnnkitError(f"no run folder at {run}: give the --out of `rnnkit translate train`")
        state = load_checkpoint(run_checkpoint(run, checkpoint))
        meta = checkpoint_meta(state)
        if meta.get("task") != TranslateTask.name:
            raise RnnkitError(f"{run} holds a {meta.get('task')!r} run, not a translation one")
        self = cls(progress=False, seed=meta["options"]["seed"])
        self.model = Seq2Seq(ModelConfig(**meta["model"]))
        try:
            self.model.load_state_dict(state["model"])
        except (RuntimeError, KeyError) as e:
            raise RnnkitError(f"checkpoint weights do not fit its model: {str(e).splitlines()[0]}") from None
        self.model.eval()
        self.tokenizer = ParallelTokenizer.load(run)
        self.run_dir = run
        return self

    # --- translating ---------------------------------------------------------------------------
    def _require(self) -> tuple[Seq2Seq, ParallelTokenizer]:
        if self.model is None or self.tokenizer is None:
            raise RnnkitError("the translator is not trained: call fit() or load() first")
        return self.model, self.tokenizer

    def translate(self, sentences: Sequence[str], beam: int = 1, n_best: int = 1, length_penalty: float = 1.0,
                  batch_size: int = 64, keep_attention: bool = False) -> list[list[tuple[str, Hypothesis]]]:
        """The ``n_best`` translations of each sentence with their hypotheses (ids, score, attention)."""
        model, tok = self._require()
        if beam < 1:
            raise RnnkitError(f"--beam must be a positive whole number, got {beam}")
        if not 1 <= n_best <= beam:
            raise RnnkitError(f"--n-best must be between 1 and --beam ({beam}), got {n_best}")
        sentences = list(sentences)
        ids = [tok.src.encode(s) + [EOS_ID] for s in sentences]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # similar lengths together: less padding
        results: list[list[tuple[str, Hypothesis]]] = [[] for _ in sentences]
        device = next(model.parameters()).device
        model.eval()
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            lengths = torch.tensor([len(ids[i]) for i in chunk])
            src = torch.full((len(chunk), int(lengths.max())), PAD_ID, dtype=torch.long)
            for row, i in enumerate(chunk):
                src[row, :len(ids[i])] = torch.tensor(ids[i])
            hyps = beam_search(model, src.to(device), lengths, beam, n_best, length_penalty,
                               keep_attention=keep_attention)
            for i, h in zip(chunk, hyps, strict=True):
                results[i] = [(tok.tgt.decode(x.ids).translate(LINE_BREAKS), x) for x in h]
        return results

    def predict(self, sentences: str | Sequence[str], beam: int = 1, length_penalty: float = 1.0,
                batch_size: int = 64) -> list[str]:
        """The best translation of each sentence (one sentence: a list of one)."""
        if isinstance(sentences, str):
            sentences = [sentences]
        return [r[0][0] for r in self.translate(sentences, beam, 1, length_penalty, batch_size)]

    def stream(self, lines: Iterable[str], beam: int = 1, n_best: int = 1, batch_size: int = 64,
               length_penalty: float = 1.0) -> Iterator[list[tuple[str, Hypothesis]]]:
        """Translations of an iterable of lines, ``batch_size`` at a time, in order, as they are read."""
        chunk: list[str] = []
        for line in lines:
            chunk.append(line.rstrip("\n"))
            if len(chunk) >= batch_size:
                yield from self.translate(chunk, beam, n_best, length_penalty, batch_size)
                chunk = []
        if chunk:
            yield from self.translate(chunk, beam, n_best, length_penalty, batch_size)

    def evaluate(self, src: str | Path | Sequence[str], ref: str | Path | Sequence[str], beam: int = 1,
                 length_penalty: float = 1.0, batch_size: int = 64, encoding: str = "utf-8",
                 hypotheses_out: list[str] | None = None) -> Scores:
        """sacreBLEU of the translations of ``src`` against ``ref`` (files, gzip accepted, or lists of lines)."""
        sources = read_lines(src, encoding) if isinstance(src, (str, Path)) else list(src)
        refs = read_lines(ref, encoding) if isinstance(ref, (str, Path)) else list(ref)
        if len(sources) != len(refs):
            raise RnnkitError(f"{len(sources)} source lines but {len(refs)} reference lines: they must line up")
        start = time.perf_counter()
        hyps = self.predict(sources, beam, length_penalty, batch_size)
        seconds = time.perf_counter() - start
        if hypotheses_out is not None:
            hypotheses_out.extend(hyps)
        s = translation_scores(hyps, refs)
        return Scores(s["bleu"].score, s["bleu_lc"].score, s["chrf"].score,
                      {k: v.signature for k, v in s.items()}, len(sources), seconds)

    def plot_attention(self, sentence: str, path: str | Path, beam: int = 1) -> str:
        """Draw the alignment of ``sentence``'s best translation (target subwords down, source across)."""
        model, tok = self._require()
        if model.attention is None:
            raise RnnkitError("this model has no attention (--attention none): there is no alignment to draw")
        text, hyp = self.translate([sentence], beam, keep_attention=True)[0][0]
        src = [*(p.replace("\u2581", "") or "\u2581" for p in tok.src.pieces(sentence)), "</s>"]
        tgt = [tok.tgt.decode([i]) or "·" for i in hyp.ids]  # each subword's own text
        tgt += ["</s>"] * (len(hyp.attention) - len(tgt))  # a hypothesis cut at its length limit has no EOS
        matrix = hyp.attention[:, :len(src)].numpy()
        fig, ax = new_figure(figsize=(max(4.0, 0.45 * len(src) + 1.5), max(3.0, 0.4 * len(tgt) + 1.2)), dpi=110)
        ax.imshow(matrix, cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_xticks(range(len(src)), src, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(len(tgt)), tgt, fontsize=8)
        ax.set_xlabel("source")
        ax.set_ylabel("translation")
        ax.set_title(f"attention ({model.cfg.attention})", fontsize=9)
        save_figure(fig, path)
        return text


# --- helpers -------------------------------------------------------------------------------------

def _check_options(t: TaskOptions, d: DataOptions) -> None:
    if t.batch_size < 1:
        raise RnnkitError(f"--batch-size must be positive, got {t.batch_size}")
    if not 0 <= t.label_smoothing < 1:
        raise RnnkitError(f"--label-smoothing must be in [0, 1), got {t.label_smoothing}")
    if not 0 <= t.scheduled_sampling <= 1:
        raise RnnkitError(f"--scheduled-sampling must be in [0, 1], got {t.scheduled_sampling}")
    if d.subword not in ("bpe", "unigram"):
        raise RnnkitError(f"--subword must be bpe or unigram, not {d.subword!r}")
    if d.vocab_size < 1:
        raise RnnkitError(f"--vocab-size must be positive, got {d.vocab_size}")


def hold_out(corpus: ParallelCorpus, seed: int) -> tuple[ParallelCorpus, ParallelCorpus]:
    """Split off min(1000, 5%) pairs, drawn with ``seed``, for validation; refuses corpora under 20 pairs."""
    n = len(corpus)
    if n < 20:
        raise RnnkitError(f"{corpus.src_name} has {n} sentence pairs: give at least 20, or validation data with "
                          "--val-src/--val-tgt")
    k = min(AUTO_VAL, max(1, n // 20))
    val = set(np.random.default_rng(seed).permutation(n)[:k].tolist())

    def part(keep: bool) -> ParallelCorpus:
        idx = [i for i in range(n) if (i in val) != keep]
        return ParallelCorpus([corpus.src[i] for i in idx], [corpus.tgt[i] for i in idx],
                              [corpus.line_numbers[i] for i in idx], corpus.src_name, corpus.tgt_name, corpus.unit)
    return part(True), part(False)


def plot_learning_curve(runs: dict[str, Path], path: str | Path) -> None:
    """Validation BLEU against training minutes, one line per run folder (from each ``metrics.jsonl``)."""
    from ..training.monitor import read_metrics

    fig, ax = new_figure(figsize=(6.5, 4.2), dpi=100)
    for label, run in runs.items():
        points = [(r["time"] / 60, r["val_bleu"]) for r in read_metrics(Path(run) / "metrics.jsonl")
                  if "val_bleu" in r and "time" in r]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", ms=3, label=label)
    ax.set_xlabel("training minutes")
    ax.set_ylabel("validation BLEU (greedy, cased sacreBLEU)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


__all__ = ["ATTENTIONS", "Attention", "Hypothesis", "ModelConfig", "Scores", "Seq2Seq", "TaskOptions",
           "TranslateTask", "Translator", "beam_search", "hold_out", "plot_learning_curve"]
