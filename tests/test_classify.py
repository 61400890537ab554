"""rnnkit.tasks.classify and `rnnkit classify`: a recurrent text classifier trained by fit()."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import SHARED, assert_one_line_error, one_line, rnnkit_cli

from rnnkit.data.labelled_text import LabelledText, Vocab, load_labelled
from rnnkit.errors import RnnkitError
from rnnkit.io import load_tensors, save_tensors
from rnnkit.tasks.classify import (
    Classifier,
    ClassifierNet,
    NBSVMEnsemble,
    NetConfig,
    batched_logits,
    cross_validate,
    read_vectors,
)

FILLER = "the a film story plot actor scene it was is and of to in this that movie some".split()
CUES = {"pos": ["great", "moving", "superb"], "neg": ["dull", "awful", "boring"]}
FAST = {"embed": 16, "hidden": 16, "batch_size": 16, "lr": 0.01, "warmup_steps": 5}
FAST_CLI = ["--embed", "16", "--hidden", "16", "--batch-size", "16", "--lr", "0.01", "--warmup-steps", "5"]
RT = SHARED / "sentiment"


def synthetic(n: int, seed: int = 0) -> LabelledText:
    """Filler words and one cue word of the label's class, anywhere in the sentence."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        label = ("pos", "neg")[i % 2]
        words = [*rng.choice(FILLER, size=int(rng.integers(3, 9))), str(rng.choice(CUES[label]))]
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(label)
    return LabelledText(texts, labels)


def write_csv(path: Path, data: LabelledText, header: tuple[str, str] = ("text", "label")) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(zip(data.texts, data.labels, strict=True))
    return path


@pytest.fixture(scope="module")
def trained() -> Classifier:
    torch.manual_seed(0)
    return Classifier(max_steps=120, **FAST).fit(synthetic(400))


# ---------------------------------------------------------------------------- the model


@pytest.mark.parametrize("pooling", ["max", "mean", "attention", "last"])
def test_padding_does_not_change_a_texts_logits(pooling):
    """A text's logits are the same alone and padded in a batch with a longer one, for every pooling."""
    torch.manual_seed(0)
    net = ClassifierNet(NetConfig(20, 3, embed=8, hidden=8, pooling=pooling, cell="gru")).eval()
    short, long = torch.tensor([3, 4, 5]), torch.tensor([6, 7, 8, 9, 10, 11, 12])
    alone = net(short.unsqueeze(0), torch.tensor([3]))
    ids = torch.nn.utils.rnn.pad_sequence([short, long], batch_first=True)
    together = net(ids, torch.tensor([3, 7]))
    torch.testing.assert_close(together[0], alone[0], atol=1e-5, rtol=1e-5)


def test_learns_and_api_shapes(trained):
    test = synthetic(200, seed=1)
    result = trained.evaluate(test)
    assert result["accuracy"] > 0.9, result
    assert set(result["per_class"]) == {"neg", "pos"} and np.sum(result["confusion"]) == 200
    proba = trained.predict_proba(["a superb film", "dull plot"])
    assert proba.shape == (2, 2) and np.allclose(proba.sum(1), 1)
    assert trained.predict(["a superb film", "dull plot"]) == ["pos", "neg"]
    assert trained.score(test.texts, test.labels) == pytest.approx(result["accuracy"])


def test_explanation_points_at_the_cue_word(trained, tmp_path):
    e = trained.explain("the film was superb and the plot")
    assert e.label == "pos" and e.tokens[int(np.argmax(e.scores))] == "superb"
    e.save_html(tmp_path / "e.html")
    e.save_png(tmp_path / "e.png")
    assert "superb" in (tmp_path / "e.html").read_text() and (tmp_path / "e.png").stat().st_size > 1000
    with pytest.raises(RnnkitError, match="attention pooling|pooling attention"):
        trained.explain("superb", method="attention")


