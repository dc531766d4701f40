"""The int8_qat recipe inside a build: fine-tune once (cached, resumable), then make the target's file.

:func:`run_qat` fine-tunes the job's checkpoint with fake quantization through the training API
(:func:`selinet_compress.train.train` with :func:`selinet_compress.passes.qat.qat_hooks`: the
paper's loss on the train split, best epoch by validation mAP of the fake-quantized model). The
run lives in ``<cache_dir or the artifact's folder>/qat-<key>/``, keyed by checkpoint content,
QAT knobs, quantizer settings, data folder and torch / torchao versions, so the ONNX and the
TFLite builds of one recipe share it, a finished run is reused and an interrupted one resumes.

:func:`build_onnx` converts the best QAT model to a QDQ ONNX file, checks it against the int8
PyTorch graph on the check samples and checks that its scales are the learned ones;
:func:`build_tflite` converts the same int8 graph with litert-torch (or sends the QAT-tuned float
weights through the TFLite target's calibrated full-integer path), recording which route ran.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import onnx

    from selinet_compress.passes.qat import QatModel
    from selinet_compress.passes.qat_options import QatOptions
    from selinet_compress.targets.base import BuildJob

# The exported ONNX / TFLite file vs the int8 PyTorch graph it came from (the same integer model,
# run by onnxruntime's / LiteRT's kernels instead of torch's float simulation). Not identical: a
# mean over quantized values (the squeeze-excitation pooling) often lands exactly half-way between
# two steps and the runtimes break such ties differently; on an untrained model whose outputs
# barely depend on the input that alone drops the cosine to ~0.75-0.9 (measured). A broken file
# lands far lower.
INT8_FAIL_COSINE = 0.5
INT8_WARN_COSINE = 0.99
TFLITE_ROUTES = {
    "litert_torch": "litert-torch conversion of the QAT convert_pt2e graph: the QAT-learned int8 weights "
    "and activation ranges, no re-calibration",
    "onnx2tf_calibrated": "the QAT-tuned float weights through the TFLite target's onnx2tf full-integer "
    "path: weights and activation ranges re-quantized from calibration samples (the QAT ranges are not used)",
}


@dataclass
class QatRun:
    """A finished fine-tuning: the best fake-quantized model, its checkpoint and what happened."""

    model: QatModel
    checkpoint: Path
    record: dict[str, Any]


def check_recipe(recipe: Any) -> str | None:
    """Why an int8_qat recipe cannot be built (None when it can): the PT2E quantizer makes int8
    weights and int8 activations (re-expressed as uint8 in ONNX) and selects modules, not op types."""
    if recipe.weight_type != "int8":
        return f"int8_qat makes int8 weights, not {recipe.weight_type}"
    if recipe.activation_type not in ("uint8", "int8"):
        return f"int8_qat makes int8 activations (uint8 in ONNX), not {recipe.activation_type}"
    if recipe.op_types or recipe.keep_float_nodes:
        return "int8_qat keeps modules float (keep_float_modules), not op_types / keep_float_nodes"
    return None


def check_tflite_recipe(recipe: Any) -> str | None:
    """:func:`check_recipe` plus what the TFLite routes need."""
    reason = check_recipe(recipe)
    if reason:
        return reason
    if recipe.keep_float_modules:
        return "keep_float_modules is not supported for TFLite int8_qat files (untested mixed graphs)"
    if recipe.section("qat").tflite_route == "litert_torch":
        from selinet_compress.passes.tflite_litert_torch import available

        return available()
    return None


def _options(job: BuildJob) -> QatOptions:
    return job.recipe.section("qat")


def _quantizer_settings(job: BuildJob) -> dict[str, Any]:
    options = _options(job)
    return {
        "per_channel": job.recipe.per_channel,
        "keep_float_modules": list(job.recipe.keep_float_modules),
        "averaging_constant": options.averaging_constant,
        "pseudo_hardswish": options.pseudo_hardswish,
        "float_outputs": job.recipe.keep_outputs_float,
    }


def run_dir(job: BuildJob) -> Path:
    """Where this job's QAT run lives (shared by every target of the same recipe and checkpoint)."""
    from selinet_compress.environment import package_versions
    from selinet_compress.io import sha256_json

    key = sha256_json(
        {
            "checkpoint": job.checkpoint_sha256,
            "qat": dataclasses.asdict(_options(job)),
            "quantizer": _quantizer_settings(job),
            "data": str(Path(job.data_dir).resolve()),
            "versions": package_versions("torch", "torchao"),
        }
    )[:16]
    root = job.cache_dir if job.cache_dir is not None else job.artifact.parent
    return Path(root) / f"qat-{key}"


