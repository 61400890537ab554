"""Speech datasets: transcript folders, FSDD splits, connected digit strings, CTC lengths, batches."""

import importlib.util
import itertools
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

from rnnkit.data.audio import FeatureConfig, load_audio
from rnnkit.data.speech import (
    DIGIT_WORDS,
    Alphabet,
    SpeechDataset,
    Utterance,
    collate,
    ctc_feasible,
    ctc_min_frames,
    digit_text,
    fsdd_utterances,
    make_digit_strings,
    read_transcripts,
    text_digits,
    write_transcripts,
)
from rnnkit.errors import RnnkitError

FSDD = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech" / "fsdd"
needs_fsdd = pytest.mark.skipif(not FSDD.is_dir(), reason="FSDD not present in ../shared/data/speech/fsdd")
SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "make_digit_strings.py"


@pytest.fixture(scope="module")
def fake_fsdd(tmp_path_factory) -> Path:
    """A small FSDD-shaped folder: 2 speakers x 10 digits x takes 0-7, each a tone of its own pitch and length."""
    root = tmp_path_factory.mktemp("fsdd")
    rng = np.random.default_rng(0)
    for speaker, digit, take in itertools.product(("ann", "bob"), range(10), range(8)):
        n = int(rng.integers(800, 2400))
        x = 0.3 * np.sin(2 * np.pi * (200 + 100 * digit + 7 * take) * np.arange(n) / 8000)
        sf.write(root / f"{digit}_{speaker}_{take}.wav", x.astype(np.float32), 8000, subtype="PCM_16")
    return root


# ---------------------------------------------------------------- labels and CTC

def test_alphabet_encodes_decodes_and_refuses_unknown_characters():
    a = Alphabet.for_digits("words")
    assert len(a) == 1 + len(set("".join(DIGIT_WORDS)) | {" "}) and a.labels[0] == ""
    ids = a.encode("three three")
    assert 0 not in ids and a.decode(ids) == "three three" and a.decode([0, *ids, 0]) == "three three"
    assert Alphabet.for_digits("digits").symbols == list(" 0123456789")
    with pytest.raises(RnnkitError, match="'q' in 'qz' is not in the alphabet"):
        a.encode("qz")
    with pytest.raises(RnnkitError, match="distinct"):
        Alphabet("abca")
    with pytest.raises(RnnkitError, match="single characters"):
        Alphabet(["a", "bc"])


def test_digit_text_round_trips_and_keeps_repeats():
    assert digit_text([3, 3, 0]) == "three three zero"
    assert digit_text([3, 3, 0], "digits") == "3 3 0"
    assert text_digits("three three zero") == text_digits("3 3 0") == [3, 3, 0]
    with pytest.raises(RnnkitError, match="not a digit"):
        text_digits("three tree")
    with pytest.raises(RnnkitError, match="words"):
        digit_text([1], "letters")


@pytest.mark.parametrize("target", [[1], [1, 1], [2, 3, 3, 3, 4], [5, 5, 6, 6], [1, 2, 1, 2]])
def test_ctc_feasible_agrees_with_torch_ctc_loss(target):
    need = ctc_min_frames(target)
    assert need == len(target) + sum(a == b for a, b in itertools.pairwise(target))
    torch.manual_seed(0)
    for frames in range(max(1, len(target) - 1), need + 3):
        logp = torch.randn(frames, 1, 8).log_softmax(-1)
        loss = F.ctc_loss(logp, torch.tensor([target]), torch.tensor([frames]), torch.tensor([len(target)]),
                          reduction="sum", zero_infinity=False)
        assert ctc_feasible(frames, target) == bool(torch.isfinite(loss)), (frames, target)


# ---------------------------------------------------------------- transcript folders

def write_wav(path: Path, n: int = 400, rate: int = 8000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(n, np.float32) + 0.1, rate, subtype="PCM_16")


def test_tsv_with_header_blank_lines_and_relative_paths(tmp_path):
    write_wav(tmp_path / "a.wav")
    write_wav(tmp_path / "sub" / "b.wav")
    (tmp_path / "transcripts.tsv").write_text("path\ttext\na.wav\tone two\n\nsub/b.wav\t  nine \n", encoding="utf-8")
    utts = read_transcripts(tmp_path, labels=Alphabet.for_digits())
    assert [(u.path, u.text) for u in utts] == [(tmp_path / "a.wav", "one two"), (tmp_path / "sub" / "b.wav", "nine")]
    assert utts[1].load(16000).shape == (800,)  # resampled on load


