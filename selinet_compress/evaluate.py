"""Score a model on an EMOTIC split: runner x data -> raw / boosted scores -> AP metrics.

Any model file a runner opens works (``.pt`` now; ONNX and TFLite as their runners register), or
an already-open :class:`~selinet_compress.runtimes.Runner`. Every runner gets the same
preprocessed inputs (:func:`selinet_compress.emotic.preprocess`), so differences in AP between
variants come from the variants, not from the input pipeline.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from selinet_compress.emotic.categories import sentiment_matrix
from selinet_compress.errors import UserError


@dataclass
class EvalResult:
    """Scores and metrics of one evaluation. AP values are fractions in [0, 1]."""

    scores: np.ndarray  # N x C raw emotion scores
    scores_boosted: np.ndarray  # N x C after the sentiment boost (sigmoid scale)
    sentiment_scores: np.ndarray | None  # N x S raw sentiment scores (None: no sentiment head)
    labels: np.ndarray  # N x C 0/1
    sentiment_labels: np.ndarray  # N x S 0/1, from the config's sentiment map
    ids: list[str]
    categories: list[str]
    sentiments: list[str]
    metrics: dict[str, Any]
    throughput: float  # samples / s of the whole loop (loading, preprocessing, model, boost)
    seconds: float
    model: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.ids)

    def to_json(self) -> dict[str, Any]:
        """Metrics and provenance (no per-sample arrays: those go to :meth:`save_scores`)."""
        return {
            **self.metrics,
            "n": self.n,
            "throughput": round(self.throughput, 3),
            "seconds": round(self.seconds, 3),
            "model": self.model,
            "data": self.data,
            "settings": self.settings,
        }

    def save_scores(self, path: str | os.PathLike) -> Path:
        """Write the per-sample arrays to an ``.npz`` (atomically) with a JSON sidecar.

        Keys: ``scores``, ``scores_boosted``, ``labels``, ``ids``, ``categories``,
        ``sentiment_labels``, ``sentiments`` and, when the model has the head, ``sentiment_scores``.
        """
        from selinet_compress.io import atomic_path, sidecar_path, write_json_atomic

        path = Path(path)
        if path.suffix != ".npz":
            raise UserError(f"{path}: scores are saved as .npz; give a path ending in .npz")
        arrays = {
            "scores": self.scores.astype(np.float32),
            # float64: sigmoid scores of confident predictions tie in float32 (1 - 1e-9 == 1.0)
            "scores_boosted": self.scores_boosted.astype(np.float64),
            "labels": self.labels.astype(np.float32),
            "ids": np.array(self.ids),
            "categories": np.array(self.categories),
            "sentiment_labels": self.sentiment_labels,
            "sentiments": np.array(self.sentiments),
        }
        if self.sentiment_scores is not None:
            arrays["sentiment_scores"] = self.sentiment_scores.astype(np.float32)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, **arrays)
        write_json_atomic(sidecar_path(path), {"kind": "evaluation scores", **self.to_json()})
        return path


def compute_metrics(
    labels: np.ndarray,
    scores: np.ndarray,
    scores_boosted: np.ndarray,
    sentiment_labels: np.ndarray,
    sentiment_scores: np.ndarray | None,
    categories: list[str],
    sentiments: list[str],
) -> dict[str, Any]:
    """mAP raw and boosted, AP per class, sentiment AP, and which classes had no positive."""
    import warnings

    from selinet_compress.metrics import mean_ap, per_class_ap, sentiment_ap

    per_class = per_class_ap(labels, scores, categories)
    with warnings.catch_warnings():  # the same classes are undefined again: warned once above
        warnings.simplefilter("ignore")
        per_class_boosted = per_class_ap(labels, scores_boosted, categories)
    sentiment = (
        sentiment_ap(sentiment_labels, sentiment_scores, sentiments) if sentiment_scores is not None else {}
    )
    return {
        "map": mean_ap(per_class),
        "map_boosted": mean_ap(per_class_boosted),
        "per_class_ap": per_class,
        "per_class_ap_boosted": per_class_boosted,
        "sentiment_ap": sentiment,
        "undefined_classes": [name for name, ap in per_class.items() if ap is None],
        "positives": {name: int(labels[:, i].sum()) for i, name in enumerate(categories)},
    }


def evaluate(
    model: Any,
    data_dir: str | os.PathLike,
    split: str = "test",
    batch_size: int = 32,
    limit: int | None = None,
    threads: int | None = None,
    layout: str | None = None,
    workers: int = 0,
    progress: bool = True,
    runner: Any = None,
) -> EvalResult:
    """Score ``model`` (a model path, or an open Runner) on ``split`` of the EMOTIC data in ``data_dir``.

    ``runner`` (an open Runner) takes precedence over ``model``. ``workers > 0`` prefetches
    batches in threads so loading overlaps the model. Throughput is samples per second of the
    whole loop, loading and post-processing included.
    """
    from selinet_compress.emotic import iterate_batches, open_split
    from selinet_compress.model.boost import sentiment_boost
    from selinet_compress.runtimes import Runner, open_runner

    data = open_split(data_dir, split, layout)  # first: bad data fails before a model loads
    if runner is None:
        runner = model if isinstance(model, Runner) else open_runner(model, threads=threads)
    config = runner.config
    membership = sentiment_matrix(config.sentiment_map, config.categories, config.sentiments)
    emotion_scores, sentiment_scores, labels, sentiment_labels, ids = [], [], [], [], []

    started = time.perf_counter()
    for batch in iterate_batches(
        data, batch_size, config, limit=limit, workers=workers, progress="evaluate" if progress else False
    ):
        outputs = runner.run({name: batch[name] for name in runner.input_names})
        emotion_scores.append(np.asarray(outputs["emotions"], dtype=np.float32))
        if runner.has_sentiment:
            sentiment_scores.append(np.asarray(outputs["sentiments"], dtype=np.float32))
        labels.append(batch["emotions"])
        sentiment_labels.append(batch["sentiments"])
        ids.extend(batch["ids"])
    scores = np.concatenate(emotion_scores)
    sentiments = np.concatenate(sentiment_scores) if sentiment_scores else None
    boosted = sentiment_boost(scores, sentiments, membership, config.boost_top_k, config.boost_threshold)
    seconds = time.perf_counter() - started

    labels_all, sentiment_labels_all = np.concatenate(labels), np.concatenate(sentiment_labels)
    categories, sentiment_names = list(config.categories), list(config.sentiments)
    metrics = compute_metrics(
        labels_all, scores, boosted, sentiment_labels_all, sentiments, categories, sentiment_names
    )
    return EvalResult(
        scores=scores,
        scores_boosted=boosted,
        sentiment_scores=sentiments,
        labels=labels_all,
        sentiment_labels=sentiment_labels_all,
        ids=ids,
        categories=categories,
        sentiments=sentiment_names,
        metrics=metrics,
        throughput=len(ids) / seconds if seconds > 0 else float("inf"),
        seconds=seconds,
        model=runner.describe(),
        data={**data.describe(), "evaluated": len(ids)},
        settings={
            "batch_size": batch_size,
            "limit": limit,
            "workers": workers,
            "threads": threads,
            "boost_top_k": config.boost_top_k,
            "boost_threshold": config.boost_threshold,
        },
    )


def format_result(result: EvalResult) -> str:
    """The table ``selinet-compress evaluate`` prints (AP in percentage points, as the paper)."""

    def pp(value: float | None) -> str:
        return "   n/a" if value is None or not np.isfinite(value) else f"{100 * value:6.2f}"

    m = result.metrics
    model = result.model
    lines = [
        f"model: {model.get('path')} ({model.get('target')}"
        + (f" {model['version']}" if model.get("version") else "")
        + ")",
        f"data:  {result.data.get('root')} ({result.data.get('layout')}, split {result.data.get('split')}, "
        f"{result.n} of {result.data.get('n')} persons)",
        "",
        f"mAP          {pp(m['map'])}",
        f"mAP boosted  {pp(m['map_boosted'])}",
    ]
    if m["sentiment_ap"]:
        lines.append(
            "sentiment AP " + "  ".join(f"{name} {pp(ap).strip()}" for name, ap in m["sentiment_ap"].items())
        )
    else:
        lines.append("sentiment AP n/a (the model has no sentiment head)")
    lines += ["", f"{'category':<18}{'AP':>8}{'boosted':>9}{'positives':>11}"]
    for name, ap in m["per_class_ap"].items():
        lines.append(
            f"{name:<18}{pp(ap):>8}{pp(m['per_class_ap_boosted'][name]):>9}{m['positives'][name]:>11}"
        )
    if m["undefined_classes"]:
        lines.append(
            f"n/a: no positive sample among the evaluated persons ({len(m['undefined_classes'])} "
            "class(es), left out of the mean)"
        )
    lines += [
        "",
        f"throughput: {result.throughput:.1f} samples/s ({result.n} samples in {result.seconds:.1f} s, "
        f"batch {result.settings['batch_size']}, workers {result.settings['workers']})",
    ]
    return "\n".join(lines)