def train_config(options: QatOptions):
    """The training API's config for a QAT run (trunks never frozen: every layer adapts)."""
    from selinet_compress.train import TrainConfig

    return TrainConfig(
        epochs=options.epochs,
        batch_size=options.batch_size,
        lr=options.lr,
        lr_decay=options.lr_decay,
        lr_step=options.lr_step,
        momentum=options.momentum,
        optimizer=options.optimizer,
        weight_decay=options.weight_decay,
        freeze_trunks=False,
        augment=options.augment,
        seed=options.seed,
        limit_train=options.limit_train,
        limit_val=options.limit_val,
    )


def run_qat(job: BuildJob) -> QatRun:
    """Fine-tune ``job.model`` with fake quantization (or reuse / resume the run in :func:`run_dir`)."""
    import json

    from selinet_compress.checkpoint import save_checkpoint
    from selinet_compress.passes.qat import load_qat_checkpoint, qat_hooks
    from selinet_compress.train import run_paths, train

    options = _options(job)
    folder = run_dir(job)
    out = folder / "qat.pt"
    paths = run_paths(out)
    summary = out.with_name(out.name + ".json")  # written by train() after the last epoch only
    finished = summary.is_file() and paths["best"].is_file()
    wall = None
    if finished:
        job.log(f"qat: reusing the finished run in {folder}")
    else:
        folder.mkdir(parents=True, exist_ok=True)
        init = folder / "init.pt"
        if not init.is_file():  # the job's model in our format: train() reads any wrapping from it
            save_checkpoint(
                job.model,
                init,
                {"qat_source": {"checkpoint": str(job.checkpoint), "sha256": job.checkpoint_sha256}},
            )
        resume = paths["state"].is_file()
        job.log(
            f"qat: {'resuming' if resume else 'starting'} {options.epochs} epoch(s) of quantization-aware "
            f"fine-tuning in {folder} ..."
        )
        started = time.perf_counter()
        train(
            job.data_dir,
            out,
            train_config(options),
            init=init,
            resume=resume,
            force=not resume,
            progress=job.progress,
            log=job.log,
            hooks=qat_hooks(
                options, job.recipe.per_channel, job.recipe.keep_float_modules, job.recipe.keep_outputs_float
            ),
        )
        wall = round(time.perf_counter() - started, 1)
    history = json.loads(summary.read_text(encoding="utf-8"))
    if wall is not None:
        history["qat_wall_seconds"] = wall
        from selinet_compress.io import write_json_atomic

        write_json_atomic(summary, history)
    model, _metadata = load_qat_checkpoint(out)
    record = {
        "run_dir": str(folder),
        "checkpoint": str(out),
        "reused": finished,
        "options": dataclasses.asdict(options),
        "quantizer": {
            **_quantizer_settings(job),
            "annotator": "torchao XNNPACKQuantizer + ReLU6 output move",
            "activations": "int8 per-tensor affine",
            "weights": "int8 symmetric " + ("per-channel" if job.recipe.per_channel else "per-tensor"),
        },
        "best_epoch": history.get("best_epoch"),
        "best_val_map_fake_quant": history.get("best_val_map"),
        "history": history.get("history"),
        "wall_seconds": history.get("qat_wall_seconds"),
        "threads": _threads(),
    }
    return QatRun(model, out, record)


def _threads() -> int:
    import torch

    return torch.get_num_threads()


# ---------------------------------------------------------------------------------------------
# ONNX


