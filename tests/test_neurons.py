"""Hidden-state neurons: text properties, recording, and finding units planted in a model by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import assert_one_line_error, rnnkit_cli

from rnnkit.data.text import Vocab
from rnnkit.errors import RnnkitError
from rnnkit.inspect.neurons import (
    correlations,
    record,
    render_html,
    render_png,
    text_properties,
    top_units,
)
from rnnkit.tasks.charlm import CharLM, ModelConfig

CODE = '''def f(a, b):
    if a[0] > (b + 1):
        return "x:" + str(a)
    return {"k": [1, 2, (3)]}

x = f([1, 2], 3)
print("done", x)
'''


def test_text_properties_by_hand():
    p = text_properties('a "b(c" d\n  ef(g)\n')
    text = 'a "b(c" d\n  ef(g)\n'
    at = {name: dict(zip(range(len(text)), values, strict=True)) for name, values in p.items()}
    assert [at["in_quotes"][i] for i in range(len(text))] == [0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    # the quote does not close the bracket
    assert at["in_brackets"][4] == 1 and at["in_brackets"][5] == 1 and at["in_brackets"][7] == 1
    assert at["line_position"][0] == 1 and at["line_position"][9] == 0 and at["line_position"][10] == 1
    assert at["indent"][10] == 1 and at["indent"][11] == 2 and at["indent"][14] == 2 and at["indent"][17] == 0
    assert [i for i, v in at["word_start"].items() if v] == [0, 3, 5, 8, 12, 15]
    assert [i for i, v in at["after_newline"].items() if v] == [9, 17]
    q = text_properties("""a "b \\" c" d '"' e "f" """, ["in_quotes"])["in_quotes"]
    assert "".join("1" if v else "0" for v in q) == "00111111100000000001100"
    with pytest.raises(RnnkitError):
        text_properties("abc", ["nope"])


def test_correlations_are_pearson():
    rng = np.random.default_rng(0)
    prop = rng.normal(size=500)
    units = np.stack([prop * 2 + 1, -prop, rng.normal(size=500), np.ones(500)], axis=1)
    r = correlations(units, prop)
    assert r[0] == pytest.approx(1) and r[1] == pytest.approx(-1) and abs(r[2]) < 0.2 and r[3] == 0
    assert r[2] == pytest.approx(np.corrcoef(units[:, 2], prop)[0, 1])


def planted_model() -> CharLM:
    """A 1-layer LSTM whose cell unit 3 counts open brackets and whose unit 5 fires after a newline.

    Embedding coordinate 0 is +3 for an opening and -3 for a closing bracket, coordinate 1 is 3
    for a newline; unit 3 keeps everything (forget gate 1) and adds tanh(±6) ≈ ±1 per bracket;
    unit 5 forgets everything (forget gate 0) and writes 1 on a newline. All other units are random.
    """
    vocab = Vocab.from_text(CODE)
    torch.manual_seed(0)
    H = 8
    model = CharLM(ModelConfig(cell="lstm", hidden=H, layers=1, vocab_size=len(vocab)), vocab)
    w_ih, w_hh, b_ih, b_hh = model.rnn.layer_weights(0).values()
    with torch.no_grad():
        model.embed.weight[:, :2] = 0
        for ch, v in [("(", 3), ("[", 3), ("{", 3), (")", -3), ("]", -3), ("}", -3)]:
            model.embed.weight[vocab.index[ch], 0] = v
        model.embed.weight[vocab.index["\n"], 1] = 3
        i, f, g, o = (slice(k * H, (k + 1) * H) for k in range(4))
        for unit, coord, forget in [(3, 0, 20.0), (5, 1, -20.0)]:
            for gate in (i, f, g, o):
                w_ih[gate][unit] = 0
                w_hh[gate][unit] = 0
                b_hh[gate][unit] = 0
            b_ih[i][unit], b_ih[f][unit], b_ih[g][unit], b_ih[o][unit] = 20.0, forget, 0.0, 20.0
            w_ih[g][unit, coord] = 2.0
    return model.eval()


