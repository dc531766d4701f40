"""Sweep results -> the deployment decision: tables (md, csv, json, html) and plots.

Computing happens in the sweep; this module only reads ``RUN/results.json`` and renders. The
headline metric is the sentiment-boosted mAP when the model has a sentiment head (the paper's
reported AP), else the raw mAP; ΔAP is measured against the PyTorch fp32 reference on the same
test samples, with a paired-bootstrap 95 % interval.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selinet_compress.errors import UserError
from selinet_compress.io import write_bytes_atomic, write_json_atomic, write_text_atomic

RESULTS_FILE = "results.json"
RESULTS_KIND = "selinet-compress sweep"
DEFAULT_MAX_AP_DROP = 1.0  # percentage points
OK = "ok"
TFLITE_NOTE = (
    "TFLite latencies were measured with the LiteRT interpreter (XNNPACK) on this x86 CPU; "
    "phones (Arm, with dot-product / i8mm int8 kernels) rank int8 and fp16 differently."
)


@dataclass
class Recommendation:
    budget: float
    metric: str
    smallest: dict | None
    fastest: dict | None
    best_attempt: dict | None
    text: list[str]

    def to_dict(self) -> dict:
        key = ("variant", "target", "size_mb", "p50_ms", "delta", "delta_low", "delta_high")
        pick = lambda row: {k: row.get(k) for k in key} if row else None  # noqa: E731
        return {
            "max_ap_drop": self.budget,
            "metric": self.metric,
            "smallest": pick(self.smallest),
            "fastest": pick(self.fastest),
            "best_attempt": pick(self.best_attempt),
            "text": self.text,
        }


def load_results(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Read and check ``RUN/results.json``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is not a folder (give the RUN folder a sweep wrote)")
    path = run_dir / RESULTS_FILE
    if not path.is_file():
        raise UserError(f"{run_dir} is not a sweep run: it has no {RESULTS_FILE}")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} is not valid JSON ({exc})") from None
    if (
        not isinstance(results, dict)
        or results.get("kind") != RESULTS_KIND
        or not isinstance(results.get("rows"), list)
    ):
        raise UserError(f"{path} was not written by `selinet-compress sweep`")
    return results


def _num(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def _fmt(value: Any, digits: int = 2, signed: bool = False) -> str:
    number = _num(value)
    if math.isnan(number):
        return "–"
    return f"{number:+.{digits}f}" if signed else f"{number:.{digits}f}"


def table_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The report's rows: one per (variant, target), metrics in percentage points."""
    metric = "map_boosted" if results.get("has_sentiment", True) else "map"
    rows = []
    for row in results["rows"]:
        delta = row.get("delta", {}).get(metric, {}) if isinstance(row.get("delta"), dict) else {}
        rows.append(
            {
                "variant": row["variant"],
                "target": row["target"],
                "converter": row.get("converter") or "",
                "precision": row.get("precision", ""),
                "status": row.get("status", "failed"),
                "reason": row.get("reason") or "",
                "size_mb": _num(row.get("size_mb")),
                "size_pct": _num(row.get("size_pct")),
                "map": _num(row.get("map")) * 100,
                "map_boosted": _num(row.get("map_boosted")) * 100,
                "ap": _num(row.get(metric)) * 100,
                "delta": _num(delta.get("delta")) * 100,
                "delta_low": _num(delta.get("low")) * 100,
                "delta_high": _num(delta.get("high")) * 100,
                "sentiment_map": _num(row.get("sentiment_map")) * 100,
                "p50_ms": _num(row.get("p50_ms")),
                "p90_ms": _num(row.get("p90_ms")),
                "speedup": _num(row.get("speedup")),
                "per_class_ap": row.get("per_class_ap") or {},
                "artifact": row.get("artifact") or "",
            }
        )
    return rows


