"""PyTorch adapter: an ``nn.Module``, a TorchScript module, a ``torch.export`` program, or (with
``--trust-pickle``) a whole module saved with ``torch.save``.

A model loaded from a file is tested as it was saved: one saved in training mode (dropout active,
batch-norm on batch statistics) stays so, with a warning, and the sanity suite's determinism and batch
checks show what that does. A live ``nn.Module`` handed over in training mode is switched to eval mode,
with a warning when that changes how it computes (dropout, batch-norm). Either way
``training_mode_note`` says what was found. The adapter applies the model's normalisation inside (so
callers work in pixel units), exposes gradients (``white_box``) and penultimate features: the input of
the last linear layer, or of a layer the user names. How the features are reached depends on the kind of module:

``nn.Module``
    a forward pre-hook on the layer.
TorchScript
    compiled modules run no Python hooks, so the adapter runs the prefix of a (nested) ``Sequential``
    up to the layer; for other TorchScript models it copies the inlined graph with its output rewired
    to the layer's input (no features when that fails).
``torch.export``
    the graph is copied and its output rewired to the input of the last ``linear``/``addmm`` node
    (or of the first node the named layer produced).
"""

from __future__ import annotations

import contextlib
import copy
import re
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from roadworthy.errors import InvalidInputError, RoadworthyWarning, first_line, plural
from roadworthy.models._common import prefix
from roadworthy.models.base import InputSpec, OutputKind, detect_output_kind


