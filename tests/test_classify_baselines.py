"""rnnkit.tasks.classify_baselines: NBSVM and TF-IDF logistic regression."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import one_line
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.svm import LinearSVC

from rnnkit.data.labelled_text import LabelledText, Tokenizer, load_labelled
from rnnkit.errors import RnnkitError
from rnnkit.tasks.classify_baselines import NBSVM, TfidfLogReg, cross_validate, make_baseline

SENTIMENT = Path(__file__).resolve().parents[2] / "shared" / "data" / "sentiment"
RT_POS, RT_NEG = SENTIMENT / "rt-polarity.pos", SENTIMENT / "rt-polarity.neg"

FILLER = "the a film story plot actor scene it was is and of to in this that movie some".split()
CUES = {"pos": ["great", "moving", "superb"], "neg": ["dull", "awful", "boring"], "mid": ["okay", "average", "fair"]}




def synthetic(n: int, classes: list[str], seed: int) -> LabelledText:
    """Sentences of filler words with one cue word of their class; one in ten gets another class's cue instead."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        label = classes[i % len(classes)]
        cue_class = label if rng.random() > 0.1 else classes[(i + 1) % len(classes)]
        words = list(rng.choice(FILLER, size=8)) + [str(rng.choice(CUES[cue_class]))]
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(label)
    return LabelledText(texts, labels)


@pytest.mark.parametrize("make", [NBSVM, lambda: NBSVM(classifier="logistic"), TfidfLogReg])
@pytest.mark.parametrize("classes", [["neg", "pos"], ["mid", "neg", "pos"]])
def test_baselines_learn_a_synthetic_task(make, classes):
    train, test = synthetic(300, classes, seed=0), synthetic(150, classes, seed=1)
    model = make().fit(train.texts, train.labels)
    assert model.classes_ == classes
    assert model.score(test.texts, test.labels) > 0.8  # cues are right 90% of the time; chance is 1/2 or 1/3
    proba = model.predict_proba(test.texts[:7])
    assert proba.shape == (7, len(classes)) and np.allclose(proba.sum(axis=1), 1) and (proba >= 0).all()
    assert model.predict(test.texts[:7]) == [classes[i] for i in proba.argmax(axis=1)]
    cue = {c: f"the film was {CUES[c][0]}" for c in classes}
    assert model.predict(list(cue.values())) == classes


def test_nbsvm_follows_the_paper():
    """Scores equal an independent computation of Wang and Manning's r, SVM and interpolation."""
    data = synthetic(120, ["neg", "pos"], seed=2)
    y = np.array([label == "pos" for label in data.labels], dtype=np.int64)
    vec = CountVectorizer(tokenizer=Tokenizer(), lowercase=False, token_pattern=None, ngram_range=(1, 2), binary=True)
    x = vec.fit_transform(data.texts).astype(np.float64)
    p, q = 1 + np.asarray(x[y == 1].sum(0)).ravel(), 1 + np.asarray(x[y == 0].sum(0)).ravel()
    r = np.log((p / np.abs(p).sum()) / (q / np.abs(q).sum()))
    svm = LinearSVC(C=1.0, dual=True, max_iter=10_000, random_state=0).fit(x @ sp.diags(r), y)
    w, b = svm.coef_.ravel(), svm.intercept_[0]
    probe = synthetic(20, ["neg", "pos"], seed=3).texts
    xp = vec.transform(probe).astype(np.float64)
    for beta in (1.0, 0.25):
        w_beta = (1 - beta) * np.abs(w).sum() / len(w) + beta * w
        expected = xp @ (r * w_beta) + b
        scores = NBSVM(beta=beta).fit(data.texts, data.labels).decision_function(probe)
        assert np.allclose(scores[:, 1] - scores[:, 0], expected, atol=1e-6)
    proba = NBSVM().fit(data.texts, data.labels).predict_proba(probe)[:, 1]
    s = NBSVM().fit(data.texts, data.labels).decision_function(probe)
    assert np.allclose(proba, 1 / (1 + np.exp(-(s[:, 1] - s[:, 0]))))  # two classes: a sigmoid of the score


@pytest.mark.parametrize("make", [NBSVM, TfidfLogReg])
def test_features_come_from_training_texts_only(make):
    data = synthetic(100, ["neg", "pos"], seed=4)
    model = make().fit(data.texts, data.labels)
    unseen, empty = model.predict_proba(["zorblax quuxified wibble"]), model.predict_proba([""])
    assert np.allclose(unseen, empty)  # words never seen in training carry no weight


