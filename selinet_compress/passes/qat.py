"""Pass: quantization-aware training (QAT) of SeLiNet with torchao's PT2E flow, and the int8 files
made from it.

    model --export + prepare_qat_pt2e--> QatModel (fake-quantized graph, trained by ``train.train``)
          --convert_pt2e--> int8 graph (quantize / dequantize ops) --> QDQ .onnx | int8 .tflite

The old eager / FX fake-quant modules do not export to ONNX; PT2E graphs do. Three traps of
torchao 0.18 on this network are handled here (each has a test):

1. ``prepare_qat_pt2e`` rewrites every conv + BatchNorm into a pattern with eps 1e-5 and momentum
   0.1 baked in, while MobileNetV3 uses eps 1e-3 / momentum 0.01: outputs go wrong even with fake
   quantization off. :func:`restore_batchnorm_settings` puts each BatchNorm's own values back
   into the graph; :func:`convert_qat` moves the eps difference into ``running_var`` before
   ``convert_pt2e`` (whose folding assumes 1e-5 again), so the fold is exact.
2. The exported graph ignores ``train()`` / ``eval()`` and torchao's
   ``move_exported_model_to_eval`` swaps BatchNorm for a pattern with default eps / momentum, so
   :func:`set_qat_phase` flips the ``training`` flag of the graph's BatchNorm and dropout nodes.
3. ``FusedMovingAvgObsFakeQuantize`` (the default QAT fake-quantizer) computes *affine* scales for
   per-channel symmetric weights whose channel is all-positive or all-negative, while
   ``convert_pt2e`` quantizes with the observer's symmetric scales: the deployed weights differ
   from the trained ones. We use ``FakeQuantize`` (observer + fake-quant, same qparams as convert).

Annotation: torchao's XNNPACKQuantizer (a private torchao module in 0.18; torchao is pinned
exactly) — conv(+BN)(+ReLU), linear, add, mul, cat, adaptive average pooling; int8 per-tensor
affine activations, symmetric int8 weights (per channel by default).
"""

from __future__ import annotations

import contextlib
import copy
import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from selinet_compress.model.selinet import SeLiNet, SeLiNetConfig

if TYPE_CHECKING:
    import onnx
    from torch.fx import GraphModule

    from selinet_compress.passes.qat_options import QatOptions
    from selinet_compress.train import TrainHooks

QAT_CHECKPOINT_FORMAT = "selinet-compress/qat-checkpoint"
# The eps (and momentum) torchao's conv + BatchNorm QAT patterns hard-code.
TORCHAO_BN_EPS = 1e-5
TORCHAO_BN_MOMENTUM = 0.1
MAX_BATCH = 4096


# ---------------------------------------------------------------------------------------------
# Quantizer


def build_quantizer(
    per_channel: bool = True,
    keep_float_modules: Iterable[str] = (),
    averaging_constant: float = 0.01,
    float_outputs: bool = False,
):
    """An XNNPACK-style PT2E quantizer for QAT: int8 per-tensor affine activations, symmetric int8
    weights (per output channel when ``per_channel``); modules in ``keep_float_modules`` stay float,
    and with ``float_outputs`` the layers producing the model's outputs too (see
    :func:`keep_output_layers_float`)."""
    from torchao.quantization.pt2e import (
        FakeQuantize,
        MovingAverageMinMaxObserver,
        MovingAveragePerChannelMinMaxObserver,
    )
    from torchao.quantization.pt2e.quantizer import QuantizationSpec
    from torchao.testing.pt2e._xnnpack_quantizer import XNNPACKQuantizer
    from torchao.testing.pt2e._xnnpack_quantizer_utils import QuantizationConfig

    class SeLiNetQuantizer(XNNPACKQuantizer):
        def annotate(self, model: GraphModule) -> GraphModule:
            model = super().annotate(model)
            quantize_after_relu6(model)
            if float_outputs:
                keep_output_layers_float(model)
            return model

    with warnings.catch_warnings():  # "XNNPACKQuantizer is deprecated" (moved to executorch)
        warnings.simplefilter("ignore")
        quantizer = SeLiNetQuantizer()
    eps = 2**-12  # smallest scale, as in torchao's / litert-torch's configs
    activation = QuantizationSpec(
        dtype=torch.int8,
        quant_min=-128,
        quant_max=127,
        qscheme=torch.per_tensor_affine,
        observer_or_fake_quant_ctr=FakeQuantize.with_args(
            observer=MovingAverageMinMaxObserver, averaging_constant=averaging_constant, eps=eps
        ),
    )
    weight_observer = MovingAveragePerChannelMinMaxObserver if per_channel else MovingAverageMinMaxObserver
    weight = QuantizationSpec(
        dtype=torch.int8,
        quant_min=-127,
        quant_max=127,
        ch_axis=0,
        qscheme=torch.per_channel_symmetric if per_channel else torch.per_tensor_symmetric,
        # FakeQuantize, not FusedMovingAvgObsFakeQuantize: see trap 3 in the module docstring.
        observer_or_fake_quant_ctr=FakeQuantize.with_args(
            observer=weight_observer, averaging_constant=averaging_constant, eps=eps
        ),
    )
    quantizer.set_global(QuantizationConfig(activation, activation, weight, None, is_qat=True))
    for name in keep_float_modules:
        quantizer.set_module_name(name, None)
    return quantizer


