"""One fit() for every task: run folders, resume through the task registry, parameter groups, accumulation,
early stopping, the device and precision policies, and the checks on every training option."""

from __future__ import annotations

import json
import math
import re
import signal

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY, assert_one_line_error, rnnkit_cli, start_training
from torch import nn

from rnnkit import hardware
from rnnkit.errors import RnnkitError, TrainingStopped
from rnnkit.nn import stepping
from rnnkit.training.config import TrainConfig, resolve_device, resolve_precision
from rnnkit.training.fit import fit, resume
from rnnkit.training.task import TASKS, Task, register_task


@register_task
class Regression(Task):
    """y = x . w over a fixed data set: small, deterministic, resumable."""

    name, command, unit = "test-regression", "rnnkit-test regression", "rows"

    def __init__(self, seed: int = 0, batch: int = 8) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(64, 4, generator=g)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5, 3.0])
        self.model = nn.Sequential(nn.Embedding(3, 2), nn.Flatten())  # an embedding, for the decay groups
        self.linear = nn.Linear(4, 1)
        self.model.append(self.linear)
        with torch.no_grad():  # from the task's own seed, not the global generator: a test alone or after others
            for p in self.model.parameters():
                p.copy_(torch.randn(p.shape, generator=g))
        self.seed, self.batch = seed, batch

    def batches_per_epoch(self) -> int:
        return len(self.x) // self.batch

    def training_loss(self, epoch, index):
        rows = slice(index * self.batch, (index + 1) * self.batch)
        return F.mse_loss(self.linear(self.x[rows].to(self.device)).squeeze(-1), self.y[rows].to(self.device)), 8

    def evaluate(self):
        return {"val_loss": F.mse_loss(self.linear(self.x.to(self.device)).squeeze(-1), self.y.to(self.device)).item()}

    def config(self):
        return {"seed": self.seed, "batch": self.batch}

    @classmethod
    def from_config(cls, config, run_dir):
        return cls(**config)


def cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"precision": "fp32", "lr": 0.05, "warmup_steps": 1, **kw})


def test_run_folder_is_refused_when_it_holds_a_run_or_other_files(tmp_path):
    fit(Regression(), cfg(max_steps=3), tmp_path / "a", progress=False)
    with pytest.raises(RnnkitError, match="already holds a run; continue it with rnnkit-test regression --resume"):
        fit(Regression(), cfg(max_steps=3), tmp_path / "a", progress=False)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.json").write_text('{"mine": 1}')
    (mine / "metrics.jsonl").write_text("notes\n")
    with pytest.raises(RnnkitError, match="not empty and is not an rnnkit run folder"):
        fit(Regression(), cfg(max_steps=3), mine, progress=False)
    assert (mine / "config.json").read_text() == '{"mine": 1}' and (mine / "metrics.jsonl").read_text() == "notes\n"
    (tmp_path / "file").write_text("x")
    for bad in (tmp_path / "file", tmp_path / "file" / "sub"):
        with pytest.raises(RnnkitError, match="is a file, not a folder"):
            fit(Regression(), cfg(max_steps=3), bad, progress=False)


class StopsAtEight(Regression):
    """Sends itself Ctrl-C at the eighth batch of its first session."""

    name = "test-stops"
    calls = 0

    def training_loss(self, epoch, index):
        StopsAtEight.calls += 1
        if StopsAtEight.calls == 8:
            signal.raise_signal(signal.SIGINT)
        return super().training_loss(epoch, index)


register_task(StopsAtEight)


def test_resume_finds_the_task_by_name_and_continues_exactly(tmp_path):
    whole = Regression()
    fit(whole, cfg(max_steps=20, eval_every=5), tmp_path / "whole", progress=False)
    part = StopsAtEight()
    with pytest.raises(TrainingStopped, match="interrupted at step 8") as stopped:
        fit(part, cfg(max_steps=20, eval_every=5), tmp_path / "part", progress=False)
    assert stopped.value.exit_code == 130
    config = json.loads((tmp_path / "part" / "config.json").read_text())
    assert config["task"] == "test-stops" and config["seed"] == 0 and config["train"]["max_steps"] == 20
    task, result = resume(tmp_path / "part", progress=False)
    assert type(task) is StopsAtEight and result.steps == 20
    a = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "part" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(RnnkitError, match="only the budget and device may change"):
        resume(tmp_path / "part", lr=1.0, max_steps=30)
    with pytest.raises(RnnkitError, match="already finished its budget"):
        resume(tmp_path / "part", progress=False)


def test_weight_decay_spares_biases_norms_and_embeddings():
    task = Regression()
    decay, rest = task.param_groups(0.1)
    assert decay["weight_decay"] == 0.1 and rest["weight_decay"] == 0.0
    assert [p.shape for p in decay["params"]] == [task.linear.weight.shape]
    assert {p.shape for p in rest["params"]} == {task.model[0].weight.shape, task.linear.bias.shape}
    task.decay_everything = True
    assert len(task.param_groups(0.1)) == 1


