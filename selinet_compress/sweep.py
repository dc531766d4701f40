"""The recipe x target matrix: build, evaluate and benchmark every cell, one row each.

``sweep(checkpoint, data_dir, run_dir)`` adds the PyTorch fp32 reference (the checkpoint itself)
and, for every recipe and target, a cell that is built (:func:`selinet_compress.targets.quantize`),
evaluated on the test split with the target's own runtime, and benchmarked in a fresh process.
A cell a target cannot build is a row with status ``unsupported`` and the reason; a cell that fails
is a row with status ``failed``, the stage and the reason — the sweep goes on.

Every stage's output is cached under ``RUN/`` by content: an artifact is reused when its sidecar's
``cache_key`` (checkpoint hash, recipe, calibration ids, tool versions) matches, an evaluation or a
benchmark when the artifact's hash and the settings match. All files are written atomically and
``RUN/results.json`` is rewritten after every cell, so a sweep killed at any moment (even SIGKILL)
resumes where it stopped and rebuilds no finished cell.
"""

from __future__ import annotations

import json
import os
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selinet_compress.errors import UserError
from selinet_compress.io import read_sidecar, sha256_file, write_json_atomic, write_text_atomic
from selinet_compress.report import OK, RESULTS_FILE, RESULTS_KIND

REFERENCE = ("fp32", "torch")
RESULTS_VERSION = 1


@dataclass(frozen=True)
class SweepSettings:
    """What the numbers of a run depend on besides the artifacts (part of every cache key)."""

    split: str = "test"
    limit: int | None = None
    eval_batch_size: int = 32
    threads: int = 2
    bench_runs: int = 50
    bench_warmup: int = 5
    bench_batch_size: int = 1
    n_boot: int = 1000
    layout: str | None = None

    def eval_key(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "limit": self.limit,
            "batch": self.eval_batch_size,
            "layout": self.layout,
        }

    def bench_key(self) -> dict[str, Any]:
        return {
            "threads": self.threads,
            "runs": self.bench_runs,
            "warmup": self.bench_warmup,
            "batch": self.bench_batch_size,
        }


@dataclass
class Cell:
    """One (recipe, target[, converter]) combination; ``recipe`` is the exact Recipe built."""

    recipe_name: str
    target: str
    precision: str
    converter: str | None = None
    recipe: Any = None

    @property
    def name(self) -> str:
        return f"{self.recipe_name}.{self.target}" + (f".{self.converter}" if self.converter else "")


class CellFailed(Exception):
    """A stage of one cell failed; the sweep records it and goes on."""

    def __init__(self, stage: str, reason: str) -> None:
        super().__init__(f"{stage}: {reason}")
        self.stage, self.reason = stage, reason


def _reason(exc: BaseException) -> str:
    if isinstance(exc, UserError):
        return str(exc)
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}".rstrip(": ")


def plan_cells(
    recipes: Sequence[str] | None,
    targets: Sequence[str] | None,
    variants: Sequence[str] | None = None,
) -> list[Cell]:
    """The matrix, in a stable order: recipes as listed (default: every built-in recipe), each on
    every target, and on every variant a target offers for it (e.g. TFLite's two converters;
    ``variants`` keeps only the named ones where a target offers several)."""
    from selinet_compress.recipes import PRECISIONS, builtin_names, load_recipe
    from selinet_compress.targets import TARGETS

    recipe_list = [load_recipe(r) for r in (recipes or builtin_names())]
    if not recipes:
        recipe_list.sort(key=lambda r: (PRECISIONS.index(r.precision), r.name))
    target_list = list(targets or TARGETS.names())
    builders = {name: TARGETS.get(name)() for name in target_list}  # unknown -> did-you-mean, now
    cells = []
    for recipe in recipe_list:
        for target, builder in builders.items():
            offered = builder.variants(recipe)
            for label, variant in offered:
                if variants and len(offered) > 1 and label not in variants:
                    continue
                cells.append(Cell(recipe.name, target, recipe.precision, label, variant))
    return cells


