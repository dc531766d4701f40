"""The TFLite target through `quantize` on the full-size SeLiNet (slow: real onnx2tf, minutes)."""

from __future__ import annotations

import json

import pytest
from conftest import assert_one_line_error

from selinet_compress.recipes import load_recipe
from selinet_compress.targets import TARGETS
from selinet_compress.targets.tflite import with_tflite_options


def test_target_is_registered_and_refuses_what_it_cannot_build():
    target = TARGETS.get("tflite")()
    assert target.supports(load_recipe("int8_static")) is None
    assert "min-max" in target.supports(load_recipe("int8_static_entropy"))
    fp16_litert = with_tflite_options(load_recipe("fp16"), converter="litert-torch")
    assert "litert-torch builds" in target.supports(fp16_litert)
    int8_io = with_tflite_options(load_recipe("fp32"), io_dtype="int8")
    assert "full-integer" in target.supports(int8_io)
    float_outputs = load_recipe("int8_static_float_outputs")
    assert target.supports(float_outputs) is None  # onnx2tf: output layers kept float
    assert "int8_qat" in target.supports(with_tflite_options(float_outputs, converter="litert-torch"))
    assert "quantize them again" in target.supports(with_tflite_options(float_outputs, io_dtype="int8"))


def test_recipe_section_rejects_unknown_knobs(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("description: x\nprecision: int8_static\ntflite:\n  converterr: onnx2tf\n")
    with pytest.raises(Exception, match="did you mean 'converter'"):
        load_recipe(path)


@pytest.fixture(scope="module")
def full_setup(tmp_path_factory, full_checkpoint):
    from selinet_compress.emotic.synth import generate

    root = tmp_path_factory.mktemp("tflite_full")
    generate(root / "data", sizes={"train": 16, "val": 8, "test": 8}, seed=0)
    return root, full_checkpoint


@pytest.mark.slow
@pytest.mark.parametrize("converter", ["onnx2tf", "litert-torch"])
def test_quantize_int8_static_full_model(cli, full_setup, converter):
    root, checkpoint = full_setup
    out = root / "out"
    result = cli(
        "quantize",
        checkpoint,
        "--recipe",
        "int8_static",
        "--target",
        "tflite",
        "--converter",
        converter,
        "--name",
        f"int8_{converter}",
        "--data",
        root / "data",
        "--out",
        out,
        "--cache",
        root / "cache",
        "-q",
    )
    assert result.exit_code == 0, result.output
    artifact = out / f"int8_{converter}.tflite"
    sidecar = json.loads((out / f"int8_{converter}.tflite.json").read_text())
    assert sidecar["converter"] == converter and sidecar["precision"] == "int8_static"
    assert sidecar["calibration"]["ids"] and sidecar["audit"]["weights"]["int8"]["bytes"] > 6e6
    if converter == "onnx2tf":
        assert sidecar["audit"]["full_integer"]
        assert "HARD_SWISH" not in sidecar["audit"]["node_counts"]
    inspected = cli("inspect", artifact)
    assert inspected.exit_code == 0 and "what it is:" in inspected.output
    # Built again: both conversion stages come from the cache.
    again = cli(
        "quantize",
        checkpoint,
        "--recipe",
        "int8_static",
        "--target",
        "tflite",
        "--converter",
        converter,
        "--name",
        f"int8_{converter}",
        "--data",
        root / "data",
        "--out",
        out,
        "--cache",
        root / "cache",
        "-q",
        "--force",
    )
    assert again.exit_code == 0
    passes = json.loads((out / f"int8_{converter}.tflite.json").read_text())["passes"]
    assert all(p.get("cached", True) for p in passes if p["pass"] != "onnx_export")


def test_quantize_refuses_entropy_for_tflite(cli, tmp_path):
    result = cli(
        "quantize",
        tmp_path / "x.pt",
        "--recipe",
        "int8_static_entropy",
        "--target",
        "tflite",
        "--data",
        tmp_path,
    )
    assert_one_line_error(result, "min-max")
