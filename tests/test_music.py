"""The music task: exact likelihoods, the model API, and `rnnkit music` train/eval/generate/resume end to end."""

import json
import math

import mido
import numpy as np
import pytest
import torch
from conftest import SHARED, assert_one_line_error, one_line, rnnkit_cli

from rnnkit.data.music import read_midi, roll_to_notes, write_midi
from rnnkit.errors import RnnkitError
from rnnkit.tasks.music import MusicModel, MusicNet, NetConfig, Piece, transpose

JSB = SHARED / "music" / "JSB_Chorales.mat"
TINY = ["--hidden", "16", "--nade-hidden", "8", "--seq-len", "16", "--batch-size", "4", "--precision", "fp32"]


def chorale(seed: int, bars: int = 4) -> np.ndarray:
    """A small piece on a 16th-note grid: held C-major-ish chords and a moving top voice."""
    rng = np.random.default_rng(seed)
    roll = np.zeros((bars * 16, 88), dtype=np.uint8)
    for bar in range(bars):
        root = 39 + int(rng.choice([0, 5, 7, 9]))           # C4, F4, G4 or A4 as columns (MIDI 60 = column 39)
        roll[bar * 16:(bar + 1) * 16, [root, root + 4, root + 7]] = 1
        for beat in range(4):
            roll[bar * 16 + beat * 4:bar * 16 + beat * 4 + 3, root + 12 + int(rng.choice([0, 2, 4]))] = 1
    return roll


@pytest.fixture(scope="module")
def midi_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("midi")
    for i in range(5):
        write_midi(folder / f"piece{i}.mid", chorale(i), steps_per_beat=4)
    return folder


