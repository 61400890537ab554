"""Ensembles of character models (``rnnkit train --members N``): the average of the members'
probabilities, the same when stepping, members that are exactly the single runs of their seeds,
interrupt and resume, and bad input."""

import json
import math
import signal
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import TINY, assert_one_line_error, one_line, rnnkit_cli, start_training

import rnnkit
from rnnkit.data.text import Vocab
from rnnkit.errors import RnnkitError
from rnnkit.hardware import torch_threads
from rnnkit.tasks import charlm
from rnnkit.tasks.charlm import (
    ENSEMBLE_PASSES,
    CharLM,
    CharModel,
    ModelConfig,
    ensemble_pick,
    stream_loss,
)
from rnnkit.tasks.charlm_ensemble import CharLMEnsemble, EnsembleResult

VOCAB = Vocab(list("abcdefgh \n"))


def members(count: int = 2, cell: str = "lstm") -> list[CharLM]:
    out = []
    for seed in range(count):
        torch.manual_seed(seed)
        out.append(CharLM(ModelConfig(cell=cell, hidden=12, layers=2, vocab_size=len(VOCAB)), VOCAB).eval())
    return out


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_ensemble_predicts_the_average_of_its_members_probabilities(cell):
    parts = members(3, cell)
    ensemble = CharLMEnsemble(parts).eval()
    ids = torch.randint(0, len(VOCAB), (4, 9))
    with torch.no_grad():
        mixture, state = ensemble(ids)
        average = torch.stack([F.softmax(m(ids)[0], -1) for m in parts]).mean(0)
        torch.testing.assert_close(mixture.exp(), average, atol=1e-6, rtol=1e-5)
        # carried state: two halves read in turn give what the whole does
        first, state = ensemble(ids[:, :5])
        second, _ = ensemble(ids[:, 5:], state)
        torch.testing.assert_close(torch.cat([first, second], 1), mixture, atol=1e-5, rtol=1e-5)
    text = "abc defg\nhab cadef gh"
    expected = -np.mean([math.log(average_prob) for average_prob in _teacher_forced(parts, text)])
    assert ensemble.evaluate(text)["loss"] == pytest.approx(expected, rel=1e-5)


def _teacher_forced(parts: list[CharLM], text: str) -> list[float]:
    """Each next character's probability under the average of ``parts``, one model at a time."""
    ids = torch.from_numpy(VOCAB.encode(text).astype(np.int64))[None]
    with torch.no_grad():
        probs = torch.stack([F.softmax(m(ids[:, :-1])[0], -1) for m in parts]).mean(0)[0]
    return probs.gather(1, ids[0, 1:, None])[:, 0].tolist()


def test_stepping_the_ensemble_gives_the_distribution_it_was_scored_with():
    ensemble = CharLMEnsemble(members(2))
    text = "abcdefgh ab\nhg"
    ids = torch.from_numpy(VOCAB.encode(text).astype(np.int64))
    stepper = ensemble.stepper(torch.float32, 1)
    states, token = stepper.prime_state(ids[:3], 1)
    stepped = []
    for next_id in ids[3:]:
        stepped.append(torch.log_softmax(stepper.step(token, states), -1)[0])
        token = next_id.view(1)
    with torch.no_grad():
        forward = ensemble(ids[None, :-1])[0][0, 2:]  # after the prime's three characters, and each one after
    torch.testing.assert_close(torch.stack(stepped), forward, atol=1e-5, rtol=1e-5)
    assert ensemble.sample(20, prime="ab", seed=3) == ensemble.sample(20, prime="ab", seed=3)


def test_dynamic_evaluation_adapts_every_member_and_leaves_the_weights_unchanged():
    ensemble = CharLMEnsemble(members(2))
    before = [p.clone() for p in ensemble.parameters()]
    text = "abcabcabcabcabcabcabc " * 30
    result = ensemble.evaluate(text, dynamic=True)
    assert result["dynamic_loss"] < result["loss"]  # a repeated text is learnt as it is read
    assert all(torch.equal(a, b) for a, b in zip(before, ensemble.parameters(), strict=True))


def test_members_must_share_a_vocabulary():
    other = CharLM(ModelConfig(hidden=12, vocab_size=3), Vocab(list("xyz")))
    with pytest.raises(RnnkitError) as e:
        CharLMEnsemble([members(1)[0], other])
    assert "vocabularies" in one_line(e)


ARGS = [*TINY, "--hidden", "16", "--batch-size", "4", "--seq-len", "16", "--eval-every", "50"]