def quantize_after_relu6(graph: GraphModule) -> int:
    """Move the output quantizer of conv + BN from before a following ReLU6 to after it.

    XNNPACKQuantizer fuses conv + BN + ReLU but not ReLU6 (MobileNetV2's 35 activations): it
    quantizes the BN output and lets ReLU6 share that range, so the ONNX graph reads
    DQ -> Conv -> Q -> DQ -> Clip -> Q and onnxruntime runs every Clip in float between extra
    Q/DQ pairs. Quantizing only after ReLU6 (its own range, within [0, 6]) gives
    DQ -> Conv -> Clip -> Q, which onnxruntime folds into one QLinearConv (the Clip disappears
    into the output range) and TFLite fuses as conv + relu6. Returns the number of moves.
    """
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, SharedQuantizationSpec

    relu6 = (torch.ops.aten.hardtanh.default, torch.ops.aten.hardtanh_.default)
    moved = 0
    for node in graph.graph.nodes:
        if node.op != "call_function" or node.target not in relu6:
            continue
        low = node.args[1] if len(node.args) > 1 else node.kwargs.get("min_val", -1.0)
        high = node.args[2] if len(node.args) > 2 else node.kwargs.get("max_val", 1.0)
        producer = node.args[0]
        annotation = getattr(producer, "meta", {}).get("quantization_annotation")
        if (float(low), float(high)) != (0.0, 6.0) or annotation is None or len(producer.users) != 1:
            continue
        spec = annotation.output_qspec
        if spec is None or isinstance(spec, SharedQuantizationSpec):
            continue
        annotation.output_qspec = None
        node.meta["quantization_annotation"] = QuantizationAnnotation(output_qspec=spec, _annotated=True)
        moved += 1
    return moved


def keep_output_layers_float(graph: GraphModule) -> list[str]:
    """Drop the quantization annotation of the ops whose results are the model's outputs (the two
    head output layers): their weights, input and output stay float. 8-bit output scores take at
    most 256 values per class and the ties cost AP, which ranks persons by score (measured for
    int8_static, README "ONNX recipes"); fine-tuning cannot undo a tie. Returns the node names."""
    output = next(n for n in graph.graph.nodes if n.op == "output")
    kept = []
    for node in _flat_nodes(output.args):
        if node.meta.pop("quantization_annotation", None) is not None:
            kept.append(node.name)
    return kept


def _flat_nodes(args: Any) -> list:
    found: list = []
    torch.fx.node.map_arg(args, found.append)
    return found


# ---------------------------------------------------------------------------------------------
# Speed: torchao traces ~100 tiny pattern graphs per prepare / convert


_PATTERN_CACHE: dict[Any, Any] = {}


