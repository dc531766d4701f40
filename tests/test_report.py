"""Report rendering from a sweep's results.json: tables, plots, recommendation, bad input."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import assert_one_line_error

from selinet_compress.emotic.categories import CATEGORIES
from selinet_compress.errors import UserError
from selinet_compress.report import RESULTS_KIND, pareto_front, recommend, table_rows, write_report


def _row(variant, target, precision, size, ap, delta, p50, status="ok", reason=None, converter=None):
    per_class = {
        c: ap + (0.01 if i % 2 else -0.01) + (delta if i < 3 else 0) for i, c in enumerate(CATEGORIES)
    }
    row = {
        "variant": variant,
        "target": target,
        "precision": precision,
        "converter": converter,
        "status": status,
        "reason": reason,
    }
    if status == "ok":
        row.update(
            {
                "size_mb": size,
                "size_pct": 100 * size / 28.7,
                "map": ap - 0.01,
                "map_boosted": ap,
                "delta": {"map_boosted": {"delta": delta, "low": delta - 0.004, "high": delta + 0.004}},
                "sentiment_map": 0.7,
                "p50_ms": p50,
                "p90_ms": p50 * 1.2,
                "speedup": 20.0 / p50 if target != "torch" else 1.0,
                "per_class_ap": per_class,
            }
        )
    return row


def make_run(tmp_path: Path, rows: list[dict]) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    results = {
        "kind": RESULTS_KIND,
        "version": 1,
        "checkpoint": "m.pt",
        "data": "synth",
        "split": "test",
        "n": 600,
        "synthetic": True,
        "has_sentiment": True,
        "categories": list(CATEGORIES),
        "rows": rows,
    }
    (run / "results.json").write_text(json.dumps(results))
    return run


ROWS = [
    _row("fp32", "torch", "fp32", 28.7, 0.60, 0.0, 30.0),
    _row("fp32", "onnx", "fp32", 28.5, 0.60, 0.0, 20.0),
    _row("int8_static", "onnx", "int8_static", 7.7, 0.594, -0.006, 12.0),
    _row("int8_dynamic", "onnx", "int8_dynamic", 22.6, 0.599, -0.001, 19.0),
    _row("fp16", "tflite", "fp16", 14.3, 0.5999, -0.0001, 25.0),
    _row("int8_static", "tflite", "int8_static", 7.5, 0.57, -0.03, 15.0, converter="onnx2tf"),
    _row("int8_qat", "tflite", "int8_qat", 0, 0, 0, 0, status="unsupported", reason="no route"),
    _row("int8_dynamic", "tflite", "int8_dynamic", 0, 0, 0, 0, status="failed", reason="conversion crashed"),
]


def test_pareto_front_keeps_only_undominated_points():
    points = [(1.0, 0.5), (2.0, 0.6), (3.0, 0.55), (0.5, 0.4), (2.0, 0.7)]
    assert pareto_front(points) == [3, 0, 4]


def test_recommendation_picks_smallest_and_fastest_within_budget(tmp_path):
    rows = table_rows(json.loads((make_run(tmp_path, ROWS) / "results.json").read_text()))
    rec = recommend(rows, budget=1.0, metric="map_boosted")
    assert (rec.smallest["variant"], rec.smallest["target"]) == ("int8_static", "onnx")
    assert (rec.fastest["variant"], rec.fastest["target"]) == ("int8_static", "onnx")
    strict = recommend(rows, budget=0.05, metric="map_boosted")
    assert (strict.smallest["variant"], strict.smallest["target"]) == ("fp16", "tflite")
    assert "95 % interval reaches a drop of 0.41" in strict.text[0]  # the CI says how sure it is
    assert "whole 95 % interval is within" in rec.text[0]
    none = recommend(rows, budget=0.0, metric="map_boosted")
    assert none.smallest is None and none.best_attempt["variant"] == "fp16"
    assert "No compressed variant stays within" in none.text[0]


def test_report_writes_every_format_with_inline_plots(tmp_path):
    written = write_report(make_run(tmp_path, ROWS), max_ap_drop=1.0)
    assert {"md", "html", "csv", "json", "ap_vs_size", "ap_vs_latency", "class_delta", "latency"} <= set(
        written
    )
    page = written["html"].read_text()
    images = re.findall(r"<img [^>]*src='([^']+)'", page)
    assert len(images) == 4 and all(src.startswith("data:image/png;base64,") for src in images)
    assert "src='http" not in page and "href=" not in page  # self-contained
    md = written["md"].read_text()
    assert "| int8_static | onnx |" in md and "-0.60 (-1.00 … -0.20)" in md
    assert "unsupported: no route" in md and "failed: conversion crashed" in md
    assert "SYNTHETIC" in md
    data = json.loads(written["json"].read_text())
    assert data["recommendation"]["smallest"]["variant"] == "int8_static"
    assert len(data["rows"]) == len(ROWS)
    csv = written["csv"].read_text().splitlines()
    assert csv[0].startswith("variant,target") and len(csv) == len(ROWS) + 1


def test_report_cli_and_bad_input(tmp_path, cli):
    run = make_run(tmp_path, ROWS)
    result = cli("report", run, "--max-ap-drop", "0.5")
    assert result.exit_code == 0, result.output
    assert (run / "report.html").exists()
    assert_one_line_error(cli("report", tmp_path), "not a sweep run")
    assert_one_line_error(cli("report", run, "--max-ap-drop", "-1"), "non-negative")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "results.json").write_text("{not json")
    assert_one_line_error(cli("report", tmp_path / "bad"), "not valid JSON")
    with pytest.raises(UserError, match="not written by"):
        (tmp_path / "other").mkdir()
        (tmp_path / "other" / "results.json").write_text("[]")
        write_report(tmp_path / "other")


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def test_report_html_renders_every_plot_in_headless_chromium(tmp_path):
    """Load the page in a real browser and read back, per image, the size it decoded to."""
    if CHROMIUM is None:
        if os.environ.get("SELINET_REQUIRE_CHROMIUM"):  # CI installs it: a missing browser is a failure
            pytest.fail("chromium is required (SELINET_REQUIRE_CHROMIUM) but not installed")
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    page = write_report(make_run(tmp_path, ROWS))["html"]
    probe = tmp_path / "probe.html"
    script = (
        "<script>window.addEventListener('load', () => { const out = document.createElement('pre');"
        " out.id = 'probe'; out.textContent = JSON.stringify([...document.images].map("
        "i => [i.complete, i.naturalWidth, i.naturalHeight])); document.body.append(out); });</script>"
    )
    probe.write_text(page.read_text().replace("</body>", script + "</body>"))
    dom = subprocess.run(
        [
            CHROMIUM,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            probe.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom)
    assert found, dom[-500:]
    images = json.loads(found.group(1))
    assert len(images) == 4
    assert all(complete and width > 200 and height > 100 for complete, width, height in images), images
