"""Pieces the benchmark scripts share (run them from the repository: ``python benchmarks/X.py``)."""

from __future__ import annotations

import argparse
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
