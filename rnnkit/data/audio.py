"""Audio for speech tasks: reading WAV/FLAC, resampling, and log-mel / MFCC features computed in torch.

Reading (:func:`load_audio`) uses soundfile (libsndfile: WAV, FLAC and more); where soundfile is
not installed, the standard library's :mod:`wave` reads PCM WAV. Every file comes back as one
float32 channel in [-1, 1] (stereo is averaged), resampled on request.

Resampling is :func:`scipy.signal.resample_poly`: the ratio between two integer rates is an exact
fraction (44100 -> 8000 is 80/441), and the polyphase filter upsamples, low-passes below the
lower Nyquist frequency and downsamples in one pass, so content above the new Nyquist is removed
instead of aliasing down. Files are read once per dataset, so a well-tested resampler matters more
than a fast one; scipy is the one dependency here outside torch and numpy.

Features (:class:`FeatureConfig`) are all torch: ``torch.stft`` power spectrum of Hann-windowed
frames, a triangular mel filterbank built here (HTK mel scale by default, Slaney on request),
the log, an orthonormal DCT-II for MFCCs, optional delta features, per-utterance mean/variance
normalisation, and SpecAugment masks (:func:`spec_augment`) drawn from a seeded generator.
"""

from __future__ import annotations

import math
import os
import wave
from dataclasses import asdict, dataclass, fields
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import RnnkitError

try:
    import soundfile as _soundfile
except (ImportError, OSError):  # no soundfile, or no libsndfile under it: the stdlib reads PCM WAV
    _soundfile = None

AUDIO_SUFFIXES = (".wav", ".flac")


# ---------------------------------------------------------------- reading, resampling, writing

def _read_wave(path: Path) -> tuple[np.ndarray, int]:
    """PCM WAV through the standard library: (frames, channels) float32 in [-1, 1], and the rate."""
    try:
        with wave.open(str(path), "rb") as w:
            width, channels, rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
            raw = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as e:
        reason = str(e) or "the file ends inside its header"  # EOFError carries no message
        raise RnnkitError(f"cannot read {path} as PCM WAV (install soundfile for other formats): {reason}") from None
    if width == 1:  # 8-bit WAV is unsigned, centred on 128
        data = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 3:  # 24-bit: widen each little-endian triple to int32 by putting it in the top bytes
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3)
        wide = np.zeros((len(b), 4), np.uint8)
        wide[:, 1:] = b
        data = wide.view("<i4").ravel().astype(np.float32) / 2.0**31
    elif width in (2, 4):
        data = np.frombuffer(raw, f"<i{width}").astype(np.float32) / 2.0 ** (8 * width - 1)
    else:
        raise RnnkitError(f"cannot read {path}: {8 * width}-bit WAV samples are not supported without soundfile")
    return data.reshape(-1, channels), rate


def _read_soundfile(path: Path) -> tuple[np.ndarray, int]:
    try:
        data, rate = _soundfile.read(str(path), dtype="float32", always_2d=True)
    except (_soundfile.LibsndfileError, RuntimeError, TypeError) as e:
        reason = " ".join(str(e).split())  # libsndfile messages can span lines; the error is one
        reason = reason.split("': ", 1)[-1] if reason.startswith("Error opening") else reason  # it repeats the path
        raise RnnkitError(f"cannot read {path} as audio: {reason}") from None
    return data, rate


def resample(samples: torch.Tensor | np.ndarray, orig_rate: int, new_rate: int) -> torch.Tensor:
    """Resample a 1-D signal between integer rates with scipy's polyphase filter (anti-aliased)."""
    x = samples.numpy() if isinstance(samples, torch.Tensor) else np.asarray(samples)
    if orig_rate <= 0 or new_rate <= 0:
        raise RnnkitError(f"sample rates must be positive, not {orig_rate} and {new_rate}")
    if orig_rate != new_rate:
        try:
            from scipy.signal import resample_poly
        except ImportError:
            raise RnnkitError(f"resampling {orig_rate} Hz to {new_rate} Hz needs scipy: pip install scipy") from None
        g = math.gcd(int(orig_rate), int(new_rate))
        x = resample_poly(x, int(new_rate) // g, int(orig_rate) // g)
    return torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32))