class TorchModel:
    """Wrap a ``torch.nn.Module`` (or TorchScript / exported module) as a roadworthy model.

    Parameters
    ----------
    module
        The network; it receives normalised float32 inputs and returns scores ``(N, K)``
        (a tuple or dict output uses its first tensor).
    input_shape
        Per-sample shape, e.g. ``(3, 32, 32)`` or ``(20,)``. Optional for ``torch.export`` modules,
        whose graph records it.
    n_classes
        Expected number of output columns; checked against a probe batch.
    mean, std
        Per-channel normalisation applied inside the adapter: ``(x - mean) / std``.
    output
        ``"logits"``, ``"probs"`` or ``None`` to detect from a probe batch.
    feature_layer
        Name of the module whose *input* is taken as the features (default: the last linear layer).
    modality
        ``"image"`` or ``"tabular"``; by default image for 3-D per-sample shapes.
    format
        Label for the report: ``"torch"``, ``"torchscript"``, ``"torch.export"``, ``"torch.save"``.
    device
        Where the module runs.
    name
        The model's file name, used in error messages.
    as_saved
        Keep the module's train/eval mode as it is (a model read from a file: it is tested as saved);
        otherwise a module in training mode is switched to eval mode.
    channels_last
        Run a 2-D convolutional network in the channels-last memory layout (NHWC), which oneDNN on CPUs
        (and cuDNN) compute faster: measured here 1.3x on a ResNet-18 at 224 px and 2x on small CNNs.
        ``None`` (default) switches it on for ``nn.Module`` and TorchScript models with a ``Conv2d``
        when the outputs on a probe batch stay equal (relative 1e-3); ``False`` keeps the layout as it
        is. The switch moves the module's 4-D weights to the new layout in place (values unchanged);
        inputs are converted inside the adapter, and gradients with respect to them are unchanged.
    """

    format = "torch"

    def __init__(
        self,
        module: Any,
        input_shape: Sequence[int] | None = None,
        n_classes: int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        output: OutputKind | None = None,
        feature_layer: str | None = None,
        modality: str | None = None,
        format: str = "torch",
        device: str = "cpu",
        name: str | None = None,
        as_saved: bool = False,
        channels_last: bool | None = None,
    ) -> None:
        import torch

        self._torch = torch
        self.format = format
        self.name = name
        self.device = torch.device(device)
        #: whether inputs and convolution weights use the channels-last layout (see ``channels_last``)
        self.channels_last = False
        self.kind = _module_kind(module)
        self.module = module
        if hasattr(self.module, "to"):
            self.module = self.module.to(self.device)
        graph_shape, self._fixed_batch = _export_input(self.module) if self.kind == "export" else (None, None)
        shape = _resolve_shape(graph_shape, input_shape, name)
        #: why the model's train/eval mode deserves a reader's attention, or ``None``
        self.training_mode_note: str | None = None
        training = _training_layers(self.module) if self.kind != "export" else None
        if training is not None and as_saved:
            effect = (
                "this changes nothing unless its code reads self.training"
                if training == _NO_MODE_LAYERS
                else "its outputs are random or depend on the batch"
            )
            self.training_mode_note = (
                f"{prefix(name)}the model was saved in training mode ({training}) and is tested as saved: "
                f"{effect}; call model.eval() before saving it"
            )
            warnings.warn(self.training_mode_note, RoadworthyWarning, stacklevel=4)
        elif hasattr(self.module, "eval"):
            if training is not None and training != _NO_MODE_LAYERS:
                self.training_mode_note = (
                    f"{prefix(name)}the model was in training mode ({training}); it was switched to eval "
                    "mode for testing"
                )
                warnings.warn(self.training_mode_note, RoadworthyWarning, stacklevel=4)
            # torch.export modules refuse eval(): their train/eval behaviour was fixed at export time
            with contextlib.suppress(NotImplementedError):
                self.module = self.module.eval() or self.module
        if self._fixed_batch is not None:
            self._free_batch(shape)
        if modality is None:
            modality = "image" if len(shape) == 3 else "tabular"
        self.input_spec = InputSpec(modality=modality, shape=shape)  # type: ignore[arg-type]
        self._mean = self._stat(mean, shape, "mean")
        self._std = self._stat(std, shape, "std")
        if self._std is not None and bool((self._std == 0).any()):
            raise InvalidInputError("`std` must not contain zeros.")
        probe = self._probe(shape)
        if (
            channels_last is not False
            and len(shape) == 3
            and self.kind != "export"
            and _has_conv2d(self.module)
        ):
            self._use_channels_last(shape, probe)
        if n_classes is not None and int(n_classes) != probe.shape[1]:
            raise InvalidInputError(
                f"{prefix(name)}the model returns {probe.shape[1]} scores per sample but "
                f"{plural(int(n_classes), 'class', 'classes')} were given"
            )
        self.n_classes = int(probe.shape[1])
        self.output: OutputKind = output or detect_output_kind(probe)
        self.white_box = True
        self.feature_layer = feature_layer
        self._features_fn = self._find_features(feature_layer)
        self.has_features = self._features_fn is not None

    # -- internals
    def _stat(self, v: Sequence[float] | None, shape: tuple[int, ...], name: str) -> Any:
        if v is None:
            return None
        t = self._torch.tensor(list(v), dtype=self._torch.float32, device=self.device)
        if len(shape) == 3:
            if t.numel() not in (1, shape[0]):
                raise InvalidInputError(
                    f"`{name}` needs 1 or {shape[0]} values (one per channel). Got {t.numel()} instead."
                )
            t = t.view(1, -1, 1, 1)
        elif t.numel() not in (1, shape[0]):
            raise InvalidInputError(
                f"`{name}` needs 1 or {shape[0]} values (one per feature). Got {t.numel()} instead."
            )
        return t

    def _probe(self, shape: tuple[int, ...]) -> np.ndarray:
        torch = self._torch
        n = self._fixed_batch or 2
        x = torch.rand((n, *shape), generator=torch.Generator().manual_seed(0)).to(self.device)
        try:
            with torch.inference_mode():
                out = self._raw(x)
        except Exception as exc:  # a foreign framework error, translated at the boundary
            raise InvalidInputError(
                f"{prefix(self.name)}the model failed on a probe batch of shape {tuple(x.shape)} "
                f"({first_line(exc)}). Check that the data fits the model's input."
            ) from exc
        if out.ndim != 2 or out.shape[0] != n:
            raise InvalidInputError(
                f"{prefix(self.name)}the model must return scores of shape (N, n_classes); "
                f"for a batch of {n} it returned {tuple(out.shape)}"
            )
        return out.detach().float().cpu().numpy()

    def _use_channels_last(self, shape: tuple[int, ...], expected: np.ndarray) -> None:
        """Switch to channels-last when the module takes it and computes the same on the probe batch."""
        torch = self._torch
        try:
            self.module = self.module.to(memory_format=torch.channels_last)
            self.channels_last = True
            got = self._probe(shape)
            scale = max(1.0, float(np.abs(expected).max()))
            if got.shape == expected.shape and np.allclose(got, expected, rtol=1e-3, atol=1e-4 * scale):
                return
        except (RuntimeError, InvalidInputError, TypeError, ValueError):
            pass
        self.channels_last = False
        with contextlib.suppress(RuntimeError, TypeError):
            self.module = self.module.to(memory_format=torch.contiguous_format)

    def _free_batch(self, shape: tuple[int, ...]) -> None:
        """Drop the batch-size guard of a program exported with a fixed batch, if that is safe.

        ``torch.export`` with one example input fixes the batch (often at 1), and looping over single
        samples is slow. Many such graphs compute the same for any batch; a copy without the guard is
        kept only when it reproduces the guarded program sample by sample on a probe batch.
        """
        torch = self._torch
        b = int(self._fixed_batch or 1)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                free = copy.deepcopy(self.module)
            guards = [
                n for n in free.graph.nodes if n.op == "call_module" and str(n.target).startswith("_guards")
            ]
            for node in guards:
                free.graph.erase_node(node)
            free.recompile()
            x = torch.rand((2 * b + 1, *shape), generator=torch.Generator().manual_seed(1)).to(self.device)
            with torch.inference_mode():
                expected = self._call(lambda t: _first_tensor(self.module(t)), x)
                got = _first_tensor(free(x))
        except Exception:  # noqa: BLE001 - any failure means the batch stays fixed
            return
        if tuple(got.shape) == tuple(expected.shape) and torch.allclose(got, expected, rtol=1e-4, atol=1e-5):
            self.module, self._fixed_batch = free, None

    def _normalise(self, x: Any) -> Any:
        if self._mean is not None:
            x = x - self._mean
        if self._std is not None:
            x = x / self._std
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=self._torch.channels_last)
        return x

    def _call(self, fn: Callable[[Any], Any], x: Any) -> Any:
        """``fn(x)``, split into exact chunks when the module only takes a fixed batch size."""
        b = self._fixed_batch
        if b is None or x.shape[0] == b:
            return fn(x)
        torch = self._torch
        outs = []
        for i in range(0, x.shape[0], b):
            chunk = x[i : i + b]
            n = chunk.shape[0]
            if n < b:
                chunk = torch.cat([chunk, chunk.new_zeros((b - n, *chunk.shape[1:]))], dim=0)
            outs.append(fn(chunk)[:n])
        return torch.cat(outs, dim=0)

    def _raw(self, x: Any) -> Any:
        def run(t: Any) -> Any:
            return _first_tensor(self.module(self._normalise(t)))

        out = self._call(run, x)
        if out.ndim == 1:
            out = out[:, None]
        return out

    def _find_features(self, name: str | None) -> Callable[[Any], Any] | None:
        if self.kind == "script":
            return self._script_features(name)
        if self.kind == "export":
            return self._export_features(name)
        return self._hook_features(name)

    def _hook_features(self, name: str | None) -> Callable[[Any], Any] | None:
        torch = self._torch
        named = dict(self.module.named_modules()) if hasattr(self.module, "named_modules") else {}
        if name is not None:
            if name not in named or name == "":
                raise InvalidInputError(
                    f"{prefix(self.name)}feature layer '{name}' is not a module of the model; "
                    f"it has: {', '.join(n for n in list(named)[1:16])}"
                )
            layer = named[name]
        else:
            linears = [m for m in named.values() if isinstance(m, torch.nn.Linear)]
            if not linears:
                return None
            layer = linears[-1]

        def features(x: Any) -> Any:
            store: list[Any] = []

            def hook(_m: Any, inputs: Any) -> None:
                store.append(inputs[0].detach())

            handle = layer.register_forward_pre_hook(hook)
            try:
                self._raw(x)
            finally:
                handle.remove()
            if not store:
                raise InvalidInputError(
                    f"{prefix(self.name)}the feature layer was not called during the forward pass"
                )
            return store[-1]

        return features

    def _script_features(self, name: str | None) -> Callable[[Any], Any] | None:
        leaves = list(_sequential_leaves(self.module, ""))
        if not leaves or (len(leaves) == 1 and leaves[0][0] == ""):
            return self._script_graph_features(name)
        if name is None:
            cut = max((i for i, (_, m) in enumerate(leaves) if _is_linear(m)), default=None)
            if cut is None:
                return None
        else:
            cut = next((i for i, (n, _) in enumerate(leaves) if n == name or n.startswith(name + ".")), None)
            if cut is None:
                raise InvalidInputError(
                    f"{prefix(self.name)}feature layer '{name}' is not a layer of the Sequential model; "
                    f"it has: {', '.join(n for n, _ in leaves[:16])}"
                )
        prefix_layers = [m for _, m in leaves[:cut]]

        def features(x: Any) -> Any:
            def run(t: Any) -> Any:
                h = self._normalise(t)
                for layer in prefix_layers:
                    h = layer(h)
                return h

            return self._call(run, x)

        return features

    def _script_graph_features(self, name: str | None) -> Callable[[Any], Any] | None:
        """Features of a TorchScript model that is not a Sequential: a copy of its inlined graph whose
        output is the input of the last ``aten::linear`` (or of the first op using the named layer's
        parameters). This uses TorchScript internals, so any failure means "no features", checked on a
        probe batch here rather than in the middle of a run.
        """
        torch = self._torch
        try:
            graph = self.module.inlined_graph.copy()
            value = _script_feature_value(graph, name)
            if value is None:
                fn = None
            else:
                while len(list(graph.outputs())):
                    graph.eraseOutput(0)
                graph.registerOutput(value)
                torch._C._jit_pass_dce(graph)
                fn = torch._C._create_function_from_graph("roadworthy_features", graph)
                with torch.inference_mode():
                    fn(self.module._c, self._normalise(torch.zeros((1, *self.input_spec.shape))))
        except (RuntimeError, AttributeError, TypeError) as exc:
            if name is not None:
                raise InvalidInputError(
                    f"{prefix(self.name)}cannot read layer '{name}' from this TorchScript model "
                    f"({first_line(exc)}); export with torch.export or ONNX, or pass the nn.Module "
                    "through the Python API"
                ) from exc
            return None
        if fn is None:
            if name is not None:
                raise InvalidInputError(
                    f"{prefix(self.name)}feature layer '{name}' has no parameters used in the TorchScript "
                    "graph; name a layer with weights (e.g. the classifier's Linear)"
                )
            return None

        def features(x: Any) -> Any:
            return self._call(lambda t: fn(self.module._c, self._normalise(t)), x)

        return features

    def _export_features(self, name: str | None) -> Callable[[Any], Any] | None:
        torch = self._torch
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gm = copy.deepcopy(self.module)
        nodes = list(gm.graph.nodes)
        feature_node = None
        if name is None:
            for node in nodes:
                if node.op != "call_function":
                    continue
                if node.target in (torch.ops.aten.linear.default, torch.ops.aten.mm.default):
                    feature_node = node.args[0]
                elif node.target is torch.ops.aten.addmm.default:
                    feature_node = node.args[1]
            if feature_node is None:
                return None
        else:
            feature_node = _module_input_node(nodes, name)
            if feature_node is None:
                layers = sorted(
                    {p for n in nodes for p, _ in (n.meta.get("nn_module_stack") or {}).values() if p}
                )
                raise InvalidInputError(
                    f"{prefix(self.name)}feature layer '{name}' is not a layer of the exported program; "
                    f"it has: {', '.join(layers[:16])}"
                )
        output = next(n for n in nodes if n.op == "output")
        output.args = (_replace_first_leaf(output.args[0], feature_node),)
        gm.graph.eliminate_dead_code()
        gm.recompile()

        def features(x: Any) -> Any:
            return self._call(lambda t: _first_tensor(gm(self._normalise(t))), x)

        return features

    def to_device(self, device: str) -> None:
        """Move the module and the normalisation to ``device`` (``"cuda"``); inputs follow in ``predict``."""
        self.device = self._torch.device(device)
        if hasattr(self.module, "to"):
            self.module = self.module.to(self.device)
        if self._mean is not None:
            self._mean = self._mean.to(self.device)
        if self._std is not None:
            self._std = self._std.to(self.device)

    # -- protocol
    def predict(self, x: np.ndarray) -> np.ndarray:
        """Scores ``(N, n_classes)`` for a float32 batch in pixel units."""
        torch = self._torch
        with torch.inference_mode():
            t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)
            return self._raw(t).float().cpu().numpy()

    def forward_torch(self, x: Any) -> Any:
        """Differentiable logits for pixel-space input (log-probabilities for probability models)."""
        out = self._raw(x)
        if self.output == "probs":
            out = self._torch.log(out.clamp_min(1e-12))
        return out

    def features(self, x: np.ndarray) -> np.ndarray:
        """Penultimate-layer embeddings ``(N, F)``: the input of the feature layer, flattened."""
        torch = self._torch
        if self._features_fn is None:
            raise InvalidInputError(
                f"{prefix(self.name)}this model exposes no feature layer; pass feature_layer=NAME "
                "(--feature-layer NAME)"
            )
        with torch.inference_mode():
            t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)
            return self._features_fn(t).flatten(1).float().cpu().numpy()


