"""Ensembles of character models: several trained side by side, their next-character probabilities averaged.

Models trained apart from different seeds make different errors, so the average of their
predicted distributions,

    p(x_t | x_<t) = (1/N) sum_k p_k(x_t | x_<t),

scores text better than any one of them, most of all where each has read its training text
many times over and overfits it. A recurrent model's training step does not scale fully across
a CPU's cores, so N models on a share of the threads each read more characters between them
than one model on all the threads (BENCHMARKS.md, "Seventeenth session").

The run folder holds one ordinary character-model run per member (``member-1``, ``member-2``,
...), each trained, resumed and loadable on its own, beside a ``config.json`` naming them and
a ``metrics.jsonl`` with the ensemble's validation loss after each training session.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import __version__
from ..errors import RnnkitError, RunFinished, TrainingStopped
from ..hardware import torch_threads
from ..io import write_json
from ..nn.stepping import EnsembleStepper
from ..training.config import TrainConfig, field_default
from ..training.fit import CONFIG, lock_run_folder, prepare_run_folder, read_run_config, unlock_run_folder
from ..training.monitor import MetricsLog
from ..training.trainer import STOP_SIGNALS, TrainResult
from .charlm import LN2, VAL_CHUNK, VAL_STREAMS, CharLM, CharModel, stream_loss

TASK = "charlm_ensemble"


def member_folders(run: Path, count: int) -> list[Path]:
    return [run / f"member-{k + 1}" for k in range(count)]


def ensemble_members(run: str | Path) -> list[Path] | None:
    """The member run folders of an ensemble run folder, or None if ``run`` is not one."""
    config = read_run_config(Path(run))
    if not config or config.get("task") != TASK:
        return None
    return [Path(run) / name for name in config["members"]]


class CharLMEnsemble(CharModel):
    """Character models whose next-character probabilities are averaged.

    ``forward`` gives log-probabilities (usable as logits: their softmax is the average) and the
    members' states as a tuple. Evaluation, dynamic evaluation (every member's weights adapt to
    the mixture's loss) and sampling work as for one :class:`CharLM`.
    """

    def __init__(self, members: Sequence[CharLM]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        vocab = members[0].vocab
        if any((m.vocab.chars if m.vocab else None) != (vocab.chars if vocab else None) for m in members):
            raise RnnkitError("the ensemble's members have different vocabularies")
        self.members = nn.ModuleList(members)
        self.vocab, self.origin = vocab, None

    def forward(self, ids: Tensor, state: tuple[Any, ...] | None = None) -> tuple[Tensor, tuple[Any, ...]]:
        states = state if state is not None else (None,) * len(self.members)
        log_probs, new_states = [], []
        for member, member_state in zip(self.members, states, strict=True):
            logits, member_state = member(ids, member_state)
            log_probs.append(F.log_softmax(logits.float(), -1))
            new_states.append(member_state)
        mixture = torch.logsumexp(torch.stack(log_probs), 0) - math.log(len(log_probs))
        return mixture, tuple(new_states)

    def stepper(self, dtype: torch.dtype | None, batch: int) -> EnsembleStepper:
        return EnsembleStepper([member.stepper(dtype, batch) for member in self.members])

    @classmethod
    def load(cls, run: str | Path, which: str = "best", device: str = "auto") -> CharLMEnsemble:
        """Load an ensemble run folder's members (their ``best`` or ``last`` checkpoints)."""
        folders = ensemble_members(run)
        if folders is None:
            raise RnnkitError(f"{run} is not an ensemble run folder")
        model = cls([CharLM.load(folder, which, device) for folder in folders])
        model.origin = model.members[0].origin  # the training text of the first member: the same for all
        return model


@dataclass
class EnsembleResult(TrainResult):
    """The ensemble's validation loss in ``last_eval``; each member's own training in ``members``."""

    members: dict[str, TrainResult] = field(default_factory=dict)  # by folder name: those trained this time


