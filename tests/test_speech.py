"""Speech recognition: CTC decoding, the language model, the task through the real command line, bad input."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from conftest import SHARED, assert_one_line_error, one_line, rnnkit_cli

from rnnkit.data.audio import FeatureConfig
from rnnkit.data.speech import DIGIT_WORDS, Alphabet, Utterance
from rnnkit.errors import RnnkitError
from rnnkit.tasks.speech import (
    AcousticModel,
    Augmentation,
    CharNgram,
    Lexicon,
    ModelConfig,
    SpeechRecognizer,
    beam_decode,
    beam_search,
    combine,
    ctc_loss,
    error_rates,
    greedy_decode,
    transcript_log_likelihood,
)

FSDD = SHARED / "speech" / "fsdd"
needs_fsdd = pytest.mark.skipif(not FSDD.is_dir(), reason="FSDD not in ../shared/data/speech/fsdd")
TINY = ["--hidden", "16", "--layers", "1", "--batch-size", "8"]


@pytest.fixture(scope="module")
def mini_fsdd(tmp_path_factory):
    """Two speakers, four digits, test takes 0-1 and train takes 5-7: 40 real FSDD files."""
    if not FSDD.is_dir():
        pytest.skip("FSDD not in ../shared/data/speech/fsdd")
    out = tmp_path_factory.mktemp("fsdd")
    for speaker in ("george", "jackson"):
        for digit in (0, 3, 7, 8):
            for take in (0, 1, 5, 6, 7):
                name = f"{digit}_{speaker}_{take}.wav"
                shutil.copy(FSDD / name, out / name)
    return out


def tone(seconds: float, rate: int, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


# ---------------------------------------------------------------- decoding and CTC


def frames(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows).log()


def test_greedy_keeps_repeats_separated_by_a_blank_and_merges_the_rest():
    path = torch.tensor([1, 1, 0, 1, 2, 2, 0, 0])
    lp = torch.nn.functional.one_hot(path, 3).float().clamp_min(1e-6).log()
    assert greedy_decode(lp) == [1, 1, 2]


def test_beam_search_sums_paths_where_greedy_takes_the_best_single_path():
    # two frames of p(blank)=0.6, p(a)=0.4: the best path is blank-blank (""), p=0.36, but "a" has
    # three paths (a-, -a, aa) with p=0.64 in all
    lp = frames([0.6, 0.4], [0.6, 0.4])
    alphabet = Alphabet("a")
    assert greedy_decode(lp) == []
    assert beam_decode(lp, alphabet, beam=4) == [1]


def test_beam_search_needs_a_blank_to_repeat_a_label():
    alphabet = Alphabet("e")
    assert beam_decode(frames([0.01, 0.99], [0.01, 0.99]), alphabet) == [1]
    assert beam_decode(frames([0.01, 0.99], [0.98, 0.02], [0.01, 0.99]), alphabet) == [1, 1]


def test_transcript_likelihood_sums_every_alignment():
    """Brute force over all 3^4 frame paths that collapse to the transcript."""
    import itertools

    from rnnkit.tasks.speech import collapse

    torch.manual_seed(0)
    lp = torch.randn(4, 3).log_softmax(-1)
    for target in ([1, 2], [1, 1], [2], []):
        paths = [p for p in itertools.product(range(3), repeat=4) if collapse(torch.tensor(p)) == target]
        exact = torch.logsumexp(torch.stack([sum(lp[t, c] for t, c in enumerate(p)) for p in paths]), 0)
        assert transcript_log_likelihood(lp, target) == pytest.approx(exact.item(), abs=1e-5)
    assert transcript_log_likelihood(lp[:2], [1, 1, 1]) == -math.inf  # 5 frames needed


def test_beam_search_ranks_its_prefixes_and_the_decoder_keeps_the_first():
    alphabet = Alphabet("ab")
    lp = frames([0.2, 0.5, 0.3], [0.3, 0.3, 0.4], [0.6, 0.2, 0.2])
    ranked = beam_search(lp, alphabet, beam=4)
    scores = [score for _, score in ranked]
    assert len(ranked) == 4 and scores == sorted(scores, reverse=True)
    assert ranked[0][0] == beam_decode(lp, alphabet, beam=4)


def test_an_ensemble_picks_the_transcript_its_models_agree_on():
    """Model A leans to "a" at its one frame, model B (two frames) strongly to "b": the mean likelihood wins."""
    alphabet = Alphabet("ab")
    a = frames([0.05, 0.55, 0.40])
    b = frames([0.50, 0.05, 0.45], [0.90, 0.05, 0.05])
    assert combine([a], [[1], [2]], alphabet) == [1]
    assert combine([a, b], [[1], [2]], alphabet) == [2]
    mean_b = (transcript_log_likelihood(a, [2]) + transcript_log_likelihood(b, [2])) / 2
    mean_a = (transcript_log_likelihood(a, [1]) + transcript_log_likelihood(b, [1])) / 2
    assert mean_b > mean_a
    lexicon = Lexicon(["a"], alphabet)
    assert combine([a, b], [[1], [2]], alphabet, lexicon=lexicon) == [1]  # only whole words of the lexicon
    lm = CharNgram(["a"] * 50, order=2, alphabet=alphabet)
    assert combine([a, b], [[1], [2]], alphabet, lm=lm, lm_weight=3.0) == [1]  # the language model outvotes
    # a model with too few frames for a proposal: the proposals more models can produce first, then
    # the mean over those that can
    two = frames([0.1, 0.1, 0.8], [0.1, 0.8, 0.1])   # "ba" likely, "ab" not
    one = frames([0.1, 0.8, 0.1])                     # one frame: no two-label transcript
    assert combine([two, one], [[1, 2], [2, 1]], alphabet) == [2, 1]
    assert combine([two, one], [[2, 1], [1]], alphabet) == [1]  # "a" is possible for both


def test_char_ngram_is_a_distribution_and_steers_the_beam():
    alphabet = Alphabet(" no")
    lm = CharNgram(["no no", "on"] * 5 + ["no"], order=3, alphabet=alphabet)
    for history in ("", "n", "no", "zz"):
        total = sum(lm.prob(history, c) for c in [*alphabet.symbols, CharNgram.END])
        assert math.isclose(total, 1.0, rel_tol=1e-9), history
    # acoustics that cannot tell "n" from "o" at the second label: the model learnt "no" follows "n"
    lp = frames([0.02, 0.01, 0.95, 0.02], [0.02, 0.01, 0.485, 0.485])
    assert beam_decode(lp, alphabet, beam=8, lm=lm, lm_weight=1.0) == [2, 3]


def test_a_lexicon_keeps_the_beam_to_whole_words():
    alphabet = Alphabet(" eghinot")
    lexicon = Lexicon(["eight", "one", "nine"], alphabet)
    assert lexicon.allows("", "e") and lexicon.allows("eig", "h") and not lexicon.allows("eig", "t")
    assert lexicon.allows("one", " ") and not lexicon.allows("on", " ") and not lexicon.allows("", " ")
    assert lexicon.allows("one ", "n") and lexicon.complete("one nine") and not lexicon.complete("one ni")
    assert lexicon.complete("")  # silence
    # greedy reads "eigt" (the h is less likely than a blank at its frame); only "eight" is a word
    ids = [alphabet.encode(c)[0] for c in "eight"]

    def frame(label: int, p: float) -> list[float]:
        row = [(1 - p) if i == Alphabet.blank else 1e-3 for i in range(len(alphabet))]
        row[label] = p
        return row

    lp = frames(*[frame(i, 0.3 if c == "h" else 0.9) for i, c in zip(ids, "eight", strict=True)])
    assert alphabet.decode(greedy_decode(lp)) == "eigt"
    assert alphabet.decode(beam_decode(lp, alphabet, beam=8)) == "eigt"
    assert alphabet.decode(beam_decode(lp, alphabet, beam=8, lexicon=lexicon)) == "eight"


def test_lexicon_refuses_what_the_model_cannot_spell(tmp_path):
    alphabet = Alphabet(" one")
    for words, fragment in ((["one", "two"], "'two' has characters the model cannot output: 'tw'"),
                            ([], "no words")):
        with pytest.raises(RnnkitError) as e:
            Lexicon(words, alphabet)
        assert fragment in one_line(e)
    with pytest.raises(RnnkitError, match="no such lexicon"):
        Lexicon.from_files([tmp_path / "missing.txt"], alphabet)
    (tmp_path / "words.txt").write_text("one\none one\n", encoding="utf-8")
    assert Lexicon.from_files([tmp_path / "words.txt"], alphabet).words == {"one"}


def test_speed_perturbation_is_seeded_and_never_leaves_ctc_too_few_frames():
    from rnnkit.tasks.speech import AcousticModel, ModelConfig, SpeechTask

    model = AcousticModel(ModelConfig(labels=" eno", features={"n_mels": 8}, hidden=4, layers=1, stride=2))
    texts = ["one", "noon", "one one"]
    feats = [torch.randn(n, 8) for n in (6, 12, 200)]  # the first two have exactly the frames CTC needs
    task = SpeechTask(model, (feats, texts), (feats, texts), batch_size=3, seed=1,
                      augmentation=Augmentation(spec_augment=False, speed_perturb=0.3))
    assert task.min_frames == [6, 10, 14]
    lengths = {i: {len(task.augmented(feats[i], epoch, i)) for epoch in range(30)} for i in range(3)}
    assert min(lengths[0]) == 6 and min(lengths[1]) >= 10  # shortened only as far as CTC allows
    assert min(lengths[2]) < 200 < max(lengths[2]) and max(lengths[2]) <= 260
    torch.testing.assert_close(task.augmented(feats[2], 4, 2), task.augmented(feats[2], 4, 2))  # same draw


def test_vtlp_warps_every_utterance_by_its_own_seeded_factor():
    from rnnkit.tasks.speech import AcousticModel, ModelConfig, SpeechTask

    model = AcousticModel(ModelConfig(labels=" eno", features={"n_mels": 8, "deltas": 1}, hidden=4, layers=1))
    feats = [torch.randn(30, 16) for _ in range(2)]
    task = SpeechTask(model, (feats, ["one"] * 2), (feats, ["one"] * 2), batch_size=2, seed=3,
                      augmentation=Augmentation(spec_augment=False, vtlp=0.2))
    warped = [task.augmented(feats[0], epoch, 0) for epoch in range(4)]
    assert all(w.shape == feats[0].shape and not torch.equal(w, feats[0]) for w in warped)
    assert not torch.equal(warped[0], warped[1])  # a new factor each epoch ...
    torch.testing.assert_close(task.augmented(feats[0], 2, 0), warped[2])  # ... the same one on a resumed run
    with pytest.raises(RnnkitError, match="log-mel"):
        SpeechRecognizer(features="mfcc", vtlp=0.1)
    with pytest.raises(RnnkitError, match="silence padding must be at least 0 ms, not -5"):
        SpeechRecognizer(pad_silence_ms=-5)


def test_silence_padding_adds_up_to_its_frames_at_each_end_and_keeps_the_speech():
    from rnnkit.tasks.speech import AcousticModel, ModelConfig, SpeechTask

    model = AcousticModel(ModelConfig(labels=" eno", features={"n_mels": 8}, hidden=4, layers=1))
    feats = [torch.randn(30, 8)]
    task = SpeechTask(model, (feats, ["one"]), (feats, ["one"]), batch_size=1, seed=3,
                      augmentation=Augmentation(spec_augment=False, pad_silence_ms=50))  # 5 frames of 10 ms
    lengths = set()
    for epoch in range(40):
        out = task.augmented(feats[0], epoch, 0)
        start = next(i for i in range(len(out)) if torch.equal(out[i:i + 30], feats[0]))
        assert start <= 5 and len(out) - 30 - start <= 5
        lengths.add(len(out))
    assert min(lengths) < 35 and max(lengths) > 35
    with pytest.raises(RnnkitError, match=r"\[0, 1\)"):
        SpeechRecognizer(vtlp=1.5)


def test_a_clip_gets_the_same_outputs_alone_and_padded_in_a_batch_with_the_convolutional_front_end():
    torch.manual_seed(0)
    cfg = ModelConfig(labels="ab", features=FeatureConfig(n_mels=10).to_dict(), hidden=8, layers=1, dropout=0.0,
                      stride=3, conv_channels=4)
    model = AcousticModel(cfg).eval()
    assert model.conv.out_dim == 4 * 3  # 10 bands halved twice, rounding up
    short, long = torch.randn(7, 10), torch.randn(12, 10)
    batch = torch.nn.utils.rnn.pad_sequence([short, long], batch_first=True)
    together, n, _ = model(batch, torch.tensor([7, 12]))
    alone, m, _ = model(short[None], torch.tensor([7]))
    assert n.tolist() == [3, 4] and m.tolist() == [3]
    torch.testing.assert_close(together[0, :3], alone[0])
    with pytest.raises(RnnkitError, match="streaming model cannot have a convolutional front end"):
        SpeechRecognizer(streaming=True, conv_channels=8)
    for other_features in ({"features": "mfcc"}, {"deltas": 1}):
        with pytest.raises(RnnkitError, match="neighbouring mel bands"):
            SpeechRecognizer(conv_channels=8, **other_features)


def test_ctc_loss_of_repeats_is_finite_exactly_at_the_minimum_frame_count():
    lp = torch.randn(1, 3, 3).log_softmax(-1)
    same = torch.tensor([[1, 1]])
    assert math.isinf(ctc_loss(lp[:, :2], torch.tensor([2]), same, torch.tensor([2])).item())  # no room for a blank
    assert math.isfinite(ctc_loss(lp, torch.tensor([3]), same, torch.tensor([2])).item())
    empty = ctc_loss(lp, torch.tensor([3]), torch.zeros(1, 1, dtype=torch.long), torch.tensor([0]))
    assert math.isclose(empty.item(), -lp[0, :, 0].sum().item(), rel_tol=1e-5)  # all blanks


def test_error_rates_come_from_jiwer_and_survive_empty_references():
    r = error_rates(["three four", "", "one"], ["three for", "", "one"])
    assert math.isclose(r["wer"], 1 / 3) and math.isclose(r["ser"], 1 / 3)


# ---------------------------------------------------------------- the command line


@needs_fsdd
def test_train_resume_eval_transcribe_plot_through_the_cli(mini_fsdd, tmp_path):
    data = tmp_path / "fsdd"
    shutil.copytree(mini_fsdd, data)
    run = tmp_path / "run"
    p = rnnkit_cli("speech", "train", data, "--format", "fsdd", "--split", "train", "--out", run, *TINY,
                   "--max-steps", "3", "--speed-perturb", "0.1", "--vtlp", "0.1", "--pad-silence", "30", "--sortagrad",
                   "--trim-db", "40", "--conv-channels", "4")
    assert p.returncode == 0, p.stderr
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["conv_channels"] == 4  # resume and load rebuild the front end
    assert config["model"]["features"]["trim_db"] == 40  # recognition computes the same trimmed features
    assert config["task"] == "speech" and config["options"]["sortagrad"]
    assert config["options"]["speed_perturb"] == 0.1 == config["options"]["vtlp"]
    assert config["options"]["pad_silence_ms"] == 30
    shutil.rmtree(data)  # the run folder alone must be enough to resume
    p = rnnkit_cli("speech", "train", "--resume", run, "--max-steps", "5")
    assert p.returncode == 0, p.stderr
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(steps) == 5 and steps == sorted(steps)
    p = rnnkit_cli("speech", "eval", run, mini_fsdd, "--format", "fsdd", "--split", "test")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert lines[0] == "utterances 16" and lines[-1].startswith("wer ")
    assert 0 <= float(lines[-1].split()[1])
    png = tmp_path / "align.png"
    p = rnnkit_cli("speech", "transcribe", run, mini_fsdd / "3_george_0.wav", "--beam", "3", "--plot", png)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split("\t")[2].endswith(" ms") and png.stat().st_size > 1000
    lexicon = tmp_path / "digits.txt"
    alphabet = SpeechRecognizer.load(run).model.cfg.alphabet
    words = [w for w in DIGIT_WORDS if all(c in alphabet for c in w)]  # the digits this small set holds
    lexicon.write_text(" ".join(words), encoding="utf-8")
    p = rnnkit_cli("speech", "eval", run, mini_fsdd, "--format", "fsdd", "--split", "test", "--beam", "4",
                   "--lexicon", lexicon, "--output", tmp_path / "hyps.tsv")
    assert p.returncode == 0, p.stderr
    hyps = [line.split("\t")[2] for line in (tmp_path / "hyps.tsv").read_text().splitlines()[1:]]
    assert hyps and all(w in words for h in hyps for w in h.split())  # an untrained model spells words too
    # a reference outside the model's characters; a file that is not audio; a bidirectional model cannot stream
    write_folder(tmp_path / "zebra", [(str(mini_fsdd / "0_george_0.wav"), "zebra")])
    assert_one_line_error(rnnkit_cli("speech", "eval", run, tmp_path / "zebra"), "'b'")
    rec = SpeechRecognizer.load(run)
    with pytest.raises(RnnkitError) as e:
        rec.transcribe([tmp_path / "zebra" / "transcripts.tsv"])
    assert "transcripts.tsv" in one_line(e)
    with pytest.raises(RnnkitError, match="bidirectional"):
        next(rec.stream(torch.zeros(800)))
    # an ensemble of run folders: the CLI's --ensemble, and a refusal of models with other characters
    p = rnnkit_cli("speech", "eval", run, mini_fsdd, "--format", "fsdd", "--split", "test", "--beam", "4",
                   "--lexicon", lexicon, "--ensemble", run, run)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().splitlines()[-1].startswith("wer ")
    alone = rec.evaluate(mini_fsdd, format="fsdd")["hypotheses"]  # greedy: one proposal a model
    assert rec.evaluate(mini_fsdd, format="fsdd", ensemble=[run])["hypotheses"] == alone
    # members that differ: another stride (other frame counts), at another sample rate
    other = SpeechRecognizer(hidden=16, layers=1, batch_size=8, stride=1, sample_rate=16000, max_steps=2,
                             out=tmp_path / "run-16k").fit(mini_fsdd, format="fsdd")
    mixed = rec.evaluate(mini_fsdd, format="fsdd", beam=4, lexicon=lexicon, ensemble=[other])
    assert len(mixed["hypotheses"]) == 16 and all(w in words for h in mixed["hypotheses"] for w in h.split())
    other = SpeechRecognizer.load(run)
    other.model.cfg = dataclasses.replace(other.model.cfg, labels="xyz")
    with pytest.raises(RnnkitError, match="share their output characters"):
        rec.transcribe([mini_fsdd / "3_george_0.wav"], ensemble=[other])
    assert_one_line_error(rnnkit_cli("speech", "transcribe", run, mini_fsdd / "3_george_0.wav", "--plot",
                                     tmp_path / "e.png", "--ensemble", run), "--ensemble")


def write_folder(folder, rows):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "transcripts.tsv").write_text("".join(f"{p}\t{t}\n" for p, t in rows), encoding="utf-8")
    return folder


def test_any_rate_stereo_flac_and_empty_transcripts_train(tmp_path):
    """16 kHz stereo WAV, 44.1 kHz FLAC, a clip shorter than one window with an empty transcript."""
    stereo = np.stack([tone(0.4, 16000), tone(0.4, 16000, 300)], axis=1)
    soundfile.write(tmp_path / "a.wav", stereo, 16000)
    soundfile.write(tmp_path / "b.flac", tone(0.5, 44100, 900), 44100)
    soundfile.write(tmp_path / "c.wav", tone(0.01, 8000), 8000)   # 80 samples, a 200-sample window
    soundfile.write(tmp_path / "d.wav", tone(0.3, 8000, 2000), 8000)
    write_folder(tmp_path, [("a.wav", "ab"), ("b.flac", "ba"), ("c.wav", ""), ("d.wav", "")])
    rec = SpeechRecognizer(hidden=8, layers=1, batch_size=4, val_fraction=0, max_steps=2,
                           out=tmp_path / "run").fit(tmp_path)
    assert rec.result.steps == 2 and math.isfinite(rec.result.last_eval["val_loss"])
    t = rec.transcribe([tmp_path / "c.wav"])[0]
    assert set(t.text) <= {"a", "b"} and t.audio_seconds == pytest.approx(0.01)


def test_streaming_matches_whole_file_decoding(tmp_path, capsys):
    for i, f in enumerate((300, 600, 900, 1200)):
        soundfile.write(tmp_path / f"{i}.wav", tone(0.6, 8000, f), 8000)
    write_folder(tmp_path, [(f"{i}.wav", "ab"[i % 2] * 2) for i in range(4)])
    rec = SpeechRecognizer(hidden=8, layers=1, batch_size=4, streaming=True, val_fraction=0, max_steps=2,
                           out=tmp_path / "run").fit(tmp_path)
    wave = torch.from_numpy(tone(0.6, 8000, 600))
    soundfile.write(tmp_path / "x.wav", wave.numpy(), 8000)
    whole = rec.transcribe([tmp_path / "x.wav"])[0].text
    for chunk in (0.013, 0.1, 1.0):
        partial = list(rec.stream(wave, chunk))
        assert partial[-1] == whole, chunk
    from rnnkit.cli import main  # the command line's own code, in this process

    assert main(["speech", "transcribe", str(tmp_path / "run"), str(tmp_path / "x.wav"), "--stream",
                 "--chunk-ms", "200"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[1] for line in lines] == ["0.20s", "0.40s", "0.60s", "final"]
    assert lines[-1].split("\t")[2] == whole
    with pytest.raises(RnnkitError, match="delta"):
        SpeechRecognizer(streaming=True, deltas=1)
    with pytest.raises(RnnkitError, match="cannot trim silence"):
        SpeechRecognizer(streaming=True, trim_db=30)


# ---------------------------------------------------------------- bad input


def test_bad_input_is_one_line(tmp_path):
    soundfile.write(tmp_path / "ok.wav", tone(0.5, 8000), 8000)
    (tmp_path / "text.wav").write_text("not audio at all\n")
    soundfile.write(tmp_path / "empty.wav", np.zeros(0, np.float32), 8000)
    soundfile.write(tmp_path / "short.wav", tone(0.03, 8000), 8000)  # 3 frames, 2 after the stride
    cases = [
        ([("ok.wav", "ab"), ("text.wav", "a")], [], "text.wav"),
        ([("ok.wav", "ab"), ("empty.wav", "a")], [], "no audio samples"),
        ([("ok.wav", "ab"), ("gone.wav", "a")], [], "no such audio file ../gone.wav"),
        ([("ok.wav", "abd")], ["--labels", "abc"], "'d'"),
        ([("ok.wav", "ab"), ("short.wav", "aa")], [], "too short"),
    ]
    for i, (rows, extra, fragment) in enumerate(cases):
        folder = write_folder(tmp_path / f"case{i}", [("../" + p, t) for p, t in rows])
        p = rnnkit_cli("speech", "train", folder, "--out", tmp_path / f"run{i}", *TINY, "--max-steps", "1", *extra)
        assert_one_line_error(p, fragment)
        assert not (tmp_path / f"run{i}").exists() or not any((tmp_path / f"run{i}").iterdir())


def test_too_short_names_the_largest_stride_that_fits():
    alphabet = Alphabet("ab")
    utts = [Utterance(Path("long.wav"), "ab"), Utterance(Path("short.wav"), "aba")]
    feats = [torch.zeros(12, 4), torch.zeros(7, 4)]  # "aba" needs 3 output frames: stride 2 gives 4, 3 gives 3
    SpeechRecognizer._check_feasible(utts, feats, alphabet, stride=3)
    with pytest.raises(RnnkitError, match=r"1 clip\(s\) .* short.wav: 2 output frames .*--stride 3 fits every clip"):
        SpeechRecognizer._check_feasible(utts, feats, alphabet, stride=4)
    with pytest.raises(RnnkitError, match=r"needs 3: .* repeats\)$"):  # not even stride 1: no hint
        SpeechRecognizer._check_feasible(utts, [torch.zeros(12, 4), torch.zeros(2, 4)], alphabet, stride=2)


def test_utterances_of_both_splits_never_mix(mini_fsdd):
    from rnnkit.tasks.speech import load_utterances

    train = load_utterances(mini_fsdd, "fsdd", "train")
    test = load_utterances(mini_fsdd, "fsdd", "test")
    assert {u.path for u in train}.isdisjoint(u.path for u in test) and len(train) + len(test) == 40
    assert all(isinstance(u, Utterance) and u.take >= 5 for u in train)


def test_benchmark_refuses_strings_that_share_a_recording(tmp_path, monkeypatch):
    import argparse
    import sys

    bench = Path(__file__).resolve().parents[1] / "benchmarks"
    monkeypatch.syspath_prepend(str(bench))
    monkeypatch.delitem(sys.modules, "speech", raising=False)
    import importlib.util

    spec = importlib.util.spec_from_file_location("speech_benchmark", bench / "speech.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    args = argparse.Namespace(strings=tmp_path, train_strings=1, test_strings=1, fsdd=tmp_path, noise_db=None)
    for split, seed, source in (("train", module.TRAIN_SEED, "3_theo_5.wav"), ("test", module.TEST_SEED,
                                                                               "3_theo_0.wav")):
        folder = write_folder(tmp_path / f"{split}-1-seed{seed}", [("0000.wav", "three")])
        (folder / "sources.tsv").write_text(f"path\tspeaker\tsources\n0000.wav\ttheo\t{source}\n")
    assert module.string_sets(args)[0].name == "train-1-seed7"
    (tmp_path / "test-1-seed2024" / "sources.tsv").write_text("path\tspeaker\tsources\n0000.wav\ttheo\t3_theo_5.wav\n")
    with pytest.raises(SystemExit, match="feed both"):
        module.string_sets(args)