def _pattern_key(pattern: Any, example_inputs: tuple, is_cuda: bool, kwargs: dict) -> Any:
    """A hashable description of one pattern-tracing call, or None when it has none."""
    fn = getattr(pattern, "fn", pattern)
    code = getattr(fn, "__code__", None)
    if code is None:
        return None

    def describe(value: Any) -> Any:
        if isinstance(value, Tensor):
            return ("tensor", tuple(value.shape), str(value.dtype))
        return value

    cells = tuple(describe(c.cell_contents) for c in (getattr(fn, "__closure__", None) or ()))
    key = (
        code,
        cells,
        tuple(describe(x) for x in example_inputs),
        bool(is_cuda),
        tuple(sorted((k, describe(v)) for k, v in kwargs.items())),
    )
    try:
        hash(key)
    except TypeError:
        return None
    return key


@contextlib.contextmanager
def _fast_patterns(graph: GraphModule) -> Iterator[None]:
    """Make torchao's conv + BN QAT passes fast on this model, without changing their result.

    ``prepare_qat_pt2e`` / ``convert_pt2e`` run their conv + BN rewrites for conv1d, conv2d and
    both transposed convs, tracing each pattern with a strict ``torch.export`` (~0.5 s each, ~100
    per call, most of a build's minute). SeLiNet has only conv2d, and a rewrite for a conv type
    the graph lacks cannot match, so those helpers are skipped; traced patterns are memoised
    (they depend only on the pattern and the example shapes). Patching is best-effort: if
    torchao's private names change, nothing is patched and the passes run as shipped (slower).
    """
    try:
        from torchao.quantization.pt2e import qat_utils
        from torchao.quantization.pt2e import utils as pt2e_utils
        from torchao.testing.pt2e import _xnnpack_quantizer_utils as xnn_utils
    except ImportError:  # pragma: no cover - another torchao layout
        yield
        return
    import torch.nn.functional as F

    names = ("_fuse_conv_bn_qat_helper", "_fold_conv_bn_qat_helper")
    modules = (qat_utils, pt2e_utils, xnn_utils)
    if not all(hasattr(qat_utils, n) for n in names) or not all(
        hasattr(m, "_get_aten_graph_module_for_pattern") for m in modules
    ):  # pragma: no cover
        yield
        return
    other_convs = {
        torch.ops.aten.conv1d.default, torch.ops.aten.conv3d.default, torch.ops.aten.conv_transpose1d.default,
        torch.ops.aten.conv_transpose2d.input, torch.ops.aten.conv_transpose3d.input,
    }  # fmt: skip
    only_conv2d = not any(n.op == "call_function" and n.target in other_convs for n in graph.graph.nodes)
    trace = pt2e_utils._get_aten_graph_module_for_pattern

    def cached_trace(pattern, example_inputs, is_cuda=False, **kwargs):
        key = _pattern_key(pattern, example_inputs, is_cuda, kwargs)
        if key is None:
            return trace(pattern, example_inputs, is_cuda, **kwargs)
        if key not in _PATTERN_CACHE:
            _PATTERN_CACHE[key] = trace(pattern, example_inputs, is_cuda, **kwargs)
        return copy.deepcopy(_PATTERN_CACHE[key])

    def conv2d_only(helper):
        def run(m, conv_fn, example_inputs, is_cuda):
            if only_conv2d and conv_fn is not F.conv2d:
                return m
            return helper(m, conv_fn, example_inputs, is_cuda)

        return run

    saved = [(m, "_get_aten_graph_module_for_pattern", m._get_aten_graph_module_for_pattern) for m in modules]
    saved += [(qat_utils, n, getattr(qat_utils, n)) for n in names]
    try:
        for module, name, original in saved:
            setattr(
                module,
                name,
                cached_trace if name == "_get_aten_graph_module_for_pattern" else conv2d_only(original),
            )
        yield
    finally:
        for module, name, original in saved:
            setattr(module, name, original)


# ---------------------------------------------------------------------------------------------
# The fake-quantized model


