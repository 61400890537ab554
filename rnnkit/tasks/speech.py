"""Speech recognition: a recurrent acoustic model trained with CTC, its decoders, and :class:`SpeechRecognizer`.

Audio becomes log-mel or MFCC frames (:class:`rnnkit.data.audio.FeatureConfig`, all torch); a
stack of recurrent layers reads them, after stacking ``stride`` neighbouring frames into one
(half the steps at ``stride=2``: faster, and still several output frames per character); a
linear layer gives each output frame a distribution over the characters and the blank.

Connectionist temporal classification (Graves et al., 2006) trains it without any alignment:
with ``B`` the map that merges repeated labels and then drops blanks,

    p(y | x) = sum over frame paths a with B(a) = y of  prod_t p(a_t | x),

summed by a forward-backward recursion (``torch.nn.functional.ctc_loss``). Emitting one label
twice in a row needs a blank between the two, so a target of ``U`` labels with ``R`` adjacent
repeats needs ``U + R`` output frames (:func:`rnnkit.data.speech.ctc_feasible`); training data
that cannot meet that is refused, not silently given an infinite loss.

Decoding: greedy (the best label per frame, then ``B``), or a CTC prefix beam search (Hannun et
al., 2014, arXiv:1408.2873) that keeps, per prefix, the probability of ending in a blank and in
a non-blank, optionally scored with a character n-gram language model (:class:`CharNgram`,
interpolated Witten-Bell): ``log p_ctc + lm_weight * log p_lm + length_bonus * |y|``.

Two variants: bidirectional (the default: each frame sees the whole utterance; per-utterance
feature normalisation) and ``streaming``: one direction only, with features that depend only on
the past (an absolute log floor, and a mean and deviation measured once on the training set and
kept in the model), so :meth:`SpeechRecognizer.stream` can transcribe audio as it arrives,
chunk by chunk, carrying the recurrent state.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
import weakref
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.audio import (
    FeatureConfig,
    frequency_warp,
    load_audio,
    pad_silence,
    plot_spectrogram,
    power_spectrogram,
    spec_augment,
    time_stretch,
)
from ..data.batching import LengthBuckets, length_mask, shard
from ..data.speech import Alphabet, Utterance, ctc_min_frames, fsdd_utterances, read_transcripts
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
from ..training.trainer import TrainResult, checkpoint_meta

FORMATS = ("transcripts", "fsdd")
DATA = "data.safetensors"   # the training features and targets: a run resumes from its folder alone
STREAM_FLOOR = 1e-6         # absolute mel-power floor of streaming features (FSDD speech peaks near 1e2)
SPEC_AUGMENT = {"freq_masks": 2, "freq_width": 6, "time_masks": 2, "time_width": 8}


# ---------------------------------------------------------------- features

class CausalFeatures:
    """Features of a streaming model: each frame depends on its own samples only.

    :class:`FeatureConfig` floors the log at 80 dB below the utterance's loudest band and
    normalises over the whole utterance; both need the end of the audio. Here the floor is
    absolute and normalisation is left to the model (a training-set mean and deviation), so
    frames computed chunk by chunk equal those of the whole file. No deltas (they look ahead), no
    silence trimming (where the speech ends is not known while it arrives).
    """

    def __init__(self, config: FeatureConfig):
        if config.deltas:
            raise RnnkitError("a streaming model cannot use delta features (they need frames from the future)")
        if config.trim_db is not None:
            raise RnnkitError("a streaming model cannot trim silence (where the speech ends is not known yet)")
        self.config = config
        self.sample_rate = config.sample_rate

    def frames(self, samples: Tensor) -> Tensor:
        c = self.config
        power = power_spectrogram(samples, c.win_length, c.hop_length, c.fft_size, c.window)
        feats = (power @ c.filterbank.T).clamp_min(STREAM_FLOOR).log()
        return feats @ c.dct if c.kind == "mfcc" else feats

    __call__ = frames


def feature_extractor(config: FeatureConfig, streaming: bool) -> FeatureConfig | CausalFeatures:
    return CausalFeatures(config) if streaming else config


# ---------------------------------------------------------------- the network

@dataclass
class ModelConfig(LayerRegularisation):
    """Everything needed to rebuild the acoustic model and its features from a checkpoint (with the
    recurrent layer's regularisers, :class:`rnnkit.nn.regularisation.LayerRegularisation`)."""

    labels: str                     # the alphabet's symbols (id i + 1 is labels[i]; 0 is the blank)
    features: dict[str, Any]        # FeatureConfig.to_dict()
    cell: str = "lstm"
    hidden: int = 128
    layers: int = 2
    dropout: float = 0.1
    stride: int = 2
    streaming: bool = False
    conv_channels: int = 0          # 0: the recurrent layers read the frames themselves

    @property
    def feature_config(self) -> FeatureConfig:
        return FeatureConfig.from_dict(self.features)

    @property
    def alphabet(self) -> Alphabet:
        return Alphabet(self.labels)


class ConvFrontEnd(nn.Module):
    """Two 3x3 convolutions over (time, band), each with a ReLU and halving the bands, as Deep Speech 2
    (Amodei et al. 2016) puts before its recurrent layers: local time-frequency shapes (a formant's
    slope, a burst's edge) measured once, wherever in the band range a speaker puts them.

    Frames ``(B, T, D)`` -> ``(B, T, channels * ceil(ceil(D / 2) / 2))``; padded frames are zeroed
    after each convolution, so a clip in a batch gets what it gets alone. Each output frame sees
    two frames either side, so a streaming model cannot have one; it reads log-mel bands, whose
    neighbours are neighbours in frequency (not MFCCs, not deltas appended to them).
    """

    def __init__(self, dim: int, channels: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv2d(1, channels, 3, stride=(1, 2), padding=1),
                                    nn.Conv2d(channels, channels, 3, stride=(1, 2), padding=1)])
        self.out_dim = channels * math.ceil(math.ceil(dim / 2) / 2)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        h, keep = x.unsqueeze(1), mask[:, None, :, None].to(x.dtype)
        for conv in self.convs:
            h = F.relu(conv(h)) * keep
        return h.transpose(1, 2).flatten(2)


