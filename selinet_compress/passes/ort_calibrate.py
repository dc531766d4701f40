"""Pass: activation ranges of an ONNX model on the calibration set (onnxruntime's calibrators).

``quantize_static`` builds its calibrator with a fixed subset of options: it never passes
``num_bins`` / ``num_quantized_bins``, so its Entropy method runs with 128 of each and returns
exactly the min-max range, and Percentile always uses 2048 bins. We create the calibrator
ourselves with every knob of the recipe, feed it in chunks (bounded memory: a chunk's
intermediate tensors are reduced to ranges / histograms before the next is read), and hand the
ranges to ``quantize_static`` through its calibration cache.

onnxruntime's entropy search (``HistogramCollector.get_entropy_threshold``) loops in Python with
``sum()`` over numpy slices: ~200 s for the small test model at 2048 bins, far longer for SeLiNet.
:func:`entropy_threshold` is the same algorithm with the inner loops vectorised — identical
thresholds (a test compares them with onnxruntime's on real histograms), ~50x faster — and is
applied to the histograms onnxruntime's collector gathered.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from selinet_compress.calibration import CalibrationSet
    from selinet_compress.recipes import Calibration

BATCH = 8  # samples per calibration forward pass
CHUNK = 4  # batches whose intermediate outputs are held at once


def calibration_method(name: str):
    """The onnxruntime CalibrationMethod for a recipe's method name."""
    from onnxruntime.quantization import CalibrationMethod

    return {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[name]


def calibrator_options(settings: Calibration) -> dict[str, Any]:
    """Every knob of the recipe's calibration, in the calibrator's own option names."""
    options: dict[str, Any] = {"symmetric": settings.symmetric}
    if settings.method == "entropy":
        options.update(num_bins=settings.num_bins, num_quantized_bins=settings.num_quantized_bins)
    elif settings.method == "percentile":
        options.update(num_bins=settings.num_bins, percentile=settings.percentile)
    return options


def _reader(batches: list[dict]):
    from onnxruntime.quantization import CalibrationDataReader

    class ListReader(CalibrationDataReader):
        def __init__(self) -> None:
            self._iter = iter(batches)

        def get_next(self) -> dict | None:
            return next(self._iter, None)

        def __len__(self) -> int:
            return len(batches)

    return ListReader()


def compute_ranges(
    model_path: str | os.PathLike,
    calibration: CalibrationSet,
    settings: Calibration,
    input_names: Sequence[str],
    op_types: Sequence[str] | None = None,
    progress: bool = True,
):
    """Run the calibration samples through ``model_path`` and return onnxruntime ``TensorsData``
    (per-tensor ranges) for ``settings.method``; also the seconds it took."""
    from onnxruntime.quantization.calibrate import create_calibrator
    from tqdm import tqdm

    started = time.perf_counter()
    batches = list(calibration.batches(BATCH, list(input_names)))
    with tempfile.TemporaryDirectory(prefix="selinet-calib-") as tmp, contextlib.ExitStack() as stack:
        # onnxruntime's histogram collector prints on stdout, which carries the CLI's result.
        sink = sys.stderr if progress else stack.enter_context(open(os.devnull, "w"))
        stack.enter_context(contextlib.redirect_stdout(sink))
        calibrator = create_calibrator(
            Path(model_path),
            list(op_types) if op_types else None,
            augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=calibration_method(settings.method),
            extra_options=calibrator_options(settings),
        )
        with tqdm(
            total=len(calibration),
            desc=f"calibrating ({settings.method})",
            unit="sample",
            disable=not progress,
            leave=False,
        ) as bar:
            for start in range(0, len(batches), CHUNK):
                chunk = batches[start : start + CHUNK]
                calibrator.collect_data(_reader(chunk))
                bar.update(sum(next(iter(b.values())).shape[0] for b in chunk))
        if settings.method == "entropy":
            ranges = _entropy_ranges(calibrator.collector.histogram_dict, settings.num_quantized_bins)
        else:
            ranges = calibrator.compute_data()
        del calibrator
    return ranges, round(time.perf_counter() - started, 2)


def entropy_threshold(histogram: tuple, num_quantized_bins: int) -> tuple:
    """The KL-optimal (low, high) of one histogram ``(hist, edges, min, max, ...)``: onnxruntime's
    ``get_entropy_threshold`` step for step (including its integer truncation of the expanded
    distribution and its float32 rounding of each divergence), with the per-bin loops vectorised."""
    import numpy as np
    from onnxruntime.quantization.calibrate import entropy
    from onnxruntime.quantization.quant_utils import smooth_distribution

    hist, hist_edges, min_value, max_value = histogram[:4]
    num_bins = hist.size
    zero_bin_index = num_bins // 2
    half = num_quantized_bins // 2
    dtype = hist_edges.dtype
    prefix = np.concatenate([[0], np.cumsum(hist)])
    total = prefix[-1]
    divergences, thresholds = [], []
    for i in range(half, zero_bin_index + 1):
        start, end = zero_bin_index - i, min(zero_bin_index + i + 1, num_bins)
        thresholds.append((hist_edges[start], hist_edges[end]))
        sliced = hist[start:end]
        p = sliced.copy()
        p[0] += prefix[start]  # outliers left of the window
        p[-1] += total - prefix[end]  # and right of it
        nonzeros = (p != 0).astype(np.int64)
        merged = sliced.size // num_quantized_bins
        head = num_quantized_bins * merged
        quantized = sliced[:head].reshape(num_quantized_bins, merged).sum(axis=1)
        quantized[-1] += sliced[head:].sum()
        norm = nonzeros[:head].reshape(num_quantized_bins, merged).sum(axis=1)
        q = np.zeros(p.size, dtype=np.int64)
        # float division assigned into int64 truncates, exactly as the original's slice assignment
        q[:head] = np.repeat(np.where(norm != 0, quantized / np.maximum(norm, 1), 0), merged)
        p_smooth, q_smooth = smooth_distribution(p), smooth_distribution(q)
        if p_smooth is None or q_smooth is None:
            divergences.append(np.array(np.inf, dtype=dtype))
        else:
            divergences.append(np.array(entropy(p_smooth, q_smooth), dtype=dtype))
    low, high = thresholds[int(np.argmin(np.array(divergences, dtype=np.float64)))]
    if low < min_value:
        low = min_value
    if high > max_value:
        high = max_value
    return low, high


def _entropy_ranges(histograms: dict, num_quantized_bins: int):
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorsData

    data = {name: (*entropy_threshold(h, num_quantized_bins), *h[:2]) for name, h in histograms.items()}
    return TensorsData(CalibrationMethod.Entropy, data)


def range_summary(ranges) -> dict[str, Any]:
    """A small fingerprint of the ranges for the sidecar: tensor count and the widest ranges."""
    import numpy as np

    widths = []
    for name, data in ranges.data.items():
        low, high = (float(np.min(v)) for v in data.range_value)  # per-tensor: 1-element arrays
        widths.append((high - low, name, low, high))
    widths.sort(reverse=True)
    return {
        "method": str(ranges.calibration_method),
        "tensors": len(widths),
        "widest": [{"tensor": n, "min": lo, "max": hi} for _, n, lo, hi in widths[:5]],
    }
