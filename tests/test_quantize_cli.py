"""`selinet-compress quantize` end to end (small model) and every bad input as a one-line error."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import assert_one_line_error
from onnx_fixtures import small_config, small_setup

from selinet_compress.io import read_sidecar


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return small_setup(tmp_path_factory.getbasetemp())


def test_quantize_with_user_recipe_keeps_modules_float(setup, tmp_path, cli):
    """A user's YAML by path; the first two trunk blocks kept in float; the path printed last."""
    recipe = tmp_path / "stem_float.yaml"
    recipe.write_text(
        "description: int8 static with the first two body blocks in float\n"
        "precision: int8_static\nkeep_float_modules: [body.features.0, body.features.1]\n"
        "calibration: {samples: 8, seed: 3}\n"
    )
    result = cli(
        "quantize",
        setup.checkpoint,
        "--recipe",
        recipe,
        "--target",
        "onnx",
        "--data",
        setup.data,
        "--out",
        tmp_path / "out",
        "--cache",
        setup.cache,
        "--check-samples",
        "2",
    )
    assert result.exit_code == 0, result.output
    path = tmp_path / "out" / "stem_float.onnx"
    assert result.stdout.strip().splitlines()[-1] == str(path)
    sidecar = read_sidecar(path)
    assert sidecar["recipe"]["source"] == str(recipe)
    assert sidecar["calibration"]["used"] == 8 and sidecar["calibration"]["seed"] == 3
    # features.0 has one conv, features.1 (depthwise + pointwise) two: three float convs, all there.
    assert sidecar["audit"]["float_compute_by_module"] == {"body.features": 3}
    assert len(sidecar["kept_float"]["nodes"]) >= 3
    runtime = sidecar["audit"]["runtime"]
    assert sum(runtime["ops_by_precision"].get(op, {}).get("fp32", 0) for op in ("Conv", "FusedConv")) == 3

    # Same inputs -> same cache key; the key changes with the recipe.
    from selinet_compress.targets import cache_key

    assert cache_key(setup.checkpoint, str(recipe), "onnx", setup.data) == sidecar["cache_key"]
    assert cache_key(setup.checkpoint, "int8_static", "onnx", setup.data) != sidecar["cache_key"]

    again = cli(
        "quantize", setup.checkpoint, "--recipe", recipe, "--data", setup.data, "--out", tmp_path / "out"
    )
    assert_one_line_error(again, "exists", "--force")


def test_inspect_shows_the_audit(setup, tmp_path_factory, cli):
    from onnx_fixtures import built

    path = built(tmp_path_factory.getbasetemp(), "int8_static")
    text = cli("inspect", path)
    assert text.exit_code == 0
    assert (
        "int8 kernels" in text.output
        and "QLinearConv" in text.output
        and "made by recipe int8_static" in text.output
    )
    summary = json.loads(cli("inspect", path, "--json").output)
    assert summary["kind"] == "onnx" and summary["size_mb"] > 0 and summary["parameters"] > 0
    assert "body trunk" in summary["parts"] and summary["audit"]["weights"]["int8"]["bytes"] > 0
    assert summary["config"] == small_config().to_dict()


def _quantize(cli, setup, tmp_path, *extra, recipe="int8_static", data=None, checkpoint=None):
    return cli(
        "quantize",
        checkpoint or setup.checkpoint,
        "--recipe",
        recipe,
        "--data",
        data or setup.data,
        "--out",
        tmp_path / "out",
        "--quiet",
        *extra,
    )


def test_unknown_recipe(setup, tmp_path, cli):
    assert_one_line_error(
        _quantize(cli, setup, tmp_path, recipe="int8_statik"),
        "unknown recipe 'int8_statik'",
        "did you mean 'int8_static'",
    )


def test_malformed_yaml(setup, tmp_path, cli):
    bad = tmp_path / "bad.yaml"
    bad.write_text("description: ok\nprecision: [int8_static\n")
    assert_one_line_error(_quantize(cli, setup, tmp_path, recipe=str(bad)), "not valid YAML", "line")


def test_unknown_recipe_key(setup, tmp_path, cli):
    bad = tmp_path / "typo.yaml"
    bad.write_text("description: ok\nprecision: int8_static\nkeep_float_module: [body]\n")
    assert_one_line_error(
        _quantize(cli, setup, tmp_path, recipe=str(bad)),
        "unknown key 'keep_float_module'",
        "keep_float_modules",
    )


def test_unknown_module_kept_float(setup, tmp_path, cli):
    bad = tmp_path / "module.yaml"
    bad.write_text("description: ok\nprecision: int8_dynamic\nkeep_float_modules: [body.featurs]\n")
    assert_one_line_error(
        _quantize(cli, setup, tmp_path, "--cache", setup.cache, recipe=str(bad)),
        "no module 'body.featurs'",
        "body.features",
    )


def test_unknown_target(setup, tmp_path, cli):
    assert_one_line_error(_quantize(cli, setup, tmp_path, "--target", "onx"), "unknown target 'onx'", "onnx")


def test_empty_calibration_set(setup, tmp_path, cli):
    data = tmp_path / "empty"
    data.mkdir()
    for split, n in (("train", 0), ("val", 2)):
        np.save(data / f"{split}_body_arr.npy", np.zeros((n, 128, 128, 3), np.uint8))
        np.save(data / f"{split}_context_arr.npy", np.zeros((n, 224, 224, 3), np.uint8))
        np.save(data / f"{split}_cat_arr.npy", np.zeros((n, 26), np.float32))
    assert_one_line_error(_quantize(cli, setup, tmp_path, data=data), "train", "empty")
    zero = tmp_path / "zero.yaml"
    zero.write_text("description: ok\nprecision: int8_static\ncalibration: {samples: 0}\n")
    assert_one_line_error(_quantize(cli, setup, tmp_path, recipe=str(zero)), "at least 1 sample")


def test_nan_in_calibration_data(setup, tmp_path, cli):
    """A checkpoint whose normalisation has a zero std turns every pixel into inf / NaN."""
    from selinet_compress.checkpoint import load_model, save_checkpoint

    model, _ = load_model(setup.checkpoint)
    model.config = model.config.replace(body_std=(0.0, 0.2, 0.2))
    broken = save_checkpoint(model, tmp_path / "zero_std.pt")
    with pytest.warns(RuntimeWarning):  # numpy's divide by zero, raised inside preprocessing
        result = _quantize(cli, setup, tmp_path, checkpoint=broken)
    assert_one_line_error(result, "calibration data", "NaN or inf", "train/")


def test_missing_data_folder(setup, tmp_path, cli):
    assert_one_line_error(_quantize(cli, setup, tmp_path, data=tmp_path / "nowhere"), "no such folder")


def test_unsupported_cell_says_why(setup, tmp_path, cli):
    restricted = tmp_path / "tflite_only.yaml"
    restricted.write_text("description: ok\nprecision: int8_static\ntargets: [tflite]\n")
    assert_one_line_error(
        _quantize(cli, setup, tmp_path, recipe=str(restricted)),
        "cannot build recipe 'tflite_only' for target 'onnx'",
        "restricted",
    )