class AcousticModel(nn.Module):
    """Frames ``(B, T, D)`` -> log-probabilities ``(B, ceil(T / stride), classes)`` over the blank and the labels."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        dim = cfg.feature_config.dim
        # identity for the bidirectional model (its features are normalised per utterance)
        self.register_buffer("feat_mean", torch.zeros(dim))
        self.register_buffer("feat_std", torch.ones(dim))
        self.conv = ConvFrontEnd(dim, cfg.conv_channels) if cfg.conv_channels else None
        if self.conv is not None:
            dim = self.conv.out_dim
        self.rnn = make_layer(cfg.cell, dim * cfg.stride, cfg.hidden, cfg.layers, batch_first=True,
                              bidirectional=not cfg.streaming, **cfg.layer_kwargs(cfg.dropout, cfg.layers))
        self.drop = Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.hidden * (1 if cfg.streaming else 2), len(cfg.alphabet))

    def output_lengths(self, lengths: Tensor) -> Tensor:
        return torch.div(lengths + self.cfg.stride - 1, self.cfg.stride, rounding_mode="floor")

    def stack(self, feats: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Normalise, zero the padding, convolve (with a front end), and join each ``stride`` frames into one step."""
        s = self.cfg.stride
        x = (feats - self.feat_mean) / self.feat_std
        mask = length_mask(lengths, x.shape[1])
        x = x * mask.unsqueeze(-1).to(x.dtype)
        if self.conv is not None:
            x = self.conv(x, mask)
        pad = (-x.shape[1]) % s
        x = F.pad(x, (0, 0, 0, pad))
        return x.reshape(x.shape[0], x.shape[1] // s, x.shape[2] * s), self.output_lengths(lengths)

    def forward(self, feats: Tensor, lengths: Tensor, state: Any = None) -> tuple[Tensor, Tensor, Any]:
        """Log-probabilities, output lengths, and the final recurrent state (to continue a stream)."""
        x, out_lengths = self.stack(feats, lengths)
        out, state = self.rnn(self.drop(x), state, lengths=out_lengths.cpu())
        return self.head(self.drop(out)).float().log_softmax(-1), out_lengths, state


def ctc_loss(log_probs: Tensor, lengths: Tensor, targets: Tensor, target_lengths: Tensor) -> Tensor:
    """Mean over utterances of -log p(target | audio) (per utterance, so an empty transcript counts too)."""
    losses = F.ctc_loss(log_probs.transpose(0, 1), targets, lengths, target_lengths, blank=Alphabet.blank,
                        reduction="none")
    return losses.mean()


# ---------------------------------------------------------------- decoding

def collapse(path: Tensor) -> list[int]:
    """CTC's map B from a frame path to labels: repeats merged, then blanks dropped."""
    return [int(i) for i in torch.unique_consecutive(path) if i != Alphabet.blank]


def greedy_decode(log_probs: Tensor) -> list[int]:
    """The most probable label of each frame, then :func:`collapse`: ``(T, C)`` -> label ids."""
    return collapse(log_probs.argmax(-1))


class CharNgram:
    """A character n-gram model with interpolated Witten-Bell smoothing, built from lines of text.

    ``P(c | h) = (C(h c) + N(h) P(c | h')) / (C(h) + N(h))``, where ``N(h)`` is the number of
    distinct characters seen after ``h`` and ``h'`` drops the oldest character of ``h``; the
    empty history falls back to the uniform distribution over the alphabet and the end of line
    (Witten and Bell, 1991; Chen and Goodman, 1998). Each line is a sentence: ``\\n`` is both
    its start context and its end symbol.
    """

    END = "\n"

    def __init__(self, lines: Iterable[str], order: int = 4, alphabet: Alphabet | None = None) -> None:
        if order < 1:
            raise RnnkitError(f"the n-gram order must be at least 1, not {order}")
        self.order = order
        self.counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        vocab = set(alphabet.symbols) if alphabet is not None else set()
        seen = 0
        for line in lines:
            line = line.strip()
            if not line:
                continue
            seen += 1
            text = self.END * (order - 1) + line + self.END
            vocab |= set(line)
            for i in range(order - 1, len(text)):
                for n in range(order):
                    self.counts[text[i - n:i]][text[i]] += 1
        if not seen:
            raise RnnkitError("the language model text has no non-empty lines")
        self.vocab_size = len(vocab) + 1
        self._cache: dict[tuple[str, str], float] = {}

    @classmethod
    def from_files(cls, paths: Sequence[str | os.PathLike], order: int = 4,
                   alphabet: Alphabet | None = None) -> CharNgram:
        return cls(_read_lines(paths, "language model text"), order, alphabet)

    def prob(self, history: str, char: str) -> float:
        history = (self.END * (self.order - 1) + history)[len(history):]  # the last order - 1 characters
        key = (history, char)
        if key not in self._cache:
            p = 1.0 / self.vocab_size
            for n in range(0, self.order):  # from the empty history up to the longest
                h = history[len(history) - n:] if n else ""
                after = self.counts.get(h)
                if after:
                    total, kinds = sum(after.values()), len(after)
                    p = (after.get(char, 0) + kinds * p) / (total + kinds)
            self._cache[key] = p
        return self._cache[key]

    def logprob(self, history: str, char: str) -> float:
        return math.log(self.prob(history, char))

    def score(self, text: str) -> float:
        """log p(text), its end included: what the beam search adds up one character at a time."""
        return sum(self.logprob(text[:i], c) for i, c in enumerate(text)) + self.logprob(text, self.END)


def _read_lines(paths: Sequence[str | os.PathLike], what: str) -> list[str]:
    lines = []
    for p in paths:
        try:
            lines += Path(p).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise RnnkitError(f"no such {what}: {p}") from None
        except (OSError, UnicodeDecodeError) as e:
            raise RnnkitError(f"cannot read {p} as UTF-8 text: {e}") from None
    return lines


class Lexicon:
    """The words a transcript may hold (a closed vocabulary): the beam search then extends a prefix
    only by a character that keeps its last word a prefix of some word, by a space only after a
    whole word, and ends only on a whole word (or nothing).

    Non-words such as "eigt" cannot come out; the acoustic scores still choose among the words.
    """

    def __init__(self, words: Iterable[str], alphabet: Alphabet) -> None:
        self.words = frozenset(w for w in words if w)
        if not self.words:
            raise RnnkitError("the lexicon holds no words")
        for w in sorted(self.words):
            outside = sorted({c for c in w if c not in alphabet})
            if outside:
                raise RnnkitError(f"lexicon word {w!r} has characters the model cannot output: {''.join(outside)!r}")
        self.prefixes = frozenset(w[:i] for w in self.words for i in range(len(w) + 1))

    @classmethod
    def from_files(cls, paths: Sequence[str | os.PathLike], alphabet: Alphabet) -> Lexicon:
        """Words separated by white space (one a line, or many)."""
        return cls([w for line in _read_lines(paths, "lexicon") for w in line.split()], alphabet)

    def allows(self, text: str, char: str) -> bool:
        """Whether ``text + char`` can still become a sequence of words."""
        word = text.rsplit(" ", 1)[-1]
        return word in self.words if char == " " else word + char in self.prefixes

    def complete(self, text: str) -> bool:
        return not text or text.rsplit(" ", 1)[-1] in self.words


def _logsumexp(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    m = max(a, b)
    return m + math.log(math.exp(a - m) + math.exp(b - m))


def beam_search(log_probs: Tensor, alphabet: Alphabet, beam: int = 8, lm: CharNgram | None = None,
                lm_weight: float = 0.5, length_bonus: float = 0.0, prune: float = -12.0,
                lexicon: Lexicon | None = None) -> list[tuple[list[int], float]]:
    """CTC prefix beam search over ``(T, C)`` log-probabilities: the prefixes left in the beam at
    the end, as label ids with their scores, best first.

    Each prefix keeps ``(log p ending in blank, log p ending in a label)``; extending it by the
    label it ends with only counts paths through a blank (the rule that separates "ee" from "e").
    Labels below ``prune`` log-probability at a frame are not tried there. With a ``lexicon``
    only prefixes that spell its words are kept, and the result ends on a whole word when any
    prefix in the beam does.
    """
    lp = log_probs.detach().float().cpu().numpy()
    neg = -math.inf
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, neg)}
    lm_score: dict[tuple[int, ...], float] = {(): 0.0}
    text: dict[tuple[int, ...], str] = {(): ""}  # each prefix's characters, built as it grows

    def total(prefix: tuple[int, ...], pb: float, pnb: float) -> float:
        return _logsumexp(pb, pnb) + lm_weight * lm_score[prefix] + length_bonus * len(prefix)

    for frame in lp:
        nxt: dict[tuple[int, ...], list[float]] = defaultdict(lambda: [neg, neg])
        candidates = [c for c in range(len(frame)) if c != Alphabet.blank and frame[c] >= prune]
        for prefix, (pb, pnb) in beams.items():
            both = _logsumexp(pb, pnb)
            entry = nxt[prefix]  # stay: a blank, or the last label repeated without a blank
            entry[0] = _logsumexp(entry[0], both + frame[Alphabet.blank])
            if prefix:
                entry[1] = _logsumexp(entry[1], pnb + frame[prefix[-1]])
            history = text[prefix]
            for c in candidates:
                char = alphabet.symbols[c - 1]
                if lexicon is not None and not lexicon.allows(history, char):
                    continue
                longer = (*prefix, c)
                if longer not in lm_score:
                    lm_score[longer] = lm_score[prefix] + (lm.logprob(history, char) if lm else 0.0)
                    text[longer] = history + char
                via = pb if prefix and c == prefix[-1] else both
                e = nxt[longer]
                e[1] = _logsumexp(e[1], via + frame[c])
        ranked = sorted(nxt.items(), key=lambda kv: total(kv[0], *kv[1]), reverse=True)[:beam]
        beams = {k: (v[0], v[1]) for k, v in ranked}

    def final(prefix: tuple[int, ...]) -> float:
        end = lm_weight * lm.logprob(text[prefix], CharNgram.END) if lm else 0.0
        return total(prefix, *beams[prefix]) + end

    def whole(prefix: tuple[int, ...]) -> bool:
        return lexicon is None or lexicon.complete(text[prefix])

    ranked = sorted(beams, key=lambda prefix: (whole(prefix), final(prefix)), reverse=True)
    return [(list(prefix), final(prefix)) for prefix in ranked]


