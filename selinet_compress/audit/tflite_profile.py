"""Per-op timing of a .tflite file on LiteRT + XNNPACK, without the C++ benchmark tool.

The ``ai_edge_litert`` wheel ships neither ``benchmark_model`` nor a Python profiler, so each op
is timed alone: :meth:`TFLiteGraph.single_op_model` builds a one-op model with the op's real
weights and quantization, XNNPACK (or the builtin kernel, when XNNPACK refuses the op) runs it
``runs`` times, and the median is kept. Summed per op type and precision this shows where the
time goes and which ops fall back to TFLite's own kernels. The sum is not a latency (each one-op
invoke pays a fixed overhead, XNNPACK cannot fuse across ops, a lone op runs with warm caches,
and partition hand-overs are missing), so compare op types across files, not the sum with the
whole-model time reported beside it.
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any

from selinet_compress.audit.tflite_audit import (
    TFLiteGraph,
    _delegated_outputs,
    op_key,
    open_interpreter,
    time_invoke,
)


def profile_ops(
    path: str | os.PathLike, threads: int = 2, runs: int = 20, progress: bool = False
) -> dict[str, Any]:
    """{"ops": {op/precision: {count, ms, delegated}}, "sum_ms", "model_ms", "partitions"}."""
    from tqdm import tqdm

    graph = TFLiteGraph(path)
    table: dict[str, dict[str, float]] = defaultdict(lambda: {"count": 0, "ms": 0.0, "delegated": 0})
    skipped = set(map(id, graph.static_producers().values()))
    for op in tqdm(
        graph.graph.operators, desc=f"profiling {graph.path.name}", disable=not progress, leave=False
    ):
        if id(op) in skipped:
            continue
        interpreter, partitions = open_interpreter(graph.single_op_model(op), threads=threads)
        entry = table[op_key(graph, op)]
        entry["count"] += 1
        entry["ms"] += time_invoke(interpreter, runs=runs)
        entry["delegated"] += int(bool(partitions) and _delegated_outputs(interpreter))
    model, partitions = open_interpreter(path=graph.path, threads=threads)
    ops = {k: {**v, "ms": round(v["ms"], 4)} for k, v in sorted(table.items(), key=lambda kv: -kv[1]["ms"])}
    return {
        "path": str(graph.path),
        "threads": threads,
        "runs": runs,
        "ops": ops,
        "sum_ms": round(sum(v["ms"] for v in ops.values()), 3),
        "model_ms": round(time_invoke(model, runs=runs * 2), 3),
        "partitions": partitions,
    }


def format_profile(profile: dict[str, Any], top: int = 12) -> list[str]:
    lines = [
        f"{profile['path']}: whole model {profile['model_ms']:.2f} ms ({profile['partitions']} XNNPACK "
        f"partition(s)), sum of one-op runs {profile['sum_ms']:.2f} ms, {profile['threads']} thread(s)"
    ]
    for key, entry in list(profile["ops"].items())[:top]:
        lines.append(
            f"  {key:<30} x{int(entry['count']):<4} {entry['ms']:8.3f} ms  "
            f"XNNPACK {int(entry['delegated'])}/{int(entry['count'])}"
        )
    return lines
