"""Where does int8 (static QDQ) lose accuracy? Keep one branch / trunk block / op type in float at a time.

The fp32 export, onnxruntime's pre-processing and the calibration ranges are computed once (the
recipe's calibration: train split); each variant only re-runs ``quantize_static`` with that
group's nodes excluded, then is scored on the VAL split (never test: these numbers pick a recipe)
against PyTorch fp32 on the same persons: mAP raw / boosted, ΔmAP, output cosine, top-1 agreement.

    python benchmarks/bench_onnx_sensitivity.py CKPT --data DIR [--recipe int8_static]
        [--level branch|block|optype | --modules A+B ...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from bench_common import ci

BRANCH_GROUPS = {
    "body.features": ["body.features"],
    "body.pool+fc": ["body.pool", "body.fc"],
    "aesthetics.features": ["aesthetics.features"],
    "aesthetics.pool+fc": ["aesthetics.pool", "aesthetics.fc"],
    "fusion+heads": ["fusion", "emotion_head", "sentiment_head"],
}


def groups_for(level: str, scopes: dict[str, str]) -> dict[str, list[str]]:
    from selinet_compress.passes.onnx_scopes import module_matches

    present = set(scopes.values())

    def exists(prefix: str) -> bool:
        return any(module_matches(scope, prefix) for scope in present)

    if level == "branch":
        return {
            name: [m for m in mods if exists(m)]
            for name, mods in BRANCH_GROUPS.items()
            if any(exists(m) for m in mods)
        }
    blocks = sorted(
        {".".join(s.split(".")[:3]) for s in present if ".features." in s},
        key=lambda b: (b.split(".")[0], int(b.split(".")[2])),
    )
    return {block: [block] for block in blocks}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--recipe", default="int8_static")
    parser.add_argument("--level", choices=["branch", "block", "optype"], default="branch")
    parser.add_argument(
        "--modules",
        action="append",
        default=[],
        metavar="A+B",
        help="instead of --level: one variant keeping these module prefixes in float (repeatable)",
    )
    parser.add_argument("--limit", type=int, default=None, help="score the first N val persons only")
    parser.add_argument("--cache", type=Path, default=None, help="export cache shared with quantize --cache")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import onnx

    from selinet_compress.calibration import load_calibration, load_check_samples
    from selinet_compress.checkpoint import load_model
    from selinet_compress.errors import UserError
    from selinet_compress.evaluate import evaluate
    from selinet_compress.io import sha256_file
    from selinet_compress.metrics import bootstrap_delta_map
    from selinet_compress.passes.agreement import output_agreement
    from selinet_compress.passes.onnx_export import config_metadata, set_metadata
    from selinet_compress.passes.onnx_scopes import propagate_scopes, resolve_keep_float
    from selinet_compress.passes.onnx_validate import torch_outputs
    from selinet_compress.passes.ort_calibrate import compute_ranges
    from selinet_compress.passes.ort_quantize import pre_process, quantize_static_qdq, static_op_types
    from selinet_compress.recipes import load_recipe
    from selinet_compress.targets import BuildJob
    from selinet_compress.targets.onnx import OnnxTarget

    try:
        recipe = load_recipe(args.recipe)
        if recipe.precision != "int8_static":
            raise UserError(
                f"recipe '{recipe.name}' is {recipe.precision}; sensitivity needs an int8_static recipe"
            )
        model, _ = load_model(args.checkpoint)
        check = load_check_samples(args.data, model.config, 8)
        reference_check = torch_outputs(model, check)
        calibration = load_calibration(args.data, model.config, recipe.calibration, progress=False)
        reference = evaluate(
            args.checkpoint, args.data, "val", limit=args.limit, threads=args.threads, progress=False
        )
        with tempfile.TemporaryDirectory(prefix="selinet-sensitivity-") as tmp:
            work = Path(tmp)
            job = BuildJob(
                checkpoint=args.checkpoint,
                checkpoint_sha256=sha256_file(args.checkpoint),
                model=model,
                recipe=recipe,
                data_dir=args.data,
                artifact=work / "unused.onnx",
                check=check,
                calibration=calibration,
                cache_dir=args.cache,
                progress=False,
            )
            options = recipe.section("onnx")
            export_path, _record, scopes = OnnxTarget()._export(job, options, work, reference_check)
            pre = work / "pre.onnx"
            pre_process(export_path, pre)
            pre_model = onnx.load(str(pre))
            scopes = propagate_scopes(pre_model, scopes)
            named = work / "named.onnx"
            onnx.save(pre_model, str(named))
            op_types = list(recipe.op_types) or static_op_types()
            started = time.perf_counter()
            ranges, _ = compute_ranges(
                named, calibration, recipe.calibration, model.input_names, op_types, progress=False
            )
            print(
                f"calibrated ({recipe.calibration.method}, {len(calibration)} samples) in "
                f"{time.perf_counter() - started:.0f} s",
                file=sys.stderr,
            )

            # What the recipe itself keeps in float (modules, nodes, output layers) is the base.
            base_exclude = OnnxTarget()._keep_float(job, pre_model, scopes)
            # label -> (modules kept float, op types left unquantized)
            variants: dict[str, tuple[list[str], list[str]]] = {"(none: all int8)": ([], [])}
            if args.modules:
                variants.update({group: (group.split("+"), []) for group in args.modules})
            elif args.level == "optype":
                present = {n.op_type for n in pre_model.graph.node}
                variants.update({f"op {t}": ([], [t]) for t in op_types if t in present})
            else:
                variants.update({k: (v, []) for k, v in groups_for(args.level, scopes).items()})
            rows = []
            for label, (modules, dropped) in variants.items():
                exclude = resolve_keep_float(pre_model, scopes, modules, ()) if modules else []
                if dropped:
                    exclude = [n.name for n in pre_model.graph.node if n.op_type in dropped]
                out = work / "variant.onnx"
                quantize_static_qdq(
                    named,
                    out,
                    ranges,
                    method=recipe.calibration.method,
                    activation_type=recipe.activation_type,
                    weight_type=recipe.weight_type,
                    per_channel=recipe.per_channel,
                    reduce_range=recipe.reduce_range,
                    op_types=op_types,
                    exclude_nodes=sorted(set(base_exclude) | set(exclude)),
                    quant_format=options.quant_format,
                    activation_symmetric=recipe.calibration.symmetric,
                    extra_options=options.extra_options,
                )
                quantized = onnx.load(str(out))
                set_metadata(quantized, config_metadata(model.config))
                onnx.save(quantized, str(out))
                result = evaluate(
                    out, args.data, "val", limit=args.limit, threads=args.threads, progress=False
                )
                raw = bootstrap_delta_map(reference.labels, reference.scores, result.scores, n_boot=500)
                boosted = bootstrap_delta_map(
                    reference.labels, reference.scores_boosted, result.scores_boosted, n_boot=500
                )
                agreement = output_agreement({"emotions": reference.scores}, {"emotions": result.scores})[
                    "emotions"
                ]
                rows.append(
                    (
                        label,
                        len(exclude),
                        out.stat().st_size / 1e6,
                        result.metrics["map"],
                        raw,
                        result.metrics["map_boosted"],
                        boosted,
                        agreement,
                    )
                )
                print(f"[{label}] done", file=sys.stderr)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    print(
        f"{args.checkpoint}: val split of {args.data}, {reference.n} persons; PyTorch fp32 mAP raw "
        f"{100 * reference.metrics['map']:.2f}, boosted {100 * reference.metrics['map_boosted']:.2f}; "
        f"recipe {recipe.name}; level {args.level}"
    )
    print()
    print(
        "| kept in float | nodes | size MB | mAP raw | ΔAP raw (95 % CI) | mAP boosted "
        "| ΔAP boosted (95 % CI) | centered cosine | top-1 agreement |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, nodes, size, map_raw, raw, map_boosted, boosted, agreement in rows:
        print(
            f"| {label} | {nodes} | {size:.2f} | {100 * map_raw:.2f} | {ci(raw)} | {100 * map_boosted:.2f} "
            f"| {ci(boosted)} | {agreement['centered_cosine']:.4f} | {agreement['top1_agreement']:.3f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
