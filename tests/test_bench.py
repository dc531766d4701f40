"""bench: real measurements in a fresh process, same inputs on every target, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import assert_one_line_error

from selinet_compress.checkpoint import save_checkpoint
from selinet_compress.model.selinet import SeLiNetConfig, build_model

KEYS = {
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "mean_ms",
    "std_ms",
    "size_mb",
    "peak_rss_mb",
    "load_ms",
    "throughput",
    "environment",
    "runtime",
    "timing",
}


@pytest.fixture(scope="module")
def small_models(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    config = SeLiNetConfig(body_size=64, context_size=64)
    save_checkpoint(build_model(config, seed=0), folder / "a.pt")
    save_checkpoint(build_model(config.replace(use_aesthetics=False), seed=0), folder / "b.pt")
    (folder / "notes.txt").write_text("not a model")
    return folder


def test_bench_one_file_json(small_models, tmp_path, cli):
    out = tmp_path / "bench.json"
    result = cli("bench", small_models / "a.pt", "--runs", "5", "--warmup", "1", "--json", out)
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    assert KEYS <= set(record)
    assert 0 < record["p50_ms"] <= record["p90_ms"] <= record["p99_ms"]
    assert record["size_mb"] == pytest.approx((small_models / "a.pt").stat().st_size / 1e6)
    assert record["peak_rss_mb"] > 50 and record["threads"] == 2 and record["runs"] == 5
    assert record["environment"]["cpu"]["logical_cores"] >= 1
    assert "p50 ms" in result.output


def test_bench_folder_measures_each_model_in_its_own_process(small_models, cli):
    result = cli("bench", small_models, "--target", "torch", "--runs", "3", "--warmup", "0", "--json", "-")
    records = json.loads(result.stdout)  # progress goes to stderr
    assert [Path(r["model"]).name for r in records] == ["a.pt", "b.pt"]
    assert records[0]["runtime"]["version"]  # each record names the runtime version


def test_bench_bad_input(small_models, tmp_path, cli):
    assert_one_line_error(cli("bench", tmp_path / "missing.pt"), "no such file")
    assert_one_line_error(cli("bench", small_models / "a.pt", "--target", "onnx"), "is a torch model")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(cli("bench", tmp_path / "empty"), "no model files")
    (tmp_path / "broken.pt").write_text("garbage")
    assert_one_line_error(cli("bench", tmp_path / "broken.pt", "--runs", "2"), "not a PyTorch checkpoint")


def test_interleaved_latency_times_every_model_in_every_round():
    from selinet_compress.bench import interleaved_latency

    order: list[str] = []
    timing = interleaved_latency(
        {"a": lambda: order.append("a"), "b": lambda: order.append("b")}, 3, 2, warmup=1
    )
    assert order == ["a", "b"] + ["a", "a", "b", "b"] * 3  # warm-up, then rounds alternate models
    assert {t["n"] for t in timing.values()} == {6}
    assert all(0 <= t["min_ms"] <= t["p50_ms"] <= t["p90_ms"] for t in timing.values())
