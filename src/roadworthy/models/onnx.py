"""ONNX adapter through onnxruntime (black box: no gradients; features through an intermediate output).

What the graph says is used: the input's name, its layout (NCHW or NHWC: the axis of size 1, 3 or 4),
its element type, and whether the batch axis is dynamic. A graph exported with a fixed batch (often 1)
still works: batches are split into chunks of that size, the last one padded.

Features are the input of the last ``Gemm``/``MatMul`` node, or a tensor the user names; the adapter adds
that tensor as an extra graph output and runs a second session.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from roadworthy.errors import InvalidInputError, first_line, plural
from roadworthy.models._common import (
    check_std,
    normalise,
    prefix,
    run_fixed_batches,
    stat_array,
)
from roadworthy.models.base import InputSpec, OutputKind, detect_output_kind

_DTYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16}
_CHANNELS = (1, 3, 4)


class OnnxModel:
    """Wrap an ONNX graph (a path or serialized bytes) as a roadworthy model.

    Parameters
    ----------
    model_bytes
        The serialized ``ModelProto`` (external data already inlined).
    input_shape
        Per-sample shape in roadworthy's layout (``(C, H, W)`` or ``(D,)``) for the axes the graph
        leaves open; ignored where the graph fixes them.
    n_classes, mean, std, output, feature_layer, name
        As for :class:`roadworthy.models.torch.TorchModel`; ``feature_layer`` is a tensor name.
    """

    format = "onnx"
    white_box = False

    def __init__(
        self,
        model_bytes: bytes,
        input_shape: Sequence[int] | None = None,
        n_classes: int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        output: OutputKind | None = None,
        feature_layer: str | None = None,
        name: str | None = None,
    ) -> None:
        import onnx

        self.name = name
        try:
            self._proto = onnx.load_model_from_string(model_bytes)
            self._session = _session(model_bytes)
        except Exception as exc:  # protobuf / onnxruntime errors, translated at the boundary
            raise InvalidInputError(
                f"{prefix(name)}not a valid ONNX model (truncated or corrupt: {first_line(exc)})"
            ) from exc
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise InvalidInputError(
                f"{prefix(name)}the ONNX graph takes {len(inputs)} inputs "
                f"({', '.join(i.name for i in inputs)}); roadworthy needs exactly one"
            )
        graph_input = inputs[0]
        self.input_name = graph_input.name
        self._dtype = _DTYPES.get(graph_input.type)
        if self._dtype is None:
            raise InvalidInputError(
                f"{prefix(name)}the ONNX input '{graph_input.name}' has type {graph_input.type}; "
                "roadworthy feeds float tensors"
            )
        dims = [d if isinstance(d, int) and d > 0 else None for d in graph_input.shape]
        if len(dims) not in (2, 4):
            raise InvalidInputError(
                f"{prefix(name)}the ONNX input '{graph_input.name}' has rank {len(dims)}; roadworthy "
                "supports images (N, C, H, W or N, H, W, C) and tables (N, D)"
            )
        self._fixed_batch = dims[0]
        self.layout = _layout(dims) if len(dims) == 4 else "ND"
        graph_shape = _to_nchw(dims[1:], self.layout)
        shape = _fill_shape(graph_shape, input_shape, name)
        self.input_spec = InputSpec(modality="image" if len(shape) == 3 else "tabular", shape=shape)  # type: ignore[arg-type]
        self._output_name = _score_output(self._session, name)
        self._mean = stat_array(mean, shape, "mean")
        self._std = stat_array(std, shape, "std")
        check_std(self._std)
        n = self._fixed_batch or 2
        probe_x = np.random.default_rng(0).random((n, *shape), dtype=np.float32)
        try:
            probe = self.predict(probe_x)
        except Exception as exc:  # onnxruntime errors, translated at the boundary
            raise InvalidInputError(
                f"{prefix(name)}the model failed on a probe batch of shape {probe_x.shape} "
                f"({first_line(exc)}). Check that the data fits the model's input."
            ) from exc
        if probe.ndim != 2 or probe.shape[0] != n:
            raise InvalidInputError(
                f"{prefix(name)}the ONNX output '{self._output_name}' must have shape (N, n_classes); "
                f"for a batch of {n} it has {probe.shape}"
            )
        if n_classes is not None and int(n_classes) != probe.shape[1]:
            raise InvalidInputError(
                f"{prefix(name)}the model returns {probe.shape[1]} scores per sample but "
                f"{plural(int(n_classes), 'class', 'classes')} were given"
            )
        self.n_classes = int(probe.shape[1])
        self.output: OutputKind = output or detect_output_kind(probe)
        self.feature_name = _feature_tensor(self._proto, feature_layer, name)
        self._feature_session: Any = None
        self.has_features = self.feature_name is not None

    def _feed(self, x: np.ndarray) -> np.ndarray:
        x = normalise(np.asarray(x, dtype=np.float32), self._mean, self._std)
        if self.layout == "NHWC":
            x = x.transpose(0, 2, 3, 1)
        return np.ascontiguousarray(x, dtype=self._dtype)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Scores ``(N, n_classes)`` for a float32 batch in pixel units (NCHW for images)."""

        def run(chunk: np.ndarray) -> np.ndarray:
            return self._session.run([self._output_name], {self.input_name: self._feed(chunk)})[0]

        out = np.asarray(run_fixed_batches(run, np.asarray(x, dtype=np.float32), self._fixed_batch))
        out = out.astype(np.float32)
        return out[:, None] if out.ndim == 1 else out

    def features(self, x: np.ndarray) -> np.ndarray:
        """The feature tensor ``(N, F)`` (flattened) read as an extra graph output."""
        if self.feature_name is None:
            raise InvalidInputError(
                f"{prefix(self.name)}no feature tensor found in the ONNX graph; pass feature_layer=TENSOR "
                "(--feature-layer TENSOR)"
            )
        if self._feature_session is None:
            self._feature_session = _session(_with_output(self._proto, self.feature_name))

        def run(chunk: np.ndarray) -> np.ndarray:
            return self._feature_session.run([self.feature_name], {self.input_name: self._feed(chunk)})[0]

        out = np.asarray(run_fixed_batches(run, np.asarray(x, dtype=np.float32), self._fixed_batch))
        return out.reshape(len(out), -1).astype(np.float32)


