"""Shared, built-once inputs of the TFLite tests: a tiny two-input net with SeLiNet's interface
(inputs ``body`` 32 px / ``context`` 48 px, outputs ``emotions`` x26 / ``sentiments`` x3) and
the ops that matter for TFLite (HardSwish, a HardSigmoid gate, softmax attention pooling with a
MatMul, Linear heads), exported to ONNX with a symbolic batch like the real export, and
converted once per session with the REAL onnx2tf and TFLite converter (~1 minute in all).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BODY, CONTEXT = 32, 48


def tiny_config():
    from selinet_compress.model.selinet import SeLiNetConfig

    return SeLiNetConfig(body_size=BODY, context_size=CONTEXT)


def tiny_net():
    import torch
    from torch import nn

    class Branch(nn.Module):
        def __init__(self, width: int) -> None:
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1), nn.BatchNorm2d(width), nn.Hardswish())
            self.dw = nn.Sequential(
                nn.Conv2d(width, width, 3, 1, 1, groups=width), nn.BatchNorm2d(width), nn.ReLU()
            )
            self.se1, self.se2 = nn.Conv2d(width, 8, 1), nn.Conv2d(8, width, 1)
            self.score = nn.Conv2d(width, 1, 1)

        def forward(self, x):
            x = self.dw(self.stem(x))
            gate = nn.functional.hardsigmoid(self.se2(torch.relu(self.se1(x.mean((2, 3), keepdim=True)))))
            x = x * gate
            weights = torch.softmax(self.score(x).flatten(2), dim=-1)
            return torch.matmul(x.flatten(2), weights.transpose(1, 2)).flatten(1)

    class Tiny(nn.Module):
        input_names = ("body", "context")
        output_names = ("emotions", "sentiments")

        def __init__(self) -> None:
            super().__init__()
            self.config = tiny_config()
            self.body, self.context = Branch(16), Branch(24)
            self.fuse = nn.Sequential(nn.Linear(40, 32), nn.ReLU())
            self.emotions, self.sentiments = nn.Linear(32, 26), nn.Linear(32, 3)

        def example_inputs(self, batch: int = 1):
            return torch.zeros(batch, 3, BODY, BODY), torch.zeros(batch, 3, CONTEXT, CONTEXT)

        def forward(self, body, context):
            fused = self.fuse(torch.cat([self.body(body), self.context(context)], dim=1))
            return self.emotions(fused), self.sentiments(fused)

    torch.manual_seed(0)
    net = Tiny()
    net.train()
    with torch.no_grad():  # BatchNorm statistics from data, so activations have a sane range
        for _ in range(3):
            net(torch.randn(8, 3, BODY, BODY), torch.randn(8, 3, CONTEXT, CONTEXT))
    return net.eval()


def samples(count: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "body": rng.standard_normal((count, 3, BODY, BODY)).astype(np.float32),
        "context": rng.standard_normal((count, 3, CONTEXT, CONTEXT)).astype(np.float32),
    }


def torch_outputs(net, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import torch

    with torch.no_grad():
        emotions, sentiments = net(*(torch.from_numpy(inputs[n]) for n in ("body", "context")))
    return {"emotions": emotions.numpy(), "sentiments": sentiments.numpy()}


@dataclass(frozen=True)
class TinySetup:
    root: Path
    net: object
    onnx: Path
    onnx_sha256: str
    cache: Path
    calibration_nhwc: dict


@functools.cache
def tiny_setup(base: Path) -> TinySetup:
    import torch

    from selinet_compress.io import sha256_file

    root = base / "tflite_tiny"
    root.mkdir(parents=True, exist_ok=True)
    net = tiny_net()
    onnx_path = root / "tiny.onnx"
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.onnx.export(
        net,
        net.example_inputs(2),
        dynamo=True,
        external_data=False,
        opset_version=18,
        input_names=list(net.input_names),
        output_names=list(net.output_names),
        dynamic_shapes={n: {0: batch} for n in net.input_names},
        verbose=False,
    )
    program.save(str(onnx_path))
    calibration = {k: np.ascontiguousarray(v.transpose(0, 2, 3, 1)) for k, v in samples(16, seed=1).items()}
    return TinySetup(root, net, onnx_path, sha256_file(onnx_path), root / "cache", calibration)


@functools.cache
def converted(base: Path, precision: str, io_dtype: str = "float32") -> tuple[Path, list]:
    """The tiny net converted once per session: (finalized .tflite, pass records)."""
    from selinet_compress.passes.tflite_metadata import finalize_tflite
    from selinet_compress.passes.tflite_onnx2tf import TFLiteSettings, convert_onnx_to_tflite

    setup = tiny_setup(base)
    raw = setup.root / f"raw_{precision}_{io_dtype}.tflite"
    calibration = setup.calibration_nhwc if precision == "int8_static" else None
    _, records = convert_onnx_to_tflite(
        setup.onnx,
        raw,
        TFLiteSettings(precision, io_dtype=io_dtype),
        calibration,
        cache_dir=setup.cache,
        progress=False,
        log=lambda _m: None,
    )
    final = setup.root / f"{precision}_{io_dtype}.tflite"
    finalize_tflite(raw, final, tiny_config())
    return final, records