class PseudoHardswish(nn.Module):
    """hard-swish written as x * relu6(x + 3) / 6: the same function, as ops (add, clip, mul) that
    the quantizer annotates one by one and XNNPACK runs in int8. LiteRT's int8 HARD_SWISH is not
    delegated to XNNPACK (20 partitions in the litert-torch file, measured)."""

    def forward(self, x: Tensor) -> Tensor:
        return x * nn.functional.hardtanh(x + 3.0, 0.0, 6.0) * (1.0 / 6.0)


def export_graph(model: SeLiNet, pseudo_hardswish: bool = False) -> GraphModule:
    """``torch.export`` of ``model`` (eval mode) with a dynamic batch axis, as a GraphModule;
    ``pseudo_hardswish`` swaps every ``nn.Hardswish`` for :class:`PseudoHardswish` first."""
    model = copy.deepcopy(model).eval()
    if pseudo_hardswish:
        for module in list(model.modules()):
            for name, child in list(module.named_children()):
                if isinstance(child, nn.Hardswish):
                    setattr(module, name, PseudoHardswish())
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    # Traced with batch 2: batch 1 would let torch.export specialise the batch axis.
    example = model.example_inputs(2)
    dynamic = tuple({0: batch} for _ in example)
    return torch.export.export(model, example, dynamic_shapes=dynamic).module()


def _bn_module_of(node, modules: dict[str, nn.Module]) -> nn.BatchNorm2d | None:
    """The BatchNorm a graph node's ``running_var`` argument belongs to (get_attr target
    ``body.features.0.1.running_var`` -> module ``body.features.0.1``)."""
    target = getattr(node, "target", None)
    if getattr(node, "op", None) != "get_attr" or not str(target).endswith("running_var"):
        return None
    module = modules.get(str(target).rsplit(".", 1)[0])
    return module if isinstance(module, nn.modules.batchnorm._BatchNorm) else None


def _is_bn(node) -> bool:
    return node.op == "call_function" and node.target == torch.ops.aten.batch_norm.default


def _is_running_var_add(node) -> bool:
    """``running_var + eps`` inside torchao's fused conv + BN QAT pattern."""
    return (
        node.op == "call_function"
        and node.target == torch.ops.aten.add.Tensor
        and len(node.args) == 2
        and isinstance(node.args[1], float)
        and getattr(node.args[0], "op", None) == "get_attr"
        and str(node.args[0].target).endswith("running_var")
    )


def _set_arg(node, index: int, value: Any) -> None:
    args = list(node.args)
    args[index] = value
    node.args = tuple(args)


def restore_batchnorm_settings(graph: GraphModule, model: nn.Module) -> int:
    """Give every BatchNorm in the prepared ``graph`` the eps and momentum of its module in
    ``model`` (torchao's QAT patterns hard-code 1e-5 / 0.1). Returns the number of nodes changed."""
    modules = dict(model.named_modules())
    changed = 0
    for node in graph.graph.nodes:
        if _is_bn(node):
            bn = _bn_module_of(node.args[4], modules)
            if bn is not None:
                # aten.batch_norm(input, weight, bias, mean, var, training, momentum, eps, cudnn)
                _set_arg(node, 6, bn.momentum if bn.momentum is not None else TORCHAO_BN_MOMENTUM)
                _set_arg(node, 7, bn.eps)
                changed += 1
        elif _is_running_var_add(node):
            bn = _bn_module_of(node.args[0], modules)
            if bn is not None:
                _set_arg(node, 1, bn.eps)
                changed += 1
    graph.recompile()
    return changed


def fake_quantizers(graph: nn.Module) -> dict[str, nn.Module]:
    """Name -> fake-quantize module of a prepared graph."""
    from torchao.quantization.pt2e import FakeQuantizeBase

    return {name: m for name, m in graph.named_modules() if isinstance(m, FakeQuantizeBase)}