# -- module introspection -------------------------------------------------------------------------

#: layers that compute differently in training mode
_MODE_LAYERS = re.compile(
    r"(Feature)?(Alpha)?Dropout([123]d)?|(Lazy|Sync)?BatchNorm([123]d)?|(Lazy)?InstanceNorm[123]d|RReLU"
)
_NO_MODE_LAYERS = "no dropout or batch-norm layer"


def _training_layers(module: Any) -> str | None:
    """What of ``module`` is in training mode, in words (``None`` when nothing is).

    Names the dropout / batch-norm layers that behave differently in training mode (for TorchScript,
    by their original class name), e.g. ``"Dropout at 'head.drop'"``.
    """
    named = list(module.named_modules()) if hasattr(module, "named_modules") else []
    if not any(getattr(m, "training", False) for _, m in named):
        return None
    active = []
    for layer_name, m in named:
        kind = getattr(m, "original_name", None) or type(m).__name__
        if getattr(m, "training", False) and _MODE_LAYERS.fullmatch(kind):
            active.append(f"{kind} at '{layer_name}'")
    if not active:
        return _NO_MODE_LAYERS
    return ", ".join(active[:4]) + (f" and {len(active) - 4} more" if len(active) > 4 else "")


def _has_conv2d(module: Any) -> bool:
    """Whether the (TorchScript or plain) module has a 2-D convolution, by class or original name."""
    import torch

    named = module.named_modules() if hasattr(module, "named_modules") else []
    return any(
        isinstance(m, torch.nn.Conv2d) or getattr(m, "original_name", None) == "Conv2d" for _, m in named
    )