def test_unknown_label_at_evaluation_is_refused(trained):
    with pytest.raises(RnnkitError) as e:
        trained.evaluate(LabelledText(["a film"], ["meh"], ["test.csv row 1"]))
    assert "'meh'" in one_line(e) and "test.csv row 1" in str(e.value)


def test_cross_validation_builds_vocab_per_fold():
    """A word found only in one fold's test part is not in that fold's vocabulary: nothing leaks."""
    data = synthetic(60)
    data.texts[7] += " zyzzyva"
    seen = {}
    scores = cross_validate(data, k=3, seed=0, report=lambda f, a, clf: seen.update({f: clf}), max_steps=5, **FAST)
    assert len(scores) == 3 and sorted(seen) == [0, 1, 2] and all(0 <= s <= 1 for s in scores)
    assert sum("zyzzyva" in clf.vocab.stoi for clf in seen.values()) == 2  # the one fold testing on it lacks it


def test_pretrained_vectors_initialise_the_embedding(tmp_path):
    vocab = Vocab(["good", "bad"])
    path = tmp_path / "vec.txt"
    path.write_text("2 3\nGood 1 2 3\nbad 4 5 6\nother 7 8 9\n", encoding="utf-8")  # word2vec header; case folded
    matrix, found = read_vectors(path, vocab)
    assert found == 2 and matrix.shape == (4, 3)
    assert matrix[vocab.stoi["good"]].tolist() == [1, 2, 3] and matrix[0].tolist() == [0, 0, 0]
    data = synthetic(100)
    vecs = tmp_path / "glove.txt"
    vecs.write_text("".join(f"{w} {' '.join(['0.5'] * 6)}\n" for w in ["superb", "dull", "film"]), encoding="utf-8")
    clf = Classifier(vectors=vecs, max_steps=2, **{**FAST, "lr": 1e-9}).fit(data)
    assert clf.net.embed.weight.shape[1] == 6 and clf.vectors_found == 3
    bad = tmp_path / "bad.txt"
    bad.write_text("a 1 2\nb 1 2 3\n", encoding="utf-8")
    with pytest.raises(RnnkitError, match="line 2"):
        read_vectors(bad, Vocab(["a"]))


def test_char_level_needs_no_word_vocabulary():
    clf = Classifier(level="char", max_steps=3, **FAST).fit(synthetic(60))
    assert all(len(t) == 1 for t in clf.vocab.itos[2:]) and clf.predict(["suprb flim"])[0] in ("pos", "neg")


def test_subword_level_round_trips_through_the_run_folder(tmp_path):
    clf = Classifier(level="subword", subword_size=60, max_steps=3, out=tmp_path / "run", **FAST).fit(synthetic(80))
    assert (tmp_path / "run" / "subword.model").exists()
    again = Classifier.load(tmp_path / "run")
    texts = ["a superbly dull flim", "great"]
    assert again.vocab.tokenizer(texts[0]) == clf.vocab.tokenizer(texts[0])
    np.testing.assert_allclose(again.predict_proba(texts), clf.predict_proba(texts), atol=1e-6)


def test_starts_from_a_character_language_model(tmp_path):
    """Dai and Le (2015): the classifier starts from rnnkit's own LM trained on unlabelled text."""
    from rnnkit.tasks import charlm

    data = synthetic(80)
    corpus = tmp_path / "unlabelled.txt"
    corpus.write_text("\n".join(synthetic(200, seed=5).texts), encoding="utf-8")
    lm, _ = charlm.train(corpus, tmp_path / "lm", hidden=16, layers=1, seq_len=16, batch_size=8, max_steps=3,
                         precision="fp32", progress=False)
    clf = Classifier(level="char", lm=tmp_path / "lm", batch_size=16, max_steps=1, lr=1e-9).fit(data)
    assert clf.net.cfg.hidden == 16 and not clf.net.cfg.bidirectional and clf.vectors_found > 10
    i = clf.vocab.stoi["s"]
    torch.testing.assert_close(clf.net.embed.weight[i], lm.embed.weight[lm.vocab.index["s"]], atol=1e-4, rtol=0)
    with pytest.raises(RnnkitError) as e:
        Classifier(lm=tmp_path / "lm")
    assert "--level char" in one_line(e)