class GraphSeLiNet(nn.Module):
    """A PT2E graph (prepared or converted) that behaves like the SeLiNet it came from:
    ``forward(body, context)`` returning a tuple, ``config``, ``input_names``, ``output_names``,
    ``example_inputs`` -- so the training loop, ``TorchRunner`` and the ONNX export pass take it
    as they take a SeLiNet. ``train()`` / ``eval()`` only set the flag: an exported graph's own
    ``train()`` raises, and its BatchNorm / dropout are switched by :func:`set_qat_phase`."""

    input_names = SeLiNet.input_names
    output_names = SeLiNet.output_names
    example_inputs = SeLiNet.example_inputs

    def __init__(self, graph: GraphModule, config: SeLiNetConfig) -> None:
        super().__init__()
        self.net = graph
        self.config = config

    def forward(self, body: Tensor, context: Tensor | None = None) -> tuple[Tensor, ...]:
        inputs = (body, context) if self.config.use_aesthetics else (body,)
        if any(t is None for t in inputs):
            raise ValueError("this SeLiNet has an aesthetics branch: pass the context image")
        return tuple(self.net(*inputs))

    def train(self, mode: bool = True) -> GraphSeLiNet:  # type: ignore[override]
        self.training = mode
        return self


class QatModel(GraphSeLiNet):
    """A SeLiNet with fake quantization, trainable by :func:`selinet_compress.train.train`.

    ``train()`` / ``eval()`` really switch BatchNorm, dropout and the observers (see
    :func:`set_qat_phase`), honouring ``freeze_bn`` / ``freeze_observers`` (set per epoch by
    :func:`qat_hooks`). Its ``state_dict`` holds weights, BatchNorm statistics and every observer's
    state; a QatModel prepared from the same config loads it (resume, best-by-val).
    """

    def __init__(self, graph: GraphModule, config: SeLiNetConfig, quantizer_settings: dict[str, Any]) -> None:
        super().__init__(graph, config)
        self.quantizer_settings = dict(quantizer_settings)
        self.freeze_bn = False
        self.freeze_observers = False
        self.fake_quant = True
        self._phase: tuple[bool, bool] | None = None  # (BN training, dropout training) in the graph
        self.train(False)

    def train(self, mode: bool = True) -> QatModel:  # type: ignore[override]
        # nn.Module.train would call the graph's train(), which torchao disables on purpose.
        self.training = mode
        set_qat_phase(self, mode, self.freeze_bn, self.freeze_observers, self.fake_quant)
        return self


def set_qat_phase(
    model: QatModel,
    train: bool,
    freeze_bn: bool = False,
    freeze_observers: bool = False,
    fake_quant: bool = True,
) -> None:
    """Switch a prepared model between training and evaluation.

    ``train``: BatchNorm normalises with batch statistics and updates its running ones (unless
    ``freeze_bn``), dropout is active, observers update ranges (unless ``freeze_observers``).
    Evaluation: running statistics, no dropout, observers frozen (validation data must not move
    the ranges). ``fake_quant=False`` runs the graph in float (for checks).
    """
    from torchao.quantization.pt2e import (
        disable_fake_quant,
        disable_observer,
        enable_fake_quant,
        enable_observer,
    )

    model.training = train
    model.freeze_bn, model.freeze_observers, model.fake_quant = freeze_bn, freeze_observers, fake_quant
    phase = (train and not freeze_bn, train)
    if phase != model._phase:
        for node in model.net.graph.nodes:
            if _is_bn(node):
                _set_arg(node, 5, phase[0])
            elif node.op == "call_function" and node.target == torch.ops.aten.dropout.default:
                _set_arg(node, 2, phase[1])
        model.net.recompile()
        model._phase = phase
    model.net.apply(enable_observer if train and not freeze_observers else disable_observer)
    model.net.apply(enable_fake_quant if fake_quant else disable_fake_quant)


