"""The export pass: names, dynamic batch, embedded config, checked against PyTorch (and a broken
export is caught)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from onnx_fixtures import built, small_config, small_setup

from selinet_compress.io import read_sidecar, sha256_file


@pytest.fixture(scope="module")
def fp32(tmp_path_factory):
    return built(tmp_path_factory.getbasetemp(), "fp32")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return small_setup(tmp_path_factory.getbasetemp())


def test_io_names_dynamic_batch_and_embedded_config(fp32):
    from selinet_compress.model.selinet import SeLiNetConfig
    from selinet_compress.passes.onnx_export import CONFIG_KEY, get_metadata

    model = onnx.load(str(fp32))
    assert [i.name for i in model.graph.input] == ["body"]  # the small config has no context branch
    assert [o.name for o in model.graph.output] == ["emotions", "sentiments"]
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.dim_value
    import json

    config = SeLiNetConfig.from_dict(json.loads(get_metadata(model)[CONFIG_KEY]))
    assert config == small_config()
    # The exporter's per-node annotations (module paths, stack traces) are not shipped.
    assert not any(node.metadata_props for node in model.graph.node)
    assert all(i.data_location != onnx.TensorProto.EXTERNAL for i in model.graph.initializer)


def test_any_batch_size_matches_pytorch(fp32, setup):
    import torch

    from selinet_compress.checkpoint import load_model
    from selinet_compress.runtimes import open_runner

    model, _ = load_model(setup.checkpoint)
    runner = open_runner(fp32)
    rng = np.random.default_rng(0)
    for batch in (1, 3):
        body = rng.standard_normal((batch, 3, 64, 64)).astype(np.float32)
        got = runner.run({"body": body})
        with torch.inference_mode():
            want = model(torch.from_numpy(body))
        for name, ref in zip(("emotions", "sentiments"), want, strict=True):
            assert got[name].shape == tuple(ref.shape)
            np.testing.assert_allclose(got[name], ref.numpy(), rtol=1e-4, atol=1e-5)


def test_sidecar_records_the_validation_and_inputs(fp32, setup):
    sidecar = read_sidecar(fp32)
    export = sidecar["passes"][0]
    assert export["pass"] == "onnx_export" and export["opset"] >= 18
    validation = export["validation"]
    assert validation["passed"] and validation["samples"] == 4
    for entry in validation["outputs"].values():
        assert entry["max_abs_diff"] < 1e-4 and entry["cosine"] > 0.9999
    assert sidecar["checkpoint"]["sha256"] == sha256_file(setup.checkpoint)
    assert sidecar["artifact"]["sha256"] == sha256_file(fp32)
    assert sidecar["model_config"]["use_aesthetics"] is False
    assert sidecar["check_samples"]["used"] == 4 and "val split" in sidecar["check_samples"]["source"]
    assert sidecar["tool_versions"]["onnxruntime"] and sidecar["environment"]["cpu"]["logical_cores"]
    assert len(sidecar["cache_key"]) == 64


def test_a_wrong_export_fails_validation(fp32, setup, tmp_path):
    """Scale one conv weight: the comparison with PyTorch must refuse the file."""
    from selinet_compress.calibration import load_check_samples
    from selinet_compress.checkpoint import load_model
    from selinet_compress.passes.onnx_validate import ExportMismatch, validate_export

    model = onnx.load(str(fp32))
    weight = next(i for i in model.graph.initializer if i.name.startswith("body.features.1."))
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 3.0, weight.name))
    broken = tmp_path / "broken.onnx"
    onnx.save(model, str(broken))
    torch_model, _ = load_model(setup.checkpoint)
    samples = load_check_samples(setup.data, torch_model.config, count=4)
    with pytest.raises(ExportMismatch, match="does not match PyTorch"):
        validate_export(broken, torch_model, samples)


def test_export_is_cached_and_reused(fp32, setup):
    from selinet_compress.targets import quantize

    exports = sorted(setup.cache.glob("export-*.onnx"))
    assert len(exports) == 1
    path = quantize(
        setup.checkpoint,
        "fp32",
        "onnx",
        setup.data,
        setup.root / "again",
        cache_dir=setup.cache,
        check_samples=2,
        progress=False,
    )
    assert read_sidecar(path)["passes"][0]["cached"] == str(exports[0])
    assert sha256_file(path) == sha256_file(fp32)  # same inputs, same bytes
