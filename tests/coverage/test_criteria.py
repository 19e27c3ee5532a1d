"""Coverage criteria against hand-computed values, and the probes' layer choice and summaries."""

from __future__ import annotations

import numpy as np
import pytest

from roadworthy.coverage import (
    Coverage,
    Layout,
    Observation,
    Profile,
    make_criterion,
    make_probe,
    measure,
    profile,
)
from roadworthy.coverage.criteria import PredictionCoverage
from roadworthy.errors import InvalidInputError, UnsupportedModelError

LAYOUT = Layout(("a", "b"), (2, 1))  # three neurons: a0, a1 in layer a; b0 in layer b
PROFILE = Profile(
    LAYOUT,
    low=np.array([0.0, 0.0, 1.0]),
    high=np.array([4.0, 2.0, 1.0]),  # b0 has an empty range
    mean=np.zeros(3),
    std=np.ones(3),
    n_samples=10,
)


def obs(values, layer_min=None, layer_max=None) -> Observation:
    v = np.asarray(values, dtype=np.float32)
    n = len(v)
    lo = np.zeros((n, 2), np.float32) if layer_min is None else np.asarray(layer_min, np.float32)
    hi = np.ones((n, 2), np.float32) if layer_max is None else np.asarray(layer_max, np.float32)
    return Observation(np.full((n, 3), 1 / 3, np.float32), v, lo, hi)


def test_nc_scales_each_layer_of_each_input() -> None:
    c = make_criterion("nc", threshold=0.75).fit(LAYOUT)
    # input 0: layer a spans [0, 4]: a0 = 3.5 -> 0.875 covered, a1 = 1 -> 0.25 not; layer b constant -> 0
    # input 1: layer a spans [1, 2]: a1 = 2 -> 1.0 covered
    o = obs([[3.5, 1.0, 5.0], [1.0, 2.0, 0.0]], layer_min=[[0, 5], [1, 0]], layer_max=[[4, 5], [2, 0]])
    cells = c.cells(o)
    assert cells.tolist() == [[0, -1, -1], [-1, 1, -1]]
    cov = Coverage(c)
    assert cov.update(cells).tolist() == [True, True]
    assert cov.summary().metric == pytest.approx(2 / 3)
    assert cov.summary().cells_total == 3


def test_kmnc_sections_and_out_of_range_values() -> None:
    c = make_criterion("kmnc", k=4).fit(LAYOUT, PROFILE)
    # a0 in [0, 4], width 1: 1.5 -> section 1, 4.0 -> 3 (the top edge belongs to the last section),
    # 5.0 and -1 -> none; a1 in [0, 2], width 0.5: 0.2 -> 0, 1.99 -> 3; b0 has an empty range -> none
    cells = c.cells(obs([[1.5, 0.2, 1.0], [4.0, 1.99, 1.0], [5.0, -1.0, 1.0]]))
    assert cells.tolist() == [[1, 4, -1], [3, 7, -1], [-1, -1, -1]]
    cov = Coverage(c)
    cov.update(cells)
    assert cov.summary().cells_covered == 4
    assert cov.summary().metric == pytest.approx(4 / 12)


def test_kmnc_non_finite_values_touch_no_section() -> None:
    """NaN and infinite values, on live neurons and on the empty-range neuron, touch nothing; the
    bounds themselves touch the first and the last section."""
    c = make_criterion("kmnc", k=4).fit(LAYOUT, PROFILE)
    cells = c.cells(obs([[np.nan, np.inf, -np.inf], [np.inf, -np.inf, np.nan], [0.0, 2.0, np.inf]]))
    assert cells.tolist() == [[-1, -1, -1], [-1, -1, -1], [0, 7, -1]]