def beam_decode(log_probs: Tensor, alphabet: Alphabet, beam: int = 8, lm: CharNgram | None = None,
                lm_weight: float = 0.5, length_bonus: float = 0.0, prune: float = -12.0,
                lexicon: Lexicon | None = None) -> list[int]:
    """The best prefix of :func:`beam_search`."""
    return beam_search(log_probs, alphabet, beam, lm, lm_weight, length_bonus, prune, lexicon)[0][0]


def combine(log_probs: Sequence[Tensor], proposals: Iterable[Sequence[int]], alphabet: Alphabet,
            lm: CharNgram | None = None, lm_weight: float = 0.5, length_bonus: float = 0.0,
            lexicon: Lexicon | None = None) -> list[int]:
    """Sequence-level combination of several models' ``(T_m, C)`` log-probabilities for one recording:
    the proposal (label ids) with the best

        score(y) = mean over models of log p_m(y | audio) + lm_weight * log p_lm(y) + length_bonus * |y|,

    p_m being CTC's probability summed over every alignment (with a lexicon, the best proposal
    that ends on a whole word, if any does). A model with too few frames for a proposal (another
    stride, a trimmed clip) gives it probability 0; proposals that more models can produce come
    first, and the mean is over those models. Frame posteriors are not averaged: CTC models put
    their label spikes at different frames, which an average would blur.
    """
    unique = sorted({tuple(ids) for ids in proposals})
    if not unique:
        raise ValueError("no proposals to choose from")
    whole = [ids for ids in unique if lexicon.complete(alphabet.decode(list(ids)))] if lexicon is not None else []

    def score(ids: tuple[int, ...]) -> tuple[int, float]:
        possible = [ll for ll in (transcript_log_likelihood(lp, ids) for lp in log_probs) if ll != -math.inf]
        if not possible:
            return 0, -math.inf
        language = lm_weight * lm.score(alphabet.decode(list(ids))) if lm is not None else 0.0
        return len(possible), sum(possible) / len(possible) + language + length_bonus * len(ids)

    return list(max(whole or unique, key=score))


# ---------------------------------------------------------------- data

def load_utterances(data: str | os.PathLike, format: str = "transcripts", split: str = "all",
                    speakers: Iterable[str] | None = None, exclude_speakers: Iterable[str] | None = None,
                    transcript: str = "words", labels: str | Alphabet | None = None) -> list[Utterance]:
    """Utterances of a transcripts folder (``path<TAB>text``) or of an FSDD folder (by split and speaker)."""
    if format not in FORMATS:
        raise RnnkitError(f"format must be one of {', '.join(FORMATS)}, not {format!r}")
    if format == "fsdd":
        return fsdd_utterances(data, split, speakers, exclude_speakers, transcript)
    if speakers or exclude_speakers or split != "all":
        raise RnnkitError("--split and the speaker filters are for --format fsdd")
    return read_transcripts(data, labels)


