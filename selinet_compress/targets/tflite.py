"""The TFLite target: checkpoint -> .tflite for LiteRT (XNNPACK), with two converters.

``onnx2tf`` (default): the validated fp32 ONNX export (shared with the ONNX target's cache) ->
onnx2tf (TF converter backend) -> SavedModel -> TFLiteConverter per precision; see
:mod:`selinet_compress.passes.tflite_onnx2tf` for why each flag is what it is.
``litert-torch`` (optional extra): PyTorch -> TFLite directly, PT2E quantization for int8.

Every file gets canonical I/O names and the SeLiNetConfig inside (``tflite_metadata``), is run
by the LiteRT runner on real check samples and compared with PyTorch (a file beyond the failure
floor is an error and is not written), and is audited: what it really is (fp32 / fp16 weights /
dynamic-range hybrid / full-integer), which ops stay float, which ops XNNPACK runs. All of that
goes into the sidecar.
"""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from selinet_compress.recipes import SECTIONS, Recipe
from selinet_compress.targets.base import TARGETS, BuildJob, Target

# Cosine (all outputs flattened) vs PyTorch on the check samples: below WARN a loud warning and
# status "low-agreement", below FAIL the file is refused (a broken conversion). The int8 floor is
# low on purpose: an untrained model's near-zero outputs drift to ~0.4-0.7 cosine under honest
# int8 quantization, while a broken file (wrong layout, bad quantized_dimension) lands near 0.
WARN_COSINE = {"fp32": 0.99999, "fp16": 0.999, "int8_dynamic": 0.95, "int8_static": 0.95, "int8_qat": 0.95}
# int8_qat: the fine-tuned model may drift from the fp32 checkpoint on purpose; its file is checked
# against its own int8 PyTorch graph instead (passes/qat_build.py), so no floor here.
FAIL_COSINE = {"fp32": 0.9999, "fp16": 0.99, "int8_dynamic": 0.3, "int8_static": 0.3, "int8_qat": -1.0}
LATENCY_NOTE = (
    "LiteRT latencies measured on this x86 CPU (XNNPACK); phones (ARM NEON dot-product / "
    "i8mm, fp16 arithmetic) rank fp32, fp16 and int8 differently"
)


@SECTIONS.register("tflite")
@dataclass(frozen=True)
class TFLiteOptions:
    """Recipe knobs only the TFLite target understands (YAML section ``tflite:``)."""

    converter: Literal["onnx2tf", "litert-torch"] = "onnx2tf"
    # Full-integer files: dtype of the model's own inputs / outputs. float32 keeps every runner
    # fed the same arrays (QUANTIZE / DEQUANTIZE at the edges); int8 / uint8 suit int-only NPUs.
    io_dtype: Literal["float32", "int8", "uint8"] = "float32"
    # onnx2tf only: express HardSwish / HardSigmoid with ops XNNPACK runs in int8 (see the pass).
    pseudo_hardswish: bool = True
    rewrite_hardsigmoid: bool = True
    # onnx2tf, int8_static only: TFLite op types kept in float, e.g. [SOFTMAX, BATCH_MATMUL] (the
    # attention pooling's, which XNNPACK does not run in int8: with them float every op is
    # delegated, one partition; measured: same latency and ΔAP within noise, so off by default).
    float_ops: tuple[str, ...] = ()


def with_tflite_options(recipe: Recipe, **changes: object) -> Recipe:
    """``recipe`` with its ``tflite:`` section changed (``--converter litert-torch`` on the CLI).
    The section is part of the recipe's dict, so the change is part of the cache key too."""
    options = dataclasses.replace(recipe.section("tflite"), **changes)
    return dataclasses.replace(recipe, sections={**recipe.sections, "tflite": options})