def test_csv_with_quoted_commas(tmp_path):
    write_wav(tmp_path / "a.wav")
    (tmp_path / "transcripts.csv").write_text('path,text\na.wav,"hello, world"\n', encoding="utf-8")
    (u,) = read_transcripts(tmp_path)
    assert u.text == "hello, world"
    with pytest.raises(RnnkitError, match=r"transcripts.csv line 2: character ',' in 'hello, world'"):
        read_transcripts(tmp_path, labels="helowrd ")


@pytest.mark.parametrize("content, message", [
    ("a.wav\tone\nmissing.wav\ttwo\n", "line 2: no such audio file missing.wav"),
    ("a.wav\tone\n\na.wav\tTwo\n", "line 3: character 'T' in 'Two' is not in the label set"),
    ("a.wav one\n", "line 1: expected path<TAB>text, got 1 field"),
    ("\tone\n", "line 1: the path is empty"),
    ("path\ttext\n\n", "lists no recordings"),
])
def test_bad_transcript_lines_are_one_line_errors_naming_the_line(tmp_path, content, message):
    write_wav(tmp_path / "a.wav")
    (tmp_path / "transcripts.tsv").write_text(content, encoding="utf-8")
    with pytest.raises(RnnkitError, match=message) as e:
        read_transcripts(tmp_path / "transcripts.tsv", labels=Alphabet.for_digits())
    assert "\n" not in str(e.value)


def test_folder_without_transcripts_and_non_utf8(tmp_path):
    with pytest.raises(RnnkitError, match="has no transcripts.tsv"):
        read_transcripts(tmp_path)
    with pytest.raises(RnnkitError, match="no such folder"):
        read_transcripts(tmp_path / "nope")
    (tmp_path / "transcripts.tsv").write_bytes(b"a.wav\t\xff\xfe\n")
    with pytest.raises(RnnkitError, match="not UTF-8"):
        read_transcripts(tmp_path)


def test_write_transcripts_round_trips_and_refuses_tabs(tmp_path):
    write_wav(tmp_path / "x.wav")
    write_transcripts(tmp_path / "transcripts.tsv", [("x.wav", "three three")])
    assert read_transcripts(tmp_path)[0].text == "three three"
    with pytest.raises(RnnkitError, match="tabs or line breaks"):
        write_transcripts(tmp_path / "t.tsv", [("x.wav", "a\tb")])


# ---------------------------------------------------------------- FSDD

def test_fsdd_split_by_take_and_speaker_filters(fake_fsdd):
    train, test = fsdd_utterances(fake_fsdd), fsdd_utterances(fake_fsdd, "test")
    assert len(train) == 2 * 10 * 3 and len(test) == 2 * 10 * 5
    assert {u.take for u in train} == {5, 6, 7} and {u.take for u in test} == set(range(5))
    u = next(u for u in train if u.path.name == "3_bob_6.wav")
    assert (u.text, u.digit, u.speaker, u.take) == ("three", 3, "bob", 6)
    assert fsdd_utterances(fake_fsdd, "test", transcript="digits")[0].text.isdigit()
    held = fsdd_utterances(fake_fsdd, "all", speakers=["ann"])
    rest = fsdd_utterances(fake_fsdd, "all", exclude_speakers=["ann"])
    assert {u.speaker for u in held} == {"ann"} and {u.speaker for u in rest} == {"bob"}
    assert len(held) + len(rest) == 160
    with pytest.raises(RnnkitError, match="unknown speaker.*carol; .* has ann, bob"):
        fsdd_utterances(fake_fsdd, speakers=["carol"])
    with pytest.raises(RnnkitError, match="split must be"):
        fsdd_utterances(fake_fsdd, "dev")


def test_fsdd_refuses_foreign_wav_names(tmp_path):
    write_wav(tmp_path / "hello.wav")
    with pytest.raises(RnnkitError, match="hello.wav .* is not named"):
        fsdd_utterances(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RnnkitError, match="holds no .wav"):
        fsdd_utterances(tmp_path / "empty")


