"""Pass: fp32 ONNX -> fp16 weights and compute, float32 inputs and outputs.

onnxconverter-common is not a dependency; onnxruntime ships the same converter
(``onnxruntime.transformers.float16``). Inputs and outputs stay float32 (a Cast at each end) so the
runner contract — float32 NCHW in, float32 scores out — holds for every file.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import onnx


def convert_fp16(
    model: onnx.ModelProto, keep_op_types: Sequence[str] = (), keep_nodes: Sequence[str] = ()
) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """A new fp16 model (the input is not changed) and a record of what stayed float32."""
    import copy

    from onnxruntime.transformers import float16

    block_ops = sorted({*float16.DEFAULT_OP_BLOCK_LIST, *keep_op_types})
    converted = float16.convert_float_to_float16(
        copy.deepcopy(model),
        keep_io_types=True,
        op_block_list=block_ops,
        node_block_list=list(keep_nodes),
    )
    return converted, {
        "converter": "onnxruntime.transformers.float16.convert_float_to_float16",
        "keep_io_types": True,
        "op_types_kept_float32": sorted(set(keep_op_types)),
        "nodes_kept_float32": list(keep_nodes),
    }