class Sweep:
    """One run folder: its cells, caches and results."""

    def __init__(
        self,
        checkpoint: Path,
        data_dir: Path,
        run_dir: Path,
        settings: SweepSettings,
        progress: bool = True,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.checkpoint = checkpoint
        self.data_dir = data_dir
        self.run = run_dir
        self.settings = settings
        self.progress = progress
        self.log = log or (lambda message: None)
        self.artifacts = run_dir / "artifacts"
        self.cells_dir = run_dir / "cells"
        self.cache_dir = run_dir / "cache"
        self.checkpoint_sha256 = sha256_file(checkpoint)
        self.rows: list[dict[str, Any]] = []
        self.reference_scores: dict[str, Any] | None = None

    # -- stages -------------------------------------------------------------------------------

    def build(self, cell: Cell) -> tuple[Path, dict]:
        """The cell's artifact: reused when its sidecar's cache key matches, else built."""
        from selinet_compress.targets import artifact_path, cache_key, quantize

        key = cache_key(self.checkpoint, cell.recipe, cell.target, self.data_dir, self.checkpoint_sha256)
        name = cell.recipe_name + (f".{cell.converter}" if cell.converter else "")
        artifact = artifact_path(self.artifacts, cell.recipe_name, cell.target, name)
        timing = self.cells_dir / cell.name / "build.json"
        sidecar = read_sidecar(artifact) if artifact.exists() else None
        if sidecar is not None and sidecar.get("cache_key") == key:
            built = self._cached(timing, {"cache_key": key}) or {}
            return artifact, {**sidecar, "reused": True, "build_seconds": built.get("build_seconds")}
        started = time.perf_counter()
        artifact = quantize(
            self.checkpoint, cell.recipe, cell.target, self.data_dir, self.artifacts,
            name=name, cache_dir=self.cache_dir, force=True, progress=False,
        )  # fmt: skip
        seconds = round(time.perf_counter() - started, 1)
        write_json_atomic(timing, {"cache": {"cache_key": key}, "build_seconds": seconds})
        return artifact, {**(read_sidecar(artifact) or {}), "reused": False, "build_seconds": seconds}

    def _cached(self, path: Path, key: dict) -> dict | None:
        if not path.is_file():
            return None
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        return stored if stored.get("cache") == key else None

    def evaluate(self, cell_name: str, model: Path) -> tuple[dict, dict[str, Any]]:
        """Metrics (JSON) and per-sample scores (npz) of ``model`` on the test split, cached."""
        import numpy as np

        from selinet_compress.evaluate import evaluate

        folder = self.cells_dir / cell_name
        key = {"model_sha256": sha256_file(model), **self.settings.eval_key()}
        scores_path = folder / "scores.npz"
        cached = self._cached(folder / "eval.json", key)
        if cached is None or not scores_path.is_file():
            with warnings.catch_warnings(record=True) as caught:  # kept in the record, not printed
                warnings.simplefilter("always")
                result = evaluate(
                    model,
                    self.data_dir,
                    split=self.settings.split,
                    batch_size=self.settings.eval_batch_size,
                    limit=self.settings.limit,
                    threads=self.settings.threads,
                    layout=self.settings.layout,
                    progress=False,
                )
            result.save_scores(scores_path)  # scores first: eval.json is the "done" marker
            cached = {"cache": key, **result.to_json(), "warnings": sorted({str(w.message) for w in caught})}
            write_json_atomic(folder / "eval.json", cached)
        with np.load(scores_path) as npz:
            scores = {k: npz[k] for k in npz.files}
        return cached, scores

    def bench(self, cell_name: str, model: Path) -> dict:
        from selinet_compress.bench import bench_model

        folder = self.cells_dir / cell_name
        key = {"model_sha256": sha256_file(model), **self.settings.bench_key()}
        cached = self._cached(folder / "bench.json", key)
        if cached is None:
            s = self.settings
            record = bench_model(
                model,
                threads=s.threads,
                batch_size=s.bench_batch_size,
                runs=s.bench_runs,
                warmup=s.bench_warmup,
            )
            cached = {"cache": key, **record}
            write_json_atomic(folder / "bench.json", cached)
        return cached

    # -- rows ---------------------------------------------------------------------------------

    def measure(self, cell: Cell, artifact: Path, build: dict) -> dict[str, Any]:
        """Evaluate + bench one artifact and turn it into a row."""
        try:
            metrics, scores = self.evaluate(cell.name, artifact)
        except Exception as exc:  # a failure is a row, not a crash
            raise CellFailed("evaluate", _reason(exc)) from exc
        try:
            timing = self.bench(cell.name, artifact)
        except Exception as exc:
            raise CellFailed("bench", _reason(exc)) from exc
        row = self._row(cell, OK)
        sentiment = metrics.get("sentiment_ap") or {}
        defined = [v for v in sentiment.values() if v is not None]
        row.update(
            {
                "artifact": str(artifact),
                "size_mb": artifact.stat().st_size / 1e6,
                "map": metrics["map"],
                "map_boosted": metrics["map_boosted"],
                "per_class_ap": metrics["per_class_ap_boosted"]
                if self.has_sentiment
                else metrics["per_class_ap"],
                "per_class_ap_raw": metrics["per_class_ap"],
                "sentiment_ap": sentiment,
                "sentiment_map": sum(defined) / len(defined) if defined else None,
                "n": metrics["n"],
                **{
                    k: timing[k]
                    for k in (
                        "p50_ms",
                        "p90_ms",
                        "p99_ms",
                        "mean_ms",
                        "std_ms",
                        "peak_rss_mb",
                        "load_ms",
                        "throughput",
                    )
                },
                "build_seconds": build.get("build_seconds"),
                "reused": build.get("reused", False),
                "cache_key": build.get("cache_key"),
                "notes": build.get("warnings") or [],
            }
        )
        if self.reference_scores is None:
            self.reference_scores = scores
        row["delta"] = self._delta(scores)
        return row

    def _delta(self, scores: dict[str, Any]) -> dict[str, Any]:
        """ΔmAP (raw and boosted) against the reference on the same samples, paired bootstrap CI."""
        import numpy as np

        from selinet_compress.metrics import bootstrap_delta_map

        ref = self.reference_scores
        assert ref is not None
        if not np.array_equal(ref["ids"], scores["ids"]):
            raise CellFailed("compare", "scored other samples than the reference")
        out = {}
        for metric, key in (("map", "scores"), ("map_boosted", "scores_boosted")):
            delta, low, high = bootstrap_delta_map(
                ref["labels"], ref[key], scores[key], n_boot=self.settings.n_boot
            )
            out[metric] = {"delta": delta, "low": low, "high": high}
        return out

    def _row(self, cell: Cell, status: str, reason: str | None = None, stage: str | None = None) -> dict:
        return {
            "variant": cell.recipe_name,
            "target": cell.target,
            "converter": cell.converter,
            "precision": cell.precision,
            "status": status,
            "reason": reason,
            "stage": stage,
        }

    @property
    def has_sentiment(self) -> bool:
        from selinet_compress.checkpoint import load_model

        if not hasattr(self, "_has_sentiment"):
            self._has_sentiment = load_model(self.checkpoint)[0].config.use_sentiment
        return self._has_sentiment

    def finish_rows(self) -> None:
        """Size % and speed-up against fp32 on the same target (else the PyTorch reference)."""
        fp32 = {r["target"]: r for r in self.rows if r["precision"] == "fp32" and r["status"] == OK}
        reference = fp32.get(REFERENCE[1])
        for row in self.rows:
            if row["status"] != OK:
                continue
            base = fp32.get(row["target"], reference)
            if base is not None:
                row["size_pct"] = 100.0 * row["size_mb"] / base["size_mb"]
                row["speedup"] = base["p50_ms"] / row["p50_ms"] if row["p50_ms"] else None
            if (row["variant"], row["target"]) == REFERENCE:
                row["delta"] = {m: {"delta": 0.0, "low": 0.0, "high": 0.0} for m in ("map", "map_boosted")}
                row["reference"] = True

    def write_results(self, extra: dict[str, Any]) -> Path:
        import pandas as pd

        self.finish_rows()
        results = {"kind": RESULTS_KIND, "version": RESULTS_VERSION, **extra, "rows": self.rows}
        path = write_json_atomic(self.run / RESULTS_FILE, results)
        flat = []
        for row in self.rows:
            item = {
                k: v
                for k, v in row.items()
                if k not in ("per_class_ap", "per_class_ap_raw", "sentiment_ap", "delta", "notes")
            }
            for metric, values in (row.get("delta") or {}).items():
                item.update(
                    {
                        f"delta_{metric}": values["delta"],
                        f"delta_{metric}_low": values["low"],
                        f"delta_{metric}_high": values["high"],
                    }
                )
            flat.append(item)
        write_text_atomic(self.run / "results.csv", pd.DataFrame(flat).to_csv(index=False))
        return path


def sweep(
    checkpoint: str | os.PathLike,
    data_dir: str | os.PathLike,
    run_dir: str | os.PathLike,
    recipes: Sequence[str] | None = None,
    targets: Sequence[str] | None = None,
    settings: SweepSettings | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    variants: Sequence[str] | None = None,
) -> Path:
    """Run (or resume) the matrix into ``run_dir``; returns ``run_dir/results.json``.
    ``variants`` keeps only these of a target's variants (e.g. ``["onnx2tf"]``: one TFLite converter)."""
    from tqdm.auto import tqdm

    from selinet_compress.checkpoint import load_model
    from selinet_compress.emotic import open_split
    from selinet_compress.environment import environment
    from selinet_compress.targets import TARGETS

    settings = settings or SweepSettings()
    checkpoint, data_dir, run = Path(checkpoint), Path(data_dir), Path(run_dir)
    model, _ = load_model(checkpoint)  # a bad checkpoint or data folder fails before any work
    split = open_split(data_dir, settings.split, settings.layout)
    cells = plan_cells(recipes, targets, variants)
    run.mkdir(parents=True, exist_ok=True)
    manifest_path = run / "sweep.json"
    manifest = {
        "checkpoint_sha256": sha256_file(checkpoint),
        "data": str(data_dir.resolve()),
        "settings": settings.__dict__,
    }
    if manifest_path.exists():
        previous = json.loads(manifest_path.read_text(encoding="utf-8"))
        if previous.get("checkpoint_sha256") != manifest["checkpoint_sha256"]:
            raise UserError(f"{run} holds a sweep of another checkpoint; choose another --out")
    write_json_atomic(manifest_path, manifest)

    state = Sweep(checkpoint, data_dir, run, settings, progress, log)
    n = len(split) if settings.limit is None else min(settings.limit, len(split))
    extra = {
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": state.checkpoint_sha256,
        "data": str(data_dir),
        "split": settings.split,
        "n": n,
        "synthetic": (data_dir / "synth.json").is_file(),
        "has_sentiment": model.config.use_sentiment,
        "categories": list(model.config.categories),
        "settings": settings.__dict__,
        "environment": environment(
            "torch", "onnxruntime", "ai-edge-litert", "tensorflow", "onnx2tf", "litert-torch"
        ),
    }
    reference = Cell(REFERENCE[0], REFERENCE[1], precision="fp32")
    bar = tqdm(total=len(cells) + 1, desc="sweep", unit="cell", disable=not progress, dynamic_ncols=True)
    try:
        bar.set_postfix_str(f"{reference.name}: evaluate + bench")
        try:
            state.rows.append(state.measure(reference, checkpoint, {"reused": True}))
        except CellFailed as exc:
            raise UserError(f"the PyTorch reference failed at {exc.stage}: {exc.reason}") from None
        state.write_results(extra)
        bar.update()
        for cell in cells:
            bar.set_postfix_str(cell.name)
            reason = TARGETS.get(cell.target)().supports(cell.recipe)
            if reason:
                row = state._row(cell, "unsupported", reason)
            else:
                try:
                    bar.set_postfix_str(f"{cell.name}: build")
                    try:
                        artifact, build = state.build(cell)
                    except Exception as exc:
                        raise CellFailed("build", _reason(exc)) from exc
                    bar.set_postfix_str(f"{cell.name}: evaluate + bench")
                    row = state.measure(cell, artifact, build)
                except CellFailed as exc:
                    row = state._row(cell, "failed", exc.reason, exc.stage)
                    _log_failure(run, cell, exc)
            state.rows.append(row)
            state.write_results(extra)
            bar.update()
    finally:
        bar.close()
    return run / RESULTS_FILE


def _log_failure(run: Path, cell: Cell, exc: CellFailed) -> None:
    """Keep the full traceback of a failed cell for whoever debugs it (the row has one line)."""
    cause = exc.__cause__ or exc
    text = "".join(traceback.format_exception(type(cause), cause, cause.__traceback__))
    write_text_atomic(run / "cells" / cell.name / "failure.txt", f"{exc.stage}: {exc.reason}\n\n{text}")


def summary_lines(results_path: Path) -> list[str]:
    """A short terminal table of a run (AP in points)."""
    from selinet_compress.report import _fmt

    results = json.loads(results_path.read_text(encoding="utf-8"))
    metric = "map_boosted" if results.get("has_sentiment") else "map"
    names = [r["variant"] + (f" ({r['converter']})" if r.get("converter") else "") for r in results["rows"]]
    width = max([len("variant"), *map(len, names)]) + 2
    lines = [f"{'variant':<{width}}{'target':<8}{'status':<12}{'MB':>8}{'mAP':>8}{'ΔAP':>8}{'p50 ms':>9}"]
    for name, row in zip(names, results["rows"], strict=True):
        delta = (row.get("delta") or {}).get(metric, {}).get("delta")
        ap = row.get(metric)
        lines.append(
            f"{name:<{width}}{row['target']:<8}{row['status']:<12}{_fmt(row.get('size_mb')):>8}"
            f"{_fmt(ap * 100 if ap is not None else None):>8}"
            f"{_fmt(delta * 100 if delta is not None else None, signed=True):>8}{_fmt(row.get('p50_ms')):>9}"
        )
        if row["status"] != OK and row.get("reason"):
            lines.append(f"    {row.get('stage') or row['status']}: {row['reason']}")
    return lines