@needs_fsdd
def test_real_fsdd_splits():
    train, test = fsdd_utterances(FSDD, "train"), fsdd_utterances(FSDD, "test")
    assert len(train) == 2700 and len(test) == 300
    assert not {u.path for u in train} & {u.path for u in test}
    assert {u.speaker for u in test} == {u.speaker for u in train} and len({u.speaker for u in test}) == 6
    x, rate = load_audio(test[0].path)
    assert rate == 8000 and 0 < x.abs().max() <= 1


# ---------------------------------------------------------------- connected digit strings

def test_train_and_test_strings_never_share_a_recording(fake_fsdd):
    train = make_digit_strings(fsdd_utterances(fake_fsdd, "train"), 60, seed=1, split="train")
    test = make_digit_strings(fsdd_utterances(fake_fsdd, "test"), 60, seed=1, split="test")
    train_src = {p for s in train for p in s.sources}
    test_src = {p for s in test for p in s.sources}
    assert train_src and test_src and not train_src & test_src
    assert {int(p.stem.split("_")[2]) for p in test_src} <= set(range(5))
    assert {int(p.stem.split("_")[2]) for p in train_src} <= {5, 6, 7}


def test_a_pool_with_the_other_splits_takes_is_refused(fake_fsdd):
    leaky = fsdd_utterances(fake_fsdd, "test") + fsdd_utterances(fake_fsdd, "train")[:1]
    with pytest.raises(RnnkitError, match="take 5\\) is not a test recording"):
        make_digit_strings(leaky, 5, split="test")
    transcribed = Utterance(fake_fsdd / "0_ann_0.wav", "zero")  # as read_transcripts makes it: no digit
    with pytest.raises(RnnkitError, match="no digit label"):
        make_digit_strings([transcribed], 1)


def test_strings_are_seeded_prefix_stable_one_speaker_and_keep_repeats(fake_fsdd):
    pool = fsdd_utterances(fake_fsdd, "test")
    a = make_digit_strings(pool, 300, seed=5, split="test")
    assert a == make_digit_strings(pool, 300, seed=5, split="test")
    assert a[:20] == make_digit_strings(pool, 20, seed=5, split="test")  # string i depends on (seed, i) only
    assert a[:20] != make_digit_strings(pool, 20, seed=6, split="test")
    assert {len(s.parts) for s in a} == set(range(1, 8))
    for s in a:
        assert len({p.speaker for p in s.parts}) == 1
        assert s.text == digit_text(s.digits) and text_digits(s.text) == s.digits
        assert len(s.gaps) == len(s.parts) + 1 and all(400 <= g <= 2000 for g in s.gaps)
        # a digit said twice uses two different takes while the pool has them
        for d in set(s.digits):
            takes = [p.path for p in s.parts if p.digit == d]
            assert len(takes) == len(set(takes)) or len(takes) > 5
    repeated = [s for s in a if any(x == y for x, y in itertools.pairwise(s.digits))]
    assert repeated  # about one adjacent pair in ten repeats
    s = repeated[0]
    d = next(x for x, y in itertools.pairwise(s.digits) if x == y)
    assert f"{DIGIT_WORDS[d]} {DIGIT_WORDS[d]}" in s.text


def test_rendered_string_is_its_recordings_separated_by_silence(fake_fsdd):
    (s,) = [x for x in make_digit_strings(fsdd_utterances(fake_fsdd, "test"), 40, seed=2) if len(x.parts) >= 3][:1]
    x = s.load()
    assert len(x) == sum(s.gaps) + sum(len(p.load(8000)) for p in s.parts)
    pos = 0
    for gap, part in zip(s.gaps, s.parts, strict=False):
        assert (x[pos:pos + gap] == 0).all()
        pos += gap
        clip = part.load(8000)
        torch.testing.assert_close(x[pos:pos + len(clip)], clip)
        pos += len(clip)
    assert (x[pos:] == 0).all() and len(x[pos:]) == s.gaps[-1]
    assert len(s.load(16000)) == 2 * len(x)


def test_background_noise_fills_the_gaps_at_the_asked_level(fake_fsdd):
    (s,) = make_digit_strings(fsdd_utterances(fake_fsdd, "test"), 1, seed=3, noise_db=-40)
    x = s.load()
    head = x[:s.gaps[0]]
    assert float(head.pow(2).mean().sqrt()) == pytest.approx(0.01, rel=0.2)
    torch.testing.assert_close(s.load(), x)  # the noise is seeded too