def test_planted_units_are_found():
    rec = record(planted_model(), CODE * 3)
    assert rec.units.shape == (len(CODE) * 3, 16) and rec.names[3] == "h0:3" and rec.names[8 + 3] == "c0:3"
    assert np.isnan(rec.confidence[0]) and np.all((rec.confidence[1:] > 0) & (rec.confidence[1:] < 1))
    best = {m.prop: m for m in top_units(rec, ["in_brackets", "after_newline"], top=1)}
    assert best["in_brackets"].unit in ("c0:3", "h0:3") and best["in_brackets"].r > 0.8
    assert best["after_newline"].unit in ("c0:5", "h0:5") and best["after_newline"].r > 0.95
    # the cell state counts: it equals the bracket depth within the tanh(6) per bracket
    depth = np.cumsum([1 if ch in "([{" else -1 if ch in ")]}" else 0 for ch in CODE * 3])
    np.testing.assert_allclose(rec.unit("c0:3"), depth, atol=0.01 * depth.max() + 1e-3)


def test_record_matches_the_model_forward():
    model = planted_model()
    rec = record(model, CODE)
    ids = torch.from_numpy(model.vocab.encode(CODE).astype(np.int64))[None]
    with torch.no_grad():
        logits, _ = model(ids)
    probs = torch.softmax(logits[0, :-1], -1).gather(1, ids[0, 1:, None])[:, 0].numpy()
    np.testing.assert_allclose(rec.confidence[1:], probs, rtol=1e-4, atol=1e-6)


def test_rendering(tmp_path):
    rec = record(planted_model(), CODE)
    render_html(rec, "c0:3", tmp_path / "n.html")
    page = (tmp_path / "n.html").read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>") and "unit c0:3" in page and ">&quot;</span>" in page
    assert page.count("<span") == 2 * len(CODE) and "<script" not in page and "http" not in page
    render_png(rec, "h0:5", tmp_path / "n.png")
    assert (tmp_path / "n.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(RnnkitError, match="no unit"):
        rec.unit("h9:0")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    import rnnkit
    out = tmp_path_factory.mktemp("neurons") / "run"
    (out.parent / "code.txt").write_text(CODE * 40, encoding="utf-8")
    rnnkit.train(str(out.parent / "code.txt"), out=out, cell="lstm", hidden=16, layers=1, batch_size=4, seq_len=32,
                 max_steps=5, progress=False, precision="fp32")
    return out


def test_cli_table_and_files(tiny_run, tmp_path):
    text = tiny_run.parent / "code.txt"
    proc = rnnkit_cli("neurons", tiny_run, text, "--out", tmp_path / "n", "--top", "2")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["unit", "property", "correlation"]
    props = [ln.split()[1] for ln in lines[2:] if len(ln.split()) == 3 and ln.split()[0][0] in "hc"]
    assert props.count("in_brackets") == 2 and props.count("indent") == 2
    assert (tmp_path / "n" / "neurons.html").exists() and (tmp_path / "n" / "neurons.png").exists()
    proc = rnnkit_cli("neurons", tiny_run, text, "--out", tmp_path / "m", "--unit", "c0:1")
    assert proc.returncode == 0, proc.stderr
    assert "c0:1" in (tmp_path / "m" / "neurons.html").read_text(encoding="utf-8")


def test_cli_bad_input(tiny_run, tmp_path):
    text = tiny_run.parent / "code.txt"
    assert_one_line_error(rnnkit_cli("neurons", tiny_run, text, "--unit", "h7:99", "--out", tmp_path / "a"), "no unit")
    assert_one_line_error(rnnkit_cli("neurons", tiny_run, tmp_path / "none.txt"), "no such file")
    assert_one_line_error(rnnkit_cli("neurons", tmp_path / "norun", text), "no checkpoint")
