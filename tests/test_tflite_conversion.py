"""ONNX -> onnx2tf -> TFLite with the real tools on a tiny two-input net (see tflite_fixtures)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from tflite_fixtures import converted, samples, tiny_setup, torch_outputs

from selinet_compress.audit.tflite_audit import audit_tflite
from selinet_compress.io import sha256_file
from selinet_compress.passes.agreement import output_agreement
from selinet_compress.runtimes import open_runner


@pytest.fixture(scope="session")
def base(tmp_path_factory):
    # One folder for every TFLite test module: each conversion runs once per session.
    path = tmp_path_factory.getbasetemp() / "tflite_shared"
    path.mkdir(exist_ok=True)
    return path


def _agreement(base, path):
    setup = tiny_setup(base)
    inputs = samples(6, seed=3)
    return output_agreement(torch_outputs(setup.net, inputs), open_runner(path, threads=1).run(inputs))


def test_fp32_matches_pytorch_with_canonical_names_and_embedded_config(base):
    path, records = converted(base, "fp32")
    agreement = _agreement(base, path)
    assert all(entry["max_abs_diff"] < 1e-4 for entry in agreement.values()), agreement
    runner = open_runner(path)
    assert runner.config_source == "metadata"  # no sidecar: the config travels inside the file
    assert runner.config.body_size == 32 and runner.config.context_size == 48
    assert sorted(runner.io_dtypes) == ["body", "context", "emotions", "sentiments"]
    assert records[0]["onnx_rewrites"]["batch pinned"]  # the symbolic batch was pinned to 1
    audit = audit_tflite(path)
    assert audit["what_it_is"] == "fp32" and not audit["full_integer"]


def test_int8_static_is_full_integer_and_its_activations_run_in_xnnpack(base):
    path, _records = converted(base, "int8_static")
    audit = audit_tflite(path)
    assert audit["full_integer"], audit["float_ops"]
    assert audit["what_it_is"].startswith("full-integer int8 (float I/O")
    assert audit["float_ops"] == {}
    # HardSwish / HardSigmoid are written so that XNNPACK runs them in int8 (see the pass).
    assert "HARD_SWISH" not in audit["node_counts"] and "RELU_0_TO_1" not in audit["node_counts"]
    assert not [k for k in audit["xnnpack"]["not_delegated"] if k.startswith(("HARD_SWISH", "RELU_0_TO_1"))]
    assert audit["weights"]["int8"]["bytes"] > 0 and audit["per_channel_tensors"] > 0
    agreement = _agreement(base, path)
    assert all(entry["cosine"] > 0.98 for entry in agreement.values()), agreement


def test_conversions_are_cached_and_the_input_is_not_modified(base, tmp_path):
    from selinet_compress.passes.tflite_onnx2tf import TFLiteSettings, convert_onnx_to_tflite

    setup = tiny_setup(base)
    converted(base, "int8_static")  # built (or reused) once per session
    out, records = convert_onnx_to_tflite(
        setup.onnx,
        tmp_path / "again.tflite",
        TFLiteSettings("int8_static"),
        setup.calibration_nhwc,
        cache_dir=setup.cache,
        progress=False,
        log=lambda _m: None,
    )
    assert [r["cached"] for r in records] == [True, True]
    assert out.is_file()
    assert sha256_file(setup.onnx) == setup.onnx_sha256  # onnx2tf got a copy, never the input
    # Other calibration data is another conversion (a new stage-2 key, the same stage 1).
    from selinet_compress.passes.tflite_onnx2tf import arrays_sha256

    other = {k: v[:8] for k, v in setup.calibration_nhwc.items()}
    assert arrays_sha256(other) != arrays_sha256(setup.calibration_nhwc)


def test_failed_conversion_is_a_clear_error_and_leaves_no_file(base, tmp_path):
    from onnx import TensorProto, helper

    from selinet_compress.passes.tflite_onnx2tf import ConversionError, TFLiteSettings, convert_onnx_to_tflite

    graph = helper.make_graph(
        [helper.make_node("NoSuchOp", ["x"], ["y"], domain="com.example")],
        "broken",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.example", 1)]
    )
    broken = tmp_path / "broken.onnx"
    onnx.save(model, str(broken))
    out = tmp_path / "out" / "model.tflite"
    cache = tmp_path / "cache"
    with pytest.raises(ConversionError, match="onnx2tf failed") as caught:
        convert_onnx_to_tflite(
            broken, out, TFLiteSettings("fp32"), cache_dir=cache, progress=False, log=lambda _m: None
        )
    assert "full log:" in str(caught.value)
    assert not out.exists() and not list(out.parent.glob("*")) if out.parent.exists() else True
    leftovers = [p.name for p in (cache / "onnx2tf").iterdir()]
    assert all(name.startswith("failed-") and name.endswith(".log") for name in leftovers), leftovers


def test_settings_refuse_int8_io_without_full_integer():
    from selinet_compress.passes.tflite_onnx2tf import TFLiteSettings

    with pytest.raises(ValueError, match="full-integer"):
        TFLiteSettings("fp16", io_dtype="int8")
    with pytest.raises(ValueError, match="unknown TFLite precision"):
        TFLiteSettings("int4")


def test_hardsigmoid_rewrite_is_the_same_function():
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from selinet_compress.passes.tflite_onnx2tf import rewrite_hardsigmoid

    graph = helper.make_graph(
        [helper.make_node("HardSigmoid", ["x"], ["y"], alpha=1 / 6, beta=0.5, name="hs")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    x = np.linspace(-6, 6, 64, dtype=np.float32)
    before = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    assert rewrite_hardsigmoid(model) == 1
    assert [n.op_type for n in model.graph.node] == ["Add", "Clip", "Mul"]
    after = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(after, before, atol=1e-6)


@pytest.mark.slow
def test_int8_io_file_is_fed_the_same_float_arrays(base):
    float_io, _ = converted(base, "int8_static")
    int_io, _ = converted(base, "int8_static", "int8")
    runner = open_runner(int_io)
    assert set(runner.io_dtypes.values()) == {"int8"}
    inputs = samples(4, seed=5)
    a, b = open_runner(float_io).run(inputs), runner.run(inputs)
    for name in a:
        assert np.corrcoef(a[name].ravel(), b[name].ravel())[0, 1] > 0.98
    assert audit_tflite(int_io)["what_it_is"] == "full-integer int8 (int8 I/O)"


@pytest.mark.slow
def test_float_ops_stay_float_and_every_op_runs_in_xnnpack(base, tmp_path):
    from tflite_fixtures import tiny_config

    from selinet_compress.passes.tflite_metadata import finalize_tflite
    from selinet_compress.passes.tflite_onnx2tf import TFLiteSettings, convert_onnx_to_tflite

    setup = tiny_setup(base)
    raw = tmp_path / "raw.tflite"
    settings = TFLiteSettings("int8_static", float_ops=("SOFTMAX", "BATCH_MATMUL"))
    convert_onnx_to_tflite(
        setup.onnx,
        raw,
        settings,
        setup.calibration_nhwc,
        cache_dir=setup.cache,
        progress=False,
        log=lambda _m: None,
    )
    final = tmp_path / "final.tflite"
    finalize_tflite(raw, final, tiny_config())
    audit = audit_tflite(final)
    assert audit["float_ops"] == {"SOFTMAX": 2, "BATCH_MATMUL": 2}
    assert audit["what_it_is"] == "mixed: int8 with 4 op(s) in float"
    assert audit["xnnpack"]["not_delegated"] == {} and audit["xnnpack"]["partitions"] == 1
    assert all(entry["cosine"] > 0.98 for entry in _agreement(base, final).values())


def test_float_outputs_keep_the_output_layers_float_and_the_rest_int8(base, tmp_path):
    from tflite_fixtures import tiny_config

    from selinet_compress.passes.tflite_metadata import finalize_tflite
    from selinet_compress.passes.tflite_onnx2tf import TFLiteSettings, convert_onnx_to_tflite
    from selinet_compress.runtimes.tflite_runner import LiteRTRunner

    setup = tiny_setup(base)
    raw = tmp_path / "raw.tflite"
    _, records = convert_onnx_to_tflite(
        setup.onnx,
        raw,
        TFLiteSettings("int8_static", float_outputs=True),
        setup.calibration_nhwc,
        cache_dir=setup.cache,
        progress=False,
        log=lambda _m: None,
    )
    assert len(records[-1]["float_nodes"]) == 2  # one output layer per output
    final = tmp_path / "final.tflite"
    finalize_tflite(raw, final, tiny_config())
    audit = audit_tflite(final)
    assert audit["float_ops"] == {"FULLY_CONNECTED": 2}, audit["float_ops"]
    assert audit["weights"]["int8"]["bytes"] > 0
    runner = LiteRTRunner.open(final, threads=1)
    # the outputs are written by float layers: no 8-bit output tensors (the runner maps them by shape)
    assert runner.io_dtypes["emotions"] == "float32" and runner.io_dtypes["sentiments"] == "float32"
    assert all(entry["cosine"] > 0.98 for entry in _agreement(base, final).values())
    with pytest.raises(ValueError, match="int8_static files only"):
        TFLiteSettings("fp16", float_outputs=True)