def _module_kind(module: Any) -> str:
    """``script`` for TorchScript, ``export`` for a ``torch.export`` graph, else ``module``."""
    import torch

    if isinstance(module, torch.jit.ScriptModule):
        return "script"
    if isinstance(module, torch.fx.GraphModule):
        for node in module.graph.nodes:
            if node.op == "placeholder" and "val" in node.meta:
                return "export"
    return "module"


def _export_input(module: Any) -> tuple[tuple[int | None, ...] | None, int | None]:
    """Per-sample input shape and fixed batch size (``None`` when dynamic) from an exported graph."""
    for node in module.graph.nodes:
        if node.op == "placeholder" and "val" in node.meta and hasattr(node.meta["val"], "shape"):
            dims = [d if isinstance(d, int) else None for d in node.meta["val"].shape]
            if not dims:
                return None, None
            return tuple(dims[1:]), dims[0]
    return None, None


def _resolve_shape(
    graph_shape: tuple[int | None, ...] | None, given: Sequence[int] | None, name: str | None
) -> tuple[int, ...]:
    """The per-sample shape: the graph's where it is concrete, else the one given."""
    if graph_shape is not None and all(d is not None for d in graph_shape):
        return tuple(int(d) for d in graph_shape)  # type: ignore[arg-type]
    if given is None:
        raise InvalidInputError(
            f"{prefix(name)}the model does not record its input shape; pass input_shape=(C, H, W) or (D,)"
        )
    shape = tuple(int(s) for s in given)
    if graph_shape is not None and (
        len(shape) != len(graph_shape)
        or any(want is not None and have != want for have, want in zip(shape, graph_shape, strict=True))
    ):
        raise InvalidInputError(
            f"{prefix(name)}the model takes inputs of shape {graph_shape} per sample, not {shape}"
        )
    return shape


