"""rnnkit.data.music: .mat piano-roll sets, MIDI in and out, audio, plots, key and roll statistics, frame accuracy."""

from __future__ import annotations

import wave
from pathlib import Path

import mido
import numpy as np
import pytest
import scipy.io
import torch
from conftest import one_line

from rnnkit.data import music
from rnnkit.data.music import (
    Key,
    corpus_stats,
    estimate_key,
    frame_accuracy,
    load_mat,
    load_midi,
    plot_piano_roll,
    read_midi,
    render_audio,
    roll_stats,
    roll_to_notes,
    write_midi,
    write_wav,
)
from rnnkit.errors import RnnkitError

MUSIC = Path(__file__).resolve().parents[2] / "shared" / "data" / "music"
TPB = 480  # ticks per quarter note in the hand-made MIDI files below




def empty_roll(frames: int) -> np.ndarray:
    return np.zeros((frames, 88), dtype=np.uint8)


def col(pitch: int) -> int:
    return pitch - 21


def make_midi(path: Path, notes, tempos=((0, 500_000),), tpb: int = TPB, drum_notes=()) -> Path:
    """A type-1 MIDI file written with mido directly (not with write_midi), so reading is tested on its own.

    ``notes`` are ``(pitch, start_tick, end_tick)``; tempos go in track 0, notes in track 1.
    """
    meta = mido.MidiTrack()
    now = 0
    for tick, tempo in tempos:
        meta.append(mido.MetaMessage("set_tempo", tempo=tempo, time=tick - now))
        now = tick
    events = []
    for channel, group in ((0, notes), (9, drum_notes)):
        for pitch, start, end in group:
            events += [(end, 0, pitch, channel), (start, 1, pitch, channel)]
    track = mido.MidiTrack()
    now = 0
    for tick, is_on, pitch, channel in sorted(events):
        track.append(mido.Message("note_on" if is_on else "note_off", note=pitch, velocity=64 if is_on else 0,
                                  channel=channel, time=tick - now))
        now = tick
    mid = mido.MidiFile(type=1, ticks_per_beat=tpb)
    mid.tracks += [meta, track]
    mid.save(str(path))
    return path


# ---------------------------------------------------------------------------- .mat sets

# pieces and frames per split, counted with scipy.io.loadmat directly when the files were inspected
MAT_SIZES = {
    "JSB_Chorales": {"train": (229, 13807), "valid": (76, 4602), "test": (77, 4725)},
    "Nottingham": {"train": (694, 176561), "valid": (173, 45513), "test": (170, 44463)},
    "MuseData": {"train": (524, 245202), "valid": (135, 82755), "test": (124, 64339)},
    "Piano_midi": {"train": (87, 75911), "valid": (12, 8540), "test": (25, 19036)},
}


@pytest.mark.parametrize("name", list(MAT_SIZES))
def test_load_mat_real_sets(name):
    path = MUSIC / f"{name}.mat"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    data = load_mat(path)
    assert set(data) == {"train", "valid", "test"}
    for split, (pieces, frames) in MAT_SIZES[name].items():
        rolls = data[split]
        assert len(rolls) == pieces
        assert sum(len(r) for r in rolls) == frames
        for r in rolls:
            assert r.dtype == np.uint8 and r.shape[1] == 88 and r.flags["C_CONTIGUOUS"]
            assert r.max() <= 1
        assert sum(int(r.sum()) for r in rolls) > frames  # more than one note per frame on average: real music


def test_load_mat_keeps_the_values(tmp_path):
    rng = np.random.default_rng(0)
    pieces = [(rng.random((n, 88)) < 0.05).astype(np.uint8) for n in (5, 9)]
    cell = np.empty((1, 2), dtype=object)
    cell[0, 0], cell[0, 1] = pieces
    one = np.empty((1, 1), dtype=object)
    one[0, 0] = pieces[1]
    scipy.io.savemat(tmp_path / "s.mat", {"traindata": cell, "validdata": one, "testdata": one})
    data = load_mat(tmp_path / "s.mat")
    assert [r.tolist() for r in data["train"]] == [p.tolist() for p in pieces]
    assert np.array_equal(data["test"][0], pieces[1])


