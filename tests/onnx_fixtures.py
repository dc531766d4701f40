"""Shared, built-once inputs of the ONNX / quantize tests: a tiny synthetic EMOTIC, a small
SeLiNet checkpoint (body branch only, 64 px, so that one export takes seconds, not a minute),
and a cache folder where the first build leaves its validated export for every later build.

Built once per test session (functools.cache keyed by pytest's session temp dir), because the
torch.export-based exporter takes ~15-25 s even for the small model.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

SMALL_SIZES = {"train": 24, "val": 8, "test": 8}


@dataclass(frozen=True)
class SmallSetup:
    root: Path
    data: Path
    checkpoint: Path
    cache: Path
    out: Path


def small_config():
    from selinet_compress.model.selinet import SeLiNetConfig

    return SeLiNetConfig(use_aesthetics=False, body_size=64, context_size=64)


def responsive_checkpoint(path: Path, config, seed: int = 0) -> Path:
    """A random-init SeLiNet whose BatchNorm statistics were measured on random inputs.

    Straight after init (BatchNorm mean 0 / var 1) the trunk's activations drift so far that the
    outputs are the same for every input (per-sample std ~1e-10): agreement between an export and
    PyTorch, or the effect of quantization, cannot be seen on such a model."""
    import torch

    from selinet_compress.checkpoint import save_checkpoint
    from selinet_compress.model.selinet import build_model

    model = build_model(config, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the batches below
    model.train()
    with torch.no_grad():
        for _ in range(4):
            model(*[torch.randn((16, *e.shape[1:]), generator=generator) for e in model.example_inputs(1)])
    return save_checkpoint(model.eval(), path, {"test": "BatchNorm statistics from random inputs"})


@functools.cache
def small_setup(base: Path) -> SmallSetup:
    from selinet_compress.emotic.synth import generate

    root = base / "onnx_small"
    root.mkdir(parents=True, exist_ok=True)
    generate(root / "data", sizes=dict(SMALL_SIZES), seed=0)
    checkpoint = responsive_checkpoint(root / "small.pt", small_config(), seed=0)
    return SmallSetup(root, root / "data", checkpoint, root / "cache", root / "out")


@functools.cache
def built(base: Path, recipe: str) -> Path:
    """``recipe`` built once per session on the small setup (artifact path)."""
    from selinet_compress.targets import quantize

    setup = small_setup(base)
    return quantize(
        setup.checkpoint,
        recipe,
        "onnx",
        setup.data,
        setup.out,
        cache_dir=setup.cache,
        check_samples=4,
        progress=False,
        force=True,
    )