def build_onnx(job: BuildJob, work: Path, opset: int) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """QAT -> int8 graph -> QDQ ONNX, checked against the int8 PyTorch graph and for learned scales.

    Returns the model and the ``details`` the ONNX target's finishing step records.
    """
    import onnx

    from selinet_compress.errors import UserError
    from selinet_compress.passes.agreement import output_agreement
    from selinet_compress.passes.onnx_export import node_scopes
    from selinet_compress.passes.onnx_validate import onnx_outputs, run_batches
    from selinet_compress.passes.qat import convert_qat, export_qat_onnx, onnx_qparams_match
    from selinet_compress.runtimes.torch_runner import TorchRunner

    if job.recipe.activation_type not in ("uint8", "int8"):
        raise UserError(f"int8_qat makes int8 or uint8 activations, not {job.recipe.activation_type}")
    run = run_qat(job)
    job.log("qat: convert_pt2e (BatchNorm folded into the int8 conv weights) ...")
    started = time.perf_counter()
    converted = convert_qat(run.model)
    convert_seconds = round(time.perf_counter() - started, 1)
    job.log(f"qat: exporting the int8 graph to QDQ ONNX ({job.recipe.activation_type} activations) ...")
    path = work / "qat.onnx"
    export = export_qat_onnx(converted, path, job.model.config, job.recipe.activation_type, opset)
    int8_torch = run_batches(_int8_runner(converted, run.model).run, job.check, run.model.input_names)
    vs_int8 = output_agreement(int8_torch, onnx_outputs(path, job.check))
    worst = check_against_int8(job, vs_int8, "ONNX")
    vs_fake_quant = output_agreement(
        run_batches(TorchRunner.from_model(run.model).run, job.check, run.model.input_names), int8_torch
    )
    model = onnx.load(str(path))
    qparams = onnx_qparams_match(model, run.model)
    unmatched = [
        k for k in ("activation_scales", "weight_scales") if qparams[k]["matched"] != qparams[k]["total"]
    ]
    if unmatched:
        job.warn(
            "some ONNX quantization scales are not QAT-learned ones: "
            + ", ".join(f"{k} {qparams[k]['matched']}/{qparams[k]['total']}" for k in unmatched)
        )
    job.log(
        f"qat: ONNX scales = learned scales: activations {qparams['activation_scales']['matched']}/"
        f"{qparams['activation_scales']['total']}, weights {qparams['weight_scales']['matched']}/"
        f"{qparams['weight_scales']['total']}; ORT vs int8 PyTorch cosine {worst:.5f}"
    )
    fused = runtime_qdq(path)
    job.log(
        f"qat: onnxruntime runs {fused['integer_kernels']} integer kernels; Q/DQ left unfused "
        f"{fused['unfused_quantize']}/{fused['unfused_dequantize']}"
    )
    quantized = {
        "method": "quantization-aware training (torchao PT2E: prepare_qat_pt2e -> train -> convert_pt2e)",
        "qat": run.record,
        "convert_seconds": convert_seconds,
        "export": export,
        "learned_qparams_in_file": qparams,
        "onnx_vs_int8_pytorch": vs_int8,
        "onnxruntime_graph": fused,
        "int8_pytorch_vs_fake_quant": vs_fake_quant,
    }
    return model, {"quantized": quantized, "kept_float_nodes": [], "scopes": node_scopes(model)}


def _int8_runner(converted, like: QatModel):
    """A TorchRunner of the converted int8 graph (the reference its ONNX / TFLite file must follow)."""
    from selinet_compress.passes.qat import GraphSeLiNet
    from selinet_compress.runtimes.torch_runner import TorchRunner

    return TorchRunner.from_model(GraphSeLiNet(converted, like.config))


def runtime_qdq(path: Path) -> dict[str, Any]:
    """Op counts of the graph onnxruntime really runs (after its QDQ fusions): integer kernels, and
    the Quantize / DequantizeLinear nodes it could not fold into one (each is run-time work)."""
    from collections import Counter

    from selinet_compress.audit.onnx_audit import is_integer_kernel, runtime_graph

    counts = Counter(node.op_type for node in runtime_graph(path).graph.node)
    plumbing = ("QuantizeLinear", "DequantizeLinear")
    return {
        "integer_kernels": sum(n for op, n in counts.items() if is_integer_kernel(op)),
        "unfused_quantize": counts.get("QuantizeLinear", 0),
        "unfused_dequantize": counts.get("DequantizeLinear", 0),
        "float_ops": {op: n for op, n in counts.items() if not is_integer_kernel(op) and op not in plumbing},
    }


# ---------------------------------------------------------------------------------------------
# TFLite


def check_against_int8(job: BuildJob, agreement: dict[str, Any], what: str) -> float:
    """Fail (broken file) or warn when a converted file drifts from its int8 PyTorch graph."""
    from selinet_compress.errors import UserError

    worst = min(entry["cosine"] for entry in agreement.values())
    if worst < INT8_FAIL_COSINE:
        raise UserError(
            f"the QAT {what} file does not compute what its int8 PyTorch graph computes "
            f"(cosine {worst:.4f} < {INT8_FAIL_COSINE} on {len(job.check)} check samples); not written"
        )
    if worst < INT8_WARN_COSINE:
        job.warn(
            f"the QAT {what} file follows its int8 PyTorch graph with cosine {worst:.4f} only "
            f"(< {INT8_WARN_COSINE}; rounding ties in average pooling, amplified by the model)"
        )
    return worst