# ---------------------------------------------------------------- dataset and batches

def test_dataset_and_collate_feed_ctc_loss(fake_fsdd):
    strings = make_digit_strings(fsdd_utterances(fake_fsdd, "test"), 6, seed=4, split="test")
    cfg = FeatureConfig(kind="mfcc", deltas=1)
    alphabet = Alphabet.for_digits()
    ds = SpeechDataset(strings, cfg, alphabet)
    batch = collate([ds[i] for i in range(len(ds))])
    lengths = batch["feature_lengths"]
    assert batch["features"].shape == (6, int(lengths.max()), cfg.dim)
    for i, s in enumerate(strings):
        assert int(lengths[i]) == cfg.num_frames(len(s.load()))
        assert alphabet.decode(batch["targets"][i, :batch["target_lengths"][i]]) == s.text == batch["texts"][i]
        assert (batch["features"][i, lengths[i]:] == 0).all()
        assert ctc_feasible(int(lengths[i]), batch["targets"][i, :batch["target_lengths"][i]])
    logp = torch.randn(int(lengths.max()), 6, len(alphabet)).log_softmax(-1)
    loss = F.ctc_loss(logp, batch["targets"], lengths, batch["target_lengths"], zero_infinity=False)
    assert torch.isfinite(loss)


def test_augmentation_is_fixed_per_epoch_and_changes_between_epochs(fake_fsdd):
    utts = fsdd_utterances(fake_fsdd, "test")[:3]
    aug = {"freq_masks": 2, "freq_width": 10, "time_masks": 1, "time_width": 5}
    ds = SpeechDataset(utts, augment=aug, seed=9)
    first = ds[1]["features"]
    torch.testing.assert_close(ds[1]["features"], first)
    torch.testing.assert_close(SpeechDataset(utts, augment=aug, seed=9)[1]["features"], first)
    clean = ds.features_of(1)
    assert (first == 0).any() and not (clean == 0).all(dim=0).any()
    changed = False
    for epoch in range(1, 6):
        ds.set_epoch(epoch)
        changed |= not torch.equal(ds[1]["features"], first)
    assert changed
    torch.testing.assert_close(ds.features_of(1), clean)  # the cache holds unmasked features


def test_dataset_refuses_a_transcript_outside_the_alphabet(fake_fsdd):
    utts = fsdd_utterances(fake_fsdd, "test", transcript="digits")[:2]
    with pytest.raises(RnnkitError, match="0_ann_0.wav: character '0'"):
        SpeechDataset(utts, alphabet=Alphabet.for_digits("words"))
    assert len(SpeechDataset(utts, alphabet=Alphabet.for_digits("digits"))) == 2


# ---------------------------------------------------------------- the fixed test set's command

def load_script():
    spec = importlib.util.spec_from_file_location("make_digit_strings", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_digit_strings_command_is_reproducible_and_readable(fake_fsdd, tmp_path, capsys):
    script = load_script()
    args = ["--fsdd", str(fake_fsdd), "--count", "12", "--seed", "3"]
    assert script.main([str(tmp_path / "a"), *args]) == 0
    assert script.main([str(tmp_path / "b"), *args]) == 0
    assert "12 strings from 100 test recordings" in capsys.readouterr().out
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted([f"{i:04d}.wav" for i in range(12)] + ["settings.json", "sources.tsv", "transcripts.tsv"])
    for name in names:
        if name != "settings.json":  # it names the output folder's options, identical here anyway
            assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    utts = read_transcripts(tmp_path / "a", labels=Alphabet.for_digits())
    expected = make_digit_strings(fsdd_utterances(fake_fsdd, "test"), 12, seed=3, split="test")
    assert [u.text for u in utts] == [s.text for s in expected]
    x, rate = load_audio(utts[0].path)
    assert rate == 8000 and len(x) == len(expected[0].load())
    for line in (tmp_path / "a" / "sources.tsv").read_text().splitlines()[1:]:
        assert all(int(src.split("_")[2].split(".")[0]) < 5 for src in line.split("\t")[2].split())


def test_make_digit_strings_command_reports_bad_input(tmp_path, capsys):
    assert load_script().main([str(tmp_path / "out"), "--fsdd", str(tmp_path / "none")]) == 2
    assert "no such FSDD folder" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
