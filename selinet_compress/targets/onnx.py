"""The ONNX target: torch export -> (fp16 | onnxruntime int8 dynamic | static QDQ) -> one .onnx file.

Steps, each a pass in :mod:`selinet_compress.passes` and each recorded in the sidecar:

1. export with torch's exporter, embed the SeLiNetConfig, and check the file against PyTorch on
   real samples (an fp32 export beyond tolerance stops the build); kept in ``cache_dir`` when one
   is given, so the recipes of a sweep share one export;
2. fp32: that file; fp16: onnxruntime's float16 converter (float32 I/O); int8: onnxruntime's
   ``quant_pre_process``, then static QDQ (calibrated by us, see ``ort_calibrate``) or dynamic;
3. strip the exporter's per-node annotations, compare the result with PyTorch again, audit which
   ops really run in int8, write the file and its sidecar atomically.
"""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from selinet_compress.recipes import SECTIONS, Recipe
from selinet_compress.targets.base import TARGETS, BuildJob, Target

# A quantized / fp16 file whose outputs drift below this cosine from PyTorch gets a loud warning.
WARN_COSINE = {"fp16": 0.999, "int8_dynamic": 0.95, "int8_static": 0.95}


@SECTIONS.register("onnx")
@dataclass(frozen=True)
class OnnxOptions:
    """Recipe knobs only the ONNX target understands (YAML section ``onnx:``)."""

    # QDQ (QuantizeLinear/DequantizeLinear around float ops; onnxruntime fuses them into int8
    # kernels) or QOperator (QLinearConv etc.); QDQ is the format onnxruntime recommends.
    quant_format: Literal["qdq", "qoperator"] = "qdq"
    pre_process: bool = True  # onnxruntime.quantization.quant_pre_process before quantizing
    opset: int = 18
    fp16_keep_op_types: tuple[str, ...] = ()  # op types the fp16 converter keeps in float32
    # Passed verbatim to onnxruntime's quantizer (see quantize_static's extra_options).
    extra_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.opset < 18:
            raise ValueError(f"opset must be >= 18 for torch's exporter, got {self.opset}")


