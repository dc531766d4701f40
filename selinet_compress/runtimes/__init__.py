"""Runners: one per target (torch, onnx, tflite), same NCHW float32 inputs, same outputs.

Importing this package registers every runner; heavy runtime libraries are imported only when a
runner opens a model.
"""

from selinet_compress.runtimes import torch_runner  # noqa: F401  (registers "torch")
from selinet_compress.runtimes import onnx_runner  # noqa: F401  (registers "onnx")
from selinet_compress.runtimes import tflite_runner  # noqa: F401  (registers "tflite")
from selinet_compress.runtimes.base import RUNTIMES, Runner, open_runner, target_for_path

__all__ = ["RUNTIMES", "Runner", "open_runner", "target_for_path"]
