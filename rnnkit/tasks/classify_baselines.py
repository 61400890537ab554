"""Classic text-classification baselines to hold the recurrent models against.

- :class:`NBSVM`: Wang and Manning (2012), "Baselines and Bigrams: Simple, Good Sentiment and
  Topic Classification". Binarised word n-gram features ``x``, the log-count ratio ``r`` of
  each feature between the classes, a linear SVM (or logistic regression) trained on
  ``x * r``, and its weights interpolated towards their mean magnitude:
  ``w' = (1 - beta) * mean(|w|) + beta * w``. With more than two classes, one such model per
  class against the rest.
- :class:`TfidfLogReg`: logistic regression on TF-IDF weighted word n-grams.

Both share one shape: ``fit(texts, labels)``, ``predict(texts)`` (labels), ``predict_proba``
(rows summing to one, columns in ``classes_`` order) and ``score``; :func:`cross_validate`
runs either over stratified folds. Features are built from the training texts of each fit
only. The models need scikit-learn.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data.labelled_text import LabelledText, Tokenizer, folds, label_ids
from ..errors import RnnkitError
from ..io import load_tensors, save_tensors


def _sklearn() -> Any:
    try:
        import sklearn
    except ImportError:
        raise RnnkitError("the classic baselines need scikit-learn: pip install scikit-learn") from None
    return sklearn


def _softmax(scores: np.ndarray) -> np.ndarray:
    z = np.exp(scores - scores.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


class Baseline:
    """The shape every baseline has: fit on texts and string labels, then predict labels or probabilities."""

    name = "baseline"
    classes_: list[str]

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> Baseline:
        """Learn from ``texts`` and their ``labels``; ``classes_`` becomes the sorted distinct labels."""
        if len(texts) != len(labels):
            raise RnnkitError(f"{len(texts)} texts but {len(labels)} labels")
        classes = sorted(set(labels))
        if len(classes) < 2:
            only = f"only the label {classes[0]!r}" if classes else "no examples"
            raise RnnkitError(f"cannot fit {self.name} on {only}; it needs at least 2 classes")
        self.classes_ = classes
        self._fit(list(texts), label_ids(labels, classes))
        return self

    def _fit(self, texts: list[str], y: np.ndarray) -> None:
        raise NotImplementedError

    def decision_function(self, texts: Sequence[str]) -> np.ndarray:
        """Scores ``(len(texts), len(classes_))``: the highest wins; their softmax is :meth:`predict_proba`."""
        if not hasattr(self, "classes_"):
            raise RnnkitError(f"{self.name} is not fitted yet; call fit first")
        return self._scores(list(texts))

    def _scores(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities, one row a text, columns in ``classes_`` order."""
        return _softmax(self.decision_function(texts))

    def predict(self, texts: Sequence[str]) -> list[str]:
        """The most likely label of each text."""
        return [self.classes_[i] for i in self.decision_function(texts).argmax(axis=1)]

    def score(self, texts: Sequence[str], labels: Sequence[str]) -> float:
        """Accuracy on ``texts``; a label the model never saw counts as wrong (it cannot predict it)."""
        if len(texts) == 0:
            raise RnnkitError("no examples to score")
        return float(np.mean([p == t for p, t in zip(self.predict(texts), labels, strict=True)]))