def test_gradient_accumulation_equals_one_larger_batch(tmp_path):
    small, large = Regression(batch=8), Regression(batch=16)
    large.linear.load_state_dict(small.linear.state_dict())
    fit(small, cfg(max_steps=4, grad_accum=2, grad_clip=None), tmp_path / "a", progress=False)
    fit(large, cfg(max_steps=4, grad_clip=None), tmp_path / "b", progress=False)
    torch.testing.assert_close(small.linear.weight, large.linear.weight)


def test_early_stopping_on_the_tasks_metric(tmp_path):
    class Stuck(Regression):
        name = "test-stuck"
        metric, higher_is_better = "val_score", True

        def evaluate(self):
            return {"val_loss": 1.0, "val_score": 0.5}  # never improves after the first

    result = fit(Stuck(), cfg(max_steps=100, eval_every=2, patience=3), tmp_path / "s", progress=False)
    assert result.stop_reason == "patience" and result.steps == 8 and result.best_metric == 0.5


def test_a_signal_saves_and_raises_with_the_resume_command(tmp_path):
    class Interrupted(Regression):
        name = "test-interrupted"
        trainer_steps = 0

        def training_loss(self, epoch, index):
            Interrupted.trainer_steps += 1
            if Interrupted.trainer_steps == 5:
                signal.raise_signal(signal.SIGTERM)
            return super().training_loss(epoch, index)

    with pytest.raises(TrainingStopped, match="terminated at step 5: saved .*; continue with: rnnkit-test") as e:
        fit(Interrupted(), cfg(max_steps=50), tmp_path / "t", progress=False)
    assert e.value.exit_code == 143
    assert torch.load(tmp_path / "t" / "last.pt", weights_only=True)["trainer"]["step"] == 5


def test_sigterm_on_the_command_line_saves_and_exits_143(small_corpus, tmp_path):
    run = tmp_path / "run"
    proc = start_training(small_corpus, *TINY, "--max-steps", "100000", "--eval-every", "50", "--out", run,
                          running=[run / "metrics.jsonl"])
    proc.send_signal(signal.SIGTERM)  # what timeout, docker stop and SLURM send
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert f"rnnkit train --resume {run}" in err and "Traceback" not in err
    assert torch.load(run / "last.pt", weights_only=True)["trainer"]["step"] > 0


@pytest.mark.parametrize("option,value,message", [
    ("weight_decay", -1.0, "--weight-decay must be >= 0"), ("weight_decay", math.nan, "finite"),
    ("lr", math.inf, "--lr must be a finite number"), ("lr", 0.0, "--lr must be positive"),
    ("warmup_steps", -5, "--warmup-steps must be >= 0"), ("seed", 2**64, "--seed must be in 0.."),
    ("ema", 1.0, "--ema must be in [0, 1)"), ("grad_accum", 0, "--grad-accum must be positive"),
    ("precision", "fp16", "--precision must be one of")])
def test_every_training_option_is_checked(option, value, message):
    with pytest.raises(RnnkitError, match=re.escape(message)):
        cfg(max_steps=1, **{option: value}).validate()


@pytest.mark.parametrize("args,message", [
    (["--weight-decay", "-1"], "must be >= 0"), (["--lr", "inf"], "finite"), (["--seed", str(2**64)], "must be in"),
    (["--warmup-steps", "-5"], "must be >= 0"), (["--max-steps", "nan"], "whole number"),
    (["--min-lr-ratio", "-0.1"], "must be in [0, 1]"), (["--min-lr-ratio", "2"], "must be in [0, 1]")])
def test_bad_training_options_are_one_line_errors_on_every_command(args, message, tmp_path):
    for command in (["train", "--out", tmp_path / "x"], ["forecast", "fit"], ["longlag"]):
        assert_one_line_error(rnnkit_cli(*command, *args), message)


def test_resume_of_other_tasks_names_their_own_command(tmp_path):
    from rnnkit.tasks.longlag import run

    run("adding", 20, "gru", tmp_path / "ll", hidden=8, max_steps=5, eval_size=50, progress=False)
    assert_one_line_error(rnnkit_cli("train", "--resume", tmp_path / "ll"),
                          "is a longlag run, not a charlm one; continue it with rnnkit longlag --resume")
    proc = rnnkit_cli("longlag", "--resume", tmp_path / "ll", "--max-steps", "10")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1].startswith("test_mse ")
    assert json.loads((tmp_path / "ll" / "result.json").read_text())["steps"] == 10


@pytest.mark.parametrize("command", [["train"], ["classify", "train"], ["translate", "train"], ["speech", "train"],
                                     ["music", "train"], ["forecast", "fit"]])