def recommend(rows: list[dict[str, Any]], budget: float, metric: str) -> Recommendation:
    """Smallest and fastest variants whose AP drop is within ``budget`` points; when none is, the
    compressed variant that comes closest, and why. Always answers."""
    measured = [r for r in rows if r["status"] == OK and not math.isnan(r["delta"])]
    compressed = [r for r in measured if r["precision"] != "fp32"]
    within = [r for r in compressed if -r["delta"] <= budget]
    text: list[str] = []
    smallest = min(within, key=lambda r: (r["size_mb"], r["p50_ms"])) if within else None
    fastest = min((r for r in within if not math.isnan(r["p50_ms"])), key=lambda r: r["p50_ms"], default=None)
    best_attempt = None

    def sure(row: dict) -> str:
        if -row["delta_low"] <= budget:
            return "the whole 95 % interval is within the budget"
        return (
            f"the point estimate is within the budget, but the 95 % interval reaches a drop of "
            f"{-row['delta_low']:.2f} points: measure on more samples before relying on it"
        )

    if smallest is not None:
        text.append(
            f"Smallest within a {budget:g}-point AP drop: {smallest['variant']} on {smallest['target']} — "
            f"{smallest['size_mb']:.2f} MB, ΔAP {smallest['delta']:+.2f} "
            f"({smallest['delta_low']:+.2f} … {smallest['delta_high']:+.2f}); {sure(smallest)}."
        )
    if fastest is not None:
        text.append(
            f"Fastest within the budget: {fastest['variant']} on {fastest['target']} — "
            f"p50 {fastest['p50_ms']:.2f} ms ({_fmt(fastest['speedup'])}x its fp32), "
            f"ΔAP {fastest['delta']:+.2f}; {sure(fastest)}."
        )
    if not within:
        best_attempt = max(compressed, key=lambda r: r["delta"], default=None)
        if best_attempt is None:
            failed = [r for r in rows if r["status"] != OK]
            reasons = "; ".join(
                f"{r['variant']}/{r['target']}: {r['reason'] or r['status']}" for r in failed[:4]
            )
            text.append("No compressed variant was measured" + (f" ({reasons})." if reasons else "."))
        else:
            text.append(
                f"No compressed variant stays within a {budget:g}-point AP drop. Closest: "
                f"{best_attempt['variant']} on {best_attempt['target']} (ΔAP {best_attempt['delta']:+.2f}, "
                f"{best_attempt['size_mb']:.2f} MB): its drop exceeds the budget by "
                f"{-best_attempt['delta'] - budget:.2f} points. Try QAT, keep the most sensitive layers "
                f"in float, or calibrate on more samples."
            )
    return Recommendation(budget, metric, smallest, fastest, best_attempt, text)


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated by any other (lower x is better, higher y is better)."""
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any(
            (x2 <= x and y2 >= y) and (x2 < x or y2 > y) for j, (x2, y2) in enumerate(points) if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


# ---------------------------------------------------------------------------------------------
# Plots


def _figure_png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buffer.getvalue()


def _label(row: dict) -> str:
    return f"{row['variant']}/{row['target']}" + (f" ({row['converter']})" if row["converter"] else "")


def plot_tradeoff(rows: list[dict], x_key: str, x_label: str, title: str) -> bytes | None:
    """AP against size or latency, one marker per target, the Pareto front drawn through."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [r for r in rows if r["status"] == OK and not math.isnan(r[x_key]) and not math.isnan(r["ap"])]
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    markers = {"torch": "o", "onnx": "s", "tflite": "^"}
    for target in sorted({r["target"] for r in points}):
        chosen = [r for r in points if r["target"] == target]
        ax.scatter(
            [r[x_key] for r in chosen],
            [r["ap"] for r in chosen],
            marker=markers.get(target, "D"),
            s=60,
            label=target,
            zorder=3,
        )
    for r in points:
        ax.annotate(
            r["variant"] + (f" ({r['converter']})" if r["converter"] else ""),
            (r[x_key], r["ap"]),
            textcoords="offset points",
            xytext=(5, 4),
            fontsize=7,
        )
    front = pareto_front([(r[x_key], r["ap"]) for r in points])
    ax.plot(
        [points[i][x_key] for i in front],
        [points[i]["ap"] for i in front],
        "--",
        color="grey",
        zorder=2,
        label="Pareto front",
    )
    ax.set_xlabel(x_label)
    ax.set_ylabel("mAP (points)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _figure_png(fig)


def plot_class_heatmap(rows: list[dict], reference: dict | None, categories: list[str]) -> bytes | None:
    """Per-class ΔAP (points) of every measured variant against the fp32 reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    if reference is None or not reference["per_class_ap"]:
        return None
    measured = [r for r in rows if r["status"] == OK and r["per_class_ap"] and r is not reference]
    if not measured:
        return None
    ref = reference["per_class_ap"]
    grid = np.array(
        [[(_num(r["per_class_ap"].get(c)) - _num(ref.get(c))) * 100 for c in categories] for r in measured]
    )
    limit = max(0.5, float(np.nanmax(np.abs(grid))) if np.isfinite(grid).any() else 0.5)
    fig, ax = plt.subplots(figsize=(11, 0.45 * len(measured) + 2.2))
    image = ax.imshow(grid, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
    ax.set_xticks(range(len(categories)), categories, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(measured)), [_label(r) for r in measured], fontsize=8)
    fig.colorbar(image, ax=ax, label="ΔAP vs PyTorch fp32 (points)")
    ax.set_title("Per-class AP change")
    return _figure_png(fig)


def plot_latency(rows: list[dict]) -> bytes | None:
    """p50 latency bars with the p90 as a whisker, grouped by target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timed = sorted(
        (r for r in rows if r["status"] == OK and not math.isnan(r["p50_ms"])),
        key=lambda r: (r["target"], r["p50_ms"]),
    )
    if not timed:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 0.35 * len(timed) + 1.5))
    ys = range(len(timed))
    colours = {"torch": "tab:blue", "onnx": "tab:orange", "tflite": "tab:green"}
    ax.barh(
        ys,
        [r["p50_ms"] for r in timed],
        color=[colours.get(r["target"], "tab:grey") for r in timed],
        xerr=[[0] * len(timed), [max(0.0, r["p90_ms"] - r["p50_ms"]) for r in timed]],
        capsize=3,
    )
    ax.set_yticks(list(ys), [_label(r) for r in timed], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("latency, ms (bar: p50, whisker: p90)")
    ax.set_title("Latency at batch 1")
    ax.grid(axis="x", alpha=0.3)
    return _figure_png(fig)


# ---------------------------------------------------------------------------------------------
# Rendering


COLUMNS = [
    ("variant", "variant"),
    ("target", "target"),
    ("converter", "converter"),
    ("precision", "precision"),
    ("size_mb", "size MB"),
    ("size_pct", "size %"),
    ("ap", "mAP"),
    ("delta", "ΔAP (95 % CI)"),
    ("map", "mAP raw"),
    ("sentiment_map", "sentiment AP"),
    ("p50_ms", "p50 ms"),
    ("p90_ms", "p90 ms"),
    ("speedup", "speed-up"),
    ("status", "status"),
]


def _cells(row: dict) -> list[str]:
    delta = (
        "–"
        if math.isnan(row["delta"])
        else (f"{row['delta']:+.2f} ({row['delta_low']:+.2f} … {row['delta_high']:+.2f})")
    )
    status = row["status"] + (f": {row['reason']}" if row["reason"] else "")
    values = {
        "variant": row["variant"],
        "target": row["target"],
        "converter": row["converter"] or "–",
        "precision": row["precision"],
        "size_mb": _fmt(row["size_mb"]),
        "size_pct": _fmt(row["size_pct"], 1),
        "ap": _fmt(row["ap"]),
        "delta": delta,
        "map": _fmt(row["map"]),
        "sentiment_map": _fmt(row["sentiment_map"]),
        "p50_ms": _fmt(row["p50_ms"]),
        "p90_ms": _fmt(row["p90_ms"]),
        "speedup": "–" if math.isnan(row["speedup"]) else f"{row['speedup']:.2f}x",
        "status": status,
    }
    return [values[key] for key, _ in COLUMNS]


def render_markdown(results: dict, rows: list[dict], rec: Recommendation, images: dict[str, str]) -> str:
    lines = [f"# SeLiNet compression report{' (SYNTHETIC DATA)' if results.get('synthetic') else ''}", ""]
    if results.get("synthetic"):
        lines += [
            "> Measured on the toolkit's synthetic EMOTIC-format data: these figures demonstrate the "
            "pipeline; they are not EMOTIC results.",
            "",
        ]
    lines += [
        f"Checkpoint `{results.get('checkpoint', '?')}`, data `{results.get('data', '?')}` "
        f"({results.get('split', 'test')} split, {results.get('n', '?')} samples). "
        f"mAP = {'sentiment-boosted' if rec.metric == 'map_boosted' else 'raw'} mean AP over the 26 "
        "categories, in points; ΔAP against PyTorch fp32 with a paired-bootstrap 95 % interval; "
        "size % and speed-up against fp32 on the same target.",
        "",
        "## Recommendation",
        "",
    ]
    lines += [f"- {line}" for line in rec.text]
    lines += [
        "",
        "## Results",
        "",
        "| " + " | ".join(title for _, title in COLUMNS) + " |",
        "|" + "|".join("---" for _ in COLUMNS) + "|",
    ]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in _cells(r)) + " |" for r in rows]
    lines += ["", TFLITE_NOTE, ""]
    for title, name in (
        ("AP against size", "ap_vs_size"),
        ("AP against latency", "ap_vs_latency"),
        ("Per-class ΔAP", "class_delta"),
        ("Latency", "latency"),
    ):
        if name in images:
            lines += [f"### {title}", "", f"![{title}]({images[name]})", ""]
    env = results.get("environment") or {}
    cpu = env.get("cpu") or {}
    if cpu:
        lines += [
            "## Machine",
            "",
            f"{cpu.get('model', '?')}, {cpu.get('logical_cores', '?')} cores, flags: "
            f"{' '.join(cpu.get('flags', []))}; versions: "
            + ", ".join(f"{k} {v}" for k, v in (env.get("versions") or {}).items() if v),
            "",
        ]
    return "\n".join(lines)