def _first_tensor(out: Any) -> Any:
    if isinstance(out, dict):
        out = next(iter(out.values()))
    while isinstance(out, list | tuple):
        out = out[0]
    return out


def _is_linear(module: Any) -> bool:
    import torch

    return isinstance(module, torch.nn.Linear) or getattr(module, "original_name", None) == "Linear"


def _sequential_leaves(module: Any, name: str) -> Any:
    """``(qualified name, module)`` in call order through nested ``Sequential`` containers."""
    kind = getattr(module, "original_name", None) or type(module).__name__
    if kind == "Sequential":
        for child_name, child in module.named_children():
            yield from _sequential_leaves(child, f"{name}.{child_name}" if name else child_name)
    else:
        yield name, module


def _script_feature_value(graph: Any, name: str | None) -> Any:
    """The TorchScript value flowing into the last ``aten::linear`` or into layer ``name``'s first op."""

    def attr_path(value: Any) -> list[str] | None:
        node = value.node()
        if node.kind() != "prim::GetAttr":
            return [] if node.kind() == "prim::Param" else None
        parent = attr_path(node.input())
        return None if parent is None else [*parent, node.s("name")]

    def data_input(node: Any) -> Any:
        for value in node.inputs():
            if (
                value.node().kind() not in ("prim::GetAttr", "prim::Constant")
                and value.type().kind() == "TensorType"
            ):
                return value
        return None

    if name is None:
        found = None
        for node in graph.nodes():
            if node.kind() in ("aten::linear", "aten::addmm", "aten::matmul"):
                value = node.inputsAt(1) if node.kind() == "aten::addmm" else node.inputsAt(0)
                found = value if value.type().kind() == "TensorType" else found
        return found
    parts = name.split(".")
    for node in graph.nodes():
        if node.kind() in ("prim::GetAttr", "prim::Constant"):
            continue
        for value in node.inputs():
            path = attr_path(value)
            if path is not None and path[: len(parts)] == parts and len(path) > len(parts):
                return data_input(node)
    return None


def _module_input_node(nodes: list[Any], name: str) -> Any:
    """The first value flowing into module ``name`` of an exported graph (from ``nn_module_stack``)."""
    for node in nodes:
        if node.op != "call_function":
            continue
        paths = [p for p, _ in (node.meta.get("nn_module_stack") or {}).values()]
        if any(p == name or p.startswith(name + ".") for p in paths):
            for arg in node.args:
                if hasattr(arg, "op") and arg.op != "get_attr":
                    return arg
    return None


def _replace_first_leaf(args: Any, node: Any) -> Any:
    if isinstance(args, tuple | list):
        if not args:
            return args
        return type(args)([_replace_first_leaf(args[0], node), *args[1:]])
    return node
