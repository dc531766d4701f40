"""Pieces the benchmark scripts share (run them from the repository: ``python benchmarks/X.py``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def reference_header(args: argparse.Namespace, reference: Any) -> dict[str, Any]:
    """The first keys of every benchmark's JSON: what was measured, on which persons, against what."""
    return {
        "checkpoint": str(args.checkpoint),
        "data": str(args.data),
        "split": args.split,
        "n": reference.n,
        "pytorch_fp32": {"map": reference.metrics["map"], "map_boosted": reference.metrics["map_boosted"]},
    }


def score_against_reference(
    path: Path, reference: Any, args: argparse.Namespace, progress: bool
) -> dict[str, Any]:
    """Evaluate one artifact on the reference's persons: mAP, paired-bootstrap ΔmAP (raw and
    boosted) against the reference, size and sidecar."""
    from selinet_compress.evaluate import evaluate
    from selinet_compress.io import read_sidecar
    from selinet_compress.metrics import bootstrap_delta_map

    result = evaluate(path, args.data, args.split, limit=args.limit, threads=args.threads, progress=progress)
    assert result.ids == reference.ids
    return {
        "map": result.metrics["map"],
        "map_boosted": result.metrics["map_boosted"],
        "delta_raw": bootstrap_delta_map(
            reference.labels, reference.scores, result.scores, n_boot=args.bootstrap
        ),
        "delta_boosted": bootstrap_delta_map(
            reference.labels, reference.scores_boosted, result.scores_boosted, n_boot=args.bootstrap
        ),
        "size_mb": path.stat().st_size / 1e6,
        "artifact": str(path),
        "sidecar": read_sidecar(path),
    }


def ci(delta: tuple[float, float, float]) -> str:
    """A (delta, low, high) fraction triple as points: '+0.12 [-0.30, +0.51]'."""
    d, lo, hi = (100 * v for v in delta)
    return f"{d:+.2f} [{lo:+.2f}, {hi:+.2f}]"
