"""demo: synthetic data -> training -> sweep -> report, on a tiny plan; reruns reuse every stage."""

from __future__ import annotations

import json

import pytest

from selinet_compress.demo import PLANS, DemoPlan, demo
from selinet_compress.recipes import load_recipe

TINY = DemoPlan(
    train=52,
    val=16,
    test=40,
    epochs=1,
    lr=0.001,
    lr_step=1,
    batch_size=26,
    recipes=("fp32", "int8_static", "int8_qat"),
    targets=("onnx",),
    bench_runs=3,
    qat_epochs=1,
    qat_limit_train=26,
    body_size=64,
    context_size=64,
)


def test_plans_name_real_recipes_and_targets():
    from selinet_compress.sweep import plan_cells

    for plan in PLANS.values():
        cells = plan_cells([r for r in plan.recipes or () if r != "int8_qat"] or None, plan.targets)
        assert cells


@pytest.mark.slow
def test_demo_end_to_end_then_rerun_reuses_everything(tmp_path):
    out, reports = tmp_path / "demo", tmp_path / "reports"
    lines: list[str] = []
    record = demo(out, plan=TINY, reports_dir=reports, progress=False, log=lines.append)
    rows = json.loads((out / "run-custom" / "results.json").read_text())["rows"]
    by_variant = {(r["variant"], r["target"]): r for r in rows}
    assert by_variant[("fp32", "torch")]["status"] == "ok"
    assert by_variant[("int8_static", "onnx")]["status"] == "ok"
    qat = by_variant[("int8_qat_demo", "onnx")]
    assert qat["status"] == "ok", qat.get("reason")
    assert "shortened for the demo" in load_recipe(out / "recipes-custom" / "int8_qat_demo.yaml").description
    assert (out / "model-custom.pt").is_file() and (out / "demo-custom.json").is_file()
    for name in ("report.md", "report.html", "report.csv", "report.json", "ap_vs_size.png"):
        assert (reports / name).is_file()
    assert not list(reports.glob("*.onnx")) and not list(reports.glob("*.pt"))
    assert record["flavour"] == "custom" and record["seconds"]["total"] > 0

    lines.clear()
    demo(out, plan=TINY, progress=False, log=lines.append)
    assert any("data: reusing" in line for line in lines)
    assert any("train: reusing" in line for line in lines)
    again = json.loads((out / "run-custom" / "results.json").read_text())["rows"]
    assert [r["map"] for r in again] == [r["map"] for r in rows]