# ---------------------------------------------------------------------------- the command line


def test_cli_train_eval_predict_resume(tmp_path):
    data = write_csv(tmp_path / "train.csv", synthetic(300))
    test = write_csv(tmp_path / "test.csv", synthetic(100, seed=2))
    run = tmp_path / "run"
    first = rnnkit_cli("classify", "train", data, "--out", run, "--max-steps", "20", *FAST_CLI)
    assert first.returncode == 0, first.stderr
    assert {"best.pt", "last.pt", "loss.png", "vocab.json", "data.safetensors"} <= {p.name for p in run.iterdir()}
    vocab, last = (run / "vocab.json").read_bytes(), (run / "last.pt").read_bytes()
    (run / "vocab.json").write_bytes(vocab[:20])  # read only after training: refused before the run changes
    assert_one_line_error(rnnkit_cli("classify", "train", "--resume", run, "--max-steps", "140"), "vocab.json")
    assert (run / "last.pt").read_bytes() == last
    (run / "vocab.json").write_bytes(vocab)
    more = rnnkit_cli("classify", "train", "--resume", run, "--max-steps", "140")
    assert more.returncode == 0, more.stderr
    assert "steps 140" in more.stdout
    steps = [json.loads(line).get("step") for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(s for s in steps if s is not None) == 140

    ev = rnnkit_cli("classify", "eval", run, test)
    assert ev.returncode == 0, ev.stderr
    last = ev.stdout.strip().splitlines()[-1].split()
    assert last[0] == "accuracy" and float(last[1]) > 0.9, ev.stdout
    assert "macro_f1" in ev.stdout and "confusion matrix" in ev.stdout

    pr = rnnkit_cli("classify", "predict", run, "a superb film", "dull and awful")
    assert pr.returncode == 0, pr.stderr
    assert [line.split("\t")[0] for line in pr.stdout.splitlines()] == ["pos", "neg"]
    js = rnnkit_cli("classify", "predict", run, "superb", "--json")
    record = json.loads(js.stdout)
    assert record["label"] == "pos" and abs(sum(record["probabilities"].values()) - 1) < 1e-5

    ex = rnnkit_cli("classify", "explain", run, "the superb story", "--out", tmp_path / "why")
    assert ex.returncode == 0, ex.stderr
    assert (tmp_path / "why" / "explain.html").exists() and (tmp_path / "why" / "explain.png").exists()

    bad_eval = write_csv(tmp_path / "unknown.csv", LabelledText(["a film"], ["meh"]))
    assert_one_line_error(rnnkit_cli("classify", "eval", run, bad_eval), "unknown label 'meh'")


def test_cli_label_file_pairs_with_cp1252(tmp_path):
    """rt-polarity's layout: one sentence a line, Windows-1252; byte 0x85 must not split a line."""
    data = synthetic(60)
    for label in ("pos", "neg"):
        lines = [t for t, lab in zip(data.texts, data.labels, strict=True) if lab == label]
        lines[0] += " \u2026 and more"
        (tmp_path / f"{label}.txt").write_bytes("\n".join(lines).encode("cp1252") + b"\n")
    pairs = [f"pos={tmp_path / 'pos.txt'}", f"neg={tmp_path / 'neg.txt'}"]
    assert_one_line_error(rnnkit_cli("classify", "train", *pairs, "--out", tmp_path / "r0", "--max-steps", "2"),
                          "not valid UTF-8", "--encoding")
    assert not (tmp_path / "r0").exists()
    ok = rnnkit_cli("classify", "train", *pairs, "--encoding", "cp1252", "--out", tmp_path / "r", "--max-steps", "2",
                    *FAST_CLI)
    assert ok.returncode == 0, ok.stderr
    assert len(load_labelled(pairs, encoding="cp1252")) == 60


def test_cli_cv_with_baselines(tmp_path):
    data = write_csv(tmp_path / "d.csv", synthetic(60))
    proc = rnnkit_cli("classify", "cv", data, "--folds", "3", "--baselines", "--max-steps", "5", *FAST_CLI)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert any(line.startswith("nbsvm: accuracy") for line in lines)
    assert any(line.startswith("tfidf-lr: accuracy") for line in lines)
    assert lines[-1].startswith("accuracy ") and lines[-1].endswith("over 3 folds"), lines


def test_cli_bad_input_is_one_line(tmp_path):
    """The issue's bad inputs for training (undecodable bytes and an unknown label at eval are tested above)."""
    good = synthetic(20)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    no_label = write_csv(tmp_path / "nolabel.csv", good, header=("text", "sentiment"))
    one_class = write_csv(tmp_path / "one.csv", LabelledText(["a", "b", "c"], ["pos", "pos", "pos"]))
    long = write_csv(tmp_path / "long.csv", LabelledText([*good.texts[:5], "x" * 500], [*good.labels[:6]]))
    cases = [
        ([empty], "empty"),
        ([no_label], "no label column 'label'"),
        ([one_class], "only the label 'pos'"),
        ([long, "--max-chars", "100"], "over the cap"),
    ]
    for args, fragment in cases:
        proc = rnnkit_cli("classify", "train", *args, "--out", tmp_path / "never", "--max-steps", "1")
        assert_one_line_error(proc, fragment)
        assert not (tmp_path / "never").exists()


def test_api_bad_input_is_one_line(tmp_path, trained):
    with pytest.raises(RnnkitError) as e:
        Classifier.load(tmp_path / "nowhere")
    assert "no run folder" in one_line(e)
    with pytest.raises(RnnkitError) as e:
        Classifier(pooling="nope")
    assert "pooling" in one_line(e)
    with pytest.raises(RnnkitError) as e:
        Classifier().fit(LabelledText(["a", "b", "c", "d"], ["x", "x", "x", "x"]))
    assert "only the label 'x'" in one_line(e)
    for data, fragment in ((LabelledText([], []), "no examples"),
                           ((["a fine film", "dull"], ["pos", "neg"]), "LabelledText\\(texts, labels\\)"),
                           (LabelledText(["a fine film", "dull"], [1, 0]), "must be strings")):
        with pytest.raises(RnnkitError, match=fragment):  # each was an error from inside a library
            Classifier().fit(data)
        with pytest.raises(RnnkitError, match=fragment):
            trained.evaluate(data)
    with pytest.raises(RnnkitError) as e:
        trained.explain("  ")
    assert "nothing to explain" in one_line(e)
    with pytest.raises(RnnkitError, match="one text"):
        trained.explain(["a film"])
    for texts, fragment in ((None, "not None"), (["fine", None], "got NoneType")):
        with pytest.raises(RnnkitError, match=fragment):
            trained.predict(texts)
    assert len(trained.predict(pd.Series(["a fine film", "dull"]))) == 2  # a table's column works as a list


@pytest.mark.skipif(not (RT / "rt-polarity.pos").exists(), reason="shared rt-polarity data not present")
def test_rt_polarity_reads_as_documented():
    data = load_labelled([f"pos={RT / 'rt-polarity.pos'}", f"neg={RT / 'rt-polarity.neg'}"], encoding="cp1252")
    assert data.counts() == {"neg": 5331, "pos": 5331}


# ---------------------------------------------------------------------------- the NBSVM ensemble


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory) -> Classifier:
    torch.manual_seed(0)
    return Classifier(max_steps=40, nbsvm=2, out=tmp_path_factory.mktemp("ens") / "run", **FAST).fit(synthetic(300))


