"""The LiteRT runner, the audit / profile and `inspect` on real .tflite files (tiny net)."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
from conftest import assert_one_line_error
from tflite_fixtures import converted, samples

from selinet_compress.errors import UserError
from selinet_compress.runtimes import RUNTIMES, open_runner, target_for_path


@pytest.fixture(scope="session")
def base(tmp_path_factory):
    # One folder for every TFLite test module: each conversion runs once per session.
    path = tmp_path_factory.getbasetemp() / "tflite_shared"
    path.mkdir(exist_ok=True)
    return path


def test_registered_for_tflite_files():
    assert "tflite" in RUNTIMES
    assert target_for_path("model.tflite") == "tflite"


def test_not_a_flatbuffer_is_a_user_error(tmp_path):
    bad = tmp_path / "model.tflite"
    bad.write_text("this is not a model\n")
    with pytest.raises(UserError, match="not a TFLite flatbuffer"):
        open_runner(bad)
    empty = tmp_path / "empty.tflite"
    empty.write_bytes(b"")
    with pytest.raises(UserError, match="not a TFLite flatbuffer"):
        open_runner(empty)


def test_inspect_cli_rejects_a_non_flatbuffer(cli, tmp_path):
    bad = tmp_path / "model.tflite"
    bad.write_bytes(b"\x00" * 64)
    assert_one_line_error(cli("inspect", bad), "not a TFLite flatbuffer")


def test_inspect_cli_shows_the_audit(cli, base):
    path, _ = converted(base, "fp32")
    result = cli("inspect", path)
    assert result.exit_code == 0, result.output
    assert "what it is: fp32" in result.output and "XNNPACK delegates" in result.output
    as_json = json.loads(cli("inspect", path, "--json").output)
    assert as_json["kind"] == "tflite" and as_json["audit"]["nodes"] > 0


def test_model_whose_inputs_do_not_match_selinet(base, tmp_path):
    from selinet_compress.audit.tflite_audit import TFLiteGraph

    path, _ = converted(base, "fp32")
    graph = TFLiteGraph(path)
    dense = next(op for op in graph.graph.operators if graph.op_name(op) == "FULLY_CONNECTED")
    one_op = tmp_path / "dense.tflite"
    one_op.write_bytes(graph.single_op_model(dense))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(UserError, match="input"):
            open_runner(one_op)
    # Right number of inputs, wrong sizes for the config in the sidecar.
    wrong = tmp_path / "wrong.tflite"
    shutil.copyfile(path, wrong)
    from selinet_compress.model.selinet import SeLiNetConfig

    config = SeLiNetConfig(body_size=64, context_size=96).to_dict()
    (tmp_path / "wrong.tflite.json").write_text(json.dumps({"model_config": config}))
    with pytest.raises(UserError, match="input 'body' has shape"):
        open_runner(wrong)


def test_foreign_names_are_mapped_by_shape_with_a_warning(base):
    final, _ = converted(base, "int8_static")
    raw = final.with_name("raw_int8_static_float32.tflite")  # straight from the TF converter
    with pytest.warns(UserWarning, match="no SeLiNet config"):
        foreign = open_runner(raw)
    inputs = samples(3, seed=7)
    a, b = open_runner(final).run(inputs), foreign.run(inputs)
    for name in ("emotions", "sentiments"):
        np.testing.assert_array_equal(a[name], b[name])


def test_xnnpack_off_gives_the_same_fp32_outputs_and_describe_says_so(base):
    path, _ = converted(base, "fp32")
    inputs = samples(2, seed=9)
    on, off = open_runner(path, threads=2), open_runner(path, threads=1, xnnpack=False)
    for name, value in on.run(inputs).items():
        np.testing.assert_allclose(off.run(inputs)[name], value, atol=1e-5)
    assert on.describe()["xnnpack"] is True and off.describe()["xnnpack"] is False
    assert on.describe()["load_seconds"] >= 0


def test_batches_and_bad_inputs(base):
    path, _ = converted(base, "fp32")
    runner = open_runner(path)
    out = runner.run(samples(5))
    assert out["emotions"].shape == (5, 26) and out["sentiments"].shape == (5, 3)
    with pytest.raises(UserError, match="missing input"):
        runner.run({"body": samples(1)["body"]})


def test_profile_times_every_op(base):
    from selinet_compress.audit.tflite_profile import format_profile, profile_ops

    path, _ = converted(base, "int8_static")
    profile = profile_ops(path, threads=1, runs=2)
    assert profile["ops"]["CONV_2D/int8"]["count"] > 0
    assert sum(int(e["count"]) for e in profile["ops"].values()) > 10
    assert profile["model_ms"] > 0 and "whole model" in format_profile(profile)[0]


def test_evaluate_cli_refuses_a_model_whose_inputs_do_not_match(cli, base, tmp_path):
    from selinet_compress.audit.tflite_audit import TFLiteGraph

    path, _ = converted(base, "fp32")
    graph = TFLiteGraph(path)
    dense = next(op for op in graph.graph.operators if graph.op_name(op) == "FULLY_CONNECTED")
    one_op = tmp_path / "dense.tflite"
    one_op.write_bytes(graph.single_op_model(dense))
    from selinet_compress.model.selinet import SeLiNetConfig

    (tmp_path / "dense.tflite.json").write_text(json.dumps({"model_config": SeLiNetConfig().to_dict()}))
    from selinet_compress.emotic.synth import generate

    generate(tmp_path / "data", sizes={"train": 2, "val": 2, "test": 2}, seed=0)
    assert_one_line_error(cli("evaluate", one_op, "--data", tmp_path / "data"), "input")


def test_quantize_cli_converter_needs_the_tflite_target(cli, tmp_path):
    result = cli(
        "quantize",
        tmp_path / "x.pt",
        "--recipe",
        "fp32",
        "--target",
        "onnx",
        "--converter",
        "litert-torch",
        "--data",
        tmp_path,
    )
    assert_one_line_error(result, "--converter applies to --target tflite")
