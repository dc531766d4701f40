"""Runners: one per target (torch, onnx, tflite), same NCHW float32 inputs, same outputs.

Importing this package registers every runner; heavy runtime libraries are imported only when a
runner opens a model.
"""

from selinet_compress.runtimes import (
    onnx_runner,  # noqa: F401  (registers "onnx")
    tflite_runner,  # noqa: F401  (registers "tflite")
    torch_runner,  # noqa: F401  (registers "torch")
)
from selinet_compress.runtimes.base import RUNTIMES, Runner, open_runner, target_for_path

__all__ = ["RUNTIMES", "Runner", "open_runner", "target_for_path"]
