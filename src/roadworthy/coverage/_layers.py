"""Probes: run a model once on a batch and return its scores plus a summary of chosen layers.

A coverage criterion does not look at raw feature maps: it needs, per sample and per monitored layer,

* one value per *neuron*: a dense unit's output, or for a convolutional channel the mean over its
  spatial positions (DeepHunter, algorithms-spec A.2);
* the minimum and maximum of the whole layer tensor of that sample (NC scales each layer of each input
  to [0, 1] before thresholding, spec A.3).

Probes reduce feature maps to that summary inside the forward pass (a forward hook per layer), so a
batch costs one forward pass whatever the number of layers and criteria, and nothing bigger than
``(N, channels)`` leaves the framework.

Three probes exist:

:class:`TorchProbe`
    a white-box PyTorch model (a roadworthy ``TorchModel`` or a plain ``nn.Module``); layers are chosen
    by module name, by default every ReLU-like activation that follows a convolution or linear layer.
:class:`OnnxProbe`
    an ONNX model with named intermediate tensors added as extra graph outputs.
:class:`PredictionProbe`
    any model (black box): scores only, no layers; fuzzing then uses prediction-based feedback.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from roadworthy.errors import InvalidInputError, UnsupportedModelError
from roadworthy.models.base import to_probs

# Activation modules counted as "ReLU-like" when they follow a convolution or a linear layer.
RELU_LIKE = (
    "ReLU",
    "ReLU6",
    "LeakyReLU",
    "PReLU",
    "RReLU",
    "ELU",
    "SELU",
    "CELU",
    "GELU",
    "SiLU",
    "Mish",
    "Hardswish",
    "Softplus",
)
# Modules that may sit between a convolution and its activation without breaking the pattern.
_TRANSPARENT = (
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "GroupNorm",
    "LayerNorm",
    "InstanceNorm1d",
    "InstanceNorm2d",
    "InstanceNorm3d",
    "Identity",
    "Dropout",
    "Dropout1d",
    "Dropout2d",
    "Dropout3d",
)
# Layer summaries reduce the batch in chunks of about this many bytes (fits a core's L2 cache).
_CHUNK_BYTES = 1 << 20
# The NC gate's first test bounds a sample's layer maximum from every 8th block of values: blocks of the
# largest of these sizes that leaves a row 16 or more blocks (longer runs read faster: 5-6% less summary
# time on the demo's CNN than 128 throughout, benchmarks/README.md); a shorter row reads both extrema.
_SAMPLE_BLOCKS = (512, 128)
# Relative margin of the NC gate's tests (see :func:`_gated_extrema`): far above the float32 rounding of
# NC's scaling (about 3 units of 2**-24), so a sample the test skips is certain to stay at or under NC's
# threshold.
_GATE_MARGIN = 1e-5
_WEIGHTED = ("Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d", "Linear")


@dataclass
class Observation:
    """What one probe call returns for a batch of ``N`` inputs.

    Attributes
    ----------
    probs
        Class probabilities ``(N, K)``.
    values
        Neuron values ``(N, n_neurons)``, the monitored layers concatenated in :attr:`Probe.layers`
        order (a convolutional channel contributes its spatial mean). ``(N, 0)`` for black-box probes.
    layer_min, layer_max
        ``(N, n_layers)``: the minimum and maximum of each monitored layer's whole output tensor.
        While a probe's NC gate is set (:meth:`Probe.gate_extrema`, during a fuzz loop), a non-negative
        layer's minimum (and maximum) is NaN for the samples that cannot open an uncovered NC cell of
        that layer (NC then gives such a sample no cell in that layer, which changes no bitmap).
    """

    probs: np.ndarray
    values: np.ndarray
    layer_min: np.ndarray
    layer_max: np.ndarray
    _values64: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def predictions(self) -> np.ndarray:
        """Top-1 class per sample."""
        return self.probs.argmax(axis=1)

    def values64(self) -> np.ndarray:
        """:attr:`values` as float64, converted once and shared by every criterion that reads them."""
        if self._values64 is None:
            self._values64 = self.values.astype(np.float64)
        return self._values64


@dataclass
class Layout:
    """Which neurons the concatenated :attr:`Observation.values` hold: layer names and sizes."""

    layers: tuple[str, ...]
    sizes: tuple[int, ...]

    @property
    def n_neurons(self) -> int:
        return int(sum(self.sizes))

    @property
    def offsets(self) -> np.ndarray:
        """Start column of each layer, plus the total at the end."""
        return np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)

    @property
    def layer_of_neuron(self) -> np.ndarray:
        """Layer index of every neuron column."""
        return np.repeat(np.arange(len(self.sizes)), self.sizes)


@dataclass
class ExtremaGate:
    """What a probe needs to skip layer extrema that NC cannot use (see :meth:`Probe.gate_extrema`).

    Attributes
    ----------
    threshold
        NC's threshold ``t``.
    covered
        Returns NC's current bitmap, ``(n_neurons,)`` bool, True where the neuron is covered (read at
        every batch: cells only ever get covered, so a bitmap read earlier in a batch is never ahead).
    """

    threshold: float
    covered: Any


class Probe:
    """Base of the probes: a ``__call__(x) -> Observation`` plus timing of the reduction work.

    ``reduce_seconds`` accumulates the time spent summarising layers (hooks and conversions), so a
    caller can split a probe call into forward pass and coverage bookkeeping.
    """

    def __init__(self) -> None:
        self.layout = Layout((), ())
        self.reduce_seconds = 0.0
        self.gate: ExtremaGate | None = None

    def gate_extrema(self, gate: ExtremaGate | None) -> bool:
        """Let the probe skip the per-sample layer extrema NC cannot use (``None`` removes the gate).

        NC needs each layer's per-sample minimum ``lo`` and maximum ``hi`` (two more reads of every
        monitored tensor) only to scale it. For a layer known to be non-negative (the output of a
        ``ReLU`` or ``ReLU6`` module) ``lo >= 0``, and then NC's scaled value of a neuron,
        ``(v - lo) / (hi - lo)``, is at most ``v / hi``, and at most ``v / m`` for any ``m <= hi`` (for
        ``0 <= lo <= v <= hi``). A sample none of whose *uncovered* neurons in the layer has
        ``v > t * m`` cannot open an NC cell there: with ``m`` the maximum over an eighth of the layer's
        memory, most samples of a fuzz loop read neither extremum once NC's easy cells are covered, and
        those that pass read their maximum, then their minimum only if still needed
        (:func:`_gated_extrema`). A skipped extremum is NaN, which NC scores as "no cell in this layer":
        it misses only cells already covered, so every bitmap, and which input was first to a cell, stay
        exactly the same.

        Returns whether this probe takes the gate (:class:`TorchProbe` does; it applies it to layers
        reduced on the CPU, other devices read every extremum).
        """
        self.gate = None
        return False

    @property
    def white_box(self) -> bool:
        """True when the probe reports neuron values (coverage criteria are available)."""
        return self.layout.n_neurons > 0

    def __call__(self, x: np.ndarray) -> Observation:  # pragma: no cover - abstract
        raise NotImplementedError


def _summary(n: int, n_layers: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (
        np.zeros((n, 0), dtype=np.float32),
        np.zeros((n, n_layers), dtype=np.float32),
        np.zeros((n, n_layers), dtype=np.float32),
    )


class PredictionProbe(Probe):
    """Scores only: the probe for black-box models (scikit-learn, callables, ONNX without tensor names).

    Parameters
    ----------
    model
        Any roadworthy model (``predict`` and ``output``).
    """

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def __call__(self, x: np.ndarray) -> Observation:
        scores = np.asarray(self.model.predict(np.asarray(x, dtype=np.float32)))
        probs = to_probs(scores, getattr(self.model, "output", "logits"))
        return Observation(probs, *_summary(len(x), 0))


# -- PyTorch --------------------------------------------------------------------------------------------


def _torch_parts(model: Any) -> tuple[Any, Any, str]:
    """``(nn.Module to hook, callable mapping a pixel-space tensor to scores, output kind)``."""
    import torch

    if isinstance(model, torch.nn.Module):
        return model.eval(), model, "logits"
    module = getattr(model, "module", None)
    forward = getattr(model, "forward_torch", None)
    if getattr(model, "white_box", False) and callable(forward) and isinstance(module, torch.nn.Module):
        if isinstance(module, torch.jit.ScriptModule):
            raise UnsupportedModelError(
                "coverage: TorchScript modules run no Python hooks, so their layers cannot be monitored; "
                "load the model as an nn.Module, or fuzz it as a black box (prediction feedback)"
            )
        # forward_torch returns logits (log-probabilities for probability models): softmax recovers p
        return module, forward, "logits"
    raise UnsupportedModelError(
        f"coverage: a white-box PyTorch model (nn.Module or TorchModel) is needed to monitor layers; "
        f"got {type(model).__name__}"
    )


def _first_tensor(out: Any) -> Any:
    import torch

    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        for item in out:
            if isinstance(item, torch.Tensor):
                return item
    return None


def trace_calls(module: Any, forward: Any, example: np.ndarray) -> list[tuple[str, str]]:
    """Leaf-module calls of one forward pass, in execution order: ``(call name, class name)``.

    A module called more than once per pass (a shared ``self.relu`` in a residual block) appears once
    per call: the first call under its name, the k-th as ``name#k``.
    """
    import torch

    calls: list[tuple[str, str]] = []
    counts: dict[str, int] = {}
    handles = []

    def make_hook(name: str) -> Any:
        def hook(mod: Any, _inputs: Any, _output: Any) -> None:
            counts[name] = counts.get(name, 0) + 1
            key = name if counts[name] == 1 else f"{name}#{counts[name]}"
            calls.append((key, type(mod).__name__))

        return hook

    for name, sub in module.named_modules():
        if name and not any(True for _ in sub.children()):
            handles.append(sub.register_forward_hook(make_hook(name)))
    try:
        with torch.inference_mode():
            forward(torch.from_numpy(np.ascontiguousarray(example[:1], dtype=np.float32)))
    finally:
        for h in handles:
            h.remove()
    return calls


def default_layers(calls: Sequence[tuple[str, str]]) -> list[str]:
    """Every ReLU-like activation call whose previous non-transparent call is a convolution or linear
    layer; when there is none (activations applied functionally), the convolution and linear calls
    themselves (pre-activation values, the spec's PyTorch fallback, algorithms-spec A.2 [D])."""
    chosen = []
    previous = None
    for key, cls in calls:
        if cls in RELU_LIKE and previous in _WEIGHTED:
            chosen.append(key)
        if cls not in _TRANSPARENT:
            previous = cls
    if not chosen:
        chosen = [key for key, cls in calls if cls in _WEIGHTED]
    return chosen


def _resolve(requested: Sequence[str], calls: Sequence[tuple[str, str]]) -> list[str]:
    """Call keys for user-given names: ``name#k`` picks one call, a plain module name every call."""
    keys = [k for k, _ in calls]
    chosen: list[str] = []
    for name in requested:
        hits = [k for k in keys if k == name or k.split("#")[0] == name]
        if not hits:
            sample = ", ".join(keys[:12]) + (", ..." if len(keys) > 12 else "")
            raise InvalidInputError(
                f"coverage: layer '{name}' is not a module called in the forward pass. Found: {sample}"
            )
        chosen.extend(k for k in hits if k not in chosen)
    return chosen


class TorchProbe(Probe):
    """Monitor chosen layers of a PyTorch model with forward hooks, in one forward pass per batch.

    Parameters
    ----------
    model
        A roadworthy ``TorchModel`` (its ``forward_torch`` applies the model's normalisation) or a plain
        ``nn.Module`` taking pixel-space input and returning logits.
    example
        One or more inputs (float32, pixel units) used to trace the forward pass once.
    layers
        Module names to monitor (``name`` for every call of a module, ``name#k`` for its k-th call).
        Default: every ReLU-like activation following a convolution or linear layer
        (:func:`default_layers`).
    extrema
        Whether to record each layer's per-sample minimum and maximum (only NC needs them).
    """

    def __init__(
        self,
        model: Any,
        example: np.ndarray,
        layers: Sequence[str] | None = None,
        extrema: bool = True,
    ) -> None:
        super().__init__()
        import torch

        self._torch = torch
        self.module, self._forward, self._kind = _torch_parts(model)
        calls = trace_calls(self.module, self._forward, example)
        keys = default_layers(calls) if layers is None else _resolve(layers, calls)
        if not keys:
            # e.g. a torch.export graph, whose operations are not modules: nothing to hook
            raise UnsupportedModelError(
                "coverage: no convolution, linear or activation module runs in the forward pass; "
                "pass layers=[...] naming modules, or fuzz the model as a black box"
            )
        self.extrema = extrema
        self.gate = None
        # call keys whose output is non-negative by construction (minimum >= 0): the NC gate applies
        modules = dict(self.module.named_modules())
        self._non_negative = {
            k for k in keys if type(modules[k.split("#")[0]]) in (torch.nn.ReLU, torch.nn.ReLU6)
        }
        self._open: dict[str, Any] = {}
        #: set to False to run the module without summarising layers (e.g. to time the bare forward pass)
        self.active = True
        #: how CPU layers of 3+ dimensions are summarised: "numpy" (default: on the calling thread,
        #: chunked, see :func:`_summarise`) or "torch" (torch's reductions on torch's threads, see
        #: :func:`_summarise_torch`; ``benchmarks/bench_fuzz.py`` compares the two)
        self.summaries = "numpy"
        self._keys = set(keys)
        self._buffer: dict[str, tuple[Any, Any, Any]] = {}
        self._counts: dict[str, int] = {}
        self._handles: list[Any] = []
        for base in dict.fromkeys(k.split("#")[0] for k in keys):
            self._handles.append(modules[base].register_forward_hook(self._hook(base)))
        # the sizes come from a real pass, so they match what the hooks produce
        self.layout = Layout(tuple(keys), ())
        obs = self(example[:1])
        self.layout = Layout(tuple(keys), tuple(self._sizes))
        self.reduce_seconds = 0.0
        del obs

    def _hook(self, base: str) -> Any:
        def hook(_mod: Any, _inputs: Any, output: Any) -> None:
            if not self.active:
                return
            t0 = time.perf_counter()
            self._counts[base] = self._counts.get(base, 0) + 1
            k = self._counts[base]
            key = base if k == 1 else f"{base}#{k}"
            if key in self._keys:
                out = _first_tensor(output)
                if out is not None:
                    self._buffer[key] = self._reduce(out.detach(), self._open.get(key))
            self.reduce_seconds += time.perf_counter() - t0

        return hook

    def gate_extrema(self, gate: ExtremaGate | None) -> bool:
        self.gate = gate
        return gate is not None

    def _reduce(self, out: Any, gate: tuple[float, np.ndarray] | None = None) -> tuple[Any, Any, Any]:
        """One layer's summary: neuron values ``(N, units)`` and, with ``extrema``, its per-sample
        minimum and maximum ``(N,)``.

        On the CPU the reductions run in NumPy over a zero-copy view of the tensor *in its memory
        order* (see :func:`_summarise`); other devices reduce in torch and copy only the summary.
        Computed right in the hook, so a later in-place operation on the tensor cannot change them.
        ``gate`` (NC's threshold and the layer's uncovered neurons) lets the extrema be skipped where
        NC cannot use them (:meth:`Probe.gate_extrema`; CPU only).
        """
        torch = self._torch
        n = out.shape[0]
        if out.device.type == "cpu":
            if self.summaries == "torch" and out.dim() > 2:
                return _summarise_torch(out.float(), self.extrema, gate)
            return _summarise(_memory_view(out.float()), self.extrema, gate)
        flat_t = out.reshape(n, -1)
        values_t = out.flatten(2).mean(2) if out.dim() > 2 else flat_t
        values = values_t.float().cpu().numpy()
        if not self.extrema:
            return values, None, None
        lo, hi = torch.aminmax(flat_t, dim=1)
        return values, lo.float().cpu().numpy(), hi.float().cpu().numpy()

    def _open_neurons(self) -> dict[str, tuple[float, np.ndarray]]:
        """Per gated layer: NC's threshold and the layer's uncovered neurons, read once per batch."""
        gate = self.gate
        if gate is None or not self.extrema or not self._non_negative or not self.layout.sizes:
            return {}
        covered = np.asarray(gate.covered())
        offsets = self.layout.offsets
        return {
            key: (float(gate.threshold), ~covered[offsets[j] : offsets[j + 1]])
            for j, key in enumerate(self.layout.layers)
            if key in self._non_negative
        }

    def close(self) -> None:
        """Remove the hooks from the module."""
        for h in getattr(self, "_handles", []):
            h.remove()
        self._handles = []

    def __del__(self) -> None:
        self.close()

    def __call__(self, x: np.ndarray) -> Observation:
        torch = self._torch
        self._buffer = {}
        self._counts = {}
        self._open = {}
        if self.active:
            t0 = time.perf_counter()
            self._open = self._open_neurons()  # reading NC's bitmap is bookkeeping too
            self.reduce_seconds += time.perf_counter() - t0
        with torch.inference_mode():
            t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
            scores = self._forward(t)
            scores = _first_tensor(scores).float().cpu().numpy()
        t0 = time.perf_counter()
        n = len(x)
        missing = [k for k in self.layout.layers if k not in self._buffer]
        if missing:
            raise InvalidInputError(
                f"coverage: layer(s) {', '.join(missing)} produced no tensor in this forward pass"
            )
        parts = [self._buffer[k][0].reshape(n, -1) for k in self.layout.layers]
        self._sizes = [p.shape[1] for p in parts]
        values = np.concatenate(parts, axis=1)
        if self.extrema:
            lo = np.stack([self._buffer[k][1] for k in self.layout.layers], axis=1).astype(np.float32)
            hi = np.stack([self._buffer[k][2] for k in self.layout.layers], axis=1).astype(np.float32)
        else:
            lo = hi = np.zeros((n, len(self.layout.layers)), dtype=np.float32)
        self._buffer = {}
        self.reduce_seconds += time.perf_counter() - t0
        return Observation(to_probs(scores, self._kind), values, lo, hi)


def _memory_view(out: Any) -> tuple[np.ndarray, bool]:
    """A CPU tensor as a NumPy array in its memory order, without copying where possible.

    Returns ``(array, channels_last)``: ``(N, C, *spatial)`` for a contiguous tensor (and for any other
    layout, after one copy), or ``(N, *spatial, C)`` with ``channels_last=True`` for a channels-last
    4-D tensor (the layout roadworthy's ``TorchModel`` runs convolutional networks in).
    """
    import torch

    if out.dim() == 4 and not out.is_contiguous() and out.is_contiguous(memory_format=torch.channels_last):
        return out.permute(0, 2, 3, 1).numpy(), True
    return out.contiguous().numpy(), False


def _summarise(
    view: tuple[np.ndarray, bool],
    extrema: bool,
    gate: tuple[float, np.ndarray] | None = None,
) -> tuple[np.ndarray, Any, Any]:
    """Neuron values ``(N, units)`` and the per-sample layer minimum and maximum of one layer.

    The spatial mean of every channel is a batched matrix-vector product with a weight vector of
    ``1 / positions`` (BLAS, one pass over the memory whatever the layout), and the extrema reduce each
    sample's memory as one flat row. Reducing along a strided axis instead (NumPy's ``mean(axis=...)``
    on a channels-last tensor, or ``min`` over a non-contiguous view, which copies first) costs 5-12x
    more on a 32x32x32 map. The three reductions walk the batch in chunks of about
    :data:`_CHUNK_BYTES`, so the second and third read a chunk from the cache rather than from memory
    (1.6x on a batch of 160 such maps).

    One thread (the caller's), whatever torch's thread count: :func:`_summarise_torch` is the parallel
    alternative (``TorchProbe.summaries = "torch"``).

    ``gate`` -- NC's threshold and the layer's uncovered neurons, for a layer that is non-negative by
    construction -- reads the extrema only of the samples where NC could use them
    (:func:`_gated_extrema`); the others get NaN. The gate's first bound (every 8th block of each
    sample) is read from each chunk right after its mean, from the cache.
    """
    a, last = view
    n = a.shape[0]
    flat = a.reshape(n, -1)
    if a.ndim <= 2:
        values = flat.copy()
        if not extrema:
            return values, None, None
        # a dense layer's extrema cost less than the gate's tests: read them
        return values, flat.min(axis=1), flat.max(axis=1)
    if last:
        mat = a.reshape(n, -1, a.shape[-1])  # (N, positions, C): weights @ mat
        weights = np.full(mat.shape[1], 1.0 / mat.shape[1], np.float32)
    else:
        mat = a.reshape(n, a.shape[1], -1)  # (N, C, positions): mat @ weights
        weights = np.full(mat.shape[2], 1.0 / mat.shape[2], np.float32)
    values = np.empty((n, a.shape[-1] if last else a.shape[1]), np.float32)
    lo = np.empty(n, np.float32) if extrema else None
    hi = np.empty(n, np.float32) if extrema else None
    step = max(1, _CHUNK_BYTES // max(1, flat.shape[1] * flat.itemsize))
    # the NC gate's first bound, read from each chunk while the mean has just brought it into the cache
    sampled = _sampled_blocks(flat) if extrema and gate is not None and gate[1].any() else None
    bound = np.empty(n, np.float32) if sampled is not None else None

    def run(start: int, stop: int) -> None:
        for i in range(start, stop, step):
            part = slice(i, min(i + step, stop))
            if last:
                np.matmul(weights, mat[part], out=values[part])
            else:
                np.matmul(mat[part], weights, out=values[part])
            if extrema and gate is None:
                np.min(flat[part], axis=1, out=lo[part])
                np.max(flat[part], axis=1, out=hi[part])
            elif sampled is not None:
                np.max(sampled[part], axis=(1, 2), out=bound[part])

    run(0, n)
    if extrema and gate is not None:
        # then over the whole layer: it reads little (the few rows needed)
        _gated_extrema(flat, values, lo, hi, gate, bound)
    return values, lo, hi


def _summarise_torch(
    out: Any, extrema: bool, gate: tuple[float, np.ndarray] | None = None
) -> tuple[np.ndarray, Any, Any]:
    """:func:`_summarise` of a CPU tensor of 3 or more dimensions with torch's own intra-op threads
    (``TorchProbe.summaries = "torch"``; not the default).

    The forward pass's worker threads are torch's (OpenMP) threads; when a parallel region ends they
    keep polling for the next one for a while, so a thread of our own started beside them mostly
    shares a core with one of them (a NumPy helper thread gained nothing at 2 threads). Torch's
    reductions run on those same threads instead: the channel means, then the per-sample maximum (and,
    without ``gate``, the minimum: one ``aminmax`` pass), each one reduction over the whole layer. One
    parallel region per reduction, not per cache-sized chunk: every region waits for its slowest
    thread, which on a shared machine is often one the operating system has paused. On the loaded
    2-core machine this path cost 8x the one-thread NumPy summaries (signnet, load 4; the forward pass
    itself was slower with 2 threads than with 1 there), hence not the default; whether it pays on an
    idle machine is what ``bench_fuzz.py`` measures side by side.

    With ``gate`` every maximum is read and only the minimum is gated: a sample none of whose uncovered
    neurons has ``v > t * hi`` cannot open an NC cell in this layer (:meth:`Probe.gate_extrema`) and gets
    a NaN minimum.
    """
    import torch

    n, c = out.shape[0], out.shape[1]
    if out.dim() == 4 and not out.is_contiguous() and out.is_contiguous(memory_format=torch.channels_last):
        mat, dim = out.permute(0, 2, 3, 1).reshape(n, -1, c), 1  # (N, positions, C), a view
    else:
        mat, dim = out.contiguous().reshape(n, c, -1), 2  # (N, C, positions)
    flat = mat.reshape(n, -1)
    values = mat.mean(dim=dim).numpy()
    if not extrema:
        return values, None, None
    if gate is None:
        lo_t, hi_t = torch.aminmax(flat, dim=1)
        return values, lo_t.numpy(), hi_t.numpy()
    hi = flat.amax(dim=1).numpy()
    lo = np.full(n, np.nan, dtype=np.float32)
    threshold, open_ = gate
    if open_.any():
        top = (values if open_.all() else values[:, open_]).max(axis=1).astype(np.float64)
        need = np.flatnonzero(top > threshold * (1.0 - _GATE_MARGIN) * hi.astype(np.float64))
        if need.size:
            lo[need] = flat[torch.from_numpy(need)].amin(dim=1).numpy()
    return values, lo, hi


def _sampled_blocks(flat: np.ndarray) -> np.ndarray | None:
    """Every 8th block of values of each row of ``flat``, as a view ``(N, blocks, size)`` (``size``: the
    largest of :data:`_SAMPLE_BLOCKS` that leaves 16 or more blocks); None for a row too short for 16
    blocks of the smallest size (both extrema are read)."""
    n, width = flat.shape
    for size in _SAMPLE_BLOCKS:
        blocks = width // size
        if blocks >= 16:
            return flat[:, : blocks * size].reshape(n, blocks, size)[:, ::8]
    return None


def _gated_extrema(
    flat: np.ndarray,
    values: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    gate: tuple[float, np.ndarray],
    bound: np.ndarray | None = None,
) -> None:
    """Fill ``lo`` and ``hi`` with each sample's layer minimum and maximum where NC could use them,
    NaN elsewhere (``flat``: the samples' layer tensors as rows; ``values``: their neuron values).

    For a non-negative layer NC's scaled value of a neuron is at most ``v / hi``, and at most
    ``v / m`` for any ``m <= hi`` (:meth:`Probe.gate_extrema`). So, with ``t`` NC's threshold:

    1. ``m`` = the maximum over every 8th block of values of the row (:func:`_sampled_blocks`: an eighth
       of its memory; any subset of the row gives a lower bound of its maximum). A sample none of whose
       uncovered neurons has ``v > t * m`` cannot open an NC cell in this layer: neither extremum is read.
    2. The others get their maximum; those none of whose uncovered neurons has ``v > t * hi`` still
       cannot: their minimum is not read.

    Each test keeps a relative margin :data:`_GATE_MARGIN` towards reading (NC's own float32 scaling
    can round up by a few units of ``2**-24``). A layer of fewer than 16 such blocks per sample reads
    both extrema (cheaper than the tests).
    """
    threshold, open_ = gate
    sampled = _sampled_blocks(flat)
    if sampled is None:  # a small layer: read both
        np.min(flat, axis=1, out=lo)
        np.max(flat, axis=1, out=hi)
        return
    lo.fill(np.nan)
    hi.fill(np.nan)
    if not open_.any():
        return
    limit = threshold * (1.0 - _GATE_MARGIN)
    # the largest value of a sample's uncovered neurons decides: one neuron above the bound is enough
    top = (values if open_.all() else values[:, open_]).max(axis=1).astype(np.float64)
    if bound is None:
        bound = sampled.max(axis=(1, 2))
    rows = np.flatnonzero(top > limit * bound.astype(np.float64))
    if rows.size == 0:
        return
    _rows_reduce(np.max, flat, rows, hi)
    need = rows[top[rows] > limit * hi[rows].astype(np.float64)]
    _rows_reduce(np.min, flat, need, lo)


def _rows_reduce(reduce: Any, flat: np.ndarray, rows: np.ndarray, out: np.ndarray) -> None:
    """``out[rows] = reduce(flat[rows], axis=1)``: row by row for a few rows, the whole block (no
    gather copy) when a quarter or more are needed."""
    if rows.size * 4 >= len(flat):
        reduce(flat, axis=1, out=out)
    else:
        for i in rows:
            out[i] = reduce(flat[i])


# -- ONNX -----------------------------------------------------------------------------------------------


class OnnxProbe(Probe):
    """Monitor named intermediate tensors of an ONNX model (added as extra graph outputs).

    Parameters
    ----------
    model
        A roadworthy ``OnnxModel``.
    tensors
        Names of the tensors to monitor; a rank-4 tensor is read as ``(N, C, H, W)`` (channel means),
        rank 2 as ``(N, units)``.
    """

    def __init__(self, model: Any, tensors: Sequence[str]) -> None:
        super().__init__()
        import onnx
        import onnxruntime as ort

        proto = getattr(model, "_proto", None)
        if proto is None or not callable(getattr(model, "_feed", None)):
            raise UnsupportedModelError(
                f"coverage: tensor names need a roadworthy OnnxModel; got {type(model).__name__}"
            )
        if not tensors:
            raise InvalidInputError("coverage: pass at least one ONNX tensor name to monitor")
        known = {o for node in proto.graph.node for o in node.output}
        for name in tensors:
            if name not in known:
                sample = ", ".join(sorted(known)[:12])
                raise InvalidInputError(
                    f"coverage: tensor '{name}' is not produced by any node of the ONNX graph. Found: {sample}"
                )
        extended = onnx.ModelProto()
        extended.CopyFrom(proto)
        present = {o.name for o in extended.graph.output}
        for name in tensors:
            if name not in present:
                extended.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
        self._session = ort.InferenceSession(extended.SerializeToString(), providers=["CPUExecutionProvider"])
        self.model = model
        self._names = [model._output_name, *tensors]
        self._fixed = getattr(model, "_fixed_batch", None)
        self.layout = Layout(tuple(tensors), ())
        probe_x = np.zeros((self._fixed or 1, *model.input_spec.shape), dtype=np.float32)
        obs = self(probe_x)
        self.layout = Layout(tuple(tensors), tuple(self._sizes))
        self.reduce_seconds = 0.0
        del obs

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        b = self._fixed
        if b is None or len(x) == b:
            return self._session.run(self._names, {self.model.input_name: self.model._feed(x)})
        outs: list[list[np.ndarray]] = []
        for i in range(0, len(x), b):
            chunk = x[i : i + b]
            n = len(chunk)
            if n < b:
                chunk = np.concatenate([chunk, np.zeros((b - n, *chunk.shape[1:]), chunk.dtype)])
            outs.append(
                [
                    o[:n]
                    for o in self._session.run(self._names, {self.model.input_name: self.model._feed(chunk)})
                ]
            )
        return [np.concatenate([o[j] for o in outs]) for j in range(len(self._names))]

    def __call__(self, x: np.ndarray) -> Observation:
        x = np.asarray(x, dtype=np.float32)
        outs = self._run(x)
        t0 = time.perf_counter()
        n = len(x)
        scores = np.asarray(outs[0], dtype=np.float32)
        scores = scores[:, None] if scores.ndim == 1 else scores
        parts, los, his = [], [], []
        for out in outs[1:]:
            a = np.ascontiguousarray(out, dtype=np.float32).reshape(n, *np.shape(out)[1:])
            values, lo, hi = _summarise((a, False), True)
            parts.append(values)
            los.append(lo)
            his.append(hi)
        self._sizes = [p.shape[1] for p in parts]
        obs = Observation(
            to_probs(scores, self.model.output),
            np.concatenate(parts, axis=1),
            np.stack(los, axis=1),
            np.stack(his, axis=1),
        )
        self.reduce_seconds += time.perf_counter() - t0
        return obs


def make_probe(
    model: Any, example: np.ndarray, layers: Sequence[str] | None = None, extrema: bool = True
) -> Probe:
    """The probe that fits ``model``.

    * A white-box PyTorch model (``nn.Module`` or ``TorchModel``): :class:`TorchProbe` over ``layers``
      (default: ReLU-like activations after convolutions and linear layers).
    * An ONNX model with ``layers`` naming tensors: :class:`OnnxProbe`.
    * Anything else (ONNX without tensor names, scikit-learn, callables): :class:`PredictionProbe`;
      naming layers for such a model is an error.
    """
    try:
        import torch

        is_module = isinstance(model, torch.nn.Module)
    except ImportError:  # pragma: no cover - torch is a dependency
        is_module = False
    if is_module or (getattr(model, "white_box", False) and hasattr(model, "module")):
        try:
            return TorchProbe(model, example, layers=layers, extrema=extrema)
        except UnsupportedModelError:
            if layers is not None:
                raise
            return PredictionProbe(model)
    if getattr(model, "format", None) == "onnx" and layers:
        return OnnxProbe(model, layers)
    if layers:
        raise UnsupportedModelError(
            f"coverage: layers can be monitored in PyTorch modules and ONNX graphs only; "
            f"this model ({getattr(model, 'format', type(model).__name__)}) is a black box. "
            "Fuzz it without layers (prediction feedback)."
        )
    return PredictionProbe(model)