def test_resuming_another_tasks_run_is_refused_before_it_trains(command, tmp_path):
    from rnnkit.tasks.longlag import run

    run("adding", 20, "gru", tmp_path / "ll", hidden=8, max_steps=5, eval_size=50, progress=False)
    before = (tmp_path / "ll" / "last.pt").read_bytes()
    assert_one_line_error(rnnkit_cli(*command, "--resume", tmp_path / "ll", "--max-steps", "10"),
                          "is a longlag run, not a")
    assert (tmp_path / "ll" / "last.pt").read_bytes() == before  # untouched: not trained a step further


@pytest.mark.parametrize("command,option", [(["train"], ["--hidden", "16"]),
                                            (["classify", "train"], ["--pooling", "mean"]),
                                            (["translate", "train"], ["--hidden", "16"]),
                                            (["speech", "train"], ["--stride", "4"]),
                                            (["music", "train"], ["--output", "independent"]),
                                            (["forecast", "fit"], ["--horizon", "3"]),
                                            (["longlag"], ["--length", "10"])])
def test_resume_refuses_a_model_or_data_option_instead_of_ignoring_it(command, option, tmp_path):
    from rnnkit.tasks.longlag import run

    run("adding", 20, "gru", tmp_path / "ll", hidden=8, max_steps=5, eval_size=50, progress=False)
    before = (tmp_path / "ll" / "last.pt").read_bytes()
    assert_one_line_error(rnnkit_cli(*command, "--resume", tmp_path / "ll", *option, "--max-steps", "10"),
                          f"drop {option[0]} (only the budget and device may change)")
    if command == ["longlag"]:  # a run of the command's own task: training options go to fit's check
        assert_one_line_error(rnnkit_cli("longlag", "--resume", tmp_path / "ll", "--lr", "0.5", "--max-steps", "10"),
                              "--lr 0.5 conflicts with the run's 0.003")
        # the command's default (64 units), not the run's 8: given, so refused as well
        assert_one_line_error(rnnkit_cli("longlag", "--resume", tmp_path / "ll", "--hidden", "64"), "drop --hidden")
    assert (tmp_path / "ll" / "last.pt").read_bytes() == before


def test_forecast_fit_resumes_and_logs_no_fake_validation(tmp_path):
    from rnnkit import Forecaster
    from rnnkit.data import timeseries as ts

    df, kw = ts.builtin_dataset("airline")
    f = Forecaster(hidden=8, max_steps=6, eval_every=3, out=tmp_path / "f").fit(df, horizon=3, **kw)
    records = [json.loads(line) for line in (tmp_path / "f" / "metrics.jsonl").read_text().splitlines()]
    assert any("fit_loss" in r for r in records) and not any("val_loss" in r for r in records)
    more = Forecaster.resume(tmp_path / "f", max_steps=12)
    assert more.result.steps == 12 and len(more.predict()) == 3
    assert len(f.predict()) == 3


def test_one_device_policy(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto").type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu"


@pytest.mark.parametrize("amx,avx512_bf16,isa,precision,sample_1,sample_64", [
    (True, True, "AVX512", "bf16", torch.int8, torch.bfloat16),     # Sapphire Rapids and later
    (False, True, "AVX512", "bf16", torch.int8, torch.bfloat16),    # AVX-512 BF16 without AMX (Cooper Lake, Zen 4)
    (False, False, "AVX512", "fp32", torch.int8, torch.float32),    # AVX-512 without BF16 (Skylake, Ice Lake)
    (False, False, "AVX2", "fp32", torch.int8, torch.float32),      # AVX2 only: bf16 products are slow
    (False, False, "DEFAULT", "fp32", torch.float32, torch.float32)])  # no vector int8 kernel
def test_auto_choices_follow_the_cpu(monkeypatch, amx, avx512_bf16, isa, precision, sample_1, sample_64):
    monkeypatch.setattr(hardware, "cpu_has_amx", lambda: amx)
    monkeypatch.setattr(hardware, "cpu_has_avx512_bf16", lambda: avx512_bf16)
    monkeypatch.setattr(hardware, "cpu_capability", lambda: isa)
    assert resolve_precision("auto", torch.device("cpu")) == precision
    assert resolve_precision("fp32", torch.device("cpu")) == "fp32"
    if not hasattr(torch, "_weight_int8pack_mm"):
        sample_1 = torch.bfloat16 if avx512_bf16 else torch.float32
    assert stepping.default_sample_dtype(1) == sample_1
    assert stepping.default_sample_dtype(64) == sample_64


def test_registry_holds_every_builtin_task():
    from rnnkit.training.task import find_task

    for name in ("charlm", "forecast", "longlag"):
        assert find_task(name).name == name
    assert "test-regression" in TASKS