def train_ensemble(corpus: list[str] | None, out: str | Path, members: int, progress: bool | None,
                   given: dict[str, Any], budget: float | None,
                   train_chars: float) -> tuple[CharLMEnsemble, EnsembleResult]:
    """Train ``members`` character models side by side in ``out``, each in a process of its own on an
    equal share of this machine's threads, with seeds ``seed``, ``seed + 1``, ...; then score their
    average on the validation text. ``given``: the options given, already checked by ``rnnkit.train``;
    ``budget``: the time budget, if the run has one (the width and cell are then picked for one member's
    share, :func:`rnnkit.tasks.charlm.member_pick`); ``train_chars``: about how much training text there is."""
    from .charlm import machine_pick, member_pick

    threads = max(1, torch.get_num_threads() // members)
    if budget is not None and "hidden" not in given:  # one model for every member, picked for its share
        picked = member_pick(given, budget, train_chars, threads)
        if picked is None:  # too short a budget to read the text many times: what the budget buys
            with torch_threads(threads):
                picked = machine_pick(given, budget)
        given = {**given, "hidden": picked["hidden"], "cell": picked["cell"]}
    out = prepare_run_folder(out, HINT)
    folders = member_folders(out, members)
    write_json(out / CONFIG, {"rnnkit": __version__, "task": TASK, "members": [f.name for f in folders],
                              "threads_per_member": threads, "options": given, "started_by": HINT})
    seed = given.get("seed", field_default(TrainConfig, "seed"))
    jobs = [{"corpus": corpus, "out": str(folder), **given, "seed": seed + k} for k, folder in enumerate(folders)]
    return _score(out, folders, _train_side_by_side(out, jobs, threads, progress))


def resume_ensemble(run: Path, corpus: list[str] | None, progress: bool | None,
                    options: dict[str, Any]) -> tuple[CharLMEnsemble, EnsembleResult]:
    """Continue every member of an ensemble run that has budget left (only the budget and device may change)."""
    folders = ensemble_members(run) or []
    lock_run_folder(run)
    try:
        threads = max(1, torch.get_num_threads() // len(folders))
        given = {k: v for k, v in options.items() if v is not None}
        jobs = [{"corpus": corpus, "resume": str(folder), **given} for folder in folders]
        outcomes = _train_side_by_side(run, jobs, threads, progress)
        if not any(isinstance(o, TrainResult) for o in outcomes):
            raise RunFinished.of(run)
        return _score(run, folders, outcomes)
    finally:
        unlock_run_folder(run)


HINT = "rnnkit train --resume"


def _train_side_by_side(run: Path, jobs: list[dict[str, Any]], threads: int,
                        progress: bool | None) -> list[TrainResult | RunFinished]:
    """Run each job (``rnnkit.train``'s arguments) in a process of its own with ``threads`` threads.

    The first member shows its progress; the others train silently. The processes run in sessions
    of their own, so that Ctrl-C reaches them once, from here: an interrupt or termination of this
    process is passed on, every member saves and stops, and :class:`TrainingStopped` names the
    command that continues them all. A member that fails stops the others the same way.
    """
    package_root = str(Path(__file__).resolve().parents[2])  # this rnnkit, wherever the caller imported it from
    env = {**os.environ, "OMP_NUM_THREADS": str(threads),
           "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    members = []
    for k, job in enumerate(jobs):
        job = {**job, "progress": progress if k == 0 else False}
        members.append(subprocess.Popen([sys.executable, "-m", __name__, json.dumps(job)], env=env,
                                        stdout=subprocess.PIPE, text=True, start_new_session=True))
    received: list[str] = []

    def stop_all(signum: int) -> None:
        for member in members:
            if member.poll() is None:
                member.send_signal(signum)

    def pass_on(signum: int, _frame: Any) -> None:
        received.append(STOP_SIGNALS[signal.Signals(signum)])
        stop_all(signum)

    outcomes: dict[int, TrainResult | RnnkitError] = {}
    with signal_handlers(STOP_SIGNALS, pass_on):
        while len(outcomes) < len(members):
            for k, member in enumerate(members):
                if k not in outcomes and member.poll() is not None:
                    outcomes[k] = _outcome(member.stdout.read() if member.stdout else "", member.returncode)
                    if _failed(outcomes[k]) and not any(_failed(o) for j, o in outcomes.items() if j != k):
                        stop_all(signal.SIGTERM)  # the others save and stop
            time.sleep(POLL_SECONDS)
    ordered = [outcomes[k] for k in range(len(members))]
    for job, outcome in zip(jobs, ordered, strict=True):
        if _failed(outcome):
            raise RnnkitError(f"{Path(job.get('out') or job['resume']).name}: {outcome}")
    if received or any(isinstance(o, TrainingStopped) for o in ordered):
        how = received[0] if received else "interrupted"
        raise TrainingStopped(f"{how}: every member saved its last.pt; continue with: {HINT} {run}", how)
    return ordered  # each a result, or RunFinished for a member resumed with no budget left


POLL_SECONDS = 0.1  # how often the members' processes are looked at; a training step takes longer


def _failed(outcome: Any) -> bool:
    return isinstance(outcome, RnnkitError) and not isinstance(outcome, (TrainingStopped, RunFinished))


def _outcome(output: str, returncode: int) -> TrainResult | RnnkitError:
    """What a member process reported on its last line: its result, or the error it stopped with."""
    lines = output.strip().splitlines()
    try:
        report = json.loads(lines[-1]) if lines else {}
    except ValueError:
        report = {}
    kinds = {"stopped": TrainingStopped, "finished": RunFinished, "error": RnnkitError}
    if "result" in report:
        return TrainResult(**report["result"])
    for key, kind in kinds.items():
        if key in report:
            return kind(report[key])
    return RnnkitError(f"the process ended without a result (exit code {returncode}); its error is above")


@contextmanager
def signal_handlers(signals: Any, handler: Any) -> Iterator[None]:
    """``handler`` for ``signals`` within, where signals can be handled (the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, old in before.items():
            signal.signal(sig, old)


def _stop_when_orphaned() -> None:
    """Stop training (as SIGTERM does: saved, resumable) if the process that started this one dies without
    passing a signal on (killed outright): a member never trains on alone."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True).start()


def _member_main(job: dict[str, Any]) -> dict[str, Any]:
    """Train one member as ``job`` says; the report the parent reads."""
    from .charlm import train

    _stop_when_orphaned()
    try:
        _, result = train(**job)
    except RunFinished as e:
        return {"finished": str(e)}
    except TrainingStopped as e:
        return {"stopped": str(e)}
    except RnnkitError as e:
        return {"error": str(e)}
    except MemoryError:
        return {"error": "out of memory: choose a smaller model, batch or length"}
    except KeyboardInterrupt:  # a second interrupt, passed on: the trainer stops at once
        return {"stopped": "interrupted"}
    return {"result": asdict(result)}


def _score(run: Path, folders: list[Path], outcomes: list[Any]) -> tuple[CharLMEnsemble, EnsembleResult]:
    """Load the members' best weights, score the ensemble on the validation text, record it."""
    model = CharLMEnsemble.load(run, "best", device="cpu")
    val, _ = model.run_tokens("val")
    with torch.no_grad():
        loss = stream_loss(model, val, VAL_STREAMS, VAL_CHUNK, torch.device("cpu"))
    trained = [o for o in outcomes if isinstance(o, TrainResult)]
    MetricsLog(run / "metrics.jsonl").write({
        "val_loss": loss, "val_bpc": loss / LN2,
        "member_val_loss": [o.best_metric if isinstance(o, TrainResult) else None for o in outcomes]})
    result = EnsembleResult(steps=max(r.steps for r in trained), train_time=max(r.train_time for r in trained),
                            items_per_second=sum(r.items_per_second for r in trained),
                            stop_reason=trained[0].stop_reason, last_eval={"val_loss": loss, "val_bpc": loss / LN2},
                            best_metric=loss, members={f.name: o for f, o in zip(folders, outcomes, strict=True)
                                                       if isinstance(o, TrainResult)})
    return model.eval(), result


if __name__ == "__main__":  # a member's process: python -m rnnkit.tasks.charlm_ensemble JOB
    print(json.dumps(_member_main(json.loads(sys.argv[1]))), flush=True)