def prepare_qat(
    model: SeLiNet,
    per_channel: bool = True,
    keep_float_modules: Iterable[str] = (),
    averaging_constant: float = 0.01,
    pseudo_hardswish: bool = False,
    float_outputs: bool = False,
) -> QatModel:
    """Export ``model`` and insert fake quantization (``prepare_qat_pt2e``); the model is not
    changed. The result is in eval mode; call ``train()`` before training it."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    settings = {
        "per_channel": bool(per_channel),
        "keep_float_modules": list(keep_float_modules),
        "averaging_constant": float(averaging_constant),
        "pseudo_hardswish": bool(pseudo_hardswish),
        "float_outputs": bool(float_outputs),
    }
    quantizer = build_quantizer(per_channel, keep_float_modules, averaging_constant, float_outputs)
    graph = export_graph(model, pseudo_hardswish)
    with warnings.catch_warnings(), _fast_patterns(graph):
        warnings.simplefilter("ignore", UserWarning)
        graph = prepare_qat_pt2e(graph, quantizer)
    restore_batchnorm_settings(graph, model)
    # Frozen parameters (e.g. trunks) stay frozen in the graph.
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    for name, param in graph.named_parameters():
        if name in frozen:
            param.requires_grad_(False)
    return QatModel(graph, model.config, settings)


def float_state_dict(model: QatModel) -> dict[str, Tensor]:
    """The QAT-tuned float weights (and BatchNorm statistics) as a SeLiNet state_dict."""
    reference = SeLiNet(model.config).state_dict()
    own = model.net.state_dict()
    # The export drops BatchNorm's batch counters (unused with a fixed momentum): zeros, as at init.
    missing = [k for k in reference if k not in own and not k.endswith("num_batches_tracked")]
    if missing:
        raise RuntimeError(f"the prepared graph lost SeLiNet tensors: {missing[:3]}")
    return {k: (own[k] if k in own else reference[k]).detach().clone() for k in reference}


def float_model(model: QatModel) -> SeLiNet:
    """A SeLiNet holding the QAT-tuned float weights."""
    net = SeLiNet(model.config)
    net.load_state_dict(float_state_dict(model))
    return net.eval()


# ---------------------------------------------------------------------------------------------
# Convert


def convert_qat(model: QatModel, fold_quantize: bool = True) -> GraphModule:
    """The int8 graph of a trained QatModel (``convert_pt2e``); ``model`` is not changed.

    ``fold_quantize=True`` stores int8 weights (ONNX); litert-torch wants float weights followed by
    quantize / dequantize ops (``False``) and makes the int8 constants itself.

    torchao folds BatchNorm into the conv weights assuming eps 1e-5, so first each running_var
    absorbs the difference (var + eps == (var + eps - 1e-5) + 1e-5) and the graph's eps goes back
    to 1e-5: the folded weights are exactly the ones the weight quantizers saw during training.
    """
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    work = copy.deepcopy(model)
    set_qat_phase(work, False)
    graph = work.net
    buffers = dict(graph.named_buffers())
    for node in graph.graph.nodes:
        if _is_bn(node):
            var = buffers[str(node.args[4].target)]
            var.add_(float(node.args[7]) - TORCHAO_BN_EPS)
            _set_arg(node, 7, TORCHAO_BN_EPS)
            _set_arg(node, 6, TORCHAO_BN_MOMENTUM)
        elif _is_running_var_add(node):
            _set_arg(node, 1, TORCHAO_BN_EPS)
    graph.recompile()
    with warnings.catch_warnings(), _fast_patterns(graph):
        warnings.simplefilter("ignore", UserWarning)
        return convert_pt2e(graph, fold_quantize=fold_quantize)


def learned_qparams(model: QatModel) -> dict[str, dict[str, Any]]:
    """Every fake-quantizer's learned scale / zero point (what ``convert_pt2e`` will use)."""
    result = {}
    for name, fq in fake_quantizers(model.net).items():
        scale, zero_point = fq.calculate_qparams()
        result[name] = {
            "scale": scale.detach().float().reshape(-1).tolist(),
            "zero_point": zero_point.detach().reshape(-1).tolist(),
            "per_channel": bool(fq.is_per_channel),
            "dtype": str(fq.dtype).replace("torch.", ""),
        }
    return result


# ---------------------------------------------------------------------------------------------
# Checkpoints (resume, best-by-val)