def test_nbc_and_snac_bucket_the_overshoot() -> None:
    nbc = make_criterion("nbc", k=10).fit(LAYOUT, PROFILE)
    # a0: unit (4 - 0) / 1000 = 0.004; 4.01 overshoots by 0.01 -> upper bucket 2; 100 -> last bucket 9
    # a1: unit 0.002; -0.003 undershoots by 0.003 -> lower bucket 1
    # b0: empty range -> unit 0.05; 1.12 -> upper bucket 2
    cells = nbc.cells(obs([[4.01, -0.003, 1.12], [100.0, 1.0, 1.0]]))
    n_side = 3 * 10
    assert cells.tolist() == [[n_side + 0 * 10 + 2, 1 * 10 + 1, n_side + 2 * 10 + 2], [n_side + 9, -1, -1]]
    cov = Coverage(nbc)
    cov.update(cells)
    # corner neurons: a0 upper, a1 lower, b0 upper -> 3 of 2 * 3
    assert cov.summary().metric == pytest.approx(3 / 6)

    snac = make_criterion("snac", k=10).fit(LAYOUT, PROFILE)
    cells = snac.cells(obs([[4.01, -0.003, 1.12]]))
    assert cells.tolist() == [[2, -1, 22]]
    cov = Coverage(snac)
    cov.update(cells)
    assert cov.summary().metric == pytest.approx(2 / 3)
    assert cov.summary().cells_total == 30


def test_tknc_ranks_neurons_within_each_layer() -> None:
    c = make_criterion("tknc", k=1).fit(LAYOUT)
    cells = c.cells(obs([[0.1, 0.9, 7.0], [0.8, 0.2, 7.0]]))
    # layer a: top-1 is a1 then a0 (cells neuron * k + rank); layer b starts after a's 2 cells
    assert cells.tolist() == [[1, 2], [0, 2]]
    cov = Coverage(c)
    cov.update(cells)
    assert cov.summary().metric == pytest.approx(1.0)
    two = make_criterion("tknc", k=2).fit(LAYOUT)
    # k is capped at the layer size: layer a has 2 x 2 cells, layer b 1 x 1
    assert two.n_cells == 5
    assert two.cells(obs([[0.1, 0.9, 7.0]])).tolist() == [[2, 1, 4]]


def test_update_counts_inputs_in_batch_order() -> None:
    c = make_criterion("kmnc", k=4).fit(LAYOUT, PROFILE)
    cov = Coverage(c)
    # inputs 0 and 1 touch the same cells: only the first is new; input 2 adds a section
    new = cov.update(c.cells(obs([[1.5, 0.2, 1.0], [1.5, 0.2, 1.0], [2.5, 0.2, 1.0]])))
    assert new.tolist() == [True, False, True]
    assert cov.update(c.cells(obs([[1.5, 0.2, 1.0]]))).tolist() == [False]
    assert np.unpackbits(cov.packed())[: c.n_cells].sum() == 3


def test_top_k_matches_a_stable_full_sort_with_ties_and_nan() -> None:
    from roadworthy.coverage.criteria import top_k

    rng = np.random.default_rng(0)
    for width in (5, 16, 48, 64, 130):
        v = rng.normal(size=(200, width)).astype(np.float32)
        cases = [v, np.maximum(v, 0), np.round(v, 1), np.zeros_like(v)]
        with_nan = v.copy()
        with_nan[::7, :: max(1, width // 3)] = np.nan
        cases.append(with_nan)
        for c in cases:
            for k in (1, 10, width):
                want = np.argsort(-c, axis=1, kind="stable")[:, :k]
                np.testing.assert_array_equal(top_k(c, min(k, width)), want)


def test_mark_sets_the_same_bits_as_update() -> None:
    c = make_criterion("nbc", k=3).fit(LAYOUT, PROFILE)
    values = obs([[-1.0, 0.2, 1.0], [5.0, 2.01, 1.2], [5.0, 0.5, 0.9]])
    a, b = Coverage(c), Coverage(c)
    a.update(c.cells(values))
    b.mark(c.cells(values))
    assert a.bits.any() and np.array_equal(a.bits, b.bits)


def test_prediction_criterion_cells_per_root_seed() -> None:
    c = PredictionCoverage(n_buckets=10).fit(Layout((), ()), n_classes=3, n_roots=2)
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.85, 0.05], [0.7, 0.2, 0.1]], np.float32)
    o = Observation(probs, np.zeros((3, 0), np.float32), np.zeros((3, 0)), np.zeros((3, 0)))
    cells = c.cells(o, roots=np.array([0, 0, 1]))
    assert cells[:, 0].tolist() == [0 * 30 + 0 * 10 + 7, 0 * 30 + 1 * 10 + 8, 1 * 30 + 0 * 10 + 7]
    cov = Coverage(c)
    cov.update(cells)
    assert cov.summary().metric == pytest.approx((2 + 1) / 2)  # classes reached per seed