def _refuse_truncated_wav(path: Path) -> None:
    """A WAV file shorter than its RIFF header says (a cut download or copy) would read as a few
    samples without complaint; streaming writers' placeholder sizes (0, 2**32 - 1) are not checked."""
    with open(path, "rb") as f:
        head = f.read(12)
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return
    declared = int.from_bytes(head[4:8], "little")
    size = path.stat().st_size
    if 4 < declared < 0xFFFFFFFF and size < declared + 8:
        raise RnnkitError(f"{path} is truncated: its header says {declared + 8:,} bytes, the file has {size:,}")


def load_audio(path: str | os.PathLike, sample_rate: int | None = None) -> tuple[torch.Tensor, int]:
    """One audio file as a mono float32 tensor in [-1, 1] and its rate (``sample_rate`` if given).

    Stereo and multi-channel files are averaged to one channel. Missing files, files that are not
    audio and files without a single sample are each refused with a one-line :class:`RnnkitError`.
    """
    path = Path(path)
    if not path.exists():
        raise RnnkitError(f"no such audio file: {path}")
    if path.is_dir():
        raise RnnkitError(f"{path} is a directory, not an audio file")
    _refuse_truncated_wav(path)
    if _soundfile is not None:
        data, rate = _read_soundfile(path)
    else:
        data, rate = _read_wave(path)
    if data.shape[0] == 0:
        raise RnnkitError(f"{path} holds no audio samples")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if sample_rate is None:
        return torch.from_numpy(np.ascontiguousarray(mono, dtype=np.float32)), int(rate)
    return resample(mono, int(rate), int(sample_rate)), int(sample_rate)