def _session(model_bytes: bytes) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    # one intra-op thread per core this process may use; no inter-op pool (the graphs run sequentially)
    options.intra_op_num_threads = _cores()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(model_bytes, sess_options=options, providers=["CPUExecutionProvider"])


def _cores() -> int:
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def _layout(dims: list[int | None]) -> str:
    """``NCHW`` or ``NHWC`` from a rank-4 input shape: where the 1/3/4-sized channel axis is."""
    first, last = dims[1], dims[3]
    if first in _CHANNELS and last not in _CHANNELS:
        return "NCHW"
    if last in _CHANNELS and first not in _CHANNELS:
        return "NHWC"
    return "NCHW"


def _to_nchw(dims: list[int | None], layout: str) -> tuple[int | None, ...]:
    if layout == "NHWC":
        return (dims[2], dims[0], dims[1])
    return tuple(dims)


def _fill_shape(
    graph_shape: tuple[int | None, ...], given: Sequence[int] | None, name: str | None
) -> tuple[int, ...]:
    """The graph's per-sample shape with its open axes filled from ``given``."""
    if all(d is not None for d in graph_shape):
        return tuple(int(d) for d in graph_shape)  # type: ignore[arg-type]
    if given is None or len(given) != len(graph_shape):
        raise InvalidInputError(
            f"{prefix(name)}the ONNX input has open axes {graph_shape}; pass input_shape with "
            f"{len(graph_shape)} values"
        )
    return tuple(int(g) if d is None else int(d) for d, g in zip(graph_shape, given, strict=True))


def _score_output(session: Any, name: str | None) -> str:
    """The output holding the class scores: the first float tensor of rank 2 (or 1)."""
    outputs = session.get_outputs()
    for out in outputs:
        if out.type in _DTYPES and len(out.shape or []) == 2:
            return out.name
    for out in outputs:
        if out.type in _DTYPES:
            return out.name
    raise InvalidInputError(
        f"{prefix(name)}the ONNX graph has no float output with class scores "
        f"(outputs: {', '.join(f'{o.name} {o.type}' for o in outputs)})"
    )


def _feature_tensor(proto: Any, requested: str | None, name: str | None) -> str | None:
    """The tensor to read as features: ``requested``, else the input of the last Gemm/MatMul."""
    graph = proto.graph
    initializers = {i.name for i in graph.initializer}
    produced = {o for node in graph.node for o in node.output} | {i.name for i in graph.input}
    if requested is not None:
        if requested not in produced or requested in initializers:
            candidates = [o for node in graph.node for o in node.output][-12:]
            raise InvalidInputError(
                f"{prefix(name)}feature tensor '{requested}' is not in the ONNX graph; "
                f"the last tensors are: {', '.join(candidates)}"
            )
        return requested
    found = None
    for node in graph.node:
        if node.op_type in ("Gemm", "MatMul"):
            data_inputs = [i for i in node.input if i and i not in initializers]
            if data_inputs:
                found = data_inputs[0]
    graph_inputs = {i.name for i in graph.input}
    return None if found in graph_inputs else found


def _with_output(proto: Any, tensor: str) -> bytes:
    """The graph serialized again with ``tensor`` added as an output."""
    import onnx

    extended = onnx.ModelProto()
    extended.CopyFrom(proto)
    if tensor not in {o.name for o in extended.graph.output}:
        extended.graph.output.append(onnx.helper.make_empty_tensor_value_info(tensor))
    return extended.SerializeToString()