def check_labels(utterances: Sequence[Utterance], alphabet: Alphabet) -> None:
    for u in utterances:
        bad = next((c for c in u.text if c not in alphabet), None)
        if bad is not None:
            raise RnnkitError(f"{u.path.name}: character {bad!r} in {u.text!r} is not in the label set "
                              f"{''.join(alphabet.symbols)!r}")


def extract(utterances: Sequence[Utterance], extractor: FeatureConfig | CausalFeatures) -> list[Tensor]:
    """Features of every utterance (audio read once, resampled to the features' rate)."""
    return [extractor(u.load(extractor.sample_rate)) for u in utterances]


def _key(seed: int, epoch: int, index: int) -> torch.Generator:
    state = np.random.SeedSequence([seed, epoch, index]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state) >> 1)


@dataclass
class Augmentation:
    """What training does to an utterance's features, drawn from ``(seed, epoch, item)`` so that a
    resumed run repeats it: stretched in time, bands warped, silence added, then masked."""

    spec_augment: bool = True   # SpecAugment time and frequency masks (Park et al. 2019)
    speed_perturb: float = 0.0  # stretched in time by a factor in 1 +- speed_perturb (Ko et al. 2015)
    vtlp: float = 0.0           # mel bands warped by a factor in 1 +- vtlp (Jaitly & Hinton 2013)
    pad_silence_ms: float = 0.0  # up to this much silence added at each end (its quietest frame, repeated)

    def check(self, features: FeatureConfig) -> None:
        if not 0 <= self.speed_perturb < 1 or not 0 <= self.vtlp < 1:
            raise RnnkitError("speed_perturb and vtlp must be in [0, 1)")
        if self.pad_silence_ms < 0:
            raise RnnkitError(f"silence padding must be at least 0 ms, not {self.pad_silence_ms:g}")
        if self.vtlp and features.kind != "logmel":
            raise RnnkitError("vtlp warps mel bands: it needs log-mel features (--features logmel)")

    def __call__(self, feats: Tensor, seed: int, epoch: int, index: int, min_frames: int,
                 features: FeatureConfig) -> Tensor:
        """One training utterance's features, never shortened below ``min_frames``."""
        if self.speed_perturb:
            feats = time_stretch(feats, _factor(self.speed_perturb, seed + 1, epoch, index), min_frames)
        if self.vtlp:
            feats = frequency_warp(feats, _factor(self.vtlp, seed + 2, epoch, index), features.band_centers)
        most = round(self.pad_silence_ms / features.hop_ms)
        if most:
            before, after = torch.randint(0, most + 1, (2,), generator=_key(seed + 3, epoch, index)).tolist()
            feats = pad_silence(feats, before, after, features.loudness_columns)
        if self.spec_augment:
            feats = spec_augment(feats, _key(seed, epoch, index), **SPEC_AUGMENT)
        return feats


def _factor(spread: float, seed: int, epoch: int, index: int) -> float:
    return 1 + spread * (2 * torch.rand(1, generator=_key(seed, epoch, index)).item() - 1)


# ---------------------------------------------------------------- the task

@register_task
class SpeechTask(Task):
    """CTC training of an :class:`AcousticModel` on feature matrices held in memory and in ``data.safetensors``.

    Batches come from :class:`LengthBuckets` (similar durations together, reshuffled from the
    seed and the epoch), SpecAugment masks from ``(seed, epoch, item)``: a resumed run reads the
    same batches with the same masks. The metric is the validation word error rate of greedy
    decoding.
    """

    name, command, unit = "speech", "rnnkit speech train", "utterances"
    metric, higher_is_better, headline = "val_wer", False, "val_wer"

    def __init__(self, model: AcousticModel, train: tuple[list[Tensor], list[str]],
                 val: tuple[list[Tensor], list[str]], batch_size: int = 32,
                 augmentation: Augmentation | None = None, seed: int = 0,
                 description: dict[str, Any] | None = None, sortagrad: bool = False) -> None:
        self.model, self.seed, self.description = model, seed, description
        self.augmentation = augmentation or Augmentation()
        self.alphabet = model.cfg.alphabet
        # held (and saved) in fp16, so a resumed run trains on exactly the values an unbroken one does
        self.train_feats, self.train_texts = [f.to(torch.float16) for f in train[0]], list(train[1])
        self.val_feats, self.val_texts = [f.to(torch.float16) for f in val[0]], list(val[1])
        self.train_targets = [torch.tensor(self.alphabet.encode(t), dtype=torch.long) for t in self.train_texts]
        # the fewest feature frames CTC can align each transcript with: a label a step, a blank between repeats
        self.min_frames = [model.cfg.stride * ctc_min_frames(t) for t in self.train_targets]
        self.batch_size = batch_size
        self.buckets = LengthBuckets([len(f) for f in self.train_feats], batch_size=min(batch_size, len(train[0])),
                                     seed=seed, shortest_first=int(sortagrad))

    def batches_per_epoch(self) -> int:
        return len(self.buckets)

    def _batch(self, feats: list[Tensor]) -> tuple[Tensor, Tensor]:
        x = nn.utils.rnn.pad_sequence(feats, batch_first=True).to(self.device, torch.float32)
        return x, torch.tensor([len(f) for f in feats], device=self.device)

    def training_loss(self, epoch: int, index: int) -> tuple[Tensor, int]:
        idx = self.buckets.batch(epoch, index)
        idx = idx[shard(np.arange(len(idx)), self.rank, self.world)]
        x, lengths = self._batch([self.augmented(self.train_feats[i].float(), epoch, int(i)) for i in idx])
        targets = [self.train_targets[i] for i in idx]
        log_probs, out_lengths, _ = self.model(x, lengths)
        y = nn.utils.rnn.pad_sequence(targets, batch_first=True).to(self.device) if any(len(t) for t in targets) \
            else torch.zeros(len(idx), 1, dtype=torch.long, device=self.device)
        y_lengths = torch.tensor([len(t) for t in targets], device=self.device)
        return ctc_loss(log_probs, out_lengths, y, y_lengths), len(idx)

    def augmented(self, feats: Tensor, epoch: int, index: int) -> Tensor:
        """Training utterance ``index``'s features as epoch ``epoch`` reads them."""
        return self.augmentation(feats, self.seed, epoch, index, self.min_frames[index], self.model.cfg.feature_config)

    def evaluate(self) -> dict[str, float]:
        """CTC loss, and word and character error rates of greedy decoding, on the validation utterances."""
        hyps, loss = decode_all(self.model, self.val_feats, self.val_texts, self.alphabet, self.device)
        return {"val_loss": loss, **error_rates(self.val_texts, hyps, prefix="val_")}

    def save_data(self, run_dir: Path) -> None:
        """Features (fp16, as held) and transcripts of the training and validation sets."""
        tensors, texts = {}, {}
        for part, feats, txt in (("train", self.train_feats, self.train_texts), ("val", self.val_feats,
                                                                                 self.val_texts)):
            tensors[f"{part}_features"] = torch.cat(feats)
            tensors[f"{part}_lengths"] = torch.tensor([len(f) for f in feats])
            texts[f"{part}_texts"] = "\n".join(txt)
        save_tensors(run_dir / DATA, tensors, metadata=texts)

    def config(self) -> dict[str, Any]:
        if self.description is None:
            return super().config()
        return {**self.description, "data": DATA}

    @classmethod
    def from_config(cls, config: dict[str, Any], run_dir: Path) -> SpeechTask:
        t, meta = load_tensors(run_dir / DATA, "the run's training data")
        parts = []
        for part in ("train", "val"):
            feats = list(torch.split(t[f"{part}_features"], t[f"{part}_lengths"].tolist()))
            texts = meta[f"{part}_texts"].split("\n") if feats else []
            parts.append((feats, texts))
        model = AcousticModel(ModelConfig(**config["model"]))
        o = config["options"]
        augmentation = Augmentation(o["augment"], o.get("speed_perturb", 0.0), o.get("vtlp", 0.0),
                                    o.get("pad_silence_ms", 0.0))
        return cls(model, parts[0], parts[1], o["batch_size"], augmentation, o["seed"],
                   description={k: v for k, v in config.items() if k != "data"}, sortagrad=o.get("sortagrad", False))