def save_qat_checkpoint(model: QatModel, path: str | os.PathLike, metadata: dict | None = None) -> Path:
    """Write the fake-quantized model's state (weights, BN statistics, observers), its SeLiNet
    config and quantizer settings, atomically; loadable with ``torch.load(weights_only=True)``."""
    from selinet_compress import __version__
    from selinet_compress.io import atomic_path

    payload = {
        "format": QAT_CHECKPOINT_FORMAT,
        "format_version": 1,
        "config": model.config.to_dict(),
        "quantizer": model.quantizer_settings,
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "metadata": {"selinet_compress": __version__, "torch": str(torch.__version__), **(metadata or {})},
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_qat_checkpoint(path: str | os.PathLike) -> tuple[QatModel, dict]:
    """Rebuild the QatModel saved by :func:`save_qat_checkpoint` (in eval mode) and its metadata."""
    from selinet_compress.checkpoint import read_checkpoint_file
    from selinet_compress.errors import UserError

    payload = read_checkpoint_file(path)
    if not isinstance(payload, dict) or payload.get("format") != QAT_CHECKPOINT_FORMAT:
        raise UserError(f"{path} is not a QAT checkpoint (format {QAT_CHECKPOINT_FORMAT})")
    config = SeLiNetConfig.from_dict(payload["config"], f"config in {path}")
    model = prepare_qat(SeLiNet(config).eval(), **payload["quantizer"])
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, dict(payload.get("metadata") or {})


# ---------------------------------------------------------------------------------------------
# Training hooks


def qat_hooks(
    options: QatOptions,
    per_channel: bool = True,
    keep_float_modules: Iterable[str] = (),
    float_outputs: bool = False,
) -> TrainHooks:
    """What :func:`selinet_compress.train.train` needs to fine-tune with fake quantization: build
    the QatModel from the float model, switch its phase, freeze BN statistics / observers at the
    epochs the options name, and save QAT checkpoints (best-by-val and last)."""
    from selinet_compress.train import TrainHooks

    keep = tuple(keep_float_modules)

    def prepare(model: nn.Module) -> nn.Module:
        return prepare_qat(
            model,  # type: ignore[arg-type]
            per_channel,
            keep,
            options.averaging_constant,
            options.pseudo_hardswish,
            float_outputs,
        )

    def set_mode(model: nn.Module, train: bool) -> None:
        model.train(train)

    def on_epoch_start(model: nn.Module, epoch: int) -> None:
        model.freeze_bn = options.freeze_bn(epoch)  # type: ignore[assignment]
        model.freeze_observers = options.freeze_observers(epoch)  # type: ignore[assignment]

    return TrainHooks(
        prepare=prepare, set_mode=set_mode, on_epoch_start=on_epoch_start, save=save_qat_checkpoint
    )  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# ONNX


def export_qat_onnx(
    converted: GraphModule,
    path: str | os.PathLike,
    config: SeLiNetConfig,
    activation_type: str = "uint8",
    opset: int = 18,
) -> dict[str, Any]:
    """Export the int8 graph to a QDQ ONNX file (config in its metadata); returns a record.

    ``activation_type='uint8'`` re-expresses the int8 activations as uint8 (zero point + 128, same
    scale: the same real values), the pairing onnxruntime's x86 kernels run fastest (DESIGN §6).
    """
    import onnx

    from selinet_compress.passes.onnx_export import config_metadata, export_onnx, set_metadata

    path = Path(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "exporting a model in training mode": a fixed graph
        record = export_onnx(GraphSeLiNet(converted, config), path, opset=opset)  # type: ignore[arg-type]
    model = onnx.load(str(path))
    shifted = activations_to_uint8(model) if activation_type == "uint8" else 0
    set_metadata(model, config_metadata(config))
    onnx.save(model, str(path))
    return {
        **record,
        "exporter": "torch.onnx.export(dynamo=True) of the convert_pt2e graph",
        "activation_type": activation_type,
        "activation_zero_points_shifted_to_uint8": shifted,
    }


def activations_to_uint8(model: onnx.ModelProto) -> int:
    """Rewrite int8 activation Quantize/DequantizeLinear pairs as uint8 in place: q_u8 = q_s8 + 128
    with zero point + 128 and the same scale encodes the same real values (an exact change).
    Weights (DequantizeLinear of an int8 initializer) stay int8. Returns the zero points changed."""
    import numpy as np
    from onnx import TensorProto, numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    constants = {n.output[0]: n for n in model.graph.node if n.op_type == "Constant"}

    def zero_point_array(name: str) -> np.ndarray | None:
        if name in inits:
            return numpy_helper.to_array(inits[name])
        if name in constants:
            return numpy_helper.to_array(constants[name].attribute[0].t)
        return None

    activation_zps: set[str] = set()
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and len(node.input) > 2:
            activation_zps.add(node.input[2])
    # A DequantizeLinear of an activation reads a Q output; one of a weight reads an initializer.
    produced_by_q = {o for n in model.graph.node if n.op_type == "QuantizeLinear" for o in n.output}
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in produced_by_q and len(node.input) > 2:
            activation_zps.add(node.input[2])
    renamed: dict[str, str] = {}
    for name in sorted(activation_zps):
        array = zero_point_array(name)
        if array is None or array.dtype != np.int8:
            continue
        shifted = (array.astype(np.int16) + 128).astype(np.uint8)
        new_name = f"{name}_u8"
        model.graph.initializer.append(numpy_helper.from_array(shifted, new_name))
        renamed[name] = new_name
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2:
            if node.input[2] in renamed and (
                node.op_type == "QuantizeLinear" or node.input[0] in produced_by_q
            ):
                node.input[2] = renamed[node.input[2]]
    # Output types of the Q nodes change with their zero point: drop stale inferred types.
    q_outputs = {
        o
        for n in model.graph.node
        if n.op_type == "QuantizeLinear" and n.input[2] in renamed.values()
        for o in n.output
    }
    keep = [v for v in model.graph.value_info if v.name not in q_outputs]
    del model.graph.value_info[:]
    model.graph.value_info.extend(keep)
    for value in model.graph.value_info:
        if value.type.tensor_type.elem_type == TensorProto.INT8 and value.name in q_outputs:
            value.type.tensor_type.elem_type = TensorProto.UINT8
    return len(renamed)


def onnx_qparams_match(model: onnx.ModelProto, qat: QatModel, rel_tol: float = 1e-6) -> dict[str, Any]:
    """How many of the ONNX file's quantization scales are the QAT-learned ones: every activation
    QuantizeLinear scale and every weight DequantizeLinear scale vector is looked up among the
    fake-quantizers' learned scales (relative tolerance ``rel_tol``)."""
    import numpy as np
    from onnx import numpy_helper

    learned = learned_qparams(qat)
    tensor_scales = sorted(v["scale"][0] for v in learned.values() if not v["per_channel"])
    channel_scales = [np.asarray(v["scale"]) for v in learned.values() if v["per_channel"]]
    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    values |= {
        n.output[0]: numpy_helper.to_array(n.attribute[0].t)
        for n in model.graph.node
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"
    }
    learned_tensor = np.asarray(tensor_scales)

    def tensor_match(scale: float) -> bool:
        if learned_tensor.size == 0:
            return False
        return bool(np.min(np.abs(learned_tensor - scale)) <= rel_tol * abs(scale))

    def channel_match(scale: np.ndarray) -> bool:
        return any(
            c.shape == scale.shape and np.allclose(c, scale, rtol=rel_tol, atol=0) for c in channel_scales
        )

    activation = {"total": 0, "matched": 0}
    weight = {"total": 0, "matched": 0}
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear":
            scale = values.get(node.input[1])
            if scale is not None:
                activation["total"] += 1
                activation["matched"] += int(tensor_match(float(np.asarray(scale).reshape(-1)[0])))
        elif node.op_type == "DequantizeLinear" and node.input[0] in values:
            scale = np.asarray(values.get(node.input[1]), dtype=np.float32).reshape(-1)
            weight["total"] += 1
            # A one-channel conv (the attention score) has a per-channel scale of length 1.
            weight["matched"] += int(
                channel_match(scale) or (scale.size == 1 and tensor_match(float(scale[0])))
            )
    return {
        "activation_scales": activation,
        "weight_scales": weight,
        "learned_fake_quantizers": len(learned),
        "rel_tol": rel_tol,
    }