def test_nbsvm_member_decides_with_the_network(ensemble):
    """Probabilities are softmax(z / T) of both members' centred scores, each scaled as calibrated."""
    texts = synthetic(40, seed=3).texts
    e = ensemble.ensemble
    assert {"nbsvm.safetensors", "ensemble.safetensors"} <= {p.name for p in ensemble.run_dir.iterdir()}
    logits = batched_logits(ensemble.net, ensemble.encode(texts), torch.device("cpu")).log_softmax(1)
    nb = torch.from_numpy(e.nbsvm.decision_function(texts)).float()
    z = ((logits - logits.mean(1, keepdim=True)) * e.net_scale + (nb - nb.mean(1, keepdim=True)) * e.nbsvm_scale)
    proba = ensemble.predict_proba(texts)
    assert np.allclose(proba, (z / e.temperature).softmax(1).numpy(), atol=1e-6)
    assert not np.allclose(proba, logits.softmax(1).numpy(), atol=1e-3)  # NBSVM changed the decision
    assert ensemble.evaluate(synthetic(100, seed=4))["accuracy"] > 0.9


def test_nbsvm_ensemble_round_trips_and_recalibrates(ensemble):
    """load() reads the calibration; a run stopped before calibrating is calibrated from its folder alone."""
    texts = synthetic(30, seed=5).texts
    loaded = Classifier.load(ensemble.run_dir)
    assert loaded.nbsvm_ngram == 2 and np.allclose(loaded.predict_proba(texts), ensemble.predict_proba(texts))
    path = ensemble.run_dir / "ensemble.safetensors"
    saved = path.read_bytes()
    tensors, _ = load_tensors(path, "test")
    save_tensors(path, tensors)  # the validation scores without the calibration
    try:
        fresh = Classifier.load(ensemble.run_dir)
    finally:
        path.write_bytes(saved)
    for name in ("net_scale", "nbsvm_scale", "temperature", "val_accuracy"):
        assert getattr(fresh.ensemble, name) == pytest.approx(getattr(ensemble.ensemble, name))