@torch.no_grad()
def frame_log_probs(model: AcousticModel, feats: Sequence[Tensor], device: torch.device,
                    batch_size: int = 64) -> list[Tensor]:
    """Each feature matrix's ``(frames, classes)`` log-probabilities, run in batches of similar lengths."""
    order = sorted(range(len(feats)), key=lambda i: len(feats[i]))
    out: list[Tensor] = [torch.empty(0)] * len(feats)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        x = nn.utils.rnn.pad_sequence([feats[i].float() for i in idx], batch_first=True).to(device)
        log_probs, out_lengths, _ = model(x, torch.tensor([len(feats[i]) for i in idx], device=device))
        for row, i in enumerate(idx):
            out[i] = log_probs[row, :out_lengths[row]]
    return out


def transcript_log_likelihood(log_probs: Tensor, ids: Sequence[int]) -> float:
    """log p(ids | audio) under CTC, summed over every alignment; -inf where the frames are too few."""
    targets = torch.tensor([list(ids) or [0]], dtype=torch.long, device=log_probs.device)
    nll = F.ctc_loss(log_probs[:, None], targets, torch.tensor([len(log_probs)]), torch.tensor([len(ids)]),
                     blank=Alphabet.blank, reduction="sum")
    return -nll.item()


def decode_all(model: AcousticModel, feats: Sequence[Tensor], texts: Sequence[str] | None, alphabet: Alphabet,
               device: torch.device, batch_size: int = 64, decoder: Any = None) -> tuple[list[str], float]:
    """Hypotheses for every feature matrix (greedy unless ``decoder`` maps ``(T, C)`` log-probs to ids),
    and the mean CTC loss against ``texts`` (NaN without texts)."""
    log_probs = frame_log_probs(model, feats, device, batch_size)
    hyps = [alphabet.decode((decoder or greedy_decode)(lp)) for lp in log_probs]
    return hyps, (utterance_loss(log_probs, [alphabet.encode(t) for t in texts]) if texts is not None else math.nan)


def utterance_loss(log_probs: Sequence[Tensor], targets: Sequence[Sequence[int]]) -> float:
    """Mean CTC loss per utterance; an unreachable reference (audio too short for it) counts as zero, not infinity."""
    likelihoods = [transcript_log_likelihood(lp, ids) for lp, ids in zip(log_probs, targets, strict=True)]
    return -sum(ll for ll in likelihoods if ll != -math.inf) / max(1, len(likelihoods))  # NaN stays NaN


def error_rates(refs: Sequence[str], hyps: Sequence[str], prefix: str = "") -> dict[str, float]:
    """Word and character error rates (jiwer, over the whole set) and the share of wrong utterances."""
    import jiwer

    pairs = [(r, h) for r, h in zip(refs, hyps, strict=True) if r.strip()]
    # jiwer needs a non-empty reference; an empty one is scored by the utterance error alone
    wer = jiwer.wer([r for r, _ in pairs], [h for _, h in pairs]) if pairs else math.nan
    cer = jiwer.cer([r for r, _ in pairs], [h for _, h in pairs]) if pairs else math.nan
    ser = sum(r.split() != h.split() for r, h in zip(refs, hyps, strict=True)) / max(1, len(refs))
    return {f"{prefix}wer": float(wer), f"{prefix}cer": float(cer), f"{prefix}ser": float(ser)}


# ---------------------------------------------------------------- the user-facing API

MODEL_FIELDS = {f.name for f in fields(ModelConfig)}
TRAIN_FIELDS = {f.name for f in fields(TrainConfig)}


@dataclass
class Transcript:
    """One file's transcription and how long it took (features, network and decoding)."""

    path: str
    text: str
    seconds: float
    audio_seconds: float