def render_html(results: dict, rows: list[dict], rec: Recommendation, pngs: dict[str, bytes]) -> str:
    esc = html.escape
    title = "SeLiNet compression report" + (" (synthetic data)" if results.get("synthetic") else "")
    head = "".join(f"<th>{esc(t)}</th>" for _, t in COLUMNS)
    body = "".join(
        f"<tr class='{esc(r['status'].split(':')[0])}'>"
        + "".join(f"<td>{esc(c)}</td>" for c in _cells(r))
        + "</tr>"
        for r in rows
    )
    figures = "".join(
        f"<figure><img alt='{esc(name)}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"
        f"<figcaption>{esc(name.replace('_', ' '))}</figcaption></figure>"
        for name, png in pngs.items()
    )
    metric_name = "sentiment-boosted" if rec.metric == "map_boosted" else "raw"
    intro = (
        f"Checkpoint {results.get('checkpoint', '?')}, {results.get('split', 'test')} split, "
        f"{results.get('n', '?')} samples. mAP in points ({metric_name}); ΔAP against PyTorch fp32 with a "
        "paired-bootstrap 95 % interval; size % and speed-up against fp32 on the same target."
    )
    warning = (
        "<p class='warn'>Measured on synthetic EMOTIC-format data: these figures demonstrate the "
        "pipeline; they are not EMOTIC results.</p>"
        if results.get("synthetic")
        else ""
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; font-size: 13px; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
td:nth-child(-n+4), td:last-child {{ text-align: left; }}
tr.failed td, tr.unsupported td {{ color: #888; }}
.warn {{ background: #fff3cd; padding: 0.6em; border-left: 4px solid #e0a800; }}
figure {{ display: inline-block; margin: 1em; vertical-align: top; }}
img {{ max-width: 820px; }}
</style></head><body>
<h1>{esc(title)}</h1>{warning}
<p>{esc(intro)}</p>
<h2>Recommendation</h2><ul>{"".join(f"<li>{esc(t)}</li>" for t in rec.text)}</ul>
<h2>Results</h2><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>
<p>{esc(TFLITE_NOTE)}</p>
<h2>Plots</h2>{figures}
</body></html>
"""


def write_report(
    run_dir: str | os.PathLike,
    max_ap_drop: float = DEFAULT_MAX_AP_DROP,
    out_dir: str | os.PathLike | None = None,
) -> dict[str, Path]:
    """Render ``RUN/results.json`` into report.md / .html / .csv / .json and PNG plots."""
    import pandas as pd

    if not (isinstance(max_ap_drop, (int, float)) and math.isfinite(max_ap_drop) and max_ap_drop >= 0):
        raise UserError(f"the AP-drop budget must be a non-negative number of points, got {max_ap_drop}")
    results = load_results(run_dir)
    out = Path(out_dir) if out_dir is not None else Path(run_dir)
    rows = table_rows(results)
    metric = "map_boosted" if results.get("has_sentiment", True) else "map"
    rec = recommend(rows, float(max_ap_drop), metric)
    reference = next(
        (r for r in rows if r["target"] == "torch" and r["precision"] == "fp32" and r["status"] == OK), None
    )
    categories = results.get("categories") or (list(reference["per_class_ap"]) if reference else [])
    pngs = {
        name: png
        for name, png in {
            "ap_vs_size": plot_tradeoff(rows, "size_mb", "size, MB", "AP against model size"),
            "ap_vs_latency": plot_tradeoff(
                rows, "p50_ms", "p50 latency at batch 1, ms", "AP against latency"
            ),
            "class_delta": plot_class_heatmap(rows, reference, list(categories)),
            "latency": plot_latency(rows),
        }.items()
        if png is not None
    }
    written: dict[str, Path] = {}
    images: dict[str, str] = {}
    for name, png in pngs.items():
        written[name] = write_bytes_atomic(out / f"{name}.png", png)
        images[name] = f"{name}.png"
    flat = pd.DataFrame([{k: v for k, v in r.items() if k != "per_class_ap"} for r in rows])
    written["csv"] = write_text_atomic(out / "report.csv", flat.to_csv(index=False, float_format="%.4f"))
    written["json"] = write_json_atomic(
        out / "report.json",
        {
            "checkpoint": results.get("checkpoint"),
            "data": results.get("data"),
            "split": results.get("split"),
            "n": results.get("n"),
            "synthetic": bool(results.get("synthetic")),
            "metric": metric,
            "units": "AP and ΔAP in percentage points; sizes in MB (10^6 bytes); latency in ms",
            "recommendation": rec.to_dict(),
            "rows": [
                {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
                for r in rows
            ],
        },
    )
    written["md"] = write_text_atomic(out / "report.md", render_markdown(results, rows, rec, images))
    written["html"] = write_text_atomic(out / "report.html", render_html(results, rows, rec, pngs))
    return written
