"""An int8 copy of an ONNX model, the way edge deployments make one: for parity tests and the demo.

>>> from roadworthy.models.quantize import int8_copy
>>> int8_copy("sign_reader.onnx", "sign_reader.int8.onnx")
>>> # roadworthy check --model sign_reader.int8.onnx --reference-model sign_reader.onnx ...

It uses ONNX Runtime's dynamic quantization (:func:`onnxruntime.quantization.quantize_dynamic`): weights
are stored as 8-bit integers with a scale per tensor (or per output channel), activations are quantized
on the fly per batch. No calibration data is needed, and the copy predicts like the original on most
inputs but not all: exactly what the parity suite measures.
"""

from __future__ import annotations

from pathlib import Path

from roadworthy.errors import InvalidInputError, require

__all__ = ["int8_copy"]


def int8_copy(onnx_path: str | Path, out_path: str | Path, *, per_channel: bool = False) -> Path:
    """Write an int8 (dynamically quantized) copy of the ONNX model ``onnx_path`` to ``out_path``.

    Parameters
    ----------
    onnx_path
        A float ONNX model file.
    out_path
        Where the quantized copy goes (its folder must exist); overwritten if present.
    per_channel
        One scale per output channel of each weight (closer to the float model) instead of one per tensor.

    Returns
    -------
    Path
        ``out_path``.

    Raises
    ------
    InvalidInputError
        When ``onnx_path`` is not a readable ONNX file or ``out_path`` is the same file.
    """
    require("onnxruntime", "onnx", "int8_copy")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, dst = Path(onnx_path), Path(out_path)
    if not src.is_file():
        raise InvalidInputError(f"{src}: int8_copy needs an ONNX model file; none is there")
    if dst.resolve() == src.resolve():
        raise InvalidInputError(f"{dst}: int8_copy must write the copy to another file than its source")
    try:
        quantize_dynamic(str(src), str(dst), per_channel=per_channel, weight_type=QuantType.QInt8)
    except Exception as exc:  # onnx and onnxruntime raise many types for a bad file
        raise InvalidInputError(
            f"{src}: could not quantize the ONNX model ({type(exc).__name__}: {exc})"
        ) from exc
    return dst