def test_the_calibrated_temperature_is_the_least_log_loss(ensemble):
    torch.manual_seed(0)
    labels = torch.randint(0, 2, (200,))
    signal = torch.nn.functional.one_hot(labels, 2).float() * 3
    net, nb = signal + torch.randn(200, 2), signal + 2 * torch.randn(200, 2)
    e = NBSVMEnsemble.calibrate(ensemble.ensemble.nbsvm, net, nb, labels)
    centred = net.log_softmax(1) - net.log_softmax(1).mean(1, keepdim=True)
    assert e.net_scale == pytest.approx(1 / centred.std().item(), rel=1e-5)
    z = centred * e.net_scale + (nb - nb.mean(1, keepdim=True)) * e.nbsvm_scale

    def loss(t: float) -> float:
        return torch.nn.functional.cross_entropy(z / t, labels).item()

    assert loss(e.temperature) <= min(loss(e.temperature * 1.2), loss(e.temperature / 1.2))
    assert e.val_accuracy == pytest.approx((z.argmax(1) == labels).float().mean().item())


def test_cli_nbsvm_option(tmp_path):
    data = write_csv(tmp_path / "train.csv", synthetic(120))
    proc = rnnkit_cli("classify", "train", data, "--out", tmp_path / "run", "--max-steps", "10", "--nbsvm", "2",
                      *FAST_CLI)
    assert proc.returncode == 0, proc.stderr
    assert "with NBSVM (word 1-2-grams): val_acc" in proc.stdout
    more = rnnkit_cli("classify", "train", "--resume", tmp_path / "run", "--max-steps", "20")
    assert more.returncode == 0 and "with NBSVM" in more.stdout, more.stderr
    assert_one_line_error(rnnkit_cli("classify", "train", data, "--out", tmp_path / "bad", "--nbsvm", "-1"),
                          "--nbsvm", "non-negative")