class NBSVM(Baseline):
    """Naive-Bayes-weighted linear SVM on binarised word n-grams (Wang and Manning, 2012).

    ``beta`` interpolates the SVM weights with their mean magnitude (0.25 as in the paper; 1
    keeps the plain SVM), ``alpha`` smooths the counts behind the log-count ratio, ``C`` is the
    SVM's inverse regularisation strength (1, as in the paper), ``ngram`` the longest n-gram.
    ``classifier="logistic"`` trains a logistic regression in place of the SVM. Probabilities
    are the softmax of the scores (a sigmoid for two classes): they rank well but are not calibrated.
    """

    name = "nbsvm"

    def __init__(self, ngram: int = 2, alpha: float = 1.0, beta: float = 0.25, C: float = 1.0,
                 classifier: str = "svm", lower: bool = True) -> None:
        if classifier not in ("svm", "logistic"):
            raise RnnkitError(f"NBSVM classifier must be 'svm' or 'logistic', not {classifier!r}")
        if not 0 <= beta <= 1:
            raise RnnkitError(f"NBSVM beta must be between 0 and 1, not {beta}")
        if alpha <= 0 or C <= 0 or ngram < 1:
            raise RnnkitError("NBSVM needs alpha > 0, C > 0 and ngram >= 1")
        self.ngram, self.alpha, self.beta, self.C = ngram, alpha, beta, C
        self.classifier, self.lower = classifier, lower

    def _fit(self, texts: list[str], y: np.ndarray) -> None:
        _sklearn()
        import scipy.sparse as sp

        self._vectorizer = self._make_vectorizer()
        x = self._vectorizer.fit_transform(texts).tocsr()
        # two classes need one model (class 1 against class 0); more need one per class
        targets = [1] if len(self.classes_) == 2 else range(len(self.classes_))
        coefs, biases = [], []
        for c in targets:
            pos = y == c
            p = self.alpha + np.asarray(x[pos].sum(axis=0)).ravel()
            q = self.alpha + np.asarray(x[~pos].sum(axis=0)).ravel()
            r = np.log(p / p.sum()) - np.log(q / q.sum())
            w, b = self._linear(x @ sp.diags(r), pos.astype(np.int64))
            w = (1 - self.beta) * np.abs(w).mean() + self.beta * w
            coefs.append(r * w)  # the score of binarised features x is x @ (r * w') + b
            biases.append(b)
        self._coef, self._bias = np.stack(coefs), np.asarray(biases, dtype=np.float64)

    def _linear(self, x: Any, y: np.ndarray) -> tuple[np.ndarray, float]:
        if self.classifier == "svm":
            from sklearn.svm import LinearSVC

            # liblinear's L2-regularised squared-hinge SVM, the solver the paper used; its dual
            # coordinate descent visits examples in a random order, so a fixed seed makes fits repeatable
            model = LinearSVC(C=self.C, loss="squared_hinge", dual=True, max_iter=10_000, random_state=0)
        else:
            from sklearn.linear_model import LogisticRegression

            model = LogisticRegression(C=self.C, solver="liblinear", max_iter=1_000, random_state=0)
        model.fit(x, y)
        return model.coef_.ravel().copy(), float(model.intercept_[0])

    def save(self, path: str | Path) -> None:
        """The fitted model as one safetensors file: each target's weights ``r * w'`` and bias, the n-grams and
        the options in its metadata (reading it back runs no code, unlike a pickle)."""
        if not hasattr(self, "classes_"):
            raise RnnkitError(f"{self.name} is not fitted yet; call fit first")
        options = {"ngram": self.ngram, "alpha": self.alpha, "beta": self.beta, "C": self.C,
                   "classifier": self.classifier, "lower": self.lower}
        save_tensors(path, {"weights": self._coef, "bias": self._bias},
                     {"options": json.dumps(options), "classes": json.dumps(self.classes_),
                      "ngrams": json.dumps(self._vectorizer.get_feature_names_out().tolist())})

    @classmethod
    def load(cls, path: str | Path) -> NBSVM:
        """A model :meth:`save` wrote."""
        tensors, meta = load_tensors(path, "a saved NBSVM")
        try:
            model = cls(**json.loads(meta["options"]))
            model.classes_ = list(json.loads(meta["classes"]))
            ngrams = json.loads(meta["ngrams"])
            model._coef, model._bias = tensors["weights"].numpy(), tensors["bias"].numpy()
        except (KeyError, TypeError, ValueError):
            raise RnnkitError(f"{path} is not an NBSVM that rnnkit saved") from None
        model._vectorizer = model._make_vectorizer(vocabulary=ngrams)
        return model

    def _make_vectorizer(self, vocabulary: list[str] | None = None) -> Any:
        from sklearn.feature_extraction.text import CountVectorizer

        return CountVectorizer(tokenizer=Tokenizer("word", self.lower), lowercase=False, token_pattern=None,
                               ngram_range=(1, self.ngram), binary=True, dtype=np.float64, vocabulary=vocabulary)

    def _scores(self, texts: list[str]) -> np.ndarray:
        x = self._vectorizer.transform(texts).tocsr()
        s = np.asarray(x @ self._coef.T) + self._bias
        if len(self.classes_) == 2:
            # columns -s/2 and s/2: argmax follows the sign of s, and the softmax of the row is sigmoid(s)
            s = np.concatenate([-s / 2, s / 2], axis=1)
        return s


class TfidfLogReg(Baseline):
    """Logistic regression on TF-IDF weighted word n-grams (sub-linear term frequency, L2-normalised rows).

    ``C`` is the inverse regularisation strength, ``ngram`` the longest n-gram, ``min_df`` the
    fewest training texts a feature must occur in.
    """

    name = "tfidf-lr"

    def __init__(self, ngram: int = 2, C: float = 1.0, min_df: int = 1, lower: bool = True) -> None:
        if C <= 0 or ngram < 1 or min_df < 1:
            raise RnnkitError("TF-IDF logistic regression needs C > 0, ngram >= 1 and min_df >= 1")
        self.ngram, self.C, self.min_df, self.lower = ngram, C, min_df, lower

    def _fit(self, texts: list[str], y: np.ndarray) -> None:
        _sklearn()
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        self._vectorizer = TfidfVectorizer(tokenizer=Tokenizer("word", self.lower), lowercase=False,
                                           token_pattern=None, ngram_range=(1, self.ngram), min_df=self.min_df,
                                           sublinear_tf=True)
        self._model = LogisticRegression(C=self.C, max_iter=2_000)
        self._model.fit(self._vectorizer.fit_transform(texts), y)

    def _scores(self, texts: list[str]) -> np.ndarray:
        # log-probabilities: their softmax is the model's own probabilities, for two classes too
        return self._model.predict_log_proba(self._vectorizer.transform(texts))


BASELINES: dict[str, type[Baseline]] = {"nbsvm": NBSVM, "tfidf-lr": TfidfLogReg}


def make_baseline(name: str, **options: Any) -> Baseline:
    """A fresh, unfitted baseline by name (``nbsvm`` or ``tfidf-lr``), with its options."""
    try:
        cls = BASELINES[name]
    except KeyError:
        raise RnnkitError(f"unknown baseline {name!r}; choose one of {', '.join(BASELINES)}") from None
    return cls(**options)


def cross_validate(model: str | Callable[[], Baseline], data: LabelledText, k: int = 10,
                   seed: int = 0) -> np.ndarray:
    """Accuracy on each of ``k`` stratified folds (:func:`~rnnkit.data.labelled_text.folds`).

    ``model`` is a baseline name or a function making a fresh baseline; a new one is fitted
    on every fold's training part, so nothing learnt from a test fold reaches its model.
    """
    make = (lambda: make_baseline(model)) if isinstance(model, str) else model
    scores = []
    for train, test in folds(data.labels, k, seed):
        fitted = make().fit([data.texts[i] for i in train], [data.labels[i] for i in train])
        scores.append(fitted.score([data.texts[i] for i in test], [data.labels[i] for i in test]))
    return np.array(scores)
