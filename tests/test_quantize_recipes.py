"""Every built-in recipe built on the ONNX target (small model), with what its sidecar and audit
must show; calibration methods that really differ; modules kept in float."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx_fixtures import built, small_config, small_setup

from selinet_compress.io import read_sidecar
from selinet_compress.recipes import builtin_names, load_recipe
from selinet_compress.targets import TARGETS


def _recipe_params():
    for name in builtin_names():
        recipe = load_recipe(name)
        # Histogram calibrations cost ~10 s each even on the small model: run them with --slow.
        slow = recipe.needs_calibration and recipe.calibration.method != "minmax"
        slow = slow or recipe.precision == "int8_qat"  # fine-tunes for epochs: tests/test_qat.py is fast
        yield pytest.param(name, marks=[pytest.mark.slow] if slow else [], id=name)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tmp_path_factory.getbasetemp()


@pytest.fixture(scope="module")
def fp32_audit(base):
    return read_sidecar(built(base, "fp32"))["audit"]


@pytest.mark.parametrize("target", TARGETS.names())
@pytest.mark.parametrize("name", builtin_names())
def test_every_cell_is_supported_or_says_why(name, target):
    builder, recipe = TARGETS.get(target)(), load_recipe(name)
    reason = builder.supports(recipe)
    assert reason is None or (isinstance(reason, str) and reason.strip())
    if recipe.keep_outputs_float and "keep_outputs_float" not in builder.optional_knobs:
        assert "keep_outputs_float" in reason  # refused, never built without the knob


@pytest.mark.parametrize("name", _recipe_params())
def test_recipe_builds_on_onnx(base, name, fp32_audit):
    from selinet_compress.calibration import load_check_samples
    from selinet_compress.runtimes import open_runner

    recipe = load_recipe(name)
    setup = small_setup(base)
    path = built(base, name)
    sidecar = read_sidecar(path)
    assert path.name == f"{name}.onnx" and sidecar["recipe"]["name"] == name
    assert sidecar["precision"] == recipe.precision and sidecar["target"] == "onnx"
    audit = sidecar["audit"]

    # The file runs on onnxruntime with the same inputs, float32 in and out.
    samples = load_check_samples(setup.data, small_config(), count=3)
    outputs = open_runner(path).run(samples.inputs)
    assert outputs["emotions"].shape == (3, 26) and outputs["sentiments"].shape == (3, 3)
    assert all(np.isfinite(v).all() and v.dtype == np.float32 for v in outputs.values())
    model = onnx.load(str(path))
    assert all(i.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for i in model.graph.input)
    agreement = sidecar["agreement_vs_pytorch"]["outputs"]

    fp32_size = read_sidecar(built(base, "fp32"))["artifact"]["size_bytes"]
    ratio = sidecar["artifact"]["size_bytes"] / fp32_size
    conv_count = fp32_audit["node_counts"]["Conv"]
    if recipe.precision == "fp32":
        assert set(audit["weights"]) <= {"float32", "int64"} and ratio == 1.0
        assert all(e["max_abs_diff"] <= 1e-5 + 1e-3 * e["max_abs_reference"] for e in agreement.values())
    elif recipe.precision == "fp16":
        assert audit["weights"]["float16"]["bytes"] > 0.99 * audit["weight_bytes"]
        assert 0.45 < ratio < 0.55
        assert all(e["cosine"] > 0.999 for e in agreement.values())
    elif recipe.precision == "int8_dynamic":
        quantized = sidecar["quantization"]
        assert quantized["op_types"] == list(recipe.op_types)
        assert audit["runtime"]["int8_kernels"] > 0
        if "Conv" in recipe.op_types:  # the labelled, slow variant: ConvInteger, and a loud warning
            assert audit["node_counts"].get("ConvInteger") == conv_count
            assert any("slower" in w.lower() for w in sidecar["warnings"])
            assert ratio < 0.3
        else:  # the default: convolutions untouched
            assert "ConvInteger" not in audit["node_counts"]
            assert audit["node_counts"]["Conv"] == conv_count
            assert not any("convinteger" in w.lower() for w in sidecar["warnings"])
            assert ratio < 1.0
    elif recipe.precision == "int8_qat":
        learned = sidecar["quantization"]["learned_qparams_in_file"]
        assert all(
            learned[k]["matched"] == learned[k]["total"] > 0 for k in ("activation_scales", "weight_scales")
        )
        assert audit["runtime"]["ops_by_precision"]["QLinearConv"]["int8"] == conv_count
        assert ratio < 0.35
    elif recipe.precision == "int8_static":
        calibration = sidecar["calibration"]
        assert calibration["split"] == "train" and calibration["used"] == 24 and len(calibration["ids"]) == 24
        assert all(i.startswith("train/") for i in calibration["ids"])
        runtime = audit["runtime"]["ops_by_precision"]
        assert runtime["QLinearConv"]["int8"] == conv_count  # every conv runs as an int8 kernel
        assert "Conv" not in audit["runtime"]["float_ops"]
        assert ratio < 0.28
        if recipe.keep_outputs_float:  # the output Gemms compute in float: scores are not 8-bit
            producers = {o: n for n in model.graph.node for o in n.output}
            assert {producers[o.name].op_type for o in model.graph.output} == {"Gemm"}
            assert len(sidecar["kept_float"]["nodes"]) == 2
            runtime_gemm = {
                **audit["runtime"]["ops_by_precision"].get("Gemm", {}),
                **audit["runtime"]["ops_by_precision"].get("FusedGemm", {}),
            }
            assert runtime_gemm.get("fp32", 0) == 2
        else:
            producers = {o: n for n in model.graph.node for o in n.output}
            assert {producers[o.name].op_type for o in model.graph.output} == {"DequantizeLinear"}
        if recipe.calibration.method == "minmax":
            # Clipping calibrations are not held to this on a random-weight model: measured on the
            # small test model, entropy ranges cut its activations to cosine 0.5 (see the benchmarks
            # for trained-model figures).
            assert all(e["cosine"] > 0.9 for e in agreement.values())


def test_entropy_and_percentile_ranges_differ_from_minmax(base):
    """onnxruntime's quantize_static would build its Entropy calibrator with 128 bins, which returns
    the min-max range; driving the calibrator ourselves makes entropy and percentile real."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    from selinet_compress.calibration import load_calibration
    from selinet_compress.passes.ort_calibrate import compute_ranges
    from selinet_compress.recipes import Calibration

    setup = small_setup(base)
    model_path = built(base, "fp32")
    calibration = load_calibration(setup.data, small_config(), Calibration(samples=8), progress=False)

    def ranges(**kwargs):
        data, _ = compute_ranges(
            model_path, calibration, Calibration(samples=8, **kwargs), ["body"], progress=False
        )
        return {k: tuple(float(np.min(v)) for v in d.range_value) for k, d in data.data.items()}

    minmax = ranges(method="minmax")
    entropy = ranges(method="entropy", num_bins=256)
    percentile = ranges(method="percentile", percentile=99.0)

    def differing(other):
        return sum(1 for k in minmax if not np.allclose(minmax[k], other[k], rtol=1e-4, atol=1e-7))

    assert differing(entropy) > 0.25 * len(minmax)  # measured: 58 of 155 tensors
    assert differing(percentile) > 0.5 * len(minmax)
    # Percentile and entropy clip: their ranges lie inside the min-max ones.
    for other in (entropy, percentile):
        assert all(other[k][0] >= minmax[k][0] - 1e-6 and other[k][1] <= minmax[k][1] + 1e-6 for k in minmax)

    # The premise: quantize_static's own Entropy calibrator (no bin counts passed) == min-max.
    calibrator = create_calibrator(
        model_path,
        None,
        augmented_model_path=str(base / "aug.onnx"),
        calibrate_method=CalibrationMethod.Entropy,
        extra_options={"symmetric": False},
    )
    from selinet_compress.passes.ort_calibrate import _reader

    calibrator.collect_data(_reader(list(calibration.batches(8, ["body"]))))
    default = {
        k: tuple(float(np.min(v)) for v in d.range_value) for k, d in calibrator.compute_data().data.items()
    }
    assert differing(default) == 0