def reference_nade_log_prob(net: MusicNet, cond: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The NADE written as its definition, one key at a time (Larochelle and Murray 2011)."""
    bv, a = net.bias_v(cond), net.bias_h(cond)
    total = torch.zeros(len(v))
    for i in range(88):
        p = torch.sigmoid(bv[:, i] + torch.sigmoid(a) @ net.V[i])
        total += torch.where(v[:, i] > 0, torch.log(p), torch.log1p(-p))
        a = a + v[:, i:i + 1] * net.W[:, i]
    return total


def test_nade_likelihood_is_the_key_by_key_product():
    torch.manual_seed(0)
    net = MusicNet(NetConfig(output="nade", hidden=12, nade_hidden=10))
    with torch.no_grad():
        net.W.normal_(0, 0.5)
        net.V.normal_(0, 0.5)
    cond = torch.randn(7, 12)
    v = (torch.rand(7, 88) < 0.1).float()
    v[0] = 0  # a silent frame
    v[1, :] = 1  # every key at once
    assert torch.allclose(net.log_prob(cond, v), reference_nade_log_prob(net, cond, v), atol=1e-4)


def test_independent_output_is_a_sum_of_bernoullis():
    torch.manual_seed(0)
    net = MusicNet(NetConfig(output="independent", hidden=6))
    cond, v = torch.randn(3, 6), (torch.rand(3, 88) < 0.2).float()
    p = torch.sigmoid(net.bias_v(cond))
    expected = (v * p.log() + (1 - v) * (1 - p).log()).sum(1)
    assert torch.allclose(net.log_prob(cond, v), expected, atol=1e-4)
    # with a zero network every key is a fair coin: 88 log 2 nats per frame
    with torch.no_grad():
        net.bias_v.weight.zero_()
        net.bias_v.bias.zero_()
    assert net.log_prob(cond, v).neg().allclose(torch.full((3,), 88 * math.log(2)))


def test_piece_round_trip_through_midi(tmp_path):
    roll = chorale(3)
    Piece(roll, 0, steps_per_beat=4, frame_seconds=0.125).write_midi(tmp_path / "a.mid")
    assert np.array_equal(read_midi(tmp_path / "a.mid", steps_per_beat=4).roll, roll)
    # JSB's layout sits an octave high: written an octave down, read back at sounding pitch
    Piece(roll, 0, steps_per_beat=1, frame_seconds=0.5, transpose=-12).write_midi(tmp_path / "b.mid")
    back = read_midi(tmp_path / "b.mid", steps_per_beat=1).roll
    assert np.array_equal(back, transpose(roll, -12)) and np.array_equal(transpose(back, 12), roll)
    # held chords are written as notes, not one note per frame
    events = len(mido.MidiFile(tmp_path / "a.mid").tracks[0]) - 4  # less tempo, time signature, program, end
    assert events == 2 * len(roll_to_notes(roll)) < 2 * int(roll.sum())  # a note-on and a note-off per note


def test_python_api_fit_evaluate_generate(tmp_path):
    pieces = {"train": [chorale(i) for i in range(6)], "valid": [chorale(10)], "test": [chorale(11), chorale(12)]}
    m = MusicModel(output="nade", hidden=24, nade_hidden=16, seq_len=32, batch_size=4, out=tmp_path / "run",
                   max_steps=60, lr=1e-2, warmup_steps=5, eval_every=30)
    m.fit(pieces)
    before = 88 * math.log(2)
    r = m.evaluate("test")
    assert r["pieces"] == 2 and r["frames"] == 128 and r["nll"] < before / 4
    assert 0 <= r["frame_accuracy"] <= 1
    a, b = m.generate(20, seed=5), m.generate(20, seed=5)
    assert np.array_equal(a.roll, b.roll) and a.roll.shape == (20, 88) and a.primer_frames == 0
    primed = m.generate(8, prime=chorale(1)[:16], seed=1)
    assert primed.primer_frames == 16 and np.array_equal(primed.roll[:16], chorale(1)[:16])
    again = MusicModel.load(tmp_path / "run")
    assert again.evaluate("test")["nll"] == pytest.approx(r["nll"], rel=1e-5)
    with pytest.raises(RnnkitError) as e:
        MusicModel(output="rbm")
    assert "output" in one_line(e)
    with pytest.raises(RnnkitError):
        m.generate(0)


def test_cli_train_eval_generate(tmp_path, midi_folder):
    run = tmp_path / "run"
    p = rnnkit_cli("music", "train", midi_folder, "--out", run, *TINY, "--max-steps", "6", "--eval-every", "3",
                   "--augment", "2")
    assert p.returncode == 0, p.stderr
    assert "val_nll" in p.stdout
    config = json.loads((run / "config.json").read_text())
    assert config["task"] == "music" and config["grid"]["steps_per_beat"] == 4

    p = rnnkit_cli("music", "eval", run, "--split", "valid")
    assert p.returncode == 0, p.stderr
    last = p.stdout.strip().splitlines()[-1].split()
    assert last[0] == "nll" and 0 < float(last[1]) < 100
    p = rnnkit_cli("music", "eval", run, midi_folder / "piece0.mid")
    assert p.returncode == 0 and "1 pieces, 64 frames" in p.stdout, p.stderr

    song = tmp_path / "out" / "song.mid"
    song.parent.mkdir()
    p = rnnkit_cli("music", "generate", run, "--out", song, "--wav", tmp_path / "out" / "song.wav", "--length", "24",
                   "--temperature", "0.8", "--prime", midi_folder / "piece1.mid", "--seed", "3")
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "out" / "song.png").stat().st_size > 0 and (tmp_path / "out" / "song.wav").stat().st_size > 0
    back = read_midi(song, steps_per_beat=4)
    assert len(back.roll) <= 64 + 24 and np.array_equal(back.roll[:64], chorale(1))


def test_cli_resume_continues_the_run(tmp_path, midi_folder):
    run = tmp_path / "run"
    assert rnnkit_cli("music", "train", midi_folder, "--out", run, *TINY, "--output", "independent",
                      "--max-steps", "3").returncode == 0
    p = rnnkit_cli("music", "train", "--resume", run, "--max-steps", "6")
    assert p.returncode == 0, p.stderr
    assert "steps 6" in p.stdout
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(steps) == 6


def test_cli_bad_inputs(tmp_path):
    corrupt = tmp_path / "corrupt.mid"
    corrupt.write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x02garbage")
    assert_one_line_error(rnnkit_cli("music", "train", corrupt, "--out", tmp_path / "a", "--max-steps", "1"),
                          "not a readable MIDI file")
    empty = tmp_path / "empty.mid"
    mid = mido.MidiFile()
    mid.tracks.append(mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500000, time=0)]))
    mid.save(empty)
    assert_one_line_error(rnnkit_cli("music", "train", empty, "--out", tmp_path / "b", "--max-steps", "1"),
                          "no notes")
    import scipy.io

    wrong = tmp_path / "wrong.mat"
    scipy.io.savemat(wrong, {"pieces": np.zeros((3, 88))})
    assert_one_line_error(rnnkit_cli("music", "train", wrong, "--out", tmp_path / "c", "--max-steps", "1"),
                          "lacks traindata")
    assert not (tmp_path / "a").exists()  # nothing half-written: the data is read before the run folder is made


def test_api_bad_inputs(tmp_path):
    with pytest.raises(RnnkitError) as e:
        MusicModel.load(tmp_path)
    assert "not a run folder" in one_line(e)
    with pytest.raises(RnnkitError) as e:
        MusicModel(augment=12)
    assert "semitones" in one_line(e)
    with pytest.raises(RnnkitError) as e:
        MusicModel(out=tmp_path / "r", max_steps=1).fit([])
    assert "no data" in one_line(e)


@pytest.mark.skipif(not JSB.exists(), reason="the JSB Chorales set is not in shared/data")
def test_jsb_learns_and_plays_an_octave_down(tmp_path):
    torch.set_num_threads(1)
    m = MusicModel(output="independent", hidden=32, out=tmp_path / "jsb", max_steps=25, lr=2e-2, warmup_steps=5)
    m.fit(JSB)
    assert m.grid["steps_per_beat"] == 1 and m.grid["transpose"] == -12
    r = m.evaluate("test")
    assert r["pieces"] == 77 and r["nll"] < 20  # a fair coin per key scores 61
    piece = m.generate(16, seed=0)
    assert np.array_equal(piece.sounding, transpose(piece.roll, -12))
