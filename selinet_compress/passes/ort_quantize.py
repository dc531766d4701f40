"""Passes: onnxruntime pre-processing and int8 quantization (static QDQ, dynamic).

Measured on SeLiNet here (DESIGN §6, re-checked by ``benchmarks/bench_onnx_recipes.py``): static QDQ
with uint8 activations and int8 per-channel weights after ``quant_pre_process`` is the fast and
small combination; int8 activations ran ~2x slower on x86. ``quantize_dynamic`` turns Conv into
ConvInteger, several times slower than fp32 on x86, so dynamic recipes quantize MatMul and Gemm
only unless they name Conv (and then the target warns).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

# Dynamic quantization quantizes these when a recipe names no op types.
DYNAMIC_DEFAULT_OP_TYPES: tuple[str, ...] = ("MatMul", "Gemm")
# Slow when quantized dynamically on x86 (ConvInteger): never chosen silently.
SLOW_DYNAMIC_OP_TYPES: tuple[str, ...] = ("Conv",)


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """onnxruntime.quantization logs advice on the root logger; our records say what was done."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quant_type(name: str):
    """The onnxruntime QuantType for a recipe's data type name."""
    from onnxruntime.quantization import QuantType

    return {
        "uint8": QuantType.QUInt8,
        "int8": QuantType.QInt8,
        "uint16": QuantType.QUInt16,
        "int16": QuantType.QInt16,
    }[name]


def static_op_types() -> list[str]:
    """Every op type onnxruntime's static quantizer handles (its default when none are named)."""
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return sorted(set(QLinearOpsRegistry) | set(QDQRegistry))


def dynamic_op_types() -> list[str]:
    from onnxruntime.quantization.registry import IntegerOpsRegistry

    return sorted(IntegerOpsRegistry)


def pre_process(src: str | os.PathLike, dst: str | os.PathLike) -> dict[str, Any]:
    """``quant_pre_process``: shape inference and graph optimisation (BatchNorm folding etc.)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    started = time.perf_counter()
    with _quiet_quantizer():
        quant_pre_process(str(src), str(dst))
    return {
        "tool": "onnxruntime.quantization.quant_pre_process",
        "seconds": round(time.perf_counter() - started, 2),
    }


def quantize_static_qdq(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    ranges: Any,
    *,
    method: str,
    activation_type: str,
    weight_type: str,
    per_channel: bool,
    reduce_range: bool,
    op_types: Sequence[str],
    exclude_nodes: Sequence[str],
    quant_format: str = "qdq",
    activation_symmetric: bool = False,
    extra_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``quantize_static`` with ranges computed beforehand (``ranges``: onnxruntime TensorsData)."""
    from onnxruntime.quantization import QuantFormat, quantize_static
    from onnxruntime.quantization.calibrate import save_tensors_data

    from selinet_compress.passes.ort_calibrate import calibration_method

    options = {"ActivationSymmetric": activation_symmetric, **(extra_options or {})}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="selinet-quant-") as tmp, _quiet_quantizer():
        cache = Path(tmp) / "ranges.json"
        save_tensors_data(ranges, cache)
        quantize_static(
            str(src),
            str(dst),
            calibration_data_reader=None,
            calibration_cache_path=cache,
            calibrate_method=calibration_method(method),
            quant_format={"qdq": QuantFormat.QDQ, "qoperator": QuantFormat.QOperator}[quant_format],
            activation_type=quant_type(activation_type),
            weight_type=quant_type(weight_type),
            per_channel=per_channel,
            reduce_range=reduce_range,
            op_types_to_quantize=list(op_types),
            nodes_to_exclude=list(exclude_nodes),
            extra_options=options,
        )
    return {
        "tool": "onnxruntime.quantization.quantize_static",
        "format": quant_format,
        "activation_type": activation_type,
        "weight_type": weight_type,
        "per_channel": per_channel,
        "reduce_range": reduce_range,
        "op_types": list(op_types),
        "nodes_excluded": list(exclude_nodes),
        "extra_options": options,
        "seconds": round(time.perf_counter() - started, 2),
    }


def quantize_dynamic_ops(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    weight_type: str,
    per_channel: bool,
    reduce_range: bool,
    op_types: Sequence[str],
    exclude_nodes: Sequence[str],
    extra_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``quantize_dynamic`` of exactly ``op_types`` (weights int8 offline, activations uint8 at run time)."""
    from onnxruntime.quantization import quantize_dynamic

    started = time.perf_counter()
    with _quiet_quantizer():
        quantize_dynamic(
            str(src),
            str(dst),
            op_types_to_quantize=list(op_types),
            per_channel=per_channel,
            reduce_range=reduce_range,
            weight_type=quant_type(weight_type),
            nodes_to_exclude=list(exclude_nodes),
            extra_options=dict(extra_options or {}),
        )
    return {
        "tool": "onnxruntime.quantization.quantize_dynamic",
        "activation_type": "uint8 (computed per batch at run time)",
        "weight_type": weight_type,
        "per_channel": per_channel,
        "reduce_range": reduce_range,
        "op_types": list(op_types),
        "nodes_excluded": list(exclude_nodes),
        "extra_options": dict(extra_options or {}),
        "seconds": round(time.perf_counter() - started, 2),
    }