def save_audio(path: str | os.PathLike, samples: torch.Tensor | np.ndarray, sample_rate: int) -> None:
    """Write mono audio as 16-bit PCM, atomically; FLAC for a ``.flac`` name (needs soundfile), else WAV."""
    from ..io import atomic_write

    path = Path(path)
    x = samples.detach().cpu().numpy() if isinstance(samples, torch.Tensor) else np.asarray(samples)
    pcm = np.round(np.clip(x.astype(np.float64).ravel(), -1.0, 1.0) * 32767.0).astype("<i2")
    flac = path.suffix.lower() == ".flac"
    if flac and _soundfile is None:
        raise RnnkitError(f"writing FLAC ({path}) needs soundfile: pip install soundfile")

    def write(tmp: str) -> None:
        if flac:  # the temporary name has no audio suffix, so the format is named explicitly
            _soundfile.write(tmp, pcm, int(sample_rate), subtype="PCM_16", format="FLAC")
            return
        with wave.open(tmp, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(int(sample_rate))
            w.writeframes(pcm.tobytes())

    atomic_write(path, write)


# ---------------------------------------------------------------- mel scale and filterbank

def hz_to_mel(freq: float | np.ndarray, scale: str = "htk") -> float | np.ndarray:
    """Frequency in Hz to mels: HTK's ``2595 log10(1 + f/700)``, or Slaney's (linear below 1 kHz, log above)."""
    f = np.asarray(freq, dtype=np.float64)
    if scale == "htk":
        m = 2595.0 * np.log10(1.0 + f / 700.0)
    elif scale == "slaney":
        m = np.where(f < 1000.0, f * 3.0 / 200.0, 15.0 + np.log(np.maximum(f, 1e-9) / 1000.0) * 27.0 / np.log(6.4))
    else:
        raise RnnkitError(f"mel scale must be 'htk' or 'slaney', not {scale!r}")
    return m if m.ndim else float(m)


def mel_to_hz(mel: float | np.ndarray, scale: str = "htk") -> float | np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    m = np.asarray(mel, dtype=np.float64)
    if scale == "htk":
        f = 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    elif scale == "slaney":
        f = np.where(m < 15.0, m * 200.0 / 3.0, 1000.0 * np.exp((m - 15.0) * np.log(6.4) / 27.0))
    else:
        raise RnnkitError(f"mel scale must be 'htk' or 'slaney', not {scale!r}")
    return f if f.ndim else float(f)


def mel_centers(n_mels: int, sample_rate: int, f_min: float = 0.0, f_max: float | None = None,
                scale: str = "htk") -> np.ndarray:
    """Centre frequencies (Hz) of ``n_mels`` filters spaced evenly in mels between ``f_min`` and ``f_max``."""
    f_max = sample_rate / 2 if f_max is None else f_max
    edges = mel_to_hz(np.linspace(hz_to_mel(f_min, scale), hz_to_mel(f_max, scale), n_mels + 2), scale)
    return np.asarray(edges)[1:-1]


def mel_filterbank(n_mels: int, n_fft: int, sample_rate: int, f_min: float = 0.0, f_max: float | None = None,
                   scale: str = "htk") -> torch.Tensor:
    """Triangular mel filters as an ``(n_mels, n_fft // 2 + 1)`` matrix applied to a power spectrum.

    Filter ``i`` rises from the centre of filter ``i - 1`` to 1 at its own centre and falls to 0 at
    the centre of filter ``i + 1`` (centres evenly spaced in mels). The triangles are evaluated at
    each FFT bin's exact frequency rather than snapped to bins, so neighbouring filters sum to 1
    between the first and last centres, and a narrow low filter still sees the bins under it.
    Peaks are 1 (HTK's convention), not area-normalised: per-utterance normalisation removes any
    per-band scale anyway. A filter that no bin falls under is refused, naming the fix.
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise RnnkitError(f"mel filters need 0 <= f_min < f_max <= {sample_rate / 2:g} Hz (the Nyquist frequency), "
                          f"not f_min={f_min:g}, f_max={f_max:g}")
    if n_mels < 1:
        raise RnnkitError(f"n_mels must be at least 1, not {n_mels}")
    edges = mel_to_hz(np.linspace(hz_to_mel(f_min, scale), hz_to_mel(f_max, scale), n_mels + 2), scale)
    bins = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - lo) / (mid - lo)
    falling = (hi - bins[None, :]) / (hi - mid)
    fb = np.clip(np.minimum(rising, falling), 0.0, None)
    empty = np.flatnonzero(fb.max(axis=1) <= 0)
    if len(empty):
        raise RnnkitError(f"mel filter {int(empty[0])} ({edges[empty[0] + 1]:.0f} Hz) covers no FFT bin: use fewer "
                          f"mels (n_mels={n_mels}) or a larger n_fft ({n_fft})")
    return torch.tensor(fb, dtype=torch.float32)


def dct_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """Orthonormal DCT-II as an ``(n_in, n_out)`` matrix: ``x @ D`` equals scipy's ``dct(x, norm='ortho')[:n_out]``."""
    if not 1 <= n_out <= n_in:
        raise RnnkitError(f"cannot keep {n_out} cepstral coefficients from {n_in} mel bands")
    n = torch.arange(n_in, dtype=torch.float64)[:, None]
    k = torch.arange(n_out, dtype=torch.float64)[None, :]
    d = torch.cos(math.pi / n_in * (n + 0.5) * k) * math.sqrt(2.0 / n_in)
    d[:, 0] /= math.sqrt(2.0)  # the orthonormal scaling of the constant term
    return d.to(torch.float32)


# ---------------------------------------------------------------- frames and features

def _as_wave(samples: torch.Tensor | np.ndarray) -> torch.Tensor:
    x = torch.as_tensor(samples, dtype=torch.float32)
    if x.dim() != 1:
        raise RnnkitError(f"expected one channel of samples (a 1-D signal), got shape {tuple(x.shape)}")
    return x


def frame_count(num_samples: int, win_length: int, hop_length: int) -> int:
    """Frames covering ``num_samples``: at least one, and the last (zero-padded) frame reaches the final sample."""
    return 1 + max(0, math.ceil((num_samples - win_length) / hop_length))


def _frame_window(win_length: int, n_fft: int) -> torch.Tensor:
    # a Hann window of win_length at the start of each n_fft frame, zeros after: torch.stft would centre
    # a shorter window inside the frame, and this keeps frame t starting at sample t * hop
    return torch.nn.functional.pad(torch.hann_window(win_length, periodic=True), (0, n_fft - win_length))


def power_spectrogram(samples: torch.Tensor | np.ndarray, win_length: int, hop_length: int,
                      n_fft: int | None = None, window: torch.Tensor | None = None) -> torch.Tensor:
    """``|STFT|^2`` of Hann-windowed frames via ``torch.stft``: ``(frames, n_fft // 2 + 1)``.

    Frame ``t`` covers samples ``[t * hop, t * hop + win_length)``; the signal is zero-padded at the
    end so that a clip shorter than one window still gives one frame and no sample is dropped.
    ``window`` is the padded window to reuse (:class:`FeatureConfig` keeps one); built when not given.
    """
    x = _as_wave(samples)
    n_fft = n_fft or win_length
    if win_length > n_fft:
        raise RnnkitError(f"the window ({win_length} samples) is longer than n_fft ({n_fft})")
    frames = frame_count(len(x), win_length, hop_length)
    # the padded length lets torch.stft (center=False) take exactly `frames` frames of n_fft samples
    need = (frames - 1) * hop_length + n_fft
    x = torch.nn.functional.pad(x, (0, need - len(x)))
    window = _frame_window(win_length, n_fft) if window is None else window
    spec = torch.stft(x, n_fft=n_fft, hop_length=hop_length, win_length=n_fft, window=window, center=False,
                      return_complex=True)
    return (spec.real**2 + spec.imag**2).T.contiguous()


def deltas(features: torch.Tensor, width: int = 2) -> torch.Tensor:
    """Regression deltas over ``±width`` frames (HTK's formula), edge frames repeated: ``(frames, dim)``."""
    t = features.shape[0]
    padded = torch.cat([features[:1].expand(width, -1), features, features[-1:].expand(width, -1)])
    num = sum(n * (padded[width + n:width + n + t] - padded[width - n:width - n + t]) for n in range(1, width + 1))
    return num / (2 * sum(n * n for n in range(1, width + 1)))


def trim_silence(log_mels: torch.Tensor, top_db: float) -> torch.Tensor:
    """The frames of ``(frames, n_mels)`` natural-log mel energies from the first to the last whose
    energy (summed over the bands) is within ``top_db`` decibels of the loudest frame's.

    Only the ends go: a pause inside the speech stays (as ``librosa.effects.trim``).
    """
    energy_db = torch.logsumexp(log_mels, dim=1) * (10 / math.log(10))
    loud = torch.nonzero(energy_db >= energy_db.max() - top_db).flatten()
    return log_mels[int(loud[0]):int(loud[-1]) + 1]


def normalize_utterance(features: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per-utterance mean and variance normalisation of each feature dimension over the frames."""
    mean = features.mean(dim=0, keepdim=True)
    std = features.std(dim=0, keepdim=True, unbiased=False)
    return (features - mean) / std.clamp_min(eps)  # a constant dimension (or one frame) is only centred


@dataclass(frozen=True)
class FeatureConfig:
    """How audio becomes a ``(frames, dim)`` feature matrix; call it on a 1-D wave at ``sample_rate``.

    Defaults suit 8 kHz telephone-band speech (FSDD is recorded at 8 kHz, so resampling it up would
    add nothing): 25 ms Hann windows every 10 ms, a 256-point FFT, 40 HTK-mel bands from 20 Hz to
    the Nyquist frequency, log with an 80 dB floor below the utterance's loudest band, and
    per-utterance mean/variance normalisation. ``kind="mfcc"`` keeps the first ``n_mfcc`` orthonormal
    DCT-II coefficients (c0 included) of the log-mels. ``deltas`` appends 1st (1) or 1st and 2nd (2)
    order deltas before the normalisation, so every column ends up with unit variance.
    ``trim_db`` drops the frames before and after the speech that are more than that many decibels
    below the loudest frame (:func:`trim_silence`), so that a take ending in a long pause or a
    click looks like one that ends with the word.

    No pre-emphasis: it is a fixed filter, so it shifts each log-mel band by a roughly constant
    amount, which the per-utterance mean removes. Store :meth:`to_dict` with a model so that
    transcription computes the same features as training.
    """

    sample_rate: int = 8000
    kind: str = "logmel"
    win_ms: float = 25.0
    hop_ms: float = 10.0
    n_fft: int | None = None  # None: the next power of two at or above the window
    n_mels: int = 40
    n_mfcc: int = 13
    f_min: float = 20.0
    f_max: float | None = None  # None: the Nyquist frequency
    mel_scale: str = "htk"
    top_db: float = 80.0
    deltas: int = 0
    normalize: bool = True
    trim_db: float | None = None  # None: keep the silence at both ends

    def __post_init__(self) -> None:
        if self.kind not in ("logmel", "mfcc"):
            raise RnnkitError(f"feature kind must be 'logmel' or 'mfcc', not {self.kind!r}")
        if self.deltas not in (0, 1, 2):
            raise RnnkitError(f"deltas must be 0, 1 or 2, not {self.deltas}")
        if self.win_length < 2 or self.hop_length < 1:
            raise RnnkitError(f"window {self.win_ms} ms and hop {self.hop_ms} ms are too short at "
                              f"{self.sample_rate} Hz")
        if self.kind == "mfcc" and not 1 <= self.n_mfcc <= self.n_mels:
            raise RnnkitError(f"n_mfcc must be between 1 and n_mels ({self.n_mels}), not {self.n_mfcc}")
        if self.trim_db is not None and not self.trim_db > 0:
            raise RnnkitError(f"silence trimming needs a positive level in dB, not {self.trim_db:g}")
        hz_to_mel(0.0, self.mel_scale)  # refuses an unknown scale now rather than at the first call

    @property
    def win_length(self) -> int:
        """Window length in samples."""
        return round(self.sample_rate * self.win_ms / 1000)

    @property
    def hop_length(self) -> int:
        """Hop between frames in samples."""
        return round(self.sample_rate * self.hop_ms / 1000)

    @property
    def fft_size(self) -> int:
        """FFT length: ``n_fft``, or the next power of two at or above the window."""
        return self.n_fft or 1 << (self.win_length - 1).bit_length()

    @property
    def dim(self) -> int:
        """Columns of the feature matrix."""
        return (self.n_mels if self.kind == "logmel" else self.n_mfcc) * (1 + self.deltas)

    def num_frames(self, num_samples: int) -> int:
        """Frames the features of ``num_samples`` samples have (for CTC length checks before extracting)."""
        return frame_count(num_samples, self.win_length, self.hop_length)

    @cached_property
    def filterbank(self) -> torch.Tensor:
        """The ``(n_mels, fft_size // 2 + 1)`` mel filters, built on first use."""
        return mel_filterbank(self.n_mels, self.fft_size, self.sample_rate, self.f_min, self.f_max, self.mel_scale)

    @property
    def loudness_columns(self) -> int:
        """The leading columns whose mean follows a frame's loudness: every log-mel, or an MFCC's c0."""
        return self.n_mels if self.kind == "logmel" else 1

    @cached_property
    def band_centers(self) -> np.ndarray:
        """Centre frequencies (Hz) of the mel bands."""
        return mel_centers(self.n_mels, self.sample_rate, self.f_min, self.f_max, self.mel_scale)

    @cached_property
    def window(self) -> torch.Tensor:
        """The Hann window padded to ``fft_size``, built on first use."""
        return _frame_window(self.win_length, self.fft_size)

    @cached_property
    def dct(self) -> torch.Tensor:
        """The ``(n_mels, n_mfcc)`` orthonormal DCT-II matrix."""
        return dct_matrix(self.n_mels, self.n_mfcc)

    def log_mel(self, samples: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Log mel energies ``(frames, n_mels)`` (natural log), before any normalisation."""
        power = power_spectrogram(samples, self.win_length, self.hop_length, self.fft_size, self.window)
        mel = power @ self.filterbank.T
        # the floor keeps digital silence (exact zeros, as in gaps between digits) finite; relative to the
        # loudest band so it does not depend on the recording level, absolute when the clip is all zeros
        floor = max(float(mel.max()) * 10 ** (-self.top_db / 10), 1e-10)
        return mel.clamp_min(floor).log()

    def __call__(self, samples: torch.Tensor | np.ndarray) -> torch.Tensor:
        feats = self.log_mel(samples)
        if self.trim_db is not None:
            feats = trim_silence(feats, self.trim_db)
        if self.kind == "mfcc":
            feats = feats @ self.dct
        if self.deltas:
            d1 = deltas(feats)
            feats = torch.cat([feats, d1] + ([deltas(d1)] if self.deltas == 2 else []), dim=1)
        return normalize_utterance(feats) if self.normalize else feats

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain JSON-ready values; ``FeatureConfig(**d)`` rebuilds it."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureConfig:
        """Rebuild from :meth:`to_dict`; an unknown key (a typo, a newer version) is refused."""
        known = {f.name for f in fields(cls) if f.init}
        unknown = sorted(set(d) - known)
        if unknown:
            raise RnnkitError(f"unknown feature setting(s) {', '.join(unknown)}")
        return cls(**d)


# ---------------------------------------------------------------- augmentation

def spec_augment(features: torch.Tensor, generator: torch.Generator | None = None, freq_masks: int = 2,
                 freq_width: int = 8, time_masks: int = 2, time_width: int = 10, max_time_fraction: float = 0.2,
                 value: float = 0.0) -> torch.Tensor:
    """SpecAugment masking of a ``(frames, dim)`` matrix: a new tensor with bands and frame spans set to ``value``.

    Each of ``freq_masks`` masks covers ``0..freq_width`` adjacent columns and each of ``time_masks``
    masks ``0..time_width`` adjacent frames (widths uniform, positions uniform), drawn from
    ``generator`` so that a seeded generator gives the same masks. A time mask never exceeds
    ``max_time_fraction`` of the frames, so a one-digit clip is not wiped out. The default
    ``value`` 0 is the mean of normalised features. Masks may overlap.
    """
    out = features.clone()
    t, d = out.shape

    def draw(high: int) -> int:  # uniform integer in [0, high]
        return int(torch.randint(0, high + 1, (1,), generator=generator))

    for _ in range(freq_masks):
        w = draw(min(freq_width, d))
        start = draw(d - w)
        out[:, start:start + w] = value
    cap = min(time_width, int(max_time_fraction * t))
    for _ in range(time_masks):
        w = draw(cap)
        start = draw(t - w)
        out[start:start + w, :] = value
    return out


def time_stretch(features: torch.Tensor, factor: float, min_frames: int = 1) -> torch.Tensor:
    """``(frames, dim)`` features resampled in time to ``round(frames * factor)`` frames (at least ``min_frames``),
    by linear interpolation: speaking rate perturbation on the features (as Ko et al. 2015 do on the audio)."""
    t = features.shape[0]
    frames = max(min_frames, round(t * factor))
    if frames == t or t < 2:
        return features
    x = features.T.unsqueeze(0).float()
    return torch.nn.functional.interpolate(x, size=frames, mode="linear", align_corners=True)[0].T.to(features.dtype)


def pad_silence(features: torch.Tensor, before: int, after: int, loudness_columns: int) -> torch.Tensor:
    """``(frames, dim)`` features with ``before`` and ``after`` copies of the utterance's quietest frame
    (least mean over its first ``loudness_columns`` columns: the log-mels, or an MFCC's c0) added at its
    ends: the same speech with other lengths of silence around it."""
    if not before and not after:
        return features
    quiet = features[features[:, :loudness_columns].float().mean(1).argmin()]
    return torch.cat([quiet.expand(before, -1), features, quiet.expand(after, -1)])


def frequency_warp(features: torch.Tensor, factor: float, centers: np.ndarray) -> torch.Tensor:
    """``(frames, k * n_mels)`` log-mel features (and their deltas) as a vocal tract ``1 / factor`` as
    long would give them: band i takes the value at ``centers[i] / factor`` Hz, interpolated between
    the neighbouring bands and held at the edge bands beyond them. Vocal tract length perturbation
    (Jaitly & Hinton 2013) on the features; ``centers`` are the bands' centre frequencies."""
    n = len(centers)
    if features.shape[1] % n:
        raise ValueError(f"features of {features.shape[1]} columns are not blocks of {n} bands")
    if factor == 1:
        return features
    src = torch.as_tensor(np.interp(centers / factor, centers, np.arange(n)), dtype=torch.float32)
    lo = src.floor().long()
    hi = (lo + 1).clamp_max(n - 1)
    w = (src - lo).to(features.dtype)
    x = features.reshape(features.shape[0], -1, n)
    return (x[..., lo] * (1 - w) + x[..., hi] * w).reshape(features.shape)


# ---------------------------------------------------------------- pictures

def spectrogram_image(samples: torch.Tensor | np.ndarray, config: FeatureConfig | None = None) -> np.ndarray:
    """The log-mel spectrogram in dB as an ``(n_mels, frames)`` image, low frequencies in row 0."""
    config = config or FeatureConfig()
    return (config.log_mel(samples) * (10 / math.log(10))).T.numpy()


def _runs(ids: np.ndarray) -> list[tuple[int, int, int]]:
    """(start, end, id) for each run of equal ids."""
    cuts = np.flatnonzero(np.diff(ids)) + 1
    starts, ends = np.r_[0, cuts], np.r_[cuts, len(ids)]
    return [(int(s), int(e), int(ids[s])) for s, e in zip(starts, ends, strict=True)]


def plot_spectrogram(features: torch.Tensor | np.ndarray, path: str | os.PathLike,
                     posteriors: torch.Tensor | np.ndarray | None = None, labels: list[str] | str | None = None,
                     alignment: torch.Tensor | np.ndarray | list[int] | None = None, blank: int = 0,
                     hop_s: float | None = None, title: str = "") -> None:
    """Draw a ``(frames, dim)`` feature matrix (e.g. log-mels) as an image and save it as a PNG.

    With ``posteriors`` (``(frames', classes)``, probabilities) a second panel shows each class's
    posterior over time, and with ``alignment`` (one class id per posterior frame, e.g. the
    argmax path) a strip under it names each run of a non-``blank`` class with ``labels[id]``.
    Posterior frames may be fewer than feature frames (a model that subsamples); they are
    stretched over the same time axis. ``hop_s`` labels the axis in seconds instead of frames.
    """
    from ..plotting import new_figure, save_figure

    img = np.asarray(features.detach().cpu() if isinstance(features, torch.Tensor) else features, dtype=np.float32)
    if img.ndim != 2:
        raise RnnkitError(f"features must be (frames, dim), got shape {img.shape}")
    frames = img.shape[0]
    post = None if posteriors is None else np.asarray(
        posteriors.detach().cpu() if isinstance(posteriors, torch.Tensor) else posteriors, dtype=np.float32)
    align = None if alignment is None else np.asarray(
        alignment.detach().cpu() if isinstance(alignment, torch.Tensor) else alignment).astype(int).ravel()
    if post is not None and post.ndim != 2:
        raise RnnkitError(f"posteriors must be (frames, classes), got shape {post.shape}")
    if align is not None and post is not None and len(align) != len(post):
        raise RnnkitError(f"the alignment has {len(align)} frames but the posteriors have {len(post)}")
    names = list(labels) if labels is not None else None
    scale = hop_s or 1.0
    span = frames * scale
    panels = 1 + (post is not None) + (align is not None)
    ratios = [3.0] + ([2.0] if post is not None else []) + ([0.5] if align is not None else [])
    fig, axes = new_figure(panels, 1, figsize=(8, 1.2 + 1.6 * sum(ratios)), dpi=110, sharex=True, squeeze=False,
                           gridspec_kw={"height_ratios": ratios})
    axes = axes[:, 0]
    ax = axes[0]
    ax.imshow(img.T, origin="lower", aspect="auto", extent=(0, span, 0, img.shape[1]), cmap="magma",
                   interpolation="nearest")
    # no colour bar: it would narrow this panel alone and put its frames out of line with the panels below
    ax.set_ylabel("band")
    if title:
        ax.set_title(title)
    i = 1
    if post is not None:
        ax = axes[i]
        i += 1
        step = span / len(post)
        x = (np.arange(len(post)) + 0.5) * step
        for c in range(post.shape[1]):
            name = names[c] if names is not None and c < len(names) else str(c)
            style = {"color": "0.6", "lw": 0.8, "ls": "--"} if c == blank else {"lw": 1.2}
            ax.plot(x, post[:, c], label=name if c != blank else (f"{name} (blank)" if name else "blank"), **style)
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("posterior")
        if post.shape[1] <= 30:
            ax.legend(fontsize=6, ncol=min(post.shape[1], 10), loc="upper right")
    if align is not None:
        ax = axes[i]
        step = span / len(align)
        for s, e, c in _runs(align):
            if c == blank:
                continue
            ax.axvspan(s * step, e * step, color="tab:blue", alpha=0.25)
            name = names[c] if names is not None and 0 <= c < len(names) else str(c)
            ax.text((s + e) / 2 * step, 0.5, name if name.strip() else "␣", ha="center", va="center", fontsize=8)
        ax.set_yticks([])
        ax.set_ylabel("path")
    axes[-1].set_xlim(0, span)
    axes[-1].set_xlabel("seconds" if hop_s else "frame")
    save_figure(fig, path)
