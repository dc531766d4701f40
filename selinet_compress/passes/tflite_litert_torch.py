"""PyTorch -> TFLite directly with litert-torch (optional extra ``litert-torch``), cached, atomic.

The second TFLite converter, so a sweep can put both side by side. fp32 is a plain conversion;
int8_static is PT2E post-training quantization (litert-torch's ``PT2EQuantizer``: symmetric
int8, per-channel weights, histogram observers on the activations) calibrated on the same NCHW
samples as every other target, then lowered by litert-torch. int8_dynamic uses the same
quantizer's dynamic config (int8 weights, activations quantized at run time). fp16 is not
offered by litert-torch for non-generative models.

What a litert-torch int8 file looks like (audit, this machine): int8 inputs / outputs in NCHW,
HARD_SWISH as one int8 op (XNNPACK does not delegate it), residual ADDs and a few MULs left in
float between DEQUANTIZE / QUANTIZE pairs -- the runner and the audit handle and report these.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from selinet_compress.errors import UserError
from selinet_compress.passes.tflite_onnx2tf import ConversionError, arrays_sha256, default_cache_dir

PRECISIONS = ("fp32", "int8_dynamic", "int8_static")


def available() -> str | None:
    """None when litert-torch can be imported, else why not (it is an optional extra)."""
    from importlib.util import find_spec

    if find_spec("litert_torch") is None:
        return "litert-torch is not installed (pip install 'selinet-compress[litert-torch]')"
    return None


def tool_versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in ("litert-torch", "torch", "torchao", "ai-edge-litert"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def convert_with_litert_torch(
    model,
    out_path: str | os.PathLike,
    precision: str,
    checkpoint_sha256: str,
    calibration_nchw: dict[str, np.ndarray] | None = None,
    cache_dir: str | os.PathLike | None = None,
    per_channel: bool = True,
    log=print,
) -> tuple[Path, dict[str, Any]]:
    """SeLiNet ``model`` -> ``out_path``; cached by (checkpoint, precision, calibration, versions)."""
    import shutil

    from selinet_compress.io import atomic_path, sha256_json

    if precision not in PRECISIONS:
        raise UserError(f"litert-torch builds {', '.join(PRECISIONS)}, not {precision}")
    reason = available()
    if reason:
        raise UserError(reason)
    if precision == "int8_static" and not calibration_nchw:
        raise ValueError("int8_static needs calibration arrays")
    calibration_hash = arrays_sha256(calibration_nchw) if precision == "int8_static" else None
    key = sha256_json(
        {
            "checkpoint": checkpoint_sha256,
            "precision": precision,
            "per_channel": per_channel,
            "calibration": calibration_hash,
            "versions": tool_versions(),
        }
    )[:24]
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cached = cache / "litert-torch" / f"{key}.tflite"
    record: dict[str, Any] = {
        "pass": "litert_torch",
        "cache_key": key,
        "precision": precision,
        "per_channel": per_channel,
        "calibration_sha256": calibration_hash,
        "tool_versions": tool_versions(),
    }
    if not cached.is_file():
        cached.parent.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        log(f"litert-torch: converting ({precision}; takes minutes) ...")
        with atomic_path(cached) as tmp, contextlib.redirect_stdout(sys.stderr):
            # litert-torch prints its progress on stdout, which carries only the artifact path.
            try:
                _convert(model, tmp, precision, calibration_nchw, per_channel)
            except Exception as exc:  # the converter raises anything from torch.export to MLIR
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
                raise ConversionError(f"litert-torch {precision} conversion failed: {first}") from None
        record["seconds"] = round(time.monotonic() - start, 1)
        record["cached"] = False
    else:
        log(f"litert-torch: reusing {cached}")
        record["cached"] = True
    with atomic_path(out_path) as tmp:
        shutil.copyfile(cached, tmp)
    return Path(out_path), record


def _convert(
    model, path: Path, precision: str, calibration: dict[str, np.ndarray] | None, per_channel: bool
) -> None:
    import litert_torch
    import torch
    from litert_torch.quantize import pt2e_quantizer
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e import quantize_pt2e

    model = model.eval()
    args = model.example_inputs(1)
    if precision == "fp32":
        litert_torch.convert(model, args).export(str(path))
        return
    quantizer = pt2e_quantizer.PT2EQuantizer().set_global(
        pt2e_quantizer.get_symmetric_quantization_config(
            is_per_channel=per_channel, is_dynamic=precision == "int8_dynamic"
        )
    )
    graph = torch.export.export(model, args).module()
    prepared = quantize_pt2e.prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        if calibration:
            names = model.input_names
            for i in range(next(iter(calibration.values())).shape[0]):
                prepared(*[torch.from_numpy(np.ascontiguousarray(calibration[n][i : i + 1])) for n in names])
        else:  # dynamic: observers still need one pass to know the weights' ranges
            prepared(*args)
    converted = quantize_pt2e.convert_pt2e(prepared, fold_quantize=False)
    litert_torch.convert(converted, args, quant_config=QuantConfig(pt2e_quantizer=quantizer)).export(
        str(path)
    )
