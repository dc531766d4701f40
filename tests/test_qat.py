"""QAT (torchao PT2E): the BatchNorm / phase / fake-quantizer traps, a short QAT run end to end to
a runnable int8 ONNX file whose scales are the learned ones, checkpoints, the recipe, and the
training API driving a fake-quantized model (with resume).

The model is SeLiNet's body branch at 32 px (one MobileNetV3 trunk): torchao's prepare / convert
and torch's ONNX exporter cost time per graph node, not per pixel, so this keeps the file fast.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import assert_one_line_error

from selinet_compress.model.selinet import SeLiNetConfig, build_model
from selinet_compress.passes import qat as Q

SMALL = SeLiNetConfig(use_aesthetics=False, body_size=32, context_size=32)


def responsive(config: SeLiNetConfig, seed: int = 0):
    """A random-init SeLiNet with BatchNorm statistics measured on random inputs (right after init
    the outputs do not depend on the input, so no numerical check could fail)."""
    model = build_model(config, seed=seed)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.momentum = None
    model.train()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _ in range(3):
            model(*[torch.randn((8, *e.shape[1:]), generator=generator) for e in model.example_inputs(1)])
    for bn, momentum in zip(bns, momenta, strict=True):
        bn.momentum = momentum
    return model.eval()


def cosine(a, b) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def max_diff(first, second) -> float:
    return max(float((a - b).abs().max()) for a, b in zip(first, second, strict=True))


@pytest.fixture(scope="module")
def float_model():
    return responsive(SMALL)


@pytest.fixture(scope="module")
def prepared(float_model):
    return Q.prepare_qat(float_model)


def inputs(seed: int, batch: int = 4):
    return (torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(seed)),)


def bn_nodes(model):
    return [n for n in model.net.graph.nodes if Q._is_bn(n)]


def test_batchnorm_eps_and_momentum_of_the_model_are_kept(float_model, prepared):
    x = inputs(1)
    qm = copy.deepcopy(prepared)
    Q.set_qat_phase(qm, False, fake_quant=False)
    with torch.no_grad():
        reference = float_model(*x)
        assert max_diff(qm(*x), reference) < 1e-4 * max(1.0, float(reference[0].abs().max()))
        # torchao's own pattern (eps 1e-5 for MobileNetV3's 1e-3) is far off: the check above can fail.
        broken = copy.deepcopy(qm)
        for node in broken.net.graph.nodes:
            if Q._is_bn(node):
                Q._set_arg(node, 7, Q.TORCHAO_BN_EPS)
            elif Q._is_running_var_add(node):
                Q._set_arg(node, 1, Q.TORCHAO_BN_EPS)
        broken.net.recompile()
        assert max_diff(broken(*x), reference) > 100 * 1e-4 * max(1.0, float(reference[0].abs().max()))
    # Training phase: batch statistics, and running statistics updated with MobileNetV3's momentum.
    trained_float = copy.deepcopy(float_model).train()
    qt = copy.deepcopy(prepared)
    Q.set_qat_phase(qt, True, fake_quant=False)
    with torch.no_grad():
        assert max_diff(qt(*x), trained_float(*x)) < 1e-3
    graph_var = dict(qt.net.named_buffers())["body.features.1.block.0.1.running_var"]
    float_var = trained_float.body.features[1].block[0][1].running_var
    assert torch.allclose(graph_var, float_var, rtol=1e-4, atol=1e-7)
    assert not torch.allclose(graph_var, float_model.body.features[1].block[0][1].running_var)


def test_train_eval_switch_the_graph_batchnorm_and_the_observers(prepared):
    from torchao.quantization.pt2e import FakeQuantizeBase

    qm = copy.deepcopy(prepared)
    observers = [m for m in qm.net.modules() if isinstance(m, FakeQuantizeBase)]
    qm.train()  # an exported graph's own train() raises; the wrapper's must not
    assert qm.training and all(n.args[5] is True for n in bn_nodes(qm))
    assert all(int(o.observer_enabled[0]) == 1 and int(o.fake_quant_enabled[0]) == 1 for o in observers)
    qm.freeze_bn = True
    qm.train()
    assert all(n.args[5] is False for n in bn_nodes(qm))  # frozen statistics, still training
    assert all(int(o.observer_enabled[0]) == 1 for o in observers)
    qm.freeze_observers = True
    qm.train()
    assert all(int(o.observer_enabled[0]) == 0 and int(o.fake_quant_enabled[0]) == 1 for o in observers)
    qm.freeze_bn = qm.freeze_observers = False
    qm.eval()
    assert not qm.training and all(n.args[5] is False for n in bn_nodes(qm))
    assert all(int(o.observer_enabled[0]) == 0 for o in observers)  # validation never moves ranges


def test_pseudo_hardswish_is_the_same_function_with_its_own_quantizers(float_model, prepared):
    """The LiteRT-friendly hard-swish (x * relu6(x + 3) / 6): same float outputs, no hardswish op
    left in the graph, and its add / mul steps get their own fake-quantizers."""
    pseudo = Q.prepare_qat(float_model, pseudo_hardswish=True)
    hardswish = (torch.ops.aten.hardswish.default, torch.ops.aten.hardswish_.default)
    assert not any(n.target in hardswish for n in pseudo.net.graph.nodes)
    assert any(n.target in hardswish for n in prepared.net.graph.nodes)
    assert len(Q.fake_quantizers(pseudo.net)) > len(Q.fake_quantizers(prepared.net))
    Q.set_qat_phase(pseudo, False, fake_quant=False)
    with torch.no_grad():
        assert max_diff(pseudo(*inputs(7)), float_model(*inputs(7))) < 1e-4
    assert pseudo.quantizer_settings["pseudo_hardswish"] is True


def test_float_outputs_leave_the_output_layers_unquantized(float_model, prepared):
    """keep_outputs_float: the layers producing the outputs get no fake-quantizer (weights, input or
    output); by default they are quantized like every other linear layer."""

    def output_layers(model):
        output = next(n for n in model.net.graph.nodes if n.op == "output")
        return Q._flat_nodes(output.args)

    for node in output_layers(prepared):  # default: output fake-quantized, weight fake-quantized
        assert node.op == "call_module"
    floated = Q.prepare_qat(float_model, float_outputs=True)
    layers = output_layers(floated)
    assert [n.target for n in layers] == [torch.ops.aten.linear.default] * 2
    assert all(n.args[1].op == "get_attr" for n in layers)  # the weight goes in unquantized
    assert floated.quantizer_settings["float_outputs"] is True


def test_weight_fake_quant_uses_the_scales_convert_will_use(prepared):
    """torch's fused fake-quantizer computed affine scales for one-signed channels of per-channel
    symmetric weights, so the trained and the deployed weights differed."""
    qm = copy.deepcopy(prepared)
    with torch.no_grad():
        first_conv = dict(qm.net.named_parameters())["body.features.0.0.weight"]
        first_conv[0] = first_conv[0].abs() + 0.01  # an all-positive output channel
    qm.train()
    with torch.no_grad():
        qm(*inputs(2))
    weights = [fq for fq in Q.fake_quantizers(qm.net).values() if fq.is_per_channel]
    assert weights
    for fq in weights:
        scale, _zero_point = fq.calculate_qparams()
        assert torch.allclose(fq.scale, scale.to(fq.scale.dtype), rtol=1e-6)
        assert int(fq.zero_point.abs().max()) == 0


def test_short_qat_end_to_end_to_a_runnable_onnx_file(prepared, tmp_path):
    """A few QAT steps with the paper's loss, convert, int8 ONNX (int8 and uint8 activations),
    onnxruntime runs it, its scales are the learned ones, and uint8 is the same model as int8."""
    import onnx

    from selinet_compress.runtimes.onnx_runner import OnnxRunner
    from selinet_compress.train import paper_loss

    qm = copy.deepcopy(prepared)
    qm.train()
    optimizer = torch.optim.SGD([p for p in qm.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)
    generator = torch.Generator().manual_seed(0)
    for step in range(3):
        emotions, sentiments = qm(*inputs(10 + step, batch=6))
        loss = paper_loss(
            emotions,
            (torch.rand(6, 26, generator=generator) < 0.2).float(),
            sentiments,
            (torch.rand(6, 3, generator=generator) < 0.5).float(),
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert all(torch.isfinite(p).all() for p in qm.parameters())
    qm.eval()
    x = inputs(3, batch=8)
    with torch.no_grad():
        fake_quant = qm(*x)
        converted = Q.convert_qat(qm)
        int8_torch = converted(*x)
    for a, b in zip(fake_quant, int8_torch, strict=True):
        assert cosine(a, b) > 0.99

    signed = tmp_path / "qat_s8.onnx"
    record = Q.export_qat_onnx(converted, signed, SMALL, activation_type="int8")
    assert record["activation_zero_points_shifted_to_uint8"] == 0
    model = onnx.load(str(signed))
    match = Q.onnx_qparams_match(model, qm)
    for kind in ("activation_scales", "weight_scales"):
        assert match[kind]["total"] > 0 and match[kind]["matched"] == match[kind]["total"], match
    # Ranges other than the learned ones do not match: the check above can fail.
    other = copy.deepcopy(qm)
    for fq in Q.fake_quantizers(other.net).values():
        fq.activation_post_process.max_val.mul_(1.1)
    moved = Q.onnx_qparams_match(model, other)
    assert moved["weight_scales"]["matched"] < match["weight_scales"]["total"]
    assert moved["activation_scales"]["matched"] < match["activation_scales"]["total"]

    unsigned = tmp_path / "qat_u8.onnx"
    shifted = Q.activations_to_uint8(model)
    assert shifted > 0
    onnx.save(model, str(unsigned))
    feed = {"body": x[0].numpy()}
    runs = {}
    for path in (signed, unsigned):
        runner = OnnxRunner.open(path, threads=2)
        assert runner.config == SMALL  # config travels in the file
        runs[path.name] = runner.run(feed)
    for name, expected in zip(["emotions", "sentiments"], int8_torch, strict=True):
        assert cosine(runs["qat_s8.onnx"][name], expected) > 0.99
        # Same real values in another integer encoding; onnxruntime's u8 and s8 kernels round
        # their requantization differently, so outputs may differ by a few output steps.
        assert cosine(runs["qat_u8.onnx"][name], runs["qat_s8.onnx"][name]) > 0.999
    zero_points = {
        init.name: init.data_type
        for init in onnx.load(str(unsigned)).graph.initializer
        if init.name.endswith("_u8")
    }
    assert zero_points and set(zero_points.values()) == {onnx.TensorProto.UINT8}


def test_qat_checkpoint_round_trip_and_bad_file(prepared, tmp_path):
    from selinet_compress.errors import UserError

    qm = copy.deepcopy(prepared)
    qm.train()
    with torch.no_grad():
        qm(*inputs(5))
    qm.eval()
    path = Q.save_qat_checkpoint(qm, tmp_path / "qat.pt", {"note": "test"})
    loaded, metadata = Q.load_qat_checkpoint(path)
    assert metadata["note"] == "test" and loaded.config == SMALL and not loaded.training
    with torch.no_grad():
        assert max_diff(loaded(*inputs(6)), qm(*inputs(6))) == 0.0
    assert torch.load(path, weights_only=True)["format"] == Q.QAT_CHECKPOINT_FORMAT
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, plain)
    with pytest.raises(UserError, match="not a QAT checkpoint"):
        Q.load_qat_checkpoint(plain)
    # The QAT-tuned float weights are a SeLiNet state_dict.
    assert set(Q.float_state_dict(qm)) == set(build_model(SMALL).state_dict())


def test_training_api_drives_qat(tmp_path):
    """selinet_compress.train.train with qat_hooks: the fake-quantized model trains, is validated and
    saved as a QAT checkpoint (best by val and last); resume is in the slow end-to-end test."""
    from selinet_compress.checkpoint import save_checkpoint
    from selinet_compress.emotic.synth import generate
    from selinet_compress.passes.qat_build import train_config
    from selinet_compress.passes.qat_options import QatOptions
    from selinet_compress.train import run_paths, train

    data = tmp_path / "data"
    generate(data, sizes={"train": 16, "val": 8, "test": 0}, seed=2)
    init = save_checkpoint(responsive(SMALL), tmp_path / "init.pt")
    options = QatOptions(epochs=1, batch_size=8, freeze_bn_epoch=1, freeze_observers_epoch=None)
    out = tmp_path / "run" / "qat.pt"
    result = train(
        data,
        out,
        train_config(options),
        init=init,
        hooks=Q.qat_hooks(options),
        progress=False,
        log=lambda _: None,
    )
    assert [h["epoch"] for h in result.history] == [1] and all(p.exists() for p in run_paths(out).values())
    assert np.isfinite(result.history[0]["loss"]) and 0 <= result.best_map <= 1
    model, metadata = Q.load_qat_checkpoint(out)
    assert metadata["training"]["epoch"] == 1 and metadata["training"]["freeze_trunks"] is False
    # BatchNorm statistics were frozen from epoch 1 (the hook ran): they are the checkpoint's, while
    # the observers learned ranges (scales moved off their initial 1.0).
    start = torch.load(init, weights_only=True)["state_dict"]
    tuned = Q.float_state_dict(model)
    stats = [k for k in start if k.endswith(("running_mean", "running_var"))]
    assert stats and all(torch.equal(tuned[k], start[k]) for k in stats)
    assert any(k.endswith("weight") and not torch.equal(tuned[k], start[k]) for k in start)
    assert all(float(fq.scale.reshape(-1)[0]) != 1.0 for fq in Q.fake_quantizers(model.net).values())
    assert options.freeze_bn(0) and not QatOptions(freeze_bn_epoch=2).freeze_bn(0)


def test_int8_qat_recipe_and_bad_qat_sections(cli, tmp_path):
    from selinet_compress.recipes import load_recipe
    from selinet_compress.targets import unsupported_reason

    recipe = load_recipe("int8_qat")
    options = recipe.section("qat")
    assert recipe.precision == "int8_qat" and recipe.per_channel and options.epochs >= 1
    assert options.freeze_bn_epoch is not None and options.tflite_route == "litert_torch"
    assert unsupported_reason(recipe, "onnx") is None
    bad = tmp_path / "bad.yaml"
    bad.write_text("description: x\nprecision: int8_qat\nqat: {epocs: 2}\n")
    assert_one_line_error(cli("recipes", bad), "epocs", "epochs")
    bad.write_text("description: x\nprecision: int8_qat\nqat: {freeze_bn_epoch: 0}\n")
    assert_one_line_error(cli("recipes", bad), "freeze_bn_epoch")
    bad.write_text("description: x\nprecision: int8_qat\nqat: {freeze_observers_epoch: 1}\n")
    assert_one_line_error(cli("recipes", bad), "freeze_observers_epoch")
    bad.write_text("description: x\nprecision: int8_qat\nqat: {tflite_route: tflite}\n")
    assert_one_line_error(cli("recipes", bad), "tflite_route")
    typed = tmp_path / "typed.yaml"
    typed.write_text("description: x\nprecision: int8_qat\nop_types: [Conv]\n")
    assert "keep_float_modules" in unsupported_reason(str(typed), "onnx")