class SpeechRecognizer:
    """A CTC speech recogniser with the fit / transcribe / evaluate shape of the Forecaster.

    >>> rec = SpeechRecognizer(max_time=600).fit("fsdd/", format="fsdd", split="train", out="runs/digits")
    >>> rec.evaluate("fsdd/", format="fsdd", split="test")["wer"]
    >>> rec.transcribe(["hello.wav"], beam=8)[0].text
    >>> SpeechRecognizer.load("runs/digits").plot("hello.wav", "hello.png")

    Model options: ``cell`` (any registered cell), ``hidden``, ``layers``, ``dropout``, ``stride``
    (frames joined per recurrent step), ``streaming`` (one direction, causal features),
    ``conv_channels`` (a :class:`ConvFrontEnd` of that many channels before the recurrent layers;
    0: none). Feature
    options: ``features`` (``"logmel"`` or ``"mfcc"``), ``n_mels``, ``n_mfcc``, ``deltas``,
    ``sample_rate``, ``trim_db`` (drop the silence at both ends of every clip, training and
    recognising alike: frames more than that many dB below the loudest). ``labels``: the output
    characters (default: those of the training transcripts). ``augment``: SpecAugment masks while
    training; ``speed_perturb``: each training utterance's features stretched in time by a factor
    drawn from ``1 +- speed_perturb`` (0: off); ``vtlp``: its mel bands warped in frequency by a
    factor drawn from ``1 +- vtlp``, as a longer or shorter vocal tract would shift them (0: off;
    log-mel features only); ``pad_silence_ms``: up to that much silence (the utterance's quietest
    frame, repeated) added at its start and at its end; ``sortagrad``: the first epoch's batches
    from the shortest utterances to the longest.
    Training options are those of :class:`TrainConfig`; with no budget, 10 minutes.
    """

    def __init__(self, cell: str = "lstm", hidden: int = 128, layers: int = 2, dropout: float = 0.1, stride: int = 2,
                 streaming: bool = False, conv_channels: int = 0, features: str = "logmel", n_mels: int = 40,
                 n_mfcc: int = 13, deltas: int = 0, sample_rate: int = 8000, trim_db: float | None = None,
                 labels: str | None = None,
                 augment: bool = True, batch_size: int = 32, val_fraction: float = 0.1, out: str | Path | None = None,
                 progress: bool | None = False, weight_drop: float = 0.0, variational_dropout: float = 0.0,
                 speed_perturb: float = 0.0, vtlp: float = 0.0, pad_silence_ms: float = 0.0, sortagrad: bool = False,
                 **train_options: Any) -> None:
        if cell not in CELLS:
            raise RnnkitError(f"cell must be one of {', '.join(CELLS)}, not {cell!r}")
        for name, v in (("hidden", hidden), ("layers", layers), ("stride", stride), ("batch_size", batch_size),
                        ("sample_rate", sample_rate)):
            if v <= 0:
                raise RnnkitError(f"{name} must be positive, got {v}")
        if conv_channels < 0:
            raise RnnkitError(f"conv_channels must be 0 (no front end) or positive, got {conv_channels}")
        if conv_channels and streaming:
            raise RnnkitError("a streaming model cannot have a convolutional front end (it looks two frames ahead)")
        if conv_channels and (features != "logmel" or deltas):
            raise RnnkitError("the convolutional front end reads neighbouring mel bands: use --features logmel "
                              "without --deltas")
        if not 0 <= dropout < 1 or not 0 <= val_fraction < 1:
            raise RnnkitError("dropout and val_fraction must be in [0, 1)")
        unknown = set(train_options) - TRAIN_FIELDS
        if unknown:
            raise TypeError(f"unknown options: {', '.join(sorted(unknown))}")
        self.feature_config = FeatureConfig(sample_rate=sample_rate, kind=features, n_mels=n_mels, n_mfcc=n_mfcc,
                                            deltas=deltas, normalize=not streaming, trim_db=trim_db)
        feature_extractor(self.feature_config, streaming)  # refuses deltas or trimming for a streaming model now
        self.alphabet = Alphabet(labels) if labels is not None else None
        reg = LayerRegularisation.checked(cell, weight_drop=weight_drop, variational_dropout=variational_dropout)
        self.options = {"cell": cell, "hidden": hidden, "layers": layers, "dropout": dropout, "stride": stride,
                        "streaming": streaming, "conv_channels": conv_channels, **reg.layer_options()}
        self.augmentation = Augmentation(augment, speed_perturb, vtlp, pad_silence_ms)
        self.augmentation.check(self.feature_config)
        self.batch_size, self.val_fraction, self.sortagrad = batch_size, val_fraction, sortagrad
        self.out, self.progress = out, progress
        self.train_config = TrainConfig(**{"precision": "fp32", "lr": 3e-3, "warmup_steps": 100,
                                           **{k: v for k, v in train_options.items() if v is not None}})
        if not self.train_config.has_budget:
            self.train_config.max_time = 600.0
        self.train_config.validate()
        self.model: AcousticModel | None = None
        self.result: TrainResult | None = None
        self.run_dir: Path | None = None

    # --- training --------------------------------------------------------------------------
    @removes_failed_start
    def fit(self, data: str | os.PathLike, format: str = "transcripts", split: str = "train",
            speakers: Iterable[str] | None = None, exclude_speakers: Iterable[str] | None = None,
            transcript: str = "words") -> SpeechRecognizer:
        """Train on a transcripts folder or an FSDD folder (``split``: FSDD's train takes 5-49 by default)."""
        utts = load_utterances(data, format, split if format == "fsdd" else "all", speakers, exclude_speakers,
                               transcript, self.alphabet)
        alphabet = self.alphabet or Alphabet(sorted({c for u in utts for c in u.text}) or " ")
        check_labels(utts, alphabet)
        cfg = ModelConfig(labels="".join(alphabet.symbols), features=self.feature_config.to_dict(), **self.options)
        extractor = feature_extractor(self.feature_config, cfg.streaming)
        feats = extract(utts, extractor)
        self._check_feasible(utts, feats, alphabet, cfg.stride)
        texts = [u.text for u in utts]
        rng = np.random.default_rng(self.train_config.seed)
        order = rng.permutation(len(utts))
        n_val = int(round(self.val_fraction * len(utts))) if len(utts) > 1 else 0
        n_val = min(n_val, len(utts) - 1)
        val_idx, train_idx = sorted(order[:n_val]), sorted(order[n_val:])
        if not val_idx:  # nothing held out: the training set stands in (said so by no val split)
            val_idx = train_idx
        torch.manual_seed(self.train_config.seed)
        model = AcousticModel(cfg)
        if cfg.streaming:  # the causal model's normalisation: one mean and deviation from the training frames
            allf = torch.cat([feats[i] for i in train_idx])
            model.feat_mean.copy_(allf.mean(0))
            model.feat_std.copy_(allf.std(0).clamp_min(1e-3))
        aug = self.augmentation
        description = {"model": asdict(cfg), "options": {"batch_size": self.batch_size, "augment": aug.spec_augment,
                                                         "speed_perturb": aug.speed_perturb, "vtlp": aug.vtlp,
                                                         "pad_silence_ms": aug.pad_silence_ms,
                                                         "seed": self.train_config.seed, "sortagrad": self.sortagrad}}
        task = SpeechTask(model, ([feats[i] for i in train_idx], [texts[i] for i in train_idx]),
                          ([feats[i] for i in val_idx], [texts[i] for i in val_idx]), self.batch_size, aug,
                          self.train_config.seed, description, self.sortagrad)
        if self.out is None:
            self.run_dir = Path(tempfile.mkdtemp(prefix="rnnkit-speech-"))
            weakref.finalize(self, shutil.rmtree, str(self.run_dir), True)
        else:
            self.run_dir = prepare_run_folder(self.out, f"{SpeechTask.command} --resume")
        task.save_data(self.run_dir)
        self.result = fit(task, self.train_config, self.run_dir, progress=self.progress, new_folder=False)
        self.model = model.cpu().eval()  # recognising runs on the CPU, one file at a time
        return self

    @staticmethod
    def _check_feasible(utts: Sequence[Utterance], feats: Sequence[Tensor], alphabet: Alphabet, stride: int) -> None:
        """Refuse clips too short for their transcript under CTC (its frames must cover labels + repeats)."""
        need = [ctc_min_frames(alphabet.encode(u.text)) for u in utts]
        bad = [(u, len(f), k) for u, f, k in zip(utts, feats, need, strict=True) if math.ceil(len(f) / stride) < k]
        if bad:
            u, n, k = bad[0]
            fits = next((s for s in range(stride - 1, 0, -1)
                         if all(math.ceil(len(f) / s) >= m for f, m in zip(feats, need, strict=True))), None)
            raise RnnkitError(f"{len(bad)} clip(s) too short for their transcript under CTC, e.g. {u.path.name}: "
                              f"{math.ceil(n / stride)} output frames for {u.text!r} (needs {k}: a label each "
                              "and a blank between repeats)" + (f"; --stride {fits} fits every clip" if fits else ""))

    @classmethod
    def resume(cls, run: str | Path, progress: bool | None = None, **changes: Any) -> SpeechRecognizer:
        """Continue an interrupted ``fit`` in its run folder (only the budget and device may change)."""
        task, result = resume_run(run, progress, expect=SpeechTask, **changes)
        rec = cls.load(run)
        rec.result = result
        return rec

    @classmethod
    def load(cls, run: str | Path, checkpoint: str = "best") -> SpeechRecognizer:
        """A trained recogniser from its run folder (``best.pt``, or ``last.pt``) or a checkpoint file."""
        run = Path(run)
        state = load_checkpoint(run_checkpoint(run, checkpoint))
        meta = checkpoint_meta(state)
        if meta.get("task") != SpeechTask.name:
            raise RnnkitError(f"{run} is not a speech recogniser's run (task {meta.get('task')!r})")
        cfg = ModelConfig(**meta["model"])
        model = AcousticModel(cfg)
        model.load_state_dict(state["model"])
        rec = cls.__new__(cls)
        rec.feature_config, rec.alphabet, rec.options = cfg.feature_config, cfg.alphabet, asdict(cfg)
        rec.model, rec.result, rec.run_dir, rec.out, rec.progress = model.eval(), None, run, run, False
        return rec

    def _require(self) -> AcousticModel:
        if self.model is None:
            raise RnnkitError("the recogniser is not trained: call fit() or SpeechRecognizer.load(run)")
        return self.model

    @property
    def extractor(self) -> FeatureConfig | CausalFeatures:
        return feature_extractor(self.feature_config, self._require().cfg.streaming)

    # --- recognising -----------------------------------------------------------------------
    def _language(self, lm: CharNgram | str | Sequence[str] | None, lm_order: int,
                  lexicon: Lexicon | str | Sequence[str] | None) -> tuple[CharNgram | None, Lexicon | None]:
        """The language model and the lexicon, built from their files where files are given."""
        alphabet = self._require().cfg.alphabet
        if isinstance(lm, (str, os.PathLike)):
            lm = [lm]
        if lm is not None and not isinstance(lm, CharNgram):
            lm = CharNgram.from_files(lm, lm_order, alphabet)
        if isinstance(lexicon, (str, os.PathLike)):
            lexicon = [lexicon]
        if lexicon is not None and not isinstance(lexicon, Lexicon):
            lexicon = Lexicon.from_files(lexicon, alphabet)
        return lm, lexicon

    def decoder(self, beam: int = 1, lm: CharNgram | str | Sequence[str] | None = None, lm_order: int = 4,
                lm_weight: float = 0.5, length_bonus: float = 0.0,
                lexicon: Lexicon | str | Sequence[str] | None = None, nbest: bool = False) -> Any:
        """A function from ``(T, C)`` log-probabilities to label ids: greedy for ``beam=1`` without an LM or a
        lexicon. ``lm`` and ``lexicon`` are objects or the text files to build them from. With ``nbest``
        it returns every hypothesis the beam kept, best first (greedy: its one)."""
        alphabet = self._require().cfg.alphabet
        if beam < 1:
            raise RnnkitError(f"the beam width must be at least 1, not {beam}")
        lm, lexicon = self._language(lm, lm_order, lexicon)
        if beam == 1 and lm is None and lexicon is None:
            return (lambda lp: [greedy_decode(lp)]) if nbest else greedy_decode

        def ranked(lp: Tensor) -> list[list[int]]:
            return [ids for ids, _ in beam_search(lp, alphabet, beam, lm, lm_weight, length_bonus, lexicon=lexicon)]

        return ranked if nbest else (lambda lp: ranked(lp)[0])

    def _decision(self, ensemble: Sequence[SpeechRecognizer | str | os.PathLike] = (), beam: int = 1,
                  lm: CharNgram | str | Sequence[str] | None = None, lm_order: int = 4, lm_weight: float = 0.5,
                  length_bonus: float = 0.0, lexicon: Lexicon | str | Sequence[str] | None = None,
                  ) -> tuple[list[SpeechRecognizer], Any]:
        """The recognisers that decide (this one, then the ``ensemble``'s) and a function from their
        log-probabilities for one recording (one ``(T, C)`` tensor each) to label ids.

        Alone, it is :meth:`decoder`. With an ensemble, each member proposes the hypotheses its own
        beam kept (greedy: its best path) and all of them score every proposal (:func:`combine`).
        """
        alphabet = self._require().cfg.alphabet
        members = [self] + [m if isinstance(m, SpeechRecognizer) else SpeechRecognizer.load(m) for m in ensemble]
        labels = self.model.cfg.labels
        other = next((m for m in members if m._require().cfg.labels != labels), None)
        if other is not None:
            raise RnnkitError(f"an ensemble's models must share their output characters: {other.run_dir} has "
                              f"{other.model.cfg.labels!r}, {self.run_dir} {labels!r}")
        lm, lexicon = self._language(lm, lm_order, lexicon)
        options = {"beam": beam, "lm": lm, "lm_weight": lm_weight, "length_bonus": length_bonus, "lexicon": lexicon}
        if len(members) == 1:
            decode = self.decoder(**options)
            return members, lambda log_probs: decode(log_probs[0])
        proposers = [m.decoder(**options, nbest=True) for m in members]

        def vote(log_probs: Sequence[Tensor]) -> list[int]:
            proposals = [ids for propose, lp in zip(proposers, log_probs, strict=True) for ids in propose(lp)]
            return combine(log_probs, proposals, alphabet, lm, lm_weight, length_bonus, lexicon)

        return members, vote

    @torch.no_grad()
    def transcribe(self, files: Sequence[str | os.PathLike], **decoding: Any) -> list[Transcript]:
        """Each file's text with its wall-clock time. Decoding options as :meth:`decoder`, and
        ``ensemble``: more recognisers (or their run folders) that decide with this one, each
        proposing its beam's hypotheses and all scoring every proposal (:func:`combine`)."""
        members, decide = self._decision(**decoding)
        out = []
        for f in map(Path, files):
            start = time.perf_counter()
            log_probs = []
            for m in members:
                wave, rate = load_audio(f, m.feature_config.sample_rate)
                log_probs += frame_log_probs(m.model, [m.extractor(wave)], torch.device("cpu"))
            text = self.model.cfg.alphabet.decode(decide(log_probs))
            out.append(Transcript(str(f), text, time.perf_counter() - start, len(wave) / rate))
        return out

    def evaluate(self, data: str | os.PathLike, format: str = "transcripts", split: str = "test",
                 speakers: Iterable[str] | None = None, exclude_speakers: Iterable[str] | None = None,
                 transcript: str = "words", **decoding: Any) -> dict[str, Any]:
        """Word, character and utterance error rates on labelled data (decoding options as
        :meth:`transcribe`); ``hypotheses`` beside ``references``; ``loss``: this model's mean CTC loss."""
        model = self._require()
        utts = load_utterances(data, format, split if format == "fsdd" else "all", speakers, exclude_speakers,
                               transcript)
        alphabet = model.cfg.alphabet
        check_labels(utts, alphabet)
        members, decide = self._decision(**decoding)
        feats = [extract(utts, m.extractor) for m in members]
        refs = [u.text for u in utts]
        start = time.perf_counter()
        per_member = [frame_log_probs(m.model, f, torch.device("cpu")) for m, f in zip(members, feats, strict=True)]
        hyps = [alphabet.decode(decide(log_probs)) for log_probs in zip(*per_member, strict=True)]
        loss = utterance_loss(per_member[0], [alphabet.encode(r) for r in refs])
        return {"utterances": len(utts), "loss": loss, **error_rates(refs, hyps),
                "seconds": time.perf_counter() - start, "references": refs, "hypotheses": hyps,
                "paths": [str(u.path) for u in utts]}

    @torch.no_grad()
    def stream(self, samples: Tensor | np.ndarray, chunk_s: float = 0.1) -> Iterator[str]:
        """Transcribe audio as it arrives: after each ``chunk_s`` seconds, the greedy text so far.

        Features of complete frames are computed from the samples received, joined ``stride`` at
        a time, and run through the one-direction network from its carried state; the last
        partial frame is taken when the audio ends. The final text equals transcribing the whole
        file at once (greedy).
        """
        model = self._require()
        if not model.cfg.streaming:
            raise RnnkitError("this model is bidirectional: it needs the whole recording; train with --streaming "
                              "for a model that transcribes while audio arrives")
        if chunk_s <= 0:
            raise RnnkitError(f"the chunk length must be positive, not {chunk_s}")
        fc, s = self.feature_config, model.cfg.stride
        extractor = self.extractor
        x = torch.as_tensor(samples, dtype=torch.float32).flatten()
        chunk = max(1, round(chunk_s * fc.sample_rate))
        done_frames, pending = 0, torch.zeros(0, model.cfg.feature_config.dim)
        state, ids = None, torch.zeros(0, dtype=torch.long)

        def run(frames: Tensor, state: Any) -> tuple[Tensor, Any]:
            lp, n, state = model(frames[None], torch.tensor([len(frames)]), state)
            return lp[0, :n[0]].argmax(-1), state

        for end in range(chunk, len(x) + chunk, chunk):
            final = end >= len(x)
            got = x[:min(end, len(x))]
            # complete frames only, until the end: the last frame is zero-padded as in training
            n_frames = fc.num_frames(len(got)) if final else max(0, (len(got) - fc.win_length) // fc.hop_length + 1)
            if n_frames > done_frames:
                seg = got[done_frames * fc.hop_length:]
                new = extractor(seg)[:n_frames - done_frames]
                pending, done_frames = torch.cat([pending, new]), n_frames
            usable = len(pending) if final else len(pending) // s * s
            if usable:
                best, state = run(pending[:usable], state)
                ids, pending = torch.cat([ids, best]), pending[usable:]
            yield model.cfg.alphabet.decode(collapse(ids))
            if final:
                break

    @torch.no_grad()
    def plot(self, file: str | os.PathLike, path: str | os.PathLike, **decoding: Any) -> str:
        """The spectrogram, the CTC frame posteriors and the best path under it, as a PNG; returns the text."""
        if decoding.pop("ensemble", None):
            raise RnnkitError("the plot shows one model's posteriors: decode it without an ensemble")
        model = self._require()
        wave, _ = load_audio(file, self.feature_config.sample_rate)
        feats = self.extractor(wave)
        lp, n, _ = model(feats[None], torch.tensor([len(feats)]))
        lp = lp[0, :n[0]]
        text = model.cfg.alphabet.decode(self.decoder(**decoding)(lp))
        shown = (feats - model.feat_mean) / model.feat_std
        plot_spectrogram(shown, path, posteriors=lp.exp(), labels=model.cfg.alphabet.labels,
                         alignment=lp.argmax(-1), hop_s=self.feature_config.hop_ms / 1000,
                         title=f"{Path(file).name}: {text!r}")
        return text


__all__ = ["AcousticModel", "CausalFeatures", "CharNgram", "ConvFrontEnd", "ModelConfig", "SpeechRecognizer",
           "SpeechTask", "Transcript", "beam_decode", "beam_search", "combine", "ctc_loss", "error_rates",
           "frame_log_probs", "greedy_decode", "load_utterances", "transcript_log_likelihood"]
