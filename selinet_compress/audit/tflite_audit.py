"""The audit of a .tflite file: what it really is, read from the flatbuffer and the interpreter.

* tensors and constant bytes by dtype, quantization-parameter bytes (per-channel int8 stores a
  float32 scale and an int64 zero point per output channel, for weights and biases);
* op counts, each op's compute precision (fp32, fp16, int8, hybrid = int8 weights with float
  activations as in dynamic-range files), and the ops left in float in a "full-integer" file;
* which ops XNNPACK delegates: every op is loaded alone in a one-op model (XNNPACK decides op by
  op from its type, dtypes and quantization), and the whole model's delegate partitions are
  counted -- each partition boundary is a hand-over to TFLite's own (slower) kernels.

The one-op models also serve :mod:`selinet_compress.audit.tflite_profile` (per-op timing).
"""

from __future__ import annotations

import copy
import os
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

PLUMBING = frozenset({"QUANTIZE", "DEQUANTIZE"})
DATA_MOVEMENT = frozenset(
    {
        "RESHAPE",
        "TRANSPOSE",
        "PAD",
        "PADV2",
        "CONCATENATION",
        "SQUEEZE",
        "EXPAND_DIMS",
        "STRIDED_SLICE",
        "SLICE",
        "GATHER",
        "PACK",
        "UNPACK",
        "SPLIT",
        "SPLIT_V",
    }
)
FLOAT_TYPES = {"FLOAT32": "fp32", "FLOAT16": "fp16"}
INT_TYPES = {"INT8": "int8", "UINT8": "int8", "INT16": "int16"}


def _enum_names(enum_class) -> dict[int, str]:
    return {v: k for k, v in vars(enum_class).items() if not k.startswith("_") and isinstance(v, int)}