def test_fast_entropy_search_equals_onnxruntimes():
    from onnxruntime.quantization.calibrate import HistogramCollector

    from selinet_compress.passes.ort_calibrate import entropy_threshold

    rng = np.random.default_rng(0)
    for bins, scale in ((256, 1.0), (384, 3.0)):
        collector = HistogramCollector("entropy", False, bins, 128, 99.99, "same")
        values = np.concatenate(
            [
                rng.standard_normal(4000) * scale,
                rng.standard_normal(20) * 8 * scale,
                np.abs(rng.standard_normal(2000)),
            ]
        ).astype(np.float32)
        collector.collect({"t": values[:3000]})
        collector.collect({"t": values[3000:] * 1.3})  # a wider second batch grows the histogram
        histogram = collector.histogram_dict["t"]
        assert entropy_threshold(histogram, 128) == collector.get_entropy_threshold(histogram, 128)


@pytest.mark.slow
def test_calibration_methods_give_different_int8_files(base):
    scales = {}
    for name in ("int8_static", "int8_static_entropy", "int8_static_percentile"):
        model = onnx.load(str(built(base, name)))
        scales[name] = {
            i.name: onnx.numpy_helper.to_array(i).copy()
            for i in model.graph.initializer
            if i.name.endswith("_scale") and "weight" not in i.name
        }
    base_scales = scales["int8_static"]
    for name in ("int8_static_entropy", "int8_static_percentile"):
        changed = [
            k for k in base_scales if k in scales[name] and not np.allclose(base_scales[k], scales[name][k])
        ]
        assert len(changed) > 0.5 * len(base_scales), name


@pytest.mark.slow
def test_full_size_model_int8_static_and_fp32(tmp_path_factory):
    """The paper's full model (both branches, 128 / 224 px): export checked against PyTorch, every
    conv an int8 kernel, the file at most 0.28 x fp32."""
    from onnx_fixtures import responsive_checkpoint

    from selinet_compress.emotic.synth import generate
    from selinet_compress.model.selinet import SeLiNetConfig
    from selinet_compress.targets import quantize

    root = tmp_path_factory.mktemp("full")
    data = generate(root / "data", sizes={"train": 16, "val": 4, "test": 4}, seed=0).path
    checkpoint = responsive_checkpoint(root / "full.pt", SeLiNetConfig(), seed=0)
    paths = {
        name: quantize(checkpoint, name, "onnx", data, root / "out", cache_dir=root / "cache", progress=False)
        for name in ("fp32", "int8_static")
    }
    fp32, int8 = (read_sidecar(paths[n]) for n in ("fp32", "int8_static"))
    assert [i.name for i in onnx.load(str(paths["fp32"])).graph.input] == ["body", "context"]
    assert fp32["passes"][0]["validation"]["passed"]
    assert int8["artifact"]["size_bytes"] <= 0.28 * fp32["artifact"]["size_bytes"]
    conv = fp32["audit"]["node_counts"]["Conv"]
    assert int8["audit"]["runtime"]["ops_by_precision"]["QLinearConv"]["int8"] == conv
