"""Latency, throughput, load time, peak memory and file size of a model on its runtime.

Every model is measured in a fresh Python process (``python -m selinet_compress.bench``), so the
peak RSS is that model's alone and one runtime's threads or caches never disturb another's. All
targets get the same inputs: seeded normal NCHW float32 arrays of the model's input sizes.
Timing covers ``Runner.run`` — the runtime call plus the runner's layout handling (NHWC for
TFLite, int8 I/O scaling) — and excludes image decoding and preprocessing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from selinet_compress.errors import UserError

TIMING_NOTE = "Runner.run only: runtime call + layout handling; excludes decoding and preprocessing"
RUNTIME_PACKAGES = ("torch", "onnxruntime", "ai-edge-litert", "tensorflow", "numpy")


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def _current_rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def measure(
    path: str | os.PathLike,
    target: str | None = None,
    threads: int = 2,
    batch_size: int = 1,
    runs: int = 50,
    warmup: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """Measure in *this* process (the worker side of :func:`bench_model`)."""
    import numpy as np

    from selinet_compress.environment import environment
    from selinet_compress.runtimes import open_runner

    path = Path(path)
    rss_before = _current_rss_mb()
    started = time.perf_counter()
    runner = open_runner(path, target=target, threads=threads)
    load_ms = (time.perf_counter() - started) * 1000
    cfg = runner.config
    rng = np.random.default_rng(seed)
    shapes = {
        "body": (batch_size, 3, cfg.body_size, cfg.body_size),
        "context": (batch_size, 3, cfg.context_size, cfg.context_size),
    }
    inputs = {name: rng.standard_normal(shapes[name]).astype(np.float32) for name in runner.input_names}
    for _ in range(warmup):
        runner.run(inputs)
    times = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter()
        runner.run(inputs)
        times[i] = time.perf_counter() - start
    ms = times * 1000
    size = path.stat().st_size
    return {
        "model": str(path),
        "target": runner.target,
        "threads": threads,
        "batch_size": batch_size,
        "runs": runs,
        "warmup": warmup,
        "mean_ms": float(ms.mean()),
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "std_ms": float(ms.std(ddof=1)) if runs > 1 else 0.0,
        "min_ms": float(ms.min()),
        "throughput": float(batch_size / times.mean()),
        "load_ms": float(load_ms),
        "size_mb": size / 1e6,
        "peak_rss_mb": _peak_rss_mb(),
        "model_rss_mb": max(0.0, _current_rss_mb() - rss_before),
        "timing": TIMING_NOTE,
        "runtime": runner.describe(),
        "environment": environment(*RUNTIME_PACKAGES),
    }


def bench_model(
    path: str | os.PathLike,
    target: str | None = None,
    threads: int = 2,
    batch_size: int = 1,
    runs: int = 50,
    warmup: int = 5,
    timeout: float = 1800,
) -> dict[str, Any]:
    """Benchmark one model file in a fresh process; returns the :func:`measure` record."""
    from selinet_compress.runtimes import target_for_path

    path = Path(path)
    if not path.is_file():
        raise UserError(f"no such model file: {path}")
    detected = target_for_path(path)
    if target is not None and target != detected:
        raise UserError(f"{path} is a {detected} model, not a {target} one")
    args = [
        sys.executable,
        "-P",  # never import a different selinet_compress from the working directory
        "-m",
        "selinet_compress.bench",
        str(path),
        detected,
        str(threads),
        str(batch_size),
        str(runs),
        str(warmup),
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        reason = errors[-1][7:] if errors else (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"benchmark of {path} failed: {reason}")
    return json.loads(lines[-1])


def interleaved_latency(
    calls: dict[str, Callable[[], object]], rounds: int, runs: int, warmup: int = 5
) -> dict[str, dict[str, float]]:
    """p50 / p90 / min ms of each call, timed in interleaved rounds (``runs`` calls of each model
    per round): on a shared machine a burst of load then slows every model alike, so *ratios*
    from one such measurement hold where back-to-back runs would not. For benchmark scripts that
    compare models loaded in one process; ``bench`` measures each model in its own process."""
    import numpy as np

    for call in calls.values():
        for _ in range(warmup):
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            for _ in range(runs):
                start = time.perf_counter()
                call()
                times[name].append((time.perf_counter() - start) * 1000)
    return {
        name: {
            "p50_ms": float(np.percentile(t, 50)),
            "p90_ms": float(np.percentile(t, 90)),
            "min_ms": float(np.min(t)),
            "n": len(t),
        }
        for name, t in times.items()
    }


def model_files(path: str | os.PathLike, target: str | None = None) -> list[Path]:
    """``path`` itself, or the model files in a folder (sidecars skipped), filtered by target."""
    from selinet_compress.runtimes import RUNTIMES, target_for_path

    path = Path(path)
    if not path.exists():
        raise UserError(f"no such file or folder: {path}")
    if path.is_file():
        return [path]
    if target is not None:
        RUNTIMES.get(target)  # unknown target -> did-you-mean
    suffixes = {s for name in RUNTIMES for s in RUNTIMES.meta(name).get("suffixes", ())}
    files = sorted(
        p
        for p in path.rglob("*")
        if p.is_file() and p.suffix.lower() in suffixes and not p.name.startswith(".")
    )
    if target is not None:
        files = [p for p in files if target_for_path(p) == target]
    if not files:
        raise UserError(f"no {target + ' ' if target else ''}model files under {path}")
    return files


def format_table(records: list[dict[str, Any]]) -> str:
    """One line per model: the figures a deployment decision needs."""
    header = (
        f"{'model':<44}{'target':<8}{'MB':>8}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'mean':>8}"
        f"{'std':>7}{'items/s':>9}{'load ms':>9}{'RSS MB':>8}"
    )
    lines = [header]
    for r in records:
        name = r["model"] if len(r["model"]) <= 43 else "…" + r["model"][-42:]
        lines.append(
            f"{name:<44}{r['target']:<8}{r['size_mb']:>8.2f}{r['p50_ms']:>9.2f}{r['p90_ms']:>9.2f}"
            f"{r['p99_ms']:>9.2f}{r['mean_ms']:>8.2f}{r['std_ms']:>7.2f}{r['throughput']:>9.1f}"
            f"{r['load_ms']:>9.0f}{r['peak_rss_mb']:>8.0f}"
        )
    if records:
        r = records[0]
        cpu = r["environment"]["cpu"]
        lines.append(
            f"batch {r['batch_size']}, {r['threads']} threads, {r['runs']} runs after {r['warmup']} "
            f"warm-up; {cpu['model']} ({cpu['logical_cores']} cores; {' '.join(cpu['flags'])})"
        )
        lines.append(f"timing: {TIMING_NOTE}")
    return "\n".join(lines)


def _worker(argv: list[str]) -> int:
    path, target, threads, batch_size, runs, warmup = argv
    try:
        record = measure(path, target, int(threads), int(batch_size), int(runs), int(warmup))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:
        print(f"error: the {target} runtime is not installed ({exc})", file=sys.stderr)
        return 2
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1:]))