def build_tflite(job: BuildJob, raw: Path, work: Path) -> list[dict[str, Any]]:
    """An integer .tflite from the QAT run at ``raw``; the returned pass records name the route.

    The litert-torch file is checked against the int8 PyTorch graph it was converted from (the
    TFLite target then records its drift from the fp32 checkpoint, which QAT changed on purpose).
    """
    from selinet_compress.passes.agreement import output_agreement
    from selinet_compress.passes.onnx_validate import run_batches
    from selinet_compress.passes.tflite_metadata import finalize_tflite
    from selinet_compress.runtimes.tflite_runner import LiteRTRunner

    options = _options(job)
    run = run_qat(job)
    if options.tflite_route == "litert_torch":
        record, converted = litert_torch_from_qat(run.model, raw, job.log)
        checked = work / "qat_check.tflite"
        finalize_tflite(raw, checked, run.model.config)
        names = run.model.input_names
        lite = run_batches(LiteRTRunner.open(checked, threads=2).run, job.check, names)
        int8_torch = run_batches(_int8_runner(converted, run.model).run, job.check, names)
        record["tflite_vs_int8_pytorch"] = output_agreement(int8_torch, lite)
        check_against_int8(job, record["tflite_vs_int8_pytorch"], "TFLite")
    else:
        record = _onnx2tf_calibrated(job, run, raw, work)
    return [
        {"pass": "qat", **run.record},
        {**record, "route": options.tflite_route, "what_was_done": TFLITE_ROUTES[options.tflite_route]},
    ]


def litert_torch_from_qat(model: QatModel, path: Path, log=print) -> tuple[dict[str, Any], Any]:
    """litert-torch conversion of the QAT int8 graph (weights quantized by litert-torch from the
    float weights + learned scales: ``convert_pt2e(fold_quantize=False)``). Returns the record and
    that int8 graph."""
    import warnings

    import torch

    from selinet_compress.errors import UserError
    from selinet_compress.passes.qat import convert_qat
    from selinet_compress.passes.tflite_litert_torch import available, tool_versions
    from selinet_compress.passes.tflite_onnx2tf import ConversionError

    reason = available()
    if reason:
        raise UserError(f"tflite_route litert_torch: {reason}")
    import litert_torch
    from litert_torch.quantize import pt2e_quantizer
    from litert_torch.quantize.quant_config import QuantConfig

    log("qat: litert-torch conversion of the int8 graph (takes minutes) ...")
    started = time.perf_counter()
    converted = convert_qat(model, fold_quantize=False)
    # litert-torch reads only "static, not dynamic" from the quantizer; the graph is already quantized.
    marker = pt2e_quantizer.PT2EQuantizer().set_global(
        pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True, is_qat=True)
    )
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            for module in converted.modules():  # the graph is fixed; this only silences a warning
                module.training = False
            # Keyword inputs: the file's inputs are then named body / context, not args_0 / args_1.
            example = dict(zip(model.input_names, model.example_inputs(1), strict=True))
            config = QuantConfig(pt2e_quantizer=marker)
            edge = litert_torch.convert(converted, sample_kwargs=example, quant_config=config)
            edge.export(str(path))
    except Exception as exc:  # anything from torch.export to MLIR
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ConversionError(f"litert-torch conversion of the QAT graph failed: {first}") from None
    record = {
        "pass": "litert_torch_qat",
        "seconds": round(time.perf_counter() - started, 1),
        "tool_versions": tool_versions(),
    }
    return record, converted


def _onnx2tf_calibrated(job: BuildJob, run: QatRun, raw: Path, work: Path) -> dict[str, Any]:
    """The QAT-tuned float weights -> the TFLite target's onnx2tf int8_static path (calibrated)."""
    from selinet_compress.calibration import load_calibration
    from selinet_compress.io import sha256_file
    from selinet_compress.passes.onnx_validate import torch_outputs
    from selinet_compress.passes.qat import float_model
    from selinet_compress.targets.tflite import TFLiteOptions, TFLiteTarget

    tuned = float_model(run.model)
    recipe = dataclasses.replace(job.recipe, precision="int8_static")
    calibration = load_calibration(job.data_dir, tuned.config, recipe.calibration, progress=job.progress)
    sub = dataclasses.replace(
        job,
        model=tuned,
        recipe=recipe,
        calibration=calibration,
        checkpoint_sha256=sha256_file(run.checkpoint),
    )
    records = TFLiteTarget()._onnx2tf(sub, TFLiteOptions(), raw, torch_outputs(tuned, job.check), work)
    return {"pass": "onnx2tf_calibrated_from_qat", "calibration": calibration.record(), "passes": records}
