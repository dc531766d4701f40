"""The int8 audit of an ONNX file: node counts, weight bytes by dtype, and which ops run in int8,
fp16 or fp32 — so "int8" on a label can be checked against the graph.

A node counts as int8 when it is an integer kernel (QLinearConv, ConvInteger, MatMulInteger, ...)
or, in QDQ format, when one of its inputs comes from a DequantizeLinear (onnxruntime fuses such
DQ -> op -> Q groups into int8 kernels). Otherwise it runs in the float type of its input.
Quantize / dequantize / cast nodes are plumbing and not classified.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import onnx

PLUMBING = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "Cast", "Constant"})
COMPUTE = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
# Float compute as onnxruntime names it after fusing (FusedConv = Conv + activation, etc.).
COMPUTE_RUNTIME = COMPUTE | frozenset({"FusedConv", "FusedGemm", "FusedMatMul"})
FLOATS = ("fp32", "fp16", "bf16")
INTEGER_KERNELS = frozenset({"QGemm", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QAttention"})


def is_integer_kernel(op_type: str) -> bool:
    return op_type.startswith("QLinear") or op_type.endswith("Integer") or op_type in INTEGER_KERNELS


def _tensor_bytes(tensor: onnx.TensorProto) -> int:
    import numpy as np
    from onnx import helper

    if tensor.raw_data:
        return len(tensor.raw_data)
    count = int(np.prod(tensor.dims)) if tensor.dims else 1
    return count * np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize


def _dtype_name(data_type: int) -> str:
    from onnx import TensorProto

    # numpy-style names: "float32" rather than ONNX's "FLOAT".
    return {TensorProto.FLOAT: "float32", TensorProto.DOUBLE: "float64"}.get(
        data_type, TensorProto.DataType.Name(data_type).lower()
    )


def _weights(model: onnx.ModelProto) -> dict[str, dict[str, int]]:
    weights: dict[str, dict[str, int]] = defaultdict(lambda: {"tensors": 0, "bytes": 0})
    tensors = list(model.graph.initializer)
    tensors += [
        a.t for n in model.graph.node if n.op_type == "Constant" for a in n.attribute if a.name == "value"
    ]
    for tensor in tensors:
        entry = weights[_dtype_name(tensor.data_type)]
        entry["tensors"] += 1
        entry["bytes"] += _tensor_bytes(tensor)
    return dict(sorted(weights.items(), key=lambda kv: -kv[1]["bytes"]))


def _tensor_types(model: onnx.ModelProto) -> dict[str, str]:
    """Tensor name -> 'fp32' / 'fp16' / 'bf16' / 'int8' (int8 or uint8 data) from shape inference
    on a weight-free copy; other types are left out."""
    import onnx
    from onnx import TensorProto

    skeleton = onnx.ModelProto()
    skeleton.CopyFrom(model)
    types = {t.name: t.data_type for t in skeleton.graph.initializer}
    del skeleton.graph.initializer[:]
    for name, data_type in types.items():  # keep initializer types visible to inference
        skeleton.graph.input.append(onnx.helper.make_tensor_value_info(name, data_type, None))
    try:
        inferred = onnx.shape_inference.infer_shapes(skeleton, strict_mode=False)
    except Exception:  # an unknown custom op: fall back to the declared types only
        inferred = skeleton
    names = {
        TensorProto.FLOAT: "fp32",
        TensorProto.FLOAT16: "fp16",
        TensorProto.BFLOAT16: "bf16",
        TensorProto.INT8: "int8",
        TensorProto.UINT8: "int8",
    }
    result = {}
    for info in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        data_type = info.type.tensor_type.elem_type
        if data_type in names:
            result[info.name] = names[data_type]
    return result


def module_group(scope: str, depth: int = 2) -> str:
    """``body.features.3.block.1`` -> ``body.features``; the root module is '(root)'."""
    return ".".join(scope.split(".")[:depth]) if scope else "(root)"


def classify_nodes(model: onnx.ModelProto, qdq_is_int8: bool = True) -> dict[str, str]:
    """Node name -> 'int8' | 'fp16' | 'fp32' | 'other' for every non-plumbing node (see module doc).

    ``qdq_is_int8``: a node fed by a DequantizeLinear counts as int8 (true of a QDQ file, whose
    groups onnxruntime fuses; false of onnxruntime's optimised graph, where a DequantizeLinear left
    in place feeds a float kernel)."""
    nodes = list(model.graph.node)
    producer = {out: node for node in nodes for out in node.output}
    tensor_types = _tensor_types(model)
    precision: dict[str, str] = {}
    for index, node in enumerate(nodes):
        if node.op_type in PLUMBING:
            continue
        name = node.name or f"{node.op_type}_{index}"
        if is_integer_kernel(node.op_type) or (
            qdq_is_int8
            and any(
                producer.get(i) is not None and producer[i].op_type == "DequantizeLinear" for i in node.input
            )
        ):
            precision[name] = "int8"
        else:
            kinds = [tensor_types[i] for i in node.input if i in tensor_types]
            precision[name] = kinds[0] if kinds else "other"
    return precision


def _precision_tables(model: onnx.ModelProto, qdq_is_int8: bool) -> tuple[dict[str, str], dict[str, Any]]:
    precision = classify_nodes(model, qdq_is_int8)
    by_op: dict[str, Counter] = defaultdict(Counter)
    for index, node in enumerate(model.graph.node):
        name = node.name or f"{node.op_type}_{index}"
        if name in precision:
            by_op[node.op_type][precision[name]] += 1
    float_ops = Counter({op: sum(c[k] for k in FLOATS) for op, c in by_op.items()})
    float_ops = +float_ops  # drop zero counts
    return precision, {
        "nodes": len(model.graph.node),
        "node_counts": dict(Counter(n.op_type for n in model.graph.node).most_common()),
        "precision_counts": dict(Counter(precision.values()).most_common()),
        "ops_by_precision": {op: dict(c) for op, c in sorted(by_op.items())},
        "float_ops": dict(float_ops.most_common()),
    }


def runtime_graph(path: str | os.PathLike) -> onnx.ModelProto:
    """The graph onnxruntime's CPU provider runs after its optimisations (QDQ groups fused into
    int8 kernels, Casts inserted where an op has no fp16 kernel). Hardware-specific layout passes
    are left out (level EXTENDED), so the graph is the same on every x86 / Arm CPU."""
    import tempfile

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="selinet-audit-") as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = os.path.join(tmp, "optimized.onnx")
        options.log_severity_level = 3
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return onnx.load(options.optimized_model_filepath)


def audit_onnx(path: str | os.PathLike, scopes: dict[str, str] | None = None) -> dict[str, Any]:
    """Audit the ONNX file at ``path``: weights by dtype and op precisions in the file, and what
    onnxruntime (CPU) really runs: ``runtime.float_ops`` are the ops left in float. ``scopes``
    (node name -> PyTorch module path, known at build time) adds the float compute ops per module."""
    from selinet_compress.passes.onnx_export import load_onnx

    model = load_onnx(path)
    weights = _weights(model)
    weight_bytes = sum(w["bytes"] for w in weights.values())
    file_precision, file_tables = _precision_tables(model, qdq_is_int8=True)
    _, runtime_tables = _precision_tables(runtime_graph(path), qdq_is_int8=False)
    runtime_float_compute = sum(n for op, n in runtime_tables["float_ops"].items() if op in COMPUTE_RUNTIME)
    result: dict[str, Any] = {
        "kind": "onnx",
        **file_tables,
        "weights": weights,
        "weight_bytes": weight_bytes,
        "weight_bytes_int8": sum(w["bytes"] for k, w in weights.items() if k in ("int8", "uint8")),
        "runtime": {
            "provider": "CPUExecutionProvider",
            "optimization": "ORT_ENABLE_EXTENDED",
            **runtime_tables,
            "int8_kernels": runtime_tables["precision_counts"].get("int8", 0),
            "float_compute_ops": runtime_float_compute,
        },
        "float_compute_nodes": [
            n.name for n in model.graph.node if n.op_type in COMPUTE and file_precision.get(n.name) in FLOATS
        ],
    }
    if scopes:
        groups = Counter(module_group(scopes.get(name, "")) for name in result["float_compute_nodes"])
        result["float_compute_by_module"] = dict(groups.most_common())
    return result


def format_audit(audit: dict[str, Any]) -> list[str]:
    """Lines for ``inspect``: weights by dtype, precisions in the file and at run time, float ops."""
    mb = 1e6

    def counts(table: dict[str, int]) -> str:
        return ", ".join(f"{k} {v}" for k, v in table.items()) or "none"

    lines = [f"{'weights':<12}{'tensors':>9}{'MB':>10}"]
    for dtype, entry in audit["weights"].items():
        lines.append(f"{dtype:<12}{entry['tensors']:>9}{entry['bytes'] / mb:>10.2f}")
    lines.append(f"{'total':<12}{'':>9}{audit['weight_bytes'] / mb:>10.2f}")
    lines.append("")
    lines.append(
        f"file: {audit['nodes']} nodes; ops by precision (Q/DQ/Cast excluded): "
        f"{counts(audit['precision_counts'])}"
    )
    runtime = audit["runtime"]
    int8_ops = {op: c["int8"] for op, c in runtime["ops_by_precision"].items() if c.get("int8")}
    lines.append(
        f"onnxruntime CPU runs {runtime['nodes']} nodes: int8 kernels {runtime['int8_kernels']} "
        f"({counts(int8_ops)})"
    )
    floats = ", ".join(
        f"{op} {kind} {n}"
        for op, c in runtime["ops_by_precision"].items()
        for kind, n in c.items()
        if kind in FLOATS
    )
    lines.append(f"left in float at run time: {floats or 'nothing'}")
    if audit.get("float_compute_by_module"):
        lines.append(f"float Conv/Gemm/MatMul by module: {counts(audit['float_compute_by_module'])}")
    return lines


# Initializer-name prefixes -> the parts `inspect` shows for a checkpoint (same names).
PARTS: tuple[tuple[str, str], ...] = (
    ("body.features.", "body trunk"),
    ("body.", "body attention+dense"),
    ("aesthetics.features.", "aesthetics trunk"),
    ("aesthetics.", "aesthetics attention+dense"),
    ("fusion.", "fusion"),
    ("emotion_head.", "heads"),
    ("sentiment_head.", "heads"),
)
UNNAMED_PART = "unnamed (folded biases, constants)"


def _part(name: str) -> str:
    return next((part for prefix, part in PARTS if name.startswith(prefix)), UNNAMED_PART)


def summarize_onnx(path: str | os.PathLike, **_: object) -> dict[str, Any]:
    """What an ONNX file holds, for ``inspect``: config, I/O, weights per part and dtype, the int8
    audit, and how it was made (from its sidecar, when present). Keys follow the checkpoint
    summary where they mean the same (``parameters``, ``size_mb``, ``parts``, ``config``)."""
    import numpy as np

    from selinet_compress.io import read_sidecar
    from selinet_compress.passes.onnx_export import get_metadata, load_onnx
    from selinet_compress.runtimes.onnx_runner import read_config

    model = load_onnx(path)
    metadata = get_metadata(model)
    config = read_config(Path(path), metadata)
    sidecar = read_sidecar(path) or {}
    parts: dict[str, dict[str, int]] = defaultdict(lambda: {"parameters": 0, "bytes": 0})
    for tensor in model.graph.initializer:
        entry = parts[_part(tensor.name)]
        entry["parameters"] += int(np.prod(tensor.dims)) if tensor.dims else 1
        entry["bytes"] += _tensor_bytes(tensor)
    order = [p for _, p in PARTS] + [UNNAMED_PART]
    size = Path(path).stat().st_size

    def io(values) -> list[dict[str, Any]]:
        from onnx import TensorProto

        return [
            {
                "name": v.name,
                "dtype": TensorProto.DataType.Name(v.type.tensor_type.elem_type).lower(),
                "shape": [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim],
            }
            for v in values
        ]

    made = None
    if sidecar:
        recipe = sidecar.get("recipe") or {}
        made = {
            "recipe": recipe.get("name"),
            "precision": recipe.get("precision"),
            "checkpoint_sha256": (sidecar.get("checkpoint") or {}).get("sha256"),
            "calibration_samples": (sidecar.get("calibration") or {}).get("used"),
            "created": sidecar.get("created"),
            "warnings": sidecar.get("warnings", []),
            "agreement_vs_pytorch": sidecar.get("agreement_vs_pytorch"),
        }
    audit = audit_onnx(path)
    if sidecar.get("audit", {}).get("float_compute_by_module"):
        audit["float_compute_by_module"] = sidecar["audit"]["float_compute_by_module"]
    return {
        "path": str(path),
        "kind": "onnx",
        "format": "onnx",
        "opset": next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None),
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "config_source": "metadata" if "selinet_config" in metadata else "sidecar",
        "ablation": config.ablation,
        "config": config.to_dict(),
        "inputs": io(model.graph.input),
        "outputs": io(model.graph.output),
        "parts": {
            name: {"parameters": parts[name]["parameters"], "size_mb": round(parts[name]["bytes"] / 1e6, 4)}
            for name in order
            if name in parts
        },
        "parameters": sum(p["parameters"] for p in parts.values()),
        "size_mb": round(size / 1e6, 4),
        "file_size_mb": round(size / 1e6, 4),
        "weight_mb": round(audit["weight_bytes"] / 1e6, 4),
        "made_by": made,
        "audit": audit,
    }


def format_onnx_summary(summary: dict[str, Any]) -> str:
    """Human-readable rendering of :func:`summarize_onnx`."""
    cfg = summary["config"]

    def shapes(values: list[dict]) -> str:
        return ", ".join(
            f"{v['name']} {v['dtype']} [{' x '.join(str(d) for d in v['shape'])}]" for v in values
        )

    lines = [
        f"{summary['path']}  (ONNX opset {summary['opset']}, {summary['producer']}; config from "
        f"{summary['config_source']})",
        f"config: {summary['ablation']}  aesthetics={cfg['use_aesthetics']} attention={cfg['use_attention']} "
        f"sentiment={cfg['use_sentiment']}  body {cfg['body_size']}px, context {cfg['context_size']}px",
        f"inputs: {shapes(summary['inputs'])}",
        f"outputs: {shapes(summary['outputs'])}",
    ]
    made = summary.get("made_by")
    if made:
        lines.append(
            f"made by recipe {made['recipe']} ({made['precision']}) from checkpoint "
            f"{(made['checkpoint_sha256'] or '?')[:12]} on {made['created']}"
            + (f", {made['calibration_samples']} calibration samples" if made["calibration_samples"] else "")
        )
        for warning in made["warnings"]:
            lines.append(f"  warning recorded: {warning}")
    lines += ["", f"{'part':<36}{'parameters':>12}{'MB':>10}"]
    for name, part in summary["parts"].items():
        lines.append(f"{name:<36}{part['parameters']:>12,}{part['size_mb']:>10.2f}")
    lines.append(f"{'total':<36}{summary['parameters']:>12,}{summary['weight_mb']:>10.2f}")
    lines.append(f"file size: {summary['file_size_mb']:.2f} MB")
    lines.append("")
    lines += format_audit(summary["audit"])
    return "\n".join(lines)