def test_load_mat_errors(tmp_path):
    with pytest.raises(RnnkitError, match="no such file"):
        load_mat(tmp_path / "absent.mat")
    (tmp_path / "text.mat").write_text("hello, not a matlab file\n" * 20)
    with pytest.raises(RnnkitError, match="not a readable .mat") as e:
        load_mat(tmp_path / "text.mat")
    one_line(e)
    scipy.io.savemat(tmp_path / "other.mat", {"x": np.zeros((3, 3))})
    with pytest.raises(RnnkitError, match="lacks traindata, validdata, testdata") as e:
        load_mat(tmp_path / "other.mat")
    assert "variables found: x" in one_line(e)
    cell = np.empty((1, 1), dtype=object)
    cell[0, 0] = np.zeros((4, 12), dtype=np.uint8)
    scipy.io.savemat(tmp_path / "narrow.mat", {"traindata": cell, "validdata": cell, "testdata": cell})
    with pytest.raises(RnnkitError, match=r"shape \(4, 12\)"):
        load_mat(tmp_path / "narrow.mat")


# ---------------------------------------------------------------------------- MIDI in


def test_read_midi_held_and_repeated_notes(tmp_path):
    q = TPB  # a quarter note is 4 sixteenth frames
    path = make_midi(tmp_path / "a.mid", [
        (60, 0, 2 * q),  # C4 held for two beats: 8 frames, one onset
        (64, 0, q), (64, q, 2 * q),  # E4 struck twice: 8 frames on, two onsets
        (67, 2 * q, 2 * q + q // 4),  # G4, one 16th
    ])
    m = read_midi(path)
    assert m.roll.shape == (9, 88) and m.roll.dtype == np.uint8
    assert m.roll[:, col(60)].tolist() == [1] * 8 + [0]
    assert m.onsets[:, col(60)].tolist() == [1] + [0] * 8
    assert m.roll[:, col(64)].tolist() == [1] * 8 + [0]
    assert m.onsets[:, col(64)].tolist() == [1, 0, 0, 0, 1, 0, 0, 0, 0]
    assert m.roll[:, col(67)].tolist() == [0] * 8 + [1]
    assert m.roll.sum() == 17 and m.notes == 4 and m.steps_per_beat == 4 and m.initial_bpm == 120
    assert m.frame_seconds == pytest.approx(0.125)
    # at 8 steps per beat every note lasts twice as many frames
    assert read_midi(path, steps_per_beat=8).roll[:, col(60)].sum() == 16


def test_read_midi_restrike_listed_before_release(tmp_path):
    # a re-struck key whose note-on comes before the previous note-off at the same tick: still two notes
    path = tmp_path / "order.mid"
    track = mido.MidiTrack([
        mido.Message("note_on", note=62, velocity=64, time=0),
        mido.Message("note_on", note=62, velocity=64, time=TPB),
        mido.Message("note_off", note=62, velocity=0, time=0),
        mido.Message("note_off", note=62, velocity=0, time=TPB),
    ])
    mid = mido.MidiFile(type=0, ticks_per_beat=TPB)
    mid.tracks.append(track)
    mid.save(str(path))
    m = read_midi(path)
    assert m.roll[:, col(62)].tolist() == [1] * 8
    assert m.onsets[:, col(62)].tolist() == [1, 0, 0, 0, 1, 0, 0, 0]


def test_read_midi_tempo_change(tmp_path):
    # one C4 per beat for 8 beats; the tempo halves (120 -> 60 bpm) after beat 4
    notes = [(60, b * TPB, (b + 1) * TPB) for b in range(8)]
    path = make_midi(tmp_path / "t.mid", notes, tempos=[(0, 500_000), (4 * TPB, 1_000_000)])
    beats = read_midi(path)  # the beat grid ignores tempo: every note is 4 frames
    assert len(beats.roll) == 32
    assert np.flatnonzero(beats.onsets[:, col(60)]).tolist() == list(range(0, 32, 4))
    timed = read_midi(path, frame_rate=8)  # 0.125 s frames: 4 per beat at 120 bpm, then 8 per beat at 60
    assert timed.steps_per_beat is None and timed.frame_rate == 8
    assert len(timed.roll) == 16 + 32
    assert np.flatnonzero(timed.onsets[:, col(60)]).tolist() == [0, 4, 8, 12, 16, 24, 32, 40]
    assert timed.roll[:, col(60)].all()


def test_read_midi_drums_and_range(tmp_path):
    path = make_midi(tmp_path / "d.mid", [(60, 0, TPB), (10, 0, TPB), (120, 0, TPB)],
                     drum_notes=[(36, 0, TPB), (42, 0, 2 * TPB)])
    with pytest.warns(UserWarning, match="2 of 3 notes lie outside"):
        m = read_midi(path)
    assert m.drum_notes == 2 and m.dropped_notes == 2 and m.notes == 1
    assert m.roll.sum() == 4 and m.roll[:4, col(60)].all()
    assert not m.roll[:, col(36)].any() and not m.roll[:, col(42)].any()
    # the drums' two beats still set the piece's length: the end of the longest track
    assert len(m.roll) == 8


def test_read_midi_errors(tmp_path):
    with pytest.raises(RnnkitError, match="no such file"):
        read_midi(tmp_path / "absent.mid")
    (tmp_path / "noise.mid").write_bytes(np.random.default_rng(1).bytes(300))
    (tmp_path / "empty.mid").write_bytes(b"")
    good = make_midi(tmp_path / "good.mid", [(60, 0, TPB)])
    (tmp_path / "cut.mid").write_bytes(good.read_bytes()[:30])  # header fine, track cut short
    for name in ("noise.mid", "empty.mid", "cut.mid"):
        with pytest.raises(RnnkitError, match="not a readable MIDI file") as e:
            read_midi(tmp_path / name)
        assert "()" not in one_line(e)  # the cause is named, even where the reader's own message is empty
    with pytest.raises(RnnkitError, match="holds no notes") as e:
        read_midi(make_midi(tmp_path / "silent.mid", []))
    one_line(e)
    with pytest.raises(RnnkitError, match=r"only drum notes \(1\)"):
        read_midi(make_midi(tmp_path / "drums.mid", [], drum_notes=[(36, 0, TPB)]))
    with pytest.raises(RnnkitError, match="no notes within"), pytest.warns(UserWarning):
        read_midi(make_midi(tmp_path / "high.mid", [(120, 0, TPB)]))
    with pytest.raises(RnnkitError, match="steps_per_beat"):
        read_midi(good, steps_per_beat=0)
    # the largest delta time MIDI can encode, 2^28 - 1 ticks (a damaged one, say): refused before allocating
    with pytest.raises(RnnkitError, match="timing looks damaged"):
        read_midi(make_midi(tmp_path / "long.mid", [(60, 0, 0x0FFFFFFF)]))


def test_load_midi_folder(tmp_path):
    make_midi(tmp_path / "b.MID", [(62, 0, TPB)])
    (tmp_path / "sub").mkdir()
    make_midi(tmp_path / "sub" / "a.midi", [(60, 0, TPB)])
    (tmp_path / "notes.txt").write_text("not music")
    rolls = load_midi(tmp_path)
    assert [Path(m.path).name for m in rolls] == ["b.MID", "a.midi"]  # sorted by path: b.MID before sub/
    assert rolls[1].roll[:, col(60)].sum() == 4
    (tmp_path / "none").mkdir()
    with pytest.raises(RnnkitError, match="holds no .mid"):
        load_midi(tmp_path / "none")


# ---------------------------------------------------------------------------- MIDI out


def test_roll_to_notes():
    r = empty_roll(6)
    r[0:4, col(60)] = 1
    r[1:3, col(64)] = 1
    r[5, col(64)] = 1
    o = empty_roll(6)
    o[2, col(60)] = 1  # C4 struck again at frame 2
    o[4, col(67)] = 1  # an onset where nothing sounds is ignored
    assert roll_to_notes(r) == [(60, 0, 4), (64, 1, 3), (64, 5, 6)]
    assert roll_to_notes(r, o) == [(60, 0, 2), (64, 1, 3), (60, 2, 4), (64, 5, 6)]


def normalised_onsets(roll: np.ndarray, onsets: np.ndarray) -> np.ndarray:
    """Onsets as a reader sees them: each run's first frame, plus given onsets where the roll is on."""
    prev = np.vstack([np.zeros((1, 88), np.uint8), roll[:-1]])
    return ((roll & ~prev) | (roll & onsets)).astype(np.uint8)


@pytest.mark.parametrize("steps_per_beat", [4, 1, 3])
def test_midi_round_trip_exact(tmp_path, steps_per_beat):
    rng = np.random.default_rng(steps_per_beat)
    # runs of held notes: each frame keeps the previous frame's pitch with probability 0.8
    frames = 60
    roll = empty_roll(frames)
    for c in rng.choice(88, size=12, replace=False):
        state = 0
        for t in range(frames):
            state = state if rng.random() < 0.8 else 1 - state
            roll[t, c] = state
    roll[-3:] = 0  # trailing rests must survive too
    onsets = (rng.random(roll.shape) < 0.2).astype(np.uint8)  # re-strikes inside held runs
    path = tmp_path / "rt.mid"
    write_midi(path, roll, onsets, frame_seconds=0.1, steps_per_beat=steps_per_beat)
    back = read_midi(path, steps_per_beat=steps_per_beat)
    assert np.array_equal(back.roll, roll)
    assert np.array_equal(back.onsets, normalised_onsets(roll, onsets))
    assert (back.onsets & ~normalised_onsets(roll, 0 * onsets)).any()  # some repeated notes really are there
    assert back.initial_bpm == pytest.approx(60 / (0.1 * steps_per_beat))
    # read in real time, 10 frames a second, the roll is the same
    timed = read_midi(path, frame_rate=10)
    assert np.array_equal(timed.roll, roll) and np.array_equal(timed.onsets, back.onsets)
    # without onsets, runs come back as single held notes
    write_midi(path, roll, frame_seconds=0.1, steps_per_beat=steps_per_beat)
    plain = read_midi(path, steps_per_beat=steps_per_beat)
    assert np.array_equal(plain.roll, roll)
    assert np.array_equal(plain.onsets, normalised_onsets(roll, 0 * onsets))


def test_write_midi_single_notes_and_errors(tmp_path):
    r = empty_roll(8)
    r[:, col(60)] = 1
    write_midi(tmp_path / "one.mid", r)
    ons = [m for m in mido.MidiFile(str(tmp_path / "one.mid")).tracks[0] if m.type == "note_on" and m.velocity]
    assert len(ons) == 1  # eight held frames are one note, not eight
    with pytest.raises(RnnkitError, match=r"\(frames, 88\)"):
        write_midi(tmp_path / "bad.mid", np.zeros((4, 12)))
    with pytest.raises(RnnkitError, match="not a MIDI tempo"):
        write_midi(tmp_path / "bad.mid", r, frame_seconds=0)
    with pytest.raises(RnnkitError, match="NaN or inf"):  # NaN keys were silently off
        write_midi(tmp_path / "bad.mid", np.where(r > 0, np.nan, 0.0))
    assert not (tmp_path / "bad.mid").exists()


# ---------------------------------------------------------------------------- audio


def test_builtin_synth_output():
    r = empty_roll(8)
    r[:, col(69)] = 1  # A4 for a second
    r[2:6, [col(36), col(100), col(108)]] = 1  # low, high and the top key: harmonics above Nyquist are dropped
    sr = 8000
    audio = render_audio(r, frame_seconds=0.125, sample_rate=sr)
    assert audio.dtype == np.float32 and np.isfinite(audio).all()
    assert np.abs(audio).max() == pytest.approx(0.9, abs=1e-6) and np.abs(audio).max() <= 1
    assert len(audio) >= sr  # the roll's second plus the release
    solo = render_audio(r * (np.arange(88) == col(69)), frame_seconds=0.125, sample_rate=sr)
    spectrum = np.abs(np.fft.rfft(solo[:sr]))
    assert np.argmax(spectrum) == 440  # 1 Hz bins over one second: the fundamental of A4
    assert not render_audio(empty_roll(4), sample_rate=sr).any()


def test_repeated_note_is_restruck():
    r = empty_roll(8)
    r[:, col(60)] = 1
    onsets = empty_roll(8)
    onsets[4, col(60)] = 1
    sr, half = 8000, 4000
    held = render_audio(r, frame_seconds=0.125, sample_rate=sr)
    twice = render_audio(r, onsets, frame_seconds=0.125, sample_rate=sr)
    # the first note stops and the second starts from silence: a dip around the re-strike that the held
    # note lacks, and a fresh attack that is louder after it than the decayed held note
    around = slice(half - 20, half + 20)
    assert np.abs(twice[around]).max() < 0.5 * np.abs(held[around]).max()
    after = slice(half + 200, half + 600)
    assert np.abs(twice[after]).max() > 1.1 * np.abs(held[after]).max()


def test_write_wav(tmp_path):
    r = empty_roll(4)
    r[:, col(60)] = r[:, col(64)] = 1
    engine = write_wav(tmp_path / "a.wav", r, frame_seconds=0.25, sample_rate=8000, synth="builtin")
    assert engine == "builtin"
    with wave.open(str(tmp_path / "a.wav")) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    assert len(pcm) >= 8000 and np.abs(pcm).max() == round(0.9 * 32767)
    # "auto" never crashes: FluidSynth when it works here, the built-in synth otherwise
    assert write_wav(tmp_path / "b.wav", r, synth="auto") in ("builtin", "fluidsynth")
    with pytest.raises(RnnkitError, match="unknown synth"):
        write_wav(tmp_path / "c.wav", r, synth="organ")


@pytest.mark.skipif(music.fluidsynth_available(), reason="FluidSynth is installed here")
def test_fluidsynth_missing_is_one_line():
    with pytest.raises(RnnkitError, match="FluidSynth rendering needs") as e:
        render_audio(empty_roll(2), synth="fluidsynth")
    one_line(e)


def test_fluidsynth_path_wiring(monkeypatch):
    # FluidSynth itself is not installed here: stand in for it to check what rnnkit does with its output
    pretty_midi = pytest.importorskip("pretty_midi")
    calls = []

    def fake(self, fs=None, synthesizer=None, **_):
        calls.append((fs, synthesizer, [(n.pitch, n.start, n.end) for n in self.instruments[0].notes]))
        return 3.0 * np.sin(np.arange(fs) / 5)  # louder than full scale, as a soundfont can be

    monkeypatch.setattr(music, "fluidsynth_available", lambda: True)
    monkeypatch.setattr(pretty_midi.PrettyMIDI, "fluidsynth", fake)
    r = empty_roll(4)
    r[1:3, col(60)] = 1
    sf2 = Path(__file__)  # any existing file passes as the soundfont; the fake never reads it
    audio = render_audio(r, frame_seconds=0.5, sample_rate=8000, synth="fluidsynth", soundfont=str(sf2))
    assert calls == [(8000, str(sf2), [(60, 0.5, 1.5)])]
    assert np.abs(audio).max() == pytest.approx(0.9, abs=1e-6)  # normalised, no clipping

    def broken(self, **_):
        raise RuntimeError("cannot load soundfont")

    monkeypatch.setattr(pretty_midi.PrettyMIDI, "fluidsynth", broken)
    with pytest.raises(RnnkitError, match="FluidSynth failed"):
        render_audio(r, synth="fluidsynth", soundfont=str(sf2))
    assert np.isfinite(render_audio(r, synth="auto", soundfont=str(sf2))).all()  # auto falls back


# ---------------------------------------------------------------------------- plots


def test_plot_piano_roll(tmp_path):
    a, b = empty_roll(16), empty_roll(24)
    a[:, col(60)] = 1
    b[::2, col(72)] = 1
    plot_piano_roll(tmp_path / "one.png", a, frame_seconds=0.25)
    plot_piano_roll(tmp_path / "two.png", [a, b], ["primer", "generated"], boundary=16, title="t")
    for name in ("one.png", "two.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(RnnkitError, match="1 titles for 2 rolls"):
        plot_piano_roll(tmp_path / "x.png", [a, b], ["one"])
    assert music.note_name(60) == "C4" and music.note_name(21) == "A0" and music.note_name(108) == "C8"


# ---------------------------------------------------------------------------- keys and statistics


def melody(pitches: list[int]) -> np.ndarray:
    r = empty_roll(len(pitches))
    for t, p in enumerate(pitches):
        r[t, col(p)] = 1
    return r


C_MAJOR_SCALE = [60, 62, 64, 65, 67, 69, 71, 72]
A_MINOR_SCALE = [57, 59, 60, 62, 64, 65, 67, 69]


def test_estimate_key():
    assert estimate_key(melody(C_MAJOR_SCALE)) == Key(0, "major")
    assert estimate_key(melody(A_MINOR_SCALE)) == Key(9, "minor")
    assert estimate_key(melody([57, 59, 60, 62, 64, 65, 68, 69])) == Key(9, "minor")  # harmonic minor, G#
    assert estimate_key(melody([p + 2 for p in C_MAJOR_SCALE])).name == "D major"
    assert estimate_key(melody([p + 7 for p in A_MINOR_SCALE])).name == "E minor"
    assert estimate_key(empty_roll(5)) is None
    assert Key(9, "minor").pitch_classes == {9, 11, 0, 2, 4, 5, 7, 8}  # natural minor plus G#


def test_roll_stats_hand_case():
    r = empty_roll(5)
    r[0, [col(60), col(64), col(67)]] = 1  # C major triad: span 7
    r[1, [col(48), col(72)]] = 1  # two Cs: span 24
    r[2, col(61)] = 1  # C#: out of C major
    r[4, col(60)] = 1  # frame 3 is silent
    s = roll_stats(r)
    assert s["frames"] == 5 and s["mean_polyphony"] == pytest.approx(7 / 5)
    assert s["silent_share"] == pytest.approx(1 / 5)
    assert (s["lowest"], s["highest"]) == (48, 72)
    assert s["mean_span"] == pytest.approx((7 + 24 + 0 + 0) / 4)
    assert s["key"] == "C major" and s["in_key_share"] == pytest.approx(3 / 4)
    assert roll_stats(melody(A_MINOR_SCALE))["in_key_share"] == 1.0
    silent = roll_stats(empty_roll(3))
    assert silent["key"] is None and silent["lowest"] is None and silent["mean_polyphony"] == 0


def test_corpus_stats_pools_frames():
    a = melody(C_MAJOR_SCALE)  # 8 frames, one note each, in key
    b = empty_roll(2)
    b[:, [col(40), col(44), col(47)]] = 1  # E major triad, twice: its own key, in key
    s = corpus_stats([a, b])
    assert s["pieces"] == 2 and s["frames"] == 10
    assert s["mean_polyphony"] == pytest.approx((8 + 6) / 10)
    assert (s["lowest"], s["highest"]) == (40, 72)
    assert s["mean_span"] == pytest.approx(2 * 7 / 10)
    assert s["in_key_share"] == 1.0 and s["major_share"] == 1.0
    with pytest.raises(RnnkitError, match="no pieces"):
        corpus_stats([])


# ---------------------------------------------------------------------------- frame accuracy


def test_frame_accuracy_hand_cases():
    true = empty_roll(2)
    true[0, [0, 1]] = 1
    true[1, 2] = 1
    pred = empty_roll(2)
    pred[0, [0, 5]] = 1  # TP 1, FP 1, FN 1
    pred[1, 2] = 1  # TP 1
    assert frame_accuracy(pred, true) == pytest.approx(2 / 4)
    assert frame_accuracy(true, true) == 1.0
    assert frame_accuracy(empty_roll(2), true) == 0.0
    assert frame_accuracy(empty_roll(3), empty_roll(3)) == 1.0  # nothing to find and nothing claimed
    # pieces pool their counts (1 TP; then 3 FN): 1/4, not the mean of 1 and 0
    hit = empty_roll(1)
    hit[0, 0] = 1
    miss = empty_roll(1)
    miss[0, :3] = 1
    assert frame_accuracy([hit, empty_roll(1)], [hit, miss]) == pytest.approx(1 / 4)
    # probabilities count as on above 0.5; a (batch, frames, 88) tensor counts every frame
    probs = torch.zeros(2, 1, 88)
    probs[0, 0, 0], probs[1, 0, 0] = 0.9, 0.4
    target = torch.zeros(2, 1, 88)
    target[:, 0, 0] = 1
    assert frame_accuracy(probs, target) == pytest.approx(1 / 2)
    with pytest.raises(RnnkitError, match="differ in shape"):
        frame_accuracy(empty_roll(3), empty_roll(4))
    with pytest.raises(RnnkitError, match="2 predicted rolls for 1"):
        frame_accuracy([hit, hit], [hit])
