"""Jupyter display (issue 15, item 5): Tensor._repr_html_, Module._repr_html_ and
nn.summary (well-formed HTML holding the numbers), and tqdm.auto progress bars."""
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import retrograd as rg
from retrograd import nn
from retrograd.models import build_model


def _parse(html):
    return ET.fromstring(html)              # raises on anything not well-formed


def test_tensor_html_shows_metadata_and_values():
    t = rg.tensor([[1.5, -2.0], [3.25, 4.0]], requires_grad=True, name="w<1>")
    root = _parse(t._repr_html_())
    text = "".join(root.itertext())
    assert "shape=(2, 2)" in text and "dtype=float32" in text and "requires_grad=True" in text
    assert "w<1>" in text                              # escaped in the markup, text again here
    assert all(v in root.find("pre").text for v in ("1.5", "-2.", "3.25", "4."))
    y = (t * 2).sum()
    assert "op=sum" in "".join(_parse(y._repr_html_()).itertext())
    big = _parse(rg.tensor(np.arange(1000.0))._repr_html_()).find("pre").text
    assert "..." in big and "999." in big              # summarised, as NumPy prints


def _cells(root):
    return [[c.text or "" for c in tr] for tr in root.iter("tr")]


def test_module_html_is_a_table_of_layers_and_parameter_counts():
    rg.manual_seed(0)
    m = nn.MLP([784, 100, 10], "tanh")
    root = _parse(m._repr_html_())
    rows = _cells(root)
    assert rows[0] == ["layer", "type", "parameters"]
    assert ["0", "Linear", "78,500"] in rows and ["2", "Linear", "1,010"] in rows
    assert ["1", "Tanh", "0"] in rows and rows[-1] == ["total", "", "79,510"]
    assert "79,510 parameters" in root.find("caption").text


def test_summary_with_an_input_shape_gives_output_shapes():
    rg.manual_seed(0)
    m = build_model({"model": "cnn", "classes": 10, "activation": "relu"})
    s = nn.summary(m, (2, 784))
    rows = {r[0]: r for r in s.rows}
    assert rows["1"][2] == (2, 6, 28, 28) and rows["4"][2] == (2, 16, 10, 10)
    assert rows["7"][2] == (2, 400) and rows["12"][2] == (2, 10)
    assert s.total == m.num_parameters() == 61706
    cells = _cells(_parse(s._repr_html_()))
    assert cells[0] == ["layer", "type", "output shape", "parameters"]
    assert ["8", "Linear", "(2, 120)", "48,120"] in cells
    assert "(2, 16, 5, 5)" in str(s)
    assert all("forward" not in vars(mod) for mod in m.modules())     # hooks removed


def test_summary_leaves_training_state_alone():
    m = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Dropout(0.5))
    before = m[1].running_mean.data.copy()
    s = nn.summary(m, (5, 3))
    assert m.training and m[1].training                         # mode restored
    np.testing.assert_array_equal(m[1].running_mean.data, before)
    assert int(m[1].num_batches_tracked.data) == 0
    assert [r[2] for r in s.rows] == [(5, 4), (5, 4), (5, 4)]


def test_lstm_summary_shows_the_state_shapes():
    m = build_model({"model": "lstm", "classes": 10, "hidden": 8, "bidirectional": False})
    rows = {r[0]: r for r in nn.summary(m, (3, 784)).rows}
    assert rows["lstm"][2] == ((3, 28, 8), ((1, 3, 8), (1, 3, 8)))
    assert rows["lstm"][3] == 4 * 8 * (28 + 8 + 2) and rows["fc"][2] == (3, 10)


def test_training_progress_bar_is_tqdm_auto():
    tqdm_auto = pytest.importorskip("tqdm.auto")
    from retrograd.train import _progress
    bar = _progress(range(3), 3, "epoch 1/1", True)
    assert isinstance(bar, tqdm_auto.tqdm) and list(bar) == [0, 1, 2]
    bar.close()