def test_cross_validate_seeded():
    data = synthetic(200, ["neg", "pos"], seed=5)
    a = cross_validate("nbsvm", data, k=4, seed=0)
    assert a.shape == (4,) and (a > 0.65).all() and a.mean() > 0.75
    assert np.array_equal(a, cross_validate(lambda: NBSVM(), data, k=4, seed=0))


def test_baseline_errors():
    with pytest.raises(RnnkitError) as e:
        NBSVM().fit(["a", "b"], ["pos", "pos"])
    assert one_line(e) == "cannot fit nbsvm on only the label 'pos'; it needs at least 2 classes"
    with pytest.raises(RnnkitError) as e:
        TfidfLogReg().fit(["a", "b"], ["pos"])
    assert one_line(e) == "2 texts but 1 labels"
    with pytest.raises(RnnkitError) as e:
        TfidfLogReg().predict(["a"])
    assert one_line(e) == "tfidf-lr is not fitted yet; call fit first"
    with pytest.raises(RnnkitError) as e:
        make_baseline("bert")
    assert one_line(e) == "unknown baseline 'bert'; choose one of nbsvm, tfidf-lr"
    with pytest.raises(RnnkitError) as e:
        NBSVM(classifier="tree")
    assert one_line(e) == "NBSVM classifier must be 'svm' or 'logistic', not 'tree'"
    with pytest.raises(RnnkitError) as e:
        NBSVM(beta=1.5)
    assert one_line(e) == "NBSVM beta must be between 0 and 1, not 1.5"
    assert make_baseline("nbsvm", beta=0.5).beta == 0.5


def test_nbsvm_beats_chance_on_rt_polarity():
    if not (RT_POS.is_file() and RT_NEG.is_file()):
        pytest.skip(f"{SENTIMENT} is absent")
    data = load_labelled([f"pos={RT_POS}", f"neg={RT_NEG}"], encoding="cp1252")
    # every 5th sentence, 2132 in all: 1600 to train on, the rest to test (both classes interleaved)
    idx = np.arange(0, len(data), 5)
    rng = np.random.default_rng(0)
    idx = rng.permutation(idx)
    train, test = data.subset(idx[:1600]), data.subset(idx[1600:])
    acc = NBSVM().fit(train.texts, train.labels).score(test.texts, test.labels)
    assert acc > 0.66, acc  # 0.73 measured; chance is 0.5


def test_benchmark_script_prints_a_table(tmp_path, monkeypatch, capsys):
    import runpy

    data = synthetic(40, ["neg", "pos"], seed=6)
    csv = tmp_path / "d.csv"
    csv.write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in zip(data.texts, data.labels, strict=True)))
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "classify_baselines.py"
    monkeypatch.syspath_prepend(str(script.parent))  # as when run as a script: its folder first on the path
    monkeypatch.setattr("sys.argv", [str(script), "--data", str(csv), "--folds", "2", "--models", "nbsvm",
                                     "tfidf-lr:C=10"])
    runpy.run_path(str(script), run_name="__main__")
    out = capsys.readouterr().out
    assert "| nbsvm | defaults |" in out and "| tfidf-lr | C=10 |" in out
    assert "2-fold stratified cross-validation (seed 0)" in out and "40 examples (neg 20, pos 20)" in out
    assert "machine: " in out and "command: python " in out


@pytest.mark.parametrize("classes", [["neg", "pos"], ["mid", "neg", "pos"]])
def test_nbsvm_saved_and_loaded_scores_the_same(classes, tmp_path):
    train, test = synthetic(200, classes, seed=0), synthetic(50, classes, seed=1)
    model = NBSVM(ngram=2, beta=0.5).fit(train.texts, train.labels)
    model.save(tmp_path / "nbsvm.safetensors")
    again = NBSVM.load(tmp_path / "nbsvm.safetensors")
    assert again.classes_ == classes and (again.ngram, again.beta) == (2, 0.5)
    assert np.allclose(again.decision_function(test.texts), model.decision_function(test.texts), atol=1e-12)
    (tmp_path / "bad.safetensors").write_bytes(b"not a model")
    with pytest.raises(RnnkitError) as e:
        NBSVM.load(tmp_path / "bad.safetensors")
    assert one_line(e).startswith("cannot read")
