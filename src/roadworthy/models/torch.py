"""PyTorch adapter: an ``nn.Module``, a TorchScript file, a ``torch.export`` program, or (with
``--trust-pickle``) a whole module saved with ``torch.save``.

The adapter puts the module in eval mode, applies the model's normalisation inside (so callers work in
pixel units), exposes gradients (``white_box``) and penultimate features through a forward hook on the
input of the last ``nn.Linear`` (or a layer the user names).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from roadworthy.errors import InvalidInputError
from roadworthy.models.base import InputSpec, OutputKind, detect_output_kind


class TorchModel:
    """Wrap a ``torch.nn.Module`` (or TorchScript / exported module) as a roadworthy model.

    Parameters
    ----------
    module
        The network; it receives normalised float32 inputs and returns scores ``(N, K)``
        (a tuple or dict output uses its first tensor).
    input_shape
        Per-sample shape, e.g. ``(3, 32, 32)`` or ``(20,)``.
    mean, std
        Per-channel normalisation applied inside the adapter: ``(x - mean) / std``.
    output
        ``"logits"``, ``"probs"`` or ``None`` to detect from a probe batch.
    feature_layer
        Name of the module whose *input* is taken as the features (default: the last ``nn.Linear``).
    """

    format = "torch"

    def __init__(
        self,
        module: Any,
        input_shape: Sequence[int],
        n_classes: int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        output: OutputKind | None = None,
        feature_layer: str | None = None,
        modality: str | None = None,
        format: str = "torch",
        device: str = "cpu",
    ) -> None:
        import torch

        self._torch = torch
        self.format = format
        self.device = torch.device(device)
        self.module = module.eval() if hasattr(module, "eval") else module
        if hasattr(self.module, "to"):
            self.module = self.module.to(self.device)
        shape = tuple(int(s) for s in input_shape)
        if modality is None:
            modality = "image" if len(shape) == 3 else "tabular"
        self.input_spec = InputSpec(modality=modality, shape=shape)  # type: ignore[arg-type]
        self._mean = self._stat(mean, shape, "mean")
        self._std = self._stat(std, shape, "std")
        if self._std is not None and bool((self._std == 0).any()):
            raise InvalidInputError("--std must not contain zeros")
        probe = self._raw(torch.rand((2, *shape), generator=torch.Generator().manual_seed(0)))
        self.n_classes = int(n_classes if n_classes is not None else probe.shape[1])
        self.output: OutputKind = output or detect_output_kind(probe.detach().cpu().numpy())
        self.white_box = True
        self._feature_module = self._find_feature_module(feature_layer)
        self.has_features = self._feature_module is not None

    # -- internals
    def _stat(self, v: Sequence[float] | None, shape: tuple[int, ...], name: str) -> Any:
        if v is None:
            return None
        t = self._torch.tensor(list(v), dtype=self._torch.float32, device=self.device)
        if len(shape) == 3:
            if t.numel() not in (1, shape[0]):
                raise InvalidInputError(f"--{name} needs 1 or {shape[0]} values (one per channel), got {t.numel()}")
            t = t.view(1, -1, 1, 1)
        return t

    def _normalise(self, x: Any) -> Any:
        if self._mean is not None:
            x = x - self._mean
        if self._std is not None:
            x = x / self._std
        return x

    def _raw(self, x: Any) -> Any:
        out = self.module(self._normalise(x))
        if isinstance(out, dict):
            out = next(iter(out.values()))
        if isinstance(out, list | tuple):
            out = out[0]
        if out.ndim == 1:
            out = out[:, None]
        return out

    def _find_feature_module(self, name: str | None) -> Any:
        torch = self._torch
        if not isinstance(self.module, torch.nn.Module) or isinstance(self.module, torch.jit.ScriptModule):
            # TorchScript modules support forward pre-hooks only on some versions; try by name below.
            pass
        named = dict(self.module.named_modules()) if hasattr(self.module, "named_modules") else {}
        if name is not None:
            if name not in named:
                raise InvalidInputError(f"--feature-layer '{name}' is not a module of the model; it has: "
                                        f"{', '.join(list(named)[1:12])}")
            return named[name]
        last = None
        for _, m in named.items():
            if isinstance(m, torch.nn.Linear) or getattr(m, "original_name", None) == "Linear":
                last = m
        return last

    # -- protocol
    def predict(self, x: np.ndarray) -> np.ndarray:
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
        if self._feature_module is None:
            raise InvalidInputError("this model exposes no feature layer; pass --feature-layer NAME")
        store: list[Any] = []

        def hook(_m: Any, inputs: Any) -> None:
            store.append(inputs[0].detach())

        handle = self._feature_module.register_forward_pre_hook(hook)
        try:
            with torch.inference_mode():
                t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)
                self._raw(t)
        finally:
            handle.remove()
        if not store:
            raise InvalidInputError("the feature layer was not called during the forward pass")
        return store[-1].flatten(1).float().cpu().numpy()