def test_each_member_is_the_single_run_of_its_seed_and_the_ensemble_is_scored_on_the_validation_text(
        small_corpus, tmp_path):
    run = tmp_path / "ens"
    proc = rnnkit_cli("train", small_corpus, *ARGS, "--max-steps", "60", "--seed", "5", "--members", "2",
                      "--out", run)
    assert proc.returncode == 0, proc.stderr
    single = rnnkit_cli("train", small_corpus, *ARGS, "--max-steps", "60", "--seed", "6", "--out", tmp_path / "one")
    assert single.returncode == 0, single.stderr
    a = torch.load(run / "member-2" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "one" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    first = torch.load(run / "member-1" / "last.pt", weights_only=True)["model"]
    assert not all(torch.equal(a[k], first[k]) for k in a)  # seeds 5 and 6

    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("member-1: steps 60") and lines[1].startswith("member-2: steps 60")
    ensemble = CharModel.load(run, device="cpu")
    assert isinstance(ensemble, CharLMEnsemble) and len(ensemble.members) == 2
    val, _ = ensemble.run_tokens("val")
    with torch.no_grad():
        loss = stream_loss(ensemble, val, 64, 512, torch.device("cpu"))
    assert lines[-1] == f"val bpc {loss / math.log(2):.3f}  (loss {loss:.4f} nats/char)"
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["val_loss"] == pytest.approx(loss, rel=1e-6)

    sampled = rnnkit_cli("sample", run, "--length", "30", "--seed", "1")
    assert sampled.returncode == 0 and len(sampled.stdout.strip()) > 0, sampled.stderr
    evaluated = rnnkit_cli("eval", run, small_corpus)
    assert evaluated.returncode == 0, evaluated.stderr
    assert float(evaluated.stdout.split()[-1]) > 0
    # a folder holding an ensemble is a run: not trained over, and its members are not models of their own
    assert_one_line_error(rnnkit_cli("train", small_corpus, *ARGS, "--max-steps", "5", "--out", run),
                          "already holds a run", f"--resume {run}")
    assert_one_line_error(rnnkit_cli("neurons", run, small_corpus), "ensemble of 2", "member-1")
    assert_one_line_error(rnnkit_cli("train", "--resume", run, "--members", "3"), "drop --members")


def test_an_interrupted_ensemble_resumes_to_the_uninterrupted_one(small_corpus, tmp_path):
    args = [small_corpus, *ARGS, "--max-steps", "600", "--members", "2"]
    whole = rnnkit_cli("train", *args, "--out", tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr

    cut = tmp_path / "cut"
    proc = start_training(*args, "--out", cut, running=[cut / f"member-{k}" / "metrics.jsonl" for k in (1, 2)])
    proc.send_signal(signal.SIGINT)  # Ctrl-C reaches the command; it passes it on to the members
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert f"rnnkit train --resume {cut}" in err and "val bpc" not in out
    steps = [torch.load(cut / f"member-{k}" / "last.pt", weights_only=True)["trainer"]["step"] for k in (1, 2)]
    assert all(0 < s < 600 for s in steps), "the interrupt came too late to test resume"

    resumed = rnnkit_cli("train", "--resume", cut)
    assert resumed.returncode == 0, resumed.stderr
    for k in (1, 2):
        a = torch.load(tmp_path / "whole" / f"member-{k}" / "last.pt", weights_only=True)["model"]
        b = torch.load(cut / f"member-{k}" / "last.pt", weights_only=True)["model"]
        assert all(torch.equal(a[name], b[name]) for name in a)
    assert resumed.stdout.strip().splitlines()[-1] == whole.stdout.strip().splitlines()[-1]
    assert_one_line_error(rnnkit_cli("train", "--resume", cut), "already finished its budget")


def test_members_save_and_stop_when_the_command_is_killed_outright(small_corpus, tmp_path):
    run = tmp_path / "ens"
    proc = start_training(small_corpus, *ARGS, "--max-steps", "1000000", "--members", "2", "--out", run,
                          running=[run / f"member-{k}" / "metrics.jsonl" for k in (1, 2)], quiet=True)
    proc.kill()  # SIGKILL: nothing is passed on
    proc.wait()
    deadline = time.time() + 60
    for k in (1, 2):  # each member's process ends (its run folder's lock is let go) having saved its run
        folder = run / f"member-{k}"
        while not _lock_is_free(folder) and time.time() < deadline:
            time.sleep(0.1)
        assert _lock_is_free(folder) and (folder / "last.pt").exists()


def _lock_is_free(folder) -> bool:
    import fcntl

    with open(folder / ".lock", "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        fcntl.flock(f, fcntl.LOCK_UN)
        return True


def test_a_member_that_fails_is_named_and_nothing_is_left_behind(tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("a few words of text, too few to hold out a validation split\n" * 3)
    run = tmp_path / "ens"
    assert_one_line_error(rnnkit_cli("train", short, *ARGS, "--max-steps", "5", "--members", "2",
                                     "--val-fraction", "0.0001", "--out", run), "member-1:", "validation")
    assert not run.exists()
    proc = rnnkit_cli("train", short, *ARGS, "--members", "0", "--out", run)
    assert proc.returncode == 2 and "--members" in proc.stderr and not run.exists()


def test_the_python_api_returns_the_ensemble_and_each_members_result(small_corpus, tmp_path):
    model, result = rnnkit.train(small_corpus, out=tmp_path / "ens", members=2, max_steps=10, hidden=16,
                                 layers=1, batch_size=4, seq_len=16, precision="fp32", progress=False)
    assert isinstance(model, CharLMEnsemble) and isinstance(result, EnsembleResult)
    assert sorted(result.members) == ["member-1", "member-2"]
    assert all(r.steps == 10 for r in result.members.values()) and result.steps == 10
    assert math.isfinite(result.last_eval["val_loss"])
    with pytest.raises(RnnkitError) as e:
        CharLM.load(tmp_path / "ens")
    assert "member-1" in one_line(e)
    with pytest.raises(RnnkitError) as e:
        rnnkit.resume(tmp_path / "ens")  # the task-agnostic resume points to the command that resumes them
    assert f"rnnkit train --resume {tmp_path / 'ens'}" in one_line(e)
    with pytest.raises(RnnkitError) as e:
        rnnkit.train(small_corpus, out=tmp_path / "x", members=1.5, max_steps=1)
    assert "--members" in one_line(e)


SMALL = {"layers": 1, "embed": 4, "batch_size": 4, "seq_len": 8, "precision": "fp32"}


def test_two_models_are_picked_where_each_can_read_the_text_many_times_on_half_the_threads(monkeypatch):
    threads_measured, lstm_over_gru = [], [1.1]

    def training_speed(options, hidden, steps=5):  # a machine whose speeds are known exactly
        threads_measured.append(torch.get_num_threads())
        return 1e6 * (256 / hidden) ** 2 * (lstm_over_gru[0] if options["cell"] == "lstm" else 1.0)

    monkeypatch.setattr(charlm, "training_speed", training_speed)
    budget = 60.0  # 512 units read 16.5 million characters in it, 384 units 29.3 million, 256 units 66 million
    with torch_threads(2):
        assert ensemble_pick({}, budget, 16.5e6 / ENSEMBLE_PASSES) == {"members": 2, "hidden": 512, "cell": "lstm"}
        # wider models would read the text under ENSEMBLE_PASSES times: the members are the widest that does
        assert ensemble_pick({}, budget, 29e6 / ENSEMBLE_PASSES) == {"members": 2, "hidden": 384, "cell": "lstm"}
        assert ensemble_pick({}, budget, 60e6 / ENSEMBLE_PASSES) == {"members": 2, "hidden": 256, "cell": "lstm"}
        assert ensemble_pick({"cell": "gru"}, budget, 60e6 / ENSEMBLE_PASSES) == \
            {"members": 2, "hidden": 256, "cell": "gru"}
        assert ensemble_pick({}, budget, 66e6 / ENSEMBLE_PASSES * 1.01) is None  # one model on both threads
        lstm_over_gru[0] = 0.8  # members that read their text this often are LSTMs even where the GRU is faster
        assert ensemble_pick({}, budget, 4e6)["cell"] == "lstm"
    assert set(threads_measured) == {1}  # each member's share
    with torch_threads(1):
        assert ensemble_pick({}, budget, 1.0) is None  # one thread: nothing to share


def test_a_time_budget_on_a_short_text_trains_two_models_by_default(small_corpus, tmp_path):
    short = tmp_path / "short.txt"  # read many times over in the budget
    short.write_text(small_corpus.read_text(encoding="utf-8")[:3000], encoding="utf-8")
    with torch_threads(2):
        model, result = rnnkit.train(short, out=tmp_path / "run", max_time=1.5, progress=False, **SMALL)
    assert isinstance(model, CharLMEnsemble) and len(result.members) == 2
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["threads_per_member"] == 1 and {"hidden", "cell"} <= set(config["options"])
    with torch_threads(2):
        _, single = rnnkit.train(short, out=tmp_path / "one", max_time=1.5, members=1, progress=False,
                                 **SMALL)
    assert not isinstance(single, EnsembleResult)
