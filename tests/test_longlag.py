"""Long-range memory tasks: the data generators and their baselines, training through the shared Trainer, CLI."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_one_line_error, rnnkit_cli

from rnnkit.errors import RnnkitError
from rnnkit.tasks.longlag import (
    BLANK,
    DELIMITER,
    LongLagModel,
    LongLagTask,
    adding_batch,
    baseline,
    copy_batch,
    run,
)


def test_adding_data_and_its_baseline():
    g = torch.Generator().manual_seed(0)
    x, y = adding_batch(20_000, 50, g)
    assert x.shape == (20_000, 50, 2) and y.shape == (20_000,)
    markers = x[..., 1]
    assert torch.all(markers.sum(1) == 2)
    assert torch.all(markers[:, :25].sum(1) == 1) and torch.all(markers[:, 25:].sum(1) == 1)
    torch.testing.assert_close(y, (x[..., 0] * markers).sum(1))
    assert baseline("adding", 50) == pytest.approx(1 / 6)
    # answering 1 whatever the input: MSE = Var(u1 + u2) = 2/12
    assert F.mse_loss(torch.ones_like(y), y).item() == pytest.approx(1 / 6, abs=0.005)
    # and 1 is the best constant: the mean target is 1
    assert y.mean().item() == pytest.approx(1.0, abs=0.01)


def test_copy_data_and_its_baseline():
    T = 30
    x, y = copy_batch(500, T, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (500, T + 20)
    assert torch.all(x[:, :10] < 8) and torch.all(x[:, 10:T + 9] == BLANK) and torch.all(x[:, T + 9] == DELIMITER)
    assert torch.all(x[:, T + 10:] == BLANK) and torch.all(y[:, :T + 10] == BLANK)
    assert torch.equal(y[:, -10:], x[:, :10])
    # the memoryless strategy: certain blank for T + 10 steps, then uniform over the 8 symbols
    logits = torch.full((500, T + 20, 10), -1e9)
    logits[:, :T + 10, BLANK] = 0
    logits[:, T + 10:, :8] = 0
    xent = F.cross_entropy(logits.flatten(0, 1), y.flatten()).item()
    assert xent == pytest.approx(baseline("copy", T), rel=1e-6)
    assert baseline("copy", T) == pytest.approx(10 * math.log(8) / (T + 20))


def test_batches_are_seeded_by_step():
    model = LongLagModel("adding", "gru", 8)
    a = LongLagTask(model, "adding", 20, 4, seed=3, eval_size=10)
    b = LongLagTask(model, "adding", 20, 4, seed=3, eval_size=10)
    assert a.training_loss(0, 5)[0].item() == b.training_loss(0, 5)[0].item()
    assert a.training_loss(0, 5)[0].item() != a.training_loss(0, 6)[0].item()
    assert torch.equal(a.val[0], b.val[0])


def test_models_shapes_and_init():
    x, _ = copy_batch(3, 5, torch.Generator().manual_seed(0))
    assert LongLagModel("copy", "lstm", 8)(x).shape == (3, 25, 10)
    assert LongLagModel("adding", "rnn_relu", 8, init="identity")(torch.rand(3, 7, 2)).shape == (3,)
    m = LongLagModel("adding", "lstm", 8, init="chrono", t_max=200)
    b_f = m.rnn.bias_ih_l0[8:16]
    assert torch.all(b_f >= 0) and torch.all(b_f <= math.log(199) + 1e-6)
    with pytest.raises(RnnkitError):
        LongLagModel("adding", "gru", 8, init="forget1")


def test_an_empty_evaluation_set_is_refused_before_training(tmp_path):
    with pytest.raises(RnnkitError, match="--eval-size must be positive"):
        run("adding", 10, "gru", out=tmp_path / "run", hidden=8, max_steps=3, eval_size=0, progress=False)
    assert not (tmp_path / "run").exists()


def test_training_learns_a_short_adding_problem(tmp_path):
    r = run("adding", 10, "gru", out=tmp_path / "run", hidden=16, max_steps=400, lr=1e-2, eval_size=200,
            progress=False)
    assert r.steps == 400 and r.baseline == pytest.approx(1 / 6)
    assert r.test_metric < 0.3 * r.baseline, r.line()  # well below answering 1
    assert re.fullmatch(r"test_mse (\d\.\d{4}|\d\.\de-\d\d) baseline 0\.167", r.line())
    for name in ("metrics.jsonl", "best.pt", "last.pt", "loss.png", "result.json", "config.json"):
        assert (tmp_path / "run" / name).exists(), name
    assert json.loads((tmp_path / "run" / "result.json").read_text())["test_metric"] == r.test_metric
    with pytest.raises(RnnkitError, match="already holds"):
        run("adding", 10, "gru", out=tmp_path / "run", max_steps=1)


def test_cli_single_run_and_sweep(tmp_path):
    proc = rnnkit_cli("longlag", "--task", "copy", "--length", "5", "--cell", "gru", "--hidden", "8",
                      "--max-steps", "20", "--eval-size", "50", "--out", tmp_path / "one")
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"test_xent \d+\.\d{4} baseline 0\.832", last), last
    proc = rnnkit_cli("longlag", "--sweep", "--length", "4", "8", "--cell", "rnn", "lstm", "--hidden", "8",
                      "--max-steps", "10", "--eval-size", "50", "--out", tmp_path / "sweep", timeout=900)
    assert proc.returncode == 0, proc.stderr
    table = (tmp_path / "sweep" / "sweep.md").read_text().splitlines()
    assert len(table) == 2 + 4 and table[2].startswith("| rnn | default | 4 |")
    assert (tmp_path / "sweep" / "sweep.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_bad_input(tmp_path):
    assert_one_line_error(rnnkit_cli("longlag", "--length", "1", "--max-steps", "1", "--out", tmp_path / "a"),
                          "--length")
    assert_one_line_error(rnnkit_cli("longlag", "--cell", "rnn", "lstm", "--max-steps", "1"), "--sweep")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    assert_one_line_error(rnnkit_cli("longlag", "--sweep", "--max-steps", "1", "--out", tmp_path / "full"),
                          "not empty")