def test_criteria_reject_bad_parameters_and_missing_profile() -> None:
    with pytest.raises(InvalidInputError, match="threshold"):
        make_criterion("nc", threshold=1.5)
    with pytest.raises(InvalidInputError, match="k"):
        make_criterion("kmnc", k=0)
    with pytest.raises(InvalidInputError, match="unknown criterion"):
        make_criterion("mcdc")
    with pytest.raises(InvalidInputError, match="profile"):
        make_criterion("kmnc").fit(LAYOUT, None)
    with pytest.raises(InvalidInputError, match="black box"):
        make_criterion("nc").fit(Layout((), ()))


# -- probes on real (tiny) torch modules -----------------------------------------------------------------


def _tiny():
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(3 * 4 * 4, 5),
        nn.ReLU(),
        nn.Linear(5, 4),
    ).eval()


def test_torch_probe_default_layers_and_summaries() -> None:
    import torch

    net = _tiny()
    x = np.random.default_rng(0).random((6, 1, 8, 8), dtype=np.float32)
    probe = make_probe(net, x[:1])
    # the ReLUs after the conv (through batch norm) and after the hidden linear layer; not the logits
    assert probe.layout.layers == ("2", "6")
    assert probe.layout.sizes == (3, 5)
    o = probe(x)
    with torch.no_grad():
        t = torch.from_numpy(x)
        conv = net[2](net[1](net[0](t)))
        hidden = net[6](net[5](net[4](net[3](conv))))
        logits = net[7](hidden)
    expected = np.concatenate([conv.mean(dim=(2, 3)).numpy(), hidden.numpy()], axis=1)
    np.testing.assert_allclose(o.values, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(o.layer_min[:, 0], conv.flatten(1).min(1).values.numpy(), atol=1e-6)
    np.testing.assert_allclose(o.layer_max[:, 1], hidden.max(1).values.numpy(), atol=1e-6)
    np.testing.assert_allclose(o.probs, torch.softmax(logits, 1).numpy(), atol=1e-6)


def test_torch_probe_summarises_each_layer_when_the_hook_runs() -> None:
    """The summaries are taken in the hook (NumPy over a view of the tensor on CPU): a later in-place
    operation must not change them, and a channels-last output summarises like a contiguous one."""
    import torch
    from torch import nn

    class InPlace(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.relu, self.head = (
                nn.Conv2d(1, 2, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.Linear(2, 3),
            )

        def forward(self, t: torch.Tensor) -> torch.Tensor:
            h = self.relu(self.conv(t))
            h.mul_(-1.0).add_(5.0)  # overwrites the monitored tensor after its hook ran
            return self.head(h.mean(dim=(2, 3)))

    torch.manual_seed(0)
    x = np.random.default_rng(3).random((4, 1, 6, 6), dtype=np.float32)
    for memory_format in (torch.contiguous_format, torch.channels_last):
        net = InPlace().eval().to(memory_format=memory_format)
        probe = make_probe(net, x[:1])
        assert probe.layout.layers == ("relu",)
        t = torch.from_numpy(x)
        with torch.no_grad():
            relu = torch.relu(net.conv(t))
        o = probe(x)
        assert o.values.dtype == np.float32
        np.testing.assert_allclose(o.values, relu.mean(dim=(2, 3)).numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(o.layer_min[:, 0], relu.flatten(1).min(1).values.numpy(), atol=1e-6)
        np.testing.assert_allclose(o.layer_max[:, 0], relu.flatten(1).max(1).values.numpy(), atol=1e-6)


def test_layer_summaries_in_chunks_for_every_layout(monkeypatch) -> None:
    """The summaries walk the batch in cache-sized chunks over the tensor's memory order: every layout
    (contiguous, channels-last, 3-D, 2-D, a strided view) and a batch spanning several chunks (last one
    partial) give the exact means and extrema."""
    import torch

    from roadworthy.coverage import _layers

    monkeypatch.setattr(_layers, "_CHUNK_BYTES", 3 * 4 * 5 * 7 * 4)  # three samples of the 4-D map
    g = torch.Generator().manual_seed(0)
    base = torch.randn(11, 4, 5, 7, generator=g)
    cases = {
        "contiguous": base,
        "channels_last": base.contiguous(memory_format=torch.channels_last),
        "strided": torch.randn(11, 4, 5, 14, generator=g)[..., ::2],
        "3-d": torch.randn(11, 6, 9, generator=g),
        "2-d": torch.randn(11, 6, generator=g),
    }
    for name, t in cases.items():
        values, lo, hi = _layers._summarise(_layers._memory_view(t), True)
        want = t.flatten(2).mean(2) if t.dim() > 2 else t
        np.testing.assert_allclose(values, want.numpy(), rtol=1e-5, atol=1e-6, err_msg=name)
        np.testing.assert_array_equal(lo, t.flatten(1).min(1).values.numpy(), err_msg=name)
        np.testing.assert_array_equal(hi, t.flatten(1).max(1).values.numpy(), err_msg=name)
        only, none_lo, none_hi = _layers._summarise(_layers._memory_view(t), False)
        np.testing.assert_array_equal(only, values)
        assert none_lo is None and none_hi is None


def test_layer_summaries_with_torch_threads_for_every_layout() -> None:
    """With more than one torch thread the summaries run as torch reductions: the same means (to
    float32 rounding) and the exact extrema for every layout; with the NC gate every maximum is read and
    the minimum only where NC could use it."""
    import torch

    from roadworthy.coverage import _layers

    g = torch.Generator().manual_seed(0)
    base = torch.randn(11, 4, 5, 7, generator=g)
    cases = {
        "contiguous": base,
        "channels_last": base.contiguous(memory_format=torch.channels_last),
        "strided": torch.randn(11, 4, 5, 14, generator=g)[..., ::2],
        "3-d": torch.randn(11, 6, 9, generator=g),
    }
    for name, t in cases.items():
        values, lo, hi = _layers._summarise_torch(t, True)
        np.testing.assert_allclose(values, t.flatten(2).mean(2).numpy(), rtol=1e-5, atol=1e-6, err_msg=name)
        np.testing.assert_array_equal(lo, t.flatten(1).min(1).values.numpy(), err_msg=name)
        np.testing.assert_array_equal(hi, t.flatten(1).max(1).values.numpy(), err_msg=name)
        only, none_lo, none_hi = _layers._summarise_torch(t, False)
        np.testing.assert_array_equal(only, values)
        assert none_lo is None and none_hi is None
    relu = torch.relu(base).contiguous(memory_format=torch.channels_last)
    values, lo, hi = _layers._summarise_torch(relu, True)
    np.testing.assert_array_equal(hi, relu.flatten(1).max(1).values.numpy())
    open_ = np.array([True, False, True, True])
    threshold = float(np.median((values[:, open_] / hi[:, None]).max(axis=1)))  # about half can open a cell
    could = ((values[:, open_] - 0.0) / hi[:, None] > threshold * (1 - 1e-5)).any(axis=1)
    _, gated_lo, gated_hi = _layers._summarise_torch(relu, True, (threshold, open_))
    np.testing.assert_array_equal(gated_hi, hi)
    assert np.isnan(gated_lo).any() and not np.isnan(gated_lo).all()
    np.testing.assert_array_equal(np.isnan(gated_lo), ~could)
    np.testing.assert_array_equal(gated_lo[could], lo[could])
    _, none_open, _ = _layers._summarise_torch(relu, True, (threshold, np.zeros(4, bool)))
    assert np.isnan(none_open).all()


def test_probe_with_two_torch_threads_summarises_as_with_one() -> None:
    """The probe's summaries and NC's cells depend neither on torch's thread count nor on the summary
    path (NumPy or torch's reductions; to float32 rounding of the means; NC gate on, as in a fuzz
    loop): with the gate, torch's path reads every maximum and gates the minimum only."""
    import torch

    from roadworthy.coverage import CoverageBook

    net = _tiny()
    x = np.random.default_rng(2).random((40, 1, 8, 8), dtype=np.float32)
    before = torch.get_num_threads()
    got = {}
    try:
        for threads, path in ((1, "numpy"), (2, "numpy"), (2, "torch")):
            torch.set_num_threads(threads)
            probe = make_probe(net, x[:1])
            probe.summaries = path
            nc = Coverage(make_criterion("nc", threshold=0.5).fit(probe.layout))
            nc.update(nc.criterion.cells(probe(x[:20])))
            full = probe(x[20:])
            probe.gate_extrema(CoverageBook({"nc": nc}, "nc").extrema_gate())
            gated = probe(x[20:])
            probe.close()
            got[threads, path] = (full, gated, nc.bits.copy(), nc.update(nc.criterion.cells(gated)).tolist())
    finally:
        torch.set_num_threads(before)
    f1, _, b1, n1 = got[1, "numpy"]
    for key in ((2, "numpy"), (2, "torch")):
        f2, g2, b2, n2 = got[key]
        np.testing.assert_allclose(f2.values, f1.values, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(f2.layer_min, f1.layer_min)
        np.testing.assert_array_equal(f2.layer_max, f1.layer_max)
        read = ~np.isnan(g2.layer_min)
        np.testing.assert_array_equal(g2.layer_min[read], f1.layer_min[read])
        np.testing.assert_array_equal(b1, b2)
        assert n1 == n2, key
    np.testing.assert_array_equal(got[2, "torch"][1].layer_max, f1.layer_max)  # every maximum read


def test_probe_summary_path_can_be_chosen() -> None:
    """``TorchProbe.summaries`` picks NumPy (the default) or torch's reductions whatever the thread
    count: the same summaries either way (means to float32 rounding, extrema exact)."""
    net = _tiny()
    x = np.random.default_rng(5).random((9, 1, 8, 8), dtype=np.float32)
    probe = make_probe(net, x[:1])
    got = {}
    assert probe.summaries == "numpy"
    for path in ("numpy", "torch"):
        probe.summaries = path
        got[path] = probe(x)
    probe.close()
    for path in ("torch",):
        np.testing.assert_allclose(got[path].values, got["numpy"].values, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(got[path].layer_min, got["numpy"].layer_min)
        np.testing.assert_array_equal(got[path].layer_max, got["numpy"].layer_max)


def test_probe_switched_off_summarises_nothing() -> None:
    net = _tiny()
    x = np.random.default_rng(0).random((3, 1, 8, 8), dtype=np.float32)
    probe = make_probe(net, x[:1])
    probe.active = False
    with pytest.raises(InvalidInputError, match="produced no tensor"):
        probe(x)
    assert probe.reduce_seconds == 0.0
    probe.active = True
    assert probe(x).values.shape == (3, 8)


def test_torch_probe_layers_by_name_and_repeated_calls() -> None:
    import torch
    from torch import nn

    net = _tiny()
    x = np.random.default_rng(1).random((2, 1, 8, 8), dtype=np.float32)
    probe = make_probe(net, x[:1], layers=["0", "5"])
    assert probe.layout.layers == ("0", "5") and probe.layout.sizes == (3, 5)
    with pytest.raises(InvalidInputError, match="'nope' is not a module"):
        make_probe(net, x[:1], layers=["nope"])

    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.out = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2)
            self.relu = nn.ReLU()

        def forward(self, t: torch.Tensor) -> torch.Tensor:
            return self.out(self.relu(self.b(self.relu(self.a(t.flatten(1))))))

    shared = Shared().eval()
    xs = np.random.default_rng(2).random((3, 1, 2, 2), dtype=np.float32)
    probe = make_probe(shared, xs[:1])
    assert probe.layout.layers == ("relu", "relu#2")
    with torch.no_grad():
        t = torch.from_numpy(xs).flatten(1)
        first = torch.relu(shared.a(t))
        second = torch.relu(shared.b(first))
    np.testing.assert_allclose(probe(xs).values, torch.cat([first, second], 1).numpy(), atol=1e-6)

    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.out = nn.Linear(4, 3), nn.Linear(3, 2)

        def forward(self, t: torch.Tensor) -> torch.Tensor:
            return self.out(torch.relu(self.a(t.flatten(1))))

    # activations applied functionally: the linear layers themselves are monitored
    assert make_probe(Functional().eval(), xs[:1]).layout.layers == ("a", "out")


def test_profile_streams_exact_statistics() -> None:
    net = _tiny()
    x = np.random.default_rng(3).random((50, 1, 8, 8), dtype=np.float32)
    probe = make_probe(net, x[:1])
    prof = profile(probe, x, batch_size=7)
    v = probe(x).values.astype(np.float64)
    np.testing.assert_allclose(prof.low, v.min(0), atol=1e-6)
    np.testing.assert_allclose(prof.high, v.max(0), atol=1e-6)
    np.testing.assert_allclose(prof.mean, v.mean(0), atol=1e-5)
    np.testing.assert_allclose(prof.std, v.std(0), rtol=1e-4, atol=1e-6)
    assert prof.n_samples == 50 and prof.source == "training"

    summary = measure(probe, x, profile_data=prof)
    assert set(summary) == {"nc", "kmnc", "nbc", "snac", "tknc"}
    # the profiling data never goes beyond its own bounds
    assert summary["nbc"].metric == 0.0 and summary["snac"].metric == 0.0
    assert 0.0 < summary["kmnc"].metric <= 1.0


def test_black_box_models_get_a_prediction_probe() -> None:
    from roadworthy.models.function import FunctionModel

    model = FunctionModel(lambda x: x.reshape(len(x), -1)[:, :3], input_shape=(1, 2, 2))
    x = np.random.default_rng(4).random((2, 1, 2, 2), dtype=np.float32)
    probe = make_probe(model, x[:1])
    assert not probe.white_box
    assert probe(x).probs.shape == (2, 3)
    with pytest.raises(UnsupportedModelError, match="black box"):
        make_probe(model, x[:1], layers=["relu"])


def test_onnx_probe_reads_named_tensors(tmp_path) -> None:
    import warnings

    import onnx
    import torch

    from roadworthy.models.onnx import OnnxModel

    net = _tiny()
    path = tmp_path / "tiny.onnx"
    t = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (t,),
            str(path),
            dynamo=False,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "n"}, "y": {0: "n"}},
        )
    proto = onnx.load(str(path))
    relus = [n.output[0] for n in proto.graph.node if n.op_type == "Relu"]
    model = OnnxModel(path.read_bytes(), input_shape=(1, 8, 8))
    probe = make_probe(model, t.numpy()[:1], layers=relus)
    assert probe.layout.sizes == (3, 5)
    x = np.random.default_rng(5).random((3, 1, 8, 8), dtype=np.float32)
    np.testing.assert_allclose(probe(x).values, make_probe(net, x[:1])(x).values, rtol=1e-4, atol=1e-5)
    assert not make_probe(model, x[:1]).white_box  # without tensor names: a black box
    with pytest.raises(InvalidInputError, match="not produced"):
        make_probe(model, x[:1], layers=["missing"])


def test_torchscript_models_fall_back_to_prediction_feedback() -> None:
    import warnings

    import torch

    from roadworthy.models.torch import TorchModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        script = torch.jit.script(_tiny())
    scripted = TorchModel(script, input_shape=(1, 8, 8), format="torchscript")
    x = np.random.default_rng(6).random((2, 1, 8, 8), dtype=np.float32)
    assert not make_probe(scripted, x[:1]).white_box  # TorchScript runs no Python hooks
    with pytest.raises(UnsupportedModelError, match="TorchScript"):
        make_probe(scripted, x[:1], layers=["2"])


def test_coverage_book_marks_in_bulk_what_per_batch_marking_marks() -> None:
    """The measured criteria's bitmaps and the guide's "new" flags do not depend on how the book groups
    batches: the union of touched cells is the same."""
    from roadworthy.coverage import CoverageBook

    rng = np.random.default_rng(0)
    batches = [rng.normal(1.0, 1.5, size=(int(rng.integers(1, 9)), 3)).astype(np.float32) for _ in range(12)]
    names = ("kmnc", "nbc", "snac", "tknc", "nc")

    def fitted() -> dict[str, Coverage]:
        params = {"kmnc": {"k": 4}, "nbc": {"k": 10}, "snac": {"k": 10}, "tknc": {"k": 1}, "nc": {}}
        return {n: Coverage(make_criterion(n, **params[n]).fit(LAYOUT, PROFILE)) for n in names}

    plain = fitted()
    for b in batches:
        for t in plain.values():
            t.update(t.criterion.cells(obs(b, np.full((len(b), 2), -1.0), np.full((len(b), 2), 3.0))))
    for buffer_bytes in (0, 64, 1 << 20):
        book = CoverageBook(fitted(), "kmnc", buffer_bytes=buffer_bytes)
        guide = fitted()["kmnc"]
        for b in batches:
            o = obs(b, np.full((len(b), 2), -1.0), np.full((len(b), 2), 3.0))
            assert book.observe(o).tolist() == guide.update(guide.criterion.cells(o)).tolist()
        summaries = book.summaries()
        for n in names:
            assert np.array_equal(book.trackers[n].bits, plain[n].bits), (n, buffer_bytes)
            assert summaries[n] == plain[n].summary()
    assert any(t.bits.any() for t in plain.values() if t.criterion.name != "kmnc")
    with pytest.raises(InvalidInputError, match="guide"):
        CoverageBook(fitted(), "deepgini")


def test_nc_skips_covered_neurons_but_marks_the_same_cells() -> None:
    c = make_criterion("nc", threshold=0.5).fit(LAYOUT)
    o = obs([[3.5, 1.0, 5.0], [1.0, 2.0, 0.0]], layer_min=[[0, 5], [1, 0]], layer_max=[[4, 5], [2, 0]])
    full = c.cells(o)
    for covered in ([], [0], [0, 1], [0, 1, 2]):
        bits = np.zeros(3, bool)
        bits[covered] = True
        got = c.open_cells(o, bits)
        want = {int(v) for v in full.ravel() if v >= 0 and not bits[v]}
        assert {int(v) for v in got.ravel() if v >= 0} == want
        assert not set(covered) & {int(v) for v in got.ravel()}


@pytest.mark.parametrize("side", [16, 32])
def test_nc_gate_skips_only_minima_nc_cannot_use(side: int) -> None:
    """With NC's bitmap as the gate, a ReLU layer's extrema are read only for the samples that could
    open an uncovered NC cell; NC marks exactly the cells it marks with every extremum read, and
    ``update`` flags the same inputs as new. A layer that is not a ReLU's output is never gated. Maps of
    8x16x16 values are bounded from blocks of 128 values, 8x32x32 from blocks of 512."""
    import torch
    from torch import nn

    from roadworthy.coverage import CoverageBook, _layers

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.GELU(),
        nn.Flatten(),
        nn.Linear(8 * side * side, 10),
    ).eval()
    assert _layers._sampled_blocks(np.zeros((1, 8 * side * side), np.float32)).shape[2] == side * side // 2
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(200, 1, side, side)).astype(np.float32)
    probe = make_probe(net, x[:1])
    assert probe.layout.layers == ("1", "3")
    nc = Coverage(make_criterion("nc", threshold=0.6).fit(probe.layout))
    book = CoverageBook({"nc": nc}, "nc")
    for part in (x[:40], x[40:80]):  # cover the easy cells first
        nc.update(nc.criterion.cells(probe(part)))
    full = probe(x[80:])
    assert probe.gate_extrema(book.extrema_gate())
    gated = probe(x[80:])
    probe.gate_extrema(None)
    again = probe(x[80:])
    probe.close()
    skipped = np.isnan(gated.layer_min[:, 0])
    assert skipped.any()  # the ReLU layer's minimum was skipped for some samples
    assert not np.isnan(gated.layer_min[:, 1]).any()  # the GELU layer never
    np.testing.assert_array_equal(gated.layer_min[~skipped], full.layer_min[~skipped])
    np.testing.assert_array_equal(again.layer_min, full.layer_min)
    read = ~np.isnan(gated.layer_max[:, 0])
    np.testing.assert_array_equal(gated.layer_max[read], full.layer_max[read])
    plain, fast = Coverage(nc.criterion), Coverage(nc.criterion)
    plain.bits[:], fast.bits[:] = nc.bits, nc.bits
    assert plain.update(nc.criterion.cells(full)).tolist() == fast.update(nc.criterion.cells(gated)).tolist()
    np.testing.assert_array_equal(plain.bits, fast.bits)
    assert plain.bits.sum() >= nc.bits.sum()