@TARGETS.register("onnx", suffix=".onnx")
class OnnxTarget(Target):
    name = "onnx"
    suffix = ".onnx"
    precisions = ("fp32", "fp16", "int8_dynamic", "int8_static", "int8_qat")
    runtime_modules = (("onnxruntime", "onnxruntime"), ("onnx", "onnx"))
    packages = ("torch", "onnx", "onnxscript", "onnxruntime", "numpy")
    optional_knobs = frozenset({"keep_outputs_float"})

    def check_recipe(self, recipe: Recipe) -> str | None:
        if recipe.precision == "int8_qat":
            from selinet_compress.passes.qat_build import check_recipe

            return check_recipe(recipe)
        if recipe.precision == "int8_dynamic":
            if recipe.activation_type != "uint8":
                return "onnxruntime's dynamic quantization computes uint8 activations only (activation_type)"
            if recipe.weight_type not in ("int8", "uint8"):
                return f"onnxruntime's dynamic quantization has no {recipe.weight_type} weights"
        if recipe.precision in ("int8_dynamic", "int8_static") and recipe.op_types:
            from selinet_compress.passes.ort_quantize import dynamic_op_types, static_op_types

            known = dynamic_op_types() if recipe.precision == "int8_dynamic" else static_op_types()
            # Gemm is quantized dynamically as MatMulInteger although it is not a registry key.
            unknown = [op for op in recipe.op_types if op not in known and op != "Gemm"]
            if unknown:
                return f"onnxruntime cannot quantize op types {unknown} ({recipe.precision})"
        return None

    # ------------------------------------------------------------------------------------------

    def build(self, job: BuildJob) -> Path:
        from selinet_compress.passes.onnx_validate import torch_outputs

        options: OnnxOptions = job.recipe.section("onnx")
        with tempfile.TemporaryDirectory(prefix="selinet-onnx-") as tmp:
            work = Path(tmp)
            reference = torch_outputs(job.model, job.check)
            export_path, export_record, scopes = self._export(job, options, work, reference)
            passes: list[dict[str, Any]] = [{"pass": "onnx_export", **export_record}]
            build = getattr(self, f"_build_{job.recipe.precision}")
            model, details = build(job, options, export_path, scopes, work, passes)
            return self._finish(job, options, model, details, passes, scopes, reference, work)

    def _export(self, job: BuildJob, options: OnnxOptions, work: Path, reference) -> tuple[Path, dict, dict]:
        """The validated fp32 export (node annotations kept): reused from the cache when present."""
        import onnx

        from selinet_compress.io import atomic_path, read_sidecar, sha256_json, write_json_atomic
        from selinet_compress.passes.onnx_export import (
            config_metadata,
            export_onnx,
            node_scopes,
            set_metadata,
        )
        from selinet_compress.passes.onnx_validate import validate_export

        key = sha256_json(
            {"checkpoint": job.checkpoint_sha256, "opset": options.opset, "versions": self.tool_versions()}
        )[:20]
        folder = job.cache_dir if job.cache_dir is not None else work
        path = folder / f"export-{key}.onnx"
        cached = read_sidecar(path) if path.is_file() else None
        if cached is not None:
            job.log(f"export: reusing {path}")
            record = {**cached["export"], "cached": str(path)}
        else:
            job.log(f"export: torch.onnx.export (dynamo, opset {options.opset}) ...")
            folder.mkdir(parents=True, exist_ok=True)
            raw = work / "export.onnx"
            record = export_onnx(job.model, raw, opset=options.opset, verbose=False)
            model = onnx.load(str(raw))
            set_metadata(model, config_metadata(job.model.config))
            with atomic_path(path) as tmp_path:
                onnx.save(model, str(tmp_path))
        # Checked on this job's samples every time: cheap, and the cache may predate them.
        record["validation"] = validate_export(path, job.model, job.check, reference=reference)
        job.log(
            f"export: matches PyTorch on {len(job.check)} samples "
            + ", ".join(
                f"{k} max abs diff {v['max_abs_diff']:.2g}"
                for k, v in record["validation"]["outputs"].items()
            )
        )
        if cached is None:
            write_json_atomic(
                path.with_name(path.name + ".json"),
                {
                    "export": {k: v for k, v in record.items() if k != "validation"},
                    "checkpoint_sha256": job.checkpoint_sha256,
                },
            )
        scopes = node_scopes(onnx.load(str(path)))
        return path, record, scopes

    def _keep_float(self, job: BuildJob, model, scopes: dict[str, str]) -> list[str]:
        from selinet_compress.passes.onnx_scopes import output_layers, resolve_keep_float

        keep = resolve_keep_float(model, scopes, job.recipe.keep_float_modules, job.recipe.keep_float_nodes)
        if job.recipe.keep_outputs_float:
            keep += [name for name in output_layers(model) if name not in keep]
        return keep

    def _build_fp32(self, job, options, export_path, scopes, work, passes):
        import onnx

        if job.recipe.keep_float_modules or job.recipe.keep_float_nodes:
            job.warn("keep_float_* has no effect in an fp32 recipe (everything is float32)")
        return onnx.load(str(export_path)), {"quantized": None, "kept_float_nodes": []}

    def _build_fp16(self, job, options, export_path, scopes, work, passes):
        import onnx

        from selinet_compress.passes.onnx_fp16 import convert_fp16

        model = onnx.load(str(export_path))
        job.log("fp16: converting weights and compute (float32 inputs / outputs kept)")
        converted, record = convert_fp16(
            model, options.fp16_keep_op_types, self._keep_float(job, model, scopes)
        )
        passes.append({"pass": "onnx_fp16", **record})
        return converted, {"quantized": None, "kept_float_nodes": record["nodes_kept_float32"]}

    def _pre_processed(
        self,
        job: BuildJob,
        options: OnnxOptions,
        export_path: Path,
        scopes: dict[str, str],
        work: Path,
        passes: list,
    ) -> tuple[Path, Any, dict[str, str]]:
        """The model the quantizer sees: pre-processed, every node named, scopes carried over."""
        import onnx

        from selinet_compress.passes.onnx_scopes import propagate_scopes
        from selinet_compress.passes.ort_quantize import pre_process

        source = export_path
        if options.pre_process:
            job.log("int8: onnxruntime quant_pre_process (shape inference, BatchNorm folding) ...")
            source = work / "pre.onnx"
            passes.append({"pass": "ort_pre_process", **pre_process(export_path, source)})
        model = onnx.load(str(source))
        scopes = propagate_scopes(model, scopes)  # names the nodes pre-processing added
        named = work / "pre_named.onnx"
        onnx.save(model, str(named))
        return named, model, scopes

    def _build_int8_dynamic(self, job, options, export_path, scopes, work, passes):
        import onnx

        from selinet_compress.passes.ort_quantize import (
            DYNAMIC_DEFAULT_OP_TYPES,
            SLOW_DYNAMIC_OP_TYPES,
            quantize_dynamic_ops,
        )

        source, model, scopes = self._pre_processed(job, options, export_path, scopes, work, passes)
        op_types = list(job.recipe.op_types) or list(DYNAMIC_DEFAULT_OP_TYPES)
        slow = sorted(set(op_types) & set(SLOW_DYNAMIC_OP_TYPES))
        if slow:
            job.warn(
                f"dynamic quantization of {', '.join(slow)} makes ConvInteger, several times SLOWER "
                "than fp32 on x86 CPUs (DESIGN §6); prefer int8_static for conv layers"
            )
        exclude = self._keep_float(job, model, scopes)
        job.log(
            f"int8 dynamic: quantizing {', '.join(op_types)} weights to {job.recipe.weight_type} "
            f"(activations uint8 per batch at run time); everything else stays float32"
        )
        out = work / "quantized.onnx"
        record = quantize_dynamic_ops(
            source,
            out,
            weight_type=job.recipe.weight_type,
            per_channel=job.recipe.per_channel,
            reduce_range=job.recipe.reduce_range,
            op_types=op_types,
            exclude_nodes=exclude,
            extra_options=options.extra_options,
        )
        record["op_types_source"] = "recipe" if job.recipe.op_types else "default (MatMul, Gemm)"
        passes.append({"pass": "ort_quantize_dynamic", **record})
        return onnx.load(str(out)), {"quantized": record, "kept_float_nodes": exclude, "scopes": scopes}

    def _build_int8_qat(self, job, options, export_path, scopes, work, passes):
        from selinet_compress.passes.qat_build import build_onnx

        # Fine-tunes (or reuses the cached run), converts and exports; see passes/qat_build.py.
        model, details = build_onnx(job, work, options.opset)
        passes.append({"pass": "qat_onnx", **details["quantized"]["export"]})
        return model, details

    def _build_int8_static(self, job, options, export_path, scopes, work, passes):
        import onnx

        from selinet_compress.passes.ort_calibrate import compute_ranges, range_summary
        from selinet_compress.passes.ort_quantize import quantize_static_qdq, static_op_types

        if job.calibration is None:
            raise ValueError("int8_static build without calibration samples")
        source, model, scopes = self._pre_processed(job, options, export_path, scopes, work, passes)
        op_types = list(job.recipe.op_types) or static_op_types()
        exclude = self._keep_float(job, model, scopes)
        settings = job.recipe.calibration
        job.log(f"int8 static: calibrating on {len(job.calibration)} train samples ({settings.method}) ...")
        ranges, seconds = compute_ranges(
            source, job.calibration, settings, job.model.input_names, op_types, progress=job.progress
        )
        passes.append(
            {
                "pass": "ort_calibrate",
                "method": settings.method,
                "seconds": seconds,
                "options": dataclasses.asdict(settings),
                "ranges": range_summary(ranges),
            }
        )
        job.log(
            f"int8 static: {options.quant_format.upper()}, activations {job.recipe.activation_type}, weights "
            f"{job.recipe.weight_type} {'per-channel' if job.recipe.per_channel else 'per-tensor'}"
            + (f", {len(exclude)} nodes kept float" if exclude else "")
        )
        out = work / "quantized.onnx"
        record = quantize_static_qdq(
            source,
            out,
            ranges,
            method=settings.method,
            activation_type=job.recipe.activation_type,
            weight_type=job.recipe.weight_type,
            per_channel=job.recipe.per_channel,
            reduce_range=job.recipe.reduce_range,
            op_types=op_types,
            exclude_nodes=exclude,
            quant_format=options.quant_format,
            activation_symmetric=settings.symmetric,
            extra_options=options.extra_options,
        )
        passes.append({"pass": "ort_quantize_static", **record})
        return onnx.load(str(out)), {"quantized": record, "kept_float_nodes": exclude, "scopes": scopes}

    def _finish(
        self,
        job: BuildJob,
        options: OnnxOptions,
        model,
        details: dict,
        passes: list,
        scopes: dict[str, str],
        reference,
        work: Path,
    ) -> Path:
        import onnx

        from selinet_compress import __version__
        from selinet_compress.audit.onnx_audit import audit_onnx
        from selinet_compress.passes.agreement import output_agreement
        from selinet_compress.passes.onnx_export import config_metadata, set_metadata, strip_node_metadata
        from selinet_compress.passes.onnx_validate import onnx_outputs

        strip_node_metadata(model)
        set_metadata(
            model,
            {
                **config_metadata(job.model.config),
                "selinet_recipe": job.recipe.name,
                "selinet_compress_version": __version__,
            },
        )
        final = work / f"final{self.suffix}"
        onnx.save(model, str(final))
        agreement = output_agreement(reference, onnx_outputs(final, job.check))
        floor = WARN_COSINE.get(job.recipe.precision)
        for name, entry in agreement.items():
            if not entry["finite"]:
                from selinet_compress.errors import UserError

                raise UserError(
                    f"recipe '{job.recipe.name}' produced NaN/inf '{name}' outputs on "
                    f"{job.check.source}; the artifact was not written"
                )
            if floor is not None and entry["cosine"] < floor:
                job.warn(
                    f"{job.recipe.precision} output '{name}' drifts from PyTorch: cosine "
                    f"{entry['cosine']:.4f} < {floor} on {len(job.check)} check samples"
                )
        audit = audit_onnx(final, details.get("scopes", scopes))
        return job.write_artifact(
            self,
            final,
            {
                "format": "onnx",
                "precision": job.recipe.precision,
                "onnx_options": dataclasses.asdict(options),
                "passes": passes,
                "quantization": details.get("quantized"),
                "kept_float": {
                    "modules": list(job.recipe.keep_float_modules),
                    "nodes": details["kept_float_nodes"],
                },
                "agreement_vs_pytorch": {"samples": len(job.check), "outputs": agreement},
                "audit": audit,
            },
        )