@TARGETS.register("tflite", suffix=".tflite")
class TFLiteTarget(Target):
    name = "tflite"
    suffix = ".tflite"
    precisions = ("fp32", "fp16", "int8_dynamic", "int8_static", "int8_qat")
    runtime_modules = (("ai_edge_litert", "ai-edge-litert"),)
    # int8_qat only (its quantizer leaves the output layers unannotated); refused below otherwise.
    optional_knobs = frozenset({"keep_outputs_float"})
    packages = ("torch", "onnx", "onnxscript", "onnx2tf", "tensorflow", "ai-edge-litert", "numpy")

    def check_recipe(self, recipe: Recipe) -> str | None:
        options: TFLiteOptions = recipe.section("tflite")
        if recipe.precision == "int8_qat":  # the route is the qat: section's tflite_route
            from selinet_compress.passes.qat_build import check_tflite_recipe

            return check_tflite_recipe(recipe)
        onnx2tf_static = recipe.precision == "int8_static" and options.converter == "onnx2tf"
        if recipe.keep_outputs_float and not onnx2tf_static:
            return "keep_outputs_float is built on TFLite by int8_static with onnx2tf, and by int8_qat"
        if recipe.keep_outputs_float and options.io_dtype != "float32":
            return "keep_outputs_float keeps the scores float; io_dtype int8 would quantize them again"
        if recipe.keep_float_modules or recipe.keep_float_nodes:
            return "keep_float_modules / keep_float_nodes are not supported by the TFLite converters"
        if recipe.precision == "int8_static" and recipe.calibration.method != "minmax":
            return (
                f"the TFLite converters calibrate with min-max ranges only, not '{recipe.calibration.method}'"
            )
        if recipe.weight_type != "int8" and recipe.precision.startswith("int8"):
            return f"TFLite int8 files have int8 weights, not {recipe.weight_type}"
        if options.io_dtype != "float32" and recipe.precision != "int8_static":
            return f"io_dtype {options.io_dtype} needs a full-integer (int8_static) recipe"
        if options.float_ops and (recipe.precision != "int8_static" or options.converter != "onnx2tf"):
            return "tflite float_ops applies to int8_static recipes built with onnx2tf"
        if options.converter == "litert-torch":
            from selinet_compress.passes.tflite_litert_torch import PRECISIONS, available

            if recipe.precision not in PRECISIONS:
                return f"litert-torch builds {', '.join(PRECISIONS)} for this model, not {recipe.precision}"
            return available()
        import importlib.util

        if importlib.util.find_spec("onnx2tf") is None:
            return (
                "onnx2tf is not installed (scripts/install.sh installs it: "
                "pip install --no-deps onnx2tf==2.6.9)"
            )
        return None

    def variants(self, recipe: Recipe) -> list[tuple[str | None, Recipe]]:
        """Both converters side by side (QAT has its own route, set in its ``qat:`` section)."""
        if recipe.precision == "int8_qat":
            return [(None, recipe)]
        return [(name, with_tflite_options(recipe, converter=name)) for name in ("onnx2tf", "litert-torch")]

    def tool_versions(self) -> dict[str, str | None]:
        from selinet_compress.environment import package_versions

        return package_versions(*self.packages, "litert-torch", "torchao")

    # ------------------------------------------------------------------------------------------

    def build(self, job: BuildJob) -> Path:
        from selinet_compress.passes.onnx_validate import torch_outputs

        options: TFLiteOptions = job.recipe.section("tflite")
        self._warn_ignored(job)
        with tempfile.TemporaryDirectory(prefix="selinet-tflite-") as tmp:
            work = Path(tmp)
            reference = torch_outputs(job.model, job.check)
            raw = work / "raw.tflite"
            if job.recipe.precision == "int8_qat":
                from selinet_compress.passes.qat_build import build_tflite

                passes = build_tflite(job, raw, work)
            elif options.converter == "litert-torch":
                passes = self._litert_torch(job, raw)
            else:
                passes = self._onnx2tf(job, options, raw, reference, work)
            return self._finish(job, options, raw, passes, reference, work)

    def _warn_ignored(self, job: BuildJob) -> None:
        """Recipe fields written for onnxruntime that the TFLite converters cannot honour: built
        anyway (the recipe's precision is what matters), said loudly and recorded."""
        recipe = job.recipe
        if recipe.precision == "int8_static" and recipe.activation_type != "int8":
            job.warn(
                f"activation_type {recipe.activation_type} is ONNX-only: TFLite full-integer files use int8 "
                "activations (the TFLite int8 specification)"
            )
        if recipe.precision == "int8_dynamic" and recipe.op_types:
            job.warn(
                f"op_types {list(recipe.op_types)} is ONNX-only: TFLite dynamic-range quantization "
                "quantizes every large weight tensor (convolutions too)"
            )
        if recipe.precision == "int8_dynamic" and not recipe.per_channel:
            job.warn("per_channel: false is kept: dynamic-range weights per tensor")

    def _onnx2tf(self, job: BuildJob, options: TFLiteOptions, raw: Path, reference, work: Path) -> list[dict]:
        from selinet_compress.passes.tflite_onnx2tf import (
            Onnx2tfSettings,
            TFLiteSettings,
            convert_onnx_to_tflite,
        )
        from selinet_compress.targets.onnx import OnnxOptions, OnnxTarget

        # The ONNX target's validated, cached fp32 export: one export per checkpoint for both targets.
        export_path, export_record, _scopes = OnnxTarget()._export(job, OnnxOptions(), work, reference)
        settings = TFLiteSettings(
            precision=job.recipe.precision,
            per_channel=job.recipe.per_channel,
            io_dtype=options.io_dtype,
            float_ops=tuple(options.float_ops),
            float_outputs=job.recipe.keep_outputs_float,
        )
        calibration = job.calibration.nhwc() if job.recipe.precision == "int8_static" else None
        _path, records = convert_onnx_to_tflite(
            export_path,
            raw,
            settings,
            calibration,
            cache_dir=job.cache_dir,
            onnx2tf_settings=Onnx2tfSettings(
                pseudo_hardswish=options.pseudo_hardswish, rewrite_hardsigmoid=options.rewrite_hardsigmoid
            ),
            progress=job.progress,
            log=job.log,
        )
        return [{"pass": "onnx_export", **export_record}, *records]

    def _litert_torch(self, job: BuildJob, raw: Path) -> list[dict]:
        from selinet_compress.passes.tflite_litert_torch import convert_with_litert_torch

        if job.recipe.precision == "int8_static" and job.recipe.section("tflite").io_dtype != "int8":
            job.warn(
                "litert-torch int8 files take and return int8 tensors (NCHW); io_dtype float32 cannot be "
                "honoured -- the LiteRT runner quantizes inputs / dequantizes outputs itself"
            )

        calibration = job.calibration.inputs if job.recipe.precision == "int8_static" else None
        _path, record = convert_with_litert_torch(
            job.model,
            raw,
            job.recipe.precision,
            job.checkpoint_sha256,
            calibration,
            cache_dir=job.cache_dir,
            per_channel=job.recipe.per_channel,
            log=job.log,
        )
        return [record]

    def _finish(
        self, job: BuildJob, options: TFLiteOptions, raw: Path, passes: list, reference, work: Path
    ) -> Path:
        from selinet_compress import __version__
        from selinet_compress.audit.tflite_audit import audit_tflite
        from selinet_compress.passes.agreement import output_agreement
        from selinet_compress.passes.onnx_validate import run_batches
        from selinet_compress.passes.tflite_metadata import finalize_tflite
        from selinet_compress.passes.tflite_onnx2tf import ConversionError
        from selinet_compress.runtimes.tflite_runner import LiteRTRunner
        from selinet_compress.summary import MB

        final = work / "final.tflite"
        renamed = finalize_tflite(
            raw,
            final,
            job.model.config,
            {"selinet_recipe": job.recipe.name, "selinet_compress_version": __version__},
        )
        runner = LiteRTRunner.open(final, threads=2)
        candidate = run_batches(runner.run, job.check, job.model.input_names)
        agreement = output_agreement(reference, candidate)
        precision = job.recipe.precision
        status = "passed"
        for name, entry in agreement.items():
            if not entry["finite"] or entry["cosine"] < FAIL_COSINE[precision]:
                floor = FAIL_COSINE[precision]
                raise ConversionError(
                    f"recipe '{job.recipe.name}' ({options.converter}) wrote a TFLite file whose '{name}' "
                    f"output does not follow PyTorch (cosine {entry['cosine']:.4f} < {floor}, "
                    f"finite={entry['finite']}) on {len(job.check)} check samples; "
                    "the artifact was not written"
                )
            if entry["cosine"] < WARN_COSINE[precision]:
                status = "low-agreement"
                job.warn(
                    f"{precision} output '{name}' drifts from PyTorch: cosine {entry['cosine']:.4f} < "
                    f"{WARN_COSINE[precision]} on {len(job.check)} check samples"
                )
        job.log("tflite: auditing (ops, precisions, XNNPACK delegation) ...")
        audit = audit_tflite(final)
        if precision in ("int8_static", "int8_qat") and not audit["full_integer"]:
            job.warn(f"the {precision} file is not full-integer: {audit['what_it_is']}")
        xnn = audit.get("xnnpack") or {}
        if xnn.get("not_delegated"):
            job.warn(
                "XNNPACK does not run "
                + ", ".join(f"{k} x{v}" for k, v in xnn["not_delegated"].items())
                + f" ({xnn.get('partitions')} partitions): those ops use TFLite's slower builtin kernels"
            )
        job.write_artifact(
            self,
            final,
            {
                "format": "tflite",
                "precision": precision,
                "what_it_is": audit["what_it_is"],
                "converter": options.converter,
                "tflite_options": dataclasses.asdict(options),
                "passes": passes,
                "io_names": renamed,
                "status": status,
                "agreement_vs_pytorch": {"samples": len(job.check), "outputs": agreement},
                "audit": audit,
                "latency_note": LATENCY_NOTE,
            },
        )
        job.log(f"tflite: {job.artifact} ({job.artifact.stat().st_size / MB:.2f} MB): {audit['what_it_is']}")
        return job.artifact