def test_nc_gate_bound_blocks_by_row_width() -> None:
    """The gate's first bound reads every 8th block of a row: blocks of 512 values where the row holds
    16 or more, else of 128, and no bound (both extrema read) for a row shorter than 16 blocks of 128.
    Any such bound is at most the row's maximum."""
    from roadworthy.coverage import _layers

    rng = np.random.default_rng(1)
    for width, expected in ((100_000, (25, 512)), (8192, (2, 512)), (8191, (8, 128)), (2048, (2, 128))):
        flat = rng.random((3, width), dtype=np.float32)
        view = _layers._sampled_blocks(flat)
        assert view.shape[1:] == expected, width
        assert np.shares_memory(view, flat)  # a view: nothing copied
        np.testing.assert_array_equal(view[:, 1], flat[:, 8 * expected[1] : 9 * expected[1]])
        assert (view.max(axis=(1, 2)) <= flat.max(axis=1)).all()
    assert _layers._sampled_blocks(np.zeros((3, 2047), np.float32)) is None


def test_nbc_float32_bounds_decide_as_the_float64_ones() -> None:
    """NBC and SNAC compare float32 values against float32 bounds rounded outwards: the same corner
    cells as comparing in float64, also for values one float32 step around bounds that float32 cannot
    represent."""
    layout = Layout(("a",), (3,))
    low = np.array([0.1, -1e-3, 0.0])
    high = np.array([0.7, 1 / 3, 2.0])
    prof = Profile(layout, low=low, high=high, mean=np.zeros(3), std=np.ones(3), n_samples=5)
    rows = []
    for bound in (low, high):
        b32 = bound.astype(np.float32)
        for step in (-np.inf, np.inf):
            rows.append(np.nextafter(b32, np.float32(step)))
        rows.append(b32)
    v32 = np.array(rows, dtype=np.float32)
    v64 = v32.astype(np.float64)
    probs = np.full((len(v32), 2), 0.5, np.float32)
    lim = np.zeros((len(v32), 1), np.float32)
    for name in ("nbc", "snac"):
        c = make_criterion(name, k=10).fit(layout, prof)
        got = c.cells(Observation(probs, v32, lim, lim))
        want = c.cells(Observation(probs, v64, lim, lim))
        np.testing.assert_array_equal(got, want)
        assert (got >= 0).any()


