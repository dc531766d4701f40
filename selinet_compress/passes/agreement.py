"""How closely one model's outputs follow another's on the same inputs (any runtime, any target).

Used to validate an export (fail beyond a tolerance) and to record, for a quantized artifact, how
far it drifted from PyTorch fp32 on real samples.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def output_agreement(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray]) -> dict[str, Any]:
    """Per output: max / mean abs diff, max |reference|, cosine (all values flattened), centered
    cosine (per-column reference mean removed), the worst per-sample cosine and, for >1-wide
    outputs, top-1 agreement (same arg-max per sample)."""
    result: dict[str, Any] = {}
    for name, ref in reference.items():
        if name not in candidate:
            raise KeyError(f"candidate has no output '{name}' (has {sorted(candidate)})")
        ref64 = np.asarray(ref, dtype=np.float64)
        new64 = np.asarray(candidate[name], dtype=np.float64)
        if ref64.shape != new64.shape:
            raise ValueError(f"output '{name}': shape {new64.shape} != reference {ref64.shape}")
        diff = np.abs(ref64 - new64)
        rows_ref = ref64.reshape(ref64.shape[0], -1)
        rows_new = new64.reshape(new64.shape[0], -1)
        entry = {
            "max_abs_diff": float(diff.max()) if diff.size else 0.0,
            "mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
            "max_abs_reference": float(np.abs(ref64).max()) if ref64.size else 0.0,
            "cosine": _cosine(ref64.ravel(), new64.ravel()),
            # The same after removing the reference's per-column mean from both: raw scores share a
            # large common offset, so plain cosine stays ~1 while the differences between persons,
            # which decide the ranking AP measures, change.
            "centered_cosine": _cosine(
                (rows_ref - rows_ref.mean(0)).ravel(), (rows_new - rows_ref.mean(0)).ravel()
            )
            if rows_ref.shape[0] > 1
            else None,
            "min_sample_cosine": min(
                (_cosine(a, b) for a, b in zip(rows_ref, rows_new, strict=True)), default=1.0
            ),
            "finite": bool(np.isfinite(new64).all()),
        }
        if rows_ref.shape[1] > 1:
            entry["top1_agreement"] = float((rows_ref.argmax(1) == rows_new.argmax(1)).mean())
        result[name] = entry
    return result


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    if norm == 0.0:
        # Two all-zero vectors agree; one zero and one not do not.
        return 1.0 if not a.any() and not b.any() else 0.0
    return float(np.dot(a, b) / norm)


def within_tolerance(agreement: dict[str, Any], atol: float, rel_tol: float, min_cosine: float) -> list[str]:
    """Violations (empty: within tolerance). The allowed max abs diff is ``atol + rel_tol *
    max |reference|``, so models with small and with large raw scores are held to the same
    relative standard."""
    problems = []
    for name, entry in agreement.items():
        allowed = atol + rel_tol * entry["max_abs_reference"]
        if not entry["finite"]:
            problems.append(f"{name}: NaN or inf in the output")
        elif entry["max_abs_diff"] > allowed:
            problems.append(f"{name}: max abs diff {entry['max_abs_diff']:.3g} > {allowed:.3g}")
        elif entry["cosine"] < min_cosine:
            problems.append(f"{name}: cosine {entry['cosine']:.6f} < {min_cosine}")
    return problems
