"""Pass: run an ONNX file and the PyTorch model on the same real samples and compare (as optimum
does after every export). An fp32 export beyond tolerance is an error, not a warning."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from selinet_compress.errors import UserError

if TYPE_CHECKING:
    import numpy as np

    from selinet_compress.calibration import CalibrationSet
    from selinet_compress.model.selinet import SeLiNet

# fp32 export: max abs diff <= EXPORT_ATOL + EXPORT_REL_TOL * max |PyTorch output|, and cosine >=
# EXPORT_MIN_COSINE (measured: ~1e-6 relative on SeLiNet, so these leave room for kernel differences
# while a wrong weight or op, which moves outputs by percents, fails).
EXPORT_ATOL = 1e-5
EXPORT_REL_TOL = 1e-3
EXPORT_MIN_COSINE = 0.9999
BATCH = 8


class ExportMismatch(UserError):
    """An exported model does not compute what the PyTorch model computes."""


def run_batches(run, samples: CalibrationSet, names: list[str]) -> dict[str, np.ndarray]:
    """Concatenated outputs of ``run(inputs) -> outputs`` over ``samples`` in batches."""
    import numpy as np

    parts: dict[str, list[np.ndarray]] = {}
    for batch in samples.batches(BATCH, names):
        for key, value in run(batch).items():
            parts.setdefault(key, []).append(np.asarray(value))
    return {key: np.concatenate(values) for key, values in parts.items()}


def torch_outputs(model: SeLiNet, samples: CalibrationSet) -> dict[str, np.ndarray]:
    from selinet_compress.runtimes.torch_runner import TorchRunner

    runner = TorchRunner.from_model(model)
    return run_batches(runner.run, samples, runner.input_names)


def onnx_outputs(
    path: str | os.PathLike, samples: CalibrationSet, threads: int | None = None
) -> dict[str, np.ndarray]:
    from selinet_compress.runtimes.onnx_runner import OnnxRunner

    runner = OnnxRunner.open(path, threads=threads)
    return run_batches(runner.run, samples, runner.input_names)


def compare_with_torch(
    path: str | os.PathLike,
    model: SeLiNet,
    samples: CalibrationSet,
    reference: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Agreement of the ONNX file with PyTorch on ``samples`` (see :func:`output_agreement`)."""
    from selinet_compress.passes.agreement import output_agreement

    reference = reference if reference is not None else torch_outputs(model, samples)
    return output_agreement(reference, onnx_outputs(path, samples))


def validate_export(
    path: str | os.PathLike,
    model: SeLiNet,
    samples: CalibrationSet,
    atol: float = EXPORT_ATOL,
    rel_tol: float = EXPORT_REL_TOL,
    min_cosine: float = EXPORT_MIN_COSINE,
    reference: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Compare; raise :class:`ExportMismatch` beyond tolerance; return the numbers and the limits."""
    from selinet_compress.passes.agreement import within_tolerance

    agreement = compare_with_torch(path, model, samples, reference)
    problems = within_tolerance(agreement, atol, rel_tol, min_cosine)
    if problems:
        raise ExportMismatch(
            f"the ONNX export of {path} does not match PyTorch on {len(samples)} {samples.source} "
            f"samples: {'; '.join(problems)}"
        )
    return {
        "samples": len(samples),
        "atol": atol,
        "rel_tol": rel_tol,
        "min_cosine": min_cosine,
        "outputs": agreement,
        "passed": True,
    }