def test_top_k_sort_keys_order_signed_zeros_and_infinities_as_the_comparison() -> None:
    """The int64 sort keys of float32 rows count -0.0 as 0.0 (a tie, lower column first) and order
    infinities and subnormals as the values compare; float64 rows give the same columns."""
    from roadworthy.coverage.criteria import top_k

    tiny = np.float32(1e-45)  # the smallest subnormal
    row = [0.0, -0.0, np.inf, -np.inf, tiny, -tiny, 1.0, -0.0, 0.0, 3.4e38, -3.4e38]
    rng = np.random.default_rng(1)
    v = np.array([row, row[::-1], *(rng.permutation(row) for _ in range(30))], dtype=np.float32)
    for k in (1, 4, 7, v.shape[1]):
        want = np.argsort(-v, axis=1, kind="stable")[:, :k]
        np.testing.assert_array_equal(top_k(v, k), want)
        np.testing.assert_array_equal(top_k(v.astype(np.float64), k), want)
    assert top_k(v, 3)[0].tolist() == [2, 9, 6]
    assert top_k(np.zeros((2, 0), np.float32), 0).shape == (2, 0)


def test_coverage_book_shares_corner_cases_only_between_equal_bounds() -> None:
    """NBC and SNAC with the same bounds and k find the corner cases once; with another k or other
    bounds each finds its own; every bitmap is the one per-batch marking gives, and the "none" cell
    -1 marks nothing."""
    from roadworthy.coverage import CoverageBook

    rng = np.random.default_rng(4)
    batches = [rng.normal(1.0, 2.5, size=(int(rng.integers(1, 9)), 3)).astype(np.float32) for _ in range(10)]
    other = Profile(
        LAYOUT,
        low=PROFILE.low - 0.5,
        high=PROFILE.high + 0.5,
        mean=PROFILE.mean,
        std=PROFILE.std,
        n_samples=3,
    )
    setups = [
        {"nbc": (10, PROFILE), "snac": (10, PROFILE)},
        {"nbc": (10, PROFILE), "snac": (3, PROFILE)},
        {"nbc": (10, PROFILE), "snac": (10, other)},
        {"snac": (10, PROFILE)},
    ]
    for setup in setups:

        def fitted(setup=setup) -> dict[str, Coverage]:
            out = {"kmnc": Coverage(make_criterion("kmnc", k=4).fit(LAYOUT, PROFILE))}
            for name, (k, prof) in setup.items():
                out[name] = Coverage(make_criterion(name, k=k).fit(LAYOUT, prof))
            return out

        plain, book = fitted(), CoverageBook(fitted(), "kmnc", buffer_bytes=1 << 20)
        for b in batches:
            o = obs(b)
            for t in plain.values():
                t.mark(t.criterion.cells(o))
            book.observe(o)
        book.flush()
        for name in setup:
            assert plain[name].bits.any(), (setup, name)
            np.testing.assert_array_equal(book.trackers[name].bits, plain[name].bits, err_msg=str(setup))
    c = Coverage(make_criterion("nc").fit(LAYOUT))
    c.mark(np.array([[-1, -1], [-1, -1]]))
    assert not c.bits.any() and c.update(np.array([[-1], [-1]])).tolist() == [False, False]
    with pytest.raises(AttributeError):
        c.bits = np.ones(3, bool)
