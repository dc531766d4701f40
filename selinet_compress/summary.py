"""``inspect``: what a checkpoint holds, part by part, beside the paper's Table III sizes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

MB = 1e6  # the toolkit's MB is 10^6 bytes, everywhere


def summarize_checkpoint(path: str | os.PathLike, trust_pickled_code: bool = False) -> dict[str, Any]:
    """Config, parameters and fp32 MB per part, total, file size and the paper's size."""
    from selinet_compress.checkpoint import load_model
    from selinet_compress.model.selinet import PAPER_SIZE_MB, parameter_parts

    model, info = load_model(path, trust_pickled_code=trust_pickled_code)
    parts = parameter_parts(model)
    total = sum(parts.values())
    buffers = sum(b.numel() for name, b in model.named_buffers() if not name.endswith("num_batches_tracked"))
    ablation = model.config.ablation
    paper = PAPER_SIZE_MB.get(ablation)
    size_mb = total * 4 / MB
    return {
        "path": str(path),
        "kind": "pytorch",
        "format": info.format,
        "wrapping": info.wrapping,
        "config_source": info.config_source,
        "ablation": ablation,
        "config": model.config.to_dict(),
        "parts": {name: {"parameters": n, "size_mb": round(n * 4 / MB, 4)} for name, n in parts.items()},
        "parameters": total,
        "size_mb": round(size_mb, 4),
        "buffers": buffers,
        "file_size_mb": round(info.file_size / MB, 4),
        "paper_size_mb": paper,
        "size_vs_paper": round(size_mb / paper - 1.0, 4) if paper else None,
        "metadata": info.metadata,
    }


# Exported formats: suffix -> "module:function" summarising such a file, and summary kind ->
# "module:function" rendering it (imported on use, so inspecting a checkpoint loads no ONNX).
SUMMARIZERS: dict[str, str] = {
    ".onnx": "selinet_compress.audit.onnx_audit:summarize_onnx",
    ".tflite": "selinet_compress.audit.tflite_audit:summarize_tflite",
}
FORMATTERS: dict[str, str] = {
    "onnx": "selinet_compress.audit.onnx_audit:format_onnx_summary",
    "tflite": "selinet_compress.audit.tflite_audit:format_tflite_summary",
}


def _load(target: str):
    import importlib

    module, attribute = target.split(":")
    return getattr(importlib.import_module(module), attribute)


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable rendering of :func:`summarize_checkpoint`'s result."""
    if summary.get("kind") in FORMATTERS:
        return _load(FORMATTERS[summary["kind"]])(summary)
    cfg = summary["config"]
    lines = [
        f"{summary['path']}  ({summary['format']}"
        + (f", unwrapped: {' / '.join(summary['wrapping'])}" if summary["wrapping"] else "")
        + f"; config {summary['config_source']})",
        f"config: {summary['ablation']}  aesthetics={cfg['use_aesthetics']} attention={cfg['use_attention']} "
        f"sentiment={cfg['use_sentiment']}  body {cfg['body_size']}px, context {cfg['context_size']}px, "
        f"dropout {cfg['dropout']}",
        "",
        f"{'part':<28}{'parameters':>12}{'fp32 MB':>10}",
    ]
    for name, part in summary["parts"].items():
        lines.append(f"{name:<28}{part['parameters']:>12,}{part['size_mb']:>10.2f}")
    lines.append(f"{'total':<28}{summary['parameters']:>12,}{summary['size_mb']:>10.2f}")
    lines.append("")
    lines.append(f"file size: {summary['file_size_mb']:.2f} MB (weights + BatchNorm statistics + config)")
    if summary["paper_size_mb"]:
        lines.append(
            f"paper, Table III ({summary['ablation']}): {summary['paper_size_mb']:.2f} MB "
            f"-> this model is {summary['size_vs_paper'] * 100:+.1f} %"
        )
    return "\n".join(lines)


def summarize(path: str | os.PathLike, trust_pickled_code: bool = False) -> dict[str, Any]:
    """Summary of any model file the toolkit knows, chosen by suffix."""
    suffix = Path(path).suffix.lower()
    if suffix in SUMMARIZERS:
        return _load(SUMMARIZERS[suffix])(path)
    return summarize_checkpoint(path, trust_pickled_code)