class TFLiteGraph:
    """The first subgraph of a .tflite file through the flatbuffer object API."""

    def __init__(self, path: str | os.PathLike) -> None:
        from ai_edge_litert import schema_py_generated as schema
        from ai_edge_litert.tools import flatbuffer_utils

        from selinet_compress.runtimes.tflite_runner import check_flatbuffer

        self.path = Path(path)
        check_flatbuffer(self.path)
        self.schema = schema
        self.model = flatbuffer_utils.read_model(str(self.path))
        self.graph = self.model.subgraphs[0]
        self._ops = _enum_names(schema.BuiltinOperator)
        self._types = _enum_names(schema.TensorType)

    def op_name(self, op) -> str:
        code = self.model.operatorCodes[op.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        if builtin == self.schema.BuiltinOperator.CUSTOM:
            return f"CUSTOM:{(code.customCode or b'').decode()}"
        return self._ops.get(builtin, str(builtin))

    def type_name(self, tensor_index: int) -> str:
        return self._types.get(self.graph.tensors[tensor_index].type, "?")

    def is_constant(self, tensor_index: int) -> bool:
        tensor = self.graph.tensors[tensor_index]
        data = self.model.buffers[tensor.buffer].data if tensor.buffer else None
        return data is not None and len(data) > 0

    def precision(self, op) -> str:
        """Compute precision of one op: fp32 / fp16 / int8 / int16 / hybrid / plumbing."""
        name = self.op_name(op)
        if name in PLUMBING:
            return "plumbing"
        variable = [t for t in op.inputs if t >= 0 and not self.is_constant(t)]
        constant = [t for t in op.inputs if t >= 0 and self.is_constant(t)]
        kinds = {self.type_name(t) for t in variable} or {self.type_name(op.outputs[0])}
        if kinds & set(FLOAT_TYPES):
            if any(self.type_name(t) in INT_TYPES for t in constant):
                return "hybrid"  # dynamic range: int8 weights, float activations
            return "fp16" if kinds == {"FLOAT16"} else "fp32"
        for kind in kinds:
            if kind in INT_TYPES:
                return INT_TYPES[kind]
        return kinds.pop().lower()

    def static_producers(self) -> dict[int, Any]:
        """tensor -> the DEQUANTIZE op making it from a constant (fp16 / int8 weights)."""
        if not hasattr(self, "_static_producers"):
            self._static_producers = {
                op.outputs[0]: op
                for op in self.graph.operators
                if self.op_name(op) == "DEQUANTIZE" and all(self.is_constant(t) for t in op.inputs if t >= 0)
            }
        return self._static_producers

    def single_op_model(self, op) -> bytes:
        """A model holding only ``op``: its variable inputs become the model's inputs, its
        constant inputs keep their data (so XNNPACK sees the same static weights). A weight that
        a DEQUANTIZE makes from a constant (fp16 files) keeps that DEQUANTIZE in front."""
        from ai_edge_litert.tools import flatbuffer_utils

        schema = self.schema
        model = schema.ModelT()
        model.version = self.model.version
        model.operatorCodes = self.model.operatorCodes
        model.buffers = [schema.BufferT()]
        graph = schema.SubGraphT()
        graph.tensors, graph.inputs, graph.operators = [], [], []
        remap: dict[int, int] = {}
        producers = self.static_producers()
        ops = [producers[t] for t in op.inputs if t in producers and op is not producers[t]] + [op]
        produced = {t for o in ops for t in o.outputs}
        for o in ops:
            for t in [*o.inputs, *o.outputs]:
                if t < 0 or t in remap:
                    continue
                tensor = copy.copy(self.graph.tensors[t])
                if self.is_constant(t):
                    model.buffers.append(self.model.buffers[tensor.buffer])
                    tensor.buffer = len(model.buffers) - 1
                else:
                    tensor.buffer = 0
                    if t not in produced:
                        graph.inputs.append(len(graph.tensors))
                remap[t] = len(graph.tensors)
                graph.tensors.append(tensor)
            new_op = copy.copy(o)
            new_op.inputs = [remap[t] if t >= 0 else -1 for t in o.inputs]
            new_op.outputs = [remap[t] for t in o.outputs]
            graph.operators.append(new_op)
        graph.outputs = [remap[t] for t in op.outputs]
        model.subgraphs = [graph]
        return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def open_interpreter(
    content: bytes | None = None,
    path: str | os.PathLike | None = None,
    threads: int = 1,
    xnnpack: bool = True,
):
    """An allocated interpreter and the number of XNNPACK delegate partitions it made."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    kwargs = {"model_content": content} if content is not None else {"model_path": str(path)}
    interpreter = Interpreter(num_threads=threads, experimental_op_resolver_type=resolver, **kwargs)
    before = interpreter._interpreter.NumNodes()
    interpreter.allocate_tensors()
    # Delegation appends one DELEGATE node per partition after the model's own nodes.
    partitions = interpreter._interpreter.NumNodes() - before
    return interpreter, partitions


def time_invoke(interpreter, runs: int = 20, warmup: int = 2) -> float:
    """Median invoke time in ms, zero inputs (timing does not depend on values here)."""
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
    for _ in range(warmup):
        interpreter.invoke()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        interpreter.invoke()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def op_key(graph: TFLiteGraph, op) -> str:
    precision = graph.precision(op)
    return f"{graph.op_name(op)}/{precision}" if precision != "plumbing" else graph.op_name(op)


def describe_kind(
    precisions: Counter, io_types: set[str], float_ops: dict[str, int], fp16_weights: bool
) -> str:
    """One line saying what the file really is."""
    compute = {k: v for k, v in precisions.items() if k != "plumbing"}
    if compute.get("hybrid"):
        return (
            "dynamic-range: int8 weights, float activations (hybrid kernels quantize activations "
            "on every call)"
        )
    if compute.get("int8") and not float_ops:
        io = "int8 I/O" if io_types <= {"INT8", "UINT8"} else "float I/O, QUANTIZE/DEQUANTIZE at the edges"
        return f"full-integer int8 ({io})"
    if compute.get("int8"):
        return f"mixed: int8 with {sum(float_ops.values())} op(s) in float"
    if compute.get("int16"):
        return "int16 activations / int8 weights"
    if fp16_weights:
        return "fp16 weights, dequantized to fp32 (the CPU computes in fp32 unless it has fp16 kernels)"
    return "fp32"


def audit_tflite(path: str | os.PathLike, delegation: bool = True) -> dict[str, Any]:
    """What ``path`` holds and runs: tensors by dtype, ops by precision, float ops, XNNPACK."""
    graph = TFLiteGraph(path)
    g = graph.graph
    weights: dict[str, dict[str, int]] = defaultdict(lambda: {"tensors": 0, "bytes": 0})
    tensors_by_dtype: Counter = Counter()
    quant_bytes = 0
    per_channel = 0
    for index, tensor in enumerate(g.tensors):
        kind = graph.type_name(index).lower()
        tensors_by_dtype[kind] += 1
        if graph.is_constant(index):
            weights[kind]["tensors"] += 1
            weights[kind]["bytes"] += len(graph.model.buffers[tensor.buffer].data)
        q = tensor.quantization
        if q is not None and q.scale is not None:
            quant_bytes += 4 * len(q.scale) + 8 * (len(q.zeroPoint) if q.zeroPoint is not None else 0)
            per_channel += int(len(q.scale) > 1)
    node_counts = Counter(graph.op_name(op) for op in g.operators)
    precisions = Counter(graph.precision(op) for op in g.operators)
    op_precisions = Counter(op_key(graph, op) for op in g.operators)
    inputs, outputs = set(g.inputs), set(g.outputs)
    float_ops: Counter = Counter()
    for op in g.operators:
        precision = graph.precision(op)
        if precision in ("fp32", "fp16", "hybrid"):
            float_ops[graph.op_name(op)] += 1
    io_types = {graph.type_name(t) for t in [*inputs, *outputs]}
    fp16_weights = "float16" in weights
    # Plumbing at the edges of a float-I/O integer model is expected; anywhere else it means a
    # float island inside the int8 graph.
    inner_plumbing = sum(
        1
        for op in g.operators
        if graph.op_name(op) in PLUMBING
        and not (set(op.inputs) & inputs or set(op.outputs) & outputs)
        and not (graph.op_name(op) == "DEQUANTIZE" and all(graph.is_constant(t) for t in op.inputs))
    )
    result: dict[str, Any] = {
        "kind": "tflite",
        "path": str(graph.path),
        "file_size_bytes": graph.path.stat().st_size,
        "what_it_is": describe_kind(precisions, io_types, dict(float_ops), fp16_weights),
        "nodes": len(g.operators),
        "node_counts": dict(node_counts.most_common()),
        "op_precisions": dict(op_precisions.most_common()),
        "precision_counts": {k: v for k, v in precisions.items() if k != "plumbing"},
        "tensors_by_dtype": dict(tensors_by_dtype.most_common()),
        "weights": dict(sorted(weights.items(), key=lambda kv: -kv[1]["bytes"])),
        "weight_bytes": sum(w["bytes"] for w in weights.values()),
        "weight_bytes_int8": sum(w["bytes"] for k, w in weights.items() if k in ("int8", "uint8")),
        "quantization_param_bytes": quant_bytes,
        "per_channel_tensors": per_channel,
        "float_ops": dict(float_ops.most_common()),
        "float_compute_ops": {k: v for k, v in float_ops.items() if k not in DATA_MOVEMENT},
        "quantize_dequantize_inside": inner_plumbing,
        "io_types": {
            graph.graph.tensors[t].name.decode(): graph.type_name(t) for t in [*g.inputs, *g.outputs]
        },
        "full_integer": bool(precisions.get("int8")) and not float_ops,
    }
    if delegation:
        result["xnnpack"] = xnnpack_delegation(graph)
    return result


def xnnpack_delegation(graph: TFLiteGraph) -> dict[str, Any]:
    """Which ops XNNPACK takes (one-op models) and into how many partitions the model splits."""
    not_delegated: Counter = Counter()
    delegated = 0
    for op in graph.graph.operators:
        if op in graph.static_producers().values():
            continue  # weight unpacking, judged together with the op that consumes it
        try:
            interpreter, partitions = open_interpreter(graph.single_op_model(op))
            taken = partitions and _delegated_outputs(interpreter)
        except (ValueError, RuntimeError):
            taken = False
        if taken:
            delegated += 1
        else:
            not_delegated[op_key(graph, op)] += 1
    try:
        _interp, partitions = open_interpreter(path=graph.path)
    except (ValueError, RuntimeError):
        partitions = None
    counted = len(graph.graph.operators) - len(graph.static_producers())
    return {
        "delegated_ops": delegated,
        "total_ops": counted,
        "not_delegated": dict(not_delegated.most_common()),
        "partitions": partitions,
    }


def _delegated_outputs(interpreter) -> bool:
    """True when the one-op model's output comes out of a DELEGATE node (XNNPACK ran the op)."""
    wrapper = interpreter._interpreter
    outputs = set(interpreter._interpreter.OutputIndices())
    nodes = [i for i in range(wrapper.NumNodes()) if wrapper.NodeName(i) == "DELEGATE"]
    return any(outputs & set(wrapper.NodeOutputs(i)) for i in nodes)


def format_tflite_audit(audit: dict[str, Any]) -> list[str]:
    """Lines for ``inspect`` and reports."""

    def counts(table: dict[str, int]) -> str:
        return ", ".join(f"{k} {v}" for k, v in table.items()) or "none"

    lines = [
        f"what it is: {audit['what_it_is']}",
        f"ops ({audit['nodes']}): {counts(audit['node_counts'])}",
        f"compute precision: {counts(audit['precision_counts'])}",
        "constant bytes by dtype: "
        + ", ".join(
            f"{k} {w['bytes'] / 1e6:.2f} MB ({w['tensors']} tensors)" for k, w in audit["weights"].items()
        ),
        f"quantization parameters: {audit['quantization_param_bytes'] / 1e6:.3f} MB "
        f"({audit['per_channel_tensors']} per-channel tensors)",
        f"ops left in float: {counts(audit['float_ops'])}",
    ]
    xnn = audit.get("xnnpack")
    if xnn:
        lines.append(
            f"XNNPACK delegates {xnn['delegated_ops']}/{xnn['total_ops']} ops in {xnn['partitions']} "
            f"partition(s); not delegated: {counts(xnn['not_delegated'])}"
        )
    return lines


def summarize_tflite(path: str | os.PathLike) -> dict[str, Any]:
    """``inspect model.tflite``: I/O, config source, size and the audit."""
    import warnings

    from selinet_compress.runtimes.tflite_runner import LiteRTRunner

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runner = LiteRTRunner.open(path, threads=1)
    audit = audit_tflite(path)
    return {
        "kind": "tflite",
        "path": str(path),
        "format": "tflite",
        "config_source": runner.config_source,
        "ablation": runner.config.ablation,
        "config": runner.config.to_dict(),
        "inputs": {
            n: {
                "shape": [int(s) for s in d["shape"]],
                "dtype": np.dtype(d["dtype"]).name,
                "layout": d["layout"],
            }
            for n, d in runner._input_map.items()
        },
        "outputs": {
            n: {"shape": [int(s) for s in d["shape"]], "dtype": np.dtype(d["dtype"]).name}
            for n, d in runner._output_map.items()
        },
        "size_mb": round(Path(path).stat().st_size / 1e6, 4),
        "audit": audit,
    }


def format_tflite_summary(summary: dict[str, Any]) -> str:
    lines = [
        f"{summary['path']}  (tflite, {summary['size_mb']:.2f} MB; config from {summary['config_source']})",
        f"config: {summary['ablation']}",
    ]
    for kind in ("inputs", "outputs"):
        lines.append(
            f"{kind}: "
            + ", ".join(
                f"{n} {'x'.join(map(str, d['shape']))} {d['dtype']}"
                + (f" {d['layout']}" if "layout" in d else "")
                for n, d in summary[kind].items()
            )
        )
    return "\n".join([*lines, "", *format_tflite_audit(summary["audit"])])
