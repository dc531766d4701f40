"""sweep: the matrix becomes rows (ok / unsupported / failed), cached and resumable; demo plans."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import assert_one_line_error

from selinet_compress.checkpoint import save_checkpoint
from selinet_compress.model.selinet import SeLiNetConfig, build_model
from selinet_compress.sweep import SweepSettings, plan_cells, sweep

SMALL = SeLiNetConfig(body_size=64, context_size=64)
FAST = SweepSettings(bench_runs=3, bench_warmup=1, n_boot=200)


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path, Path]:
    from selinet_compress.emotic.synth import generate

    root = tmp_path_factory.mktemp("sweep")
    generate(root / "data", "arrays", {"train": 40, "val": 16, "test": 40}, seed=2)
    checkpoint = save_checkpoint(build_model(SMALL, seed=0), root / "small.pt")
    recipes = root / "recipes"
    recipes.mkdir()
    (recipes / "tflite_only.yaml").write_text(
        "description: fp16 for TFLite only\nprecision: fp16\ntargets: [tflite]\n"
    )
    (recipes / "broken.yaml").write_text(
        "description: keeps a module that does not exist in float\nprecision: int8_static\n"
        "keep_float_modules: [no_such_module]\ncalibration: {samples: 8}\n"
    )
    return root, checkpoint, recipes


def _rows(results: Path) -> dict[tuple[str, str], dict]:
    return {(r["variant"], r["target"]): r for r in json.loads(results.read_text())["rows"]}


def test_sweep_rows_statuses_deltas_and_cache(setup, tmp_path):
    root, checkpoint, recipes = setup
    run = tmp_path / "run"
    chosen = ["fp32", "int8_static", str(recipes / "tflite_only.yaml"), str(recipes / "broken.yaml")]
    results = sweep(checkpoint, root / "data", run, chosen, ["onnx"], FAST, progress=False)
    rows = _rows(results)
    assert set(rows) == {
        ("fp32", "torch"),
        ("fp32", "onnx"),
        ("int8_static", "onnx"),
        ("tflite_only", "onnx"),
        ("broken", "onnx"),
    }
    reference = rows[("fp32", "torch")]
    assert reference["status"] == "ok" and reference["delta"]["map"]["delta"] == 0.0
    static = rows[("int8_static", "onnx")]
    assert static["status"] == "ok" and static["size_mb"] < 0.35 * rows[("fp32", "onnx")]["size_mb"]
    low, delta, high = (static["delta"]["map_boosted"][k] for k in ("low", "delta", "high"))
    assert low <= delta <= high
    assert static["p50_ms"] > 0 and static["speedup"] > 0 and 0 <= static["map"] <= 1
    assert rows[("tflite_only", "onnx")]["status"] == "unsupported"
    assert "restricted to targets: tflite" in rows[("tflite_only", "onnx")]["reason"]
    broken = rows[("broken", "onnx")]
    assert (
        broken["status"] == "failed" and broken["stage"] == "build" and "no_such_module" in broken["reason"]
    )
    assert (run / "cells" / "broken.onnx" / "failure.txt").is_file()
    assert (run / "results.csv").read_text().startswith("variant,target")

    # a rerun rebuilds, re-evaluates and re-benchmarks nothing, and gives the same rows
    artifacts = {p: p.stat().st_mtime_ns for p in (run / "artifacts").glob("*.onnx")}
    records = {p: p.stat().st_mtime_ns for p in (run / "cells").rglob("*.json")}
    again = sweep(checkpoint, root / "data", run, chosen, ["onnx"], FAST, progress=False)
    assert {p: p.stat().st_mtime_ns for p in artifacts} == artifacts
    assert {p: p.stat().st_mtime_ns for p in records} == records
    assert _rows(again)[("int8_static", "onnx")] | {"reused": None} == static | {"reused": None}


def test_sweep_bad_input(setup, tmp_path, cli):
    root, checkpoint, _ = setup
    assert_one_line_error(
        cli("sweep", checkpoint, "--data", root / "data", "--out", tmp_path / "r", "--targets", "onnxx"),
        "did you mean 'onnx'",
    )
    assert_one_line_error(
        cli(
            "sweep", checkpoint, "--data", root / "data", "--out", tmp_path / "r", "--recipes", "int8_statik"
        ),
        "int8_static",
    )
    assert_one_line_error(
        cli("sweep", checkpoint, "--data", root / "data", "--out", tmp_path / "r", "--converters", "tf"),
        "unknown converter 'tf'",
    )
    assert_one_line_error(
        cli("sweep", tmp_path / "none.pt", "--data", root / "data", "--out", tmp_path / "r"), "no such file"
    )
    other = save_checkpoint(build_model(SMALL, seed=1), tmp_path / "other.pt")
    sweep(checkpoint, root / "data", tmp_path / "r", ["fp32"], ["onnx"], FAST, progress=False)
    assert_one_line_error(
        cli("sweep", other, "--data", root / "data", "--out", tmp_path / "r"), "another checkpoint"
    )


def test_target_whose_runtime_is_not_installed_becomes_unsupported_rows(setup, tmp_path, monkeypatch, cli):
    from selinet_compress.targets.tflite import TFLiteTarget

    root, checkpoint, _ = setup
    # an environment without the LiteRT interpreter: the module name simply does not resolve
    monkeypatch.setattr(TFLiteTarget, "runtime_modules", (("ai_edge_litert_absent", "ai-edge-litert"),))
    results = sweep(checkpoint, root / "data", tmp_path / "r", ["fp32"], ["tflite"], FAST, progress=False)
    rows = _rows(results)
    tflite = [r for (_, target), r in rows.items() if target == "tflite"]
    assert tflite and all(r["status"] == "unsupported" for r in tflite)
    assert "ai_edge_litert_absent, which is not installed (pip install ai-edge-litert)" in tflite[0]["reason"]
    assert rows[("fp32", "torch")]["status"] == "ok"  # the rest of the sweep goes on


def test_every_target_offers_its_variants():
    names = [c.name for c in plan_cells(["int8_static"], None)]
    assert names == ["int8_static.onnx", "int8_static.tflite.onnx2tf", "int8_static.tflite.litert-torch"]
    names = [c.name for c in plan_cells(["int8_static"], None, variants=["onnx2tf"])]
    assert names == ["int8_static.onnx", "int8_static.tflite.onnx2tf"]


@pytest.mark.slow
def test_sigkill_mid_sweep_then_rerun_equals_an_uninterrupted_run(setup, tmp_path):
    root, checkpoint, _ = setup
    args = ["--recipes", "fp32,int8_dynamic,int8_static", "--targets", "onnx", "--runs", "3", "--warmup", "1"]

    def command(run: Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            "selinet_compress.cli",
            "sweep",
            str(checkpoint),
            "--data",
            str(root / "data"),
            "--out",
            str(run),
            *args,
        ]

    subprocess.run(command(tmp_path / "ref"), check=True, capture_output=True)
    run = tmp_path / "run"
    proc = subprocess.Popen(command(run), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not list((run / "artifacts").glob("*.onnx")):
        time.sleep(0.05)
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = {p: p.stat().st_mtime_ns for p in (run / "artifacts").glob("*.onnx")}
    assert finished, "killed before any artifact was built"
    assert not [p for p in run.rglob(".*") if p.is_file()] or all(
        p.name.endswith(".tmp") or ".tmp" in p.name for p in run.rglob(".*") if p.is_file()
    )
    subprocess.run(command(run), check=True, capture_output=True)
    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # no finished cell rebuilt
    ours, reference = _rows(run / "results.json"), _rows(tmp_path / "ref" / "results.json")
    assert set(ours) == set(reference)
    for key, row in reference.items():
        for field in ("status", "size_mb", "map", "map_boosted", "per_class_ap", "delta", "sentiment_ap"):
            assert ours[key].get(field) == row.get(field), (key, field)
    # latency is not compared: unfinished cells are benchmarked anew, and timing is noise
