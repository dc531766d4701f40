"""int8_qat through `quantize` (ONNX and TFLite sharing one fine-tuning run, an interrupted run
resumed) and the full-size network's QAT ONNX as onnxruntime runs it. Minutes each: --slow."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from onnx_fixtures import small_setup

from selinet_compress.io import read_sidecar

pytestmark = pytest.mark.slow


def tiny_recipe(path, epochs: int = 2):
    path.write_text(
        "description: short QAT for tests\nprecision: int8_qat\nkeep_outputs_float: true\n"
        f"qat: {{epochs: {epochs}, batch_size: 8, limit_train: 16, freeze_bn_epoch: 1,"
        " freeze_observers_epoch: 2}\n"
    )
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return small_setup(tmp_path_factory.getbasetemp())


def test_quantize_int8_qat_onnx_then_tflite_share_one_run(setup, tmp_path, cli):
    from selinet_compress.runtimes import open_runner

    recipe = tiny_recipe(tmp_path / "qat_short.yaml")
    common = [
        "--recipe",
        recipe,
        "--data",
        setup.data,
        "--out",
        tmp_path / "out",
        "--cache",
        tmp_path / "cache",
        "--check-samples",
        "4",
    ]
    result = cli("quantize", setup.checkpoint, "--target", "onnx", *common)
    assert result.exit_code == 0, result.output
    onnx_path = tmp_path / "out" / "qat_short.onnx"
    sidecar = read_sidecar(onnx_path)
    quantized = sidecar["quantization"]
    learned = quantized["learned_qparams_in_file"]
    assert all(
        learned[k]["matched"] == learned[k]["total"] > 0 for k in ("activation_scales", "weight_scales")
    )
    assert [h["epoch"] for h in quantized["qat"]["history"]] == [1, 2] and not quantized["qat"]["reused"]
    assert quantized["qat"]["wall_seconds"] > 0 and quantized["export"]["activation_type"] == "uint8"
    runtime = sidecar["audit"]["runtime"]
    assert runtime["ops_by_precision"]["QLinearConv"]["int8"] == sidecar["audit"]["node_counts"]["Conv"]
    assert (
        runtime["ops_by_precision"]["Gemm"].get("fp32", 0)
        + runtime["ops_by_precision"].get("FusedGemm", {}).get("fp32", 0)
        >= 2
    )  # the two output layers stayed float (keep_outputs_float)
    outputs = open_runner(onnx_path).run({"body": np.zeros((2, 3, 64, 64), np.float32)})
    assert outputs["emotions"].shape == (2, 26) and np.isfinite(outputs["emotions"]).all()

    result = cli("quantize", setup.checkpoint, "--target", "tflite", *common)
    assert result.exit_code == 0, result.output
    tflite = read_sidecar(tmp_path / "out" / "qat_short.tflite")
    qat_pass, route = tflite["passes"]
    assert qat_pass["reused"] and qat_pass["run_dir"] == quantized["qat"]["run_dir"]  # one fine-tuning
    assert route["route"] == "litert_torch" and "no re-calibration" in route["what_was_done"]
    assert "int8" in tflite["what_it_is"]
    lite = open_runner(tmp_path / "out" / "qat_short.tflite").run(
        {"body": np.zeros((1, 3, 64, 64), np.float32)}
    )
    assert np.isfinite(lite["emotions"]).all()


def test_interrupted_qat_run_resumes(setup, tmp_path):
    """A run killed after epoch 1 (resume state written, no final summary) continues at epoch 2."""
    from selinet_compress.calibration import load_check_samples
    from selinet_compress.checkpoint import load_model
    from selinet_compress.io import sha256_file
    from selinet_compress.passes import qat as Q
    from selinet_compress.passes.qat_build import run_dir, run_qat, train_config
    from selinet_compress.recipes import load_recipe
    from selinet_compress.targets.base import BuildJob
    from selinet_compress.train import run_paths, train

    recipe = load_recipe(str(tiny_recipe(tmp_path / "qat_short.yaml")))
    model, _ = load_model(setup.checkpoint)
    job = BuildJob(
        checkpoint=setup.checkpoint,
        checkpoint_sha256=sha256_file(setup.checkpoint),
        model=model,
        recipe=recipe,
        data_dir=setup.data,
        artifact=tmp_path / "out" / "x.onnx",
        check=load_check_samples(setup.data, model.config, 2),
        cache_dir=tmp_path / "cache",
        progress=False,
    )
    folder = run_dir(job)
    out = folder / "qat.pt"
    options = recipe.section("qat")
    first = train_config(options).__class__(**{**train_config(options).to_dict(), "epochs": 1})
    train(
        setup.data,
        out,
        first,
        init=setup.checkpoint,
        # the graph run_qat builds for this recipe (float output layers included)
        hooks=Q.qat_hooks(options, recipe.per_channel, recipe.keep_float_modules, recipe.keep_outputs_float),
        progress=False,
        log=lambda _: None,
    )
    out.with_name(out.name + ".json").unlink()  # as if killed before the final summary
    messages = []
    job.log = messages.append  # type: ignore[method-assign]
    run = run_qat(job)
    assert any("resuming" in m for m in messages)
    assert [h["epoch"] for h in run.record["history"]] == [1, 2]
    state = torch.load(run_paths(out)["state"], weights_only=True)
    assert state["epoch"] == 1  # 0-based: the second epoch finished


def test_full_size_qat_onnx_runs_as_integer_kernels_without_extra_qdq(tmp_path):
    """The full network (both trunks, 128 / 224 px): every conv an int8 kernel, ReLU6 folded into
    the conv (no float Clip), few Quantize / DequantizeLinear left for onnxruntime to run."""
    from onnx_fixtures import responsive_checkpoint

    from selinet_compress.checkpoint import load_model
    from selinet_compress.model.selinet import SeLiNetConfig
    from selinet_compress.passes import qat as Q
    from selinet_compress.passes.qat_build import runtime_qdq

    model, _ = load_model(responsive_checkpoint(tmp_path / "full.pt", SeLiNetConfig()))
    qm = Q.prepare_qat(model)
    qm.train()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        qm(*[torch.randn((4, *e.shape[1:]), generator=generator) for e in model.example_inputs(1)])
    qm.eval()
    path = tmp_path / "qat.onnx"
    Q.export_qat_onnx(Q.convert_qat(qm), path, model.config)
    ran = runtime_qdq(path)
    assert ran["integer_kernels"] >= 116 + 8  # 116 convs (QLinearConv) and 8 dense layers (QGemm)
    assert "Clip" not in ran["float_ops"] and "Conv" not in ran["float_ops"]
    # Measured 40 / 41 (what is left: hard-swish, squeeze-excitation gates, attention pooling),
    # 75 / 76 before ReLU6 was quantized after the clip.
    assert ran["unfused_quantize"] <= 45 and ran["unfused_dequantize"] <= 45, json.dumps(ran)


def test_tflite_route_onnx2tf_calibrated_uses_the_tuned_float_weights(setup, tmp_path, cli):
    """The other TFLite route: QAT-tuned float weights -> calibrated full-integer onnx2tf file."""
    recipe = tmp_path / "qat_onnx2tf.yaml"
    recipe.write_text(
        "description: short QAT, TFLite through onnx2tf\nprecision: int8_qat\ncalibration: {samples: 8}\n"
        "qat: {epochs: 1, batch_size: 8, limit_train: 16, tflite_route: onnx2tf_calibrated}\n"
    )
    result = cli(
        "quantize",
        setup.checkpoint,
        "--recipe",
        recipe,
        "--target",
        "tflite",
        "--data",
        setup.data,
        "--out",
        tmp_path / "out",
        "--cache",
        tmp_path / "cache",
        "--check-samples",
        "2",
    )
    assert result.exit_code == 0, result.output
    sidecar = read_sidecar(tmp_path / "out" / "qat_onnx2tf.tflite")
    qat_pass, route = sidecar["passes"]
    assert (
        route["route"] == "onnx2tf_calibrated" and "re-quantized from calibration" in route["what_was_done"]
    )
    assert route["calibration"]["used"] == 8 and qat_pass["history"][0]["epoch"] == 1
    assert "int8" in sidecar["what_it_is"]
