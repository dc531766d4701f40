"""PyTorch runner: a SeLiNet checkpoint (any wrapping the checkpoint module reads)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from selinet_compress.runtimes.base import RUNTIMES, Runner


@RUNTIMES.register("torch", suffixes=(".pt", ".pth", ".ckpt", ".bin"))
class TorchRunner(Runner):
    target = "torch"

    def __init__(self, path: Path, model, threads: int | None) -> None:
        super().__init__(path, model.config, threads)
        self.model = model.eval()

    @classmethod
    def open(
        cls, path: Path, threads: int | None = None, trust_pickled_code: bool = False, **_: object
    ) -> TorchRunner:
        import torch

        from selinet_compress.checkpoint import load_model

        if threads:
            torch.set_num_threads(threads)
        model, _info = load_model(path, trust_pickled_code=trust_pickled_code)
        return cls(path, model, threads)

    @classmethod
    def from_model(cls, model, path: str | Path = "<in-memory>", threads: int | None = None) -> TorchRunner:
        """Wrap a model already in memory (training validation, tests)."""
        return cls(Path(path), model, threads)

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        tensors = [
            torch.from_numpy(np.ascontiguousarray(inputs[name], dtype=np.float32))
            for name in self.input_names
        ]
        with torch.inference_mode():
            outputs = self.model(*tensors)
        return {name: out.numpy() for name, out in zip(self.model.output_names, outputs, strict=True)}

    def describe(self) -> dict:
        import torch

        return {
            **super().describe(),
            "runtime": "torch",
            "version": str(torch.__version__),
            "torch_threads": torch.get_num_threads(),
        }
