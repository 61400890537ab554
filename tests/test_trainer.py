"""The shared training loop: schedule, clipping records, the non-finite guard, budgets."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from rnnkit.data.text import Vocab
from rnnkit.errors import RnnkitError
from rnnkit.tasks.charlm import CharLM, CharLMTask, ModelConfig
from rnnkit.training.trainer import TrainConfig, Trainer


def make_trainer(tmp_path, cell="lstm", **config):
    torch.manual_seed(0)
    text = ("the quick brown fox jumps over the lazy dog. " * 300)
    vocab = Vocab.from_text(text)
    tokens = vocab.encode(text)
    model = CharLM(ModelConfig(cell=cell, hidden=16, layers=1, vocab_size=len(vocab)), vocab)
    task = CharLMTask(model, tokens[:10000], tokens[10000:], 4, 16, torch.device("cpu"))
    return Trainer(task, TrainConfig(**{"precision": "fp32", **config}), tmp_path / "run", progress=False)


def records(trainer):
    return [json.loads(line) for line in (trainer.run_dir / "metrics.jsonl").read_text().splitlines()]


def test_learning_rate_warms_up_then_decays_to_the_floor(tmp_path):
    t = make_trainer(tmp_path, max_steps=100, lr=1e-2, warmup_steps=10, min_lr_ratio=0.1)
    t.step = 0
    assert t.lr_at(0.0) == pytest.approx(1e-3)        # first warmup step: lr / 10
    t.step = 50
    assert t.lr_at(0.5) == pytest.approx(1e-2 * (0.1 + 0.9 * 0.5))
    assert t.lr_at(1.0) == pytest.approx(1e-3)        # the floor at the end of the budget


def test_every_step_records_its_gradient_norm_and_clipping(tmp_path):
    t = make_trainer(tmp_path, max_steps=12, grad_clip=1e-6, log_every=4)
    result = t.run()
    steps = [r for r in records(t) if "grad_norm" in r and "loss" in r]
    assert [r["step"] for r in steps] == list(range(1, 13))
    assert all(r["grad_norm"] > 1e-6 and r["clipped"] == 1 for r in steps)
    assert result.clipped_share == 1.0
    loose = make_trainer(tmp_path / "b", max_steps=5, grad_clip=1e9).run()
    assert loose.clipped_share == 0.0


@pytest.mark.parametrize("clip", [1e-3, 1e9])
def test_clipping_scales_the_gradient_to_the_limit_and_only_then(tmp_path, clip):
    t = make_trainer(tmp_path, max_steps=1, grad_clip=clip)
    t.run()
    norm = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in t.params))
    recorded = [r for r in records(t) if "grad_norm" in r][0]["grad_norm"]
    assert norm == pytest.approx(min(clip, recorded), rel=1e-4)


def test_non_finite_steps_are_skipped_and_stop_the_run(tmp_path):
    t = make_trainer(tmp_path, cell="rnn_relu", max_steps=50, max_bad_steps=3)
    t.save("last")  # the last good checkpoint
    good = {k: v.clone() for k, v in t.model.state_dict().items()}
    with torch.no_grad():
        t.model.rnn.weight_hh_l0.mul_(1e30)  # activations overflow: loss and gradients become inf/nan
        t.model.rnn.weight_ih_l0.mul_(1e30)
    broken = {k: v.clone() for k, v in t.model.state_dict().items()}
    result = t.run()
    assert result.stop_reason == "nonfinite" and result.skipped_steps == 3
    for k, v in t.model.state_dict().items():  # no update was applied
        assert torch.equal(v, broken[k])
    saved = torch.load(t.run_dir / "last.pt", weights_only=True)["model"]
    for k, v in saved.items():  # the good checkpoint was not overwritten
        assert torch.equal(v, good[k])


def test_value_clipping_bounds_every_gradient_element(tmp_path):
    t = make_trainer(tmp_path, max_steps=1, grad_clip_value=1e-4, grad_clip=None)
    captured = {}
    step = t.optimizer.step

    def capture(*args, **kwargs):  # look at the gradients the optimizer is given
        captured["max"] = max(p.grad.abs().max().item() for p in t.model.parameters())
        return step(*args, **kwargs)

    t.optimizer.step = capture
    t.run()
    assert 0 < captured["max"] <= 1e-4


def test_a_budget_is_required_and_values_checked(tmp_path):
    with pytest.raises(RnnkitError, match="budget"):
        make_trainer(tmp_path)
    with pytest.raises(RnnkitError, match="--lr"):
        make_trainer(tmp_path, max_steps=1, lr=-1)
    with pytest.raises(RnnkitError, match="--precision"):
        make_trainer(tmp_path, max_steps=1, precision="fp8")


def test_epoch_budget_counts_batches(tmp_path):
    t = make_trainer(tmp_path, epochs=2)
    result = t.run()
    assert result.steps == 2 * t.task.batches_per_epoch()
    assert math.isfinite(result.last_eval["val_loss"])
    assert np.isfinite(result.items_per_second)


def test_ema_is_the_average_of_the_weights_and_what_is_evaluated_and_shipped(tmp_path):
    decay, steps = 0.9, 30
    t = make_trainer(tmp_path, max_steps=steps, ema=decay, eval_every=steps, lr=1e-2)
    params = list(t.model.parameters())
    expected = [p.detach().clone() for p in params]
    seen = [0]
    step = t.optimizer.step

    def track(*args, **kwargs):  # the same average, computed by hand after every update
        out = step(*args, **kwargs)
        seen[0] += 1
        d = min(decay, (1 + seen[0]) / (10 + seen[0]))
        for e, p in zip(expected, params, strict=True):
            e.mul_(d).add_(p.detach(), alpha=1 - d)
        return out

    t.optimizer.step = track
    result = t.run()
    names = [n for n, _ in t.model.named_parameters()]
    saved = torch.load(t.run_dir / "last.pt", weights_only=True)
    for n, e in zip(names, expected, strict=True):
        torch.testing.assert_close(saved["model"][n], e)                 # shipped: the average
        torch.testing.assert_close(dict(t.model.named_parameters())[n].detach(), e)  # and left in the model
    assert not torch.equal(saved["model"][names[0]], saved["training_model"][names[0]])
    with t.averaged_weights():  # evaluation sees the average
        assert t.task.evaluate()["val_loss"] == pytest.approx(result.last_eval["val_loss"])
    t.config.max_steps = steps + 1  # a second run() goes on from the raw weights, not the average
    t.optimizer.step = step
    t.run()
    last = torch.load(t.run_dir / "last.pt", weights_only=True)["training_model"]

    def distance(a, b):
        return sum(float((a[n] - b[n]).norm()) for n in names)

    assert distance(last, saved["training_model"]) < distance(last, saved["model"]) / 2
    with pytest.raises(RnnkitError, match="--ema"):
        make_trainer(tmp_path, max_steps=1, ema=1.0)
    off = make_trainer(tmp_path / "off", max_steps=3, ema=0.0)  # 0 switches the average off
    off.run()
    assert "training_model" not in torch.load(off.run_dir / "last.pt", weights_only=True)


def test_ema_run_resumes_exactly(tmp_path):
    whole = make_trainer(tmp_path / "a", max_steps=40, ema=0.95, eval_every=20)
    whole.run()
    part = make_trainer(tmp_path / "b", max_steps=40, ema=0.95, eval_every=20)
    step = part.optimizer.step

    def stop_at_25(*args, **kwargs):  # as Ctrl-C would, between evaluations
        out = step(*args, **kwargs)
        part._stop_requested = "interrupted" if part.step >= 25 else None
        return out

    part.optimizer.step = stop_at_25
    assert part.run().stop_reason == "interrupted"
    rest = make_trainer(tmp_path / "b", max_steps=40, ema=0.95, eval_every=20)
    rest.resume(tmp_path / "b" / "run" / "last.pt")
    rest.run()
    a = torch.load(tmp_path / "a" / "run" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "run" / "last.pt", weights_only=True)
    for key in ("model", "training_model"):
        for k in a[key]:
            assert torch.equal(a[key][k], b[key][k]), (key, k)


def test_allocator_tuning_is_on_for_cpu_training_and_can_be_turned_off():
    code = "from rnnkit.training import allocator; print(allocator.keep_freed_memory())"
    on = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    off = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "RNNKIT_MALLOC_TUNING": "0"}).stdout.strip()
    assert off == "False"
    assert on == ("True" if sys.platform.startswith("linux") else "False")


def test_a_non_finite_validation_loss_stops_the_run_whatever_its_metric(tmp_path):
    """A task picking checkpoints by accuracy (classify, translate, speech) still stops when its validation
    loss is not finite: accuracy stays finite on diverged weights, which are then never saved."""
    t = make_trainer(tmp_path, max_steps=6, eval_every=2)
    t.save("last")
    good = (t.run_dir / "last.pt").read_bytes()
    t.task.metric = "val_acc"
    t.task.better = lambda new, best: best is None or new > best
    t.task.evaluate = lambda: {"val_loss": float("inf"), "val_acc": 0.5}
    result = t.run()
    assert result.stop_reason == "nonfinite" and result.steps == 2
    assert not (t.run_dir / "best.pt").exists() and (t.run_dir / "last.pt").read_bytes() == good
    t.task.evaluate = lambda: {"val_loss": 1.0, "val_acc": 0.5}
    assert t.run().stop_reason == "budget"  # a later run of the same trainer starts without the mark
