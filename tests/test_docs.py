"""The guides' examples run as written: docs/adding-a-cell.md and docs/adding-a-task.md."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from test_charlm import assert_generator_matches_model

from rnnkit.nn.cells import CELLS
from rnnkit.training.task import TASKS

DOCS = Path(__file__).resolve().parents[1] / "docs"


def code_blocks(page: str) -> str:
    return "\n".join(re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(encoding="utf-8"), re.S))


@pytest.mark.parametrize("page,registry,name", [("adding-a-cell.md", CELLS, "indrnn"),
                                                ("adding-a-task.md", TASKS, "majority")])
def test_guide_runs(page, registry, name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = code_blocks(page)
    assert code.strip()
    try:
        exec(compile(code, str(DOCS / page), "exec"), {"__name__": "guide"})
        assert name in registry
    finally:
        registry.pop(name, None)  # the guide's example stays out of the other tests


@pytest.mark.parametrize("dtype", [torch.float32, torch.int8])
def test_guide_cell_samples_with_the_step_generator(dtype, tmp_path, monkeypatch):
    """The guide promises fast generation for a new cell: IndRNN's recurrent vector must not be
    quantised as a matrix would be."""
    monkeypatch.chdir(tmp_path)
    try:
        exec(compile(code_blocks("adding-a-cell.md"), "adding-a-cell.md", "exec"), {"__name__": "guide"})
        tol = 1e-5 if dtype == torch.float32 else 6e-2
        assert_generator_matches_model("indrnn", dtype, tol, hidden=32, layers=2)
    finally:
        CELLS.pop("indrnn", None)
