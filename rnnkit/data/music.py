"""Polyphonic music as piano rolls: the classic ``.mat`` sets, MIDI in and out, audio, plots, statistics.

A *piano roll* is a ``(frames, 88)`` array of 0/1 (``uint8``): column ``i`` is MIDI pitch
``21 + i`` (A0 to C8, the piano's keys), row ``t`` is one time step, 1 where the pitch sounds.
A roll alone cannot tell one held note from the same note struck again on the next frame, so
MIDI reading also returns an *onset roll* of the same shape, 1 on the frame where a note starts;
MIDI writing and audio rendering take one optionally.

Time grid of MIDI input (:func:`read_midi`):

* by default 16th notes: ``steps_per_beat=4`` frames per quarter note. MIDI stores times in
  ticks, a fixed fraction of a quarter note whatever the tempo, so quantising ticks follows the
  tempo map by construction: a tempo change alters how long a frame lasts, never how many frames
  a note gets. This is the grid of symbolic-music models (a bar of 4/4 is 16 frames) and keeps
  rolls short. Use ``steps_per_beat=12`` for music with triplets (both 16ths and triplet 8ths
  land on it).
* or ``frame_rate=`` frames per second of real time, following the tempo map into seconds:
  what performance recordings (rubato written as tempo changes) need.

Start and end of each note are rounded to the nearest frame; a note that rounds to nothing
still sounds for one frame, so short grace notes are kept. Drums (MIDI channel 10, ``channel=9``
counted from 0, the General MIDI convention) are excluded; notes outside 21-108 are dropped,
counted in :attr:`MidiRoll.dropped_notes` and reported with a warning. All other instruments
are merged into one roll.

Datasets: :func:`load_mat` reads the four sets of Boulanger-Lewandowski et al. (2012),
``JSB_Chorales``, ``Nottingham``, ``MuseData`` and ``Piano_midi``, already in this roll format.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import warnings
import wave
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..errors import RnnkitError, cause
from ..io import atomic_write

LOWEST_PITCH = 21  # A0, the piano's lowest key
HIGHEST_PITCH = 108  # C8, its highest
N_PITCHES = HIGHEST_PITCH - LOWEST_PITCH + 1  # 88
SPLITS = ("train", "valid", "test")
MAT_DATASETS = ("JSB_Chorales", "Nottingham", "MuseData", "Piano_midi")
_MAT_KEYS = {"train": "traindata", "valid": "validdata", "test": "testdata"}
DRUM_CHANNEL = 9  # channel 10 in the 1-based numbering of the General MIDI standard
MIDI_SUFFIXES = (".mid", ".midi")
MAX_FRAMES = 1 << 21  # 2M frames: 18 hours of 16th notes at 120 bpm, 6 at 100 frames a second
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def note_name(pitch: int) -> str:
    """Scientific pitch name of a MIDI pitch: 60 is ``C4``, 21 is ``A0``, 108 is ``C8``."""
    return f"{NOTE_NAMES[pitch % 12]}{pitch // 12 - 1}"


def _as_roll(x: Any, what: str = "roll") -> np.ndarray:
    """A (frames, 88) boolean view of an array, list or tensor; a clear error for any other shape.

    Floats count as on above 0.5, so a model's key probabilities (or 0/1 floats) can be given as
    they are; integers (such as velocities) count as on when non-zero.
    """
    if hasattr(x, "detach"):  # a torch tensor, possibly on a GPU or requiring grad
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.ndim != 2 or a.shape[1] != N_PITCHES:
        raise RnnkitError(f"{what} must be a (frames, {N_PITCHES}) piano roll, got shape {tuple(a.shape)}")
    if a.dtype.kind == "f":
        if not np.isfinite(a).all():
            raise RnnkitError(f"{what} holds NaN or inf")
        return a > 0.5
    return a.astype(bool)


# ---------------------------------------------------------------------------- .mat datasets


def load_mat(path: str | os.PathLike) -> dict[str, list[np.ndarray]]:
    """The train/valid/test piano rolls of a Boulanger-Lewandowski ``.mat`` file.

    Returns ``{"train": [...], "valid": [...], "test": [...]}``, each a list of C-contiguous
    ``uint8`` arrays of shape ``(frames, 88)``, pieces in the file's order. The file holds
    ``traindata``, ``validdata`` and ``testdata``, each a MATLAB cell array (a ``(1, n)``
    object array in scipy) of ``(frames x 88)`` 0/1 ``uint8`` matrices.

    The files do not record their time step: it is the authors' grid (quarter notes for JSB,
    by the JSB-Chorales-dataset README), so write JSB rolls back with ``steps_per_beat=1``.
    Read with column 0 as MIDI 21, JSB's voices sit an octave above where chorales are sung
    (median highest note C6, lowest D#4, over the training frames); the other three sets
    look at pitch. The rolls are returned as stored, not transposed.
    """
    path = Path(path)
    if not path.is_file():
        raise RnnkitError(f"no such file: {path}")
    import scipy.io

    try:
        mat = scipy.io.loadmat(str(path))
    except NotImplementedError:  # scipy's answer to MATLAB v7.3 (HDF5) files
        raise RnnkitError(f"{path} is a MATLAB v7.3 file; save it with -v7 or earlier") from None
    except Exception as e:  # scipy raises several types for files that are not .mat at all
        raise RnnkitError(f"{path} is not a readable .mat file ({cause(e, 100)})") from None
    missing = [key for key in _MAT_KEYS.values() if key not in mat]
    if missing:
        found = ", ".join(k for k in mat if not k.startswith("__")) or "none"
        raise RnnkitError(f"{path} lacks {', '.join(missing)} (variables found: {found}); "
                          "expected traindata, validdata, testdata as in the Boulanger-Lewandowski sets")
    out: dict[str, list[np.ndarray]] = {}
    for split, key in _MAT_KEYS.items():
        cell = mat[key]
        # a cell array arrives as an object array; a bare numeric matrix is one piece
        items = list(cell.ravel()) if cell.dtype == object else [cell]
        rolls = []
        for i, piece in enumerate(items):
            piece = np.asarray(piece)
            if piece.ndim != 2 or piece.shape[1] != N_PITCHES:
                raise RnnkitError(f"{path}: {key} piece {i} has shape {piece.shape}, expected (frames, {N_PITCHES})")
            if piece.size and (piece.min() < 0 or piece.max() > 1):
                raise RnnkitError(f"{path}: {key} piece {i} holds values other than 0 and 1")
            # MATLAB stores column-major; rows (frames) are what batching slices, so make them contiguous
            rolls.append(np.ascontiguousarray(piece, dtype=np.uint8))
        out[split] = rolls
    return out


# ---------------------------------------------------------------------------- MIDI in


@dataclass
class MidiRoll:
    """One MIDI file as a piano roll on a frame grid.

    ``roll`` and ``onsets`` are ``(frames, 88)`` ``uint8``; ``onsets`` is 1 where a note starts.
    The grid is ``steps_per_beat`` frames per quarter note, or ``frame_rate`` frames per second
    when that is set (then ``steps_per_beat`` is None). ``initial_bpm`` is the tempo at the
    start (120 when the file sets none), to play a roll on the beat grid back at its own speed.
    """

    path: str
    roll: np.ndarray
    onsets: np.ndarray
    steps_per_beat: int | None
    frame_rate: float | None
    initial_bpm: float
    notes: int  # notes in the roll
    dropped_notes: int  # notes outside 21-108, left out
    drum_notes: int  # notes on the drum channel, left out

    @property
    def frame_seconds(self) -> float:
        """How long a frame lasts: exact for a frame rate, at the initial tempo on the beat grid."""
        if self.frame_rate is not None:
            return 1.0 / self.frame_rate
        return 60.0 / (self.initial_bpm * self.steps_per_beat)


class _TempoMap:
    """Seconds of any tick, from a file's tempo changes (default 120 bpm until the first)."""

    def __init__(self, changes: list[tuple[int, int]], ticks_per_beat: int):
        ticks, tempos = [0], [500_000]
        for tick, tempo in sorted(changes):
            if tick == ticks[-1]:
                tempos[-1] = tempo  # the last of several changes at one tick wins, as a player would apply them
            else:
                ticks.append(tick)
                tempos.append(tempo)
        self.ticks = np.array(ticks, dtype=np.int64)
        self.sec_per_tick = np.array(tempos, dtype=np.float64) / 1e6 / ticks_per_beat
        self.start_sec = np.concatenate([[0.0], np.cumsum(np.diff(self.ticks) * self.sec_per_tick[:-1])])
        self.initial_bpm = 60e6 / tempos[0]

    def seconds(self, ticks: np.ndarray) -> np.ndarray:
        i = np.searchsorted(self.ticks, ticks, side="right") - 1
        return self.start_sec[i] + (ticks - self.ticks[i]) * self.sec_per_tick[i]


def _parse_midi(path: Path):
    """Notes as ``(start_tick, end_tick, pitch, channel)`` rows, the tempo map and the end tick.

    Note pairing: a note-off (or note-on with velocity 0) ends the *earliest* open note of its
    channel and pitch. Files often strike a key again at the very tick its previous note ends
    but list the new note-on first; first-in-first-out still gives two notes, not a held one.
    Notes still open at the end of their track end there; zero-length notes make no sound and
    are skipped.
    """
    import mido

    try:
        mid = mido.MidiFile(filename=str(path))
    except Exception as e:  # mido raises OSError, EOFError, ValueError, KeyError... for damaged files
        why = "it ends early" if isinstance(e, EOFError) else cause(e, 100)
        raise RnnkitError(f"{path} is not a readable MIDI file ({why})") from None
    if mid.type == 2:
        raise RnnkitError(f"{path} is a type 2 MIDI file (independent sequences); only types 0 and 1 are read")
    tpb = mid.ticks_per_beat
    if not 0 < tpb < 0x8000:  # the top bit marks SMPTE time code, which has no beats to quantise to
        raise RnnkitError(f"{path} times its events in SMPTE frames, not beats; convert it to a beat-based file")
    notes: list[tuple[int, int, int, int]] = []
    tempos: list[tuple[int, int]] = []
    end_tick = 0
    for track in mid.tracks:
        tick = 0
        open_notes: dict[tuple[int, int], list[int]] = {}
        for msg in track:
            tick += msg.time
            if msg.type == "set_tempo":
                tempos.append((tick, msg.tempo))
            elif msg.type == "note_on" and msg.velocity > 0:
                open_notes.setdefault((msg.channel, msg.note), []).append(tick)
            elif msg.type in ("note_off", "note_on"):
                starts = open_notes.get((msg.channel, msg.note))
                if starts:
                    start = starts.pop(0)
                    if tick > start:
                        notes.append((start, tick, msg.note, msg.channel))
        for (channel, pitch), starts in open_notes.items():
            notes.extend((s, tick, pitch, channel) for s in starts if tick > s)
        end_tick = max(end_tick, tick)
    return notes, _TempoMap(tempos, tpb), tpb, end_tick


def _round_half_up(x: np.ndarray) -> np.ndarray:
    return np.floor(x + 0.5).astype(np.int64)


def read_midi(path: str | os.PathLike, steps_per_beat: int = 4, frame_rate: float | None = None) -> MidiRoll:
    """One ``.mid`` file as a piano roll and onset roll (see the module docstring for the grid).

    The roll runs from time 0 (leading rests kept) to the end of the longest track, so trailing
    rests that the file marks survive too. One-line :class:`RnnkitError` for a file that is
    missing, damaged, or holds no notes once drums are excluded.
    """
    path = Path(path)
    if not path.is_file():
        raise RnnkitError(f"no such file: {path}")
    if frame_rate is None and not (isinstance(steps_per_beat, (int, np.integer)) and 1 <= steps_per_beat <= 96):
        raise RnnkitError(f"steps_per_beat must be an integer from 1 to 96, got {steps_per_beat!r}")
    if frame_rate is not None and not (np.isfinite(frame_rate) and frame_rate > 0):
        raise RnnkitError(f"frame_rate must be a positive number of frames per second, got {frame_rate!r}")
    notes, tempo_map, tpb, end_tick = _parse_midi(path)
    all_notes = np.array(notes, dtype=np.int64).reshape(-1, 4)
    drums = all_notes[:, 3] == DRUM_CHANNEL
    pitched = all_notes[~drums]
    if not len(pitched):
        what = f"only drum notes ({int(drums.sum())})" if drums.any() else "no notes"
        raise RnnkitError(f"{path} holds {what}; a piano roll needs pitched notes")
    in_range = (pitched[:, 2] >= LOWEST_PITCH) & (pitched[:, 2] <= HIGHEST_PITCH)
    dropped = int((~in_range).sum())
    if dropped:
        warnings.warn(f"{path}: {dropped} of {len(pitched)} notes lie outside MIDI pitches "
                      f"{LOWEST_PITCH}-{HIGHEST_PITCH} (the piano's keys) and were dropped", stacklevel=2)
    kept = pitched[in_range]
    if not len(kept):
        raise RnnkitError(f"{path} holds no notes within MIDI pitches {LOWEST_PITCH}-{HIGHEST_PITCH}")
    if frame_rate is None:
        # integer arithmetic: frame = round(tick * steps_per_beat / ticks_per_beat), exact for any file
        def to_frame(t: np.ndarray) -> np.ndarray:
            return (2 * t * steps_per_beat + tpb) // (2 * tpb)
    else:
        def to_frame(t: np.ndarray) -> np.ndarray:
            return _round_half_up(tempo_map.seconds(t) * frame_rate)
    start = to_frame(kept[:, 0])
    end = np.maximum(to_frame(kept[:, 1]), start + 1)
    frames = int(max(end.max(), to_frame(np.array([end_tick]))[0]))
    if frames > MAX_FRAMES:  # a damaged delta time can claim days of silence; refuse before allocating it
        raise RnnkitError(f"{path} would span {frames:,} frames (more than {MAX_FRAMES:,}); "
                          "its timing looks damaged, or use a coarser grid")
    roll = np.zeros((frames, N_PITCHES), dtype=np.uint8)
    onsets = np.zeros_like(roll)
    col = kept[:, 2] - LOWEST_PITCH
    # frames are half-open [start, end): mark +1/-1 at the edges and integrate, rather than loop over frames
    edges = np.zeros((frames + 1, N_PITCHES), dtype=np.int32)
    np.add.at(edges, (start, col), 1)
    np.add.at(edges, (end, col), -1)
    roll[np.cumsum(edges[:-1], axis=0) > 0] = 1
    onsets[start, col] = 1
    return MidiRoll(path=str(path), roll=roll, onsets=onsets,
                    steps_per_beat=None if frame_rate is not None else steps_per_beat,
                    frame_rate=frame_rate, initial_bpm=tempo_map.initial_bpm, notes=len(kept),
                    dropped_notes=dropped, drum_notes=int(drums.sum()))


def midi_files(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """MIDI files named directly, or found (sorted, any depth) in folders; ``.mid``/``.midi`` in any case."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in MIDI_SUFFIXES)
            if not found:
                raise RnnkitError(f"directory {p} holds no .mid or .midi files")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise RnnkitError(f"no such file or directory: {p}")
    return files


def load_midi(paths: str | os.PathLike | Sequence[str | os.PathLike], steps_per_beat: int = 4,
              frame_rate: float | None = None) -> list[MidiRoll]:
    """Every MIDI file in ``paths`` (files or folders) read with :func:`read_midi`; a bad file stops it."""
    return [read_midi(f, steps_per_beat=steps_per_beat, frame_rate=frame_rate) for f in midi_files(paths)]


# ---------------------------------------------------------------------------- notes from a roll


def roll_to_notes(roll: Any, onsets: Any | None = None) -> list[tuple[int, int, int]]:
    """The notes of a roll as ``(pitch, start_frame, end_frame)``, end exclusive, sorted by start.

    A run of consecutive on-frames of one pitch is one held note, unless ``onsets`` marks a
    frame inside the run: a new note starts there (the key is struck again). Onsets on frames
    where the roll is off are ignored.
    """
    r = _as_roll(roll)
    if onsets is None:
        o = np.zeros_like(r)
    else:
        o = _as_roll(onsets, "onsets")
        if o.shape != r.shape:
            raise RnnkitError(f"onsets shape {o.shape} differs from the roll's {r.shape}")
    prev = np.vstack([np.zeros((1, N_PITCHES), dtype=bool), r[:-1]])
    starts = r & (~prev | o)
    nxt = np.vstack([r[1:], np.zeros((1, N_PITCHES), dtype=bool)])
    nxt_start = np.vstack([starts[1:], np.zeros((1, N_PITCHES), dtype=bool)])
    ends = r & (~nxt | nxt_start)  # the last frame of each note
    notes = []
    for col in range(N_PITCHES):
        s = np.flatnonzero(starts[:, col])
        e = np.flatnonzero(ends[:, col]) + 1
        notes += [(col + LOWEST_PITCH, int(a), int(b)) for a, b in zip(s, e, strict=True)]
    notes.sort(key=lambda n: (n[1], n[0]))
    return notes


# ---------------------------------------------------------------------------- MIDI out

_TICKS_PER_STEP = 96  # divisible by 2, 3, 4, 6, 8...: room for later edits at finer grids


def write_midi(path: str | os.PathLike, roll: Any, onsets: Any | None = None, *, frame_seconds: float = 0.125,
               steps_per_beat: int = 4, program: int = 0, velocity: int = 80) -> None:
    """Write a roll as a type-0 MIDI file (atomically), one note per run of on-frames (see :func:`roll_to_notes`).

    Each frame is ``steps_per_beat``-th of a quarter note, at the tempo that makes a frame last
    ``frame_seconds`` (the defaults: 16th notes at 120 bpm). :func:`read_midi` with the same
    ``steps_per_beat`` gives back exactly this roll and, with ``onsets``, its repeated notes;
    the end-of-track event sits at the roll's last frame, so trailing rests survive too.
    ``program`` is the General MIDI instrument (0, acoustic grand piano).
    """
    import mido

    r = _as_roll(roll)
    notes = roll_to_notes(r, onsets)
    if not (isinstance(steps_per_beat, (int, np.integer)) and 1 <= steps_per_beat <= 96):
        raise RnnkitError(f"steps_per_beat must be an integer from 1 to 96, got {steps_per_beat!r}")
    tempo = round(frame_seconds * steps_per_beat * 1e6) if np.isfinite(frame_seconds) else 0
    if not 0 < tempo <= 0xFFFFFF:  # MIDI stores microseconds per beat in 3 bytes
        raise RnnkitError(f"frame_seconds={frame_seconds} with {steps_per_beat} steps per beat is not a MIDI tempo")
    if not 0 <= program <= 127 or not 1 <= velocity <= 127:
        raise RnnkitError(f"program must be 0-127 and velocity 1-127, got {program} and {velocity}")
    events = []
    for pitch, start, end in notes:
        # at one tick, note-offs sort before note-ons so that a re-struck key is never cut short
        events.append((end * _TICKS_PER_STEP, 0, pitch))
        events.append((start * _TICKS_PER_STEP, 1, pitch))
    events.sort()
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=tempo, time=0))
    track.append(mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0))
    track.append(mido.Message("program_change", program=program, channel=0, time=0))
    now = 0
    for tick, is_on, pitch in events:
        kind = "note_on" if is_on else "note_off"
        track.append(mido.Message(kind, note=pitch, velocity=velocity if is_on else 0, channel=0, time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=len(r) * _TICKS_PER_STEP - now))
    mid = mido.MidiFile(type=0, ticks_per_beat=_TICKS_PER_STEP * steps_per_beat)
    mid.tracks.append(track)
    atomic_write(path, lambda tmp: mid.save(filename=tmp))


# ---------------------------------------------------------------------------- audio

SAMPLE_RATE = 22050
_HARMONICS = (1.0, 0.5, 0.3, 0.15, 0.08)  # partial amplitudes: a soft, piano-like timbre without a sampled sound
_ATTACK_S = 0.01  # fast enough to sound struck, slow enough not to click
_DECAY_S = 1.5  # held notes fade like a struck string rather than drone like an organ
_RELEASE_S = 0.12  # a fade after the key is let go, so note ends do not click
_RESTRIKE_FADE_S = 0.015  # how fast a note stops when its key is struck again
_PEAK = 0.9  # normalised peak, leaving headroom below full scale


def fluidsynth_available() -> bool:
    """Whether pretty_midi can render through FluidSynth (pyfluidsynth and its shared library load)."""
    if importlib.util.find_spec("fluidsynth") is None or importlib.util.find_spec("pretty_midi") is None:
        return False
    try:
        importlib.import_module("fluidsynth")  # fails with OSError when libfluidsynth itself is missing
        return True
    except Exception:
        return False


def _default_soundfont() -> str | None:
    """pretty_midi's bundled General MIDI soundfont (TimGM6mb.sf2), if it is installed."""
    spec = importlib.util.find_spec("pretty_midi")
    if spec is None or not spec.origin:
        return None
    sf2 = Path(spec.origin).parent / "TimGM6mb.sf2"
    return str(sf2) if sf2.is_file() else None


def _fluidsynth(notes: list[tuple[int, int, int]], frame_seconds: float, sample_rate: int,
                sf2: str) -> np.ndarray:
    import pretty_midi

    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=0)
    inst.notes = [pretty_midi.Note(velocity=80, pitch=p, start=s * frame_seconds, end=e * frame_seconds)
                  for p, s, e in notes]
    pm.instruments.append(inst)
    try:
        audio = pm.fluidsynth(fs=sample_rate, synthesizer=sf2)
    except TypeError:  # pretty_midi before 0.2.11 names the soundfont sf2_path
        audio = pm.fluidsynth(fs=sample_rate, sf2_path=sf2)
    audio = np.asarray(audio, dtype=np.float64)
    return audio if audio.size else np.zeros(1)  # pretty_midi returns an empty array for no notes


def _builtin_synth(notes: list[tuple[int, int, int]], frames: int, frame_seconds: float,
                   sample_rate: int) -> np.ndarray:
    frame_samples = frame_seconds * sample_rate
    release = int(round(_RELEASE_S * sample_rate))
    restrike_fade = int(round(_RESTRIKE_FADE_S * sample_rate))
    out = np.zeros(int(round(frames * frame_samples)) + release + 1, dtype=np.float64)
    restruck = {(pitch, start) for pitch, start, _ in notes}
    for pitch, start, end in notes:
        a = int(round(start * frame_samples))
        hold = max(int(round(end * frame_samples)) - a, 1)
        if (pitch, end) in restruck:
            # the same key is struck again at once: like one string, it stops (a short fade, no click)
            # instead of ringing on under the new note, so a repeated note is heard as two
            t = np.arange(hold) / sample_rate
            env = np.minimum(t / _ATTACK_S, 1.0) * np.exp(-t / _DECAY_S)
            fade = min(restrike_fade, hold)
            env[hold - fade:] *= np.linspace(1.0, 0.0, fade)
        else:
            t = np.arange(hold + release) / sample_rate
            env = np.minimum(t / _ATTACK_S, 1.0) * np.exp(-t / _DECAY_S)
            env[hold:] *= np.linspace(1.0, 0.0, release, endpoint=False) if release else 1.0
        f0 = 440.0 * 2.0 ** ((pitch - 69) / 12)
        wave_ = np.zeros_like(t)
        for k, amp in enumerate(_HARMONICS, start=1):
            if k * f0 < sample_rate / 2:  # partials above Nyquist would alias into wrong pitches
                wave_ += amp * np.sin(2 * np.pi * k * f0 * t)
        out[a:a + len(t)] += wave_ * env
    return out


def render_audio(roll: Any, onsets: Any | None = None, *, frame_seconds: float = 0.125,
                 sample_rate: int = SAMPLE_RATE, synth: str = "builtin", soundfont: str | None = None) -> np.ndarray:
    """Mono ``float32`` audio of a roll, peak-normalised to 0.9 (all zeros for a silent roll).

    ``synth="builtin"``: five additive harmonics per note with a 10 ms attack, a slow
    exponential decay while held and a 120 ms release after the note ends (a 15 ms fade instead
    when the same pitch is struck again at once, so repeated notes stay audible). ``"fluidsynth"``:
    pretty_midi's FluidSynth path with ``soundfont`` (default: pretty_midi's bundled General MIDI
    one), an error if it is unavailable. ``"auto"``: FluidSynth when available, else built-in.
    """
    return _render(roll, onsets, frame_seconds, sample_rate, synth, soundfont)[0]


def _render(roll: Any, onsets: Any | None, frame_seconds: float, sample_rate: int, synth: str,
            soundfont: str | None) -> tuple[np.ndarray, str]:
    if synth not in ("builtin", "fluidsynth", "auto"):
        raise RnnkitError(f"unknown synth {synth!r}; choose builtin, fluidsynth or auto")
    if not (np.isfinite(frame_seconds) and frame_seconds > 0) or not (isinstance(sample_rate, int) and sample_rate > 0):
        raise RnnkitError(f"frame_seconds and sample_rate must be positive, got {frame_seconds} and {sample_rate}")
    r = _as_roll(roll)
    notes = roll_to_notes(r, onsets)
    sf2 = soundfont or _default_soundfont()
    engine = synth
    if synth != "builtin":
        usable = fluidsynth_available() and sf2 is not None and Path(sf2).is_file()
        if synth == "fluidsynth" and not usable:
            raise RnnkitError("FluidSynth rendering needs pyfluidsynth, libfluidsynth and a soundfont "
                              f"({'none found' if sf2 is None else sf2}); use synth='builtin'")
        engine = "fluidsynth" if usable else "builtin"
    audio = None
    if engine == "fluidsynth":
        try:
            audio = _fluidsynth(notes, frame_seconds, sample_rate, sf2)
        except Exception as e:  # a soundfont it cannot load, a synth that fails to start
            if synth == "fluidsynth":
                raise RnnkitError(f"FluidSynth failed with soundfont {sf2} ({cause(e, 100)})") from None
            engine = "builtin"  # "auto" promised audio, and the built-in synth always delivers
    if audio is None:
        audio = _builtin_synth(notes, len(r), frame_seconds, sample_rate)
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak > 0:
        audio = audio * (_PEAK / peak)
    return audio.astype(np.float32), engine


def write_wav(path: str | os.PathLike, roll: Any, onsets: Any | None = None, *, frame_seconds: float = 0.125,
              sample_rate: int = SAMPLE_RATE, synth: str = "auto", soundfont: str | None = None) -> str:
    """Render a roll (:func:`render_audio`) to a 16-bit mono WAV file, atomically; returns the synth used."""
    audio, engine = _render(roll, onsets, frame_seconds, sample_rate, synth, soundfont)
    pcm = np.round(np.clip(audio, -1.0, 1.0) * 32767).astype("<i2")

    def write(tmp: str) -> None:
        with wave.open(tmp, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(sample_rate)
            w.writeframes(pcm.tobytes())

    atomic_write(path, write)
    return engine


# ---------------------------------------------------------------------------- plots


def plot_piano_roll(path: str | os.PathLike, rolls: Any, titles: Sequence[str] | None = None, *,
                    frame_seconds: float | None = None, boundary: int | None = None, title: str = "") -> None:
    """A piano-roll PNG: time on x, pitch on y (every C labelled by name), one panel per roll.

    ``rolls`` is one roll or several (primer and generated, real and generated), stacked on a
    shared time axis and pitch range. ``frame_seconds`` labels x in seconds instead of frames;
    ``boundary`` draws a dashed line at that frame in every panel (where a primer ends).
    """
    from ..plotting import new_figure, save_figure

    if hasattr(rolls, "shape"):
        one = len(rolls.shape) == 2  # a (frames, 88) array; a 3-D one is a stack of rolls
    else:
        rolls = list(rolls)
        one = bool(rolls) and np.ndim(rolls[0]) == 1  # a roll written as nested lists
    if one:
        rolls = [rolls]
    arrays = [_as_roll(r, f"roll {i}") for i, r in enumerate(rolls)]
    if not arrays:
        raise RnnkitError("no piano roll to plot")
    if titles is not None and len(titles) != len(arrays):
        raise RnnkitError(f"{len(titles)} titles for {len(arrays)} rolls")
    used = np.flatnonzero(np.any([a.any(axis=0) for a in arrays], axis=0))
    lo = LOWEST_PITCH + (max(used[0] - 2, 0) if used.size else 0)
    hi = LOWEST_PITCH + (min(used[-1] + 2, N_PITCHES - 1) if used.size else N_PITCHES - 1)
    longest = max(len(a) for a in arrays)
    scale = frame_seconds or 1.0
    width = float(np.clip(4 + longest / 40, 6, 16))
    height = max(1.6, (hi - lo) / 14)
    fig, axes = new_figure(len(arrays), 1, figsize=(width, height * len(arrays) + 0.8), dpi=110, sharex=True,
                           squeeze=False)
    for i, (ax, a) in enumerate(zip(axes[:, 0], arrays, strict=True)):
        ax.imshow(a[:, lo - LOWEST_PITCH:hi - LOWEST_PITCH + 1].T, origin="lower", aspect="auto", cmap="Greys",
                  interpolation="nearest", vmin=0, vmax=1, extent=(0, len(a) * scale, lo - 0.5, hi + 0.5))
        cs = [p for p in range(lo, hi + 1) if p % 12 == 0] or [lo, hi]
        ax.set_yticks(cs)
        ax.set_yticklabels([note_name(p) for p in cs])
        ax.set_xlim(0, longest * scale)
        ax.grid(axis="y", alpha=0.25)
        if boundary is not None:
            ax.axvline(boundary * scale, color="tab:red", ls="--", lw=1)
        if titles is not None:
            ax.set_title(titles[i], fontsize=9)
    axes[-1, 0].set_xlabel("seconds" if frame_seconds else "frame")
    if title:
        fig.suptitle(title)
    save_figure(fig, path)


# ---------------------------------------------------------------------------- keys and statistics

_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_NATURAL_MINOR = (0, 2, 3, 5, 7, 8, 10)


class Key(NamedTuple):
    """A key: tonic pitch class (0 = C ... 11 = B) and mode, ``"major"`` or ``"minor"``."""

    tonic: int
    mode: str

    @property
    def name(self) -> str:
        return f"{NOTE_NAMES[self.tonic]} {self.mode}"

    @property
    def pitch_classes(self) -> frozenset[int]:
        """The notes counted as in the key: the major scale, or the natural minor plus its raised 7th.

        Minor-key music routinely raises the leading tone (G# in A minor) in every cadence;
        without it, half the dominant chords of a minor piece would count as out of key.
        """
        steps = _MAJOR if self.mode == "major" else (*_NATURAL_MINOR, 11)
        return frozenset((self.tonic + s) % 12 for s in steps)


def _pitch_class_weights(r: np.ndarray) -> np.ndarray:
    """Note-frames per pitch class (C first): how long each pitch class sounds, summed over octaves."""
    per_pitch = r.sum(axis=0, dtype=np.int64)
    w = np.zeros(12, dtype=np.int64)
    np.add.at(w, (np.arange(N_PITCHES) + LOWEST_PITCH) % 12, per_pitch)
    return w


def estimate_key(roll: Any) -> Key | None:
    """The major or minor key whose scale covers the most note-frames; None for a silent roll.

    A deliberately simple count (no Krumhansl profiles): each of the 24 keys scores the
    note-frames whose pitch class lies in its diatonic scale (major, or natural minor). A major
    key and its relative minor share one scale (C major, A minor), so ties go to the key whose
    tonic triad sounds longest, then whose tonic sounds longest, then to C-first, major-first
    order. A C major scale thus reads as C major and an A minor scale as A minor.
    """
    w = _pitch_class_weights(_as_roll(roll))
    if not w.any():
        return None
    best, best_score = None, None
    for tonic in range(12):
        for mode, scale, third in (("major", _MAJOR, 4), ("minor", _NATURAL_MINOR, 3)):
            coverage = sum(w[(tonic + s) % 12] for s in scale)
            triad = w[tonic] + w[(tonic + third) % 12] + w[(tonic + 7) % 12]
            score = (coverage, triad, w[tonic])
            if best_score is None or score > best_score:  # strict: the first of equals wins
                best, best_score = Key(tonic, mode), score
    return best


def _roll_counts(r: np.ndarray) -> dict[str, Any]:
    """Sums behind the statistics, so that a set of pieces can be pooled frame by frame."""
    per_frame = r.sum(axis=1)
    sounding = per_frame > 0
    key = estimate_key(r)
    counts: dict[str, Any] = {"frames": len(r), "sounding_frames": int(sounding.sum()),
                              "note_frames": int(per_frame.sum()), "key": key,
                              "lowest": None, "highest": None, "span_sum": 0, "in_key_frames": 0}
    if sounding.any():
        cols = np.flatnonzero(r.any(axis=0))
        counts["lowest"], counts["highest"] = int(cols[0]) + LOWEST_PITCH, int(cols[-1]) + LOWEST_PITCH
        rows = r[sounding]
        low = np.argmax(rows, axis=1)
        high = N_PITCHES - 1 - np.argmax(rows[:, ::-1], axis=1)
        counts["span_sum"] = int((high - low).sum())
        in_key = np.array([((p + LOWEST_PITCH) % 12) in key.pitch_classes for p in range(N_PITCHES)])
        counts["in_key_frames"] = int((~(rows & ~in_key).any(axis=1)).sum())
    return counts


def _stats_from(c: dict[str, Any]) -> dict[str, Any]:
    frames, sounding = c["frames"], c["sounding_frames"]
    return {
        "frames": frames,
        "mean_polyphony": c["note_frames"] / frames if frames else 0.0,  # notes per frame, rests included
        "silent_share": 1 - sounding / frames if frames else 1.0,
        "lowest": c["lowest"],
        "highest": c["highest"],
        "mean_span": c["span_sum"] / sounding if sounding else 0.0,  # semitones, over frames with notes
        "in_key_share": c["in_key_frames"] / sounding if sounding else 1.0,  # over frames with notes
    }


def roll_stats(roll: Any) -> dict[str, Any]:
    """Musical statistics of one roll, for the listening check.

    ``mean_polyphony``: notes per frame over all frames; ``silent_share``: frames with no note;
    ``lowest``/``highest``: extreme MIDI pitches (None if silent); ``mean_span``: highest minus
    lowest pitch in a frame, in semitones, averaged over frames with notes; ``key``: the
    :func:`estimate_key` name; ``in_key_share``: share of frames with notes whose notes all lie
    in that key (:attr:`Key.pitch_classes`).
    """
    c = _roll_counts(_as_roll(roll))
    return {**_stats_from(c), "key": c["key"].name if c["key"] else None}


def corpus_stats(rolls: Iterable[Any]) -> dict[str, Any]:
    """:func:`roll_stats` pooled over pieces, frame-weighted, each piece judged in its own key.

    Also ``pieces`` and ``major_share`` (share of non-silent pieces estimated in a major key),
    so generated pieces can be set against real test pieces number by number.
    """
    total = {"frames": 0, "sounding_frames": 0, "note_frames": 0, "span_sum": 0, "in_key_frames": 0,
             "lowest": None, "highest": None}
    pieces = majors = keyed = 0
    for roll in rolls:
        c = _roll_counts(_as_roll(roll, f"roll {pieces}"))
        pieces += 1
        for k in ("frames", "sounding_frames", "note_frames", "span_sum", "in_key_frames"):
            total[k] += c[k]
        if c["lowest"] is not None:
            total["lowest"] = c["lowest"] if total["lowest"] is None else min(total["lowest"], c["lowest"])
            total["highest"] = c["highest"] if total["highest"] is None else max(total["highest"], c["highest"])
        if c["key"] is not None:
            keyed += 1
            majors += c["key"].mode == "major"
    if not pieces:
        raise RnnkitError("no pieces to compute statistics over")
    return {"pieces": pieces, **_stats_from(total), "major_share": majors / keyed if keyed else None}


# ---------------------------------------------------------------------------- evaluation


def _flat(x: Any) -> Any:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    return x.reshape(-1, x.shape[-1]) if x.ndim > 2 else x


def frame_accuracy(pred: Any, true: Any) -> float:
    """Frame-level accuracy of Bay et al. (2009), as used by Boulanger-Lewandowski et al. (2012).

    ``sum TP / sum (TP + FP + FN)``, counts summed over all frames: over all pieces when lists
    of rolls are given (paired in order), over every leading axis of an array (a padded batch;
    padding is silent in both and counts for nothing). Float inputs count as on above 0.5.
    True negatives do not count, so silence predicted as silence neither helps nor hurts; when
    nothing is on in either (no TP, FP or FN at all) the prediction is perfect: 1.0.
    """
    if hasattr(pred, "shape") or hasattr(true, "shape"):
        pairs = [(_flat(pred), _flat(true))]
    else:
        pred, true = list(pred), list(true)
        if pred and np.ndim(pred[0]) == 1:  # a single roll given as nested lists
            pairs = [(pred, true)]
        else:
            if len(pred) != len(true):
                raise RnnkitError(f"{len(pred)} predicted rolls for {len(true)} true ones")
            pairs = list(zip(pred, true, strict=True))
    tp = fp = fn = 0
    for i, (p, t) in enumerate(pairs):
        p, t = _as_roll(p, "predicted roll"), _as_roll(t, "true roll")
        if p.shape != t.shape:
            raise RnnkitError(f"piece {i}: predicted roll {p.shape} and true roll {t.shape} differ in shape")
        tp += int((p & t).sum())
        fp += int((p & ~t).sum())
        fn += int((~p & t).sum())
    denominator = tp + fp + fn
    return tp / denominator if denominator else 1.0
